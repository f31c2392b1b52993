//! The round model, pinned against the IC's scheduler (dfinity/ic `rs/execution_environment/src/scheduler.rs`:
//! `execute_round`, `inner_round`, `execute_canisters_on_thread`, `induct_messages_on_same_subnet`) and its limits
//! (`rs/config/src/subnet_config.rs`, `SchedulerConfig::application_subnet`).
//!
//! One `tick()` is one IC round: subnet messages first, then iterations that execute every canister's input and
//! then induct the messages canisters sent each other on this subnet, until nothing is left or the round's
//! instruction budget is spent. Messages to the management canister take the slow path (message routing): they are
//! executed in the next round, and their responses reach the caller one round later.

mod common;

use std::time::Duration;

use candid::Principal;
use common::*;
use replica::{ic00, RejectCode, Replica, ReplicaConfig, SchedulerConfig};

#[test]
fn the_scheduler_limits_are_the_application_subnet_ones() {
    // subnet_config.rs: MAX_INSTRUCTIONS_PER_ROUND 7B, MAX_INSTRUCTIONS_PER_SLICE 2B,
    // MAX_INSTRUCTIONS_PER_MESSAGE_WITHOUT_DTS 5B, MAX_INSTRUCTIONS_PER_INSTALL_CODE_SLICE 2B,
    // INSTRUCTION_OVERHEAD_PER_EXECUTION 2M, INSTRUCTION_OVERHEAD_PER_CANISTER 8M,
    // INSTRUCTION_OVERHEAD_PER_CANISTER_FOR_FINALIZATION 12,000, NUMBER_OF_EXECUTION_THREADS 4,
    // install_code_rate_limit = MAX_INSTRUCTIONS_PER_SLICE.
    let s = SchedulerConfig::default();
    assert_eq!(s.scheduler_cores, 4);
    assert_eq!(s.max_instructions_per_round, 7_000_000_000);
    assert_eq!(s.max_instructions_per_slice, 2_000_000_000);
    assert_eq!(s.max_instructions_per_message_without_dts, 5_000_000_000);
    assert_eq!(s.max_instructions_per_install_code_slice, 2_000_000_000);
    assert_eq!(s.instruction_overhead_per_execution, 2_000_000);
    assert_eq!(s.instruction_overhead_per_canister, 8_000_000);
    assert_eq!(s.instruction_overhead_per_canister_for_finalization, 12_000);
    assert_eq!(s.install_code_rate_limit, 2_000_000_000);
}

#[test]
fn ingress_to_a_to_b_and_back_completes_in_one_round() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let before = r.round();
    let reply = r.update_call(a, user(), "call", call_arg(0, b, "echo", b"hi")).unwrap();
    assert_eq!(reply, b"Rhi");
    assert_eq!(r.round() - before, 1, "A, B and A's callback run in the ingress round");
    let rounds: Vec<u64> = r.executions().iter().rev().take(3).map(|e| e.round).collect();
    assert_eq!(rounds, vec![before + 1; 3]);
    assert_eq!(r.open_call_contexts(a), 0);
}

#[test]
fn a_call_answered_later_in_the_round_runs_after_the_ingress_reply() {
    // Flag 64: A replies to the ingress message right after `call_perform` and ignores the response. B's
    // execution is inducted and run in the same round, so it has happened when `update_call` returns.
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    r.update_call(a, user(), "call", call_arg(64, b, "inc", &[])).unwrap();
    assert_eq!(query_u64(&r, b, "get"), 1);
    assert_eq!(r.open_call_contexts(a), 0, "the ignored response was delivered too");
}

#[test]
fn a_one_second_bounded_wait_call_between_local_canisters_is_answered() {
    // Rounds are 1 s; the callee answers within the caller's round, before the deadline is checked again.
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let reply = r.update_call(a, user(), "call", call_arg(32, b, "echo", b"x")).unwrap();
    assert_eq!(reply, b"Rx");
}

