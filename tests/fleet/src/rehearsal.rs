//! The release rehearsal: a whole fleet rollout on the replica with real modules, as `rehearse` runs it.
//!
//! 1. Install the parent of release A (`from`).
//! 2. Create N children and fill each with M members.
//! 3. Inject the requested faults into chosen children (deterministic from the seed).
//! 4. Upgrade the parent to release B (`to`) as `dfx canister install parent --mode upgrade` does.
//! 5. Drive rounds until the rollout ends.
//! 6. Verify every child: running, on B's child (from the parent's `child_release` after the upgrade) or, for a
//!    child with an injected fault, still on A's child and marked failed; data checksum unchanged; the registry
//!    agrees.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use candid::Principal;
use replica::RejectCode;
use shared::parent::{ChildFailure, ChildState, RolloutStatus};

use crate::cycles::{format_cycles, Balances, CyclesReport};
use crate::fleet::{ChildFacts, Fleet, FleetConfig, ParentUpgrade};
use crate::hash8;
use crate::records::{self, Occupancy, Stats};
use crate::wasms::Release;

/// Instruction limits of the IC (facts §4) that the report compares against.
pub const INSTALL_LIMIT: u64 = 300_000_000_000;
pub const UPDATE_LIMIT: u64 = 40_000_000_000;

#[derive(Clone, Debug)]
pub struct RehearsalConfig {
    /// Parent module of the release the fleet runs now (A).
    pub from: PathBuf,
    /// Parent module of the release to roll out (B).
    pub to: PathBuf,
    pub children: u32,
    /// Members per child (written with `admin_fill`).
    pub members: u32,
    /// Bytes per member value.
    pub value_size: u32,
    /// Rollout concurrency K.
    pub concurrency: u32,
    /// Percent of children whose `post_upgrade` traps (the upgrade is rolled back).
    pub fail_post_upgrade: u32,
    /// Percent of children whose `install_code` the management canister rejects (a transient error).
    pub reject_install: u32,
    /// Percent of children drained of cycles before the upgrade: the parent must top them up (within its default
    /// `CyclesPolicy`), so they end upgraded like the rest.
    pub drain_cycles: u32,
    /// Percent of children whose first `start_canister` after the upgrade is rejected (a transient error): the parent
    /// must start them again, so they end upgraded and running like the rest.
    pub reject_start: u32,
    /// Chooses the faulty children.
    pub seed: u64,
    /// Rollout gates: upgrade this many canaries first, wait `bake_secs`, health-check them (`health`); halt after
    /// `halt_after` failures. A halted rollout ends the rehearsal (verdict HALTED).
    pub canary: Option<u32>,
    pub bake_secs: u64,
    pub halt_after: Option<u32>,
    /// After the rollout, write on the new release, roll the fleet back to the old one (`rollout_release`) and
    /// check that every child kept every byte.
    pub rollback: bool,
    /// Snapshot every child before upgrading it; then roll out `bad` (a release that corrupts data), restore the
    /// snapshots it took, and check that the data is back as it was before it.
    pub snapshots: bool,
    /// The bad release for `snapshots`.
    pub bad: PathBuf,
    pub parent_upgrade: ParentUpgrade,
    /// Give up after this many rounds.
    pub max_rounds: u64,
}

impl Default for RehearsalConfig {
    fn default() -> Self {
        Self {
            from: PathBuf::from("wasm/parent.wasm.gz"),
            to: PathBuf::from("wasm/next/parent.wasm.gz"),
            children: 100,
            members: 200,
            value_size: 256,
            concurrency: 10,
            fail_post_upgrade: 0,
            reject_install: 0,
            drain_cycles: 0,
            reject_start: 0,
            seed: 1,
            canary: None,
            bake_secs: 0,
            halt_after: None,
            rollback: false,
            snapshots: false,
            bad: PathBuf::from("wasm/fixtures/corrupt/parent.wasm.gz"),
            parent_upgrade: ParentUpgrade::Direct,
            max_rounds: 100_000,
        }
    }
}

