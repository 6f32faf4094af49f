//! `cargo xtask setup`: nightly rust-src, bpf-linker on nightly rustc's own LLVM, Debian
//! packages. Each step checks first and does nothing when its piece is already there.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::status;

/// Debian packages the tests and benchmarks use (real DNS software, capture and traffic tools).
const PACKAGES: &[&str] = &[
    "iproute2",
    "procps",
    "iputils-ping",
    "nsd",
    "unbound",
    "dnsutils",
    "tshark",
    "tcpdump",
    "nftables",
    "bpftool",
    "netsniff-ng",
    "python3-dpkt",
    // The forwarding bench samples the filters' own CPU time with perf.
    "linux-perf",
    // The metrics test scrapes with curl and loads the status page in headless Chromium.
    "curl",
    "chromium",
];

pub fn run() -> Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nightly_rust_src() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain (builds the XDP program)");
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!(
            "setup: adding rust-src to nightly (core is built from source for the BPF target)"
        );
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    } else {
        eprintln!("setup: nightly rust-src present");
    }
    Ok(())
}

/// The LLVM major version of nightly rustc (bpf-linker must use the same).
fn nightly_llvm_major() -> Result<String> {
    let v = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    v.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|s| s.split('.').next())
        .map(str::to_string)
        .context("rustc +nightly -vV printed no LLVM version")
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

fn bpf_linker() -> Result<()> {
    let major = nightly_llvm_major()?;
    // A stamp next to the binary records which LLVM it was built against.
    let stamp = cargo_home().join("nsdb-bpf-linker.llvm");
    let have = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let stamped = std::fs::read_to_string(&stamp)
        .map(|s| s.trim() == major)
        .unwrap_or(false);
    if have && stamped {
        eprintln!("setup: bpf-linker present (LLVM {major})");
        return Ok(());
    }
    eprintln!("setup: building bpf-linker against nightly rustc's LLVM {major} (about 2 minutes)");
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let lib = std::fs::read_dir(&lib_dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so")))
        .with_context(|| format!("no libLLVM.so in {}", lib_dir.display()))?;
    // bpf-linker links against any libLLVM.so under LLVM_PREFIX/lib: point it at rustc's.
    let prefix = cargo_home().join("nsdb-llvm");
    let plib = prefix.join("lib");
    std::fs::create_dir_all(&plib)?;
    for name in ["libLLVM.so".to_string(), lib.clone()] {
        let link = plib.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib_dir.join(&lib), &link)?;
    }
    status(
        Command::new("cargo")
            .args([
                "install",
                "--force",
                "bpf-linker",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix),
    )?;
    std::fs::write(&stamp, &major)?;
    Ok(())
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        eprintln!("setup: Debian packages present");
        return Ok(());
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    status(Command::new("apt-get").args(["update", "-q"]))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
