//! Encryption at rest: a secret written through a real one-manager cluster, with a
//! snapshot taken, shows nowhere in the manager's data dir: not its bytes, not their
//! base64 (the form its JSON carries). A restart from the same dir reads it back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use openraft::async_runtime::WatchReceiver;
use shoal_manager::manager::ManagerConfig;
use shoal_manager::server;
use shoal_manager::store::{Change, Kind, Object, Transaction};

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The files under `dir` holding `secret` in any form its JSON or a log could.
fn holding(dir: &Path, secret: &[u8]) -> Vec<(PathBuf, &'static str)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let forms: Vec<(&'static str, Vec<u8>)> = vec![
        ("raw", secret.to_vec()),
        ("base64", STANDARD_NO_PAD.encode(secret).into_bytes()),
        ("base64 padded", STANDARD.encode(secret).into_bytes()),
        ("base64url", URL_SAFE_NO_PAD.encode(secret).into_bytes()),
        ("hex", secret.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()),
    ];
    let mut hits = Vec::new();
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap();
        for (name, form) in &forms {
            if bytes.windows(form.len()).any(|w| w == form.as_slice()) {
                hits.push((f.clone(), *name));
            }
        }
    }
    hits
}

fn secret_object(name: &str, data: &[u8]) -> Transaction {
    let secret = shoal_api::secret::Secret {
        id: shoal_api::object::new_id(),
        meta: shoal_api::Meta::new(chrono::Utc::now()),
        spec: shoal_api::secret::PayloadSpec {
            name: name.into(),
            labels: Default::default(),
            data: data.to_vec(),
        },
    };
    Transaction { changes: vec![Change::Create { object: Object::Secret(secret) }] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_shows_nowhere_in_the_data_dir_after_a_write_and_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("manager");
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let m = server::start(ManagerConfig::new(&data, addr)).await.unwrap().manager;
    m.init().await.unwrap();
    let secret: Vec<u8> = format!("at-rest-probe-{:032x}", rand::random::<u128>()).into_bytes();
    let index = m.propose(secret_object("db-password", &secret)).await.unwrap();

    // A snapshot covering it: the store goes to disk whole.
    m.raft().trigger().snapshot().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.raft().metrics().borrow_watched().snapshot.is_none_or(|l| l.index < index) {
        assert!(Instant::now() < deadline, "no snapshot covered index {index}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.shutdown().await;
    drop(m);
    assert!(data.join("state/snapshot.sealed").exists(), "a snapshot file was written");

    let hits = holding(&data, &secret);
    assert!(hits.is_empty(), "the secret shows in the data dir: {hits:?}");
    // The scan itself finds what is there.
    std::fs::write(data.join("probe"), STANDARD_B64.encode(&secret)).unwrap();
    let found = holding(&data, &secret);
    assert!(!found.is_empty() && found.iter().all(|(f, _)| f.ends_with("probe")), "{found:?}");
    std::fs::remove_file(data.join("probe")).unwrap();

    // Sealed, not lost: a restart reads it back.
    let m = server::start(ManagerConfig::new(&data, addr)).await.unwrap().manager;
    assert!(m.wait_recovered(Duration::from_secs(15)).await, "{:?}", m.status());
    let back = m.read(|s| {
        s.list(Kind::Secret).find_map(|o| match o {
            Object::Secret(s) => Some(s.spec.data.clone()),
            _ => None,
        })
    });
    assert_eq!(back.as_deref(), Some(secret.as_slice()));
    m.shutdown().await;
}

const STANDARD_B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
