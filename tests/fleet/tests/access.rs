//! Who may call what, as a table: every update method of `parent/parent.did` and `child/child.did`, called by each
//! kind of caller. A refused call answers `NotAuthorized` / `NotAllowed` and changes nothing; an allowed one gets past
//! the check (its arguments are chosen to be refused by validation instead, so the table changes no state either).
//!
//! Parent: admins operate the fleet; only controllers change who controls it (`set_admins`,
//! `set_extra_controllers`) or what it spends (`set_cycles_per_child`, and `set_keep_releases`, which also decides
//! which releases can be rolled back to). Child: the parent and the child's controllers write; everyone reads.

use std::collections::BTreeSet;

use candid::{Nat, Principal};
use candid_parser::utils::CandidSource;
use fleet::{outsider, Fleet, FleetConfig, Release};
use shared::child::{ChildError, FillArg, MemberInput};
use shared::parent::{ParentError, RestoreTarget, RetryOptions, RolloutGates, SnapshotPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Stranger,
    Admin,
    Controller,
}

/// Who may call a parent method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    /// Controllers and admins.
    Operator,
    /// Controllers only.
    Controller,
}

fn update_methods(did: &str) -> BTreeSet<String> {
    let path = fleet::wasms::repo_root().join(did);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (env, actor) = CandidSource::Text(&text).load().expect("parse the .did");
    let actor = actor.expect("a service");
    env.as_service(&actor)
        .expect("service")
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| !env.get_method(&actor, name).expect("method").is_query())
        .collect()
}

#[test]
fn every_parent_update_is_allowed_exactly_to_its_callers() {
    let admin = outsider(2);
    let fleet = Fleet::with_children(
        &Release::current(),
        FleetConfig {
            admins: vec![admin],
            ..FleetConfig::with_concurrency(2)
        },
        2,
        5,
        8,
    );
    let p = fleet.parent();
    let child = fleet.children[0];
    let snapshot = || (p.settings(), p.list_all_children(), p.rollout_status(), p.releases());
    let before = snapshot();

    // Arguments that validation refuses, so that an allowed call shows it got past the authorization check without
    // changing anything.
    type Call<'a> = Box<dyn Fn(Principal) -> Result<(), ParentError> + 'a>;
    let table: Vec<(&str, Needs, Call)> = vec![
        (
            "create_children",
            Needs::Operator,
            Box::new(|c| p.create_children(c, 0, None).map(drop)),
        ),
        (
            "register_child",
            Needs::Operator,
            Box::new(|c| p.register_child(c, fleet.parent).map(drop)),
        ),
        (
            "remove_child",
            Needs::Operator,
            Box::new(|c| p.remove_child(c, Principal::from_slice(&[9; 10]))),
        ),
        (
            "retry_child",
            Needs::Operator,
            Box::new(|c| p.retry_child(c, child, RetryOptions::default()).map(drop)),
        ),
        (
            "retry_failed",
            Needs::Operator,
            Box::new(|c| p.retry_failed(c).map(drop)),
        ),
        (
            "set_concurrency",
            Needs::Operator,
            Box::new(|c| p.set_concurrency(c, 1_000)),
        ),
        (
            "rollout_release",
            Needs::Operator,
            Box::new(|c| p.rollout_release(c, vec![1; 31]).map(drop)),
        ),
        (
            "set_keep_releases",
            Needs::Controller,
            Box::new(|c| p.set_keep_releases(c, 0)),
        ),
        (
            "set_admins",
            Needs::Controller,
            Box::new(|c| p.set_admins(c, vec![Principal::anonymous()])),
        ),
        (
            "set_cycles_per_child",
            Needs::Controller,
            Box::new(|c| p.set_cycles_per_child(c, Nat::from(u128::MAX))),
        ),
        (
            "set_extra_controllers",
            Needs::Controller,
            Box::new(|c| p.set_extra_controllers(c, vec![Principal::anonymous()])),
        ),
        (
            "restore_snapshots",
            Needs::Operator,
            Box::new(|c| p.restore_snapshots(c, RestoreTarget::Children(vec![])).map(drop)),
        ),
        (
            "set_rollout_gates",
            Needs::Operator,
            Box::new(|c| {
                let gates = RolloutGates {
                    canary: None,
                    bake_secs: 0,
                    health_method: String::new(),
                    halt_after: None,
                };
                p.set_rollout_gates(c, gates)
            }),
        ),
        (
            "set_chunked_install_above",
            Needs::Operator,
            Box::new(|c| p.set_chunked_install_above(c, u64::MAX)),
        ),
        (
            "set_snapshot_policy",
            Needs::Operator,
            Box::new(|c| p.set_snapshot_policy(c, SnapshotPolicy::Off)),
        ),
        ("pause_rollout", Needs::Operator, Box::new(|c| p.pause_rollout(c))),
        ("resume_rollout", Needs::Operator, Box::new(|c| p.resume_rollout(c))),
        ("abort_rollout", Needs::Operator, Box::new(|c| p.abort_rollout(c))),
        // These two start a rollout when allowed: they come last and only for the callers allowed.
        (
            "start_rollout",
            Needs::Operator,
            Box::new(|c| p.start_rollout(c).map(drop)),
        ),
        (
            "verify_fleet",
            Needs::Operator,
            Box::new(|c| p.verify_fleet(c).map(drop)),
        ),
    ];
    let covered: BTreeSet<String> = table.iter().map(|(m, _, _)| m.to_string()).collect();
    assert_eq!(
        covered,
        update_methods("parent/parent.did"),
        "every update method is in the table"
    );

    let principal_of = |who: Caller| match who {
        Caller::Anonymous => Principal::anonymous(),
        Caller::Stranger => outsider(1),
        Caller::Admin => admin,
        Caller::Controller => fleet.controller,
    };
    let allowed = |who: Caller, needs: Needs| match who {
        Caller::Controller => true,
        Caller::Admin => needs == Needs::Operator,
        Caller::Anonymous | Caller::Stranger => false,
    };
    let mut refusals = 0;
    for who in [Caller::Anonymous, Caller::Stranger, Caller::Admin, Caller::Controller] {
        for (method, needs, call) in &table {
            let caller = principal_of(who);
            // Calls with no argument to refuse: allowed, they succeed (pause and resume leave the state as it was).
            let succeeds = matches!(
                *method,
                "start_rollout"
                    | "verify_fleet"
                    | "retry_failed"
                    | "set_snapshot_policy"
                    | "pause_rollout"
                    | "resume_rollout"
                    | "abort_rollout"
            );
            let result = call(caller);
            if allowed(who, *needs) {
                assert_ne!(
                    result,
                    Err(ParentError::NotAuthorized { caller }),
                    "{method} by {who:?}"
                );
                assert_eq!(result.is_ok(), succeeds, "{method} by {who:?}: {result:?}");
            } else {
                assert_eq!(
                    result,
                    Err(ParentError::NotAuthorized { caller }),
                    "{method} by {who:?}"
                );
                refusals += 1;
            }
        }
        if who != Caller::Controller && who != Caller::Admin {
            assert_eq!(snapshot(), before, "refused calls by {who:?} changed nothing");
        }
    }
    assert_eq!(
        refusals,
        2 * 20 + 4,
        "anonymous and strangers: every method; admins: the four controller-only ones"
    );
}

