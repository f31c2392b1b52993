//! The rules of a gated rollout: how many canaries, when failures halt it, its rate and ETA, and how much of the
//! past the parent keeps. Pure functions; `rollout.rs` applies them.

use crate::model::{CyclesPolicy, Share};
use crate::outcome::Funds;

/// Canaries in one rollout at most (their states are read every tick while they run).
pub const MAX_CANARIES: u32 = 100;
/// A per-mille halt threshold applies once this many children were attempted (below, one failure is too noisy a
/// rate). A count threshold applies at once.
pub const MIN_ATTEMPTS_FOR_RATE: u64 = 10;
/// Completions the rate is taken over.
pub const RATE_WINDOW: usize = 64;
/// Ended rollouts the history keeps (the oldest is dropped).
pub const HISTORY_KEPT: u64 = 1_000;
/// Operations each child's event log keeps.
pub const EVENTS_PER_CHILD: usize = 10;
/// Steps one event records (the last ones; retries that never give up can take many).
pub const STEPS_LOGGED: usize = 32;
/// The health check's bounded-wait timeout.
pub const HEALTH_TIMEOUT_SECS: u32 = 30;
/// What the IC takes from a child up front for an `install_code` on a 13-node subnet, above its freezing limit: the
/// execution of the install's 300 B instruction limit (1 cycle per instruction, plus the 5 M message fee). The unused
/// part is refunded after the install.
pub const INSTALL_RESERVE: u128 = 300_005_000_000;
/// What the IC charges a child for a snapshot, besides one cycle per byte of it, on a 13-node subnet: the execution of
/// 2B instructions (`canister_snapshot_baseline_instructions`), plus the 5 M message fee.
pub const SNAPSHOT_BASELINE: u128 = 2_005_000_000;

/// What a rollout does about a child's cycles before it stops (or installs into) the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Funding {
    Enough,
    /// Deposit this much first.
    TopUp(u128),
    /// The child needs `needed` and has `available`; the parent may not (or cannot) make up the difference.
    Short {
        needed: u128,
        available: u128,
    },
}

/// What a child pays for once the rollout has stopped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Install,
    /// A snapshot, then the install.
    SnapshotAndInstall,
    /// Its snapshot loaded back; no install.
    Restore,
}

impl Work {
    /// What the child must hold above its freezing limit for it, the margin aside.
    fn cost(self, funds: Funds) -> u128 {
        match self {
            Work::Install => INSTALL_RESERVE,
            Work::SnapshotAndInstall => snapshot_cost(funds).saturating_add(INSTALL_RESERVE),
            Work::Restore => load_cost(funds),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Work::Install => "install",
            Work::SnapshotAndInstall => "snapshot and install",
            Work::Restore => "snapshot's load",
        }
    }
}

/// The child needs its freezing limit, the margin, and what its `work` costs: an install's reservation; with a
/// snapshot first, also the snapshot's charge and the freezing limit of the memory the snapshot adds; for a restore,
/// the load's charge. The parent tops it up while this operation's deposits stay within `max_top_up_per_child` and
/// its own balance stays at or above `parent_reserve`. A child short by at most half the margin has enough: what it
/// burns between the top-up and the next check must not cause another top-up.
pub fn funding(funds: Funds, policy: CyclesPolicy, topped_up: u128, work: Work) -> Funding {
    let needed = funds
        .freezing_limit
        .saturating_add(work.cost(funds))
        .saturating_add(policy.margin);
    let missing = needed.saturating_sub(funds.balance);
    let within_cap = topped_up.saturating_add(missing) <= policy.max_top_up_per_child;
    let affordable = funds.parent_balance >= missing.saturating_add(policy.parent_reserve);
    match missing {
        m if m <= policy.margin / 2 => Funding::Enough,
        _ if within_cap && affordable => Funding::TopUp(missing),
        _ => Funding::Short {
            needed,
            available: funds.balance,
        },
    }
}

