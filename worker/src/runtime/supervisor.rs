//! The per-container supervisor binary: `shoal-shim` from the `shoal-supervisor` crate,
//! compiled by this crate's build script and embedded here, and its installed copy under
//! `<data>/bin/<build id>/`, which every shim of the node executes once its container
//! runs (so all of them share its pages through the page cache).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use shoal_supervisor::PROGRAM;

/// The static supervisor binary.
pub const BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shoal-shim"));

/// A hash of [`BINARY`]: the directory its copy is installed in.
const BUILD_ID: &str = env!("SHOAL_SUPERVISOR_ID");

/// Installs the supervisor as `<data_dir>/bin/<build id>/shoal-shim`, unless it is
/// there already, and removes the copies of other builds (a supervisor still running
/// one keeps its file until it exits). Returns the path to execute.
pub fn install(data_dir: &Path) -> io::Result<PathBuf> {
    let bin = data_dir.join("bin");
    let dir = bin.join(BUILD_ID);
    let path = dir.join(PROGRAM);
    // Written under a temporary name and renamed, so a file by this name is complete.
    let installed =
        |m: fs::Metadata| m.len() == BINARY.len() as u64 && m.permissions().mode() & 0o777 == 0o555;
    if !fs::metadata(&path).is_ok_and(installed) {
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{PROGRAM}.{}", std::process::id()));
        let mut file =
            fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o755).open(&tmp)?;
        file.write_all(BINARY)?;
        file.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o555))?;
        fs::rename(&tmp, &path)?;
    }
    for old in fs::read_dir(&bin)?.flatten() {
        if old.file_name() != BUILD_ID {
            let _ = fs::remove_dir_all(old.path());
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_replaces_other_builds() {
        let data = tempfile::tempdir().unwrap();
        let stale = data.path().join("bin/0000000000000000");
        fs::create_dir_all(&stale).unwrap();
        let path = install(data.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), BINARY);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o555);
        assert!(!stale.exists());
        let before = fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(install(data.path()).unwrap(), path);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);
    }

    #[test]
    fn the_binary_is_static_and_runs() {
        assert_eq!(&BINARY[..4], b"\x7fELF");
        let data = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(install(data.path()).unwrap()).arg("--bogus").output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flag --bogus"), "{out:?}");
        // No PT_INTERP program header: nothing for the loader to do in every supervisor.
        let u16_at = |at: usize| u16::from_le_bytes([BINARY[at], BINARY[at + 1]]) as usize;
        let phoff = u64::from_le_bytes(BINARY[0x20..0x28].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
        let types: Vec<u32> = (0..phnum)
            .map(|i| u32::from_le_bytes(BINARY[phoff + i * phentsize..][..4].try_into().unwrap()))
            .collect();
        assert!(types.contains(&1), "no PT_LOAD in {types:?}: not an ELF program header table");
        assert!(!types.contains(&3), "the supervisor asks for a dynamic loader (PT_INTERP)");
    }
}
