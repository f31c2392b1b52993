//! Every effect the parent has on the outside world, behind one trait: management calls, time, identity, timers.
//!
//! `CdkIc` is the real thing. Native tests use a fake (`testing::FakeIc`) that simulates the children.

use candid::{CandidType, Principal};
use ic_cdk::call::Call;
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, CanisterSettings, CanisterStatusType, InstallCodeArgs, UpgradeFlags,
};
use serde::Deserialize;
use shared::parent::ParentError;
use std::future::Future;
use std::time::Duration;

/// IC reject code SYS_UNKNOWN: a bounded-wait call whose outcome is unknown (it may or may not have taken effect).
pub const SYS_UNKNOWN: u32 = 6;

/// A failed call. `code` is the IC reject code, or 0 if the call was never sent or its reply did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub method: String,
    pub code: u32,
    pub message: String,
}

impl CallError {
    pub fn new(method: &str, code: u32, message: impl Into<String>) -> Self {
        Self {
            method: method.to_string(),
            code,
            message: message.into(),
        }
    }

    /// The call may or may not have taken effect: re-check with `canister_status`.
    pub fn is_unknown(&self) -> bool {
        self.code == SYS_UNKNOWN
    }

    /// A reject because the parent is not a controller of the target.
    pub fn is_not_controller(&self) -> bool {
        (3..=5).contains(&self.code) && self.message.to_lowercase().contains("controller")
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed (reject code {}): {}",
            self.method, self.code, self.message
        )
    }
}

impl From<CallError> for ParentError {
    fn from(e: CallError) -> Self {
        ParentError::CallFailed {
            method: e.method,
            code: e.code,
            message: e.message,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Stopping,
    Stopped,
}

/// What the parent needs from `canister_status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildStatus {
    pub status: RunStatus,
    pub module_hash: Option<Vec<u8>>,
    /// `None` if the reply carried no settings.
    pub controllers: Option<Vec<Principal>>,
}

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
    /// Arms the rollout tick after `delay` (deduplicated; see `driver::schedule_tick`).
    fn schedule_tick(&self, delay: Duration);
    /// Runs `task` concurrently, within the current call context (it must only await calls made through `self`).
    fn spawn(&self, task: impl Future<Output = ()> + 'static);
    /// `create_canister` with these controllers and `cycles` on top of the creation fee.
    fn create(&self, controllers: Vec<Principal>, cycles: u128) -> impl Future<Output = Result<Principal, CallError>>;
    fn stop(&self, child: Principal) -> impl Future<Output = Result<(), CallError>>;
    /// `install_code` of the embedded release with `arg`.
    fn install(&self, child: Principal, mode: InstallMode, arg: Vec<u8>)
        -> impl Future<Output = Result<(), CallError>>;
    fn start(&self, child: Principal) -> impl Future<Output = Result<(), CallError>>;
    fn status(&self, child: Principal) -> impl Future<Output = Result<ChildStatus, CallError>>;
}

/// The real IC, through ic-cdk.
///
/// Every management call that can be retried or re-checked is bounded-wait (300 s at most), so the parent's open call
/// contexts always close and the parent can be stopped for its own upgrade; a timeout comes back as SYS_UNKNOWN and
/// the rollout re-checks the child. `create_canister` alone is unbounded-wait: an unknown outcome there could leak a
/// canister (and its cycles) that the parent never learns about.
#[derive(Clone, Copy, Debug, Default)]
pub struct CdkIc;

/// The part of `canister_status`'s reply the parent reads. Candid ignores the other fields, so this keeps decoding
/// across replica versions that add fields (facts §0.3).
#[derive(CandidType, Deserialize)]
struct StatusReply {
    status: CanisterStatusType,
    module_hash: Option<Vec<u8>>,
    settings: Option<ControllersOnly>,
}

#[derive(CandidType, Deserialize)]
struct ControllersOnly {
    controllers: Vec<Principal>,
}

fn call_error(method: &str, e: impl Into<ic_cdk::call::Error>) -> CallError {
    match e.into() {
        ic_cdk::call::Error::CallRejected(r) => CallError::new(method, r.raw_reject_code(), r.reject_message()),
        other => CallError::new(method, 0, other.to_string()),
    }
}

async fn bounded_unit_call(method: &str, child: Principal) -> Result<(), CallError> {
    Call::bounded_wait(Principal::management_canister(), method)
        .with_arg(CanisterIdRecord { canister_id: child })
        .await
        .map(|_| ())
        .map_err(|e| call_error(method, e))
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

    fn schedule_tick(&self, delay: Duration) {
        crate::driver::schedule_tick(delay)
    }

    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        // Protected: it lives as long as its calls keep the current method open.
        ic_cdk::futures::spawn(task)
    }

