//! The API on a cluster of three managers: writes sent to followers are forwarded to
//! the leader, consistent reads on a follower see them at once, and role changes and
//! removals of managers go through Raft with its quorum guard.

mod support;

use shoal_api::ServiceSpec;
use shoal_api::client::ClientError;
use shoal_api::node::NodeRole;
use shoal_api::wire::{NodeUpdate, ReadOptions, ServiceFilter};
use support::daemons::{Daemon, block_on};

fn leader_and_followers<'a>(all: &'a [&'a Daemon]) -> (&'a Daemon, Vec<&'a Daemon>) {
    let info = block_on(all[0].client().cluster(ReadOptions { consistent: true })).unwrap();
    let leader_id = info.raft.leader.unwrap();
    let leader_addr = info.managers.iter().find(|m| m.raft_id == leader_id).unwrap().addr.clone();
    let leader = *all.iter().find(|d| d.addr == leader_addr).unwrap();
    (leader, all.iter().copied().filter(|d| d.addr != leader_addr).collect())
}

#[test]
fn followers_forward_writes_and_read_consistently() {
    let m1 = Daemon::init("m1");
    let m2 = Daemon::join("m2", &m1);
    let m3 = Daemon::join("m3", &m1);
    let all = [&m1, &m2, &m3];
    let (leader, followers) = leader_and_followers(&all);
    let (f1, f2) = (followers[0], followers[1]);

    block_on(async {
        let info = f1.client().cluster(ReadOptions::default()).await.unwrap();
        assert_eq!(info.managers.len(), 3);
        assert_eq!(info.managers.iter().filter(|m| m.leader).count(), 1);
        assert!(info.managers.iter().all(|m| m.voter && m.node_id.is_some()), "{:?}", info.managers);
        // A follower shows every manager's reachability, as the leader sees it.
        assert!(info.managers.iter().all(|m| m.reachable == Some(true)), "{:?}", info.managers);
        let nodes = f1.client().nodes(ReadOptions::default()).await.unwrap();
        for n in &nodes {
            let ms = n.manager_status.as_ref().expect("every node is a manager");
            assert_eq!(ms.reachability, shoal_api::node::Reachability::Reachable, "{n:?}");
        }

        // Each write through a follower, each read through the other one, consistent.
        for i in 0..10 {
            let name = format!("svc{i}");
            f1.client().create_service(&ServiceSpec::new(&name, "shoal/busybox")).await.unwrap();
            let filter = ServiceFilter { name: Some(name.clone()), consistent: true, ..Default::default() };
            let seen = f2.client().services(&filter).await.unwrap();
            assert_eq!(seen.len(), 1, "{name} is visible on the other follower at once");
        }
        let svc = f2.client().service("svc3").await.unwrap();
        let mut spec = svc.spec.clone();
        spec.task_template.container.image = "shoal/busybox:2".into();
        f2.client().update_service("svc3", svc.meta.version, &spec).await.unwrap();
        let stale = f1.client().update_service("svc3", svc.meta.version, &spec).await.unwrap_err();
        assert_eq!(stale.status(), Some(409), "{stale}");
        let leader_view = leader
            .client()
            .services(&ServiceFilter { consistent: true, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(leader_view.len(), 10);

        // Demote a follower through the other follower, then promote it back.
        let node = f2.client().node(&f1.name).await.unwrap();
        assert_eq!(node.spec.role, NodeRole::Manager);
        let mut spec = node.spec.clone();
        spec.role = NodeRole::Worker;
        f2.client().update_node(&f1.name, &NodeUpdate { version: node.meta.version, spec }).await.unwrap();
        let info = leader.client().cluster(ReadOptions { consistent: true }).await.unwrap();
        assert_eq!(info.managers.iter().filter(|m| m.voter).count(), 2, "{:?}", info.managers);
        // A demoted manager's certificate no longer counts: its writes are refused at
        // once, and it renews into a worker's certificate.
        let e = f1.client().create_service(&ServiceSpec::new("demoted", "shoal/busybox")).await.unwrap_err();
        assert_eq!(e.status(), Some(403), "{e}");
        let role_on_record = |name: String| {
            let c = leader.client();
            async move { c.node(&name).await.ok().and_then(|n| n.certificate).map(|c| c.role) }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while role_on_record(f1.name.clone()).await != Some(NodeRole::Worker) {
            assert!(std::time::Instant::now() < deadline, "f1 never renewed into a worker certificate");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        // Demote the other follower too; the leader, last voter, cannot be demoted.
        let other = leader.client().node(&f2.name).await.unwrap();
        let mut spec = other.spec.clone();
        spec.role = NodeRole::Worker;
        leader
            .client()
            .update_node(&f2.name, &NodeUpdate { version: other.meta.version, spec })
            .await
            .unwrap();
        let last = f2.client().node(&leader.name).await.unwrap();
        let mut spec = last.spec.clone();
        spec.role = NodeRole::Worker;
        let e = leader
            .client()
            .update_node(&leader.name, &NodeUpdate { version: last.meta.version, spec })
            .await
            .unwrap_err();
        let ClientError::Api { status, message, .. } = &e else { panic!("{e}") };
        assert_eq!(*status, 409, "{message}");
        assert!(message.contains("no majority"), "{message}");
        assert_eq!(
            leader.client().node(&leader.name).await.unwrap().spec.role,
            NodeRole::Manager,
            "nothing stored"
        );

        // Promotion goes through a manager; the promoted nodes renew into manager
        // certificates and take writes again.
        for f in [f1, f2] {
            let node = leader.client().node(&f.name).await.unwrap();
            let mut spec = node.spec.clone();
            spec.role = NodeRole::Manager;
            leader
                .client()
                .update_node(&f.name, &NodeUpdate { version: node.meta.version, spec })
                .await
                .unwrap();
        }
        let info = leader.client().cluster(ReadOptions { consistent: true }).await.unwrap();
        assert_eq!(info.managers.iter().filter(|m| m.voter).count(), 3);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match f1.client().create_service(&ServiceSpec::new("after", "shoal/busybox")).await {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert_eq!(e.status(), Some(403), "{e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the promoted manager never took writes: {e}"),
            }
        }
        assert_eq!(
            role_on_record(f1.name.clone()).await,
            Some(NodeRole::Manager),
            "promotion issued a manager certificate"
        );

        // A manager cannot be removed while it votes.
        let e = f1.client().remove_node(&f2.name, true).await.unwrap_err();
        assert_eq!(e.status(), Some(409), "{e}");
        assert!(e.to_string().contains("demote it first"), "{e}");
    });
}

#[test]
fn logs_stream_from_workers_through_a_follower() {
    use futures::StreamExt as _;
    use shoal_api::client::LogsOf;
    use shoal_api::wire::{LogQuery, TaskFilter};
    let m1 = Daemon::init("m1");
    let m2 = Daemon::join("m2", &m1);
    let m3 = Daemon::join("m3", &m1);
    for d in [&m1, &m2, &m3] {
        d.import_busybox();
    }
    let all = [&m1, &m2, &m3];
    let (_, followers) = leader_and_followers(&all);
    let f = followers[0];
    let c = f.client();
    let mut spec = ServiceSpec::new("talker", "shoal/busybox");
    spec.mode = shoal_api::ServiceMode::Replicated { replicas: 3 };
    spec.task_template.container.args = [
        "sh",
        "-c",
        "trap 'exit 0' TERM; i=0; while true; do echo line $i; echo oops $i >&2; i=$((i+1)); sleep 0.1; done",
    ]
    .map(String::from)
    .to_vec();
    block_on(c.create_service(&spec)).unwrap();
    let filter = TaskFilter { service: Some("talker".into()), ..Default::default() };
    let running = || -> Vec<shoal_api::Task> {
        block_on(c.tasks(&filter))
            .map(|ts| ts.into_iter().filter(|t| t.status.state == shoal_api::TaskState::Running).collect())
            .unwrap_or_default()
    };
    support::wait_for("3 running tasks", std::time::Duration::from_secs(60), || running().len() == 3);
    // The three replicas run on three nodes, one each.
    let tasks = running();
    let nodes: std::collections::BTreeSet<_> = tasks.iter().map(|t| t.node_id.clone()).collect();
    assert_eq!(nodes.len(), 3, "one task on each of the three nodes: {nodes:?}");
    assert!(nodes.iter().all(Option::is_some), "{nodes:?}");
    let task_ids: std::collections::BTreeSet<String> = tasks.iter().map(|t| t.id.clone()).collect();
    block_on(async {
        // Everything so far, from every task (on three nodes), then the end. Read again
        // until every task has written to both streams.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let mut stream = c.logs(LogsOf::Service, "talker", &LogQuery::default()).await.unwrap();
            let mut tasks = std::collections::BTreeSet::new();
            let mut streams = std::collections::BTreeSet::new();
            let mut count = 0;
            while let Some(r) =
                tokio::time::timeout(std::time::Duration::from_secs(20), stream.next()).await.unwrap()
            {
                let r = r.unwrap();
                assert!(r.error.is_none(), "{r:?}");
                tasks.insert(r.task_id.clone());
                streams.insert(r.stream.clone());
                count += 1;
            }
            let streams: Vec<_> = streams.into_iter().collect();
            if tasks == task_ids && streams == ["stderr", "stdout"] && count >= 6 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lines from every task on both streams: tasks {tasks:?} of {task_ids:?}, streams {streams:?}, {count} lines"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        // Followed: new lines keep coming, numbered past what was there.
        let query = LogQuery { follow: true, tail: Some(1), since: None };
        let mut stream = c.logs(LogsOf::Service, "talker", &query).await.unwrap();
        let mut seen = 0;
        while seen < 30 {
            let r = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(r.line.starts_with("line ") || r.line.starts_with("oops "), "{r:?}");
            seen += 1;
        }
    });
    // The CLI, with Docker's prefix.
    // The last two records of each task hold one stdout line (the other went to
    // stderr, as the task wrote it).
    let out = f.ok(&["service", "logs", "talker", "--tail", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "one stdout line of each task: {out}");
    assert!(
        lines.iter().all(|l| l.starts_with("talker.") && l.contains('@') && l.contains("| line ")),
        "{out}"
    );
    block_on(c.remove_service("talker")).unwrap();
}
