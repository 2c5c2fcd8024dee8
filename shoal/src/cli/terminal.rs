//! The user's terminal during `exec -t`: raw mode (restored when dropped, also on an
//! error), its window size, and a flag raised by SIGWINCH when it changes.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use shoal_worker::runtime::pty::{self, WinSize};

/// Used when stdin and stdout are not terminals.
pub(super) const DEFAULT_SIZE: WinSize = WinSize { rows: 24, cols: 80 };

/// The size of the terminal on stdin (or stdout), else [`DEFAULT_SIZE`].
pub(super) fn current_size() -> WinSize {
    pty::size(&std::io::stdin()).or_else(|| pty::size(&std::io::stdout())).unwrap_or(DEFAULT_SIZE)
}

/// Stdin in raw mode: keys pass through unprocessed (the command's terminal does the
/// echoing and line editing); the old mode comes back on drop.
pub(super) struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, if it is a terminal.
    pub(super) fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSAFLUSH, &self.saved);
    }
}

static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_resize(_: libc::c_int) {
    RESIZED.store(true, Ordering::SeqCst);
}

/// From now on SIGWINCH raises the flag [`resized`] takes (and interrupts a blocking
/// poll, which then returns EINTR).
pub(super) fn watch_resize() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(note_resize), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let _ = unsafe { sigaction(Signal::SIGWINCH, &action) };
}

/// Whether the terminal was resized since the last call.
pub(super) fn resized() -> bool {
    RESIZED.swap(false, Ordering::SeqCst)
}
