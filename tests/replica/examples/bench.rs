//! Benchmarks: `cargo run -p replica --release --example bench` (uses wasm/child.wasm.gz or $CHILD_WASM_GZ).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candid::{Encode, Principal};
use replica::{ExecutionRecord, Replica, ReplicaConfig};
use shared::child::{ChildInitArg, ChildUpgradeArg, FillArg, MemberInput};

fn child_wasm_gz() -> Vec<u8> {
    let path = std::env::var_os("CHILD_WASM_GZ")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../wasm/child.wasm.gz"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (build it with scripts/build.sh)", path.display()))
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn last(r: &Replica, id: Principal, entry: &str) -> ExecutionRecord {
    r.last_execution(id, entry).expect("execution recorded")
}

fn main() {
    let gz = child_wasm_gz();
    let controller = Principal::from_slice(&[7; 29]);
    let init = Encode!(&ChildInitArg { parent: controller }).unwrap();
    let r = Replica::new();

    // Install (the first one compiles the module).
    let id = r.create_canister_with_settings(Some(controller), None);
    let t = Instant::now();
    r.install_canister(id, gz.clone(), init.clone(), Some(controller));
    let first = t.elapsed();
    let id2 = r.create_canister_with_settings(Some(controller), None);
    let t = Instant::now();
    r.install_canister(id2, gz.clone(), init.clone(), Some(controller));
    println!(
        "install child: first {:?} (includes compile), cached module {:?}, canister_init {} instructions",
        first,
        t.elapsed(),
        last(&r, id2, "canister_init").instructions
    );

    // One update call (ingress: 1 round).
    let input = MemberInput {
        name: "alice".into(),
        value: vec![1; 100],
    };
    let t = Instant::now();
    r.update_call(
        id,
        controller,
        "add_member",
        Encode!(&"alice".to_string(), &input).unwrap(),
    )
    .unwrap();
    println!(
        "update call add_member: {:?}, {} instructions",
        t.elapsed(),
        last(&r, id, "canister_update add_member").instructions
    );

    // A fleet of 1,000 children. Rounds advance time by 1 ns here, so their 60 s heartbeat timers stay idle.
    let fleet = Replica::with_config(ReplicaConfig {
        round_duration: Duration::from_nanos(1),
        ..Default::default()
    });
    let rss_before = rss_mib();
    let t = Instant::now();
    let mut last_id = controller;
    for _ in 0..1000 {
        last_id = fleet.create_canister_with_settings(Some(controller), None);
        fleet.install_canister(last_id, gz.clone(), init.clone(), Some(controller));
    }
    println!(
        "install 1,000 children: {:?}; RSS grew {:.0} MiB (to {:.0} MiB); heap of one child {} KiB",
        t.elapsed(),
        rss_mib() - rss_before,
        rss_mib(),
        fleet.heap_size(last_id) / 1024
    );
    let t = Instant::now();
    for _ in 0..1000 {
        fleet.tick();
    }
    println!(
        "idle round over 1,000 canisters: {:?} per round (mean of 1,000)",
        t.elapsed() / 1000
    );
    fleet.advance_time(Duration::from_secs(61));
    let t = Instant::now();
    fleet.tick();
    fleet.tick();
    println!(
        "all 1,000 heartbeat timers due: 2 rounds (timer + self-call timer_executor) took {:?}",
        t.elapsed()
    );
    drop(fleet);

    // Upgrade a child holding 100 MiB of stable data.
    let t = Instant::now();
    for i in 0..25 {
        let arg = FillArg {
            count: 1000,
            value_size: 4096,
            prefix: format!("p{i:02}-"),
        };
        r.update_call(id, controller, "admin_fill", Encode!(&arg).unwrap())
            .unwrap();
    }
    let (pages, resident) = r.stable_memory_pages(id);
    println!(
        "fill 100 MiB: {:?}; stable memory {} pages ({} resident)",
        t.elapsed(),
        pages,
        resident
    );
    r.stop_canister(id, Some(controller)).unwrap();
    let t = Instant::now();
    r.upgrade_canister(
        id,
        gz,
        Encode!(&Some(ChildUpgradeArg::default())).unwrap(),
        Some(controller),
    )
    .unwrap();
    let upgrade = t.elapsed();
    println!(
        "upgrade child with {} MiB stable data: {:?}, post_upgrade {} instructions",
        pages * 65536 / (1024 * 1024),
        upgrade,
        last(&r, id, "canister_post_upgrade").instructions
    );
}
