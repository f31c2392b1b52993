//! Limits: the ingress size, the capacity of the queue between two canisters, and SYS_UNKNOWN kept to the
//! bounded-wait calls that can get it.

mod common;

use candid::Principal;
use common::*;
use replica::{ic00, RejectCode, Replica};

const MAX_INGRESS_BYTES: usize = 2 * 1024 * 1024;

/// A valid module of `size` bytes: an empty module padded with a custom section.
fn module_of_size(size: usize) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    let name = b"pad";
    // Section id 0, then a 5-byte LEB128 section size, the name and the padding.
    let content = size - m.len() - 1 - 5;
    m.push(0);
    let mut n = content as u32;
    for i in 0..5 {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        m.push(if i < 4 { byte | 0x80 } else { byte });
    }
    m.push(name.len() as u8);
    m.extend_from_slice(name);
    m.resize(size, 0);
    m
}

#[test]
fn ingress_above_2_mib_is_refused() {
    // rs/http_endpoints/public/src/call.rs: a message over max_ingress_bytes_per_message
    // (MAX_INGRESS_BYTES_PER_MESSAGE_APP_SUBNET = 2 MiB) is refused before it reaches the canister. Here the
    // message's bytes are its method name and argument.
    let r = Replica::new();
    let id = installed(&r);
    // `inc` ignores its argument.
    let exactly = vec![7u8; MAX_INGRESS_BYTES - "inc".len()];
    assert_eq!(u64_of(&r.update_call(id, user(), "inc", exactly).unwrap()), 1);
    let err = r
        .submit_call(id, user(), "inc", vec![7u8; MAX_INGRESS_BYTES - 2])
        .unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "Request is too large. Message byte size {} is larger than the max allowed {MAX_INGRESS_BYTES}.",
            MAX_INGRESS_BYTES + 1
        )
    );
    assert_eq!(err.error_code, None);
}

#[test]
fn a_module_over_2_mib_installs_only_in_chunks() {
    let r = Replica::new();
    let id = r.create_canister_with_settings(Some(user()), None);
    let wasm = module_of_size(MAX_INGRESS_BYTES + 1000);
    let err = r
        .install_code(
            Some(user()),
            ic00::CanisterInstallMode::Install,
            id,
            wasm.clone(),
            vec![],
        )
        .unwrap_err();
    assert!(err.message.contains("is too large"), "{err}");
    assert_eq!(r.module_hash(id), None);
    // What dfx and icp-cli do: upload chunks of at most 1 MiB, then install_chunked_code.
    let mut hashes = Vec::new();
    for chunk in wasm.chunks(1024 * 1024) {
        let arg = ic00::UploadChunkArgs {
            canister_id: id,
            chunk: chunk.to_vec(),
        };
        let hash: ic00::ChunkHash = r
            .update(Principal::management_canister(), user(), "upload_chunk", &arg)
            .unwrap();
        hashes.push(hash);
    }
    let arg = ic00::InstallChunkedCodeArgs {
        mode: ic00::CanisterInstallMode::Install,
        target_canister: id,
        store_canister: None,
        chunk_hashes_list: hashes,
        wasm_module_hash: sha2_of(&wasm),
        arg: vec![],
        sender_canister_version: None,
    };
    let () = r
        .update(Principal::management_canister(), user(), "install_chunked_code", &arg)
        .unwrap();
    assert_eq!(r.module_hash(id).map(|h| h.to_vec()), Some(sha2_of(&wasm)));
}

fn sha2_of(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

fn fan_out(n: u32, callee: Principal) -> Vec<u8> {
    let mut arg = n.to_le_bytes().to_vec();
    arg.push(callee.as_slice().len() as u8);
    arg.extend_from_slice(callee.as_slice());
    arg
}

#[test]
fn at_most_500_calls_wait_between_two_canisters() {
    // DEFAULT_QUEUE_CAPACITY = 500 (rs/config/src/execution_environment.rs): every call reserves a slot for its
    // response in the caller's queue from the callee; when none is left, call_perform returns 2 (SYS_TRANSIENT,
    // system_api.rs push_output_request "queue full") and the call is not made.
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    let reply = r.update_call(a, user(), "fan_out", fan_out(501, b)).unwrap();
    let performed = u32::from_le_bytes(reply[..4].try_into().unwrap());
    let failed_with = u32::from_le_bytes(reply[4..8].try_into().unwrap());
    assert_eq!((performed, failed_with), (500, RejectCode::SysTransient as u32));
    assert_eq!(query_u64(&r, b, "get"), 500);
    // Answered calls free their slots: another 500 go through.
    let reply = r.update_call(a, user(), "fan_out", fan_out(500, b)).unwrap();
    assert_eq!(u32::from_le_bytes(reply[..4].try_into().unwrap()), 500);
    // Two messages of A in the same round share the 500 slots.
    let first = r.submit_call(a, user(), "fan_out", fan_out(300, b)).unwrap();
    let second = r.submit_call(a, user(), "fan_out", fan_out(300, b)).unwrap();
    let first = r.await_call(first).unwrap();
    let second = r.await_call(second).unwrap();
    assert_eq!(u32::from_le_bytes(first[..4].try_into().unwrap()), 300);
    assert_eq!(u32::from_le_bytes(second[..4].try_into().unwrap()), 200);
}

#[test]
#[should_panic(expected = "SYS_UNKNOWN only to bounded-wait calls")]
fn sys_unknown_cannot_be_injected_into_an_ingress_message() {
    // ic-error-types: SYS_UNKNOWN (DeadlineExpired, ResponseDropped) is for "best-effort calls only"; an ingress
    // client never gets it, so the replica refuses to fake one.
    let r = Replica::new();
    let id = installed(&r);
    r.reject_next_call(id, "inc", RejectCode::SysUnknown, "lost");
    let _ = r.update_call(id, user(), "inc", vec![]);
}

#[test]
fn sys_unknown_can_be_injected_into_a_bounded_wait_call() {
    let r = Replica::new();
    let a = installed(&r);
    let b = installed(&r);
    r.reject_next_call(b, "echo", RejectCode::SysUnknown, "lost");
    let reply = r.update_call(a, user(), "call", call_arg(4, b, "echo", b"x")).unwrap();
    assert_eq!(&reply[..2], &[b'J', RejectCode::SysUnknown as u8]);
    assert_eq!(&reply[2..], b"lost");
}
