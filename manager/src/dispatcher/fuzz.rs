//! What a worker can send the dispatcher, fuzzed (issue 17, item 7): batches of task
//! status reports with garbage JSON, unknown task ids, other nodes' tasks, states
//! that go backwards or that only the manager sets, huge strings. Each batch goes
//! through the dispatcher's own steps (`status::parse`, `changes`, `groups`) into a
//! store built by the test fixtures; every transaction must fit the Raft log's limit
//! and apply, and nothing but the reporting node's own tasks may move, and only
//! forward. Log lines published for unknown subscriptions are dropped.
//!
//! CI runs a few cases (`PROPTEST_CASES` overrides, see `scripts/fuzz`); failures are
//! kept in `src/dispatcher/fuzz.proptest-regressions` and replayed first.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use shoal_api::{Task, TaskState, TaskStatus};
use shoal_proto::dispatcher as pb;

use super::status::{self, MAX_STATUS_TEXT};
use crate::orchestrator::{create, new_task};
use crate::raft::proposal::Proposal;
use crate::store::{Kind, Store, Transaction};
use crate::testing::*;

use crate::fuzz_support;

/// n1 and n2, a service, and tasks: two of n1's (running, assigned), one finished on
/// n1, one on n2, one not placed.
fn fixture() -> (Store, Vec<String>) {
    let svc = service("web", |_| {});
    let mut store = store_with(vec![node("n1", &[]), node("n2", &[])], vec![svc.clone()]);
    let mut ids = Vec::new();
    for (slot, node, state) in [
        (1, Some("n1"), TaskState::Running),
        (2, Some("n1"), TaskState::Assigned),
        (3, Some("n1"), TaskState::Failed),
        (4, Some("n2"), TaskState::Running),
        (5, None, TaskState::Pending),
    ] {
        let mut t = new_task(&svc, Some(slot), node, t0());
        t.status.state = state;
        ids.push(t.id.clone());
        apply(&mut store, vec![create(t)]);
    }
    (store, ids)
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just(t0()),
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        (-(1i64 << 40)..(1i64 << 40)).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or(t0())),
    ]
}

/// Text of a size that matters: none, some, just over the cap, far over the
/// transaction limit; made of multi-byte characters so a cut can land inside one.
fn long_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => Just(0usize), 8 => 0..64usize, 2 => Just(MAX_STATUS_TEXT + 1), 1 => Just(1 << 21)],
        any::<bool>(),
    )
        .prop_map(|(n, wide)| if wide { "é".repeat(n / 2 + 1) } else { "x".repeat(n) })
}

fn status() -> impl Strategy<Value = TaskStatus> {
    let container = prop_oneof![
        Just(None),
        Just(Some("c".repeat(64))),
        Just(Some("c".repeat(129))),
        Just(Some("c".repeat(100_000)))
    ];
    (
        proptest::sample::select(TaskState::ALL.to_vec()),
        timestamp(),
        long_text(),
        proptest::option::of(long_text()),
        container,
        any::<Option<i32>>(),
        proptest::option::of(timestamp()),
    )
        .prop_map(|(state, timestamp, message, error, container_id, exit_code, started_at)| TaskStatus {
            state,
            timestamp,
            message,
            error,
            container_id,
            exit_code,
            started_at,
        })
}

