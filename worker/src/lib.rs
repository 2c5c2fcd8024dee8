//! Shoal's worker side: the built-in container runtime ([`runtime`]) with its cgroup
//! handling ([`cgroups`]), the image store ([`image`]), and the [`agent`] that runs the
//! tasks the managers assign to this node.

pub mod agent;
pub mod cgroups;
pub mod image;
pub mod json_file;
pub mod runtime;
