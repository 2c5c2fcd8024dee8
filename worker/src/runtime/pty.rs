//! Pseudo-terminals for `exec -t`: a pair opened in the container's own devpts (so
//! `tty` inside names `/dev/pts/N` of the container), and the window size on it.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WinSize {
    /// Lines.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// A terminal pair: the master side stays with the caller, the slave becomes the
/// command's stdin, stdout and stderr.
#[derive(Debug)]
pub struct Pair {
    /// Read the command's output, write its input, set its size.
    pub master: OwnedFd,
    /// The command's terminal.
    pub slave: OwnedFd,
}

/// Opens a pair in the devpts of the container whose init is `pid` (through
/// `/proc/PID/root/dev/ptmx`), sized `size`.
pub fn open_in(pid: i32, size: WinSize) -> std::io::Result<Pair> {
    let master: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/root/dev/ptmx"))?
        .into();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which outlives the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor (or -1).
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    set_size(&master, size)?;
    Ok(Pair { master, slave })
}

/// Sets the terminal's window size (the foreground process group gets SIGWINCH).
pub fn set_size(fd: &impl AsRawFd, size: WinSize) -> std::io::Result<()> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of the terminal on `fd`, if it is one.
pub fn size(fd: &impl AsRawFd) -> Option<WinSize> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a winsize through the pointer, which outlives the call.
    let ok = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0 && ws.ws_col > 0).then_some(WinSize { rows: ws.ws_row, cols: ws.ws_col })
}

/// Makes the terminal on stdin the calling process's controlling terminal, in a new
/// session (for the command, in the child before it execs).
pub fn take_stdin_as_controlling() -> Result<(), String> {
    nix::unistd::setsid().map_err(|e| format!("start a session: {e}"))?;
    // SAFETY: TIOCSCTTY takes an int argument and changes only this process's session.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(format!("take the terminal: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
