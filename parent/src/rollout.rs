//! The rollout as a pure state machine over `State`: no calls, no clock, no timers. The driver (`driver.rs`) performs
//! the steps this module hands out and feeds the results back.
//!
//! # A child's phase
//! ```text
//!   Idle ──(planner, register: not on the release;
//!           verifying planner: any)──────────────────> Pending ──(launch: lock taken, attempts += 1)──> InFlight(op)
//!   Failed ──(planner, retry_failed, retry_child)────> Pending                                          │
//!   Idle <──(planner: already on the release)──────── Pending                                          │
//!   Idle, installed_hash = release <──────────────── Done ───────────────── on_result ──────────────────┤
//!   Failed, last_error <───────────────────────────── Fail ─────────────────────────────────────────────┘
//! ```
//! A child queued while the registry has it on the release (or with no known module) starts with `Recheck`: found
//! running the release, it is left alone and counted `verified`.
//!
//! `retry_child` also queues an outdated `Idle` child, and may give the next operation `UpgradeOptions` (e.g.
//! `skip_pre_upgrade`): they are stored in the queued entry, move into the lock when the operation starts, and end
//! with it (a take-over keeps them: it is the same operation).
//!
//! `InFlight(op)` is the per-child lock: only the holder of `op.id` may advance it. A lock whose epoch is older than
//! the current one (the parent was upgraded while its calls were outstanding: their callbacks are lost) or whose step
//! started more than `LOCK_TIMEOUT_NS` ago is taken over as `Recheck`, never blindly redone.
//!
//! # Steps of one operation (`on_result`)
//! | step       | result                           | next                                                       |
//! |------------|----------------------------------|------------------------------------------------------------|
//! | Stop       | ok                               | Install                                                    |
//! | Stop       | unknown (SYS_UNKNOWN)            | Recheck                                                    |
//! | Stop       | error                            | Start (error kept)                                         |
//! | Install    | ok / error / unknown             | Start (error kept): the child is never left stopped        |
//! | InstallNew | ok                               | Done (a new canister runs once installed)                  |
//! | InstallNew | unknown / error                  | Recheck / Fail                                             |
//! | Start      | ok / error                       | Confirm (error kept); the slot is released, the lock kept  |
//! | Confirm    | running the release              | Done                                                       |
//! | Confirm    | anything else                    | Fail (records the hash it saw)                             |
//! | Confirm    | call failed                      | Recheck (one attempt) or Fail                              |
//! | Recheck    | running the release              | Done                                                       |
//! | Recheck    | stopped, on the release          | Start                                                      |
//! | Recheck    | stopped, other module            | Install (it is stopped already)                            |
//! | Recheck    | no module, running               | InstallNew                                                 |
//! | Recheck    | stopping                         | Stop again (one attempt) or Start                          |
//! | Recheck    | running another module           | Stop, i.e. redo (one attempt) or Fail                      |
//! | Recheck    | call failed                      | Recheck (one attempt) or Start, then Confirm decides      |
//!
//! "One attempt" spends one of `MAX_ATTEMPTS` (counted per child since it was planned), so every loop ends; every
//! path that may leave the child stopped goes through Start before it can end in Fail.
//!
//! # Bounds (work per timer execution, independent of the fleet size)
//! - the planner reads at most `PLAN_BATCH` registry entries per tick and continues from a stored cursor;
//! - at most K (`Settings::concurrency` ≤ `admin::MAX_CONCURRENCY`) operations are launched per tick. New operations are
//!   admitted only while fewer than K children are in steps that may change them (stop, install, start, recheck) and
//!   fewer than 2K are locked in all: a child in its read-only `Confirm` has released its slot (so the next child's
//!   stop overlaps it) but still holds its lock. Orphaned locks count until they are taken over. An admitted
//!   operation is never held back: a confirm that fails over to `Recheck` takes a slot again, so only in such error
//!   paths can more than K (never more than 2K) children be in slot-taking steps;
//! - at most `LOCK_SCAN_LIMIT` entries of the IN_FLIGHT index are read per tick or per worker hand-over.

use crate::model::{ChildEntry, Op, Phase, PlanCursor, Step, UpgradeOptions};
use crate::outcome::{CallError, ChildStatus, RunStatus};
use crate::state::State;
use candid::Principal;
use std::ops::Bound;
use std::time::Duration;

