//! `shoal task exec`: a command in a running task's container, on whatever node it
//! runs, through a manager (which relays through the leader to the node). The task
//! is named by id, or as SERVICE.SLOT, or SERVICE (its first running task). Input,
//! a terminal and resizes work as in `container exec`; the exit code is the
//! command's (126 when it could not run there).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use shoal_api::client::{Client, ClientError};
use shoal_api::exec::{ExecStart, Frame};
use shoal_api::task::{Task, TaskState};
use shoal_api::wire::TaskFilter;
use tokio::io::AsyncWriteExt as _;

use super::container_exec::ExecOpts;
use super::remote::{Connection, block_on};
use super::terminal;

/// Runs `cmd` in the container of the task `target` names.
pub(super) fn run(
    conn: &Connection,
    target: &str,
    opts: &ExecOpts,
    cmd: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    let spec = opts.spec(cmd)?;
    let size = terminal::current_size();
    let start = ExecStart {
        cmd: spec.args,
        user: spec.user,
        workdir: spec.workdir,
        env: spec.env,
        tty: opts.tty,
        rows: size.rows,
        cols: size.cols,
        stdin: opts.interactive,
    };
    block_on(relay(client, target.to_owned(), start))?
}

/// The task `target` names: a task id (or prefix), SERVICE.SLOT, or SERVICE.
async fn resolve(client: &Client, target: &str) -> anyhow::Result<Task> {
    match client.task(target).await {
        Ok(t) => return Ok(t),
        Err(ClientError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let (service, slot) = match target.rsplit_once('.') {
        Some((s, n)) if n.parse::<u64>().is_ok() => (s, n.parse::<u64>().ok()),
        _ => (target, None),
    };
    let filter = TaskFilter { service: Some(service.to_owned()), ..Default::default() };
    let tasks = match client.tasks(&filter).await {
        Ok(t) => t,
        Err(ClientError::Api { status: 404, .. }) => bail!("no task or service {target}"),
        Err(e) => return Err(e.into()),
    };
    let mut running: Vec<Task> = tasks
        .into_iter()
        .filter(|t| t.status.state == TaskState::Running && (slot.is_none() || t.slot == slot))
        .collect();
    running.sort_by_key(|t| t.slot);
    let which = slot.map(|s| format!(" in slot {s}")).unwrap_or_default();
    running.into_iter().next().with_context(|| format!("service {service} has no running task{which}"))
}

async fn relay(client: Client, target: String, start: ExecStart) -> anyhow::Result<ExitCode> {
    let (tty, interactive) = (start.tty, start.stdin);
    let task = resolve(&client, &target).await?;
    let conn = client.exec_task(&task.id).await.with_context(|| format!("exec in task {}", task.id))?;
    let (mut from, mut to) = tokio::io::split(conn);
    to.write_all(&Frame::Start(start).encode()).await.context("send the command")?;
    let _raw = if tty && interactive { terminal::RawMode::enter() } else { None };
    let mut input = interactive.then(read_stdin);
    let mut resized = if tty {
        Some(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?)
    } else {
        None
    };
    loop {
        tokio::select! {
            f = Frame::read(&mut from) => match f.context("read the command's output")? {
                Some(Frame::Stdout(b)) => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&b)?;
                    out.flush()?;
                }
                Some(Frame::Stderr(b)) => std::io::stderr().write_all(&b)?,
                Some(Frame::Exit(code)) => return Ok(ExitCode::from(code.clamp(0, 255) as u8)),
                Some(Frame::Error(e)) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(126));
                }
                Some(_) => {}
                None => bail!("the manager ended the exec without the command's exit code"),
            },
            bytes = async { input.as_mut().expect("guarded").recv().await }, if input.is_some() => {
                let frame = match bytes {
                    Some(b) => Frame::Stdin(b),
                    None => {
                        input = None;
                        Frame::StdinClosed
                    }
                };
                to.write_all(&frame.encode()).await.context("send input")?;
            }
            _ = async { resized.as_mut().expect("guarded").recv().await }, if resized.is_some() => {
                let size = terminal::current_size();
                to.write_all(&Frame::Resize(size.rows, size.cols).encode()).await.context("send a resize")?;
            }
        }
    }
}

/// Stdin, read on a thread of its own (it blocks), as chunks; the channel closes at
/// its end.
fn read_stdin() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match nix::unistd::read(&stdin, &mut buf) {
                Err(nix::errno::Errno::EINTR) => {}
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}
