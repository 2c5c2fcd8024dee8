//! The sealed overlay's wire format and its decisions, without IO: sealing and
//! opening an Ethernet frame with the cluster's data-path keys, the replay window,
//! and which peers a frame goes to.
//!
//! A packet is a UDP payload:
//!
//! ```text
//!  0      1        4          8          12                 20
//!  | ver  | VNI    | key id   | sender   | counter          | AES-128-GCM(frame) | tag (16) |
//! ```
//!
//! The 20-byte header is the AEAD's associated data, so nothing in it can be changed
//! in flight. The nonce is the sender's underlay address and its counter (12 bytes):
//! unique per key as long as each node's counter never repeats. The counter starts at
//! the Unix time in seconds shifted left 32 bits when the forwarder starts, so a
//! restarted node continues above where it stopped (it would need 2^32 packets in a
//! second to catch up with its own future), and receivers keep one replay window per
//! sender across restarts. This assumes a node's clock does not step back between
//! two starts within a key's life (at most 36 hours).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use shoal_api::cluster::DataPathKeys;

use crate::network::desired::mac_for;

/// The header's length.
pub const HEADER_LEN: usize = 20;
/// The AEAD tag's length.
pub const TAG_LEN: usize = 16;
/// The format's version, the first byte.
const VERSION: u8 = 1;
/// Counters remembered behind the highest seen, per sender.
pub const WINDOW: u64 = 1024;

/// Why a packet was not sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The managers sent a key of the wrong length.
    #[error("data-path key {0} is not a 16-byte AES-128 key: the managers' keyring is damaged")]
    BadKey(u32),
    /// No key to seal with yet.
    #[error("no data-path key yet: the managers' keyring has not reached this node")]
    NoKey,
    /// Too short, or another format.
    #[error("not a sealed overlay packet")]
    Malformed,
    /// Sealed with a key this node does not hold (too old, or not yet received).
    #[error("sealed with data-path key {0}, which this node does not hold")]
    UnknownKey(u32),
    /// The tag does not match: damaged, forged, or another key's.
    #[error("the packet failed authentication")]
    Forged,
    /// The counter was seen already, or is too far behind.
    #[error("replayed packet (counter {counter} from {sender})")]
    Replayed {
        /// The sender.
        sender: Ipv4Addr,
        /// Its counter.
        counter: u64,
    },
}

/// A sealed packet's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The overlay's VXLAN id.
    pub vni: u32,
    /// The key it is sealed with.
    pub key_id: u32,
    /// The sending node's underlay address.
    pub sender: Ipv4Addr,
    /// The sender's counter.
    pub counter: u64,
}

impl Header {
    fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&(self.vni & 0x00ff_ffff).to_be_bytes());
        b[0] = VERSION;
        b[4..8].copy_from_slice(&self.key_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.sender.octets());
        b[12..20].copy_from_slice(&self.counter.to_be_bytes());
        b
    }

    fn parse(b: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        if b[0] != VERSION {
            return None;
        }
        Some(Header {
            vni: u32::from_be_bytes([0, b[1], b[2], b[3]]),
            key_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            sender: Ipv4Addr::new(b[8], b[9], b[10], b[11]),
            counter: u64::from_be_bytes([b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19]]),
        })
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..4].copy_from_slice(&self.sender.octets());
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
}

/// The keys of the managers' ring, ready to use: one to seal with, all to open with.
#[derive(Debug)]
pub struct Keyring {
    primary: u32,
    keys: Vec<(u32, LessSafeKey)>,
}

impl Keyring {
    /// The ring the managers sent.
    pub fn new(ring: &DataPathKeys) -> Result<Keyring, SealError> {
        let mut keys = Vec::with_capacity(ring.keys.len());
        for k in &ring.keys {
            let unbound = UnboundKey::new(&AES_128_GCM, &k.key).map_err(|_| SealError::BadKey(k.id))?;
            keys.push((k.id, LessSafeKey::new(unbound)));
        }
        Ok(Keyring { primary: ring.primary, keys })
    }

    fn get(&self, id: u32) -> Option<&LessSafeKey> {
        self.keys.iter().find(|(i, _)| *i == id).map(|(_, k)| k)
    }
}

/// This node's sealing side: its address and its counter.
#[derive(Debug)]
pub struct Sealer {
    sender: Ipv4Addr,
    counter: AtomicU64,
}

impl Sealer {
    /// A sealer for `sender` whose counter starts at `unix_secs << 32`.
    pub fn new(sender: Ipv4Addr, unix_secs: u64) -> Sealer {
        Sealer { sender, counter: AtomicU64::new(unix_secs << 32) }
    }

