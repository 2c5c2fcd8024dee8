//! Reconcile passes on the fake node: assignments in, calls on the node and status
//! reports out. No root, no containers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shoal_api::{Task, TaskState, TaskStatus};
use shoal_proto::dispatcher as pb;

use super::fake::{Call, FakeNode};
use super::plan::Local;
use super::reconciler::Reconciler;

/// A task of service `s` on node `n`, assigned, running busybox.
pub(crate) fn task(id: &str, desired: TaskState) -> Task {
    let now = Utc::now();
    Task {
        id: id.into(),
        meta: shoal_api::Meta::new(now),
        service_id: "s".into(),
        slot: Some(1),
        node_id: Some("n".into()),
        spec: shoal_api::TaskSpec {
            container: shoal_api::ContainerSpec::for_image("busybox"),
            resources: Default::default(),
            restart_policy: Default::default(),
            placement: Default::default(),
            networks: Vec::new(),
            force_update: 0,
        },
        spec_version: 1,
        desired_state: desired,
        status: TaskStatus::new(TaskState::Assigned, now, ""),
        networks: Vec::new(),
        job_iteration: None,
    }
}

fn change(remove: bool, item: pb::assignment_change::Item) -> pb::AssignmentChange {
    use pb::assignment_change::Action;
    let action = if remove { Action::Remove } else { Action::Update };
    pb::AssignmentChange { action: action as i32, item: Some(item) }
}

fn task_json(t: &Task) -> pb::assignment_change::Item {
    pb::assignment_change::Item::TaskJson(serde_json::to_vec(t).unwrap())
}

fn message(complete: bool, changes: Vec<pb::AssignmentChange>) -> pb::AssignmentsMessage {
    use pb::assignments_message::Kind;
    let kind = if complete { Kind::Complete } else { Kind::Incremental };
    pb::AssignmentsMessage { kind: kind as i32, applies_to: 0, results_in: 0, changes }
}

/// A complete list of these tasks.
fn complete(tasks: &[Task]) -> pb::AssignmentsMessage {
    message(true, tasks.iter().map(|t| change(false, task_json(t))).collect())
}

fn running(id: &str) -> Task {
    task(id, TaskState::Running)
}

