//! `shoal service …`: create, list, inspect, update, scale, roll back and remove
//! services, with `docker service`'s flag names.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use shoal_api::client::{Client, LogsOf};
use shoal_api::service::{EndpointMode, PortConfig, ServiceMode, UpdateConfig};
use shoal_api::task_spec::{FileReference, HealthCheck, Mount, NetworkAttachmentConfig, PlacementPreference};
use shoal_api::wire::{ServiceFilter, TaskFilter};
use shoal_api::{Service, ServiceSpec, Task, TaskState, duration, units};

use super::remote::{Connection, Output, ago, block_on, labels_from, print_json, short};

#[derive(Debug, Subcommand)]
pub(super) enum ServiceCommand {
    /// Create a service.
    Create(Box<CreateArgs>),
    /// List services.
    #[command(alias = "list")]
    Ls {
        /// Only services whose name starts with this.
        #[arg(long)]
        name: Option<String>,
        /// Only services with this label (`key` or `key=value`).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// List the tasks of services.
    Ps {
        /// Services, by name or id.
        #[arg(required = true)]
        services: Vec<String>,
        /// Only tasks that should be running.
        #[arg(long)]
        running: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Show services as JSON.
    Inspect {
        /// Services, by name or id.
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Set replica counts: `web=5 api=3`.
    Scale {
        /// SERVICE=REPLICAS pairs.
        #[arg(required = true, value_parser = parse_scale)]
        pairs: Vec<(String, u64)>,
    },
    /// Update a service.
    Update(Box<UpdateArgs>),
    /// Go back to a service's previous spec.
    Rollback {
        /// The service.
        service: String,
    },
    /// Show the output of a service's tasks (or of one task).
    Logs {
        /// A service (name or id) or a task id.
        target: String,
        /// Keep streaming new output.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each task.
        #[arg(short = 'n', long)]
        tail: Option<u64>,
        /// Only output since a time (RFC 3339, Unix seconds) or a duration ago (10m).
        #[arg(long)]
        since: Option<String>,
        /// Show each line's time.
        #[arg(short, long)]
        timestamps: bool,
        /// No task prefix on lines.
        #[arg(long)]
        no_task_ids: bool,
    },
    /// Remove services.
    #[command(alias = "remove")]
    Rm {
        /// Services, by name or id.
        #[arg(required = true)]
        services: Vec<String>,
    },
}

/// Flags that set one value of a spec, shared by `create` and `update`.
#[derive(Debug, Clone, Default, Args)]
pub(super) struct SpecFlags {
    /// Replicas (replicated services), or completions (replicated jobs).
    #[arg(long)]
    replicas: Option<u64>,
    /// Tasks of a replicated job running at once.
    #[arg(long)]
    max_concurrent: Option<u64>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User (name or uid[:gid]).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Container hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Override the image's entrypoint (split like a shell would).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Signal that stops the container.
    #[arg(long)]
    stop_signal: Option<String>,
    /// Time to wait after the stop signal before killing (e.g. 10s).
    #[arg(long, value_parser = parse_duration)]
    stop_grace_period: Option<std::time::Duration>,
    /// Mount the container's root read-only.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    read_only: Option<bool>,
    /// Memory limit (e.g. 64m).
    #[arg(long, value_parser = parse_bytes)]
    limit_memory: Option<u64>,
    /// CPU limit (e.g. 0.5).
    #[arg(long, value_parser = parse_cpus)]
    limit_cpu: Option<u64>,
    /// Process limit.
    #[arg(long)]
    limit_pids: Option<u64>,
    /// Memory reserved on the node.
    #[arg(long, value_parser = parse_bytes)]
    reserve_memory: Option<u64>,
    /// CPUs reserved on the node.
    #[arg(long, value_parser = parse_cpus)]
    reserve_cpu: Option<u64>,
    /// Restart when: none, on-failure, any.
    #[arg(long, value_parser = parse_enum::<shoal_api::task_spec::RestartCondition>)]
    restart_condition: Option<shoal_api::task_spec::RestartCondition>,
    /// Delay between restarts.
    #[arg(long, value_parser = parse_duration)]
    restart_delay: Option<std::time::Duration>,
    /// Restarts before giving up (0: no limit).
    #[arg(long)]
    restart_max_attempts: Option<u64>,
    /// Window in which restarts are counted.
    #[arg(long, value_parser = parse_duration)]
    restart_window: Option<std::time::Duration>,
    /// Tasks updated at once (0: all).
    #[arg(long)]
    update_parallelism: Option<u64>,
    /// Delay between updates of task groups.
    #[arg(long, value_parser = parse_duration)]
    update_delay: Option<std::time::Duration>,
    /// On failure: pause, continue, rollback.
    #[arg(long, value_parser = parse_enum::<shoal_api::service::FailureAction>)]
    update_failure_action: Option<shoal_api::service::FailureAction>,
    /// Time to watch an updated task for failure.
    #[arg(long, value_parser = parse_duration)]
    update_monitor: Option<std::time::Duration>,
    /// Failure ratio tolerated during an update.
    #[arg(long)]
    update_max_failure_ratio: Option<f64>,
    /// stop-first or start-first.
    #[arg(long, value_parser = parse_enum::<shoal_api::service::UpdateOrder>)]
    update_order: Option<shoal_api::service::UpdateOrder>,
    /// Tasks rolled back at once (0: all).
    #[arg(long)]
    rollback_parallelism: Option<u64>,
    /// Delay between rollbacks of task groups.
    #[arg(long, value_parser = parse_duration)]
    rollback_delay: Option<std::time::Duration>,
    /// On rollback failure: pause, continue.
    #[arg(long, value_parser = parse_enum::<shoal_api::service::FailureAction>)]
    rollback_failure_action: Option<shoal_api::service::FailureAction>,
    /// Time to watch a rolled-back task for failure.
    #[arg(long, value_parser = parse_duration)]
    rollback_monitor: Option<std::time::Duration>,
    /// Failure ratio tolerated during a rollback.
    #[arg(long)]
    rollback_max_failure_ratio: Option<f64>,
    /// stop-first or start-first.
    #[arg(long, value_parser = parse_enum::<shoal_api::service::UpdateOrder>)]
    rollback_order: Option<shoal_api::service::UpdateOrder>,
    /// Command run to check health (`CMD-SHELL`).
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between health checks.
    #[arg(long, value_parser = parse_duration)]
    health_interval: Option<std::time::Duration>,
    /// Time a health check may take.
    #[arg(long, value_parser = parse_duration)]
    health_timeout: Option<std::time::Duration>,
    /// Failures in a row that make the task unhealthy.
    #[arg(long)]
    health_retries: Option<u32>,
    /// Start-up time during which failures do not count.
    #[arg(long, value_parser = parse_duration)]
    health_start_period: Option<std::time::Duration>,
    /// Disable the image's health check.
    #[arg(long)]
    no_healthcheck: bool,
    /// Tasks of this service per node at most (0: no limit).
    #[arg(long)]
    replicas_max_per_node: Option<u64>,
    /// vip or dnsrr.
    #[arg(long, value_parser = parse_enum::<EndpointMode>)]
    endpoint_mode: Option<EndpointMode>,
}

#[derive(Debug, Args)]
pub(super) struct CreateArgs {
    /// The service's name.
    #[arg(long)]
    name: String,
    /// replicated, global, replicated-job or global-job.
    #[arg(long, default_value = "replicated")]
    mode: String,
    #[command(flatten)]
    flags: SpecFlags,
    /// Environment variable (KEY=VALUE).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Service label (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
    /// Container label (KEY=VALUE).
    #[arg(long = "container-label")]
    container_labels: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=…,target=…[,readonly].
    #[arg(long = "mount")]
    mounts: Vec<String>,
    /// Placement constraint (e.g. node.labels.zone==a).
    #[arg(long = "constraint")]
    constraints: Vec<String>,
    /// Placement preference (spread=node.labels.zone).
    #[arg(long = "placement-pref")]
    placement_prefs: Vec<String>,
    /// Publish a port: [published:]target[/proto] or published=…,target=…,mode=host.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Attach to a network.
    #[arg(long = "network")]
    networks: Vec<String>,
    /// Give a secret: NAME or source=NAME,target=PATH.
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Give a config: NAME or source=NAME,target=PATH.
    #[arg(long = "config")]
    configs: Vec<String>,
    /// Print only the id.
    #[arg(short, long)]
    quiet: bool,
    /// The image.
    image: String,
    /// Arguments (the image's command, replaced).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct UpdateArgs {
    /// The service.
    service: String,
    /// New image.
    #[arg(long)]
    image: Option<String>,
    /// New arguments (split like a shell would).
    #[arg(long)]
    args: Option<String>,
    #[command(flatten)]
    flags: SpecFlags,
    /// Add or change an environment variable.
    #[arg(long = "env-add")]
    env_add: Vec<String>,
    /// Remove an environment variable.
    #[arg(long = "env-rm")]
    env_rm: Vec<String>,
    /// Add or change a service label.
    #[arg(long = "label-add")]
    label_add: Vec<String>,
    /// Remove a service label.
    #[arg(long = "label-rm")]
    label_rm: Vec<String>,
    /// Add a placement constraint.
    #[arg(long = "constraint-add")]
    constraint_add: Vec<String>,
    /// Remove a placement constraint.
    #[arg(long = "constraint-rm")]
    constraint_rm: Vec<String>,
    /// Publish a port.
    #[arg(long = "publish-add")]
    publish_add: Vec<String>,
    /// Stop publishing a target port (`80` or `80/udp`).
    #[arg(long = "publish-rm")]
    publish_rm: Vec<String>,
    /// Add a mount.
    #[arg(long = "mount-add")]
    mount_add: Vec<String>,
    /// Remove the mount at a target path.
    #[arg(long = "mount-rm")]
    mount_rm: Vec<String>,
    /// Attach to a network.
    #[arg(long = "network-add")]
    network_add: Vec<String>,
    /// Detach from a network.
    #[arg(long = "network-rm")]
    network_rm: Vec<String>,
    /// Give a secret.
    #[arg(long = "secret-add")]
    secret_add: Vec<String>,
    /// Take a secret away.
    #[arg(long = "secret-rm")]
    secret_rm: Vec<String>,
    /// Give a config.
    #[arg(long = "config-add")]
    config_add: Vec<String>,
    /// Take a config away.
    #[arg(long = "config-rm")]
    config_rm: Vec<String>,
    /// Replace the tasks even if nothing changed.
    #[arg(long)]
    force: bool,
    /// Go back to the previous spec (the same as `service rollback`).
    #[arg(long)]
    rollback: bool,
    /// Print only the id.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_scale(s: &str) -> Result<(String, u64), String> {
    let (name, n) = s.split_once('=').ok_or_else(|| format!("{s:?} is not SERVICE=REPLICAS"))?;
    let n = n.parse().map_err(|_| format!("{n:?} is not a number of replicas"))?;
    Ok((name.to_owned(), n))
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    units::parse_bytes(s).map_err(|e| e.to_string())
}

fn parse_cpus(s: &str) -> Result<u64, String> {
    units::parse_cpus(s).map_err(|e| e.to_string())
}

/// Reads an enum from the name the API uses for it (`on-failure`, `start-first`…).
fn parse_enum<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
}

fn mount(s: &str) -> anyhow::Result<Mount> {
    let mut kind = "volume";
    let (mut source, mut target, mut read_only, mut size) = (String::new(), String::new(), false, 0);
    for field in s.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, "true"));
        match k {
            "type" => kind = v,
            "source" | "src" => source = v.to_owned(),
            "target" | "destination" | "dst" => target = v.to_owned(),
            "readonly" | "ro" => read_only = v != "false" && v != "0",
            "tmpfs-size" => size = units::parse_bytes(v).map_err(|e| anyhow::anyhow!("{s:?}: {e}"))?,
            other => bail!("{s:?}: {other:?} is not one of type, source, target, readonly, tmpfs-size"),
        }
    }
    if target.is_empty() {
        bail!("{s:?} names no target");
    }
    Ok(match kind {
        "bind" => Mount::Bind { source, target, read_only },
        "volume" => Mount::Volume { source, target, read_only },
        "tmpfs" => Mount::Tmpfs { target, size_bytes: size, mode: None },
        other => bail!("{s:?}: type {other:?} is not bind, volume or tmpfs"),
    })
}