    /// Seals `frame` for overlay `vni` into `out` (cleared first).
    pub fn seal(&self, ring: &Keyring, vni: u32, frame: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        let key = ring.get(ring.primary).ok_or(SealError::NoKey)?;
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let h = Header { vni, key_id: ring.primary, sender: self.sender, counter };
        let head = h.bytes();
        out.clear();
        out.reserve(HEADER_LEN + frame.len() + TAG_LEN);
        out.extend_from_slice(&head);
        out.extend_from_slice(frame);
        let tag = key
            .seal_in_place_separate_tag(h.nonce(), Aad::from(&head), &mut out[HEADER_LEN..])
            .map_err(|_| SealError::Malformed)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

/// Opens a sealed packet in place: its header and the frame inside. The caller checks
/// the counter against the sender's [`ReplayWindow`] afterwards (only authentic
/// counters may move a window).
pub fn open<'a>(ring: &Keyring, packet: &'a mut [u8]) -> Result<(Header, &'a [u8]), SealError> {
    if packet.len() < HEADER_LEN + TAG_LEN {
        return Err(SealError::Malformed);
    }
    let h = Header::parse(packet).ok_or(SealError::Malformed)?;
    let key = ring.get(h.key_id).ok_or(SealError::UnknownKey(h.key_id))?;
    let (head, body) = packet.split_at_mut(HEADER_LEN);
    let frame = key.open_in_place(h.nonce(), Aad::from(&*head), body).map_err(|_| SealError::Forged)?;
    Ok((h, frame))
}

/// The counters seen from one sender: the highest, and which of the [`WINDOW`] below
/// it (RFC 6479's idea, as a plain bitmap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    seen: [u64; (WINDOW / 64) as usize],
    any: bool,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow { top: 0, seen: [0; (WINDOW / 64) as usize], any: false }
    }
}

impl ReplayWindow {
    fn bit(n: u64) -> (usize, u64) {
        let i = n % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `counter` is new; if so, it is remembered.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.any || counter > self.top {
            let from = if self.any { self.top + 1 } else { counter };
            if counter - from >= WINDOW {
                self.seen = [0; (WINDOW / 64) as usize];
            } else {
                for n in from..counter {
                    let (w, b) = Self::bit(n);
                    self.seen[w] &= !b;
                }
            }
            let (w, b) = Self::bit(counter);
            self.seen[w] |= b;
            self.top = counter;
            self.any = true;
            return true;
        }
        if self.top - counter >= WINDOW {
            return false;
        }
        let (w, b) = Self::bit(counter);
        if self.seen[w] & b != 0 {
            return false;
        }
        self.seen[w] |= b;
        true
    }
}

/// The remote endpoints of one overlay: by MAC, the VTEP that has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    by_mac: HashMap<[u8; 6], Ipv4Addr>,
    vteps: Vec<Ipv4Addr>,
}

