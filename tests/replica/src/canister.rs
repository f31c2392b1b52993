//! A canister's state: identity, controllers, status, code, memories, call contexts and callbacks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use candid::{Nat, Principal};
use wasmi::Val;

use crate::cycles;
use crate::error::{ErrorCode, Reject};
use crate::execution::Live;
use crate::system_api::SystemState;
use crate::wasm_module::CompiledModule;

/// Bytes billed per canister history entry (an estimate of its encoded size).
pub const HISTORY_ENTRY_BYTES: u64 = 100;
/// Every chunk in the chunk store is billed as a full 1 MiB chunk.
pub const CHUNK_BYTES: u64 = 1024 * 1024;
/// Bytes billed per mutable global.
pub const GLOBAL_BYTES: u64 = 8;

/// The parts of a canister's memory usage (`canister_status` `memory_metrics`).
pub struct MemoryMetrics {
    pub wasm_memory: u64,
    pub stable_memory: u64,
    pub globals: u64,
    pub wasm_binary: u64,
    pub custom_sections: u64,
    pub history: u64,
    pub chunk_store: u64,
    pub snapshots: u64,
}

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
    /// Whom the call went to: it holds one of the 500 slots between the two canisters until it is answered.
    pub callee: Principal,
    pub reply: (u32, u32),
    pub reject: (u32, u32),
    pub cleanup: Option<(u32, u32)>,
    pub deadline: Option<u64>,
    /// Prepaid by the call for the response's transmission and the callback's execution.
    pub transmission_prepay: u128,
    pub execution_prepay: u128,
}

/// A `stop_canister` call waiting for the canister to have no open call contexts.
#[derive(Clone, Debug)]
pub struct PendingStop {
    pub origin: Origin,
    pub deadline: u64,
    pub record: usize,
}

/// The canister's settings as `canister_status` reports them (controllers apart). Only the freezing threshold and
/// the environment variables act; the others are stored and reported (see README).
#[derive(Clone, Debug)]
pub struct Settings(pub ic_management_canister_types::DefiniteCanisterSettings);

impl Default for Settings {
    /// The IC's defaults (ic-management-canister-types `CanisterSettings` docs): freezing threshold 30 days,
    /// reserved cycles limit 5T, log memory limit 4,096 bytes.
    fn default() -> Self {
        Self(ic_management_canister_types::DefiniteCanisterSettings {
            freezing_threshold: Nat::from(2_592_000u64),
            reserved_cycles_limit: Nat::from(5_000_000_000_000u64),
            log_memory_limit: Nat::from(4096u64),
            ..Default::default()
        })
    }
}

impl Settings {
    /// The freezing threshold in seconds.
    pub fn freezing_threshold(&self) -> u64 {
        u64::try_from(self.0.freezing_threshold.0.clone()).unwrap_or(u64::MAX)
    }
}

/// One entry of the canister history (spec `canister_info`).
#[derive(Clone, Debug)]
pub struct Change {
    pub time: u64,
    pub canister_version: u64,
    pub origin: Principal,
    /// The `sender_canister_version` a calling canister passed.
    pub origin_version: Option<u64>,
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
    pub chunks: BTreeMap<[u8; 32], Vec<u8>>,
}

impl CanisterSnapshot {
    /// What the IC counts (`CanisterState::snapshot_size_bytes`): Wasm and stable memory, globals, the module, the
    /// chunk store and the certified data.
    pub fn size(&self) -> u64 {
        self.heap.len() as u64
            + self.sys.stable.size() * crate::stable_memory::PAGE_SIZE
            + self.globals.len() as u64 * GLOBAL_BYTES
            + self.module_bytes_len
            + self.chunks.len() as u64 * CHUNK_BYTES
            + self.sys.certified_data.len() as u64
    }
}

/// Why a management operation that changes a canister's memory usage cannot be paid for.
pub enum Unpaid {
    /// The canister's balance is below the freezing threshold of its new memory usage (IC0532).
    MemoryGrow(Reject),
    /// The cost would take the balance below that threshold: the out-of-cycles text.
    OutOfCycles(String),
}

pub struct Canister {
    pub id: Principal,
    /// A set, reported in its order (the IC's `BTreeSet<PrincipalId>`).
    pub controllers: BTreeSet<Principal>,
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
    pub settings: Settings,
    /// The environment variables, by name (`ic0.env_var_*` reads them in this order).
    pub env_vars: Arc<BTreeMap<String, String>>,
    /// The global timer value currently in the replica's timer index.
    pub indexed_timer: u64,
    /// The last round in which the canister executed (the scheduler serves the least recently executed first).
    pub last_executed_round: u64,
    /// Instructions of recent install_code executions not yet paid off by the per-round rate limit.
    pub install_code_debit: u64,
    /// When the canister last paid for its memory (ns).
    pub last_storage_charge: u64,
}

