//! Upgrades from the builds we shipped (`tests/fixtures/golden/`): the current child and parent must read every
//! structure that a frozen release wrote through its own interface. Nothing here re-encodes "old" data with today's
//! code: the old modules write it, the new ones read it.

use std::collections::BTreeMap;

use candid::{Encode, Principal};
use fleet::wasms::{self, sha256};
use fleet::{ChildApi, Fleet, FleetConfig, ParentUpgrade, Release};
use replica::Replica;
use shared::child::{
    AuditEntry, AuditKind, ChildInitArg, ChildUpgradeArg, FillArg, ListMembersArg, Member, MemberInput,
};
use shared::parent::{ChildInfo, ChildState};

/// The shipped releases: (version, SHA-256 of child.wasm.gz, SHA-256 of parent.wasm.gz).
const SHIPPED: [(&str, &str, &str); 2] = [
    (
        "0.1.0",
        "eedc87cd7c6b9f90ebbb1c53a72a933f80600cf16efe793190fa08872e6ea163",
        "db78737da6f34b4f033a8f07db5f8fa19c60f5d64ae455c573a4a7e01095f527",
    ),
    (
        "0.2.0",
        "c43bfc33262c7e3e3c19bf92f1981a5193daa5e78cfbf11c99fb00052dd69c70",
        "9004632d3cefd0926efc92a61d25b533ec51b4c29136dc6cab61d0550f7773e0",
    ),
];

/// A file of a shipped release, checked against its recorded hash.
fn golden(version: &str, file: &str) -> Vec<u8> {
    let (_, child, parent) = SHIPPED.iter().find(|(v, ..)| *v == version).expect("a shipped release");
    let path = format!("tests/fixtures/golden/{version}/{file}");
    let bytes = wasms::read(&path);
    let expected = if file == "child.wasm.gz" { child } else { parent };
    assert_eq!(
        hex::encode(sha256(&bytes)),
        *expected,
        "{path} is not the shipped build"
    );
    bytes
}

/// A shipped release (parent and child), checked.
fn shipped(version: &str) -> Release {
    golden(version, "parent.wasm.gz");
    golden(version, "child.wasm.gz");
    Release::from_dir(format!("tests/fixtures/golden/{version}"))
}

fn all_members(child: &ChildApi) -> Vec<Member> {
    let (mut out, mut start_after) = (Vec::new(), None);
    loop {
        let page = child.list_members(ListMembersArg { start_after, limit: 0 });
        out.extend(page.members);
        match page.next {
            Some(next) => start_after = Some(next),
            None => return out,
        }
    }
}

