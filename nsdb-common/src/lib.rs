//! Types and constants shared by the nsdb XDP program and its userspace daemon.
//!
//! Everything here is `#[repr(C)]`, made of plain integers and fixed arrays, with explicit
//! padding, so that both sides agree on the layout byte for byte. Sizes are asserted at compile
//! time.
#![no_std]

use core::mem::size_of;

/// The DNS port (RFC 1035 §4.2).
pub const DNS_PORT: u16 = 53;

/// Map names, as the loader finds them in the object.
pub mod map {
    pub const ALLOW_V4: &str = "ALLOW_V4";
    pub const ALLOW_V6: &str = "ALLOW_V6";
    pub const EXEMPT_V4: &str = "EXEMPT_V4";
    pub const EXEMPT_V6: &str = "EXEMPT_V6";
    pub const INTERNAL_V4: &str = "INTERNAL_V4";
    pub const INTERNAL_V6: &str = "INTERNAL_V6";
    pub const CONFIG: &str = "CONFIG";
    pub const COUNTERS: &str = "COUNTERS";
    pub const EVENTS: &str = "EVENTS";
    pub const RATE: &str = "RATE";
}

/// Program names in the object.
pub mod prog {
    /// The filter.
    pub const NSDB: &str = "nsdb";
    /// An XDP program that only returns XDP_PASS: the benchmark baseline.
    pub const NOOP: &str = "nsdb_noop";
}

/// Default map capacities. The allow maps are LRU maps: when full, the kernel evicts the least
/// recently used entry rather than failing an insert.
pub const DEFAULT_ALLOW_ENTRIES: u32 = 1 << 20;
pub const DEFAULT_EXEMPT_ENTRIES: u32 = 4096;
pub const DEFAULT_INTERNAL_ENTRIES: u32 = 1024;
pub const DEFAULT_RATE_ENTRIES: u32 = 65536;
/// Ring buffer size for unknown-query events (bytes, a power of two times the page size).
pub const DEFAULT_EVENTS_BYTES: u32 = 1 << 22;

/// Kinds of allowed name-server addresses (the `kind` field of [`AllowEntry`]).
pub mod kind {
    /// A root server from the root hints: queried without being learned.
    pub const ROOT: u8 = 1;
    /// Glue or an NS address learned from a paired response by userspace.
    pub const GLUE: u8 = 2;
    /// Glue learned by the XDP program itself (awaiting userspace confirmation).
    pub const KERNEL_GLUE: u8 = 3;
}

/// Value of the allow maps (key: the IPv4 or IPv6 address, network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowEntry {
    /// CLOCK_MONOTONIC_COARSE nanoseconds after which the entry counts as absent.
    /// `u64::MAX`: never.
    pub expires_ns: u64,
    /// One of [`kind`].
    pub kind: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<AllowEntry>() == 16);

impl AllowEntry {
    pub const fn new(expires_ns: u64, kind: u8) -> Self {
        Self {
            expires_ns,
            kind,
            _pad: [0; 7],
        }
    }
}

/// Filtering modes (the `mode` field of [`Config`]).
pub mod mode {
    /// Pass everything; count and report.
    pub const MONITOR: u32 = 0;
    /// Drop queries to unknown destinations.
    pub const ENFORCE: u32 = 1;
}

/// The program's configuration, element 0 of the CONFIG array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// One of [`mode`].
    pub mode: u32,
    /// Non-zero when at least one internal prefix is configured. With none, every query is
    /// checked (the gateway treats all destinations as outside).
    pub have_internal: u32,
    /// Non-zero when at least one exception prefix is configured (skips the LPM lookup when
    /// there are none).
    pub have_exempt: u32,
    pub _pad: u32,
    /// Minimum interval between two events for one source address (ns). 0: no limit.
    pub event_interval_ns: u64,
    /// GCRA tolerance (ns): `event_interval_ns × (burst − 1)`, precomputed by userspace, so a
    /// source may send `burst` events at once before the interval applies.
    pub event_tolerance_ns: u64,
}
const _: () = assert!(size_of::<Config>() == 32);

