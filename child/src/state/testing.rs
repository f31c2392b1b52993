//! Fixtures for the native unit tests.

use candid::Principal;
use ic_stable_structures::VectorMemory;
use shared::child::{AuditEntry, ChildInitArg, Member, MemberInput};

use crate::lifecycle::{initialise, Lifecycle};
use crate::state::{CallContext, State};
use crate::storable::Config;

pub type TestState = State<VectorMemory>;

pub const INSTALL_TIME: u64 = 1_700_000_000_000_000_000;
pub const NOW: u64 = INSTALL_TIME + 1_000;

pub fn parent() -> Principal {
    Principal::from_slice(&[1])
}

pub fn controller() -> Principal {
    Principal::from_slice(&[2])
}

pub fn stranger() -> Principal {
    Principal::from_slice(&[3])
}

/// A call from `caller` at `NOW`; only `controller()` is a controller.
pub fn call_from(caller: Principal) -> CallContext {
    call_at(caller, NOW)
}

pub fn call_at(caller: Principal, time: u64) -> CallContext {
    CallContext {
        caller,
        caller_is_controller: caller == controller(),
        time,
    }
}

/// A fresh canister that `controller()` installed with `parent()` as its parent.
pub fn installed_state() -> TestState {
    installed_on(VectorMemory::default())
}

pub fn installed_on(memory: VectorMemory) -> TestState {
    let mut state = State::open(memory);
    let install = Lifecycle::Install(ChildInitArg { parent: parent() });
    initialise(&mut state, &call_at(controller(), INSTALL_TIME), install);
    state
}

pub fn input(name: &str, value: &[u8]) -> MemberInput {
    MemberInput {
        name: name.to_string(),
        value: value.to_vec(),
    }
}

/// Everything a call can change, for asserting that a failed call changed nothing.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub members: Vec<Member>,
    pub config: Config,
    pub audit_log: Vec<AuditEntry>,
    pub total_writes: u64,
    pub request_count: u64,
    pub last_tick: Option<u64>,
}

pub fn snapshot(state: &TestState) -> Snapshot {
    Snapshot {
        members: state
            .members
            .iter()
            .map(|entry| entry.into_pair())
            .map(|(id, r)| r.into_member(id))
            .collect(),
        config: state.config.get().clone(),
        audit_log: state.audit_log.iter().map(|record| record.0).collect(),
        total_writes: *state.total_writes.get(),
        request_count: state.request_count,
        last_tick: state.last_tick,
    }
}

/// A state with members "alice" and "bob".
pub fn state_with_members() -> TestState {
    let mut state = installed_state();
    for id in ["alice", "bob"] {
        crate::members::add(
            &mut state,
            &call_from(parent()),
            id.to_string(),
            input(id, id.as_bytes()),
        )
        .unwrap();
    }
    state
}

/// Runs `call`, expects `expected` and checks that the state is exactly as before.
pub fn assert_rejected<T: std::fmt::Debug>(
    state: &mut TestState,
    expected: shared::child::ChildError,
    call: impl FnOnce(&mut TestState) -> Result<T, shared::child::ChildError>,
) {
    let before = snapshot(state);
    assert_eq!(call(state).unwrap_err(), expected);
    assert_eq!(snapshot(state), before, "a rejected call changed the state");
}
