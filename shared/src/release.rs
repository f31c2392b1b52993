use candid::CandidType;
use serde::{Deserialize, Serialize};

/// A child release as the parent carries it: the gzipped module it installs.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// SHA-256 of the `.wasm.gz` bytes exactly as installed; the IC reports the same value as `module_hash`.
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
    /// Size of the `.wasm.gz` in bytes.
    pub size: u64,
    /// The child's own version string (its Cargo package version).
    pub version: String,
}
