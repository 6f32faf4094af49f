//! `/metrics`, `/api/status` and the status page of a running daemon, checked against the
//! traffic the test sends: namespaces `cli` (dig) — `gw` (nsdb, routing, the metrics server on
//! its loopback) — `srv` (NSD on a known and an unknown address, IPv4 and IPv6). The page is
//! loaded in headless Chromium run inside `gw`. The Grafana dashboard is checked against the
//! metrics nsdb exports.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nsdb_tests::{
    gateway::{CLIENT, GatewayNet, KNOWN, KNOWN6, UNKNOWN, UNKNOWN6, gateway_net},
    netns::Netns,
    servers::{Daemon, dig},
};

const ADDR: &str = "127.0.0.1:9853";

type Net = GatewayNet;

/// The gateway test's network (nsdb_tests::gateway), plus an allow file with two exception
/// prefixes nobody queries.
fn net(tag: &str) -> Net {
    let n = gateway_net(tag, "m");
    std::fs::write(
        n.tmp.path().join("allow.txt"),
        "# public resolvers\n203.0.113.0/24\n2001:db8:ff::/48\n",
    )
    .unwrap();
    n
}

const ALLOW_ENTRIES: u64 = 4096;

fn start(n: &Net, extra: &[&str]) -> Daemon {
    let allow = n.tmp.path().join("allow.txt");
    let alerts = n.tmp.path().join("alerts.json");
    let db = n.tmp.path().join("history.db");
    let entries = ALLOW_ENTRIES.to_string();
    let mut args = vec![
        "--allow",
        allow.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--allow-entries",
        &entries,
        "--metrics-addr",
        ADDR,
    ];
    args.extend_from_slice(extra);
    n.start_nsdb("monitor", &alerts, &args)
}

/// GET `path` from the daemon's server, inside the gateway namespace.
fn get(ns: &Netns, path: &str) -> String {
    let out = ns
        .cmd(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
            &format!("http://{ADDR}{path}"),
        ])
        .output()
        .expect("cannot run curl (apt-get install curl; cargo xtask setup does)");
    assert!(
        out.status.success(),
        "GET {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 body")
}

/// One sample of the exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed Prometheus text exposition (format 0.0.4): `# TYPE` per family, then samples.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut e = Exposition::default();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("# TYPE name type");
                let prev = e.types.insert(name.to_string(), ty.to_string());
                assert!(prev.is_none(), "family {name} declared twice");
                continue;
            }
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP "), "unexpected comment {line:?}");
                continue;
            }
            e.samples.push(parse_sample(line));
        }
        e
    }

    /// The family a sample belongs to (histograms add _bucket/_sum/_count).
    fn family_of(&self, sample: &str) -> Option<String> {
        if self.types.contains_key(sample) {
            return Some(sample.to_string());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && self.types.get(base).is_some_and(|t| t == "histogram")
            {
                return Some(base.to_string());
            }
        }
        None
    }

    /// The one sample named `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert_eq!(found.len(), 1, "one sample {name}{want:?}, found {found:?}");
        found[0].value
    }

    /// Sum over every sample of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

