//! Gateway forwarding and daemon footprint: packets per second forwarded through a gateway
//! namespace (veth in, veth out) with no filter, with a no-op XDP program, with the real
//! `nsdb run` in enforce mode (XDP), with a no-op TC classifier, with `nsdb run --attach tc`
//! in enforce mode, and with the nftables rule an admin would write today (a set of
//! the same allowed addresses, dropping port-53 traffic to anything else); then the RSS and CPU
//! of `nsdb run` idle and under about 100,000 DNS packets/s. Prints one JSON object on stdout.
//!
//! ```text
//!  lan  eth0 192.0.2.2/24    trafgen (one core): the generator
//!   │
//!  gw   lan0 192.0.2.1/24      (filter under test: XDP on lan0's ingress / nftables forward)
//!       wan0 203.0.113.1/24    route 198.18.0.0/15 via the sink
//!   │
//!  sink eth0 203.0.113.2/24    nftables netdev ingress: count and drop
//! ```
//!
//! Both nsdb and nftables hold the same 100,000 allowed name servers (198.18.0.0 …
//! 198.19.134.159): nsdb restores them from a history database (`--db`), as after a restart.
//!
//! Usage: nsdb-forward-bench [--quick]

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nsdb::{
    learn::{Learned, Source},
    loader::{Filter, Sizes},
    store::Store,
};
use nsdb_tests::{
    TempDir, cpu_model,
    netns::{Netns, veth},
    packet::{a_answer, dns_query},
    servers::Daemon,
    traffic::{
        LinkStats, Trafgen, hex, link_stats, mac, proc_usage, random_id, ticks_per_second,
        udp4_frame,
    },
};
use serde_json::{Value, json};

/// Allowed (learned) name servers: 198.18.0.0 + i for i < ALLOWED.
const ALLOWED: u32 = 100_000;

struct Net {
    lan: Netns,
    gw: Netns,
    sink: Netns,
    gw_lan_mac: String,
    gw_wan_mac: String,
    tmp: TempDir,
}

fn setup() -> Net {
    let tmp = TempDir::new("fwd");
    let lan = Netns::new("fwl");
    let gw = Netns::new("fww");
    let sink = Netns::new("fws");
    veth(
        &lan,
        "eth0",
        &["192.0.2.2/24"],
        &gw,
        "lan0",
        &["192.0.2.1/24"],
    );
    veth(
        &gw,
        "wan0",
        &["203.0.113.1/24"],
        &sink,
        "eth0",
        &["203.0.113.2/24"],
    );
    gw.forwarding();
    gw.ip(&["route", "add", "198.18.0.0/15", "via", "203.0.113.2"]);
    // Static neighbours: no ARP in the measured path.
    let sink_mac = mac(&sink, "eth0");
    let lan_mac = mac(&lan, "eth0");
    gw.ip(&[
        "neigh",
        "replace",
        "203.0.113.2",
        "lladdr",
        &sink_mac,
        "dev",
        "wan0",
        "nud",
        "permanent",
    ]);
    gw.ip(&[
        "neigh",
        "replace",
        "192.0.2.10",
        "lladdr",
        &lan_mac,
        "dev",
        "lan0",
        "nud",
        "permanent",
    ]);
    // The sink (and the generator, for the responses of the footprint run) count and drop
    // what arrives at the earliest hook, so that their own stacks cost as little as possible.
    for ns in [&sink, &lan] {
        let rules = "table netdev sink {\n chain in {\n  type filter hook ingress device eth0 priority 0;\n  counter drop\n }\n}\n";
        let f = tmp.path().join(nsdb_tests::unique("sink") + ".nft");
        std::fs::write(&f, rules).unwrap();
        ns.run(&["nft", "-f", f.to_str().unwrap()]);
    }
    Net {
        gw_lan_mac: mac(&gw, "lan0"),
        gw_wan_mac: mac(&gw, "wan0"),
        lan,
        gw,
        sink,
        tmp,
    }
}

fn allowed_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

