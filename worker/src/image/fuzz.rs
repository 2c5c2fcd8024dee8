//! Hostile image archives, fuzzed (issue 17, item 7): tar streams built entry by entry
//! from raw headers (so nothing the tar crate's builder refuses is out of reach):
//! `..` and absolute paths, symlinks that point outside followed by files written
//! through them, hard links out or to nothing, whiteouts of `..`, device nodes,
//! duplicates, declared sizes that lie, truncation, gzip garbage. Each case unpacks
//! into `layer/` inside a fresh temporary root that also holds `outside/`; after it,
//! everything outside `layer/` must be exactly as before, and nothing may panic.
//!
//! CI runs a few cases per property (`PROPTEST_CASES` overrides, see `scripts/fuzz`);
//! failures are kept in `proptest-regressions/image/fuzz.txt` and replayed first.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::layer::{Compression, unpack};
use super::{ImageStore, sha256_digest};

/// Cases per property in CI, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> Config {
    let mut c = Config { source_file: Some(file!()), ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

/// Stands for the absolute path of the `outside/` folder of the case's root.
const OUT: &str = "@OUT";

/// One archive entry as a hostile author writes it.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: u8,
    link: String,
    /// The size the header declares (may differ from `data.len()`).
    size: u64,
    data: Vec<u8>,
    mode: u32,
    /// A PAX header before the entry that overrides its path or link.
    pax: Option<(String, String)>,
}

