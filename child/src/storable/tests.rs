use candid::Principal;
use serde::{Deserialize, Serialize};
use shared::child::{AuditEntry, AuditKind};

use super::*;
use ic_stable_structures::Storable;
use shared::cbor::encode;
use std::borrow::Cow;

/// The member record of the first layout, before `updated_at`.
#[derive(Serialize, Deserialize)]
struct MemberRecordV0 {
    name: String,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
    created_at: u64,
}

/// A member record from a future build, with fields this build does not know.
#[derive(Serialize, Deserialize)]
struct MemberRecordFuture {
    name: String,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
    created_at: u64,
    updated_at: Option<u64>,
    written_by: Option<String>,
    tags: Vec<String>,
}

fn round_trip<T: Storable>(value: T) -> T {
    T::from_bytes(Cow::Owned(value.into_bytes()))
}

#[test]
fn should_decode_member_written_by_older_layout() {
    let old = MemberRecordV0 {
        name: "Alice".into(),
        value: vec![1, 2, 3],
        created_at: 42,
    };
    let record = MemberRecord::from_bytes(Cow::Owned(encode(&old)));
    assert_eq!(
        (record.name, record.value, record.created_at),
        (old.name, old.value, old.created_at)
    );
    assert_eq!(record.updated_at, None);
    #[cfg(feature = "next")]
    assert_eq!(record.written_by, None);
}

#[test]
fn should_decode_member_written_by_newer_layout() {
    let new = MemberRecordFuture {
        name: "Alice".into(),
        value: vec![1, 2, 3],
        created_at: 42,
        updated_at: Some(43),
        written_by: Some("9.9.9".into()),
        tags: vec!["unknown to this build".into()],
    };
    let record = MemberRecord::from_bytes(Cow::Owned(encode(&new)));
    assert_eq!(
        (record.name, record.value, record.created_at, record.updated_at),
        (new.name, new.value, new.created_at, new.updated_at)
    );
    #[cfg(feature = "next")]
    assert_eq!(record.written_by, new.written_by);
}

#[test]
fn should_encode_values_as_byte_strings() {
    let record = MemberRecord::new(
        MemberInput {
            name: String::new(),
            value: vec![255; 4096],
        },
        0,
    );
    assert!(record.to_bytes().len() < 4096 + 128, "value encoded element by element");
}

#[test]
fn should_round_trip_every_record() {
    let member = MemberRecord {
        updated_at: Some(2),
        ..MemberRecord::new(
            MemberInput {
                name: "n".into(),
                value: vec![0; 5000],
            },
            1,
        )
    };
    assert_eq!(round_trip(member.clone()), member);

    let config = Config {
        parent: Some(Principal::from_slice(&[1, 2, 3])),
        schema_version: 1,
    };
    assert_eq!(round_trip(config.clone()), config);

    let kinds = [
        AuditKind::Install { version: "1".into() },
        AuditKind::Filled {
            prefix: "p".into(),
            count: 3,
        },
        AuditKind::ParentSet {
            parent: Principal::management_canister(),
        },
        AuditKind::MemberRemoved,
    ];
    for kind in kinds {
        let entry = AuditRecord(AuditEntry {
            kind,
            id: Some("x".into()),
            time: 7,
            caller: Principal::anonymous(),
        });
        assert_eq!(round_trip(entry.clone()), entry);
    }
}

#[cfg(feature = "next")]
#[test]
fn should_mark_records_with_the_writing_version() {
    let record = MemberRecord::new(
        MemberInput {
            name: String::new(),
            value: Vec::new(),
        },
        0,
    );
    assert_eq!(record.written_by.as_deref(), Some(crate::VERSION));
}
