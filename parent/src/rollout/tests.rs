use super::*;
use crate::driver;
use crate::ic::{Ic, InstallMode};
use crate::model::{ChildEntry, ChildEvent, Gates, Op, Phase, Share, SnapshotPolicy, Stage, Step, UpgradeOptions};
use crate::outcome::{ChildStatus, RunStatus};
use crate::state::test_support::{fresh_state, install_global, next_release, principal, release_of, OLD};
use crate::state::{mutate_state, read_state, State};
use crate::testing::{block_on, FakeIc, Fault, Method};
use shared::parent::{ParentError, RestoreTarget};

const NOW: u64 = 1_000;

fn add_idle(s: &mut State, id: Principal, hash: Option<&[u8]>) {
    s.put_child(id, ChildEntry::new(hash.map(|h| h.to_vec()), Phase::Idle, 0));
}

/// Answers an operation's first check: the child runs OLD, with cycles enough. Returns the stop.
fn checked(s: &mut State, l: Launch) -> Launch {
    assert_eq!(l.step, Step::Check);
    let next = on_result(s, l.child, l.op_id, status(RunStatus::Running, &OLD), NOW).unwrap();
    assert_eq!(next.step, Step::Stop);
    next
}

/// The module the registry has the child on.
fn recorded(s: &State, id: Principal) -> Vec<u8> {
    s.child(&id).and_then(|e| e.installed_hash).unwrap_or_default()
}

fn release(s: &State) -> Vec<u8> {
    s.release.hash.to_vec()
}

fn set_k(s: &mut State, k: u32) {
    s.update_settings(|st| st.concurrency = k);
}

fn ok() -> Outcome {
    Outcome::Unit(Ok(()))
}

fn status(st: RunStatus, hash: &[u8]) -> Outcome {
    Outcome::Status(Ok(ChildStatus {
        status: st,
        module_hash: Some(hash.to_vec()),
        controllers: None,
        funds: None,
    }))
}

/// Completes the operation behind `launch` with every call succeeding (check on the recorded module, stop, install,
/// start, confirm on release).
fn complete_ok(s: &mut State, launch: Launch, now: u64) {
    let mut next = Some(launch);
    while let Some(l) = next {
        let outcome = match l.step {
            Step::Check => status(RunStatus::Running, &recorded(s, l.child)),
            Step::Confirm | Step::Recheck => status(RunStatus::Running, &s.release.hash.clone()),
            _ => ok(),
        };
        next = on_result(s, l.child, l.op_id, outcome, now);
    }
}

/// A global-state fleet of `n` children running OLD, registered and simulated, with the rollout started.
fn fleet(n: u64, k: u32) -> (FakeIc, Vec<Principal>) {
    let mut s = fresh_state();
    set_k(&mut s, k);
    let ic = FakeIc::new();
    let ids: Vec<Principal> = (0..n).map(principal).collect();
    for id in &ids {
        add_idle(&mut s, *id, Some(&OLD));
        ic.add_child(*id, RunStatus::Running, Some(&OLD));
    }
    on_install(&mut s, Principal::anonymous(), NOW);
    install_global(s);
    (ic, ids)
}

/// Runs ticks and the workers they launch (one after another) until the rollout has no work left; when work is left
/// after a tick (an operation waiting for its backoff), the clock moves on by the lock-check interval, as the next
/// tick would.
fn run_rollout(ic: &FakeIc) {
    for _ in 0..1_000 {
        for launch in driver::tick(ic) {
            block_on(driver::run_worker(ic.clone(), launch));
        }
        ic.run_spawned();
        if !read_state(|s| has_work(s) || store_task(s).is_some()) {
            return;
        }
        ic.0.borrow_mut().now += LOCK_CHECK_INTERVAL.as_nanos() as u64;
    }
    panic!("rollout did not finish");
}

fn entry(id: Principal) -> ChildEntry {
    read_state(|s| s.child(&id).unwrap())
}

// --- planning ---------------------------------------------------------------------------------------------------

#[test]
fn the_planner_launches_only_children_not_on_the_release() {
    let mut s = fresh_state();
    let rel = release(&s);
    add_idle(&mut s, principal(1), Some(&OLD));
    add_idle(&mut s, principal(2), Some(&rel));
    add_idle(&mut s, principal(3), None);
    add_idle(&mut s, principal(4), Some(&rel));
    // Queued for an earlier release, but already on this one.
    s.put_child(principal(6), ChildEntry::new(Some(rel.clone()), Phase::Pending, 0));
    let mut failed = ChildEntry::new(Some(OLD.to_vec()), Phase::Failed, 0);
    failed.attempts = 3;
    s.put_child(principal(5), failed);
    set_k(&mut s, 10);
    assert!(on_install(&mut s, Principal::anonymous(), NOW));
    let launched: Vec<Principal> = tick(&mut s, NOW).launches.iter().map(|l| l.child).collect();

    assert_eq!(launched, vec![principal(1), principal(3), principal(5)]);
    assert!(s.pending().is_empty());
    assert_eq!(s.rollout().skipped, 3);
    assert_eq!(s.child(&principal(6)).unwrap().phase, Phase::Idle);
    assert_eq!(
        s.child(&principal(5)).unwrap().attempts,
        1,
        "re-planning restarts the attempt budget"
    );
    assert!(s.rollout().plan.is_none());
    s.check_invariants();
}

#[test]
fn a_rollout_upgrades_every_outdated_child_and_skips_the_rest() {
    let (ic, ids) = fleet(6, 2);
    // Two of the six already run the release: no call may touch them.
    let rel = read_state(release);
    for id in &ids[..2] {
        mutate_state(|s| add_idle(s, *id, Some(&rel)));
        ic.add_child(*id, RunStatus::Running, Some(&rel));
    }
    run_rollout(&ic);
    for id in &ids[..2] {
        assert!(ic.methods_for(*id).is_empty());
    }
    for id in &ids[2..] {
        assert_eq!(
            ic.methods_for(*id),
            vec![
                Method::Status,
                Method::Stop,
                Method::Install,
                Method::Start,
                Method::Status
            ]
        );
        assert_eq!(ic.canister(*id).module_hash.as_deref(), Some(&rel[..]));
        assert_eq!(ic.canister(*id).status, RunStatus::Running);
        assert_eq!(entry(*id).installed_hash.as_deref(), Some(&rel[..]));
    }
    read_state(|s| {
        assert_eq!((s.rollout().upgraded, s.rollout().skipped), (4, 2));
        assert_eq!(s.rollout().finished_at, Some(1_000));
        s.check_invariants();
    });
}

// --- concurrency ------------------------------------------------------------------------------------------------

#[test]
fn tick_launches_at_most_k_and_hands_over_one_for_one() {
    let mut s = fresh_state();
    for i in 0..30 {
        add_idle(&mut s, principal(i), Some(&OLD));
    }
    set_k(&mut s, 5);
    on_install(&mut s, Principal::anonymous(), NOW);
    let plan = tick(&mut s, NOW);
    assert_eq!(plan.launches.len(), 5);
    assert_eq!(s.in_flight().len(), 5);
    assert_eq!(
        s.pending().len(),
        0,
        "the registry is the queue: nothing is written for a child not launched"
    );
    assert!(
        launch(&mut s, NOW, usize::MAX).launches.is_empty(),
        "K operations are live: nothing more may start"
    );
    assert!(tick(&mut s, NOW).launches.is_empty());

    let mut launches = plan.launches.into_iter();
    complete_ok(&mut s, launches.next().unwrap(), NOW);
    assert_eq!(s.in_flight().len(), 4);
    let next = launch(&mut s, NOW, 1).launches;
    assert_eq!(next.len(), 1);
    assert_eq!(s.in_flight().len(), 5);
    assert!(launch(&mut s, NOW, 1).launches.is_empty());
    s.check_invariants();
}

#[test]
fn workers_keep_at_most_k_children_changing_and_drain_the_queue() {
    let (ic, ids) = fleet(40, 3);
    let first = driver::tick(&ic);
    assert_eq!(first.len(), 3);
    for launch in first {
        block_on(driver::run_worker(ic.clone(), launch));
    }
    // Each worker took the next child as soon as its child reached the confirm, until 2K children were locked.
    read_state(|s| {
        assert_eq!(s.in_flight().len(), 6);
        assert_eq!(s.slot_count(), 0, "every locked child is confirming");
    });
    assert_eq!(ic.run_spawned(), 6);
    run_rollout(&ic);
    let sim = ic.0.borrow();
    assert!(
        sim.max_slots <= 3,
        "at most K children being stopped, installed or started"
    );
    assert!(sim.max_in_flight <= 6, "at most 2K children locked");
    assert!(sim.max_in_flight > 3, "confirms overlapped the next children");
    drop(sim);
    assert_eq!(
        ic.calls().len(),
        40 * 5,
        "exactly check, stop, install, start, confirm per child"
    );
    for id in ids {
        assert_eq!(entry(id).phase, Phase::Idle);
    }
}

