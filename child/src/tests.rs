use candid_parser::utils::{service_equal, CandidSource};

#[test]
fn should_match_committed_candid_interface() {
    let generated = super::__export_service();
    let committed = include_str!("../child.did");
    if let Err(err) = service_equal(
        CandidSource::Text(committed),
        CandidSource::Text(&generated),
    ) {
        panic!(
            "child/child.did differs from the code ({err}); the code's interface is:\n{generated}"
        );
    }
}

#[test]
fn should_take_version_from_cargo_package() {
    let expected = if cfg!(feature = "next") {
        concat!(env!("CARGO_PKG_VERSION"), "-next")
    } else {
        env!("CARGO_PKG_VERSION")
    };
    assert_eq!(super::VERSION, expected);
}
