//! Benchmarks (b)–(d): the parent's rollout on the in-process replica, with the real parent and child modules of
//! release A (`wasm/parent.wasm.gz`) and release B (`wasm/next/parent.wasm.gz`), driven by the `fleet` harness.
//!
//! - (b) [`measure_rollout`]: a rollout A → B of N children at concurrency K: rounds, the round floor, parent
//!   instructions per execution, wall time;
//! - (c) [`measure_noop_redeploy`]: the same fleet's parent upgraded B → B after the rollout: management calls and
//!   parent executions afterwards;
//! - (d) [`measure_registry`]: the parent's upgrade and timer executions with a large registry of empty canisters
//!   adopted with `register_child`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use candid::{Encode, Principal};
use fleet::cycles::{Balances, CyclesReport};
use fleet::records::{self, Occupancy, Stats};
use fleet::replica::ic00::CanisterSettings;
use fleet::replica::{ExecutionRecord, ManagementCall};
use fleet::{Fleet, FleetConfig, ParentUpgrade, Release};
use shared::parent::{ChildInfo, ChildState, ParentError, SnapshotPolicy};

/// The IC's per-message instruction limit for updates, timers and callbacks.
pub const IC_MESSAGE_LIMIT: u64 = 40_000_000_000;
/// The parent's own target for one timer execution.
pub const TICK_TARGET: u64 = 1_000_000_000;
/// The parent's target for `post_upgrade` with 10,000 children registered.
pub const POST_UPGRADE_TARGET: u64 = 10_000_000;
/// Goal of (b): the largest fleet at the largest K finishes within this many times the floor.
pub const FLOOR_GOAL_RATIO: f64 = 1.2;
/// Members written to every child before a rollout, and their value size: the data the verification checks.
pub const MEMBERS_PER_CHILD: u32 = 10;
pub const VALUE_SIZE: u32 = 64;
/// Sequential management calls per child in one upgrade that hold its slot: the funds check (canister_status), stop,
/// install_code, start (the confirming canister_status overlaps the next child's check).
pub const CALLS_PER_CHILD: u64 = 4;
/// Rounds run after a no-op redeploy: two intervals of the parent's 60 s watchdog at 1 s per round.
pub const NOOP_ROUNDS: u64 = 120;
/// Rounds run with K = 50 after the planner has read the large registry in (d).
pub const REGISTRY_LAUNCH_ROUNDS: u64 = 30;
/// (d) Rounds run after the parent's upgrade, before K is raised.
pub const AFTER_UPGRADE_ROUNDS: u64 = 5;
const MAX_ROUNDS: u64 = 200_000;

/// The parent's executions (queries excluded: they are the harness polling `rollout_status`, and roll back).
#[derive(Clone, Debug, Default)]
pub struct ParentExecutions {
    /// `canister_global_timer` and the ic-cdk-timers executor self-call (`<ic-cdk internal> timer_executor`).
    pub timer: Stats,
    /// Every execution but queries and the install_code phases: timers, callbacks, updates.
    pub all: Stats,
    /// Entry and instructions of the largest execution in `all`.
    pub largest: Option<(String, u64)>,
    /// Executions that trapped.
    pub traps: usize,
}

impl ParentExecutions {
    pub fn of(executions: &[ExecutionRecord], parent: Principal) -> Self {
        let mine: Vec<&ExecutionRecord> = executions
            .iter()
            .filter(|e| e.canister == parent)
            .filter(|e| !e.entry.starts_with("canister_query") && !records::INSTALL_ENTRIES.contains(&e.entry.as_str()))
            .collect();
        let timer = mine
            .iter()
            .filter(|e| records::is_timer_entry(&e.entry))
            .map(|e| e.instructions)
            .collect();
        let largest = mine
            .iter()
            .max_by_key(|e| e.instructions)
            .map(|e| (e.entry.clone(), e.instructions));
        Self {
            timer: Stats::of(timer),
            all: Stats::of(mine.iter().map(|e| e.instructions).collect()),
            largest,
            traps: mine.iter().filter(|e| e.outcome.is_err()).count(),
        }
    }
}

