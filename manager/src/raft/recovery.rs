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

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use openraft::entry::RaftEntry;
    use openraft::storage::IOFlushed;
    use openraft::type_config::TypeConfigExt;

    use super::*;
    use crate::raft::proposal::Proposal;
    use crate::raft::state_machine::SnapshotPolicy;
    use crate::raft::types::TypeConfig as C;
    use crate::store::{Change, Kind, Object, Transaction};

    fn create_service(index: u64) -> <C as openraft::RaftTypeConfig>::Entry {
        let svc = shoal_api::service::Service {
            id: format!("svc{index}"),
            meta: shoal_api::Meta::new(chrono::DateTime::UNIX_EPOCH),
            spec: shoal_api::service::ServiceSpec::new(format!("s{index}"), "busybox"),
            previous_spec: None,
            update_status: None,
            endpoint: Default::default(),
        };
        let tx = Transaction { changes: vec![Change::Create { object: Object::Service(svc) }] };
        let log_id = openraft::testing::log_id::<C>(1, 1, index);
        <C as openraft::RaftTypeConfig>::Entry::new(log_id, EntryPayload::Normal(Proposal::new(tx).unwrap()))
    }

    #[tokio::test]
    async fn a_forced_new_cluster_keeps_entries_not_known_to_be_committed() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = crate::raft::seal::Sealer::new(&crate::raft::seal::Key::random());
        let mut log = LogStore::open(&dir.path().join("raft"), sealer.clone()).unwrap();
        let sm = StateMachine::open(&dir.path().join("state"), SnapshotPolicy::default(), sealer).unwrap();
        let (tx, synced) = C::oneshot();
        log.append((1..=3).map(create_service), IOFlushed::signal(tx)).await.unwrap();
        synced.await.unwrap().unwrap();
        // Only the first is known committed here (the index on disk lags).
        log.save_committed(Some(openraft::testing::log_id::<C>(1, 1, 1))).await.unwrap();

        force_new_cluster(7, "127.0.0.1:1", &mut log, &sm).await.unwrap();
        let names: Vec<String> =
            sm.shared().read(|s| s.list(Kind::Service).filter_map(|o| o.name().map(str::to_owned)).collect());
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(log.read_committed().await.unwrap().map(|l| l.index()), Some(3));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(
            state.last_purged_log_id.map(|l| l.index()),
            Some(3),
            "the log is folded into the snapshot"
        );
        let (_, membership) = sm.clone().applied_state().await.unwrap();
        assert_eq!(membership.membership().voter_ids().collect::<Vec<_>>(), vec![7]);
    }
}
