//! Property test on the real wasm: whatever happens to the fleet, every acknowledged write survives (a restore loses
//! exactly the writes made after its snapshot), no child is left stopped, and the parent's registry agrees with what
//! each child runs.
//!
//! Each case is a random sequence of steps on a fresh fleet (release A, 3 children holding data):
//! - member writes (`add_member` / `update_member` / `remove_member` on a random child, from its controller). An `Ok` reply
//!   is an acknowledged write and goes into the test's model; an `Err` must agree with the model (e.g.
//!   `AlreadyExists` only if the model has the member) and changes nothing; a reject (the child is being upgraded)
//!   changes nothing either;
//! - a parent upgrade to the other release (A → B → A → …; the parent embeds the child, so going back to A rolls the
//!   children back to child A), as `dfx` does it or stopping the parent first, followed by a few rounds, so later
//!   steps may land in the middle of a rollout (including another parent upgrade);
//! - the operator's controls: `pause_rollout`, `resume_rollout`, `abort_rollout`, gates that halt the rollout at its
//!   first failure (with canaries and a bake), `rollout_release` of the other release (a rollback, or forward again),
//!   snapshots before each upgrade on or off, and `restore_snapshots` of one child, driven to its end: the child must
//!   then hold exactly the members it held when the snapshot was taken;
//! - rounds passing, so that writes land in the middle of operations;
//! - injected traps: the next `post_upgrade` of a child, the parent's next rollout tick (the ic-cdk-timers
//!   executor), and a child's `pre_upgrade`: the real child has none, so its other controller first installs a
//!   legacy build of the module it runs with a trapping `pre_upgrade` (`support/legacy.rs`) and re-registers it with
//!   the parent, which then cannot upgrade it until `retry_child` skips `pre_upgrade`.
//!
//! At the end the operator lifts any pause or halt, drives the rollout to its end, retries the failed children
//! (`retry_child`, skipping `pre_upgrade` where a legacy module runs) and starts a rollout again where an abort or
//! a restore left children behind, until every child runs the fleet's target; then each must hold exactly the
//! model's members, and the registry must agree. Every injected fault must have fired by then (a parent upgrade is
//! added where one has not), and the run checks that each path was reached a minimum number of times.
//!
//! Runs 48 cases of at most 16 steps by default (the workspace optimizes wasmi and the replica in test builds).
//! More:
//! `FLEET_PROPTEST_CASES=64 cargo test -p fleet --test properties`. The cases come from a fixed seed, so every run
//! checks the same sequences; `FLEET_PROPTEST_SEED=<u64>` picks others.

#[path = "support/legacy.rs"]
mod legacy;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use candid::{Encode, Principal};
use fleet::replica::ReplicaConfig;
use fleet::{CanisterStatus, Fleet, FleetConfig, ParentUpgrade, Release};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use shared::child::{ChildError, ChildUpgradeArg, ListMembersArg, MemberInput};
use shared::parent::{
    ChildState, ParentError, RegisterOptions, RestoreTarget, RetryOptions, RolloutGates, RolloutStatus, Share,
    SnapshotPolicy,
};

const CHILDREN: usize = 3;
const MAX_STEPS: usize = 16;
const DEFAULT_CASES: u32 = 48;
const DEFAULT_SEED: u64 = 0xF1EE7;
const MIN_ACKNOWLEDGED: u64 = 1;
const TIMER_EXECUTOR: &str = "canister_update <ic-cdk internal> timer_executor";
/// Rounds allowed for one rollout to end (a trapped tick costs the watchdog's 60 s).
const MAX_ROUNDS: u64 = 1_500;

#[derive(Clone, Copy, Debug)]
enum Write {
    Add,
    Update,
    Remove,
}

