//! Malformed arguments to every endpoint of both canisters are rejected and change nothing.
//!
//! The method lists come from the committed `parent/parent.did` and `child/child.did` (parsed with `candid_parser`),
//! so a new endpoint is covered without touching this file. For each method the test sends, as the most privileged
//! caller (a controller of the canister, so only decoding stands between the bytes and the handler):
//! - random bytes (some starting with the `DIDL` magic, to get past the header check),
//! - truncations of a valid argument built from the method's own Candid types,
//! - well-formed Candid of the wrong types (`(true, "x", 42)`, or `("x", true, 42)` where a `bool` comes first).
//!
//! Update methods get update calls; query methods get query calls and replicated (update) calls. Every payload that
//! the host's Candid decoder also rejects must be rejected with CANISTER_ERROR (5) and a decode message, and the
//! observable state of both canisters (parent: `rollout_status`, `settings`, every `list_children` page, `releases`;
//! each child: `data_checksum`, `health` including `request_count`, which the trap rolls back; only `last_tick`,
//! which the heartbeat timer moves, is masked) is the same before and after.
//!
//! Methods without parameters: ic-cdk does not read their argument at all (its `#[query]`/`#[update]` macros skip
//! decoding when the parameter list is empty), so a query without parameters answers whatever bytes it is sent.
//! That is harmless for queries (they change nothing, which this test still checks), but not for updates: the
//! parent's three parameterless updates (`start_rollout`, `verify_fleet`, `retry_failed`) therefore check their
//! argument in a guard (`candid_args` in `parent/src/lib.rs`: Candid or nothing), and this test requires every update
//! method, with or without parameters, to reject.
//!
//! Deterministic: a fixed-seed xorshift generates every payload.

use std::collections::BTreeMap;

use candid::types::value::{IDLField, IDLValue, VariantValue};
use candid::types::{Type, TypeInner};
use candid::{Encode, IDLArgs, Principal, TypeEnv};
use candid_parser::utils::CandidSource;
use fleet::{Fleet, FleetConfig, Release};
use replica::{Reject, RejectCode};
use shared::child::{DataChecksum, Health};
use shared::parent::{ChildInfo, ReleaseRecord, RolloutStatus, Settings};

const SEED: u64 = 0x5EED_CA11_DA7A_0001;
const RANDOM_PAYLOADS: usize = 4;
const TRUNCATIONS: usize = 4;
/// Texts of the Candid decoder's errors, one of which every reject must carry.
const DECODE_ERROR_MARKERS: &[&str] = &["decode", "deserializ", "cannot parse header", "binary parser error"];

// --- deterministic randomness -----------------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// --- interfaces ---------------------------------------------------------------------------------------------------

struct Method {
    name: String,
    args: Vec<Type>,
    query: bool,
}

struct Interface {
    env: TypeEnv,
    methods: Vec<Method>,
}

fn interface(did: &str) -> Interface {
    let text = String::from_utf8(fleet::wasms::read(did)).expect("UTF-8");
    let (env, actor) = CandidSource::Text(&text).load().expect("parse did");
    let actor = actor.expect("the did file has a service");
    let methods = env
        .as_service(&actor)
        .expect("service")
        .iter()
        .map(|(name, _)| {
            let f = env.get_method(&actor, name).expect("method");
            Method {
                name: name.clone(),
                args: f.args.clone(),
                query: f.is_query(),
            }
        })
        .collect();
    Interface { env, methods }
}

