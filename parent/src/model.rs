//! Values kept in stable memory.
//!
//! Upgrade compatibility: every value is CBOR (`shared::cbor`) with `Bound::Unbounded`, so it can grow. To stay readable by
//! the next release and by the one after it:
//! - add fields only with `#[serde(default)]` (or as `Option`), so entries written by older code still decode;
//! - never rename or remove a field or an enum variant that may be stored (CBOR uses the names); retire it instead;
//! - a new enum variant cannot be read by older code, so a downgrade past its introduction is not supported.
//!
//! Unknown fields are ignored on decode, so a downgrade that only dropped fields still reads newer entries.

use std::borrow::Cow;

use candid::Principal;
use ic_stable_structures::{storable::Bound, Storable};
use serde::{Deserialize, Serialize};

/// K unless configured otherwise.
pub const DEFAULT_CONCURRENCY: u32 = 10;
/// Releases whose modules the release store keeps (besides any a child runs), unless configured otherwise.
pub const DEFAULT_KEEP_RELEASES: u32 = 5;
/// Modules larger than this are installed from the parent's chunk store, unless configured otherwise (the IC takes
/// at most 2 MiB in one `install_code` across subnets).
pub const DEFAULT_CHUNKED_INSTALL_ABOVE: u64 = 1_536 * 1024;

fn default_chunked_install_above() -> u64 {
    DEFAULT_CHUNKED_INSTALL_ABOVE
}

fn default_keep_releases() -> u32 {
    DEFAULT_KEEP_RELEASES
}
/// Cycles given to a new child on top of the creation fee, unless configured otherwise.
pub const DEFAULT_CYCLES_PER_CHILD: u128 = 1_000_000_000_000;

/// What admins set (memory `SETTINGS`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Principals allowed to administer the parent besides its controllers.
    pub admins: Vec<Principal>,
    /// K: children in flight at most; 0 pauses the rollout.
    pub concurrency: u32,
    /// Cycles attached to each `create_canister`, on top of the creation fee.
    pub cycles_per_child: u128,
    /// Controllers every new child gets besides the parent.
    pub extra_controllers: Vec<Principal>,
    /// R: the release store keeps the modules of the R most recent releases, and of any release a child runs.
    #[serde(default = "default_keep_releases")]
    pub keep_releases: u32,
    #[serde(default)]
    pub snapshot_before_upgrade: SnapshotPolicy,
    #[serde(default)]
    pub gates: Gates,
    /// Modules larger than this (in bytes, as installed) go through the chunk store.
    #[serde(default = "default_chunked_install_above")]
    pub chunked_install_above: u64,
    #[serde(default)]
    pub cycles: CyclesPolicy,
}

/// How a rollout makes sure a child can pay for its install before it is stopped (`set_cycles_policy`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclesPolicy {
    /// What a child must keep beyond its freezing limit and the install's reservation (`gates::INSTALL_RESERVE`).
    pub margin: u128,
    /// The most the parent deposits into one child in one operation; 0 never tops up.
    pub max_top_up_per_child: u128,
    /// The parent tops up only while its own balance stays at or above this.
    pub parent_reserve: u128,
}

impl Default for CyclesPolicy {
    fn default() -> Self {
        Self {
            margin: 100_000_000_000,
            max_top_up_per_child: 1_000_000_000_000,
            parent_reserve: 5_000_000_000_000,
        }
    }
}

/// A child that could not pay for its install: it needed this many cycles and had that many.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub needed: u128,
    pub available: u128,
}

/// How a rollout is gated (`set_rollout_gates`): a canary wave with a health check, and an automatic halt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Gates {
    /// Upgrade this many children first (at most `gates::MAX_CANARIES`), then wait `bake_secs`, health-check them,
    /// and only then the rest. `None`: no canary wave.
    #[serde(default)]
    pub canary: Option<Share>,
    #[serde(default)]
    pub bake_secs: u64,
    /// The child method the health check calls (Candid `()`); a reply that is not `variant { Err }` is healthy.
    #[serde(default = "default_health_method")]
    pub health_method: String,
    /// Halt once this many children failed in the rollout (or this per mille of the children attempted, once at least
    /// `gates::MIN_ATTEMPTS_FOR_RATE` were). `None`: never.
    #[serde(default)]
    pub halt_after: Option<Share>,
}

