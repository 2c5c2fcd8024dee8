//! The in-memory, indexed cluster state that Raft replicates: objects by kind and id,
//! name indexes, tasks by service and by node. `apply` is deterministic (no clock, no
//! randomness): every manager that applies the same entries holds the same state.

mod events;
mod object;
pub mod queries;
mod transaction;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_api::service::PublishMode;

pub use events::{Action, Event, EventLog, WatchError};
pub use object::{Kind, Object};
pub use transaction::{Change, MAX_TRANSACTION_BYTES, StoreError, Transaction};

/// The cluster state at one log index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// Objects are shared, so copying the store (for a snapshot) copies pointers, not
    /// specs: the copy is made under the lock that `apply` waits on.
    objects: BTreeMap<Kind, BTreeMap<String, Arc<Object>>>,
    /// Raft log index of the last transaction applied.
    last_index: u64,
    /// Per kind, the last index that changed one of its objects (see [`Indexes`]).
    #[serde(skip)]
    indexes: Indexes,
    /// Name → id, per kind (hashed: names often share long prefixes).
    #[serde(skip)]
    names: HashMap<Kind, HashMap<String, String>>,
    /// Service id → its tasks by id, sharing the objects: a controller walks a
    /// service's tasks without looking each one up (at 100,000 tasks, the lookups
    /// were most of a pass).
    #[serde(skip)]
    tasks_by_service: BTreeMap<String, BTreeMap<String, Arc<Object>>>,
    /// Node id → its tasks by id, the same way.
    #[serde(skip)]
    tasks_by_node: BTreeMap<String, BTreeMap<String, Arc<Object>>>,
    /// Overlay addresses held, (network id, address) → holder (a service's VIP, a
    /// live task's address, a node's ingress address). A task that stopped for good
    /// holds none: its address is free again.
    #[serde(skip)]
    addresses: HashMap<(String, Ipv4Addr), String>,
}

/// Per kind, the highest log index at which an object of that kind was created,
/// updated or deleted: what a blocking list query waits on, so task heartbeats do not
/// wake a dashboard polling services. Derived from the log, not part of the state (two
/// stores with the same objects at the same index are equal whatever it says); after a
/// snapshot is loaded every kind starts at the snapshot's index, so it never goes
/// backwards on a running manager.
#[derive(Debug, Clone, Copy, Default)]
pub struct Indexes {
    kinds: [u64; Kind::ALL.len()],
}

impl PartialEq for Indexes {
    fn eq(&self, _: &Indexes) -> bool {
        true
    }
}

impl Indexes {
    /// Where `kind` is in [`Kind::ALL`].
    pub(crate) fn slot(kind: Kind) -> usize {
        Kind::ALL.iter().position(|k| *k == kind).expect("every kind is in Kind::ALL")
    }

    /// The highest index of any of `kinds` (0 for none).
    pub fn of(&self, kinds: &[Kind]) -> u64 {
        kinds.iter().map(|k| self.kinds[Indexes::slot(*k)]).max().unwrap_or(0)
    }

    /// The kinds whose index differs from `before`'s, each with its index now.
    pub fn changed_since(&self, before: &Indexes) -> impl Iterator<Item = (Kind, u64)> + '_ {
        let before = before.kinds;
        (0..Kind::ALL.len())
            .filter(move |&i| self.kinds[i] != before[i])
            .map(|i| (Kind::ALL[i], self.kinds[i]))
    }
}

/// How to undo one applied change, for all-or-nothing transactions.
enum Undo {
    Remove(Kind, String),
    Restore(Arc<Object>),
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// Rebuilds the secondary indexes (after deserializing a snapshot).
    pub fn reindex(&mut self) {
        self.names.clear();
        self.tasks_by_service.clear();
        self.tasks_by_node.clear();
        self.addresses.clear();
        self.indexes = Indexes { kinds: [self.last_index; Kind::ALL.len()] };
        let all: Vec<Arc<Object>> = self.objects.values().flat_map(|m| m.values().cloned()).collect();
        for o in &all {
            self.index(o);
        }
    }

    /// Raft log index of the last applied transaction.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Per kind, the last index that changed one of its objects.
    pub fn indexes(&self) -> Indexes {
        self.indexes
    }

    /// The object of `kind` with `id`.
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Object> {
        self.objects.get(&kind)?.get(id).map(|o| o.as_ref())
    }