fn file_ref(s: &str) -> anyhow::Result<FileReference> {
    let mut r = FileReference { source: String::new(), target: None, uid: 0, gid: 0, mode: 0o444 };
    if !s.contains('=') {
        r.source = s.to_owned();
        return Ok(r);
    }
    for field in s.split(',') {
        let (k, v) = field.split_once('=').with_context(|| format!("{field:?} in {s:?} is not key=value"))?;
        match k {
            "source" | "src" => r.source = v.to_owned(),
            "target" => r.target = Some(v.to_owned()),
            "uid" => r.uid = v.parse().with_context(|| format!("uid {v:?}"))?,
            "gid" => r.gid = v.parse().with_context(|| format!("gid {v:?}"))?,
            "mode" => r.mode = u32::from_str_radix(v, 8).with_context(|| format!("mode {v:?} (octal)"))?,
            other => bail!("{s:?}: {other:?} is not one of source, target, uid, gid, mode"),
        }
    }
    Ok(r)
}

fn ports(list: &[String]) -> anyhow::Result<Vec<PortConfig>> {
    let mut out = Vec::new();
    for p in list {
        out.extend(shoal_api::compose::publish_flag(p).map_err(anyhow::Error::msg)?);
    }
    Ok(out)
}

fn mode(name: &str, flags: &SpecFlags) -> anyhow::Result<ServiceMode> {
    Ok(match name {
        "replicated" => ServiceMode::Replicated { replicas: flags.replicas.unwrap_or(1) },
        "global" => ServiceMode::Global,
        "replicated-job" => ServiceMode::ReplicatedJob {
            max_concurrent: flags.max_concurrent.unwrap_or(1),
            total_completions: flags.replicas,
        },
        "global-job" => ServiceMode::GlobalJob,
        other => bail!("--mode {other:?} is not replicated, global, replicated-job or global-job"),
    })
}

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

