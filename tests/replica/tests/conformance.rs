//! Conformance tests: each pins one rule of the IC interface spec (or of the brief) with hand-written WAT.

mod common;

use std::time::Duration;

use candid::{CandidType, Principal};
use common::*;
use replica::{ic00, CanisterStatus, RejectCode, Replica, ReplicaConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};

// ---- 1. Canisters ----

#[test]
fn canister_ids_are_shaped_like_ic_canister_ids() {
    let r = Replica::new();
    let a = r.create_canister();
    let b = r.create_canister();
    assert_eq!(a.as_slice(), &[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(b.as_slice(), &[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(a.to_text(), "rwlgt-iiaaa-aaaaa-aaaaa-cai");
    assert_eq!(r.controllers(a), vec![Principal::anonymous()]);
    assert_eq!(r.status(a), CanisterStatus::Running);
}

#[test]
fn module_hash_is_sha256_of_the_bytes_as_sent() {
    let r = Replica::new();
    let id = r.create_canister();
    let gz = gzip(&wasm());
    r.install_canister(id, gz.clone(), vec![], None);
    let expected: [u8; 32] = Sha256::digest(&gz).into();
    assert_eq!(r.module_hash(id), Some(expected));
    assert_ne!(r.module_hash(id), Some(Sha256::digest(wasm()).into()));
    // The gzipped module runs like the raw one.
    assert_eq!(u64_of(&r.update_call(id, user(), "inc", vec![]).unwrap()), 1);
}

#[test]
fn unknown_module_format_is_rejected() {
    let r = Replica::new();
    let id = r.create_canister();
    let err = r
        .install_code(None, ic00::CanisterInstallMode::Install, id, b"hello".to_vec(), vec![])
        .unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(err.message.contains("unsupported canister module format"), "{err}");
    assert_eq!(r.module_hash(id), None);
}

#[test]
fn heap_and_globals_persist_between_messages() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "inc", vec![]).unwrap();
    r.update_call(id, user(), "inc", vec![]).unwrap();
    assert_eq!(query_u64(&r, id, "get"), 2);
    assert_eq!(query_u64(&r, id, "get_global"), 2);
    assert_eq!(query_u64(&r, id, "init_arg_len"), 5);
}

#[test]
fn stable_memory_is_sparse_and_reads_zero() {
    let r = Replica::new();
    let id = installed(&r);
    assert_eq!(r.stable_memory_pages(id), (0, 0));
    r.update_call(id, user(), "stable_put", b"abc".to_vec()).unwrap();
    assert_eq!(r.stable_memory_pages(id), (1, 1));
    assert_eq!(r.read_stable_memory(id, 0, 4), b"abc\0");
}

#[test]
fn certified_data_is_kept_and_rolled_back_on_trap() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "set_cert", b"one".to_vec()).unwrap();
    assert!(r
        .update_call(id, user(), "set_cert_then_trap", b"two".to_vec())
        .is_err());
    assert_eq!(r.certified_data(id), b"one");
}

// ---- 2. System API ----

#[test]
fn msg_reply_twice_traps() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r.update_call(id, user(), "reply_twice", vec![]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(err.message.contains("already replied"), "{err}");
}

#[test]
fn msg_reject_code_outside_callbacks_traps() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r.update_call(id, user(), "bad_reject_code", vec![]).unwrap_err();
    assert!(
        err.message
            .contains("\"ic0_msg_reject_code\" cannot be executed in update mode"),
        "{err}"
    );
}

#[test]
fn calls_from_queries_trap() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r
        .query_call(id, user(), "call_in_query", call_arg(0, id, "inc", &[]))
        .unwrap_err();
    assert!(
        err.message
            .contains("\"ic0_call_new\" cannot be executed in non-replicated query mode"),
        "{err}"
    );
}

