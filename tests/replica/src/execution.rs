//! Running one entry point of a canister instance with an instruction limit, and rolling its effects back.

use std::sync::Arc;

use wasmi::{Engine, Global, Instance, Linker, Memory, MemoryType, Mutability, Ref, Store, Table, Val};

use crate::error::{ErrorCode, Trap};
use crate::heap::{Heap, Journal};
use crate::system_api::{self, Env, HostTrap, MsgCtx, SystemState};
use crate::wasm_module::{
    CompiledModule, GLOBAL_EXPORT_PREFIX, MEMORY_EXPORT, MEMORY_IMPORT, START_EXPORT, TABLE_EXPORT,
};

/// The wasm engine and the `ic0` linker, shared by all canisters.
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<Env>,
}

impl Runtime {
    pub fn new() -> Self {
        let mut config = wasmi::Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let linker = system_api::linker(&engine);
        Self { engine, linker }
    }
}

/// A canister's Wasm state: its heap in a mapping of its own (see [`Heap`]) and, while the canister runs, an
/// instance of the shared compiled module (its own store) built on that heap. An instance costs about as much
/// memory as the module has functions (wasmi keeps an entry per function and instance), so one that ran nothing
/// for [`SLEEP_AFTER_IDLE_ROUNDS`] rounds is dropped, its mutable globals saved, and made again when the canister
/// next runs; the heap stays where it is. The IC itself instantiates a module for every message.
pub struct Live {
    /// Declared before `heap`, whose mapping its memory uses, so that it is dropped first.
    wasm: Option<Wasm>,
    pub module: Arc<CompiledModule>,
    heap: Option<Heap>,
    /// While asleep (no `wasm`): the heap's size in bytes and the mutable globals' values.
    heap_len: usize,
    saved_globals: Vec<Val>,
    /// Rounds since the instance last ran, and whether it ran in this one.
    idle_rounds: u64,
    ran: bool,
}

/// The instance of a canister that is running.
pub struct Wasm {
    pub store: Store<Env>,
    pub instance: Instance,
    pub memory: Option<Memory>,
    pub table: Option<Table>,
    /// The mutable globals.
    pub globals: Vec<Global>,
}

/// Rounds without an execution after which a canister's instance is dropped (see [`Live`]).
pub const SLEEP_AFTER_IDLE_ROUNDS: u64 = 4;

/// Wasm pages are 64 KiB; a wasm32 memory has at most 65,536 of them.
const WASM_PAGE: usize = 64 * 1024;
const MAX_WASM_PAGES: usize = 65_536;

impl Live {
    /// Instantiates the module on a fresh heap. Data segments are applied, then the pages left all zeros are given
    /// back; `(start)` is not run (see [`Entry::Start`]).
    pub fn new(runtime: &Runtime, module: Arc<CompiledModule>) -> Result<Self, String> {
        let heap = match module.memory {
            Some((minimum, maximum)) => {
                let pages = maximum.map_or(MAX_WASM_PAGES, |m| (m as usize).min(MAX_WASM_PAGES));
                Some(Heap::reserve(pages.max(minimum as usize) * WASM_PAGE)?)
            }
            None => None,
        };
        let mut live = Self {
            wasm: None,
            module,
            heap,
            heap_len: 0,
            saved_globals: Vec::new(),
            idle_rounds: 0,
            ran: true,
        };
        let pages = live.module.memory.map_or(0, |(minimum, _)| minimum);
        live.wasm = Some(instantiate(runtime, &live.module, live.buffer(), pages)?);
        live.release_zero_pages();
        Ok(live)
    }

