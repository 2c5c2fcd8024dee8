//! The built-in runtime, run for real as root through `shoal container …`: isolation
//! seen from inside, limits, exit codes and signals, stop, logs, re-adoption by a
//! new process, bad input, and that nothing is left behind.

mod support;

use std::time::{Duration, Instant};

use support::{Node, wait_for};

#[test]
fn isolation_seen_from_inside() {
    let node = Node::with_busybox();
    let (code, out, err) = node.sh(
        &["--hostname", "box"],
        r#"echo pid=$$; hostname; ls /proc/self/fd | tr '\n' ' '; echo;
           grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status;
           cat /proc/mounts | cut -d' ' -f2 | tr '\n' ' '; echo;
           ps -o comm | tr '\n' ' '"#,
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1", "the container's shell is pid 1 of its own namespace");
    assert_eq!(lines[1], "box");
    assert_eq!(lines[2].trim(), "0 1 2 3", "only stdio (and ls's own fd) are open: {out}");
    // Docker's 14 default capabilities.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1") && out.contains("Seccomp:\t2"), "{out}");
    let mounts = lines[7];
    for m in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/etc/hostname", "/etc/hosts"] {
        assert!(mounts.split(' ').any(|x| x == m), "{m} missing from {mounts}");
    }
    assert!(!mounts.contains("/work") && !mounts.contains("/var/tmp"), "host mounts leak in: {mounts}");
    // The shell, ps, and the pipe's other end: tr, or busybox on its way to tr (a
    // forked sh, or /proc/self/exe, which busybox execs to run an applet).
    let procs: Vec<&str> = lines[8].split_whitespace().collect();
    assert!(
        procs.len() == 4 && procs.iter().all(|p| ["COMMAND", "sh", "ps", "tr", "exe"].contains(p)),
        "ps sees only its own pid namespace: {procs:?}"
    );
    node.assert_clean();
}

#[test]
fn a_new_network_namespace_has_loopback_up() {
    let node = Node::with_busybox();
    let (code, out, err) = node.sh(
        &[],
        "cat /sys/class/net/lo/flags; httpd -p 127.0.0.1:8080 -h /etc; wget -q -O- http://127.0.0.1:8080/hostname",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0x9", "lo is UP and LOOPBACK: {out}");
    assert_eq!(lines.len(), 2, "a server on 127.0.0.1 answers: {out} {err}");
    node.assert_clean();
}

#[test]
fn seccomp_caps_and_masked_paths() {
    let node = Node::with_busybox();
    let (code, out, err) = node.sh(
        &[],
        r#"unshare -n true 2>/dev/null; echo unshare=$?;
           unshare -U true 2>/dev/null; echo userns=$?;
           mount -t tmpfs none /mnt 2>/dev/null; echo mount=$?;
           echo x > /proc/sys/kernel/hostname 2>/dev/null; echo procsys=$?;
           echo interrupts=$(wc -c < /proc/interrupts) keys=$(wc -c < /proc/keys);
           ls /sys/firmware | wc -l;
           mknod /tmp/sda b 8 0 2>/dev/null; echo mknod-block=$?;
           mknod /tmp/null c 1 3 && echo x > /tmp/null && echo mknod-null=ok"#,
    );
    assert_eq!(code, 0, "{err}");
    for want in [
        "unshare=1",
        "userns=1",
        "mount=1",
        "procsys=1",
        "interrupts=0 keys=0",
        "mknod-block=1",
        "mknod-null=ok",
    ] {
        assert!(out.contains(want), "wanted {want} in {out}");
    }
    assert!(out.lines().any(|l| l.trim() == "0"), "/sys/firmware is an empty tmpfs: {out}");
    // A new user namespace needs no capability: on this host a process with none, and
    // no root either, makes one. So the container's refusal above (userns=1) is the
    // seccomp filter's, not the dropped capabilities'.
    let host = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .args(["--no-new-privs", "unshare", "--user", "true"])
        .output()
        .expect("run setpriv (util-linux)");
    assert!(host.status.success(), "without capabilities: {}", String::from_utf8_lossy(&host.stderr));
}

#[test]
fn users_and_groups_from_the_image() {
    let node = Node::with_busybox();
    let (code, out, err) = node.sh(&["-u", "app"], "id; echo home=$HOME; grep CapEff /proc/self/status");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("uid=1000(app) gid=1000(app) groups=50(staff)"), "{out}");
    assert!(out.contains("home=/home/app") && out.contains("CapEff:\t0000000000000000"), "{out}");
    let (code, out, _) = node.sh(&["-u", "4242:4343"], "id -u; id -g");
    assert_eq!((code, out.as_str()), (0, "4242\n4343\n"));
}

