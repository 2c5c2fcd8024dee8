//! `shoal daemon` as an operator runs it: a new cluster, a second manager joining with
//! the printed command, clean shutdown on SIGTERM, restart from the data dir, and a
//! refused join.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::wait_for;

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// A daemon process, killed if the test ends (or fails) with it still running, so
/// no daemon outlives its test holding ports, files or locks.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(dir: &Path, addr: &str, extra: &[&str], log: &Path) -> Running {
    let out = std::fs::File::create(log.with_extension("out")).unwrap();
    let err = std::fs::File::create(log.with_extension("err")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["daemon", "--data-dir", dir.to_str().unwrap(), "--listen-addr", addr])
        .args(["--api-socket", dir.join("api.sock").to_str().unwrap()])
        .args(["--cgroup-parent", "shoal-test/daemon", "--pull", "never"])
        .args(extra)
        .env("SHOAL_LOG", "info")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map(Running)
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn terminate(child: &mut Running) -> Option<i32> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::SIGTERM)
        .unwrap();
    child.0.wait().unwrap().code()
}

#[test]
fn init_join_stop_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (a1, a2) = (free_addr(), free_addr());
    let (d1, d2) = (tmp.path().join("n1"), tmp.path().join("n2"));
    let (l1, l2) = (tmp.path().join("n1.log"), tmp.path().join("n2.log"));
    let mut first = daemon(&d1, &a1, &["--init"], &l1);
    wait_for("the join command", Duration::from_secs(30), || {
        read(&l1.with_extension("out")).contains("--token")
    });
    let out = read(&l1.with_extension("out"));
    let token = out.split_whitespace().skip_while(|w| *w != "--token").nth(1).unwrap().to_owned();
    assert!(token.starts_with("SHTKN-1-"), "{out}");

    let mut second = daemon(&d2, &a2, &["--join", &a1, "--token", &token], &l2);
    wait_for("the second manager to join", Duration::from_secs(30), || {
        read(&l2.with_extension("out")).contains("joined the cluster")
    });

    // A token that pins another CA: the joiner refuses it before it sends the
    // secret, and says so.
    let other_ca = shoal_pki::CaKeys::generate("elsewhere").unwrap();
    let pinned_elsewhere =
        shoal_pki::JoinToken::generate(shoal_pki::Role::Worker, &other_ca.digest().unwrap()).to_string();
    let refused = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "daemon",
            "--data-dir",
            tmp.path().join("n4").to_str().unwrap(),
            "--listen-addr",
            &free_addr(),
        ])
        .args([
            "--api-socket",
            tmp.path().join("n4.sock").to_str().unwrap(),
            "--cgroup-parent",
            "shoal-test/daemon",
        ])
        .args(["--join", &a1, "--token", &pinned_elsewhere])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("does not match the join token"), "{stderr}");
    assert!(!tmp.path().join("n4/certs/node.pem").exists(), "no certificate was taken");
    // A wrong secret (the right CA) is refused by the managers with a message that
    // says what to do.
    let wrong_secret = format!("{}M{}", &token[..token.len() - 26], "0".repeat(25));
    let bad = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "daemon",
            "--data-dir",
            tmp.path().join("n3").to_str().unwrap(),
            "--listen-addr",
            &free_addr(),
            "--api-socket",
            tmp.path().join("n3.sock").to_str().unwrap(),
            "--cgroup-parent",
            "shoal-test/daemon",
        ])
        .args(["--join", &a1, "--token", &wrong_secret])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("join token is not valid"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    assert_eq!(terminate(&mut second), Some(0), "SIGTERM stops a manager cleanly");
    assert_eq!(terminate(&mut first), Some(0));
    assert!(read(&l1.with_extension("err")).contains("shutting down"));

    // Restarted without flags, both find their cluster again and elect a leader.
    let mut first = daemon(&d1, &a1, &[], &tmp.path().join("n1b.log"));
    let mut second = daemon(&d2, &a2, &[], &tmp.path().join("n2b.log"));
    wait_for("a leader after the restart", Duration::from_secs(30), || {
        ["n1b.err", "n2b.err"].iter().any(|f| read(&tmp.path().join(f)).contains("now leads the cluster"))
    });
    wait_for("both managers up", Duration::from_secs(30), || {
        ["n1b.err", "n2b.err"].iter().all(|f| read(&tmp.path().join(f)).contains("manager started"))
    });
    assert_eq!(terminate(&mut first), Some(0));
    assert_eq!(terminate(&mut second), Some(0));
}
