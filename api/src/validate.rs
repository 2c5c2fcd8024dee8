//! Validation of specs before they are stored. Every problem is reported with the path
//! of the field that has it (`task_template.resources.limits.memory_bytes`), and all
//! problems of a spec are reported at once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::ClusterSpec;
use crate::constraint;
use crate::network::NetworkSpec;
use crate::node::NodeSpec;
use crate::secret::{MAX_PAYLOAD_BYTES, PayloadSpec};
use crate::service::{EndpointMode, FailureAction, PublishMode, ServiceMode, ServiceSpec, UpdateConfig};
use crate::task_spec::{ContainerSpec, HealthCheck, Mount, Resources, RestartPolicy, TaskSpec};
use crate::units::{NANO_CPUS_PER_CPU, format_bytes};

/// The smallest memory limit, as in Docker: below it a container cannot start.
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;
/// The smallest CPU limit: 0.01 CPU.
pub const MIN_NANO_CPUS: u64 = NANO_CPUS_PER_CPU / 100;
/// The most CPUs a limit or reservation may name.
pub const MAX_CPUS: u64 = 1024;
/// The most replicas a service may ask for.
pub const MAX_REPLICAS: u64 = 100_000;
/// The longest name (a DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `endpoint_spec.ports[1].published_port`.
    pub field: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// The first problem; a `ValidationErrors` is never empty.
    pub fn first(&self) -> &FieldError {
        &self.0[0]
    }
}

/// A spec that can be checked before it is stored.
pub trait Validate {
    /// Checks every field; all problems are returned together.
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::default();
        self.check(&mut c);
        c.finish()
    }

    /// Adds the problems of `self` to `c`.
    fn check(&self, c: &mut Checker);
}

/// Collects problems while walking a spec, tracking the current field path.
#[derive(Debug, Default)]
pub struct Checker {
    path: Vec<String>,
    errors: Vec<FieldError>,
}

impl Checker {
    /// Runs `f` with `segment` appended to the path (`.name`, or `[3]` for an index).
    pub fn at<R>(&mut self, segment: impl Into<String>, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(segment.into());
        let out = f(self);
        self.path.pop();
        out
    }

    /// Records a problem with the field `segment` below the current path.
    pub fn fail(&mut self, segment: &str, message: impl Into<String>) {
        let mut field = self.path.concat();
        if !segment.is_empty() {
            if !field.is_empty() && !segment.starts_with('[') {
                field.push('.');
            }
            field.push_str(segment);
        }
        let field = field.trim_start_matches('.').to_owned();
        self.errors.push(FieldError { field, message: message.into() });
    }

    /// Records `message` unless `ok`.
    pub fn ensure(&mut self, ok: bool, segment: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.fail(segment, message());
        }
    }

    /// Ok when nothing was recorded.
    pub fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() { Ok(()) } else { Err(ValidationErrors(self.errors)) }
    }
}

/// Path segment for a struct field.
fn field(name: &str) -> String {
    format!(".{name}")
}

/// Checks an object name: letters, digits, `-` and `_`, starting and ending with a
/// letter or digit, 1 to 63 characters. This is a DNS label, widened by `_` because
/// stacks name their services `<stack>_<service>` as Docker does.
pub fn check_name(c: &mut Checker, segment: &str, name: &str) {
    check_name_chars(c, segment, name, b"-_", MAX_NAME_LEN);
}

/// Secret, config and volume names also allow `.` (`tls.crt`), as Docker does.
fn check_file_name(c: &mut Checker, segment: &str, name: &str) {
    check_name_chars(c, segment, name, b"-_.", 64);
}

fn check_name_chars(c: &mut Checker, segment: &str, name: &str, extra: &[u8], max: usize) {
    let allowed: String = extra.iter().map(|&b| format!("'{}'", b as char)).collect::<Vec<_>>().join(", ");
    let msg = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > max {
        Some(format!("is {} characters long; at most {max} are allowed", name.len()))
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b)) {
        Some(format!("{name:?} may contain only letters, digits and {allowed}"))
    } else if !name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        || !name.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    {
        Some(format!("{name:?} must start and end with a letter or digit"))
    } else {
        None
    };
    if let Some(m) = msg {
        c.fail(segment, m);
    }
}

/// Checks a DNS name such as a network alias (`db`, `db.internal`): dot-separated
/// labels of letters, digits, `-` and `_`, at most 253 characters.
fn check_dns_name(c: &mut Checker, segment: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= MAX_NAME_LEN
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    c.ensure(ok, segment, || format!("{name:?} is not a DNS name (labels of letters, digits, '-' and '_')"));
}

