//! One PocketIC instance: a replica with one application subnet, and the instance endpoints
//! (`/instances/<id>/<endpoint>`) on it.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, UNIX_EPOCH};

use candid::Principal;
use pocket_ic::common::rest::{
    CanisterCyclesCostSchedule, CanisterIdRange, RawAddCycles, RawCanisterCall, RawCanisterId, RawCanisterResult,
    RawCycles, RawEffectivePrincipal, RawIngressStatusArgs, RawMessageId, RawPrincipalId, RawSetStableMemory,
    RawStableMemory, RawSubnetId, RawTickConfigs, RawTime, SubnetConfig, SubnetInstructionConfig, SubnetKind, Topology,
};
use replica::{MessageId, Reject, RejectCode, Replica, ReplicaConfig};
use sha2::{Digest, Sha256};

use crate::answer::{parse, Answer, ApiError};
use crate::blobs::Blobs;
use crate::convert::{canister_result, principal, reject_response};

/// The most rounds `await_ingress_message` runs for one message before giving up, as PocketIC.
pub const AWAIT_MAX_ROUNDS: u64 = 100;

/// Endpoints of PocketIC features this server does not implement, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "auto_progress",
        "live mode (auto progress) is not supported: drive the instance with tick and set_time",
    ),
    ("read/get_canister_http", HTTP_OUTCALLS),
    ("update/mock_canister_http", HTTP_OUTCALLS),
    ("update/mock_flexible_canister_http", HTTP_OUTCALLS),
    ("update/canister_snapshot_download", SNAPSHOT_FILES),
    ("update/canister_snapshot_upload", SNAPSHOT_FILES),
    (
        "update/delete_subnet",
        "the instance has a single subnet, which cannot be deleted",
    ),
    (
        "api",
        "the IC HTTP interface (/api/v2, /api/v3) of an instance is not served: use the REST endpoints",
    ),
    ("_/dashboard", "there is no dashboard"),
];
const HTTP_OUTCALLS: &str = "canister HTTP outcalls are not supported by this replica";
const SNAPSHOT_FILES: &str = "canister snapshot download and upload are not supported by this replica";

/// An ingress message submitted through `submit_ingress_message`.
struct Submitted {
    id: MessageId,
    sender: Principal,
}

pub struct Instance {
    replica: Replica,
    topology: Topology,
    blobs: Blobs,
    /// By the 32-byte message id handed to the client. Kept, like PocketIC's ingress history, so that the status of
    /// an answered message can still be read.
    messages: HashMap<Vec<u8>, Submitted>,
}

