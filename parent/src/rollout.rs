//! The rollout as a pure state machine over `State`: no calls, no clock, no timers. The driver (`driver.rs`) performs
//! the steps this module hands out and feeds the results back.
//!
//! # A child's phase
//! ```text
//!   Idle ──(register: not on the release)─────────────> Pending ──(launch: lock taken, attempts += 1)──> InFlight(op)
//!   Failed ──(retry_failed, retry_child)──────────────> Pending                                          │
//!   Idle, Failed ──(planner: not on the release; verifying planner: any)─────────────────────────────> InFlight(op)
//!   Idle <──(queued before this rollout, already on its release)── Pending                              │
//!   Idle, installed_hash = release <──────────────── Done ───────────────── on_result ──────────────────┤
//!   Failed, last_error <───────────────────────────── Fail ─────────────────────────────────────────────┘
//! ```
//! The registry is the planner's queue: it reads the registry from a cursor as slots free up and locks the children
//! that need the release directly, writing nothing for the others (an entry's write costs far more than its read).
//! Children queued explicitly (`Pending`: registered, retried) go first.
//!
//! A child queued on another module starts with `Check`; one the registry has on the release (or with no known
//! module) starts with `Recheck`. Found running the release, either is left alone and counted `verified`.
//!
//! Before a child is stopped (or, found stopped, installed into or restored), its balance must cover its freezing
//! limit, a margin, and what comes next (`gates::Work`): an install's reservation; a snapshot first adds its charge
//! and the freezing limit of the memory it adds; a restore needs the load's charge only. The parent tops it up within
//! `CyclesPolicy`; otherwise the operation ends `Failed` with the shortfall, the child untouched (or, found stopped,
//! started again).
//!
//! `retry_child` also queues an outdated `Idle` child, and may give the next operation `UpgradeOptions` (e.g.
//! `skip_pre_upgrade`): they are stored in the queued entry, move into the lock when the operation starts, and end
//! with it (a take-over keeps them: it is the same operation).
//!
//! `InFlight(op)` is the per-child lock: only the holder of `op.id` may advance it. A lock whose epoch is older than
//! the current one (the parent was upgraded while its calls were outstanding: their callbacks are lost) or whose step
//! started more than `LOCK_TIMEOUT_NS` ago is taken over as `Recheck`, never blindly redone. Take-overs, and
//! operations waiting for a backoff, run whatever K is: K = 0 pauses new operations, never one under way.
//!
//! # Steps of one operation (`on_result`)
//! | step       | result                           | next                                                       |
//! |------------|----------------------------------|------------------------------------------------------------|
//! | any        | lost control (not a controller, canister gone) | Fail, marked `lost_control`                  |
//! | Check      | running another module           | Stop if it can pay; else TopUp, or Fail (short of cycles)  |
//! | Check      | anything else                    | as Recheck, without spending an attempt                    |
//! | TopUp      | ok / unknown / error             | Check (an error spends one attempt)                        |
//! | Stop       | ok                               | Install                                                    |
//! | Stop       | unknown (SYS_UNKNOWN)            | Recheck                                                    |
//! | Stop       | error                            | Start (error kept)                                         |
//! | Install    | ok / error / unknown             | Start (error kept): the child is never left stopped        |
//! | InstallNew | ok                               | Done (a new canister runs once installed)                  |
//! | InstallNew | unknown / error                  | Recheck / Fail (a new canister is running)                 |
//! | Start      | ok / error                       | Confirm (error kept); the slot is released, the lock kept  |
//! | Confirm    | running the release              | Done                                                       |
//! | Confirm    | running anything else            | Fail (records the hash it saw)                             |
//! | Confirm    | stopped or stopping              | Start again (retry with backoff)                           |
//! | Confirm    | call failed                      | Recheck (one attempt, then retry with backoff)             |
//! | Recheck    | running the release              | Done                                                       |
//! | Recheck    | stopped, on the release or empty | Start (retry with backoff)                                 |
//! | Recheck    | stopped, other module            | Install if it can pay (it is stopped already); else TopUp, |
//! |            |                                  | or Start and Fail (short of cycles)                        |
//! | Recheck    | no module, running               | InstallNew                                                 |
//! | Recheck    | stopping                         | Stop again (one attempt) or Start (retry with backoff)     |
//! | Recheck    | running another module           | Stop, i.e. redo (one attempt, if it can pay) or Fail       |
//! | Recheck    | call failed                      | Recheck (one attempt) or Start (retry with backoff)       |
//!
//! "One attempt" spends one of `MAX_ATTEMPTS` (counted per child since it was planned), so every redo loop ends.
//! "Retry with backoff" never gives up: a child that may be stopped is started (and a child whose state is unknown
//! re-checked) until it is seen running or the parent loses control of it. The first retry of an operation goes out
//! at once; each later one waits `backoff(retries)` (1 min doubling to 1 h) in a `Waiting` lock, resumed by a tick.
//! So an operation ends `Failed` only with the child seen running, or with the parent no longer in control.
//!
//! # Bounds (work per timer execution, independent of the fleet size)
//! - the planner reads at most `PLAN_BATCH` registry entries per tick or per worker hand-over and continues from a
//!   stored cursor;
//! - new operations are admitted only while fewer than K (`Settings::concurrency` ≤ `admin::MAX_CONCURRENCY`) locks
//!   take a slot (check, top-up, stop, install, start, recheck, or waiting to retry one of them) and fewer than 2K are held in all:
//!   a child in its read-only `Confirm` has released its slot (so the next child's stop overlaps it) but still holds
//!   its lock. Orphaned locks count until they are taken over. An admitted operation is never held back: a confirm
//!   that fails over to `Recheck` takes a slot again, so only in such error paths can more than K children be in
//!   slot-taking steps;
//! - operations already under way (take-overs, retries whose backoff is over) are served whatever K is, at most
//!   `LOCK_SCAN_LIMIT` per tick;
//! - the 2K bound on locks holds for rollouts under a constant K. Outside it: `create_children` locks each child it
//!   creates for its install (at most `admin::MAX_CREATE_PER_CALL` per call), and lowering K leaves the locks
//!   already held until their operations end;
//! - at most `LOCK_SCAN_LIMIT` entries of the IN_FLIGHT index are read per tick or per worker hand-over.

use crate::gates::{canaries_wanted, funding, halt_reached, Funding, Work, RATE_WINDOW, STEPS_LOGGED};
use crate::model::{
    ChildEntry, ChildEvent, ChunkStore, Halt, IndexProgress, LockKind, Op, Phase, PhaseKind, PlanCursor, Rollout,
    RolloutRecord, Shortfall, SnapshotPolicy, SnapshotRecord, SnapshotStage, Stage, Step, StoredChild, UpgradeOptions,
};
use crate::outcome::{hex, CallError, ChildStatus, RunStatus};
use crate::state::State;
use candid::Principal;
use std::ops::Bound;
use std::time::Duration;

