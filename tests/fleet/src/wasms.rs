//! The built releases. A release is a parent module that embeds one child module; the parent reports that child's
//! hash (`child_release`), and the child files sit next to the parent file (`child.wasm.gz`, `child.version`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The hint every missing-file panic carries.
pub const BUILD_HINT: &str = "run scripts/build.sh (and scripts/build.sh --next, scripts/build.sh --fixtures)";

/// The repository root: the nearest directory holding `Cargo.lock` above the package's manifest directory. Cargo
/// sets that directory at run time (`cargo test`, `cargo run`), and it wins over the one compiled in: clones that
/// share a target directory share binaries too, and each must read its own files.
pub fn repo_root() -> PathBuf {
    let manifest_dir = manifest_dir();
    manifest_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or_else(|| panic!("no Cargo.lock above {}", manifest_dir.display()))
        .to_path_buf()
}

/// The running package's manifest directory (see `repo_root`).
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// Reads a file, relative to the repository root unless absolute; panics with the build hint if it is missing.
pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = repo_root().join(path.as_ref());
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}; {BUILD_HINT}", path.display()))
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A parent module and what is known about the child it embeds.
#[derive(Clone, Debug)]
pub struct Release {
    /// Where the parent module came from (for reports).
    pub path: PathBuf,
    /// The gzipped parent module, as `dfx canister install` would send it.
    pub parent_wasm: Vec<u8>,
    /// SHA-256 of the embedded child `.wasm.gz` (the child's `module_hash` once upgraded), if the child file sits
    /// next to the parent file. Otherwise read it from the parent's `child_release` query once installed.
    pub child_hash: Option<[u8; 32]>,
    /// The child's `version()` string (from `child.version` next to the parent file), if known.
    pub child_version: Option<String>,
}

impl Release {
    /// Release A: `wasm/parent.wasm.gz` embedding `wasm/child.wasm.gz`.
    pub fn current() -> Self {
        Self::from_dir("wasm")
    }

    /// Release B: `wasm/next/parent.wasm.gz` embedding the `next` child (`version()` ends in `-next`).
    pub fn next() -> Self {
        Self::from_dir("wasm/next")
    }

    /// `<dir>/parent.wasm.gz` with `<dir>/child.wasm.gz` and `<dir>/child.version`; all must exist.
    pub fn from_dir(dir: impl AsRef<Path>) -> Self {
        let dir = repo_root().join(dir.as_ref());
        let child = read(dir.join("child.wasm.gz"));
        let version = String::from_utf8(read(dir.join("child.version"))).expect("child.version is UTF-8");
        Self {
            path: dir.join("parent.wasm.gz"),
            parent_wasm: read(dir.join("parent.wasm.gz")),
            child_hash: Some(sha256(&child)),
            child_version: Some(version.trim().to_string()),
        }
    }

    /// Any parent module; the child files next to it are used if present.
    pub fn from_parent_file(path: impl AsRef<Path>) -> Self {
        let path = repo_root().join(path.as_ref());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let child = std::fs::read(dir.join("child.wasm.gz")).ok();
        let version = std::fs::read_to_string(dir.join("child.version")).ok();
        Self {
            parent_wasm: read(&path),
            path,
            child_hash: child.as_deref().map(sha256),
            child_version: version.map(|v| v.trim().to_string()),
        }
    }

    /// SHA-256 of the parent module (its `module_hash` once installed).
    pub fn parent_hash(&self) -> [u8; 32] {
        sha256(&self.parent_wasm)
    }

    /// The child hash; panics if it is not known from files (see [`Release::child_hash`]).
    pub fn expect_child_hash(&self) -> [u8; 32] {
        self.child_hash
            .unwrap_or_else(|| panic!("no child.wasm.gz next to {}", self.path.display()))
    }

    /// A different parent build with the same embedded child: the same module plus a custom section named `name`
    /// (a new parent hash, identical behaviour and child). Stands for "a new parent build, same child".
    pub fn rebuilt_parent(&self, name: &str) -> Self {
        let mut wasm = Vec::new();
        flate2::read::GzDecoder::new(&self.parent_wasm[..])
            .read_to_end(&mut wasm)
            .expect("the parent module is gzipped");
        // A custom section: id 0, size, name (length-prefixed), payload.
        let mut body = leb128(name.len() as u64);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"rebuilt");
        wasm.push(0);
        wasm.extend(leb128(body.len() as u64));
        wasm.extend(body);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&wasm).expect("gzip");
        Self {
            parent_wasm: gz.finish().expect("gzip"),
            path: self.path.with_extension(format!("gz+{name}")),
            ..self.clone()
        }
    }
}

fn leb128(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
