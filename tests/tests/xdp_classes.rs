//! The filter under BPF_PROG_TEST_RUN, one crafted packet per class: return code, counters
//! and event contents asserted. Every test runs twice, on the XDP program (`xdp::…`) and on
//! the TC classifier (`tc::…`, `--attach tc`): the same code behind two entry points.

use nsdb::{
    clock,
    counters::Counters,
    events,
    loader::{Filter, Sizes},
};
use nsdb_common::{
    action as a, counter as c, family as f, kind, mode, transport as t, verdict as v,
};
use nsdb_tests::packet::*;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1; TCX_NEXT): the classifier passes packets on to the next program.
const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;

/// Which entry point a test runs.
#[derive(Clone, Copy, Debug)]
enum Prog {
    Xdp,
    Tc,
}

const CLIENT4: &str = "192.0.2.10";
const REGISTERED4: &str = "198.51.100.53";
const UNKNOWN4: &str = "198.51.100.99";
const EXPIRED4: &str = "198.51.100.77";
const EXEMPT4: &str = "203.0.113.53";
const INTERNAL4: &str = "192.0.2.53";
const CLIENT6: &str = "2001:db8:1::10";
const REGISTERED6: &str = "2001:db8:ff::53";
const UNKNOWN6: &str = "2001:db8:bad::99";
const EXEMPT6: &str = "2001:db8:53::1";

/// A loaded filter with one address of every kind, and its event ring buffer.
struct Fixture {
    prog: Prog,
    filter: Filter,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
}

impl Fixture {
    fn new(prog: Prog, m: u32) -> Self {
        let mut filter = Filter::load(Sizes {
            allow_entries: 1024,
        })
        .expect("loading the XDP program");
        filter.set_mode(m).unwrap();
        filter
            .add_internal("192.0.2.0/24".parse().unwrap())
            .unwrap();
        filter
            .add_internal("2001:db8:1::/48".parse().unwrap())
            .unwrap();
        filter
            .add_exempt(format!("{EXEMPT4}/32").parse().unwrap())
            .unwrap();
        filter
            .add_exempt("2001:db8:53::/48".parse().unwrap())
            .unwrap();
        let hour = clock::mono_ns() + 3_600_000_000_000;
        filter
            .allow(REGISTERED4.parse().unwrap(), hour, kind::GLUE)
            .unwrap();
        filter
            .allow(REGISTERED6.parse().unwrap(), hour, kind::GLUE)
            .unwrap();
        filter
            .allow(EXPIRED4.parse().unwrap(), clock::mono_ns() - 1, kind::GLUE)
            .unwrap();
        let ring = filter.take_events().unwrap();
        Self { prog, filter, ring }
    }

    /// The verdict as an XDP action: the classifier's TC_ACT_UNSPEC and TC_ACT_SHOT become
    /// XDP_PASS and XDP_DROP; any other return value fails the test.
    fn run(&self, pkt: &[u8]) -> u32 {
        match self.prog {
            Prog::Xdp => nsdb_tests::test_run(self.filter.program(), pkt, 1).return_value,
            Prog::Tc => match nsdb_tests::test_run(self.filter.tc_program(), pkt, 1).return_value {
                TC_ACT_UNSPEC => XDP_PASS,
                TC_ACT_SHOT => XDP_DROP,
                other => {
                    panic!("the classifier returned {other}, neither TC_ACT_UNSPEC nor TC_ACT_SHOT")
                }
            },
        }
    }

    /// Like [`Fixture::run`], but `None` where BPF_PROG_TEST_RUN refuses the frame itself.
    fn try_run(&self, pkt: &[u8]) -> Option<u32> {
        let opts = || aya::programs::TestRunOptions {
            data_in: Some(pkt),
            repeat: 1,
            ..Default::default()
        };
        use aya::programs::TestRun as _;
        let r = match self.prog {
            Prog::Xdp => self.filter.program().test_run(opts()),
            Prog::Tc => self.filter.tc_program().test_run(opts()),
        };
        r.ok().map(|_| self.run(pkt))
    }

    fn counters(&self) -> Counters {
        self.filter.counters().unwrap()
    }

