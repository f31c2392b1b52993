use super::test_support::*;
use super::*;
use crate::model::ChildEntry;
use sha2::{Digest, Sha256};

fn leaked_release(byte: u8, len: usize, version: &str) -> Release {
    let bytes: &'static [u8] = Box::leak(vec![byte; len].into_boxed_slice());
    Release {
        hash: Sha256::digest(bytes).into(),
        size: len as u64,
        version: version.into(),
        bytes,
    }
}

fn idle_on(hash: &[u8; 32]) -> ChildEntry {
    ChildEntry::new(Some(hash.to_vec()), Phase::Idle, 0)
}

#[test]
fn the_embedded_release_is_stored_once_in_chunks_and_read_back_whole() {
    let mut s = fresh_state();
    let hash = s.release.hash;
    assert!(s.record_release(5), "new to this parent");
    assert_eq!(s.modules.len(), 3, "2.5 MiB in 1 MiB chunks");
    // Read back from the store, not from the embedded bytes.
    let other = leaked_release(1, 10, "x");
    s.release = other;
    assert_eq!(s.module(&hash).as_deref(), Some(&MODULE[..]));
    s.release = release();
    assert!(
        !s.record_release(9),
        "known, and its module already stored: nothing is written"
    );
    let entry = s.releases().get(&hash).unwrap();
    assert_eq!((entry.first_seen, entry.stored, s.modules.len()), (5, true, 3));
    assert_eq!(s.module(&[9; 32]), None);
}

#[test]
fn a_release_recorded_before_the_store_existed_gets_its_module_and_keeps_its_first_seen() {
    let mut s = fresh_state();
    let hash = s.release.hash;
    s.releases.insert(
        hash,
        ReleaseEntry {
            size: 1,
            version: "2.0.0".into(),
            first_seen: 3,
            stored: false,
        },
    );
    assert!(!s.record_release(50), "already known: not a new release");
    let entry = s.releases().get(&hash).unwrap();
    assert_eq!((entry.first_seen, entry.stored), (3, true));
}

#[test]
fn the_store_keeps_the_last_r_releases_and_any_release_a_child_runs() {
    let mut s = fresh_state();
    s.update_settings(|st| st.keep_releases = 2);
    assert!(s.build_running_index(10));
    let releases: Vec<Release> = (1..=5).map(|i| leaked_release(i, 100, &format!("{i}.0.0"))).collect();
    for (i, r) in releases.iter().enumerate() {
        s.release = r.clone();
        s.record_release(i as u64);
        if i == 0 {
            // A child still runs the first release.
            s.put_child(principal(1), idle_on(&r.hash));
        }
        s.prune_releases();
    }
    let stored: Vec<bool> = releases
        .iter()
        .map(|r| s.releases().get(&r.hash).unwrap().stored)
        .collect();
    assert_eq!(
        stored,
        [true, false, false, true, true],
        "the two most recent, and the one a child runs"
    );
    assert_eq!(s.module(&releases[1].hash), None);
    assert_eq!(s.module(&releases[0].hash).as_deref(), Some(releases[0].bytes));
    // Once no child runs it, it goes too.
    s.put_child(principal(1), idle_on(&releases[4].hash));
    s.prune_releases();
    assert!(!s.releases().get(&releases[0].hash).unwrap().stored);
    assert_eq!(s.releases().len(), 5, "every release stays listed");
}

#[test]
fn nothing_is_dropped_while_the_children_are_not_all_counted() {
    let mut s = fresh_state();
    s.update_settings(|st| st.keep_releases = 1);
    let old = leaked_release(7, 100, "1.0.0");
    s.release = old.clone();
    s.record_release(1);
    s.release = release();
    s.record_release(2);
    s.put_child(principal(1), idle_on(&old.hash));
    s.prune_releases();
    assert!(
        s.releases().get(&old.hash).unwrap().stored,
        "the index is not built: a child may run it"
    );
    assert!(s.build_running_index(10));
    s.prune_releases();
    assert!(s.releases().get(&old.hash).unwrap().stored, "counted: a child runs it");
}

#[test]
fn the_running_index_is_built_in_batches_and_kept_in_step_with_the_registry() {
    let mut s = fresh_state();
    let (a, b) = ([1; 32], [2; 32]);
    for i in 0..5 {
        s.put_child(principal(i), idle_on(if i < 3 { &a } else { &b }));
    }
    assert_eq!(s.running_on(&a), None, "not counted yet");
    assert!(!s.build_running_index(2));
    // Changes during the build: one counted entry moves, one not yet counted moves, one is removed.
    s.put_child(principal(0), idle_on(&b));
    s.put_child(principal(4), idle_on(&a));
    s.remove_child(&principal(3));
    while !s.build_running_index(2) {}
    let scan = |h: &[u8; 32]| {
        s.children()
            .iter()
            .filter(|e| e.value().decode().installed_hash.as_deref() == Some(&h[..]))
            .count()
    };
    assert_eq!(
        (s.running_on(&a), s.running_on(&b)),
        (Some(scan(&a) as u64), Some(scan(&b) as u64))
    );
    assert_eq!((s.running_on(&a), s.running_on(&b)), (Some(3), Some(1)));
    s.remove_child(&principal(4));
    s.put_child(principal(9), ChildEntry::new(None, Phase::Pending, 0));
    assert_eq!((s.running_on(&a), s.running_on(&b)), (Some(2), Some(1)));
}