/// One report: a task id (its own, another node's, unknown, huge) and a status as
/// JSON, as JSON with random changes, or as garbage.
fn update(ids: Vec<String>) -> impl Strategy<Value = pb::TaskStatusUpdate> {
    let mut pool = ids;
    pool.extend(["nope".to_owned(), String::new(), "x".repeat(100_000)]);
    let body = prop_oneof![
        12 => status().prop_map(|s| serde_json::to_vec(&s).unwrap()),
        2 => (status(), fuzz_support::ops()).prop_map(|(s, ops)| {
            serde_json::to_vec(&fuzz_support::mutate(serde_json::to_value(&s).unwrap(), &ops)).unwrap()
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ];
    (proptest::sample::select(pool), body)
        .prop_map(|(task_id, status_json)| pb::TaskStatusUpdate { task_id, status_json })
}

fn tasks_by_id(store: &Store) -> std::collections::BTreeMap<String, Task> {
    tasks(store).into_iter().map(|t| (t.id.clone(), t)).collect()
}

/// Runs one batch from n1 the way `status::apply` does, without Raft.
fn run_batch(store: &mut Store, updates: &[pb::TaskStatusUpdate]) -> Result<(), TestCaseError> {
    let before = tasks_by_id(store);
    let others = |s: &Store| {
        (
            s.get(Kind::Service, "svc-web").cloned(),
            s.get(Kind::Node, "n1").cloned(),
            s.get(Kind::Node, "n2").cloned(),
        )
    };
    let others_before = others(store);
    let Ok(parsed) = status::parse(updates) else { return Ok(()) };
    for (_, s) in &parsed {
        prop_assert!(s.message.len() <= MAX_STATUS_TEXT);
        prop_assert!(s.error.as_ref().is_none_or(|e| e.len() <= MAX_STATUS_TEXT));
    }
    let first = status::changes(store, "n1", &parsed);
    for group in status::groups(&first, &parsed) {
        let changes = status::changes(store, "n1", &group);
        if changes.is_empty() {
            continue;
        }
        let tx = Transaction { changes };
        prop_assert!(Proposal::new(tx.clone()).is_ok(), "a transaction the log refuses");
        let index = store.last_index() + 1;
        let applied = store.apply(index, tx);
        prop_assert!(applied.is_ok(), "the store refused the batch: {:?}", applied.err());
    }
    let after = tasks_by_id(store);
    prop_assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    for (id, old) in &before {
        let new = &after[id];
        if old.node_id.as_deref() != Some("n1") {
            prop_assert_eq!(old, new, "another node's task or an unplaced one moved");
        } else {
            prop_assert!(new.status.state >= old.status.state, "{id} went back");
            prop_assert!(
                !matches!(
                    new.status.state,
                    TaskState::Remove | TaskState::Orphaned | TaskState::New | TaskState::Pending
                ),
                "{id} took a state only the manager sets"
            );
            prop_assert_eq!(&old.spec, &new.spec);
            prop_assert_eq!(&old.desired_state, &new.desired_state);
        }
    }
    prop_assert_eq!(others_before, others(store), "a report changed something that is not a task");
    // What the leader's controllers then compute from the reports must not fail them.
    for t in after.values() {
        crate::orchestrator::restart::decide(t, &[], false, t0());
    }
    Ok(())
}

#[test]
fn status_batches_never_corrupt_the_store() {
    let (_, ids) = fixture();
    let strategy = proptest::collection::vec(proptest::collection::vec(update(ids), 0..6), 1..4);
    let mut runner = TestRunner::new(fuzz_support::config(file!(), 48));
    runner
        .run(&strategy, |batches| {
            let (mut store, _) = fixture();
            for batch in &batches {
                run_batch(&mut store, batch)?;
            }
            Ok(())
        })
        .unwrap();
}

/// Found by `status_batches_never_corrupt_the_store`: a report whose message was
/// megabytes long made a transaction over the log's limit, refused every time the
/// worker sent it again, so none of its tasks' statuses ever moved.
#[test]
fn long_messages_are_cut_to_fit() {
    let (mut store, ids) = fixture();
    let mut s = TaskStatus::new(TaskState::Failed, t0(), "é".repeat(1 << 20));
    s.error = Some("x".repeat(1 << 21));
    let update =
        pb::TaskStatusUpdate { task_id: ids[0].clone(), status_json: serde_json::to_vec(&s).unwrap() };
    let parsed = status::parse(std::slice::from_ref(&update)).unwrap();
    assert!(parsed[0].1.message.len() <= MAX_STATUS_TEXT && parsed[0].1.message.ends_with(" […]"));
    assert!(parsed[0].1.error.as_ref().unwrap().len() <= MAX_STATUS_TEXT);
    run_batch(&mut store, &[update]).unwrap();
    let t = tasks_by_id(&store).remove(&ids[0]).unwrap();
    assert_eq!(t.status.state, TaskState::Failed);
    let long =
        TaskStatus { container_id: Some("c".repeat(200)), ..TaskStatus::new(TaskState::Running, t0(), "") };
    let bad =
        pb::TaskStatusUpdate { task_id: ids[1].clone(), status_json: serde_json::to_vec(&long).unwrap() };
    assert_eq!(status::parse(&[bad]).unwrap_err().code(), tonic::Code::InvalidArgument);
}

/// Found by `status_batches_never_corrupt_the_store`: a worker could put its own
/// task in `orphaned` or `remove`, states the manager alone sets (and that free the
/// task's resources).
#[test]
fn states_only_the_manager_sets_are_ignored() {
    let (store, ids) = fixture();
    for state in [TaskState::Remove, TaskState::Orphaned] {
        let report = (ids[0].clone(), TaskStatus::new(state, t0(), "mine now"));
        assert!(status::changes(&store, "n1", &[report]).is_empty(), "{state:?} accepted");
    }
}

/// A batch whose changes would not fit one transaction is split into several that do.
#[test]
fn large_batches_are_split() {
    let svc = service("web", |_| {});
    let mut store = store_with(vec![node("n1", &[])], vec![svc.clone()]);
    let mut updates = Vec::new();
    for slot in 0..600 {
        let mut t = new_task(&svc, Some(slot), Some("n1"), t0());
        t.status.state = TaskState::Running;
        let s = TaskStatus::new(TaskState::Failed, t0(), "m".repeat(MAX_STATUS_TEXT));
        updates.push((t.id.clone(), s));
        apply(&mut store, vec![create(t)]);
    }
    let first = status::changes(&store, "n1", &updates);
    assert!(Proposal::new(Transaction { changes: first.clone() }).is_err(), "the batch is too large as one");
    let groups = status::groups(&first, &updates);
    assert!(groups.len() > 1);
    assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), updates.len());
    for g in &groups {
        assert!(Proposal::new(Transaction { changes: status::changes(&store, "n1", g) }).is_ok());
    }
}

