//! Flags to spec: the spec `service create` sends and the one `service update` makes
//! from the stored spec. Pure functions of the parsed flags.

use anyhow::{Context as _, bail};
use shoal_api::service::{PortConfig, ServiceMode, UpdateConfig};
use shoal_api::task_spec::{FileReference, HealthCheck, Mount, NetworkAttachmentConfig, PlacementPreference};
use shoal_api::{ServiceSpec, ports, units};

use super::args::{CreateArgs, SpecFlags, UpdateArgs};
use crate::cli::remote::labels_from;

/// Reads `--mount`: `type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy][,tmpfs-size=…]`.
fn mount(s: &str) -> anyhow::Result<Mount> {
    let mut kind = "volume";
    let (mut source, mut target, mut read_only, mut size) = (String::new(), String::new(), false, 0);
    let mut no_copy = false;
    for field in s.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, "true"));
        match k {
            "type" => kind = v,
            "source" | "src" => source = v.to_owned(),
            "target" | "destination" | "dst" => target = v.to_owned(),
            "readonly" | "ro" => read_only = v != "false" && v != "0",
            "volume-nocopy" => no_copy = v != "false" && v != "0",
            "tmpfs-size" => size = units::parse_bytes(v).map_err(|e| anyhow::anyhow!("{s:?}: {e}"))?,
            other => {
                bail!(
                    "{s:?}: {other:?} is not one of type, source, target, readonly, volume-nocopy, tmpfs-size"
                )
            }
        }
    }
    if target.is_empty() {
        bail!("{s:?} names no target");
    }
    Ok(match kind {
        "bind" => Mount::Bind { source, target, read_only },
        "volume" => Mount::Volume { source, target, read_only, no_copy },
        "tmpfs" => Mount::Tmpfs { target, size_bytes: size, mode: None },
        other => bail!("{s:?}: type {other:?} is not bind, volume or tmpfs"),
    })
}

