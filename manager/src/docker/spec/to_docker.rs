//! Shoal's services and tasks in Docker's types, for inspect and list. The result
//! posted back unchanged (`docker service update`'s round trip) maps to the same
//! Shoal spec.

use std::time::Duration;

use shoal_api::service::{self as s, EndpointMode, FailureAction, PublishMode, UpdateOrder, UpdateState};
use shoal_api::task_spec::{self as t, RestartCondition};
use shoal_api::{Service, ServiceMode, ServiceSpec, Task, TaskState};

use super::types as d;
use crate::store::{Kind, Object, Store};

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn some_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// A service spec in Docker's terms.
pub(crate) fn service_spec(spec: &ServiceSpec, store: &Store) -> d::ServiceSpec {
    let job = spec.mode.is_job();
    d::ServiceSpec {
        name: spec.name.clone(),
        labels: Some(spec.labels.clone()),
        task_template: task_spec(&spec.task_template, store),
        mode: Some(mode(&spec.mode)),
        update_config: (!job).then(|| update_config(&spec.update_config)),
        rollback_config: (!job).then(|| update_config(&spec.rollback_config)),
        networks: None,
        endpoint_spec: Some(endpoint_spec(&spec.endpoint_spec)),
    }
}

fn mode(m: &ServiceMode) -> d::ServiceMode {
    match *m {
        ServiceMode::Replicated { replicas } => d::ServiceMode {
            replicated: Some(d::Replicated { replicas: Some(replicas) }),
            ..Default::default()
        },
        ServiceMode::Global => d::ServiceMode { global: Some(d::Empty {}), ..Default::default() },
        ServiceMode::ReplicatedJob { max_concurrent, total_completions } => d::ServiceMode {
            replicated_job: Some(d::ReplicatedJob {
                max_concurrent: Some(max_concurrent),
                total_completions: Some(total_completions.unwrap_or(max_concurrent)),
            }),
            ..Default::default()
        },
        ServiceMode::GlobalJob => d::ServiceMode { global_job: Some(d::Empty {}), ..Default::default() },
    }
}

