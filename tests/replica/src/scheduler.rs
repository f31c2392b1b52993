//! The replica's state and its rounds, as the IC's scheduler runs them (dfinity/ic
//! `rs/execution_environment/src/scheduler.rs`): expired deadlines, then the management canister's messages, then
//! iterations that execute every canister's input and induct what canisters sent each other, until nothing is
//! left or the round's instruction budget is spent.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use candid::Principal;

use crate::canister::{CallContext, Callback, Canister, CanisterStatus, Origin};
use crate::cycles;
use crate::error::{ErrorCode, Reject, RejectCode, Trap};
use crate::execution::{self, Entry, RunResult, Runtime, Snapshot};
use crate::faults::Faults;
use crate::system_api::{self, EntryKind, MsgCtx, Response};
use crate::wasm_module::ModuleCache;
use crate::{ExecutionRecord, ManagementCall, ReplicaConfig};

/// Instruction limit of `canister_inspect_message` (facts §4).
const INSPECT_INSTRUCTION_LIMIT: u64 = 200_000_000;
/// The largest ingress message of an application subnet (`MAX_INGRESS_BYTES_PER_MESSAGE_APP_SUBNET`).
pub const MAX_INGRESS_BYTES: usize = 2 * 1024 * 1024;

/// The scheduler's limits (dfinity/ic `rs/config/src/subnet_config.rs`, `SchedulerConfig::application_subnet`).
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Execution threads; canisters are spread over them, each with the round's instruction budget.
    pub scheduler_cores: usize,
    pub max_instructions_per_round: u64,
    /// A longer execution is paused and resumed in the next round (DTS).
    pub max_instructions_per_slice: u64,
    pub max_instructions_per_message_without_dts: u64,
    pub max_instructions_per_install_code_slice: u64,
    /// Counted against the round budget per execution, per canister executed in an iteration, and per canister on
    /// the subnet at the end of each iteration.
    pub instruction_overhead_per_execution: u64,
    pub instruction_overhead_per_canister: u64,
    pub instruction_overhead_per_canister_for_finalization: u64,
    /// install_code instructions a canister may use per round on average before its next install is refused.
    pub install_code_rate_limit: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            scheduler_cores: 4,
            max_instructions_per_round: 7_000_000_000,
            max_instructions_per_slice: 2_000_000_000,
            max_instructions_per_message_without_dts: 5_000_000_000,
            max_instructions_per_install_code_slice: 2_000_000_000,
            instruction_overhead_per_execution: 2_000_000,
            instruction_overhead_per_canister: 8_000_000,
            instruction_overhead_per_canister_for_finalization: 12_000,
            install_code_rate_limit: 2_000_000_000,
        }
    }
}

impl SchedulerConfig {
    /// The canister budget a round starts with: `R - S + 1` (scheduler.rs `execute_round`), so that an execution
    /// started with 1 instruction left cannot take the round past R.
    fn round_budget(&self) -> i64 {
        let s = self
            .max_instructions_per_slice
            .max(self.max_instructions_per_message_without_dts);
        self.max_instructions_per_round as i64 - s as i64 + 1
    }

    /// Management canister messages get a sixteenth of the round (`SUBNET_MESSAGES_LIMIT_FRACTION`).
    fn subnet_budget(&self) -> i64 {
        (self.max_instructions_per_round / 16) as i64
    }
}

/// A message waiting in a queue until round `due`.
struct Queued<T> {
    due: u64,
    msg: T,
}

/// An install_code still running (deterministic time slicing): its effects are applied, its response waits.
struct LongInstall {
    remaining: u64,
    instructions: u64,
    origin: Origin,
    result: Result<Vec<u8>, Reject>,
    refund: u128,
    record: usize,
}

/// An install_code that needs more than one slice, as the management canister hands it over.
pub struct LongInstallStart {
    pub instructions: u64,
    pub origin: Origin,
    pub result: Result<Vec<u8>, Reject>,
    pub refund: u128,
    pub record: usize,
}

/// What one canister runs in one iteration: system tasks (first iteration only), then its input messages.
#[derive(Default)]
struct Work {
    tasks: Vec<&'static str>,
    messages: Vec<Message>,
}

pub struct Request {
    pub sender: Principal,
    pub receiver: Principal,
    pub method: String,
    pub payload: Vec<u8>,
    pub cycles: u128,
    pub origin: Origin,
}

pub struct ResponseMsg {
    pub to: Principal,
    pub callback: u64,
    pub result: Result<Vec<u8>, Reject>,
    pub refund: u128,
}

pub enum Message {
    Request(Request),
    Response(ResponseMsg),
}

/// How an execution's effects are kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// Commit unless the execution traps (updates, callbacks, timers).
    OnTrap,
    /// Never commit (queries, inspect_message).
    Always,
    /// The caller takes care of it (install_code's phases).
    Caller,
}

pub struct Exec {
    pub kind: EntryKind,
    pub entry: Entry,
    pub caller: Option<Principal>,
    pub arg: Vec<u8>,
    pub reject: (u32, String),
    pub context: Option<u64>,
    pub fuel: u64,
    pub rollback: Rollback,
    pub method_name: String,
    /// The limit named in the "exceeded the limit" trap (install_code's phases share one budget).
    pub limit: u64,
    /// Cycles refunded with the response a callback processes.
    pub refunded: u128,
}

impl Exec {
    pub fn new(kind: EntryKind, entry: Entry, fuel: u64, rollback: Rollback) -> Self {
        Self {
            kind,
            entry,
            caller: None,
            arg: Vec::new(),
            reject: (0, String::new()),
            context: None,
            fuel,
            rollback,
            method_name: String::new(),
            limit: fuel,
            refunded: 0,
        }
    }
}

/// execution_environment.rs: a composite query called as an update, by ingress or by a canister.
fn composite_query_in_replicated_mode() -> Reject {
    Reject::of(
        ErrorCode::CompositeQueryCalledInReplicatedMode,
        "Composite query cannot be called in replicated mode",
    )
}

pub fn error_from(canister: Principal, trap: &Trap) -> Reject {
    trap.reject(canister)
}

