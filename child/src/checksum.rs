//! The data checksum documented on `DataChecksum`: a digest of every stable structure's data, computed in one
//! query (it reads each member and audit entry once).

use candid::Principal;
use ic_stable_structures::Memory;
use sha2::{Digest, Sha256};
use shared::child::{AuditEntry, AuditKind, DataChecksum};

use crate::members::member_from;
use crate::state::State;

pub fn data_checksum<M: Memory + Clone>(state: &State<M>) -> DataChecksum {
    let mut h = Sha256::new();
    for member in state.members.iter().map(|entry| member_from(entry.into_pair())) {
        bytes(&mut h, member.id.as_bytes());
        bytes(&mut h, member.name.as_bytes());
        bytes(&mut h, &member.value);
        h.update(member.created_at.to_be_bytes());
        opt(&mut h, member.updated_at, |h, t| h.update(t.to_be_bytes()));
    }
    bytes(&mut h, b"config");
    opt(&mut h, state.config.get().parent, principal);
    bytes(&mut h, b"writes");
    let total_writes = *state.total_writes.get();
    h.update(total_writes.to_be_bytes());
    bytes(&mut h, b"audit");
    let mut audit_entries = 0;
    for record in state.audit_log.iter() {
        if audit(&mut h, &record.0) {
            audit_entries += 1;
        }
    }
    DataChecksum {
        members: state.members.len(),
        audit_entries,
        total_writes,
        sha256: h.finalize().to_vec(),
    }
}

/// Hashes one audit entry, unless it records an install or an upgrade (which an upgrade appends by design).
fn audit(h: &mut Sha256, entry: &AuditEntry) -> bool {
    let (name, text, number, who): (&str, Option<&str>, Option<u64>, Option<Principal>) = match &entry.kind {
        AuditKind::Install { .. } | AuditKind::Upgrade { .. } => return false,
        AuditKind::MemberAdded => ("MemberAdded", None, None, None),
        AuditKind::MemberUpdated => ("MemberUpdated", None, None, None),
        AuditKind::MemberRemoved => ("MemberRemoved", None, None, None),
        AuditKind::Filled { prefix, count } => ("Filled", Some(prefix), Some(u64::from(*count)), None),
        AuditKind::ParentSet { parent } => ("ParentSet", None, None, Some(*parent)),
    };
    h.update(entry.time.to_be_bytes());
    principal(h, entry.caller);
    opt(h, entry.id.as_deref(), |h, id| bytes(h, id.as_bytes()));
    bytes(h, name.as_bytes());
    if let Some(text) = text {
        bytes(h, text.as_bytes());
    }
    if let Some(n) = number {
        h.update(n.to_be_bytes());
    }
    if let Some(p) = who {
        principal(h, p);
    }
    true
}

fn bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_be_bytes());
    h.update(b);
}

fn principal(h: &mut Sha256, p: Principal) {
    bytes(h, p.as_slice());
}

fn opt<T>(h: &mut Sha256, value: Option<T>, f: impl FnOnce(&mut Sha256, T)) {
    match value {
        None => h.update([0]),
        Some(v) => {
            h.update([1]);
            f(h, v);
        }
    }
}

#[cfg(test)]
mod tests;