fn default_health_method() -> String {
    "health".to_string()
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            canary: None,
            bake_secs: 0,
            health_method: default_health_method(),
            halt_after: None,
        }
    }
}

/// A number of children, or a per mille of some total.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    Count(u32),
    PerMille(u32),
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            admins: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            cycles_per_child: DEFAULT_CYCLES_PER_CHILD,
            extra_controllers: Vec::new(),
            keep_releases: DEFAULT_KEEP_RELEASES,
            snapshot_before_upgrade: SnapshotPolicy::Off,
            gates: Gates::default(),
            cycles: CyclesPolicy::default(),
            chunked_install_above: DEFAULT_CHUNKED_INSTALL_ABOVE,
        }
    }
}

shared::storable_as_cbor!(Settings);

/// Runtime bookkeeping (memory `META`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Bumped by every `init`/`post_upgrade`. An operation stamped with an older epoch was cut off by an upgrade:
    /// its callbacks are lost, so the rollout re-checks that child.
    pub epoch: u64,
    /// The id of the next child operation (a lock token: a result for an older id is ignored).
    pub next_op_id: u64,
    /// How far the `RUNNING` index (children per module hash) has been built. Parents before it existed left it
    /// `NotStarted`; the tick counts the registry in batches, and until `Done` the counts are incomplete.
    #[serde(default)]
    pub running_index: IndexProgress,
    /// What the parent's own IC chunk store holds, for `install_chunked_code`.
    #[serde(default)]
    pub chunk_store: ChunkStore,
    /// The child release the installed parent module embeds. Empty in parents before it was recorded: theirs was the
    /// rollout's release (they had no other target).
    #[serde(default, with = "serde_bytes")]
    pub embedded: Vec<u8>,
    /// The epoch of the last install by a parent that keeps `RUNNING` in step with the registry. Any other value than
    /// the epoch before the current one means another module ran in between (a downgrade, then an upgrade back, or a
    /// parent from before this field): its changes never reached the index, so the registry is counted again. 0 in
    /// parents before it was recorded.
    #[serde(default)]
    pub indexed_epoch: u64,
}

/// The chunks of one release uploaded to the parent's own chunk store (modules over
/// `Settings::chunked_install_above` are installed from there). Chunks are uploaded in order; a parent upgrade in the
/// middle goes on from the next one (uploading a chunk again is a no-op on the IC).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkStore {
    /// The release (empty: the store is clear).
    #[serde(with = "serde_bytes")]
    pub release: Vec<u8>,
    /// The hashes of the chunks uploaded so far, in order.
    pub chunks: Vec<serde_bytes::ByteBuf>,
    /// The last upload or clear that failed (it is tried again at the next tick).
    #[serde(default)]
    pub error: Option<String>,
    /// The store may hold chunks nobody counts (a clear was sent and has not succeeded yet): clear it first.
    #[serde(default)]
    pub dirty: bool,
}

/// Progress of building an index over the whole registry in batches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub enum IndexProgress {
    #[default]
    NotStarted,
    /// Entries up to and including this principal are counted (`None`: none yet).
    After(Option<Principal>),
    Done,
}
shared::storable_as_cbor!(Meta);

/// A planner pass over the whole registry in progress: it resumes after `after` when a slot is free. Children before
/// the cursor have been looked at; a parent before the registry became the queue wrote `Pending` for those it chose,
/// and they stay queued.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanCursor {
    pub after: Option<Principal>,
}