impl Canister {
    pub fn new(id: Principal, controllers: BTreeSet<Principal>, cycles: u128) -> Self {
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
            settings: Settings::default(),
            env_vars: Arc::default(),
            indexed_timer: 0,
            last_executed_round: 0,
            install_code_debit: 0,
            last_storage_charge: 0,
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

    /// Memory usage as the IC bills it (`CanisterState::memory_usage`): Wasm memory, stable memory, globals, the
    /// module and its custom sections, canister history, chunk store (1 MiB per chunk) and snapshots.
    pub fn memory_usage(&self) -> u64 {
        let m = self.memory_metrics();
        m.wasm_memory
            + m.stable_memory
            + m.globals
            + m.wasm_binary
            + m.custom_sections
            + m.history
            + m.chunk_store
            + m.snapshots
    }

    pub fn memory_metrics(&self) -> MemoryMetrics {
        MemoryMetrics {
            wasm_memory: self.live.as_ref().map_or(0, |l| l.heap_size()),
            stable_memory: self.sys.stable.size() * crate::stable_memory::PAGE_SIZE,
            globals: self.live.as_ref().map_or(0, |l| l.global_count() as u64 * GLOBAL_BYTES),
            wasm_binary: self.module_bytes_len,
            custom_sections: self.module().map_or(0, |m| {
                m.metadata.iter().map(|(n, s)| (n.len() + s.content.len()) as u64).sum()
            }),
            history: self.history.len() as u64 * HISTORY_ENTRY_BYTES,
            chunk_store: self.chunks.len() as u64 * CHUNK_BYTES,
            snapshots: self.snapshots.iter().map(|s| s.size()).sum(),
        }
    }

    /// Records a change to the canister's history at its current version.
    pub fn record_change(
        &mut self,
        time: u64,
        origin: Principal,
        origin_version: Option<u64>,
        details: ic_management_canister_types::ChangeDetails,
    ) {
        self.history.push(Change {
            time,
            canister_version: self.version,
            origin,
            origin_version,
            details,
        });
    }

    /// The freezing threshold in cycles: the idle burn of the canister's memory over `freezing_threshold` seconds.
    pub fn freezing_threshold_cycles(&self) -> u128 {
        cycles::freezing_threshold(self.memory_usage(), self.settings.freezing_threshold())
    }

    /// Takes `amount` cycles if that leaves the balance at or above the freezing threshold; otherwise the IC's
    /// out-of-cycles text (telling how much is missing if `reveal`).
    pub fn withdraw(&mut self, amount: u128, reveal: bool) -> Result<(), String> {
        let threshold = self.freezing_threshold_cycles();
        if self.sys.cycles.saturating_sub(threshold) < amount {
            return Err(cycles::out_of_cycles(
                self.id,
                amount,
                self.sys.cycles,
                threshold,
                reveal,
            ));
        }
        self.sys.cycles -= amount;
        Ok(())
    }

    /// Takes `cost` for a management operation that changes the memory usage from `old_memory` to `new_memory`
    /// (canister_manager.rs `cycles_and_memory_usage_checks`): the balance must be at or above the freezing
    /// threshold of the new memory usage, before and after the cost.
    pub fn charge_for_memory(
        &mut self,
        cost: u128,
        old_memory: u64,
        new_memory: u64,
        reveal: bool,
    ) -> Result<(), Unpaid> {
        let threshold = cycles::freezing_threshold(new_memory, self.settings.freezing_threshold());
        if self.sys.cycles < threshold {
            return Err(Unpaid::MemoryGrow(Reject::of(
                ErrorCode::InsufficientCyclesInMemoryGrow,
                format!(
                    "Canister cannot grow memory by {} bytes due to insufficient cycles. At least {} additional \
                     cycles are required.",
                    new_memory.saturating_sub(old_memory),
                    threshold - self.sys.cycles
                ),
            )));
        }
        if self.sys.cycles - threshold < cost {
            return Err(Unpaid::OutOfCycles(cycles::out_of_cycles(
                self.id,
                cost,
                self.sys.cycles,
                threshold,
                reveal,
            )));
        }
        self.sys.cycles -= cost;
        Ok(())
    }
}

impl Unpaid {
    /// The reject: IC0532, or the out-of-cycles text as the operation words it.
    pub fn reject(self, out_of_cycles: impl FnOnce(String) -> Reject) -> Reject {
        match self {
            Self::MemoryGrow(reject) => reject,
            Self::OutOfCycles(text) => out_of_cycles(text),
        }
    }
}