#[test]
fn calls_from_init_trap() {
    let r = Replica::new();
    let id = r.create_canister();
    let m = module_with(
        r#"(import "ic0" "call_new" (func $c (param i32 i32 i32 i32 i32 i32 i32 i32)))
           (memory 1)
           (func (export "canister_init") (call $c (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))"#,
    );
    let err = r
        .install_code(None, ic00::CanisterInstallMode::Install, id, m, vec![])
        .unwrap_err();
    assert!(
        err.message.contains("\"ic0_call_new\" cannot be executed in init mode"),
        "{err}"
    );
    assert_eq!(r.module_hash(id), None, "a failed install leaves the canister empty");
}

#[test]
fn foreign_imports_are_rejected_with_the_ic_message() {
    let r = Replica::new();
    let id = r.create_canister();
    for (module, name) in [("env", "foo"), ("ic0", "no_such_api")] {
        let m = module_with(&format!(r#"(import "{module}" "{name}" (func))"#));
        let err = r
            .install_code(None, ic00::CanisterInstallMode::Install, id, m, vec![])
            .unwrap_err();
        let expected = format!(
            "Wasm module has an invalid import section. Module imports function '{name}' from '{module}' that is not exported by the runtime."
        );
        assert!(err.message.contains(&expected), "{err}");
    }
}

#[test]
fn two_memory_exports_and_unknown_canister_exports_are_rejected() {
    let r = Replica::new();
    let id = r.create_canister();
    let m = module_with(r#"(memory 1) (export "a" (memory 0)) (export "b" (memory 0))"#);
    let err = r
        .install_code(None, ic00::CanisterInstallMode::Install, id, m, vec![])
        .unwrap_err();
    assert!(err.message.contains("more than one memory"), "{err}");
    let m = module_with(r#"(func (export "canister_foo"))"#);
    let err = r
        .install_code(None, ic00::CanisterInstallMode::Install, id, m, vec![])
        .unwrap_err();
    assert!(
        err.message.contains("Exporting reserved function 'canister_foo'"),
        "{err}"
    );
}

// ---- 3. Execution: rounds and transactions ----

#[test]
fn a_trap_rolls_back_heap_globals_and_reports_canister_error() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "inc", vec![]).unwrap();
    let err = r.update_call(id, user(), "inc_then_trap", vec![]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert_eq!(
        err.message,
        format!("Error from Canister {id}: Canister called `ic0.trap` with message: 'boom'.")
    );
    assert_eq!(query_u64(&r, id, "get"), 1);
    assert_eq!(query_u64(&r, id, "get_global"), 1);
}

#[test]
fn a_trap_rolls_back_stable_memory_writes_and_growth() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "stable_put", b"AAAAAAAA".to_vec()).unwrap();
    r.update_call(id, user(), "stable_put_then_trap", b"BBBBBBBB".to_vec())
        .unwrap_err();
    let got = r.query_call(id, user(), "stable_get", vec![]).unwrap();
    assert_eq!(&got[..8], b"AAAAAAAA");
    assert_eq!(u64_of(&got[8..]), 1);
}

#[test]
fn a_trap_after_heap_growth_restores_the_heap() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "inc", vec![]).unwrap();
    r.update_call(id, user(), "grow_then_trap", vec![]).unwrap_err();
    assert_eq!(query_u64(&r, id, "heap_pages"), 1);
    assert_eq!(query_u64(&r, id, "get"), 1);
    assert_eq!(query_u64(&r, id, "get_global"), 1);
    assert_eq!(u64_of(&r.update_call(id, user(), "inc", vec![]).unwrap()), 2);
}

#[test]
fn queries_change_nothing() {
    let r = Replica::new();
    let id = installed(&r);
    assert_eq!(query_u64(&r, id, "query_inc"), 1);
    assert_eq!(query_u64(&r, id, "query_inc"), 1);
    // A query method called as an update (replicated query) replies but keeps no state either.
    assert_eq!(u64_of(&r.update_call(id, user(), "query_inc", vec![]).unwrap()), 1);
    assert_eq!(query_u64(&r, id, "get"), 0);
}

#[test]
fn global_timer_fires_once_due_and_only_while_running() {
    let r = Replica::new();
    let id = installed(&r);
    let due = r.time_nanos() + 5_000_000_000;
    r.update_call(id, user(), "set_timer", due.to_le_bytes().to_vec())
        .unwrap();
    assert_eq!(r.global_timer(id), due);
    r.stop_canister(id, Some(user())).unwrap();
    r.advance_time(Duration::from_secs(10));
    r.tick_n(3);
    assert_eq!(
        r.global_timer(id),
        due,
        "a stopped canister keeps its timer and it does not fire"
    );
    r.start_canister(id, Some(user())).unwrap();
    r.tick();
    assert_eq!(query_u64(&r, id, "timer_fires"), 1);
    assert_eq!(r.global_timer(id), 0, "the timer is deactivated when it fires");
    r.tick_n(3);
    assert_eq!(query_u64(&r, id, "timer_fires"), 1);
}

#[test]
fn a_trap_rolls_back_the_global_timer() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r.update_call(id, user(), "set_timer_then_trap", 123u64.to_le_bytes().to_vec());
    assert!(err.is_err());
    assert_eq!(r.global_timer(id), 0);
}

#[test]
fn a_trap_discards_the_calls_the_message_made() {
    let r = Replica::new();
    let id = installed(&r);
    let arg = call_arg(
        8,
        Principal::management_canister(),
        "raw_rand",
        &candid::encode_args(()).unwrap(),
    );
    r.update_call(id, user(), "call", arg).unwrap_err();
    r.tick_n(3);
    assert!(r.management_calls_by(id).is_empty());
    assert_eq!(r.open_call_contexts(id), 0);
}

// ---- 4. Instruction metering ----

