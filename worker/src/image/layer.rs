//! Unpacking one image layer (a tar stream, maybe gzip or zstd) into its own directory
//! for overlayfs: whiteouts become what overlayfs reads (`.wh.x` → a 0/0 character
//! device `x`; `.wh..wh..opq` → the `trusted.overlay.opaque` xattr), and no entry may
//! land outside the directory: absolute paths, `..` and paths through symlinks are
//! refused, as are hard links that point outside.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use sha2::{Digest, Sha256};

/// Why a layer could not be unpacked; each names the entry.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An entry whose path leaves the layer (absolute, `..`, or through a symlink).
    #[error("tar entry {0:?} points outside the layer: the image is corrupt or hostile")]
    Escape(String),
    /// `.wh.` alone, or a whiteout of something impossible.
    #[error("tar entry {0:?} is not a valid whiteout")]
    BadWhiteout(String),
    /// Reading the archive or writing the files failed.
    #[error("unpack {entry}")]
    Io {
        /// The entry (or "archive" for the stream itself).
        entry: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The layer's media type is none Shoal reads.
    #[error("unsupported layer media type {0:?}: Shoal reads tar, tar+gzip and tar+zstd layers")]
    MediaType(String),
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// From an OCI or Docker media type.
    pub fn from_media_type(mt: &str) -> Result<Compression, LayerError> {
        match mt {
            "application/vnd.oci.image.layer.v1.tar" | "application/vnd.docker.image.rootfs.diff.tar" => {
                Ok(Compression::None)
            }
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => Ok(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd" => Ok(Compression::Zstd),
            other => Err(LayerError::MediaType(other.to_owned())),
        }
    }

    /// Guesses from the first bytes (for `docker save` archives, which name no type).
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// A reader that hashes what passes through it: the DiffID of a layer is the sha256 of
/// its uncompressed tar, and a blob's digest that of its bytes.
pub(crate) struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing { inner, hash: Sha256::new() }
    }

    /// `sha256:<hex>` of everything read so far.
    pub(crate) fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hash.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn io_err(entry: impl Into<String>) -> impl FnOnce(io::Error) -> LayerError {
    let entry = entry.into();
    move |source| LayerError::Io { entry, source }
}

/// Unpacks the layer `blob` (compressed as `compression`) into the empty directory
/// `dest`; returns the DiffID (`sha256:<hex>` of the uncompressed tar).
pub fn unpack(blob: impl Read, compression: Compression, dest: &Path) -> Result<String, LayerError> {
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(blob)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(blob)
                .map_err(|e| io_err("archive")(io::Error::other(e)))?,
        ),
    };
    let mut hashing = Hashing::new(reader);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        for entry in archive.entries().map_err(io_err("archive"))? {
            let mut entry = entry.map_err(io_err("archive"))?;
            let raw = entry.path().map_err(io_err("archive"))?.to_string_lossy().into_owned();
            let rel = clean(&raw)?;
            if rel.as_os_str().is_empty() {
                continue; // "./" itself
            }
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let parent = rel.parent().unwrap_or(Path::new(""));
            check_no_symlinks(dest, parent, &raw)?;
            if name == ".wh..wh..opq" {
                let dir = dest.join(parent);
                fs::create_dir_all(&dir).map_err(io_err(&raw))?;
                set_opaque(&dir).map_err(io_err(&raw))?;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                if hidden.is_empty() || hidden == "." || hidden == ".." {
                    return Err(LayerError::BadWhiteout(raw));
                }
                let dir = dest.join(parent);
                fs::create_dir_all(&dir).map_err(io_err(&raw))?;
                let target = dir.join(hidden);
                remove_any(&target).map_err(io_err(&raw))?;
                mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(|e| io_err(raw.clone())(e.into()))?;
                continue;
            }
            let hard_link = match entry.link_name().map_err(io_err(&raw))? {
                Some(link) if entry.header().entry_type() == tar::EntryType::Link => {
                    let target = clean(&link.to_string_lossy())?;
                    check_no_symlinks(dest, target.parent().unwrap_or(Path::new("")), &raw)?;
                    if fs::symlink_metadata(dest.join(&target)).is_ok_and(|m| m.file_type().is_symlink()) {
                        return Err(LayerError::Escape(raw));
                    }
                    Some(dest.join(target))
                }
                _ => None,
            };
            let out = dest.join(&rel);
            if let Some(p) = out.parent() {
                fs::create_dir_all(p).map_err(io_err(&raw))?;
            }
            // An entry replaces what an earlier entry of this layer put there, unless
            // both are directories (then they merge).
            if let Ok(existing) = fs::symlink_metadata(&out)
                && !(existing.is_dir() && entry.header().entry_type().is_dir())
            {
                remove_any(&out).map_err(io_err(&raw))?;
            }
            // Hard links name their target inside this layer; the tar crate would
            // resolve it against the working directory.
            if let Some(target) = hard_link {
                fs::hard_link(&target, &out).map_err(io_err(&raw))?;
                continue;
            }
            entry.unpack(&out).map_err(io_err(&raw))?;
        }
    }
    // Read to the end: the DiffID covers the tar's trailing blocks too.
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err("archive"))?;
    Ok(hashing.digest())
}

