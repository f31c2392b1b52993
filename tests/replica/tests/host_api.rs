//! The host-side API that network fronts (the IC HTTP interface, the PocketIC server) build on: module metadata,
//! canisters with specified ids, stable memory images, the clock and the root key.

use std::time::{Duration, UNIX_EPOCH};

use candid::{Nat, Principal};
use replica::{ic00, Metadata, RejectCode, Replica, ReplicaConfig, STABLE_PAGE_SIZE};

const UNIVERSAL: &str = include_str!("universal.wat");

fn user() -> Principal {
    Principal::from_slice(&[7; 29])
}

fn with_sections(sections: &[(&str, &str)]) -> Vec<u8> {
    let customs: String = sections
        .iter()
        .map(|(name, data)| format!("(@custom \"{name}\" \"{data}\")"))
        .collect();
    wat::parse_str(format!("(module {customs} (memory 1))")).unwrap()
}

fn install(r: &Replica, wasm: Vec<u8>) -> Result<Principal, replica::Reject> {
    let id = r.create_canister_with_settings(Some(user()), None);
    r.install_code(Some(user()), ic00::CanisterInstallMode::Install, id, wasm, vec![])
        .map(|()| id)
}

#[test]
fn metadata_sections_are_read_by_name_with_their_visibility() {
    let r = Replica::new();
    let id = install(
        &r,
        with_sections(&[
            ("icp:public candid:service", "service : {}"),
            ("icp:private git", "abc"),
        ]),
    )
    .unwrap();
    assert_eq!(
        r.metadata(id, "candid:service"),
        Some(Metadata {
            public: true,
            content: b"service : {}".to_vec()
        })
    );
    assert_eq!(
        r.metadata(id, "git"),
        Some(Metadata {
            public: false,
            content: b"abc".to_vec()
        })
    );
    assert_eq!(r.metadata(id, "missing"), None);
}

#[test]
fn malformed_or_too_many_metadata_sections_make_the_module_invalid() {
    let r = Replica::new();
    for sections in [
        vec![("icp:secret x".to_string(), "1".to_string())],
        vec![
            ("icp:public x".to_string(), "1".to_string()),
            ("icp:private x".to_string(), "2".to_string()),
        ],
        (0..17).map(|i| (format!("icp:public s{i}"), "x".to_string())).collect(),
    ] {
        let sections: Vec<(&str, &str)> = sections.iter().map(|(n, d)| (n.as_str(), d.as_str())).collect();
        let reject = install(&r, with_sections(&sections)).unwrap_err();
        assert_eq!(reject.code, RejectCode::CanisterError);
        assert!(reject.message.contains("invalid custom section"), "{reject}");
    }
}

#[test]
fn provisional_create_honours_specified_id_once() {
    let r = Replica::new();
    let wanted = Principal::from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 1, 1, 1]);
    let arg = ic00::ProvisionalCreateCanisterWithCyclesArgs {
        amount: Some(Nat::from(5u32)),
        settings: None,
        specified_id: Some(wanted),
        sender_canister_version: None,
    };
    let created: ic00::CanisterIdRecord = r
        .update(
            Principal::management_canister(),
            user(),
            "provisional_create_canister_with_cycles",
            &arg,
        )
        .unwrap();
    assert_eq!(created.canister_id, wanted);
    assert_eq!((r.controllers(wanted), r.cycle_balance(wanted)), (vec![user()], 5));
    let again = r
        .update::<_, ic00::CanisterIdRecord>(
            Principal::management_canister(),
            user(),
            "provisional_create_canister_with_cycles",
            &arg,
        )
        .unwrap_err();
    assert!(again.message.contains("already exists"), "{again}");
    assert!(r.create_canister_with_id(Some(user()), None, wanted).is_err());
    // Ids handed out later skip the taken one.
    let other = r
        .create_canister_with_id(None, None, Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]))
        .unwrap();
    assert_ne!(r.create_canister(), other);
}

#[test]
fn a_stable_memory_image_is_what_the_canister_then_reads() {
    let r = Replica::new();
    let id = install(&r, wat::parse_str(UNIVERSAL).unwrap()).unwrap();
    let mut image = vec![0u8; STABLE_PAGE_SIZE as usize + 3];
    image[..4].copy_from_slice(&[1, 2, 3, 4]);
    r.set_stable_memory(id, &image);
    assert_eq!(r.stable_memory_pages(id).0, 2);
    // `stable_get` replies with the first 8 bytes of stable memory, then its size in pages.
    let reply = r.query_call(id, user(), "stable_get", vec![]).unwrap();
    assert_eq!(
        (&reply[..8], &reply[8..]),
        (&[1, 2, 3, 4, 0, 0, 0, 0][..], &2u64.to_le_bytes()[..])
    );
    let back = r.stable_memory(id);
    assert_eq!(
        (back.len(), &back[..image.len()]),
        (2 * STABLE_PAGE_SIZE as usize, &image[..])
    );
}

