//! The fault matrix: one test per fault, on the real parent and child wasm. Every test shows that no child ends up
//! stopped, that no acknowledged write is lost (each child's `data_checksum` is the same before and after), and that
//! the failure is visible in `rollout_status` (the failed count and a meaningful error).
//!
//! Release A is `wasm/parent.wasm.gz` (with `wasm/child.wasm.gz`), release B `wasm/next/parent.wasm.gz` (with the
//! `next` child); build both with `scripts/build.sh` and `scripts/build.sh --next`.

#[path = "support/legacy.rs"]
mod legacy;

use std::time::Duration;

use candid::{Encode, Principal};
use fleet::records::calls_since;
use fleet::replica::ic00::CanisterSettings;
use fleet::{outsider, records, CanisterStatus, ChildFacts, Fleet, FleetConfig, ParentUpgrade, RejectCode, Release};
use replica::ExecutionRecord;
use replica::ReplicaConfig;
use shared::child::ChildUpgradeArg;
use shared::parent::{
    ChildState, CyclesPolicy, FailureKind, ParentError, RegisterOptions, RetryOptions, RolloutStatus, SnapshotPolicy,
};

/// The ic-cdk-timers executor: every timer (the parent's rollout tick) runs as a self-call to this update.
const TIMER_EXECUTOR: &str = "canister_update <ic-cdk internal> timer_executor";
const MAX_ROUNDS: u64 = 1_000;
/// What a child needs before it is stopped under the default cycles policy, on top of its freezing limit: the
/// install's reservation and the 0.1 T margin.
const NEEDED: u128 = 300_005_000_000 + 100_000_000_000;
/// The calls of one child operation, in order: the check before the stop (module and cycles), stop, install, start,
/// confirm.
const OP: [&str; 5] = [
    "canister_status",
    "stop_canister",
    "install_code",
    "start_canister",
    "canister_status",
];

/// Release A with `n` children holding data (checksums recorded), upgraded at most `k` at a time.
fn fleet(n: u32, k: u32) -> Fleet {
    fleet_with(n, k, ReplicaConfig::default())
}

fn fleet_with(n: u32, k: u32, replica: ReplicaConfig) -> Fleet {
    let config = FleetConfig {
        replica,
        ..FleetConfig::with_concurrency(k)
    };
    Fleet::with_children(&Release::current(), config, n, 20, 64)
}

fn a_hash() -> [u8; 32] {
    Release::current().expect_child_hash()
}

fn b_hash() -> [u8; 32] {
    Release::next().expect_child_hash()
}

/// `dfx canister install parent --mode upgrade` with release B.
fn upgrade_to_b(f: &Fleet) {
    f.upgrade_parent(&Release::next(), ParentUpgrade::Direct).unwrap();
}

fn drive(f: &Fleet) -> RolloutStatus {
    let run = f.run_rollout_to_end(MAX_ROUNDS);
    assert!(
        run.finished,
        "the rollout did not end in {MAX_ROUNDS} rounds: {:#?}",
        run.status
    );
    run.status
}

fn assert_failure(st: &RolloutStatus, child: Principal, needles: &[&str]) {
    let f = st
        .failures
        .iter()
        .find(|f| f.canister_id == child)
        .unwrap_or_else(|| panic!("no failure listed for {child}: {st:#?}"));
    for n in needles {
        assert!(
            f.error.contains(n),
            "the failure of {child} does not mention {n:?}: {}",
            f.error
        );
    }
}

/// The end state every test checks, over the children still in `f.children` (a test removes the ones that no
/// longer exist): all running, data as recorded, `failed` ones listed as failed (and nothing else), every other one
/// on release B and up to date in the registry; the registry records each child's actual module unless the parent
/// cannot see the child any more (`unseen`).
fn verify(f: &Fleet, st: &RolloutStatus, failed: &[Principal], unseen: &[Principal]) -> Vec<ChildFacts> {
    let listed: Vec<Principal> = st.failures.iter().map(|x| x.canister_id).collect();
    let mut expected = failed.to_vec();
    expected.sort();
    assert_eq!((st.failed, listed), (failed.len() as u64, expected), "{st:#?}");
    let facts = f.verify();
    for x in &facts {
        assert!(x.running(), "child {} is {:?}", x.id, x.status);
        assert!(
            x.data_intact(),
            "child {} lost data: {:?} vs {:?}",
            x.id,
            x.checksum,
            x.expected_checksum
        );
        if failed.contains(&x.id) {
            assert_eq!(x.registry_state(), Some(&ChildState::Failed), "{x:?}");
        } else {
            x.assert_healthy_on(&b_hash());
            assert_eq!(x.registry_state(), Some(&ChildState::UpToDate), "{x:?}");
        }
        if !unseen.contains(&x.id) {
            assert!(x.registry_agrees(), "{x:?}");
        }
    }
    facts
}