/// The current rollout (memory `ROLLOUT`). The default (empty release) means "no rollout yet".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    pub id: u64,
    #[serde(with = "serde_bytes")]
    pub release: Vec<u8>,
    pub started_at: u64,
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// `Some` while the planner still has registry entries to scan.
    #[serde(default)]
    pub plan: Option<PlanCursor>,
    /// Children this rollout upgraded and confirmed.
    #[serde(default)]
    pub upgraded: u64,
    /// Children the planner found already on the release.
    #[serde(default)]
    pub skipped: u64,
    /// A verifying rollout (`verify_fleet`): the planner launches the children the registry has on the release too, and
    /// their operation starts with a `canister_status` re-check instead of being skipped.
    #[serde(default)]
    pub verify: bool,
    /// Children an operation found running the release and left alone (a re-check was all it took).
    #[serde(default)]
    pub verified: u64,
    /// A restoring rollout (`restore_snapshots`): only restores are launched; children queued for an upgrade are
    /// dropped back to idle.
    #[serde(default)]
    pub restore: bool,
    /// Restoring the snapshots rollout `restore_from` took: the planner launches those children's restores.
    #[serde(default)]
    pub restore_from: Option<u64>,
    /// Children this rollout restored from their snapshot.
    #[serde(default)]
    pub restored: u64,
    /// Snapshots this rollout took before upgrading a child.
    #[serde(default)]
    pub snapshots: u64,
    /// Where a gated rollout stands (see `gates.rs`).
    #[serde(default)]
    pub stage: Stage,
    /// The canaries, chosen by the planner: the first children it launched, in principal order.
    #[serde(default)]
    pub canaries: Vec<Principal>,
    /// How many canaries the planner is to choose.
    #[serde(default)]
    pub wanted_canaries: u32,
    /// Nothing new starts while set; `resume_rollout` lifts it.
    #[serde(default)]
    pub halted: Option<Halt>,
    /// `pause_rollout`: nothing new starts until `resume_rollout`.
    #[serde(default)]
    pub paused: bool,
    /// `abort_rollout`: queued children go back to idle, nothing new starts.
    #[serde(default)]
    pub aborted_at: Option<u64>,
    /// Operations this rollout launched on queued children, and those that ended failed.
    #[serde(default)]
    pub attempted: u64,
    #[serde(default)]
    pub failures: u64,
    /// Who started it (the installer, for a rollout started by a parent upgrade).
    #[serde(default)]
    pub started_by: Option<Principal>,
    /// The target before this rollout.
    #[serde(default, with = "serde_bytes")]
    pub from: Vec<u8>,
    /// Times at which its last operations ended (at most `gates::RATE_WINDOW`), for the rate and the ETA.
    #[serde(default)]
    pub recent: Vec<u64>,
    /// Halts it went through.
    #[serde(default)]
    pub halts: u32,
    /// Children it topped up before their install, and the cycles it deposited.
    #[serde(default)]
    pub top_ups: u64,
    #[serde(default)]
    pub cycles_spent: u128,
}

/// A gated rollout's stage: canaries first, then a bake, the health checks, and the rest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    Canary,
    Baking {
        until: u64,
    },
    Checking {
        launched: bool,
    },
    /// Every queued child may go (the only stage of a rollout without canaries).
    #[default]
    Wave,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    pub reason: String,
    pub at: u64,
}

/// A finished (or replaced) rollout, as the history keeps it (memory `HISTORY`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RolloutRecord {
    #[serde(with = "serde_bytes")]
    pub from: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub to: Vec<u8>,
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
    #[serde(default)]
    pub top_ups: u64,
    #[serde(default)]
    pub cycles_spent: u128,
}
shared::storable_as_cbor!(RolloutRecord);

/// One operation on a child as its event log keeps it (memory `EVENTS`, the last `gates::EVENTS_PER_CHILD`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildEvent {
    pub rollout: u64,
    pub started_at: u64,
    pub ended_at: u64,
    /// The steps it performed, in order, and whether each call worked.
    pub steps: Vec<(Step, bool)>,
    /// `None`: it ended with the child where it should be; otherwise the error it failed with.
    pub error: Option<String>,
}
shared::storable_as_cbor!(ChildEvent);
shared::storable_as_cbor!(Rollout);

/// A release the parent has carried (memory `RELEASES`, keyed by its hash). Entries are never removed: they say
/// what the parent shipped. The module itself is in `MODULES` while `stored` (see `State::prune_releases`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReleaseEntry {
    pub size: u64,
    pub version: String,
    pub first_seen: u64,
    /// The module's bytes are in the release store. False for releases recorded before the store existed.
    #[serde(default)]
    pub stored: bool,
}
shared::storable_as_cbor!(ReleaseEntry);