/// Registry entries the planner reads per tick or per worker hand-over.
pub const PLAN_BATCH: usize = 500;
/// IN_FLIGHT entries read per tick or per worker hand-over (rollout locks ≤ 2K ≤ 200, plus children being created:
/// far below this in practice).
pub const LOCK_SCAN_LIMIT: usize = 1_000;
/// A lock whose step started this long ago is stale: its operation is taken over and re-checked. Each step is one
/// bounded-wait call (at most 300 s), so a live operation never gets near this.
pub const LOCK_TIMEOUT_NS: u64 = 15 * 60 * 1_000_000_000;
/// While operations are in flight, the tick comes back this often to take over stale locks.
pub const LOCK_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Operations (first launch, take-overs, retries of a step) per child per plan.
pub const MAX_ATTEMPTS: u32 = 3;
/// The first wait of a retry that never gives up, doubled each turn up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = LOCK_CHECK_INTERVAL;
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// `last_error` is cut to this many bytes, so a page of children stays far below the 2 MiB reply limit.
pub const MAX_ERROR_BYTES: usize = 1_000;

/// The wait before turn `retries` (0-based) of a never-give-up retry: none for the first, then 1 min, 2 min, ... 1 h.
pub fn backoff(retries: u32) -> Option<Duration> {
    let doublings = retries.checked_sub(1)?.min(16);
    Some((FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF))
}

/// A step to perform on a child, under lock `op_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub child: Principal,
    pub op_id: u64,
    pub step: Step,
    /// How `Install` upgrades the child (the operation's options, see `UpgradeOptions`).
    pub upgrade: UpgradeOptions,
    /// The release `Install` and `InstallNew` install (the operation's, see `Op::release`).
    pub release: [u8; 32],
    /// `TakeSnapshot`: the child's previous rollout snapshot, which the new one replaces. `LoadSnapshot`: the
    /// snapshot to load.
    pub snapshot: Option<Vec<u8>>,
    /// `TopUp`: the cycles to deposit.
    pub cycles: u128,
}

/// The result of performing a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// stop / install / start / load_canister_snapshot.
    Unit(Result<(), CallError>),
    /// canister_status.
    Status(Result<ChildStatus, CallError>),
    /// take_canister_snapshot: the new snapshot's id.
    Snapshot(Result<Vec<u8>, CallError>),
}

impl Outcome {
    /// The call worked.
    pub fn is_ok(&self) -> bool {
        match self {
            Outcome::Unit(r) => r.is_ok(),
            Outcome::Status(r) => r.is_ok(),
            Outcome::Snapshot(r) => r.is_ok(),
        }
    }
}

/// What a tick decided.
#[derive(Debug, PartialEq, Eq)]
pub struct TickPlan {
    pub launches: Vec<Launch>,
    /// Come back after this delay (`None`: nothing left that needs a tick).
    pub rearm: Option<Duration>,
}

/// Run by `init` and `post_upgrade`, which may not make calls. O(log n + module size): bumps the epoch (so
/// operations of the previous instance are recognised as orphans) and records the embedded release in the store. A
/// parent module that embeds another child than the one it replaces makes that child the target of a new rollout
/// (also one the fleet ran before: the operator installed it); one that embeds the same child leaves the target as it
/// was (so a rollback to an older release survives a parent hotfix). Returns whether the tick has work.
pub fn on_install(s: &mut State, installer: Principal, now: u64) -> bool {
    let embedded = s.release.hash;
    let previous = match &s.meta().embedded {
        e if e.is_empty() => s.rollout().release.clone(),
        e => e.clone(),
    };
    let mut other_module_ran = false;
    s.update_meta(|m| {
        m.epoch += 1;
        m.embedded = embedded.to_vec();
        other_module_ran = m.indexed_epoch + 1 != m.epoch;
        m.indexed_epoch = m.epoch;
    });
    if other_module_ran {
        // Its changes to the registry never reached RUNNING.
        s.recount_running();
    }
    s.record_release(now);
    if previous != embedded {
        new_rollout(s, now, embedded, false);
        s.update_rollout(|r| r.started_by = Some(installer));
    }
    s.prune_releases();
    has_work(s) || indexing(s)
}

/// Starts a rollout to `target` (a release the parent can install): the planner re-reads the whole registry.
/// Children already queued or locked are left as they are (one operation per child at a time). With `verify`,
/// children the registry has on the target are launched as well: their operation starts with a re-check
/// (`canister_status`), which leaves a child running the target alone and upgrades one whose module was changed
/// behind the parent's back. Returns the rollout id.
pub fn new_rollout(s: &mut State, now: u64, target: [u8; 32], verify: bool) -> u64 {
    let previous = s.rollout().clone();
    if previous.id > 0 && previous.finished_at.is_none() {
        // Replaced before it ended: the history keeps it as such.
        s.record_rollout(previous.id, record_of(&previous));
    }
    let canary = s.settings().gates.canary;
    let wanted = if verify {
        0
    } else {
        canaries_wanted(canary, s.child_count())
    };
    let next = Rollout {
        id: previous.id + 1,
        release: target.to_vec(),
        from: if previous.release.is_empty() {
            target.to_vec()
        } else {
            previous.release
        },
        started_at: now,
        plan: Some(PlanCursor::default()),
        verify,
        stage: if wanted > 0 { Stage::Canary } else { Stage::Wave },
        wanted_canaries: wanted,
        ..Rollout::default()
    };
    let id = next.id;
    s.update_rollout(|r| *r = next);
    id
}

/// The history's record of a rollout.
fn record_of(r: &Rollout) -> RolloutRecord {
    RolloutRecord {
        from: r.from.clone(),
        to: r.release.clone(),
        started_by: r.started_by,
        started_at: r.started_at,
        finished_at: r.finished_at,
        upgraded: r.upgraded,
        skipped: r.skipped,
        verified: r.verified,
        restored: r.restored,
        snapshots: r.snapshots,
        failures: r.failures,
        halts: r.halts,
        aborted_at: r.aborted_at,
        top_ups: r.top_ups,
        cycles_spent: r.cycles_spent,
    }
}

pub fn has_work(s: &State) -> bool {
    let r = s.rollout();
    r.plan.is_some() || !s.pending().is_empty() || !s.in_flight().is_empty() || gating(r)
}

/// A canary wave, its bake or its health checks are still to come (and no halt or abort ended them).
fn gating(r: &Rollout) -> bool {
    r.stage != Stage::Wave && r.halted.is_none() && r.aborted_at.is_none()
}

/// New operations may start: K > 0, and the rollout is neither paused, halted nor aborted.
pub fn can_start(s: &State) -> bool {
    let r = s.rollout();
    s.settings().concurrency > 0 && !r.paused && r.halted.is_none() && r.aborted_at.is_none()
}

/// The index of children per module (`RUNNING`) is still being built, in batches (see `IndexProgress`).
pub fn indexing(s: &State) -> bool {
    s.meta().running_index != IndexProgress::Done
}

/// The tick must keep coming back: locks are held, new operations can start and there is work, the index is being
/// built, or an aborted rollout still has queued children to drop.
pub fn needs_ticks(s: &State) -> bool {
    let draining = s.rollout().aborted_at.is_some() && !s.pending().is_empty();
    !s.in_flight().is_empty() || (can_start(s) && has_work(s)) || indexing(s) || draining || store_task(s).is_some()
}

/// One timer execution: build a batch of the index, plan a batch, take over orphaned locks and launch operations.
pub fn tick(s: &mut State, now: u64) -> TickPlan {
    if indexing(s) && s.build_running_index(PLAN_BATCH) {
        s.prune_releases();
    }
    drain_aborted(s, now);
    advance_stage(s, now);
    let Launched { launches, more } = launch(s, now, usize::MAX);
    maybe_finish(s, now);
    let draining = s.rollout().aborted_at.is_some() && !s.pending().is_empty();
    let rearm = if more || indexing(s) || draining {
        Some(Duration::ZERO)
    } else if let (Stage::Baking { until }, true) = (&s.rollout().stage, can_start(s)) {
        // Back when the bake ends.
        Some(Duration::from_nanos(until.saturating_sub(now)).min(LOCK_CHECK_INTERVAL))
    } else if !s.in_flight().is_empty() || store_task(s).is_some() {
        // Locks may need a take-over or a resumed retry, paused or not; a failed upload is tried again.
        Some(LOCK_CHECK_INTERVAL)
    } else {
        None
    };
    TickPlan { launches, rearm }
}

