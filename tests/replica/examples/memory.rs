//! Resident memory per child canister: `cargo run -p replica --release --example memory -- [N]` (N children,
//! default 1,000; the child module is wasm/child.wasm.gz or $CHILD_WASM_GZ). Prints the RSS per idle child, per
//! child holding data, and per child holding data whose instance is in memory (it ran in the last rounds), as
//! README.md reports them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candid::{Encode, Principal};
use replica::{ic00, Replica, ReplicaConfig, SLEEP_AFTER_IDLE_ROUNDS};
use shared::child::{ChildInitArg, FillArg};

/// Members written to each child for the "holding data" figure, and their value size.
const MEMBERS: u32 = 100;
const VALUE_SIZE: u32 = 256;
/// Messages submitted before waiting for them (at most 500 may wait between two canisters).
const BATCH: usize = 500;

fn child_wasm_gz() -> Vec<u8> {
    let path = std::env::var_os("CHILD_WASM_GZ")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../wasm/child.wasm.gz"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (build it with scripts/build.sh)", path.display()))
}

/// The process's resident set, after the allocator gave back what it holds freed (so that temporaries of the
/// installs do not count as memory per child).
fn rss_kib() -> u64 {
    // SAFETY: glibc's malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Submits one message per item, `BATCH` at a time, and waits for each.
fn in_batches<T>(r: &Replica, items: &[T], submit: impl Fn(&T) -> replica::MessageId) {
    for (i, batch) in items.chunks(BATCH).enumerate() {
        let ids: Vec<_> = batch.iter().map(&submit).collect();
        for id in ids {
            r.await_call(id).expect("message");
        }
        if items.len() > BATCH {
            eprintln!("  {} of {}", i * BATCH + batch.len(), items.len());
        }
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of children"))
        .unwrap_or(1000);
    let gz = child_wasm_gz();
    let controller = Principal::from_slice(&[7; 29]);
    let init = Encode!(&ChildInitArg { parent: controller }).unwrap();
    // Rounds advance time by 1 ns, so the children's 60 s heartbeat timers stay idle.
    let r = Replica::with_config(ReplicaConfig {
        round_duration: Duration::from_nanos(1),
        ..Default::default()
    });
    let install = |id: &Principal| {
        let args = ic00::InstallCodeArgs {
            mode: ic00::CanisterInstallMode::Install,
            canister_id: *id,
            wasm_module: gz.clone(),
            arg: init.clone(),
            sender_canister_version: None,
        };
        r.submit_call(
            Principal::management_canister(),
            controller,
            "install_code",
            Encode!(&args).unwrap(),
        )
        .expect("submit install_code")
    };
    // The first child compiles the module; what it costs is not per child.
    let first = r.create_canister_with_settings(Some(controller), None);
    in_batches(&r, &[first], install);
    let base = rss_kib();

    let t = Instant::now();
    let ids: Vec<Principal> = (0..n)
        .map(|_| r.create_canister_with_settings(Some(controller), None))
        .collect();
    in_batches(&r, &ids, install);
    eprintln!("installed {n} children in {:.1} s", t.elapsed().as_secs_f64());
    r.tick_n(SLEEP_AFTER_IDLE_ROUNDS + 1);
    let idle = rss_kib();
    let idle_heap = r.heap_resident_bytes(ids[0]) / 1024;

    let t = Instant::now();
    let fill = FillArg {
        count: MEMBERS,
        value_size: VALUE_SIZE,
        prefix: "m".into(),
    };
    in_batches(&r, &ids, |id| {
        r.submit_call(*id, controller, "admin_fill", Encode!(&fill).unwrap())
            .expect("submit admin_fill")
    });
    eprintln!("filled them in {:.1} s", t.elapsed().as_secs_f64());
    r.tick_n(SLEEP_AFTER_IDLE_ROUNDS + 1);
    let data = rss_kib();
    let data_heap = r.heap_resident_bytes(ids[0]) / 1024;
    // A query makes each child's instance again; they stay until the next rounds.
    for id in &ids {
        r.query_call(*id, controller, "member_count", Encode!().unwrap())
            .expect("member_count");
    }
    let running = rss_kib();

    let (pages, resident) = r.stable_memory_pages(ids[0]);
    println!(
        "| {n} | {} KiB | {} KiB | {} KiB | {:.0} MiB | {:.0} MiB | {idle_heap} / {data_heap} of {} KiB heap in RAM, {pages} stable pages ({resident} holding data) |",
        (idle - base) / n as u64,
        (data - base) / n as u64,
        (running - base) / n as u64,
        idle as f64 / 1024.0,
        data as f64 / 1024.0,
        r.heap_size(ids[0]) / 1024,
    );
}