#[test]
fn exceeding_the_instruction_limit_traps() {
    let r = Replica::with_config(ReplicaConfig {
        update_instruction_limit: 1_000_000,
        ..Default::default()
    });
    let id = installed(&r);
    let err = r.update_call(id, user(), "spin", vec![]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(
        err.message
            .contains("Canister exceeded the limit of 1000000 instructions for single message execution."),
        "{err}"
    );
    let last = r.last_execution(id, "canister_update spin").unwrap();
    assert_eq!(last.instructions, 1_000_000);
    assert!(last.outcome.is_err());
}

#[test]
fn install_code_has_its_own_instruction_limit() {
    let r = Replica::with_config(ReplicaConfig {
        install_instruction_limit: 500_000,
        ..Default::default()
    });
    let id = r.create_canister();
    let m = module_with(r#"(func (export "canister_init") (loop $l (br $l)))"#);
    let err = r
        .install_code(None, ic00::CanisterInstallMode::Install, id, m, vec![])
        .unwrap_err();
    assert!(err.message.contains("limit of 500000 instructions"), "{err}");
}

/// An update per System API cost: `name` runs its calls and replies with nothing.
fn metered_module() -> Vec<u8> {
    module_with(
        r#"
        (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
        (import "ic0" "stable64_write" (func $write (param i64 i64 i64)))
        (import "ic0" "stable64_read" (func $read (param i64 i64 i64)))
        (import "ic0" "stable64_size" (func $size (result i64)))
        (import "ic0" "time" (func $time (result i64)))
        (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
        (import "ic0" "msg_reply" (func $reply))
        (memory 2)
        (func (export "canister_init") (drop (call $grow (i64.const 2))))
        (func (export "canister_update write_64k") (call $write (i64.const 0) (i64.const 0) (i64.const 65536)) (call $reply))
        (func (export "canister_update write_128k") (call $write (i64.const 0) (i64.const 0) (i64.const 131072)) (call $reply))
        (func (export "canister_update read_64k") (call $read (i64.const 0) (i64.const 0) (i64.const 65536)) (call $reply))
        (func (export "canister_update read_128k") (call $read (i64.const 0) (i64.const 0) (i64.const 131072)) (call $reply))
        (func (export "canister_update reply_1k") (call $append (i32.const 0) (i32.const 1000)) (call $reply))
        (func (export "canister_update reply_2k") (call $append (i32.const 0) (i32.const 2000)) (call $reply))
        (func (export "canister_update reply_4k") (call $append (i32.const 0) (i32.const 4000)) (call $reply))
        (func (export "canister_update size") (drop (call $size)) (call $reply))
        (func (export "canister_update time") (drop (call $time)) (call $reply))
        "#,
    )
}

/// Instructions of one update call to the canister `id` with the module above.
fn instructions_of(r: &Replica, id: Principal, method: &str) -> u64 {
    r.update_call(id, user(), method, vec![]).unwrap();
    r.last_execution(id, &format!("canister_update {method}"))
        .unwrap()
        .instructions
}

#[test]
fn system_api_calls_cost_what_the_ic_charges() {
    let r = Replica::new();
    let id = r.create_canister_with_settings(Some(user()), None);
    r.install_canister(id, metered_module(), vec![], Some(user()));
    let cost = |method: &str| instructions_of(&r, id, method);
    // Each pair runs the same wasm; only the System API charge differs.
    assert_eq!(
        cost("write_128k") - cost("write_64k"),
        65_536,
        "stable64_write: one instruction per byte"
    );
    assert_eq!(
        cost("read_128k") - cost("read_64k"),
        65_536,
        "stable64_read: one instruction per byte"
    );
    assert_eq!(
        cost("reply_2k") - cost("reply_1k"),
        50_000,
        "msg_reply_data_append: 50 per byte sent"
    );
    assert_eq!(
        cost("time") - cost("size"),
        480,
        "overheads: time 500, stable64_size 20"
    );
}

#[test]
fn system_api_charges_count_against_the_instruction_limit() {
    let r = Replica::with_config(ReplicaConfig {
        update_instruction_limit: 100_000,
        ..Default::default()
    });
    let id = r.create_canister_with_settings(Some(user()), None);
    r.install_canister(id, metered_module(), vec![], Some(user()));
    assert!(r.update_call(id, user(), "reply_1k", vec![]).is_ok());
    let err = r.update_call(id, user(), "reply_4k", vec![]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(
        err.message.contains("exceeded the limit of 100000 instructions"),
        "{err}"
    );
    assert_eq!(
        r.last_execution(id, "canister_update reply_4k").unwrap().instructions,
        100_000
    );
}

#[test]
fn performance_counter_counts_this_message_and_executions_are_recorded() {
    let r = Replica::new();
    let id = installed(&r);
    let small = u64_of(&r.update_call(id, user(), "perf", 10u32.to_le_bytes().to_vec()).unwrap());
    let big = u64_of(
        &r.update_call(id, user(), "perf", 10_000u32.to_le_bytes().to_vec())
            .unwrap(),
    );
    assert!(small > 0 && big > small + 10_000, "{small} {big}");
    let last = r.last_execution(id, "canister_update perf").unwrap();
    assert!(last.instructions >= big);
    assert_eq!(last.outcome, Ok(()));
}

// ---- 5. Calls ----

#[test]
fn rejects_reach_the_reject_callback_with_code_and_message() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let missing = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 99, 1, 1]);
    let empty = r.create_canister();
    let cases = [
        (b, "reject", 4u8, "boom".to_string()),
        (missing, "echo", 3, format!("Canister {missing} not found")),
        (b, "nope", 5, "Canister has no update method 'nope'".into()),
        (empty, "echo", 5, "contains no Wasm module".into()),
    ];
    for (callee, method, code, text) in cases {
        let reply = r
            .update_call(a, user(), "call", call_arg(0, callee, method, &[]))
            .unwrap();
        assert_eq!(
            &reply[..2],
            &[b'J', code],
            "{method}: {}",
            String::from_utf8_lossy(&reply)
        );
        assert!(
            String::from_utf8_lossy(&reply[2..]).contains(&text),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
    r.stop_canister(b, Some(user())).unwrap();
    let reply = r.update_call(a, user(), "call", call_arg(0, b, "echo", &[])).unwrap();
    assert_eq!(&reply[..2], &[b'J', 5]);
    assert!(String::from_utf8_lossy(&reply).contains(&format!("Canister {b} is stopped")));
}

#[test]
fn a_message_that_never_replies_is_rejected() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r.update_call(id, user(), "no_reply", vec![]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert_eq!(err.message, format!("Canister {id} did not produce a response"));
    assert_eq!(query_u64(&r, id, "get"), 1, "its state changes are kept");
}

#[test]
fn msg_reject_reaches_the_caller_as_canister_reject() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r.update_call(id, user(), "reject", vec![]).unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (RejectCode::CanisterReject, "boom"));
}

#[test]
fn unknown_method_is_rejected() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r.update_call(id, user(), "nope", vec![]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(err.message.contains("Canister has no update method 'nope'"), "{err}");
    let err = r.query_call(id, user(), "inc", vec![]).unwrap_err();
    assert!(err.message.contains("Canister has no query method 'inc'"), "{err}");
}

#[test]
fn cleanup_runs_when_a_callback_traps() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let err = r
        .update_call(a, user(), "call", call_arg(1 | 2, b, "echo", b"x"))
        .unwrap_err();
    assert!(err.message.contains("'boom'"), "{err}");
    assert_eq!(query_u64(&r, a, "cleanups"), 1);
    assert_eq!(
        query_u64(&r, a, "get"),
        0,
        "the trapping callback's changes are rolled back"
    );
    assert_eq!(r.last_execution(a, "cleanup callback").unwrap().outcome, Ok(()));
}

#[test]
fn self_calls_work() {
    let r = Replica::new();
    let a = installed(&r);
    let reply = r.update_call(a, user(), "call", call_arg(0, a, "inc", &[])).unwrap();
    assert_eq!(reply, [b"R".as_slice(), &1u64.to_le_bytes()].concat());
}

#[test]
fn bounded_wait_calls_time_out_with_sys_unknown() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    r.delay_responses(a, 50);
    let before = r.time_nanos();
    let reply = r.update_call(a, user(), "call", call_arg(4, b, "echo", b"x")).unwrap();
    assert_eq!(&reply[..2], &[b'J', 6], "{}", String::from_utf8_lossy(&reply));
    assert!(r.time_nanos() - before >= 10_000_000_000);
    // The late real reply is dropped: the context was answered once.
    r.delay_responses(a, 0);
    r.tick_n(60);
    assert_eq!(r.open_call_contexts(a), 0);
}

