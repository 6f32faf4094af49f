//! Crafted frames for BPF_PROG_TEST_RUN: Ethernet with VLAN tags, IPv4 with options and
//! fragment offsets, IPv6 with extension headers, UDP and TCP, DNS messages. Checksums are
//! left zero: the XDP program does not read them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88A8;

/// A DNS query message (RFC 1035 §4.1) for `qname` (dotted, no trailing dot needed).
pub fn dns_query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x00, 0x00]); // QR=0, opcode QUERY, RD=0
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    m.extend_from_slice(&wire_name(qname));
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes()); // IN
    m
}

/// The same message as a response (QR=1, no records).
pub fn dns_response(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
    let mut m = dns_query(id, qname, qtype);
    m[2] |= 0x80;
    m
}

/// Uncompressed wire format of a dotted name.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// Transport: protocol number and header + payload.
pub struct L4 {
    pub proto: u8,
    pub bytes: Vec<u8>,
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> L4 {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    L4 {
        proto: 17,
        bytes: b,
    }
}

pub const TCP_SYN: u8 = nsdb_common::tcp_flag::SYN;
pub const TCP_ACK: u8 = nsdb_common::tcp_flag::ACK;
pub const TCP_PSH: u8 = 0x08;

pub const TCP_FIN: u8 = nsdb_common::tcp_flag::FIN;
pub const TCP_RST: u8 = nsdb_common::tcp_flag::RST;

pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> L4 {
    tcp_seq(sport, dport, flags, 1, payload)
}

/// A TCP segment with sequence number `seq`.
pub fn tcp_seq(sport: u16, dport: u16, flags: u8, seq: u32, payload: &[u8]) -> L4 {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.push(5 << 4); // data offset: 5 words
    b.push(flags);
    b.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    b.extend_from_slice(payload);
    L4 { proto: 6, bytes: b }
}

/// The network layer.
#[derive(Clone)]
pub enum L3 {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        options: usize,
        frag_offset: u16,
    },
    /// `ext`: extension header types (0 hop-by-hop, 43 routing, 44 fragment, 51 AH, 60
    /// destination options) in order; `frag_offset` for a fragment header.
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        ext: Vec<u8>,
        frag_offset: u16,
    },
}

impl L3 {
    pub fn v4(src: &str, dst: &str) -> Self {
        L3::V4 {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            options: 0,
            frag_offset: 0,
        }
    }
    pub fn v6(src: &str, dst: &str) -> Self {
        L3::V6 {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ext: vec![],
            frag_offset: 0,
        }
    }
    pub fn between(src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => L3::V4 {
                src: s,
                dst: d,
                options: 0,
                frag_offset: 0,
            },
            (IpAddr::V6(s), IpAddr::V6(d)) => L3::V6 {
                src: s,
                dst: d,
                ext: vec![],
                frag_offset: 0,
            },
            _ => panic!("mixed families"),
        }
    }
}

/// An Ethernet frame with `vlans` tags (TPID, VLAN id), the network layer and the transport.
pub fn frame(vlans: &[(u16, u16)], l3: &L3, l4: &L4) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (tpid, vid) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    match l3 {
        L3::V4 {
            src,
            dst,
            options,
            frag_offset,
        } => {
            assert!(options % 4 == 0 && *options <= 40);
            f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
            let ihl = 5 + options / 4;
            f.push(0x40 | ihl as u8);
            f.push(0);
            f.extend_from_slice(&((ihl * 4 + l4.bytes.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&(frag_offset & 0x1fff).to_be_bytes());
            f.push(64);
            f.push(l4.proto);
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
            // Options: NOPs (type 1) then an end-of-options (type 0).
            for i in 0..*options {
                f.push(if i + 1 == *options { 0 } else { 1 });
            }
        }
        L3::V6 {
            src,
            dst,
            ext,
            frag_offset,
        } => {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let mut exts = Vec::new();
            for (i, t) in ext.iter().enumerate() {
                let next = ext.get(i + 1).copied().unwrap_or(l4.proto);
                match t {
                    44 => {
                        exts.push(next);
                        exts.push(0);
                        exts.extend_from_slice(&(frag_offset << 3).to_be_bytes());
                        exts.extend_from_slice(&[0, 0, 0, 1]);
                    }
                    51 => {
                        // AH with 4 bytes of ICV: (1 + 2) * 4 = 12 bytes.
                        exts.push(next);
                        exts.push(1);
                        exts.extend_from_slice(&[0; 10]);
                    }
                    _ => {
                        // Hop-by-hop, routing, destination options: 8 bytes (PadN).
                        exts.push(next);
                        exts.push(0);
                        exts.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
                    }
                }
            }
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&((exts.len() + l4.bytes.len()) as u16).to_be_bytes());
            f.push(ext.first().copied().unwrap_or(l4.proto));
            f.push(64);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
            f.extend_from_slice(&exts);
        }
    }
    f.extend_from_slice(&l4.bytes);
    f
}