fn executions_on(f: &Fleet, c: Principal, entry: &str) -> Vec<ExecutionRecord> {
    f.replica
        .executions()
        .into_iter()
        .filter(|e| e.canister == c && e.entry == entry)
        .collect()
}

/// Where the fleet's records stand: calls before this mark (creating the children) are not counted below.
fn mark(f: &Fleet) -> usize {
    f.replica.management_calls().len()
}

/// Management calls the parent made about `child` since `since`, by method, in order.
fn parent_calls(f: &Fleet, since: usize, child: Principal) -> Vec<String> {
    calls_since(&f.replica, f.parent, since)
        .into_iter()
        .filter(|c| c.target == Some(child))
        .map(|c| c.method)
        .collect()
}

/// Successful `install_code` calls the parent made about `child` since `since`.
fn upgrades_of(f: &Fleet, since: usize, child: Principal) -> usize {
    calls_since(&f.replica, f.parent, since)
        .iter()
        .filter(|c| c.target == Some(child) && c.method == "install_code" && c.outcome == Some(Ok(())))
        .count()
}

/// Runs rounds until the parent has called `method` about `child` (since `since`).
fn tick_until_call(f: &Fleet, since: usize, child: Principal, method: &str) {
    for _ in 0..200 {
        if parent_calls(f, since, child).iter().any(|m| m == method) {
            return;
        }
        f.replica.tick();
    }
    panic!("the parent never called {method} on {child}");
}

fn retry_failed(f: &Fleet) -> u64 {
    f.parent().retry_failed(f.controller).expect("retry_failed")
}

fn skip_pre_upgrade() -> RetryOptions {
    RetryOptions {
        skip_pre_upgrade: Some(true),
    }
}

#[test]
fn a_child_whose_post_upgrade_traps_stays_on_its_release_and_running() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let bad = f.children[1];
    f.replica.fail_next_execution(bad, "canister_post_upgrade");
    upgrade_to_b(&f);
    let st = drive(&f);
    verify(&f, &st, &[bad], &[]);
    assert_failure(
        &st,
        bad,
        &[
            "install_code failed (reject code 5)",
            "canister_post_upgrade",
            "confirm: the child is running with module",
        ],
    );
    assert_eq!(
        f.replica.module_hash(bad),
        Some(a_hash()),
        "the upgrade was rolled back"
    );
    assert_eq!(
        parent_calls(&f, since, bad),
        OP,
        "started again after the failed install"
    );

    // The trap was a one-off: a retry upgrades it.
    retry_failed(&f);
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
}