#[test]
fn exit_codes_signals_and_logs() {
    let node = Node::with_busybox();
    assert_eq!(node.sh(&[], "exit 42").0, 42);
    // A signal that kills the container gives 128+signal, as in a shell.
    let mut attached = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["container", "run", "--name", "victim", "shoal/busybox", "sleep", "300"])
        .env("SHOAL_DATA_DIR", node.data_dir())
        .env("SHOAL_CGROUP_PARENT", &node.cgroup_parent)
        .spawn()
        .unwrap();
    wait_for("victim to run", Duration::from_secs(10), || node.ok(&["container", "ls"]).contains("running"));
    node.ok(&["container", "stop", "--signal", "SIGKILL", "victim"]);
    assert_eq!(attached.wait().unwrap().code(), Some(137), "SIGKILL is 128+9");
    node.ok(&["container", "rm", "victim"]);
    let (code, out, err) = node.sh(&[], "echo to-out; echo to-err >&2; echo more");
    assert_eq!(code, 0);
    assert_eq!(out, "to-out\nmore\n");
    assert_eq!(err, "to-err\n");
    node.assert_clean();
}

#[test]
fn stop_sends_the_signal_then_kills_after_the_grace_period() {
    let node = Node::with_busybox();
    node.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "polite",
        "shoal/busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 3' TERM; echo up; while true; do sleep 0.1; done",
    ]);
    node.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "stubborn",
        "shoal/busybox",
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    wait_for("polite to say up", Duration::from_secs(10), || {
        node.ok(&["container", "logs", "polite"]).contains("up")
    });
    let out = node.ok(&["container", "stop", "polite"]);
    assert_eq!(out.trim(), "polite: exit code 3");
    assert!(node.ok(&["container", "logs", "polite"]).contains("bye"));
    let t = Instant::now();
    let out = node.ok(&["container", "stop", "-t", "1", "stubborn"]);
    assert_eq!(out.trim(), "stubborn: killed by signal 9");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "took {took:?}");
    node.ok(&["container", "rm", "polite", "stubborn"]);
    node.assert_clean();
}

#[test]
fn a_new_process_adopts_running_containers() {
    // Every `shoal` command is a new process with no memory of the one that started
    // the container, as a restarted daemon is: it finds the container on disk.
    let node = Node::with_busybox();
    node.ok(&["container", "run", "-d", "--name", "long", "shoal/busybox", "sleep", "300"]);
    let ls = node.ok(&["container", "ls"]);
    assert!(ls.contains("long") && ls.contains("running"), "{ls}");
    let out = node.shoal(&["container", "rm", "long"]);
    assert!(!out.status.success(), "a running container is not removed without --force");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is running"));
    let out = node.ok(&["container", "stop", "-t", "1", "long"]);
    assert!(out.contains("long: "), "{out}");
    assert!(node.ok(&["container", "ls"]).contains("exited"));
    node.ok(&["container", "rm", "long"]);
    node.assert_clean();
}

#[test]
fn a_killed_shim_is_cleaned_up() {
    let node = Node::with_busybox();
    node.ok(&["container", "run", "-d", "--name", "orphan", "shoal/busybox", "sleep", "300"]);
    let shims = node.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    let pid = shims[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    wait_for("the shim to die", Duration::from_secs(5), || node.shims().is_empty());
    assert!(node.ok(&["container", "ls"]).contains("lost"));
    // The container's processes are still in its cgroup; rm -f kills them all.
    node.ok(&["container", "rm", "-f", "orphan"]);
    node.assert_clean();
}

/// The shim of a running container, and what its `/proc` shows: the program and the
/// descriptors (number → link).
fn running_shim(node: &Node) -> (i32, std::path::PathBuf, Vec<(i32, String)>) {
    let shims = node.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    let exe = std::fs::read_link(format!("/proc/{}/exe", shims[0])).unwrap();
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{}/fd", shims[0]))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned();
            Some((e.file_name().to_str()?.parse().ok()?, link))
        })
        .collect();
    fds.sort();
    (shims[0], exe, fds)
}