#[test]
fn payload_limits_are_enforced() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r
        .update_call(id, user(), "big_reply", (2 * 1024 * 1024 + 1u32).to_le_bytes().to_vec())
        .unwrap_err();
    assert!(err.message.contains("cannot be larger than 2097152"), "{err}");
    assert!(r
        .update_call(id, user(), "big_reply", (2 * 1024 * 1024u32).to_le_bytes().to_vec())
        .is_ok());
    let err = r.update_call(id, user(), "big_call", vec![]).unwrap_err();
    assert!(err.message.contains("cannot be larger than 10485760"), "{err}");
}

// ---- 6. Management canister ----

#[test]
fn canisters_create_canisters_and_management_replies_take_a_round() {
    let r = Replica::new();
    let a = installed(&r);
    let arg = ic00::CreateCanisterArgs {
        settings: None,
        sender_canister_version: None,
    };
    let before = r.round();
    let reply = management_call(&r, a, 128, "create_canister", &arg);
    assert_eq!(reply[0], b'R');
    assert_eq!(r.round() - before, 3);
    let created: ic00::CanisterIdRecord = candid::decode_one(&reply[1..]).unwrap();
    assert_eq!(r.controllers(created.canister_id), vec![a]);
    assert_eq!(
        r.cycle_balance(created.canister_id),
        100_000_000_000,
        "the attached 600B cycles minus the 500B creation fee become the balance"
    );
    let calls = r.management_calls_by(a);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].method.as_str(), calls[0].round, calls[0].outcome.clone()),
        ("create_canister", before + 2, Some(Ok(())))
    );
}

