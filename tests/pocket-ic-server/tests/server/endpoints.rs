//! What the server answers on every endpoint of the PocketIC REST subset, through the official client where it
//! exposes the endpoint and as raw HTTP where the answer itself (status, JSON error) is the point.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use candid::{Encode, Principal};
use pocket_ic::common::rest::{BlobCompression, RawEffectivePrincipal, SubnetKind};
use pocket_ic::{ErrorCode, IngressStatusResult, PocketIc, PocketIcBuilder, RejectCode, Time};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::child::{ChildError, ChildInitArg, Member, MemberInput};

use crate::support::{child_version, controller, pic, wasm};

/// Raw HTTP to the server and to one instance.
struct Raw {
    server: String,
    instance: String,
}

impl Raw {
    fn new(pic: &PocketIc) -> Self {
        let server = pic.get_server_url().to_string();
        let instance = format!("{server}instances/{}/", pic.instance_id());
        Self { server, instance }
    }

    fn send(&self, method: &str, url: String, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let request = match method {
            "GET" => client.get(url),
            "POST" => client.post(url).json(&body.unwrap_or(json!({}))),
            "DELETE" => client.delete(url),
            other => panic!("method {other}"),
        };
        let response = request.send().expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, value)
    }

    /// `method /instances/<id>/<endpoint>`.
    fn at(&self, method: &str, endpoint: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, format!("{}{endpoint}", self.instance), body)
    }

    /// `method /<path>` on the server.
    fn server(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, format!("{}{path}", self.server), body)
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The message of a JSON error answer.
fn message(value: &Value) -> &str {
    value["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {value}"))
}

fn install_child(pic: &PocketIc) -> Principal {
    let me = controller();
    let child = pic.create_canister_with_settings(Some(me), None);
    pic.install_canister(
        child,
        wasm("child.wasm.gz"),
        Encode!(&ChildInitArg { parent: me }).unwrap(),
        Some(me),
    );
    child
}

