//! Binding the resolver's sockets inside a sandbox's network namespace.
//!
//! A socket keeps the namespace it was made in, so the daemon can serve it from its
//! own threads. The namespace is entered by a dedicated short-lived thread, never by a
//! runtime thread (the runtime's other tasks would find themselves in the sandbox);
//! that thread binds, hands the sockets back and ends, taking the namespace with it.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use super::DnsError;
use super::resolv::RESOLVER_IP;

/// The resolver's sockets, ready for the runtime.
pub(crate) struct Bound {
    pub(crate) udp: tokio::net::UdpSocket,
    pub(crate) tcp: tokio::net::TcpListener,
}

/// Binds UDP and TCP on `127.0.0.11:0` inside `netns` (bringing its `lo` up first) on
/// a thread of its own, and registers the sockets with the current runtime.
pub(crate) async fn bind(netns: &Path) -> Result<Bound, DnsError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = netns.to_path_buf();
    std::thread::Builder::new()
        .name("shoal-dns-bind".into())
        .spawn(move || {
            let _ = tx.send(bind_on_this_thread(&path));
        })
        .map_err(DnsError::Thread)?;
    let (udp, tcp) = rx.await.map_err(|_| DnsError::ThreadLost(netns.to_path_buf()))??;
    Ok(Bound {
        udp: tokio::net::UdpSocket::from_std(udp).map_err(DnsError::Register)?,
        tcp: tokio::net::TcpListener::from_std(tcp).map_err(DnsError::Register)?,
    })
}

/// Enters `netns` with the calling thread (which must be about to end) and binds.
fn bind_on_this_thread(netns: &Path) -> Result<(UdpSocket, TcpListener), DnsError> {
    let path = || netns.to_path_buf();
    let file = File::open(netns).map_err(|source| DnsError::OpenNetns { path: path(), source })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| DnsError::EnterNetns { path: path(), source })?;
    loopback_up().map_err(|source| DnsError::LoopbackUp { path: path(), source })?;
    let addr = SocketAddr::from((RESOLVER_IP, 0));
    let failed = |proto| move |source| DnsError::Bind { path: path(), proto, source };
    let udp =
        UdpSocket::bind(addr).and_then(|s| s.set_nonblocking(true).map(|()| s)).map_err(failed("UDP"))?;
    let tcp =
        TcpListener::bind(addr).and_then(|s| s.set_nonblocking(true).map(|()| s)).map_err(failed("TCP"))?;
    Ok((udp, tcp))
}

/// Sets `lo` up in the calling thread's namespace if it is down (a fresh namespace's
/// is). The kernel then gives it 127.0.0.1/8, whose local route covers 127.0.0.11.
fn loopback_up() -> io::Result<()> {
    let fd: OwnedFd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    // SAFETY: ifreq is plain old data (a name and a union of integers and
    // addresses), for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, a
    // valid, exclusively borrowed ifreq; `fd` is an open socket.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the union holds the flags.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the name and the flags from `req`, a valid ifreq;
    // `fd` is an open socket.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