/// A valid, non-trivial value of type `t` (records filled, one vec element, `opt` present), so that truncating its
/// encoding cuts through real data.
fn sample(env: &TypeEnv, t: &Type, depth: usize) -> IDLValue {
    let t = env.trace_type(t).expect("resolvable type");
    match t.as_ref() {
        TypeInner::Null => IDLValue::Null,
        TypeInner::Bool => IDLValue::Bool(true),
        TypeInner::Nat => IDLValue::Nat(7u32.into()),
        TypeInner::Int => IDLValue::Int(7.into()),
        TypeInner::Nat8 => IDLValue::Nat8(7),
        TypeInner::Nat16 => IDLValue::Nat16(7),
        TypeInner::Nat32 => IDLValue::Nat32(7),
        TypeInner::Nat64 => IDLValue::Nat64(7),
        TypeInner::Int8 => IDLValue::Int8(7),
        TypeInner::Int16 => IDLValue::Int16(7),
        TypeInner::Int32 => IDLValue::Int32(7),
        TypeInner::Int64 => IDLValue::Int64(7),
        TypeInner::Float32 => IDLValue::Float32(0.5),
        TypeInner::Float64 => IDLValue::Float64(0.5),
        TypeInner::Text => IDLValue::Text("sample-text".into()),
        TypeInner::Reserved => IDLValue::Reserved,
        TypeInner::Principal => IDLValue::Principal(Principal::from_slice(&[9; 29])),
        TypeInner::Opt(_) if depth > 3 => IDLValue::None,
        TypeInner::Opt(inner) => IDLValue::Opt(Box::new(sample(env, inner, depth + 1))),
        TypeInner::Vec(inner) if depth > 3 => IDLValue::Vec(vec![]),
        TypeInner::Vec(inner) => IDLValue::Vec(vec![sample(env, inner, depth + 1)]),
        TypeInner::Record(fields) => IDLValue::Record(
            fields
                .iter()
                .map(|f| IDLField {
                    id: (*f.id).clone(),
                    val: sample(env, &f.ty, depth + 1),
                })
                .collect(),
        ),
        TypeInner::Variant(fields) => {
            let f = &fields[0];
            IDLValue::Variant(VariantValue(
                Box::new(IDLField {
                    id: (*f.id).clone(),
                    val: sample(env, &f.ty, depth + 1),
                }),
                0,
            ))
        }
        other => panic!("no sample for {other:?}: extend `sample`"),
    }
}

fn valid_encoding(i: &Interface, m: &Method) -> Vec<u8> {
    let values: Vec<IDLValue> = m.args.iter().map(|t| sample(&i.env, t, 0)).collect();
    IDLArgs::new(&values)
        .to_bytes_with_types(&i.env, &m.args)
        .unwrap_or_else(|e| panic!("encode a sample argument of {}: {e}", m.name))
}

/// Whether the host's Candid decoder accepts `bytes` as arguments of `m` (then it is not a bad payload).
fn decodes(i: &Interface, m: &Method, bytes: &[u8]) -> bool {
    IDLArgs::from_bytes_with_types(bytes, &i.env, &m.args).is_ok()
}

fn wrong_typed(i: &Interface, m: &Method) -> Vec<u8> {
    let first_is_bool = m
        .args
        .first()
        .is_some_and(|t| matches!(i.env.trace_type(t).unwrap().as_ref(), TypeInner::Bool));
    if first_is_bool {
        Encode!(&"x", &true, &candid::Int::from(42)).unwrap()
    } else {
        Encode!(&true, &"x", &candid::Int::from(42)).unwrap()
    }
}

/// Every bad payload for `m`, labelled; payloads the host decoder accepts are dropped.
fn bad_payloads(i: &Interface, m: &Method, rng: &mut XorShift) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for n in 0..RANDOM_PAYLOADS {
        let len = 1 + rng.below(48);
        let mut bytes = rng.bytes(len);
        if n % 2 == 1 {
            let mut with_magic = b"DIDL".to_vec();
            with_magic.append(&mut bytes);
            bytes = with_magic;
        }
        out.push((format!("random #{n} ({} bytes)", bytes.len()), bytes));
    }
    let valid = valid_encoding(i, m);
    assert!(decodes(i, m, &valid), "the sample argument of {} is valid", m.name);
    let mut cuts: Vec<usize> = (0..TRUNCATIONS).map(|_| 1 + rng.below(valid.len() - 1)).collect();
    cuts.push(valid.len() - 1);
    cuts.sort();
    cuts.dedup();
    for cut in cuts {
        out.push((
            format!("truncated to {cut} of {} bytes", valid.len()),
            valid[..cut].to_vec(),
        ));
    }
    out.push(("wrong types".into(), wrong_typed(i, m)));
    out.retain(|(_, bytes)| !decodes(i, m, bytes));
    out
}

// --- the fleet ----------------------------------------------------------------------------------------------------

/// Release A with two children holding a few members; the bad calls come from the fleet's controller (a controller
/// of the parent and of every child).
fn setup() -> Fleet {
    Fleet::with_children(&Release::current(), FleetConfig::default(), 2, 3, 10)
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    status: RolloutStatus,
    settings: Settings,
    children: Vec<ChildInfo>,
    releases: Vec<ReleaseRecord>,
    child_state: BTreeMap<Principal, (DataChecksum, Health)>,
}

