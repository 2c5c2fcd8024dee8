//! The log's crash and damage behaviour, through its files: torn final records, a
//! damaged record mid-segment, segment rollover and purge under concurrent writes,
//! reopening after each kind of write, and a full disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use shoal_wal::{Op, Options, Wal, WalError};

fn options(segment_bytes: u64) -> Options {
    Options { segment_bytes, ..Options::default() }
}

fn data(index: u64) -> Vec<u8> {
    format!("entry {index} payload").into_bytes()
}

fn append(wal: &Wal, from: u64, to: u64) {
    let ops = (from..=to).map(|index| Op::Append { index, data: data(index) }).collect();
    wal.write_blocking(ops, true).unwrap();
}

fn all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.read_range(0..u64::MAX).unwrap()
}

fn indexes(wal: &Wal) -> Vec<u64> {
    all(wal).into_iter().map(|(i, _)| i).collect()
}

/// Opens the log, waiting for a writer of the same dir still closing (dropping a
/// `Wal` ends its thread a moment later).
fn open(dir: &Path, segment_bytes: u64) -> Result<Wal, WalError> {
    Wal::open(dir, options(segment_bytes))
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (path, span) = {
        let wal = open(dir.path(), 1 << 16).unwrap();
        append(&wal, 1, 5);
        wal.frame_span(5).unwrap()
    };
    let original = std::fs::read(&path).unwrap();
    // The bytes the record's checksum covers; past them only padding is left to tear.
    let covered = 12 + 8 + data(5).len() as u64;
    for k in 0..span.end - span.start {
        // The last write reached the disk only up to `start + k`.
        let mut torn = original.clone();
        torn[(span.start + k) as usize..span.end as usize].fill(0);
        std::fs::write(&path, &torn).unwrap();
        let wal = open(dir.path(), 1 << 16).unwrap_or_else(|e| panic!("tear at +{k}: {e}"));
        let kept: Vec<u64> = if k < covered { (1..=4).collect() } else { (1..=5).collect() };
        assert_eq!(indexes(&wal), kept, "tear at +{k}");
        assert_eq!(wal.read(4).unwrap(), Some(data(4)));
        // The log goes on after the cut, and what it appends survives a reopen.
        let next = *kept.last().unwrap() + 1;
        append(&wal, next, next);
        drop(wal);
        let wal = open(dir.path(), 1 << 16).unwrap();
        assert_eq!(indexes(&wal), (1..=next).collect::<Vec<_>>(), "tear at +{k}, reopened");
    }
}

#[test]
fn a_damaged_record_mid_segment_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: 1..=40 spread over several, so the damage is tried in an older
    // segment and in the last one (with valid records after it).
    let spans = {
        let wal = open(dir.path(), 512).unwrap();
        append(&wal, 1, 40);
        assert!(wal.segments().len() > 2, "{:?}", wal.segments());
        [wal.frame_span(3).unwrap(), wal.frame_span(38).unwrap()]
    };
    for (path, span) in spans {
        let original = std::fs::read(&path).unwrap();
        // One flipped bit in the entry's data (past its header and index).
        let mut bad = original.clone();
        bad[span.start as usize + 22] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        let err = open(dir.path(), 512).unwrap_err();
        match &err {
            WalError::Corrupt { path: p, offset, .. } => {
                assert_eq!((p, *offset), (&path, span.start));
            }
            other => panic!("{other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains(&format!("byte {}", span.start)),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bad, "nothing was cut");
        std::fs::write(&path, &original).unwrap();
        assert_eq!(indexes(&open(dir.path(), 512).unwrap()), (1..=40).collect::<Vec<_>>());
    }
}

#[test]
fn segments_roll_over_and_purged_ones_are_deleted_under_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 4096).unwrap();
    // Appenders take the next index in turn and wait for their sync outside the lock,
    // so batches form; a purger follows them.
    let next = Arc::new(Mutex::new(1u64));
    let acked = Arc::new(Mutex::new(0u64));
    let total = 1500u64;
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (wal, next, acked) = (wal.clone(), next.clone(), acked.clone());
            std::thread::spawn(move || {
                loop {
                    let (tx, rx) = std::sync::mpsc::channel();
                    let index = {
                        let mut n = next.lock().unwrap();
                        if *n > total {
                            return;
                        }
                        let index = *n;
                        *n += 1;
                        let done = Box::new(move |r| tx.send(r).unwrap());
                        wal.submit(vec![Op::Append { index, data: data(index) }], true, Some(done)).unwrap();
                        index
                    };
                    rx.recv().unwrap().unwrap();
                    let mut a = acked.lock().unwrap();
                    *a = (*a).max(index);
                }
            })
        })
        .collect();
    let purger = {
        let (wal, acked) = (wal.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut purged = 0;
            let mut most_segments = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                assert!(std::time::Instant::now() < deadline, "the writes never finished");
                let a = *acked.lock().unwrap();
                if a >= total {
                    break;
                }
                if a > purged + 200 {
                    purged = a - 100;
                    wal.write_blocking(vec![Op::PurgeThrough(purged)], false).unwrap();
                }
                most_segments = most_segments.max(wal.segments().len());
                std::thread::yield_now();
            }
            most_segments
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    let most_segments = purger.join().unwrap();
    let purged = wal.purged().unwrap();
    // One last synced purge deletes what the lazy ones emptied.
    wal.write_blocking(vec![Op::PurgeThrough(purged)], true).unwrap();
    let (first_path, _) = wal.frame_span(purged + 1).unwrap();
    let kept = wal.segments();
    assert_eq!(kept[0], first_path, "the oldest segment kept holds the first live entry");
    let made = wal.frame_span(total).unwrap().0;
    let seq = |p: &Path| u64::from_str_radix(&p.file_name().unwrap().to_string_lossy()[..16], 16).unwrap();
    assert!(seq(&made) > 10 && most_segments > 1, "{made:?}, at most {most_segments} at once");
    assert!(kept.len() < 5, "purged segments were deleted: {kept:?}");
    drop(wal);
    let wal = open(dir.path(), 4096).unwrap();
    assert_eq!(wal.purged(), Some(purged));
    let got = all(&wal);
    assert_eq!(got.len() as u64, total - purged);
    for (i, d) in got {
        assert_eq!(d, data(i));
    }
    let on_disk = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"));
    assert_eq!(on_disk.count(), wal.segments().len());
}

