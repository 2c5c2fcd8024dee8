//! `docker service create/ls/ps/inspect/update/rollback/scale/rm` from Debian's
//! docker CLI against a Shoal daemon's Engine API, checked on the CLI's output and
//! on Shoal's own state; and what Docker accepts but Shoal cannot honour, refused
//! with a 400 naming the field. Every CLI run has a deadline (`timeout`), so a
//! progress loop that never ends fails the test instead of hanging it.

mod support;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use shoal_api::wire::TaskFilter;
use shoal_api::{ServiceMode, TaskState};
use support::daemons::{Daemon, block_on};
use support::wait_for;

/// One raw request to the Engine API socket: (status, body).
fn request(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(d.docker_socket()).expect("the Engine API socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn running(d: &Daemon, service: &str) -> usize {
    let filter = TaskFilter { service: Some(service.into()), ..TaskFilter::default() };
    block_on(d.client().tasks(&filter))
        .map(|ts| {
            ts.iter()
                .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
                .count()
        })
        .unwrap_or(0)
}

fn replicas(d: &Daemon, service: &str) -> ServiceMode {
    block_on(d.client().service(service)).expect("the service").spec.mode
}

#[test]
fn docker_service_create_ls_ps_inspect_update_rollback_scale_rm() {
    let d = Daemon::init("m1");
    d.import_busybox();

    // Blocking create: the CLI polls until both tasks run, then for the monitor.
    let out = d.docker_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--publish",
        "target=80",
        "--update-monitor",
        "1s",
        "--rollback-monitor",
        "1s",
        "shoal/busybox",
        "sleep",
        "3600",
    ]);
    let id = out.lines().next().unwrap().trim().to_owned();
    assert!(out.contains("2 out of 2 tasks") && out.contains("verify: Service converged"), "{out}");
    let svc = block_on(d.client().service("web")).expect("created in Shoal");
    assert_eq!(svc.id, id);
    assert_eq!(svc.spec.mode, ServiceMode::Replicated { replicas: 2 });
    assert_eq!(svc.spec.update_config.monitor, Duration::from_secs(1));
    assert_eq!(running(&d, "web"), 2);
    // Shoal chose the published port (from 30000-32767); Docker shows it.
    let port = svc.endpoint.ports[0].published_port.expect("a published port");

    let ls = d.docker_ok(&["service", "ls"]);
    let row = ls.lines().find(|l| l.contains(" web ")).unwrap_or_else(|| panic!("web in {ls}"));
    assert!(row.contains("replicated") && row.contains("2/2"), "{ls}");
    assert!(row.contains(&format!("*:{port}->80/tcp")), "{ls}");
    assert!(d.docker_ok(&["service", "ls", "-q"]).contains(&id[..12]));

    let ps = d.docker_ok(&["service", "ps", "web"]);
    assert!(ps.contains("web.1") && ps.contains("web.2"), "{ps}");
    assert_eq!(ps.matches("Running").count(), 4, "desired and current state of both: {ps}");

    let inspect: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["service", "inspect", "web"])).unwrap();
    assert_eq!(inspect[0]["ID"], id.as_str());
    assert_eq!(inspect[0]["Spec"]["Mode"]["Replicated"]["Replicas"], 2);
    assert_eq!(
        inspect[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"],
        serde_json::json!(["sleep", "3600"])
    );
    assert_eq!(inspect[0]["Endpoint"]["Ports"][0]["PublishedPort"], port);
    let pretty = d.docker_ok(&["service", "inspect", "--pretty", "web"]);
    assert!(pretty.contains("Name:\t\tweb") && pretty.contains("Replicas:\t2"), "{pretty}");

    // A spec round trip through the CLI: only what was asked changes.
    let out =
        d.docker_ok(&["service", "update", "--env-add", "A=1", "--image", "shoal/busybox:latest", "web"]);
    assert!(out.contains("verify: Service converged"), "{out}");
    let svc = block_on(d.client().service("web")).unwrap();
    assert_eq!(svc.spec.task_template.container.image, "shoal/busybox:latest");
    assert_eq!(svc.spec.task_template.container.env, ["A=1"]);
    assert_eq!(svc.spec.task_template.container.args, ["sleep", "3600"]);
    assert_eq!(svc.spec.update_config.monitor, Duration::from_secs(1));
    assert_eq!(svc.endpoint.ports[0].published_port, Some(port));
    let tasks = block_on(d.client().tasks(&TaskFilter { service: Some("web".into()), ..Default::default() }))
        .unwrap();
    let current: Vec<_> = tasks.iter().filter(|t| t.desired_state == TaskState::Running).collect();
    assert_eq!(current.len(), 2);
    assert!(current.iter().all(|t| t.spec.container.env == ["A=1"]), "the rollout replaced both tasks");

    let out = d.docker_ok(&["service", "update", "--replicas", "3", "web"]);
    assert!(out.contains("3 out of 3 tasks") && out.contains("verify: Service converged"), "{out}");
    assert_eq!(replicas(&d, "web"), ServiceMode::Replicated { replicas: 3 });
    assert_eq!(running(&d, "web"), 3);
    assert!(d.docker_ok(&["service", "ls"]).contains("3/3"));

    let out = d.docker_ok(&["service", "rollback", "web"]);
    assert!(
        out.contains("rollback: manually requested rollback") && out.contains("verify: Service converged"),
        "{out}"
    );
    assert_eq!(replicas(&d, "web"), ServiceMode::Replicated { replicas: 2 });
    wait_for("2 tasks after the rollback", Duration::from_secs(30), || running(&d, "web") == 2);

    let out = d.docker_ok(&["service", "scale", "web=1"]);
    assert!(out.contains("web scaled to 1"), "{out}");
    assert_eq!(replicas(&d, "web"), ServiceMode::Replicated { replicas: 1 });
    assert!(d.docker_ok(&["service", "ls"]).contains("1/1"));

    // An image no node has: the rollout pauses and the CLI says so.
    let err = d.docker_fails(&["service", "update", "--image", "shoal/missing:1", "web"]);
    assert!(err.contains("update paused"), "{err}");
    let svc = block_on(d.client().service("web")).unwrap();
    assert_eq!(svc.update_status.map(|u| u.state), Some(shoal_api::service::UpdateState::Paused));
    let out = d.docker_ok(&["service", "update", "--rollback", "web"]);
    assert!(out.contains("rollback: manually requested rollback"), "{out}");
    let svc = block_on(d.client().service("web")).unwrap();
    assert_eq!(svc.spec.task_template.container.image, "shoal/busybox:latest");
    wait_for("web to run again", Duration::from_secs(30), || running(&d, "web") == 1);

    assert_eq!(d.docker_ok(&["service", "rm", "web"]).trim(), "web");
    assert!(block_on(d.client().service("web")).is_err(), "removed from Shoal");
    let err = d.docker_fails(&["service", "rm", "web"]);
    assert!(err.contains("No such service: web") || err.contains("service web not found"), "{err}");
    assert!(!d.docker_ok(&["service", "ls"]).contains("web"));
}