fn snapshot(f: &Fleet) -> Snapshot {
    let p = f.parent();
    let child_state = f
        .children
        .iter()
        .map(|c| {
            let mut health = f.child(*c).health();
            health.last_tick = None; // moved by the heartbeat timer, not by calls
            (*c, (f.child(*c).data_checksum(), health))
        })
        .collect();
    Snapshot {
        status: p.rollout_status(),
        settings: p.settings(),
        children: p.list_all_children(),
        releases: p.releases(),
        child_state,
    }
}

fn expect_decode_reject(res: Result<Vec<u8>, Reject>, what: &str) {
    match res {
        Err(rej) => {
            assert_eq!(rej.code, RejectCode::CanisterError, "{what}: {rej}");
            let msg = rej.message.to_lowercase();
            assert!(
                DECODE_ERROR_MARKERS.iter().any(|m| msg.contains(m)),
                "{what}: not a decode error: {rej}"
            );
        }
        Ok(reply) => panic!("{what}: accepted (reply {} bytes)", reply.len()),
    }
}

/// Sends every bad payload to every method of `canister`; returns how many calls were made.
fn bombard(s: &Fleet, canister: Principal, did: &str, rng: &mut XorShift) -> usize {
    let i = interface(did);
    assert!(!i.methods.is_empty());
    let mut calls = 0;
    // One snapshot per canister (each costs a dozen queries, far more than the bad calls themselves).
    let before = snapshot(s);
    for m in &i.methods {
        let payloads = bad_payloads(&i, m, rng);
        assert!(
            payloads.len() >= RANDOM_PAYLOADS,
            "{did} {}: too few bad payloads ({})",
            m.name,
            payloads.len()
        );
        for (label, bytes) in payloads {
            let what = format!("{did} {}: {label}", m.name);
            if m.query {
                let as_query = s.replica.query_call(canister, s.controller, &m.name, bytes.clone());
                let as_update = s.replica.update_call(canister, s.controller, &m.name, bytes);
                calls += 2;
                if m.args.is_empty() {
                    // ic-cdk never reads the argument of a method without parameters (see the module docs).
                    assert!(
                        as_query.is_ok() && as_update.is_ok(),
                        "{what}: {as_query:?} / {as_update:?}"
                    );
                } else {
                    expect_decode_reject(as_query, &format!("{what} (query call)"));
                    expect_decode_reject(as_update, &format!("{what} (replicated)"));
                }
            } else {
                calls += 1;
                expect_decode_reject(s.replica.update_call(canister, s.controller, &m.name, bytes), &what);
            }
        }
    }
    assert_eq!(snapshot(s), before, "{did} {canister}: state changed");
    calls
}

#[test]
fn bad_candid_to_every_endpoint_is_rejected_and_changes_nothing() {
    let s = setup();
    let _logs = s.replica.print_logs_on_panic();
    let mut rng = XorShift(SEED);
    let start = snapshot(&s);
    assert_eq!(start.children.len(), 2);
    assert!(start
        .child_state
        .values()
        .all(|(sum, h)| sum.members == 3 && h.request_count == 1));

    let mut calls = bombard(&s, s.parent, "parent/parent.did", &mut rng);
    for c in &s.children {
        calls += bombard(&s, *c, "child/child.did", &mut rng);
    }
    assert!(calls > 200, "{calls} calls");
    assert_eq!(snapshot(&s), start);
    let traps = s
        .replica
        .executions()
        .iter()
        .filter(|e| e.entry.starts_with("canister_update") && e.outcome.is_err())
        .count();
    assert!(
        traps > 0,
        "the bad calls trapped in the canisters (they were not refused before execution)"
    );
}

/// The payload generators themselves: a valid argument round-trips, and nothing the host accepts is sent as "bad".
#[test]
fn generated_payloads_are_really_bad() {
    let mut rng = XorShift(SEED);
    for did in ["parent/parent.did", "child/child.did"] {
        let i = interface(did);
        for m in &i.methods {
            for (label, bytes) in bad_payloads(&i, m, &mut rng) {
                assert!(!decodes(&i, m, &bytes), "{did} {} {label}", m.name);
            }
        }
    }
}
