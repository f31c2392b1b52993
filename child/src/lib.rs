//! The child canister: members, a config, an audit log and a write counter, all in stable structures behind one
//! `MemoryManager` (see `memory.rs`). There is deliberately no `pre_upgrade`: nothing lives only on the heap except
//! the request counter and the last heartbeat tick, which reset on every install and upgrade.
//!
//! This file holds the endpoints only; they gather the caller and the time and call plain functions that run
//! natively in tests.
//!
//! # The `next` feature
//! `--features next` builds the "next release" from the same sources, for the rollout rehearsal: `version()` ends
//! in `-next`, and stored member records gain one optional field (`written_by`). The field stays internal to
//! storage, so the Candid interface (`child.did`) is identical with and without the feature.

mod admin;
mod checksum;
mod layout;
mod lifecycle;
mod members;
mod memory;
mod state;
mod storable;

use ic_cdk::{init, post_upgrade, query, update};
use ic_stable_structures::DefaultMemoryImpl;
use shared::child::{
    AuditEntry, ChildError, ChildInitArg, ChildUpgradeArg, DataChecksum, FillArg, Health, ListMembersArg, Member,
    MemberInput, MemberPage,
};
use shared::principal::PrincipalArg;

use crate::lifecycle::{Lifecycle, HEARTBEAT_INTERVAL};
use crate::state::{mutate_state, read_state, CallContext, State};

/// The child's version: its Cargo package version, with a suffix naming the build (`-next`, and the fixtures'
/// `-corrupt` and `-big`; see `build.rs`).
pub const VERSION: &str = env!("CHILD_VERSION");

#[init]
fn init(arg: ChildInitArg) {
    start(Lifecycle::Install(arg));
}

/// Traps (the upgrade fails, the canister keeps its module and data) on a stable memory it does not know.
#[post_upgrade]
fn post_upgrade(arg: Option<ChildUpgradeArg>) {
    layout::check(&DefaultMemoryImpl::default()).unwrap_or_else(|e| ic_cdk::trap(e));
    start(Lifecycle::Upgrade(arg));
}

#[update]
fn add_member(id: String, input: MemberInput) -> Result<Member, ChildError> {
    handle_update(|state, call| members::add(state, call, id, input))
}

#[update]
fn update_member(id: String, input: MemberInput) -> Result<Member, ChildError> {
    handle_update(|state, call| members::update(state, call, id, input))
}

#[update]
fn remove_member(id: String) -> Result<Member, ChildError> {
    handle_update(|state, call| members::remove(state, call, id))
}

#[query]
fn get_member(id: String) -> Result<Member, ChildError> {
    read_state(|state| members::get(state, id))
}

#[query]
fn list_members(arg: ListMembersArg) -> MemberPage {
    read_state(|state| members::list(state, arg))
}

#[query]
fn member_count() -> u64 {
    read_state(members::count)
}

#[query]
fn version() -> String {
    VERSION.to_string()
}

#[query]
fn health() -> Health {
    read_state(State::health)
}

#[query]
fn request_count() -> u64 {
    read_state(|state| state.request_count)
}

#[query]
fn data_checksum() -> DataChecksum {
    read_state(checksum::data_checksum)
}

// `PrincipalArg` is Candid's `principal`; it decodes without principal text code (see `shared::principal`).
#[update]
fn set_parent(parent: PrincipalArg) -> Result<(), ChildError> {
    handle_update(|state, call| admin::set_parent(state, call, parent.0))
}

#[query]
fn audit_log(start: u64, limit: u32) -> Result<Vec<AuditEntry>, ChildError> {
    let call = call_context();
    read_state(|state| admin::audit_log(state, &call, start, limit))
}

#[update]
fn admin_fill(arg: FillArg) -> Result<u64, ChildError> {
    handle_update(|state, call| members::fill(state, call, arg))
}

/// Shared by `init` and `post_upgrade`. Timers must be re-armed: every install_code clears the global timer.
fn start(lifecycle: Lifecycle) {
    let call = call_context();
    mutate_state(|state| lifecycle::initialise(state, &call, lifecycle));
    ic_cdk_timers::set_timer_interval(HEARTBEAT_INTERVAL, || async {
        mutate_state(|state| state.record_tick(ic_cdk::api::time()));
    });
}

fn handle_update<R>(f: impl FnOnce(&mut State<DefaultMemoryImpl>, &CallContext) -> R) -> R {
    let call = call_context();
    mutate_state(|state| {
        state.count_request();
        f(state, &call)
    })
}

fn call_context() -> CallContext {
    let caller = ic_cdk::api::msg_caller();
    CallContext {
        caller,
        caller_is_controller: ic_cdk::api::is_controller(&caller),
        time: ic_cdk::api::time(),
    }
}

#[cfg(test)]
mod tests;

#[cfg(not(target_arch = "wasm32"))]
ic_cdk::export_candid!();
