//! Reading DNS messages out of capture files: pcap/pcapng ([`file`]), link layers (Ethernet with
//! 802.1Q/802.1ad tags, Linux cooked SLL and SLL2, BSD loopback, raw IP), IPv4 and IPv6 (with
//! extension headers and fragment reassembly, [`frag`]), UDP, and TCP with stream reassembly
//! ([`tcp`]). VXLAN and Geneve tunnels are opened (one level of nesting at most).
//!
//! Every header read is bounds-checked; anything not understood is counted and skipped.

pub mod file;
pub mod frag;
pub mod tcp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

pub use file::{Frame, Reader};

/// Errors reading a capture file (per-packet problems are counted, not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("empty file")]
    Empty,
    #[error("not a pcap or pcapng file (unknown magic number)")]
    NotCapture,
    #[error("file truncated in the record at byte {0}")]
    Truncated(usize),
    #[error("malformed at byte {0}: {1}")]
    Format(usize, &'static str),
}

/// A DNS message found in the capture.
#[derive(Debug, Clone, Copy)]
pub struct DnsPacket<'a> {
    pub ts_us: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tcp: bool,
    pub msg: &'a [u8],
}

/// Per-capture packet counters.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct CaptureStats {
    pub frames: u64,
    /// Frames whose link type nsdb does not read.
    pub unsupported_link: u64,
    /// Frames that are not IPv4/IPv6, or not UDP/TCP.
    pub not_ip: u64,
    /// Headers cut short or inconsistent.
    pub bad_headers: u64,
    /// UDP/TCP on ports other than the DNS ports.
    pub other_ports: u64,
    pub udp_messages: u64,
    pub frag: frag::FragStats,
    pub tcp: tcp::TcpStats,
}

const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW_OLD: u32 = 12;
const LINKTYPE_RAW_OLD2: u32 = 14;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LOOP: u32 = 108;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Most VLAN tags read in one frame (QinQ uses two).
const MAX_VLAN_TAGS: usize = 4;
/// Most IPv6 extension headers walked (RFC 8200 §4.1 recommends an order with at most ~8).
const MAX_IPV6_EXT: usize = 8;
/// Tunnels opened inside each other at most.
const MAX_TUNNEL_DEPTH: u8 = 2;

const PORT_VXLAN: u16 = 4789;
const PORT_GENEVE: u16 = 6081;

/// Pulls DNS messages out of frames, keeping reassembly state between them.
pub struct Extractor {
    /// The DNS ports, one bit per port number.
    ports: Box<[u64; 1024]>,
    frags: frag::Reassembler,
    tcp: tcp::Reassembler,
    stats: CaptureStats,
    frames_since_expire: u32,
}

enum L3<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
}

impl Extractor {
    /// `ports`: the UDP/TCP ports carrying DNS (normally just 53).
    pub fn new(ports: &[u16]) -> Extractor {
        let mut bits = Box::new([0u64; 1024]);
        for &p in ports {
            bits[p as usize / 64] |= 1 << (p % 64);
        }
        Extractor {
            ports: bits,
            frags: frag::Reassembler::default(),
            tcp: tcp::Reassembler::default(),
            stats: CaptureStats::default(),
            frames_since_expire: 0,
        }
    }

    pub fn stats(&self) -> CaptureStats {
        let mut s = self.stats;
        s.frag = self.frags.stats;
        s.tcp = self.tcp.stats;
        s
    }