impl Peers {
    /// From the desired state's peers: overlay address → VTEP.
    pub fn new<'a>(peers: impl IntoIterator<Item = (&'a Ipv4Addr, &'a Ipv4Addr)>) -> Peers {
        let mut p = Peers::default();
        for (ip, vtep) in peers {
            p.by_mac.insert(mac_for(*ip), *vtep);
            p.vteps.push(*vtep);
        }
        p.vteps.sort();
        p.vteps.dedup();
        p
    }

    /// Where a frame for `dst` goes: broadcast and multicast to every node with a
    /// remote endpoint, a known MAC to its node; anything else nowhere (the bridge
    /// floods frames for local MACs it has not learnt yet to every port, this one too).
    pub fn destinations(&self, dst: [u8; 6]) -> &[Ipv4Addr] {
        if dst[0] & 1 == 1 {
            return &self.vteps;
        }
        match self.by_mac.get(&dst) {
            Some(vtep) => std::slice::from_ref(vtep),
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_api::cluster::DataPathKey;

    fn ring(ids: &[u32], primary: u32) -> Keyring {
        let keys = ids
            .iter()
            .map(|&id| DataPathKey { id, key: vec![id as u8; 16], created_at: chrono::Utc::now() })
            .collect();
        Keyring::new(&DataPathKeys { keys, primary }).expect("keys")
    }

    const FRAME: &[u8] =
        b"\x02\x42\x0a\x00\x00\x03\x02\x42\x0a\x00\x00\x02\x08\x00the marker SHOAL-PLAINTEXT";

    fn sealed(ring: &Keyring) -> Vec<u8> {
        let mut out = Vec::new();
        Sealer::new(Ipv4Addr::new(192, 0, 2, 1), 1_700_000_000)
            .seal(ring, 4097, FRAME, &mut out)
            .expect("seal");
        out
    }

    #[test]
    fn a_sealed_frame_opens_to_itself_and_hides_it() {
        let r = ring(&[1], 1);
        let mut packet = sealed(&r);
        assert_eq!(packet.len(), HEADER_LEN + FRAME.len() + TAG_LEN);
        assert!(!packet.windows(9).any(|w| w == b"SHOAL-PLA"), "the plaintext is not on the wire");
        let (h, frame) = open(&r, &mut packet).expect("open");
        assert_eq!(frame, FRAME);
        assert_eq!((h.vni, h.key_id, h.sender), (4097, 1, Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(h.counter, 1_700_000_000u64 << 32);
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused() {
        let r = ring(&[1], 1);
        let clean = sealed(&r);
        for i in [1, 3, 7, 11, 19, HEADER_LEN + 2, clean.len() - 1] {
            let mut p = clean.clone();
            p[i] ^= 0x40;
            let got = open(&r, &mut p).map(|(h, f)| (h, f.to_vec()));
            assert!(matches!(got, Err(SealError::Forged | SealError::UnknownKey(_))), "byte {i}: {got:?}");
        }
        let mut short = clean[..HEADER_LEN + 3].to_vec();
        assert_eq!(open(&r, &mut short).err(), Some(SealError::Malformed));
    }

    #[test]
    fn another_key_cannot_open_it() {
        let mut p = sealed(&ring(&[1], 1));
        let other = Keyring::new(&DataPathKeys {
            keys: vec![DataPathKey { id: 1, key: vec![9; 16], created_at: chrono::Utc::now() }],
            primary: 1,
        })
        .expect("keys");
        assert_eq!(open(&other, &mut p).err(), Some(SealError::Forged));
    }

    #[test]
    fn during_a_rotation_every_key_of_the_ring_opens_and_a_dropped_one_does_not() {
        // A node still sealing with key 1, another already with key 2: a receiver
        // holding the ring [1, 2] opens both.
        let old = sealed(&ring(&[1, 2], 1));
        let new = sealed(&ring(&[1, 2], 2));
        let receiver = ring(&[1, 2], 1);
        for mut p in [old.clone(), new] {
            assert!(open(&receiver, &mut p).is_ok());
        }
        let later = ring(&[2, 3, 4], 4);
        let mut p = old;
        assert_eq!(open(&later, &mut p).err(), Some(SealError::UnknownKey(1)));
    }

    #[test]
    fn no_primary_key_seals_nothing() {
        let mut out = Vec::new();
        let r = Keyring::new(&DataPathKeys::default()).expect("empty ring");
        assert_eq!(Sealer::new(Ipv4Addr::LOCALHOST, 0).seal(&r, 1, FRAME, &mut out), Err(SealError::NoKey));
        let bad = DataPathKeys {
            keys: vec![DataPathKey { id: 5, key: vec![1; 7], created_at: chrono::Utc::now() }],
            primary: 5,
        };
        assert_eq!(Keyring::new(&bad).err(), Some(SealError::BadKey(5)));
    }

    #[test]
    fn counters_never_repeat_and_restart_above_the_last_run() {
        let r = ring(&[1], 1);
        let s = Sealer::new(Ipv4Addr::new(192, 0, 2, 1), 100);
        let mut a = Vec::new();
        let mut b = Vec::new();
        s.seal(&r, 1, FRAME, &mut a).expect("seal");
        s.seal(&r, 1, FRAME, &mut b).expect("seal");
        let ca = open(&r, &mut a).expect("open").0.counter;
        let cb = open(&r, &mut b).expect("open").0.counter;
        assert_eq!(cb, ca + 1);
        let restarted = Sealer::new(Ipv4Addr::new(192, 0, 2, 1), 101);
        restarted.seal(&r, 1, FRAME, &mut a).expect("seal");
        assert!(open(&r, &mut a).expect("open").0.counter > cb + (1 << 31));
    }

    #[test]
    fn the_replay_window_takes_each_counter_once_and_late_ones_within_the_window() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(5000));
        assert!(!w.accept(5000), "a replay");
        assert!(w.accept(5002));
        assert!(w.accept(5001), "late but new");
        assert!(!w.accept(5001));
        assert!(w.accept(5000 + WINDOW));
        assert!(!w.accept(5000), "fell out of the window");
        assert!(w.accept(5003), "still inside the window");
        assert!(w.accept(5000 + 10 * WINDOW), "a jump, as after a sender's restart");
        assert!(!w.accept(5000 + WINDOW + 1), "now far behind");
        assert!(w.accept(5000 + 10 * WINDOW - 1));
    }

    #[test]
    fn frames_go_to_the_node_of_their_mac_and_broadcasts_to_every_node() {
        let a = Ipv4Addr::new(10, 0, 0, 3);
        let b = Ipv4Addr::new(10, 0, 0, 4);
        let c = Ipv4Addr::new(10, 0, 0, 5);
        let (n2, n3) = (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3));
        let map = [(a, n2), (b, n2), (c, n3)];
        let p = Peers::new(map.iter().map(|(i, v)| (i, v)));
        assert_eq!(p.destinations(mac_for(c)), [n3]);
        assert_eq!(p.destinations(mac_for(a)), [n2]);
        assert_eq!(p.destinations([0xff; 6]), [n2, n3], "each node once");
        assert_eq!(p.destinations([0x01, 0x00, 0x5e, 0, 0, 1]), [n2, n3], "multicast");
        assert!(p.destinations(mac_for(Ipv4Addr::new(10, 0, 0, 9))).is_empty(), "local or unknown");
    }
}