#[test]
fn a_confirming_child_releases_its_slot_but_keeps_its_lock() {
    let mut s = fresh_state();
    for i in 0..5 {
        add_idle(&mut s, principal(i), Some(&OLD));
    }
    set_k(&mut s, 1);
    on_install(&mut s, Principal::anonymous(), NOW);
    let advance_to_confirm = |s: &mut State, l: Launch| {
        let l = checked(s, l);
        let l = on_result(s, l.child, l.op_id, ok(), NOW).unwrap();
        let l = on_result(s, l.child, l.op_id, ok(), NOW).unwrap();
        let l = on_result(s, l.child, l.op_id, ok(), NOW).unwrap();
        assert_eq!(l.step, Step::Confirm);
        l
    };
    let a = tick(&mut s, NOW).launches.pop().unwrap();
    assert!(launch(&mut s, NOW, 1).launches.is_empty(), "A holds the only slot");
    let a_confirm = advance_to_confirm(&mut s, a);
    let b = launch(&mut s, NOW, 1)
        .launches
        .pop()
        .expect("A's confirm released the slot");
    let _b_confirm = advance_to_confirm(&mut s, b);
    assert!(launch(&mut s, NOW, 1).launches.is_empty(), "2K = 2 children locked");
    assert!(
        matches!(s.child(&a_confirm.child).unwrap().phase, Phase::InFlight(_)),
        "A is still locked while confirming"
    );
    let rel = release(&s);
    assert!(on_result(
        &mut s,
        a_confirm.child,
        a_confirm.op_id,
        status(RunStatus::Running, &rel),
        NOW
    )
    .is_none());
    assert_eq!(launch(&mut s, NOW, 1).launches.len(), 1);
    s.check_invariants();
}

#[test]
fn concurrency_zero_pauses_and_keeps_state() {
    let mut s = fresh_state();
    for i in 0..10 {
        add_idle(&mut s, principal(i), Some(&OLD));
    }
    set_k(&mut s, 0);
    on_install(&mut s, Principal::anonymous(), NOW);
    let plan = tick(&mut s, NOW);
    assert!(plan.launches.is_empty());
    assert_eq!(plan.rearm, None, "a paused rollout does not spin");
    assert_eq!(
        s.rollout().plan,
        Some(PlanCursor::default()),
        "nothing is planned while nothing may start"
    );
    assert!(s.rollout().finished_at.is_none());

    // Pausing with work in flight: nothing new starts, the in-flight lock stays.
    set_k(&mut s, 2);
    let two = tick(&mut s, NOW).launches;
    assert_eq!(two.len(), 2);
    set_k(&mut s, 0);
    complete_ok(&mut s, two[0].clone(), NOW);
    assert!(launch(&mut s, NOW, 1).launches.is_empty());
    assert_eq!(s.in_flight().len(), 1);

    set_k(&mut s, 3);
    assert_eq!(
        tick(&mut s, NOW).launches.len(),
        2,
        "resumes with K=3 minus the one in flight"
    );
    s.check_invariants();
}

#[test]
fn a_stopping_parent_starts_no_new_child() {
    let (ic, ids) = fleet(5, 1);
    let launches = driver::tick(&ic);
    ic.0.borrow_mut().running = false;
    ic.0.borrow_mut().ticks.clear();
    block_on(driver::run_worker(ic.clone(), launches[0].clone()));
    ic.run_spawned();
    // The child under way was finished (and started), but no other was touched.
    assert_eq!(
        ic.methods_for(ids[0]),
        vec![
            Method::Status,
            Method::Stop,
            Method::Install,
            Method::Start,
            Method::Status
        ]
    );
    assert_eq!(ic.calls().len(), 5);
    assert_eq!(
        ic.0.borrow().ticks,
        vec![Duration::ZERO],
        "a tick is armed to resume after a restart"
    );
}

// --- start always follows stop -------------------------------------------------------------------------------

#[test]
fn start_runs_after_a_failed_stop() {
    let (ic, ids) = fleet(1, 1);
    ic.fault(Method::Stop, ids[0], Fault::Reject(5, "stop refused"));
    run_rollout(&ic);
    assert_eq!(
        ic.methods_for(ids[0]),
        vec![Method::Status, Method::Stop, Method::Start, Method::Status]
    );
    let e = entry(ids[0]);
    assert_eq!(e.phase, Phase::Failed);
    assert!(e.last_error.as_deref().unwrap().contains("stop refused"), "{e:?}");
    assert_eq!(ic.canister(ids[0]).status, RunStatus::Running);
}

#[test]
fn start_runs_after_a_failed_install() {
    let (ic, ids) = fleet(1, 1);
    ic.fault(Method::Install, ids[0], Fault::Reject(5, "install trapped"));
    run_rollout(&ic);
    assert_eq!(
        ic.methods_for(ids[0]),
        vec![
            Method::Status,
            Method::Stop,
            Method::Install,
            Method::Start,
            Method::Status
        ]
    );
    let e = entry(ids[0]);
    assert_eq!(e.phase, Phase::Failed);
    assert!(e.last_error.as_deref().unwrap().contains("install trapped"), "{e:?}");
    assert_eq!(
        e.installed_hash.as_deref(),
        Some(&OLD[..]),
        "the confirm saw the old module"
    );
    assert_eq!(
        ic.canister(ids[0]).status,
        RunStatus::Running,
        "the child is never left stopped"
    );
    read_state(|s| {
        assert_eq!(s.failed().len(), 1);
        assert!(s.rollout().finished_at.is_some());
        s.check_invariants();
    });
}

#[test]
fn an_install_with_unknown_outcome_is_started_and_confirmed() {
    let (ic, ids) = fleet(2, 2);
    ic.fault(Method::Install, ids[0], Fault::UnknownApplied);
    ic.fault(Method::Install, ids[1], Fault::Unknown);
    run_rollout(&ic);
    for id in &ids {
        assert_eq!(
            ic.methods_for(*id),
            vec![
                Method::Status,
                Method::Stop,
                Method::Install,
                Method::Start,
                Method::Status
            ]
        );
        assert_eq!(ic.canister(*id).status, RunStatus::Running);
    }
    assert_eq!(entry(ids[0]).phase, Phase::Idle, "it did take effect: confirmed");
    assert_eq!(
        entry(ids[1]).phase,
        Phase::Failed,
        "it did not: failed, with the old hash recorded"
    );
    assert_eq!(entry(ids[1]).installed_hash.as_deref(), Some(&OLD[..]));
}

#[test]
fn a_confirm_that_does_not_see_the_release_fails_the_child() {
    let (ic, ids) = fleet(1, 1);
    ic.fault(Method::Install, ids[0], Fault::Noop);
    run_rollout(&ic);
    let e = entry(ids[0]);
    assert_eq!(e.phase, Phase::Failed);
    assert!(e.last_error.as_deref().unwrap().contains("confirm"), "{e:?}");
    assert_eq!(e.installed_hash.as_deref(), Some(&OLD[..]));
    read_state(|s| assert_eq!(s.rollout().upgraded, 0));
}

#[test]
fn a_child_seen_stopped_is_started_again_at_once_then_with_backoff_until_it_runs() {
    let mut s = fresh_state();
    let id = principal(1);
    add_idle(&mut s, id, Some(&OLD));
    on_install(&mut s, Principal::anonymous(), NOW);
    let l = tick(&mut s, NOW).launches.pop().unwrap();
    let l = checked(&mut s, l);
    let l = on_result(&mut s, l.child, l.op_id, ok(), NOW).unwrap(); // stopped
    let l = on_result(&mut s, l.child, l.op_id, ok(), NOW).unwrap(); // installed
    let failed_start = Outcome::Unit(Err(CallError::new("start_canister", 2, "queue full")));
    let l = on_result(&mut s, l.child, l.op_id, failed_start.clone(), NOW).unwrap();
    assert_eq!(
        l.step,
        Step::Confirm,
        "a failed start is confirmed: it may have started anyway"
    );
    let rel = release(&s);
    let stopped = || status(RunStatus::Stopped, &rel);

    // First turn: started again at once.
    let l = on_result(&mut s, l.child, l.op_id, stopped(), NOW).unwrap();
    assert_eq!(l.step, Step::Start);
    let l = on_result(&mut s, l.child, l.op_id, failed_start.clone(), NOW).unwrap();
    // Second turn: waits `backoff(1)` with no call out, holding its slot, and never ends Failed meanwhile.
    assert!(on_result(&mut s, l.child, l.op_id, stopped(), NOW).is_none());
    let op = s.child(&id).unwrap().op().cloned().expect("still locked");
    let due = NOW + FIRST_BACKOFF.as_nanos() as u64;
    assert_eq!((op.step, op.wait_until, op.retries), (Step::Start, Some(due), 2));
    assert_eq!(s.slot_count(), 1);
    assert!(tick(&mut s, due - 1).launches.is_empty(), "not due yet");
    let resumed = tick(&mut s, due).launches;
    assert_eq!(resumed.len(), 1);
    let l = resumed[0].clone();
    assert_eq!(l.step, Step::Start);
    // Third turn waits twice as long.
    let l = on_result(&mut s, l.child, l.op_id, failed_start, due).unwrap();
    assert!(on_result(&mut s, l.child, l.op_id, stopped(), due).is_none());
    let later = due + 2 * FIRST_BACKOFF.as_nanos() as u64;
    assert_eq!(s.child(&id).unwrap().op().unwrap().wait_until, Some(later));

    // Once the start works, the child runs the release: done, with no failure left behind.
    let l = tick(&mut s, later).launches.pop().unwrap();
    let l = on_result(&mut s, l.child, l.op_id, ok(), later).unwrap();
    assert!(on_result(&mut s, l.child, l.op_id, status(RunStatus::Running, &rel), later).is_none());
    let e = s.child(&id).unwrap();
    assert_eq!(
        (e.phase, e.last_error, e.installed_hash),
        (Phase::Idle, None, Some(rel.clone()))
    );
    s.check_invariants();
}

