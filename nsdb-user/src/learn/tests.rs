//! Engine tests on messages built with hickory-proto (the reference encoder).

use super::*;
use hickory_proto::op::{Message as HMessage, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn query(id: u16, q: &str, t: RecordType) -> Vec<u8> {
    let mut m = HMessage::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name(q), t));
    m.to_vec().unwrap()
}

/// A response to (q, t) with NS records `ns` for `zone` in authority and glue `glue` in additional.
fn referral(
    id: u16,
    q: &str,
    t: RecordType,
    zone: &str,
    ns: &[(&str, u32)],
    glue: &[(&str, &str, u32)],
) -> Vec<u8> {
    let mut m = HMessage::new(id, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(name(q), t));
    for (n, ttl) in ns {
        m.add_authority(Record::from_rdata(
            name(zone),
            *ttl,
            RData::NS(rdata::NS(name(n))),
        ));
    }
    for (n, a, ttl) in glue {
        let rd = match ip(a) {
            IpAddr::V4(v) => RData::A(rdata::A(v)),
            IpAddr::V6(v) => RData::AAAA(rdata::AAAA(v)),
        };
        m.add_additional(Record::from_rdata(name(n), *ttl, rd));
    }
    m.to_vec().unwrap()
}

fn answer(id: u16, q: &str, addrs: &[(&str, &str, u32)]) -> Vec<u8> {
    answer_to(id, q, RecordType::A, addrs)
}

/// An answer to (q, t) with address records only (as a server with minimal responses sends
/// it): A or AAAA as each address is.
fn answer_to(id: u16, q: &str, t: RecordType, addrs: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut m = HMessage::new(id, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(name(q), t));
    for (n, a, ttl) in addrs {
        let rd = match ip(a) {
            IpAddr::V4(v) => RData::A(rdata::A(v)),
            IpAddr::V6(v) => RData::AAAA(rdata::AAAA(v)),
        };
        m.add_answer(Record::from_rdata(name(n), *ttl, rd));
    }
    m.to_vec().unwrap()
}

const RESOLVER: &str = "192.0.2.10:40000";

/// The resolver asks `server` for the A record of `q` at time `t`.
fn ask(e: &mut Engine, t: u64, server: &str, id: u16, q: &str) {
    e.on_query(t, sa(RESOLVER), sa(server), &query(id, q, RecordType::A));
}

/// The referral for a.test most tests use: zone "test", NS ns.test, glue 192.0.2.1, TTL 3600.
fn test_referral(id: u16) -> Vec<u8> {
    referral(
        id,
        "a.test",
        RecordType::A,
        "test",
        &[("ns.test", 3600)],
        &[("ns.test", "192.0.2.1", 3600)],
    )
}
/// a.root-servers.net
const ROOT: &str = "198.41.0.4:53";

fn engine() -> Engine {
    Engine::new(LearnConfig {
        explain: true,
        record_rows: true,
        ..LearnConfig::default()
    })
}

#[test]
fn referral_with_glue_is_learned_and_registered() {
    let mut e = engine();
    ask(&mut e, 1000, ROOT, 1, "www.example.test");
    let r = referral(
        1,
        "www.example.test",
        RecordType::A,
        "test",
        &[("ns1.nic.test", 172800), ("ns2.nic.test", 172800)],
        &[
            ("ns1.nic.test", "192.0.2.53", 3600),
            ("ns2.nic.test", "2001:db8::53", 3600),
        ],
    );
    let l = e.on_response(1050, sa(ROOT), sa(RESOLVER), &r);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(l[0].zone, "test");
    assert_eq!(l[0].ns_name, "ns1.nic.test");
    assert_eq!(l[0].ttl, 3600);
    assert_eq!(l[0].expires_ms, 1050 + 3_600_000 + 900_000);
    let k = e.is_registered(ip("192.0.2.53"), 2000).expect("registered");
    assert_eq!(
        (k.kind, k.zone.as_str(), k.ns_name.as_str()),
        ("glue", "test", "ns1.nic.test")
    );
    assert!(e.is_registered(ip("2001:db8::53"), 2000).is_some());
    assert!(e.is_registered(ip("192.0.2.54"), 2000).is_none());
    // Root hints are registered forever.
    assert_eq!(
        e.is_registered(ip("198.41.0.4"), u64::MAX - 1)
            .unwrap()
            .kind,
        "root_hints"
    );
    // Expiry: TTL + grace.
    assert!(
        e.is_registered(ip("192.0.2.53"), 1050 + 4_500_000)
            .is_some()
    );
    assert!(
        e.is_registered(ip("192.0.2.53"), 1050 + 4_500_001)
            .is_none()
    );
    let s = e.stats();
    assert_eq!(
        (s.paired, s.learned, s.ns_records, s.glue_addrs),
        (1, 2, 2, 2)
    );
    let rows = e.take_rows();
    assert_eq!(rows.ns.len(), 2);
    assert_eq!(rows.queries.len(), 1);
    assert_eq!(rows.queries[0].queryname, "www.example.test");
}

