//! Install and upgrade: both run `initialise`.

use std::time::Duration;

use ic_stable_structures::Memory;
use shared::child::{AuditKind, ChildInitArg, ChildUpgradeArg};

use crate::memory::SCHEMA_VERSION;
use crate::state::{CallContext, State};

/// How often the heartbeat timer records `last_tick`; modest, so that idle fleets stay cheap.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);

pub enum Lifecycle {
    Install(ChildInitArg),
    Upgrade(Option<ChildUpgradeArg>),
}

/// Records the schema version and the parent in the config and audits the install or upgrade. The structures are
/// (re)opened with `init` when `State` is first touched, so nothing stored is lost. The caller re-arms the timers.
///
/// Traps on stable memory written by a newer, incompatible schema: the upgrade then fails and the canister keeps
/// running its previous code with its data intact.
pub fn initialise<M: Memory + Clone>(state: &mut State<M>, call: &CallContext, lifecycle: Lifecycle) {
    let mut config = state.config.get().clone();
    assert!(
        config.schema_version <= SCHEMA_VERSION,
        "stable memory has schema version {}, but this build reads at most {SCHEMA_VERSION}",
        config.schema_version,
    );
    let version = crate::VERSION.to_string();
    let upgrade = matches!(lifecycle, Lifecycle::Upgrade(_));
    let (parent, kind) = match lifecycle {
        Lifecycle::Install(arg) => (Some(arg.parent), AuditKind::Install { version }),
        Lifecycle::Upgrade(arg) => (arg.and_then(|arg| arg.parent), AuditKind::Upgrade { version }),
    };
    config.schema_version = SCHEMA_VERSION;
    config.parent = parent.or(config.parent);
    state.config.set(config);
    state.append_audit(kind, None, call);
    if upgrade {
        fixtures::on_upgrade(state);
    }
    fixtures::keep_ballast();
}

/// What the test-fixture builds do differently (features `corrupt` and `ballast`); nothing in a real build.
mod fixtures {
    use super::*;

    /// `corrupt`: a release with a data bug. Its upgrade succeeds and renames the first member.
    #[cfg(feature = "corrupt")]
    pub fn on_upgrade<M: Memory + Clone>(state: &mut State<M>) {
        let first = state.members.first_key_value();
        if let Some((id, mut record)) = first {
            record.name = "CORRUPTED".to_string();
            state.members.insert(id, record);
        }
    }

    #[cfg(not(feature = "corrupt"))]
    pub fn on_upgrade<M: Memory + Clone>(_: &mut State<M>) {}

    /// `ballast`: 2.5 MiB of data in the module, kept by this use.
    #[cfg(feature = "ballast")]
    pub fn keep_ballast() {
        static BALLAST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ballast.bin"));
        std::hint::black_box(BALLAST);
    }

    #[cfg(not(feature = "ballast"))]
    pub fn keep_ballast() {}
}

#[cfg(test)]
mod tests;
