//! Benchmark: the rehearsal at scale. For each fleet size N, one `rehearse` run (N children holding 10 members of 32
//! bytes, rolled out A → B at concurrency K) in a process of its own, so that the peak RSS it reports is that run's
//! alone. Writes `tests/bench/SCALE.md` and `tests/bench/scale.png` after every run.
//!
//! ```sh
//! scripts/build.sh && scripts/build.sh --next
//! cargo run -p bench --release --bin scale                                    # N = 1,000, 5,000, 10,000; K = 100
//! cargo run -p bench --release --bin scale -- --fleets 100,1000 --concurrency 50
//! ```

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bench::fit::LinearFit;
use bench::plot::{register_font, FONT, SERIES_COLORS};
use bench::report::{bench_dir, group_digits, list_arg, machine, minutes_and_seconds, reproduce};
use fleet::rehearsal::{self, RehearsalConfig};
use plotters::prelude::*;
use shared::parent::RolloutStatus;

const COMMAND: &str = "cargo run -p bench --release --bin scale";
const DEFAULT_FLEETS: [u32; 3] = [1_000, 5_000, 10_000];
const DEFAULT_CONCURRENCY: u32 = 100;
const MEMBERS: u32 = 10;
const VALUE_SIZE: u32 = 32;
const ONE: &str = "--one";

/// What one run measured.
#[derive(Clone, Debug)]
struct Point {
    n: u32,
    rounds: u64,
    setup: Duration,
    rollout: Duration,
    /// Peak resident set size of the run's process (VmHWM), KiB.
    peak_rss_kib: u64,
    largest_timer: u64,
    passed: bool,
    verdict: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(ONE) {
        let n = args[1].parse().expect("N");
        let k = args[2].parse().expect("K");
        return run_one(n, k);
    }
    let fleets = list_arg(&args, "--fleets").unwrap_or(DEFAULT_FLEETS.to_vec());
    let k = list_arg(&args, "--concurrency").map_or(DEFAULT_CONCURRENCY, |v| v[0]);
    let started = Instant::now();
    let mut points = Vec::new();
    for n in fleets {
        eprintln!("scale: N = {n}, K = {k} ...");
        let point = measure(n, k);
        eprintln!("scale: {point:?}");
        points.push(point);
        write(&points, k, started.elapsed(), &args);
    }
}