#[test]
fn a_child_whose_pre_upgrade_traps_is_upgraded_by_a_retry_that_skips_it() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let bad = f.children[1];
    // The children's other controller once put a legacy module on this child (its pre_upgrade traps).
    let legacy = legacy::with_trapping_pre_upgrade(&fleet::wasms::read("wasm/child.wasm.gz"));
    let me = Some(f.controller);
    f.replica.stop_canister(bad, me).unwrap();
    f.replica
        .upgrade_canister(bad, legacy, Encode!(&Some(ChildUpgradeArg::default())).unwrap(), me)
        .unwrap();
    f.replica.start_canister(bad, me).unwrap();
    let legacy_hash = f.replica.module_hash(bad);
    assert_ne!(legacy_hash, Some(a_hash()));

    upgrade_to_b(&f);
    let st = drive(&f);
    verify(&f, &st, &[bad], &[]);
    assert_failure(
        &st,
        bad,
        &[
            "install_code failed (reject code 5)",
            "unreachable",
            "confirm: the child is running with module",
        ],
    );
    assert_eq!(f.replica.module_hash(bad), legacy_hash);
    let runs = executions_on(&f, bad, "canister_pre_upgrade");
    assert!(runs.len() == 1 && runs[0].outcome.is_err(), "{runs:?}");

    // A plain retry runs pre_upgrade again: the same failure.
    retry_failed(&f);
    let st = drive(&f);
    verify(&f, &st, &[bad], &[]);
    assert_eq!(executions_on(&f, bad, "canister_pre_upgrade").len(), 2);

    // retry_child: controllers and admins only, registered and not up-to-date children only; errors change nothing.
    let p = f.parent();
    let stranger = outsider(1);
    assert_eq!(
        p.retry_child(stranger, bad, skip_pre_upgrade()),
        Err(ParentError::NotAuthorized { caller: stranger })
    );
    assert_eq!(
        p.retry_child(f.controller, f.parent, skip_pre_upgrade()),
        Err(ParentError::UnknownChild { canister_id: f.parent })
    );
    let r = p.retry_child(f.controller, f.children[0], skip_pre_upgrade());
    assert!(matches!(r, Err(ParentError::InvalidArgument { .. })), "{r:?}");
    assert_eq!(p.rollout_status(), st);

    assert_eq!(p.retry_child(f.controller, bad, skip_pre_upgrade()), Ok(st.rollout_id));
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    assert_eq!(
        executions_on(&f, bad, "canister_pre_upgrade").len(),
        2,
        "the last upgrade skipped pre_upgrade"
    );
    assert_eq!(upgrades_of(&f, since, bad), 1);
}

#[test]
fn a_child_out_of_cycles_is_topped_up_by_the_parent_then_upgraded() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let poor = f.children[2];
    f.replica.drain_cycles(poor);
    upgrade_to_b(&f);
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    assert_eq!(
        parent_calls(&f, since, poor),
        [&OP[..1], &["deposit_cycles", "canister_status"], &OP[1..]].concat()
    );
    // The deposit brings the child to its freezing limit + NEEDED; since the drain it has burnt a little storage.
    assert_eq!(st.top_ups, 1);
    assert!(
        (NEEDED..NEEDED + 1_000_000).contains(&st.cycles_spent),
        "{}",
        st.cycles_spent
    );
}

/// Rolls A → B with top-ups forbidden; `poor` must be looked at, never stopped, and left on A, failed.
fn roll_out_without_top_ups(f: &Fleet, since: usize, poor: Principal) -> RolloutStatus {
    let no_top_ups = CyclesPolicy {
        max_top_up_per_child: 0,
        ..f.parent().settings().cycles
    };
    f.parent().set_cycles_policy(f.controller, no_top_ups).unwrap();
    upgrade_to_b(f);
    let st = drive(f);
    verify(f, &st, &[poor], &[]);
    assert_eq!(
        parent_calls(f, since, poor),
        ["canister_status"],
        "looked at, never stopped"
    );
    assert_eq!(f.replica.module_hash(poor), Some(a_hash()));
    st
}

#[test]
fn a_child_the_parent_may_not_top_up_is_never_stopped_and_fails_with_its_shortfall() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let poor = f.children[2];
    f.replica.drain_cycles(poor);
    let freezing_limit = f.replica.cycle_balance(poor);
    let st = roll_out_without_top_ups(&f, since, poor);
    let needed = freezing_limit + NEEDED;
    assert_failure(&st, poor, &[&format!("needs {needed} for its install")]);
    let FailureKind::InsufficientCycles { needed: n, available } = st.failures[0].kind else {
        panic!("{:?}", st.failures[0].kind)
    };
    // It burnt a little storage since the drain.
    assert_eq!(n, needed);
    assert!(
        (freezing_limit - 1_000_000..freezing_limit).contains(&available),
        "{available}"
    );

    // Topped up by its owner, a retry upgrades it.
    f.replica.add_cycles(poor, 10_000_000_000_000);
    retry_failed(&f);
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
}

