//! The release store and rollbacks on the real wasm: the parent keeps the modules it carried, rolls the fleet to any
//! of them, and a rollback is an upgrade, so every child keeps its data (including what it wrote on the newer release).

use fleet::{Fleet, FleetConfig, ParentUpgrade, Release};
use shared::child::MemberInput;
use shared::parent::ParentError;

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
