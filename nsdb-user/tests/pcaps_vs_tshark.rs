//! On the captures with referrals (A-iterative, and C-stub ones with NS + glue), the
//! (zone, NS name, address) triples nsdb learns equal what tshark, an independent decoder, says
//! the responses contain, minus what pairing or bailiwick rejects, each rejection with its
//! reason.
//!
//! tshark's set is computed here: `tshark -r <pcap> -T json -J dns --no-duplicate-keys`, then for
//! each response, NS records of the answer and authority sections joined with the A/AAAA
//! records of the additional section whose owner is the NS name (RFC 1034 §4.2.1 glue).
//! nsdb's side comes from `nsdb learn --explain`, one verdict per candidate. Addresses nsdb
//! takes from the answer to a lookup of a registered name server's name (`ns_lookup`) are
//! outside that join; each must be an address record of that name in an answer tshark decoded.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

type Triple = (String, String, String);
/// A capture's expected result, as [`compare`] returns it: the capture's path, its
/// (zone, NS, address) triples as tshark sees them, how many nsdb learned, and the rest's
/// rejections by reason.
type Expected = (&'static str, usize, usize, &'static [(&'static str, usize)]);

fn norm(name: &str) -> String {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() || n == "<root>" {
        ".".into()
    } else {
        n
    }
}

/// Entries of a section object: `{"desc": {...}}`, where duplicates became arrays.
fn entries(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    if let Some(o) = v.as_object() {
        for (_, e) in o {
            match e {
                serde_json::Value::Array(a) => out.extend(a.iter()),
                e => out.push(e),
            }
        }
    }
    out
}

fn field<'a>(e: &'a serde_json::Value, k: &str) -> Option<&'a str> {
    match e.get(k)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Array(a) => a.first()?.as_str(),
        _ => None,
    }
}

/// The DNS messages of a capture as tshark decodes them.
fn tshark_messages(pcap: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-T",
            "json",
            "-J",
            "dns",
            "--no-duplicate-keys",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("tshark is needed for this test (apt-get install -y tshark): {e}")
        });
    assert!(out.status.success(), "tshark failed on {}", pcap.display());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tshark JSON");
    let mut msgs = Vec::new();
    for pkt in v.as_array().unwrap() {
        match pkt["_source"]["layers"].get("dns") {
            Some(serde_json::Value::Array(a)) => msgs.extend(a.iter().cloned()),
            Some(d) => msgs.push(d.clone()),
            None => {}
        }
    }
    msgs
}

/// (owner, address) of an A or AAAA record.
fn addr_record(e: &serde_json::Value) -> Option<(String, String)> {
    let a = match field(e, "dns.resp.type") {
        Some("1") => field(e, "dns.a"),
        Some("28") => field(e, "dns.aaaa"),
        _ => None,
    }?;
    let owner = field(e, "dns.resp.name")?;
    Some((
        norm(owner),
        a.parse::<std::net::IpAddr>().unwrap().to_string(),
    ))
}

/// (owner, address) of every A/AAAA record in the answer section of a response.
fn tshark_answers(msgs: &[serde_json::Value]) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for m in msgs {
        if field(&m["dns.flags_tree"], "dns.flags.response") != Some("1") {
            continue;
        }
        set.extend(entries(&m["Answers"]).into_iter().filter_map(addr_record));
    }
    set
}

fn tshark_triples(msgs: &[serde_json::Value]) -> BTreeSet<Triple> {
    let mut set = BTreeSet::new();
    for m in msgs {
        if field(&m["dns.flags_tree"], "dns.flags.response") != Some("1") {
            continue;
        }
        let mut ns = Vec::new();
        for sec in ["Answers", "Authoritative nameservers"] {
            for e in entries(&m[sec]) {
                if field(e, "dns.resp.type") == Some("2")
                    && field(e, "dns.resp.class") == Some("0x0001")
                    && let (Some(z), Some(t)) = (field(e, "dns.resp.name"), field(e, "dns.ns"))
                {
                    ns.push((norm(z), norm(t)));
                }
            }
        }
        let glue: Vec<(String, String)> = entries(&m["Additional records"])
            .into_iter()
            .filter_map(addr_record)
            .collect();
        for (z, t) in &ns {
            for (o, a) in &glue {
                if o == t {
                    set.insert((z.clone(), t.clone(), a.clone()));
                }
            }
        }
    }
    set
}

