//! Shoal's worker side: the built-in container runtime ([`runtime`]) with its cgroup
//! handling ([`cgroups`]), and the image store ([`image`]). The agent that talks to the
//! managers arrives with orchestration.

pub mod cgroups;
pub mod image;
pub mod runtime;
