//! Admin operations: access control, settings, and fleet membership (create, register, remove).
//!
//! Validation happens before anything is written or called, so a call rejected with an error changes nothing.

use crate::driver;
use crate::ic::Ic;
use crate::model::{CyclesPolicy, Gates, Phase, Settings, Share, SnapshotPolicy, UpgradeOptions};
use crate::outcome::CallError;
use crate::queries::child_info;
use crate::rollout;
use crate::state::{mutate_state, read_state, State};
use candid::{Nat, Principal};
use shared::parent::{
    ChildInfo, ChildSpec, CreateChildrenResult, ParentArg, ParentError, RegisterOptions, RestoreTarget, RetryOptions,
    RolloutGates,
};
use std::time::Duration;

/// Upper bound for R, the releases whose modules the store keeps (each is up to the IC's 100 MiB module limit).
pub const MAX_KEEP_RELEASES: u32 = 50;
/// Highest `chunked_install_above`: an inline `install_code` of a larger module (with its argument and encoding)
/// would pass the IC's 2 MiB message limit.
pub const MAX_CHUNKED_INSTALL_ABOVE: u64 = 2 * 1024 * 1024 - 64 * 1024;
/// Upper bound for K (keeps per-tick work and the management canister's input queue bounded).
pub const MAX_CONCURRENCY: u32 = 100;
/// Guards against typos (a misplaced digit could drain the parent): 1,000 T cycles.
pub const MAX_CYCLES_PER_CHILD: u128 = 1_000_000_000_000_000;
/// Children created by one `create_children` call (they are created concurrently).
pub const MAX_CREATE_PER_CALL: u32 = 50;
pub const MAX_ADMINS: usize = 100;
/// A canister has at most 10 controllers; the parent is always one of them.
pub const MAX_EXTRA_CONTROLLERS: usize = 9;
/// Failed children re-queued by one `retry_failed` call (call again for more).
pub const MAX_RETRY_PER_CALL: usize = 5_000;

fn invalid(reason: impl Into<String>) -> ParentError {
    ParentError::InvalidArgument { reason: reason.into() }
}

/// Who may call an endpoint. Admins operate the fleet; only controllers change who controls it or what it spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Controllers of the parent and admins.
    Operator,
    /// Controllers of the parent only.
    Controller,
}

pub fn authorize(s: &State, role: Role, caller: Principal, caller_is_controller: bool) -> Result<(), ParentError> {
    let admin = role == Role::Operator && s.settings().admins.contains(&caller);
    if caller_is_controller || admin {
        Ok(())
    } else {
        Err(ParentError::NotAuthorized { caller })
    }
}

// --- settings --------------------------------------------------------------------------------------------------

fn validate_admins(admins: Vec<Principal>) -> Result<Vec<Principal>, ParentError> {
    let mut admins = admins;
    admins.sort();
    admins.dedup();
    if admins.len() > MAX_ADMINS {
        return Err(invalid(format!("at most {MAX_ADMINS} admins")));
    }
    if admins.contains(&Principal::anonymous()) {
        return Err(invalid("the anonymous principal cannot be an admin"));
    }
    Ok(admins)
}

fn validate_concurrency(k: u32) -> Result<u32, ParentError> {
    if k > MAX_CONCURRENCY {
        return Err(invalid(format!("concurrency must be at most {MAX_CONCURRENCY}")));
    }
    Ok(k)
}

fn validate_keep_releases(keep: u32) -> Result<u32, ParentError> {
    if !(1..=MAX_KEEP_RELEASES).contains(&keep) {
        return Err(invalid(format!(
            "keep_releases must be between 1 and {MAX_KEEP_RELEASES}"
        )));
    }
    Ok(keep)
}

fn validate_chunked_install_above(bytes: u64) -> Result<u64, ParentError> {
    if bytes > MAX_CHUNKED_INSTALL_ABOVE {
        return Err(invalid(format!(
            "chunked_install_above must be at most {MAX_CHUNKED_INSTALL_ABOVE} bytes"
        )));
    }
    Ok(bytes)
}

