//! Layer by layer: Ethernet, up to two VLAN tags, IPv4/IPv6, UDP/TCP, the DNS header.
//!
//! Every read goes through [`ptr_at`], which checks the packet bounds. `Err(())` means "too short
//! for what the headers announce": the caller counts it as malformed and passes the packet.

use aya_ebpf::bindings::xdp_action;
use network_types::{eth::EthHdr, tcp::TcpHdr, udp::UdpHdr};
use nsdb_common::{DNS_PORT, counter, family, tcp_flag, transport};

use crate::{count, ctx::Packet, query, response};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// 802.1Q and 802.1ad (QinQ): at most an outer and an inner tag.
const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked before giving up (counted, passed). Real traffic carries
/// zero to two; eight covers every legitimate chain (RFC 8200 §4.1 recommended order).
const MAX_IPV6_EXT: usize = 8;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const IPV6_DSTOPTS: u8 = 60;

/// Length of the fixed DNS header (RFC 1035 §4.1.1).
pub const DNS_HDR_LEN: usize = 12;

/// A bounds-checked pointer to a `T` at `offset` bytes into the packet.
#[inline(always)]
pub fn ptr_at<T, C: Packet>(ctx: &C, offset: usize) -> Result<*const T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(());
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// IPv4 header (RFC 791 §3.1) with word-sized fields, so that addresses load in one
/// instruction instead of byte by byte. Fields stay in network byte order.
#[repr(C)]
struct Ip4 {
    vihl: u8,
    tos: u8,
    tot_len: u16,
    id: u16,
    frags: u16,
    ttl: u8,
    proto: u8,
    check: u16,
    src: u32,
    dst: u32,
}

/// IPv6 header (RFC 8200 §3), likewise.
#[repr(C)]
struct Ip6 {
    vcf: u32,
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    src: [u32; 4],
    dst: [u32; 4],
}

/// The network-layer facts the query check needs. Addresses are in network byte order, as
/// raw words (IPv4 in word 0): the same bytes as the map keys.
pub struct Flow {
    pub family: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Offsets of the IP header and of the transport header.
    pub l3: usize,
    pub l4: usize,
    pub proto: u8,
}

/// What the fast look at the headers found.
enum Fast {
    /// Neither port is 53: nothing to check.
    NotDns,
    /// An untagged frame of another network protocol (ARP, LLDP, ...): nothing to check.
    NotIp,
    /// A plain IPv4 or IPv6 packet with port 53 on a whole UDP or TCP header: the flow, ready
    /// for the transport check without walking the headers again.
    Port53(Flow),
    /// Anything else (VLAN tags, IPv4 options, extension headers, fragments, short or
    /// non-IP frames): the full walk decides.
    Walk,
}

