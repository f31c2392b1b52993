//! The `ic0` System API (facts §7; spec "System API imports"), for wasm32 modules.
//!
//! Each import checks where it may be called using the spec's import table: a call from the wrong place traps
//! with "Canister violated contract: "ic0_X" cannot be executed in M mode".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use candid::Principal;
use wasmi::{Caller, Error, Linker, Memory, TrapCode};

use crate::cycles;
use crate::error::{ErrorCode, RejectCode, Trap};
use crate::stable_memory::{StableMemory, PAGE_SIZE};

/// Every function the replica exports to canisters under module `ic0`; any other import is rejected at install.
pub const IC0_IMPORTS: &[&str] = &[
    "msg_arg_data_size",
    "msg_arg_data_copy",
    "msg_caller_size",
    "msg_caller_copy",
    "msg_caller_info_data_size",
    "msg_caller_info_data_copy",
    "msg_caller_info_signer_size",
    "msg_caller_info_signer_copy",
    "msg_reject_code",
    "msg_reject_msg_size",
    "msg_reject_msg_copy",
    "msg_deadline",
    "msg_reply_data_append",
    "msg_reply",
    "msg_reject",
    "msg_cycles_available128",
    "msg_cycles_refunded128",
    "msg_cycles_accept128",
    "cycles_burn128",
    "canister_self_size",
    "canister_self_copy",
    "canister_cycle_balance128",
    "canister_liquid_cycle_balance128",
    "canister_status",
    "canister_version",
    "subnet_self_size",
    "subnet_self_copy",
    "subnet_self_node_count",
    "msg_method_name_size",
    "msg_method_name_copy",
    "accept_message",
    "call_new",
    "call_on_cleanup",
    "call_data_append",
    "call_with_best_effort_response",
    "call_cycles_add128",
    "call_perform",
    "stable_size",
    "stable_grow",
    "stable_read",
    "stable_write",
    "stable64_size",
    "stable64_grow",
    "stable64_write",
    "stable64_read",
    "root_key_size",
    "root_key_copy",
    "certified_data_set",
    "data_certificate_present",
    "data_certificate_size",
    "data_certificate_copy",
    "time",
    "global_timer_set",
    "performance_counter",
    "is_controller",
    "in_replicated_execution",
    "cost_call",
    "cost_create_canister",
    "cost_http_request",
    "cost_http_request_v2",
    "cost_sign_with_ecdsa",
    "cost_sign_with_schnorr",
    "cost_vetkd_derive_key",
    "env_var_count",
    "env_var_name_size",
    "env_var_name_copy",
    "env_var_name_exists",
    "env_var_value_size",
    "env_var_value_copy",
    "debug_print",
    "trap",
];

/// Calls a canister may have waiting for responses from one other canister (`DEFAULT_QUEUE_CAPACITY`,
/// dfinity/ic `rs/config/src/execution_environment.rs`): each reserves a response slot in a queue of 500.
pub const QUEUE_CAPACITY: usize = 500;
/// Spec: 10 MiB same-subnet request limit (method name + payload), 2 MiB reply limit (facts §4).
pub const MAX_REQUEST_SIZE: usize = 10 * 1024 * 1024;
pub const MAX_REPLY_SIZE: usize = 2 * 1024 * 1024;
/// Spec `MAX_CALL_TIMEOUT`.
pub const MAX_CALL_TIMEOUT_SECONDS: u32 = 300;
/// Node count reported by `subnet_self_node_count` and used for cost formulas (a 13-node application subnet).
pub const SUBNET_NODES: u128 = 13;

/// The context a message executes in; the spec's import table names these I, G, U, RQ, NRQ, CQ, Ry, Rt, C, F, T, s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EntryKind {
    /// The module's `(start)` function (s).
    #[default]
    Start,
    /// `canister_init` (I).
    Init,
    /// `canister_post_upgrade` (I).
    PostUpgrade,
    /// `canister_pre_upgrade` (G).
    PreUpgrade,
    /// `canister_update` (U).
    Update,
    /// `canister_query` called as an update (RQ).
    ReplicatedQuery,
    /// `canister_query` called as a query (NRQ).
    Query,
    /// `canister_composite_query` (CQ).
    CompositeQuery,
    /// Reply callback (Ry).
    ReplyCallback,
    /// Reject callback (Rt).
    RejectCallback,
    /// Cleanup callback (C).
    Cleanup,
    /// `canister_inspect_message` (F).
    InspectMessage,
    /// `canister_global_timer`, `canister_heartbeat` (T).
    SystemTask,
}

const S: u16 = 1;
const I: u16 = 1 << 1;
const G: u16 = 1 << 2;
const U: u16 = 1 << 3;
const RQ: u16 = 1 << 4;
const NRQ: u16 = 1 << 5;
const CQ: u16 = 1 << 6;
const RY: u16 = 1 << 7;
const RT: u16 = 1 << 8;
const C: u16 = 1 << 9;
const F: u16 = 1 << 10;
const T: u16 = 1 << 11;
/// The spec's `*`: everywhere except `(start)`.
const ALL: u16 = I | G | U | RQ | NRQ | CQ | RY | RT | C | F | T;

impl EntryKind {
    fn bit(self) -> u16 {
        match self {
            Self::Start => S,
            Self::Init | Self::PostUpgrade => I,
            Self::PreUpgrade => G,
            Self::Update => U,
            Self::ReplicatedQuery => RQ,
            Self::Query => NRQ,
            Self::CompositeQuery => CQ,
            Self::ReplyCallback => RY,
            Self::RejectCallback => RT,
            Self::Cleanup => C,
            Self::InspectMessage => F,
            Self::SystemTask => T,
        }
    }

