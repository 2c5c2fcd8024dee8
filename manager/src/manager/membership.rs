//! Who belongs to the cluster: starting it (`init`), joining it (managers through
//! Raft membership, workers as node objects), and demoting, promoting and removing
//! managers under a quorum guard. Calls made on a follower are carried to the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers};
use shoal_api::Meta;
use shoal_api::cluster::{Cluster, ClusterSpec};
use shoal_proto::raft as pb;

use super::certs::{Need, new_tokens};
use super::error::ManagerError;
use super::tokens::{api_token, read_only_api_token};
use super::{Manager, client};
use crate::store::{Change, Kind, Object, StoreError, Transaction};

/// Refuses to remove `raft_id` from `voters` when the managers left would not be a
/// majority of reachable ones (unless `force`).
fn check_quorum(
    voters: &BTreeSet<u64>,
    raft_id: u64,
    reachable_now: &BTreeSet<u64>,
    force: bool,
) -> Result<(), ManagerError> {
    if !voters.contains(&raft_id) {
        return Err(ManagerError::Store(StoreError::NotFound { kind: Kind::Node, id: raft_id.to_string() }));
    }
    let remaining: Vec<u64> = voters.iter().copied().filter(|v| *v != raft_id).collect();
    let reachable = remaining.iter().filter(|v| reachable_now.contains(v)).count();
    if !force && (remaining.is_empty() || reachable < remaining.len() / 2 + 1) {
        return Err(ManagerError::NoMajority { reachable, remaining: remaining.len() });
    }
    Ok(())
}

impl Manager {
    /// Whether this manager belongs to a cluster already (its log says so).
    pub async fn is_member(&self) -> Result<bool, ManagerError> {
        self.raft.is_initialized().await.map_err(|e| ManagerError::raft("read its membership", e))
    }

    /// Starts a new cluster with this manager as its only member, and stores the
    /// cluster object with fresh join tokens.
    pub async fn init(&self) -> Result<Cluster, ManagerError> {
        if self.is_member().await? {
            return Err(ManagerError::AlreadyMember);
        }
        let members = BTreeMap::from([(self.id, BasicNode::new(self.advertise.clone()))]);
        self.raft.initialize(members).await.map_err(|e| ManagerError::raft("start a new cluster", e))?;
        self.wait_leader(Duration::from_secs(30)).await?;
        let cluster_id = shoal_api::object::new_id();
        let (ca, root) = self.make_ca(&cluster_id)?;
        let cluster = Cluster {
            id: cluster_id.clone(),
            meta: Meta::new(chrono::Utc::now()),
            spec: ClusterSpec::default(),
            join_tokens: new_tokens(&root)?,
            api_token: api_token(),
            read_only_api_token: read_only_api_token(),
            ca,
            data_path_keys: Default::default(),
            unlock_key: String::new(),
        };
        self.propose(Transaction {
            changes: vec![Change::Create { object: Object::Cluster(cluster.clone()) }],
        })
        .await?;
        Ok(cluster)
    }

    /// Joins the cluster a manager at `addr` belongs to, with a manager join token:
    /// first a manager certificate (the CA checked against the token before the
    /// token is sent), then a place in the Raft group. Returns once this manager is
    /// a voter.
    pub async fn join(&self, addr: &str, join_token: &str) -> Result<(), ManagerError> {
        self.enroll(addr, join_token).await?;
        let mut client = client::membership(&self.creds, addr)?;
        let req = pb::JoinRequest {
            token: join_token.to_owned(),
            node_id: self.id.to_string(),
            hostname: String::new(),
            advertise_addr: self.advertise.clone(),
        };
        client.join(req).await.map_err(|s| ManagerError::from_status(addr, s))?;
        Ok(())
    }