/// A fault injected into one child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    PostUpgradeTrap,
    InstallRejected,
    CyclesDrained,
    StartRejected,
}

impl Fault {
    /// The parent works around it (starts the child again, tops it up): the child must end upgraded.
    pub fn ends_upgraded(self) -> bool {
        matches!(self, Fault::StartRejected | Fault::CyclesDrained)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::PostUpgradeTrap => "post_upgrade trap",
            Fault::InstallRejected => "install_code rejected",
            Fault::CyclesDrained => "out of cycles (to be topped up)",
            Fault::StartRejected => "start_canister rejected",
        })
    }
}

/// Receives progress while the rehearsal runs.
pub trait Progress {
    /// A setup phase starts.
    fn phase(&mut self, _message: &str) {}
    /// Within a setup phase: `done` of `total` (children created, calls answered, ...).
    fn setup(&mut self, _done: u64, _total: u64) {}
    /// Before every round of the rollout (`round` counts from 0) and at its end.
    fn rollout(&mut self, _round: u64, _status: &RolloutStatus) {}
    /// The rollout ended (or gave up).
    fn rollout_done(&mut self, _status: &RolloutStatus) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// What happened to one child that did not end on the new release, or should not have.
#[derive(Clone, Debug)]
pub struct Problem {
    pub child: Principal,
    pub what: String,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub config: RehearsalConfig,
    pub old_child_hash: Vec<u8>,
    pub new_child_hash: Vec<u8>,
    pub new_version: String,
    pub finished: bool,
    pub rounds: u64,
    pub simulated: Duration,
    pub wall_setup: Duration,
    pub wall_rollout: Duration,
    /// Instructions per child `install_code` (compilation + pre_upgrade + start + post_upgrade).
    pub child_install: Stats,
    /// Instructions per parent timer execution (`canister_global_timer`, the timer self-call).
    pub parent_timer: Stats,
    /// Instructions per replicated parent execution (timers, updates, callbacks; queries left out).
    pub parent_all: Stats,
    /// Cycles the rollout cost the parent and the children.
    pub cycles: CyclesReport,
    /// Children the parent topped up before their install, and the cycles it deposited.
    pub top_ups: u64,
    pub cycles_spent: u128,
    /// Why the rollout halted itself, if it did (see `RehearsalConfig::canary`).
    pub halted: Option<String>,
    /// Children the halt left untouched on the old release (running, data intact).
    pub untouched: usize,
    /// Children holding a slot / a lock at most, from the management-call record.
    pub max_slots: usize,
    pub max_locks: usize,
    /// install_code calls by the parent per child, at most.
    pub max_installs_per_child: usize,
    pub install_calls: usize,
    /// Children the parent had to start more than once (a start that failed, then one that worked).
    pub started_again: usize,
    /// Children running the new child release.
    pub upgraded: usize,
    pub injected: BTreeMap<Principal, Fault>,
    /// Injected children that ended as expected: running the old release, data intact, marked failed.
    pub failed_as_injected: usize,
    pub failed_count: u64,
    /// The first failures as `rollout_status` lists them.
    pub failures: Vec<ChildFailure>,
    pub data_lost: usize,
    /// Children whose data could not be read (a stopped child answers no queries).
    pub data_unreadable: usize,
    pub problems: Vec<Problem>,
    /// What `--rollback` and `--snapshot all` played after the rollout, one line each.
    pub epilogue: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.finished && self.problems.is_empty()
    }

    /// The rollout stopped itself at its gates, and every child is where it should be (running, data intact).
    pub fn halted_cleanly(&self) -> bool {
        self.halted.is_some() && self.problems.is_empty()
    }