fn validate_cycles_policy(p: shared::parent::CyclesPolicy) -> Result<CyclesPolicy, ParentError> {
    if p.margin.max(p.max_top_up_per_child) > MAX_CYCLES_PER_CHILD {
        return Err(invalid(format!(
            "margin and max_top_up_per_child must be at most {MAX_CYCLES_PER_CHILD}"
        )));
    }
    Ok(CyclesPolicy {
        margin: p.margin,
        max_top_up_per_child: p.max_top_up_per_child,
        parent_reserve: p.parent_reserve,
    })
}

fn cycles_policy_view(p: &CyclesPolicy) -> shared::parent::CyclesPolicy {
    shared::parent::CyclesPolicy {
        margin: p.margin,
        max_top_up_per_child: p.max_top_up_per_child,
        parent_reserve: p.parent_reserve,
    }
}

fn validate_cycles(cycles: &Nat) -> Result<u128, ParentError> {
    match u128::try_from(cycles.0.clone()) {
        Ok(c) if c <= MAX_CYCLES_PER_CHILD => Ok(c),
        _ => Err(invalid(format!(
            "cycles per child must be at most {MAX_CYCLES_PER_CHILD}"
        ))),
    }
}

fn validate_extra_controllers(self_id: Principal, list: Vec<Principal>) -> Result<Vec<Principal>, ParentError> {
    let mut list: Vec<Principal> = list.into_iter().filter(|p| *p != self_id).collect();
    list.sort();
    list.dedup();
    if list.len() > MAX_EXTRA_CONTROLLERS {
        return Err(invalid(format!("at most {MAX_EXTRA_CONTROLLERS} extra controllers")));
    }
    if list.contains(&Principal::anonymous()) || list.contains(&Principal::management_canister()) {
        return Err(invalid(
            "extra controllers cannot include the anonymous principal or the management canister",
        ));
    }
    Ok(list)
}

/// Applies an init/upgrade argument. All fields are validated before any is written.
pub fn apply_arg(s: &mut State, arg: ParentArg, self_id: Principal) -> Result<(), ParentError> {
    let admins = arg.admins.map(validate_admins).transpose()?;
    let k = arg.concurrency.map(validate_concurrency).transpose()?;
    let cycles = arg.cycles_per_child.as_ref().map(validate_cycles).transpose()?;
    let extra = arg
        .extra_controllers
        .map(|l| validate_extra_controllers(self_id, l))
        .transpose()?;
    let keep = arg.keep_releases.map(validate_keep_releases).transpose()?;
    let snapshots = arg.snapshot_before_upgrade.map(policy_of);
    let gates = arg.gates.map(validate_gates).transpose()?;
    let chunked_above = arg
        .chunked_install_above
        .map(validate_chunked_install_above)
        .transpose()?;
    let cycles_policy = arg.cycles.map(validate_cycles_policy).transpose()?;
    s.update_settings(|st| {
        if let Some(a) = admins {
            st.admins = a;
        }
        if let Some(k) = k {
            st.concurrency = k;
        }
        if let Some(c) = cycles {
            st.cycles_per_child = c;
        }
        if let Some(e) = extra {
            st.extra_controllers = e;
        }
        if let Some(keep) = keep {
            st.keep_releases = keep;
        }
        if let Some(policy) = snapshots {
            st.snapshot_before_upgrade = policy;
        }
        if let Some(gates) = gates {
            st.gates = gates;
        }
        if let Some(bytes) = chunked_above {
            st.chunked_install_above = bytes;
        }
        if let Some(policy) = cycles_policy {
            st.cycles = policy;
        }
    });
    Ok(())
}

pub fn set_admins(s: &mut State, admins: Vec<Principal>) -> Result<(), ParentError> {
    let admins = validate_admins(admins)?;
    s.update_settings(|st| st.admins = admins);
    Ok(())
}

/// Sets K. 0 pauses: nothing new starts, operations under way finish, all state is kept.
pub fn set_concurrency(s: &mut State, k: u32) -> Result<(), ParentError> {
    let k = validate_concurrency(k)?;
    s.update_settings(|st| st.concurrency = k);
    Ok(())
}

