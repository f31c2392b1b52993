/// `child/child.did` is the code's interface, comments included. `UPDATE_CANDID=1 cargo test -p child` rewrites it.
#[test]
fn should_match_committed_candid_interface() {
    shared::did::assert_committed("child.did", super::__export_service());
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
