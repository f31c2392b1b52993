//! A fleet on the replica: a parent (installed from a [`Release`]) controlled by [`Fleet::controller`], its
//! children full of synthetic data, and the operator's moves: upgrade the parent, drive rounds until the rollout
//! ends, verify every child.
//!
//! ```no_run
//! use fleet::{Fleet, FleetConfig, ParentUpgrade, Release};
//! let mut fleet = Fleet::new(&Release::current(), FleetConfig::default());
//! fleet.create_children(20);
//! fleet.fill_all(50, 64);
//! fleet.record_checksums();
//! fleet.upgrade_parent(&Release::next(), ParentUpgrade::Direct).unwrap();
//! let run = fleet.run_rollout_to_end(1_000);
//! assert!(run.finished);
//! for facts in fleet.verify() {
//!     facts.assert_healthy_on(&Release::next().expect_child_hash());
//! }
//! ```

use std::collections::BTreeMap;

use candid::{Encode, Nat, Principal};
use replica::{CanisterStatus, Reject, Replica, ReplicaConfig};
use shared::child::{DataChecksum, FillArg, MAX_FILL_COUNT};
use shared::parent::{ChildInfo, ChildState, ParentArg, RolloutStatus};

use crate::child::ChildApi;
use crate::parent::{ParentApi, MAX_CREATE_PER_CALL};
use crate::wasms::Release;

/// How a fleet is set up.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The parent's rollout concurrency K.
    pub concurrency: u32,
    /// Admins of the parent besides its controller.
    pub admins: Vec<Principal>,
    /// Extra controllers of every new child besides the parent. The fleet's controller is always added (so that it
    /// can make admin calls, such as `admin_fill`, to the children).
    pub extra_controllers: Vec<Principal>,
    /// Cycles per new child (`None`: the parent's default).
    pub cycles_per_child: Option<u128>,
    pub replica: ReplicaConfig,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            concurrency: 10,
            admins: Vec::new(),
            extra_controllers: Vec::new(),
            cycles_per_child: None,
            replica: ReplicaConfig::default(),
        }
    }
}

impl FleetConfig {
    pub fn with_concurrency(concurrency: u32) -> Self {
        Self {
            concurrency,
            ..Self::default()
        }
    }
}

/// How the operator upgrades the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentUpgrade {
    /// `dfx canister install parent --mode upgrade`: one `install_code` (upgrade) on the running parent.
    Direct,
    /// The careful operator: `dfx canister stop parent`, the upgrade, `dfx canister start parent`.
    StopFirst,
    /// An operator forcing past the parent's refusal: `install_code` in upgrade mode with `skip_pre_upgrade = opt
    /// true` on the running parent (a direct management call), so outstanding callbacks reach the new module.
    SkippingPreUpgrade,
}

/// The result of driving rounds until the rollout ends (or `max_rounds` ran).
#[derive(Clone, Debug)]
pub struct RolloutRun {
    /// Rounds run.
    pub rounds: u64,
    /// The rollout ended: `finished_at` set, nothing planned, queued or in flight.
    pub finished: bool,
    /// `rollout_status` at the end.
    pub status: RolloutStatus,
    /// Replica round and time (ns) when driving started and ended.
    pub first_round: u64,
    pub last_round: u64,
    pub start_time_ns: u64,
    pub end_time_ns: u64,
}

impl RolloutRun {
    pub fn simulated_secs(&self) -> f64 {
        (self.end_time_ns - self.start_time_ns) as f64 / 1e9
    }
}

/// What one child looks like after a rollout, from the replica (ground truth), the child and the parent's registry.
#[derive(Clone, Debug)]
pub struct ChildFacts {
    pub id: Principal,
    /// From the replica.
    pub status: CanisterStatus,
    pub module_hash: Option<[u8; 32]>,
    /// From the child's `version()` and `data_checksum()` queries; `None` if the query was rejected (a stopped or
    /// empty child answers no queries).
    pub version: Option<String>,
    pub checksum: Option<DataChecksum>,
    /// Recorded by [`Fleet::record_checksums`] (`None` if never recorded).
    pub expected_checksum: Option<DataChecksum>,
    /// The parent's registry entry (`None`: not registered).
    pub registry: Option<ChildInfo>,
}