#[test]
fn a_child_that_could_pay_for_its_install_but_not_for_a_snapshot_first_is_never_stopped() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let poor = f.children[2];
    // A freezing threshold of 100 years makes the freezing limit of the memory a snapshot adds larger than the margin.
    let century = CanisterSettings {
        freezing_threshold: Some((100u64 * 365 * 86_400).into()),
        ..Default::default()
    };
    f.replica.add_cycles(poor, 10_000_000_000_000);
    f.replica.update_settings(poor, Some(f.controller), century).unwrap();
    f.replica.drain_cycles(poor);
    f.replica.add_cycles(poor, NEEDED);
    f.parent()
        .set_snapshot_policy(f.controller, SnapshotPolicy::All)
        .unwrap();
    let st = roll_out_without_top_ups(&f, since, poor);
    assert_failure(&st, poor, &["for its snapshot and install"]);

    // Topped up by its owner, a retry snapshots and upgrades it.
    f.replica.add_cycles(poor, 100_000_000_000_000);
    retry_failed(&f);
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    assert!(f.parent().get_child(poor).is_some_and(|c| c.snapshot.is_some()));
}

#[test]
fn a_child_that_does_not_stop_in_time_is_started_again() {
    // A child stays stopping while it has open call contexts. The real child's only outgoing calls are its heartbeat
    // timer's self-calls, which are bounded-wait (300 s): with the IC's 5-minute stop timeout it always stops in
    // time. So the replica's stop timeout is 60 s here (the IC0206 path is the same), rounds are 10 s, and the reply
    // to the child's self-call is delayed so that its timer's call context stays open until the 300 s deadline.
    let config = ReplicaConfig {
        round_duration: Duration::from_secs(10),
        stop_canister_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let f = fleet_with(3, 2, config);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let slow = f.children[0];
    f.replica.delay_responses(slow, 1_000);
    for _ in 0..20 {
        if f.replica.open_call_contexts(slow) > 0 {
            break;
        }
        f.replica.tick();
    }
    assert!(
        f.replica.open_call_contexts(slow) > 0,
        "the heartbeat's self-call is outstanding"
    );
    upgrade_to_b(&f);
    let st = drive(&f);
    verify(&f, &st, &[slow], &[]);
    assert_failure(
        &st,
        slow,
        &[
            "stop_canister failed (reject code 2): Stop canister request timed out",
            "confirm: the child is running with module",
        ],
    );
    assert_eq!(f.replica.module_hash(slow), Some(a_hash()));
    assert_eq!(
        parent_calls(&f, since, slow),
        ["canister_status", "stop_canister", "start_canister", "canister_status"]
    );

    // Once its calls complete, a retry upgrades it.
    f.replica.delay_responses(slow, 0);
    f.replica.tick_n(35);
    retry_failed(&f);
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
}

#[test]
fn a_child_deleted_out_of_band_fails_and_the_others_are_upgraded() {
    let mut f = fleet(3, 1);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let gone = f.children[2];
    upgrade_to_b(&f);
    // Mid-rollout, its other controller deletes the last child (not reached yet).
    tick_until_call(&f, since, f.children[0], "stop_canister");
    assert_eq!(f.parent().get_child(gone).map(|c| c.state), Some(ChildState::Outdated));
    f.replica.stop_canister(gone, Some(f.controller)).unwrap();
    f.replica.delete_canister(gone, Some(f.controller)).unwrap();
    let st = drive(&f);
    assert_failure(&st, gone, &["canister_status failed (reject code 3)", "not found"]);
    assert_eq!(
        st.failures[0].kind,
        FailureKind::LostControl,
        "the parent cannot control a deleted canister"
    );
    // "No child stopped" and "data intact" are about the two children that still exist.
    f.children.retain(|c| *c != gone);
    verify(&f, &st, &[gone], &[]);

    // The admin drops it from the registry: the rollout is clean.
    f.parent().remove_child(f.controller, gone).unwrap();
    let st = f.parent().rollout_status();
    assert_eq!(
        (st.failed, st.total_children, st.up_to_date),
        (0, 2, Some(2)),
        "{st:#?}"
    );
}

#[test]
fn a_child_that_no_longer_has_the_parent_as_controller_is_left_alone() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let taken = f.children[1];
    let me = Some(f.controller);
    let only_me = CanisterSettings {
        controllers: Some(vec![f.controller]),
        ..Default::default()
    };
    f.replica.update_settings(taken, me, only_me).unwrap();
    upgrade_to_b(&f);
    let st = drive(&f);
    // Still checked (running, data intact), but the parent cannot see its module any more.
    verify(&f, &st, &[taken], &[taken]);
    assert_failure(&st, taken, &["Only controllers of canister"]);
    let kind = st.failures.iter().find(|x| x.canister_id == taken).map(|x| x.kind);
    assert_eq!(kind, Some(FailureKind::LostControl));
    assert_eq!(f.replica.module_hash(taken), Some(a_hash()));
    let calls = parent_calls(&f, since, taken);
    assert!(!calls.contains(&"install_code".to_string()), "{calls:?}");

    // Given back, a retry upgrades it.
    let both = CanisterSettings {
        controllers: Some(vec![f.parent, f.controller]),
        ..Default::default()
    };
    f.replica.update_settings(taken, me, both).unwrap();
    retry_failed(&f);
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
}

