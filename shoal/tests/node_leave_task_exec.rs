//! Commands that reach a node through the cluster, with real daemons (as root):
//! `node leave` on a worker and on a manager, and `task exec` through a manager into
//! a task's container on a worker.

mod support;

use std::process::Command;
use std::time::Duration;

use shoal_api::node::NodeState;
use support::daemons::{Daemon, block_on};
use support::wait_for;

/// `shoal node leave ARGS` on the node whose data is in `d`.
fn leave(d: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["node", "leave"])
        .args(args)
        .env("SHOAL_DATA_DIR", &d.dir)
        .output()
        .unwrap()
}

#[test]
fn a_worker_leaves_and_the_last_manager_needs_force() {
    let m = Daemon::init("leave-m");
    m.ok(&["cluster", "update", "--dispatcher-heartbeat", "1s"]);
    let mut w = Daemon::worker("leave-w", &m);

    let out = leave(&m, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("last manager") && err.contains("--force"), "{err}");
    assert!(m.ok(&["node", "ls"]).contains("leave-m"), "the manager still serves");

    let out = leave(&w, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(w.wait_exit(Duration::from_secs(30)), Some(0), "the worker's daemon stops");
    assert!(!w.dir.join("worker.json").exists() && !w.dir.join("certs").exists(), "it forgot the cluster");
    let client = m.client();
    wait_for("the manager to see the worker down", Duration::from_secs(30), || {
        block_on(client.node("leave-w")).is_ok_and(|n| n.status.state == NodeState::Down)
    });
}