/// One step of a child operation; see `rollout.rs` for the transitions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Stop,
    Install,
    InstallNew,
    Start,
    Confirm,
    Recheck,
    /// `take_canister_snapshot` of the stopped child, before its install.
    TakeSnapshot,
    /// `load_canister_snapshot` into the stopped child (a restore).
    LoadSnapshot,
    /// A call to the child's health method (a canary's health check).
    Health,
    /// `canister_status` before the stop: where the child stands, and whether it can pay for its install.
    Check,
    /// `deposit_cycles` into the child (`Op::top_up`), then `Check` again.
    TopUp,
}

impl Step {
    /// Steps that call `canister_status`.
    pub fn is_status(self) -> bool {
        matches!(self, Step::Confirm | Step::Recheck)
    }
}

impl From<Step> for shared::parent::RolloutStep {
    fn from(s: Step) -> Self {
        use shared::parent::RolloutStep as R;
        match s {
            Step::Stop => R::Stopping,
            Step::Install => R::Installing,
            Step::InstallNew => R::InstallingNew,
            Step::Start => R::Starting,
            Step::Confirm => R::Confirming,
            Step::Recheck => R::Rechecking,
            Step::TakeSnapshot => R::TakingSnapshot,
            Step::LoadSnapshot => R::LoadingSnapshot,
            Step::Health => R::CheckingHealth,
            Step::Check => R::CheckingCycles,
            Step::TopUp => R::ToppingUp,
        }
    }
}

/// How an operation upgrades its child. Set for one operation by `retry_child`: it travels from the queued entry
/// (`ChildEntry::upgrade`) into the lock (`Op::upgrade`) when the operation starts, and ends with the operation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpgradeOptions {
    /// `install_code` runs with `skip_pre_upgrade = opt true`: the old module's `pre_upgrade` is not run.
    #[serde(default)]
    pub skip_pre_upgrade: bool,
    /// The operation restores the child's rollout snapshot (`ChildEntry::snapshot`) instead of upgrading it.
    #[serde(default)]
    pub restore: bool,
}

/// Whether the rollout wants a snapshot of a child before it is upgraded (`Settings::snapshot_before_upgrade`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapshotPolicy {
    #[default]
    Off,
    /// Only the canaries of a gated rollout.
    Canaries,
    All,
}

/// Where an operation stands with its snapshot.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapshotStage {
    /// No snapshot for this operation.
    #[default]
    None,
    /// One is to be taken before the install.
    Wanted,
    /// Taken: the install may go ahead.
    Taken,
}

/// The snapshot a rollout took of a child before upgrading it: one slot per child, replaced by the next.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    #[serde(with = "serde_bytes")]
    pub id: Vec<u8>,
    /// The module hash the child ran when the snapshot was taken: what a restore puts back.
    #[serde(with = "serde_bytes")]
    pub release: Vec<u8>,
    /// The rollout that took it.
    pub rollout: u64,
    pub taken_at: u64,
}

