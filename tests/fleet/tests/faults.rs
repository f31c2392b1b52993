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
use fleet::{outsider, ChildFacts, Fleet, FleetConfig, ParentUpgrade, Release};
use replica::ExecutionRecord;
use replica::ReplicaConfig;
use shared::child::ChildUpgradeArg;
use shared::parent::{ChildState, ParentError, RetryOptions, RolloutStatus};

/// The ic-cdk-timers executor: every timer (the parent's rollout tick) runs as a self-call to this update.
const TIMER_EXECUTOR: &str = "canister_update <ic-cdk internal> timer_executor";
const MAX_ROUNDS: u64 = 1_000;
/// The calls of one child operation, in order.
const OP: [&str; 4] = ["stop_canister", "install_code", "start_canister", "canister_status"];

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
            "confirm: child is Running",
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
            "confirm: child is Running",
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
fn a_child_out_of_cycles_is_not_upgraded_and_is_started_again() {
    let f = fleet(3, 2);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
    let poor = f.children[2];
    f.replica.drain_cycles(poor);
    upgrade_to_b(&f);
    let st = drive(&f);
    verify(&f, &st, &[poor], &[]);
    assert_failure(&st, poor, &["install_code failed (reject code 2)", "out of cycles"]);
    assert_eq!(f.replica.module_hash(poor), Some(a_hash()));
    assert_eq!(parent_calls(&f, since, poor), OP);

    // Topped up, a retry upgrades it.
    f.replica.add_cycles(poor, 10_000_000_000_000);
    retry_failed(&f);
    let st = drive(&f);
    verify(&f, &st, &[], &[]);
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
            "confirm: child is Running",
        ],
    );
    assert_eq!(f.replica.module_hash(slow), Some(a_hash()));
    assert_eq!(
        parent_calls(&f, since, slow),
        ["stop_canister", "start_canister", "canister_status"]
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
    // Mid-rollout, its other controller deletes the last child (queued, not reached yet).
    tick_until_call(&f, since, f.children[0], "stop_canister");
    assert_eq!(f.parent().get_child(gone).map(|c| c.state), Some(ChildState::Pending));
    f.replica.stop_canister(gone, Some(f.controller)).unwrap();
    f.replica.delete_canister(gone, Some(f.controller)).unwrap();
    let st = drive(&f);
    assert_failure(&st, gone, &["stop_canister failed (reject code 3)", "not found"]);
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
fn upgrade_mid_rollout(how: ParentUpgrade) {
    let f = fleet(4, 1);
    let since = mark(&f);
    let _logs = f.replica.print_logs_on_panic();
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
}

#[test]
fn a_parent_upgraded_mid_rollout_after_a_stop_resumes_and_upgrades_each_child_once() {
    upgrade_mid_rollout(ParentUpgrade::StopFirst);
}

#[test]
fn a_parent_upgraded_mid_rollout_while_running_resumes_and_upgrades_each_child_once() {
    // `dfx canister install --mode upgrade` does not stop the parent: the replies to its outstanding calls reach
    // the new instance, which cannot resume the old futures; the new epoch turns those operations into orphans,
    // which are re-checked.
    upgrade_mid_rollout(ParentUpgrade::Direct);
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
        st.planning && st.finished_at.is_none() && st.pending == 0,
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
