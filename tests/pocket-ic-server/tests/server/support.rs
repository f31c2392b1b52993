//! What every test here shares: PocketIC instances on our server, the built canisters, Candid calls.

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use candid::utils::{ArgumentDecoder, ArgumentEncoder};
use candid::Principal;
use pocket_ic::{PocketIc, RejectResponse};

/// Our server, as cargo built it for these tests.
pub const SERVER: &str = env!("CARGO_BIN_EXE_pocket-ic-server");

/// Idle time after which the shared server exits. Shorter than the default 60 s so that it does not outlive the
/// test run by a minute; long enough for any pause between requests of these tests.
const SHARED_SERVER_TTL: Duration = Duration::from_secs(20);

/// A new instance, made exactly as a user's test makes one: `PocketIc::new()`, with `POCKET_IC_BIN` naming our
/// server. The first call of the process points `POCKET_IC_BIN` at it and starts the shared server (the one the
/// client reuses for the whole process) with a short TTL.
pub fn pic() -> PocketIc {
    static START: Once = Once::new();
    START.call_once(|| {
        // Every test calls this first and waits for `call_once`, so no other thread reads the environment yet.
        std::env::set_var("POCKET_IC_BIN", SERVER);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(pocket_ic::start_server(pocket_ic::StartServerParams {
            reuse: true,
            ttl: Some(SHARED_SERVER_TTL),
            ..Default::default()
        }));
    });
    PocketIc::new()
}

/// The repository root (two levels above this crate), from the manifest directory cargo names at run time: a test
/// binary reused from another clone that shares the target directory reads this clone's files.
pub fn repo_root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
        .join("../..")
}

/// A built module under `wasm/`; panics with the build command if it is missing.
pub fn wasm(path: &str) -> Vec<u8> {
    let path = repo_root().join("wasm").join(path);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run scripts/build.sh and scripts/build.sh --next",
            path.display()
        )
    })
}

/// The `version()` of a built child: `wasm/child.version` or `wasm/next/child.version` for `dir` `""` or `"next/"`.
pub fn child_version(dir: &str) -> String {
    String::from_utf8(wasm(&format!("{dir}child.version")))
        .expect("child.version is UTF-8")
        .trim()
        .to_string()
}

/// The test's controller of every canister it creates.
pub fn controller() -> Principal {
    Principal::self_authenticating(b"pocket-ic-server test controller")
}

/// A Candid update call as `sender` through `PocketIc::update_call`; panics on a reject.
pub fn update<A: ArgumentEncoder, R: for<'a> ArgumentDecoder<'a>>(
    pic: &PocketIc,
    canister: Principal,
    sender: Principal,
    method: &str,
    args: A,
) -> R {
    try_update(pic, canister, sender, method, args).unwrap_or_else(|e| panic!("{canister}.{method} was rejected: {e}"))
}

pub fn try_update<A: ArgumentEncoder, R: for<'a> ArgumentDecoder<'a>>(
    pic: &PocketIc,
    canister: Principal,
    sender: Principal,
    method: &str,
    args: A,
) -> Result<R, RejectResponse> {
    pocket_ic::update_candid_as(pic, canister, sender, method, args)
}

/// A Candid query as the anonymous principal; panics on a reject.
pub fn query<A: ArgumentEncoder, R: for<'a> ArgumentDecoder<'a>>(
    pic: &PocketIc,
    canister: Principal,
    method: &str,
    args: A,
) -> R {
    pocket_ic::query_candid(pic, canister, method, args)
        .unwrap_or_else(|e| panic!("{canister}.{method} was rejected: {e}"))
}

/// Ticks (advancing the time by `step` before each tick) until `done` holds, at most `max_ticks` times; returns the
/// ticks it took. Whether one tick delivers one inter-canister hop (this replica today) or all of them (PocketIC),
/// the loop ends when the work is done.
pub fn tick_until(pic: &PocketIc, step: Duration, max_ticks: u32, mut done: impl FnMut() -> bool) -> u32 {
    for ticks in 0..=max_ticks {
        if done() {
            return ticks;
        }
        pic.advance_time(step);
        pic.tick();
    }
    panic!("not done after {max_ticks} ticks");
}