/// A child operation under way: the per-child lock.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Lock token; see `Meta::next_op_id`.
    pub id: u64,
    /// The epoch the current step was launched in; see `Meta::epoch`.
    pub epoch: u64,
    pub step: Step,
    /// When the current step was launched. A lock older than `rollout::LOCK_TIMEOUT_NS` is stale.
    pub since: u64,
    /// Errors of earlier steps of this operation, reported if it ends in failure.
    #[serde(default)]
    pub error: Option<String>,
    /// How this operation upgrades the child (taken from the queued entry).
    #[serde(default)]
    pub upgrade: UpgradeOptions,
    /// Turns of the loops that never give up (restarting a child found stopped, re-checking a child whose state is
    /// unknown); each turn after the first waits `rollout::backoff(retries)`.
    #[serde(default)]
    pub retries: u32,
    /// Set while the operation waits for its backoff: `step` is launched by the first tick after this time.
    #[serde(default)]
    pub wait_until: Option<u64>,
    /// The module hash this operation installs and confirms: the fleet's target when it started. Empty in locks
    /// written before the target could differ from the embedded release, which is what those installed.
    #[serde(default, with = "serde_bytes")]
    pub release: Vec<u8>,
    #[serde(default)]
    pub snapshot: SnapshotStage,
    /// A restore: the snapshot it loads (its `release` is the operation's `release`).
    #[serde(default)]
    pub restore: Option<SnapshotRecord>,
    /// A canary's health check (`Health`, then `Confirm`) instead of an upgrade.
    #[serde(default)]
    pub check: bool,
    /// When the operation started, and the steps it performed so far with whether each call worked (the last
    /// `gates::STEPS_LOGGED`); written to the child's event log when it ends.
    #[serde(default)]
    pub started_at: u64,
    #[serde(default)]
    pub steps: Vec<(Step, bool)>,
    /// `TopUp`: the cycles it deposits. `topped_up`: what this operation deposited so far (counting a deposit whose
    /// outcome is unknown), at most `CyclesPolicy::max_top_up_per_child`.
    #[serde(default)]
    pub top_up: u128,
    #[serde(default)]
    pub topped_up: u128,
    /// Set when the child was last found unable to pay for its install (cleared by the next check that finds it
    /// can); an operation that ends failed with it set failed for that reason.
    #[serde(default)]
    pub shortfall: Option<Shortfall>,
}

impl Op {
    /// Operation `id` of instance `epoch`, launched at `step` at `now`, with nothing else set yet.
    pub fn new(id: u64, epoch: u64, step: Step, now: u64) -> Self {
        Self {
            id,
            epoch,
            step,
            since: now,
            error: None,
            upgrade: UpgradeOptions::default(),
            retries: 0,
            wait_until: None,
            release: Vec::new(),
            snapshot: SnapshotStage::None,
            restore: None,
            check: false,
            started_at: now,
            steps: Vec::new(),
            top_up: 0,
            topped_up: 0,
            shortfall: None,
        }
    }
}

/// Where a child is in the rollout. Kept in sync with the PENDING/IN_FLIGHT/FAILED indexes by `State::put_child`.
// Entries are decoded one at a time from stable memory, never kept in bulk: a boxed `Op` would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing to do or not planned yet; up to date iff `installed_hash` is the release.
    Idle,
    Pending,
    InFlight(Op),
    Failed,
}

/// One child in the registry (memory `CHILDREN`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildEntry {
    /// The module hash the child was last confirmed to run.
    #[serde(default, with = "serde_bytes")]
    pub installed_hash: Option<Vec<u8>>,
    pub phase: Phase,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Operations started since the child was last planned; bounded by `rollout::MAX_ATTEMPTS` for retries.
    #[serde(default)]
    pub attempts: u32,
    pub created_at: u64,
    pub updated_at: u64,
    /// Options for the next operation, set by `retry_child` while the child is `Pending`; moved into the lock when
    /// the operation starts.
    #[serde(default)]
    pub upgrade: UpgradeOptions,
    /// Set with `Failed` when the parent can no longer control the child (not a controller, or the canister is gone);
    /// otherwise a failed child was last seen running.
    #[serde(default)]
    pub lost_control: bool,
    /// The snapshot the last rollout with snapshots took before upgrading this child.
    #[serde(default)]
    pub snapshot: Option<SnapshotRecord>,
    /// Set with `Failed` when the child could not pay for its install (and was left running, not upgraded).
    #[serde(default)]
    pub short_of_cycles: Option<Shortfall>,
}

impl ChildEntry {
    pub fn new(installed_hash: Option<Vec<u8>>, phase: Phase, now: u64) -> Self {
        Self {
            installed_hash,
            phase,
            last_error: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
            upgrade: UpgradeOptions::default(),
            lost_control: false,
            snapshot: None,
            short_of_cycles: None,
        }
    }

    pub fn op(&self) -> Option<&Op> {
        match &self.phase {
            Phase::InFlight(op) => Some(op),
            _ => None,
        }
    }
}