/// The rolling-update settings given for updates or for rollbacks.
struct Rolling {
    parallelism: Option<u64>,
    delay: Option<std::time::Duration>,
    failure_action: Option<shoal_api::service::FailureAction>,
    monitor: Option<std::time::Duration>,
    max_failure_ratio: Option<f64>,
    order: Option<shoal_api::service::UpdateOrder>,
}

impl Rolling {
    fn apply(self, c: &mut UpdateConfig) {
        set(&mut c.parallelism, &self.parallelism);
        set(&mut c.delay, &self.delay);
        set(&mut c.failure_action, &self.failure_action);
        set(&mut c.monitor, &self.monitor);
        set(&mut c.max_failure_ratio, &self.max_failure_ratio);
        set(&mut c.order, &self.order);
    }
}

impl SpecFlags {
    /// Sets every value given on the command line in `spec`.
    fn apply(&self, spec: &mut ServiceSpec) -> anyhow::Result<()> {
        match &mut spec.mode {
            ServiceMode::Replicated { replicas } => set(replicas, &self.replicas),
            ServiceMode::ReplicatedJob { max_concurrent, total_completions } => {
                set(max_concurrent, &self.max_concurrent);
                if self.replicas.is_some() {
                    *total_completions = self.replicas;
                }
            }
            _ if self.replicas.is_some() => bail!("--replicas works with replicated services and jobs only"),
            _ => {}
        }
        let t = &mut spec.task_template;
        let c = &mut t.container;
        if self.workdir.is_some() {
            c.workdir = self.workdir.clone();
        }
        if self.user.is_some() {
            c.user = self.user.clone();
        }
        if self.hostname.is_some() {
            c.hostname = self.hostname.clone();
        }
        if let Some(e) = &self.entrypoint {
            c.command =
                shlex::split(e).with_context(|| format!("--entrypoint {e:?} has an unclosed quote"))?;
        }
        if self.stop_signal.is_some() {
            c.stop_signal = self.stop_signal.clone();
        }
        set(&mut c.stop_grace_period, &self.stop_grace_period);
        set(&mut c.read_only, &self.read_only);
        if self.no_healthcheck {
            c.healthcheck = Some(HealthCheck { test: vec!["NONE".into()], ..HealthCheck::default() });
        } else if self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
        {
            let h = c.healthcheck.get_or_insert_with(HealthCheck::default);
            if let Some(cmd) = &self.health_cmd {
                h.test = vec!["CMD-SHELL".into(), cmd.clone()];
            }
            set(&mut h.interval, &self.health_interval);
            set(&mut h.timeout, &self.health_timeout);
            set(&mut h.retries, &self.health_retries);
            set(&mut h.start_period, &self.health_start_period);
        }
        let r = &mut t.resources;
        set(&mut r.limits.memory_bytes, &self.limit_memory);
        set(&mut r.limits.nano_cpus, &self.limit_cpu);
        set(&mut r.limits.pids, &self.limit_pids);
        set(&mut r.reservations.memory_bytes, &self.reserve_memory);
        set(&mut r.reservations.nano_cpus, &self.reserve_cpu);
        let rp = &mut t.restart_policy;
        set(&mut rp.condition, &self.restart_condition);
        set(&mut rp.delay, &self.restart_delay);
        set(&mut rp.max_attempts, &self.restart_max_attempts);
        set(&mut rp.window, &self.restart_window);
        set(&mut t.placement.max_replicas, &self.replicas_max_per_node);
        Rolling {
            parallelism: self.update_parallelism,
            delay: self.update_delay,
            failure_action: self.update_failure_action,
            monitor: self.update_monitor,
            max_failure_ratio: self.update_max_failure_ratio,
            order: self.update_order,
        }
        .apply(&mut spec.update_config);
        Rolling {
            parallelism: self.rollback_parallelism,
            delay: self.rollback_delay,
            failure_action: self.rollback_failure_action,
            monitor: self.rollback_monitor,
            max_failure_ratio: self.rollback_max_failure_ratio,
            order: self.rollback_order,
        }
        .apply(&mut spec.rollback_config);
        set(&mut spec.endpoint_spec.mode, &self.endpoint_mode);
        Ok(())
    }
}

