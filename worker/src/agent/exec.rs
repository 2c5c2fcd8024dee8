//! `task exec` on the node: the leader sends an [`pb::ExecOpen`] over the session;
//! the agent starts the command in the task's container and opens an `Exec` stream
//! to the leader, which carries the command's output and exit code up, and the
//! client's input and terminal resizes down.

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::dispatcher as pb;
use shoal_proto::dispatcher::dispatcher_client::DispatcherClient;
use tokio::sync::mpsc;

use super::node::Node;
use crate::runtime::exec::{ExecIo, ExecSpec};
use crate::runtime::pty::{self, WinSize};

/// How long output may keep coming after the command ended (from processes it left
/// behind holding its stdio) before the exit code is sent anyway.
const DRAIN: Duration = Duration::from_secs(2);

/// The end of the terminal's input: what Ctrl-D types.
const EOT: u8 = 4;

fn frame(item: pb::exec_frame::Item) -> pb::ExecFrame {
    pb::ExecFrame { exec_id: String::new(), item: Some(item) }
}

/// Runs one exec until the command ends, relaying through the leader.
pub(super) async fn serve<N: Node>(
    mut client: DispatcherClient<tonic::transport::Channel>,
    node: Arc<N>,
    open: pb::ExecOpen,
) {
    use pb::exec_frame::Item;
    let (tx, rx) = mpsc::channel::<pb::ExecFrame>(64);
    let _ = tx.send(pb::ExecFrame { exec_id: open.exec_id.clone(), item: None }).await;
    let mut inbound = match client.exec(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            tracing::warn!(exec = %open.exec_id, error = %s.message(), "the leader refused an exec stream");
            return;
        }
    };
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    let spec = ExecSpec {
        args: open.args,
        user: non_empty(open.user),
        workdir: non_empty(open.workdir),
        env: open.env,
        tty: open.tty,
    };
    let size = |rows: u32, cols: u32| WinSize {
        rows: u16::try_from(rows).ok().filter(|r| *r > 0).unwrap_or(24),
        cols: u16::try_from(cols).ok().filter(|c| *c > 0).unwrap_or(80),
    };
    let io =
        if open.tty { ExecIo::Tty(size(open.rows, open.cols)) } else { ExecIo::Pipes { stdin: open.stdin } };
    let task_id = open.task_id.clone();
    let started = tokio::task::spawn_blocking(move || node.exec(&task_id, &spec, io)).await;
    let mut p = match started {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            let _ = tx
                .send(frame(Item::Error(format!("cannot run the command: {}", super::node::error_chain(&e)))))
                .await;
            return;
        }
        Err(e) => {
            let _ = tx.send(frame(Item::Error(format!("cannot run the command: {e}")))).await;
            return;
        }
    };
    let mut readers = Vec::new();
    let mut input: Option<Box<dyn std::io::Write + Send>> = None;
    let mut master: Option<OwnedFd> = None;
    if let Some(m) = p.pty.take() {
        let (Ok(r), Ok(w)) = (m.try_clone(), m.try_clone()) else {
            let _ = tx.send(frame(Item::Error("cannot share the command's terminal".into()))).await;
            return;
        };
        readers.push(read_into(std::fs::File::from(r), tx.clone(), Item::Stdout));
        input = Some(Box::new(std::fs::File::from(w)));
        master = Some(m);
    } else {
        if let Some(out) = p.child.stdout.take() {
            readers.push(read_into(out, tx.clone(), Item::Stdout));
        }
        if let Some(err) = p.child.stderr.take() {
            readers.push(read_into(err, tx.clone(), Item::Stderr));
        }
        if let Some(stdin) = p.child.stdin.take() {
            input = Some(Box::new(stdin));
        }
    }
    // Input is written on a thread of its own: a full pipe blocks only it.
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    if let Some(mut w) = input {
        std::thread::spawn(move || {
            for bytes in in_rx {
                if w.write_all(&bytes).is_err() {
                    break;
                }
            }
        });
    }
    let tty = open.tty;
    // Pinned now: a signal through it can never reach another process.
    let pidfd = crate::runtime::sys::pidfd_open(p.child.id() as i32).ok();
    let from_client = tokio::spawn(async move {
        let mut in_tx = Some(in_tx);
        while let Ok(Some(f)) = inbound.message().await {
            match f.item {
                Some(Item::Stdin(bytes)) => {
                    if let Some(t) = &in_tx {
                        let _ = t.send(bytes);
                    }
                }
                Some(Item::StdinClosed(_)) if tty => {
                    if let Some(t) = &in_tx {
                        let _ = t.send(vec![EOT]);
                    }
                }
                // Dropping the sender closes the command's stdin.
                Some(Item::StdinClosed(_)) => in_tx = None,
                Some(Item::Resize(ws)) => {
                    if let Some(m) = &master {
                        let _ = pty::set_size(m, size(ws.rows, ws.cols));
                    }
                }
                _ => {}
            }
        }
        // The client went away (or the command ended first, and this is a no-op):
        // hang up, as a closed terminal would.
        if let Some(fd) = &pidfd {
            let _ = crate::runtime::sys::pidfd_send_signal(fd, libc::SIGHUP);
        }
    });
    let mut child = p.child;
    let status = tokio::task::spawn_blocking(move || child.wait()).await;
    for r in readers {
        let _ = tokio::time::timeout(DRAIN, r).await;
    }
    let last = match status {
        Ok(Ok(s)) => {
            use std::os::unix::process::ExitStatusExt as _;
            Item::ExitCode(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
        }
        Ok(Err(e)) => Item::Error(format!("wait for the command: {e}")),
        Err(e) => Item::Error(format!("wait for the command: {e}")),
    };
    let _ = tx.send(frame(last)).await;
    drop(tx);
    // The leader ends its side once it has the last frame; dropping ours first
    // would cancel the call and lose what is still queued.
    let abort = from_client.abort_handle();
    if tokio::time::timeout(DRAIN, from_client).await.is_err() {
        abort.abort();
    }
}

/// Sends what `from` yields as frames made by `item`, until it ends (or, for a
/// terminal, every holder of the command's side has closed it).
fn read_into(
    mut from: impl std::io::Read + Send + 'static,
    tx: mpsc::Sender<pb::ExecFrame>,
    item: fn(Vec<u8>) -> pb::exec_frame::Item,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(frame(item(buf[..n].to_vec()))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    })
}
