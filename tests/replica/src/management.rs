//! The management canister `aaaaa-aa` (spec "The IC management canister"). Its requests are handled at the start
//! of a round; canister calls reach it through message routing (the round after they are made), and its responses
//! reach a canister caller one round after it handled them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use candid::{CandidType, Nat, Principal};
use ic_management_canister_types as ic00;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::canister::{Canister, CanisterSnapshot, CanisterStatus, Change, Origin, PendingStop, CHUNK_BYTES};
use crate::cycles;
use crate::error::{ErrorCode, Reject, RejectCode, Trap};
use crate::execution::{Entry, Live, Snapshot};
use crate::scheduler::{error_from, Exec, LongInstallStart, Request, Rollback, State};
use crate::system_api::{EntryKind, SystemState};
use crate::wasm_module::{self, CompiledModule};
use crate::ManagementCall;

/// Spec "upload_chunk": chunks are at most 1 MiB; the store holds at most 100 of them (facts §4).
const MAX_CHUNK_SIZE: usize = 1024 * 1024;
const MAX_CHUNKS: usize = 100;
/// Snapshots per canister (facts §4).
const MAX_SNAPSHOTS: usize = 10;

fn decode<T: DeserializeOwned + CandidType>(bytes: &[u8]) -> Result<T, Reject> {
    candid::decode_one(bytes).map_err(|e| {
        Reject::of(
            ErrorCode::InvalidManagementPayload,
            format!("Error decoding candid: {e}"),
        )
    })
}

fn encode<T: CandidType>(value: &T) -> Vec<u8> {
    candid::encode_one(value).expect("encode management result")
}

fn unit() -> Vec<u8> {
    candid::encode_args(()).expect("encode ()")
}

/// install_code and install_chunked_code: at most one runs across several rounds at a time.
pub fn is_install(method: &str) -> bool {
    method == "install_code" || method == "install_chunked_code"
}

/// The outcome of an install_code: its result and the instructions it used (every phase, trapped or not).
pub struct InstallOutcome {
    pub result: Result<(), Reject>,
    pub instructions: u64,
}

impl InstallOutcome {
    fn refused(reject: Reject) -> Self {
        Self {
            result: Err(reject),
            instructions: 0,
        }
    }
}

/// The canister a management call is about, for the call record and fault injection.
pub fn target_of(method: &str, payload: &[u8]) -> Option<Principal> {
    #[derive(Deserialize, CandidType)]
    struct ById {
        canister_id: Principal,
    }
    #[derive(Deserialize, CandidType)]
    struct ByTarget {
        target_canister: Principal,
    }
    if method == "install_chunked_code" {
        return candid::decode_one::<ByTarget>(payload).ok().map(|t| t.target_canister);
    }
    candid::decode_one::<ById>(payload).ok().map(|t| t.canister_id)
}

fn not_found(id: Principal) -> Reject {
    Reject::new(RejectCode::DestinationInvalid, format!("Canister {id} not found")).with_error_code("IC0301")
}

pub fn is_canister_id(p: &Principal) -> bool {
    let b = p.as_slice();
    b.len() == 10 && b[8] == 1 && b[9] == 1
}

fn change_origin(caller: Principal, version: Option<u64>) -> ic00::ChangeOrigin {
    if is_canister_id(&caller) {
        ic00::ChangeOrigin::FromCanister(ic00::FromCanisterRecord {
            canister_id: caller,
            canister_version: version,
        })
    } else {
        ic00::ChangeOrigin::FromUser(ic00::FromUserRecord { user_id: caller })
    }
}

fn nat_u128(n: &Nat) -> u128 {
    u128::try_from(n.0.clone()).unwrap_or(u128::MAX)
}

impl State {
    /// Handles a request to `aaaaa-aa`, records it, and responds (except `stop_canister`, which may wait, and an
    /// install that needs more than one slice). Returns the instructions it used in this round.
    pub fn handle_management(&mut self, req: Request) -> u64 {
        let target = target_of(&req.method, &req.payload);
        let record = self.management_calls.len();
        self.management_calls.push(ManagementCall {
            caller: req.sender,
            method: req.method.clone(),
            target,
            round: self.round + 1,
            outcome: None,
        });
        let mut refund = req.cycles;
        let caller = req.sender;
        let injected = target.and_then(|t| self.take_injected_reject(t, &req.method, &req.origin));
        let mut instructions = 0;
        let result = match injected {
            Some(reject) => Err(reject),
            None => match req.method.as_str() {
                "stop_canister" => match decode::<ic00::CanisterIdRecord>(&req.payload)
                    .and_then(|a| self.stop_canister(caller, a.canister_id, req.origin.clone(), record))
                {
                    Ok(()) => return 0,
                    Err(reject) => Err(reject),
                },
                method if is_install(method) => {
                    let outcome = self.install_request(caller, method, &req.payload);
                    instructions = outcome.instructions;
                    outcome.result.map(|()| unit())
                }
                "create_canister" => decode::<ic00::CreateCanisterArgs>(&req.payload).and_then(|a| {
                    // The creation fee comes out of the attached cycles; the rest is the new canister's balance.
                    let fee = cycles::CANISTER_CREATION_FEE;
                    if req.cycles < fee {
                        return Err(Reject::of(
                            ErrorCode::InsufficientCyclesForCreateCanister,
                            format!(
                                "Creating a canister requires a fee of {fee} that is deducted from the canister's \
                                 initial balance but only {} cycles were received with the create_canister request.",
                                req.cycles
                            ),
                        ));
                    }
                    refund = 0;
                    let cycles = req.cycles - fee;
                    let id = self
                        .create_canister_with_id(caller, a.settings, cycles, None, a.sender_canister_version)
                        .expect("a fresh id is free");
                    Ok(encode(&ic00::CanisterIdRecord { canister_id: id }))
                }),
                "deposit_cycles" => decode::<ic00::CanisterIdRecord>(&req.payload).and_then(|a| {
                    let c = self
                        .canisters
                        .get_mut(&a.canister_id)
                        .ok_or_else(|| not_found(a.canister_id))?;
                    c.sys.cycles += req.cycles;
                    refund = 0;
                    Ok(unit())
                }),
                _ => self.dispatch(caller, &req.method, &req.payload),
            },
        };
        let slice = self.config.scheduler.max_instructions_per_install_code_slice;
        if let (Some(id), true) = (target, instructions > slice) {
            let install = LongInstallStart {
                instructions,
                origin: req.origin,
                result,
                refund,
                record,
            };
            self.start_long_install(id, install);
            return slice;
        }
        if let Some(c) = target.and_then(|t| self.canisters.get_mut(&t)) {
            c.install_code_debit += instructions;
        }
        self.management_calls[record].outcome = Some(result.as_ref().map(|_| ()).map_err(Clone::clone));
        self.respond_routed(&req.origin, result, refund);
        instructions
    }

