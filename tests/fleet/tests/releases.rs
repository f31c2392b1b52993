//! The release store and rollbacks on the real wasm: the parent keeps the modules it carried, rolls the fleet to any
//! of them, and a rollback is an upgrade, so every child keeps its data (including what it wrote on the newer release).

use candid::Principal;
use fleet::{Fleet, FleetConfig, ParentUpgrade, Release};
use shared::child::MemberInput;
use shared::parent::{CyclesPolicy, ParentError, RestoreTarget, RolloutStatus, SnapshotPolicy};

const MAX_ROUNDS: u64 = 2_000;

fn drive(f: &Fleet) {
    let run = f.run_rollout_to_end(MAX_ROUNDS);
    assert!(run.finished && run.status.failed == 0, "{:#?}", run.status);
}

#[test]
fn a_fleet_rolled_forward_then_back_keeps_every_byte_including_what_it_wrote_on_the_newer_release() {
    let (a, b) = (Release::current(), Release::next());
    let mut fleet = Fleet::with_children(&a, FleetConfig::with_concurrency(2), 3, 20, 32);
    fleet.upgrade_parent(&b, ParentUpgrade::StopFirst).unwrap();
    drive(&fleet);

    // Writes on B: its records carry a field A does not know.
    for (i, c) in fleet.children.clone().into_iter().enumerate() {
        let child = fleet.child(c);
        let input = MemberInput {
            name: format!("written on B {i}"),
            value: vec![i as u8; 40],
        };
        child.add_member(fleet.controller, "on-b", input.clone()).unwrap();
        child.update_member(fleet.controller, "f0-000003", input).unwrap();
        child.remove_member(fleet.controller, "f0-000004").unwrap();
    }
    fleet.record_checksums();

    let p = fleet.parent();
    let id = p
        .rollout_release(fleet.controller, a.expect_child_hash().to_vec())
        .unwrap();
    assert_eq!(p.rollout_status().rollout_id, id);
    assert_eq!(
        p.rollout_status().release.hash,
        a.expect_child_hash().to_vec(),
        "A is the target again"
    );
    drive(&fleet);
    for facts in fleet.verify() {
        facts.assert_healthy_on(&a.expect_child_hash());
    }
    let releases = p.releases();
    let count = |hash: [u8; 32]| {
        releases
            .iter()
            .find(|r| r.hash == hash.to_vec())
            .map(|r| (r.stored, r.children))
    };
    assert_eq!(count(a.expect_child_hash()), Some((true, Some(3))));
    assert_eq!(count(b.expect_child_hash()), Some((true, Some(0))));

    // A parent upgrade carrying B again (a parent hotfix) leaves the fleet on A.
    let since = fleet.replica.management_calls().len();
    fleet
        .upgrade_parent(&b.rebuilt_parent("hotfix"), ParentUpgrade::StopFirst)
        .unwrap();
    fleet.replica.tick_n(100);
    assert!(
        fleet::records::calls_since(&fleet.replica, fleet.parent, since).is_empty(),
        "no child touched"
    );
    assert_eq!(p.rollout_status().release.hash, a.expect_child_hash().to_vec());
}

#[test]
fn rollout_release_refuses_unknown_releases_and_changes_nothing() {
    let fleet = Fleet::with_children(&Release::current(), FleetConfig::with_concurrency(2), 1, 2, 8);
    let p = fleet.parent();
    let before = p.rollout_status();
    let unknown = vec![7; 32];
    assert_eq!(
        p.rollout_release(fleet.controller, unknown.clone()),
        Err(ParentError::UnknownRelease { hash: unknown })
    );
    assert!(matches!(
        p.rollout_release(fleet.controller, vec![1, 2]),
        Err(ParentError::InvalidArgument { .. })
    ));
    assert_eq!(p.rollout_status(), before);
}

