//! Spec rules the replica used to get wrong, each pinned against the spec or the IC's source.

mod common;

use candid::{Nat, Principal};
use common::*;
use replica::{ic00, RejectCode, Replica, ReplicaConfig};

fn settings(controllers: Vec<Principal>) -> ic00::CanisterSettings {
    ic00::CanisterSettings {
        controllers: Some(controllers),
        ..Default::default()
    }
}

/// canister_info as a canister calls it (the spec: only canisters may).
fn canister_info(r: &Replica, from: Principal, id: Principal) -> ic00::CanisterInfoResult {
    let arg = ic00::CanisterInfoArgs {
        canister_id: id,
        num_requested_changes: Some(20),
    };
    let reply = management_call(r, from, 0, "canister_info", &arg);
    assert_eq!(reply[0], b'R', "{}", String::from_utf8_lossy(&reply));
    candid::decode_one(&reply[1..]).unwrap()
}

// ---- canister_version ----

#[test]
fn canister_version_goes_up_after_every_successful_non_query_execution() {
    // dfinity/ic rs/embedders/src/wasmtime_embedder/system_api.rs (take_system_state_modifications): an update, a
    // replicated query, a system task, a reply/reject callback and a cleanup bump the version when they do not
    // trap; install_code bumps it once; non-replicated queries never.
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let v = r.canister_version(a);
    r.update_call(a, user(), "inc", vec![]).unwrap();
    assert_eq!(r.canister_version(a), v + 1);
    assert_eq!(query_u64(&r, a, "version"), v + 1, "the canister sees it");
    query_u64(&r, a, "get");
    assert_eq!(r.canister_version(a), v + 1, "a query changes nothing");
    r.update_call(a, user(), "inc_then_trap", vec![]).unwrap_err();
    assert_eq!(r.canister_version(a), v + 1, "a trap changes nothing");
    r.update_call(a, user(), "query_inc", vec![]).unwrap();
    assert_eq!(r.canister_version(a), v + 2, "a replicated query counts");
    let vb = r.canister_version(b);
    r.update_call(a, user(), "call", call_arg(0, b, "echo", b"x")).unwrap();
    assert_eq!(r.canister_version(a), v + 4, "the call and its reply callback");
    assert_eq!(r.canister_version(b), vb + 1);
    // The timer: set_timer, then the timer task, its self-call to inc, and the callback of that call.
    r.update_call(a, user(), "set_timer", r.time_nanos().to_le_bytes().to_vec())
        .unwrap();
    r.tick();
    assert_eq!(r.canister_version(a), v + 8);
}

// ---- canister history and controllers ----

fn principal(byte: u8) -> Principal {
    Principal::from_slice(&[byte; 29])
}

#[test]
fn create_with_controllers_writes_one_creation_record_with_the_senders_version() {
    // Spec "IC method canister_info" / abstract behaviour of create_canister: one `creation` record holding the
    // resulting controllers; the origin records the sender_canister_version the calling canister passed.
    let r = Replica::new();
    let a = installed(&r);
    let z = principal(0xff);
    let arg = ic00::CreateCanisterArgs {
        settings: Some(settings(vec![z, a])),
        sender_canister_version: Some(42),
    };
    let reply = management_call(&r, a, 128, "create_canister", &arg);
    let created: ic00::CanisterIdRecord = candid::decode_one(&reply[1..]).unwrap();
    let id = created.canister_id;
    r.add_cycles(id, 1_000_000_000_000); // 100B came with it; an install prepays 300B
    let info = canister_info(&r, a, id);
    assert_eq!(info.total_num_changes, 1);
    let sorted = vec![a, z];
    assert_eq!(info.controllers, sorted);
    let change = &info.recent_changes[0];
    assert_eq!(change.canister_version, 0);
    assert_eq!(
        change.origin,
        ic00::ChangeOrigin::FromCanister(ic00::FromCanisterRecord {
            canister_id: a,
            canister_version: Some(42),
        })
    );
    assert_eq!(
        change.details,
        Some(ic00::ChangeDetails::Creation(ic00::CreationRecord {
            controllers: sorted,
            environment_variables_hash: None,
        }))
    );
    // install_code from A with its version: the code_deployment record's origin carries it.
    let install = ic00::InstallCodeArgs {
        mode: ic00::CanisterInstallMode::Install,
        canister_id: id,
        wasm_module: module_with(""),
        arg: vec![],
        sender_canister_version: Some(7),
    };
    assert_eq!(management_call(&r, a, 0, "install_code", &install)[0], b'R');
    let info = canister_info(&r, a, id);
    assert_eq!(info.total_num_changes, 2);
    assert_eq!(
        info.recent_changes[1].origin,
        ic00::ChangeOrigin::FromCanister(ic00::FromCanisterRecord {
            canister_id: a,
            canister_version: Some(7),
        })
    );
}