    fn events(&mut self) -> Vec<events::Alert> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            out.push(events::decode(&item).expect("a whole event record"));
        }
        out
    }
}

fn udp_query(l3: &L3, vlans: &[(u16, u16)], id: u16, name: &str, qtype: u16) -> Vec<u8> {
    frame(vlans, l3, &udp(40000, 53, &dns_query(id, name, qtype)))
}

/// Asserts that exactly one query counter moved, by one, and nothing else but `others`.
fn assert_only(cn: &Counters, query: Option<(u8, u8, u8, u8)>, others: &[u32]) {
    for vi in 0..v::COUNT as u8 {
        for ai in 0..a::COUNT as u8 {
            for fi in 0..f::COUNT as u8 {
                for ti in 0..t::COUNT as u8 {
                    let want = u64::from(query == Some((vi, ai, fi, ti)));
                    assert_eq!(
                        cn.query(vi, ai, fi, ti),
                        want,
                        "query counter {}/{}/{}/{}",
                        v::NAMES[vi as usize],
                        a::NAMES[ai as usize],
                        f::NAMES[fi as usize],
                        t::NAMES[ti as usize]
                    );
                }
            }
        }
    }
    for i in c::QUERY_COUNTERS..c::COUNT {
        let want = others.iter().filter(|o| **o == i).count() as u64;
        assert_eq!(
            cn.get(i),
            want,
            "counter {}",
            c::OTHER_NAMES[(i - c::QUERY_COUNTERS) as usize]
        );
    }
}

fn registered_v4_query_passes_without_event(p: Prog) {
    let mut fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(
            &L3::v4(CLIENT4, REGISTERED4),
            &[],
            1,
            "www.example.test",
            1
        )),
        XDP_PASS
    );
    assert_only(
        &fx.counters(),
        Some((v::REGISTERED, a::PASS, f::V4, t::UDP)),
        &[],
    );
    assert!(fx.events().is_empty());
}

fn unknown_v4_query_monitor_passes_and_reports(p: Prog) {
    let mut fx = Fixture::new(p, mode::MONITOR);
    let pkt = udp_query(
        &L3::v4(CLIENT4, UNKNOWN4),
        &[],
        0xBEEF,
        "cmd.c2.example.test",
        16,
    );
    assert_eq!(fx.run(&pkt), XDP_PASS);
    assert_only(
        &fx.counters(),
        Some((v::UNKNOWN, a::PASS, f::V4, t::UDP)),
        &[c::EVENTS_SENT],
    );
    let ev = fx.events();
    assert_eq!(ev.len(), 1, "one event: {ev:?}");
    let e = &ev[0];
    assert_eq!(e.src_ip.to_string(), CLIENT4);
    assert_eq!(e.dst_ip.to_string(), UNKNOWN4);
    assert_eq!((e.src_port, e.dst_port), (40000, 53));
    assert_eq!(e.proto, "udp");
    assert_eq!(e.dns_id, 0xBEEF);
    assert_eq!(e.qname, "cmd.c2.example.test");
    assert_eq!(e.qtype, "TXT");
    assert_eq!(e.verdict, "unknown");
    assert_eq!(e.action, "pass");
    // BPF_PROG_TEST_RUN runs on the loopback device.
    assert_eq!(e.iface, "lo");
}

fn unknown_v4_query_enforce_drops_and_reports(p: Prog) {
    let mut fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(&L3::v4(CLIENT4, UNKNOWN4), &[], 7, "x.test", 1)),
        XDP_DROP
    );
    assert_only(
        &fx.counters(),
        Some((v::UNKNOWN, a::DROP, f::V4, t::UDP)),
        &[c::EVENTS_SENT],
    );
    let ev = fx.events();
    assert_eq!(
        (
            ev[0].action.as_str(),
            ev[0].qtype.as_str(),
            ev[0].qname.as_str()
        ),
        ("drop", "A", "x.test")
    );
}