fn check_labels(c: &mut Checker, segment: &str, labels: &BTreeMap<String, String>) {
    for key in labels.keys() {
        c.ensure(
            !key.is_empty() && !key.contains(|ch: char| ch.is_whitespace() || ch == '='),
            &format!("{segment}[{key:?}]"),
            || "label keys must be non-empty, with no white space or '='".to_owned(),
        );
    }
}

fn check_absolute_path(c: &mut Checker, segment: &str, path: &str) {
    c.ensure(path.starts_with('/') && !path.contains('\0'), segment, || {
        format!("{path:?} must be an absolute path")
    });
    c.ensure(!path.split('/').any(|p| p == ".."), segment, || format!("{path:?} must not contain '..'"));
}

impl Validate for ServiceSpec {
    fn check(&self, c: &mut Checker) {
        check_name(c, "name", &self.name);
        check_labels(c, "labels", &self.labels);
        c.at(field("task_template"), |c| self.task_template.check(c));
        check_mode(c, &self.mode, self.task_template.placement.max_replicas);
        if !self.mode.is_job() {
            c.at(field("update_config"), |c| check_update_config(c, &self.update_config, false));
            c.at(field("rollback_config"), |c| check_update_config(c, &self.rollback_config, true));
        }
        c.at(field("endpoint_spec"), |c| check_endpoint(c, self));
    }
}

fn check_mode(c: &mut Checker, mode: &ServiceMode, max_replicas: u64) {
    match *mode {
        ServiceMode::Replicated { replicas } => c.ensure(replicas <= MAX_REPLICAS, "mode.replicas", || {
            format!("{replicas} is more than the {MAX_REPLICAS} replicas a service may have")
        }),
        ServiceMode::ReplicatedJob { max_concurrent, total_completions } => {
            c.ensure(max_concurrent >= 1, "mode.max_concurrent", || "must be at least 1".into());
            c.ensure(max_concurrent <= MAX_REPLICAS, "mode.max_concurrent", || {
                format!("must be at most {MAX_REPLICAS}")
            });
            if let Some(total) = total_completions {
                c.ensure(total >= 1, "mode.total_completions", || "must be at least 1".into());
            }
        }
        ServiceMode::Global | ServiceMode::GlobalJob => {
            c.ensure(max_replicas == 0, "task_template.placement.max_replicas", || {
                "applies only to replicated services; a global service runs one task per node".into()
            })
        }
    }
}

fn check_update_config(c: &mut Checker, u: &UpdateConfig, rollback: bool) {
    c.ensure((0.0..=1.0).contains(&u.max_failure_ratio), "max_failure_ratio", || {
        format!("{} is not a fraction between 0 and 1", u.max_failure_ratio)
    });
    c.ensure(!(rollback && u.failure_action == FailureAction::Rollback), "failure_action", || {
        "a rollback cannot itself roll back: use pause or continue".into()
    });
    c.ensure(!u.progress_deadline.is_zero(), "progress_deadline", || {
        "must be more than 0s (a rollout needs time to make progress)".into()
    });
    c.ensure(u.parallelism <= MAX_REPLICAS, "parallelism", || format!("must be at most {MAX_REPLICAS}"));
}

fn check_endpoint(c: &mut Checker, spec: &ServiceSpec) {
    let ep = &spec.endpoint_spec;
    let mut seen = HashSet::new();
    for (i, p) in ep.ports.iter().enumerate() {
        c.at(format!(".ports[{i}]"), |c| {
            c.ensure(p.target_port != 0, "target_port", || "must be between 1 and 65535".into());
            match p.published_port {
                Some(0) => c.fail("published_port", "must be between 1 and 65535 (omit it to pick one)"),
                Some(port) if !seen.insert((port, p.protocol)) => {
                    c.fail("published_port", format!("{port}/{} is published twice", p.protocol.as_str()))
                }
                None if p.publish_mode == PublishMode::Host => c.fail(
                    "published_port",
                    "is required in host mode (only ingress ports can be picked automatically)",
                ),
                _ => {}
            }
            if ep.mode == EndpointMode::Dnsrr && p.publish_mode == PublishMode::Ingress {
                c.fail(
                    "publish_mode",
                    "ingress ports need a VIP: use publish_mode host with endpoint mode dnsrr",
                );
            }
            if let Some(name) = &p.name {
                check_name(c, "name", name);
            }
        });
    }
}

