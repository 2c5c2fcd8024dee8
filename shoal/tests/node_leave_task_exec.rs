//! Commands that reach a node through the cluster, with real daemons (as root):
//! `node leave` on a worker and on a manager, and `task exec` through a manager into
//! a task's container on a worker.

mod support;

use std::process::Command;
use std::time::Duration;

use shoal_api::node::NodeState;
use shoal_api::service::ServiceSpec;
use shoal_api::task::TaskState;
use shoal_api::wire::TaskFilter;
use support::daemons::{Daemon, block_on};
use support::terminal::Terminal;
use support::wait_for;

/// `shoal node leave ARGS` on the node whose data is in `d`.
fn leave(d: &Daemon, args: &[&str]) -> std::process::Output {
    wait_for("the daemon's control socket", Duration::from_secs(30), || d.dir.join("node.sock").exists());
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

/// `shoal ARGS` against `d`'s API, with `input` on stdin: (code, stdout, stderr).
fn cli(d: &Daemon, args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let out = d.cli_input(args, input);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn task_exec_runs_in_a_task_on_a_worker_through_a_manager() {
    let m = Daemon::init("exec-m");
    m.ok(&["node", "update", "exec-m", "--availability", "drain"]);
    let w = Daemon::worker("exec-w", &m);
    w.import_busybox();
    let client = m.client();
    let mut spec = ServiceSpec::new("box", "shoal/busybox");
    spec.task_template.container.command = support::daemons::serve_forever();
    block_on(client.create_service(&spec)).unwrap();
    wait_for("the task to run on the worker", Duration::from_secs(60), || {
        block_on(client.tasks(&TaskFilter { service: Some("box".into()), ..Default::default() }))
            .unwrap()
            .iter()
            .any(|t| t.status.state == TaskState::Running)
    });
    let task = block_on(client.tasks(&TaskFilter::default())).unwrap().remove(0);
    assert_eq!(task.node_id.as_deref(), Some(block_on(client.node("exec-w")).unwrap().id.as_str()));

    // Output apart, exit code, in the task's container (its hostname), by SERVICE.SLOT.
    let (code, out, err) =
        cli(&m, &["task", "exec", "box.1", "sh", "-c", "echo out; echo err >&2; hostname; exit 5"], "");
    assert_eq!(code, Some(5), "{err}");
    assert_eq!(out, format!("out\n{}\n", &task.id[..12]));
    assert_eq!(err, "err\n");
    // Input with -i, by task id; none without.
    let (code, out, err) = cli(&m, &["task", "exec", "-i", &task.id, "sh", "-c", "cat; echo end"], "piped\n");
    assert_eq!((code, out.as_str()), (Some(0), "piped\nend\n"), "{err}");
    let (_, out, _) = cli(&m, &["task", "exec", "box", "sh", "-c", "cat; echo end"], "piped\n");
    assert_eq!(out, "end\n");
    // A terminal (of the default size, as the test's stdin is none), user and env.
    let (code, out, err) = cli(
        &m,
        &[
            "task",
            "exec",
            "-t",
            "-u",
            "nobody",
            "-e",
            "X=y",
            "box",
            "sh",
            "-c",
            "test -t 0 && echo tty; stty size; id -un; echo $X",
        ],
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.replace('\r', ""), "tty\n24 80\nnobody\ny\n");
    // Interactive, on the user's terminal: raw mode, resizes passed on to the node.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.args(["task", "exec", "-it", "box", "sh"])
        .env("SHOAL_HOST", format!("unix://{}", m.socket.display()));
    let mut term = Terminal::spawn(cmd);
    term.type_keys("test -t 0 && echo tty-$((6*7)); stty size\n");
    wait_for("a terminal of the user's size", Duration::from_secs(20), || {
        term.shown("tty-42") && term.shown("24 80")
    });
    term.resize(30, 90);
    term.ask_until("stty size\n", "30 90", Duration::from_secs(20));
    term.type_keys("exit 6\n");
    assert_eq!(term.wait_exit(Duration::from_secs(20)).code(), Some(6), "{}", term.screen());
    // Through a manager that does not lead: it forwards to the leader.
    let m2 = Daemon::join("exec-m2", &m);
    m.ok(&["node", "update", "exec-m2", "--availability", "drain"]);
    let (code, out, err) =
        cli(&m2, &["task", "exec", "-i", "box", "sh", "-c", "cat; exit 4"], "via follower\n");
    assert_eq!((code, out.as_str()), (Some(4), "via follower\n"), "{err}");
    // A client that goes away hangs up its command (through the leader and through
    // a follower): nothing is left running in the container.
    let top = || w.node.ok(&["container", "top", &format!("task.{}", task.id)]);
    for via in [&m, &m2] {
        let mut client_cli = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["task", "exec", "box", "sleep", "1234"])
            .env("SHOAL_HOST", format!("unix://{}", via.socket.display()))
            .spawn()
            .unwrap();
        wait_for("the command to run", Duration::from_secs(20), || top().contains("sleep 1234"));
        client_cli.kill().unwrap();
        client_cli.wait().unwrap();
        wait_for("the command to be hung up", Duration::from_secs(20), || !top().contains("sleep 1234"));
    }
    // Not there: 127, as docker.
    let (code, _, err) = cli(&m, &["task", "exec", "box", "no-such-command"], "");
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("command not found"), "{err}");
    // The read-only token may not exec; the admin token may.
    let ca = m.ca_file();
    let over_tcp = |token: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .env("SHOAL_HOST", format!("tcp://{}", m.api_addr))
            .env("SHOAL_TOKEN", token)
            .env("SHOAL_CA", &ca)
            .output()
            .unwrap()
    };
    let read_only = block_on(client.read_only_api_token()).unwrap().token;
    let out = over_tcp(&read_only, &["task", "exec", "box", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("may only read"), "{err}");
    let admin = block_on(client.api_token()).unwrap().token;
    let out = over_tcp(&admin, &["task", "exec", "box", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    // A task that does not run: refused before anything starts.
    let mut done = ServiceSpec::new("done", "shoal/busybox");
    done.task_template.container.command = vec!["true".into()];
    done.task_template.restart_policy.condition = shoal_api::task_spec::RestartCondition::None;
    block_on(client.create_service(&done)).unwrap();
    let filter = TaskFilter { service: Some("done".into()), ..Default::default() };
    wait_for("the task to complete", Duration::from_secs(60), || {
        block_on(client.tasks(&filter)).unwrap().iter().any(|t| t.status.state == TaskState::Complete)
    });
    let ended = block_on(client.tasks(&filter)).unwrap().remove(0);
    let (code, _, err) = cli(&m, &["task", "exec", &ended.id, "true"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("is complete: only a running task"), "{err}");
    m.ok(&["service", "scale", "box=0"]);
    wait_for("the task to stop", Duration::from_secs(60), || {
        block_on(client.tasks(&TaskFilter { service: Some("box".into()), ..Default::default() }))
            .unwrap()
            .iter()
            .all(|t| t.status.state != TaskState::Running)
    });
    let (_, _, err) = cli(&m, &["task", "exec", "box", "true"], "");
    assert!(err.contains("service box has no running task"), "{err}");
}

#[test]
fn a_manager_leaves_only_with_force_and_the_rest_keep_working() {
    let m1 = Daemon::init("leave-m1");
    let mut m2 = Daemon::join("leave-m2", &m1);
    let out = leave(&m2, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a manager needs --force");
    assert!(err.contains("leaves 1 managers") && err.contains("--force"), "{err}");
    assert_eq!(block_on(m1.client().cluster(Default::default())).unwrap().managers.len(), 2);

    let out = leave(&m2, &["--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(m2.wait_exit(Duration::from_secs(30)), Some(0), "its daemon stops");
    assert!(!m2.dir.join("manager").exists(), "its cluster state is gone");
    let client = m1.client();
    wait_for("one manager left, still serving writes", Duration::from_secs(30), || {
        block_on(client.cluster(Default::default())).is_ok_and(|c| c.managers.len() == 1)
    });
    m1.ok(&["network", "create", "after-leave", "--subnet", "10.77.0.0/24"]);
}
