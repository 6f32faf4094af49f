//! Every capture in ../shared/pcaps is read without a panic; DNS message counts agree with the
//! tshark-verified counts in MANIFEST.tsv; malformed messages are counted and skipped; the
//! rest is learned.

mod common;
use common::*;
use std::path::PathBuf;

/// (dns messages, queries, responses) from the manifest's "N DNS msgs (Q queries, R responses)".
fn manifest_counts(desc: &str) -> (u64, u64, u64) {
    let i = desc.find(" DNS msgs (").expect("DNS msgs in description");
    let head: String = desc[..i]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let n: u64 = head.chars().rev().collect::<String>().parse().unwrap();
    let rest = &desc[i + " DNS msgs (".len()..];
    let q: u64 = rest.split(' ').next().unwrap().parse().unwrap();
    let r: u64 = rest
        .split(", ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (n, q, r)
}

/// Where nsdb and tshark legitimately differ, with the reason.
fn exception(file: &str) -> Option<((u64, u64, u64), &'static str)> {
    match file {
        "arkime-ipv6-dns-ns-glue.pcap" => Some((
            (36, 18, 18),
            "tshark also decodes the DNS response quoted inside an ICMPv6 port-unreachable (frame 137)",
        )),
        "ndpi-resolver-responses-from-45-auth-servers-snaplen.pcap" => Some((
            (88, 0, 88),
            "frames 4, 12 and 21 are cut inside the 12-byte DNS header: tshark shows their id, \
             nsdb counts them as runts (and frames 58-59, cut before it, neither counts)",
        )),
        "ndpi-fuzz-2006-06-26-2594.pcap" => Some((
            (297, 250, 47),
            "fuzzed capture: tshark decodes DNS on non-53 ports and shows 2 runts (<12 bytes) as queries",
        )),
        _ => None,
    }
}

#[test]
fn every_capture_is_read_and_counts_match_tshark() {
    let d = tmpdir("all-each");
    let m = manifest();
    assert!(
        m.len() >= 60,
        "expected about 70 captures, manifest lists {}",
        m.len()
    );
    for (i, (path, _cat, desc)) in m.iter().enumerate() {
        let file = path.file_name().unwrap().to_str().unwrap();
        let s = learn_json(&[path], &d.join(format!("{i}.db")), &[]);
        let ours = (
            s["read"]["dns_messages"].as_u64().unwrap(),
            s["read"]["queries"].as_u64().unwrap(),
            s["read"]["responses"].as_u64().unwrap(),
        );
        let want = match exception(file) {
            Some((c, _why)) => c,
            None => manifest_counts(desc),
        };
        assert_eq!(
            ours, want,
            "{file}: (messages, queries, responses) vs tshark"
        );
        assert_eq!(s["read"]["files_failed"], 0, "{file}");
        // Every response is accounted for: paired, unsolicited, mismatched or malformed.
        let e = &s["engine"];
        let r = e["responses"].as_u64().unwrap();
        let acc = ["paired", "unsolicited", "question_mismatch", "malformed"]
            .iter()
            .map(|k| e[k].as_u64().unwrap())
            .sum::<u64>();
        assert!(
            acc >= r,
            "{file}: responses {r} but only {acc} accounted for: {e}"
        );
    }
}

#[test]
fn malformed_captures_are_counted_and_skipped() {
    let d = tmpdir("malformed");
    // (file, malformed messages nsdb skips). Files whose damage lies in rdata of types nsdb
    // does not read (EDNS options, LOC, SVCB) or that use legal backward pointer chains
    // (max-compression-depth) are parsed as far as nsdb needs and count 0.
    let cases: &[(&str, u64)] = &[
        ("tcpdump-dns-forward-pointer-loop.pcap", 1),
        ("tcpdump-dns-badlabel.pcap", 1),
        ("zeek-dns-max-compression-depth.pcap", 0),
        ("zeek-dns-edns-bad-length.pcap", 0),
        ("zeek-dns-loc-invalid-length.pcap", 0),
        ("zeek-dns-svcb-alpn-too-long.pcap", 0),
        ("zeek-dns-invalid-names.pcap", 3),
        ("zeek-dns-edns-ecs-bad.pcap", 0),
        ("pcpp-dns-stack-overflow.pcap", 1),
        ("pcpp-dns-too-many-resources.pcap", 1),
        ("suricata-dns-forward-pointer.pcap", 1),
        ("suricata-dns-junk-request-first.pcap", 1),
        ("ndpi-malformed-dns.pcap", 4),
    ];
    for (f, want) in cases {
        let p = pcaps().join("D-malformed").join(f);
        let s = learn_json(&[&p], &d.join(format!("{f}.db")), &[]);
        let got = s["engine"]["malformed"].as_u64().unwrap() + s["read"]["runts"].as_u64().unwrap();
        assert_eq!(got, *want, "{f}: malformed count; summary {s}");
        assert_eq!(
            s["engine"]["learned"], 0,
            "{f}: a malformed capture taught something"
        );
    }
    // DNS over TCP on a non-standard port is found with --port.
    let p = pcaps().join("D-malformed/suricata-dns-tcp-truncated-rname.pcap");
    let s = learn_json(&[&p], &d.join("1053.db"), &["--port", "1053"]);
    assert_eq!(s["read"]["capture"]["tcp"]["messages"], 1, "{s}");
    assert_eq!(s["engine"]["queries"], 1, "{s}");
}

#[test]
fn all_captures_in_one_run_plus_bad_files() {
    let d = tmpdir("all-once");
    let mut files: Vec<PathBuf> = manifest().into_iter().map(|(p, _, _)| p).collect();
    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let text = d.join("notes.pcap");
    std::fs::write(&text, b"this is not a capture\n").unwrap();
    files.insert(3, empty.clone());
    files.insert(10, text.clone());
    files.insert(20, d.to_path_buf());
    let db = d.join("h.db");
    let mut args: Vec<String> = vec![
        "learn".into(),
        "-q".into(),
        "--format".into(),
        "json".into(),
        "--db".into(),
        db.display().to_string(),
    ];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = nsdb(&a);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(&format!("{}: empty file", empty.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: not a pcap or pcapng file", text.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: is a directory", d.display())),
        "{err}"
    );
    assert!(
        err.contains("3 of 72 files could not be read") || err.contains("3 of"),
        "{err}"
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary JSON");
    assert_eq!(s["read"]["files_failed"], 3);
    // The good files were learned and written.
    let learned = s["engine"]["learned"].as_u64().unwrap();
    assert!(learned >= 80, "learned {learned}");
    let hist = s["db"]["history_rows"].as_u64().unwrap();
    assert!(hist >= learned, "history {hist} < learned {learned}");
    let out = nsdb_ok(&["lookup", "37.209.192.9", "--db", db.to_str().unwrap()]);
    assert!(
        out.starts_with("37.209.192.9 is registered glueA record"),
        "{out}"
    );
    assert!(out.contains("zone aaa  ns a.nic.aaa"), "{out}");
}
