//! An in-process Internet Computer replica on the wasmi interpreter, for tests: it runs real canister wasm under
//! the IC interface spec's rules (System API, call contexts, rounds, management canister, upgrades), with an API
//! shaped like the `pocket-ic` crate plus records and fault injection. See README.md for what is (not) modelled.

mod canister;
mod cycles;
mod error;
mod execution;
mod faults;
mod heap;
mod management;
mod scheduler;
mod stable_memory;
mod system_api;
mod wasm_module;

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candid::{CandidType, Principal};
use serde::de::DeserializeOwned;

pub use candid;
pub use canister::CanisterStatus;
pub use error::{Reject, RejectCode};
pub use execution::SLEEP_AFTER_IDLE_ROUNDS;
pub use ic_management_canister_types as ic00;
pub use scheduler::SchedulerConfig;
pub use stable_memory::PAGE_SIZE as STABLE_PAGE_SIZE;
pub use wasm_module::{Metadata, EOP_SECTION};

use scheduler::State;

/// 2026-01-01T00:00:00Z in nanoseconds since the Unix epoch.
pub const DEFAULT_START_TIME_NANOS: u64 = 1_767_225_600_000_000_000;

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Per update, timer, heartbeat and callback execution (facts §4: 40 B).
    pub update_instruction_limit: u64,
    /// Per query (5 B).
    pub query_instruction_limit: u64,
    /// Per install_code: pre_upgrade + start + post_upgrade/init together (300 B).
    pub install_instruction_limit: u64,
    pub start_time_nanos: u64,
    /// Replica time advances by this much after every round.
    pub round_duration: Duration,
    /// A stop_canister call not answered within this time is rejected (facts §3: 5 min).
    pub stop_canister_timeout: Duration,
    /// Cycles of canisters created by the test API.
    pub initial_cycles: u128,
    /// Index of the first canister id (ids are `index (8 bytes, big-endian) ++ [1, 1]`).
    pub first_canister_index: u64,
    /// `update_call`/`await_call` panic if the call is not answered within this many rounds.
    pub max_rounds_per_call: u64,
    /// The network's DER-framed root key, as `ic0.root_key` returns it; the subnet id is its self-authenticating
    /// principal. `None`: a fixed placeholder key and subnet id.
    pub root_key: Option<Vec<u8>>,
    /// Round and slice limits of the IC's scheduler.
    pub scheduler: SchedulerConfig,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            update_instruction_limit: 40_000_000_000,
            query_instruction_limit: 5_000_000_000,
            install_instruction_limit: 300_000_000_000,
            start_time_nanos: DEFAULT_START_TIME_NANOS,
            round_duration: Duration::from_secs(1),
            stop_canister_timeout: Duration::from_secs(300),
            initial_cycles: 100_000_000_000_000,
            first_canister_index: 0,
            max_rounds_per_call: 100_000,
            root_key: None,
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// One execution of a canister entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionRecord {
    /// The round it ran in (1-based).
    pub round: u64,
    pub canister: Principal,
    /// The export (`canister_update foo`, `canister_post_upgrade`, `(start)`) or `reply callback`,
    /// `reject callback`, `cleanup callback`.
    pub entry: String,
    /// Instructions (wasmi fuel) used.
    pub instructions: u64,
    /// `Err(trap message)` if it trapped.
    pub outcome: Result<(), String>,
}

/// One call to the management canister.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagementCall {
    pub caller: Principal,
    pub method: String,
    /// The canister the call is about (`canister_id`/`target_canister`), if any.
    pub target: Option<Principal>,
    pub round: u64,
    /// `None` while pending (a stop_canister waiting for the canister to stop).
    pub outcome: Option<Result<(), Reject>>,
}

/// An ingress message submitted with [`Replica::submit_call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(u64);

/// The replica. Methods take `&self` (like `PocketIc`); the state lives in a `RefCell`.
pub struct Replica {
    state: RefCell<State>,
}

impl Default for Replica {
    fn default() -> Self {
        Self::new()
    }
}

fn sender_or_anonymous(sender: Option<Principal>) -> Principal {
    sender.unwrap_or_else(Principal::anonymous)
}

impl Replica {
    pub fn new() -> Self {
        Self::with_config(ReplicaConfig::default())
    }

    pub fn with_config(config: ReplicaConfig) -> Self {
        Self {
            state: RefCell::new(State::new(config)),
        }
    }

    pub fn config(&self) -> ReplicaConfig {
        self.state.borrow().config.clone()
    }

    // ---- Canisters ----

