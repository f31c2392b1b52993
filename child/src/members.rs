//! Member storage: validation, reads and writes.
//!
//! Who may do what: anyone may read members; only the parent and the child's controllers may write them (a fleet
//! child is written by its operator or its parent, never by anonymous or arbitrary callers).

use std::ops::Bound::{Excluded, Unbounded};

use ic_stable_structures::Memory;
use shared::child::{
    AuditKind, ChildError, FillArg, ListMembersArg, Member, MemberInput, MemberPage, FILL_ID_DIGITS, MAX_FILL_COUNT,
    MAX_ID_BYTES, MAX_NAME_BYTES, MAX_PAGE_SIZE, MAX_VALUE_BYTES,
};

use crate::admin::require_admin;
use crate::state::{CallContext, State};
use crate::storable::MemberRecord;

pub fn add<M: Memory + Clone>(
    state: &mut State<M>,
    call: &CallContext,
    id: String,
    input: MemberInput,
) -> Result<Member, ChildError> {
    require_admin(state, call)?;
    validate_id(&id)?;
    validate_input(&input)?;
    if state.members.contains_key(&id) {
        return Err(ChildError::AlreadyExists { id });
    }
    let record = MemberRecord::new(input, call.time);
    state.members.insert(id.clone(), record.clone());
    state.append_write(AuditKind::MemberAdded, Some(id.clone()), call);
    Ok(record.into_member(id))
}

pub fn update<M: Memory + Clone>(
    state: &mut State<M>,
    call: &CallContext,
    id: String,
    input: MemberInput,
) -> Result<Member, ChildError> {
    require_admin(state, call)?;
    validate_id(&id)?;
    validate_input(&input)?;
    let record = find(state, &id)?.updated(input, call.time);
    state.members.insert(id.clone(), record.clone());
    state.append_write(AuditKind::MemberUpdated, Some(id.clone()), call);
    Ok(record.into_member(id))
}

pub fn remove<M: Memory + Clone>(state: &mut State<M>, call: &CallContext, id: String) -> Result<Member, ChildError> {
    require_admin(state, call)?;
    validate_id(&id)?;
    let Some(record) = state.members.remove(&id) else {
        return Err(ChildError::NotFound { id });
    };
    state.append_write(AuditKind::MemberRemoved, Some(id.clone()), call);
    Ok(record.into_member(id))
}

pub fn get<M: Memory + Clone>(state: &State<M>, id: String) -> Result<Member, ChildError> {
    validate_id(&id)?;
    Ok(find(state, &id)?.into_member(id))
}

pub fn list<M: Memory + Clone>(state: &State<M>, arg: ListMembersArg) -> MemberPage {
    let start = arg.start_after.map_or(Unbounded, Excluded);
    let mut entries = state.members.range((start, Unbounded));
    let members: Vec<Member> = entries
        .by_ref()
        .take(page_size(arg.limit))
        .map(|entry| member_from(entry.into_pair()))
        .collect();
    let next = entries
        .next()
        .and_then(|_| members.last().map(|member| member.id.clone()));
    MemberPage { members, next }
}

pub fn count<M: Memory + Clone>(state: &State<M>) -> u64 {
    state.members.len()
}

/// Writes the synthetic members described on `FillArg`; returns the member count afterwards.
pub fn fill<M: Memory + Clone>(state: &mut State<M>, call: &CallContext, arg: FillArg) -> Result<u64, ChildError> {
    require_admin(state, call)?;
    if arg.count == 0 {
        return Err(ChildError::InvalidArgument {
            reason: "count must be at least 1".to_string(),
        });
    }
    check_length("count", arg.count as usize, MAX_FILL_COUNT as usize)?;
    check_length("value_size", arg.value_size as usize, MAX_VALUE_BYTES)?;
    check_length("prefix", arg.prefix.len(), MAX_ID_BYTES - FILL_ID_DIGITS)?;
    for i in 0..arg.count {
        let id = format!("{}{i:0width$}", arg.prefix, width = FILL_ID_DIGITS);
        let input = MemberInput {
            name: id.clone(),
            value: vec![i as u8; arg.value_size as usize],
        };
        state.members.insert(id, MemberRecord::new(input, call.time));
    }
    state.append_write(
        AuditKind::Filled {
            prefix: arg.prefix,
            count: arg.count,
        },
        None,
        call,
    );
    Ok(state.members.len())
}

/// Clamps a requested page size: 0 or anything above `MAX_PAGE_SIZE` means `MAX_PAGE_SIZE`.
pub fn page_size(limit: u32) -> usize {
    match limit {
        0 => MAX_PAGE_SIZE as usize,
        limit => limit.min(MAX_PAGE_SIZE) as usize,
    }
}

fn find<M: Memory + Clone>(state: &State<M>, id: &str) -> Result<MemberRecord, ChildError> {
    state
        .members
        .get(&id.to_string())
        .ok_or_else(|| ChildError::NotFound { id: id.to_string() })
}

pub(crate) fn member_from((id, record): (String, MemberRecord)) -> Member {
    record.into_member(id)
}

fn validate_id(id: &str) -> Result<(), ChildError> {
    if id.is_empty() {
        return Err(ChildError::InvalidArgument {
            reason: "id must not be empty".to_string(),
        });
    }
    check_length("id", id.len(), MAX_ID_BYTES)
}

fn validate_input(input: &MemberInput) -> Result<(), ChildError> {
    check_length("name", input.name.len(), MAX_NAME_BYTES)?;
    check_length("value", input.value.len(), MAX_VALUE_BYTES)
}

fn check_length(field: &str, actual: usize, max: usize) -> Result<(), ChildError> {
    if actual > max {
        return Err(ChildError::TooLong {
            field: field.to_string(),
            max: max as u64,
            actual: actual as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
