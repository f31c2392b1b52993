//! `init` and `post_upgrade`. Neither may make calls (the IC forbids them there): they record the embedded release,
//! mark the previous instance's operations as orphans (new epoch), and arm the tick, which makes the calls.
//!
//! Both are O(log n) in the fleet size: no registry scan. An upgrade that does not change the child, with no rollout
//! work left, arms nothing at all, so it makes zero management calls.

use crate::admin;
use crate::driver;
use crate::rollout;
use crate::state::mutate_state;
use shared::parent::ParentArg;

fn initialize(arg: Option<ParentArg>) {
    let now = ic_cdk::api::time();
    let self_id = ic_cdk::api::canister_self();
    let has_work = mutate_state(|s| {
        if let Some(arg) = arg {
            // A bad argument makes the install or upgrade fail (and, for an upgrade, roll back).
            admin::apply_arg(s, arg, self_id).unwrap_or_else(|e| ic_cdk::trap(format!("invalid argument: {e}")));
        }
        rollout::on_install(s, now)
    });
    if has_work {
        driver::wake();
    }
}

pub fn init(arg: Option<ParentArg>) {
    initialize(arg)
}

/// No `pre_upgrade`: all state is already in stable structures.
pub fn post_upgrade(arg: Option<ParentArg>) {
    initialize(arg)
}