    /// `install_code` or `install_chunked_code`.
    fn install_request(&mut self, caller: Principal, method: &str, payload: &[u8]) -> InstallOutcome {
        if method == "install_code" {
            match decode::<ic00::InstallCodeArgs>(payload) {
                Ok(a) => self.install_code(
                    caller,
                    a.sender_canister_version,
                    a.canister_id,
                    a.mode,
                    &a.wasm_module,
                    a.arg,
                ),
                Err(reject) => InstallOutcome::refused(reject),
            }
        } else {
            match decode::<ic00::InstallChunkedCodeArgs>(payload) {
                Ok(a) => self.install_chunked_code(caller, a),
                Err(reject) => InstallOutcome::refused(reject),
            }
        }
    }

    fn dispatch(&mut self, caller: Principal, method: &str, payload: &[u8]) -> Result<Vec<u8>, Reject> {
        match method {
            "provisional_create_canister_with_cycles" => {
                let a: ic00::ProvisionalCreateCanisterWithCyclesArgs = decode(payload)?;
                let cycles = a.amount.as_ref().map_or(self.config.initial_cycles, nat_u128);
                let id = self.create_canister_with_id(
                    caller,
                    a.settings,
                    cycles,
                    a.specified_id,
                    a.sender_canister_version,
                )?;
                Ok(encode(&ic00::CanisterIdRecord { canister_id: id }))
            }
            "provisional_top_up_canister" => {
                let a: ic00::ProvisionalTopUpCanisterArgs = decode(payload)?;
                let c = self
                    .canisters
                    .get_mut(&a.canister_id)
                    .ok_or_else(|| not_found(a.canister_id))?;
                c.sys.cycles += nat_u128(&a.amount);
                Ok(unit())
            }
            "uninstall_code" => {
                let a: ic00::UninstallCodeArgs = decode(payload)?;
                self.uninstall_code(caller, a.canister_id, a.sender_canister_version)
                    .map(|()| unit())
            }
            "start_canister" => {
                let a: ic00::CanisterIdRecord = decode(payload)?;
                self.start_canister(caller, a.canister_id).map(|()| unit())
            }
            "canister_status" => {
                let a: ic00::CanisterIdRecord = decode(payload)?;
                self.canister_status(caller, a.canister_id).map(|r| encode(&r))
            }
            "canister_info" => {
                let a: ic00::CanisterInfoArgs = decode(payload)?;
                self.canister_info(a).map(|r| encode(&r))
            }
            "update_settings" => {
                let a: ic00::UpdateSettingsArgs = decode(payload)?;
                self.controlled(caller, a.canister_id, "update_settings")?;
                let (time, id) = (self.time, a.canister_id);
                let c = self.canisters.get_mut(&id).expect("checked");
                c.version += 1;
                if apply_settings(c, &a.settings) {
                    let controllers = c.controllers.iter().copied().collect();
                    let details = ic00::ChangeDetails::ControllersChange(ic00::ControllersChangeRecord { controllers });
                    c.record_change(time, caller, a.sender_canister_version, details);
                }
                Ok(unit())
            }
            "delete_canister" => {
                let a: ic00::CanisterIdRecord = decode(payload)?;
                self.delete_canister(caller, a.canister_id).map(|()| unit())
            }
            "raw_rand" => {
                let seed = [self.round.to_le_bytes(), self.fresh_id().to_le_bytes()].concat();
                Ok(encode(&serde_bytes::ByteBuf::from(wasm_module::sha256(&seed).to_vec())))
            }
            "upload_chunk" => {
                let a: ic00::UploadChunkArgs = decode(payload)?;
                self.chunk_access(caller, a.canister_id, "upload_chunk")?;
                let c = self.canisters.get_mut(&a.canister_id).expect("checked");
                // The store canister pays before the chunk is looked at, and keeps paying if it is refused.
                let reveal = c.is_controller(&caller);
                let chunk_store_error = |text: String| {
                    Reject::of(
                        ErrorCode::CanisterContractViolation,
                        format!("Error from Wasm chunk store: {text}."),
                    )
                };
                c.withdraw(cycles::execution_cost(cycles::UPLOAD_CHUNK_INSTRUCTIONS), reveal)
                    .map_err(|text| chunk_store_error(format!("Error charging for 'upload_chunk': {text}")))?;
                if a.chunk.len() > MAX_CHUNK_SIZE {
                    return Err(Reject::canister_error(format!(
                        "Error from Canister {}: Wasm chunk size {} exceeds the maximum chunk size of {MAX_CHUNK_SIZE}.",
                        a.canister_id,
                        a.chunk.len()
                    )));
                }
                let hash = wasm_module::sha256(&a.chunk);
                if c.chunks.contains_key(&hash) {
                    return Ok(encode(&ic00::ChunkHash { hash: hash.to_vec() }));
                }
                if c.chunks.len() >= MAX_CHUNKS {
                    return Err(Reject::canister_error(format!(
                        "Error from Canister {}: Wasm chunk store is full (at most {MAX_CHUNKS} chunks).",
                        a.canister_id
                    )));
                }
                let memory = c.memory_usage();
                c.charge_for_memory(0, memory, memory + CHUNK_BYTES, reveal)
                    .map_err(|e| e.reject(chunk_store_error))?;
                c.chunks.insert(hash, a.chunk);
                Ok(encode(&ic00::ChunkHash { hash: hash.to_vec() }))
            }
            "stored_chunks" => {
                let a: ic00::CanisterIdRecord = decode(payload)?;
                self.chunk_access(caller, a.canister_id, "stored_chunks")?;
                let c = &self.canisters[&a.canister_id];
                let hashes: Vec<_> = c.chunks.keys().map(|h| ic00::ChunkHash { hash: h.to_vec() }).collect();
                Ok(encode(&hashes))
            }
            "clear_chunk_store" => {
                let a: ic00::CanisterIdRecord = decode(payload)?;
                self.chunk_access(caller, a.canister_id, "clear_chunk_store")?;
                self.canisters.get_mut(&a.canister_id).expect("checked").chunks.clear();
                Ok(unit())
            }
            "take_canister_snapshot" => {
                let a: ic00::TakeCanisterSnapshotArgs = decode(payload)?;
                self.take_snapshot(caller, a).map(|s| encode(&s))
            }
            "load_canister_snapshot" => {
                let a: ic00::LoadCanisterSnapshotArgs = decode(payload)?;
                self.load_snapshot(caller, a).map(|()| unit())
            }
            "list_canister_snapshots" => {
                let a: ic00::CanisterIdRecord = decode(payload)?;
                self.controlled(caller, a.canister_id, "list_canister_snapshots")?;
                let list: Vec<_> = self.canisters[&a.canister_id]
                    .snapshots
                    .iter()
                    .map(snapshot_info)
                    .collect();
                Ok(encode(&list))
            }
            "delete_canister_snapshot" => {
                let a: ic00::DeleteCanisterSnapshotArgs = decode(payload)?;
                self.controlled(caller, a.canister_id, "delete_canister_snapshot")?;
                let c = self.canisters.get_mut(&a.canister_id).expect("checked");
                let before = c.snapshots.len();
                c.snapshots.retain(|s| s.id != a.snapshot_id);
                if c.snapshots.len() == before {
                    return Err(snapshot_not_found(a.canister_id, &a.snapshot_id));
                }
                Ok(unit())
            }
            _ => Err(Reject::of(
                ErrorCode::UnknownManagementMessage,
                format!("Management canister has no method '{method}'"),
            )),
        }
    }

