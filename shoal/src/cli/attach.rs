//! `shoal container run --network NET`: a standalone container on an attachable
//! overlay network. The managers give it an address (as a network attachment of this
//! node), this node's daemon wires a sandbox for it as it does for tasks (interfaces,
//! peers, VIP balancing, a resolver at 127.0.0.11), and the container joins that
//! sandbox. When it is removed, the attachment goes and its address is free again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use shoal_worker::runtime::MountPoint;

use super::node_opts::NodeOpts;
use super::remote::{Connection, block_on};

/// How long the node's daemon may take to wire the sandbox.
const WIRE_WAIT: Duration = Duration::from_secs(30);

/// A container's place on a network, made before it starts.
#[derive(Debug)]
pub(super) struct Attached {
    /// The sandbox the container joins.
    pub(super) netns: PathBuf,
    /// Its resolv.conf and hosts.
    pub(super) mounts: Vec<MountPoint>,
}

/// This node's id in the cluster, from its data dir.
fn node_id(node: &NodeOpts) -> anyhow::Result<String> {
    let path = node.data_dir.join("node-id");
    std::fs::read_to_string(&path).map(|s| s.trim().to_owned()).with_context(|| {
        format!(
            "this node has not joined a cluster ({} is missing): start `shoal daemon` first",
            path.display()
        )
    })
}

/// Attaches container `id` to `network` and waits until the node wired its sandbox.
pub(super) fn attach(
    conn: &Connection,
    node: &NodeOpts,
    network: &str,
    id: &str,
) -> anyhow::Result<Attached> {
    let node_id = node_id(node)?;
    let client = conn.client()?;
    let a = block_on(client.attach_container(&node_id, network, id))?
        .with_context(|| format!("attach container {id} to network {network}"))?;
    let netns = node.data_dir.join("net").join("netns").join(format!("t-{id}"));
    let deadline = Instant::now() + WIRE_WAIT;
    while !has_address(&netns, &a.addr.addr().to_string()) {
        if Instant::now() > deadline {
            let _ = detach(conn, node, id);
            bail!(
                "this node's daemon did not wire the container's sandbox within {}s: is `shoal daemon` running here, with networking on?",
                WIRE_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = node.data_dir.join("net").join("files").join(id);
    let mounts = shoal_worker::network::files::write(&dir, id, Some(a.addr.addr()))?
        .into_iter()
        .map(|(source, target)| MountPoint::Bind { source, target, read_only: true })
        .collect();
    Ok(Attached { netns, mounts })
}

/// Takes container `id` off its networks (nothing if it was on none).
pub(super) fn detach(conn: &Connection, node: &NodeOpts, id: &str) -> anyhow::Result<()> {
    let Ok(node_id) = node_id(node) else { return Ok(()) };
    let _ = std::fs::remove_dir_all(node.data_dir.join("net").join("files").join(id));
    let client = conn.client()?;
    block_on(client.detach_container(&node_id, id))?.with_context(|| format!("detach container {id}"))
}

/// Whether the namespace at `netns` exists and has `addr` on an interface (read on a
/// short-lived thread that enters it; this process stays in its own).
fn has_address(netns: &Path, addr: &str) -> bool {
    let Ok(file) = std::fs::File::open(netns) else { return false };
    let addr = addr.to_owned();
    std::thread::spawn(move || {
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).is_ok()
            && std::fs::read_to_string("/proc/thread-self/net/fib_trie")
                .is_ok_and(|t| t.lines().any(|l| l.trim().trim_start_matches("|-- ") == addr))
    })
    .join()
    .unwrap_or(false)
}
