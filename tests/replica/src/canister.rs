//! A canister's state: identity, controllers, status, code, memories, call contexts and callbacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use candid::Principal;
use wasmi::Val;

use crate::execution::Live;
use crate::system_api::SystemState;
use crate::wasm_module::CompiledModule;

/// Spec "Canister status".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanisterStatus {
    Running,
    Stopping,
    Stopped,
}

impl CanisterStatus {
    /// The value of `ic0.canister_status`.
    pub fn code(self) -> u32 {
        match self {
            Self::Running => 1,
            Self::Stopping => 2,
            Self::Stopped => 3,
        }
    }
}

/// Where the response to a call context goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Ingress(u64),
    Canister {
        caller: Principal,
        callback: u64,
        deadline: u64,
    },
    /// A system task (global timer, heartbeat): no response.
    System,
}

#[derive(Clone, Debug)]
pub struct CallContext {
    pub origin: Origin,
    pub caller: Principal,
    pub responded: bool,
    pub outstanding_calls: u32,
    pub cycles_available: u128,
    pub cycles_accepted: u128,
    pub instructions: u64,
}

#[derive(Clone, Debug)]
pub struct Callback {
    pub context: u64,
    pub reply: (u32, u32),
    pub reject: (u32, u32),
    pub cleanup: Option<(u32, u32)>,
    pub deadline: Option<u64>,
}

/// A `stop_canister` call waiting for the canister to have no open call contexts.
#[derive(Clone, Debug)]
pub struct PendingStop {
    pub origin: Origin,
    pub deadline: u64,
    pub record: usize,
}

/// Settings the replica stores and reports but does not enforce (see README).
#[derive(Clone, Debug, Default)]
pub struct StoredSettings {
    pub compute_allocation: u64,
    pub memory_allocation: u64,
    pub freezing_threshold: u64,
    pub reserved_cycles_limit: u128,
    pub wasm_memory_limit: u64,
    pub wasm_memory_threshold: u64,
}

/// One entry of the canister history (spec `canister_info`).
#[derive(Clone, Debug)]
pub struct Change {
    pub time: u64,
    pub canister_version: u64,
    pub origin: Principal,
    pub details: ic_management_canister_types::ChangeDetails,
}

/// A canister snapshot (spec `take_canister_snapshot`).
#[derive(Clone)]
pub struct CanisterSnapshot {
    pub id: Vec<u8>,
    pub taken_at: u64,
    pub module: Arc<CompiledModule>,
    pub module_hash: [u8; 32],
    pub module_bytes_len: u64,
    pub heap: Vec<u8>,
    pub globals: Vec<Val>,
    pub sys: SystemState,
}

impl CanisterSnapshot {
    pub fn size(&self) -> u64 {
        self.heap.len() as u64 + self.sys.stable.size() * crate::stable_memory::PAGE_SIZE
    }
}

pub struct Canister {
    pub id: Principal,
    pub controllers: Vec<Principal>,
    pub status: CanisterStatus,
    pub version: u64,
    pub sys: SystemState,
    pub live: Option<Live>,
    /// SHA-256 of the module bytes exactly as sent to install_code (facts §0.1).
    pub module_hash: Option<[u8; 32]>,
    pub module_bytes_len: u64,
    pub call_contexts: BTreeMap<u64, CallContext>,
    pub callbacks: BTreeMap<u64, Callback>,
    pub pending_stops: Vec<PendingStop>,
    pub logs: Vec<String>,
    pub chunks: BTreeMap<[u8; 32], Vec<u8>>,
    pub snapshots: Vec<CanisterSnapshot>,
    pub history: Vec<Change>,
    pub settings: StoredSettings,
    /// The global timer value currently in the replica's timer index.
    pub indexed_timer: u64,
    /// The last round in which the canister executed (the scheduler serves the least recently executed first).
    pub last_executed_round: u64,
    /// Instructions of recent install_code executions not yet paid off by the per-round rate limit.
    pub install_code_debit: u64,
}

impl Canister {
    pub fn new(id: Principal, controllers: Vec<Principal>, cycles: u128) -> Self {
        Self {
            id,
            controllers,
            status: CanisterStatus::Running,
            version: 0,
            sys: SystemState {
                cycles,
                ..Default::default()
            },
            live: None,
            module_hash: None,
            module_bytes_len: 0,
            call_contexts: BTreeMap::new(),
            callbacks: BTreeMap::new(),
            pending_stops: Vec::new(),
            logs: Vec::new(),
            chunks: BTreeMap::new(),
            snapshots: Vec::new(),
            history: Vec::new(),
            settings: StoredSettings {
                freezing_threshold: 2_592_000,
                ..Default::default()
            },
            indexed_timer: 0,
            last_executed_round: 0,
            install_code_debit: 0,
        }
    }

    pub fn module(&self) -> Option<&Arc<CompiledModule>> {
        self.live.as_ref().map(|l| &l.module)
    }

    pub fn exports(&self, name: &str) -> bool {
        self.module().is_some_and(|m| m.exports(name))
    }

    pub fn is_controller(&self, p: &Principal) -> bool {
        self.controllers.contains(p)
    }

    pub fn memory_size(&self) -> u64 {
        self.live.as_ref().map_or(0, |l| l.heap_size())
            + self.sys.stable.size() * crate::stable_memory::PAGE_SIZE
            + self.module_bytes_len
            + self.snapshots.iter().map(|s| s.size()).sum::<u64>()
    }
}
