//! `nsdb run --attach tc`: the filter as a TC classifier at the gateway interfaces' ingress
//! (tcx links), on the real testbed (Unbound + NSD tree, see `nsdb_tests::testbed`): enforce
//! mode resolves every name without a false drop and drops the bot's direct queries; the
//! links are removed on exit, survive kill -9 with `--on-exit keep` and are taken over by the
//! next daemon; an interface that is re-created gets the classifier again; frames whose
//! headers are not in the skb's linear part (AF_PACKET TX ring) are checked all the same.

use std::{path::PathBuf, process::Command, time::Duration};

use nsdb_tests::{
    packet::dns_query,
    servers::{Daemon, counter, counter_sum, read_alerts},
    testbed::*,
    traffic::{hex, mac, udp4_frame},
};
use serde_json::Value;

const TC: [&str; 2] = ["--attach", "tc"];

/// A bpffs mounted for one test, unmounted (lazily) on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t bpf {} failed", dir.display());
        Self(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = TC.to_vec();
    v.extend_from_slice(extra);
    v
}

/// No XDP program on either gateway interface (the classifier does the work).
fn assert_no_xdp(tb: &Testbed) {
    let links = String::from_utf8_lossy(&tb.gw.ip(&["link", "show"]).stdout).into_owned();
    assert!(!links.contains("xdp"), "{links}");
}

/// Both interfaces reported attached through a tcx link.
fn assert_attached_tcx(d: &Daemon) {
    assert!(d.wait_for_line("attached", Duration::from_secs(5)));
    let log = d.stderr_text();
    for iface in [GW_LAN_IF, GW_WAN_IF] {
        assert!(
            log.lines()
                .any(|l| l.contains("attached") && l.contains(iface) && l.contains("tcx")),
            "{iface} attached through tcx: {log}"
        );
    }
}

/// The main gateway scenario with `--attach tc`: a cold resolver resolves every name of the
/// tree (glue, glue-less delegations, IPv6-only servers, TCP fallback) in enforce mode with no
/// query dropped and no alert for the resolver, while the bot's direct UDP query and TCP
/// handshake to its hard-coded C&C are dropped and alerted; on SIGTERM the classifier is
/// removed and the C&C answers again.
#[test]
fn tc_enforce_resolves_every_name_and_drops_the_bot() {
    let tb = Testbed::new("tc");
    assert!(tb.cc_answers(), "the C&C answers without nsdb");
    let alerts = tb.file("alerts.json");
    let d = tb.start_nsdb("enforce", &alerts, None, &TC);
    assert_attached_tcx(&d);
    assert_no_xdp(&tb);

    let (fails, took) = tb.resolve_all();
    assert!(
        fails.is_empty(),
        "enforce via tc: {}",
        tb.describe_failures(&fails)
    );
    eprintln!("{} names resolved in {took:?}", tb.names.len());
    assert!(!tb.cc_answers(), "UDP query to the hard-coded C&C dropped");
    assert!(
        tb.dig_from_lan(
            FEEDERBOT_CC4,
            CC_CMD_NAME,
            "TXT",
            2,
            &["+norecurse", "+tcp"]
        )
        .is_none(),
        "TCP handshake to the hard-coded C&C dropped"
    );
    assert!(
        tb.dig_from_lan(GLUE1_4, "h3.glue.test", "A", 3, &["+norecurse"])
            .is_some(),
        "a learned server answers the same client"
    );
    let r = d.stop_report();
    let c = &r["final_counters"];
    assert_eq!(counter(c, "query_unknown_drop_ipv4_udp"), 1, "{c}");
    assert!(counter(c, "query_unknown_drop_ipv4_tcp") >= 1, "{c}");
    assert_eq!(
        counter_sum(c, "query_unknown_"),
        counter(c, "query_unknown_drop_ipv4_udp") + counter(c, "query_unknown_drop_ipv4_tcp"),
        "nothing but the bot is unknown (no false drop): {c}"
    );
    assert!(
        counter(c, "query_registered_pass_ipv4_udp") >= 20,
        "resolver queries checked and registered: {c}"
    );
    assert!(
        counter(c, "query_registered_pass_ipv6_udp") >= 20,
        "IPv6 transport checked: {c}"
    );
    assert!(
        counter(c, "query_registered_pass_ipv4_tcp") + counter(c, "query_registered_pass_ipv6_tcp")
            >= 1,
        "TCP fallback passed: {c}"
    );
    assert!(
        counter(c, "glue_learned_kernel") >= 5,
        "the classifier learned referral glue in the kernel: {c}"
    );
    assert_eq!(counter(c, "malformed"), 0, "{c}");
    let a = read_alerts(&alerts);
    assert!(a.len() >= 2, "{a:?}");
    for (i, al) in a.iter().enumerate() {
        assert_eq!(al["dst_ip"], FEEDERBOT_CC4, "only the bot is alerted: {al}");
        assert_eq!(al["src_ip"], CLIENT4, "{al}");
        assert_eq!(al["iface"], GW_LAN_IF, "{al}");
        assert_eq!(al["dst_port"], 53, "{al}");
        assert_eq!(al["verdict"], "unknown", "{al}");
        assert_eq!(al["action"], "drop", "{al}");
        assert_eq!(al["proto"], if i == 0 { "udp" } else { "tcp" }, "{al}");
    }
    assert_eq!(a[0]["qname"], CC_CMD_NAME, "{}", a[0]);
    assert_eq!(a[0]["qtype"], "TXT", "{}", a[0]);
    // Detached on SIGTERM: the query reaches the C&C again.
    assert!(tb.cc_answers(), "nothing left attached after exit");
}