fn expired_entry_counts_as_unknown(p: Prog) {
    let mut fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(&L3::v4(CLIENT4, EXPIRED4), &[], 7, "x.test", 1)),
        XDP_DROP
    );
    assert_only(
        &fx.counters(),
        Some((v::UNKNOWN, a::DROP, f::V4, t::UDP)),
        &[c::EVENTS_SENT],
    );
    assert_eq!(fx.events()[0].dst_ip.to_string(), EXPIRED4);
}

fn exempt_and_internal_destinations(p: Prog) {
    let fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(&L3::v4(CLIENT4, EXEMPT4), &[], 1, "a.test", 1)),
        XDP_PASS
    );
    assert_only(
        &fx.counters(),
        Some((v::EXEMPT, a::PASS, f::V4, t::UDP)),
        &[],
    );
    let fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(&L3::v4(CLIENT4, INTERNAL4), &[], 1, "a.test", 1)),
        XDP_PASS
    );
    assert_only(
        &fx.counters(),
        Some((v::INTERNAL, a::PASS, f::V4, t::UDP)),
        &[],
    );
    let fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(&L3::v6(CLIENT6, EXEMPT6), &[], 1, "a.test", 1)),
        XDP_PASS
    );
    assert_only(
        &fx.counters(),
        Some((v::EXEMPT, a::PASS, f::V6, t::UDP)),
        &[],
    );
    let mut fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(
            &L3::v6(CLIENT6, "2001:db8:1::53"),
            &[],
            1,
            "a.test",
            1
        )),
        XDP_PASS
    );
    assert_only(
        &fx.counters(),
        Some((v::INTERNAL, a::PASS, f::V6, t::UDP)),
        &[],
    );
    assert!(fx.events().is_empty());
}

/// Prefixes shorter than a byte, and addresses sharing a prefix's first byte without being in
/// it: the program's first-byte filter in front of the tries must neither hide a prefix nor
/// let a neighbour through.
fn short_prefixes_and_first_byte_neighbours(p: Prog) {
    let query4 = |dst: &str| udp_query(&L3::v4(CLIENT4, dst), &[], 1, "a.test", 1);
    let query6 = |dst: &str| udp_query(&L3::v6(CLIENT6, dst), &[], 1, "a.test", 1);
    // 203.0.113.54 shares its first byte with the exempt 203.0.113.53/32: still unknown.
    let fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(fx.run(&query4("203.0.113.54")), XDP_DROP);
    assert_only(
        &fx.counters(),
        Some((v::UNKNOWN, a::DROP, f::V4, t::UDP)),
        &[c::EVENTS_SENT],
    );
    // 192.0.0.0/3 holds 198.51.100.99 (first byte 198, none of the fixture's prefixes).
    let mut fx = Fixture::new(p, mode::ENFORCE);
    fx.filter
        .add_exempt("192.0.0.0/3".parse().unwrap())
        .unwrap();
    assert_eq!(fx.run(&query4(UNKNOWN4)), XDP_PASS);
    assert_only(
        &fx.counters(),
        Some((v::EXEMPT, a::PASS, f::V4, t::UDP)),
        &[],
    );
    // Removed again: the filter keeps its bits (a superset), the trie decides: unknown.
    assert!(fx.filter.remove_exempt("192.0.0.0/3".parse().unwrap()));
    assert_eq!(fx.run(&query4(UNKNOWN4)), XDP_DROP);
    // 2000::/3 as internal holds the unknown IPv6 destination; ::/0 as exempt holds all.
    let mut fx = Fixture::new(p, mode::ENFORCE);
    fx.filter.add_internal("2000::/3".parse().unwrap()).unwrap();
    assert_eq!(fx.run(&query6(UNKNOWN6)), XDP_PASS);
    assert_only(
        &fx.counters(),
        Some((v::INTERNAL, a::PASS, f::V6, t::UDP)),
        &[],
    );
    let mut fx = Fixture::new(p, mode::ENFORCE);
    fx.filter.add_exempt("0.0.0.0/0".parse().unwrap()).unwrap();
    assert_eq!(fx.run(&query4("198.18.7.7")), XDP_PASS);
    assert_only(
        &fx.counters(),
        Some((v::EXEMPT, a::PASS, f::V4, t::UDP)),
        &[],
    );
}

