//! The IC HTTP interface (spec "HTTPS Interface"), every version clients use: `GET /api/v2/status`; `call` on v2
//! (202, then `request_status` polling) and on v3/v4 (synchronous, with a certificate); `query` on v2/v3 with an
//! Ed25519 node signature; `read_state` on v2/v3 for a canister or the subnet. Errors are the IC's HTTP answers.

use std::convert::Infallible;
use std::io::Cursor;
use std::str::FromStr;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use candid::Principal;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use ic_transport_types::{
    Envelope, EnvelopeContent, NodeSignature, QueryResponse, ReadStateResponse, ReplyResponse, RequestId,
    TransportCallResponse,
};
use serde::Serialize;

use crate::auth;
use crate::engine::{now_nanos, Call, CallEvent, Command, Query};
use crate::keys::Keys;
use crate::read_state::Effective;
use crate::tree::{certificate, to_cbor, Node};
use crate::HttpError;

/// The largest ingress message the IC accepts (`max_ingress_bytes_per_message` of application subnets).
pub const MAX_INGRESS_BYTES: usize = 2 * 1024 * 1024;
/// The largest request body the HTTP endpoint reads at all.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// How long a synchronous call waits for its answer before it answers 202 (the IC's default).
const SYNC_CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Context {
    pub keys: Keys,
    pub subnet_id: Principal,
    pub commands: Sender<Command>,
}

type Body = Full<Cursor<Vec<u8>>>;

/// Accepts connections and serves each (HTTP/1.1, keep-alive) until the runtime shuts down. A request's handler
/// blocks on the replica thread, so it runs on the runtime's blocking pool.
pub async fn serve(listener: tokio::net::TcpListener, context: Arc<Context>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let context = context.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| respond(request, context.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(request: Request<Incoming>, context: Arc<Context>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(_) => Err(HttpError::too_large(format!(
            "The request body is larger than the maximum of {MAX_BODY_BYTES} bytes."
        ))),
    };
    let reply = tokio::task::spawn_blocking(move || {
        let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok());
        handle(&parts.method, parts.uri.path(), content_type, body, &context)
    })
    .await
    .unwrap_or_else(|e| Err(HttpError::new(500, format!("The request handler failed: {e}"))));
    let (status, content_type, body) = match reply {
        Ok(Reply::Cbor(body)) => (200, "application/cbor", body),
        Ok(Reply::Accepted) => (202, "text/plain; charset=utf-8", Vec::new()),
        Err(error) => (error.status, "text/plain; charset=utf-8", error.message.into_bytes()),
    };
    let response = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Cursor::new(body)))
        .expect("a valid response");
    Ok(response)
}

enum Reply {
    Cbor(Vec<u8>),
    Accepted,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V2,
    V3,
    V4,
}

fn handle(
    method: &Method,
    path: &str,
    content_type: Option<&str>,
    body: Result<Vec<u8>, HttpError>,
    context: &Context,
) -> Result<Reply, HttpError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["api", "v2", "status"]) => Ok(status(context)),
        (&Method::POST, ["api", version, kind, id, endpoint]) => {
            let version = match *version {
                "v2" => Version::V2,
                "v3" => Version::V3,
                "v4" => Version::V4,
                _ => return Err(not_found()),
            };
            let id = Principal::from_str(id)
                .map_err(|e| HttpError::bad_request(format!("Could not parse principal ID: {e}.")))?;
            let effective = match *kind {
                "canister" => Effective::Canister(id),
                "subnet" if id == context.subnet_id => Effective::Subnet(id),
                "subnet" => {
                    return Err(HttpError::not_found(format!(
                        "Subnet {id} is not this network's subnet."
                    )))
                }
                _ => return Err(not_found()),
            };
            if !content_type.is_some_and(|t| t.eq_ignore_ascii_case("application/cbor")) {
                return Err(HttpError::bad_request(
                    "Unexpected content-type, expected application/cbor.",
                ));
            }
            let body = body?;
            match (*endpoint, version) {
                ("call", Version::V2) => call(context, &body, effective, false),
                ("call", Version::V3 | Version::V4) => call(context, &body, effective, true),
                ("query", Version::V2 | Version::V3) => query(context, &body, effective),
                ("read_state", Version::V2 | Version::V3) => read_state(context, &body, effective),
                _ => Err(not_found()),
            }
        }
        _ => Err(not_found()),
    }
}

fn not_found() -> HttpError {
    HttpError::not_found("Not found.")
}

fn status(context: &Context) -> Reply {
    #[derive(Serialize)]
    struct Status {
        ic_api_version: &'static str,
        impl_version: &'static str,
        #[serde(with = "serde_bytes")]
        root_key: Vec<u8>,
        replica_health_status: &'static str,
    }
    Reply::Cbor(to_cbor(&Status {
        ic_api_version: "0.18.0",
        impl_version: concat!("canister-fleet local network ", env!("CARGO_PKG_VERSION")),
        root_key: context.keys.root_key_der().to_vec(),
        replica_health_status: "healthy",
    }))
}

/// A request that passed authentication.
struct Authenticated {
    envelope: Envelope<'static>,
    request_id: [u8; 32],
    targets: auth::Targets,
}

/// Decodes a request body, which must be a request of the endpoint's kind.
fn decode(body: &[u8], expected: &str) -> Result<Envelope<'static>, HttpError> {
    let envelope = auth::decode(body)?;
    let kind = match &*envelope.content {
        EnvelopeContent::Call { .. } => "call",
        EnvelopeContent::Query { .. } => "query",
        EnvelopeContent::ReadState { .. } => "read_state",
    };
    if kind != expected {
        return Err(HttpError::bad_request(format!(
            "Malformed request: expected a {expected} request, got a {kind} request"
        )));
    }
    Ok(envelope)
}