    /// The one-line verdict.
    pub fn verdict(&self) -> String {
        let n = self.config.children;
        let data = match (self.data_lost, self.data_unreadable) {
            (0, 0) => "no data lost".to_string(),
            (0, u) => format!("data of {u} children unreadable"),
            (l, 0) => format!("DATA LOST on {l} children"),
            (l, u) => format!("DATA LOST on {l} children, data of {u} more unreadable"),
        };
        // A rejected start is retried and a drained child topped up: only the other faults are meant to leave a child
        // on the old release.
        let meant_to_fail = self.injected.values().filter(|f| !f.ends_upgraded()).count();
        let failed = if meant_to_fail == 0 {
            format!("{} failed", self.failed_count)
        } else {
            format!(
                "{} failed ({}/{meant_to_fail} injected faults ended on the old release {} with their data)",
                self.failed_count,
                self.failed_as_injected,
                hash8(&self.old_child_hash)
            )
        };
        let head = format!(
            "{}/{n} children on {}, {failed}, {data}",
            self.upgraded,
            hash8(&self.new_child_hash)
        );
        if self.passed() {
            format!("PASS: {head}")
        } else if let (true, Some(reason)) = (self.halted_cleanly(), &self.halted) {
            format!(
                "HALTED: {reason}; {head}, {} untouched on {}; no child left stopped",
                self.untouched,
                hash8(&self.old_child_hash)
            )
        } else if !self.finished && self.halted.is_none() {
            format!("FAIL: the rollout did not finish within {} rounds; {head}", self.rounds)
        } else {
            format!(
                "FAIL: {head}; {} problem(s), first: {}: {}",
                self.problems.len(),
                self.problems[0].child,
                self.problems[0].what
            )
        }
    }
}

fn pct(n: u64, of: u64) -> String {
    format!("{:.3}%", n as f64 * 100.0 / of as f64)
}