/// A history database holding `ALLOWED` learned name servers, unexpired for a day.
fn history_db(path: &Path) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let learned: Vec<Learned> = (0..ALLOWED)
        .map(|i| Learned {
            zone: format!("z{i}.bench.test"),
            ns_name: format!("ns.z{i}.bench.test"),
            addr: IpAddr::V4(allowed_addr(i)),
            expires_ms: now + 86_400_000,
            ttl: 86_400,
            learned_ms: now,
            source: Source::Glue,
            first_seen_ms: now,
        })
        .collect();
    let mut store = Store::open(path).expect("creating the bench history database");
    store
        .write(&[], &[], &learned)
        .expect("writing the bench history database");
}

/// The nftables alternative: the same allowed addresses in a set, port-53 traffic to any other
/// address dropped in the forward chain.
fn nft_rules(path: &Path) {
    let mut s = String::from(
        "table inet nsdbbench {\n set allowed {\n  type ipv4_addr\n  size 262144\n  elements = { ",
    );
    for i in 0..ALLOWED {
        if i > 0 {
            s += ", ";
        }
        s += &allowed_addr(i).to_string();
    }
    s += " }\n }\n chain forward {\n  type filter hook forward priority filter; policy accept;\n  \
          udp dport 53 ip daddr != @allowed counter drop\n  tcp dport 53 ip daddr != @allowed counter drop\n }\n}\n";
    std::fs::write(path, s).unwrap();
}

/// Traffic patterns: 76-byte frames (62-byte IPv4 packets), random client ports and DNS ids.
struct Patterns {
    dns_mix: String,
    non_dns: String,
    unknown: String,
}

fn patterns(gw_mac: &str) -> Patterns {
    let q = random_id(&dns_query(0, "www.example.test", 1));
    // Registered: a random address of 198.18.0.0/16 (all allowed); from random LAN clients.
    let registered = udp4_frame(
        gw_mac,
        "sa=192.0.2.10, sa[3]=drnd(10, 250), da=198.18.0.1, da[2]=drnd(), da[3]=drnd()",
        "sp=40000, sp[1]=drnd(), dp=53",
        &q,
    );
    // Unknown: 198.19.200.0 – 198.19.255.255 (never allowed).
    let unknown = udp4_frame(
        gw_mac,
        "sa=192.0.2.10, sa[3]=drnd(10, 250), da=198.19.200.1, da[2]=dinc(200, 255), da[3]=drnd()",
        "sp=40000, sp[1]=drnd(), dp=53",
        &q,
    );
    let non_dns = udp4_frame(
        gw_mac,
        "sa=192.0.2.10, sa[3]=drnd(10, 250), da=198.18.0.1, da[2]=drnd(), da[3]=drnd()",
        "sp=40000, sp[1]=drnd(), dp=443",
        &q,
    );
    Patterns {
        // 9 registered : 1 unknown.
        dns_mix: registered.repeat(9) + &unknown,
        non_dns,
        unknown,
    }
}

/// One timed run of a pattern.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    secs: f64,
    /// Times the generator's veth refused a frame because the gateway's side was full
    /// (trafgen then sent it again).
    pushed_back: u64,
    /// Frames that reached the gateway's lan0, and frames that reached the sink.
    gw_in: u64,
    forwarded: u64,
}

fn measure(net: &Net, cfg: &str, d: Duration) -> Sample {
    let g0 = link_stats(&net.lan, "eth0");
    let s0 = link_stats(&net.sink, "eth0");
    let t0 = Instant::now();
    let sent = Trafgen::run_for(&net.lan, "eth0", net.tmp.path(), cfg, None, d);
    let secs = t0.elapsed().as_secs_f64();
    // Let the last frames drain through the gateway.
    std::thread::sleep(Duration::from_millis(200));
    let g: LinkStats = link_stats(&net.lan, "eth0").since(&g0);
    let s = link_stats(&net.sink, "eth0").since(&s0);
    Sample {
        secs,
        pushed_back: g.tx_dropped,
        gw_in: sent,
        forwarded: s.rx_packets,
    }
}

