//! `shoal service logs`: a service's (or one task's) output, each line prefixed with
//! `<service>.<slot>.<task>@<node>` as Docker prints it.

use std::io::Write as _;

use futures::StreamExt as _;
use shoal_api::client::{Client, LogsOf};
use shoal_api::wire::{LogQuery, ServiceFilter, TaskFilter};

use crate::cli::remote::short;

/// How each line is printed.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogStyle {
    /// Show each line's time.
    pub(super) timestamps: bool,
    /// No task prefix on lines.
    pub(super) no_task_ids: bool,
}

/// Prints the output of `target`, a service (name or id) or a task id; stdout lines to
/// stdout and stderr lines to stderr.
pub(super) async fn print(
    client: &Client,
    target: &str,
    query: &LogQuery,
    style: LogStyle,
) -> anyhow::Result<()> {
    let (of, id) = match client.service(target).await {
        Ok(svc) => (LogsOf::Service, svc.id),
        Err(e) if e.status() == Some(404) => (LogsOf::Task, client.task(target).await?.id),
        Err(e) => return Err(e.into()),
    };
    // Names for the prefix: <service>.<slot>.<task>@<node>, as Docker prints.
    let (services, tasks, nodes) = (
        client.services(&ServiceFilter::default()).await?,
        client.tasks(&TaskFilter::default()).await?,
        client.nodes(Default::default()).await?,
    );
    let prefix = |task_id: &str| {
        let Some(t) = tasks.iter().find(|t| t.id == task_id) else { return short(task_id) };
        let svc = services.iter().find(|s| s.id == t.service_id).map_or("?", |s| s.spec.name.as_str());
        let node = t
            .node_id
            .as_ref()
            .and_then(|n| nodes.iter().find(|x| &x.id == n))
            .map_or("?", |n| n.description.hostname.as_str());
        match t.slot {
            Some(slot) => format!("{svc}.{slot}.{}@{node}", short(&t.id)),
            None => format!("{svc}.{}@{node}", short(&t.id)),
        }
    };
    let mut stream = client.logs(of, &id, query).await?;
    let mut out = std::io::stdout().lock();
    while let Some(record) = stream.next().await {
        let r = record?;
        if let Some(e) = &r.error {
            eprintln!("{}: {e}", prefix(&r.task_id));
            continue;
        }
        let mut line = String::new();
        if style.timestamps
            && let Some(t) = r.time
        {
            line.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
            line.push(' ');
        }
        if !style.no_task_ids {
            line.push_str(&format!("{:<30} | ", prefix(&r.task_id)));
        }
        line.push_str(&r.line);
        if r.stream == "stderr" {
            eprintln!("{line}");
        } else {
            writeln!(out, "{line}")?;
            if query.follow {
                out.flush()?;
            }
        }
    }
    Ok(())
}
