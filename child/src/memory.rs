//! Stable memory layout.
//!
//! The whole stable memory belongs to one `MemoryManager`; nothing else may read or write it (no whole-heap
//! save/restore, no raw stable writes, no `pre_upgrade` serialisation; clippy.toml bans those calls). Each structure owns one virtual memory:
//!
//! | id | structure                                        | value encoding      |
//! |----|--------------------------------------------------|---------------------|
//! | 0  | members: `StableBTreeMap<String, MemberRecord>`  | CBOR, by field name |
//! | 1  | config: `StableCell<Config>`                     | CBOR, by field name |
//! | 2  | audit log index: `StableLog<AuditRecord>`        | (log index)         |
//! | 3  | audit log data                                   | CBOR, by field name |
//! | 4  | total writes: `StableCell<u64>`                  | 8 bytes, fixed      |
//!
//! Ids are append-only: a new structure takes the next unused id, and a retired id stays listed below as a comment
//! so it is never reused (opening a structure on memory written by another one silently wipes it).

use ic_stable_structures::memory_manager::MemoryId;

/// Version of this layout, stored in the config cell. Bump it only for a change that older builds cannot read;
/// adding an optional field to a CBOR record is not such a change.
pub const SCHEMA_VERSION: u32 = 1;

pub const MEMBERS_MEMORY_ID: MemoryId = MemoryId::new(0);
pub const CONFIG_MEMORY_ID: MemoryId = MemoryId::new(1);
pub const AUDIT_INDEX_MEMORY_ID: MemoryId = MemoryId::new(2);
pub const AUDIT_DATA_MEMORY_ID: MemoryId = MemoryId::new(3);
pub const TOTAL_WRITES_MEMORY_ID: MemoryId = MemoryId::new(4);
// Retired ids (never reuse): none yet.
