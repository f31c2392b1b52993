//! A server that speaks the PocketIC REST API of the `pocket-ic` 16.x crate (with the crate's own
//! `pocket_ic::common::rest` types) over the in-process replica, so tests written for `pocket-ic` or `@dfinity/pic`
//! run offline against real canister wasm. Each instance is one replica with one application subnet, served on its
//! own thread. See README.md for the endpoints and how this server differs from PocketIC.

mod answer;
mod blobs;
pub mod config;
mod convert;
mod instance;
pub mod launch;
mod server;

/// The PocketIC server API version this server implements: the one of the `pocket-ic` crate it is built on.
pub const API_VERSION: &str = pocket_ic::LATEST_SERVER_VERSION;

/// Writes one line to stderr and ignores failure: clients may close the server's stderr (`@dfinity/pic` pipes it to
/// a stream that ends with the test), and a lost log line must never take the server down.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "pocket-ic-server: {}", format_args!($($arg)*));
    }};
}
