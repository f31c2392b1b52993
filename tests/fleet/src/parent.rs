//! Typed calls to the parent canister: one method per Candid method of `parent/parent.did`.
//!
//! Updates take the sender and return the method's `Result`; a reject (trap, decode error, ...) panics with the
//! method name. Use the `try_*` form ([`Target::try_update`]) to see rejects. Queries are sent by the anonymous
//! principal (the parent's queries are public).

use candid::{Nat, Principal};
use replica::Replica;

use crate::call::Target;
use shared::parent::{
    ChildEvent, ChildInfo, ChildSpec, CreateChildrenResult, HistoryArg, ListChildrenArg, ParentError, RegisterOptions,
    ReleaseRecord, RestoreTarget, RetryOptions, RolloutGates, RolloutRecord, RolloutStatus, Settings, SnapshotPolicy,
};
use shared::release::ReleaseInfo;

/// The parent's `MAX_CREATE_PER_CALL` (children per `create_children` call).
pub const MAX_CREATE_PER_CALL: u32 = 50;
/// Page size used by [`ParentApi::list_all_children`] (the parent caps pages itself).
pub const LIST_PAGE: u32 = 1_000;

/// The parent canister `id` on `replica`. Untyped calls (`try_update`, `update`, `try_query`, `query`) come from
/// [`Target`], which it dereferences to.
#[derive(Clone, Copy)]
pub struct ParentApi<'a>(Target<'a>);

impl<'a> std::ops::Deref for ParentApi<'a> {
    type Target = Target<'a>;

    fn deref(&self) -> &Target<'a> {
        &self.0
    }
}

impl<'a> ParentApi<'a> {
    pub fn new(replica: &'a Replica, id: Principal) -> Self {
        Self(Target {
            replica,
            id,
            name: "parent",
        })
    }

    // ---- updates ----

    pub fn create_children(
        &self,
        sender: Principal,
        n: u32,
        spec: Option<ChildSpec>,
    ) -> Result<CreateChildrenResult, ParentError> {
        self.update(sender, "create_children", (n, spec))
    }

    /// `register_child` without options (the argument is left out, as a client written before it existed sends).
    pub fn register_child(&self, sender: Principal, canister_id: Principal) -> Result<ChildInfo, ParentError> {
        self.update(sender, "register_child", (canister_id,))
    }

    pub fn register_child_with(
        &self,
        sender: Principal,
        canister_id: Principal,
        options: RegisterOptions,
    ) -> Result<ChildInfo, ParentError> {
        self.update(sender, "register_child", (canister_id, Some(options)))
    }

    pub fn remove_child(&self, sender: Principal, canister_id: Principal) -> Result<(), ParentError> {
        self.update(sender, "remove_child", (canister_id,))
    }

    pub fn retry_child(
        &self,
        sender: Principal,
        canister_id: Principal,
        options: RetryOptions,
    ) -> Result<u64, ParentError> {
        self.update(sender, "retry_child", (canister_id, options))
    }

    pub fn retry_failed(&self, sender: Principal) -> Result<u64, ParentError> {
        self.update(sender, "retry_failed", ())
    }

    pub fn start_rollout(&self, sender: Principal) -> Result<u64, ParentError> {
        self.update(sender, "start_rollout", ())
    }

    pub fn verify_fleet(&self, sender: Principal) -> Result<u64, ParentError> {
        self.update(sender, "verify_fleet", ())
    }

    pub fn rollout_release(&self, sender: Principal, hash: Vec<u8>) -> Result<u64, ParentError> {
        self.update(sender, "rollout_release", (hash,))
    }

    pub fn set_snapshot_policy(&self, sender: Principal, policy: SnapshotPolicy) -> Result<(), ParentError> {
        self.update(sender, "set_snapshot_policy", (policy,))
    }

    pub fn restore_snapshots(&self, sender: Principal, target: RestoreTarget) -> Result<u64, ParentError> {
        self.update(sender, "restore_snapshots", (target,))
    }

    pub fn set_rollout_gates(&self, sender: Principal, gates: RolloutGates) -> Result<(), ParentError> {
        self.update(sender, "set_rollout_gates", (gates,))
    }

    pub fn pause_rollout(&self, sender: Principal) -> Result<(), ParentError> {
        self.update(sender, "pause_rollout", ())
    }

    pub fn resume_rollout(&self, sender: Principal) -> Result<(), ParentError> {
        self.update(sender, "resume_rollout", ())
    }

    pub fn abort_rollout(&self, sender: Principal) -> Result<(), ParentError> {
        self.update(sender, "abort_rollout", ())
    }

    pub fn set_chunked_install_above(&self, sender: Principal, bytes: u64) -> Result<(), ParentError> {
        self.update(sender, "set_chunked_install_above", (bytes,))
    }

    pub fn set_keep_releases(&self, sender: Principal, keep: u32) -> Result<(), ParentError> {
        self.update(sender, "set_keep_releases", (keep,))
    }

    pub fn set_admins(&self, sender: Principal, admins: Vec<Principal>) -> Result<(), ParentError> {
        self.update(sender, "set_admins", (admins,))
    }

    pub fn set_concurrency(&self, sender: Principal, k: u32) -> Result<(), ParentError> {
        self.update(sender, "set_concurrency", (k,))
    }

    pub fn set_cycles_per_child(&self, sender: Principal, cycles: Nat) -> Result<(), ParentError> {
        self.update(sender, "set_cycles_per_child", (cycles,))
    }

    pub fn set_extra_controllers(&self, sender: Principal, controllers: Vec<Principal>) -> Result<(), ParentError> {
        self.update(sender, "set_extra_controllers", (controllers,))
    }

    // ---- queries ----

    pub fn rollout_history(&self, arg: HistoryArg) -> Vec<RolloutRecord> {
        self.query("rollout_history", (arg,))
    }

    pub fn child_events(&self, canister_id: Principal) -> Vec<ChildEvent> {
        self.query("child_events", (canister_id,))
    }

    pub fn rollout_status(&self) -> RolloutStatus {
        self.query("rollout_status", ())
    }

    pub fn settings(&self) -> Settings {
        self.query("settings", ())
    }

    pub fn child_release(&self) -> ReleaseInfo {
        self.query("child_release", ())
    }

    pub fn releases(&self) -> Vec<ReleaseRecord> {
        self.query("releases", ())
    }

    pub fn get_child(&self, canister_id: Principal) -> Option<ChildInfo> {
        self.query("get_child", (canister_id,))
    }

    pub fn list_children(&self, arg: ListChildrenArg) -> Vec<ChildInfo> {
        self.query("list_children", (arg,))
    }

    /// Every registered child, in principal order (all pages of `list_children`).
    pub fn list_all_children(&self) -> Vec<ChildInfo> {
        let mut all: Vec<ChildInfo> = Vec::new();
        loop {
            let page = self.list_children(ListChildrenArg {
                start_after: all.last().map(|c| c.canister_id),
                limit: LIST_PAGE,
            });
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }
}
