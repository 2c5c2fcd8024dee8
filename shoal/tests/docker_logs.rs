//! Service and task logs through the Docker Engine API: the raw multiplexed stream
//! (one line per 8-byte-header frame, details naming the node, service and task),
//! and Debian's docker CLI reading it (`docker service logs`, `--tail`, `-t`, `-f`,
//! a task's logs).

mod support;

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shoal_api::task_spec::RestartCondition;
use shoal_api::wire::TaskFilter;
use shoal_api::{ServiceSpec, Task, TaskState};
use support::daemons::{Daemon, block_on};
use support::wait_for;

/// Makes a one-replica busybox service running `script` through Shoal's own API.
fn create(d: &Daemon, name: &str, script: &str, restart: RestartCondition) {
    let mut spec = ServiceSpec::new(name, "shoal/busybox");
    spec.task_template.container.args = ["sh", "-c", script].map(String::from).to_vec();
    spec.task_template.restart_policy.condition = restart;
    block_on(d.client().create_service(&spec)).unwrap();
}

/// The service's tasks, as Shoal has them.
fn tasks(d: &Daemon, service: &str) -> Vec<Task> {
    let filter = TaskFilter { service: Some(service.into()), ..Default::default() };
    block_on(d.client().tasks(&filter)).unwrap_or_default()
}

/// The one task of `service` once it is in `state`.
fn task_in(d: &Daemon, service: &str, state: TaskState) -> Task {
    let mut found = None;
    wait_for(&format!("a {state:?} task of {service}"), Duration::from_secs(60), || {
        found = tasks(d, service).into_iter().find(|t| t.status.state == state);
        found.is_some()
    });
    found.unwrap()
}

/// A raw HTTP/1.0 GET on the Engine API socket (the body ends with the connection):
/// status line, headers, body.
fn get(d: &Daemon, path: &str) -> (String, String, Vec<u8>) {
    let mut s = UnixStream::connect(d.docker_socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8(all[..end].to_vec()).unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    (status.to_owned(), headers.to_lowercase(), all[end + 4..].to_vec())
}

/// A multiplexed body's frames: (stream, payload); panics on a broken frame.
fn frames(mut body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 8, "a partial header: {body:?}");
        assert_eq!(&body[1..4], &[0, 0, 0], "{body:?}");
        let len = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
        assert!(body.len() >= 8 + len, "a partial frame");
        out.push((body[0], String::from_utf8(body[8..8 + len].to_vec()).unwrap()));
        body = &body[8 + len..];
    }
    out
}

#[test]
fn the_log_stream_is_multiplexed_one_line_per_frame() {
    let d = Daemon::init("m1");
    d.import_busybox();
    create(
        &d,
        "framed",
        "echo out one; sleep 0.2; echo err one >&2; sleep 0.2; echo out two; sleep 1",
        RestartCondition::None,
    );
    let task = task_in(&d, "framed", TaskState::Complete);
    let node = task.node_id.clone().unwrap();

    // A task's lines, with timestamps and details: stdout frames (1) and a stderr one (2).
    let path =
        format!("/v1.41/tasks/{}/logs?stdout=1&stderr=1&timestamps=1&details=1&tail=all", &task.id[..12]);
    let (status, headers, body) = get(&d, &path);
    assert!(status.contains(" 200 "), "{status}");
    assert!(headers.contains("content-type: application/vnd.docker.multiplexed-stream"), "{headers}");
    let task_frames = frames(&body);
    let details = format!(
        "com.docker.swarm.node.id={node},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
        task.service_id, task.id
    );
    let mut seen = Vec::new();
    for (stream, payload) in &task_frames {
        assert!(
            payload.ends_with('\n') && payload.matches('\n').count() == 1,
            "one line per frame: {payload:?}"
        );
        let (time, rest) = payload.split_once(' ').unwrap();
        let time = chrono::DateTime::parse_from_rfc3339(time).expect("an RFC 3339 timestamp");
        assert!((chrono::Utc::now() - time.with_timezone(&chrono::Utc)).num_seconds() < 120, "{time}");
        assert_eq!(payload.split(' ').next().unwrap().len(), "2026-01-01T00:00:00.000000000Z".len());
        let (d, msg) = rest.split_once(' ').unwrap();
        assert_eq!(d, details);
        seen.push((*stream, msg.trim_end().to_owned()));
    }
    assert_eq!(
        seen,
        [(1, "out one".into()), (2, "err one".into()), (1, "out two".into())],
        "the task's lines in order, each on its stream"
    );

    // The service's, stdout only, bare; `tail=1` is the last line.
    let (_, _, body) = get(&d, "/services/framed/logs?stdout=1");
    assert_eq!(frames(&body), [(1, "out one\n".into()), (1, "out two\n".into())]);
    let (_, _, body) = get(&d, "/v1.41/services/framed/logs?stdout=1&stderr=1&tail=1");
    assert_eq!(frames(&body), [(1, "out two\n".into())]);

    // Following a task that has ended: its lines, then the end.
    let started = Instant::now();
    let (_, _, body) = get(&d, &format!("/v1.41/tasks/{}/logs?stdout=1&stderr=1&follow=1", task.id));
    assert_eq!(frames(&body).len(), 3);
    assert!(started.elapsed() < Duration::from_secs(10), "ended after {:?}", started.elapsed());

    // No stream at all, a bad since, an unknown service: Docker's errors.
    let (status, headers, body) = get(&d, "/v1.41/services/framed/logs?stdout=0&stderr=0");
    assert!(status.contains(" 400 "), "{status}");
    assert!(headers.contains("content-type: application/json"), "{headers}");
    assert!(String::from_utf8_lossy(&body).contains("at least one stream"));
    let (status, _, _) = get(&d, "/v1.41/services/framed/logs?stdout=1&since=yesterday");
    assert!(status.contains(" 400 "), "{status}");
    let (status, _, body) = get(&d, "/v1.41/services/nosuch/logs?stdout=1");
    assert!(status.contains(" 404 "), "{status}");
    assert!(String::from_utf8_lossy(&body).contains("\"message\""));
}

