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
    pub const INFLIGHT: &str = "INFLIGHT";
    pub const PENDING_NS: &str = "PENDING_NS";
    pub const RESPONSES: &str = "RESPONSES";
}

/// Program names in the object.
pub mod prog {
    /// The filter.
    pub const NSDB: &str = "nsdb";
    /// An XDP program that only returns XDP_PASS: the benchmark baseline.
    pub const NOOP: &str = "nsdb_noop";
    /// The benchmark reference, never attached: an untagged IPv4 UDP packet to port 53 and one
    /// ALLOW_V4 lookup of its destination, nothing else. What any hash-based allow-list check
    /// costs at the least.
    pub const FLOOR: &str = "nsdb_floor";
    /// The filter as a TC classifier (the same code, attached at TC ingress).
    pub const NSDB_TC: &str = "nsdb_tc";
    /// A TC classifier that only returns TC_ACT_UNSPEC (pass on): the benchmark baseline for `--attach tc`.
    pub const NOOP_TC: &str = "nsdb_noop_tc";
}

/// Default map capacities. The allow maps are LRU maps: when full, the kernel evicts the least
/// recently used entry rather than failing an insert.
pub const DEFAULT_ALLOW_ENTRIES: u32 = 1 << 20;
pub const DEFAULT_EXEMPT_ENTRIES: u32 = 4096;
pub const DEFAULT_INTERNAL_ENTRIES: u32 = 1024;
pub const DEFAULT_RATE_ENTRIES: u32 = 65536;
/// Slots of the outstanding-query table (a power of two; two-way set-associative, so
/// `INFLIGHT_SLOTS / 2` sets). 2^18 slots of 48 bytes: 12 MiB.
pub const INFLIGHT_SLOTS: u32 = 1 << 18;
/// NS names (of trusted responses) awaiting their address lookup.
pub const DEFAULT_PENDING_ENTRIES: u32 = 1 << 14;
/// Ring buffer size for paired responses handed to userspace.
pub const DEFAULT_RESPONSES_BYTES: u32 = 1 << 24;
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
    pub _pad: [u32; 3],
    /// Minimum interval between two events for one source address (ns). 0: no limit.
    pub event_interval_ns: u64,
    /// Secret seed of the INFLIGHT slot hash (random per start), so that nobody outside can
    /// aim queries at one slot to evict others.
    pub inflight_seed: u64,
    /// How long an NS name seen in a trusted response stays pending (its address lookup's
    /// answer is learned), ns: the glue-less window (paper §4: 2 s).
    pub pending_window_ns: u64,
    /// Non-zero: learn referral glue in the kernel (the race-free path).
    pub learn: u32,
    /// Wake-up batching of the RESPONSES ring buffer. 0 (and with learning off): the ring
    /// buffer's own rule, a record written into an empty ring wakes a waiting reader. Otherwise
    /// the reader, once woken, waits a few ms before it reads (what arrives meanwhile wakes
    /// nobody, by that rule), and the program forces a wake-up for a response only userspace
    /// can learn from whole (the walk stopped early, or the copy was cut) and once the ring
    /// holds this many bytes.
    pub resp_wake_bytes: u32,
    /// TTL clamp for learned glue, seconds.
    pub min_ttl_s: u32,
    pub max_ttl_s: u32,
    /// Added to every learned expiry (serve-stale, prefetch), ns.
    pub grace_ns: u64,
    /// GCRA tolerance (ns): `event_interval_ns × (burst − 1)`, precomputed by userspace, so a
    /// source may send `burst` events at once before the interval applies.
    pub event_tolerance_ns: u64,
    /// First-byte filters in front of the LPM tries: bit `b` is set when some internal
    /// (exempt) prefix of that family holds addresses whose first byte is `b`
    /// ([`FirstBytes::add`]); all clear when there are none. With no internal prefix every
    /// query is checked (the gateway treats all destinations as outside). A destination
    /// whose first byte is clear cannot match, and its trie lookup (a helper call, the
    /// dearest step after the allow map for an unknown destination) is skipped. Bits are only ever set: a removed prefix leaves a superset,
    /// which costs a lookup, never a wrong verdict.
    pub internal_v4_first: FirstBytes,
    pub internal_v6_first: FirstBytes,
    pub exempt_v4_first: FirstBytes,
    pub exempt_v6_first: FirstBytes,
}
const _: () = assert!(size_of::<Config>() == 72 + 4 * 32);

/// A set of byte values (see [`Config::internal_v4_first`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FirstBytes(pub [u64; 4]);

impl FirstBytes {
    pub const fn new() -> Self {
        Self([0; 4])
    }

    /// Adds the first bytes of the addresses in the prefix whose first byte is `first` and
    /// whose length is `prefix_len` bits: that byte alone from /8 on, a range below.
    pub fn add(&mut self, first: u8, prefix_len: u8) {
        let (start, count) = if prefix_len >= 8 {
            (u32::from(first), 1)
        } else {
            let span = 1u32 << (8 - prefix_len);
            (u32::from(first) & !(span - 1), span)
        };
        for b in start..start + count {
            self.0[(b >> 6) as usize] |= 1 << (b & 63);
        }
    }

