//! Scale in CI: three managers (drained, so they run no tasks) and 50 simulated nodes
//! from `shoal bench-agents` (the real agent over gRPC, a timed fake runtime) run
//! 5,000 tasks. Every task is placed once; a SIGKILLed leader loses, restarts and
//! moves none of them and gets every session back; silenced nodes' tasks move to
//! the others without ever running a slot twice.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_api::node::NodeState;
use shoal_api::service::ServiceMode;
use shoal_api::wire::{ReadOptions, TaskFilter};
use shoal_api::{ServiceSpec, Task, TaskState};
use support::daemons::{Daemon, block_on};

const NODES: usize = 50;
const SERVICES: usize = 5;
const REPLICAS: u64 = 1_000;

/// `shoal bench-agents`, its stdout lines gathered as they come; killed when dropped.
struct Agents {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
    /// The nodes' identities (removed even though the process is killed).
    _state: tempfile::TempDir,
}

impl Agents {
    fn start(managers: &[&Daemon], token: &str) -> Agents {
        let addrs: Vec<&str> = managers.iter().map(|m| m.addr.as_str()).collect();
        let state = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["bench-agents", "--managers", &addrs.join(","), "--token", token])
            .args(["--nodes", &NODES.to_string(), "--first-addr", "127.21.0.1"])
            .args(["--state-dir", state.path().to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = BufReader::new(child.stdout.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Agents { child, stdin, lines, _state: state }
    }

    /// The last line starting with `prefix`.
    fn last(&self, prefix: &str) -> Option<String> {
        self.lines.lock().unwrap().iter().rev().find(|l| l.starts_with(prefix)).cloned()
    }

    /// Sessions open now, from the last progress line.
    fn sessions(&self) -> usize {
        let line = self.last("progress ").unwrap_or_default();
        let field = line.split_whitespace().find_map(|w| w.strip_prefix("sessions="));
        field.and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until it holds, failing with `what` (and the last reason) at the deadline.
fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match cond() {
            Ok(()) => return,
            Err(why) if Instant::now() > deadline => panic!("timed out waiting for {what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The tasks meant to run, by (service, slot); fails if a slot has two.
fn live(tasks: &[Task]) -> Result<BTreeMap<(String, u64), &Task>, String> {
    let mut by_slot = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.desired_state == TaskState::Running && !t.status.state.is_terminal()) {
        let key = (t.service_id.clone(), t.slot.unwrap_or(0));
        if let Some(other) = by_slot.insert(key.clone(), t) {
            return Err(format!("slot {key:?} has two live tasks: {} and {}", other.id, t.id));
        }
    }
    Ok(by_slot)
}

/// Every service has its replicas, each slot one task, RUNNING on a node outside
/// `avoid`: the placement as task id → node id.
fn placed(tasks: &[Task], avoid: &BTreeSet<String>) -> Result<BTreeMap<String, String>, String> {
    let by_slot = live(tasks)?;
    let want = SERVICES as u64 * REPLICAS;
    if by_slot.len() as u64 != want {
        return Err(format!("{} live tasks of {want}", by_slot.len()));
    }
    let mut out = BTreeMap::new();
    for t in by_slot.values() {
        let node = t.node_id.clone().unwrap_or_default();
        if t.status.state != TaskState::Running {
            return Err(format!("task {} is {:?}", t.id, t.status.state));
        }
        if avoid.contains(&node) {
            return Err(format!("task {} still runs on silenced node {node}", t.id));
        }
        out.insert(t.id.clone(), node);
    }
    Ok(out)
}

/// The manager that leads now.
fn leader<'a>(managers: &[&'a Daemon]) -> Option<&'a Daemon> {
    let info = managers.iter().find_map(|m| block_on(m.client().cluster(ReadOptions::default())).ok())?;
    let id = info.raft.leader?;
    let addr = &info.managers.iter().find(|m| m.raft_id == id)?.addr;
    managers.iter().find(|m| &m.addr == addr).copied()
}

fn tasks(d: &Daemon) -> Result<Vec<Task>, String> {
    block_on(d.client().tasks(&TaskFilter::default())).map_err(|e| e.to_string())
}

/// The dispatcher's open sessions, from the manager's metrics.
fn dispatcher_sessions(d: &Daemon) -> usize {
    let http = reqwest::Client::builder().unix_socket(d.socket.clone()).build().unwrap();
    let body =
        block_on(async { http.get("http://shoal/metrics").send().await?.text().await }).unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("shoal_dispatcher_sessions "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn fifty_simulated_nodes_run_5000_tasks_through_a_leader_kill_and_node_loss() {
    let mut m1 = Daemon::init("m1");
    let mut m2 = Daemon::join("m2", &m1);
    let mut m3 = Daemon::join("m3", &m1);
    for name in ["m1", "m2", "m3"] {
        m1.ok(&["node", "update", "--availability", "drain", name]);
    }
    let token = block_on(m1.client().join_tokens()).unwrap().worker;
    let mut agents = Agents::start(&[&m1, &m2, &m3], &token);
    wait("the simulated nodes to be ready", Duration::from_secs(120), || {
        let nodes = block_on(m1.client().nodes(ReadOptions::default())).map_err(|e| e.to_string())?;
        let ready = nodes.iter().filter(|n| n.status.state == NodeState::Ready).count();
        if ready == NODES + 3 { Ok(()) } else { Err(format!("{ready} ready")) }
    });

    // 5,000 tasks, each placed once and RUNNING.
    for i in 0..SERVICES {
        let mut spec = ServiceSpec::new(format!("s{i}"), "shoal/busybox");
        spec.mode = ServiceMode::Replicated { replicas: REPLICAS };
        block_on(m1.client().create_service(&spec)).unwrap();
    }
    let none = BTreeSet::new();
    let mut before = BTreeMap::new();
    wait("every task to run", Duration::from_secs(300), || {
        before = placed(&tasks(&m1)?, &none)?;
        Ok(())
    });

    // The leader dies: a new one takes over with every task where it was.
    let old = leader(&[&m1, &m2, &m3]).expect("a leader").addr.clone();
    for m in [&mut m1, &mut m2, &mut m3] {
        if m.addr == old {
            m.kill();
        }
    }
    let alive: Vec<&Daemon> = [&m1, &m2, &m3].into_iter().filter(|m| m.addr != old).collect();
    let mut new_leader = None;
    wait("a new leader", Duration::from_secs(60), || {
        new_leader = leader(&alive).filter(|l| l.addr != old);
        new_leader.map(drop).ok_or_else(|| "none yet".into())
    });
    let new_leader = new_leader.unwrap();
    // The managers' own agents have sessions too.
    wait("every session back on the new leader", Duration::from_secs(60), || {
        let (here, agents_say) = (dispatcher_sessions(new_leader), agents.sessions());
        if here == NODES + alive.len() && agents_say == NODES {
            Ok(())
        } else {
            Err(format!("{here} on the leader, {agents_say} by the agents"))
        }
    });
    // Held for a while: no task restarted, moved or added as the new leader settles.
    let settled = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settled {
        let after = placed(&tasks(new_leader).unwrap(), &none).unwrap();
        assert!(after == before, "tasks changed across the leader kill");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Five nodes go silent: their tasks run elsewhere, a slot never twice.
    agents.send("silence 5");
    let mut silenced = BTreeSet::new();
    wait("the silenced nodes", Duration::from_secs(30), || {
        let line = agents.last("silenced ").ok_or("not yet")?;
        silenced = line.split_whitespace().skip(1).map(String::from).collect();
        Ok(())
    });
    assert_eq!(silenced.len(), 5);
    let on_silenced = before.values().filter(|n| silenced.contains(*n)).count();
    assert!(on_silenced > 0, "the silenced nodes ran no task");
    wait("the silenced nodes' tasks to run elsewhere", Duration::from_secs(180), || {
        let now = tasks(new_leader)?;
        // Checked at every poll: never two live tasks in a slot.
        live(&now).unwrap_or_else(|e| panic!("over-placement: {e}"));
        let after = placed(&now, &silenced)?;
        for (id, node) in before.iter().filter(|(_, n)| !silenced.contains(*n)) {
            assert_eq!(after.get(id), Some(node), "task {id} of a node still up was moved or stopped");
        }
        Ok(())
    });
    let nodes = block_on(new_leader.client().nodes(ReadOptions::default())).unwrap();
    for n in nodes.iter().filter(|n| silenced.contains(&n.id)) {
        assert_eq!(n.status.state, NodeState::Down, "silenced node {} is {:?}", n.id, n.status.state);
    }
}