/// Instructions of one install_code of `canister` in `executions`: (pre_upgrade, start, post_upgrade).
pub fn install_phases(executions: &[ExecutionRecord], canister: Principal) -> [u64; 3] {
    let mut out = [0; 3];
    for e in executions.iter().filter(|e| e.canister == canister) {
        match e.entry.as_str() {
            "canister_pre_upgrade" => out[0] += e.instructions,
            "(start)" => out[1] += e.instructions,
            "canister_post_upgrade" => out[2] += e.instructions,
            _ => {}
        }
    }
    out
}

/// The smallest number of rounds between the handling of two consecutive management calls of one child operation
/// (stop → install_code → start → canister_status), found in the parent's calls. The next call goes out from the
/// callback of the previous one, so this is the replica's minimum round trip of one management call from the parent:
/// handled in the round after it is made, answered to the callback one round later.
pub fn min_call_rounds(calls: &[ManagementCall]) -> Option<u64> {
    let mut per_child: BTreeMap<Principal, Vec<&ManagementCall>> = BTreeMap::new();
    for c in calls {
        if let Some(t) = c.target {
            per_child.entry(t).or_default().push(c);
        }
    }
    let sequential = |a: &str, b: &str| {
        matches!(
            (a, b),
            ("stop_canister", "install_code")
                | ("install_code", "start_canister")
                | ("start_canister", "canister_status")
        )
    };
    per_child
        .values()
        .flat_map(|calls| {
            calls
                .windows(2)
                .filter(|w| sequential(&w[0].method, &w[1].method))
                .map(|w| w[1].round - w[0].round)
        })
        .min()
}

/// (b) One rollout A → B.
#[derive(Clone, Debug)]
pub struct RolloutPoint {
    pub children: u32,
    pub concurrency: u32,
    pub finished: bool,
    /// Rounds from the round that executes the parent's upgrade (inclusive) to the round in which the rollout's
    /// last result is committed.
    pub rounds: u64,
    /// Rounds one management call takes from the parent, measured ([`min_call_rounds`]).
    pub call_rounds: u64,
    /// `ceil(N / K) × 3 × call_rounds`.
    pub floor: u64,
    pub simulated: Duration,
    pub post_upgrade: u64,
    pub parent: ParentExecutions,
    pub child_install: Stats,
    pub management_calls: usize,
    pub install_calls: usize,
    pub max_slots: usize,
    /// Every child running B's child module, running, data intact, registry in agreement.
    pub verified: usize,
    pub wall_setup: Duration,
    /// Wall time of the upgrade and the rounds of the rollout.
    pub wall_rollout: Duration,
    /// Cycles the rollout cost the parent and the children (from the parent's upgrade to the end).
    pub cycles: CyclesReport,
}

impl RolloutPoint {
    pub fn ratio(&self) -> f64 {
        self.rounds as f64 / self.floor as f64
    }
}

/// (c) The parent upgraded to the module it runs, after the rollout finished.
#[derive(Clone, Debug)]
pub struct NoopPoint {
    pub children: u32,
    /// The parent's open call contexts just before the upgrade (calls whose replies may still run afterwards).
    pub open_contexts_before: usize,
    /// (pre_upgrade, start, post_upgrade) of the parent's install_code.
    pub install: [u64; 3],
    pub rounds: u64,
    pub management_calls: usize,
    /// Parent executions in those rounds (queries excluded).
    pub parent: ParentExecutions,
    /// `rollout_status` still reports the finished rollout, nothing planned, queued or in flight.
    pub still_finished: bool,
}

/// A fleet of `n` children created by the parent of `a` at concurrency `k`, each with [`MEMBERS_PER_CHILD`] members.
pub fn fleet_of(a: &Release, n: u32, k: u32) -> Fleet {
    let mut fleet = Fleet::new(a, FleetConfig::with_concurrency(k));
    fleet.create_children(n);
    fleet.fill_all(MEMBERS_PER_CHILD, VALUE_SIZE);
    fleet.record_checksums();
    fleet
}