impl ChildFacts {
    pub fn running(&self) -> bool {
        self.status == CanisterStatus::Running
    }

    pub fn on(&self, hash: &[u8; 32]) -> bool {
        self.module_hash.as_ref() == Some(hash)
    }

    /// The data checksum equals the recorded one (false if none was recorded or the child does not answer).
    pub fn data_intact(&self) -> bool {
        self.expected_checksum.is_some() && self.expected_checksum == self.checksum
    }

    /// The registry's `installed_hash` is the child's actual `module_hash`.
    pub fn registry_agrees(&self) -> bool {
        self.registry.as_ref().and_then(|c| c.installed_hash.as_deref()) == self.module_hash.as_ref().map(|h| &h[..])
    }

    pub fn registry_state(&self) -> Option<&ChildState> {
        self.registry.as_ref().map(|c| &c.state)
    }

    pub fn last_error(&self) -> Option<&str> {
        self.registry.as_ref().and_then(|c| c.last_error.as_deref())
    }

    /// Panics unless the child runs `hash`, is running, kept its data, and the registry agrees (and is idle).
    pub fn assert_healthy_on(&self, hash: &[u8; 32]) {
        assert!(self.running(), "child {} is {:?}, not running", self.id, self.status);
        assert!(
            self.on(hash),
            "child {} runs {:?}, expected {}",
            self.id,
            self.module_hash.map(hex::encode),
            hex::encode(hash)
        );
        assert!(
            self.data_intact(),
            "child {} lost data: checksum {:?}, recorded {:?}",
            self.id,
            self.checksum,
            self.expected_checksum
        );
        assert!(
            self.registry_agrees(),
            "registry disagrees for {}: {:?} vs module_hash {:?}",
            self.id,
            self.registry,
            self.module_hash.map(hex::encode)
        );
    }
}

/// A parent with children on one replica.
pub struct Fleet {
    pub replica: Replica,
    pub parent: Principal,
    /// Controller of the parent, and extra controller of every child.
    pub controller: Principal,
    /// The children created by [`Fleet::create_children`], in creation order.
    pub children: Vec<Principal>,
    /// Data checksums recorded by [`Fleet::record_checksums`].
    pub checksums: BTreeMap<Principal, DataChecksum>,
    /// The release the parent was installed with.
    pub installed: Release,
}

impl Fleet {
    /// A new replica with the parent of `release` installed (arg: concurrency, admins, extra controllers incl. the
    /// fleet's controller, cycles per child), controlled by [`crate::controller`].
    pub fn new(release: &Release, config: FleetConfig) -> Self {
        let replica = Replica::with_config(config.replica.clone());
        let controller = crate::controller();
        let parent = replica.create_canister_with_settings(Some(controller), None);
        let mut extra = config.extra_controllers.clone();
        extra.push(controller);
        let arg = ParentArg {
            admins: Some(config.admins.clone()),
            concurrency: Some(config.concurrency),
            cycles_per_child: config.cycles_per_child.map(Nat::from),
            extra_controllers: Some(extra),
            keep_releases: None,
            snapshot_before_upgrade: None,
            gates: None,
            chunked_install_above: None,
            cycles: None,
        };
        let install = replica::ic00::CanisterInstallMode::Install;
        install_module(
            &replica,
            Some(controller),
            install,
            parent,
            &release.parent_wasm,
            Encode!(&Some(arg)).unwrap(),
        )
        .unwrap_or_else(|e| panic!("installing the parent from {}: {e}", release.path.display()));
        Self {
            replica,
            parent,
            controller,
            children: Vec::new(),
            checksums: BTreeMap::new(),
            installed: release.clone(),
        }
    }

    /// [`Fleet::new`], then `n` children with `members` members of `value_size` bytes each, checksums recorded.
    pub fn with_children(release: &Release, config: FleetConfig, n: u32, members: u32, value_size: u32) -> Self {
        let mut fleet = Self::new(release, config);
        fleet.create_children(n);
        fleet.fill_all(members, value_size);
        fleet.record_checksums();
        fleet
    }