#[test]
fn spoofed_responses_teach_nothing() {
    let mut e = engine();
    ask(&mut e, 1000, ROOT, 7, "www.example.test");
    let glue = [("ns1.nic.test", "192.0.2.53", 3600)];
    let ns = [("ns1.nic.test", 3600)];
    // wrong id, wrong client port, wrong server address, wrong server port, wrong question
    let cases = [
        (
            sa(ROOT),
            sa(RESOLVER),
            referral(8, "www.example.test", RecordType::A, "test", &ns, &glue),
        ),
        (
            sa(ROOT),
            sa("192.0.2.10:40001"),
            referral(7, "www.example.test", RecordType::A, "test", &ns, &glue),
        ),
        (
            sa("199.7.83.42:53"),
            sa(RESOLVER),
            referral(7, "www.example.test", RecordType::A, "test", &ns, &glue),
        ),
        (
            sa("198.41.0.4:5353"),
            sa(RESOLVER),
            referral(7, "www.example.test", RecordType::A, "test", &ns, &glue),
        ),
        (
            sa(ROOT),
            sa(RESOLVER),
            referral(7, "other.example.test", RecordType::A, "test", &ns, &glue),
        ),
    ];
    for (src, dst, msg) in &cases {
        assert!(e.on_response(1010, *src, *dst, msg).is_empty());
    }
    assert!(e.is_registered(ip("192.0.2.53"), 1100).is_none());
    let s = e.stats();
    assert_eq!((s.unsolicited, s.question_mismatch, s.learned), (4, 1, 0));
    let d = e.take_decisions();
    assert_eq!(d.len(), 5);
    assert!(
        d.iter()
            .all(|d| d.verdict == "unsolicited" || d.verdict == "question_mismatch")
    );
    // The real answer still pairs afterwards, and a duplicate of it is unsolicited.
    let real = referral(7, "www.example.test", RecordType::A, "test", &ns, &glue);
    assert_eq!(e.on_response(1020, sa(ROOT), sa(RESOLVER), &real).len(), 1);
    assert!(
        e.on_response(1021, sa(ROOT), sa(RESOLVER), &real)
            .is_empty()
    );
    assert_eq!(e.stats().unsolicited, 5);
}

/// At 1000 the resolver asks the root for www.example.test; at 1100 the root refers it to
/// example.test with the single NS `ns` and no glue, which leaves `ns` pending.
fn pending_glueless(e: &mut Engine, ns: &str) {
    ask(e, 1000, ROOT, 1, "www.example.test");
    let r = referral(
        1,
        "www.example.test",
        RecordType::A,
        "example.test",
        &[(ns, 7200)],
        &[],
    );
    assert!(e.on_response(1100, sa(ROOT), sa(RESOLVER), &r).is_empty());
    assert_eq!(e.stats().glueless_pending, 1);
}

#[test]
fn glueless_delegation_resolved_within_window_only() {
    for (delay, expect) in [(1500u64, true), (2000, true), (2001, false)] {
        let mut e = engine();
        pending_glueless(&mut e, "ns.elsewhere.test");
        // The resolver looks the NS name up (from some server), answered `delay` ms after the referral.
        ask(
            &mut e,
            1100 + delay - 10,
            "192.0.2.99:53",
            2,
            "ns.elsewhere.test",
        );
        let a = answer(
            2,
            "ns.elsewhere.test",
            &[("ns.elsewhere.test", "192.0.2.77", 600)],
        );
        let l = e.on_response(1100 + delay, sa("192.0.2.99:53"), sa(RESOLVER), &a);
        assert_eq!(!l.is_empty(), expect, "delay {delay}: {l:?}");
        assert_eq!(
            e.is_registered(ip("192.0.2.77"), 1100 + delay).is_some(),
            expect
        );
        if expect {
            assert_eq!(l[0].zone, "example.test");
            assert_eq!(l[0].source, Source::GluelessLookup);
            assert_eq!(l[0].ttl, 600);
        }
    }
}