#[test]
fn backoff_starts_at_once_then_doubles_to_an_hour() {
    assert_eq!(backoff(0), None);
    assert_eq!(backoff(1), Some(FIRST_BACKOFF));
    assert_eq!(backoff(2), Some(FIRST_BACKOFF * 2));
    assert_eq!(backoff(6), Some(FIRST_BACKOFF * 32));
    assert_eq!(backoff(7), Some(MAX_BACKOFF));
    assert_eq!(backoff(u32::MAX), Some(MAX_BACKOFF));
}

#[test]
fn a_child_ends_failed_only_when_seen_running_or_out_of_control() {
    let rel = fresh_state().release.hash;
    let lost = CallError::new(
        "start_canister",
        5,
        "Only controllers of canister x can call ic00 method start_canister",
    );
    let gone = CallError::new("canister_status", 3, "Canister x not found");
    for (label, outcome, lost_control) in [
        ("running another module", status(RunStatus::Running, &OLD), false),
        ("not a controller", Outcome::Unit(Err(lost.clone())), true),
        ("deleted", Outcome::Status(Err(gone.clone())), true),
    ] {
        let mut s = fresh_state();
        let id = principal(1);
        add_idle(&mut s, id, Some(&OLD));
        on_install(&mut s, Principal::anonymous(), NOW);
        let l = tick(&mut s, NOW).launches.pop().unwrap();
        let mut l = checked(&mut s, l);
        // Walk to the step that can produce this outcome.
        let want = match &outcome {
            Outcome::Unit(_) => Step::Start,
            Outcome::Status(_) | Outcome::Snapshot(_) => Step::Confirm,
        };
        while l.step != want {
            l = on_result(&mut s, l.child, l.op_id, ok(), NOW).unwrap();
        }
        assert!(on_result(&mut s, l.child, l.op_id, outcome, NOW).is_none(), "{label}");
        let e = s.child(&id).unwrap();
        assert_eq!((e.phase, e.lost_control), (Phase::Failed, lost_control), "{label}");
        let _ = rel;
    }
    // Seen stopped, or not seen at all: never failed, whatever the attempts.
    for outcome in [
        status(RunStatus::Stopped, &OLD),
        Outcome::Status(Err(CallError::new("canister_status", 2, "busy"))),
    ] {
        let mut s = fresh_state();
        add_idle(&mut s, principal(1), Some(&OLD));
        on_install(&mut s, Principal::anonymous(), NOW);
        let l = tick(&mut s, NOW).launches.pop().unwrap();
        let mut l = checked(&mut s, l);
        while l.step != Step::Confirm {
            l = on_result(&mut s, l.child, l.op_id, ok(), NOW).unwrap();
        }
        let mut e = s.child(&principal(1)).unwrap();
        e.attempts = MAX_ATTEMPTS;
        s.put_child(principal(1), e);
        on_result(&mut s, l.child, l.op_id, outcome.clone(), NOW);
        assert!(
            matches!(s.child(&principal(1)).unwrap().phase, Phase::InFlight(_)),
            "{outcome:?}"
        );
    }
}

#[test]
fn errors_are_capped_keeping_the_latest() {
    let long = "x".repeat(MAX_ERROR_BYTES);
    let error = note(&Some(long), "the latest error").unwrap();
    assert!(error.len() <= MAX_ERROR_BYTES + 3, "{}", error.len());
    assert!(error.starts_with('…') && error.ends_with("; the latest error"));
}

// --- resuming interrupted operations --------------------------------------------------------------------------

/// A child caught mid-step by a parent upgrade: its lock carries the previous epoch and its callbacks are lost.
fn orphan(step: Step, sim_status: RunStatus, sim_hash: Option<&[u8]>) -> (FakeIc, Principal) {
    let mut s = fresh_state();
    let ic = FakeIc::new();
    let id = principal(7);
    on_install(&mut s, Principal::anonymous(), NOW); // the instance that launched the operation
    let epoch = s.meta().epoch;
    let op = Op {
        started_at: 0,
        ..Op::new(s.next_op_id(), epoch, step, NOW)
    };
    let mut e = ChildEntry::new(Some(OLD.to_vec()), Phase::InFlight(op), 0);
    e.attempts = 1;
    s.put_child(id, e);
    ic.add_child(id, sim_status, sim_hash);
    on_install(&mut s, Principal::anonymous(), NOW); // post_upgrade of the next instance
    install_global(s);
    (ic, id)
}

#[test]
fn an_interrupted_operation_is_rechecked_never_blindly_redone() {
    let rel = fresh_state().release.hash;
    use Method::*;
    // (step the operation was cut off at, what the child is now, module it runs, calls expected to finish it)
    type Case<'a> = (Step, RunStatus, Option<&'a [u8]>, Vec<Method>);
    let cases: Vec<Case> = vec![
        // Stopped with the release (install done, start lost): just start it.
        (
            Step::Install,
            RunStatus::Stopped,
            Some(&rel),
            vec![Status, Start, Status],
        ),
        (Step::Start, RunStatus::Stopped, Some(&rel), vec![Status, Start, Status]),
        // Running the release: nothing to do.
        (Step::Start, RunStatus::Running, Some(&rel), vec![Status]),
        (Step::Confirm, RunStatus::Running, Some(&rel), vec![Status]),
        (Step::Recheck, RunStatus::Running, Some(&rel), vec![Status]),
        // Stopped on the old module (stop done, install lost or failed): install, start, confirm.
        (
            Step::Stop,
            RunStatus::Stopped,
            Some(&OLD),
            vec![Status, Install, Start, Status],
        ),
        (
            Step::Install,
            RunStatus::Stopped,
            Some(&OLD),
            vec![Status, Install, Start, Status],
        ),
        // Still stopping: wait for the stop again, then carry on.
        (
            Step::Stop,
            RunStatus::Stopping,
            Some(&OLD),
            vec![Status, Stop, Install, Start, Status],
        ),
        // Running the old module (the stop never happened): redo from stop.
        (
            Step::Stop,
            RunStatus::Running,
            Some(&OLD),
            vec![Status, Stop, Install, Start, Status],
        ),
        // A new child whose install was cut off: install it.
        (Step::InstallNew, RunStatus::Running, None, vec![Status, InstallNew]),
    ];
    for (step, st, hash, expected) in cases {
        let (ic, id) = orphan(step, st, hash);
        run_rollout(&ic);
        let label = format!("{step:?} / {st:?} / {:?}", hash.map(|h| h[0]));
        assert_eq!(ic.methods_for(id), expected, "{label}");
        assert_eq!(entry(id).phase, Phase::Idle, "{label}");
        assert_eq!(entry(id).installed_hash.as_deref(), Some(&rel[..]), "{label}");
        assert_eq!(ic.canister(id).status, RunStatus::Running, "{label}");
        read_state(|s| s.check_invariants());
    }
}

#[test]
fn rechecks_that_keep_failing_go_on_with_backoff_and_the_child_is_started() {
    let (ic, id) = orphan(Step::Stop, RunStatus::Stopped, Some(&OLD));
    for _ in 0..6 {
        ic.fault(Method::Status, id, Fault::Reject(2, "status unavailable"));
    }
    run_rollout(&ic);
    use Method::*;
    // take-over (attempt 2): recheck fails → recheck (attempt 3) fails → out of attempts, blind: start at once →
    // confirm fails → recheck after 1 min fails → start after 2 min → confirm fails → recheck after 4 min fails →
    // start after 8 min → confirm sees it running OLD, out of attempts: failed, running.
    assert_eq!(
        ic.methods_for(id),
        vec![Status, Status, Start, Status, Status, Start, Status, Status, Start, Status]
    );
    let e = entry(id);
    assert_eq!(
        (e.phase, e.lost_control, e.attempts),
        (Phase::Failed, false, MAX_ATTEMPTS)
    );
    assert_eq!(ic.canister(id).status, RunStatus::Running);
}

#[test]
fn a_child_that_never_upgrades_fails_after_max_attempts() {
    let (ic, id) = orphan(Step::Stop, RunStatus::Running, Some(&OLD));
    // Every install "succeeds" without effect.
    for _ in 0..10 {
        ic.fault(Method::Install, id, Fault::Noop);
    }
    run_rollout(&ic);
    use Method::*;
    // take-over (attempt 2): running the old module → redo (attempt 3) → the confirm still sees it: failed.
    assert_eq!(ic.methods_for(id), vec![Status, Stop, Install, Start, Status]);
    let e = entry(id);
    assert_eq!(e.phase, Phase::Failed);
    assert_eq!(e.installed_hash.as_deref(), Some(&OLD[..]));
    assert_eq!(ic.canister(id).status, RunStatus::Running);
}

// --- locks ----------------------------------------------------------------------------------------------------

#[test]
fn the_lock_prevents_a_second_operation_on_a_child() {
    let mut s = fresh_state();
    add_idle(&mut s, principal(1), Some(&OLD));
    add_idle(&mut s, principal(2), Some(&OLD));
    set_k(&mut s, 1);
    on_install(&mut s, Principal::anonymous(), NOW);
    let first = tick(&mut s, NOW).launches;
    assert_eq!(first.len(), 1);
    let locked = first[0].child;

    // Overlapping rollouts re-plan, but a locked child is neither queued nor launched again.
    set_k(&mut s, 10);
    let target = s.target();
    new_rollout(&mut s, NOW, target, false);
    let plan = tick(&mut s, NOW);
    assert!(plan.launches.iter().all(|l| l.child != locked), "{plan:?}");
    assert!(!s.pending().contains_key(&locked));
    let target = s.target();
    new_rollout(&mut s, NOW, target, false);
    assert!(tick(&mut s, NOW).launches.is_empty());

    // Only the lock holder may advance the operation.
    let before = s.child(&locked).unwrap();
    let seen = || status(RunStatus::Running, &OLD);
    assert!(on_result(&mut s, locked, first[0].op_id + 100, seen(), NOW).is_none());
    assert_eq!(s.child(&locked).unwrap(), before);
    assert!(on_result(&mut s, locked, first[0].op_id, seen(), NOW).is_some());
    s.check_invariants();
}