fn create_spec(a: &CreateArgs) -> anyhow::Result<ServiceSpec> {
    let mut spec = ServiceSpec::new(&a.name, &a.image);
    spec.mode = mode(&a.mode, &a.flags)?;
    a.flags.apply(&mut spec)?;
    spec.labels = labels_from(&a.labels)?;
    spec.endpoint_spec.ports = ports(&a.publish)?;
    let t = &mut spec.task_template;
    t.container.args = a.args.clone();
    t.container.env = a.env.clone();
    t.container.labels = labels_from(&a.container_labels)?;
    t.container.mounts = a.mounts.iter().map(|m| mount(m)).collect::<anyhow::Result<_>>()?;
    t.container.secrets = a.secrets.iter().map(|s| file_ref(s)).collect::<anyhow::Result<_>>()?;
    t.container.configs = a.configs.iter().map(|s| file_ref(s)).collect::<anyhow::Result<_>>()?;
    t.placement.constraints = a.constraints.clone();
    t.placement.preferences = a
        .placement_prefs
        .iter()
        .map(|p| match p.strip_prefix("spread=") {
            Some(label) => Ok(PlacementPreference { spread: label.to_owned() }),
            None => bail!("--placement-pref {p:?} is not spread=LABEL"),
        })
        .collect::<anyhow::Result<_>>()?;
    t.networks = a
        .networks
        .iter()
        .map(|n| NetworkAttachmentConfig { target: n.clone(), aliases: Vec::new() })
        .collect();
    Ok(spec)
}

