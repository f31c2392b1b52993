//! Typed calls to a child canister: one method per Candid method of `child/child.did`.
//!
//! Updates take the sender and return the method's `Result`; a reject panics with the method name (use
//! [`Target::try_update`] to see rejects). Queries are sent by the anonymous principal except `audit_log`, which
//! is for the parent and controllers only and takes a sender.

use candid::Principal;
use replica::Replica;

use crate::call::Target;
use shared::child::{
    AuditEntry, ChildError, DataChecksum, FillArg, Health, ListMembersArg, Member, MemberInput, MemberPage,
};

/// The child canister `id` on `replica`. Untyped calls (`try_update`, `update`, `try_query`, `query`) come from
/// [`Target`], which it dereferences to.
#[derive(Clone, Copy)]
pub struct ChildApi<'a>(Target<'a>);

impl<'a> std::ops::Deref for ChildApi<'a> {
    type Target = Target<'a>;

    fn deref(&self) -> &Target<'a> {
        &self.0
    }
}

impl<'a> ChildApi<'a> {
    pub fn new(replica: &'a Replica, id: Principal) -> Self {
        Self(Target {
            replica,
            id,
            name: "child",
        })
    }

    // ---- updates ----

    pub fn add_member(&self, sender: Principal, id: &str, input: MemberInput) -> Result<Member, ChildError> {
        self.update(sender, "add_member", (id, input))
    }

    pub fn update_member(&self, sender: Principal, id: &str, input: MemberInput) -> Result<Member, ChildError> {
        self.update(sender, "update_member", (id, input))
    }

    pub fn remove_member(&self, sender: Principal, id: &str) -> Result<Member, ChildError> {
        self.update(sender, "remove_member", (id,))
    }

    pub fn set_parent(&self, sender: Principal, parent: Principal) -> Result<(), ChildError> {
        self.update(sender, "set_parent", (parent,))
    }

    pub fn admin_fill(&self, sender: Principal, arg: FillArg) -> Result<u64, ChildError> {
        self.update(sender, "admin_fill", (arg,))
    }

    // ---- queries ----

    pub fn get_member(&self, id: &str) -> Result<Member, ChildError> {
        self.query("get_member", (id,))
    }

    pub fn list_members(&self, arg: ListMembersArg) -> MemberPage {
        self.query("list_members", (arg,))
    }

    pub fn member_count(&self) -> u64 {
        self.query("member_count", ())
    }

    pub fn version(&self) -> String {
        self.query("version", ())
    }

    pub fn health(&self) -> Health {
        self.query("health", ())
    }

    pub fn request_count(&self) -> u64 {
        self.query("request_count", ())
    }

    pub fn data_checksum(&self) -> DataChecksum {
        self.query("data_checksum", ())
    }

    pub fn audit_log(&self, sender: Principal, start: u64, limit: u32) -> Result<Vec<AuditEntry>, ChildError> {
        self.try_query(sender, "audit_log", (start, limit))
            .unwrap_or_else(|e| panic!("child {}.audit_log was rejected: {e}", self.id))
    }
}