/// A snapshot holds the child's own memory (all but its snapshots) and costs the baseline plus one cycle per byte of
/// it; the IC then wants the balance above the freezing limit of the memory with the snapshot added, and the install
/// after it does too. The idle burn is taken as proportional to memory, and a snapshot the new one replaces is not
/// subtracted: both err on the side of asking for more.
fn snapshot_cost(funds: Funds) -> u128 {
    let own = funds.memory_size.saturating_sub(funds.snapshots_size);
    let added_limit = match funds.memory_size {
        0 => 0,
        memory => funds.freezing_limit.saturating_mul(own) / memory,
    };
    SNAPSHOT_BASELINE.saturating_add(own).saturating_add(added_limit)
}

/// A load costs the baseline, then the module's compilation (a cached module's: a few million cycles, left to the
/// margin) and one cycle per byte of the snapshot, taken as the size of the child's own memory now.
fn load_cost(funds: Funds) -> u128 {
    let own = funds.memory_size.saturating_sub(funds.snapshots_size);
    (SNAPSHOT_BASELINE + 5_000_000).saturating_add(own)
}

impl Share {
    /// The number this share names out of `total` (a per mille rounds up, so any non-zero share is at least one).
    pub fn of(self, total: u64) -> u64 {
        match self {
            Share::Count(n) => u64::from(n),
            Share::PerMille(p) => (u64::from(p) * total).div_ceil(1000),
        }
    }
}

/// Canaries wanted for a fleet of `fleet` children.
pub fn canaries_wanted(canary: Option<Share>, fleet: u64) -> u32 {
    canary.map_or(0, |share| share.of(fleet).min(u64::from(MAX_CANARIES)) as u32)
}

/// Whether `failures` out of `attempted` reach the halt threshold.
pub fn halt_reached(halt_after: Option<Share>, failures: u64, attempted: u64) -> bool {
    match halt_after {
        None => false,
        Some(Share::Count(n)) => failures >= u64::from(n.max(1)),
        Some(Share::PerMille(p)) => {
            attempted >= MIN_ATTEMPTS_FOR_RATE && failures > 0 && failures * 1000 >= u64::from(p) * attempted
        }
    }
}

/// Children per hour over the recent completions (nanosecond times, oldest first); `None` with fewer than two or no
/// time between them.
pub fn rate_per_hour(recent: &[u64]) -> Option<f64> {
    let (first, last) = (*recent.first()?, *recent.last()?);
    (last > first).then(|| (recent.len() - 1) as f64 * 3_600e9 / (last - first) as f64)
}