impl Phase {
    pub fn kind(&self) -> PhaseKind {
        match self {
            Phase::Idle => PhaseKind::Idle,
            Phase::Pending => PhaseKind::Pending,
            Phase::InFlight(_) => PhaseKind::InFlight,
            Phase::Failed => PhaseKind::Failed,
        }
    }
}

/// A `Phase` without its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseKind {
    Idle,
    Pending,
    InFlight,
    Failed,
}

/// What the planner, the phase indexes and RUNNING read of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildHead {
    pub installed_hash: Option<Vec<u8>>,
    pub phase: PhaseKind,
}

/// A registry entry as stored: the CBOR of a `ChildEntry`, decoded only when needed. `head` reads the first two
/// fields alone: parsing a whole entry costs several times the B-tree walk to it (PLANNER.md).
///
/// Upgrade compatibility: the bytes are a `ChildEntry`'s CBOR, as every release wrote them; every release so far
/// (0.1.0 on) has `installed_hash` and `phase` as its first two fields. An entry that does not start that way is
/// decoded in full instead, so keep them first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChild(Vec<u8>);

impl StoredChild {
    pub fn new(entry: &ChildEntry) -> Self {
        Self(shared::cbor::encode(entry))
    }

    pub fn decode(&self) -> ChildEntry {
        shared::cbor::decode(&self.0)
    }

    pub fn head(&self) -> ChildHead {
        read_head(&self.0).unwrap_or_else(|| {
            let entry = self.decode();
            ChildHead {
                installed_hash: entry.installed_hash,
                phase: entry.phase.kind(),
            }
        })
    }
}

/// The head, when the entry's map starts with `installed_hash` (null or bytes) and `phase` (a unit variant's name, or
/// a one-key map for `InFlight`).
fn read_head(bytes: &[u8]) -> Option<ChildHead> {
    use minicbor::{data::Type, Decoder};
    let mut d = Decoder::new(bytes);
    d.map().ok()?;
    (d.str().ok()? == "installed_hash").then_some(())?;
    let installed_hash = match d.datatype().ok()? {
        Type::Null => {
            d.null().ok()?;
            None
        }
        _ => Some(d.bytes().ok()?.to_vec()),
    };
    (d.str().ok()? == "phase").then_some(())?;
    let with_op = d.datatype().ok()? == Type::Map;
    if with_op {
        (d.map().ok()? == Some(1)).then_some(())?;
    }
    let phase = match (with_op, d.str().ok()?) {
        (false, "Idle") => PhaseKind::Idle,
        (false, "Pending") => PhaseKind::Pending,
        (true, "InFlight") => PhaseKind::InFlight,
        (false, "Failed") => PhaseKind::Failed,
        _ => return None,
    };
    Some(ChildHead { installed_hash, phase })
}

impl Storable for StoredChild {
    const BOUND: Bound = Bound::Unbounded;

    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }

    fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn from_bytes(bytes: Cow<'_, [u8]>) -> Self {
        Self(bytes.into_owned())
    }
}

/// Value of the IN_FLIGHT index: enough to tell a live lock from an orphaned, stale or due one, and whether it takes
/// a concurrency slot, without decoding the entry.
///
/// Layout (17 bytes, fixed): `epoch` u64 BE, `at` u64 BE, `kind` u8. Releases before `Waiting` existed wrote kinds 0
/// and 1 only, with the same meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockMark {
    pub epoch: u64,
    /// When the current step was launched; for `Waiting`, when it is due.
    pub at: u64,
    pub kind: LockKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// The read-only `Confirm`: holds the lock but not a concurrency slot.
    Confirm = 0,
    /// A step that may change the child: counts against K.
    Slot = 1,
    /// Waiting for a backoff (`Op::wait_until`) with no call out; counts against K.
    Waiting = 2,
}

impl LockMark {
    pub fn of(op: &Op) -> Self {
        let (at, kind) = match op.wait_until {
            Some(due) => (due, LockKind::Waiting),
            // Read-only steps: they hold the lock, not a slot.
            None if matches!(op.step, Step::Confirm | Step::Health) => (op.since, LockKind::Confirm),
            None => (op.since, LockKind::Slot),
        };
        Self {
            epoch: op.epoch,
            at,
            kind,
        }
    }

