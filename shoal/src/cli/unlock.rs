//! A manager's start under autolock: while its data key is sealed by the cluster's
//! unlock key it cannot read its own log, so its Raft node does not start; the API
//! socket answers only `shoal cluster unlock` until that gives the key (see
//! `shoal_manager::http::locked`). Kept apart from `daemon.rs`, which calls
//! [`wait_until_unlocked`] once before starting the manager.

use std::path::Path;

use anyhow::Context as _;
use shoal_manager::manager::lock::{self, UnlockKey};

/// The unlock key this manager needs to start (`Some(None)`: it is not locked), or
/// `None` if the daemon was told to stop while it waited.
pub(super) async fn wait_until_unlocked(
    manager_dir: &Path,
    socket: &Path,
    term: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<Option<Option<UnlockKey>>> {
    let dek = manager_dir.join(lock::DEK_FILE);
    if !lock::is_sealed(&dek)? {
        return Ok(Some(None));
    }
    tracing::warn!(
        socket = %socket.display(),
        "this manager is locked (autolock): it starts once `shoal cluster unlock` gives it the unlock key"
    );
    tokio::select! {
        key = shoal_manager::http::locked::serve_until_unlocked(socket, manager_dir) => {
            let key = key.context("serve the locked API")?;
            Ok(Some(Some(key)))
        }
        _ = term.recv() => Ok(None),
        _ = tokio::signal::ctrl_c() => Ok(None),
    }
}

/// Reads the unlock key for `shoal cluster unlock`: prompted for without echo on a
/// terminal, else the first line of stdin. Never taken from the command line, where
/// it would show in `ps` and shell histories.
pub(super) fn read_key() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        eprint!("Unlock key: ");
        std::io::stderr().flush()?;
        let saved = tcgetattr(&stdin).context("read the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turn off the terminal's echo")?;
        let read = stdin.lock().read_line(&mut line);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
        read?;
    } else {
        stdin.lock().read_line(&mut line)?;
    }
    let key = line.trim().to_owned();
    anyhow::ensure!(!key.is_empty(), "no unlock key was given (on stdin or at the prompt)");
    Ok(key)
}