#[test]
fn upgrade_follows_the_spec() {
    let r = Replica::new();
    let id = installed(&r);
    for _ in 0..3 {
        r.update_call(id, user(), "inc", vec![]).unwrap();
    }
    let due = r.time_nanos() + 1_000_000_000_000;
    r.update_call(id, user(), "set_timer", due.to_le_bytes().to_vec())
        .unwrap();
    let version = r.canister_version(id);
    r.upgrade_canister(id, gzip(&wasm()), vec![], Some(user())).unwrap();
    assert_eq!(
        query_u64(&r, id, "get"),
        3,
        "pre_upgrade saved it, post_upgrade restored it"
    );
    assert_eq!(query_u64(&r, id, "get_global"), 0, "new instance, fresh globals");
    assert_eq!(query_u64(&r, id, "upgraded"), 1);
    assert_eq!(
        query_u64(&r, id, "init_arg_len"),
        0,
        "canister_init is not run on upgrade"
    );
    assert_eq!(r.logs(id), vec!["init", "post_upgrade"]);
    assert_eq!(r.global_timer(id), 0, "the global timer is cleared");
    assert_eq!(r.canister_version(id), version + 1);
    assert_eq!(query_u64(&r, id, "version"), version + 1);
}

#[test]
fn a_trap_anywhere_in_an_upgrade_rolls_it_back() {
    for entry in ["canister_pre_upgrade", "canister_post_upgrade"] {
        let r = Replica::new();
        let id = installed(&r);
        r.update_call(id, user(), "inc", vec![]).unwrap();
        r.update_call(id, user(), "stable_put", b"keepme".to_vec()).unwrap();
        let due = r.time_nanos() + 1_000_000_000_000;
        r.update_call(id, user(), "set_timer", due.to_le_bytes().to_vec())
            .unwrap();
        let (hash, version) = (r.module_hash(id), r.canister_version(id));
        r.fail_next_execution(id, entry);
        let err = r.upgrade_canister(id, gzip(&wasm()), vec![], Some(user())).unwrap_err();
        assert_eq!(err.code, RejectCode::CanisterError);
        assert!(err.message.contains(entry), "{err}");
        assert_eq!(r.module_hash(id), hash);
        assert_eq!(r.canister_version(id), version);
        assert_eq!(r.global_timer(id), due);
        assert_eq!(query_u64(&r, id, "get_global"), 1, "the old heap and globals are back");
        assert_eq!(query_u64(&r, id, "upgraded"), 0);
        assert_eq!(r.read_stable_memory(id, 0, 6), b"keepme");
        assert_eq!(r.stable_memory_pages(id).0, 1);
    }
}

#[test]
fn skip_pre_upgrade_and_keep_option() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "inc", vec![]).unwrap();
    let mode = ic00::CanisterInstallMode::Upgrade(Some(ic00::UpgradeFlags {
        skip_pre_upgrade: Some(true),
        wasm_memory_persistence: None,
    }));
    r.install_code(Some(user()), mode, id, wasm(), vec![]).unwrap();
    assert_eq!(
        query_u64(&r, id, "get"),
        0,
        "pre_upgrade was skipped, so nothing was saved"
    );
    let keep = ic00::CanisterInstallMode::Upgrade(Some(ic00::UpgradeFlags {
        skip_pre_upgrade: None,
        wasm_memory_persistence: Some(ic00::WasmMemoryPersistence::Keep),
    }));
    let err = r.install_code(Some(user()), keep, id, wasm(), vec![]).unwrap_err();
    assert!(
        err.message
            .contains("requires that the new canister module supports enhanced orthogonal persistence"),
        "{err}"
    );
}

#[test]
fn install_requires_an_empty_canister_and_reinstall_wipes_stable_memory() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "stable_put", b"x".to_vec()).unwrap();
    let err = r
        .install_code(Some(user()), ic00::CanisterInstallMode::Install, id, wasm(), vec![])
        .unwrap_err();
    assert!(err.message.contains("not empty"), "{err}");
    r.reinstall_canister(id, wasm(), vec![1], Some(user())).unwrap();
    assert_eq!(r.stable_memory_pages(id), (0, 0));
    assert_eq!(query_u64(&r, id, "init_arg_len"), 1);
}

#[test]
fn controllers_only_methods_reject_others() {
    let r = Replica::new();
    let id = installed(&r);
    let stranger = Principal::from_slice(&[9; 29]);
    let err = r.upgrade_canister(id, wasm(), vec![], Some(stranger)).unwrap_err();
    assert_eq!(
        err.message,
        format!("Only controllers of canister {id} can call ic00 method install_code")
    );
    let err = r.stop_canister(id, Some(stranger)).unwrap_err();
    assert!(err.message.contains("ic00 method stop_canister"), "{err}");
    assert!(r.canister_status(id, Some(stranger)).is_err());
}