#[test]
fn time_moves_forward_only() {
    let r = Replica::new();
    let later = r.get_time() + Duration::from_secs(3600);
    r.set_time(later).unwrap();
    assert_eq!(r.get_time(), later);
    let err = r.set_time(UNIX_EPOCH + Duration::from_secs(1)).unwrap_err();
    assert!(err.contains("cannot set the time back"), "{err}");
    assert_eq!(r.get_time(), later);
}

const ROOT_KEY_READER: &str = r#"(module
  (import "ic0" "root_key_size" (func $size (result i32)))
  (import "ic0" "root_key_copy" (func $copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (func (export "canister_update root_key")
    (call $copy (i32.const 0) (i32.const 0) (call $size))
    (call $append (i32.const 0) (call $size))
    (call $reply)))"#;

#[test]
fn a_configured_root_key_is_what_canisters_read_and_names_the_subnet() {
    let default = Replica::new();
    let key = vec![9u8; 133];
    let r = Replica::with_config(ReplicaConfig {
        root_key: Some(key.clone()),
        ..ReplicaConfig::default()
    });
    assert_eq!(r.root_key(), key);
    let id = install(&r, wat::parse_str(ROOT_KEY_READER).unwrap()).unwrap();
    assert_eq!(r.update_call(id, user(), "root_key", vec![]).unwrap(), key);
    assert_eq!(r.subnet_id(), Principal::self_authenticating(&key));
    assert_ne!(default.root_key(), key);
    assert_ne!(default.subnet_id(), r.subnet_id());
}

#[test]
fn pending_work_tells_a_host_when_the_next_round_has_something_to_do() {
    let r = Replica::new();
    let id = install(&r, wat::parse_str(UNIVERSAL).unwrap()).unwrap();
    assert!(!r.has_queued_messages());
    assert_eq!(
        r.next_due_time(),
        None,
        "idle: only a new message can give a round work"
    );

    let due = r.time_nanos() + 5_000_000_000;
    let message = r
        .submit_call(id, user(), "set_timer", due.to_le_bytes().to_vec())
        .unwrap();
    assert!(r.has_queued_messages());
    r.await_call(message).unwrap();
    assert!(!r.has_queued_messages());
    assert_eq!(r.next_due_time(), Some(due), "the global timer is due then");

    r.stop_canister(id, Some(user())).unwrap();
    assert_eq!(
        r.next_due_time(),
        None,
        "a stopped canister's timer does not fire, so it is not due"
    );
    r.start_canister(id, Some(user())).unwrap();
    assert_eq!(r.next_due_time(), Some(due));
    r.advance_time(Duration::from_secs(5));
    r.tick();
    assert_eq!(r.next_due_time(), None, "the timer fired and is inactive");
    assert!(!r.has_heartbeats(), "the universal canister exports no heartbeat");

    // A stop that waits for an open call context is due when it times out; a completed stop is not due.
    let callee = install(&r, wat::parse_str(UNIVERSAL).unwrap()).unwrap();
    r.delay_responses(id, 1_000);
    let mut call = vec![0, callee.as_slice().len() as u8];
    call.extend_from_slice(callee.as_slice());
    call.extend_from_slice(b"\x04echo");
    let waiting = r.submit_call(id, user(), "call", call).unwrap();
    r.tick_n(3);
    let stop = candid::encode_one(ic00::CanisterIdRecord { canister_id: id }).unwrap();
    r.submit_call(Principal::management_canister(), user(), "stop_canister", stop)
        .unwrap();
    r.tick();
    let timeout = r.config().stop_canister_timeout.as_nanos() as u64;
    assert_eq!(
        r.next_due_time(),
        Some(r.time_nanos() - r.config().round_duration.as_nanos() as u64 + timeout)
    );
    r.delay_responses(id, 0);
    assert!(r.await_call(waiting).is_ok());
    r.tick_n(2);
    assert_eq!(r.next_due_time(), None, "the stop completed");

    let beating = install(
        &r,
        wat::parse_str(r#"(module (func (export "canister_heartbeat")) (memory 1))"#).unwrap(),
    )
    .unwrap();
    assert!(r.has_heartbeats());
    r.stop_canister(beating, Some(user())).unwrap();
    assert!(!r.has_heartbeats(), "a stopped canister runs no heartbeat");
}
