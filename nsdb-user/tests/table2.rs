//! The paper's Table 2 reproduced on a capture built here: queries to learned name servers are
//! "registered glueA record", queries to other addresses "unknown". The addresses are the
//! paper's; this only writes a file, nothing is sent anywhere.

mod common;
use common::*;
use hickory_proto::rr::RecordType;

const RESOLVER: &str = "192.0.2.10:40000";
const CLIENT: &str = "192.0.2.20:50000";

#[test]
fn table2() {
    let d = tmpdir("table2");
    // Learning trace.
    let mut p = Pcap::new();
    let t0 = 1_414_782_044_594;
    // A root server refers the resolver to the net servers (glue included), and to
    // akamai.net's via "net" again (a flattened iteration; what matters is the glue).
    p.udp(
        t0,
        RESOLVER,
        "198.41.0.4:53",
        &query(32090, "smarticon.geotrust.com", RecordType::A),
    );
    p.udp(
        t0 + 65,
        "198.41.0.4:53",
        RESOLVER,
        &answer(
            32090,
            "smarticon.geotrust.com",
            RecordType::A,
            &["192.0.2.99"],
            900,
        ),
    );
    p.udp(
        t0 + 100,
        RESOLVER,
        "198.41.0.4:53",
        &query(1, "www.verisign.net", RecordType::A),
    );
    p.udp(
        t0 + 130,
        "198.41.0.4:53",
        RESOLVER,
        &referral(
            1,
            "www.verisign.net",
            RecordType::A,
            "net",
            &["c2.nstld.net", "a2.nstld.net"],
            &[
                ("c2.nstld.net", "192.26.92.31"),
                ("a2.nstld.net", "192.12.94.31"),
            ],
            172800,
        ),
    );
    p.udp(
        t0 + 200,
        RESOLVER,
        "198.41.0.4:53",
        &query(2, "www.akamai.net", RecordType::A),
    );
    p.udp(
        t0 + 230,
        "198.41.0.4:53",
        RESOLVER,
        &referral(
            2,
            "www.akamai.net",
            RecordType::A,
            "net",
            &["a1-67.akam.net", "a2-67.akam.net"],
            &[
                ("a1-67.akam.net", "23.61.249.54"),
                ("a2-67.akam.net", "23.61.249.55"),
            ],
            172800,
        ),
    );
    let learn = d.join("learn.pcap");
    p.write(&learn);
    let db = d.join("h.db");
    let s = learn_json(&[&learn], &db, &[]);
    assert_eq!(s["engine"]["learned"], 4, "{s:#}");

    // Table 2: the client's nslookup commands.
    let mut c = Pcap::new();
    let rows = [
        ("www.google.com", "8.8.8.8"),
        ("www.google.com", "8.8.4.4"),
        ("www.verisign.net", "192.26.92.31"),
        ("www.verisign.net", "192.12.94.31"),
        ("www.akamai.net", "23.61.249.54"),
        ("www.akamai.net", "23.61.249.55"),
    ];
    for (i, (q, dst)) in rows.iter().enumerate() {
        c.udp(
            t0 + 10_000 + i as u64,
            CLIENT,
            &format!("{dst}:53"),
            &query(100 + i as u16, q, RecordType::A),
        );
    }
    let check = d.join("check.pcap");
    c.write(&check);
    let out = nsdb_ok(&[
        "check",
        check.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(
        out,
        "8.8.8.8 is unknown\n\
         8.8.4.4 is unknown\n\
         192.26.92.31 is registered glueA record\n\
         192.12.94.31 is registered glueA record\n\
         23.61.249.54 is registered glueA record\n\
         23.61.249.55 is registered glueA record\n"
    );

    // JSON says what the destination is known as.
    let out = nsdb_ok(&[
        "check",
        check.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 6);
    assert_eq!(v[0]["verdict"], "unknown");
    assert_eq!(v[0]["qname"], "www.google.com");
    assert_eq!(v[0]["qtype"], "A");
    assert_eq!(v[0]["source"], CLIENT);
    assert!(v[0]["known_as"].is_null());
    assert_eq!(v[2]["verdict"], "registered");
    assert_eq!(v[2]["known_as"]["zone"], "net");
    assert_eq!(v[2]["known_as"]["ns_name"], "c2.nstld.net");
    assert_eq!(v[2]["known_as"]["first_seen_ms"], t0 + 130);
    assert_eq!(v[4]["known_as"]["ns_name"], "a1-67.akam.net");

    // --replay honours TTLs: the same checks 3 days later (TTL 2 days, clamped max 2 days,
    // grace 15 min) find nothing registered but the root servers.
    let late = t0 + 3 * 86_400_000;
    let mut r = Pcap::new();
    for (i, (q, dst)) in rows.iter().enumerate() {
        r.udp(
            late + i as u64,
            CLIENT,
            &format!("{dst}:53"),
            &query(200 + i as u16, q, RecordType::A),
        );
    }
    let late_pcap = d.join("late.pcap");
    r.write(&late_pcap);
    let out = nsdb_ok(&[
        "check",
        learn.to_str().unwrap(),
        late_pcap.to_str().unwrap(),
        "--db",
        d.join("none.db").to_str().unwrap(),
        "--replay",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // learning trace's own queries go to a root server: registered
    assert_eq!(&lines[..3], &["198.41.0.4 is registered glueA record"; 3]);
    assert_eq!(
        lines[3..]
            .iter()
            .filter(|l| l.ends_with("is unknown"))
            .count(),
        6,
        "{out}"
    );
    // ...while within the TTL they are registered.
    let mut r = Pcap::new();
    for (i, (q, dst)) in rows.iter().enumerate() {
        r.udp(
            t0 + 60_000 + i as u64,
            CLIENT,
            &format!("{dst}:53"),
            &query(300 + i as u16, q, RecordType::A),
        );
    }
    let soon = d.join("soon.pcap");
    r.write(&soon);
    let out = nsdb_ok(&[
        "check",
        learn.to_str().unwrap(),
        soon.to_str().unwrap(),
        "--db",
        d.join("none2.db").to_str().unwrap(),
        "--replay",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[3..]
            .iter()
            .filter(|l| l.ends_with("registered glueA record"))
            .count(),
        4,
        "{out}"
    );
}
