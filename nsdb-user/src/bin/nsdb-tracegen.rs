//! nsdb-tracegen: writes a deterministic, paper-scale DNS trace (pcap) for `cargo xtask bench`.
//!
//! What the trace holds (the paper's campus trace was 177 MB): campus resolvers iterating from
//! the root (referrals to TLDs, then to zones, with glue), answers from the zones' servers that
//! carry NS + glue in the authority/additional sections as authoritative servers do, glue-less
//! delegations whose NS names the resolver then looks up (most within the paper's 2 s window,
//! some later), NXDOMAIN answers, and bots sending TXT queries straight to C&C addresses that no
//! referral ever named. About 9,000 zones with 2 NS each give about 18,000 NS records.
//!
//! Only documentation and benchmarking addresses are used: root servers in 192.0.2.0/24 (with a
//! matching root hints file written beside the trace), TLD servers in 198.51.100.0/24 and
//! 2001:db8:1::/48, zone servers in 198.18.0.0/15, resolvers and bots in 192.0.2.0/24, C&C in
//! 203.0.113.0/24. The same arguments always produce the same bytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "nsdb-tracegen",
    about = "Write a deterministic paper-scale DNS trace for benchmarks"
)]
struct Args {
    /// Output pcap. Example: --out target/bench/trace.pcap
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// Stop after this many megabytes (10^6 bytes) of capture. Example: --megabytes 200
    #[arg(long, default_value_t = 200)]
    megabytes: u64,
    /// Number of zones (2 NS records each). Example: --zones 9000
    #[arg(long, default_value_t = 9000)]
    zones: u32,
    /// Share of zones delegated without glue, in percent. Example: --glueless-percent 10
    #[arg(long, default_value_t = 10)]
    glueless_percent: u32,
    /// PRNG seed. Example: --seed 1
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write a named.root-format hints file for the trace's root servers.
    /// Example: --root-hints target/bench/root.hints
    #[arg(long, value_name = "PATH")]
    root_hints: Option<PathBuf>,
}

/// xorshift64*: tiny, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const TLDS: u32 = 20;
const ROOTS: u8 = 13;