fn add_member_args(id: &str) -> Vec<u8> {
    let input = MemberInput {
        name: id.to_uppercase(),
        value: vec![1, 2, 3],
    };
    Encode!(&id, &input).unwrap()
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected the client to panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn post_instances_answers_one_application_subnet_and_names_what_it_cannot_run() {
    let pic = pic();
    let topology = pic.topology();
    assert_eq!(topology.subnet_configs.len(), 1);
    let (subnet, config) = topology.subnet_configs.iter().next().unwrap();
    assert_eq!(config.subnet_kind, SubnetKind::Application);
    assert_eq!(topology.get_app_subnets(), vec![*subnet]);
    let canister = pic.create_canister();
    assert_eq!(topology.get_subnet(canister), Some(*subnet));
    let default = Principal::from_slice(&topology.default_effective_canister_id.canister_id);
    assert_eq!(topology.get_subnet(default), Some(*subnet));

    let raw = Raw::new(&pic);
    let mut config = json!({
        "subnet_config_set": {
            "nns": { "state_config": "New", "instruction_config": "Production" },
            "system": [], "application": [{ "state_config": "New", "instruction_config": "Production" }],
            "verified_application": [],
        },
        "http_gateway_config": { "ip_addr": null, "port": null, "domains": null, "https_config": null,
                                 "domain_custom_provider_local_file": null },
    });
    let (status, answer) = raw.server("POST", "instances", Some(config.clone()));
    assert_eq!(status, 400);
    let error = answer["Error"]["message"].as_str().unwrap();
    assert!(
        error.contains("POST /instances") && error.contains("an NNS subnet"),
        "{error}"
    );
    assert!(error.contains("http_gateway_config"), "{error}");

    config["subnet_config_set"]["nns"] = Value::Null;
    config["http_gateway_config"] = Value::Null;
    config["initial_time"] = json!({ "Timestamp": { "nanos_since_epoch": 1 } });
    let (status, answer) = raw.server("POST", "instances", Some(config));
    assert_eq!(status, 400);
    assert!(
        answer["Error"]["message"]
            .as_str()
            .unwrap()
            .contains("earliest PocketIC accepts"),
        "{answer}"
    );
}

#[test]
fn the_initial_time_is_pocket_ics_default_or_the_one_asked_for() {
    let pic = pic();
    // 2021-05-06T19:17:10Z, PocketIC's default.
    assert_eq!(pic.get_time().as_nanos_since_unix_epoch(), 1_620_328_630_000_000_000);
    drop(pic);
    let at = Time::from_nanos_since_unix_epoch(1_767_225_600_000_000_000);
    let pic = PocketIcBuilder::new()
        .with_application_subnet()
        .with_initial_time(at)
        .build();
    assert_eq!(pic.get_time(), at);
}

#[test]
fn instances_are_independent_and_deleting_one_frees_it() {
    let a = pic();
    let b = pic();
    assert_ne!(a.instance_id(), b.instance_id());
    let canister = a.create_canister();
    assert!(a.canister_exists(canister));
    assert!(!b.canister_exists(canister));
    a.advance_time(Duration::from_secs(3600));
    assert_ne!(a.get_time(), b.get_time());

    let raw = Raw::new(&a);
    let id = a.instance_id();
    let (status, states) = raw.server("GET", "instances", None);
    assert_eq!(status, 200);
    assert_eq!(states[id], "Available");
    drop(a);
    let (_, states) = raw.server("GET", "instances", None);
    // The instance's thread has ended, and its replica with it.
    assert_eq!(states[id], "Deleted");
    let (status, answer) = raw.at("GET", "read/topology", None);
    assert_eq!(status, 400);
    assert_eq!(message(&answer), format!("instance {id} was deleted"));
    assert!(b.canister_exists(b.create_canister()));
}

#[test]
fn ingress_messages_are_submitted_awaited_and_their_status_kept() {
    let pic = pic();
    let me = controller();
    let child = install_child(&pic);

    let id = pic
        .submit_call(child, me, "add_member", add_member_args("bob"))
        .unwrap();
    assert_eq!(id.message_id.len(), 32);
    assert_eq!(pic.ingress_status(id.clone()), None, "nothing ran yet");
    let reply = pic.await_call(id.clone()).unwrap();
    let (added,): (Result<Member, ChildError>,) = candid::decode_args(&reply).unwrap();
    assert_eq!(added.unwrap().name, "BOB");
    assert_eq!(pic.ingress_status(id.clone()), Some(Ok(reply)));
    let other = Principal::from_slice(&[9; 29]);
    match pic.ingress_status_as(id.clone(), other) {
        IngressStatusResult::Forbidden(text) => assert!(text.contains("not signed by the caller"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pic.ingress_status_as(id, me),
        IngressStatusResult::Success(Ok(_))
    ));

    // A call the canister rejects comes back as the client's RejectResponse.
    let dup = pic
        .update_call(child, me, "add_member", add_member_args("bob"))
        .unwrap();
    let (dup,): (Result<Member, ChildError>,) = candid::decode_args(&dup).unwrap();
    assert!(matches!(dup, Err(ChildError::AlreadyExists { .. })));
    let reject = pic
        .update_call(child, me, "no_such_method", Encode!().unwrap())
        .unwrap_err();
    assert_eq!(reject.reject_code, RejectCode::CanisterError);
    assert!(reject.certified);

    let missing = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0x7f, 0, 1, 1]);
    let reject = pic.submit_call(missing, me, "m", vec![]).unwrap_err();
    assert_eq!(reject.reject_code, RejectCode::DestinationInvalid);
    assert_eq!(reject.error_code, ErrorCode::CanisterNotFound);

    let raw = Raw::new(&pic);
    let unknown = json!({ "effective_principal": "None", "message_id": b64(&[0; 32]) });
    let (status, answer) = raw.at("POST", "update/await_ingress_message", Some(unknown.clone()));
    assert_eq!(status, 400);
    assert!(
        message(&answer).starts_with("update/await_ingress_message: no message with id"),
        "{answer}"
    );
    let (status, answer) = raw.at(
        "POST",
        "read/ingress_status",
        Some(json!({ "raw_message_id": unknown, "raw_caller": null })),
    );
    assert_eq!((status, answer), (200, Value::Null));
}

