//! `/v1/nodes`: nodes with their live manager status; availability, labels and role
//! changes (a role change of a manager is a Raft membership change); removal; and
//! their standalone containers' attachments to attachable networks.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use shoal_api::node::{ContainerAttachment, NodeRole, NodeState, Reachability};
use shoal_api::wire::{
    AttachRequest, ErrorBody, ListOptions, NodeUpdate, ReadOptions, RemoveOptions, Written,
};
use shoal_api::{Node, Validate};

use super::{Api, ApiError, Body, Query, now, polling};
use crate::manager::Manager;
use crate::plan::{self, PlanError, find};
use crate::store::{Change, Kind, Object, Store, Transaction, queries};

pub(crate) fn node<'a>(store: &'a Store, key: &str) -> Result<&'a Node, PlanError> {
    match find(store, Kind::Node, key)? {
        Object::Node(n) => Ok(n),
        _ => unreachable!("the node index holds nodes"),
    }
}

/// Fills in what only the managers' Raft state knows: who leads, who is reachable
/// (`reachable`: the leader's view, asked of it on a follower; `None` if unknown).
pub(crate) fn live(manager: &Manager, reachable: Option<&BTreeSet<u64>>, mut n: Node) -> Node {
    if let Some(ms) = n.manager_status.as_mut() {
        let status = manager.status();
        ms.leader = status.leader == Some(ms.raft_id);
        ms.reachability = match reachable {
            None => Reachability::Unknown,
            Some(r) if r.contains(&ms.raft_id) => Reachability::Reachable,
            Some(_) => Reachability::Unreachable,
        };
        if ms.leader || ms.raft_id == manager.id() {
            ms.reachability = Reachability::Reachable;
        }
    }
    n
}

/// The leader's view of reachability, when some of `nodes` are managers.
pub(crate) async fn reachability(
    manager: &Manager,
    mut nodes: impl Iterator<Item = &Node>,
) -> Option<BTreeSet<u64>> {
    if nodes.any(|n| n.manager_status.is_some()) { manager.reachable_anywhere().await } else { None }
}

/// Lists nodes, a page at a time with `limit`; with `wait_index`, once nodes changed
/// past it.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", params(ListOptions),
    responses((status = 200, description = "Nodes, by hostname then id. `X-Shoal-Index`: the last index that \
                 changed a node; `X-Shoal-Next-Cursor`: the next page's `cursor`", body = Vec<Node>),
              (status = 400, description = "A malformed cursor, limit or wait", body = ErrorBody)))]
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(opts): Query<ListOptions>,
) -> Result<Response, ApiError> {
    let after: Option<(String, String)> = api
        .start_list(&[Kind::Node], opts.cursor.as_deref(), opts.limit, opts.wait_index, opts.wait.as_deref())
        .await?;
    let ((nodes, next), index) = api
        .read(opts.consistent, |s| {
            let page = polling::page(
                queries::nodes(s).cloned(),
                |n| (n.description.hostname.clone(), n.id.clone()),
                after.as_ref(),
                opts.limit,
            );
            (page, s.indexes().of(&[Kind::Node]))
        })
        .await?;
    let reachable = reachability(&api.manager, nodes.iter()).await;
    let nodes: Vec<Node> = nodes.into_iter().map(|n| live(&api.manager, reachable.as_ref(), n)).collect();
    let body = bytes::Bytes::from(serde_json::to_vec(&nodes).expect("nodes serialize"));
    // No ETag: the leader and reachability shown are not in the store.
    Ok(polling::reply(&headers, polling::Listed { body, index, next }, false))
}

/// Shows a node.
#[utoipa::path(get, path = "/v1/nodes/{id}", tag = "nodes",
    params(("id" = String, Path, description = "Id, hostname or unique id prefix"), ReadOptions),
    responses((status = 200, description = "The node", body = Node),
              (status = 404, description = "No such node", body = ErrorBody)))]
pub(super) async fn inspect(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Response, ApiError> {
    let (n, index) = api
        .read(opts.consistent, |s| node(s, &key).map(|n| (n.clone(), s.indexes().of(&[Kind::Node]))))
        .await??;
    let reachable = reachability(&api.manager, std::iter::once(&n)).await;
    Ok(polling::reply_json(&headers, &live(&api.manager, reachable.as_ref(), n), index, false))
}

/// Replaces a node's spec: availability, labels, role.
#[utoipa::path(put, path = "/v1/nodes/{id}", tag = "nodes", request_body = NodeUpdate,
    params(("id" = String, Path, description = "Id, hostname or unique id prefix")),
    responses((status = 200, description = "Updated", body = Written),
              (status = 404, description = "No such node", body = ErrorBody),
              (status = 409, description = "The node changed since `version`, or a demotion would lose quorum", body = ErrorBody),
              (status = 422, description = "An invalid spec", body = ErrorBody)))]
