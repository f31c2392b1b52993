//! `read_state`: which paths a sender may read (as the IC's HTTP endpoint checks them), and the state tree they
//! select (spec "The system state tree").

use std::collections::BTreeMap;

use candid::Principal;
use ic_transport_types::RejectResponse;
use replica::Replica;

use crate::auth::Targets;
use crate::tree::{to_cbor, Node};
use crate::HttpError;

/// Where a request was sent: `/api/vN/canister/<id>/...` or `/api/vN/subnet/<id>/...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effective {
    Canister(Principal),
    Subnet(Principal),
}

/// The status of an ingress message, as `request_status/<id>` holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Processing,
    Replied(Vec<u8>),
    Rejected(RejectResponse),
}

impl Status {
    pub fn node(&self) -> Node {
        match self {
            Status::Processing => Node::map().with("status", Node::leaf("processing")),
            Status::Replied(reply) => Node::map()
                .with("status", Node::leaf("replied"))
                .with("reply", Node::leaf(reply.clone())),
            Status::Rejected(reject) => {
                let mut node = Node::map()
                    .with("status", Node::leaf("rejected"))
                    .with("reject_code", Node::nat(reject.reject_code as u64))
                    .with("reject_message", Node::leaf(reject.reject_message.clone()));
                if let Some(code) = &reject.error_code {
                    node = node.with("error_code", Node::leaf(code.clone()));
                }
                node
            }
        }
    }
}

/// An ingress message the network has accepted, kept until it expires.
pub struct Request {
    pub sender: Principal,
    pub receiver: Principal,
    pub expiry: u64,
    pub status: Status,
}

/// The one subnet of this network, named by its root key (there is no delegation), with its one node.
pub struct Subnet {
    pub id: Principal,
    pub root_key_der: Vec<u8>,
    pub node_id: Principal,
    pub node_key_der: Vec<u8>,
}

impl Subnet {
    /// The subnet hosts every canister id: the system canisters' mainnet ids as well as the ones it creates.
    pub fn canister_ranges() -> Vec<(Principal, Principal)> {
        let id = |index: u64| Principal::from_slice(&[&index.to_be_bytes()[..], &[1, 1]].concat());
        vec![(id(0), id(u64::MAX))]
    }

    /// `subnet/<id>`.
    fn node(&self) -> Node {
        let node_key = Node::map().with("public_key", Node::leaf(self.node_key_der.clone()));
        Node::map()
            .with("public_key", Node::leaf(self.root_key_der.clone()))
            .with("canister_ranges", Node::leaf(to_cbor(&Self::canister_ranges())))
            .with("type", Node::leaf("application"))
            .with("node", Node::map().with(self.node_id.as_slice(), node_key))
    }

    /// `canister_ranges/<id>`: the ranges in the sharded form, one shard keyed by its first canister id.
    fn sharded_ranges(&self) -> Node {
        let ranges = Self::canister_ranges();
        let first = ranges[0].0;
        Node::map().with(first.as_slice(), Node::leaf(to_cbor(&ranges)))
    }
}

/// What a read_state request reads.
pub struct ReadState<'a> {
    pub sender: Principal,
    pub effective: Effective,
    pub targets: &'a Targets,
    pub paths: Vec<Vec<Vec<u8>>>,
    /// The certificate's `time`, in ns since the epoch.
    pub now: u64,
}

