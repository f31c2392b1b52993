//! What the IC HTTP interface adds to a call: the same update (`add_member`) and query (`get_member`) on the real
//! child, through the replica's Rust API, as signed HTTP requests (responses not verified), and through ic-agent
//! with all its verification on; plus the signatures on each side. Writes `tests/network/BENCH.md`.
//!
//!   cargo run -p network --example bench [-- --calls N]
//!
//! The dev profile is the one `scripts/network.sh` runs: dependencies (the replica, the crypto) at opt-level 2. The
//! release profile optimizes for size, for canisters, which makes the signature crates several times slower.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use candid::Encode;
use ic_agent::identity::BasicIdentity;
use ic_agent::Agent;
use network::{Keys, Network};
use shared::child::{ChildInitArg, MemberInput};

fn member(i: usize) -> Vec<u8> {
    let input = MemberInput {
        name: format!("member {i}"),
        value: vec![i as u8; 64],
    };
    Encode!(&format!("m{i:08}"), &input).unwrap()
}

fn get(i: usize) -> Vec<u8> {
    Encode!(&format!("m{i:08}")).unwrap()
}

/// Mean time per call, in microseconds.
fn per_call(total: Duration, calls: usize) -> f64 {
    total.as_secs_f64() * 1e6 / calls as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .map_or(500, |n| n.parse().expect("--calls N"));
    let load = std::fs::read_to_string("/proc/loadavg")
        .map_or("unknown".into(), |l| l.split(' ').next().unwrap_or("?").to_string());
    let network = Network::start("127.0.0.1:0", Keys::generate()).unwrap();
    let identity = BasicIdentity::from_raw_key(&[1; 32]);
    let agent = Agent::builder()
        .with_url(network.url())
        .with_identity(identity)
        .build()
        .unwrap();
    agent.set_root_key(network.root_key().to_vec());
    let me = agent.get_principal().unwrap();
    let wasm = fleet::wasms::read("wasm/child.wasm.gz");
    let child = network.with_replica(move |r| {
        let id = r.create_canister_with_settings(Some(me), None);
        r.install_canister(id, wasm, Encode!(&ChildInitArg { parent: me }).unwrap(), Some(me));
        id
    });

    // 1. The replica's Rust API, on the replica's own thread (no HTTP, no CBOR, no signatures).
    let (api_update, api_query) = network.with_replica(move |r| {
        let start = Instant::now();
        for i in 0..calls {
            r.update_call(child, me, "add_member", member(i)).unwrap();
        }
        let update = start.elapsed();
        let start = Instant::now();
        for i in 0..calls {
            r.query_call(child, me, "get_member", get(i)).unwrap();
        }
        (update, start.elapsed())
    });

    // 2. Signed requests over HTTP, signed in advance; the client reads the response without verifying it.
    let http = reqwest::Client::new();
    let updates: Vec<Vec<u8>> = (calls..2 * calls)
        .map(|i| {
            agent
                .update(&child, "add_member")
                .with_arg(member(i))
                .sign()
                .unwrap()
                .signed_update
        })
        .collect();
    let queries: Vec<Vec<u8>> = (0..calls)
        .map(|i| {
            agent
                .query(&child, "get_member")
                .with_arg(get(i))
                .sign()
                .unwrap()
                .signed_query
        })
        .collect();
    let post = |endpoint: &'static str, body: Vec<u8>| {
        let request = http
            .post(format!("{}/api/{endpoint}", network.url()).replace("{id}", &child.to_text()))
            .header("Content-Type", "application/cbor")
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.bytes().await.unwrap()
        }
    };
    let start = Instant::now();
    for body in updates {
        post("v4/canister/{id}/call", body).await;
    }
    let http_update = start.elapsed();
    let start = Instant::now();
    for body in queries {
        post("v3/canister/{id}/query", body).await;
    }
    let http_query = start.elapsed();

    // 3. ic-agent with verification on: BLS certificate checks and Ed25519 query signature checks.
    let start = Instant::now();
    for i in 2 * calls..3 * calls {
        agent
            .update(&child, "add_member")
            .with_arg(member(i))
            .call_and_wait()
            .await
            .unwrap();
    }
    let agent_update = start.elapsed();
    let start = Instant::now();
    for i in 0..calls {
        agent.query(&child, "get_member").with_arg(get(i)).call().await.unwrap();
    }
    let agent_query = start.elapsed();

    // 4. Throughput with 8 ic-agent clients at once (the replica still runs one message at a time).
    let clients = 8;
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let agent = agent.clone();
            tokio::spawn(async move {
                for i in 0..calls / clients {
                    let n = 3 * calls + c * calls + i;
                    agent
                        .update(&child, "add_member")
                        .with_arg(member(n))
                        .call_and_wait()
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent_update = start.elapsed();
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let agent = agent.clone();
            tokio::spawn(async move {
                for i in 0..calls / clients {
                    agent.query(&child, "get_member").with_arg(get(i)).call().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent_query = start.elapsed();

    // 5. The signatures alone.
    let keys = Keys::generate();
    let root_hash = [7u8; 32];
    let start = Instant::now();
    let mut signature = Vec::new();
    for _ in 0..calls {
        signature = keys.sign_state_root(&root_hash);
    }
    let bls_sign = start.elapsed();
    let message = [&b"\x0Dic-state-root"[..], &root_hash].concat();
    let key = &keys.root_key_der()[37..];
    let start = Instant::now();
    for _ in 0..calls {
        ic_verify_bls_signature::verify_bls_signature(&signature, &message, key).unwrap();
    }
    let bls_verify = start.elapsed();
    let start = Instant::now();
    for _ in 0..calls {
        keys.sign_as_node(&root_hash);
    }
    let ed25519_sign = start.elapsed();

    let row = |what: &str, total: Duration, base: Duration| {
        let (us, base_us) = (per_call(total, calls), per_call(base, calls));
        format!("| {what} | {us:.0} µs | {:.0} | +{:.0} µs |\n", 1e6 / us, us - base_us)
    };
    let mut report = String::new();
    writeln!(
        report,
        "# What the IC HTTP interface adds to a call\n\nMeasured with `cargo run -p network --example bench -- --calls \
         {calls}` (the dev profile `scripts/network.sh` runs) on the project's 2-core machine, load average {load} \
         at the start: {calls} calls of each kind one after the other, on the real child (`wasm/child.wasm.gz`), the \
         update `add_member` (a new 64-byte member each time) and the query `get_member`.\n"
    )
    .unwrap();
    report += "| path | per call | calls/s | added vs. the Rust API |\n|---|---|---|---|\n";
    report += &row(
        "update, replica Rust API (`update_call`: 1 round)",
        api_update,
        api_update,
    );
    report += &row(
        "update, signed HTTP v4 call (response not verified)",
        http_update,
        api_update,
    );
    report += &row(
        "update, ic-agent (`call_and_wait`, certificate verified)",
        agent_update,
        api_update,
    );
    report += &row("query, replica Rust API (`query_call`)", api_query, api_query);
    report += &row(
        "query, signed HTTP v3 query (response not verified)",
        http_query,
        api_query,
    );
    report += &row(
        "query, ic-agent (`call`, node signature verified)",
        agent_query,
        api_query,
    );
    writeln!(
        report,
        "\n{clients} ic-agent clients at once: {:.0} updates/s, {:.0} queries/s.\n",
        calls as f64 / concurrent_update.as_secs_f64(),
        calls as f64 / concurrent_query.as_secs_f64()
    )
    .unwrap();
    writeln!(
        report,
        "The signatures alone: the network signs a certificate (BLS12-381) in {:.0} µs and a query response \
         (Ed25519) in {:.0} µs; a client verifies a certificate in {:.0} µs (a pairing; ic-agent does it once per \
         update, in the last row of updates above).",
        per_call(bls_sign, calls),
        per_call(ed25519_sign, calls),
        per_call(bls_verify, calls)
    )
    .unwrap();
    print!("{report}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCH.md");
    std::fs::write(path, report).unwrap();
    println!("\nwritten to {path}");
}
