//! Benchmark: a rollout with snapshots before each install against one without. For each N, two fresh fleets (the
//! same as in ROLLOUT.md (b)) are rolled out A → B at concurrency K, one with `snapshot_before_upgrade = All`. Then one
//! child holding more and more data: its snapshot's cost, and the cost of restoring it.
//! Writes `tests/bench/SNAPSHOTS.md` after every measurement.
//!
//! ```sh
//! scripts/build.sh && scripts/build.sh --next
//! cargo run -p bench --release --bin snapshots                          # N = 100, 1,000; K = 50
//! cargo run -p bench --release --bin snapshots -- --fleets 10,100 --concurrency 10
//! ```

use std::time::{Duration, Instant};

use bench::report::{bench_dir, group_digits, list_arg, machine, minutes_and_seconds, reproduce};
use bench::rollout::{measure_rollout, RolloutPoint, MEMBERS_PER_CHILD, VALUE_SIZE};
use fleet::cycles::{format_cycles, Balances, CyclesReport};
use fleet::{Fleet, FleetConfig, ParentUpgrade, Release};
use shared::child::MAX_VALUE_BYTES;
use shared::parent::{RestoreTarget, SnapshotPolicy};

const COMMAND: &str = "cargo run -p bench --release --bin snapshots";
const DEFAULT_FLEETS: [u32; 2] = [100, 1_000];
const DEFAULT_CONCURRENCY: u32 = 50;
/// Data held by the one child of the cost-versus-size runs, MiB.
const DEFAULT_DATA_MIB: [u32; 4] = [0, 4, 16, 64];
const MIB: u32 = 1 << 20;

struct Row {
    snapshots: bool,
    point: RolloutPoint,
    /// Children the parent's registry lists with a snapshot afterwards.
    with_snapshot: usize,
}

/// One child holding `mib` MiB of members, upgraded with snapshots off and on.
struct SizeRow {
    mib: u32,
    /// The child's cycles spent over its rollout: snapshots off, on.
    child_cycles: [i128; 2],
    rounds: [u64; 2],
    /// Restoring the snapshot afterwards: the child's cycles and the rounds.
    restore: (i128, u64),
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fleets = list_arg(&args, "--fleets").unwrap_or(DEFAULT_FLEETS.to_vec());
    let k = list_arg(&args, "--concurrency").map_or(DEFAULT_CONCURRENCY, |v| v[0]);
    let sizes = list_arg(&args, "--data-mib").unwrap_or(DEFAULT_DATA_MIB.to_vec());
    let (a, b) = (Release::current(), Release::next());
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut size_rows = Vec::new();
    for n in fleets {
        for snapshots in [false, true] {
            eprintln!(
                "snapshots: N = {n}, K = {k}, snapshots {} ...",
                if snapshots { "on" } else { "off" }
            );
            let (point, fleet) = measure_rollout(&a, &b, n, k, snapshots);
            let p = fleet.parent();
            let with_snapshot = fleet
                .children
                .iter()
                .filter(|c| p.get_child(**c).is_some_and(|i| i.snapshot.is_some()))
                .count();
            rows.push(Row {
                snapshots,
                point,
                with_snapshot,
            });
            write(&rows, &size_rows, k, started.elapsed(), &args);
        }
    }
    for mib in sizes {
        eprintln!("snapshots: one child holding {mib} MiB ...");
        let [(off, _), (on, restore)] = [false, true].map(|snapshots| one_child_rollout(&a, &b, mib, snapshots));
        let restore = restore.expect("restored with snapshots on");
        size_rows.push(SizeRow {
            mib,
            child_cycles: [off.children[0], on.children[0]],
            rounds: [off.rounds, on.rounds],
            restore: (restore.children[0], restore.rounds),
        });
        write(&rows, &size_rows, k, started.elapsed(), &args);
    }
}

/// A parent of `a` with one child holding `mib` MiB of members is upgraded to `b`; what the rollout cost and, with
/// snapshots, what restoring the snapshot it took cost then.
fn one_child_rollout(a: &Release, b: &Release, mib: u32, snapshots: bool) -> (CyclesReport, Option<CyclesReport>) {
    let mut fleet = Fleet::new(a, FleetConfig::with_concurrency(1));
    fleet.create_children(1);
    let value = MAX_VALUE_BYTES as u32;
    if mib > 0 {
        fleet.fill_all(mib * (MIB / value), value);
    }
    let policy = if snapshots {
        SnapshotPolicy::All
    } else {
        SnapshotPolicy::Off
    };
    fleet
        .parent()
        .set_snapshot_policy(fleet.controller, policy)
        .expect("set_snapshot_policy");
    let rollout = measured(&fleet, |f| {
        f.upgrade_parent(b, ParentUpgrade::Direct)
            .expect("upgrade the parent A → B")
    });
    let restore = snapshots.then(|| {
        measured(&fleet, |f| {
            let target = RestoreTarget::Rollout(f.parent().rollout_status().rollout_id);
            f.parent()
                .restore_snapshots(f.controller, target)
                .expect("restore_snapshots");
        })
    });
    (rollout, restore)
}