/// Found while adding the restart policy to `status_batches_never_corrupt_the_store`'s
/// checks: a worker reporting a failure at the end of chrono's calendar (which JSON
/// carries, `+262142-12-31T…`) made the leader's restart policy overflow adding its
/// delay, a panic in the orchestrator. Timestamps outside years 1970-9999 are refused,
/// and the controllers add durations with a check.
#[test]
fn timestamps_off_the_calendar_are_refused() {
    let (_, ids) = fixture();
    for at in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC, DateTime::from_timestamp(-1, 0).unwrap()] {
        let s = TaskStatus::new(TaskState::Failed, at, "");
        let update =
            pb::TaskStatusUpdate { task_id: ids[0].clone(), status_json: serde_json::to_vec(&s).unwrap() };
        let e = status::parse(&[update]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{at}");
        assert!(e.message().contains("timestamp"), "{e}");
    }
    // And the restart policy itself never overflows, whatever the store holds.
    let (store, ids) = fixture();
    let mut t = tasks_by_id(&store).remove(&ids[2]).unwrap();
    t.status.timestamp = DateTime::<Utc>::MAX_UTC;
    let _ = crate::orchestrator::restart::decide(&t, &[], false, t0());
}

/// Log lines from a worker for a subscription nobody holds are dropped.
#[test]
fn logs_for_unknown_subscriptions_are_dropped() {
    let strategy = (".{0,40}", ".{0,40}", proptest::collection::vec(any::<Vec<u8>>(), 0..4), any::<bool>());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let broker = super::logs::LogBroker::default();
    let mut runner = TestRunner::new(fuzz_support::config(file!(), 32));
    runner
        .run(&strategy, |(subscription_id, task_id, lines, done)| {
            let lines = lines
                .into_iter()
                .map(|line| pb::LogLine { timestamp_unix_nanos: i64::MIN, stream: 99, line })
                .collect();
            let msg = pb::PublishLogsMessage { subscription_id, task_id, lines, done, error: "x".repeat(10) };
            rt.block_on(broker.publish(msg));
            Ok(())
        })
        .unwrap();
}