/// Reads `--secret`/`--config`: `NAME` or `source=NAME,target=PATH,uid=…,gid=…,mode=…`.
fn file_ref(s: &str) -> anyhow::Result<FileReference> {
    if !s.contains('=') {
        return Ok(FileReference::new(s));
    }
    let mut r = FileReference::new("");
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

/// Reads `--publish` flags.
fn ports(list: &[String]) -> anyhow::Result<Vec<PortConfig>> {
    let mut out = Vec::new();
    for p in list {
        out.extend(ports::parse_publish(p)?);
    }
    Ok(out)
}

/// The mode `--mode` names, with `--replicas` and `--max-concurrent`.
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

/// Sets `target` when a value was given.
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

/// The spec `service create` sends.
pub(super) fn create_spec(a: &CreateArgs) -> anyhow::Result<ServiceSpec> {
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

/// The stored spec `old` with what `service update`'s flags change; everything else
/// stays as it is.
pub(super) fn updated_spec(a: &UpdateArgs, old: &ServiceSpec) -> anyhow::Result<ServiceSpec> {
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
        let (port, protocol) = ports::parse_target(rm).context("--publish-rm takes PORT[/PROTOCOL]")?;
        ports_now.retain(|p| !(p.target_port == port && p.protocol == protocol));
    }
    for p in ports(&a.publish_add)? {
        ports_now.retain(|x| !(x.target_port == p.target_port && x.protocol == p.protocol));
        ports_now.push(p);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use clap::Parser;
    use shoal_api::service::{EndpointMode, FailureAction, Protocol, PublishMode, UpdateOrder};
    use shoal_api::task_spec::RestartCondition;

    use super::*;

    #[derive(Parser)]
    struct Create {
        #[command(flatten)]
        a: CreateArgs,
    }

    #[derive(Parser)]
    struct Update {
        #[command(flatten)]
        a: UpdateArgs,
    }

    /// `service create --name web FLAGS… nginx`.
    fn create(flags: &[&str]) -> anyhow::Result<ServiceSpec> {
        let line = ["create", "--name", "web"].iter().chain(flags).chain(&["nginx"]);
        create_spec(&Create::try_parse_from(line).expect("the flags parse").a)
    }

    /// `service update web FLAGS…` on `old`.
    fn update(old: &ServiceSpec, flags: &[&str]) -> anyhow::Result<ServiceSpec> {
        let line = ["update", "web"].iter().chain(flags);
        updated_spec(&Update::try_parse_from(line).expect("the flags parse").a, old)
    }

    fn port(target: u16, published: Option<u16>, protocol: Protocol) -> PortConfig {
        PortConfig::ingress(target, published, protocol)
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn network(name: &str) -> NetworkAttachmentConfig {
        NetworkAttachmentConfig { target: name.into(), aliases: Vec::new() }
    }

    type Change = fn(&mut ServiceSpec);

    #[test]
    fn create_flags() {
        let cases: Vec<(&[&str], Change)> = vec![
            (&[], |_| {}),
            (&["--replicas", "3"], |s| s.mode = ServiceMode::Replicated { replicas: 3 }),
            (&["--mode", "global"], |s| s.mode = ServiceMode::Global),
            (&["--mode", "replicated-job", "--replicas", "5", "--max-concurrent", "2"], |s| {
                s.mode = ServiceMode::ReplicatedJob { max_concurrent: 2, total_completions: Some(5) }
            }),
            (&["--mode", "replicated-job"], |s| {
                s.mode = ServiceMode::ReplicatedJob { max_concurrent: 1, total_completions: None }
            }),
            (&["--mode", "global-job"], |s| s.mode = ServiceMode::GlobalJob),
            (&["-e", "A=1", "--env", "B=2"], |s| s.task_template.container.env = strings(&["A=1", "B=2"])),
            (&["-l", "tier=web", "--label", "x"], |s| {
                s.labels = BTreeMap::from([("tier".into(), "web".into()), ("x".into(), String::new())])
            }),
            (&["--container-label", "a=b"], |s| {
                s.task_template.container.labels = BTreeMap::from([("a".into(), "b".into())])
            }),
            (&["-p", "8080:80", "--publish", "published=53,target=53,protocol=udp,mode=host"], |s| {
                let host =
                    PortConfig { publish_mode: PublishMode::Host, ..port(53, Some(53), Protocol::Udp) };
                s.endpoint_spec.ports = vec![port(80, Some(8080), Protocol::Tcp), host];
            }),
            (&["-p", "7000-7001/udp"], |s| {
                s.endpoint_spec.ports = vec![port(7000, None, Protocol::Udp), port(7001, None, Protocol::Udp)]
            }),
            (
                &[
                    "--mount",
                    "type=bind,source=/data,target=/srv,readonly",
                    "--mount",
                    "type=tmpfs,dst=/tmp,tmpfs-size=64m",
                    "--mount",
                    "src=v,target=/v,ro=false",
                ],
                |s| {
                    s.task_template.container.mounts = vec![
                        Mount::Bind { source: "/data".into(), target: "/srv".into(), read_only: true },
                        Mount::Tmpfs { target: "/tmp".into(), size_bytes: 64 << 20, mode: None },
                        Mount::Volume {
                            source: "v".into(),
                            target: "/v".into(),
                            read_only: false,
                            no_copy: false,
                        },
                    ]
                },
            ),
            (
                &[
                    "--constraint",
                    "node.role==manager",
                    "--placement-pref",
                    "spread=node.labels.zone",
                    "--replicas-max-per-node",
                    "2",
                ],
                |s| {
                    let p = &mut s.task_template.placement;
                    p.constraints = strings(&["node.role==manager"]);
                    p.preferences = vec![PlacementPreference { spread: "node.labels.zone".into() }];
                    p.max_replicas = 2;
                },
            ),
            (
                &[
                    "--limit-memory",
                    "64m",
                    "--limit-cpu",
                    "0.5",
                    "--limit-pids",
                    "100",
                    "--reserve-memory",
                    "32m",
                    "--reserve-cpu",
                    "0.25",
                ],
                |s| {
                    let r = &mut s.task_template.resources;
                    r.limits.memory_bytes = 64 << 20;
                    r.limits.nano_cpus = 500_000_000;
                    r.limits.pids = 100;
                    r.reservations.memory_bytes = 32 << 20;
                    r.reservations.nano_cpus = 250_000_000;
                },
            ),
            (
                &[
                    "--restart-condition",
                    "on-failure",
                    "--restart-delay",
                    "5s",
                    "--restart-max-attempts",
                    "3",
                    "--restart-window",
                    "1m",
                ],
                |s| {
                    let r = &mut s.task_template.restart_policy;
                    r.condition = RestartCondition::OnFailure;
                    r.delay = Duration::from_secs(5);
                    r.max_attempts = 3;
                    r.window = Duration::from_secs(60);
                },
            ),
            (
                &[
                    "--update-parallelism",
                    "2",
                    "--update-delay",
                    "10s",
                    "--update-failure-action",
                    "rollback",
                    "--update-monitor",
                    "30s",
                    "--update-max-failure-ratio",
                    "0.2",
                    "--update-order",
                    "start-first",
                ],
                |s| {
                    let u = &mut s.update_config;
                    u.parallelism = 2;
                    u.delay = Duration::from_secs(10);
                    u.failure_action = FailureAction::Rollback;
                    u.monitor = Duration::from_secs(30);
                    u.max_failure_ratio = 0.2;
                    u.order = UpdateOrder::StartFirst;
                },
            ),
            (
                &[
                    "--rollback-parallelism",
                    "0",
                    "--rollback-delay",
                    "1s",
                    "--rollback-failure-action",
                    "continue",
                    "--rollback-monitor",
                    "2s",
                    "--rollback-max-failure-ratio",
                    "0.5",
                    "--rollback-order",
                    "start-first",
                ],
                |s| {
                    let r = &mut s.rollback_config;
                    r.parallelism = 0;
                    r.delay = Duration::from_secs(1);
                    r.failure_action = FailureAction::Continue;
                    r.monitor = Duration::from_secs(2);
                    r.max_failure_ratio = 0.5;
                    r.order = UpdateOrder::StartFirst;
                },
            ),
            (
                &["--health-cmd", "curl -f localhost", "--health-interval", "5s", "--health-retries", "2"],
                |s| {
                    s.task_template.container.healthcheck = Some(HealthCheck {
                        test: strings(&["CMD-SHELL", "curl -f localhost"]),
                        interval: Duration::from_secs(5),
                        retries: 2,
                        ..HealthCheck::default()
                    })
                },
            ),
            (&["--health-timeout", "1s", "--health-start-period", "9s"], |s| {
                s.task_template.container.healthcheck = Some(HealthCheck {
                    timeout: Duration::from_secs(1),
                    start_period: Duration::from_secs(9),
                    ..HealthCheck::default()
                })
            }),
            (&["--no-healthcheck", "--health-retries", "4"], |s| {
                s.task_template.container.healthcheck =
                    Some(HealthCheck { test: strings(&["NONE"]), ..HealthCheck::default() })
            }),
            (
                &[
                    "--read-only",
                    "-w",
                    "/app",
                    "-u",
                    "1000:1000",
                    "--hostname",
                    "h",
                    "--entrypoint",
                    "/bin/sh -c 'a b'",
                    "--stop-signal",
                    "SIGINT",
                    "--stop-grace-period",
                    "20s",
                ],
                |s| {
                    let c = &mut s.task_template.container;
                    c.workdir = Some("/app".into());
                    c.user = Some("1000:1000".into());
                    c.hostname = Some("h".into());
                    c.command = strings(&["/bin/sh", "-c", "a b"]);
                    c.stop_signal = Some("SIGINT".into());
                    c.stop_grace_period = Duration::from_secs(20);
                    c.read_only = true;
                },
            ),
            (&["--secret", "db", "--config", "source=cfg,target=/etc/cfg,uid=1,gid=2,mode=0400"], |s| {
                let c = &mut s.task_template.container;
                c.secrets = vec![FileReference::new("db")];
                c.configs = vec![FileReference {
                    source: "cfg".into(),
                    target: Some("/etc/cfg".into()),
                    uid: 1,
                    gid: 2,
                    mode: 0o400,
                }];
            }),
            (&["--network", "front", "--network", "back"], |s| {
                s.task_template.networks = vec![network("front"), network("back")]
            }),
            (&["--endpoint-mode", "dnsrr"], |s| s.endpoint_spec.mode = EndpointMode::Dnsrr),
        ];
        for (flags, change) in cases {
            let mut want = ServiceSpec::new("web", "nginx");
            change(&mut want);
            let got = create(flags).unwrap_or_else(|e| panic!("{flags:?}: {e:#}"));
            assert_eq!(got, want, "{flags:?}");
        }
    }

    #[test]
    fn create_takes_the_image_arguments() {
        let a = Create::try_parse_from(["create", "--name", "web", "busybox", "sleep", "-t", "5"]).unwrap().a;
        let spec = create_spec(&a).unwrap();
        assert_eq!(spec.task_template.container.image, "busybox");
        assert_eq!(spec.task_template.container.args, strings(&["sleep", "-t", "5"]));
    }

    #[test]
    fn create_refuses() {
        for (flags, says) in [
            (&["--mode", "daemon"][..], "--mode \"daemon\" is not replicated, global"),
            (
                &["--mode", "global", "--replicas", "2"],
                "--replicas works with replicated services and jobs only",
            ),
            (&["-p", "127.0.0.1:80:80"], "cannot publish on one host IP"),
            (
                &["-p", "80/icmp"],
                "\"80/icmp\" is not a port to publish: protocol \"icmp\" is not tcp, udp or sctp",
            ),
            (&["--mount", "type=nfs,target=/x"], "type \"nfs\" is not bind, volume or tmpfs"),
            (&["--mount", "source=x"], "\"source=x\" names no target"),
            (&["--mount", "target=/x,color=red"], "\"color\" is not one of type, source, target"),
            (&["--mount", "type=tmpfs,target=/x,tmpfs-size=lots"], "invalid size \"lots\""),
            (&["--placement-pref", "node.labels.zone"], "is not spread=LABEL"),
            (&["--secret", "source=s,mode=9"], "mode \"9\" (octal)"),
            (&["--config", "source=s,uid"], "\"uid\" in \"source=s,uid\" is not key=value"),
            (&["-l", "=x"], "\"=x\" is not KEY=VALUE"),
            (&["--entrypoint", "sh -c 'x"], "--entrypoint \"sh -c 'x\" has an unclosed quote"),
        ] {
            let e = create(flags).expect_err(&format!("{flags:?} is refused"));
            assert!(format!("{e:#}").contains(says), "{flags:?}: {e:#}");
        }
    }

    /// A stored spec with something in every part `service update` can change.
    fn stored() -> ServiceSpec {
        let mut s = ServiceSpec::new("web", "nginx:1");
        s.mode = ServiceMode::Replicated { replicas: 3 };
        s.labels = BTreeMap::from([("tier".into(), "web".into()), ("keep".into(), "yes".into())]);
        s.update_config.parallelism = 2;
        s.endpoint_spec.ports = vec![port(80, Some(8080), Protocol::Tcp), port(53, None, Protocol::Udp)];
        let t = &mut s.task_template;
        t.placement.constraints = strings(&["node.role==worker"]);
        t.networks = vec![network("front")];
        t.resources.limits.memory_bytes = 1 << 20;
        let c = &mut t.container;
        c.args = strings(&["-v"]);
        c.env = strings(&["A=1", "B=2"]);
        c.mounts = vec![
            Mount::Volume { source: "data".into(), target: "/data".into(), read_only: false, no_copy: false },
            Mount::Bind { source: "/x".into(), target: "/y".into(), read_only: true },
        ];
        c.secrets = vec![FileReference::new("db")];
        c.configs = vec![FileReference::new("cfg")];
        c.hostname = Some("h1".into());
        c.healthcheck = Some(HealthCheck { test: strings(&["CMD", "true"]), ..HealthCheck::default() });
        s
    }

    #[test]
    fn update_flags() {
        let cases: Vec<(&[&str], Change)> = vec![
            // No flag changes nothing: `update` starts from the stored spec.
            (&[], |_| {}),
            (&["--image", "nginx:2"], |s| s.task_template.container.image = "nginx:2".into()),
            (&["--args=-g 'daemon off;'"], |s| {
                s.task_template.container.args = strings(&["-g", "daemon off;"])
            }),
            (&["--replicas", "5"], |s| s.mode = ServiceMode::Replicated { replicas: 5 }),
            (&["--env-add", "B=3", "--env-add", "C=4", "--env-rm", "A"], |s| {
                s.task_template.container.env = strings(&["B=3", "C=4"])
            }),
            (&["--env-rm", "NOPE"], |_| {}),
            (&["--label-add", "tier=api", "--label-rm", "keep"], |s| {
                s.labels = BTreeMap::from([("tier".into(), "api".into())])
            }),
            (&["--constraint-add", "node.labels.zone==a", "--constraint-rm", "node.role==worker"], |s| {
                s.task_template.placement.constraints = strings(&["node.labels.zone==a"])
            }),
            (&["--constraint-add", "node.role==worker"], |_| {}),
            (&["--publish-add", "9090:90", "--publish-add", "8081:80", "--publish-rm", "53/udp"], |s| {
                s.endpoint_spec.ports =
                    vec![port(90, Some(9090), Protocol::Tcp), port(80, Some(8081), Protocol::Tcp)]
            }),
            (&["--publish-rm", "53"], |_| {}),
            (&["--publish-rm", "80"], |s| s.endpoint_spec.ports = vec![port(53, None, Protocol::Udp)]),
            (&["--mount-add", "type=tmpfs,target=/data", "--mount-rm", "/y"], |s| {
                s.task_template.container.mounts =
                    vec![Mount::Tmpfs { target: "/data".into(), size_bytes: 0, mode: None }]
            }),
            (&["--secret-add", "api-key", "--secret-rm", "db", "--config-rm", "cfg"], |s| {
                let c = &mut s.task_template.container;
                c.secrets = vec![FileReference::new("api-key")];
                c.configs = Vec::new();
            }),
            (&["--config-add", "source=cfg2,target=/c"], |s| {
                let mut r = FileReference::new("cfg2");
                r.target = Some("/c".into());
                s.task_template.container.configs.push(r);
            }),
            (&["--network-add", "back", "--network-rm", "front"], |s| {
                s.task_template.networks = vec![network("back")]
            }),
            (&["--network-add", "front"], |_| {}),
            (&["--force"], |s| s.task_template.force_update = 1),
            (&["--update-delay", "1s"], |s| s.update_config.delay = Duration::from_secs(1)),
            (&["--rollback-order", "start-first"], |s| s.rollback_config.order = UpdateOrder::StartFirst),
            (&["--limit-cpu", "2"], |s| s.task_template.resources.limits.nano_cpus = 2_000_000_000),
            (&["--restart-condition", "none"], |s| {
                s.task_template.restart_policy.condition = RestartCondition::None
            }),
            (&["--health-retries", "9"], |s| {
                s.task_template.container.healthcheck.as_mut().unwrap().retries = 9;
            }),
            (&["--hostname", "h2", "--read-only"], |s| {
                s.task_template.container.hostname = Some("h2".into());
                s.task_template.container.read_only = true;
            }),
            (&["--endpoint-mode", "dnsrr"], |s| s.endpoint_spec.mode = EndpointMode::Dnsrr),
        ];
        let old = stored();
        for (flags, change) in cases {
            let mut want = old.clone();
            change(&mut want);
            let got = update(&old, flags).unwrap_or_else(|e| panic!("{flags:?}: {e:#}"));
            assert_eq!(got, want, "{flags:?}");
        }
    }

    #[test]
    fn update_of_a_job_or_a_global_service() {
        let mut job = ServiceSpec::new("j", "busybox");
        job.mode = ServiceMode::ReplicatedJob { max_concurrent: 1, total_completions: Some(1) };
        let got = update(&job, &["--replicas", "4", "--max-concurrent", "2"]).unwrap();
        assert_eq!(got.mode, ServiceMode::ReplicatedJob { max_concurrent: 2, total_completions: Some(4) });

        let mut global = ServiceSpec::new("g", "busybox");
        global.mode = ServiceMode::Global;
        let e = update(&global, &["--replicas", "2"]).unwrap_err();
        assert_eq!(e.to_string(), "--replicas works with replicated services and jobs only");
        assert_eq!(update(&global, &["--max-concurrent", "2"]).unwrap().mode, ServiceMode::Global);
    }

    #[test]
    fn update_refuses() {
        let old = stored();
        for (flags, says) in [
            (
                &["--publish-rm", "53/xyz"][..],
                "--publish-rm takes PORT[/PROTOCOL]: \"53/xyz\" is not a port to publish",
            ),
            (&["--publish-rm", "http"], "\"http\" is not a port between 1 and 65535"),
            (&["--publish-add", "80:80:80:80"], "cannot publish on one host IP"),
            (&["--args", "'unclosed"], "--args \"'unclosed\" has an unclosed quote"),
            (&["--mount-add", "type=tmpfs"], "names no target"),
            (&["--label-add", "=v"], "is not KEY=VALUE"),
            (&["--secret-add", "source=s,gid=x"], "gid \"x\""),
        ] {
            let e = update(&old, flags).expect_err(&format!("{flags:?} is refused"));
            assert!(format!("{e:#}").contains(says), "{flags:?}: {e:#}");
        }
    }
}
