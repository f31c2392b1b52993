//! Which stable memory this child may open: none yet, or a `MemoryManager` layout it knows.
//!
//! An upgrade keeps stable memory, so installing this child over another module would open that module's stable
//! memory. `MemoryManager::init` and the structures' `init` silently start afresh on bytes they do not recognise, so
//! the child would report success while the data is gone. `post_upgrade` checks first and traps instead: the upgrade
//! fails and the canister keeps its module and every byte.
//!
//! Known: a `MemoryManager` header (magic `MGR`, layout version 1) in which every memory this child owns is either
//! empty or starts with the magic of the structure `memory.rs` assigns to it. Memories the child does not own are
//! left untouched, so data there (a later release's, or another library's) is not at risk.

use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
use ic_stable_structures::Memory;

use crate::memory::{
    AUDIT_DATA_MEMORY_ID, AUDIT_INDEX_MEMORY_ID, CONFIG_MEMORY_ID, MEMBERS_MEMORY_ID, TOTAL_WRITES_MEMORY_ID,
};

/// ic-stable-structures 0.7: the `MemoryManager` header's magic and layout version.
const MANAGER_MAGIC: &[u8; 3] = b"MGR";
const MANAGER_LAYOUT_VERSION: u8 = 1;

/// The structure each owned memory holds, by the magic its header starts with (ic-stable-structures 0.7).
const OWNED: [(MemoryId, &str, &[u8; 3]); 5] = [
    (MEMBERS_MEMORY_ID, "members (StableBTreeMap)", b"BTR"),
    (CONFIG_MEMORY_ID, "config (StableCell)", b"SCL"),
    (AUDIT_INDEX_MEMORY_ID, "audit log index (StableLog)", b"GLI"),
    (AUDIT_DATA_MEMORY_ID, "audit log data (StableLog)", b"GLD"),
    (TOTAL_WRITES_MEMORY_ID, "total writes (StableCell)", b"SCL"),
];

/// Reads only. `Err` says what was found instead of a known layout.
pub fn check<M: Memory + Clone>(memory: &M) -> Result<(), String> {
    let pages = memory.size();
    if pages == 0 {
        return Ok(());
    }
    let mut header = [0u8; 4];
    memory.read(0, &mut header);
    if &header[..3] != MANAGER_MAGIC {
        return Err(format!(
            "stable memory holds {pages} pages that are not a MemoryManager layout (they start with {:02x?}); \
             this child would not see that data, so it refuses to take over this canister",
            header
        ));
    }
    if header[3] != MANAGER_LAYOUT_VERSION {
        return Err(format!(
            "stable memory holds a MemoryManager layout of version {}, this child reads version {MANAGER_LAYOUT_VERSION}",
            header[3]
        ));
    }
    // The header is known, so opening the manager only reads it.
    let manager = MemoryManager::init(memory.clone());
    for (id, name, magic) in OWNED {
        let virtual_memory = manager.get(id);
        if virtual_memory.size() == 0 {
            continue;
        }
        let mut found = [0u8; 3];
        virtual_memory.read(0, &mut found);
        if &found != magic {
            return Err(format!(
                "memory {id:?} of the stable memory should hold the {name}, but holds a structure starting with \
                 {found:02x?}: another module's layout, which this child would overwrite"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