fn exited(code: i32) -> Local {
    Local::Exited { code: Some(code), signal: None, oom_killed: false, at: Utc::now() }
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// One case: containers on the node before, failures set up, then each message
/// applied and followed by passes until the node is quiet.
struct Case {
    name: &'static str,
    containers: Vec<(&'static str, Local)>,
    setup: fn(&FakeNode),
    steps: Vec<pb::AssignmentsMessage>,
    calls: Vec<Call>,
    /// Task id, state, and a piece of the error (empty: no error).
    reports: Vec<(&'static str, TaskState, &'static str)>,
    /// Containers on the node after.
    after: Vec<String>,
}

fn nothing(_: &FakeNode) {}

fn cases() -> Vec<Case> {
    use Call::*;
    vec![
        Case {
            name: "a new task is started and reported running",
            containers: vec![],
            setup: nothing,
            steps: vec![complete(&[running("t1")])],
            calls: vec![Prepare("t1".into()), Start("t1".into())],
            reports: vec![("t1", TaskState::Running, "")],
            after: ids(&["t1"]),
        },
        Case {
            name: "a removed assignment's container is removed",
            containers: vec![("t1", Local::Running)],
            setup: nothing,
            steps: vec![
                complete(&[running("t1")]),
                message(false, vec![change(true, task_json(&running("t1")))]),
            ],
            calls: vec![Remove("t1".into())],
            reports: vec![("t1", TaskState::Running, "")],
            after: vec![],
        },
        Case {
            name: "a task to shut down is stopped and reported shut down",
            containers: vec![("t1", Local::Running)],
            setup: nothing,
            steps: vec![complete(&[task("t1", TaskState::Shutdown)])],
            calls: vec![Stop("t1".into())],
            reports: vec![("t1", TaskState::Shutdown, "")],
            after: ids(&["t1"]),
        },
        Case {
            name: "before the first complete list, unassigned containers are left alone",
            containers: vec![("old", Local::Running)],
            setup: nothing,
            steps: vec![message(false, vec![change(false, task_json(&running("t1")))])],
            calls: vec![Prepare("t1".into()), Start("t1".into())],
            reports: vec![("t1", TaskState::Running, "")],
            after: ids(&["old", "t1"]),
        },
        Case {
            name: "after the first complete list, unassigned containers are removed",
            containers: vec![("old", Local::Running)],
            setup: nothing,
            steps: vec![
                message(false, vec![change(false, task_json(&running("t1")))]),
                complete(&[running("t1")]),
            ],
            calls: vec![Prepare("t1".into()), Start("t1".into()), Remove("old".into())],
            reports: vec![("t1", TaskState::Running, "")],
            after: ids(&["t1"]),
        },
        Case {
            name: "a task that cannot be decoded is rejected with the reason",
            containers: vec![],
            setup: nothing,
            steps: vec![message(
                true,
                vec![
                    change(false, pb::assignment_change::Item::TaskJson(br#"{"id":"t9","spec":7}"#.to_vec())),
                    change(false, task_json(&running("t1"))),
                ],
            )],
            calls: vec![Prepare("t1".into()), Start("t1".into())],
            reports: vec![
                ("t1", TaskState::Running, ""),
                ("t9", TaskState::Rejected, "upgrade the worker to the managers' version: invalid type"),
            ],
            after: ids(&["t1"]),
        },
        Case {
            name: "a failed start is reported failed with the error",
            containers: vec![],
            setup: |n| n.refuse_start("t1", "no space left on device"),
            steps: vec![complete(&[running("t1")])],
            calls: vec![Prepare("t1".into()), Start("t1".into())],
            reports: vec![("t1", TaskState::Failed, "refused to start task t1: no space left on device")],
            after: vec![],
        },
        Case {
            name: "a task whose image is missing is rejected",
            containers: vec![],
            setup: |n| n.missing_image("busybox"),
            steps: vec![complete(&[running("t1")])],
            calls: vec![Prepare("t1".into())],
            reports: vec![("t1", TaskState::Rejected, "image busybox is not on this fake node")],
            after: vec![],
        },
        Case {
            name: "a container that exited fails its task",
            containers: vec![("t1", exited(3))],
            setup: nothing,
            steps: vec![complete(&[running("t1")])],
            calls: vec![],
            reports: vec![("t1", TaskState::Failed, "task: non-zero exit (3)")],
            after: ids(&["t1"]),
        },
    ]
}

#[tokio::test]
async fn reconcile_passes() {
    let mut failed = Vec::new();
    for case in cases() {
        let node = Arc::new(FakeNode::default());
        for (id, local) in &case.containers {
            node.set(id, local.clone());
        }
        (case.setup)(&node);
        let (mut r, _handle) = Reconciler::new(node.clone());
        for msg in case.steps {
            r.apply(msg);
            // Until quiet: an action's end may call for another pass.
            for _ in 0..3 {
                r.pass().await;
                r.settle().await;
            }
        }
        let reports: Vec<(String, TaskState, String)> = r
            .state()
            .outbox
            .iter()
            .map(|(id, s)| (id.clone(), s.state, s.error.clone().unwrap_or_default()))
            .collect();
        let want_reports = case.reports.len() == reports.len()
            && case.reports.iter().zip(&reports).all(|((id, state, error), (gid, gstate, gerror))| {
                id == gid
                    && state == gstate
                    && (error.is_empty() == gerror.is_empty())
                    && gerror.contains(error)
            });
        let after: Vec<String> = ["old", "t1", "t9"]
            .into_iter()
            .filter(|id| node.container(id) != Local::Absent)
            .map(str::to_owned)
            .collect();
        if node.calls() != case.calls || !want_reports || after != case.after {
            failed.push(format!(
                "{}:\n  calls {:?}, want {:?}\n  reports {reports:?}, want {:?}\n  containers {after:?}, want {:?}",
                case.name,
                node.calls(),
                case.calls,
                case.reports,
                case.after
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[tokio::test]
async fn a_start_gets_the_payloads_sent_with_its_task() {
    let node = Arc::new(FakeNode::default());
    let (mut r, _handle) = Reconciler::new(node.clone());
    let mut t = running("t1");
    t.spec.container.secrets = vec![shoal_api::task_spec::FileReference::new("pw")];
    let payload =
        pb::Payload { kind: "secret".into(), id: "s1".into(), name: "pw".into(), data: b"hunter2".to_vec() };
    r.apply(message(
        true,
        vec![change(false, task_json(&t)), change(false, pb::assignment_change::Item::Payload(payload))],
    ));
    r.pass().await;
    r.settle().await;
    let payloads = node.started_with("t1").expect("started");
    assert_eq!(payloads.get("secret/pw").map(|p| p.data.as_slice()), Some(&b"hunter2"[..]));
    assert_eq!(payloads.get("secret/s1").map(|p| p.name.as_str()), Some("pw"));
}

/// The running loop, through the session's handle: assignments in, reports out.
#[tokio::test]
async fn the_loop_reports_through_the_handle() {
    let node = Arc::new(FakeNode::default());
    let (r, mut handle) = Reconciler::new(node.clone());
    let looping = tokio::spawn(r.run());
    handle.assignments(complete(&[running("t1")]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while last != Some(TaskState::Running) {
        tokio::time::timeout_at(deadline, handle.reports_queued()).await.expect("reports in time");
        if let Some(s) = handle.take_reports().await.remove("t1") {
            last = Some(s.state);
        }
    }
    // Reports given back are offered again.
    let mut back = std::collections::BTreeMap::new();
    back.insert("t1".to_owned(), TaskStatus::new(TaskState::Running, Utc::now(), "started"));
    handle.unsent(back);
    tokio::time::timeout_at(deadline, handle.reports_queued()).await.expect("offered again");
    assert_eq!(handle.take_reports().await.get("t1").map(|s| s.state), Some(TaskState::Running));
    looping.abort();
}

/// A task whose health check fails is reported FAILED and its container stopped.
#[tokio::test]
async fn an_unhealthy_task_fails_and_is_stopped() {
    let node = Arc::new(FakeNode::default());
    node.set_unhealthy("t1", Some("exit 1"));
    let (r, mut handle) = Reconciler::new(node.clone());
    let looping = tokio::spawn(r.run());
    let mut t = running("t1");
    t.spec.container.healthcheck = Some(shoal_api::task_spec::HealthCheck {
        interval: Duration::from_millis(20),
        retries: 2,
        ..shoal_api::task_spec::HealthCheck::new(vec!["CMD".into(), "false".into()])
    });
    handle.assignments(complete(&[t]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.iter().any(|s: &TaskStatus| s.state == TaskState::Failed) {
        tokio::time::timeout_at(deadline, handle.reports_queued()).await.expect("reports in time");
        seen.extend(handle.take_reports().await.remove("t1"));
    }
    let failed = seen.last().unwrap();
    assert_eq!(failed.error.as_deref(), Some("task: unhealthy container: exit 1"));
    assert!(!seen.iter().any(|s| s.state == TaskState::Running), "never healthy: {seen:?}");
    // The stop follows the report.
    while !node.calls().contains(&Call::Stop("t1".into())) {
        assert!(tokio::time::Instant::now() < deadline, "stopped in time: {:?}", node.calls());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.calls().iter().filter(|c| matches!(c, Call::CheckHealth(_))).count(), 2);
    looping.abort();
}

#[tokio::test]
async fn the_network_map_reaches_the_node_with_the_tasks_and_goes_with_a_removal() {
    use shoal_api::netmap::{ClusterNet, NetItem};
    let node = Arc::new(FakeNode::default());
    let (mut r, _handle) = Reconciler::new(node.clone());
    let item = NetItem::Cluster(ClusterNet { data_path_port: 4789, keys: Default::default() });
    let net = pb::assignment_change::Item::NetItemJson(serde_json::to_vec(&item).unwrap());
    r.apply(message(true, vec![change(false, task_json(&running("t1"))), change(false, net)]));
    r.pass().await;
    r.settle().await;
    let (items, tasks) = node.network();
    assert_eq!((items.get("cluster"), tasks), (Some(&item), ids(&["t1"])));
    r.apply(message(false, vec![change(true, pb::assignment_change::Item::NetKey("cluster".into()))]));
    r.pass().await;
    assert!(node.network().0.is_empty(), "the removed item is gone from what the node holds");
}