/// A tar path made relative and checked: no `..`, no absolute root.
fn clean(raw: &str) -> Result<PathBuf, LayerError> {
    let mut out = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(LayerError::Escape(raw.to_owned()));
            }
        }
    }
    Ok(out)
}

/// Refuses to write below a symlink made by this layer: it could point anywhere.
fn check_no_symlinks(dest: &Path, rel_parent: &Path, raw: &str) -> Result<(), LayerError> {
    let mut p = dest.to_path_buf();
    for c in rel_parent.components() {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return Err(LayerError::Escape(raw.to_owned())),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Marks `dir` opaque for overlayfs: `trusted.overlay.opaque` for mounts made by host
/// root, and `user.overlay.opaque` for mounts made in a user namespace (`userxattr`).
fn set_opaque(dir: &Path) -> io::Result<()> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    for name in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        // SAFETY: both strings are NUL-terminated and live across the call; the value
        // is one byte long as passed.
        let r = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Bypass the builder's own path checks: hostile archives do not use it.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};

    #[test]
    fn unpacks_and_converts_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let data = tar_of(&[
            ("etc/", D, b"", None),
            ("etc/hosts", F, b"x", None),
            ("etc/.wh.passwd", F, b"", None),
            ("var/.wh..wh..opq", F, b"", None),
            ("bin/sh", S, b"", Some("busybox")),
            ("bin/ln", H, b"", Some("etc/hosts")),
        ]);
        let diff_id = unpack(&data[..], Compression::None, dir.path()).unwrap();
        assert_eq!(diff_id, format!("sha256:{}", hex::encode(Sha256::digest(&data))));
        assert_eq!(fs::read(dir.path().join("etc/hosts")).unwrap(), b"x");
        let wh = fs::symlink_metadata(dir.path().join("etc/passwd")).unwrap();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout is a 0/0 char device");
        assert!(!dir.path().join("etc/.wh.passwd").exists());
        assert!(xattr_is_opaque(&dir.path().join("var")));
        assert_eq!(fs::read_link(dir.path().join("bin/sh")).unwrap(), Path::new("busybox"));
        assert_eq!(fs::read(dir.path().join("bin/ln")).unwrap(), b"x");
    }

    fn xattr_is_opaque(p: &Path) -> bool {
        let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let mut buf = [0u8; 4];
        // SAFETY: valid C strings and a buffer of the length passed.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        n == 1 && buf[0] == b'y'
    }

    #[test]
    fn refuses_hostile_entries() {
        for (name, entries) in [
            ("absolute", vec![("/etc/passwd", F, &b"x"[..], None)]),
            ("dotdot", vec![("a/../../x", F, &b"x"[..], None)]),
            (
                "through symlink",
                vec![("evil", S, &b""[..], Some("/etc")), ("evil/passwd", F, &b"x"[..], None)],
            ),
            ("hardlink out", vec![("x", H, &b""[..], Some("../../etc/shadow"))]),
            (
                "hardlink via symlink",
                vec![("s", S, &b""[..], Some("/etc/shadow")), ("x", H, &b""[..], Some("s"))],
            ),
            ("bare whiteout", vec![("a/.wh.", F, &b""[..], None)]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("layer");
            fs::create_dir(&dest).unwrap();
            let data = tar_of(&entries);
            let err = unpack(&data[..], Compression::None, &dest);
            assert!(err.is_err(), "{name}: accepted");
            assert!(
                !dir.path().join("etc").exists() && !dir.path().join("x").exists(),
                "{name}: wrote outside"
            );
        }
    }

    #[test]
    fn gzip_and_zstd_are_read() {
        use std::io::Write;
        let data = tar_of(&[("f", F, b"hello", None)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(Compression::sniff(&gz), Compression::Gzip);
        let dir = tempfile::tempdir().unwrap();
        let id = unpack(&gz[..], Compression::Gzip, dir.path()).unwrap();
        assert_eq!(id, format!("sha256:{}", hex::encode(Sha256::digest(&data))));
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"hello");
        // A zstd frame made by the zstd CLI (CI installs it), holding the same tar.
        let mut child = std::process::Command::new("zstd")
            .args(["-q", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the zstd command (apt-get install zstd)");
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(Compression::sniff(&out.stdout), Compression::Zstd);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unpack(&out.stdout[..], Compression::Zstd, dir.path()).unwrap(), id);
        assert!(Compression::from_media_type("application/x-foo").is_err());
    }
}
