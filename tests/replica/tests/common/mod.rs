//! Helpers shared by the replica's test files: the universal test canister and how to call it.
#![allow(dead_code)]

use std::io::Write;

use candid::{CandidType, Principal};
use replica::Replica;

pub const UNIVERSAL: &str = include_str!("../universal.wat");

pub fn wasm() -> Vec<u8> {
    wat::parse_str(UNIVERSAL).expect("universal.wat")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn user() -> Principal {
    Principal::from_slice(&[7; 29])
}

pub fn installed(r: &Replica) -> Principal {
    let id = r.create_canister_with_settings(Some(user()), None);
    r.install_canister(id, wasm(), b"hello".to_vec(), Some(user()));
    id
}

pub fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

pub fn query_u64(r: &Replica, id: Principal, method: &str) -> u64 {
    u64_of(&r.query_call(id, user(), method, vec![]).unwrap())
}

/// The universal canister's `call` argument: flags, callee, method, payload (flags: see universal.wat).
pub fn call_arg(flags: u8, callee: Principal, method: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, callee.as_slice().len() as u8];
    v.extend_from_slice(callee.as_slice());
    v.push(method.len() as u8);
    v.extend_from_slice(method.as_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn module_with(body: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {body})")).unwrap()
}

/// Has the universal canister `from` call the management canister's `method` with `arg` (flags: see universal.wat),
/// and returns its `call` reply.
pub fn management_call(r: &Replica, from: Principal, flags: u8, method: &str, arg: &impl CandidType) -> Vec<u8> {
    let payload = candid::encode_one(arg).unwrap();
    r.update_call(
        from,
        user(),
        "call",
        call_arg(flags, Principal::management_canister(), method, &payload),
    )
    .unwrap()
}
