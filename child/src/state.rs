//! The canister state: stable structures behind one `MemoryManager`, plus two heap-only values.
//!
//! `State` is generic over the backing memory, so tests run it on a `VectorMemory`; the canister keeps one
//! `State<DefaultMemoryImpl>` in a private thread-local reached only through `read_state` / `mutate_state`.

use std::cell::RefCell;

use candid::Principal;
use ic_stable_structures::{
    memory_manager::{MemoryManager, VirtualMemory},
    DefaultMemoryImpl, Memory, StableBTreeMap, StableCell, StableLog,
};
use shared::child::{AuditEntry, AuditKind, Health};

use crate::memory::{
    AUDIT_DATA_MEMORY_ID, AUDIT_INDEX_MEMORY_ID, CONFIG_MEMORY_ID, MEMBERS_MEMORY_ID, TOTAL_WRITES_MEMORY_ID,
};
use crate::storable::{AuditRecord, Config, MemberRecord};

const WASM_PAGE_BYTES: u64 = 64 * 1024;

type Virtual<M> = VirtualMemory<M>;

/// Who is calling and when: the only effects the logic needs, passed in so it runs natively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallContext {
    pub caller: Principal,
    pub caller_is_controller: bool,
    pub time: u64,
}

pub struct State<M: Memory + Clone> {
    stable_memory: M,
    pub(crate) members: StableBTreeMap<String, MemberRecord, Virtual<M>>,
    pub(crate) config: StableCell<Config, Virtual<M>>,
    pub(crate) audit_log: StableLog<AuditRecord, Virtual<M>, Virtual<M>>,
    pub(crate) total_writes: StableCell<u64, Virtual<M>>,
    /// Heap only: update calls handled since the last install or upgrade.
    pub(crate) request_count: u64,
    /// Heap only: time of the last heartbeat tick since the last install or upgrade.
    pub(crate) last_tick: Option<u64>,
}

impl<M: Memory + Clone> State<M> {
    /// Opens every structure on `stable_memory`, keeping what an earlier instance wrote there (what an upgrade
    /// does). The heap-only values start from zero.
    pub fn open(stable_memory: M) -> Self {
        let manager = MemoryManager::init(stable_memory.clone());
        Self {
            stable_memory,
            members: StableBTreeMap::init(manager.get(MEMBERS_MEMORY_ID)),
            config: StableCell::init(manager.get(CONFIG_MEMORY_ID), Config::default()),
            audit_log: StableLog::init(manager.get(AUDIT_INDEX_MEMORY_ID), manager.get(AUDIT_DATA_MEMORY_ID)),
            total_writes: StableCell::init(manager.get(TOTAL_WRITES_MEMORY_ID), 0),
            request_count: 0,
            last_tick: None,
        }
    }

    /// Appends an audit entry; `append_write` also counts the write.
    pub fn append_audit(&mut self, kind: AuditKind, id: Option<String>, call: &CallContext) {
        let entry = AuditEntry {
            kind,
            id,
            time: call.time,
            caller: call.caller,
        };
        self.audit_log
            .append(&AuditRecord(entry))
            .expect("stable memory is full: cannot append to the audit log");
    }

    /// Records a successful write: an audit entry and one more total write.
    pub fn append_write(&mut self, kind: AuditKind, id: Option<String>, call: &CallContext) {
        self.append_audit(kind, id, call);
        let total_writes = self.total_writes.get() + 1;
        self.total_writes.set(total_writes);
    }

    pub fn count_request(&mut self) {
        self.request_count += 1;
    }

    pub fn record_tick(&mut self, time: u64) {
        self.last_tick = Some(time);
    }

    pub fn health(&self) -> Health {
        let config = self.config.get();
        let stable_memory_pages = self.stable_memory.size();
        Health {
            version: crate::VERSION.to_string(),
            schema_version: config.schema_version,
            parent: config.parent,
            member_count: self.members.len(),
            audit_log_length: self.audit_log.len(),
            total_writes: *self.total_writes.get(),
            request_count: self.request_count,
            last_tick: self.last_tick,
            stable_memory_pages,
            stable_memory_bytes: stable_memory_pages * WASM_PAGE_BYTES,
        }
    }
}

thread_local! {
    static STATE: RefCell<State<DefaultMemoryImpl>> = RefCell::new(State::open(DefaultMemoryImpl::default()));
}

pub fn read_state<R>(f: impl FnOnce(&State<DefaultMemoryImpl>) -> R) -> R {
    STATE.with(|state| f(&state.borrow()))
}

pub fn mutate_state<R>(f: impl FnOnce(&mut State<DefaultMemoryImpl>) -> R) -> R {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
