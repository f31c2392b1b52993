use candid::Principal;
use shared::child::{
    AuditKind, ChildError, FillArg, ListMembersArg, MAX_FILL_COUNT, MAX_ID_BYTES, MAX_NAME_BYTES, MAX_PAGE_SIZE,
    MAX_VALUE_BYTES,
};

use super::*;
use crate::state::testing::*;

fn too_long(field: &str, max: usize, actual: usize) -> ChildError {
    ChildError::TooLong {
        field: field.to_string(),
        max: max as u64,
        actual: actual as u64,
    }
}

fn fill_arg(count: u32, value_size: u32, prefix: &str) -> FillArg {
    FillArg {
        count,
        value_size,
        prefix: prefix.to_string(),
    }
}

#[test]
fn should_add_and_get_member() {
    let mut state = installed_state();
    let added = add(&mut state, &call_from(parent()), "alice".into(), input("Alice", b"a")).unwrap();
    let expected = Member {
        id: "alice".into(),
        name: "Alice".into(),
        value: b"a".to_vec(),
        created_at: NOW,
        updated_at: None,
    };
    assert_eq!(added, expected);
    assert_eq!(get(&state, "alice".into()), Ok(expected));
    assert_eq!(count(&state), 1);
}

#[test]
fn should_accept_inputs_at_the_limits() {
    let mut state = installed_state();
    let id = "i".repeat(MAX_ID_BYTES);
    let input = input(&"n".repeat(MAX_NAME_BYTES), &vec![7; MAX_VALUE_BYTES]);
    add(&mut state, &call_from(parent()), id.clone(), input.clone()).unwrap();
    let member = get(&state, id).unwrap();
    assert_eq!((member.name, member.value), (input.name, input.value));
}

#[test]
fn should_update_member_keeping_created_at() {
    let mut state = state_with_members();
    let later = call_at(parent(), NOW + 5);
    let updated = update(&mut state, &later, "alice".into(), input("Alice B.", b"new")).unwrap();
    let expected = Member {
        id: "alice".into(),
        name: "Alice B.".into(),
        value: b"new".to_vec(),
        created_at: NOW,
        updated_at: Some(NOW + 5),
    };
    assert_eq!(updated, expected);
    assert_eq!(get(&state, "alice".into()), Ok(expected));
}

#[test]
fn should_remove_member() {
    let mut state = state_with_members();
    let removed = remove(&mut state, &call_from(parent()), "alice".into()).unwrap();
    assert_eq!(removed.id, "alice");
    assert_eq!(
        get(&state, "alice".into()),
        Err(ChildError::NotFound { id: "alice".into() })
    );
    assert_eq!(count(&state), 1);
}

#[test]
fn should_audit_and_count_every_successful_write() {
    let mut state = installed_state();
    let call = call_at(parent(), NOW + 7);
    add(&mut state, &call, "alice".into(), input("a", b"")).unwrap();
    update(&mut state, &call, "alice".into(), input("b", b"")).unwrap();
    remove(&mut state, &call, "alice".into()).unwrap();
    fill(&mut state, &call, fill_arg(2, 1, "f")).unwrap();

    let entries: Vec<_> = snapshot(&state).audit_log.into_iter().skip(1).collect();
    let kinds_and_ids: Vec<_> = entries
        .iter()
        .map(|entry| (entry.kind.clone(), entry.id.clone()))
        .collect();
    assert_eq!(
        kinds_and_ids,
        vec![
            (AuditKind::MemberAdded, Some("alice".into())),
            (AuditKind::MemberUpdated, Some("alice".into())),
            (AuditKind::MemberRemoved, Some("alice".into())),
            (
                AuditKind::Filled {
                    prefix: "f".into(),
                    count: 2
                },
                None
            ),
        ]
    );
    assert!(entries
        .iter()
        .all(|entry| entry.caller == parent() && entry.time == NOW + 7));
    assert_eq!(*state.total_writes.get(), 4);
}

