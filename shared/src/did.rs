//! For the canisters' tests: a committed `.did` file must be exactly the interface the code exports, comments
//! included, because the build turns the file into the module's `candid:service` metadata.

use candid_parser::utils::{service_equal, CandidSource};

/// Panics unless `file` in the package's directory holds `exported` (what `__export_service()` returns). With
/// `UPDATE_CANDID` set in the environment, rewrites the file instead. The directory is the one cargo test names at
/// run time: a test binary reused from another clone that shares the target directory checks this clone's file.
pub fn assert_committed(file: &str, exported: String) {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test (CARGO_MANIFEST_DIR)");
    let path = std::path::Path::new(&dir).join(file);
    let exported = format!("{}\n", exported.trim_end());
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    if committed == exported {
        return;
    }
    if std::env::var_os("UPDATE_CANDID").is_some() {
        std::fs::write(&path, &exported).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        return;
    }
    let types = service_equal(CandidSource::Text(&committed), CandidSource::Text(&exported)).map_or_else(
        |err| format!("types differ: {err}"),
        |()| "same types, other text".to_string(),
    );
    panic!(
        "{} differs from the code ({types}); rerun the test with UPDATE_CANDID=1 to rewrite it. \
         The code's interface is:\n{exported}",
        path.display()
    );
}
