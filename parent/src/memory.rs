//! Stable-memory layout of the parent.
//!
//! All state lives in stable structures behind one `MemoryManager`; the heap holds nothing that must survive an
//! upgrade, so `pre_upgrade` saves nothing (it only refuses unsafe upgrades) and there is no whole-heap save or restore
//! (clippy.toml bans those calls).
//!
//! ```text
//! stable memory (MemoryManager, default 8 MiB buckets)
//! ├── 0 SETTINGS   StableCell<Settings>                     admins, K, cycles, extra controllers, R, snapshot policy
//! ├── 1 META       StableCell<Meta>                         epoch (bumped by every init/post_upgrade), next op id,
//! │                                                         progress of the RUNNING index and the epoch that kept it
//! ├── 2 ROLLOUT    StableCell<Rollout>                      the current rollout: release, times, planner cursor
//! ├── 3 CHILDREN   StableBTreeMap<Principal, StoredChild>   the fleet registry (a ChildEntry's CBOR per child)
//! ├── 4 RELEASES   StableBTreeMap<[u8; 32], ReleaseEntry>   every release the parent has carried, by hash
//! ├── 5 PENDING    StableBTreeMap<Principal, ()>            index: children queued for an upgrade
//! ├── 6 IN_FLIGHT  StableBTreeMap<Principal, LockMark>      index: locked children (epoch + step start time)
//! ├── 7 FAILED     StableBTreeMap<Principal, ()>            index: children whose last operation failed
//! ├── 8 MODULES    StableBTreeMap<([u8; 32], u32), Vec<u8>>  release store: (hash, chunk index) -> 1 MiB chunks
//! ├── 9 RUNNING    StableBTreeMap<[u8; 32], u64>            index: children per installed module hash
//! ├── 10 HISTORY   StableBTreeMap<u64, RolloutRecord>       ended rollouts by id, the last `gates::HISTORY_KEPT`
//! └── 11 EVENTS    StableBTreeMap<(Principal, u64), ChildEvent>  per child, its last operations by lock id
//! ```
//!
//! Rules: ids are append-only and never reused or renumbered. A retired id stays below as a comment so nobody takes it
//! again: `BTreeMap::init`/`Cell::init` silently create an empty structure when the magic bytes do not match, so a
//! reused id would overwrite data instead of failing. Each id belongs to exactly one structure.
//!
//! Retired ids: none yet.

use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::DefaultMemoryImpl;

/// A virtual memory handed to one stable structure.
pub type Memory = VirtualMemory<DefaultMemoryImpl>;

pub const SETTINGS: MemoryId = MemoryId::new(0);
pub const META: MemoryId = MemoryId::new(1);
pub const ROLLOUT: MemoryId = MemoryId::new(2);
pub const CHILDREN: MemoryId = MemoryId::new(3);
pub const RELEASES: MemoryId = MemoryId::new(4);
pub const PENDING: MemoryId = MemoryId::new(5);
pub const IN_FLIGHT: MemoryId = MemoryId::new(6);
pub const FAILED: MemoryId = MemoryId::new(7);
pub const MODULES: MemoryId = MemoryId::new(8);
pub const RUNNING: MemoryId = MemoryId::new(9);
pub const HISTORY: MemoryId = MemoryId::new(10);
pub const EVENTS: MemoryId = MemoryId::new(11);
// Next free id: 12.

/// The manager over the canister's stable memory (on wasm) or a heap vector (natively, for tests).
pub fn manager(memory: DefaultMemoryImpl) -> MemoryManager<DefaultMemoryImpl> {
    MemoryManager::init(memory)
}
