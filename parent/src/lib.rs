//! The parent (index) canister: carries one child release (embedded at build time), keeps a registry of its children
//! in stable memory, and rolls the release out to every child that does not run it yet.
//!
//! Endpoints below only authorize and delegate. Modules, and the one way their imports run:
//!
//! ```text
//! lib (endpoints), lifecycle ─> admin, queries ─> driver ─> rollout ─> model, outcome, state ─> memory, release
//!                                   └────────────────┴──> ic (effects: management calls, time, timers)
//! ```
//! `rollout` is the pure state machine; `driver` performs its steps through `ic`, the one effects seam, which
//! nothing below the driver imports.

mod admin;
mod driver;
mod gates;
mod ic;
mod lifecycle;
mod memory;
mod model;
mod outcome;
mod queries;
mod release;
mod rollout;
mod state;
#[cfg(test)]
mod testing;

use admin::Role;
use candid::{Nat, Principal};
use shared::parent::{
    ChildEvent, ChildInfo, ChildSpec, CreateChildrenResult, CyclesPolicy, HistoryArg, ListChildrenArg, ParentArg,
    ParentError, RegisterOptions, ReleaseRecord, RestoreTarget, RetryOptions, RolloutGates, RolloutRecord,
    RolloutStatus, Settings, SnapshotPolicy,
};
use shared::release::ReleaseInfo;
use state::{mutate_state, read_state};

/// Controllers of the parent and admins only; everyone else gets `NotAuthorized`.
fn guard() -> Result<(), ParentError> {
    authorize(Role::Operator)
}

/// Controllers of the parent only: who controls the fleet and what it spends per child are theirs to set.
fn controllers_only() -> Result<(), ParentError> {
    authorize(Role::Controller)
}

fn authorize(role: Role) -> Result<(), ParentError> {
    let caller = ic_cdk::api::msg_caller();
    let is_controller = ic_cdk::api::is_controller(&caller);
    read_state(|s| admin::authorize(s, role, caller, is_controller))
}

fn now() -> u64 {
    ic_cdk::api::time()
}

/// Guard of the updates without parameters. ic-cdk does not read the argument of a method without parameters at
/// all, so any bytes would run it; this accepts only Candid (extra values are ignored, as Candid allows; no bytes
/// count as `()`) and traps on anything else, as the decoding of a method with parameters does. (A guard rather than
/// `decode_with`, which would change the exported Candid type.)
fn candid_args() -> Result<(), String> {
    let bytes = ic_cdk::api::msg_arg_data();
    if !bytes.is_empty() {
        let mut config = candid::DecoderConfig::new();
        config.set_skipping_quota(10_000);
        if let Err(e) = candid::utils::decode_args_with_config::<()>(&bytes, &config) {
            ic_cdk::trap(format!("failed to decode the call arguments: {e}"));
        }
    }
    Ok(())
}

/// Wakes the rollout driver (a no-op if a tick is already due) and passes `value` through.
fn kick<T>(value: T) -> T {
    driver::wake();
    value
}

#[ic_cdk::init]
fn init(arg: Option<ParentArg>) {
    lifecycle::init(arg)
}

/// Refuses (traps, so the upgrade fails and changes nothing) while the parent awaits calls and is not stopped.
#[ic_cdk::pre_upgrade]
fn pre_upgrade() {
    lifecycle::pre_upgrade()
}

#[ic_cdk::post_upgrade]
fn post_upgrade(arg: Option<ParentArg>) {
    lifecycle::post_upgrade(arg)
}

#[ic_cdk::update]
async fn create_children(n: u32, spec: Option<ChildSpec>) -> Result<CreateChildrenResult, ParentError> {
    guard()?;
    admin::create_children(&driver::cdk(), n, spec).await
}

/// Adopts a canister the parent controls. It must run a release this parent has shipped (`releases()`) or no module;
/// `opt record { force = opt true }` adopts any module (see `RegisterOptions`).
#[ic_cdk::update]
async fn register_child(canister_id: Principal, options: Option<RegisterOptions>) -> Result<ChildInfo, ParentError> {
    guard()?;
    admin::register_child(&driver::cdk(), canister_id, options.unwrap_or_default()).await
}

#[ic_cdk::update]
fn remove_child(canister_id: Principal) -> Result<(), ParentError> {
    guard()?;
    mutate_state(|s| admin::remove_child(s, canister_id, now()))
}

#[ic_cdk::update]
fn set_concurrency(k: u32) -> Result<(), ParentError> {
    guard()?;
    mutate_state(|s| admin::set_concurrency(s, k)).map(kick)
}

#[ic_cdk::update(guard = "candid_args")]
fn start_rollout() -> Result<u64, ParentError> {
    guard()?;
    Ok(kick(mutate_state(|s| {
        admin::start_rollout(s, ic_cdk::api::msg_caller(), now())
    })))
}

#[ic_cdk::update(guard = "candid_args")]
fn verify_fleet() -> Result<u64, ParentError> {
    guard()?;
    Ok(kick(mutate_state(|s| {
        admin::verify_fleet(s, ic_cdk::api::msg_caller(), now())
    })))
}

#[ic_cdk::update(guard = "candid_args")]
fn retry_failed() -> Result<u64, ParentError> {
    guard()?;
    Ok(kick(mutate_state(|s| admin::retry_failed(s, now()))))
}

#[ic_cdk::update]
fn retry_child(canister_id: Principal, options: RetryOptions) -> Result<u64, ParentError> {
    guard()?;
    mutate_state(|s| admin::retry_child(s, canister_id, options, now())).map(kick)
}

