//! The thread that owns the replica (it is not `Sync`): it takes commands from the HTTP handlers, runs rounds on
//! its own while there is work (messages, due timers, heartbeats), and sleeps otherwise.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candid::{Encode, Principal};
use ic_transport_types::{RejectCode, RejectResponse};
use replica::{MessageId, Reject, RejectCode as ReplicaRejectCode, Replica};

use crate::auth::Targets;
use crate::read_state::{self, Effective, ReadState, Request, Status, Subnet};
use crate::system_canisters::{self, Answer};
use crate::tree::Node;
use crate::HttpError;

/// Rounds run this often while a canister has a heartbeat and nothing else is due (about a mainnet round).
const HEARTBEAT_ROUND_INTERVAL: Duration = Duration::from_millis(500);

/// A signed call the HTTP side has authenticated.
pub struct Call {
    pub request_id: [u8; 32],
    pub sender: Principal,
    pub canister_id: Principal,
    pub method: String,
    pub arg: Vec<u8>,
    pub expiry: u64,
}

/// What becomes of a call, sent as it happens.
#[derive(Debug)]
pub enum CallEvent {
    /// Refused before execution (an unknown canister, `canister_inspect_message`): nothing is certified.
    NonReplicated(RejectResponse),
    /// Accepted; `Finished` follows once it is answered.
    Accepted,
    Finished(Status),
}

pub struct Query {
    pub sender: Principal,
    pub canister_id: Principal,
    pub method: String,
    pub arg: Vec<u8>,
}

pub enum Command {
    Call(Call, Sender<CallEvent>),
    Query(Query, Sender<Result<Vec<u8>, RejectResponse>>),
    ReadState {
        sender: Principal,
        effective: Effective,
        targets: Targets,
        paths: Vec<Vec<Vec<u8>>>,
        reply: Sender<Result<Node, HttpError>>,
    },
    Run(Box<dyn FnOnce(&Replica) + Send>),
}

/// How the outcome of a message the network submitted becomes the status of the request.
enum Outcome {
    /// The canister's own answer.
    AsIs,
    /// A `provisional_create_canister_with_cycles` made for the cycles ledger's `create_canister`.
    LedgerCreate,
}

enum Admission {
    /// Refused before execution; nothing is certified.
    Refused(Reject),
    Submitted(MessageId, Outcome),
    /// Answered at once (by a system canister).
    Answered(Status),
}

pub struct Engine {
    replica: Replica,
    subnet: Subnet,
    commands: Receiver<Command>,
    requests: BTreeMap<[u8; 32], Request>,
    waiting: BTreeMap<[u8; 32], Vec<Sender<CallEvent>>>,
    in_flight: Vec<(MessageId, [u8; 32], Outcome)>,
    last_round: u64,
    ledger_blocks: u64,
}

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

impl Engine {
    pub fn new(replica: Replica, subnet: Subnet, commands: Receiver<Command>) -> Self {
        Self {
            replica,
            subnet,
            commands,
            requests: BTreeMap::new(),
            waiting: BTreeMap::new(),
            in_flight: Vec::new(),
            last_round: 0,
            ledger_blocks: 0,
        }
    }