#[test]
fn a_bounded_wait_call_still_times_out_against_time() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    r.delay_responses(a, 5);
    let before = r.time_nanos();
    let reply = r.update_call(a, user(), "call", call_arg(32, b, "echo", b"x")).unwrap();
    assert_eq!(&reply[..2], &[b'J', RejectCode::SysUnknown as u8]);
    assert_eq!(
        r.time_nanos() - before,
        2_000_000_000,
        "expired at the first round at or after 1 s"
    );
}

#[test]
fn a_timer_self_call_runs_in_the_round_the_timer_fires() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "set_timer", r.time_nanos().to_le_bytes().to_vec())
        .unwrap();
    r.tick();
    assert_eq!(query_u64(&r, id, "timer_fires"), 1);
    assert_eq!(query_u64(&r, id, "get"), 1);
    let round_of = |entry: &str| r.last_execution(id, entry).unwrap().round;
    assert_eq!(round_of("canister_update inc"), round_of("canister_global_timer"));
    assert_eq!(round_of("reply callback"), r.round(), "and the response to it too");
}

#[test]
fn management_calls_take_the_slow_path_through_message_routing() {
    // induct_messages_on_same_subnet: "Messages sent to the subnet are not handled i.e. they take the slow path
    // through message routing." A's call is handled in the next round, its callback one round later.
    let r = Replica::new();
    let a = installed(&r);
    let before = r.round();
    let arg = call_arg(
        0,
        Principal::management_canister(),
        "raw_rand",
        &candid::encode_args(()).unwrap(),
    );
    let reply = r.update_call(a, user(), "call", arg).unwrap();
    assert_eq!(reply[0], b'R');
    assert_eq!(r.round() - before, 3);
    assert_eq!(r.management_calls_by(a)[0].round, before + 2);
}

/// Executions of `canister` per round, in round order.
fn executions_per_round(r: &Replica, canister: Principal) -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = Vec::new();
    for e in r.executions().iter().filter(|e| e.canister == canister) {
        match out.last_mut() {
            Some((round, n)) if *round == e.round => *n += 1,
            _ => out.push((e.round, 1)),
        }
    }
    out
}

#[test]
fn the_round_instruction_budget_ends_a_round() {
    // execute_round: the canister budget starts at R - S + 1 with R = 7B (round) and S = max(2B slice,
    // 5B without DTS) = 5B, i.e. 2,000,000,001. Each execution takes its instructions + 2M (per execution); each
    // iteration also takes 8M (per canister that ran) + 12,000 × 1 canister (finalization). A self-call chain runs
    // one execution per iteration, of a few thousand instructions I, so one iteration costs 10,012,000 + I:
    //   199 × (10,012,000 + I) < 2,000,000,001 ≤ 200 × (10,012,000 + I)   for 0 ≤ I < 38,000.
    // So a round runs exactly 200 executions of the chain, then the rest waits for the next round.
    let r = Replica::new();
    let a = installed(&r);
    let before = r.round();
    // 400 deep: each level waits for the next, and at most 500 calls may wait between two canisters.
    let reply = r
        .update_call(a, user(), "chain", 400u32.to_le_bytes().to_vec())
        .unwrap();
    assert_eq!(u64_of(&reply), 1);
    let per_round = executions_per_round(&r, a);
    let chain: Vec<_> = per_round.iter().filter(|(round, _)| *round > before).collect();
    assert!(
        r.executions()
            .iter()
            .filter(|e| e.round > before)
            .all(|e| e.instructions < 38_000),
        "the bound above assumes small executions"
    );
    // 401 calls and 400 callbacks: 801 executions, 200 per round.
    assert_eq!(chain.len(), 5, "{chain:?}");
    assert!(chain[..4].iter().all(|(_, n)| *n == 200), "{chain:?}");
    assert_eq!(chain[4].1, 1);
    assert_eq!(r.round() - before, 5);
}

/// A module whose `canister_init` runs a loop of `n` iterations (about 4 instructions each).
fn spinning_init(n: u32) -> Vec<u8> {
    module_with(&format!(
        r#"(func (export "canister_init") (local $i i32)
             (local.set $i (i32.const {n}))
             (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i))))
           (func (export "canister_update ping"))"#
    ))
}

