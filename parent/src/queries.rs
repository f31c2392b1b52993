//! Read-only views. Each reads a bounded number of entries, whatever the fleet size.

use crate::gates::{eta_secs, rate_per_hour};
use crate::model::{ChildEntry, Phase, Shortfall, Stage};
use crate::rollout;
use crate::state::State;
use candid::Principal;
use shared::parent::{
    ChildEvent, ChildFailure, ChildInfo, ChildState, ChunkStoreStatus, FailureKind, Halted, HistoryArg, InFlightChild,
    ListChildrenArg, ReleaseRecord, RolloutRecord, RolloutStage, RolloutStatus, SnapshotInfo, StepResult,
};
use std::ops::Bound;

/// Largest `list_children` page.
pub const MAX_PAGE: usize = 500;
/// Failures listed by `rollout_status` (the count is exact; the list is the first ones in principal order).
pub const MAX_LISTED_FAILURES: usize = 100;
/// In-flight children listed by `rollout_status` (rollout locks ≤ 2K ≤ 200, so normally all of them).
pub const MAX_LISTED_IN_FLIGHT: usize = 200;

pub fn child_state(s: &State, entry: &ChildEntry) -> ChildState {
    match &entry.phase {
        Phase::Idle if s.target_is(entry.installed_hash.as_deref()) => ChildState::UpToDate,
        Phase::Idle => ChildState::Outdated,
        Phase::Pending => ChildState::Pending,
        Phase::InFlight(op) => ChildState::Upgrading {
            step: op.step.into(),
            since: op.since,
        },
        Phase::Failed => ChildState::Failed,
    }
}

fn failure_kind(entry: &ChildEntry) -> FailureKind {
    match entry.short_of_cycles {
        Some(Shortfall { needed, available }) => FailureKind::InsufficientCycles { needed, available },
        None if entry.lost_control => FailureKind::LostControl,
        None => FailureKind::Running,
    }
}

pub fn child_info(s: &State, id: Principal, entry: &ChildEntry) -> ChildInfo {
    ChildInfo {
        canister_id: id,
        installed_hash: entry.installed_hash.clone(),
        state: child_state(s, entry),
        last_error: entry.last_error.clone(),
        attempts: entry.attempts,
        created_at: entry.created_at,
        updated_at: entry.updated_at,
        failure: (entry.phase == Phase::Failed).then(|| failure_kind(entry)),
        snapshot: entry.snapshot.as_ref().map(|snap| SnapshotInfo {
            id: snap.id.clone(),
            release: snap.release.clone(),
            rollout: snap.rollout,
            taken_at: snap.taken_at,
        }),
    }
}

pub fn get_child(s: &State, id: Principal) -> Option<ChildInfo> {
    s.child(&id).map(|e| child_info(s, id, &e))
}

pub fn list_children(s: &State, arg: ListChildrenArg) -> Vec<ChildInfo> {
    let lower = match arg.start_after {
        Some(p) => Bound::Excluded(p),
        None => Bound::Unbounded,
    };
    let limit = match arg.limit as usize {
        0 => MAX_PAGE,
        n => n.min(MAX_PAGE),
    };
    s.children()
        .range((lower, Bound::Unbounded))
        .take(limit)
        .map(|e| {
            let (id, stored) = e.into_pair();
            child_info(s, id, &stored.decode())
        })
        .collect()
}

fn chunk_store_status(s: &State) -> Option<ChunkStoreStatus> {
    let store = &s.meta().chunk_store;
    let target = s.target();
    let filling = rollout::chunked(s, &target) && (store.release.is_empty() || store.release == target);
    if !filling && store.release.is_empty() && !store.dirty {
        return None;
    }
    let release = if filling {
        target.to_vec()
    } else {
        store.release.clone()
    };
    let release_hash: Option<[u8; 32]> = release.as_slice().try_into().ok();
    Some(ChunkStoreStatus {
        chunks: release_hash.map_or(0, |h| rollout::chunk_count(s, &h)),
        uploaded: store.chunks.len() as u32,
        release,
        error: store.error.clone(),
    })
}

