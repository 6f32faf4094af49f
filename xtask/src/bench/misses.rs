//! The report's account of the goals this run missed: for each, what this run's own figures
//! say about why, and what would close it. Only missed goals get a paragraph, and every
//! number in it comes from this run's JSON, so the account cannot drift from the figures.

use serde_json::Value;

/// The reference for XDP's cost per packet on a real NIC (one core, drop).
const REAL_NIC_NS: f64 = 42.0;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn arr(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// Lowest and highest of the per-round ratios `a[i] / b[i]`.
fn ratio_range(a: &Value, b: &Value) -> Option<(f64, f64)> {
    let r: Vec<f64> = arr(a)
        .zip(arr(b))
        .map(|(x, y)| f(x) / f(y))
        .filter(|x| x.is_finite())
        .collect();
    if r.is_empty() {
        return None;
    }
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lo, hi))
}

fn kernel(x: &Value, resolve: &Value, out: &mut Vec<String>) {
    // The classes named as `pred` says: (those that missed their goal, all of them).
    let classes = |pred: &dyn Fn(&str) -> bool| -> (Vec<&Value>, usize) {
        let all: Vec<&Value> = arr(&x["classes"])
            .filter(|c| pred(c["name"].as_str().unwrap_or("")))
            .collect();
        let n = all.len();
        let missed = all
            .into_iter()
            .filter(|c| c["met"].as_bool() == Some(false))
            .collect();
        (missed, n)
    };
    let noop = f(&x["noop_ns"]);
    let (cheap, _) = classes(&|n| n.starts_with("non-"));
    if !cheap.is_empty() {
        let list = cheap
            .iter()
            .map(|c| {
                format!(
                    "{} adds {:.1} ns ({:.0} % of the {REAL_NIC_NS:.0} ns per packet of XDP on a real NIC)",
                    c["name"].as_str().unwrap_or("?"),
                    f(&c["added_ns"]),
                    100.0 * f(&c["added_ns"]) / REAL_NIC_NS
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        out.push(format!(
            "**Kernel, packets nsdb does not check (≤ 1.2× the no-op).** The no-op run is {noop:.1} ns, \
             most of it BPF_PROG_TEST_RUN's own loop, so 1.2× leaves {:.1} ns: a handful of \
             instructions. Passing a packet needs the frame's bounds checked and the ethertype, IP \
             version and header length, fragment offset, protocol and both ports read and compared, \
             about 20 BPF instructions, and a per-CPU counter. {list}. *What would close it*: \
             nothing that still looks at the ports; against a real NIC's per-packet cost the \
             program adds the share given.",
            0.2 * noop
        ));
    }
    let (queries, n_queries) = classes(&|n| n.starts_with("DNS ") || n.starts_with("TCP SYN"));
    let fl = &x["floor"];
    if !queries.is_empty() && !fl.is_null() {
        out.push(format!(
            "**Kernel, DNS queries and responses (≤ 2× the no-op; {} of {} classes missed).** The \
             floor program does one lookup of the destination in the allow map (an LRU hash) and \
             nothing else, and costs {:.2}× the no-op by itself: no allow list held in a BPF hash map \
             can meet 2×. nsdb's registered query is {:.2}× that floor; the rest is the expiry check, \
             the counter and the outstanding-query slot that pairs the response, which learning in \
             the kernel needs. An unknown query also reads the question and passes the per-source \
             event rate limit (another hash lookup). *What would close it*: a lookup-free verdict, \
             such as a per-CPU direct-mapped cache of recent verdicts in an array map, which every \
             withdrawal and expiry would have to invalidate without a race; not built, because a \
             stale entry there would let a withdrawn address through.",
            queries.len(),
            n_queries,
            f(&fl["ratio_to_noop"]),
            f(&fl["nsdb_registered_over_floor"]),
        ));
    }
    let r = &x["referral_13_glue"];
    let goal = r["goal"].as_f64().unwrap_or(6.0);
    let cases: Vec<&Value> = arr(&r["cases"])
        .filter(|c| f(&c["first_learn_ratio"]) > goal || f(&c["known_glue_ratio"]) > goal)
        .collect();
    if let Some(c) = cases.first() {
        let (first, known, noop1) = (
            f(&c["first_learn_ns"]),
            f(&c["known_glue_ns"]),
            f(&c["noop_ns"]),
        );
        // 13 A and 13 AAAA glue records, all new in the first-learn runs.
        let n = c["glue_per_response"].as_f64().unwrap_or(26.0).max(1.0);
        let per_insert = (first - known) / n;
        // Figure 5's userspace-only row, when that section ran.
        let userspace = arr(&resolve["configs"])
            .find(|c| c["config"] == "enforce_userspace_learning_only")
            .map(|u| {
                format!(
                    " ({:.2}× the resolution time of no nsdb in this run, against {:.2}× for \
                     enforce)",
                    f(&u["ratio_to_none"]),
                    f(&resolve["enforce_over_none"])
                )
            })
            .unwrap_or_default();
        out.push(format!(
            "**Kernel, a referral with 13 glue records learned in the program (≤ {goal}×).** At \
             repeat 1 the no-op is {noop1:.0} ns, so {goal}× allows {:.0} ns. In this run the \
             {} case cost {first:.0} ns learning {n:.0} new addresses and {known:.0} ns with them \
             known: {per_insert:.0} ns per new allow-map entry, so the {n:.0} inserts alone take \
             {:.1}× the budget, and walking the 39 records with their names and looking each \
             address up takes the rest. *What would close it*: not learning in the kernel. The \
             userspace-only configuration of figure 5 does that{}, and the TCP test \
             `a_resolver_querying_over_tcp_only_is_never_dropped` fails without the program's \
             walk: a resolver connects to a new server before userspace has written it. The \
             design pays these microseconds per referral (a few per resolution) to add no \
             latency and no false drop.",
            goal * noop1,
            c["name"].as_str().unwrap_or("?"),
            per_insert * n / (goal * noop1),
            userspace,
        ));
    }
    let sc = &x["allow_map_scale"];
    if !sc.is_null() {
        let g = sc["goal"].as_f64().unwrap_or(1.3);
        for fam in ["v4", "v6"] {
            let v = f(&sc[format!("{fam}_ratio")]);
            if v > g {
                out.push(format!(
                    "**Allow map at 10⁶ entries, IP{fam} ({v:.2}, goal ≤ {g}).** Both maps are \
                     allocated whole at load (figure 2's memory table), and the figure is the mean \
                     over {} keys, so what differs is how the million entries sit in the CPU \
                     caches and the bucket chains. *What would close it*: more rounds on a quiet \
                     core (docs/DESIGN.md's Measured section has this figure from earlier runs of \
                     the same code).",
                    sc["keys"]
                ));
            }
        }
    }
}

fn forwarding(fw: &Value, filter_cpu: &Value, out: &mut Vec<String>) {
    let goals = &fw["goals"];
    let missed = |r: &Value, key: &str| !super::forward::meets(key, f(&r[key]), goals);
    let mut xdp = Vec::new();
    let mut other = Vec::new();
    for r in arr(&fw["ratios"]) {
        let p = r["pattern"].as_str().unwrap_or("?");
        if missed(r, "nsdb_over_none") || missed(r, "nsdb_over_nftables") {
            xdp.push(format!(
                "{p}: nsdb {:.2} of no filter and {:.2} of nftables, the no-op XDP program {:.2} \
                 of no filter",
                f(&r["nsdb_over_none"]),
                f(&r["nsdb_over_nftables"]),
                f(&r["noop_xdp_over_none"])
            ));
        }
        if missed(r, "nsdb_tc_over_none") || missed(r, "nsdb_tc_over_nftables") {
            other.push(format!(
                "{p}: nsdb {:.2} of no filter and {:.2} of nftables",
                f(&r["nsdb_tc_over_none"]),
                f(&r["nsdb_tc_over_nftables"]),
            ));
        }
    }
    let ns = |c: &str, p: &str| super::forward::filter_ns(filter_cpu, c, p);
    if !xdp.is_empty() {
        let own = if filter_cpu.is_null() {
            String::new()
        } else {
            format!(
                " The program's own CPU time at XDP, sampled with perf, was {:.0} ns per packet \
                 of the DNS mix and {:.0} ns per non-DNS packet (nftables {:.0} and {:.0} ns; \
                 the same program at TC {:.0} and {:.0} ns): the rest of the gap is the veth's \
                 XDP path.",
                ns("nsdb_enforce", "dns_mix"),
                ns("nsdb_enforce", "non_dns"),
                ns("nftables", "dns_mix"),
                ns("nftables", "non_dns"),
                ns("nsdb_tc_enforce", "dns_mix"),
                ns("nsdb_tc_enforce", "non_dns"),
            )
        };
        out.push(format!(
            "**Forwarding with nsdb at the XDP hook of a veth.** {}. Attaching any XDP program to \
             a veth switches it to NAPI delivery and copies each skb into a page with XDP \
             headroom, a cost a physical NIC's driver does not have; nsdb at XDP cannot forward \
             more than the program that does nothing, so ≥ 0.95 of no filter is out of reach here.{own} \
             *What would close it*: a NIC with native XDP (none on this machine), or the TC hook \
             (`--attach tc`), which is what the TC columns measure and what nsdb recommends on \
             virtual interfaces.",
            xdp.join("; ")
        ));
    }
    if !other.is_empty() {
        let none_spread = arr(&fw["rows"])
            .filter(|r| r["config"] == "none")
            .filter_map(|r| {
                let runs: Vec<f64> = arr(&r["runs_gw_in_pps"]).map(f).collect();
                let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lo.is_finite() && lo > 0.0).then(|| format!("{:.2}", hi / lo))
            })
            .collect::<Vec<_>>()
            .join(" / ");
        let own = if filter_cpu.is_null() {
            String::new()
        } else {
            format!(
                " The filters' own CPU time, sampled with perf in the same run, is not subject \
                 to that: nsdb at TC spent {:.0} ns per packet of the DNS mix and {:.0} ns per \
                 non-DNS packet, nftables {:.0} and {:.0} ns.",
                ns("nsdb_tc_enforce", "dns_mix"),
                ns("nsdb_tc_enforce", "non_dns"),
                ns("nftables", "dns_mix"),
                ns("nftables", "non_dns"),
            )
        };
        out.push(format!(
            "**Forwarding at the TC hook** ({}). The generator, the gateway and the sink share \
             one core of a shared machine: plain forwarding alone varied by a factor of {none_spread} \
             between its fastest and slowest round in this run (per traffic pattern), more than \
             the differences measured.{own} *What would close it*: a dedicated core per role, \
             or more rounds than the 10-minute budget allows.",
            other.join(", ")
        ));
    }
}

fn offline(o: &Value, out: &mut Vec<String>) {
    if o["goal_vs_python_met"].as_bool() != Some(false) {
        return;
    }
    let py = f(&o["python_dpkt_prototype"]["msgs_per_cpu_s"]);
    let runs: Vec<f64> = arr(&o["nsdb_runs_msgs_per_cpu_s"]).map(f).collect();
    let reach = runs.iter().filter(|r| **r >= 100.0 * py).count();
    let (lo, hi) = (
        runs.iter().copied().fold(f64::INFINITY, f64::min),
        runs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    out.push(format!(
        "**Offline, ×100 the Python prototype ({:.1} with nsdb's median, {:.1} with its best \
         run).** ×100 needs {:.0} msgs per CPU-second against this run's Python; {reach} of \
         nsdb's {} runs reached it, and those runs ranged from {lo:.0} to {hi:.0} ({:.2}× \
         apart) within minutes, with the same binary and trace. The machine's speed drifts, and \
         nsdb's one-second runs and Python's minute-long one do not sample it alike. *What would \
         close it*: fewer instructions per message (docs/offline-learning.md has the profile), \
         or a quiet machine.",
        f(&o["ratio_vs_python"]),
        f(&o["ratio_vs_python_best_run"]),
        100.0 * py,
        runs.len(),
        hi / lo,
    ));
}

fn resolution(v: &Value, out: &mut Vec<String>) {
    let g = f(&v["goal_enforce_over_none"]);
    let cfg = |name: &str| arr(&v["configs"]).find(|c| c["config"] == name);
    for (key, with, without, what) in [
        ("enforce_over_none", "enforce", "none", "enforce (XDP)"),
        ("enforce_tc_over_none", "enforce_tc", "none", "enforce (TC)"),
        (
            "enforce_tcp_over_none_tcp",
            "enforce_tcp_upstream",
            "none_tcp_upstream",
            "over TCP only",
        ),
    ] {
        let x = f(&v[key]);
        if v[key].is_null() || x <= g {
            continue;
        }
        let (Some(a), Some(b)) = (cfg(with), cfg(without)) else {
            continue;
        };
        let range = ratio_range(&a["runs_ms"], &b["runs_ms"])
            .map(|(lo, hi)| format!("; its per-round ratios ranged from {lo:.2} to {hi:.2}"))
            .unwrap_or_default();
        out.push(format!(
            "**Resolution time, {what} / no nsdb ({x:.2}, goal ≤ {g}).** {} failed resolutions \
             and {} dropped queries{range}. Whatever nsdb adds is below this run's round-to-round \
             noise: the kernel learns a referral's glue within the packet's own pass, and \
             userspace's CPU per round is in the table. *What would close it*: more rounds than the \
             10-minute budget allows (docs/DESIGN.md's Measured section has this figure from \
             earlier runs).",
            a["failed_resolutions"], a["dropped_queries"],
        ));
    }
}

/// The section, in Markdown: empty when every goal of the sections run was met.
pub fn markdown(xdp: &Value, forward: &Value, resolve: &Value, offline_v: &Value) -> String {
    let mut out = Vec::new();
    if !xdp.is_null() {
        kernel(xdp, resolve, &mut out);
    }
    if !forward["forwarding"].is_null() {
        forwarding(&forward["forwarding"], &forward["filter_cpu"], &mut out);
    }
    if !offline_v.is_null() {
        offline(offline_v, &mut out);
    }
    if !resolve.is_null() {
        resolution(resolve, &mut out);
    }
    if out.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Goals missed in this run: why, and what would close them\n\nEach paragraph is \
         written from this run's own figures.\n\n",
    );
    for p in out {
        s += "- ";
        s += &p;
        s += "\n";
    }
    s + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_missed_goals_get_a_paragraph_with_this_runs_numbers() {
        let xdp = json!({
            "noop_ns": 10.0,
            "classes": [
                {"name": "non-DNS UDP (port 443)", "goal": 1.2, "ratio": 1.3, "added_ns": 3.0, "met": false},
                {"name": "non-IP (ARP)", "goal": 1.2, "ratio": 1.1, "added_ns": 1.0, "met": true},
                {"name": "DNS query, registered (IPv4)", "goal": 2.0, "ratio": 5.0, "added_ns": 40.0, "met": false},
                {"name": "DNS response", "goal": 2.0, "ratio": 1.9, "added_ns": 9.0, "met": true}
            ],
            "floor": {"ratio_to_noop": 2.9, "nsdb_registered_over_floor": 2.05},
            "referral_13_glue": {"goal": 6.0, "cases": [
                {"name": "compressed", "noop_ns": 50.0, "first_learn_ns": 6000.0,
                 "known_glue_ns": 3400.0, "glue_learned": 39000, "glue_per_response": 26,
                 "first_learn_ratio": 120.0, "known_glue_ratio": 68.0}
            ]},
            "allow_map_scale": {"goal": 1.3, "keys": 64, "v4_ratio": 0.9, "v6_ratio": 1.2}
        });
        let resolve = json!({
            "goal_enforce_over_none": 1.05, "enforce_over_none": 1.01,
            "enforce_tc_over_none": 1.10,
            "configs": [
                {"config": "none", "runs_ms": [100.0, 200.0]},
                {"config": "enforce_tc", "runs_ms": [120.0, 190.0],
                 "failed_resolutions": 0, "dropped_queries": 0},
                {"config": "enforce_userspace_learning_only", "ratio_to_none": 1.26}
            ]
        });
        let md = markdown(&xdp, &Value::Null, &resolve, &Value::Null);
        // 1.2 × 10 ns leaves 2 ns; 3 ns added is 7 % of 42 ns.
        assert!(md.contains("leaves 2.0 ns"), "{md}");
        assert!(
            md.contains("non-DNS UDP (port 443) adds 3.0 ns (7 %"),
            "{md}"
        );
        assert!(
            !md.contains("non-IP (ARP) adds"),
            "a met goal gets no paragraph: {md}"
        );
        assert!(md.contains("1 of 2 classes missed"), "{md}");
        assert!(md.contains("2.90× the no-op by itself"), "{md}");
        // (6000 − 3400) / 26 = 100 ns per insert; 26 inserts are 2600 / 300 = 8.7× the budget.
        assert!(md.contains("100 ns per new allow-map entry"), "{md}");
        assert!(md.contains("take 8.7× the budget"), "{md}");
        assert!(md.contains("(1.26× the resolution time of no nsdb"), "{md}");
        assert!(!md.contains("IPv4 (0.90"), "{md}");
        assert!(md.contains("enforce (TC) / no nsdb (1.10"), "{md}");
        assert!(md.contains("ranged from 0.95 to 1.20"), "{md}");
        assert!(!md.contains("enforce (XDP) / no nsdb"), "{md}");
        // Every goal met: no section.
        let met = json!({"noop_ns": 10.0, "classes": [
            {"name": "non-IP (ARP)", "goal": 1.2, "ratio": 1.1, "added_ns": 1.0, "met": true}
        ]});
        assert_eq!(markdown(&met, &Value::Null, &Value::Null, &Value::Null), "");
        let off = json!({"goal_vs_python_met": false, "ratio_vs_python": 88.7,
            "ratio_vs_python_best_run": 99.2,
            "python_dpkt_prototype": {"msgs_per_cpu_s": 20000.0},
            "nsdb_runs_msgs_per_cpu_s": [1.5e6, 2.1e6, 1.9e6]});
        let md = markdown(&Value::Null, &Value::Null, &Value::Null, &off);
        assert!(md.contains("needs 2000000 msgs"), "{md}");
        assert!(md.contains("1 of nsdb's 3 runs reached it"), "{md}");
        assert!(md.contains("(1.40× apart)"), "{md}");
        let fwd = json!({"forwarding": {
            "goals": {"nsdb_over_none": 0.95, "nsdb_over_nftables": 1.0,
                      "nsdb_tc_over_none": 0.95, "nsdb_tc_over_nftables": 1.0},
            "ratios": [{"pattern": "non_dns", "nsdb_over_none": 0.60, "noop_xdp_over_none": 0.74,
                        "nsdb_over_nftables": 1.1, "nsdb_tc_over_none": 0.98,
                        "nsdb_tc_over_nftables": 0.9}],
            "rows": [{"config": "none", "runs_gw_in_pps": [500.0, 650.0, 600.0]}]
        }, "filter_cpu": {"rows": [
            {"config": "nsdb_tc_enforce", "pattern": "dns_mix", "filter_ns_per_packet": 480.0},
            {"config": "nsdb_tc_enforce", "pattern": "non_dns", "filter_ns_per_packet": 6.4},
            {"config": "nftables", "pattern": "dns_mix", "filter_ns_per_packet": 490.0},
            {"config": "nftables", "pattern": "non_dns", "filter_ns_per_packet": 114.0},
            {"config": "nsdb_enforce", "pattern": "dns_mix", "filter_ns_per_packet": 560.0},
            {"config": "nsdb_enforce", "pattern": "non_dns", "filter_ns_per_packet": 39.0}
        ]}});
        let md = markdown(&Value::Null, &fwd, &Value::Null, &Value::Null);
        assert!(
            md.contains(
                "non_dns: nsdb 0.60 of no filter and 1.10 of nftables, the no-op XDP program 0.74"
            ),
            "{md}"
        );
        assert!(
            md.contains("(non_dns: nsdb 0.98 of no filter and 0.90 of nftables)"),
            "{md}"
        );
        assert!(md.contains("a factor of 1.30 between"), "{md}");
        assert!(
            md.contains("was 560 ns per packet of the DNS mix and 39 ns per non-DNS packet (nftables 490 and 114 ns; the same program at TC 480 and 6 ns)"),
            "{md}"
        );
        assert!(
            md.contains("480 ns per packet of the DNS mix and 6 ns per non-DNS packet, nftables 490 and 114 ns"),
            "{md}"
        );
    }
}
