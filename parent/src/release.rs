//! The child release embedded in this parent build (see `build.rs`).

use shared::release::ReleaseInfo;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/child_release.rs"));
}

/// The gzipped child module, byte for byte as `scripts/build.sh` produced it; installed unchanged.
pub static CHILD_WASM_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/child.wasm.gz"));

/// A child release: what the parent installs and the hash a child running it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub hash: [u8; 32],
    pub size: u64,
    pub version: String,
    /// The module, as installed.
    pub bytes: &'static [u8],
}

impl Release {
    /// The release this build carries.
    pub fn embedded() -> Self {
        Self {
            hash: generated::CHILD_WASM_SHA256,
            size: CHILD_WASM_GZ.len() as u64,
            version: generated::CHILD_VERSION.to_string(),
            bytes: CHILD_WASM_GZ,
        }
    }

    pub fn info(&self) -> ReleaseInfo {
        ReleaseInfo {
            hash: self.hash.to_vec(),
            size: self.size,
            version: self.version.clone(),
        }
    }

    pub fn is(&self, hash: Option<&[u8]>) -> bool {
        hash == Some(&self.hash[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn embedded_hash_is_sha256_of_embedded_bytes() {
        let digest: [u8; 32] = Sha256::digest(CHILD_WASM_GZ).into();
        assert_eq!(Release::embedded().hash, digest);
    }

    #[test]
    fn embedded_child_is_gzipped() {
        assert!(CHILD_WASM_GZ.starts_with(&[0x1f, 0x8b, 0x08]));
        assert_eq!(Release::embedded().size, CHILD_WASM_GZ.len() as u64);
    }
}
