//! What the scenarios share: service specs, and polls over the cluster's tasks.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::{Cluster, block_on};
use shoal_api::client::Client;
use shoal_api::node::Availability;
use shoal_api::wire::{NodeUpdate, ReadOptions, TaskFilter};
use shoal_api::{ServiceMode, ServiceSpec, Task, TaskState};

/// A container that runs until stopped and exits at once on SIGTERM.
pub fn serve_forever() -> Vec<String> {
    ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"].map(String::from).to_vec()
}

/// A replicated service of the test image that runs until stopped.
pub fn replicated(name: &str, replicas: u64) -> ServiceSpec {
    let mut s = ServiceSpec::new(name, "shoal/busybox");
    s.mode = ServiceMode::Replicated { replicas };
    s.task_template.container.args = serve_forever();
    s.task_template.restart_policy.delay = Duration::from_millis(200);
    s
}

/// The same, placed on workers only (so a manager's fate never moves its tasks).
pub fn on_workers(name: &str, replicas: u64) -> ServiceSpec {
    let mut s = replicated(name, replicas);
    s.task_template.placement.constraints = vec!["node.role==worker".into()];
    s
}

/// Tasks of `service` that run and should, by node hostname.
pub fn running_per_node(c: &Client, service: &str) -> Option<(BTreeMap<String, usize>, Vec<Task>)> {
    block_on(async {
        let nodes = c.nodes(ReadOptions::default()).await.ok()?;
        let filter = TaskFilter { service: Some(service.into()), ..Default::default() };
        let tasks = c.tasks(&filter).await.ok()?;
        let mut per_node = BTreeMap::new();
        for t in tasks.iter().filter(|t| is_up(t)) {
            let host = nodes
                .iter()
                .find(|n| Some(&n.id) == t.node_id.as_ref())
                .map(|n| n.description.hostname.clone());
            *per_node.entry(host.unwrap_or_default()).or_default() += 1;
        }
        Some((per_node, tasks))
    })
}

/// Running, and meant to.
pub fn is_up(t: &Task) -> bool {
    t.status.state == TaskState::Running && t.desired_state == TaskState::Running
}

/// Polls until `cond` holds for `service`'s running tasks per node; returns them.
pub fn placement_until(
    c: &Cluster,
    service: &str,
    what: &str,
    cond: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> (BTreeMap<String, usize>, Vec<Task>) {
    let mut found = None;
    c.wait(what, Duration::from_secs(60), |c| {
        found = running_per_node(&c.client(), service).filter(|(p, _)| cond(p));
        found.is_some()
    });
    found.expect("found")
}

/// The ids of `service`'s running tasks.
pub fn running_ids(c: &Cluster, service: &str) -> Vec<String> {
    let (_, tasks) = running_per_node(&c.client(), service).expect("the tasks");
    let mut ids: Vec<String> = tasks.iter().filter(|t| is_up(t)).map(|t| t.id.clone()).collect();
    ids.sort();
    ids
}

/// Sets a node's availability.
pub fn set_availability(c: &Client, node: &str, availability: Availability) {
    block_on(async {
        let n = c.node(node).await.unwrap();
        let mut spec = n.spec.clone();
        spec.availability = availability;
        c.update_node(node, &NodeUpdate { version: n.meta.version, spec }).await.unwrap();
    });
}

/// Starts a rolling update of `service` that sets `V=<v>` in its environment.
pub fn update_env(c: &Client, service: &str, v: u32) {
    block_on(async {
        let svc = c.service(service).await.unwrap();
        let mut new = svc.spec.clone();
        new.task_template.container.env = vec![format!("V={v}")];
        c.update_service(service, svc.meta.version, &new).await.unwrap();
    });
}

/// Waits until `service`'s rollout completed with `replicas` running tasks that
/// have `V=<v>`, exactly one per slot 1..=replicas. Calls may fail for a while (an
/// election): they are retried.
pub fn update_completed(c: &Cluster, service: &str, replicas: u64, v: u32, when: &str) {
    use shoal_api::service::UpdateState;
    let want: Vec<u64> = (1..=replicas).collect();
    let env = vec![format!("V={v}")];
    c.wait(&format!("{service}'s update to complete {when}"), Duration::from_secs(90), |c| {
        let client = c.client();
        let Some((svc, tasks)) = block_on(async {
            let svc = client.service(service).await.ok()?;
            let filter = TaskFilter { service: Some(service.into()), ..Default::default() };
            Some((svc, client.tasks(&filter).await.ok()?))
        }) else {
            return false;
        };
        let running: Vec<&Task> = tasks.iter().filter(|t| is_up(t)).collect();
        let mut slots: Vec<u64> = running.iter().filter_map(|t| t.slot).collect();
        slots.sort();
        svc.update_status.as_ref().map(|u| u.state) == Some(UpdateState::Completed)
            && slots == want
            && running.iter().all(|t| t.spec.container.env == env)
    });
}