/// What the planner did with one registry entry.
enum Planned {
    /// Already on the release: nothing to do.
    Skipped,
    Launched(Launch),
    /// Queued or locked already, or not part of this rollout.
    Passed,
}

/// Launches up to `n` children the planner finds after its cursor, reading at most `PLAN_BATCH` registry entries (in
/// chunks that start at `n` and double, plus one entry to see the registry's end, so a worker asking for one child
/// reads two where it can). The registry is the queue: nothing is written for a child until it is launched, and a
/// child is judged by its entry as it is when the planner reaches it. Returns whether the planner stopped at its read
/// budget with room left (the tick then comes back at once).
fn launch_planned(s: &mut State, now: u64, n: usize, out: &mut Vec<Launch>) -> bool {
    let Some(PlanCursor { mut after }) = s.rollout().plan.clone() else {
        return false;
    };
    let (mut read, mut launched, mut skipped, mut finished) = (0, 0, 0, false);
    let mut chunk_len = n;
    'scan: while launched < n && read < PLAN_BATCH && !canaries_chosen(s) {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let want = (PLAN_BATCH - read).min(chunk_len + 1);
        chunk_len = chunk_len.saturating_mul(2);
        let chunk: Vec<(Principal, StoredChild)> = s
            .children()
            .range((lower, Bound::Unbounded))
            .take(want)
            .map(|e| e.into_pair())
            .collect();
        finished = chunk.len() < want;
        for (id, entry) in chunk {
            if launched == n || canaries_chosen(s) {
                finished = false;
                break 'scan;
            }
            read += 1;
            after = Some(id);
            match plan_entry(s, id, entry, now) {
                Planned::Skipped => skipped += 1,
                Planned::Launched(launch) => {
                    out.push(launch);
                    launched += 1;
                }
                Planned::Passed => {}
            }
        }
        if finished {
            break;
        }
    }
    s.update_rollout(|r| {
        r.skipped += skipped;
        r.plan = (!finished).then_some(PlanCursor { after });
    });
    !finished && launched < n && !canaries_chosen(s)
}

/// The canary wave has all the canaries it wants: the planner waits for the wave.
fn canaries_chosen(s: &State) -> bool {
    let r = s.rollout();
    r.stage == Stage::Canary && r.canaries.len() as u32 >= r.wanted_canaries
}

/// Decodes the whole entry only for a child it launches or dequeues: the head decides the rest.
fn plan_entry(s: &mut State, id: Principal, stored: StoredChild, now: u64) -> Planned {
    if let Some(rollout) = s.rollout().restore_from {
        return plan_restore(s, id, stored.decode(), rollout, now);
    }
    let head = stored.head();
    match head.phase {
        PhaseKind::Idle if s.target_is(head.installed_hash.as_deref()) && !s.rollout().verify => Planned::Skipped,
        PhaseKind::Idle | PhaseKind::Failed => {
            if s.rollout().stage == Stage::Canary {
                s.update_rollout(|r| r.canaries.push(id));
            }
            let mut entry = stored.decode();
            entry.attempts = 0;
            Planned::Launched(start_queued(s, id, entry, now))
        }
        PhaseKind::Pending => {
            let entry = stored.decode();
            if queued_for_nothing(s, &entry) {
                dequeue(s, id, entry, now);
                return Planned::Skipped;
            }
            Planned::Passed
        }
        // Locked by an operation that will see the current release.
        PhaseKind::InFlight => Planned::Passed,
    }
}

/// A restoring rollout restores the children whose snapshot `rollout` took, and nobody else.
fn plan_restore(s: &mut State, id: Principal, mut entry: ChildEntry, rollout: u64, now: u64) -> Planned {
    let snapshotted = entry.snapshot.as_ref().is_some_and(|snap| snap.rollout == rollout);
    if snapshotted && !matches!(entry.phase, Phase::InFlight(_)) {
        entry.upgrade = UpgradeOptions {
            restore: true,
            ..UpgradeOptions::default()
        };
        entry.attempts = 0;
        return Planned::Launched(start_queued(s, id, entry, now));
    }
    if entry.phase == Phase::Pending && !entry.upgrade.restore {
        dequeue(s, id, entry, now);
    }
    Planned::Passed
}

/// Queued before this rollout for an earlier release, but already on this one (e.g. the parent went back to a release
/// it had carried): dropped from the queue rather than spend a call on it.
fn queued_for_nothing(s: &State, entry: &ChildEntry) -> bool {
    let r = s.rollout();
    entry.phase == Phase::Pending
        && !r.verify
        && entry.updated_at < r.started_at
        && s.target_is(entry.installed_hash.as_deref())
}

/// What `launch` started, and whether the planner has more to read at once (see `launch_planned`).
pub struct Launched {
    pub launches: Vec<Launch>,
    pub more: bool,
}

/// Launches up to `max` operations: locks that need a call now first (orphaned or stale ones, taken over as
/// `Recheck`; waiting ones whose backoff is over, resumed), then queued children, then children the planner reaches.
/// Used by the tick (`max` = all) and by a worker that just released its slot (`max` = 1), which keeps the pipeline
/// full without waiting for a tick.
///
/// Locks are served whatever K is: they are operations already under way, possibly on a stopped child. A queued
/// child is admitted only while fewer than K locks take a slot (every kind but the read-only `Confirm`) and fewer
/// than 2K are held in all. A child's slot is released when it reaches `Confirm`, so the next child's stop overlaps
/// the previous child's confirm; the child itself stays locked until the confirm is committed.
pub fn launch(s: &mut State, now: u64, max: usize) -> Launched {
    let k = s.settings().concurrency as usize;
    let epoch = s.meta().epoch;
    let (mut slots, mut locks) = (0usize, 0usize);
    let (mut take_overs, mut due) = (Vec::new(), Vec::new());
    for e in s.in_flight().iter().take(LOCK_SCAN_LIMIT) {
        let (id, mark) = e.into_pair();
        locks += 1;
        let orphaned = mark.epoch != epoch;
        let stale = mark.kind != LockKind::Waiting && now.saturating_sub(mark.at) >= LOCK_TIMEOUT_NS;
        if orphaned || stale {
            // Taken over as a slot-taking `Recheck`, whatever step it was at.
            take_overs.push(id);
            slots += 1;
        } else {
            if mark.kind == LockKind::Waiting && mark.at <= now {
                due.push(id);
            }
            slots += mark.takes_slot() as usize;
        }
    }
    let mut out: Vec<Launch> = take_overs
        .into_iter()
        .map(|id| (id, true))
        .chain(due.into_iter().map(|id| (id, false)))
        .take(max)
        .map(|(id, take)| {
            if take {
                take_over(s, id, now)
            } else {
                resume_op(s, id, now)
            }
        })
        .collect();
    if !can_start(s) || !store_ready(s) {
        return Launched {
            launches: out,
            more: false,
        };
    }
    let n = max
        .saturating_sub(out.len())
        .min(k.saturating_sub(slots))
        .min((2 * k).saturating_sub(locks));
    let queued: Vec<Principal> = match s.rollout().stage {
        Stage::Wave => s.pending().keys().take(n).collect(),
        // Only the canaries go first.
        Stage::Canary => {
            let canaries = s.rollout().canaries.clone();
            canaries
                .into_iter()
                .filter(|id| s.pending().contains_key(id))
                .take(n)
                .collect()
        }
        Stage::Checking { launched: false } => {
            out.extend(launch_health_checks(s, now));
            Vec::new()
        }
        Stage::Baking { .. } | Stage::Checking { launched: true } => Vec::new(),
    };
    let room = n - queued.len();
    out.extend(queued.into_iter().filter_map(|id| launch_pending(s, id, now)));
    let more = matches!(s.rollout().stage, Stage::Wave | Stage::Canary) && launch_planned(s, now, room, &mut out);
    Launched { launches: out, more }
}

