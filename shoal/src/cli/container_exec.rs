//! `shoal container exec`: a command in a running container of this node, with the
//! user's stdin (`-i`) and a terminal (`-t`: opened in the container, the user's own
//! in raw mode, resizes passed on); exits with the command's code (126 when it could
//! not run, 127 when it is not in the container).

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use shoal_worker::runtime::Runtime;
use shoal_worker::runtime::exec::{ExecIo, ExecSpec};
use shoal_worker::runtime::pty;

use super::terminal;

/// What `exec` runs and how; shared by `container exec` and `task exec`.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct ExecOpts {
    /// Keep stdin open and pass it to the command.
    #[arg(short, long)]
    pub(super) interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub(super) tty: bool,
    /// Run as this user (name, uid, user:group or uid:gid).
    #[arg(short, long)]
    pub(super) user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub(super) workdir: Option<String>,
    /// Environment variables, NAME=VALUE (a bare NAME takes this shell's value).
    #[arg(short, long = "env")]
    pub(super) env: Vec<String>,
}

impl ExecOpts {
    /// The spec for `cmd`.
    pub(super) fn spec(&self, cmd: Vec<String>) -> anyhow::Result<ExecSpec> {
        let mut env = Vec::new();
        for e in &self.env {
            match e.split_once('=') {
                Some((name, _)) if !name.is_empty() => env.push(e.clone()),
                Some(_) => bail!("--env {e:?}: write NAME=VALUE"),
                None => {
                    if let Ok(v) = std::env::var(e) {
                        env.push(format!("{e}={v}"));
                    }
                }
            }
        }
        Ok(ExecSpec { args: cmd, user: self.user.clone(), workdir: self.workdir.clone(), env, tty: self.tty })
    }
}

/// Runs `cmd` in container `id`; `timeout` kills it (not with `-t`).
pub(super) fn run(
    rt: &Runtime,
    id: &str,
    opts: &ExecOpts,
    cmd: Vec<String>,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let spec = opts.spec(cmd)?;
    if opts.tty {
        let mut p = rt.spawn_exec(id, &spec, ExecIo::Tty(terminal::current_size()))?;
        let master = p.pty.take().context("the runtime opened no terminal")?;
        let raw = if opts.interactive { terminal::RawMode::enter() } else { None };
        terminal::watch_resize();
        let relayed = relay_terminal(master, opts.interactive);
        drop(raw);
        relayed?;
        return Ok(exit_code(p.child.wait()?));
    }
    let mut p = rt.spawn_exec(id, &spec, ExecIo::Inherit { stdin: opts.interactive })?;
    let Some(limit) = timeout else { return Ok(exit_code(p.child.wait()?)) };
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = p.child.try_wait()? {
            return Ok(exit_code(status));
        }
        if Instant::now() >= deadline {
            let _ = p.child.kill();
            let _ = p.child.wait();
            bail!("the command did not end within {} s and was killed", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The exit code of a `runtime-exec` process: the command's.
pub(super) fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Copies the terminal's output to stdout, and stdin to it when `interactive`, until
/// the command and everything holding its terminal are gone; passes resizes on.
fn relay_terminal(master: OwnedFd, interactive: bool) -> anyhow::Result<()> {
    let mut out = std::fs::File::from(master.try_clone()?);
    let mut input = std::fs::File::from(master);
    let stdin = std::io::stdin();
    let mut stdin_open = interactive;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if terminal::resized() {
            let _ = pty::set_size(&out, terminal::current_size());
        }
        let mut fds = vec![PollFd::new(out.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("wait for the terminal: {e}"),
            Ok(_) => {}
        }
        let from_cmd = fds[0].any().unwrap_or(false);
        let from_user = stdin_open && fds[1].any().unwrap_or(false);
        drop(fds);
        if from_cmd {
            match out.read(&mut buf) {
                // EIO: every holder of the command's side closed it.
                Ok(0) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("read the command's terminal"),
                Ok(n) => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&buf[..n])?;
                    stdout.flush()?;
                }
            }
        }
        if from_user {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => input.write_all(&buf[..n]).context("write to the command's terminal")?,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => stdin_open = false,
            }
        }
    }
}
