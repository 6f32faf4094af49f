//! The history database: real SQLite file in WAL mode with the paper's columns; learning twice
//! accumulates; SIGTERM during `nsdb learn` loses nothing that was read.

mod common;
use common::*;
use hickory_proto::rr::RecordType;

const ROOT: &str = "198.41.0.4:53";

/// `n` query/referral pairs, each teaching a different (zone, NS, address).
fn referrals(n: u32, t0: u64) -> Pcap {
    let mut p = Pcap::new();
    for i in 0..n {
        let zone = format!("z{i}.test");
        let q = format!("www.{zone}");
        let ns = format!("ns.{zone}");
        let addr = format!("198.18.{}.{}", (i >> 8) & 0xff, i & 0xff);
        let id = (i & 0xffff) as u16;
        let port = 20_000 + (i % 40_000) as u16;
        let client = format!("192.0.2.10:{port}");
        p.udp(t0 + i as u64, &client, ROOT, &query(id, &q, RecordType::A));
        p.udp(
            t0 + i as u64,
            ROOT,
            &client,
            &referral(
                id,
                &q,
                RecordType::A,
                &zone,
                &[&ns],
                &[(&ns, &addr)],
                86_400,
            ),
        );
    }
    p
}

#[test]
fn schema_wal_and_accumulation() {
    let d = tmpdir("store-schema");
    let pc = d.join("r.pcap");
    referrals(3, 1_700_000_000_000).write(&pc);
    let db = d.join("h.db");
    let s = learn_json(&[&pc], &db, &[]);
    assert_eq!(s["engine"]["learned"], 3);
    let s = learn_json(&[&pc], &db, &[]);
    assert_eq!(s["history_restored"], 3, "{s}");
    assert_eq!(s["engine"]["learned"], 0, "{s}");
    assert_eq!(s["engine"]["refreshed"], 3, "{s}");
    let c = rusqlite::Connection::open(&db).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let app: i32 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, 0x4e53_4442);
    let (count, first, last): (i64, i64, i64) = c
        .query_row(
            "SELECT count, first_seen, last_seen FROM history WHERE addr = '198.18.0.1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (count, first, last),
        (2, 1_700_000_000_001, 1_700_000_000_001)
    );
    // The paper's columns.
    let cols: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('ns_db')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for want in [
        "querytime",
        "queryid",
        "queryname",
        "res_time",
        "zname",
        "nsttl",
        "nsfqdn",
        "glueAttl",
        "glueA",
    ] {
        assert!(
            cols.iter().any(|c| c == want),
            "ns_db lacks {want}: {cols:?}"
        );
    }
    let q: (i64, i64, String) = c
        .query_row(
            "SELECT querytime, queryid, queryname FROM query_db ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(q, (1_700_000_000_000, 0, "www.z0.test".to_string()));
    // export json carries Table 1's columns.
    let out = nsdb_ok(&["export", "--db", db.to_str().unwrap(), "--format", "json"]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    // One row per first sighting (the history table counts the rest)...
    assert_eq!(v.len(), 3);
    assert_eq!(v[0]["zname"], "z0.test");
    assert_eq!(v[0]["nsfqdn"], "ns.z0.test");
    assert_eq!(v[0]["glueA"], "198.18.0.0");
    assert_eq!(v[0]["glueAttl"], 86_400);
    assert_eq!(v[0]["nsttl"], 86_400);
    // ...or one per sighting, and every query, as the paper's prototype did.
    let db2 = d.join("all.db");
    let s = learn_json(&[&pc], &db2, &["--all-queries", "--all-ns-rows"]);
    assert_eq!(s["db"]["query_db_rows"], 3);
    let s = learn_json(&[&pc], &db2, &["--all-queries", "--all-ns-rows"]);
    assert_eq!(s["db"]["query_db_rows"], 6);
    assert_eq!(s["db"]["ns_db_rows"], 6);
}

#[test]
fn sigterm_loses_nothing() {
    let d = tmpdir("store-sigterm");
    let pc = d.join("r.pcap");
    referrals(40_000, 1_700_000_000_000).write(&pc);
    let db = d.join("h.db");
    let mut args = vec![
        "learn".to_string(),
        "-q".into(),
        "--format".into(),
        "json".into(),
        "--db".into(),
        db.display().to_string(),
    ];
    // The same file many times: long enough to be interrupted.
    for _ in 0..400 {
        args.push(pc.display().to_string());
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nsdb"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc_kill(child.id() as i32, 15) };
    assert_eq!(rc, 0);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{:?} {err}", o.status);
    assert!(
        err.contains("stopped by signal"),
        "SIGTERM came too late or was not caught: {err}"
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let learned = s["engine"]["learned"].as_u64().unwrap();
    let refreshed = s["engine"]["refreshed"].as_u64().unwrap();
    assert!(learned > 0);
    assert!(
        s["read"]["files"].as_u64().unwrap() < 400,
        "not interrupted: {s}"
    );
    // Everything the engine produced before the signal is in the database.
    assert_eq!(s["db"]["history_rows"].as_u64().unwrap(), learned, "{s}");
    assert_eq!(s["db"]["ns_db_rows"].as_u64().unwrap(), learned, "{s}");
    let c = rusqlite::Connection::open(&db).unwrap();
    let sightings: i64 = c
        .query_row("SELECT sum(count) FROM history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        sightings as u64,
        learned + refreshed,
        "every sighting counted in history"
    );
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
