//! Docker's `ServiceSpec` to Shoal's: every field is either carried over or, when
//! set to something Shoal cannot honour, refused with a 400 naming it by its JSON
//! path. Empty, null, zero and default values (what the CLI always sends) pass.
//! On an update, Shoal-only settings (`progress_deadline`) come from the current spec.

use std::time::Duration;

use shoal_api::service::{self as s, EndpointMode, FailureAction, PublishMode, UpdateOrder};
use shoal_api::task_spec::{self as t, RestartCondition};
use shoal_api::{ServiceMode, ServiceSpec};

use super::types as d;
use crate::docker::DockerError;
use crate::store::{Kind, Object, Store};

type Result<T> = std::result::Result<T, DockerError>;

fn unsupported(field: &str, why: &str) -> DockerError {
    DockerError::unsupported(field, why)
}

/// Refuses `field` when `set`.
fn refuse_if(set: bool, field: &str, why: &str) -> Result<()> {
    if set { Err(unsupported(field, why)) } else { Ok(()) }
}

/// A Docker duration (int64 ns; negative is invalid).
fn duration(field: &str, ns: i64) -> Result<Duration> {
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| DockerError::bad_request(format!("{field}: a duration cannot be negative ({ns})")))
}

/// A Docker duration where 0 or absent means `default`.
fn duration_or(field: &str, ns: Option<i64>, default: Duration) -> Result<Duration> {
    match ns {
        None | Some(0) => Ok(default),
        Some(ns) => duration(field, ns),
    }
}

fn amount(field: &str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| DockerError::bad_request(format!("{field}: cannot be negative ({n})")))
}

/// Maps a Docker service spec to Shoal's. `current` is the spec being updated.
pub(crate) fn service_spec(
    spec: d::ServiceSpec,
    store: &Store,
    current: Option<&ServiceSpec>,
) -> Result<ServiceSpec> {
    let mode = mode(spec.mode)?;
    let mut task_template = task_spec(spec.task_template, store)?;
    if let Some(current) = current {
        keep_network_names(&mut task_template.networks, &current.task_template.networks, store);
    }
    let deprecated = spec.networks.filter(|n| !n.is_empty());
    if !task_template.networks.is_empty() && deprecated.is_some() {
        return Err(unsupported(
            "Networks",
            "deprecated, and TaskTemplate.Networks is set too: give the networks in TaskTemplate.Networks only",
        ));
    }
    if let Some(networks) = deprecated {
        task_template.networks = networks
            .into_iter()
            .enumerate()
            .map(|(i, n)| network(n, &format!("Networks[{i}]")))
            .collect::<Result<_>>()?;
    }
    let keep = |c: Option<&s::UpdateConfig>| {
        c.map_or(s::UpdateConfig::default().progress_deadline, |c| c.progress_deadline)
    };
    let update_config = update_config(
        spec.update_config,
        "UpdateConfig",
        keep(current.map(|c| &c.update_config)),
        mode.is_job(),
    )?;
    let rollback_config = update_config_rollback(
        spec.rollback_config,
        keep(current.map(|c| &c.rollback_config)),
        mode.is_job(),
    )?;
    Ok(ServiceSpec {
        name: spec.name,
        labels: spec.labels.unwrap_or_default(),
        task_template,
        mode,
        update_config,
        rollback_config,
        endpoint_spec: endpoint_spec(spec.endpoint_spec.unwrap_or_default())?,
    })
}

fn mode(m: Option<d::ServiceMode>) -> Result<ServiceMode> {
    let Some(m) = m else { return Ok(ServiceMode::default()) };
    let set =
        [m.replicated.is_some(), m.global.is_some(), m.replicated_job.is_some(), m.global_job.is_some()];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(DockerError::bad_request(
            "Mode: set only one of Replicated, Global, ReplicatedJob, GlobalJob",
        ));
    }
    Ok(if let Some(r) = m.replicated {
        ServiceMode::Replicated { replicas: r.replicas.unwrap_or(1) }
    } else if m.global.is_some() {
        ServiceMode::Global
    } else if let Some(j) = m.replicated_job {
        let max_concurrent = j.max_concurrent.unwrap_or(1);
        ServiceMode::ReplicatedJob { max_concurrent, total_completions: j.total_completions }
    } else if m.global_job.is_some() {
        ServiceMode::GlobalJob
    } else {
        ServiceMode::default()
    })
}

