//! Types of the child canister interface. Every `Principal` field decodes through [`crate::principal`], which keeps
//! principal text code out of the canisters.

use candid::{CandidType, Principal};
use serde::{Deserialize, Serialize};

/// Longest member id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Longest member name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest member value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Most entries one `list_members` or `audit_log` call returns (a full page of members stays under 0.5 MiB).
pub const MAX_PAGE_SIZE: u32 = 100;
/// Most members one `admin_fill` call writes: at most about 4 MiB of values, far below the 40 B instruction limit.
pub const MAX_FILL_COUNT: u32 = 1000;
/// Digits of the number `admin_fill` appends to its prefix to form member ids.
pub const FILL_ID_DIGITS: usize = 6;

/// Argument of the child's `init`. The parent passes itself when it creates a child.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildInitArg {
    /// The principal allowed to make admin calls besides the child's controllers.
    #[serde(deserialize_with = "crate::principal::deserialize")]
    pub parent: Principal,
}

/// Argument of the child's `post_upgrade` (`opt ChildUpgradeArg`): `None` keeps the stored config.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildUpgradeArg {
    /// A new parent principal, if the child moves to another parent.
    #[serde(default, deserialize_with = "crate::principal::deserialize_opt")]
    pub parent: Option<Principal>,
}

/// The writable fields of a member.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemberInput {
    /// Display name, at most `MAX_NAME_BYTES` bytes.
    pub name: String,
    /// Opaque payload, at most `MAX_VALUE_BYTES` bytes.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A member as the child returns it.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Unique key, 1 to `MAX_ID_BYTES` bytes; members are ordered by it.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Opaque payload.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// When the member was added (or last written by `admin_fill`), in nanoseconds since the epoch.
    pub created_at: u64,
    /// When the member was last updated, if ever.
    pub updated_at: Option<u64>,
}

/// Argument of `list_members`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ListMembersArg {
    /// List members whose id sorts after this one; `None` starts at the first member.
    pub start_after: Option<String>,
    /// Page size; 0 or anything above `MAX_PAGE_SIZE` means `MAX_PAGE_SIZE`.
    pub limit: u32,
}

/// One page of members in id order.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemberPage {
    /// The members of this page.
    pub members: Vec<Member>,
    /// Pass as `start_after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Argument of `admin_fill`.
///
/// Writes members `{prefix}{i:06}` for `i` in `0..count`, with name equal to the id and a value of `value_size`
/// bytes all equal to `i % 256`. Existing members with those ids are replaced. `admin_fill` returns the number of
/// members stored afterwards.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FillArg {
    /// Members to write, 1 to `MAX_FILL_COUNT`.
    pub count: u32,
    /// Bytes per value, at most `MAX_VALUE_BYTES`.
    pub value_size: u32,
    /// Id prefix, at most `MAX_ID_BYTES - FILL_ID_DIGITS` bytes.
    pub prefix: String,
}

/// Deterministic digest of everything written through the child's interface, in every stable structure: members,
/// the parent in the config, the total-writes counter, and the audit log. It proves that no data was lost across an
/// upgrade, so it leaves out only what an upgrade changes by design: the config's schema version and the audit
/// entries of installs and upgrades.
///
/// `sha256` is SHA-256 over
/// - for every member in ascending id order, `bytes(id) ‖ bytes(name) ‖ bytes(value) ‖ u64(created_at) ‖
///   opt(updated_at)`;
/// - then `bytes("config") ‖ opt(parent)` with the parent as `bytes(principal)`;
/// - then `bytes("writes") ‖ u64(total_writes)`;
/// - then `bytes("audit")` and, for every audit entry in log order other than `Install` and `Upgrade`,
///   `u64(time) ‖ bytes(caller) ‖ opt(id) ‖ kind`, where `kind` is `bytes(<variant name>)` followed by its fields in
///   declaration order (`bytes` for text and principals, `u64` for numbers);
///
/// where `u64(n)` is `n` as 8 big-endian bytes, `bytes(b)` is `u64(len(b)) ‖ b`, `opt(None)` is `0x00` and
/// `opt(Some(x))` is `0x01 ‖ x` (`x` as `u64` for numbers, as `bytes` otherwise).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DataChecksum {
    /// Number of members hashed.
    pub members: u64,
    /// Number of audit entries hashed (every entry but installs and upgrades).
    pub audit_entries: u64,
    /// The total-writes counter.
    pub total_writes: u64,
    /// The digest, 32 bytes.
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
}

