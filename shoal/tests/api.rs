//! The cluster API over a real `shoal daemon`: services, tasks, nodes, networks,
//! secrets, configs, stacks, the cluster; every kind of bad input; events resumed
//! from an index; the token on TCP; the OpenAPI document served.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use shoal_api::client::{ClientError, PayloadKind};
use shoal_api::service::ServiceMode;
use shoal_api::wire::{EventQuery, ReadOptions, ServiceFilter, StackDeploy, TaskFilter};
use shoal_api::{NetworkSpec, PayloadSpec, ServiceSpec};
use support::daemons::{Daemon, block_on, serve_forever};

fn api_error(e: ClientError) -> (u16, String, Option<String>, String) {
    match e {
        ClientError::Api { status, code, field, message, .. } => (status, code, field, message),
        other => panic!("expected an API error, got {other}"),
    }
}

/// Sends a raw request to the socket, for bodies the typed client would never send.
fn raw(d: &Daemon, method: &str, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    block_on(async {
        let http = reqwest::Client::builder().unix_socket(d.socket.clone()).build().unwrap();
        let resp = http
            .request(method.parse().unwrap(), format!("http://shoal{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    })
}

#[test]
fn services_round_trip_with_versions() {
    let d = Daemon::init("m1");
    let c = d.client();
    block_on(async {
        let mut spec = ServiceSpec::new("web", "shoal/busybox");
        spec.labels.insert("tier".into(), "front".into());
        let created = c.create_service(&spec).await.unwrap();
        let svc = c.service("web").await.unwrap();
        assert_eq!((svc.id.as_str(), svc.meta.version), (created.id.as_str(), created.version));
        assert_eq!(c.service(&created.id[..6]).await.unwrap().id, created.id, "found by id prefix");

        // An update carries the version it read; a stale one is refused with 409.
        let mut new = svc.spec.clone();
        new.task_template.container.image = "shoal/busybox:2".into();
        let written = c.update_service("web", svc.meta.version, &new).await.unwrap();
        assert!(written.version > svc.meta.version);
        let (status, code, _, message) =
            api_error(c.update_service("web", svc.meta.version, &new).await.unwrap_err());
        assert_eq!((status, code.as_str()), (409, "conflict"), "{message}");
        assert!(message.contains("read it again"), "{message}");

        let after = c.service("web").await.unwrap();
        assert_eq!(after.previous_spec.as_ref().unwrap().task_template.container.image, "shoal/busybox");
        c.scale_service("web", 4).await.unwrap();
        assert_eq!(c.service("web").await.unwrap().spec.mode, ServiceMode::Replicated { replicas: 4 });
        c.rollback_service("web").await.unwrap();
        assert_eq!(c.service("web").await.unwrap().spec.mode, ServiceMode::Replicated { replicas: 1 });

        // Filters.
        c.create_service(&ServiceSpec::new("api", "shoal/busybox")).await.unwrap();
        let names = |v: Vec<shoal_api::Service>| v.into_iter().map(|s| s.spec.name).collect::<Vec<_>>();
        assert_eq!(names(c.services(&ServiceFilter::default()).await.unwrap()), ["api", "web"]);
        let by_label = ServiceFilter { label: Some("tier=front".into()), ..Default::default() };
        assert_eq!(names(c.services(&by_label).await.unwrap()), ["web"]);
        let by_name = ServiceFilter { name: Some("ap".into()), consistent: true, ..Default::default() };
        assert_eq!(names(c.services(&by_name).await.unwrap()), ["api"]);
        c.remove_service("web").await.unwrap();
        let (status, code, _, _) = api_error(c.service("web").await.unwrap_err());
        assert_eq!((status, code.as_str()), (404, "not_found"));
        let (status, _, _, _) = api_error(c.remove_service("web").await.unwrap_err());
        assert_eq!(status, 404);
    });
}

/// Polls the task list until `cond` holds (30 s at most).
async fn tasks_until(
    c: &shoal_api::client::Client,
    filter: &TaskFilter,
    what: &str,
    cond: impl Fn(&[shoal_api::Task]) -> bool,
) -> Vec<shoal_api::Task> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = c.tasks(filter).await.unwrap();
        if cond(&tasks) {
            return tasks;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {tasks:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn services_run_as_tasks_on_nodes_and_heal() {
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    block_on(async {
        let node = c.node("m1").await.unwrap();
        let mut spec = ServiceSpec::new("web", "shoal/busybox");
        spec.mode = ServiceMode::Replicated { replicas: 3 };
        spec.task_template.container.args = serve_forever();
        c.create_service(&spec).await.unwrap();
        let web = TaskFilter { service: Some("web".into()), ..Default::default() };
        let tasks = tasks_until(&c, &web, "3 running tasks", |ts| {
            ts.len() == 3 && ts.iter().all(|t| t.status.state == shoal_api::TaskState::Running)
        })
        .await;
        let mut slots: Vec<_> = tasks.iter().map(|t| t.slot.unwrap()).collect();
        slots.sort();
        assert_eq!(slots, [1, 2, 3]);
        assert!(tasks.iter().all(|t| t.node_id.as_deref() == Some(node.id.as_str())));
        assert_eq!(c.task(&tasks[0].id).await.unwrap().id, tasks[0].id);
        let containers = d.node.ok(&["container", "ls", "-q"]);
        assert_eq!(containers.lines().filter(|l| l.starts_with("task.")).count(), 3, "{containers}");

        // A container killed behind the orchestrator's back is replaced in its slot.
        let victim = &tasks[0];
        d.node.ok(&["container", "stop", "--time", "0", &format!("task.{}", victim.id)]);
        tasks_until(&c, &web, "the slot refilled", |ts| {
            ts.iter().any(|t| t.id == victim.id && t.status.state.is_terminal())
                && ts.iter().any(|t| {
                    t.slot == victim.slot
                        && t.id != victim.id
                        && t.status.state == shoal_api::TaskState::Running
                })
        })
        .await;

        // Scaled down: the highest slots stop and go.
        c.scale_service("web", 1).await.unwrap();
        tasks_until(&c, &web, "two tasks gone", |ts| {
            let running: Vec<_> = ts
                .iter()
                .filter(|t| t.status.state == shoal_api::TaskState::Running)
                .map(|t| t.slot)
                .collect();
            running == [Some(1)] && ts.iter().all(|t| t.slot == Some(1))
        })
        .await;

        // Nobody satisfies the constraint: pending, with the reason.
        let mut spec = ServiceSpec::new("picky", "shoal/busybox");
        spec.task_template.placement.constraints = vec!["node.labels.zone==c".into()];
        spec.task_template.container.args = serve_forever();
        c.create_service(&spec).await.unwrap();
        let picky = TaskFilter { service: Some("picky".into()), ..Default::default() };
        tasks_until(&c, &picky, "the reason", |ts| {
            ts.len() == 1
                && ts[0].status.message
                    == "no suitable node (1 node not satisfying the scheduling constraints)"
        })
        .await;
        let node = c.node("m1").await.unwrap();
        let mut spec = node.spec.clone();
        spec.labels.insert("zone".into(), "c".into());
        c.update_node("m1", &shoal_api::wire::NodeUpdate { version: node.meta.version, spec }).await.unwrap();
        tasks_until(&c, &picky, "placement after the label", |ts| {
            ts.len() == 1 && ts[0].status.state == shoal_api::TaskState::Running
        })
        .await;

        // A command that is not in the image fails with the runtime's reason; an
        // image that is not here is rejected.
        let mut spec = ServiceSpec::new("broken", "shoal/busybox");
        spec.task_template.container.args = vec!["nosuchcommand".into()];
        c.create_service(&spec).await.unwrap();
        let broken = TaskFilter { service: Some("broken".into()), ..Default::default() };
        let ts = tasks_until(&c, &broken, "the failure", |ts| {
            ts.iter().any(|t| t.status.state == shoal_api::TaskState::Failed)
        })
        .await;
        let failed = ts.iter().find(|t| t.status.state == shoal_api::TaskState::Failed).unwrap();
        assert!(
            failed.status.error.as_deref().unwrap().contains("command not found in the image: nosuchcommand"),
            "{failed:?}"
        );
        c.create_service(&ServiceSpec::new("absent", "nothere:1")).await.unwrap();
        let absent = TaskFilter { service: Some("absent".into()), ..Default::default() };
        let ts = tasks_until(&c, &absent, "the rejection", |ts| {
            ts.iter().any(|t| t.status.state == shoal_api::TaskState::Rejected)
        })
        .await;
        assert!(ts[0].status.error.as_deref().unwrap().contains("nothere:1 is not on this node"), "{ts:?}");

        // A global service: one task on the one node.
        let mut spec = ServiceSpec::new("agent", "shoal/busybox");
        spec.mode = ServiceMode::Global;
        spec.task_template.container.args = serve_forever();
        c.create_service(&spec).await.unwrap();
        let agent = TaskFilter { service: Some("agent".into()), ..Default::default() };
        tasks_until(&c, &agent, "the global task", |ts| {
            ts.len() == 1 && ts[0].slot.is_none() && ts[0].status.state == shoal_api::TaskState::Running
        })
        .await;

        // Removed services take their tasks and containers with them.
        for s in ["web", "picky", "broken", "absent", "agent"] {
            c.remove_service(s).await.unwrap();
        }
        tasks_until(&c, &TaskFilter::default(), "every task gone", |ts| ts.is_empty()).await;
    });
    support::wait_for("every container gone", Duration::from_secs(20), || {
        d.node.ok(&["container", "ls", "-q"]).trim().is_empty()
    });
}

#[test]
fn rolling_updates_replace_tasks_and_failures_roll_back() {
    use shoal_api::service::{FailureAction, UpdateState};
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    block_on(async {
        let mut spec = ServiceSpec::new("web", "shoal/busybox");
        spec.mode = ServiceMode::Replicated { replicas: 3 };
        spec.task_template.container.args = serve_forever();
        spec.update_config.parallelism = 1;
        spec.update_config.delay = Duration::ZERO;
        spec.update_config.failure_action = FailureAction::Rollback;
        spec.update_config.monitor = Duration::from_secs(1);
        spec.rollback_config.parallelism = 0;
        c.create_service(&spec).await.unwrap();
        let web = TaskFilter {
            service: Some("web".into()),
            desired_state: Some("running".into()),
            ..Default::default()
        };
        let running = |env: &'static str| {
            move |ts: &[shoal_api::Task]| {
                ts.len() == 3
                    && ts.iter().all(|t| {
                        t.status.state == shoal_api::TaskState::Running
                            && t.spec.container.env == [env.to_owned()]
                            || env.is_empty()
                                && t.status.state == shoal_api::TaskState::Running
                                && t.spec.container.env.is_empty()
                    })
            }
        };
        tasks_until(&c, &web, "3 running tasks", running("")).await;

        // A rolling update: every task replaced, one at a time, and the status says so.
        let svc = c.service("web").await.unwrap();
        let mut new = svc.spec.clone();
        new.task_template.container.env = vec!["V=2".into()];
        c.update_service("web", svc.meta.version, &new).await.unwrap();
        tasks_until(&c, &web, "3 tasks of the new spec", running("V=2")).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c.service("web").await.unwrap().update_status.map(|u| u.state) != Some(UpdateState::Completed) {
            assert!(std::time::Instant::now() < deadline, "the update never completed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // An update whose tasks cannot start rolls back by itself.
        let svc = c.service("web").await.unwrap();
        let mut bad = svc.spec.clone();
        bad.task_template.container.args = vec!["nosuchcommand".into()];
        c.update_service("web", svc.meta.version, &bad).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = c.service("web").await.unwrap();
            if s.update_status.as_ref().map(|u| u.state) == Some(UpdateState::RollbackCompleted) {
                assert_eq!(s.spec.task_template.container.args, serve_forever(), "back on the previous spec");
                assert!(s.update_status.unwrap().message.contains("rollback completed"));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no rollback: {:?}", s.update_status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tasks_until(&c, &web, "3 tasks of the old spec again", running("V=2")).await;
    });
}

#[test]
fn health_checks_gate_running_and_replace_unhealthy_tasks() {
    use shoal_api::task_spec::HealthCheck;
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    let check = |test: &[&str]| HealthCheck {
        test: test.iter().map(|s| s.to_string()).collect(),
        interval: Duration::from_millis(300),
        timeout: Duration::from_secs(2),
        retries: 2,
        start_period: Duration::ZERO,
        start_interval: Duration::from_millis(300),
    };
    block_on(async {
        // Healthy once the file exists: STARTING until then, RUNNING after, and the
        // check runs inside the container (its filesystem, its user). Three seconds
        // of STARTING: a worker reports a task's newest state only, so a short one
        // can be passed over on a loaded machine.
        let mut ok = ServiceSpec::new("ok", "shoal/busybox");
        ok.task_template.container.args =
            ["sh", "-c", "sleep 3; touch /tmp/ready; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
                .map(String::from)
                .to_vec();
        let mut ready = check(&["CMD-SHELL", "test -f /tmp/ready && test $(id -u) = 0"]);
        // Failures in the start period do not count.
        ready.start_period = Duration::from_secs(10);
        ok.task_template.container.healthcheck = Some(ready);
        c.create_service(&ok).await.unwrap();
        let filter = TaskFilter { service: Some("ok".into()), ..Default::default() };
        tasks_until(&c, &filter, "starting before healthy", |ts| {
            ts.iter().any(|t| t.status.state == shoal_api::TaskState::Starting)
        })
        .await;
        let ts = tasks_until(&c, &filter, "running once healthy", |ts| {
            ts.iter().any(|t| t.status.state == shoal_api::TaskState::Running)
        })
        .await;
        assert_eq!(ts[0].status.message, "healthy");

        // Never healthy: failed with the check's output, and replaced.
        let mut sick = ServiceSpec::new("sick", "shoal/busybox");
        sick.task_template.container.args = serve_forever();
        sick.task_template.container.healthcheck =
            Some(check(&["CMD", "sh", "-c", "echo not ready; exit 3"]));
        sick.task_template.restart_policy.delay = Duration::from_millis(100);
        c.create_service(&sick).await.unwrap();
        let filter = TaskFilter { service: Some("sick".into()), ..Default::default() };
        let ts = tasks_until(&c, &filter, "an unhealthy task replaced", |ts| {
            ts.len() >= 2 && ts.iter().any(|t| t.status.state == shoal_api::TaskState::Failed)
        })
        .await;
        let failed = ts.iter().find(|t| t.status.state == shoal_api::TaskState::Failed).unwrap();
        let error = failed.status.error.as_deref().unwrap();
        assert!(
            error.contains("unhealthy container") && error.contains("exited with 3: not ready"),
            "{error}"
        );
        c.remove_service("sick").await.unwrap();
        c.remove_service("ok").await.unwrap();
        tasks_until(&c, &TaskFilter::default(), "every task gone", |ts| ts.is_empty()).await;
    });
}

#[test]
fn the_images_own_health_check_gates_running_unless_turned_off() {
    use shoal_api::task_spec::HealthCheck;
    let d = Daemon::init("m1");
    // The test image with a HEALTHCHECK in its config, as a Dockerfile would set it.
    let layout = d.dir.join("healthy-image");
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/images/busybox"))
        .arg(&layout)
        .arg("shoal/healthy:latest")
        .env("HEALTHCHECK", r#"{"Test":["CMD-SHELL","test -f /tmp/ready"],"Interval":300000000,"StartPeriod":10000000000,"StartInterval":300000000,"Retries":2}"#)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    d.node.ok(&["image", "import", layout.to_str().unwrap()]);
    let c = d.client();
    let args: Vec<String> =
        ["sh", "-c", "sleep 3; touch /tmp/ready; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
            .map(String::from)
            .to_vec();
    block_on(async {
        let mut img = ServiceSpec::new("img", "shoal/healthy");
        img.task_template.container.args = args.clone();
        c.create_service(&img).await.unwrap();
        let mut off = ServiceSpec::new("off", "shoal/healthy");
        off.task_template.container.args = args.clone();
        off.task_template.container.healthcheck = Some(HealthCheck::new(vec!["NONE".into()]));
        c.create_service(&off).await.unwrap();

        let filter = TaskFilter { service: Some("img".into()), ..Default::default() };
        tasks_until(&c, &filter, "starting until the image's check passes", |ts| {
            ts.iter().any(|t| t.status.state == shoal_api::TaskState::Starting)
        })
        .await;
        let ts = tasks_until(&c, &filter, "running once healthy", |ts| {
            ts.iter().any(|t| t.status.state == shoal_api::TaskState::Running)
        })
        .await;
        assert_eq!(ts[0].status.message, "healthy", "the image's check gated it");
        let filter = TaskFilter { service: Some("off".into()), ..Default::default() };
        let ts = tasks_until(&c, &filter, "running without a check", |ts| {
            ts.iter().any(|t| t.status.state == shoal_api::TaskState::Running)
        })
        .await;
        assert_eq!(ts[0].status.message, "started", "NONE turned the image's check off");
        c.remove_service("img").await.unwrap();
        c.remove_service("off").await.unwrap();
        tasks_until(&c, &TaskFilter::default(), "every task gone", |ts| ts.is_empty()).await;
    });
}

#[test]
fn start_first_updates_start_each_new_task_before_stopping_the_old_one() {
    use shoal_api::service::{UpdateOrder, UpdateState};
    use shoal_api::stored::Object;
    use shoal_api::{Task, TaskState};
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    block_on(async {
        let mut spec = ServiceSpec::new("web", "shoal/busybox");
        spec.mode = ServiceMode::Replicated { replicas: 4 };
        spec.task_template.container.args = serve_forever();
        spec.update_config.parallelism = 2;
        spec.update_config.delay = Duration::ZERO;
        spec.update_config.order = UpdateOrder::StartFirst;
        c.create_service(&spec).await.unwrap();
        let web = TaskFilter { service: Some("web".into()), ..Default::default() };
        tasks_until(&c, &web, "4 running tasks", |ts| {
            ts.iter().filter(|t| t.status.state == shoal_api::TaskState::Running).count() == 4
        })
        .await;

        // Watch every task change from here on, then update.
        let from = c.cluster(ReadOptions { consistent: true }).await.unwrap().raft.last_applied;
        let mut events =
            c.events(&EventQuery { since: Some(from), kind: Some("task".into()) }).await.unwrap();
        let svc = c.service("web").await.unwrap();
        let mut new = svc.spec.clone();
        new.task_template.container.env = vec!["V=2".into()];
        c.update_service("web", svc.meta.version, &new).await.unwrap();

        let mut seen: Vec<Task> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let e = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
            if let Ok(Some(Ok(e))) = e
                && let Object::Task(t) = std::sync::Arc::unwrap_or_clone(e.object)
            {
                seen.push(t);
            }
            let done = c.service("web").await.unwrap().update_status.map(|u| u.state)
                == Some(UpdateState::Completed);
            if done {
                // The events of the last round may still be on their way.
                while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_secs(1), events.next()).await
                {
                    if let Object::Task(t) = std::sync::Arc::unwrap_or_clone(e.object) {
                        seen.push(t);
                    }
                }
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the update did not complete");
        }
        // In every slot, the new task ran before the old one was told to stop.
        for slot in 1..=4u64 {
            let position =
                |cond: &dyn Fn(&Task) -> bool| seen.iter().position(|t| t.slot == Some(slot) && cond(t));
            let new_ran =
                position(&|t| t.spec.container.env == ["V=2"] && t.status.state == TaskState::Running)
                    .unwrap_or_else(|| panic!("slot {slot}: the new task never ran"));
            let old_stopped =
                position(&|t| t.spec.container.env.is_empty() && t.desired_state == TaskState::Shutdown)
                    .unwrap_or_else(|| panic!("slot {slot}: the old task was never stopped"));
            assert!(new_ran < old_stopped, "slot {slot}: the old task was stopped before the new one ran");
        }
        // Never more than two new tasks on their way at once (parallelism 2).
        let mut starting = std::collections::BTreeSet::new();
        let mut most = 0;
        for t in seen.iter().filter(|t| t.spec.container.env == ["V=2"]) {
            if t.status.state < TaskState::Running {
                starting.insert(t.id.clone());
            } else {
                starting.remove(&t.id);
            }
            most = most.max(starting.len());
        }
        assert!((1..=2).contains(&most), "at most two slots in flight, saw {most}");
    });
}

#[test]
fn many_tasks_start_at_once_without_false_failures() {
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    block_on(async {
        let mut spec = ServiceSpec::new("many", "shoal/busybox");
        spec.mode = ServiceMode::Replicated { replicas: 30 };
        spec.task_template.container.args = serve_forever();
        c.create_service(&spec).await.unwrap();
        let many = TaskFilter { service: Some("many".into()), ..Default::default() };
        let ts = tasks_until(&c, &many, "30 running tasks", |ts| {
            ts.iter().filter(|t| t.status.state == shoal_api::TaskState::Running).count() == 30
        })
        .await;
        // A start under way is never mistaken for a lost or vanished container.
        let failed: Vec<_> =
            ts.iter().filter(|t| t.status.state.is_terminal()).map(|t| &t.status.error).collect();
        assert!(failed.is_empty(), "{failed:?}");
        c.remove_service("many").await.unwrap();
        tasks_until(&c, &TaskFilter::default(), "every task gone", |ts| ts.is_empty()).await;
    });
}

#[test]
fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let d = Daemon::init("m1");
    let c = d.client();

    let (status, body) = raw(&d, "POST", "/v1/services", b"{\"name\": \"x\",".to_vec());
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("EOF"), "{body}");

    let unknown = br#"{"name":"x","task_template":{"container":{"image":"a","imgae":"b"}}}"#.to_vec();
    let (status, body) = raw(&d, "POST", "/v1/services", unknown);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "task_template.container.imgae");

    // A body over the limit is refused from its Content-Length, before it is sent
    // (sending it could race the refusal and break the pipe).
    {
        use std::io::{Read as _, Write as _};
        let mut sock = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST /v1/services HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            5 << 20
        );
        sock.write_all(head.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let _ = sock.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
        assert!(reply.contains("\"code\":\"too_large\""), "{reply}");
    }

    let (status, body) = raw(&d, "GET", "/v1/services?bogus=1", Vec::new());
    assert_eq!(status, 400, "{body}");
    let (status, body) = raw(&d, "GET", "/v1/nothing-here", Vec::new());
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));

    block_on(async {
        // Invalid specs name every bad field.
        let mut spec = ServiceSpec::new("bad name", "shoal/busybox");
        spec.task_template.resources.limits.memory_bytes = 1024;
        let e = c.create_service(&spec).await.unwrap_err();
        let ClientError::Api { status, field, details, .. } = e else { panic!("{e}") };
        assert_eq!((status, field.as_deref()), (422, Some("name")));
        assert!(
            details.iter().any(|f| f.field == "task_template.resources.limits.memory_bytes"),
            "{details:?}"
        );

        // A taken name and a taken published port.
        c.create_service(&ServiceSpec::new("web", "shoal/busybox")).await.unwrap();
        let (status, _, _, message) =
            api_error(c.create_service(&ServiceSpec::new("web", "x")).await.unwrap_err());
        assert_eq!(status, 409, "{message}");
        assert!(message.contains("exists already"), "{message}");
        let published = |name: &str| {
            let mut spec = ServiceSpec::new(name, "shoal/busybox");
            spec.endpoint_spec.ports.push(shoal_api::service::PortConfig {
                name: None,
                protocol: Default::default(),
                target_port: 80,
                published_port: Some(8080),
                publish_mode: Default::default(),
            });
            spec
        };
        c.create_service(&published("front")).await.unwrap();
        let (status, _, _, message) = api_error(c.create_service(&published("second")).await.unwrap_err());
        assert_eq!(status, 409, "{message}");
        assert!(message.contains("port 8080/tcp is published by service front already"), "{message}");

        // A service naming a network that does not exist.
        let mut spec = ServiceSpec::new("lost", "shoal/busybox");
        spec.task_template.networks.push(shoal_api::task_spec::NetworkAttachmentConfig {
            target: "nowhere".into(),
            aliases: Vec::new(),
        });
        let (status, code, _, message) = api_error(c.create_service(&spec).await.unwrap_err());
        assert_eq!((status, code.as_str()), (409, "in_use"), "{message}");
        assert!(message.contains("\"nowhere\", which does not exist"), "{message}");

        // Scaling a global service.
        let mut g = ServiceSpec::new("everywhere", "shoal/busybox");
        g.mode = ServiceMode::Global;
        c.create_service(&g).await.unwrap();
        let (status, code, _, _) = api_error(c.scale_service("everywhere", 3).await.unwrap_err());
        assert_eq!((status, code.as_str()), (422, "refused"));

        let names: Vec<_> =
            c.services(&ServiceFilter::default()).await.unwrap().into_iter().map(|s| s.spec.name).collect();
        assert_eq!(names, ["everywhere", "front", "web"], "nothing refused was written");
    });
}

#[test]
fn networks_secrets_configs_and_stacks() {
    let d = Daemon::init("m1");
    let c = d.client();
    block_on(async {
        let a = c.create_network(&NetworkSpec::new("front")).await.unwrap();
        let n = c.network("front").await.unwrap();
        assert_eq!(
            (n.id.as_str(), n.subnet.to_string(), n.vni),
            (a.id.as_str(), "10.0.0.0/24".to_owned(), 4096)
        );
        c.create_network(&NetworkSpec::new("back")).await.unwrap();
        assert_eq!(c.network("back").await.unwrap().subnet.to_string(), "10.0.1.0/24");

        let secret = PayloadSpec { name: "pw".into(), labels: BTreeMap::new(), data: b"hunter2".to_vec() };
        c.create_payload(PayloadKind::Secret, &secret).await.unwrap();
        let info = c.payload(PayloadKind::Secret, "pw").await.unwrap();
        assert_eq!((info.name.as_str(), info.size), ("pw", 7));
        c.create_payload(PayloadKind::Config, &PayloadSpec { name: "conf".into(), ..secret.clone() })
            .await
            .unwrap();
        assert_eq!(c.payloads(PayloadKind::Config).await.unwrap().len(), 1);

        // Only labels change; other data is refused with what to do instead.
        let labels = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        let update =
            shoal_api::PayloadUpdate { version: info.meta.version, labels: labels.clone(), data: None };
        c.update_payload(PayloadKind::Secret, "pw", &update).await.unwrap();
        let now = c.payload(PayloadKind::Secret, "pw").await.unwrap();
        assert_eq!((now.labels, now.size), (labels, 7));
        let (status, code, _, message) =
            api_error(c.update_payload(PayloadKind::Secret, "pw", &update).await.unwrap_err());
        assert_eq!((status, code.as_str()), (409, "conflict"), "{message}");
        let changed = shoal_api::PayloadUpdate {
            version: now.meta.version,
            labels: BTreeMap::new(),
            data: Some(b"hunter3".to_vec()),
        };
        let (status, _, _, message) =
            api_error(c.update_payload(PayloadKind::Secret, "pw", &changed).await.unwrap_err());
        assert_eq!(status, 409, "{message}");
        assert!(message.contains("secrets cannot change: create a new secret"), "{message}");
        assert!(message.contains("update the services") && !message.contains("hunter"), "{message}");
        let same = shoal_api::PayloadUpdate { data: Some(b"hunter2".to_vec()), ..changed };
        c.update_payload(PayloadKind::Secret, "pw", &same).await.unwrap();
        assert!(c.payload(PayloadKind::Secret, "pw").await.unwrap().labels.is_empty());

        // What uses a network or secret keeps it.
        let mut spec = ServiceSpec::new("web", "shoal/busybox");
        spec.task_template
            .networks
            .push(shoal_api::task_spec::NetworkAttachmentConfig { target: "front".into(), aliases: vec![] });
        c.create_service(&spec).await.unwrap();
        let (status, code, _, _) = api_error(c.remove_network("front").await.unwrap_err());
        assert_eq!((status, code.as_str()), (409, "in_use"));
        c.remove_service("web").await.unwrap();
        // The service's task holds an address on the network until the reaper
        // deletes it, a controller round after the service went.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Err(e) = c.remove_network("front").await {
            let (status, code, _, message) = api_error(e);
            assert_eq!((status, code.as_str()), (409, "in_use"), "{message}");
            assert!(std::time::Instant::now() < deadline, "the network is free within 30 s: {message}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.remove_payload(PayloadKind::Config, "conf").await.unwrap();
    });
    // Secret data never comes back, in any listing.
    for path in ["/v1/secrets", "/v1/secrets/pw", "/v1/cluster"] {
        let (status, body) = raw(&d, "GET", path, Vec::new());
        assert_eq!(status, 200);
        let text = body.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("aHVudGVyMg") && !text.contains("SHTKN"),
            "{path}: {text}"
        );
    }

    block_on(async {
        let compose = "
services:
  web: {image: shoal/busybox, ports: ['8080:80'], deploy: {replicas: 3}}
  db: {image: 'shoal/busybox:${DB_TAG:-1}'}
secrets:
  key: {file: ./key.txt}
";
        let files = BTreeMap::from([("/src/key.txt".to_owned(), shoal_api::wire::Base64(b"k".to_vec()))]);
        let deploy = StackDeploy { compose: compose.into(), dir: "/src".into(), env: BTreeMap::new(), files };
        let done = c.deploy_stack("shop", &deploy).await.unwrap();
        assert_eq!(
            done.created,
            ["network shop_default", "secret shop_key", "service shop_db", "service shop_web"]
        );
        assert_eq!(c.service("shop_db").await.unwrap().spec.task_template.container.image, "shoal/busybox:1");
        let stacks = c.stacks().await.unwrap();
        assert_eq!((stacks[0].name.as_str(), stacks[0].services), ("shop", 2));

        // A second deploy with a variable set updates one service only.
        let deploy2 = StackDeploy { env: BTreeMap::from([("DB_TAG".into(), "2".into())]), ..deploy.clone() };
        let done = c.deploy_stack("shop", &deploy2).await.unwrap();
        assert_eq!((done.created.len(), done.updated.as_slice()), (0, &["service shop_db".to_owned()][..]));

        // Errors name the key; a deploy that fails writes nothing.
        let bad = StackDeploy {
            compose: "services:\n  web: {image: x, deploy: {replicas: lots}}\n".into(),
            ..deploy.clone()
        };
        let (status, _, field, message) = api_error(c.deploy_stack("shop", &bad).await.unwrap_err());
        assert_eq!((status, field.as_deref()), (422, Some("services.web.deploy.replicas")), "{message}");
        let clash = StackDeploy {
            compose: "services:\n  a: {image: x}\n  b: {image: x, ports: ['8080:80']}\n".into(),
            ..deploy.clone()
        };
        let (status, _, _, message) = api_error(c.deploy_stack("other", &clash).await.unwrap_err());
        assert_eq!(status, 409, "{message}");
        assert!(message.contains("8080"), "{message}");
        assert!(c.service("other_a").await.is_err(), "no partial writes");

        // Tasks holding addresses on the stack's network do not stop its removal: the
        // network goes once they have let go.
        let web = TaskFilter { service: Some("shop_web".into()), ..TaskFilter::default() };
        tasks_until(&c, &web, "shop_web's tasks on shop_default", |ts| {
            ts.iter().any(|t| t.networks.iter().any(|n| !n.addresses.is_empty()))
        })
        .await;
        let removed = c.remove_stack("shop").await.unwrap();
        assert_eq!(removed.removed.len(), 4, "{removed:?}");
        assert!(c.network("shop_default").await.is_err(), "the network went too");
        assert!(c.stacks().await.unwrap().is_empty());
    });
}

#[test]
fn events_resume_from_an_index_after_a_disconnect() {
    let d = Daemon::init("m1");
    let c = d.client();
    block_on(async {
        let start = c.cluster(ReadOptions::default()).await.unwrap().raft.last_applied;
        let mut stream =
            c.events(&EventQuery { since: Some(start), kind: Some("service".into()) }).await.unwrap();
        c.create_service(&ServiceSpec::new("a", "x")).await.unwrap();
        c.create_network(&NetworkSpec::new("n")).await.unwrap();
        c.create_service(&ServiceSpec::new("b", "x")).await.unwrap();
        let first =
            tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(first.object.name(), Some("a"));
        drop(stream);

        // Written while nobody listened.
        c.create_service(&ServiceSpec::new("c", "x")).await.unwrap();
        let mut resumed =
            c.events(&EventQuery { since: Some(first.index), kind: Some("service".into()) }).await.unwrap();
        let mut names = Vec::new();
        while names.len() < 2 {
            let e = tokio::time::timeout(Duration::from_secs(10), resumed.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(e.index > first.index);
            names.push(e.object.name().unwrap().to_owned());
        }
        assert_eq!(names, ["b", "c"], "every event after the index, in order, services only");

        // A secret's event does not carry its data.
        let mut all =
            c.events(&EventQuery { kind: Some("secret".into()), ..Default::default() }).await.unwrap();
        let secret = PayloadSpec { name: "s".into(), labels: BTreeMap::new(), data: b"top".to_vec() };
        c.create_payload(PayloadKind::Secret, &secret).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), all.next()).await.unwrap().unwrap().unwrap();
        let shoal_api::stored::Object::Secret(s) = std::sync::Arc::unwrap_or_clone(e.object) else {
            panic!("a secret event")
        };
        assert!(s.spec.data.is_empty());

        let (status, code, _, _) = api_error(
            c.events(&EventQuery { kind: Some("bogus".into()), ..Default::default() }).await.err().unwrap(),
        );
        assert_eq!((status, code.as_str()), (400, "bad_request"));
    });
}

#[test]
fn tcp_needs_the_token_and_rotation_revokes_it() {
    let d = Daemon::init("m1");
    block_on(async {
        let token = d.client().api_token().await.unwrap().token;
        let (status, code, _, message) =
            api_error(d.tcp_client(None).services(&ServiceFilter::default()).await.unwrap_err());
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
        assert!(message.contains("Bearer"), "{message}");
        assert_eq!(
            api_error(
                d.tcp_client(Some("SHAPI-1-wrong")).services(&ServiceFilter::default()).await.unwrap_err()
            )
            .0,
            401
        );
        assert!(d.tcp_client(Some(&token)).services(&ServiceFilter::default()).await.unwrap().is_empty());

        let new = d.tcp_client(Some(&token)).rotate_api_token().await.unwrap().token;
        assert_ne!(new, token);
        assert_eq!(
            api_error(d.tcp_client(Some(&token)).nodes(ReadOptions::default()).await.unwrap_err()).0,
            401
        );
        assert_eq!(d.tcp_client(Some(&new)).nodes(ReadOptions::default()).await.unwrap().len(), 1);
    });
}

/// The TCP listener is HTTPS with the manager's certificate from the cluster CA; a
/// read-only token reads and nothing more; a manager's certificate stands in for the
/// admin token; an address that keeps failing is turned away for a while.
#[test]
fn tcp_is_https_with_scoped_tokens_client_certificates_and_a_limit_on_failures() {
    let d = Daemon::init("m1");
    // Plain HTTP gets no HTTP answer.
    {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(&d.api_addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /v1/services HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(!got.starts_with(b"HTTP/"), "plain HTTP was answered: {}", String::from_utf8_lossy(&got));
    }
    // Without the CA there is no client at all.
    let e = shoal_api::client::Client::new(shoal_api::client::Endpoint::Tcp {
        addr: d.api_addr.clone(),
        token: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("SHOAL_CA"), "{e}");
    block_on(async {
        let read_only = d.client().read_only_api_token().await.unwrap().token;
        assert!(read_only.starts_with("SHRO-1-"), "{read_only}");
        let reader = d.tcp_client(Some(&read_only));
        assert!(reader.services(&ServiceFilter::default()).await.unwrap().is_empty());
        assert_eq!(reader.nodes(ReadOptions::default()).await.unwrap().len(), 1);
        let spec = shoal_api::service::ServiceSpec::new("web", "busybox");
        let (status, code, _, _) = api_error(reader.create_service(&spec).await.unwrap_err());
        assert_eq!((status, code.as_str()), (403, "forbidden"));
        assert_eq!(api_error(reader.rotate_api_token().await.unwrap_err()).0, 403);
        assert_eq!(api_error(reader.join_tokens().await.unwrap_err()).0, 403, "tokens are secrets");
        assert_eq!(api_error(reader.api_token().await.unwrap_err()).0, 403);
        // The manager's own certificate (a client certificate from the cluster CA).
        let certs = d.dir.join("certs");
        let manager = shoal_pki::Credentials::load(&certs).unwrap().unwrap();
        let admin = d.tls_client(None, &manager);
        admin.create_service(&spec).await.unwrap();
        assert_eq!(reader.services(&ServiceFilter::default()).await.unwrap().len(), 1);
        // A rotated read-only token stops working.
        let rotated = d.client().rotate_read_only_api_token().await.unwrap().token;
        assert_eq!(api_error(reader.nodes(ReadOptions::default()).await.unwrap_err()).0, 401);
        // Failures past the limit (the rotated token's was one): the address is
        // turned away, good token or not.
        for _ in 1..shoal_manager::http::access::MAX_FAILURES {
            let e = d.tcp_client(Some("SHAPI-1-wrong")).nodes(ReadOptions::default()).await.unwrap_err();
            assert_eq!(api_error(e).0, 401);
        }
        let e = d.tcp_client(Some(&rotated)).nodes(ReadOptions::default()).await.unwrap_err();
        let (status, code, _, message) = api_error(e);
        assert_eq!((status, code.as_str()), (429, "too_many_failures"), "{message}");
    });
    // The refusals were logged, without the token.
    let log = std::fs::read_to_string(d.dir.join("err")).unwrap();
    assert!(log.contains("refused an API call"), "no log of refusals");
    assert!(!log.contains("SHAPI-1-wrong"), "a token was logged");
}

#[test]
fn the_served_openapi_document_is_the_committed_one() {
    let d = Daemon::init("m1");
    let served = block_on(d.client().openapi()).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, committed);
    for path in [
        "/v1/services",
        "/v1/services/{id}",
        "/v1/stacks/{name}",
        "/v1/events",
        "/v1/cluster/api-token/rotate",
    ] {
        assert!(served["paths"][path].is_object(), "{path} is documented");
    }
}

#[test]
fn the_client_pages_counts_and_long_polls_a_daemon() {
    let d = Daemon::init("m1");
    let c = d.client();
    block_on(async {
        for name in ["a", "b", "c"] {
            let mut spec = ServiceSpec::new(name, "shoal/busybox");
            spec.mode = ServiceMode::Replicated { replicas: 2 };
            c.create_service(&spec).await.unwrap();
        }
        // Pages of two: a cursor on the first, none on the last.
        let first = c
            .services_page(&ServiceFilter { limit: Some(2), status: true, ..Default::default() })
            .await
            .unwrap();
        let names = |p: &shoal_api::client::Page<shoal_api::wire::ServiceWithStatus>| -> Vec<String> {
            p.items.iter().map(|s| s.service.spec.name.clone()).collect()
        };
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(first.items[0].service_status.unwrap().desired_tasks, 2);
        let cursor = first.next_cursor.clone().expect("a next page");
        let last = c
            .services_page(&ServiceFilter { limit: Some(2), cursor: Some(cursor), ..Default::default() })
            .await
            .unwrap();
        assert_eq!((names(&last), last.next_cursor), (vec!["c".to_owned()], None));

        // Every task, a page of one at a time, once each. The orchestrator makes
        // the six tasks after the creates return, so wait for them first.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.tasks(&TaskFilter::default()).await.unwrap().len() < 6 {
            assert!(std::time::Instant::now() < deadline, "six tasks within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let paged = c.tasks_paged(&TaskFilter::default(), 1).await.unwrap();
        let ids: std::collections::BTreeSet<&str> = paged.iter().map(|t| t.id.as_str()).collect();
        assert!(paged.len() >= 6, "every task: {}", paged.len());
        assert_eq!(paged.len(), ids.len(), "no task twice");

        // A long poll: nothing changes a service, so it comes back at its timeout
        // with the same index; a bad cursor is a 400 naming it. The index waited on
        // is the services' own: `first` (with `status`) also counts tasks and nodes.
        let services = c.services_page(&ServiceFilter::default()).await.unwrap();
        let filter =
            ServiceFilter { wait_index: Some(services.index), wait: Some("1s".into()), ..Default::default() };
        let started = std::time::Instant::now();
        let same = c.services_page(&filter).await.unwrap();
        assert_eq!(same.index, services.index);
        assert!(started.elapsed() >= Duration::from_secs(1));
        let bad = TaskFilter { cursor: Some("v1.nope".into()), ..Default::default() };
        let (status, _, field, _) = api_error(c.tasks_page(&bad).await.unwrap_err());
        assert_eq!((status, field.as_deref()), (400, Some("cursor")));
    });
}