    /// Controllers-only methods reject other callers (IC0512).
    pub fn controlled(&self, caller: Principal, id: Principal, method: &str) -> Result<(), Reject> {
        let c = self.canisters.get(&id).ok_or_else(|| not_found(id))?;
        if !c.is_controller(&caller) {
            return Err(Reject::canister_error(format!(
                "Only controllers of canister {id} can call ic00 method {method}"
            ))
            .with_error_code("IC0512"));
        }
        Ok(())
    }

    /// Chunk-store methods: controllers, or the canister itself (facts §4).
    fn chunk_access(&self, caller: Principal, id: Principal, method: &str) -> Result<(), Reject> {
        if caller == id && self.canisters.contains_key(&id) {
            return Ok(());
        }
        self.controlled(caller, id, method)
    }

    pub fn create_canister(
        &mut self,
        caller: Principal,
        settings: Option<ic00::CanisterSettings>,
        cycles: u128,
    ) -> Principal {
        self.create_canister_with_id(caller, settings, cycles, None, None)
            .expect("a fresh id is free")
    }

    /// Creates a canister with the next free id, or with `specified_id` (`provisional_create_canister_with_cycles`);
    /// `sender_version` is the calling canister's version, for the history.
    pub fn create_canister_with_id(
        &mut self,
        caller: Principal,
        settings: Option<ic00::CanisterSettings>,
        cycles: u128,
        specified_id: Option<Principal>,
        sender_version: Option<u64>,
    ) -> Result<Principal, Reject> {
        let id = match specified_id {
            Some(id) if self.canisters.contains_key(&id) => {
                return Err(Reject::canister_error(format!("Canister {id} already exists")));
            }
            Some(id) => id,
            None => loop {
                let id = self.new_canister_id();
                if !self.canisters.contains_key(&id) {
                    break id;
                }
            },
        };
        let mut c = Canister::new(id, BTreeSet::from([caller]), cycles);
        let time = self.time;
        c.last_storage_charge = time;
        if let Some(settings) = settings {
            apply_settings(&mut c, &settings);
        }
        // One `creation` record holding the resulting controllers.
        c.history.push(Change {
            time,
            canister_version: 0,
            origin: caller,
            origin_version: sender_version,
            details: ic00::ChangeDetails::Creation(ic00::CreationRecord {
                controllers: c.controllers.iter().copied().collect(),
                environment_variables_hash: None,
            }),
        });
        self.canisters.insert(id, c);
        Ok(id)
    }

