//! A spoofed response (wrong id, port or server) teaches nothing; the real one still does.

mod common;
use common::*;
use hickory_proto::rr::RecordType;

const RESOLVER: &str = "192.0.2.10:40000";
/// a.root-servers.net (a built-in root hint, so the referral is in bailiwick).
const ROOT: &str = "198.41.0.4:53";

/// The root's referral to "test" (NS ns1.nic.test, glue 192.0.2.53, TTL 3600) for question
/// `q` (type A) with DNS id `id`.
fn referral_for(id: u16, q: &str) -> Vec<u8> {
    referral(
        id,
        q,
        RecordType::A,
        "test",
        &["ns1.nic.test"],
        &[("ns1.nic.test", "192.0.2.53")],
        3600,
    )
}

#[test]
fn spoofed_responses_teach_nothing() {
    let d = tmpdir("spoof");
    let mut p = Pcap::new();
    p.udp(
        1_000,
        RESOLVER,
        ROOT,
        &query(7, "www.example.test", RecordType::A),
    );
    // wrong id
    p.udp(1_001, ROOT, RESOLVER, &referral_for(8, "www.example.test"));
    // wrong client port
    p.udp(
        1_002,
        ROOT,
        "192.0.2.10:40001",
        &referral_for(7, "www.example.test"),
    );
    // wrong server address (another root server)
    p.udp(
        1_003,
        "199.7.83.42:53",
        RESOLVER,
        &referral_for(7, "www.example.test"),
    );
    // wrong question
    p.udp(1_004, ROOT, RESOLVER, &referral_for(7, "evil.example.test"));
    let spoof_only = d.join("spoof.pcap");
    p.write(&spoof_only);

    let db = d.join("h.db");
    let s = learn_json(&[&spoof_only], &db, &[]);
    assert_eq!(s["engine"]["unsolicited"], 3, "{s:#}");
    assert_eq!(s["engine"]["question_mismatch"], 1, "{s:#}");
    assert_eq!(s["engine"]["learned"], 0, "{s:#}");
    assert_eq!(s["db"]["history_rows"], 0, "{s:#}");
    let out = nsdb_ok(&["lookup", "192.0.2.53", "--db", db.to_str().unwrap()]);
    assert_eq!(out.lines().next(), Some("192.0.2.53 is unknown"));

    // Then the genuine answer arrives and pairs; a replay of it afterwards is unsolicited.
    let real = referral_for(7, "www.example.test");
    p.udp(1_010, ROOT, RESOLVER, &real);
    p.udp(1_011, ROOT, RESOLVER, &real);
    let both = d.join("both.pcap");
    p.write(&both);
    let db2 = d.join("h2.db");
    let s = learn_json(&[&both], &db2, &[]);
    assert_eq!(s["engine"]["paired"], 1, "{s:#}");
    assert_eq!(s["engine"]["unsolicited"], 4, "{s:#}");
    assert_eq!(s["engine"]["learned"], 1, "{s:#}");
    let out = nsdb_ok(&[
        "lookup",
        "192.0.2.53",
        "--db",
        db2.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["registered"], true);
    assert_eq!(v["history"][0]["zone"], "test");
    assert_eq!(v["history"][0]["ns_name"], "ns1.nic.test");
    assert_eq!(v["history"][0]["count"], 1);
}