pub(crate) async fn update(
    State(api): State<Api>,
    Path(key): Path<String>,
    Body(req): Body<NodeUpdate>,
) -> Result<Json<Written>, ApiError> {
    req.spec.validate().map_err(PlanError::from)?;
    let current = api.read(true, |s| node(s, &key).cloned()).await??;
    if current.meta.version != req.version {
        return Err(PlanError::Stale {
            what: format!("node {}", current.id),
            version: current.meta.version,
            read: req.version,
        }
        .into());
    }
    // A manager's role is its place in the Raft group: change that first, so the
    // stored role never claims what Raft refused.
    if let Some(ms) = &current.manager_status {
        match (current.spec.role, req.spec.role) {
            (NodeRole::Manager, NodeRole::Worker) => api.manager.demote_manager(ms.raft_id, false).await?,
            (NodeRole::Worker, NodeRole::Manager) => api.manager.promote_manager(ms.raft_id).await?,
            _ => {}
        }
    }
    let mut new = current.clone();
    new.spec = req.spec;
    new.meta.updated_at = now();
    let change = Change::Update { object: Object::Node(new), expected_version: req.version };
    let version = api.manager.propose(Transaction { changes: vec![change] }).await?;
    Ok(Json(Written { id: current.id, version }))
}

/// Removes a node. A manager must be demoted first; a worker must be down unless
/// `force`.
#[utoipa::path(delete, path = "/v1/nodes/{id}", tag = "nodes",
    params(("id" = String, Path, description = "Id, hostname or unique id prefix"), RemoveOptions),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such node", body = ErrorBody),
              (status = 409, description = "A manager that still votes, or a node that is up", body = ErrorBody)))]
pub(crate) async fn remove(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(opts): Query<RemoveOptions>,
) -> Result<StatusCode, ApiError> {
    let current = api.read(true, |s| node(s, &key).cloned()).await??;
    if let Some(ms) = &current.manager_status {
        if api.manager.is_voter(ms.raft_id) {
            return Err(PlanError::NodeIsManager { hostname: current.description.hostname.clone() }.into());
        }
        if api.manager.managers().contains_key(&ms.raft_id) {
            api.manager.remove_learner(ms.raft_id).await?;
        }
    } else if current.status.state == NodeState::Ready && !opts.force {
        return Err(PlanError::NodeIsUp { hostname: current.description.hostname.clone() }.into());
    }
    // Its certificate is revoked in the same write: from this index on, no manager
    // accepts it, however long it had left to run.
    api.manager.remove_node(&current.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Puts a standalone container of the node on an attachable network
/// (`shoal container run --network`): the managers give it an address there, and the
/// node wires it as it wires tasks.
#[utoipa::path(post, path = "/v1/nodes/{id}/attachments", tag = "nodes", request_body = AttachRequest,
    params(("id" = String, Path, description = "Id, hostname or unique id prefix")),
    responses((status = 201, description = "Attached (or attached already)", body = ContainerAttachment),
              (status = 404, description = "No such node or network", body = ErrorBody),
              (status = 409, description = "The network is full", body = ErrorBody),
              (status = 422, description = "The network is not attachable", body = ErrorBody)))]
pub(super) async fn attach(
    State(api): State<Api>,
    Path(key): Path<String>,
    Body(req): Body<AttachRequest>,
) -> Result<(StatusCode, Json<ContainerAttachment>), ApiError> {
    let now = now();
    let (_, a) = api
        .modify(|s| {
            let current = node(s, &key)?;
            let (new, a) = plan::networks::attach(s, current, &req.network, &req.container_id, now)?;
            let changes = if &new == current {
                Vec::new()
            } else {
                vec![Change::Update { object: Object::Node(new), expected_version: current.meta.version }]
            };
            Ok((Transaction { changes }, a))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(a)))
}

/// Takes a standalone container of the node off its networks; its addresses are free
/// again.
#[utoipa::path(delete, path = "/v1/nodes/{id}/attachments/{container}", tag = "nodes",
    params(("id" = String, Path, description = "Id, hostname or unique id prefix"),
           ("container" = String, Path, description = "The container's id")),
    responses((status = 204, description = "Detached (or was not attached)"),
              (status = 404, description = "No such node", body = ErrorBody)))]
pub(super) async fn detach(
    State(api): State<Api>,
    Path((key, container)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let now = now();
    api.modify(|s| {
        let current = node(s, &key)?;
        let changes = plan::networks::detach(current, &container, now)
            .map(|n| Change::Update { object: Object::Node(n), expected_version: current.meta.version })
            .into_iter()
            .collect();
        Ok((Transaction { changes }, ()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
