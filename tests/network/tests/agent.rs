//! ic-agent, a client nobody here wrote, against the local network with all its verification on: certificates
//! (BLS, under the network's root key) and query signatures (Ed25519, under the node key it reads from the state).

mod support;

use std::time::Duration;

use candid::{Decode, Encode, Principal};
use ic_agent::agent::{RejectCode, RequestStatusResponse};
use ic_agent::{Agent, AgentError};
use network::Keys;
use replica::RejectCode as ReplicaRejectCode;
use shared::child::{ChildError, DataChecksum, FillArg};
use support::{agent, agent_with_root_key, child, child_on_replica, create_canister, ed25519, secp256k1};

fn fill(count: u32) -> Vec<u8> {
    Encode!(&FillArg {
        prefix: "m".into(),
        count,
        value_size: 16,
    })
    .unwrap()
}

/// `admin_fill` on the child, certified: the child's own answer.
async fn admin_fill(agent: &Agent, child: Principal, count: u32) -> Result<u64, ChildError> {
    let reply = agent
        .update(&child, "admin_fill")
        .with_arg(fill(count))
        .call_and_wait()
        .await
        .expect("a certified reply");
    Decode!(&reply, Result<u64, ChildError>).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_verifies_everything_deploys_updates_queries_and_reads_state() {
    let network = support::start();
    let me = ed25519(1);
    let agent = agent(&network, me);
    let status = agent.status().await.unwrap();
    assert_eq!(status.root_key.as_deref(), Some(network.root_key()));
    assert_eq!(status.replica_health_status.as_deref(), Some("healthy"));

    let id = child(&agent).await;
    assert_eq!(admin_fill(&agent, id, 25).await, Ok(25));
    let checksum = agent
        .query(&id, "data_checksum")
        .with_arg(Encode!().unwrap())
        .call()
        .await
        .unwrap();
    assert_eq!(Decode!(&checksum, DataChecksum).unwrap().members, 25);

    let wasm = support::child_wasm();
    assert_eq!(
        agent.read_state_canister_module_hash(id).await.unwrap(),
        fleet::wasms::sha256(&wasm).to_vec()
    );
    assert_eq!(
        agent.read_state_canister_controllers(id).await.unwrap(),
        vec![agent.get_principal().unwrap()]
    );
    let candid = agent.read_state_canister_metadata(id, "candid:service").await.unwrap();
    assert!(String::from_utf8(candid).unwrap().contains("data_checksum"));
    let missing = agent.read_state_canister_metadata(id, "no such section").await;
    assert!(matches!(missing, Err(AgentError::LookupPathAbsent(_))), "{missing:?}");
    let ranges = agent
        .read_state_subnet_canister_ranges(network.subnet_id())
        .await
        .unwrap();
    assert!(ranges.iter().any(|(lo, hi)| *lo <= id && id <= *hi), "{ranges:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_rejects_the_network_under_another_root_key() {
    let network = support::start();
    let id = child_on_replica(&network, Principal::anonymous());
    let wrong = agent_with_root_key(&network, ed25519(1), Keys::generate().root_key_der().to_vec());
    let update = wrong.update(&id, "add_member").with_arg(fill(1)).call_and_wait().await;
    assert!(
        matches!(update, Err(AgentError::CertificateVerificationFailed())),
        "{update:?}"
    );
    // A query's signature is checked against the node key read from the state, whose certificate fails too.
    let query = wrong.query(&id, "version").with_arg(Encode!().unwrap()).call().await;
    assert!(
        matches!(query, Err(AgentError::CertificateVerificationFailed())),
        "{query:?}"
    );
    let module_hash = wrong.read_state_canister_module_hash(id).await;
    assert!(
        matches!(module_hash, Err(AgentError::CertificateVerificationFailed())),
        "{module_hash:?}"
    );

    let right = agent(&network, ed25519(1));
    let version = right
        .query(&id, "version")
        .with_arg(Encode!().unwrap())
        .call()
        .await
        .unwrap();
    assert!(Decode!(&version, String).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_caller_a_canister_sees_is_the_identity_that_signed_whatever_its_key_type() {
    let network = support::start();
    let owner = agent(&network, secp256k1(7));
    let id = child(&owner).await;
    let stranger = agent(&network, ed25519(8));
    let caller = stranger.get_principal().unwrap();
    assert_eq!(
        admin_fill(&stranger, id, 1).await,
        Err(ChildError::NotAllowed { caller })
    );
    let anonymous = support::agent(&network, ic_agent::identity::AnonymousIdentity);
    let caller = Principal::anonymous();
    assert_eq!(
        admin_fill(&anonymous, id, 1).await,
        Err(ChildError::NotAllowed { caller })
    );
    assert_eq!(admin_fill(&owner, id, 3).await, Ok(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn provisional_creation_honours_a_specified_id() {
    let network = support::start();
    let agent = agent(&network, ed25519(1));
    let wanted = support::canister_id(1_000);
    assert_eq!(create_canister(&agent, Some(wanted)).await, wanted);
    let controllers = agent.read_state_canister_controllers(wanted).await.unwrap();
    assert_eq!(controllers, vec![agent.get_principal().unwrap()]);
    let again = agent
        .update(
            &Principal::management_canister(),
            "provisional_create_canister_with_cycles",
        )
        .with_effective_canister_id(wanted)
        .with_arg(
            Encode!(&replica::ic00::ProvisionalCreateCanisterWithCyclesArgs {
                amount: None,
                settings: None,
                specified_id: Some(wanted),
                sender_canister_version: None,
            })
            .unwrap(),
        )
        .call_and_wait()
        .await;
    assert!(matches!(again, Err(AgentError::CertifiedReject { .. })), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_calls_are_accepted_then_polled_and_v3_calls_answer_with_a_certificate() {
    let network = support::start();
    let agent = agent(&network, ed25519(1));
    let id = child(&agent).await;
    let client = reqwest::Client::new();
    for (version, expected) in [("v2", 202), ("v3", 200)] {
        let signed = agent.update(&id, "admin_fill").with_arg(fill(2)).sign().unwrap();
        let response = client
            .post(format!("{}/api/{version}/canister/{id}/call", network.url()))
            .header("Content-Type", "application/cbor")
            .body(signed.signed_update)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{version}");
        if version == "v3" {
            let body: ic_transport_types::TransportCallResponse =
                serde_cbor::from_slice(&response.bytes().await.unwrap()).unwrap();
            let ic_transport_types::TransportCallResponse::Replied { certificate } = body else {
                panic!("a certified reply on v3");
            };
            let certificate = serde_cbor::from_slice(&certificate).unwrap();
            agent.verify(&certificate, id).unwrap();
        }
        // Either way the certified status is then readable (the agent polls read_state, verifying it).
        let (reply, _certificate) = agent.wait(&signed.request_id, id).await.unwrap();
        assert_eq!(Decode!(&reply, Result<u64, ChildError>).unwrap(), Ok(2));
        let (status, _certificate) = agent.request_status_raw(&signed.request_id, id).await.unwrap();
        assert!(matches!(status, RequestStatusResponse::Replied(_)), "{status:?}");
    }
}

/// An ingress message's system reject reaches the client certified. (The replica refuses to inject SYS_UNKNOWN into
/// ingress, which the IC never gives; `engine::reject_response` maps it to SYS_TRANSIENT all the same, tested there.)
#[tokio::test(flavor = "multi_thread")]
async fn a_system_reject_reaches_the_client_certified() {
    let network = support::start();
    let agent = agent(&network, ed25519(1));
    let id = child(&agent).await;
    network.with_replica(move |r| r.reject_next_call(id, "admin_fill", ReplicaRejectCode::SysTransient, "lost"));
    let result = agent.update(&id, "admin_fill").with_arg(fill(1)).call_and_wait().await;
    match result {
        Err(AgentError::CertifiedReject { reject, .. }) => {
            assert_eq!(reject.reject_code, RejectCode::SysTransient);
            assert_eq!(reject.reject_message, "lost");
        }
        other => panic!("expected a certified SYS_TRANSIENT reject, got {other:?}"),
    }
}

/// A canister whose init sets its global timer 50 ms ahead and whose timer counts its runs.
const TIMER_CANISTER: &str = r#"(module
  (import "ic0" "time" (func $time (result i64)))
  (import "ic0" "global_timer_set" (func $timer_set (param i64) (result i64)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (func (export "canister_init") (drop (call $timer_set (i64.add (call $time) (i64.const 50000000)))))
  (func (export "canister_global_timer") (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1))))
  (func (export "canister_query fires") (call $append (i32.const 0) (i32.const 4)) (call $reply)))"#;

#[tokio::test(flavor = "multi_thread")]
async fn rounds_run_on_their_own_while_work_is_due_and_not_at_all_when_idle() {
    let network = support::start();
    let agent = agent(&network, ed25519(1));
    let id = create_canister(&agent, None).await;
    support::install(&agent, id, wat::parse_str(TIMER_CANISTER).unwrap(), vec![]).await;
    let fires = || async {
        let bytes = agent.query(&id, "fires").with_arg(Vec::new()).call().await.unwrap();
        u32::from_le_bytes(bytes.try_into().unwrap())
    };
    assert_eq!(fires().await, 0);
    // No client sends anything: the timer fires once it is due.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fires().await, 1);
    let rounds = network.with_replica(|r| r.round());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        network.with_replica(|r| r.round()),
        rounds,
        "no round runs while nothing is due"
    );
}