#[test]
fn queries_answer_replies_and_rejects() {
    let pic = pic();
    let child = install_child(&pic);
    let reply = pic
        .query_call(child, Principal::anonymous(), "version", Encode!().unwrap())
        .unwrap();
    assert_eq!(candid::decode_one::<String>(&reply).unwrap(), child_version(""));
    let reject = pic
        .query_call(child, Principal::anonymous(), "no_such_query", Encode!().unwrap())
        .unwrap_err();
    assert_eq!(reject.reject_code, RejectCode::CanisterError);
    assert!(!reject.certified, "query results are not certified");

    let raw = Raw::new(&pic);
    let call = |canister: Principal, sender_info: Value| {
        json!({
            "sender": b64(Principal::anonymous().as_slice()), "canister_id": b64(canister.as_slice()),
            "effective_principal": "None", "method": "version", "payload": b64(&Encode!().unwrap()),
            "sender_info": sender_info,
        })
    };
    let (status, answer) = raw.at("POST", "read/query", Some(call(child, Value::Null)));
    assert_eq!(status, 200);
    assert_eq!(answer["Ok"], json!(b64(&reply)));
    let (status, answer) = raw.at(
        "POST",
        "read/query",
        Some(call(Principal::management_canister(), Value::Null)),
    );
    assert_eq!(status, 501);
    assert!(
        message(&answer).contains("query calls to the management canister"),
        "{answer}"
    );
    let info = json!({ "info": b64(b"x"), "signer": b64(&[1]) });
    let (status, answer) = raw.at("POST", "read/query", Some(call(child, info)));
    assert_eq!(status, 501);
    assert!(message(&answer).contains("sender_info is not supported"), "{answer}");
    let (status, answer) = raw.at("POST", "read/query", Some(json!({ "sender": 1 })));
    assert_eq!(status, 400);
    assert!(
        message(&answer).starts_with("read/query: invalid JSON body"),
        "{answer}"
    );
}

#[test]
fn tick_runs_one_round_and_advances_the_time_by_one_nanosecond() {
    let pic = pic();
    let before = pic.get_time();
    pic.tick();
    assert_eq!(pic.get_time(), before + Duration::from_nanos(1));

    let raw = Raw::new(&pic);
    let (status, answer) = raw.at("POST", "update/tick", Some(json!({})));
    assert_eq!((status, answer), (200, Value::Null));
    let blockmakers = json!({ "blockmakers": [] });
    let (status, answer) = raw.at("POST", "update/tick", Some(blockmakers));
    assert_eq!(status, 501);
    assert!(message(&answer).starts_with("update/tick: blockmaker metrics are not supported"));
}

#[test]
fn time_is_set_forward_only_and_canisters_see_it() {
    let pic = pic();
    let me = controller();
    let child = install_child(&pic);
    let later = pic.get_time() + Duration::from_secs(86_400);
    pic.set_time(later);
    assert_eq!(pic.get_time(), later);
    let even_later = later + Duration::from_secs(60);
    pic.set_certified_time(even_later);
    assert_eq!(pic.get_time(), even_later);
    pic.set_time(even_later);

    let reply = pic
        .update_call(child, me, "add_member", add_member_args("carol"))
        .unwrap();
    let (added,): (Result<Member, ChildError>,) = candid::decode_args(&reply).unwrap();
    let created_at = added.unwrap().created_at;
    assert!(created_at >= even_later.as_nanos_since_unix_epoch(), "{created_at}");

    let raw = Raw::new(&pic);
    let now = pic.get_time().as_nanos_since_unix_epoch();
    for endpoint in ["update/set_time", "update/set_certified_time"] {
        let (status, answer) = raw.at("POST", endpoint, Some(json!({ "nanos_since_epoch": 5 })));
        assert_eq!(status, 400);
        assert_eq!(message(&answer), format!("{endpoint}: SettingTimeIntoPast(({now}, 5))"));
    }
    let (status, time) = raw.at("GET", "read/get_time", None);
    assert_eq!((status, time), (200, json!({ "nanos_since_epoch": now })));
}

