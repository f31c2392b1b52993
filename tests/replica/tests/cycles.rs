//! Cycles, worked out by hand from the fee table of a 13-node application subnet (dfinity/ic
//! `rs/config/src/subnet_config.rs`, `CyclesAccountManagerConfig::application_subnet`) and the formulas of
//! `rs/cycles_account_manager/src/cycles_account_manager.rs`. Fees scale by subnet size / 13 = 1.
//!
//! | fee | cycles |
//! |---|---|
//! | ingress_message_reception_fee | 1,200,000 |
//! | ingress_byte_reception_fee | 2,000 per byte |
//! | update_message_execution_fee | 5,000,000 |
//! | ten_update_instructions_execution_fee | 10 per 10 instructions (1 per instruction) |
//! | xnet_call_fee | 260,000 |
//! | xnet_byte_transmission_fee | 1,000 per byte |
//! | canister_creation_fee | 500,000,000,000 |
//! | gib_storage_per_second_fee | 127,000 |
//!
//! Prepayments: an update prepays execution_cost(40B) = 5,000,000 + 40,000,000,000 and gets the unused
//! instructions back; install_code prepays execution_cost(300B). A call prepays the transmission of the largest
//! response (2 MiB × 1,000 = 2,097,152,000) and the execution of its callback (execution_cost(40B)); both are
//! refunded down to what the response used.

mod common;

use candid::Principal;
use common::*;
use replica::{ic00, RejectCode, Replica};

const GIB: u128 = 1 << 30;
const EXECUTION_PREPAY: u128 = 5_000_000 + 40_000_000_000;
const RESPONSE_TRANSMISSION_PREPAY: u128 = 2_097_152_000;

fn instructions(r: &Replica, id: Principal, entry: &str) -> u128 {
    r.last_execution(id, entry).unwrap().instructions as u128
}

/// Freezing threshold (freeze_threshold_cycles): the idle burn per day of the canister's memory
/// (memory_cost(bytes, 1 day) = bytes × 127,000 × 86,400 / GiB), times 2,592,000 s (30 days) / 86,400.
fn threshold(memory: u128) -> u128 {
    memory * 127_000 * 86_400 / GIB * 2_592_000 / 86_400
}

#[test]
fn an_ingress_update_pays_for_its_bytes_and_its_instructions() {
    let r = Replica::new();
    let id = installed(&r);
    let before = r.cycle_balance(id);
    r.update_call(id, user(), "inc", vec![]).unwrap();
    // Ingress "inc" with an empty argument: 1,200,000 + 2,000 × 3 = 1,206,000.
    // Execution: 5,000,000 + I (prepaid 5,000,000 + 40B, refunded 40B − I).
    let i = instructions(&r, id, "canister_update inc");
    assert_eq!(before - r.cycle_balance(id), 1_206_000 + 5_000_000 + i);
}

#[test]
fn a_call_pays_its_transmission_and_its_callback_and_gets_the_rest_back() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let (a0, b0) = (r.cycle_balance(a), r.cycle_balance(b));
    let arg = call_arg(0, b, "echo", b"hi");
    let reply = r.update_call(a, user(), "call", arg.clone()).unwrap();
    assert_eq!(reply, b"Rhi");
    let ingress = 1_200_000 + 2_000 * (4 + arg.len() as u128);
    let call = instructions(&r, a, "canister_update call");
    let callback = instructions(&r, a, "reply callback");
    // The call "echo" with payload "hi": 260,000 + 1,000 × (4 + 2) = 266,000; the reply "hi" is 2 bytes of the
    // prepaid 2 MiB: 2,000; the callback: 5,000,000 + its instructions.
    let a_paid = ingress + (5_000_000 + call) + 266_000 + 2_000 + (5_000_000 + callback);
    assert_eq!(a0 - r.cycle_balance(a), a_paid);
    // B executes a canister request: no ingress fee.
    let echo = instructions(&r, b, "canister_update echo");
    assert_eq!(b0 - r.cycle_balance(b), 5_000_000 + echo);
}