#[test]
fn a_glueless_ns_name_is_answered_only_by_its_own_lookup_not_a_hash_alike() {
    // "ns-1" and "ns\r1" differ in bit 0x20 of one byte: the name hash folds it (as it folds
    // case), so an answer for the second finds the first's pending entry by hash. It must not
    // teach: the pending NS name is compared as text.
    let sibling = Name::from_labels(["ns\r1", "elsewhere", "test"].map(str::as_bytes)).unwrap();
    let sibling_query = {
        let mut m = HMessage::new(2, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(sibling.clone(), RecordType::A));
        m.to_vec().unwrap()
    };
    let real_query = query(3, "ns-1.elsewhere.test", RecordType::A);
    assert_eq!(
        name_hash(&sibling_query, 12).unwrap(),
        name_hash(&real_query, 12).unwrap(),
        "the two names must hash alike for this test to mean anything"
    );
    let mut e = engine();
    pending_glueless(&mut e, "ns-1.elsewhere.test");

    let lookup = sa("192.0.2.99:53");
    e.on_query(1200, sa(RESOLVER), lookup, &sibling_query);
    let mut a = HMessage::new(2, MessageType::Response, OpCode::Query);
    a.add_query(Query::query(sibling.clone(), RecordType::A));
    a.add_answer(Record::from_rdata(
        sibling,
        600,
        RData::A(rdata::A("192.0.2.66".parse().unwrap())),
    ));
    let l = e.on_response(1300, lookup, sa(RESOLVER), &a.to_vec().unwrap());
    assert!(l.is_empty(), "{l:?}");
    assert!(e.is_registered(ip("192.0.2.66"), 1300).is_none());
    assert_eq!(e.stats().glueless_resolved, 0);

    // The NS name's own lookup still resolves it.
    e.on_query(1400, sa(RESOLVER), lookup, &real_query);
    let a = answer(
        3,
        "ns-1.elsewhere.test",
        &[("ns-1.elsewhere.test", "192.0.2.77", 600)],
    );
    let l = e.on_response(1500, lookup, sa(RESOLVER), &a);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].zone, "example.test");
    assert_eq!(l[0].ns_name, "ns-1.elsewhere.test");
    assert_eq!(l[0].source, Source::GluelessLookup);
    assert_eq!(e.stats().glueless_resolved, 1);
}

#[test]
fn out_of_bailiwick_glue_from_known_server_is_rejected() {
    let mut e = engine();
    // Teach: "example.test" served by ns1.example.test at 192.0.2.53.
    ask(&mut e, 0, ROOT, 1, "www.example.test");
    e.on_response(
        1,
        sa(ROOT),
        sa(RESOLVER),
        &referral(
            1,
            "www.example.test",
            RecordType::A,
            "example.test",
            &[("ns1.example.test", 3600)],
            &[("ns1.example.test", "192.0.2.53", 3600)],
        ),
    );
    // That server now claims a delegation for another zone and glue for a name outside its zone.
    ask(&mut e, 10, "192.0.2.53:53", 2, "www.example.test");
    let poison = referral(
        2,
        "www.example.test",
        RecordType::A,
        "www.example.test",
        &[("ns.www.example.test", 3600), ("ns.victim.test", 3600)],
        &[
            ("ns.www.example.test", "192.0.2.60", 3600),
            ("ns.victim.test", "192.0.2.66", 3600),
        ],
    );
    let l = e.on_response(11, sa("192.0.2.53:53"), sa(RESOLVER), &poison);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].addr, ip("192.0.2.60"));
    assert!(e.is_registered(ip("192.0.2.66"), 12).is_none());
    assert_eq!(e.stats().out_of_bailiwick, 1);
    let d = e.take_decisions();
    assert!(
        d.iter()
            .any(|d| d.verdict == "glue_out_of_bailiwick" && d.addr == Some(ip("192.0.2.66")))
    );
    // An NS record for a zone unrelated to the question is rejected too.
    ask(&mut e, 20, "192.0.2.53:53", 3, "www.example.test");
    let unrelated = referral(
        3,
        "www.example.test",
        RecordType::A,
        "other.test",
        &[("ns.other.test", 3600)],
        &[("ns.other.test", "192.0.2.70", 3600)],
    );
    assert!(
        e.on_response(21, sa("192.0.2.53:53"), sa(RESOLVER), &unrelated)
            .is_empty()
    );
    assert!(
        e.take_decisions()
            .iter()
            .any(|d| d.verdict == "ns_not_for_query")
    );
}