#[test]
fn docker_service_global_job_detached_and_refusals() {
    let d = Daemon::init("m1");
    d.import_busybox();

    let out = d.docker_ok(&[
        "service",
        "create",
        "--name",
        "agent",
        "--mode",
        "global",
        "--update-monitor",
        "1s",
        "shoal/busybox",
        "sleep",
        "3600",
    ]);
    // Blocking: the CLI follows the one node's task until it runs.
    assert!(out.contains("verify: Service converged"), "{out}");
    let id = out.lines().next().unwrap().trim().to_owned();
    assert_eq!(replicas(&d, "agent"), ServiceMode::Global);
    assert_eq!(running(&d, "agent"), 1);
    let ls = d.docker_ok(&["service", "ls"]);
    assert!(ls.contains("global") && ls.contains("1/1"), "{ls}");
    let ps = d.docker_ok(&["service", "ps", "--no-trunc", "agent"]);
    let node = block_on(d.client().nodes(Default::default())).unwrap()[0].id.clone();
    assert!(ps.contains(&format!("agent.{node}")), "a global task is named by its node: {ps}");
    let filtered =
        d.docker_ok(&["service", "ps", "-q", "-f", "desired-state=running", "-f", "node=m1", "agent"]);
    assert_eq!(filtered.lines().count(), 1, "{filtered}");
    let none = d.docker_ok(&["service", "ps", "-q", "-f", "desired-state=shutdown", "agent"]);
    assert_eq!(none.trim(), "", "{none}");
    let err = d.docker_fails(&["service", "inspect", "nope"]);
    assert!(err.to_lowercase().contains("no such service: nope"), "{err}");

    // A job: the CLI sends no update settings for it.
    d.docker_ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "once",
        "--mode",
        "replicated-job",
        "--replicas",
        "2",
        "shoal/busybox",
        "true",
    ]);
    assert_eq!(
        replicas(&d, "once"),
        ServiceMode::ReplicatedJob { max_concurrent: 2, total_completions: Some(2) }
    );
    wait_for("the job to complete", Duration::from_secs(60), || {
        d.docker_ok(&["service", "ls"]).contains("0/0 (2/2 completed)")
    });
    d.docker_ok(&["service", "rm", "once"]);

    // A secret, referred to by the CLI by ID: Shoal stores its name, shows both.
    let spec = shoal_api::secret::PayloadSpec {
        name: "tok".into(),
        labels: Default::default(),
        data: b"s3cret".to_vec(),
    };
    let secret =
        block_on(d.client().create_payload(shoal_api::client::PayloadKind::Secret, &spec)).unwrap().id;
    d.docker_ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "withsecret",
        "--secret",
        "source=tok,target=/etc/tok,mode=0400",
        "shoal/busybox",
        "sleep",
        "3600",
    ]);
    let refs = block_on(d.client().service("withsecret")).unwrap().spec.task_template.container.secrets;
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].source.as_str(), refs[0].target.as_deref(), refs[0].mode),
        ("tok", Some("/etc/tok"), 0o400)
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["service", "inspect", "withsecret"])).unwrap();
    let shown = &inspect[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0];
    assert_eq!(shown["SecretID"], secret.as_str());
    assert_eq!(shown["SecretName"], "tok");
    assert_eq!(shown["File"]["Mode"], 0o400);
    d.docker_ok(&["service", "rm", "withsecret"]);

    // A blocked name: 409, and nothing made.
    let err = d.docker_fails(&["service", "create", "-d", "--name", "agent", "shoal/busybox"]);
    assert!(err.contains("agent"), "{err}");

    // Docker takes these; Shoal cannot honour them, and says which field.
    let err = d.docker_fails(&[
        "service",
        "create",
        "-d",
        "--name",
        "win",
        "--isolation",
        "hyperv",
        "shoal/busybox",
    ]);
    assert!(err.contains("TaskTemplate.ContainerSpec.Isolation"), "{err}");
    let body = r#"{"Name":"win","TaskTemplate":{"ContainerSpec":{"Image":"shoal/busybox",
        "Privileges":{"CredentialSpec":{"File":"spec.json"},"SELinuxContext":null}}}}"#;
    let (status, reply) = request(&d, "POST", "/v1.41/services/create", body);
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("TaskTemplate.ContainerSpec.Privileges.CredentialSpec"), "{reply}");
    let (status, reply) = request(
        &d,
        "POST",
        "/v1.41/services/create",
        r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"b","Privileged":true}}}"#,
    );
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("TaskTemplate.ContainerSpec") && reply.contains("Privileged"), "{reply}");
    assert!(block_on(d.client().service("win")).is_err(), "nothing made");

    // A stale version is out of sequence; a bad registryAuthFrom is a 400.
    let (_, svc) = request(&d, "GET", &format!("/v1.41/services/{id}"), "");
    let svc: serde_json::Value = serde_json::from_str(&svc).unwrap();
    let spec = svc["Spec"].to_string();
    let version = svc["Version"]["Index"].as_u64().unwrap();
    let (status, reply) =
        request(&d, "POST", &format!("/services/{id}/update?version={}", version - 1), &spec);
    assert_eq!(status, 409, "{reply}");
    assert!(reply.contains("update out of sequence"), "{reply}");
    let (status, _) =
        request(&d, "POST", &format!("/services/{id}/update?version={version}&registryAuthFrom=x"), &spec);
    assert_eq!(status, 400);

    // A mode change is a 501, as in Docker.
    let mut replicated = svc["Spec"].clone();
    replicated["Mode"] = serde_json::json!({"Replicated": {"Replicas": 2}});
    let (status, reply) =
        request(&d, "POST", &format!("/services/{id}/update?version={version}"), &replicated.to_string());
    assert_eq!(status, 501, "{reply}");
    assert!(reply.contains("mode change"), "{reply}");
    assert_eq!(replicas(&d, "agent"), ServiceMode::Global);

    // Tasks: by id, filtered by service, node, desired state and up-to-dateness.
    let (status, tasks) = request(&d, "GET", "/tasks?filters=%7B%22service%22%3A%5B%22agent%22%5D%7D", "");
    assert_eq!(status, 200);
    let tasks: serde_json::Value = serde_json::from_str(&tasks).unwrap();
    let task =
        &tasks.as_array().unwrap().iter().find(|t| t["DesiredState"] == "running").expect("a running task");
    assert_eq!(task["Slot"], 0);
    assert_eq!(task["NodeID"], node.as_str());
    let (status, one) = request(&d, "GET", &format!("/tasks/{}", task["ID"].as_str().unwrap()), "");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&one).unwrap()["ServiceID"], id.as_str());
    let (_, up) = request(&d, "GET", "/tasks?filters=%7B%22_up-to-date%22%3A%7B%22true%22%3Atrue%7D%7D", "");
    assert!(up.contains(task["ID"].as_str().unwrap()), "{up}");
    let (_, none) = request(&d, "GET", "/tasks?filters=%7B%22desired-state%22%3A%5B%22shutdown%22%5D%7D", "");
    assert_eq!(none.trim(), "[]");
    let (status, reply) = request(&d, "GET", "/tasks?filters=%7B%22service%22%3A%5B%22nope%22%5D%7D", "");
    assert_eq!(status, 404, "{reply}");
    // A served path with the wrong method, and a path not served: Docker's shape too.
    let (status, reply) = request(&d, "PUT", "/v1.41/tasks", "");
    assert_eq!((status, reply.contains(r#""message":"#)), (405, true), "{reply}");
    let (status, reply) = request(&d, "GET", "/v1.41/containers/x/json", "");
    assert_eq!((status, reply.as_str()), (404, r#"{"message":"page not found"}"#));

    d.docker_ok(&["service", "rm", "agent"]);
    assert!(block_on(d.client().services(&Default::default())).unwrap().is_empty());
}
