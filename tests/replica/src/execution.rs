//! Running one entry point of a canister instance with an instruction limit, and rolling its effects back.

use std::sync::Arc;

use wasmi::{Engine, Global, Instance, Linker, Memory, Mutability, Ref, Store, Table, Val};

use crate::error::{ErrorCode, Trap};
use crate::system_api::{self, Env, HostTrap, MsgCtx, SystemState};
use crate::wasm_module::{CompiledModule, GLOBAL_EXPORT_PREFIX, MEMORY_EXPORT, START_EXPORT, TABLE_EXPORT};

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

/// A canister's live wasm instance: its own store, created from the shared compiled module.
pub struct Live {
    pub store: Store<Env>,
    pub instance: Instance,
    pub memory: Option<Memory>,
    pub table: Option<Table>,
    pub globals: Vec<Global>,
    pub module: Arc<CompiledModule>,
}

impl Live {
    /// Instantiates the module. Data segments are applied; `(start)` is not run (see [`Entry::Start`]).
    pub fn new(runtime: &Runtime, module: Arc<CompiledModule>) -> Result<Self, String> {
        let mut store = Store::new(&runtime.engine, Env::default());
        let instance = runtime
            .linker
            .instantiate_and_start(&mut store, &module.module)
            .map_err(|e| format!("Wasm module is not valid: {e}"))?;
        let memory = instance.get_memory(&store, MEMORY_EXPORT);
        let table = instance.get_table(&store, TABLE_EXPORT);
        let globals = (0..module.global_count)
            .filter_map(|i| instance.get_global(&store, &format!("{GLOBAL_EXPORT_PREFIX}{i}")))
            .filter(|g| g.ty(&store).mutability() == Mutability::Var)
            .collect();
        store.data_mut().memory = memory;
        Ok(Self {
            store,
            instance,
            memory,
            table,
            globals,
            module,
        })
    }

    pub fn heap(&self) -> &[u8] {
        self.memory.map_or(&[], |m| m.data(&self.store))
    }

    pub fn heap_size(&self) -> u64 {
        self.heap().len() as u64
    }

    pub fn globals(&self) -> Vec<Val> {
        self.globals.iter().map(|g| g.get(&self.store)).collect()
    }

    /// Replaces heap and globals; grows the memory if needed (it cannot shrink: see [`Snapshot::restore`]).
    pub fn set_heap_and_globals(&mut self, heap: &[u8], globals: &[Val]) -> Result<(), String> {
        if let Some(memory) = self.memory {
            let current = memory.data_size(&self.store);
            if heap.len() > current {
                let pages = (heap.len() - current) as u64 / 65536;
                memory
                    .grow(&mut self.store, pages)
                    .map_err(|e| format!("cannot grow memory: {e}"))?;
            }
            memory.data_mut(&mut self.store)[..heap.len()].copy_from_slice(heap);
        }
        for (g, v) in self.globals.iter().zip(globals) {
            g.set(&mut self.store, v.clone()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
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
pub fn run(live: &mut Live, sys: &mut SystemState, mut msg: MsgCtx, entry: &Entry, fuel: u64, limit: u64) -> RunResult {
    msg.fuel_limit = fuel;
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

fn call(live: &mut Live, entry: &Entry) -> Result<(), wasmi::Error> {
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
/// effect except the cycles it used). The heap is copied whole; stable memory journals pages on first write.
pub struct Snapshot {
    heap: Vec<u8>,
    globals: Vec<Val>,
    global_timer: u64,
    certified_data: Vec<u8>,
    cycles: u128,
}

impl Snapshot {
    pub fn take(live: &Live, sys: &mut SystemState) -> Self {
        sys.stable.begin();
        Self {
            heap: live.heap().to_vec(),
            globals: live.globals(),
            global_timer: sys.global_timer,
            certified_data: sys.certified_data.clone(),
            cycles: sys.cycles,
        }
    }

    pub fn commit(self, sys: &mut SystemState) {
        sys.stable.commit();
    }

    /// Restores the saved state. Wasm memories cannot shrink, so if the heap grew the instance is rebuilt from the
    /// module (without running `(start)`) and the saved heap and globals are written into it.
    pub fn restore(self, runtime: &Runtime, live: &mut Live, sys: &mut SystemState) {
        sys.stable.rollback();
        sys.global_timer = self.global_timer;
        sys.certified_data = self.certified_data;
        sys.cycles = self.cycles;
        if live.heap_size() != self.heap.len() as u64 {
            *live = Live::new(runtime, live.module.clone()).expect("module instantiated before");
        }
        live.set_heap_and_globals(&self.heap, &self.globals)
            .expect("restore snapshot");
    }
}
