//! Gated rollouts on the real wasm: a canary wave with a health check, automatic halts, pause and abort, and what a
//! parent upgrade in the middle of them keeps. Every test ends with every child running and its data intact.

use candid::Principal;
use fleet::records::calls_since;
use fleet::{Fleet, FleetConfig, ParentUpgrade, Release};
use shared::parent::{HistoryArg, RolloutGates, RolloutStage, RolloutStatus, Share};

const MAX_ROUNDS: u64 = 2_000;
const HEALTH_QUERY: &str = "canister_query health";

/// Release A with `n` children holding data, upgraded at most `k` at a time; its children in principal order (the
/// planner's order, so the first ones are the canaries).
fn fleet(n: u32, k: u32) -> Fleet {
    let mut f = Fleet::with_children(&Release::current(), FleetConfig::with_concurrency(k), n, 10, 32);
    f.children.sort();
    f
}

fn gates(canary: Option<Share>, bake_secs: u64, halt_after: Option<Share>) -> RolloutGates {
    RolloutGates {
        canary,
        bake_secs,
        health_method: "health".into(),
        halt_after,
    }
}

fn upgrade_to_b(f: &Fleet) {
    f.upgrade_parent(&Release::next(), ParentUpgrade::Direct).unwrap();
}

/// Runs rounds until `done(status)`; panics after `MAX_ROUNDS`.
fn run_until(f: &Fleet, what: &str, done: impl Fn(&RolloutStatus) -> bool) -> RolloutStatus {
    for _ in 0..MAX_ROUNDS {
        let st = f.parent().rollout_status();
        if done(&st) {
            return st;
        }
        f.replica.tick();
    }
    panic!(
        "{what}: not reached in {MAX_ROUNDS} rounds: {:#?}",
        f.parent().rollout_status()
    );
}

fn settled(st: &RolloutStatus) -> bool {
    st.in_flight == 0
}

/// Management calls the parent made about `child` since `since`.
fn touched(f: &Fleet, since: usize, child: Principal) -> usize {
    calls_since(&f.replica, f.parent, since)
        .iter()
        .filter(|c| c.target == Some(child))
        .count()
}

/// Every child runs with its data intact; those in `on_b` run release B, the others release A.
fn assert_fleet(f: &Fleet, on_b: &[Principal]) {
    let (a, b) = (
        Release::current().expect_child_hash(),
        Release::next().expect_child_hash(),
    );
    for x in f.verify() {
        assert!(x.running() && x.data_intact(), "{x:?}");
        let want = if on_b.contains(&x.id) { b } else { a };
        assert!(
            x.on(&want),
            "{} should run {}: {x:?}",
            x.id,
            if want == b { "B" } else { "A" }
        );
    }
}

#[test]
fn an_unhealthy_canary_halts_the_rollout_before_any_other_child_is_touched() {
    let f = fleet(8, 4);
    let _logs = f.replica.print_logs_on_panic();
    let p = f.parent();
    p.set_rollout_gates(f.controller, gates(Some(Share::Count(2)), 60, None))
        .unwrap();
    let (canaries, rest) = f.children.split_at(2);
    // The first canary's health method traps on B: unhealthy.
    f.replica.fail_next_execution(canaries[0], HEALTH_QUERY);
    let since = f.replica.management_calls().len();
    upgrade_to_b(&f);

    let st = run_until(&f, "the halt", |st| st.halted.is_some() && settled(st));
    assert_eq!(st.canaries, canaries);
    assert!(st.halted.as_ref().unwrap().reason.contains("health"), "{st:#?}");
    for c in rest {
        assert_eq!(
            touched(&f, since, *c),
            0,
            "{c} was touched before the canaries were found healthy"
        );
    }
    assert_fleet(&f, canaries);
    assert_eq!(
        (st.upgraded, st.failed),
        (2, 1),
        "both canaries upgraded, one failed its check"
    );

    // Rolling back to A moves the canaries back, with their data.
    p.rollout_release(f.controller, Release::current().expect_child_hash().to_vec())
        .unwrap();
    let st = run_until(&f, "the rollback", Fleet::is_finished);
    assert_eq!(st.failed, 0, "{st:#?}");
    assert_fleet(&f, &[]);
}

#[test]
fn healthy_canaries_bake_then_the_rest_of_the_fleet_follows() {
    let f = fleet(6, 3);
    let p = f.parent();
    p.set_rollout_gates(f.controller, gates(Some(Share::Count(2)), 120, None))
        .unwrap();
    let since = f.replica.management_calls().len();
    upgrade_to_b(&f);
    let st = run_until(&f, "the bake", |st| matches!(st.stage, RolloutStage::Baking { .. }));
    let RolloutStage::Baking { until } = st.stage else {
        unreachable!()
    };
    assert!(
        f.children[2..].iter().all(|c| touched(&f, since, *c) == 0),
        "only canaries before the bake"
    );
    let st = run_until(&f, "the end", Fleet::is_finished);
    assert!(f.replica.time_nanos() >= until, "the bake was waited out");
    assert_eq!((st.upgraded, st.failed, st.halted), (6, 0, None));
    assert_fleet(&f, &f.children);
}