#[test]
fn controllers_are_a_set_reported_sorted_everywhere() {
    let r = Replica::new();
    let id = installed(&r);
    let (hi, lo) = (principal(0xee), principal(0x01));
    r.update_settings(id, Some(user()), settings(vec![hi, lo, hi, user()]))
        .unwrap();
    let sorted = vec![lo, user(), hi];
    assert_eq!(r.controllers(id), sorted);
    let status = r.canister_status(id, Some(lo)).unwrap();
    assert_eq!(status.settings.controllers, sorted);
    let a = r.create_canister_with_settings(Some(user()), None);
    r.update_settings(id, Some(lo), settings(vec![lo, user(), hi, a]))
        .unwrap();
    let caller = installed(&r);
    let info = canister_info(&r, caller, id);
    let Some(ic00::ChangeDetails::ControllersChange(change)) = &info.recent_changes.last().unwrap().details else {
        panic!("{info:?}");
    };
    let mut expected = vec![lo, user(), hi, a];
    expected.sort();
    assert_eq!(change.controllers, expected);
    assert_eq!(info.controllers, expected);
}

// ---- errors ----

#[test]
fn a_trap_in_a_callback_and_in_its_cleanup_reports_both() {
    // HypervisorError::Cleanup: "{callback_err}\n\ncall_on_cleanup also failed:\n\n{cleanup_err}", with the
    // callback error's code; its error help is empty, so no trailing period.
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let err = r
        .update_call(a, user(), "call_cleanup_traps", call_arg(1 | 2, b, "echo", b"x"))
        .unwrap_err();
    assert_eq!((err.code, err.error_code), (RejectCode::CanisterError, Some("IC0503")));
    assert_eq!(
        err.message,
        format!(
            "Error from Canister {a}: Canister called `ic0.trap` with message: 'boom'\n\ncall_on_cleanup also \
             failed:\n\nCanister called `ic0.trap` with message: 'cleanup boom'"
        )
    );
}

