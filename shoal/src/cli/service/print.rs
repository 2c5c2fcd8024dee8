//! Tables of services and tasks, as `docker service ls` and `docker service ps` print them.

use std::collections::BTreeSet;

use shoal_api::client::Client;
use shoal_api::wire::{ServiceFilter, TaskFilter};
use shoal_api::{Service, ServiceMode, Task, TaskState};

use super::ps::{PsLine, TaskFilters, arrange, error_cell};
use crate::cli::remote::{Output, ago, short};

/// The REPLICAS column: running out of wanted (and completed, for jobs).
fn replicas(s: &Service, tasks: &[Task]) -> String {
    let mine = tasks.iter().filter(|t| t.service_id == s.id);
    let running = mine.clone().filter(|t| t.status.state == TaskState::Running).count();
    match s.spec.mode {
        ServiceMode::Replicated { replicas } => format!("{running}/{replicas}"),
        ServiceMode::ReplicatedJob { total_completions, max_concurrent } => {
            let done = mine.filter(|t| t.status.state == TaskState::Complete).count();
            format!(
                "{running}/{max_concurrent} ({done}/{} completed)",
                total_completions.unwrap_or(max_concurrent)
            )
        }
        _ => {
            let desired = mine.filter(|t| t.desired_state <= TaskState::Running).count();
            format!("{running}/{desired}")
        }
    }
}

/// The PORTS column: `*:published->target/protocol`.
fn port_list(s: &Service) -> String {
    s.endpoint
        .ports
        .iter()
        .map(|p| match p.published_port {
            Some(pp) => format!("*:{pp}->{}/{}", p.target_port, p.protocol.as_str()),
            None => format!("{}/{}", p.target_port, p.protocol.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints services as `docker service ls` does.
pub(crate) async fn print_services(
    client: &Client,
    services: &[Service],
    out: &Output,
) -> anyhow::Result<()> {
    let tasks = if !out.shows_rows() { Vec::new() } else { client.tasks(&TaskFilter::default()).await? };
    out.print(
        services,
        |s| s.id.clone(),
        &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
        |s| {
            vec![
                short(&s.id),
                s.spec.name.clone(),
                s.spec.mode.name().into(),
                replicas(s, &tasks),
                s.spec.task_template.container.image.clone(),
                port_list(s),
            ]
        },
    )
}

/// Prints tasks as `docker service ps` does: those `filters` keep, each slot's
/// current task first and its older ones nested under it; ids and errors cut unless
/// `no_trunc`.
pub(crate) async fn print_tasks(
    client: &Client,
    tasks: Vec<Task>,
    out: &Output,
    filters: &TaskFilters,
    no_trunc: bool,
) -> anyhow::Result<()> {
    let (services, nodes) = if out.shows_rows() || *filters != TaskFilters::default() {
        (client.services(&ServiceFilter::default()).await?, client.nodes(Default::default()).await?)
    } else {
        (Vec::new(), Vec::new())
    };
    let service_name =
        |id: &str| services.iter().find(|s| s.id == id).map_or_else(|| short(id), |s| s.spec.name.clone());
    let node_name = |id: &Option<String>| {
        id.as_ref().map_or_else(String::new, |id| {
            nodes.iter().find(|n| &n.id == id).map_or_else(|| short(id), |n| n.description.hostname.clone())
        })
    };
    let id = |s: &str| if no_trunc { s.to_owned() } else { short(s) };
    let kept: Vec<Task> = tasks
        .into_iter()
        .filter(|t| filters.keep(t, &t.display_name(&service_name(&t.service_id)), &node_name(&t.node_id)))
        .collect();
    let lines: Vec<PsLine> = arrange(kept, service_name);
    let nested: BTreeSet<&str> = lines.iter().filter(|l| l.nested).map(|l| l.task.id.as_str()).collect();
    let tasks: Vec<&Task> = lines.iter().map(|l| &l.task).collect();
    out.print(
        &tasks,
        |t| id(&t.id),
        &["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"],
        |t| {
            let name = t.display_name(&service_name(&t.service_id));
            vec![
                id(&t.id),
                if nested.contains(t.id.as_str()) { format!(" \\_ {name}") } else { name },
                t.spec.container.image.clone(),
                node_name(&t.node_id),
                t.desired_state.as_str().to_owned(),
                format!("{} {}", t.status.state.as_str(), ago(t.status.timestamp)),
                error_cell(t.status.error.as_deref(), no_trunc),
            ]
        },
    )
}
