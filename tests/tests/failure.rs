//! Failure modes of the daemon, with the real testbed (Unbound + NSD tree, see
//! `nsdb_tests::testbed`): what happens to filtering when the daemon is killed with -9
//! (`--on-exit keep|detach`), what a restart does with pinned state, an interface that
//! disappears and comes back, and a history database that cannot be written (disk full).

use std::{path::PathBuf, process::Command, time::Duration};

use nsdb_tests::{
    servers::{counter_sum, read_alerts},
    testbed::*,
};
use serde_json::Value;

/// A file system mounted for one test, unmounted (lazily) on drop.
struct Mount(PathBuf);

impl Mount {
    fn new(dir: PathBuf, fstype: &str, opts: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Command::new("mount");
        c.args(["-t", fstype]);
        if !opts.is_empty() {
            c.args(["-o", opts]);
        }
        let st = c.arg(fstype).arg(&dir).status().expect("mount");
        assert!(st.success(), "mount -t {fstype} {} failed", dir.display());
        Self(dir)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// True if the gateway's interface has an XDP program attached.
fn xdp_attached(tb: &Testbed, iface: &str) -> bool {
    let out = tb.gw.ip(&["link", "show", "dev", iface]);
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn on_exit_detach_kill9_removes_the_filter() {
    let tb = Testbed::new("fd");
    let alerts = tb.file("alerts.json");
    let d = tb.start_nsdb("enforce", &alerts, None, &[]);
    assert!(xdp_attached(&tb, GW_LAN_IF) && xdp_attached(&tb, GW_WAN_IF));
    assert!(!tb.cc_answers(), "enforce mode drops the query to the C&C");
    let err = d.kill9();
    assert!(
        !xdp_attached(&tb, GW_LAN_IF) && !xdp_attached(&tb, GW_WAN_IF),
        "--on-exit detach (the default): nothing stays attached after kill -9\n{err}"
    );
    assert!(tb.cc_answers(), "without the filter the query passes");
}

#[test]
fn on_exit_keep_filters_after_kill9_and_a_restart_takes_over_without_a_gap() {
    let mut tb = Testbed::new("fk");
    let bpffs = Mount::new(tb.file("bpffs"), "bpf", "");
    let pins = bpffs.0.join("nsdb");
    let pin_arg = pins.to_str().unwrap().to_string();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (i, e) in tb.names.iter().enumerate() {
        if i % 2 == 0 {
            first.push(e);
        } else {
            second.push(e);
        }
    }

    let alerts = tb.file("alerts1.json");
    let d = tb.start_nsdb(
        "enforce",
        &alerts,
        None,
        &["--on-exit", "keep", "--pin-dir", &pin_arg],
    );
    let (fails, _) = tb.resolve_list(&first);
    assert!(
        fails.is_empty(),
        "round 1: {}",
        tb.describe_failures(&fails)
    );
    for f in ["link_lan0", "link_wan0", "ALLOW_V4", "ALLOW_V6"] {
        assert!(pins.join(f).exists(), "{f} pinned in {}", pins.display());
    }
    let err = d.kill9();

    // The program and its maps outlive the daemon: still attached, still dropping the C&C
    // query, and the resolver still resolves — the program keeps learning referral glue and
    // glue-less servers' addresses by itself.
    assert!(
        xdp_attached(&tb, GW_LAN_IF) && xdp_attached(&tb, GW_WAN_IF),
        "--on-exit keep: attached after kill -9\n{err}"
    );
    assert!(!tb.cc_answers(), "still enforcing without the daemon");
    let (fails, _) = tb.resolve_list(&second);
    assert!(
        fails.is_empty(),
        "round 2 without a daemon: {}",
        tb.describe_failures(&fails)
    );

    // A new daemon (default --on-exit detach) takes the pinned links over atomically and
    // copies what the program learned meanwhile: no false drop, no alert.
    let alerts2 = tb.file("alerts2.json");
    let d = tb.start_nsdb("enforce", &alerts2, None, &["--pin-dir", &pin_arg]);
    assert!(
        xdp_attached(&tb, GW_LAN_IF) && xdp_attached(&tb, GW_WAN_IF),
        "attached after the takeover"
    );
    tb.restart_unbound();
    let (fails, _) = tb.resolve_all();
    assert!(
        fails.is_empty(),
        "after the takeover: {}",
        tb.describe_failures(&fails)
    );
    assert!(!tb.cc_answers(), "the new daemon enforces");
    let report = d.stop_report();
    let c = &report["final_counters"];
    assert_eq!(report["takeover"]["links"], 2, "{report}");
    assert!(
        report["takeover"]["entries"].as_u64().unwrap() >= 5,
        "entries learned by the previous daemon and by the program alone were copied: {report}"
    );
    assert_eq!(
        counter_sum(c, "query_unknown_drop_"),
        1,
        "only the C&C query: {c}"
    );
    let unexpected: Vec<Value> = read_alerts(&alerts2)
        .into_iter()
        .filter(|a| a["dst_ip"] != FEEDERBOT_CC4)
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    // This daemon was --on-exit detach: everything is gone now.
    assert!(!xdp_attached(&tb, GW_LAN_IF) && !xdp_attached(&tb, GW_WAN_IF));
    assert!(
        !pins.exists(),
        "the pin directory is removed: {:?}",
        std::fs::read_dir(&pins).map(|d| d.count())
    );
}

#[test]
fn pin_dir_must_be_on_bpffs_and_is_exclusive() {
    let tb = Testbed::new("fp");
    let alerts = tb.file("alerts.json");
    let not_bpf = tb.file("plain/nsdb");
    let args = tb.nsdb_args(
        "monitor",
        &alerts,
        None,
        &["--on-exit", "keep", "--pin-dir", not_bpf.to_str().unwrap()],
    );
    let mut all = vec![
        nsdb_tests::nsdb_bin().to_str().unwrap().to_string(),
        "run".into(),
    ];
    all.extend(args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = tb.gw.cmd(&refs).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not on a BPF file system"), "{err}");
    assert!(!tb.file("plain").exists(), "nothing created: {err}");
    assert!(!xdp_attached(&tb, GW_LAN_IF), "nothing attached");

    let bpffs = Mount::new(tb.file("bpffs"), "bpf", "");
    let pins = bpffs.0.join("one");
    let d = tb.start_nsdb(
        "monitor",
        &alerts,
        None,
        &["--on-exit", "keep", "--pin-dir", pins.to_str().unwrap()],
    );
    let out = tb
        .gw
        .cmd(&[
            nsdb_tests::nsdb_bin().to_str().unwrap(),
            "run",
            "--iface",
            GW_LAN_IF,
            "--on-exit",
            "keep",
            "--pin-dir",
            pins.to_str().unwrap(),
            "--metrics-addr",
            "off",
            "--control",
            "off",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("in use by another nsdb daemon"), "{err}");
    // The first daemon is untouched; stopping it with keep leaves the program attached.
    d.stop();
    assert!(xdp_attached(&tb, GW_LAN_IF), "keep leaves it attached");
    // Removing the pins detaches (what an operator does to remove nsdb for good).
    for e in std::fs::read_dir(&pins).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    assert!(!xdp_attached(&tb, GW_LAN_IF), "unpinned: detached");
}

#[test]
fn an_interface_that_disappears_and_comes_back_is_filtered_again() {
    let tb = Testbed::new("fi");
    let alerts = tb.file("alerts.json");
    let d = tb.start_nsdb("enforce", &alerts, None, &[]);
    assert!(!tb.cc_answers(), "dropped while attached");
    // Deleting the gateway's LAN interface deletes the pair (the LAN's eth0) too.
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
    assert!(
        xdp_attached(&tb, GW_LAN_IF),
        "{}\n{}",
        String::from_utf8_lossy(&tb.gw.ip(&["link", "show"]).stdout),
        d.stderr_text()
    );
    assert!(!tb.cc_answers(), "dropped again once re-attached");
    assert!(
        tb.dig_from_lan(ROOT_A4, ".", "NS", 3, &["+norecurse"])
            .is_some(),
        "a registered server answers through the re-created interface"
    );
    let c = d.stop();
    assert_eq!(counter_sum(&c, "query_unknown_drop_ipv4_udp"), 2, "{c}");
}

#[test]
fn a_full_disk_stops_nothing_and_the_database_catches_up() {
    let tb = Testbed::new("fs");
    let fs = Mount::new(tb.file("dbfs"), "tmpfs", "size=8m");
    let db = fs.0.join("history.db");
    let alerts = tb.file("alerts.json");
    let d = tb.start_nsdb("enforce", &alerts, Some(&db), &[]);
    let glue = tb.names_of("glue");
    let (fails, _) = tb.resolve_list(&glue);
    assert!(fails.is_empty(), "{}", tb.describe_failures(&fails));
    std::thread::sleep(Duration::from_millis(1500));

    // Fill the file system.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", fs.0.join("fill").display()))
        .output()
        .unwrap();
    let later: Vec<&Expect> = tb
        .names
        .iter()
        .filter(|e| e.kind == "glueless" || e.kind == "v6only")
        .collect();
    assert!(!later.is_empty());
    let (fails, _) = tb.resolve_list(&later);
    assert!(
        fails.is_empty(),
        "learning goes on in memory with the disk full: {}",
        tb.describe_failures(&fails)
    );
    assert!(
        d.wait_for_line(
            "writing the history database failed",
            Duration::from_secs(5)
        ),
        "the failure is reported: {}",
        d.stderr_text()
    );
    let lookup = |addr: &str| {
        let out = Command::new(nsdb_tests::nsdb_bin())
            .args(["lookup", addr, "--db"])
            .arg(&db)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // While the disk is full: what was committed before is there, what was learned since
    // is not (yet).
    let before = lookup(GLUE1_4);
    assert!(before.contains("glue.test"), "{before}");
    let missing = lookup(GLUELESS4);
    assert!(
        !missing.contains("glueless.test") && !missing.contains("error"),
        "not written while the disk is full: {missing}"
    );

    // Space returns: the queued rows are written within a second or two.
    std::fs::remove_file(fs.0.join("fill")).unwrap();
    assert!(
        d.wait_for_line("can be written again", Duration::from_secs(5)),
        "{}",
        d.stderr_text()
    );
    let report = d.stop_report();
    let live = &report["live"];
    assert!(live["db_errors"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(live["db_queued"], 0, "{report}");
    assert_eq!(live["db_dropped"], 0, "{report}");
    for (addr, zone) in [(GLUELESS4, "glueless.test"), (V6ONLY6, "v6only.test")] {
        let out = lookup(addr);
        assert!(
            out.contains(zone),
            "{addr} learned while the disk was full is in the history: {out}"
        );
    }
}