#[test]
fn a_stale_lock_is_taken_over_and_the_old_holder_is_ignored() {
    let mut s = fresh_state();
    add_idle(&mut s, principal(1), Some(&OLD));
    on_install(&mut s, Principal::anonymous(), NOW);
    let plan = tick(&mut s, NOW);
    let old = plan.launches[0].clone();
    assert_eq!(
        plan.rearm,
        Some(LOCK_CHECK_INTERVAL),
        "a tick comes back to look for stale locks"
    );

    assert!(
        tick(&mut s, NOW + LOCK_TIMEOUT_NS - 1).launches.is_empty(),
        "not stale yet"
    );
    let later = NOW + LOCK_TIMEOUT_NS;
    let taken = tick(&mut s, later).launches;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].step, Step::Recheck);
    assert_ne!(taken[0].op_id, old.op_id);

    // The old holder's late result changes nothing.
    let before = s.child(&principal(1)).unwrap();
    assert!(on_result(&mut s, old.child, old.op_id, ok(), later).is_none());
    assert_eq!(s.child(&principal(1)).unwrap(), before);
    s.check_invariants();
}

#[test]
fn orphans_are_taken_over_whatever_k_is_and_before_new_children_start() {
    let mut s = fresh_state();
    set_k(&mut s, 4);
    for i in 0..6 {
        add_idle(&mut s, principal(i), Some(&OLD));
    }
    on_install(&mut s, Principal::anonymous(), NOW);
    assert_eq!(tick(&mut s, NOW).launches.len(), 4);
    on_install(&mut s, Principal::anonymous(), NOW); // upgrade: four orphans (their children may be stopped)
    set_k(&mut s, 0); // and the rollout paused
    let plan = tick(&mut s, NOW);
    assert_eq!(plan.launches.len(), 4, "paused, yet every orphan is taken over");
    assert!(plan.launches.iter().all(|l| l.step == Step::Recheck));
    assert_eq!(
        plan.rearm,
        Some(LOCK_CHECK_INTERVAL),
        "locks keep the tick coming while paused"
    );
    assert!(
        tick(&mut s, NOW).launches.is_empty(),
        "no new child starts while paused"
    );
    set_k(&mut s, 2);
    for l in &plan.launches[..3] {
        complete_ok(&mut s, l.clone(), NOW);
    }
    assert!(
        launch(&mut s, NOW, 10).launches.len() == 1,
        "one orphan left holds one of K = 2 slots"
    );
    s.check_invariants();
}

// --- bounded work per tick and parent upgrades ----------------------------------------------------------------

#[test]
fn each_tick_reads_a_bounded_batch_and_launches_at_most_k() {
    let mut s = fresh_state();
    let rel = release(&s);
    let on_release = 2 * PLAN_BATCH as u64 + 123;
    for i in 0..on_release {
        add_idle(&mut s, principal(i), Some(&rel));
    }
    for i in on_release..on_release + 10 {
        add_idle(&mut s, principal(i), Some(&OLD));
    }
    set_k(&mut s, 7);
    on_install(&mut s, Principal::anonymous(), NOW);
    let mut ticks = 0;
    let launched = loop {
        let skipped_before = s.rollout().skipped;
        let plan = tick(&mut s, NOW);
        ticks += 1;
        assert!(
            s.rollout().skipped - skipped_before <= PLAN_BATCH as u64,
            "read more than a batch in one tick"
        );
        if !plan.launches.is_empty() {
            break plan.launches.len();
        }
        assert_eq!(plan.rearm, Some(Duration::ZERO), "planning continues on the next round");
    };
    assert_eq!((ticks, launched), (3, 7));
    assert_eq!(s.rollout().skipped, on_release);
    assert!(s.rollout().plan.is_some(), "three children are still to be reached");
    assert_eq!(
        tick(&mut s, NOW).rearm,
        Some(LOCK_CHECK_INTERVAL),
        "K slots are taken: the workers go on as slots free up"
    );
    s.check_invariants();
}

#[test]
fn children_per_module_are_counted_again_when_another_module_ran_in_between() {
    let mut s = fresh_state();
    let rel = release(&s);
    add_idle(&mut s, principal(1), Some(&OLD));
    on_install(&mut s, Principal::anonymous(), NOW);
    assert!(s.build_running_index(PLAN_BATCH));
    on_install(&mut s, Principal::anonymous(), NOW);
    assert_eq!(
        s.running_on(&OLD),
        Some(1),
        "an upgrade from a parent that keeps the index keeps it"
    );

    // A parent that does not keep the index runs (a downgrade) and moves the child, then this one is installed again.
    s.update_meta(|m| m.epoch += 1);
    s.put_child_behind_the_indexes(principal(1), ChildEntry::new(Some(rel.clone()), Phase::Idle, NOW));
    on_install(&mut s, Principal::anonymous(), NOW);
    assert_eq!(s.running_on(&OLD), None, "not trusted until counted again");
    assert!(s.build_running_index(PLAN_BATCH));
    assert_eq!(
        (s.running_on(&OLD), s.running_on(&rel[..].try_into().unwrap())),
        (Some(0), Some(1))
    );
}

#[test]
fn a_worker_that_reads_a_batch_of_children_on_the_release_calls_the_tick_back() {
    let mut s = fresh_state();
    let rel = release(&s);
    add_idle(&mut s, principal(0), Some(&OLD));
    for i in 1..=PLAN_BATCH as u64 + 5 {
        add_idle(&mut s, principal(i), Some(&rel));
    }
    let last = principal(PLAN_BATCH as u64 + 6);
    add_idle(&mut s, last, Some(&OLD));
    set_k(&mut s, 1);
    on_install(&mut s, Principal::anonymous(), NOW);
    let first = tick(&mut s, NOW).launches;
    assert_eq!(first.len(), 1);
    complete_ok(&mut s, first[0].clone(), NOW);

    let worker = launch(&mut s, NOW, 1);
    assert!(
        worker.launches.is_empty() && worker.more,
        "a batch read, nothing launched: more to read at once"
    );
    assert_eq!(
        tick(&mut s, NOW).launches.iter().map(|l| l.child).collect::<Vec<_>>(),
        vec![last]
    );
    s.check_invariants();
}

#[test]
fn a_parent_upgrade_with_the_same_child_touches_no_child() {
    let (ic, _) = fleet(20, 5);
    run_rollout(&ic);
    let calls = ic.calls().len();
    assert_eq!(calls, 100);
    let has_work = mutate_state(|s| on_install(s, Principal::anonymous(), 5_000));
    assert!(!has_work, "nothing to arm: no timer, no call");
    assert!(driver::tick(&ic).is_empty());
    assert_eq!(ic.calls().len(), calls);
    read_state(|s| {
        assert_eq!(s.rollout().id, 1, "no new rollout");
        assert_eq!(s.releases().len(), 1);
        assert_eq!(
            s.releases().get(&s.release.hash).unwrap().first_seen,
            NOW,
            "first-seen time kept"
        );
    });
}

#[test]
fn only_a_verifying_rollout_finds_a_child_changed_behind_the_parents_back() {
    let (ic, ids) = fleet(5, 5);
    run_rollout(&ic);
    // Another controller puts the old module back on one child; the registry still has it on the release.
    let drifted = ids[2];
    ic.add_child(drifted, RunStatus::Running, Some(&OLD));
    let calls = ic.calls().len();

    mutate_state(|s| new_rollout(s, NOW, s.target(), false));
    run_rollout(&ic);
    assert_eq!(ic.calls().len(), calls, "a plain rollout trusts the registry");
    assert_eq!(ic.canister(drifted).module_hash.as_deref(), Some(&OLD[..]));

    mutate_state(|s| new_rollout(s, NOW, s.target(), true));
    run_rollout(&ic);
    let new_calls = &ic.calls()[calls..];
    for id in &ids {
        let methods: Vec<Method> = new_calls.iter().filter(|(_, c)| c == id).map(|(m, _)| *m).collect();
        let expected = if *id == drifted {
            vec![
                Method::Status,
                Method::Stop,
                Method::Install,
                Method::Start,
                Method::Status,
            ]
        } else {
            vec![Method::Status]
        };
        assert_eq!(methods, expected, "{id}");
    }
    let release = read_state(release);
    assert_eq!(ic.canister(drifted).module_hash, Some(release.clone()));
    read_state(|s| {
        let r = s.rollout();
        assert!(r.verify);
        assert_eq!((r.verified, r.upgraded, r.skipped), (4, 1, 0));
        assert_eq!(entry(drifted).installed_hash, Some(release));
        s.check_invariants();
    });
}

#[test]
fn a_new_release_starts_a_new_rollout_and_is_recorded() {
    let (ic, _) = fleet(3, 5);
    run_rollout(&ic);
    // The next parent build carries another child.
    mutate_state(|s| {
        s.release.hash = [0x22; 32];
        s.release.version = "3.0.0".into();
        assert!(on_install(s, Principal::anonymous(), 9_000));
        assert_eq!(s.rollout().id, 2);
        assert_eq!(s.rollout().release, vec![0x22; 32]);
        assert_eq!(s.releases().len(), 2);
        assert_eq!(s.releases().get(&[0x22; 32]).unwrap().first_seen, 9_000);
        tick(s, 9_000);
        assert_eq!(s.pending().len() + s.in_flight().len(), 3);
    });
}

