//! The capture reader on arbitrary pcap/pcapng bytes, every DNS message found fed to the
//! learning engine (../harness.rs).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::capture(data));