    /// Creates an empty canister controlled by the anonymous principal, with `initial_cycles`.
    pub fn create_canister(&self) -> Principal {
        self.create_canister_with_settings(None, None)
    }

    /// Creates an empty canister with the id `id` (like `provisional_create_canister_with_cycles` with
    /// `specified_id`); refused if a canister has that id.
    pub fn create_canister_with_id(
        &self,
        sender: Option<Principal>,
        settings: Option<ic00::CanisterSettings>,
        id: Principal,
    ) -> Result<Principal, Reject> {
        let mut s = self.state.borrow_mut();
        let cycles = s.config.initial_cycles;
        s.create_canister_with_id(sender_or_anonymous(sender), settings, cycles, Some(id), None)
    }

    /// Creates an empty canister; its controllers are `settings.controllers`, else the sender (default anonymous).
    pub fn create_canister_with_settings(
        &self,
        sender: Option<Principal>,
        settings: Option<ic00::CanisterSettings>,
    ) -> Principal {
        let mut s = self.state.borrow_mut();
        let cycles = s.config.initial_cycles;
        s.create_canister(sender_or_anonymous(sender), settings, cycles)
    }

    pub fn canister_exists(&self, id: Principal) -> bool {
        self.state.borrow().canisters.contains_key(&id)
    }

    pub fn canister_ids(&self) -> Vec<Principal> {
        self.state.borrow().canisters.keys().copied().collect()
    }

    /// Adds cycles; returns the new balance.
    pub fn add_cycles(&self, id: Principal, amount: u128) -> u128 {
        let mut s = self.state.borrow_mut();
        let c = s
            .canisters
            .get_mut(&id)
            .unwrap_or_else(|| panic!("canister {id} not found"));
        c.sys.cycles += amount;
        c.sys.cycles
    }

    pub fn cycle_balance(&self, id: Principal) -> u128 {
        self.with(id, |c| c.sys.cycles)
    }

    fn with<R>(&self, id: Principal, f: impl FnOnce(&canister::Canister) -> R) -> R {
        let s = self.state.borrow();
        f(s.canisters
            .get(&id)
            .unwrap_or_else(|| panic!("canister {id} not found")))
    }

    /// Installs code (mode install) through the management canister; panics if that fails, like `PocketIc`.
    pub fn install_canister(&self, id: Principal, wasm: Vec<u8>, arg: Vec<u8>, sender: Option<Principal>) {
        self.install_code(sender, ic00::CanisterInstallMode::Install, id, wasm, arg)
            .unwrap_or_else(|e| panic!("install_canister({id}) failed: {e}"));
    }

    pub fn upgrade_canister(
        &self,
        id: Principal,
        wasm: Vec<u8>,
        arg: Vec<u8>,
        sender: Option<Principal>,
    ) -> Result<(), Reject> {
        self.install_code(sender, ic00::CanisterInstallMode::Upgrade(None), id, wasm, arg)
    }

    pub fn reinstall_canister(
        &self,
        id: Principal,
        wasm: Vec<u8>,
        arg: Vec<u8>,
        sender: Option<Principal>,
    ) -> Result<(), Reject> {
        self.install_code(sender, ic00::CanisterInstallMode::Reinstall, id, wasm, arg)
    }

    /// `install_code` with any mode, as an ingress call to `aaaaa-aa`.
    pub fn install_code(
        &self,
        sender: Option<Principal>,
        mode: ic00::CanisterInstallMode,
        canister_id: Principal,
        wasm_module: Vec<u8>,
        arg: Vec<u8>,
    ) -> Result<(), Reject> {
        let args = ic00::InstallCodeArgs {
            mode,
            canister_id,
            wasm_module,
            arg,
            sender_canister_version: None,
        };
        self.management(sender, "install_code", &args)
    }

    pub fn uninstall_canister(&self, id: Principal, sender: Option<Principal>) -> Result<(), Reject> {
        self.management(
            sender,
            "uninstall_code",
            &ic00::UninstallCodeArgs {
                canister_id: id,
                sender_canister_version: None,
            },
        )
    }

    pub fn stop_canister(&self, id: Principal, sender: Option<Principal>) -> Result<(), Reject> {
        self.management(sender, "stop_canister", &ic00::CanisterIdRecord { canister_id: id })
    }

    pub fn start_canister(&self, id: Principal, sender: Option<Principal>) -> Result<(), Reject> {
        self.management(sender, "start_canister", &ic00::CanisterIdRecord { canister_id: id })
    }