fn name() -> impl Strategy<Value = String> {
    let piece = proptest::sample::select(
        &[
            "s",
            "d",
            "f",
            "h",
            "secret",
            "outside",
            "..",
            ".",
            "",
            ".wh.s",
            ".wh.f",
            ".wh..",
            ".wh.",
            ".wh...",
            ".wh..wh..opq",
            ".wh..wh.plnk",
            "etc",
            "passwd",
            "a b",
            "\u{e9}",
            OUT,
        ][..],
    );
    (any::<bool>(), proptest::collection::vec(piece, 1..4)).prop_map(|(absolute, parts)| {
        let p = parts.join("/");
        if absolute { format!("/{p}") } else { p }
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    use tar::EntryType as T;
    let kind = prop_oneof![
        4 => Just(T::Regular.as_byte()),
        2 => Just(T::Directory.as_byte()),
        3 => Just(T::Symlink.as_byte()),
        3 => Just(T::Link.as_byte()),
        1 => Just(T::Char.as_byte()),
        1 => Just(T::Block.as_byte()),
        1 => Just(T::Fifo.as_byte()),
        1 => Just(T::GNULongName.as_byte()),
        1 => Just(T::GNUSparse.as_byte()),
        1 => any::<u8>(),
    ];
    let size = prop_oneof![
        4 => Just(None),
        1 => prop_oneof![Just(1u64 << 40), Just(0o77777777777), Just(513), Just(0), 0..2048u64].prop_map(Some),
    ];
    let data = proptest::collection::vec(any::<u8>(), 0..600);
    let mode = prop_oneof![Just(0o644u32), Just(0o755), Just(0o4755), Just(0), any::<u32>()];
    let pax = proptest::option::weighted(
        0.15,
        (proptest::sample::select(&["path", "linkpath", "size", "uid", "SCHILY.xattr.user.x"][..]), name())
            .prop_map(|(k, v)| (k.to_owned(), v)),
    );
    (name(), kind, name(), size, data, mode, pax).prop_map(|(path, kind, link, size, data, mode, pax)| {
        let size = size.unwrap_or(data.len() as u64);
        Entry { path, kind, link, size, data, mode, pax }
    })
}

/// How the tar is wrapped.
#[derive(Debug, Clone)]
enum Wrap {
    Plain,
    Gzip,
    /// The gzip magic, then anything.
    GzipGarbage(Vec<u8>),
}

/// Whole cases: the entries, where to cut the stream (a fraction of it), the wrapping.
fn archive() -> impl Strategy<Value = (Vec<Entry>, Option<f64>, Wrap)> {
    let wrap = prop_oneof![
        6 => Just(Wrap::Plain),
        2 => Just(Wrap::Gzip),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Wrap::GzipGarbage),
    ];
    (proptest::collection::vec(entry(), 1..8), proptest::option::weighted(0.2, 0.0..1.0f64), wrap)
}

/// Writes `text` into a fixed-size header field, cut to fit.
fn put(field: &mut [u8], text: &str) {
    let bytes = text.as_bytes();
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
}

fn header(kind: u8, path: &str, link: &str, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_device_major(1).ok();
    h.set_device_minor(3).ok();
    put(&mut h.as_old_mut().name, path);
    put(&mut h.as_old_mut().linkname, link);
    h.set_cksum();
    h
}

/// The tar bytes of `entries`, `@OUT` replaced by `out`.
fn tar_bytes(entries: &[Entry], out: &Path) -> Vec<u8> {
    let fill = |s: &str| s.replace(OUT, &out.to_string_lossy());
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if let Some((key, value)) = &e.pax {
            let record = pax_record(key, &fill(value));
            let h = header(b'x', "PaxHeaders/x", "", record.len() as u64, 0o644);
            b.append(&h, record.as_bytes()).unwrap();
        }
        let h = header(e.kind, &fill(&e.path), &fill(&e.link), e.size, e.mode);
        // The builder pads what it is given; a size that lies desynchronises the stream.
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

fn wrap(tar: Vec<u8>, cut: Option<f64>, how: &Wrap) -> (Vec<u8>, Compression) {
    let mut tar = tar;
    if let Some(f) = cut {
        tar.truncate((tar.len() as f64 * f) as usize);
    }
    match how {
        Wrap::Plain => (tar, Compression::None),
        Wrap::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            (gz.finish().unwrap(), Compression::Gzip)
        }
        Wrap::GzipGarbage(rest) => {
            let mut bytes = vec![0x1f, 0x8b];
            bytes.extend(rest);
            (bytes, Compression::Gzip)
        }
    }
}

/// Everything below `root` except `skip`: path → (type, size, mode, links, owner,
/// contents or link target).
fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p == skip {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                sha256_digest(&fs::read(&p).unwrap())
            } else {
                String::new()
            };
            let key = p.strip_prefix(root).unwrap().to_owned();
            out.insert(
                key,
                format!(
                    "{:?} {} {:o} {} {}:{} {what}",
                    m.file_type(),
                    m.len(),
                    m.mode(),
                    m.nlink(),
                    m.uid(),
                    m.gid()
                ),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// A root with `outside/secret`, `outside/d/diff/` (shaped like a stored layer) and
/// `layer/` (empty) in it.
fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("outside/d/diff")).unwrap();
    fs::write(root.path().join("outside/secret"), b"keep me").unwrap();
    fs::write(root.path().join("outside/d/f"), b"and me").unwrap();
    fs::create_dir(root.path().join("layer")).unwrap();
    root
}

/// Unpacks one archive; checks that nothing outside `layer/` changed.
fn check_unpack(entries: &[Entry], cut: Option<f64>, how: &Wrap) -> Result<(), TestCaseError> {
    let root = root();
    let layer = root.path().join("layer");
    let before = snapshot(root.path(), &layer);
    let (bytes, compression) = wrap(tar_bytes(entries, &root.path().join("outside")), cut, how);
    let result = unpack(&bytes[..], compression, &layer);
    let after = snapshot(root.path(), &layer);
    prop_assert_eq!(&before, &after, "the unpack changed something outside the layer: {:?}", result);
    prop_assert!(fs::symlink_metadata(&layer).unwrap().is_dir(), "the layer folder was replaced");
    Ok(())
}

#[test]
fn layers_never_escape() {
    let mut runner = TestRunner::new(config(256));
    runner.run(&archive(), |(entries, cut, how)| check_unpack(&entries, cut, &how)).unwrap();
}

