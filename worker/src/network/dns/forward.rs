//! Forwarding unknown names upstream, from the daemon's own namespace.
//!
//! The client's query goes out as it came (same bytes: id, flags, EDNS), to each
//! upstream in turn: the next one on a timeout, an unreadable reply, SERVFAIL or
//! REFUSED. UDP queries go over UDP and TCP queries over TCP, so an upstream's
//! truncated UDP reply reaches the client with TC set and the client's retry over TCP
//! is forwarded over TCP. At most `max_inflight` exchanges of one sandbox run at once
//! (Docker's 1024); past that the query is refused at once.
//!
//! The sockets are made on the runtime's threads, which are in the daemon's namespace:
//! a host stub resolver on loopback (127.0.0.53) is reachable, as in Docker.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tracing::debug;

/// Why no upstream reply is passed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Too many forwards in flight: REFUSED.
    Busy,
    /// No upstream gave a usable reply: SERVFAIL.
    NoAnswer,
}

/// The upstreams and the limit on one sandbox's forwards in flight.
#[derive(Debug)]
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    inflight: Semaphore,
}

impl Forwarder {
    pub(crate) fn new(upstreams: Vec<SocketAddr>, timeout: Duration, max_inflight: usize) -> Self {
        Forwarder { upstreams, timeout, inflight: Semaphore::new(max_inflight) }
    }

    /// Whether there is anyone to forward to.
    pub(crate) fn enabled(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// Sends `query` (raw bytes, id `id`) to each upstream in turn, over TCP if `tcp`,
    /// and returns the first usable reply.
    pub(crate) async fn forward(&self, query: &[u8], id: u16, tcp: bool) -> Result<Message, Failed> {
        let Ok(_permit) = self.inflight.try_acquire() else {
            return Err(Failed::Busy);
        };
        for &upstream in &self.upstreams {
            let deadline = Instant::now() + self.timeout;
            let reply = if tcp {
                timeout_at(deadline, exchange_tcp(upstream, query, id)).await
            } else {
                timeout_at(deadline, exchange_udp(upstream, query, id)).await
            };
            match reply {
                Ok(Ok(reply))
                    if !matches!(
                        reply.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    return Ok(reply);
                }
                Ok(Ok(reply)) => {
                    debug!(%upstream, rcode = %reply.metadata.response_code, "upstream failed, trying the next")
                }
                Ok(Err(error)) => debug!(%upstream, %error, "upstream unreachable, trying the next"),
                Err(_) => debug!(%upstream, "upstream timed out, trying the next"),
            }
        }
        Err(Failed::NoAnswer)
    }
}

/// One UDP exchange: replies from elsewhere (the socket is connected) or with another
/// id are ignored, and the wait goes on.
async fn exchange_udp(upstream: SocketAddr, query: &[u8], id: u16) -> io::Result<Message> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0; u16::MAX as usize];
    loop {
        let n = socket.recv(&mut buf).await?;
        match Message::from_vec(&buf[..n]) {
            Ok(reply) if reply.metadata.id == id => return Ok(reply),
            Ok(_) => debug!(%upstream, "reply with another id ignored"),
            Err(error) => debug!(%upstream, %error, "unreadable reply ignored"),
        }
    }
}

/// One TCP exchange (RFC 1035 4.2.2: each message behind its two-byte length).
async fn exchange_tcp(upstream: SocketAddr, query: &[u8], id: u16) -> io::Result<Message> {
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query longer than 65535 bytes"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    stream.write_all(&out).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    let reply = Message::from_vec(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if reply.metadata.id != id {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "reply with another id"));
    }
    Ok(reply)
}