/// A resource record for [`dns_message`]: owner, type, TTL, rdata.
pub struct Rr {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

impl Rr {
    pub fn ns(zone: &str, ttl: u32, target: &str) -> Self {
        Rr {
            name: zone.into(),
            rtype: 2,
            ttl,
            rdata: wire_name(target),
        }
    }
    pub fn a(name: &str, ttl: u32, addr: &str) -> Self {
        let a: std::net::Ipv4Addr = addr.parse().unwrap();
        Rr {
            name: name.into(),
            rtype: 1,
            ttl,
            rdata: a.octets().to_vec(),
        }
    }
    pub fn aaaa(name: &str, ttl: u32, addr: &str) -> Self {
        let a: std::net::Ipv6Addr = addr.parse().unwrap();
        Rr {
            name: name.into(),
            rtype: 28,
            ttl,
            rdata: a.octets().to_vec(),
        }
    }
}

/// A response (QR=1, RCODE 0) to `qname`/`qtype` with the given sections. Owner names equal
/// to the question name are written as a compression pointer to it (RFC 1035 §4.1.4), as
/// servers do; others in full.
pub fn dns_message(
    id: u16,
    qname: &str,
    qtype: u16,
    answer: &[Rr],
    authority: &[Rr],
    additional: &[Rr],
) -> Vec<u8> {
    message(id, qname, qtype, [answer, authority, additional], false)
}

/// The answer to an A lookup of `name`: one A record, owned by the question name.
pub fn a_answer(id: u16, name: &str, ttl: u32, addr: &str) -> Vec<u8> {
    dns_message(id, name, 1, &[Rr::a(name, ttl, addr)], &[], &[])
}

/// The message [`dns_message`] and [`dns_message_compressed`] build; `compress` chooses how
/// names are written.
fn message(id: u16, qname: &str, qtype: u16, sections: [&[Rr]; 3], compress: bool) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x80, 0x00]);
    m.extend_from_slice(&1u16.to_be_bytes());
    for rrs in sections {
        m.extend_from_slice(&(rrs.len() as u16).to_be_bytes());
    }
    let mut seen = Vec::new();
    if compress {
        put_name_compressed(&mut m, qname, &mut seen);
    } else {
        m.extend_from_slice(&wire_name(qname));
    }
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    for rr in sections.into_iter().flatten() {
        if compress {
            put_name_compressed(&mut m, &rr.name, &mut seen);
        } else if rr
            .name
            .trim_end_matches('.')
            .eq_ignore_ascii_case(qname.trim_end_matches('.'))
        {
            m.extend_from_slice(&[0xC0, 0x0C]);
        } else {
            m.extend_from_slice(&wire_name(&rr.name));
        }
        m.extend_from_slice(&rr.rtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&rr.ttl.to_be_bytes());
        let len_at = m.len();
        m.extend_from_slice(&[0, 0]);
        if compress && rr.rtype == 2 {
            put_name_compressed(&mut m, &name_of_wire(&rr.rdata), &mut seen);
        } else {
            m.extend_from_slice(&rr.rdata);
        }
        let rdlen = (m.len() - len_at - 2) as u16;
        m[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }
    m
}