    pub fn delete_canister(&self, id: Principal, sender: Option<Principal>) -> Result<(), Reject> {
        self.management(sender, "delete_canister", &ic00::CanisterIdRecord { canister_id: id })
    }

    pub fn update_settings(
        &self,
        id: Principal,
        sender: Option<Principal>,
        settings: ic00::CanisterSettings,
    ) -> Result<(), Reject> {
        let args = ic00::UpdateSettingsArgs {
            canister_id: id,
            settings,
            sender_canister_version: None,
        };
        self.management(sender, "update_settings", &args)
    }

    pub fn canister_status(
        &self,
        id: Principal,
        sender: Option<Principal>,
    ) -> Result<ic00::CanisterStatusResult, Reject> {
        let arg = ic00::CanisterIdRecord { canister_id: id };
        self.update(
            Principal::management_canister(),
            sender_or_anonymous(sender),
            "canister_status",
            &arg,
        )
    }

    fn management<A: CandidType>(&self, sender: Option<Principal>, method: &str, arg: &A) -> Result<(), Reject> {
        let payload = candid::encode_one(arg).expect("encode management args");
        self.update_call(
            Principal::management_canister(),
            sender_or_anonymous(sender),
            method,
            payload,
        )
        .map(|_| ())
    }

    // ---- Reading canister state directly (no round) ----

    /// SHA-256 of the module bytes as sent (of the `.wasm.gz` for gzipped modules).
    pub fn module_hash(&self, id: Principal) -> Option<[u8; 32]> {
        self.with(id, |c| c.module_hash)
    }

    pub fn status(&self, id: Principal) -> CanisterStatus {
        self.with(id, |c| c.status)
    }

    /// The controllers, in the IC's order (sorted, no duplicates).
    pub fn controllers(&self, id: Principal) -> Vec<Principal> {
        self.with(id, |c| c.controllers.iter().copied().collect())
    }

    pub fn canister_version(&self, id: Principal) -> u64 {
        self.with(id, |c| c.version)
    }

    /// The global timer (0 = inactive), in nanoseconds since the epoch.
    pub fn global_timer(&self, id: Principal) -> u64 {
        self.with(id, |c| c.sys.global_timer)
    }

    pub fn certified_data(&self, id: Principal) -> Vec<u8> {
        self.with(id, |c| c.sys.certified_data.clone())
    }

    /// Stable memory size in 64 KiB pages, and how many of them hold data.
    pub fn stable_memory_pages(&self, id: Principal) -> (u64, usize) {
        self.with(id, |c| (c.sys.stable.size(), c.sys.stable.resident_pages()))
    }

    pub fn read_stable_memory(&self, id: Principal, offset: u64, len: usize) -> Vec<u8> {
        self.with(id, |c| {
            let mut buf = vec![0; len];
            c.sys.stable.read(offset, &mut buf).expect("stable memory range");
            buf
        })
    }

    /// Replaces the canister's stable memory with `bytes`, grown to whole pages (like PocketIC's
    /// `set_stable_memory`). Not a message: no execution runs and nothing is recorded.
    pub fn set_stable_memory(&self, id: Principal, bytes: &[u8]) {
        let mut s = self.state.borrow_mut();
        let c = s
            .canisters
            .get_mut(&id)
            .unwrap_or_else(|| panic!("canister {id} not found"));
        c.sys.stable = stable_memory::StableMemory::from_bytes(bytes);
    }

    /// The whole stable memory.
    pub fn stable_memory(&self, id: Principal) -> Vec<u8> {
        self.with(id, |c| c.sys.stable.to_bytes())
    }

    /// The metadata section `name` of the installed module (`icp:public <name>` or `icp:private <name>`).
    pub fn metadata(&self, id: Principal, name: &str) -> Option<Metadata> {
        self.with(id, |c| c.module().and_then(|m| m.metadata.get(name).cloned()))
    }

    /// The subnet every canister of this replica is on.
    pub fn subnet_id(&self) -> Principal {
        self.state.borrow().subnet_id
    }

    /// The DER-framed root key canisters read with `ic0.root_key`.
    pub fn root_key(&self) -> Vec<u8> {
        self.state.borrow().root_key.to_vec()
    }

    /// Size of the wasm heap in bytes (0 without a module).
    pub fn heap_size(&self, id: Principal) -> u64 {
        self.with(id, |c| c.live.as_ref().map_or(0, |l| l.heap_size()))
    }

    /// The canister's memory usage in bytes, as `canister_status` reports it and as storage is charged.
    pub fn memory_size(&self, id: Principal) -> u64 {
        self.with(id, |c| c.memory_usage())
    }

