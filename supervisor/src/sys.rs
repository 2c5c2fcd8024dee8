//! The C library calls the supervisor makes that the standard library does not wrap:
//! `poll`, `waitpid`, `pidfd_open`, `fcntl` and `madvise`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::raw::{c_int, c_long, c_ulong, c_void};

/// `struct pollfd`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollFd {
    /// The descriptor.
    pub(crate) fd: c_int,
    /// What to wait for.
    pub(crate) events: i16,
    /// What happened.
    pub(crate) revents: i16,
}

/// Data to read (or, with `POLLHUP`, the end).
pub(crate) const POLLIN: i16 = 0x1;

unsafe extern "C" {
    fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    fn syscall(number: c_long, ...) -> c_long;
    #[cfg(target_env = "gnu")]
    fn malloc_trim(pad: usize) -> c_int;
}

const WNOHANG: c_int = 1;
const F_GETFD: c_int = 1;
const MADV_RANDOM: c_int = 1;
const MADV_DONTNEED: c_int = 4;
/// `pidfd_open`: 434 on every architecture (the numbers were unified in Linux 5.3).
const SYS_PIDFD_OPEN: c_long = 434;

/// Waits up to `timeout_ms` (negative: forever) for one of `fds`. `EINTR` is an error
/// of kind `Interrupted`.
pub(crate) fn poll_fds(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structs for the
    // duration of the call.
    let n = unsafe { poll(fds.as_mut_ptr(), fds.len() as c_ulong, timeout_ms) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// How a child stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Child {
    /// Still running.
    Running,
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Not (or no longer) our child: its status cannot be known.
    Unknown,
}

/// Reaps `pid` if it has ended, without waiting.
pub(crate) fn try_wait(pid: i32) -> Child {
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        let rc = unsafe { waitpid(pid, &mut status, WNOHANG) };
        return match rc {
            0 => Child::Running,
            r if r == pid => decode(status),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => Child::Unknown,
        };
    }
}

/// A wait status as `WIFEXITED`/`WEXITSTATUS`/`WIFSIGNALED`/`WTERMSIG` read it.
fn decode(status: c_int) -> Child {
    let signal = status & 0x7f;
    if signal == 0 {
        Child::Exited((status >> 8) & 0xff)
    } else if signal != 0x7f {
        Child::Signaled(signal)
    } else {
        Child::Unknown
    }
}

/// A pidfd for `pid`: readable once the process has ended.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { syscall(SYS_PIDFD_OPEN, pid as c_long, 0 as c_long) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// True when `fd` is an open descriptor of this process.
pub(crate) fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { fcntl(fd, F_GETFD) >= 0 }
}

/// Returns the allocator's free memory to the kernel.
pub(crate) fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only gives free memory of the allocator back to the kernel;
    // the supervisor is single-threaded.
    unsafe {
        malloc_trim(0);
    }
}

/// Drops the page-table entries of `[start, start + len)`, and marks the range for
/// random access, so a page touched again is mapped back alone rather than with the
/// (by default 15) pages around it.
///
/// # Safety
///
/// The range must be a whole private, read-only, file-backed mapping without a page of
/// its own (every page reads back from the file as it is mapped now), and nothing may
/// hold a reference into it that expects other contents.
pub(crate) unsafe fn drop_file_pages(start: usize, len: usize) {
    // SAFETY: the caller promises the range reads back unchanged from its file.
    unsafe {
        madvise(start as *mut c_void, len, MADV_DONTNEED);
        madvise(start as *mut c_void, len, MADV_RANDOM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_decode_as_the_c_macros_do() {
        assert_eq!(decode(0), Child::Exited(0));
        assert_eq!(decode(3 << 8), Child::Exited(3));
        assert_eq!(decode(9), Child::Signaled(9));
        assert_eq!(decode(15 | 0x80), Child::Signaled(15)); // with a core dump
        assert_eq!(decode((19 << 8) | 0x7f), Child::Unknown); // stopped
    }

    #[test]
    #[allow(clippy::zombie_processes, reason = "try_wait, the function under test, reaps them")]
    fn a_child_is_reaped_with_its_code_and_signal() {
        let exits = std::process::Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        let killed = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let pidfd = pidfd_open(killed.id() as i32).unwrap();
        std::process::Command::new("kill").args(["-9", &killed.id().to_string()]).status().unwrap();
        let mut fds = [PollFd { fd: std::os::fd::AsRawFd::as_raw_fd(&pidfd), events: POLLIN, revents: 0 }];
        assert_eq!(poll_fds(&mut fds, 10_000).unwrap(), 1);
        assert_eq!(try_wait(killed.id() as i32), Child::Signaled(9));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let code = loop {
            match try_wait(exits.id() as i32) {
                Child::Running if std::time::Instant::now() < deadline => {
                    let mut none: [PollFd; 0] = [];
                    let _ = poll_fds(&mut none, 10);
                }
                other => break other,
            }
        };
        assert_eq!(code, Child::Exited(7));
        assert_eq!(try_wait(exits.id() as i32), Child::Unknown);
        assert!(!is_open(-1));
    }
}
