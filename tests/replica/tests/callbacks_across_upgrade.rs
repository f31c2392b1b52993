//! Spec "Canister upgrades" / "Callbacks": a call's reply or reject callback is a (table index, env) pair. Upgrading
//! a canister that awaits a reply does not cancel the call: the response is delivered to the *new* module, which runs
//! whatever function its own table holds at that index with the old env. This is why the parent's `pre_upgrade`
//! refuses an upgrade while it awaits calls (ic-cdk's env is a pointer into the old heap).

use candid::Principal;
use replica::{RejectCode, Replica};

const UNIVERSAL: &str = include_str!("universal.wat");

/// The next module: its table holds, at the index the old module registered its reply callback (0), a function that
/// answers with "new module" and the env it was given.
const NEXT: &str = r#"(module
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (table 1 funcref)
  (elem (i32.const 0) $reply_from_new_module)
  (data (i32.const 0) "new module")
  (func $reply_from_new_module (param $env i32)
    (i32.store (i32.const 100) (local.get $env))
    (call $append (i32.const 0) (i32.const 10))
    (call $append (i32.const 100) (i32.const 4))
    (call $reply)))"#;

/// A next module with no table: the callback index points nowhere.
const NEXT_WITHOUT_TABLE: &str = r#"(module (memory 1))"#;

fn user() -> Principal {
    Principal::from_slice(&[7; 29])
}

/// `caller` calls `callee.inc` (universal.wat's "call": reply callback 0, env 77) and, with the response held back,
/// is upgraded to `next`. Returns the answer to the ingress call that started it all.
fn upgrade_while_awaiting(next: &str) -> Result<Vec<u8>, replica::Reject> {
    let r = Replica::new();
    let universal = wat::parse_str(UNIVERSAL).unwrap();
    let (caller, callee) = (r.create_canister_with_settings(Some(user()), None), r.create_canister());
    r.install_canister(caller, universal.clone(), vec![], Some(user()));
    r.install_canister(callee, universal, vec![], None);
    r.delay_responses(caller, 1_000);
    let mut arg = vec![0, callee.as_slice().len() as u8];
    arg.extend_from_slice(callee.as_slice());
    arg.push(3);
    arg.extend_from_slice(b"inc");
    let ingress = r.submit_call(caller, user(), "call", arg).unwrap();
    r.tick_n(3);
    assert_eq!(r.open_call_contexts(caller), 1, "the call is out, its reply held back");
    r.upgrade_canister(caller, wat::parse_str(next).unwrap(), vec![], Some(user()))
        .expect("upgrade while awaiting");
    r.delay_responses(caller, 0);
    r.tick_n(1_001);
    r.await_call(ingress)
}

#[test]
fn a_reply_reaches_the_callback_at_the_same_table_index_of_the_new_module_with_the_old_env() {
    let reply = upgrade_while_awaiting(NEXT).unwrap();
    let mut expected = b"new module".to_vec();
    expected.extend_from_slice(&77u32.to_le_bytes());
    assert_eq!(reply, expected);
}

#[test]
fn a_callback_index_the_new_module_lacks_traps_and_the_call_context_is_rejected() {
    let reject = upgrade_while_awaiting(NEXT_WITHOUT_TABLE).unwrap_err();
    assert_eq!(reject.code, RejectCode::CanisterError, "{reject}");
}