/// A `docker` child process against `d`, its stdout piped.
fn docker_child(d: &Daemon, args: &[&str]) -> std::process::Child {
    let config = d.dir.join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    Command::new(support::docker::docker_cli())
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", d.docker_socket().display()))
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_CONTEXT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The `tick N` numbers in the CLI's output.
fn ticks(out: &str) -> Vec<u64> {
    out.lines().filter_map(|l| l.rsplit_once("| tick ")).filter_map(|(_, n)| n.trim().parse().ok()).collect()
}

#[test]
fn docker_service_logs_shows_each_tasks_lines() {
    let d = Daemon::init("m1");
    d.import_busybox();
    create(
        &d,
        "talker",
        "echo line 1; echo line 2; echo oops >&2; i=0; trap 'exit 0' TERM; \
         while true; do sleep 0.5; echo tick $i; i=$((i+1)); done",
        RestartCondition::Any,
    );
    let task = task_in(&d, "talker", TaskState::Running);
    let prefix = format!("talker.1.{}@m1", &task.id[..12]);
    wait_for("the first tick", Duration::from_secs(20), || {
        !ticks(&d.docker_ok(&["service", "logs", "talker"])).is_empty()
    });

    // Everything: `name.slot.task@node | line`, stdout here, stderr on the CLI's stderr.
    let out = d.docker(&["service", "logs", "talker"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let first: Vec<&str> = stdout.lines().take(2).collect();
    assert_eq!(first.len(), 2, "{stdout}");
    for (l, want) in first.iter().zip(["line 1", "line 2"]) {
        let (who, msg) = l.split_once(" | ").unwrap_or_else(|| panic!("{l:?}"));
        assert_eq!(who.trim(), prefix);
        assert_eq!(msg, want);
    }
    assert!(stderr.lines().any(|l| l.starts_with(&prefix) && l.ends_with("| oops")), "{stderr}");

    // `--tail 1`: one line (of either stream).
    let out = d.docker(&["service", "logs", "--tail", "1", "talker"]);
    let n = String::from_utf8_lossy(&out.stdout).lines().count()
        + String::from_utf8_lossy(&out.stderr).lines().count();
    assert_eq!(n, 1, "{out:?}");

    // `-t`: an RFC 3339 time first.
    let out = d.docker_ok(&["service", "logs", "-t", "talker"]);
    let l = out.lines().next().unwrap();
    let (time, rest) = l.split_once(' ').unwrap();
    chrono::DateTime::parse_from_rfc3339(time).unwrap_or_else(|e| panic!("{l:?}: {e}"));
    assert!(rest.starts_with(&prefix) && rest.ends_with("| line 1"), "{l:?}");

    // A task's logs, by its id.
    let out = d.docker_ok(&["service", "logs", &task.id]);
    assert!(out.lines().next().is_some_and(|l| l.starts_with(&prefix) && l.ends_with("| line 1")), "{out}");

    // `-f`: a line printed after it started.
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let before = ticks(&d.docker_ok(&["service", "logs", "talker"])).into_iter().max().unwrap();
    let mut child = docker_child(&d, &["service", "logs", "-f", "talker"]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut newer = None;
    while newer.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no tick after {before} within 30s"));
        if let Some(&n) = ticks(&line).first()
            && n > before
        {
            assert!(line.starts_with(&prefix), "{line:?}");
            newer = Some(n);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // `--since`: only what came after that time (the CLI sends Unix seconds.nanos).
    let out = d.docker_ok(&["service", "logs", "--since", &started, "talker"]);
    assert!(!out.contains("| line 1") && !ticks(&out).is_empty(), "{out}");

    // Shoal's state: the same task still runs, the only one of the service.
    let now = tasks(&d, "talker");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].id, task.id);
    assert_eq!(now[0].status.state, TaskState::Running);
}

#[test]
fn following_a_task_ends_once_the_task_has() {
    let d = Daemon::init("m1");
    d.import_busybox();
    create(&d, "brief", "echo start; sleep 3; echo bye", RestartCondition::None);
    let task = task_in(&d, "brief", TaskState::Running);
    let mut child = docker_child(&d, &["service", "logs", "-f", &task.id]);
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("`docker service logs -f` of a task did not end after the task did");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success(), "{status:?}: {out}");
    let msgs: Vec<&str> = out.lines().filter_map(|l| l.split_once(" | ")).map(|(_, m)| m).collect();
    assert_eq!(msgs, ["start", "bye"], "{out}");
    // Shoal's state: the task completed.
    let t = tasks(&d, "brief").into_iter().find(|t| t.id == task.id).unwrap();
    assert_eq!(t.status.state, TaskState::Complete);
}

#[test]
fn following_a_service_takes_in_tasks_that_start_later() {
    let d = Daemon::init("m1");
    d.import_busybox();
    create(
        &d,
        "grows",
        "echo hello; trap 'exit 0' TERM; while true; do sleep 0.2; done",
        RestartCondition::Any,
    );
    let first = task_in(&d, "grows", TaskState::Running);
    let mut child = docker_child(&d, &["service", "logs", "-f", "grows"]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The first task's line, then a second task's, started by a scale-up after the
    // CLI began to follow.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut scaled = false;
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("hello from 2 tasks: saw {seen:?}"));
        let (who, msg) = line.split_once(" | ").unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(msg, "hello", "{line:?}");
        seen.insert(who.trim().to_owned());
        if !scaled {
            block_on(d.client().scale_service("grows", 2)).unwrap();
            scaled = true;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.contains(&format!("grows.1.{}@m1", &first.id[..12])), "{seen:?}");
    let second = tasks(&d, "grows").into_iter().find(|t| t.slot == Some(2)).expect("a task in slot 2");
    assert!(seen.contains(&format!("grows.2.{}@m1", &second.id[..12])), "{seen:?}");
}

#[test]
fn a_node_that_is_gone_does_not_break_the_others_logs() {
    let m = Daemon::init("m1");
    let mut w = Daemon::worker("w1", &m);
    m.import_busybox();
    w.import_busybox();
    let mut spec = ServiceSpec::new("spread", "shoal/busybox");
    spec.mode = shoal_api::ServiceMode::Replicated { replicas: 2 };
    spec.task_template.container.args =
        ["sh", "-c", "echo hi from $(hostname); trap 'exit 0' TERM; while true; do sleep 0.2; done"]
            .map(String::from)
            .to_vec();
    spec.task_template.placement.max_replicas = 1;
    block_on(m.client().create_service(&spec)).unwrap();
    wait_for("a running task on each node", Duration::from_secs(60), || {
        tasks(&m, "spread").iter().filter(|t| t.status.state == TaskState::Running).count() == 2
    });
    let on_m1 = tasks(&m, "spread")
        .into_iter()
        .find(|t| t.node_id.as_deref() == Some(block_on(m.client().node("m1")).unwrap().id.as_str()))
        .expect("a task on m1");
    let out = m.docker_ok(&["service", "logs", "spread"]);
    assert_eq!(out.lines().filter(|l| l.contains("| hi from")).count(), 2, "{out}");

    // The worker's daemon dies: its task's logs cannot be read, the manager's still are.
    w.kill();
    let out = m.docker(&["service", "logs", "spread"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains("error from daemon"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("| hi from")).collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("spread.{}.{}@m1", on_m1.slot.unwrap(), &on_m1.id[..12])),
        "{stdout}"
    );
    assert!(m.log().contains("Docker API logs"), "a warning in the manager's log instead");
    // Shoal still has the worker's task on the worker.
    let w1 = block_on(m.client().node("w1")).unwrap().id;
    assert!(tasks(&m, "spread").iter().any(|t| t.node_id.as_deref() == Some(w1.as_str())));
}