fn update_config(c: &s::UpdateConfig) -> d::UpdateConfig {
    d::UpdateConfig {
        parallelism: c.parallelism,
        delay: Some(ns(c.delay)),
        failure_action: Some(
            match c.failure_action {
                FailureAction::Pause => "pause",
                FailureAction::Continue => "continue",
                FailureAction::Rollback => "rollback",
            }
            .into(),
        ),
        monitor: Some(ns(c.monitor)),
        max_failure_ratio: c.max_failure_ratio,
        order: match c.order {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
        .into(),
    }
}

fn endpoint_spec(e: &s::EndpointSpec) -> d::EndpointSpec {
    d::EndpointSpec {
        mode: Some(
            match e.mode {
                EndpointMode::Vip => "vip",
                EndpointMode::Dnsrr => "dnsrr",
            }
            .into(),
        ),
        ports: some_vec(e.ports.iter().map(port).collect()),
    }
}

/// A port; a published port left to the managers is 0.
pub(crate) fn port(p: &s::PortConfig) -> d::PortConfig {
    d::PortConfig {
        name: p.name.clone(),
        protocol: Some(p.protocol.as_str().into()),
        target_port: u32::from(p.target_port),
        published_port: Some(p.published_port.map_or(0, u32::from)),
        publish_mode: Some(
            match p.publish_mode {
                PublishMode::Ingress => "ingress",
                PublishMode::Host => "host",
            }
            .into(),
        ),
    }
}

/// A task template in Docker's terms.
pub(crate) fn task_spec(ts: &t::TaskSpec, store: &Store) -> d::TaskSpec {
    let r = &ts.resources;
    d::TaskSpec {
        container_spec: Some(container_spec(&ts.container, store)),
        resources: Some(d::ResourceRequirements {
            limits: Some(d::Limit {
                nano_cpus: signed(r.limits.nano_cpus),
                memory_bytes: signed(r.limits.memory_bytes),
                pids: signed(r.limits.pids),
            }),
            reservations: Some(d::Reservation {
                nano_cpus: signed(r.reservations.nano_cpus),
                memory_bytes: signed(r.reservations.memory_bytes),
                generic_resources: None,
            }),
        }),
        restart_policy: Some(d::RestartPolicy {
            condition: Some(
                match ts.restart_policy.condition {
                    RestartCondition::None => "none",
                    RestartCondition::OnFailure => "on-failure",
                    RestartCondition::Any => "any",
                }
                .into(),
            ),
            delay: Some(ns(ts.restart_policy.delay)),
            max_attempts: Some(ts.restart_policy.max_attempts),
            window: Some(ns(ts.restart_policy.window)),
        }),
        placement: Some(d::Placement {
            constraints: some_vec(ts.placement.constraints.clone()),
            preferences: some_vec(
                ts.placement
                    .preferences
                    .iter()
                    .map(|p| d::PlacementPreference {
                        spread: d::SpreadOver { spread_descriptor: p.spread.clone() },
                    })
                    .collect(),
            ),
            max_replicas: ts.placement.max_replicas,
            platforms: None,
        }),
        force_update: ts.force_update,
        runtime: Some("container".into()),
        networks: some_vec(
            ts.networks
                .iter()
                .map(|n| d::NetworkAttachmentConfig {
                    // By id, as Docker shows it, whichever way the spec names it.
                    target: crate::store::queries::network(store, &n.target)
                        .map_or_else(|| n.target.clone(), |net| net.id.clone()),
                    aliases: some_vec(n.aliases.clone()),
                    driver_opts: None,
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn container_spec(c: &t::ContainerSpec, store: &Store) -> d::ContainerSpec {
    let id_of =
        |kind: Kind, name: &str| store.by_name(kind, name).map(|o| o.id().to_owned()).unwrap_or_default();
    let file = |r: &t::FileReference| d::FileTarget {
        name: r.target.clone().unwrap_or_else(|| r.source.clone()),
        uid: r.uid.to_string(),
        gid: r.gid.to_string(),
        mode: r.mode,
    };
    d::ContainerSpec {
        image: c.image.clone(),
        labels: Some(c.labels.clone()),
        command: some_vec(c.command.clone()),
        args: some_vec(c.args.clone()),
        hostname: c.hostname.clone(),
        env: some_vec(c.env.clone()),
        dir: c.workdir.clone(),
        user: c.user.clone(),
        read_only: c.read_only.then_some(true),
        mounts: some_vec(c.mounts.iter().map(mount).collect()),
        stop_signal: c.stop_signal.clone(),
        stop_grace_period: Some(ns(c.stop_grace_period)),
        health_check: c.healthcheck.as_ref().map(|h| d::HealthConfig {
            test: some_vec(h.test.clone()),
            interval: Some(ns(h.interval)),
            timeout: Some(ns(h.timeout)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(ns(h.start_period)),
            start_interval: Some(ns(h.start_interval)),
        }),
        secrets: some_vec(
            c.secrets
                .iter()
                .map(|r| d::SecretReference {
                    file: Some(file(r)),
                    secret_id: id_of(Kind::Secret, &r.source),
                    secret_name: r.source.clone(),
                })
                .collect(),
        ),
        configs: some_vec(
            c.configs
                .iter()
                .map(|r| d::ConfigReference {
                    file: Some(file(r)),
                    runtime: None,
                    config_id: id_of(Kind::Config, &r.source),
                    config_name: r.source.clone(),
                })
                .collect(),
        ),
        isolation: Some("default".into()),
        ..Default::default()
    }
}

fn mount(m: &t::Mount) -> d::Mount {
    match m {
        t::Mount::Bind { source, target, read_only } => d::Mount {
            kind: "bind".into(),
            source: source.clone(),
            target: target.clone(),
            read_only: *read_only,
            ..Default::default()
        },
        t::Mount::Volume { source, target, read_only, no_copy } => d::Mount {
            kind: "volume".into(),
            source: source.clone(),
            target: target.clone(),
            read_only: *read_only,
            volume_options: no_copy.then(|| d::VolumeOptions { no_copy: Some(true), ..Default::default() }),
            ..Default::default()
        },
        t::Mount::Tmpfs { target, size_bytes, mode } => d::Mount {
            kind: "tmpfs".into(),
            target: target.clone(),
            tmpfs_options: Some(d::TmpfsOptions {
                size_bytes: (*size_bytes > 0).then(|| signed(*size_bytes)),
                mode: *mode,
            }),
            ..Default::default()
        },
    }
}

fn update_state(s: UpdateState) -> &'static str {
    match s {
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

/// A service in Docker's terms, with its task counts when asked.
pub(crate) fn service(svc: &Service, store: &Store, status: Option<d::ServiceStatus>) -> d::Service {
    let spec = service_spec(&svc.spec, store);
    d::Service {
        id: svc.id.clone(),
        version: d::Version { index: svc.meta.version },
        created_at: svc.meta.created_at,
        updated_at: svc.meta.updated_at,
        endpoint: d::Endpoint {
            spec: spec.endpoint_spec.clone().unwrap_or_default(),
            ports: svc.endpoint.ports.iter().map(port).collect(),
            virtual_ips: svc
                .endpoint
                .virtual_ips
                .iter()
                .map(|v| d::VirtualIp { network_id: v.network_id.clone(), addr: v.addr.to_string() })
                .collect(),
        },
        spec,
        previous_spec: svc.previous_spec.as_ref().map(|p| service_spec(p, store)),
        update_status: svc.update_status.as_ref().map(|u| d::UpdateStatus {
            state: update_state(u.state).into(),
            started_at: u.started_at,
            completed_at: u.completed_at,
            message: u.message.clone(),
        }),
        service_status: status,
    }
}

/// A task in Docker's terms; its labels are its container's.
pub(crate) fn task(task: &Task, store: &Store) -> d::Task {
    let st = &task.status;
    let ports: Vec<d::PortConfig> = match store.get(Kind::Service, &task.service_id) {
        Some(Object::Service(svc)) if st.state == TaskState::Running => {
            svc.endpoint.ports.iter().filter(|p| p.publish_mode == PublishMode::Host).map(port).collect()
        }
        _ => Vec::new(),
    };
    d::Task {
        id: task.id.clone(),
        version: d::Version { index: task.meta.version },
        created_at: task.meta.created_at,
        updated_at: task.meta.updated_at,
        labels: task.spec.container.labels.clone(),
        spec: task_spec(&task.spec, store),
        service_id: task.service_id.clone(),
        slot: task.slot.unwrap_or(0),
        node_id: task.node_id.clone().unwrap_or_default(),
        status: d::TaskStatus {
            timestamp: st.timestamp,
            state: st.state.as_str().into(),
            message: st.message.clone(),
            err: st.error.clone().filter(|e| !e.is_empty()),
            container_status: st.container_id.as_ref().map(|c| d::ContainerStatus {
                container_id: c.clone(),
                pid: 0,
                exit_code: i64::from(st.exit_code.unwrap_or(0)),
            }),
            port_status: d::PortStatus { ports },
        },
        desired_state: task.desired_state.as_str().into(),
        networks_attachments: task
            .networks
            .iter()
            .map(|n| d::NetworkAttachment {
                network: network(store, &n.network_id),
                addresses: n.addresses.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        job_iteration: task.job_iteration.map(|index| d::Version { index }),
    }
}

/// The swarm `Network` a task attachment names, with what a client shows of it.
fn network(store: &Store, id: &str) -> serde_json::Value {
    match store.get(Kind::Network, id) {
        Some(Object::Network(n)) => serde_json::json!({
            "ID": n.id,
            "Version": {"Index": n.meta.version},
            "CreatedAt": n.meta.created_at,
            "UpdatedAt": n.meta.updated_at,
            "Spec": {
                "Name": n.spec.name,
                "Labels": n.spec.labels,
                "DriverConfiguration": {"Name": "overlay"},
                "Ingress": n.spec.ingress,
                "Scope": "swarm",
            },
            "IPAMOptions": {"Driver": {"Name": "default"}, "Configs": [{"Subnet": n.subnet.to_string()}]},
        }),
        _ => serde_json::json!({ "ID": id }),
    }
}