    fn mode(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Init => "init",
            Self::PostUpgrade => "post upgrade",
            Self::PreUpgrade => "pre upgrade",
            Self::Update => "update",
            Self::ReplicatedQuery => "replicated query",
            Self::Query => "non-replicated query",
            Self::CompositeQuery => "composite query",
            Self::ReplyCallback => "reply callback",
            Self::RejectCallback => "reject callback",
            Self::Cleanup => "cleanup",
            Self::InspectMessage => "inspect message",
            Self::SystemTask => "system task",
        }
    }
}

/// A trap raised by the System API, as the IC describes it.
#[derive(Debug)]
pub struct HostTrap(pub Trap);

impl fmt::Display for HostTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl wasmi::errors::HostError for HostTrap {}

fn trap(t: Trap) -> Error {
    Error::host(HostTrap(t))
}

fn violation(msg: impl fmt::Display) -> Error {
    trap(Trap::new(
        ErrorCode::CanisterContractViolation,
        format!("Canister violated contract: {msg}"),
    ))
}

/// Canister state that the System API can change; moved into the wasm store for each execution.
#[derive(Default, Clone)]
pub struct SystemState {
    pub stable: StableMemory,
    pub global_timer: u64,
    pub certified_data: Vec<u8>,
    pub cycles: u128,
}

/// What a message produced as its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Reply(Vec<u8>),
    Reject(String),
}

/// A call built with `call_new` .. `call_perform`.
#[derive(Clone, Debug)]
pub struct OutgoingCall {
    pub callee: Principal,
    pub method: String,
    pub payload: Vec<u8>,
    pub cycles: u128,
    pub reply: (u32, u32),
    pub reject: (u32, u32),
    pub cleanup: Option<(u32, u32)>,
    pub timeout_seconds: Option<u32>,
    /// Withdrawn at `call_perform` for the largest response's transmission and for the callback's execution; the
    /// unused part comes back with the response.
    pub transmission_prepay: u128,
    pub execution_prepay: u128,
}

/// Everything about the message being executed.
pub struct MsgCtx {
    pub kind: EntryKind,
    pub canister_id: Principal,
    pub subnet_id: Principal,
    /// `ic0.root_key`: the DER-framed root key of the network.
    pub root_key: std::sync::Arc<[u8]>,
    pub caller: Option<Principal>,
    pub arg: Vec<u8>,
    pub method_name: String,
    /// `(code, message)` in a reject callback; code 0 in a reply callback.
    pub reject: (u32, String),
    pub time: u64,
    pub status: u32,
    pub version: u64,
    pub controllers: BTreeSet<Principal>,
    /// The canister's environment variables.
    pub env_vars: Arc<BTreeMap<String, String>>,
    /// Calls waiting for a response, per callee, when the message started.
    pub waiting_calls: BTreeMap<Principal, usize>,
    /// The call context can still be answered (not answered before, and the entry point can answer).
    pub can_respond: bool,
    pub reply_buf: Vec<u8>,
    pub response: Option<Response>,
    pub cycles_available: u128,
    pub cycles_accepted: u128,
    pub cycles_refunded: u128,
    /// `msg_deadline` (0 for unbounded-wait calls).
    pub deadline: u64,
    pub pending_call: Option<OutgoingCall>,
    pub outgoing: Vec<OutgoingCall>,
    pub logs: Vec<String>,
    pub fuel_limit: u64,
    /// Instructions the call context used before this message.
    pub context_instructions: u64,
    pub message_accepted: bool,
    /// The canister's freezing threshold in cycles when the message started.
    pub freezing_threshold: u128,
    /// Instruction limit of a callback, whose execution a call prepays.
    pub callback_instruction_limit: u64,
}

impl Default for MsgCtx {
    fn default() -> Self {
        Self {
            kind: EntryKind::default(),
            canister_id: Principal::management_canister(),
            subnet_id: Principal::management_canister(),
            root_key: std::sync::Arc::from(Vec::new()),
            caller: None,
            arg: Vec::new(),
            method_name: String::new(),
            reject: (0, String::new()),
            time: 0,
            status: 0,
            version: 0,
            controllers: BTreeSet::new(),
            env_vars: Arc::default(),
            waiting_calls: BTreeMap::new(),
            can_respond: false,
            reply_buf: Vec::new(),
            response: None,
            cycles_available: 0,
            cycles_accepted: 0,
            cycles_refunded: 0,
            deadline: 0,
            pending_call: None,
            outgoing: Vec::new(),
            logs: Vec::new(),
            fuel_limit: 0,
            context_instructions: 0,
            message_accepted: false,
            freezing_threshold: 0,
            callback_instruction_limit: 0,
        }
    }
}

/// Store data of a canister instance.
#[derive(Default)]
pub struct Env {
    pub sys: SystemState,
    pub msg: MsgCtx,
    pub memory: Option<Memory>,
}

type Ctx<'a> = Caller<'a, Env>;

/// Charges the call's fixed overhead (see [`overhead`]), then checks that `api` may run in this kind of execution.
fn check(c: &mut Ctx, api: &str, allowed: u16) -> Result<(), Error> {
    charge(c, overhead(api))?;
    let kind = c.data().msg.kind;
    if allowed & kind.bit() == 0 {
        return Err(violation(format!(
            "\"ic0_{api}\" cannot be executed in {} mode",
            kind.mode()
        )));
    }
    Ok(())
}