/// Runs `start`, then the rollout it began to its end; what it cost.
fn measured(fleet: &Fleet, start: impl FnOnce(&Fleet)) -> CyclesReport {
    let before = Balances::of(fleet);
    let round0 = fleet.replica.round();
    start(fleet);
    let run = fleet.run_rollout_to_end(10_000);
    assert!(run.finished && run.status.failed == 0, "{:#?}", run.status);
    CyclesReport::between(&before, &Balances::of(fleet), run.last_round - round0)
}

fn write(rows: &[Row], size_rows: &[SizeRow], k: u32, took: Duration, args: &[String]) {
    let path = bench_dir().join("SNAPSHOTS.md");
    std::fs::write(path, render(rows, size_rows, k, took, args)).expect("write SNAPSHOTS.md");
}

fn render(rows: &[Row], size_rows: &[SizeRow], k: u32, took: Duration, args: &[String]) -> String {
    let command = reproduce(COMMAND, args);
    let mut md = format!(
        "# Benchmark: rollouts with snapshots on and off\n\n<!-- Written by tests/bench/src/bin/snapshots.rs. -->\n\n\
         For each N, two fresh fleets of N children ({MEMBERS_PER_CHILD} members of {VALUE_SIZE} bytes each) are \
         rolled out A → B at K = {k}, as in [ROLLOUT.md](ROLLOUT.md) (b): once as shipped (`snapshot_before_upgrade = \
         Off`) and once with `All`, where the parent takes a `take_canister_snapshot` of each stopped child before \
         its install. Every child is verified afterwards (running, on B, data intact, registry in agreement). The \
         floor is ROLLOUT.md's, with one more sequential call per child when snapshots are on.\n\n\
         ## Reproduce\n\n```sh\nscripts/build.sh && scripts/build.sh --next\n{command}\n```\n\n\
         Machine: {}. The run took {}. Wall times are indicative only; rounds, instructions and cycles are \
         deterministic. Instructions are wasmi fuel plus the IC's System API charges.\n\n\
         | N | Snapshots | Rounds | Floor | Management calls | Largest timer execution | \
         Parent instructions, all executions | Cycles: parent / children / total | Children with a snapshot | \
         Verified | Wall: rollout |\n|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        machine(),
        minutes_and_seconds(took)
    );
    for r in rows {
        let p = &r.point;
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {}/{} | {:.1} s |\n",
            group_digits(u64::from(p.children)),
            if r.snapshots { "on" } else { "off" },
            group_digits(p.rounds),
            group_digits(p.floor),
            group_digits(p.management_calls as u64),
            group_digits(p.parent.timer.max),
            group_digits(p.parent.all.total),
            format_cycles(p.cycles.parent),
            format_cycles(p.cycles.children_total()),
            format_cycles(p.cycles.total()),
            group_digits(r.with_snapshot as u64),
            p.verified,
            p.children,
            p.wall_rollout.as_secs_f64(),
        ));
    }
    md.push_str(&format!(
        "\n## What a child's snapshot costs as its data grows\n\n\
         One child holding N MiB of members ({MAX_VALUE_BYTES}-byte values) is upgraded A → B, once with snapshots \
         off and once on; then that snapshot is restored (`restore_snapshots`: status and funds, stop, load, start). The replica \
         charges as the IC does (tests/replica/README.md): a snapshot costs the snapshotted child \
         execution_cost(2B + one instruction per byte of the snapshot: Wasm and stable memory, module, chunk store, \
         certified data, globals), and its memory is then billed as storage too; a load costs execution_cost(2B), \
         then execution_cost(the cached module's compilation + one instruction per byte of the snapshot). Cycles are \
         the child's balance change over each rollout (operations, storage, and the snapshot or the load).\n\n\
         | Data | Child's cycles: snapshots off | on | Difference | Rounds: off / on | Restore: child's cycles | \
         Restore: rounds |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n"
    ));
    for r in size_rows {
        md.push_str(&format!(
            "| {} MiB | {} | {} | {} | {} / {} | {} | {} |\n",
            r.mib,
            format_cycles(r.child_cycles[0]),
            format_cycles(r.child_cycles[1]),
            format_cycles(r.child_cycles[1] - r.child_cycles[0]),
            r.rounds[0],
            r.rounds[1],
            format_cycles(r.restore.0),
            r.restore.1
        ));
    }
    md
}