fn root_addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1 + i)
}
fn root_name(i: u8) -> String {
    format!("{}.root-servers.test", (b'a' + i) as char)
}
fn tld_name(t: u32) -> String {
    format!("tld{t}")
}
fn tld_ns(t: u32, k: u32) -> (String, Ipv4Addr) {
    (
        format!("ns{k}.nic.tld{t}"),
        Ipv4Addr::new(198, 51, 100, (t * 4 + k + 1) as u8),
    )
}
fn zone_name(z: u32) -> String {
    format!("zone{z}.{}", tld_name(z % TLDS))
}
fn zone_ns_addr(z: u32, k: u32) -> Ipv4Addr {
    let i = z * 2 + k;
    Ipv4Addr::new(198, 18 + (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

/// The two NS names of a zone: in-zone (with glue) or, for glue-less zones, names inside
/// another zone (the "provider"), which the resolver must look up.
fn zone_ns(z: u32, zones: u32, glueless: bool) -> [(String, Ipv4Addr); 2] {
    if glueless {
        let p = (z.wrapping_mul(7919) + 1) % zones;
        [0, 1].map(|k| (format!("dns{k}-{z}.{}", zone_name(p)), zone_ns_addr(z, k)))
    } else {
        [0, 1].map(|k| (format!("ns{k}.{}", zone_name(z)), zone_ns_addr(z, k)))
    }
}

const QNAME_PTR: [u8; 2] = [0xc0, 0x0c];

/// A DNS message writer with name compression as authoritative servers do it (RFC 1035
/// §4.1.4): every name is written as its labels up to the longest suffix already in the
/// message, then a pointer to it.
struct Msg {
    b: Vec<u8>,
    counts: [u16; 4],
    /// Names (and all their suffixes) written so far, with their offsets.
    seen: Vec<(String, u16)>,
}

impl Msg {
    fn new(id: u16, flags: u16, qname: &str, qtype: u16) -> Msg {
        let mut m = Msg {
            b: Vec::with_capacity(256),
            counts: [1, 0, 0, 0],
            seen: Vec::new(),
        };
        m.b.extend_from_slice(&id.to_be_bytes());
        m.b.extend_from_slice(&flags.to_be_bytes());
        m.b.extend_from_slice(&[0; 8]);
        m.name(qname);
        m.b.extend_from_slice(&qtype.to_be_bytes());
        m.b.extend_from_slice(&1u16.to_be_bytes());
        m
    }
    /// Write `n` compressed.
    fn name(&mut self, n: &str) {
        let labels: Vec<&str> = n.split('.').filter(|l| !l.is_empty()).collect();
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".");
            if let Some((_, off)) = self.seen.iter().find(|(s, _)| *s == suffix) {
                let p = 0xc000 | *off;
                self.b.extend_from_slice(&p.to_be_bytes());
                return;
            }
            if self.b.len() < 0x3fff {
                self.seen.push((suffix, self.b.len() as u16));
            }
            self.b.push(labels[i].len() as u8);
            self.b.extend_from_slice(labels[i].as_bytes());
        }
        self.b.push(0);
    }
    fn header(&mut self, sec: usize, owner: Option<&str>, rtype: u16, ttl: u32) {
        match owner {
            Some(n) => self.name(n),
            None => self.b.extend_from_slice(&QNAME_PTR),
        }
        self.b.extend_from_slice(&rtype.to_be_bytes());
        self.b.extend_from_slice(&1u16.to_be_bytes());
        self.b.extend_from_slice(&ttl.to_be_bytes());
        self.counts[sec] += 1;
    }
    fn rr(&mut self, sec: usize, owner: Option<&str>, rtype: u16, ttl: u32, rdata: &[u8]) {
        self.header(sec, owner, rtype, ttl);
        self.b
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.b.extend_from_slice(rdata);
    }
    fn ns(&mut self, sec: usize, zone: &str, target: &str, ttl: u32) {
        self.header(sec, Some(zone), 2, ttl);
        let len_at = self.b.len();
        self.b.extend_from_slice(&[0, 0]);
        self.name(target);
        let rdlen = (self.b.len() - len_at - 2) as u16;
        self.b[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }
    fn a(&mut self, sec: usize, owner: Option<&str>, a: Ipv4Addr, ttl: u32) {
        self.rr(sec, owner, 1, ttl, &a.octets());
    }
    fn finish(mut self) -> Vec<u8> {
        for (i, c) in self.counts.iter().enumerate() {
            self.b[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        self.b
    }
}

fn put_name(b: &mut Vec<u8>, n: &str) {
    for l in n.split('.').filter(|l| !l.is_empty()) {
        b.push(l.len() as u8);
        b.extend_from_slice(l.as_bytes());
    }
    b.push(0);
}

/// Frames waiting to be written in time order (some answers come later than others).
struct Out {
    heap: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    seq: u64,
    w: BufWriter<std::fs::File>,
    written: u64,
    frames: u64,
    ip_id: u16,
}

impl Out {
    fn udp(&mut self, ts_us: u64, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
        let mut f = Vec::with_capacity(42 + payload.len());
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
        let total = (28 + payload.len()) as u16;
        self.ip_id = self.ip_id.wrapping_add(1);
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&self.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src.0.octets());
        f.extend_from_slice(&dst.0.octets());
        f.extend_from_slice(&src.1.to_be_bytes());
        f.extend_from_slice(&dst.1.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        self.seq += 1;
        self.heap.push(Reverse((ts_us, self.seq, f)));
    }

    /// Write every frame earlier than `before_us`.
    fn flush(&mut self, before_us: u64) -> Result<()> {
        while let Some(Reverse((ts, _, _))) = self.heap.peek() {
            if *ts >= before_us {
                break;
            }
            let Some(Reverse((ts, _, f))) = self.heap.pop() else {
                break;
            };
            self.w.write_all(&((ts / 1_000_000) as u32).to_le_bytes())?;
            self.w.write_all(&((ts % 1_000_000) as u32).to_le_bytes())?;
            self.w.write_all(&(f.len() as u32).to_le_bytes())?;
            self.w.write_all(&(f.len() as u32).to_le_bytes())?;
            self.w.write_all(&f)?;
            self.written += 16 + f.len() as u64;
            self.frames += 1;
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let zones = a.zones.max(TLDS);
    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let file = std::fs::File::create(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let mut out = Out {
        heap: BinaryHeap::new(),
        seq: 0,
        w: BufWriter::with_capacity(1 << 20, file),
        written: 24,
        frames: 0,
        ip_id: 0,
    };
    // pcap header: µs, Ethernet.
    out.w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.w.write_all(&2u16.to_le_bytes())?;
    out.w.write_all(&4u16.to_le_bytes())?;
    out.w.write_all(&[0; 8])?;
    out.w.write_all(&65_535u32.to_le_bytes())?;
    out.w.write_all(&1u32.to_le_bytes())?;

    if let Some(p) = &a.root_hints {
        let mut h = String::from("; root hints for the nsdb-tracegen benchmark trace\n");
        for i in 0..ROOTS {
            h += &format!(
                ".\t3600000\tNS\t{}.\n{}.\t3600000\tA\t{}\n",
                root_name(i),
                root_name(i),
                root_addr(i)
            );
        }
        std::fs::write(p, h).with_context(|| format!("{}", p.display()))?;
    }

    let glueless = |z: u32| (z.wrapping_mul(2_654_435_761) >> 8) % 100 < a.glueless_percent;
    let resolvers: Vec<Ipv4Addr> = (0..4).map(|i| Ipv4Addr::new(192, 0, 2, 200 + i)).collect();
    let bots: Vec<Ipv4Addr> = (0..10).map(|i| Ipv4Addr::new(192, 0, 2, 150 + i)).collect();
    let target = a.megabytes * 1_000_000;
    let mut t: u64 = 1_764_201_600_000_000; // 2025-11-27T00:00:00Z, µs
    let mut id: u16 = 1;
    let (mut ns_records, mut events) = (0u64, 0u64);
    let mut learned_zone = vec![false; zones as usize];

    while out.written < target {
        events += 1;
        t += 200 + rng.below(600);
        id = id.wrapping_add(1);
        let res = resolvers[rng.below(4) as usize];
        let port = 1024 + rng.below(60_000) as u16;
        let z = rng.below(zones as u64) as u32;
        let zname = zone_name(z);
        let host = format!("h{}.{zname}", rng.below(50));
        let gl = glueless(z);
        let nss = zone_ns(z, zones, gl);
        let roll = rng.below(100);
        // First sight of a zone, or 12% of the time: a full iteration from the root.
        if !learned_zone[z as usize] || roll < 12 {
            learned_zone[z as usize] = true;
            let tld = z % TLDS;
            let r = rng.below(ROOTS as u64) as u8;
            // root -> TLD referral, 4 NS with glue
            let q = Msg::new(id, 0x0000, &host, 1).finish();
            out.udp(t, (res, port), (root_addr(r), 53), &q);
            let mut m = Msg::new(id, 0x8000, &host, 1);
            for k in 0..4 {
                m.ns(2, &tld_name(tld), &tld_ns(tld, k).0, 172_800);
            }
            for k in 0..4 {
                let (n, ad) = tld_ns(tld, k);
                m.a(3, Some(&n), ad, 172_800);
            }
            ns_records += 4;
            out.udp(t + 20_000, (root_addr(r), 53), (res, port), &m.finish());
            // TLD -> zone referral
            let t2 = t + 21_000;
            let id2 = id.wrapping_add(7);
            let tns = tld_ns(tld, rng.below(4) as u32).1;
            out.udp(
                t2,
                (res, port + 1),
                (tns, 53),
                &Msg::new(id2, 0x0000, &host, 1).finish(),
            );
            let mut m = Msg::new(id2, 0x8000, &host, 1);
            for (n, _) in &nss {
                m.ns(2, &zname, n, 86_400);
            }
            if !gl {
                for (n, ad) in &nss {
                    m.a(3, Some(n), *ad, 86_400);
                }
            }
            ns_records += 2;
            out.udp(t2 + 15_000, (tns, 53), (res, port + 1), &m.finish());
            let mut t3 = t2 + 16_000;
            if gl {
                // The resolver looks up the NS names: mostly within the 2 s window, 5% later.
                let delay = if rng.below(100) < 5 {
                    2_500_000 + rng.below(1_000_000)
                } else {
                    10_000 + rng.below(1_200_000)
                };
                for (k, (n, ad)) in nss.iter().enumerate() {
                    let idl = id.wrapping_add(100 + k as u16);
                    let provider_ns = zone_ns_addr((z.wrapping_mul(7919) + 1) % zones, 0);
                    let tq = t2 + delay + k as u64 * 1_000;
                    out.udp(
                        tq,
                        (res, port + 2 + k as u16),
                        (provider_ns, 53),
                        &Msg::new(idl, 0x0000, n, 1).finish(),
                    );
                    let mut m = Msg::new(idl, 0x8400, n, 1);
                    m.a(1, None, *ad, 3_600);
                    out.udp(
                        tq + 8_000,
                        (provider_ns, 53),
                        (res, port + 2 + k as u16),
                        &m.finish(),
                    );
                }
                t3 = t2 + delay + 20_000;
            }
            // The answer from the zone's server.
            let id3 = id.wrapping_add(13);
            out.udp(
                t3,
                (res, port + 5),
                (nss[0].1, 53),
                &Msg::new(id3, 0x0000, &host, 1).finish(),
            );
            let mut m = Msg::new(id3, 0x8400, &host, 1);
            m.a(
                1,
                None,
                Ipv4Addr::new(203, 0, 113, rng.below(250) as u8 + 1),
                300,
            );
            out.udp(t3 + 5_000, (nss[0].1, 53), (res, port + 5), &m.finish());
        } else if roll < 80 {
            // Cached delegation: the resolver asks the zone's server directly; the answer
            // carries the zone's NS records and glue, as authoritative servers send them.
            let s = nss[rng.below(2) as usize].1;
            let qt = if rng.below(4) == 0 { 28 } else { 1 };
            out.udp(
                t,
                (res, port),
                (s, 53),
                &Msg::new(id, 0x0000, &host, qt).finish(),
            );
            let mut m = Msg::new(id, 0x8400, &host, qt);
            if qt == 1 {
                m.a(
                    1,
                    None,
                    Ipv4Addr::new(203, 0, 113, rng.below(250) as u8 + 1),
                    300,
                );
            } else {
                let mut v6 = [0u8; 16];
                v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                v6[15] = rng.below(250) as u8;
                m.rr(1, None, 28, 300, &v6);
            }
            for (n, _) in &nss {
                m.ns(2, &zname, n, 86_400);
            }
            if !gl {
                for (n, ad) in &nss {
                    m.a(3, Some(n), *ad, 86_400);
                }
            }
            ns_records += 2;
            out.udp(
                t + 3_000 + rng.below(30_000),
                (s, 53),
                (res, port),
                &m.finish(),
            );
        } else if roll < 90 {
            // NXDOMAIN with the zone's SOA.
            let s = nss[0].1;
            let miss = format!("nx{}.{zname}", rng.below(1_000_000));
            out.udp(
                t,
                (res, port),
                (s, 53),
                &Msg::new(id, 0x0000, &miss, 1).finish(),
            );
            let mut m = Msg::new(id, 0x8403, &miss, 1);
            let mut soa = Vec::new();
            put_name(&mut soa, &nss[0].0);
            put_name(&mut soa, &format!("hostmaster.{zname}"));
            for v in [2025112701u32, 7200, 900, 1_209_600, 300] {
                soa.extend_from_slice(&v.to_be_bytes());
            }
            m.rr(2, Some(&zname), 6, 300, &soa);
            out.udp(t + 4_000, (s, 53), (res, port), &m.finish());
        } else {
            // A bot sends a TXT query straight to its C&C server (an address no referral named).
            let bot = bots[rng.below(10) as usize];
            let cc = Ipv4Addr::new(203, 0, 113, 200 + rng.below(20) as u8);
            let label = format!("{:016x}.cmd.c2-{}.invalid", rng.next(), cc.octets()[3]);
            out.udp(
                t,
                (bot, port),
                (cc, 53),
                &Msg::new(id, 0x0100, &label, 16).finish(),
            );
            let mut m = Msg::new(id, 0x8180, &label, 16);
            let txt = format!("{:032x}", rng.next() as u128 * rng.next() as u128);
            let mut rd = vec![txt.len() as u8];
            rd.extend_from_slice(txt.as_bytes());
            m.rr(1, None, 16, 60, &rd);
            out.udp(t + 40_000, (cc, 53), (bot, port), &m.finish());
        }
        out.flush(t.saturating_sub(5_000_000))?;
    }
    out.flush(u64::MAX)?;
    out.w.flush()?;
    let v = serde_json::json!({
        "path": a.out, "bytes": out.written, "frames": out.frames, "events": events,
        "zones": zones, "ns_records_sent": ns_records,
        "distinct_ns_records": zones * 2, "glueless_percent": a.glueless_percent,
    });
    println!("{v}");
    Ok(())
}
