//! Segment files: `<sequence>-<first index>.wal` (16 hex digits each), a 48-byte header
//! (magic, format version, sequence, first index, a unique id, CRC32C of the header),
//! then frames. A segment is made under a `.tmp` name, preallocated, given its header
//! and checkpoint, synced, and only then renamed into place (and the directory
//! synced), so a segment with its final name is always whole.

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::WalError;

const MAGIC: &[u8; 8] = b"SHOALWAL";
/// The format this code writes and reads.
const VERSION: u32 = 1;
/// Bytes of a segment's header; frames follow.
pub(crate) const HEADER_LEN: usize = 48;

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) seq: u64,
    pub(crate) first: u64,
    pub(crate) id: u64,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&self.seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.first.to_le_bytes());
        h[32..40].copy_from_slice(&self.id.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..40]);
        h[40..44].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub(crate) fn decode(data: &[u8]) -> Result<Header, String> {
        let h = data.first_chunk::<HEADER_LEN>().ok_or("the segment header is cut off")?;
        if &h[0..8] != MAGIC {
            return Err("not a Shoal log segment (bad magic)".into());
        }
        let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(h[40..44].try_into().expect("4 bytes"));
        if crc32c::crc32c(&h[0..40]) != crc {
            return Err("the segment header's checksum does not match".into());
        }
        let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format!("segment format version {version}, this build reads {VERSION}"));
        }
        Ok(Header { seq: u64_at(16), first: u64_at(24), id: u64_at(32) })
    }
}

/// The file name of segment `seq` whose first entry would be `first`.
pub(crate) fn name(seq: u64, first: u64) -> String {
    format!("{seq:016x}-{first:016x}.wal")
}

/// The sequence number in a segment's file name, if it is one.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, first) = stem.split_once('-')?;
    u64::from_str_radix(first, 16).ok()?;
    (seq.len() == 16).then(|| u64::from_str_radix(seq, 16).ok()).flatten()
}

/// A new segment id, unlikely ever to repeat.
pub(crate) fn new_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Reserves `len` bytes for `file` (its size becomes `len`), so appends never allocate.
fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    use nix::errno::Errno;
    let size = i64::try_from(len).map_err(std::io::Error::other)?;
    match nix::fcntl::fallocate(file, nix::fcntl::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // File systems without fallocate: a sparse file of the same size.
        Err(Errno::EOPNOTSUPP | Errno::EINTR | Errno::EINVAL) => file.set_len(len),
        Err(e) => Err(e.into()),
    }
}

/// Makes changes to `dir`'s entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| WalError::io("sync the directory", dir, e))
}

/// A segment written and synced under its temporary name, not yet in place.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) file: File,
    pub(crate) tmp: PathBuf,
    pub(crate) path: PathBuf,
    /// Where its next frame goes.
    pub(crate) end: u64,
}

/// Makes segment `seq` (first index `first`) of `size` bytes in `dir` with `initial`
/// (its checkpoint frame, written for `id`) after the header, under a `.tmp` name.
/// A full disk is [`WalError::DiskFull`], and leaves nothing behind.
pub(crate) fn prepare(
    dir: &Path,
    seq: u64,
    first: u64,
    id: u64,
    size: u64,
    initial: &[u8],
) -> Result<Prepared, WalError> {
    let path = dir.join(name(seq, first));
    let tmp = path.with_extension("wal.tmp");
    let made = (|| {
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&tmp)?;
        let mut head = Header { seq, first, id }.encode().to_vec();
        head.extend_from_slice(initial);
        preallocate(&file, size.max(head.len() as u64))?;
        file.write_all_at(&head, 0)?;
        file.sync_data()?;
        Ok::<_, std::io::Error>((file, head.len() as u64))
    })();
    match made {
        Ok((file, end)) => Ok(Prepared { file, tmp, path, end }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            if e.raw_os_error() == Some(libc_enospc()) {
                Err(WalError::DiskFull { dir: dir.to_owned() })
            } else {
                Err(WalError::io("create the log segment", tmp, e))
            }
        }
    }
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

/// Renames a prepared segment into place and syncs the directory.
pub(crate) fn install(dir: &Path, p: &Prepared) -> Result<(), WalError> {
    std::fs::rename(&p.tmp, &p.path).map_err(|e| WalError::io("rename the new log segment", &p.tmp, e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_names_round_trip() {
        let h = Header { seq: 3, first: 900, id: 77 };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[20] ^= 1;
        assert!(Header::decode(&bad).unwrap_err().contains("checksum"));
        assert_eq!(parse_name(&name(3, 900)), Some(3));
        assert_eq!(parse_name("LOCK"), None);
    }
}