/// Registry entries the planner reads per tick.
pub const PLAN_BATCH: usize = 500;
/// IN_FLIGHT entries read per tick or per worker hand-over (locks ≤ 2K ≤ 200, so this is never reached in practice).
pub const LOCK_SCAN_LIMIT: usize = 1_000;
/// A lock whose step started this long ago is stale: its operation is taken over and re-checked. Each step is one
/// bounded-wait call (at most 300 s), so a live operation never gets near this.
pub const LOCK_TIMEOUT_NS: u64 = 15 * 60 * 1_000_000_000;
/// While operations are in flight, the tick comes back this often to take over stale locks.
pub const LOCK_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Operations (first launch, take-overs, retries of a step) per child per plan.
pub const MAX_ATTEMPTS: u32 = 3;

/// A step to perform on a child, under lock `op_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub child: Principal,
    pub op_id: u64,
    pub step: Step,
    /// How `Install` upgrades the child (the operation's options, see `UpgradeOptions`).
    pub upgrade: UpgradeOptions,
}

/// The result of performing a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// stop / install / start.
    Unit(Result<(), CallError>),
    /// canister_status.
    Status(Result<ChildStatus, CallError>),
}

/// What a tick decided.
#[derive(Debug, PartialEq, Eq)]
pub struct TickPlan {
    pub launches: Vec<Launch>,
    /// Come back after this delay (`None`: nothing left that needs a tick).
    pub rearm: Option<Duration>,
}

/// Run by `init` and `post_upgrade`, which may not make calls. O(log n): bumps the epoch (so operations of the
/// previous instance are recognised as orphans), records the release and starts a new rollout if the release changed.
/// Returns whether the tick has work.
pub fn on_install(s: &mut State, now: u64) -> bool {
    s.update_meta(|m| m.epoch += 1);
    s.record_release(now);
    if s.rollout().release != s.release.hash {
        new_rollout(s, now, false);
    }
    has_work(s)
}

/// Starts a rollout of the current release: the planner re-reads the whole registry. Children already queued or
/// locked are left as they are (one operation per child at a time). With `verify`, children the registry has on the
/// release are queued as well: their operation starts with a re-check (`canister_status`), which leaves a child
/// running the release alone and upgrades one whose module was changed behind the parent's back. Returns the
/// rollout id.
pub fn new_rollout(s: &mut State, now: u64, verify: bool) -> u64 {
    let release = s.release.hash.to_vec();
    let mut id = 0;
    s.update_rollout(|r| {
        r.id += 1;
        id = r.id;
        r.release = release;
        r.started_at = now;
        r.finished_at = None;
        r.plan = Some(PlanCursor::default());
        r.upgraded = 0;
        r.skipped = 0;
        r.verify = verify;
        r.verified = 0;
    });
    id
}

pub fn has_work(s: &State) -> bool {
    s.rollout().plan.is_some() || !s.pending().is_empty() || !s.in_flight().is_empty()
}

/// One timer execution: plan a batch, take over orphaned locks and launch operations, up to K.
pub fn tick(s: &mut State, now: u64) -> TickPlan {
    plan_batch(s, now);
    let launches = launch(s, now, usize::MAX);
    maybe_finish(s, now);
    let k = s.settings().concurrency;
    let rearm = if s.rollout().plan.is_some() {
        Some(Duration::ZERO)
    } else if k > 0 && !s.in_flight().is_empty() {
        Some(LOCK_CHECK_INTERVAL)
    } else {
        None
    };
    TickPlan { launches, rearm }
}

