//! The XDP program on hostile packets, under BPF_PROG_TEST_RUN: well over 100,000 random and
//! mutated frames (truncated at every length, bad IP/UDP lengths, VLAN stacks, IPv6
//! extension-header chains, compression-pointer loops and forward pointers, maximal label
//! counts, huge RR counts, random bytes), from a seeded xorshift generator so that a failure
//! replays.
//!
//! Every frame is classified by a reference classifier written here from the rules in
//! docs/DESIGN.md (non-IP, malformed, fragment, extension-header limit, non-DNS, response,
//! other TCP, or a query with its verdict), and the program must agree on the action and on
//! which counter moved, frame by frame. Nothing but a well-formed query to an unknown
//! destination is ever dropped, the counters sum to the frames sent, and the response walk
//! counts every bound it hits (`response_walk_limit`), checked against a reference walker.
//! Unpaired responses, however hostile, never add to the allow maps.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nsdb::{
    clock,
    counters::Counters,
    loader::{Filter, Sizes},
};
use nsdb_common::{action as a, counter as c, family as f, kind, mode, transport as t, verdict};
use nsdb_tests::packet::*;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Randomness: xorshift64*, seeded, so that a failing run replays exactly.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture: one address of every kind, as in xdp_classes.rs.

const CLIENTS4: [&str; 3] = ["192.0.2.10", "192.0.2.11", "198.18.0.1"];
const CLIENTS6: [&str; 2] = ["2001:db8:1::10", "2001:db8:1::11"];
const REGISTERED4: &str = "198.51.100.53";
const REGISTERED6: &str = "2001:db8:ff::53";
const EXPIRED4: &str = "198.51.100.77";
const UNKNOWN4: &str = "198.51.100.99";
const UNKNOWN6: &str = "2001:db8:bad::99";
const EXEMPT4: &str = "203.0.113.53";
const EXEMPT6: &str = "2001:db8:53::1";
const INTERNAL4: &str = "192.0.2.53";

const INTERNAL_NETS: [&str; 2] = ["192.0.2.0/24", "2001:db8:1::/48"];
const EXEMPT_NETS: [&str; 2] = ["203.0.113.53/32", "2001:db8:53::/48"];

/// A prefix, for the reference's own longest-prefix test.
struct Net(IpAddr, u32);

impl Net {
    fn parse(s: &str) -> Net {
        let (a, l) = s.split_once('/').unwrap();
        Net(a.parse().unwrap(), l.parse().unwrap())
    }
    fn contains(&self, x: &IpAddr) -> bool {
        let bits = |a: &IpAddr| match a {
            IpAddr::V4(a) => (u128::from(u32::from(*a)) << 96, 32),
            IpAddr::V6(a) => (u128::from(*a), 128),
        };
        let ((n, fam_n), (x, fam_x)) = (bits(&self.0), bits(x));
        let keep = if self.1 == 0 {
            0
        } else {
            u128::MAX << (128 - self.1)
        };
        fam_n == fam_x && n & keep == x & keep
    }
}

struct Fx {
    filter: Filter,
    events: aya::maps::RingBuf<aya::maps::MapData>,
    responses: aya::maps::RingBuf<aya::maps::MapData>,
    internal: Vec<Net>,
    exempt: Vec<Net>,
}

impl Fx {
    fn new(m: u32, learn: bool) -> Self {
        let mut filter = Filter::load(Sizes {
            allow_entries: 1 << 18,
        })
        .expect("loading the XDP program");
        filter.set_mode(m).unwrap();
        // A pending name stays pending for the whole test (the reference does not expire).
        filter
            .set_learning(learn, 1, 86400, 0, 3_600_000_000_000)
            .unwrap();
        // Rate-limit events as the daemon does, so that path runs too.
        filter.set_event_rate(10, 20).unwrap();
        for n in INTERNAL_NETS {
            filter.add_internal(n.parse().unwrap()).unwrap();
        }
        for n in EXEMPT_NETS {
            filter.add_exempt(n.parse().unwrap()).unwrap();
        }
        let hour = clock::mono_ns() + 3_600_000_000_000;
        for r in [REGISTERED4, REGISTERED6] {
            filter.allow(r.parse().unwrap(), hour, kind::GLUE).unwrap();
        }
        filter
            .allow(
                EXPIRED4.parse().unwrap(),
                clock::mono_ns() - 1_000_000_000,
                kind::GLUE,
            )
            .unwrap();
        let events = filter.take_events().unwrap();
        let responses = filter.take_responses().unwrap();
        Fx {
            filter,
            events,
            responses,
            internal: INTERNAL_NETS.iter().map(|s| Net::parse(s)).collect(),
            exempt: EXEMPT_NETS.iter().map(|s| Net::parse(s)).collect(),
        }
    }

    fn run(&self, pkt: &[u8]) -> u32 {
        nsdb_tests::test_run(self.filter.program(), pkt, 1).return_value
    }

    fn counters(&self) -> Counters {
        self.filter.counters().unwrap()
    }

    /// Empties both ring buffers (the program counts what it cannot write; draining keeps the
    /// lost counters for real overloads).
    fn drain(&mut self) {
        while self.events.next().is_some() {}
        while self.responses.next().is_some() {}
    }

