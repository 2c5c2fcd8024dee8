//! Compiles the per-container supervisor (`../supervisor`, standard library only) with
//! rustc alone into a small static binary, which `runtime::supervisor` embeds. A second
//! cargo build of it from here would contend for cargo's locks; rustc needs none.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let src = manifest.join("../supervisor/src");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rerun-if-changed={}", src.display());

    // Small and static: no loader, no shared libraries to relocate in every process.
    let common = |cmd: &mut Command| {
        cmd.args(["--edition", "2024", "--target", &target])
            .args(["-C", "opt-level=s", "-C", "panic=abort", "-C", "codegen-units=1"])
            .args(["-C", "target-feature=+crt-static", "-C", "debuginfo=0"])
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
    };
    let mut lib = Command::new(&rustc);
    common(&mut lib);
    lib.args(["--crate-type", "rlib", "--crate-name", "shoal_supervisor", "--out-dir"])
        .arg(&out)
        .arg(src.join("lib.rs"));
    run(lib);
    let binary = out.join("shoal-shim");
    let mut bin = Command::new(&rustc);
    common(&mut bin);
    bin.args(["--crate-type", "bin", "--crate-name", "shoal_shim", "-C", "strip=symbols", "--extern"])
        .arg(format!("shoal_supervisor={}", out.join("libshoal_supervisor.rlib").display()))
        .arg("-o")
        .arg(&binary)
        .arg(src.join("main.rs"));
    run(bin);
    println!("cargo:rustc-env=SHOAL_SUPERVISOR_ID={:016x}", fnv1a(&binary));
}

fn run(mut cmd: Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// FNV-1a of the file: names the installed copy, so binaries of different builds never
/// overwrite one another while supervisors still run them.
fn fnv1a(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
