//! Types of the parent canister interface.
//!
//! Timestamps are IC time in nanoseconds since the Unix epoch. Hashes are SHA-256 of the gzipped child module exactly
//! as installed, i.e. the value the IC reports as `module_hash`.

use candid::{CandidType, Nat, Principal};
use serde::{Deserialize, Serialize};

/// Argument of the parent's `init` and `post_upgrade` (`opt ParentArg`). Every field is optional: a missing field keeps
/// the stored value (or the default on a fresh install).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentArg {
    /// Replaces the admin list (principals allowed to manage the fleet besides the parent's controllers).
    pub admins: Option<Vec<Principal>>,
    /// Replaces the rollout concurrency K (children upgraded at the same time; 0 pauses).
    pub concurrency: Option<u32>,
    /// Replaces the cycles given to each new child on top of the creation fee.
    pub cycles_per_child: Option<Nat>,
    /// Replaces the extra controllers given to each new child besides the parent.
    pub extra_controllers: Option<Vec<Principal>>,
    /// Replaces R, the number of recent releases whose modules the release store keeps (1 to 50; default 5).
    pub keep_releases: Option<u32>,
    /// Replaces whether children are snapshotted before they are upgraded (default `Off`).
    pub snapshot_before_upgrade: Option<SnapshotPolicy>,
    /// Replaces how rollouts are gated (default: no canary wave, no automatic halt).
    pub gates: Option<RolloutGates>,
    /// Replaces the module size (bytes of .wasm.gz) above which children are installed from the parent's chunk
    /// store (default 1.5 MiB; at most the parent's `MAX_CHUNKED_INSTALL_ABOVE`).
    pub chunked_install_above: Option<u64>,
    /// Replaces how children are kept able to pay for their install.
    pub cycles: Option<CyclesPolicy>,
}

/// Before it stops a child, a rollout reads the child's balance: the child needs its freezing limit, plus what the IC
/// reserves for an install (300 B instructions: the parent's `INSTALL_RESERVE` cycles on a 13-node subnet), plus
/// `margin`; when a snapshot comes first, also the snapshot's charge (2 B instructions plus one per byte of the child's
/// memory) and the freezing limit of the memory it adds. A restore needs the load's charge (about the same as a
/// snapshot's) instead of the install's reservation. A child short of that is topped up with `deposit_cycles` (at most
/// `max_top_up_per_child` per operation, and only while the parent keeps `parent_reserve`); otherwise it fails with
/// `InsufficientCycles` and is never stopped.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclesPolicy {
    /// Default 100 B (0.1 T). Raise it on subnets larger than 13 nodes, where the install costs more.
    pub margin: u128,
    /// Default 1 T; 0 never tops up.
    pub max_top_up_per_child: u128,
    /// Default 5 T.
    pub parent_reserve: u128,
}

/// How rollouts are gated. A canary wave upgrades a few children first, waits `bake_secs`, calls each canary's
/// `health_method`, and only then lets the rest of the fleet go; a canary that fails its upgrade or its health check
/// halts the rollout before any other child is touched. `halt_after` halts any rollout whose failures reach it.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RolloutGates {
    /// How many canaries (the first children the planner reaches that need the release, in principal order; at most 100). `None`: no canary
    /// wave.
    pub canary: Option<Share>,
    /// Seconds to wait after the last canary is confirmed before the health checks (at most one week).
    pub bake_secs: u64,
    /// The child method the health check calls with no argument (bounded wait, 30 s). Any reply but `variant { Err }`
    /// is healthy, and the child must still run the release.
    pub health_method: String,
    /// Halt when this many children failed in the rollout, or this per mille of the children attempted (once at least
    /// 10 were). `None`: never.
    pub halt_after: Option<Share>,
}

/// A number of children, or a per mille of a total.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    Count(u32),
    PerMille(u32),
}

/// Where a rollout stands.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum RolloutStage {
    /// Only the canaries are being upgraded.
    Canary,
    /// The canaries are upgraded; the health checks come at `until`.
    Baking { until: u64 },
    /// The canaries' health checks are under way.
    Checking,
    /// Every queued child may go.
    Wave,
}