#[test]
fn child_writes_are_for_the_parent_and_controllers_reads_for_everyone() {
    let fleet = Fleet::with_children(&Release::current(), FleetConfig::with_concurrency(1), 1, 3, 8);
    let id = fleet.children[0];
    let c = fleet.child(id);
    let before = (c.data_checksum(), c.health().total_writes);
    let input = MemberInput {
        name: "n".into(),
        value: vec![1],
    };
    let fill = FillArg {
        count: 1,
        value_size: 1,
        prefix: "x".into(),
    };
    type Write<'a> = Box<dyn Fn(Principal) -> Result<(), ChildError> + 'a>;
    let writes: Vec<(&str, Write)> = vec![
        (
            "add_member",
            Box::new(|p| c.add_member(p, "new", input.clone()).map(drop)),
        ),
        (
            "update_member",
            Box::new(|p| c.update_member(p, "f0-000000", input.clone()).map(drop)),
        ),
        ("remove_member", Box::new(|p| c.remove_member(p, "f0-000001").map(drop))),
        ("admin_fill", Box::new(|p| c.admin_fill(p, fill.clone()).map(drop))),
        // Last: it hands the parent's rights to another principal.
        ("set_parent", Box::new(|p| c.set_parent(p, outsider(9)))),
    ];
    let covered: BTreeSet<String> = writes.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(
        covered,
        update_methods("child/child.did"),
        "every update method is in the table"
    );
    for caller in [Principal::anonymous(), outsider(1)] {
        for (method, write) in &writes {
            assert_eq!(
                write(caller),
                Err(ChildError::NotAllowed { caller }),
                "{method} by {caller}"
            );
        }
    }
    assert_eq!(
        (c.data_checksum(), c.health().total_writes),
        before,
        "refused writes changed nothing"
    );
    // Everyone reads.
    assert!(c.get_member("f0-000000").is_ok());
    // The parent and the controllers write.
    for (writer, (method, write)) in [fleet.parent, fleet.controller].into_iter().cycle().zip(&writes) {
        assert_eq!(write(writer), Ok(()), "{method} by {writer}");
    }
}