#[test]
fn strict_mode_ignores_unknown_servers_and_off_mode_learns_everything() {
    let unknown = "203.0.113.9:53";
    let r = referral(
        1,
        "a.example.test",
        RecordType::A,
        "example.test",
        &[("ns.far.test", 3600)],
        &[("ns.far.test", "203.0.113.50", 3600)],
    );
    for (mode, expect) in [
        (Bailiwick::Strict, 0),
        (Bailiwick::Auto, 0),
        (Bailiwick::Off, 1),
    ] {
        let mut e = Engine::new(LearnConfig {
            bailiwick: mode,
            ..LearnConfig::default()
        });
        ask(&mut e, 0, unknown, 1, "a.example.test");
        // Auto: an unknown server is taken to serve the parent of the delegated zone ("test"),
        // and ns.far.test is inside it. Strict: unknown servers teach nothing. Off: anything.
        let l = e.on_response(1, sa(unknown), sa(RESOLVER), &r);
        let expect = if mode == Bailiwick::Auto { 1 } else { expect };
        assert_eq!(l.len(), expect, "{mode:?}");
    }
}

#[test]
fn truncated_and_error_responses_do_not_teach() {
    let mut e = engine();
    ask(&mut e, 0, ROOT, 1, "a.test");
    let mut r = test_referral(1);
    r[2] |= 0x02; // TC
    assert!(e.on_response(1, sa(ROOT), sa(RESOLVER), &r).is_empty());
    assert_eq!(e.stats().truncated, 1);
    ask(&mut e, 0, ROOT, 2, "a.test");
    let mut r = test_referral(2);
    r[3] |= 0x02; // SERVFAIL
    assert!(e.on_response(1, sa(ROOT), sa(RESOLVER), &r).is_empty());
    assert_eq!(e.stats().not_noerror, 1);
}

#[test]
fn ttls_are_clamped() {
    let mut e = Engine::new(LearnConfig {
        min_ttl: 60,
        max_ttl: 1000,
        grace_ms: 0,
        ..LearnConfig::default()
    });
    ask(&mut e, 0, ROOT, 1, "a.test");
    let r = referral(
        1,
        "a.test",
        RecordType::A,
        "test",
        &[("ns.test", 5), ("ns2.test", 999_999)],
        &[
            ("ns.test", "192.0.2.1", 5),
            ("ns2.test", "192.0.2.2", 999_999),
        ],
    );
    let l = e.on_response(0, sa(ROOT), sa(RESOLVER), &r);
    assert_eq!(l.iter().map(|l| l.ttl).collect::<Vec<_>>(), vec![60, 1000]);
}

#[test]
fn unanswered_queries_time_out_and_inflight_is_bounded() {
    let mut e = Engine::new(LearnConfig {
        max_inflight: 10,
        query_timeout_ms: 100,
        ..LearnConfig::default()
    });
    for i in 0..50u16 {
        ask(&mut e, i as u64, ROOT, i, "a.test");
    }
    assert!(e.inflight_len() <= 10);
    assert_eq!(e.stats().inflight_dropped, 40);
    ask(&mut e, 1000, ROOT, 999, "a.test");
    assert_eq!(e.inflight_len(), 1);
}

