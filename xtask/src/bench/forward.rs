//! Report sections for `nsdb-forward-bench`: gateway forwarding (issue 7, figure 3) and the
//! daemon's footprint (figure 6).

use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn kpps(v: &Value) -> String {
    format!("{:.0}", f(v) / 1000.0)
}

fn row<'a>(v: &'a Value, config: &str, pattern: &str) -> &'a Value {
    v["rows"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["config"] == config && r["pattern"] == pattern)
        })
        .unwrap_or(&Value::Null)
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

/// Whether the goal of ratio `key` (`nsdb_over_none`, `nsdb_tc_over_nftables`…) is one to
/// exceed (against nftables: faster) rather than to reach (against no filter: ≥ 0.95).
pub(super) fn goal_above(key: &str) -> bool {
    key.ends_with("_over_nftables")
}

/// Whether ratio `x` of `key` meets its goal in `goals` (the bench's `goals` object).
pub(super) fn meets(key: &str, x: f64, goals: &Value) -> bool {
    let g = goals[key].as_f64().unwrap_or(f64::NAN);
    if goal_above(key) { x > g } else { x >= g }
}

pub fn markdown(all: &Value) -> String {
    let v = &all["forwarding"];
    let mut s = format!(
        "## 3. Gateway forwarding\n\nCPU: {} ({} cores, shared). Tool: {}. Frames of {} bytes \
         ({}-byte IP packets); {} s per run, {} rounds with the configurations interleaved, each \
         round starting one configuration later (median rates shown; each ratio is the median of \
         the per-round ratios). Allowed name servers: {} (nsdb: restored from `--db`; nftables: the same \
         addresses in a set).\n\n\
         Packets per second taken in by the gateway (forwarded or dropped by the filter), in \
         thousands:\n\n\
         | traffic | no filter | no-op XDP | nsdb enforce (XDP) | no-op TC | nsdb enforce (TC) | nftables | nsdb XDP / none (goal ≥ 0.95) | nsdb XDP / nftables (goal > 1) | nsdb TC / none (goal ≥ 0.95) | nsdb TC / nftables (goal > 1) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        all["cpu"].as_str().unwrap_or("?"),
        all["cores"],
        v["tool"].as_str().unwrap_or("?"),
        v["frame_bytes"],
        v["ip_packet_bytes"],
        v["seconds_per_run"],
        v["rounds"],
        v["allowed_addresses"],
    );
    let ratios = v["ratios"].as_array().cloned().unwrap_or_default();
    for (i, p) in ["dns_mix", "non_dns", "unknown_only"].iter().enumerate() {
        let r = ratios.get(i).cloned().unwrap_or(Value::Null);
        let (a, b) = (f(&r["nsdb_over_none"]), f(&r["nsdb_over_nftables"]));
        let (c, d) = (f(&r["nsdb_tc_over_none"]), f(&r["nsdb_tc_over_nftables"]));
        s += &format!(
            "| {p} | {} | {} | {} | {} | {} | {} | {a:.2} {} | {b:.2} {} | {c:.2} {} | {d:.2} {} |\n",
            kpps(&row(v, "none", p)["gw_in_pps"]),
            kpps(&row(v, "noop_xdp", p)["gw_in_pps"]),
            kpps(&row(v, "nsdb_enforce", p)["gw_in_pps"]),
            kpps(&row(v, "noop_tc", p)["gw_in_pps"]),
            kpps(&row(v, "nsdb_tc_enforce", p)["gw_in_pps"]),
            kpps(&row(v, "nftables", p)["gw_in_pps"]),
            met(meets("nsdb_over_none", a, &v["goals"])),
            met(meets("nsdb_over_nftables", b, &v["goals"])),
            met(meets("nsdb_tc_over_none", c, &v["goals"])),
            met(meets("nsdb_tc_over_nftables", d, &v["goals"])),
        );
    }
    s += "\nPackets per second that reached the sink (thousands; share of what the gateway took in):\n\n\
          | traffic | no filter | no-op XDP | nsdb enforce (XDP) | no-op TC | nsdb enforce (TC) | nftables |\n|---|---:|---:|---:|---:|---:|---:|\n";
    for p in ["dns_mix", "non_dns", "unknown_only"] {
        s += &format!("| {p} |");
        for c in [
            "none",
            "noop_xdp",
            "nsdb_enforce",
            "noop_tc",
            "nsdb_tc_enforce",
            "nftables",
        ] {
            let r = row(v, c, p);
            s += &format!(
                " {} ({:.0} %) |",
                kpps(&r["forwarded_pps"]),
                f(&r["forwarded_share"]) * 100.0
            );
        }
        s += "\n";
    }
    s += "\nCost added per packet on the whole path (1/pps − 1/pps without a filter), ns:\n\n\
          | traffic | no-op XDP | nsdb enforce (XDP) | no-op TC | nsdb enforce (TC) | nftables |\n|---|---:|---:|---:|---:|---:|\n";
    for (i, p) in ["dns_mix", "non_dns", "unknown_only"].iter().enumerate() {
        let a = &ratios.get(i).cloned().unwrap_or(Value::Null)["added_ns_per_packet"];
        s += &format!(
            "| {p} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            f(&a["noop_xdp"]),
            f(&a["nsdb_enforce"]),
            f(&a["noop_tc"]),
            f(&a["nsdb_tc_enforce"]),
            f(&a["nftables"])
        );
    }
    let u = &v["unknown_drops"];
    let share = |d: &Value, n: &Value| {
        let n = f(n);
        if n > 0.0 { f(d) / n * 100.0 } else { 0.0 }
    };
    s += &format!(
        "\nUnknown-destination queries dropped: nsdb (XDP, its own counter) {} of {} ({:.2} %), \
         nsdb (TC, its own counter) {} of {} ({:.2} %), \
         nftables (rule counter) {} of {} ({:.2} %). Drop throughput with only unknown queries: \
         nsdb XDP {} kpps, nsdb TC {} kpps, nftables {} kpps.\n",
        u["nsdb_counted_dropped"],
        u["nsdb_unknown_sent"],
        share(&u["nsdb_counted_dropped"], &u["nsdb_unknown_sent"]),
        u["nsdb_tc_counted_dropped"],
        u["nsdb_tc_unknown_sent"],
        share(&u["nsdb_tc_counted_dropped"], &u["nsdb_tc_unknown_sent"]),
        u["nftables_counted_dropped"],
        u["nftables_unknown_sent"],
        share(&u["nftables_counted_dropped"], &u["nftables_unknown_sent"]),
        kpps(&row(v, "nsdb_enforce", "unknown_only")["gw_in_pps"]),
        kpps(&row(v, "nsdb_tc_enforce", "unknown_only")["gw_in_pps"]),
        kpps(&row(v, "nftables", "unknown_only")["gw_in_pps"]),
    );
    s += "\nThe generator, the gateway and the sink share one core (trafgen's sends run the \
          gateway's softirq on its own CPU), so every ratio is of the whole path; the added \
          ns per packet isolate the filter. The no-op XDP column is what attaching any XDP \
          program to a veth costs: the veth then delivers through its NAPI ring (and copies each \
          skb into a page with XDP headroom), a cost a physical NIC's driver path does not have. \
          The TC columns run the same filter code as a classifier at the tcx ingress hook \
          (`nsdb run --attach tc`), on the normal skb path.\n";
    s += &filter_cpu_markdown(&all["filter_cpu"]);

    let fp = &all["footprint"];
    if !fp.is_null() {
        let c = &fp["counters"];
        s += &format!(
            "\n## 6. Daemon footprint\n\nTool: {}.\n\n\
             | state | RSS MiB | of which anonymous MiB | peak RSS (VmHWM) MiB | CPU % of one core |\n\
             |---|---:|---:|---:|---:|\n\
             | idle, empty history | {:.1} | {:.1} | | |\n\
             | idle ({} s) | {:.1} | {:.1} | | {:.1} |\n\
             | {:.0} packets/s for {:.0} s (target {}) | {:.1} | {:.1} | {:.1} | {:.1} |\n\n\
             RSS includes the two ring buffers the kernel maps into the daemon (20 MiB); the \
             anonymous part is the daemon's own memory (the 100,000 restored history entries \
             are most of it).\n\n\
             Traffic: {}. Kernel counters over the run: {} registered queries, {} unknown dropped; \
             {} responses paired ({} to userspace, {} lost), {} unsolicited; {} alert events sent, \
             {} rate-limited, {} lost; {} alert lines written.\n",
            fp["tool"].as_str().unwrap_or("?"),
            f(&fp["idle_rss_kib_empty_history"]) / 1024.0,
            f(&fp["idle_rss_anon_kib_empty_history"]) / 1024.0,
            fp["idle_seconds"],
            f(&fp["idle_rss_kib"]) / 1024.0,
            f(&fp["idle_rss_anon_kib"]) / 1024.0,
            f(&fp["idle_cpu_percent"]),
            f(&fp["busy_pps"]),
            f(&fp["busy_seconds"]),
            fp["busy_target_pps"],
            f(&fp["busy_rss_kib"]) / 1024.0,
            f(&fp["busy_rss_anon_kib"]) / 1024.0,
            f(&fp["hwm_kib"]) / 1024.0,
            f(&fp["busy_cpu_percent"]),
            fp["busy_mix"].as_str().unwrap_or("?"),
            c["registered"],
            c["unknown_dropped"],
            c["responses_paired"],
            c["responses_sent_to_userspace"],
            c["responses_lost"],
            c["responses_unsolicited"],
            c["events_sent"],
            c["events_rate_limited"],
            c["events_lost"],
            fp["alerts_written"],
        );
        if let Some(b) = fp["kernel_map_bytes"].as_f64() {
            s += &format!(
                "\nKernel memory of the daemon's BPF maps (memlock in the fdinfo of its map \
                 descriptors, each map once): {:.1} MiB, allocated at start whatever the traffic \
                 (section 2 breaks it down). It is not in the RSS above, except the two ring \
                 buffers mapped into the daemon, which both count.\n",
                b / (1024.0 * 1024.0)
            );
        }
    }
    s
}

