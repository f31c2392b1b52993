//! Test harness for fleets of real parent and child canisters on the in-process replica.
