//! Property test on the real wasm: whatever happens to the fleet, every acknowledged write survives, no child is left
//! stopped, and the parent's registry agrees with what each child runs.
//!
//! Each case is a random sequence of steps on a fresh fleet (release A, 3 children holding data):
//! - member writes (`add_member` / `update_member` / `remove_member` on a random child, from its controller). An `Ok` reply
//!   is an acknowledged write and goes into the test's model; an `Err` must agree with the model (e.g.
//!   `AlreadyExists` only if the model has the member) and changes nothing; a reject (the child is being upgraded)
//!   changes nothing either;
//! - a parent upgrade to the other release (A → B → A → …; the parent embeds the child, so going back to A rolls the
//!   children back to child A), as `dfx` does it or stopping the parent first, followed by a few rounds, so later
//!   steps may land in the middle of a rollout (including another parent upgrade);
//! - injected traps: the next `post_upgrade` of a child, the parent's next rollout tick (the ic-cdk-timers
//!   executor), and a child's `pre_upgrade`: the real child has none, so its other controller first installs a
//!   legacy build of the module it runs with a trapping `pre_upgrade` (`support/legacy.rs`) and re-registers it with
//!   the parent, which then cannot upgrade it until `retry_child` skips `pre_upgrade`.
//!
//! At the end the operator drives the rollout to its end and retries the failed children (`retry_child`, skipping
//! `pre_upgrade` where a legacy module runs) until none fails; then every child must be running the current
//! release with exactly the model's members, and the registry must agree.
//!
//! Runs 16 cases of at most 8 steps by default (about 4 s; the workspace optimizes wasmi and the replica in test
//! builds). More:
//! `FLEET_PROPTEST_CASES=64 cargo test -p fleet --test properties`. The cases come from a fixed seed, so every run
//! checks the same sequences; `FLEET_PROPTEST_SEED=<u64>` picks others.

#[path = "support/legacy.rs"]
mod legacy;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use candid::{Encode, Principal};
use fleet::{CanisterStatus, Fleet, FleetConfig, ParentUpgrade, Release};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use shared::child::{ChildError, ChildUpgradeArg, ListMembersArg, MemberInput};
use shared::parent::{ChildState, RegisterOptions, RetryOptions};

const CHILDREN: usize = 3;
const MAX_STEPS: usize = 8;
const DEFAULT_CASES: u32 = 16;
const DEFAULT_SEED: u64 = 0xF1EE7;
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
}

fn step() -> impl Strategy<Value = Step> {
    let child = 0..CHILDREN;
    let write = prop_oneof![Just(Write::Add), Just(Write::Update), Just(Write::Remove)];
    prop_oneof![
        4 => (child.clone(), write, 0u8..4, any::<u8>())
            .prop_map(|(child, write, key, value)| Step::Write { child, write, key, value }),
        3 => (any::<bool>(), 0u8..30).prop_map(|(stop_first, rounds)| Step::UpgradeParent { stop_first, rounds }),
        1 => child.clone().prop_map(|child| Step::TrapPostUpgrade { child }),
        1 => child.prop_map(|child| Step::TrapPreUpgrade { child }),
        1 => Just(Step::TrapParentTimer),
    ]
}

type Members = BTreeMap<String, (String, Vec<u8>)>;

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
        let model = f.children.iter().map(|c| all_members(&f, *c)).collect();
        Self {
            f,
            writer: fleet::controller(),
            model,
            on_b: false,
            legacy: vec![false; CHILDREN],
        }
    }

    fn release(&self) -> &'static Release {
        if self.on_b {
            &releases().b
        } else {
            &releases().a
        }
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
                let other = if self.on_b { &releases().a } else { &releases().b };
                match self.f.upgrade_parent(other, how) {
                    Ok(()) => {
                        self.on_b = !self.on_b;
                        stat(|s| s.parent_upgrades += 1);
                    }
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
            Step::TrapPostUpgrade { child } => self
                .f
                .replica
                .fail_next_execution(self.f.children[child], "canister_post_upgrade"),
            Step::TrapParentTimer => self.f.replica.fail_next_execution(self.f.parent, TIMER_EXECUTOR),
            Step::TrapPreUpgrade { child } => self.install_legacy(child)?,
        }
        Ok(())
    }

    fn write(&mut self, child: usize, write: Write, key: u8, value: u8) -> Result<(), TestCaseError> {
        let id = format!("k{key}");
        let input = MemberInput {
            name: format!("n{value}"),
            value: vec![value; 1 + usize::from(value % 7)],
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
                stat(|s| s.rejected_writes += 1);
                return Ok(());
            }
        };
        stat(|s| {
            if reply.is_ok() {
                s.acknowledged_writes += 1
            } else {
                s.refused_writes += 1
            }
        });
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

    /// Drives the rollout to its end, then retries every failed child (skipping pre_upgrade where a legacy module
    /// runs) until none fails.
    fn finish_rollout(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..5 {
            let run = self.f.run_rollout_to_end(MAX_ROUNDS);
            prop_assert!(run.finished, "the rollout did not end: {:#?}", run.status);
            // Whatever failed, a finished rollout leaves no child stopped.
            for c in &self.f.children {
                prop_assert_eq!(
                    self.f.replica.status(*c),
                    CanisterStatus::Running,
                    "child {} after the rollout",
                    c
                );
            }
            if run.status.failed == 0 {
                for (i, c) in self.f.children.iter().enumerate() {
                    self.legacy[i] = self
                        .f
                        .replica
                        .module_hash(*c)
                        .is_some_and(|h| !releases().legacy.contains_key(&h));
                }
                return Ok(());
            }
            for failure in &run.status.failures {
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
        prop_assert!(
            false,
            "children still failing after 5 retries: {:#?}",
            self.f.parent().rollout_status()
        );
        Ok(())
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        self.finish_rollout()?;
        let expected = self.release().expect_child_hash();
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
    STATS.with_borrow(|s| eprintln!("{cases} cases: {s:?}"));
}