#[derive(Clone, Debug)]
enum Step {
    Write {
        child: usize,
        write: Write,
        key: u8,
        value: u8,
    },
    /// Upgrade the parent to the other release, then run `rounds` rounds.
    UpgradeParent {
        stop_first: bool,
        rounds: u8,
    },
    TrapPostUpgrade {
        child: usize,
    },
    TrapPreUpgrade {
        child: usize,
    },
    TrapParentTimer,
    Pause {
        rounds: u8,
    },
    Resume,
    Abort,
    /// Gates that halt at the first failure, with `canaries` canaries (0: none) and a bake of `bake_secs`.
    HaltAtFirstFailure {
        canaries: u8,
        bake_secs: u8,
    },
    /// `rollout_release` of the release the fleet is not targeting, then `rounds` rounds.
    RolloutOther {
        rounds: u8,
    },
    Snapshots {
        on: bool,
    },
    Restore {
        child: usize,
    },
    Rounds {
        n: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let child = 0..CHILDREN;
    let write = prop_oneof![2 => Just(Write::Add), 1 => Just(Write::Update), 1 => Just(Write::Remove)];
    prop_oneof![
        10 => (child.clone(), write, 0u8..4, any::<u8>())
            .prop_map(|(child, write, key, value)| Step::Write { child, write, key, value }),
        5 => (any::<bool>(), 0u8..8).prop_map(|(stop_first, rounds)| Step::UpgradeParent { stop_first, rounds }),
        1 => child.clone().prop_map(|child| Step::TrapPostUpgrade { child }),
        1 => child.clone().prop_map(|child| Step::TrapPreUpgrade { child }),
        1 => Just(Step::TrapParentTimer),
        1 => (0u8..10).prop_map(|rounds| Step::Pause { rounds }),
        1 => Just(Step::Resume),
        1 => Just(Step::Abort),
        1 => (0u8..2, 0u8..20).prop_map(|(canaries, bake_secs)| Step::HaltAtFirstFailure { canaries, bake_secs }),
        2 => (0u8..8).prop_map(|rounds| Step::RolloutOther { rounds }),
        2 => prop::bool::weighted(0.8).prop_map(|on| Step::Snapshots { on }),
        4 => child.prop_map(|child| Step::Restore { child }),
        3 => (1u8..4).prop_map(|n| Step::Rounds { n }),
    ]
}

type Members = BTreeMap<String, (String, Vec<u8>)>;

/// How far the replica's time moves per round (the fleet runs the default replica).
fn round_nanos() -> u64 {
    ReplicaConfig::default().round_duration.as_nanos() as u64
}

struct Releases {
    a: Release,
    b: Release,
    /// child hash → the legacy build of that child (with a trapping pre_upgrade).
    legacy: BTreeMap<[u8; 32], Vec<u8>>,
}

fn releases() -> &'static Releases {
    static R: OnceLock<Releases> = OnceLock::new();
    R.get_or_init(|| {
        let (a, b) = (Release::current(), Release::next());
        let legacy = [("wasm/child.wasm.gz", &a), ("wasm/next/child.wasm.gz", &b)]
            .into_iter()
            .map(|(path, r)| {
                (
                    r.expect_child_hash(),
                    legacy::with_trapping_pre_upgrade(&fleet::wasms::read(path)),
                )
            })
            .collect();
        Releases { a, b, legacy }
    })
}

/// What the cases exercised (printed at the end, to see that the paths are reached).
#[derive(Debug, Default)]
struct Stats {
    acknowledged_writes: u64,
    refused_writes: u64,
    rejected_writes: u64,
    parent_upgrades: u64,
    refused_upgrades: u64,
    legacy_installs: u64,
    retries: u64,
    retries_skipping_pre_upgrade: u64,
    /// Writes per state of the child's entry in the registry when they were sent (acknowledged, rejected).
    writes_by_state: BTreeMap<String, (u64, u64)>,
    faults_injected: u64,
    faults_forced_by_an_extra_rollout: u64,
    pauses: u64,
    aborts: u64,
    halts_seen: u64,
    resumed_at_the_end: u64,
    rollouts_of_the_other_release: u64,
    refused_rollouts_of_the_other_release: u64,
    restores: u64,
    restores_that_lost_writes: u64,
    refused_restores: u64,
    rollouts_started_again: u64,
}

thread_local! {
    static STATS: std::cell::RefCell<Stats> = std::cell::RefCell::default();
}

fn stat(f: impl FnOnce(&mut Stats)) {
    STATS.with_borrow_mut(f)
}

struct World {
    f: Fleet,
    /// Writes members: the fleet's controller (only the parent and controllers may write a child).
    writer: Principal,
    /// The acknowledged members of each child.
    model: Vec<Members>,
    /// Each child's members after each acknowledged write (or restore), with the replica time it executed at.
    history: Vec<Vec<(u64, Members)>>,
    /// The release every child must end on: the parent's embedded child, or the one `rollout_release` named.
    target: [u8; 32],
    /// The release the parent carries now (false: A, true: B).
    on_b: bool,
    /// Children running a legacy module (their pre_upgrade traps).
    legacy: Vec<bool>,
}