pub fn set_cycles_per_child(s: &mut State, cycles: Nat) -> Result<(), ParentError> {
    let c = validate_cycles(&cycles)?;
    s.update_settings(|st| st.cycles_per_child = c);
    Ok(())
}

pub fn set_extra_controllers(s: &mut State, self_id: Principal, list: Vec<Principal>) -> Result<(), ParentError> {
    let list = validate_extra_controllers(self_id, list)?;
    s.update_settings(|st| st.extra_controllers = list);
    Ok(())
}

pub fn settings_view(s: &Settings) -> shared::parent::Settings {
    shared::parent::Settings {
        admins: s.admins.clone(),
        concurrency: s.concurrency,
        cycles_per_child: Nat::from(s.cycles_per_child),
        extra_controllers: s.extra_controllers.clone(),
        keep_releases: s.keep_releases,
        snapshot_before_upgrade: policy_view(s.snapshot_before_upgrade),
        gates: gates_view(&s.gates),
        chunked_install_above: s.chunked_install_above,
        cycles: cycles_policy_view(&s.cycles),
    }
}

fn policy_view(p: SnapshotPolicy) -> shared::parent::SnapshotPolicy {
    match p {
        SnapshotPolicy::Off => shared::parent::SnapshotPolicy::Off,
        SnapshotPolicy::Canaries => shared::parent::SnapshotPolicy::Canaries,
        SnapshotPolicy::All => shared::parent::SnapshotPolicy::All,
    }
}

fn policy_of(p: shared::parent::SnapshotPolicy) -> SnapshotPolicy {
    match p {
        shared::parent::SnapshotPolicy::Off => SnapshotPolicy::Off,
        shared::parent::SnapshotPolicy::Canaries => SnapshotPolicy::Canaries,
        shared::parent::SnapshotPolicy::All => SnapshotPolicy::All,
    }
}

/// Sets how children are kept able to pay for their install (from the next check on).
pub fn set_cycles_policy(s: &mut State, policy: shared::parent::CyclesPolicy) -> Result<(), ParentError> {
    let policy = validate_cycles_policy(policy)?;
    s.update_settings(|st| st.cycles = policy);
    Ok(())
}

/// Sets the module size above which children are installed from the chunk store (from the next operation on).
pub fn set_chunked_install_above(s: &mut State, bytes: u64) -> Result<(), ParentError> {
    let bytes = validate_chunked_install_above(bytes)?;
    s.update_settings(|st| st.chunked_install_above = bytes);
    Ok(())
}

/// Sets whether rollouts snapshot each child before upgrading it (from the next operation on).
pub fn set_snapshot_policy(s: &mut State, policy: shared::parent::SnapshotPolicy) {
    s.update_settings(|st| st.snapshot_before_upgrade = policy_of(policy));
}

/// Longest health method name.
pub const MAX_METHOD_NAME: usize = 100;
/// Longest bake.
pub const MAX_BAKE_SECS: u64 = 7 * 24 * 3600;

fn validate_share(what: &str, share: shared::parent::Share) -> Result<Share, ParentError> {
    match share {
        shared::parent::Share::Count(n) => Ok(Share::Count(n)),
        shared::parent::Share::PerMille(p) if p <= 1000 => Ok(Share::PerMille(p)),
        shared::parent::Share::PerMille(_) => Err(invalid(format!("{what}: a per mille is at most 1000"))),
    }
}

fn validate_gates(g: RolloutGates) -> Result<Gates, ParentError> {
    if g.health_method.is_empty() || g.health_method.len() > MAX_METHOD_NAME {
        return Err(invalid(format!("health_method must be 1 to {MAX_METHOD_NAME} bytes")));
    }
    if g.bake_secs > MAX_BAKE_SECS {
        return Err(invalid(format!("bake_secs must be at most {MAX_BAKE_SECS}")));
    }
    Ok(Gates {
        canary: g.canary.map(|c| validate_share("canary", c)).transpose()?,
        bake_secs: g.bake_secs,
        health_method: g.health_method,
        halt_after: g.halt_after.map(|h| validate_share("halt_after", h)).transpose()?,
    })
}

