//! `task exec` on the wire between a client and a manager: `POST /v1/tasks/{id}/exec`
//! with `Upgrade: shoal-exec` switches the connection to frames both ways. Each
//! frame is a kind byte, a big-endian u32 length, and that many bytes. The client's
//! first frame is [`Frame::Start`]; the manager's last is [`Frame::Exit`] or
//! [`Frame::Error`].

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The protocol named in the `Upgrade` header.
pub const PROTOCOL: &str = "shoal-exec";

/// The largest frame accepted.
pub const MAX_FRAME: usize = 1 << 20;

/// What to run, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStart {
    /// Program and arguments.
    pub cmd: Vec<String>,
    /// Run as this user instead of the container's.
    #[serde(default)]
    pub user: Option<String>,
    /// Working directory instead of the container's.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `NAME=VALUE` pairs added to the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Give the command a terminal of `rows` × `cols`.
    #[serde(default)]
    pub tty: bool,
    /// Terminal lines.
    #[serde(default)]
    pub rows: u16,
    /// Terminal columns.
    #[serde(default)]
    pub cols: u16,
    /// The client sends input.
    #[serde(default)]
    pub stdin: bool,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → manager, first: what to run.
    Start(ExecStart),
    /// Client → manager: input.
    Stdin(Vec<u8>),
    /// Client → manager: the input ended.
    StdinClosed,
    /// Client → manager: the terminal's new size (rows, columns).
    Resize(u16, u16),
    /// Manager → client: output.
    Stdout(Vec<u8>),
    /// Manager → client: error output.
    Stderr(Vec<u8>),
    /// Manager → client, last: the command's exit code.
    Exit(i32),
    /// Manager → client, last: why the command could not run or the exec broke.
    Error(String),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed.
    #[error("the exec connection broke")]
    Io(#[from] std::io::Error),
    /// The bytes are not a frame.
    #[error("a malformed exec frame: {0}")]
    Malformed(String),
}

impl Frame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, body): (u8, Vec<u8>) = match self {
            Frame::Start(s) => (0, serde_json::to_vec(s).expect("exec starts serialize")),
            Frame::Stdin(b) => (1, b.clone()),
            Frame::StdinClosed => (2, Vec::new()),
            Frame::Resize(r, c) => (3, [r.to_be_bytes(), c.to_be_bytes()].concat()),
            Frame::Stdout(b) => (4, b.clone()),
            Frame::Stderr(b) => (5, b.clone()),
            Frame::Exit(code) => (6, code.to_be_bytes().to_vec()),
            Frame::Error(e) => (7, e.as_bytes().to_vec()),
        };
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(kind);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads one frame; `None` at a clean end of the stream.
    pub async fn read(r: &mut (impl AsyncRead + Unpin)) -> Result<Option<Frame>, FrameError> {
        let mut head = [0u8; 5];
        match r.read_exact(&mut head[..1]).await {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        };
        r.read_exact(&mut head[1..]).await?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::Malformed(format!("a frame of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        let fixed = |n: usize| {
            if body.len() == n {
                Ok(())
            } else {
                Err(FrameError::Malformed(format!("kind {} of {len} bytes", head[0])))
            }
        };
        Ok(Some(match head[0] {
            0 => {
                Frame::Start(serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(e.to_string()))?)
            }
            1 => Frame::Stdin(body),
            2 => Frame::StdinClosed,
            3 => {
                fixed(4)?;
                Frame::Resize(u16::from_be_bytes([body[0], body[1]]), u16::from_be_bytes([body[2], body[3]]))
            }
            4 => Frame::Stdout(body),
            5 => Frame::Stderr(body),
            6 => {
                fixed(4)?;
                Frame::Exit(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
            }
            7 => Frame::Error(String::from_utf8_lossy(&body).into_owned()),
            k => return Err(FrameError::Malformed(format!("unknown kind {k}"))),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_as_written() {
        let frames = vec![
            Frame::Start(ExecStart {
                cmd: vec!["sh".into()],
                tty: true,
                rows: 24,
                cols: 80,
                ..Default::default()
            }),
            Frame::Stdin(b"ls\n".to_vec()),
            Frame::StdinClosed,
            Frame::Resize(40, 100),
            Frame::Stdout(b"out".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Exit(-3),
            Frame::Error("gone".into()),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut r = bytes.as_slice();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let back: Vec<Frame> = rt.block_on(async {
            let mut out = Vec::new();
            while let Some(f) = Frame::read(&mut r).await.unwrap() {
                out.push(f);
            }
            out
        });
        assert_eq!(back, frames);
        let mut bad: &[u8] = &[9, 0, 0, 0, 0];
        assert!(rt.block_on(Frame::read(&mut bad)).is_err());
    }
}
