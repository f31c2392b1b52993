//! Renders `ROLLOUT.md` (from `ROLLOUT.template.md`) and draws `rollout.png` for benchmarks (b)–(d).

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use fleet::cycles::{format_cycles, MAINNET_ROUNDS_PER_SECOND};
use plotters::prelude::*;

use crate::plot::{log_log_chart, register_font, short_count, FONT, SERIES_COLORS, SIZE};
use crate::report::{group_digits, RunInfo};
use crate::rollout::{
    NoopPoint, ParentExecutions, RegistryPoint, RolloutPoint, AFTER_UPGRADE_ROUNDS, CALLS_PER_CHILD, FLOOR_GOAL_RATIO,
    IC_MESSAGE_LIMIT, MEMBERS_PER_CHILD, NOOP_ROUNDS, POST_UPGRADE_TARGET, REGISTRY_LAUNCH_ROUNDS, TICK_TARGET,
    VALUE_SIZE,
};

const TEMPLATE: &str = include_str!("ROLLOUT.template.md");

/// Everything one run of the `rollout` binary measured (so far).
#[derive(Clone, Debug, Default)]
pub struct RolloutResults {
    /// Release A and B, described (path, SHA-256 prefix, size).
    pub modules: Vec<String>,
    pub rollouts: Vec<RolloutPoint>,
    pub noops: Vec<NoopPoint>,
    pub registry: Option<RegistryPoint>,
    /// What the run was asked for but did not measure (yet).
    pub missing: Vec<String>,
}

pub fn render(results: &RolloutResults, run: &RunInfo) -> String {
    [
        ("{{command}}", run.command.clone()),
        ("{{machine}}", run.machine.clone()),
        ("{{run_time}}", run.run_time.clone()),
        (
            "{{modules}}",
            results.modules.iter().map(|m| format!("- {m}\n")).collect(),
        ),
        (
            "{{members}}",
            format!("{MEMBERS_PER_CHILD} members of {VALUE_SIZE} bytes"),
        ),
        ("{{rollout_table}}", rollout_table(results)),
        ("{{noop_table}}", noop_table(results)),
        ("{{registry}}", registry_section(results)),
        ("{{goals}}", goals(results)),
        ("{{missing}}", missing(results)),
        ("{{noop_rounds}}", NOOP_ROUNDS.to_string()),
        ("{{launch_rounds}}", REGISTRY_LAUNCH_ROUNDS.to_string()),
    ]
    .iter()
    .fold(TEMPLATE.to_string(), |text, (placeholder, value)| {
        text.replace(placeholder, value)
    })
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn stats_max_median(s: &fleet::records::Stats) -> String {
    if s.count == 0 {
        "–".into()
    } else {
        format!("{} / {}", group_digits(s.max), group_digits(s.median))
    }
}

fn rollout_table(results: &RolloutResults) -> String {
    if results.rollouts.is_empty() {
        return "Not measured in this run.\n".into();
    }
    let mut out = String::from(
        "| N | K | Rounds | Floor | Rounds / floor | Timer executions: max / median | All parent executions: max / median \
         (count) | Largest parent execution | Parent post_upgrade | Child upgrade: max / median | Max in slot-taking steps | \
         Verified | Wall: setup / rollout |\n|---:|---:|---:|---:|---:|---:|---:|:---|---:|---:|---:|---:|---:|\n",
    );
    for p in &results.rollouts {
        let rounds = if p.finished {
            group_digits(p.rounds)
        } else {
            format!("**not finished** after {}", group_digits(p.rounds))
        };
        writeln!(
            out,
            "| {} | {} | {rounds} | {} | {:.3}× | {} | {} ({}) | {} | {} | {} | {} | {}/{} | {} / {} |",
            group_digits(p.children.into()),
            p.concurrency,
            group_digits(p.floor),
            p.ratio(),
            stats_max_median(&p.parent.timer),
            stats_max_median(&p.parent.all),
            group_digits(p.parent.all.count as u64),
            largest(&p.parent),
            group_digits(p.post_upgrade),
            stats_max_median(&p.child_install),
            p.max_slots,
            group_digits(p.verified as u64),
            group_digits(p.children.into()),
            secs(p.wall_setup),
            secs(p.wall_rollout),
        )
        .unwrap();
    }
    let call_rounds: Vec<u64> = results.rollouts.iter().map(|p| p.call_rounds).collect();
    let (lo, hi) = (call_rounds.iter().min().unwrap(), call_rounds.iter().max().unwrap());
    let measured = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo} to {hi}")
    };
    write!(
        out,
        "\nFloor = ⌈N / K⌉ × {CALLS_PER_CHILD} × m, where m = {measured} is the replica's minimum number of rounds for one \
         management call from the parent, measured in every run: the smallest gap between the rounds in which the \
         management canister handled two consecutive calls of one child operation (canister_status → stop → \
         install_code → start → canister_status), each made from the callback of the one before (`Replica::management_calls`). The floor \
         leaves out the rounds before the first stop (the upgrade, the timer, the ic-cdk-timers executor self-call) and \
         the last child's confirm.\n"
    )
    .unwrap();
    write!(
        out,
        "\nCycles the rollout cost (13-node application subnet fees, from the parent's upgrade to the end; the \
         children's part is their installs, their own timers and their storage), and what the rounds would take on mainnet at \
         {MAINNET_ROUNDS_PER_SECOND} round per second, an estimate:\n\n| N | K | Parent | Children | Per child: \
         min / median / max | Total | Mainnet estimate |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    )
    .unwrap();
    for p in &results.rollouts {
        let c = &p.cycles;
        let (min, median, max) = c.children_spread();
        writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} / {} | {} | {:.0} s |",
            group_digits(p.children.into()),
            p.concurrency,
            format_cycles(c.parent),
            format_cycles(c.children_total()),
            format_cycles(min),
            format_cycles(median),
            format_cycles(max),
            format_cycles(c.total()),
            c.mainnet_seconds()
        )
        .unwrap();
    }
    let traps: usize = results.rollouts.iter().map(|p| p.parent.traps).sum();
    if traps > 0 {
        writeln!(out, "\n{traps} parent executions trapped during the rollouts.").unwrap();
    }
    out
}

