//! `cargo bench -p network --bench http`: what the IC HTTP interface adds to a call, measured in one run on the
//! real child: the same update (`add_member`) and query (`get_member`) through the replica's Rust API, as signed
//! HTTP requests whose answers are not verified, and through ic-agent with all its verification on; calls of the
//! three paths alternate. Rewrites `BENCH.md` next to this crate's README. Needs `wasm/child.wasm.gz`
//! (`scripts/build.sh`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use candid::Encode;
use ic_agent::identity::BasicIdentity;
use ic_agent::Agent;
use network::{Keys, Network};
use shared::child::{ChildInitArg, MemberInput};

/// Calls of each kind per path.
const CALLS: usize = 500;
/// Concurrent ic-agent clients in the throughput run.
const CLIENTS: usize = 8;

fn add_member(i: usize) -> Vec<u8> {
    let input = MemberInput {
        name: format!("member {i}"),
        value: vec![i as u8; 64],
    };
    Encode!(&format!("m{i:08}"), &input).unwrap()
}

fn get_member(i: usize) -> Vec<u8> {
    Encode!(&format!("m{i:08}")).unwrap()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or("unknown".into(), |l| l.split(' ').next().unwrap_or("?").into())
}

/// Median and 90th percentile, in milliseconds.
fn stats(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(times[times.len() / 2]), ms(times[times.len() * 9 / 10]))
}

struct Paths {
    api: Vec<Duration>,
    http: Vec<Duration>,
    agent: Vec<Duration>,
}

impl Paths {
    fn new() -> Self {
        Self {
            api: Vec::new(),
            http: Vec::new(),
            agent: Vec::new(),
        }
    }

    fn row(self, call: &str) -> String {
        let (api, api_p90) = stats(self.api);
        let (http, http_p90) = stats(self.http);
        let (agent, agent_p90) = stats(self.agent);
        format!(
            "| {call} | {api:.3} ms / {api_p90:.3} ms | {http:.3} ms / {http_p90:.3} ms | **{:.3} ms** | \
             {agent:.3} ms / {agent_p90:.3} ms | {:.3} ms |\n",
            http - api,
            agent - api
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let load_at_start = load();
    let network = Network::start("127.0.0.1:0", Keys::generate()).unwrap();
    let agent = Agent::builder()
        .with_url(network.url())
        .with_identity(BasicIdentity::from_raw_key(&[1; 32]))
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
    let http = reqwest::Client::new();
    let post = |endpoint: &str, body: Vec<u8>| {
        let request = http
            .post(format!("{}/api/{endpoint}", network.url()))
            .header("Content-Type", "application/cbor")
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.bytes().await.unwrap();
        }
    };
    let on_replica = |method: &'static str, arg: Vec<u8>, update: bool| {
        network.with_replica(move |r| {
            let start = Instant::now();
            let result = if update {
                r.update_call(child, me, method, arg)
            } else {
                r.query_call(child, me, method, arg)
            };
            result.unwrap();
            start.elapsed()
        })
    };

    let (mut updates, mut queries) = (Paths::new(), Paths::new());
    for i in 0..CALLS {
        let (a, h, g) = (3 * i, 3 * i + 1, 3 * i + 2);
        updates.api.push(on_replica("add_member", add_member(a), true));
        let signed = agent
            .update(&child, "add_member")
            .with_arg(add_member(h))
            .sign()
            .unwrap();
        let start = Instant::now();
        post(&format!("v4/canister/{child}/call"), signed.signed_update).await;
        updates.http.push(start.elapsed());
        let start = Instant::now();
        agent
            .update(&child, "add_member")
            .with_arg(add_member(g))
            .call_and_wait()
            .await
            .unwrap();
        updates.agent.push(start.elapsed());

        queries.api.push(on_replica("get_member", get_member(a), false));
        let signed = agent
            .query(&child, "get_member")
            .with_arg(get_member(h))
            .sign()
            .unwrap();
        let start = Instant::now();
        post(&format!("v3/canister/{child}/query"), signed.signed_query).await;
        queries.http.push(start.elapsed());
        let start = Instant::now();
        agent
            .query(&child, "get_member")
            .with_arg(get_member(g))
            .call()
            .await
            .unwrap();
        queries.agent.push(start.elapsed());
    }