    /// Serves commands and runs rounds until every command sender is gone.
    pub fn run(mut self) {
        loop {
            while let Ok(command) = self.commands.try_recv() {
                self.handle(command);
            }
            let now = now_nanos();
            let next = match self.next_round_in(now) {
                Some(Duration::ZERO) => {
                    self.round(now);
                    continue;
                }
                Some(wait) => self.commands.recv_timeout(wait),
                None => self.commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// How long until a round has work: now if a message is queued, else when a timer or deadline is due or the
    /// next heartbeat round; `None` if only a new command can bring work.
    fn next_round_in(&self, now: u64) -> Option<Duration> {
        if self.replica.has_queued_messages() {
            return Some(Duration::ZERO);
        }
        let heartbeat = self
            .replica
            .has_heartbeats()
            .then(|| self.last_round + HEARTBEAT_ROUND_INTERVAL.as_nanos() as u64);
        let due = [self.replica.next_due_time(), heartbeat].into_iter().flatten().min()?;
        Some(Duration::from_nanos(due.saturating_sub(now)))
    }

    fn round(&mut self, now: u64) {
        self.sync_clock(now);
        self.replica.tick();
        self.last_round = now;
        let in_flight = std::mem::take(&mut self.in_flight);
        for (message, request_id, outcome) in in_flight {
            if self.replica.ingress_status(message).is_none() {
                self.in_flight.push((message, request_id, outcome));
                continue;
            }
            let result = self.replica.await_call(message);
            let status = match outcome {
                Outcome::AsIs => match result {
                    Ok(reply) => Status::Replied(reply),
                    Err(reject) => Status::Rejected(reject_response(reject)),
                },
                Outcome::LedgerCreate => {
                    self.ledger_blocks += 1;
                    let created = result.map_err(|reject| reject.message);
                    Status::Replied(system_canisters::ledger_reply(created, self.ledger_blocks))
                }
            };
            self.finish(request_id, status);
        }
        self.forget_expired(now);
    }

    /// Canisters see the host's wall clock (clients reject certificates older than their ingress expiry).
    fn sync_clock(&self, now: u64) {
        // Refused (and harmless) if the replica's clock is already ahead by a round's duration.
        let _ = self.replica.set_time(UNIX_EPOCH + Duration::from_nanos(now));
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Call(call, events) => self.call(call, events),
            Command::Query(query, reply) => {
                let _ = reply.send(self.query(query));
            }
            Command::ReadState {
                sender,
                effective,
                targets,
                paths,
                reply,
            } => {
                let read = ReadState {
                    sender,
                    effective,
                    targets: &targets,
                    paths,
                    now: now_nanos(),
                };
                let _ = reply.send(read_state::read(&self.replica, &self.requests, &self.subnet, &read));
            }
            Command::Run(f) => f(&self.replica),
        }
    }

    fn call(&mut self, call: Call, events: Sender<CallEvent>) {
        if let Some(known) = self.requests.get(&call.request_id) {
            // The IC runs a request once: a resubmission gets the first one's status.
            let _ = events.send(CallEvent::Accepted);
            match &known.status {
                Status::Processing => self.waiting.entry(call.request_id).or_default().push(events),
                done => {
                    let _ = events.send(CallEvent::Finished(done.clone()));
                }
            }
            return;
        }
        self.sync_clock(now_nanos());
        let (request_id, sender, receiver, expiry) = (call.request_id, call.sender, call.canister_id, call.expiry);
        let status = match self.admit(call) {
            Admission::Refused(reject) => {
                let _ = events.send(CallEvent::NonReplicated(reject_response(reject)));
                return;
            }
            Admission::Submitted(message, outcome) => {
                self.in_flight.push((message, request_id, outcome));
                Status::Processing
            }
            Admission::Answered(status) => status,
        };
        let request = Request {
            sender,
            receiver,
            expiry,
            status: Status::Processing,
        };
        self.requests.insert(request_id, request);
        let _ = events.send(CallEvent::Accepted);
        self.waiting.entry(request_id).or_default().push(events);
        if status != Status::Processing {
            self.finish(request_id, status);
        }
    }

    /// The IC's ingress filter, then submission: a call to a canister that does not exist is refused; calls to the
    /// system canisters are answered here.
    fn admit(&mut self, call: Call) -> Admission {
        if system_canisters::is_system_canister(call.canister_id) {
            return match system_canisters::call(call.canister_id, &call.method, &call.arg, self.subnet.id) {
                Answer::Reply(reply) => Admission::Answered(Status::Replied(reply)),
                Answer::Reject(reject) => Admission::Answered(Status::Rejected(reject_response(reject))),
                Answer::Create(args) => {
                    let arg = Encode!(&args).expect("encode");
                    let method = "provisional_create_canister_with_cycles";
                    self.submit(
                        Principal::management_canister(),
                        call.sender,
                        method,
                        arg,
                        Outcome::LedgerCreate,
                    )
                }
            };
        }
        if call.canister_id != Principal::management_canister() && !self.replica.canister_exists(call.canister_id) {
            return Admission::Refused(not_found(call.canister_id));
        }
        self.submit(call.canister_id, call.sender, &call.method, call.arg, Outcome::AsIs)
    }

    fn submit(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
        outcome: Outcome,
    ) -> Admission {
        match self.replica.submit_call(canister, sender, method, arg) {
            Ok(message) => Admission::Submitted(message, outcome),
            Err(reject) => Admission::Refused(reject),
        }
    }

    fn finish(&mut self, request_id: [u8; 32], status: Status) {
        for waiter in self.waiting.remove(&request_id).unwrap_or_default() {
            let _ = waiter.send(CallEvent::Finished(status.clone()));
        }
        if let Some(request) = self.requests.get_mut(&request_id) {
            request.status = status;
        }
    }

    /// Answered requests are forgotten once they expire (their status then reads as unknown).
    fn forget_expired(&mut self, now: u64) {
        self.requests
            .retain(|_, r| r.expiry >= now || r.status == Status::Processing);
    }

    fn query(&mut self, query: Query) -> Result<Vec<u8>, RejectResponse> {
        self.sync_clock(now_nanos());
        if system_canisters::is_system_canister(query.canister_id) {
            return match system_canisters::call(query.canister_id, &query.method, &query.arg, self.subnet.id) {
                Answer::Reply(reply) => Ok(reply),
                Answer::Reject(reject) => Err(reject_response(reject)),
                Answer::Create(_) => Err(reject_response(
                    Reject::new(
                        ReplicaRejectCode::CanisterError,
                        format!("Canister {} has no query method '{}'.", query.canister_id, query.method),
                    )
                    .with_error_code("IC0536"),
                )),
            };
        }
        self.replica
            .query_call(query.canister_id, query.sender, &query.method, query.arg)
            .map_err(reject_response)
    }
}

fn not_found(id: Principal) -> Reject {
    Reject::new(
        ReplicaRejectCode::DestinationInvalid,
        format!("Canister {id} not found"),
    )
    .with_error_code("IC0301")
}

/// A replica reject as clients receive it. Clients know reject codes 1 to 5 only: SYS_UNKNOWN (6, an unknown
/// outcome) reaches them as SYS_TRANSIENT (a retry may help). A canister's own reject carries IC0406, as on the IC.
pub fn reject_response(reject: Reject) -> RejectResponse {
    let reject_code = match reject.code {
        ReplicaRejectCode::SysFatal => RejectCode::SysFatal,
        ReplicaRejectCode::SysTransient | ReplicaRejectCode::SysUnknown => RejectCode::SysTransient,
        ReplicaRejectCode::DestinationInvalid => RejectCode::DestinationInvalid,
        ReplicaRejectCode::CanisterReject => RejectCode::CanisterReject,
        ReplicaRejectCode::CanisterError => RejectCode::CanisterError,
    };
    let error_code = match (reject.error_code, reject.code) {
        (Some(code), _) => Some(code.to_string()),
        (None, ReplicaRejectCode::CanisterReject) => Some("IC0406".to_string()),
        (None, _) => None,
    };
    RejectResponse {
        reject_code,
        reject_message: reject.message,
        error_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_unknown_reaches_clients_as_sys_transient_and_canister_rejects_carry_ic0406() {
        let unknown = reject_response(Reject::new(ReplicaRejectCode::SysUnknown, "Request timed out."));
        assert_eq!(unknown.reject_code, RejectCode::SysTransient);
        assert_eq!(unknown.reject_message, "Request timed out.");
        let rejected = reject_response(Reject::new(ReplicaRejectCode::CanisterReject, "no"));
        assert_eq!(rejected.reject_code, RejectCode::CanisterReject);
        assert_eq!(rejected.error_code.as_deref(), Some("IC0406"));
        let missing = reject_response(not_found(Principal::anonymous()));
        assert_eq!(missing.reject_code, RejectCode::DestinationInvalid);
        assert_eq!(missing.error_code.as_deref(), Some("IC0301"));
    }
}
