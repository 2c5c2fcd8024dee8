//! kill -9 in the middle of writes: after a restart from the same data dir, the log and
//! the vote are intact and every acknowledged write is there.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shoal_api::service::{Service, ServiceSpec};
use shoal_manager::manager::ManagerConfig;
use shoal_manager::server;
use shoal_manager::store::{Change, Kind, Object, Transaction};

/// Set in the child: the data dir of the one-manager cluster it writes to.
const PROBE_ENV: &str = "SHOAL_CRASH_PROBE_DIR";

/// The child process: a one-manager cluster writing as fast as it can, printing each
/// acknowledged write. Does nothing unless started by the crash test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_probe_child() {
    let Ok(dir) = std::env::var(PROBE_ENV) else { return };
    let mut cfg = ManagerConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    cfg.heartbeat_ms = 100;
    cfg.election_ms = (300, 600);
    cfg.snapshot.entries = 50;
    cfg.keep_after_snapshot = 10;
    let m = server::start(cfg).await.expect("start").manager;
    m.init().await.expect("init");
    for i in 0u64.. {
        let svc = Service {
            id: shoal_api::object::new_id(),
            meta: shoal_api::Meta::new(chrono::Utc::now()),
            spec: ServiceSpec::new(format!("p-{i}"), "busybox"),
            previous_spec: None,
            update_status: None,
            endpoint: Default::default(),
        };
        let tx = Transaction { changes: vec![Change::Create { object: Object::Service(svc) }] };
        let index = m.propose(tx).await.expect("write");
        // Printed only once Raft acknowledged it (durable on this manager's disk).
        println!("ACK p-{i} {index}");
    }
}

fn probe_command(dir: &PathBuf) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["crash_probe_child", "--exact", "--nocapture", "--test-threads=1"]).env(PROBE_ENV, dir);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let run = dir.path().join(format!("round-{round}"));
        let mut child = probe_command(&run).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Let it write a while (past a few snapshots), then kill it mid-write.
        while acked.len() < 150 + round * 50 {
            assert!(Instant::now() < deadline, "the probe wrote only {} entries", acked.len());
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(rest) = l.strip_prefix("ACK ") {
                        acked.push(rest.split_whitespace().next().unwrap().to_owned());
                    }
                }
                _ => panic!("the probe stopped after {} writes", acked.len()),
            }
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGKILL)
            .unwrap();
        child.wait().unwrap();

        let m =
            server::start(ManagerConfig::new(&run, "127.0.0.1:0".parse().unwrap())).await.unwrap().manager;
        m.wait_leader(Duration::from_secs(20)).await.unwrap();
        assert!(m.wait_recovered(Duration::from_secs(20)).await, "the state caught up with the log");
        let status = m.status();
        assert!(status.term >= 1, "the vote survived: {status:?}");
        let names: std::collections::BTreeSet<String> =
            m.read(|s| s.list(Kind::Service).filter_map(|o| o.name().map(str::to_owned)).collect());
        for a in &acked {
            assert!(names.contains(a), "round {round}: acknowledged write {a} is missing after kill -9");
        }
        m.shutdown().await;
    }
}