/// A new lock, for an operation towards the current target.
fn lock(s: &mut State, step: Step, now: u64, error: Option<String>, upgrade: UpgradeOptions) -> Op {
    Op {
        error,
        upgrade,
        release: s.target().to_vec(),
        ..Op::new(s.next_op_id(), s.meta().epoch, step, now)
    }
}

/// The release an operation moves its child to (locks written before `Op::release` existed: the embedded one).
fn release_of(s: &State, op: &Op) -> [u8; 32] {
    <[u8; 32]>::try_from(op.release.as_slice()).unwrap_or(s.release.hash)
}

fn launch_of(s: &State, child: Principal, op: &Op) -> Launch {
    let snapshot = match (op.step, &op.restore) {
        (Step::LoadSnapshot, Some(restore)) => Some(restore.id.clone()),
        (Step::TakeSnapshot, _) => s.child(&child).and_then(|e| e.snapshot).map(|previous| previous.id),
        _ => None,
    };
    Launch {
        child,
        op_id: op.id,
        step: op.step,
        upgrade: op.upgrade,
        release: release_of(s, op),
        snapshot,
        cycles: if op.step == Step::TopUp { op.top_up } else { 0 },
    }
}

/// Launches a queued child's operation; during a restoring rollout, a child queued for an upgrade is dropped back to
/// idle instead (`None`).
fn launch_pending(s: &mut State, id: Principal, now: u64) -> Option<Launch> {
    let entry = s.child(&id).expect("PENDING index names a registered child");
    assert_eq!(entry.phase, Phase::Pending, "PENDING index out of step with {id}");
    if s.rollout().restore && !entry.upgrade.restore {
        dequeue(s, id, entry, now);
        return None;
    }
    if queued_for_nothing(s, &entry) {
        dequeue(s, id, entry, now);
        return None;
    }
    Some(start_queued(s, id, entry, now))
}

/// Locks a queued child (or one the planner reached) for its operation, which starts with the returned launch.
fn start_queued(s: &mut State, id: Principal, mut entry: ChildEntry, now: u64) -> Launch {
    // A child with no known module, or one recorded on the release but failed (e.g. left stopped), is looked at
    // before anything is done to it.
    let first = match &entry.installed_hash {
        Some(h) if !s.target_is(Some(h)) => Step::Check,
        _ => Step::Recheck,
    };
    // The options set by `retry_child` or `restore_snapshots` are for this one operation: they move into the lock.
    let upgrade = std::mem::take(&mut entry.upgrade);
    let op = match (&entry.snapshot, upgrade.restore) {
        (Some(snapshot), true) => Op {
            release: snapshot.release.clone(),
            restore: Some(snapshot.clone()),
            ..lock(s, Step::Check, now, None, upgrade)
        },
        _ => {
            let wanted = match s.settings().snapshot_before_upgrade {
                SnapshotPolicy::Off => false,
                SnapshotPolicy::Canaries => s.rollout().canaries.contains(&id),
                SnapshotPolicy::All => true,
            };
            let snapshot = if wanted {
                SnapshotStage::Wanted
            } else {
                SnapshotStage::None
            };
            Op {
                snapshot,
                ..lock(s, first, now, None, upgrade)
            }
        }
    };
    let launch = launch_of(s, id, &op);
    entry.attempts += 1;
    entry.phase = Phase::InFlight(op);
    entry.updated_at = now;
    s.put_child(id, entry);
    s.update_rollout(|r| r.attempted += 1);
    launch
}

/// Takes over an orphaned or stale lock: a fresh lock id (results for the old one are ignored) and a re-check.
fn take_over(s: &mut State, id: Principal, now: u64) -> Launch {
    let mut entry = s.child(&id).expect("IN_FLIGHT index names a registered child");
    let Phase::InFlight(old) = &entry.phase else {
        panic!("IN_FLIGHT index out of step with {id}")
    };
    // The same operation goes on under a new lock: it keeps what it is (release, options, snapshot, restore) and
    // its retry count.
    let op = Op {
        id: s.next_op_id(),
        epoch: s.meta().epoch,
        step: Step::Recheck,
        since: now,
        wait_until: None,
        ..old.clone()
    };
    let launch = launch_of(s, id, &op);
    entry.attempts += 1;
    entry.phase = Phase::InFlight(op);
    entry.updated_at = now;
    s.put_child(id, entry);
    launch
}

/// Resumes an operation whose backoff is over: its step goes out under a fresh lock id.
fn resume_op(s: &mut State, id: Principal, now: u64) -> Launch {
    let mut entry = s.child(&id).expect("IN_FLIGHT index names a registered child");
    let Phase::InFlight(waiting) = &entry.phase else {
        panic!("IN_FLIGHT index out of step with {id}")
    };
    let op = Op {
        id: s.next_op_id(),
        since: now,
        wait_until: None,
        ..waiting.clone()
    };
    let launch = launch_of(s, id, &op);
    entry.phase = Phase::InFlight(op);
    entry.updated_at = now;
    s.put_child(id, entry);
    launch
}

/// Registers a child the parent just created, locked at `InstallNew`.
pub fn adopt_new_child(s: &mut State, id: Principal, now: u64) -> Launch {
    let op = lock(s, Step::InstallNew, now, None, UpgradeOptions::default());
    let launch = launch_of(s, id, &op);
    let mut entry = ChildEntry::new(None, Phase::InFlight(op), now);
    entry.attempts = 1;
    s.put_child(id, entry);
    launch
}

/// Registers an existing canister running `hash`; queues it unless it already runs the release.
pub fn adopt_child(s: &mut State, id: Principal, hash: Option<Vec<u8>>, now: u64) -> ChildEntry {
    let phase = if s.target_is(hash.as_deref()) {
        Phase::Idle
    } else {
        Phase::Pending
    };
    let entry = ChildEntry::new(hash, phase, now);
    if entry.phase == Phase::Pending {
        reopen(s);
    }
    s.put_child(id, entry.clone());
    entry
}

/// Drops a queued child back to idle (its options go with it).
fn dequeue(s: &mut State, id: Principal, mut entry: ChildEntry, now: u64) {
    entry.phase = Phase::Idle;
    entry.upgrade = UpgradeOptions::default();
    entry.updated_at = now;
    s.put_child(id, entry);
}

