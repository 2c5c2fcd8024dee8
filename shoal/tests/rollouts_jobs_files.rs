//! Claims checked with real containers on a real `shoal daemon`: a rollout decided by
//! `max_failure_ratio` (pause, rollback) and by `progress_deadline`; a replicated and
//! a global job running to COMPLETE and staying there; secrets and configs reaching
//! the container with their content, path, mode and owner, as seen from inside,
//! from a tmpfs of the task's own that outlives a daemon crash while the task runs,
//! goes with the task, and leaves no byte of them on the node's disk.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use shoal_api::client::{Client, LogsOf, PayloadKind};
use shoal_api::service::{FailureAction, UpdateState};
use shoal_api::task_spec::{FileReference, HealthCheck, RestartCondition};
use shoal_api::wire::{LogQuery, TaskFilter};
use shoal_api::{PayloadSpec, Service, ServiceMode, ServiceSpec, Task, TaskState};
use support::daemons::{Daemon, block_on, serve_forever};

fn sh(script: &str) -> Vec<String> {
    ["sh", "-c", script].map(String::from).to_vec()
}

async fn tasks_of(c: &Client, service: &str) -> Vec<Task> {
    c.tasks(&TaskFilter { service: Some(service.into()), ..Default::default() }).await.unwrap()
}

