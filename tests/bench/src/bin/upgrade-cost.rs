//! Benchmark (a): instructions of one upgrade against the data a canister stores, for our child (to the same
//! module and to the `next` build) and for the heap-serializing baseline. Writes `tests/bench/RESULTS.md` and
//! `tests/bench/upgrade-cost.png`.
//!
//! ```sh
//! cargo run -p bench --release --bin upgrade-cost                    # the default sizes, below
//! cargo run -p bench --release --bin upgrade-cost -- --sizes 0,1,10  # other sizes (MiB)
//! ```

use std::time::Instant;

use bench::measure::{measure_series, Kind, Module, Scenario};
use bench::report::{self, machine, minutes_and_seconds, RunInfo};
use bench::results::Results;

/// Data sizes in MiB, for every canister.
const DEFAULT_SIZES_MIB: [u64; 7] = [0, 1, 10, 100, 200, 400, 1024];
/// Sizes measured for the baseline only: its heap cannot hold the data and its serialization at once, so the
/// upgrade fails. (The child would take minutes per series to fill to these sizes, and stays flat.)
const DEFAULT_BASELINE_ONLY_SIZES_MIB: [u64; 1] = [1536];
const COMMAND: &str = "cargo run -p bench --release --bin upgrade-cost";

fn main() {
    let custom_sizes = sizes_from_args();
    let sizes_mib = custom_sizes.clone().unwrap_or(DEFAULT_SIZES_MIB.to_vec());
    let mut baseline_sizes_mib = sizes_mib.clone();
    if custom_sizes.is_none() {
        baseline_sizes_mib.extend(DEFAULT_BASELINE_ONLY_SIZES_MIB);
    }
    let started = Instant::now();
    let child = Module::read("child.wasm.gz", "scripts/build.sh");
    let next = Module::read_optional("next/child.wasm.gz");
    let baseline = Module::read("fixtures/heap_baseline.wasm.gz", "scripts/build.sh --fixtures");

    let child_same = Scenario {
        kind: Kind::Child,
        from: &child,
        to: &child,
    };
    let baseline_same = Scenario {
        kind: Kind::HeapBaseline,
        from: &baseline,
        to: &baseline,
    };
    let results = Results {
        child_same: measure_series("Child → same module", &child_same, &sizes_mib),
        child_next: next.as_ref().map(|next| {
            measure_series(
                "Child → next",
                &Scenario {
                    kind: Kind::Child,
                    from: &child,
                    to: next,
                },
                &sizes_mib,
            )
        }),
        baseline: measure_series("Heap baseline", &baseline_same, &baseline_sizes_mib),
        sizes_mib: baseline_sizes_mib, // a superset of the child's
    };

    let mut command = COMMAND.to_string();
    if let Some(sizes) = custom_sizes {
        let list: Vec<String> = sizes.iter().map(u64::to_string).collect();
        command.push_str(&format!(" -- --sizes {}", list.join(",")));
    }
    let run = RunInfo {
        command,
        machine: machine(),
        run_time: minutes_and_seconds(started.elapsed()),
    };
    let dir = bench::report::bench_dir();
    let results_md = dir.join("RESULTS.md");
    std::fs::write(&results_md, report::render(&results, &run)).expect("write RESULTS.md");
    let png = dir.join("upgrade-cost.png");
    bench::plot::write_png(&png, &results).expect("draw upgrade-cost.png");
    println!("wrote {} and {}", results_md.display(), png.display());
}

/// The sizes (MiB) given as `--sizes 0,1,10`, for every canister; `None` without arguments.
fn sizes_from_args() -> Option<Vec<u64>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => None,
        [flag, list] if flag == "--sizes" => {
            let mut sizes: Vec<u64> = list
                .split(',')
                .map(|s| s.trim().parse().expect("--sizes takes MiB like 0,1,10"))
                .collect();
            sizes.sort_unstable();
            sizes.dedup();
            Some(sizes)
        }
        _ => {
            eprintln!("usage: upgrade-cost [--sizes 0,1,10,100]");
            std::process::exit(2);
        }
    }
}