fn ipv6_registered_and_unknown_with_extension_headers(p: Prog) {
    let fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(
            &L3::v6(CLIENT6, REGISTERED6),
            &[],
            1,
            "a.test",
            28
        )),
        XDP_PASS
    );
    assert_only(
        &fx.counters(),
        Some((v::REGISTERED, a::PASS, f::V6, t::UDP)),
        &[],
    );

    let mut fx = Fixture::new(p, mode::ENFORCE);
    let l3 = L3::V6 {
        src: CLIENT6.parse().unwrap(),
        dst: UNKNOWN6.parse().unwrap(),
        ext: vec![0, 60, 43, 44, 51],
        frag_offset: 0,
    };
    assert_eq!(fx.run(&udp_query(&l3, &[], 9, "v6.c2.test", 16)), XDP_DROP);
    assert_only(
        &fx.counters(),
        Some((v::UNKNOWN, a::DROP, f::V6, t::UDP)),
        &[c::EVENTS_SENT],
    );
    let e = &fx.events()[0];
    assert_eq!(
        (e.dst_ip.to_string().as_str(), e.qname.as_str()),
        (UNKNOWN6, "v6.c2.test")
    );
}

fn fragments_and_long_extension_chains_pass(p: Prog) {
    // A non-first IPv6 fragment has no UDP header to read.
    let fx = Fixture::new(p, mode::ENFORCE);
    let l3 = L3::V6 {
        src: CLIENT6.parse().unwrap(),
        dst: UNKNOWN6.parse().unwrap(),
        ext: vec![44],
        frag_offset: 8,
    };
    assert_eq!(fx.run(&udp_query(&l3, &[], 1, "a.test", 1)), XDP_PASS);
    assert_only(&fx.counters(), None, &[c::FRAGMENTS]);
    // Likewise an IPv4 non-first fragment.
    let fx = Fixture::new(p, mode::ENFORCE);
    let l3 = L3::V4 {
        src: CLIENT4.parse().unwrap(),
        dst: UNKNOWN4.parse().unwrap(),
        options: 0,
        frag_offset: 100,
    };
    assert_eq!(fx.run(&udp_query(&l3, &[], 1, "a.test", 1)), XDP_PASS);
    assert_only(&fx.counters(), None, &[c::FRAGMENTS]);
    // Nine extension headers: more than the program walks; passed and counted.
    let mut fx = Fixture::new(p, mode::ENFORCE);
    let l3 = L3::V6 {
        src: CLIENT6.parse().unwrap(),
        dst: UNKNOWN6.parse().unwrap(),
        ext: vec![60; 9],
        frag_offset: 0,
    };
    assert_eq!(fx.run(&udp_query(&l3, &[], 1, "a.test", 1)), XDP_PASS);
    assert_only(&fx.counters(), None, &[c::IPV6_EXT_LIMIT]);
    assert!(fx.events().is_empty());
}