#[test]
fn failed_children_are_requeued_and_the_rollout_reopens() {
    let (ic, ids) = fleet(3, 3);
    ic.fault(Method::Install, ids[1], Fault::Reject(5, "boom"));
    run_rollout(&ic);
    read_state(|s| {
        assert_eq!(s.failed().len(), 1);
        assert!(s.rollout().finished_at.is_some());
    });
    assert_eq!(mutate_state(|s| requeue_failed(s, NOW, 100)), 1);
    read_state(|s| {
        assert!(s.rollout().finished_at.is_none());
        assert_eq!(s.child(&ids[1]).unwrap().attempts, 0);
    });
    run_rollout(&ic);
    assert_eq!(entry(ids[1]).phase, Phase::Idle);
    read_state(|s| assert!(s.rollout().finished_at.is_some()));
}

#[test]
fn a_child_with_no_known_module_is_checked_before_anything_is_done() {
    let (ic, _) = fleet(0, 1);
    let id = principal(9);
    ic.add_child(id, RunStatus::Running, None);
    mutate_state(|s| adopt_child(s, id, None, NOW));
    run_rollout(&ic);
    assert_eq!(ic.methods_for(id), vec![Method::Status, Method::InstallNew]);
    assert_eq!(entry(id).phase, Phase::Idle);
}

// --- per-operation upgrade options (retry_child) ----------------------------------------------------------------

fn skip_pre_upgrade() -> UpgradeOptions {
    UpgradeOptions {
        skip_pre_upgrade: true,
        restore: false,
    }
}

fn upgrade_installs(ic: &FakeIc, id: Principal) -> Vec<InstallMode> {
    ic.0.borrow()
        .installs
        .iter()
        .filter(|(c, _)| *c == id)
        .map(|(_, m)| *m)
        .collect()
}

const PLAIN: InstallMode = InstallMode::Upgrade {
    skip_pre_upgrade: false,
};
const SKIP: InstallMode = InstallMode::Upgrade { skip_pre_upgrade: true };

#[test]
fn skip_pre_upgrade_reaches_the_install_of_that_one_operation() {
    let (ic, ids) = fleet(2, 2);
    let stuck = ids[0];
    ic.0.borrow_mut().canisters.get_mut(&stuck).unwrap().pre_upgrade_traps = true;
    run_rollout(&ic);
    let e = entry(stuck);
    assert_eq!(e.phase, Phase::Failed);
    assert!(
        e.last_error.as_deref().unwrap().contains("pre_upgrade trapped"),
        "{e:?}"
    );
    assert_eq!(ic.canister(stuck).status, RunStatus::Running);
    assert_eq!(entry(ids[1]).phase, Phase::Idle);

    // A plain retry runs pre_upgrade again and fails again.
    mutate_state(|s| requeue_failed(s, NOW, 10));
    run_rollout(&ic);
    assert_eq!(entry(stuck).phase, Phase::Failed);

    // Queued with skip_pre_upgrade: that operation's install carries the flag, and it goes through.
    mutate_state(|s| requeue_child(s, stuck, skip_pre_upgrade(), NOW));
    assert!(entry(stuck).upgrade.skip_pre_upgrade);
    run_rollout(&ic);
    let e = entry(stuck);
    assert_eq!(e.phase, Phase::Idle);
    assert_eq!(e.upgrade, UpgradeOptions::default(), "used up");
    assert_eq!(e.installed_hash.as_deref(), Some(&read_state(release)[..]));
    assert_eq!(upgrade_installs(&ic, stuck), vec![PLAIN, PLAIN, SKIP]);
    assert_eq!(upgrade_installs(&ic, ids[1]), vec![PLAIN], "no other child is affected");

    // The next release upgrades it normally again.
    mutate_state(|s| {
        s.release = next_release();
        on_install(s, Principal::anonymous(), NOW);
    });
    run_rollout(&ic);
    assert_eq!(upgrade_installs(&ic, stuck), vec![PLAIN, PLAIN, SKIP, PLAIN]);
    assert_eq!(entry(stuck).phase, Phase::Idle);
}

#[test]
fn a_taken_over_operation_keeps_its_options() {
    // The parent is upgraded while a skip_pre_upgrade operation is stopped before its install.
    let (ic, id) = orphan(Step::Stop, RunStatus::Stopped, Some(&OLD));
    mutate_state(|s| {
        let mut e = s.child(&id).unwrap();
        if let Phase::InFlight(op) = &mut e.phase {
            op.upgrade = skip_pre_upgrade();
        }
        s.put_child(id, e);
    });
    ic.0.borrow_mut().canisters.get_mut(&id).unwrap().pre_upgrade_traps = true;
    run_rollout(&ic);
    use Method::*;
    assert_eq!(ic.methods_for(id), vec![Status, Install, Start, Status]);
    assert_eq!(upgrade_installs(&ic, id), vec![SKIP]);
    assert_eq!(entry(id).phase, Phase::Idle);
}

#[test]
fn options_of_a_child_dropped_from_the_queue_are_cleared() {
    let mut s = fresh_state();
    let rel = release(&s);
    // Queued with options for an earlier release, but already on this one.
    let mut e = ChildEntry::new(Some(rel), Phase::Pending, 0);
    e.upgrade = skip_pre_upgrade();
    s.put_child(principal(1), e);
    on_install(&mut s, Principal::anonymous(), NOW);
    assert!(tick(&mut s, NOW).launches.is_empty());
    let e = s.child(&principal(1)).unwrap();
    assert_eq!(e.phase, Phase::Idle);
    assert_eq!(e.upgrade, UpgradeOptions::default());
}

#[test]
fn ticks_are_needed_while_locks_are_held_or_work_can_start() {
    let mut s = fresh_state();
    add_idle(&mut s, principal(1), Some(&OLD));
    on_install(&mut s, Principal::anonymous(), NOW);
    assert!(needs_ticks(&s), "a rollout to plan");
    assert!(
        s.build_running_index(PLAN_BATCH),
        "the registry is counted in one batch"
    );
    set_k(&mut s, 0);
    assert!(!needs_ticks(&s), "paused with nothing under way: no tick");
    set_k(&mut s, 1);
    let l = tick(&mut s, NOW).launches.pop().unwrap();
    set_k(&mut s, 0);
    assert!(needs_ticks(&s), "paused with a lock held: the tick keeps coming");
    complete_ok(&mut s, l, NOW);
    assert!(!needs_ticks(&s) && !has_work(&s));
}

// --- release store and rollbacks ------------------------------------------------------------------------------

#[test]
fn a_rollback_is_an_upgrade_to_a_stored_release_and_survives_a_parent_upgrade_with_the_same_child() {
    let (ic, ids) = fleet(3, 2);
    run_rollout(&ic);
    let a = read_state(|s| s.release.clone());
    let b = next_release();
    // The parent is upgraded to release B: a new child, so a new rollout to it.
    mutate_state(|s| {
        s.release = b.clone();
        assert!(on_install(s, Principal::anonymous(), NOW));
    });
    run_rollout(&ic);
    assert!(ids
        .iter()
        .all(|id| ic.canister(*id).module_hash == Some(b.hash.to_vec())));

    // B is bad: back to A, whose module now comes from the store (the parent embeds B).
    let rollback =
        mutate_state(|s| crate::admin::rollout_release(s, a.hash.to_vec(), Principal::anonymous(), NOW)).unwrap();
    assert_eq!(read_state(|s| (s.target(), s.rollout().id)), (a.hash, rollback));
    run_rollout(&ic);
    for id in &ids {
        assert_eq!(ic.canister(*id).module_hash, Some(a.hash.to_vec()), "back on A");
        assert_eq!(entry(*id).installed_hash, Some(a.hash.to_vec()));
        assert_eq!(
            upgrade_installs(&ic, *id).len(),
            3,
            "A, B, A again: upgrades, never reinstalls"
        );
    }

    // A parent hotfix that carries the same child B does not undo the rollback.
    assert!(!mutate_state(|s| on_install(s, Principal::anonymous(), NOW)));
    assert_eq!(read_state(|s| s.target()), a.hash);
    // A parent that carries a child it never had makes that child the target again.
    let c = release_of(&[7, 7, 7], "4.0.0");
    mutate_state(|s| {
        s.release = c.clone();
        assert!(on_install(s, Principal::anonymous(), NOW));
    });
    assert_eq!(read_state(|s| s.target()), c.hash);
}

#[test]
fn a_parent_that_embeds_another_child_makes_it_the_target_even_one_the_fleet_ran_before() {
    let (ic, ids) = fleet(2, 2);
    run_rollout(&ic);
    let (a, b) = (read_state(|s| s.release.clone()), next_release());
    mutate_state(|s| {
        s.release = b.clone();
        assert!(on_install(s, Principal::anonymous(), NOW));
    });
    run_rollout(&ic);
    let on_b = read_state(|s| s.rollout().id);
    // The operator installs the parent of A again: the fleet follows it back to A.
    mutate_state(|s| {
        s.release = a.clone();
        assert!(on_install(s, Principal::anonymous(), NOW));
    });
    assert_eq!(read_state(|s| (s.target(), s.rollout().id)), (a.hash, on_b + 1));
    run_rollout(&ic);
    assert!(ids
        .iter()
        .all(|id| ic.canister(*id).module_hash == Some(a.hash.to_vec())));
}

