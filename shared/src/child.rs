//! Types of the child canister interface.

use candid::{CandidType, Principal};
use serde::{Deserialize, Serialize};

/// Argument of the child's `init`. The parent passes itself when it creates a child.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildInitArg {
    /// The principal allowed to make admin calls besides the child's controllers.
    pub parent: Principal,
}

/// Argument of the child's `post_upgrade` (`opt ChildUpgradeArg`): `None` keeps the stored config.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildUpgradeArg {
    /// A new parent principal, if the child moves to another parent.
    pub parent: Option<Principal>,
}