    /// Bytes of the canister's heap in RAM: zero pages and pages never written take none.
    pub fn heap_resident_bytes(&self, id: Principal) -> u64 {
        self.with(id, |c| c.live.as_ref().map_or(0, |l| l.heap_resident_bytes()))
    }

    /// Whether the canister's Wasm instance is in memory: it is dropped after a few rounds without an execution
    /// and made again, on the same heap, when the canister next runs.
    pub fn has_instance(&self, id: Principal) -> bool {
        self.with(id, |c| c.live.as_ref().is_some_and(|l| l.is_awake()))
    }

    /// Call contexts not yet closed (a stopping canister stops when this reaches 0).
    pub fn open_call_contexts(&self, id: Principal) -> usize {
        self.with(id, |c| c.call_contexts.len())
    }

    /// Number of distinct compiled modules (one per distinct module).
    pub fn compiled_modules(&self) -> usize {
        self.state.borrow().modules.len()
    }

    // ---- Calls ----

    /// An ingress update call: queued for the next round, then rounds run until it is answered.
    pub fn update_call(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, Reject> {
        let id = self.submit_call(canister, sender, method, payload)?;
        self.await_call(id)
    }

    /// A non-replicated query: runs at once, outside rounds, and changes nothing.
    pub fn query_call(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, Reject> {
        self.state.borrow_mut().query(sender, canister, method, payload)
    }

    /// Submits an ingress message (after `canister_inspect_message`, if exported) without running rounds.
    pub fn submit_call(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        payload: Vec<u8>,
    ) -> Result<MessageId, Reject> {
        self.state
            .borrow_mut()
            .submit(sender, canister, method, payload)
            .map(MessageId)
    }

    /// The result of an ingress message, if answered.
    pub fn ingress_status(&self, id: MessageId) -> Option<Result<Vec<u8>, Reject>> {
        self.state.borrow().ingress.get(&id.0).cloned().flatten()
    }

    /// Runs rounds until the message is answered.
    pub fn await_call(&self, id: MessageId) -> Result<Vec<u8>, Reject> {
        let max = self.config().max_rounds_per_call;
        for _ in 0..=max {
            let answered = self.state.borrow().ingress.get(&id.0).cloned().flatten();
            if let Some(result) = answered {
                self.state.borrow_mut().ingress.remove(&id.0);
                return result;
            }
            self.tick();
        }
        panic!("message {id:?} not answered within {max} rounds");
    }

    pub fn update<A: CandidType, R: CandidType + DeserializeOwned>(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: &A,
    ) -> Result<R, Reject> {
        let bytes = self.update_call(
            canister,
            sender,
            method,
            candid::encode_one(arg).expect("encode argument"),
        )?;
        Ok(candid::decode_one(&bytes).unwrap_or_else(|e| panic!("decoding the reply of {method}: {e}")))
    }

    pub fn query<A: CandidType, R: CandidType + DeserializeOwned>(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: &A,
    ) -> Result<R, Reject> {
        let bytes = self.query_call(
            canister,
            sender,
            method,
            candid::encode_one(arg).expect("encode argument"),
        )?;
        Ok(candid::decode_one(&bytes).unwrap_or_else(|e| panic!("decoding the reply of {method}: {e}")))
    }

    // ---- Rounds and time ----

    /// Runs one IC round (see README, "Rounds").
    pub fn tick(&self) {
        self.state.borrow_mut().tick();
    }

    pub fn tick_n(&self, rounds: u64) {
        for _ in 0..rounds {
            self.tick();
        }
    }

    /// Runs rounds until no message is queued and no install is running (at most `max_rounds_per_call`); returns
    /// how many ran.
    pub fn run_until_idle(&self) -> u64 {
        let max = self.config().max_rounds_per_call;
        let mut n = 0;
        while self.state.borrow().has_pending_messages() && n < max {
            self.tick();
            n += 1;
        }
        n
    }

    /// Completed rounds.
    pub fn round(&self) -> u64 {
        self.state.borrow().round
    }

    pub fn advance_time(&self, d: Duration) {
        self.state.borrow_mut().advance_time(d);
    }

    /// Sets the replica time. Time never goes back (spec: `ic0.time` is monotonic), so an earlier time is refused.
    pub fn set_time(&self, time: SystemTime) -> Result<(), String> {
        let nanos = time.duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_nanos() as u64;
        let mut s = self.state.borrow_mut();
        if nanos < s.time {
            return Err(format!("cannot set the time back from {} ns to {nanos} ns", s.time));
        }
        s.time = nanos;
        Ok(())
    }

    pub fn get_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.time_nanos())
    }