/// Upgrades the parent to a new build of release B (same child) while the rollout to B is under way.
fn upgrade_mid_rollout(how: ParentUpgrade) -> Fleet {
    let f = fleet(4, 1);
    let since = mark(&f);
    upgrade_to_b(&f);
    tick_until_call(&f, since, f.children[1], "stop_canister");
    let st = f.parent().rollout_status();
    assert!(st.in_flight > 0 && st.finished_at.is_none(), "{st:#?}");
    f.upgrade_parent(&Release::next().rebuilt_parent("hotfix"), how)
        .unwrap();
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    for c in &f.children {
        assert_eq!(
            upgrades_of(&f, since, *c),
            1,
            "child {c}: {:?}",
            parent_calls(&f, since, *c)
        );
    }
    f
}

#[test]
fn a_parent_upgraded_mid_rollout_after_a_stop_resumes_and_upgrades_each_child_once() {
    let _f = upgrade_mid_rollout(ParentUpgrade::StopFirst);
}

#[test]
fn a_running_parent_refuses_an_upgrade_while_it_awaits_calls() {
    // `dfx canister install --mode upgrade` does not stop the parent: the replies to its outstanding calls would reach
    // the new module, which cannot resume the old futures. Its pre_upgrade refuses, so the upgrade changes nothing.
    let f = fleet(4, 1);
    let since = mark(&f);
    upgrade_to_b(&f);
    tick_until_call(&f, since, f.children[1], "stop_canister");
    let before = (f.replica.module_hash(f.parent), f.parent().rollout_status().rollout_id);
    let hotfix = Release::next().rebuilt_parent("hotfix");
    let refused = f.upgrade_parent(&hotfix, ParentUpgrade::Direct).unwrap_err();
    assert!(
        refused.message.contains("work in flight") && refused.message.contains("Stop it first"),
        "{refused}"
    );
    assert_eq!(
        (f.replica.module_hash(f.parent), f.parent().rollout_status().rollout_id),
        before
    );
    // Stopped first, the same upgrade goes through, and the rollout ends with every child upgraded once.
    f.upgrade_parent(&hotfix, ParentUpgrade::StopFirst).unwrap();
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    for c in &f.children {
        assert_eq!(upgrades_of(&f, since, *c), 1, "child {c}");
    }
}

#[test]
fn a_parent_forced_past_its_refusal_mid_rollout_re_checks_the_orphans_and_upgrades_each_child_once() {
    // skip_pre_upgrade bypasses the refusal: the old callbacks reach the new module and trap there; the new epoch
    // turns those operations into orphans, which are re-checked, never redone.
    let _f = upgrade_mid_rollout(ParentUpgrade::SkippingPreUpgrade);
}

#[test]
fn a_paused_parent_upgraded_mid_operation_still_restarts_the_child() {
    let f = fleet(3, 1);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    upgrade_to_b(&f);
    // The first child is stopped and its install is under way when the admin pauses the rollout...
    let first = f.children[0];
    tick_until_call(&f, since, first, "install_code");
    f.parent().set_concurrency(f.controller, 0).unwrap();
    // ...and the parent is forced through an upgrade: that operation is orphaned with its child possibly stopped.
    f.upgrade_parent(
        &Release::next().rebuilt_parent("hotfix"),
        ParentUpgrade::SkippingPreUpgrade,
    )
    .unwrap();
    f.replica.tick_n(150);
    let st = f.parent().rollout_status();
    assert!(
        st.paused && st.in_flight == 0,
        "the orphan was taken over while paused: {st:#?}"
    );
    assert_eq!(f.replica.status(first), CanisterStatus::Running);
    assert_eq!(
        f.replica.module_hash(first),
        Some(b_hash()),
        "its install had gone through"
    );
    for c in &f.children[1..] {
        assert!(
            parent_calls(&f, since, *c).is_empty(),
            "paused: nothing new started on {c}"
        );
        assert_eq!(f.replica.status(*c), CanisterStatus::Running);
    }
    assert_eq!(
        f.parent().get_child(first).map(|c| c.state),
        Some(ChildState::UpToDate),
        "no longer busy"
    );
    // Resumed, the rollout ends with every child upgraded.
    f.parent().set_concurrency(f.controller, 1).unwrap();
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
}