fn largest(p: &ParentExecutions) -> String {
    p.largest
        .as_ref()
        .map_or("–".into(), |(entry, n)| format!("{} (`{entry}`)", group_digits(*n)))
}

fn noop_table(results: &RolloutResults) -> String {
    if results.noops.is_empty() {
        return "Not measured in this run.\n".into();
    }
    let mut out = String::from(
        "| N | Parent's open call contexts at the upgrade | Parent pre_upgrade | Parent post_upgrade | Management calls by \
         the parent afterwards | Parent executions afterwards (queries excluded) | Largest of them | Rollout still \
         finished |\n|---:|---:|---:|---:|---:|---:|:---|:---:|\n",
    );
    for p in &results.noops {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            group_digits(p.children.into()),
            p.open_contexts_before,
            group_digits(p.install[0]),
            group_digits(p.install[2]),
            p.management_calls,
            p.parent.all.count,
            largest(&p.parent),
            if p.still_finished { "yes" } else { "**no**" },
        )
        .unwrap();
    }
    out
}

fn registry_section(results: &RolloutResults) -> String {
    let Some(r) = &results.registry else {
        return "Not measured in this run.\n".into();
    };
    let mut out = String::new();
    writeln!(
        out,
        "| What ({} registered) | Instructions |\n|:---|---:|",
        group_digits(r.registered)
    )
    .unwrap();
    let row = |out: &mut String, what: &str, value: String| writeln!(out, "| {what} | {value} |").unwrap();
    row(
        &mut out,
        "Parent upgrade A → B: `canister_pre_upgrade`",
        group_digits(r.upgrade[0]),
    );
    row(
        &mut out,
        "Parent upgrade A → B: `canister_post_upgrade`",
        group_digits(r.upgrade[2]),
    );
    row(
        &mut out,
        "Parent upgrade A → B: whole install_code",
        group_digits(r.upgrade.iter().sum()),
    );
    row(
        &mut out,
        &format!(
            "K = 0, {AFTER_UPGRADE_ROUNDS} rounds after the upgrade: timer executions max / median ({} executions)",
            r.after_upgrade.timer.count
        ),
        stats_max_median(&r.after_upgrade.timer),
    );
    row(
        &mut out,
        &format!(
            "K = {}, {} rounds: timer executions max / median ({} executions)",
            r.launch_concurrency, REGISTRY_LAUNCH_ROUNDS, r.launching.timer.count
        ),
        stats_max_median(&r.launching.timer),
    );
    row(
        &mut out,
        &format!(
            "K = {}, {} rounds: largest parent execution of {} ({} management calls, {} children installed)",
            r.launch_concurrency,
            REGISTRY_LAUNCH_ROUNDS,
            r.launching.all.count,
            r.launching_calls,
            r.launching_installs
        ),
        largest(&r.launching),
    );
    writeln!(
        out,
        "\nSetup (creating and registering the canisters) took {}.",
        secs(r.wall_setup)
    )
    .unwrap();
    out
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**not met**"
    }
}