fn vlan_qinq_and_ipv4_options(p: Prog) {
    for vlans in [
        vec![(TPID_8021Q, 11)],
        vec![(TPID_8021AD, 100), (TPID_8021Q, 11)],
    ] {
        let fx = Fixture::new(p, mode::ENFORCE);
        assert_eq!(
            fx.run(&udp_query(
                &L3::v4(CLIENT4, UNKNOWN4),
                &vlans,
                1,
                "a.test",
                1
            )),
            XDP_DROP,
            "{vlans:?}"
        );
        assert_only(
            &fx.counters(),
            Some((v::UNKNOWN, a::DROP, f::V4, t::UDP)),
            &[c::EVENTS_SENT],
        );
        let fx = Fixture::new(p, mode::ENFORCE);
        assert_eq!(
            fx.run(&udp_query(
                &L3::v4(CLIENT4, REGISTERED4),
                &vlans,
                1,
                "a.test",
                1
            )),
            XDP_PASS
        );
        assert_only(
            &fx.counters(),
            Some((v::REGISTERED, a::PASS, f::V4, t::UDP)),
            &[],
        );
    }
    // A VLAN tag cut short.
    let fx = Fixture::new(p, mode::ENFORCE);
    let tagged = udp_query(
        &L3::v4(CLIENT4, UNKNOWN4),
        &[(TPID_8021Q, 5)],
        1,
        "a.test",
        1,
    );
    assert_eq!(fx.run(&tagged[..16]), XDP_PASS);
    assert_only(&fx.counters(), None, &[c::MALFORMED]);
    // Three tags: more than the program parses; not IP as far as it can tell, passed.
    let fx = Fixture::new(p, mode::ENFORCE);
    let three = [(TPID_8021AD, 1), (TPID_8021Q, 2), (TPID_8021Q, 3)];
    assert_eq!(
        fx.run(&udp_query(
            &L3::v4(CLIENT4, UNKNOWN4),
            &three,
            1,
            "a.test",
            1
        )),
        XDP_PASS
    );
    assert_only(&fx.counters(), None, &[c::NOT_IP]);
    // IPv4 with 40 bytes of options (IHL 15).
    let mut fx = Fixture::new(p, mode::ENFORCE);
    let l3 = L3::V4 {
        src: CLIENT4.parse().unwrap(),
        dst: UNKNOWN4.parse().unwrap(),
        options: 40,
        frag_offset: 0,
    };
    assert_eq!(fx.run(&udp_query(&l3, &[], 5, "opt.test", 1)), XDP_DROP);
    assert_only(
        &fx.counters(),
        Some((v::UNKNOWN, a::DROP, f::V4, t::UDP)),
        &[c::EVENTS_SENT],
    );
    assert_eq!(fx.events()[0].qname, "opt.test");
}

fn tcp_syn_is_checked_other_segments_pass(p: Prog) {
    let mut fx = Fixture::new(p, mode::ENFORCE);
    let syn = frame(
        &[],
        &L3::v4(CLIENT4, UNKNOWN4),
        &tcp(40001, 53, TCP_SYN, &[]),
    );
    assert_eq!(fx.run(&syn), XDP_DROP);
    assert_only(
        &fx.counters(),
        Some((v::UNKNOWN, a::DROP, f::V4, t::TCP)),
        &[c::EVENTS_SENT],
    );
    let e = &fx.events()[0];
    assert_eq!(
        (
            e.proto.as_str(),
            e.qname.as_str(),
            e.qtype.as_str(),
            e.dst_port
        ),
        ("tcp", "", "", 53)
    );

    let fx = Fixture::new(p, mode::ENFORCE);
    let syn6 = frame(
        &[],
        &L3::v6(CLIENT6, REGISTERED6),
        &tcp(40001, 53, TCP_SYN, &[]),
    );
    assert_eq!(fx.run(&syn6), XDP_PASS);
    assert_only(
        &fx.counters(),
        Some((v::REGISTERED, a::PASS, f::V6, t::TCP)),
        &[],
    );

    // A data segment of an established connection, and a SYN-ACK from a server: not checked.
    let mut fx = Fixture::new(p, mode::ENFORCE);
    let mut msg = vec![0, 20];
    msg.extend_from_slice(&dns_query(3, "a.test", 1));
    assert_eq!(
        fx.run(&frame(
            &[],
            &L3::v4(CLIENT4, UNKNOWN4),
            &tcp(40001, 53, TCP_ACK | TCP_PSH, &msg)
        )),
        XDP_PASS
    );
    assert_eq!(
        fx.run(&frame(
            &[],
            &L3::v4(UNKNOWN4, CLIENT4),
            &tcp(53, 40001, TCP_SYN | TCP_ACK, &[])
        )),
        XDP_PASS
    );
    assert_only(&fx.counters(), None, &[c::TCP_OTHER, c::TCP_OTHER]);
    assert!(fx.events().is_empty());
}