impl Config {
    pub const fn new() -> Self {
        Self {
            mode: mode::MONITOR,
            have_internal: 0,
            have_exempt: 0,
            _pad: 0,
            event_interval_ns: 0,
            event_tolerance_ns: 0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// Verdicts for a DNS query.
pub mod verdict {
    /// The destination is a learned name server (or a root server).
    pub const REGISTERED: u8 = 0;
    /// The destination was never learned as a name server: suspicious.
    pub const UNKNOWN: u8 = 1;
    /// The destination matches an operator's exception (e.g. a public resolver).
    pub const EXEMPT: u8 = 2;
    /// The destination is inside the internal prefixes: not checked.
    pub const INTERNAL: u8 = 3;
    pub const COUNT: usize = 4;
    pub const NAMES: [&str; COUNT] = ["registered", "unknown", "exempt", "internal"];
}

/// Actions taken on a query.
pub mod action {
    pub const PASS: u8 = 0;
    pub const DROP: u8 = 1;
    pub const COUNT: usize = 2;
    pub const NAMES: [&str; COUNT] = ["pass", "drop"];
}

/// IP families.
pub mod family {
    pub const V4: u8 = 0;
    pub const V6: u8 = 1;
    pub const COUNT: usize = 2;
    pub const NAMES: [&str; COUNT] = ["ipv4", "ipv6"];
}

/// Transports.
pub mod transport {
    pub const UDP: u8 = 0;
    pub const TCP: u8 = 1;
    pub const COUNT: usize = 2;
    pub const NAMES: [&str; COUNT] = ["udp", "tcp"];
}

/// Counter indices of the per-CPU COUNTERS array.
///
/// The first [`counter::QUERY_COUNTERS`] indices count checked queries by
/// verdict × action × family × transport ([`counter::query_index`]); the rest count everything
/// else the program sees.
pub mod counter {
    use super::{action, family, transport, verdict};

    pub const QUERY_COUNTERS: u32 =
        (verdict::COUNT * action::COUNT * family::COUNT * transport::COUNT) as u32;

    /// Index of the counter for one verdict × action × family × transport.
    #[inline(always)]
    pub const fn query_index(verdict: u8, action: u8, family: u8, transport: u8) -> u32 {
        (((verdict as u32 * action::COUNT as u32 + action as u32) * family::COUNT as u32
            + family as u32)
            * transport::COUNT as u32)
            + transport as u32
    }

    /// Frames that are not IPv4/IPv6 (ARP, LLDP, unknown ethertypes, more than two VLAN tags).
    pub const NOT_IP: u32 = QUERY_COUNTERS;
    /// IP packets that are not UDP/TCP to or from port 53.
    pub const NOT_DNS: u32 = QUERY_COUNTERS + 1;
    /// Frames too short for the headers they announce (Ethernet, VLAN, IP, UDP, TCP, DNS header),
    /// bad IP versions, and queries to unknown destinations whose question cannot be read.
    /// Passed.
    pub const MALFORMED: u32 = QUERY_COUNTERS + 2;
    /// DNS responses (QR=1) seen.
    pub const RESPONSES: u32 = QUERY_COUNTERS + 3;
    /// TCP segments to/from port 53 that are not a connection-opening SYN. Passed.
    pub const TCP_OTHER: u32 = QUERY_COUNTERS + 4;
    /// IPv4/IPv6 non-first fragments (no transport header to read). Passed.
    pub const FRAGMENTS: u32 = QUERY_COUNTERS + 5;
    /// IPv6 extension-header chains longer than the program walks, or ESP/unknown headers. Passed.
    pub const IPV6_EXT_LIMIT: u32 = QUERY_COUNTERS + 6;
    /// Events written to the ring buffer.
    pub const EVENTS_SENT: u32 = QUERY_COUNTERS + 7;
    /// Events not written because the source exceeded its rate.
    pub const EVENTS_RATE_LIMITED: u32 = QUERY_COUNTERS + 8;
    /// Events lost because the ring buffer was full.
    pub const EVENTS_LOST: u32 = QUERY_COUNTERS + 9;
    /// Queries to unknown destinations whose question could not be read whole (cut short,
    /// a compression pointer or a bad label type in the name). Such a query is also counted
    /// as malformed: passed, and reported with a truncated name.
    pub const QNAME_TRUNCATED: u32 = QUERY_COUNTERS + 10;
    /// Internal errors (a map lookup that cannot fail did). Passed.
    pub const INTERNAL_ERROR: u32 = QUERY_COUNTERS + 11;
    pub const COUNT: u32 = QUERY_COUNTERS + 12;

    /// Names of the counters after the query counters, in index order.
    pub const OTHER_NAMES: [&str; (COUNT - QUERY_COUNTERS) as usize] = [
        "not_ip",
        "not_dns",
        "malformed",
        "responses",
        "tcp_other",
        "fragments",
        "ipv6_ext_limit",
        "events_sent",
        "events_rate_limited",
        "events_lost",
        "qname_truncated",
        "internal_error",
    ];
}

/// How many bytes of the question name an event carries (wire format, RFC 1035 §3.1: at most
/// 255 bytes).
pub const QNAME_MAX: usize = 256;

/// Flags of [`QueryEvent::flags`].
pub mod event_flag {
    /// `qname`/`qtype` are present (not for TCP SYNs, which carry no DNS message).
    pub const HAS_QUESTION: u16 = 1;
    /// The name did not end within the bytes the event carries, or was malformed.
    pub const QNAME_TRUNCATED: u16 = 2;
}

/// An unknown-destination query, sent by the XDP program through the EVENTS ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QueryEvent {
    /// CLOCK_BOOTTIME nanoseconds when the packet was seen.
    pub ts_ns: u64,
    /// Interface the packet arrived on.
    pub ifindex: u32,
    pub family: u8,
    pub transport: u8,
    pub verdict: u8,
    pub action: u8,
    /// Addresses: IPv4 in the first 4 bytes, network byte order.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// Ports in host byte order.
    pub src_port: u16,
    pub dst_port: u16,
    pub dns_id: u16,
    pub qtype: u16,
    /// Number of valid bytes in `qname` (wire format, labels and the root label).
    pub qname_len: u16,
    /// [`event_flag`] bits.
    pub flags: u16,
    pub _pad: [u8; 4],
    pub qname: [u8; QNAME_MAX],
}
const _: () = assert!(size_of::<QueryEvent>() == 64 + QNAME_MAX);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for AllowEntry {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for QueryEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_indices_are_distinct_and_dense() {
        let mut seen = [false; counter::QUERY_COUNTERS as usize];
        for v in 0..verdict::COUNT as u8 {
            for a in 0..action::COUNT as u8 {
                for f in 0..family::COUNT as u8 {
                    for t in 0..transport::COUNT as u8 {
                        let i = counter::query_index(v, a, f, t) as usize;
                        assert!(!seen[i], "index {i} used twice");
                        seen[i] = true;
                    }
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}
