//! The encrypted overlay's forwarder: the userspace data path of `--opt encrypted`
//! networks, in place of the kernel's VXLAN device (this kernel has no ESP, no
//! WireGuard, no MACsec and no kernel AEAD; the reasons are in docs/networking.md).
//!
//! Per encrypted network, a TAP device `tap0` sits on the overlay namespace's bridge.
//! One reader task per TAP takes each L2 frame, chooses its peers by destination MAC
//! ([`frame::Peers`]), seals it with the cluster's primary data-path key and sends it
//! over UDP to each peer's underlay address. One receiver task per node, on the
//! underlay address at the cluster's data-path port + 1 (the kernel's VXLAN sockets
//! hold the port itself), opens what arrives with any key of the ring, drops replays
//! and writes the frame into the TAP of its VXLAN id.
//!
//! The TAPs live as long as this process: a restarted daemon remakes its encrypted
//! overlays (and relinks their sandboxes), so unlike plain overlays their traffic
//! stops while the daemon is down. Nothing here logs a key or a frame.

pub mod frame;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use shoal_api::cluster::DataPathKeys;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use self::frame::{Keyring, Peers, ReplayWindow, Sealer};
use super::NetworkError;
use super::netns::Netns;

/// The TAP device's name inside an overlay namespace.
pub const TAP: &str = "tap0";
/// The largest frame read or datagram received.
const BUF: usize = 65_536;

/// The port encrypted overlays use: the one after the kernel VXLAN's.
pub fn port_for(data_path_port: u16) -> u16 {
    data_path_port.wrapping_add(1)
}

/// What the tasks share.
#[derive(Debug)]
struct Shared {
    socket: UdpSocket,
    port: u16,
    sealer: Sealer,
    keys: RwLock<Arc<Keyring>>,
    nets: RwLock<HashMap<u32, Arc<Net>>>,
    replay: Mutex<HashMap<Ipv4Addr, ReplayWindow>>,
    /// Packets refused (forged, replayed, unknown key or network), for the log.
    refused: AtomicU64,
}

#[derive(Debug)]
struct Net {
    tap: AsyncFd<OwnedFd>,
    peers: RwLock<Peers>,
}

/// The node's forwarder; see the module doc. Dropped, its tasks stop and its TAPs go.
#[derive(Debug)]
pub struct Forwarder {
    shared: Arc<Shared>,
    receiver: JoinHandle<()>,
    readers: Mutex<HashMap<u32, Reader>>,
    ring: Mutex<DataPathKeys>,
}

/// One overlay's reader task and the peers last given for it.
#[derive(Debug)]
struct Reader {
    task: JoinHandle<()>,
    peers: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.receiver.abort();
        if let Ok(r) = self.readers.lock() {
            for reader in r.values() {
                reader.task.abort();
            }
        }
    }
}

impl Forwarder {
    /// Binds `underlay:port` in `host` (the daemon's namespace) and starts receiving.
    pub(crate) async fn start(
        host: &Netns,
        underlay: Ipv4Addr,
        port: u16,
    ) -> Result<Forwarder, NetworkError> {
        let socket = host
            .run(move || {
                let s = StdUdpSocket::bind((underlay, port))?;
                s.set_nonblocking(true)?;
                grow_buffers(&s);
                Ok::<_, io::Error>(s)
            })
            .await?
            .map_err(|source| NetworkError::VxlanPortTaken { port, source })?;
        let socket = UdpSocket::from_std(socket)
            .map_err(|e| NetworkError::io("register the encrypted overlay's socket", e))?;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let empty =
            Keyring::new(&DataPathKeys::default()).map_err(|e| NetworkError::Config(e.to_string()))?;
        let shared = Arc::new(Shared {
            socket,
            port,
            sealer: Sealer::new(underlay, secs),
            keys: RwLock::new(Arc::new(empty)),
            nets: RwLock::new(HashMap::new()),
            replay: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        });
        let receiver = tokio::spawn(receive(shared.clone()));
        Ok(Forwarder {
            shared,
            receiver,
            readers: Mutex::new(HashMap::new()),
            ring: Mutex::new(DataPathKeys::default()),
        })
    }

    /// Uses the managers' keyring from now on (cheap when it did not change).
    pub fn set_keys(&self, ring: &DataPathKeys) -> Result<(), NetworkError> {
        let mut cur = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if *cur == *ring {
            return Ok(());
        }
        let keys = Keyring::new(ring).map_err(|e| NetworkError::Config(e.to_string()))?;
        *self.shared.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        *cur = ring.clone();
        tracing::info!(primary = ring.primary, keys = ring.keys.len(), "data-path keys updated");
        Ok(())
    }

    /// Carries overlay `vni` over `tap` (a TAP opened by [`open_tap`]), replacing what
    /// carried it before.
    pub fn add(&self, vni: u32, tap: OwnedFd) -> Result<(), NetworkError> {
        // SAFETY: `tap` is an open descriptor the `AsyncFd` owns, so it stays open and the
        // same for the `AsyncFd`'s whole life.
        let tap = unsafe { AsyncFd::register_with_interest(tap, tokio::io::Interest::READABLE) }
            .map_err(|e| NetworkError::io("register an encrypted overlay's TAP", e.into_parts().1))?;
        let net = Arc::new(Net { tap, peers: RwLock::new(Peers::default()) });
        self.shared.nets.write().unwrap_or_else(|e| e.into_inner()).insert(vni, net.clone());
        let task = tokio::spawn(send(self.shared.clone(), vni, net));
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = readers.insert(vni, Reader { task, peers: BTreeMap::new() }) {
            old.task.abort();
        }
        Ok(())
    }