/// Pairs that attack through what an earlier entry made: a symlink or hard link out,
/// then an entry written, linked or whited out through it.
#[test]
fn links_then_writes_through_them_never_escape() {
    use tar::EntryType as T;
    let first = (
        proptest::sample::select(&["s", "d/s", "h"][..]),
        prop_oneof![Just(T::Symlink.as_byte()), Just(T::Link.as_byte())],
    );
    let target = proptest::sample::select(
        &[
            OUT,
            "@OUT/secret",
            "@OUT/d",
            "../outside",
            "../outside/secret",
            "..",
            "/",
            ".",
            "",
            "s",
            "missing",
        ][..],
    );
    let then = proptest::sample::select(
        &[
            "s/secret",
            "s/new",
            "s/d/f",
            "s/.wh.secret",
            "s/.wh..wh..opq",
            "s/.wh.d",
            ".wh.s",
            "s",
            "d/s/f",
            "h",
        ][..],
    );
    let then_kind = proptest::sample::select(vec![
        T::Regular.as_byte(),
        T::Directory.as_byte(),
        T::Link.as_byte(),
        T::Symlink.as_byte(),
    ]);
    let strategy = (first, target, then, then_kind, name());
    let mut runner = TestRunner::new(config(256));
    runner
        .run(&strategy, |((path, kind), link, then, then_kind, then_link)| {
            let e = |path: &str, kind: u8, link: &str| Entry {
                path: path.to_owned(),
                kind,
                link: link.to_owned(),
                size: 1,
                data: b"x".to_vec(),
                mode: 0o644,
                pax: None,
            };
            let entries = [e(path, kind, link), e(then, then_kind, &then_link)];
            check_unpack(&entries, None, &Wrap::Plain)
        })
        .unwrap();
}

