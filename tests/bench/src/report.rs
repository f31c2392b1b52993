//! Renders `RESULTS.md` from the template and the measured results.

use std::fmt::Write;

use crate::fit::Crossing;
use crate::measure::{ModuleInfo, IC_INSTALL_LIMIT, MEASURING_INSTALL_LIMIT, MIB};
use crate::results::{Results, Series};

const TEMPLATE: &str = include_str!("RESULTS.template.md");

/// The child's goal: upgrade instructions at this size at most [`FLAT_GOAL_RATIO`] times those at 0 MiB.
pub const FLAT_GOAL_MIB: u64 = 100;
pub const FLAT_GOAL_RATIO: f64 = 1.1;

/// Facts about the run that are not measurements.
pub struct RunInfo {
    /// The command that reproduces the run.
    pub command: String,
    /// nproc, RAM, CPU.
    pub machine: String,
    pub run_time: String,
}

pub fn render(results: &Results, run: &RunInfo) -> String {
    [
        ("{{command}}", run.command.clone()),
        ("{{machine}}", run.machine.clone()),
        ("{{run_time}}", run.run_time.clone()),
        (
            "{{measuring_limit}}",
            format!("{} instructions", group_digits(MEASURING_INSTALL_LIMIT)),
        ),
        ("{{modules}}", modules(results)),
        ("{{table}}", main_table(results)),
        ("{{details}}", details_table(results)),
        ("{{goals}}", goals(results)),
    ]
    .iter()
    .fold(TEMPLATE.to_string(), |text, (placeholder, value)| {
        text.replace(placeholder, value)
    })
}

fn modules(results: &Results) -> String {
    let describe = |m: &ModuleInfo| {
        format!(
            "`{}` (SHA-256 `{}…`, {} bytes)",
            m.path,
            &m.sha256_hex[..16],
            group_digits(m.gz_bytes as u64)
        )
    };
    let mut out = String::from("Modules, under `wasm/`:\n\n");
    for s in results.child_series().chain([&results.baseline]) {
        let to = if s.to.path == s.from.path {
            "the same module".to_string()
        } else {
            describe(&s.to)
        };
        writeln!(out, "- {}: {} upgraded to {to}.", s.label, describe(&s.from)).unwrap();
    }
    if results.child_next.is_none() {
        out.push_str("- `next/child.wasm.gz` was missing, so the upgrade to a different module was not measured.\n");
    }
    out
}

fn main_table(results: &Results) -> String {
    let series: Vec<&Series> = results.child_series().chain([&results.baseline]).collect();
    let mut header = String::from("| Data (MiB) |");
    let mut rule = String::from("|---:|");
    for s in &series {
        write!(header, " {} | × 0 MiB |", s.label).unwrap();
        rule.push_str("---:|---:|");
    }
    header.push_str(" Baseline within 300B? |");
    rule.push_str(":---:|");
    let mut out = format!(
        "Instructions (wasmi fuel) of one upgrade, and their ratio to the same canister's at 0 MiB \
         (– = not measured):\n\n{header}\n{rule}\n"
    );
    for &mib in &results.sizes_mib {
        write!(out, "| {} |", group_digits(mib)).unwrap();
        for s in &series {
            let (instructions, ratio) = match s.cost_at(mib) {
                None => ("–".to_string(), "–".to_string()),
                Some(c) if !c.succeeded() => ("**upgrade fails**¹".to_string(), "–".to_string()),
                Some(c) => (
                    group_digits(c.instructions()),
                    s.ratio_to_empty(mib).map_or("–".into(), format_ratio),
                ),
            };
            write!(out, " {instructions} | {ratio} |").unwrap();
        }
        let within = match results.baseline.cost_at(mib) {
            None => "–",
            Some(c) if !c.succeeded() => "–",
            Some(c) if c.instructions() <= IC_INSTALL_LIMIT => "yes",
            Some(_) => "**no**",
        };
        writeln!(out, " {within} |").unwrap();
    }
    let traps: Vec<String> = series
        .iter()
        .flat_map(|s| s.costs.iter().map(move |c| (s, c)))
        .filter_map(|(s, c)| {
            let t = c.trap.as_ref()?;
            Some(format!(
                "{} at {} MiB: `{}` trapped after {} instructions, and the replica rolled the upgrade back \
                 (the data was all there afterwards): `` {} ``",
                s.label,
                group_digits(c.data_bytes / MIB),
                t.phase,
                group_digits(c.instructions()),
                t.message
            ))
        })
        .collect();
    if !traps.is_empty() {
        write!(out, "\n¹ {}\n", traps.join("\n\n¹ ")).unwrap();
    }
    out
}