#[test]
fn should_list_members_in_pages() {
    let mut state = installed_state();
    for id in ["e", "c", "a", "d", "b"] {
        add(&mut state, &call_from(parent()), id.into(), input(id, b"")).unwrap();
    }
    let ids = |page: &MemberPage| page.members.iter().map(|member| member.id.clone()).collect::<Vec<_>>();

    let first = list(
        &state,
        ListMembersArg {
            start_after: None,
            limit: 2,
        },
    );
    assert_eq!(
        (ids(&first), first.next.clone()),
        (vec!["a".into(), "b".into()], Some("b".into()))
    );
    let second = list(
        &state,
        ListMembersArg {
            start_after: first.next,
            limit: 2,
        },
    );
    assert_eq!(
        (ids(&second), second.next.clone()),
        (vec!["c".into(), "d".into()], Some("d".into()))
    );
    let last = list(
        &state,
        ListMembersArg {
            start_after: second.next,
            limit: 2,
        },
    );
    assert_eq!((ids(&last), last.next), (vec!["e".into()], None));
    let exact = list(
        &state,
        ListMembersArg {
            start_after: Some("c".into()),
            limit: 2,
        },
    );
    assert_eq!((ids(&exact), exact.next), (vec!["d".into(), "e".into()], None));
}

#[test]
fn should_cap_page_size() {
    let mut state = installed_state();
    fill(&mut state, &call_from(parent()), fill_arg(MAX_PAGE_SIZE + 1, 0, "m")).unwrap();
    for limit in [0, MAX_PAGE_SIZE + 1, u32::MAX] {
        let page = list(
            &state,
            ListMembersArg {
                start_after: None,
                limit,
            },
        );
        assert_eq!(page.members.len(), MAX_PAGE_SIZE as usize, "limit {limit}");
        assert!(page.next.is_some());
    }
}

#[test]
fn should_fill_deterministically() {
    let mut state = installed_state();
    let call = call_from(controller());
    assert_eq!(fill(&mut state, &call, fill_arg(3, 4, "f-")), Ok(3));
    let page = list(&state, ListMembersArg::default());
    let members: Vec<_> = page
        .members
        .into_iter()
        .map(|member| (member.id, member.name, member.value))
        .collect();
    assert_eq!(
        members,
        vec![
            ("f-000000".into(), "f-000000".into(), vec![0; 4]),
            ("f-000001".into(), "f-000001".into(), vec![1; 4]),
            ("f-000002".into(), "f-000002".into(), vec![2; 4]),
        ]
    );
    let before = list(&state, ListMembersArg::default());
    assert_eq!(fill(&mut state, &call, fill_arg(3, 4, "f-")), Ok(3));
    assert_eq!(list(&state, ListMembersArg::default()), before);
}

#[test]
fn should_reject_empty_id() {
    let mut state = state_with_members();
    let empty = ChildError::InvalidArgument {
        reason: "id must not be empty".into(),
    };
    assert_rejected(&mut state, empty, |s| {
        add(s, &call_from(parent()), String::new(), input("x", b""))
    });
}

#[test]
fn should_reject_oversize_id() {
    let mut state = state_with_members();
    let id = "i".repeat(MAX_ID_BYTES + 1);
    let error = too_long("id", MAX_ID_BYTES, MAX_ID_BYTES + 1);
    let call = call_from(parent());
    assert_rejected(&mut state, error.clone(), |s| {
        add(s, &call, id.clone(), input("x", b""))
    });
    assert_rejected(&mut state, error.clone(), |s| {
        update(s, &call, id.clone(), input("x", b""))
    });
    assert_rejected(&mut state, error.clone(), |s| remove(s, &call, id.clone()));
    assert_rejected(&mut state, error, |s| get(s, id.clone()));
}

