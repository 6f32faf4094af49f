//! nsdb on a real gateway: namespaces `cli` (dig) — `gw` (nsdb on both interfaces, routing) —
//! `srv` (NSD on two addresses). One address is a known name server (from the root hints given
//! to nsdb), the other is not.

use std::path::Path;

use nsdb_tests::{
    TempDir,
    gateway::{CLIENT, CLIENT6, GatewayNet, KNOWN, KNOWN6, UNKNOWN, UNKNOWN6, gateway_net},
    netns::Netns,
    servers::{Daemon, dig, dig_id, read_alerts},
};

type Net = GatewayNet;

fn net() -> Net {
    gateway_net("gw", "")
}

fn start(n: &Net, mode: &str, alerts: &Path) -> Daemon {
    n.start_nsdb(mode, alerts, &[])
}

fn n(c: &serde_json::Value, key: &str) -> u64 {
    c[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key} in {c}"))
}

#[test]
fn monitor_mode_counts_registered_and_alerts_on_unknown() {
    let net = net();
    let alerts = net.tmp.path().join("alerts.json");
    let d = start(&net, "monitor", &alerts);

    let ok = dig(&net.cli, KNOWN, "www.nsdb.test", "A", 3).expect("the known server answers");
    assert!(ok.contains("198.51.100.80"), "{ok}");
    let bad =
        dig(&net.cli, UNKNOWN, "c2.nsdb.test", "TXT", 3).expect("monitor mode passes everything");
    assert!(bad.contains("sleep 3600"), "{bad}");
    let id = dig_id(&bad);

    let links = String::from_utf8_lossy(&net.gw.ip(&["link", "show"]).stdout).into_owned();
    assert_eq!(
        links.matches("prog/xdp").count(),
        2,
        "attached to g0 and g1: {links}"
    );
    let r = d.stop_report();
    let links = String::from_utf8_lossy(&net.gw.ip(&["link", "show"]).stdout).into_owned();
    assert!(!links.contains("xdp"), "detached on SIGTERM: {links}");
    // The known server's answer reaches the learner, walked to its end; the unknown server's
    // answer (its query passed in monitor mode) is paired but untrusted: it teaches nothing.
    assert_eq!(r["live"]["responses"], 1, "{r}");
    assert_eq!(r["live"]["walk_stops"][0], 1, "{r}");
    assert_eq!(r["final_counters"]["responses_paired"], 2, "{r}");
    assert_eq!(r["final_counters"]["responses_untrusted"], 1, "{r}");
    let c = r["final_counters"].clone();
    assert_eq!(n(&c, "query_registered_pass_ipv4_udp"), 1, "{c}");
    assert_eq!(n(&c, "query_unknown_pass_ipv4_udp"), 1, "{c}");
    assert_eq!(n(&c, "query_unknown_drop_ipv4_udp"), 0, "{c}");
    assert_eq!(
        n(&c, "responses"),
        2,
        "two answers came back through g1: {c}"
    );
    assert_eq!(n(&c, "events_sent"), 1, "{c}");

    let a = read_alerts(&alerts);
    assert_eq!(a.len(), 1, "one alert: {a:?}");
    let a = &a[0];
    assert_eq!(a["iface"], "g0");
    assert_eq!(a["src_ip"], CLIENT);
    assert!(a["src_port"].as_u64().unwrap() > 1023);
    assert_eq!(a["dst_ip"], UNKNOWN);
    assert_eq!(a["dst_port"], 53);
    assert_eq!(a["proto"], "udp");
    assert_eq!(a["dns_id"].as_u64().unwrap(), id);
    assert_eq!(a["qname"], "c2.nsdb.test");
    assert_eq!(a["qtype"], "TXT");
    assert_eq!(a["verdict"], "unknown");
    assert_eq!(a["action"], "pass");
    assert!(a["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn enforce_mode_drops_unknown_and_keeps_answering_known() {
    enforce_scenario(&[]);
}

/// The same with the filter as a TC classifier (`--attach tc`): no XDP program anywhere, the
/// same drops, counters and alerts.
#[test]
fn enforce_mode_with_attach_tc_drops_unknown_and_keeps_answering_known() {
    enforce_scenario(&["--attach", "tc"]);
}

fn enforce_scenario(extra: &[&str]) {
    let net = net();
    let alerts = net.tmp.path().join("alerts.json");
    let d = net.start_nsdb("enforce", &alerts, extra);
    let links = String::from_utf8_lossy(&net.gw.ip(&["link", "show"]).stdout).into_owned();
    let xdp_progs = if extra.is_empty() { 2 } else { 0 };
    assert_eq!(links.matches("prog/xdp").count(), xdp_progs, "{links}");

    assert!(
        dig(&net.cli, KNOWN, "www.nsdb.test", "A", 3).is_some(),
        "the known server answers"
    );
    assert!(
        dig(&net.cli, UNKNOWN, "c2.nsdb.test", "TXT", 2).is_none(),
        "the unknown server must get nothing"
    );
    // IPv6 too.
    let ok6 = dig(&net.cli, KNOWN6, "www.nsdb.test", "AAAA", 3)
        .expect("the known server answers over IPv6");
    assert!(ok6.contains("2001:db8:2::80"), "{ok6}");
    assert!(
        dig(&net.cli, UNKNOWN6, "c2.nsdb.test", "TXT", 2).is_none(),
        "unknown over IPv6 dropped"
    );
    // The known server still answers after the drops.
    assert!(dig(&net.cli, KNOWN, "www.nsdb.test", "A", 3).is_some());

    let c = d.stop();
    assert_eq!(n(&c, "query_registered_pass_ipv4_udp"), 2, "{c}");
    assert_eq!(n(&c, "query_registered_pass_ipv6_udp"), 1, "{c}");
    assert_eq!(n(&c, "query_unknown_drop_ipv4_udp"), 1, "{c}");
    assert_eq!(n(&c, "query_unknown_drop_ipv6_udp"), 1, "{c}");
    assert_eq!(n(&c, "responses"), 3, "{c}");

    let a = read_alerts(&alerts);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(
        (a[0]["dst_ip"].as_str(), a[0]["action"].as_str()),
        (Some(UNKNOWN), Some("drop"))
    );
    assert_eq!(
        (a[1]["dst_ip"].as_str(), a[1]["src_ip"].as_str()),
        (Some(UNKNOWN6), Some(CLIENT6))
    );
}

#[test]
fn enforce_mode_checks_tcp_connections() {
    let net = net();
    let alerts = net.tmp.path().join("alerts.json");
    let d = start(&net, "enforce", &alerts);
    let tcp = |server: &str| {
        let out = net
            .cli
            .cmd(&[
                "dig",
                &format!("@{server}"),
                "www.nsdb.test",
                "A",
                "+tcp",
                "+tries=1",
                "+time=3",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("198.51.100.80")
    };
    assert!(tcp(KNOWN), "DNS over TCP to the known server works");
    assert!(
        !tcp(UNKNOWN),
        "the TCP handshake to the unknown server is dropped"
    );
    let c = d.stop();
    assert_eq!(
        n(&c, "query_registered_pass_ipv4_tcp"),
        1,
        "one SYN to the known server: {c}"
    );
    assert!(n(&c, "query_unknown_drop_ipv4_tcp") >= 1, "{c}");
    let a = read_alerts(&alerts);
    assert!(
        !a.is_empty()
            && a.iter()
                .all(|a| a["proto"] == "tcp" && a["dst_ip"] == UNKNOWN),
        "{a:?}"
    );
}

#[test]
fn non_dns_traffic_is_never_dropped() {
    let net = net();
    let alerts = net.tmp.path().join("alerts.json");
    let d = start(&net, "enforce", &alerts);
    // ICMP to the unknown address goes through in enforce mode.
    net.cli
        .run(&["ping", "-c", "2", "-i", "0.2", "-W", "2", UNKNOWN]);
    let c = d.stop();
    assert!(
        n(&c, "not_dns") >= 4,
        "echo requests and replies counted: {c}"
    );
    assert_eq!(n(&c, "query_unknown_drop_ipv4_udp"), 0);
    assert!(read_alerts(&alerts).is_empty());
}

#[test]
fn bad_flags_fail_with_one_line_and_attach_nothing() {
    let ns = Netns::new("bad");
    let tmp = TempDir::new("bad");
    let run = |args: &[&str]| {
        let bin = nsdb_tests::nsdb_bin();
        let mut all = vec![bin.to_str().unwrap(), "run"];
        all.extend_from_slice(args);
        let out = ns.cmd(&all).output().unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (err.trim().lines().count(), err)
    };
    let (lines, err) = run(&["--iface", "nope0"]);
    assert_eq!(lines, 1, "{err}");
    assert!(err.contains("interface \"nope0\" does not exist"), "{err}");
    let missing = tmp.path().join("missing.txt");
    let (lines, err) = run(&["--iface", "lo", "--allow", missing.to_str().unwrap()]);
    assert_eq!(lines, 1, "{err}");
    assert!(
        err.contains("cannot read allow file") && err.contains("missing.txt"),
        "{err}"
    );
    let bad_allow = tmp.path().join("allow.txt");
    std::fs::write(&bad_allow, "8.8.8.8\n300.1.1.1\n").unwrap();
    let (_, err) = run(&["--iface", "lo", "--allow", bad_allow.to_str().unwrap()]);
    assert!(
        err.contains("allow.txt:2") && err.contains("300.1.1.1"),
        "{err}"
    );
    let (_, err) = run(&["--iface", "lo", "--internal", "10.0.0.0/33"]);
    assert!(err.contains("10.0.0.0/33"), "{err}");
    let (_, err) = run(&["--iface", "lo", "--mode", "block"]);
    assert!(err.contains("block"), "{err}");
    // Nothing attached anywhere in the namespace.
    let links = String::from_utf8_lossy(&ns.ip(&["link", "show"]).stdout).into_owned();
    assert!(!links.contains("xdp"), "{links}");
}
