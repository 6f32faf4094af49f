//! `cargo xtask`: set-up, run, test and bench for nsdb.
fn main() {}