fn responses_and_non_dns_pass(p: Prog) {
    let mut fx = Fixture::new(p, mode::ENFORCE);
    let resp = frame(
        &[],
        &L3::v4(UNKNOWN4, CLIENT4),
        &udp(53, 40000, &dns_response(1, "a.test", 1)),
    );
    assert_eq!(fx.run(&resp), XDP_PASS);
    let ntp = frame(
        &[],
        &L3::v4(CLIENT4, UNKNOWN4),
        &udp(40000, 123, &[0u8; 48]),
    );
    assert_eq!(fx.run(&ntp), XDP_PASS);
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    arp.extend_from_slice(&[0u8; 28]);
    assert_eq!(fx.run(&arp), XDP_PASS);
    // ICMP to an unknown address.
    let icmp = frame(
        &[],
        &L3::v4(CLIENT4, UNKNOWN4),
        &L4 {
            proto: 1,
            bytes: vec![8, 0, 0, 0, 0, 1, 0, 1],
        },
    );
    assert_eq!(fx.run(&icmp), XDP_PASS);
    assert_only(
        &fx.counters(),
        None,
        // The response answers no query the program saw: unsolicited.
        &[
            c::RESPONSES,
            c::RESP_UNSOLICITED,
            c::NOT_DNS,
            c::NOT_IP,
            c::NOT_DNS,
        ],
    );
    assert!(fx.events().is_empty());
}

fn truncated_headers_pass_as_malformed(p: Prog) {
    let full = udp_query(&L3::v4(CLIENT4, UNKNOWN4), &[], 1, "a.test", 1);
    // Cut inside IPv4, UDP and the DNS header (14 + 20 + 8 + 12 = 54). BPF_PROG_TEST_RUN
    // refuses frames shorter than an Ethernet header, as no driver delivers them.
    // For the classifier the kernel builds an skb first, and refuses a frame cut inside the
    // IP header (EINVAL): those cuts are checked on XDP only.
    let refused_for_tc = |cut: usize, ip_len: usize| matches!(p, Prog::Tc) && cut < 14 + ip_len;
    for cut in [20, 33, 40, 45, 50] {
        let fx = Fixture::new(p, mode::ENFORCE);
        if refused_for_tc(cut, 20) {
            assert_eq!(fx.try_run(&full[..cut]), None, "cut at {cut}");
            continue;
        }
        assert_eq!(fx.run(&full[..cut]), XDP_PASS, "cut at {cut}");
        assert_only(&fx.counters(), None, &[c::MALFORMED]);
    }
    let full6 = udp_query(&L3::v6(CLIENT6, UNKNOWN6), &[], 1, "a.test", 1);
    for cut in [30, 60, 70] {
        let fx = Fixture::new(p, mode::ENFORCE);
        if refused_for_tc(cut, 40) {
            assert_eq!(fx.try_run(&full6[..cut]), None, "v6 cut at {cut}");
            continue;
        }
        assert_eq!(fx.run(&full6[..cut]), XDP_PASS, "v6 cut at {cut}");
        assert_only(&fx.counters(), None, &[c::MALFORMED]);
    }
    // A whole DNS header but the question cut short (root label, qtype, qclass and one byte of
    // "test" missing): malformed, passed, still reported with what was there.
    let mut fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(fx.run(&full[..full.len() - 6]), XDP_PASS);
    assert_only(
        &fx.counters(),
        None,
        &[c::MALFORMED, c::QNAME_TRUNCATED, c::EVENTS_SENT],
    );
    let e = &fx.events()[0];
    assert_eq!((e.action.as_str(), e.qname.as_str()), ("pass", "a.tes…"));
}

fn garbage_after_udp_header_passes(p: Prog) {
    // Port 53, QR=0, then bytes that are no DNS question (a compression pointer and junk).
    let mut junk = vec![0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    junk.extend_from_slice(&[0xC0, 0x0C, 0xde, 0xad, 0xbe, 0xef, 0x99]);
    let mut fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&frame(
            &[],
            &L3::v4(CLIENT4, UNKNOWN4),
            &udp(40000, 53, &junk)
        )),
        XDP_PASS
    );
    assert_only(
        &fx.counters(),
        None,
        &[c::MALFORMED, c::QNAME_TRUNCATED, c::EVENTS_SENT],
    );
    assert_eq!(fx.events()[0].action, "pass");
    // Fewer than 12 bytes after the UDP header.
    let fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&frame(
            &[],
            &L3::v4(CLIENT4, UNKNOWN4),
            &udp(40000, 53, &[1, 2, 3])
        )),
        XDP_PASS
    );
    assert_only(&fx.counters(), None, &[c::MALFORMED]);
}

