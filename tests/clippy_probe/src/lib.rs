//! Proof that clippy.toml's stable-memory bans hold. With feature `probe`, `probe.rs` calls every path the canisters
//! must not use to write stable memory, one call per line marked `// banned:`; `scripts/check-clippy-bans.sh` runs
//! clippy on it for wasm32 and fails unless clippy rejects every marked line. Without the feature this crate is empty.

#[cfg(feature = "probe")]
mod probe;