#[test]
fn cost_call_and_cost_create_canister_are_what_is_charged() {
    let r = Replica::new();
    let id = installed(&r);
    let arg = [4u64.to_le_bytes(), 2u64.to_le_bytes()].concat();
    let costs = r.query_call(id, user(), "costs", arg).unwrap();
    let cost_call = u128::from_le_bytes(costs[..16].try_into().unwrap());
    let cost_create = u128::from_le_bytes(costs[16..32].try_into().unwrap());
    // xnet_call_total_fee: 260,000 + 1,000 × 6 + 2,097,152,000 + 40,005,000,000 = 42,102,418,000.
    assert_eq!(cost_call, 42_102_418_000);
    assert_eq!(cost_call, 266_000 + RESPONSE_TRANSMISSION_PREPAY + EXECUTION_PREPAY);
    assert_eq!(cost_create, 500_000_000_000);
}

/// A module whose init does nothing: its code is one function body of two instructions (`nop`, `end`).
fn nop_init() -> Vec<u8> {
    module_with(r#"(func (export "canister_init") nop)"#)
}

#[test]
fn install_code_pays_for_compilation_and_execution() {
    // Compilation: 6,000 instructions per Wasm instruction (DEFAULT_COST_TO_COMPILE_WASM_INSTRUCTION):
    // 6,000 × 2 = 12,000 the first time the module is compiled, 12,000 / 100 = 120 once it is cached
    // (DESERIALIZATION_SPEED_UP_FACTOR). The install is charged 5,000,000 + compilation + init's instructions,
    // plus the ingress that carried it: 1,200,000 + 2,000 × (12 + payload bytes).
    let r = Replica::new();
    let wasm = nop_init();
    for compilation in [12_000, 120] {
        let id = r.create_canister_with_settings(Some(user()), None);
        let payload = candid::encode_one(ic00::InstallCodeArgs {
            mode: ic00::CanisterInstallMode::Install,
            canister_id: id,
            wasm_module: wasm.clone(),
            arg: vec![],
            sender_canister_version: None,
        })
        .unwrap();
        let ingress = 1_200_000 + 2_000 * (12 + payload.len() as u128);
        let before = r.cycle_balance(id);
        r.install_canister(id, wasm.clone(), vec![], Some(user()));
        assert_eq!(instructions(&r, id, "(compilation)"), compilation);
        let init = instructions(&r, id, "canister_init");
        assert_eq!(before - r.cycle_balance(id), ingress + 5_000_000 + compilation + init);
    }
}

#[test]
fn create_canister_takes_its_fee_from_the_attached_cycles() {
    let r = Replica::new();
    let a = installed(&r);
    let arg = ic00::CreateCanisterArgs {
        settings: None,
        sender_canister_version: None,
    };
    // 600B attached (flag 128): 500B fee, 100B become the new canister's balance.
    let reply = management_call(&r, a, 128, "create_canister", &arg);
    let created: ic00::CanisterIdRecord = candid::decode_one(&reply[1..]).unwrap();
    assert_eq!(r.cycle_balance(created.canister_id), 100_000_000_000);
    // 1,000 attached (flag 16): refused, and the 1,000 come back.
    let reply = management_call(&r, a, 16, "create_canister", &arg);
    assert_eq!(&reply[..2], &[b'J', RejectCode::CanisterReject as u8]);
    assert_eq!(
        String::from_utf8_lossy(&reply[2..]),
        "Creating a canister requires a fee of 500000000000 that is deducted from the canister's initial balance \
         but only 1000 cycles were received with the create_canister request."
    );
}

#[test]
fn storage_is_charged_every_10_seconds_and_reported_per_day() {
    let r = Replica::new();
    let id = installed(&r);
    let memory = r.memory_size(id) as u128;
    let status = r.canister_status(id, Some(user())).unwrap();
    assert_eq!(status.memory_size, candid::Nat::from(memory as u64));
    // idle_cycles_burned_per_day = memory_cost(memory, 86,400 s) = memory × 127,000 × 86,400 / GiB.
    assert_eq!(
        status.idle_cycles_burned_per_day,
        candid::Nat::from(memory * 127_000 * 86_400 / GIB)
    );
    // Ten charges of memory_cost(memory, 10 s) = memory × 127,000 × 10 / GiB each, nothing else.
    r.tick_n(10);
    let before = r.cycle_balance(id);
    r.tick_n(100);
    assert_eq!(before - r.cycle_balance(id), 10 * (memory * 127_000 * 10 / GIB));
}

#[test]
fn liquid_balance_is_the_balance_above_the_freezing_threshold() {
    let r = Replica::new();
    let id = installed(&r);
    let liquid = u128::from_le_bytes(
        r.query_call(id, user(), "liquid", vec![]).unwrap()[..16]
            .try_into()
            .unwrap(),
    );
    assert_eq!(liquid, r.cycle_balance(id) - threshold(r.memory_size(id) as u128));
}

#[test]
fn a_canister_below_its_freezing_threshold_rejects_calls_at_no_cost() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    // B at its threshold plus one cycle short of the update prepayment: A's call is rejected, B pays nothing.
    r.drain_cycles(b);
    assert_eq!(r.cycle_balance(b), threshold(r.memory_size(b) as u128));
    r.add_cycles(b, EXECUTION_PREPAY - 1);
    let before = r.cycle_balance(b);
    let reply = r.update_call(a, user(), "call", call_arg(0, b, "inc", &[])).unwrap();
    assert_eq!(&reply[..2], &[b'J', RejectCode::SysTransient as u8]);
    assert_eq!(
        String::from_utf8_lossy(&reply[2..]),
        format!("Canister {b} is out of cycles")
    );
    assert_eq!(r.cycle_balance(b), before);
    // One more cycle and the call goes through.
    r.add_cycles(b, 1);
    let reply = r.update_call(a, user(), "call", call_arg(0, b, "inc", &[])).unwrap();
    assert_eq!(reply[0], b'R');
}