fn events_are_rate_limited_per_source_counters_exact(p: Prog) {
    let mut fx = Fixture::new(p, mode::ENFORCE);
    // One event per second after a burst of 5.
    fx.filter.set_event_rate(1, 5).unwrap();
    let pkt = udp_query(&L3::v4(CLIENT4, UNKNOWN4), &[], 1, "flood.test", 16);
    for _ in 0..50 {
        assert_eq!(fx.run(&pkt), XDP_DROP);
    }
    // Another source still gets its own events.
    let other = udp_query(&L3::v4("192.0.2.11", UNKNOWN4), &[], 1, "flood.test", 16);
    assert_eq!(fx.run(&other), XDP_DROP);
    let cn = fx.counters();
    assert_eq!(
        cn.query(v::UNKNOWN, a::DROP, f::V4, t::UDP),
        51,
        "every packet counted"
    );
    assert_eq!(cn.get(c::EVENTS_SENT), 6);
    assert_eq!(cn.get(c::EVENTS_RATE_LIMITED), 45);
    let ev = fx.events();
    assert_eq!(ev.len(), 6);
    assert_eq!(
        ev.iter()
            .filter(|e| e.src_ip.to_string() == "192.0.2.11")
            .count(),
        1
    );
}

fn maximal_name_and_over_long_name(p: Prog) {
    // A 255-byte name (RFC 1035 §3.1 maximum): four 62-byte labels and a 5-byte one.
    let long: Vec<String> = vec![
        "a".repeat(62),
        "b".repeat(62),
        "c".repeat(62),
        "d".repeat(62),
        "e".to_string(),
    ];
    let name = long.join(".");
    assert_eq!(wire_name(&name).len(), 255);
    let mut fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(&L3::v4(CLIENT4, UNKNOWN4), &[], 1, &name, 16)),
        XDP_DROP
    );
    assert_only(
        &fx.counters(),
        Some((v::UNKNOWN, a::DROP, f::V4, t::UDP)),
        &[c::EVENTS_SENT],
    );
    let e = &fx.events()[0];
    assert_eq!((e.qname.as_str(), e.qtype.as_str()), (name.as_str(), "TXT"));

    // A name that runs past 256 bytes is not a valid name: malformed, passed.
    let over: Vec<String> = (0..5).map(|_| "x".repeat(63)).collect();
    let fx = Fixture::new(p, mode::ENFORCE);
    assert_eq!(
        fx.run(&udp_query(
            &L3::v4(CLIENT4, UNKNOWN4),
            &[],
            1,
            &over.join("."),
            16
        )),
        XDP_PASS
    );
    assert_only(
        &fx.counters(),
        None,
        &[c::MALFORMED, c::QNAME_TRUNCATED, c::EVENTS_SENT],
    );
}

/// Each test above as `xdp::<name>` and `tc::<name>`.
macro_rules! on_both_hooks {
    ($($name:ident),* $(,)?) => {
        mod xdp {
            $(#[test] fn $name() { super::$name(super::Prog::Xdp) })*
        }
        mod tc {
            $(#[test] fn $name() { super::$name(super::Prog::Tc) })*
        }
    };
}

on_both_hooks!(
    registered_v4_query_passes_without_event,
    unknown_v4_query_monitor_passes_and_reports,
    unknown_v4_query_enforce_drops_and_reports,
    expired_entry_counts_as_unknown,
    exempt_and_internal_destinations,
    short_prefixes_and_first_byte_neighbours,
    ipv6_registered_and_unknown_with_extension_headers,
    fragments_and_long_extension_chains_pass,
    vlan_qinq_and_ipv4_options,
    tcp_syn_is_checked_other_segments_pass,
    responses_and_non_dns_pass,
    truncated_headers_pass_as_malformed,
    garbage_after_udp_header_passes,
    events_are_rate_limited_per_source_counters_exact,
    maximal_name_and_over_long_name,
);