/// The fast path for the bulk of a gateway's traffic: an untagged IPv4 packet without options
/// (first fragment or unfragmented) or an IPv6 packet without extension headers, carrying a
/// whole UDP or TCP header. About twenty instructions settle a packet with neither port 53,
/// one of another transport protocol (ICMP, ESP, GRE, ...) or an untagged frame that is not
/// IP (ARP, LLDP); one with port 53 goes straight to the transport check. What it does not
/// recognise (VLAN tags, IPv4 options, extension headers, fragments, short frames) goes to
/// the full walk, which decides the same way for the packets settled here. At the TC hook,
/// nothing settled here is pulled into the linear part of the skb.
#[inline(always)]
fn fast_headers<C: Packet>(ctx: &C) -> Fast {
    const L4_V4: usize = EthHdr::LEN + 20;
    const L4_V6: usize = EthHdr::LEN + 40;
    let start = ctx.data();
    let end = ctx.data_end();
    if start + EthHdr::LEN > end {
        return Fast::Walk;
    }
    let p = start as *const u8;
    // Fields are read whole (one load each, as the full walk's structs do), and compared in
    // network byte order.
    // SAFETY (all reads): each header is checked against `end` before it is read.
    let ether_type = unsafe { (*(p as *const EthHdr)).ether_type };
    let (fam, proto, l4) = if ether_type == ETH_P_IPV4.to_be() {
        // The smallest packet this can settle: IPv4 without options and a UDP header.
        if start + L4_V4 + UdpHdr::LEN > end {
            return Fast::Walk;
        }
        let ip = unsafe { &*(p.add(EthHdr::LEN) as *const Ip4) };
        // Version 4, IHL 5; fragment offset 0 (the flags may be set).
        if ip.vihl != 0x45 || ip.frags & 0x1fffu16.to_be() != 0 {
            return Fast::Walk;
        }
        (family::V4, ip.proto, L4_V4)
    } else if ether_type == ETH_P_IPV6.to_be() {
        if start + L4_V6 + UdpHdr::LEN > end {
            return Fast::Walk;
        }
        let ip = unsafe { &*(p.add(EthHdr::LEN) as *const Ip6) };
        if ip.vcf & 0xf0 != 0x60 {
            return Fast::Walk;
        }
        (family::V6, ip.next, L4_V6)
    } else if ether_type == ETH_P_8021Q.to_be() || ether_type == ETH_P_8021AD.to_be() {
        return Fast::Walk;
    } else {
        return Fast::NotIp;
    };
    // The whole transport header must be there, as `udp` and `tcp` require. Any other
    // protocol (ICMP, ESP, GRE, ...) carries no DNS to check, unless it is an IPv6 extension
    // header, which the full walk follows.
    let need = match proto {
        IPPROTO_UDP => UdpHdr::LEN,
        IPPROTO_TCP => TcpHdr::LEN,
        IPV6_HOPOPTS | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AH | IPV6_DSTOPTS
            if fam == family::V6 =>
        {
            return Fast::Walk;
        }
        _ => return Fast::NotDns,
    };
    if start + l4 + need > end {
        return Fast::Walk;
    }
    // Source and destination ports lead both the UDP and the TCP header.
    let ports = unsafe { &*(p.add(l4) as *const [u16; 2]) };
    if ports[0] != DNS_PORT.to_be() && ports[1] != DNS_PORT.to_be() {
        return Fast::NotDns;
    }
    // SAFETY: the IP header lies before `l4`, inside the checked bytes.
    let flow = unsafe {
        if fam == family::V4 {
            let ip = &*(p.add(EthHdr::LEN) as *const Ip4);
            Flow {
                family: fam,
                src: [ip.src, 0, 0, 0],
                dst: [ip.dst, 0, 0, 0],
                l3: EthHdr::LEN,
                l4,
                proto,
            }
        } else {
            let ip = &*(p.add(EthHdr::LEN) as *const Ip6);
            Flow {
                family: fam,
                src: ip.src,
                dst: ip.dst,
                l3: EthHdr::LEN,
                l4,
                proto,
            }
        }
    };
    Fast::Port53(flow)
}

/// Classifies one frame and returns the XDP action (the TC entry point maps it).
#[inline(always)]
pub fn classify<C: Packet>(ctx: &C) -> Result<u32, ()> {
    let flow = match fast_headers(ctx) {
        Fast::NotDns => {
            count(counter::NOT_DNS);
            return Ok(xdp_action::XDP_PASS);
        }
        Fast::NotIp => {
            count(counter::NOT_IP);
            return Ok(xdp_action::XDP_PASS);
        }
        Fast::Port53(flow) => {
            // TC only: the DNS header may lie outside the linear part of the skb (ctx.rs).
            // The flow holds values, not packet pointers, so it outlives the pull.
            ctx.linearize_headers();
            flow
        }
        Fast::Walk => {
            // TC only: unusual headers may lie partly outside the linear part (ctx.rs).
            ctx.linearize_headers();
            match walk_headers(ctx)? {
                Some(flow) => flow,
                None => return Ok(xdp_action::XDP_PASS),
            }
        }
    };
    let next = match flow.proto {
        IPPROTO_UDP => udp(ctx, &flow)?,
        IPPROTO_TCP => tcp(ctx, &flow)?,
        _ => {
            count(counter::NOT_DNS);
            return Ok(xdp_action::XDP_PASS);
        }
    };
    // One call site for the response path, whichever transport: the walk's bpf_loop
    // callbacks are verified once per call site.
    Ok(match next {
        Next::Action(a) => a,
        Next::Response(sport, dport, seg) => response::handle(ctx, &flow, sport, dport, &seg),
    })
}