/// Instructions the IC charges for a System API call on top of the wasm that calls it (dfinity/ic
/// `rs/embedders/src/wasmtime_embedder/system_api_complexity.rs`, `overhead::new`). Calls its table does
/// not list (caller info, `msg_deadline`, `call_with_best_effort_response`, `subnet_self_*`, `cost_*`, env vars,
/// `in_replicated_execution`, `cycles_burn128`) are charged 500, like the rest of their kind.
fn overhead(api: &str) -> u64 {
    match api {
        "stable64_size" | "stable64_read" | "stable64_write" | "stable_size" | "stable_read" | "stable_write" => 20,
        "debug_print" => 100,
        "performance_counter" => 200,
        "is_controller" => 1_000,
        "call_new" => 1_500,
        "call_perform" => 5_000,
        _ => 500,
    }
}

/// Instructions per byte of a payload sent out of the canister (`msg_reply_data_append`, `call_data_append`), as
/// the IC's `BYTE_TRANSMISSION_COST_FACTOR`; every other byte a System API call copies costs one.
const BYTE_TRANSMISSION_COST: u64 = 50;

/// Takes `instructions` from the execution's budget (wasmi fuel); running out is the IC's instruction-limit trap.
fn charge(c: &mut Ctx, instructions: u64) -> Result<(), Error> {
    let fuel = c.get_fuel().expect("fuel metering is enabled");
    let (left, result) = match fuel.checked_sub(instructions) {
        Some(left) => (left, Ok(())),
        None => (0, Err(TrapCode::OutOfFuel.into())),
    };
    c.set_fuel(left).expect("fuel metering is enabled");
    result
}

fn memory(c: &Ctx) -> Result<Memory, Error> {
    c.data().memory.ok_or_else(|| violation("the module has no memory"))
}

fn read(c: &Ctx, ptr: i32, len: i32) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; len as u32 as usize];
    memory(c)?
        .read(c, ptr as u32 as usize, &mut buf)
        .map_err(|_| heap_out_of_bounds())?;
    Ok(buf)
}

fn write(c: &mut Ctx, ptr: i32, data: &[u8]) -> Result<(), Error> {
    memory(c)?
        .write(&mut *c, ptr as u32 as usize, data)
        .map_err(|_| heap_out_of_bounds())
}

/// The `*_copy(dst, offset, size)` pattern: copies `src[offset..offset+size]` to `dst`.
fn copy_out(c: &mut Ctx, api: &str, src: &[u8], dst: i32, offset: i32, size: i32) -> Result<(), Error> {
    charge(c, size as u32 as u64)?;
    let (offset, size) = (offset as u32 as usize, size as u32 as usize);
    let slice = offset
        .checked_add(size)
        .and_then(|end| src.get(offset..end))
        .ok_or_else(|| {
            violation(format!(
                "ic0.{api}: offset {offset} + size {size} exceeds the source length {}",
                src.len()
            ))
        })?;
    let slice = slice.to_vec();
    write(c, dst, &slice)
}

fn write_u128(c: &mut Ctx, dst: i32, value: u128) -> Result<(), Error> {
    write(c, dst, &value.to_le_bytes())
}

fn u128_of(high: i64, low: i64) -> u128 {
    ((high as u64 as u128) << 64) | low as u64 as u128
}

fn instructions_used(c: &Ctx) -> u64 {
    c.data().msg.fuel_limit.saturating_sub(c.get_fuel().unwrap_or(0))
}

/// A fixed, deterministic stand-in for the root key (a DER-framed BLS key of 96 bytes), used unless
/// `ReplicaConfig::root_key` names a real one.
pub fn placeholder_root_key() -> Vec<u8> {
    let mut key =
        hex::decode("308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100").expect("DER prefix");
    key.extend_from_slice(&[0x42; 96]);
    key
}

fn heap_out_of_bounds() -> Error {
    trap(Trap::new(
        ErrorCode::CanisterTrapped,
        "Canister trapped: heap out of bounds",
    ))
}

/// The mainnet threshold keys every curve and algorithm has, and the size of the subnet that holds them: `key_1`
/// on the 34-node fiduciary subnet, `test_key_1` on a 13-node one.
fn threshold_key_subnet_size(name: &[u8]) -> Option<u128> {
    match name {
        b"key_1" => Some(34),
        b"test_key_1" => Some(13),
        _ => None,
    }
}

/// `stable64_read`: copies stable memory to the heap (wasm32: heap addresses must fit in 32 bits).
fn stable_bytes(c: &mut Ctx, dst: i64, offset: i64, size: i64) -> Result<(), Error> {
    if dst as u64 > u32::MAX as u64 || size as u64 > u32::MAX as u64 {
        return Err(heap_out_of_bounds());
    }
    charge(c, size as u64)?;
    let mut buf = vec![0u8; size as usize];
    c.data().sys.stable.read(offset as u64, &mut buf).map_err(violation)?;
    write(c, dst as i32, &buf)
}

/// `stable64_write`: copies heap bytes to stable memory.
fn stable_write_from(c: &mut Ctx, offset: i64, src: i64, size: i64) -> Result<(), Error> {
    if src as u64 > u32::MAX as u64 || size as u64 > u32::MAX as u64 {
        return Err(heap_out_of_bounds());
    }
    charge(c, size as u64)?;
    let data = read(c, src as i32, size as i32)?;
    c.data_mut().sys.stable.write(offset as u64, &data).map_err(violation)
}

