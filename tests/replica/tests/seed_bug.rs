//! The seed bug (shared/docs/background/002), pinned: the replica catches the data loss, and our child does not have it.
//!
//! The `seed_bug` fixture keeps its members in a `StableBTreeMap` behind a `MemoryManager` and also "backs up" heap
//! notes with `stable_save` in `pre_upgrade`. What happens on an upgrade (ic-cdk 0.20.3, ic-stable-structures 0.7.2):
//!
//! 1. `pre_upgrade`: `stable_save` writes the Candid encoding of the notes (`DIDL…`) from stable offset 0, over the
//!    MemoryManager's header (magic `MGR`, bucket table). The members' buckets after it are not touched.
//! 2. `post_upgrade`: `stable_restore` decodes the notes from offset 0 (ignoring the trailing bytes): they survive.
//!    Nothing traps, so the upgrade succeeds and looks fine.
//! 3. The first call that touches the map runs `MemoryManager::init`, which finds no `MGR` magic and, instead of
//!    failing, creates a *new, empty* MemoryManager; `StableBTreeMap::init` then finds an empty virtual memory and
//!    creates an empty map. `member_count()` is 0 and every `get_member` is `None`, while the old members' bytes
//!    still sit unreachable in stable memory. The first update persists the new header and hands the old members'
//!    first bucket to the new map, so the loss is permanent.

use std::path::PathBuf;

use candid::{Decode, Encode, Principal};
use replica::Replica;
use shared::child::{ChildError, ChildInitArg, ChildUpgradeArg, DataChecksum, FillArg, Member, MemberInput};

/// Members each test writes one by one.
const MEMBERS: u32 = 20;
/// Members the child test adds with one `admin_fill` (kept small: the replica runs wasm slowly in debug builds).
const FILLED: u32 = 20;

/// Magic bytes at the start of a MemoryManager's header (ic-stable-structures `memory_manager::MAGIC`).
const MEMORY_MANAGER_MAGIC: &[u8] = b"MGR";
/// Magic bytes at the start of every Candid message, so of `stable_save`'s output.
const CANDID_MAGIC: &[u8] = b"DIDL";

fn controller() -> Principal {
    Principal::from_slice(&[7; 29])
}

/// Reads a module built by `scripts/build.sh` from `wasm/` (`path` relative to it).
fn built_wasm(path: &str, build_command: &str) -> Vec<u8> {
    // The manifest directory cargo names at run time: a binary reused from another clone reads this clone's files.
    let file = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
        .join("../../wasm")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}; run {build_command}", file.display()))
}

fn seed_bug_wasm() -> Vec<u8> {
    built_wasm("fixtures/seed_bug.wasm.gz", "scripts/build.sh --fixtures")
}

fn child_wasm() -> Vec<u8> {
    built_wasm("child.wasm.gz", "scripts/build.sh")
}

/// A replica with one canister, controlled by [`controller`], running `wasm` installed with `init_arg`.
fn install(wasm: Vec<u8>, init_arg: Vec<u8>) -> (Replica, Principal) {
    let r = Replica::new();
    let id = r.create_canister_with_settings(Some(controller()), None);
    r.install_canister(id, wasm, init_arg, Some(controller()));
    (r, id)
}

/// Upgrades to `wasm` as `dfx canister install --mode upgrade` does: without stopping the canister first.
fn upgrade_in_place(r: &Replica, id: Principal, wasm: Vec<u8>, upgrade_arg: Vec<u8>) {
    r.upgrade_canister(id, wasm, upgrade_arg, Some(controller()))
        .expect("the upgrade itself succeeds");
}

fn member_key(i: u32) -> String {
    format!("member-{i:03}")
}

fn member_value(i: u32) -> String {
    format!("value of member {i}")
}

mod seed_bug {
    use super::*;

    pub fn put_member(r: &Replica, id: Principal, key: &str, value: &str) {
        r.update_call(id, controller(), "put_member", Encode!(&key, &value).unwrap())
            .expect("put_member");
    }

    pub fn put_note(r: &Replica, id: Principal, key: &str, value: &str) {
        r.update_call(id, controller(), "put_note", Encode!(&key, &value).unwrap())
            .expect("put_note");
    }

    pub fn get_member(r: &Replica, id: Principal, key: &str) -> Option<String> {
        r.query(id, controller(), "get_member", &key).expect("get_member")
    }

    pub fn get_note(r: &Replica, id: Principal, key: &str) -> Option<String> {
        r.query(id, controller(), "get_note", &key).expect("get_note")
    }

    pub fn member_count(r: &Replica, id: Principal) -> u64 {
        Decode!(
            &r.query_call(id, controller(), "member_count", Encode!().unwrap())
                .expect("member_count"),
            u64
        )
        .unwrap()
    }
}