/// Reads up to `PLAN_BATCH` registry entries after the cursor and queues those that need the release.
pub fn plan_batch(s: &mut State, now: u64) {
    let Some(cursor) = s.rollout().plan.clone() else {
        return;
    };
    let lower = match cursor.after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Unbounded,
    };
    let batch: Vec<(Principal, ChildEntry)> = s
        .children()
        .range((lower, Bound::Unbounded))
        .take(PLAN_BATCH)
        .map(|e| e.into_pair())
        .collect();
    let finished = batch.len() < PLAN_BATCH;
    let last = batch.last().map(|(id, _)| *id);
    let verify = s.rollout().verify;
    let mut skipped = 0;
    for (id, mut entry) in batch {
        let on_release = s.release.is(entry.installed_hash.as_deref());
        match entry.phase {
            Phase::Idle if on_release && !verify => skipped += 1,
            // Queued for an earlier release but already on this one (e.g. the parent went back to a release it
            // had carried): drop it from the queue rather than spend a call on it.
            Phase::Pending if on_release && !verify => {
                skipped += 1;
                entry.phase = Phase::Idle;
                entry.upgrade = UpgradeOptions::default();
                entry.updated_at = now;
                s.put_child(id, entry);
            }
            Phase::Idle | Phase::Failed => {
                entry.phase = Phase::Pending;
                entry.attempts = 0;
                entry.updated_at = now;
                s.put_child(id, entry);
            }
            // Already queued, or locked by an operation that will see the current release.
            Phase::Pending | Phase::InFlight(_) => {}
        }
    }
    s.update_rollout(|r| {
        r.skipped += skipped;
        r.plan = if finished {
            None
        } else {
            Some(PlanCursor { after: last })
        };
    });
}

/// Launches up to `max` operations: orphaned locks first (taken over as `Recheck`), then queued children. Used by
/// the tick (`max` = all) and by a worker that just released its slot (`max` = 1), which keeps the pipeline full
/// without waiting for a tick.
///
/// Admission: fewer than K locks in slot-taking steps (every step but the read-only `Confirm`) and fewer than 2K
/// locks in all. A child's slot is released when it reaches `Confirm`, so the next child's stop overlaps the previous
/// child's confirm; the child itself stays locked until the confirm is committed.
pub fn launch(s: &mut State, now: u64, max: usize) -> Vec<Launch> {
    let k = s.settings().concurrency as usize;
    if k == 0 || max == 0 {
        return Vec::new();
    }
    let epoch = s.meta().epoch;
    let (mut slots, mut confirming) = (0usize, 0usize);
    let mut orphans = Vec::new();
    for e in s.in_flight().iter().take(LOCK_SCAN_LIMIT) {
        let (id, mark) = e.into_pair();
        if mark.epoch != epoch || now.saturating_sub(mark.since) >= LOCK_TIMEOUT_NS {
            orphans.push(id);
        } else if mark.slot {
            slots += 1;
        } else {
            confirming += 1;
        }
    }
    let budget = max
        .min(k.saturating_sub(slots))
        .min((2 * k).saturating_sub(slots + confirming));
    let mut out: Vec<Launch> = orphans.iter().take(budget).map(|id| take_over(s, *id, now)).collect();
    // Orphans not taken over yet still hold their slot.
    let waiting = orphans.len() - out.len();
    let room = k
        .saturating_sub(slots + out.len() + waiting)
        .min((2 * k).saturating_sub(s.in_flight().len() as usize));
    let n = (budget - out.len()).min(room);
    let queued: Vec<Principal> = s.pending().keys().take(n).collect();
    out.extend(queued.into_iter().map(|id| launch_pending(s, id, now)));
    out
}

fn lock(s: &mut State, step: Step, now: u64, error: Option<String>, upgrade: UpgradeOptions) -> Op {
    Op {
        id: s.next_op_id(),
        epoch: s.meta().epoch,
        step,
        since: now,
        error,
        upgrade,
    }
}

fn launch_of(child: Principal, op: &Op) -> Launch {
    Launch {
        child,
        op_id: op.id,
        step: op.step,
        upgrade: op.upgrade,
    }
}

fn launch_pending(s: &mut State, id: Principal, now: u64) -> Launch {
    let mut entry = s.child(&id).expect("PENDING index names a registered child");
    assert_eq!(entry.phase, Phase::Pending, "PENDING index out of step with {id}");
    // A child with no known module, or one recorded on the release but failed (e.g. left stopped), is looked at
    // before anything is done to it.
    let first = match &entry.installed_hash {
        Some(h) if !s.release.is(Some(h)) => Step::Stop,
        _ => Step::Recheck,
    };
    // The options set by `retry_child` are for this one operation: they move into the lock.
    let upgrade = std::mem::take(&mut entry.upgrade);
    let op = lock(s, first, now, None, upgrade);
    let launch = launch_of(id, &op);
    entry.attempts += 1;
    entry.phase = Phase::InFlight(op);
    entry.updated_at = now;
    s.put_child(id, entry);
    launch
}