/// The linker with every `ic0` import; shared by all instances (it holds no store-bound items).
pub fn linker(engine: &wasmi::Engine) -> Linker<Env> {
    let mut l = Linker::<Env>::new(engine);
    macro_rules! def {
        ($name:literal, $f:expr) => {
            debug_assert!(IC0_IMPORTS.contains(&$name), "{} missing from IC0_IMPORTS", $name);
            l.func_wrap("ic0", $name, $f)
                .expect(concat!("define ic0.", $name));
        };
    }

    // Message arguments and caller.
    def!("msg_arg_data_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "msg_arg_data_size", I | U | RQ | NRQ | CQ | RY | F)?;
        Ok(c.data().msg.arg.len() as i32)
    });
    def!("msg_arg_data_copy", |mut c: Ctx,
                               dst: i32,
                               off: i32,
                               size: i32|
     -> Result<(), Error> {
        check(&mut c, "msg_arg_data_copy", I | U | RQ | NRQ | CQ | RY | F)?;
        let arg = std::mem::take(&mut c.data_mut().msg.arg);
        let r = copy_out(&mut c, "msg_arg_data_copy", &arg, dst, off, size);
        c.data_mut().msg.arg = arg;
        r
    });
    def!("msg_caller_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "msg_caller_size", ALL)?;
        Ok(c.data().msg.caller.map_or(0, |p| p.as_slice().len()) as i32)
    });
    def!("msg_caller_copy", |mut c: Ctx,
                             dst: i32,
                             off: i32,
                             size: i32|
     -> Result<(), Error> {
        check(&mut c, "msg_caller_copy", ALL)?;
        let caller = c.data().msg.caller.map(|p| p.as_slice().to_vec()).unwrap_or_default();
        copy_out(&mut c, "msg_caller_copy", &caller, dst, off, size)
    });
    // Caller info (ic0 1.1): this replica never attaches any.
    for name in ["msg_caller_info_data_size", "msg_caller_info_signer_size"] {
        l.func_wrap("ic0", name, move |mut c: Ctx| -> Result<i32, Error> {
            check(&mut c, name, ALL)?;
            Ok(0)
        })
        .expect("define");
    }
    for name in ["msg_caller_info_data_copy", "msg_caller_info_signer_copy"] {
        l.func_wrap(
            "ic0",
            name,
            move |mut c: Ctx, dst: i32, off: i32, size: i32| -> Result<(), Error> {
                check(&mut c, name, ALL)?;
                copy_out(&mut c, name, &[], dst, off, size)
            },
        )
        .expect("define");
    }

    // Responses.
    def!("msg_reject_code", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "msg_reject_code", RY | RT)?;
        Ok(c.data().msg.reject.0 as i32)
    });
    def!("msg_reject_msg_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "msg_reject_msg_size", RT)?;
        Ok(c.data().msg.reject.1.len() as i32)
    });
    def!("msg_reject_msg_copy", |mut c: Ctx,
                                 dst: i32,
                                 off: i32,
                                 size: i32|
     -> Result<(), Error> {
        check(&mut c, "msg_reject_msg_copy", RT)?;
        let msg = c.data().msg.reject.1.clone();
        copy_out(&mut c, "msg_reject_msg_copy", msg.as_bytes(), dst, off, size)
    });
    def!("msg_deadline", |mut c: Ctx| -> Result<i64, Error> {
        check(&mut c, "msg_deadline", U | RQ | NRQ | CQ | RY | RT)?;
        Ok(c.data().msg.deadline as i64)
    });
    const RESPOND: u16 = U | RQ | NRQ | CQ | RY | RT;
    def!("msg_reply_data_append", |mut c: Ctx,
                                   src: i32,
                                   size: i32|
     -> Result<(), Error> {
        check(&mut c, "msg_reply_data_append", RESPOND)?;
        if !c.data().msg.can_respond {
            return Err(violation("ic0.msg_reply_data_append: the call is already replied to"));
        }
        charge(&mut c, BYTE_TRANSMISSION_COST * size as u32 as u64)?;
        let data = read(&c, src, size)?;
        let buf = &mut c.data_mut().msg.reply_buf;
        if buf.len() + data.len() > MAX_REPLY_SIZE {
            return Err(violation(format!(
                "ic0.msg_reply_data_append: application payload size ({}) cannot be larger than {MAX_REPLY_SIZE}.",
                buf.len() + data.len()
            )));
        }
        buf.extend_from_slice(&data);
        Ok(())
    });
    def!("msg_reply", |mut c: Ctx| -> Result<(), Error> {
        check(&mut c, "msg_reply", RESPOND)?;
        let msg = &mut c.data_mut().msg;
        if !msg.can_respond {
            return Err(violation("ic0.msg_reply: the call is already replied to"));
        }
        msg.can_respond = false;
        msg.response = Some(Response::Reply(std::mem::take(&mut msg.reply_buf)));
        Ok(())
    });
    def!("msg_reject", |mut c: Ctx, src: i32, size: i32| -> Result<(), Error> {
        check(&mut c, "msg_reject", RESPOND)?;
        charge(&mut c, size as u32 as u64)?;
        if !c.data().msg.can_respond {
            return Err(violation("ic0.msg_reject: the call is already replied to"));
        }
        let text = String::from_utf8(read(&c, src, size)?)
            .map_err(|_| violation("ic0.msg_reject: the reject message is not valid UTF-8"))?;
        let msg = &mut c.data_mut().msg;
        msg.can_respond = false;
        msg.response = Some(Response::Reject(text));
        Ok(())
    });

    // Cycles.
    def!("msg_cycles_available128", |mut c: Ctx, dst: i32| -> Result<(), Error> {
        check(&mut c, "msg_cycles_available128", U | RQ | RY | RT)?;
        let m = &c.data().msg;
        let available = m.cycles_available - m.cycles_accepted;
        write_u128(&mut c, dst, available)
    });
    def!("msg_cycles_refunded128", |mut c: Ctx, dst: i32| -> Result<(), Error> {
        check(&mut c, "msg_cycles_refunded128", RY | RT)?;
        let refunded = c.data().msg.cycles_refunded;
        write_u128(&mut c, dst, refunded)
    });
    def!("msg_cycles_accept128", |mut c: Ctx,
                                  high: i64,
                                  low: i64,
                                  dst: i32|
     -> Result<(), Error> {
        check(&mut c, "msg_cycles_accept128", U | RQ | RY | RT)?;
        let env = c.data_mut();
        let amount = u128_of(high, low).min(env.msg.cycles_available - env.msg.cycles_accepted);
        env.msg.cycles_accepted += amount;
        env.sys.cycles += amount;
        write_u128(&mut c, dst, amount)
    });
    def!("cycles_burn128", |mut c: Ctx,
                            high: i64,
                            low: i64,
                            dst: i32|
     -> Result<(), Error> {
        check(&mut c, "cycles_burn128", I | G | U | RY | RT | C | T)?;
        let env = c.data_mut();
        let amount = u128_of(high, low).min(env.sys.cycles.saturating_sub(env.msg.freezing_threshold));
        env.sys.cycles -= amount;
        write_u128(&mut c, dst, amount)
    });

    // The canister itself.
    def!("canister_self_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "canister_self_size", ALL)?;
        Ok(c.data().msg.canister_id.as_slice().len() as i32)
    });
    def!("canister_self_copy", |mut c: Ctx,
                                dst: i32,
                                off: i32,
                                size: i32|
     -> Result<(), Error> {
        check(&mut c, "canister_self_copy", ALL)?;
        let id = c.data().msg.canister_id.as_slice().to_vec();
        copy_out(&mut c, "canister_self_copy", &id, dst, off, size)
    });
    def!("canister_cycle_balance128", |mut c: Ctx,
                                       dst: i32|
     -> Result<(), Error> {
        check(&mut c, "canister_cycle_balance128", ALL)?;
        let cycles = c.data().sys.cycles;
        write_u128(&mut c, dst, cycles)
    });
    def!("canister_liquid_cycle_balance128", |mut c: Ctx,
                                              dst: i32|
     -> Result<(), Error> {
        check(&mut c, "canister_liquid_cycle_balance128", ALL)?;
        let env = c.data();
        let liquid = env.sys.cycles.saturating_sub(env.msg.freezing_threshold);
        write_u128(&mut c, dst, liquid)
    });
    def!("canister_status", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "canister_status", ALL)?;
        Ok(c.data().msg.status as i32)
    });
    def!("canister_version", |mut c: Ctx| -> Result<i64, Error> {
        check(&mut c, "canister_version", ALL)?;
        Ok(c.data().msg.version as i64)
    });
    def!("subnet_self_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "subnet_self_size", ALL)?;
        Ok(c.data().msg.subnet_id.as_slice().len() as i32)
    });
    def!("subnet_self_copy", |mut c: Ctx,
                              dst: i32,
                              off: i32,
                              size: i32|
     -> Result<(), Error> {
        check(&mut c, "subnet_self_copy", ALL)?;
        let id = c.data().msg.subnet_id.as_slice().to_vec();
        copy_out(&mut c, "subnet_self_copy", &id, dst, off, size)
    });
    def!("subnet_self_node_count", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "subnet_self_node_count", ALL)?;
        Ok(SUBNET_NODES as i32)
    });

    // Inspect message.
    def!("msg_method_name_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "msg_method_name_size", F)?;
        Ok(c.data().msg.method_name.len() as i32)
    });
    def!("msg_method_name_copy", |mut c: Ctx,
                                  dst: i32,
                                  off: i32,
                                  size: i32|
     -> Result<(), Error> {
        check(&mut c, "msg_method_name_copy", F)?;
        let name = c.data().msg.method_name.clone();
        copy_out(&mut c, "msg_method_name_copy", name.as_bytes(), dst, off, size)
    });
    def!("accept_message", |mut c: Ctx| -> Result<(), Error> {
        check(&mut c, "accept_message", F)?;
        if std::mem::replace(&mut c.data_mut().msg.message_accepted, true) {
            return Err(violation("ic0.accept_message: the message was already accepted"));
        }
        Ok(())
    });

    // Outgoing calls.
    const CALL: u16 = U | CQ | RY | RT | T;
    def!("call_new", |mut c: Ctx,
                      callee_src: i32,
                      callee_size: i32,
                      name_src: i32,
                      name_size: i32,
                      reply_fun: i32,
                      reply_env: i32,
                      reject_fun: i32,
                      reject_env: i32|
     -> Result<(), Error> {
        check(&mut c, "call_new", CALL)?;
        if c.data().msg.kind == EntryKind::CompositeQuery {
            return Err(trap(Trap {
                code: None,
                text: "calls from composite queries are not supported by this replica (tests/replica)".into(),
                help: false,
            }));
        }
        charge(&mut c, callee_size as u32 as u64 + name_size as u32 as u64)?;
        let callee = Principal::try_from_slice(&read(&c, callee_src, callee_size)?)
            .map_err(|e| violation(format!("ic0.call_new: invalid callee: {e}")))?;
        let method = String::from_utf8(read(&c, name_src, name_size)?)
            .map_err(|_| violation("ic0.call_new: the method name is not valid UTF-8"))?;
        let env = c.data_mut();
        if let Some(discarded) = env.msg.pending_call.take() {
            env.sys.cycles += discarded.cycles;
        }
        env.msg.pending_call = Some(OutgoingCall {
            callee,
            method,
            payload: Vec::new(),
            cycles: 0,
            reply: (reply_fun as u32, reply_env as u32),
            reject: (reject_fun as u32, reject_env as u32),
            cleanup: None,
            timeout_seconds: None,
            transmission_prepay: 0,
            execution_prepay: 0,
        });
        Ok(())
    });
    def!("call_on_cleanup", |mut c: Ctx,
                             fun: i32,
                             env: i32|
     -> Result<(), Error> {
        check(&mut c, "call_on_cleanup", CALL)?;
        let call = pending(&mut c, "call_on_cleanup")?;
        if call.cleanup.is_some() {
            return Err(violation("ic0.call_on_cleanup: the cleanup callback is already set"));
        }
        call.cleanup = Some((fun as u32, env as u32));
        Ok(())
    });
    def!("call_data_append", |mut c: Ctx,
                              src: i32,
                              size: i32|
     -> Result<(), Error> {
        check(&mut c, "call_data_append", CALL)?;
        charge(&mut c, BYTE_TRANSMISSION_COST * size as u32 as u64)?;
        let data = read(&c, src, size)?;
        let call = pending(&mut c, "call_data_append")?;
        let total = call.method.len() + call.payload.len() + data.len();
        if total > MAX_REQUEST_SIZE {
            return Err(violation(format!(
                "ic0.call_data_append: application payload size ({total}) cannot be larger than {MAX_REQUEST_SIZE}."
            )));
        }
        call.payload.extend_from_slice(&data);
        Ok(())
    });
    def!("call_with_best_effort_response", |mut c: Ctx,
                                            timeout: i32|
     -> Result<(), Error> {
        check(&mut c, "call_with_best_effort_response", CALL)?;
        let call = pending(&mut c, "call_with_best_effort_response")?;
        if call.timeout_seconds.is_some() {
            return Err(violation(
                "ic0.call_with_best_effort_response: the timeout is already set",
            ));
        }
        call.timeout_seconds = Some((timeout as u32).min(MAX_CALL_TIMEOUT_SECONDS));
        Ok(())
    });
    def!("call_cycles_add128", |mut c: Ctx,
                                high: i64,
                                low: i64|
     -> Result<(), Error> {
        check(&mut c, "call_cycles_add128", U | RY | RT | T)?;
        let amount = u128_of(high, low);
        pending(&mut c, "call_cycles_add128")?;
        let env = c.data_mut();
        let threshold = env.msg.freezing_threshold;
        if env.sys.cycles.saturating_sub(threshold) < amount {
            let text = cycles::out_of_cycles(env.msg.canister_id, amount, env.sys.cycles, threshold, false);
            return Err(trap(Trap::without_help(ErrorCode::CanisterContractViolation, text)));
        }
        env.sys.cycles -= amount;
        env.msg.pending_call.as_mut().expect("checked").cycles += amount;
        Ok(())
    });
    // call_perform needs a free slot in the queue to the callee and withdraws the call's fees and prepayments
    // above the freezing threshold; if either fails, the call is not made, its attached cycles come back, and it
    // returns 2 (SYS_TRANSIENT, system_api.rs `push_output_request`).
    def!("call_perform", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "call_perform", CALL)?;
        let mut call =
            c.data_mut().msg.pending_call.take().ok_or_else(|| {
                violation("ic0.call_perform: no call is under construction (call ic0.call_new first)")
            })?;
        let env = c.data_mut();
        let made_now = env.msg.outgoing.iter().filter(|o| o.callee == call.callee).count();
        if env.msg.waiting_calls.get(&call.callee).copied().unwrap_or(0) + made_now >= QUEUE_CAPACITY {
            env.sys.cycles += call.cycles;
            return Ok(RejectCode::SysTransient as i32);
        }
        let fee = cycles::call_fee(call.method.len() + call.payload.len());
        call.transmission_prepay = cycles::response_transmission_prepay();
        call.execution_prepay = cycles::execution_cost(env.msg.callback_instruction_limit);
        let total = fee + call.transmission_prepay + call.execution_prepay;
        if env.sys.cycles.saturating_sub(env.msg.freezing_threshold) < total {
            env.sys.cycles += call.cycles;
            return Ok(RejectCode::SysTransient as i32);
        }
        env.sys.cycles -= total;
        env.msg.outgoing.push(call);
        Ok(0)
    });

    // Stable memory (`*` and `s`).
    const STABLE: u16 = ALL | S;
    def!("stable64_size", |mut c: Ctx| -> Result<i64, Error> {
        check(&mut c, "stable64_size", STABLE)?;
        Ok(c.data().sys.stable.size() as i64)
    });
    def!("stable64_grow", |mut c: Ctx, pages: i64| -> Result<i64, Error> {
        check(&mut c, "stable64_grow", STABLE)?;
        Ok(c.data_mut().sys.stable.grow(pages as u64))
    });
    def!("stable64_read", |mut c: Ctx,
                           dst: i64,
                           offset: i64,
                           size: i64|
     -> Result<(), Error> {
        check(&mut c, "stable64_read", STABLE)?;
        stable_bytes(&mut c, dst, offset, size)
    });
    def!("stable64_write", |mut c: Ctx,
                            offset: i64,
                            src: i64,
                            size: i64|
     -> Result<(), Error> {
        check(&mut c, "stable64_write", STABLE)?;
        stable_write_from(&mut c, offset, src, size)
    });
    // The 32-bit stable API works while stable memory is at most 4 GiB.
    const MAX_32BIT_PAGES: u64 = (1u64 << 32) / PAGE_SIZE;
    def!("stable_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "stable_size", STABLE)?;
        let size = c.data().sys.stable.size();
        if size > MAX_32BIT_PAGES {
            return Err(violation("32 bit stable memory api used on a memory larger than 4GB"));
        }
        Ok(size as i32)
    });
    def!("stable_grow", |mut c: Ctx, pages: i32| -> Result<i32, Error> {
        check(&mut c, "stable_grow", STABLE)?;
        let stable = &mut c.data_mut().sys.stable;
        if stable.size() + pages as u32 as u64 > MAX_32BIT_PAGES {
            return Ok(-1);
        }
        Ok(stable.grow(pages as u32 as u64) as i32)
    });
    def!("stable_read", |mut c: Ctx,
                         dst: i32,
                         offset: i32,
                         size: i32|
     -> Result<(), Error> {
        check(&mut c, "stable_read", STABLE)?;
        stable_bytes(&mut c, dst as u32 as i64, offset as u32 as i64, size as u32 as i64)
    });
    def!("stable_write", |mut c: Ctx,
                          offset: i32,
                          src: i32,
                          size: i32|
     -> Result<(), Error> {
        check(&mut c, "stable_write", STABLE)?;
        stable_write_from(&mut c, offset as u32 as i64, src as u32 as i64, size as u32 as i64)
    });

    // Certification.
    def!("root_key_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "root_key_size", I | G | U | RQ | RY | RT | C | T)?;
        Ok(c.data().msg.root_key.len() as i32)
    });
    def!("root_key_copy", |mut c: Ctx,
                           dst: i32,
                           off: i32,
                           size: i32|
     -> Result<(), Error> {
        check(&mut c, "root_key_copy", I | G | U | RQ | RY | RT | C | T)?;
        let key = c.data().msg.root_key.clone();
        copy_out(&mut c, "root_key_copy", &key, dst, off, size)
    });
    def!("certified_data_set", |mut c: Ctx,
                                src: i32,
                                size: i32|
     -> Result<(), Error> {
        check(&mut c, "certified_data_set", I | G | U | RY | RT | C | T)?;
        charge(&mut c, size as u32 as u64)?;
        if size as u32 > 32 {
            return Err(violation(
                "ic0.certified_data_set: certified data cannot be larger than 32 bytes",
            ));
        }
        let data = read(&c, src, size)?;
        c.data_mut().sys.certified_data = data;
        Ok(())
    });
    def!("data_certificate_present", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "data_certificate_present", ALL)?;
        Ok(0)
    });
    def!("data_certificate_size", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "data_certificate_size", NRQ | CQ)?;
        Err(violation(
            "ic0.data_certificate_size: no data certificate is available (this replica does not certify)",
        ))
    });
    def!("data_certificate_copy", |mut c: Ctx,
                                   _dst: i32,
                                   _off: i32,
                                   _size: i32|
     -> Result<(), Error> {
        check(&mut c, "data_certificate_copy", NRQ | CQ)?;
        Err(violation(
            "ic0.data_certificate_copy: no data certificate is available (this replica does not certify)",
        ))
    });

    // Time, timer, counters.
    def!("time", |mut c: Ctx| -> Result<i64, Error> {
        check(&mut c, "time", ALL)?;
        Ok(c.data().msg.time as i64)
    });
    def!("global_timer_set", |mut c: Ctx, ts: i64| -> Result<i64, Error> {
        check(&mut c, "global_timer_set", I | G | U | RY | RT | C | T)?;
        Ok(std::mem::replace(&mut c.data_mut().sys.global_timer, ts as u64) as i64)
    });
    def!("performance_counter", |mut c: Ctx, kind: i32| -> Result<i64, Error> {
        check(&mut c, "performance_counter", ALL | S)?;
        let used = instructions_used(&c);
        match kind {
            0 => Ok(used as i64),
            1 => Ok((c.data().msg.context_instructions + used) as i64),
            _ => Err(violation(format!(
                "ic0.performance_counter: unknown counter type {kind}"
            ))),
        }
    });
    def!("is_controller", |mut c: Ctx,
                           src: i32,
                           size: i32|
     -> Result<i32, Error> {
        check(&mut c, "is_controller", ALL | S)?;
        charge(&mut c, size as u32 as u64)?;
        let p = Principal::try_from_slice(&read(&c, src, size)?)
            .map_err(|e| violation(format!("ic0.is_controller: invalid principal: {e}")))?;
        Ok(c.data().msg.controllers.contains(&p) as i32)
    });
    def!("in_replicated_execution", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "in_replicated_execution", ALL | S)?;
        Ok(!matches!(
            c.data().msg.kind,
            EntryKind::Query | EntryKind::CompositeQuery | EntryKind::InspectMessage
        ) as i32)
    });

    // Costs: what a 13-node application subnet charges (see `crate::cycles`).
    def!("cost_call", |mut c: Ctx,
                       method_len: i64,
                       payload_len: i64,
                       dst: i32|
     -> Result<(), Error> {
        check(&mut c, "cost_call", ALL | S)?;
        let bytes = method_len as u64 as usize + payload_len as u64 as usize;
        let limit = c.data().msg.callback_instruction_limit;
        write_u128(&mut c, dst, cycles::cost_call(bytes, limit))
    });
    def!("cost_create_canister", |mut c: Ctx, dst: i32| -> Result<(), Error> {
        check(&mut c, "cost_create_canister", ALL | S)?;
        write_u128(&mut c, dst, cycles::CANISTER_CREATION_FEE)
    });
    def!("cost_http_request", |mut c: Ctx,
                               req: i64,
                               max_res: i64,
                               dst: i32|
     -> Result<(), Error> {
        check(&mut c, "cost_http_request", ALL | S)?;
        let n = SUBNET_NODES;
        let cost = (3_000_000 + 60_000 * n) * n + 400 * n * req as u64 as u128 + 800 * n * max_res as u64 as u128;
        write_u128(&mut c, dst, cost)
    });
    def!("cost_http_request_v2", |mut c: Ctx,
                                  _src: i32,
                                  size: i32,
                                  dst: i32|
     -> Result<(), Error> {
        check(&mut c, "cost_http_request_v2", ALL | S)?;
        let n = SUBNET_NODES;
        write_u128(
            &mut c,
            dst,
            (3_000_000 + 60_000 * n) * n + 400 * n * size as u32 as u128,
        )
    });
    // Threshold keys: 0 and the cost on success, 1 for an unknown curve or algorithm, 2 for a key name it does not
    // have (system_api.rs `ic0_cost_sign_with_ecdsa`); the cost is written only on success.
    for (name, variants) in [
        ("cost_sign_with_ecdsa", 1),
        ("cost_sign_with_schnorr", 2),
        ("cost_vetkd_derive_key", 1),
    ] {
        l.func_wrap(
            "ic0",
            name,
            move |mut c: Ctx, src: i32, size: i32, variant: i32, dst: i32| -> Result<i32, Error> {
                check(&mut c, name, ALL | S)?;
                let key = read(&c, src, size)?;
                if variant as u32 >= variants {
                    return Ok(1);
                }
                let Some(nodes) = threshold_key_subnet_size(&key) else {
                    return Ok(2);
                };
                write_u128(&mut c, dst, cycles::threshold_signature_fee(nodes))?;
                Ok(0)
            },
        )
        .expect("define");
    }

    // Environment variables (`*`), in name order; a missing index or name is a contract violation with the IC's
    // text (HypervisorError::EnvironmentVariable*), reported without an error-help line.
    fn env_name(c: &Ctx, index: i32) -> Result<String, Error> {
        let vars = &c.data().msg.env_vars;
        vars.keys().nth(index as u32 as usize).cloned().ok_or_else(|| {
            let text = format!(
                "Environment variable index {} is out of bounds. The number of environment variables is {}.",
                index as u32,
                vars.len()
            );
            trap(Trap::without_help(ErrorCode::CanisterContractViolation, text))
        })
    }
    fn env_value(c: &Ctx, src: i32, size: i32) -> Result<String, Error> {
        let name = String::from_utf8_lossy(&read(c, src, size)?).into_owned();
        c.data().msg.env_vars.get(&name).cloned().ok_or_else(|| {
            let text = format!("Environment variable {name} not found.");
            trap(Trap::without_help(ErrorCode::CanisterContractViolation, text))
        })
    }
    def!("env_var_count", |mut c: Ctx| -> Result<i32, Error> {
        check(&mut c, "env_var_count", ALL)?;
        Ok(c.data().msg.env_vars.len() as i32)
    });
    def!("env_var_name_size", |mut c: Ctx, index: i32| -> Result<i32, Error> {
        check(&mut c, "env_var_name_size", ALL)?;
        Ok(env_name(&c, index)?.len() as i32)
    });
    def!("env_var_name_copy", |mut c: Ctx,
                               index: i32,
                               dst: i32,
                               off: i32,
                               size: i32|
     -> Result<(), Error> {
        check(&mut c, "env_var_name_copy", ALL)?;
        let name = env_name(&c, index)?;
        copy_out(&mut c, "env_var_name_copy", name.as_bytes(), dst, off, size)
    });
    def!("env_var_name_exists", |mut c: Ctx,
                                 src: i32,
                                 size: i32|
     -> Result<i32, Error> {
        check(&mut c, "env_var_name_exists", ALL)?;
        charge(&mut c, size as u32 as u64)?;
        let name = String::from_utf8_lossy(&read(&c, src, size)?).into_owned();
        Ok(c.data().msg.env_vars.contains_key(&name) as i32)
    });
    def!("env_var_value_size", |mut c: Ctx,
                                src: i32,
                                size: i32|
     -> Result<i32, Error> {
        check(&mut c, "env_var_value_size", ALL)?;
        charge(&mut c, size as u32 as u64)?;
        Ok(env_value(&c, src, size)?.len() as i32)
    });
    def!("env_var_value_copy", |mut c: Ctx,
                                src: i32,
                                size: i32,
                                dst: i32,
                                off: i32,
                                len: i32|
     -> Result<(), Error> {
        check(&mut c, "env_var_value_copy", ALL)?;
        charge(&mut c, size as u32 as u64)?;
        let value = env_value(&c, src, size)?;
        copy_out(&mut c, "env_var_value_copy", value.as_bytes(), dst, off, len)
    });

    // Debugging.
    def!("debug_print", |mut c: Ctx, src: i32, size: i32| -> Result<(), Error> {
        check(&mut c, "debug_print", ALL | S)?;
        charge(&mut c, size as u32 as u64)?;
        let text = String::from_utf8_lossy(&read(&c, src, size)?).into_owned();
        c.data_mut().msg.logs.push(text);
        Ok(())
    });
    def!("trap", |mut c: Ctx, src: i32, size: i32| -> Result<(), Error> {
        check(&mut c, "trap", ALL | S)?;
        charge(&mut c, size as u32 as u64)?;
        let text = String::from_utf8_lossy(&read(&c, src, size)?).into_owned();
        Err(trap(Trap::new(
            ErrorCode::CanisterCalledTrap,
            format!("Canister called `ic0.trap` with message: '{text}'"),
        )))
    });
    l
}

fn pending<'a>(c: &'a mut Ctx, api: &str) -> Result<&'a mut OutgoingCall, Error> {
    c.data_mut().msg.pending_call.as_mut().ok_or_else(|| {
        violation(format!(
            "ic0.{api}: no call is under construction (call ic0.call_new first)"
        ))
    })
}