/// What the transport check decided: an action, or a response to pair.
enum Next {
    Action(u32),
    Response(u16, u16, response::Segment),
}

/// The full walk: Ethernet, VLAN tags, IPv4 options, IPv6 extension headers. `None`: nothing
/// to check (non-IP, counted; a non-first fragment or too long a chain, counted).
#[inline(always)]
fn walk_headers<C: Packet>(ctx: &C) -> Result<Option<Flow>, ()> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked that the header lies inside the packet.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut off = EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        // A tag: 2 bytes TCI, then the encapsulated ethertype.
        let tag: *const [u8; 4] = ptr_at(ctx, off)?;
        ether_type = be16(unsafe { [(*tag)[2], (*tag)[3]] });
        off += 4;
    }
    match ether_type {
        ETH_P_IPV4 => ipv4(ctx, off),
        ETH_P_IPV6 => ipv6(ctx, off),
        _ => {
            count(counter::NOT_IP);
            Ok(None)
        }
    }
}

/// IPv4 header, options skipped. `None`: a non-first fragment (counted), nothing to check.
#[inline(always)]
fn ipv4<C: Packet>(ctx: &C, off: usize) -> Result<Option<Flow>, ()> {
    let ip: *const Ip4 = ptr_at(ctx, off)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    if ip.vihl >> 4 != 4 || ihl < core::mem::size_of::<Ip4>() {
        return Err(());
    }
    // Fragment offset (13 bits, RFC 791 §3.1): a non-first fragment has no transport header.
    if u16::from_be(ip.frags) & 0x1fff != 0 {
        count(counter::FRAGMENTS);
        return Ok(None);
    }
    Ok(Some(Flow {
        family: family::V4,
        src: [ip.src, 0, 0, 0],
        dst: [ip.dst, 0, 0, 0],
        l3: off,
        l4: off + ihl,
        proto: ip.proto,
    }))
}

/// IPv6 header and the extension headers a DNS packet can carry (RFC 8200 §4).
#[inline(always)]
fn ipv6<C: Packet>(ctx: &C, off: usize) -> Result<Option<Flow>, ()> {
    let ip: *const Ip6 = ptr_at(ctx, off)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    if (u32::from_be(ip.vcf) >> 28) != 6 {
        return Err(());
    }
    let mut next = ip.next;
    let mut l4 = off + core::mem::size_of::<Ip6>();
    let src = ip.src;
    let dst = ip.dst;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let h: *const [u8; 2] = ptr_at(ctx, l4)?;
                let (nh, len) = unsafe { ((*h)[0], (*h)[1]) };
                next = nh;
                l4 += (len as usize + 1) * 8;
            }
            IPV6_FRAGMENT => {
                let h: *const [u8; 4] = ptr_at(ctx, l4)?;
                let (nh, frag) = unsafe { ((*h)[0], be16([(*h)[2], (*h)[3]])) };
                if frag >> 3 != 0 {
                    count(counter::FRAGMENTS);
                    return Ok(None);
                }
                next = nh;
                l4 += 8;
            }
            IPV6_AH => {
                // RFC 4302 §2.2: payload length in 4-octet units, minus 2.
                let h: *const [u8; 2] = ptr_at(ctx, l4)?;
                let (nh, len) = unsafe { ((*h)[0], (*h)[1]) };
                next = nh;
                l4 += (len as usize + 2) * 4;
            }
            _ => {
                return Ok(Some(Flow {
                    family: family::V6,
                    src,
                    dst,
                    l3: off,
                    l4,
                    proto: next,
                }));
            }
        }
    }
    match next {
        IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_FRAGMENT | IPV6_AH => {
            count(counter::IPV6_EXT_LIMIT);
            Ok(None)
        }
        _ => Ok(Some(Flow {
            family: family::V6,
            src,
            dst,
            l3: off,
            l4,
            proto: next,
        })),
    }
}

