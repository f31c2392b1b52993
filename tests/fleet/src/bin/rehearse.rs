//! `rehearse`: plays a whole fleet rollout on the in-process replica with real modules and reports whether every
//! child ended where it should, with its data. See `fleet::rehearsal` and `scripts/rehearse.sh`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use fleet::rehearsal::{self, Progress, RehearsalConfig};
use fleet::ParentUpgrade;
use indicatif::{ProgressBar, ProgressStyle};
use shared::parent::RolloutStatus;

/// Rehearse a fleet rollout: install the parent of release A, create N children with M members each, upgrade the
/// parent to release B as `dfx canister install parent --mode upgrade` does, drive the rollout to its end, and verify
/// every child (running, on B's child, data checksum unchanged). Exit code 1 if the verdict is FAIL.
#[derive(Parser, Debug)]
#[command(name = "rehearse", version)]
struct Args {
    /// Parent module of the release the fleet runs now [default: wasm/parent.wasm.gz]
    #[arg(long, value_name = "PARENT.WASM.GZ")]
    from: Option<PathBuf>,
    /// Parent module of the release to roll out [default: wasm/next/parent.wasm.gz]
    #[arg(long, value_name = "PARENT.WASM.GZ")]
    to: Option<PathBuf>,
    /// Children in the fleet.
    #[arg(long, default_value_t = 100)]
    children: u32,
    /// Members per child (synthetic data written with admin_fill).
    #[arg(long, default_value_t = 200)]
    members: u32,
    /// Bytes per member value (at most 4096).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=4096))]
    value_size: u32,
    /// Rollout concurrency K (children upgraded at the same time, 1 to 100).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    concurrency: u32,
    /// Percent of children whose post_upgrade traps (they must stay on the old release with their data).
    #[arg(long, default_value_t = 0, value_name = "P", value_parser = clap::value_parser!(u32).range(0..=100))]
    fail_post_upgrade: u32,
    /// Percent of children whose install_code the management canister rejects (transient error).
    #[arg(long, default_value_t = 0, value_name = "P", value_parser = clap::value_parser!(u32).range(0..=100))]
    reject_install: u32,
    /// Percent of children drained of cycles before the upgrade (frozen: their install is refused).
    #[arg(long, default_value_t = 0, value_name = "P", value_parser = clap::value_parser!(u32).range(0..=100))]
    drain_cycles: u32,
    /// Percent of children whose first start_canister after the upgrade is rejected (they must be started again and
    /// end upgraded like the rest).
    #[arg(long, default_value_t = 0, value_name = "P", value_parser = clap::value_parser!(u32).range(0..=100))]
    reject_start: u32,
    /// After the rollout, write on the new release, roll the fleet back to the old one with `rollout_release`, and
    /// check that every child kept every byte.
    #[arg(long)]
    rollback: bool,
    /// `all`: snapshot every child before upgrading it; then roll out a bad release (`--bad`, one whose upgrade
    /// corrupts a member), restore the snapshots it took, and check the data is back as it was before it.
    #[arg(long, value_name = "POLICY", value_parser = ["off", "all"], default_value = "off")]
    snapshot: String,
    /// The bad release for `--snapshot all` [default: wasm/fixtures/corrupt/parent.wasm.gz]
    #[arg(long, value_name = "PARENT.WASM.GZ")]
    bad: Option<PathBuf>,
    /// Seed that chooses the children of the injected faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop the parent before its upgrade and start it after (the careful operator); default: upgrade it running,
    /// as `dfx canister install --mode upgrade` does.
    #[arg(long)]
    stop_parent_first: bool,
    /// Give up after this many rounds (1 simulated second each).
    #[arg(long, default_value_t = 100_000)]
    max_rounds: u64,
}

/// Progress: an indicatif bar on a terminal, plain lines every few seconds otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    children: u64,
    last_line: Instant,
    started: Instant,
}

impl Reporter {
    fn new(children: u32) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(u64::from(children));
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:40}] {pos}/{len} {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            children: u64::from(children),
            last_line: Instant::now(),
            started: Instant::now(),
        }
    }

    fn line(status: &RolloutStatus, round: u64) -> String {
        format!(
            "round {round}: {} upgraded, {} in flight, {} failed, {} pending{}",
            status.upgraded,
            status.in_flight,
            status.failed,
            status.pending,
            if status.planning { ", planning" } else { "" }
        )
    }
}

impl Progress for Reporter {
    fn phase(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => println!("[{:>5.1} s] {message}", self.started.elapsed().as_secs_f64()),
        }
    }

    fn rollout(&mut self, round: u64, status: &RolloutStatus) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(status.upgraded + status.failed);
                bar.set_message(Self::line(status, round));
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(3) {
                    self.last_line = Instant::now();
                    println!(
                        "[{:>5.1} s] {}",
                        self.started.elapsed().as_secs_f64(),
                        Self::line(status, round)
                    );
                }
            }
        }
    }

    fn rollout_done(&mut self, status: &RolloutStatus) {
        let line = format!(
            "rollout ended: {} upgraded, {} failed, {} skipped of {} children",
            status.upgraded, status.failed, status.skipped, self.children
        );
        match self.bar.take() {
            Some(bar) => {
                bar.set_position(status.upgraded + status.failed);
                bar.finish_with_message(line);
            }
            None => println!("[{:>5.1} s] {line}", self.started.elapsed().as_secs_f64()),
        }
    }
}

fn resolve(path: Option<PathBuf>, default: &str) -> PathBuf {
    match path {
        Some(p) if p.is_absolute() => p,
        Some(p) => std::env::current_dir().expect("current directory").join(p),
        None => fleet::wasms::repo_root().join(default),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let from = resolve(args.from, "wasm/parent.wasm.gz");
    let to = resolve(args.to, "wasm/next/parent.wasm.gz");
    let bad = resolve(args.bad, "wasm/fixtures/corrupt/parent.wasm.gz");
    let snapshots = args.snapshot == "all";
    for path in [&from, &to].into_iter().chain(snapshots.then_some(&bad)) {
        if !Path::new(path).is_file() {
            eprintln!("rehearse: {} not found; {}", path.display(), fleet::wasms::BUILD_HINT);
            return ExitCode::from(2);
        }
    }
    let config = RehearsalConfig {
        from,
        to,
        children: args.children,
        members: args.members,
        value_size: args.value_size,
        concurrency: args.concurrency,
        fail_post_upgrade: args.fail_post_upgrade,
        reject_install: args.reject_install,
        reject_start: args.reject_start,
        drain_cycles: args.drain_cycles,
        seed: args.seed,
        parent_upgrade: if args.stop_parent_first {
            ParentUpgrade::StopFirst
        } else {
            ParentUpgrade::Direct
        },
        max_rounds: args.max_rounds,
        rollback: args.rollback,
        snapshots,
        bad,
    };
    let started = Instant::now();
    let mut reporter = Reporter::new(config.children);
    let report = rehearsal::rehearse(&config, &mut reporter);
    println!("{report}");
    println!("(wall time {:.1} s)", started.elapsed().as_secs_f64());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