    /// The verdict the program should give a query to `dst`, from the live allow map (the
    /// program itself may have learned addresses) and the fixture's prefixes.
    fn verdict(&self, dst: IpAddr) -> u8 {
        if let Some(e) = self.filter.allowed(dst)
            && (e.expires_ns == u64::MAX || e.expires_ns > clock::mono_ns())
        {
            return verdict::REGISTERED;
        }
        if self.internal.iter().any(|n| n.contains(&dst)) {
            return verdict::INTERNAL;
        }
        if self.exempt.iter().any(|n| n.contains(&dst)) {
            return verdict::EXEMPT;
        }
        verdict::UNKNOWN
    }
}

// ---------------------------------------------------------------------------------------------
// The reference classifier: what a frame is, read byte by byte from the layouts (RFC 791,
// RFC 8200 §4, RFC 768, RFC 9293 §3.1, RFC 1035 §4.1) and the rules of docs/DESIGN.md. Lengths
// are those of the frame: the program (like this classifier) ignores the IP and UDP length
// fields, which a hostile sender controls anyway.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    NotIp,
    Malformed,
    Fragment,
    ExtLimit,
    NotDns,
    TcpOther,
    /// A response (QR=1) to or from port 53; `pairable`: from port 53 (looked up in INFLIGHT).
    Response {
        pairable: bool,
        key: Key,
    },
    /// A query (QR=0 to port 53, or a TCP SYN to 53) to `dst`; `question_ok`: a UDP query
    /// whose question the program can read whole.
    Query {
        family: u8,
        transport: u8,
        dst: IpAddr,
        question_ok: bool,
        key: Key,
    },
}

/// An outstanding query: family, client, client port, server, DNS id.
type Key = (u8, IpAddr, u16, IpAddr, u16);

fn be16(p: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([p[o], p[o + 1]])
}

fn classify(p: &[u8]) -> Class {
    use Class::*;
    let len = p.len();
    if len < 14 {
        return Malformed;
    }
    let mut et = be16(p, 12);
    let mut off = 14;
    for _ in 0..2 {
        if et != TPID_8021Q && et != TPID_8021AD {
            break;
        }
        if off + 4 > len {
            return Malformed;
        }
        et = be16(p, off + 2);
        off += 4;
    }
    let (family, src, dst, mut l4, mut proto);
    match et {
        ETH_P_IPV4 => {
            if off + 20 > len {
                return Malformed;
            }
            let ihl = (p[off] & 0x0f) as usize * 4;
            if p[off] >> 4 != 4 || ihl < 20 {
                return Malformed;
            }
            if be16(p, off + 6) & 0x1fff != 0 {
                return Fragment;
            }
            family = f::V4;
            src = IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&p[off + 12..off + 16]).unwrap(),
            ));
            dst = IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&p[off + 16..off + 20]).unwrap(),
            ));
            l4 = off + ihl;
            proto = p[off + 9];
        }
        ETH_P_IPV6 => {
            if off + 40 > len {
                return Malformed;
            }
            if p[off] >> 4 != 6 {
                return Malformed;
            }
            family = f::V6;
            src = IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&p[off + 8..off + 24]).unwrap(),
            ));
            dst = IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&p[off + 24..off + 40]).unwrap(),
            ));
            proto = p[off + 6];
            l4 = off + 40;
            let mut done = false;
            for _ in 0..8 {
                match proto {
                    0 | 43 | 60 => {
                        if l4 + 2 > len {
                            return Malformed;
                        }
                        proto = p[l4];
                        l4 += (p[l4 + 1] as usize + 1) * 8;
                    }
                    44 => {
                        if l4 + 4 > len {
                            return Malformed;
                        }
                        if be16(p, l4 + 2) >> 3 != 0 {
                            return Fragment;
                        }
                        proto = p[l4];
                        l4 += 8;
                    }
                    51 => {
                        if l4 + 2 > len {
                            return Malformed;
                        }
                        proto = p[l4];
                        l4 += (p[l4 + 1] as usize + 2) * 4;
                    }
                    _ => {
                        done = true;
                        break;
                    }
                }
            }
            if !done && matches!(proto, 0 | 43 | 44 | 51 | 60) {
                return ExtLimit;
            }
        }
        _ => return NotIp,
    }
    match proto {
        17 => {
            if l4 + 8 > len {
                return Malformed;
            }
            let (sport, dport) = (be16(p, l4), be16(p, l4 + 2));
            if sport != 53 && dport != 53 {
                return NotDns;
            }
            let dns = l4 + 8;
            if dns + 12 > len {
                return Malformed;
            }
            let id = be16(p, dns);
            if p[dns + 2] & 0x80 != 0 {
                return Response {
                    pairable: sport == 53,
                    key: (family, dst, dport, src, id),
                };
            }
            if dport != 53 {
                return NotDns;
            }
            Query {
                family,
                transport: t::UDP,
                dst,
                question_ok: question_ok(&p[dns + 12..]),
                key: (family, src, sport, dst, id),
            }
        }
        6 => {
            if l4 + 20 > len {
                return Malformed;
            }
            let (sport, dport) = (be16(p, l4), be16(p, l4 + 2));
            if sport != 53 && dport != 53 {
                return NotDns;
            }
            if dport == 53 && p[l4 + 13] & 0x12 == 0x02 {
                return Query {
                    family,
                    transport: t::TCP,
                    dst,
                    question_ok: true,
                    key: (family, src, sport, dst, 0),
                };
            }
            TcpOther
        }
        _ => NotDns,
    }
}

