//! Native test support: `FakeIc` simulates the management canister and the children, records every call, and can
//! inject faults. Its futures complete at once, so `block_on` drives them without an executor.

use crate::ic::{Ic, InstallMode};
use crate::outcome::{CallError, ChildStatus, Funds, RunStatus, SYS_UNKNOWN};
use candid::Principal;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Polls a future that completes without waiting (everything `FakeIc` returns is ready at once).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("future did not complete (FakeIc futures never wait)");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Create,
    Stop,
    Install,
    InstallNew,
    Start,
    Status,
    TakeSnapshot,
    LoadSnapshot,
    Health,
    UploadChunk,
    ClearChunkStore,
    Deposit,
}

/// An injected fault for the next matching call.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Rejected with this code and message; nothing happens.
    Reject(u32, &'static str),
    /// Times out (SYS_UNKNOWN) without having taken effect.
    Unknown,
    /// Times out (SYS_UNKNOWN) after having taken effect.
    UnknownApplied,
    /// Replies success but does nothing (a lying or racing environment).
    Noop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimCanister {
    pub status: RunStatus,
    pub module_hash: Option<Vec<u8>>,
    pub controllers: Vec<Principal>,
    /// The module's `pre_upgrade` traps: every upgrade that runs it fails (and changes nothing).
    pub pre_upgrade_traps: bool,
    /// Snapshots (id, module hash they hold), at most `MAX_SNAPSHOTS` as on the IC.
    pub snapshots: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Its health method replies `Err`.
    pub unhealthy: bool,
    /// Its balance, and the balance below which it is frozen. An install needs `gates::INSTALL_RESERVE` above it.
    pub cycles: u128,
    pub freezing_limit: u128,
}

/// A simulated child's balance unless a test sets it: plenty for its installs.
pub const CHILD_CYCLES: u128 = 3_000_000_000_000;
/// The parent's balance unless a test sets it.
pub const PARENT_CYCLES: u128 = 100_000_000_000_000;

impl SimCanister {
    fn new(status: RunStatus, module_hash: Option<Vec<u8>>, controllers: Vec<Principal>) -> Self {
        Self {
            status,
            module_hash,
            controllers,
            pre_upgrade_traps: false,
            snapshots: Vec::new(),
            unhealthy: false,
            cycles: CHILD_CYCLES,
            freezing_limit: 0,
        }
    }
}

/// Snapshots per canister on the IC.
pub const MAX_SNAPSHOTS: usize = 10;

pub struct Sim {
    pub now: u64,
    pub self_id: Principal,
    pub running: bool,
    pub canisters: BTreeMap<Principal, SimCanister>,
    pub faults: Vec<(Method, Principal, Fault)>,
    pub calls: Vec<(Method, Principal)>,
    /// The mode of every `install_code` call that went out, in order.
    pub installs: Vec<(Principal, InstallMode)>,
    pub ticks: Vec<Duration>,
    pub next_id: u64,
    /// The most children ever locked (IN_FLIGHT) when a call went out.
    pub max_in_flight: u64,
    /// The most locks in slot-taking steps (all but the read-only confirm) when a call went out.
    pub max_slots: u64,
    /// Tasks handed to `spawn`, run by `run_spawned`.
    pub spawned: Vec<std::pin::Pin<Box<dyn Future<Output = ()>>>>,
    /// The parent's own chunk store (hash -> chunk), and how many installs came from it.
    pub store: BTreeMap<Vec<u8>, Vec<u8>>,
    pub chunked_installs: u64,
    /// The parent's own balance (deposits come out of it).
    pub parent_cycles: u128,
}

fn funds_of(can: &SimCanister, parent_balance: u128) -> Funds {
    Funds {
        balance: can.cycles,
        freezing_limit: can.freezing_limit,
        memory_size: 1 << 20,
        snapshots_size: 0,
        parent_balance,
    }
}

fn canister_id(n: u64) -> Principal {
    let mut bytes = n.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0xC0, 1, 1]);
    Principal::from_slice(&bytes)
}

#[derive(Clone)]
pub struct FakeIc(pub Rc<RefCell<Sim>>);