/// Why and when a rollout halted.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Halted {
    pub reason: String,
    pub at: u64,
}

/// Argument of `rollout_history`: newest first, before `before` (a rollout id).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryArg {
    pub before: Option<u64>,
    /// Page size; 0 or anything above 100 means 100.
    pub limit: u32,
}

/// A rollout that ended or was replaced, as `rollout_history` lists it. The parent keeps the last 1,000.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RolloutRecord {
    pub rollout_id: u64,
    /// The release the fleet was moved from and to.
    #[serde(with = "serde_bytes")]
    pub from: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub to: Vec<u8>,
    /// Who started it (the installer, for a rollout a parent upgrade started).
    pub started_by: Option<Principal>,
    pub started_at: u64,
    /// `None`: replaced by the next rollout before it ended.
    pub finished_at: Option<u64>,
    pub upgraded: u64,
    pub skipped: u64,
    pub verified: u64,
    pub restored: u64,
    pub snapshots: u64,
    pub failures: u64,
    pub halts: u32,
    pub aborted_at: Option<u64>,
    /// Children it topped up before their install, and the cycles it deposited.
    pub top_ups: u64,
    pub cycles_spent: u128,
}

/// One step of an operation and whether its call worked.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    pub step: RolloutStep,
    pub ok: bool,
}

/// One operation on a child, as `child_events` lists it (the parent keeps each child's last 10).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildEvent {
    pub rollout_id: u64,
    pub started_at: u64,
    pub ended_at: u64,
    /// Its steps in order (the last 32).
    pub steps: Vec<StepResult>,
    /// `None`: it left the child where it should be; otherwise the error it failed with.
    pub error: Option<String>,
}

/// Whether a rollout takes an IC snapshot of each child (stopped) before it upgrades it. The rollout keeps one
/// snapshot per child, replacing the one it took before; `restore_snapshots` loads them back.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapshotPolicy {
    #[default]
    Off,
    /// Only the canaries of a gated rollout (see `RolloutGates`).
    Canaries,
    All,
}

/// Which children `restore_snapshots` restores.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Every child whose snapshot this rollout took.
    Rollout(u64),
    /// These children (each must have a snapshot and no operation under way).
    Children(Vec<Principal>),
}

/// A snapshot the parent took of a child before upgrading it.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    #[serde(with = "serde_bytes")]
    pub id: Vec<u8>,
    /// The module hash the child ran when it was taken: the release a restore puts back.
    #[serde(with = "serde_bytes")]
    pub release: Vec<u8>,
    /// The rollout that took it.
    pub rollout: u64,
    pub taken_at: u64,
}

/// The parent's settings, as returned by `settings()`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Principals allowed to manage the fleet besides the parent's controllers.
    pub admins: Vec<Principal>,
    /// At most this many children are being stopped, upgraded or started at the same time (as many more may be in
    /// their final read-only status check); 0 pauses the rollout.
    pub concurrency: u32,
    /// Cycles given to each new child on top of the creation fee.
    pub cycles_per_child: Nat,
    /// Controllers given to each new child besides the parent itself.
    pub extra_controllers: Vec<Principal>,
    /// R: the release store keeps the modules of the R most recent releases, and of any release a child runs.
    pub keep_releases: u32,
    /// Whether children are snapshotted before they are upgraded.
    pub snapshot_before_upgrade: SnapshotPolicy,
    pub gates: RolloutGates,
    /// Modules larger than this (bytes of .wasm.gz) are uploaded once to the parent's own chunk store and installed
    /// with `install_chunked_code` (an inline `install_code` takes at most 2 MiB).
    pub chunked_install_above: u64,
    pub cycles: CyclesPolicy,
}

/// Options of `create_children`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildSpec {
    /// Cycles for each new child on top of the creation fee; defaults to `Settings::cycles_per_child`.
    pub cycles: Option<Nat>,
}

