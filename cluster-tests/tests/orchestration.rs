//! Orchestration across hosts (issue 6 on the harness): services spread over the
//! nodes; a drain moves tasks away and an activate takes them again; a worker whose
//! daemon dies is marked down and its tasks move; a global service follows joins;
//! rolling updates finish when the leader or a worker dies mid-way.

mod common;

use std::time::Duration;

use cluster_tests::{Cluster, Role, block_on, faults};
use common::*;
use shoal_api::ServiceMode;
use shoal_api::node::{Availability, NodeState};
use shoal_api::service::UpdateOrder;

#[test]
fn services_spread_drain_activate_and_survive_a_dead_worker() {
    let mut c = Cluster::builder().managers(1).workers(2).heartbeat(Duration::from_secs(1)).build();
    let client = c.client();
    block_on(client.create_service(&replicated("web", 6))).unwrap();
    let mut agent = replicated("agent", 1);
    agent.mode = ServiceMode::Global;
    block_on(client.create_service(&agent)).unwrap();

    let (spread, _) = placement_until(&c, "web", "2 web tasks per node", |p| {
        p.values().copied().collect::<Vec<_>>() == [2, 2, 2]
    });
    assert_eq!(spread.keys().collect::<Vec<_>>(), ["m1", "w1", "w2"]);
    placement_until(&c, "agent", "one global task per node", |p| p.len() == 3 && p.values().all(|n| *n == 1));
    let w1 = c.by_name("w1");
    assert_eq!(c.host(w1).running_task_containers().len(), 3, "w1 runs two web tasks and the agent");

    // Drain w1: its tasks move and its containers stop. Activate: it takes new ones.
    set_availability(&client, "w1", Availability::Drain);
    placement_until(&c, "web", "web off w1", |p| !p.contains_key("w1") && p.values().sum::<usize>() == 6);
    placement_until(&c, "agent", "agent off w1", |p| !p.contains_key("w1") && p.len() == 2);
    c.wait("w1's containers to stop", Duration::from_secs(30), |c| {
        c.host(w1).running_task_containers().is_empty()
    });
    set_availability(&client, "w1", Availability::Active);
    placement_until(&c, "agent", "agent back on w1", |p| p.len() == 3);
    block_on(client.scale_service("web", 9)).unwrap();
    placement_until(&c, "web", "the 3 new web tasks on w1", |p| p.get("w1") == Some(&3));

    // w2's daemon dies: after 3 s of silence w2 is down and its web tasks move.
    let w2 = c.by_name("w2");
    faults::kill(&mut c, w2);
    c.wait("w2 down", Duration::from_secs(30), |c| {
        block_on(c.client().node("w2")).is_ok_and(|n| n.status.state == NodeState::Down)
    });
    placement_until(&c, "web", "web off w2", |p| !p.contains_key("w2") && p.values().sum::<usize>() == 9);
    // Swarm keeps a global task on a down node: it comes back with the node.
    placement_until(&c, "agent", "agent on m1 and w1", |p| p.contains_key("m1") && p.contains_key("w1"));

    // w2 comes back: ready again, its stale web containers stopped, the agent runs.
    faults::restart(&mut c, w2);
    c.wait_ready(w2);
    placement_until(&c, "agent", "agent on every node", |p| p.len() == 3);
    c.wait("w2's stale web tasks to stop", Duration::from_secs(30), |c| {
        c.host(w2).running_task_containers().len() == 1
    });
    placement_until(&c, "web", "still 9 web tasks", |p| p.values().sum::<usize>() == 9);
}

#[test]
fn a_rolling_update_survives_the_leader_and_global_services_follow_joins() {
    let mut c = Cluster::builder().managers(3).heartbeat(Duration::from_secs(1)).build();
    let client = c.client();
    let mut agent = replicated("agent", 1);
    agent.mode = ServiceMode::Global;
    block_on(client.create_service(&agent)).unwrap();
    placement_until(&c, "agent", "one agent per manager", |p| p.len() == 3);
    c.join(Role::Worker, None);
    placement_until(&c, "agent", "an agent on the new worker too", |p| p.len() == 4);

    let mut web = replicated("web", 6);
    web.update_config.parallelism = 2;
    web.update_config.delay = Duration::from_secs(1);
    web.update_config.order = UpdateOrder::StartFirst;
    block_on(client.create_service(&web)).unwrap();
    placement_until(&c, "web", "6 web tasks", |p| p.values().sum::<usize>() == 6);

    // Start a rolling update, then kill the leader while it runs.
    let leader = c.wait_leader(Duration::from_secs(10));
    update_env(&client, "web", 2);
    c.wait("the update to get going", Duration::from_secs(30), |c| {
        running_per_node(&c.client(), "web")
            .is_some_and(|(_, tasks)| tasks.iter().any(|t| is_up(t) && t.spec.container.env == ["V=2"]))
    });
    faults::kill(&mut c, leader);
    // A new leader finishes it: six running tasks of the new spec, one per slot.
    update_completed(&c, "web", 6, 2, "after the leader died");
}

#[test]
fn a_rolling_update_finishes_when_a_worker_dies_mid_way() {
    let mut c = Cluster::builder().managers(1).workers(1).heartbeat(Duration::from_secs(1)).build();
    let client = c.client();
    let mut web = replicated("web", 6);
    web.update_config.parallelism = 1;
    web.update_config.delay = Duration::from_millis(500);
    block_on(client.create_service(&web)).unwrap();
    placement_until(&c, "web", "3 tasks per node", |p| p.values().copied().collect::<Vec<_>>() == [3, 3]);
    update_env(&client, "web", 2);
    c.wait("two updated tasks", Duration::from_secs(30), |c| {
        running_per_node(&c.client(), "web").is_some_and(|(_, tasks)| {
            tasks.iter().filter(|t| is_up(t) && t.spec.container.env == ["V=2"]).count() >= 2
        })
    });
    let w1 = c.by_name("w1");
    faults::kill(&mut c, w1);
    update_completed(&c, "web", 6, 2, "after the worker died");
}