fn share_view(s: Share) -> shared::parent::Share {
    match s {
        Share::Count(n) => shared::parent::Share::Count(n),
        Share::PerMille(p) => shared::parent::Share::PerMille(p),
    }
}

pub fn gates_view(g: &Gates) -> RolloutGates {
    RolloutGates {
        canary: g.canary.map(share_view),
        bake_secs: g.bake_secs,
        health_method: g.health_method.clone(),
        halt_after: g.halt_after.map(share_view),
    }
}

/// Sets how rollouts are gated, from the next rollout on (the current one keeps its canaries).
pub fn set_rollout_gates(s: &mut State, gates: RolloutGates) -> Result<(), ParentError> {
    let gates = validate_gates(gates)?;
    s.update_settings(|st| st.gates = gates);
    Ok(())
}

/// Nothing new starts until `resume_rollout`; operations under way finish. Idempotent.
pub fn pause_rollout(s: &mut State) -> Result<(), ParentError> {
    rollout::pause(s);
    Ok(())
}

/// Lifts a pause and a halt. Idempotent.
pub fn resume_rollout(s: &mut State) -> Result<(), ParentError> {
    rollout::resume(s);
    Ok(())
}

/// Queued children go back to idle; operations under way finish. Idempotent.
pub fn abort_rollout(s: &mut State, now: u64) -> Result<(), ParentError> {
    rollout::abort(s, now);
    Ok(())
}

/// Most children one `restore_snapshots` call names.
pub const MAX_RESTORE_PER_CALL: usize = 1_000;

/// Restores children from the snapshots the parent took before upgrading them: each is stopped, its snapshot loaded,
/// started and confirmed on the snapshot's release. This loses every write made since the snapshot. Pending upgrades
/// are dropped (a restore usually answers a bad release). The fleet's target does not change. Validated in full
/// before anything changes. Returns the id of the restoring rollout.
pub fn restore_snapshots(s: &mut State, target: RestoreTarget, by: Principal, now: u64) -> Result<u64, ParentError> {
    match target {
        RestoreTarget::Rollout(id) => {
            if id == 0 || id > s.rollout().id {
                return Err(invalid(format!("no rollout {id}")));
            }
            let rollout = rollout::new_restore(s, now, Some(id));
            Ok(started_by(s, by, rollout))
        }
        RestoreTarget::Children(ids) => {
            if ids.is_empty() || ids.len() > MAX_RESTORE_PER_CALL {
                return Err(invalid(format!("name between 1 and {MAX_RESTORE_PER_CALL} children")));
            }
            let mut entries = Vec::with_capacity(ids.len());
            for id in ids {
                let entry = s.child(&id).ok_or(ParentError::UnknownChild { canister_id: id })?;
                if let Phase::InFlight(op) = &entry.phase {
                    return Err(ParentError::ChildBusy {
                        canister_id: id,
                        step: op.step.into(),
                    });
                }
                if entry.snapshot.is_none() {
                    return Err(ParentError::NoSnapshot { canister_id: id });
                }
                entries.push((id, entry));
            }
            let rollout = {
                let id = rollout::new_restore(s, now, None);
                started_by(s, by, id)
            };
            for (id, entry) in entries {
                rollout::queue_restore(s, id, entry, now);
            }
            Ok(rollout)
        }
    }
}

// --- rollout control -------------------------------------------------------------------------------------------

/// Re-plans the current release over the whole registry (children not on it, and failed ones). Returns the rollout id.
pub fn start_rollout(s: &mut State, by: Principal, now: u64) -> u64 {
    let id = rollout::new_rollout(s, now, s.target(), false);
    started_by(s, by, id)
}

/// Records who started the rollout `id`, and passes `id` through.
fn started_by(s: &mut State, by: Principal, id: u64) -> u64 {
    s.update_rollout(|r| r.started_by = Some(by));
    id
}

