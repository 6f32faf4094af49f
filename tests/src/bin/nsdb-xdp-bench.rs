//! Kernel cost per packet: the nsdb XDP program under BPF_PROG_TEST_RUN for each packet class,
//! next to a no-op XDP program in the same run. Prints one JSON object on stdout.
//!
//! Usage: nsdb-xdp-bench [--quick]

use aya::programs::Xdp;
use nsdb::{
    clock,
    loader::{Filter, Sizes},
};
use nsdb_common::{kind, mode};
use nsdb_tests::{alternate, cpu_model, median, packet::*, test_run};
use serde_json::json;

/// One BPF_PROG_TEST_RUN of `repeat` runs: the mean ns per run, from this thread's CPU time
/// across the call. The kernel's own figure (`duration`) is the same loop timed in whole ns,
/// which against a no-op of ~10 ns is a rounding error of up to 5 %; the thread's CPU clock
/// (sched_clock, ns resolution) over 10⁶ runs gives fractions of a ns. Like the kernel's
/// timer, it stops while the thread is off the CPU, so other jobs on this shared machine do
/// not count; the call's set-up (copying the packet in and out) adds microseconds in all,
/// nothing per run over thousands of runs (every caller asks for 1,000 or more). The paired
/// referrals, one run each, are timed by the kernel's figure instead ([`time_once`]).
fn per_run_ns(prog: &Xdp, pkt: &[u8], repeat: u32) -> f64 {
    run_ns(prog, pkt, repeat).0
}

/// The thread-CPU mean (see [`per_run_ns`]) and the kernel's whole-ns mean of one call.
fn run_ns(prog: &Xdp, pkt: &[u8], repeat: u32) -> (f64, f64) {
    let t0 = thread_cpu_ns();
    let r = test_run(prog, pkt, repeat);
    let t1 = thread_cpu_ns();
    (
        (t1 - t0) as f64 / repeat as f64,
        r.duration.as_nanos() as f64,
    )
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A packet class next to the no-op in the same moments: `PAIRS` alternating runs of each, so
/// that whatever else the shared machine does weighs on both; the figure is the median of the
/// per-pair ratios, and the median ns of each side.
const PAIRS: usize = 15;

struct Cost {
    ns: f64,
    noop_ns: f64,
    ratio: f64,
    /// The median of the per-pair differences, ns.
    added_ns: f64,
    /// The median of the per-pair ratios of the kernel's own whole-ns figures: a cross-check.
    kernel_ratio: f64,
}

fn cost(prog: &Xdp, noop: &Xdp, pkt: &[u8], repeat: u32) -> Cost {
    let (mut p, mut n, mut r, mut k, mut d) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PAIRS {
        let (a, ka) = run_ns(prog, pkt, repeat);
        let (b, kb) = run_ns(noop, pkt, repeat);
        p.push(a);
        n.push(b);
        r.push(a / b);
        d.push(a - b);
        k.push(ka / kb);
    }
    Cost {
        ns: median(p),
        noop_ns: median(n),
        ratio: median(r),
        added_ns: median(d),
        kernel_ratio: median(k),
    }
}

fn time_once(prog: &Xdp, pkt: &[u8]) -> f64 {
    test_run(prog, pkt, 1).duration.as_nanos() as f64
}

/// One referral case of the kernel bench.
struct ReferralCase<'a> {
    name: String,
    /// The query that pairs each response (UDP), or None (TCP: the connection's SYN, sent
    /// once before the runs).
    query: Option<&'a [u8]>,
    /// The response frame, and the DNS message's size.
    resp: Vec<u8>,
    msg_len: usize,
}

fn glue_addrs() -> Vec<std::net::IpAddr> {
    (1..=13)
        .flat_map(|i| {
            [
                format!("198.19.0.{i}").parse().unwrap(),
                format!("2001:db8:19::{i}").parse().unwrap(),
            ]
        })
        .collect()
}

fn filter(allow: u32, fill: u32) -> Filter {
    let mut f = Filter::load(Sizes {
        allow_entries: allow.max(1024),
    })
    .expect("loading the XDP program");
    f.set_mode(mode::ENFORCE).unwrap();
    f.set_event_rate(10, 20).unwrap();
    f.add_internal("192.0.2.0/24".parse().unwrap()).unwrap();
    f.add_exempt("203.0.113.53/32".parse().unwrap()).unwrap();
    let hour = clock::mono_ns() + 3_600_000_000_000;
    // `fill` learned addresses in 198.18.0.0/15, plus the ones the packets use.
    for i in 0..fill {
        let a = std::net::Ipv4Addr::from(
            u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + i % (1 << 17),
        );
        let addr = if i < (1 << 17) {
            std::net::IpAddr::V4(a)
        } else {
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(i),
            ))
        };
        f.allow(addr, hour, kind::GLUE).unwrap();
    }
    f.allow("198.51.100.53".parse().unwrap(), hour, kind::GLUE)
        .unwrap();
    f.allow("2001:db8:ff::53".parse().unwrap(), hour, kind::GLUE)
        .unwrap();
    for a in scale_sample() {
        f.allow(a, hour, kind::GLUE).unwrap();
    }
    f
}