#[test]
fn every_kind_of_write_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // The expected log: entries, purge point, slots.
    let mut entries: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut slots: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let mut purged = None;
    let steps: Vec<(Vec<Op>, bool)> = vec![
        ((0..=30).map(|index| Op::Append { index, data: data(index) }).collect(), true),
        (vec![Op::SetState { slot: 1, value: b"vote 3".to_vec() }], true),
        // Not synced: written, and synced by the writer on its way out.
        (vec![Op::SetState { slot: 2, value: b"committed 20".to_vec() }], false),
        (vec![Op::TruncateFrom(25)], true),
        (vec![Op::PurgeThrough(10)], false),
        (
            (22..=27).map(|index| Op::Append { index, data: format!("new {index}").into_bytes() }).collect(),
            true,
        ),
        (vec![Op::SetState { slot: 1, value: b"vote 4".to_vec() }, Op::TruncateFrom(27)], true),
        (vec![Op::PurgeThrough(26)], true),
        (vec![Op::Append { index: 27, data: b"after purge".to_vec() }], true),
    ];
    for (n, (ops, sync)) in steps.into_iter().enumerate() {
        for op in &ops {
            match op {
                Op::Append { index, data } => {
                    entries.split_off(index);
                    entries.insert(*index, data.clone());
                }
                Op::SetState { slot, value } => {
                    slots.insert(*slot, value.clone());
                }
                Op::TruncateFrom(i) => {
                    entries.split_off(i);
                }
                Op::PurgeThrough(i) => {
                    entries = entries.split_off(&(i + 1));
                    purged = Some(*i);
                }
            }
        }
        open(dir.path(), 1024).unwrap().write_blocking(ops, sync).unwrap();
        let wal = open(dir.path(), 1024).unwrap();
        let got: BTreeMap<u64, Vec<u8>> = all(&wal).into_iter().collect();
        assert_eq!(got, entries, "step {n}");
        assert_eq!(wal.purged(), purged, "step {n}");
        for (slot, value) in &slots {
            assert_eq!(wal.state(*slot).as_ref(), Some(value), "step {n}");
        }
    }
}

#[test]
fn a_full_disk_stops_writes_at_a_segment_cut_and_keeps_what_was_acknowledged() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    nix::mount::mount(Some("tmpfs"), &mnt, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=256k"))
        .unwrap();
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            // Detached: the log's writer thread may still hold its segment open for a
            // moment after the last handle is dropped, and a plain unmount would then
            // fail with EBUSY and leave the tmpfs mounted.
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(&mnt);
    let wal = open(&mnt, 64 << 10).unwrap();
    let mut acked = 0;
    let err = loop {
        match wal.write_blocking(vec![Op::Append { index: acked + 1, data: vec![7; 1000] }], true) {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, WalError::DiskFull { .. }), "{err}");
    assert!(acked > 100, "{acked}");
    let later = wal.write_blocking(vec![Op::SetState { slot: 1, value: vec![1] }], true).unwrap_err();
    assert!(matches!(later, WalError::Poisoned(_)), "{later}");
    // A refused job's callback hears of it too.
    let (told, heard) = std::sync::mpsc::channel();
    let returned = wal
        .submit(
            vec![Op::SetState { slot: 1, value: vec![2] }],
            false,
            Some(Box::new(move |r| drop(told.send(r)))),
        )
        .unwrap_err();
    assert!(matches!(returned, WalError::Poisoned(_)), "{returned}");
    assert!(matches!(heard.try_recv(), Ok(Err(WalError::Poisoned(_)))));
    drop(wal);
    let wal = open(&mnt, 64 << 10).unwrap();
    assert_eq!(indexes(&wal), (1..=acked).collect::<Vec<_>>());
}
