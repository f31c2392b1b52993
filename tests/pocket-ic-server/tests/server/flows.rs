//! The fleet's claims through the standard client: each test is a plain `pocket-ic` test of the built child and
//! parent (`wasm/` and `wasm/next/`), run by our server.

use std::time::Duration;

use candid::{Encode, Principal};
use pocket_ic::{ErrorCode, PocketIc, RejectCode};
use sha2::{Digest, Sha256};
use shared::child::{ChildError, ChildInitArg, ChildUpgradeArg, DataChecksum, FillArg, Member, MemberInput};
use shared::parent::{ChildState, CreateChildrenResult, ParentArg, ParentError, RolloutStatus};

use crate::support::{child_version, controller, pic, query, tick_until, update, wasm};

/// Rounds a rollout of a few children may take here (one inter-canister hop per round) with margin.
const ROLLOUT_MAX_TICKS: u32 = 2_000;

fn version(pic: &PocketIc, canister: Principal) -> String {
    query::<_, (String,)>(pic, canister, "version", ()).0
}

fn checksum(pic: &PocketIc, canister: Principal) -> DataChecksum {
    query::<_, (DataChecksum,)>(pic, canister, "data_checksum", ()).0
}

fn module_hash(pic: &PocketIc, canister: Principal) -> Option<Vec<u8>> {
    pic.canister_status(canister, Some(controller()))
        .expect("canister_status")
        .module_hash
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn add_member(pic: &PocketIc, child: Principal, id: &str, name: &str) -> Member {
    let input = MemberInput {
        name: name.into(),
        value: vec![7; 32],
    };
    let (added,): (Result<Member, ChildError>,) = update(pic, child, controller(), "add_member", (id, input));
    added.unwrap_or_else(|e| panic!("add_member({id}): {e:?}"))
}

fn fill(pic: &PocketIc, child: Principal, count: u32) -> u64 {
    let arg = FillArg {
        count,
        value_size: 64,
        prefix: "f-".into(),
    };
    let (filled,): (Result<u64, ChildError>,) = update(pic, child, controller(), "admin_fill", (arg,));
    filled.unwrap_or_else(|e| panic!("admin_fill: {e:?}"))
}

/// A child installed from `wasm/child.wasm.gz`, controlled by the test's controller (which is also its parent).
fn install_child(pic: &PocketIc) -> Principal {
    let me = controller();
    let child = pic.create_canister_with_settings(Some(me), None);
    let arg = Encode!(&ChildInitArg { parent: me }).unwrap();
    pic.install_canister(child, wasm("child.wasm.gz"), arg, Some(me));
    child
}

/// A stopped canister answers no query (IC0508).
fn assert_stopped(pic: &PocketIc, canister: Principal) {
    let reject = pocket_ic::query_candid::<(), (String,)>(pic, canister, "version", ()).unwrap_err();
    assert_eq!(reject.error_code, ErrorCode::CanisterStopped, "{reject}");
}

#[test]
fn child_install_write_stop_upgrade_start_read_keeps_every_member() {
    let pic = pic();
    let me = controller();
    let child = install_child(&pic);
    assert_eq!(version(&pic, child), child_version(""));

    let alice = add_member(&pic, child, "alice", "Alice");
    assert_eq!(fill(&pic, child, 200), 201);
    let before = checksum(&pic, child);
    assert_eq!(before.members, 201);

    pic.stop_canister(child, Some(me)).unwrap();
    assert_stopped(&pic, child);
    let next = wasm("next/child.wasm.gz");
    pic.upgrade_canister(
        child,
        next.clone(),
        Encode!(&None::<ChildUpgradeArg>).unwrap(),
        Some(me),
    )
    .unwrap();
    pic.start_canister(child, Some(me)).unwrap();

    assert_eq!(version(&pic, child), child_version("next/"));
    assert_eq!(module_hash(&pic, child), Some(sha256(&next)));
    assert_eq!(checksum(&pic, child), before);
    let (read,): (Result<Member, ChildError>,) =
        pocket_ic::query_candid(&pic, child, "get_member", ("alice",)).unwrap();
    assert_eq!(read, Ok(alice));
}

#[test]
fn a_failing_child_upgrade_leaves_the_old_module_and_every_member() {
    let pic = pic();
    let me = controller();
    let child = install_child(&pic);
    fill(&pic, child, 50);
    let before = checksum(&pic, child);
    let old_hash = module_hash(&pic, child);

    pic.stop_canister(child, Some(me)).unwrap();
    // An argument that is not Candid: `post_upgrade` traps decoding it, and the upgrade is undone.
    let reject = pic
        .upgrade_canister(child, wasm("next/child.wasm.gz"), b"not candid".to_vec(), Some(me))
        .unwrap_err();
    assert_eq!(reject.reject_code, RejectCode::CanisterError, "{reject}");
    assert!(reject.reject_message.contains("Cannot parse header"), "{reject}");
    pic.start_canister(child, Some(me)).unwrap();

    assert_eq!(module_hash(&pic, child), old_hash);
    assert_eq!(version(&pic, child), child_version(""));
    assert_eq!(checksum(&pic, child), before);
}

struct Fleet {
    pic: PocketIc,
    parent: Principal,
    children: Vec<Principal>,
}

impl Fleet {
    /// The parent of `wasm/` with `n` children of 30 members each, rollout concurrency 2.
    fn new(n: u32) -> Self {
        let pic = pic();
        let me = controller();
        let parent = pic.create_canister_with_settings(Some(me), None);
        let arg = ParentArg {
            concurrency: Some(2),
            extra_controllers: Some(vec![me]),
            ..ParentArg::default()
        };
        pic.install_canister(parent, wasm("parent.wasm.gz"), Encode!(&Some(arg)).unwrap(), Some(me));
        let (created,): (Result<CreateChildrenResult, ParentError>,) =
            update(&pic, parent, me, "create_children", (n, None::<()>));
        let created = created.expect("create_children");
        assert_eq!(created.error, None);
        let children: Vec<Principal> = created.created.iter().map(|c| c.canister_id).collect();
        assert_eq!(children.len(), n as usize);
        for c in &created.created {
            assert_eq!(c.state, ChildState::UpToDate, "{c:?}");
        }
        for &child in &children {
            fill(&pic, child, 30);
        }
        Self { pic, parent, children }
    }

    fn status(&self) -> RolloutStatus {
        query::<_, (RolloutStatus,)>(&self.pic, self.parent, "rollout_status", ()).0
    }

    fn checksums(&self) -> Vec<DataChecksum> {
        self.children.iter().map(|&c| checksum(&self.pic, c)).collect()
    }

    /// The careful operator's parent upgrade: stop, upgrade (no argument), start.
    fn upgrade_parent_to_next(&self) {
        let me = Some(controller());
        self.pic.stop_canister(self.parent, me).unwrap();
        self.pic
            .upgrade_canister(self.parent, wasm("next/parent.wasm.gz"), Encode!().unwrap(), me)
            .unwrap();
        self.pic.start_canister(self.parent, me).unwrap();
    }

    /// Ticks until the rollout has ended (1 s of time per tick, for the parent's timers).
    fn run_rollout(&self) -> RolloutStatus {
        tick_until(&self.pic, Duration::from_secs(1), ROLLOUT_MAX_TICKS, || {
            let s = self.status();
            s.finished_at.is_some() && !s.planning && s.pending == 0 && s.in_flight == 0
        });
        self.status()
    }
}

#[test]
fn upgrading_the_parent_rolls_the_next_child_out_to_every_child_with_its_data() {
    let fleet = Fleet::new(3);
    let before = fleet.checksums();
    let next_child = sha256(&wasm("next/child.wasm.gz"));

    fleet.upgrade_parent_to_next();
    let status = fleet.run_rollout();

    assert_eq!(
        (status.upgraded, status.failed, status.up_to_date),
        (3, 0, Some(3)),
        "{status:#?}"
    );
    assert_eq!(status.release.hash, next_child);
    for &child in &fleet.children {
        assert_eq!(version(&fleet.pic, child), child_version("next/"));
        assert_eq!(module_hash(&fleet.pic, child), Some(next_child.clone()));
    }
    assert_eq!(fleet.checksums(), before);
}

#[test]
fn a_child_the_parent_cannot_upgrade_fails_alone_and_succeeds_on_retry() {
    let fleet = Fleet::new(3);
    let me = controller();
    let before = fleet.checksums();
    let next_child = sha256(&wasm("next/child.wasm.gz"));
    let old_child = sha256(&wasm("child.wasm.gz"));
    let locked = fleet.children[1];
    // The parent is no longer a controller of this child: its stop_canister is refused.
    fleet.pic.set_controllers(locked, Some(me), vec![me]).unwrap();

    fleet.upgrade_parent_to_next();
    let status = fleet.run_rollout();

    assert_eq!((status.upgraded, status.failed), (2, 1), "{status:#?}");
    assert_eq!(status.failures.len(), 1);
    assert_eq!(status.failures[0].canister_id, locked);
    assert_eq!(module_hash(&fleet.pic, locked), Some(old_child));
    assert_eq!(version(&fleet.pic, locked), child_version(""));

    fleet
        .pic
        .set_controllers(locked, Some(me), vec![me, fleet.parent])
        .unwrap();
    let (retried,): (Result<u64, ParentError>,) = update(&fleet.pic, fleet.parent, me, "retry_failed", ());
    assert_eq!(retried, Ok(1));
    let status = fleet.run_rollout();

    assert_eq!((status.failed, status.up_to_date), (0, Some(3)), "{status:#?}");
    for &child in &fleet.children {
        assert_eq!(module_hash(&fleet.pic, child), Some(next_child.clone()));
    }
    assert_eq!(fleet.checksums(), before);
}