    let throughput = |update: bool| {
        let agent = agent.clone();
        async move {
            let start = Instant::now();
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let agent = agent.clone();
                    tokio::spawn(async move {
                        for i in 0..CALLS / CLIENTS {
                            let n = 3 * CALLS + c * CALLS + i;
                            if update {
                                agent
                                    .update(&child, "add_member")
                                    .with_arg(add_member(n))
                                    .call_and_wait()
                                    .await
                            } else {
                                agent.query(&child, "get_member").with_arg(get_member(i)).call().await
                            }
                            .unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            (CALLS / CLIENTS * CLIENTS) as f64 / start.elapsed().as_secs_f64()
        }
    };
    let updates_per_second = throughput(true).await;
    let queries_per_second = throughput(false).await;

    let keys = Keys::generate();
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..CALLS {
            f();
        }
        start.elapsed().as_secs_f64() * 1e3 / CALLS as f64
    };
    let root_hash = [7; 32];
    let signature = keys.sign_state_root(&root_hash);
    let message = [&b"\x0Dic-state-root"[..], &root_hash].concat();
    let bls_sign = time(&|| drop(keys.sign_state_root(&root_hash)));
    let bls_verify = time(&|| {
        ic_verify_bls_signature::verify_bls_signature(&signature, &message, &keys.root_key_der()[37..]).unwrap()
    });
    let ed25519_sign = time(&|| drop(keys.sign_as_node(&root_hash)));

    let mut report = String::new();
    report += "# Local network: what the IC HTTP interface adds to a call\n\n";
    report += "<!-- Written by benches/http.rs. Do not edit: rerun it. -->\n\n";
    report += "Reproduce: `scripts/build.sh && cargo bench -p network --bench http` (rewrites this file).\n\n";
    writeln!(
        report,
        "Machine: {} CPUs, shared with other work: load average {load_at_start} at the start, {} at the end. Times are \
         medians / 90th percentiles.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load()
    )
    .unwrap();
    writeln!(
        report,
        "The child canister, {CALLS} calls of each kind per path, the paths alternating (each `add_member` a new \
         member, each `get_member` reading one back): the replica's Rust API on the network's own replica \
         (`Replica::update_call`: one round; `Replica::query_call`); the same call as a signed HTTP request (`POST \
         /api/v4/.../call`, `/api/v3/.../query`), its answer read but not verified; and ic-agent 0.49 \
         (`call_and_wait`, `call`) with verification on: the certificate's BLS signature for an update, the node's \
         Ed25519 signature for a query.\n"
    )
    .unwrap();
    report +=
        "| call | replica API | signed HTTP | added by the network | ic-agent | added, with the client's checks |\n";
    report += "|---|---|---|---|---|---|\n";
    report += &updates.row("update (`add_member`)");
    report += &queries.row("query (`get_member`)");
    writeln!(
        report,
        "\nThroughput, {CLIENTS} ic-agent clients at once: {updates_per_second:.0} updates/s, \
         {queries_per_second:.0} queries/s (the replica runs one message at a time).\n\n\
         The signatures alone, per call: the network signs a certificate (BLS12-381) in {bls_sign:.3} ms and a query \
         response (Ed25519) in {ed25519_sign:.3} ms; a client verifies a certificate (a pairing) in {bls_verify:.3} \
         ms, which is most of what ic-agent adds to an update on top of the network."
    )
    .unwrap();
    print!("{report}");
    let path = fleet::wasms::repo_root().join("tests/network/BENCH.md");
    std::fs::write(&path, report).unwrap();
    println!("\nwritten to {}", path.display());
}