/// Verdicts per triple from `nsdb learn --explain` (only candidates with an address that come
/// from the response's own glue), and the triples learned from lookups of a registered name
/// server's name (`ns_lookup`).
fn nsdb_verdicts(pcap: &Path, name: &str) -> (BTreeMap<Triple, BTreeSet<String>>, Vec<Triple>) {
    let d = tmpdir(&format!("vs-tshark-{name}"));
    let ex = d.join("explain.jsonl");
    learn_json(
        &[pcap],
        &d.join("h.db"),
        &["--explain", ex.to_str().unwrap()],
    );
    let mut m: BTreeMap<Triple, BTreeSet<String>> = BTreeMap::new();
    let mut lookups = Vec::new();
    for l in std::fs::read_to_string(&ex).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let verdict = v["verdict"].as_str().unwrap().to_string();
        if v["addr"].is_null() {
            continue;
        }
        let t = (
            v["zone"].as_str().unwrap().to_string(),
            v["ns_name"].as_str().unwrap().to_string(),
            v["addr"].as_str().unwrap().to_string(),
        );
        // Addresses that do not come from this response's glue are not in tshark's join.
        match verdict.as_str() {
            "glueless_lookup" | "known_ns" => {}
            "ns_lookup" => lookups.push(t),
            _ => {
                m.entry(t).or_default().insert(verdict);
            }
        }
    }
    (m, lookups)
}

/// Reasons a candidate may be rejected for.
const REJECT: &[&str] = &[
    "unsolicited",
    "question_mismatch",
    "truncated",
    "not_noerror",
    "malformed",
    "ns_not_for_query",
    "out_of_bailiwick",
    "glue_out_of_bailiwick",
];

/// Check one capture; returns (tshark triples, learned triples, rejected-with-reason counts).
fn compare(rel: &str) -> (usize, usize, BTreeMap<String, usize>) {
    let pcap = pcaps().join(rel);
    let msgs = tshark_messages(&pcap);
    let theirs = tshark_triples(&msgs);
    let (ours, lookups) = nsdb_verdicts(&pcap, &rel.replace('/', "_"));
    // What nsdb took from the answer to a lookup of a name server's name, tshark decodes as an
    // address record of that name in an answer section.
    let answers = tshark_answers(&msgs);
    for (z, ns, a) in &lookups {
        assert!(
            answers.contains(&(ns.clone(), a.clone())),
            "{rel}: ns_lookup ({z}, {ns}, {a}) is no answer tshark saw"
        );
    }
    let ours_set: BTreeSet<Triple> = ours.keys().cloned().collect();
    assert_eq!(
        ours_set, theirs,
        "{rel}: candidates seen by nsdb (left) differ from tshark's (right)"
    );
    let mut learned = 0;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (t, vs) in &ours {
        if vs.contains("learned") || vs.contains("refreshed") {
            learned += 1;
            continue;
        }
        for v in vs {
            assert!(REJECT.contains(&v.as_str()), "{rel}: {t:?} has verdict {v}");
        }
        // One reason per triple (a triple seen in several responses may have several).
        let first = vs.iter().next().expect("at least one verdict").clone();
        *reasons.entry(first).or_default() += 1;
    }
    (theirs.len(), learned, reasons)
}

