//! The options of the commands that work on this node directly (`container`, `image`):
//! where its state lives.

use std::path::PathBuf;

use clap::Args;

/// Where this node keeps its state; shared by the commands that work on the node.
#[derive(Debug, Clone, Args)]
pub(crate) struct NodeOpts {
    /// The node's data directory (images, containers, volumes).
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "/var/lib/shoal")]
    pub(super) data_dir: PathBuf,
    /// Parent cgroup for containers, in every cgroup hierarchy.
    #[arg(long, env = "SHOAL_CGROUP_PARENT", default_value = "shoal")]
    pub(super) cgroup_parent: String,
}