fn update_config(
    c: Option<d::UpdateConfig>,
    field: &str,
    progress_deadline: Duration,
    job: bool,
) -> Result<s::UpdateConfig> {
    let defaults = s::UpdateConfig { progress_deadline, ..s::UpdateConfig::default() };
    let Some(c) = c else { return Ok(defaults) };
    if job && c != d::UpdateConfig::default() {
        return Err(DockerError::bad_request(format!("{field}: jobs have no update or rollback settings")));
    }
    let failure_action = match c.failure_action.as_deref().unwrap_or("") {
        "" | "pause" => FailureAction::Pause,
        "continue" => FailureAction::Continue,
        "rollback" => FailureAction::Rollback,
        other => {
            return Err(DockerError::bad_request(format!(
                "{field}.FailureAction: {other:?} is not pause, continue or rollback"
            )));
        }
    };
    let order = match c.order.as_str() {
        "" | "stop-first" => UpdateOrder::StopFirst,
        "start-first" => UpdateOrder::StartFirst,
        other => {
            return Err(DockerError::bad_request(format!(
                "{field}.Order: {other:?} is not stop-first or start-first"
            )));
        }
    };
    if !(0.0..=1.0).contains(&c.max_failure_ratio) {
        return Err(DockerError::bad_request(format!("{field}.MaxFailureRatio: must be between 0 and 1")));
    }
    Ok(s::UpdateConfig {
        parallelism: c.parallelism,
        delay: duration(&format!("{field}.Delay"), c.delay.unwrap_or(0))?,
        failure_action,
        monitor: duration_or(&format!("{field}.Monitor"), c.monitor, defaults.monitor)?,
        max_failure_ratio: c.max_failure_ratio,
        order,
        progress_deadline,
    })
}

fn update_config_rollback(
    c: Option<d::UpdateConfig>,
    progress_deadline: Duration,
    job: bool,
) -> Result<s::UpdateConfig> {
    update_config(c, "RollbackConfig", progress_deadline, job)
}

fn endpoint_spec(e: d::EndpointSpec) -> Result<s::EndpointSpec> {
    let mode = match e.mode.as_deref().unwrap_or("") {
        "" | "vip" => EndpointMode::Vip,
        "dnsrr" => EndpointMode::Dnsrr,
        other => {
            return Err(DockerError::bad_request(format!(
                "EndpointSpec.Mode: {other:?} is not vip or dnsrr"
            )));
        }
    };
    let ports = e
        .ports
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| port(p, &format!("EndpointSpec.Ports[{i}]")))
        .collect::<Result<_>>()?;
    Ok(s::EndpointSpec { mode, ports })
}

fn port_number(field: &str, n: u32) -> Result<u16> {
    u16::try_from(n).map_err(|_| DockerError::bad_request(format!("{field}: {n} is not a port number")))
}

fn port(p: d::PortConfig, field: &str) -> Result<s::PortConfig> {
    let protocol = match p.protocol.as_deref().unwrap_or("") {
        "" | "tcp" => s::Protocol::Tcp,
        "udp" => s::Protocol::Udp,
        "sctp" => s::Protocol::Sctp,
        other => {
            return Err(DockerError::bad_request(format!(
                "{field}.Protocol: {other:?} is not tcp, udp or sctp"
            )));
        }
    };
    let publish_mode = match p.publish_mode.as_deref().unwrap_or("") {
        "" | "ingress" => PublishMode::Ingress,
        "host" => PublishMode::Host,
        other => {
            return Err(DockerError::bad_request(format!(
                "{field}.PublishMode: {other:?} is not ingress or host"
            )));
        }
    };
    Ok(s::PortConfig {
        name: p.name.filter(|n| !n.is_empty()),
        protocol,
        target_port: port_number(&format!("{field}.TargetPort"), p.target_port)?,
        published_port: match p.published_port.unwrap_or(0) {
            0 => None,
            n => Some(port_number(&format!("{field}.PublishedPort"), n)?),
        },
        publish_mode,
    })
}