#[test]
fn arbitrary_bytes_never_panic_the_engine() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 2000,
        ..Default::default()
    });
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..300), |bytes| {
            let mut e = Engine::new(LearnConfig {
                explain: true,
                record_rows: true,
                bailiwick: Bailiwick::Off,
                ..LearnConfig::default()
            });
            e.on_query(0, sa(RESOLVER), sa(ROOT), &bytes);
            let _ = e.on_response(1, sa(ROOT), sa(RESOLVER), &bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_server_of_many_zones_is_held_to_them() {
    // One provider address learned for 20 zones (more than the linear-scan limit).
    let mut e = engine();
    let provider = "192.0.2.53";
    for i in 0..20u16 {
        let q = format!("www.zone{i}.test");
        e.on_query(
            i as u64,
            sa(RESOLVER),
            sa(ROOT),
            &query(i, &q, RecordType::A),
        );
        let z = format!("zone{i}.test");
        let l = e.on_response(
            i as u64,
            sa(ROOT),
            sa(RESOLVER),
            &referral(
                i,
                &q,
                RecordType::A,
                &z,
                &[("ns.provider.test", 3600)],
                &[("ns.provider.test", provider, 3600)],
            ),
        );
        assert_eq!(l.len(), 1, "zone{i}: {l:?}");
    }
    let server = "192.0.2.53:53";
    // It may delegate below one of its zones...
    ask(&mut e, 100, server, 500, "a.sub.zone15.test");
    let r = referral(
        500,
        "a.sub.zone15.test",
        RecordType::A,
        "sub.zone15.test",
        &[("ns.sub.zone15.test", 3600)],
        &[("ns.sub.zone15.test", "192.0.2.99", 3600)],
    );
    assert_eq!(e.on_response(101, sa(server), sa(RESOLVER), &r).len(), 1);
    // ...but not below a zone it does not serve.
    ask(&mut e, 100, server, 501, "a.sub.zone99.test");
    let r = referral(
        501,
        "a.sub.zone99.test",
        RecordType::A,
        "sub.zone99.test",
        &[("ns.sub.zone99.test", 3600)],
        &[("ns.sub.zone99.test", "192.0.2.98", 3600)],
    );
    assert!(e.on_response(101, sa(server), sa(RESOLVER), &r).is_empty());
    assert_eq!(e.stats().out_of_bailiwick, 1);
    // The check names the first zone it was learned for.
    assert_eq!(
        e.is_registered(ip(provider), 200).unwrap().zone,
        "zone0.test"
    );
}

#[test]
fn names_longer_than_the_inline_record_are_learned_refreshed_and_told_apart() {
    // Names are kept inline up to 31 bytes and apart beyond: 30, 31, 32 and 70 bytes, and two
    // long names that differ only in their last byte.
    let zone = "zone.test";
    let pad = |n: usize, last: char| {
        let base = format!(".{zone}");
        let mut s = "n".repeat(n - base.len() - 1);
        s.push(last);
        s + &base
    };
    let names = [
        pad(30, 'a'),
        pad(31, 'a'),
        pad(32, 'a'),
        pad(70, 'a'),
        pad(70, 'b'),
    ];
    assert_eq!(
        names.iter().map(|n| n.len()).collect::<Vec<_>>(),
        [30, 31, 32, 70, 70]
    );
    let mut e = engine();
    for round in 0..3u16 {
        for (i, n) in names.iter().enumerate() {
            let id = round * 10 + i as u16;
            let q = format!("www{i}.{zone}");
            ask(&mut e, 1000 + id as u64, ROOT, id, &q);
            let glue = format!("192.0.2.{}", 10 + i);
            let r = referral(
                id,
                &q,
                RecordType::A,
                zone,
                &[(n, 3600)],
                &[(n, &glue, 3600)],
            );
            let l = e.on_response(1000 + id as u64, sa(ROOT), sa(RESOLVER), &r);
            assert_eq!(l.len(), 1, "{n}: {l:?}");
            assert_eq!(l[0].ns_name, *n);
            assert_eq!(l[0].addr, ip(&glue));
        }
    }
    let s = e.stats();
    assert_eq!((s.learned, s.refreshed), (5, 10));
    for (i, n) in names.iter().enumerate() {
        let k = e.lookup(ip(&format!("192.0.2.{}", 10 + i))).unwrap();
        assert_eq!((k.zone.as_str(), k.ns_name.as_str()), (zone, n.as_str()));
    }
    let mut counts: Vec<(String, u64)> = e
        .entries()
        .filter(|h| h.zone == zone)
        .map(|h| (h.ns_name.to_string(), h.count))
        .collect();
    counts.sort();
    let mut want: Vec<(String, u64)> = names.iter().map(|n| (n.clone(), 3)).collect();
    want.sort();
    assert_eq!(counts, want);
}

#[test]
fn a_reused_inflight_slot_is_not_expired_by_the_answered_query_before_it() {
    // Default timeout: 30 s. In-flight queries live in slots reused once answered; the queue
    // that expires them still names the answered query's slot.
    let mut e = engine();
    let answer = |e: &mut Engine, t: u64, id: u16| {
        e.on_response(t, sa(ROOT), sa(RESOLVER), &test_referral(id));
    };
    ask(&mut e, 0, ROOT, 1, "a.test");
    answer(&mut e, 1, 1);
    // Takes the slot the answered query left.
    ask(&mut e, 20_000, ROOT, 2, "a.test");
    // Expiry runs with a limit of 1 s: query 1's queue entry is older, query 2 is not.
    ask(&mut e, 31_000, ROOT, 3, "a.test");
    answer(&mut e, 32_000, 2);
    let s = e.stats();
    assert_eq!((s.paired, s.unsolicited, s.inflight_expired), (2, 0, 0));
    // Query 3 (31 s) times out once a query comes after 61 s.
    ask(&mut e, 62_000, ROOT, 4, "a.test");
    assert_eq!(e.stats().inflight_expired, 1);
    assert_eq!(e.inflight_len(), 1);
    // The same query asked again replaces the first: it times out from the second asking.
    ask(&mut e, 70_000, ROOT, 5, "a.test");
    ask(&mut e, 90_000, ROOT, 5, "a.test");
    ask(&mut e, 101_000, ROOT, 6, "a.test");
    // Query 4 (62 s) has timed out; query 5 has not, counted from 90 s.
    assert_eq!(e.stats().inflight_expired, 2);
    answer(&mut e, 102_000, 5);
    let s = e.stats();
    assert_eq!((s.paired, s.unsolicited, s.inflight_expired), (3, 0, 2));
    assert_eq!(e.inflight_len(), 1);
    // And a late answer to query 3, expired, is unsolicited.
    answer(&mut e, 103_000, 3);
    assert_eq!(e.stats().unsolicited, 1);
}

/// The resolver asks `server` for the AAAA of `q` at `t`; the answer (`addr`, TTL 600) comes
/// 10 ms later. What it taught.
fn lookup_aaaa(e: &mut Engine, t: u64, server: &str, id: u16, q: &str, addr: &str) -> Vec<Learned> {
    e.on_query(t, sa(RESOLVER), sa(server), &query(id, q, RecordType::AAAA));
    let a = answer_to(id, q, RecordType::AAAA, &[(q, addr, 600)]);
    e.on_response(t + 10, sa(server), sa(RESOLVER), &a)
}

/// The root's referral for `zone` with `ns`'s A glue `glue` only (TTL 3600), asked at `t`.
fn referral_a_glue_only(e: &mut Engine, t: u64, id: u16, zone: &str, ns: &str, glue: &str) {
    let q = format!("www.{zone}");
    ask(e, t, ROOT, id, &q);
    let r = referral(
        id,
        &q,
        RecordType::A,
        zone,
        &[(ns, 3600)],
        &[(ns, glue, 3600)],
    );
    assert_eq!(e.on_response(t + 50, sa(ROOT), sa(RESOLVER), &r).len(), 1);
}

#[test]
fn a_lookup_of_a_registered_ns_name_teaches_the_family_its_glue_lacked() {
    let mut e = engine();
    referral_a_glue_only(
        &mut e,
        1000,
        1,
        "example.test",
        "ns1.example.test",
        "192.0.2.53",
    );
    // The dual-stack resolver's target fetch: AAAA of the NS name, asked of the name server
    // itself, answered minimally (no NS, no additional).
    let ns = "192.0.2.53:53";
    let l = lookup_aaaa(&mut e, 1060, ns, 2, "ns1.example.test", "2001:db8::53");
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (l[0].zone.as_str(), l[0].ns_name.as_str(), l[0].addr),
        ("example.test", "ns1.example.test", ip("2001:db8::53"))
    );
    assert_eq!(l[0].source, Source::NsLookup);
    assert_eq!(
        l[0].ttl, 600,
        "the shorter of the entry's TTL and the answer's"
    );
    let k = e
        .is_registered(ip("2001:db8::53"), 2000)
        .expect("registered");
    assert_eq!(k.ns_name, "ns1.example.test");
    assert_eq!(e.stats().ns_lookup_addrs, 1);
    assert!(
        e.take_decisions()
            .iter()
            .any(|d| d.verdict == "ns_lookup" && d.addr == Some(ip("2001:db8::53")))
    );

    // The same lookup after the address's TTL (the delegation still cached): refreshed.
    let l = lookup_aaaa(&mut e, 700_000, ns, 3, "ns1.example.test", "2001:db8::53");
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].first_seen_ms, 1070);
    assert_eq!(e.stats().ns_lookup_addrs, 2);

    // Not a name server's name: an ordinary answer from the same server teaches nothing.
    assert!(lookup_aaaa(&mut e, 700_100, ns, 4, "www.example.test", "2001:db8::80").is_empty());
    assert!(e.is_registered(ip("2001:db8::80"), 700_200).is_none());

    // A registered server of another zone may not teach example.test's name server.
    referral_a_glue_only(
        &mut e,
        700_200,
        5,
        "other.test",
        "ns.other.test",
        "192.0.2.99",
    );
    let out_before = e.stats().out_of_bailiwick;
    let l = lookup_aaaa(
        &mut e,
        700_300,
        "192.0.2.99:53",
        6,
        "ns1.example.test",
        "2001:db8::66",
    );
    assert!(l.is_empty(), "{l:?}");
    assert!(e.is_registered(ip("2001:db8::66"), 700_400).is_none());
    assert_eq!(e.stats().out_of_bailiwick, out_before + 1);

    // Once every entry of the name has expired it is no registered name server's name: a
    // lookup of it teaches nothing (a referral must name it again).
    let later = 1050 + 3_600_000 + 900_000 + 1;
    assert!(lookup_aaaa(&mut e, later, ns, 7, "ns1.example.test", "2001:db8::77").is_empty());
    assert!(e.is_registered(ip("2001:db8::77"), later + 20).is_none());
    assert_eq!(e.stats().ns_lookup_addrs, 2);
}