impl Validate for TaskSpec {
    fn check(&self, c: &mut Checker) {
        c.at(field("container"), |c| self.container.check(c));
        c.at(field("resources"), |c| check_resources(c, &self.resources));
        c.at(field("restart_policy"), |c| check_restart(c, &self.restart_policy));
        c.at(field("placement"), |c| {
            for (i, expr) in self.placement.constraints.iter().enumerate() {
                if let Err(e) = expr.parse::<constraint::Constraint>() {
                    c.fail(&format!("constraints[{i}]"), e.to_string());
                }
            }
            for (i, p) in self.placement.preferences.iter().enumerate() {
                if let Err(e) = constraint::parse_spread(&p.spread) {
                    c.fail(&format!("preferences[{i}].spread"), e.to_string());
                }
            }
        });
        let mut targets = HashSet::new();
        for (i, n) in self.networks.iter().enumerate() {
            c.ensure(!n.target.is_empty(), &format!("networks[{i}].target"), || "must name a network".into());
            c.ensure(targets.insert(&n.target), &format!("networks[{i}].target"), || {
                format!("network {:?} is listed twice", n.target)
            });
            for (j, alias) in n.aliases.iter().enumerate() {
                check_dns_name(c, &format!("networks[{i}].aliases[{j}]"), alias);
            }
        }
    }
}

impl Validate for ContainerSpec {
    fn check(&self, c: &mut Checker) {
        if let Err(e) = crate::image::parse(&self.image) {
            c.fail("image", e.to_string());
        }
        for (i, kv) in self.env.iter().enumerate() {
            let seg = format!("env[{i}]");
            match kv.split_once('=') {
                None => c.fail(&seg, format!("{kv:?} is not NAME=VALUE")),
                Some((name, value)) => {
                    let ok = !name.is_empty()
                        && !name.starts_with(|ch: char| ch.is_ascii_digit())
                        && name.bytes().all(|b| b.is_ascii_graphic());
                    c.ensure(ok, &seg, || format!("{name:?} is not a valid variable name"));
                    c.ensure(!value.contains('\0'), &seg, || "the value contains a NUL byte".into());
                }
            }
        }
        if let Some(dir) = &self.workdir {
            check_absolute_path(c, "workdir", dir);
        }
        if let Some(user) = &self.user {
            let ok = !user.is_empty()
                && user.split(':').count() <= 2
                && user.split(':').all(|p| {
                    !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
                });
            c.ensure(ok, "user", || format!("{user:?} is not user, uid, user:group or uid:gid"));
        }
        if let Some(host) = &self.hostname {
            let ok = !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= MAX_NAME_LEN
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                });
            c.ensure(ok, "hostname", || format!("{host:?} is not a valid host name"));
        }
        check_labels(c, "labels", &self.labels);
        let mut targets = HashSet::new();
        for (i, m) in self.mounts.iter().enumerate() {
            c.at(format!(".mounts[{i}]"), |c| check_mount(c, m, &mut targets));
        }
        if let Some(h) = &self.healthcheck {
            c.at(field("healthcheck"), |c| check_healthcheck(c, h));
        }
        for (kind, refs) in [("secrets", &self.secrets), ("configs", &self.configs)] {
            let mut seen = HashSet::new();
            for (i, r) in refs.iter().enumerate() {
                let seg = format!("{kind}[{i}]");
                check_file_name(c, &format!("{seg}.source"), &r.source);
                c.ensure(r.mode <= 0o7777, &format!("{seg}.mode"), || {
                    format!("{:#o} is not a permission mode", r.mode)
                });
                let target = r.target.as_deref().unwrap_or(&r.source);
                c.ensure(
                    !target.is_empty() && !target.split('/').any(|p| p == ".."),
                    &format!("{seg}.target"),
                    || format!("{target:?} must be a file name or an absolute path without '..'"),
                );
                c.ensure(seen.insert(target), &format!("{seg}.target"), || {
                    format!("{target:?} is used twice")
                });
            }
        }
        if let Some(sig) = &self.stop_signal {
            c.ensure(parse_signal(sig).is_some(), "stop_signal", || {
                format!("{sig:?} is not a signal: write SIGTERM, TERM or a number such as 15")
            });
        }
    }
}

