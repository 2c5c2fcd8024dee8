//! TLS over TCP for Shoal's servers and clients, rustls underneath: a stream of
//! accepted connections that tonic serves (and the API's HTTPS loop reads), each
//! carrying the [`Peer`] it came from, and a connector that tonic channels dial
//! through. Handshakes run beside the accept loop, so a slow client holds up no one.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::{CertInfo, MANAGER_NAME};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of an accepted connection: its address, and the node
/// (or client) its verified certificate names, if it offered one.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// Its certificate, verified against the trusted roots during the handshake.
    pub cert: Option<CertInfo>,
}

impl Peer {
    /// The peer of a gRPC request served over [`incoming`].
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Peer> {
        request.extensions().get::<Peer>()
    }
}

/// An accepted TLS connection.
#[derive(Debug)]
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: Peer,
}

impl TlsConn {
    /// Who it came from.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Moves the connection to the I/O driver of the runtime this is called on: a
    /// connection accepted on one runtime and served on another is told it is ready
    /// by the first one's driver otherwise, and waits while that runtime is busy.
    /// The socket is duplicated, registered here, and the old descriptor closed; the
    /// TLS session, and what it has buffered, stay as they are.
    pub fn rebind(&mut self) -> io::Result<()> {
        use std::os::fd::AsFd as _;
        let (tcp, _) = self.stream.get_mut();
        let dup = std::net::TcpStream::from(tcp.as_fd().try_clone_to_owned()?);
        dup.set_nonblocking(true)?;
        let here = TcpStream::from_std(dup)?;
        drop(std::mem::replace(tcp, here));
        Ok(())
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The TLS connections accepted on `listener`, handshaken with `config`. The
/// stream owns the listener: dropping it closes the port at once. Handshakes run
/// side by side (a slow client holds up no one); failed ones are logged (without
/// what the client sent) and skipped.
pub fn incoming(listener: TcpListener, config: Arc<ServerConfig>) -> Incoming {
    Incoming { listener, acceptor: TlsAcceptor::from(config), handshakes: FuturesUnordered::new() }
}

type Handshake = Pin<Box<dyn Future<Output = Option<TlsConn>> + Send>>;

/// See [`incoming`].
pub struct Incoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: FuturesUnordered<Handshake>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", &self.listener)
            .field("handshakes", &self.handshakes.len())
            .finish()
    }
}

async fn handshake(acceptor: TlsAcceptor, tcp: TcpStream, addr: SocketAddr) -> Option<TlsConn> {
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|leaf| CertInfo::parse(leaf).ok());
            Some(TlsConn { stream, peer: Peer { addr, cert } })
        }
        Ok(Err(e)) => {
            tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::info!(peer = %addr, "TLS handshake timed out");
            None
        }
    }
}

impl futures_core::Stream for Incoming {
    type Item = Result<TlsConn, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Take every connection waiting, then hand out a finished handshake.
        loop {
            match this.listener.poll_accept(cx) {
                Poll::Ready(Ok((tcp, addr))) => {
                    this.handshakes.push(Box::pin(handshake(this.acceptor.clone(), tcp, addr)));
                }
                // Out of file descriptors and the like: keep serving what is open,
                // and try accepting again a little later.
                Poll::Ready(Err(e)) => {
                    tracing::warn!(error = %e, "accept failed");
                    let waker = cx.waker().clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        waker.wake();
                    });
                    break;
                }
                Poll::Pending => break,
            }
        }
        loop {
            match Pin::new(&mut this.handshakes).poll_next(cx) {
                Poll::Ready(Some(Some(conn))) => return Poll::Ready(Some(Ok(conn))),
                Poll::Ready(Some(None)) => continue,
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Dials managers over TLS for tonic channels: TCP (no Nagle), from a chosen source
/// address if given, then a handshake that checks the server's certificate names
/// `shoal-manager`. Give channels an `http://host:port` endpoint: the TLS is here.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    name: ServerName<'static>,
    from: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("name", &self.name).field("from", &self.from).finish()
    }
}

impl Connector {
    /// A connector using `config` (from [`crate::Credentials::client_config`], or
    /// [`crate::creds::unverified_client_config`] to fetch a CA).
    pub fn new(config: Arc<ClientConfig>) -> Connector {
        Connector {
            tls: TlsConnector::from(config),
            name: ServerName::try_from(MANAGER_NAME).expect("the managers' name is a DNS name"),
            from: None,
        }
    }

    /// Dials from `ip` (any port): simulated nodes each use an address of their own.
    pub fn from_ip(mut self, ip: Option<std::net::IpAddr>) -> Connector {
        self.from = ip;
        self
    }
}

/// A TCP connection to `host:port`, from `from` if given.
async fn dial(host: &str, port: u16, from: Option<std::net::IpAddr>) -> io::Result<TcpStream> {
    let Some(ip) = from else { return TcpStream::connect((host, port)).await };
    let to = tokio::net::lookup_host((host, port)).await?.find(|a| a.is_ipv4() == ip.is_ipv4()).ok_or_else(
        || io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{host} has no address like {ip}")),
    )?;
    let socket =
        if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(to).await
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        let name = self.name.clone();
        let from = self.from;
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(2377);
            let tcp = dial(host, port, from).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