fn task_spec(ts: d::TaskSpec, store: &Store) -> Result<t::TaskSpec> {
    refuse_if(
        ts.plugin_spec.is_some_and(|v| !v.is_null()),
        "TaskTemplate.PluginSpec",
        "Shoal runs containers, not plugins",
    )?;
    refuse_if(
        ts.network_attachment_spec.is_some_and(|v| !v.is_null()),
        "TaskTemplate.NetworkAttachmentSpec",
        "Shoal runs containers only",
    )?;
    match ts.runtime.as_deref().unwrap_or("") {
        "" | "container" => {}
        other => {
            return Err(unsupported(
                "TaskTemplate.Runtime",
                &format!("Shoal runs containers only, not {other:?}"),
            ));
        }
    }
    if let Some(log) = &ts.log_driver {
        refuse_if(
            !log.name.is_empty() || log.options.as_ref().is_some_and(|o| !o.is_empty()),
            "TaskTemplate.LogDriver",
            "Shoal keeps every task's logs itself; a log driver cannot be chosen",
        )?;
    }
    let Some(container) = ts.container_spec else {
        return Err(DockerError::bad_request("TaskTemplate.ContainerSpec: required"));
    };
    Ok(t::TaskSpec {
        container: container_spec(container, store)?,
        resources: resources(ts.resources.unwrap_or_default())?,
        restart_policy: restart_policy(ts.restart_policy.unwrap_or_default())?,
        placement: placement(ts.placement.unwrap_or_default())?,
        networks: ts
            .networks
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, n)| network(n, &format!("TaskTemplate.Networks[{i}]")))
            .collect::<Result<_>>()?,
        force_update: ts.force_update,
    })
}

/// Docker shows attachments by network id (`stack deploy` sends names): a target
/// that is the same network as one of the current spec's keeps the current
/// spelling, so a round trip through `docker service update` changes nothing.
fn keep_network_names(
    new: &mut [t::NetworkAttachmentConfig],
    current: &[t::NetworkAttachmentConfig],
    store: &Store,
) {
    let id = |target: &str| crate::store::queries::network(store, target).map(|n| n.id.as_str());
    for attachment in new {
        let Some(wanted) = id(&attachment.target) else { continue };
        if let Some(same) = current.iter().find(|c| id(&c.target) == Some(wanted)) {
            attachment.target.clone_from(&same.target);
        }
    }
}

fn network(n: d::NetworkAttachmentConfig, field: &str) -> Result<t::NetworkAttachmentConfig> {
    refuse_if(
        n.driver_opts.is_some_and(|o| !o.is_empty()),
        &format!("{field}.DriverOpts"),
        "Shoal's overlay driver takes no per-attachment options",
    )?;
    if n.target.is_empty() {
        return Err(DockerError::bad_request(format!("{field}.Target: required")));
    }
    Ok(t::NetworkAttachmentConfig { target: n.target, aliases: n.aliases.unwrap_or_default() })
}

fn resources(r: d::ResourceRequirements) -> Result<t::Resources> {
    let l = r.limits.unwrap_or_default();
    let res = r.reservations.unwrap_or_default();
    refuse_if(
        res.generic_resources.is_some_and(|g| !g.is_empty()),
        "TaskTemplate.Resources.Reservations.GenericResources",
        "Shoal's nodes advertise no generic resources",
    )?;
    Ok(t::Resources {
        limits: t::Limits {
            nano_cpus: amount("TaskTemplate.Resources.Limits.NanoCPUs", l.nano_cpus)?,
            memory_bytes: amount("TaskTemplate.Resources.Limits.MemoryBytes", l.memory_bytes)?,
            pids: amount("TaskTemplate.Resources.Limits.Pids", l.pids)?,
        },
        reservations: t::Reservations {
            nano_cpus: amount("TaskTemplate.Resources.Reservations.NanoCPUs", res.nano_cpus)?,
            memory_bytes: amount("TaskTemplate.Resources.Reservations.MemoryBytes", res.memory_bytes)?,
        },
    })
}

