//! The DNS wire parser and the learning engine on arbitrary messages and query/response pairs
//! (input layout in ../harness.rs).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::engine(data));