    pub fn time_nanos(&self) -> u64 {
        self.state.borrow().time
    }

    // ---- Records ----

    pub fn executions(&self) -> Vec<ExecutionRecord> {
        self.state.borrow().executions.clone()
    }

    /// The most recent execution of `entry` (see [`ExecutionRecord::entry`]) on `canister`.
    pub fn last_execution(&self, canister: Principal, entry: &str) -> Option<ExecutionRecord> {
        self.state
            .borrow()
            .executions
            .iter()
            .rev()
            .find(|e| e.canister == canister && e.entry == entry)
            .cloned()
    }

    pub fn management_calls(&self) -> Vec<ManagementCall> {
        self.state.borrow().management_calls.clone()
    }

    /// Management calls made by `caller` (a canister or a user).
    pub fn management_calls_by(&self, caller: Principal) -> Vec<ManagementCall> {
        self.state
            .borrow()
            .management_calls
            .iter()
            .filter(|c| c.caller == caller)
            .cloned()
            .collect()
    }

    /// `debug_print` output of the canister, oldest first (kept for trapped executions too).
    pub fn logs(&self, id: Principal) -> Vec<String> {
        self.with(id, |c| c.logs.clone())
    }

    /// A guard that prints every canister's logs if the test panics while it is alive.
    pub fn print_logs_on_panic(&self) -> LogGuard<'_> {
        LogGuard { replica: self }
    }

    // ---- Fault injection ----

    /// The next execution of `entry` on `canister` traps before running. `entry` is an export name
    /// (`canister_post_upgrade`, `canister_update set`, `canister_global_timer`, ...) or
    /// `reply callback` / `reject callback`.
    pub fn fail_next_execution(&self, canister: Principal, entry: &str) {
        self.state.borrow_mut().faults.add_trap(canister, entry.to_string());
    }

    /// The next call of `method` on `target` is rejected with `code` and `message`. For management methods
    /// (`install_code`, `stop_canister`, ...) `target` is the canister the call is about.
    pub fn reject_next_call(&self, target: Principal, method: &str, code: RejectCode, message: &str) {
        self.state
            .borrow_mut()
            .faults
            .add_reject(target, method.to_string(), Reject::new(code, message));
    }

    /// Sets the canister's cycle balance to its freezing threshold: it is frozen (it cannot prepay an execution,
    /// an install or a call) but still pays for its memory.
    pub fn drain_cycles(&self, id: Principal) {
        let mut s = self.state.borrow_mut();
        let c = s
            .canisters
            .get_mut(&id)
            .unwrap_or_else(|| panic!("canister {id} not found"));
        c.sys.cycles = c.freezing_threshold_cycles();
    }

    /// Injected traps and rejects that have not fired yet (a test whose fault never fired tested nothing).
    pub fn pending_faults(&self) -> Vec<String> {
        self.state.borrow().faults.pending()
    }

    /// Responses to `canister` are delivered `rounds` rounds late (0 to stop delaying).
    pub fn delay_responses(&self, canister: Principal, rounds: u64) {
        self.state.borrow_mut().faults.set_response_delay(canister, rounds);
    }

    // ---- For hosts that run rounds on their own, only while there is work (the local network) ----

    /// Whether a message (ingress, call or response) waits for a coming round.
    pub fn has_queued_messages(&self) -> bool {
        self.state.borrow().has_pending_messages()
    }

    /// The earliest replica time (ns since the epoch) at which a round has work even if no message arrives: the
    /// global timer of a running canister with cycles, a bounded-wait call deadline, or a stop_canister timeout.
    /// `None`: only a new message can give a round work (heartbeats aside, see [`Self::has_heartbeats`]).
    pub fn next_due_time(&self) -> Option<u64> {
        self.state.borrow().next_due_time()
    }

    /// Whether a running canister exports `canister_heartbeat`, which runs in every round.
    pub fn has_heartbeats(&self) -> bool {
        self.state.borrow().has_heartbeats()
    }
}

/// Prints all canister logs when dropped during a panic (see [`Replica::print_logs_on_panic`]).
pub struct LogGuard<'a> {
    replica: &'a Replica,
}

impl Drop for LogGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(state) = self.replica.state.try_borrow() else {
            return;
        };
        for (id, c) in &state.canisters {
            if c.logs.is_empty() {
                continue;
            }
            eprintln!("---- logs of canister {id} ----");
            for line in &c.logs {
                eprintln!("{line}");
            }
        }
    }
}
