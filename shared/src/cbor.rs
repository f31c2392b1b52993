//! One encoding for every value the canisters keep in stable memory: self-describing CBOR keyed by serde field
//! names, with `Bound::Unbounded`, so records can grow.
//!
//! Upgrade compatibility: unknown fields are ignored on decode (a downgrade reading newer records) and missing
//! `#[serde(default)]` fields take their default (an upgrade reading older records). So add fields only with
//! `#[serde(default)]` or as `Option`; never rename, retype or remove a stored field or enum variant.

use serde::{de::DeserializeOwned, Serialize};

#[doc(hidden)]
pub use ic_stable_structures::storable::{Bound, Storable};

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    minicbor_serde::to_vec(value).expect("CBOR encoding into a Vec cannot fail")
}

/// Decodes a stored value. A value that does not decode is a broken invariant, so this traps.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> T {
    minicbor_serde::from_slice(bytes)
        .unwrap_or_else(|err| panic!("undecodable {} in stable memory: {err}", std::any::type_name::<T>()))
}

/// Implements `Storable` (unbounded, CBOR) for each type given.
#[macro_export]
macro_rules! storable_as_cbor {
    ($($record:ty),* $(,)?) => {$(
        impl $crate::cbor::Storable for $record {
            const BOUND: $crate::cbor::Bound = $crate::cbor::Bound::Unbounded;

            fn to_bytes(&self) -> ::std::borrow::Cow<'_, [u8]> {
                ::std::borrow::Cow::Owned($crate::cbor::encode(self))
            }

            fn into_bytes(self) -> Vec<u8> {
                $crate::cbor::encode(&self)
            }

            fn from_bytes(bytes: ::std::borrow::Cow<[u8]>) -> Self {
                $crate::cbor::decode(&bytes)
            }
        }
    )*};
}
