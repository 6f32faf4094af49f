//! `cargo xtask bench`: every benchmark, each figure next to its alternative in the same run,
//! reported as ratios. Writes target/bench/report.md and target/bench/report.json.

mod forward;
mod misses;
mod offline;
mod summary;

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Runs a release tool that prints one JSON object on stdout.
fn json_tool(root: &Path, bin: &str, args: &[&str]) -> Result<Value> {
    let path = root.join("target/release").join(bin);
    let out = Command::new(&path)
        .args(args)
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} printed no JSON", path.display()))
}

fn xdp_markdown(v: &Value) -> String {
    let mut s = format!(
        "## 1. Kernel cost per packet\n\nCPU: {}. Tool: {}. Repeat: {}. No-op XDP program: {:.1} ns/run (median over all classes; each ratio is against the no-op runs paired with that class).\n\n\
         | packet class | ns/packet | ns added to the no-op (median of pairs) | × no-op | goal | met | × no-op, kernel's whole-ns figures |\n|---|---:|---:|---:|---:|:--:|---:|\n",
        v["cpu"].as_str().unwrap_or("?"),
        v["tool"].as_str().unwrap_or("?"),
        v["repeat"],
        v["noop_ns"].as_f64().unwrap_or(0.0)
    );
    for c in v["classes"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {:.1} | {:.1} | {:.2} | ≤ {} | {} | {:.2} |\n",
            c["name"].as_str().unwrap_or("?"),
            c["ns"].as_f64().unwrap_or(0.0),
            c["added_ns"].as_f64().unwrap_or(f64::NAN),
            c["ratio"].as_f64().unwrap_or(0.0),
            c["goal"],
            if c["met"].as_bool() == Some(true) {
                "yes"
            } else {
                "**no**"
            },
            c["kernel_whole_ns_ratio"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let fl = &v["floor"];
    if !fl.is_null() {
        s += &format!(
            "\nThe floor of any hash-based allow list: {} — {:.1} ns, {:.2}× the no-op. \
             nsdb's registered IPv4 query is {:.2}× that floor (it also checks the expiry, counts, \
             and writes the outstanding-query slot that pairs the response).\n",
            fl["what"].as_str().unwrap_or("?"),
            fl["ns"].as_f64().unwrap_or(0.0),
            fl["ratio_to_noop"].as_f64().unwrap_or(0.0),
            fl["nsdb_registered_over_floor"].as_f64().unwrap_or(0.0),
        );
    }
    let r = &v["referral_13_glue"];
    if !r.is_null() {
        let goal = r["goal"].as_f64().unwrap_or(6.0);
        s += &format!(
            "\nReferral with 13 NS, 13 A and 13 AAAA glue records, paired, learned in the kernel. {} \
             ({} runs of each case).\n\n\
             | encoding | bytes | case | ns | no-op ns | × no-op | goal | met |\n|---|---:|---|---:|---:|---:|---:|:--:|\n",
            r["tool"].as_str().unwrap_or("?"),
            r["runs"],
        );
        for c in r["cases"].as_array().into_iter().flatten() {
            for (case, ns, ratio) in [
                (
                    "first learn of 26 addresses",
                    "first_learn_ns",
                    "first_learn_ratio",
                ),
                ("glue already known", "known_glue_ns", "known_glue_ratio"),
            ] {
                let x = c[ratio].as_f64().unwrap_or(f64::INFINITY);
                s += &format!(
                    "| {} | {} | {} | {:.0} | {:.0} | {:.1} | ≤ {} | {} |\n",
                    c["name"].as_str().unwrap_or("?"),
                    c["response_bytes"],
                    case,
                    c[ns].as_f64().unwrap_or(0.0),
                    c["noop_ns"].as_f64().unwrap_or(0.0),
                    x,
                    goal,
                    if x <= goal { "yes" } else { "**no**" }
                );
            }
        }
        s += "\nA no-op run at repeat = 1 is mostly the test-run call's own timing; the paired response \
              also pays the pairing lookup and the copy of the whole message to userspace's ring buffer.\n";
    }
    let sc = &v["allow_map_scale"];
    if !sc.is_null() || !v["map_memory"].is_null() {
        s += "\n## 2. Allow-map scale\n";
    }
    if !sc.is_null() {
        s += &format!(
            "\nRegistered-query check with 1,000 vs 1,000,000 learned addresses (LRU hash maps; of the million, {} IPv4). \
             Each figure is the mean over {} registered destinations of each family, present in both maps (a hash lookup's cost \
             depends on the length of the key's bucket chain, which the map's random seed sets anew for each key and each load, \
             so one key would measure luck); {} alternating rounds of the two maps, median ns of each and median of the \
             per-round ratios.\n\n\
             | family | ns at 1,000 | ns at 1,000,000 | ratio | goal |\n|---|---:|---:|---:|---:|\n\
             | IPv4 | {:.1} | {:.1} | {:.2} | ≤ 1.3 |\n| IPv6 | {:.1} | {:.1} | {:.2} | ≤ 1.3 |\n",
            sc["v4_entries_in_big"],
            sc["keys"],
            15,
            sc["v4_ns_small"].as_f64().unwrap_or(0.0),
            sc["v4_ns_big"].as_f64().unwrap_or(0.0),
            sc["v4_ratio"].as_f64().unwrap_or(0.0),
            sc["v6_ns_small"].as_f64().unwrap_or(0.0),
            sc["v6_ns_big"].as_f64().unwrap_or(0.0),
            sc["v6_ratio"].as_f64().unwrap_or(0.0),
        );
    }
    s += &map_memory_markdown(&v["map_memory"]);
    s
}

/// The kernel memory of the program's maps (section 2: "memory per entry reported; a million
/// entries must fit comfortably").
fn map_memory_markdown(m: &Value) -> String {
    let Some(filters) = m["filters"].as_array().filter(|f| !f.is_empty()) else {
        return String::new();
    };
    let mib = |b: &Value| b.as_f64().unwrap_or(0.0) / (1024.0 * 1024.0);
    let mut s = format!(
        "\nKernel memory of the maps. Tool: {}.\n\n\
         | filter | allow entries held | ALLOW_V4 MiB | B per IPv4 entry | ALLOW_V6 MiB | B per IPv6 entry | all maps MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        m["tool"].as_str().unwrap_or("?")
    );
    for f in filters {
        s += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            f["filter"].as_str().unwrap_or("?"),
            f["allow_entries_filled"],
            mib(&f["allow_v4_bytes"]),
            f["allow_v4_bytes_per_entry"].as_f64().unwrap_or(0.0),
            mib(&f["allow_v6_bytes"]),
            f["allow_v6_bytes_per_entry"].as_f64().unwrap_or(0.0),
            mib(&f["total_bytes"]),
        );
    }
    if let Some(maps) = filters[0]["maps"].as_array() {
        let parts: Vec<String> = maps
            .iter()
            .filter(|x| x["bytes"].as_u64().unwrap_or(0) >= 1 << 20)
            .map(|x| {
                format!(
                    "{} {:.1} MiB (max_entries {})",
                    x["name"].as_str().unwrap_or("?"),
                    mib(&x["bytes"]),
                    x["max_entries"]
                )
            })
            .collect();
        s += &format!(
            "\nThe allow maps are LRU hashes whose elements the kernel allocates when the program \
             is loaded, so they cost the same empty or full. Maps of 1 MiB or more: {}. This \
             memory is the kernel's, not in the daemon's RSS (figure 6); `nsdb_kernel_map_bytes` \
             exports it per map.\n",
            parts.join(", ")
        );
    }
    s
}

fn resolve_markdown(v: &Value) -> String {
    let mut s = format!(
        "## Learning latency and resolution overhead\n\n{} ({} names, {} rounds of {} cold passes).\n\n\
         | configuration | median ms per round | × no nsdb | × monitor | nsdb CPU ms per round (median) | failed resolutions | dropped queries |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        v["tool"].as_str().unwrap_or("?"),
        v["names"],
        v["rounds"],
        v["passes_per_round"].as_u64().unwrap_or(1)
    );
    for c in v["configs"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} |\n",
            c["config"].as_str().unwrap_or("?"),
            c["median_ms"].as_f64().unwrap_or(0.0),
            c["ratio_to_none"].as_f64().unwrap_or(0.0),
            c["ratio_to_monitor"].as_f64().unwrap_or(0.0),
            c["nsdb_cpu_ms_median"].as_f64().unwrap_or(0.0),
            c["failed_resolutions"],
            c["dropped_queries"],
        );
    }
    let l = &v["learn_latency_us_userspace"];
    s += &format!(
        "\nEnforce / no nsdb: {:.2} (median of the per-round ratios; goal ≤ {}; monitor / no nsdb {:.2}; \
         ratio of the medians {:.2}); enforce at the TC hook (`--attach tc`) / no nsdb: {:.2}. \
         Response batching (the default, `--response-batch-ms 10`) against a wake-up per response \
         (`enforce_unbatched`): resolution {:.2}, nsdb CPU {:.2} (medians of the per-round ratios). \
         A resolver asking upstream over TCP only (Unbound `tcp-upstream: yes`), enforce / no nsdb: {:.2}. \
         Learn-to-enforce latency: kernel path {}; userspace \
         path (ring buffer to map update, including the batching delay) p50 {:.0} µs, p99 {:.0} µs (medians over the enforce rounds).\n",
        v["enforce_over_none"].as_f64().unwrap_or(0.0),
        v["goal_enforce_over_none"],
        v["monitor_over_none"].as_f64().unwrap_or(0.0),
        v["enforce_over_none_of_medians"].as_f64().unwrap_or(0.0),
        v["enforce_tc_over_none"].as_f64().unwrap_or(0.0),
        v["enforce_over_enforce_unbatched"]
            .as_f64()
            .unwrap_or(f64::NAN),
        v["nsdb_cpu_enforce_over_unbatched"]
            .as_f64()
            .unwrap_or(f64::NAN),
        v["enforce_tcp_over_none_tcp"].as_f64().unwrap_or(f64::NAN),
        v["learn_latency_kernel"].as_str().unwrap_or("?"),
        l["p50_median"].as_f64().unwrap_or(0.0),
        l["p99_median"].as_f64().unwrap_or(0.0),
    );
    s
}