/// Executions after which the canister's version goes up if they do not trap (dfinity/ic
/// `rs/embedders/src/wasmtime_embedder/system_api.rs`, `take_system_state_modifications`); install_code bumps it
/// once for all its phases.
fn bumps_version(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::Update
            | EntryKind::ReplicatedQuery
            | EntryKind::SystemTask
            | EntryKind::ReplyCallback
            | EntryKind::RejectCallback
            | EntryKind::Cleanup
    )
}

pub struct State {
    pub config: ReplicaConfig,
    pub runtime: Runtime,
    pub modules: ModuleCache,
    pub canisters: BTreeMap<Principal, Canister>,
    pub next_canister_index: u64,
    /// Completed rounds.
    pub round: u64,
    pub time: u64,
    pub subnet_id: Principal,
    pub root_key: std::sync::Arc<[u8]>,
    /// Messages to canisters, in arrival order.
    inbox: VecDeque<Queued<Message>>,
    /// Requests to the management canister, in arrival order.
    subnet_queue: VecDeque<Queued<Request>>,
    long_installs: BTreeMap<Principal, LongInstall>,
    next_id: u64,
    pub ingress: BTreeMap<u64, Option<Result<Vec<u8>, Reject>>>,
    /// (global timer, canister) for every canister with an active timer.
    timers: BTreeSet<(u64, Principal)>,
    /// (deadline, canister, callback) for bounded-wait calls.
    deadlines: BTreeSet<(u64, Principal, u64)>,
    /// (deadline, canister) of pending stop_canister calls.
    stop_deadlines: BTreeSet<(u64, Principal)>,
    pub heartbeats: BTreeSet<Principal>,
    pub faults: Faults,
    pub executions: Vec<ExecutionRecord>,
    pub management_calls: Vec<ManagementCall>,
}

