//! Mapping tests: the CLI's bodies, round trips, refusals by name.

use std::time::Duration;

use shoal_api::ServiceSpec;
use shoal_api::service::{PortConfig, Protocol, PublishMode, UpdateOrder};
use shoal_api::task_spec::{FileReference, HealthCheck, Mount, NetworkAttachmentConfig};

use super::types as d;
use super::{to_docker, to_shoal};
use crate::store::Store;

/// What `docker service create --name web -p 8080:80 --replicas 2 --update-monitor 1s
/// shoal/busybox sleep 1000` (20.10) sends.
const CLI_CREATE: &str = r#"{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"shoal/busybox",
"Args":["sleep","1000"],"Init":false,"Privileges":{"CredentialSpec":null,"SELinuxContext":null},"DNSConfig":{},
"Isolation":"default"},"Resources":{"Limits":{},"Reservations":{}},"RestartPolicy":{"Condition":"any","MaxAttempts":0},
"Placement":{},"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":2}},
"UpdateConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":1000000000,"MaxFailureRatio":0,"Order":"stop-first"},
"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]}}"#;

fn parse(body: &str) -> Result<d::ServiceSpec, String> {
    let de = &mut serde_json::Deserializer::from_str(body);
    serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn map(body: &str) -> Result<ServiceSpec, String> {
    to_shoal::service_spec(parse(body)?, &Store::new(), None).map_err(|e| e.message)
}

#[test]
fn the_cli_create_body_maps() {
    let spec = map(CLI_CREATE).expect("maps");
    assert_eq!(spec.name, "web");
    assert_eq!(spec.mode, shoal_api::ServiceMode::Replicated { replicas: 2 });
    assert_eq!(spec.task_template.container.args, ["sleep", "1000"]);
    assert_eq!(spec.update_config.monitor, Duration::from_secs(1));
    assert_eq!(spec.update_config.progress_deadline, Duration::from_secs(600));
    assert_eq!(spec.endpoint_spec.ports, [PortConfig::ingress(80, Some(8080), Protocol::Tcp)]);
    assert_eq!(spec.task_template.restart_policy, Default::default());
    assert_eq!(spec.task_template.container.stop_grace_period, Duration::from_secs(10));
}

#[test]
fn a_minimal_body_gets_swarm_defaults() {
    let spec = map(r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"busybox"}},"EndpointSpec":{}}"#)
        .expect("maps");
    assert_eq!(spec, ServiceSpec::new("x", "busybox"));
}