/// Queues a child that has a snapshot and no operation under way for a restore of that snapshot.
pub fn queue_restore(s: &mut State, id: Principal, mut entry: ChildEntry, now: u64) {
    debug_assert!(entry.snapshot.is_some() && !matches!(entry.phase, Phase::InFlight(_)));
    entry.phase = Phase::Pending;
    entry.attempts = 0;
    entry.upgrade = UpgradeOptions {
        restore: true,
        ..UpgradeOptions::default()
    };
    entry.updated_at = now;
    s.put_child(id, entry);
    reopen(s);
}

/// Starts a restoring rollout: children are then queued for a restore (by the planner, of the snapshots rollout
/// `from` took, or by the caller). The fleet's target does not change. Returns the rollout id.
pub fn new_restore(s: &mut State, now: u64, from: Option<u64>) -> u64 {
    let target = s.target();
    let id = new_rollout(s, now, target, false);
    s.update_rollout(|r| {
        // Never gated: a restore is the way out of a bad release.
        r.stage = Stage::Wave;
        r.wanted_canaries = 0;
        r.restore = true;
        r.restore_from = from;
        if from.is_none() {
            r.plan = None;
        }
    });
    id
}

/// Queues up to `max` failed children again (their attempt budget restarts). Returns how many.
pub fn requeue_failed(s: &mut State, now: u64, max: usize) -> u64 {
    let ids: Vec<Principal> = s.failed().keys().take(max).collect();
    for id in &ids {
        let mut entry = s.child(id).expect("FAILED index names a registered child");
        entry.phase = Phase::Pending;
        entry.attempts = 0;
        entry.updated_at = now;
        s.put_child(*id, entry);
    }
    if !ids.is_empty() {
        reopen(s);
    }
    ids.len() as u64
}

/// Queues one child that is not locked (failed, outdated, or already queued) for its next operation, with `upgrade`
/// for that operation only; its attempt budget restarts. The caller checks that it is registered and not locked.
/// Returns the current rollout id.
pub fn requeue_child(s: &mut State, id: Principal, upgrade: UpgradeOptions, now: u64) -> u64 {
    let mut entry = s.child(&id).expect("requeue_child: a registered child");
    assert!(
        !matches!(entry.phase, Phase::InFlight(_)),
        "requeue_child: {id} is locked"
    );
    entry.phase = Phase::Pending;
    entry.attempts = 0;
    entry.upgrade = upgrade;
    entry.updated_at = now;
    s.put_child(id, entry);
    reopen(s);
    s.rollout().id
}

/// After a child left the registry: the rollout ends if that was its last work.
pub fn after_removal(s: &mut State, now: u64) {
    maybe_finish(s, now);
}

fn reopen(s: &mut State) {
    if s.rollout().finished_at.is_some() {
        s.update_rollout(|r| r.finished_at = None);
    }
}

fn maybe_finish(s: &mut State, now: u64) {
    if s.rollout().finished_at.is_none() && !has_work(s) {
        s.update_rollout(|r| r.finished_at = Some(now));
        let r = s.rollout();
        s.record_rollout(r.id, record_of(r));
    }
}

// --- the chunk store: modules over the inline install limit ------------------------------------------------------

/// Work the parent's chunk store needs before the target can be installed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreTask {
    /// Empty it: it holds a release that is no longer the target (once no operation under way may install from it).
    Clear,
    /// Upload chunk `index` of the target's module.
    Upload { index: u32 },
}

/// Whether a release's module goes to the chunk store (it is installed from there once all its chunks are).
pub fn chunked(s: &State, release: &[u8; 32]) -> bool {
    s.release_info(release)
        .is_some_and(|r| r.size > s.settings().chunked_install_above)
}

pub fn chunk_count(s: &State, release: &[u8; 32]) -> u32 {
    s.release_info(release)
        .map_or(0, |r| r.size.div_ceil(crate::state::MODULE_CHUNK_BYTES as u64) as u32)
}

/// The next thing the chunk store needs, if any: cleared of a retired release, then filled with the target's chunks.
pub fn store_task(s: &State) -> Option<StoreTask> {
    let target = s.target();
    let store = &s.meta().chunk_store;
    let holds_other = !store.release.is_empty() && store.release != target;
    if store.dirty || holds_other || (!chunked(s, &target) && !store.release.is_empty()) {
        return (!may_install_from_store(s, &store.release)).then_some(StoreTask::Clear);
    }
    let uploaded = store.chunks.len() as u32;
    (chunked(s, &target) && uploaded < chunk_count(s, &target)).then_some(StoreTask::Upload { index: uploaded })
}

/// Whether an operation under way may still install `release` from the store (one at or before its install, or
/// re-checking). Those past it (starting, confirming) do not hold a clear back, however long they retry. O(K).
fn may_install_from_store(s: &State, release: &[u8]) -> bool {
    s.in_flight().keys().any(|id| {
        s.child(&id).is_some_and(|e| {
            e.op().is_some_and(|op| {
                op.release == release
                    && matches!(
                        op.step,
                        Step::Check
                            | Step::TopUp
                            | Step::Stop
                            | Step::TakeSnapshot
                            | Step::Install
                            | Step::InstallNew
                            | Step::Recheck
                    )
            })
        })
    })
}

/// New operations wait until the target's chunks are all in the store (if it is installed from there).
fn store_ready(s: &State) -> bool {
    !chunked(s, &s.target()) || store_task(s).is_none()
}

/// Written before a store task's call: a clear forgets the chunks at once (no install may use them any more), and
/// stays pending until it succeeds.
pub fn on_store_call(s: &mut State, task: StoreTask) {
    if task == StoreTask::Clear {
        s.update_meta(|m| {
            m.chunk_store = ChunkStore {
                dirty: true,
                ..Default::default()
            }
        });
    }
}

/// Commits what a store task did (a failure is kept for the status and tried again at the next tick). `expected` is
/// the SHA-256 of the chunk sent: the IC must answer it. Returns whether the task succeeded.
pub fn on_store_result(
    s: &mut State,
    task: StoreTask,
    expected: Option<[u8; 32]>,
    result: Result<Vec<u8>, CallError>,
) -> bool {
    let target = s.target();
    let result = result.and_then(|hash| match expected {
        Some(e) if hash != e => Err(CallError::new(
            "upload_chunk",
            0,
            format!("the store answered chunk hash {}, expected {}", hex(&hash), hex(&e)),
        )),
        _ => Ok(hash),
    });
    let done = result.is_ok();
    s.update_meta(|m| {
        let store = &mut m.chunk_store;
        match (task, result) {
            (_, Err(e)) => store.error = Some(clip(e.to_string())),
            (StoreTask::Clear, Ok(_)) => *store = Default::default(),
            (StoreTask::Upload { index }, Ok(hash)) if index as usize == store.chunks.len() => {
                store.release = target.to_vec();
                store.chunks.push(serde_bytes::ByteBuf::from(hash));
                store.error = None;
            }
            // A late answer for a chunk already counted (the task ran twice): nothing to do.
            (StoreTask::Upload { .. }, Ok(_)) => {}
        }
    });
    done
}

/// The chunk hashes to install `release` from the store, once all are there.
pub fn stored_chunks(s: &State, release: &[u8; 32]) -> Option<Vec<Vec<u8>>> {
    let store = &s.meta().chunk_store;
    let complete = store.release == release && store.chunks.len() as u32 == chunk_count(s, release);
    complete.then(|| store.chunks.iter().map(|h| h.to_vec()).collect())
}

// --- gates: canaries, bake, health checks, halts, pause, abort ---------------------------------------------------

