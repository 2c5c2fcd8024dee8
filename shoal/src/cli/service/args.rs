//! The flags of `service create` and `service update`, as clap reads them; [`super::spec`]
//! turns them into a spec.

use clap::Args;
use serde::de::DeserializeOwned;
use shoal_api::service::EndpointMode;
use shoal_api::{duration, units};

/// Flags that set one value of a spec, shared by `create` and `update`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct SpecFlags {
    /// Replicas (replicated services), or completions (replicated jobs).
    #[arg(long)]
    pub(super) replicas: Option<u64>,
    /// Tasks of a replicated job running at once.
    #[arg(long)]
    pub(super) max_concurrent: Option<u64>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub(super) workdir: Option<String>,
    /// User (name or uid[:gid]).
    #[arg(short = 'u', long)]
    pub(super) user: Option<String>,
    /// Container hostname.
    #[arg(long)]
    pub(super) hostname: Option<String>,
    /// Override the image's entrypoint (split like a shell would).
    #[arg(long)]
    pub(super) entrypoint: Option<String>,
    /// Signal that stops the container.
    #[arg(long)]
    pub(super) stop_signal: Option<String>,
    /// Time to wait after the stop signal before killing (e.g. 10s).
    #[arg(long, value_parser = duration::parse)]
    pub(super) stop_grace_period: Option<std::time::Duration>,
    /// Mount the container's root read-only.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub(super) read_only: Option<bool>,
    /// Memory limit (e.g. 64m).
    #[arg(long, value_parser = units::parse_bytes)]
    pub(super) limit_memory: Option<u64>,
    /// CPU limit (e.g. 0.5).
    #[arg(long, value_parser = units::parse_cpus)]
    pub(super) limit_cpu: Option<u64>,
    /// Process limit.
    #[arg(long)]
    pub(super) limit_pids: Option<u64>,
    /// Memory reserved on the node.
    #[arg(long, value_parser = units::parse_bytes)]
    pub(super) reserve_memory: Option<u64>,
    /// CPUs reserved on the node.
    #[arg(long, value_parser = units::parse_cpus)]
    pub(super) reserve_cpu: Option<u64>,
    /// Restart when: none, on-failure, any.
    #[arg(long, value_parser = parse_enum::<shoal_api::task_spec::RestartCondition>)]
    pub(super) restart_condition: Option<shoal_api::task_spec::RestartCondition>,
    /// Delay between restarts.
    #[arg(long, value_parser = duration::parse)]
    pub(super) restart_delay: Option<std::time::Duration>,
    /// Restarts before giving up (0: no limit).
    #[arg(long)]
    pub(super) restart_max_attempts: Option<u64>,
    /// Window in which restarts are counted.
    #[arg(long, value_parser = duration::parse)]
    pub(super) restart_window: Option<std::time::Duration>,
    /// Tasks updated at once (0: all).
    #[arg(long)]
    pub(super) update_parallelism: Option<u64>,
    /// Delay between updates of task groups.
    #[arg(long, value_parser = duration::parse)]
    pub(super) update_delay: Option<std::time::Duration>,
    /// On failure: pause, continue, rollback.
    #[arg(long, value_parser = parse_enum::<shoal_api::service::FailureAction>)]
    pub(super) update_failure_action: Option<shoal_api::service::FailureAction>,
    /// Time to watch an updated task for failure.
    #[arg(long, value_parser = duration::parse)]
    pub(super) update_monitor: Option<std::time::Duration>,
    /// Failure ratio tolerated during an update.
    #[arg(long)]
    pub(super) update_max_failure_ratio: Option<f64>,
    /// stop-first or start-first.
    #[arg(long, value_parser = parse_enum::<shoal_api::service::UpdateOrder>)]
    pub(super) update_order: Option<shoal_api::service::UpdateOrder>,
    /// Tasks rolled back at once (0: all).
    #[arg(long)]
    pub(super) rollback_parallelism: Option<u64>,
    /// Delay between rollbacks of task groups.
    #[arg(long, value_parser = duration::parse)]
    pub(super) rollback_delay: Option<std::time::Duration>,
    /// On rollback failure: pause, continue.
    #[arg(long, value_parser = parse_enum::<shoal_api::service::FailureAction>)]
    pub(super) rollback_failure_action: Option<shoal_api::service::FailureAction>,
    /// Time to watch a rolled-back task for failure.
    #[arg(long, value_parser = duration::parse)]
    pub(super) rollback_monitor: Option<std::time::Duration>,
    /// Failure ratio tolerated during a rollback.
    #[arg(long)]
    pub(super) rollback_max_failure_ratio: Option<f64>,
    /// stop-first or start-first.
    #[arg(long, value_parser = parse_enum::<shoal_api::service::UpdateOrder>)]
    pub(super) rollback_order: Option<shoal_api::service::UpdateOrder>,
    /// Command run to check health (`CMD-SHELL`).
    #[arg(long)]
    pub(super) health_cmd: Option<String>,
    /// Time between health checks.
    #[arg(long, value_parser = duration::parse)]
    pub(super) health_interval: Option<std::time::Duration>,
    /// Time a health check may take.
    #[arg(long, value_parser = duration::parse)]
    pub(super) health_timeout: Option<std::time::Duration>,
    /// Failures in a row that make the task unhealthy.
    #[arg(long)]
    pub(super) health_retries: Option<u32>,
    /// Start-up time during which failures do not count.
    #[arg(long, value_parser = duration::parse)]
    pub(super) health_start_period: Option<std::time::Duration>,
    /// Disable the image's health check.
    #[arg(long)]
    pub(super) no_healthcheck: bool,
    /// Tasks of this service per node at most (0: no limit).
    #[arg(long)]
    pub(super) replicas_max_per_node: Option<u64>,
    /// vip or dnsrr.
    #[arg(long, value_parser = parse_enum::<EndpointMode>)]
    pub(super) endpoint_mode: Option<EndpointMode>,
}

