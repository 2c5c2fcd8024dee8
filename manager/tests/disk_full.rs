//! A full disk: writes fail with an error, reads keep working, and after space is freed
//! a restarted manager has every acknowledged write and nothing else. Runs as root (it
//! mounts a small tmpfs).

use std::collections::BTreeSet;
use std::time::Duration;

use shoal_api::service::{Service, ServiceSpec};
use shoal_manager::manager::ManagerConfig;
use shoal_manager::server;
use shoal_manager::store::{Change, Kind, Object, Transaction};

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let data = format!("size={size}");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .expect("mount a tmpfs (the test runs as root)");
        SmallDisk { dir }
    }

    fn grow(&self, size: &str) {
        let data = format!("size={size}");
        nix::mount::mount(
            None::<&str>,
            self.dir.path(),
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT,
            Some(data.as_str()),
        )
        .unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn big_service(name: &str) -> Transaction {
    let mut spec = ServiceSpec::new(name, "busybox");
    spec.labels.insert("payload".into(), "x".repeat(100 * 1024));
    let svc = Service {
        id: shoal_api::object::new_id(),
        meta: shoal_api::Meta::new(chrono::Utc::now()),
        spec,
        previous_spec: None,
        update_status: None,
        endpoint: Default::default(),
    };
    Transaction { changes: vec![Change::Create { object: Object::Service(svc) }] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_and_loses_nothing() {
    let disk = SmallDisk::mount("4m");
    let data = disk.dir.path().join("manager");
    // A manager keeps its address across restarts (the others know it by it).
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let m = server::start(ManagerConfig::new(&data, addr)).await.unwrap().manager;
    m.init().await.unwrap();
    let mut acked = BTreeSet::new();
    let mut failed = None;
    for i in 0..200 {
        let name = format!("big-{i}");
        match tokio::time::timeout(Duration::from_secs(10), m.propose(big_service(&name))).await {
            Ok(Ok(_)) => {
                acked.insert(name);
            }
            other => {
                failed = Some((name, format!("{other:?}")));
                break;
            }
        }
    }
    let (failed_name, why) = failed.expect("a 4 MiB disk fills up");
    assert!(!acked.is_empty());
    // Reads still answer, with everything acknowledged.
    let have: BTreeSet<String> =
        m.read(|s| s.list(Kind::Service).filter_map(|o| o.name().map(str::to_owned)).collect());
    assert!(have.is_superset(&acked), "{why}");
    m.shutdown().await;
    drop(m);
    // Space comes back; a restarted manager has every acknowledged write.
    disk.grow("64m");
    let m = server::start(ManagerConfig::new(&data, addr)).await.unwrap().manager;
    // Local reads after a restart wait for the state to catch up, as the API's do.
    assert!(m.wait_recovered(Duration::from_secs(15)).await, "{:?}", m.status());
    let have: BTreeSet<String> =
        m.read(|s| s.list(Kind::Service).filter_map(|o| o.name().map(str::to_owned)).collect());
    assert!(have.is_superset(&acked), "acknowledged writes survive a full disk");
    for name in &have {
        assert!(acked.contains(name) || *name == failed_name, "{name} appeared without being acknowledged");
    }
    m.propose(big_service("after-space")).await.unwrap();
    m.shutdown().await;
}