/// Makes a release this parent has stored the fleet's target and rolls it out like any release: every child is
/// upgraded (never reinstalled), so it keeps its data. Rolling back is `rollout_release` of the previous release.
#[ic_cdk::update]
fn rollout_release(hash: Vec<u8>) -> Result<u64, ParentError> {
    guard()?;
    mutate_state(|s| admin::rollout_release(s, hash, ic_cdk::api::msg_caller(), now())).map(kick)
}

/// Sets whether rollouts take an IC snapshot of each child (stopped) before upgrading it. A child whose snapshot
/// fails is started again untouched and marked failed: it is never upgraded without the snapshot it was promised.
#[ic_cdk::update]
fn set_snapshot_policy(policy: SnapshotPolicy) -> Result<(), ParentError> {
    guard()?;
    mutate_state(|s| admin::set_snapshot_policy(s, policy));
    Ok(())
}

/// Sets the module size (bytes of .wasm.gz) above which children are installed from the parent's own chunk store:
/// the release is uploaded there once, then each child is installed with `install_chunked_code`.
#[ic_cdk::update]
fn set_chunked_install_above(bytes: u64) -> Result<(), ParentError> {
    guard()?;
    mutate_state(|s| admin::set_chunked_install_above(s, bytes))
}

/// The emergency path back: loads each child's rollout snapshot (stop, load, start, confirm the snapshot's release).
/// Every write a child took since its snapshot is LOST. Pending upgrades are dropped; the target does not change.
/// `rollout_release` of the previous release is the normal way back, and keeps every write.
#[ic_cdk::update]
fn restore_snapshots(target: RestoreTarget) -> Result<u64, ParentError> {
    guard()?;
    mutate_state(|s| admin::restore_snapshots(s, target, ic_cdk::api::msg_caller(), now())).map(kick)
}

/// Sets how rollouts are gated (canary wave, bake, health check, automatic halt), from the next rollout on.
#[ic_cdk::update]
fn set_rollout_gates(gates: RolloutGates) -> Result<(), ParentError> {
    guard()?;
    mutate_state(|s| admin::set_rollout_gates(s, gates))
}

/// Nothing new starts until `resume_rollout`; operations under way finish (each child is started again). Idempotent.
#[ic_cdk::update(guard = "candid_args")]
fn pause_rollout() -> Result<(), ParentError> {
    guard()?;
    mutate_state(admin::pause_rollout)
}

/// Lifts a pause or a halt (a halt during the canary wave lets the rest of the fleet go). Idempotent.
#[ic_cdk::update(guard = "candid_args")]
fn resume_rollout() -> Result<(), ParentError> {
    guard()?;
    mutate_state(admin::resume_rollout).map(kick)
}

/// Drops every queued child back to idle (outdated) and starts nothing new; operations under way finish. Idempotent.
#[ic_cdk::update(guard = "candid_args")]
fn abort_rollout() -> Result<(), ParentError> {
    guard()?;
    mutate_state(|s| admin::abort_rollout(s, now())).map(kick)
}

#[ic_cdk::query]
fn rollout_history(arg: HistoryArg) -> Vec<RolloutRecord> {
    read_state(|s| queries::rollout_history(s, arg))
}

/// The child's last operations (at most 10), oldest first, with their steps.
#[ic_cdk::query]
fn child_events(canister_id: Principal) -> Vec<ChildEvent> {
    read_state(|s| queries::child_events(s, canister_id))
}

#[ic_cdk::update]
fn set_keep_releases(keep: u32) -> Result<(), ParentError> {
    controllers_only()?;
    mutate_state(|s| admin::set_keep_releases(s, keep))
}

#[ic_cdk::update]
fn set_admins(admins: Vec<Principal>) -> Result<(), ParentError> {
    controllers_only()?;
    mutate_state(|s| admin::set_admins(s, admins))
}

/// Sets how a rollout keeps children able to pay for their install: the margin it wants above a child's freezing
/// limit and the install's reservation, and how much of the parent's cycles it may deposit (see `CyclesPolicy`).
#[ic_cdk::update]
fn set_cycles_policy(policy: CyclesPolicy) -> Result<(), ParentError> {
    controllers_only()?;
    mutate_state(|s| admin::set_cycles_policy(s, policy))
}

#[ic_cdk::update]
fn set_cycles_per_child(cycles: Nat) -> Result<(), ParentError> {
    controllers_only()?;
    mutate_state(|s| admin::set_cycles_per_child(s, cycles))
}

#[ic_cdk::update]
fn set_extra_controllers(controllers: Vec<Principal>) -> Result<(), ParentError> {
    controllers_only()?;
    mutate_state(|s| admin::set_extra_controllers(s, ic_cdk::api::canister_self(), controllers))
}

#[ic_cdk::query]
fn rollout_status() -> RolloutStatus {
    read_state(queries::rollout_status)
}

#[ic_cdk::query]
fn list_children(arg: ListChildrenArg) -> Vec<ChildInfo> {
    read_state(|s| queries::list_children(s, arg))
}

#[ic_cdk::query]
fn get_child(canister_id: Principal) -> Option<ChildInfo> {
    read_state(|s| queries::get_child(s, canister_id))
}

#[ic_cdk::query]
fn child_release() -> ReleaseInfo {
    read_state(|s| s.release.info())
}

#[ic_cdk::query]
fn releases() -> Vec<ReleaseRecord> {
    read_state(queries::releases)
}

#[ic_cdk::query]
fn settings() -> Settings {
    read_state(|s| admin::settings_view(s.settings()))
}

ic_cdk::export_candid!();

#[cfg(test)]
mod candid_tests {
    /// `parent/parent.did` is the code's interface, comments included. `UPDATE_CANDID=1 cargo test -p parent`
    /// rewrites it.
    #[test]
    fn candid_interface_matches_parent_did() {
        shared::did::assert_committed("parent.did", super::__export_service());
    }
}