/// Starts a rollout that trusts no registry entry: every child is re-checked with `canister_status`, children running
/// the release are left alone (`verified`), any other is upgraded. Returns the rollout id.
pub fn verify_fleet(s: &mut State, by: Principal, now: u64) -> u64 {
    let id = rollout::new_rollout(s, now, s.target(), true);
    started_by(s, by, id)
}

/// Makes a stored release the fleet's target and starts rolling it out (an upgrade, so every child keeps its data;
/// rolling back is `rollout_release` of the previous release). Returns the rollout id.
pub fn rollout_release(s: &mut State, hash: Vec<u8>, by: Principal, now: u64) -> Result<u64, ParentError> {
    let target = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| invalid("a release hash is 32 bytes"))?;
    if !s.is_shipped(&target) {
        return Err(ParentError::UnknownRelease { hash });
    }
    if s.module(&target).is_none() {
        return Err(ParentError::ReleaseNotStored { hash });
    }
    let id = rollout::new_rollout(s, now, target, false);
    Ok(started_by(s, by, id))
}

/// Sets R, the number of recent releases whose modules the store keeps, and drops what falls outside it.
pub fn set_keep_releases(s: &mut State, keep: u32) -> Result<(), ParentError> {
    let keep = validate_keep_releases(keep)?;
    s.update_settings(|st| st.keep_releases = keep);
    s.prune_releases();
    Ok(())
}

/// Re-queues failed children (at most `MAX_RETRY_PER_CALL`). Returns how many.
pub fn retry_failed(s: &mut State, now: u64) -> u64 {
    rollout::requeue_failed(s, now, MAX_RETRY_PER_CALL)
}

/// Queues one child for an operation with `options` (that operation only): a failed or outdated child, or one
/// already queued (its options are replaced). Refused for a child with an operation under way (`ChildBusy`) and for
/// one the registry has on the release (nothing to retry; `verify_fleet` re-checks such children). Returns the
/// rollout id.
pub fn retry_child(s: &mut State, id: Principal, options: RetryOptions, now: u64) -> Result<u64, ParentError> {
    let entry = s.child(&id).ok_or(ParentError::UnknownChild { canister_id: id })?;
    match &entry.phase {
        Phase::InFlight(op) => {
            return Err(ParentError::ChildBusy {
                canister_id: id,
                step: op.step.into(),
            })
        }
        Phase::Idle if s.target_is(entry.installed_hash.as_deref()) => {
            return Err(invalid(format!("{id} already runs the release")))
        }
        Phase::Idle | Phase::Pending | Phase::Failed => {}
    }
    let upgrade = UpgradeOptions {
        restore: false,
        skip_pre_upgrade: options.skip_pre_upgrade.unwrap_or(false),
    };
    Ok(rollout::requeue_child(s, id, upgrade, now))
}

// --- fleet membership ------------------------------------------------------------------------------------------

/// Drops a child from the registry (the canister itself is left alone). Refused while an operation holds its lock.
/// The rollout ends if that child was the last work it had.
pub fn remove_child(s: &mut State, id: Principal, now: u64) -> Result<(), ParentError> {
    let entry = s.child(&id).ok_or(ParentError::UnknownChild { canister_id: id })?;
    if let Phase::InFlight(op) = &entry.phase {
        return Err(ParentError::ChildBusy {
            canister_id: id,
            step: op.step.into(),
        });
    }
    s.remove_child(&id);
    rollout::after_removal(s, now);
    Ok(())
}

fn check_registrable(s: &State, self_id: Principal, id: Principal) -> Result<(), ParentError> {
    if id == self_id || id == Principal::management_canister() || id == Principal::anonymous() {
        return Err(invalid(format!("{id} cannot be a child")));
    }
    if s.child(&id).is_some() {
        return Err(ParentError::AlreadyRegistered { canister_id: id });
    }
    Ok(())
}

