//! `cargo bench -p pocket-ic-server --bench overhead`: what a call through the official `pocket-ic` client and this
//! server costs on top of the replica's Rust API, measured in the same run, and how long an instance takes to
//! create. Rewrites `BENCH.md` next to this crate's README. Needs `wasm/child.wasm.gz` (`scripts/build.sh`).

use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use candid::{Encode, Principal};
use pocket_ic::common::rest::{ExtendedSubnetConfigSet, InstanceConfig, SubnetSpec};
use pocket_ic::{PocketIc, PocketIcBuilder};
use pocket_ic_server::config;
use replica::Replica;
use shared::child::{ChildInitArg, MemberInput};

const SERVER: &str = env!("CARGO_BIN_EXE_pocket-ic-server");
/// Update calls and queries of each kind, alternating between the two paths.
const CALLS: usize = 1_000;
const INSTANCES: usize = 50;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wasm_path = root.join("../../wasm/child.wasm.gz");
    let wasm =
        std::fs::read(&wasm_path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build.sh", wasm_path.display()));
    let me = Principal::self_authenticating(b"pocket-ic-server bench");
    let init = Encode!(&ChildInitArg { parent: me }).unwrap();
    let instance_config = InstanceConfig {
        subnet_config_set: ExtendedSubnetConfigSet {
            application: vec![SubnetSpec::default()],
            ..Default::default()
        },
        ..Default::default()
    };
    let load_before = load_average();

    // The same child twice: on a replica configured as the server configures an instance, and through pocket-ic.
    let replica = Replica::with_config(config::replica_config(&instance_config, 0).unwrap());
    let direct = replica.create_canister_with_settings(Some(me), None);
    replica.install_canister(direct, wasm.clone(), init.clone(), Some(me));
    let start = Instant::now();
    let pic = new_instance();
    let first_instance = start.elapsed();
    let remote = pic.create_canister_with_settings(Some(me), None);
    pic.install_canister(remote, wasm, init, Some(me));
    // The client created its canister with an ingress message (one round, 1 ns): start the calls at the same time.
    replica
        .set_time(UNIX_EPOCH + Duration::from_nanos(pic.get_time().as_nanos_since_unix_epoch()))
        .unwrap();
    assert_eq!(replica.time_nanos(), pic.get_time().as_nanos_since_unix_epoch());

    eprintln!("first instance in {first_instance:?}; {CALLS} update calls and {CALLS} queries on each path...");
    let mut times = [(); 4].map(|()| Vec::with_capacity(CALLS));
    for i in 0..CALLS {
        let id = format!("m{i:05}");
        let update = Encode!(
            &id,
            &MemberInput {
                name: id.clone(),
                value: vec![1; 32]
            }
        )
        .unwrap();
        let query = Encode!(&id).unwrap();
        let (a, t0) = timed(|| replica.update_call(direct, me, "add_member", update.clone()).unwrap());
        let (b, t1) = timed(|| pic.update_call(remote, me, "add_member", update).unwrap());
        // Same module, same clock, same rounds: the replies are identical, so both paths did the same work.
        assert_eq!(a, b, "update {i}");
        let (a, t2) = timed(|| replica.query_call(direct, me, "get_member", query.clone()).unwrap());
        let (b, t3) = timed(|| pic.query_call(remote, me, "get_member", query).unwrap());
        assert_eq!(a, b, "query {i}");
        for (list, t) in times.iter_mut().zip([t0, t1, t2, t3]) {
            list.push(t);
        }
    }
    let [api_update, pic_update, api_query, pic_query] = times.map(Stats::of);

    eprintln!("{INSTANCES} instances...");
    let mut created = Vec::new();
    let mut deleted = Vec::new();
    let mut posted = Vec::new();
    let mut replicas = Vec::new();
    let client = reqwest::blocking::Client::new();
    let instances = pic.get_server_url().join("instances").unwrap();
    for _ in 0..INSTANCES {
        let (instance, t) = timed(new_instance);
        created.push(t);
        deleted.push(timed(|| drop(instance)).1);
        let (answer, t) = timed(|| client.post(instances.clone()).json(&instance_config).send().unwrap());
        posted.push(t);
        let id = answer.json::<serde_json::Value>().unwrap()["Created"]["instance_id"].clone();
        client.delete(format!("{instances}/{id}")).send().unwrap();
        replicas.push(timed(|| Replica::with_config(config::replica_config(&instance_config, 1).unwrap())).1);
    }
    let load_after = load_average();

    let rows = [
        ("update call (`add_member`)", &api_update, &pic_update),
        ("query (`get_member`)", &api_query, &pic_query),
    ];
    let mut calls = String::new();
    for (what, api, through) in rows {
        let added = through.median.saturating_sub(api.median);
        calls += &format!("| {what} | {} | {} | **{}** |\n", api.both(), through.both(), ms(added));
    }
    let [created, posted, replicas, deleted] = [created, posted, replicas, deleted].map(Stats::of);
    let added_to_update = pic_update.median.saturating_sub(api_update.median);
    let added_to_query = pic_query.median.saturating_sub(api_query.median);
    let report = format!(
        "# PocketIC server: overhead per call and instance creation\n\n\
         <!-- Written by benches/overhead.rs. Do not edit: rerun it. -->\n\n\
         Reproduce: `scripts/build.sh && cargo bench -p pocket-ic-server --bench overhead` (rewrites this file).\n\n\
         Machine: {cpus} CPUs ({model}), shared with other work: load average {load_before} at the start, \
         {load_after} at the end. Times are medians / 90th percentiles.\n\n\
         ## Per call\n\n\
         The child canister on two paths, called alternately in one run ({CALLS} calls of each kind per path, each \
         `add_member` a new member, each `get_member` reading it back): the replica's Rust API in process \
         (`Replica::update_call`, `Replica::query_call`), and `PocketIc::update_call` / `PocketIc::query_call` \
         through this server. Both replicas run the same module with the same clock, and every reply of one path \
         equals the other's byte for byte.\n\n\
         | call | replica API | through pocket-ic | added |\n|---|---|---|---|\n{calls}\n\
         An update through the client is two HTTP requests (`submit_ingress_message`, `await_ingress_message`), a \
         query one (`read/query`); both carry the payload and the reply as base64 in JSON.\n\n\
         ## Creating an instance\n\n\
         | what | median / p90 |\n|---|---|\n\
         | `PocketIc::new()` with `POCKET_IC_BIN` set: the client runs `--version`, launches a server that finds the \
         port file taken, then sends `POST /instances` | {} |\n\
         | `POST /instances` alone | {} |\n\
         | `Replica::with_config` in process | {} |\n\
         | dropping the `PocketIc` (`DELETE /instances/<id>`) | {} |\n\
         | the first `PocketIc` of a process, which starts the server | {} |\n\n\
         ## Goals\n\n\
         - Under 1 ms added per call: {} ({} added to an update call, {} to a query).\n\
         - An instance in under 50 ms: {} (`PocketIc::new()` {}, `POST /instances` {}).\n",
        created.both(),
        posted.both(),
        replicas.both(),
        deleted.both(),
        ms(first_instance),
        met(added_to_update < Duration::from_millis(1) && added_to_query < Duration::from_millis(1)),
        ms(added_to_update),
        ms(added_to_query),
        met(created.median < Duration::from_millis(50)),
        ms(created.median),
        ms(posted.median),
        cpus = std::thread::available_parallelism().map_or(0, |n| n.get()),
        model = cpu_model(),
    );
    let out = root.join("BENCH.md");
    std::fs::write(&out, &report).unwrap();
    println!("{report}");
    eprintln!("wrote {}", out.display());
}

fn new_instance() -> PocketIc {
    PocketIcBuilder::new()
        .with_application_subnet()
        .with_server_binary(SERVER.into())
        .build()
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

struct Stats {
    median: Duration,
    p90: Duration,
}

impl Stats {
    /// `median / p90`.
    fn both(&self) -> String {
        format!("{} / {}", ms(self.median), ms(self.p90))
    }

    fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        Self {
            median: times[times.len() / 2],
            p90: times[times.len() * 9 / 10],
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().next().unwrap_or("?").to_string())
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