// --- the chunk store -------------------------------------------------------------------------------------------

/// The test release (2.5 MiB) goes through the chunk store from now on.
fn chunked_above_1_mib() {
    mutate_state(|s| s.update_settings(|st| st.chunked_install_above = 1024 * 1024));
}

fn store_calls(ic: &FakeIc) -> Vec<Method> {
    let me = ic.self_id();
    ic.calls()
        .into_iter()
        .filter(|(m, c)| *c == me && matches!(m, Method::UploadChunk | Method::ClearChunkStore))
        .map(|(m, _)| m)
        .collect()
}

#[test]
fn a_large_release_is_uploaded_once_and_every_child_installed_from_its_chunks() {
    let (ic, ids) = fleet(5, 2);
    chunked_above_1_mib();
    run_rollout(&ic);
    assert_eq!(
        store_calls(&ic),
        vec![Method::UploadChunk; 3],
        "2.5 MiB: three 1 MiB chunks, once"
    );
    assert_eq!(ic.0.borrow().chunked_installs, 5);
    let first_stop = ic.calls().iter().position(|(m, _)| *m == Method::Stop).unwrap();
    let last_upload = ic.calls().iter().rposition(|(m, _)| *m == Method::UploadChunk).unwrap();
    assert!(
        last_upload < first_stop,
        "no child is stopped before the store holds the release"
    );
    for id in &ids {
        assert_eq!(entry(*id).installed_hash, Some(read_state(release)));
        assert_eq!(ic.canister(*id).status, RunStatus::Running);
    }
    let store = read_state(|s| crate::queries::rollout_status(s).chunk_store).unwrap();
    assert_eq!((store.uploaded, store.chunks, store.error), (3, 3, None));
}

#[test]
fn a_failed_upload_is_tried_again_and_no_child_waits_stopped_for_it() {
    let (ic, ids) = fleet(3, 3);
    chunked_above_1_mib();
    ic.fault(Method::UploadChunk, ic.self_id(), Fault::Reject(2, "out of memory"));
    for launch in driver::tick(&ic) {
        block_on(driver::run_worker(ic.clone(), launch));
    }
    ic.run_spawned();
    let store = read_state(|s| crate::queries::rollout_status(s).chunk_store).unwrap();
    assert_eq!(store.uploaded, 0);
    assert!(store.error.unwrap().contains("out of memory"));
    assert!(ids.iter().all(|id| ic.methods_for(*id).is_empty()), "no child touched");
    assert_eq!(read_state(|s| s.rollout().attempted), 0);

    run_rollout(&ic);
    assert_eq!(
        store_calls(&ic),
        vec![Method::UploadChunk; 4],
        "the failed chunk again, then the rest"
    );
    assert!(ids
        .iter()
        .all(|id| entry(*id).installed_hash == Some(read_state(release))));
}

#[test]
fn an_upload_answered_with_another_hash_is_not_counted() {
    let mut s = fresh_state();
    s.update_settings(|st| st.chunked_install_above = 1024 * 1024);
    on_install(&mut s, Principal::anonymous(), NOW);
    let task = store_task(&s).unwrap();
    assert_eq!(task, StoreTask::Upload { index: 0 });
    assert!(!on_store_result(&mut s, task, Some([1; 32]), Ok(vec![2; 32])));
    assert!(s.meta().chunk_store.chunks.is_empty());
    assert!(s.meta().chunk_store.error.as_ref().unwrap().contains("expected 0101"));
    assert_eq!(store_task(&s), Some(task), "the same chunk again");
    assert!(on_store_result(&mut s, task, Some([1; 32]), Ok(vec![1; 32])));
    assert_eq!(store_task(&s), Some(StoreTask::Upload { index: 1 }));
}

#[test]
fn a_retired_release_is_cleared_from_the_store_and_a_failed_clear_keeps_the_chunks_unused() {
    let (ic, _) = fleet(2, 2);
    chunked_above_1_mib();
    run_rollout(&ic);
    // The next release is small: installed inline, and the store is cleared of the old one.
    ic.fault(Method::ClearChunkStore, ic.self_id(), Fault::Reject(5, "busy"));
    mutate_state(|s| {
        s.release = next_release();
        on_install(s, Principal::anonymous(), NOW);
    });
    for launch in driver::tick(&ic) {
        block_on(driver::run_worker(ic.clone(), launch));
    }
    ic.run_spawned();
    let store = read_state(|s| s.meta().chunk_store.clone());
    assert!(
        store.dirty && store.chunks.is_empty(),
        "forgotten before the call, still to clear: {store:?}"
    );
    assert_eq!(read_state(|s| stored_chunks(s, &s.release.hash)), None);
    run_rollout(&ic);
    assert_eq!(
        store_calls(&ic),
        [vec![Method::UploadChunk; 3], vec![Method::ClearChunkStore; 2]].concat()
    );
    assert!(ic.0.borrow().store.is_empty());
    assert_eq!(read_state(|s| crate::queries::rollout_status(s).chunk_store), None);
    assert_eq!(ic.0.borrow().chunked_installs, 2, "the small release went inline");
}

// --- cycles before stop -----------------------------------------------------------------------------------------

/// What a child with no freezing limit needs under the default policy.
const NEEDED: u128 = crate::gates::INSTALL_RESERVE + 100_000_000_000;

fn set_cycles(ic: &FakeIc, id: Principal, cycles: u128) {
    ic.0.borrow_mut().canisters.get_mut(&id).unwrap().cycles = cycles;
}

fn failure_of(id: Principal) -> shared::parent::FailureKind {
    let status = read_state(crate::queries::rollout_status);
    status
        .failures
        .iter()
        .find(|f| f.canister_id == id)
        .expect("listed")
        .kind
}

#[test]
fn a_child_short_of_cycles_is_topped_up_then_upgraded() {
    let (ic, ids) = fleet(3, 3);
    set_cycles(&ic, ids[0], 100_000_000_000);
    let parent_before = ic.0.borrow().parent_cycles;
    run_rollout(&ic);
    use Method::*;
    assert_eq!(
        ic.methods_for(ids[0]),
        vec![Status, Deposit, Status, Stop, Install, Start, Status]
    );
    let missing = NEEDED - 100_000_000_000;
    assert_eq!(ic.canister(ids[0]).cycles, NEEDED, "exactly what it lacked");
    assert_eq!(ic.0.borrow().parent_cycles, parent_before - missing);
    assert_eq!(
        ic.methods_for(ids[1]),
        vec![Status, Stop, Install, Start, Status],
        "no top-up needed"
    );
    let status = read_state(crate::queries::rollout_status);
    assert_eq!((status.top_ups, status.cycles_spent, status.failed), (1, missing, 0));
    assert!(ids
        .iter()
        .all(|id| entry(*id).installed_hash == Some(read_state(release))));
}

#[test]
fn a_child_the_parent_cannot_fund_is_left_running_and_never_stopped() {
    for (label, parent_cycles, max_top_up) in [
        (
            "the parent would go below its reserve",
            5_000_000_000_000 + NEEDED - 1,
            1_000_000_000_000,
        ),
        ("more than the top-up cap", 100_000_000_000_000, NEEDED - 1),
        ("top-ups off", 100_000_000_000_000, 0),
    ] {
        let (ic, ids) = fleet(2, 2);
        ic.0.borrow_mut().parent_cycles = parent_cycles;
        mutate_state(|s| s.update_settings(|st| st.cycles.max_top_up_per_child = max_top_up));
        set_cycles(&ic, ids[0], 0);
        run_rollout(&ic);
        assert_eq!(ic.methods_for(ids[0]), vec![Method::Status], "{label}: only looked at");
        assert_eq!(ic.canister(ids[0]).status, RunStatus::Running, "{label}");
        assert_eq!(ic.canister(ids[0]).module_hash, Some(OLD.to_vec()), "{label}");
        assert_eq!(entry(ids[0]).phase, Phase::Failed, "{label}");
        assert_eq!(
            failure_of(ids[0]),
            shared::parent::FailureKind::InsufficientCycles {
                needed: NEEDED,
                available: 0
            },
            "{label}"
        );
        assert!(entry(ids[0]).last_error.unwrap().contains(&format!("needs {NEEDED}")));
        assert_eq!(
            entry(ids[1]).installed_hash,
            Some(read_state(release)),
            "{label}: the others go on"
        );
        assert_eq!(ic.0.borrow().parent_cycles, parent_cycles, "{label}: nothing deposited");
    }
}

#[test]
fn a_stopped_child_that_cannot_pay_is_started_again_without_an_install() {
    let (ic, ids) = fleet(1, 1);
    run_rollout(&ic);
    // Behind the parent's back: stopped, back on OLD, and drained.
    let mut c = ic.canister(ids[0]);
    c.status = RunStatus::Stopped;
    c.module_hash = Some(OLD.to_vec());
    ic.0.borrow_mut().canisters.insert(ids[0], c);
    set_cycles(&ic, ids[0], 1);
    ic.0.borrow_mut().parent_cycles = 0;
    let before = ic.calls().len();
    mutate_state(|s| new_rollout(s, NOW, s.target(), true));
    run_rollout(&ic);
    let calls: Vec<Method> = ic.calls()[before..].iter().map(|(m, _)| *m).collect();
    assert_eq!(calls, vec![Method::Status, Method::Start, Method::Status]);
    assert_eq!(ic.canister(ids[0]).status, RunStatus::Running, "never left stopped");
    assert_eq!(
        failure_of(ids[0]),
        shared::parent::FailureKind::InsufficientCycles {
            needed: NEEDED,
            available: 1
        }
    );
}

