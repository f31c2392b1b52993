//! How the replica keeps canister memory: an idle canister's instance is dropped and made again on the same heap,
//! and heap pages that hold only zeros take no RAM. None of this may be visible to a canister.

mod common;

use common::*;
use replica::{Replica, SLEEP_AFTER_IDLE_ROUNDS};

const WASM_PAGE: u64 = 64 * 1024;

fn install(r: &Replica, wasm: Vec<u8>) -> candid::Principal {
    let id = r.create_canister_with_settings(Some(user()), None);
    r.install_canister(id, wasm, vec![], Some(user()));
    id
}

/// `set` changes the byte a data segment wrote, a mutable global and the memory's size; `get` reads them back
/// (global, the two bytes, memory.size).
const STATEFUL: &str = r#"
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (memory 1)
  (global $g (mut i64) (i64.const 7))
  (data (i32.const 0) "a")
  (func (export "canister_update set")
    (i32.store8 (i32.const 0) (i32.const 98))
    (global.set $g (i64.const 9))
    (drop (memory.grow (i32.const 2)))
    (i32.store8 (i32.const 131072) (i32.const 99))
    (call $reply))
  (func (export "canister_query get")
    (i64.store (i32.const 16) (global.get $g))
    (i32.store8 (i32.const 24) (i32.load8_u (i32.const 0)))
    (i32.store8 (i32.const 25) (i32.load8_u (i32.const 131072)))
    (i32.store8 (i32.const 26) (memory.size))
    (call $append (i32.const 16) (i32.const 11))
    (call $reply))
"#;

#[test]
fn an_idle_instance_is_dropped_and_made_again_with_heap_globals_and_memory_size() {
    let r = Replica::new();
    let id = install(&r, module_with(STATEFUL));
    r.update_call(id, user(), "set", vec![]).unwrap();
    let expected = [9, 0, 0, 0, 0, 0, 0, 0, b'b', b'c', 3];
    assert_eq!(r.query_call(id, user(), "get", vec![]).unwrap(), expected);

    // The query ran between rounds: it counts for the next one.
    r.tick_n(SLEEP_AFTER_IDLE_ROUNDS);
    assert!(r.has_instance(id), "kept while the canister ran recently");
    r.tick();
    assert!(
        !r.has_instance(id),
        "dropped after {SLEEP_AFTER_IDLE_ROUNDS} idle rounds"
    );
    assert_eq!(r.heap_size(id), 3 * WASM_PAGE);

    // The new instance does not apply the data segment again, nor reset the global or the memory's size.
    assert_eq!(r.query_call(id, user(), "get", vec![]).unwrap(), expected);
    assert!(r.has_instance(id));
}

#[test]
fn a_message_that_grew_the_heap_and_trapped_leaves_it_as_it_was() {
    let r = Replica::new();
    let id = installed(&r);
    r.update_call(id, user(), "inc", vec![]).unwrap();
    assert!(r.update_call(id, user(), "grow_then_trap", vec![]).is_err());
    assert_eq!(r.heap_size(id), WASM_PAGE);
    assert_eq!(query_u64(&r, id, "heap_pages"), 1);
    assert_eq!((query_u64(&r, id, "get"), query_u64(&r, id, "get_global")), (1, 1));
    assert_eq!(u64_of(&r.update_call(id, user(), "inc", vec![]).unwrap()), 2);
}

#[test]
fn pages_the_heap_grew_by_that_stay_zero_take_no_ram() {
    let r = Replica::new();
    let id = install(
        &r,
        module_with(
            r#"
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (func (export "canister_update grow")
    (drop (memory.grow (i32.const 100)))
    (i32.store8 (i32.const 6553600) (i32.const 1))
    (call $reply))
"#,
        ),
    );
    assert_eq!(r.heap_resident_bytes(id), 0, "a memory of zeros");
    r.update_call(id, user(), "grow", vec![]).unwrap();
    assert_eq!(r.heap_size(id), 101 * WASM_PAGE);
    assert_eq!(r.heap_resident_bytes(id), 4096, "the one page written");
}

#[test]
fn an_instance_whose_table_changed_is_kept() {
    let r = Replica::new();
    let id = install(
        &r,
        module_with(
            r#"
  (import "ic0" "msg_reply" (func $reply))
  (table $t 1 funcref)
  (func $f)
  (elem declare func $f)
  (func (export "canister_update set") (table.set $t (i32.const 0) (ref.func $f)) (call $reply))
"#,
        ),
    );
    r.update_call(id, user(), "set", vec![]).unwrap();
    r.tick_n(2 * SLEEP_AFTER_IDLE_ROUNDS);
    assert!(r.has_instance(id), "the replica cannot save a table");
}