/// Result of `create_children`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreateChildrenResult {
    /// Every child that was created, in its recorded state (`Failed` with `last_error` if its install failed).
    pub created: Vec<ChildInfo>,
    /// The first `create_canister` failure, if some children could not be created.
    pub error: Option<ParentError>,
}

/// Options of `retry_child`, for the one operation it queues.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOptions {
    /// Upgrade with `skip_pre_upgrade = opt true`: the child's current module does not run its `pre_upgrade` (for
    /// a module whose `pre_upgrade` traps). Only safe for a module that keeps nothing on the heap that its
    /// `pre_upgrade` would have saved. Default: false.
    pub skip_pre_upgrade: Option<bool>,
}

/// Options of `register_child`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterOptions {
    /// Adopt the canister even though it runs no release this parent has shipped (see `releases()`). The rollout
    /// will then install the child over whatever module it runs, keeping its stable memory: only for a canister whose
    /// stable memory holds this child's layout, or none. (Our child refuses to upgrade over a stable memory it does
    /// not recognise, so the upgrade fails and the canister keeps its module and data; other modules may not.)
    /// Default: false.
    pub force: Option<bool>,
}

/// Argument of `list_children`: children are listed in principal order, starting after `start_after`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ListChildrenArg {
    /// Continue after this principal (the last one of the previous page); `None` starts at the beginning.
    pub start_after: Option<Principal>,
    /// Page size; 0 or anything above the parent's `MAX_PAGE` means `MAX_PAGE` (as the child's `list_members`).
    pub limit: u32,
}

/// One child as the parent records it.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    pub canister_id: Principal,
    /// The module hash the child was last confirmed to run (`None`: unknown or empty).
    pub installed_hash: Option<Vec<u8>>,
    pub state: ChildState,
    /// The error of the last failed operation on this child.
    pub last_error: Option<String>,
    /// Operations started on this child since it was last planned (each resume or retry counts).
    pub attempts: u32,
    pub created_at: u64,
    pub updated_at: u64,
    /// Why the child is `Failed` (`None` in every other state).
    pub failure: Option<FailureKind>,
    /// The snapshot the last rollout with snapshots took before upgrading this child.
    pub snapshot: Option<SnapshotInfo>,
}

/// How a failed child was left. A child never ends `Failed` while it may be stopped: the parent starts it again
/// until it runs, unless it can no longer control it.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The child was last seen running (on the module `installed_hash` names), just not on the release.
    Running,
    /// The parent can no longer control the child (it is not a controller, or the canister is gone), so it cannot
    /// tell or change whether the child runs.
    LostControl,
    /// The child could not pay for its install or restore (`needed` = its freezing limit + the install's reservation
    /// or the load's charge + the policy's margin, + a snapshot's cost if one comes first; it had `available`) and the
    /// parent could not top it up. It was left running, not upgraded.
    InsufficientCycles { needed: u128, available: u128 },
}

/// Where a child stands relative to the release the parent carries.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChildState {
    /// Confirmed to run the parent's release.
    UpToDate,
    /// Runs another module and is not queued yet (the rollout planner has not reached it).
    Outdated,
    /// Queued for an upgrade.
    Pending,
    /// An operation is under way (the child is locked) at `step`, which started at `since`.
    Upgrading { step: RolloutStep, since: u64 },
    /// The last operation failed; see `last_error`. `retry_failed` re-queues it.
    Failed,
}

/// One step of a child operation.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutStep {
    /// `stop_canister`.
    Stopping,
    /// `install_code` in upgrade mode.
    Installing,
    /// `install_code` in install mode (a new, empty child).
    InstallingNew,
    /// `start_canister` (always follows a stop, whether the stop or the install worked or not).
    Starting,
    /// `canister_status` after the start: the child must be running the release.
    Confirming,
    /// `canister_status` to find out where an interrupted operation stands.
    Rechecking,
    /// `take_canister_snapshot` of the stopped child before its install (`snapshot_before_upgrade`).
    TakingSnapshot,
    /// `load_canister_snapshot` into the stopped child (`restore_snapshots`).
    LoadingSnapshot,
    /// A canary's health check: a call to the child's health method.
    CheckingHealth,
    /// `canister_status` before the stop: where the child stands and whether it can pay for its install.
    CheckingCycles,
    /// `deposit_cycles`: the parent tops the child up before stopping it.
    ToppingUp,
}

