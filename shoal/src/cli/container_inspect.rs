//! `shoal container inspect` (a container's config and state as JSON, in the spirit
//! of `docker inspect`) and `shoal container top` (its processes, read from /proc
//! for every pid in its cgroup, in the columns of `ps -ef`).

use std::collections::HashMap;

use anyhow::Context as _;
use serde_json::{Value, json};
use shoal_worker::runtime::{MountPoint, Runtime, Status};

/// Prints a JSON array with one object per container.
pub(super) fn inspect(rt: &Runtime, ids: &[String]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for id in ids {
        out.push(describe(rt, id)?);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn describe(rt: &Runtime, id: &str) -> anyhow::Result<Value> {
    let cfg = rt.config(id)?;
    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let state = match rt.status(id)? {
        Status::Running(s) => json!({
            "Status": "running", "Running": true, "Pid": s.init_pid,
            "ExitCode": null, "Signal": null, "OOMKilled": false,
            "StartedAt": time(s.started_at), "FinishedAt": null,
        }),
        Status::Exited(e) => json!({
            "Status": "exited", "Running": false, "Pid": 0,
            "ExitCode": e.code(), "Signal": e.signal, "OOMKilled": e.oom_killed,
            "StartedAt": time(e.started_at), "FinishedAt": time(e.finished_at),
        }),
        Status::Lost => json!({
            "Status": "lost", "Running": false, "Pid": 0, "ExitCode": null, "Signal": null,
            "OOMKilled": false, "StartedAt": null, "FinishedAt": null,
        }),
    };
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .map(|m| match m {
            MountPoint::Bind { source, target, read_only } => json!({
                "Type": "bind", "Source": source, "Destination": target, "RW": !read_only,
            }),
            MountPoint::Volume { source, target, read_only, .. } => json!({
                "Type": "volume", "Source": source, "Destination": target, "RW": !read_only,
            }),
            MountPoint::Tmpfs { target, size_bytes, mode } => json!({
                "Type": "tmpfs", "Destination": target, "RW": true, "SizeBytes": size_bytes,
                "Mode": format!("{mode:o}"),
            }),
        })
        .collect();
    Ok(json!({
        "Id": cfg.id,
        "Name": cfg.id,
        "Image": cfg.image,
        "State": state,
        "Config": {
            "Image": cfg.image,
            "Cmd": cfg.process.args,
            "Env": cfg.process.env,
            "User": cfg.process.user,
            "WorkingDir": cfg.process.cwd,
            "Hostname": cfg.hostname,
        },
        "Mounts": mounts,
        "ReadonlyRootfs": cfg.read_only_root,
        "Resources": {
            "MemoryBytes": cfg.limits.memory_bytes,
            "NanoCpus": cfg.limits.nano_cpus,
            "PidsLimit": cfg.limits.pids,
        },
        "Network": {
            "Mode": if cfg.netns.is_some() { "netns" } else { "none" },
            "Netns": cfg.netns,
        },
        "UsernsMapping": cfg.userns.map(|m| json!({"HostId": m.host, "Size": m.size})),
        "Cgroup": cfg.cgroup.dirs(),
        "LogPath": rt.log_path(id),
        "Layers": cfg.layers,
    }))
}

/// One process, as `ps -ef` shows it.
#[derive(Debug)]
struct Proc {
    uid: u32,
    pid: i32,
    ppid: i32,
    /// Seconds after boot.
    start: u64,
    /// CPU time, seconds.
    cpu: u64,
    cmd: String,
}

/// Prints the processes in the container's cgroup (host pids).
pub(super) fn top(rt: &Runtime, id: &str) -> anyhow::Result<()> {
    let cfg = rt.config(id)?;
    if !matches!(rt.status(id)?, Status::Running(_)) {
        anyhow::bail!("container {id} is not running");
    }
    let ticks =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
    let procs: Vec<Proc> = cfg.cgroup.pids().into_iter().filter_map(|pid| read_proc(pid, ticks)).collect();
    let names = user_names();
    let boot = boot_time().context("read the boot time from /proc/stat")?;
    println!("{:<10} {:>8} {:>8} {:>8} {:>9} CMD", "UID", "PID", "PPID", "STIME", "TIME");
    for p in procs {
        let user = names.get(&p.uid).cloned().unwrap_or_else(|| p.uid.to_string());
        let stime = chrono::DateTime::from_timestamp((boot + p.start) as i64, 0)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default();
        let time = format!("{:02}:{:02}:{:02}", p.cpu / 3600, p.cpu / 60 % 60, p.cpu % 60);
        println!("{user:<10} {:>8} {:>8} {stime:>8} {time:>9} {}", p.pid, p.ppid, p.cmd);
    }
    Ok(())
}

/// What /proc says of `pid` (None if it is gone).
fn read_proc(pid: i32, ticks: u64) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
    // Fields from the 3rd (state) on.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cmd = if args.is_empty() { format!("[{comm}]") } else { args.join(" ") };
    Some(Proc {
        uid,
        pid,
        ppid: num(1) as i32,
        start: num(19) / ticks,
        cpu: (num(11) + num(12)) / ticks,
        cmd,
    })
}

/// Host user names by uid, from /etc/passwd.
fn user_names() -> HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

/// When the machine booted, Unix seconds.
fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}
