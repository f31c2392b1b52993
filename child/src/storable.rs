//! The records kept in stable memory and their encoding.
//!
//! Upgrade compatibility: every record is self-describing CBOR keyed by serde field names, so a build ignores fields
//! it does not know (a downgrade reading newer records) and fills missing `Option` fields with `None` (an upgrade
//! reading older records). Hence: add fields only as `Option` with `#[serde(default)]`; never rename, retype or
//! remove a field. Rewriting a record drops the fields the writing build does not know.

use candid::Principal;
use serde::{Deserialize, Serialize};
use shared::child::{AuditEntry, Member, MemberInput};

/// A member as stored; its id is the map key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub created_at: u64,
    /// Optional so that records of the first layout (name, value, created_at) still decode.
    #[serde(default)]
    pub updated_at: Option<u64>,
    /// Only in the `next` build: the version of the code that last wrote the record.
    #[cfg(feature = "next")]
    #[serde(default)]
    pub written_by: Option<String>,
}

impl MemberRecord {
    pub fn new(input: MemberInput, created_at: u64) -> Self {
        Self {
            name: input.name,
            value: input.value,
            created_at,
            updated_at: None,
            #[cfg(feature = "next")]
            written_by: Some(crate::VERSION.to_string()),
        }
    }

    pub fn updated(self, input: MemberInput, updated_at: u64) -> Self {
        Self {
            updated_at: Some(updated_at),
            ..Self::new(input, self.created_at)
        }
    }

    pub fn into_member(self, id: String) -> Member {
        Member {
            id,
            name: self.name,
            value: self.value,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Settings that survive upgrades.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The principal allowed to make admin calls besides the controllers; `None` before the first install.
    #[serde(default, deserialize_with = "shared::principal::deserialize_opt")]
    pub parent: Option<Principal>,
    /// `memory::SCHEMA_VERSION` of the last build that initialised the canister; 0 on a fresh memory.
    #[serde(default)]
    pub schema_version: u32,
}

/// An audit entry as stored: the Candid type's own serde form (see `AuditKind` in `shared`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct AuditRecord(pub AuditEntry);

shared::storable_as_cbor!(MemberRecord, Config, AuditRecord);

#[cfg(test)]
mod tests;