/// Release A with `n` children holding data, snapshots on.
fn snapshotting_fleet(n: u32) -> Fleet {
    let fleet = Fleet::with_children(&Release::current(), FleetConfig::with_concurrency(2), n, 12, 16);
    fleet
        .parent()
        .set_snapshot_policy(fleet.controller, SnapshotPolicy::All)
        .unwrap();
    fleet
}

#[test]
fn a_restore_brings_back_the_data_a_bad_release_corrupted_and_loses_the_writes_made_since() {
    let (a, bad) = (Release::current(), Release::from_dir("wasm/fixtures/corrupt"));
    let fleet = snapshotting_fleet(3);
    let p = fleet.parent();
    fleet.upgrade_parent(&bad, ParentUpgrade::StopFirst).unwrap();
    drive(&fleet);
    let bad_rollout = p.rollout_status();
    assert_eq!((bad_rollout.upgraded, bad_rollout.snapshots), (3, 3));
    // The bad release renamed each child's first member, and took a write the restore will lose.
    for c in &fleet.children {
        let child = fleet.child(*c);
        assert_ne!(child.data_checksum(), fleet.checksums[c], "corrupted");
        assert_eq!(child.get_member("f0-000000").unwrap().name, "CORRUPTED");
        let input = MemberInput {
            name: "after the snapshot".into(),
            value: vec![1],
        };
        child.add_member(fleet.controller, "late", input).unwrap();
        assert_eq!(
            p.get_child(*c).unwrap().snapshot.map(|s| s.release),
            Some(a.expect_child_hash().to_vec())
        );
    }

    let restore = p
        .restore_snapshots(fleet.controller, RestoreTarget::Rollout(bad_rollout.rollout_id))
        .unwrap();
    drive(&fleet);
    let st = p.rollout_status();
    assert_eq!(
        (st.rollout_id, st.restore, st.restore_from, st.restored),
        (restore, true, Some(bad_rollout.rollout_id), 3)
    );
    for facts in fleet.verify() {
        assert!(facts.running() && facts.on(&a.expect_child_hash()), "{facts:?}");
        assert!(
            facts.data_intact(),
            "the data as it was before the bad release: {facts:?}"
        );
        assert!(facts.registry_agrees(), "{facts:?}");
        assert!(
            fleet.child(facts.id).get_member("late").is_err(),
            "the write made after the snapshot is gone"
        );
    }
}

#[test]
fn a_child_whose_snapshot_fails_is_never_upgraded_and_stays_running_with_its_data() {
    let fleet = snapshotting_fleet(2);
    let full = fleet.children[0];
    // Its other controller filled its snapshot slots (the IC allows 10).
    fleet.replica.stop_canister(full, Some(fleet.controller)).unwrap();
    for _ in 0..10 {
        let arg = replica::ic00::TakeCanisterSnapshotArgs {
            canister_id: full,
            replace_snapshot: None,
            uninstall_code: None,
            sender_canister_version: None,
        };
        let _: replica::ic00::Snapshot = fleet
            .replica
            .update(
                candid::Principal::management_canister(),
                fleet.controller,
                "take_canister_snapshot",
                &arg,
            )
            .unwrap();
    }
    fleet.replica.start_canister(full, Some(fleet.controller)).unwrap();
    let since = fleet.replica.management_calls().len();
    fleet
        .upgrade_parent(&Release::next(), ParentUpgrade::StopFirst)
        .unwrap();
    let run = fleet.run_rollout_to_end(MAX_ROUNDS);
    assert!(run.finished);
    let failure = run
        .status
        .failures
        .iter()
        .find(|f| f.canister_id == full)
        .expect("listed");
    assert!(
        failure.error.contains("no snapshot, so the child was not upgraded"),
        "{}",
        failure.error
    );
    let facts = fleet.verify();
    for f in &facts {
        assert!(f.running() && f.data_intact(), "{f:?}");
    }
    assert!(facts[0].on(&Release::current().expect_child_hash()), "untouched");
    assert!(facts[1].on(&Release::next().expect_child_hash()));
    let calls = fleet::records::calls_since(&fleet.replica, fleet.parent, since);
    assert!(
        !calls
            .iter()
            .any(|c| c.target == Some(full) && c.method == "install_code"),
        "never installed"
    );
}

