use candid::{decode_args, encode_args, encode_one, CandidType, Principal};
use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::{Deserialize, Serialize};

use super::{deserialize, PrincipalArg};
use crate::child::ChildUpgradeArg;

fn principals() -> Vec<Principal> {
    vec![
        Principal::management_canister(),
        Principal::anonymous(),
        Principal::from_slice(&[1, 2, 3]),
        Principal::from_slice(&[0xff; 29]),
    ]
}

/// Stored with `Principal`'s own serde, as the child's CBOR records are written.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Plain {
    principal: Principal,
    optional: Option<Principal>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Ours {
    #[serde(deserialize_with = "deserialize")]
    principal: Principal,
    #[serde(default, deserialize_with = "super::deserialize_opt")]
    optional: Option<Principal>,
}

#[test]
fn should_decode_candid_principals_as_principal_does() {
    for principal in principals() {
        let bytes = encode_args((principal,)).unwrap();
        let (PrincipalArg(decoded),) = decode_args(&bytes).unwrap();
        let (expected,): (Principal,) = decode_args(&bytes).unwrap();
        assert_eq!(decoded, expected);
        assert_eq!(decoded, principal);
    }
}

#[test]
fn should_decode_candid_opt_principal_present_absent_and_missing() {
    let parent = Principal::from_slice(&[9; 10]);
    for arg in [
        ChildUpgradeArg { parent: Some(parent) },
        ChildUpgradeArg { parent: None },
    ] {
        let decoded: ChildUpgradeArg = candid::decode_one(&encode_one(&arg).unwrap()).unwrap();
        assert_eq!(decoded, arg);
    }
    #[derive(CandidType)]
    struct Empty {}
    let decoded: ChildUpgradeArg = candid::decode_one(&encode_one(Empty {}).unwrap()).unwrap();
    assert_eq!(
        decoded.parent, None,
        "a record without the field is an upgrade arg that keeps the parent"
    );
}

#[test]
fn should_read_cbor_written_by_principal_serde_and_write_the_same_bytes() {
    for principal in principals() {
        for optional in [None, Some(principal)] {
            let stored = crate::cbor::encode(&Plain { principal, optional });
            let ours: Ours = crate::cbor::decode(&stored);
            assert_eq!(ours, Ours { principal, optional });
            assert_eq!(crate::cbor::encode(&ours), stored, "encoding is Principal's own");
        }
    }
}

#[test]
fn should_reject_oversized_principals() {
    // Candid (whose parser rejects it first): no type table, one argument of type principal (0x68), then the
    // reference flag and 30 bytes.
    let mut candid = b"DIDL\x00\x01\x68\x01\x1e".to_vec();
    candid.extend([7; 30]);
    let err = decode_args::<(PrincipalArg,)>(&candid).unwrap_err();
    assert!(format!("{err:?}").contains("longer than 29 bytes"), "{err:?}");

    #[derive(Serialize)]
    struct Raw {
        #[serde(with = "serde_bytes")]
        principal: Vec<u8>,
    }
    let stored = crate::cbor::encode(&Raw { principal: vec![7; 30] });
    let err = minicbor_serde::from_slice::<Ours>(&stored).unwrap_err();
    assert!(err.to_string().contains("at most 29 bytes"), "{err}");
}

#[test]
fn should_reject_principal_text() {
    let text = StrDeserializer::<ValueError>::new("aaaaa-aa");
    assert!(deserialize(text).is_err());
}