/// What the parent's chunk store holds. No child is installed from it until `uploaded == chunks`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChunkStoreStatus {
    /// The release whose chunks it holds or receives (empty while it is being cleared).
    pub release: Vec<u8>,
    /// Chunks uploaded, out of `chunks` (1 MiB each).
    pub uploaded: u32,
    pub chunks: u32,
    /// The last upload or clear that failed; the parent tries again every minute.
    pub error: Option<String>,
}

/// A child with an operation under way.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InFlightChild {
    pub canister_id: Principal,
    pub step: RolloutStep,
    pub since: u64,
    pub attempts: u32,
    /// Set while the operation waits for its backoff before retrying `step` (a child found stopped is started again,
    /// 1 min, 2 min, ... up to 1 h apart, until it runs).
    pub retry_at: Option<u64>,
}

/// A child whose last operation failed.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildFailure {
    pub canister_id: Principal,
    pub error: String,
    pub attempts: u32,
    pub updated_at: u64,
    pub kind: FailureKind,
}

/// Progress of the rollout of the parent's release, as returned by `rollout_status()`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RolloutStatus {
    /// The release being rolled out (the child the parent carries).
    pub release: crate::release::ReleaseInfo,
    /// Increases with every new rollout (a new release, `start_rollout`).
    pub rollout_id: u64,
    pub started_at: u64,
    /// Set once nothing is planned, queued or in flight.
    pub finished_at: Option<u64>,
    /// The planner has registry entries left to read. It reads them as slots free up: the registry is the queue.
    pub planning: bool,
    /// Nothing new starts: `pause_rollout`, or concurrency 0.
    pub paused: bool,
    pub concurrency: u32,
    pub total_children: u64,
    /// Children the registry has on the release; `None` after an upgrade from a parent that did not count them, until
    /// they are counted.
    pub up_to_date: Option<u64>,
    /// Children waiting for an operation: queued ones, and those the planner has yet to reach that are not on the
    /// release (counted from the children per module; a verifying or restoring rollout counts queued ones only).
    pub pending: u64,
    /// Children locked by an operation under way (see `Settings::concurrency`).
    pub in_flight: u64,
    /// Children whose last operation failed.
    pub failed: u64,
    /// Children upgraded by this rollout.
    pub upgraded: u64,
    /// Children the planner found already on the release (no call made).
    pub skipped: u64,
    /// This rollout re-checks every child (`verify_fleet`) instead of trusting the registry.
    pub verify: bool,
    /// Children found running the release by a re-check and left alone (in a `verify_fleet` rollout, every child
    /// that was up to date).
    pub verified: u64,
    /// Snapshots this rollout took before upgrading a child.
    pub snapshots: u64,
    /// A restoring rollout (`restore_snapshots`): it only restores; queued upgrades were dropped.
    pub restore: bool,
    /// Set when it restores the snapshots rollout `restore_from` took.
    pub restore_from: Option<u64>,
    pub stage: RolloutStage,
    /// Its canaries (see `RolloutGates`).
    pub canaries: Vec<Principal>,
    /// Set while halted: nothing new starts until `resume_rollout`; operations under way finish.
    pub halted: Option<Halted>,
    /// Set once `abort_rollout` dropped its queued children.
    pub aborted_at: Option<u64>,
    /// Operations it launched on queued children, and those that ended failed.
    pub attempted: u64,
    pub failures_in_rollout: u64,
    pub started_by: Option<Principal>,
    /// Children per hour over its last (up to 64) operations; `None` until two have ended.
    pub rate_per_hour: Option<f64>,
    /// Seconds until the pending and locked children are done at that rate (an estimate; `None` without a rate).
    pub eta_secs: Option<u64>,
    /// Children this rollout restored from their snapshot (their writes since the snapshot are gone).
    pub restored: u64,
    /// The parent's chunk store, while the target is installed from chunks or the store still holds some.
    pub chunk_store: Option<ChunkStoreStatus>,
    /// Children this rollout topped up before their install, and the cycles it deposited into them.
    pub top_ups: u64,
    pub cycles_spent: u128,
    pub in_flight_children: Vec<InFlightChild>,
    /// The first failures in principal order (at most the parent's `MAX_LISTED_FAILURES`).
    pub failures: Vec<ChildFailure>,
}