    /// Spec "install_code": install, reinstall, or upgrade; atomic (a trap anywhere leaves the canister as it was).
    #[allow(clippy::too_many_arguments)]
    pub fn install_code(
        &mut self,
        caller: Principal,
        sender_version: Option<u64>,
        id: Principal,
        mode: ic00::CanisterInstallMode,
        wasm: &[u8],
        arg: Vec<u8>,
    ) -> InstallOutcome {
        if let Err(reject) = self.controlled(caller, id, "install_code") {
            return InstallOutcome::refused(reject);
        }
        let invalid = |e: String| {
            Reject::canister_error(format!(
                "Error from Canister {id}: Canister's Wasm module is not valid: {e}"
            ))
            .with_error_code("IC0505")
        };
        let cached =
            match wasm_module::decode(wasm).and_then(|raw| self.modules.get_or_compile(&self.runtime.engine, &raw)) {
                Ok(cached) => cached,
                Err(e) => return InstallOutcome::refused(invalid(e)),
            };
        let code = Code {
            module: cached.module,
            compiled_before: cached.compiled_before,
            hash: wasm_module::sha256(wasm),
            len: wasm.len() as u64,
            sender_version,
        };
        self.with_canister(id, |s, c| s.install_on(c, caller, mode, code, arg))
            .expect("checked")
    }

    /// install_code on `c`: it prepays execution_cost(install limit) above its freezing threshold (install.rs
    /// `reserve_execution_cycles`), runs, and gets the unused instructions back; instructions used are charged
    /// whether the install succeeds or not.
    fn install_on(
        &mut self,
        c: &mut Canister,
        caller: Principal,
        mode: ic00::CanisterInstallMode,
        code: Code,
        arg: Vec<u8>,
    ) -> InstallOutcome {
        let limit = self.config.install_instruction_limit;
        let mut budget = limit;
        let mut prepaid = 0;
        let result = self.run_install(c, caller, mode, code, arg, &mut budget, &mut prepaid);
        let instructions = limit - budget;
        if prepaid > 0 {
            c.sys.cycles += prepaid - cycles::execution_cost(instructions);
        }
        InstallOutcome { result, instructions }
    }

    /// Checks, then runs the install's phases within `budget` (canister_manager.rs `validate_input`, then
    /// install.rs / upgrade.rs); compilation counts as instructions: in full the first time the module is
    /// compiled, a hundredth once it is cached.
    #[allow(clippy::too_many_arguments)]
    fn run_install(
        &mut self,
        c: &mut Canister,
        caller: Principal,
        mode: ic00::CanisterInstallMode,
        code: Code,
        arg: Vec<u8>,
        budget: &mut u64,
        prepaid: &mut u128,
    ) -> Result<(), Reject> {
        use ic00::CanisterInstallMode as Mode;
        let id = c.id;
        let Code {
            module,
            compiled_before,
            hash,
            len,
            sender_version,
        } = code;
        if mode == Mode::Install && c.live.is_some() {
            return Err(Reject::of(
                ErrorCode::CanisterNonEmpty,
                format!(
                    "Canister {id} cannot be installed because the canister is not empty. Try installing with \
                     mode='reinstall' instead."
                ),
            ));
        }
        if c.install_code_debit > 0 {
            return Err(Reject::of(
                ErrorCode::CanisterInstallCodeRateLimited,
                format!(
                    "Canister {id} is rate limited because it executed too many instructions in the previous \
                     install_code messages. Please retry installation after several minutes."
                ),
            ));
        }
        let reserve = cycles::execution_cost(*budget);
        c.withdraw(reserve, true).map_err(|text| {
            Reject::of(
                ErrorCode::CanisterOutOfCycles,
                format!("Canister installation failed with `{text}`."),
            )
        })?;
        *prepaid = reserve;
        let compilation = cycles::compilation_instructions(module.wasm_instructions, compiled_before);
        *budget = budget.saturating_sub(compilation);
        self.record(c.id, "(compilation)", compilation, Ok(()));
        let invalid = |e: String| {
            Reject::canister_error(format!(
                "Error from Canister {id}: Canister's Wasm module is not valid: {e}"
            ))
            .with_error_code("IC0505")
        };
        let deployment_mode = match &mode {
            Mode::Install => ic00::CodeDeploymentMode::Install,
            Mode::Reinstall => ic00::CodeDeploymentMode::Reinstall,
            Mode::Upgrade(_) => ic00::CodeDeploymentMode::Upgrade,
        };
        match mode {
            Mode::Install | Mode::Reinstall => {
                // Spec: reinstall discards all state, stable memory included, and runs canister_init.
                let live = Live::new(&self.runtime, module.clone()).map_err(invalid)?;
                let fresh = SystemState {
                    cycles: c.sys.cycles,
                    ..Default::default()
                };
                let old_sys = std::mem::replace(&mut c.sys, fresh);
                let old_live = c.live.replace(live);
                let old_version = c.version;
                c.version += 1;
                let mut outcome = Ok(());
                if module.has_start {
                    outcome = self.run_phase(c, EntryKind::Start, Entry::Start, caller, Vec::new(), budget);
                }
                if outcome.is_ok() && module.exports("canister_init") {
                    let entry = Entry::Export("canister_init".into());
                    outcome = self.run_phase(c, EntryKind::Init, entry, caller, arg, budget);
                }
                if let Err(trap) = outcome {
                    let cycles = c.sys.cycles;
                    c.sys = old_sys;
                    c.sys.cycles = cycles;
                    c.live = old_live;
                    c.version = old_version;
                    return Err(error_from(id, &trap));
                }
            }
            Mode::Upgrade(flags) => {
                let Some(old_module) = c.module().cloned() else {
                    return Err(Reject::canister_error(format!(
                        "Error from Canister {id}: Attempted to execute a message, but the canister contains no Wasm module."
                    ))
                    .with_error_code("IC0537"));
                };
                let flags = flags.unwrap_or(ic00::UpgradeFlags {
                    skip_pre_upgrade: None,
                    wasm_memory_persistence: None,
                });
                let keep = flags.wasm_memory_persistence == Some(ic00::WasmMemoryPersistence::Keep);
                if keep && !module.enhanced_orthogonal_persistence {
                    return Err(Reject::canister_error(
                        "Invalid upgrade option: The `wasm_memory_persistence: opt Keep` upgrade option requires that the new canister module supports enhanced orthogonal persistence.",
                    ).with_error_code("IC0503"));
                }
                if old_module.enhanced_orthogonal_persistence && flags.wasm_memory_persistence.is_none() {
                    return Err(Reject::canister_error(
                        "Missing upgrade option: Enhanced orthogonal persistence requires the `wasm_memory_persistence` upgrade option.",
                    ).with_error_code("IC0503"));
                }
                self.upgrade(
                    c,
                    caller,
                    module.clone(),
                    flags.skip_pre_upgrade == Some(true),
                    keep,
                    arg,
                    budget,
                )?;
            }
        }
        c.module_hash = Some(hash);
        c.module_bytes_len = len;
        let details = ic00::ChangeDetails::CodeDeployment(ic00::CodeDeploymentRecord {
            mode: deployment_mode,
            module_hash: hash.to_vec(),
        });
        c.record_change(self.time, caller, sender_version, details);
        if module.exports("canister_heartbeat") {
            self.heartbeats.insert(id);
        } else {
            self.heartbeats.remove(&id);
        }
        self.sync_timer(c);
        if let Some(live) = &c.live {
            live.release_zero_pages();
        }
        Ok(())
    }