/// Moves a gated rollout on: when the canaries are done (none queued or locked, the planner done), to the bake; when
/// the bake is over, to the health checks; when those are done without a halt, to the wave. Reads at most
/// `MAX_CANARIES` entries.
fn advance_stage(s: &mut State, now: u64) {
    let r = s.rollout().clone();
    if r.halted.is_some() || r.aborted_at.is_some() {
        return;
    }
    let canaries_busy = || {
        r.canaries.iter().any(|id| {
            s.child(id)
                .is_some_and(|e| matches!(e.phase, Phase::Pending | Phase::InFlight(_)))
        })
    };
    let next = match r.stage {
        Stage::Canary if (r.plan.is_none() || canaries_chosen(s)) && !canaries_busy() => {
            if r.canaries.is_empty() {
                Stage::Wave
            } else {
                Stage::Baking {
                    until: now.saturating_add(s.settings().gates.bake_secs * 1_000_000_000),
                }
            }
        }
        Stage::Baking { until } if now >= until => Stage::Checking { launched: false },
        Stage::Checking { launched: true } if !canaries_busy() => Stage::Wave,
        _ => return,
    };
    s.update_rollout(|r| r.stage = next);
}

/// The health checks of a rollout's canaries: each gets a `Health` then `Confirm` operation, taking no slot. Run once
/// when the bake is over; a canary no longer idle on the release (it failed, or was removed) is left out (a failed one
/// already halted the rollout).
fn launch_health_checks(s: &mut State, now: u64) -> Vec<Launch> {
    let canaries = s.rollout().canaries.clone();
    s.update_rollout(|r| r.stage = Stage::Checking { launched: true });
    let mut out = Vec::new();
    for id in canaries {
        let Some(mut entry) = s.child(&id) else { continue };
        if entry.phase != Phase::Idle || !s.target_is(entry.installed_hash.as_deref()) {
            continue;
        }
        let op = Op {
            check: true,
            ..lock(s, Step::Health, now, None, UpgradeOptions::default())
        };
        out.push(launch_of(s, id, &op));
        entry.phase = Phase::InFlight(op);
        entry.updated_at = now;
        s.put_child(id, entry);
    }
    out
}

/// Drops up to `PLAN_BATCH` queued children of an aborted rollout back to idle.
fn drain_aborted(s: &mut State, now: u64) {
    if s.rollout().aborted_at.is_none() {
        return;
    }
    let queued: Vec<Principal> = s.pending().keys().take(PLAN_BATCH).collect();
    for id in queued {
        let entry = s.child(&id).expect("PENDING index names a registered child");
        dequeue(s, id, entry, now);
    }
}

/// Stops new operations until `resume`; operations under way finish (with their always-start).
pub fn halt(s: &mut State, reason: String, now: u64) {
    if s.rollout().halted.is_none() {
        s.update_rollout(|r| {
            r.halted = Some(Halt {
                reason: clip(reason),
                at: now,
            });
            r.halts += 1;
        });
    }
}

pub fn pause(s: &mut State) {
    s.update_rollout(|r| r.paused = true);
}

/// Lifts a pause and a halt. A halt lifted during the canary wave, the bake or the health checks lets the rest of the
/// fleet go: the operator has looked and decided. The failure count starts again.
pub fn resume(s: &mut State) {
    s.update_rollout(|r| {
        r.paused = false;
        if r.halted.take().is_some() {
            r.failures = 0;
            r.attempted = 0;
            r.stage = Stage::Wave;
        }
    });
}

/// Queued children go back to idle (in batches, by the tick), nothing new starts; operations under way finish.
pub fn abort(s: &mut State, now: u64) {
    if s.rollout().aborted_at.is_none() {
        s.update_rollout(|r| {
            r.aborted_at = Some(now);
            r.plan = None;
        });
    }
}

/// Remembers when an operation ended (for the rate), counts a failure and halts if a gate says so.
fn ended(s: &mut State, child: Principal, failed: Option<&str>, now: u64) {
    s.update_rollout(|r| {
        r.recent.push(now);
        if r.recent.len() > RATE_WINDOW {
            r.recent.remove(0);
        }
        if failed.is_some() {
            r.failures += 1;
        }
    });
    let Some(error) = failed else { return };
    let r = s.rollout();
    if r.canaries.contains(&child) {
        halt(s, format!("canary {child} failed: {error}"), now);
    } else if halt_reached(s.settings().gates.halt_after, r.failures, r.attempted) {
        let reason = format!(
            "{} of the {} children attempted failed; the last: {child}: {error}",
            r.failures, r.attempted
        );
        halt(s, reason, now);
    }
}

/// Appends `new` to the errors an operation collected, keeping the whole at most `MAX_ERROR_BYTES` (the oldest part
/// is cut: the latest error says most about where the child stands).
fn note(previous: &Option<String>, new: impl std::fmt::Display) -> Option<String> {
    let all = match previous {
        Some(p) => format!("{p}; {new}"),
        None => new.to_string(),
    };
    Some(clip(all))
}

fn clip(error: String) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut cut = error.len() - (MAX_ERROR_BYTES - 3);
    while !error.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &error[cut..])
}

/// Where a child stands, in words: "running module ab12…", "stopped with no module".
fn describe(st: &ChildStatus, release: &[u8]) -> String {
    let state = match st.status {
        RunStatus::Running => "running",
        RunStatus::Stopping => "stopping",
        RunStatus::Stopped => "stopped",
    };
    match &st.module_hash {
        Some(h) if h == release => format!("{state} on the release"),
        Some(h) => format!("{state} with module {} instead of the release {}", hex(h), hex(release)),
        None => format!("{state} with no module"),
    }
}

/// What happens after a step.
enum Next {
    /// The next step at once; `spend_attempt` spends one of `MAX_ATTEMPTS`.
    Step {
        step: Step,
        error: Option<String>,
        spend_attempt: bool,
    },
    /// A turn of a loop that never gives up: the next step after `backoff(op.retries)`.
    Retry {
        step: Step,
        error: Option<String>,
    },
    /// The snapshot was taken: record it, then install.
    Snapshotted {
        id: Vec<u8>,
    },
    /// The child is short of cycles for its install: deposit `amount` (`TopUp`), then check again.
    TopUp {
        amount: u128,
        shortfall: Shortfall,
    },
    /// The child, stopped, cannot pay for its install: start it again without installing; it ends failed.
    Unfunded {
        shortfall: Shortfall,
        error: Option<String>,
    },
    Done,
    /// Ends the operation; `observed` is the module the child was seen running. Only reached with the child seen
    /// running, or with control lost.
    Fail {
        error: String,
        observed: Option<Option<Vec<u8>>>,
        lost_control: bool,
        /// Set when it ends because the child could not pay for its install.
        shortfall: Option<Shortfall>,
    },
}

