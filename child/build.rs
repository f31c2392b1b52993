//! Build-time inputs of the child, from its cargo features:
//! - `CHILD_VERSION`: the package version, with a suffix naming the build (`-next`, `-corrupt`, `-big`);
//! - `$OUT_DIR/ballast.bin`: with feature `ballast`, 2.5 MiB of deterministic pseudo-random bytes (gzip cannot shrink
//!   them), so that the module is over the IC's 2 MiB install limit; empty otherwise.

use std::env;
use std::path::PathBuf;

const BALLAST_BYTES: usize = 5 * 512 * 1024;

fn main() {
    let feature = |name: &str| env::var_os(format!("CARGO_FEATURE_{}", name.to_uppercase())).is_some();
    let suffix: String = [("next", "-next"), ("corrupt", "-corrupt"), ("ballast", "-big")]
        .iter()
        .filter(|(f, _)| feature(f))
        .map(|(_, s)| *s)
        .collect();
    let version = env::var("CARGO_PKG_VERSION").expect("set by cargo");
    println!("cargo:rustc-env=CHILD_VERSION={version}{suffix}");

    let mut ballast = Vec::new();
    if feature("ballast") {
        // xorshift64*, a fixed seed: the same bytes on every machine.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        ballast.reserve(BALLAST_BYTES);
        while ballast.len() < BALLAST_BYTES {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            ballast.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("ballast.bin"), ballast).expect("write ballast.bin");
}
