//! Validation accepts good specs and rejects each bad field with its path.

use std::time::Duration;

use shoal_api::cluster::ClusterSpec;
use shoal_api::network::NetworkSpec;
use shoal_api::secret::PayloadSpec;
use shoal_api::service::*;
use shoal_api::task_spec::*;
use shoal_api::validate::{Validate, check_service_update};

mod common;
use common::full_spec;

#[test]
fn good_specs_pass() {
    full_spec().validate().unwrap();
    ServiceSpec::new("a", "busybox").validate().unwrap();
    let mut s = full_spec();
    s.mode = ServiceMode::Global;
    s.task_template.placement.max_replicas = 0;
    s.validate().unwrap();
    let mut s = full_spec();
    s.name = "stack_web-1".into();
    s.endpoint_spec.mode = EndpointMode::Dnsrr;
    for p in &mut s.endpoint_spec.ports {
        p.publish_mode = PublishMode::Host;
    }
    s.validate().unwrap();
    s.name = "x".repeat(63);
    s.validate().unwrap();
}

type Mutation = fn(&mut ServiceSpec);

/// (what is wrong, how to make it wrong, the field named, a phrase of the message)
const CASES: &[(&str, Mutation, &str, &str)] = &[
    ("empty name", |s| s.name = String::new(), "name", "must not be empty"),
    ("long name", |s| s.name = "a".repeat(64), "name", "at most 63"),
    ("dotted name", |s| s.name = "web.app".into(), "name", "only letters"),
    ("leading dash", |s| s.name = "-web".into(), "name", "start and end"),
    ("trailing underscore", |s| s.name = "web_".into(), "name", "start and end"),
    (
        "label with space",
        |s| {
            s.labels.insert("a b".into(), "c".into());
        },
        r#"labels["a b"]"#,
        "no white space",
    ),
    (
        "empty image",
        |s| s.task_template.container.image = String::new(),
        "task_template.container.image",
        "empty",
    ),
    (
        "bad image",
        |s| s.task_template.container.image = "Web:1".into(),
        "task_template.container.image",
        "lower case",
    ),
    (
        "image with space",
        |s| s.task_template.container.image = "web:bad tag".into(),
        "task_template.container.image",
        "invalid image reference",
    ),
    (
        "env without =",
        |s| s.task_template.container.env.push("JUSTNAME".into()),
        "task_template.container.env[1]",
        "NAME=VALUE",
    ),
    (
        "env empty name",
        |s| s.task_template.container.env.push("=x".into()),
        "task_template.container.env[1]",
        "not a valid variable name",
    ),
    (
        "env digit name",
        |s| s.task_template.container.env.push("1X=x".into()),
        "task_template.container.env[1]",
        "not a valid variable name",
    ),
    (
        "env NUL",
        |s| s.task_template.container.env.push("X=a\0b".into()),
        "task_template.container.env[1]",
        "NUL",
    ),
    (
        "relative workdir",
        |s| s.task_template.container.workdir = Some("srv".into()),
        "task_template.container.workdir",
        "absolute",
    ),
    (
        "workdir ..",
        |s| s.task_template.container.workdir = Some("/srv/../etc".into()),
        "task_template.container.workdir",
        "'..'",
    ),
    (
        "bad user",
        |s| s.task_template.container.user = Some("a:b:c".into()),
        "task_template.container.user",
        "uid:gid",
    ),
    (
        "bad hostname",
        |s| s.task_template.container.hostname = Some("web_host".into()),
        "task_template.container.hostname",
        "host name",
    ),
    (
        "relative mount target",
        |s| {
            s.task_template.container.mounts[0] =
                Mount::Tmpfs { target: "tmp".into(), size_bytes: 0, mode: None }
        },
        "task_template.container.mounts[0].target",
        "absolute",
    ),
    (
        "mount on root",
        |s| {
            s.task_template.container.mounts[0] =
                Mount::Tmpfs { target: "/".into(), size_bytes: 0, mode: None }
        },
        "task_template.container.mounts[0].target",
        "root",
    ),
    (
        "twice mounted",
        |s| {
            s.task_template.container.mounts[1] =
                Mount::Tmpfs { target: "/ssl".into(), size_bytes: 0, mode: None }
        },
        "task_template.container.mounts[1].target",
        "mounted twice",
    ),
    (
        "relative bind",
        |s| {
            s.task_template.container.mounts[0] =
                Mount::Bind { source: "etc".into(), target: "/e".into(), read_only: false }
        },
        "task_template.container.mounts[0].source",
        "absolute",
    ),
    (
        "bad volume name",
        |s| {
            s.task_template.container.mounts[1] =
                Mount::Volume { source: "a/b".into(), target: "/d".into(), read_only: false, no_copy: false }
        },
        "task_template.container.mounts[1].source",
        "only letters",
    ),
    (
        "bad tmpfs mode",
        |s| {
            s.task_template.container.mounts[2] =
                Mount::Tmpfs { target: "/t".into(), size_bytes: 0, mode: Some(0o17777) }
        },
        "task_template.container.mounts[2].mode",
        "permission",
    ),
    (
        "health test kind",
        |s| s.task_template.container.healthcheck.as_mut().unwrap().test = vec!["curl".into()],
        "task_template.container.healthcheck.test",
        "CMD, CMD-SHELL or NONE",
    ),
    (
        "health CMD alone",
        |s| s.task_template.container.healthcheck.as_mut().unwrap().test = vec!["CMD".into()],
        "task_template.container.healthcheck.test",
        "program",
    ),
    (
        "health CMD-SHELL two",
        |s| {
            s.task_template.container.healthcheck.as_mut().unwrap().test =
                vec!["CMD-SHELL".into(), "a".into(), "b".into()]
        },
        "task_template.container.healthcheck.test",
        "exactly one",
    ),
    (
        "health interval 0",
        |s| s.task_template.container.healthcheck.as_mut().unwrap().interval = Duration::ZERO,
        "task_template.container.healthcheck.interval",
        "1ms",
    ),
    (
        "health timeout 0",
        |s| s.task_template.container.healthcheck.as_mut().unwrap().timeout = Duration::ZERO,
        "task_template.container.healthcheck.timeout",
        "1ms",
    ),
    (
        "health retries 0",
        |s| s.task_template.container.healthcheck.as_mut().unwrap().retries = 0,
        "task_template.container.healthcheck.retries",
        "at least 1",
    ),
    (
        "bad stop signal",
        |s| s.task_template.container.stop_signal = Some("SIGFOO".into()),
        "task_template.container.stop_signal",
        "not a signal",
    ),
    (
        "signal 99",
        |s| s.task_template.container.stop_signal = Some("99".into()),
        "task_template.container.stop_signal",
        "not a signal",
    ),
    (
        "secret bad name",
        |s| s.task_template.container.secrets[0].source = "a b".into(),
        "task_template.container.secrets[0].source",
        "only letters",
    ),
    (
        "config mode",
        |s| s.task_template.container.configs[0].mode = 0o20000,
        "task_template.container.configs[0].mode",
        "permission",
    ),
    (
        "secret target ..",
        |s| s.task_template.container.secrets[0].target = Some("../x".into()),
        "task_template.container.secrets[0].target",
        "'..'",
    ),
    (
        "signal past RTMAX",
        |s| s.task_template.container.stop_signal = Some("SIGRTMIN+31".into()),
        "task_template.container.stop_signal",
        "not a signal",
    ),
    (
        "memory too small",
        |s| {
            s.task_template.resources.limits.memory_bytes = 1 << 20;
            s.task_template.resources.reservations.memory_bytes = 0;
        },
        "task_template.resources.limits.memory_bytes",
        "at least 6MiB",
    ),
    (
        "memory absurd",
        |s| s.task_template.resources.limits.memory_bytes = u64::MAX,
        "task_template.resources.limits.memory_bytes",
        "larger than any machine",
    ),
    (
        "cpu too small",
        |s| {
            s.task_template.resources.limits.nano_cpus = 1_000;
            s.task_template.resources.reservations.nano_cpus = 0;
        },
        "task_template.resources.limits.nano_cpus",
        "0.01",
    ),
    (
        "cpu too large",
        |s| s.task_template.resources.limits.nano_cpus = 2_000 * 1_000_000_000,
        "task_template.resources.limits.nano_cpus",
        "1024",
    ),
    (
        "reserve over limit mem",
        |s| s.task_template.resources.reservations.memory_bytes = 512 << 20,
        "task_template.resources.reservations.memory_bytes",
        "must not exceed",
    ),
    (
        "reserve over limit cpu",
        |s| s.task_template.resources.reservations.nano_cpus = 1_600_000_000,
        "task_template.resources.reservations.nano_cpus",
        "must not exceed",
    ),
    (
        "pids too many",
        |s| s.task_template.resources.limits.pids = 1 << 30,
        "task_template.resources.limits.pids",
        "pid_max",
    ),
    (
        "restart delay",
        |s| s.task_template.restart_policy.delay = Duration::from_secs(90_000),
        "task_template.restart_policy.delay",
        "24h",
    ),
    (
        "constraint syntax",
        |s| s.task_template.placement.constraints.push("zone=a".into()),
        "task_template.placement.constraints[2]",
        "no operator",
    ),
    (
        "constraint key",
        |s| s.task_template.placement.constraints.push("node.colour==red".into()),
        "task_template.placement.constraints[2]",
        "unknown key",
    ),
    (
        "constraint role",
        |s| s.task_template.placement.constraints.push("node.role==king".into()),
        "task_template.placement.constraints[2]",
        "manager or worker",
    ),
    (
        "spread key",
        |s| {
            s.task_template.placement.preferences.push(PlacementPreference { spread: "node.hostname".into() })
        },
        "task_template.placement.preferences[1].spread",
        "is not node.labels.<key>",
    ),
    (
        "global max replicas",
        |s| s.mode = ServiceMode::Global,
        "task_template.placement.max_replicas",
        "replicated services",
    ),
    (
        "too many replicas",
        |s| s.mode = ServiceMode::Replicated { replicas: 1_000_000 },
        "mode.replicas",
        "more than",
    ),
    (
        "job concurrency 0",
        |s| s.mode = ServiceMode::ReplicatedJob { max_concurrent: 0, total_completions: None },
        "mode.max_concurrent",
        "at least 1",
    ),
    (
        "job completions 0",
        |s| s.mode = ServiceMode::ReplicatedJob { max_concurrent: 1, total_completions: Some(0) },
        "mode.total_completions",
        "at least 1",
    ),
    (
        "network twice",
        |s| {
            let n = s.task_template.networks[0].clone();
            s.task_template.networks.push(n);
        },
        "task_template.networks[1].target",
        "twice",
    ),
    (
        "network empty",
        |s| s.task_template.networks[0].target = String::new(),
        "task_template.networks[0].target",
        "must name",
    ),
    (
        "alias bad",
        |s| s.task_template.networks[0].aliases.push("-a.b".into()),
        "task_template.networks[0].aliases[1]",
        "not a DNS name",
    ),
    (
        "alias empty label",
        |s| s.task_template.networks[0].aliases.push("a..b".into()),
        "task_template.networks[0].aliases[1]",
        "not a DNS name",
    ),
    (
        "failure ratio",
        |s| s.update_config.max_failure_ratio = 1.5,
        "update_config.max_failure_ratio",
        "between 0 and 1",
    ),
    (
        "failure ratio negative",
        |s| s.update_config.max_failure_ratio = -0.1,
        "update_config.max_failure_ratio",
        "between 0 and 1",
    ),
    (
        "rollback of rollback",
        |s| s.rollback_config.failure_action = FailureAction::Rollback,
        "rollback_config.failure_action",
        "cannot itself roll back",
    ),
    (
        "zero deadline",
        |s| s.update_config.progress_deadline = Duration::ZERO,
        "update_config.progress_deadline",
        "more than 0s",
    ),
    ("parallelism huge", |s| s.update_config.parallelism = 1 << 40, "update_config.parallelism", "at most"),
    (
        "target port 0",
        |s| s.endpoint_spec.ports[0].target_port = 0,
        "endpoint_spec.ports[0].target_port",
        "between 1 and 65535",
    ),
    (
        "published port 0",
        |s| s.endpoint_spec.ports[0].published_port = Some(0),
        "endpoint_spec.ports[0].published_port",
        "between 1 and 65535",
    ),
    (
        "duplicate port",
        |s| {
            let mut p = s.endpoint_spec.ports[0].clone();
            p.target_port = 81;
            s.endpoint_spec.ports.push(p);
        },
        "endpoint_spec.ports[2].published_port",
        "published twice",
    ),
    (
        "host mode needs port",
        |s| s.endpoint_spec.ports[1].published_port = None,
        "endpoint_spec.ports[1].published_port",
        "required in host mode",
    ),
    (
        "dnsrr with ingress",
        |s| s.endpoint_spec.mode = EndpointMode::Dnsrr,
        "endpoint_spec.ports[0].publish_mode",
        "need a VIP",
    ),
    (
        "port name",
        |s| s.endpoint_spec.ports[0].name = Some("h t".into()),
        "endpoint_spec.ports[0].name",
        "only letters",
    ),
];