fn goals(results: &RolloutResults) -> String {
    let mut out = String::new();
    let largest = results
        .rollouts
        .iter()
        .rfind(|p| p.children == 1_000 && p.concurrency == 50);
    match largest {
        Some(p) => writeln!(
            out,
            "- (b) 1,000 children at K = 50 within {FLOOR_GOAL_RATIO}× the floor: {} rounds, floor {}, {:.3}× → {}.",
            group_digits(p.rounds),
            group_digits(p.floor),
            p.ratio(),
            verdict(p.finished && p.ratio() <= FLOOR_GOAL_RATIO)
        )
        .unwrap(),
        None => out.push_str("- (b) 1,000 children at K = 50 within 1.2× the floor: not measured in this run.\n"),
    }
    if !results.rollouts.is_empty() {
        let all_verified = results
            .rollouts
            .iter()
            .all(|p| p.finished && p.verified == p.children as usize);
        let max_tick = results.rollouts.iter().map(|p| p.parent.all.max).max().unwrap_or(0);
        let max_slots_ok = results.rollouts.iter().all(|p| p.max_slots <= p.concurrency as usize);
        writeln!(
            out,
            "- (b) Every parent execution during the rollouts within the {} per-tick target: largest {} → {} \
             (the IC's limit is {}).",
            short_count(TICK_TARGET as f64),
            group_digits(max_tick),
            verdict(max_tick <= TICK_TARGET),
            short_count(IC_MESSAGE_LIMIT as f64),
        )
        .unwrap();
        writeln!(
            out,
            "- (b) Every rollout finished with every child running B's child, data intact, registry in agreement, and \
             at most K children in slot-taking steps: {}.",
            verdict(all_verified && max_slots_ok)
        )
        .unwrap();
    }
    if !results.noops.is_empty() {
        let calls: Vec<String> = results
            .noops
            .iter()
            .map(|p| format!("{} at N = {}", p.management_calls, group_digits(p.children.into())))
            .collect();
        let met = results.noops.iter().all(|p| p.management_calls == 0);
        writeln!(
            out,
            "- (c) A no-op redeploy makes 0 management calls at every size: {} → {}.",
            calls.join(", "),
            verdict(met)
        )
        .unwrap();
    }
    match &results.registry {
        Some(r) => {
            writeln!(
                out,
                "- (d) `post_upgrade` with {} children registered at most {}: {} → {}.",
                group_digits(r.registered),
                short_count(POST_UPGRADE_TARGET as f64),
                group_digits(r.upgrade[2]),
                verdict(r.upgrade[2] <= POST_UPGRADE_TARGET)
            )
            .unwrap();
            let max_timer = r.after_upgrade.all.max.max(r.launching.all.max);
            writeln!(
                out,
                "- (d) The largest parent execution after that upgrade, with {} registered, at most {}: {} → {}.",
                group_digits(r.registered),
                short_count(TICK_TARGET as f64),
                group_digits(max_timer),
                verdict(max_timer <= TICK_TARGET)
            )
            .unwrap();
        }
        None => out.push_str("- (d) Large registry: not measured in this run.\n"),
    }
    out
}

fn missing(results: &RolloutResults) -> String {
    if results.missing.is_empty() {
        String::new()
    } else {
        format!("\n**Not measured in this run:** {}.\n", results.missing.join("; "))
    }
}

/// Draws rounds against fleet size, one line per K, with each K's floor dashed, log-log.
pub fn write_png(path: &Path, results: &RolloutResults) -> Result<(), Box<dyn std::error::Error>> {
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let points = &results.rollouts;
    let x_max = points.iter().map(|p| f64::from(p.children)).fold(10.0, f64::max) * 2.0;
    let x_min = points.iter().map(|p| f64::from(p.children)).fold(x_max, f64::min) / 2.0;
    let y_max = points.iter().map(|p| p.rounds.max(p.floor) as f64).fold(10.0, f64::max) * 3.0;
    let y_min = points
        .iter()
        .map(|p| p.rounds.min(p.floor) as f64)
        .fold(y_max, f64::min)
        .max(1.0)
        / 2.0;
    let mut chart = log_log_chart(
        &root,
        "Rollout A → B: rounds until it ends vs fleet size (in-process replica, 1 s rounds)",
        ("children N (log scale)", x_min..x_max),
        ("rounds (log scale)", y_min..y_max),
    )?;
    let mut ks: Vec<u32> = points.iter().map(|p| p.concurrency).collect();
    ks.sort_unstable();
    ks.dedup();
    for (i, k) in ks.iter().enumerate() {
        let color = SERIES_COLORS[i % SERIES_COLORS.len()];
        let mut series: Vec<&RolloutPoint> = points.iter().filter(|p| p.concurrency == *k).collect();
        series.sort_by_key(|p| p.children);
        let measured: Vec<(f64, f64)> = series
            .iter()
            .map(|p| (f64::from(p.children), p.rounds as f64))
            .collect();
        let floor: Vec<(f64, f64)> = series.iter().map(|p| (f64::from(p.children), p.floor as f64)).collect();
        chart
            .draw_series(LineSeries::new(measured, color.stroke_width(2)).point_size(4))?
            .label(format!("K = {k}: measured rounds"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(floor, 8, 6, color.stroke_width(2)))?
            .label(format!("K = {k}: floor ⌈N/K⌉ × 3 × m (dashed)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