/// Checks that the sender may read every path, then returns the tree of the paths (with `time`, always).
pub fn read(
    replica: &Replica,
    requests: &BTreeMap<[u8; 32], Request>,
    subnet: &Subnet,
    read: &ReadState,
) -> Result<Node, HttpError> {
    let mut request_id: Option<&[u8]> = None;
    for path in &read.paths {
        let labels: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
        match (read.effective, labels.as_slice()) {
            (_, [b"time"]) => {}
            (Effective::Canister(effective), [b"canister", id, rest @ ..]) => {
                let id = parse_principal(id)?;
                if id != effective {
                    return Err(HttpError::bad_request(format!(
                        "Effective principal id in URL {effective} does not match requested principal id: {id}."
                    )));
                }
                match rest {
                    [b"controllers" | b"module_hash"] => {}
                    [b"metadata", name] => check_metadata(replica, read.sender, id, name)?,
                    _ => return Err(invalid_path()),
                }
            }
            (_, [b"subnet"] | [b"subnet", _] | [b"subnet", _, b"public_key" | b"node" | b"canister_ranges"]) => {}
            (_, [b"subnet", _, b"node", _] | [b"subnet", _, b"node", _, b"public_key"]) => {}
            (Effective::Subnet(_), [b"subnet", _, b"metrics"] | [b"canister_ranges", _]) => {}
            (_, [b"api_boundary_nodes", ..]) => {}
            (_, [b"request_status", id, rest @ ..]) => {
                if !matches!(
                    rest,
                    [] | [b"status" | b"reply" | b"reject_code" | b"reject_message" | b"error_code"]
                ) {
                    return Err(invalid_path());
                }
                if id.len() != 32 {
                    return Err(HttpError::bad_request(
                        "Invalid request id in paths. Maybe the request ID is not of 32 bytes in length?!",
                    ));
                }
                if request_id.is_some_and(|seen| seen != *id) {
                    return Err(HttpError::bad_request(
                        "More than one non-unique request ID exists in request_status paths.",
                    ));
                }
                request_id = Some(id);
                check_request_reader(requests, read, id)?;
            }
            _ => return Err(invalid_path()),
        }
    }
    let mut tree = Node::map().with("time", Node::nat(read.now));
    for path in &read.paths {
        if let Some(subtree) = lookup(replica, requests, subnet, path) {
            tree.insert(path, subtree);
        }
    }
    Ok(tree)
}

/// The subtree at a path that passed the checks, if the state has one.
fn lookup(
    replica: &Replica,
    requests: &BTreeMap<[u8; 32], Request>,
    subnet: &Subnet,
    path: &[Vec<u8>],
) -> Option<Node> {
    let labels: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
    match labels.as_slice() {
        [b"canister", id, rest @ ..] => {
            let id = Principal::from_slice(id);
            if !replica.canister_exists(id) {
                return None;
            }
            match rest {
                [b"controllers"] => Some(Node::leaf(to_cbor(&replica.controllers(id)))),
                [b"module_hash"] => replica.module_hash(id).map(|hash| Node::leaf(hash.to_vec())),
                [b"metadata", name] => {
                    let section = replica.metadata(id, std::str::from_utf8(name).ok()?)?;
                    Some(Node::leaf(section.content))
                }
                _ => None,
            }
        }
        [b"subnet", ..] => {
            let subnets = Node::map().with(subnet.id.as_slice(), subnet.node());
            subnets.get(&path[1..]).cloned()
        }
        [b"canister_ranges", ..] => {
            let ranges = Node::map().with(subnet.id.as_slice(), subnet.sharded_ranges());
            ranges.get(&path[1..]).cloned()
        }
        [b"request_status", id, ..] => {
            let key: [u8; 32] = (*id).try_into().ok()?;
            requests.get(&key)?.status.node().get(&path[2..]).cloned()
        }
        _ => None,
    }
}

/// Only the sender of a request may read its status, and only through a delegation that allows its canister.
fn check_request_reader(requests: &BTreeMap<[u8; 32], Request>, read: &ReadState, id: &[u8]) -> Result<(), HttpError> {
    let Some(request) = <[u8; 32]>::try_from(id).ok().and_then(|key| requests.get(&key)) else {
        return Ok(());
    };
    if request.sender != read.sender {
        return Err(HttpError::forbidden(
            "The user tries to access Request ID not signed by the caller.",
        ));
    }
    if read.targets.as_ref().is_some_and(|t| !t.contains(&request.receiver)) {
        return Err(HttpError::forbidden(
            "The user tries to access request IDs for canisters not belonging to sender delegation targets.",
        ));
    }
    Ok(())
}

fn invalid_path() -> HttpError {
    HttpError::not_found("Invalid path requested.")
}

fn parse_principal(bytes: &[u8]) -> Result<Principal, HttpError> {
    Principal::try_from_slice(bytes).map_err(|e| HttpError::bad_request(format!("Could not parse principal ID: {e}.")))
}

/// Only controllers may read a private (`icp:private`) custom section.
fn check_metadata(replica: &Replica, sender: Principal, id: Principal, name: &[u8]) -> Result<(), HttpError> {
    let name = std::str::from_utf8(name)
        .map_err(|e| HttpError::bad_request(format!("Could not parse the custom section name: {e}.")))?;
    if !replica.canister_exists(id) {
        return Ok(());
    }
    match replica.metadata(id, name) {
        Some(section) if !section.public && !replica.controllers(id).contains(&sender) => Err(HttpError::forbidden(
            format!("Custom section {name:.100} can only be requested by the controllers of the canister."),
        )),
        _ => Ok(()),
    }
}
