//! Shared test machinery: network namespaces that clean up after themselves, real DNS servers
//! in them, crafted packets, and the nsdb binary.

pub mod gateway;
pub mod netns;
pub mod packet;
pub mod servers;
pub mod testbed;
pub mod traffic;

use std::path::PathBuf;

use aya::programs::{TestRun, TestRunOptions, TestRunResult};

/// Runs an XDP program or TC classifier on `pkt` through BPF_PROG_TEST_RUN, `repeat` times
/// (the kernel reports the mean duration of one run).
pub fn test_run<P>(prog: &P, pkt: &[u8], repeat: u32) -> TestRunResult
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let opts = TestRunOptions {
        data_in: Some(pkt),
        repeat,
        ..Default::default()
    };
    prog.test_run(opts).expect("BPF_PROG_TEST_RUN")
}

/// The CPU model, as /proc/cpuinfo names it (every bench report prints it).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The median of timings (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `n` alternating timings of A and B (`time` runs one of them once and returns its ns), so
/// that what else the shared machine does weighs on both: the median ns of each and the
/// median of the per-pair ratios B/A.
pub fn alternate<T: ?Sized>(n: usize, a: &T, b: &T, mut time: impl FnMut(&T) -> f64) -> [f64; 3] {
    let (mut na, mut nb, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let x = time(a);
        let y = time(b);
        na.push(x);
        nb.push(y);
        r.push(y / x);
    }
    [median(na), median(nb), median(r)]
}

/// The `nsdb` binary of this build (target/<profile>/nsdb, next to the test executables'
/// `deps/` folder and the bench tools). `NSDB_BIN` overrides it.
pub fn nsdb_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NSDB_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    // Tests live in target/<profile>/deps/, the bench tools in target/<profile>/.
    let dir = exe.parent().expect("an executable is in a directory");
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>")
    } else {
        dir
    };
    let bin = profile_dir.join("nsdb");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --release -p nsdb-user` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// A unique suffix for names of namespaces and files of one test (pid + counter).
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id() % 100000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nsdb-test-{}", unique(tag)));
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        Self(p)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
