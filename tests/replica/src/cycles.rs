//! Cycles fees of a 13-node application subnet: the fee table of dfinity/ic `rs/config/src/subnet_config.rs`
//! (`CyclesAccountManagerConfig::application_subnet`) and the formulas of
//! `rs/cycles_account_manager/src/cycles_account_manager.rs`. Fees scale by subnet size / 13, here 1.

use candid::Principal;

pub const CANISTER_CREATION_FEE: u128 = 500_000_000_000;
pub const UPDATE_MESSAGE_EXECUTION_FEE: u128 = 5_000_000;
pub const TEN_UPDATE_INSTRUCTIONS_EXECUTION_FEE: u128 = 10;
pub const XNET_CALL_FEE: u128 = 260_000;
pub const XNET_BYTE_TRANSMISSION_FEE: u128 = 1_000;
pub const INGRESS_MESSAGE_RECEPTION_FEE: u128 = 1_200_000;
pub const INGRESS_BYTE_RECEPTION_FEE: u128 = 2_000;
pub const GIB_STORAGE_PER_SECOND_FEE: u128 = 127_000;
/// Canisters pay for their memory once this much time has passed since the last charge.
pub const DURATION_BETWEEN_ALLOCATION_CHARGES_SECS: u64 = 10;
/// The largest response a call can get (`MAX_INTER_CANISTER_PAYLOAD_IN_BYTES`): its transmission is prepaid.
pub const MAX_RESPONSE_BYTES: u128 = 2 * 1024 * 1024;
/// An update_settings ingress message this small is not charged, so that a frozen canister can be unfrozen
/// (`MAX_DELAYED_INGRESS_COST_PAYLOAD_SIZE`).
pub const FREE_UPDATE_SETTINGS_BYTES: usize = 366;
/// A threshold signature or key derivation (`ECDSA_SIGNATURE_FEE`, `SCHNORR_SIGNATURE_FEE`, `VETKD_FEE`), before
/// scaling to the subnet that holds the key.
pub const THRESHOLD_SIGNATURE_FEE: u128 = 10_000_000_000;
/// Fees are set for this subnet size and scaled to the real one (`DEFAULT_REFERENCE_SUBNET_SIZE`).
pub const REFERENCE_SUBNET_SIZE: u128 = 13;
/// Compiling one Wasm instruction costs as much as executing this many (`DEFAULT_COST_TO_COMPILE_WASM_INSTRUCTION`,
/// `rs/config/src/embedders.rs`); a module compiled before costs a hundredth (`DESERIALIZATION_SPEED_UP_FACTOR`).
pub const COST_TO_COMPILE_WASM_INSTRUCTION: u64 = 6_000;
pub const DESERIALIZATION_SPEED_UP_FACTOR: u64 = 100;

/// Taking a snapshot costs this many instructions plus one per byte of the snapshot
/// (`DEFAULT_CANISTERS_SNAPSHOT_BASELINE_INSTRUCTIONS`; the charge as `rs/execution_environment`'s tests compute it:
/// `canister_snapshot_baseline_instructions + snapshot_size_bytes`, at `execution_cost`).
pub const SNAPSHOT_BASELINE_INSTRUCTIONS: u64 = 2_000_000_000;
/// Uploading a chunk to a chunk store costs this many instructions (`DEFAULT_UPLOAD_CHUNK_INSTRUCTIONS`,
/// `upload_wasm_chunk_instructions`).
pub const UPLOAD_CHUNK_INSTRUCTIONS: u64 = 200_000_000;

const SECONDS_PER_DAY: u128 = 86_400;
const GIB: u128 = 1 << 30;

/// Cycles for `instructions` (`convert_instructions_to_cycles`, Wasm32).
pub fn instructions_cost(instructions: u64) -> u128 {
    TEN_UPDATE_INSTRUCTIONS_EXECUTION_FEE * instructions as u128 / 10
}

/// `execution_cost`: the per-message fee plus the instructions.
pub fn execution_cost(instructions: u64) -> u128 {
    UPDATE_MESSAGE_EXECUTION_FEE + instructions_cost(instructions)
}

/// `ingress_induction_cost_from_bytes`.
pub fn ingress_cost(bytes: usize) -> u128 {
    INGRESS_MESSAGE_RECEPTION_FEE + INGRESS_BYTE_RECEPTION_FEE * bytes as u128
}

/// What a call pays at `call_perform` for sending `bytes` (method name + payload): the call fee and its bytes.
pub fn call_fee(bytes: usize) -> u128 {
    XNET_CALL_FEE + XNET_BYTE_TRANSMISSION_FEE * bytes as u128
}

/// Prepaid at `call_perform` for the largest response (`prepayment_for_response_transmission`).
pub fn response_transmission_prepay() -> u128 {
    XNET_BYTE_TRANSMISSION_FEE * MAX_RESPONSE_BYTES
}

/// The transmission of a response of `bytes`, out of its prepayment.
pub fn response_transmission(bytes: usize) -> u128 {
    XNET_BYTE_TRANSMISSION_FEE * bytes as u128
}

/// `xnet_call_total_fee`, what `ic0.cost_call` reports: call fee, its bytes, and the prepayments of the response's
/// transmission and of its callback's execution (`limit` instructions).
pub fn cost_call(bytes: usize, limit: u64) -> u128 {
    call_fee(bytes) + response_transmission_prepay() + execution_cost(limit)
}

/// A threshold signature with a key held by a subnet of `nodes` nodes (`scale_cost`).
pub fn threshold_signature_fee(nodes: u128) -> u128 {
    THRESHOLD_SIGNATURE_FEE * nodes / REFERENCE_SUBNET_SIZE
}

/// `memory_cost`: `bytes` stored for `seconds`.
pub fn memory_cost(bytes: u64, seconds: u64) -> u128 {
    bytes as u128 * GIB_STORAGE_PER_SECOND_FEE * seconds as u128 / GIB
}

/// `idle_cycles_burned_rate`: what the canister's memory costs per day (no compute allocation is modelled).
pub fn idle_cycles_burned_per_day(memory: u64) -> u128 {
    memory_cost(memory, SECONDS_PER_DAY as u64)
}

/// `freeze_threshold_cycles`: the idle burn over the freezing threshold (in seconds).
pub fn freezing_threshold(memory: u64, freezing_threshold_secs: u64) -> u128 {
    idle_cycles_burned_per_day(memory) * freezing_threshold_secs as u128 / SECONDS_PER_DAY
}

/// Compilation counted as instructions: 6,000 per Wasm instruction, a hundredth of it for a cached module.
pub fn compilation_instructions(wasm_instructions: u64, cached: bool) -> u64 {
    let full = COST_TO_COMPILE_WASM_INSTRUCTION * wasm_instructions;
    if cached {
        full / DESERIALIZATION_SPEED_UP_FACTOR
    } else {
        full
    }
}

/// `CanisterOutOfCyclesError`'s text: with `reveal_top_up` (the caller is a controller) it says how many cycles
/// are missing.
pub fn out_of_cycles(canister: Principal, requested: u128, available: u128, threshold: u128, reveal: bool) -> String {
    if reveal {
        let missing = (threshold + requested).saturating_sub(available);
        format!("Canister {canister} is out of cycles: please top up the canister with at least {missing} additional cycles")
    } else {
        format!("Canister {canister} is out of cycles")
    }
}