#[test]
fn a_failed_deposit_is_checked_again_and_a_funded_child_goes_on() {
    let (ic, ids) = fleet(1, 1);
    set_cycles(&ic, ids[0], 0);
    ic.fault(Method::Deposit, ids[0], Fault::Reject(2, "queue full"));
    run_rollout(&ic);
    use Method::*;
    assert_eq!(
        ic.methods_for(ids[0]),
        vec![Status, Deposit, Status, Deposit, Status, Stop, Install, Start, Status]
    );
    assert_eq!(entry(ids[0]).installed_hash, Some(read_state(release)));
    assert_eq!(
        read_state(|s| (s.rollout().top_ups, s.rollout().cycles_spent)),
        (1, NEEDED)
    );
}

#[test]
fn a_shortfall_found_before_a_top_up_is_forgotten_once_the_child_can_pay() {
    // The child fails later for another reason: it is a plain failure, not a cycles one.
    let (ic, ids) = fleet(1, 1);
    set_cycles(&ic, ids[0], 0);
    ic.0.borrow_mut().canisters.get_mut(&ids[0]).unwrap().pre_upgrade_traps = true;
    run_rollout(&ic);
    assert_eq!(entry(ids[0]).phase, Phase::Failed);
    assert_eq!(failure_of(ids[0]), shared::parent::FailureKind::Running);
}

// --- snapshots and restores -----------------------------------------------------------------------------------

/// A fleet of `n` children on OLD, snapshots on, upgraded to the release; returns the first rollout's id.
fn snapshotted_fleet(n: u64) -> (FakeIc, Vec<Principal>, u64) {
    let (ic, ids) = fleet(n, 2);
    mutate_state(|s| s.update_settings(|st| st.snapshot_before_upgrade = SnapshotPolicy::All));
    run_rollout(&ic);
    (ic, ids, read_state(|s| s.rollout().id))
}

#[test]
fn with_snapshots_on_each_child_is_snapshotted_stopped_before_its_install_one_slot_per_child() {
    let (ic, ids, rollout) = snapshotted_fleet(2);
    use Method::*;
    assert_eq!(
        ic.methods_for(ids[0]),
        vec![Status, Stop, TakeSnapshot, Install, Start, Status]
    );
    let snap = entry(ids[0]).snapshot.expect("recorded");
    assert_eq!((snap.release, snap.rollout), (OLD.to_vec(), rollout));
    assert_eq!(
        ic.canister(ids[0]).snapshots,
        vec![(snap.id.clone(), Some(OLD.to_vec()))]
    );
    assert_eq!(read_state(|s| s.rollout().snapshots), 2);
    // The next rollout replaces it: still one snapshot per child, now of the release.
    let next = next_release();
    mutate_state(|s| {
        s.release = next.clone();
        on_install(s, Principal::anonymous(), NOW);
    });
    run_rollout(&ic);
    let again = entry(ids[0]).snapshot.unwrap();
    assert_ne!(again.id, snap.id);
    assert_eq!(ic.canister(ids[0]).snapshots.len(), 1);
    assert_eq!(ic.canister(ids[0]).module_hash, Some(next.hash.to_vec()));
}

#[test]
fn a_child_whose_snapshot_fails_is_started_again_untouched_and_failed() {
    let (ic, ids) = fleet(2, 2);
    mutate_state(|s| s.update_settings(|st| st.snapshot_before_upgrade = SnapshotPolicy::All));
    ic.fault(
        Method::TakeSnapshot,
        ids[0],
        Fault::Reject(5, "reached the maximum number of snapshots allowed: 10"),
    );
    run_rollout(&ic);
    use Method::*;
    assert_eq!(
        ic.methods_for(ids[0]),
        vec![Status, Stop, TakeSnapshot, Start, Status],
        "never installed"
    );
    let e = entry(ids[0]);
    assert_eq!((e.phase, e.lost_control), (Phase::Failed, false));
    assert!(e
        .last_error
        .unwrap()
        .contains("no snapshot, so the child was not upgraded"));
    assert_eq!(ic.canister(ids[0]).module_hash, Some(OLD.to_vec()));
    assert_eq!(ic.canister(ids[0]).status, RunStatus::Running);
    assert_eq!(entry(ids[1]).phase, Phase::Idle, "the others go on");
}

#[test]
fn restoring_a_rollout_loads_each_snapshot_back_and_drops_the_queued_upgrades() {
    let (ic, ids, rollout) = snapshotted_fleet(3);
    // A later child was never snapshotted and is still queued for the upgrade when the restore starts.
    let late = principal(99);
    mutate_state(|s| {
        s.put_child(late, ChildEntry::new(Some(OLD.to_vec()), Phase::Pending, 0));
    });
    ic.add_child(late, RunStatus::Running, Some(&OLD));
    let restore = mutate_state(|s| {
        crate::admin::restore_snapshots(s, RestoreTarget::Rollout(rollout), Principal::anonymous(), NOW)
    })
    .unwrap();
    run_rollout(&ic);
    use Method::*;
    for id in &ids {
        assert_eq!(
            ic.canister(*id).module_hash,
            Some(OLD.to_vec()),
            "back on the snapshot's module"
        );
        assert_eq!(&ic.methods_for(*id)[6..], [Status, Stop, LoadSnapshot, Start, Status]);
        assert_eq!(
            (entry(*id).phase, entry(*id).installed_hash),
            (Phase::Idle, Some(OLD.to_vec()))
        );
    }
    assert!(
        ic.methods_for(late).is_empty(),
        "a restore does not go on spreading the release"
    );
    assert_eq!(entry(late).phase, Phase::Idle);
    let r = read_state(|s| s.rollout().clone());
    assert_eq!(
        (r.id, r.restore, r.restore_from, r.restored, r.upgraded),
        (restore, true, Some(rollout), 3, 0)
    );
    read_state(|s| s.check_invariants());
}

#[test]
fn restoring_named_children_checks_them_all_first_and_changes_nothing_on_error() {
    let (ic, ids, _) = snapshotted_fleet(2);
    let never = principal(77);
    mutate_state(|s| s.put_child(never, ChildEntry::new(Some(OLD.to_vec()), Phase::Idle, 0)));
    let before = read_state(|s| (s.rollout().clone(), entry(ids[0])));
    let restore = |targets: Vec<Principal>| {
        mutate_state(|s| {
            crate::admin::restore_snapshots(s, RestoreTarget::Children(targets), Principal::anonymous(), NOW)
        })
    };
    assert_eq!(
        restore(vec![ids[0], never]),
        Err(ParentError::NoSnapshot { canister_id: never })
    );
    assert_eq!(
        restore(vec![principal(55)]),
        Err(ParentError::UnknownChild {
            canister_id: principal(55)
        })
    );
    assert!(matches!(restore(vec![]), Err(ParentError::InvalidArgument { .. })));
    assert_eq!(
        read_state(|s| (s.rollout().clone(), entry(ids[0]))),
        before,
        "nothing changed"
    );
    restore(vec![ids[1]]).unwrap();
    run_rollout(&ic);
    assert_eq!(ic.canister(ids[1]).module_hash, Some(OLD.to_vec()));
    assert_eq!(
        ic.canister(ids[0]).module_hash,
        Some(read_state(|s| s.release.hash.to_vec())),
        "only the one named"
    );
}

#[test]
fn a_restore_interrupted_by_a_parent_upgrade_is_done_again_from_the_stop() {
    let (ic, ids, _) = snapshotted_fleet(1);
    let id = ids[0];
    mutate_state(|s| {
        crate::admin::restore_snapshots(s, RestoreTarget::Children(vec![id]), Principal::anonymous(), NOW)
    })
    .unwrap();
    // The restore is stopped, its snapshot loaded, when the parent is upgraded: the start never happened.
    let l = mutate_state(|s| tick(s, NOW).launches.pop().unwrap());
    assert_eq!(l.step, Step::Check, "the child's status (and cycles) first");
    let l = mutate_state(|s| on_result(s, l.child, l.op_id, status(RunStatus::Running, &OLD), NOW)).unwrap();
    assert_eq!(l.step, Step::Stop);
    block_on(ic.stop(id)).unwrap();
    let l = mutate_state(|s| on_result(s, l.child, l.op_id, ok(), NOW)).unwrap();
    assert_eq!(l.step, Step::LoadSnapshot);
    block_on(ic.load_snapshot(id, l.snapshot.clone().unwrap())).unwrap();
    mutate_state(|s| on_install(s, Principal::anonymous(), NOW));
    run_rollout(&ic);
    use Method::*;
    let calls = ic.methods_for(id);
    assert_eq!(
        &calls[calls.len() - 4..],
        [Status, LoadSnapshot, Start, Status],
        "re-checked, loaded again, started"
    );
    assert_eq!(ic.canister(id).status, RunStatus::Running);
    assert_eq!(ic.canister(id).module_hash, Some(OLD.to_vec()));
    assert_eq!(read_state(|s| s.rollout().restored), 1);
}

// --- gates: canary wave, bake, health checks, halts, pause, abort ------------------------------------------------

fn gate(canary: Option<Share>, bake_secs: u64, halt_after: Option<Share>) {
    mutate_state(|s| {
        s.update_settings(|st| {
            st.gates = Gates {
                canary,
                bake_secs,
                halt_after,
                ..Gates::default()
            }
        });
        let target = s.target();
        new_rollout(s, NOW, target, false);
    });
}