/// Polls `service`'s tasks until `cond` holds; past `timeout`, panics with them.
async fn tasks_until(
    c: &Client,
    service: &str,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&[Task]) -> bool,
) -> Vec<Task> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = tasks_of(c, service).await;
        if cond(&tasks) {
            return tasks;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {tasks:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `service` until its update state is `state`; returns the service.
async fn update_state(c: &Client, service: &str, state: UpdateState, timeout: Duration) -> Service {
    let deadline = Instant::now() + timeout;
    loop {
        let s = c.service(service).await.unwrap();
        if s.update_status.as_ref().map(|u| u.state) == Some(state) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{service}: timed out waiting for {state:?}, status {:?}, tasks {:#?}",
            s.update_status,
            tasks_of(c, service).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks for `window` that `service`'s tasks keep satisfying `cond`.
async fn tasks_stay(c: &Client, service: &str, window: Duration, what: &str, cond: impl Fn(&[Task]) -> bool) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let tasks = tasks_of(c, service).await;
        assert!(cond(&tasks), "{what} no longer holds: {tasks:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Four replicas of a task that runs until stopped; a failed task is not restarted,
/// so each slot fails at most once and failures are counted exactly.
fn four_replicas(name: &str, action: FailureAction) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, "shoal/busybox");
    spec.mode = ServiceMode::Replicated { replicas: 4 };
    spec.task_template.container.args = serve_forever();
    spec.task_template.restart_policy.condition = RestartCondition::None;
    spec.update_config.parallelism = 1;
    // Costs nothing when new tasks fail at once (a failed task does not hold up the next
    // batch); a task that runs holds it up long enough for a quick exit to be counted.
    spec.update_config.delay = Duration::from_secs(30);
    spec.update_config.monitor = Duration::from_secs(30);
    spec.update_config.max_failure_ratio = 0.5;
    spec.update_config.failure_action = action;
    spec
}

/// Updates `name`'s command to `args`.
async fn update_args(c: &Client, name: &str, args: Vec<String>) {
    let svc = c.service(name).await.unwrap();
    let mut new = svc.spec.clone();
    new.task_template.container.args = args;
    c.update_service(name, svc.meta.version, &new).await.unwrap();
}

fn running(ts: &[Task], args: &[String]) -> usize {
    ts.iter()
        .filter(|t| {
            t.desired_state == TaskState::Running
                && t.status.state == TaskState::Running
                && t.spec.container.args == args
        })
        .count()
}

#[test]
fn max_failure_ratio_decides_when_a_failing_update_pauses_or_rolls_back() {
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    let bad = sh("exit 3");
    block_on(async {
        for (name, action) in [("paused", FailureAction::Pause), ("rolled", FailureAction::Rollback)] {
            c.create_service(&four_replicas(name, action)).await.unwrap();
        }
        for name in ["paused", "rolled"] {
            tasks_until(&c, name, Duration::from_secs(60), "4 running tasks", |ts| {
                running(ts, &serve_forever()) == 4
            })
            .await;
        }
        for name in ["paused", "rolled"] {
            update_args(&c, name, bad.clone()).await;
        }

        // Pause: one failure in four (0.25) and two (0.5) are within the ratio of 0.5;
        // the third (0.75) is past it, and the rollout stops there.
        let s = update_state(&c, "paused", UpdateState::Paused, Duration::from_secs(60)).await;
        let ts = tasks_of(&c, "paused").await;
        let new: Vec<&Task> = ts.iter().filter(|t| t.spec.container.args == bad).collect();
        assert_eq!(new.len(), 3, "paused at the third failure, not before: {ts:#?}");
        assert!(new.iter().all(|t| t.status.state == TaskState::Failed && t.status.exit_code == Some(3)));
        let message = &s.update_status.as_ref().unwrap().message;
        assert!(message.starts_with("update paused: task ") && message.contains("failed"), "{message}");
        assert!(new.iter().any(|t| message.contains(&t.id)), "{message}");
        assert_eq!(running(&ts, &serve_forever()), 1, "the fourth slot keeps its old task: {ts:#?}");
        // Paused means paused: no fourth task of the new spec.
        tasks_stay(&c, "paused", Duration::from_secs(3), "the pause", |ts| {
            ts.iter().filter(|t| t.spec.container.args == bad).count() == 3
                && running(ts, &serve_forever()) == 1
        })
        .await;

        // Rollback: the same three failures, then the previous spec comes back in
        // every slot.
        let s = update_state(&c, "rolled", UpdateState::RollbackCompleted, Duration::from_secs(90)).await;
        assert_eq!(s.spec.task_template.container.args, serve_forever(), "back on the previous spec");
        let ts = tasks_until(&c, "rolled", Duration::from_secs(30), "4 tasks of the old spec", |ts| {
            running(ts, &serve_forever()) == 4
        })
        .await;
        let new: Vec<&Task> = ts.iter().filter(|t| t.spec.container.args == bad).collect();
        assert_eq!(new.len(), 3, "rolled back at the third failure, not before: {ts:#?}");
        assert!(new.iter().all(|t| t.status.state == TaskState::Failed));
    });
}

#[test]
fn a_task_that_does_not_run_within_the_progress_deadline_fails_the_rollout() {
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    // Long enough for a loaded machine to start the new task (its state must still
    // be STARTING when the deadline decides), short enough to keep the test quick.
    let deadline = Duration::from_secs(6);
    block_on(async {
        let mut spec = ServiceSpec::new("slow", "shoal/busybox");
        spec.task_template.container.args = serve_forever();
        spec.update_config.progress_deadline = deadline;
        spec.update_config.failure_action = FailureAction::Pause;
        c.create_service(&spec).await.unwrap();
        tasks_until(&c, "slow", Duration::from_secs(60), "a running task", |ts| {
            running(ts, &serve_forever()) == 1
        })
        .await;

        // The new spec's health check never passes, and its failures do not count in
        // the long start period: the new task stays STARTING and never fails by itself.
        let svc = c.service("slow").await.unwrap();
        let mut new = svc.spec.clone();
        new.task_template.container.healthcheck = Some(HealthCheck {
            test: ["CMD", "false"].map(String::from).to_vec(),
            interval: Duration::from_millis(300),
            timeout: Duration::from_secs(2),
            retries: 1,
            start_period: Duration::from_secs(600),
            start_interval: Duration::from_millis(300),
        });
        c.update_service("slow", svc.meta.version, &new).await.unwrap();

        let s = update_state(&c, "slow", UpdateState::Paused, Duration::from_secs(60)).await;
        let ts = tasks_of(&c, "slow").await;
        let stuck: Vec<&Task> = ts.iter().filter(|t| t.spec.container.healthcheck.is_some()).collect();
        assert_eq!(stuck.len(), 1, "{ts:#?}");
        let stuck = stuck[0];
        assert_eq!(stuck.status.state, TaskState::Starting, "still starting: the deadline decided");
        let message = &s.update_status.as_ref().unwrap().message;
        assert_eq!(message, &format!("update paused: task {} failed or did not run in time", stuck.id));
        let waited = (s.meta.updated_at - stuck.meta.created_at).to_std().unwrap();
        assert!(waited >= deadline, "paused {waited:?} after the task was made, before the deadline");
    });
}

#[test]
fn a_replicated_and_a_global_job_run_to_complete_and_stay_there() {
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    let completed = |ts: &[Task]| {
        ts.iter().filter(|t| t.status.state == TaskState::Complete && t.status.exit_code == Some(0)).count()
    };
    // Exactly `n` tasks, each completed: none restarted, none more than asked for.
    let done = |ts: &[Task], n: usize| ts.len() == n && completed(ts) == n;
    block_on(async {
        let mut spec = ServiceSpec::new("batch", "shoal/busybox");
        spec.mode = ServiceMode::ReplicatedJob { max_concurrent: 2, total_completions: Some(5) };
        spec.task_template.container.args = sh("sleep 3; echo done");
        // A restart, were there one, would come quickly.
        spec.task_template.restart_policy.delay = Duration::from_millis(100);
        c.create_service(&spec).await.unwrap();
        let mut global = ServiceSpec::new("once", "shoal/busybox");
        global.mode = ServiceMode::GlobalJob;
        global.task_template.container.args = sh("echo done");
        global.task_template.restart_policy.delay = Duration::from_millis(100);
        c.create_service(&global).await.unwrap();

        let ts =
            tasks_until(&c, "batch", Duration::from_secs(90), "5 completions", |ts| completed(ts) >= 5).await;
        let mut slots: Vec<u64> = ts.iter().map(|t| t.slot.unwrap()).collect();
        slots.sort();
        assert_eq!(slots, [1, 2, 3, 4, 5], "one task per completion, none restarted: {ts:#?}");
        // At most two at once, from when each started to when it completed; and two
        // did run together.
        let mut edges: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
        for t in &ts {
            edges.push((t.status.started_at.expect("a completed task started"), 1));
            edges.push((t.status.timestamp, -1));
        }
        edges.sort();
        let (mut now, mut most) = (0, 0);
        for (_, step) in edges {
            now += step;
            most = most.max(now);
        }
        assert_eq!(most, 2, "max_concurrent 2: {ts:#?}");

        let ts = tasks_until(&c, "once", Duration::from_secs(60), "the global job's completion", |ts| {
            completed(ts) >= 1
        })
        .await;
        assert!(done(&ts, 1) && ts[0].slot.is_none(), "one task on the one node, not restarted: {ts:#?}");

        // Completed tasks are not restarted: the counts stay.
        tasks_stay(&c, "batch", Duration::from_secs(3), "5 completed tasks", |ts| done(ts, 5)).await;
        tasks_stay(&c, "once", Duration::from_secs(1), "1 completed task", |ts| done(ts, 1)).await;
    });
}

#[test]
fn secrets_and_configs_reach_the_container_with_path_mode_and_owner() {
    let d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    block_on(async {
        let payload = |name: &str, data: &str| PayloadSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            data: data.as_bytes().to_vec(),
        };
        c.create_payload(PayloadKind::Secret, &payload("db_pw", "s3cret-value")).await.unwrap();
        c.create_payload(PayloadKind::Config, &payload("app_conf", "listen: 8080")).await.unwrap();

        let mut spec = ServiceSpec::new("files", "shoal/busybox");
        let container = &mut spec.task_template.container;
        container.secrets = vec![
            FileReference {
                target: Some("pw".into()),
                uid: 1000,
                gid: 2000,
                mode: 0o400,
                ..FileReference::new("db_pw")
            },
            FileReference::new("db_pw"),
        ];
        container.configs = vec![
            FileReference {
                target: Some("/etc/app/app.conf".into()),
                uid: 33,
                gid: 44,
                mode: 0o640,
                ..FileReference::new("app_conf")
            },
            FileReference::new("app_conf"),
        ];
        let files = "/run/secrets/pw /run/secrets/db_pw /etc/app/app.conf /app_conf";
        container.args = sh(&format!(
            "for f in {files}; do echo \"$(stat -c '%n %a %u %g' $f) $(cat $f)\"; done; echo end; \
             trap 'exit 0' TERM; while true; do sleep 0.2; done"
        ));
        c.create_service(&spec).await.unwrap();
        tasks_until(&c, "files", Duration::from_secs(60), "a running task", |ts| {
            ts.iter().any(|t| t.status.state == TaskState::Running)
        })
        .await;

        let deadline = Instant::now() + Duration::from_secs(30);
        let lines = loop {
            let mut stream = c.logs(LogsOf::Service, "files", &LogQuery::default()).await.unwrap();
            let mut lines = Vec::new();
            while let Some(r) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.unwrap() {
                lines.push(r.unwrap().line);
            }
            if lines.iter().any(|l| l == "end") {
                break lines;
            }
            assert!(Instant::now() < deadline, "the task's output never ended: {lines:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            lines,
            [
                "/run/secrets/pw 400 1000 2000 s3cret-value",
                "/run/secrets/db_pw 444 0 0 s3cret-value",
                "/etc/app/app.conf 640 33 44 listen: 8080",
                "/app_conf 444 0 0 listen: 8080",
                "end",
            ]
        );
    });
}

/// Mounts as this process or a container sees them: (mount point, fs type, options
/// of the mount and of the superblock).
fn mounts(mountinfo: &str) -> Vec<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some((f[4].to_owned(), f.get(dash + 1)?.to_string(), format!("{},{}", f[5], f.get(dash + 3)?)))
        })
        .collect()
}

/// Files under `dir` (not following links nor entering other mounts, which are
/// not the node's disk) whose bytes contain one of `needles`: (path, needle). The
/// manager's Raft log and snapshot are left out: they hold the secrets by design,
/// encrypted at rest (cluster-tests' secrets test greps them too).
fn files_containing(dir: &std::path::Path, needles: &[&str]) -> Vec<(String, String)> {
    let raft = [dir.join("manager/raft.redb"), dir.join("manager/snapshot.json")];
    let skip = support::mounts_under(dir);
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if skip.contains(&path) || raft.contains(&path) {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                for n in needles {
                    if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                        found.push((path.display().to_string(), (*n).to_owned()));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn secrets_live_on_a_tmpfs_of_the_task_that_survives_a_crash_and_goes_with_the_task() {
    let mut d = Daemon::init("m1");
    d.import_busybox();
    let c = d.client();
    let secret_value = format!("s3cret-{:016x}", rand::random::<u64>());
    let config_value = format!("c0nfig-{:016x}", rand::random::<u64>());
    let spec = |name: &str, data: &str| PayloadSpec {
        name: name.into(),
        labels: BTreeMap::new(),
        data: data.as_bytes().to_vec(),
    };
    let (secret, config) = (spec("pw", &secret_value), spec("conf", &config_value));
    let b64 = |s: &PayloadSpec| serde_json::to_value(s).unwrap()["data"].as_str().unwrap().to_owned();
    let (secret_b64, config_b64) = (b64(&secret), b64(&config));
    let needles = [secret_value.as_str(), secret_b64.as_str(), config_value.as_str(), config_b64.as_str()];
    let tasks_dir = d.dir.join("tasks");
    let task_mounts = |under: &std::path::Path| {
        mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
            .into_iter()
            .filter(|(m, _, _)| m.starts_with(under.to_str().unwrap()))
            .collect::<Vec<_>>()
    };
    // The running task, other than `not`.
    let running_task = |not: &str| {
        let live = |t: &Task| t.status.state == TaskState::Running && t.id != not;
        block_on(tasks_until(&c, "files", Duration::from_secs(60), "a running task", |ts| {
            ts.iter().any(live)
        }))
        .into_iter()
        .find(live)
        .unwrap()
    };
    // The container never prints them: whatever holds them on disk is a leak.
    let read = |d: &Daemon, task: &Task| {
        d.node.ok(&["container", "exec", &format!("task.{}", task.id), "sh", "-c",
            "stat -c '%n %a %u %g' /run/secrets/pw /etc/app.conf; cat /run/secrets/pw; echo; cat /etc/app.conf; echo; cat /proc/self/mountinfo"])
    };

    block_on(async {
        c.create_payload(PayloadKind::Secret, &secret).await.unwrap();
        c.create_payload(PayloadKind::Config, &config).await.unwrap();
        let mut svc = ServiceSpec::new("files", "shoal/busybox");
        svc.task_template.container.args = sh("trap 'exit 0' TERM; while true; do sleep 0.2; done");
        svc.task_template.container.secrets =
            vec![FileReference { uid: 1000, gid: 2000, mode: 0o400, ..FileReference::new("pw") }];
        svc.task_template.container.configs = vec![FileReference {
            target: Some("/etc/app.conf".into()),
            uid: 33,
            gid: 44,
            mode: 0o640,
            ..FileReference::new("conf")
        }];
        c.create_service(&svc).await.unwrap();
    });
    let task = running_task("");

    // Inside: content, mode, owner; /run/secrets and the config are read-only
    // binds of a tmpfs that is noexec, nosuid, nodev.
    let out = read(&d, &task);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("/run/secrets/pw 400 1000 2000"), "{out}");
    assert_eq!(lines.next(), Some("/etc/app.conf 640 33 44"), "{out}");
    assert_eq!(lines.next(), Some(secret_value.as_str()), "{out}");
    assert_eq!(lines.next(), Some(config_value.as_str()), "{out}");
    let inside = mounts(&out);
    for target in ["/run/secrets", "/etc/app.conf"] {
        let (_, fs, opts) =
            inside.iter().find(|(m, _, _)| m == target).unwrap_or_else(|| panic!("no {target} in {out}"));
        assert_eq!(fs, "tmpfs", "{target}: {out}");
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(opts.split(',').any(|o| o == flag), "{target} is not {flag}: {opts}");
        }
    }
    // On the host: one read-only tmpfs under the task's dir, nothing on disk.
    let on_host = task_mounts(&tasks_dir);
    assert_eq!(on_host.len(), 1, "{on_host:?}");
    assert_eq!(on_host[0].0, tasks_dir.join(&task.id).join("payloads").to_str().unwrap());
    assert!(on_host[0].1 == "tmpfs" && on_host[0].2.contains("mode=700"), "{on_host:?}");
    assert_eq!(files_containing(&d.dir, &needles), []);

    // A crash: the running task keeps its tmpfs, before and after the restart.
    d.kill();
    assert_eq!(task_mounts(&tasks_dir).len(), 1);
    d.start(&[]);
    d.wait_registered(1);
    assert_eq!(running_task("").id, task.id);
    assert!(read(&d, &task).contains(&secret_value));
    assert_eq!(task_mounts(&tasks_dir).len(), 1);

    // A crash, and the container goes while the daemon is down: its tmpfs is
    // swept when the daemon starts, and the replacement task gets a new one.
    d.kill();
    d.node.ok(&["container", "rm", "-f", &format!("task.{}", task.id)]);
    assert_eq!(task_mounts(&tasks_dir).len(), 1, "the daemon was down: nothing took it yet");
    d.start(&[]);
    d.wait_registered(1);
    support::wait_for("the gone task's tmpfs to go", Duration::from_secs(30), || {
        task_mounts(&tasks_dir.join(&task.id)).is_empty() && !tasks_dir.join(&task.id).exists()
    });
    let next = running_task(&task.id);
    assert!(read(&d, &next).contains(&config_value));
    assert_eq!(task_mounts(&tasks_dir).len(), 1);

    // The container goes behind the daemon's back while it runs: the task fails and
    // is replaced, and what is left of it goes once it is no longer assigned.
    d.node.ok(&["container", "rm", "-f", &format!("task.{}", next.id)]);
    let third = running_task(&next.id);
    assert!(read(&d, &third).contains(&secret_value));

    // The service goes: so do its tasks' tmpfs and directories.
    block_on(c.remove_service("files")).unwrap();
    support::wait_for("every task's tmpfs to go", Duration::from_secs(30), || {
        task_mounts(&tasks_dir).is_empty()
            && std::fs::read_dir(&tasks_dir).map(|mut e| e.next().is_none()).unwrap_or(true)
    });
    assert_eq!(files_containing(&d.dir, &needles), [], "log: {}", d.log());
}