/// Reads a signal as `SIGTERM`, `TERM`, `15` or `SIGRTMIN+3`; returns its number.
pub fn parse_signal(s: &str) -> Option<i32> {
    const NAMES: [(&str, i32); 31] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("IOT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("PWR", 30),
    ];
    const RTMIN: i32 = 34;
    const RTMAX: i32 = 64;
    if let Ok(n) = s.parse::<i32>() {
        return (1..=RTMAX).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let n = if rest.is_empty() { 0 } else { rest.parse::<i32>().ok()? };
        let v = base + sign * n;
        (RTMIN..=RTMAX).contains(&v).then_some(v)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(RTMIN, rest.strip_prefix('+').unwrap_or(rest), 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(RTMAX, rest.strip_prefix('-').unwrap_or(rest), -1);
    }
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn check_mount<'a>(c: &mut Checker, m: &'a Mount, targets: &mut HashSet<&'a str>) {
    check_absolute_path(c, "target", m.target());
    c.ensure(m.target() != "/", "target", || "cannot mount over the container's root".into());
    c.ensure(targets.insert(m.target()), "target", || format!("{:?} is mounted twice", m.target()));
    match m {
        Mount::Bind { source, .. } => check_absolute_path(c, "source", source),
        Mount::Volume { source, .. } => check_file_name(c, "source", source),
        Mount::Tmpfs { mode, .. } => {
            if let Some(mode) = mode {
                c.ensure(*mode <= 0o7777, "mode", || format!("{mode:#o} is not a permission mode"));
            }
        }
    }
}

fn check_healthcheck(c: &mut Checker, h: &HealthCheck) {
    match h.test.first().map(String::as_str) {
        Some("NONE") => c.ensure(h.test.len() == 1, "test", || "NONE takes no arguments".into()),
        Some("CMD") => c.ensure(h.test.len() >= 2, "test", || "CMD needs a program to run".into()),
        Some("CMD-SHELL") => c.ensure(h.test.len() == 2 && !h.test[1].trim().is_empty(), "test", || {
            "CMD-SHELL takes exactly one shell command".into()
        }),
        // Empty: the image's test with these timings, as in Docker.
        None => {}
        _ => c.fail("test", "must start with CMD, CMD-SHELL or NONE"),
    }
    if h.is_disabled() {
        return;
    }
    let ms = Duration::from_millis(1);
    c.ensure(h.interval >= ms, "interval", || "must be at least 1ms".into());
    c.ensure(h.timeout >= ms, "timeout", || "must be at least 1ms".into());
    c.ensure(h.start_interval >= ms, "start_interval", || "must be at least 1ms".into());
    c.ensure(h.retries >= 1, "retries", || "must be at least 1".into());
}

fn check_resources(c: &mut Checker, r: &Resources) {
    let l = &r.limits;
    let cpu_bounds = |n: u64| n == 0 || (MIN_NANO_CPUS..=MAX_CPUS * NANO_CPUS_PER_CPU).contains(&n);
    c.ensure(cpu_bounds(l.nano_cpus), "limits.nano_cpus", || {
        format!("must be 0 (unlimited) or between 0.01 and {MAX_CPUS} CPUs")
    });
    c.ensure(cpu_bounds(r.reservations.nano_cpus), "reservations.nano_cpus", || {
        format!("must be 0 (none) or between 0.01 and {MAX_CPUS} CPUs")
    });
    c.ensure(l.memory_bytes == 0 || l.memory_bytes >= MIN_MEMORY_BYTES, "limits.memory_bytes", || {
        format!("must be at least {} (or 0 for unlimited)", format_bytes(MIN_MEMORY_BYTES))
    });
    c.ensure(l.memory_bytes < 1 << 50, "limits.memory_bytes", || "is larger than any machine".into());
    c.ensure(r.reservations.memory_bytes < 1 << 50, "reservations.memory_bytes", || {
        "is larger than any machine".into()
    });
    c.ensure(l.pids <= 4_194_304, "limits.pids", || "must be at most 4194304 (the kernel's pid_max)".into());
    if l.memory_bytes != 0 {
        c.ensure(r.reservations.memory_bytes <= l.memory_bytes, "reservations.memory_bytes", || {
            "must not exceed limits.memory_bytes".into()
        });
    }
    if l.nano_cpus != 0 {
        c.ensure(r.reservations.nano_cpus <= l.nano_cpus, "reservations.nano_cpus", || {
            "must not exceed limits.nano_cpus".into()
        });
    }
}

fn check_restart(c: &mut Checker, r: &RestartPolicy) {
    let day = Duration::from_secs(86_400);
    c.ensure(r.delay <= day, "delay", || "must be at most 24h".into());
    c.ensure(r.window <= 30 * day, "window", || "must be at most 720h".into());
}

impl Validate for NetworkSpec {
    fn check(&self, c: &mut Checker) {
        check_name(c, "name", &self.name);
        check_labels(c, "labels", &self.labels);
        if let Some(subnet) = self.subnet {
            c.ensure(subnet.prefix_len() <= 29, "subnet", || {
                format!("{subnet} is too small: use /29 or larger (a prefix of at most 29)")
            });
            c.ensure(subnet.network() == subnet.addr(), "subnet", || {
                format!("{subnet} has host bits set: did you mean {}?", subnet.trunc())
            });
            if let Some(gw) = self.gateway {
                c.ensure(
                    subnet.contains(&gw) && gw != subnet.network() && gw != subnet.broadcast(),
                    "gateway",
                    || format!("{gw} is not a host address inside {subnet}"),
                );
            }
        } else if self.gateway.is_some() {
            c.fail("gateway", "needs a subnet: give subnet too");
        }
        if let Some(mtu) = self.mtu {
            c.ensure((crate::network::MIN_MTU..=65_535 - crate::network::VXLAN_OVERHEAD).contains(&mtu), "mtu", || {
                format!(
                    "{mtu} is outside {}-{}: an overlay interface needs at least IPv4's minimum, and VXLAN adds {} bytes to every packet",
                    crate::network::MIN_MTU,
                    65_535 - crate::network::VXLAN_OVERHEAD,
                    crate::network::VXLAN_OVERHEAD
                )
            });
        }
        for k in self.options.keys() {
            match k.as_str() {
                "encrypted" => {}
                other => c.fail(
                    &format!("options.{other}"),
                    "is not an overlay option Shoal knows (it knows: encrypted)",
                ),
            }
        }
        if self.ingress {
            c.ensure(!self.internal, "internal", || "the ingress network cannot be internal".into());
            c.ensure(!self.attachable, "attachable", || "the ingress network cannot be attachable".into());
        }
    }
}

impl Validate for PayloadSpec {
    fn check(&self, c: &mut Checker) {
        check_file_name(c, "name", &self.name);
        check_labels(c, "labels", &self.labels);
        c.ensure(!self.data.is_empty(), "data", || "must not be empty".into());
        c.ensure(self.data.len() < MAX_PAYLOAD_BYTES, "data", || {
            format!(
                "is {} bytes; it must be smaller than {}",
                self.data.len(),
                format_bytes(MAX_PAYLOAD_BYTES as u64)
            )
        });
    }
}

impl Validate for NodeSpec {
    fn check(&self, c: &mut Checker) {
        check_labels(c, "labels", &self.labels);
    }
}

impl Validate for ClusterSpec {
    fn check(&self, c: &mut Checker) {
        check_name(c, "name", &self.name);
        check_labels(c, "labels", &self.labels);
        c.ensure((1024..=49151).contains(&self.data_path_port), "data_path_port", || {
            format!("{} is outside 1024-49151, the range Swarm allows for VXLAN", self.data_path_port)
        });
        c.ensure(
            self.ca_config.node_cert_expiry >= crate::cluster::MIN_NODE_CERT_EXPIRY,
            "ca_config.node_cert_expiry",
            || "must be at least 1m".to_owned(),
        );
        let d = &self.dispatcher;
        c.ensure(
            (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d.heartbeat_period),
            "dispatcher.heartbeat_period",
            || "must be between 100ms and 1h".into(),
        );
        c.ensure(d.node_down_grace_multiplier >= 2, "dispatcher.node_down_grace_multiplier", || {
            "must be at least 2 (one missed heartbeat is not a failure)".into()
        });
        c.ensure(self.raft.snapshot_interval >= 1, "raft.snapshot_interval", || "must be at least 1".into());
        let pool = &self.default_address_pool;
        c.ensure(!pool.pools.is_empty(), "default_address_pool.pools", || "needs at least one pool".into());
        c.ensure((8..=29).contains(&pool.mask_length), "default_address_pool.mask_length", || {
            "must be between 8 and 29".into()
        });
        for (i, p) in pool.pools.iter().enumerate() {
            c.ensure(p.prefix_len() <= pool.mask_length, &format!("default_address_pool.pools[{i}]"), || {
                format!("{p} is smaller than the /{} subnets cut from it", pool.mask_length)
            });
        }
    }
}

/// Checks an update of a service: the new spec must be valid, and the name and mode
/// cannot change (delete and recreate the service instead, as in Swarm).
pub fn check_service_update(old: &ServiceSpec, new: &ServiceSpec) -> Result<(), ValidationErrors> {
    let mut c = Checker::default();
    new.check(&mut c);
    c.ensure(old.name == new.name, "name", || {
        format!("a service cannot be renamed ({:?} to {:?})", old.name, new.name)
    });
    c.ensure(std::mem::discriminant(&old.mode) == std::mem::discriminant(&new.mode), "mode", || {
        format!(
            "cannot change from {} to {}: remove and recreate the service",
            old.mode.name(),
            new.mode.name()
        )
    });
    c.finish()
}