#[test]
fn a_child_whose_start_is_rejected_once_is_started_again_at_once() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let child = f.children[1];
    f.replica.reject_next_call(
        child,
        "start_canister",
        RejectCode::SysTransient,
        "injected: queue full",
    );
    upgrade_to_b(&f);
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    assert_eq!(
        parent_calls(&f, since, child),
        [
            "canister_status",
            "stop_canister",
            "install_code",
            "start_canister",
            "canister_status",
            "start_canister",
            "canister_status"
        ]
    );
}

#[test]
fn a_child_whose_start_keeps_failing_is_started_again_with_backoff_until_it_runs() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let child = f.children[0];
    for _ in 0..4 {
        f.replica.reject_next_call(
            child,
            "start_canister",
            RejectCode::SysTransient,
            "injected: queue full",
        );
    }
    upgrade_to_b(&f);
    // While it waits for its backoff, the child is listed with the time of its next try, and the rollout goes on.
    let mut waiting = None;
    for _ in 0..400 {
        f.replica.tick();
        let st = f.parent().rollout_status();
        if let Some(c) = st
            .in_flight_children
            .iter()
            .find(|c| c.canister_id == child && c.retry_at.is_some())
        {
            waiting = Some((c.clone(), st));
            break;
        }
    }
    let (listed, st) = waiting.expect("the child waits for a retry");
    assert_eq!(listed.step, shared::parent::RolloutStep::Starting);
    assert!(st.finished_at.is_none() && st.failed == 0, "{st:#?}");
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    let starts: Vec<u64> = records::calls_since(&f.replica, f.parent, since)
        .into_iter()
        .filter(|c| c.target == Some(child) && c.method == "start_canister")
        .map(|c| c.round)
        .collect();
    assert_eq!(starts.len(), 5, "four rejected starts, then one that works");
    // Rounds are 1 s: the second try goes at once, the later ones at least 1, 2, 4 min after the one before.
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] < 10, "{gaps:?}");
    for (gap, min) in gaps[1..].iter().zip([60, 120, 240]) {
        assert!(*gap >= min, "{gaps:?}");
    }
}

#[test]
fn a_child_the_parent_lost_control_of_mid_operation_is_failed_as_lost_control() {
    let f = fleet(3, 1);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let taken = f.children[0];
    upgrade_to_b(&f);
    tick_until_call(&f, since, taken, "stop_canister");
    // Between the stop and the install, another controller takes the parent off the child's controllers.
    let only_me = CanisterSettings {
        controllers: Some(vec![f.controller]),
        ..Default::default()
    };
    f.replica.update_settings(taken, Some(f.controller), only_me).unwrap();
    let st = drive(&f);
    let failure = st.failures.iter().find(|x| x.canister_id == taken).expect("listed");
    assert_eq!(failure.kind, FailureKind::LostControl, "{failure:?}");
    assert!(failure.error.contains("lost control"), "{}", failure.error);
    let info = f.parent().get_child(taken).unwrap();
    assert_eq!(info.failure, Some(FailureKind::LostControl));
    // The others were upgraded; the new controller is the one who can start it again.
    for c in &f.children[1..] {
        assert_eq!(f.replica.module_hash(*c), Some(b_hash()));
    }
}

