//! Thin wrappers over the syscalls the runtime needs that `nix` does not cover:
//! pidfds, `close_range`, and read-only views and sealed copies of the running binary.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Opens a pidfd for `pid` (Linux 5.3+): a handle that cannot be confused with a
/// later process reusing the pid.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is
    // shared with the kernel.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number and null siginfo; no memory is written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Waits until the process behind `pidfd` has exited, or `timeout_ms` passes
/// (negative: forever). Returns true once it has exited.
pub fn pidfd_wait_exit(pidfd: &OwnedFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd struct that lives across the call.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r >= 0 {
            return Ok(r > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Marks every fd from `first` up close-on-exec, so nothing of the runtime leaks into
/// the container's program (runc CVE-2024-21626).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range only changes flags on this process's fds.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`); with the pid it names one process for the boot's lifetime. A
/// zombie (exited, not yet reaped by whoever adopted it) counts as gone.
pub fn process_start_time(pid: i32) -> io::Result<u64> {
    match stat(pid)? {
        ('Z' | 'X', _) => Err(io::Error::new(io::ErrorKind::NotFound, format!("process {pid} has exited"))),
        (_, start) => Ok(start),
    }
}

/// The start time of our own child `pid`, even if it has already exited (it cannot be
/// reused before we reap it).
pub fn child_start_time(pid: i32) -> io::Result<u64> {
    stat(pid).map(|(_, start)| start)
}

/// The state letter and start time from `/proc/<pid>/stat`.
fn stat(pid: i32) -> io::Result<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let mut fields = after.split_whitespace();
    let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
    let start = fields
        .nth(18)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad /proc/{pid}/stat")))?;
    Ok((state, start))
}

/// Lowest fd number for long-lived runtime fds.
pub(super) const HIGH_FD: RawFd = 100;

/// The running binary through a detached, read-only bind mount of it (`open_tree` and
/// `mount_setattr`, Linux 5.12), so the helper the runtime starts runs from a file
/// nobody can open for writing through that mount (CVE-2019-5736: a container that
/// could rewrite the host's runtime binary), yet shares the page cache with this
/// process, where a copy would hold the binary in memory a second time. The mount is
/// in no mount table; it lives as long as the descriptor, or a process executing it.
/// Returns an `O_PATH` descriptor; exec it by `/proc/self/fd/<fd>`.
pub fn read_only_view_of_self() -> io::Result<File> {
    read_only_view(c"/proc/self/exe")
}

/// `path` through a detached, read-only bind mount of it (see [`read_only_view_of_self`]).
fn read_only_view(path: &std::ffi::CStr) -> io::Result<File> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    /// `struct mount_attr`, first version.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    // SAFETY: open_tree takes a directory fd, a NUL-terminated path that outlives the
    // call, and flags; it returns a new descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr reads `attr`, valid for the call and of the size passed, on
    // the detached mount behind `tree`; the empty path names `tree` itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    above_low_fds(tree)
}

/// Keeps a descriptor away from the low numbers children get their pipes on, so
/// setting those up never replaces the binary about to be exec'd.
pub(super) fn above_low_fds(fd: impl AsFd) -> io::Result<File> {
    use nix::fcntl::{FcntlArg, fcntl};
    let high = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD)).map_err(io::Error::from)?;
    // SAFETY: fcntl just returned this new fd; we own it alone.
    Ok(unsafe { File::from_raw_fd(high) })
}

/// Copies the running binary into a sealed memfd, so the helper the runtime starts
/// runs from a copy nobody can overwrite (CVE-2019-5736: a container that could
/// rewrite the host's runtime binary). Returns the memfd; exec it by
/// `/proc/self/fd/<fd>`.
pub fn sealed_copy_of_self() -> io::Result<File> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};

    let fd = memfd_create(c"shoal-runtime", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(io::Error::from)?;
    let mut copy = File::from(fd);
    let mut me = File::open("/proc/self/exe")?;
    io::copy(&mut me, &mut copy)?;
    let seals =
        SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals)).map_err(io::Error::from)?;
    above_low_fds(copy)
}

/// Brings the loopback interface of the current network namespace up (a new
/// namespace starts with `lo` down, and programs expect 127.0.0.1 to answer).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value for it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in `req` into it;
    // `req` is a valid, writable ifreq for the duration of the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS just filled.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `req`, valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds since boot by `CLOCK_BOOTTIME`, the clock `/proc/<pid>/stat` counts
    /// start times on.
    fn boot_seconds() -> f64 {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec, which lives across the call.
        assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut t) }, 0);
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }

    #[test]
    fn start_time_is_when_the_process_started_and_a_zombie_is_gone() {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let before = boot_seconds();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let after = boot_seconds();
        let pid = child.id() as i32;
        let start = process_start_time(pid).unwrap();
        // The kernel's clock says when the child started, within a tick of the spawn.
        let (low, high) = ((before * ticks).floor() as u64, (after * ticks).ceil() as u64);
        assert!((low..=high).contains(&start), "start {start} ticks, spawned within {low}..={high}");
        // A process started later has a later start time.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut later = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        assert!(process_start_time(later.id() as i32).unwrap() > start);
        later.kill().unwrap();
        later.wait().unwrap();
        // Killed but not reaped: gone for `process_start_time`, still known to its parent.
        let fd = pidfd_open(pid).unwrap();
        pidfd_send_signal(&fd, libc::SIGKILL).unwrap();
        assert!(pidfd_wait_exit(&fd, 5_000).unwrap());
        let gone = process_start_time(pid).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
        assert_eq!(child_start_time(pid).unwrap(), start);
        child.wait().unwrap();
        assert!(process_start_time(i32::MAX).is_err());
    }

    #[test]
    fn pidfd_sees_exit() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        assert!(!pidfd_wait_exit(&fd, 0).unwrap());
        pidfd_send_signal(&fd, libc::SIGKILL).unwrap();
        assert!(pidfd_wait_exit(&fd, 5_000).unwrap());
        child.wait().unwrap();
    }

    #[test]
    fn the_read_only_view_is_the_binary_and_cannot_be_opened_for_writing() {
        use std::os::unix::fs::MetadataExt as _;
        let view = read_only_view_of_self().unwrap();
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        let seen = std::fs::metadata(format!("/proc/self/fd/{}", view.as_raw_fd())).unwrap();
        assert_eq!((seen.len(), seen.ino()), (exe.len(), exe.ino()));
        assert!(view.as_raw_fd() >= HIGH_FD);
        // A file nobody executes (the running binary would refuse writers anyway):
        // writable where it is, not through its view.
        let file = tempfile::NamedTempFile::new().unwrap();
        let c_path = std::ffi::CString::new(file.path().as_os_str().as_encoded_bytes()).unwrap();
        let view = read_only_view(&c_path).unwrap();
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", view.as_raw_fd()))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        assert!(std::fs::OpenOptions::new().write(true).open(file.path()).is_ok());
    }

    #[test]
    fn sealed_copy_cannot_be_written() {
        use std::io::Write;
        let mut copy = sealed_copy_of_self().unwrap();
        assert!(copy.metadata().unwrap().len() > 0);
        assert!(copy.write_all(b"x").is_err());
    }
}
