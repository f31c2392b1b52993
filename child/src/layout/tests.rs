use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
use ic_stable_structures::{StableBTreeMap, StableCell, VectorMemory};

use super::*;
use crate::state::testing::{call_from, controller, input, installed_on};

fn memory() -> VectorMemory {
    VectorMemory::default()
}

/// A stable memory holding `bytes` from offset 0: what another module's raw writes leave.
#[allow(
    clippy::disallowed_methods,
    reason = "the test writes another module's layout on purpose"
)]
fn written_raw(bytes: &[u8]) -> VectorMemory {
    let m = memory();
    m.grow(1);
    m.write(0, bytes);
    m
}

#[test]
fn empty_stable_memory_is_fine() {
    assert_eq!(check(&memory()), Ok(()));
}

#[test]
fn the_childs_own_layout_is_known() {
    let m = memory();
    let mut state = installed_on(m.clone());
    crate::members::add(&mut state, &call_from(controller()), "a".into(), input("A", b"1")).unwrap();
    assert_eq!(check(&m), Ok(()));
}

#[test]
fn bytes_that_are_no_memory_manager_are_refused() {
    // What `stable_save` leaves: a Candid blob from offset 0.
    let m = written_raw(b"DIDL\x01\x6d\x7b\x01\x00\x03abc");
    let err = check(&m).unwrap_err();
    assert!(err.contains("not a MemoryManager layout"), "{err}");
}

#[test]
fn another_memory_manager_version_is_refused() {
    let m = written_raw(b"MGR\x02");
    assert!(check(&m).unwrap_err().contains("version 2"));
}

#[test]
fn another_structure_where_an_owned_one_belongs_is_refused() {
    // A module that keeps a cell where this child keeps its members.
    let m = memory();
    let manager = MemoryManager::init(m.clone());
    StableCell::init(manager.get(MEMBERS_MEMORY_ID), 7u64);
    let err = check(&m).unwrap_err();
    assert!(err.contains("members (StableBTreeMap)"), "{err}");
}

#[test]
fn data_in_memories_the_child_does_not_own_is_left_alone() {
    let m = memory();
    let manager = MemoryManager::init(m.clone());
    let mut other: StableBTreeMap<u64, u64, _> = StableBTreeMap::init(manager.get(MemoryId::new(200)));
    other.insert(1, 2);
    assert_eq!(check(&m), Ok(()));
}