    /// Whether `b` is in the set.
    #[inline(always)]
    pub fn has(&self, b: u8) -> bool {
        (self.0[usize::from(b >> 6)] >> (b & 63)) & 1 != 0
    }
}

impl Config {
    pub const fn new() -> Self {
        Self {
            mode: mode::MONITOR,
            _pad: [0; 3],
            event_interval_ns: 0,
            event_tolerance_ns: 0,
            inflight_seed: 0x9e37_79b9_7f4a_7c15,
            pending_window_ns: 2_000_000_000,
            learn: 1,
            resp_wake_bytes: 0,
            min_ttl_s: 30,
            max_ttl_s: 7 * 86400,
            grace_ns: 60_000_000_000,
            internal_v4_first: FirstBytes::new(),
            internal_v6_first: FirstBytes::new(),
            exempt_v4_first: FirstBytes::new(),
            exempt_v6_first: FirstBytes::new(),
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

/// TCP header flags (byte 13, RFC 9293 §3.1): what the program and the daemon read of them.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
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
    /// TCP segments to/from port 53 that are neither a connection-opening SYN nor counted in
    /// `TCP_RESP_SEGMENTS` (client data, bare ACKs, segments of connections the program did
    /// not see open or let through to an unknown server). Passed.
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
    /// Responses that answer a query the program saw leave (client, port, server, id).
    pub const RESP_PAIRED: u32 = QUERY_COUNTERS + 12;
    /// Responses that answer no outstanding query: unsolicited, late or spoofed. They teach
    /// nothing.
    pub const RESP_UNSOLICITED: u32 = QUERY_COUNTERS + 13;
    /// Glue addresses the program added to the allow maps (new entries).
    pub const GLUE_LEARNED: u32 = QUERY_COUNTERS + 14;
    /// Glue addresses already allowed whose expiry the program extended.
    pub const GLUE_REFRESHED: u32 = QUERY_COUNTERS + 15;
    /// Addresses learned from the answer to a glue-less NS name's lookup (PENDING_NS hit).
    pub const PENDING_LEARNED: u32 = QUERY_COUNTERS + 16;
    /// Paired responses whose walk stopped at a bound (message longer than the copy, more
    /// RRs than walked, malformed names). Userspace still learns from what it receives.
    pub const RESP_WALK_LIMIT: u32 = QUERY_COUNTERS + 17;
    /// Paired responses not handed to userspace because the ring buffer was full.
    pub const RESP_LOST: u32 = QUERY_COUNTERS + 18;
    /// Paired responses handed to userspace.
    pub const RESP_SENT: u32 = QUERY_COUNTERS + 19;
    /// Paired responses from an unknown destination (its query passed in monitor mode): they
    /// teach nothing, so that a C&C server cannot register itself.
    pub const RESP_UNTRUSTED: u32 = QUERY_COUNTERS + 20;
    /// Segments from the server of a TCP DNS connection to a trusted destination, handed to
    /// userspace (SYN-ACK, data, FIN/RST; not bare ACKs).
    pub const TCP_RESP_SEGMENTS: u32 = QUERY_COUNTERS + 21;
    pub const COUNT: u32 = QUERY_COUNTERS + 22;

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
        "responses_paired",
        "responses_unsolicited",
        "glue_learned_kernel",
        "glue_refreshed_kernel",
        "pending_learned_kernel",
        "response_walk_limit",
        "responses_lost",
        "responses_sent",
        "responses_untrusted",
        "tcp_response_segments",
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

/// One slot of the INFLIGHT table: an outstanding query and when it left.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InflightSlot {
    pub key: InflightKey,
    /// CLOCK_MONOTONIC_COARSE ns with bit 0 set if the destination was trusted (registered,
    /// exempt or internal); 0 for an empty slot.
    pub stamp: u64,
}
const _: () = assert!(size_of::<InflightSlot>() == 48);

/// Key of the INFLIGHT map: one outstanding query. Aligned to 8 bytes, as its slot is, so
/// that the program hashes and compares it as five 64-bit words: at the fields' own alignment
/// (2) LLVM loads each word as four 16-bit pieces.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InflightKey {
    /// Addresses as in the packet (IPv4 in the first 4 bytes).
    pub client: [u8; 16],
    pub server: [u8; 16],
    /// Client port and DNS id as they are on the wire (network byte order).
    pub client_port: u16,
    /// 0 for a TCP connection (remembered at its SYN).
    pub id: u16,
    pub family: u8,
    /// [`transport`]: a UDP query and a TCP connection never share a key.
    pub transport: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<InflightKey>() == 40);
const _: () = assert!(align_of::<InflightKey>() == 8);

/// How many bytes of a paired response the RESPONSES ring buffer carries.
pub const RESP_MSG_MAX: usize = 2048;

/// Flags of [`ResponseEvent::flags`].
pub mod resp_flag {
    /// The message was longer than [`super::RESP_MSG_MAX`]: `msg` holds its beginning.
    pub const TRUNCATED_COPY: u8 = 1;
    /// The program learned glue from this response (userspace confirms or withdraws it).
    pub const KERNEL_LEARNED: u8 = 2;
    /// The question name was pending (a glue-less NS name) and its answer was learned.
    pub const PENDING_HIT: u8 = 4;
    /// A segment from the server of a TCP connection the program let through to a trusted
    /// destination: `msg` holds the segment's payload (DNS messages behind two-byte lengths,
    /// RFC 1035 §4.2.2, possibly a piece of one), starting at sequence number `seq`. Userspace
    /// reassembles the stream. KERNEL_LEARNED / PENDING_HIT refer to the whole message the
    /// segment starts with, if the program walked it.
    pub const TCP: u8 = 8;
    /// The program walked the message (the UDP payload, or the whole message a TCP segment
    /// starts with): `stop` says whether it reached the end. Without it `stop` means nothing
    /// (a TCP segment that starts with no whole response, or learning is off).
    pub const WALKED: u8 = 16;
}

/// Why the program stopped walking a response before its end (`ResponseEvent::stop`).
pub mod walk_stop {
    pub const NONE: u8 = 0;
    /// Not exactly one question.
    pub const QDCOUNT: u8 = 1;
    /// The question name could not be read.
    pub const QNAME: u8 = 2;
    /// An owner name could not be read.
    pub const OWNER: u8 = 3;
    /// A record's fixed fields ran past the copy.
    pub const RR_HEADER: u8 = 4;
    /// A record's data ran past the copy.
    pub const RDATA: u8 = 5;
    /// More records than the program walks.
    pub const TOO_MANY_RRS: u8 = 6;
}

/// A paired response, handed to userspace through the RESPONSES ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ResponseEvent {
    /// CLOCK_BOOTTIME ns of the response.
    pub ts_ns: u64,
    /// CLOCK_MONOTONIC_COARSE ns of its query.
    pub query_ts_ns: u64,
    pub ifindex: u32,
    pub family: u8,
    /// [`resp_flag`] bits.
    pub flags: u8,
    /// How many addresses the program learned (new or refreshed) from it.
    pub learned: u8,
    /// Why the program's walk stopped early ([`walk_stop`]), 0 if it did not.
    pub stop: u8,
    pub client: [u8; 16],
    pub server: [u8; 16],
    /// Host byte order.
    pub client_port: u16,
    pub server_port: u16,
    /// Bytes of the message in `msg`, and the message's length in the packet.
    pub msg_len: u16,
    pub orig_len: u16,
    /// TCP only ([`resp_flag::TCP`]): the segment's sequence number and TCP flags (byte 13 of
    /// the header: FIN 0x01, SYN 0x02, RST 0x04).
    pub seq: u32,
    pub tcp_flags: u8,
    pub _pad: [u8; 3],
    pub msg: [u8; RESP_MSG_MAX],
}
const _: () = assert!(size_of::<ResponseEvent>() == 72 + RESP_MSG_MAX);

