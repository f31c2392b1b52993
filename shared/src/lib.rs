//! Candid types that the parent canister, the child canister and the tests share.
//!
//! This crate makes no `ic_cdk` runtime calls, so it builds natively and on wasm alike.

pub mod cbor;
pub mod child;
#[cfg(feature = "did-check")]
pub mod did;
pub mod parent;
pub mod principal;
pub mod release;