#[test]
fn a_lookup_of_a_big_providers_ns_name_teaches_the_zones_seen_last() {
    let mut e = engine();
    // One name server, 20 zones, each referred at its own time.
    for i in 0..20u16 {
        let t = 1000 + 100 * u64::from(i);
        referral_a_glue_only(
            &mut e,
            t,
            i + 1,
            &format!("z{i}.test"),
            "ns.provider.test",
            "192.0.2.53",
        );
    }
    // The root (which may teach any name) answers the AAAA lookup of the name server's name.
    let l = lookup_aaaa(&mut e, 5000, ROOT, 100, "ns.provider.test", "2001:db8::53");
    let mut zones: Vec<&str> = l.iter().map(|x| x.zone.as_str()).collect();
    zones.sort_unstable();
    let mut want: Vec<String> = (12..20).map(|i| format!("z{i}.test")).collect();
    want.sort_unstable();
    assert_eq!(zones, want, "the {} zones seen last", NS_LOOKUP_ZONES);
    assert!(
        l.iter()
            .all(|x| x.source == Source::NsLookup && x.addr == ip("2001:db8::53"))
    );
    assert_eq!(e.stats().ns_lookup_addrs, NS_LOOKUP_ZONES as u64);
}

#[test]
fn a_name_servers_latest_entries_decide_whether_it_is_registered() {
    // A provider's name server: 600 zones referred long ago (expired since), then one more.
    // Only the latest NS_LOOKUP_SCAN entries of its address are examined: the live one must
    // be among them.
    let mut e = engine();
    for i in 0..600u16 {
        let t = 1000 + u64::from(i);
        referral_a_glue_only(
            &mut e,
            t,
            i + 1,
            &format!("old{i}.test"),
            "ns.provider.test",
            "192.0.2.53",
        );
    }
    let now = 10_000_000;
    referral_a_glue_only(
        &mut e,
        now,
        700,
        "new.test",
        "ns.provider.test",
        "192.0.2.53",
    );
    let l = lookup_aaaa(
        &mut e,
        now + 100,
        ROOT,
        701,
        "ns.provider.test",
        "2001:db8::53",
    );
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].zone, "new.test");
}

