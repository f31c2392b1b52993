use candid::Principal;
use shared::child::{AuditKind, ChildError, ChildInitArg, MAX_PAGE_SIZE};

use super::*;
use crate::lifecycle::{initialise, Lifecycle};
use crate::state::testing::*;

#[test]
fn should_let_parent_and_controllers_set_the_parent() {
    let mut state = installed_state();
    set_parent(&mut state, &call_from(parent()), stranger()).unwrap();
    assert_eq!(state.config.get().parent, Some(stranger()));
    set_parent(&mut state, &call_from(controller()), parent()).unwrap();
    assert_eq!(state.config.get().parent, Some(parent()));
    let last = snapshot(&state).audit_log.pop().unwrap();
    assert_eq!(
        (last.kind, last.caller),
        (AuditKind::ParentSet { parent: parent() }, controller())
    );
    assert_eq!(*state.total_writes.get(), 2);
}

#[test]
fn should_reject_set_parent_from_stranger() {
    let mut state = state_with_members();
    let error = ChildError::NotAllowed { caller: stranger() };
    assert_rejected(&mut state, error, |s| set_parent(s, &call_from(stranger()), stranger()));
}

#[test]
fn should_reject_anonymous_parent() {
    let mut state = state_with_members();
    let error = ChildError::InvalidArgument {
        reason: "the parent cannot be the anonymous principal".into(),
    };
    assert_rejected(&mut state, error, |s| {
        set_parent(s, &call_from(parent()), Principal::anonymous())
    });
}

#[test]
fn should_never_admit_the_anonymous_caller() {
    let mut state = installed_state();
    let install = Lifecycle::Install(ChildInitArg {
        parent: Principal::anonymous(),
    });
    initialise(&mut state, &call_from(controller()), install);
    let error = ChildError::NotAllowed {
        caller: Principal::anonymous(),
    };
    assert_rejected(&mut state, error, |s| {
        set_parent(s, &call_from(Principal::anonymous()), stranger())
    });
}

#[test]
fn should_reject_audit_log_from_stranger() {
    let mut state = state_with_members();
    let error = ChildError::NotAllowed { caller: stranger() };
    assert_rejected(&mut state, error, |s| audit_log(s, &call_from(stranger()), 0, 10));
}

#[test]
fn should_page_the_audit_log() {
    let state = state_with_members();
    let call = call_from(parent());
    let kinds = |entries: Vec<AuditEntry>| entries.into_iter().map(|entry| entry.kind).collect::<Vec<_>>();
    let install = AuditKind::Install {
        version: crate::VERSION.into(),
    };
    assert_eq!(
        kinds(audit_log(&state, &call, 0, 2).unwrap()),
        vec![install, AuditKind::MemberAdded]
    );
    assert_eq!(
        kinds(audit_log(&state, &call, 2, 0).unwrap()),
        vec![AuditKind::MemberAdded]
    );
    assert_eq!(audit_log(&state, &call, 3, 10), Ok(vec![]));
    assert_eq!(audit_log(&state, &call, u64::MAX, u32::MAX), Ok(vec![]));
}

#[test]
fn should_cap_audit_log_page_size() {
    let mut state = installed_state();
    for _ in 0..MAX_PAGE_SIZE {
        set_parent(&mut state, &call_from(parent()), parent()).unwrap();
    }
    assert_eq!(
        audit_log(&state, &call_from(parent()), 0, u32::MAX).unwrap().len(),
        MAX_PAGE_SIZE as usize
    );
}
