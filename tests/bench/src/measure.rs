//! The steps every measurement shares: install a canister on a fresh replica, fill it with data, upgrade it, and
//! add up the instructions of that one install_code. Only the small [`Kind`] methods differ between canisters.

use std::time::Instant;

use candid::{Decode, Encode, Principal};
use replica::{Replica, ReplicaConfig, STABLE_PAGE_SIZE};
use sha2::{Digest, Sha256};
use shared::child::{ChildError, ChildInitArg, ChildUpgradeArg, FillArg, MAX_FILL_COUNT, MAX_VALUE_BYTES};

use crate::results::Series;

pub const MIB: u64 = 1 << 20;
/// Bytes per stored value: the child's largest (`MAX_VALUE_BYTES`).
pub const VALUE_SIZE: u32 = MAX_VALUE_BYTES as u32;
/// Values written per fill call: the child's most (`MAX_FILL_COUNT`), about 4 MiB per call.
pub const VALUES_PER_CALL: u32 = MAX_FILL_COUNT;
/// The IC's instruction limit for one install_code: pre_upgrade + start + post_upgrade together.
pub const IC_INSTALL_LIMIT: u64 = 300_000_000_000;
/// The install_code limit the benchmark gives the replica, so that costs past the IC's limit can be measured.
pub const MEASURING_INSTALL_LIMIT: u64 = 100 * IC_INSTALL_LIMIT;

/// The executions of one upgrade, in the order the replica runs them (all within one install_code).
pub const UPGRADE_PHASES: [&str; 3] = ["canister_pre_upgrade", "(start)", "canister_post_upgrade"];

/// Controller of every measured canister, and the sender of every call.
fn controller() -> Principal {
    Principal::from_slice(&[7; 29])
}

/// A module built by `scripts/build.sh`, read from the workspace's `wasm/` directory.
pub struct Module {
    pub info: ModuleInfo,
    /// The `.wasm.gz` bytes, as installed.
    pub bytes: Vec<u8>,
}

/// What identifies a [`Module`] in the results.
#[derive(Clone, Debug)]
pub struct ModuleInfo {
    /// Path under `wasm/`.
    pub path: String,
    pub sha256_hex: String,
    pub gz_bytes: usize,
}

impl Module {
    /// Reads `wasm/{path}`; panics with `build_command` as the fix if it is missing.
    pub fn read(path: &str, build_command: &str) -> Self {
        Self::try_read(path).unwrap_or_else(|e| panic!("cannot read wasm/{path}: {e}; run {build_command}"))
    }

    /// Reads `wasm/{path}`, if it can.
    pub fn read_optional(path: &str) -> Option<Self> {
        Self::try_read(path).ok()
    }

    fn try_read(path: &str) -> std::io::Result<Self> {
        let wasm_dir = fleet::wasms::repo_root().join("wasm");
        let bytes = std::fs::read(wasm_dir.join(path))?;
        let info = ModuleInfo {
            path: path.to_string(),
            sha256_hex: hex::encode(Sha256::digest(&bytes)),
            gz_bytes: bytes.len(),
        };
        Ok(Self { info, bytes })
    }
}

/// The canister interfaces the benchmark knows how to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Our child (`child.did`): members in stable structures, filled with `admin_fill`.
    Child,
    /// The `heap_baseline` fixture: a heap map serialized with `stable_save` in `pre_upgrade`, filled with `fill`.
    HeapBaseline,
}

impl Kind {
    fn init_arg(self) -> Vec<u8> {
        match self {
            Kind::Child => Encode!(&ChildInitArg { parent: controller() }),
            Kind::HeapBaseline => Encode!(),
        }
        .expect("encode init arg")
    }

    fn upgrade_arg(self) -> Vec<u8> {
        match self {
            Kind::Child => Encode!(&Some(ChildUpgradeArg::default())),
            Kind::HeapBaseline => Encode!(),
        }
        .expect("encode upgrade arg")
    }

    /// One fill call writing `count` new values of [`VALUE_SIZE`] bytes; `call` numbers the calls of a canister.
    fn fill_call(self, r: &Replica, id: Principal, call: u32, count: u32) {
        match self {
            Kind::Child => {
                let arg = FillArg {
                    count,
                    value_size: VALUE_SIZE,
                    prefix: format!("fill{call:05}-"),
                };
                let reply: Result<u64, ChildError> =
                    r.update(id, controller(), "admin_fill", &arg).expect("admin_fill call");
                reply.unwrap_or_else(|e| panic!("admin_fill: {e}"));
            }
            Kind::HeapBaseline => {
                let reply = r
                    .update_call(id, controller(), "fill", Encode!(&count, &VALUE_SIZE).unwrap())
                    .expect("fill call");
                Decode!(&reply, u64).expect("fill reply");
            }
        }
    }

    /// Bytes of values the canister holds, by its own account.
    fn stored_bytes(self, r: &Replica, id: Principal) -> u64 {
        match self {
            Kind::Child => query_u64(r, id, "member_count") * u64::from(VALUE_SIZE),
            Kind::HeapBaseline => query_u64(r, id, "stored_bytes"),
        }
    }
}

/// Calls a query without arguments that returns a `nat64`.
fn query_u64(r: &Replica, id: Principal, method: &str) -> u64 {
    let reply = r
        .query_call(id, controller(), method, Encode!().unwrap())
        .unwrap_or_else(|e| panic!("{method}: {e}"));
    Decode!(&reply, u64).unwrap_or_else(|e| panic!("{method} reply: {e}"))
}

