//! Fault injection: failures a real IC cannot produce on demand.

use std::collections::BTreeMap;

use candid::Principal;

use crate::error::Reject;

#[derive(Default)]
pub struct Faults {
    /// (canister, export name): the next execution of that entry point traps.
    traps: Vec<(Principal, String)>,
    /// (target canister, method, reject): the next call of that method is rejected. For management methods the
    /// target is the canister the call is about.
    rejects: Vec<(Principal, String, Reject)>,
    /// Responses to a canister are delivered this many rounds late.
    response_delays: BTreeMap<Principal, u64>,
}

impl Faults {
    pub fn add_trap(&mut self, canister: Principal, entry: String) {
        self.traps.push((canister, entry));
    }

    pub fn take_trap(&mut self, canister: Principal, entry: &str) -> bool {
        if self.traps.is_empty() {
            return false;
        }
        match self.traps.iter().position(|(c, e)| *c == canister && e == entry) {
            Some(i) => {
                self.traps.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn add_reject(&mut self, target: Principal, method: String, reject: Reject) {
        self.rejects.push((target, method, reject));
    }

    pub fn take_reject(&mut self, target: Principal, method: &str) -> Option<Reject> {
        if self.rejects.is_empty() {
            return None;
        }
        let i = self.rejects.iter().position(|(t, m, _)| *t == target && m == method)?;
        Some(self.rejects.remove(i).2)
    }

    /// Traps and rejects injected but not fired yet, as `<canister> <entry or method>`.
    pub fn pending(&self) -> Vec<String> {
        let traps = self.traps.iter().map(|(c, e)| format!("{c} {e} (trap)"));
        let rejects = self.rejects.iter().map(|(t, m, _)| format!("{t} {m} (reject)"));
        traps.chain(rejects).collect()
    }

    pub fn set_response_delay(&mut self, canister: Principal, rounds: u64) {
        if rounds == 0 {
            self.response_delays.remove(&canister);
        } else {
            self.response_delays.insert(canister, rounds);
        }
    }

    pub fn response_delay(&self, canister: &Principal) -> u64 {
        self.response_delays.get(canister).copied().unwrap_or(0)
    }
}