fn instr(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2} B", n as f64 / 1e9)
    } else {
        format!("{:.2} M", n as f64 / 1e6)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "Rehearsal: {} -> {}", c.from.display(), c.to.display())?;
        writeln!(
            f,
            "  fleet          {} children x {} members of {} B, K = {}",
            c.children, c.members, c.value_size, c.concurrency
        )?;
        writeln!(
            f,
            "  child release  {} -> {} ({})",
            hash8(&self.old_child_hash),
            hash8(&self.new_child_hash),
            self.new_version
        )?;
        writeln!(
            f,
            "  rollout        {} rounds, {:.0} s simulated; wall: setup {:.1} s, rollout {:.1} s",
            self.rounds,
            self.simulated.as_secs_f64(),
            self.wall_setup.as_secs_f64(),
            self.wall_rollout.as_secs_f64()
        )?;
        writeln!(
            f,
            "  concurrency    at most {} children stopping/upgrading/starting (K = {}), {} locked (2K = {}); {} install_code calls, at most {} per child; {} children started again after a failed start",
            self.max_slots,
            c.concurrency,
            self.max_locks,
            2 * c.concurrency,
            self.install_calls,
            self.max_installs_per_child,
            self.started_again
        )?;
        let s = &self.child_install;
        writeln!(
            f,
            "  child upgrade  {} installs: max {} ({} of the 300 B limit), median {}",
            s.count,
            instr(s.max),
            pct(s.max, INSTALL_LIMIT),
            instr(s.median)
        )?;
        let t = &self.parent_timer;
        writeln!(
            f,
            "  parent timer   {} executions: max {} ({} of the 40 B limit), median {}",
            t.count,
            instr(t.max),
            pct(t.max, UPDATE_LIMIT),
            instr(t.median)
        )?;
        let a = &self.parent_all;
        writeln!(
            f,
            "  parent, all    {} executions (timers, callbacks): max {} ({} of 40 B), median {}, total {}",
            a.count,
            instr(a.max),
            pct(a.max, UPDATE_LIMIT),
            instr(a.median),
            instr(a.total)
        )?;
        writeln!(f, "{}", self.cycles)?;
        match self.top_ups {
            0 => writeln!(f, "  top-ups        none needed")?,
            n => writeln!(
                f,
                "  top-ups        {n} children topped up with {} cycles",
                format_cycles(self.cycles_spent as i128)
            )?,
        }
        if c.canary.is_some() || c.halt_after.is_some() {
            writeln!(
                f,
                "  gates          canaries {}, bake {} s, halt after {} failures; {}",
                c.canary.unwrap_or(0),
                c.bake_secs,
                c.halt_after.map_or("never".to_string(), |n| n.to_string()),
                self.halted
                    .as_deref()
                    .map_or("not halted".to_string(), |r| format!("halted: {r}"))
            )?;
        }
        if self.injected.is_empty() {
            writeln!(f, "  faults         none injected")?;
        } else {
            let mut by: BTreeMap<Fault, usize> = BTreeMap::new();
            for fault in self.injected.values() {
                *by.entry(*fault).or_default() += 1;
            }
            let list: Vec<String> = by.iter().map(|(k, v)| format!("{v} x {k}")).collect();
            writeln!(f, "  faults         injected (seed {}): {}", c.seed, list.join(", "))?;
        }
        writeln!(f, "  failures       {} (rollout_status.failed)", self.failed_count)?;
        for fail in &self.failures {
            let fault = self
                .injected
                .get(&fail.canister_id)
                .map(|f| format!(" [injected: {f}]"))
                .unwrap_or_default();
            writeln!(f, "    {}{fault}: {}", fail.canister_id, fail.error)?;
        }
        if (self.failures.len() as u64) < self.failed_count {
            writeln!(f, "    ... and {} more", self.failed_count - self.failures.len() as u64)?;
        }
        for line in &self.epilogue {
            writeln!(f, "  {line}")?;
        }
        for p in self.problems.iter().take(20) {
            writeln!(f, "  PROBLEM {}: {}", p.child, p.what)?;
        }
        if self.problems.len() > 20 {
            writeln!(f, "  ... and {} more problems", self.problems.len() - 20)?;
        }
        write!(f, "{}", self.verdict())
    }
}

/// SplitMix64: deterministic choice of the faulty children.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Picks disjoint sets of children for the faults: `percent` of `children` each (rounded to nearest), in a
/// seed-determined order.
pub fn choose_faults(children: &[Principal], faults: &[(Fault, u32)], seed: u64) -> BTreeMap<Principal, Fault> {
    let mut order: Vec<Principal> = children.to_vec();
    let mut state = seed;
    for i in (1..order.len()).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut out = BTreeMap::new();
    let mut next = order.into_iter();
    for &(fault, percent) in faults {
        let n = (children.len() * percent.min(100) as usize + 50) / 100;
        for c in next.by_ref().take(n) {
            out.insert(c, fault);
        }
    }
    out
}

