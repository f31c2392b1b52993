//! The measured series and what follows from them: ratios, the baseline's linear fit and where it passes the limit.

use crate::fit::{Crossing, LinearFit};
use crate::measure::{ModuleInfo, UpgradeCost, IC_INSTALL_LIMIT, MIB};

/// One scenario measured at every data size.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub from: ModuleInfo,
    pub to: ModuleInfo,
    /// One per data size the series was measured at, ascending.
    pub costs: Vec<UpgradeCost>,
}

impl Series {
    /// The measurement at `data_mib`, if any.
    pub fn cost_at(&self, data_mib: u64) -> Option<&UpgradeCost> {
        self.costs.iter().find(|c| c.data_bytes == data_mib * MIB)
    }

    /// (MiB, instructions) of every successful upgrade.
    pub fn points(&self) -> Vec<(f64, f64)> {
        let succeeded = self.costs.iter().filter(|c| c.succeeded());
        succeeded
            .map(|c| (c.data_bytes as f64 / MIB as f64, c.instructions() as f64))
            .collect()
    }

    /// Instructions of the successful upgrade at `data_mib`, if measured.
    pub fn instructions_at(&self, data_mib: u64) -> Option<u64> {
        self.cost_at(data_mib)
            .filter(|c| c.succeeded())
            .map(UpgradeCost::instructions)
    }

    /// Instructions at `data_mib` divided by instructions at 0 MiB, if both upgrades were measured and succeeded.
    pub fn ratio_to_empty(&self, data_mib: u64) -> Option<f64> {
        Some(self.instructions_at(data_mib)? as f64 / self.instructions_at(0)? as f64)
    }
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct Results {
    /// Every size measured in any series, ascending.
    pub sizes_mib: Vec<u64>,
    /// Our child upgraded to the same module.
    pub child_same: Series,
    /// Our child upgraded to the `next` build, if `wasm/next/child.wasm.gz` exists.
    pub child_next: Option<Series>,
    /// The `heap_baseline` fixture upgraded to the same module.
    pub baseline: Series,
}

impl Results {
    /// The child series, same module first.
    pub fn child_series(&self) -> impl Iterator<Item = &Series> {
        std::iter::once(&self.child_same).chain(&self.child_next)
    }

    /// Least-squares line through the baseline's points (instructions against MiB).
    pub fn baseline_fit(&self) -> Option<LinearFit> {
        LinearFit::of(&self.baseline.points())
    }

    /// Where the baseline passes the IC's install_code limit (MiB).
    pub fn baseline_crossing(&self) -> Crossing {
        Crossing::of(
            &self.baseline.points(),
            self.baseline_fit().as_ref(),
            IC_INSTALL_LIMIT as f64,
        )
    }
}
