//! For the canisters' tests: a committed `.did` file must be exactly the interface the code exports, comments
//! included, because the build turns the file into the module's `candid:service` metadata.

use candid_parser::utils::{service_equal, CandidSource};

/// Panics unless the file at `path` holds `exported` (what `__export_service()` returns). With `UPDATE_CANDID` set
/// in the environment, rewrites the file instead.
pub fn assert_committed(path: &str, exported: String) {
    let exported = format!("{}\n", exported.trim_end());
    let committed = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {path}: {err}"));
    if committed == exported {
        return;
    }
    if std::env::var_os("UPDATE_CANDID").is_some() {
        std::fs::write(path, &exported).unwrap_or_else(|err| panic!("cannot write {path}: {err}"));
        return;
    }
    let types = service_equal(CandidSource::Text(&committed), CandidSource::Text(&exported)).map_or_else(
        |err| format!("types differ: {err}"),
        |()| "same types, other text".to_string(),
    );
    panic!(
        "{path} differs from the code ({types}); rerun the test with UPDATE_CANDID=1 to rewrite it. \
         The code's interface is:\n{exported}"
    );
}