impl FakeIc {
    pub fn new() -> Self {
        Self(Rc::new(RefCell::new(Sim {
            now: 1_000,
            self_id: Principal::from_slice(&[0xEE; 10]),
            running: true,
            canisters: BTreeMap::new(),
            faults: Vec::new(),
            calls: Vec::new(),
            installs: Vec::new(),
            ticks: Vec::new(),
            next_id: 0,
            max_in_flight: 0,
            max_slots: 0,
            spawned: Vec::new(),
            store: BTreeMap::new(),
            chunked_installs: 0,
            parent_cycles: PARENT_CYCLES,
        })))
    }

    /// A child the parent controls, in `status`, running `hash`.
    pub fn add_child(&self, id: Principal, status: RunStatus, hash: Option<&[u8]>) {
        let mut sim = self.0.borrow_mut();
        let controllers = vec![sim.self_id];
        sim.canisters
            .insert(id, SimCanister::new(status, hash.map(|h| h.to_vec()), controllers));
    }

    /// Runs the spawned tasks (and those they spawn) to completion. Returns how many ran.
    pub fn run_spawned(&self) -> usize {
        let mut n = 0;
        loop {
            let tasks = std::mem::take(&mut self.0.borrow_mut().spawned);
            if tasks.is_empty() {
                return n;
            }
            for t in tasks {
                block_on(t);
                n += 1;
            }
        }
    }

    /// The principal the next `create` will return.
    pub fn peek_next_canister(&self) -> Principal {
        canister_id(self.0.borrow().next_id + 1)
    }

    pub fn fault(&self, method: Method, child: Principal, fault: Fault) {
        self.0.borrow_mut().faults.push((method, child, fault));
    }

    pub fn calls(&self) -> Vec<(Method, Principal)> {
        self.0.borrow().calls.clone()
    }

    pub fn methods_for(&self, child: Principal) -> Vec<Method> {
        self.0
            .borrow()
            .calls
            .iter()
            .filter(|(_, c)| *c == child)
            .map(|(m, _)| *m)
            .collect()
    }

    pub fn canister(&self, id: Principal) -> SimCanister {
        self.0.borrow().canisters[&id].clone()
    }

    /// A call on the parent's own chunk store: records it, and answers an injected rejection.
    fn store_fault(&self, method: Method, name: &str) -> Result<(), CallError> {
        match self.enter(method, self.self_id()) {
            None => Ok(()),
            Some(Fault::Reject(code, msg)) => Err(CallError::new(name, code, msg)),
            Some(other) => unimplemented!("{other:?} on {name}"),
        }
    }

    /// Records the call and takes the first fault injected for it, if any.
    fn enter(&self, method: Method, child: Principal) -> Option<Fault> {
        let (in_flight, slots) = crate::state::read_state(|s| (s.in_flight().len(), s.slot_count()));
        let mut sim = self.0.borrow_mut();
        sim.max_in_flight = sim.max_in_flight.max(in_flight);
        sim.max_slots = sim.max_slots.max(slots);
        sim.calls.push((method, child));
        let i = sim.faults.iter().position(|(m, c, _)| *m == method && *c == child)?;
        Some(sim.faults.remove(i).2)
    }

    /// Runs `effect` on the simulated canister as the IC would, with `fault` applied.
    fn exec<T>(
        &self,
        method: Method,
        name: &str,
        child: Principal,
        effect: impl FnOnce(&mut Sim, Principal) -> Result<T, CallError>,
        noop: impl FnOnce() -> T,
    ) -> Result<T, CallError> {
        let fault = self.enter(method, child);
        let mut sim = self.0.borrow_mut();
        let self_id = sim.self_id;
        let check = |sim: &Sim| match sim.canisters.get(&child) {
            None => Err(CallError::new(name, 3, format!("Canister {child} not found"))),
            Some(c) if !c.controllers.contains(&self_id) => Err(CallError::new(
                name,
                5,
                format!("Only controllers of canister {child} can call ic00 method {name}"),
            )),
            Some(_) => Ok(()),
        };
        match fault {
            Some(Fault::Reject(code, msg)) => Err(CallError::new(name, code, msg)),
            Some(Fault::Unknown) => Err(CallError::new(name, SYS_UNKNOWN, "deadline expired")),
            Some(Fault::UnknownApplied) => {
                check(&sim)?;
                effect(&mut sim, child)?;
                Err(CallError::new(name, SYS_UNKNOWN, "deadline expired"))
            }
            Some(Fault::Noop) => Ok(noop()),
            None => {
                check(&sim)?;
                effect(&mut sim, child)
            }
        }
    }
}

