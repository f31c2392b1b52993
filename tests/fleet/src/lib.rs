//! Test harness for fleets of real parent and child canisters on the in-process replica (`tests/replica`).
//!
//! - [`wasms`]: the built releases (`wasm/parent.wasm.gz` = release A, `wasm/next/parent.wasm.gz` = release B) and
//!   the hashes of the child modules they embed;
//! - [`parent`], [`child`]: one typed wrapper per Candid method ([`ParentApi`], [`ChildApi`]);
//! - [`fleet`]: [`Fleet`], a parent with children full of data: create, fill, upgrade the parent like dfx would,
//!   drive the rollout round by round, and [`Fleet::verify`] every child;
//! - [`records`]: what the replica's records say about a rollout (management calls per child, concurrency over
//!   time, instruction statistics);
//! - [`rehearsal`]: the whole release rehearsal behind the `rehearse` command, and [`cycles`]: what a rollout
//!   cost in cycles.

mod call;
pub mod child;
pub mod cycles;
pub mod fleet;
pub mod parent;
pub mod records;
pub mod rehearsal;
pub mod wasms;

pub use call::Target;
pub use child::ChildApi;
pub use fleet::{ChildFacts, Fleet, FleetConfig, ParentUpgrade, RolloutRun};
pub use parent::ParentApi;
pub use replica::{self, CanisterStatus, Reject, RejectCode, Replica};
pub use wasms::Release;

use candid::Principal;

/// The principal that controls the parent in every fleet (and is an extra controller of every child).
pub fn controller() -> Principal {
    Principal::self_authenticating(b"canister-fleet test controller")
}

/// A principal that is neither a controller nor an admin of anything, derived from `seed`.
pub fn outsider(seed: u64) -> Principal {
    Principal::self_authenticating(format!("canister-fleet outsider {seed}").as_bytes())
}

/// Hex of the first 4 bytes of a hash (8 characters), for reports.
pub fn hash8(hash: &[u8]) -> String {
    hex::encode(&hash[..hash.len().min(4)])
}
