//! `shoal container exec`, `inspect` and `top` against a real running container (as
//! root): exit codes, stdin, user/workdir/env, a terminal driven through a pty as a
//! user's would be (resizes included), and the container's process seen from outside.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::terminal::Terminal;
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

#[test]
fn exec_tty_gets_a_terminal_that_follows_resizes() {
    let node = with_sleeper();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.args(["container", "exec", "-i", "-t", "box", "sh"])
        .env("SHOAL_DATA_DIR", node.data_dir())
        .env("SHOAL_CGROUP_PARENT", &node.cgroup_parent);
    let mut term = Terminal::spawn(cmd);
    // Computed answers, so the terminal's echo of the typed line never matches.
    term.type_keys("test -t 0 && echo tty-$((6*7)); tty; stty size\n");
    wait_for("the command's own terminal, 24x80", Duration::from_secs(20), || {
        term.shown("tty-42") && term.shown("/dev/pts/0") && term.shown("24 80")
    });
    // The resize reaches the CLI as SIGWINCH; ask until the inner terminal has it.
    term.resize(40, 100);
    term.ask_until("stty size\n", "40 100", Duration::from_secs(20));
    term.type_keys("exit 3\n");
    assert_eq!(term.wait_exit(Duration::from_secs(20)).code(), Some(3), "{}", term.screen());
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
