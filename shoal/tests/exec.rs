//! `shoal container exec`, `inspect` and `top` against a real running container (as
//! root): exit codes, stdin, user/workdir/env, a terminal driven through a pty as a
//! user's would be (resizes included), and the container's process seen from outside.

mod support;

use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Node, wait_for};

fn with_sleeper() -> Node {
    let node = Node::with_busybox();
    node.ok(&["container", "run", "-d", "--name", "box", "shoal/busybox", "sleep", "1000"]);
    node
}

/// `shoal ARGS` with `input` on stdin: (code, stdout, stderr).
fn with_input(node: &Node, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env("SHOAL_DATA_DIR", node.data_dir())
        .env("SHOAL_CGROUP_PARENT", &node.cgroup_parent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exec_exit_codes_stdin_user_workdir_env() {
    let node = with_sleeper();
    let code = |args: &[&str]| node.shoal(args).status.code();
    assert_eq!(code(&["container", "exec", "box", "sh", "-c", "exit 7"]), Some(7));
    assert_eq!(code(&["container", "exec", "box", "no-such-command"]), Some(127), "not found: 127");
    assert_eq!(
        code(&["container", "exec", "-w", "/no/such/dir", "box", "true"]),
        Some(126),
        "cannot run: 126"
    );
    assert_eq!(code(&["container", "exec", "nobox", "true"]), Some(1), "no such container");

    let (c, out, err) =
        with_input(&node, &["container", "exec", "-i", "box", "sh", "-c", "cat; echo done"], "hello\n");
    assert_eq!((c, out.as_str()), (0, "hello\ndone\n"), "-i passes stdin on: {err}");
    let (c, out, err) =
        with_input(&node, &["container", "exec", "box", "sh", "-c", "cat; echo done"], "hello\n");
    assert_eq!((c, out.as_str()), (0, "done\n"), "without -i stdin is empty: {err}");

    let (c, out, err) = with_input(
        &node,
        &[
            "container",
            "exec",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "-e",
            "GREETING=hi",
            "box",
            "sh",
            "-c",
            "id -un; pwd; echo $GREETING; echo oops >&2; test -t 0 || echo no-tty",
        ],
        "",
    );
    assert_eq!((c, out.as_str()), (0, "nobody\n/tmp\nhi\nno-tty\n"), "{err}");
    assert_eq!(err, "oops\n", "stderr stays apart");
}

/// What a terminal's master side has shown so far.
fn screen_of(master: &OwnedFd) -> Arc<Mutex<String>> {
    let screen = Arc::new(Mutex::new(String::new()));
    let mut file = std::fs::File::from(master.try_clone().unwrap());
    let s = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    screen
}

#[test]
fn exec_tty_gets_a_terminal_that_follows_resizes() {
    let node = with_sleeper();
    let size = nix::pty::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = pty.slave;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.args(["container", "exec", "-i", "-t", "box", "sh"])
        .env("SHOAL_DATA_DIR", node.data_dir())
        .env("SHOAL_CGROUP_PARENT", &node.cgroup_parent)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: setsid and ioctl are async-signal-safe; the CLI gets the test's pty as
    // its controlling terminal, as in a shell, so a resize sends it SIGWINCH.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    drop(slave);
    let screen = screen_of(&pty.master);
    let shown = |s: &str| screen.lock().unwrap().contains(s);
    let mut keys = std::fs::File::from(pty.master.try_clone().unwrap());
    // Computed answers, so the terminal's echo of the typed line never matches.
    keys.write_all(b"test -t 0 && echo tty-$((6*7)); tty; stty size\n").unwrap();
    wait_for("the command's own terminal, 24x80", Duration::from_secs(20), || {
        shown("tty-42") && shown("/dev/pts/0") && shown("24 80")
    });
    let bigger = libc::winsize { ws_row: 40, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which outlives the call.
    assert_eq!(unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &bigger) }, 0);
    // The resize reaches the CLI as SIGWINCH; ask until the inner terminal has it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !shown("40 100") {
        assert!(Instant::now() < deadline, "the resize never arrived: {}", screen.lock().unwrap());
        keys.write_all(b"stty size\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    keys.write_all(b"exit 3\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "exec did not end: {}", screen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "{}", screen.lock().unwrap());
}

#[test]
fn inspect_and_top_show_the_container_process() {
    let node = with_sleeper();
    let json: serde_json::Value = serde_json::from_str(&node.ok(&["container", "inspect", "box"])).unwrap();
    let c = &json[0];
    assert_eq!(c["Id"], "box");
    assert_eq!(c["Image"], "shoal/busybox");
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["Config"]["Cmd"], serde_json::json!(["sleep", "1000"]));
    let pid = c["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 1, "{c}");
    assert!(std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap().starts_with("sleep"));

    let top = node.ok(&["container", "top", "box"]);
    let rows: Vec<Vec<&str>> = top.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "only the container's process: {top}");
    assert_eq!(rows[0][0], "root");
    assert_eq!(rows[0][1], pid.to_string(), "{top}");
    assert_eq!(rows[0][5..], ["sleep", "1000"], "{top}");

    node.ok(&["container", "stop", "-s", "SIGKILL", "box"]);
    let json: serde_json::Value = serde_json::from_str(&node.ok(&["container", "inspect", "box"])).unwrap();
    assert_eq!(json[0]["State"]["Status"], "exited");
    assert_eq!(json[0]["State"]["ExitCode"], 137, "killed by SIGKILL: 128 + 9");
    let out = node.shoal(&["container", "top", "box"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}
