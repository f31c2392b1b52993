//! Calls that only the parent or a controller may make.

use candid::Principal;
use ic_stable_structures::Memory;
use shared::child::{AuditEntry, AuditKind, ChildError};

use crate::members::page_size;
use crate::state::{CallContext, State};

/// Admits the parent recorded in the config and the canister's controllers, never the anonymous principal.
pub fn require_admin<M: Memory + Clone>(state: &State<M>, call: &CallContext) -> Result<(), ChildError> {
    let is_parent = state.config.get().parent == Some(call.caller);
    if call.caller != Principal::anonymous() && (is_parent || call.caller_is_controller) {
        Ok(())
    } else {
        Err(ChildError::NotAllowed { caller: call.caller })
    }
}

pub fn set_parent<M: Memory + Clone>(
    state: &mut State<M>,
    call: &CallContext,
    parent: Principal,
) -> Result<(), ChildError> {
    require_admin(state, call)?;
    if parent == Principal::anonymous() {
        return Err(ChildError::InvalidArgument {
            reason: "the parent cannot be the anonymous principal".to_string(),
        });
    }
    let mut config = state.config.get().clone();
    config.parent = Some(parent);
    state.config.set(config);
    state.append_write(AuditKind::ParentSet { parent }, None, call);
    Ok(())
}

/// Returns up to `page_size(limit)` audit entries, oldest first, starting at index `start`.
pub fn audit_log<M: Memory + Clone>(
    state: &State<M>,
    call: &CallContext,
    start: u64,
    limit: u32,
) -> Result<Vec<AuditEntry>, ChildError> {
    require_admin(state, call)?;
    let end = state.audit_log.len().min(start.saturating_add(page_size(limit) as u64));
    Ok((start..end)
        .map(|index| state.audit_log.get(index).expect("index below the log length").0)
        .collect())
}

#[cfg(test)]
mod tests;