/// Runs the rehearsal.
pub fn rehearse(config: &RehearsalConfig, progress: &mut dyn Progress) -> Report {
    let setup_started = Instant::now();
    let from = Release::from_parent_file(&config.from);
    let to = Release::from_parent_file(&config.to);

    progress.phase(&format!("installing the parent from {}", config.from.display()));
    let mut fleet = Fleet::new(&from, FleetConfig::with_concurrency(config.concurrency));
    progress.phase(&format!("creating {} children", config.children));
    fleet.create_children_with(config.children, |done, total| progress.setup(done, total));
    progress.phase(&format!(
        "filling each child with {} members of {} B",
        config.members, config.value_size
    ));
    if config.members > 0 {
        fleet.fill_all_with(config.members, config.value_size, |done, total| {
            progress.setup(done, total)
        });
    }
    progress.phase("recording each child's data checksum");
    fleet.record_checksums_with(|done, total| progress.setup(done, total));
    let old_child_hash = fleet.parent().child_release().hash;

    let injected = choose_faults(
        &fleet.children,
        &[
            (Fault::PostUpgradeTrap, config.fail_post_upgrade),
            (Fault::InstallRejected, config.reject_install),
            (Fault::CyclesDrained, config.drain_cycles),
            (Fault::StartRejected, config.reject_start),
        ],
        config.seed,
    );
    for (&c, fault) in &injected {
        match fault {
            Fault::PostUpgradeTrap => fleet.replica.fail_next_execution(c, "canister_post_upgrade"),
            Fault::InstallRejected => fleet.replica.reject_next_call(
                c,
                "install_code",
                RejectCode::SysTransient,
                "injected: install_code rejected",
            ),
            Fault::CyclesDrained => fleet.replica.drain_cycles(c),
            Fault::StartRejected => fleet.replica.reject_next_call(
                c,
                "start_canister",
                RejectCode::SysTransient,
                "injected: start_canister rejected",
            ),
        }
    }
    let wall_setup = setup_started.elapsed();

    let calls_from = fleet.replica.management_calls().len();
    let executions_from = fleet.replica.executions().len();
    let balances_before = Balances::of(&fleet);
    let time_before = fleet.replica.time_nanos();
    let rollout_started = Instant::now();

    if config.canary.is_some() || config.halt_after.is_some() {
        let gates = shared::parent::RolloutGates {
            canary: config.canary.map(shared::parent::Share::Count),
            bake_secs: config.bake_secs,
            health_method: "health".into(),
            halt_after: config.halt_after.map(shared::parent::Share::Count),
        };
        fleet
            .parent()
            .set_rollout_gates(fleet.controller, gates)
            .expect("set_rollout_gates");
    }
    if config.snapshots {
        let all = shared::parent::SnapshotPolicy::All;
        fleet
            .parent()
            .set_snapshot_policy(fleet.controller, all)
            .expect("set_snapshot_policy");
    }
    progress.phase(&format!("upgrading the parent to {}", config.to.display()));
    fleet
        .upgrade_parent(&to, config.parent_upgrade)
        .unwrap_or_else(|e| panic!("upgrading the parent to {}: {e}", config.to.display()));
    let release = fleet.parent().child_release();
    if let Some(h) = to.child_hash {
        assert_eq!(
            release.hash,
            h.to_vec(),
            "the parent reports another child than the child.wasm.gz beside it"
        );
    }
    let run = fleet.run_rollout_with(config.max_rounds, |round, status| progress.rollout(round, status));
    progress.rollout_done(&run.status);
    let wall_rollout = rollout_started.elapsed();
    let simulated = Duration::from_nanos(fleet.replica.time_nanos() - time_before);
    let cycles = CyclesReport::between(&balances_before, &Balances::of(&fleet), run.rounds);

    // Records.
    let calls = records::calls_since(&fleet.replica, fleet.parent, calls_from);
    let installs = records::count_per_target(&calls, "install_code");
    let occupancy = Occupancy::from_spans(&records::op_spans(&calls), fleet.replica.round());
    let executions: Vec<_> = fleet.replica.executions().into_iter().skip(executions_from).collect();
    let child_install = Stats::of(records::child_install_instructions(&executions, &fleet.children));
    let (timer, all) = records::canister_instructions(&executions, fleet.parent);

    // Verification.
    let new_hash: [u8; 32] = release.hash.clone().try_into().expect("32-byte hash");
    let old_hash: [u8; 32] = old_child_hash.clone().try_into().expect("32-byte hash");
    let facts = fleet.verify();
    let halted = run.status.halted.as_ref().map(|h| h.reason.clone());
    let mut problems = Vec::new();
    let mut upgraded = 0;
    let mut untouched = 0;
    let mut failed_as_injected = 0;
    let mut data_lost = 0;
    let mut data_unreadable = 0;
    for f in &facts {
        let mut bad = |what: String| problems.push(Problem { child: f.id, what });
        if f.checksum.is_none() {
            data_unreadable += 1;
            bad(format!("data_checksum not answered (the child is {:?})", f.status));
        } else if !f.data_intact() {
            data_lost += 1;
            bad(format!(
                "data checksum {:?}, recorded {:?}",
                f.checksum, f.expected_checksum
            ));
        }
        if !f.running() {
            bad(format!("left {:?}", f.status));
        }
        if !f.registry_agrees() {
            bad(format!(
                "registry says {:?}, the child runs {:?}",
                f.registry
                    .as_ref()
                    .and_then(|r| r.installed_hash.as_ref())
                    .map(hex::encode),
                f.module_hash.map(hex::encode)
            ));
        }
        if f.on(&new_hash) && f.running() {
            upgraded += 1;
        }
        let fault = injected.get(&f.id).copied();
        // A halt leaves the children it did not reach on the old release, as they were.
        if halted.is_some() && f.on(&old_hash) && f.registry_state() != Some(&ChildState::Failed) {
            untouched += 1;
            continue;
        }
        match fault {
            // A rejected start is retried and a drained child topped up: it must end exactly like the others.
            None => {}
            Some(fault) if fault.ends_upgraded() => {}
            Some(fault) => {
                if expected_failure_ok(f, &old_hash) {
                    failed_as_injected += 1;
                } else {
                    bad(format!(
                        "injected {fault}: expected running the old release, marked failed; got {:?} on {:?}, registry {:?}",
                        f.status,
                        f.module_hash.map(hex::encode),
                        f.registry_state()
                    ));
                }
                continue;
            }
        }
        if !f.on(&new_hash) {
            bad(format!(
                "not upgraded: runs {:?}; last error: {:?}",
                f.module_hash.map(hex::encode),
                f.last_error()
            ));
        }
        if f.registry_state() != Some(&ChildState::UpToDate) {
            bad(format!("registry state {:?}", f.registry_state()));
        }
        if let Some(v) = &to.child_version {
            if f.version.as_ref() != Some(v) {
                bad(format!("version() is {:?}, expected {v:?}", f.version));
            }
        }
    }
    let epilogue = if problems.is_empty() && halted.is_none() && (config.rollback || config.snapshots) {
        epilogue(config, &mut fleet, progress, &mut problems)
    } else {
        Vec::new()
    };
    let max_installs_per_child = installs.values().copied().max().unwrap_or(0);
    if max_installs_per_child > 1 {
        let (c, n) = installs.iter().find(|(_, n)| **n > 1).expect("some child");
        problems.push(Problem {
            child: *c,
            what: format!("upgraded {n} times (install_code calls)"),
        });
    }
    if occupancy.max_slots() > config.concurrency as usize {
        problems.push(Problem {
            child: fleet.parent,
            what: format!(
                "{} children in flight at once, K = {}",
                occupancy.max_slots(),
                config.concurrency
            ),
        });
    }

    Report {
        config: config.clone(),
        old_child_hash,
        new_child_hash: release.hash.clone(),
        new_version: release.version.clone(),
        finished: run.finished,
        rounds: run.rounds,
        simulated,
        wall_setup,
        wall_rollout,
        child_install,
        parent_timer: Stats::of(timer),
        parent_all: Stats::of(all),
        cycles,
        top_ups: run.status.top_ups,
        cycles_spent: run.status.cycles_spent,
        halted,
        untouched,
        max_slots: occupancy.max_slots(),
        max_locks: occupancy.max_locks(),
        max_installs_per_child,
        install_calls: installs.values().sum(),
        started_again: records::count_per_target(&calls, "start_canister")
            .values()
            .filter(|n| **n > 1)
            .count(),
        upgraded,
        injected,
        failed_as_injected,
        failed_count: run.status.failed,
        failures: run.status.failures.clone(),
        data_lost,
        data_unreadable,
        problems,
        epilogue,
    }
}

