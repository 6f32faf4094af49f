//! Replays the inputs kept under tests/fuzz-regressions/<target>/ through the fuzz targets'
//! own code (fuzz/harness.rs): every input a fuzzer crashed on once, and hand-made edge cases
//! in the targets' input formats. Runs in the normal test suite; needs no fuzzer.

use std::path::PathBuf;

#[path = "../../fuzz/harness.rs"]
mod harness;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no inputs in {}", dir.display());
    v.into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn engine_inputs_replay() {
    for (p, b) in inputs("engine") {
        eprintln!("{}", p.display());
        harness::engine(&b);
    }
}

#[test]
fn capture_inputs_replay() {
    for (p, b) in inputs("capture") {
        eprintln!("{}", p.display());
        harness::capture(&b);
    }
}
