//! The image store through `shoal image …` and real containers: OCI layouts (directory
//! and tar), `docker save` archives, whiteouts across layers, hostile layers, garbage
//! collection, and push/pull against Debian's docker-registry on loopback.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::{Node, busybox_layout, wait_for};

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A layer tar from (path, contents) pairs; a `None` content makes a directory.
fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                h.set_mode(0o644);
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
            }
        }
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, data.unwrap_or(b"")).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Writes an OCI layout whose image is the busybox image's layers plus `extra` layers
/// (uncompressed tars, gzipped here), named `name`.
fn layout_on_busybox(dir: &Path, extra: &[Vec<u8>], name: &str) {
    let base = busybox_layout();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base.join("index.json")).unwrap()).unwrap();
    let blob =
        |d: &str| std::fs::read(base.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(dir.join("blobs/sha256").join(d.trim_start_matches("sha256:")), bytes).unwrap();
        d
    };
    put(&blob(manifest["layers"][0]["digest"].as_str().unwrap()));
    for l in extra {
        let gz = gzip(l);
        let d = put(&gz);
        manifest["layers"].as_array_mut().unwrap().push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": gz.len()
        }));
        config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(sha(l).into());
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put(&config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let md = put(&manifest_bytes);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": name}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn whiteouts_hide_lower_files_in_a_running_container() {
    let node = Node::with_busybox();
    let tmp = tempfile::tempdir().unwrap();
    let add = layer(&[
        ("etc/", None),
        ("etc/motd", Some(b"hello")),
        ("etc/doomed", Some(b"x")),
        ("opt/", None),
        ("opt/old/", None),
        ("opt/old/a", Some(b"a")),
        ("opt/old/b", Some(b"b")),
    ]);
    let remove = layer(&[
        ("etc/", None),
        ("etc/.wh.doomed", Some(b"")),
        ("opt/old/", None),
        ("opt/old/.wh..wh..opq", Some(b"")),
        ("opt/old/c", Some(b"c")),
    ]);
    layout_on_busybox(tmp.path(), &[add, remove], "test/whiteout:1");
    node.ok(&["image", "import", tmp.path().to_str().unwrap()]);
    let out = node.ok(&[
        "container",
        "run",
        "--rm",
        "test/whiteout:1",
        "sh",
        "-c",
        "cat /etc/motd; echo; ls /etc/doomed 2>&1; ls /opt/old | tr '\\n' ' '",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "hello");
    assert!(lines[1].contains("No such file"), "a whiteout hides the lower file: {out}");
    assert_eq!(lines[2].trim(), "c", "an opaque directory hides all lower entries: {out}");
    node.assert_clean();
}

#[test]
fn hostile_layers_are_refused_and_nothing_escapes() {
    let node = Node::with_busybox();
    let victim = tempfile::tempdir().unwrap();
    let target = victim.path().join("pwned");
    let escape = format!("../../../../../../../..{}", target.display());
    for (what, hostile) in [
        ("dotdot", layer(&[(escape.as_str(), Some(b"x"))])),
        ("absolute", layer(&[(target.to_str().unwrap(), Some(b"x"))])),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        layout_on_busybox(tmp.path(), &[hostile], "test/hostile:1");
        let out = node.shoal(&["image", "import", tmp.path().to_str().unwrap()]);
        assert!(!out.status.success(), "{what}: imported");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("points outside the layer"), "{what}: {err}");
        assert!(!target.exists(), "{what}: wrote {}", target.display());
    }
    assert!(!node.ok(&["image", "ls"]).contains("hostile"));
}