    /// Spec "Canister upgrades": pre_upgrade on the old instance (unless skipped), a new instance, `(start)`,
    /// post_upgrade(arg). The heap is replaced, stable memory kept, the global timer cleared, the version bumped.
    #[allow(clippy::too_many_arguments)]
    fn upgrade(
        &mut self,
        c: &mut Canister,
        caller: Principal,
        module: std::sync::Arc<CompiledModule>,
        skip_pre_upgrade: bool,
        keep_heap: bool,
        arg: Vec<u8>,
        budget: &mut u64,
    ) -> Result<(), Reject> {
        let id = c.id;
        let snapshot = Snapshot::take(&self.runtime, c.live.as_mut().expect("checked"), &mut c.sys);
        let old_version = c.version;
        let mut old_live = None;
        let outcome: Result<(), Trap> = 'upgrade: {
            if !skip_pre_upgrade && c.exports("canister_pre_upgrade") {
                let entry = Entry::Export("canister_pre_upgrade".into());
                if let Err(e) = self.run_phase(c, EntryKind::PreUpgrade, entry, caller, Vec::new(), budget) {
                    break 'upgrade Err(e);
                }
            }
            let mut live = match Live::new(&self.runtime, module.clone()) {
                Ok(live) => live,
                Err(e) => break 'upgrade Err(Trap::new(ErrorCode::CanisterInvalidWasm, e)),
            };
            if keep_heap {
                let heap = c.live.as_ref().expect("checked").heap().to_vec();
                if let Err(e) = live.set_heap_and_globals(&self.runtime, &heap, &[]) {
                    break 'upgrade Err(Trap::new(ErrorCode::CanisterOutOfMemory, e));
                }
            }
            old_live = c.live.replace(live);
            c.version += 1;
            c.sys.global_timer = 0;
            if module.has_start {
                if let Err(e) = self.run_phase(c, EntryKind::Start, Entry::Start, caller, Vec::new(), budget) {
                    break 'upgrade Err(e);
                }
            }
            if module.exports("canister_post_upgrade") {
                let entry = Entry::Export("canister_post_upgrade".into());
                if let Err(e) = self.run_phase(c, EntryKind::PostUpgrade, entry, caller, arg, budget) {
                    break 'upgrade Err(e);
                }
            }
            Ok(())
        };
        match outcome {
            Ok(()) => {
                snapshot.commit(old_live.as_ref().expect("replaced"), &mut c.sys);
                Ok(())
            }
            Err(trap) => {
                if old_live.is_some() {
                    c.live = old_live;
                }
                c.version = old_version;
                snapshot.restore(c.live.as_mut().expect("old instance"), &mut c.sys);
                Err(error_from(id, &trap))
            }
        }
    }

    /// One phase of install_code; the phases share the install_code instruction budget.
    fn run_phase(
        &mut self,
        c: &mut Canister,
        kind: EntryKind,
        entry: Entry,
        caller: Principal,
        arg: Vec<u8>,
        budget: &mut u64,
    ) -> Result<(), Trap> {
        let mut exec = Exec::new(kind, entry, *budget, Rollback::Caller);
        exec.limit = self.config.install_instruction_limit;
        exec.caller = Some(caller);
        exec.arg = arg;
        let run = self.execute(c, exec);
        *budget -= run.instructions;
        run.result
    }

    fn install_chunked_code(&mut self, caller: Principal, a: ic00::InstallChunkedCodeArgs) -> InstallOutcome {
        match self.assemble_chunks(caller, &a) {
            Ok(wasm) => self.install_code(
                caller,
                a.sender_canister_version,
                a.target_canister,
                a.mode,
                &wasm,
                a.arg,
            ),
            Err(reject) => InstallOutcome::refused(reject),
        }
    }

    /// The module of an install_chunked_code: the chunks in order, checked against the expected hash.
    fn assemble_chunks(&self, caller: Principal, a: &ic00::InstallChunkedCodeArgs) -> Result<Vec<u8>, Reject> {
        let target = a.target_canister;
        let store = a.store_canister.unwrap_or(target);
        self.controlled(caller, target, "install_chunked_code")?;
        if caller != store {
            self.controlled(caller, store, "install_chunked_code")?;
        }
        let chunks = &self.canisters.get(&store).ok_or_else(|| not_found(store))?.chunks;
        let mut wasm = Vec::new();
        for h in &a.chunk_hashes_list {
            let chunk = <[u8; 32]>::try_from(h.hash.as_slice())
                .ok()
                .and_then(|k| chunks.get(&k))
                .ok_or_else(|| {
                    Reject::canister_error(format!(
                        "Error from Canister {target}: Chunk with hash {} not found in the chunk store of {store}.",
                        hex::encode(&h.hash)
                    ))
                })?;
            wasm.extend_from_slice(chunk);
        }
        let actual = wasm_module::sha256(&wasm);
        if actual.as_slice() != a.wasm_module_hash.as_slice() {
            return Err(Reject::canister_error(format!(
                "Error from Canister {target}: Wasm module hash mismatch: expected {}, got {}.",
                hex::encode(&a.wasm_module_hash),
                hex::encode(actual)
            )));
        }
        Ok(wasm)
    }

    fn uninstall_code(&mut self, caller: Principal, id: Principal, sender_version: Option<u64>) -> Result<(), Reject> {
        self.controlled(caller, id, "uninstall_code")?;
        let time = self.time;
        self.with_canister(id, |s, c| {
            s.remove_code(c);
            c.version += 1;
            c.record_change(time, caller, sender_version, ic00::ChangeDetails::CodeUninstall);
        });
        Ok(())
    }

    /// Spec "uninstall_code": the module, heap, stable memory, timer and chunk store go; open call contexts are
    /// rejected and outstanding callbacks dropped; cycles stay.
    pub fn remove_code(&mut self, c: &mut Canister) {
        self.forget_canister_indexes(c);
        c.live = None;
        c.module_hash = None;
        c.module_bytes_len = 0;
        c.sys = SystemState {
            cycles: c.sys.cycles,
            ..Default::default()
        };
        c.indexed_timer = 0;
        c.chunks.clear();
        c.callbacks.clear();
        for (_, cc) in std::mem::take(&mut c.call_contexts) {
            if !cc.responded {
                let reject = Reject::canister_error("Canister has been uninstalled.").with_error_code("IC0536");
                self.respond_routed(&cc.origin, Err(reject), cc.cycles_available - cc.cycles_accepted);
            }
        }
        self.check_stopped(c);
    }

    fn stop_canister(&mut self, caller: Principal, id: Principal, origin: Origin, record: usize) -> Result<(), Reject> {
        self.controlled(caller, id, "stop_canister")?;
        let deadline = self.time + self.config.stop_canister_timeout.as_nanos() as u64;
        self.with_canister(id, |s, c| {
            if c.status == CanisterStatus::Stopped {
                s.management_calls[record].outcome = Some(Ok(()));
                s.respond_routed(&origin, Ok(unit()), 0);
                return;
            }
            if c.status == CanisterStatus::Running {
                c.status = CanisterStatus::Stopping;
                c.version += 1;
            }
            c.pending_stops.push(PendingStop {
                origin,
                deadline,
                record,
            });
            s.add_stop_deadline(deadline, id);
            s.check_stopped(c);
        });
        Ok(())
    }

    fn start_canister(&mut self, caller: Principal, id: Principal) -> Result<(), Reject> {
        self.controlled(caller, id, "start_canister")?;
        self.with_canister(id, |s, c| {
            if c.status != CanisterStatus::Running {
                c.status = CanisterStatus::Running;
                c.version += 1;
            }
            for stop in std::mem::take(&mut c.pending_stops) {
                let reject = Reject::of(
                    ErrorCode::CanisterStoppingCancelled,
                    format!("Canister {id}'s stop request was cancelled."),
                );
                s.management_calls[stop.record].outcome = Some(Err(reject.clone()));
                s.respond_routed(&stop.origin, Err(reject), 0);
            }
        });
        Ok(())
    }

    fn delete_canister(&mut self, caller: Principal, id: Principal) -> Result<(), Reject> {
        self.controlled(caller, id, "delete_canister")?;
        let c = &self.canisters[&id];
        if c.status != CanisterStatus::Stopped {
            return Err(Reject::of(
                ErrorCode::CanisterNotStopped,
                format!("Canister {id} must be stopped before it is deleted."),
            ));
        }
        let c = self.canisters.remove(&id).expect("checked");
        self.forget_canister_indexes(&c);
        Ok(())
    }

    pub fn canister_status(&self, caller: Principal, id: Principal) -> Result<ic00::CanisterStatusResult, Reject> {
        self.controlled(caller, id, "canister_status")?;
        let c = &self.canisters[&id];
        let n = |v: u64| Nat::from(v);
        let m = c.memory_metrics();
        Ok(ic00::CanisterStatusResult {
            status: match c.status {
                CanisterStatus::Running => ic00::CanisterStatusType::Running,
                CanisterStatus::Stopping => ic00::CanisterStatusType::Stopping,
                CanisterStatus::Stopped => ic00::CanisterStatusType::Stopped,
            },
            ready_for_migration: false,
            version: c.version,
            settings: definite_settings(c),
            module_hash: c.module_hash.map(|h| h.to_vec()),
            memory_size: n(c.memory_usage()),
            memory_metrics: ic00::MemoryMetrics {
                wasm_memory_size: n(m.wasm_memory),
                stable_memory_size: n(m.stable_memory),
                global_memory_size: n(m.globals),
                wasm_binary_size: n(m.wasm_binary),
                custom_sections_size: n(m.custom_sections),
                canister_history_size: n(m.history),
                wasm_chunk_store_size: n(m.chunk_store),
                snapshots_size: n(m.snapshots),
                log_memory_store_size: n(0),
            },
            cycles: Nat::from(c.sys.cycles),
            reserved_cycles: n(0),
            idle_cycles_burned_per_day: Nat::from(cycles::idle_cycles_burned_per_day(c.memory_usage())),
            query_stats: ic00::QueryStats {
                num_calls_total: n(0),
                num_instructions_total: n(0),
                request_payload_bytes_total: n(0),
                response_payload_bytes_total: n(0),
            },
        })
    }

    fn canister_info(&self, a: ic00::CanisterInfoArgs) -> Result<ic00::CanisterInfoResult, Reject> {
        let c = self
            .canisters
            .get(&a.canister_id)
            .ok_or_else(|| not_found(a.canister_id))?;
        let wanted = a.num_requested_changes.unwrap_or(0).min(20) as usize;
        let skip = c.history.len().saturating_sub(wanted);
        Ok(ic00::CanisterInfoResult {
            total_num_changes: c.history.len() as u64,
            recent_changes: c.history[skip..]
                .iter()
                .map(|h| ic00::Change {
                    timestamp_nanos: h.time,
                    canister_version: h.canister_version,
                    origin: change_origin(h.origin, h.origin_version),
                    details: Some(h.details.clone()),
                })
                .collect(),
            module_hash: c.module_hash.map(|h| h.to_vec()),
            controllers: c.controllers.iter().copied().collect(),
        })
    }

    fn take_snapshot(
        &mut self,
        caller: Principal,
        a: ic00::TakeCanisterSnapshotArgs,
    ) -> Result<ic00::Snapshot, Reject> {
        let id = a.canister_id;
        self.controlled(caller, id, "take_canister_snapshot")?;
        let local = self.fresh_id();
        let time = self.time;
        let c = self.canisters.get_mut(&id).expect("checked");
        if let Some(replace) = &a.replace_snapshot {
            if !c.snapshots.iter().any(|s| &s.id == replace) {
                return Err(snapshot_not_found(id, replace));
            }
        }
        if c.snapshots.len() - usize::from(a.replace_snapshot.is_some()) >= MAX_SNAPSHOTS {
            return Err(Reject::canister_error(format!(
                "Canister {id} has reached the maximum number of snapshots allowed: {MAX_SNAPSHOTS}."
            )));
        }
        let (Some(live), Some(hash)) = (c.live.as_ref(), c.module_hash) else {
            return Err(Reject::canister_error(format!(
                "Canister {id} does not contain a Wasm module."
            )));
        };
        let mut snapshot_id = id.as_slice().to_vec();
        snapshot_id.extend_from_slice(&local.to_be_bytes());
        let snapshot = CanisterSnapshot {
            id: snapshot_id,
            taken_at: time,
            module: live.module.clone(),
            module_hash: hash,
            module_bytes_len: c.module_bytes_len,
            heap: live.heap().to_vec(),
            globals: live.globals(),
            sys: SystemState {
                cycles: 0,
                ..c.sys.clone()
            },
            chunks: c.chunks.clone(),
        };
        // The IC charges the snapshotted canister a baseline plus one instruction per byte of the snapshot.
        let size = snapshot.size();
        let replaced: u64 = c
            .snapshots
            .iter()
            .filter(|s| a.replace_snapshot.as_ref() == Some(&s.id))
            .map(|s| s.size())
            .sum();
        let memory = c.memory_usage();
        let cost = cycles::execution_cost(cycles::SNAPSHOT_BASELINE_INSTRUCTIONS + size);
        c.charge_for_memory(cost, memory, memory + size - replaced, c.is_controller(&caller))
            .map_err(|e| e.reject(snapshotting_failed))?;
        if let Some(replace) = &a.replace_snapshot {
            c.snapshots.retain(|s| &s.id != replace);
        }
        let info = snapshot_info(&snapshot);
        c.snapshots.push(snapshot);
        Ok(info)
    }

    fn load_snapshot(&mut self, caller: Principal, a: ic00::LoadCanisterSnapshotArgs) -> Result<(), Reject> {
        let id = a.canister_id;
        self.controlled(caller, id, "load_canister_snapshot")?;
        let time = self.time;
        self.with_canister(id, |s, c| {
            let snapshot = c
                .snapshots
                .iter()
                .find(|snap| snap.id == a.snapshot_id)
                .cloned()
                .ok_or_else(|| snapshot_not_found(id, &a.snapshot_id))?;
            // The IC charges the canister a baseline, then the compilation of the (cached) module and one instruction
            // per byte of the snapshot above the freezing threshold of the canister as loaded; a load that fails
            // charges nothing.
            let reveal = c.is_controller(&caller);
            let baseline = cycles::execution_cost(cycles::SNAPSHOT_BASELINE_INSTRUCTIONS);
            let threshold = c.freezing_threshold_cycles();
            if c.sys.cycles.saturating_sub(threshold) < baseline {
                let text = cycles::out_of_cycles(id, baseline, c.sys.cycles, threshold, reveal);
                return Err(snapshotting_failed(text));
            }
            let compilation = cycles::compilation_instructions(snapshot.module.wasm_instructions, true);
            let mut live = Live::new(&s.runtime, snapshot.module.clone()).map_err(Reject::canister_error)?;
            live.set_heap_and_globals(&s.runtime, &snapshot.heap, &snapshot.globals)
                .map_err(Reject::canister_error)?;
            let cycles = c.sys.cycles;
            let old_memory = c.memory_usage();
            let old = (
                c.live.replace(live),
                std::mem::replace(&mut c.sys, snapshot.sys.clone()),
                c.module_hash.replace(snapshot.module_hash),
                std::mem::replace(&mut c.module_bytes_len, snapshot.module_bytes_len),
                std::mem::replace(&mut c.chunks, snapshot.chunks.clone()),
            );
            c.sys.cycles = cycles - baseline;
            // A snapshot taken with take_canister_snapshot does not bring its global timer back: the IC keeps the
            // current one (canister_manager.rs `load_canister_snapshot`).
            c.sys.global_timer = old.1.global_timer;
            let cost = cycles::execution_cost(compilation + snapshot.size());
            if let Err(unpaid) = c.charge_for_memory(cost, old_memory, c.memory_usage(), reveal) {
                (c.live, c.sys, c.module_hash, c.module_bytes_len, c.chunks) = old;
                return Err(unpaid.reject(snapshotting_failed));
            }
            c.version += 1;
            let details = ic00::ChangeDetails::LoadSnapshot(ic00::LoadSnapshotRecord {
                from_canister_id: None,
                snapshot_id: snapshot.id.clone(),
                canister_version: c.version,
                taken_at_timestamp: snapshot.taken_at,
                source: ic00::SnapshotSource::TakenFromCanister(candid::Reserved),
            });
            c.record_change(time, caller, a.sender_canister_version, details);
            s.sync_timer(c);
            Ok(())
        })
        .expect("checked")
    }
}