/// A spec using every mapped field survives Shoal → Docker → JSON → Shoal, and a
/// Shoal-only setting comes from the current spec.
#[test]
fn specs_round_trip() {
    let mut spec = ServiceSpec::new("api", "registry.local:5000/api:1.2");
    let c = &mut spec.task_template.container;
    c.command = vec!["/bin/api".into()];
    c.args = vec!["--port".into(), "80".into()];
    c.env = vec!["A=1".into()];
    c.workdir = Some("/srv".into());
    c.user = Some("1000:1000".into());
    c.hostname = Some("api-host".into());
    c.labels.insert("k".into(), "v".into());
    c.mounts = vec![
        Mount::Bind { source: "/data".into(), target: "/data".into(), read_only: true },
        Mount::Volume { source: "cache".into(), target: "/cache".into(), read_only: false, no_copy: false },
        Mount::Tmpfs { target: "/tmp".into(), size_bytes: 1 << 20, mode: Some(0o700) },
    ];
    c.healthcheck = Some(HealthCheck::new(vec!["CMD-SHELL".into(), "true".into()]));
    c.stop_signal = Some("SIGINT".into());
    c.stop_grace_period = Duration::from_secs(3);
    c.read_only = true;
    c.secrets = vec![FileReference {
        target: Some("/etc/key".into()),
        uid: 1,
        gid: 2,
        mode: 0o400,
        ..FileReference::new("key")
    }];
    c.configs = vec![FileReference::new("conf")];
    spec.task_template.resources.limits.memory_bytes = 64 << 20;
    spec.task_template.resources.limits.pids = 100;
    spec.task_template.resources.reservations.nano_cpus = 500_000_000;
    spec.task_template.restart_policy.condition = shoal_api::task_spec::RestartCondition::OnFailure;
    spec.task_template.restart_policy.max_attempts = 3;
    spec.task_template.restart_policy.window = Duration::from_secs(60);
    spec.task_template.placement.constraints = vec!["node.role==manager".into()];
    spec.task_template.placement.preferences =
        vec![shoal_api::task_spec::PlacementPreference { spread: "node.labels.zone".into() }];
    spec.task_template.placement.max_replicas = 2;
    spec.task_template.networks =
        vec![NetworkAttachmentConfig { target: "front".into(), aliases: vec!["www".into()] }];
    spec.task_template.force_update = 4;
    spec.mode = shoal_api::ServiceMode::Replicated { replicas: 3 };
    spec.update_config.order = UpdateOrder::StartFirst;
    spec.update_config.delay = Duration::from_secs(2);
    spec.update_config.progress_deadline = Duration::from_secs(42);
    spec.rollback_config.parallelism = 0;
    spec.endpoint_spec.ports = vec![PortConfig {
        name: Some("http".into()),
        protocol: Protocol::Udp,
        target_port: 53,
        published_port: None,
        publish_mode: PublishMode::Host,
    }];
    spec.labels.insert("com.docker.stack.namespace".into(), "ns".into());

    let store = Store::new();
    let docker = to_docker::service_spec(&spec, &store);
    let json = serde_json::to_string(&docker).expect("serializes");
    assert!(json.contains(r#""StopGracePeriod":3000000000"#), "{json}");
    let back = to_shoal::service_spec(parse(&json).expect("parses"), &store, Some(&spec)).expect("maps");
    assert_eq!(back, spec);
    // Without a current spec, the Shoal-only deadline is the default.
    let fresh = to_shoal::service_spec(parse(&json).expect("parses"), &store, None).expect("maps");
    assert_eq!(fresh.update_config.progress_deadline, Duration::from_secs(600));
}

#[test]
fn jobs_and_global_modes_round_trip() {
    let store = Store::new();
    for mode in [
        shoal_api::ServiceMode::Global,
        shoal_api::ServiceMode::GlobalJob,
        shoal_api::ServiceMode::ReplicatedJob { max_concurrent: 2, total_completions: Some(5) },
    ] {
        let mut spec = ServiceSpec::new("j", "busybox");
        spec.mode = mode;
        let json = serde_json::to_string(&to_docker::service_spec(&spec, &store)).expect("serializes");
        let back = to_shoal::service_spec(parse(&json).expect("parses"), &store, Some(&spec)).expect("maps");
        assert_eq!(back.mode, mode, "{json}");
    }
}

#[test]
fn unknown_fields_are_named() {
    let e = parse(r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"b","Privileged":true}}}"#)
        .unwrap_err();
    assert!(e.starts_with("TaskTemplate.ContainerSpec.Privileged: unknown field `Privileged`"), "{e}");
}