    /// Counts against K (every kind but the read-only confirm).
    pub fn takes_slot(&self) -> bool {
        self.kind != LockKind::Confirm
    }
}

impl Storable for LockMark {
    const BOUND: Bound = Bound::Bounded {
        max_size: 17,
        is_fixed_size: true,
    };

    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.into_bytes())
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.extend_from_slice(&self.at.to_be_bytes());
        v.push(self.kind as u8);
        v
    }

    fn from_bytes(bytes: Cow<'_, [u8]>) -> Self {
        let b = bytes.as_ref();
        assert_eq!(b.len(), 17, "corrupt LockMark in stable memory");
        Self {
            epoch: u64::from_be_bytes(b[..8].try_into().unwrap()),
            at: u64::from_be_bytes(b[8..16].try_into().unwrap()),
            kind: match b[16] {
                0 => LockKind::Confirm,
                1 => LockKind::Slot,
                2 => LockKind::Waiting,
                k => panic!("corrupt LockMark kind {k} in stable memory"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct ChildEntryV0 {
        phase: Phase,
        created_at: u64,
        updated_at: u64,
    }

    #[derive(Serialize)]
    struct ChildEntryFromTheFuture {
        installed_hash: Option<serde_bytes::ByteBuf>,
        phase: Phase,
        last_error: Option<String>,
        attempts: u32,
        created_at: u64,
        updated_at: u64,
        a_field_added_later: Vec<u64>,
    }

    use shared::cbor::encode as cbor;

    #[test]
    fn child_entry_round_trips_through_cbor() {
        let e = ChildEntry {
            installed_hash: Some(vec![7; 32]),
            phase: Phase::InFlight(Op {
                id: 3,
                epoch: 2,
                step: Step::Install,
                since: 9,
                error: Some("x".into()),
                upgrade: UpgradeOptions {
                    skip_pre_upgrade: true,
                    restore: false,
                },
                retries: 4,
                wait_until: Some(11),
                release: vec![3; 32],
                snapshot: SnapshotStage::Taken,
                restore: None,
                check: true,
                started_at: 6,
                steps: vec![(Step::Stop, true), (Step::Install, false)],
                top_up: 400_000_000_000,
                topped_up: u128::MAX,
                shortfall: Some(Shortfall {
                    needed: 1 << 100,
                    available: 3,
                }),
            }),
            last_error: Some("boom".into()),
            attempts: 2,
            created_at: 1,
            updated_at: 5,
            upgrade: UpgradeOptions {
                skip_pre_upgrade: true,
                restore: false,
            },
            lost_control: true,
            snapshot: Some(SnapshotRecord {
                id: vec![1],
                release: vec![2; 32],
                rollout: 4,
                taken_at: 5,
            }),
            short_of_cycles: Some(Shortfall {
                needed: 9,
                available: 8,
            }),
        };
        let stored = StoredChild::from_bytes(StoredChild::new(&e).into_bytes().into());
        assert_eq!(stored.decode(), e);
        assert_head_read_without_decoding(&stored, &e);
    }

    #[test]
    fn child_entry_reads_entries_with_fewer_fields() {
        let old = cbor(&ChildEntryV0 {
            phase: Phase::Failed,
            created_at: 1,
            updated_at: 2,
        });
        let stored = StoredChild::from_bytes(Cow::Owned(old));
        let e = stored.decode();
        // Written with `phase` first: the head falls back to decoding the entry.
        assert_eq!(read_head(&stored.0), None);
        let head = ChildHead {
            installed_hash: None,
            phase: PhaseKind::Failed,
        };
        assert_eq!(stored.head(), head);
        assert_eq!(
            e,
            ChildEntry {
                installed_hash: None,
                phase: Phase::Failed,
                last_error: None,
                attempts: 0,
                created_at: 1,
                updated_at: 2,
                upgrade: UpgradeOptions::default(),
                lost_control: false,
                snapshot: None,
                short_of_cycles: None,
            }
        );
    }

    #[test]
    fn child_entry_ignores_fields_it_does_not_know() {
        let newer = cbor(&ChildEntryFromTheFuture {
            installed_hash: Some(serde_bytes::ByteBuf::from(vec![1, 2])),
            phase: Phase::Idle,
            last_error: None,
            attempts: 1,
            created_at: 1,
            updated_at: 2,
            a_field_added_later: vec![1, 2, 3],
        });
        let stored = StoredChild::from_bytes(Cow::Owned(newer));
        let e = stored.decode();
        assert_head_read_without_decoding(&stored, &e);
        assert_eq!(e.installed_hash, Some(vec![1, 2]));
        assert_eq!(e.attempts, 1);
    }

    #[test]
    fn a_lock_written_before_upgrade_options_existed_reads_as_default_options() {
        #[derive(Serialize)]
        struct OpV0 {
            id: u64,
            epoch: u64,
            step: Step,
            since: u64,
        }
        #[derive(Serialize)]
        enum PhaseV0 {
            InFlight(OpV0),
        }
        let old = cbor(&ChildEntryV0Locked {
            phase: PhaseV0::InFlight(OpV0 {
                id: 4,
                epoch: 1,
                step: Step::Install,
                since: 3,
            }),
            created_at: 1,
            updated_at: 2,
        });
        #[derive(Serialize)]
        struct ChildEntryV0Locked {
            phase: PhaseV0,
            created_at: u64,
            updated_at: u64,
        }
        let e = StoredChild::from_bytes(Cow::Owned(old)).decode();
        let op = e.op().expect("locked");
        assert_eq!((op.id, op.step), (4, Step::Install));
        assert_eq!(op.upgrade, UpgradeOptions::default());
        assert_eq!(e.upgrade, UpgradeOptions::default());
    }

    fn assert_head_read_without_decoding(stored: &StoredChild, entry: &ChildEntry) {
        let head = read_head(&stored.0).expect("the head is read from the first fields");
        assert_eq!(head.installed_hash, entry.installed_hash);
        assert_eq!(head.phase, entry.phase.kind());
    }

    #[test]
    fn the_head_of_every_phase_is_read_without_decoding_the_entry() {
        let op = Op::new(1, 2, Step::Stop, 3);
        for phase in [Phase::Idle, Phase::Pending, Phase::InFlight(op), Phase::Failed] {
            for hash in [None, Some(vec![9; 32])] {
                let e = ChildEntry::new(hash, phase.clone(), 4);
                assert_head_read_without_decoding(&StoredChild::new(&e), &e);
            }
        }
    }

    #[test]
    fn a_head_that_is_not_the_expected_shape_is_not_read() {
        #[derive(Serialize)]
        struct Unexpected {
            installed_hash: Option<serde_bytes::ByteBuf>,
            phase: &'static str,
        }
        for phase in ["Sleeping", "InFlight"] {
            let bytes = cbor(&Unexpected {
                installed_hash: None,
                phase,
            });
            assert_eq!(read_head(&bytes), None, "{phase}");
        }
        assert_eq!(read_head(&[0xff]), None);
    }

    #[test]
    fn lock_mark_round_trips() {
        for kind in [LockKind::Confirm, LockKind::Slot, LockKind::Waiting] {
            let m = LockMark {
                epoch: u64::MAX - 1,
                at: 42,
                kind,
            };
            assert_eq!(LockMark::from_bytes(m.to_bytes()), m);
        }
    }

    #[test]
    fn lock_marks_of_earlier_releases_keep_their_meaning() {
        // Bytes the shipped release wrote: epoch 3, since 9, slot false / true.
        let old = |slot: u8| [&3u64.to_be_bytes()[..], &9u64.to_be_bytes()[..], &[slot]].concat();
        assert_eq!(LockMark::from_bytes(Cow::Owned(old(0))).kind, LockKind::Confirm);
        let m = LockMark::from_bytes(Cow::Owned(old(1)));
        assert_eq!((m.epoch, m.at, m.kind), (3, 9, LockKind::Slot));
    }
}