#[test]
fn a_foreign_canister_is_not_adopted_and_forced_it_keeps_its_module_and_data() {
    let f = fleet(1, 1);
    let _logs = f.replica.print_logs_on_panic();
    let (r, me) = (&f.replica, Some(f.controller));
    // A canister of another kind (all data on its heap, saved with stable_save), controlled by the parent too.
    let settings = CanisterSettings {
        controllers: Some(vec![f.controller, f.parent]),
        ..Default::default()
    };
    let foreign = r.create_canister_with_settings(me, Some(settings));
    r.install_canister(
        foreign,
        fleet::wasms::read("wasm/fixtures/heap_baseline.wasm.gz"),
        Encode!().unwrap(),
        me,
    );
    let reply = r
        .update_call(foreign, f.controller, "fill", Encode!(&50u32, &100u32).unwrap())
        .unwrap();
    let stored: u64 = candid::decode_one(&reply).unwrap();
    assert_eq!(stored, 5_000);
    // Round-trip the data through stable memory once, as its upgrades do.
    r.upgrade_canister(
        foreign,
        fleet::wasms::read("wasm/fixtures/heap_baseline.wasm.gz"),
        Encode!().unwrap(),
        me,
    )
    .unwrap();
    let module = r.module_hash(foreign);
    let image = r.stable_memory(foreign);

    let p = f.parent();
    let refused = p.register_child(f.controller, foreign).unwrap_err();
    assert!(
        matches!(refused, ParentError::UnknownModule { canister_id, .. } if canister_id == foreign),
        "{refused:?}"
    );
    assert!(p.get_child(foreign).is_none());

    let info = p
        .register_child_with(f.controller, foreign, RegisterOptions { force: Some(true) })
        .unwrap();
    assert_eq!(info.state, ChildState::Pending);
    let st = drive(&f);
    let failure = st.failures.iter().find(|x| x.canister_id == foreign).expect("listed");
    assert_eq!(failure.kind, FailureKind::Running);
    assert!(
        failure.error.contains("not a MemoryManager layout"),
        "{}",
        failure.error
    );
    assert_eq!(r.status(foreign), CanisterStatus::Running);
    assert_eq!(r.module_hash(foreign), module, "it runs its own module still");
    assert_eq!(
        r.stable_memory(foreign),
        image,
        "not a byte of its stable memory changed"
    );
    let after: u64 = r.query(foreign, f.controller, "stored_bytes", &()).unwrap();
    assert_eq!(after, stored, "its data is all there");
}

#[test]
fn a_trapping_rollout_tick_delays_the_rollout_but_does_not_stall_it() {
    let f = fleet(3, 1);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    // The tick after the upgrade (it plans and launches the first batch) traps, and so does the next one.
    f.replica.fail_next_execution(f.parent, TIMER_EXECUTOR);
    f.replica.fail_next_execution(f.parent, TIMER_EXECUTOR);
    upgrade_to_b(&f);
    f.replica.tick_n(30);
    let traps = |f: &Fleet| {
        executions_on(f, f.parent, TIMER_EXECUTOR)
            .iter()
            .filter(|e| e.outcome.is_err())
            .count()
    };
    assert_eq!(traps(&f), 1);
    let st = f.parent().rollout_status();
    assert!(
        st.planning && st.finished_at.is_none() && st.in_flight == 0 && st.pending == 3,
        "the trap rolled the batch back: {st:#?}"
    );
    assert!(
        f.children.iter().all(|c| parent_calls(&f, since, *c).is_empty()),
        "no call went out"
    );
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    assert_eq!(traps(&f), 2);
    for c in &f.children {
        assert_eq!(parent_calls(&f, since, *c), OP);
    }
}

#[test]
fn overlapping_rollout_requests_operate_on_each_child_once_at_a_time() {
    let f = fleet(5, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let flaky = f.children[0];
    f.replica.fail_next_execution(flaky, "canister_post_upgrade");
    upgrade_to_b(&f);
    let p = f.parent();
    let first = p.rollout_status().rollout_id;
    // The first child fails (its confirm sees release A) while others are under way.
    for _ in 0..100 {
        if p.rollout_status().failed == 1 {
            break;
        }
        f.replica.tick();
    }
    let st = p.rollout_status();
    assert!(st.failed == 1 && st.in_flight > 0, "{st:#?}");
    assert_eq!(retry_failed(&f), 1);
    assert_eq!(p.start_rollout(f.controller), Ok(first + 1));
    f.replica.tick_n(2);
    assert_eq!(p.start_rollout(f.controller), Ok(first + 2));
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
    // One operation at a time per child (a second, concurrent one would interleave more calls), one upgrade each.
    for c in &f.children[1..] {
        assert_eq!(parent_calls(&f, since, *c), OP, "child {c}");
    }
    assert_eq!(
        parent_calls(&f, since, flaky),
        [OP, OP].concat(),
        "failed once, then retried once"
    );
    for c in &f.children {
        assert_eq!(upgrades_of(&f, since, *c), 1, "child {c}");
    }
}
