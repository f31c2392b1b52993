//! What a rollout cost in cycles: the replica charges a 13-node application subnet's fees (executions, calls,
//! installs, storage), so the cost is the change of the parent's and the children's balances.

use std::fmt;

use candid::Principal;

use crate::Fleet;

/// An estimate of how many rounds an application subnet runs per second on mainnet: the IC's scheduler sizes a
/// round of short messages to take about one second (`rs/config/src/subnet_config.rs`, "about 2B instructions to
/// run in a round in about 1 second").
pub const MAINNET_ROUNDS_PER_SECOND: f64 = 1.0;

/// The parent's and each child's cycle balance at one moment.
#[derive(Clone, Debug)]
pub struct Balances {
    pub parent: u128,
    pub children: Vec<(Principal, u128)>,
}

impl Balances {
    pub fn of(fleet: &Fleet) -> Self {
        Self {
            parent: fleet.replica.cycle_balance(fleet.parent),
            children: fleet
                .children
                .iter()
                .map(|c| (*c, fleet.replica.cycle_balance(*c)))
                .collect(),
        }
    }
}

/// Cycles spent between two [`Balances`] (a negative amount means the balance grew), and the mainnet duration
/// that the rounds in between predict.
#[derive(Clone, Debug)]
pub struct CyclesReport {
    pub parent: i128,
    /// Per child, in the order of [`Fleet::children`].
    pub children: Vec<i128>,
    pub rounds: u64,
}

impl CyclesReport {
    pub fn between(before: &Balances, after: &Balances, rounds: u64) -> Self {
        let spent = |b: u128, a: u128| b as i128 - a as i128;
        Self {
            parent: spent(before.parent, after.parent),
            children: before
                .children
                .iter()
                .zip(&after.children)
                .map(|((_, b), (_, a))| spent(*b, *a))
                .collect(),
            rounds,
        }
    }

    pub fn children_total(&self) -> i128 {
        self.children.iter().sum()
    }

    pub fn total(&self) -> i128 {
        self.parent + self.children_total()
    }

    /// Children's costs: (min, median, max).
    pub fn children_spread(&self) -> (i128, i128, i128) {
        let mut sorted = self.children.clone();
        sorted.sort_unstable();
        let at = |i: usize| sorted.get(i).copied().unwrap_or(0);
        (at(0), at(sorted.len() / 2), at(sorted.len().saturating_sub(1)))
    }

    /// The rounds at [`MAINNET_ROUNDS_PER_SECOND`], in seconds: an estimate.
    pub fn mainnet_seconds(&self) -> f64 {
        self.rounds as f64 / MAINNET_ROUNDS_PER_SECOND
    }
}

/// Cycles as "1.23 T" / "4.56 B" / "7.89 M".
pub fn format_cycles(c: i128) -> String {
    let a = c.abs() as f64;
    let (value, unit) = if a >= 1e12 {
        (c as f64 / 1e12, "T")
    } else if a >= 1e9 {
        (c as f64 / 1e9, "B")
    } else {
        (c as f64 / 1e6, "M")
    };
    format!("{value:.3} {unit}")
}

impl fmt::Display for CyclesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (min, median, max) = self.children_spread();
        writeln!(
            f,
            "  cycles         {} in all (13-node application subnet fees): parent {}, children {}",
            format_cycles(self.total()),
            format_cycles(self.parent),
            format_cycles(self.children_total())
        )?;
        writeln!(
            f,
            "                 per child: min {}, median {}, max {} ({} children)",
            format_cycles(min),
            format_cycles(median),
            format_cycles(max),
            self.children.len()
        )?;
        write!(
            f,
            "  mainnet        about {:.0} s for {} rounds, an estimate at {MAINNET_ROUNDS_PER_SECOND} round/s",
            self.mainnet_seconds(),
            self.rounds
        )
    }
}