#[test]
fn stop_waits_for_open_call_contexts_and_rejects_new_calls() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    r.delay_responses(a, 10);
    let call = r.submit_call(a, user(), "call", call_arg(0, b, "echo", b"x")).unwrap();
    r.tick_n(2);
    assert_eq!(r.open_call_contexts(a), 1);
    let stop = r
        .submit_call(
            Principal::management_canister(),
            user(),
            "stop_canister",
            candid::encode_one(ic00::CanisterIdRecord { canister_id: a }).unwrap(),
        )
        .unwrap();
    r.tick();
    assert_eq!(r.status(a), CanisterStatus::Stopping);
    let err = r.update_call(a, user(), "inc", vec![]).unwrap_err();
    assert_eq!((err.code, err.error_code), (RejectCode::CanisterError, Some("IC0509")));
    assert!(err.message.contains("is stopping"));
    assert_eq!(
        r.await_call(call).unwrap(),
        b"Rx",
        "responses are still delivered while stopping"
    );
    r.await_call(stop).unwrap();
    assert_eq!(r.status(a), CanisterStatus::Stopped);
    let err = r.update_call(a, user(), "inc", vec![]).unwrap_err();
    assert_eq!(err.error_code, Some("IC0508"));
    r.stop_canister(a, Some(user()))
        .expect("stopping a stopped canister succeeds");
}

#[test]
fn stop_times_out_with_sys_transient_and_start_cancels_stops() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    r.delay_responses(a, 1000);
    r.submit_call(a, user(), "call", call_arg(0, b, "echo", b"x")).unwrap();
    r.tick_n(2);
    let before = r.time_nanos();
    let err = r.stop_canister(a, Some(user())).unwrap_err();
    assert_eq!((err.code, err.error_code), (RejectCode::SysTransient, Some("IC0206")));
    assert!(r.time_nanos() - before >= 300_000_000_000);
    assert_eq!(r.status(a), CanisterStatus::Stopping);
    let pending = r
        .submit_call(
            Principal::management_canister(),
            user(),
            "stop_canister",
            candid::encode_one(ic00::CanisterIdRecord { canister_id: a }).unwrap(),
        )
        .unwrap();
    r.tick();
    r.start_canister(a, Some(user())).unwrap();
    let err = r.await_call(pending).unwrap_err();
    assert_eq!(err.error_code, Some("IC0511"), "CanisterStoppingCancelled");
    assert_eq!(r.status(a), CanisterStatus::Running);
}

#[test]
fn canister_status_encodes_the_full_result_and_minimal_clients_decode_it() {
    #[derive(CandidType, Deserialize)]
    struct Minimal {
        status: ic00::CanisterStatusType,
        module_hash: Option<Vec<u8>>,
    }
    let r = Replica::new();
    let id = installed(&r);
    let full = r.canister_status(id, Some(user())).unwrap();
    assert_eq!(full.status, ic00::CanisterStatusType::Running);
    assert_eq!(full.module_hash, r.module_hash(id).map(|h| h.to_vec()));
    assert_eq!(full.settings.controllers, vec![user()]);
    assert_eq!(full.cycles, candid::Nat::from(r.cycle_balance(id)));
    assert!(full.memory_size > 65536u32);
    let min: Minimal = r
        .update(
            Principal::management_canister(),
            user(),
            "canister_status",
            &ic00::CanisterIdRecord { canister_id: id },
        )
        .unwrap();
    assert_eq!(min.status, ic00::CanisterStatusType::Running);
    assert_eq!(min.module_hash, full.module_hash);
}

