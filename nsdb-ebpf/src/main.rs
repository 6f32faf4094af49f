//! The nsdb programs (XDP, and the same code as a TC classifier): check the destination of every outbound DNS query against the allowed
//! name-server addresses, counts everything it sees, reports unknown destinations through a ring
//! buffer and, in enforce mode, drops queries to them.
//!
//! It fails open: anything it does not understand (non-IP, fragments, truncated or malformed
//! headers, long extension-header chains) is passed and counted, never dropped. Only a
//! well-formed DNS query (or TCP SYN to port 53) to an unknown destination in enforce mode is
//! dropped.
#![no_std]
#![no_main]

mod ctx;
mod parse;
mod query;
mod response;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, map, xdp},
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use nsdb_common::{
    AllowEntry, Config, DEFAULT_ALLOW_ENTRIES, DEFAULT_EVENTS_BYTES, DEFAULT_EXEMPT_ENTRIES,
    DEFAULT_INTERNAL_ENTRIES, DEFAULT_PENDING_ENTRIES, DEFAULT_RATE_ENTRIES,
    DEFAULT_RESPONSES_BYTES, INFLIGHT_SLOTS, InflightSlot, QNAME_MAX, RESP_MSG_MAX, counter,
};

// Address keys are raw words of the packet (network byte order), byte for byte the same as
// the `[u8; 4]` / `[u8; 16]` keys userspace writes.

/// Learned and root name-server addresses (IPv4), with their expiry.
#[map]
static ALLOW_V4: LruHashMap<u32, AllowEntry> =
    LruHashMap::with_max_entries(DEFAULT_ALLOW_ENTRIES, 0);
/// Learned and root name-server addresses (IPv6), with their expiry.
#[map]
static ALLOW_V6: LruHashMap<[u32; 4], AllowEntry> =
    LruHashMap::with_max_entries(DEFAULT_ALLOW_ENTRIES, 0);
/// The operator's exceptions (prefixes always allowed, e.g. public resolvers).
#[map]
static EXEMPT_V4: LpmTrie<u32, u8> = LpmTrie::with_max_entries(DEFAULT_EXEMPT_ENTRIES, 0);
#[map]
static EXEMPT_V6: LpmTrie<[u32; 4], u8> = LpmTrie::with_max_entries(DEFAULT_EXEMPT_ENTRIES, 0);
/// The organisation's own prefixes: queries to them are not checked.
#[map]
static INTERNAL_V4: LpmTrie<u32, u8> = LpmTrie::with_max_entries(DEFAULT_INTERNAL_ENTRIES, 0);
#[map]
static INTERNAL_V6: LpmTrie<[u32; 4], u8> = LpmTrie::with_max_entries(DEFAULT_INTERNAL_ENTRIES, 0);
/// Element 0: the [`Config`].
#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
/// Per-CPU counters, indexed by `nsdb_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
/// Unknown-destination query events (`nsdb_common::QueryEvent`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_EVENTS_BYTES, 0);
/// Event rate limiting per source address: the GCRA "theoretical arrival time"
/// (CLOCK_MONOTONIC_COARSE ns).
#[map]
static RATE: LruHashMap<[u32; 4], u64> = LruHashMap::with_max_entries(DEFAULT_RATE_ENTRIES, 0);

/// Outstanding queries (client, client port, server, DNS id), for pairing responses: a
/// two-way set-associative table indexed by a seeded hash of the query. A hash map costs an
/// element allocation per query (an LRU map ~200 ns, a plain hash ~100 ns measured here); a
/// slot write costs a few ns. A new query takes the older slot of its set, so the table
/// forgets the oldest outstanding queries first, like an LRU.
#[map]
static INFLIGHT: Array<InflightSlot> = Array::with_max_entries(INFLIGHT_SLOTS, 0);
/// Glue-less NS names (`nsdb_common::name_hash`) whose address lookup is expected →
/// CLOCK_MONOTONIC_COARSE expiry. Written by userspace.
#[map]
static PENDING_NS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(DEFAULT_PENDING_ENTRIES, 0);
/// Paired responses for userspace (`nsdb_common::ResponseEvent`).
#[map]
static RESPONSES: RingBuf = RingBuf::with_byte_size(DEFAULT_RESPONSES_BYTES, 0);
/// Per-CPU state of the walk over the response being learned from.
#[map]
static STATE: PerCpuArray<response::WalkState> = PerCpuArray::with_max_entries(1, 0);
/// Per-CPU copy of the response being walked.
#[map]
static MSG: PerCpuArray<[u8; RESP_MSG_MAX]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for the question name of an unknown-destination query.
#[map]
static SCRATCH: PerCpuArray<[u8; QNAME_MAX]> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to a counter. The index always comes from `nsdb_common::counter`, so the lookup
/// cannot miss; if it somehow did there is nothing better to do than not count.
#[inline(always)]
fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot of this CPU; XDP runs with preemption disabled.
        unsafe { *c += 1 };
    }
}

/// The whole check, for either hook: the XDP action to take. Malformed packets pass, counted.
#[inline(always)]
fn filter<C: ctx::Packet>(ctx: &C) -> u32 {
    match parse::classify(ctx) {
        Ok(action) => action,
        Err(()) => {
            count(counter::MALFORMED);
            xdp_action::XDP_PASS
        }
    }
}

#[xdp]
pub fn nsdb(ctx: XdpContext) -> u32 {
    filter(&ctx)
}

/// The same filter at TC ingress (tcx link or clsact qdisc), for virtual interfaces where XDP
/// costs more than it saves (veth switches to NAPI and copies every skb for XDP). Only a drop
/// is a drop: every other outcome keeps the packet (fail-open), and keeps it with
/// TC_ACT_UNSPEC (tcx: TCX_NEXT), so that programs attached after nsdb on the same hook (another
/// firewall, Cilium) still see it; TC_ACT_OK would end the chain and let the packet skip them.
#[classifier]
pub fn nsdb_tc(ctx: TcContext) -> i32 {
    match filter(&ctx) {
        xdp_action::XDP_DROP => TC_ACT_SHOT,
        _ => TC_ACT_UNSPEC,
    }
}

/// The benchmark baseline: an XDP program that does nothing.
#[xdp]
pub fn nsdb_noop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The benchmark reference, never attached: the least a hash-based allow-list check of DNS
/// queries can do. An untagged IPv4 packet without options, UDP to port 53, its destination
/// looked up once in ALLOW_V4: no expiry check, no counters, no pairing, no event, no VLAN,
/// IPv6 or TCP. The kernel-cost bench measures it next to the no-op and nsdb, so the report
/// shows how much of nsdb's cost is that one lookup.
#[xdp]
pub fn nsdb_floor(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 14 + 20 + 8 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    let p = start as *const u8;
    // SAFETY: every read lies within the 42 bytes checked above.
    unsafe {
        if *p.add(12) != 0x08 || *p.add(13) != 0x00 || *p.add(14) != 0x45 || *p.add(23) != 17 {
            return xdp_action::XDP_PASS;
        }
        if *p.add(36) != 0 || *p.add(37) != 53 {
            return xdp_action::XDP_PASS;
        }
        let dst = p.add(30).cast::<u32>().read_unaligned();
        if ALLOW_V4.get(dst).is_some() {
            xdp_action::XDP_PASS
        } else {
            xdp_action::XDP_DROP
        }
    }
}

/// The benchmark baseline at TC ingress: a classifier that does nothing.
#[classifier]
pub fn nsdb_noop_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