impl Instance {
    pub fn new(config: ReplicaConfig, blobs: Blobs) -> Self {
        let replica = Replica::with_config(config);
        let topology = topology(&replica);
        Self {
            replica,
            topology,
            blobs,
            messages: HashMap::new(),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Answers `method endpoint` with `body`. Never panics: a panic inside the replica becomes a 500 answer.
    pub fn answer(&mut self, method: &str, endpoint: &str, body: &[u8]) -> Answer {
        match catch_unwind(AssertUnwindSafe(|| self.handle(method, endpoint, body))) {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => e.at(endpoint).into(),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                Answer::from(ApiError {
                    status: 500,
                    message: format!("{endpoint}: internal error in the replica: {text}"),
                })
            }
        }
    }

    fn handle(&mut self, method: &str, endpoint: &str, body: &[u8]) -> Result<Answer, ApiError> {
        match (method, endpoint) {
            ("GET", "read/topology" | "_/topology") => Ok(Answer::json(&self.topology)),
            ("GET", "read/get_time") => Ok(Answer::json(&RawTime {
                nanos_since_epoch: self.replica.time_nanos(),
            })),
            ("POST", "update/set_time" | "update/set_certified_time") => self.set_time(parse(body)?),
            ("POST", "update/tick") => self.tick(parse(body)?),
            ("POST", "update/submit_ingress_message") => self.submit(parse(body)?),
            ("POST", "update/await_ingress_message") => self.await_message(parse(body)?),
            ("POST", "read/ingress_status") => self.ingress_status(parse(body)?),
            ("POST", "read/query") => self.query(parse(body)?),
            ("POST", "read/get_cycles") => {
                let id = self.existing_canister(&parse::<RawCanisterId>(body)?.canister_id)?;
                Ok(Answer::json(&RawCycles {
                    cycles: self.replica.cycle_balance(id),
                }))
            }
            ("POST", "update/add_cycles") => self.add_cycles(parse(body)?),
            ("POST", "read/get_controllers") => {
                let id = self.existing_canister(&parse::<RawCanisterId>(body)?.canister_id)?;
                let controllers: Vec<RawPrincipalId> = self
                    .replica
                    .controllers(id)
                    .into_iter()
                    .map(RawPrincipalId::from)
                    .collect();
                Ok(Answer::json(&controllers))
            }
            ("POST", "read/get_subnet") => {
                let id = principal(&parse::<RawCanisterId>(body)?.canister_id, "canister_id")?;
                let subnet = self
                    .replica
                    .canister_exists(id)
                    .then(|| RawSubnetId::from(self.replica.subnet_id()));
                Ok(Answer::json(&subnet))
            }
            ("POST", "read/pub_key") => {
                let subnet = principal(&parse::<RawSubnetId>(body)?.subnet_id, "subnet_id")?;
                self.check_subnet(subnet)?;
                Ok(Answer::json(&self.replica.root_key()))
            }
            ("POST", "update/set_stable_memory") => self.set_stable_memory(parse(body)?),
            ("POST", "read/get_stable_memory") => {
                let id = self.existing_canister(&parse::<RawCanisterId>(body)?.canister_id)?;
                Ok(Answer::json(&RawStableMemory {
                    blob: self.replica.stable_memory(id),
                }))
            }
            ("GET", "auto_progress") => Ok(Answer::json(&false)),
            // Auto progress never runs here, so there is nothing to stop.
            ("POST", "stop_progress") => Ok(Answer::json(&())),
            _ => Err(unsupported_or_unknown(method, endpoint)),
        }
    }

    fn set_time(&mut self, time: RawTime) -> Result<Answer, ApiError> {
        let now = self.replica.time_nanos();
        if time.nanos_since_epoch < now {
            // PocketIC's wording, which tests match on.
            return Err(ApiError::bad_request(format!(
                "SettingTimeIntoPast(({now}, {}))",
                time.nanos_since_epoch
            )));
        }
        self.replica
            .set_time(UNIX_EPOCH + Duration::from_nanos(time.nanos_since_epoch))
            .map_err(ApiError::bad_request)?;
        Ok(Answer::json(&()))
    }

    fn tick(&mut self, configs: RawTickConfigs) -> Result<Answer, ApiError> {
        if configs.blockmakers.is_some() {
            return Err(ApiError::unsupported(
                "blockmaker metrics are not supported: tick without configs",
            ));
        }
        self.replica.tick();
        Ok(Answer::json(&()))
    }

    fn submit(&mut self, call: RawCanisterCall) -> Result<Answer, ApiError> {
        let (canister, sender) = self.call_target(&call)?;
        // The IC refuses ingress to a canister that does not exist when it is submitted.
        if canister != Principal::management_canister() && !self.replica.canister_exists(canister) {
            let reject = Reject::new(RejectCode::DestinationInvalid, format!("Canister {canister} not found"))
                .with_error_code("IC0301");
            return Ok(Answer::json(&Err::<RawMessageId, _>(reject_response(&reject, false))));
        }
        let result = match self.replica.submit_call(canister, sender, &call.method, call.payload) {
            Ok(id) => {
                let message_id = self.new_message_id();
                self.messages.insert(message_id.clone(), Submitted { id, sender });
                Ok(RawMessageId {
                    effective_principal: call.effective_principal,
                    message_id,
                })
            }
            Err(reject) => Err(reject_response(&reject, false)),
        };
        Ok(Answer::json(&result))
    }

    /// Runs rounds until the message is answered, as PocketIC does.
    fn await_message(&mut self, message: RawMessageId) -> Result<Answer, ApiError> {
        let id = self
            .messages
            .get(&message.message_id)
            .ok_or_else(|| ApiError::bad_request(format!("no message with id {}", hex::encode(&message.message_id))))?
            .id;
        for round in 0..=AWAIT_MAX_ROUNDS {
            if let Some(result) = self.replica.ingress_status(id) {
                return Ok(Answer::json(&canister_result(result, true)));
            }
            if round < AWAIT_MAX_ROUNDS {
                self.replica.tick();
            }
        }
        Err(ApiError::bad_request(format!(
            "Failed to answer to ingress {} after {AWAIT_MAX_ROUNDS} rounds.",
            hex::encode(&message.message_id)
        )))
    }

    fn ingress_status(&self, args: RawIngressStatusArgs) -> Result<Answer, ApiError> {
        let Some(submitted) = self.messages.get(&args.raw_message_id.message_id) else {
            return Ok(Answer::json(&None::<RawCanisterResult>));
        };
        if let Some(caller) = args.raw_caller {
            if principal(&caller.principal_id, "raw_caller")? != submitted.sender {
                return Err(ApiError::forbidden(
                    "The user tries to access Request ID not signed by the caller.",
                ));
            }
        }
        let status = self.replica.ingress_status(submitted.id);
        Ok(Answer::json(&status.map(|result| canister_result(result, true))))
    }

    fn query(&self, call: RawCanisterCall) -> Result<Answer, ApiError> {
        let (canister, sender) = self.call_target(&call)?;
        if canister == Principal::management_canister() {
            return Err(ApiError::unsupported(format!(
                "query calls to the management canister (`{}`) are not supported by this replica",
                call.method
            )));
        }
        let result = self.replica.query_call(canister, sender, &call.method, call.payload);
        Ok(Answer::json(&canister_result(result, false)))
    }

    fn add_cycles(&mut self, arg: RawAddCycles) -> Result<Answer, ApiError> {
        let id = self.existing_canister(&arg.canister_id)?;
        if self.replica.cycle_balance(id).checked_add(arg.amount).is_none() {
            return Err(ApiError::bad_request(format!(
                "adding {} cycles to {id} overflows its balance",
                arg.amount
            )));
        }
        Ok(Answer::json(&RawCycles {
            cycles: self.replica.add_cycles(id, arg.amount),
        }))
    }

    fn set_stable_memory(&mut self, arg: RawSetStableMemory) -> Result<Answer, ApiError> {
        let id = self.existing_canister(&arg.canister_id)?;
        let bytes = self.blobs.content(&arg.blob_id).map_err(ApiError::bad_request)?;
        self.replica.set_stable_memory(id, &bytes);
        Ok(Answer::json(&()))
    }

    /// The canister and sender of a call, after checking that it can be routed to this instance's subnet.
    fn call_target(&self, call: &RawCanisterCall) -> Result<(Principal, Principal), ApiError> {
        if call.sender_info.is_some() {
            return Err(ApiError::unsupported(
                "sender_info is not supported: this replica has no caller info",
            ));
        }
        match &call.effective_principal {
            RawEffectivePrincipal::None => {}
            RawEffectivePrincipal::SubnetId(bytes) => self.check_subnet(principal(bytes, "effective subnet id")?)?,
            RawEffectivePrincipal::CanisterId(bytes) => {
                let id = principal(bytes, "effective canister id")?;
                if !is_canister_id(id) {
                    return Err(ApiError::bad_request(format!(
                        "CanisterNotFound({id}): not a canister id of this instance's subnet"
                    )));
                }
            }
        }
        Ok((
            principal(&call.canister_id, "canister_id")?,
            principal(&call.sender, "sender")?,
        ))
    }

    fn check_subnet(&self, subnet: Principal) -> Result<(), ApiError> {
        if subnet == self.replica.subnet_id() {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!("SubnetNotFound({subnet})")))
        }
    }

    fn existing_canister(&self, bytes: &[u8]) -> Result<Principal, ApiError> {
        let id = principal(bytes, "canister_id")?;
        if self.replica.canister_exists(id) {
            Ok(id)
        } else {
            Err(ApiError::bad_request(format!("CanisterNotFound({id})")))
        }
    }

    /// A fresh 32-byte message id (opaque to the client, like an IC request id).
    fn new_message_id(&self) -> Vec<u8> {
        Sha256::digest((self.messages.len() as u64).to_be_bytes()).to_vec()
    }
}