/// Seconds to do `remaining` more at `rate` children per hour.
pub fn eta_secs(remaining: u64, rate: Option<f64>) -> Option<u64> {
    rate.filter(|r| *r > 0.0)
        .map(|r| (remaining as f64 * 3_600.0 / r).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u128 = 1_000_000_000_000;

    fn policy() -> CyclesPolicy {
        CyclesPolicy {
            margin: T / 10,
            max_top_up_per_child: T,
            parent_reserve: 5 * T,
        }
    }

    fn funds(balance: u128, parent_balance: u128) -> Funds {
        Funds {
            balance,
            freezing_limit: T / 2,
            memory_size: 3 << 30,
            snapshots_size: 1 << 30,
            parent_balance,
        }
    }

    #[test]
    fn a_snapshot_first_adds_its_charge_and_the_freezing_limit_of_the_memory_it_adds() {
        // 2 GiB of its own and a 1 GiB snapshot: the new snapshot adds 2 GiB, two thirds of the freezing limit.
        let without = T / 2 + INSTALL_RESERVE + T / 10;
        let needed = without + SNAPSHOT_BASELINE + (2 << 30) + T / 3;
        let policy = CyclesPolicy {
            max_top_up_per_child: 2 * T,
            ..policy()
        };
        assert_eq!(
            funding(funds(0, 10 * T), policy, 0, Work::SnapshotAndInstall),
            Funding::TopUp(needed)
        );
        assert_eq!(
            funding(funds(needed, 0), policy, 0, Work::SnapshotAndInstall),
            Funding::Enough
        );
        assert_eq!(
            funding(funds(0, 10 * T), policy, 0, Work::Install),
            Funding::TopUp(without)
        );
    }

    #[test]
    fn a_restore_needs_the_load_not_the_install() {
        // A 2 GiB snapshot loaded: the baseline, two message fees and a cycle per byte.
        let needed = T / 2 + SNAPSHOT_BASELINE + 5_000_000 + (2 << 30) + T / 10;
        assert_eq!(
            funding(funds(0, 10 * T), policy(), 0, Work::Restore),
            Funding::TopUp(needed)
        );
        assert_eq!(funding(funds(needed, 0), policy(), 0, Work::Restore), Funding::Enough);
    }

    #[test]
    fn a_child_needs_its_freezing_limit_the_install_reservation_and_the_margin() {
        let needed = T / 2 + INSTALL_RESERVE + T / 10;
        assert_eq!(funding(funds(needed, 0), policy(), 0, Work::Install), Funding::Enough);
        assert_eq!(
            funding(funds(0, 10 * T), policy(), 0, Work::Install),
            Funding::TopUp(needed)
        );
    }

    #[test]
    fn a_child_short_by_at_most_half_the_margin_is_not_topped_up_again() {
        let needed = T / 2 + INSTALL_RESERVE + T / 10;
        let half = T / 20;
        assert_eq!(
            funding(funds(needed - half, 10 * T), policy(), 0, Work::Install),
            Funding::Enough
        );
        assert_eq!(
            funding(funds(needed - half - 1, 10 * T), policy(), 0, Work::Install),
            Funding::TopUp(half + 1)
        );
    }

    #[test]
    fn top_ups_stay_within_the_cap_and_the_parent_reserve() {
        let needed = T / 2 + INSTALL_RESERVE + T / 10;
        let short = Funding::Short { needed, available: 0 };
        // The parent would end below its reserve.
        assert_eq!(funding(funds(0, 5 * T + needed - 1), policy(), 0, Work::Install), short);
        assert_eq!(
            funding(funds(0, 5 * T + needed), policy(), 0, Work::Install),
            Funding::TopUp(needed)
        );
        // This operation already deposited close to the cap.
        assert_eq!(
            funding(funds(0, 10 * T), policy(), T - needed + 1, Work::Install),
            short
        );
        let never = CyclesPolicy {
            max_top_up_per_child: 0,
            ..policy()
        };
        assert_eq!(funding(funds(0, 10 * T), never, 0, Work::Install), short);
    }

    #[test]
    fn shares_name_a_number_of_children() {
        assert_eq!(Share::Count(3).of(1_000), 3);
        assert_eq!(Share::PerMille(10).of(1_000), 10);
        assert_eq!(Share::PerMille(10).of(50), 1, "any non-zero share is at least one");
        assert_eq!(Share::PerMille(0).of(50), 0);
        assert_eq!(canaries_wanted(Some(Share::PerMille(500)), 1_000), MAX_CANARIES);
        assert_eq!(canaries_wanted(None, 1_000), 0);
    }

    #[test]
    fn a_count_halts_at_once_a_rate_once_enough_were_attempted() {
        assert!(!halt_reached(None, 100, 100));
        assert!(halt_reached(Some(Share::Count(2)), 2, 2));
        assert!(!halt_reached(Some(Share::Count(2)), 1, 50));
        let tenth = Some(Share::PerMille(100));
        assert!(!halt_reached(tenth, 1, 1), "one of one is no rate yet");
        assert!(halt_reached(tenth, 1, 10));
        assert!(!halt_reached(tenth, 1, 11));
        assert!(halt_reached(tenth, 5, 40));
    }

    #[test]
    fn rate_and_eta_come_from_the_recent_completions() {
        let hour = 3_600_000_000_000u64;
        assert_eq!(rate_per_hour(&[5]), None);
        assert_eq!(rate_per_hour(&[0, hour / 2, hour]), Some(2.0));
        assert_eq!(eta_secs(10, Some(2.0)), Some(18_000));
        assert_eq!(eta_secs(10, None), None);
    }
}