/// What the child reports about itself.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The child's Cargo package version (with `-next` for the rehearsal build).
    pub version: String,
    /// Layout version of the stable memory.
    pub schema_version: u32,
    /// The principal allowed to make admin calls besides the controllers.
    #[serde(default, deserialize_with = "crate::principal::deserialize_opt")]
    pub parent: Option<Principal>,
    /// Members stored.
    pub member_count: u64,
    /// Entries in the audit log.
    pub audit_log_length: u64,
    /// Successful write calls ever (add, update, remove, fill, set_parent).
    pub total_writes: u64,
    /// Update calls handled since the last install or upgrade (kept on the heap, so it resets on upgrade).
    pub request_count: u64,
    /// Time of the last heartbeat timer tick since the last install or upgrade, in nanoseconds since the epoch.
    pub last_tick: Option<u64>,
    /// Size of the stable memory in 64 KiB pages.
    pub stable_memory_pages: u64,
    /// Size of the stable memory in bytes.
    pub stable_memory_bytes: u64,
}

/// What an audit entry records.
///
/// The child also stores this type in stable memory (CBOR by variant and field name): rename nothing, and remember
/// that a build without a new variant cannot read entries that use it.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum AuditKind {
    /// The code was installed; `version` is the installed version.
    Install { version: String },
    /// The code was upgraded (or downgraded); `version` is the new version.
    Upgrade { version: String },
    /// A member was added.
    MemberAdded,
    /// A member was updated.
    MemberUpdated,
    /// A member was removed.
    MemberRemoved,
    /// `admin_fill` wrote `count` members with ids starting with `prefix`.
    Filled { prefix: String, count: u32 },
    /// The parent was changed to `parent`.
    ParentSet {
        #[serde(deserialize_with = "crate::principal::deserialize")]
        parent: Principal,
    },
}

/// One entry of the child's append-only audit log.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// What happened.
    pub kind: AuditKind,
    /// The member concerned, for member events.
    pub id: Option<String>,
    /// When it happened, in nanoseconds since the epoch.
    pub time: u64,
    /// Who caused it (the installer, for install and upgrade).
    #[serde(deserialize_with = "crate::principal::deserialize")]
    pub caller: Principal,
}

/// Expected failures of child calls. A call that returns one of these changed nothing.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChildError {
    /// No member has this id.
    NotFound { id: String },
    /// A member with this id already exists.
    AlreadyExists { id: String },
    /// `field` is `actual` long but at most `max` is allowed (bytes, or members for `count`).
    TooLong { field: String, max: u64, actual: u64 },
    /// The argument is malformed, for the reason given.
    InvalidArgument { reason: String },
    /// Only the parent or a controller may make this call.
    NotAllowed {
        #[serde(deserialize_with = "crate::principal::deserialize")]
        caller: Principal,
    },
}

impl std::fmt::Display for ChildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound { id } => write!(f, "no member with id {id:?}"),
            Self::AlreadyExists { id } => write!(f, "a member with id {id:?} already exists"),
            Self::TooLong { field, max, actual } => {
                write!(f, "{field} is {actual} long, at most {max} allowed")
            }
            Self::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            Self::NotAllowed { caller } => {
                write!(f, "{caller} is neither the parent nor a controller")
            }
        }
    }
}

impl std::error::Error for ChildError {}
