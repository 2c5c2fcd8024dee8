//! Autolock with the real daemon: a restarted manager of a locked cluster serves only
//! `shoal cluster unlock` until it is given the key; a wrong key is refused; a
//! rotated key replaces the old one; turning autolock off lets it start alone. The
//! key shows in no log and not in `cluster info`.

mod support;

use std::time::Duration;

use shoal_manager::manager::lock::{self, UnlockKey};
use support::daemons::Daemon;
use support::wait_for;

/// Waits until the manager's data key is sealed by `key` (or plain, for `None`).
fn wait_wrapped(d: &Daemon, key: Option<&str>) {
    let path = d.dir.join("manager").join(lock::DEK_FILE);
    let kek = key.map(|k| UnlockKey::parse(k).unwrap());
    wait_for(
        &format!("the data key wrapped as the cluster says ({})", d.log()),
        Duration::from_secs(30),
        || {
            lock::is_sealed(&path).is_ok_and(|s| s == kek.is_some())
                && lock::read_secret(&path, kek.as_ref()).is_ok()
        },
    );
}

/// Waits until the restarted daemon answers, locked.
fn wait_locked(d: &Daemon) {
    wait_for(&format!("the locked API ({})", d.log()), Duration::from_secs(30), || {
        let out = d.cli(&["cluster", "info"]);
        String::from_utf8_lossy(&out.stderr).contains("this manager is locked: run `shoal cluster unlock`")
    });
}

/// `shoal cluster unlock` with `key` on stdin, retried while wrong keys before it
/// make it wait; returns its standard error.
fn unlock(d: &Daemon, key: &str) -> (bool, String) {
    let mut last = (false, String::new());
    wait_for("an unlock try past the rate limit", Duration::from_secs(30), || {
        let out = d.cli_input(&["cluster", "unlock"], &format!("{key}\n"));
        last = (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned());
        !last.1.contains("too many wrong unlock keys")
    });
    last
}

#[test]
fn a_locked_manager_starts_only_with_the_current_unlock_key() {
    let mut d = Daemon::init_with("locked", &["--autolock"]);
    let key = d.ok(&["cluster", "unlock-key", "-q"]).trim().to_owned();
    assert!(key.starts_with("SHKEY-1-"), "{key}");
    let info = d.ok(&["cluster", "info", "--format", "json"]);
    assert!(info.contains("\"autolock\": true") && !info.contains(&key), "{info}");
    wait_wrapped(&d, Some(&key));

    // Restarted: locked until unlocked.
    d.stop();
    d.start(&[]);
    wait_locked(&d);
    let (ok, err) = unlock(&d, &UnlockKey::random().reveal());
    assert!(!ok && err.contains("does not open this manager's data key"), "{err}");
    let (ok, err) = unlock(&d, "not a key");
    assert!(!ok && err.contains("not an unlock key"), "{err}");
    wait_locked(&d);
    let (ok, err) = unlock(&d, &key);
    assert!(ok, "{err}");
    d.wait_registered(1);

    // Rotation: every manager re-wraps; the old key no longer unlocks.
    let new = d.ok(&["cluster", "unlock-key", "--rotate", "-q"]).trim().to_owned();
    assert_ne!(new, key);
    wait_wrapped(&d, Some(&new));
    d.stop();
    d.start(&[]);
    wait_locked(&d);
    let (ok, err) = unlock(&d, &key);
    assert!(!ok && err.contains("does not open"), "the old key still works: {err}");
    let (ok, err) = unlock(&d, &new);
    assert!(ok, "{err}");
    d.wait_registered(1);

    // Autolock off: the data key is plain again and a restart needs nothing.
    d.ok(&["cluster", "update", "--autolock", "false"]);
    let err = String::from_utf8_lossy(&d.cli(&["cluster", "unlock-key"]).stderr).into_owned();
    assert!(err.contains("autolock is off"), "{err}");
    wait_wrapped(&d, None);
    d.stop();
    d.start(&[]);
    d.wait_registered(1);

    let out = std::fs::read_to_string(d.dir.join("out")).unwrap_or_default();
    for k in [&key, &new] {
        assert!(!d.log().contains(k.as_str()) && !out.contains(k.as_str()), "an unlock key was logged");
    }
}