/// Can the question name (plain labels, no compression: it is the first name of the message,
/// RFC 1035 §4.1.2) and its type be read from the first 256 bytes (the event's name buffer)?
fn question_ok(q: &[u8]) -> bool {
    let l = q.len().min(256);
    let mut off = 0;
    for _ in 0..128 {
        if off >= l {
            return false;
        }
        let c = q[off] as usize;
        if c == 0 {
            return off + 1 + 2 <= q.len();
        }
        if c & 0xC0 != 0 {
            return false;
        }
        off += c + 1;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Frame generators and mutations.

fn random_name(r: &mut Rng) -> String {
    let labels = 1 + r.below(5);
    (0..labels)
        .map(|_| {
            let n = 1 + r.below(12);
            (0..n)
                .map(|_| (b'a' + r.below(26) as u8) as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A DNS message built to hit a parsing bound or rule, for queries and responses alike.
fn hostile_message(r: &mut Rng, id: u16, response: bool) -> Vec<u8> {
    let mut m = dns_query(id, &random_name(r), 1);
    if response {
        m[2] |= 0x80;
    }
    match r.below(12) {
        // Compression pointer to itself in the question (a loop).
        0 => {
            m.truncate(12);
            m.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        }
        // Two pointers pointing at each other.
        1 => {
            m.truncate(12);
            m.extend_from_slice(&[1, b'a', 0xC0, 0x0E, 0, 1, 0, 1]);
            m.extend_from_slice(&[0xC0, 0x0C]);
        }
        // A forward pointer.
        2 => {
            m.truncate(12);
            m.extend_from_slice(&[0xC0, 0x20, 0, 1, 0, 1]);
            m.resize(0x30, 0);
        }
        // The maximal label count: 127 one-byte labels (255 bytes) ...
        3 => {
            m.truncate(12);
            for _ in 0..127 {
                m.extend_from_slice(&[1, b'x']);
            }
            m.extend_from_slice(&[0, 0, 1, 0, 1]);
        }
        // ... and one label more than any valid name has.
        4 => {
            m.truncate(12);
            for _ in 0..128 + r.below(100) {
                m.extend_from_slice(&[1, b'x']);
            }
            m.extend_from_slice(&[0, 0, 1, 0, 1]);
        }
        // 63-byte labels up to and past 255 bytes.
        5 => {
            m.truncate(12);
            for _ in 0..3 + r.below(3) {
                m.push(63);
                m.extend(std::iter::repeat_n(b'y', 63));
            }
            m.extend_from_slice(&[0, 0, 1, 0, 1]);
        }
        // Extended label types 0x40 / 0x80 (RFC 6891 §5).
        6 => {
            m[12] = *r.pick(&[0x40, 0x80, 0x7f, 0xbf]);
        }
        // Huge section counts with few records.
        7 => {
            for o in [4, 6, 8, 10] {
                m[o..o + 2]
                    .copy_from_slice(&r.pick(&[0u16, 1, 2, 64, 65, 0x7fff, 0xffff]).to_be_bytes());
            }
        }
        // No question at all / question cut inside the type.
        8 => {
            let cut = 12 + r.below(m.len() - 12);
            m.truncate(cut);
        }
        // A label running past the end.
        9 => {
            m.truncate(12);
            m.extend_from_slice(&[40, b'a', b'b']);
        }
        // Random bytes after the header.
        10 => {
            m.truncate(12);
            let n = r.below(300);
            m.extend(r.bytes(n));
        }
        // A referral with records (responses) or a plain query.
        _ => {
            if response {
                let qname = random_name(r);
                return random_response(r, id, &qname);
            }
        }
    }
    m
}

/// A response carrying NS, A and AAAA records, with hostile twists.
fn random_response(r: &mut Rng, id: u16, qname: &str) -> Vec<u8> {
    let ns_pool = [
        "a.nic.test",
        "b.nic.test",
        "ns1.example.test",
        "ns.evil.test",
    ];
    let mut answer = Vec::new();
    let mut authority = Vec::new();
    let mut additional = Vec::new();
    for _ in 0..r.below(4) {
        let target = *r.pick(&ns_pool);
        authority.push(Rr::ns("test", r.next() as u32, target));
    }
    for _ in 0..r.below(3) {
        answer.push(Rr::a(
            qname,
            r.next() as u32,
            &format!("203.0.113.{}", r.byte()),
        ));
    }
    for _ in 0..r.below(6) {
        let owner = r.pick(&ns_pool).to_string();
        if r.chance(50) {
            additional.push(Rr::a(
                &owner,
                r.next() as u32,
                &format!("198.18.{}.{}", r.byte(), r.byte()),
            ));
        } else {
            additional.push(Rr::aaaa(
                &owner,
                r.next() as u32,
                &format!("2001:db8:77::{:x}", r.next() as u16),
            ));
        }
    }
    if r.chance(10) {
        // Past the 64 RRs the program walks.
        for i in 0..60 + r.below(20) {
            additional.push(Rr::a("a.nic.test", 60, &format!("198.19.0.{}", i % 250)));
        }
    }
    let mut m = dns_message(id, qname, 1, &answer, &authority, &additional);
    match r.below(8) {
        // A record whose data runs past the end.
        0 => {
            let n = m.len();
            if n > 14 {
                m[n - 5] = 0xff;
            }
        }
        // An owner name that is a forward pointer, or a pointer loop in an NS target.
        1 => {
            if let Some(p) = m.windows(2).rposition(|w| w == [0, 2]) {
                // ... type NS found: point its rdata name forward.
                let rd = p + 10;
                if rd + 2 <= m.len() {
                    m[rd] = 0xC0 | (r.byte() & 0x3f);
                    m[rd + 1] = r.byte();
                }
            }
        }
        // Bytes flipped anywhere after the header.
        2 => {
            for _ in 0..1 + r.below(4) {
                let i = 12 + r.below(m.len() - 12);
                m[i] = r.byte();
            }
        }
        // Longer than the 2,048 bytes the program copies.
        3 if r.chance(30) => {
            let n = m.len();
            let ar = be16(&m, 10) + 1;
            m[10..12].copy_from_slice(&ar.to_be_bytes());
            m.extend_from_slice(&[0, 0, 16, 0, 1, 0, 0, 0, 60]);
            let pad = 2100 - n.min(2000);
            m.extend_from_slice(&(pad as u16).to_be_bytes());
            m.extend(std::iter::repeat_n(0u8, pad));
        }
        _ => {}
    }
    m
}

/// A frame around `l4`, over a random network layer and link layer.
fn wrap(r: &mut Rng, src: IpAddr, dst: IpAddr, l4: &L4) -> Vec<u8> {
    let mut l3 = L3::between(src, dst);
    match &mut l3 {
        L3::V4 {
            options,
            frag_offset,
            ..
        } => {
            if r.chance(20) {
                *options = 4 * r.below(11);
            }
            if r.chance(3) {
                *frag_offset = 1 + r.below(100) as u16;
            }
        }
        L3::V6 {
            ext, frag_offset, ..
        } => {
            if r.chance(25) {
                let n = r.below(11);
                *ext = (0..n).map(|_| *r.pick(&[0u8, 43, 44, 51, 60])).collect();
                if r.chance(10) {
                    *frag_offset = 1 + r.below(100) as u16;
                }
            }
        }
    }
    let vlans: Vec<(u16, u16)> = (0..*r.pick(&[0usize, 0, 0, 0, 1, 2, 3]))
        .map(|_| (*r.pick(&[TPID_8021Q, TPID_8021AD]), r.below(4095) as u16))
        .collect();
    frame(&vlans, &l3, l4)
}

fn addr_pair(r: &mut Rng) -> (IpAddr, IpAddr) {
    if r.chance(70) {
        let dst = *r.pick(&[
            REGISTERED4,
            EXPIRED4,
            UNKNOWN4,
            EXEMPT4,
            INTERNAL4,
            "198.18.5.5",
        ]);
        (r.pick(&CLIENTS4).parse().unwrap(), dst.parse().unwrap())
    } else {
        let dst = *r.pick(&[REGISTERED6, UNKNOWN6, EXEMPT6, "2001:db8:1::99"]);
        (r.pick(&CLIENTS6).parse().unwrap(), dst.parse().unwrap())
    }
}

/// One frame of a random shape: queries (mostly), responses, TCP, non-DNS, junk.
fn base_frame(r: &mut Rng) -> Vec<u8> {
    let (src, dst) = addr_pair(r);
    let id = r.next() as u16;
    let port = 1024 + r.below(64000) as u16;
    match r.below(20) {
        0..=7 => {
            let msg = if r.chance(60) {
                dns_query(id, &random_name(r), *r.pick(&[1u16, 2, 28, 255]))
            } else {
                hostile_message(r, id, false)
            };
            wrap(r, src, dst, &udp(port, 53, &msg))
        }
        8..=10 => {
            let msg = hostile_message(r, id, true);
            wrap(r, dst, src, &udp(53, port, &msg))
        }
        11 => {
            let flags = *r.pick(&[
                TCP_SYN,
                TCP_SYN | TCP_ACK,
                TCP_ACK,
                TCP_PSH | TCP_ACK,
                0,
                0xff,
            ]);
            let (sp, dp) = *r.pick(&[(port, 53), (53, port), (port, port)]);
            wrap(r, src, dst, &tcp(sp, dp, flags, &[]))
        }
        12 => {
            // UDP to other ports, a query sent from port 53, other protocols.
            let l4 = match r.below(3) {
                0 => udp(port, 5353, &dns_query(id, "x.test", 1)),
                1 => udp(53, port, &dns_query(id, "x.test", 1)),
                _ => L4 {
                    proto: *r.pick(&[1u8, 58, 47, 50, 132, 255]),
                    bytes: r.bytes(20),
                },
            };
            wrap(r, src, dst, &l4)
        }
        13 => {
            // Non-IP ethertypes (ARP, LLDP, anything), possibly behind VLAN tags.
            let mut fr = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
            for _ in 0..r.below(4) {
                fr.extend_from_slice(&TPID_8021Q.to_be_bytes());
                fr.extend_from_slice(&[0, 1]);
            }
            let any = r.next() as u16;
            fr.extend_from_slice(&r.pick(&[ETH_P_ARP, 0x88cc, 0x8847, any]).to_be_bytes());
            let n = r.below(60);
            fr.extend(r.bytes(n));
            fr
        }
        14 => {
            // Random bytes behind a plausible Ethernet + IP start.
            let mut fr = wrap(r, src, dst, &udp(port, 53, &[]));
            let keep = r.below(fr.len());
            fr.truncate(keep);
            let n = r.below(120);
            fr.extend(r.bytes(n));
            fr
        }
        15 => {
            let n = r.below(200);
            r.bytes(n)
        }
        _ => {
            let msg = dns_query(id, &random_name(r), 1);
            wrap(r, src, dst, &udp(port, 53, &msg))
        }
    }
}

/// A mutation of `fr`: wrong IP/UDP lengths, bad versions or header lengths, flipped bytes.
fn mutate(r: &mut Rng, fr: &mut [u8]) {
    if fr.len() < 14 {
        return;
    }
    let l3 = 14;
    match r.below(6) {
        0 if fr.len() >= l3 + 6 => {
            // IPv4 total length / IPv6 payload length: wrong.
            let o = if fr[l3] >> 4 == 6 { l3 + 4 } else { l3 + 2 };
            let any = r.next() as u16;
            let v = *r.pick(&[0u16, 1, 20, 0xffff, any]);
            fr[o..o + 2].copy_from_slice(&v.to_be_bytes());
        }
        1 if fr.len() > l3 => {
            // Version nibble and IHL.
            fr[l3] = r.byte();
        }
        2 => {
            // The UDP length field (bytes 4-5 of UDP after a plain IPv4 header).
            let o = l3 + 20 + 4;
            if fr.len() >= o + 2 {
                let v = *r.pick(&[0u16, 7, 8, 9, 0xffff]);
                fr[o..o + 2].copy_from_slice(&v.to_be_bytes());
            }
        }
        _ => {
            for _ in 0..1 + r.below(3) {
                let i = r.below(fr.len());
                fr[i] = r.byte();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The check of one frame against the reference.

/// Counters that exactly one of moves for every frame.
fn primary(i: u32) -> bool {
    i < c::QUERY_COUNTERS
        || [
            c::NOT_IP,
            c::NOT_DNS,
            c::MALFORMED,
            c::RESPONSES,
            c::TCP_OTHER,
            c::FRAGMENTS,
            c::IPV6_EXT_LIMIT,
        ]
        .contains(&i)
}

fn delta(before: &Counters, after: &Counters, i: u32) -> u64 {
    after.get(i) - before.get(i)
}

struct Checker {
    /// The reference's outstanding queries → trusted.
    inflight: HashMap<Key, bool>,
    sent: u64,
    drops: u64,
    by_class: HashMap<&'static str, u64>,
}

impl Checker {
    fn new() -> Self {
        Checker {
            inflight: HashMap::new(),
            sent: 0,
            drops: 0,
            by_class: HashMap::new(),
        }
    }

    /// Sends `fr`, checks the action and the counters against the reference.
    fn check(&mut self, fx: &Fx, fr: &[u8], enforce: bool) {
        if fr.len() < 14 {
            // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header (EINVAL),
            // and no driver hands the program one.
            return;
        }
        let class = classify(fr);
        // The expected verdict, read before the run (the run may learn).
        let expected_verdict = match class {
            Class::Query { dst, .. } => Some(fx.verdict(dst)),
            _ => None,
        };
        let before = fx.counters();
        let rc = fx.run(fr);
        let after = fx.counters();
        self.sent += 1;
        let ctx = || format!("frame {} ({class:?}): {:02x?}", self.sent, fr);
        let (name, want_primary, want_drop) = match class {
            Class::NotIp => ("not_ip", c::NOT_IP, false),
            Class::Malformed => ("malformed", c::MALFORMED, false),
            Class::Fragment => ("fragment", c::FRAGMENTS, false),
            Class::ExtLimit => ("ipv6_ext_limit", c::IPV6_EXT_LIMIT, false),
            Class::NotDns => ("not_dns", c::NOT_DNS, false),
            Class::TcpOther => ("tcp_other", c::TCP_OTHER, false),
            Class::Response { .. } => ("response", c::RESPONSES, false),
            Class::Query {
                family,
                transport,
                question_ok,
                ..
            } => {
                let v = expected_verdict.unwrap();
                if v == verdict::UNKNOWN && !question_ok {
                    ("query_malformed", c::MALFORMED, false)
                } else {
                    let drop = v == verdict::UNKNOWN && enforce;
                    let act = if drop { a::DROP } else { a::PASS };
                    (
                        verdict::NAMES[v as usize],
                        c::query_index(v, act, family, transport),
                        drop,
                    )
                }
            }
        };
        *self.by_class.entry(name).or_default() += 1;
        assert_eq!(
            rc,
            if want_drop { XDP_DROP } else { XDP_PASS },
            "action for {}",
            ctx()
        );
        if want_drop {
            self.drops += 1;
        }
        for i in 0..c::COUNT {
            if primary(i) {
                assert_eq!(
                    delta(&before, &after, i),
                    u64::from(i == want_primary),
                    "counter {i} (expected {want_primary} to move) for {}",
                    ctx()
                );
            }
        }
        let d = |i| delta(&before, &after, i);
        match class {
            Class::Query {
                transport,
                question_ok,
                key,
                ..
            } => {
                let v = expected_verdict.unwrap();
                if v == verdict::UNKNOWN {
                    // Exactly one event outcome, and a question that cannot be read is
                    // counted as such.
                    assert_eq!(
                        d(c::EVENTS_SENT) + d(c::EVENTS_RATE_LIMITED) + d(c::EVENTS_LOST),
                        1,
                        "event outcome for {}",
                        ctx()
                    );
                    assert_eq!(
                        d(c::QNAME_TRUNCATED),
                        u64::from(transport == t::UDP && !question_ok),
                        "qname_truncated for {}",
                        ctx()
                    );
                } else {
                    assert_eq!(d(c::EVENTS_SENT) + d(c::QNAME_TRUNCATED), 0, "{}", ctx());
                }
                if transport == t::UDP && !want_drop {
                    self.inflight.insert(key, v != verdict::UNKNOWN);
                }
            }
            Class::Response { pairable, key } => {
                let paired = d(c::RESP_PAIRED);
                let unsolicited = d(c::RESP_UNSOLICITED);
                if !pairable {
                    assert_eq!(paired + unsolicited, 0, "{}", ctx());
                } else {
                    assert_eq!(paired + unsolicited, 1, "pairing outcome for {}", ctx());
                    let model = self.inflight.remove(&key);
                    if paired == 1 {
                        let trusted = model.unwrap_or_else(|| {
                            panic!("paired a response to no query sent: {}", ctx())
                        });
                        assert_eq!(d(c::RESP_UNTRUSTED), u64::from(!trusted), "{}", ctx());
                    }
                    // (A remembered query may be unsolicited: its slot was reused.)
                }
                if paired == 0 || d(c::RESP_UNTRUSTED) == 1 {
                    for i in [c::GLUE_LEARNED, c::GLUE_REFRESHED, c::PENDING_LEARNED] {
                        assert_eq!(
                            d(i),
                            0,
                            "an untrusted or unpaired response taught: {}",
                            ctx()
                        );
                    }
                }
            }
            _ => {
                for i in [
                    c::EVENTS_SENT,
                    c::RESP_PAIRED,
                    c::GLUE_LEARNED,
                    c::QNAME_TRUNCATED,
                ] {
                    assert_eq!(d(i), 0, "counter {i} for {}", ctx());
                }
            }
        }
        assert_eq!(d(c::INTERNAL_ERROR), 0, "internal error for {}", ctx());
    }
}

fn primary_sum(cn: &Counters) -> u64 {
    (0..c::COUNT)
        .filter(|i| primary(*i))
        .map(|i| cn.get(i))
        .sum()
}

fn run_corpus(fx: &mut Fx, seed: u64, n_random: usize, enforce: bool) -> Checker {
    let mut r = Rng::new(seed);
    let mut ck = Checker::new();
    // Truncation at every length of a few frames of each shape.
    for _ in 0..60 {
        let fr = base_frame(&mut r);
        for cut in 0..=fr.len() {
            ck.check(fx, &fr[..cut], enforce);
        }
        fx.drain();
    }
    // Random frames, half of them mutated.
    for k in 0..n_random {
        let mut fr = base_frame(&mut r);
        if r.chance(50) {
            mutate(&mut r, &mut fr);
        }
        ck.check(fx, &fr, enforce);
        if k % 1024 == 0 {
            fx.drain();
        }
    }
    ck
}

#[test]
fn hostile_frames_match_the_reference_classifier() {
    let seed = std::env::var("NSDB_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6e73_6462_0006);
    let start = std::time::Instant::now();
    let mut fx = Fx::new(mode::ENFORCE, true);
    let allow_before = fx.filter.allow_len();
    let base = fx.counters();
    let ck = run_corpus(&mut fx, seed, 100_000, true);
    let end = fx.counters();
    assert_eq!(
        primary_sum(&end) - primary_sum(&base),
        ck.sent,
        "the counters sum to the frames sent"
    );
    // Only a paired response from a trusted server could have taught anything.
    let learned = end.get(c::GLUE_LEARNED) - base.get(c::GLUE_LEARNED);
    let (v4, v6) = fx.filter.allow_len();
    assert_eq!(
        (v4 + v6) as u64,
        (allow_before.0 + allow_before.1) as u64 + learned,
        "the allow maps grew by exactly what the program counted as learned"
    );
    eprintln!(
        "hostile: seed {seed:#x}, {} frames in {:.1} s, {} dropped, classes {:?}, counters {:?}",
        ck.sent,
        start.elapsed().as_secs_f64(),
        ck.drops,
        ck.by_class,
        end.named()
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .collect::<Vec<_>>()
    );
    assert!(ck.sent >= 100_000);
}

#[test]
fn hostile_frames_in_monitor_mode_are_never_dropped() {
    let mut fx = Fx::new(mode::MONITOR, true);
    let ck = run_corpus(&mut fx, 0x5eed_0002, 20_000, false);
    assert_eq!(ck.drops, 0);
}

/// Random responses, however hostile, with kernel learning on and no query sent before them:
/// every one unsolicited, the allow maps do not grow.
#[test]
fn unpaired_hostile_responses_teach_nothing() {
    let mut fx = Fx::new(mode::ENFORCE, true);
    let mut r = Rng::new(0x5eed_0003);
    let before = fx.filter.allow_entries().len();
    let base = fx.counters();
    let n = 20_000u64;
    let mut unsolicited = 0;
    for k in 0..n {
        let (client, server) = addr_pair(&mut r);
        let id = r.next() as u16;
        let msg = if r.chance(50) {
            {
                let qname = random_name(&mut r);
                random_response(&mut r, id, &qname)
            }
        } else {
            hostile_message(&mut r, id, true)
        };
        let port = 1024 + r.below(64000) as u16;
        let fr = wrap(&mut r, server, client, &udp(53, port, &msg));
        if matches!(classify(&fr), Class::Response { pairable: true, .. }) {
            unsolicited += 1;
        }
        assert_eq!(fx.run(&fr), XDP_PASS);
        if k % 1024 == 0 {
            fx.drain();
        }
    }
    let end = fx.counters();
    let d = |i| end.get(i) - base.get(i);
    assert_eq!(d(c::RESP_PAIRED), 0);
    assert_eq!(
        d(c::GLUE_LEARNED) + d(c::GLUE_REFRESHED) + d(c::PENDING_LEARNED),
        0
    );
    assert_eq!(
        fx.filter.allow_entries().len(),
        before,
        "the allow maps grew"
    );
    // Every frame was either a response (paired or not) or something the parse rejected.
    assert_eq!(
        d(c::RESPONSES) + d(c::MALFORMED) + d(c::FRAGMENTS) + d(c::IPV6_EXT_LIMIT) + d(c::NOT_IP),
        n
    );
    assert_eq!(
        d(c::RESP_UNSOLICITED),
        unsolicited,
        "every response from port 53 is unsolicited"
    );
}

// ---------------------------------------------------------------------------------------------
// Paired responses: the walk against a reference walker.

/// What the program's walk over a paired, trusted response should do: whether it stops at a
/// bound or on malformed data, the NS target names it marks pending, and the addresses it may
/// learn (glue, and the answer to a pending name's lookup).
struct Walk {
    stopped: bool,
    pending_marks: Vec<u64>,
    learn: Vec<IpAddr>,
    question_pending: bool,
}

/// The hash of the name at `off` (as the program computes it: pointers strictly backwards, at
/// most 32 of them, 160 steps of a label or a pointer), and the offset past it.
fn ref_hash_name(b: &[u8], off: usize) -> Option<(usize, u64)> {
    let len = b.len();
    let mut pos = off;
    let mut end = 0usize;
    let mut hops = 0;
    let mut wire = Vec::new();
    for _ in 0..160 {
        if pos >= len {
            return None;
        }
        let c = b[pos];
        if c & 0xC0 == 0xC0 {
            if pos + 1 >= len {
                return None;
            }
            let ptr = (((c & 0x3f) as usize) << 8) | b[pos + 1] as usize;
            if ptr >= pos || hops >= 32 {
                return None;
            }
            if end == 0 {
                end = pos + 2;
            }
            hops += 1;
            pos = ptr;
            continue;
        }
        if c & 0xC0 != 0 || pos + 1 + c as usize > len {
            return None;
        }
        wire.extend_from_slice(&b[pos..pos + 1 + c as usize]);
        pos += c as usize + 1;
        if c == 0 {
            if end == 0 {
                end = pos;
            }
            return Some((end, nsdb_common::name_hash(&wire)));
        }
    }
    None
}

fn ref_skip_name(b: &[u8], start: usize) -> Option<usize> {
    if start < b.len() && b[start] & 0xC0 == 0xC0 && start + 2 <= b.len() {
        return Some(start + 2);
    }
    let mut o = start;
    for _ in 0..128 {
        if o >= b.len() {
            return None;
        }
        let c = b[o];
        if c == 0 {
            return Some(o + 1);
        }
        if c & 0xC0 == 0xC0 {
            return Some(o + 2);
        }
        if c & 0xC0 != 0 {
            return None;
        }
        o += c as usize + 1;
    }
    None
}

fn ref_walk(msg: &[u8], pending: &HashSet<u64>) -> Walk {
    let total = msg.len();
    let b = &msg[..total.min(nsdb_common::RESP_MSG_MAX)];
    let mut w = Walk {
        stopped: total > nsdb_common::RESP_MSG_MAX,
        pending_marks: vec![],
        learn: vec![],
        question_pending: false,
    };
    if be16(b, 4) != 1 {
        w.stopped = true;
        return w;
    }
    let Some((qend, qh)) = ref_hash_name(b, 12) else {
        w.stopped = true;
        return w;
    };
    w.question_pending = pending.contains(&qh);
    let (an, ns, ar) = (
        be16(b, 6) as usize,
        be16(b, 8) as usize,
        be16(b, 10) as usize,
    );
    if an + ns + ar > 64 {
        w.stopped = true;
    }
    let mut off = qend + 4;
    let mut have_ns = false;
    for i in 0..(an + ns + ar).min(64) {
        let Some(o) = ref_skip_name(b, off) else {
            w.stopped = true;
            break;
        };
        if o + 10 > b.len() {
            w.stopped = true;
            break;
        }
        let (rtype, class) = (be16(b, o), be16(b, o + 2));
        let rdlen = be16(b, o + 8) as usize;
        let rd = o + 10;
        if rd + rdlen > b.len() {
            w.stopped = true;
            break;
        }
        let answer = i < an;
        let additional = i >= an + ns;
        if !additional && rtype == 2 {
            have_ns = true;
            if let Some((_, h)) = ref_hash_name(b, rd) {
                w.pending_marks.push(h);
            }
        }
        if class == 1 && ((additional && have_ns) || (answer && w.question_pending)) {
            if rtype == 1 && rdlen == 4 {
                w.learn.push(IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(&b[rd..rd + 4]).unwrap(),
                )));
            } else if rtype == 28 && rdlen == 16 {
                w.learn.push(IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&b[rd..rd + 16]).unwrap(),
                )));
            }
        }
        off = rd + rdlen;
    }
    w
}

/// Hostile responses that do pair with a query to a registered server (so they are trusted
/// and walked): the walk stops exactly where the reference walker says it must, counts it
/// (`response_walk_limit`), learns only what the rules allow, and everything is passed.
#[test]
fn paired_hostile_responses_walk_within_counted_bounds() {
    let mut fx = Fx::new(mode::ENFORCE, true);
    let mut r = Rng::new(0x5eed_0004);
    let mut pending: HashSet<u64> = HashSet::new();
    let mut allowed_by_rules: HashSet<IpAddr> = fx
        .filter
        .allow_entries()
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let (mut stops, mut learned_total, mut pending_hits) = (0u64, 0u64, 0u64);
    let n = 15_000;
    for k in 0..n {
        let client: IpAddr = r.pick(&CLIENTS4).parse().unwrap();
        let server: IpAddr = REGISTERED4.parse().unwrap();
        let id = r.next() as u16;
        let port = 1024 + r.below(64000) as u16;
        // A pending NS name's lookup now and then (the glue-less path).
        let qname = if r.chance(15) {
            r.pick(&[
                "a.nic.test",
                "b.nic.test",
                "ns1.example.test",
                "ns.evil.test",
            ])
            .to_string()
        } else {
            random_name(&mut r)
        };
        // One in four goes over TCP: a connection to the server, and the response alone in
        // one segment behind its length, which the program walks as it walks a UDP one.
        let over_tcp = r.chance(25);
        let q = if over_tcp {
            frame(
                &[],
                &L3::between(client, server),
                &tcp(port, 53, TCP_SYN, &[]),
            )
        } else {
            frame(
                &[],
                &L3::between(client, server),
                &udp(port, 53, &dns_query(id, &qname, 1)),
            )
        };
        assert_eq!(fx.run(&q), XDP_PASS, "query to a registered server");
        let mut msg = if r.chance(70) {
            random_response(&mut r, id, &qname)
        } else {
            hostile_message(&mut r, id, true)
        };
        if r.chance(20) {
            let i = 2 + r.below(msg.len() - 2);
            msg[i] = r.byte();
            msg[2] |= 0x80;
        }
        let want = ref_walk(&msg, &pending);
        let before = fx.counters();
        let l4 = if over_tcp {
            let mut seg = (msg.len() as u16).to_be_bytes().to_vec();
            seg.extend_from_slice(&msg);
            tcp(53, port, TCP_ACK | TCP_PSH, &seg)
        } else {
            udp(53, port, &msg)
        };
        let fr = frame(&[], &L3::between(server, client), &l4);
        assert_eq!(fx.run(&fr), XDP_PASS, "paired response {k}: {msg:02x?}");
        let after = fx.counters();
        let d = |i| after.get(i) - before.get(i);
        let paired = if over_tcp {
            c::TCP_RESP_SEGMENTS
        } else {
            c::RESP_PAIRED
        };
        assert_eq!(d(paired), 1, "response {k} pairs with its query");
        assert_eq!(
            d(c::RESP_WALK_LIMIT),
            u64::from(want.stopped),
            "response {k}: walk stop counted iff the reference walker stops: {msg:02x?}"
        );
        assert_eq!(
            d(c::PENDING_LEARNED),
            u64::from(want.question_pending),
            "response {k}: pending question: {msg:02x?}"
        );
        for a in &want.learn {
            assert!(
                fx.filter.allowed(*a).is_some(),
                "response {k}: {a} should have been learned: {msg:02x?}"
            );
            allowed_by_rules.insert(*a);
        }
        pending.extend(&want.pending_marks);
        stops += u64::from(want.stopped);
        learned_total += d(c::GLUE_LEARNED);
        pending_hits += u64::from(want.question_pending);
        if k % 512 == 0 {
            fx.drain();
        }
    }
    assert!(
        pending.len() < 4096,
        "pending names stay far below the map's size"
    );
    for (a, _) in fx.filter.allow_entries() {
        assert!(
            allowed_by_rules.contains(&a),
            "{a} learned against the rules"
        );
    }
    eprintln!(
        "paired hostile responses: {n}, walks stopped at a bound {stops}, addresses learned {learned_total}, pending hits {pending_hits}"
    );
}

/// The verifier's view of the program: instructions it processed (its measure of complexity,
/// against the limit of 1,000,000), and the translated and JIT-compiled sizes (what
/// `bpftool prog show` reports as xlated, jited and verified_insns).
#[test]
fn verifier_stats() {
    let fx = Fx::new(mode::ENFORCE, true);
    // The same code behind both entry points: XDP and the TC classifier (`--attach tc`).
    for (hook, info) in [
        ("xdp", fx.filter.program().info()),
        ("tc", fx.filter.tc_program().info()),
    ] {
        let info = info.expect("program info");
        let verified = info
            .verified_instruction_count()
            .expect("kernel reports verified_insns");
        eprintln!(
            "verifier ({hook}): id {} verified_insns {verified} xlated {} B jited {} B",
            info.id(),
            info.size_translated().unwrap_or(0),
            info.size_jitted()
        );
        assert!(
            verified < 1_000_000,
            "{hook}: {verified} instructions verified: at the verifier's limit"
        );
    }
}