pub fn rollout_status(s: &State) -> RolloutStatus {
    let rate = rate_per_hour(&s.rollout().recent);
    let r = s.rollout();
    let settings = s.settings();
    let total = s.child_count();
    let (queued, in_flight, failed) = (s.pending().len(), s.in_flight().len(), s.failed().len());
    let pending = queued + unplanned(s, queued + in_flight + failed);
    let in_flight_children = s
        .in_flight()
        .keys()
        .take(MAX_LISTED_IN_FLIGHT)
        .filter_map(|id| {
            let e = s.child(&id)?;
            let op = e.op()?;
            Some(InFlightChild {
                canister_id: id,
                step: op.step.into(),
                since: op.since,
                attempts: e.attempts,
                retry_at: op.wait_until,
            })
        })
        .collect();
    let failures = s
        .failed()
        .keys()
        .take(MAX_LISTED_FAILURES)
        .filter_map(|id| {
            let e = s.child(&id)?;
            Some(ChildFailure {
                canister_id: id,
                error: e.last_error.clone().unwrap_or_default(),
                attempts: e.attempts,
                updated_at: e.updated_at,
                kind: failure_kind(&e),
            })
        })
        .collect();
    RolloutStatus {
        release: s.release_info(&s.target()).expect("the target is a recorded release"),
        rollout_id: r.id,
        started_at: r.started_at,
        finished_at: r.finished_at,
        planning: r.plan.is_some(),
        paused: settings.concurrency == 0 || r.paused,
        concurrency: settings.concurrency,
        total_children: total,
        up_to_date: s.running_on(&s.target()),
        pending,
        in_flight,
        failed,
        upgraded: r.upgraded,
        skipped: r.skipped,
        verify: r.verify,
        verified: r.verified,
        snapshots: r.snapshots,
        restore: r.restore,
        restore_from: r.restore_from,
        stage: match r.stage {
            Stage::Canary => RolloutStage::Canary,
            Stage::Baking { until } => RolloutStage::Baking { until },
            Stage::Checking { .. } => RolloutStage::Checking,
            Stage::Wave => RolloutStage::Wave,
        },
        canaries: r.canaries.clone(),
        halted: r.halted.as_ref().map(|h| Halted {
            reason: h.reason.clone(),
            at: h.at,
        }),
        aborted_at: r.aborted_at,
        attempted: r.attempted,
        failures_in_rollout: r.failures,
        started_by: r.started_by,
        rate_per_hour: rate,
        eta_secs: eta_secs(pending + in_flight, rate),
        restored: r.restored,
        chunk_store: chunk_store_status(s),
        top_ups: r.top_ups,
        cycles_spent: r.cycles_spent,
        in_flight_children,
        failures,
    }
}

/// Children the planner has yet to reach that need the release: those not on the target, less the ones already
/// queued, locked or failed (an estimate from the index of children per module; none while that index is being built).
/// Verifying and restoring rollouts pick children by more than their module, so they count only queued ones.
fn unplanned(s: &State, accounted: u64) -> u64 {
    let r = s.rollout();
    if r.plan.is_none() || r.verify || r.restore {
        return 0;
    }
    let on_target = s.running_on(&s.target()).unwrap_or(s.child_count());
    s.child_count().saturating_sub(on_target).saturating_sub(accounted)
}

/// Every release the parent has carried, oldest first, with whether its module is stored and how many children run
/// it (`None` while that index is being built). O(releases).
pub fn releases(s: &State) -> Vec<ReleaseRecord> {
    let mut out: Vec<ReleaseRecord> = s
        .releases()
        .iter()
        .map(|e| {
            let (hash, r) = e.into_pair();
            ReleaseRecord {
                hash: hash.to_vec(),
                size: r.size,
                version: r.version,
                first_seen: r.first_seen,
                stored: r.stored,
                children: s.running_on(&hash),
            }
        })
        .collect();
    out.sort_by_key(|r| r.first_seen);
    out
}

/// Largest `rollout_history` page.
pub const MAX_HISTORY_PAGE: usize = 100;

/// Ended (or replaced) rollouts, newest first, before `arg.before`. O(page).
pub fn rollout_history(s: &State, arg: HistoryArg) -> Vec<RolloutRecord> {
    let limit = match arg.limit as usize {
        0 => MAX_HISTORY_PAGE,
        n => n.min(MAX_HISTORY_PAGE),
    };
    let upper = arg.before.map_or(Bound::Unbounded, Bound::Excluded);
    s.history()
        .range((Bound::Unbounded, upper))
        .rev()
        .take(limit)
        .map(|e| {
            let (id, r) = e.into_pair();
            RolloutRecord {
                rollout_id: id,
                from: r.from,
                to: r.to,
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
        })
        .collect()
}

/// A child's last operations, oldest first (empty for a child the parent does not know).
pub fn child_events(s: &State, id: Principal) -> Vec<ChildEvent> {
    s.events_of(id)
        .into_iter()
        .map(|(_, e)| ChildEvent {
            rollout_id: e.rollout,
            started_at: e.started_at,
            ended_at: e.ended_at,
            steps: e
                .steps
                .into_iter()
                .map(|(step, ok)| StepResult { step: step.into(), ok })
                .collect(),
            error: e.error,
        })
        .collect()
}