/// Registered destinations the allow-map scale is measured over, in every filter: the cost
/// of a hash lookup depends on the length of the key's bucket chain, which a randomly seeded
/// hash makes differ from key to key and from load to load, so one key measures luck.
const SCALE_KEYS: u32 = 64;

fn scale_sample() -> Vec<std::net::IpAddr> {
    (0..SCALE_KEYS)
        .flat_map(|i| {
            [
                std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 200, i as u8 + 1)),
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                    0x2001_0db8_00fe_0000_0000_0000_0000_0000u128 + u128::from(i + 1),
                )),
            ]
        })
        .collect()
}

/// Allow-map scale: the small and the big filter in `PAIRS` alternating rounds, each round
/// the mean ns per query over `pkts` (registered destinations, `repeat` runs in all, split
/// evenly). Returns the median ns of each and the median of the per-round ratios big/small.
fn scale_pair(small: &Xdp, big: &Xdp, pkts: &[Vec<u8>], repeat: u32) -> [f64; 3] {
    let each = (repeat / pkts.len() as u32).max(1000);
    alternate(PAIRS, small, big, |prog| {
        pkts.iter().map(|p| per_run_ns(prog, p, each)).sum::<f64>() / pkts.len() as f64
    })
}

/// The kernel memory of each filter's maps (`Filter::map_memory`): every map, the total, and
/// the allow maps' bytes per entry of capacity.
fn map_memory(filters: &[(&str, &Filter)]) -> serde_json::Value {
    let mut out = Vec::new();
    for (label, f) in filters {
        let maps = f.map_memory().expect("map memory");
        // Counting a map's entries walks all its keys: once.
        let (v4, v6) = f.allow_len();
        let total: u64 = maps.iter().map(|m| m.bytes).sum();
        let map = |name: &str| maps.iter().find(|m| m.name == name);
        let per_entry =
            |name: &str| map(name).map(|m| m.bytes as f64 / f64::from(m.max_entries.max(1)));
        let bytes_of = |name: &str| map(name).map(|m| m.bytes);
        out.push(json!({
            "filter": label,
            "allow_entries_filled": v4 + v6,
            "allow_v4_entries_filled": v4,
            "total_bytes": total,
            "allow_v4_bytes": bytes_of("ALLOW_V4"),
            "allow_v6_bytes": bytes_of("ALLOW_V6"),
            "allow_v4_bytes_per_entry": per_entry("ALLOW_V4"),
            "allow_v6_bytes_per_entry": per_entry("ALLOW_V6"),
            "maps": maps,
        }));
    }
    json!({
        "tool": "memlock in /proc/self/fdinfo of each map the XDP program uses (the kernel's own count of the map's memory); allow maps sized as the daemon's default --allow-entries",
        "filters": out,
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let repeat: u32 = if quick { 100_000 } else { 1_000_000 };
    let q = |dst: &str| {
        frame(
            &[],
            &L3::v4("192.0.2.10", dst),
            &udp(40000, 53, &dns_query(1, "www.example.test", 1)),
        )
    };
    let classes: Vec<(&str, Vec<u8>, f64)> = vec![
        (
            "non-DNS UDP (port 443)",
            frame(
                &[],
                &L3::v4("192.0.2.10", "198.51.100.99"),
                &udp(40000, 443, &[0u8; 64]),
            ),
            1.2,
        ),
        (
            "non-IP (ARP)",
            {
                let mut a = vec![0xffu8; 12];
                a.extend_from_slice(&ETH_P_ARP.to_be_bytes());
                a.extend_from_slice(&[0; 28]);
                a
            },
            1.2,
        ),
        ("DNS query, registered (IPv4)", q("198.51.100.53"), 2.0),
        (
            "DNS query, registered (IPv6)",
            frame(
                &[],
                &L3::v6("2001:db8:1::10", "2001:db8:ff::53"),
                &udp(40000, 53, &dns_query(1, "www.example.test", 28)),
            ),
            2.0,
        ),
        (
            "DNS query, unknown, dropped (rate-limited event)",
            q("198.51.100.99"),
            2.0,
        ),
        ("DNS query, exempt", q("203.0.113.53"), 2.0),
        ("DNS query, internal", q("192.0.2.53"), 2.0),
        (
            "TCP SYN to port 53, registered",
            frame(
                &[],
                &L3::v4("192.0.2.10", "198.51.100.53"),
                &tcp(40001, 53, TCP_SYN, &[]),
            ),
            2.0,
        ),
        (
            "DNS response",
            frame(
                &[],
                &L3::v4("198.51.100.53", "192.0.2.10"),
                &udp(53, 40000, &dns_response(1, "www.example.test", 1)),
            ),
            2.0,
        ),
    ];
    let f = filter(1024, 1000);
    let noop = f.noop_program();
    let prog = f.program();
    let mut noop_all = Vec::new();
    let mut rows = Vec::new();
    for (name, pkt, goal) in &classes {
        let c = cost(prog, noop, pkt, repeat);
        noop_all.push(c.noop_ns);
        rows.push((name.to_string(), c, *goal));
    }
    let noop_ns = median(noop_all);

    // The floor: one ALLOW_V4 lookup of the destination and nothing else (nsdb_floor). It must
    // really look up: pass the registered server, drop the unknown one.
    let floor = f.floor_program();
    let (reg4, unk4) = (q("198.51.100.53"), q("198.51.100.99"));
    assert_eq!(
        test_run(floor, &reg4, 1).return_value,
        2,
        "floor: registered passes"
    );
    assert_eq!(
        test_run(floor, &unk4, 1).return_value,
        1,
        "floor: unknown dropped"
    );
    let fl = cost(floor, noop, &reg4, repeat);
    let nsdb_reg = cost(prog, floor, &reg4, repeat);
    let floor_json = json!({
        "what": "nsdb_floor: untagged IPv4/UDP to port 53, one ALLOW_V4 (LRU hash) lookup of the destination, nothing else",
        "ns": fl.ns, "noop_ns": fl.noop_ns, "ratio_to_noop": fl.ratio,
        "nsdb_registered_ns": nsdb_reg.ns, "nsdb_registered_over_floor": nsdb_reg.ratio,
    });
    let classes_json: Vec<_> = rows
        .iter()
        .map(|(name, c, goal)| json!({"name": name, "ns": c.ns, "noop_ns": c.noop_ns, "ratio": c.ratio, "added_ns": c.added_ns, "kernel_whole_ns_ratio": c.kernel_ratio, "goal": goal, "met": c.ratio <= *goal}))
        .collect();

    // Paired referrals: each needs its own outstanding query, so they are measured one run at
    // a time (repeat = 1, median of many), next to the no-op measured the same way, in both
    // encodings (`referral_13_encodings`).
    let iters: usize = if quick { 300 } else { 3000 };
    let query = frame(
        &[],
        &L3::v4("192.0.2.10", "198.51.100.53"),
        &udp(40000, 53, &dns_query(0x4242, "www.example.test", 1)),
    );
    let mut f = f;
    let mut cases = Vec::new();
    let mut runs: Vec<ReferralCase> = Vec::new();
    for (name, referral) in referral_13_encodings(0x4242, "198.19.0.", "2001:db8:19::") {
        let resp = frame(
            &[],
            &L3::v4("198.51.100.53", "192.0.2.10"),
            &udp(53, 40000, &referral),
        );
        runs.push(ReferralCase {
            name: name.to_string(),
            query: Some(&query),
            resp,
            msg_len: referral.len(),
        });
    }
    {
        // The compressed referral over TCP: alone in one segment behind its length, as a name
        // server writes it, on a connection to a registered server (DESIGN change 12).
        let referral = referral_13_compressed(0x4242, "198.19.0.", "2001:db8:19::");
        let mut payload = (referral.len() as u16).to_be_bytes().to_vec();
        payload.extend_from_slice(&referral);
        let syn = frame(
            &[],
            &L3::v4("192.0.2.10", "198.51.100.53"),
            &tcp(40053, 53, TCP_SYN, &[]),
        );
        assert_eq!(test_run(f.program(), &syn, 1).return_value, 2, "SYN passed");
        let resp = frame(
            &[],
            &L3::v4("198.51.100.53", "192.0.2.10"),
            &tcp(53, 40053, TCP_ACK | TCP_PSH, &payload),
        );
        runs.push(ReferralCase {
            name: "compressed, in one TCP segment".to_string(),
            query: None,
            resp,
            msg_len: referral.len(),
        });
    }
    // Each paired response writes a 2 KiB record to the RESPONSES ring (16 MiB): drained after
    // every case, so that no case runs against a full ring (a lost record skips the copy).
    let mut ring = f.take_responses().expect("the RESPONSES ring");
    for ReferralCase {
        name,
        query,
        resp,
        msg_len,
    } in runs
    {
        while ring.next().is_some() {}
        let learned_before = f
            .counters()
            .unwrap()
            .get(nsdb_common::counter::GLUE_LEARNED);
        let mut noop1 = Vec::new();
        let mut first = Vec::new();
        let mut known = Vec::new();
        for i in 0..iters {
            let learn_first = i % 2 == 0;
            if learn_first {
                for a in glue_addrs() {
                    f.disallow(a);
                }
            }
            if let Some(q) = query {
                time_once(f.program(), q);
            }
            let d = time_once(f.program(), &resp);
            if learn_first {
                first.push(d)
            } else {
                known.push(d)
            }
            noop1.push(time_once(f.noop_program(), &resp));
        }
        let learned = f
            .counters()
            .unwrap()
            .get(nsdb_common::counter::GLUE_LEARNED)
            - learned_before;
        // Every first-learn run must really learn the 26 addresses (a known-glue run learns
        // more only if the LRU map evicted one meanwhile), and they end up allowed.
        assert!(
            learned >= 26 * iters.div_ceil(2) as u64,
            "{name}: {learned} glue learned"
        );
        for a in glue_addrs() {
            assert!(f.allowed(a).is_some(), "{name}: {a} allowed");
        }
        let (noop1, first, known) = (median(noop1), median(first), median(known));
        cases.push(json!({
            "name": name,
            "response_bytes": msg_len,
            "noop_ns": noop1,
            "first_learn_ns": first, "first_learn_ratio": first / noop1,
            "known_glue_ns": known, "known_glue_ratio": known / noop1,
            "glue_learned": learned,
            "glue_per_response": 26,
        }));
    }
    assert_eq!(
        f.counters().unwrap().get(nsdb_common::counter::RESP_LOST),
        0,
        "every paired response's record reached the ring"
    );
    let referral_json = json!({
        "tool": "BPF_PROG_TEST_RUN repeat = 1, median of the runs (a paired response needs its own query); the query before each response (UDP; over TCP the connection's SYN once before all runs) and the no-op after it",
        "runs": iters,
        "goal": 6.0,
        "cases": cases,
    });

    // Allow-map scale: the registered-query check with 1,000 vs 1,000,000 learned addresses,
    // and the kernel memory of the maps at the daemon's default size (1,048,576 entries per
    // family), empty and with a million entries.
    let mut scale = serde_json::Value::Null;
    let memory;
    if quick {
        memory = map_memory(&[("empty", &filter(1 << 20, 0))]);
    } else {
        let small = filter(1 << 20, 1000);
        let big = filter(1 << 20, 1_000_000);
        memory = map_memory(&[("1,000 entries", &small), ("1,000,000 entries", &big)]);
        let (v4, _) = big.allow_len();
        let sample = scale_sample();
        let pkts = |v6: bool| -> Vec<Vec<u8>> {
            sample
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .map(|a| {
                    let l3 = match a {
                        std::net::IpAddr::V4(_) => L3::v4("192.0.2.10", &a.to_string()),
                        std::net::IpAddr::V6(_) => L3::v6("2001:db8:1::10", &a.to_string()),
                    };
                    frame(
                        &[],
                        &l3,
                        &udp(40000, 53, &dns_query(1, "www.example.test", 1)),
                    )
                })
                .collect()
        };
        let (p4, p6) = (pkts(false), pkts(true));
        for p in p4.iter().chain(&p6) {
            for prog in [small.program(), big.program()] {
                assert_eq!(test_run(prog, p, 1).return_value, 2, "registered: passed");
            }
        }
        let before = big.counters().unwrap();
        let [s4, b4, r4] = scale_pair(small.program(), big.program(), &p4, repeat);
        let [s6, b6, r6] = scale_pair(small.program(), big.program(), &p6, repeat);
        let after = big.counters().unwrap();
        for fam in [nsdb_common::family::V4, nsdb_common::family::V6] {
            let unknown = nsdb_common::counter::query_index(
                nsdb_common::verdict::UNKNOWN,
                nsdb_common::action::DROP,
                fam,
                nsdb_common::transport::UDP,
            );
            assert_eq!(
                after.get(unknown),
                before.get(unknown),
                "no sample query was unknown"
            );
        }
        scale = json!({
            "entries_small": 1000, "entries_big": 1_000_000, "v4_entries_in_big": v4,
            "keys": SCALE_KEYS,
            "v4_ns_small": s4, "v4_ns_big": b4, "v4_ratio": r4,
            "v6_ns_small": s6, "v6_ns_big": b6, "v6_ratio": r6, "goal": 1.3,
        });
    }
    let out = json!({
        "cpu": cpu_model(),
        "tool": "BPF_PROG_TEST_RUN (aya test_run); 15 alternating pairs of runs (nsdb, no-op) per class; mean ns per run from the thread CPU time across each call (CLOCK_THREAD_CPUTIME_ID, fractions of a ns; the kernel's own figure is whole ns); median ns and median of the per-pair ratios",
        "repeat": repeat,
        "noop_ns": noop_ns,
        "classes": classes_json,
        "allow_map_scale": scale,
        "map_memory": memory,
        "referral_13_glue": referral_json,
        "floor": floor_json,
    });
    println!("{out}");
}