/// `name{k="v",...} value` with the text format's escapes in label values (\\, \", \n).
fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = line[..name_end].to_string();
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line:?}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        loop {
            // key
            let mut key = String::new();
            let mut closed = false;
            for (_, c) in chars.by_ref() {
                match c {
                    '=' => break,
                    '}' => {
                        closed = true;
                        break;
                    }
                    ',' if key.is_empty() => {}
                    c => key.push(c),
                }
            }
            if closed {
                let (i, _) = chars.peek().copied().unwrap_or((r.len(), ' '));
                rest = &r[i..];
                break;
            }
            assert_eq!(
                chars.next().map(|x| x.1),
                Some('"'),
                "label value quoted in {line:?}"
            );
            let mut value = String::new();
            loop {
                match chars.next().map(|x| x.1) {
                    Some('\\') => match chars.next().map(|x| x.1) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => panic!("escape at end of {line:?}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            }
            labels.insert(key.trim().to_string(), value);
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// Scrapes until `ready` holds (the snapshot is refreshed every 500 ms), at most 10 s.
fn scrape_until(ns: &Netns, ready: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = Exposition::parse(&get(ns, "/metrics"));
        if ready(&e) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never reached the expected state: {e:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks what must hold of any exposition: every sample in a declared family, counters named
/// `_total`, histograms with increasing cumulative buckets ending in +Inf = count.
fn check_conventions(e: &Exposition) {
    for s in &e.samples {
        assert!(
            s.name.starts_with("nsdb_"),
            "{} lacks the nsdb_ prefix",
            s.name
        );
        let fam = e
            .family_of(&s.name)
            .unwrap_or_else(|| panic!("{} has no # TYPE", s.name));
        if e.types[&fam] == "counter" {
            assert!(fam.ends_with("_total"), "counter {fam} must end in _total");
        }
        assert!(s.value.is_finite() && s.value >= 0.0, "{s:?}");
    }
    for (fam, ty) in &e.types {
        if ty != "histogram" {
            continue;
        }
        assert!(fam.ends_with("_seconds"), "histogram {fam} in seconds");
        let buckets: Vec<&Sample> = e
            .samples
            .iter()
            .filter(|s| s.name == format!("{fam}_bucket"))
            .collect();
        let mut last = 0.0;
        let mut prev_le = f64::NEG_INFINITY;
        for b in &buckets {
            let le: f64 = match b.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap(),
            };
            assert!(
                le > prev_le && b.value >= last,
                "{fam} buckets: {buckets:?}"
            );
            prev_le = le;
            last = b.value;
        }
        assert_eq!(prev_le, f64::INFINITY, "{fam} ends with +Inf");
        assert_eq!(
            last,
            e.value(&format!("{fam}_count"), &[]),
            "{fam}: +Inf = count"
        );
    }
}

/// dig over TCP, one try.
fn dig_tcp(ns: &Netns, server: &str) -> bool {
    let out = ns
        .cmd(&[
            "dig",
            &format!("@{server}"),
            "www.nsdb.test",
            "A",
            "+tcp",
            "+tries=1",
            "+time=3",
            "+norecurse",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("198.51.100.80")
}

/// The traffic of the counter test: UDP and TCP, IPv4 and IPv6, known and unknown.
struct Traffic {
    reg_v4_udp: u64,
    reg_v6_udp: u64,
    unk_v4_udp: u64,
    unk_v6_udp: u64,
    reg_v4_tcp: u64,
    unk_v6_tcp: u64,
}

fn send(n: &Net, t: &Traffic) {
    let udp = |server: &str, name: &str, qtype: &str, count: u64| {
        for _ in 0..count {
            assert!(
                dig(&n.cli, server, name, qtype, 3).is_some(),
                "{server} answers {name} {qtype} (monitor mode passes everything)"
            );
        }
    };
    udp(KNOWN, "www.nsdb.test", "A", t.reg_v4_udp);
    udp(KNOWN6, "www.nsdb.test", "AAAA", t.reg_v6_udp);
    udp(UNKNOWN, "c2.nsdb.test", "TXT", t.unk_v4_udp);
    udp(UNKNOWN6, "c2.nsdb.test", "TXT", t.unk_v6_udp);
    for _ in 0..t.reg_v4_tcp {
        assert!(dig_tcp(&n.cli, KNOWN), "DNS over TCP to the known server");
    }
    for _ in 0..t.unk_v6_tcp {
        assert!(
            dig_tcp(&n.cli, UNKNOWN6),
            "DNS over TCP to the unknown server (monitor)"
        );
    }
}

#[test]
fn metrics_count_exactly_the_traffic_sent() {
    let n = net("metrics");
    let d = start(&n, &[]);
    // Before any traffic: the exposition is well formed and everything is zero.
    let e = Exposition::parse(&get(&n.gw, "/metrics"));
    check_conventions(&e);
    assert_eq!(e.sum("nsdb_dns_queries_total", &[]), 0.0);

    let t = Traffic {
        reg_v4_udp: 3,
        reg_v6_udp: 2,
        unk_v4_udp: 2,
        unk_v6_udp: 1,
        reg_v4_tcp: 1,
        unk_v6_tcp: 1,
    };
    send(&n, &t);
    let unknown = t.unk_v4_udp + t.unk_v6_udp + t.unk_v6_tcp;
    let total =
        t.reg_v4_udp + t.reg_v6_udp + t.unk_v4_udp + t.unk_v6_udp + t.reg_v4_tcp + t.unk_v6_tcp;
    // Trusted responses reach the learner, the TCP one reassembled from its connection's
    // segments; wait for them too (and a database commit).
    let trusted = t.reg_v4_udp + t.reg_v6_udp + t.reg_v4_tcp;
    let e = scrape_until(&n.gw, |e| {
        e.sum("nsdb_dns_queries_total", &[]) == total as f64
            && e.value("nsdb_alerts_total", &[]) == unknown as f64
            && e.value("nsdb_learning_responses_total", &[]) == trusted as f64
            && e.value("nsdb_db_commit_duration_seconds_count", &[]) >= 1.0
    });
    check_conventions(&e);

    // Queries: every verdict × action × family × transport cell.
    let expect = |v: &str, f: &str, tr: &str| -> u64 {
        match (v, f, tr) {
            ("registered", "ipv4", "udp") => t.reg_v4_udp,
            ("registered", "ipv6", "udp") => t.reg_v6_udp,
            ("unknown", "ipv4", "udp") => t.unk_v4_udp,
            ("unknown", "ipv6", "udp") => t.unk_v6_udp,
            ("registered", "ipv4", "tcp") => t.reg_v4_tcp,
            ("unknown", "ipv6", "tcp") => t.unk_v6_tcp,
            _ => 0,
        }
    };
    for v in ["registered", "unknown", "exempt", "internal"] {
        for a in ["pass", "drop"] {
            for f in ["ipv4", "ipv6"] {
                for tr in ["udp", "tcp"] {
                    let want = if a == "pass" { expect(v, f, tr) } else { 0 };
                    let labels = [
                        ("verdict", v),
                        ("action", a),
                        ("family", f),
                        ("transport", tr),
                    ];
                    assert_eq!(
                        e.value("nsdb_dns_queries_total", &labels),
                        want as f64,
                        "queries {labels:?}"
                    );
                }
            }
        }
    }
    // Responses over UDP: the known servers' answers are trusted, the unknown ones' untrusted.
    let resp = |o: &str| e.value("nsdb_dns_responses_total", &[("outcome", o)]);
    assert_eq!(resp("trusted"), (t.reg_v4_udp + t.reg_v6_udp) as f64);
    assert_eq!(resp("untrusted"), (t.unk_v4_udp + t.unk_v6_udp) as f64);
    assert_eq!(resp("unsolicited"), 0.0);
    // One event and one alert per unknown query (TCP: its SYN); none suppressed or lost.
    assert_eq!(e.value("nsdb_events_sent_total", &[]), unknown as f64);
    assert_eq!(e.value("nsdb_events_suppressed_total", &[]), 0.0);
    assert_eq!(e.value("nsdb_alerts_total", &[]), unknown as f64);
    for ring in ["events", "responses"] {
        assert_eq!(
            e.value("nsdb_ringbuf_lost_total", &[("ring", ring)]),
            0.0,
            "{ring}"
        );
    }
    // (not_ip and not_dns count ARP, neighbour discovery and the TCP segments: not ours to fix.)
    for reason in ["malformed", "fragment", "ipv6_ext_limit"] {
        assert_eq!(
            e.value("nsdb_packets_skipped_total", &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }
    assert_eq!(e.value("nsdb_qname_truncated_total", &[]), 0.0);
    assert_eq!(e.value("nsdb_internal_errors_total", &[]), 0.0);
    assert_eq!(e.value("nsdb_dns_response_walk_limit_total", &[]), 0.0);
    // The TCP connection to the known server: its SYN-ACK, its answer and its FIN at least;
    // the answer reassembled whole. The one to the unknown server was dropped at its SYN.
    assert!(e.value("nsdb_dns_tcp_response_segments_total", &[]) >= 3.0);
    assert_eq!(
        e.value("nsdb_learning_tcp_total", &[("what", "messages")]),
        t.reg_v4_tcp as f64
    );
    assert_eq!(e.value("nsdb_learning_tcp_total", &[("what", "gaps")]), 0.0);
    // Learning: every trusted answer names ns1.nsdb.test (the known server, a root server
    // for nsdb) with its glue: the engine learns the triple once and refreshes it after.
    assert_eq!(
        e.value("nsdb_learning_responses_total", &[]),
        trusted as f64
    );
    assert_eq!(e.value("nsdb_learned_total", &[("result", "new")]), 1.0);
    assert_eq!(
        e.value("nsdb_learned_total", &[("result", "refreshed")]),
        (trusted - 1) as f64
    );
    for reason in [
        "malformed",
        "truncated",
        "not_noerror",
        "question_mismatch",
        "unsolicited",
        "out_of_bailiwick",
    ] {
        assert_eq!(
            e.value("nsdb_learning_rejected_total", &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }
    // Root servers are never overwritten: nothing new in the maps, nothing to withdraw.
    for by in ["kernel_glue", "kernel_pending", "userspace"] {
        assert_eq!(
            e.value("nsdb_allow_added_total", &[("by", by)]),
            0.0,
            "{by}"
        );
    }
    assert_eq!(e.value("nsdb_allow_withdrawn_total", &[]), 0.0);
    assert_eq!(e.value("nsdb_allow_expired_total", &[]), 0.0);
    assert_eq!(e.value("nsdb_allow_evicted_total", &[]), 0.0);
    assert_eq!(e.value("nsdb_db_errors_total", &[]), 0.0);
    // Occupancy: the two root addresses, the two --allow prefixes, the capacity asked for.
    let kind = |k: &str| e.value("nsdb_allow_entries", &[("kind", k)]);
    assert_eq!(kind("root"), 2.0);
    assert_eq!(kind("glue"), 0.0);
    assert_eq!(kind("kernel_glue"), 0.0);
    assert_eq!(kind("exception"), 2.0);
    for f in ["ipv4", "ipv6"] {
        assert_eq!(
            e.value("nsdb_allow_capacity", &[("family", f)]),
            ALLOW_ENTRIES as f64
        );
    }
    // Kernel memory of the maps, as the kernel counts it: the allow maps are allocated whole
    // at their capacity (each element holds its key, its 16-byte value and the hash table's
    // own links), the IPv6 one with its longer key larger; the event ring holds its pages.
    let map_bytes = |m: &str| e.value("nsdb_kernel_map_bytes", &[("map", m)]);
    let (v4, v6) = (map_bytes("ALLOW_V4"), map_bytes("ALLOW_V6"));
    let per_entry = v4 / ALLOW_ENTRIES as f64;
    assert!(
        (20.0..=256.0).contains(&per_entry),
        "ALLOW_V4: {per_entry} B per entry"
    );
    assert!(v6 > v4, "ALLOW_V6 {v6} vs ALLOW_V4 {v4}");
    assert!(map_bytes("EVENTS") >= nsdb_common::DEFAULT_EVENTS_BYTES as f64);
    // The gauge covers every map the daemon holds, as the bench's footprint counts them (from
    // the daemon's own descriptors, each map once).
    assert_eq!(
        e.sum("nsdb_kernel_map_bytes", &[]),
        nsdb::loader::map_memory_of_process(d.pid()).expect("the daemon's fdinfo") as f64
    );
    assert!(
        map_bytes("INFLIGHT")
            >= (nsdb_common::INFLIGHT_SLOTS as usize
                * std::mem::size_of::<nsdb_common::InflightSlot>()) as f64
    );
    // Maps of 4,096 per family holding 2 roots: responses are read in batches.
    assert_eq!(e.value("nsdb_response_batching", &[]), 1.0);
    // Latencies: one learn sample per trusted answer that taught (all of them); the database
    // committed at least once, taking some time.
    assert_eq!(
        e.value("nsdb_learn_latency_seconds_count", &[]),
        trusted as f64
    );
    assert!(e.value("nsdb_learn_latency_seconds_sum", &[]) > 0.0);
    assert!(e.value("nsdb_db_commit_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(
        e.value(
            "nsdb_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("mode", "monitor")]
        ),
        1.0
    );

    // The status JSON says the same.
    let s: serde_json::Value = serde_json::from_str(&get(&n.gw, "/api/status")).unwrap();
    assert_eq!(
        s["queries"]["registered"],
        t.reg_v4_udp + t.reg_v6_udp + t.reg_v4_tcp
    );
    assert_eq!(s["queries"]["unknown"], unknown);
    assert_eq!(s["responses"]["trusted"], t.reg_v4_udp + t.reg_v6_udp);
    assert!(s["responses"]["tcp_segments"].as_u64() >= Some(3), "{s}");
    assert_eq!(s["events"]["alerts"], unknown);
    assert_eq!(s["allow"]["root"], 2);
    assert_eq!(s["allow"]["exception"], 2);
    assert_eq!(s["top_destinations"][0]["addr"], UNKNOWN, "{s}");
    assert_eq!(s["top_destinations"][0]["count"], t.unk_v4_udp, "{s}");
    assert_eq!(s["top_sources"][0]["addr"], CLIENT, "{s}");

    // The exit report and the last scrape agree on what they both count.
    let r = d.stop_report();
    let c = &r["final_counters"];
    assert_eq!(
        c["responses_paired"],
        t.reg_v4_udp + t.reg_v6_udp + t.unk_v4_udp + t.unk_v6_udp,
        "{r}"
    );
    assert_eq!(r["engine"]["learned"], 1, "{r}");
}

#[test]
fn alerts_suppressed_by_rate_limiting_are_counted() {
    let n = net("msupp");
    // One alert per second per source, no burst.
    let _d = start(&n, &["--event-rate", "1", "--event-burst", "1"]);
    let sent = 4u64;
    // One dig sends the queries one after the other, well within the 1 s interval.
    let server = format!("@{UNKNOWN}");
    let mut args = vec!["dig"];
    for _ in 0..sent {
        args.extend_from_slice(&[
            server.as_str(),
            "c2.nsdb.test",
            "TXT",
            "+tries=1",
            "+time=3",
            "+norecurse",
            "+noedns",
        ]);
    }
    let started = Instant::now();
    let out = n.cli.cmd(&args).output().unwrap();
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("->>HEADER<<-").count(),
        sent as usize,
        "every query answered: {text}"
    );
    assert!(
        elapsed < Duration::from_millis(900),
        "the queries must leave within the rate interval ({elapsed:?})"
    );
    let e = scrape_until(&n.gw, |e| {
        e.sum("nsdb_dns_queries_total", &[]) == sent as f64
    });
    assert_eq!(e.value("nsdb_events_sent_total", &[]), 1.0);
    assert_eq!(
        e.value("nsdb_events_suppressed_total", &[]),
        (sent - 1) as f64
    );
    assert_eq!(
        e.sum("nsdb_dns_queries_total", &[("verdict", "unknown")]),
        sent as f64,
        "the query counters stay exact"
    );
    let e = scrape_until(&n.gw, |e| e.value("nsdb_alerts_total", &[]) == 1.0);
    check_conventions(&e);
}

/// Runs headless Chromium inside `ns` with `args` after the usual switches.
fn chromium(ns: &Netns, profile: &Path, args: &[&str]) -> std::process::Output {
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let mut all = vec![
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        &profile_arg,
    ];
    all.extend_from_slice(args);
    ns.cmd(&all)
        .output()
        .expect("cannot run chromium (apt-get install chromium; cargo xtask setup does)")
}

/// The text of the element with `id` in a DOM dump (elements the page fills with text only).
fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in the DOM"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find('<').unwrap();
    dom[start..end].to_string()
}

/// The points of an SVG path `M x,y L x,y ...`.
fn path_points(dom: &str, id: &str) -> Vec<(f64, f64)> {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let tag_end = at + dom[at..].find('>').unwrap();
    let tag = &dom[dom[..at].rfind('<').unwrap()..tag_end];
    let d_at = tag
        .find(" d=\"")
        .unwrap_or_else(|| panic!("#{id} has no d: {tag}"))
        + 4;
    let d = &tag[d_at..d_at + tag[d_at..].find('"').unwrap()];
    d.split(['M', 'L'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

#[test]
fn status_page_renders_the_traffic_in_chromium() {
    let n = net("mpage");
    let _d = start(&n, &[]);
    let t = Traffic {
        reg_v4_udp: 4,
        reg_v6_udp: 1,
        unk_v4_udp: 3,
        unk_v6_udp: 0,
        reg_v4_tcp: 0,
        unk_v6_tcp: 0,
    };
    send(&n, &t);
    // Let the chart gather samples after the traffic.
    scrape_until(&n.gw, |e| e.value("nsdb_alerts_total", &[]) == 3.0);
    std::thread::sleep(Duration::from_secs(2));

    let profile = n.tmp.path().join("chromium");
    let url = format!("http://{ADDR}/");
    let out = chromium(
        &n.gw,
        &profile,
        &["--virtual-time-budget=5000", "--dump-dom", &url],
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page rendered the status JSON: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text_of(&dom, "q-registered"), "5");
    assert_eq!(text_of(&dom, "q-unknown"), "3");
    assert_eq!(text_of(&dom, "q-dropped"), "0");
    assert_eq!(text_of(&dom, "alerts"), "3");
    assert_eq!(text_of(&dom, "r-trusted"), "5");
    assert_eq!(text_of(&dom, "r-untrusted"), "3");
    assert_eq!(text_of(&dom, "r-tcp"), "0", "no TCP in this traffic");
    assert_eq!(text_of(&dom, "allow-root"), "2");
    assert_eq!(text_of(&dom, "allow-exception"), "2");
    // Two maps of ALLOW_ENTRIES, printed with a thousands separator.
    assert_eq!(text_of(&dom, "allow-capacity"), "8,192");
    assert_eq!(text_of(&dom, "mode"), "monitor");
    // Top lists and recent alerts.
    let top = &dom[dom.find("id=\"top-dst\"").unwrap()..];
    let top = &top[..top.find("</tbody>").unwrap()];
    assert!(
        top.contains(&format!("<td>{UNKNOWN}</td><td class=\"n\">3</td>")),
        "{top}"
    );
    let src = &dom[dom.find("id=\"top-src\"").unwrap()..];
    assert!(
        src[..src.find("</tbody>").unwrap()].contains(CLIENT),
        "{src}"
    );
    let recent = &dom[dom.find("id=\"recent\"").unwrap()..];
    let recent = &recent[..recent.find("</tbody>").unwrap()];
    assert_eq!(recent.matches("c2.nsdb.test").count(), 3, "{recent}");
    // The chart: both lines drawn over several samples, the unknown one rising above zero.
    let reg = path_points(&dom, "line-registered");
    let unk = path_points(&dom, "line-unknown");
    assert!(reg.len() >= 4 && unk.len() == reg.len(), "{reg:?} {unk:?}");
    let base = unk.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    assert!(
        unk.iter().any(|p| p.1 < base - 10.0),
        "a visible unknown peak: {unk:?}"
    );
    assert!(
        reg.iter().any(|p| p.1 < base - 10.0),
        "a visible registered peak: {reg:?}"
    );

    // Rendered: a screenshot that is not blank and shows the chart's two colours.
    let png_path = n.tmp.path().join("status.png");
    let shot = format!("--screenshot={}", png_path.display());
    let out = chromium(
        &n.gw,
        &profile,
        &[
            "--virtual-time-budget=5000",
            "--window-size=1280,1000",
            &shot,
            &url,
        ],
    );
    assert!(
        png_path.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, h, pixels) = decode_png(&png_path);
    assert_eq!((w, h), (1280, 1000));
    let distinct: BTreeSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        distinct.len() > 50,
        "a varied picture, not a blank page: {} colours",
        distinct.len()
    );
    let near = |c: [u8; 3], want: [u8; 3]| c.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 12);
    let green = pixels
        .iter()
        .filter(|c| near(**c, [0x1f, 0x9d, 0x55]))
        .count();
    let red = pixels
        .iter()
        .filter(|c| near(**c, [0xd6, 0x45, 0x45]))
        .count();
    assert!(
        green > 200 && red > 200,
        "the chart's lines are drawn: {green} green, {red} red pixels"
    );
    if let Some(keep) = std::env::var_os("NSDB_KEEP_SCREENSHOT") {
        std::fs::copy(&png_path, PathBuf::from(keep)).unwrap();
    }
}

/// Width, height and RGB pixels of a PNG.
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(step)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, pixels)
}

/// Metric names in a PromQL expression: identifiers starting with `nsdb_`.
fn promql_metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if boundary && expr[i..].starts_with("nsdb_") {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(b.len(), |e| i + e);
            names.push(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// Every panel target's `expr`, anywhere in the dashboard.
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v.as_str() {
                    Some(e) if k == "expr" => out.push(e.to_string()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_queries_only_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/grafana/nsdb-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    // Template variables that query Prometheus.
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] == "query" {
            let q = &var["query"];
            exprs.push(q["query"].as_str().or(q.as_str()).unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10, "the dashboard has queries: {exprs:?}");
    // What nsdb exports: the registry's own exposition (every family is always present).
    let m = nsdb::metrics::Metrics::new(nsdb::metrics::RunInfo {
        mode: "monitor",
        ifaces: vec![],
        allow_capacity: 1,
        exceptions: 0,
    });
    let e = Exposition::parse(&m.encode());
    check_conventions(&e);
    let exported: BTreeSet<&str> = e.samples.iter().map(|s| s.name.as_str()).collect();
    let mut queried = BTreeSet::new();
    for x in &exprs {
        let names = promql_metric_names(x);
        assert!(!names.is_empty(), "a query of nsdb metrics: {x}");
        queried.extend(names);
    }
    let unknown: Vec<&String> = queried
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics nsdb does not export: {unknown:?}"
    );
    // And it shows the main families.
    for fam in [
        "nsdb_dns_queries_total",
        "nsdb_dns_responses_total",
        "nsdb_allow_entries",
        "nsdb_events_suppressed_total",
        "nsdb_learn_latency_seconds_bucket",
        "nsdb_db_commit_duration_seconds_bucket",
    ] {
        assert!(queried.contains(fam), "the dashboard shows {fam}");
    }
}