#[test]
fn corrupt_blobs_are_refused() {
    let node = Node::empty();
    let tmp = tempfile::tempdir().unwrap();
    layout_on_busybox(tmp.path(), &[layer(&[("f", Some(b"1"))])], "test/corrupt:1");
    // Flip the content of the extra layer without renaming it.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("blobs/sha256").join(&md)).unwrap()).unwrap();
    let ld = manifest["layers"][1]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    std::fs::write(tmp.path().join("blobs/sha256").join(&ld), gzip(&layer(&[("f", Some(b"2"))]))).unwrap();
    let out = node.shoal(&["image", "import", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the image is corrupt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docker_save_archives_and_layout_tars() {
    let node = Node::empty();
    let tmp = tempfile::tempdir().unwrap();
    // A docker save archive: manifest.json naming an uncompressed layer and a config.
    let save = tmp.path().join("save");
    std::fs::create_dir_all(save.join("abc")).unwrap();
    let l = layer(&[("bin/", None), ("hello.txt", Some(b"from docker save"))]);
    std::fs::write(save.join("abc/layer.tar"), &l).unwrap();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["cat", "/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(&l)]}});
    std::fs::write(save.join("cfg.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    std::fs::write(
        save.join("manifest.json"),
        r#"[{"Config":"cfg.json","RepoTags":["saved/app:2"],"Layers":["abc/layer.tar"]}]"#,
    )
    .unwrap();
    let archive = tmp.path().join("save.tar");
    let st = Command::new("tar").arg("-C").arg(&save).arg("-cf").arg(&archive).arg(".").status().unwrap();
    assert!(st.success());
    node.ok(&["image", "import", archive.to_str().unwrap()]);
    // An OCI layout packed as a tar.
    let layout_tar = tmp.path().join("busybox.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(busybox_layout())
        .arg("-cf")
        .arg(&layout_tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    node.ok(&["image", "import", layout_tar.to_str().unwrap(), "local/bb:3"]);
    let ls = node.ok(&["image", "ls"]);
    assert!(ls.contains("docker.io/saved/app:2") && ls.contains("docker.io/local/bb:3"), "{ls}");
    let out = node.shoal(&["container", "run", "--rm", "saved/app:2"]);
    // The saved image has no shell or /bin/cat: running its CMD fails cleanly.
    assert_eq!(out.status.code(), Some(127), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(node.ok(&["container", "run", "--rm", "local/bb:3", "echo", "ok"]), "ok\n");
    node.assert_clean();
}

#[test]
fn removing_images_frees_layers_but_not_in_use_ones() {
    let node = Node::with_busybox();
    node.ok(&["container", "run", "-d", "--name", "user", "shoal/busybox", "sleep", "60"]);
    let out = node.shoal(&["image", "rm", "shoal/busybox"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is used by a container"));
    node.ok(&["container", "rm", "-f", "user"]);
    node.ok(&["image", "rm", "shoal/busybox"]);
    assert_eq!(node.ok(&["image", "ls", "-q"]), "");
    let layers = std::fs::read_dir(node.data_dir().join("images/layers")).unwrap().count();
    let blobs = std::fs::read_dir(node.data_dir().join("images/blobs/sha256")).unwrap().count();
    assert_eq!((layers, blobs), (0, 0), "garbage collection leaves nothing");
}

/// Debian's docker-registry on a free loopback port, with its storage in a temp dir.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let reg = Registry { child, addr, _dir: dir };
        wait_for("the registry to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&reg.addr).is_ok()
        });
        reg
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn push_and_pull_through_a_registry_on_loopback() {
    let registry = Registry::start();
    let from = Node::with_busybox();
    let remote = format!("{}/shoal/busybox:test", registry.addr);
    let url = from.ok(&["image", "push", "shoal/busybox", "--to", &remote]);
    assert!(url.contains(&registry.addr), "{url}");
    let to = Node::empty();
    let id = to.ok(&["image", "pull", &remote]);
    assert_eq!(id.trim(), from.ok(&["image", "ls", "-q"]).trim(), "the same image id on both nodes");
    assert_eq!(to.ok(&["container", "run", "--rm", &remote, "echo", "pulled"]), "pulled\n");
    let out = to.shoal(&["image", "pull", &format!("{}/shoal/missing:1", registry.addr)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("manifest unknown"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    to.assert_clean();
}
