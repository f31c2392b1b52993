//! Benchmark: a rollout with snapshots before each install against one without. For each N, two fresh fleets (the
//! same as in ROLLOUT.md (b)) are rolled out A → B at concurrency K, one with `snapshot_before_upgrade = All`.
//! Writes `tests/bench/SNAPSHOTS.md` after every measurement.
//!
//! ```sh
//! scripts/build.sh && scripts/build.sh --next
//! cargo run -p bench --release --bin snapshots                          # N = 100, 1,000; K = 50
//! cargo run -p bench --release --bin snapshots -- --fleets 10,100 --concurrency 10
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use bench::report::{group_digits, list_arg, machine, minutes_and_seconds, reproduce};
use bench::rollout::{measure_rollout, RolloutPoint, MEMBERS_PER_CHILD, VALUE_SIZE};
use fleet::cycles::format_cycles;
use fleet::Release;

const COMMAND: &str = "cargo run -p bench --release --bin snapshots";
const DEFAULT_FLEETS: [u32; 2] = [100, 1_000];
const DEFAULT_CONCURRENCY: u32 = 50;

struct Row {
    snapshots: bool,
    point: RolloutPoint,
    /// Children the parent's registry lists with a snapshot afterwards.
    with_snapshot: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fleets = list_arg(&args, "--fleets").unwrap_or(DEFAULT_FLEETS.to_vec());
    let k = list_arg(&args, "--concurrency").map_or(DEFAULT_CONCURRENCY, |v| v[0]);
    let (a, b) = (Release::current(), Release::next());
    let started = Instant::now();
    let mut rows = Vec::new();
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
            write(&rows, k, started.elapsed(), &args);
        }
    }
}

fn write(rows: &[Row], k: u32, took: Duration, args: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("SNAPSHOTS.md");
    std::fs::write(path, render(rows, k, took, args)).expect("write SNAPSHOTS.md");
}

fn render(rows: &[Row], k: u32, took: Duration, args: &[String]) -> String {
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
    md.push_str(
        "\n**Not measured: what a snapshot costs on the IC.** The replica takes and loads snapshots but charges \
         neither instructions nor cycles for them, nor storage for the snapshot's memory, so the cycles above are \
         those of the extra management call only, and how the cost grows with a child's data cannot be measured \
         here yet (the IC's snapshot fees are not modelled).\n",
    );
    md
}
