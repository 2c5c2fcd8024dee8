//! `shoal node leave`: this node's daemon leaves the cluster, as `docker swarm leave`.
//! The CLI asks the daemon over its control socket (`DATA_DIR/node.sock`, mode 0600:
//! only root on the node). A worker removes its tasks' containers, forgets the cluster
//! (its certificate and managers) and stops; the managers see its node go down. A
//! manager first leaves the Raft group: refused when the managers left would not be
//! a majority of the reachable ones, or when it is the last, unless `--force`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

/// The control socket in the node's data directory.
pub(super) fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("node.sock")
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    force: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    /// Why the node did not leave; empty when it does.
    error: String,
}

/// A leave the daemon was asked for; it answers through `reply` (`Err` with the
/// reason it refuses) and, having said yes, stops.
#[derive(Debug)]
pub(super) struct LeaveAsk {
    pub(super) force: bool,
    pub(super) reply: oneshot::Sender<Result<(), String>>,
}

/// Serves the control socket until the daemon stops; each ask goes to `asks`.
pub(super) fn serve(data_dir: &Path) -> anyhow::Result<mpsc::Receiver<LeaveAsk>> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener =
        tokio::net::UnixListener::bind(&path).with_context(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restrict {}", path.display()))?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut line = String::new();
                let mut lines = tokio::io::BufReader::new(read);
                if lines.read_line(&mut line).await.is_err() {
                    return;
                }
                let answer = match serde_json::from_str::<Request>(&line) {
                    Err(e) => Err(format!("a malformed request: {e}")),
                    Ok(req) => {
                        let (reply, answer) = oneshot::channel();
                        if tx.send(LeaveAsk { force: req.force, reply }).await.is_err() {
                            Err("the daemon is stopping".to_owned())
                        } else {
                            answer.await.unwrap_or_else(|_| Err("the daemon is stopping".to_owned()))
                        }
                    }
                };
                let mut text = serde_json::to_vec(&Reply { error: answer.err().unwrap_or_default() })
                    .expect("replies serialize");
                text.push(b'\n');
                let _ = write.write_all(&text).await;
            });
        }
    });
    Ok(rx)
}

/// Asks the daemon of the node whose data is in `data_dir` to leave.
pub(super) fn ask(data_dir: &Path, force: bool) -> anyhow::Result<()> {
    let path = socket_path(data_dir);
    let mut conn = UnixStream::connect(&path).with_context(|| {
        format!("reach this node's daemon at {}: is `shoal daemon` running here (as root)?", path.display())
    })?;
    let mut text = serde_json::to_vec(&Request { force })?;
    text.push(b'\n');
    conn.write_all(&text)?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).context("read the daemon's answer")?;
    let reply: Reply = serde_json::from_str(&line)
        .with_context(|| format!("the daemon answered {line:?}, not a reply: did it stop?"))?;
    if !reply.error.is_empty() {
        bail!("{}", reply.error);
    }
    Ok(())
}

/// Forgets the cluster: what a node would rejoin with at its next start.
pub(super) fn forget_cluster(data_dir: &Path) -> std::io::Result<()> {
    for name in ["worker.json", "certs", "manager"] {
        let path = data_dir.join(name);
        let removed =
            if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