/// FNV-1a (64 bit) of a wire-format name, ASCII letters lower-cased (RFC 4343: names compare
/// case-insensitively). The key of PENDING_NS; the XDP program computes the same over the
/// question name of a response.
pub const fn name_hash(wire: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < wire.len() {
        let b = wire[i];
        let b = if b >= b'A' && b <= b'Z' { b + 32 } else { b };
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for InflightKey {}
    unsafe impl aya::Pod for InflightSlot {}
    unsafe impl aya::Pod for ResponseEvent {}
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

    #[test]
    fn first_bytes_cover_exactly_the_prefix() {
        extern crate std;
        use std::{vec, vec::Vec};
        let set = |pfx: &[(u8, u8)]| {
            let mut f = FirstBytes::new();
            for &(b, l) in pfx {
                f.add(b, l);
            }
            (0..=255u8).filter(|b| f.has(*b)).collect::<Vec<u8>>()
        };
        assert_eq!(set(&[]), Vec::<u8>::new());
        // From /8 on, the first byte alone, whatever the rest.
        assert_eq!(set(&[(203, 32)]), vec![203]);
        assert_eq!(set(&[(10, 8), (0x20, 128)]), vec![10, 0x20]);
        // Shorter prefixes: the aligned range their bits leave free.
        assert_eq!(set(&[(192, 3)]), (192..=223).collect::<Vec<u8>>());
        assert_eq!(set(&[(172, 7)]), vec![172, 173]);
        assert_eq!(set(&[(0x20, 3)]), (0x20..=0x3f).collect::<Vec<u8>>());
        assert_eq!(set(&[(0, 0)]), (0..=255).collect::<Vec<u8>>());
        // Each 64-bit word's edges.
        assert_eq!(
            set(&[(63, 8), (64, 8), (127, 8), (128, 8), (255, 8)]),
            vec![63, 64, 127, 128, 255]
        );
    }
}
