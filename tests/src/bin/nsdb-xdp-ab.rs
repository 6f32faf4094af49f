//! A/B of two builds of the XDP program: both objects are loaded side by side in one process,
//! configured alike, and run alternately under BPF_PROG_TEST_RUN, so that the shared machine's
//! swings (its cores change speed by more than most optimisations gain) weigh on both alike.
//! For each packet class it prints the median ns of each side and the median of the per-pair
//! ratios B/A; a ratio below 1 means B is faster. Run it A/A first to see the noise.
//!
//! Usage: nsdb-xdp-ab A B [--pairs N] [--referrals N]
//!
//! A and B are program objects as aya-build leaves them (the newest of
//! `ls -t target/release/build/nsdb-user-*/out/aya-build/target/nsdb-ebpf/bpfel-unknown-none/release/nsdb`):
//! copy one aside, change the kernel code, rebuild, compare. Both must be built against this
//! binary's nsdb-common; an object with other map layouts is refused at load ("invalid value
//! size"). Whole-ns kernel timing makes the ~17 ns non-DNS class read 0.94–1.06 even A/A.

use nsdb::{
    clock,
    loader::{Filter, Sizes},
};
use nsdb_common::{kind, mode};
use nsdb_tests::{alternate, packet::*, test_run};

/// The object at `path`, loaded and set up like the kernel-cost bench's filter.
fn load(path: &str) -> Filter {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    // The ELF parser wants the object 8-byte aligned, as include_bytes_aligned! leaves it.
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    // SAFETY: `words` owns at least `bytes.len()` initialised bytes; u8 has no alignment.
    let object =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), bytes.len()) };
    object.copy_from_slice(&bytes);
    let mut f = Filter::load_object(
        object,
        Sizes {
            allow_entries: 1024,
        },
    )
    .unwrap_or_else(|e| panic!("loading {path}: {e}"));
    f.set_mode(mode::ENFORCE).unwrap();
    f.set_event_rate(10, 20).unwrap();
    f.add_internal("192.0.2.0/24".parse().unwrap()).unwrap();
    f.add_exempt("203.0.113.53/32".parse().unwrap()).unwrap();
    let hour = clock::mono_ns() + 3_600_000_000_000;
    for a in ["198.51.100.53", "2001:db8:ff::53"] {
        f.allow(a.parse().unwrap(), hour, kind::GLUE).unwrap();
    }
    f
}

fn row(name: &str, [a, b, ratio]: [f64; 3]) {
    println!("{name:<56} {a:>10.0} {b:>10.0} {ratio:>7.3}");
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: nsdb-xdp-ab A B [--pairs N] [--referrals N]");
        std::process::exit(2);
    }
    let (a, b) = (load(&args[1]), load(&args[2]));
    let pairs = arg(&args, "--pairs", 15);
    let referrals = arg(&args, "--referrals", 2000);
    let q4 = |dst: &str| {
        frame(
            &[],
            &L3::v4("192.0.2.10", dst),
            &udp(40000, 53, &dns_query(1, "www.example.test", 1)),
        )
    };
    let classes = [
        (
            "non-DNS UDP",
            frame(
                &[],
                &L3::v4("192.0.2.10", "198.51.100.99"),
                &udp(40000, 443, &[0u8; 64]),
            ),
        ),
        ("registered IPv4", q4("198.51.100.53")),
        (
            "registered IPv6",
            frame(
                &[],
                &L3::v6("2001:db8:1::10", "2001:db8:ff::53"),
                &udp(40000, 53, &dns_query(1, "www.example.test", 28)),
            ),
        ),
        ("unknown, dropped", q4("198.51.100.99")),
        ("exempt", q4("203.0.113.53")),
        ("internal", q4("192.0.2.53")),
    ];
    println!("{:<56} {:>10} {:>10} {:>7}", "class", "A ns", "B ns", "B/A");
    for (name, pkt) in &classes {
        let t = alternate(pairs, &a, &b, |f| {
            test_run(f.program(), pkt, 300_000).duration.as_nanos() as f64
        });
        row(name, t);
    }
    // Paired referrals with known glue: each response needs its own query (repeat 1).
    let query = frame(
        &[],
        &L3::v4("192.0.2.10", "198.51.100.53"),
        &udp(40000, 53, &dns_query(0x4242, "www.example.test", 1)),
    );
    for (name, msg) in referral_13_encodings(0x4242, "198.19.0.", "2001:db8:19::") {
        let resp = frame(
            &[],
            &L3::v4("198.51.100.53", "192.0.2.10"),
            &udp(53, 40000, &msg),
        );
        let t = alternate(referrals, &a, &b, |f| {
            test_run(f.program(), &query, 1);
            test_run(f.program(), &resp, 1).duration.as_nanos() as f64
        });
        row(&format!("13-glue referral, {name}"), t);
    }
}