/// A module to install, from the module cache, and the installing canister's version for the history.
struct Code {
    module: std::sync::Arc<CompiledModule>,
    compiled_before: bool,
    hash: [u8; 32],
    len: u64,
    sender_version: Option<u64>,
}

fn snapshot_info(s: &CanisterSnapshot) -> ic00::Snapshot {
    ic00::Snapshot {
        id: s.id.clone(),
        taken_at_timestamp: s.taken_at,
        total_size: s.size(),
    }
}

/// A snapshot operation the canister cannot pay for (`CanisterSnapshotNotEnoughCycles`).
fn snapshotting_failed(out_of_cycles: String) -> Reject {
    Reject::of(
        ErrorCode::CanisterOutOfCycles,
        format!("Canister snapshotting failed with: `{out_of_cycles}`"),
    )
}

fn snapshot_not_found(id: Principal, snapshot: &[u8]) -> Reject {
    Reject::of(
        ErrorCode::CanisterSnapshotNotFound,
        format!(
            "Could not find the snapshot ID {} for canister {id}.",
            hex::encode(snapshot)
        ),
    )
}

/// Applies the settings that are set (controllers as a set, environment variables by name); returns whether the
/// controllers were set.
fn apply_settings(c: &mut Canister, s: &ic00::CanisterSettings) -> bool {
    let st = &mut c.settings.0;
    let set = |field: &mut Nat, value: &Option<Nat>| {
        if let Some(v) = value {
            *field = v.clone();
        }
    };
    set(&mut st.compute_allocation, &s.compute_allocation);
    set(&mut st.memory_allocation, &s.memory_allocation);
    set(&mut st.freezing_threshold, &s.freezing_threshold);
    set(&mut st.reserved_cycles_limit, &s.reserved_cycles_limit);
    set(
        &mut st.minimum_incoming_canister_call_cycles,
        &s.minimum_incoming_canister_call_cycles,
    );
    set(&mut st.log_memory_limit, &s.log_memory_limit);
    set(&mut st.wasm_memory_limit, &s.wasm_memory_limit);
    set(&mut st.wasm_memory_threshold, &s.wasm_memory_threshold);
    if let Some(v) = &s.log_visibility {
        st.log_visibility = v.clone();
    }
    if let Some(v) = &s.snapshot_visibility {
        st.snapshot_visibility = v.clone();
    }
    if let Some(v) = &s.status_visibility {
        st.status_visibility = v.clone();
    }
    if let Some(vars) = &s.environment_variables {
        let by_name: BTreeMap<String, String> = vars.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
        st.environment_variables = by_name
            .iter()
            .map(|(name, value)| ic00::EnvironmentVariable {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        c.env_vars = Arc::new(by_name);
    }
    match &s.controllers {
        Some(controllers) => {
            c.controllers = controllers.iter().copied().collect();
            true
        }
        None => false,
    }
}

fn definite_settings(c: &Canister) -> ic00::DefiniteCanisterSettings {
    ic00::DefiniteCanisterSettings {
        controllers: c.controllers.iter().copied().collect(),
        ..c.settings.0.clone()
    }
}
