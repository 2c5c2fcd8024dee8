//! `shoal service …`: create, list, inspect, update, scale, roll back and remove
//! services, with `docker service`'s flag names. This module holds the subcommands and
//! runs them; [`args`] holds the flags, [`spec`] turns them into specs, [`print`],
//! [`ps`] and [`logs`] show what the API returns, and [`progress`] waits for a
//! changed service to converge.

mod args;
mod logs;
mod print;
mod progress;
mod ps;
mod spec;

use anyhow::bail;
use clap::Subcommand;
use shoal_api::wire::{ServiceFilter, TaskFilter};

use self::args::{CreateArgs, UpdateArgs};
use self::logs::LogStyle;
pub(super) use self::print::{print_services, print_tasks};
use self::progress::{Show, Tracker};
pub(super) use self::ps::TaskFilters;
use super::remote::{Connection, Output, block_on, print_json};

/// `shoal service`'s subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum ServiceCommand {
    /// Create a service.
    Create(Box<CreateArgs>),
    /// List services.
    #[command(alias = "list")]
    Ls {
        /// Only services whose name starts with this.
        #[arg(long)]
        name: Option<String>,
        /// Only services with this label (`key` or `key=value`).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// List the tasks of services.
    Ps {
        /// Services, by name or id.
        #[arg(required = true)]
        services: Vec<String>,
        /// Only tasks that should be running (`--filter desired-state=running`).
        #[arg(long)]
        running: bool,
        /// Filter: id=, name=, node=, desired-state= (running, shutdown, accepted…);
        /// repeat a key for any of its values.
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Full ids and errors.
        #[arg(long)]
        no_trunc: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Show services as JSON.
    Inspect {
        /// Services, by name or id.
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Set replica counts: `web=5 api=3`.
    Scale {
        /// SERVICE=REPLICAS pairs.
        #[arg(required = true, value_parser = parse_scale)]
        pairs: Vec<(String, u64)>,
        /// Return at once instead of waiting for the services to converge.
        #[arg(short, long)]
        detach: bool,
    },
    /// Update a service.
    Update(Box<UpdateArgs>),
    /// Go back to a service's previous spec.
    Rollback {
        /// The service.
        service: String,
        /// Return at once instead of waiting for the service to converge.
        #[arg(short, long)]
        detach: bool,
        /// No progress.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the output of a service's tasks (or of one task).
    Logs {
        /// A service (name or id) or a task id.
        target: String,
        /// Keep streaming new output.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each task.
        #[arg(short = 'n', long)]
        tail: Option<u64>,
        /// Only output since a time (RFC 3339, Unix seconds) or a duration ago (10m).
        #[arg(long)]
        since: Option<String>,
        /// Show each line's time.
        #[arg(short, long)]
        timestamps: bool,
        /// No task prefix on lines.
        #[arg(long)]
        no_task_ids: bool,
    },
    /// Remove services.
    #[command(alias = "remove")]
    Rm {
        /// Services, by name or id.
        #[arg(required = true)]
        services: Vec<String>,
    },
}

/// Reads one `SERVICE=REPLICAS` of `service scale`.
fn parse_scale(s: &str) -> Result<(String, u64), String> {
    let (name, n) = s.split_once('=').ok_or_else(|| format!("{s:?} is not SERVICE=REPLICAS"))?;
    let n = n.parse().map_err(|_| format!("{n:?} is not a number of replicas"))?;
    Ok((name.to_owned(), n))
}

/// Progress unless `--quiet`.
fn show(quiet: bool) -> Show {
    if quiet { Show::Nothing } else { Show::Progress }
}

pub(super) fn run(cmd: ServiceCommand, conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client()?;
    block_on(async move {
        match cmd {
            ServiceCommand::Create(a) => {
                let spec = spec::create_spec(&a)?;
                let created = client.create_service(&spec).await?;
                println!("{}", created.id);
                if !a.quiet {
                    for w in &created.warnings {
                        eprintln!("warning: {w}");
                    }
                }
                if !a.detach {
                    let tracker = Tracker::new(&spec.name, None, false);
                    progress::follow(&client, &created.id, tracker, show(a.quiet)).await?;
                }
            }
            ServiceCommand::Ls { name, label, out } => {
                let services = client.services(&ServiceFilter { name, label, ..Default::default() }).await?;
                print_services(&client, &services, &out).await?;
            }
            ServiceCommand::Ps { services, running, mut filters, no_trunc, out } => {
                if running {
                    filters.push("desired-state=running".into());
                }
                let filters = TaskFilters::parse(&filters).map_err(anyhow::Error::msg)?;
                let mut tasks = Vec::new();
                for s in &services {
                    let desired_state = filters.only_desired().map(|d| d.as_str().to_owned());
                    tasks.extend(
                        client
                            .tasks(&TaskFilter {
                                service: Some(s.clone()),
                                desired_state,
                                ..Default::default()
                            })
                            .await?,
                    );
                }
                print_tasks(&client, tasks, &out, &filters, no_trunc).await?;
            }
            ServiceCommand::Inspect { services } => {
                let mut out = Vec::new();
                for s in &services {
                    out.push(client.service(s).await?);
                }
                print_json(&out)?;
            }
            ServiceCommand::Scale { pairs, detach } => {
                let mut scaled = Vec::new();
                for (name, n) in pairs {
                    let before = client.service(&name).await?;
                    client.scale_service(&name, n).await?;
                    println!("{name} scaled to {n}");
                    scaled.push((name, before.update_status));
                }
                for (name, stale) in scaled.into_iter().filter(|_| !detach) {
                    progress::follow(&client, &name, Tracker::new(&name, stale, false), Show::Progress)
                        .await?;
                }
            }
            ServiceCommand::Update(a) => {
                let (svc, written) = update(&client, &a).await?;
                println!("{}", if a.quiet { written.id.clone() } else { svc.spec.name.clone() });
                if !a.detach {
                    let tracker = Tracker::new(&a.service, svc.update_status, a.rollback);
                    progress::follow(&client, &written.id, tracker, show(a.quiet)).await?;
                }
            }
            ServiceCommand::Rollback { service, detach, quiet } => {
                let before = client.service(&service).await?;
                client.rollback_service(&service).await?;
                println!("{service}: rolled back to the previous spec");
                if !detach {
                    let tracker = Tracker::new(&service, before.update_status, true);
                    progress::follow(&client, &before.id, tracker, show(quiet)).await?;
                }
            }
            ServiceCommand::Logs { target, follow, tail, since, timestamps, no_task_ids } => {
                let query = shoal_api::wire::LogQuery { follow, tail, since };
                logs::print(&client, &target, &query, LogStyle { timestamps, no_task_ids }).await?;
            }
            ServiceCommand::Rm { services } => {
                let mut failed = Vec::new();
                for s in &services {
                    match client.remove_service(s).await {
                        Ok(()) => println!("{s}"),
                        Err(e) => {
                            eprintln!("error: {s}: {e}");
                            failed.push(s.clone());
                        }
                    }
                }
                if !failed.is_empty() {
                    bail!("{} of {} services not removed", failed.len(), services.len());
                }
            }
        }
        Ok(())
    })?
}

/// How often `service update` reads the service again after finding it changed.
const UPDATE_ATTEMPTS: u32 = 5;

/// Applies the flags of `a` to the service as it is now. The managers write services
/// too (a rollout's status), so the write may find the service changed since it was
/// read: then it is read again and the flags applied to what is there, a few times.
/// Returns the service as read for the write that went through, and that write.
async fn update(
    client: &shoal_api::client::Client,
    a: &UpdateArgs,
) -> anyhow::Result<(shoal_api::Service, shoal_api::wire::Written)> {
    let mut attempt = 1;
    loop {
        let svc = client.service(&a.service).await?;
        let result = if a.rollback {
            client.rollback_service(&svc.id).await
        } else {
            let spec = spec::updated_spec(a, &svc.spec)?;
            client.update_service(&svc.id, svc.meta.version, &spec).await
        };
        match result {
            Err(shoal_api::client::ClientError::Api { status: 409, code, .. })
                if code == "conflict" && attempt < UPDATE_ATTEMPTS =>
            {
                attempt += 1;
            }
            other => return Ok((svc, other?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::sync::{Arc, Mutex};

    use clap::Parser;
    use shoal_api::client::{Client, ClientError, Endpoint};
    use shoal_api::wire::{ErrorBody, ErrorDetail, ServiceUpdate, Written};
    use shoal_api::{Meta, Service, ServiceSpec};

    use super::*;

    #[derive(Parser)]
    struct Update {
        #[command(flatten)]
        a: UpdateArgs,
    }

    /// A manager's API with one service, `web`, that a controller writes `bumps`
    /// times, each time just after a client read it. Records the version of every
    /// `PUT` and the spec that went through.
    #[derive(Default)]
    struct Fake {
        version: u64,
        bumps: u32,
        puts: Vec<u64>,
        written: Option<ServiceSpec>,
    }

    fn serve(fake: Arc<Mutex<Fake>>, conn: UnixStream) {
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut conn = conn;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let (mut length, mut header) = (0usize, String::new());
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().expect("a length");
                }
                header.clear();
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).expect("the body");
            let mut f = fake.lock().expect("fake");
            let (status, reply) = if line.starts_with("GET /v1/services/web ") {
                let service = Service {
                    id: "svc1".into(),
                    meta: Meta { version: f.version, ..Meta::new(chrono::Utc::now()) },
                    spec: f.written.clone().unwrap_or_else(|| ServiceSpec::new("web", "busybox")),
                    previous_spec: None,
                    update_status: None,
                    endpoint: Default::default(),
                };
                if f.bumps > 0 {
                    f.bumps -= 1;
                    f.version += 2;
                }
                ("200 OK", serde_json::to_vec(&service).expect("json"))
            } else if line.starts_with("PUT /v1/services/svc1 ") {
                let update: ServiceUpdate = serde_json::from_slice(&body).expect("an update");
                f.puts.push(update.version);
                if update.version == f.version {
                    f.version += 1;
                    f.written = Some(update.spec);
                    (
                        "200 OK",
                        serde_json::to_vec(&Written { id: "svc1".into(), version: f.version }).expect("json"),
                    )
                } else {
                    let error = ErrorDetail {
                        code: "conflict".into(),
                        message: format!(
                            "service svc1 was changed by someone else (version {}, you read {})",
                            f.version, update.version
                        ),
                        field: None,
                        details: vec![],
                    };
                    ("409 Conflict", serde_json::to_vec(&ErrorBody { error }).expect("json"))
                }
            } else {
                ("404 Not Found", b"{}".to_vec())
            };
            drop(f);
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                reply.len()
            );
            if conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(&reply)).is_err() {
                return;
            }
        }
    }

    /// `service update web --env-add B=2 -d` against a service written `bumps` times
    /// between a read and the write that follows it.
    fn update_with(bumps: u32) -> (anyhow::Result<(Service, Written)>, Vec<u64>, Option<ServiceSpec>) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let socket = dir.path().join("api.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let fake = Arc::new(Mutex::new(Fake { version: 5, bumps, ..Fake::default() }));
        let served = fake.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let fake = served.clone();
                std::thread::spawn(move || serve(fake, conn));
            }
        });
        let args =
            Update::try_parse_from(["update", "web", "--env-add", "B=2", "-d"]).expect("the flags parse").a;
        let client = Client::new(Endpoint::Unix(socket)).expect("a client");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let result = rt.block_on(update(&client, &args));
        let f = fake.lock().expect("fake");
        (result, f.puts.clone(), f.written.clone())
    }

    #[test]
    fn an_update_that_finds_the_service_changed_reads_it_again() {
        let (result, puts, written) = update_with(2);
        let (read, write) = result.expect("the third attempt goes through");
        assert_eq!(puts, [5, 7, 9], "each attempt writes at the version it read");
        assert_eq!((read.meta.version, write.version), (9, 10));
        assert_eq!(written.expect("written").task_template.container.env, ["B=2"]);
    }

    #[test]
    fn an_update_gives_up_after_its_attempts() {
        let (result, puts, written) = update_with(100);
        let err = result.expect_err("every attempt conflicts");
        let api = err.downcast_ref::<ClientError>().expect("the API's error");
        assert!(matches!(api, ClientError::Api { status: 409, .. }), "{api:?}");
        assert_eq!(puts.len(), UPDATE_ATTEMPTS as usize);
        assert!(written.is_none());
    }
}