    /// The object of `kind` named `name`.
    pub fn by_name(&self, kind: Kind, name: &str) -> Option<&Object> {
        self.get(kind, self.names.get(&kind)?.get(name)?)
    }

    /// Every object of `kind`, by id.
    pub fn list(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        self.objects.get(&kind).into_iter().flat_map(|m| m.values().map(|o| o.as_ref()))
    }

    /// A copy with the objects and the index but not the secondary indexes (for a
    /// snapshot, which needs no more; the copy is made under the lock `apply` waits on).
    pub fn objects_only(&self) -> Store {
        Store {
            objects: self.objects.clone(),
            last_index: self.last_index,
            indexes: self.indexes,
            ..Store::default()
        }
    }

    /// Every object, by kind and then id.
    pub fn objects(&self) -> impl Iterator<Item = &Arc<Object>> {
        self.objects.values().flat_map(BTreeMap::values)
    }

    /// How many objects of `kind` there are.
    pub fn count(&self, kind: Kind) -> usize {
        self.objects.get(&kind).map_or(0, BTreeMap::len)
    }

    /// Tasks of a service.
    pub fn tasks_of_service(&self, service_id: &str) -> impl Iterator<Item = &Object> {
        self.tasks_by_service.get(service_id).into_iter().flat_map(|m| m.values().map(Arc::as_ref))
    }

    /// Who holds `addr` on network `network_id`, if anyone.
    pub fn address_holder(&self, network_id: &str, addr: Ipv4Addr) -> Option<&str> {
        self.addresses.get(&(network_id.to_owned(), addr)).map(String::as_str)
    }

    /// Tasks assigned to a node.
    pub fn tasks_on_node(&self, node_id: &str) -> impl Iterator<Item = &Object> {
        self.tasks_by_node.get(node_id).into_iter().flat_map(|m| m.values().map(Arc::as_ref))
    }

    fn index(&mut self, shared: &Arc<Object>) {
        let o = shared.as_ref();
        if let Some(name) = o.name() {
            self.names.entry(o.kind()).or_default().insert(name.to_owned(), o.id().to_owned());
        }
        for key in held_addresses(o) {
            self.addresses.insert(key, o.id().to_owned());
        }
        if let Object::Task(t) = o {
            self.tasks_by_service
                .entry(t.service_id.clone())
                .or_default()
                .insert(t.id.clone(), shared.clone());
            if let Some(n) = &t.node_id {
                self.tasks_by_node.entry(n.clone()).or_default().insert(t.id.clone(), shared.clone());
            }
        }
    }

    fn unindex(&mut self, o: &Object) {
        for key in held_addresses(o) {
            if self.addresses.get(&key).map(String::as_str) == Some(o.id()) {
                self.addresses.remove(&key);
            }
        }
        if let Some(name) = o.name()
            && let Some(names) = self.names.get_mut(&o.kind())
            && names.get(name).map(String::as_str) == Some(o.id())
        {
            names.remove(name);
            if names.is_empty() {
                self.names.remove(&o.kind());
            }
        }
        if let Object::Task(t) = o {
            if let Some(set) = self.tasks_by_service.get_mut(&t.service_id) {
                set.remove(&t.id);
                if set.is_empty() {
                    self.tasks_by_service.remove(&t.service_id);
                }
            }
            if let Some(n) = &t.node_id
                && let Some(set) = self.tasks_by_node.get_mut(n)
            {
                set.remove(&t.id);
                if set.is_empty() {
                    self.tasks_by_node.remove(n);
                }
            }
        }
    }

    fn insert(&mut self, o: Arc<Object>) -> Option<Arc<Object>> {
        let old = self.objects.entry(o.kind()).or_default().insert(o.id().to_owned(), o.clone());
        if let Some(old) = &old {
            self.unindex(old);
        }
        self.index(&o);
        old
    }

    fn remove(&mut self, kind: Kind, id: &str) -> Option<Arc<Object>> {
        let map = self.objects.get_mut(&kind)?;
        let old = map.remove(id)?;
        if map.is_empty() {
            self.objects.remove(&kind);
        }
        self.unindex(&old);
        Some(old)
    }

