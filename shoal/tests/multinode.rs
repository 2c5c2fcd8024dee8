//! Orchestration across hosts: a manager and two workers, each in a network namespace
//! of its own, joined with tokens. Services spread over the nodes; a drain moves
//! tasks away; a worker whose daemon dies is marked down and its tasks move; a worker
//! daemon restarted within the grace period keeps its containers.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shoal_api::client::Client;
use shoal_api::node::{Availability, NodeState};
use shoal_api::wire::{ClusterUpdate, NodeUpdate, ReadOptions, TaskFilter};
use shoal_api::{ServiceMode, ServiceSpec, Task, TaskState};
use support::daemons::{Daemon, block_on};
use support::netns::Net;

fn serve_forever() -> Vec<String> {
    ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"].map(String::from).to_vec()
}

/// Running tasks of `service` per node hostname, polled until `cond` holds.
fn placement_until(
    c: &Client,
    service: &str,
    what: &str,
    cond: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> (BTreeMap<String, usize>, Vec<Task>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (per_node, tasks) = block_on(async {
            let nodes = c.nodes(ReadOptions::default()).await.unwrap();
            let filter = TaskFilter { service: Some(service.into()), ..Default::default() };
            let tasks = c.tasks(&filter).await.unwrap();
            let mut per_node = BTreeMap::new();
            for t in tasks
                .iter()
                .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
            {
                let host = nodes
                    .iter()
                    .find(|n| Some(&n.id) == t.node_id.as_ref())
                    .map(|n| n.description.hostname.clone());
                *per_node.entry(host.unwrap_or_default()).or_default() += 1;
            }
            (per_node, tasks)
        });
        if cond(&per_node) {
            return (per_node, tasks);
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {per_node:?}\n{tasks:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fast failure detection for a test: 1 s heartbeats, a node down after 3 s.
fn fast_heartbeats(c: &Client) {
    block_on(async {
        let info = c.cluster(ReadOptions::default()).await.unwrap();
        let mut spec = info.spec.clone();
        spec.dispatcher.heartbeat_period = Duration::from_secs(1);
        c.update_cluster(&ClusterUpdate { version: info.meta.version, spec }).await.unwrap();
    });
}

/// Waits until `at_least` tasks of `web` run with the updated spec (env `V=2`).
fn new_spec_running(c: &Client, at_least: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tasks =
            block_on(c.tasks(&TaskFilter { service: Some("web".into()), ..Default::default() })).unwrap();
        let n = tasks
            .iter()
            .filter(|t| t.spec.container.env == ["V=2"] && t.status.state == TaskState::Running)
            .count();
        if n >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `web`'s update completed with six running tasks of the new spec, one
/// per slot. Calls may fail for a while (a leader election): they are retried.
fn update_completed(c: &Client, when: &str) {
    use shoal_api::service::UpdateState;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let answer = block_on(async {
            let svc = c.service("web").await.ok()?;
            let tasks =
                c.tasks(&TaskFilter { service: Some("web".into()), ..Default::default() }).await.ok()?;
            Some((svc, tasks))
        });
        if let Some((svc, tasks)) = answer {
            let running: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.desired_state == TaskState::Running && t.status.state == TaskState::Running)
                .collect();
            let mut slots: Vec<u64> = running.iter().filter_map(|t| t.slot).collect();
            slots.sort();
            if svc.update_status.as_ref().map(|u| u.state) == Some(UpdateState::Completed)
                && slots == [1, 2, 3, 4, 5, 6]
                && running.iter().all(|t| t.spec.container.env == ["V=2"])
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no complete update {when}: {:?} {slots:?}",
                svc.update_status
            );
        } else {
            assert!(Instant::now() < deadline, "no answer from the managers {when}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn set_availability(c: &Client, node: &str, availability: Availability) {
    block_on(async {
        let n = c.node(node).await.unwrap();
        let mut spec = n.spec.clone();
        spec.availability = availability;
        c.update_node(node, &NodeUpdate { version: n.meta.version, spec }).await.unwrap();
    });
}

fn task_containers(d: &Daemon) -> usize {
    let out = d.node.ok(&["container", "ls"]);
    out.lines().filter(|l| l.starts_with("task.") && l.contains("running")).count()
}

#[test]
fn services_spread_drain_and_survive_a_dead_worker() {
    let mut net = Net::new();
    let m1 = Daemon::init_in(net.host(1), "m1");
    let c = m1.client();
    fast_heartbeats(&c);
    let w1 = Daemon::worker_in(net.host(2), "w1", &m1);
    let mut w2 = Daemon::worker_in(net.host(3), "w2", &m1);
    for d in [&m1, &w1, &w2] {
        d.import_busybox();
    }
    let nodes = block_on(c.nodes(ReadOptions::default())).unwrap();
    assert_eq!(nodes.iter().map(|n| n.description.hostname.as_str()).collect::<Vec<_>>(), ["m1", "w1", "w2"]);
    assert!(nodes.iter().all(|n| n.status.state == NodeState::Ready), "{nodes:#?}");

    let mut web = ServiceSpec::new("web", "shoal/busybox");
    web.mode = ServiceMode::Replicated { replicas: 6 };
    web.task_template.container.args = serve_forever();
    web.task_template.restart_policy.delay = Duration::from_millis(200);
    block_on(c.create_service(&web)).unwrap();
    let mut agent = ServiceSpec::new("agent", "shoal/busybox");
    agent.mode = ServiceMode::Global;
    agent.task_template.container.args = serve_forever();
    block_on(c.create_service(&agent)).unwrap();

    let (spread, _) = placement_until(&c, "web", "2 tasks per node", |p| {
        p.values().copied().collect::<Vec<_>>() == [2, 2, 2]
    });
    assert_eq!(spread.keys().collect::<Vec<_>>(), ["m1", "w1", "w2"]);
    placement_until(&c, "agent", "one global task per node", |p| p.len() == 3 && p.values().all(|n| *n == 1));
    assert_eq!(task_containers(&w1), 2 + 1, "w1 runs its two web tasks and the agent");

    // Drain w1: its tasks move to the others and its containers stop.
    set_availability(&c, "w1", Availability::Drain);
    placement_until(&c, "web", "web off w1", |p| !p.contains_key("w1") && p.values().sum::<usize>() == 6);
    placement_until(&c, "agent", "agent off w1", |p| !p.contains_key("w1") && p.len() == 2);
    support::wait_for("w1's containers stopped", Duration::from_secs(30), || task_containers(&w1) == 0);
    set_availability(&c, "w1", Availability::Active);
    placement_until(&c, "agent", "agent back on w1", |p| p.len() == 3);

    // w2's daemon dies: after 3 s of silence w2 is down and its web tasks move.
    let (before, _) = placement_until(&c, "web", "web on w2", |p| p.get("w2").copied().unwrap_or(0) > 0);
    let on_w2 = before["w2"];
    w2.kill();
    support::wait_for("w2 down", Duration::from_secs(30), || {
        block_on(c.node("w2")).is_ok_and(|n| n.status.state == NodeState::Down)
    });
    placement_until(&c, "web", "web off w2", |p| !p.contains_key("w2") && p.values().sum::<usize>() == 6);
    assert!(on_w2 > 0);
    // Swarm keeps a global task on a down node: it comes back with the node.
    placement_until(&c, "agent", "agent on m1 and w1", |p| p.contains_key("m1") && p.contains_key("w1"));

    // w2 comes back: ready again, its stale web containers stopped, the agent runs.
    w2.start(&[]);
    w2.wait_ready(&m1);
    placement_until(&c, "agent", "agent on every node", |p| p.len() == 3);
    support::wait_for("w2's stale web tasks stopped", Duration::from_secs(30), || task_containers(&w2) == 1);
    placement_until(&c, "web", "still 6 web tasks", |p| p.values().sum::<usize>() == 6);

    // w1's daemon restarts quickly: its containers keep running, the same tasks.
    let (_, tasks) = placement_until(&c, "web", "web on w1", |p| p.get("w1").copied().unwrap_or(0) > 0);
    let w1_id = block_on(c.node("w1")).unwrap().id;
    let kept: Vec<String> = tasks
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(w1_id.as_str()) && t.status.state == TaskState::Running)
        .map(|t| t.id.clone())
        .collect();
    let mut w1 = w1;
    assert_eq!(w1.stop(), Some(0));
    w1.start(&[]);
    w1.wait_ready(&m1);
    std::thread::sleep(Duration::from_millis(1500));
    let after = block_on(c.tasks(&TaskFilter { node: Some("w1".into()), ..Default::default() })).unwrap();
    for id in &kept {
        let t = after.iter().find(|t| &t.id == id).expect("the task is still there");
        assert_eq!((t.status.state, t.desired_state), (TaskState::Running, TaskState::Running), "{t:#?}");
    }
    // Daemons go before the network (fields drop in reverse order of declaration).
    drop((m1, w1, w2));
    drop(net);
}

#[test]
fn a_rolling_update_survives_the_leader_and_global_services_follow_joins() {
    use shoal_api::service::UpdateOrder;
    let mut net = Net::new();
    let m1 = Daemon::init_in(net.host(1), "m1");
    let m2 = Daemon::join_in(net.host(2), "m2", &m1);
    let m3 = Daemon::join_in(net.host(3), "m3", &m1);
    let managers = [&m1, &m2, &m3];
    fast_heartbeats(&m1.client());
    for d in managers {
        d.import_busybox();
    }
    // A global service follows a node that joins.
    let mut agent = ServiceSpec::new("agent", "shoal/busybox");
    agent.mode = ServiceMode::Global;
    agent.task_template.container.args = serve_forever();
    block_on(m1.client().create_service(&agent)).unwrap();
    placement_until(&m1.client(), "agent", "one agent per manager", |p| p.len() == 3);
    let w1 = Daemon::worker_in(net.host(4), "w1", &m1);
    w1.import_busybox();
    placement_until(&m1.client(), "agent", "an agent on the new worker too", |p| p.len() == 4);

    let mut web = ServiceSpec::new("web", "shoal/busybox");
    web.mode = ServiceMode::Replicated { replicas: 6 };
    web.task_template.container.args = serve_forever();
    web.update_config.parallelism = 2;
    web.update_config.delay = Duration::from_secs(1);
    web.update_config.order = UpdateOrder::StartFirst;
    block_on(m1.client().create_service(&web)).unwrap();
    placement_until(&m1.client(), "web", "6 web tasks", |p| p.values().sum::<usize>() == 6);

    // Start a rolling update, then kill the leader while it runs.
    let info = block_on(m1.client().cluster(ReadOptions { consistent: true })).unwrap();
    let leader_addr = info.managers.iter().find(|m| m.leader).unwrap().addr.clone();
    let mut all = vec![m1, m2, m3];
    let leader_at = all.iter().position(|d| d.addr == leader_addr).unwrap();
    let mut leader = all.remove(leader_at);
    let survivor = &all[0];
    let c = survivor.client();
    let svc = block_on(c.service("web")).unwrap();
    let mut new = svc.spec.clone();
    new.task_template.container.env = vec!["V=2".into()];
    block_on(c.update_service("web", svc.meta.version, &new)).unwrap();
    new_spec_running(&c, 1, "the update to start");
    leader.kill();

    // A new leader finishes the update: six running tasks of the new spec, one per slot.
    update_completed(&c, "after the leader died");
    drop((leader, all, w1));
    drop(net);
}

#[test]
fn a_rolling_update_finishes_when_a_worker_dies_mid_way() {
    let mut net = Net::new();
    let m1 = Daemon::init_in(net.host(1), "m1");
    let c = m1.client();
    fast_heartbeats(&c);
    let mut w1 = Daemon::worker_in(net.host(2), "w1", &m1);
    for d in [&m1, &w1] {
        d.import_busybox();
    }
    let mut web = ServiceSpec::new("web", "shoal/busybox");
    web.mode = ServiceMode::Replicated { replicas: 6 };
    web.task_template.container.args = serve_forever();
    web.task_template.restart_policy.delay = Duration::from_millis(200);
    web.update_config.parallelism = 1;
    web.update_config.delay = Duration::from_millis(500);
    block_on(c.create_service(&web)).unwrap();
    placement_until(&c, "web", "3 tasks per node", |p| p.values().copied().collect::<Vec<_>>() == [3, 3]);

    let svc = block_on(c.service("web")).unwrap();
    let mut new = svc.spec.clone();
    new.task_template.container.env = vec!["V=2".into()];
    block_on(c.update_service("web", svc.meta.version, &new)).unwrap();
    new_spec_running(&c, 2, "the update to get going");
    w1.kill();

    update_completed(&c, "after the worker died");
    drop((m1, w1));
    drop(net);
}