/// Appends `name` to `m` compressed as name servers write it (RFC 1035 §4.1.4): the longest
/// suffix already in the message becomes a pointer; every new suffix is remembered (by its
/// lower-cased text) where it starts, if that offset fits a pointer.
fn put_name_compressed(m: &mut Vec<u8>, name: &str, seen: &mut Vec<(String, u16)>) {
    let labels: Vec<&str> = name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .collect();
    for i in 0..labels.len() {
        let suffix = labels[i..].join(".").to_ascii_lowercase();
        if let Some((_, off)) = seen.iter().find(|(s, _)| *s == suffix) {
            m.extend_from_slice(&(0xC000 | off).to_be_bytes());
            return;
        }
        if m.len() < 0x3FFF {
            seen.push((suffix, m.len() as u16));
        }
        m.push(labels[i].len() as u8);
        m.extend_from_slice(labels[i].as_bytes());
    }
    m.push(0);
}

/// [`dns_message`] with every name compressed as servers send it: owner names, and the
/// targets of NS records (RFC 3597 §4 allows compression in the rdata of the RFC 1035 types).
pub fn dns_message_compressed(
    id: u16,
    qname: &str,
    qtype: u16,
    answer: &[Rr],
    authority: &[Rr],
    additional: &[Rr],
) -> Vec<u8> {
    message(id, qname, qtype, [answer, authority, additional], true)
}

/// The text of an uncompressed wire name (as [`wire_name`] writes it).
fn name_of_wire(w: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut i = 0;
    while i < w.len() && w[i] != 0 {
        let l = w[i] as usize;
        labels.push(String::from_utf8_lossy(&w[i + 1..i + 1 + l]).into_owned());
        i += 1 + l;
    }
    labels.join(".")
}

/// A root-style referral for `www.example.test` delegating `test` to 13 name servers
/// (`a.nic.test` … `m.nic.test`), each with an A glue record `<v4_prefix>N` and an AAAA glue
/// record `<v6_prefix>N`, N = 1..=13: 39 records, about 1.2 KB.
pub fn referral_13(id: u16, v4_prefix: &str, v6_prefix: &str) -> Vec<u8> {
    let (ns, glue) = referral_13_records(v4_prefix, v6_prefix);
    dns_message(id, "www.example.test", 1, &[], &ns, &glue)
}

/// The authority and additional sections of [`referral_13`].
fn referral_13_records(v4_prefix: &str, v6_prefix: &str) -> (Vec<Rr>, Vec<Rr>) {
    let letters = "abcdefghijklm";
    let ns: Vec<Rr> = letters
        .chars()
        .map(|l| Rr::ns("test", 172800, &format!("{l}.nic.test")))
        .collect();
    let mut glue = Vec::new();
    for (i, l) in letters.chars().enumerate() {
        glue.push(Rr::a(
            &format!("{l}.nic.test"),
            172800,
            &format!("{v4_prefix}{}", i + 1),
        ));
        glue.push(Rr::aaaa(
            &format!("{l}.nic.test"),
            172800,
            &format!("{v6_prefix}{}", i + 1),
        ));
    }
    (ns, glue)
}

/// [`referral_13`] compressed as name servers send it: `test` in the NS owners points into
/// the question, `b.nic.test` is `b` and a pointer to the first target's `nic.test`, and every
/// glue owner is a pointer to its NS target: 39 records, about 0.8 KB.
pub fn referral_13_compressed(id: u16, v4_prefix: &str, v6_prefix: &str) -> Vec<u8> {
    let (ns, glue) = referral_13_records(v4_prefix, v6_prefix);
    dns_message_compressed(id, "www.example.test", 1, &[], &ns, &glue)
}

/// [`referral_13`] in both encodings, as the benchmarks name them: compressed as name servers
/// send it, and every name written out (the most walking a referral of this size can ask for).
pub fn referral_13_encodings(
    id: u16,
    v4_prefix: &str,
    v6_prefix: &str,
) -> [(&'static str, Vec<u8>); 2] {
    [
        (
            "compressed, as name servers send it",
            referral_13_compressed(id, v4_prefix, v6_prefix),
        ),
        (
            "uncompressed (every name in full)",
            referral_13(id, v4_prefix, v6_prefix),
        ),
    ]
}
