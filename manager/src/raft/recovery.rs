//! Recovery from a lost quorum (`--force-new-cluster`): this manager keeps every
//! change in its log and becomes the only member of a new Raft group,
//! as `docker swarm init --force-new-cluster` does. Other managers must then join it
//! afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, Membership, RaftSnapshotBuilder, StoredMembership};

use super::log_store::LogStore;
use super::state_machine::StateMachine;

/// Applies the whole local log to the state machine, then rewrites the snapshot with a
/// membership of this manager alone and empties the log up to it. The vote is kept, so
/// terms never go backwards.
///
/// Every entry in the log is kept, not only those known here to be committed: the
/// commit index on disk may lag (it is written lazily), and a leader elected with this
/// log would have committed all of it too. So every write this manager acknowledged
/// as leader (each was on its disk before it counted towards the quorum) survives.
pub async fn force_new_cluster(id: u64, addr: &str, log: &mut LogStore, sm: &StateMachine) -> io::Result<()> {
    let mut sm = sm.clone();
    let (applied, _) = sm.applied_state().await?;
    let last_log = log.get_log_state().await?.last_log_id;
    let from = applied.map_or(0, |l| l.index + 1);
    let mut last = applied;
    if let Some(l) = last_log
        && l.index >= from
    {
        let entries = log.try_get_log_entries(from..=l.index).await?;
        // Apply through the state machine's own path, without responders.
        let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
        sm.apply(stream).await?;
        last = Some(l);
    }
    let Some(last) = last else {
        return Err(io::Error::other("this manager has no state to start a new cluster from"));
    };
    let membership =
        Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, BasicNode::new(addr.to_owned()))]))
            .map_err(|e| io::Error::other(e.to_string()))?;
    sm.set_membership(StoredMembership::new(Some(last), membership));
    // The snapshot now holds the whole state and the new membership...
    sm.build_snapshot().await?;
    // ...so the log can go, up to and including its last entry.
    log.purge(last).await?;
    log.save_committed(Some(last)).await?;
    Ok(())
}