fn authenticate(envelope: Envelope<'static>) -> Result<Authenticated, HttpError> {
    let request_id = *envelope.content.to_request_id();
    let targets = auth::authenticate(&envelope, &RequestId::new(&request_id), now_nanos())?;
    auth::check_target(&targets, &envelope.content)?;
    Ok(Authenticated {
        envelope,
        request_id,
        targets,
    })
}

/// A call or query must name the canister of its URL (calls to the management canister aside).
fn check_effective(canister_id: Principal, effective: Effective) -> Result<(), HttpError> {
    match effective {
        Effective::Canister(id) if canister_id == Principal::management_canister() || canister_id == id => Ok(()),
        Effective::Subnet(_) if canister_id == Principal::management_canister() => Ok(()),
        Effective::Canister(id) => Err(HttpError::bad_request(format!(
            "Specified CanisterId {canister_id} does not match effective canister id in URL {id}"
        ))),
        Effective::Subnet(id) => Err(HttpError::bad_request(format!(
            "Specified CanisterId {canister_id} cannot be called through subnet {id}"
        ))),
    }
}

fn call(context: &Context, body: &[u8], effective: Effective, sync: bool) -> Result<Reply, HttpError> {
    let envelope = decode(body, "call")?;
    let EnvelopeContent::Call { canister_id, .. } = &*envelope.content else {
        unreachable!("decode checked the kind")
    };
    check_effective(*canister_id, effective)?;
    if body.len() > MAX_INGRESS_BYTES {
        return Err(HttpError::too_large(format!(
            "Request {} is too large. Message byte size {} is larger than the max allowed {MAX_INGRESS_BYTES}.",
            hex::encode(*envelope.content.to_request_id()),
            body.len()
        )));
    }
    let request = authenticate(envelope)?;
    let EnvelopeContent::Call {
        canister_id,
        method_name,
        arg,
        sender,
        ingress_expiry,
        ..
    } = request.envelope.content.into_owned()
    else {
        unreachable!("decode checked the kind")
    };
    let (events, answers) = mpsc::channel();
    let call = Call {
        request_id: request.request_id,
        sender,
        canister_id,
        method: method_name,
        arg,
        expiry: ingress_expiry,
    };
    send(context, Command::Call(call, events))?;
    match answers.recv().map_err(|_| stopped())? {
        CallEvent::NonReplicated(reject) if sync => Ok(cbor(&TransportCallResponse::NonReplicatedRejection(reject))),
        CallEvent::NonReplicated(reject) => Ok(cbor(&reject)),
        CallEvent::Accepted if !sync => Ok(Reply::Accepted),
        CallEvent::Accepted => match answers.recv_timeout(SYNC_CALL_TIMEOUT) {
            Ok(CallEvent::Finished(status)) => {
                let tree = Node::map().with("time", Node::nat(now_nanos())).with(
                    "request_status",
                    Node::map().with(request.request_id.to_vec(), status.node()),
                );
                let certificate = certificate(&context.keys, &tree);
                Ok(cbor(&TransportCallResponse::Replied { certificate }))
            }
            _ => Ok(Reply::Accepted),
        },
        CallEvent::Finished(_) => unreachable!("the engine accepts a call before it finishes it"),
    }
}

fn query(context: &Context, body: &[u8], effective: Effective) -> Result<Reply, HttpError> {
    let request = authenticate(decode(body, "query")?)?;
    let EnvelopeContent::Query {
        canister_id,
        method_name,
        arg,
        sender,
        ..
    } = request.envelope.content.into_owned()
    else {
        unreachable!("decode checked the kind")
    };
    check_effective(canister_id, effective)?;
    let (reply, answer) = mpsc::channel();
    let query = Query {
        sender,
        canister_id,
        method: method_name,
        arg,
    };
    send(context, Command::Query(query, reply))?;
    let mut response = match answer.recv().map_err(|_| stopped())? {
        Ok(arg) => QueryResponse::Replied {
            reply: ReplyResponse { arg },
            signatures: Vec::new(),
        },
        Err(reject) => QueryResponse::Rejected {
            reject,
            signatures: Vec::new(),
        },
    };
    let timestamp = now_nanos();
    let signature = NodeSignature {
        timestamp,
        signature: context
            .keys
            .sign_as_node(&response.signable(RequestId::new(&request.request_id), timestamp)),
        identity: context.keys.node_id(),
    };
    match &mut response {
        QueryResponse::Replied { signatures, .. } | QueryResponse::Rejected { signatures, .. } => {
            signatures.push(signature)
        }
    }
    Ok(cbor(&response))
}

fn read_state(context: &Context, body: &[u8], effective: Effective) -> Result<Reply, HttpError> {
    let request = authenticate(decode(body, "read_state")?)?;
    let EnvelopeContent::ReadState { paths, sender, .. } = request.envelope.content.into_owned() else {
        unreachable!("decode checked the kind")
    };
    let paths = paths
        .into_iter()
        .map(|path| path.into_iter().map(|label| label.as_bytes().to_vec()).collect())
        .collect();
    let (reply, answer) = mpsc::channel();
    send(
        context,
        Command::ReadState {
            sender,
            effective,
            targets: request.targets,
            paths,
            reply,
        },
    )?;
    let tree = answer.recv().map_err(|_| stopped())??;
    let certificate = certificate(&context.keys, &tree);
    Ok(cbor(&ReadStateResponse { certificate }))
}

fn cbor<T: Serialize>(value: &T) -> Reply {
    Reply::Cbor(to_cbor(value))
}

fn send(context: &Context, command: Command) -> Result<(), HttpError> {
    context.commands.send(command).map_err(|_| stopped())
}

fn stopped() -> HttpError {
    HttpError::new(503, "The network is shutting down.")
}