#[test]
fn ingress_to_a_frozen_canister_is_refused_at_submission() {
    let r = Replica::new();
    let id = installed(&r);
    r.drain_cycles(id);
    let err = r.submit_call(id, user(), "inc", vec![]).unwrap_err();
    assert_eq!((err.code, err.error_code), (RejectCode::SysTransient, Some("IC0207")));
    // The sender is a controller: the IC tells it how much is missing (ingress "inc": 1,206,000).
    assert_eq!(
        err.message,
        format!("Canister {id} is out of cycles: please top up the canister with at least 1206000 additional cycles")
    );
}

#[test]
fn a_frozen_canister_cannot_be_installed() {
    // The install prepays execution_cost(300B) = 300,005,000,000 above the threshold (install_code.rs
    // reserve_execution_cycles); the caller A is a controller of B, so the error tells how much is missing.
    let r = Replica::new();
    let a = installed(&r);
    let b = r.create_canister_with_settings(Some(user()), Some(controllers(vec![user(), a])));
    r.install_canister(b, nop_init(), vec![], Some(user()));
    r.drain_cycles(b);
    let install = ic00::InstallCodeArgs {
        mode: ic00::CanisterInstallMode::Upgrade(None),
        canister_id: b,
        wasm_module: nop_init(),
        arg: vec![],
        sender_canister_version: None,
    };
    let reply = management_call(&r, a, 0, "install_code", &install);
    assert_eq!(&reply[..2], &[b'J', RejectCode::SysTransient as u8]);
    assert_eq!(
        String::from_utf8_lossy(&reply[2..]),
        format!(
            "Canister installation failed with `Canister {b} is out of cycles: please top up the canister with at \
             least 300005000000 additional cycles`."
        )
    );
}

#[test]
fn call_perform_fails_when_the_call_fees_would_freeze_the_caller() {
    // A can pay its own execution but not the 42,102,418,000 of the call: call_perform returns 2
    // (SYS_TRANSIENT), the call is not made, and only the execution is charged.
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let arg = call_arg(64, b, "inc", &[]);
    let ingress = 1_200_000 + 2_000 * (4 + arg.len() as u128);
    r.drain_cycles(a);
    r.add_cycles(a, ingress + EXECUTION_PREPAY + 10_000_000_000);
    let before = r.cycle_balance(a);
    let reply = r.update_call(a, user(), "call", arg).unwrap();
    assert_eq!(u64_of(&reply), 2);
    assert_eq!(query_u64(&r, b, "get"), 0);
    let call = instructions(&r, a, "canister_update call");
    assert_eq!(before - r.cycle_balance(a), ingress + 5_000_000 + call);
}