/// One upgrade to measure: a canister of `kind` running `from`, upgraded to `to`.
pub struct Scenario<'a> {
    pub kind: Kind,
    pub from: &'a Module,
    pub to: &'a Module,
}

/// What one upgrade of a canister holding `data_bytes` of values cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeCost {
    pub data_bytes: u64,
    /// Instructions (wasmi fuel) of each of [`UPGRADE_PHASES`]; 0 for a phase that did not run.
    pub phase_instructions: [u64; 3],
    /// Stable memory size before the upgrade.
    pub stable_memory_bytes: u64,
    /// Wasm heap size before the upgrade.
    pub heap_bytes: u64,
    /// Set if the upgrade failed: then the replica rolled it back, and the instructions are those used until the trap.
    pub trap: Option<Trap>,
}

/// The phase of a failed upgrade that trapped, and the trap message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trap {
    pub phase: String,
    pub message: String,
}

impl UpgradeCost {
    /// The whole install_code: pre_upgrade + start + post_upgrade.
    pub fn instructions(&self) -> u64 {
        self.phase_instructions.iter().sum()
    }

    pub fn succeeded(&self) -> bool {
        self.trap.is_none()
    }
}

/// Installs `scenario.from` on a fresh replica, fills it with `data_bytes` of values (a multiple of
/// [`VALUE_SIZE`]), stops it as the parent does, upgrades it to `scenario.to`, starts it, and checks that the data
/// is all there (kept by the upgrade, or restored by the rollback of a failed one).
pub fn measure_upgrade(scenario: &Scenario, data_bytes: u64) -> UpgradeCost {
    assert_eq!(
        data_bytes % u64::from(VALUE_SIZE),
        0,
        "data size must be a multiple of {VALUE_SIZE} bytes"
    );
    let kind = scenario.kind;
    let r = Replica::with_config(ReplicaConfig {
        install_instruction_limit: MEASURING_INSTALL_LIMIT,
        ..Default::default()
    });
    let id = r.create_canister_with_settings(Some(controller()), None);
    r.install_canister(id, scenario.from.bytes.clone(), kind.init_arg(), Some(controller()));

    let values = u32::try_from(data_bytes / u64::from(VALUE_SIZE)).expect("data size");
    for (call, first) in (0..values).step_by(VALUES_PER_CALL as usize).enumerate() {
        kind.fill_call(&r, id, call as u32, VALUES_PER_CALL.min(values - first));
    }
    assert_eq!(
        kind.stored_bytes(&r, id),
        data_bytes,
        "{kind:?} holds the data before the upgrade"
    );

    r.stop_canister(id, Some(controller())).expect("stop_canister");
    let stable_memory_bytes = r.stable_memory_pages(id).0 * STABLE_PAGE_SIZE;
    let heap_bytes = r.heap_size(id);
    let executions_before = r.executions().len();
    let upgrade = r.upgrade_canister(id, scenario.to.bytes.clone(), kind.upgrade_arg(), Some(controller()));
    let mut phase_instructions = [0; 3];
    let mut trap = None;
    for e in r
        .executions()
        .iter()
        .skip(executions_before)
        // Compilation is charged per module, the same at every data size: the phases are what the code does.
        .filter(|e| e.canister == id && e.entry != "(compilation)")
    {
        let phase = UPGRADE_PHASES.iter().position(|p| *p == e.entry);
        let phase = phase.unwrap_or_else(|| panic!("unexpected execution {e:?} during the upgrade"));
        phase_instructions[phase] += e.instructions;
        if let Err(message) = &e.outcome {
            trap = Some(Trap {
                phase: e.entry.clone(),
                message: message.clone(),
            });
        }
    }
    match (&upgrade, &trap) {
        (Ok(()), None) | (Err(_), Some(_)) => {}
        (Err(reject), None) => {
            panic!("upgrading {kind:?} holding {data_bytes} bytes was rejected: {reject}")
        }
        (Ok(()), Some(t)) => panic!("the upgrade of {kind:?} succeeded although {} trapped", t.phase),
    }

    r.start_canister(id, Some(controller())).expect("start_canister");
    assert_eq!(
        kind.stored_bytes(&r, id),
        data_bytes,
        "{kind:?} has all its data after the upgrade"
    );
    UpgradeCost {
        data_bytes,
        phase_instructions,
        stable_memory_bytes,
        heap_bytes,
        trap,
    }
}

/// Measures `scenario` at each size (MiB), printing progress to stderr.
pub fn measure_series(label: &str, scenario: &Scenario, sizes_mib: &[u64]) -> Series {
    let costs = sizes_mib
        .iter()
        .map(|&mib| {
            let started = Instant::now();
            let cost = measure_upgrade(scenario, mib * MIB);
            let outcome = cost
                .trap
                .as_ref()
                .map_or(String::new(), |t| format!(", trapped in {}: {}", t.phase, t.message));
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "{label}, {mib} MiB: {} instructions{outcome} ({seconds:.1} s)",
                cost.instructions()
            );
            cost
        })
        .collect();
    Series {
        label: label.to_string(),
        from: scenario.from.info.clone(),
        to: scenario.to.info.clone(),
        costs,
    }
}