#[test]
fn cycles_are_read_and_added() {
    let pic = pic();
    let canister = pic.create_canister();
    // The client creates canisters with 100T cycles.
    assert_eq!(pic.cycle_balance(canister), 100_000_000_000_000);
    assert_eq!(pic.add_cycles(canister, 5), 100_000_000_000_005);
    assert_eq!(pic.cycle_balance(canister), 100_000_000_000_005);

    let raw = Raw::new(&pic);
    let missing = json!({ "canister_id": b64(&[0, 0, 0, 0, 0, 0, 0x7f, 0, 1, 1]) });
    let (status, answer) = raw.at("POST", "read/get_cycles", Some(missing.clone()));
    assert_eq!(status, 400);
    assert!(
        message(&answer).starts_with("read/get_cycles: CanisterNotFound("),
        "{answer}"
    );
    assert_eq!(pic.add_cycles(canister, u128::MAX - 100_000_000_000_005), u128::MAX);
    let overflow = json!({ "canister_id": b64(canister.as_slice()), "amount": 1 });
    let (status, answer) = raw.at("POST", "update/add_cycles", Some(overflow));
    assert_eq!(status, 400);
    assert!(message(&answer).contains("overflows"), "{answer}");
}

#[test]
fn controllers_subnet_and_public_key() {
    let pic = pic();
    let me = controller();
    let canister = pic.create_canister_with_settings(Some(me), None);
    assert_eq!(pic.get_controllers(canister), vec![me]);
    let subnet = pic.topology().get_app_subnets()[0];
    assert_eq!(pic.get_subnet(canister), Some(subnet));
    let missing = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0x7f, 0, 1, 1]);
    assert_eq!(pic.get_subnet(missing), None);
    // No NNS subnet, so the client reports no root key, as PocketIC does.
    assert_eq!(pic.root_key(), None);

    let raw = Raw::new(&pic);
    let (status, key) = raw.at(
        "POST",
        "read/pub_key",
        Some(json!({ "subnet_id": b64(subnet.as_slice()) })),
    );
    assert_eq!(status, 200);
    let key: Vec<u8> = serde_json::from_value(key).unwrap();
    // A DER-framed BLS12-381 key: a 37-byte prefix and 96 key bytes.
    assert_eq!(key.len(), 133);
    assert_eq!(Principal::self_authenticating(&key), subnet);
    let (status, answer) = raw.at("POST", "read/pub_key", Some(json!({ "subnet_id": b64(&[1]) })));
    assert_eq!(status, 400);
    assert!(message(&answer).contains("SubnetNotFound"), "{answer}");
    let (status, answer) = raw.at(
        "POST",
        "read/get_controllers",
        Some(json!({ "canister_id": b64(&[7; 40]) })),
    );
    assert_eq!(status, 400);
    assert!(message(&answer).contains("canister_id is not a principal"), "{answer}");
}