    /// Applies `tx` at log `index`: every change, or none with the reason. The events
    /// of the applied changes are returned, stamped with `index`.
    pub fn apply(&mut self, index: u64, tx: Transaction) -> Result<Vec<Event>, StoreError> {
        let mut undo: Vec<Undo> = Vec::with_capacity(tx.changes.len());
        let mut events = Vec::with_capacity(tx.changes.len());
        for change in tx.changes {
            match self.apply_one(index, change) {
                Ok((u, e)) => {
                    undo.push(u);
                    events.push(e);
                }
                Err(err) => {
                    self.rollback(undo);
                    self.last_index = index;
                    return Err(err);
                }
            }
        }
        if let Err(err) = self.check_references(events.iter().map(|e| (e.action, e.object.as_ref()))) {
            self.rollback(undo);
            self.last_index = index;
            return Err(err);
        }
        self.last_index = index;
        for e in &events {
            self.indexes.kinds[Indexes::slot(e.object.kind())] = index;
        }
        Ok(events)
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Remove(kind, id) => {
                    self.remove(kind, &id);
                }
                Undo::Restore(o) => {
                    self.insert(o);
                }
            }
        }
    }

    /// Checks `tx` against the current state without changing it (the leader stages a
    /// transaction this way before proposing it).
    /// The changes are applied and then undone, so the cost is that of the changes,
    /// not of the store.
    pub fn check(&mut self, tx: &Transaction) -> Result<(), StoreError> {
        if let Some(result) = self.check_one(tx) {
            return result;
        }
        let last_index = self.last_index;
        let mut undo = Vec::with_capacity(tx.changes.len());
        let mut result = Ok(());
        for change in &tx.changes {
            match self.apply_one(last_index, change.clone()) {
                Ok((u, _)) => undo.push(u),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.check_references(written(tx));
        }
        self.rollback(undo);
        self.last_index = last_index;
        result
    }

    /// Checks a one-change transaction (most writes) without changing anything: its own
    /// rules and the references it makes do not depend on itself, so the current state
    /// answers. `None` for a transaction of several changes (see [`Store::check`]).
    pub fn check_one(&self, tx: &Transaction) -> Option<Result<(), StoreError>> {
        let [change] = tx.changes.as_slice() else { return None };
        Some(self.validate(change).and_then(|()| self.check_references(written(tx))))
    }

    /// Checks `change` against the current state, changing nothing.
    fn validate(&self, change: &Change) -> Result<(), StoreError> {
        match change {
            Change::Create { object } => {
                let (kind, id) = (object.kind(), object.id());
                if id.is_empty() {
                    return Err(StoreError::Invalid { message: format!("a {kind} needs an id") });
                }
                if self.get(kind, id).is_some() {
                    return Err(StoreError::Exists { kind, id: id.to_owned() });
                }
                if kind == Kind::Cluster && self.count(Kind::Cluster) > 0 {
                    return Err(StoreError::Invalid {
                        message: "there is one cluster object already".into(),
                    });
                }
                self.check_addresses(object)?;
                self.check_name(object)
            }
            Change::Update { object, expected_version } => {
                let (kind, id) = (object.kind(), object.id());
                let current =
                    self.get(kind, id).ok_or_else(|| StoreError::NotFound { kind, id: id.to_owned() })?;
                let actual = current.meta().version;
                if actual != *expected_version {
                    return Err(StoreError::Conflict {
                        kind,
                        id: id.to_owned(),
                        expected: *expected_version,
                        actual,
                    });
                }
                // Secrets and configs are immutable but for their labels, as in Swarm.
                let payloads = match (object, current) {
                    (Object::Secret(n), Object::Secret(o)) => Some((&n.spec, &o.spec)),
                    (Object::Config(n), Object::Config(o)) => Some((&n.spec, &o.spec)),
                    _ => None,
                };
                if let Some((new, old)) = payloads
                    && (new.name != old.name || new.data != old.data)
                {
                    return Err(StoreError::Invalid {
                        message: format!(
                            "{kind} {} cannot change, only its labels can: create a new {kind} with the new \
                             data and update the service to use it",
                            old.name
                        ),
                    });
                }
                // A task may keep naming a node that was removed (to be stopped and
                // reaped), but may not be moved to one that does not exist.
                if let (Object::Task(new), Object::Task(old)) = (object, current)
                    && new.node_id != old.node_id
                    && let Some(n) = &new.node_id
                    && self.get(Kind::Node, n).is_none()
                {
                    return Err(StoreError::Reference {
                        message: format!("task {id} is assigned to node {n}, which does not exist"),
                    });
                }
                self.check_addresses(object)?;
                self.check_name(object)
            }
            Change::Delete { kind, id, expected_version } => {
                let current = self
                    .get(*kind, id)
                    .ok_or_else(|| StoreError::NotFound { kind: *kind, id: id.clone() })?;
                if matches!(kind, Kind::Network | Kind::Secret | Kind::Config) {
                    let name = current.name().map(str::to_owned);
                    let mut users: Vec<&str> = self
                        .list(Kind::Service)
                        .filter_map(|o| match o {
                            Object::Service(s) if service_uses(s, *kind, id, name.as_deref()) => {
                                Some(s.spec.name.as_str())
                            }
                            _ => None,
                        })
                        .collect();
                    users.sort_unstable();
                    if !users.is_empty() {
                        let (noun, them) =
                            if users.len() == 1 { ("service", "it") } else { ("services", "them") };
                        return Err(StoreError::Reference {
                            message: format!(
                                "{kind} {} is used by {noun} {}: update or remove {them} first",
                                name.as_deref().unwrap_or(id),
                                users.join(", ")
                            ),
                        });
                    }
                }
                if let Object::Network(net) = current {
                    self.check_network_unused(net)?;
                }
                if let Some(expected) = expected_version
                    && current.meta().version != *expected
                {
                    return Err(StoreError::Conflict {
                        kind: *kind,
                        id: id.clone(),
                        expected: *expected,
                        actual: current.meta().version,
                    });
                }
                Ok(())
            }
        }
    }

    fn apply_one(&mut self, index: u64, change: Change) -> Result<(Undo, Event), StoreError> {
        self.validate(&change)?;
        match change {
            Change::Create { mut object } => {
                object.meta_mut().version = index;
                let o = Arc::new(object);
                self.insert(o.clone());
                Ok((
                    Undo::Remove(o.kind(), o.id().to_owned()),
                    Event { index, action: Action::Create, object: o },
                ))
            }
            Change::Update { mut object, .. } => {
                let created_at = self.get(object.kind(), object.id()).expect("validated").meta().created_at;
                object.meta_mut().version = index;
                object.meta_mut().created_at = created_at;
                let o = Arc::new(object);
                let old = self.insert(o.clone()).expect("validated");
                Ok((Undo::Restore(old), Event { index, action: Action::Update, object: o }))
            }
            Change::Delete { kind, id, .. } => {
                let old = self.remove(kind, &id).expect("validated");
                Ok((Undo::Restore(old.clone()), Event { index, action: Action::Delete, object: old }))
            }
        }
    }

    /// No overlay address is held twice: the allocator picks free ones, and this
    /// catches a race between two writers (the later one is refused and retried).
    fn check_addresses(&self, o: &Object) -> Result<(), StoreError> {
        for key in held_addresses(o) {
            if let Some(holder) = self.addresses.get(&key)
                && holder != o.id()
            {
                return Err(StoreError::AddressTaken {
                    network: key.0,
                    addr: key.1,
                    holder: holder.clone(),
                    id: o.id().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// A network goes only when nothing is on it: no live task has an address on it,
    /// and for the ingress network, no service publishes a port through the mesh.
    fn check_network_unused(&self, net: &shoal_api::Network) -> Result<(), StoreError> {
        if net.spec.ingress
            && let Some(s) = self.list(Kind::Service).find_map(|o| match o {
                Object::Service(s)
                    if s.spec.endpoint_spec.ports.iter().any(|p| p.publish_mode == PublishMode::Ingress) =>
                {
                    Some(s)
                }
                _ => None,
            })
        {
            return Err(StoreError::Reference {
                message: format!(
                    "network {} is the routing mesh of service {}, which publishes a port: remove the port or the service first",
                    net.spec.name, s.spec.name
                ),
            });
        }
        if !net.spec.ingress
            && let Some(node) =
                self.addresses.iter().find_map(|((n, _), holder)| match self.get(Kind::Node, holder) {
                    Some(Object::Node(node)) if n == &net.id => Some(node),
                    _ => None,
                })
        {
            return Err(StoreError::Reference {
                message: format!(
                    "network {} is in use by a standalone container on node {}: remove the container first",
                    net.spec.name, node.description.hostname
                ),
            });
        }
        if let Some((holder, _)) = self
            .addresses
            .iter()
            .map(|((n, _), holder)| (holder, n))
            .find(|(holder, n)| *n == &net.id && self.get(Kind::Task, holder).is_some())
        {
            return Err(StoreError::Reference {
                message: format!(
                    "network {} is in use by task {holder}: stop it (remove or update its service) first",
                    net.spec.name
                ),
            });
        }
        Ok(())
    }

    fn check_name(&self, o: &Object) -> Result<(), StoreError> {
        if let Some(name) = o.name()
            && let Some(holder) = self.names.get(&o.kind()).and_then(|n| n.get(name))
            && holder != o.id()
        {
            return Err(StoreError::NameTaken { kind: o.kind(), name: name.to_owned(), id: holder.clone() });
        }
        Ok(())
    }

    /// Referential rules, checked on the state after the transaction's changes: a new
    /// task's service exists, and its node; a service's networks, secrets and configs
    /// exist. (Deleting what a service uses is refused when the delete is applied; a
    /// task moved to another node is checked when its update is applied.)
    /// Checks what `written` (objects created or updated, as they are now stored or
    /// would be) names: a new task's service and node, a service's networks, secrets and
    /// configs.
    fn check_references<'a>(
        &self,
        written: impl IntoIterator<Item = (Action, &'a Object)>,
    ) -> Result<(), StoreError> {
        let err = |message: String| Err(StoreError::Reference { message });
        for (action, object) in written {
            match (action, object) {
                (Action::Create, Object::Task(t)) => {
                    if self.get(Kind::Service, &t.service_id).is_none() {
                        return err(format!(
                            "task {} names service {}, which does not exist",
                            t.id, t.service_id
                        ));
                    }
                    if let Some(n) = &t.node_id
                        && self.get(Kind::Node, n).is_none()
                    {
                        return err(format!("task {} is assigned to node {n}, which does not exist", t.id));
                    }
                }
                (Action::Create | Action::Update, Object::Service(s)) => {
                    self.check_service_refs(s)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_service_refs(&self, s: &shoal_api::Service) -> Result<(), StoreError> {
        let c = &s.spec.task_template.container;
        let lookups = s
            .spec
            .task_template
            .networks
            .iter()
            .map(|n| (Kind::Network, n.target.as_str()))
            .chain(c.secrets.iter().map(|r| (Kind::Secret, r.source.as_str())))
            .chain(c.configs.iter().map(|r| (Kind::Config, r.source.as_str())));
        for (kind, target) in lookups {
            if self.get(kind, target).is_none() && self.by_name(kind, target).is_none() {
                return Err(StoreError::Reference {
                    message: format!(
                        "service {} uses {kind} {target:?}, which does not exist: create it first",
                        s.spec.name
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The overlay addresses an object holds: a service's VIPs, a live task's addresses,
/// a node's ingress address and its standalone containers' addresses.
fn held_addresses(o: &Object) -> Vec<(String, Ipv4Addr)> {
    match o {
        Object::Service(s) => {
            s.endpoint.virtual_ips.iter().map(|v| (v.network_id.clone(), v.addr.addr())).collect()
        }
        Object::Task(t) if !t.status.state.is_terminal() => t
            .networks
            .iter()
            .flat_map(|n| n.addresses.iter().map(|a| (n.network_id.clone(), a.addr())))
            .collect(),
        Object::Node(n) => n
            .ingress
            .iter()
            .map(|a| (a.network_id.clone(), a.addr.addr()))
            .chain(n.attachments.iter().map(|a| (a.network_id.clone(), a.addr.addr())))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether service `s` refers to the object `kind`/`id` (by id or by `name`).
fn service_uses(s: &shoal_api::Service, kind: Kind, id: &str, name: Option<&str>) -> bool {
    let matches = |t: &str| t == id || name == Some(t);
    let c = &s.spec.task_template.container;
    match kind {
        Kind::Network => s.spec.task_template.networks.iter().any(|n| matches(&n.target)),
        Kind::Secret => c.secrets.iter().any(|r| matches(&r.source)),
        Kind::Config => c.configs.iter().any(|r| matches(&r.source)),
        _ => false,
    }
}

/// The objects `tx` creates or updates, for [`Store::check_references`].
fn written(tx: &Transaction) -> impl Iterator<Item = (Action, &Object)> {
    tx.changes.iter().filter_map(|change| match change {
        Change::Create { object } => Some((Action::Create, object)),
        Change::Update { object, .. } => Some((Action::Update, object)),
        Change::Delete { .. } => None,
    })
}

#[cfg(test)]
mod tests;
