//! A glue-less delegation is resolved by a later lookup of the NS name within the window
//! (paper §4: 2 s), and not after it.

mod common;
use common::*;
use hickory_proto::rr::RecordType;

const RESOLVER: &str = "192.0.2.10:40000";
const ROOT: &str = "198.41.0.4:53";
const OTHER: &str = "198.51.100.53:53";

/// Referral for example.test to ns.elsewhere.test without glue at t=10.000 s, then the
/// resolver's A lookup of ns.elsewhere.test answered `delay_ms` later.
fn trace(delay_ms: u64) -> Pcap {
    let mut p = Pcap::new();
    p.udp(
        10_000,
        RESOLVER,
        ROOT,
        &query(1, "www.example.test", RecordType::A),
    );
    p.udp(
        10_020,
        ROOT,
        RESOLVER,
        &referral(
            1,
            "www.example.test",
            RecordType::A,
            "example.test",
            &["ns.elsewhere.test"],
            &[],
            7200,
        ),
    );
    p.udp(
        10_020 + delay_ms - 5,
        RESOLVER,
        OTHER,
        &query(2, "ns.elsewhere.test", RecordType::A),
    );
    p.udp(
        10_020 + delay_ms,
        OTHER,
        RESOLVER,
        &answer(
            2,
            "ns.elsewhere.test",
            RecordType::A,
            &["203.0.113.77"],
            600,
        ),
    );
    p
}

fn registered(db: &std::path::Path) -> bool {
    let out = nsdb_ok(&["lookup", "203.0.113.77", "--db", db.to_str().unwrap()]);
    out.starts_with("203.0.113.77 is registered glueA record")
}

#[test]
fn lookup_within_window_supplies_the_address() {
    let d = tmpdir("glueless-in");
    let pc = d.join("t.pcap");
    trace(1_900).write(&pc);
    let db = d.join("h.db");
    let s = learn_json(&[&pc], &db, &[]);
    assert_eq!(s["engine"]["glueless_pending"], 1, "{s:#}");
    assert_eq!(s["engine"]["glueless_resolved"], 1, "{s:#}");
    assert!(registered(&db));
    // ns_db: one row with empty glue (the referral), one completed by the lookup.
    let csv = nsdb_ok(&["export", "--db", db.to_str().unwrap(), "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "querytime,queryid,queryname,res_time,zname,nsttl,nsfqdn,glueAttl,glueA"
    );
    assert_eq!(
        lines[1],
        "10000,1,www.example.test,10020,example.test,7200,ns.elsewhere.test,,"
    );
    assert_eq!(
        lines[2],
        "10000,1,www.example.test,10020,example.test,7200,ns.elsewhere.test,600,203.0.113.77"
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn lookup_after_window_does_not() {
    let d = tmpdir("glueless-out");
    let pc = d.join("t.pcap");
    trace(2_500).write(&pc);
    let db = d.join("h.db");
    let s = learn_json(&[&pc], &db, &[]);
    assert_eq!(s["engine"]["glueless_resolved"], 0, "{s:#}");
    assert!(!registered(&db));
    // The window is configurable.
    let db2 = d.join("h2.db");
    let s = learn_json(&[&pc], &db2, &["--glueless-window-ms", "3000"]);
    assert_eq!(s["engine"]["glueless_resolved"], 1, "{s:#}");
    assert!(registered(&db2));
}