fn updated_spec(a: &UpdateArgs, old: &ServiceSpec) -> anyhow::Result<ServiceSpec> {
    let mut spec = old.clone();
    a.flags.apply(&mut spec)?;
    let t = &mut spec.task_template;
    let c = &mut t.container;
    if let Some(image) = &a.image {
        c.image = image.clone();
    }
    if let Some(args) = &a.args {
        c.args = shlex::split(args).with_context(|| format!("--args {args:?} has an unclosed quote"))?;
    }
    let env_key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    for add in &a.env_add {
        let key = env_key(add);
        c.env.retain(|e| env_key(e) != key);
        c.env.push(add.clone());
    }
    c.env.retain(|e| !a.env_rm.contains(&env_key(e)));
    for (k, v) in labels_from(&a.label_add)? {
        spec.labels.insert(k, v);
    }
    for k in &a.label_rm {
        spec.labels.remove(k);
    }
    let p = &mut t.placement;
    p.constraints.retain(|x| !a.constraint_rm.contains(x));
    p.constraints
        .extend(a.constraint_add.iter().filter(|x| !p.constraints.contains(x)).cloned().collect::<Vec<_>>());
    for m in &a.mount_rm {
        c.mounts.retain(|x| x.target() != m);
    }
    for m in &a.mount_add {
        let m = mount(m)?;
        c.mounts.retain(|x| x.target() != m.target());
        c.mounts.push(m);
    }
    c.secrets.retain(|r| !a.secret_rm.contains(&r.source));
    for s in &a.secret_add {
        c.secrets.push(file_ref(s)?);
    }
    c.configs.retain(|r| !a.config_rm.contains(&r.source));
    for s in &a.config_add {
        c.configs.push(file_ref(s)?);
    }
    t.networks.retain(|n| !a.network_rm.contains(&n.target));
    for n in &a.network_add {
        if !t.networks.iter().any(|x| &x.target == n) {
            t.networks.push(NetworkAttachmentConfig { target: n.clone(), aliases: Vec::new() });
        }
    }
    if a.force {
        t.force_update += 1;
    }
    let ports_now = &mut spec.endpoint_spec.ports;
    for rm in &a.publish_rm {
        let (port, proto) = rm.split_once('/').unwrap_or((rm, "tcp"));
        let port: u16 =
            port.parse().with_context(|| format!("--publish-rm {rm:?} is not PORT[/PROTOCOL]"))?;
        ports_now.retain(|p| !(p.target_port == port && p.protocol.as_str() == proto));
    }
    for p in ports(&a.publish_add)? {
        ports_now.retain(|x| !(x.target_port == p.target_port && x.protocol == p.protocol));
        ports_now.push(p);
    }
    Ok(spec)
}