/// One child upgraded to a release that corrupts its data, `prepare`d, then restored from its snapshot: the rollout
/// status once the restore ended, with the child checked running on release A again.
fn restored_after(prepare: impl FnOnce(&Fleet, Principal)) -> RolloutStatus {
    let (a, bad) = (Release::current(), Release::from_dir("wasm/fixtures/corrupt"));
    let fleet = snapshotting_fleet(1);
    fleet.upgrade_parent(&bad, ParentUpgrade::StopFirst).unwrap();
    drive(&fleet);
    let child = fleet.children[0];
    prepare(&fleet, child);
    let p = fleet.parent();
    p.restore_snapshots(fleet.controller, RestoreTarget::Children(vec![child]))
        .unwrap();
    drive(&fleet);
    let facts = &fleet.verify()[0];
    assert!(facts.running() && facts.on(&a.expect_child_hash()), "{facts:?}");
    p.rollout_status()
}

#[test]
fn a_child_that_cannot_pay_for_the_load_is_topped_up_before_it_is_stopped_then_restored() {
    let st = restored_after(|fleet, child| fleet.replica.drain_cycles(child));
    assert_eq!((st.restored, st.top_ups), (1, 1));
}

#[test]
fn a_child_that_can_pay_for_the_load_but_not_for_an_install_is_restored() {
    let st = restored_after(|fleet, child| {
        // 80 B cycles above its freezing limit: a load (~2 B) fits in the margin, an install's 300 B reservation
        // does not.
        fleet.replica.drain_cycles(child);
        fleet.replica.add_cycles(child, 80_000_000_000);
        let no_top_ups = CyclesPolicy {
            max_top_up_per_child: 0,
            ..fleet.parent().settings().cycles
        };
        fleet.parent().set_cycles_policy(fleet.controller, no_top_ups).unwrap();
    });
    assert_eq!((st.restored, st.top_ups), (1, 0));
}

#[test]
fn restoring_a_child_that_was_never_snapshotted_is_refused_and_changes_nothing() {
    let fleet = Fleet::with_children(&Release::current(), FleetConfig::with_concurrency(2), 2, 4, 8);
    let p = fleet.parent();
    let before = p.rollout_status();
    let child = fleet.children[0];
    assert_eq!(
        p.restore_snapshots(fleet.controller, RestoreTarget::Children(vec![child])),
        Err(ParentError::NoSnapshot { canister_id: child })
    );
    assert_eq!(p.rollout_status(), before);
}

#[test]
fn a_parent_forced_through_an_upgrade_mid_restore_finishes_the_restore() {
    let (a, bad) = (Release::current(), Release::from_dir("wasm/fixtures/corrupt"));
    let fleet = snapshotting_fleet(2);
    let p = fleet.parent();
    fleet.upgrade_parent(&bad, ParentUpgrade::StopFirst).unwrap();
    drive(&fleet);
    let since = fleet.replica.management_calls().len();
    p.restore_snapshots(fleet.controller, RestoreTarget::Children(fleet.children.clone()))
        .unwrap();
    for _ in 0..200 {
        let calls = fleet::records::calls_since(&fleet.replica, fleet.parent, since);
        if calls.iter().any(|c| c.method == "load_canister_snapshot") {
            break;
        }
        fleet.replica.tick();
    }
    fleet
        .upgrade_parent(&bad.rebuilt_parent("hotfix"), ParentUpgrade::SkippingPreUpgrade)
        .unwrap();
    drive(&fleet);
    assert_eq!(p.rollout_status().restored, 2);
    for facts in fleet.verify() {
        assert!(
            facts.running() && facts.on(&a.expect_child_hash()) && facts.data_intact(),
            "{facts:?}"
        );
    }
}