#[test]
fn update_settings_changes_controllers() {
    let r = Replica::new();
    let id = installed(&r);
    let other = Principal::from_slice(&[3; 29]);
    r.update_settings(
        id,
        Some(user()),
        ic00::CanisterSettings {
            controllers: Some(vec![other]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.controllers(id), vec![other]);
    assert!(r.stop_canister(id, Some(user())).is_err());
}

#[test]
fn delete_requires_a_stopped_canister() {
    let r = Replica::new();
    let id = installed(&r);
    let err = r.delete_canister(id, Some(user())).unwrap_err();
    assert!(err.message.contains("must be stopped"), "{err}");
    r.stop_canister(id, Some(user())).unwrap();
    r.delete_canister(id, Some(user())).unwrap();
    assert!(!r.canister_exists(id));
    let err = r.update_call(id, user(), "inc", vec![]).unwrap_err();
    assert_eq!(err.code, RejectCode::DestinationInvalid);
}

#[test]
fn deposit_cycles_and_raw_rand() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let (ba, bb) = (r.cycle_balance(a), r.cycle_balance(b));
    let arg = ic00::CanisterIdRecord { canister_id: b };
    let reply = management_call(&r, a, 16, "deposit_cycles", &arg);
    assert_eq!(reply[0], b'R');
    assert_eq!(r.cycle_balance(b), bb + 1000, "b gets the 1,000 and pays nothing");
    assert!(ba - r.cycle_balance(a) > 1000, "a gave 1,000 and paid fees");
    let arg = candid::encode_args(()).unwrap();
    let reply = r
        .update_call(
            a,
            user(),
            "call",
            call_arg(0, Principal::management_canister(), "raw_rand", &arg),
        )
        .unwrap();
    let bytes: serde_bytes::ByteBuf = candid::decode_one(&reply[1..]).unwrap();
    assert_eq!(bytes.len(), 32);
}

#[test]
fn uninstall_rejects_open_call_contexts() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    r.delay_responses(a, 10);
    let call = r.submit_call(a, user(), "call", call_arg(0, b, "echo", b"x")).unwrap();
    r.tick_n(2);
    r.uninstall_canister(a, Some(user())).unwrap();
    let err = r.await_call(call).unwrap_err();
    assert!(err.message.contains("uninstalled"), "{err}");
    assert_eq!(r.module_hash(a), None);
    assert_eq!(r.open_call_contexts(a), 0);
}

// ---- 7. Test API: records, faults, logs ----

#[test]
fn fault_injection_traps_rejects_and_drains() {
    let r = Replica::new();
    let a = installed(&r);
    r.fail_next_execution(a, "canister_update inc");
    assert_eq!(r.pending_faults(), [format!("{a} canister_update inc (trap)")]);
    let err = r.update_call(a, user(), "inc", vec![]).unwrap_err();
    assert!(r.pending_faults().is_empty(), "a fired fault is no longer pending");
    assert!(err.message.contains("injected fault"), "{err}");
    assert_eq!(
        u64_of(&r.update_call(a, user(), "inc", vec![]).unwrap()),
        1,
        "only the next execution fails"
    );

    r.reject_next_call(a, "stop_canister", RejectCode::SysTransient, "try later");
    assert_eq!(r.pending_faults(), [format!("{a} stop_canister (reject)")]);
    let err = r.stop_canister(a, Some(user())).unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (RejectCode::SysTransient, "try later")
    );
    assert_eq!(r.status(a), CanisterStatus::Running);

    r.reject_next_call(a, "inc", RejectCode::SysFatal, "nope");
    assert_eq!(
        r.update_call(a, user(), "inc", vec![]).unwrap_err().code,
        RejectCode::SysFatal
    );

    r.drain_cycles(a);
    let err = r.update_call(a, user(), "inc", vec![]).unwrap_err();
    assert_eq!(err.error_code, Some("IC0207"));
    let calls = r.management_calls_by(user());
    assert_eq!(calls.last().unwrap().method, "stop_canister");
    assert_eq!(calls.last().unwrap().target, Some(a));
}

#[test]
fn debug_print_is_captured_per_canister() {
    let r = Replica::new();
    let _guard = r.print_logs_on_panic();
    let a = installed(&r);
    let b = r.create_canister();
    assert_eq!(r.logs(a), vec!["init"]);
    assert!(r.logs(b).is_empty());
}

// ---- 8. Determinism ----

#[test]
fn same_inputs_give_same_outputs_rounds_times_and_instructions() {
    fn script() -> (Vec<replica::ExecutionRecord>, u64, u64, Vec<u8>) {
        let r = Replica::new();
        let a = installed(&r);
        let b = installed(&r);
        let reply = r.update_call(a, user(), "call", call_arg(0, b, "echo", b"hi")).unwrap();
        r.update_call(a, user(), "perf", 1000u32.to_le_bytes().to_vec())
            .unwrap();
        (r.executions(), r.round(), r.time_nanos(), reply)
    }
    let first = script();
    assert_eq!(first, script());
    assert_eq!(first.2, replica::DEFAULT_START_TIME_NANOS + first.1 * 1_000_000_000);
}

// ---- P2 ----

