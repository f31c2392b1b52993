//! Benchmarks on the in-process replica (`tests/replica`).
//!
//! `cargo run -p bench --release --bin upgrade-cost` measures how the instructions of one upgrade grow with the data
//! a canister stores, for our child and for a heap-serializing baseline, and writes `RESULTS.md` and
//! `upgrade-cost.png` beside this crate's `Cargo.toml`.
//!
//! `cargo run -p bench --release --bin rollout` measures the parent's rollout of a new child release across a fleet
//! (rounds, instructions per execution, a no-op redeploy, a large registry) and writes `ROLLOUT.md` and `rollout.png`.

pub mod fit;
pub mod measure;
pub mod plot;
pub mod report;
pub mod results;
pub mod rollout;
pub mod rollout_report;
