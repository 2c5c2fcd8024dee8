//! Ways to break a test cluster: kill, restart and freeze daemons, cut hosts off
//! from each other (nftables rules inside their namespaces, both ways or one),
//! slow a host's network (tc netem), fill a host's data disk.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::Cluster;

/// The nftables table the partitions live in, in each host's namespace.
const TABLE: &str = "shoal_faults";

/// SIGKILL host `i`'s daemon (its containers keep running).
pub fn kill(c: &mut Cluster, i: usize) {
    c.host_mut(i).kill();
}

/// Starts host `i`'s daemon again on the same data dir (with its first flags).
pub fn restart(c: &mut Cluster, i: usize) {
    c.host_mut(i).restart();
}

/// SIGSTOP host `i`'s daemon: it holds its sockets and answers nothing.
pub fn freeze(c: &Cluster, i: usize) {
    signal(c, i, nix::sys::signal::SIGSTOP);
}

/// SIGCONT after [`freeze`].
pub fn thaw(c: &Cluster, i: usize) {
    signal(c, i, nix::sys::signal::SIGCONT);
}

fn signal(c: &Cluster, i: usize, sig: nix::sys::signal::Signal) {
    let pid = c.host(i).pid().unwrap_or_else(|| panic!("{} does not run", c.host(i).name));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("signal the daemon");
}

/// Runs `cmd` with `args` in host `i`'s network namespace.
fn in_host(c: &Cluster, i: usize, cmd: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", c.host(i).netns))
        .arg(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

/// Drops traffic between every host of `a` and every host of `b`, both ways.
pub fn partition(c: &Cluster, a: &[usize], b: &[usize]) {
    for &x in a {
        for &y in b {
            cut(c, x, y);
            cut(c, y, x);
        }
    }
}

/// Drops what host `from` sends to host `to` (one way: `to` still reaches `from`,
/// though TCP needs both ways to carry anything).
pub fn cut(c: &Cluster, from: usize, to: usize) {
    let (src, dst) = (c.host(from).addr.clone(), c.host(to).addr.clone());
    drop_rule(c, from, &format!("output ip daddr {dst}"));
    drop_rule(c, to, &format!("input ip saddr {src}"));
}

/// Adds `<chain> <match> drop` to host `i`'s fault table (made if need be).
fn drop_rule(c: &Cluster, i: usize, rule: &str) {
    let rules = format!(
        "table inet {TABLE} {{\n\
           chain output {{ type filter hook output priority 0; policy accept; }}\n\
           chain input {{ type filter hook input priority 0; policy accept; }}\n\
         }}\n\
         add rule inet {TABLE} {rule} drop\n"
    );
    nft(c, i, &rules);
}

fn nft(c: &Cluster, i: usize, rules: &str) {
    let out = in_host(c, i, "nft", &["-f", "-"], Some(rules));
    assert!(out.status.success(), "nft on {}: {}", c.host(i).name, String::from_utf8_lossy(&out.stderr));
}

/// Removes every partition and every netem delay.
pub fn heal(c: &Cluster) {
    for i in 0..c.hosts().len() {
        let _ = in_host(c, i, "nft", &["delete", "table", "inet", TABLE], None);
        let _ = in_host(c, i, "tc", &["qdisc", "del", "dev", "eth0", "root"], None);
    }
}

/// Adds latency and loss to what host `i` sends (`tc netem`), e.g. "delay 100ms loss
/// 5%". `Err` with tc's words when this kernel has no netem (the caller reports the
/// part it skips with [`skipped`]); any other failure of tc panics.
pub fn netem(c: &Cluster, i: usize, spec: &str) -> Result<(), String> {
    let mut args = vec!["qdisc", "replace", "dev", "eth0", "root", "netem"];
    args.extend(spec.split_whitespace());
    let out = in_host(c, i, "tc", &args, None);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    match out.status.success() {
        true => Ok(()),
        false if err.contains("qdisc kind is unknown") => {
            Err(format!("this kernel has no sch_netem ({err})"))
        }
        false => panic!("tc netem {spec} on {}: {err}", c.host(i).name),
    }
}

/// Reports that `scenario` skipped `part` and why, on the test's real stderr (a
/// passing test's captured output is never shown), or panics when
/// `SHOAL_REQUIRE_NETEM=1` asks for every part to run.
pub fn skipped(scenario: &str, part: &str, why: &str) {
    assert!(
        std::env::var_os("SHOAL_REQUIRE_NETEM").is_none_or(|v| v != "1"),
        "{scenario}: {part} cannot run: {why}"
    );
    let line = format!("SKIPPED {scenario}: {part}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Fills host `i`'s data disk (built with [`crate::Builder::small_disk`]) until
/// only `leave` bytes are free (0: to the last byte); returns the file that holds
/// the space, to remove to free it.
pub fn fill_disk(c: &Cluster, i: usize, leave: u64) -> std::path::PathBuf {
    let dir = c.host(i).data_dir().to_path_buf();
    let path = dir.join("filler");
    let free = || nix::sys::statvfs::statvfs(&dir).map_or(0, |s| s.blocks_available() * s.fragment_size());
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0u8; 1 << 20];
    loop {
        let room = free().saturating_sub(leave);
        if room == 0 {
            break;
        }
        let n = room.min(chunk.len() as u64) as usize;
        match f.write(&chunk[..n]) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("fill {}: {e}", path.display()),
        }
    }
    if leave == 0 {
        // Smaller writes take what is left.
        while matches!(f.write(&chunk[..512]), Ok(n) if n > 0) {}
    }
    path
}