/// The profiled pass's ns per packet inside filter `config` for traffic `pattern` (NaN if it
/// was not measured or perf found no sample in it).
pub(super) fn filter_ns(fc: &Value, config: &str, pattern: &str) -> f64 {
    filter_row(fc, config, pattern).map_or(f64::NAN, |r| {
        r["filter_ns_per_packet"].as_f64().unwrap_or(f64::NAN)
    })
}

/// The profiled pass's row for filter `config` and traffic `pattern`.
fn filter_row<'a>(fc: &'a Value, config: &str, pattern: &str) -> Option<&'a Value> {
    fc["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["config"] == config && r["pattern"] == pattern)
}

/// The filters' own CPU time per packet, from the profiled pass (`perf` samples inside each
/// filter), which the machine's speed does not move the way it moves packets per second.
pub(super) fn filter_cpu_markdown(fc: &Value) -> String {
    if fc.is_null() {
        return "\nThe filters' own CPU time was not measured: `perf` is not installed \
                (apt-get install -y linux-perf).\n"
            .into();
    }
    let cell = |config: &str, pattern: &str| {
        match filter_row(fc, config, pattern) {
            // perf found no sample inside the filter's symbol.
            Some(r) if r["filter_ns_per_packet"].is_null() => "no samples".into(),
            Some(r) => format!(
                "{:.0} ({:.2} %)",
                f(&r["filter_ns_per_packet"]),
                f(&r["share_percent"])
            ),
            None => "?".into(),
        }
    };
    let mut s = format!(
        "\nThe filters' own CPU time per packet. Tool: {}. Each cell: ns per packet taken in \
         (the share of all samples in parentheses). This counts only time spent inside the \
         filter, so other work on the machine does not move it the way it moves packets per \
         second.\n\n\
         | traffic | nsdb enforce (XDP) | nsdb enforce (TC) | nftables | nftables / nsdb TC |\n\
         |---|---:|---:|---:|---:|\n",
        fc["tool"].as_str().unwrap_or("?")
    );
    for p in ["dns_mix", "non_dns"] {
        let ns = |c: &str| filter_ns(fc, c, p);
        s += &format!(
            "| {p} | {} | {} | {} | {:.1} |\n",
            cell("nsdb_enforce", p),
            cell("nsdb_tc_enforce", p),
            cell("nftables", p),
            ns("nftables") / ns("nsdb_tc_enforce"),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_filters_own_cpu_is_tabled_per_pattern() {
        let fc = json!({"tool": "perf", "rows": [
            {"config": "nsdb_enforce", "pattern": "dns_mix", "filter_ns_per_packet": 486.0, "share_percent": 6.4},
            {"config": "nsdb_tc_enforce", "pattern": "dns_mix", "filter_ns_per_packet": 500.0, "share_percent": 7.4},
            {"config": "nftables", "pattern": "dns_mix", "filter_ns_per_packet": 450.0, "share_percent": 6.8},
            {"config": "nsdb_tc_enforce", "pattern": "non_dns", "filter_ns_per_packet": 6.0, "share_percent": 0.13},
            {"config": "nftables", "pattern": "non_dns", "filter_ns_per_packet": 114.0, "share_percent": 2.86},
            {"config": "nsdb_enforce", "pattern": "non_dns", "filter_ns_per_packet": null, "share_percent": null}
        ]});
        let md = filter_cpu_markdown(&fc);
        let row = |p: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {p} |")))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            row("dns_mix"),
            "| dns_mix | 486 (6.40 %) | 500 (7.40 %) | 450 (6.80 %) | 0.9 |"
        );
        assert!(
            row("non_dns").contains("| no samples | 6 (0.13 %) | 114 (2.86 %) |"),
            "{md}"
        );
        assert!(row("non_dns").ends_with("| 19.0 |"), "{md}");
        assert!(filter_cpu_markdown(&Value::Null).contains("not measured"));
    }
}