/// `service create`'s flags and arguments.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The service's name.
    #[arg(long)]
    pub(super) name: String,
    /// replicated, global, replicated-job or global-job.
    #[arg(long, default_value = "replicated")]
    pub(super) mode: String,
    #[command(flatten)]
    pub(super) flags: SpecFlags,
    /// Environment variable (KEY=VALUE).
    #[arg(short = 'e', long = "env")]
    pub(super) env: Vec<String>,
    /// Service label (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub(super) labels: Vec<String>,
    /// Container label (KEY=VALUE).
    #[arg(long = "container-label")]
    pub(super) container_labels: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=…,target=…[,readonly].
    #[arg(long = "mount")]
    pub(super) mounts: Vec<String>,
    /// Placement constraint (e.g. node.labels.zone==a).
    #[arg(long = "constraint")]
    pub(super) constraints: Vec<String>,
    /// Placement preference (spread=node.labels.zone).
    #[arg(long = "placement-pref")]
    pub(super) placement_prefs: Vec<String>,
    /// Publish a port: [published:]target[/proto] or published=…,target=…,mode=host.
    #[arg(short = 'p', long = "publish")]
    pub(super) publish: Vec<String>,
    /// Attach to a network.
    #[arg(long = "network")]
    pub(super) networks: Vec<String>,
    /// Give a secret: NAME or source=NAME,target=PATH.
    #[arg(long = "secret")]
    pub(super) secrets: Vec<String>,
    /// Give a config: NAME or source=NAME,target=PATH.
    #[arg(long = "config")]
    pub(super) configs: Vec<String>,
    /// Print only the id, and no progress.
    #[arg(short, long)]
    pub(super) quiet: bool,
    /// Return at once instead of waiting for the service to converge.
    #[arg(short, long)]
    pub(super) detach: bool,
    /// The image.
    pub(super) image: String,
    /// Arguments (the image's command, replaced).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(super) args: Vec<String>,
}

/// `service update`'s flags: each changes one part of the stored spec.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The service.
    pub(super) service: String,
    /// New image.
    #[arg(long)]
    pub(super) image: Option<String>,
    /// New arguments (split like a shell would).
    #[arg(long)]
    pub(super) args: Option<String>,
    #[command(flatten)]
    pub(super) flags: SpecFlags,
    /// Add or change an environment variable.
    #[arg(long = "env-add")]
    pub(super) env_add: Vec<String>,
    /// Remove an environment variable.
    #[arg(long = "env-rm")]
    pub(super) env_rm: Vec<String>,
    /// Add or change a service label.
    #[arg(long = "label-add")]
    pub(super) label_add: Vec<String>,
    /// Remove a service label.
    #[arg(long = "label-rm")]
    pub(super) label_rm: Vec<String>,
    /// Add a placement constraint.
    #[arg(long = "constraint-add")]
    pub(super) constraint_add: Vec<String>,
    /// Remove a placement constraint.
    #[arg(long = "constraint-rm")]
    pub(super) constraint_rm: Vec<String>,
    /// Publish a port.
    #[arg(long = "publish-add")]
    pub(super) publish_add: Vec<String>,
    /// Stop publishing a target port (`80` or `80/udp`).
    #[arg(long = "publish-rm")]
    pub(super) publish_rm: Vec<String>,
    /// Add a mount.
    #[arg(long = "mount-add")]
    pub(super) mount_add: Vec<String>,
    /// Remove the mount at a target path.
    #[arg(long = "mount-rm")]
    pub(super) mount_rm: Vec<String>,
    /// Attach to a network.
    #[arg(long = "network-add")]
    pub(super) network_add: Vec<String>,
    /// Detach from a network.
    #[arg(long = "network-rm")]
    pub(super) network_rm: Vec<String>,
    /// Give a secret.
    #[arg(long = "secret-add")]
    pub(super) secret_add: Vec<String>,
    /// Take a secret away.
    #[arg(long = "secret-rm")]
    pub(super) secret_rm: Vec<String>,
    /// Give a config.
    #[arg(long = "config-add")]
    pub(super) config_add: Vec<String>,
    /// Take a config away.
    #[arg(long = "config-rm")]
    pub(super) config_rm: Vec<String>,
    /// Replace the tasks even if nothing changed.
    #[arg(long)]
    pub(super) force: bool,
    /// Go back to the previous spec (the same as `service rollback`).
    #[arg(long)]
    pub(super) rollback: bool,
    /// Print only the id, and no progress.
    #[arg(short, long)]
    pub(super) quiet: bool,
    /// Return at once instead of waiting for the service to converge.
    #[arg(short, long)]
    pub(super) detach: bool,
}

/// Reads an enum from the name the API uses for it (`on-failure`, `start-first`…).
fn parse_enum<T: DeserializeOwned>(s: &str) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
}
