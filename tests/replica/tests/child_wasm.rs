//! Runs the real child canister (`wasm/child.wasm.gz`) through install, writes, upgrade and reads.

use std::path::PathBuf;
use std::time::Duration;

use candid::{Decode, Encode, Principal};
use replica::Replica;
use sha2::{Digest, Sha256};
use shared::child::{AuditEntry, AuditKind, ChildError, ChildInitArg, ChildUpgradeArg, Health, Member, MemberInput};

/// `wasm/child.wasm.gz`, or the file named by `CHILD_WASM_GZ`.
fn child_wasm_gz() -> Vec<u8> {
    let path = std::env::var_os("CHILD_WASM_GZ").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
            .join("../../wasm/child.wasm.gz")
    });
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the child module {}: {e}. Build it with `scripts/build.sh` (writes wasm/child.wasm.gz), \
             or point CHILD_WASM_GZ at a gzipped child.wasm",
            path.display()
        )
    })
}

#[test]
fn child_installs_takes_writes_upgrades_and_keeps_its_data() {
    let r = Replica::new();
    let _logs = r.print_logs_on_panic();
    let controller = Principal::from_slice(&[7; 29]);
    let parent = r.create_canister();
    let child = r.create_canister_with_settings(Some(controller), None);
    let gz = child_wasm_gz();

    r.install_canister(
        child,
        gz.clone(),
        Encode!(&ChildInitArg { parent }).unwrap(),
        Some(controller),
    );
    let hash: [u8; 32] = Sha256::digest(&gz).into();
    assert_eq!(r.module_hash(child), Some(hash));
    let install = r
        .executions()
        .into_iter()
        .filter(|e| e.canister == child && e.entry == "canister_init")
        .count();
    assert_eq!(install, 1);

    for i in 0..3 {
        let input = MemberInput {
            name: format!("member {i}"),
            value: vec![i as u8; 100],
        };
        let reply = r
            .update_call(
                child,
                controller,
                "add_member",
                Encode!(&format!("m{i}"), &input).unwrap(),
            )
            .unwrap();
        let member = Decode!(&reply, Result<Member, ChildError>)
            .unwrap()
            .expect("add_member");
        assert_eq!(member.name, format!("member {i}"));
    }
    let count = |r: &Replica| {
        Decode!(
            &r.query_call(child, controller, "member_count", Encode!().unwrap())
                .unwrap(),
            u64
        )
        .unwrap()
    };
    assert_eq!(count(&r), 3);

    // The heartbeat interval timer (ic-cdk-timers: global timer + self-call) runs without traps.
    r.advance_time(Duration::from_secs(61));
    r.tick_n(5);
    let traps: Vec<_> = r
        .executions()
        .into_iter()
        .filter(|e| e.canister == child && e.outcome.is_err())
        .collect();
    assert!(traps.is_empty(), "{traps:?}");
    let health = Decode!(
        &r.query_call(child, controller, "health", Encode!().unwrap()).unwrap(),
        Health
    )
    .unwrap();
    assert!(health.last_tick.is_some(), "the heartbeat timer ran: {health:?}");
    let writes_before = health.total_writes;

    r.stop_canister(child, Some(controller)).unwrap();
    let version = r.canister_version(child);
    r.upgrade_canister(
        child,
        gz.clone(),
        Encode!(&Some(ChildUpgradeArg::default())).unwrap(),
        Some(controller),
    )
    .unwrap();
    r.start_canister(child, Some(controller)).unwrap();
    assert_eq!(r.canister_version(child), version + 2, "upgrade + start");
    assert!(r
        .executions()
        .iter()
        .any(|e| e.canister == child && e.entry == "canister_post_upgrade" && e.outcome.is_ok()));

    assert_eq!(count(&r), 3);
    let reply = r
        .query_call(child, controller, "get_member", Encode!(&"m1".to_string()).unwrap())
        .unwrap();
    let member = Decode!(&reply, Result<Member, ChildError>)
        .unwrap()
        .expect("get_member after upgrade");
    assert_eq!(member.value, vec![1u8; 100]);
    let health = Decode!(
        &r.query_call(child, controller, "health", Encode!().unwrap()).unwrap(),
        Health
    )
    .unwrap();
    assert_eq!(health.parent, Some(parent));
    assert_eq!(health.total_writes, writes_before);
    assert_eq!(health.request_count, 0, "the heap was replaced");
    assert_ne!(r.global_timer(child), 0, "post_upgrade re-armed the timer");
}

/// Issue 2's size target: at most 200 KiB gzipped, metadata included.
#[test]
fn child_module_fits_its_size_budget() {
    let size = child_wasm_gz().len();
    assert!(
        size <= 200 * 1024,
        "wasm/child.wasm.gz is {size} B, over the 200 KiB budget"
    );
}

/// Principals reach the child as Candid arguments (`set_parent`, the upgrade argument) and come back from stable
/// memory (config and audit log, CBOR); all of them decode through `shared::principal`.
#[test]
fn child_decodes_principals_from_calls_and_stable_memory() {
    let r = Replica::new();
    let _logs = r.print_logs_on_panic();
    let controller = Principal::from_slice(&[7; 29]);
    let (new_parent, stranger) = (Principal::from_slice(&[8; 29]), Principal::from_slice(&[9; 10]));
    let parent = r.create_canister();
    let child = r.create_canister_with_settings(Some(controller), None);
    let gz = child_wasm_gz();
    r.install_canister(
        child,
        gz.clone(),
        Encode!(&ChildInitArg { parent }).unwrap(),
        Some(controller),
    );
    let health = || {
        Decode!(
            &r.query_call(child, controller, "health", Encode!().unwrap()).unwrap(),
            Health
        )
        .unwrap()
    };
    let set_parent = |sender, arg: Vec<u8>| {
        let reply = r.update_call(child, sender, "set_parent", arg)?;
        Ok::<_, replica::Reject>(Decode!(&reply, Result<(), ChildError>).unwrap())
    };

    let refused = set_parent(stranger, Encode!(&new_parent).unwrap()).unwrap();
    assert_eq!(refused, Err(ChildError::NotAllowed { caller: stranger }));
    assert_eq!(set_parent(parent, Encode!(&new_parent).unwrap()).unwrap(), Ok(()));
    assert_eq!(health().parent, Some(new_parent));

    let before = health();
    assert!(
        set_parent(new_parent, Encode!(&"aaaaa-aa").unwrap()).is_err(),
        "text is not a principal"
    );
    assert_eq!(
        (health().parent, health().total_writes),
        (before.parent, before.total_writes)
    );

    let reply = r
        .query_call(child, controller, "audit_log", Encode!(&0u64, &100u32).unwrap())
        .unwrap();
    let log = Decode!(&reply, Result<Vec<AuditEntry>, ChildError>)
        .unwrap()
        .expect("audit_log");
    let last = log.last().expect("an audit entry");
    assert_eq!(
        (&last.kind, last.caller),
        (&AuditKind::ParentSet { parent: new_parent }, parent)
    );

    let arg = Encode!(&Some(ChildUpgradeArg { parent: Some(parent) })).unwrap();
    r.upgrade_canister(child, gz, arg, Some(controller)).unwrap();
    assert_eq!(health().parent, Some(parent), "moved back by the upgrade argument");
}