fn details_table(results: &Results) -> String {
    let mut out = String::from(
        "| Data (MiB) | Child stable memory (MiB) | Child pre_upgrade | Child post_upgrade | Baseline heap (MiB) \
         | Baseline pre_upgrade | Baseline post_upgrade |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mib = |bytes: u64| group_digits(bytes / MIB);
    for &size in &results.sizes_mib {
        let child = results
            .child_same
            .cost_at(size)
            .map_or(["–".to_string(), "–".into(), "–".into()], |c| {
                [
                    mib(c.stable_memory_bytes),
                    group_digits(c.phase_instructions[0]),
                    group_digits(c.phase_instructions[2]),
                ]
            });
        let baseline = results
            .baseline
            .cost_at(size)
            .map_or(["–".to_string(), "–".into(), "–".into()], |c| {
                [
                    mib(c.heap_bytes),
                    group_digits(c.phase_instructions[0]),
                    group_digits(c.phase_instructions[2]),
                ]
            });
        writeln!(
            out,
            "| {} | {} | {} |",
            group_digits(size),
            child.join(" | "),
            baseline.join(" | ")
        )
        .unwrap();
    }
    out.push_str(
        "\nChild columns are the same-module upgrade; stable memory and heap are their sizes just before it; a \
         failed upgrade shows the instructions used until its trap.",
    );
    let all_costs = results.child_series().chain([&results.baseline]).flat_map(|s| &s.costs);
    let start_instructions: u64 = all_costs.map(|c| c.phase_instructions[1]).sum();
    if start_instructions == 0 {
        out.push_str(" `(start)` cost nothing in any run, so it has no column.");
    } else {
        let total = group_digits(start_instructions);
        write!(
            out,
            " `(start)` cost {total} instructions over all runs (included in the totals above)."
        )
        .unwrap();
    }
    out.push('\n');
    out
}

fn goals(results: &Results) -> String {
    let mut out = String::new();
    for s in results.child_series() {
        let line = match s.ratio_to_empty(FLAT_GOAL_MIB) {
            Some(ratio) => {
                let verdict = if ratio <= FLAT_GOAL_RATIO {
                    "**met**"
                } else {
                    "**not met**"
                };
                let points = s.points();
                let instructions = || points.iter().map(|p| p.1 as u64);
                format!(
                    "- Our child's upgrade instructions stay flat, at most {FLAT_GOAL_RATIO}× from 0 to {FLAT_GOAL_MIB} MiB \
                     ({}): measured {}× → {verdict}. Up to {} MiB they range from {} to {}.\n",
                    s.label,
                    format_ratio_plain(ratio),
                    group_digits(points.last().map_or(0, |p| p.0 as u64)),
                    group_digits(instructions().min().unwrap_or(0)),
                    group_digits(instructions().max().unwrap_or(0)),
                )
            }
            None => format!(
                "- Child flatness ({}): not measured (0 and {FLAT_GOAL_MIB} MiB are both needed).\n",
                s.label
            ),
        };
        out.push_str(&line);
    }
    let points = results.baseline.points();
    match results.baseline_fit() {
        Some(fit) => writeln!(
            out,
            "- The baseline grows linearly: the least-squares line through its {} successful upgrades is \
             {} × MiB {} (R² = {:.6}).",
            points.len(),
            group_digits(fit.slope.round() as u64),
            signed_term(fit.intercept),
            fit.r_squared
        )
        .unwrap(),
        None => out.push_str("- Baseline linearity: not enough points to fit a line.\n"),
    }
    let largest = points.last().map_or(0.0, |p| p.0);
    let first_failure = results.baseline.costs.iter().find(|c| !c.succeeded());
    let crossing = match results.baseline_crossing() {
        Crossing::Measured(mib) => format!(
            "- The baseline passes the IC's 300B install_code limit at about {} (interpolated between measured \
             points): beyond that it can no longer be upgraded.",
            format_size(mib)
        ),
        Crossing::Extrapolated(mib) => format!(
            "- The baseline would pass the IC's 300B install_code limit at about {} of data: an **extrapolation** \
             of that line, {:.0}× the largest size it upgraded with ({} MiB). It cannot get there: its heap is a \
             wasm32 memory (4 GiB, and a Rust `Vec` at most 2 GiB), and `stable_save` needs the data and its \
             serialization in the heap at once.{} Here the baseline runs out of memory long before it runs out of \
             instructions; wasmi charges its heap copies (`memory.copy`) per 64 bytes, so the IC may stop it at a \
             smaller size, which this replica cannot tell.",
            format_size(mib),
            mib / largest,
            group_digits(largest as u64),
            first_failure.map_or(String::new(), |c| format!(
                " Measured: its upgrade already fails at {} MiB (¹).",
                group_digits(c.data_bytes / MIB)
            )),
        ),
        Crossing::Never => "- The baseline does not grow, so it never passes the 300B limit.".to_string(),
    };
    out.push_str(&crossing);
    out.push('\n');
    out
}

/// `-1234.4` → `− 1,234`; `5.0` → `+ 5`.
fn signed_term(x: f64) -> String {
    let sign = if x < 0.0 { '−' } else { '+' };
    format!("{sign} {}", group_digits(x.abs().round() as u64))
}

/// `tests/bench`, where the reports go (in the clone being run, see `fleet::wasms::repo_root`).
pub fn bench_dir() -> std::path::PathBuf {
    fleet::wasms::repo_root().join("tests/bench")
}

/// `1234567` → `1,234,567`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_ratio(ratio: f64) -> String {
    format!("{}×", format_ratio_plain(ratio))
}

