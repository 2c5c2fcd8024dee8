//! The supervisor's command line and inherited descriptors: the contract between the
//! worker's shim, which builds it just before it executes the supervisor, and the
//! supervisor, which parses it.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::sys;
use crate::watch::Watch;

/// The read end of the container's stdout pipe.
pub const STDOUT_FD: RawFd = 3;
/// The read end of the container's stderr pipe.
pub const STDERR_FD: RawFd = 4;
/// The cgroup v1 OOM eventfd, when `oom_event` is set.
pub const OOM_EVENT_FD: RawFd = 5;

/// What the supervisor is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The container's state directory: the log and the exit record are written there.
    pub state_dir: PathBuf,
    /// The container's init, a child of this process.
    pub init: i32,
    /// When the program started, as RFC 3339 (copied into the exit record).
    pub started_at: String,
    /// Rotate the log once it would grow past this.
    pub log_max_bytes: u64,
    /// Rotated log files kept.
    pub log_max_files: u32,
    /// The cgroup file whose `oom_kill N` line counts the container's OOM kills.
    pub oom_file: Option<PathBuf>,
    /// An OOM eventfd is inherited on [`OOM_EVENT_FD`].
    pub oom_event: bool,
}

/// A command line the supervisor cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInvocation(pub String);

impl fmt::Display for BadInvocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (the shim and the supervisor it executes disagree: rebuild shoal)", self.0)
    }
}

impl Invocation {
    /// The arguments after the program name.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--init".into(),
            self.init.to_string().into(),
            "--started-at".into(),
            self.started_at.clone().into(),
            "--log-max-bytes".into(),
            self.log_max_bytes.to_string().into(),
            "--log-max-files".into(),
            self.log_max_files.to_string().into(),
        ];
        if let Some(file) = &self.oom_file {
            args.extend(["--oom-file".into(), file.clone().into_os_string()]);
        }
        if self.oom_event {
            args.push("--oom-event".into());
        }
        args.push(self.state_dir.clone().into_os_string());
        args
    }

    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, BadInvocation> {
        let bad = |what: String| BadInvocation(what);
        let mut args = args.into_iter();
        let (mut init, mut started_at): (Option<i32>, Option<String>) = (None, None);
        let (mut max_bytes, mut max_files): (Option<u64>, Option<u32>) = (None, None);
        let (mut oom_file, mut oom_event, mut state_dir) = (None, false, None);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| bad(format!("{name} needs a value")));
            match arg.to_str() {
                Some("--init") => init = Some(number(&value("--init")?, "--init")?),
                Some("--started-at") => started_at = Some(timestamp(value("--started-at")?)?),
                Some("--log-max-bytes") => {
                    max_bytes = Some(number(&value("--log-max-bytes")?, "--log-max-bytes")?)
                }
                Some("--log-max-files") => {
                    max_files = Some(number(&value("--log-max-files")?, "--log-max-files")?)
                }
                Some("--oom-file") => oom_file = Some(PathBuf::from(value("--oom-file")?)),
                Some("--oom-event") => oom_event = true,
                Some(flag) if flag.starts_with("--") => return Err(bad(format!("unknown flag {flag}"))),
                _ if state_dir.is_none() => state_dir = Some(PathBuf::from(arg)),
                _ => return Err(bad(format!("unexpected argument {arg:?}"))),
            }
        }
        let missing = |what: &str| bad(format!("{what} is missing"));
        Ok(Invocation {
            state_dir: state_dir.ok_or_else(|| missing("the state directory"))?,
            init: init.ok_or_else(|| missing("--init"))?,
            started_at: started_at.ok_or_else(|| missing("--started-at"))?,
            log_max_bytes: max_bytes.ok_or_else(|| missing("--log-max-bytes"))?,
            log_max_files: max_files.ok_or_else(|| missing("--log-max-files"))?,
            oom_file,
            oom_event,
        })
    }

    /// The watch this invocation asks for, over the container's stdout and stderr
    /// and, on cgroup v1, its OOM eventfd.
    pub fn into_watch(self, stdout: OwnedFd, stderr: OwnedFd, oom_event: Option<OwnedFd>) -> Watch {
        Watch {
            init: self.init,
            stdout,
            stderr,
            oom_event,
            oom_file: self.oom_file,
            state_dir: self.state_dir,
            log_max_bytes: self.log_max_bytes,
            log_max_files: self.log_max_files,
            started_at: self.started_at,
        }
    }

    /// Takes the inherited descriptors: stdout, stderr and the OOM eventfd.
    pub fn take_fds(&self) -> Result<(OwnedFd, OwnedFd, Option<OwnedFd>), BadInvocation> {
        let take = |fd: RawFd| {
            if !sys::is_open(fd) {
                return Err(BadInvocation(format!("descriptor {fd} is not open")));
            }
            // SAFETY: by the contract of this module the shim leaves these descriptors
            // open for the supervisor alone, and each is taken once, here.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let oom = if self.oom_event { Some(take(OOM_EVENT_FD)?) } else { None };
        Ok((take(STDOUT_FD)?, take(STDERR_FD)?, oom))
    }
}

fn number<T: std::str::FromStr>(text: &OsString, flag: &str) -> Result<T, BadInvocation> {
    text.to_str()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| BadInvocation(format!("{flag} {text:?} is not a number")))
}

/// An RFC 3339 time as text; it goes into JSON as it is, so only its own characters pass.
fn timestamp(text: OsString) -> Result<String, BadInvocation> {
    match text.into_string() {
        Ok(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b"-:.+TZ".contains(&b)) => Ok(t),
        other => Err(BadInvocation(format!("--started-at {other:?} is not an RFC 3339 time"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Invocation {
        Invocation {
            state_dir: "/var/lib/shoal/containers/abc".into(),
            init: 4242,
            started_at: "2026-12-07T09:40:00.123456789Z".into(),
            log_max_bytes: 10 << 20,
            log_max_files: 3,
            oom_file: Some("/sys/fs/cgroup/memory/shoal/abc/memory.oom_control".into()),
            oom_event: true,
        }
    }

    #[test]
    fn what_the_shim_writes_the_supervisor_reads() {
        let all = sample();
        assert_eq!(Invocation::parse(all.to_args()), Ok(all.clone()));
        let bare = Invocation { oom_file: None, oom_event: false, ..all };
        assert_eq!(Invocation::parse(bare.to_args()), Ok(bare));
    }

    #[test]
    fn a_bad_command_line_says_what_is_wrong() {
        let err = |args: &[&str]| Invocation::parse(args.iter().map(OsString::from)).unwrap_err().0;
        assert_eq!(err(&["--init", "1", "/d"]), "--started-at is missing");
        assert_eq!(err(&["--init", "x"]), "--init \"x\" is not a number");
        assert_eq!(err(&["--init"]), "--init needs a value");
        assert_eq!(err(&["--frobnicate"]), "unknown flag --frobnicate");
        assert!(err(&["--started-at", "\"}"]).contains("not an RFC 3339 time"));
        let mut args = sample().to_args();
        args.push("/another".into());
        assert!(Invocation::parse(args).unwrap_err().0.contains("unexpected argument"));
    }
}