/// The transition table (see the module docs). Pure: decides from the step, its outcome and the attempt budget.
fn decide(s: &State, op: &Op, attempts: u32, outcome: Outcome) -> Next {
    let release = release_of(s, op);
    let on = |hash: &Option<Vec<u8>>| hash.as_deref() == Some(&release[..]);
    let can_retry = attempts < MAX_ATTEMPTS;
    let go = |step: Step, error: Option<String>| Next::Step {
        step,
        error,
        spend_attempt: false,
    };
    let attempt = |step: Step, error: Option<String>| Next::Step {
        step,
        error,
        spend_attempt: true,
    };
    let fail_running = |error: Option<String>, observed: Option<Option<Vec<u8>>>| Next::Fail {
        error: error.unwrap_or_default(),
        observed,
        lost_control: false,
        shortfall: op.shortfall,
    };
    // What a stopped child gets next: its snapshot loaded (a restore), a snapshot taken (if this operation wants one
    // and has none yet), or the install.
    let change = if op.restore.is_some() {
        Step::LoadSnapshot
    } else if op.snapshot == SnapshotStage::Wanted {
        Step::TakeSnapshot
    } else {
        Step::Install
    };
    // A child that cannot pay for what comes next is not touched: left running, or started again if found stopped.
    let work = match change {
        Step::TakeSnapshot => Work::SnapshotAndInstall,
        Step::LoadSnapshot => Work::Restore,
        _ => Work::Install,
    };
    let short = |st: &ChildStatus, needed: u128, available: u128| {
        let shortfall = Shortfall { needed, available };
        let why = format!(
            "the child has {available} cycles and needs {needed} for its {}; the parent may not top it up that far \
             (max_top_up_per_child, parent_reserve)",
            work.describe()
        );
        if st.status == RunStatus::Running {
            Next::Fail {
                error: note(&op.error, why).unwrap_or_default(),
                observed: Some(st.module_hash.clone()),
                lost_control: false,
                shortfall: Some(shortfall),
            }
        } else {
            Next::Unfunded {
                shortfall,
                error: note(&op.error, why),
            }
        }
    };
    // Before a child is stopped (or, found stopped, changed), it must be able to pay for what comes next.
    let funded = |st: &ChildStatus, then: Next| {
        let Some(funds) = st.funds else { return then };
        match funding(funds, s.settings().cycles, op.topped_up, work) {
            Funding::Enough => then,
            Funding::TopUp(amount) if can_retry => Next::TopUp {
                amount,
                shortfall: Shortfall {
                    needed: funds.balance + amount,
                    available: funds.balance,
                },
            },
            Funding::TopUp(amount) => short(st, funds.balance + amount, funds.balance),
            Funding::Short { needed, available } => short(st, needed, available),
        }
    };
    if op.restore.is_some() && matches!(op.step, Step::Check | Step::Recheck) {
        if let Outcome::Status(Ok(st)) = &outcome {
            // A restore is judged by its status alone, never by its module: an interrupted restore is done again from
            // the stop, since whether the snapshot was loaded cannot be told from the module (it may be the same
            // before and after), and loading it twice loses nothing more. The child must be able to pay for the load.
            return match st.status {
                RunStatus::Stopped => funded(st, go(Step::LoadSnapshot, op.error.clone())),
                RunStatus::Running | RunStatus::Stopping if op.step == Step::Check => {
                    funded(st, go(Step::Stop, op.error.clone()))
                }
                RunStatus::Running | RunStatus::Stopping if can_retry => {
                    funded(st, attempt(Step::Stop, op.error.clone()))
                }
                RunStatus::Stopping => Next::Retry {
                    step: Step::Start,
                    error: note(&op.error, "gave up waiting for the child to stop"),
                },
                RunStatus::Running => {
                    let seen = format!(
                        "not restored after {attempts} attempts: the child is {}",
                        describe(st, &release)
                    );
                    fail_running(note(&op.error, seen), Some(st.module_hash.clone()))
                }
            };
        }
    }
    match (op.step, outcome) {
        (_, Outcome::Unit(Err(e)) | Outcome::Status(Err(e)) | Outcome::Snapshot(Err(e))) if e.is_lost_control() => {
            Next::Fail {
                error: note(&op.error, format!("the parent lost control of the child: {e}")).unwrap_or_default(),
                observed: None,
                lost_control: true,
                shortfall: None,
            }
        }
        (Step::Stop, Outcome::Unit(Ok(()))) => go(change, op.error.clone()),
        (Step::TakeSnapshot, Outcome::Snapshot(Ok(id))) => Next::Snapshotted { id },
        // Never upgraded without the snapshot it was promised: started again as it was; Confirm marks it failed.
        (Step::TakeSnapshot, Outcome::Snapshot(Err(e))) => go(
            Step::Start,
            note(&op.error, format!("no snapshot, so the child was not upgraded: {e}")),
        ),
        (Step::Health, Outcome::Unit(Ok(()))) => go(Step::Confirm, op.error.clone()),
        (Step::Health, Outcome::Unit(Err(e))) => {
            fail_running(note(&op.error, format!("health check failed: {e}")), None)
        }
        (Step::LoadSnapshot, Outcome::Unit(Ok(()))) => go(Step::Start, op.error.clone()),
        (Step::LoadSnapshot, Outcome::Unit(Err(e))) => go(Step::Start, note(&op.error, e)),
        (Step::Stop, Outcome::Unit(Err(e))) if e.is_unknown() => go(Step::Recheck, note(&op.error, e)),
        (Step::Stop, Outcome::Unit(Err(e))) => go(Step::Start, note(&op.error, e)),
        (Step::Install, Outcome::Unit(Ok(()))) => go(Step::Start, op.error.clone()),
        // Whatever happened to the install, start the child; Confirm then says whether the release runs.
        (Step::Install, Outcome::Unit(Err(e))) => go(Step::Start, note(&op.error, e)),
        (Step::InstallNew, Outcome::Unit(Ok(()))) => Next::Done,
        (Step::InstallNew, Outcome::Unit(Err(e))) if e.is_unknown() => go(Step::Recheck, note(&op.error, e)),
        // A new canister is running (it was never stopped), with no module.
        (Step::InstallNew, Outcome::Unit(Err(e))) => fail_running(note(&op.error, e), Some(None)),
        (Step::Start, Outcome::Unit(Ok(()))) => go(Step::Confirm, op.error.clone()),
        // It may have started anyway (an unknown outcome, or already running): Confirm looks.
        (Step::Start, Outcome::Unit(Err(e))) => go(Step::Confirm, note(&op.error, e)),
        (Step::Confirm, Outcome::Status(Ok(st))) => match st.status {
            RunStatus::Running if on(&st.module_hash) => Next::Done,
            RunStatus::Running => {
                let seen = format!("confirm: the child is {}", describe(&st, &release));
                fail_running(note(&op.error, seen), Some(st.module_hash))
            }
            RunStatus::Stopped | RunStatus::Stopping => Next::Retry {
                step: Step::Start,
                error: note(
                    &op.error,
                    format!("confirm: the child is {}, starting it again", describe(&st, &release)),
                ),
            },
        },
        (Step::Confirm, Outcome::Status(Err(e))) if can_retry => attempt(Step::Recheck, note(&op.error, e)),
        (Step::Confirm, Outcome::Status(Err(e))) => Next::Retry {
            step: Step::Recheck,
            error: note(&op.error, e),
        },
        (Step::TopUp, Outcome::Unit(Ok(()))) => go(Step::Check, op.error.clone()),
        (Step::TopUp, Outcome::Unit(Err(e))) if e.is_unknown() => go(Step::Check, note(&op.error, e)),
        (Step::TopUp, Outcome::Unit(Err(e))) => attempt(Step::Check, note(&op.error, e)),
        (Step::Check | Step::Recheck, Outcome::Status(Ok(st))) => {
            let on_release = on(&st.module_hash);
            let restart = |why: &str| Next::Retry {
                step: Step::Start,
                error: if why.is_empty() {
                    op.error.clone()
                } else {
                    note(&op.error, why)
                },
            };
            match st.status {
                RunStatus::Running if on_release => Next::Done,
                RunStatus::Stopped if on_release => restart(""),
                RunStatus::Stopped if st.module_hash.is_some() => funded(&st, go(change, op.error.clone())),
                // Stopped and empty: start it; Confirm reports that it has no module.
                RunStatus::Stopped => restart(""),
                RunStatus::Running if st.module_hash.is_none() => go(Step::InstallNew, op.error.clone()),
                RunStatus::Stopping if can_retry => attempt(Step::Stop, op.error.clone()),
                RunStatus::Stopping => restart("gave up waiting for the child to stop"),
                RunStatus::Running if op.step == Step::Check => funded(&st, go(Step::Stop, op.error.clone())),
                RunStatus::Running if can_retry => funded(&st, attempt(Step::Stop, op.error.clone())),
                RunStatus::Running => {
                    let seen = format!(
                        "not upgraded after {attempts} attempts: the child is {}",
                        describe(&st, &release)
                    );
                    fail_running(note(&op.error, seen), Some(st.module_hash))
                }
            }
        }
        (Step::Check | Step::Recheck, Outcome::Status(Err(e))) if can_retry => {
            attempt(Step::Recheck, note(&op.error, e))
        }
        // Out of attempts and blind: start the child in case it is stopped; Confirm has the last word.
        (Step::Check | Step::Recheck, Outcome::Status(Err(e))) => Next::Retry {
            step: Step::Start,
            error: note(&op.error, e),
        },
        (step, outcome) => panic!("step {step:?} cannot produce {outcome:?}"),
    }
}