fn replicas(s: &Service, tasks: &[Task]) -> String {
    let mine = tasks.iter().filter(|t| t.service_id == s.id);
    let running = mine.clone().filter(|t| t.status.state == TaskState::Running).count();
    match s.spec.mode {
        ServiceMode::Replicated { replicas } => format!("{running}/{replicas}"),
        ServiceMode::ReplicatedJob { total_completions, max_concurrent } => {
            let done = mine.filter(|t| t.status.state == TaskState::Complete).count();
            format!(
                "{running}/{max_concurrent} ({done}/{} completed)",
                total_completions.unwrap_or(max_concurrent)
            )
        }
        _ => {
            let desired = mine.filter(|t| t.desired_state <= TaskState::Running).count();
            format!("{running}/{desired}")
        }
    }
}

fn port_list(s: &Service) -> String {
    s.endpoint
        .ports
        .iter()
        .map(|p| match p.published_port {
            Some(pp) => format!("*:{pp}->{}/{}", p.target_port, p.protocol.as_str()),
            None => format!("{}/{}", p.target_port, p.protocol.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints services as `docker service ls` does.
pub(super) async fn print_services(
    client: &Client,
    services: &[Service],
    out: &Output,
) -> anyhow::Result<()> {
    let tasks = if out.quiet || out.format != super::remote::Format::Table {
        Vec::new()
    } else {
        client.tasks(&TaskFilter::default()).await?
    };
    out.print(
        services,
        |s| s.id.clone(),
        &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
        |s| {
            vec![
                short(&s.id),
                s.spec.name.clone(),
                s.spec.mode.name().into(),
                replicas(s, &tasks),
                s.spec.task_template.container.image.clone(),
                port_list(s),
            ]
        },
    )
}

/// Prints tasks as `docker service ps` does.
pub(super) async fn print_tasks(client: &Client, tasks: &[Task], out: &Output) -> anyhow::Result<()> {
    let (services, nodes) = if out.quiet || out.format != super::remote::Format::Table {
        (Vec::new(), Vec::new())
    } else {
        (client.services(&ServiceFilter::default()).await?, client.nodes(Default::default()).await?)
    };
    let service_name =
        |id: &str| services.iter().find(|s| s.id == id).map_or_else(|| short(id), |s| s.spec.name.clone());
    let node_name = |id: &Option<String>| {
        id.as_ref().map_or_else(String::new, |id| {
            nodes.iter().find(|n| &n.id == id).map_or_else(|| short(id), |n| n.description.hostname.clone())
        })
    };
    out.print(
        tasks,
        |t| t.id.clone(),
        &["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"],
        |t| {
            vec![
                short(&t.id),
                t.display_name(&service_name(&t.service_id)),
                t.spec.container.image.clone(),
                node_name(&t.node_id),
                t.desired_state.as_str().to_owned(),
                format!("{} {}", t.status.state.as_str(), ago(t.status.timestamp)),
                t.status.error.clone().unwrap_or_default(),
            ]
        },
    )
}

pub(super) fn run(cmd: ServiceCommand, conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client()?;
    block_on(async move {
        match cmd {
            ServiceCommand::Create(a) => {
                let spec = create_spec(&a)?;
                let created = client.create_service(&spec).await?;
                println!("{}", created.id);
                if !a.quiet {
                    for w in &created.warnings {
                        eprintln!("warning: {w}");
                    }
                }
            }
            ServiceCommand::Ls { name, label, out } => {
                let services = client.services(&ServiceFilter { name, label, ..Default::default() }).await?;
                print_services(&client, &services, &out).await?;
            }
            ServiceCommand::Ps { services, running, out } => {
                let mut tasks = Vec::new();
                for s in &services {
                    let desired_state = running.then(|| "running".to_owned());
                    tasks.extend(
                        client
                            .tasks(&TaskFilter {
                                service: Some(s.clone()),
                                desired_state,
                                ..Default::default()
                            })
                            .await?,
                    );
                }
                print_tasks(&client, &tasks, &out).await?;
            }
            ServiceCommand::Inspect { services } => {
                let mut out = Vec::new();
                for s in &services {
                    out.push(client.service(s).await?);
                }
                print_json(&out)?;
            }
            ServiceCommand::Scale { pairs } => {
                for (name, n) in pairs {
                    client.scale_service(&name, n).await?;
                    println!("{name} scaled to {n}");
                }
            }
            ServiceCommand::Update(a) => {
                let svc = client.service(&a.service).await?;
                let written = if a.rollback {
                    client.rollback_service(&svc.id).await?
                } else {
                    let spec = updated_spec(&a, &svc.spec)?;
                    client.update_service(&svc.id, svc.meta.version, &spec).await?
                };
                println!("{}", if a.quiet { written.id } else { svc.spec.name });
            }
            ServiceCommand::Rollback { service } => {
                client.rollback_service(&service).await?;
                println!("{service}: rolled back to the previous spec");
            }
            ServiceCommand::Logs { target, follow, tail, since, timestamps, no_task_ids } => {
                use futures::StreamExt as _;
                use std::io::Write as _;
                let query = shoal_api::wire::LogQuery { follow, tail, since };
                let (of, id) = match client.service(&target).await {
                    Ok(svc) => (LogsOf::Service, svc.id),
                    Err(e) if e.status() == Some(404) => (LogsOf::Task, client.task(&target).await?.id),
                    Err(e) => return Err(e.into()),
                };
                // Names for the prefix: <service>.<slot>.<task>@<node>, as Docker prints.
                let (services, tasks, nodes) = (
                    client.services(&ServiceFilter::default()).await?,
                    client.tasks(&TaskFilter::default()).await?,
                    client.nodes(Default::default()).await?,
                );
                let prefix = |task_id: &str| {
                    let Some(t) = tasks.iter().find(|t| t.id == task_id) else { return short(task_id) };
                    let svc =
                        services.iter().find(|s| s.id == t.service_id).map_or("?", |s| s.spec.name.as_str());
                    let node = t
                        .node_id
                        .as_ref()
                        .and_then(|n| nodes.iter().find(|x| &x.id == n))
                        .map_or("?", |n| n.description.hostname.as_str());
                    match t.slot {
                        Some(slot) => format!("{svc}.{slot}.{}@{node}", short(&t.id)),
                        None => format!("{svc}.{}@{node}", short(&t.id)),
                    }
                };
                let mut stream = client.logs(of, &id, &query).await?;
                let mut out = std::io::stdout().lock();
                while let Some(record) = stream.next().await {
                    let r = record?;
                    if let Some(e) = &r.error {
                        eprintln!("{}: {e}", prefix(&r.task_id));
                        continue;
                    }
                    let mut line = String::new();
                    if timestamps && let Some(t) = r.time {
                        line.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
                        line.push(' ');
                    }
                    if !no_task_ids {
                        line.push_str(&format!("{:<30} | ", prefix(&r.task_id)));
                    }
                    line.push_str(&r.line);
                    if r.stream == "stderr" {
                        eprintln!("{line}");
                    } else {
                        writeln!(out, "{line}")?;
                        if follow {
                            out.flush()?;
                        }
                    }
                }
            }
            ServiceCommand::Rm { services } => {
                let mut failed = Vec::new();
                for s in &services {
                    match client.remove_service(s).await {
                        Ok(()) => println!("{s}"),
                        Err(e) => {
                            eprintln!("error: {s}: {e}");
                            failed.push(s.clone());
                        }
                    }
                }
                if !failed.is_empty() {
                    bail!("{} of {} services not removed", failed.len(), services.len());
                }
            }
        }
        Ok(())
    })?
}
