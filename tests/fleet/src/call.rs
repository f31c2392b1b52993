//! Candid calls to one canister on the replica: the plumbing under the typed wrappers in `parent.rs` and `child.rs`.

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

impl Target<'_> {
    /// An update as `sender`; a reject is returned, a reply that does not decode as `R` panics.
    pub fn try_update<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &self,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, Reject> {
        let bytes = self
            .replica
            .update_call(self.id, sender, method, encode(args))?;
        Ok(self.decode(method, &bytes))
    }

    /// A query as `sender`; a reject is returned, a reply that does not decode as `R` panics.
    pub fn try_query<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &self,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, Reject> {
        let bytes = self
            .replica
            .query_call(self.id, sender, method, encode(args))?;
        Ok(self.decode(method, &bytes))
    }

    /// Unwraps the answer of `method`, panicking with the canister and method on a reject.
    pub fn accepted<R>(&self, method: &str, answer: Result<R, Reject>) -> R {
        answer.unwrap_or_else(|e| panic!("{} {}.{method} was rejected: {e}", self.name, self.id))
    }

    fn decode<R: CandidType + DeserializeOwned>(&self, method: &str, bytes: &[u8]) -> R {
        candid::decode_one(bytes)
            .unwrap_or_else(|e| panic!("decoding the reply of {}.{method}: {e}", self.name))
    }
}

fn encode<A: ArgumentEncoder>(args: A) -> Vec<u8> {
    candid::encode_args(args).expect("encode arguments")
}
