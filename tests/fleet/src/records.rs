//! What the replica's records say about a rollout: the parent's management calls per child, how many children
//! were in an operation at each round, and instruction statistics.
//!
//! Rounds: a management call is recorded with the round in which the management canister handled it; its reply
//! reaches the caller's callback one round later. So, for one child operation of the parent:
//! - the child holds a **slot** (it may be changed: stop, install, start) from the round its `stop_canister` is
//!   handled through the round the parent receives the reply of its `start_canister` (`start.round + 1`);
//! - it holds its **lock** from its `stop_canister` through the round the parent receives the reply of the
//!   `canister_status` that confirms it (`status.round + 1`).
//!
//! The parent releases a child's slot when it commits the reply of the start, and in that same callback may launch
//! the next child's stop, which the management canister handles one round later: back-to-back operations do not
//! overlap in this accounting, so "at most K" is exact.

use std::collections::BTreeMap;

use candid::Principal;
use replica::{ExecutionRecord, ManagementCall, Replica};

/// Management calls made by `caller` from index `since` of [`Replica::management_calls`] on.
pub fn calls_since(replica: &Replica, caller: Principal, since: usize) -> Vec<ManagementCall> {
    replica
        .management_calls()
        .into_iter()
        .skip(since)
        .filter(|c| c.caller == caller)
        .collect()
}

/// How many calls of `method` each target received.
pub fn count_per_target(calls: &[ManagementCall], method: &str) -> BTreeMap<Principal, usize> {
    let mut out = BTreeMap::new();
    for c in calls.iter().filter(|c| c.method == method) {
        if let Some(t) = c.target {
            *out.entry(t).or_insert(0) += 1;
        }
    }
    out
}

/// The rounds (inclusive) during which one child operation held a slot and a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpSpan {
    pub child: Principal,
    /// The operation's check (the `canister_status` before its `stop_canister`) handled, or its stop if it had none.
    pub start: u64,
    /// The parent received the reply of `start_canister` (`None`: no start followed).
    pub slot_end: Option<u64>,
    /// The parent received the reply of the confirming `canister_status` (`None`: none followed).
    pub lock_end: Option<u64>,
}

/// The operations that stopped a child found in `calls` (calls by the parent, in record order), per child in order.
pub fn op_spans(calls: &[ManagementCall]) -> Vec<OpSpan> {
    let mut per_child: BTreeMap<Principal, Vec<&ManagementCall>> = BTreeMap::new();
    for c in calls {
        if let Some(t) = c.target {
            per_child.entry(t).or_default().push(c);
        }
    }
    let mut spans = Vec::new();
    for (child, calls) in per_child {
        let mut open: Option<OpSpan> = None;
        // A status call with no operation open: the check of the next one (or a re-check that stops nothing).
        let mut check: Option<u64> = None;
        for c in calls {
            match c.method.as_str() {
                "stop_canister" => {
                    if let Some(prev) = open.take() {
                        spans.push(prev);
                    }
                    open = Some(OpSpan {
                        child,
                        start: check.take().unwrap_or(c.round),
                        slot_end: None,
                        lock_end: None,
                    });
                }
                "start_canister" => {
                    if let Some(op) = open.as_mut() {
                        op.slot_end.get_or_insert(c.round + 1);
                    }
                }
                "canister_status" => match open.take() {
                    Some(mut op) if op.slot_end.is_some() => {
                        op.lock_end = Some(c.round + 1);
                        spans.push(op);
                    }
                    Some(op) => open = Some(op),
                    None => check = Some(c.round),
                },
                _ => {}
            }
        }
        spans.extend(open);
    }
    spans
}

/// Children holding a slot and a lock, per round.
#[derive(Clone, Debug, Default)]
pub struct Occupancy {
    /// round → (children holding a slot, children holding a lock).
    pub per_round: BTreeMap<u64, (usize, usize)>,
}

impl Occupancy {
    /// From [`op_spans`]; an operation without an end counts until `last_round`.
    pub fn from_spans(spans: &[OpSpan], last_round: u64) -> Self {
        let mut per_round: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
        for s in spans {
            let slot_end = s.slot_end.unwrap_or(last_round);
            let lock_end = s.lock_end.unwrap_or(last_round).max(slot_end);
            for r in s.start..=lock_end {
                let e = per_round.entry(r).or_default();
                if r <= slot_end {
                    e.0 += 1;
                }
                e.1 += 1;
            }
        }
        Self { per_round }
    }

    pub fn max_slots(&self) -> usize {
        self.per_round.values().map(|v| v.0).max().unwrap_or(0)
    }

    pub fn max_locks(&self) -> usize {
        self.per_round.values().map(|v| v.1).max().unwrap_or(0)
    }
}

/// Max, median and count of a set of instruction counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub count: usize,
    pub max: u64,
    pub median: u64,
    pub total: u64,
}

impl Stats {
    pub fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        Self {
            count: values.len(),
            max: values.last().copied().unwrap_or(0),
            median: values.get(values.len() / 2).copied().unwrap_or(0),
            total: values.iter().sum(),
        }
    }
}

/// Entry names that run inside `install_code` (they share its instruction budget), compilation included.
pub const INSTALL_ENTRIES: [&str; 5] = [
    "(compilation)",
    "canister_pre_upgrade",
    "(start)",
    "canister_post_upgrade",
    "canister_init",
];

pub fn is_timer_entry(entry: &str) -> bool {
    entry == "canister_global_timer" || entry.contains("timer_executor")
}

/// Instructions of each upgrade of each of `children` (compilation + pre_upgrade + start + post_upgrade of one
/// install_code, grouped by canister and round) in `executions`; successful and trapped alike.
pub fn child_install_instructions(executions: &[ExecutionRecord], children: &[Principal]) -> Vec<u64> {
    let children: std::collections::BTreeSet<_> = children.iter().collect();
    let mut per: BTreeMap<(Principal, u64), u64> = BTreeMap::new();
    for e in executions {
        if children.contains(&e.canister) && INSTALL_ENTRIES.contains(&e.entry.as_str()) {
            *per.entry((e.canister, e.round)).or_default() += e.instructions;
        }
    }
    per.into_values().collect()
}

/// Instructions of `canister`'s replicated executions in `executions` (queries and install_code left out), split
/// into timer executions and all (timers, updates, callbacks).
pub fn canister_instructions(executions: &[ExecutionRecord], canister: Principal) -> (Vec<u64>, Vec<u64>) {
    let mine: Vec<&ExecutionRecord> = executions
        .iter()
        .filter(|e| e.canister == canister && !e.entry.starts_with("canister_query"))
        .filter(|e| !INSTALL_ENTRIES.contains(&e.entry.as_str()))
        .collect();
    let timer = mine
        .iter()
        .filter(|e| is_timer_entry(&e.entry))
        .map(|e| e.instructions)
        .collect();
    let all = mine.iter().map(|e| e.instructions).collect();
    (timer, all)
}