#[test]
fn traps_carry_the_ics_error_codes() {
    // HypervisorError::into_user_error: Trapped → IC0502, CalledTrap → IC0503, contract violations → IC0504,
    // InstructionLimitExceeded → IC0522.
    let r = Replica::with_config(ReplicaConfig {
        update_instruction_limit: 1_000_000,
        ..Default::default()
    });
    let id = installed(&r);
    let code = |method: &str| r.update_call(id, user(), method, vec![]).unwrap_err().error_code;
    assert_eq!(code("inc_then_trap"), Some("IC0503"));
    assert_eq!(code("reply_twice"), Some("IC0504"));
    assert_eq!(code("spin"), Some("IC0522"));
    let unreachable = r.create_canister_with_settings(Some(user()), None);
    r.install_canister(
        unreachable,
        module_with(r#"(func (export "canister_update u") unreachable)"#),
        vec![],
        Some(user()),
    );
    let err = r.update_call(unreachable, user(), "u", vec![]).unwrap_err();
    assert_eq!(err.error_code, Some("IC0502"));
    assert_eq!(
        err.message,
        format!("Error from Canister {unreachable}: Canister trapped: unreachable.")
    );
}

#[test]
fn management_rejects_carry_the_ics_error_codes() {
    let r = Replica::new();
    let id = installed(&r);
    // InvalidManagementPayload (IC0408) and UnknownManagementMessage (IC0407) are CANISTER_REJECT.
    let err = r
        .update_call(
            Principal::management_canister(),
            user(),
            "install_code",
            b"garbage".to_vec(),
        )
        .unwrap_err();
    assert_eq!((err.code, err.error_code), (RejectCode::CanisterReject, Some("IC0408")));
    let err = r
        .update_call(
            Principal::management_canister(),
            user(),
            "nope",
            candid::encode_args(()).unwrap(),
        )
        .unwrap_err();
    assert_eq!((err.code, err.error_code), (RejectCode::CanisterReject, Some("IC0407")));
    assert_eq!(err.message, "Management canister has no method 'nope'");
    // CanisterNonEmpty (IC0514); deleting a running canister: CanisterNotStopped (IC0510).
    let err = r
        .install_code(Some(user()), ic00::CanisterInstallMode::Install, id, wasm(), vec![])
        .unwrap_err();
    assert_eq!(err.error_code, Some("IC0514"));
    let err = r.delete_canister(id, Some(user())).unwrap_err();
    assert_eq!(err.error_code, Some("IC0510"));
}

// ---- settings: logs and environment variables ----

/// `env`: replies count (u32), the name at index 0, and the value of "B", each as len (u32) ++ bytes;
/// `env_exists_c` replies whether "C" exists; `env_out_of_bounds` asks for the name of variable 5.
const ENV_MODULE: &str = r#"
  (import "ic0" "env_var_count" (func $count (result i32)))
  (import "ic0" "env_var_name_size" (func $name_size (param i32) (result i32)))
  (import "ic0" "env_var_name_copy" (func $name_copy (param i32 i32 i32 i32)))
  (import "ic0" "env_var_name_exists" (func $exists (param i32 i32) (result i32)))
  (import "ic0" "env_var_value_size" (func $value_size (param i32 i32) (result i32)))
  (import "ic0" "env_var_value_copy" (func $value_copy (param i32 i32 i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (data (i32.const 0) "BC")
  (func (export "canister_update env")
    (i32.store (i32.const 100) (call $count))
    (i32.store (i32.const 104) (call $name_size (i32.const 0)))
    (call $name_copy (i32.const 0) (i32.const 108) (i32.const 0) (call $name_size (i32.const 0)))
    (call $append (i32.const 100) (i32.add (i32.const 8) (call $name_size (i32.const 0))))
    (i32.store (i32.const 200) (call $value_size (i32.const 0) (i32.const 1)))
    (call $value_copy (i32.const 0) (i32.const 1) (i32.const 204) (i32.const 0) (i32.load (i32.const 200)))
    (call $append (i32.const 200) (i32.add (i32.const 4) (i32.load (i32.const 200))))
    (call $reply))
  (func (export "canister_query env_exists_c")
    (i32.store (i32.const 300) (call $exists (i32.const 1) (i32.const 1)))
    (call $append (i32.const 300) (i32.const 4))
    (call $reply))
  (func (export "canister_update env_out_of_bounds") (drop (call $name_size (i32.const 5))))
"#;

fn env(vars: &[(&str, &str)]) -> Vec<ic00::EnvironmentVariable> {
    vars.iter()
        .map(|(name, value)| ic00::EnvironmentVariable {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect()
}

#[test]
fn log_settings_and_environment_variables_are_stored_reported_and_readable() {
    let r = Replica::new();
    let id = r.create_canister_with_settings(
        Some(user()),
        Some(ic00::CanisterSettings {
            log_visibility: Some(ic00::LogVisibility::Public),
            log_memory_limit: Some(Nat::from(8192u32)),
            environment_variables: Some(env(&[("B", "2"), ("A", "1")])),
            ..Default::default()
        }),
    );
    r.install_canister(id, module_with(ENV_MODULE), vec![], Some(user()));
    let status = r.canister_status(id, Some(user())).unwrap();
    assert_eq!(status.settings.log_visibility, ic00::LogVisibility::Public);
    assert_eq!(status.settings.log_memory_limit, Nat::from(8192u32));
    assert_eq!(status.settings.environment_variables, env(&[("A", "1"), ("B", "2")]));
    // Names are read in sorted order.
    let reply = r.update_call(id, user(), "env", vec![]).unwrap();
    assert_eq!(
        reply,
        [
            &2u32.to_le_bytes()[..],
            &1u32.to_le_bytes(),
            b"A",
            &1u32.to_le_bytes(),
            b"2"
        ]
        .concat()
    );
    assert_eq!(
        r.query_call(id, user(), "env_exists_c", vec![]).unwrap(),
        0u32.to_le_bytes()
    );
    let err = r.update_call(id, user(), "env_out_of_bounds", vec![]).unwrap_err();
    assert_eq!(err.error_code, Some("IC0504"));
    assert_eq!(
        err.message,
        format!(
            "Error from Canister {id}: Environment variable index 5 is out of bounds. The number of environment \
             variables is 2."
        )
    );
    r.update_settings(
        id,
        Some(user()),
        ic00::CanisterSettings {
            environment_variables: Some(env(&[("C", "3")])),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        r.query_call(id, user(), "env_exists_c", vec![]).unwrap(),
        1u32.to_le_bytes()
    );
}

// ---- composite queries ----

const COMPOSITE: &str = r#"
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "call_new" (func $call_new (param i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "ic0" "call_perform" (func $perform (result i32)))
  (memory 1)
  (func (export "canister_composite_query plain") (call $reply))
  (func (export "canister_composite_query calls")
    (call $call_new (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (drop (call $perform)))
"#;

#[test]
fn composite_queries_run_and_their_calls_are_refused_clearly() {
    let r = Replica::new();
    let id = r.create_canister_with_settings(Some(user()), None);
    r.install_canister(id, module_with(COMPOSITE), vec![], Some(user()));
    assert_eq!(r.query_call(id, user(), "plain", vec![]).unwrap(), Vec::<u8>::new());
    let err = r.query_call(id, user(), "calls", vec![]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(
        err.message.contains("calls from composite queries are not supported"),
        "{err}"
    );
    // In replicated mode a composite query is refused (execution_environment.rs): at ingress and from canisters.
    let err = r.submit_call(id, user(), "plain", vec![]).unwrap_err();
    assert_eq!(err.error_code, Some("IC0527"));
    assert_eq!(err.message, "Composite query cannot be called in replicated mode");
    let a = installed(&r);
    let reply = r.update_call(a, user(), "call", call_arg(0, id, "plain", &[])).unwrap();
    assert_eq!(&reply[..2], &[b'J', RejectCode::CanisterError as u8]);
    assert_eq!(&reply[2..], b"Composite query cannot be called in replicated mode");
}

// ---- threshold-signature costs ----

/// `cost` with argument kind (0 ecdsa, 1 schnorr, 2 vetkd), curve/algorithm (u32) and key name: replies the
/// return code (u32) and the 16 cycle bytes.
const COSTS: &str = r#"
  (import "ic0" "cost_sign_with_ecdsa" (func $ecdsa (param i32 i32 i32 i32) (result i32)))
  (import "ic0" "cost_sign_with_schnorr" (func $schnorr (param i32 i32 i32 i32) (result i32)))
  (import "ic0" "cost_vetkd_derive_key" (func $vetkd (param i32 i32 i32 i32) (result i32)))
  (import "ic0" "msg_arg_data_size" (func $size (result i32)))
  (import "ic0" "msg_arg_data_copy" (func $copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (func (export "canister_query cost") (local $n i32) (local $kind i32) (local $code i32) (local $len i32)
    (local.set $n (call $size))
    (call $copy (i32.const 0) (i32.const 0) (local.get $n))
    (local.set $kind (i32.load8_u (i32.const 0)))
    (local.set $len (i32.sub (local.get $n) (i32.const 5)))
    (if (i32.eqz (local.get $kind))
      (then (local.set $code (call $ecdsa (i32.const 5) (local.get $len) (i32.load (i32.const 1)) (i32.const 104)))))
    (if (i32.eq (local.get $kind) (i32.const 1))
      (then (local.set $code (call $schnorr (i32.const 5) (local.get $len) (i32.load (i32.const 1)) (i32.const 104)))))
    (if (i32.eq (local.get $kind) (i32.const 2))
      (then (local.set $code (call $vetkd (i32.const 5) (local.get $len) (i32.load (i32.const 1)) (i32.const 104)))))
    (i32.store (i32.const 100) (local.get $code))
    (call $append (i32.const 100) (i32.const 20))
    (call $reply))
"#;

#[test]
fn threshold_signature_costs_know_their_curves_and_keys() {
    // system_api.rs: 0 on success, 1 for an unknown curve or algorithm, 2 for a key name the curve does not have;
    // the cost is written only on success. Fees (subnet_config.rs): 10B scaled by the key's subnet: key_1 on the
    // 34-node fiduciary subnet (10B × 34 / 13 = 26,153,846,153), test_key_1 on a 13-node subnet (10B).
    let r = Replica::new();
    let id = r.create_canister_with_settings(Some(user()), None);
    r.install_canister(id, module_with(COSTS), vec![], Some(user()));
    let cost = |kind: u8, curve: u32, key: &str| {
        let arg = [&[kind][..], &curve.to_le_bytes(), key.as_bytes()].concat();
        let reply = r.query_call(id, user(), "cost", arg).unwrap();
        let code = u32::from_le_bytes(reply[..4].try_into().unwrap());
        let cycles = u128::from_le_bytes(reply[4..20].try_into().unwrap());
        (code, cycles)
    };
    for kind in [0, 1, 2] {
        assert_eq!(cost(kind, 0, "key_1"), (0, 26_153_846_153), "kind {kind}");
        assert_eq!(cost(kind, 0, "test_key_1"), (0, 10_000_000_000), "kind {kind}");
        assert_eq!(cost(kind, 0, "no_such_key"), (2, 0), "kind {kind}");
    }
    assert_eq!(cost(1, 1, "key_1"), (0, 26_153_846_153), "schnorr ed25519");
    assert_eq!(cost(0, 1, "key_1"), (1, 0), "ecdsa has one curve");
    assert_eq!(cost(1, 2, "key_1"), (1, 0), "schnorr has two algorithms");
    assert_eq!(cost(2, 1, "key_1"), (1, 0), "vetkd has one curve");
}
