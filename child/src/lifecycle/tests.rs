use ic_stable_structures::VectorMemory;
use shared::child::ChildUpgradeArg;

use super::*;
use crate::state::testing::*;
use crate::storable::Config;

#[test]
fn should_record_parent_schema_and_install_on_install() {
    let state = installed_state();
    assert_eq!(
        state.config.get(),
        &Config {
            parent: Some(parent()),
            schema_version: SCHEMA_VERSION
        }
    );
    let entries = snapshot(&state).audit_log;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].kind,
        AuditKind::Install {
            version: crate::VERSION.into()
        }
    );
    assert_eq!((entries[0].caller, entries[0].time), (controller(), INSTALL_TIME));
}

#[test]
fn should_keep_parent_on_upgrade_without_argument() {
    for arg in [None, Some(ChildUpgradeArg { parent: None })] {
        let mut state = installed_state();
        initialise(&mut state, &call_from(controller()), Lifecycle::Upgrade(arg));
        assert_eq!(state.config.get().parent, Some(parent()));
    }
}

#[test]
fn should_replace_parent_on_upgrade_with_argument() {
    let mut state = installed_state();
    let upgrade = Lifecycle::Upgrade(Some(ChildUpgradeArg {
        parent: Some(stranger()),
    }));
    initialise(&mut state, &call_from(controller()), upgrade);
    assert_eq!(state.config.get().parent, Some(stranger()));
}

#[test]
fn should_audit_but_not_count_installs_and_upgrades() {
    let mut state = installed_state();
    initialise(&mut state, &call_at(parent(), NOW), Lifecycle::Upgrade(None));
    let last = snapshot(&state).audit_log.pop().unwrap();
    assert_eq!(
        (last.kind, last.caller, last.time),
        (
            AuditKind::Upgrade {
                version: crate::VERSION.into()
            },
            parent(),
            NOW
        )
    );
    assert_eq!((state.audit_log.len(), *state.total_writes.get()), (2, 0));
}

#[test]
#[should_panic(expected = "stable memory has schema version 2, but this build reads at most 1")]
fn should_refuse_stable_memory_of_a_newer_schema() {
    let memory = VectorMemory::default();
    let mut state = installed_on(memory.clone());
    state.config.set(Config {
        parent: Some(parent()),
        schema_version: SCHEMA_VERSION + 1,
    });
    drop(state);
    initialise(
        &mut State::open(memory),
        &call_from(controller()),
        Lifecycle::Upgrade(None),
    );
}
