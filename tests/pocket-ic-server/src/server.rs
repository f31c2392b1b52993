//! The HTTP front: server-wide endpoints (instances, blob store) are answered on the main thread; instance
//! endpoints go to the instance's own thread, which owns its replica (the replica is not `Sync`) and answers in
//! order. The server stops once no request is pending and none has arrived for the TTL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pocket_ic::common::rest::{
    BlobCompression, BlobId, CreateHttpGatewayResponse, CreateInstanceResponse, InstanceConfig,
};
use tiny_http::{Header, Method, Request, Response};

use crate::answer::{Answer, ApiError};
use crate::blobs::Blobs;
use crate::instance::Instance;
use crate::{config, log};

/// How often the idle check runs while no request arrives.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Instance threads run wasm on the interpreter: give them the main thread's stack size.
const INSTANCE_STACK: usize = 8 << 20;

pub fn serve(http: tiny_http::Server, ttl: Duration) {
    let mut server = Server::default();
    loop {
        match http.recv_timeout(IDLE_POLL) {
            Ok(Some(request)) => {
                server.activity.begin();
                server.route(request);
            }
            Ok(None) if server.activity.idle_for(ttl) => return,
            Ok(None) => {}
            Err(e) => log!("receiving a request failed: {e}"),
        }
    }
}

/// Requests in progress and the end of the last one, for the TTL.
struct Activity {
    pending: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn begin(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self) {
        *self.last.lock().expect("activity lock") = Instant::now();
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    fn idle_for(&self, ttl: Duration) -> bool {
        self.pending.load(Ordering::SeqCst) == 0 && self.last.lock().expect("activity lock").elapsed() > ttl
    }
}

/// Sends the answer and marks the request as done.
fn respond(request: Request, answer: Answer, activity: &Activity) {
    if answer.status >= 400 {
        log!(
            "{} {} -> {}: {}",
            request.method(),
            request.url(),
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    let mut response = Response::from_data(answer.body)
        .with_status_code(answer.status)
        .with_header(header("Content-Type", answer.content_type));
    if answer.gzip {
        response.add_header(header("Content-Encoding", "gzip"));
    }
    // The client may have gone; there is no one left to tell.
    let _ = request.respond(response);
    activity.end();
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name, value).expect("valid header")
}

fn read_body(request: &mut Request) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    request
        .as_reader()
        .read_to_end(&mut body)
        .map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
    Ok(body)
}

enum Slot {
    Running {
        jobs: mpsc::Sender<Job>,
        thread: JoinHandle<()>,
    },
    Deleted,
}

/// An instance request, for the instance's thread.
struct Job {
    request: Request,
    method: String,
    endpoint: String,
}

struct Server {
    instances: Vec<Slot>,
    blobs: Blobs,
    activity: Arc<Activity>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            instances: Vec::new(),
            blobs: Blobs::default(),
            activity: Arc::new(Activity {
                pending: AtomicUsize::new(0),
                last: Mutex::new(Instant::now()),
            }),
        }
    }
}

impl Server {
    fn route(&mut self, mut request: Request) {
        let method = request.method().clone();
        let url = request.url().split('?').next().unwrap_or_default().to_string();
        let segments: Vec<&str> = url.trim_matches('/').split('/').collect();
        let answer = match (&method, segments.as_slice()) {
            (Method::Get, ["status"]) => Ok(Answer::json(&())),
            (Method::Get, ["instances"]) => Ok(self.list_instances()),
            (Method::Post, ["instances"]) => read_body(&mut request).map(|body| self.create_instance(&body)),
            (Method::Delete, ["instances", id]) => self.delete_instance(id),
            (_, ["instances", id, endpoint @ ..]) => {
                let endpoint = endpoint.join("/");
                return self.forward(request, id, endpoint);
            }
            (Method::Post, ["blobstore"]) => self.store_blob(&mut request),
            (Method::Get, ["blobstore", id]) => self.fetch_blob(id),
            (Method::Post, ["http_gateway"]) => Ok(Answer::json_with_status(
                501,
                &CreateHttpGatewayResponse::Error {
                    message: "http_gateway: the HTTP gateway is not supported by this server".into(),
                },
            )),
            (Method::Post, ["verify_signature"]) => Ok(Answer::json_with_status(
                501,
                &Err::<(), String>("verify_signature: canister signatures are not supported by this server".into()),
            )),
            (_, ["http_gateway", ..]) => Err(ApiError::unsupported(
                "http_gateway: the HTTP gateway is not supported by this server",
            )),
            _ => Err(ApiError::not_found(format!(
                "unknown endpoint {method} {url} (this server implements the PocketIC REST API {})",
                crate::API_VERSION
            ))),
        };
        respond(request, answer.unwrap_or_else(Answer::from), &self.activity);
    }

