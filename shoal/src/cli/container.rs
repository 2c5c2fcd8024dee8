//! `shoal container …`: run one container on this node by hand, with the same runtime
//! the worker uses, for users and benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use shoal_api::task_spec::ContainerSpec;
use shoal_worker::cgroups::Limits;
use shoal_worker::image::ImageStore;
use shoal_worker::runtime::logs::{Follower, Stream};
use shoal_worker::runtime::{Helper, MountPoint, NewContainer, Runtime, Status, config};

use super::node_opts::NodeOpts;
use super::remote::Connection;
use super::{attach, container_exec, container_inspect};

#[derive(Debug, Subcommand)]
pub(super) enum ContainerCommand {
    /// Run a command in a new container, attached to its output; exits with its code.
    Run(Box<RunArgs>),
    /// List containers on this node.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        out: super::remote::Output,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Stop containers: the stop signal, then SIGKILL after the grace period.
    Stop {
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// The signal to send first.
        #[arg(short, long, default_value = "SIGTERM")]
        signal: String,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Remove containers (running ones only with --force).
    #[command(alias = "remove")]
    Rm {
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Show a running container's resource use.
    Stats {
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Print a container's output.
    Logs {
        /// Container id.
        id: String,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        tail: Option<usize>,
        /// Prefix lines with their time.
        #[arg(short, long)]
        timestamps: bool,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Run a command in a running container (its namespaces, user and cgroup) and
    /// exit with its code: 126 if it could not run, 127 if it is not there.
    Exec {
        /// Seconds before the command is killed (not with --tty).
        #[arg(long, conflicts_with = "tty")]
        timeout: Option<u64>,
        #[command(flatten)]
        opts: container_exec::ExecOpts,
        #[command(flatten)]
        node: NodeOpts,
        /// Container id (a task's is `task.<task id>`).
        id: String,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Show containers' configuration and state, as JSON.
    Inspect {
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Show the processes running in a container.
    Top {
        /// Container id.
        id: String,
        #[command(flatten)]
        node: NodeOpts,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// Image name or id.
    image: String,
    /// Command and arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// Container id (default: random).
    #[arg(long)]
    name: Option<String>,
    /// Join this attachable overlay network (`shoal network create --attachable`):
    /// the managers give the container an address, this node's daemon wires it.
    #[arg(long, conflicts_with = "netns")]
    network: Option<String>,
    /// Run in the background and print the id.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Replace the image's ENTRYPOINT.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Environment variables, NAME=VALUE.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User, uid, user:group or uid:gid.
    #[arg(short, long)]
    user: Option<String>,
    /// Hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Memory limit (e.g. 64m).
    #[arg(short, long)]
    memory: Option<String>,
    /// CPU limit (e.g. 0.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Process limit.
    #[arg(long)]
    pids_limit: Option<u64>,
    /// Bind mount or named volume: SOURCE:TARGET[:ro]. A SOURCE without '/' is a
    /// named volume, created on first use.
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// A tmpfs at this path.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Join this network namespace (e.g. /run/netns/x) instead of an empty one.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Run in a user namespace: container ids 0.. map to host ids HOST.. (SIZE ids,
    /// default 65536), so the container's root is unprivileged on the host.
    #[arg(long, value_name = "HOST[:SIZE]")]
    userns: Option<String>,
    #[command(flatten)]
    node: NodeOpts,
}

/// One line of `container ls`.
#[derive(Debug, serde::Serialize)]
struct Listed {
    id: String,
    pid: String,
    status: String,
    command: String,
}

/// The runtime: this command is single-threaded, so it forks shims itself.
fn runtime(node: &NodeOpts) -> anyhow::Result<Runtime> {
    Ok(Runtime::new(&node.data_dir, &node.cgroup_parent, Helper::Fork)?)
}

pub(super) fn run(cmd: ContainerCommand, conn: &Connection) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerCommand::Run(args) => Ok(run_container(*args, conn).unwrap_or_else(|e| {
            // As in `docker run`: 127 when the command is not in the image, 126 when it
            // cannot be executed, 125 for every other failure before it ran.
            let text = format!("{e:#}");
            eprintln!("error: {text}");
            let code = if text.contains("command not found in the image") {
                127
            } else if text.contains("cannot run ") {
                126
            } else {
                125
            };
            ExitCode::from(code)
        })),
        ContainerCommand::Ls { out, node } => {
            let rt = runtime(&node)?;
            let mut listed = Vec::new();
            for id in rt.list()? {
                let command = rt.config(&id).map(|c| c.process.args.join(" ")).unwrap_or_default();
                let (pid, status) = match rt.status(&id)? {
                    Status::Running(s) => {
                        (s.init_pid.to_string(), format!("running since {}", s.started_at.format("%H:%M:%S")))
                    }
                    Status::Exited(e) => ("-".into(), format!("exited ({})", e.describe())),
                    Status::Lost => ("-".into(), "lost (its shim was killed)".into()),
                };
                listed.push(Listed { id, pid, status, command });
            }
            out.print(
                &listed,
                |c| c.id.clone(),
                &["ID", "PID", "STATUS", "COMMAND"],
                |c| vec![c.id.clone(), c.pid.clone(), c.status.clone(), c.command.clone()],
            )?;
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Stop { ids, time, signal, node } => {
            let sig = shoal_api::validate::parse_signal(&signal)
                .with_context(|| format!("{signal:?} is not a signal"))?;
            let rt = runtime(&node)?;
            for id in ids {
                let exited = rt.stop(&id, sig, Duration::from_secs(time))?;
                match exited {
                    Some(e) => println!("{id}: {}", e.describe()),
                    None => bail!("{id} did not stop"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Rm { ids, force, node } => {
            let rt = runtime(&node)?;
            for id in ids {
                rt.delete(&id, force)?;
                if let Err(e) = attach::detach(conn, &node, &id) {
                    eprintln!("warning: {e:#}");
                }
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Stats { ids, node } => {
            let rt = runtime(&node)?;
            println!(
                "{:<24} {:>22} {:>12} {:>6} {:>10}",
                "ID", "MEM USAGE / LIMIT", "CPU TIME", "PIDS", "OOM KILLS"
            );
            for id in ids {
                let s = rt.stats(&id)?;
                let limit = match rt.config(&id)?.limits.memory_bytes {
                    0 => {
                        super::human::host_memory().map_or_else(|| "-".to_owned(), super::human::binary_size)
                    }
                    l => super::human::binary_size(l),
                };
                let mem = format!("{} / {limit}", super::human::binary_size(s.memory_bytes));
                let cpu = shoal_api::duration::format(Duration::from_micros(s.cpu_nanos / 1000));
                println!("{id:<24} {mem:>22} {cpu:>12} {:>6} {:>10}", s.pids, s.oom_kills);
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Logs { id, tail, timestamps, node } => {
            let rt = runtime(&node)?;
            rt.config(&id)?;
            let opts = shoal_worker::runtime::logs::ReadOptions { tail, since: None };
            shoal_worker::runtime::logs::read(&rt.log_path(&id), opts, |e| print_entry(&e, timestamps))?;
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Exec { timeout, opts, node, id, cmd } => {
            container_exec::run(&runtime(&node)?, &id, &opts, cmd, timeout.map(Duration::from_secs))
        }
        ContainerCommand::Inspect { ids, node } => {
            container_inspect::inspect(&runtime(&node)?, &ids).map(|()| ExitCode::SUCCESS)
        }
        ContainerCommand::Top { id, node } => {
            container_inspect::top(&runtime(&node)?, &id).map(|()| ExitCode::SUCCESS)
        }
    }
}

fn print_entry(e: &shoal_worker::runtime::logs::LogEntry, timestamps: bool) {
    use std::io::Write;
    let mut line = Vec::with_capacity(e.text.len() + 40);
    if timestamps {
        line.extend_from_slice(e.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).as_bytes());
        line.push(b' ');
    }
    line.extend_from_slice(&e.text);
    if e.full {
        line.push(b'\n');
    }
    let _ = match e.stream {
        Stream::Stdout => std::io::stdout().write_all(&line),
        Stream::Stderr => std::io::stderr().write_all(&line),
    };
}

fn mounts(args: &RunArgs) -> anyhow::Result<Vec<MountPoint>> {
    let mut out = Vec::new();
    for v in &args.volume {
        let parts: Vec<&str> = v.split(':').collect();
        let (source, target, ro) = match parts.as_slice() {
            [s, t] => (*s, *t, false),
            [s, t, "ro"] => (*s, *t, true),
            [s, t, "rw"] => (*s, *t, false),
            _ => bail!("--volume {v:?}: write SOURCE:TARGET[:ro]"),
        };
        if !target.starts_with('/') {
            bail!("--volume {v:?}: the target must be an absolute path");
        }
        let target = target.to_owned();
        if source.starts_with('/') {
            out.push(MountPoint::Bind { source: PathBuf::from(source), target, read_only: ro });
        } else {
            // A named volume: filled with the image's files at the target while empty.
            let dir = args.node.data_dir.join("volumes").join(source).join("_data");
            std::fs::create_dir_all(&dir).with_context(|| format!("create volume {source}"))?;
            out.push(MountPoint::Volume { source: dir, target, read_only: ro, no_copy: false });
        }
    }
    for t in &args.tmpfs {
        out.push(MountPoint::Tmpfs { target: t.clone(), size_bytes: 0, mode: 0o1777 });
    }
    Ok(out)
}

fn parse_userns(text: &str) -> anyhow::Result<config::IdMapping> {
    let (host, size) = text.split_once(':').unwrap_or((text, "65536"));
    let host: u32 = host.parse().with_context(|| format!("--userns {text:?}: HOST is not a number"))?;
    let size: u32 = size.parse().with_context(|| format!("--userns {text:?}: SIZE is not a number"))?;
    if host == 0 || size == 0 {
        bail!("--userns {text:?}: map to a non-zero host id range (e.g. 100000:65536)");
    }
    Ok(config::IdMapping { host, size })
}

/// The signal the user sent `shoal container run`, to pass on to the container.
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(sig: libc::c_int) {
    PENDING_SIGNAL.store(sig, Ordering::SeqCst);
}

fn forward_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(remember_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

fn run_container(args: RunArgs, conn: &Connection) -> anyhow::Result<ExitCode> {
    let store = ImageStore::open(&args.node.data_dir)?;
    let image = store.resolve(&args.image)?;
    let mut spec = ContainerSpec::for_image(&args.image);
    if let Some(e) = &args.entrypoint {
        spec.command =
            shlex::split(e).with_context(|| format!("--entrypoint {e:?} has an unclosed quote"))?;
    }
    spec.args = args.command.clone();
    spec.env = args.env.clone();
    spec.workdir = args.workdir.clone();
    spec.user = args.user.clone();
    let process = config::process(&spec, &image.defaults)?;
    let mut limits = Limits::default();
    if let Some(m) = &args.memory {
        limits.memory_bytes = shoal_api::units::parse_bytes(m)?;
        if limits.memory_bytes < shoal_api::validate::MIN_MEMORY_BYTES {
            bail!("--memory {m}: the kernel needs at least 6MiB for a container");
        }
    }
    if let Some(c) = &args.cpus {
        limits.nano_cpus = shoal_api::units::parse_cpus(c)?;
    }
    limits.pids = args.pids_limit.unwrap_or(0);
    let id = args.name.clone().unwrap_or_else(|| hex::encode(rand::random::<[u8; 6]>()));
    let rt = runtime(&args.node)?;
    let mut mounts = mounts(&args)?;
    let mut netns = args.netns.clone();
    let attached = match &args.network {
        Some(net) => {
            let a = attach::attach(conn, &args.node, net, &id)?;
            mounts.extend(a.mounts.iter().cloned());
            netns = Some(a.netns.clone());
            Some(a)
        }
        None => None,
    };
    let new = NewContainer {
        id: id.clone(),
        image: args.image.clone(),
        layers: image.layer_dirs,
        process,
        hostname: args.hostname.clone().or_else(|| attached.as_ref().map(|_| id.clone())),
        mounts,
        read_only_root: args.read_only,
        limits,
        netns,
        userns: args.userns.as_deref().map(parse_userns).transpose()?,
        log: Default::default(),
    };
    if let Err(e) = rt.run(new) {
        if attached.is_some() {
            let _ = attach::detach(conn, &args.node, &id);
        }
        return Err(e.into());
    }
    if args.detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    forward_signals();
    let mut follower = Follower::new(&rt.log_path(&id), true);
    let exited = loop {
        for e in follower.poll()? {
            print_entry(&e, false);
        }
        let sig = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
        if sig != 0 {
            rt.signal(&id, sig)?;
        }
        if let Some(e) = rt.wait(&id, Some(Duration::from_millis(50)))? {
            break Some(e);
        }
        if let Status::Lost = rt.status(&id)? {
            break None;
        }
    };
    for e in follower.poll()? {
        print_entry(&e, false);
    }
    let code = match &exited {
        Some(e) => {
            if e.oom_killed {
                eprintln!("shoal: container {id} ran out of memory and was OOM killed");
            }
            e.code()
        }
        None => {
            eprintln!("shoal: container {id} lost its shim; its exit status is unknown");
            125
        }
    };
    if args.rm {
        rt.delete(&id, true)?;
    }
    if attached.is_some() && args.rm {
        attach::detach(conn, &args.node, &id)?;
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