#[test]
fn what_shoal_cannot_honour_is_refused_by_name() {
    let with = |container: &str, task: &str| {
        format!(r#"{{"Name":"x","TaskTemplate":{{"ContainerSpec":{{"Image":"b"{container}}}{task}}}}}"#)
    };
    let cases = [
        (
            with(r#","Privileges":{"CredentialSpec":{"File":"spec.json"}}"#, ""),
            "TaskTemplate.ContainerSpec.Privileges.CredentialSpec: ",
        ),
        (with(r#","Isolation":"hyperv""#, ""), "TaskTemplate.ContainerSpec.Isolation: "),
        (with(r#","TTY":true"#, ""), "TaskTemplate.ContainerSpec.TTY: "),
        (with(r#","Init":true"#, ""), "TaskTemplate.ContainerSpec.Init: "),
        (with(r#","CapabilityAdd":["CAP_NET_ADMIN"]"#, ""), "TaskTemplate.ContainerSpec.CapabilityAdd: "),
        (with(r#","Hosts":["1.2.3.4 db"]"#, ""), "TaskTemplate.ContainerSpec.Hosts: "),
        (with(r#","DNSConfig":{"Nameservers":["1.1.1.1"]}"#, ""), "TaskTemplate.ContainerSpec.DNSConfig: "),
        (
            with(r#","Mounts":[{"Type":"npipe","Source":"a","Target":"b"}]"#, ""),
            "TaskTemplate.ContainerSpec.Mounts[0].Type: ",
        ),
        (
            with(
                r#","Mounts":[{"Type":"bind","Source":"/a","Target":"/b","BindOptions":{"Propagation":"shared"}}]"#,
                "",
            ),
            "TaskTemplate.ContainerSpec.Mounts[0].BindOptions.Propagation: ",
        ),
        (with("", r#","LogDriver":{"Name":"syslog"}"#), "TaskTemplate.LogDriver: "),
        (with("", r#","Runtime":"plugin""#), "TaskTemplate.Runtime: "),
        (
            with("", r#","Placement":{"Platforms":[{"Architecture":"amd64","OS":"windows"}]}"#),
            "TaskTemplate.Placement.Platforms: ",
        ),
        (
            with(
                "",
                r#","Resources":{"Reservations":{"GenericResources":[{"DiscreteResourceSpec":{"Kind":"gpu","Value":1}}]}}"#,
            ),
            "TaskTemplate.Resources.Reservations.GenericResources: ",
        ),
        (
            with("", r#","Networks":[{"Target":"n","DriverOpts":{"a":"b"}}]"#),
            "TaskTemplate.Networks[0].DriverOpts: ",
        ),
    ];
    for (body, field) in cases {
        let e = map(&body).expect_err(&body);
        assert!(e.starts_with(field), "{body}: {e}");
    }
    // The empty values the CLI always sends pass.
    map(&with(
        r#","Privileges":{"CredentialSpec":null,"SELinuxContext":null},"Init":false,"DNSConfig":{},"Isolation":"default""#,
        r#","Placement":{},"Resources":{"Limits":{},"Reservations":{}},"LogDriver":null,"Runtime":"container""#,
    ))
    .expect("defaults pass");
}

#[test]
fn secrets_by_name_map_to_file_references() {
    let body = with_secret(
        r#"{"File":{"Name":"db","UID":"0","GID":"0","Mode":292},"SecretID":"","SecretName":"db"}"#,
    );
    let spec = map(&body).expect("maps");
    assert_eq!(spec.task_template.container.secrets, [FileReference::new("db")]);
    let e = map(&with_secret(r#"{"File":{"Name":"db"},"SecretID":"nope","SecretName":"db"}"#)).unwrap_err();
    assert!(e.contains("Secrets[0]: secret not found: nope"), "{e}");
}

fn with_secret(r: &str) -> String {
    format!(r#"{{"Name":"x","TaskTemplate":{{"ContainerSpec":{{"Image":"b","Secrets":[{r}]}}}}}}"#)
}

#[test]
fn deprecated_service_networks_are_used_alone_and_refused_beside_the_templates() {
    let spec =
        map(r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"b"}},"Networks":[{"Target":"front"}]}"#)
            .expect("maps");
    assert_eq!(spec.task_template.networks[0].target, "front");
    let e = map(
        r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"b"},"Networks":[{"Target":"a"}]},"Networks":[{"Target":"b"}]}"#,
    )
    .unwrap_err();
    assert!(e.starts_with("Networks: "), "{e}");
}

/// A stored service shows its allocated ports (the PORTS column) and status; a
/// global task has slot 0.
#[test]
fn stored_objects_render_as_docker_shows_them() {
    use shoal_api::object::Meta;
    use shoal_api::service::{ServiceEndpoint, UpdateState, UpdateStatus};
    use shoal_api::task::TaskStatus;
    use shoal_api::{Service, Task, TaskState};

    let now = chrono::DateTime::from_timestamp(1_700_000_000, 5).expect("a time");
    let mut spec = ServiceSpec::new("web", "busybox");
    spec.endpoint_spec.ports = vec![PortConfig::ingress(80, None, Protocol::Tcp)];
    let svc = Service {
        id: "s".repeat(25),
        meta: Meta { version: 7, ..Meta::new(now) },
        spec: spec.clone(),
        previous_spec: None,
        update_status: Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            started_at: Some(now),
            completed_at: None,
            message: "manually requested rollback".into(),
        }),
        endpoint: ServiceEndpoint {
            virtual_ips: Vec::new(),
            ports: vec![PortConfig::ingress(80, Some(30000), Protocol::Tcp)],
        },
    };
    let store = Store::new();
    let json = serde_json::to_value(to_docker::service(&svc, &store, None)).expect("serializes");
    assert_eq!(json["Version"]["Index"], 7);
    assert_eq!(json["CreatedAt"], "2023-11-14T22:13:20.000000005Z");
    assert_eq!(json["Endpoint"]["Ports"][0]["PublishedPort"], 30000);
    assert_eq!(json["Spec"]["EndpointSpec"]["Ports"][0]["PublishedPort"], 0);
    assert_eq!(json["UpdateStatus"]["State"], "rollback_started");
    assert!(json.get("ServiceStatus").is_none() && json.get("PreviousSpec").is_none());

    let task = Task {
        id: "t".repeat(25),
        meta: Meta::new(now),
        service_id: svc.id.clone(),
        slot: None,
        node_id: Some("n".repeat(25)),
        spec: spec.task_template.clone(),
        spec_version: 7,
        desired_state: TaskState::Running,
        status: TaskStatus {
            error: Some("no suitable node".into()),
            ..TaskStatus::new(TaskState::Pending, now, "pending")
        },
        networks: Vec::new(),
        job_iteration: None,
    };
    let json = serde_json::to_value(to_docker::task(&task, &store)).expect("serializes");
    assert_eq!(json["Slot"], 0);
    assert_eq!(json["NodeID"], "n".repeat(25));
    assert_eq!(json["Status"]["State"], "pending");
    assert_eq!(json["Status"]["Err"], "no suitable node");
    assert_eq!(json["DesiredState"], "running");
    assert_eq!(json["Spec"]["ContainerSpec"]["Image"], "busybox");
}

#[test]
fn a_stack_volume_keeps_only_its_stack_label() {
    // What `docker stack deploy` sends for a named volume `data` of stack `app`.
    let with_labels = |labels: &str| {
        CLI_CREATE.replace(
            r#""Isolation":"default"}"#,
            &format!(
                r#""Isolation":"default","Mounts":[{{"Type":"volume","Source":"app_data","Target":"/data",
                "VolumeOptions":{{"Labels":{labels}}}}}]}}"#
            ),
        )
    };
    let spec =
        map(&with_labels(r#"{"com.docker.stack.namespace":"app"}"#)).expect("the stack's label passes");
    assert_eq!(
        spec.task_template.container.mounts,
        [Mount::Volume {
            source: "app_data".into(),
            target: "/data".into(),
            read_only: false,
            no_copy: false
        }]
    );
    let e = map(&with_labels(r#"{"com.docker.stack.namespace":"app","backup":"daily"}"#)).unwrap_err();
    assert!(e.contains("Mounts[0].VolumeOptions.Labels"), "{e}");
}

#[test]
fn no_copy_maps_both_ways() {
    let body = CLI_CREATE.replace(
        r#""Isolation":"default"}"#,
        r#""Isolation":"default","Mounts":[{"Type":"volume","Source":"v","Target":"/etc","VolumeOptions":{"NoCopy":true}}]}"#,
    );
    let spec = map(&body).expect("maps");
    let want = Mount::Volume { source: "v".into(), target: "/etc".into(), read_only: false, no_copy: true };
    assert_eq!(spec.task_template.container.mounts, [want]);
    let shown = to_docker::task_spec(&spec.task_template, &Store::new());
    let mount = &shown.container_spec.as_ref().unwrap().mounts.as_ref().unwrap()[0];
    assert_eq!(mount.volume_options.as_ref().and_then(|v| v.no_copy), Some(true));
}

#[test]
fn a_health_check_maps_under_dockers_own_key() {
    // `docker service create --health-cmd true --health-interval 5s ...` (20.10).
    let body = CLI_CREATE.replace(
        r#""Isolation":"default"}"#,
        r#""Isolation":"default","Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000}}"#,
    );
    let spec = map(&body).expect("maps");
    let h = spec.task_template.container.healthcheck.clone().expect("a health check");
    assert_eq!(
        (h.test.as_slice(), h.interval),
        (&["CMD-SHELL".to_owned(), "true".to_owned()][..], Duration::from_secs(5))
    );
    let shown = serde_json::to_value(to_docker::task_spec(&spec.task_template, &Store::new())).unwrap();
    assert_eq!(shown["ContainerSpec"]["Healthcheck"]["Interval"], 5_000_000_000i64);
}