impl Ic for FakeIc {
    fn now(&self) -> u64 {
        self.0.borrow().now
    }

    fn self_id(&self) -> Principal {
        self.0.borrow().self_id
    }

    fn self_running(&self) -> bool {
        self.0.borrow().running
    }

    fn schedule_tick(&self, delay: Duration) {
        self.0.borrow_mut().ticks.push(delay);
    }

    fn retire_watchdog(&self) {}

    /// Queued, not run: the caller goes on first, as on the IC.
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.0.borrow_mut().spawned.push(Box::pin(task));
    }

    async fn create(&self, controllers: Vec<Principal>, _cycles: u128) -> Result<Principal, CallError> {
        let fault = self.enter(Method::Create, Principal::management_canister());
        if let Some(Fault::Reject(code, msg)) = fault {
            return Err(CallError::new("create_canister", code, msg));
        }
        let mut sim = self.0.borrow_mut();
        sim.next_id += 1;
        let id = canister_id(sim.next_id);
        sim.canisters
            .insert(id, SimCanister::new(RunStatus::Running, None, controllers));
        Ok(id)
    }

    async fn stop(&self, child: Principal) -> Result<(), CallError> {
        self.exec(
            Method::Stop,
            "stop_canister",
            child,
            |sim, c| {
                sim.canisters.get_mut(&c).unwrap().status = RunStatus::Stopped;
                Ok(())
            },
            || (),
        )
    }

    async fn install(
        &self,
        child: Principal,
        mode: InstallMode,
        wasm: Cow<'static, [u8]>,
        _arg: Vec<u8>,
    ) -> Result<(), CallError> {
        // As on the IC, the module hash is the SHA-256 of the bytes as sent.
        let hash: [u8; 32] = Sha256::digest(&wasm).into();
        let method = match mode {
            InstallMode::Install => Method::InstallNew,
            InstallMode::Upgrade { .. } => Method::Install,
        };
        self.0.borrow_mut().installs.push((child, mode));
        self.exec(
            method,
            "install_code",
            child,
            |sim, c| {
                let release = hash.to_vec();
                let can = sim.canisters.get_mut(&c).unwrap();
                // As on the IC: the install's execution is reserved up front, above the freezing limit.
                if can.cycles < can.freezing_limit + crate::gates::INSTALL_RESERVE {
                    return Err(CallError::new(
                        "install_code",
                        5,
                        format!("Canister {c} is out of cycles"),
                    ));
                }
                match (mode, &can.module_hash) {
                    (InstallMode::Upgrade { .. }, None) => {
                        return Err(CallError::new("install_code", 5, "canister is empty; cannot upgrade"))
                    }
                    (InstallMode::Install, Some(_)) => {
                        return Err(CallError::new(
                            "install_code",
                            5,
                            "canister is not empty; cannot install",
                        ))
                    }
                    (
                        InstallMode::Upgrade {
                            skip_pre_upgrade: false,
                        },
                        _,
                    ) if can.pre_upgrade_traps => {
                        return Err(CallError::new(
                            "install_code",
                            5,
                            "Canister called `ic0.trap` with message: 'pre_upgrade trapped'",
                        ))
                    }
                    _ => {}
                }
                // The new module has a working `pre_upgrade` (or none).
                can.pre_upgrade_traps = false;
                can.module_hash = Some(release);
                Ok(())
            },
            || (),
        )
    }

    async fn start(&self, child: Principal) -> Result<(), CallError> {
        self.exec(
            Method::Start,
            "start_canister",
            child,
            |sim, c| {
                sim.canisters.get_mut(&c).unwrap().status = RunStatus::Running;
                Ok(())
            },
            || (),
        )
    }

    async fn take_snapshot(&self, child: Principal, replace: Option<Vec<u8>>) -> Result<Vec<u8>, CallError> {
        const NAME: &str = "take_canister_snapshot";
        self.exec(
            Method::TakeSnapshot,
            NAME,
            child,
            |sim, c| {
                sim.next_id += 1;
                let id = sim.next_id.to_be_bytes().to_vec();
                let can = sim.canisters.get_mut(&c).unwrap();
                if let Some(old) = &replace {
                    let i = can.snapshots.iter().position(|(s, _)| s == old);
                    let i = i.ok_or_else(|| CallError::new(NAME, 5, "could not find the snapshot to replace"))?;
                    can.snapshots.remove(i);
                }
                if can.snapshots.len() >= MAX_SNAPSHOTS {
                    return Err(CallError::new(
                        NAME,
                        5,
                        "reached the maximum number of snapshots allowed: 10",
                    ));
                }
                can.snapshots.push((id.clone(), can.module_hash.clone()));
                Ok(id)
            },
            Vec::new,
        )
    }

    async fn load_snapshot(&self, child: Principal, id: Vec<u8>) -> Result<(), CallError> {
        const NAME: &str = "load_canister_snapshot";
        self.exec(
            Method::LoadSnapshot,
            NAME,
            child,
            |sim, c| {
                let can = sim.canisters.get_mut(&c).unwrap();
                let (_, module) = can
                    .snapshots
                    .iter()
                    .find(|(s, _)| *s == id)
                    .cloned()
                    .ok_or_else(|| CallError::new(NAME, 5, "could not find the snapshot"))?;
                can.module_hash = module;
                Ok(())
            },
            || (),
        )
    }

    async fn upload_chunk(&self, chunk: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.store_fault(Method::UploadChunk, "upload_chunk")?;
        let hash: Vec<u8> = Sha256::digest(&chunk).to_vec();
        self.0.borrow_mut().store.insert(hash.clone(), chunk);
        Ok(hash)
    }

    async fn clear_chunk_store(&self) -> Result<(), CallError> {
        self.store_fault(Method::ClearChunkStore, "clear_chunk_store")?;
        self.0.borrow_mut().store.clear();
        Ok(())
    }

    async fn install_chunked(
        &self,
        child: Principal,
        mode: InstallMode,
        chunks: Vec<Vec<u8>>,
        module_hash: Vec<u8>,
        arg: Vec<u8>,
    ) -> Result<(), CallError> {
        let module: Option<Vec<u8>> = {
            let sim = self.0.borrow();
            chunks
                .iter()
                .map(|h| sim.store.get(h).cloned())
                .collect::<Option<Vec<_>>>()
                .map(|c| c.concat())
        };
        let module = module.ok_or_else(|| CallError::new("install_chunked_code", 5, "a chunk is not in the store"))?;
        if Sha256::digest(&module).to_vec() != module_hash {
            return Err(CallError::new("install_chunked_code", 5, "wasm module hash mismatch"));
        }
        self.0.borrow_mut().chunked_installs += 1;
        self.install(child, mode, Cow::Owned(module), arg).await
    }

    async fn deposit(&self, child: Principal, cycles: u128) -> Result<(), CallError> {
        self.exec(
            Method::Deposit,
            "deposit_cycles",
            child,
            |sim, c| {
                if sim.parent_cycles < cycles {
                    return Err(CallError::new("deposit_cycles", 5, "the parent is out of cycles"));
                }
                sim.parent_cycles -= cycles;
                sim.canisters.get_mut(&c).unwrap().cycles += cycles;
                Ok(())
            },
            || (),
        )
    }

    async fn health(&self, child: Principal, method: String) -> Result<(), CallError> {
        self.exec(
            Method::Health,
            &method.clone(),
            child,
            |sim, c| match sim.canisters[&c].unhealthy {
                true => Err(CallError::new(&method, 0, "the child replied Err")),
                false => Ok(()),
            },
            || (),
        )
    }

    async fn status(&self, child: Principal) -> Result<ChildStatus, CallError> {
        let snapshot = |sim: &Sim, c: Principal| {
            let can = &sim.canisters[&c];
            ChildStatus {
                status: can.status,
                module_hash: can.module_hash.clone(),
                controllers: Some(can.controllers.clone()),
                funds: Some(funds_of(can, sim.parent_cycles)),
            }
        };
        let parent_cycles = self.0.borrow().parent_cycles;
        let sim_for_noop = self.0.borrow().canisters.get(&child).cloned();
        self.exec(
            Method::Status,
            "canister_status",
            child,
            |sim, c| Ok(snapshot(sim, c)),
            move || {
                let c = sim_for_noop.expect("Noop status needs a simulated canister");
                ChildStatus {
                    status: c.status,
                    funds: Some(funds_of(&c, parent_cycles)),
                    module_hash: c.module_hash,
                    controllers: Some(c.controllers),
                }
            },
        )
    }
}
