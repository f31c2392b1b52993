use candid::Principal;
use ic_stable_structures::VectorMemory;
use sha2::{Digest, Sha256};
use shared::child::FillArg;

use super::*;
use crate::lifecycle::{initialise, Lifecycle};
use crate::members::{add, fill, update};
use crate::state::testing::*;

fn bytes_of(out: &mut Vec<u8>, b: &[u8]) {
    out.extend((b.len() as u64).to_be_bytes());
    out.extend(b);
}

/// The digest of an installed child with no writes: no members, the parent, 0 writes, no audit entry hashed.
fn empty_digest_input() -> Vec<u8> {
    let mut out = Vec::new();
    bytes_of(&mut out, b"config");
    out.push(1);
    bytes_of(&mut out, parent().as_slice());
    bytes_of(&mut out, b"writes");
    out.extend(0u64.to_be_bytes());
    bytes_of(&mut out, b"audit");
    out
}

#[test]
fn should_hash_every_structure_as_documented() {
    let mut state = installed_state();
    assert_eq!(
        data_checksum(&state).sha256,
        Sha256::digest(empty_digest_input()).to_vec()
    );

    add(&mut state, &call_at(parent(), 5), "b".into(), input("Bo", &[9, 9])).unwrap();
    add(&mut state, &call_at(parent(), 6), "a".into(), input("Al", &[])).unwrap();
    update(&mut state, &call_at(controller(), 7), "a".into(), input("Al", &[1])).unwrap();

    let mut expected = Vec::new();
    for field in [&b"a"[..], b"Al", &[1]] {
        bytes_of(&mut expected, field);
    }
    expected.extend(6u64.to_be_bytes());
    expected.push(1);
    expected.extend(7u64.to_be_bytes());
    for field in [&b"b"[..], b"Bo", &[9, 9]] {
        bytes_of(&mut expected, field);
    }
    expected.extend(5u64.to_be_bytes());
    expected.push(0);
    bytes_of(&mut expected, b"config");
    expected.push(1);
    bytes_of(&mut expected, parent().as_slice());
    bytes_of(&mut expected, b"writes");
    expected.extend(3u64.to_be_bytes());
    bytes_of(&mut expected, b"audit");
    // The install's entry is left out; then the three writes in log order.
    for (time, caller, id, kind) in [
        (5u64, parent(), "b", "MemberAdded"),
        (6, parent(), "a", "MemberAdded"),
        (7, controller(), "a", "MemberUpdated"),
    ] {
        expected.extend(time.to_be_bytes());
        bytes_of(&mut expected, caller.as_slice());
        expected.push(1);
        bytes_of(&mut expected, id.as_bytes());
        bytes_of(&mut expected, kind.as_bytes());
    }

    let sum = data_checksum(&state);
    assert_eq!((sum.members, sum.audit_entries, sum.total_writes), (2, 3, 3));
    assert_eq!(sum.sha256, Sha256::digest(&expected).to_vec());
}

#[test]
fn should_hash_the_fields_of_fill_and_parent_entries() {
    let mut state = installed_state();
    fill(
        &mut state,
        &call_at(controller(), 5),
        FillArg {
            count: 1,
            value_size: 0,
            prefix: "p".into(),
        },
    )
    .unwrap();
    let new_parent = Principal::from_slice(&[9, 9]);
    crate::admin::set_parent(&mut state, &call_at(controller(), 6), new_parent).unwrap();

    let mut expected = Vec::new();
    for field in [&b"p000000"[..], b"p000000", &[]] {
        bytes_of(&mut expected, field);
    }
    expected.extend(5u64.to_be_bytes());
    expected.push(0);
    bytes_of(&mut expected, b"config");
    expected.push(1);
    bytes_of(&mut expected, new_parent.as_slice());
    bytes_of(&mut expected, b"writes");
    expected.extend(2u64.to_be_bytes());
    bytes_of(&mut expected, b"audit");
    expected.extend(5u64.to_be_bytes());
    bytes_of(&mut expected, controller().as_slice());
    expected.push(0);
    bytes_of(&mut expected, b"Filled");
    bytes_of(&mut expected, b"p");
    expected.extend(1u64.to_be_bytes());
    expected.extend(6u64.to_be_bytes());
    bytes_of(&mut expected, controller().as_slice());
    expected.push(0);
    bytes_of(&mut expected, b"ParentSet");
    bytes_of(&mut expected, new_parent.as_slice());

    assert_eq!(data_checksum(&state).sha256, Sha256::digest(&expected).to_vec());
}

#[test]
fn should_change_when_any_structure_changes() {
    let mut state = state_with_members();
    let before = data_checksum(&state);
    update(&mut state, &call_from(parent()), "bob".into(), input("bob", b"bOb")).unwrap();
    let after_member = data_checksum(&state);
    assert_ne!(after_member, before);
    crate::admin::set_parent(&mut state, &call_from(controller()), Principal::from_slice(&[5])).unwrap();
    let after_config = data_checksum(&state);
    assert_ne!(after_config.sha256, after_member.sha256);
    state.total_writes.set(0);
    assert_ne!(
        data_checksum(&state).sha256,
        after_config.sha256,
        "the counter is covered"
    );
}

#[test]
fn an_upgrade_keeps_the_checksum() {
    let memory = VectorMemory::default();
    let mut state = installed_on(memory.clone());
    add(&mut state, &call_from(parent()), "a".into(), input("A", b"1")).unwrap();
    let before = data_checksum(&state);
    drop(state);
    let mut reopened = State::open(memory);
    initialise(&mut reopened, &call_at(controller(), NOW + 9), Lifecycle::Upgrade(None));
    assert_eq!(
        data_checksum(&reopened),
        before,
        "the upgrade's own audit entry and schema stamp are left out"
    );
}
