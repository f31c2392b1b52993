//! Turns a cargo-built canister wasm into the release `.wasm.gz` that dfx, icp-cli and the parent install.
//!
//! `wasm-finish <in.wasm> [--candid <service.did>] --out <out.wasm.gz>`
//!
//! 1. Drops every custom section (names, producers, target features): nothing the IC needs, and paths or
//!    toolchain strings in them would make the hash depend on the build machine.
//! 2. Appends the public `candid:service` metadata section (`icp:public candid:service`) from the committed .did,
//!    if one is given (test fixtures have none).
//! 3. Gzips with no file name and a zero timestamp, so the same wasm always gives the same bytes.
//! 4. Prints the file's size and SHA-256, the value the IC reports as `module_hash`.

use std::{fs, io::Write, path::PathBuf, process::ExitCode};

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use wasm_encoder::{CustomSection, Module, RawSection};
use wasmparser::{Parser, Payload};

const CANDID_SECTION: &str = "icp:public candid:service";

struct Args {
    input: PathBuf,
    candid: Option<PathBuf>,
    out: PathBuf,
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)).and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wasm-finish: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let usage = "usage: wasm-finish <in.wasm> [--candid <service.did>] --out <out.wasm.gz>";
    let input = argv.next().ok_or(usage)?;
    let (mut candid, mut out) = (None, None);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or(usage)?;
        match flag.as_str() {
            "--candid" => candid = Some(value),
            "--out" => out = Some(value),
            _ => return Err(format!("unknown option {flag}\n{usage}")),
        }
    }
    Ok(Args {
        input: input.into(),
        candid: candid.map(PathBuf::from),
        out: out.ok_or(usage)?.into(),
    })
}

fn run(args: &Args) -> Result<(), String> {
    let wasm = fs::read(&args.input).map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let candid = match &args.candid {
        Some(path) => Some(fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?),
        None => None,
    };
    let finished = finish(&wasm, candid.as_deref())?;
    let gz = gzip(&finished);
    // Write then rename, so a concurrent reader (icp-cli builds canisters in parallel) never sees half a file.
    let partial = args.out.with_extension("gz.partial");
    fs::write(&partial, &gz).map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    fs::rename(&partial, &args.out).map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    println!(
        "{}: {} bytes ({:.1} KiB), sha256 {}",
        args.out.display(),
        gz.len(),
        gz.len() as f64 / 1024.0,
        hex::encode(Sha256::digest(&gz))
    );
    Ok(())
}

/// Re-emits `wasm` without its custom sections and with the candid metadata section, if any, appended.
fn finish(wasm: &[u8], candid: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let mut module = Module::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("invalid wasm: {e}"))?;
        if let Payload::CustomSection(_) = payload {
            continue;
        }
        if let Some((id, range)) = payload.as_section() {
            module.section(&RawSection { id, data: &wasm[range] });
        }
    }
    if let Some(candid) = candid {
        module.section(&CustomSection {
            name: CANDID_SECTION.into(),
            data: candid.into(),
        });
    }
    let bytes = module.finish();
    wasmparser::Validator::new()
        .validate_all(&bytes)
        .map_err(|e| format!("finished wasm is invalid: {e}"))?;
    Ok(bytes)
}

/// RFC 1952 gzip with no file name and mtime 0 (`gzip -n`), at maximum compression.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    encoder.write_all(bytes).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom_sections(wasm: &[u8]) -> Vec<(String, Vec<u8>)> {
        Parser::new(0)
            .parse_all(wasm)
            .filter_map(|p| match p.unwrap() {
                Payload::CustomSection(s) => Some((s.name().to_string(), s.data().to_vec())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn replaces_custom_sections_with_candid_metadata() {
        let wasm = wat::parse_str(r#"(module (@custom "name-like" "secret/path") (func (export "canister_query x")))"#)
            .unwrap();
        assert_eq!(custom_sections(&wasm).len(), 1);
        let finished = finish(&wasm, Some(b"service : {}")).unwrap();
        assert_eq!(
            custom_sections(&finished),
            vec![(CANDID_SECTION.to_string(), b"service : {}".to_vec())]
        );
    }

    #[test]
    fn gzip_is_deterministic_and_has_no_name_or_time() {
        let a = gzip(b"\0asm same bytes");
        let b = gzip(b"\0asm same bytes");
        assert_eq!(a, b);
        assert_eq!(&a[..3], &[0x1f, 0x8b, 0x08]);
        assert_eq!(a[3] & 0x08, 0, "FNAME flag must be clear");
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "MTIME must be zero");
    }

    #[test]
    fn rejects_invalid_wasm() {
        assert!(finish(b"not wasm", None).is_err());
    }
}