fn restart_policy(r: d::RestartPolicy) -> Result<t::RestartPolicy> {
    let defaults = t::RestartPolicy::default();
    let condition = match r.condition.as_deref().unwrap_or("") {
        "" | "any" => RestartCondition::Any,
        "on-failure" => RestartCondition::OnFailure,
        "none" => RestartCondition::None,
        other => {
            return Err(DockerError::bad_request(format!(
                "TaskTemplate.RestartPolicy.Condition: {other:?} is not none, on-failure or any"
            )));
        }
    };
    Ok(t::RestartPolicy {
        condition,
        delay: match r.delay {
            None => defaults.delay,
            Some(ns) => duration("TaskTemplate.RestartPolicy.Delay", ns)?,
        },
        max_attempts: r.max_attempts.unwrap_or(0),
        window: duration("TaskTemplate.RestartPolicy.Window", r.window.unwrap_or(0))?,
    })
}

/// This machine's architecture in Docker's and the kernel's spellings.
fn is_this_arch(arch: &str) -> bool {
    let go = match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    arch.is_empty() || go == crate::docker::system::go_arch()
}

fn placement(p: d::Placement) -> Result<t::Placement> {
    if let Some(platforms) = &p.platforms
        && !platforms.is_empty()
        && !platforms
            .iter()
            .any(|pl| (pl.os.is_empty() || pl.os == "linux") && is_this_arch(&pl.architecture))
    {
        let listed: Vec<String> =
            platforms.iter().map(|pl| format!("{}/{}", pl.os, pl.architecture)).collect();
        return Err(unsupported(
            "TaskTemplate.Placement.Platforms",
            &format!(
                "Shoal runs linux/{} tasks only, and the image is for {}",
                std::env::consts::ARCH,
                listed.join(", ")
            ),
        ));
    }
    Ok(t::Placement {
        constraints: p.constraints.unwrap_or_default(),
        preferences: p
            .preferences
            .unwrap_or_default()
            .into_iter()
            .map(|pr| t::PlacementPreference { spread: pr.spread.spread_descriptor })
            .collect(),
        max_replicas: p.max_replicas,
    })
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn container_spec(c: d::ContainerSpec, store: &Store) -> Result<t::ContainerSpec> {
    const F: &str = "TaskTemplate.ContainerSpec";
    let field = |name: &str| format!("{F}.{name}");
    if let Some(p) = &c.privileges {
        refuse_if(
            p.credential_spec.as_ref().is_some_and(|v| !v.is_null()),
            &field("Privileges.CredentialSpec"),
            "Shoal cannot honour a Windows credential spec",
        )?;
        refuse_if(
            p.selinux_context.as_ref().is_some_and(|c| *c != d::SeLinuxContext::default()),
            &field("Privileges.SELinuxContext"),
            "Shoal sets no SELinux labels on containers",
        )?;
        refuse_if(
            p.seccomp.as_ref().is_some_and(|v| !v.is_null()),
            &field("Privileges.Seccomp"),
            "Shoal cannot choose a seccomp profile",
        )?;
        refuse_if(
            p.app_armor.as_ref().is_some_and(|v| !v.is_null()),
            &field("Privileges.AppArmor"),
            "Shoal cannot choose an AppArmor profile",
        )?;
        refuse_if(
            p.no_new_privileges == Some(true),
            &field("Privileges.NoNewPrivileges"),
            "Shoal cannot set no_new_privs",
        )?;
    }
    refuse_if(
        c.groups.as_ref().is_some_and(|g| !g.is_empty()),
        &field("Groups"),
        "Shoal cannot add supplementary groups",
    )?;
    refuse_if(c.tty == Some(true), &field("TTY"), "Shoal's tasks have no terminal")?;
    refuse_if(c.open_stdin == Some(true), &field("OpenStdin"), "Shoal's tasks have no standard input")?;
    refuse_if(
        c.hosts.as_ref().is_some_and(|h| !h.is_empty()),
        &field("Hosts"),
        "Shoal cannot add /etc/hosts entries",
    )?;
    if let Some(dns) = &c.dns_config {
        refuse_if(
            *dns != d::DnsConfig::default()
                && [&dns.nameservers, &dns.search, &dns.options]
                    .iter()
                    .any(|l| l.as_ref().is_some_and(|l| !l.is_empty())),
            &field("DNSConfig"),
            "Shoal's tasks use the cluster's DNS; it cannot be changed per service",
        )?;
    }
    match c.isolation.as_deref().unwrap_or("") {
        "" | "default" => {}
        other => {
            return Err(unsupported(
                &field("Isolation"),
                &format!("Shoal runs Linux containers; {other:?} isolation is Windows only"),
            ));
        }
    }
    refuse_if(c.init == Some(true), &field("Init"), "Shoal runs no init process in containers")?;
    refuse_if(
        c.sysctls.as_ref().is_some_and(|s| !s.is_empty()),
        &field("Sysctls"),
        "Shoal cannot set sysctls",
    )?;
    refuse_if(
        c.capability_add.as_ref().is_some_and(|s| !s.is_empty()),
        &field("CapabilityAdd"),
        "Shoal cannot add capabilities",
    )?;
    refuse_if(
        c.capability_drop.as_ref().is_some_and(|s| !s.is_empty()),
        &field("CapabilityDrop"),
        "Shoal cannot drop capabilities",
    )?;
    refuse_if(
        c.ulimits.as_ref().is_some_and(|s| !s.is_empty()),
        &field("Ulimits"),
        "Shoal cannot set ulimits",
    )?;
    let mounts = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, m)| mount(m, &field(&format!("Mounts[{i}]"))))
        .collect::<Result<_>>()?;
    let secrets = c
        .secrets
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let f = field(&format!("Secrets[{i}]"));
            file_reference(store, Kind::Secret, &f, r.secret_id, r.secret_name, r.file)
        })
        .collect::<Result<_>>()?;
    let configs = c
        .configs
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let f = field(&format!("Configs[{i}]"));
            refuse_if(
                r.runtime.is_some(),
                &format!("{f}.Runtime"),
                "Shoal gives configs to containers as files only",
            )?;
            file_reference(store, Kind::Config, &f, r.config_id, r.config_name, r.file)
        })
        .collect::<Result<_>>()?;
    Ok(t::ContainerSpec {
        image: c.image,
        command: c.command.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        workdir: nonempty(c.dir),
        user: nonempty(c.user),
        hostname: nonempty(c.hostname),
        labels: c.labels.unwrap_or_default(),
        mounts,
        healthcheck: c.health_check.map(healthcheck).transpose()?,
        stop_signal: nonempty(c.stop_signal),
        stop_grace_period: match c.stop_grace_period {
            None => t::DEFAULT_STOP_GRACE_PERIOD,
            Some(ns) => duration(&field("StopGracePeriod"), ns)?,
        },
        read_only: c.read_only.unwrap_or(false),
        secrets,
        configs,
    })
}

