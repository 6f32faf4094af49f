//! The report's first table: every goal of the benchmark issue, the figure this run measured
//! for it, and whether it was met, taken from the sections' JSON (a section not run is left out).

use serde_json::Value;

use super::forward;

/// One row: what is measured, the goal, the figure of this run, met or not.
struct Row {
    figure: String,
    goal: String,
    value: String,
    met: bool,
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn kernel(xdp: &Value, rows: &mut Vec<Row>) {
    for c in xdp["classes"].as_array().into_iter().flatten() {
        rows.push(Row {
            figure: format!("1. kernel: {}", c["name"].as_str().unwrap_or("?")),
            goal: format!("≤ {}× no-op", c["goal"]),
            value: format!("{:.2}×", f(&c["ratio"])),
            met: c["met"].as_bool() == Some(true),
        });
    }
    let r = &xdp["referral_13_glue"];
    let goal = r["goal"].as_f64().unwrap_or(6.0);
    for c in r["cases"].as_array().into_iter().flatten() {
        for (case, key) in [
            ("first learn", "first_learn_ratio"),
            ("glue known", "known_glue_ratio"),
        ] {
            let x = f(&c[key]);
            rows.push(Row {
                figure: format!(
                    "1. kernel: 13-glue referral, {}, {case}",
                    c["name"].as_str().unwrap_or("?")
                ),
                goal: format!("≤ {goal}× no-op"),
                value: format!("{x:.1}×"),
                met: x <= goal,
            });
        }
    }
    let sc = &xdp["allow_map_scale"];
    if !sc.is_null() {
        let goal = sc["goal"].as_f64().unwrap_or(1.3);
        for fam in ["v4", "v6"] {
            let x = f(&sc[format!("{fam}_ratio")]);
            rows.push(Row {
                figure: format!("2. allow map 10⁶ / 10³, IP{fam}"),
                goal: format!("≤ {goal}"),
                value: format!("{x:.2}"),
                met: x <= goal,
            });
        }
    }
}

fn forwarding(fwd: &Value, rows: &mut Vec<Row>) {
    let goals = &fwd["goals"];
    for r in fwd["ratios"].as_array().into_iter().flatten() {
        let pattern = r["pattern"].as_str().unwrap_or("?");
        for (key, what) in [
            ("nsdb_tc_over_none", "nsdb TC / no filter"),
            ("nsdb_tc_over_nftables", "nsdb TC / nftables"),
            ("nsdb_over_none", "nsdb XDP / no filter"),
            ("nsdb_over_nftables", "nsdb XDP / nftables"),
        ] {
            let (x, g) = (f(&r[key]), f(&goals[key]));
            rows.push(Row {
                figure: format!("3. forwarding, {pattern}: {what}"),
                goal: if forward::goal_above(key) {
                    format!("> {g}")
                } else {
                    format!("≥ {g}")
                },
                value: format!("{x:.2}"),
                met: forward::meets(key, x, goals),
            });
        }
    }
}

/// "Faster than nftables" read from the filters' own CPU time (perf samples), which the
/// machine's drift does not move as it moves packets per second: nftables' ns per packet over
/// nsdb's, at each hook.
fn filter_cpu(fc: &Value, rows: &mut Vec<Row>) {
    let ns = |c: &str, p: &str| forward::filter_ns(fc, c, p);
    for p in ["dns_mix", "non_dns"] {
        for (c, hook) in [("nsdb_tc_enforce", "TC"), ("nsdb_enforce", "XDP")] {
            let x = ns("nftables", p) / ns(c, p);
            rows.push(Row {
                figure: format!(
                    "3. filter's own CPU per packet (perf), {p}: nftables / nsdb {hook}"
                ),
                goal: "> 1".into(),
                value: format!("{x:.2}"),
                met: x > 1.0,
            });
        }
    }
}

fn offline(o: &Value, rows: &mut Vec<Row>) {
    let best = f(&o["nsdb"]["msgs_per_cpu_s"]);
    rows.push(Row {
        figure: "4. offline: nsdb learn, msgs per CPU-second (best run)".into(),
        goal: format!("≥ {:.0}", f(&o["goal_msgs_per_s"])),
        value: format!("{best:.0}"),
        met: o["goal_met"].as_bool() == Some(true),
    });
    rows.push(Row {
        figure: "4. offline: nsdb (median) / tshark".into(),
        goal: "≥ 10".into(),
        value: format!("{:.1}", f(&o["ratio_vs_tshark"])),
        met: o["goal_vs_tshark_met"].as_bool() == Some(true),
    });
    if o["python_dpkt_prototype"]["skipped"].is_null() {
        rows.push(Row {
            figure: "4. offline: nsdb (median) / Python prototype".into(),
            goal: "≥ 100".into(),
            value: format!("{:.1}", f(&o["ratio_vs_python"])),
            met: o["goal_vs_python_met"].as_bool() == Some(true),
        });
    }
}

fn resolution(v: &Value, rows: &mut Vec<Row>) {
    let g = f(&v["goal_enforce_over_none"]);
    for (key, what) in [
        ("enforce_over_none", "enforce (XDP)"),
        ("enforce_tc_over_none", "enforce (TC)"),
        (
            "enforce_tcp_over_none_tcp",
            "resolver asking over TCP only, enforce (XDP)",
        ),
    ] {
        if v[key].is_null() {
            continue;
        }
        let x = f(&v[key]);
        rows.push(Row {
            figure: format!("5. resolution time, {what} / no nsdb"),
            goal: format!("≤ {g}"),
            value: format!("{x:.2}"),
            met: x <= g,
        });
    }
}

/// The summary table, in Markdown (empty when no section ran).
pub fn markdown(xdp: &Value, forward: &Value, resolve: &Value, offline_v: &Value) -> String {
    let mut rows = Vec::new();
    if !xdp.is_null() {
        kernel(xdp, &mut rows);
    }
    if !forward["forwarding"].is_null() {
        forwarding(&forward["forwarding"], &mut rows);
    }
    if !forward["filter_cpu"].is_null() {
        filter_cpu(&forward["filter_cpu"], &mut rows);
    }
    if !offline_v.is_null() {
        offline(offline_v, &mut rows);
    }
    if !resolve.is_null() {
        resolution(resolve, &mut rows);
    }
    if rows.is_empty() {
        return String::new();
    }
    let met = rows.iter().filter(|r| r.met).count();
    let mut s = format!(
        "## Goals at a glance\n\n{met} of {} goals met in this run (the sections below say how \
         each figure was measured).\n\n| figure | goal | this run | met |\n|---|---|---:|:--:|\n",
        rows.len()
    );
    for r in &rows {
        s += &format!(
            "| {} | {} | {} | {} |\n",
            r.figure,
            r.goal,
            r.value,
            if r.met { "yes" } else { "**no**" }
        );
    }
    s + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_goal_is_judged_from_its_section() {
        let xdp = json!({
            "classes": [
                {"name": "non-DNS UDP", "goal": 1.2, "ratio": 1.58, "met": false},
                {"name": "DNS response", "goal": 2.0, "ratio": 1.9, "met": true}
            ],
            "referral_13_glue": {"goal": 6.0, "cases": [
                {"name": "compressed", "first_learn_ratio": 105.1, "known_glue_ratio": 5.5}
            ]},
            "allow_map_scale": {"goal": 1.3, "v4_ratio": 0.88, "v6_ratio": 1.31}
        });
        let fwd = json!({"forwarding": {
            "goals": {"nsdb_over_none": 0.95, "nsdb_over_nftables": 1.0,
                      "nsdb_tc_over_none": 0.95, "nsdb_tc_over_nftables": 1.0},
            "ratios": [{"pattern": "dns_mix", "nsdb_tc_over_none": 0.95,
                        "nsdb_tc_over_nftables": 1.0, "nsdb_over_none": 0.67,
                        "nsdb_over_nftables": 1.2}]
        }, "filter_cpu": {"rows": [
            {"config": "nsdb_tc_enforce", "pattern": "dns_mix", "filter_ns_per_packet": 400.0},
            {"config": "nsdb_enforce", "pattern": "dns_mix", "filter_ns_per_packet": 500.0},
            {"config": "nftables", "pattern": "dns_mix", "filter_ns_per_packet": 450.0},
            {"config": "nsdb_tc_enforce", "pattern": "non_dns", "filter_ns_per_packet": 7.0},
            {"config": "nsdb_enforce", "pattern": "non_dns", "filter_ns_per_packet": 40.0},
            {"config": "nftables", "pattern": "non_dns", "filter_ns_per_packet": 160.0}
        ]}});
        let resolve = json!({"goal_enforce_over_none": 1.05, "enforce_over_none": 0.98,
                             "enforce_tc_over_none": 1.06, "enforce_tcp_over_none_tcp": 1.02});
        let off = json!({"nsdb": {"msgs_per_cpu_s": 2.0e6}, "goal_msgs_per_s": 1.0e6,
                         "goal_met": true, "ratio_vs_tshark": 57.1, "goal_vs_tshark_met": true,
                         "python_dpkt_prototype": {"msgs_per_cpu_s": 16416.0},
                         "ratio_vs_python": 99.9, "goal_vs_python_met": false});
        let md = markdown(&xdp, &fwd, &resolve, &off);
        let row = |needle: &str| {
            md.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no row for {needle} in\n{md}"))
                .to_string()
        };
        assert!(row("non-DNS UDP").ends_with("| 1.58× | **no** |"));
        assert!(row("DNS response").ends_with("| 1.90× | yes |"));
        assert!(row("compressed, first learn").ends_with("| **no** |"));
        assert!(row("compressed, glue known").ends_with("| 5.5× | yes |"));
        assert!(row("IPv4").ends_with("| 0.88 | yes |"));
        assert!(row("IPv6").ends_with("| 1.31 | **no** |"));
        // The goals' own bounds: ≥ 0.95 is met at 0.95, > 1 is not met at 1.0.
        assert!(row("nsdb TC / no filter").ends_with("| ≥ 0.95 | 0.95 | yes |"));
        assert!(row("nsdb TC / nftables").ends_with("| > 1 | 1.00 | **no** |"));
        assert!(row("nsdb XDP / no filter").ends_with("| **no** |"));
        assert!(row("nsdb XDP / nftables").ends_with("| 1.20 | yes |"));
        assert!(row("best run").ends_with("| 2000000 | yes |"));
        assert!(row("/ tshark").ends_with("| 57.1 | yes |"));
        assert!(row("Python prototype").ends_with("| ≥ 100 | 99.9 | **no** |"));
        assert!(row("enforce (XDP)").ends_with("| 0.98 | yes |"));
        assert!(row("enforce (TC)").ends_with("| 1.06 | **no** |"));
        assert!(row("over TCP only").ends_with("| ≤ 1.05 | 1.02 | yes |"));
        assert!(row("dns_mix: nftables / nsdb TC").ends_with("| > 1 | 1.12 | yes |"));
        assert!(row("dns_mix: nftables / nsdb XDP").ends_with("| > 1 | 0.90 | **no** |"));
        assert!(row("non_dns: nftables / nsdb TC").ends_with("| > 1 | 22.86 | yes |"));
        assert!(row("non_dns: nftables / nsdb XDP").ends_with("| > 1 | 4.00 | yes |"));
        assert!(md.contains("12 of 20 goals met"), "{md}");
        // Sections not run are left out; nothing run, no table.
        let only_off = markdown(&Value::Null, &Value::Null, &Value::Null, &off);
        assert!(only_off.contains("2 of 3 goals met"), "{only_off}");
        assert_eq!(
            markdown(&Value::Null, &Value::Null, &Value::Null, &Value::Null),
            ""
        );
    }
}