/// (b) Upgrades the parent of a fresh fleet of `n` children from `a` to `b` and runs the rollout to its end; then
/// verifies every child. With `snapshots`, the parent snapshots each child before its install (one more management
/// call per child). Returns the fleet too, for (c).
pub fn measure_rollout(a: &Release, b: &Release, n: u32, k: u32, snapshots: bool) -> (RolloutPoint, Fleet) {
    let setup = Instant::now();
    let fleet = fleet_of(a, n, k);
    if snapshots {
        let all = SnapshotPolicy::All;
        fleet
            .parent()
            .set_snapshot_policy(fleet.controller, all)
            .expect("set_snapshot_policy");
    }
    let wall_setup = setup.elapsed();
    let calls_from = fleet.replica.management_calls().len();
    let executions_from = fleet.replica.executions().len();
    let round0 = fleet.replica.round();
    let time0 = fleet.replica.time_nanos();
    let balances = Balances::of(&fleet);

    let started = Instant::now();
    fleet
        .upgrade_parent(b, ParentUpgrade::Direct)
        .expect("upgrade the parent A → B");
    let run = fleet.run_rollout_to_end(MAX_ROUNDS);
    let wall_rollout = started.elapsed();

    let calls = records::calls_since(&fleet.replica, fleet.parent, calls_from);
    let executions: Vec<ExecutionRecord> = fleet.replica.executions().into_iter().skip(executions_from).collect();
    let call_rounds = min_call_rounds(&calls).expect("the parent made sequential management calls");
    let n64 = u64::from(n);
    let k64 = u64::from(k);
    let hash = b.expect_child_hash();
    let verified = fleet
        .verify()
        .iter()
        .filter(|f| f.running() && f.on(&hash) && f.data_intact() && f.registry_agrees())
        .count();
    let point = RolloutPoint {
        children: n,
        concurrency: k,
        finished: run.finished,
        rounds: run.last_round - round0,
        call_rounds,
        floor: n64.div_ceil(k64) * (CALLS_PER_CHILD + u64::from(snapshots)) * call_rounds,
        simulated: Duration::from_nanos(run.end_time_ns - time0),
        post_upgrade: install_phases(&executions, fleet.parent)[2],
        parent: ParentExecutions::of(&executions, fleet.parent),
        child_install: Stats::of(records::child_install_instructions(&executions, &fleet.children)),
        management_calls: calls.len(),
        install_calls: records::count_per_target(&calls, "install_code").values().sum(),
        max_slots: Occupancy::from_spans(&records::op_spans(&calls), fleet.replica.round()).max_slots(),
        verified,
        wall_setup,
        wall_rollout,
        cycles: CyclesReport::between(&balances, &Balances::of(&fleet), run.last_round - round0),
    };
    (point, fleet)
}

/// (c) Upgrades the parent of `fleet` (after a finished rollout) to `b` again, runs [`NOOP_ROUNDS`] rounds, and
/// counts what the parent did.
pub fn measure_noop_redeploy(fleet: &Fleet, b: &Release) -> NoopPoint {
    let calls_from = fleet.replica.management_calls().len();
    let executions_from = fleet.replica.executions().len();
    let round0 = fleet.replica.round();
    let open_contexts_before = fleet.replica.open_call_contexts(fleet.parent);
    fleet
        .upgrade_parent(b, ParentUpgrade::Direct)
        .expect("upgrade the parent B → B");
    fleet.replica.tick_n(NOOP_ROUNDS);
    let calls = records::calls_since(&fleet.replica, fleet.parent, calls_from);
    let executions: Vec<ExecutionRecord> = fleet.replica.executions().into_iter().skip(executions_from).collect();
    NoopPoint {
        children: fleet.children.len() as u32,
        open_contexts_before,
        install: install_phases(&executions, fleet.parent),
        rounds: fleet.replica.round() - round0,
        management_calls: calls.len(),
        parent: ParentExecutions::of(&executions, fleet.parent),
        still_finished: Fleet::is_finished(&fleet.parent().rollout_status()),
    }
}

/// (d) The parent with a large registry.
#[derive(Clone, Debug)]
pub struct RegistryPoint {
    pub registered: u64,
    /// Wall time to create the empty canisters and register them.
    pub wall_setup: Duration,
    /// The upgrade A → B with every entry queued (K = 0): (pre_upgrade, start, post_upgrade).
    pub upgrade: [u64; 3],
    /// Parent executions from the upgrade through [`AFTER_UPGRADE_ROUNDS`] rounds (K = 0: nothing launched, so the
    /// planner reads nothing; the parent only finishes its upgrade).
    pub after_upgrade: ParentExecutions,
    /// Parent executions during [`REGISTRY_LAUNCH_ROUNDS`] rounds after `set_concurrency(50)`.
    pub launching: ParentExecutions,
    pub launch_concurrency: u32,
    /// install_code calls the parent made in those rounds (children installed into the empty canisters).
    pub launching_installs: usize,
    pub launching_calls: usize,
}