fn healthcheck(h: d::HealthConfig) -> Result<t::HealthCheck> {
    const F: &str = "TaskTemplate.ContainerSpec.Healthcheck";
    let defaults = t::HealthCheck::default();
    Ok(t::HealthCheck {
        test: h.test.unwrap_or_default(),
        interval: duration_or(&format!("{F}.Interval"), h.interval, defaults.interval)?,
        timeout: duration_or(&format!("{F}.Timeout"), h.timeout, defaults.timeout)?,
        retries: match h.retries {
            None | Some(0) => defaults.retries,
            Some(n) => u32::try_from(n)
                .map_err(|_| DockerError::bad_request(format!("{F}.Retries: {n} is out of range")))?,
        },
        start_period: duration(&format!("{F}.StartPeriod"), h.start_period.unwrap_or(0))?,
        start_interval: duration_or(
            &format!("{F}.StartInterval"),
            h.start_interval,
            defaults.start_interval,
        )?,
    })
}

fn mount(m: d::Mount, f: &str) -> Result<t::Mount> {
    match m.consistency.as_deref().unwrap_or("") {
        "" | "default" | "consistent" => {}
        other => {
            return Err(unsupported(
                &format!("{f}.Consistency"),
                &format!("{other:?} is for Docker Desktop only"),
            ));
        }
    }
    if let Some(b) = &m.bind_options {
        match b.propagation.as_deref().unwrap_or("") {
            "" | "rprivate" => {}
            other => {
                return Err(unsupported(
                    &format!("{f}.BindOptions.Propagation"),
                    &format!("Shoal mounts binds rprivate only, not {other:?}"),
                ));
            }
        }
        refuse_if(
            b.non_recursive == Some(true),
            &format!("{f}.BindOptions.NonRecursive"),
            "Shoal's binds are recursive",
        )?;
    }
    if let Some(v) = &m.volume_options {
        // `docker stack deploy` labels every named volume with its stack, which the
        // volume's name (`<stack>_<name>`) already says: that label alone passes.
        refuse_if(
            v.labels.as_ref().is_some_and(|l| l.keys().any(|k| k != shoal_api::compose::STACK_LABEL)),
            &format!("{f}.VolumeOptions.Labels"),
            "Shoal's volumes are directories without labels",
        )?;
        refuse_if(
            v.driver_config.as_ref().is_some_and(|d| {
                !matches!(d.name.as_str(), "" | "local") || d.options.as_ref().is_some_and(|o| !o.is_empty())
            }),
            &format!("{f}.VolumeOptions.DriverConfig"),
            "Shoal's volumes use the local driver, without options",
        )?;
    }
    let kind = m.kind.as_str();
    refuse_if(
        m.bind_options.is_some() && kind != "bind",
        &format!("{f}.BindOptions"),
        "only for bind mounts",
    )?;
    refuse_if(
        m.volume_options.is_some() && kind != "volume",
        &format!("{f}.VolumeOptions"),
        "only for volume mounts",
    )?;
    refuse_if(
        m.tmpfs_options.is_some() && kind != "tmpfs",
        &format!("{f}.TmpfsOptions"),
        "only for tmpfs mounts",
    )?;
    Ok(match kind {
        "bind" => t::Mount::Bind { source: m.source, target: m.target, read_only: m.read_only },
        "volume" | "" => t::Mount::Volume {
            no_copy: m.volume_options.as_ref().and_then(|v| v.no_copy).unwrap_or(false),
            source: m.source,
            target: m.target,
            read_only: m.read_only,
        },
        "tmpfs" => {
            refuse_if(!m.source.is_empty(), &format!("{f}.Source"), "a tmpfs has no source")?;
            refuse_if(m.read_only, &format!("{f}.ReadOnly"), "Shoal's tmpfs mounts are writable")?;
            let o = m.tmpfs_options.unwrap_or_default();
            t::Mount::Tmpfs {
                target: m.target,
                size_bytes: amount(&format!("{f}.TmpfsOptions.SizeBytes"), o.size_bytes.unwrap_or(0))?,
                mode: o.mode.filter(|m| *m != 0),
            }
        }
        other => {
            return Err(unsupported(
                &format!("{f}.Type"),
                &format!("Shoal mounts bind, volume and tmpfs, not {other:?}"),
            ));
        }
    })
}

