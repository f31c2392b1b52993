//! Benchmark: the parent's planner before and after the registry became its queue. The same fleet, created by the
//! shipped 0.1.0 parent, is moved to the 0.2.0 child by two parents: the shipped 0.2.0 parent (which wrote a queued
//! entry and an index entry for every child it planned, decoding each entry whole) and the current one (which writes
//! nothing for a child until it launches it, and reads only the head of an entry it passes). Then each starts a rollout over the fleet now on the release, where the planner only reads.
//! Writes `tests/bench/PLANNER.md`.
//!
//! ```sh
//! scripts/build.sh
//! cargo run -p bench --release --bin planner                        # N = 1,000, K = 100
//! cargo run -p bench --release --bin planner -- --children 200 --concurrency 20
//! ```

use std::fmt::Write;
use std::time::Instant;

use bench::report::{bench_dir, group_digits, list_arg, machine, minutes_and_seconds, reproduce};
use bench::rollout::ParentExecutions;
use fleet::{Fleet, FleetConfig, ParentUpgrade, Release, RolloutRun};

const COMMAND: &str = "cargo run -p bench --release --bin planner";
const SHIPPED: &str = "tests/fixtures/golden";
const MAX_ROUNDS: u64 = 100_000;
/// The goals: instructions the planner spends per registry entry it reads, and in one tick (which reads at most
/// `PLAN_BATCH` = 500 entries).
const PER_ENTRY_GOAL: u64 = 40_000;
const PER_TICK_GOAL: u64 = 20_000_000;

struct Row {
    parent: &'static str,
    /// The rollout 0.1.0 → 0.2.0 child, from the parent's upgrade to its end.
    rollout: RolloutRun,
    upgrade: ParentExecutions,
    /// `start_rollout` over the fleet on the release: every entry read, none launched.
    reread: RolloutRun,
    reread_parent: ParentExecutions,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = list_arg(&args, "--children").map_or(1_000, |v| v[0]);
    let k = list_arg(&args, "--concurrency").map_or(100, |v| v[0]);
    let started = Instant::now();
    let first = Release::from_dir(format!("{SHIPPED}/0.1.0"));
    let parents = [
        ("0.2.0 (shipped)", Release::from_dir(format!("{SHIPPED}/0.2.0"))),
        ("current", Release::current()),
    ];
    let mut rows = Vec::new();
    for (parent, release) in parents {
        eprintln!("planner: {parent} parent, N = {n}, K = {k} ...");
        let mut fleet = Fleet::new(&first, FleetConfig::with_concurrency(k));
        fleet.create_children(n);
        let (rollout, upgrade) = measured(&fleet, |f| {
            f.upgrade_parent(&release, ParentUpgrade::Direct)
                .expect("upgrade the parent")
        });
        assert!(
            rollout.finished && rollout.status.upgraded == u64::from(n),
            "{:#?}",
            rollout.status
        );
        let (reread, reread_parent) = measured(&fleet, |f| {
            f.parent().start_rollout(f.controller).expect("start_rollout");
        });
        assert!(
            reread.finished && reread.status.skipped == u64::from(n),
            "{:#?}",
            reread.status
        );
        rows.push(Row {
            parent,
            rollout,
            upgrade,
            reread,
            reread_parent,
        });
    }
    let report = render(&rows, n, k, &args, started.elapsed());
    let path = bench_dir().join("PLANNER.md");
    std::fs::write(&path, report).expect("write PLANNER.md");
    eprintln!("wrote {}", path.display());
}

/// Runs `start`, then the rollout it began to its end; returns the run and the parent's executions in it.
fn measured(fleet: &Fleet, start: impl FnOnce(&Fleet)) -> (RolloutRun, ParentExecutions) {
    let from = fleet.replica.executions().len();
    start(fleet);
    let run = fleet.run_rollout_to_end(MAX_ROUNDS);
    let executions: Vec<_> = fleet.replica.executions().into_iter().skip(from).collect();
    (run, ParentExecutions::of(&executions, fleet.parent))
}

fn render(rows: &[Row], n: u32, k: u32, args: &[String], took: std::time::Duration) -> String {
    let per = |total: u64| group_digits(total / u64::from(n));
    let mut out = String::new();
    writeln!(out, "# The planner: before and after the registry became its queue\n").unwrap();
    writeln!(
        out,
        "{} children created by the shipped 0.1.0 parent are moved to the 0.2.0 child at K = {k} by two parents: the \
         shipped 0.2.0 parent, whose planner wrote every child it planned as queued (its registry entry rewritten \
         and an entry in the PENDING index), and the current parent, which reads the registry as slots free up and \
         writes a child's entry only when it locks it, decoding only the head of an entry it passes. Then each \
         parent starts a rollout over the fleet now on the release: every entry is read and none is launched, so \
         those timer executions are the planner alone.\n",
        group_digits(u64::from(n))
    )
    .unwrap();
    writeln!(
        out,
        "| Parent | Rollout rounds | Parent instructions, whole rollout (per child) | Largest parent execution | \
         Re-read of the fleet on the release: timer instructions per entry | Its largest timer execution |"
    )
    .unwrap();
    writeln!(out, "|:---|---:|---:|---:|---:|---:|").unwrap();
    for r in rows {
        writeln!(
            out,
            "| {} | {} | {} ({}) | {} | {} | {} |",
            r.parent,
            r.rollout.rounds,
            group_digits(r.upgrade.all.total),
            per(r.upgrade.all.total),
            group_digits(r.upgrade.all.max),
            per(r.reread_parent.timer.total),
            group_digits(r.reread_parent.timer.max),
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nRe-read: {} rounds for the shipped parent, {} for the current one. \"Parent instructions\" counts every \
         parent execution but queries and install_code (timers, callbacks, updates), as ROLLOUT.md does.\n",
        rows.first().map_or(0, |r| r.reread.rounds),
        rows.last().map_or(0, |r| r.reread.rounds),
    )
    .unwrap();
    if let Some(current) = rows.last() {
        let per_entry = current.reread_parent.timer.total / u64::from(n);
        let per_tick = current.reread_parent.timer.max;
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        writeln!(
            out,
            "Goals: at most {} instructions per registry entry the planner reads, and a tick (at most 500 entries) \
             under {}. The current parent: {} per entry → {}; largest tick {} → {}. It reads an entry's head (the \
             installed module hash and the phase, the first two fields) and decodes the whole entry only for a child \
             it launches; nothing is written for a child it does not launch.\n",
            group_digits(PER_ENTRY_GOAL),
            group_digits(PER_TICK_GOAL),
            group_digits(per_entry),
            verdict(per_entry <= PER_ENTRY_GOAL),
            group_digits(per_tick),
            verdict(per_tick < PER_TICK_GOAL),
        )
        .unwrap();
    }
    writeln!(
        out,
        "Reproduce: `scripts/build.sh && {}` (the shipped parents come from `{SHIPPED}`; {} on {}).",
        reproduce(COMMAND, args),
        minutes_and_seconds(took),
        machine()
    )
    .unwrap();
    out
}