impl State {
    pub fn new(config: ReplicaConfig) -> Self {
        // Without a delegation, clients take the subnet id to be the self-authenticating id of the root key.
        let subnet_id = config
            .root_key
            .as_deref()
            .map_or(Principal::from_slice(&[0x2a; 29]), Principal::self_authenticating);
        let root_key = config
            .root_key
            .clone()
            .unwrap_or_else(system_api::placeholder_root_key)
            .into();
        Self {
            time: config.start_time_nanos,
            next_canister_index: config.first_canister_index,
            config,
            runtime: Runtime::new(),
            modules: ModuleCache::default(),
            canisters: BTreeMap::new(),
            round: 0,
            subnet_id,
            root_key,
            inbox: VecDeque::new(),
            subnet_queue: VecDeque::new(),
            long_installs: BTreeMap::new(),
            next_id: 1,
            ingress: BTreeMap::new(),
            timers: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            stop_deadlines: BTreeSet::new(),
            heartbeats: BTreeSet::new(),
            faults: Faults::default(),
            executions: Vec::new(),
            management_calls: Vec::new(),
        }
    }

    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// IC canister ids: an 8-byte big-endian index followed by `0x01 0x01`.
    pub fn new_canister_id(&mut self) -> Principal {
        let mut bytes = self.next_canister_index.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 1]);
        self.next_canister_index += 1;
        Principal::from_slice(&bytes)
    }

    /// The round being executed (during a tick), or the next one (between ticks).
    fn current_round(&self) -> u64 {
        self.round + 1
    }

    /// Queues a message for a canister `rounds` rounds from now: 0 = later in this round (induction after the
    /// iteration, or the next tick when sent between ticks), 1 = the next round (through message routing).
    pub fn enqueue(&mut self, msg: Message, rounds: u64) {
        if let Message::Request(req) = msg {
            if req.receiver == Principal::management_canister() {
                // Ingress is inducted at the start of the next round; canister calls go through message routing.
                let routed = if matches!(req.origin, Origin::Ingress(_)) { 0 } else { 1 };
                let due = self.current_round() + rounds.max(routed);
                return self.subnet_queue.push_back(Queued { due, msg: req });
            }
            return self.inbox.push_back(Queued {
                due: self.current_round() + rounds,
                msg: Message::Request(req),
            });
        }
        let due = self.current_round() + rounds;
        self.inbox.push_back(Queued { due, msg });
    }

    pub fn has_pending_messages(&self) -> bool {
        !self.inbox.is_empty() || !self.subnet_queue.is_empty() || !self.long_installs.is_empty()
    }

    /// Sends the response of a call context executed by a canister: it reaches a canister caller later in this
    /// round (same-subnet induction).
    pub fn respond(&mut self, origin: &Origin, result: Result<Vec<u8>, Reject>, refund: u128) {
        self.respond_in(origin, result, refund, 0);
    }

    /// Sends a response of the management canister or of the system: it reaches a canister caller in the next
    /// round (message routing's loopback stream).
    pub fn respond_routed(&mut self, origin: &Origin, result: Result<Vec<u8>, Reject>, refund: u128) {
        self.respond_in(origin, result, refund, 1);
    }

    fn respond_in(&mut self, origin: &Origin, result: Result<Vec<u8>, Reject>, refund: u128, rounds: u64) {
        match origin {
            Origin::Ingress(id) => {
                self.ingress.insert(*id, Some(result));
            }
            Origin::Canister { caller, callback, .. } => {
                let delay = self.faults.response_delay(caller);
                let msg = ResponseMsg {
                    to: *caller,
                    callback: *callback,
                    result,
                    refund,
                };
                self.enqueue(Message::Response(msg), rounds + delay);
            }
            Origin::System => {}
        }
    }

    /// Keeps the timer index in step with the canister's global timer.
    pub fn sync_timer(&mut self, c: &mut Canister) {
        if c.indexed_timer != c.sys.global_timer {
            if c.indexed_timer != 0 {
                self.timers.remove(&(c.indexed_timer, c.id));
            }
            if c.sys.global_timer != 0 {
                self.timers.insert((c.sys.global_timer, c.id));
            }
            c.indexed_timer = c.sys.global_timer;
        }
    }

    pub fn forget_canister_indexes(&mut self, c: &Canister) {
        self.timers.remove(&(c.indexed_timer, c.id));
        self.heartbeats.remove(&c.id);
        for (id, cb) in &c.callbacks {
            if let Some(d) = cb.deadline {
                self.deadlines.remove(&(d, c.id, *id));
            }
        }
    }

    pub fn add_stop_deadline(&mut self, deadline: u64, canister: Principal) {
        self.stop_deadlines.insert((deadline, canister));
    }

    /// Takes a canister out of the map for the duration of `f`, so that `f` can use the rest of the state.
    pub fn with_canister<R>(&mut self, id: Principal, f: impl FnOnce(&mut Self, &mut Canister) -> R) -> Option<R> {
        let mut c = self.canisters.remove(&id)?;
        let r = f(self, &mut c);
        self.canisters.insert(id, c);
        Some(r)
    }

    pub fn base_msg(&self, c: &Canister, kind: EntryKind) -> MsgCtx {
        MsgCtx {
            kind,
            canister_id: c.id,
            subnet_id: self.subnet_id,
            root_key: self.root_key.clone(),
            time: self.time,
            status: c.status.code(),
            version: c.version,
            controllers: c.controllers.clone(),
            env_vars: c.env_vars.clone(),
            waiting_calls: c.callbacks.values().fold(BTreeMap::new(), |mut m, cb| {
                *m.entry(cb.callee).or_default() += 1;
                m
            }),
            freezing_threshold: c.freezing_threshold_cycles(),
            callback_instruction_limit: self.config.update_instruction_limit,
            ..Default::default()
        }
    }

    /// Runs one entry point of `c`: applies injected faults, the rollback policy, and records the execution.
    pub fn execute(&mut self, c: &mut Canister, e: Exec) -> RunResult {
        let mut msg = self.base_msg(c, e.kind);
        msg.caller = e.caller;
        msg.arg = e.arg;
        msg.reject = e.reject;
        msg.method_name = e.method_name;
        msg.cycles_refunded = e.refunded;
        let can_respond_here = matches!(
            e.kind,
            EntryKind::Update
                | EntryKind::ReplicatedQuery
                | EntryKind::Query
                | EntryKind::CompositeQuery
                | EntryKind::ReplyCallback
                | EntryKind::RejectCallback
        );
        msg.can_respond = can_respond_here;
        if let Some(cc) = e.context.and_then(|id| c.call_contexts.get(&id)) {
            msg.can_respond = can_respond_here && !cc.responded;
            msg.cycles_available = if cc.responded {
                0
            } else {
                cc.cycles_available - cc.cycles_accepted
            };
            msg.context_instructions = cc.instructions;
            if let Origin::Canister { deadline, .. } = cc.origin {
                msg.deadline = deadline;
            }
        }
        let name = match &e.entry {
            Entry::Callback { .. } if e.kind == EntryKind::Cleanup => "cleanup callback".to_string(),
            Entry::Callback { .. } if e.kind == EntryKind::RejectCallback => "reject callback".to_string(),
            Entry::Callback { .. } => "reply callback".to_string(),
            other => other.name(),
        };
        let Some(live) = c.live.as_mut() else {
            return RunResult {
                result: Err(Trap::new(
                    ErrorCode::CanisterWasmModuleNotFound,
                    "Attempted to execute a message, but the canister contains no Wasm module.",
                )),
                instructions: 0,
                msg,
            };
        };
        let snapshot = (e.rollback != Rollback::Caller).then(|| Snapshot::take(&self.runtime, live, &mut c.sys));
        let mut run = if self.faults.take_trap(c.id, &name) {
            RunResult {
                result: Err(Trap::new(
                    ErrorCode::CanisterCalledTrap,
                    format!("Canister called `ic0.trap` with message: 'injected fault in {name}'"),
                )),
                instructions: 0,
                msg,
            }
        } else {
            execution::run(&self.runtime, live, &mut c.sys, msg, &e.entry, e.fuel, e.limit)
        };
        if let Some(snapshot) = snapshot {
            if run.result.is_err() || e.rollback == Rollback::Always {
                snapshot.restore(live, &mut c.sys);
            } else {
                snapshot.commit(live, &mut c.sys);
            }
        }
        c.logs.append(&mut run.msg.logs);
        let outcome = run.result.clone().map_err(|t| t.text);
        self.record(c.id, &name, run.instructions, outcome);
        if bumps_version(e.kind) && run.result.is_ok() {
            c.version += 1;
        }
        if e.rollback != Rollback::Caller {
            self.sync_timer(c);
        }
        run
    }

    /// Records an execution (or install_code's compilation) in the current round.
    pub fn record(&mut self, canister: Principal, entry: &str, instructions: u64, outcome: Result<(), String>) {
        self.executions.push(ExecutionRecord {
            round: self.current_round(),
            canister,
            entry: entry.to_string(),
            instructions,
            outcome,
        });
    }

    /// After an execution in call context `ctx_id`: sends its calls and response, and closes the context when it
    /// has no outstanding calls (spec "Call contexts"; a context closed without a response is rejected).
    pub fn finish(&mut self, c: &mut Canister, ctx_id: u64, run: RunResult) {
        let Some(mut cc) = c.call_contexts.remove(&ctx_id) else {
            return;
        };
        cc.instructions += run.instructions;
        let msg = run.msg;
        match run.result {
            Ok(()) => {
                cc.cycles_accepted += msg.cycles_accepted;
                for call in msg.outgoing {
                    let callback = self.fresh_id();
                    let deadline = call.timeout_seconds.map(|s| self.time + s as u64 * 1_000_000_000);
                    c.callbacks.insert(
                        callback,
                        Callback {
                            context: ctx_id,
                            callee: call.callee,
                            reply: call.reply,
                            reject: call.reject,
                            cleanup: call.cleanup,
                            deadline,
                            transmission_prepay: call.transmission_prepay,
                            execution_prepay: call.execution_prepay,
                        },
                    );
                    if let Some(d) = deadline {
                        self.deadlines.insert((d, c.id, callback));
                    }
                    cc.outstanding_calls += 1;
                    let origin = Origin::Canister {
                        caller: c.id,
                        callback,
                        deadline: deadline.unwrap_or(0),
                    };
                    let request = Request {
                        sender: c.id,
                        receiver: call.callee,
                        method: call.method,
                        payload: call.payload,
                        cycles: call.cycles,
                        origin,
                    };
                    self.enqueue(Message::Request(request), 0);
                }
                if let Some(response) = msg.response {
                    let refund = cc.cycles_available - cc.cycles_accepted;
                    cc.responded = true;
                    let result = match response {
                        Response::Reply(bytes) => Ok(bytes),
                        Response::Reject(text) => Err(Reject::new(RejectCode::CanisterReject, text)),
                    };
                    self.respond(&cc.origin.clone(), result, refund);
                }
            }
            Err(trap) => {
                if !cc.responded && cc.outstanding_calls == 0 {
                    cc.responded = true;
                    let refund = cc.cycles_available - cc.cycles_accepted;
                    self.respond(&cc.origin.clone(), Err(error_from(c.id, &trap)), refund);
                }
            }
        }
        if cc.outstanding_calls > 0 {
            c.call_contexts.insert(ctx_id, cc);
            return;
        }
        if !cc.responded {
            let refund = cc.cycles_available - cc.cycles_accepted;
            let reject = Reject::canister_error(format!("Canister {} did not produce a response", c.id))
                .with_error_code("IC0506");
            self.respond(&cc.origin, Err(reject), refund);
        }
        self.check_stopped(c);
    }

    /// Spec "stop_canister": a stopping canister becomes stopped once it has no open call contexts.
    pub fn check_stopped(&mut self, c: &mut Canister) {
        if c.status != CanisterStatus::Stopping || !c.call_contexts.is_empty() {
            return;
        }
        c.status = CanisterStatus::Stopped;
        c.version += 1;
        for stop in std::mem::take(&mut c.pending_stops) {
            self.management_calls[stop.record].outcome = Some(Ok(()));
            self.respond_routed(&stop.origin, Ok(candid::encode_args(()).expect("encode ()")), 0);
        }
    }

    pub fn new_call_context(&mut self, c: &mut Canister, origin: Origin, caller: Principal, cycles: u128) -> u64 {
        let id = self.fresh_id();
        let cc = CallContext {
            origin,
            caller,
            responded: false,
            outstanding_calls: 0,
            cycles_available: cycles,
            cycles_accepted: 0,
            instructions: 0,
        };
        c.call_contexts.insert(id, cc);
        id
    }

    // ---- Rounds ----

    /// One IC round (scheduler.rs `execute_round`): bounded-wait and stop deadlines, the management canister's
    /// messages (and running installs), then the canisters' iterations; at the end, the install_code rate limit
    /// pays down, instances idle for a few rounds are dropped (see `execution::Live`) and time advances by
    /// `round_duration`.
    pub fn tick(&mut self) {
        let round = self.current_round();
        self.expire_deadlines();
        self.run_subnet_messages(round);
        self.run_iterations(round);
        self.charge_storage();
        let rate = self.config.scheduler.install_code_rate_limit;
        for c in self.canisters.values_mut() {
            c.install_code_debit = c.install_code_debit.saturating_sub(rate);
            if let Some(live) = &mut c.live {
                live.end_round();
            }
        }
        self.round = round;
        self.time += self.config.round_duration.as_nanos() as u64;
    }

    /// Every 10 s a canister pays for the memory it used since its last charge (scheduler.rs
    /// `charge_canisters_for_resource_allocation_and_usage`, at the end of a round); one that cannot pay is
    /// uninstalled and its remaining cycles are gone.
    fn charge_storage(&mut self) {
        let now = self.time;
        let every = cycles::DURATION_BETWEEN_ALLOCATION_CHARGES_SECS * 1_000_000_000;
        let due: Vec<Principal> = self
            .canisters
            .values()
            .filter(|c| now.saturating_sub(c.last_storage_charge) >= every)
            .map(|c| c.id)
            .collect();
        for id in due {
            self.with_canister(id, |s, c| {
                let seconds = (now - c.last_storage_charge) / 1_000_000_000;
                c.last_storage_charge = now;
                let cost = cycles::memory_cost(c.memory_usage(), seconds);
                if cost <= c.sys.cycles {
                    c.sys.cycles -= cost;
                } else {
                    s.remove_code(c);
                    c.sys.cycles = 0;
                }
            });
        }
    }

    pub fn advance_time(&mut self, d: Duration) {
        self.time += d.as_nanos() as u64;
    }

    /// Takes the messages due in `round` out of a queue; the others stay.
    fn take_due<T>(queue: &mut VecDeque<Queued<T>>, round: u64) -> Vec<T> {
        let (due, later): (VecDeque<_>, VecDeque<_>) = std::mem::take(queue).into_iter().partition(|q| q.due <= round);
        *queue = later;
        due.into_iter().map(|q| q.msg).collect()
    }

    /// Puts messages back at the front of a queue, in their order, due at once.
    fn put_back<T>(queue: &mut VecDeque<Queued<T>>, messages: Vec<T>, round: u64) {
        for msg in messages.into_iter().rev() {
            queue.push_front(Queued { due: round, msg });
        }
    }

    /// The management canister's share of the round: running installs advance by one slice each, then queued
    /// requests run in order while the budget lasts. A request about a canister whose install is still running
    /// waits, and so does every install_code while any install is running (scheduler.rs `can_execute_msg`).
    fn run_subnet_messages(&mut self, round: u64) {
        let slice = self.config.scheduler.max_instructions_per_install_code_slice;
        let mut budget = self.config.scheduler.subnet_budget();
        let running: Vec<Principal> = self.long_installs.keys().copied().collect();
        for id in &running {
            let install = self.long_installs.get_mut(id).expect("listed");
            let step = install.remaining.min(slice);
            install.remaining -= step;
            budget -= step as i64;
            if install.remaining == 0 {
                let done = self.long_installs.remove(id).expect("listed");
                self.complete_install(*id, done);
            }
        }
        if !running.is_empty() {
            // Requests that cost no instructions still go ahead (scheduler.rs: "set ... to 1 if it is not positive").
            budget = budget.max(1);
        }
        let mut waiting = Vec::new();
        for req in Self::take_due(&mut self.subnet_queue, round) {
            let target = crate::management::target_of(&req.method, &req.payload);
            let blocked = target.is_some_and(|t| self.long_installs.contains_key(&t))
                || (!self.long_installs.is_empty() && crate::management::is_install(&req.method));
            if budget <= 0 || blocked {
                waiting.push(req);
                continue;
            }
            budget -= self.handle_management(req) as i64;
        }
        Self::put_back(&mut self.subnet_queue, waiting, round);
    }

    /// Registers an install_code that needs more than one slice; its response waits until the last slice.
    pub fn start_long_install(&mut self, id: Principal, install: LongInstallStart) {
        let slice = self.config.scheduler.max_instructions_per_install_code_slice;
        self.long_installs.insert(
            id,
            LongInstall {
                remaining: install.instructions.saturating_sub(slice),
                instructions: install.instructions,
                origin: install.origin,
                result: install.result,
                refund: install.refund,
                record: install.record,
            },
        );
    }

    /// The last slice of an install ran: its response goes out and its instructions count against the rate limit.
    fn complete_install(&mut self, id: Principal, done: LongInstall) {
        if let Some(c) = self.canisters.get_mut(&id) {
            c.install_code_debit += done.instructions;
        }
        self.management_calls[done.record].outcome = Some(done.result.as_ref().map(|_| ()).map_err(Clone::clone));
        self.respond_routed(&done.origin, done.result, done.refund);
    }

    /// Whether an install_code on `id` is still running.
    pub fn installing(&self, id: &Principal) -> bool {
        self.long_installs.contains_key(id)
    }

    /// The canisters' part of the round (scheduler.rs `inner_round`). Each iteration runs, per canister, its
    /// system tasks (first iteration only) and the messages waiting for it; canisters are spread over the
    /// execution threads, each thread with the remaining round budget; an execution costs its instructions plus a
    /// fixed overhead, each canister a further overhead. The budget is then reduced by the busiest thread and the
    /// finalization overhead. Messages sent during an iteration run in the next one; the round ends when an
    /// iteration executes nothing or the budget is spent.
    fn run_iterations(&mut self, round: u64) {
        let cfg = self.config.scheduler.clone();
        let mut budget = cfg.round_budget();
        let mut first = true;
        loop {
            let mut work = self.collect_work(round, first);
            if work.is_empty() {
                break;
            }
            let mut order: Vec<Principal> = work.keys().copied().collect();
            order.sort_by_key(|id| (self.canisters[id].last_executed_round, *id));
            let mut leftovers = Vec::new();
            let mut busiest = 0i64;
            let cores = cfg.scheduler_cores.max(1);
            for thread in 0..cores {
                let mut left = budget;
                for id in order.iter().skip(thread).step_by(cores) {
                    let w = work.remove(id).expect("ordered from work");
                    if left <= 0 {
                        leftovers.extend(w.messages);
                        continue;
                    }
                    for task in w.tasks {
                        if left <= 0 {
                            break;
                        }
                        let used = self.run_task(*id, task);
                        left -= (used + cfg.instruction_overhead_per_execution) as i64;
                    }
                    for msg in w.messages {
                        if left <= 0 {
                            leftovers.push(msg);
                            continue;
                        }
                        let used = self.deliver(msg);
                        left -= (used + cfg.instruction_overhead_per_execution) as i64;
                    }
                    left -= cfg.instruction_overhead_per_canister as i64;
                    if let Some(c) = self.canisters.get_mut(id) {
                        c.last_executed_round = round;
                    }
                }
                busiest = busiest.max(budget - left);
            }
            Self::put_back(&mut self.inbox, leftovers, round);
            let finalization = cfg.instruction_overhead_per_canister_for_finalization * self.canisters.len() as u64;
            budget -= busiest + finalization as i64;
            if busiest == 0 || budget <= 0 {
                break;
            }
            first = false;
        }
    }

    /// The work of one iteration: the messages due now (rejecting those that cannot be delivered), and in the
    /// first iteration the due global timers and the heartbeats of running canisters. A canister with a running
    /// install gets nothing.
    fn collect_work(&mut self, round: u64, first: bool) -> BTreeMap<Principal, Work> {
        let mut work: BTreeMap<Principal, Work> = BTreeMap::new();
        let mut waiting = Vec::new();
        for msg in Self::take_due(&mut self.inbox, round) {
            let to = match &msg {
                Message::Request(r) => r.receiver,
                Message::Response(r) => r.to,
            };
            if self.installing(&to) {
                waiting.push(msg);
                continue;
            }
            match msg {
                Message::Request(req) => {
                    if let Some(reject) = self.undeliverable(&req) {
                        self.respond_routed(&req.origin, Err(reject), req.cycles);
                    } else {
                        work.entry(to).or_default().messages.push(Message::Request(req));
                    }
                }
                Message::Response(resp) => {
                    if self.canisters.contains_key(&to) {
                        work.entry(to).or_default().messages.push(Message::Response(resp));
                    }
                }
            }
        }
        Self::put_back(&mut self.inbox, waiting, round);
        if first {
            for id in self.due_timers() {
                if !self.installing(&id) {
                    work.entry(id).or_default().tasks.push("canister_global_timer");
                }
            }
            for id in self.heartbeats.clone() {
                let runs = self
                    .canisters
                    .get(&id)
                    .is_some_and(|c| c.status == CanisterStatus::Running && c.exports("canister_heartbeat"));
                if runs && !self.installing(&id) {
                    work.entry(id).or_default().tasks.push("canister_heartbeat");
                }
            }
        }
        work
    }

    /// A request the IC cannot induct: the receiver does not exist, or is stopping or stopped. It is answered by
    /// the system, through message routing.
    fn undeliverable(&mut self, req: &Request) -> Option<Reject> {
        let id = req.receiver;
        let Some(c) = self.canisters.get(&id) else {
            return Some(
                Reject::new(RejectCode::DestinationInvalid, format!("Canister {id} not found"))
                    .with_error_code("IC0301"),
            );
        };
        match c.status {
            CanisterStatus::Running => None,
            CanisterStatus::Stopping => {
                Some(Reject::canister_error(format!("Canister {id} is stopping")).with_error_code("IC0509"))
            }
            CanisterStatus::Stopped => {
                Some(Reject::canister_error(format!("Canister {id} is stopped")).with_error_code("IC0508"))
            }
        }
    }

    /// Running canisters whose global timer is due (spec "Global timer"), exporting `canister_global_timer`.
    fn due_timers(&self) -> Vec<Principal> {
        self.timers
            .range(..(self.time + 1, Principal::management_canister()))
            .map(|(_, p)| *p)
            .filter(|id| {
                self.canisters
                    .get(id)
                    .is_some_and(|c| c.status == CanisterStatus::Running && c.exports("canister_global_timer"))
            })
            .collect()
    }

    /// Runs a system task, which prepays its execution like an update; a canister that cannot pay skips it (its
    /// global timer stays set). The global timer is deactivated before its handler runs. Returns the instructions
    /// used.
    fn run_task(&mut self, id: Principal, export: &'static str) -> u64 {
        self.with_canister(id, |s, c| {
            let limit = s.config.update_instruction_limit;
            let prepaid = cycles::execution_cost(limit);
            if c.withdraw(prepaid, false).is_err() {
                return 0;
            }
            if export == "canister_global_timer" {
                c.sys.global_timer = 0;
                s.sync_timer(c);
            }
            let ctx = s.new_call_context(c, Origin::System, Principal::management_canister(), 0);
            let mut exec = Exec::new(
                EntryKind::SystemTask,
                Entry::Export(export.into()),
                limit,
                Rollback::OnTrap,
            );
            exec.caller = Some(Principal::management_canister());
            exec.context = Some(ctx);
            let run = s.execute(c, exec);
            let used = run.instructions;
            c.sys.cycles += prepaid - cycles::execution_cost(used);
            s.finish(c, ctx, run);
            used
        })
        .unwrap_or(0)
    }

    /// Bounded-wait calls past their deadline are rejected with SYS_UNKNOWN (spec "Best-effort responses");
    /// stop_canister calls past the timeout are rejected with SYS_TRANSIENT (facts §3).
    fn expire_deadlines(&mut self) {
        let now = self.time;
        let expired: Vec<_> = self
            .deadlines
            .range(..(now + 1, Principal::management_canister(), 0))
            .copied()
            .collect();
        for key @ (_, canister, callback) in expired {
            self.deadlines.remove(&key);
            let reject = Reject::new(RejectCode::SysUnknown, "Request timed out.");
            let msg = ResponseMsg {
                to: canister,
                callback,
                result: Err(reject),
                refund: 0,
            };
            self.enqueue(Message::Response(msg), 0);
        }
        let stops: Vec<_> = self
            .stop_deadlines
            .range(..(now + 1, Principal::management_canister()))
            .copied()
            .collect();
        for key @ (_, canister) in stops {
            self.stop_deadlines.remove(&key);
            self.with_canister(canister, |s, c| {
                let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut c.pending_stops)
                    .into_iter()
                    .partition(|p| p.deadline <= now);
                c.pending_stops = waiting;
                for stop in expired {
                    let reject = Reject::new(RejectCode::SysTransient, "Stop canister request timed out")
                        .with_error_code("IC0206");
                    s.management_calls[stop.record].outcome = Some(Err(reject.clone()));
                    s.respond_routed(&stop.origin, Err(reject), 0);
                }
            });
        }
    }

    /// Executes one message for its canister; returns the instructions used.
    fn deliver(&mut self, msg: Message) -> u64 {
        match msg {
            Message::Request(req) => self.deliver_request(req),
            Message::Response(resp) => self.deliver_response(resp),
        }
    }

    fn deliver_request(&mut self, req: Request) -> u64 {
        if let Some(reject) = self.take_injected_reject(req.receiver, &req.method, &req.origin) {
            self.respond(&req.origin, Err(reject), req.cycles);
            return 0;
        }
        let id = req.receiver;
        self.with_canister(id, |s, c| s.execute_request(c, req)).unwrap_or(0)
    }

    /// The reject injected with `reject_next_call` for this call, if any. SYS_UNKNOWN is for bounded-wait calls
    /// only (ic-error-types: "best-effort calls only"): injecting it into ingress or an unbounded-wait call would
    /// fake what the IC never does, so the replica refuses.
    pub fn take_injected_reject(&mut self, target: Principal, method: &str, origin: &Origin) -> Option<Reject> {
        let reject = self.faults.take_reject(target, method)?;
        let bounded = matches!(origin, Origin::Canister { deadline, .. } if *deadline != 0);
        assert!(
            reject.code != RejectCode::SysUnknown || bounded,
            "reject_next_call({target}, {method}, SysUnknown): the IC gives SYS_UNKNOWN only to bounded-wait calls, \
             and this one is {}",
            if matches!(origin, Origin::Ingress(_)) {
                "an ingress message"
            } else {
                "an unbounded-wait call"
            }
        );
        Some(reject)
    }

    /// Checks whether `c` accepts a call to `method` now; returns the entry kind to run.
    pub fn admit(&self, c: &Canister, method: &str, query: bool) -> Result<EntryKind, Reject> {
        Self::runnable(c)?;
        Self::method_kind(c, method, query)
    }

    /// The canister is running and has a module.
    fn runnable(c: &Canister) -> Result<(), Reject> {
        let id = c.id;
        match c.status {
            CanisterStatus::Running => {}
            CanisterStatus::Stopping => {
                return Err(Reject::canister_error(format!("Canister {id} is stopping")).with_error_code("IC0509"))
            }
            CanisterStatus::Stopped => {
                return Err(Reject::canister_error(format!("Canister {id} is stopped")).with_error_code("IC0508"))
            }
        }
        if c.module().is_none() {
            return Err(Reject::canister_error(format!(
                "Error from Canister {id}: Attempted to execute a message, but the canister contains no Wasm module."
            ))
            .with_error_code("IC0537"));
        }
        Ok(())
    }

    /// The entry kind that runs `method`, or the IC's reject if the module does not export it.
    fn method_kind(c: &Canister, method: &str, query: bool) -> Result<EntryKind, Reject> {
        let module = c.module().expect("checked by runnable");
        if query {
            if module.queries.contains(method) || module.composite_queries.contains(method) {
                return Ok(EntryKind::Query);
            }
        } else if module.updates.contains(method) {
            return Ok(EntryKind::Update);
        } else if module.queries.contains(method) {
            return Ok(EntryKind::ReplicatedQuery);
        } else if module.composite_queries.contains(method) {
            return Err(composite_query_in_replicated_mode());
        }
        let kind = if query { "query" } else { "update" };
        Err(Reject::canister_error(format!(
            "Error from Canister {}: Canister has no {kind} method '{method}'.",
            c.id
        ))
        .with_error_code("IC0536"))
    }

    /// A request: the canister prepays the execution (execution_cost of the instruction limit, above its freezing
    /// threshold) and gets the unused instructions back; a call to a method it does not export costs the
    /// per-message fee (execution_environment.rs `execute_call`).
    fn execute_request(&mut self, c: &mut Canister, req: Request) -> u64 {
        if let Err(reject) = Self::runnable(c) {
            self.respond(&req.origin, Err(reject), req.cycles);
            return 0;
        }
        let limit = self.config.update_instruction_limit;
        let prepaid = cycles::execution_cost(limit);
        if let Err(text) = c.withdraw(prepaid, c.is_controller(&req.sender)) {
            self.respond(
                &req.origin,
                Err(Reject::of(ErrorCode::CanisterOutOfCycles, text)),
                req.cycles,
            );
            return 0;
        }
        let kind = match Self::method_kind(c, &req.method, false) {
            Ok(kind) => kind,
            Err(reject) => {
                c.sys.cycles += prepaid - cycles::execution_cost(0);
                self.respond(&req.origin, Err(reject), req.cycles);
                return 0;
            }
        };
        let ctx = self.new_call_context(c, req.origin, req.sender, req.cycles);
        let (export, rollback) = match kind {
            EntryKind::Update => (format!("canister_update {}", req.method), Rollback::OnTrap),
            _ => (format!("canister_query {}", req.method), Rollback::Always),
        };
        let mut exec = Exec::new(kind, Entry::Export(export), limit, rollback);
        exec.caller = Some(req.sender);
        exec.arg = req.payload;
        exec.context = Some(ctx);
        let mut run = self.execute(c, exec);
        if rollback == Rollback::Always {
            run.msg.cycles_accepted = 0;
        }
        let used = run.instructions;
        c.sys.cycles += prepaid - cycles::execution_cost(used);
        self.finish(c, ctx, run);
        used
    }

    fn deliver_response(&mut self, resp: ResponseMsg) -> u64 {
        self.with_canister(resp.to, |s, c| {
            // A callback is answered once: a late reply after a timeout (or vice versa) is dropped.
            let Some(cb) = c.callbacks.remove(&resp.callback) else {
                return 0;
            };
            if let Some(d) = cb.deadline {
                s.deadlines.remove(&(d, c.id, resp.callback));
            }
            // The attached cycles not accepted, and the response's transmission prepayment minus what it used.
            let response_bytes = match &resp.result {
                Ok(bytes) => bytes.len(),
                Err(reject) => reject.message.len(),
            };
            c.sys.cycles += resp.refund;
            c.sys.cycles += cb
                .transmission_prepay
                .saturating_sub(cycles::response_transmission(response_bytes));
            let Some(cc) = c.call_contexts.get_mut(&cb.context) else {
                c.sys.cycles += cb.execution_prepay.saturating_sub(cycles::execution_cost(0));
                return 0;
            };
            cc.outstanding_calls -= 1;
            let caller = cc.caller;
            let refunded = resp.refund;
            let (kind, (fun, env), arg, reject) = match resp.result {
                Ok(bytes) => (EntryKind::ReplyCallback, cb.reply, bytes, (0, String::new())),
                Err(r) => (
                    EntryKind::RejectCallback,
                    cb.reject,
                    Vec::new(),
                    (r.code as u32, r.message),
                ),
            };
            // The callback and its cleanup run on the execution the call prepaid.
            let fuel = s.config.update_instruction_limit;
            let mut exec = Exec::new(kind, Entry::Callback { fun, env }, fuel, Rollback::OnTrap);
            exec.caller = Some(caller);
            exec.arg = arg;
            exec.reject = reject;
            exec.context = Some(cb.context);
            exec.refunded = refunded;
            let mut run = s.execute(c, exec);
            let mut used = run.instructions;
            if let Err(callback_trap) = run.result.clone() {
                if let Some((fun, env)) = cb.cleanup {
                    // Spec: the cleanup callback runs when the reply or reject callback trapped.
                    let mut cleanup = Exec::new(
                        EntryKind::Cleanup,
                        Entry::Callback { fun, env },
                        fuel - used,
                        Rollback::OnTrap,
                    );
                    cleanup.caller = Some(caller);
                    cleanup.context = Some(cb.context);
                    let cleanup_run = s.execute(c, cleanup);
                    used += cleanup_run.instructions;
                    if let Err(cleanup_trap) = cleanup_run.result {
                        run.result = Err(Trap::with_cleanup(callback_trap, cleanup_trap));
                    }
                }
            }
            c.sys.cycles += cb.execution_prepay.saturating_sub(cycles::execution_cost(used));
            s.finish(c, cb.context, run);
            used
        })
        .unwrap_or(0)
    }

    // ---- Ingress and queries ----

    /// Spec "Ingress message inspection" then queues the message for the next round.
    pub fn submit(
        &mut self,
        sender: Principal,
        receiver: Principal,
        method: &str,
        payload: Vec<u8>,
    ) -> Result<u64, Reject> {
        let bytes = method.len() + payload.len();
        if bytes > MAX_INGRESS_BYTES {
            return Err(Reject::new(
                RejectCode::SysFatal,
                format!("Request is too large. Message byte size {bytes} is larger than the max allowed {MAX_INGRESS_BYTES}."),
            ));
        }
        let composite = self
            .canisters
            .get(&receiver)
            .and_then(|c| c.module())
            .is_some_and(|m| m.composite_queries.contains(method));
        if composite {
            return Err(composite_query_in_replicated_mode());
        }
        if receiver != Principal::management_canister() {
            let inspected = self.with_canister(receiver, |s, c| {
                if !c.exports("canister_inspect_message") || c.status != CanisterStatus::Running {
                    return Ok(());
                }
                let entry = Entry::Export("canister_inspect_message".into());
                let mut exec = Exec::new(
                    EntryKind::InspectMessage,
                    entry,
                    INSPECT_INSTRUCTION_LIMIT,
                    Rollback::Always,
                );
                exec.caller = Some(sender);
                exec.arg = payload.clone();
                exec.method_name = method.to_string();
                let run = s.execute(c, exec);
                match run.result {
                    Err(trap) => Err(error_from(c.id, &trap)),
                    Ok(()) if !run.msg.message_accepted => Err(Reject::new(
                        RejectCode::CanisterReject,
                        format!("Canister {} rejected the message", c.id),
                    )
                    .with_error_code("IC0516")),
                    Ok(()) => Ok(()),
                }
            });
            if let Some(Err(reject)) = inspected {
                return Err(reject);
            }
        }
        self.charge_ingress(sender, receiver, method, &payload)?;
        let id = self.fresh_id();
        self.ingress.insert(id, None);
        let request = Request {
            sender,
            receiver,
            method: method.to_string(),
            payload,
            cycles: 0,
            origin: Origin::Ingress(id),
        };
        self.enqueue(Message::Request(request), 0);
        Ok(id)
    }

    /// The ingress induction fee (`ingress_induction_cost`), paid above its freezing threshold by the receiver, or
    /// for a management call by the canister it is about; a small update_settings is free so that a frozen
    /// canister can be unfrozen. The IC counts the whole signed envelope; here method name and argument.
    fn charge_ingress(
        &mut self,
        sender: Principal,
        receiver: Principal,
        method: &str,
        payload: &[u8],
    ) -> Result<(), Reject> {
        let payer = if receiver != Principal::management_canister() {
            Some(receiver)
        } else if method.starts_with("provisional_")
            || (method == "update_settings" && payload.len() <= cycles::FREE_UPDATE_SETTINGS_BYTES)
        {
            None
        } else {
            crate::management::target_of(method, payload)
        };
        let Some(c) = payer.and_then(|p| self.canisters.get_mut(&p)) else {
            return Ok(());
        };
        let cost = cycles::ingress_cost(method.len() + payload.len());
        let reveal = c.is_controller(&sender);
        c.withdraw(cost, reveal)
            .map_err(|text| Reject::of(ErrorCode::CanisterOutOfCycles, text))
    }

    /// A non-replicated query: runs now, outside rounds; its state changes are discarded.
    pub fn query(
        &mut self,
        sender: Principal,
        receiver: Principal,
        method: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, Reject> {
        let fuel = self.config.query_instruction_limit;
        let result = self.with_canister(receiver, |s, c| {
            s.admit(c, method, true)?;
            let (kind, export) = if c.module().is_some_and(|m| m.composite_queries.contains(method)) {
                (EntryKind::CompositeQuery, format!("canister_composite_query {method}"))
            } else {
                (EntryKind::Query, format!("canister_query {method}"))
            };
            let mut exec = Exec::new(kind, Entry::Export(export), fuel, Rollback::Always);
            exec.caller = Some(sender);
            exec.arg = payload;
            let run = s.execute(c, exec);
            match (run.result, run.msg.response) {
                (Err(trap), _) => Err(error_from(c.id, &trap)),
                (Ok(()), Some(Response::Reply(bytes))) => Ok(bytes),
                (Ok(()), Some(Response::Reject(text))) => Err(Reject::new(RejectCode::CanisterReject, text)),
                (Ok(()), None) => Err(
                    Reject::canister_error(format!("Canister {} did not produce a response", c.id))
                        .with_error_code("IC0506"),
                ),
            }
        });
        result.unwrap_or_else(|| {
            Err(
                Reject::new(RejectCode::DestinationInvalid, format!("Canister {receiver} not found"))
                    .with_error_code("IC0301"),
            )
        })
    }
}