#[test]
fn each_bad_field_is_named() {
    assert!(CASES.len() >= 50, "keep the table broad");
    for (what, mutate, field, phrase) in CASES {
        let mut spec = full_spec();
        mutate(&mut spec);
        let errors = match spec.validate() {
            Ok(()) => panic!("{what}: accepted"),
            Err(e) => e,
        };
        let hit = errors.0.iter().find(|e| e.field == *field);
        let Some(hit) = hit else { panic!("{what}: no error for {field}; got {errors}") };
        assert!(hit.message.contains(phrase), "{what}: {field}: {:?} lacks {phrase:?}", hit.message);
        assert_eq!(errors.0.len(), 1, "{what}: one mistake, one error; got {errors}");
    }
}

#[test]
fn all_problems_are_reported_together() {
    let mut s = full_spec();
    s.name = String::new();
    s.task_template.container.image = String::new();
    s.endpoint_spec.ports[0].target_port = 0;
    let e = s.validate().unwrap_err();
    let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["name", "task_template.container.image", "endpoint_spec.ports[0].target_port"]);
    assert!(e.to_string().starts_with("name: must not be empty; "), "{e}");
}

#[test]
fn updates_cannot_rename_or_change_mode() {
    let old = full_spec();
    let mut new = old.clone();
    new.mode = ServiceMode::Replicated { replicas: 9 };
    check_service_update(&old, &new).unwrap();
    new.mode = ServiceMode::Global;
    new.task_template.placement.max_replicas = 0;
    let e = check_service_update(&old, &new).unwrap_err();
    assert_eq!(e.first().field, "mode");
    assert!(e.first().message.contains("remove and recreate"), "{e}");
    let mut renamed = old.clone();
    renamed.name = "other".into();
    assert_eq!(check_service_update(&old, &renamed).unwrap_err().first().field, "name");
}

