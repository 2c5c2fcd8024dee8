//! The CLI's work-in-progress output against a real daemon running real containers:
//! `service create` and a rolling `service update` wait and end with "converged", a
//! failing update ends non-zero with the task's error, `--detach` returns at once;
//! `service ps` nests a slot's older tasks and filters; `--format` runs templates.

mod support;

use std::process::Output;

use shoal_api::wire::TaskFilter;
use shoal_api::{Task, TaskState};
use support::daemons::{Daemon, block_on};

/// Standard output and error together.
fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn tasks(d: &Daemon) -> Vec<Task> {
    block_on(d.client().tasks(&TaskFilter { service: Some("web".into()), ..Default::default() })).unwrap()
}

/// Tasks that run and should, with `env` in their environment.
fn running_with(d: &Daemon, env: &str) -> usize {
    tasks(d)
        .iter()
        .filter(|t| t.desired_state == TaskState::Running && t.status.state == TaskState::Running)
        .filter(|t| t.spec.container.env.iter().any(|e| e == env))
        .count()
}

#[test]
fn service_commands_wait_for_convergence_and_report_failures() {
    let d = Daemon::init("m1");
    d.import_busybox();
    let forever = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

    let out = d.cli(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--env",
        "V=1",
        "--update-monitor",
        "1s",
        "shoal/busybox",
        "sh",
        "-c",
        forever,
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0].len(), 25, "the id first: {shown}");
    for want in [
        "overall progress: 0 out of 2 tasks",
        "overall progress: 2 out of 2 tasks",
        "1/2: running",
        "2/2: running",
    ] {
        assert!(lines.contains(&want), "no {want:?} in:\n{shown}");
    }
    assert!(shown.contains("verify: Waiting 1 seconds to verify that tasks are stable..."), "{shown}");
    assert_eq!(lines.last(), Some(&"verify: Service web converged"), "{shown}");
    assert_eq!(running_with(&d, "V=1"), 2, "converged means both run");

    // A rolling update waits until both new tasks run and stayed up.
    let out = d.cli(&["service", "update", "web", "--env-add", "V=2"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.starts_with("web\n") && shown.contains("1/2: "), "{shown}");
    assert!(shown.trim_end().ends_with("verify: Service web converged"), "{shown}");
    assert_eq!(running_with(&d, "V=2"), 2, "{shown}");

    // service ps: the current task of each slot, its replaced one nested under it.
    let ps = d.ok(&["service", "ps", "web"]);
    let names: Vec<&str> = ps.lines().skip(1).map(|l| l.split("   ").nth(1).unwrap_or("").trim()).collect();
    assert_eq!(names, ["web.1", "\\_ web.1", "web.2", "\\_ web.2"], "{ps}");
    let running = d.ok(&["service", "ps", "web", "--filter", "desired-state=running", "-q"]);
    assert_eq!(running.lines().count(), 2, "{running}");
    let shut = d.ok(&[
        "service",
        "ps",
        "web",
        "-f",
        "desired-state=shutdown",
        "-f",
        "name=web.1",
        "--no-trunc",
        "-q",
    ]);
    assert_eq!(shut.lines().map(str::len).collect::<Vec<_>>(), [25], "one full id: {shut}");
    assert_eq!(d.ok(&["service", "ls", "--format", "{{.Name}} {{.Replicas}}"]), "web 2/2\n");
    let table = d.ok(&[
        "service",
        "ps",
        "web",
        "-f",
        "desired-state=running",
        "--format",
        "table {{.Name}}\\t{{upper .DesiredState}}",
    ]);
    assert_eq!(table, "NAME    DESIRED STATE\nweb.1   RUNNING\nweb.2   RUNNING\n");
    assert_eq!(
        d.ok(&["node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}"]),
        "m1 Ready Leader\n"
    );

    // Sizes for people: an image in decimal units, memory in binary ones.
    let sizes = d.node.ok(&["image", "ls", "--format", "{{.Name}} {{.Size}}"]);
    let size =
        sizes.trim().strip_prefix("docker.io/shoal/busybox:latest ").unwrap_or_else(|| panic!("{sizes}"));
    let (number, unit) = size.split_at(size.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    assert!(
        ["B", "kB", "MB"].contains(&unit) && number.parse::<f64>().is_ok() && number.len() <= 4,
        "{sizes}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&d.node.ok(&["image", "ls", "--format", "json"])).unwrap();
    assert_eq!(json[0]["name"], "docker.io/shoal/busybox:latest", "{json}");
    let listed = d.node.ok(&["container", "ls", "--format", "{{.ID}} {{.Status}}"]);
    let container = listed
        .lines()
        .find_map(|l| l.split_once(" running since ").map(|(id, _)| id))
        .unwrap_or_else(|| panic!("no running container: {listed}"));
    assert!(d.node.ok(&["container", "ls", "-q"]).lines().any(|l| l == container), "{listed}");
    let stats = d.node.ok(&["container", "stats", container]);
    let row = stats.lines().nth(1).unwrap_or_default();
    assert!(stats.starts_with("ID") && stats.contains("MEM USAGE / LIMIT"), "{stats}");
    assert!(
        row.contains("iB / ") && row.split_whitespace().nth(3).is_some_and(|l| l.ends_with("iB")),
        "{stats}"
    );

    let err = d.fails(&["service", "ls", "--format", "{{.Nmae}}"]);
    assert!(err.contains("no field .Nmae") && err.contains(".Replicas"), "{err}");

    // --detach: the name and nothing else, while the rollout has not finished.
    let out = d.cli(&["service", "update", "web", "--env-add", "V=3", "--detach"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\n");
    let svc = block_on(d.client().service("web")).unwrap();
    assert_ne!(
        svc.update_status.map(|s| s.state),
        Some(shoal_api::service::UpdateState::Completed),
        "a rollout watches new tasks for 1 s: it cannot be over already"
    );

    // A failing update pauses: non-zero, with the failed task's error.
    let out =
        d.cli(&["service", "update", "web", "--args", "sh -c 'exit 1'", "--update-failure-action", "pause"]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    let errors: Vec<String> = tasks(&d).into_iter().filter_map(|t| t.status.error).collect();
    let last = shown.lines().last().unwrap_or("");
    assert!(last.starts_with("error: service update paused: task "), "{shown}");
    assert!(errors.iter().any(|e| last.ends_with(&format!(": {e})"))), "none of {errors:?} in:\n{shown}");
}