// ---- What a host that runs rounds on its own needs to know (see `Replica::next_due_time`) ----
impl State {
    fn is_frozen(c: &Canister) -> bool {
        c.sys.cycles.saturating_sub(c.freezing_threshold_cycles()) < cycles::execution_cost(0)
    }

    /// The earliest time at which a round has work without a new message: the global timer of a running canister
    /// with cycles, a bounded-wait call deadline, or a stop_canister timeout.
    pub fn next_due_time(&self) -> Option<u64> {
        let timer = self.timers.iter().find_map(|(at, id)| {
            let c = self.canisters.get(id)?;
            (c.status == CanisterStatus::Running && !Self::is_frozen(c)).then_some(*at)
        });
        let deadline = self.deadlines.first().map(|(at, ..)| *at);
        // A stop that completed leaves its deadline behind (it is dropped once due): only pending stops count.
        let stop = self.stop_deadlines.iter().find_map(|(at, id)| {
            let c = self.canisters.get(id)?;
            c.pending_stops.iter().any(|p| p.deadline == *at).then_some(*at)
        });
        [timer, deadline, stop].into_iter().flatten().min()
    }

    /// Whether a running canister with cycles exports `canister_heartbeat` (heartbeats run in every round).
    pub fn has_heartbeats(&self) -> bool {
        self.heartbeats.iter().any(|id| {
            self.canisters.get(id).is_some_and(|c| {
                c.status == CanisterStatus::Running && !Self::is_frozen(c) && c.exports("canister_heartbeat")
            })
        })
    }
}
