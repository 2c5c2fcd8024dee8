//! Shoal's cluster object model: the serde types that managers store and every API
//! speaks, their defaults (Docker Swarm's, unless a field's doc says why not), their
//! validation, and Compose stacks.
//!
//! Where to look:
//! - [`service`] and [`task_spec`]: what a service declares, every field with its default;
//! - [`task`], [`node`], [`network`], [`secret`], [`cluster`]: the other stored objects;
//! - [`validate`]: the checks a spec passes before it is stored;
//! - [`compose`]: Compose files to stacks of service and network specs;
//! - [`constraint`], [`image`], [`duration`], [`units`], [`ports`]: the small languages inside
//!   specs and flags;
//! - [`netmap`]: what a worker is told of the cluster to wire its tasks;
//! - [`decode`]: reading objects from JSON with errors that name the field;
//! - [`report`]: an error and its causes as one line, for messages that leave the process;
//! - [`stored`]: any stored object as one enum, and the events about them;
//! - [`wire`] and [`client`]: the cluster API's bodies and a typed client for it.

pub mod client;
pub mod cluster;
pub mod compose;
pub mod constraint;
pub mod decode;
pub mod duration;
pub mod exec;
pub mod image;
pub mod netmap;
pub mod network;
pub mod node;
pub mod object;
pub mod ports;
pub mod report;
pub mod secret;
pub mod service;
pub mod stored;
pub mod task;
pub mod task_spec;
pub mod units;
pub mod validate;
pub mod wire;

pub use cluster::{Cluster, ClusterSpec};
pub use network::{Network, NetworkSpec};
pub use node::{Node, NodeSpec};
pub use object::Meta;
pub use secret::{Config, PayloadSpec, PayloadUpdate, Secret};
pub use service::{Service, ServiceMode, ServiceSpec};
pub use task::{Task, TaskState, TaskStatus};
pub use task_spec::{ContainerSpec, TaskSpec};
pub use validate::{FieldError, Validate, ValidationErrors};