/// (d) Creates `n` empty canisters (no module) controlled by the parent of `a` and the fleet's controller, registers
/// each with the parent's `register_child` while the parent's concurrency is 0 (so every entry stays queued and
/// nothing is installed), upgrades the parent to `b`, runs [`AFTER_UPGRADE_ROUNDS`] rounds, then sets K = `k` and runs
/// [`REGISTRY_LAUNCH_ROUNDS`] rounds (the planner reads the registry as slots free up).
pub fn measure_registry(a: &Release, b: &Release, n: u32, k: u32) -> RegistryPoint {
    let setup = Instant::now();
    let fleet = Fleet::new(a, FleetConfig::with_concurrency(0));
    let settings = CanisterSettings {
        controllers: Some(vec![fleet.parent, fleet.controller]),
        ..Default::default()
    };
    let ids: Vec<Principal> = (0..n)
        .map(|_| {
            fleet
                .replica
                .create_canister_with_settings(Some(fleet.controller), Some(settings.clone()))
        })
        .collect();
    // Each register_child makes one canister_status call; at most 500 may wait between the parent and the
    // management canister (the IC's queue capacity), so at most 500 registrations run at once.
    const BATCH: usize = 500;
    for (i, batch) in ids.chunks(BATCH).enumerate() {
        let messages: Vec<_> = batch
            .iter()
            .map(|id| {
                let payload = Encode!(id).expect("encode");
                fleet
                    .replica
                    .submit_call(fleet.parent, fleet.controller, "register_child", payload)
                    .expect("submit register_child")
            })
            .collect();
        for m in messages {
            let bytes = fleet.replica.await_call(m).expect("register_child");
            let info: Result<ChildInfo, ParentError> = candid::decode_one(&bytes).expect("decode register_child");
            let info = info.unwrap_or_else(|e| panic!("register_child: {e:?}"));
            assert_eq!(info.state, ChildState::Pending, "an empty canister is queued");
        }
        eprintln!("  registered {} of {n}", i * BATCH + batch.len());
    }
    let registered = fleet.parent().rollout_status().total_children;
    assert_eq!(registered, u64::from(n), "every canister is registered");
    let wall_setup = setup.elapsed();

    // The upgrade, then a few rounds with K = 0.
    let executions_from = fleet.replica.executions().len();
    let calls_from = fleet.replica.management_calls().len();
    // Queued work keeps the parent's timers armed, so it refuses a plain upgrade: stopped first, as an operator would.
    fleet
        .upgrade_parent(b, ParentUpgrade::StopFirst)
        .expect("upgrade the parent A → B");
    fleet.replica.tick_n(AFTER_UPGRADE_ROUNDS);
    let executions: Vec<ExecutionRecord> = fleet.replica.executions().into_iter().skip(executions_from).collect();
    let upgrade = install_phases(&executions, fleet.parent);
    let after_upgrade = ParentExecutions::of(&executions, fleet.parent);
    assert!(
        records::calls_since(&fleet.replica, fleet.parent, calls_from).is_empty(),
        "K = 0: no calls"
    );

    // K = k: operations start on the empty canisters (re-check, then install the child).
    let executions_from = fleet.replica.executions().len();
    let calls_from = fleet.replica.management_calls().len();
    fleet
        .parent()
        .set_concurrency(fleet.controller, k)
        .expect("set_concurrency");
    fleet.replica.tick_n(REGISTRY_LAUNCH_ROUNDS);
    let executions: Vec<ExecutionRecord> = fleet.replica.executions().into_iter().skip(executions_from).collect();
    let calls = records::calls_since(&fleet.replica, fleet.parent, calls_from);
    RegistryPoint {
        registered,
        wall_setup,
        upgrade,
        after_upgrade,
        launching: ParentExecutions::of(&executions, fleet.parent),
        launch_concurrency: k,
        launching_installs: records::count_per_target(&calls, "install_code").values().sum(),
        launching_calls: calls.len(),
    }
}