fn all_members(f: &Fleet, child: Principal) -> Members {
    let mut out = Members::new();
    let mut start_after = None;
    loop {
        let page = f.child(child).list_members(ListMembersArg {
            start_after,
            limit: 100,
        });
        out.extend(page.members.into_iter().map(|m| (m.id, (m.name, m.value))));
        match page.next {
            Some(next) => start_after = Some(next),
            None => return out,
        }
    }
}

impl World {
    fn new() -> Self {
        let f = Fleet::with_children(&releases().a, FleetConfig::with_concurrency(2), CHILDREN as u32, 6, 16);
        let model: Vec<Members> = f.children.iter().map(|c| all_members(&f, *c)).collect();
        // Snapshots start on, so that restores have something to restore (a step may turn them off).
        f.parent()
            .set_snapshot_policy(f.controller, SnapshotPolicy::All)
            .expect("set_snapshot_policy");
        Self {
            f,
            writer: fleet::controller(),
            history: model.iter().map(|m| vec![(0, m.clone())]).collect(),
            model,
            target: releases().a.expect_child_hash(),
            on_b: false,
            legacy: vec![false; CHILDREN],
        }
    }

    fn other_release(&self) -> &'static Release {
        if self.on_b {
            &releases().a
        } else {
            &releases().b
        }
    }

    /// Records the current model of `child` as of `time`.
    fn remember(&mut self, child: usize, time: u64) {
        self.history[child].push((time, self.model[child].clone()));
    }

    fn apply(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Write {
                child,
                write,
                key,
                value,
            } => self.write(child, write, key, value)?,
            Step::UpgradeParent { stop_first, rounds } => {
                let how = if stop_first {
                    ParentUpgrade::StopFirst
                } else {
                    ParentUpgrade::Direct
                };
                match self.upgrade_parent(how) {
                    Ok(()) => stat(|s| s.parent_upgrades += 1),
                    // A running parent with work in flight refuses a plain upgrade, and nothing changes.
                    Err(e) => {
                        prop_assert!(
                            how == ParentUpgrade::Direct && e.message.contains("Stop it first"),
                            "{e}"
                        );
                        stat(|s| s.refused_upgrades += 1);
                    }
                }
                self.f.replica.tick_n(u64::from(rounds));
            }
            Step::TrapPostUpgrade { child } => {
                stat(|s| s.faults_injected += 1);
                self.f
                    .replica
                    .fail_next_execution(self.f.children[child], "canister_post_upgrade")
            }
            Step::TrapParentTimer => {
                stat(|s| s.faults_injected += 1);
                self.f.replica.fail_next_execution(self.f.parent, TIMER_EXECUTOR)
            }
            Step::TrapPreUpgrade { child } => self.install_legacy(child)?,
            Step::Pause { rounds } => {
                self.f.parent().pause_rollout(self.f.controller).expect("pause_rollout");
                stat(|s| s.pauses += 1);
                self.f.replica.tick_n(u64::from(rounds));
            }
            Step::Resume => self
                .f
                .parent()
                .resume_rollout(self.f.controller)
                .expect("resume_rollout"),
            Step::Abort => {
                self.f.parent().abort_rollout(self.f.controller).expect("abort_rollout");
                stat(|s| s.aborts += 1);
            }
            Step::HaltAtFirstFailure { canaries, bake_secs } => {
                let gates = RolloutGates {
                    canary: (canaries > 0).then_some(Share::Count(u32::from(canaries))),
                    bake_secs: u64::from(bake_secs),
                    health_method: "health".into(),
                    halt_after: Some(Share::Count(1)),
                };
                self.f
                    .parent()
                    .set_rollout_gates(self.f.controller, gates)
                    .expect("set_rollout_gates");
            }
            Step::RolloutOther { rounds } => self.rollout_other(rounds)?,
            Step::Snapshots { on } => {
                let policy = if on { SnapshotPolicy::All } else { SnapshotPolicy::Off };
                self.f
                    .parent()
                    .set_snapshot_policy(self.f.controller, policy)
                    .expect("set_snapshot_policy");
            }
            Step::Restore { child } => self.restore(child)?,
            Step::Rounds { n } => self.f.replica.tick_n(u64::from(n)),
        }
        Ok(())
    }

    /// Upgrades the parent to the release it does not carry; the children's target follows its embedded child.
    fn upgrade_parent(&mut self, how: ParentUpgrade) -> Result<(), fleet::Reject> {
        let next = self.other_release();
        self.f.upgrade_parent(next, how)?;
        self.on_b = !self.on_b;
        self.target = next.expect_child_hash();
        Ok(())
    }

    /// `rollout_release` of the release the fleet is not targeting: refused (and nothing changes) while the parent
    /// has never carried it.
    fn rollout_other(&mut self, rounds: u8) -> Result<(), TestCaseError> {
        let (a, b) = (releases().a.expect_child_hash(), releases().b.expect_child_hash());
        let other = if self.target == a { b } else { a };
        match self.f.parent().rollout_release(self.f.controller, other.to_vec()) {
            Ok(_) => {
                self.target = other;
                stat(|s| s.rollouts_of_the_other_release += 1);
            }
            Err(e) => {
                prop_assert!(matches!(e, ParentError::UnknownRelease { .. }), "{e:?}");
                stat(|s| s.refused_rollouts_of_the_other_release += 1);
            }
        }
        self.f.replica.tick_n(u64::from(rounds));
        Ok(())
    }

    /// `restore_snapshots` of one child, driven to its end. A restored child holds exactly the members it held when
    /// its snapshot was taken; a restore that did not happen changed nothing.
    fn restore(&mut self, child: usize) -> Result<(), TestCaseError> {
        let id = self.f.children[child];
        let snapshot = self.f.parent().get_child(id).and_then(|c| c.snapshot);
        let restoring = self
            .f
            .parent()
            .restore_snapshots(self.f.controller, RestoreTarget::Children(vec![id]));
        match (&restoring, &snapshot) {
            (Ok(_), Some(_)) => {}
            (Err(ParentError::NoSnapshot { .. }), None) | (Err(ParentError::ChildBusy { .. }), _) => {
                stat(|s| s.refused_restores += 1);
                return Ok(());
            }
            _ => prop_assert!(false, "restore_snapshots: {restoring:?} with snapshot {snapshot:?}"),
        }
        let status = self.drive()?;
        let taken_at = snapshot.expect("matched above").taken_at;
        let at_snapshot = self.history[child]
            .iter()
            .rev()
            .find(|(t, _)| *t <= taken_at)
            .map(|(_, m)| m.clone())
            .expect("the first entry is at time 0");
        let members = all_members(&self.f, id);
        if status.restored == 1 {
            prop_assert_eq!(&members, &at_snapshot, "members of {} after its restore", id);
            stat(|s| {
                s.restores += 1;
                s.restores_that_lost_writes += u64::from(at_snapshot != self.model[child]);
            });
        } else {
            // Not restored: then it failed, visibly, and lost nothing.
            prop_assert!(status.failures.iter().any(|f| f.canister_id == id), "{:#?}", status);
            prop_assert_eq!(
                &members,
                &self.model[child],
                "members of {}, not restored: {:#?}",
                id,
                status
            );
        }
        self.model[child] = members;
        let now = self.f.replica.time_nanos();
        self.remember(child, now);
        Ok(())
    }

    fn write(&mut self, child: usize, write: Write, key: u8, value: u8) -> Result<(), TestCaseError> {
        let id = format!("k{key}");
        let input = MemberInput {
            name: format!("n{value}"),
            value: vec![value; 1 + usize::from(value % 7)],
        };
        let state = match self.f.parent().get_child(self.f.children[child]).map(|c| c.state) {
            Some(ChildState::Upgrading { step, .. }) => format!("{step:?}"),
            other => format!("{other:?}"),
        };
        let c = self.f.child(self.f.children[child]);
        let reply = match write {
            Write::Add => c.try_update(self.writer, "add_member", (&id, input.clone())),
            Write::Update => c.try_update(self.writer, "update_member", (&id, input.clone())),
            Write::Remove => c.try_update(self.writer, "remove_member", (&id,)),
        };
        let model = &mut self.model[child];
        let known = model.contains_key(&id);
        let reply: Result<shared::child::Member, ChildError> = match reply {
            Ok(r) => r,
            // Not executed (stopping or stopped for an upgrade): not acknowledged, nothing to record.
            Err(reject) => {
                prop_assert!(reject.message.contains("is stopp"), "unexpected reject: {reject}");
                stat(|s| {
                    s.rejected_writes += 1;
                    s.writes_by_state.entry(state).or_default().1 += 1;
                });
                return Ok(());
            }
        };
        stat(|s| {
            if reply.is_ok() {
                s.acknowledged_writes += 1;
                s.writes_by_state.entry(state).or_default().0 += 1;
            } else {
                s.refused_writes += 1
            }
        });
        // It executed in the round that just ended; time moves on at the end of each round.
        let executed_at = self.f.replica.time_nanos() - round_nanos();
        match (write, reply) {
            (Write::Add, Ok(_)) => {
                prop_assert!(!known, "added {id} twice");
                model.insert(id, (input.name, input.value));
            }
            (Write::Update, Ok(_)) => {
                prop_assert!(known, "updated unknown {id}");
                model.insert(id, (input.name, input.value));
            }
            (Write::Remove, Ok(_)) => {
                prop_assert!(model.remove(&id).is_some(), "removed unknown {id}");
            }
            (Write::Add, Err(ChildError::AlreadyExists { .. })) => prop_assert!(known),
            (Write::Update | Write::Remove, Err(ChildError::NotFound { .. })) => {
                prop_assert!(!known)
            }
            (_, Err(e)) => prop_assert!(false, "unexpected error {e:?}"),
        }
        self.remember(child, executed_at);
        Ok(())
    }

    /// The children's other controller puts a legacy build of the module the child runs on it, then re-registers
    /// the child so that the parent's registry records that module. Done between rollouts, as an operator would.
    fn install_legacy(&mut self, child: usize) -> Result<(), TestCaseError> {
        let id = self.f.children[child];
        self.finish_rollout()?;
        let Some(wasm) = self.f.replica.module_hash(id).and_then(|h| releases().legacy.get(&h)) else {
            return Ok(()); // already a legacy module
        };
        let (r, me) = (&self.f.replica, Some(self.f.controller));
        r.stop_canister(id, me).expect("stop");
        let arg = Encode!(&Some(ChildUpgradeArg::default())).unwrap();
        // A post_upgrade trap injected earlier may fire here: then the child keeps its module.
        let installed = r.upgrade_canister(id, wasm.clone(), arg, me).is_ok();
        r.start_canister(id, me).expect("start");
        if installed {
            self.legacy[child] = true;
            stat(|s| s.legacy_installs += 1);
            let p = self.f.parent();
            p.remove_child(self.f.controller, id).expect("remove_child");
            // A legacy module is no release the parent shipped: the operator forces the adoption.
            let forced = RegisterOptions { force: Some(true) };
            let info = p
                .register_child_with(self.f.controller, id, forced)
                .expect("register_child");
            prop_assert_eq!(info.state, ChildState::Pending);
        }
        Ok(())
    }

    /// Lifts any pause or halt and runs the rollout to its end (halting again is fine: it is lifted again). Whatever
    /// failed, no child may be left stopped, at a halt or at the end.
    fn drive(&mut self) -> Result<RolloutStatus, TestCaseError> {
        for _ in 0..10 {
            let p = self.f.parent();
            if p.rollout_status().paused {
                p.resume_rollout(self.f.controller).expect("resume_rollout");
                stat(|s| s.resumed_at_the_end += 1);
            }
            let run = self.f.run_rollout_to_end(MAX_ROUNDS);
            for c in &self.f.children {
                prop_assert_eq!(
                    self.f.replica.status(*c),
                    CanisterStatus::Running,
                    "child {} after the run",
                    c
                );
            }
            if run.finished {
                return Ok(run.status);
            }
            prop_assert!(
                Fleet::is_halted(&run.status),
                "the rollout did not end: {:#?}",
                run.status
            );
            stat(|s| s.halts_seen += 1);
            p.resume_rollout(self.f.controller).expect("resume_rollout");
        }
        Err(TestCaseError::fail(format!(
            "still halting after 10 resumes: {:#?}",
            self.f.parent().rollout_status()
        )))
    }

    /// Drives the rollout to its end, retries every failed child (skipping pre_upgrade where a legacy module runs)
    /// and starts a rollout again while children are not on the target (after an abort or a restore), until every
    /// child runs the target.
    fn finish_rollout(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..8 {
            let status = self.drive()?;
            // A child runs a legacy module while it runs neither release's child.
            for (i, c) in self.f.children.iter().enumerate() {
                self.legacy[i] = self
                    .f
                    .replica
                    .module_hash(*c)
                    .is_some_and(|h| !releases().legacy.contains_key(&h));
            }
            if status.failed == 0 {
                let behind = self
                    .f
                    .children
                    .iter()
                    .any(|c| self.f.replica.module_hash(*c) != Some(self.target));
                if !behind {
                    return Ok(());
                }
                self.f.parent().start_rollout(self.f.controller).expect("start_rollout");
                stat(|s| s.rollouts_started_again += 1);
                continue;
            }
            for failure in &status.failures {
                let child = self
                    .f
                    .children
                    .iter()
                    .position(|c| *c == failure.canister_id)
                    .expect("a fleet child");
                let options = RetryOptions {
                    skip_pre_upgrade: Some(self.legacy[child]),
                };
                stat(|s| {
                    s.retries += 1;
                    s.retries_skipping_pre_upgrade += u64::from(self.legacy[child]);
                });
                self.f
                    .parent()
                    .retry_child(self.f.controller, failure.canister_id, options)
                    .expect("retry_child");
            }
        }
        Err(TestCaseError::fail(format!(
            "children still failing or behind after 8 rounds of retries: {:#?}",
            self.f.parent().rollout_status()
        )))
    }

    /// Every injected fault must fire: one that never did tested nothing. A post_upgrade trap waits for its child's
    /// next install, and a timer trap for the parent's next tick, so moving every child to the other release once
    /// more fires them.
    fn check(&mut self) -> Result<(), TestCaseError> {
        self.finish_rollout()?;
        if !self.f.replica.pending_faults().is_empty() {
            stat(|s| s.faults_forced_by_an_extra_rollout += 1);
            if self.other_release().expect_child_hash() == self.target {
                self.rollout_other(0)?;
            } else {
                self.upgrade_parent(ParentUpgrade::StopFirst)
                    .expect("upgrade the parent");
            }
            self.finish_rollout()?;
        }
        prop_assert_eq!(
            self.f.replica.pending_faults(),
            Vec::<String>::new(),
            "faults that never fired"
        );
        let expected = self.target;
        for (i, facts) in self.f.verify().iter().enumerate() {
            prop_assert!(facts.running(), "child {} is {:?}", facts.id, facts.status);
            prop_assert!(
                facts.on(&expected),
                "child {} does not run the parent's release",
                facts.id
            );
            prop_assert!(facts.registry_agrees(), "registry disagrees: {:?}", facts.registry);
            prop_assert_eq!(facts.registry_state(), Some(&ChildState::UpToDate));
            let members = all_members(&self.f, facts.id);
            prop_assert_eq!(&members, &self.model[i], "members of child {}", facts.id);
        }
        Ok(())
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

#[test]
fn acknowledged_writes_survive_any_sequence_of_upgrades_and_traps() {
    let cases = env_u64("FLEET_PROPTEST_CASES").map_or(DEFAULT_CASES, |n| n as u32);
    let seed = env_u64("FLEET_PROPTEST_SEED").unwrap_or(DEFAULT_SEED);
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let steps = proptest::collection::vec(step(), 1..=MAX_STEPS);
    runner
        .run(&steps, |steps| {
            let mut world = World::new();
            for s in &steps {
                world.apply(s)?;
            }
            world.check()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    STATS.with_borrow(|s| {
        eprintln!("{cases} cases: {s:#?}");
        if cases >= DEFAULT_CASES {
            every_path_was_reached(s);
        }
    });
}

/// What the default run must reach at least (about half of what the default seed reaches), so that a change that
/// starves a path (a step that always fails early, a fault that cannot fire) fails the test.
fn every_path_was_reached(s: &Stats) {
    let during_operations: u64 = s
        .writes_by_state
        .iter()
        .filter(|(state, _)| !state.starts_with("Some(") && *state != "None")
        .map(|(_, (acknowledged, rejected))| acknowledged + rejected)
        .sum();
    let minimums = [
        ("acknowledged writes", s.acknowledged_writes, MIN_ACKNOWLEDGED),
        ("writes rejected by a stopped child", s.rejected_writes, 1),
        ("writes during an operation", during_operations, 1),
        ("parent upgrades", s.parent_upgrades, 1),
        ("upgrades refused while work was in flight", s.refused_upgrades, 1),
        ("faults injected (each one fired)", s.faults_injected, 1),
        (
            "legacy installs retried skipping pre_upgrade",
            s.retries_skipping_pre_upgrade,
            1,
        ),
        ("pauses", s.pauses, 1),
        ("aborts", s.aborts, 1),
        ("halts", s.halts_seen, 1),
        ("rollouts of the other release", s.rollouts_of_the_other_release, 1),
        ("restores", s.restores, 1),
        (
            "restores that lost writes made after the snapshot",
            s.restores_that_lost_writes,
            1,
        ),
        (
            "rollouts started again after an abort or a restore",
            s.rollouts_started_again,
            1,
        ),
    ];
    for (what, seen, min) in minimums {
        assert!(
            seen >= min,
            "{what}: {seen}, fewer than {min}; the run no longer exercises this path"
        );
    }
}