    /// Admits a manager asking to join the Raft group, holding a manager
    /// certificate (or a manager forwarding its request) and the manager token: it
    /// is added as a learner, caught up, then made a voter. (Workers join with
    /// [`Manager::issue_certificate`] alone.)
    pub async fn admit(
        &self,
        peer: Option<&shoal_pki::Peer>,
        req: pb::JoinRequest,
    ) -> Result<pb::JoinReply, ManagerError> {
        self.authorize(peer, Need::Manager)?;
        if !self.is_leader() {
            let leader = self.leader_addr()?;
            let mut client = client::membership(&self.creds, &leader)?;
            return client
                .join(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| ManagerError::from_status(&leader, s));
        }
        let cluster = self.cluster().ok_or(ManagerError::NotInitialized)?;
        if req.token != cluster.join_tokens.manager || req.token.is_empty() {
            tracing::warn!(addr = %req.advertise_addr, "refused a join with a wrong token");
            return Err(ManagerError::BadToken);
        }
        let raft_id: u64 =
            req.node_id.parse().map_err(|_| ManagerError::MalformedManagerId(req.node_id.clone()))?;
        let node = BasicNode::new(req.advertise_addr.clone());
        self.raft
            .add_learner(raft_id, node, true)
            .await
            .map_err(|e| ManagerError::raft("add a learner", e))?;
        self.change_membership(
            ChangeMembers::AddVoterIds(BTreeSet::from([raft_id])),
            false,
            "make the new manager a voter",
        )
        .await?;
        Ok(pb::JoinReply {
            cluster_id: cluster.id,
            node_id: req.node_id,
            role: "manager".into(),
            raft_id,
            managers: self.managers().into_values().collect(),
        })
    }

    /// Removes a manager from the Raft group. Refused when the managers left could not
    /// form a majority of the reachable ones, unless `force`.
    pub async fn remove_manager(&self, raft_id: u64, force: bool) -> Result<(), ManagerError> {
        self.change_role(raft_id, force, false).await
    }

    /// Demotes a manager: it stops voting and keeps receiving the log as a learner
    /// (the same quorum guard as removal applies).
    pub async fn demote_manager(&self, raft_id: u64, force: bool) -> Result<(), ManagerError> {
        self.change_role(raft_id, force, true).await
    }

    /// Whether the manager with Raft id `raft_id` votes.
    pub fn is_voter(&self, raft_id: u64) -> bool {
        let m = self.raft.metrics().borrow_watched().membership_config.clone();
        m.membership().voter_ids().any(|v| v == raft_id)
    }

    /// Raft id → address of every voting manager.
    pub fn managers(&self) -> BTreeMap<u64, String> {
        let m = self.raft.metrics().borrow_watched().membership_config.clone();
        m.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect()
    }

    /// Managers the leader has heard from lately (itself included); empty on a
    /// follower, which does not track its peers.
    pub fn reachable_managers(&self) -> BTreeSet<u64> {
        use openraft::Instant as _;
        let metrics = self.raft.metrics().borrow_watched().clone();
        let Some(heartbeats) = metrics.heartbeat.as_ref() else { return BTreeSet::new() };
        let mut out: BTreeSet<u64> = heartbeats
            .iter()
            .filter(|(_, at)| at.as_ref().is_some_and(|at| at.elapsed() < self.unreachable_after))
            .map(|(id, _)| *id)
            .collect();
        out.insert(self.id);
        out
    }

    /// The managers the leader heard from lately, asked of the leader when this
    /// manager follows; `None` when no leader answers.
    pub async fn reachable_anywhere(&self) -> Option<BTreeSet<u64>> {
        if self.is_leader() {
            return Some(self.reachable_managers());
        }
        let addr = self.leader_addr().ok()?;
        let mut client = client::raft(&self.creds, &addr).ok()?;
        let mut req = tonic::Request::new(pb::ReadIndexRequest {});
        req.set_timeout(Duration::from_secs(2));
        let reply = client.read_index(req).await.ok()?.into_inner();
        matches!(reply.result, Some(pb::read_index_reply::Result::Index(_)))
            .then(|| reply.reachable.into_iter().collect())
    }

