//! Candid calls to one canister on the replica: the plumbing under the typed wrappers in `parent.rs` and `child.rs`,
//! which dereference to [`Target`] for untyped calls.

use candid::utils::ArgumentEncoder;
use candid::{CandidType, Principal};
use replica::{Reject, Replica};
use serde::de::DeserializeOwned;

/// A canister on a replica, named for messages (`"parent"`, `"child"`).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub replica: &'a Replica,
    pub id: Principal,
    pub name: &'static str,
}

/// `Replica::update_call` or `Replica::query_call`.
type Send = fn(&Replica, Principal, Principal, &str, Vec<u8>) -> Result<Vec<u8>, Reject>;

impl Target<'_> {
    /// An update as `sender`; a reject is returned, a reply that does not decode as `R` panics.
    pub fn try_update<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &self,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, Reject> {
        self.call(Replica::update_call, sender, method, args)
    }

    /// A query as `sender`; a reject is returned, a reply that does not decode as `R` panics.
    pub fn try_query<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &self,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, Reject> {
        self.call(Replica::query_call, sender, method, args)
    }

    /// An update as `sender`; panics on a reject.
    pub fn update<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &self,
        sender: Principal,
        method: &str,
        args: A,
    ) -> R {
        self.accepted(method, self.try_update(sender, method, args))
    }

    /// A query as the anonymous principal; panics on a reject.
    pub fn query<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(&self, method: &str, args: A) -> R {
        self.accepted(method, self.try_query(Principal::anonymous(), method, args))
    }

    /// Unwraps the answer of `method`, panicking with the canister and method on a reject.
    pub fn accepted<R>(&self, method: &str, answer: Result<R, Reject>) -> R {
        answer.unwrap_or_else(|e| panic!("{} {}.{method} was rejected: {e}", self.name, self.id))
    }

    fn call<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &self,
        send: Send,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, Reject> {
        let arg = candid::encode_args(args).expect("encode arguments");
        let bytes = send(self.replica, self.id, sender, method, arg)?;
        Ok(candid::decode_one(&bytes).unwrap_or_else(|e| panic!("decoding the reply of {}.{method}: {e}", self.name)))
    }
}