/// Holds a no-op program on an interface: this same binary, re-run inside the gateway
/// namespace with `--hold-noop <iface>` (XDP) or `--hold-noop-tc <iface>` (TC ingress, tcx),
/// attaches it and keeps it until stdin closes.
struct NoopXdp(Child);

impl NoopXdp {
    fn attach(net: &Net, flag: &str) -> Self {
        let me = std::env::current_exe().unwrap();
        let mut c = net
            .gw
            .cmd(&[me.to_str().unwrap(), flag, "lan0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("re-running the bench to hold the no-op program");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(c.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "attached", "no-op {flag} attach failed");
        Self(c)
    }
}

impl Drop for NoopXdp {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn hold_noop(iface: &str, tc: bool) {
    let mut f = Filter::load(Sizes::default()).expect("loading the programs");
    if tc {
        f.attach_noop_tc(iface)
    } else {
        f.attach_noop(iface)
    }
    .expect("attaching the no-op program");
    println!("attached");
    let mut buf = Vec::new();
    use std::io::Read;
    let _ = std::io::stdin().read_to_end(&mut buf);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn nsdb_args<'a>(
    net: &'a Net,
    db: &'a str,
    alerts: &'a str,
    wan_too: bool,
    tc: bool,
) -> Vec<&'a str> {
    let _ = net;
    let mut v = vec!["--iface", "lan0"];
    if wan_too {
        v.extend(["--iface", "wan0"]);
    }
    v.extend([
        "--mode",
        "enforce",
        "--internal",
        "192.0.2.0/24",
        "--db",
        db,
        "--alerts",
        alerts,
    ]);
    if tc {
        v.extend(["--attach", "tc"]);
    }
    v
}

fn sum_prefix(c: &Value, prefix: &str) -> u64 {
    c.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

const CONFIGS: [&str; 6] = [
    "none",
    "noop_xdp",
    "nsdb_enforce",
    "noop_tc",
    "nsdb_tc_enforce",
    "nftables",
];
const PATTERNS: [&str; 3] = ["dns_mix", "non_dns", "unknown_only"];

/// Puts configuration `cname` in place on the gateway: the nsdb daemon (XDP or TC), a no-op
/// program held by a child, or the nftables table (removed by the caller).
fn start_config(
    net: &Net,
    cname: &str,
    db: &str,
    alerts: &Path,
    nft: &Path,
) -> (Option<Daemon>, Option<NoopXdp>) {
    let tc = cname == "nsdb_tc_enforce";
    let daemon = (cname == "nsdb_enforce" || tc).then(|| {
        Daemon::start(
            &net.gw,
            &nsdb_args(net, db, alerts.to_str().unwrap(), false, tc),
        )
    });
    let noop = match cname {
        "noop_xdp" => Some(NoopXdp::attach(net, "--hold-noop")),
        "noop_tc" => Some(NoopXdp::attach(net, "--hold-noop-tc")),
        _ => None,
    };
    if cname == "nftables" {
        net.gw.run(&["nft", "-f", nft.to_str().unwrap()]);
    }
    (daemon, noop)
}

/// The filters whose own CPU time the profiled pass measures, and the kernel symbol each
/// one's work runs under (inclusive of what it calls: map lookups, helpers, set lookups).
/// (The no-op programs are left out: perf finds next to no samples in them, and the bench's
/// time is budgeted.)
const PROFILED: [(&str, &str); 3] = [
    ("nsdb_enforce", "_nsdb"),
    ("nsdb_tc_enforce", "_nsdb_tc"),
    ("nftables", "nft_do_chain"),
];

/// Inclusive share (%) of the samples under `symbol` in a `perf report --children` listing:
/// a BPF program is named `bpf_prog_<tag>_<name>`, matched by the suffix `_<name>`; a kernel
/// function by its exact name.
fn inclusive_share(report: &str, symbol: &str) -> Option<f64> {
    report.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let children = w.next()?.strip_suffix('%')?.parse::<f64>().ok()?;
        let _self = w.next()?.strip_suffix('%')?;
        let _kind = w.next()?;
        let sym = w.next()?;
        let hit = if symbol.starts_with('_') {
            sym.starts_with("bpf_prog_") && sym.ends_with(symbol)
        } else {
            sym == symbol
        };
        hit.then_some(children)
    })
}

/// The filters' own CPU time per packet, robust to the machine's speed: each filter in turn
/// forwards the DNS mix and the non-DNS pattern for `d` under `perf record -a` (cpu-clock on
/// every CPU: each sample is 1/F s of a busy CPU's time), and the samples inside the filter
/// (its BPF program, or nftables' rule evaluation, with everything they call) are turned into
/// ns per packet taken in. `None` if perf is not installed.
fn profiled(net: &Net, db: &str, pats: &Patterns, nft: &Path, d: Duration) -> Option<Value> {
    const FREQ: u32 = 4999;
    let perf_ok = std::process::Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !perf_ok {
        return None;
    }
    let alerts = net.tmp.path().join("prof-alerts.json");
    let data = net.tmp.path().join("perf.data");
    let mut rows = Vec::new();
    for (cname, symbol) in PROFILED {
        let (daemon, noop) = start_config(net, cname, db, &alerts, nft);
        for (pname, cfg) in [("dns_mix", &pats.dns_mix), ("non_dns", &pats.non_dns)] {
            let mut rec = std::process::Command::new("perf")
                .args([
                    "record",
                    "-a",
                    "-g",
                    "-e",
                    "cpu-clock",
                    "-F",
                    &FREQ.to_string(),
                    "-o",
                ])
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("perf record");
            std::thread::sleep(Duration::from_millis(300));
            let s = measure(net, cfg, d);
            // perf stops and writes its file on SIGINT.
            // SAFETY: kill(2) on the pid of a child this process spawned and has not reaped.
            unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
            let _ = rec.wait();
            let out = std::process::Command::new("perf")
                .args([
                    "report",
                    "--children",
                    "--sort",
                    "sym",
                    "--stdio",
                    "-g",
                    "none",
                    "-i",
                ])
                .arg(&data)
                .output()
                .expect("perf report");
            let report = String::from_utf8_lossy(&out.stdout);
            // The exact count (the listing's header rounds it to thousands).
            let stats = std::process::Command::new("perf")
                .args(["report", "--stats", "-i"])
                .arg(&data)
                .output()
                .expect("perf report --stats");
            let samples: f64 = String::from_utf8_lossy(&stats.stdout)
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("SAMPLE events:")?
                        .split_whitespace()
                        .next()?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0);
            if let Ok(dir) = std::env::var("NSDB_BENCH_KEEP_PERF") {
                let _ = std::fs::copy(
                    &data,
                    Path::new(&dir).join(format!("perf-{cname}-{pname}.data")),
                );
            }
            let share = inclusive_share(&report, symbol);
            // CPU time sampled (busy CPUs only: an idle CPU takes no cpu-clock samples).
            let recorded_s = samples / f64::from(FREQ);
            let ns = share.map(|pct| pct / 100.0 * recorded_s * 1e9 / s.gw_in.max(1) as f64);
            rows.push(json!({
                "config": cname, "pattern": pname, "symbol": symbol,
                "share_percent": share, "samples": samples, "recorded_s": recorded_s,
                "packets": s.gw_in, "pps": s.gw_in as f64 / s.secs,
                "filter_ns_per_packet": ns,
            }));
        }
        if let Some(d) = daemon {
            // SIGTERM: the daemon detaches its programs and exits.
            let _ = d.stop_report();
        }
        drop(noop);
        if cname == "nftables" {
            net.gw.run(&["nft", "delete", "table", "inet", "nsdbbench"]);
        }
    }
    let _ = std::fs::remove_file(&data);
    let _ = std::fs::remove_file(&alerts);
    Some(json!({
        "tool": format!("perf record -a -g -e cpu-clock -F {FREQ} around one {:.0}-s run of each filter and pattern; perf report --children: the share of all samples inside the filter's symbol and what it calls (BPF program bpf_prog_<tag>_<name>, or nft_do_chain), times the recorded CPU time, over the packets the gateway took in", d.as_secs_f64()),
        "rows": rows,
    }))
}

