//! Types of the parent canister interface.