#[test]
fn failures_reaching_the_threshold_halt_the_rollout_and_resume_goes_on() {
    let f = fleet(8, 1);
    let _logs = f.replica.print_logs_on_panic();
    let p = f.parent();
    p.set_rollout_gates(f.controller, gates(None, 0, Some(Share::Count(2))))
        .unwrap();
    // The first two children (K = 1: upgraded one after the other) trap in post_upgrade on B.
    for c in &f.children[..2] {
        f.replica.fail_next_execution(*c, "canister_post_upgrade");
    }
    let since = f.replica.management_calls().len();
    upgrade_to_b(&f);
    let st = run_until(&f, "the halt", |st| st.halted.is_some() && settled(st));
    assert_eq!(st.failures_in_rollout, 2);
    // The third child's operation started while the second one confirmed its failure (a confirm holds no slot);
    // it finishes, and nothing new starts after the halt.
    assert!(st.upgraded <= 1, "{st:#?}");
    assert!(
        f.children[3..].iter().all(|c| touched(&f, since, *c) == 0),
        "nothing new started after the threshold: {st:#?}"
    );
    let on_b = &f.children[2..2 + st.upgraded as usize];
    assert_fleet(&f, on_b);

    // The halt survives a parent upgrade: still halted, nothing starts.
    f.upgrade_parent(&Release::next().rebuilt_parent("hotfix"), ParentUpgrade::StopFirst)
        .unwrap();
    for _ in 0..50 {
        f.replica.tick();
    }
    let after = p.rollout_status();
    assert_eq!((after.halted, after.upgraded), (st.halted, st.upgraded));

    p.resume_rollout(f.controller).unwrap();
    let st = run_until(&f, "the end", Fleet::is_finished);
    assert_eq!((st.upgraded, st.failed, st.halted), (6, 2, None));
    assert_fleet(&f, &f.children[2..]);
}

#[test]
fn an_abort_mid_flight_drops_the_queue_and_leaves_no_child_stopped() {
    let f = fleet(12, 3);
    let _logs = f.replica.print_logs_on_panic();
    let p = f.parent();
    upgrade_to_b(&f);
    run_until(&f, "children in flight", |st| st.in_flight >= 3);
    p.abort_rollout(f.controller).unwrap();
    let aborted = p.rollout_status();
    assert!(aborted.aborted_at.is_some());
    let st = run_until(&f, "in-flight operations ending", |st| settled(st) && st.pending == 0);
    assert!(st.upgraded >= 3 && st.upgraded < 12, "{st:#?}");
    let on_b: Vec<Principal> = f
        .verify()
        .into_iter()
        .filter(|x| x.on(&Release::next().expect_child_hash()))
        .map(|x| x.id)
        .collect();
    assert_eq!(on_b.len() as u64, st.upgraded);
    assert_fleet(&f, &on_b);
    // Idempotent, and a later start_rollout upgrades the rest.
    p.abort_rollout(f.controller).unwrap();
    p.start_rollout(f.controller).unwrap();
    run_until(&f, "the new rollout", Fleet::is_finished);
    assert_fleet(&f, &f.children);
}

#[test]
fn a_parent_upgrade_during_a_bake_or_a_pause_keeps_the_rollout_where_it_was() {
    let f = fleet(6, 2);
    let _logs = f.replica.print_logs_on_panic();
    let p = f.parent();
    p.set_rollout_gates(f.controller, gates(Some(Share::Count(2)), 3_600, None))
        .unwrap();
    upgrade_to_b(&f);
    let baking = run_until(&f, "the bake", |st| {
        matches!(st.stage, RolloutStage::Baking { .. }) && settled(st)
    });
    f.upgrade_parent(&Release::next().rebuilt_parent("hotfix-1"), ParentUpgrade::StopFirst)
        .unwrap();
    let after = p.rollout_status();
    assert_eq!(
        (after.rollout_id, &after.stage, &after.canaries, after.upgraded),
        (baking.rollout_id, &baking.stage, &baking.canaries, baking.upgraded),
        "the same rollout, still baking until the same time"
    );

    // A pause survives an upgrade too: nothing starts until resumed, even once the bake is over.
    p.pause_rollout(f.controller).unwrap();
    f.upgrade_parent(&Release::next().rebuilt_parent("hotfix-2"), ParentUpgrade::StopFirst)
        .unwrap();
    assert!(p.rollout_status().paused);
    f.replica.advance_time(std::time::Duration::from_secs(3_600));
    for _ in 0..50 {
        f.replica.tick();
    }
    assert_eq!(p.rollout_status().upgraded, 2, "paused: nothing new after the bake");
    p.resume_rollout(f.controller).unwrap();
    let st = run_until(&f, "the end", Fleet::is_finished);
    assert_eq!(st.upgraded, 6);
    assert_fleet(&f, &f.children);
}

#[test]
fn the_history_and_the_child_events_survive_parent_upgrades() {
    let f = fleet(3, 3);
    upgrade_to_b(&f);
    run_until(&f, "the first rollout", Fleet::is_finished);
    let p = f.parent();
    let history = p.rollout_history(HistoryArg { before: None, limit: 0 });
    let events = p.child_events(f.children[0]);
    assert_eq!(history[0].upgraded, 3, "{history:#?}");
    assert!(!events.is_empty());
    f.upgrade_parent(&Release::next().rebuilt_parent("hotfix"), ParentUpgrade::Direct)
        .unwrap();
    let all = HistoryArg { before: None, limit: 0 };
    assert_eq!(p.rollout_history(all), history);
    assert_eq!(p.child_events(f.children[0]), events);
}