fn all_audit(child: &ChildApi, admin: Principal) -> Vec<AuditEntry> {
    let mut out = Vec::new();
    loop {
        let page = child.audit_log(admin, out.len() as u64, 0).expect("audit_log");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[test]
fn the_current_child_reads_every_structure_the_shipped_child_wrote() {
    let r = Replica::new();
    let _logs = r.print_logs_on_panic();
    let admin = fleet::controller();
    let (parent, new_parent) = (Principal::from_slice(&[7, 7, 7]), Principal::from_slice(&[8, 8, 8]));
    let id = r.create_canister_with_settings(Some(admin), None);
    r.install_canister(
        id,
        golden("0.1.0", "child.wasm.gz"),
        Encode!(&ChildInitArg { parent }).unwrap(),
        Some(admin),
    );
    let child = ChildApi::new(&r, id);
    assert_eq!(child.version(), "0.1.0");

    // Data in every structure, written by the shipped module: members, config (the parent), audit log, counter.
    let input = |name: &str, value: &[u8]| MemberInput {
        name: name.into(),
        value: value.to_vec(),
    };
    child.add_member(admin, "alice", input("Alice", b"a")).unwrap();
    child.add_member(admin, "bob", input("Bob", &[0; 300])).unwrap();
    child.update_member(admin, "alice", input("Alice B.", b"ab")).unwrap();
    child.add_member(admin, "carol", input("Carol", b"c")).unwrap();
    child.remove_member(admin, "carol").unwrap();
    child
        .admin_fill(
            admin,
            FillArg {
                count: 40,
                value_size: 64,
                prefix: "g-".into(),
            },
        )
        .unwrap();
    child.set_parent(admin, new_parent).unwrap();
    let members = all_members(&child);
    let audit = all_audit(&child, admin);
    let health = child.health();
    assert_eq!((members.len(), audit.len(), health.total_writes), (42, 8, 7));

    let me = Some(admin);
    r.stop_canister(id, me).unwrap();
    let current = wasms::read("wasm/child.wasm.gz");
    r.upgrade_canister(
        id,
        current.clone(),
        Encode!(&Some(ChildUpgradeArg::default())).unwrap(),
        me,
    )
    .unwrap();
    r.start_canister(id, me).unwrap();
    assert_eq!(r.module_hash(id), Some(sha256(&current)));

    assert_ne!(child.version(), "0.1.0");
    assert_eq!(all_members(&child), members, "members");
    let after = all_audit(&child, admin);
    assert_eq!(after[..audit.len()], audit[..], "the audit log keeps every entry");
    assert!(matches!(after[audit.len()].kind, AuditKind::Upgrade { .. }) && after.len() == audit.len() + 1);
    let health_after = child.health();
    assert_eq!(
        (
            health_after.parent,
            health_after.total_writes,
            health_after.member_count,
            health_after.schema_version
        ),
        (
            Some(new_parent),
            health.total_writes,
            health.member_count,
            health.schema_version
        ),
        "config and counter"
    );
    let sum = child.data_checksum();
    assert_eq!(
        (sum.members, sum.audit_entries, sum.total_writes),
        (42, 7, 7),
        "the checksum covers all of it"
    );
}

#[test]
fn the_current_parent_loads_the_shipped_registry_and_moves_its_fleet_to_the_current_child() {
    let shipped = shipped("0.1.0");
    let current = Release::current();
    let mut fleet = Fleet::new(
        &shipped,
        FleetConfig {
            admins: vec![fleet::outsider(3)],
            ..FleetConfig::with_concurrency(3)
        },
    );
    fleet.create_children(6);
    fleet.fill_all(30, 48);
    let _logs = fleet.replica.print_logs_on_panic();
    let p = fleet.parent();
    // The settings as 0.1.0 answered them (later releases add fields, which an older client ignores).
    #[derive(candid::CandidType, serde::Deserialize, Debug, PartialEq)]
    struct SettingsV1 {
        admins: Vec<Principal>,
        concurrency: u32,
        cycles_per_child: candid::Nat,
        extra_controllers: Vec<Principal>,
    }
    let settings_v1 = || -> SettingsV1 { p.query("settings", ()) };
    let settings = settings_v1();
    let registry: BTreeMap<Principal, ChildInfo> =
        p.list_all_children().into_iter().map(|c| (c.canister_id, c)).collect();
    assert!(registry
        .values()
        .all(|c| c.installed_hash.as_deref() == Some(&shipped.expect_child_hash()[..])));
    let members: BTreeMap<Principal, Vec<Member>> = fleet
        .children
        .iter()
        .map(|c| (*c, all_members(&fleet.child(*c))))
        .collect();

    fleet.upgrade_parent(&current, ParentUpgrade::StopFirst).unwrap();
    assert_eq!(settings_v1(), settings, "settings");
    assert_eq!(p.settings().keep_releases, 5, "a new setting starts at its default");
    let releases: Vec<Vec<u8>> = p.releases().into_iter().map(|r| r.hash).collect();
    assert_eq!(
        releases,
        [
            shipped.expect_child_hash().to_vec(),
            current.expect_child_hash().to_vec()
        ],
        "the shipped release is remembered"
    );
    let run = fleet.run_rollout_to_end(2_000);
    assert!(run.finished && run.status.failed == 0, "{:#?}", run.status);
    assert_eq!(run.status.upgraded, 6);
    for info in p.list_all_children() {
        let before = &registry[&info.canister_id];
        assert_eq!(
            (info.created_at, info.state.clone()),
            (before.created_at, ChildState::UpToDate)
        );
        assert_eq!(info.installed_hash.as_deref(), Some(&current.expect_child_hash()[..]));
        let id = info.canister_id;
        assert_eq!(fleet.replica.module_hash(id), Some(current.expect_child_hash()));
        assert_eq!(all_members(&fleet.child(id)), members[&id], "members of {id}");
    }
    assert_eq!(registry.len(), 6);
}

/// The 0.2.0 parent queued the children it planned (`Pending`, one registry write and one index insert each); the
/// current parent's planner writes nothing until it launches a child. A rollout the 0.2.0 parent had half planned,
/// over 1,000 children, must finish under the current parent: the children it queued and those it had not reached
/// (as the same rollout while the current parent embeds the 0.2.0 child, as a new one to its own child after that).
#[test]
fn the_current_parent_finishes_a_rollout_the_shipped_0_2_0_parent_had_half_planned() {
    const N: u64 = 1_000;
    let (v1, v2, current) = (shipped("0.1.0"), shipped("0.2.0"), Release::current());
    let mut fleet = Fleet::new(&v1, FleetConfig::with_concurrency(100));
    fleet.create_children(N as u32);
    let _logs = fleet.replica.print_logs_on_panic();
    let filled: Vec<Principal> = fleet.children.iter().step_by(100).copied().collect();
    for id in &filled {
        fleet.fill(*id, 20, 32);
    }
    let members: BTreeMap<Principal, Vec<Member>> =
        filled.iter().map(|c| (*c, all_members(&fleet.child(*c)))).collect();
    let p = fleet.parent();
    p.set_concurrency(fleet.controller, 0).unwrap();

    // The 0.2.0 parent plans 500 entries per tick: stopped for its own upgrade after the first.
    fleet.upgrade_parent(&v2, ParentUpgrade::StopFirst).unwrap();
    let mut rounds = 0;
    while p.rollout_status().pending == 0 {
        assert!(rounds < 20, "the 0.2.0 planner queued nothing");
        fleet.replica.tick();
        rounds += 1;
    }
    let before = p.rollout_status();
    assert_eq!((before.pending, before.in_flight), (500, 0), "{before:#?}");
    assert!(before.planning, "half the registry is still to plan");

    fleet.upgrade_parent(&current, ParentUpgrade::StopFirst).unwrap();
    // The current parent counts the children per module again (0.2.0 did not record that it kept the count).
    fleet.replica.tick_n(3);
    let after = p.rollout_status();
    if current.child_hash == v2.child_hash {
        assert_eq!(
            after.rollout_id, before.rollout_id,
            "the same child embedded: the same rollout"
        );
    }
    assert_eq!(
        after.pending, N,
        "the queued children and those the planner has yet to reach"
    );
    p.set_concurrency(fleet.controller, 100).unwrap();
    let run = fleet.run_rollout_to_end(5_000);
    assert!(run.finished && run.status.failed == 0, "{:#?}", run.status);
    assert_eq!((run.status.upgraded, run.status.up_to_date), (N, Some(N)));
    let target = current.expect_child_hash();
    for info in p.list_all_children() {
        let id = info.canister_id;
        assert_eq!(info.state, ChildState::UpToDate, "{id}");
        assert_eq!(fleet.replica.module_hash(id), Some(target), "{id}");
        assert_eq!(fleet.replica.status(id), replica::CanisterStatus::Running, "{id}");
    }
    for (id, before) in &members {
        assert_eq!(&all_members(&fleet.child(*id)), before, "members of {id}");
    }
}