fn small_slices() -> ReplicaConfig {
    ReplicaConfig {
        scheduler: SchedulerConfig {
            max_instructions_per_install_code_slice: 1_000_000,
            install_code_rate_limit: 1_000_000,
            ..SchedulerConfig::default()
        },
        ..ReplicaConfig::default()
    }
}

#[test]
fn a_long_install_is_sliced_across_rounds_and_rate_limits_the_next_one() {
    // DTS: an install_code of T instructions (compilation included) runs in ceil(T / slice) rounds; the canister
    // runs nothing else meanwhile. install_code_debit += T; every round ends with debit -= rate limit; an
    // install_code while the debit is positive is rejected with CanisterInstallCodeRateLimited (IC0209,
    // canister_manager.rs validate_input).
    let r = Replica::with_config(small_slices());
    let id = r.create_canister_with_settings(Some(user()), None);
    let before = r.round();
    r.install_canister(id, spinning_init(1_000_000), vec![], Some(user()));
    let total: u64 = r
        .executions()
        .iter()
        .filter(|e| e.canister == id)
        .map(|e| e.instructions)
        .sum();
    assert!(total > 3_000_000, "{total}");
    let slices = total.div_ceil(1_000_000);
    assert_eq!(r.round() - before, slices, "{total} instructions in 1M slices");

    // Right after it, the debit is total - slices × 1M + ... > 0 only if the last round did not pay it off:
    // debit after the round the install finished = total - 1M (one round's allowance) > 0.
    let err = r
        .upgrade_canister(id, spinning_init(10), vec![], Some(user()))
        .unwrap_err();
    assert_eq!((err.code, err.error_code), (RejectCode::SysTransient, Some("IC0209")));
    assert_eq!(
        err.message,
        format!(
            "Canister {id} is rate limited because it executed too many instructions in the previous install_code \
             messages. Please retry installation after several minutes."
        )
    );
    // The debit drains by 1M per round: after enough rounds the upgrade goes through.
    r.tick_n(slices);
    r.upgrade_canister(id, spinning_init(10), vec![], Some(user())).unwrap();
}

#[test]
fn messages_to_a_canister_wait_while_its_install_runs() {
    let r = Replica::with_config(small_slices());
    let id = r.create_canister_with_settings(Some(user()), None);
    let install = r
        .submit_call(
            Principal::management_canister(),
            user(),
            "install_code",
            candid::encode_one(ic00::InstallCodeArgs {
                mode: ic00::CanisterInstallMode::Install,
                canister_id: id,
                wasm_module: spinning_init(1_000_000),
                arg: vec![],
                sender_canister_version: None,
            })
            .unwrap(),
        )
        .unwrap();
    r.tick();
    assert!(r.ingress_status(install).is_none(), "the install is still running");
    let ping = r.submit_call(id, user(), "ping", vec![]).unwrap();
    r.tick();
    assert!(
        r.ingress_status(ping).is_none(),
        "the canister is busy with the install"
    );
    r.await_call(install).unwrap();
    let done = r.round();
    let ping_reply = r.await_call(ping).unwrap_err();
    assert!(
        ping_reply.message.contains("did not produce a response"),
        "{ping_reply}"
    );
    assert_eq!(r.last_execution(id, "canister_update ping").unwrap().round, done);
}

#[test]
fn time_advances_one_round_duration_per_tick_and_stop_timeouts_follow_it() {
    let r = Replica::with_config(ReplicaConfig {
        stop_canister_timeout: Duration::from_secs(3),
        ..ReplicaConfig::default()
    });
    let a = installed(&r);
    let t0 = r.time_nanos();
    r.tick_n(4);
    assert_eq!(r.time_nanos() - t0, 4_000_000_000);
    // A call context kept open by a delayed response keeps the canister stopping until the stop times out.
    let b = installed(&r);
    r.delay_responses(a, 100);
    let pending = r.submit_call(a, user(), "call", call_arg(0, b, "echo", b"x")).unwrap();
    r.tick();
    let err = r.stop_canister(a, Some(user())).unwrap_err();
    assert_eq!(err.error_code, Some("IC0206"));
    assert!(r.ingress_status(pending).is_none());
}
