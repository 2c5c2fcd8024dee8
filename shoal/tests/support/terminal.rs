//! A program driven through a pseudo-terminal, as a user at a terminal would: keys
//! typed, the screen read, the window resized (the program gets SIGWINCH).

use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A program on its own terminal.
pub struct Terminal {
    child: Child,
    master: OwnedFd,
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    /// Starts `cmd` on a new 24x80 terminal, as its controlling terminal.
    pub fn spawn(mut cmd: Command) -> Terminal {
        let size = nix::pty::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let slave = pty.slave;
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        // SAFETY: setsid and ioctl are async-signal-safe; the program gets the
        // terminal as its controlling one, as in a shell, so a resize sends it SIGWINCH.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd);
        drop(slave);
        let screen = Arc::new(Mutex::new(String::new()));
        let mut file = std::fs::File::from(pty.master.try_clone().unwrap());
        let s = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = file.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal { child, master: pty.master, screen }
    }

    /// Types `keys`.
    pub fn type_keys(&self, keys: &str) {
        std::fs::File::from(self.master.try_clone().unwrap()).write_all(keys.as_bytes()).unwrap();
    }

    /// Whether `text` was shown.
    pub fn shown(&self, text: &str) -> bool {
        self.screen.lock().unwrap().contains(text)
    }

    /// Everything shown so far.
    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Resizes the window.
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which outlives the call.
        assert_eq!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    }

    /// Types `keys` every 100 ms until `text` is shown (e.g. a question whose answer
    /// changes).
    pub fn ask_until(&self, keys: &str, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.shown(text) {
            assert!(Instant::now() < deadline, "{text:?} never shown: {}", self.screen());
            self.type_keys(keys);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the program to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the program did not end: {}", self.screen());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
