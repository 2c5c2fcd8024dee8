//! Process limits raised at start: the open-file limit's soft value to its hard one.
//! Every connection costs a file descriptor at each end, and a manager serving a
//! thousand workers (or `bench-agents` running a thousand of them) needs thousands;
//! 1,024 soft is a common default.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard limit; returns the limit now in
/// force (logged as a warning when raising it failed).
pub(crate) fn raise_open_files() -> u64 {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return 0;
        }
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "open-file limit raised");
            hard
        }
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            soft
        }
    }
}
