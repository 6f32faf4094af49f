//! Bad input gives a one-line error naming what and where, and a non-zero exit; never a panic.

mod common;
use common::*;
use hickory_proto::rr::RecordType;

fn fails(args: &[&str]) -> String {
    let o = nsdb(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "nsdb {args:?} should fail; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "nsdb {args:?} panicked: {err}");
    err
}

#[test]
fn bad_capture_files() {
    let d = tmpdir("cli-bad");
    let db = d.join("h.db");
    let db = db.to_str().unwrap();
    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let e = fails(&["learn", "-q", empty.to_str().unwrap(), "--db", db]);
    assert!(
        e.contains(&format!("nsdb: {}: empty file", empty.display())),
        "{e}"
    );
    let e = fails(&["check", d.to_str().unwrap(), "--db", db]);
    assert!(e.contains("is a directory"), "{e}");
    let e = fails(&["learn", "-q", "/nonexistent/x.pcap", "--db", db]);
    assert!(
        e.contains("/nonexistent/x.pcap: No such file or directory"),
        "{e}"
    );
}

#[test]
fn truncated_capture_keeps_what_came_before() {
    let d = tmpdir("cli-trunc");
    let mut p = Pcap::new();
    p.udp(
        1_000,
        "192.0.2.10:40000",
        "198.41.0.4:53",
        &query(1, "a.test", RecordType::A),
    );
    p.udp(
        1_010,
        "198.41.0.4:53",
        "192.0.2.10:40000",
        &referral(
            1,
            "a.test",
            RecordType::A,
            "test",
            &["ns.test"],
            &[("ns.test", "192.0.2.53")],
            3600,
        ),
    );
    p.udp(
        1_020,
        "192.0.2.10:40000",
        "198.41.0.4:53",
        &query(2, "b.test", RecordType::A),
    );
    let bytes = p.bytes();
    let cut = d.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let o = nsdb(&[
        "learn",
        "-q",
        "--format",
        "json",
        cut.to_str().unwrap(),
        "--db",
        d.join("h.db").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "a truncated capture is a warning: {err}"
    );
    assert!(
        err.contains(&format!(
            "{}: file truncated in the record at byte",
            cut.display()
        )),
        "{err}"
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["read"]["files_truncated"], 1);
    assert_eq!(s["engine"]["learned"], 1, "{s}");
}

#[test]
fn bad_flags() {
    let d = tmpdir("cli-flags");
    let db = d.join("h.db");
    let db = db.to_str().unwrap();
    let pc = d.join("x.pcap");
    Pcap::new().write(&pc);
    let pc = pc.to_str().unwrap();
    let e = fails(&[
        "learn",
        pc,
        "--db",
        db,
        "--min-ttl",
        "100",
        "--max-ttl",
        "10",
    ]);
    assert!(
        e.contains("--min-ttl 100 is larger than --max-ttl 10"),
        "{e}"
    );
    let e = fails(&["learn", pc, "--db", db, "--exception", "not-an-ip"]);
    assert!(
        e.contains("--exception \"not-an-ip\": not an IP address or prefix"),
        "{e}"
    );
    let e = fails(&["learn", pc, "--db", db, "--bailiwick", "sometimes"]);
    assert!(e.contains("invalid value 'sometimes'"), "{e}");
    let e = fails(&["lookup", "not-an-ip", "--db", db]);
    assert!(e.contains("invalid value 'not-an-ip'"), "{e}");
    let e = fails(&["export", "--db", db, "--format", "xml"]);
    assert!(e.contains("invalid value 'xml'"), "{e}");
    let e = fails(&[
        "learn",
        pc,
        "--db",
        db,
        "--root-hints",
        "/nonexistent/root.hints",
    ]);
    assert!(e.contains("--root-hints /nonexistent/root.hints"), "{e}");
    // Every flag has help with an example.
    for cmd in ["learn", "check", "lookup", "export"] {
        let h = nsdb_ok(&[cmd, "--help"]);
        assert!(h.contains("Example"), "{cmd} --help has no example:\n{h}");
        for line in h
            .lines()
            .filter(|l| l.trim_start().starts_with("--") && !l.contains("--help"))
        {
            let flag = line.split_whitespace().next().unwrap();
            let i = h.find(line).unwrap();
            let block: String = h[i..].lines().take(4).collect::<Vec<_>>().join(" ");
            assert!(
                block.contains("Example") || block.contains("example"),
                "{cmd} {flag}: help without an example: {block}"
            );
        }
    }
}

#[test]
fn missing_foreign_and_corrupt_databases_are_refused_and_untouched() {
    let d = tmpdir("cli-db");
    let pc = d.join("x.pcap");
    Pcap::new().write(&pc);
    let pc = pc.to_str().unwrap();
    // Missing: check/lookup/export say so (learn creates it).
    let missing = d.join("missing.db");
    for args in [
        vec!["check", pc, "--db", missing.to_str().unwrap()],
        vec!["lookup", "192.0.2.1", "--db", missing.to_str().unwrap()],
        vec![
            "export",
            "--db",
            missing.to_str().unwrap(),
            "--format",
            "csv",
        ],
    ] {
        let e = fails(&args);
        assert!(
            e.contains(&format!("{}: no such database", missing.display())),
            "{e}"
        );
        assert!(!missing.exists());
    }
    // Not SQLite.
    let text = d.join("text.db");
    std::fs::write(&text, b"name,address\nx,192.0.2.1\n").unwrap();
    let e = fails(&["learn", pc, "--db", text.to_str().unwrap()]);
    assert!(
        e.contains(&format!("{}: not an SQLite database", text.display())),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&text).unwrap(),
        b"name,address\nx,192.0.2.1\n"
    );
    // Somebody else's SQLite database.
    let foreign = d.join("foreign.db");
    foreign_db(&foreign);
    let before = std::fs::read(&foreign).unwrap();
    let e = fails(&["learn", pc, "--db", foreign.to_str().unwrap()]);
    assert!(e.contains("does not belong to nsdb"), "{e}");
    assert_eq!(std::fs::read(&foreign).unwrap(), before);
    // A real nsdb database, then damaged in the middle.
    let good = d.join("good.db");
    nsdb_ok(&[
        "learn",
        "-q",
        &pcaps()
            .join("A-iterative/dnscap-resolver-root-referral-aaa.pcap")
            .display()
            .to_string(),
        "--db",
        good.to_str().unwrap(),
    ]);
    let mut bytes = std::fs::read(&good).unwrap();
    assert!(
        bytes.len() > 8192,
        "db too small to damage: {}",
        bytes.len()
    );
    let end = bytes.len() - 100;
    for b in &mut bytes[4096..end] {
        *b = 0xa5;
    }
    std::fs::write(&good, &bytes).unwrap();
    let e = fails(&["lookup", "37.209.192.9", "--db", good.to_str().unwrap()]);
    assert!(
        e.contains(&format!("{}:", good.display()))
            && (e.contains("corrupt") || e.contains("malformed")),
        "{e}"
    );
    let e = fails(&["learn", pc, "--db", good.to_str().unwrap()]);
    assert!(e.contains("corrupt") || e.contains("malformed"), "{e}");
    assert_eq!(
        std::fs::read(&good).unwrap(),
        bytes,
        "corrupt database was modified"
    );
    // Each error is one line.
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}

/// Somebody else's SQLite database: one table that is not nsdb's.
fn foreign_db(path: &std::path::Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x');")
        .unwrap();
}
