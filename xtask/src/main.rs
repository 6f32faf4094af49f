//! `cargo xtask`: what a person runs. `setup` makes a fresh machine ready; `run`, `test` and
//! `bench` call it first, then build and do their job.
//!
//! xtask itself must build on a fresh machine, before bpf-linker exists: it depends on nothing
//! that builds eBPF.

mod bench;
mod fuzz;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Set-up, run, test and bench for nsdb")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing nsdb needs: nightly rust-src, bpf-linker built on
    /// nightly rustc's own LLVM, and the Debian packages the tests use. Idempotent.
    Setup,
    /// Set up, build, and run `nsdb run` with the given flags.
    /// Example: cargo xtask run -- --iface eth1 --mode monitor
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run every test (needs root: BPF and network namespaces).
    /// Extra arguments go to `cargo test`. Example: cargo xtask test -- xdp_classes
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the benchmarks; writes target/bench/report.md and report.json.
    Bench {
        /// A short smoke run (fewer repeats, a smaller trace); numbers are not comparable.
        #[arg(long)]
        quick: bool,
    },
    /// Run a cargo-fuzz target (engine: wire parser and learning engine; capture: the
    /// capture reader) on nightly; seeds fuzz/corpus from ../shared/pcaps first.
    /// Example: cargo xtask fuzz engine --seconds 600
    Fuzz {
        target: String,
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.cmd {
        Cmd::Setup => setup::run(),
        Cmd::Run { args } => {
            setup::run()?;
            build_release(&root)?;
            let bin = root.join("target/release/nsdb");
            let err = exec(Command::new(bin).arg("run").args(args));
            Err(err)
        }
        Cmd::Test { args } => {
            warn_if_disk_low(&root);
            setup::run()?;
            build_release(&root)?;
            // Default members: nsdb-common, nsdb-user, xtask, tests (nsdb-ebpf only builds for
            // the BPF target, through nsdb-user's build script).
            let mut c = cargo();
            c.args(["test", "--release"]).args(args);
            status(&mut c)
        }
        Cmd::Bench { quick } => {
            warn_if_disk_low(&root);
            setup::run()?;
            build_release(&root)?;
            bench::run(&root, quick)
        }
        Cmd::Fuzz { target, seconds } => fuzz::run(&root, &target, seconds),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// A clean checkout's release build and test run take about 3 GiB under target/ (the BPF
/// object's build of `core` among them); when the disk is fuller than that, say so up front
/// rather than leave the reader an ENOSPC deep in a build script's output.
fn warn_if_disk_low(root: &Path) {
    const NEED: u64 = 3 << 30;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = if target.exists() {
        target
    } else {
        root.to_path_buf()
    };
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: an all-zero statvfs is a valid value for statvfs(3) to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` is valid for writing.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return;
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    if free < NEED {
        eprintln!(
            "xtask: warning: only {:.1} GiB free on the file system of {}; a clean build and \
             test run needs about {} GiB (a full disk shows up as \"No space left on device\" \
             in the BPF build)",
            free as f64 / (1u64 << 30) as f64,
            dir.display(),
            NEED >> 30
        );
    }
}

/// Builds every release binary (nsdb with its XDP object embedded, and the bench tools).
fn build_release(_root: &Path) -> Result<()> {
    status(cargo().args(["build", "--release", "--bins"]))
}

pub(crate) fn status(c: &mut Command) -> Result<()> {
    let s = c.status().with_context(|| format!("running {c:?}"))?;
    if !s.success() {
        bail!("{c:?} failed with {s}");
    }
    Ok(())
}

fn exec(c: &mut Command) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    anyhow::Error::from(c.exec()).context("starting nsdb")
}