/// Adopts an existing canister: checks with `canister_status` that the parent controls it and that it runs a release
/// this parent has shipped (or no module at all), records its module hash, and queues it if it does not run the
/// release. With `force`, any module is adopted (see `RegisterOptions`).
pub async fn register_child<I: Ic>(ic: &I, id: Principal, options: RegisterOptions) -> Result<ChildInfo, ParentError> {
    let self_id = ic.self_id();
    // Prepare: validate (nothing written).
    read_state(|s| check_registrable(s, self_id, id))?;
    // Await: canister_status is answered only to controllers (unless the child made its status public, in which
    // case the controller list in the reply decides).
    let status = ic.status(id).await.map_err(|e: CallError| {
        if e.is_not_controller() {
            ParentError::NotController { canister_id: id }
        } else {
            e.into()
        }
    })?;
    if status.controllers.as_ref().is_some_and(|c| !c.contains(&self_id)) {
        return Err(ParentError::NotController { canister_id: id });
    }
    if let Some(hash) = &status.module_hash {
        let shipped = read_state(|s| s.is_shipped(hash));
        if !shipped && options.force != Some(true) {
            return Err(ParentError::UnknownModule {
                canister_id: id,
                module_hash: hash.clone(),
            });
        }
    }
    // Commit: validate again (another call may have registered it meanwhile), then record.
    let now = ic.now();
    let info = mutate_state(|s| {
        check_registrable(s, self_id, id)?;
        let entry = rollout::adopt_child(s, id, status.module_hash, now);
        Ok::<_, ParentError>(child_info(s, id, &entry))
    })?;
    if info.state == shared::parent::ChildState::Pending {
        ic.schedule_tick(Duration::ZERO);
    }
    Ok(info)
}

/// Creates `n` children concurrently: `create_canister` (controllers: the parent plus the extra controllers, with the
/// configured cycles), then `install_code` (install mode) of the embedded release with `ChildInitArg { parent }`.
pub async fn create_children<I: Ic + Clone + 'static>(
    ic: &I,
    n: u32,
    spec: Option<ChildSpec>,
) -> Result<CreateChildrenResult, ParentError> {
    if n == 0 || n > MAX_CREATE_PER_CALL {
        return Err(invalid(format!(
            "the number of children must be between 1 and {MAX_CREATE_PER_CALL}"
        )));
    }
    let self_id = ic.self_id();
    // Prepare: read the settings (nothing written).
    let (extra, default_cycles) =
        read_state(|s| (s.settings().extra_controllers.clone(), s.settings().cycles_per_child));
    let cycles = match spec.and_then(|s| s.cycles) {
        Some(c) => validate_cycles(&c)?,
        None => default_cycles,
    };
    let mut controllers = vec![self_id];
    controllers.extend(extra.into_iter().filter(|p| *p != self_id));

    let futures = (0..n).map(|_| create_one(ic, controllers.clone(), cycles)).collect();
    let results = driver::join_all(futures).await;

    let mut created = Vec::new();
    let mut error = None;
    for r in results {
        match r {
            Ok(id) => created.push(id),
            Err(e) => {
                error.get_or_insert(ParentError::from(e));
            }
        }
    }
    if created.is_empty() {
        return Err(error.expect("n > 0, so some result is an error"));
    }
    let created = read_state(|s| {
        created
            .iter()
            .filter_map(|id| s.child(id).map(|e| child_info(s, *id, &e)))
            .collect()
    });
    Ok(CreateChildrenResult { created, error })
}

async fn create_one<I: Ic + Clone + 'static>(
    ic: &I,
    controllers: Vec<Principal>,
    cycles: u128,
) -> Result<Principal, CallError> {
    // Await create_canister: nothing is written before it, so a failure leaves no trace.
    let id = ic.create(controllers, cycles).await?;
    // Commit: the new child is recorded (locked at InstallNew) before the install goes out, so a parent upgrade in
    // between finds it and re-checks it.
    let now = ic.now();
    let launch = mutate_state(|s| rollout::adopt_new_child(s, id, now));
    driver::drive_op(ic, launch).await;
    Ok(id)
}

#[cfg(test)]
mod tests;