/// Runs the rollout until it needs no tick (done, or halted with nothing under way).
fn run_until_quiet(ic: &FakeIc) {
    run_until(ic, || read_state(|s| !needs_ticks(s)));
}

fn stops(ic: &FakeIc, ids: &[Principal]) -> usize {
    ids.iter()
        .filter(|id| ic.methods_for(**id).contains(&Method::Stop))
        .count()
}

/// Runs ticks (and their workers) until `done` holds, moving the clock a lock-check interval per tick.
fn run_until(ic: &FakeIc, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        for launch in driver::tick(ic) {
            block_on(driver::run_worker(ic.clone(), launch));
        }
        ic.run_spawned();
        ic.0.borrow_mut().now += LOCK_CHECK_INTERVAL.as_nanos() as u64;
    }
    panic!("never reached");
}

#[test]
fn a_canary_wave_upgrades_the_first_children_bakes_checks_their_health_then_the_rest() {
    let (ic, ids) = fleet(10, 3);
    gate(Some(Share::Count(2)), 120, None);
    run_until(&ic, || {
        read_state(|s| matches!(s.rollout().stage, Stage::Baking { .. }))
    });
    let canaries = read_state(|s| s.rollout().canaries.clone());
    assert_eq!(
        canaries,
        ids[..2],
        "the first two the planner queued, in principal order"
    );
    assert_eq!(stops(&ic, &ids), 2, "nobody else was touched");
    run_rollout(&ic);
    use Method::*;
    for id in &canaries {
        assert_eq!(
            ic.methods_for(*id),
            vec![Status, Stop, Install, Start, Status, Health, Status],
            "upgraded, then checked"
        );
    }
    assert_eq!(stops(&ic, &ids), 10);
    // Every other child started after the last health check.
    let calls = ic.calls();
    let last_check = calls.iter().rposition(|(m, _)| *m == Health).unwrap();
    let first_other = calls
        .iter()
        .position(|(m, id)| *m == Stop && !canaries.contains(id))
        .unwrap();
    assert!(first_other > last_check, "{calls:?}");
    let r = read_state(|s| s.rollout().clone());
    assert_eq!((r.stage, r.upgraded, r.halted), (Stage::Wave, 10, None));
}

#[test]
fn an_unhealthy_canary_halts_the_rollout_before_any_other_child_is_touched() {
    let (ic, ids) = fleet(6, 3);
    ic.0.borrow_mut().canisters.get_mut(&ids[1]).unwrap().unhealthy = true;
    gate(Some(Share::Count(2)), 0, None);
    run_until_quiet(&ic);
    let r = read_state(|s| s.rollout().clone());
    let halt = r.halted.expect("halted");
    assert!(
        halt.reason.contains("canary") && halt.reason.contains("health check failed"),
        "{}",
        halt.reason
    );
    assert_eq!(stops(&ic, &ids), 2, "only the canaries");
    assert_eq!(entry(ids[1]).phase, Phase::Failed);
    assert!(
        read_state(|s| !needs_ticks(s)),
        "a halted rollout with nothing under way needs no tick"
    );
    // The operator looks, decides, and resumes: the rest go.
    mutate_state(resume);
    run_rollout(&ic);
    assert_eq!(stops(&ic, &ids), 6);
    assert_eq!(read_state(|s| s.rollout().halts), 1);
}

#[test]
fn a_canary_whose_upgrade_fails_halts_the_rollout() {
    let (ic, ids) = fleet(5, 2);
    ic.fault(Method::Install, ids[0], Fault::Noop);
    gate(Some(Share::PerMille(400)), 0, None);
    run_until_quiet(&ic);
    let r = read_state(|s| s.rollout().clone());
    assert_eq!(r.canaries, ids[..2], "40% of 5");
    assert!(r.halted.unwrap().reason.contains(&format!("canary {}", ids[0])));
    assert_eq!(stops(&ic, &ids), 2);
}

#[test]
fn failures_reaching_the_threshold_halt_new_operations_and_let_those_under_way_finish() {
    let (ic, ids) = fleet(8, 2);
    for id in &ids[..3] {
        ic.fault(Method::Install, *id, Fault::Noop);
    }
    gate(None, 0, Some(Share::Count(2)));
    run_until_quiet(&ic);
    let r = read_state(|s| s.rollout().clone());
    assert!(
        r.halted.unwrap().reason.starts_with("2 of the"),
        "halted at the second failure"
    );
    // Confirms overlap the next children's stops (K = 2, 2K locks): at most four children were touched before the
    // second failure was known; after the halt nothing new started, and every child touched is running.
    let touched = stops(&ic, &ids);
    assert!((2..=4).contains(&touched), "{touched}");
    assert!(
        ids.iter().all(|id| ic.canister(*id).status == RunStatus::Running),
        "every child running"
    );
    let pending = read_state(|s| crate::queries::rollout_status(s).pending);
    assert_eq!(pending, 8 - touched as u64, "the children not reached yet");
    // More ticks start nothing.
    run_until(&ic, || true);
    mutate_state(|s| assert!(tick(s, NOW).launches.is_empty()));
    assert_eq!(stops(&ic, &ids), touched);
}

#[test]
fn pause_resume_and_abort_are_idempotent_and_never_strand_a_child() {
    let (ic, ids) = fleet(6, 2);
    // Two operations go out, then the pause: they finish, nothing new starts.
    let first = mutate_state(|s| tick(s, NOW).launches);
    assert_eq!(first.len(), 2);
    mutate_state(pause);
    mutate_state(pause);
    for l in first {
        block_on(driver::run_worker(ic.clone(), l));
    }
    ic.run_spawned();
    assert_eq!(stops(&ic, &ids), 2);
    assert!(mutate_state(|s| tick(s, NOW).launches.is_empty()));
    mutate_state(resume);
    mutate_state(resume);
    let more = mutate_state(|s| tick(s, NOW).launches);
    assert_eq!(more.len(), 2);
    // Abort with two under way: they finish, the queue is dropped, the rollout ends.
    mutate_state(|s| abort(s, NOW));
    mutate_state(|s| abort(s, NOW + 5));
    for l in more {
        block_on(driver::run_worker(ic.clone(), l));
    }
    run_rollout(&ic);
    assert_eq!(stops(&ic, &ids), 4);
    let r = read_state(|s| s.rollout().clone());
    assert_eq!((r.aborted_at, r.upgraded), (Some(NOW), 4));
    assert!(r.finished_at.is_some());
    assert!(ids.iter().all(|id| ic.canister(*id).status == RunStatus::Running));
    assert_eq!(read_state(|s| s.pending().len()), 0);
    assert_eq!(entry(ids[5]).phase, Phase::Idle, "back to idle, outdated");
    read_state(|s| s.check_invariants());
}

#[test]
fn the_history_keeps_every_rollout_and_each_child_its_operations() {
    let (ic, ids) = fleet(2, 2);
    run_rollout(&ic);
    let first = read_state(|s| s.rollout().id);
    mutate_state(|s| {
        let t = s.target();
        new_rollout(s, NOW, t, true);
    });
    let second = read_state(|s| s.rollout().id);
    // Replaced while planning: recorded as not finished.
    mutate_state(|s| {
        let t = s.target();
        new_rollout(s, NOW, t, true);
    });
    run_rollout(&ic);
    let history: Vec<(u64, Option<u64>, u64)> = read_state(|s| {
        s.history()
            .iter()
            .map(|e| (*e.key(), e.value().finished_at.map(|_| 1), e.value().upgraded))
            .collect()
    });
    assert_eq!(
        history,
        vec![(first, Some(1), 2), (second, None, 0), (second + 1, Some(1), 0)]
    );
    let events = read_state(|s| s.events_of(ids[0]));
    use Step::*;
    assert_eq!(events.len(), 2, "the upgrade, then the verifying re-check");
    assert_eq!(
        events[0].1.steps,
        vec![
            (Check, true),
            (Stop, true),
            (Install, true),
            (Start, true),
            (Confirm, true)
        ]
    );
    assert_eq!(
        (events[1].1.steps.clone(), events[1].1.error.clone()),
        (vec![(Recheck, true)], None)
    );
}

#[test]
fn each_child_keeps_its_last_operations_only() {
    let mut s = fresh_state();
    let id = principal(1);
    for op in 0..25 {
        let event = ChildEvent {
            rollout: 1,
            started_at: op,
            ended_at: op,
            steps: vec![],
            error: None,
        };
        s.record_event(id, op, event);
    }
    let kept: Vec<u64> = s.events_of(id).iter().map(|(op, _)| *op).collect();
    assert_eq!(kept, (15..25).collect::<Vec<_>>());
}

#[test]
fn with_the_canaries_policy_only_the_canaries_are_snapshotted() {
    let (ic, ids) = fleet(6, 3);
    mutate_state(|s| s.update_settings(|st| st.snapshot_before_upgrade = SnapshotPolicy::Canaries));
    gate(Some(Share::Count(2)), 0, None);
    run_rollout(&ic);
    let canaries = read_state(|s| s.rollout().canaries.clone());
    assert_eq!(canaries, ids[..2]);
    for id in &ids {
        let snapshotted = ic.methods_for(*id).contains(&Method::TakeSnapshot);
        assert_eq!(snapshotted, canaries.contains(id), "{id}");
        assert_eq!(entry(*id).snapshot.is_some(), canaries.contains(id));
        assert_eq!(entry(*id).installed_hash, Some(read_state(release)));
    }
    assert_eq!(read_state(|s| s.rollout().snapshots), 2);
}