fn r(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn root_referral_to_aaa_all_learned() {
    // Root servers (built-in hints) refer to .aaa with 6 NS and A+AAAA glue: everything is in
    // bailiwick and paired.
    let (n, learned, reasons) = compare("A-iterative/dnscap-resolver-root-referral-aaa.pcap");
    assert_eq!((n, learned), (38, 38));
    assert!(reasons.is_empty(), "{reasons:?}");
}

#[test]
fn single_referrals_with_glue() {
    assert_eq!(
        compare("A-iterative/suricata-referral-with-additionals.pcap"),
        (8, 8, r(&[]))
    );
    assert_eq!(
        compare("A-iterative/sidn-nl-auth-udp-referral-glue.pcap"),
        (4, 4, r(&[]))
    );
    // .nl server over TCP: NS + in-zone glue.
    assert_eq!(
        compare("A-iterative/sidn-nl-auth-tcp-ns-glue.pcap"),
        (2, 2, r(&[]))
    );
    // Responses split over IP fragments; the query is not in the capture: unsolicited.
    assert_eq!(
        compare("A-iterative/sidn-nl-auth-fragmented-response-ns-glue.pcap"),
        (6, 0, r(&[("unsolicited", 6)]))
    );
}

#[test]
fn kathara_iterations() {
    for f in [
        "A-iterative/kathara-oru-capture2-cold-iterative.pcap",
        "A-iterative/kathara-oru-capture6-recursive.pcap",
    ] {
        let (n, learned, reasons) = compare(f);
        assert_eq!(n, learned, "{f}: {reasons:?}");
        assert!(n >= 2, "{f}: expected referral glue, got {n}");
    }
}

#[test]
fn real_resolver_trace_with_ipv6_tcp_and_fragments() {
    let (n, learned, reasons) = compare("A-iterative/zeek-dns-edns-ecs-iterative-resolver.pcap");
    // Most responses in this trace answer queries the capture does not hold.
    assert_eq!((n, learned, reasons), (103, 7, r(&[("unsolicited", 96)])));
}

#[test]
fn snaplen_cut_responses_without_queries() {
    let (n, learned, reasons) =
        compare("A-iterative/ndpi-resolver-responses-from-45-auth-servers-snaplen.pcap");
    assert_eq!(
        learned, 0,
        "no queries in the capture: nothing may be learned"
    );
    assert_eq!(reasons.values().sum::<usize>(), n);
}

#[test]
fn stub_captures_with_ns_and_glue() {
    // Stub resolvers talking to a recursive resolver (a server nsdb does not know): answers
    // carry NS records and addresses. With `--bailiwick auto` such a server is taken to serve
    // the parent of the delegated zone, so glue for names elsewhere (ns1.google.com for an
    // in-addr.arpa zone, nic.sandelman.ca for tcpdump.org) is rejected as
    // glue_out_of_bailiwick; the rest is learned. NS records of a CNAME target's zone count
    // (zeek-dns-two-responses: www.cmu.edu -> www-cmu.andrew.cmu.edu, NS andrew.cmu.edu).
    let expected: &[Expected] = &[
        (
            "C-stub/dnscap-vlan11-stub-ns-glue.pcap",
            8,
            4,
            &[("glue_out_of_bailiwick", 4)],
        ),
        ("C-stub/tcpdump-dnssec-sshfp.pcap", 4, 4, &[]),
        (
            "C-stub/tcpdump-dns-tcp-ns-glue.pcap",
            4,
            0,
            &[("glue_out_of_bailiwick", 4)],
        ),
        (
            "C-stub/zeek-ipv6-fragmented-dns.pcap",
            1,
            0,
            &[("glue_out_of_bailiwick", 1)],
        ),
        ("C-stub/zeek-dns-two-responses.pcap", 3, 3, &[]),
        (
            "C-stub/arkime-ipv6-dns-ns-glue.pcap",
            18,
            10,
            &[("glue_out_of_bailiwick", 8)],
        ),
        ("C-stub/gdc-ipv6-fragmented-udp-ns-glue.pcap", 4, 4, &[]),
        ("C-stub/ndpi-dns-fragmented-v4-v6.pcap", 4, 4, &[]),
        ("C-stub/zeek-wikipedia-stub-lookups.pcap", 3, 3, &[]),
        ("B-malware/suricata-dns2tcp-txt-tunnel.pcap", 1, 1, &[]),
    ];
    for (f, n, learned, reasons) in expected {
        assert_eq!(compare(f), (*n, *learned, r(reasons)), "{f}");
    }
}