    pub fn parent(&self) -> ParentApi<'_> {
        ParentApi::new(&self.replica, self.parent)
    }

    pub fn child(&self, id: Principal) -> ChildApi<'_> {
        ChildApi::new(&self.replica, id)
    }

    /// Creates `n` children through the parent's `create_children` (in batches of the parent's per-call cap), as the
    /// controller; tops the parent up with cycles first. Panics if any creation or install fails. Returns the new ids.
    pub fn create_children(&mut self, n: u32) -> Vec<Principal> {
        self.create_children_with(n, |_, _| {})
    }

    /// [`Fleet::create_children`], calling `progress(created, n)` after every `create_children` call.
    pub fn create_children_with(&mut self, n: u32, mut progress: impl FnMut(u64, u64)) -> Vec<Principal> {
        // Only this field: parents of every release answer it (older ones lack later settings).
        #[derive(candid::CandidType, serde::Deserialize)]
        struct CyclesPerChild {
            cycles_per_child: Nat,
        }
        let settings: CyclesPerChild = self.parent().query("settings", ());
        let per_child = u128::try_from(settings.cycles_per_child.0).expect("cycles fit u128");
        // The creation fee (ic-cdk attaches it) plus the child's cycles, with room to spare.
        self.replica
            .add_cycles(self.parent, u128::from(n) * (per_child + 2_000_000_000_000));
        let mut new = Vec::new();
        let mut left = n;
        while left > 0 {
            let batch = left.min(MAX_CREATE_PER_CALL);
            let result = self
                .parent()
                .create_children(self.controller, batch, None)
                .unwrap_or_else(|e| panic!("create_children({batch}): {e}"));
            assert!(result.error.is_none(), "create_children({batch}): {:?}", result.error);
            for c in &result.created {
                assert_eq!(
                    c.state,
                    ChildState::UpToDate,
                    "new child {} failed: {:?}",
                    c.canister_id,
                    c.last_error
                );
            }
            new.extend(result.created.iter().map(|c| c.canister_id));
            left -= batch;
            progress(new.len() as u64, u64::from(n));
        }
        self.children.extend(&new);
        new
    }

    /// Writes `members` members of `value_size` bytes to `child` with `admin_fill` (as the controller), in calls of
    /// at most `MAX_FILL_COUNT` members with prefixes `f0-`, `f1-`, ... Returns the child's member count afterwards.
    pub fn fill(&self, child: Principal, members: u32, value_size: u32) -> u64 {
        let mut left = members;
        let mut call = 0;
        let mut total = 0;
        while left > 0 {
            let count = left.min(MAX_FILL_COUNT);
            let arg = FillArg {
                count,
                value_size,
                prefix: format!("f{call}-"),
            };
            total = self
                .child(child)
                .admin_fill(self.controller, arg)
                .unwrap_or_else(|e| panic!("admin_fill on {child}: {e}"));
            left -= count;
            call += 1;
        }
        total
    }

    /// [`Fleet::fill`] on every child. Submits one call per child per batch and runs the rounds once, so filling
    /// N children costs as many rounds as filling one.
    pub fn fill_all(&mut self, members: u32, value_size: u32) {
        self.fill_all_with(members, value_size, |_, _| {})
    }

    /// [`Fleet::fill_all`], calling `progress(calls answered, calls)` as the answers come in.
    pub fn fill_all_with(&mut self, members: u32, value_size: u32, mut progress: impl FnMut(u64, u64)) {
        let calls = u64::from(members.div_ceil(MAX_FILL_COUNT)) * self.children.len() as u64;
        let mut answered = 0;
        let mut left = members;
        let mut call = 0;
        while left > 0 {
            let count = left.min(MAX_FILL_COUNT);
            let arg = FillArg {
                count,
                value_size,
                prefix: format!("f{call}-"),
            };
            let ids: Vec<_> = self
                .children
                .iter()
                .map(|c| {
                    let payload = Encode!(&arg).unwrap();
                    (
                        *c,
                        self.replica
                            .submit_call(*c, self.controller, "admin_fill", payload)
                            .expect("submit admin_fill"),
                    )
                })
                .collect();
            for (c, id) in ids {
                let bytes = self
                    .replica
                    .await_call(id)
                    .unwrap_or_else(|e| panic!("admin_fill on {c}: {e}"));
                // admin_fill answers the member count afterwards.
                let total = candid::decode_one::<Result<u64, shared::child::ChildError>>(&bytes)
                    .expect("decode admin_fill")
                    .unwrap_or_else(|e| panic!("admin_fill on {c}: {e}"));
                assert!(
                    total >= u64::from(count),
                    "admin_fill on {c}: {total} members after writing {count}"
                );
                answered += 1;
                if answered % 100 == 0 || answered == calls {
                    progress(answered, calls);
                }
            }
            left -= count;
            call += 1;
        }
    }

    /// Records every child's `data_checksum` (compared by [`Fleet::verify`]).
    pub fn record_checksums(&mut self) {
        self.record_checksums_with(|_, _| {})
    }

    /// [`Fleet::record_checksums`], calling `progress(recorded, children)` every 100 children.
    pub fn record_checksums_with(&mut self, mut progress: impl FnMut(u64, u64)) {
        let n = self.children.len() as u64;
        for (i, c) in self.children.clone().into_iter().enumerate() {
            let sum = self.child(c).data_checksum();
            self.checksums.insert(c, sum);
            if (i as u64 + 1).is_multiple_of(100) || i as u64 + 1 == n {
                progress(i as u64 + 1, n);
            }
        }
    }

    /// Upgrades the parent to `release` as `dfx canister install parent --mode upgrade --wasm <file>` does: an
    /// `install_code` in upgrade mode from the controller with no argument (`()`, i.e. `opt ParentArg` = null).
    pub fn upgrade_parent(&self, release: &Release, how: ParentUpgrade) -> Result<(), Reject> {
        self.upgrade_parent_with_arg(&release.parent_wasm, Encode!().unwrap(), how)
    }

    /// [`Fleet::upgrade_parent`] with any module and argument bytes. `StopFirst` stops the parent (running rounds
    /// until its open calls finish), upgrades, and starts it again (also when the upgrade fails).
    pub fn upgrade_parent_with_arg(&self, wasm: &[u8], arg: Vec<u8>, how: ParentUpgrade) -> Result<(), Reject> {
        use replica::ic00::{CanisterInstallMode, UpgradeFlags};
        let me = Some(self.controller);
        let upgrade = CanisterInstallMode::Upgrade(None);
        match how {
            ParentUpgrade::Direct => install_module(&self.replica, me, upgrade, self.parent, wasm, arg),
            ParentUpgrade::StopFirst => {
                self.replica.stop_canister(self.parent, me)?;
                let result = install_module(&self.replica, me, upgrade, self.parent, wasm, arg);
                self.replica.start_canister(self.parent, me)?;
                result
            }
            ParentUpgrade::SkippingPreUpgrade => {
                let flags = UpgradeFlags {
                    skip_pre_upgrade: Some(true),
                    wasm_memory_persistence: None,
                };
                install_module(
                    &self.replica,
                    me,
                    CanisterInstallMode::Upgrade(Some(flags)),
                    self.parent,
                    wasm,
                    arg,
                )
            }
        }
    }

    /// The rollout has ended: `finished_at` set and nothing planned, queued or in flight.
    pub fn is_finished(status: &RolloutStatus) -> bool {
        status.finished_at.is_some() && !status.planning && status.pending == 0 && status.in_flight == 0
    }

    /// The rollout halted itself and nothing is in flight: it waits for an admin (`resume_rollout`, a rollback).
    pub fn is_halted(status: &RolloutStatus) -> bool {
        status.halted.is_some() && status.in_flight == 0
    }

    /// Runs rounds until the rollout ends or halts with nothing in flight, at most `max_rounds`.
    pub fn run_rollout_to_end(&self, max_rounds: u64) -> RolloutRun {
        self.run_rollout_with(max_rounds, |_, _| {})
    }

    /// [`Fleet::run_rollout_to_end`], calling `observe(rounds_run, &status)` before every round and at the end.
    pub fn run_rollout_with(&self, max_rounds: u64, mut observe: impl FnMut(u64, &RolloutStatus)) -> RolloutRun {
        let first_round = self.replica.round();
        let start_time_ns = self.replica.time_nanos();
        let mut rounds = 0;
        loop {
            let status = self.parent().rollout_status();
            observe(rounds, &status);
            let finished = Self::is_finished(&status);
            if finished || Self::is_halted(&status) || rounds >= max_rounds {
                return RolloutRun {
                    rounds,
                    finished,
                    status,
                    first_round,
                    last_round: self.replica.round(),
                    start_time_ns,
                    end_time_ns: self.replica.time_nanos(),
                };
            }
            self.replica.tick();
            rounds += 1;
        }
    }

    /// Facts about every child of [`Fleet::children`].
    pub fn verify(&self) -> Vec<ChildFacts> {
        let registry: BTreeMap<Principal, ChildInfo> = self
            .parent()
            .list_all_children()
            .into_iter()
            .map(|c| (c.canister_id, c))
            .collect();
        self.children
            .iter()
            .map(|&id| {
                let child = self.child(id);
                ChildFacts {
                    id,
                    status: self.replica.status(id),
                    module_hash: self.replica.module_hash(id),
                    version: child.try_query(Principal::anonymous(), "version", ()).ok(),
                    checksum: child.try_query(Principal::anonymous(), "data_checksum", ()).ok(),
                    expected_checksum: self.checksums.get(&id).cloned(),
                    registry: registry.get(&id).cloned(),
                }
            })
            .collect()
    }

    /// Sum of the cycle balances of the parent and all children.
    pub fn total_cycles(&self) -> u128 {
        self.replica.cycle_balance(self.parent)
            + self
                .children
                .iter()
                .map(|c| self.replica.cycle_balance(*c))
                .sum::<u128>()
    }
}