    /// The heap's mapping as the buffer of a Wasm memory.
    fn buffer(&self) -> Option<&'static mut [u8]> {
        // SAFETY: the memory made on it lives in the instance's store, which `Live` drops before `heap`, and there
        // is one instance at a time.
        self.heap.as_ref().map(|h| unsafe { h.buffer() })
    }

    /// The running instance, made again if it was dropped: a new instance of the module on the same heap (moved
    /// aside meanwhile, so that instantiation's writes do not reach it), with the saved globals.
    pub fn wake(&mut self, runtime: &Runtime) -> &mut Wasm {
        self.ran = true;
        if self.wasm.is_none() {
            let pages = (self.heap_len / WASM_PAGE) as u32;
            let buffer = self.buffer();
            let made = match &self.heap {
                Some(heap) => heap.aside(self.heap_len, || instantiate(runtime, &self.module, buffer, pages)),
                None => instantiate(runtime, &self.module, buffer, pages),
            };
            let mut wasm = made.expect("the module was instantiated before");
            for (g, v) in wasm.globals.iter().zip(std::mem::take(&mut self.saved_globals)) {
                g.set(&mut wasm.store, v).expect("a saved global's value");
            }
            self.wasm = Some(wasm);
        }
        self.wasm.as_mut().expect("awake")
    }

    /// Drops the instance if the module allows it (see [`CompiledModule::reinstantiable`]).
    fn sleep(&mut self) {
        if !self.module.reinstantiable {
            return;
        }
        if let Some(wasm) = self.wasm.take() {
            self.saved_globals = wasm.globals.iter().map(|g| g.get(&wasm.store)).collect();
            self.heap_len = wasm.memory.map_or(0, |m| m.data_size(&wasm.store));
        }
    }

    /// Called at the end of every round: drops the instance after [`SLEEP_AFTER_IDLE_ROUNDS`] rounds without
    /// an execution.
    pub fn end_round(&mut self) {
        if std::mem::take(&mut self.ran) {
            self.idle_rounds = 0;
        } else {
            self.idle_rounds += 1;
            if self.idle_rounds >= SLEEP_AFTER_IDLE_ROUNDS {
                self.sleep();
            }
        }
    }

    /// Drops the instance and the heap's pages from `len` on, and sets the globals the next instance gets (a
    /// rollback of a message that grew the heap). A table the module changed would not survive this; Rust and
    /// Motoko canisters do not change theirs.
    fn shrink(&mut self, len: usize, globals: Vec<Val>) {
        let current = self.heap().len();
        self.wasm = None;
        if let Some(heap) = &self.heap {
            heap.zero(len, current);
        }
        self.heap_len = len;
        self.saved_globals = globals;
    }

    /// Whether the instance is in memory.
    pub fn is_awake(&self) -> bool {
        self.wasm.is_some()
    }

    pub fn heap(&self) -> &[u8] {
        match (&self.wasm, &self.heap) {
            (Some(w), _) => w.memory.map_or(&[], |m| m.data(&w.store)),
            (None, Some(h)) => h.bytes(self.heap_len),
            (None, None) => &[],
        }
    }

    pub fn heap_size(&self) -> u64 {
        self.heap().len() as u64
    }

    /// Gives back the heap's pages that hold only zeros (after an install, Rust canisters leave most of their
    /// 1 MiB stack untouched).
    pub fn release_zero_pages(&self) {
        if let Some(heap) = &self.heap {
            heap.release_zero_pages(0, self.heap().len());
        }
    }

    /// Bytes of the heap in RAM (the rest were never written, or held only zeros after an install).
    pub fn heap_resident_bytes(&self) -> u64 {
        self.heap
            .as_ref()
            .map_or(0, |h| h.resident_bytes(self.heap().len()) as u64)
    }

    /// Starts journaling the heap's pages (see [`Heap::journal`]).
    fn journal(&self) -> Option<Journal> {
        self.heap.as_ref().map(|h| h.journal(self.heap().len()))
    }

    /// The number of mutable globals.
    pub fn global_count(&self) -> usize {
        match &self.wasm {
            Some(w) => w.globals.len(),
            None => self.saved_globals.len(),
        }
    }

    /// The mutable globals' values.
    pub fn globals(&self) -> Vec<Val> {
        match &self.wasm {
            Some(w) => w.globals.iter().map(|g| g.get(&w.store)).collect(),
            None => self.saved_globals.clone(),
        }
    }

    /// Replaces heap and globals of a running instance; grows the memory if needed (it cannot shrink: see
    /// [`Snapshot::restore`]). Only the 4 KiB pages that differ are written, so pages that stay zero cost nothing.
    pub fn set_heap_and_globals(&mut self, runtime: &Runtime, heap: &[u8], globals: &[Val]) -> Result<(), String> {
        let wasm = self.wake(runtime);
        if let Some(memory) = wasm.memory {
            let current = memory.data_size(&wasm.store);
            if heap.len() > current {
                let pages = (heap.len() - current) as u64 / WASM_PAGE as u64;
                memory
                    .grow(&mut wasm.store, pages)
                    .map_err(|e| format!("cannot grow memory: {e}"))?;
            }
            let data = memory.data_mut(&mut wasm.store);
            for (dst, src) in data[..heap.len()].chunks_mut(4096).zip(heap.chunks(4096)) {
                if dst != src {
                    dst.copy_from_slice(src);
                }
            }
        }
        for (g, v) in wasm.globals.iter().zip(globals) {
            g.set(&mut wasm.store, v.clone()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A new instance of `module` whose memory, of `pages` Wasm pages, is made on `buffer`.
fn instantiate(
    runtime: &Runtime,
    module: &CompiledModule,
    buffer: Option<&'static mut [u8]>,
    pages: u32,
) -> Result<Wasm, String> {
    let invalid = |e: wasmi::Error| format!("Wasm module is not valid: {e}");
    let mut store = Store::new(&runtime.engine, Env::default());
    let mut linker = runtime.linker.clone();
    if let (Some((_, maximum)), Some(buffer)) = (module.memory, buffer) {
        let memory = Memory::new_static(&mut store, MemoryType::new(pages, maximum), buffer).map_err(invalid)?;
        linker
            .define(MEMORY_IMPORT.0, MEMORY_IMPORT.1, memory)
            .map_err(|e| e.to_string())?;
    }
    let instance = linker
        .instantiate_and_start(&mut store, &module.module)
        .map_err(invalid)?;
    let memory = instance.get_memory(&store, MEMORY_EXPORT);
    let table = instance.get_table(&store, TABLE_EXPORT);
    let globals = (0..module.global_count)
        .filter_map(|i| instance.get_global(&store, &format!("{GLOBAL_EXPORT_PREFIX}{i}")))
        .filter(|g| g.ty(&store).mutability() == Mutability::Var)
        .collect();
    store.data_mut().memory = memory;
    Ok(Wasm {
        store,
        instance,
        memory,
        table,
        globals,
    })
}

/// What to run.
#[derive(Clone, Debug)]
pub enum Entry {
    /// An exported function such as `canister_update foo`.
    Export(String),
    /// The module's `(start)` function.
    Start,
    /// A callback: function `fun` of the module's table, called with `env` (spec "Callbacks").
    Callback { fun: u32, env: u32 },
}

impl Entry {
    pub fn name(&self) -> String {
        match self {
            Entry::Export(name) => name.clone(),
            Entry::Start => "(start)".into(),
            Entry::Callback { fun, .. } => format!("callback #{fun}"),
        }
    }
}

pub struct RunResult {
    pub result: Result<(), Trap>,
    pub instructions: u64,
    pub msg: MsgCtx,
}

/// Runs `entry` with at most `fuel` instructions. Applies no rollback: see [`Snapshot`].
pub fn run(
    runtime: &Runtime,
    live: &mut Live,
    sys: &mut SystemState,
    mut msg: MsgCtx,
    entry: &Entry,
    fuel: u64,
    limit: u64,
) -> RunResult {
    msg.fuel_limit = fuel;
    let live = live.wake(runtime);
    {
        let env = live.store.data_mut();
        std::mem::swap(&mut env.sys, sys);
        env.msg = msg;
    }
    live.store.set_fuel(fuel).expect("fuel metering is enabled");
    let result = call(live, entry).map_err(|e| describe(e, limit));
    let instructions = fuel - live.store.get_fuel().expect("fuel metering is enabled");
    let env = live.store.data_mut();
    std::mem::swap(&mut env.sys, sys);
    let msg = std::mem::take(&mut env.msg);
    RunResult {
        result,
        instructions,
        msg,
    }
}

fn call(live: &mut Wasm, entry: &Entry) -> Result<(), wasmi::Error> {
    let (func, args) = match entry {
        Entry::Export(name) => (live.instance.get_func(&live.store, name), vec![]),
        Entry::Start => (live.instance.get_func(&live.store, START_EXPORT), vec![]),
        Entry::Callback { fun, env } => {
            let func = live
                .table
                .and_then(|t| t.get(&live.store, *fun as u64))
                .and_then(|r| match r {
                    Ref::Func(f) => f.val().copied(),
                    _ => None,
                });
            (func, vec![Val::I32(*env as i32)])
        }
    };
    let func = func.ok_or_else(|| {
        let text = match entry {
            Entry::Callback { fun, .. } => {
                format!("Canister requested to invoke a non-existent Wasm function {fun} from table 0")
            }
            other => format!("Canister has no {} function", other.name()),
        };
        wasmi::Error::host(HostTrap(Trap::new(ErrorCode::CanisterFunctionNotFound, text)))
    })?;
    func.call(&mut live.store, &args, &mut [])
}

/// The IC's description of a trap (`HypervisorError`; trap codes as wasmtime words them).
fn describe(e: wasmi::Error, limit: u64) -> Trap {
    use wasmi::TrapCode;
    if let Some(t) = e.downcast_ref::<HostTrap>() {
        return t.0.clone();
    }
    let trapped = |what: &str| Trap::new(ErrorCode::CanisterTrapped, format!("Canister trapped: {what}"));
    match e.as_trap_code() {
        Some(TrapCode::OutOfFuel) => Trap::new(
            ErrorCode::CanisterInstructionLimitExceeded,
            format!("Canister exceeded the limit of {limit} instructions for single message execution."),
        ),
        Some(TrapCode::UnreachableCodeReached) => trapped("unreachable"),
        Some(TrapCode::MemoryOutOfBounds) => trapped("heap out of bounds"),
        Some(TrapCode::IntegerDivisionByZero) => trapped("integer division by 0"),
        Some(TrapCode::IntegerOverflow) => trapped("integer overflow"),
        Some(TrapCode::StackOverflow) => trapped("stack overflow"),
        Some(TrapCode::TableOutOfBounds) => trapped("table out of bounds"),
        Some(TrapCode::IndirectCallToNull) => trapped("indirect call to null"),
        Some(TrapCode::BadSignature) => trapped("indirect call signature mismatch"),
        Some(code) => trapped(&code.to_string()),
        None => trapped(&e.to_string()),
    }
}

/// The state a message execution can change, saved so that a trap can undo it (spec: a trapping message has no
/// effect except the cycles it used). Heap and stable memory keep the old contents of the pages the message writes,
/// and only of those; the rest is copied.
pub struct Snapshot {
    journal: Option<Journal>,
    heap_size: u64,
    globals: Vec<Val>,
    global_timer: u64,
    certified_data: Vec<u8>,
    cycles: u128,
}

impl Snapshot {
    /// Wakes the instance (see [`Live::wake`]) and starts journaling its heap.
    pub fn take(runtime: &Runtime, live: &mut Live, sys: &mut SystemState) -> Self {
        live.wake(runtime);
        sys.stable.begin();
        Self {
            journal: live.journal(),
            heap_size: live.heap_size(),
            globals: live.globals(),
            global_timer: sys.global_timer,
            certified_data: sys.certified_data.clone(),
            cycles: sys.cycles,
        }
    }

    /// Keeps the changes. Pages the heap grew by that hold only zeros are given back (wasmi writes zeros to them).
    pub fn commit(self, live: &Live, sys: &mut SystemState) {
        if let Some(journal) = self.journal {
            journal.commit();
        }
        sys.stable.commit();
        if let Some(heap) = &live.heap {
            let size = live.heap().len();
            if size > self.heap_size as usize {
                heap.release_zero_pages(self.heap_size as usize, size);
            }
        }
    }

    /// Restores the saved state. Wasm memories cannot shrink, so if the heap grew the instance is dropped, the
    /// pages it grew by are given back, and the next execution makes a new one on the restored heap.
    pub fn restore(self, live: &mut Live, sys: &mut SystemState) {
        sys.stable.rollback();
        sys.global_timer = self.global_timer;
        sys.certified_data = self.certified_data;
        sys.cycles = self.cycles;
        if let Some(journal) = self.journal {
            journal.rollback();
        }
        if live.heap_size() != self.heap_size {
            live.shrink(self.heap_size as usize, self.globals);
        } else if let Some(wasm) = &mut live.wasm {
            for (g, v) in wasm.globals.iter().zip(self.globals) {
                g.set(&mut wasm.store, v).expect("restore a global");
            }
        } else {
            live.saved_globals = self.globals;
        }
    }
}