    async fn create(&self, controllers: Vec<Principal>, cycles: u128) -> Result<Principal, CallError> {
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

    async fn install(&self, child: Principal, mode: InstallMode, arg: Vec<u8>) -> Result<(), CallError> {
        let args = InstallCodeArgs {
            mode: match mode {
                InstallMode::Install => CanisterInstallMode::Install,
                InstallMode::Upgrade { skip_pre_upgrade } => {
                    CanisterInstallMode::Upgrade(skip_pre_upgrade.then_some(UpgradeFlags {
                        skip_pre_upgrade: Some(true),
                        wasm_memory_persistence: None,
                    }))
                }
            },
            canister_id: child,
            wasm_module: crate::release::CHILD_WASM_GZ.to_vec(),
            arg,
            sender_canister_version: None,
        };
        Call::bounded_wait(Principal::management_canister(), "install_code")
            .with_arg(&args)
            .await
            .map(|_| ())
            .map_err(|e| call_error("install_code", e))
    }

    async fn start(&self, child: Principal) -> Result<(), CallError> {
        bounded_unit_call("start_canister", child).await
    }

    async fn status(&self, child: Principal) -> Result<ChildStatus, CallError> {
        const METHOD: &str = "canister_status";
        let reply = Call::bounded_wait(Principal::management_canister(), METHOD)
            .with_arg(CanisterIdRecord { canister_id: child })
            .await
            .map_err(|e| call_error(METHOD, e))?;
        let r: StatusReply = reply.candid().map_err(|e| call_error(METHOD, e))?;
        Ok(ChildStatus {
            status: match r.status {
                CanisterStatusType::Running => RunStatus::Running,
                CanisterStatusType::Stopping => RunStatus::Stopping,
                CanisterStatusType::Stopped => RunStatus::Stopped,
            },
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
            settings: Default::default(),
            module_hash: Some(vec![9; 32]),
            memory_size: 1u32.into(),
            memory_metrics: ic_management_canister_types::MemoryMetrics {
                wasm_memory_size: 0u32.into(),
                stable_memory_size: 0u32.into(),
                global_memory_size: 0u32.into(),
                wasm_binary_size: 0u32.into(),
                custom_sections_size: 0u32.into(),
                canister_history_size: 0u32.into(),
                wasm_chunk_store_size: 0u32.into(),
                snapshots_size: 0u32.into(),
                log_memory_store_size: 0u32.into(),
            },
            cycles: 0u32.into(),
            reserved_cycles: 0u32.into(),
            idle_cycles_burned_per_day: 0u32.into(),
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
    }

    #[test]
    fn not_controller_rejects_are_recognised() {
        let e = CallError::new(
            "canister_status",
            5,
            "Only controllers of canister aaaaa-aa can call ic00 method canister_status",
        );
        assert!(e.is_not_controller());
        assert!(!CallError::new("canister_status", 3, "Canister xyz not found").is_not_controller());
        assert!(!CallError::new("canister_status", 2, "controller queue full").is_not_controller());
    }
}
