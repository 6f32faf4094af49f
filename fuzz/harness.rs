//! The fuzz targets' bodies, shared with the regression tests in nsdb-user/tests/fuzz.rs
//! (included there with `#[path]`), so that a crash input replays through the same code.
//!
//! engine: the DNS wire parser and the learning engine on arbitrary messages and query/response pairs.
//!
//! Input layout (examples/seed.rs writes the seeds in it):
//! - byte 0: configuration: bits 0-1 bailiwick (auto, strict, off, auto), bit 2 collect the
//!   learned entries (`on_response`) instead of counting them (`on_response_count`), bit 3
//!   record every query, bit 4 explain decisions.
//! - then operations until the input ends, each: an op byte (bits 0-1: 0 query, 1 response,
//!   2 and 3 a pair; bits 2-4 client, bits 5-7 server, indices into fixed address tables), a
//!   time byte (bit 7 IPv6, bits 0-6 time step in 100 ms units), and one (query or response)
//!   or two (pair) messages, each a big-endian u16 length and that many bytes. A pair sends the
//!   first message as a query from the client to the server and the second as the server's
//!   response, with the query's DNS id copied into it so that the fuzzer needs not find it.
//!
//! Checked beyond "no panic": every address learned from glue or from a glue-less lookup
//! appears in the bytes of the response that taught it.
//!
//! capture: the capture reader on arbitrary bytes: pcap/pcapng framing, link layers, IP (with fragment
//! reassembly), UDP and TCP (with stream reassembly), and every DNS message found fed to the
//! learning engine, the same calls `nsdb learn` makes (nsdb::offline::read_all and
//! cli/learn.rs), minus the file mapping.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nsdb::capture::{Extractor, Reader};
use nsdb::learn::{Bailiwick, Engine, LearnConfig, Source};
use nsdb::wire::{self, Message, NameBuf};

/// Servers: two IANA root servers (known from the built-in hints, so their referrals teach),
/// and test addresses.
const SERVERS4: [Ipv4Addr; 8] = [
    Ipv4Addr::new(198, 41, 0, 4),
    Ipv4Addr::new(199, 9, 14, 201),
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
    Ipv4Addr::new(203, 0, 113, 1),
    Ipv4Addr::new(203, 0, 113, 2),
];
const SERVERS6: [Ipv6Addr; 8] = [
    Ipv6Addr::new(0x2001, 0x503, 0xba3e, 0, 0, 0, 2, 0x30),
    Ipv6Addr::new(0x2801, 0x1b8, 0x10, 0, 0, 0, 0, 0xb),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2),
];

fn client(i: u8, v6: bool) -> SocketAddr {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1 + i as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100 + i))
    };
    SocketAddr::new(ip, 40000 + i as u16)
}

fn server(i: u8, v6: bool) -> SocketAddr {
    let ip = if v6 {
        IpAddr::V6(SERVERS6[i as usize])
    } else {
        IpAddr::V4(SERVERS4[i as usize])
    };
    SocketAddr::new(ip, 53)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    /// A length-prefixed message, cut to what is left of the input.
    fn msg(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_be_bytes([self.byte()?, self.byte()?]) as usize;
        let n = n.min(self.0.len());
        let (m, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(m)
    }
}

/// Everything the wire parser offers, on one message.
fn walk(msg: &[u8]) {
    let Ok(m) = Message::parse(msg) else { return };
    let _ = (
        m.header.is_response(),
        m.header.opcode(),
        m.header.rcode(),
        m.header.truncated(),
    );
    let mut name = NameBuf::default();
    if let Some(q) = m.question() {
        let _ = wire::read_name(msg, q.name_off, &mut name);
        let _ = wire::type_name(q.qtype);
    }
    for r in m.records() {
        let Ok(r) = r else { break };
        if wire::read_name(msg, r.name_off, &mut name).is_ok() {
            let _ = wire::is_subdomain(name.as_str(), "example.test");
        }
        let _ = r.addr(msg);
        let _ = r.target(msg, &mut name);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn respond(e: &mut Engine, collect: bool, ts: u64, src: SocketAddr, dst: SocketAddr, msg: &[u8]) {
    walk(msg);
    if !collect {
        e.on_response_count(ts, src, dst, msg);
        return;
    }
    for l in e.on_response(ts, src, dst, msg) {
        if matches!(l.source, Source::Glue | Source::GluelessLookup) {
            let bytes: Vec<u8> = match l.addr {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            assert!(
                contains(msg, &bytes),
                "learned {} ({:?}) from a response that does not carry it",
                l.addr,
                l.source
            );
        }
    }
}

/// The engine target: one input.
pub fn engine(data: &[u8]) {
    let mut c = Cursor(data);
    let Some(cfg) = c.byte() else { return };
    let collect = cfg & 4 != 0;
    let mut e = Engine::new(LearnConfig {
        bailiwick: [
            Bailiwick::Auto,
            Bailiwick::Strict,
            Bailiwick::Off,
            Bailiwick::Auto,
        ][(cfg & 3) as usize],
        record_rows: true,
        record_all_queries: cfg & 8 != 0,
        explain: cfg & 16 != 0,
        ..LearnConfig::default()
    });
    let mut ts: u64 = 1_700_000_000_000;
    while let (Some(op), Some(tb)) = (c.byte(), c.byte()) {
        let v6 = tb & 0x80 != 0;
        ts += u64::from(tb & 0x7f) * 100;
        let (cl, sv) = (client((op >> 2) & 7, v6), server(op >> 5, v6));
        match op & 3 {
            0 => {
                let Some(m) = c.msg() else { break };
                walk(m);
                e.on_query(ts, cl, sv, m);
            }
            1 => {
                let Some(m) = c.msg() else { break };
                respond(&mut e, collect, ts, sv, cl, m);
            }
            _ => {
                let (Some(q), Some(r)) = (c.msg(), c.msg()) else {
                    break;
                };
                walk(q);
                e.on_query(ts, cl, sv, q);
                let mut r = r.to_vec();
                if r.len() >= 2 && q.len() >= 2 {
                    r[..2].copy_from_slice(&q[..2]);
                }
                respond(&mut e, collect, ts + 1, sv, cl, &r);
            }
        }
        let _ = e.take_rows();
        let _ = e.take_decisions();
    }
    // What the other commands read back.
    let _ = e.stats();
    for a in e.unexpired(ts) {
        assert!(e.is_registered(a.0, ts).is_some() || e.lookup(a.0).is_some());
    }
    let _ = e.entries().count();
}

/// The capture target: one input.
pub fn capture(data: &[u8]) {
    let Ok(mut rd) = Reader::new(data) else {
        return;
    };
    let mut ex = Extractor::new(&[53, 5353]);
    let mut e = Engine::new(LearnConfig {
        record_rows: true,
        ..LearnConfig::default()
    });
    let mut deliver = |p: nsdb::capture::DnsPacket<'_>| {
        assert!(
            p.msg.len() <= 65535,
            "a DNS message longer than TCP's length field"
        );
        if p.msg.len() < nsdb::wire::HEADER_LEN {
            return;
        }
        let ts = p.ts_us / 1000;
        if p.msg[2] & 0x80 != 0 {
            e.on_response_count(ts, p.src, p.dst, p.msg);
        } else {
            e.on_query(ts, p.src, p.dst, p.msg);
        }
    };
    while let Ok(Some(f)) = rd.next_frame() {
        ex.frame(&f, &mut deliver);
    }
    ex.finish(&mut deliver);
    let _ = ex.stats();
    let _ = e.take_rows();
}