/// Commits the result of a step performed under lock `op_id` and returns the next step of the same operation to
/// perform now, if any (`None`: the operation ended, waits for a backoff, or is no longer ours). A result for a lock
/// that has been taken over (or a child removed since) is ignored.
pub fn on_result(s: &mut State, child: Principal, op_id: u64, outcome: Outcome, now: u64) -> Option<Launch> {
    let mut entry = s.child(&child)?;
    let op = match &entry.phase {
        Phase::InFlight(op) if op.id == op_id && op.wait_until.is_none() => op.clone(),
        _ => return None,
    };
    // A status is ground truth about the module: the registry records what it saw (a snapshot records it too).
    let recorded = entry.installed_hash.clone();
    if let Outcome::Status(Ok(ChildStatus {
        module_hash: Some(seen),
        ..
    })) = &outcome
    {
        entry.installed_hash = Some(seen.clone());
    }
    if op.step == Step::TopUp && outcome.is_ok() {
        s.update_rollout(|r| {
            r.top_ups += 1;
            r.cycles_spent = r.cycles_spent.saturating_add(op.top_up);
        });
    }
    // A check decides afresh whether the child can pay; a shortfall found earlier no longer holds.
    let shortfall = if matches!(op.step, Step::Check | Step::Recheck) {
        None
    } else {
        op.shortfall
    };
    let epoch = s.meta().epoch;
    let mut steps = op.steps.clone();
    steps.push((op.step, outcome.is_ok()));
    if steps.len() > STEPS_LOGGED {
        steps.remove(0);
    }
    let next_op = |step: Step, error: Option<String>, retries: u32, wait_until: Option<u64>| Op {
        epoch,
        step,
        since: now,
        error,
        retries,
        wait_until,
        steps: steps.clone(),
        shortfall,
        ..op.clone()
    };
    let rollout_id = s.rollout().id;
    let event = |error: Option<String>| ChildEvent {
        rollout: rollout_id,
        started_at: op.started_at,
        ended_at: now,
        steps: steps.clone(),
        error,
    };
    match decide(s, &op, entry.attempts, outcome) {
        Next::Step {
            step,
            error,
            spend_attempt,
        } => {
            if spend_attempt {
                entry.attempts += 1;
            }
            let next = next_op(step, error, op.retries, None);
            let launch = launch_of(s, child, &next);
            entry.phase = Phase::InFlight(next);
            entry.updated_at = now;
            s.put_child(child, entry);
            Some(launch)
        }
        Next::Retry { step, error } => {
            let wait_until = backoff(op.retries).map(|d| now.saturating_add(d.as_nanos() as u64));
            let next = next_op(step, error, op.retries + 1, wait_until);
            let launch = wait_until.is_none().then(|| launch_of(s, child, &next));
            entry.phase = Phase::InFlight(next);
            entry.updated_at = now;
            s.put_child(child, entry);
            launch
        }
        Next::Snapshotted { id } => {
            entry.snapshot = Some(SnapshotRecord {
                id,
                release: entry.installed_hash.clone().unwrap_or_default(),
                rollout: s.rollout().id,
                taken_at: now,
            });
            let next = Op {
                snapshot: SnapshotStage::Taken,
                ..next_op(Step::Install, op.error.clone(), op.retries, None)
            };
            let launch = launch_of(s, child, &next);
            entry.phase = Phase::InFlight(next);
            entry.updated_at = now;
            s.put_child(child, entry);
            s.update_rollout(|r| r.snapshots += 1);
            Some(launch)
        }
        Next::TopUp { amount, shortfall } => {
            let next = Op {
                top_up: amount,
                topped_up: op.topped_up.saturating_add(amount),
                shortfall: Some(shortfall),
                ..next_op(Step::TopUp, op.error.clone(), op.retries, None)
            };
            let launch = launch_of(s, child, &next);
            entry.phase = Phase::InFlight(next);
            entry.updated_at = now;
            s.put_child(child, entry);
            Some(launch)
        }
        Next::Unfunded { shortfall, error } => {
            let next = Op {
                shortfall: Some(shortfall),
                ..next_op(Step::Start, error, op.retries, None)
            };
            let launch = launch_of(s, child, &next);
            entry.phase = Phase::InFlight(next);
            entry.updated_at = now;
            s.put_child(child, entry);
            Some(launch)
        }
        Next::Done => {
            // Found running the release it was recorded on (or, at the first check, already on it): nothing was
            // done to it.
            let release = release_of(s, &op);
            let untouched =
                op.step == Step::Check || (op.step == Step::Recheck && recorded.as_deref() == Some(&release[..]));
            entry.installed_hash = Some(release.to_vec());
            entry.phase = Phase::Idle;
            entry.last_error = None;
            entry.lost_control = false;
            entry.short_of_cycles = None;
            entry.updated_at = now;
            s.put_child(child, entry);
            s.record_event(child, op.id, event(None));
            ended(s, child, None, now);
            if op.check {
                // A healthy canary: nothing to count.
            } else if op.restore.is_some() {
                s.update_rollout(|r| r.restored += 1);
            } else if untouched {
                s.update_rollout(|r| r.verified += 1);
            } else if op.step != Step::InstallNew {
                s.update_rollout(|r| r.upgraded += 1);
            }
            maybe_finish(s, now);
            None
        }
        Next::Fail {
            error,
            observed,
            lost_control,
            shortfall,
        } => {
            if let Some(hash) = observed {
                entry.installed_hash = hash;
            }
            entry.phase = Phase::Failed;
            entry.last_error = Some(error.clone());
            entry.lost_control = lost_control;
            entry.short_of_cycles = shortfall;
            entry.updated_at = now;
            s.put_child(child, entry);
            s.record_event(child, op.id, event(Some(error.clone())));
            ended(s, child, Some(&error), now);
            maybe_finish(s, now);
            None
        }
    }
}

#[cfg(test)]
mod tests;