#[inline(always)]
fn udp<C: Packet>(ctx: &C, flow: &Flow) -> Result<Next, ()> {
    let udp: *const UdpHdr = ptr_at(ctx, flow.l4)?;
    // SAFETY: bounds checked by ptr_at.
    let (sport, dport) = unsafe { (be16((*udp).src), be16((*udp).dst)) };
    if sport != DNS_PORT && dport != DNS_PORT {
        count(counter::NOT_DNS);
        return Ok(Next::Action(xdp_action::XDP_PASS));
    }
    let dns = flow.l4 + UdpHdr::LEN;
    let hdr: *const [u8; DNS_HDR_LEN] = ptr_at(ctx, dns)?;
    // SAFETY: bounds checked by ptr_at.
    let (id, flags) = unsafe { (be16([(*hdr)[0], (*hdr)[1]]), (*hdr)[2]) };
    if flags & 0x80 != 0 {
        // QR=1: a response (RFC 1035 §4.1.1).
        count(counter::RESPONSES);
        if sport == DNS_PORT {
            let seg = response::Segment {
                transport: transport::UDP,
                id_raw: id.to_be(),
                off: dns,
                end: ctx.len(),
                seq: 0,
                flags: 0,
            };
            return Ok(Next::Response(sport, dport, seg));
        }
        return Ok(Next::Action(xdp_action::XDP_PASS));
    }
    if dport != DNS_PORT {
        // A query sent *from* port 53 to another port is not an outbound query.
        count(counter::NOT_DNS);
        return Ok(Next::Action(xdp_action::XDP_PASS));
    }
    Ok(Next::Action(query::check(
        ctx,
        flow,
        transport::UDP,
        sport,
        dport,
        id,
        dns + DNS_HDR_LEN,
    )))
}

#[inline(always)]
fn tcp<C: Packet>(ctx: &C, flow: &Flow) -> Result<Next, ()> {
    let tcp: *const TcpHdr = ptr_at(ctx, flow.l4)?;
    // SAFETY: bounds checked by ptr_at.
    let (sport, dport) = unsafe { (be16((*tcp).source), be16((*tcp).dest)) };
    if sport != DNS_PORT && dport != DNS_PORT {
        count(counter::NOT_DNS);
        return Ok(Next::Action(xdp_action::XDP_PASS));
    }
    // Flags are byte 13 of the TCP header (RFC 9293 §3.1), inside the 20 bytes ptr_at checked.
    let h = unsafe { &*tcp.cast::<[u8; TcpHdr::LEN]>() };
    let flags = h[13];
    if dport == DNS_PORT && flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN {
        // A connection to a DNS server: checked like a query, without DNS parsing.
        return Ok(Next::Action(query::check(
            ctx,
            flow,
            transport::TCP,
            sport,
            dport,
            0,
            0,
        )));
    }
    if sport == DNS_PORT {
        // From a DNS server: a segment of a connection the program may have let through.
        // The payload ends where the IP datagram does, not at the frame's end (Ethernet pads
        // short frames).
        let payload = flow.l4 + ((h[12] >> 4) as usize) * 4;
        let end = flow.l3 + ip_datagram_len(ctx, flow)?;
        let seg = response::Segment {
            transport: transport::TCP,
            id_raw: 0,
            off: payload,
            end: if end < ctx.len() { end } else { ctx.len() },
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            flags,
        };
        return Ok(Next::Response(sport, dport, seg));
    }
    count(counter::TCP_OTHER);
    Ok(Next::Action(xdp_action::XDP_PASS))
}

/// The IP datagram's length from its header: IPv4 total length, or IPv6 40 + payload length.
#[inline(always)]
fn ip_datagram_len<C: Packet>(ctx: &C, flow: &Flow) -> Result<usize, ()> {
    let len: *const [u8; 2] = ptr_at(ctx, flow.l3 + if flow.family == family::V4 { 2 } else { 4 })?;
    // SAFETY: bounds checked by ptr_at.
    let len = be16(unsafe { *len }) as usize;
    Ok(if flow.family == family::V4 {
        len
    } else {
        40 + len
    })
}