fn controllers(list: Vec<Principal>) -> ic00::CanisterSettings {
    ic00::CanisterSettings {
        controllers: Some(list),
        ..Default::default()
    }
}

/// `snapshot_size_bytes` (rs/replicated_state canister_state.rs): what a snapshot of the canister holds, in
/// `canister_status` terms: Wasm memory, stable memory, globals and the module (`memory_usage_in_snapshot`), the chunk
/// store (1 MiB a chunk) and the certified data. The status call is an ingress message the canister pays for.
fn snapshot_size(r: &Replica, id: Principal) -> u128 {
    let m = r.canister_status(id, Some(user())).unwrap().memory_metrics;
    let n = |v: candid::Nat| u128::try_from(v.0).unwrap();
    n(m.wasm_memory_size)
        + n(m.stable_memory_size)
        + n(m.global_memory_size)
        + n(m.wasm_binary_size)
        + n(m.wasm_chunk_store_size)
        + r.certified_data(id).len() as u128
}

/// B, controlled by the universal canister A (so that A's calls for B cost B nothing but the charge under test),
/// running `module`.
fn controlled_by_a(r: &Replica, module: Vec<u8>) -> (Principal, Principal) {
    let a = installed(r);
    let b = r.create_canister_with_settings(Some(user()), Some(controllers(vec![user(), a])));
    r.install_canister(b, module, vec![], Some(user()));
    (a, b)
}

fn take(r: &Replica, a: Principal, b: Principal) -> Vec<u8> {
    let take = ic00::TakeCanisterSnapshotArgs {
        canister_id: b,
        replace_snapshot: None,
        uninstall_code: None,
        sender_canister_version: None,
    };
    management_call(r, a, 0, "take_canister_snapshot", &take)
}

fn load(r: &Replica, a: Principal, b: Principal, snapshot_id: &[u8]) -> Vec<u8> {
    let load = ic00::LoadCanisterSnapshotArgs {
        canister_id: b,
        snapshot_id: snapshot_id.to_vec(),
        sender_canister_version: None,
    };
    management_call(r, a, 0, "load_canister_snapshot", &load)
}

fn upload_chunk(r: &Replica, a: Principal, b: Principal, chunk: &[u8]) -> Vec<u8> {
    let arg = ic00::UploadChunkArgs {
        canister_id: b,
        chunk: chunk.to_vec(),
    };
    management_call(r, a, 0, "upload_chunk", &arg)
}

fn stored_chunks(r: &Replica, a: Principal, b: Principal) -> usize {
    let reply = management_call(r, a, 0, "stored_chunks", &ic00::CanisterIdRecord { canister_id: b });
    candid::decode_one::<Vec<ic00::ChunkHash>>(&reply[1..]).unwrap().len()
}

fn reject_text(reply: &[u8], code: RejectCode) -> String {
    assert_eq!(&reply[..2], &[b'J', code as u8], "{}", String::from_utf8_lossy(reply));
    String::from_utf8_lossy(&reply[2..]).into_owned()
}

/// Drains the canister just after it paid for its memory (every 10 s, here 10 rounds): the next few management
/// calls (3 rounds each) then see no storage charge.
fn drain_after_a_storage_charge(r: &Replica, id: Principal) {
    loop {
        let before = r.cycle_balance(id);
        r.tick();
        if r.cycle_balance(id) < before {
            break;
        }
    }
    r.drain_cycles(id);
}