    /// At the end of the input: pass on the start of datagrams whose later fragments never
    /// came (snaplen-cut or lost), as DNS messages to be parsed as far as they go.
    pub fn finish(&mut self, out: &mut dyn FnMut(DnsPacket<'_>)) {
        self.expire_frags(u64::MAX, out);
    }

    fn expire_frags(&mut self, now: u64, out: &mut dyn FnMut(DnsPacket<'_>)) {
        let mut frags = std::mem::take(&mut self.frags);
        let mut partial: Vec<(u64, frag::FragKey, Vec<u8>)> = Vec::new();
        frags.expire_with(now, &mut |ts, k, d| partial.push((ts, k, d.to_vec())));
        self.frags = frags;
        for (ts, k, d) in partial {
            self.l4(ts, k.src, k.dst, k.proto, &d, MAX_TUNNEL_DEPTH, out);
        }
    }

    #[inline]
    fn is_dns_port(&self, port: u16) -> bool {
        self.ports[port as usize / 64] & (1 << (port % 64)) != 0
    }

    /// The common case of a whole capture, decoded without the general path: an Ethernet
    /// frame without VLAN tags holding an unfragmented IPv4 packet without options holding a
    /// UDP datagram to or from a DNS port. For such a frame: counts it as [`Self::frame`]
    /// would and returns the DNS message, which the caller must pass on. For any other frame
    /// (or when reassembly state is due to be expired): `None` and nothing counted; the
    /// caller then passes the frame to [`Self::frame_general`]. The result is the same as
    /// that of the general path in every case (see the `fast_path_matches_general` test).
    #[inline]
    pub fn frame_fast<'a>(&mut self, f: &Frame<'a>) -> Option<DnsPacket<'a>> {
        if f.linktype != LINKTYPE_ETHERNET || self.frames_since_expire >= 65_535 {
            return None;
        }
        // Ethernet header (14), IPv4 header without options (20), UDP header (8).
        let h: &[u8; 42] = f.data.first_chunk()?;
        // Ethertype IPv4, then version 4 with a 20-byte header; protocol UDP; neither "more
        // fragments" nor a fragment offset (the DF bit may be set).
        let word = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        if word(12) & 0xffff_ff00 != 0x0800_4500 || h[23] != 17 || word(20) & 0x3fff_0000 != 0 {
            return None;
        }
        let total = u16::from_be_bytes([h[16], h[17]]) as usize;
        let sport = u16::from_be_bytes([h[34], h[35]]);
        let dport = u16::from_be_bytes([h[36], h[37]]);
        let ulen = u16::from_be_bytes([h[38], h[39]]) as usize;
        // A total length cutting into the UDP header, a UDP length under its own header, or
        // other ports: the general path counts (or tunnels) these.
        if total < 28 || ulen < 8 || !(self.is_dns_port(sport) || self.is_dns_port(dport)) {
            return None;
        }
        // The IP packet trimmed to its total length (link-layer padding off) but kept as
        // short as a snaplen left it; the UDP payload likewise within it.
        let ip_end = 14 + total.min(f.data.len() - 14);
        let udp = f.data.get(34..ip_end)?;
        let msg = udp.get(8..ulen.min(udp.len()))?;
        self.stats.frames += 1;
        self.frames_since_expire += 1;
        self.stats.udp_messages += 1;
        let ip = |o: usize| Ipv4Addr::new(h[o], h[o + 1], h[o + 2], h[o + 3]);
        Some(DnsPacket {
            ts_us: f.ts_us,
            src: SocketAddr::V4(SocketAddrV4::new(ip(26), sport)),
            dst: SocketAddr::V4(SocketAddrV4::new(ip(30), dport)),
            tcp: false,
            msg,
        })
    }

