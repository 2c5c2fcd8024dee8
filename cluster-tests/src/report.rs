//! The cluster's state as text, for a wait that timed out: nodes, services, tasks
//! (from the first manager that answers), then each daemon's last log lines.

use std::fmt::Write as _;

use shoal_api::wire::{ReadOptions, TaskFilter};

use crate::{Cluster, block_on};

pub(crate) fn state(c: &Cluster) -> String {
    let mut out = String::new();
    let client = c.client();
    let answer = block_on(async {
        let nodes = client.nodes(ReadOptions::default()).await?;
        let services = client.services(&Default::default()).await?;
        let tasks = client.tasks(&TaskFilter::default()).await?;
        Ok::<_, shoal_api::client::ClientError>((nodes, services, tasks))
    });
    match answer {
        Ok((nodes, services, tasks)) => {
            let host = |id: &Option<String>| {
                nodes
                    .iter()
                    .find(|n| Some(&n.id) == id.as_ref())
                    .map_or("-".to_owned(), |n| n.description.hostname.clone())
            };
            let _ = writeln!(out, "nodes:");
            for n in &nodes {
                let _ = writeln!(
                    out,
                    "  {} {:?} {:?} {}",
                    n.description.hostname, n.status.state, n.spec.availability, n.status.message
                );
            }
            let _ = writeln!(out, "services:");
            for s in &services {
                let _ = writeln!(out, "  {} {:?} update {:?}", s.spec.name, s.spec.mode, s.update_status);
            }
            let _ = writeln!(out, "tasks:");
            for t in &tasks {
                let svc =
                    services.iter().find(|s| s.id == t.service_id).map_or("?", |s| s.spec.name.as_str());
                let _ = writeln!(
                    out,
                    "  {svc}.{} {} on {} desired {:?} state {:?} {}",
                    t.slot.map_or("-".to_owned(), |s| s.to_string()),
                    t.id,
                    host(&t.node_id),
                    t.desired_state,
                    t.status.state,
                    t.status.error.as_deref().unwrap_or(&t.status.message)
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "no manager answered: {e}");
        }
    }
    for h in c.hosts() {
        let _ = writeln!(out, "--- {} ({}) log tail:\n{}", h.name, h.addr, h.log_tail(15));
    }
    out
}
