//! Layer copies whose file owners are shifted into a user namespace's id range, for
//! containers run with `--userns`: inside the namespace, the image's root-owned files
//! then belong to the container's root. Like Docker's userns-remap, each mapping gets
//! its own copy of a layer, made once and kept beside the layer (and collected with it).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

/// The copy of the layer directory `diff` shifted by `host` (ids `0..size` become
/// `host..host+size`); made now if missing.
pub fn shifted_copy(diff: &Path, host: u32, size: u32) -> io::Result<PathBuf> {
    let parent = diff.parent().ok_or_else(|| io::Error::other("a layer directory has a parent"))?;
    let dest = parent.join(format!("diff-userns-{host}-{size}"));
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = parent.join(format!(".diff-userns-{host}-{size}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let shift = |id: u32| if id < size { id + host } else { host + size - 1 };
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    copy_tree(diff, &tmp, &shift, &mut links)?;
    match fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another start made it meanwhile.
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(e),
    }
}

fn copy_tree(
    src: &Path,
    dst: &Path,
    shift: &dyn Fn(u32) -> u32,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir(dst)?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()), shift, links)?;
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else if meta.nlink() > 1 && links.contains_key(&(meta.dev(), meta.ino())) {
        fs::hard_link(&links[&(meta.dev(), meta.ino())], dst)?;
        return Ok(());
    } else if ft.is_file() {
        fs::copy(src, dst)?;
        if meta.nlink() > 1 {
            links.insert((meta.dev(), meta.ino()), dst.to_path_buf());
        }
    } else {
        // Device nodes, including overlayfs whiteouts (character 0/0), and fifos.
        let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
        let rdev = meta.rdev();
        mknod(
            dst,
            kind,
            Mode::from_bits_truncate(meta.mode() & 0o7777),
            makedev(libc::major(rdev) as u64, libc::minor(rdev) as u64),
        )
        .map_err(io::Error::from)?;
    }
    lchown(dst, Some(shift(meta.uid())), Some(shift(meta.gid())))?;
    if !ft.is_symlink() {
        // chown clears setuid bits; put the mode back as it was.
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        copy_opaque_xattr(src, dst)?;
    }
    Ok(())
}

/// Keeps a directory opaque in the copy (the `user.` form is the one read in a user
/// namespace).
fn copy_opaque_xattr(src: &Path, dst: &Path) -> io::Result<()> {
    let s = std::ffi::CString::new(src.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let d = std::ffi::CString::new(dst.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mut buf = [0u8; 4];
    // SAFETY: valid C strings and a buffer of the length passed.
    let n = unsafe {
        libc::lgetxattr(s.as_ptr(), c"user.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    };
    if n == 1 && buf[0] == b'y' {
        // SAFETY: valid C strings; a one-byte value as passed.
        let r = unsafe {
            libc::lsetxattr(d.as_ptr(), c"user.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0)
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_shifted_and_modes_kept() {
        let dir = tempfile::tempdir().unwrap();
        let diff = dir.path().join("diff");
        fs::create_dir_all(diff.join("etc")).unwrap();
        fs::write(diff.join("etc/passwd"), "root").unwrap();
        lchown(diff.join("etc/passwd"), Some(1000), Some(50)).unwrap();
        // After chown, which clears the setuid bit.
        fs::set_permissions(diff.join("etc/passwd"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(diff.join("etc/passwd"), diff.join("etc/passwd2")).unwrap();
        std::os::unix::fs::symlink("passwd", diff.join("etc/link")).unwrap();
        mknod(&diff.join("gone"), SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).unwrap();
        let out = shifted_copy(&diff, 100_000, 65_536).unwrap();
        let m = fs::symlink_metadata(out.join("etc/passwd")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (101_000, 100_050, 0o4755));
        assert_eq!(fs::symlink_metadata(out.join("etc")).unwrap().uid(), 100_000);
        assert_eq!(
            m.ino(),
            fs::symlink_metadata(out.join("etc/passwd2")).unwrap().ino(),
            "hard links stay linked"
        );
        assert_eq!(fs::read_link(out.join("etc/link")).unwrap(), Path::new("passwd"));
        assert_eq!(fs::symlink_metadata(out.join("gone")).unwrap().rdev(), 0);
        assert_eq!(shifted_copy(&diff, 100_000, 65_536).unwrap(), out, "made once");
    }
}