/// Runs `run_one` in a child process and reads back its one result line.
fn measure(n: u32, k: u32) -> Point {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let out = Command::new(exe)
        .args([ONE, &n.to_string(), &k.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run one measurement");
    assert!(out.status.success(), "the run for N = {n} failed: {}", out.status);
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = line.trim().splitn(8, ' ').collect();
    assert_eq!(f.len(), 8, "unexpected result line {line:?}");
    let num = |i: usize| f[i].parse::<u64>().expect("a number");
    Point {
        n: num(0) as u32,
        rounds: num(1),
        setup: Duration::from_millis(num(2)),
        rollout: Duration::from_millis(num(3)),
        peak_rss_kib: num(4),
        largest_timer: num(5),
        passed: f[6] == "true",
        verdict: f[7].to_string(),
    }
}

/// One rehearsal; prints `n rounds setup_ms rollout_ms peak_rss_kib largest_timer passed verdict` on stdout.
fn run_one(n: u32, k: u32) {
    let config = RehearsalConfig {
        children: n,
        members: MEMBERS,
        value_size: VALUE_SIZE,
        concurrency: k,
        ..RehearsalConfig::default()
    };
    let report = rehearsal::rehearse(&config, &mut Lines::default());
    println!(
        "{n} {} {} {} {} {} {} {}",
        report.rounds,
        report.wall_setup.as_millis(),
        report.wall_rollout.as_millis(),
        peak_rss_kib(),
        report.parent_timer.max,
        report.passed(),
        report.verdict().replace('\n', " ")
    );
}

/// Progress on stderr, a line every 10% of a phase and every 50 rounds.
#[derive(Default)]
struct Lines {
    last_tenth: u64,
}

impl rehearsal::Progress for Lines {
    fn phase(&mut self, message: &str) {
        self.last_tenth = 0;
        eprintln!("  {message}");
    }
    fn setup(&mut self, done: u64, total: u64) {
        let tenth = done * 10 / total.max(1);
        if tenth > self.last_tenth {
            self.last_tenth = tenth;
            eprintln!("    {done}/{total}");
        }
    }
    fn rollout(&mut self, round: u64, status: &RolloutStatus) {
        if round.is_multiple_of(50) {
            eprintln!(
                "    round {round}: {} upgraded, {} in flight, {} pending",
                status.upgraded, status.in_flight, status.pending
            );
        }
    }
}

/// The process's peak resident set size (VmHWM in /proc/self/status), KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn write(points: &[Point], k: u32, took: Duration, args: &[String]) {
    let dir = bench_dir();
    std::fs::write(dir.join("SCALE.md"), render(points, k, took, args)).expect("write SCALE.md");
    plot(&dir.join("scale.png"), points).expect("write scale.png");
}

/// One measured quantity of a [`Point`].
type Measure = fn(&Point) -> f64;

fn fit(points: &[Point], y: Measure) -> Option<LinearFit> {
    LinearFit::of(&points.iter().map(|p| (f64::from(p.n), y(p))).collect::<Vec<_>>())
}

fn render(points: &[Point], k: u32, took: Duration, args: &[String]) -> String {
    let mut md = String::new();
    let command = reproduce(COMMAND, args);
    md.push_str(&format!(
        "# Benchmark: the rehearsal at scale\n\n<!-- Written by the scale bench binary (tests/bench/src/bin/scale.rs). -->\n\n\
         For each fleet size N, one run of `scripts/rehearse.sh --children N --members {MEMBERS} --value-size \
         {VALUE_SIZE} --concurrency {k}` (the same rehearsal, in a process of its own so that its peak RSS is its \
         own): the parent of release A creates N children and fills them, then is upgraded to release B, and rounds \
         run until the rollout ends; every child is then verified (running, on B, data intact).\n\n\
         ## Reproduce\n\n```sh\nscripts/build.sh && scripts/build.sh --next\n{command}\n```\n\n\
         Machine: {}. The run took {}. **Wall times are indicative only**: the two cores may have been shared with \
         other work. Rounds and instructions are deterministic.\n\n",
        machine(),
        minutes_and_seconds(took)
    ));
    md.push_str(
        "| N | Verdict | Rounds | Wall: setup | Wall: rollout | Peak RSS | Peak RSS per child | Largest parent timer \
         execution |\n|---:|:---|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in points {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} s | {:.1} s | {:.0} MiB | {:.0} KiB | {} |\n",
            group_digits(u64::from(p.n)),
            if p.passed { "PASS" } else { "FAIL" },
            group_digits(p.rounds),
            secs(p.setup),
            secs(p.rollout),
            mib(p.peak_rss_kib),
            p.peak_rss_kib as f64 / f64::from(p.n),
            group_digits(p.largest_timer)
        ));
    }
    md.push_str("\nVerdicts, as `rehearse` prints them:\n\n");
    for p in points {
        md.push_str(&format!("- N = {}: {}\n", group_digits(u64::from(p.n)), p.verdict));
    }
    md.push_str("\n## Growth with N (least-squares lines through the points above)\n\n");
    let lines: [(&str, Measure, &str); 4] = [
        ("Rollout wall time", |p| secs(p.rollout), "s"),
        ("Setup wall time", |p| secs(p.setup), "s"),
        ("Rounds", |p| p.rounds as f64, "rounds"),
        ("Peak RSS", |p| mib(p.peak_rss_kib), "MiB"),
    ];
    md.push_str("| Series | Per 1,000 children | At N = 0 | R² |\n|:---|---:|---:|---:|\n");
    for (name, y, unit) in lines {
        match fit(points, y) {
            Some(f) => md.push_str(&format!(
                "| {name} | {:.2} {unit} | {:.2} {unit} | {:.4} |\n",
                f.slope * 1000.0,
                f.intercept,
                f.r_squared
            )),
            None => md.push_str(&format!("| {name} | – | – | – |\n")),
        }
    }
    md.push_str(
        "\nAn R² close to 1 says the series grows linearly in N over the measured range. `scale.png` plots the wall \
         times and the peak RSS against N with these lines.\n",
    );
    md
}

fn plot(path: &Path, points: &[Point]) -> Result<(), Box<dyn std::error::Error>> {
    register_font();
    let root = BitMapBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let x_max = points.iter().map(|p| f64::from(p.n)).fold(1.0, f64::max) * 1.1;
    let wall: &[(&str, Measure)] = &[("rollout", |p| secs(p.rollout)), ("setup", |p| secs(p.setup))];
    let rss: &[(&str, Measure)] = &[("peak RSS", |p| mib(p.peak_rss_kib))];
    let panels = [
        (&left, "Wall time vs N", "seconds", wall),
        (&right, "Peak RSS vs N", "MiB", rss),
    ];
    for (area, caption, y_desc, series) in panels {
        let y_max = points
            .iter()
            .flat_map(|p| series.iter().map(move |(_, y)| y(p)))
            .fold(1.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(caption, (FONT, 24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("children (N)")
            .y_desc(y_desc)
            .x_label_formatter(&|x| group_digits(x.round() as u64))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .draw()?;
        for ((label, y), color) in series.iter().zip(SERIES_COLORS) {
            let measured: Vec<(f64, f64)> = points.iter().map(|p| (f64::from(p.n), y(p))).collect();
            chart
                .draw_series(PointSeries::of_element(measured, 5, color.filled(), &|c, s, st| {
                    Circle::new(c, s, st)
                }))?
                .label(format!("{label} (measured)"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
            if let Some(f) = fit(points, *y) {
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, f.intercept), (x_max, f.at(x_max))],
                        color.stroke_width(1),
                    ))?
                    .label(format!("{label}: linear fit, R² {:.3}", f.r_squared))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT, 15))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
