//! Benchmarks (b)–(d): the parent's rollout A → B across fleets of real children, a no-op redeploy, and the parent
//! with a large registry. Writes `tests/bench/ROLLOUT.md` and `tests/bench/rollout.png` (after every measurement).
//!
//! ```sh
//! cargo run -p bench --release --bin rollout                                  # the defaults below
//! cargo run -p bench --release --bin rollout -- --fleets 10,100 --concurrency 1,10 --registry 0
//! ```

use std::time::Instant;

use bench::report::{bench_dir, group_digits, machine, minutes_and_seconds, RunInfo};
use bench::rollout::{measure_noop_redeploy, measure_registry, measure_rollout};
use bench::rollout_report::{self, RolloutResults};
use fleet::{hash8, Release};

const COMMAND: &str = "cargo run -p bench --release --bin rollout";
const DEFAULT_FLEETS: [u32; 3] = [10, 100, 1_000];
const DEFAULT_CONCURRENCY: [u32; 3] = [1, 10, 50];
const DEFAULT_REGISTRY: u32 = 10_000;
/// K after the planner has read the large registry in (d).
const REGISTRY_CONCURRENCY: u32 = 50;

struct Args {
    fleets: Vec<u32>,
    concurrency: Vec<u32>,
    /// Entries of the large registry in (d); 0 skips it.
    registry: u32,
    /// The arguments as given, for the reproduce command.
    given: Vec<String>,
}

fn main() {
    let args = parse_args();
    let started = Instant::now();
    let a = Release::current();
    let b = Release::next();
    let mut results = RolloutResults {
        modules: [("A", &a), ("B", &b)]
            .iter()
            .map(|(name, r)| {
                format!(
                    "Release {name}: `{}` (SHA-256 `{}…`, {} bytes), embedding child `{}…` (`{}`)",
                    r.path
                        .strip_prefix(fleet::wasms::repo_root())
                        .unwrap_or(&r.path)
                        .display(),
                    &hex::encode(r.parent_hash())[..16],
                    group_digits(r.parent_wasm.len() as u64),
                    hash8(&r.expect_child_hash()),
                    r.child_version.as_deref().unwrap_or("?"),
                )
            })
            .collect(),
        ..Default::default()
    };
    let mut todo: Vec<String> = Vec::new();
    for &n in &args.fleets {
        for &k in &args.concurrency {
            todo.push(format!("(b) N = {n}, K = {k}"));
        }
        todo.push(format!("(c) N = {n}"));
    }
    if args.registry > 0 {
        todo.push(format!("(d) {} registered", args.registry));
    }
    let write = |results: &RolloutResults, todo: &[String]| {
        let mut results = results.clone();
        results.missing = todo.to_vec();
        write_outputs(&results, &args, started);
    };

    for &n in &args.fleets {
        for (i, &k) in args.concurrency.iter().enumerate() {
            eprintln!("(b) rollout of {n} children at K = {k} ...");
            let (point, fleet) = measure_rollout(&a, &b, n, k, false);
            eprintln!(
                "    {} rounds (floor {}, {:.3}×), largest parent execution {:?}, {}/{} verified, setup {:.1} s, rollout {:.1} s",
                point.rounds,
                point.floor,
                point.ratio(),
                point.parent.largest,
                point.verified,
                n,
                point.wall_setup.as_secs_f64(),
                point.wall_rollout.as_secs_f64()
            );
            results.rollouts.push(point);
            todo.retain(|t| *t != format!("(b) N = {n}, K = {k}"));
            if i + 1 == args.concurrency.len() {
                eprintln!("(c) no-op redeploy of the parent of {n} children ...");
                let noop = measure_noop_redeploy(&fleet, &b);
                eprintln!(
                    "    post_upgrade {}, {} management calls, {} parent executions afterwards",
                    noop.install[2], noop.management_calls, noop.parent.all.count
                );
                results.noops.push(noop);
                todo.retain(|t| *t != format!("(c) N = {n}"));
            }
            drop(fleet);
            write(&results, &todo);
        }
    }
    if args.registry > 0 {
        eprintln!("(d) {} empty canisters registered with the parent ...", args.registry);
        let point = measure_registry(&a, &b, args.registry, REGISTRY_CONCURRENCY);
        eprintln!(
            "    upgrade {:?}, after it {:?}, launching max {:?}",
            point.upgrade, point.after_upgrade.largest, point.launching.largest
        );
        results.registry = Some(point);
        todo.clear();
        write(&results, &todo);
    }
    let dir = bench_dir();
    println!(
        "wrote {} and {}",
        dir.join("ROLLOUT.md").display(),
        dir.join("rollout.png").display()
    );
}

fn write_outputs(results: &RolloutResults, args: &Args, started: Instant) {
    let mut command = COMMAND.to_string();
    if !args.given.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.given.join(" "));
    }
    let run = RunInfo {
        command,
        machine: machine(),
        run_time: minutes_and_seconds(started.elapsed()),
    };
    let dir = bench_dir();
    std::fs::write(dir.join("ROLLOUT.md"), rollout_report::render(results, &run)).expect("write ROLLOUT.md");
    if !results.rollouts.is_empty() {
        rollout_report::write_png(&dir.join("rollout.png"), results).expect("draw rollout.png");
    }
}

fn parse_args() -> Args {
    let given: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        fleets: DEFAULT_FLEETS.to_vec(),
        concurrency: DEFAULT_CONCURRENCY.to_vec(),
        registry: DEFAULT_REGISTRY,
        given: given.clone(),
    };
    let list = |s: &str| -> Vec<u32> {
        let mut v: Vec<u32> = s
            .split(',')
            .map(|x| x.trim().parse().unwrap_or_else(|_| usage()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut it = given.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--fleets" => args.fleets = list(value),
            "--concurrency" => args.concurrency = list(value),
            "--registry" => args.registry = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if args.concurrency.contains(&0) || args.fleets.contains(&0) {
        usage();
    }
    args
}

fn usage() -> ! {
    eprintln!("usage: rollout [--fleets 10,100,1000] [--concurrency 1,10,50] [--registry 10000 (0: skip)]");
    std::process::exit(2);
}