    async fn change_role(
        &self,
        raft_id: u64,
        force: bool,
        keep_as_learner: bool,
    ) -> Result<(), ManagerError> {
        if !self.is_leader() {
            return self
                .leave_on_leader(pb::LeaveRequest { raft_id, force, keep_as_learner, ..Default::default() })
                .await;
        }
        let membership = self.raft.metrics().borrow_watched().membership_config.clone();
        let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
        check_quorum(&voters, raft_id, &self.reachable_managers(), force)?;
        self.change_membership(
            ChangeMembers::RemoveVoters(BTreeSet::from([raft_id])),
            keep_as_learner,
            "remove a voter",
        )
        .await
    }

    /// Removes a demoted manager (a learner) from the group for good.
    pub async fn remove_learner(&self, raft_id: u64) -> Result<(), ManagerError> {
        if !self.is_leader() {
            return self
                .leave_on_leader(pb::LeaveRequest { raft_id, learner: true, ..Default::default() })
                .await;
        }
        if self.is_voter(raft_id) {
            return Err(ManagerError::StillVotes(raft_id));
        }
        self.change_membership(
            ChangeMembers::RemoveNodes(BTreeSet::from([raft_id])),
            false,
            "remove a learner",
        )
        .await
    }

    /// Makes a demoted manager (a learner) a voter again.
    pub async fn promote_manager(&self, raft_id: u64) -> Result<(), ManagerError> {
        if !self.is_leader() {
            return self
                .leave_on_leader(pb::LeaveRequest { raft_id, promote: true, ..Default::default() })
                .await;
        }
        if !self.managers().contains_key(&raft_id) {
            return Err(ManagerError::Store(StoreError::NotFound {
                kind: Kind::Node,
                id: raft_id.to_string(),
            }));
        }
        self.change_membership(
            ChangeMembers::AddVoterIds(BTreeSet::from([raft_id])),
            false,
            "make a learner a voter",
        )
        .await
    }

    /// Changes the Raft group (on the leader); `retain` keeps removed voters as learners.
    async fn change_membership(
        &self,
        change: ChangeMembers<u64, BasicNode>,
        retain: bool,
        what: &'static str,
    ) -> Result<(), ManagerError> {
        self.raft.change_membership(change, retain).await.map_err(|e| ManagerError::raft(what, e))?;
        Ok(())
    }

    /// Sends a membership change to the leader.
    async fn leave_on_leader(&self, req: pb::LeaveRequest) -> Result<(), ManagerError> {
        let leader = self.leader_addr()?;
        let mut client = client::membership(&self.creds, &leader)?;
        client.leave(req).await.map(drop).map_err(|s| ManagerError::from_status(&leader, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn removing_a_manager_keeps_a_majority_of_reachable_ones() {
        // (voters, removed, reachable, force) → Ok, or the (reachable, remaining) refused
        type Case = (&'static [u64], u64, &'static [u64], bool, Result<(), (usize, usize)>);
        let cases: [Case; 7] = [
            (&[1, 2, 3], 3, &[1, 2, 3], false, Ok(())),
            (&[1, 2, 3], 3, &[1, 2], false, Ok(())),
            (&[1, 2, 3], 3, &[1], false, Err((1, 2))),
            (&[1, 2, 3], 3, &[1], true, Ok(())),
            (&[1, 2, 3, 4, 5], 5, &[1, 2], false, Err((2, 4))),
            (&[1, 2, 3, 4, 5], 5, &[1, 2, 3], false, Ok(())),
            (&[1], 1, &[1], false, Err((0, 0))),
        ];
        for (voters, removed, reachable, force, want) in cases {
            let got = check_quorum(&ids(voters), removed, &ids(reachable), force).map_err(|e| match e {
                ManagerError::NoMajority { reachable, remaining } => (reachable, remaining),
                other => panic!("unexpected {other:?}"),
            });
            assert_eq!(got, want, "remove {removed} of {voters:?}, reachable {reachable:?}, force {force}");
        }
    }

    #[test]
    fn removing_a_manager_that_does_not_vote_is_not_found() {
        let e = check_quorum(&ids(&[1, 2, 3]), 9, &ids(&[1, 2, 3]), true).unwrap_err();
        assert!(matches!(e, ManagerError::Store(StoreError::NotFound { ref id, .. }) if id == "9"), "{e:?}");
    }
}
