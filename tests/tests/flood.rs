//! Floods through the live testbed (real Unbound and NSD, nsdb in enforce mode on the gateway;
//! see `nsdb_tests::testbed`), generated with trafgen on one core as fast as it can:
//!
//! - queries to unknown destinations from a few LAN hosts (bots) for 10 s while Unbound keeps
//!   resolving every testbed name: the kernel counters equal the packets sent, alerts are
//!   rate-limited per source with the suppressed count reported, the daemon's memory stays
//!   bounded, and every name still resolves;
//! - spoofed DNS responses (random ids and ports, from addresses never queried, carrying a
//!   13-NS referral with glue) at the resolver: every one is counted unsolicited and none
//!   reaches the allow maps.
//!
//! Run as root: `cargo build --release --bins && cargo test --release --test flood --
//! --nocapture` (needs nsd, unbound, dig and trafgen: `cargo xtask setup`).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use nsdb_tests::{
    packet::{dns_query, referral_13},
    servers::{counter, counter_sum, read_alerts},
    testbed::*,
    traffic::{Trafgen, link_stats, mac, proc_usage, random_id, udp4_frame},
};

/// The bots: four LAN addresses (not configured anywhere; trafgen writes them into frames).
const BOTS: [&str; 4] = ["192.0.2.66", "192.0.2.67", "192.0.2.68", "192.0.2.69"];
/// nsdb's default alert limit per source: a burst of 20, then 10 per second.
const EVENT_BURST: f64 = 20.0;
const EVENT_RATE: f64 = 10.0;
/// The daemon's resident-memory ceiling under the flood. Idle it holds about 50 MiB here, 20 MiB
/// of which are the two ring buffers the kernel maps into it (events 4 MiB, responses 16 MiB);
/// the flood adds nothing that accumulates (alerts are written out, counters live in the
/// kernel, the per-source rate limiter is an LRU map in the kernel).
const HWM_LIMIT_KIB: u64 = 64 * 1024;
/// How long the query flood lasts.
const FLOOD: Duration = Duration::from_secs(10);