    /// Decode one frame and call `out` for each DNS message it yields.
    #[inline]
    pub fn frame(&mut self, f: &Frame<'_>, out: &mut dyn FnMut(DnsPacket<'_>)) {
        match self.frame_fast(f) {
            Some(pkt) => out(pkt),
            None => self.frame_general(f, out),
        }
    }

    /// [`Self::frame`] without the fast path (for a frame [`Self::frame_fast`] declined).
    pub fn frame_general(&mut self, f: &Frame<'_>, out: &mut dyn FnMut(DnsPacket<'_>)) {
        self.stats.frames += 1;
        self.frames_since_expire += 1;
        if self.frames_since_expire >= 65_536 {
            self.frames_since_expire = 0;
            self.expire_frags(f.ts_us, out);
        }
        self.link(f.ts_us, f.linktype, f.data, 0, out);
    }

    fn link(
        &mut self,
        ts: u64,
        linktype: u32,
        d: &[u8],
        depth: u8,
        out: &mut dyn FnMut(DnsPacket<'_>),
    ) {
        let l3 = match linktype {
            LINKTYPE_ETHERNET => self.ethernet(d),
            LINKTYPE_NULL | LINKTYPE_LOOP => {
                // 4-byte address family, host byte order of the capturing machine (NULL) or
                // network order (LOOP). AF_INET = 2; AF_INET6 = 10, 24, 28 or 30 by OS.
                let Some(h) = d.get(..4) else {
                    self.stats.bad_headers += 1;
                    return;
                };
                let fam = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                let fam = if fam > 0xffff { fam.swap_bytes() } else { fam };
                match fam {
                    2 => Some(L3::V4(&d[4..])),
                    10 | 24 | 28 | 30 => Some(L3::V6(&d[4..])),
                    _ => None,
                }
            }
            LINKTYPE_RAW | LINKTYPE_RAW_OLD | LINKTYPE_RAW_OLD2 => {
                match d.first().map(|b| b >> 4) {
                    Some(4) => Some(L3::V4(d)),
                    Some(6) => Some(L3::V6(d)),
                    _ => None,
                }
            }
            LINKTYPE_IPV4 => Some(L3::V4(d)),
            LINKTYPE_IPV6 => Some(L3::V6(d)),
            // SLL: 16-byte header, protocol (ethertype) at 14.
            LINKTYPE_LINUX_SLL => match d.get(14..16) {
                Some(p) => Self::by_ethertype(u16::from_be_bytes([p[0], p[1]]), &d[16..]),
                None => {
                    self.stats.bad_headers += 1;
                    return;
                }
            },
            // SLL2: 20-byte header, protocol at 0.
            LINKTYPE_LINUX_SLL2 => match (d.get(0..2), d.get(20..)) {
                (Some(p), Some(rest)) => Self::by_ethertype(u16::from_be_bytes([p[0], p[1]]), rest),
                _ => {
                    self.stats.bad_headers += 1;
                    return;
                }
            },
            _ => {
                self.stats.unsupported_link += 1;
                return;
            }
        };
        match l3 {
            Some(L3::V4(p)) => self.ipv4(ts, p, depth, out),
            Some(L3::V6(p)) => self.ipv6(ts, p, depth, out),
            None => self.stats.not_ip += 1,
        }
    }

    fn by_ethertype(et: u16, rest: &[u8]) -> Option<L3<'_>> {
        match et {
            0x0800 => Some(L3::V4(rest)),
            0x86dd => Some(L3::V6(rest)),
            _ => None,
        }
    }

    fn ethernet<'a>(&mut self, d: &'a [u8]) -> Option<L3<'a>> {
        let Some(et) = d.get(12..14) else {
            self.stats.bad_headers += 1;
            return None;
        };
        let mut et = u16::from_be_bytes([et[0], et[1]]);
        let mut off = 14;
        // 802.1Q / 802.1ad / old QinQ tags: 4 bytes each, the inner ethertype last.
        for _ in 0..MAX_VLAN_TAGS {
            if !matches!(et, 0x8100 | 0x88a8 | 0x9100) {
                break;
            }
            let t = d.get(off + 2..off + 4)?;
            et = u16::from_be_bytes([t[0], t[1]]);
            off += 4;
        }
        Self::by_ethertype(et, d.get(off..)?)
    }

    fn ipv4(&mut self, ts: u64, p: &[u8], depth: u8, out: &mut dyn FnMut(DnsPacket<'_>)) {
        // RFC 791 §3.1.
        if p.len() < 20 || p[0] >> 4 != 4 {
            self.stats.bad_headers += 1;
            return;
        }
        let ihl = (p[0] & 0xf) as usize * 4;
        let total = u16::from_be_bytes([p[2], p[3]]) as usize;
        if ihl < 20 || total < ihl || p.len() < ihl {
            self.stats.bad_headers += 1;
            return;
        }
        // Trim link-layer padding; keep what a short snaplen left.
        let p = &p[..total.min(p.len())];
        let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
        let proto = p[9];
        let ff = u16::from_be_bytes([p[6], p[7]]);
        let more = ff & 0x2000 != 0;
        let frag_off = (ff & 0x1fff) as usize * 8;
        let payload = &p[ihl..];
        if more || frag_off != 0 {
            let key = frag::FragKey {
                src,
                dst,
                proto,
                id: u16::from_be_bytes([p[4], p[5]]) as u32,
            };
            let mut frags = std::mem::take(&mut self.frags);
            if let Some(whole) = frags.add(ts, key, frag_off, more, payload) {
                self.l4(ts, src, dst, proto, whole, depth, out);
            }
            self.frags = frags;
            return;
        }
        self.l4(ts, src, dst, proto, payload, depth, out);
    }

    fn ipv6(&mut self, ts: u64, p: &[u8], depth: u8, out: &mut dyn FnMut(DnsPacket<'_>)) {
        // RFC 8200 §3.
        if p.len() < 40 || p[0] >> 4 != 6 {
            self.stats.bad_headers += 1;
            return;
        }
        let plen = u16::from_be_bytes([p[4], p[5]]) as usize;
        let body = &p[40..(40 + plen).min(p.len())];
        let src = IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(&p[8..24]).unwrap_or([0; 16]),
        ));
        let dst = IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(&p[24..40]).unwrap_or([0; 16]),
        ));
        let mut next = p[6];
        let mut off = 0usize;
        for _ in 0..MAX_IPV6_EXT {
            match next {
                // Hop-by-hop, routing, destination options: length in 8-octet units, not
                // counting the first 8 (RFC 8200 §4.3-4.6).
                0 | 43 | 60 => {
                    let Some(h) = body.get(off..off + 2) else {
                        self.stats.bad_headers += 1;
                        return;
                    };
                    next = h[0];
                    off += (h[1] as usize + 1) * 8;
                }
                // Fragment header (RFC 8200 §4.5): 8 bytes.
                44 => {
                    let Some(h) = body.get(off..off + 8) else {
                        self.stats.bad_headers += 1;
                        return;
                    };
                    let nh = h[0];
                    let fo = u16::from_be_bytes([h[2], h[3]]);
                    let frag_off = (fo >> 3) as usize * 8;
                    let more = fo & 1 != 0;
                    let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                    let Some(data) = body.get(off + 8..) else {
                        self.stats.bad_headers += 1;
                        return;
                    };
                    if !more && frag_off == 0 {
                        // Atomic fragment (RFC 6946): process directly.
                        next = nh;
                        off += 8;
                        continue;
                    }
                    let key = frag::FragKey {
                        src,
                        dst,
                        proto: nh,
                        id,
                    };
                    let mut frags = std::mem::take(&mut self.frags);
                    if let Some(whole) = frags.add(ts, key, frag_off, more, data) {
                        // Extension headers after the fragment header are inside `whole`; DNS
                        // traffic does not use them, so treat `nh` as the transport.
                        self.l4(ts, src, dst, nh, whole, depth, out);
                    }
                    self.frags = frags;
                    return;
                }
                _ => break,
            }
        }
        let Some(payload) = body.get(off..) else {
            self.stats.bad_headers += 1;
            return;
        };
        self.l4(ts, src, dst, next, payload, depth, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn l4(
        &mut self,
        ts: u64,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        p: &[u8],
        depth: u8,
        out: &mut dyn FnMut(DnsPacket<'_>),
    ) {
        match proto {
            17 => {
                let Some(h) = p.get(..8) else {
                    self.stats.bad_headers += 1;
                    return;
                };
                let sport = u16::from_be_bytes([h[0], h[1]]);
                let dport = u16::from_be_bytes([h[2], h[3]]);
                let ulen = u16::from_be_bytes([h[4], h[5]]) as usize;
                if ulen < 8 {
                    self.stats.bad_headers += 1;
                    return;
                }
                // Trim to the UDP length; keep what a short snaplen left.
                let payload = &p[8..ulen.min(p.len())];
                if self.is_dns_port(sport) || self.is_dns_port(dport) {
                    self.stats.udp_messages += 1;
                    out(DnsPacket {
                        ts_us: ts,
                        src: SocketAddr::new(src, sport),
                        dst: SocketAddr::new(dst, dport),
                        tcp: false,
                        msg: payload,
                    });
                } else if depth < MAX_TUNNEL_DEPTH && dport == PORT_VXLAN && payload.len() >= 8 {
                    // VXLAN (RFC 7348 §5): 8-byte header, then an Ethernet frame.
                    self.link(ts, LINKTYPE_ETHERNET, &payload[8..], depth + 1, out);
                } else if depth < MAX_TUNNEL_DEPTH && dport == PORT_GENEVE && payload.len() >= 8 {
                    // Geneve (RFC 8926 §3.4): options length in 4-byte units, protocol type.
                    let opt = (payload[0] & 0x3f) as usize * 4;
                    let pt = u16::from_be_bytes([payload[2], payload[3]]);
                    if let Some(inner) = payload.get(8 + opt..) {
                        match pt {
                            0x6558 => self.link(ts, LINKTYPE_ETHERNET, inner, depth + 1, out),
                            0x0800 => self.ipv4(ts, inner, depth + 1, out),
                            0x86dd => self.ipv6(ts, inner, depth + 1, out),
                            _ => self.stats.other_ports += 1,
                        }
                    }
                } else {
                    self.stats.other_ports += 1;
                }
            }
            6 => {
                // RFC 9293 §3.1.
                let Some(h) = p.get(..20) else {
                    self.stats.bad_headers += 1;
                    return;
                };
                let sport = u16::from_be_bytes([h[0], h[1]]);
                let dport = u16::from_be_bytes([h[2], h[3]]);
                if !(self.is_dns_port(sport) || self.is_dns_port(dport)) {
                    self.stats.other_ports += 1;
                    return;
                }
                let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                let doff = (h[12] >> 4) as usize * 4;
                let flags = h[13];
                if doff < 20 || doff > p.len() {
                    self.stats.bad_headers += 1;
                    return;
                }
                let syn = flags & 0x02 != 0;
                let fin_rst = flags & 0x05 != 0;
                let s = SocketAddr::new(src, sport);
                let d = SocketAddr::new(dst, dport);
                // With SYN the payload (TCP Fast Open, RFC 7413) starts at seq+1.
                let seq = if syn && p.len() > doff {
                    self.tcp
                        .segment(ts, s, d, seq, true, false, &[], &mut |_| {});
                    seq.wrapping_add(1)
                } else {
                    seq
                };
                let syn_only = syn && p.len() == doff;
                self.tcp
                    .segment(ts, s, d, seq, syn_only, fin_rst, &p[doff..], &mut |m| {
                        out(DnsPacket {
                            ts_us: ts,
                            src: s,
                            dst: d,
                            tcp: true,
                            msg: m,
                        })
                    });
            }
            _ => self.stats.not_ip += 1,
        }
    }
}

/// Map a capture file read-only. Empty files and directories give clear errors.
pub fn map_file(path: &std::path::Path) -> std::io::Result<Mapped> {
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    if meta.len() == 0 {
        return Ok(Mapped::Empty);
    }
    // SAFETY: the map is read-only; if another process truncates the file while we read it we
    // may get SIGBUS, the usual caveat of mmap-based readers (tcpdump, tshark do the same with
    // read(2) and would see a short read instead). Captures being read are not being written.
    let m = unsafe { memmap2::Mmap::map(&f)? };
    #[cfg(unix)]
    let _ = m.advise(memmap2::Advice::Sequential);
    Ok(Mapped::Map(m))
}

/// A mapped capture file.
pub enum Mapped {
    Empty,
    Map(memmap2::Mmap),
}

impl Mapped {
    /// Tell the kernel the pages before `offset` will not be read again, so that the resident
    /// memory of a long read stays flat instead of growing with the file (file-backed pages of
    /// a mapping count in RSS until they are dropped). Nothing borrowed from those pages may
    /// still be in use; the readers copy what they keep (reassembly buffers).
    pub fn release_before(&self, offset: usize) {
        const PAGE: usize = 4096;
        let len = offset / PAGE * PAGE;
        if let Mapped::Map(m) = self
            && len > 0
            && len <= m.len()
        {
            // SAFETY: a read-only, file-backed mapping: MADV_DONTNEED only drops the page
            // cache references; a later access faults the same file data back in.
            let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, len) };
        }
    }
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Mapped::Empty => &[],
            Mapped::Map(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Out = Vec<(u64, SocketAddr, SocketAddr, bool, Vec<u8>)>;

    /// Every message and the final counters, through `frame` (fast path first) or through
    /// the general path alone.
    fn run(ports: &[u16], frames: &[(u32, Vec<u8>)], fast: bool) -> (Out, String) {
        let mut ex = Extractor::new(ports);
        let mut out = Out::new();
        let mut keep = |p: DnsPacket<'_>| out.push((p.ts_us, p.src, p.dst, p.tcp, p.msg.to_vec()));
        for (i, (linktype, data)) in frames.iter().enumerate() {
            let f = Frame {
                ts_us: 1_000 + i as u64,
                linktype: *linktype,
                data,
            };
            if fast {
                ex.frame(&f, &mut keep);
            } else {
                ex.frame_general(&f, &mut keep);
            }
        }
        ex.finish(&mut keep);
        (out, format!("{:?}", ex.stats()))
    }

    /// Ethernet, IPv4 (DF set), UDP 40000 -> 53, a 12-byte payload, 4 bytes of padding.
    fn base_frame() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
        f.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 20, 0, 0]);
        f.extend_from_slice(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00");
        f.extend_from_slice(&[0xee; 4]);
        f
    }

    #[test]
    fn fast_path_matches_general() {
        let base = base_frame();
        let mut frames = vec![
            (LINKTYPE_ETHERNET, base.clone()),
            (LINKTYPE_RAW, base.clone()),
        ];
        // Every header byte set to values that matter somewhere (ethertypes, versions and
        // header lengths, fragment bits, protocols, ports, lengths).
        let values = [
            0x00, 0x01, 0x06, 0x08, 0x11, 0x12, 0x13, 0x14, 0x1b, 0x1c, 0x1f, 0x20, 0x27, 0x28,
            0x35, 0x40, 0x44, 0x45, 0x46, 0x55, 0x60, 0x65, 0x81, 0x86, 0xdd, 0xff,
        ];
        for i in 0..42 {
            for v in values {
                let mut f = base.clone();
                f[i] = v;
                frames.push((LINKTYPE_ETHERNET, f));
            }
        }
        // Cut short anywhere (snaplen), or followed by more padding.
        for len in 0..base.len() {
            frames.push((LINKTYPE_ETHERNET, base[..len].to_vec()));
        }
        let mut long = base.clone();
        long.extend_from_slice(&[0; 100]);
        frames.push((LINKTYPE_ETHERNET, long));
        // Total and UDP lengths around their limits, with and without a cut.
        for total in [0u16, 19, 20, 27, 28, 29, 39, 40, 41, 200, 65535] {
            for ulen in [0u16, 7, 8, 9, 19, 20, 21, 300, 65535] {
                for cut in [0, 5] {
                    let mut f = base.clone();
                    f[16..18].copy_from_slice(&total.to_be_bytes());
                    f[38..40].copy_from_slice(&ulen.to_be_bytes());
                    f.truncate(f.len() - cut);
                    frames.push((LINKTYPE_ETHERNET, f));
                }
            }
        }
        // A response from port 53, and a datagram between two other ports.
        let mut resp = base.clone();
        resp[34..38].copy_from_slice(&[0, 53, 0x9c, 0x40]);
        frames.push((LINKTYPE_ETHERNET, resp));
        let mut other = base.clone();
        other[34..38].copy_from_slice(&[0x13, 0x88, 0x13, 0x89]);
        frames.push((LINKTYPE_ETHERNET, other));
        for ports in [&[53][..], &[53, 5353], &[5000], &[]] {
            assert_eq!(
                run(ports, &frames, true),
                run(ports, &frames, false),
                "ports {ports:?}"
            );
        }
        // Past the periodic expiry of fragment state (every 65,536 frames), with a fragment
        // that never completes waiting.
        let mut frag = base.clone();
        frag[20] = 0x20;
        let mut many = vec![(LINKTYPE_ETHERNET, frag)];
        many.extend(std::iter::repeat_n((LINKTYPE_ETHERNET, base), 140_000));
        let (fast, general) = (run(&[53], &many, true), run(&[53], &many, false));
        assert_eq!(fast.0.len(), 140_001);
        assert_eq!(fast, general);
    }
}
