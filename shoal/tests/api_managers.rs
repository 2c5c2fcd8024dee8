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

        // Demote the other follower too; the leader, last voter, cannot be demoted.
        let other = f1.client().node(&f2.name).await.unwrap();
        let mut spec = other.spec.clone();
        spec.role = NodeRole::Worker;
        f1.client().update_node(&f2.name, &NodeUpdate { version: other.meta.version, spec }).await.unwrap();
        let last = f2.client().node(&leader.name).await.unwrap();
        let mut spec = last.spec.clone();
        spec.role = NodeRole::Worker;
        let e = f2
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

        for f in [f1, f2] {
            let node = leader.client().node(&f.name).await.unwrap();
            let mut spec = node.spec.clone();
            spec.role = NodeRole::Manager;
            f.client().update_node(&f.name, &NodeUpdate { version: node.meta.version, spec }).await.unwrap();
        }
        let info = leader.client().cluster(ReadOptions { consistent: true }).await.unwrap();
        assert_eq!(info.managers.iter().filter(|m| m.voter).count(), 3);
        // Promoted managers take writes again.
        f1.client().create_service(&ServiceSpec::new("after", "shoal/busybox")).await.unwrap();

        // A manager cannot be removed while it votes.
        let e = f1.client().remove_node(&f2.name, true).await.unwrap_err();
        assert_eq!(e.status(), Some(409), "{e}");
        assert!(e.to_string().contains("demote it first"), "{e}");
    });
}