#[test]
fn unknown_query_flood_is_counted_exactly_rate_limited_and_resolution_keeps_working() {
    let mut tb = Testbed::new("fq");
    let alerts = tb.file("alerts.json");
    let d = tb.start_nsdb("enforce", &alerts, None, &[]);
    let pid = d.pid();
    let idle = proc_usage(pid).expect("nsdb runs");

    // The bots' queries: TXT for a C&C name, to random addresses in 198.19.200.0 –
    // 198.19.255.255 (never a name server), random ports and ids, one bot after the other.
    let gw_mac = mac(&tb.gw, GW_LAN_IF);
    let q = random_id(&dns_query(0, "cmd.c2.test", 16));
    let mut cfg = String::new();
    for bot in BOTS {
        cfg += &udp4_frame(
            &gw_mac,
            &format!("sa={bot}, da=198.19.200.1, da[2]=dinc(200, 255), da[3]=drnd()"),
            "sp=40000, sp[1]=drnd(), dp=53",
            &q,
        );
    }
    let lan0 = link_stats(&tb.lan, "eth0");
    let t0 = Instant::now();
    let flood = Trafgen::start(&tb.lan, "eth0", tb.tmp.path(), &cfg, None);
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        while t0.elapsed() < FLOOD {
            std::thread::sleep(Duration::from_millis(500));
            samples.push(proc_usage(pid).expect("nsdb survives the flood"));
        }
        samples
    });
    // Unbound resolves every name, from a cold cache, again and again while the flood lasts.
    let mut rounds = 0;
    let mut fails_during = Vec::new();
    while t0.elapsed() < FLOOD {
        tb.restart_unbound();
        fails_during.extend(tb.resolve_all().0);
        rounds += 1;
    }
    let samples = sampler.join().unwrap();
    let sent = flood.stop();
    let flood_secs = t0.elapsed().as_secs_f64();
    let lan = link_stats(&tb.lan, "eth0").since(&lan0);
    assert!(
        fails_during.is_empty(),
        "names failed during the flood:\n{}\n{}",
        fails_during
            .iter()
            .take(20)
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        tb.logs()
    );
    // And after it, cold again.
    tb.restart_unbound();
    let (fails_after, _) = tb.resolve_all();
    assert!(
        fails_after.is_empty(),
        "names failed after the flood: {:?}",
        fails_after
            .iter()
            .take(10)
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
    );
    let end = proc_usage(pid).expect("nsdb runs");
    let rep = d.stop_report();
    let c = &rep["final_counters"];

    // Every frame trafgen counted reached the gateway (frames the LAN veth refused, counted in
    // its tx_dropped, trafgen sent again) and is counted once as an unknown query dropped.
    let pushed_back = lan.tx_dropped;
    let dropped = counter(c, "query_unknown_drop_ipv4_udp");
    println!(
        "flood: {sent} queries sent in {flood_secs:.1} s ({:.0}/s; the veth pushed back \
         {pushed_back} times), {dropped} counted dropped; events sent {}, rate-limited {}, lost {}",
        sent as f64 / flood_secs,
        counter(c, "events_sent"),
        counter(c, "events_rate_limited"),
        counter(c, "events_lost")
    );
    assert!(
        sent > 10_000,
        "the flood was too slow to mean anything: {sent}"
    );
    assert_eq!(
        dropped, sent,
        "unknown queries counted dropped vs frames sent: {c}"
    );
    assert_eq!(
        counter_sum(c, "query_unknown_pass_"),
        0,
        "enforce mode passes no unknown query: {c}"
    );
    assert_eq!(counter(c, "malformed"), 0, "{c}");
    // Each unknown query either raised an event or was rate-limited (or the ring was full).
    assert_eq!(
        counter(c, "events_sent") + counter(c, "events_rate_limited") + counter(c, "events_lost"),
        dropped,
        "every unknown query is accounted for by the event counters: {c}"
    );
    assert!(counter(c, "events_rate_limited") > 0, "{c}");

    // Alerts: every event became a line; per bot at most burst + rate × duration.
    let all = read_alerts(&alerts);
    assert_eq!(
        all.len() as u64,
        counter(c, "events_sent"),
        "alert lines vs events_sent"
    );
    let mut per_src: BTreeMap<String, u64> = BTreeMap::new();
    for a in &all {
        *per_src
            .entry(a["src_ip"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let limit = (EVENT_BURST + EVENT_RATE * flood_secs).ceil() as u64 + 1;
    println!("alerts per source: {per_src:?} (limit {limit} each)");
    for bot in BOTS {
        let got = per_src.get(bot).copied().unwrap_or(0);
        assert!(
            got >= EVENT_BURST as u64 && got <= limit,
            "{bot}: {got} alerts in {flood_secs:.1} s, expected {EVENT_BURST} ..= {limit}"
        );
    }
    assert_eq!(
        per_src.len(),
        BOTS.len(),
        "alerts only from the bots (none from Unbound): {per_src:?}"
    );

    // Memory: bounded, and not growing during the flood.
    let peak = samples
        .iter()
        .map(|u| u.hwm_kib)
        .max()
        .unwrap_or(0)
        .max(end.hwm_kib);
    let rss: Vec<u64> = samples.iter().map(|u| u.rss_kib).collect();
    println!(
        "nsdb RSS idle {} KiB (anonymous {}); during the flood {:?} KiB; VmHWM {peak} KiB \
         (limit {HWM_LIMIT_KIB}); anonymous at the end {} KiB; {} cold resolutions of all {} names \
         during the flood, none failed",
        idle.rss_kib,
        idle.anon_kib,
        rss,
        end.anon_kib,
        rounds,
        tb.names.len()
    );
    assert!(
        peak < HWM_LIMIT_KIB,
        "VmHWM {peak} KiB ≥ {HWM_LIMIT_KIB} KiB"
    );
    let (first, last) = (rss[rss.len() / 2], *rss.last().unwrap());
    assert!(
        last <= first + 4096,
        "RSS grew during the second half of the flood: {rss:?}"
    );
}

#[test]
fn spoofed_response_flood_teaches_nothing() {
    let tb = Testbed::new("fr");
    let alerts = tb.file("alerts.json");
    let d = tb.start_nsdb("enforce", &alerts, None, &[]);

    // Root-style referrals (13 NS, 13 A and 13 AAAA glue in 198.18.123.0/24 and
    // 2001:db8:123::/48) with random ids, to the resolver's address at random ports: from
    // random Internet addresses, and from the real root server's address (nothing was asked).
    let wan_mac = mac(&tb.gw, GW_WAN_IF);
    let referral = random_id(&referral_13(0, "198.18.123.", "2001:db8:123::"));
    let cfg = udp4_frame(
        &wan_mac,
        &format!("sa=198.18.99.1, sa[3]=drnd(), da={UNBOUND4}"),
        "sp=53, dp=drnd()",
        &referral,
    ) + &udp4_frame(
        &wan_mac,
        &format!("sa={ROOT_A4}, da={UNBOUND4}"),
        "sp=53, dp=drnd()",
        &referral,
    );
    let inet0 = link_stats(&tb.inet, "eth0");
    let sent = Trafgen::run_for(
        &tb.inet,
        "eth0",
        tb.tmp.path(),
        &cfg,
        None,
        Duration::from_secs(5),
    );
    let pushed_back = link_stats(&tb.inet, "eth0").since(&inet0).tx_dropped;
    std::thread::sleep(Duration::from_millis(500));
    let rep = d.stop_report();
    let c = &rep["final_counters"];
    let live = &rep["live"];
    println!(
        "spoofed responses: {sent} sent (veth push-backs {pushed_back}); counters {} unsolicited, \
         {} untrusted, {} paired; allow entries at exit {}",
        counter(c, "responses_unsolicited"),
        counter(c, "responses_untrusted"),
        counter(c, "responses_paired"),
        live["allow_entries"]
    );
    assert!(
        sent > 10_000,
        "the flood was too slow to mean anything: {sent}"
    );
    assert_eq!(
        counter(c, "responses_unsolicited") + counter(c, "responses_untrusted"),
        sent,
        "every spoofed response is counted unsolicited or untrusted: {c}"
    );
    assert_eq!(counter(c, "responses_paired"), 0, "{c}");
    assert_eq!(
        counter(c, "responses_sent"),
        0,
        "nothing went to the learner: {c}"
    );
    assert_eq!(counter(c, "glue_learned_kernel"), 0, "{c}");
    assert_eq!(counter(c, "pending_learned_kernel"), 0, "{c}");
    assert_eq!(live["responses"], 0, "{live}");
    assert_eq!(live["inserted"], 0, "{live}");
    // The maps hold the root hints and nothing else (a.root: A + AAAA, b.root: A).
    assert_eq!(live["allow_entries"], 3, "{live}");
}