#[test]
fn other_specs() {
    let mut n = NetworkSpec::new("front");
    n.validate().unwrap();
    n.subnet = Some("10.0.0.0/30".parse().unwrap());
    assert_eq!(n.validate().unwrap_err().first().field, "subnet");
    n.subnet = Some("10.0.0.5/24".parse().unwrap());
    assert!(n.validate().unwrap_err().first().message.contains("did you mean 10.0.0.0/24"));
    n.subnet = Some("10.0.0.0/24".parse().unwrap());
    n.gateway = Some("10.0.1.1".parse().unwrap());
    assert_eq!(n.validate().unwrap_err().first().field, "gateway");
    n.subnet = None;
    assert!(n.validate().unwrap_err().first().message.contains("needs a subnet"));

    let big = PayloadSpec { name: "tls.crt".into(), labels: Default::default(), data: vec![0; 500 * 1024] };
    let e = big.validate().unwrap_err();
    assert_eq!(e.first().field, "data");
    assert!(e.first().message.contains("smaller than 500KiB"), "{e}");
    let empty = PayloadSpec { name: "tls.crt".into(), labels: Default::default(), data: vec![] };
    assert!(empty.validate().unwrap_err().first().message.contains("must not be empty"));
    let ok = PayloadSpec { name: "tls.crt".into(), labels: Default::default(), data: vec![1] };
    ok.validate().unwrap();

    let mut c = ClusterSpec::default();
    c.validate().unwrap();
    c.dispatcher.heartbeat_period = Duration::from_millis(10);
    c.dispatcher.node_down_grace_multiplier = 1;
    c.default_address_pool.mask_length = 30;
    let fields: Vec<_> = c.validate().unwrap_err().0.into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "dispatcher.heartbeat_period",
            "dispatcher.node_down_grace_multiplier",
            "default_address_pool.mask_length",
        ]
    );
}

#[test]
fn signals_by_name_number_and_realtime() {
    use shoal_api::validate::parse_signal;
    assert_eq!(parse_signal("SIGTERM"), Some(15));
    assert_eq!(parse_signal("term"), Some(15));
    assert_eq!(parse_signal("9"), Some(9));
    assert_eq!(parse_signal("SIGPWR"), Some(30));
    assert_eq!(parse_signal("SIGRTMIN+3"), Some(37));
    assert_eq!(parse_signal("RTMAX-1"), Some(63));
    assert_eq!(parse_signal("SIGRTMIN"), Some(34));
    assert_eq!(parse_signal("SIGBOGUS"), None);
}
