use super::*;
use crate::model::{ChildEntry, Op, Step, DEFAULT_CYCLES_PER_CHILD};
use crate::outcome::RunStatus;
use crate::rollout;
use crate::state::test_support::{fresh_state, install_global, principal, OLD};
use crate::testing::{block_on, FakeIc, Fault, Method};
use shared::parent::{ChildState, RegisterOptions, RolloutStep};

/// The global state of a parent that has shipped `OLD` before its current release.
fn global() -> (FakeIc, [u8; 32]) {
    let mut s = fresh_state();
    s.ship(OLD);
    let ic = FakeIc::new();
    let hash = install_global(s);
    (ic, hash)
}

fn invalid_arg(r: Result<impl std::fmt::Debug, ParentError>) {
    match r {
        Err(ParentError::InvalidArgument { .. }) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

// --- access -------------------------------------------------------------------------------------------------------

#[test]
fn only_controllers_change_who_controls_the_fleet_or_what_it_spends() {
    let mut s = fresh_state();
    let admin = principal(1);
    set_admins(&mut s, vec![admin]).unwrap();
    assert_eq!(authorize(&s, Role::Controller, admin, true), Ok(()));
    assert_eq!(
        authorize(&s, Role::Controller, admin, false),
        Err(ParentError::NotAuthorized { caller: admin })
    );
}

#[test]
fn only_controllers_and_admins_are_authorized() {
    let mut s = fresh_state();
    let (admin, stranger) = (principal(1), principal(2));
    set_admins(&mut s, vec![admin]).unwrap();
    assert_eq!(authorize(&s, Role::Operator, stranger, true), Ok(()));
    assert_eq!(authorize(&s, Role::Operator, admin, false), Ok(()));
    assert_eq!(
        authorize(&s, Role::Operator, stranger, false),
        Err(ParentError::NotAuthorized { caller: stranger })
    );
    assert_eq!(
        authorize(&s, Role::Operator, Principal::anonymous(), false),
        Err(ParentError::NotAuthorized {
            caller: Principal::anonymous()
        })
    );
}

// --- settings -------------------------------------------------------------------------------------------------

#[test]
fn bad_settings_are_rejected_and_change_nothing() {
    let mut s = fresh_state();
    let before = s.settings().clone();
    invalid_arg(set_concurrency(&mut s, MAX_CONCURRENCY + 1));
    invalid_arg(set_admins(&mut s, vec![Principal::anonymous()]));
    invalid_arg(set_admins(&mut s, (0..=MAX_ADMINS as u64).map(principal).collect()));
    invalid_arg(set_cycles_per_child(&mut s, Nat::from(MAX_CYCLES_PER_CHILD) + 1u32));
    let me = principal(99);
    invalid_arg(set_extra_controllers(
        &mut s,
        me,
        (0..=MAX_EXTRA_CONTROLLERS as u64).map(principal).collect(),
    ));
    invalid_arg(set_extra_controllers(&mut s, me, vec![Principal::anonymous()]));
    assert_eq!(s.settings(), &before);
}

#[test]
fn good_settings_are_applied() {
    let mut s = fresh_state();
    let me = principal(99);
    set_concurrency(&mut s, 0).unwrap();
    set_cycles_per_child(&mut s, Nat::from(5u32)).unwrap();
    set_admins(&mut s, vec![principal(2), principal(1), principal(2)]).unwrap();
    set_extra_controllers(&mut s, me, vec![me, principal(3)]).unwrap();
    let v = settings_view(s.settings());
    assert_eq!(v.concurrency, 0);
    assert_eq!(v.cycles_per_child, Nat::from(5u32));
    assert_eq!(v.admins, vec![principal(1), principal(2)], "deduplicated");
    assert_eq!(
        v.extra_controllers,
        vec![principal(3)],
        "the parent is a controller anyway"
    );
}

#[test]
fn an_upgrade_argument_is_validated_as_a_whole() {
    let mut s = fresh_state();
    let before = s.settings().clone();
    let arg = ParentArg {
        admins: Some(vec![principal(1)]),
        concurrency: Some(1_000),
        ..Default::default()
    };
    invalid_arg(apply_arg(&mut s, arg, principal(99)));
    assert_eq!(s.settings(), &before, "the valid admin list was not applied either");

    let arg = ParentArg {
        admins: Some(vec![principal(1)]),
        concurrency: Some(50),
        ..Default::default()
    };
    apply_arg(&mut s, arg, principal(99)).unwrap();
    assert_eq!(
        (s.settings().admins.clone(), s.settings().concurrency),
        (vec![principal(1)], 50)
    );
    assert_eq!(
        s.settings().cycles_per_child,
        DEFAULT_CYCLES_PER_CHILD,
        "absent fields keep their value"
    );
}

// --- create_children ----------------------------------------------------------------------------------------------

#[test]
fn create_children_rejects_bad_counts_and_changes_nothing() {
    let (ic, _) = global();
    invalid_arg(block_on(create_children(&ic, 0, None)));
    invalid_arg(block_on(create_children(&ic, MAX_CREATE_PER_CALL + 1, None)));
    let too_rich = ChildSpec {
        cycles: Some(Nat::from(MAX_CYCLES_PER_CHILD) + 1u32),
    };
    invalid_arg(block_on(create_children(&ic, 1, Some(too_rich))));
    assert!(ic.calls().is_empty());
    read_state(|s| assert_eq!(s.child_count(), 0));
}

#[test]
fn create_children_installs_the_release_and_records_it() {
    let (ic, hash) = global();
    mutate_state(|s| set_extra_controllers(s, ic.self_id(), vec![principal(5)])).unwrap();
    let r = block_on(create_children(&ic, 3, None)).unwrap();
    assert_eq!(r.error, None);
    assert_eq!(r.created.len(), 3);
    for c in &r.created {
        assert_eq!(c.state, ChildState::UpToDate);
        assert_eq!(c.installed_hash.as_deref(), Some(&hash[..]));
        assert_eq!(ic.methods_for(c.canister_id), vec![Method::InstallNew]);
        assert_eq!(ic.canister(c.canister_id).controllers, vec![ic.self_id(), principal(5)]);
    }
    assert_eq!(ic.calls().iter().filter(|(m, _)| *m == Method::Create).count(), 3);
    read_state(|s| {
        assert_eq!(s.child_count(), 3);
        assert_eq!(s.rollout().upgraded, 0, "created children are not counted as upgrades");
        s.check_invariants();
    });
}

#[test]
fn create_children_reports_partial_failures() {
    let (ic, _) = global();
    ic.fault(
        Method::Create,
        Principal::management_canister(),
        Fault::Reject(2, "out of cycles"),
    );
    let r = block_on(create_children(&ic, 3, None)).unwrap();
    assert_eq!(r.created.len(), 2);
    assert!(
        matches!(r.error, Some(ParentError::CallFailed { code: 2, .. })),
        "{r:?}"
    );

    // An install failure leaves the child registered as failed, so retry_failed picks it up.
    let (ic, _) = global();
    ic.fault(
        Method::InstallNew,
        ic.peek_next_canister(),
        Fault::Reject(5, "init trapped"),
    );
    let r = block_on(create_children(&ic, 1, None)).unwrap();
    assert_eq!(r.created[0].state, ChildState::Failed);
    assert!(r.created[0].last_error.as_deref().unwrap().contains("init trapped"));
}

#[test]
fn create_children_fails_cleanly_when_nothing_is_created() {
    let (ic, _) = global();
    for _ in 0..2 {
        ic.fault(Method::Create, Principal::management_canister(), Fault::Reject(4, "no"));
    }
    let r = block_on(create_children(&ic, 2, None));
    assert!(matches!(r, Err(ParentError::CallFailed { code: 4, .. })), "{r:?}");
    read_state(|s| assert_eq!(s.child_count(), 0));
}

// --- register_child -------------------------------------------------------------------------------------------

#[test]
fn register_child_records_the_module_hash_and_queues_outdated_children() {
    let (ic, hash) = global();
    let (old, current) = (principal(1), principal(2));
    ic.add_child(old, RunStatus::Running, Some(&OLD));
    ic.add_child(current, RunStatus::Running, Some(&hash));

    let info = block_on(register_child(&ic, old, RegisterOptions::default())).unwrap();
    assert_eq!(info.state, ChildState::Pending);
    assert_eq!(info.installed_hash.as_deref(), Some(&OLD[..]));
    assert_eq!(
        ic.0.borrow().ticks,
        vec![std::time::Duration::ZERO],
        "the rollout is woken up"
    );

    let info = block_on(register_child(&ic, current, RegisterOptions::default())).unwrap();
    assert_eq!(info.state, ChildState::UpToDate);
    assert_eq!(ic.0.borrow().ticks.len(), 1);
    read_state(|s| s.check_invariants());
}

#[test]
fn register_child_rejects_bad_input_and_changes_nothing() {
    let (ic, _) = global();
    let known = principal(1);
    ic.add_child(known, RunStatus::Running, Some(&OLD));
    block_on(register_child(&ic, known, RegisterOptions::default())).unwrap();
    let calls = ic.calls().len();

    assert_eq!(
        block_on(register_child(&ic, known, RegisterOptions::default())),
        Err(ParentError::AlreadyRegistered { canister_id: known })
    );
    invalid_arg(block_on(register_child(&ic, ic.self_id(), RegisterOptions::default())));
    invalid_arg(block_on(register_child(
        &ic,
        Principal::management_canister(),
        RegisterOptions::default(),
    )));
    assert_eq!(ic.calls().len(), calls, "rejected before any call");

    // A canister that does not exist.
    let ghost = principal(2);
    let r = block_on(register_child(&ic, ghost, RegisterOptions::default()));
    assert!(matches!(r, Err(ParentError::CallFailed { code: 3, .. })), "{r:?}");
    read_state(|s| assert_eq!(s.child_count(), 1));
}

#[test]
fn register_child_needs_the_parent_to_be_a_controller() {
    let (ic, _) = global();
    let foreign = principal(3);
    ic.add_child(foreign, RunStatus::Running, Some(&OLD));
    ic.0.borrow_mut().canisters.get_mut(&foreign).unwrap().controllers = vec![principal(4)];
    assert_eq!(
        block_on(register_child(&ic, foreign, RegisterOptions::default())),
        Err(ParentError::NotController { canister_id: foreign })
    );

    // Status made public: the call succeeds, but the controller list does not name the parent.
    ic.fault(Method::Status, foreign, Fault::Noop);
    assert_eq!(
        block_on(register_child(&ic, foreign, RegisterOptions::default())),
        Err(ParentError::NotController { canister_id: foreign })
    );
    read_state(|s| assert_eq!(s.child_count(), 0));
}

#[test]
fn register_child_adopts_only_a_shipped_release_or_an_empty_canister_unless_forced() {
    let (ic, _) = global();
    let (foreign, empty) = (principal(1), principal(2));
    ic.add_child(foreign, RunStatus::Running, Some(&[0x77; 32]));
    ic.add_child(empty, RunStatus::Running, None);

    assert_eq!(
        block_on(register_child(&ic, foreign, RegisterOptions::default())),
        Err(ParentError::UnknownModule {
            canister_id: foreign,
            module_hash: vec![0x77; 32]
        })
    );
    read_state(|s| assert_eq!(s.child_count(), 0, "a refusal records nothing"));

    let forced = RegisterOptions { force: Some(true) };
    let info = block_on(register_child(&ic, foreign, forced)).unwrap();
    assert_eq!(
        (info.state, info.installed_hash),
        (ChildState::Pending, Some(vec![0x77; 32]))
    );
    let info = block_on(register_child(&ic, empty, RegisterOptions::default())).unwrap();
    assert_eq!((info.state, info.installed_hash), (ChildState::Pending, None));
    read_state(|s| s.check_invariants());
}

// --- remove_child ---------------------------------------------------------------------------------------------

#[test]
fn remove_child_refuses_unknown_and_locked_children() {
    let mut s = fresh_state();
    let (idle, locked, failed) = (principal(1), principal(2), principal(3));
    s.put_child(idle, ChildEntry::new(Some(OLD.to_vec()), Phase::Pending, 0));
    let op = Op::new(1, 1, Step::Install, 0);
    s.put_child(locked, ChildEntry::new(Some(OLD.to_vec()), Phase::InFlight(op), 0));
    s.put_child(failed, ChildEntry::new(Some(OLD.to_vec()), Phase::Failed, 0));

    assert_eq!(
        remove_child(&mut s, principal(9), 0),
        Err(ParentError::UnknownChild {
            canister_id: principal(9)
        })
    );
    assert_eq!(
        remove_child(&mut s, locked, 0),
        Err(ParentError::ChildBusy {
            canister_id: locked,
            step: RolloutStep::Installing
        })
    );
    assert_eq!(s.child_count(), 3);
    remove_child(&mut s, idle, 0).unwrap();
    remove_child(&mut s, failed, 0).unwrap();
    assert_eq!(
        (
            s.child_count(),
            s.pending().len(),
            s.failed().len(),
            s.in_flight().len()
        ),
        (1, 0, 0, 1)
    );
    s.check_invariants();
}

#[test]
fn retry_failed_and_start_rollout_replan() {
    let mut s = fresh_state();
    rollout::on_install(&mut s, Principal::anonymous(), 1);
    rollout::tick(&mut s, 1);
    s.put_child(principal(1), ChildEntry::new(Some(OLD.to_vec()), Phase::Failed, 0));
    assert_eq!(retry_failed(&mut s, 2), 1);
    assert_eq!(retry_failed(&mut s, 2), 0);
    assert_eq!(s.pending().len(), 1);
    let id = s.rollout().id;
    assert_eq!(start_rollout(&mut s, Principal::anonymous(), 3), id + 1);
    assert!(s.rollout().plan.is_some());
    s.check_invariants();
}

// --- retry_child ----------------------------------------------------------------------------------------------

fn skip() -> RetryOptions {
    RetryOptions {
        skip_pre_upgrade: Some(true),
    }
}

#[test]
fn retry_child_refuses_unknown_busy_and_up_to_date_children_and_changes_nothing() {
    let mut s = fresh_state();
    rollout::on_install(&mut s, Principal::anonymous(), 1);
    rollout::tick(&mut s, 1);
    let release = s.release.hash.to_vec();
    let (locked, current) = (principal(2), principal(3));
    let op = Op::new(1, 1, Step::Stop, 0);
    s.put_child(locked, ChildEntry::new(Some(OLD.to_vec()), Phase::InFlight(op), 0));
    s.put_child(current, ChildEntry::new(Some(release), Phase::Idle, 0));
    let before: Vec<_> = s.children().iter().map(|e| e.into_pair()).collect();
    let rollout_before = s.rollout().clone();

    assert_eq!(
        retry_child(&mut s, principal(9), skip(), 5),
        Err(ParentError::UnknownChild {
            canister_id: principal(9)
        })
    );
    assert_eq!(
        retry_child(&mut s, locked, skip(), 5),
        Err(ParentError::ChildBusy {
            canister_id: locked,
            step: RolloutStep::Stopping
        })
    );
    invalid_arg(retry_child(&mut s, current, skip(), 5));

    let after: Vec<_> = s.children().iter().map(|e| e.into_pair()).collect();
    assert_eq!(after, before);
    assert_eq!(s.rollout(), &rollout_before);
    s.check_invariants();
}

#[test]
fn retry_child_queues_a_failed_or_outdated_child_with_its_options() {
    let mut s = fresh_state();
    rollout::on_install(&mut s, Principal::anonymous(), 1);
    rollout::tick(&mut s, 1);
    assert!(s.rollout().finished_at.is_some());
    let (failed, outdated, queued) = (principal(1), principal(2), principal(3));
    let mut f = ChildEntry::new(Some(OLD.to_vec()), Phase::Failed, 0);
    f.attempts = rollout::MAX_ATTEMPTS;
    s.put_child(failed, f);
    s.put_child(outdated, ChildEntry::new(Some(OLD.to_vec()), Phase::Idle, 0));
    s.put_child(queued, ChildEntry::new(Some(OLD.to_vec()), Phase::Pending, 0));

    let id = s.rollout().id;
    assert_eq!(retry_child(&mut s, failed, skip(), 7), Ok(id));
    let e = s.child(&failed).unwrap();
    assert_eq!(
        (e.phase, e.attempts, e.upgrade.skip_pre_upgrade, e.updated_at),
        (Phase::Pending, 0, true, 7)
    );
    assert!(s.rollout().finished_at.is_none(), "the rollout reopens for the child");

    assert_eq!(retry_child(&mut s, outdated, RetryOptions::default(), 7), Ok(id));
    assert_eq!(s.child(&outdated).unwrap().phase, Phase::Pending);
    assert!(!s.child(&outdated).unwrap().upgrade.skip_pre_upgrade);

    // A queued child gets the options; asking again without them takes them back.
    retry_child(&mut s, queued, skip(), 8).unwrap();
    assert!(s.child(&queued).unwrap().upgrade.skip_pre_upgrade);
    retry_child(
        &mut s,
        queued,
        RetryOptions {
            skip_pre_upgrade: Some(false),
        },
        9,
    )
    .unwrap();
    assert!(!s.child(&queued).unwrap().upgrade.skip_pre_upgrade);
    assert_eq!((s.pending().len(), s.failed().len()), (3, 0));
    s.check_invariants();
}

// --- rollout_release ------------------------------------------------------------------------------------------

#[test]
fn rollout_release_refuses_what_it_cannot_install_and_changes_nothing() {
    let mut s = fresh_state();
    rollout::on_install(&mut s, Principal::anonymous(), 1_000);
    let before = s.rollout().clone();
    let err = |r: Result<u64, ParentError>| r.unwrap_err();
    assert!(matches!(
        err(rollout_release(&mut s, vec![1; 31], Principal::anonymous(), 1_000)),
        ParentError::InvalidArgument { .. }
    ));
    assert_eq!(
        err(rollout_release(&mut s, vec![9; 32], Principal::anonymous(), 1_000)),
        ParentError::UnknownRelease { hash: vec![9; 32] }
    );
    s.ship([8; 32]); // recorded by an older parent, its module never stored
    assert_eq!(
        err(rollout_release(&mut s, vec![8; 32], Principal::anonymous(), 1_000)),
        ParentError::ReleaseNotStored { hash: vec![8; 32] }
    );
    assert_eq!(s.rollout(), &before);
}