/// `--on-exit keep` with `--attach tc`: the tcx links are pinned, filtering goes on after
/// kill -9, and the next daemon takes the pinned links over (counted in its report); when it
/// exits (default --on-exit detach) nothing is left.
#[test]
fn tc_on_exit_keep_survives_kill9_and_is_taken_over() {
    let tb = Testbed::new("tk");
    let bpffs = Bpffs::new(tb.file("bpffs"));
    let pins = bpffs.0.join("nsdb");
    let pin_arg = pins.to_str().unwrap().to_string();
    let alerts = tb.file("alerts1.json");
    let d = tb.start_nsdb(
        "enforce",
        &alerts,
        None,
        &args(&["--on-exit", "keep", "--pin-dir", &pin_arg]),
    );
    assert_attached_tcx(&d);
    assert!(!tb.cc_answers(), "enforcing");
    for f in ["link_lan0", "link_wan0", "ALLOW_V4", "ALLOW_V6"] {
        assert!(pins.join(f).exists(), "{f} pinned in {}", pins.display());
    }
    let err = d.kill9();
    assert!(
        !tb.cc_answers(),
        "still enforcing without the daemon\n{err}"
    );
    assert!(
        tb.dig_from_lan(ROOT_A4, ".", "NS", 3, &["+norecurse"])
            .is_some(),
        "a root server still answers"
    );
    let alerts2 = tb.file("alerts2.json");
    let d = tb.start_nsdb("enforce", &alerts2, None, &args(&["--pin-dir", &pin_arg]));
    assert!(
        d.wait_for_line("took over the pinned tcx link", Duration::from_secs(5)),
        "{}",
        d.stderr_text()
    );
    assert!(!tb.cc_answers(), "the new daemon enforces");
    let (fails, _) = tb.resolve_all();
    assert!(
        fails.is_empty(),
        "after the takeover: {}",
        tb.describe_failures(&fails)
    );
    let r = d.stop_report();
    assert_eq!(r["takeover"]["links"], 2, "{r}");
    assert_eq!(
        counter_sum(&r["final_counters"], "query_unknown_drop_"),
        1,
        "only the C&C query: {r}"
    );
    assert!(tb.cc_answers(), "detached after the second daemon's exit");
    assert!(!pins.exists(), "the pin directory is removed");
}