fn forwarding(net: &Net, db: &str, pats: &Patterns, nft: &Path, quick: bool) -> Value {
    // Short runs, many rounds: the machine is shared, and the median of interleaved rounds
    // is what noise disturbs least.
    let rounds = if quick { 1 } else { 5 };
    let d = Duration::from_secs(if quick { 1 } else { 2 });
    let alerts = net.tmp.path().join("fwd-alerts.json");
    // samples[config][pattern]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); PATTERNS.len()]; CONFIGS.len()];
    let mut nsdb_unknown_dropped = 0u64;
    let mut nsdb_unknown_sent = 0u64;
    let mut nsdb_tc_unknown_dropped = 0u64;
    let mut nsdb_tc_unknown_sent = 0u64;
    let mut nft_dropped = 0u64;
    let mut nft_unknown_sent = 0u64;
    let mut nft_load_s = 0.0;
    let mut nsdb_start_s = 0.0;
    for round in 0..rounds {
        // Each round starts one configuration later, so that none is always measured first
        // or last (the machine's speed drifts over a round of about 40 s).
        for k in 0..CONFIGS.len() {
            let ci = (k + round) % CONFIGS.len();
            let cname = &CONFIGS[ci];
            let t0 = Instant::now();
            let tc = *cname == "nsdb_tc_enforce";
            let (daemon, noop) = start_config(net, cname, db, &alerts, nft);
            if *cname == "nftables" {
                nft_load_s = t0.elapsed().as_secs_f64();
            }
            if daemon.is_some() {
                nsdb_start_s = t0.elapsed().as_secs_f64();
            }
            let mut unknown_here = 0;
            for (pi, cfg) in [&pats.dns_mix, &pats.non_dns, &pats.unknown]
                .iter()
                .enumerate()
            {
                let s = measure(net, cfg, d);
                // The unknown share: every 10th frame of the mix, all of the unknown pattern.
                unknown_here += match pi {
                    0 => s.gw_in / 10,
                    2 => s.gw_in,
                    _ => 0,
                };
                samples[ci][pi].push(s);
            }
            if let Some(d) = daemon {
                let rep = d.stop_report();
                let dropped = sum_prefix(&rep["final_counters"], "query_unknown_drop_");
                if tc {
                    nsdb_tc_unknown_dropped += dropped;
                    nsdb_tc_unknown_sent += unknown_here;
                } else {
                    nsdb_unknown_dropped += dropped;
                    nsdb_unknown_sent += unknown_here;
                }
            }
            drop(noop);
            if *cname == "nftables" {
                let out = net
                    .gw
                    .run(&["nft", "-j", "list", "table", "inet", "nsdbbench"]);
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                for item in v["nftables"].as_array().into_iter().flatten() {
                    for e in item["rule"]["expr"].as_array().into_iter().flatten() {
                        nft_dropped += e["counter"]["packets"].as_u64().unwrap_or(0);
                    }
                }
                nft_unknown_sent += unknown_here;
                net.gw.run(&["nft", "delete", "table", "inet", "nsdbbench"]);
            }
        }
    }
    let _ = std::fs::remove_file(&alerts);
    let mut rows = Vec::new();
    let mut med_in = vec![vec![0.0; PATTERNS.len()]; CONFIGS.len()];
    for (ci, cname) in CONFIGS.iter().enumerate() {
        for (pi, pname) in PATTERNS.iter().enumerate() {
            let ss = &samples[ci][pi];
            let in_pps = median(ss.iter().map(|s| s.gw_in as f64 / s.secs).collect());
            let fwd_pps = median(ss.iter().map(|s| s.forwarded as f64 / s.secs).collect());
            let pushed_back: u64 = ss.iter().map(|s| s.pushed_back).sum();
            let gw_in: u64 = ss.iter().map(|s| s.gw_in).sum();
            let fwd: u64 = ss.iter().map(|s| s.forwarded).sum();
            med_in[ci][pi] = in_pps;
            rows.push(json!({
                "config": cname, "pattern": pname,
                "gw_in_pps": in_pps, "forwarded_pps": fwd_pps,
                "runs_gw_in_pps": ss.iter().map(|s| s.gw_in as f64 / s.secs).collect::<Vec<_>>(),
                "veth_pushed_back": pushed_back, "gw_in": gw_in, "forwarded": fwd,
                "forwarded_share": if gw_in > 0 { fwd as f64 / gw_in as f64 } else { 0.0 },
            }));
        }
    }
    let (none, noop, nsdb, noop_tc, nsdb_tc, nft) = (0, 1, 2, 3, 4, 5);
    // The median of the per-round ratios: both sides of a ratio measured in the same round.
    let ratio = |a: usize, b: usize, p: usize| {
        let per_round: Vec<f64> = samples[a][p]
            .iter()
            .zip(&samples[b][p])
            .filter(|(_, y)| y.gw_in > 0)
            .map(|(x, y)| (x.gw_in as f64 / x.secs) / (y.gw_in as f64 / y.secs))
            .collect();
        median(per_round)
    };
    let added_ns = |a: usize, p: usize| {
        if med_in[a][p] > 0.0 && med_in[none][p] > 0.0 {
            1e9 / med_in[a][p] - 1e9 / med_in[none][p]
        } else {
            0.0
        }
    };
    let mut ratios = Vec::new();
    for (pi, pname) in PATTERNS.iter().enumerate() {
        ratios.push(json!({
            "pattern": pname,
            "nsdb_over_none": ratio(nsdb, none, pi),
            "nsdb_over_nftables": ratio(nsdb, nft, pi),
            "nsdb_over_noop_xdp": ratio(nsdb, noop, pi),
            "noop_xdp_over_none": ratio(noop, none, pi),
            "nsdb_tc_over_none": ratio(nsdb_tc, none, pi),
            "nsdb_tc_over_nftables": ratio(nsdb_tc, nft, pi),
            "nsdb_tc_over_noop_tc": ratio(nsdb_tc, noop_tc, pi),
            "noop_tc_over_none": ratio(noop_tc, none, pi),
            "nftables_over_none": ratio(nft, none, pi),
            "added_ns_per_packet": {
                "noop_xdp": added_ns(noop, pi), "nsdb_enforce": added_ns(nsdb, pi),
                "noop_tc": added_ns(noop_tc, pi), "nsdb_tc_enforce": added_ns(nsdb_tc, pi),
                "nftables": added_ns(nft, pi),
            },
        }));
    }
    json!({
        "tool": "trafgen (netsniff-ng, PF_PACKET sendto per frame with no gap, one process pinned to one core) in a generator namespace; the gateway forwards in softirq on the same core; the sink counts with an nftables netdev-ingress rule and drops",
        "frame_bytes": 76,
        "ip_packet_bytes": 62,
        "seconds_per_run": d.as_secs_f64(),
        "rounds": rounds,
        "allowed_addresses": ALLOWED,
        "patterns": {
            "dns_mix": "UDP DNS queries (A www.example.test), 9 to random allowed addresses : 1 to a random unknown address; random clients in 192.0.2.0/24, ports, ids",
            "non_dns": "UDP to port 443, same size and addresses",
            "unknown_only": "DNS queries to unknown addresses only (all dropped by nsdb and by nftables)",
        },
        "configs": {
            "none": "plain forwarding",
            "noop_xdp": "an XDP program returning XDP_PASS on lan0 (native): what any XDP program costs on a veth",
            "nsdb_enforce": "nsdb run --mode enforce --iface lan0 --db <100,000 learned name servers>",
            "noop_tc": "a TC classifier returning TC_ACT_UNSPEC at lan0's ingress (tcx link): what the TC hook costs",
            "nsdb_tc_enforce": "the same nsdb run with --attach tc (the filter as a classifier at lan0's tcx ingress)",
            "nftables": "inet table, forward chain: udp/tcp dport 53 ip daddr != @allowed drop; the set holds the same 100,000 addresses",
        },
        "rows": rows,
        "ratios": ratios,
        "unknown_drops": {
            "nsdb_counted_dropped": nsdb_unknown_dropped, "nsdb_unknown_sent": nsdb_unknown_sent,
            "nsdb_tc_counted_dropped": nsdb_tc_unknown_dropped, "nsdb_tc_unknown_sent": nsdb_tc_unknown_sent,
            "nftables_counted_dropped": nft_dropped, "nftables_unknown_sent": nft_unknown_sent,
        },
        "nsdb_start_s": nsdb_start_s,
        "nft_load_s": nft_load_s,
        "goals": {"nsdb_over_none": 0.95, "nsdb_over_nftables": 1.0, "nsdb_tc_over_none": 0.95, "nsdb_tc_over_nftables": 1.0},
    })
}