/// The IC takes at most 2 MiB in an install_code across subnets: the parent uploads the release to its own chunk
/// store once and installs every child from there, after storing it within the upgrade budget.
#[test]
fn a_child_over_2_mib_is_stored_within_the_upgrade_budget_and_rolled_out_through_chunks() {
    let big = Release::from_dir("wasm/fixtures/big");
    let module = fleet::wasms::read("wasm/fixtures/big/child.wasm.gz");
    assert!(
        module.len() > 2 * 1024 * 1024,
        "the fixture is over the 2 MiB install limit"
    );
    let fleet = Fleet::with_children(&Release::current(), FleetConfig::with_concurrency(2), 2, 4, 8);
    fleet.upgrade_parent(&big, ParentUpgrade::StopFirst).unwrap();
    let post_upgrade = fleet
        .replica
        .last_execution(fleet.parent, "canister_post_upgrade")
        .expect("ran");
    assert!(post_upgrade.outcome.is_ok());
    eprintln!(
        "post_upgrade storing a {} byte child: {} instructions",
        module.len(),
        post_upgrade.instructions
    );
    assert!(
        post_upgrade.instructions < fleet.replica.config().install_instruction_limit / 100,
        "{post_upgrade:?}"
    );
    let stored = fleet
        .parent()
        .releases()
        .into_iter()
        .find(|r| r.hash == big.expect_child_hash().to_vec());
    assert_eq!(stored.map(|r| (r.stored, r.size)), Some((true, module.len() as u64)));
    let since = fleet.replica.management_calls().len();
    drive(&fleet);
    for facts in fleet.verify() {
        facts.assert_healthy_on(&big.expect_child_hash());
    }

    let calls = fleet::records::calls_since(&fleet.replica, fleet.parent, since);
    let chunks = module.len().div_ceil(1024 * 1024);
    assert_eq!(succeeded(&calls, "upload_chunk"), chunks, "each chunk once");
    assert_eq!(succeeded(&calls, "install_chunked_code"), fleet.children.len());
    assert_eq!(
        succeeded(&calls, "install_code"),
        0,
        "no inline install of the big module"
    );
    let first_upload = calls.iter().position(|c| c.method == "upload_chunk").unwrap();
    let first_stop = calls.iter().position(|c| c.method == "stop_canister").unwrap();
    assert!(
        first_upload < first_stop,
        "the store is filled before any child is stopped"
    );
    let store = fleet
        .parent()
        .rollout_status()
        .chunk_store
        .expect("the store holds the target");
    assert_eq!(
        (store.uploaded as usize, store.chunks as usize, store.error),
        (chunks, chunks, None)
    );

    // Back to the small release: installed inline, and the store is cleared of the big one.
    let since = fleet.replica.management_calls().len();
    let small = Release::current().expect_child_hash();
    fleet
        .parent()
        .rollout_release(fleet.controller, small.to_vec())
        .unwrap();
    drive(&fleet);
    // The clear waits for the next lock check after the last operation.
    for _ in 0..100 {
        if fleet.parent().rollout_status().chunk_store.is_none() {
            break;
        }
        fleet.replica.advance_time(std::time::Duration::from_secs(10));
        fleet.replica.tick();
    }
    let calls = fleet::records::calls_since(&fleet.replica, fleet.parent, since);
    assert_eq!(succeeded(&calls, "clear_chunk_store"), 1);
    assert_eq!(succeeded(&calls, "install_code"), fleet.children.len());
    assert_eq!(fleet.parent().rollout_status().chunk_store, None);
    for facts in fleet.verify() {
        facts.assert_healthy_on(&small);
    }
}

fn succeeded(calls: &[replica::ManagementCall], method: &str) -> usize {
    calls
        .iter()
        .filter(|c| c.method == method && c.outcome == Some(Ok(())))
        .count()
}