/// `respond` lets the glue of an in-zone NS target through without asking `may_teach` when the
/// server may teach the NS record's zone: every rule must be closed under going down the tree.
/// Checked for each bailiwick mode and each kind of server (unknown, serving few zones, serving
/// many, an exception) over zones and targets at several depths, in and out of those zones.
#[test]
fn a_server_that_may_teach_a_zone_may_teach_every_name_inside_it() {
    let names = [
        ".",
        "test",
        "zone3.test",
        "sub.zone3.test",
        "ns.sub.zone3.test",
        "zone15.test",
        "ns1.zone15.test",
        "a.b.zone15.test",
        "other",
        "ns.other",
        "zone3.test.other",
        "xzone3.test",
        "ns.xzone3.test",
    ];
    let few = "192.0.2.60";
    let many = "192.0.2.61";
    let exception = "192.0.2.62";
    for mode in [Bailiwick::Auto, Bailiwick::Strict, Bailiwick::Off] {
        let mut e = Engine::new(LearnConfig {
            bailiwick: mode,
            exceptions: vec![format!("{exception}/32").parse().unwrap()],
            ..LearnConfig::default()
        });
        for (addr, zones) in [(few, 2u32), (many, 20)] {
            for i in 0..zones {
                let z = format!("zone{}.test", i * 3 % 20);
                e.restore(
                    &z,
                    "ns.provider.test",
                    ip(addr),
                    0,
                    0,
                    1,
                    u64::MAX,
                    3600,
                    Source::Stored,
                );
            }
        }
        for server in [few, many, exception, "192.0.2.63"] {
            let kind = e.server_kind(ip(server), 1000);
            for zone in names {
                if !e.may_teach(kind, zone, None) {
                    continue;
                }
                for target in names.iter().filter(|t| wire::is_subdomain(t, zone)) {
                    assert!(
                        e.may_teach(kind, target, Some(zone)),
                        "{mode:?} {server}: may teach {zone} but not {target}"
                    );
                }
            }
        }
    }
}

