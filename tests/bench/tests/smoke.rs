//! Smoke tests of the benchmark's code on tiny data (the measurement itself is the `upgrade-cost` binary).

use bench::measure::{measure_upgrade, Kind, Module, ModuleInfo, Scenario, Trap, UpgradeCost, MIB, VALUE_SIZE};
use bench::results::{Results, Series};

fn child() -> Module {
    Module::read("child.wasm.gz", "scripts/build.sh")
}

fn heap_baseline() -> Module {
    Module::read("fixtures/heap_baseline.wasm.gz", "scripts/build.sh --fixtures")
}

/// Measures an upgrade at 0 bytes and at `data_bytes`; `measure_upgrade` itself checks the data survives.
fn measure_empty_and(kind: Kind, module: &Module, data_bytes: u64) -> [UpgradeCost; 2] {
    let scenario = Scenario {
        kind,
        from: module,
        to: module,
    };
    let costs = [measure_upgrade(&scenario, 0), measure_upgrade(&scenario, data_bytes)];
    for cost in &costs {
        assert!(cost.succeeded(), "{kind:?}: {cost:?}");
        assert!(cost.phase_instructions[2] > 0, "{kind:?}: post_upgrade ran");
    }
    costs
}

#[test]
fn child_upgrade_is_measured() {
    // Two values only: the replica runs the child slowly in debug builds.
    let [_, filled] = measure_empty_and(Kind::Child, &child(), 2 * u64::from(VALUE_SIZE));
    assert_eq!(filled.phase_instructions[0], 0, "the child has no pre_upgrade");
}

#[test]
fn baseline_upgrade_is_measured_and_grows_with_its_data() {
    let [empty, filled] = measure_empty_and(Kind::HeapBaseline, &heap_baseline(), MIB);
    assert!(
        filled.phase_instructions[0] > empty.phase_instructions[0],
        "pre_upgrade serializes the data"
    );
    assert!(filled.instructions() > 2 * empty.instructions(), "{empty:?} {filled:?}");
}

fn cost(mib: u64, instructions: u64) -> UpgradeCost {
    UpgradeCost {
        data_bytes: mib * MIB,
        phase_instructions: [instructions / 10, 0, instructions - instructions / 10],
        stable_memory_bytes: 40 * MIB,
        heap_bytes: mib * MIB,
        trap: None,
    }
}

fn series(label: &str, costs: Vec<UpgradeCost>) -> Series {
    let module = ModuleInfo {
        path: "x.wasm.gz".into(),
        sha256_hex: "ab".repeat(32),
        gz_bytes: 1000,
    };
    Series {
        label: label.into(),
        from: module.clone(),
        to: module,
        costs,
    }
}

/// Child flat at 2M; baseline 1M + 3M per MiB, failing at 1536 MiB.
fn synthetic_results() -> Results {
    let sizes = vec![0, 1, 10, 100, 1536];
    let child = series("Child", sizes[..4].iter().map(|&m| cost(m, 2_000_000 + m)).collect());
    let mut baseline = series(
        "Baseline",
        sizes.iter().map(|&m| cost(m, 1_000_000 + 3_000_000 * m)).collect(),
    );
    baseline.costs[4].trap = Some(Trap {
        phase: "canister_pre_upgrade".into(),
        message: "capacity overflow".into(),
    });
    Results {
        sizes_mib: sizes,
        child_same: child,
        child_next: None,
        baseline,
    }
}

#[test]
fn the_report_states_the_goals_from_the_numbers() {
    let run = bench::report::RunInfo {
        command: "cmd".into(),
        machine: "machine".into(),
        run_time: "1 s".into(),
    };
    let md = bench::report::render(&synthetic_results(), &run);
    assert!(!md.contains("{{"), "every placeholder is filled:\n{md}");
    assert!(md.contains("| 100 | 2,000,100 | 1.000× |"), "{md}");
    assert!(md.contains("measured 1.000× → **met**"), "{md}");
    assert!(md.contains("is 3,000,000 × MiB + 1,000,000 (R² = 1.000000)"), "{md}");
    assert!(
        md.contains("at about 100,000 MiB (98 GiB) of data: an **extrapolation**"),
        "{md}"
    );
    assert!(
        md.contains("**upgrade fails**¹") && md.contains("`canister_pre_upgrade` trapped"),
        "{md}"
    );
}

#[test]
fn the_plot_is_a_png() {
    let path = std::env::temp_dir().join(format!("upgrade-cost-smoke-{}.png", std::process::id()));
    bench::plot::write_png(&path, &synthetic_results()).expect("draw");
    let png = std::fs::read(&path).expect("read the plot");
    std::fs::remove_file(&path).ok();
    assert!(png.starts_with(b"\x89PNG"), "a PNG file");
}