/// Runs every benchmark, or only the ones named in `NSDB_BENCH_ONLY` (comma-separated: xdp,
/// forward, resolve, offline) while working on one of them.
pub fn run(root: &Path, quick: bool) -> Result<()> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let q: &[&str] = if quick { &["--quick"] } else { &[] };
    let only = std::env::var("NSDB_BENCH_ONLY").unwrap_or_default();
    let want = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    let mut head = String::from("# nsdb benchmark report\n\n");
    if quick {
        head += "_Quick smoke run: fewer repeats; figures are indicative only._\n\n";
    }
    let mut md = String::new();
    // Wall-clock seconds of each section (the issue asks for the whole bench under 10 minutes
    // on this machine), each including the cargo build of its tool.
    let started = std::time::Instant::now();
    let mut took: Vec<(&str, f64)> = Vec::new();
    let mut lap = std::time::Instant::now();
    let mut timed = |name: &'static str, took: &mut Vec<(&str, f64)>| {
        took.push((name, lap.elapsed().as_secs_f64()));
        lap = std::time::Instant::now();
    };
    let mut xdp = Value::Null;
    if want("xdp") {
        eprintln!("bench: XDP program under BPF_PROG_TEST_RUN");
        xdp = json_tool(root, "nsdb-xdp-bench", q)?;
        md += &xdp_markdown(&xdp);
        timed("xdp", &mut took);
    }
    let mut fwd = Value::Null;
    if want("forward") {
        eprintln!(
            "bench: forwarding through a gateway namespace (none, no-op XDP, nsdb, nftables); daemon footprint"
        );
        fwd = json_tool(root, "nsdb-forward-bench", q)?;
        md += "\n";
        md += &forward::markdown(&fwd);
        timed("forward", &mut took);
    }
    let mut resolve = Value::Null;
    if want("resolve") {
        eprintln!("bench: resolution through the live testbed (Unbound, NSD, nsdb)");
        resolve = json_tool(root, "nsdb-resolve-bench", q)?;
        md += "\n";
        md += &resolve_markdown(&resolve);
        timed("resolve", &mut took);
    }
    let mut offline = Value::Null;
    if want("offline") {
        eprintln!("bench: offline learning on a paper-scale trace");
        offline = offline::run(quick)?;
        md += "\n";
        md += &offline::markdown(&offline);
        timed("offline", &mut took);
    }
    let total = started.elapsed().as_secs_f64();
    md += &format!(
        "\n## Duration of this run\n\n{:.0} s in all ({}), each section including the cargo \
         build of its tool; the goal for the whole bench is under 600 s on this machine{}.\n",
        total,
        took.iter()
            .map(|(n, t)| format!("{n} {t:.0} s"))
            .collect::<Vec<_>>()
            .join(", "),
        if quick {
            " (a quick run is not held to it)"
        } else if total <= 600.0 {
            ": met"
        } else {
            ": **not met**"
        },
    );
    let durations: serde_json::Map<String, Value> = took
        .iter()
        .map(|(n, t)| (n.to_string(), json!(t)))
        .collect();
    let report = json!({ "quick": quick, "xdp": xdp, "forward": fwd, "resolve": resolve, "offline": offline,
        "seconds": { "total": total, "sections": durations } });
    let md = head
        + &summary::markdown(&xdp, &fwd, &resolve, &offline)
        + &misses::markdown(&xdp, &fwd, &resolve, &offline)
        + &md;
    std::fs::write(dir.join("report.md"), &md)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{md}");
    eprintln!("bench: wrote {}", dir.join("report.md").display());
    Ok(())
}