#[test]
fn install_chunked_code_from_a_store_canister() {
    let r = Replica::new();
    let store = r.create_canister_with_settings(Some(user()), None);
    let target = r.create_canister_with_settings(Some(user()), None);
    let gz = gzip(&wasm());
    let (c1, c2) = gz.split_at(gz.len() / 2);
    let mut hashes = vec![];
    for chunk in [c1, c2] {
        let h: ic00::ChunkHash = r
            .update(
                Principal::management_canister(),
                user(),
                "upload_chunk",
                &ic00::UploadChunkArgs {
                    canister_id: store,
                    chunk: chunk.to_vec(),
                },
            )
            .unwrap();
        hashes.push(h);
    }
    let stored: Vec<ic00::ChunkHash> = r
        .update(
            Principal::management_canister(),
            user(),
            "stored_chunks",
            &ic00::CanisterIdRecord { canister_id: store },
        )
        .unwrap();
    assert_eq!(stored.len(), 2);
    let mut args = ic00::InstallChunkedCodeArgs {
        mode: ic00::CanisterInstallMode::Install,
        target_canister: target,
        store_canister: Some(store),
        chunk_hashes_list: hashes,
        wasm_module_hash: vec![0; 32],
        arg: vec![],
        sender_canister_version: None,
    };
    let err = r
        .update_call(
            Principal::management_canister(),
            user(),
            "install_chunked_code",
            candid::encode_one(&args).unwrap(),
        )
        .unwrap_err();
    assert!(err.message.contains("hash mismatch"), "{err}");
    args.wasm_module_hash = Sha256::digest(&gz).to_vec();
    r.update_call(
        Principal::management_canister(),
        user(),
        "install_chunked_code",
        candid::encode_one(&args).unwrap(),
    )
    .unwrap();
    assert_eq!(r.module_hash(target).map(|h| h.to_vec()), Some(args.wasm_module_hash));
    let _: () = r
        .update(
            Principal::management_canister(),
            user(),
            "clear_chunk_store",
            &ic00::CanisterIdRecord { canister_id: store },
        )
        .unwrap();
}

#[test]
fn canister_info_reports_hash_controllers_and_changes() {
    let r = Replica::new();
    let id = installed(&r);
    r.upgrade_canister(id, wasm(), vec![], Some(user())).unwrap();
    let info: ic00::CanisterInfoResult = r
        .update(
            Principal::management_canister(),
            user(),
            "canister_info",
            &ic00::CanisterInfoArgs {
                canister_id: id,
                num_requested_changes: Some(2),
            },
        )
        .unwrap();
    assert_eq!(info.total_num_changes, 3);
    assert_eq!(info.controllers, vec![user()]);
    assert_eq!(info.module_hash, r.module_hash(id).map(|h| h.to_vec()));
    assert!(matches!(
        info.recent_changes.last().unwrap().details,
        Some(ic00::ChangeDetails::CodeDeployment(ic00::CodeDeploymentRecord {
            mode: ic00::CodeDeploymentMode::Upgrade,
            ..
        }))
    ));
}

#[test]
fn snapshots_take_list_load_delete() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "inc", vec![]).unwrap();
    r.update_call(id, user(), "stable_put", b"v1".to_vec()).unwrap();
    let set_timer = |due: u64| {
        r.update_call(id, user(), "set_timer", due.to_le_bytes().to_vec())
            .unwrap()
    };
    let (timer_at_take, timer_now) = (r.time_nanos() + 1_000_000_000_000, r.time_nanos() + 2_000_000_000_000);
    set_timer(timer_at_take);
    let snap: ic00::Snapshot = r
        .update(
            Principal::management_canister(),
            user(),
            "take_canister_snapshot",
            &ic00::TakeCanisterSnapshotArgs {
                canister_id: id,
                replace_snapshot: None,
                uninstall_code: None,
                sender_canister_version: None,
            },
        )
        .unwrap();
    r.update_call(id, user(), "inc", vec![]).unwrap();
    r.update_call(id, user(), "stable_put", b"v2".to_vec()).unwrap();
    set_timer(timer_now);
    let list: Vec<ic00::Snapshot> = r
        .update(
            Principal::management_canister(),
            user(),
            "list_canister_snapshots",
            &ic00::CanisterIdRecord { canister_id: id },
        )
        .unwrap();
    assert_eq!(list, vec![snap.clone()]);
    let _: () = r
        .update(
            Principal::management_canister(),
            user(),
            "load_canister_snapshot",
            &ic00::LoadCanisterSnapshotArgs {
                canister_id: id,
                snapshot_id: snap.id.clone(),
                sender_canister_version: None,
            },
        )
        .unwrap();
    assert_eq!(query_u64(&r, id, "get"), 1);
    assert_eq!(r.read_stable_memory(id, 0, 2), b"v1");
    // The IC keeps the current global timer when it loads a snapshot taken with take_canister_snapshot
    // (canister_manager.rs `load_canister_snapshot`; only uploaded snapshots restore theirs).
    assert_eq!(r.global_timer(id), timer_now);
    let _: () = r
        .update(
            Principal::management_canister(),
            user(),
            "delete_canister_snapshot",
            &ic00::DeleteCanisterSnapshotArgs {
                canister_id: id,
                snapshot_id: snap.id,
            },
        )
        .unwrap();
    let list: Vec<ic00::Snapshot> = r
        .update(
            Principal::management_canister(),
            user(),
            "list_canister_snapshots",
            &ic00::CanisterIdRecord { canister_id: id },
        )
        .unwrap();
    assert!(list.is_empty());
}

#[test]
fn modules_are_compiled_once_per_distinct_module() {
    let r = Replica::new();
    for _ in 0..3 {
        installed(&r);
    }
    assert_eq!(r.compiled_modules(), 1);
}
