//! Stored objects as one enum, so transactions, events and the API can carry any of
//! them; and the events the store emits when it applies a change.

use serde::{Deserialize, Serialize};

use crate::{Cluster, Config, Meta, Network, Node, Secret, Service, Task};

/// The kinds of stored objects.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The one cluster object.
    Cluster,
    /// A node.
    Node,
    /// A service.
    Service,
    /// A task.
    Task,
    /// An overlay network.
    Network,
    /// A secret.
    Secret,
    /// A config.
    Config,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 7] =
        [Kind::Cluster, Kind::Node, Kind::Service, Kind::Task, Kind::Network, Kind::Secret, Kind::Config];

    /// The kind's name, as events and errors show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Network => "network",
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    /// Whether objects of this kind have names unique within the kind.
    pub fn has_unique_names(self) -> bool {
        matches!(self, Kind::Service | Kind::Network | Kind::Secret | Kind::Config)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any stored object. Variants differ in size (a service spec is large); objects live
/// in maps and move rarely, so they are not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "object", rename_all = "snake_case")]
pub enum Object {
    /// See [`Cluster`].
    Cluster(Cluster),
    /// See [`Node`].
    Node(Node),
    /// See [`Service`].
    Service(Service),
    /// See [`Task`].
    Task(Task),
    /// See [`Network`].
    Network(Network),
    /// See [`Secret`].
    Secret(Secret),
    /// See [`Config`].
    Config(Config),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Cluster(_) => Kind::Cluster,
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::Task(_) => Kind::Task,
            Object::Network(_) => Kind::Network,
            Object::Secret(_) => Kind::Secret,
            Object::Config(_) => Kind::Config,
        }
    }

    /// The object's id.
    pub fn id(&self) -> &str {
        match self {
            Object::Cluster(o) => &o.id,
            Object::Node(o) => &o.id,
            Object::Service(o) => &o.id,
            Object::Task(o) => &o.id,
            Object::Network(o) => &o.id,
            Object::Secret(o) => &o.id,
            Object::Config(o) => &o.id,
        }
    }

    /// The object's unique name, for kinds that have one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Object::Service(o) => Some(&o.spec.name),
            Object::Network(o) => Some(&o.spec.name),
            Object::Secret(o) => Some(&o.spec.name),
            Object::Config(o) => Some(&o.spec.name),
            _ => None,
        }
    }

    /// Version and timestamps.
    pub fn meta(&self) -> &Meta {
        match self {
            Object::Cluster(o) => &o.meta,
            Object::Node(o) => &o.meta,
            Object::Service(o) => &o.meta,
            Object::Task(o) => &o.meta,
            Object::Network(o) => &o.meta,
            Object::Secret(o) => &o.meta,
            Object::Config(o) => &o.meta,
        }
    }

    /// The object as the API may show it: secret and config data and the cluster's
    /// tokens are emptied.
    pub fn redacted(&self) -> Object {
        let mut o = self.clone();
        match &mut o {
            Object::Secret(s) => s.spec.data.clear(),
            Object::Config(c) => c.spec.data.clear(),
            Object::Cluster(c) => {
                c.join_tokens.worker.clear();
                c.join_tokens.manager.clear();
                c.api_token.clear();
                c.read_only_api_token.clear();
                c.ca.signer_key.clear();
                c.data_path_keys = Default::default();
                c.unlock_key.clear();
            }
            _ => {}
        }
        o
    }

    /// Version and timestamps, to change.
    pub fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Object::Cluster(o) => &mut o.meta,
            Object::Node(o) => &mut o.meta,
            Object::Service(o) => &mut o.meta,
            Object::Task(o) => &mut o.meta,
            Object::Network(o) => &mut o.meta,
            Object::Secret(o) => &mut o.meta,
            Object::Config(o) => &mut o.meta,
        }
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Created.
    Create,
    /// Updated.
    Update,
    /// Deleted.
    Delete,
}

/// One applied change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// The Raft log index of the transaction.
    pub index: u64,
    /// What happened.
    pub action: Action,
    /// The object after the change (before it, for deletes).
    pub object: std::sync::Arc<Object>,
}

impl Event {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        self.object.kind()
    }
}