    /// Whether overlay `vni` is carried.
    pub fn has(&self, vni: u32) -> bool {
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&vni)
    }

    /// The peers of overlay `vni` as last set.
    pub fn peers(&self, vni: u32) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&vni)
            .map(|r| r.peers.clone())
            .unwrap_or_default()
    }

    /// Overlay `vni`'s remote endpoints: overlay address → VTEP.
    pub fn set_peers(&self, vni: u32, peers: &BTreeMap<Ipv4Addr, Ipv4Addr>) {
        let nets = self.shared.nets.read().unwrap_or_else(|e| e.into_inner());
        if let Some(net) = nets.get(&vni) {
            *net.peers.write().unwrap_or_else(|e| e.into_inner()) = Peers::new(peers);
        }
        if let Some(r) = self.readers.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&vni) {
            r.peers.clone_from(peers);
        }
    }

    /// Stops carrying every overlay but `keep`.
    pub fn retain(&self, keep: &[u32]) {
        self.shared.nets.write().unwrap_or_else(|e| e.into_inner()).retain(|vni, _| keep.contains(vni));
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).retain(|vni, r| {
            let k = keep.contains(vni);
            if !k {
                r.task.abort();
            }
            k
        });
    }
}

/// Reads frames from one overlay's TAP, seals them and sends them to their peers.
async fn send(shared: Arc<Shared>, vni: u32, net: Arc<Net>) {
    let mut buf = vec![0u8; BUF];
    let mut out = Vec::with_capacity(BUF);
    let mut warned = false;
    loop {
        let n = match net.tap.readable().await {
            Ok(mut guard) => match guard.try_io(|fd| read(fd.get_ref(), &mut buf)) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::warn!(vni, error = %e, "the encrypted overlay's TAP failed; its traffic stops until the next wiring");
                    return;
                }
                Err(_would_block) => continue,
            },
            Err(e) => {
                tracing::warn!(vni, error = %e, "the encrypted overlay's TAP failed");
                return;
            }
        };
        if n < 14 {
            continue;
        }
        let dst: [u8; 6] = buf[..6].try_into().unwrap_or_default();
        let vteps: Vec<Ipv4Addr> =
            net.peers.read().unwrap_or_else(|e| e.into_inner()).destinations(dst).to_vec();
        if vteps.is_empty() {
            continue;
        }
        let keys = shared.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Err(e) = shared.sealer.seal(&keys, vni, &buf[..n], &mut out) {
            if !warned {
                tracing::warn!(vni, error = %e, "cannot seal the encrypted overlay's traffic");
                warned = true;
            }
            continue;
        }
        warned = false;
        for vtep in vteps {
            // A full socket buffer drops the packet, as a NIC would.
            let _ = shared.socket.send_to(&out, SocketAddr::from((vtep, shared.port))).await;
        }
    }
}

/// Receives sealed packets, opens them and writes their frames to their overlay's TAP.
async fn receive(shared: Arc<Shared>) {
    let mut buf = vec![0u8; BUF];
    loop {
        let (n, from) = match shared.socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "encrypted overlay receive");
                continue;
            }
        };
        let keys = shared.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (h, frame) = match frame::open(&keys, &mut buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                refused(&shared, &e);
                continue;
            }
        };
        if from.ip() != std::net::IpAddr::V4(h.sender) {
            refused(&shared, &frame::SealError::Malformed);
            continue;
        }
        let fresh = shared
            .replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(h.sender)
            .or_default()
            .accept(h.counter);
        if !fresh {
            refused(&shared, &frame::SealError::Replayed { sender: h.sender, counter: h.counter });
            continue;
        }
        let net = shared.nets.read().unwrap_or_else(|e| e.into_inner()).get(&h.vni).cloned();
        if let Some(net) = net {
            // A full TAP queue drops the frame.
            let _ = write(net.tap.get_ref(), frame);
        }
    }
}

/// Socket buffers of 4 MiB each way, past `net.core.[rw]mem_max` (the daemon has
/// CAP_NET_ADMIN): the default 208 KiB overflows in a burst while the receiver is off the
/// CPU, and every drop costs the TCP stream inside a retransmission. Best effort.
fn grow_buffers(s: &StdUdpSocket) {
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: sets an int option of its size on a socket we own.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "could not grow the encrypted overlay's socket buffer");
        }
    }
}

fn refused(shared: &Shared, why: &frame::SealError) {
    let n = shared.refused.fetch_add(1, Ordering::Relaxed);
    if n.is_power_of_two() {
        tracing::info!(refused = n + 1, last = %why, "encrypted overlay packets refused so far");
    }
}

fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reads into a buffer we own, of its length, from a descriptor we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

fn write(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: writes from a buffer we own, of its length, to a descriptor we own.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Makes TAP device `name` (Ethernet frames, no packet info) in the calling thread's
/// namespace; it lives as long as the returned descriptor. Run it inside the overlay
/// namespace ([`Netns::run`]).
pub fn open_tap(name: &str) -> io::Result<OwnedFd> {
    // SAFETY: opens a path from a NUL-terminated literal; the result is checked.
    let fd =
        unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` lays out (40
    // bytes) and which lives across the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_encrypted_port_follows_the_vxlan_port() {
        assert_eq!(super::port_for(4789), 4790);
    }

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<super::IfReq>(), 40);
    }
}
