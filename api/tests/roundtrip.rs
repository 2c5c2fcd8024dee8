//! Every stored object survives JSON and back unchanged, and a minimal spec reads with
//! Swarm's defaults.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_api::cluster::{Cluster, ClusterSpec, JoinTokens};
use shoal_api::network::{Network, NetworkSpec};
use shoal_api::node::*;
use shoal_api::object::Meta;
use shoal_api::secret::{Config, PayloadSpec, Secret};
use shoal_api::service::*;
use shoal_api::task::{NetworkAttachment, Task, TaskState, TaskStatus};
use shoal_api::task_spec::*;

mod common;
use common::full_spec;

fn meta() -> Meta {
    let t = Utc.with_ymd_and_hms(2026, 11, 22, 12, 30, 0).unwrap();
    Meta { version: 42, created_at: t, updated_at: t + chrono::Duration::seconds(5) }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_string_pretty(value).unwrap();
    let back: T =
        shoal_api::decode::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e}\nin:\n{json}"));
    assert_eq!(&back, value, "JSON was:\n{json}");
    // YAML too: stacks and `--format yaml` output use it.
    let yaml = serde_yaml_ng::to_string(value).unwrap();
    let back: T = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\nin:\n{yaml}"));
    assert_eq!(&back, value, "YAML was:\n{yaml}");
}

#[test]
fn service_spec_in_every_mode() {
    let mut spec = full_spec();
    round_trip(&spec);
    for mode in [
        ServiceMode::Global,
        ServiceMode::GlobalJob,
        ServiceMode::ReplicatedJob { max_concurrent: 2, total_completions: Some(10) },
        ServiceMode::ReplicatedJob { max_concurrent: 1, total_completions: None },
    ] {
        spec.mode = mode;
        round_trip(&spec);
    }
}

#[test]
fn service() {
    let mut previous = full_spec();
    previous.task_template.container.image = "127.0.0.1:5000/shoal/web:1".into();
    round_trip(&Service {
        id: "svc1".into(),
        meta: meta(),
        spec: full_spec(),
        previous_spec: Some(previous),
        update_status: Some(UpdateStatus {
            state: UpdateState::RollbackPaused,
            started_at: Some(meta().created_at),
            completed_at: None,
            message: "update paused: task web.2 failed".into(),
        }),
        endpoint: ServiceEndpoint {
            virtual_ips: vec![VirtualIp { network_id: "net1".into(), addr: "10.0.1.2/24".parse().unwrap() }],
            ports: full_spec().endpoint_spec.ports,
        },
    });
}

#[test]
fn task_in_every_state() {
    let mut status = TaskStatus::new(TaskState::New, meta().created_at, "created");
    status.error = Some("task: non-zero exit (1)".into());
    status.container_id = Some("c0ffee".into());
    status.exit_code = Some(1);
    for state in TaskState::ALL {
        status.state = state;
        round_trip(&Task {
            id: "task1".into(),
            meta: meta(),
            service_id: "svc1".into(),
            slot: Some(2),
            node_id: Some("node1".into()),
            spec: full_spec().task_template,
            spec_version: 40,
            desired_state: TaskState::Running,
            status: status.clone(),
            networks: vec![NetworkAttachment {
                network_id: "net1".into(),
                addresses: vec!["10.0.1.5/24".parse().unwrap()],
                aliases: vec!["www".into()],
            }],
            job_iteration: Some(1),
        });
    }
}

#[test]
fn node() {
    for (availability, state) in [
        (Availability::Active, NodeState::Ready),
        (Availability::Pause, NodeState::Down),
        (Availability::Drain, NodeState::Unknown),
        (Availability::Active, NodeState::Disconnected),
    ] {
        round_trip(&Node {
            id: "node1".into(),
            meta: meta(),
            spec: NodeSpec {
                labels: BTreeMap::from([("zone".into(), "a".into())]),
                role: NodeRole::Manager,
                availability,
            },
            description: NodeDescription {
                hostname: "host-1".into(),
                platform: Platform { os: "linux".into(), arch: "x86_64".into() },
                resources: NodeResources { nano_cpus: 2_000_000_000, memory_bytes: 24 << 30 },
                engine_labels: BTreeMap::from([("disk".into(), "ssd".into())]),
                version: "0.1.0".into(),
            },
            status: NodeStatus {
                state,
                message: "heartbeat failure".into(),
                addr: "10.9.0.2".parse().unwrap(),
            },
            manager_status: Some(ManagerStatus {
                raft_id: 3,
                addr: "10.9.0.2:4242".into(),
                leader: true,
                reachability: Reachability::Reachable,
            }),
            ingress: Some(shoal_api::node::NodeAttachment {
                network_id: "n1".into(),
                addr: "10.0.0.3/24".parse().unwrap(),
            }),
            attachments: vec![shoal_api::node::ContainerAttachment {
                container_id: "c1".into(),
                network_id: "n2".into(),
                addr: "10.0.1.3/24".parse().unwrap(),
            }],
            certificate: Some(shoal_api::node::NodeCertificate {
                serial: "0a".into(),
                issuer: "CN=shoal-ca-1".into(),
                role: NodeRole::Worker,
                not_after: chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
            }),
        });
    }
}

