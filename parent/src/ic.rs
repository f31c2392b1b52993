//! Every effect the parent has on the outside world, behind one trait: management calls, time, identity, timers.
//!
//! `CdkIc` is the real thing. Native tests use a fake (`testing::FakeIc`) that simulates the children.

use crate::outcome::{CallError, ChildStatus, Funds, RunStatus};
use candid::{CandidType, Nat, Principal};
use ic_cdk::call::{Call, Response};
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, CanisterSettings, CanisterStatusType, ChunkHash, InstallChunkedCodeArgs,
    InstallCodeArgs, LoadCanisterSnapshotArgs, Snapshot, TakeCanisterSnapshotArgs, UpgradeFlags, UploadChunkArgs,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::borrow::Cow;
use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallMode {
    /// `install` into an empty canister (runs the child's `init`).
    Install,
    /// `upgrade`: `Upgrade(None)`, or with `skip_pre_upgrade = opt true` if asked (`retry_child`). Never
    /// `wasm_memory_persistence`: Rust canisters must not ask to keep the heap.
    Upgrade { skip_pre_upgrade: bool },
}

/// The parent's effects. Async methods are plain `fn -> impl Future` (no async-trait, no dyn): code is generic over it.
pub trait Ic {
    /// IC time, nanoseconds.
    fn now(&self) -> u64;
    fn self_id(&self) -> Principal;
    /// Whether the parent itself is running (not stopping): no new child operation starts otherwise.
    fn self_running(&self) -> bool;
    /// Arms the rollout tick after `delay` (deduplicated), with a watchdog that repeats it until retired.
    fn schedule_tick(&self, delay: Duration);
    /// Nothing needs ticks any more: stops the watchdog (the next `schedule_tick` arms it again).
    fn retire_watchdog(&self);
    /// Runs `task` concurrently, within the current call context (it must only await calls made through `self`).
    fn spawn(&self, task: impl Future<Output = ()> + 'static);
    /// `create_canister` with these controllers and `cycles` on top of the creation fee.
    fn create(&self, controllers: Vec<Principal>, cycles: u128) -> impl Future<Output = Result<Principal, CallError>>;
    fn stop(&self, child: Principal) -> impl Future<Output = Result<(), CallError>>;
    /// `install_code` of `wasm` with `arg`.
    fn install(
        &self,
        child: Principal,
        mode: InstallMode,
        wasm: Cow<'static, [u8]>,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<(), CallError>>;
    fn start(&self, child: Principal) -> impl Future<Output = Result<(), CallError>>;
    /// `take_canister_snapshot`, replacing `replace` if given; returns the new snapshot's id.
    fn take_snapshot(
        &self,
        child: Principal,
        replace: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<Vec<u8>, CallError>>;
    fn load_snapshot(&self, child: Principal, id: Vec<u8>) -> impl Future<Output = Result<(), CallError>>;
    /// `upload_chunk` into the parent's own chunk store; returns the chunk's hash.
    fn upload_chunk(&self, chunk: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, CallError>>;
    /// `clear_chunk_store` of the parent's own chunk store.
    fn clear_chunk_store(&self) -> impl Future<Output = Result<(), CallError>>;
    /// `install_chunked_code` of the module made of `chunks` (in the parent's own store), whose hash is `module_hash`.
    fn install_chunked(
        &self,
        child: Principal,
        mode: InstallMode,
        chunks: Vec<Vec<u8>>,
        module_hash: Vec<u8>,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<(), CallError>>;
    /// `deposit_cycles`: moves `cycles` from the parent's balance to the child's.
    fn deposit(&self, child: Principal, cycles: u128) -> impl Future<Output = Result<(), CallError>>;
    /// Calls `method` on the child with Candid `()`, bounded-wait; a reply that decodes as `variant { Err }` is an error.
    fn health(&self, child: Principal, method: String) -> impl Future<Output = Result<(), CallError>>;
    fn status(&self, child: Principal) -> impl Future<Output = Result<ChildStatus, CallError>>;
}

/// The real IC, through ic-cdk.
///
/// Every management call that can be retried or re-checked is bounded-wait (300 s at most), so the parent's open call
/// contexts always close and the parent can be stopped for its own upgrade; a timeout comes back as SYS_UNKNOWN and
/// the rollout re-checks the child. `create_canister` alone is unbounded-wait: an unknown outcome there could leak a
/// canister (and its cycles) that the parent never learns about.
///
/// Timers: `schedule_tick` arms a one-shot timer that runs `on_tick`, plus a repeating watchdog that runs it every
/// `watchdog` while the rollout may need ticks (see `WATCHDOG`).
#[derive(Clone, Copy, Debug)]
pub struct CdkIc {
    on_tick: fn(),
    watchdog: Duration,
}

impl CdkIc {
    pub fn new(on_tick: fn(), watchdog: Duration) -> Self {
        Self { on_tick, watchdog }
    }
}

thread_local! {
    /// The armed tick (timer id, due time). Heap only: timers do not survive an upgrade either.
    static ARMED: Cell<Option<(ic_cdk_timers::TimerId, u64)>> = const { Cell::new(None) };
    /// The watchdog: a repeating tick while the rollout may need ticks. ic-cdk-timers drops a one-shot timer whose
    /// execution traps, and the trap also rolls back whatever that tick would have re-armed, so without it one
    /// trapped tick would stall the rollout until an admin call. A repeating timer is rescheduled even when its
    /// execution traps: a trapped tick costs at most one interval.
    static WATCHDOG: Cell<Option<ic_cdk_timers::TimerId>> = const { Cell::new(None) };
    /// Calls made through `CdkIc` and not answered yet. Heap only: an upgrade would deliver their callbacks to the
    /// new module, which cannot run them, so `pre_upgrade` refuses while any is out (see `lifecycle`).
    static CALLS_OUT: Cell<u64> = const { Cell::new(0) };
}

/// Calls made through `CdkIc` and not answered yet.
pub fn calls_out() -> u64 {
    CALLS_OUT.get()
}

/// The rollout timers are armed: a timer's own self-call (ic-cdk-timers runs each timer as a call to itself) may be
/// out at any time.
pub fn timers_armed() -> bool {
    WATCHDOG.get().is_some()
}

/// Counts a call as out from creation to drop, i.e. until its future completes (or is dropped with the heap).
struct CallOut;

impl CallOut {
    fn new() -> Self {
        CALLS_OUT.set(CALLS_OUT.get() + 1);
        Self
    }
}

impl Drop for CallOut {
    fn drop(&mut self) {
        CALLS_OUT.set(CALLS_OUT.get().saturating_sub(1));
    }
}

/// The part of `canister_status`'s reply the parent reads. Candid ignores the other fields, so this keeps decoding
/// across replica versions that add fields (facts §0.3).
#[derive(CandidType, Deserialize)]
struct StatusReply {
    status: CanisterStatusType,
    module_hash: Option<Vec<u8>>,
    settings: Option<SettingsReply>,
    cycles: Option<Nat>,
    idle_cycles_burned_per_day: Option<Nat>,
    memory_size: Option<Nat>,
    memory_metrics: Option<MemoryMetricsReply>,
}

#[derive(CandidType, Deserialize)]
struct MemoryMetricsReply {
    snapshots_size: Nat,
}

#[derive(CandidType, Deserialize)]
struct SettingsReply {
    controllers: Vec<Principal>,
    freezing_threshold: Option<Nat>,
}

impl StatusReply {
    /// The child's balance, freezing limit (`idle_cycles_burned_per_day` × `freezing_threshold` seconds) and memory,
    /// if the reply has them (snapshots count 0 bytes when it does not break memory down).
    fn funds(&self, parent_balance: u128) -> Option<Funds> {
        let nat = |n: &Option<Nat>| n.as_ref().and_then(|n| u128::try_from(n.0.clone()).ok());
        let threshold_secs = nat(&self.settings.as_ref()?.freezing_threshold)?;
        Some(Funds {
            balance: nat(&self.cycles)?,
            freezing_limit: nat(&self.idle_cycles_burned_per_day)?.saturating_mul(threshold_secs) / 86_400,
            memory_size: nat(&self.memory_size)?,
            snapshots_size: self
                .memory_metrics
                .as_ref()
                .and_then(|m| u128::try_from(m.snapshots_size.0.clone()).ok())
                .unwrap_or(0),
            parent_balance,
        })
    }
}

fn install_mode(mode: InstallMode) -> CanisterInstallMode {
    match mode {
        InstallMode::Install => CanisterInstallMode::Install,
        InstallMode::Upgrade { skip_pre_upgrade } => {
            CanisterInstallMode::Upgrade(skip_pre_upgrade.then_some(UpgradeFlags {
                skip_pre_upgrade: Some(true),
                wasm_memory_persistence: None,
            }))
        }
    }
}

fn call_error(method: &str, e: impl Into<ic_cdk::call::Error>) -> CallError {
    match e.into() {
        ic_cdk::call::Error::CallRejected(r) => CallError::new(method, r.raw_reject_code(), r.reject_message()),
        other => CallError::new(method, 0, other.to_string()),
    }
}

/// A bounded-wait call to the management canister with `cycles` attached, counted in `calls_out` while it awaits.
async fn management_call(method: &str, args: impl CandidType, cycles: u128) -> Result<Response, CallError> {
    let _out = CallOut::new();
    Call::bounded_wait(Principal::management_canister(), method)
        .with_arg(args)
        .with_cycles(cycles)
        .await
        .map_err(|e| call_error(method, e))
}

fn decode<R: CandidType + DeserializeOwned>(method: &str, reply: Response) -> Result<R, CallError> {
    reply.candid().map_err(|e| call_error(method, e))
}

async fn bounded_unit_call(method: &str, child: Principal) -> Result<(), CallError> {
    management_call(method, CanisterIdRecord { canister_id: child }, 0)
        .await
        .map(|_| ())
}

impl Ic for CdkIc {
    fn now(&self) -> u64 {
        ic_cdk::api::time()
    }

    fn self_id(&self) -> Principal {
        ic_cdk::api::canister_self()
    }

    fn self_running(&self) -> bool {
        matches!(ic_cdk::api::canister_status(), ic_cdk::api::CanisterStatusCode::Running)
    }

    /// Arms the tick after `delay` unless one is already armed to fire by then, and the watchdog unless it runs.
    /// Allowed in init and post_upgrade (it only sets the global timer); the tick runs as its own timer execution.
    ///
    /// A recorded tick whose time has passed is not trusted (its execution may have trapped, which also rolls back
    /// the reset of `ARMED`): a new one is armed. A duplicate tick is harmless: launches go through the same
    /// admission.
    fn schedule_tick(&self, delay: Duration) {
        let on_tick = self.on_tick;
        if WATCHDOG.get().is_none() {
            let id = ic_cdk_timers::set_timer_interval(self.watchdog, move || async move { on_tick() });
            WATCHDOG.set(Some(id));
        }
        let now = ic_cdk::api::time();
        let due = now.saturating_add(delay.as_nanos() as u64);
        if let Some((id, at)) = ARMED.get() {
            if at >= now && at <= due {
                return;
            }
            ic_cdk_timers::clear_timer(id);
        }
        let id = ic_cdk_timers::set_timer(delay, async move {
            ARMED.set(None);
            on_tick();
        });
        ARMED.set(Some((id, due)));
    }

    fn retire_watchdog(&self) {
        if let Some(id) = WATCHDOG.take() {
            ic_cdk_timers::clear_timer(id);
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        // Protected: it lives as long as its calls keep the current method open.
        ic_cdk::futures::spawn(task)
    }

    async fn create(&self, controllers: Vec<Principal>, cycles: u128) -> Result<Principal, CallError> {
        let _out = CallOut::new();
        let arg = ic_cdk_management_canister::CreateCanisterArgs {
            settings: Some(CanisterSettings {
                controllers: Some(controllers),
                ..Default::default()
            }),
        };
        ic_cdk_management_canister::create_canister_with_extra_cycles(&arg, cycles)
            .await
            .map(|r| r.canister_id)
            .map_err(|e| call_error("create_canister", e))
    }

    async fn stop(&self, child: Principal) -> Result<(), CallError> {
        bounded_unit_call("stop_canister", child).await
    }

    async fn install(
        &self,
        child: Principal,
        mode: InstallMode,
        wasm: Cow<'static, [u8]>,
        arg: Vec<u8>,
    ) -> Result<(), CallError> {
        let args = InstallCodeArgs {
            mode: install_mode(mode),
            canister_id: child,
            wasm_module: wasm.into_owned(),
            arg,
            sender_canister_version: None,
        };
        management_call("install_code", args, 0).await.map(|_| ())
    }

    async fn start(&self, child: Principal) -> Result<(), CallError> {
        bounded_unit_call("start_canister", child).await
    }

    async fn take_snapshot(&self, child: Principal, replace: Option<Vec<u8>>) -> Result<Vec<u8>, CallError> {
        const METHOD: &str = "take_canister_snapshot";
        let args = TakeCanisterSnapshotArgs {
            canister_id: child,
            replace_snapshot: replace,
            uninstall_code: None,
            sender_canister_version: None,
        };
        let snapshot: Snapshot = decode(METHOD, management_call(METHOD, args, 0).await?)?;
        Ok(snapshot.id)
    }

    async fn load_snapshot(&self, child: Principal, id: Vec<u8>) -> Result<(), CallError> {
        let args = LoadCanisterSnapshotArgs {
            canister_id: child,
            snapshot_id: id,
            sender_canister_version: None,
        };
        management_call("load_canister_snapshot", args, 0).await.map(|_| ())
    }

    async fn upload_chunk(&self, chunk: Vec<u8>) -> Result<Vec<u8>, CallError> {
        const METHOD: &str = "upload_chunk";
        let args = UploadChunkArgs {
            canister_id: ic_cdk::api::canister_self(),
            chunk,
        };
        let hash: ChunkHash = decode(METHOD, management_call(METHOD, args, 0).await?)?;
        Ok(hash.hash)
    }

    async fn clear_chunk_store(&self) -> Result<(), CallError> {
        bounded_unit_call("clear_chunk_store", ic_cdk::api::canister_self()).await
    }

    async fn install_chunked(
        &self,
        child: Principal,
        mode: InstallMode,
        chunks: Vec<Vec<u8>>,
        module_hash: Vec<u8>,
        arg: Vec<u8>,
    ) -> Result<(), CallError> {
        let args = InstallChunkedCodeArgs {
            mode: install_mode(mode),
            target_canister: child,
            store_canister: Some(ic_cdk::api::canister_self()),
            chunk_hashes_list: chunks.into_iter().map(|hash| ChunkHash { hash }).collect(),
            wasm_module_hash: module_hash,
            arg,
            sender_canister_version: None,
        };
        management_call("install_chunked_code", args, 0).await.map(|_| ())
    }

    async fn deposit(&self, child: Principal, cycles: u128) -> Result<(), CallError> {
        let args = CanisterIdRecord { canister_id: child };
        management_call("deposit_cycles", args, cycles).await.map(|_| ())
    }

    async fn health(&self, child: Principal, method: String) -> Result<(), CallError> {
        let _out = CallOut::new();
        let reply = Call::bounded_wait(child, &method)
            .change_timeout(crate::gates::HEALTH_TIMEOUT_SECS)
            .await
            .map_err(|e| call_error(&method, e))?;
        match reply.candid::<Result<candid::Reserved, candid::Reserved>>() {
            Ok(Err(_)) => Err(CallError::new(&method, 0, "the child replied Err")),
            _ => Ok(()),
        }
    }

    async fn status(&self, child: Principal) -> Result<ChildStatus, CallError> {
        const METHOD: &str = "canister_status";
        let args = CanisterIdRecord { canister_id: child };
        let r: StatusReply = decode(METHOD, management_call(METHOD, args, 0).await?)?;
        Ok(ChildStatus {
            status: match r.status {
                CanisterStatusType::Running => RunStatus::Running,
                CanisterStatusType::Stopping => RunStatus::Stopping,
                CanisterStatusType::Stopped => RunStatus::Stopped,
            },
            funds: r.funds(ic_cdk::api::canister_cycle_balance()),
            module_hash: r.module_hash,
            controllers: r.settings.map(|s| s.controllers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reply_decodes_from_a_full_canister_status_result() {
        // A reply with every field the types crate knows; the minimal struct must take what it needs and skip the rest.
        let full = ic_management_canister_types::CanisterStatusResult {
            status: CanisterStatusType::Stopped,
            ready_for_migration: false,
            version: 7,
            settings: ic_management_canister_types::DefiniteCanisterSettings {
                freezing_threshold: 2_592_000u32.into(),
                ..Default::default()
            },
            module_hash: Some(vec![9; 32]),
            memory_size: 5_000u32.into(),
            memory_metrics: ic_management_canister_types::MemoryMetrics {
                wasm_memory_size: 0u32.into(),
                stable_memory_size: 0u32.into(),
                global_memory_size: 0u32.into(),
                wasm_binary_size: 0u32.into(),
                custom_sections_size: 0u32.into(),
                canister_history_size: 0u32.into(),
                wasm_chunk_store_size: 0u32.into(),
                snapshots_size: 2_000u32.into(),
                log_memory_store_size: 0u32.into(),
            },
            cycles: 7_000_000_000_000u64.into(),
            reserved_cycles: 0u32.into(),
            idle_cycles_burned_per_day: 864_000u32.into(),
            query_stats: ic_management_canister_types::QueryStats {
                num_calls_total: 0u32.into(),
                num_instructions_total: 0u32.into(),
                request_payload_bytes_total: 0u32.into(),
                response_payload_bytes_total: 0u32.into(),
            },
        };
        let bytes = candid::encode_one(&full).unwrap();
        let r: StatusReply = candid::decode_one(&bytes).unwrap();
        assert_eq!(r.status, CanisterStatusType::Stopped);
        assert_eq!(r.module_hash, Some(vec![9; 32]));
        let funds = Funds {
            balance: 7_000_000_000_000,
            freezing_limit: 864_000 * 30,
            memory_size: 5_000,
            snapshots_size: 2_000,
            parent_balance: 3,
        };
        assert_eq!(r.funds(3), Some(funds), "30 days of the idle burn");
        assert_eq!(r.settings.map(|s| s.controllers), Some(vec![]));
    }

    #[test]
    fn status_reply_decodes_without_settings() {
        #[derive(CandidType)]
        struct Minimal {
            status: CanisterStatusType,
            module_hash: Option<Vec<u8>>,
        }
        let bytes = candid::encode_one(Minimal {
            status: CanisterStatusType::Running,
            module_hash: None,
        })
        .unwrap();
        let r: StatusReply = candid::decode_one(&bytes).unwrap();
        assert!(r.settings.is_none() && r.module_hash.is_none());
        assert_eq!(
            r.funds(3),
            None,
            "unknown: the rollout goes on and the IC's own check applies"
        );
    }
}
