//! `shoal events`: follow the cluster's events, optionally from a log index.

use futures::StreamExt as _;
use shoal_api::wire::EventQuery;

use super::remote::{Connection, block_on};

/// Flags of `shoal events`.
#[derive(Debug, clap::Args)]
pub(super) struct EventsArgs {
    /// Start after this log index (the first column of an earlier run).
    #[arg(long)]
    since: Option<u64>,
    /// Only events about this kind of object (service, task, node, network, …).
    #[arg(long = "filter-type", alias = "type")]
    kind: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<usize>,
    /// Print each event as JSON, one per line.
    #[arg(long, value_parser = ["json"])]
    format: Option<String>,
}

pub(super) fn run(args: EventsArgs, conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client()?;
    block_on(async move {
        let mut stream = client.events(&EventQuery { since: args.since, kind: args.kind }).await?;
        let mut seen = 0;
        while args.limit.is_none_or(|l| seen < l) {
            let Some(event) = stream.next().await else { break };
            let event = event?;
            seen += 1;
            if args.format.is_some() {
                println!("{}", serde_json::to_string(&event)?);
            } else {
                let o = &event.object;
                let action = serde_json::to_value(event.action)?.as_str().unwrap_or_default().to_owned();
                let name = o.name().map(|n| format!(" (name={n})")).unwrap_or_default();
                println!("{} {} {} {}{}", event.index, o.kind(), action, o.id(), name);
            }
        }
        Ok(())
    })?
}