/// Plays `--rollback` and `--snapshot all` after the rollout (see `RehearsalConfig`); records what it saw, and any
/// child that did not end where it should, in `problems`.
fn epilogue(
    config: &RehearsalConfig,
    fleet: &mut Fleet,
    progress: &mut dyn Progress,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let controller = fleet.controller;
    if config.rollback {
        progress.phase("writing on the new release, then rolling back");
        for c in fleet.children.clone() {
            let input = shared::child::MemberInput {
                name: "written before the rollback".into(),
                value: vec![7; 16],
            };
            let _ = fleet.child(c).add_member(controller, "rehearsal-rollback", input);
        }
        fleet.record_checksums();
        let old = fleet
            .parent()
            .releases()
            .first()
            .map(|r| r.hash.clone())
            .expect("the old release is recorded");
        fleet
            .parent()
            .rollout_release(controller, old.clone())
            .expect("rollout_release");
        let (line, _) = drive_and_check(config, fleet, progress, problems, &old, "rollback");
        lines.push(line);
    }
    if config.snapshots {
        let before = fleet.parent().rollout_status().release.hash;
        let bad = Release::from_parent_file(&config.bad);
        progress.phase(&format!("rolling out the bad release {}", config.bad.display()));
        fleet.record_checksums();
        fleet
            .upgrade_parent(&bad, ParentUpgrade::StopFirst)
            .expect("upgrading to the bad release");
        let bad_run = fleet.run_rollout_with(config.max_rounds, |round, status| progress.rollout(round, status));
        let damaged = fleet.verify().iter().filter(|f| !f.data_intact()).count();
        lines.push(format!(
            "bad release    {}: {} snapshots taken, {damaged}/{} children's data changed by it",
            hash8(&bad_run.status.release.hash),
            bad_run.status.snapshots,
            fleet.children.len()
        ));
        progress.phase("restoring the snapshots the bad rollout took");
        let target = shared::parent::RestoreTarget::Rollout(bad_run.status.rollout_id);
        fleet
            .parent()
            .restore_snapshots(controller, target)
            .expect("restore_snapshots");
        let (line, status) = drive_and_check(config, fleet, progress, problems, &before, "restore");
        lines.push(format!("{line}; {} restored from their snapshots", status.restored));
    }
    lines
}