/// Largest module `install_code` takes in one ingress message (the IC's ingress limit, with room for the rest of the
/// message); bigger modules go through the chunk store, as dfx and icp-cli do.
pub const MAX_INLINE_MODULE: usize = 2 * 1024 * 1024 - 64 * 1024;
/// The IC's chunk size (`upload_chunk`).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// `install_code` as a client installs a module: inline up to `MAX_INLINE_MODULE`, else `upload_chunk` into the
/// target's own chunk store and `install_chunked_code` (clearing the store before and after).
pub fn install_module(
    replica: &Replica,
    sender: Option<Principal>,
    mode: replica::ic00::CanisterInstallMode,
    canister_id: Principal,
    wasm: &[u8],
    arg: Vec<u8>,
) -> Result<(), Reject> {
    use replica::ic00;
    if wasm.len() <= MAX_INLINE_MODULE {
        return replica.install_code(sender, mode, canister_id, wasm.to_vec(), arg);
    }
    let sender_or_anonymous = sender.unwrap_or_else(Principal::anonymous);
    let mgmt = Principal::management_canister();
    let clear = ic00::ClearChunkStoreArgs { canister_id };
    replica.update::<_, ()>(mgmt, sender_or_anonymous, "clear_chunk_store", &clear)?;
    let mut hashes = Vec::new();
    for chunk in wasm.chunks(CHUNK_BYTES) {
        let upload = ic00::UploadChunkArgs {
            canister_id,
            chunk: chunk.to_vec(),
        };
        let hash: ic00::ChunkHash = replica.update(mgmt, sender_or_anonymous, "upload_chunk", &upload)?;
        hashes.push(hash);
    }
    let install = ic00::InstallChunkedCodeArgs {
        mode,
        target_canister: canister_id,
        store_canister: None,
        chunk_hashes_list: hashes,
        wasm_module_hash: crate::wasms::sha256(wasm).to_vec(),
        arg,
        sender_canister_version: None,
    };
    let installed = replica.update::<_, ()>(mgmt, sender_or_anonymous, "install_chunked_code", &install);
    replica.update::<_, ()>(mgmt, sender_or_anonymous, "clear_chunk_store", &clear)?;
    installed
}