/// A secret or config reference: Shoal refers to them by name, so an ID is
/// resolved to its name.
fn file_reference(
    store: &Store,
    kind: Kind,
    f: &str,
    id: String,
    name: String,
    file: Option<d::FileTarget>,
) -> Result<t::FileReference> {
    let what = if kind == Kind::Secret { "secret" } else { "config" };
    let by_id = (!id.is_empty())
        .then(|| match store.get(kind, &id) {
            Some(Object::Secret(s)) => Some(s.spec.name.clone()),
            Some(Object::Config(c)) => Some(c.spec.name.clone()),
            _ => None,
        })
        .flatten();
    let source = match (by_id, id.is_empty(), name.is_empty()) {
        (Some(n), _, _) => n,
        (None, true, false) => name,
        (None, false, _) => return Err(DockerError::bad_request(format!("{f}: {what} not found: {id}"))),
        (None, true, true) => {
            return Err(DockerError::bad_request(format!("{f}: give {}ID or {}Name", cap(what), cap(what))));
        }
    };
    let Some(file) = file else {
        return Err(DockerError::bad_request(format!("{f}.File: required")));
    };
    let id_number = |field: &str, v: &str| -> Result<u32> {
        if v.is_empty() {
            return Ok(0);
        }
        v.parse().map_err(|_| DockerError::bad_request(format!("{f}.File.{field}: {v:?} is not a number")))
    };
    Ok(t::FileReference {
        target: Some(file.name).filter(|n| !n.is_empty() && *n != source),
        uid: id_number("UID", &file.uid)?,
        gid: id_number("GID", &file.gid)?,
        mode: if file.mode == 0 { 0o444 } else { file.mode },
        source,
    })
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