/// A response built by hand: question `qname` (wire form) type A, one NS record whose owner is
/// a compression pointer to `owner_ptr` and whose target is `ns` + a pointer to `ns_suffix`,
/// and an A record for that target (its owner a pointer to the NS record's rdata).
fn hand_referral(id: u16, response: bool, qname: &[u8], owner_ptr: u16, ns: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(if response { &[0x80, 0] } else { &[0, 0] });
    let counts: [u16; 4] = if response { [1, 0, 1, 1] } else { [1, 0, 0, 0] };
    for c in counts {
        m.extend_from_slice(&c.to_be_bytes());
    }
    m.extend_from_slice(qname);
    m.extend_from_slice(&[0, 1, 0, 1]);
    if !response {
        return m;
    }
    m.extend_from_slice(&(0xc000 | owner_ptr).to_be_bytes());
    m.extend_from_slice(&[0, 2, 0, 1, 0, 0, 0x0e, 0x10]);
    m.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    let target = m.len() as u16;
    m.extend_from_slice(ns);
    m.extend_from_slice(&(0xc000 | target).to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 77]);
    m
}

/// An NS owner that is a compression pointer is taken as the question or an ancestor without
/// comparing text only when it points at a label start of the question (`points_into_question`);
/// a pointer into the middle of a question label names something else and is held to the
/// text rule. The question's text, never decoded for the fast path, still names the rows.
#[test]
fn an_ns_owner_pointing_into_the_question_is_its_ancestor_only_at_a_label_start() {
    // "a\001b\000.TEST": the label "a\x01b\x00" at 12, "TEST" at 17, the root label at 22.
    let qname = b"\x04a\x01b\x00\x04TEST\x00";
    // A fresh engine asked the question, and what it learns from the referral answering it.
    let answer = |id: u16, owner_ptr: u16, ns: &[u8]| {
        let mut e = engine();
        e.on_query(
            1000,
            sa(RESOLVER),
            sa(ROOT),
            &hand_referral(id, false, qname, 0, b""),
        );
        let r = hand_referral(id, true, qname, owner_ptr, ns);
        let l = e.on_response(1050, sa(ROOT), sa(RESOLVER), &r);
        (e, l)
    };
    // A pointer to offset 14 (inside the first label) decodes to the name "b": not an ancestor.
    let (mut e, l) = answer(7, 14, b"\x02ns\x01b\x00");
    assert!(l.is_empty());
    let d = e.take_decisions();
    assert_eq!(
        (d[0].zone.as_str(), d[0].ns_name.as_str(), d[0].verdict),
        ("b", "ns.b", "ns_not_for_query")
    );
    assert_eq!(e.stats().out_of_bailiwick, 1);
    // A pointer to the label "TEST" names the question's parent zone: learned, and the rows
    // carry the question's text.
    let (mut e, l) = answer(8, 17, b"\x02ns\xc0\x11");
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (l[0].zone.as_str(), l[0].ns_name.as_str()),
        ("test", "ns.test")
    );
    let rows = e.take_rows();
    assert_eq!(rows.ns[0].queryname, "a\\001b\\000.test");
    assert_eq!(rows.queries[0].queryname, "a\\001b\\000.test");
    // A pointer to the question's root label names the root zone.
    let (_, l) = answer(9, 22, b"\x01x\xc0\x11");
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!((l[0].zone.as_str(), l[0].ns_name.as_str()), (".", "x.test"));
}

/// The rows of a glue-less delegation name the referral's query as the paper does ("FQDN" for
/// A, "FQDN TYPE" otherwise): at once (the row without glue) and once the lookup answers (the
/// pending entry keeps the query's name and type, and the row is formatted from them).
#[test]
fn glueless_rows_name_the_referrals_query_with_its_type() {
    let mut e = engine();
    e.on_query(
        1000,
        sa(RESOLVER),
        sa(ROOT),
        &query(1, "www.example.test", RecordType::AAAA),
    );
    let r = referral(
        1,
        "www.example.test",
        RecordType::AAAA,
        "example.test",
        &[("ns.elsewhere.test", 7200)],
        &[],
    );
    assert!(e.on_response(1100, sa(ROOT), sa(RESOLVER), &r).is_empty());
    let rows = e.take_rows();
    assert_eq!(rows.ns[0].queryname, "www.example.test 28");
    assert_eq!(rows.ns[0].glue, None);
    ask(&mut e, 1500, "192.0.2.99:53", 2, "ns.elsewhere.test");
    let a = answer(
        2,
        "ns.elsewhere.test",
        &[("ns.elsewhere.test", "192.0.2.77", 600)],
    );
    assert_eq!(
        e.on_response(1600, sa("192.0.2.99:53"), sa(RESOLVER), &a)
            .len(),
        1
    );
    let rows = e.take_rows();
    assert_eq!(rows.ns[0].queryname, "www.example.test 28");
    assert_eq!(rows.ns[0].glue, Some(ip("192.0.2.77")));
    assert_eq!(rows.ns[0].source, Source::GluelessLookup);
}
