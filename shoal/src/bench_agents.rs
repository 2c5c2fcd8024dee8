//! `shoal bench-agents`: many simulated nodes in one process, for scale tests and
//! benchmarks. Each node joins the cluster with the worker token (its own node id and
//! certificate) and runs Shoal's real agent over gRPC from a loopback address of its
//! own; behind the agent's seam a timed fake node takes tasks through PREPARING,
//! STARTING and RUNNING ([`shoal_worker::sim`]).
//!
//! Progress goes to stdout, one line per change; commands come on stdin, one per
//! line (see [`CONTROL`]).

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use shoal_worker::sim::{Fleet, FleetConfig, Progress, Timings};

/// The commands read from stdin, for `--help`.
const CONTROL: &str = "Commands on stdin, one per line:
  silence N   stop N running nodes (the last started first): no more heartbeats or
              answers, connections closed, as a dead node; prints `silenced <id>…`
  revive N    start N silenced nodes again with no containers; prints `revived <id>…`
  progress    print the progress line now
  stop        stop every agent and exit (as SIGINT or SIGTERM do)
Progress lines: `progress joined=J/N failed=F sessions=S silenced=Z running=R t=SECONDS`.";

/// Run N simulated nodes (real agents over gRPC, a timed fake runtime) against real
/// managers.
#[derive(Debug, clap::Args)]
#[command(after_help = CONTROL)]
pub(crate) struct BenchAgentsArgs {
    /// The managers' cluster addresses (`host:port`), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    managers: Vec<String>,
    /// The cluster's worker join token (`shoal cluster join-token worker`).
    #[arg(long, env = "SHOAL_WORKER_TOKEN", hide_env_values = true)]
    token: String,
    /// How many nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Keep the nodes' ids and certificates here, so a later run with the same
    /// directory brings back the same nodes (default: a temporary directory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The first node's source address; the others follow (any of 127/8 works on
    /// Linux without set-up).
    #[arg(long, default_value = "127.1.0.1")]
    first_addr: Ipv4Addr,
    /// Milliseconds between two nodes' starts.
    #[arg(long, default_value_t = 10)]
    stagger_ms: u64,
    /// Joins under way at once.
    #[arg(long, default_value_t = 16)]
    joins_at_once: usize,
    /// PREPARING lasts a random time up to this (ms).
    #[arg(long, default_value_t = 50)]
    prepare_ms: u64,
    /// STARTING lasts this (ms), ±20 %.
    #[arg(long, default_value_t = 200)]
    start_ms: u64,
    /// A job's task runs this long (ms), ±20 %, then exits 0.
    #[arg(long, default_value_t = 1000)]
    job_ms: u64,
    /// The share of task starts that fail (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    fail_starts: f64,
}

/// Runs the fleet until `stop`, SIGINT or SIGTERM.
pub(crate) fn run(args: BenchAgentsArgs) -> anyhow::Result<()> {
    init_logging();
    if !(0.0..=1.0).contains(&args.fail_starts) {
        bail!("--fail-starts is a share of starts: give a number from 0 to 1");
    }
    if args.managers.is_empty() {
        bail!("--managers needs at least one manager's address");
    }
    let files = crate::limits::raise_open_files();
    // Each node holds a connection or two (and the managers, on this machine, the
    // other ends).
    let needed = 4 * args.nodes as u64;
    if files < needed {
        tracing::warn!(
            limit = files,
            needed,
            "the open-file limit is low for this many nodes: raise `ulimit -n`"
        );
    }
    // Fake starts block a thread of the blocking pool each, as real ones do: up to
    // one per start slot of every node.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads((2 * cores * args.nodes).clamp(64, 8192))
        .build()?;
    runtime.block_on(serve(args))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,shoal::bench_agents=info,shoal_worker::sim=info")
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn serve(args: BenchAgentsArgs) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let cfg = FleetConfig {
        managers: args.managers.clone(),
        token: args.token.clone(),
        nodes: args.nodes,
        state_dir: args.state_dir.clone(),
        first_addr: args.first_addr,
        timings: Timings {
            prepare: Duration::from_millis(args.prepare_ms),
            start: Duration::from_millis(args.start_ms),
            job_run: Duration::from_millis(args.job_ms),
            fail_starts: args.fail_starts,
        },
        stagger: Duration::from_millis(args.stagger_ms),
        joins_at_once: args.joins_at_once,
    };
    let fleet = Fleet::new(cfg).context("create the fleet's state directory")?;
    let started = Instant::now();
    tracing::info!(nodes = args.nodes, managers = ?args.managers, "starting simulated nodes");
    let starting = tokio::spawn({
        let fleet = fleet.clone();
        async move { fleet.start().await }
    });
    let mut lines = stdin_lines();
    let mut stdin_open = true;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last: Option<Progress> = None;
    let (mut all_joined, mut all_up) = (false, false);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let p = fleet.progress();
                if last != Some(p) {
                    say(&progress_line(&p, args.nodes, started));
                    last = Some(p);
                }
                if !all_joined && p.joined + p.failed >= args.nodes {
                    all_joined = true;
                    say(&format!("all joined: {}/{} in {:.1} s", p.joined, args.nodes, started.elapsed().as_secs_f64()));
                }
                if !all_up && p.sessions >= args.nodes {
                    all_up = true;
                    say(&format!("all sessions up: {} in {:.1} s", p.sessions, started.elapsed().as_secs_f64()));
                }
            }
            line = lines.recv(), if stdin_open => match line {
                Some(line) => {
                    if !control(&fleet, line.trim(), args.nodes, started).await {
                        break;
                    }
                }
                None => stdin_open = false,
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    starting.abort();
    fleet.stop().await;
    say(&format!("stopped after {:.1} s", started.elapsed().as_secs_f64()));
    Ok(())
}

/// Lines of stdin, read on a thread of their own; the channel closes at its end.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Carries out one command from stdin; `false` to stop.
async fn control(fleet: &Fleet, line: &str, nodes: usize, started: Instant) -> bool {
    let mut words = line.split_whitespace();
    let (cmd, n) = (words.next().unwrap_or(""), words.next().map(str::parse::<usize>));
    match (cmd, n) {
        ("", _) => {}
        ("silence", Some(Ok(n))) => say(&format!("silenced {}", fleet.silence(n).await.join(" "))),
        ("revive", Some(Ok(n))) => say(&format!("revived {}", fleet.revive(n).join(" "))),
        ("progress", None) => say(&progress_line(&fleet.progress(), nodes, started)),
        ("stop", None) => return false,
        _ => tracing::warn!(command = line, "unknown command: silence N, revive N, progress or stop"),
    }
    true
}

fn progress_line(p: &Progress, nodes: usize, started: Instant) -> String {
    format!(
        "progress joined={}/{nodes} failed={} sessions={} silenced={} running={} t={:.1}",
        p.joined,
        p.failed,
        p.sessions,
        p.silenced,
        p.running,
        started.elapsed().as_secs_f64()
    )
}

/// A line on stdout, flushed (a test or script reads it as it comes).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