/// An interface deleted and re-created while the daemon runs gets the classifier again.
#[test]
fn tc_interface_that_comes_back_is_filtered_again() {
    let tb = Testbed::new("ti");
    let alerts = tb.file("alerts.json");
    let d = tb.start_nsdb("enforce", &alerts, None, &TC);
    assert!(!tb.cc_answers(), "dropped while attached");
    tb.gw.ip(&["link", "del", GW_LAN_IF]);
    assert!(
        d.wait_for_line("interface disappeared", Duration::from_secs(5)),
        "{}",
        d.stderr_text()
    );
    tb.relink_lan();
    assert!(
        d.wait_for_line("interface is back", Duration::from_secs(5)),
        "{}",
        d.stderr_text()
    );
    assert_no_xdp(&tb);
    assert!(!tb.cc_answers(), "dropped again once re-attached");
    assert!(
        tb.dig_from_lan(ROOT_A4, ".", "NS", 3, &["+norecurse"])
            .is_some(),
        "a registered server answers through the re-created interface"
    );
    let c: Value = d.stop();
    assert_eq!(counter(&c, "query_unknown_drop_ipv4_udp"), 2, "{c}");
}

/// Frames sent through an AF_PACKET TX ring carry only the Ethernet header in the skb's linear
/// part (the kernel's tpacket_fill_skb puts the rest in page fragments), and veth hands the
/// same skb to the gateway: at TC ingress the IP and UDP headers are out of reach of direct
/// packet access. The classifier pulls them in for packets its fast exit cannot settle (see
/// nsdb-ebpf/src/ctx.rs), so such queries are checked like any other: the unknown ones
/// dropped and counted, the registered ones passed, none taken for malformed. (Without the
/// pull all of them would pass as malformed: a way around the filter for any LAN host that
/// can open a packet socket.)
#[test]
fn tc_checks_queries_whose_headers_are_not_linear() {
    const N: usize = 20;
    let tb = Testbed::new("tn");
    let alerts = tb.file("alerts.json");
    let d = tb.start_nsdb("enforce", &alerts, None, &TC);
    let gw_mac = mac(&tb.gw, GW_LAN_IF);
    let send = |dst: &str, name: &str| {
        let cfg = udp4_frame(
            &gw_mac,
            &format!("sa={CLIENT4}, da={dst}"),
            "sp=40000, dp=53",
            &hex(&dns_query(0x4242, name, 16)),
        );
        let path = tb.file(&format!("ring-{dst}.cfg"));
        std::fs::write(&path, cfg).unwrap();
        // No --gap and no --rate: trafgen sends through its TX ring (tpacket_snd).
        let out = tb
            .lan
            .cmd(&[
                "trafgen",
                "--no-sock-mem",
                "--cpus",
                "1",
                "--dev",
                "eth0",
                "--conf",
                path.to_str().unwrap(),
                "--num",
                &N.to_string(),
            ])
            .output()
            .expect("trafgen (apt-get install netsniff-ng)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains(&format!("{N} packets outgoing")),
            "{text}"
        );
    };
    send(FEEDERBOT_CC4, CC_CMD_NAME);
    send(ROOT_A4, "ring.test");
    std::thread::sleep(Duration::from_millis(300));
    let c = d.stop();
    assert_eq!(
        counter(&c, "query_unknown_drop_ipv4_udp"),
        N as u64,
        "every query to the C&C dropped: {c}"
    );
    assert!(
        counter(&c, "query_registered_pass_ipv4_udp") >= N as u64,
        "every query to the root server checked and passed: {c}"
    );
    assert_eq!(counter(&c, "malformed"), 0, "{c}");
    let a = read_alerts(&alerts);
    assert!(!a.is_empty(), "alerted");
    assert_eq!(
        (
            a[0]["dst_ip"].as_str(),
            a[0]["qname"].as_str(),
            a[0]["qtype"].as_str(),
            a[0]["action"].as_str(),
            a[0]["dns_id"].as_u64()
        ),
        (
            Some(FEEDERBOT_CC4),
            Some(CC_CMD_NAME),
            Some("TXT"),
            Some("drop"),
            Some(0x4242)
        ),
        "{}",
        a[0]
    );
}