/// `docker save` archives whose manifest names hostile paths, links and diff ids.
#[test]
fn imports_never_escape() {
    let path = || {
        prop_oneof![
            3 => Just("layer.tar"),
            1 => proptest::sample::select(
                &["config.json", "../outside/secret", "/etc/passwd", "cfg", "lnk", "lnk/x", "dir", "", "."][..]
            ),
        ]
    };
    let config_path = prop_oneof![3 => Just("config.json"), 1 => path()];
    let diff_id = prop_oneof![
        1 => Just("good"),
        2 => proptest::sample::select(
            &["sha256:../../../outside/d", "sha256:../../../outside", "../x", "sha256:", "sha256:zz", "@OUT/d"][..]
        ),
    ];
    // Mostly as many diff ids as layers, so that the import goes as far as it can.
    let layers = proptest::collection::vec((path(), diff_id), 0..3)
        .prop_map(|pairs| pairs.into_iter().unzip::<_, _, Vec<_>, Vec<_>>());
    let strategy = (
        config_path,
        layers,
        proptest::sample::select(&[OUT, "@OUT/secret", "../outside", "/etc/passwd", "config.json"][..]),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(config(64));
    runner
        .run(&strategy, |(config_path, (layers, diff_ids), link, wrap_gzip)| {
            let root = root();
            let data = root.path().join("layer");
            let out = root.path().join("outside");
            let fill = |s: &str| s.replace(OUT, &out.to_string_lossy());
            let before = snapshot(root.path(), &data);
            // One real layer whose DiffID "good" stands for.
            let layer_tar = tar_bytes(
                &[Entry {
                    path: "f".into(),
                    kind: b'0',
                    link: String::new(),
                    size: 2,
                    data: b"hi".to_vec(),
                    mode: 0o644,
                    pax: None,
                }],
                &out,
            );
            let good = sha256_digest(&layer_tar);
            let diff_ids: Vec<String> =
                diff_ids.iter().map(|d| if *d == "good" { good.clone() } else { fill(d) }).collect();
            let config = serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": { "type": "layers", "diff_ids": diff_ids },
            });
            let manifest = serde_json::json!([{
                "Config": config_path, "RepoTags": ["fz:1"], "Layers": layers,
            }]);
            let mut b = tar::Builder::new(Vec::new());
            let mut add = |path: &str, kind: u8, link: &str, data: &[u8]| {
                let h = header(kind, &fill(path), &fill(link), data.len() as u64, 0o644);
                b.append(&h, data).unwrap();
            };
            add("manifest.json", b'0', "", manifest.to_string().as_bytes());
            add("config.json", b'0', "", config.to_string().as_bytes());
            add("layer.tar", b'0', "", &layer_tar);
            add("lnk", b'2', link, b"");
            add("cfg", b'2', link, b"");
            add("dir", b'5', "", b"");
            let bytes = b.into_inner().unwrap();
            let file = root.path().join("layer/archive.tar");
            let (bytes, _) = wrap(bytes, None, if wrap_gzip { &Wrap::Gzip } else { &Wrap::Plain });
            fs::write(&file, bytes).unwrap();
            let store = ImageStore::open(&data).unwrap();
            let result = store.import(&file, None);
            let after = snapshot(root.path(), &data);
            prop_assert_eq!(&before, &after, "the import changed something outside its store: {:?}", result);
            // Nothing read from outside lands in the store either.
            let secret = sha256_digest(b"keep me");
            prop_assert!(!store.blob_path(&secret).exists(), "a file from outside was copied into the store");
            for record in result.iter().flatten() {
                for layer in &record.layers {
                    let dir = store.layer_dir(layer);
                    prop_assert!(
                        dir.starts_with(data.join("images/layers")) && !layer.contains('/'),
                        "layer {layer} lies outside the store"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

/// A `docker save` archive in `root/layer/archive.tar` with `manifest.json` naming
/// `config` and `layers`, a config listing `diff_ids`, and the extra `entries`.
fn save_archive(root: &Path, config: &str, layers: &[&str], diff_ids: &[&str], entries: &[Entry]) -> PathBuf {
    let out = root.join("outside");
    let manifest = serde_json::json!([{ "Config": config, "RepoTags": ["fz:1"], "Layers": layers }]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let file = |path: &str, data: &[u8]| Entry {
        path: path.into(),
        kind: b'0',
        link: String::new(),
        size: data.len() as u64,
        data: data.to_vec(),
        mode: 0o644,
        pax: None,
    };
    let mut all = vec![
        file("manifest.json", manifest.to_string().as_bytes()),
        file("config.json", config.to_string().as_bytes()),
    ];
    all.extend_from_slice(entries);
    let path = root.join("layer/archive.tar");
    fs::write(&path, tar_bytes(&all, &out)).unwrap();
    path
}

/// Found by `imports_never_escape`: a `docker save` manifest naming a file of the
/// archive that is a symlink to a host file copied the host file into the store.
#[test]
fn import_refuses_files_reached_through_a_symlink() {
    let root = root();
    let link = Entry {
        path: "cfg".into(),
        kind: b'2',
        link: "@OUT/secret".into(),
        size: 0,
        data: Vec::new(),
        mode: 0o777,
        pax: None,
    };
    let archive = save_archive(root.path(), "cfg", &[], &[], &[link]);
    let store = ImageStore::open(&root.path().join("layer")).unwrap();
    let e = store.import(&archive, None).unwrap_err();
    assert!(e.to_string().contains("manifest.json"), "{e}");
    assert!(shoal_api::report::chain(&e).contains("\"cfg\" goes through a symbolic link"), "{e:?}");
    assert!(!store.blob_path(&sha256_digest(b"keep me")).exists(), "the host file was copied in");
}

/// Found by `imports_never_escape`: a DiffID of `sha256:../../../outside/d` named a
/// folder outside the store, which became the image's layer once a `diff` folder
/// existed there.
#[test]
fn import_refuses_a_diff_id_that_is_a_path() {
    let root = root();
    let layer = Entry {
        path: "layer.tar".into(),
        kind: b'0',
        link: String::new(),
        size: 1024,
        data: vec![0; 1024],
        mode: 0o644,
        pax: None,
    };
    let archive =
        save_archive(root.path(), "config.json", &["layer.tar"], &["sha256:../../../outside/d"], &[layer]);
    let store = ImageStore::open(&root.path().join("layer")).unwrap();
    let e = store.import(&archive, None).unwrap_err();
    assert!(e.to_string().contains("\"sha256:../../../outside/d\" is not a sha256 digest"), "{e}");
    assert!(store.find("fz:1").is_err());
}