#[test]
fn stable_memory_is_set_from_a_blob_and_read_back() {
    let pic = pic();
    let canister = pic.create_canister();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    pic.set_stable_memory(canister, data.clone(), BlobCompression::NoCompression);
    let read = pic.get_stable_memory(canister);
    // Whole 64 KiB pages: the data, then zeros.
    assert_eq!(read.len(), 2 * 65_536);
    assert_eq!(&read[..data.len()], &data[..]);
    assert!(read[data.len()..].iter().all(|&b| b == 0));

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"compressed").unwrap();
    let gz = gz.finish().unwrap();
    pic.set_stable_memory(canister, gz.clone(), BlobCompression::Gzip);
    assert_eq!(&pic.get_stable_memory(canister)[..10], b"compressed");

    // The blob store answers the upload as sent, with its encoding.
    let server = pic.get_server_url();
    let client = reqwest::blocking::Client::new();
    let id = client
        .post(server.join("blobstore").unwrap())
        .header("Content-Encoding", "gzip")
        .body(gz.clone())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(id, hex::encode(Sha256::digest(&gz)));
    let fetched = client
        .get(server.join(&format!("blobstore/{id}")).unwrap())
        .send()
        .unwrap();
    assert_eq!(fetched.headers()["content-encoding"], "gzip");
    assert_eq!(fetched.bytes().unwrap().to_vec(), gz);
    let refused = client
        .post(server.join("blobstore").unwrap())
        .header("Content-Encoding", "br")
        .body(vec![1])
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    let raw = Raw::new(&pic);
    let missing = json!({ "canister_id": b64(canister.as_slice()), "blob_id": b64(&[0; 32]) });
    let (status, answer) = raw.at("POST", "update/set_stable_memory", Some(missing));
    assert_eq!(status, 400);
    assert!(message(&answer).contains("no blob with id"), "{answer}");
}

#[test]
fn unsupported_features_answer_a_json_error_that_names_the_endpoint() {
    let pic = pic();
    let raw = Raw::new(&pic);
    for (method, endpoint, why) in [
        ("POST", "auto_progress", "live mode"),
        ("GET", "read/get_canister_http", "HTTP outcalls"),
        ("POST", "update/mock_canister_http", "HTTP outcalls"),
        ("POST", "update/mock_flexible_canister_http", "HTTP outcalls"),
        ("POST", "update/canister_snapshot_download", "snapshot download"),
        ("POST", "update/canister_snapshot_upload", "snapshot download"),
        ("POST", "update/delete_subnet", "single subnet"),
        ("GET", "api/v2/status", "HTTP interface"),
        ("POST", "api/v3/canister/aaaaa-aa/call", "HTTP interface"),
        ("GET", "_/dashboard", "dashboard"),
    ] {
        let (status, answer) = raw.at(method, endpoint, Some(json!({})));
        assert_eq!(status, 501, "{method} {endpoint}: {answer}");
        let text = message(&answer);
        assert!(
            text.starts_with(&format!("{endpoint}: not supported by this server")),
            "{text}"
        );
        assert!(text.contains(why), "{text}");
    }
    // Never live, so: not progressing, and stopping is a no-op.
    assert!(!pic.auto_progress_enabled());
    assert_eq!(raw.at("POST", "stop_progress", None), (200, Value::Null));

    let (status, answer) = raw.at("GET", "read/no_such_endpoint", None);
    assert_eq!(status, 404);
    assert!(
        message(&answer).contains("unknown endpoint GET read/no_such_endpoint"),
        "{answer}"
    );
    let (status, answer) = raw.server("GET", "instances/999999/read/topology", None);
    assert_eq!((status, message(&answer)), (404, "no instance 999999"));
    let (status, answer) = raw.server("POST", "http_gateway", Some(json!({})));
    assert_eq!(status, 501);
    assert!(
        answer["Error"]["message"].as_str().unwrap().contains("not supported"),
        "{answer}"
    );
    let (status, answer) = raw.server("POST", "verify_signature", Some(json!({})));
    assert_eq!(status, 501);
    assert!(answer["Err"]
        .as_str()
        .unwrap()
        .starts_with("verify_signature: canister signatures"));

    // Threshold keys and HTTP outcalls are missing from the replica's management canister: a clear reject.
    for method in ["sign_with_ecdsa", "http_request"] {
        let none = RawEffectivePrincipal::None;
        let management = Principal::management_canister();
        let reject = pic
            .update_call_with_effective_principal(management, none, controller(), method, Encode!().unwrap())
            .unwrap_err();
        assert!(reject.reject_message.contains(method), "{reject}");
    }

    // The official client surfaces the server's message.
    let text = panic_message(|| drop(pic.get_canister_http()));
    assert!(text.contains("canister HTTP outcalls are not supported"), "{text}");
    let text = panic_message(|| {
        drop(
            PocketIcBuilder::new()
                .with_nns_subnet()
                .with_application_subnet()
                .build(),
        )
    });
    assert!(text.contains("an NNS subnet"), "{text}");
}

