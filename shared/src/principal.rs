//! Decoding principals without formatting one.
//!
//! `Principal`'s own `Deserialize` reports a bad principal through `PrincipalError`'s `Display`, which can print a
//! principal as text. So any canister that decodes a `Principal` that way links base32 and CRC32 text code it never
//! runs: 23.8 KiB of the child's gzipped module (measured, see README). These helpers accept the same encodings and
//! report errors with static text instead. `shared::child` types and the child use them, through
//! `#[serde(deserialize_with)]` or [`PrincipalArg`], for every principal the child decodes; one plain `Principal`
//! field brings the text code back (the child's size test catches that). The parent decodes management canister
//! types with plain principals, so it would gain nothing. Encoding is unchanged (`Principal`'s `Serialize`), so stored
//! bytes are too.
//!
//! Encodings, as in ic_principal's visitor: Candid hands the bytes over behind a tag byte 2 (`visit_byte_buf`),
//! binary formats such as our CBOR hand over the plain bytes (`visit_bytes`). Text is not accepted.

use candid::{CandidType, Principal};
use serde::de::{Deserializer, Error, Visitor};
use serde::Deserialize;

/// Candid's tag in front of a principal's bytes.
const CANDID_PRINCIPAL_TAG: u8 = 2;

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Principal, D::Error> {
    deserializer.deserialize_bytes(PrincipalBytes)
}

pub fn deserialize_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Principal>, D::Error> {
    Ok(Option::<PrincipalArg>::deserialize(deserializer)?.map(|PrincipalArg(principal)| principal))
}

/// A principal that decodes with [`deserialize`]; its Candid type is `principal`. For a method argument that is a
/// bare principal: decode `(PrincipalArg,)`.
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrincipalArg(#[serde(deserialize_with = "deserialize")] pub Principal);

struct PrincipalBytes;

impl Visitor<'_> for PrincipalBytes {
    type Value = Principal;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("the bytes of a principal")
    }

    fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Principal, E> {
        Principal::try_from_slice(bytes).map_err(|_| E::invalid_length(bytes.len(), &"at most 29 bytes"))
    }

    fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Principal, E> {
        match bytes.split_first() {
            Some((&CANDID_PRINCIPAL_TAG, principal)) => self.visit_bytes(principal),
            _ => Err(E::custom("a principal as bytes must come from Candid")),
        }
    }
}

#[cfg(test)]
mod tests;