    fn list_instances(&self) -> Answer {
        let states: Vec<&str> = self
            .instances
            .iter()
            .map(|slot| match slot {
                Slot::Running { .. } => "Available",
                Slot::Deleted => "Deleted",
            })
            .collect();
        Answer::json(&states)
    }

    /// Validates the configuration and starts the instance's thread, which builds its replica.
    fn create_instance(&mut self, body: &[u8]) -> Answer {
        let instance_id = self.instances.len();
        let replica_config = serde_json::from_slice::<InstanceConfig>(body)
            .map_err(|e| format!("invalid instance configuration: {e}"))
            .and_then(|c| config::replica_config(&c, instance_id));
        let replica_config = match replica_config {
            Ok(c) => c,
            Err(message) => {
                let message = format!("POST /instances: {message}");
                return Answer::json_with_status(400, &CreateInstanceResponse::Error { message });
            }
        };
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, topology) = mpsc::sync_channel(1);
        let blobs = self.blobs.clone();
        let activity = self.activity.clone();
        let thread = std::thread::Builder::new()
            .name(format!("instance-{instance_id}"))
            .stack_size(INSTANCE_STACK)
            .spawn(move || {
                let mut instance = Instance::new(replica_config, blobs);
                let _ = ready.send(instance.topology().clone());
                for mut job in inbox {
                    let answer = match read_body(&mut job.request) {
                        Ok(body) => instance.answer(&job.method, &job.endpoint, &body),
                        Err(e) => e.into(),
                    };
                    respond(job.request, answer, &activity);
                }
            })
            .expect("spawning an instance thread");
        let topology = topology.recv().expect("the instance thread reports its topology");
        self.instances.push(Slot::Running { jobs, thread });
        Answer::json(&CreateInstanceResponse::Created {
            instance_id,
            topology,
            http_gateway_info: None,
        })
    }

    /// Stops the instance's thread once it has answered what it was sent, which frees its replica.
    fn delete_instance(&mut self, id: &str) -> Result<Answer, ApiError> {
        let slot = self.slot(id)?;
        if let Slot::Running { jobs, thread } = std::mem::replace(slot, Slot::Deleted) {
            drop(jobs);
            if thread.join().is_err() {
                log!("instance {id} ended with a panic");
            }
        }
        Ok(Answer::json(&()))
    }

    fn forward(&mut self, request: Request, id: &str, endpoint: String) {
        let method = request.method().to_string();
        let jobs = match self.slot(id) {
            Ok(Slot::Running { jobs, .. }) => jobs,
            Ok(Slot::Deleted) => {
                let error = ApiError::bad_request(format!("instance {id} was deleted"));
                return respond(request, error.into(), &self.activity);
            }
            Err(error) => return respond(request, error.into(), &self.activity),
        };
        if let Err(mpsc::SendError(job)) = jobs.send(Job {
            request,
            method,
            endpoint,
        }) {
            let error = ApiError {
                status: 500,
                message: format!("instance {id} stopped unexpectedly"),
            };
            respond(job.request, error.into(), &self.activity);
        }
    }

    fn slot(&mut self, id: &str) -> Result<&mut Slot, ApiError> {
        id.parse::<usize>()
            .ok()
            .and_then(|i| self.instances.get_mut(i))
            .ok_or_else(|| ApiError::not_found(format!("no instance {id}")))
    }

    fn store_blob(&mut self, request: &mut Request) -> Result<Answer, ApiError> {
        let encoding = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Content-Encoding"))
            .map(|h| h.value.as_str().to_string());
        let compression = match encoding.as_deref() {
            None => BlobCompression::NoCompression,
            Some("gzip") => BlobCompression::Gzip,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "blobstore: content encoding {other:?}: only gzip is supported"
                )))
            }
        };
        let id = self.blobs.store(read_body(request)?, compression);
        Ok(Answer::text(hex::encode(id.0)))
    }

    fn fetch_blob(&self, id: &str) -> Result<Answer, ApiError> {
        let bytes = hex::decode(id).map_err(|e| ApiError::bad_request(format!("blobstore: bad blob id: {e}")))?;
        let blob = self
            .blobs
            .fetch(&BlobId(bytes))
            .ok_or_else(|| ApiError::not_found(format!("blobstore: no blob with id {id}")))?;
        Ok(Answer {
            gzip: blob.compression == BlobCompression::Gzip,
            ..Answer::bytes(200, blob.data)
        })
    }
}
