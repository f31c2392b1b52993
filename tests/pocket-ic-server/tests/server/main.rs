//! The server through the official `pocket-ic` client (and raw HTTP where the answer itself is the point). One test
//! binary: the tests share one server, as a user's tests do.

mod endpoints;
mod flows;
mod launch;
mod support;
