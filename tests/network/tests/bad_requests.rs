//! Bad requests get the HTTP status and message the IC gives (dfinity/ic `rs/http_endpoints/public`: `common.rs`,
//! `call.rs`, `read_state/canister.rs`; `rs/validator`), and the network keeps serving after each.

mod support;

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candid::{Encode, Principal};
use ic_agent::{Agent, Identity};
use ic_certification::Label;
use ic_transport_types::{Envelope, EnvelopeContent, QueryResponse, RejectCode, RejectResponse, TransportCallResponse};
use network::Network;
use shared::child::FillArg;
use support::{child_on_replica, ed25519};

struct Client {
    network: Network,
    http: reqwest::blocking::Client,
    /// Signs requests only; nothing here is sent through it.
    signer: Agent,
    child: Principal,
}

fn client() -> Client {
    let network = support::start();
    let signer = support::agent(&network, ed25519(1));
    let child = child_on_replica(&network, signer.get_principal().unwrap());
    Client {
        network,
        http: reqwest::blocking::Client::new(),
        signer,
        child,
    }
}

impl Client {
    fn post(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.post_as(path, "application/cbor", body)
    }

    fn post_as(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let response = self
            .http
            .post(format!("{}{path}", self.network.url()))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .expect("the network answers");
        (response.status().as_u16(), response.bytes().unwrap().to_vec())
    }

    fn call_path(&self, version: &str, canister: Principal) -> String {
        format!("/api/{version}/canister/{canister}/call")
    }

    fn signed_fill(&self, canister: Principal, count: u32) -> Vec<u8> {
        let arg = Encode!(&FillArg {
            prefix: "x".into(),
            count,
            value_size: 1,
        })
        .unwrap();
        self.signer
            .update(&canister, "admin_fill")
            .with_arg(arg)
            .sign()
            .unwrap()
            .signed_update
    }