/// Drives the rollout to its end and checks every child: running on `hash`, data as recorded, registry in
/// agreement. Returns the report line and the final status.
fn drive_and_check(
    config: &RehearsalConfig,
    fleet: &Fleet,
    progress: &mut dyn Progress,
    problems: &mut Vec<Problem>,
    hash: &[u8],
    what: &str,
) -> (String, RolloutStatus) {
    let run = fleet.run_rollout_with(config.max_rounds, |round, status| progress.rollout(round, status));
    let expected: [u8; 32] = hash.try_into().expect("32 bytes");
    let mut ok = 0;
    for f in fleet.verify() {
        if f.running() && f.on(&expected) && f.data_intact() && f.registry_agrees() {
            ok += 1;
        } else {
            problems.push(Problem {
                child: f.id,
                what: format!("after the {what}: {f:?}"),
            });
        }
    }
    let line = format!(
        "{what:<14} {ok}/{} children on {} with every byte, {} rounds{}",
        fleet.children.len(),
        hash8(hash),
        run.rounds,
        if run.finished { "" } else { ", DID NOT FINISH" }
    );
    (line, run.status)
}

/// An injected child ends running the old release, marked failed with an error, data intact.
fn expected_failure_ok(f: &ChildFacts, old_hash: &[u8; 32]) -> bool {
    f.running()
        && f.on(old_hash)
        && f.data_intact()
        && f.registry_state() == Some(&ChildState::Failed)
        && f.last_error().is_some_and(|e| !e.is_empty())
}