#[test]
fn seed_bug_fixture_loses_every_member_on_upgrade() {
    let wasm = seed_bug_wasm();
    let (r, id) = install(wasm.clone(), Encode!().unwrap());
    let _logs = r.print_logs_on_panic();
    for i in 0..MEMBERS {
        seed_bug::put_member(&r, id, &member_key(i), &member_value(i));
    }
    seed_bug::put_note(&r, id, "motd", "hello");
    seed_bug::put_note(&r, id, "owner", "alice");
    assert_eq!(seed_bug::member_count(&r, id), u64::from(MEMBERS));
    assert_eq!(
        r.read_stable_memory(id, 0, 3),
        MEMORY_MANAGER_MAGIC,
        "the MemoryManager owns offset 0"
    );
    let pages_before = r.stable_memory_pages(id);

    upgrade_in_place(&r, id, wasm, Encode!().unwrap());

    // Nothing trapped: the upgrade reports success and the heap notes came back through stable_restore.
    assert!(r
        .executions()
        .iter()
        .filter(|e| e.canister == id)
        .all(|e| e.outcome.is_ok()));
    assert_eq!(seed_bug::get_note(&r, id, "motd").as_deref(), Some("hello"));
    assert_eq!(seed_bug::get_note(&r, id, "owner").as_deref(), Some("alice"));
    // pre_upgrade's stable_save wrote Candid over the MemoryManager's header; the members' pages are still there.
    assert_eq!(
        r.read_stable_memory(id, 0, 4),
        CANDID_MAGIC,
        "stable_save overwrote offset 0"
    );
    assert_eq!(
        r.stable_memory_pages(id),
        pages_before,
        "no page was freed: the members are unreachable, not erased"
    );
    // ...but the canister can no longer find them: a fresh MemoryManager and an empty map.
    assert_eq!(seed_bug::member_count(&r, id), 0, "every member is lost");
    for i in 0..MEMBERS {
        assert_eq!(
            seed_bug::get_member(&r, id, &member_key(i)),
            None,
            "member {i} survived"
        );
    }

    // The first write persists the new, empty MemoryManager and map: the old members never come back.
    seed_bug::put_member(&r, id, "newcomer", "after the upgrade");
    assert_eq!(seed_bug::member_count(&r, id), 1);
    assert_eq!(r.read_stable_memory(id, 0, 3), MEMORY_MANAGER_MAGIC);
    assert_eq!(seed_bug::get_member(&r, id, &member_key(0)), None);
}

mod child {
    use super::*;

    pub fn add_member(r: &Replica, id: Principal, key: &str, value: &str) {
        let input = MemberInput {
            name: key.to_string(),
            value: value.as_bytes().to_vec(),
        };
        let bytes = r
            .update_call(id, controller(), "add_member", Encode!(&key, &input).unwrap())
            .expect("add_member call");
        Decode!(&bytes, Result<Member, ChildError>)
            .unwrap()
            .expect("add_member");
    }

    pub fn admin_fill(r: &Replica, id: Principal, arg: &FillArg) {
        let reply: Result<u64, ChildError> = r.update(id, controller(), "admin_fill", arg).expect("admin_fill call");
        reply.expect("admin_fill");
    }

    pub fn get_member(r: &Replica, id: Principal, key: &str) -> Option<Vec<u8>> {
        let reply: Result<Member, ChildError> = r.query(id, controller(), "get_member", &key).expect("get_member call");
        match reply {
            Ok(member) => Some(member.value),
            Err(ChildError::NotFound { .. }) => None,
            Err(e) => panic!("get_member: {e}"),
        }
    }

    pub fn member_count(r: &Replica, id: Principal) -> u64 {
        Decode!(
            &r.query_call(id, controller(), "member_count", Encode!().unwrap())
                .expect("member_count"),
            u64
        )
        .unwrap()
    }

    pub fn data_checksum(r: &Replica, id: Principal) -> DataChecksum {
        Decode!(
            &r.query_call(id, controller(), "data_checksum", Encode!().unwrap())
                .expect("data_checksum"),
            DataChecksum
        )
        .unwrap()
    }
}

#[test]
fn child_keeps_every_member_on_the_same_upgrade() {
    let wasm = child_wasm();
    let parent = Principal::from_slice(&[9; 29]);
    let (r, id) = install(wasm.clone(), Encode!(&ChildInitArg { parent }).unwrap());
    let _logs = r.print_logs_on_panic();
    for i in 0..MEMBERS {
        child::add_member(&r, id, &member_key(i), &member_value(i));
    }
    child::admin_fill(
        &r,
        id,
        &FillArg {
            count: FILLED,
            value_size: 256,
            prefix: "filled-".into(),
        },
    );
    let expected_members = u64::from(MEMBERS + FILLED);
    assert_eq!(child::member_count(&r, id), expected_members);
    let checksum_before = child::data_checksum(&r, id);
    assert_eq!(checksum_before.members, expected_members);

    upgrade_in_place(&r, id, wasm, Encode!(&Some(ChildUpgradeArg::default())).unwrap());

    assert!(r
        .executions()
        .iter()
        .filter(|e| e.canister == id)
        .all(|e| e.outcome.is_ok()));
    assert_eq!(
        r.read_stable_memory(id, 0, 3),
        MEMORY_MANAGER_MAGIC,
        "nothing but the MemoryManager wrote offset 0"
    );
    assert_eq!(child::member_count(&r, id), expected_members);
    for i in 0..MEMBERS {
        assert_eq!(
            child::get_member(&r, id, &member_key(i)),
            Some(member_value(i).into_bytes()),
            "member {i}"
        );
    }
    assert_eq!(
        child::data_checksum(&r, id),
        checksum_before,
        "every byte of every member is unchanged"
    );
}