/// Takes over an orphaned or stale lock: a fresh lock id (results for the old one are ignored) and a re-check.
fn take_over(s: &mut State, id: Principal, now: u64) -> Launch {
    let mut entry = s.child(&id).expect("IN_FLIGHT index names a registered child");
    let Phase::InFlight(old) = &entry.phase else {
        panic!("IN_FLIGHT index out of step with {id}")
    };
    // The same operation goes on under a new lock: it keeps its options.
    let op = lock(s, Step::Recheck, now, old.error.clone(), old.upgrade);
    let launch = launch_of(id, &op);
    entry.attempts += 1;
    entry.phase = Phase::InFlight(op);
    entry.updated_at = now;
    s.put_child(id, entry);
    launch
}

/// Registers a child the parent just created, locked at `InstallNew`.
pub fn adopt_new_child(s: &mut State, id: Principal, now: u64) -> Launch {
    let op = lock(s, Step::InstallNew, now, None, UpgradeOptions::default());
    let launch = launch_of(id, &op);
    let mut entry = ChildEntry::new(None, Phase::InFlight(op), now);
    entry.attempts = 1;
    s.put_child(id, entry);
    launch
}

/// Registers an existing canister running `hash`; queues it unless it already runs the release.
pub fn adopt_child(s: &mut State, id: Principal, hash: Option<Vec<u8>>, now: u64) -> ChildEntry {
    let phase = if s.release.is(hash.as_deref()) {
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

fn reopen(s: &mut State) {
    if s.rollout().finished_at.is_some() {
        s.update_rollout(|r| r.finished_at = None);
    }
}

fn maybe_finish(s: &mut State, now: u64) {
    if s.rollout().finished_at.is_none() && !has_work(s) {
        s.update_rollout(|r| r.finished_at = Some(now));
    }
}

fn note(previous: &Option<String>, new: impl std::fmt::Display) -> Option<String> {
    Some(match previous {
        Some(p) => format!("{p}; {new}"),
        None => new.to_string(),
    })
}

fn describe(st: &ChildStatus) -> String {
    let module = match &st.module_hash {
        Some(h) => hex(h),
        None => "no module".into(),
    };
    format!("child is {:?} with {module}", st.status)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What happens after a step.
enum Next {
    Step {
        step: Step,
        error: Option<String>,
        spend_attempt: bool,
    },
    Done,
    Fail {
        error: String,
        observed: Option<Option<Vec<u8>>>,
    },
}

/// The transition table (see the module docs). Pure: decides from the step, its outcome and the attempt budget.
fn decide(s: &State, op: &Op, attempts: u32, outcome: Outcome) -> Next {
    let release = &s.release;
    let can_retry = attempts < MAX_ATTEMPTS;
    let go = |step: Step, error: Option<String>| Next::Step {
        step,
        error,
        spend_attempt: false,
    };
    let retry = |step: Step, error: Option<String>| Next::Step {
        step,
        error,
        spend_attempt: true,
    };
    match (op.step, outcome) {
        (Step::Stop, Outcome::Unit(Ok(()))) => go(Step::Install, op.error.clone()),
        (Step::Stop, Outcome::Unit(Err(e))) if e.is_unknown() => go(Step::Recheck, note(&op.error, e)),
        (Step::Stop, Outcome::Unit(Err(e))) => go(Step::Start, note(&op.error, e)),
        (Step::Install, Outcome::Unit(Ok(()))) => go(Step::Start, op.error.clone()),
        // Whatever happened to the install, start the child; Confirm then says whether the release runs.
        (Step::Install, Outcome::Unit(Err(e))) => go(Step::Start, note(&op.error, e)),
        (Step::InstallNew, Outcome::Unit(Ok(()))) => Next::Done,
        (Step::InstallNew, Outcome::Unit(Err(e))) if e.is_unknown() => go(Step::Recheck, note(&op.error, e)),
        (Step::InstallNew, Outcome::Unit(Err(e))) => Next::Fail {
            error: note(&op.error, e).unwrap_or_default(),
            observed: None,
        },
        (Step::Start, Outcome::Unit(Ok(()))) => go(Step::Confirm, op.error.clone()),
        (Step::Start, Outcome::Unit(Err(e))) => go(Step::Confirm, note(&op.error, e)),
        (Step::Confirm, Outcome::Status(Ok(st))) => {
            if st.status == RunStatus::Running && release.is(st.module_hash.as_deref()) {
                Next::Done
            } else {
                let seen = format!("confirm: {}, expected release {}", describe(&st), hex(&release.hash));
                Next::Fail {
                    error: note(&op.error, seen).unwrap_or_default(),
                    observed: Some(st.module_hash),
                }
            }
        }
        (Step::Confirm, Outcome::Status(Err(e))) if can_retry => retry(Step::Recheck, note(&op.error, e)),
        (Step::Confirm, Outcome::Status(Err(e))) => Next::Fail {
            error: note(&op.error, e).unwrap_or_default(),
            observed: None,
        },
        (Step::Recheck, Outcome::Status(Ok(st))) => {
            let on_release = release.is(st.module_hash.as_deref());
            match st.status {
                RunStatus::Running if on_release => Next::Done,
                RunStatus::Stopped if on_release => go(Step::Start, op.error.clone()),
                RunStatus::Stopped if st.module_hash.is_some() => go(Step::Install, op.error.clone()),
                // Stopped and empty: start it; Confirm reports that it has no module.
                RunStatus::Stopped => go(Step::Start, op.error.clone()),
                RunStatus::Running if st.module_hash.is_none() => go(Step::InstallNew, op.error.clone()),
                RunStatus::Stopping if can_retry => retry(Step::Stop, op.error.clone()),
                RunStatus::Stopping => go(Step::Start, note(&op.error, "gave up waiting for the child to stop")),
                RunStatus::Running if can_retry => retry(Step::Stop, op.error.clone()),
                RunStatus::Running => Next::Fail {
                    error: note(
                        &op.error,
                        format!("not upgraded after {attempts} attempts: {}", describe(&st)),
                    )
                    .unwrap_or_default(),
                    observed: Some(st.module_hash),
                },
            }
        }
        (Step::Recheck, Outcome::Status(Err(e))) if can_retry => retry(Step::Recheck, note(&op.error, e)),
        // Out of attempts and blind: start the child in case it is stopped; Confirm has the last word.
        (Step::Recheck, Outcome::Status(Err(e))) => go(Step::Start, note(&op.error, e)),
        (step, outcome) => panic!("step {step:?} cannot produce {outcome:?}"),
    }
}

/// Commits the result of a step performed under lock `op_id` and returns the next step of the same operation, if any.
/// A result for a lock that has been taken over (or a child removed since) is ignored.
pub fn on_result(s: &mut State, child: Principal, op_id: u64, outcome: Outcome, now: u64) -> Option<Launch> {
    let mut entry = s.child(&child)?;
    let op = match &entry.phase {
        Phase::InFlight(op) if op.id == op_id => op.clone(),
        _ => return None,
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
            let next = Op {
                id: op.id,
                epoch: s.meta().epoch,
                step,
                since: now,
                error,
                upgrade: op.upgrade,
            };
            let launch = launch_of(child, &next);
            entry.phase = Phase::InFlight(next);
            entry.updated_at = now;
            s.put_child(child, entry);
            Some(launch)
        }
        Next::Done => {
            // Found running the release it was recorded on: nothing was done to it.
            let untouched = op.step == Step::Recheck && s.release.is(entry.installed_hash.as_deref());
            entry.installed_hash = Some(s.release.hash.to_vec());
            entry.phase = Phase::Idle;
            entry.last_error = None;
            entry.updated_at = now;
            s.put_child(child, entry);
            if untouched {
                s.update_rollout(|r| r.verified += 1);
            } else if op.step != Step::InstallNew {
                s.update_rollout(|r| r.upgraded += 1);
            }
            maybe_finish(s, now);
            None
        }
        Next::Fail { error, observed } => {
            if let Some(hash) = observed {
                entry.installed_hash = hash;
            }
            entry.phase = Phase::Failed;
            entry.last_error = Some(error);
            entry.updated_at = now;
            s.put_child(child, entry);
            maybe_finish(s, now);
            None
        }
    }
}

#[cfg(test)]
mod tests;
