//! `cargo xtask fuzz <target> [--seconds N]`: runs one cargo-fuzz target of `fuzz/` (its own
//! crate, outside the workspace) on nightly, after seeding its corpus from the shared capture
//! files if the corpus is empty. Not part of `cargo xtask test`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::status;

pub const TARGETS: [&str; 2] = ["engine", "capture"];

/// A command that runs under nightly, free of the variables the outer (stable) cargo set.
fn nightly_cargo(dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly").current_dir(dir);
    for v in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "CARGO_MANIFEST_DIR",
    ] {
        c.env_remove(v);
    }
    // The targets use the offline code only: no XDP program build (and no bpf-linker needed).
    c.env("AYA_BUILD_SKIP", "1");
    c
}

pub fn run(root: &Path, target: &str, seconds: u64) -> Result<()> {
    if !TARGETS.contains(&target) {
        bail!(
            "unknown fuzz target {target:?} (have: {})",
            TARGETS.join(", ")
        );
    }
    let dir = root.join("fuzz");
    let have_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_fuzz {
        eprintln!("fuzz: installing cargo-fuzz");
        status(Command::new("cargo").args(["install", "cargo-fuzz"]))?;
    }
    let corpus = dir.join("corpus").join(target);
    let empty = std::fs::read_dir(&corpus).map_or(true, |mut d| d.next().is_none());
    if empty {
        let pcaps = std::env::var_os("NSDB_PCAPS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/pcaps"));
        eprintln!("fuzz: seeding fuzz/corpus from {}", pcaps.display());
        status(
            nightly_cargo(&dir)
                .args(["run", "--release", "--example", "seed", "--"])
                .arg(&pcaps)
                .arg(dir.join("corpus")),
        )
        .context("seeding the corpus")?;
    }
    // Captures may be long; DNS message inputs are a few messages of at most a few KB.
    let max_len = if target == "capture" { 65536 } else { 16384 };
    status(
        nightly_cargo(&dir)
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-max_len={max_len}"))
            .arg("-rss_limit_mb=2048")
            .arg("-malloc_limit_mb=1024")
            .arg("-print_final_stats=1"),
    )
}