/// Three decimals near 1, whole numbers (digits grouped) for large ratios.
fn format_ratio_plain(ratio: f64) -> String {
    if ratio < 10.0 {
        format!("{ratio:.3}")
    } else {
        group_digits(ratio.round() as u64)
    }
}

/// A size in MiB, with GiB for large ones.
pub fn format_size(mib: f64) -> String {
    if mib >= 1024.0 {
        format!("{} MiB ({:.0} GiB)", group_digits(mib.round() as u64), mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

/// Cores, CPU model and RAM, from the OS.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib: Option<f64> = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kib| kib.parse().ok());
    let ram = ram_kib.map_or("unknown RAM".to_string(), |kib| {
        format!("{:.1} GiB RAM", kib / (1024.0 * 1024.0))
    });
    format!("{cores} cores (nproc), {}, {ram}", cpu.unwrap_or("unknown CPU"))
}

/// The comma-separated numbers given after `name` in `args`, if `name` is there.
pub fn list_arg(args: &[String], name: &str) -> Option<Vec<u32>> {
    let i = args.iter().position(|a| a == name)?;
    let list = args.get(i + 1).unwrap_or_else(|| panic!("{name} needs a value"));
    Some(list.split(',').map(|v| v.trim().parse().expect("a number")).collect())
}

/// The command that reproduces a run with `args`.
pub fn reproduce(command: &str, args: &[String]) -> String {
    if args.is_empty() {
        command.to_string()
    } else {
        format!("{command} -- {}", args.join(" "))
    }
}

pub fn minutes_and_seconds(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    format!("{} min {} s", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(300_000_000_000), "300,000,000,000");
    }
}
