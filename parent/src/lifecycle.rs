//! `init`, `pre_upgrade` and `post_upgrade`. None may make calls (the IC forbids them there).
//!
//! `pre_upgrade` writes nothing (all state is in stable structures already): it only refuses an upgrade that would
//! deliver the old module's outstanding callbacks to the new one. `init` and `post_upgrade` record the embedded
//! release, mark the previous instance's operations as orphans (new epoch), and arm the tick, which makes the calls.
//! Both are O(log n) in the fleet size: no registry scan. An upgrade that does not change the child, with no rollout
//! work left, arms nothing at all, so it makes zero management calls.

use crate::admin;
use crate::driver;
use crate::ic;
use crate::rollout;
use crate::state::mutate_state;
use shared::parent::ParentArg;

/// Upgrading a canister that awaits calls delivers their callbacks to the new module, whose heap knows nothing of
/// them (ic-cdk would follow a pointer into the old heap). Stopping the parent first waits for every call to finish
/// (its calls are bounded-wait), and a stopped canister has none out, so the upgrade is refused only while the parent
/// is not stopped and calls or the rollout timers (which call the canister itself) may be out.
pub fn check_upgrade(stopped: bool, calls_out: u64, timers_armed: bool) -> Result<(), String> {
    if stopped || (calls_out == 0 && !timers_armed) {
        return Ok(());
    }
    Err(format!(
        "the parent is not stopped and has work in flight ({calls_out} management call(s) awaiting a reply{}): \
         upgrading it now would hand their callbacks to the new module. Stop it first \
         (`dfx canister stop parent` / `icp canister stop parent` waits for the calls to finish), \
         then upgrade and start it",
        if timers_armed { ", rollout timers armed" } else { "" }
    ))
}

pub fn pre_upgrade() {
    let stopped = matches!(ic_cdk::api::canister_status(), ic_cdk::api::CanisterStatusCode::Stopped);
    if let Err(e) = check_upgrade(stopped, ic::calls_out(), ic::timers_armed()) {
        ic_cdk::trap(e);
    }
}

fn initialize(arg: Option<ParentArg>) {
    let now = ic_cdk::api::time();
    let self_id = ic_cdk::api::canister_self();
    let has_work = mutate_state(|s| {
        if let Some(arg) = arg {
            // A bad argument makes the install or upgrade fail (and, for an upgrade, roll back).
            admin::apply_arg(s, arg, self_id).unwrap_or_else(|e| ic_cdk::trap(format!("invalid argument: {e}")));
        }
        rollout::on_install(s, ic_cdk::api::msg_caller(), now)
    });
    if has_work {
        driver::wake();
    }
}

pub fn init(arg: Option<ParentArg>) {
    initialize(arg)
}

/// The same as `init`: `pre_upgrade` saved nothing, since all state is in stable structures already.
pub fn post_upgrade(arg: Option<ParentArg>) {
    initialize(arg)
}

#[cfg(test)]
mod tests {
    use super::check_upgrade;

    #[test]
    fn an_upgrade_is_refused_only_while_not_stopped_with_work_in_flight() {
        assert!(check_upgrade(false, 0, false).is_ok(), "an idle running parent");
        assert!(check_upgrade(true, 3, true).is_ok(), "a stopped parent has no call out");
        let busy = check_upgrade(false, 2, false).unwrap_err();
        assert!(
            busy.contains("2 management call(s) awaiting a reply") && busy.contains("Stop it first"),
            "{busy}"
        );
        let ticking = check_upgrade(false, 0, true).unwrap_err();
        assert!(ticking.contains("rollout timers armed"), "{ticking}");
    }
}
