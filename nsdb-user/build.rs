//! Builds the XDP program (nsdb-ebpf) for the BPF target and leaves it in OUT_DIR/nsdb, where
//! `loader.rs` embeds it.
//!
//! With AYA_BUILD_SKIP=1 (userspace-only work) an empty object is left instead; the daemon then
//! refuses to start with a clear error, while everything offline still builds and runs.

use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "nsdb-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../nsdb-ebpf"),
            no_default_features: false,
            features: &[],
        }],
        aya_build::Toolchain::default(),
    )?;
    let obj = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("nsdb");
    if !obj.exists() {
        fs::write(&obj, [])?;
    }
    Ok(())
}