    /// Still serving: status answers, and a signed call is executed.
    fn assert_serving(&self) {
        let status = self
            .http
            .get(format!("{}/api/v2/status", self.network.url()))
            .send()
            .unwrap();
        assert_eq!(status.status().as_u16(), 200);
        let (code, body) = self.post(&self.call_path("v3", self.child), self.signed_fill(self.child, 1));
        assert_eq!(code, 200);
        let reply: TransportCallResponse = serde_cbor::from_slice(&body).unwrap();
        assert!(matches!(reply, TransportCallResponse::Replied { .. }), "{reply:?}");
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[test]
fn malformed_cbor_and_a_wrong_content_type_get_400() {
    let c = client();
    let (code, body) = c.post(&c.call_path("v4", c.child), b"\xa1\x63not cbor".to_vec());
    assert_eq!(code, 400);
    assert!(
        text(&body).starts_with("Failed to deserialize cbor request"),
        "{}",
        text(&body)
    );
    let (code, body) = c.post(&format!("/api/v3/canister/{}/query", c.child), vec![0xff; 10]);
    assert_eq!(
        (code, text(&body).starts_with("Failed to deserialize cbor request")),
        (400, true)
    );
    let (code, body) = c.post_as(
        &c.call_path("v4", c.child),
        "application/json",
        c.signed_fill(c.child, 1),
    );
    assert_eq!(
        (code, text(&body)),
        (400, "Unexpected content-type, expected application/cbor.".into())
    );
    c.assert_serving();
}

#[test]
fn a_bad_signature_or_a_key_that_is_not_the_sender_gets_400() {
    let c = client();
    let signed = c.signed_fill(c.child, 1);
    let mut envelope: Envelope = serde_cbor::from_slice(&signed).unwrap();
    envelope.sender_sig.as_mut().unwrap()[10] ^= 0x55;
    let (code, body) = c.post(&c.call_path("v4", c.child), envelope.encode_bytes());
    assert_eq!(code, 400);
    assert!(
        text(&body).starts_with("Invalid signature: Invalid basic signature"),
        "{}",
        text(&body)
    );

    let mut envelope: Envelope = serde_cbor::from_slice(&signed).unwrap();
    envelope.sender_pubkey = Some(ic_ed25519::PrivateKey::generate().public_key().serialize_rfc8410_der());
    let (code, body) = c.post(&c.call_path("v2", c.child), envelope.encode_bytes());
    assert_eq!(code, 400);
    assert!(text(&body).contains("does not match the public key"), "{}", text(&body));
    c.assert_serving();
}

#[test]
fn an_expired_or_far_future_ingress_expiry_gets_400() {
    let c = client();
    let now = SystemTime::now();
    for expiry in [now - Duration::from_secs(60), now + Duration::from_secs(20 * 60)] {
        let signed = c
            .signer
            .update(&c.child, "admin_fill")
            .with_arg(
                Encode!(&FillArg {
                    prefix: "x".into(),
                    count: 1,
                    value_size: 1
                })
                .unwrap(),
            )
            .expire_at(expiry)
            .sign()
            .unwrap();
        let (code, body) = c.post(&c.call_path("v4", c.child), signed.signed_update);
        assert_eq!(code, 400);
        assert!(
            text(&body).starts_with("Invalid request expiry: Specified ingress_expiry not within expected range"),
            "{}",
            text(&body)
        );
        let query = c
            .signer
            .query(&c.child, "version")
            .with_arg(Encode!().unwrap())
            .expire_at(expiry)
            .sign()
            .unwrap();
        let (code, _) = c.post(&format!("/api/v3/canister/{}/query", c.child), query.signed_query);
        assert_eq!(code, 400);
    }
    c.assert_serving();
}

#[test]
fn an_unknown_canister_is_refused_before_execution_and_its_queries_are_rejected() {
    let c = client();
    let unknown = support::canister_id(999);
    let not_found = RejectResponse {
        reject_code: RejectCode::DestinationInvalid,
        reject_message: format!("Canister {unknown} not found"),
        error_code: Some("IC0301".into()),
    };
    let (code, body) = c.post(&c.call_path("v4", unknown), c.signed_fill(unknown, 1));
    assert_eq!(code, 200);
    let reply: TransportCallResponse = serde_cbor::from_slice(&body).unwrap();
    assert!(
        matches!(&reply, TransportCallResponse::NonReplicatedRejection(r) if *r == not_found),
        "{reply:?}"
    );
    let (code, body) = c.post(&c.call_path("v2", unknown), c.signed_fill(unknown, 1));
    assert_eq!(code, 200, "v2 answers a refused call with the reject itself");
    assert_eq!(serde_cbor::from_slice::<RejectResponse>(&body).unwrap(), not_found);

    let query = c
        .signer
        .query(&unknown, "version")
        .with_arg(Encode!().unwrap())
        .sign()
        .unwrap();
    let (code, body) = c.post(&format!("/api/v3/canister/{unknown}/query"), query.signed_query);
    assert_eq!(code, 200);
    let reply: QueryResponse = serde_cbor::from_slice(&body).unwrap();
    assert!(
        matches!(&reply, QueryResponse::Rejected { reject, signatures } if *reject == not_found && signatures.len() == 1)
    );
    c.assert_serving();
}

#[test]
fn a_call_over_2_mib_and_a_body_over_5_mib_get_413() {
    let c = client();
    let big = c
        .signer
        .update(&c.child, "admin_fill")
        .with_arg(vec![0; 2 * 1024 * 1024 + 1])
        .sign()
        .unwrap();
    let (code, body) = c.post(&c.call_path("v4", c.child), big.signed_update);
    assert_eq!(code, 413);
    assert!(
        text(&body).contains("is too large. Message byte size")
            && text(&body).contains("larger than the max allowed 2097152"),
        "{}",
        text(&body)
    );
    let (code, _) = c.post(
        &format!("/api/v3/canister/{}/query", c.child),
        vec![0; 5 * 1024 * 1024 + 1],
    );
    assert_eq!(code, 413);
    c.assert_serving();
}

#[test]
fn a_call_must_name_the_canister_of_its_url() {
    let c = client();
    let elsewhere = support::canister_id(5);
    let (code, body) = c.post(&c.call_path("v4", elsewhere), c.signed_fill(c.child, 1));
    assert_eq!(code, 400);
    assert!(text(&body).starts_with("Specified CanisterId"), "{}", text(&body));
    c.assert_serving();
}

#[test]
fn read_state_checks_paths_and_who_may_read_them() {
    let c = client();
    let read = |identity: &dyn Identity, canister: Principal, paths: Vec<Vec<&[u8]>>| {
        c.post(
            &format!("/api/v3/canister/{canister}/read_state"),
            read_state_envelope(identity, paths),
        )
    };
    let me = ed25519(1);
    let child = c.child.as_slice().to_vec();
    let (code, _) = read(&me, c.child, vec![vec![b"canister", &child, b"module_hash"]]);
    assert_eq!(code, 200);
    let (code, body) = read(&me, c.child, vec![vec![b"canister", &child, b"secrets"]]);
    assert_eq!((code, text(&body)), (404, "Invalid path requested.".into()));
    let other = support::canister_id(7).as_slice().to_vec();
    let (code, body) = read(&me, c.child, vec![vec![b"canister", &other, b"module_hash"]]);
    assert_eq!(code, 400);
    assert!(
        text(&body).starts_with("Effective principal id in URL"),
        "{}",
        text(&body)
    );

    // A request's status is readable by its sender only.
    let signed = c
        .signer
        .update(&c.child, "version")
        .with_arg(Encode!().unwrap())
        .sign()
        .unwrap();
    assert_eq!(c.post(&c.call_path("v3", c.child), signed.signed_update).0, 200);
    let request_id = signed.request_id.as_slice().to_vec();
    let status_path = vec![b"request_status".as_slice(), &request_id];
    assert_eq!(read(&me, c.child, vec![status_path.clone()]).0, 200);
    let (code, body) = read(&ed25519(2), c.child, vec![status_path]);
    assert_eq!(
        (code, text(&body)),
        (
            403,
            "The user tries to access Request ID not signed by the caller.".into()
        )
    );
    c.assert_serving();
}

/// A `read_state` envelope for `paths`, signed by `identity`.
fn read_state_envelope(identity: &dyn Identity, paths: Vec<Vec<&[u8]>>) -> Vec<u8> {
    let expiry = SystemTime::now() + Duration::from_secs(60);
    let content = EnvelopeContent::ReadState {
        ingress_expiry: expiry.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64,
        sender: identity.sender().unwrap(),
        paths: paths
            .into_iter()
            .map(|path| path.into_iter().map(|label| Label::from(label.to_vec())).collect())
            .collect(),
    };
    let signature = identity.sign(&content).unwrap();
    Envelope {
        content: Cow::Owned(content),
        sender_pubkey: signature.public_key,
        sender_sig: signature.signature,
        sender_delegation: signature.delegations,
    }
    .encode_bytes()
}