#[test]
fn should_reject_oversize_name() {
    let mut state = state_with_members();
    let name = "é".repeat(MAX_NAME_BYTES / 2 + 1);
    let error = too_long("name", MAX_NAME_BYTES, MAX_NAME_BYTES + 2);
    let call = call_from(parent());
    assert_rejected(&mut state, error.clone(), |s| {
        add(s, &call, "carol".into(), input(&name, b""))
    });
    assert_rejected(&mut state, error, |s| {
        update(s, &call, "alice".into(), input(&name, b""))
    });
}

#[test]
fn should_reject_oversize_value() {
    let mut state = state_with_members();
    let value = vec![0; MAX_VALUE_BYTES + 1];
    let error = too_long("value", MAX_VALUE_BYTES, MAX_VALUE_BYTES + 1);
    let call = call_from(parent());
    assert_rejected(&mut state, error.clone(), |s| {
        add(s, &call, "carol".into(), input("c", &value))
    });
    assert_rejected(&mut state, error, |s| {
        update(s, &call, "alice".into(), input("a", &value))
    });
}

#[test]
fn should_reject_duplicate_add() {
    let mut state = state_with_members();
    let error = ChildError::AlreadyExists { id: "alice".into() };
    assert_rejected(&mut state, error, |s| {
        add(s, &call_from(parent()), "alice".into(), input("other", b"x"))
    });
}

#[test]
fn should_reject_unknown_member() {
    let mut state = state_with_members();
    let error = ChildError::NotFound { id: "carol".into() };
    let call = call_from(parent());
    assert_rejected(&mut state, error.clone(), |s| {
        update(s, &call, "carol".into(), input("c", b""))
    });
    assert_rejected(&mut state, error.clone(), |s| remove(s, &call, "carol".into()));
    assert_rejected(&mut state, error, |s| get(s, "carol".into()));
}

#[test]
fn should_reject_fill_from_non_admin() {
    let mut state = state_with_members();
    let error = ChildError::NotAllowed { caller: stranger() };
    assert_rejected(&mut state, error, |s| {
        fill(s, &call_from(stranger()), fill_arg(1, 1, "f"))
    });
}

#[test]
fn should_reject_fill_with_zero_count() {
    let mut state = state_with_members();
    let error = ChildError::InvalidArgument {
        reason: "count must be at least 1".into(),
    };
    assert_rejected(&mut state, error, |s| {
        fill(s, &call_from(parent()), fill_arg(0, 1, "f"))
    });
}

#[test]
fn should_reject_fill_over_limits() {
    let mut state = state_with_members();
    let call = call_from(parent());
    let max_prefix = MAX_ID_BYTES - FILL_ID_DIGITS;
    let cases = [
        (
            fill_arg(MAX_FILL_COUNT + 1, 1, "f"),
            too_long("count", MAX_FILL_COUNT as usize, MAX_FILL_COUNT as usize + 1),
        ),
        (
            fill_arg(1, MAX_VALUE_BYTES as u32 + 1, "f"),
            too_long("value_size", MAX_VALUE_BYTES, MAX_VALUE_BYTES + 1),
        ),
        (
            fill_arg(1, 1, &"p".repeat(max_prefix + 1)),
            too_long("prefix", max_prefix, max_prefix + 1),
        ),
    ];
    for (arg, error) in cases {
        assert_rejected(&mut state, error, |s| fill(s, &call, arg));
    }
}

#[test]
fn should_reject_member_writes_from_anyone_but_the_parent_and_controllers() {
    let mut state = state_with_members();
    for caller in [stranger(), Principal::anonymous()] {
        let call = call_from(caller);
        let error = ChildError::NotAllowed { caller };
        assert_rejected(&mut state, error.clone(), |s| {
            add(s, &call, "carol".into(), input("c", b""))
        });
        assert_rejected(&mut state, error.clone(), |s| {
            update(s, &call, "alice".into(), input("a", b"x"))
        });
        assert_rejected(&mut state, error, |s| remove(s, &call, "alice".into()));
    }
    // Controllers write too; reads are open to anyone.
    add(&mut state, &call_from(controller()), "carol".into(), input("c", b"")).unwrap();
    assert!(get(&state, "carol".into()).is_ok());
}