#[test]
fn the_management_canister_works_through_ingress() {
    let pic = pic();
    let me = Some(controller());
    let wanted = Principal::from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0, 1, 1]);
    let canister = pic.create_canister_with_id(me, None, wanted).unwrap();
    assert_eq!(canister, wanted);
    assert!(
        pic.create_canister_with_id(me, None, wanted).is_err(),
        "the id is taken"
    );

    // Chunked install, as the client does for modules over 2 MB.
    let module = wasm("child.wasm.gz");
    let hashes: Vec<Vec<u8>> = module
        .chunks(100_000)
        .map(|chunk| pic.upload_chunk(canister, me, chunk.to_vec()).unwrap())
        .collect();
    assert_eq!(pic.stored_chunks(canister, me).unwrap().len(), hashes.len());
    let arg = Encode!(&ChildInitArg { parent: controller() }).unwrap();
    let module_hash = Sha256::digest(&module).to_vec();
    pic.install_chunked_canister(
        canister,
        me,
        pocket_ic::CanisterInstallMode::Install,
        canister,
        hashes,
        module_hash.clone(),
        arg.clone(),
    )
    .unwrap();
    let status = pic.canister_status(canister, me).unwrap();
    assert_eq!(status.module_hash, Some(module_hash));
    pic.clear_chunk_store(canister, me).unwrap();
    assert!(pic.stored_chunks(canister, me).unwrap().is_empty());

    let settings = pocket_ic::CanisterSettings {
        freezing_threshold: Some(1_234u32.into()),
        ..Default::default()
    };
    pic.update_canister_settings(canister, me, settings).unwrap();
    assert_eq!(
        pic.canister_status(canister, me).unwrap().settings.freezing_threshold,
        1_234u32
    );

    // Snapshots: a member added after the snapshot is gone once it is loaded.
    pic.stop_canister(canister, me).unwrap();
    let snapshot = pic.take_canister_snapshot(canister, me, None).unwrap();
    assert_eq!(pic.list_canister_snapshots(canister, me).unwrap().len(), 1);
    pic.start_canister(canister, me).unwrap();
    pic.update_call(canister, controller(), "add_member", add_member_args("dave"))
        .unwrap();
    pic.stop_canister(canister, me).unwrap();
    pic.load_canister_snapshot(canister, me, snapshot.id.clone()).unwrap();
    pic.start_canister(canister, me).unwrap();
    let (count,): (u64,) = pocket_ic::query_candid(&pic, canister, "member_count", ()).unwrap();
    assert_eq!(count, 0);
    pic.delete_canister_snapshot(canister, me, snapshot.id).unwrap();
    assert!(pic.list_canister_snapshots(canister, me).unwrap().is_empty());

    pic.reinstall_canister(canister, wasm("child.wasm.gz"), arg, me)
        .unwrap();
    pic.uninstall_canister(canister, me).unwrap();
    assert_eq!(pic.canister_status(canister, me).unwrap().module_hash, None);
    let reject = pic.stop_canister(canister, None).unwrap_err();
    assert_eq!(reject.error_code, ErrorCode::CanisterInvalidController);
    pic.stop_canister(canister, me).unwrap();
    pic.delete_canister(canister, me).unwrap();
    assert!(!pic.canister_exists(canister));
}