/// A module of 3 Wasm pages whose code is two Wasm instructions: compiling it costs 6,000 × 2 = 12,000 instructions,
/// 120 once compiled before (what loading a snapshot of it costs).
fn three_pages() -> Vec<u8> {
    module_with(r#"(memory 3) (func (export "canister_init") nop)"#)
}

#[test]
fn a_snapshot_costs_its_canister_a_baseline_and_an_instruction_per_byte() {
    // The IC charges the snapshotted canister execution_cost(2B + the snapshot's bytes):
    // DEFAULT_CANISTERS_SNAPSHOT_BASELINE_INSTRUCTIONS (rs/config/src/subnet_config.rs) plus one instruction per byte
    // (canister_manager.rs `take_canister_snapshot`). Here: 3 pages of Wasm memory and the module.
    let r = Replica::new();
    let (a, b) = controlled_by_a(&r, three_pages());
    assert_eq!((r.heap_size(b), r.stable_memory_pages(b).0), (3 * 65_536, 0));
    let size = snapshot_size(&r, b);
    assert_eq!(size, 3 * 65_536 + three_pages().len() as u128);
    let before = r.cycle_balance(b);
    assert_eq!(take(&r, a, b)[0], b'R');
    assert_eq!(before - r.cycle_balance(b), 5_000_000 + 2_000_000_000 + size);

    // One that cannot pay keeps its one snapshot. The balance must cover the freezing threshold of the canister
    // with its new snapshot (`cycles_and_memory_usage_checks`): a canister at its threshold cannot grow.
    drain_after_a_storage_charge(&r, b);
    let memory = r.memory_size(b) as u128;
    let reply = take(&r, a, b);
    assert_eq!(
        reject_text(&reply, RejectCode::CanisterError),
        format!(
            "Canister cannot grow memory by {size} bytes due to insufficient cycles. At least {} additional cycles \
             are required.",
            threshold(memory + size) - threshold(memory)
        )
    );
    let list = ic00::ListCanisterSnapshotsArgs { canister_id: b };
    let reply = management_call(&r, a, 0, "list_canister_snapshots", &list);
    let snapshots: Vec<ic00::Snapshot> = candid::decode_one(&reply[1..]).unwrap();
    assert_eq!(snapshots.len(), 1);
}

#[test]
fn a_snapshot_counts_the_module_the_chunk_store_and_the_certified_data() {
    let r = Replica::new();
    let (a, b) = controlled_by_a(&r, wasm());
    r.update_call(b, user(), "set_cert", b"abc".to_vec()).unwrap();
    assert_eq!(upload_chunk(&r, a, b, b"chunk")[0], b'R');
    let size = snapshot_size(&r, b);
    let status = r.canister_status(b, Some(user())).unwrap();
    let memory = status.memory_metrics;
    assert_eq!(memory.wasm_binary_size, candid::Nat::from(wasm().len()));
    assert_eq!(memory.wasm_chunk_store_size, candid::Nat::from(1024 * 1024u64));
    let before = r.cycle_balance(b);
    let reply = take(&r, a, b);
    let snapshot: ic00::Snapshot = candid::decode_one(&reply[1..]).unwrap();
    assert_eq!(before - r.cycle_balance(b), 5_000_000 + 2_000_000_000 + size);
    assert_eq!(snapshot.total_size as u128, size);
    let status = r.canister_status(b, Some(user())).unwrap();
    assert_eq!(status.memory_metrics.snapshots_size, candid::Nat::from(size));
}

#[test]
fn loading_a_snapshot_costs_a_baseline_then_compilation_and_an_instruction_per_byte() {
    // canister_manager.rs `load_canister_snapshot`: execution_cost(2B) (`canister_snapshot_baseline_instructions`),
    // then execution_cost(compilation of the snapshot's module + the snapshot's size). The module was compiled
    // before: 120 instructions. The load brings back the chunk store of the snapshot.
    let r = Replica::new();
    let (a, b) = controlled_by_a(&r, three_pages());
    assert_eq!(upload_chunk(&r, a, b, b"chunk")[0], b'R');
    let size = snapshot_size(&r, b);
    let reply = take(&r, a, b);
    let snapshot: ic00::Snapshot = candid::decode_one(&reply[1..]).unwrap();
    let clear = ic00::CanisterIdRecord { canister_id: b };
    assert_eq!(management_call(&r, a, 0, "clear_chunk_store", &clear)[0], b'R');
    assert_eq!(stored_chunks(&r, a, b), 0);
    let before = r.cycle_balance(b);
    assert_eq!(load(&r, a, b, &snapshot.id)[0], b'R');
    assert_eq!(
        before - r.cycle_balance(b),
        (5_000_000 + 2_000_000_000) + (5_000_000 + 120 + size)
    );
    assert_eq!(stored_chunks(&r, a, b), 1);
}

#[test]
fn a_load_that_cannot_be_paid_for_fails_and_costs_nothing() {
    let r = Replica::new();
    let (a, b) = controlled_by_a(&r, three_pages());
    let size = snapshot_size(&r, b);
    let reply = take(&r, a, b);
    let snapshot: ic00::Snapshot = candid::decode_one(&reply[1..]).unwrap();
    // At its threshold: the baseline execution_cost(2B) = 2,005,000,000 is missing (IC0207, the caller A is a
    // controller, so the IC says how much).
    drain_after_a_storage_charge(&r, b);
    let version = r.canister_version(b);
    let before = r.cycle_balance(b);
    assert_eq!(
        reject_text(&load(&r, a, b, &snapshot.id), RejectCode::SysTransient),
        format!(
            "Canister snapshotting failed with: `Canister {b} is out of cycles: please top up the canister with at \
             least 2005000000 additional cycles`"
        )
    );
    assert_eq!(r.cycle_balance(b), before);
    // The baseline and one cycle short of the rest: the load fails and the baseline is not charged either.
    let rest = 5_000_000 + 120 + size;
    drain_after_a_storage_charge(&r, b);
    r.add_cycles(b, 2_005_000_000 + rest - 1);
    let before = r.cycle_balance(b);
    assert_eq!(
        reject_text(&load(&r, a, b, &snapshot.id), RejectCode::SysTransient),
        format!(
            "Canister snapshotting failed with: `Canister {b} is out of cycles: please top up the canister with at \
             least 1 additional cycles`"
        )
    );
    assert_eq!((r.cycle_balance(b), r.canister_version(b)), (before, version));
    r.add_cycles(b, 1);
    assert_eq!(load(&r, a, b, &snapshot.id)[0], b'R');
    assert_eq!(before + 1 - r.cycle_balance(b), 2_005_000_000 + rest);
}

#[test]
fn upload_chunk_costs_the_store_canister_200m_instructions() {
    // canister_manager.rs `upload_chunk`: the canister whose chunk store it is pays
    // execution_cost(upload_wasm_chunk_instructions = 200M) = 205,000,000, before the chunk is looked at: a chunk
    // already stored costs as much.
    let r = Replica::new();
    let (a, b) = controlled_by_a(&r, three_pages());
    for _ in 0..2 {
        let before = r.cycle_balance(b);
        assert_eq!(upload_chunk(&r, a, b, b"chunk")[0], b'R');
        assert_eq!(before - r.cycle_balance(b), 205_000_000);
    }
    // One that cannot pay: IC0504, nothing stored.
    drain_after_a_storage_charge(&r, b);
    assert_eq!(
        reject_text(&upload_chunk(&r, a, b, b"other"), RejectCode::CanisterError),
        format!(
            "Error from Wasm chunk store: Error charging for 'upload_chunk': Canister {b} is out of cycles: please \
             top up the canister with at least 205000000 additional cycles."
        )
    );
    // One that can pay for the upload but not for the 1 MiB its store grows by keeps paying for the upload
    // (`cycles_and_memory_usage_checks`, IC0532).
    drain_after_a_storage_charge(&r, b);
    r.add_cycles(b, 205_000_000);
    let memory = r.memory_size(b) as u128;
    let before = r.cycle_balance(b);
    assert_eq!(
        reject_text(&upload_chunk(&r, a, b, b"other"), RejectCode::CanisterError),
        format!(
            "Canister cannot grow memory by 1048576 bytes due to insufficient cycles. At least {} additional cycles \
             are required.",
            threshold(memory + 1024 * 1024) - threshold(memory)
        )
    );
    assert_eq!(before - r.cycle_balance(b), 205_000_000);
    assert_eq!(stored_chunks(&r, a, b), 1);
}
