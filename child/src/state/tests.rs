use ic_stable_structures::VectorMemory;
use shared::child::{AuditKind, ChildUpgradeArg, FillArg};

use super::testing::*;
use super::*;
use crate::lifecycle::{initialise, Lifecycle};
use crate::{admin, members};

#[test]
fn should_keep_every_structure_across_reopen() {
    let memory = VectorMemory::default();
    let mut state = installed_on(memory.clone());
    let call = call_from(controller());
    members::add(&mut state, &call, "alice".into(), input("Alice", b"a")).unwrap();
    members::update(&mut state, &call, "alice".into(), input("Alice", b"b")).unwrap();
    members::fill(
        &mut state,
        &call,
        FillArg {
            count: 3,
            value_size: 10,
            prefix: "f".into(),
        },
    )
    .unwrap();
    admin::set_parent(&mut state, &call, stranger()).unwrap();
    state.count_request();
    state.record_tick(NOW);
    let before = snapshot(&state);
    let checksum = crate::checksum::data_checksum(&state);
    drop(state);

    let mut reopened = State::open(memory.clone());
    let expected = Snapshot {
        request_count: 0,
        last_tick: None,
        ..before
    };
    assert_eq!(snapshot(&reopened), expected);
    assert_eq!(crate::checksum::data_checksum(&reopened), checksum);

    initialise(&mut reopened, &call, Lifecycle::Upgrade(None));
    let after_upgrade = snapshot(&reopened);
    assert_eq!(after_upgrade.members, expected.members);
    assert_eq!(after_upgrade.config, expected.config);
    assert_eq!(
        after_upgrade.audit_log[..expected.audit_log.len()],
        expected.audit_log[..]
    );
    assert_eq!(
        after_upgrade.audit_log.last().unwrap().kind,
        AuditKind::Upgrade {
            version: crate::VERSION.into()
        }
    );
}

#[test]
fn should_keep_the_whole_stable_memory_to_the_memory_manager() {
    let memory = VectorMemory::default();
    let state = installed_on(memory.clone());
    assert_eq!(
        &memory.borrow()[..3],
        b"MGR",
        "stable memory must start with the MemoryManager header"
    );
    let health = state.health();
    assert_eq!(health.stable_memory_pages, memory.borrow().len() as u64 / 65536);
    assert_eq!(health.stable_memory_bytes, memory.borrow().len() as u64);
}

#[test]
fn should_report_health() {
    let mut state = state_with_members();
    state.count_request();
    state.record_tick(NOW + 1);
    let upgrade = Lifecycle::Upgrade(Some(ChildUpgradeArg {
        parent: Some(stranger()),
    }));
    initialise(&mut state, &call_from(controller()), upgrade);
    let health = state.health();
    assert_eq!(
        (
            health.version.as_str(),
            health.schema_version,
            health.parent,
            health.member_count
        ),
        (crate::VERSION, crate::memory::SCHEMA_VERSION, Some(stranger()), 2)
    );
    assert_eq!((health.audit_log_length, health.total_writes), (4, 2));
    assert_eq!((health.request_count, health.last_tick), (1, Some(NOW + 1)));
}