#[test]
fn a_running_container_is_watched_by_the_small_supervisor() {
    let node = Node::with_busybox();
    let run = |name: &str| {
        node.ok(&[
            "container",
            "run",
            "-d",
            "--name",
            name,
            "shoal/busybox",
            "sh",
            "-c",
            "echo hi; sleep 300",
        ])
    };
    run("watched");
    // The shim reports the start, then executes the supervisor, which opens the log.
    let log_open = |fds: &[(i32, String)]| fds.iter().any(|(_, link)| link.ends_with("/container.log"));
    wait_for("the supervisor to open the log", Duration::from_secs(10), || log_open(&running_shim(&node).2));
    let (_, exe, fds) = running_shim(&node);
    assert_eq!(exe.file_name().unwrap(), "shoal-shim", "{exe:?}");
    assert_eq!(exe.parent().unwrap().parent().unwrap(), node.data_dir().join("bin"), "{exe:?}");
    // The container's stdout and stderr on 3 and 4; then its pidfd and the log.
    let pipe = |fd: i32| fds.iter().any(|(n, link)| *n == fd && link.starts_with("pipe:"));
    assert!(pipe(3) && pipe(4), "{fds:?}");
    wait_for("the log", Duration::from_secs(10), || node.ok(&["container", "logs", "watched"]) == "hi\n");
    let out = node.ok(&["container", "stop", "-t", "1", "watched"]);
    assert_eq!(
        out.trim(),
        "watched: killed by signal 9",
        "pid 1 ignores SIGTERM; the kill after 1 s ends it"
    );
    node.ok(&["container", "rm", "watched"]);

    // A supervisor that cannot be executed: the shim watches the container itself.
    let installed = exe.clone();
    let len = std::fs::metadata(&installed).unwrap().len() as usize;
    std::fs::set_permissions(&installed, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(&installed, vec![0u8; len]).unwrap();
    std::fs::set_permissions(&installed, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    run("fallback");
    wait_for("the shim to watch the container itself", Duration::from_secs(10), || {
        log_open(&running_shim(&node).2)
    });
    let (_, exe, _) = running_shim(&node);
    assert_ne!(exe, installed, "the shim runs on in the shoal binary");
    let shim_log = std::fs::read_to_string(node.data_dir().join("containers/fallback/shim.log")).unwrap();
    assert!(shim_log.contains("cannot execute the supervisor"), "{shim_log}");
    wait_for("the log", Duration::from_secs(10), || node.ok(&["container", "logs", "fallback"]) == "hi\n");
    let out = node.ok(&["container", "stop", "-t", "1", "fallback"]);
    assert_eq!(out.trim(), "fallback: killed by signal 9");
    node.ok(&["container", "rm", "fallback"]);
    node.assert_clean();
}

#[test]
fn a_shim_keeps_no_descriptor_its_starter_leaked() {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let node = Node::with_busybox();
    // A pipe end without close-on-exec at fd 40, as a careless launcher leaves one.
    let (_read, write) = nix::unistd::pipe().unwrap();
    let leaked = write.as_raw_fd();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.args(["container", "run", "-d", "--name", "fds", "shoal/busybox", "sleep", "300"])
        .env("SHOAL_DATA_DIR", node.data_dir())
        .env("SHOAL_CGROUP_PARENT", &node.cgroup_parent);
    // SAFETY: dup2 is async-signal-safe, and the child owns its copy of the fd table.
    unsafe {
        cmd.pre_exec(move || match libc::dup2(leaked, 40) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, _, fds) = running_shim(&node);
    assert!(!fds.iter().any(|&(n, _)| n == 40), "the shim holds the launcher's pipe: {fds:?}");
    node.ok(&["container", "rm", "-f", "fds"]);
    node.assert_clean();
}

#[test]
fn memory_and_pids_limits() {
    let node = Node::with_busybox();
    let (code, _, err) =
        node.sh(&["--memory", "16m"], "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived");
    assert_eq!(code, 137, "{err}");
    assert!(err.contains("ran out of memory and was OOM killed"), "{err}");
    let forks = "for i in $(seq 20); do sleep 1 & done; wait; echo all-forked";
    let (code, out, err) = node.sh(&["--pids-limit", "8"], forks);
    assert!(code != 0 && err.contains("can't fork"), "pids.max=8 allowed 20 processes: {code} {out} {err}");
    let (code, out, err) = node.sh(&[], forks);
    assert_eq!((code, out.as_str()), (0, "all-forked\n"), "{err}");
    node.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "limited",
        "--cpus",
        "0.5",
        "--memory",
        "64m",
        "shoal/busybox",
        "sleep",
        "60",
    ]);
    let cg = |ctrl: &str, file: &str| {
        let path = format!("/sys/fs/cgroup/{ctrl}/{}/limited/{file}", node.cgroup_parent);
        std::fs::read_to_string(&path).map(|s| s.trim().to_owned()).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    if std::path::Path::new("/sys/fs/cgroup/cpu").is_dir() {
        assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(cg("memory", "memory.limit_in_bytes"), (64u64 << 20).to_string());
    } else {
        assert_eq!(cg("", "cpu.max"), "50000 100000");
        assert_eq!(cg("", "memory.max"), (64u64 << 20).to_string());
    }
    let stats = node.ok(&["container", "stats", "limited"]);
    assert!(stats.lines().nth(1).is_some_and(|l| l.starts_with("limited") && l.contains("KiB")), "{stats}");
    node.ok(&["container", "rm", "-f", "limited"]);
    node.assert_clean();
}

#[test]
fn mounts_volumes_and_read_only_root() {
    let node = Node::with_busybox();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from host").unwrap();
    let bind = format!("{}:/data", host.path().display());
    let (code, out, err) = node.sh(
        &["-v", &bind, "-v", "cache:/cache", "--tmpfs", "/scratch", "--read-only"],
        "cat /data/in.txt; echo; echo out > /data/out.txt; echo kept > /cache/f; touch /scratch/x && echo tmpfs-ok; touch /etc/x 2>/dev/null; echo root-write=$?",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("from host") && out.contains("tmpfs-ok") && out.contains("root-write=1"), "{out}");
    assert_eq!(std::fs::read_to_string(host.path().join("out.txt")).unwrap(), "out\n");
    let (_, out, _) = node.sh(&["-v", "cache:/cache"], "cat /cache/f");
    assert_eq!(out, "kept\n", "a named volume outlives the container");
    // A new volume over a directory of the image starts with the image's files (a
    // bind mount does not); what the container writes there stays in the volume.
    let (code, out, err) = node.sh(&["-v", "etc:/etc"], "grep -c app /etc/passwd; echo mine > /etc/mine");
    assert_eq!((code, out.as_str()), (0, "1\n"), "{err}");
    let volume = node.data_dir().join("volumes/etc/_data");
    assert!(std::fs::read_to_string(volume.join("passwd")).unwrap().contains("app:x:1000"));
    assert_eq!(std::fs::read_to_string(volume.join("mine")).unwrap(), "mine\n");
    let ro = format!("{}:/data:ro", host.path().display());
    let (_, out, _) = node.sh(&["-v", &ro], "echo x > /data/y 2>/dev/null; echo $?");
    assert_eq!(out.trim(), "1");
    node.assert_clean();
}

#[test]
fn bad_input_is_explained_and_leaves_nothing() {
    let node = Node::with_busybox();
    for (args, want, code) in [
        (vec!["container", "run", "--rm", "nope/missing"], "no image \"nope/missing\"", 125),
        (
            vec!["container", "run", "--rm", "shoal/busybox", "no-such-cmd"],
            "command not found in the image: no-such-cmd",
            127,
        ),
        (
            vec!["container", "run", "--rm", "-u", "ghost", "shoal/busybox", "true"],
            "user \"ghost\" is not in the image's /etc/passwd",
            125,
        ),
        (vec!["container", "run", "--rm", "--memory", "1m", "shoal/busybox", "true"], "at least 6MiB", 125),
        (
            vec!["container", "run", "--rm", "-v", "/no/such/dir:/x", "shoal/busybox", "true"],
            "mount source /no/such/dir does not exist",
            125,
        ),
        (
            vec!["container", "run", "--rm", "-w", "/proc/nope", "shoal/busybox", "true"],
            "working directory /proc/nope",
            125,
        ),
    ] {
        let out = node.shoal(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: wanted {want:?} in {err}");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    }
    node.assert_clean();
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_user() {
    let node = Node::with_busybox();
    node.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "mapped",
        "--userns",
        "200000:65536",
        "shoal/busybox",
        "sh",
        "-c",
        "touch /made-inside; id -u > /tmp/id; sleep 300",
    ]);
    let started: serde_json::Value = serde_json::from_slice(
        &std::fs::read(node.data_dir().join("containers/mapped/started.json")).unwrap(),
    )
    .unwrap();
    let pid = started["init_pid"].as_i64().unwrap();
    // The shell creates the file before it writes to it: wait for the content.
    wait_for("the container to write its files", Duration::from_secs(10), || {
        std::fs::read_to_string(node.data_dir().join("containers/mapped/upper/tmp/id"))
            .is_ok_and(|s| s.ends_with('\n'))
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_owned();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "200000"),
        "on the host the container's root is 200000: {uid_line}"
    );
    use std::os::unix::fs::MetadataExt;
    let made = std::fs::metadata(node.data_dir().join("containers/mapped/upper/made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (200_000, 200_000));
    assert_eq!(
        std::fs::read_to_string(node.data_dir().join("containers/mapped/upper/tmp/id")).unwrap(),
        "0\n"
    );
    node.ok(&["container", "rm", "-f", "mapped"]);
    let (code, out, err) =
        node.sh(&["--userns", "200000", "-u", "app"], "id -u; cat /proc/self/uid_map | tr -s ' '");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1000\n 0 200000 65536\n");
    node.assert_clean();
}