fn unsupported_or_unknown(method: &str, endpoint: &str) -> ApiError {
    let unsupported = UNSUPPORTED
        .iter()
        .find(|(prefix, _)| endpoint == *prefix || endpoint.starts_with(&format!("{prefix}/")));
    match unsupported {
        Some((_, why)) => ApiError::unsupported(format!("not supported by this server: {why}")),
        None => ApiError::not_found(format!(
            "unknown endpoint {method} {endpoint} (this server implements the PocketIC REST API {})",
            crate::API_VERSION
        )),
    }
}

/// The replica's canister ids: an 8-byte big-endian index followed by `[1, 1]`.
fn canister_id(index: u64) -> Principal {
    let mut bytes = index.to_be_bytes().to_vec();
    bytes.extend([1, 1]);
    Principal::from_slice(&bytes)
}

fn is_canister_id(id: Principal) -> bool {
    let bytes = id.as_slice();
    bytes.len() == 10 && bytes[8..] == [1, 1]
}

/// One application subnet holding every canister id.
fn topology(replica: &Replica) -> Topology {
    let subnet = replica.subnet_id();
    let range = CanisterIdRange {
        start: canister_id(0).into(),
        end: canister_id(u64::MAX).into(),
    };
    let config = SubnetConfig {
        subnet_kind: SubnetKind::Application,
        subnet_admins: None,
        cost_schedule: CanisterCyclesCostSchedule::Normal,
        subnet_seed: Sha256::digest(subnet.as_slice()).into(),
        instruction_config: SubnetInstructionConfig::Production,
        canister_ranges: vec![range],
    };
    Topology {
        subnet_configs: BTreeMap::from([(subnet, config)]),
        default_effective_canister_id: canister_id(replica.config().first_canister_index).into(),
    }
}