/// RSS and CPU of `nsdb run` idle and under about 100,000 DNS packets/s.
fn footprint(net: &Net, db: &str, quick: bool) -> Value {
    let idle = Duration::from_secs(if quick { 2 } else { 5 });
    let busy = Duration::from_secs(if quick { 3 } else { 10 });
    let alerts = net.tmp.path().join("fp-alerts.json");
    // For scale: the same daemon with an empty history.
    let empty_db = net.tmp.path().join("empty.db");
    let bare = Daemon::start(
        &net.gw,
        &nsdb_args(
            net,
            empty_db.to_str().unwrap(),
            alerts.to_str().unwrap(),
            true,
            false,
        ),
    );
    std::thread::sleep(Duration::from_secs(1));
    let bare_usage = proc_usage(bare.pid()).expect("nsdb runs");
    bare.stop_report();
    let _ = std::fs::remove_file(&alerts);
    let daemon = Daemon::start(
        &net.gw,
        &nsdb_args(net, db, alerts.to_str().unwrap(), true, false),
    );
    let pid = daemon.pid();
    let hz = ticks_per_second() as f64;
    let start = proc_usage(pid).expect("nsdb runs");
    std::thread::sleep(idle);
    let idle_end = proc_usage(pid).expect("nsdb runs");
    let idle_cpu = (idle_end.cpu_ticks - start.cpu_ticks) as f64 / hz / idle.as_secs_f64() * 100.0;
    let kernel_maps = nsdb::loader::map_memory_of_process(pid);

    // Outbound (LAN side): 3 queries from one client socket to one allowed server with the
    // DNS ids the responses below use, 4 to random allowed servers, 1 to an unknown server
    // from a random client (alerts, rate-limited per client). Inbound (WAN side): the
    // server's answers (A record) to the first kind, with the same ids: paired when the
    // query went out before, unsolicited otherwise.
    let q = dns_query(0x1200, "www.example.test", 1);
    let paired_q = udp4_frame(
        &net.gw_lan_mac,
        "sa=192.0.2.10, da=198.18.0.53",
        "sp=40000, dp=53",
        &format!("0x12, dinc(0, 255), {}", hex(&q[2..])),
    );
    let p = patterns(&net.gw_lan_mac);
    let registered = p.dns_mix.lines().next().unwrap().to_string() + "\n";
    let out_cfg = paired_q.repeat(3) + &registered.repeat(4) + &p.unknown;
    let answer = a_answer(0x1200, "www.example.test", 300, "198.18.200.1");
    let in_cfg = udp4_frame(
        &net.gw_wan_mac,
        "sa=198.18.0.53, da=192.0.2.10",
        "sp=53, dp=40000",
        &format!("0x12, dinc(0, 255), {}", hex(&answer[2..])),
    );
    let (out_pps, in_pps) = (80_000, 20_000);
    let before = proc_usage(pid).expect("nsdb runs");
    let g0 = link_stats(&net.lan, "eth0");
    let k0 = link_stats(&net.sink, "eth0");
    let t0 = Instant::now();
    let out = Trafgen::start(&net.lan, "eth0", net.tmp.path(), &out_cfg, Some(out_pps));
    let inb = Trafgen::start(&net.sink, "eth0", net.tmp.path(), &in_cfg, Some(in_pps));
    let mut peak_rss = before.rss_kib;
    while t0.elapsed() < busy {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(u) = proc_usage(pid) {
            peak_rss = peak_rss.max(u.rss_kib);
        }
    }
    let after = proc_usage(pid).expect("nsdb runs");
    let secs = t0.elapsed().as_secs_f64();
    let sent_out = out.stop();
    let sent_in = inb.stop();
    let g = link_stats(&net.lan, "eth0").since(&g0);
    let k = link_stats(&net.sink, "eth0").since(&k0);
    let busy_cpu = (after.cpu_ticks - before.cpu_ticks) as f64 / hz / secs * 100.0;
    let rep = daemon.stop_report();
    let c = &rep["final_counters"];
    let alerts_written = std::fs::read_to_string(&alerts)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    json!({
        "tool": "/proc/<pid>/status VmRSS, RssAnon, VmHWM and /proc/<pid>/stat utime+stime of `nsdb run --mode enforce --iface lan0 --iface wan0 --db <100,000 name servers>`",
        "idle_seconds": idle.as_secs_f64(),
        "idle_rss_kib": idle_end.rss_kib,
        "idle_rss_anon_kib": idle_end.anon_kib,
        "idle_rss_kib_empty_history": bare_usage.rss_kib,
        "idle_rss_anon_kib_empty_history": bare_usage.anon_kib,
        "idle_cpu_percent": idle_cpu,
        "kernel_map_bytes": kernel_maps,
        "busy_seconds": secs,
        "busy_target_pps": out_pps + in_pps,
        "busy_pps": (sent_out + sent_in) as f64 / secs,
        "busy_mix": "LAN side: 3/8 queries to one allowed server (ids matching the answers), 4/8 to random allowed servers, 1/8 to random unknown servers from random clients; WAN side: that server's answers (A record); trafgen --rate on each side",
        "sent_lan": sent_out, "sent_wan": sent_in,
        "veth_pushed_back": g.tx_dropped + k.tx_dropped,
        "busy_rss_kib": after.rss_kib,
        "busy_rss_anon_kib": after.anon_kib,
        "busy_peak_rss_kib": peak_rss.max(after.rss_kib),
        "hwm_kib": after.hwm_kib,
        "busy_cpu_percent": busy_cpu,
        "counters": {
            "registered": sum_prefix(c, "query_registered_"),
            "unknown_dropped": sum_prefix(c, "query_unknown_drop_"),
            "responses_paired": c["responses_paired"], "responses_unsolicited": c["responses_unsolicited"],
            "responses_sent_to_userspace": c["responses_sent"], "responses_lost": c["responses_lost"],
            "events_sent": c["events_sent"], "events_rate_limited": c["events_rate_limited"], "events_lost": c["events_lost"],
        },
        "alerts_written": alerts_written,
        "live": rep["live"],
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--hold-noop") {
        hold_noop(&args[i + 1], false);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--hold-noop-tc") {
        hold_noop(&args[i + 1], true);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let net = setup();
    let db = net.tmp.path().join("history.db");
    history_db(&db);
    let db = db.to_str().unwrap().to_string();
    // The trafgen patterns and the nftables rule file, for the timed rounds and the
    // profiled pass alike.
    let pats = patterns(&net.gw_lan_mac);
    let nft = net.tmp.path().join("nft-allowed.nft");
    nft_rules(&nft);
    let fwd = forwarding(&net, &db, &pats, &nft, quick);
    let prof = profiled(
        &net,
        &db,
        &pats,
        &nft,
        Duration::from_secs(if quick { 1 } else { 2 }),
    );
    let fp = footprint(&net, &db, quick);
    let out = json!({
        "cpu": cpu_model(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "forwarding": fwd,
        "filter_cpu": prof,
        "footprint": fp,
    });
    println!("{out}");
}