#[test]
fn network_secret_config_cluster() {
    let mut spec = NetworkSpec::new("front");
    spec.subnet = Some("10.20.0.0/24".parse().unwrap());
    spec.gateway = Some("10.20.0.1".parse().unwrap());
    spec.attachable = true;
    spec.internal = true;
    spec.labels.insert("a".into(), "b".into());
    round_trip(&Network {
        id: "net1".into(),
        meta: meta(),
        spec,
        subnet: "10.20.0.0/24".parse().unwrap(),
        gateway: "10.20.0.1".parse().unwrap(),
        vni: 4097,
    });
    let payload =
        PayloadSpec { name: "db-password".into(), labels: BTreeMap::new(), data: vec![0, 1, 2, 255] };
    round_trip(&Secret { id: "s1".into(), meta: meta(), spec: payload.clone() });
    round_trip(&Config { id: "c1".into(), meta: meta(), spec: payload });
    round_trip(&Cluster {
        id: "cl1".into(),
        meta: meta(),
        spec: ClusterSpec { task_history_limit: -1, ..ClusterSpec::default() },
        join_tokens: JoinTokens { worker: "SHTKN-1-a-w".into(), manager: "SHTKN-1-a-m".into() },
        api_token: "SHAPI-1-x".into(),
        read_only_api_token: "SHRO-1-x".into(),
        ca: shoal_api::cluster::ClusterCa {
            roots_pem: "r".into(),
            signer_cert: "c".into(),
            signer_key: "k".into(),
            cross_signed: String::new(),
            revoked_nodes: ["n9".to_owned()].into(),
        },
        data_path_keys: keyring(),
        unlock_key: String::new(),
    });
}

fn keyring() -> shoal_api::cluster::DataPathKeys {
    shoal_api::cluster::DataPathKeys {
        keys: vec![shoal_api::cluster::DataPathKey {
            id: 7,
            key: b"0123456789abcdef".to_vec(),
            created_at: meta().created_at,
        }],
        primary: 7,
    }
}

#[test]
fn data_path_keys_stay_out_of_debug_output_and_redacted_objects() {
    let keys = keyring();
    let shown = format!("{keys:?}");
    assert!(!shown.contains("0123456789abcdef") && !shown.contains("48, 49, 50"), "{shown}");
    let cluster = Cluster {
        id: "cl1".into(),
        meta: meta(),
        spec: ClusterSpec::default(),
        join_tokens: JoinTokens { worker: String::new(), manager: String::new() },
        api_token: String::new(),
        read_only_api_token: String::new(),
        ca: Default::default(),
        data_path_keys: keys,
        unlock_key: String::new(),
    };
    let json = serde_json::to_string(&shoal_api::stored::Object::Cluster(cluster).redacted()).unwrap();
    assert!(!json.contains("MDEyMzQ1Njc4OWFiY2RlZg"), "the key's base64 is gone: {json}");
}

#[test]
fn secret_data_is_base64() {
    let p = PayloadSpec { name: "x".into(), labels: BTreeMap::new(), data: b"hunter2".to_vec() };
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["data"], "aHVudGVyMg==");
    let bad = br#"{"name":"x","data":"not base64!"}"#;
    let e = shoal_api::decode::from_json::<PayloadSpec>(bad).unwrap_err();
    assert_eq!(e.field, "data");
}

#[test]
fn minimal_spec_reads_with_swarm_defaults() {
    let spec: ServiceSpec =
        shoal_api::decode::from_json(br#"{"name":"web","task_template":{"container":{"image":"busybox"}}}"#)
            .unwrap();
    assert_eq!(spec, ServiceSpec::new("web", "busybox"));
    let replicated: ServiceMode = serde_json::from_str(r#"{"kind":"replicated"}"#).unwrap();
    assert_eq!(replicated, ServiceMode::Replicated { replicas: 1 });
    assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 1 });
    let u = &spec.update_config;
    assert_eq!(
        (u.parallelism, u.delay, u.failure_action, u.monitor, u.max_failure_ratio, u.order),
        (1, Duration::ZERO, FailureAction::Pause, Duration::from_secs(5), 0.0, UpdateOrder::StopFirst)
    );
    assert_eq!(spec.rollback_config, *u);
    let r = &spec.task_template.restart_policy;
    assert_eq!(
        (r.condition, r.delay, r.max_attempts, r.window),
        (RestartCondition::Any, Duration::from_secs(5), 0, Duration::ZERO)
    );
    assert_eq!(spec.task_template.container.stop_grace_period, Duration::from_secs(10));
    assert_eq!(spec.endpoint_spec.mode, EndpointMode::Vip);

    let h: HealthCheck = serde_json::from_str(r#"{"test":["CMD-SHELL","true"]}"#).unwrap();
    assert_eq!(
        (h.interval, h.timeout, h.retries, h.start_period, h.start_interval),
        (Duration::from_secs(30), Duration::from_secs(30), 3, Duration::ZERO, Duration::from_secs(5))
    );
    let c = ClusterSpec::default();
    assert_eq!(c.task_history_limit, 5);
    assert_eq!(c.dispatcher.heartbeat_period, Duration::from_secs(5));
    assert_eq!(c.raft.snapshot_interval, 10_000);
    assert_eq!(c.default_address_pool.mask_length, 24);
}

#[test]
fn json_shape_is_readable() {
    let v = serde_json::to_value(full_spec()).unwrap();
    assert_eq!(v["mode"], serde_json::json!({"kind": "replicated", "replicas": 3}));
    assert_eq!(v["update_config"]["order"], "start-first");
    assert_eq!(v["update_config"]["delay"], "10s");
    assert_eq!(v["task_template"]["restart_policy"]["condition"], "on-failure");
    assert_eq!(v["task_template"]["container"]["mounts"][0]["type"], "bind");
    let task_state = serde_json::to_value(TaskState::Running).unwrap();
    assert_eq!(task_state, "running");
}
