//! Operating a running daemon: the control socket (`nsdb stats`, `nsdb allow add|remove|list`)
//! and the TOML config file (`--config`, flags overriding it, `--check-config`), with the
//! real testbed (Unbound + NSD tree, see `nsdb_tests::testbed`).

use std::{os::unix::fs::PermissionsExt as _, path::Path, process::Output};

use nsdb_tests::{
    nsdb_bin,
    servers::{Daemon, read_alerts},
    testbed::*,
};
use serde_json::Value;

fn nsdb(args: &[&str]) -> Output {
    std::process::Command::new(nsdb_bin())
        .args(args)
        .output()
        .expect("running nsdb")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stats(control: &Path) -> Value {
    let out = nsdb(&[
        "stats",
        "--format",
        "json",
        "--control",
        control.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn public_answers(tb: &Testbed) -> bool {
    tb.dig_from_lan(PUBLIC1_4, "h1.glue.test", "A", 2, &["+norecurse"])
        .is_some_and(|o| o.contains("ANSWER SECTION"))
}

#[test]
fn control_socket_shows_live_counters_and_changes_exceptions_without_a_restart() {
    let tb = Testbed::new("oc");
    let alerts = tb.file("alerts.json");
    let args = tb.nsdb_args("enforce", &alerts, None, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = Daemon::start(&tb.gw, &args);
    let control = d
        .control
        .clone()
        .expect("Daemon::start gives a control socket");
    let ctl = control.to_str().unwrap();
    let mode = std::fs::metadata(&control).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only root may use the control socket");

    assert!(!public_answers(&tb), "unknown: dropped");
    let s = stats(&control);
    assert_eq!(s["mode"], "enforce");
    assert_eq!(s["attached"], 2);
    assert_eq!(s["counters"]["query_unknown_drop_ipv4_udp"], 1, "{s}");
    assert_eq!(s["counters"]["query_exempt_pass_ipv4_udp"], 0, "{s}");

    let out = nsdb(&["allow", "add", PUBLIC1_4, "--control", ctl]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "198.18.8.8/32 added"
    );
    let out = nsdb(&["allow", "add", "198.18.8.8/32", "--control", ctl]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "198.18.8.8/32 was already allowed"
    );
    assert!(public_answers(&tb), "an exception now: passes");
    let out = nsdb(&["allow", "list", "--control", ctl]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "198.18.8.8/32\truntime\n"
    );
    let s = stats(&control);
    assert_eq!(s["counters"]["query_exempt_pass_ipv4_udp"], 1, "{s}");
    assert_eq!(s["counters"]["query_unknown_drop_ipv4_udp"], 1, "{s}");

    let out = nsdb(&["allow", "remove", PUBLIC1_4, "--control", ctl]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !public_answers(&tb),
        "no longer an exception: dropped again"
    );
    let out = nsdb(&["allow", "remove", PUBLIC2_4, "--control", ctl]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "nsdb: error: 198.18.4.4/32 is not an exception (see nsdb allow list)"
    );
    let out = nsdb(&["allow", "list", "--control", ctl]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    // The summary for people shows the same numbers.
    let out = nsdb(&["stats", "--control", ctl]);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(t.starts_with("nsdb enforce on lan0, wan0"), "{t}");
    let unknown = t
        .lines()
        .find(|l| l.trim_start().starts_with("unknown"))
        .unwrap();
    let nums: Vec<u64> = unknown
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums, [0, 2], "0 passed, 2 dropped: {t}");
    let exempt = t
        .lines()
        .find(|l| l.trim_start().starts_with("exempt"))
        .unwrap();
    assert!(exempt.split_whitespace().any(|w| w == "1"), "{t}");

    let c = d.stop();
    assert_eq!(c["query_unknown_drop_ipv4_udp"], 2, "{c}");
    assert_eq!(c["query_exempt_pass_ipv4_udp"], 1, "{c}");
    assert!(!control.exists(), "the socket is removed on exit");
    assert_eq!(read_alerts(&alerts).len(), 2, "one alert per dropped query");
    let out = nsdb(&["stats", "--control", ctl]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no nsdb daemon answers on"),
        "{}",
        text(&out)
    );
}

#[test]
fn config_file_equals_flags_and_command_line_flags_win() {
    let tb = Testbed::new("of");
    let alerts = tb.file("alerts.json");
    let db = tb.file("history.db");
    let conf = tb.file("nsdb.toml");
    std::fs::write(
        &conf,
        format!(
            "# nsdb run configuration\n\
             iface = [\"{GW_LAN_IF}\", \"{GW_WAN_IF}\"]\n\
             mode = \"enforce\"\n\
             internal = [\"{LAN4_CIDR}\", \"{LAN6_CIDR}\"]\n\
             root_hints = \"{}\"\n\
             alerts = \"{}\"\n\
             db = \"{}\"\n\
             event-rate = 0\n\
             metrics-addr = \"off\"\n",
            tb.root_hints().display(),
            alerts.display(),
            db.display()
        ),
    )
    .unwrap();
    let c = conf.to_str().unwrap();

    // --check-config: the effective configuration, and nothing created.
    let nsdb = nsdb_bin();
    let check_config = |extra: &[&str]| {
        let mut args = vec![
            nsdb.to_str().unwrap(),
            "run",
            "--config",
            c,
            "--check-config",
        ];
        args.extend_from_slice(extra);
        tb.gw.cmd(&args).output().unwrap()
    };
    let out = check_config(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["config"], "ok");
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["ifaces"], serde_json::json!([GW_LAN_IF, GW_WAN_IF]));
    assert_eq!(v["internal"], serde_json::json!([LAN4_CIDR, LAN6_CIDR]));
    assert_eq!(v["root_hints"], 3);
    assert_eq!(v["event_rate"], 0);
    assert_eq!(v["metrics_addr"], Value::Null);
    assert!(
        !alerts.exists() && !db.exists(),
        "--check-config creates nothing"
    );
    let out = check_config(&["--iface", "nosuch0"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "nsdb: error: interface \"nosuch0\" does not exist"
    );

    // The file alone: enforce.
    let d = Daemon::start(&tb.gw, &["--config", c]);
    let cc = || {
        tb.dig_from_lan(FEEDERBOT_CC4, CC_CMD_NAME, "TXT", 2, &["+norecurse"])
            .is_some()
    };
    assert!(!cc(), "mode = enforce from the file");
    let (fails, _) = tb.resolve_list(&tb.names_of("glue"));
    assert!(
        fails.is_empty(),
        "{:?}",
        fails.first().map(|f| f.to_string())
    );
    let c1 = d.stop();
    assert_eq!(c1["query_unknown_drop_ipv4_udp"], 1, "{c1}");
    assert!(db.exists(), "db from the file");
    assert_eq!(read_alerts(&alerts).len(), 1);

    // A flag on the command line replaces the file's value.
    let d = Daemon::start(&tb.gw, &["--config", c, "--mode", "monitor"]);
    assert!(cc(), "--mode monitor on the command line wins");
    let c2 = d.stop();
    assert_eq!(c2["query_unknown_pass_ipv4_udp"], 1, "{c2}");
    assert_eq!(c2["query_unknown_drop_ipv4_udp"], 0, "{c2}");
}