/// A child release the parent has shipped (carried at some point), as returned by `releases()`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReleaseRecord {
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
    pub size: u64,
    pub version: String,
    /// When a parent carrying this release was first installed.
    pub first_seen: u64,
    /// The module is in the parent's release store, so `rollout_release` can target it. The store keeps the
    /// `keep_releases` most recent releases and any release a child runs.
    pub stored: bool,
    /// Children the registry has on this release; `None` while the parent is still counting (after an upgrade from a
    /// parent that did not count).
    pub children: Option<u64>,
}

/// Every expected failure of a parent endpoint. Calls that fail with an error change nothing unless stated.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ParentError {
    /// The caller is neither a controller of the parent nor an admin.
    NotAuthorized { caller: Principal },
    /// The parent is not a controller of this canister.
    NotController { canister_id: Principal },
    /// The canister is not in the parent's registry.
    UnknownChild { canister_id: Principal },
    /// The canister is already in the parent's registry.
    AlreadyRegistered { canister_id: Principal },
    /// `restore_snapshots`: the parent never took a snapshot of this child (or none in the rollout named).
    NoSnapshot { canister_id: Principal },
    /// `register_child` refused a canister that runs no release this parent has shipped (its stable memory may hold
    /// another layout, which an upgrade to the child would not keep). `force` overrides.
    UnknownModule {
        canister_id: Principal,
        module_hash: Vec<u8>,
    },
    /// An operation on this child is under way; try again later.
    ChildBusy { canister_id: Principal, step: RolloutStep },
    /// An argument is out of range or malformed.
    InvalidArgument { reason: String },
    /// `rollout_release`: no release with this hash was ever carried by this parent (see `releases()`).
    UnknownRelease { hash: Vec<u8> },
    /// `rollout_release`: the release's module is no longer in the release store (see `keep_releases`).
    ReleaseNotStored { hash: Vec<u8> },
    /// A management canister call failed. `code` is the IC reject code (0 if the call was never sent).
    CallFailed { method: String, code: u32, message: String },
}

impl std::fmt::Display for ParentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParentError::NotAuthorized { caller } => write!(f, "caller {caller} is not authorized"),
            ParentError::NotController { canister_id } => {
                write!(f, "the parent is not a controller of {canister_id}")
            }
            ParentError::UnknownChild { canister_id } => write!(f, "unknown child {canister_id}"),
            ParentError::AlreadyRegistered { canister_id } => {
                write!(f, "child {canister_id} is already registered")
            }
            ParentError::NoSnapshot { canister_id } => write!(f, "no snapshot of {canister_id} to restore"),
            ParentError::UnknownModule {
                canister_id,
                module_hash,
            } => write!(
                f,
                "{canister_id} runs module {}, which is no release this parent has shipped",
                hex(module_hash)
            ),
            ParentError::ChildBusy { canister_id, step } => {
                write!(f, "child {canister_id} is busy ({step:?})")
            }
            ParentError::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            ParentError::UnknownRelease { hash } => write!(f, "release {} is unknown to this parent", hex(hash)),
            ParentError::ReleaseNotStored { hash } => write!(f, "release {} is no longer stored", hex(hash)),
            ParentError::CallFailed { method, code, message } => {
                write!(f, "{method} failed (reject code {code}): {message}")
            }
        }
    }
}

impl std::error::Error for ParentError {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
