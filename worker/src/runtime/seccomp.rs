//! The default seccomp filter, with the semantics of Docker's default profile for
//! x86_64 and Docker's default capabilities: an allow-list, everything else fails
//! with EPERM; `clone` only without namespace flags; `clone3` fails with ENOSYS so libc
//! falls back to `clone`; `socket` refuses AF_VSOCK; `personality` only for the
//! harmless personas. Compiled to BPF with the pure-Rust `seccompiler`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
    SeccompFilter, SeccompRule,
};

/// Why the filter could not be built (a bug, never the user's input).
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler refused a condition, a rule or the filter.
    #[error("cannot build the default seccomp filter")]
    Build(#[from] seccompiler::BackendError),
    /// No profile is written for this machine's architecture.
    #[error("no default seccomp profile for {0}: Shoal refuses to run containers unconfined")]
    UnsupportedArch(&'static str),
}

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET` (Docker's mask; CLONE_NEWTIME overlaps CSIGNAL there).
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => { [$(libc::$name),*] };
}

/// Syscalls allowed without conditions (Docker's list for amd64 with the default caps,
/// less the 32-bit-only names).
#[cfg(target_arch = "x86_64")]
const ALLOWED: &[i64] = &syscalls![
    SYS_accept,
    SYS_accept4,
    SYS_access,
    SYS_adjtimex,
    SYS_alarm,
    SYS_arch_prctl,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chmod,
    SYS_chown,
    SYS_chroot,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_creat,
    SYS_dup,
    SYS_dup2,
    SYS_dup3,
    SYS_epoll_create,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_ctl_old,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchmodat2,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fork,
    SYS_fremovexattr,
    SYS_fsetxattr,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_futimesat,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpgrp,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_get_robust_list,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_get_thread_area,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_ioctl,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_io_setup,
    SYS_io_submit,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lchown,
    SYS_lgetxattr,
    SYS_link,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_lstat,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_memfd_secret,
    SYS_mincore,
    SYS_mkdir,
    SYS_mkdirat,
    SYS_mknod,
    SYS_mknodat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_modify_ldt,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_mseal,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_name_to_handle_at,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_open,
    SYS_openat,
    SYS_openat2,
    SYS_pause,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_poll,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_mrelease,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_pselect6,
    SYS_ptrace,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlink,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_rename,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rmdir,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_select,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_set_robust_list,
    SYS_setsid,
    SYS_setsockopt,
    SYS_set_thread_area,
    SYS_set_tid_address,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd,
    SYS_signalfd4,
    SYS_socketpair,
    SYS_splice,
    SYS_stat,
    SYS_statfs,
    SYS_statx,
    SYS_symlink,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_time,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlink,
    SYS_unlinkat,
    SYS_utime,
    SYS_utimensat,
    SYS_utimes,
    SYS_vfork,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
];

/// Personas `personality(2)` may set: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26,
/// and the query value.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const AF_VSOCK: u64 = 40;

fn cond(arg: u8, op: Op, value: u64) -> Result<Cond, SeccompError> {
    Ok(Cond::new(arg, Len::Qword, op, value)?)
}

fn rule(conds: Vec<Cond>) -> Result<SeccompRule, SeccompError> {
    Ok(SeccompRule::new(conds)?)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let arch = std::env::consts::ARCH.try_into()?;
    let filter = SeccompFilter::new(rules, mismatch, matched, arch)?;
    Ok(filter.try_into()?)
}

/// The filters to install, in order. The second one answers `clone3` with ENOSYS; the
/// kernel returns the errno of the most recently installed filter among equal actions.
#[cfg(target_arch = "x86_64")]
pub fn default_filters() -> Result<Vec<BpfProgram>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    rules.insert(libc::SYS_clone, vec![rule(vec![cond(0, Op::MaskedEq(CLONE_NAMESPACE_FLAGS), 0)?])?]);
    rules.insert(libc::SYS_clone3, Vec::new());
    rules.insert(libc::SYS_socket, vec![rule(vec![cond(0, Op::Ne, AF_VSOCK)?])?]);
    rules.insert(
        libc::SYS_personality,
        PERSONALITIES.iter().map(|&p| rule(vec![cond(0, Op::Eq, p)?])).collect::<Result<_, _>>()?,
    );
    let allow_list = compile(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow)?;
    // Everything passes this one except clone3, which gets ENOSYS.
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?;
    Ok(vec![allow_list, clone3])
}

/// Other architectures have no profile yet; refuse rather than run unconfined.
#[cfg(not(target_arch = "x86_64"))]
pub fn default_filters() -> Result<Vec<BpfProgram>, SeccompError> {
    Err(SeccompError::UnsupportedArch(std::env::consts::ARCH))
}

#[cfg(test)]
mod tests {
    use std::os::fd::FromRawFd as _;

    use super::*;

    /// The calls probed, each answering 0 on success or the negated errno.
    const PROBES: [&str; 9] = [
        "getpid",
        "unshare(CLONE_NEWUSER)",
        "mount(tmpfs on a missing path)",
        "clone(CLONE_NEWNS|CLONE_FS)",
        "clone3(NULL)",
        "socket(AF_VSOCK)",
        "socket(AF_UNIX)",
        "personality(query)",
        "personality(ADDR_NO_RANDOMIZE)",
    ];

    fn ret(r: libc::c_long) -> i64 {
        if r < 0 { -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64) } else { 0 }
    }

    /// Makes the probed calls in this process. Only async-signal-safe calls: it runs in
    /// a child forked from a threaded test binary.
    fn probe() -> [i64; 9] {
        // SAFETY: each call takes plain integers or pointers to static C strings; the
        // ones that could change this process (unshare, clone) only touch the forked
        // child this runs in, and the clone's flags are refused by the kernel anyway.
        unsafe {
            let sock = |domain| {
                let fd = libc::socket(domain, libc::SOCK_STREAM, 0);
                if fd >= 0 {
                    libc::close(fd);
                }
                ret(fd as libc::c_long)
            };
            [
                ret(libc::syscall(libc::SYS_getpid)),
                ret(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)),
                ret(libc::syscall(
                    libc::SYS_mount,
                    c"none".as_ptr(),
                    c"/shoal-seccomp-test-missing".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null::<libc::c_void>(),
                )),
                ret(libc::syscall(libc::SYS_clone, libc::CLONE_NEWNS | libc::CLONE_FS, 0, 0, 0, 0)),
                ret(libc::syscall(libc::SYS_clone3, std::ptr::null::<libc::c_void>(), 0)),
                sock(libc::AF_VSOCK),
                sock(libc::AF_UNIX),
                ret(libc::syscall(libc::SYS_personality, 0xffff_ffffu64)),
                ret(libc::syscall(libc::SYS_personality, libc::ADDR_NO_RANDOMIZE)),
            ]
        }
    }

    /// Runs [`probe`] in a forked child, under `filters` when given, and returns what
    /// each call answered.
    fn probe_in_child(filters: Option<&[BpfProgram]>) -> [i64; 9] {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array it is given.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only makes raw syscalls, installs the filters built before
        // the fork, writes to the pipe and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let mut results = [i64::MIN; 9];
            let installed = filters.is_none_or(|fs| fs.iter().all(|f| seccompiler::apply_filter(f).is_ok()));
            if installed {
                results = probe();
            }
            // SAFETY: writes the results array to the pipe, then leaves without running
            // the parent's atexit handlers or destructors.
            unsafe {
                libc::write(fds[1], results.as_ptr().cast(), std::mem::size_of_val(&results));
                libc::_exit(0);
            }
        }
        // SAFETY: the write end belongs to the child now; the parent closes its copy.
        unsafe { libc::close(fds[1]) };
        let mut bytes = [0u8; 72];
        // SAFETY: fds[0] is the pipe's read end, owned here from now on.
        let mut read_end = std::fs::File::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) });
        std::io::Read::read_exact(&mut read_end, &mut bytes).expect("the child reports its results");
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let mut out = [0i64; 9];
        for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            *o = i64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
        }
        assert!(out[0] != i64::MIN, "the child could not install the filters");
        out
    }

    #[test]
    fn the_filters_refuse_what_the_kernel_would_allow() {
        let filters = default_filters().unwrap();
        let open = probe_in_child(None);
        let confined = probe_in_child(Some(&filters));
        let (eperm, enosys) = (-(libc::EPERM as i64), -(libc::ENOSYS as i64));
        // Without the filter each refused call reaches the kernel: it succeeds or fails
        // for its own reason (a missing path, a bad flag mix, a null argument), so an
        // EPERM or ENOSYS under the filter comes from the filter.
        let want_open = [
            Some(0),
            Some(0),
            Some(-(libc::ENOENT as i64)),
            Some(-(libc::EINVAL as i64)),
            Some(-(libc::EINVAL as i64)),
            None,
            Some(0),
            Some(0),
            Some(0),
        ];
        let want_confined = [0, eperm, eperm, eperm, enosys, eperm, 0, 0, eperm];
        for (i, name) in PROBES.iter().enumerate() {
            match want_open[i] {
                Some(want) => assert_eq!(open[i], want, "{name} without the filter"),
                None => assert_ne!(open[i], want_confined[i], "{name} without the filter"),
            }
        }
        let report: Vec<_> = PROBES.iter().zip(confined).map(|(n, r)| format!("{n}={r}")).collect();
        assert_eq!(confined, want_confined, "under the filter: {report:?}");
    }
}
