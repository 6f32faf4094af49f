//! DNS responses: pairing with the queries the program saw leave, learning referral glue in
//! the kernel before the resolver can use it, and handing paired responses to userspace.
//!
//! Why here and not only in userspace: a resolver sends its next query to a freshly learned
//! name server about 100 µs after the referral arrives; in enforce mode the glue must be in
//! the allow map before that, so the program writes it while processing the referral itself.
//! Userspace still does the full learning (NS names, bailiwick, glue-less follow-ups) and
//! withdraws what it rejects.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, xdp_action},
    helpers::{bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns, bpf_loop},
};
use nsdb_common::{
    AllowEntry, Config, INFLIGHT_SLOTS, InflightKey, InflightSlot, RESP_MSG_MAX, ResponseEvent,
    counter, kind, resp_flag, tcp_flag, transport,
};

use crate::{
    ALLOW_V4, ALLOW_V6, CONFIG, INFLIGHT, MSG, PENDING_NS, RESPONSES, STATE, count, ctx::Packet,
    parse::Flow,
};

/// RRs walked in one response (answer + authority + additional). A root referral with 13 NS,
/// 13 A and 13 AAAA records and an OPT record has 40.
const MAX_RRS: u32 = 64;
/// Labels followed in one owner name (RFC 1035 §3.1: at most 127 in 255 bytes).
const MAX_LABELS: usize = 128;
const MASK: usize = RESP_MSG_MAX - 1;

const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// The key of the query this response answers.
#[inline(always)]
pub fn inflight_key(
    family: u8,
    client: &[u32; 4],
    server: &[u32; 4],
    port: u16,
    id: u16,
    transport: u8,
) -> InflightKey {
    // SAFETY: [u32; 4] and [u8; 16] have the same size; the bytes are the packet's.
    unsafe {
        InflightKey {
            client: core::mem::transmute::<[u32; 4], [u8; 16]>(*client),
            server: core::mem::transmute::<[u32; 4], [u8; 16]>(*server),
            client_port: port,
            id,
            family,
            transport,
            _pad: [0; 2],
        }
    }
}

#[inline(always)]
fn u16_at(b: &[u8; RESP_MSG_MAX], off: usize) -> u16 {
    u16::from_be_bytes([b[off & MASK], b[(off + 1) & MASK]])
}

#[inline(always)]
fn u32_at(b: &[u8; RESP_MSG_MAX], off: usize) -> u32 {
    u32::from_be_bytes([
        b[off & MASK],
        b[(off + 1) & MASK],
        b[(off + 2) & MASK],
        b[(off + 3) & MASK],
    ])
}

/// The state of a walk over one response, in a per-CPU map rather than on the stack: the
/// verifier treats map values as unknown numbers, so it checks each bpf_loop callback once
/// instead of once per distinct value a stack slot could hold.
#[repr(C)]
pub struct WalkState {
    /// Next RR's offset, the copy's length, answer and authority counts.
    off: u32,
    len: u32,
    an: u32,
    ns: u32,
    /// An NS record was seen in the answer or authority section.
    have_ns: u32,
    /// The question name was pending: learn the answer's addresses.
    pending: u32,
    learned: u32,
    /// The walk stopped early (malformed, or ran past the copy).
    stopped: u32,
    /// Name skip: offset, and 0 running / 1 done / 2 malformed.
    s_off: u32,
    s_done: u32,
    /// Name hash: next label to read, offset just past the name where it started (0 until
    /// known), pointers followed, 0 running / 1 done / 2 bad.
    n_pos: u32,
    n_end: u32,
    n_hops: u32,
    n_done: u32,
    /// FNV-1a of the lower-cased uncompressed wire name (`nsdb_common::name_hash`).
    n_hash: u64,
    /// When a glue-less NS name stays pending (CLOCK_MONOTONIC_COARSE ns).
    pending_until: u64,
    /// CLOCK_MONOTONIC_COARSE when the walk started: one clock read per response, for every
    /// expiry it computes (the coarse clock moves in ticks anyway).
    now: u64,
    /// What the record to userspace needs, kept here across the walk (see [`Held`]).
    held: Held,
}

/// The facts of a response the record to userspace carries, parked in the per-CPU walk state
/// while the walk runs and read back after it. Kept in registers and on the stack instead,
/// they are live across the walk, and the verifier checks the walk's callbacks once for
/// every combination of their values it can tell apart (UDP or TCP, data or SYN/FIN, …):
/// over its 1,000,000-instruction limit. Read back from a map they are unknown numbers, and
/// every path reaches the walk in the same state.
#[repr(C)]
#[derive(Clone, Copy)]
struct Held {
    query_ts: u64,
    /// TCP sequence number; offset and length of the bytes sent, the length in the packet.
    seq: u32,
    off: u32,
    len: u32,
    total: u32,
    sport: u16,
    dport: u16,
    /// [`resp_flag`] bits known before the walk; TCP flags.
    flags: u8,
    tcp_flags: u8,
    /// The walk covers all the record holds (read back rather than kept live, as above).
    whole: u8,
    _pad: u8,
}

/// What every bpf_loop callback of one walk works on, looked up once per response and handed
/// to the callbacks as their context: a map lookup per callback call (per label, per record)
/// cost more than the label's own work.
#[repr(C)]
struct Walk {
    st: *mut WalkState,
    b: *const [u8; RESP_MSG_MAX],
    cfg: *const Config,
}

/// The walk behind a callback's context.
///
/// # Safety
/// `ctx` must be the `Walk` that `walk_message` passed to bpf_loop (directly or through
/// `skip_name` / `hash_name`); its pointers are this CPU's STATE and MSG slots and the config.
#[inline(always)]
unsafe fn walk_of<'a>(ctx: *mut c_void) -> (&'a mut WalkState, &'a [u8; RESP_MSG_MAX], &'a Config) {
    unsafe {
        let w = &*(ctx as *const Walk);
        (&mut *w.st, &*w.b, &*w.cfg)
    }
}

/// One label of a name (RFC 1035 §4.1.4: labels ending in a zero byte or in a 2-byte
/// compression pointer).
extern "C" fn skip_label(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the walk's context (skip_name).
    let (st, b, _) = unsafe { walk_of(ctx) };
    match skip_one_label(b, st.len as usize, st.s_off as usize) {
        Skip::Done(end) => {
            st.s_off = end;
            st.s_done = 1;
            1
        }
        Skip::Bad => {
            st.s_done = 2;
            1
        }
        Skip::From(next) => {
            st.s_off = next;
            0
        }
    }
}

/// Reads a field of the walk state. The callbacks reach the state through the map, behind
/// the compiler's back: around bpf_loop calls every access is volatile, so that no store is
/// delayed past a call and no load is taken from before one.
macro_rules! get {
    ($st:expr, $f:ident) => {
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$st).$f)) }
    };
}
macro_rules! set {
    ($st:expr, $f:ident, $v:expr) => {
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*$st).$f), $v) }
    };
}

/// Offset just past the name at `off`; `None` if it is malformed or runs past the copy.
#[inline(always)]
fn skip_name(w: *mut c_void, st: *mut WalkState, off: u32) -> Option<u32> {
    set!(st, s_off, off);
    set!(st, s_done, 0);
    // SAFETY: the callback has the signature bpf_loop expects; `w` is the walk's context.
    unsafe { bpf_loop(MAX_LABELS as u32, skip_label as *mut c_void, w, 0) };
    if get!(st, s_done) == 1 {
        Some(get!(st, s_off))
    } else {
        None
    }
}

/// How far a name skip got.
enum Skip {
    /// Offset just past the name.
    Done(u32),
    /// Malformed, or runs past the copy.
    Bad,
    /// Still inside the name at this offset (a label start).
    From(u32),
}

/// Skips the label (or the compression pointer, which ends a name) at `o`.
#[inline(always)]
fn skip_one_label(b: &[u8; RESP_MSG_MAX], len: usize, o: usize) -> Skip {
    if o >= len {
        return Skip::Bad;
    }
    let c = b[o & MASK] as usize;
    if c == 0 {
        return Skip::Done(o as u32 + 1);
    }
    if c & 0xC0 == 0xC0 {
        return Skip::Done(o as u32 + 2);
    }
    if c & 0xC0 != 0 {
        // Extended label types (RFC 6891 §5) are not used in practice: malformed.
        return Skip::Bad;
    }
    Skip::From((o + c + 1) as u32)
}

/// Labels of an owner name skipped in line, before bpf_loop takes over: enough for a bare
/// compression pointer (nearly every owner name servers send) and for an uncompressed
/// `a.nic.test`-style glue owner, which would otherwise cost a callback call per label.
const INLINE_LABELS: usize = 4;

/// Skips up to [`INLINE_LABELS`] labels of the name at `o`; `Skip::From` where bpf_loop
/// (`skip_label`, the same step) goes on.
#[inline(always)]
fn skip_short_name(b: &[u8; RESP_MSG_MAX], len: usize, mut o: usize) -> Skip {
    for _ in 0..INLINE_LABELS {
        match skip_one_label(b, len, o) {
            Skip::From(next) => o = next as usize,
            done_or_bad => return done_or_bad,
        }
    }
    Skip::From(o as u32)
}

/// Expiry of a learned address: now + TTL clamped to the configured range, plus the grace.
#[inline(always)]
fn expiry(cfg: &Config, ttl: u32, now: u64) -> u64 {
    let ttl = if ttl < cfg.min_ttl_s {
        cfg.min_ttl_s
    } else if ttl > cfg.max_ttl_s {
        cfg.max_ttl_s
    } else {
        ttl
    };
    now + ttl as u64 * 1_000_000_000 + cfg.grace_ns
}

/// Allows an address until `expires`; only writes when that extends what is there. Returns
/// true if it learned or refreshed something. A refresh writes the expiry in place (one
/// lookup); only a new address costs an LRU insert (an element taken from the free list).
#[inline(always)]
fn learn_v4(addr: u32, expires: u64) -> bool {
    match ALLOW_V4.get_ptr_mut(addr) {
        // SAFETY: a value slot of the map. An aligned 8-byte store cannot tear; a concurrent
        // userspace update replaces the element, and then this store is simply lost.
        Some(e) => unsafe { refresh(e, expires) },
        None => {
            let _ = ALLOW_V4.insert(addr, AllowEntry::new(expires, kind::KERNEL_GLUE), 0);
            count(counter::GLUE_LEARNED);
            true
        }
    }
}

#[inline(always)]
fn learn_v6(addr: [u32; 4], expires: u64) -> bool {
    match ALLOW_V6.get_ptr_mut(addr) {
        // SAFETY: as in learn_v4.
        Some(e) => unsafe { refresh(e, expires) },
        None => {
            let _ = ALLOW_V6.insert(addr, AllowEntry::new(expires, kind::KERNEL_GLUE), 0);
            count(counter::GLUE_LEARNED);
            true
        }
    }
}

/// Extends a known entry's expiry in place; root hints never expire and are left alone.
///
/// # Safety
/// `e` must point at a value of an allow map.
#[inline(always)]
unsafe fn refresh(e: *mut AllowEntry, expires: u64) -> bool {
    let e = unsafe { &mut *e };
    if e.kind == kind::ROOT || e.expires_ns >= expires {
        return false;
    }
    unsafe { core::ptr::write_volatile(&mut e.expires_ns, expires) };
    count(counter::GLUE_REFRESHED);
    true
}

/// One resource record per call.
extern "C" fn walk_rr(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the walk's context (walk_message).
    let (st, b, cfg) = unsafe { walk_of(ctx) };
    let len = st.len as usize;
    let start = st.off;
    let skipped = match skip_short_name(b, len, start as usize) {
        Skip::Done(end) => Some(end),
        Skip::Bad => None,
        Skip::From(o) => skip_name(ctx, st, o),
    };
    let Some(off) = skipped else {
        st.stopped = 3;
        return 1;
    };
    let off = off as usize;
    if off + 10 > len {
        st.stopped = 4;
        return 1;
    }
    let rtype = u16_at(b, off);
    let class = u16_at(b, off + 2);
    let ttl = u32_at(b, off + 4);
    let rdlen = u16_at(b, off + 8) as usize;
    let rdata = off + 10;
    if rdata + rdlen > len {
        st.stopped = 5;
        return 1;
    }
    let i = index as u32;
    let answer = i < st.an;
    let additional = i >= st.an + st.ns;
    if !additional && rtype == TYPE_NS {
        st.have_ns = 1;
        // The resolver may have to look this name server's address up (a glue-less
        // delegation): mark its name, so that the answer to that lookup is learned here too,
        // before the resolver uses it (userspace would be a round trip too late on a fast
        // network).
        let until = st.pending_until;
        if let Some((_, h)) = hash_name(ctx, st, rdata as u32) {
            mark_pending(h, until);
        }
    }
    // Referral glue (RFC 1034 §4.2.1): addresses in the additional section of a response
    // carrying NS records; and the answer to a pending glue-less NS name's lookup.
    let take =
        class == CLASS_IN && ((additional && st.have_ns != 0) || (answer && st.pending != 0));
    if take {
        let exp = expiry(cfg, ttl, st.now);
        if rtype == TYPE_A && rdlen == 4 {
            let a = [
                b[rdata & MASK],
                b[(rdata + 1) & MASK],
                b[(rdata + 2) & MASK],
                b[(rdata + 3) & MASK],
            ];
            if learn_v4(u32::from_ne_bytes(a), exp) {
                st.learned += 1;
            }
        } else if rtype == TYPE_AAAA && rdlen == 16 {
            let mut a = [0u32; 4];
            for (k, w) in a.iter_mut().enumerate() {
                let o = rdata + k * 4;
                *w = u32::from_ne_bytes([
                    b[o & MASK],
                    b[(o + 1) & MASK],
                    b[(o + 2) & MASK],
                    b[(o + 3) & MASK],
                ]);
            }
            if learn_v6(a, exp) {
                st.learned += 1;
            }
        }
    }
    st.off = (rdata + rdlen) as u32;
    0
}

/// Marks a glue-less candidate NS name as pending until `until`. A name already marked (the
/// same referral seen again, or a name server of many zones) is extended in place: an LRU
/// insert takes an element from the free list and costs several lookups.
#[inline(always)]
fn mark_pending(h: u64, until: u64) {
    match PENDING_NS.get_ptr_mut(h) {
        // SAFETY: a value slot of the map; an aligned 8-byte store.
        Some(v) => unsafe {
            if *v < until {
                core::ptr::write_volatile(v, until);
            }
        },
        None => {
            let _ = PENDING_NS.insert(h, until, 0);
        }
    }
}

/// One label of a name, hashed, following compression pointers (RFC 1035 §4.1.4): the hash is
/// that of the uncompressed wire name, lower-cased (`nsdb_common::name_hash`). A label is
/// hashed in an inner loop (at most 63 bytes): one bpf_loop call per label, not per byte.
extern "C" fn name_label(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the walk's context (hash_name).
    let (st, b, _) = unsafe { walk_of(ctx) };
    let o = st.n_pos as usize;
    let len = st.len as usize;
    if o >= len {
        st.n_done = 2;
        return 1;
    }
    let c = b[o & MASK];
    if c & 0xC0 == 0xC0 {
        // A pointer must point back to an earlier name; at most 32 are followed.
        let ptr = (((c & 0x3F) as u32) << 8) | b[(o + 1) & MASK] as u32;
        if o + 1 >= len || ptr >= st.n_pos || st.n_hops >= 32 {
            st.n_done = 2;
            return 1;
        }
        if st.n_end == 0 {
            st.n_end = st.n_pos + 2;
        }
        st.n_hops += 1;
        st.n_pos = ptr;
        return 0;
    }
    if c & 0xC0 != 0 || o + 1 + c as usize > len {
        st.n_done = 2;
        return 1;
    }
    let mut h = (st.n_hash ^ c as u64).wrapping_mul(0x0000_0100_0000_01b3);
    for k in 0..63usize {
        if k >= c as usize {
            break;
        }
        let x = b[(o + 1 + k) & MASK];
        let l = if x.is_ascii_uppercase() { x + 32 } else { x };
        h = (h ^ l as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    st.n_hash = h;
    st.n_pos += c as u32 + 1;
    if c == 0 {
        if st.n_end == 0 {
            st.n_end = st.n_pos;
        }
        st.n_done = 1;
        return 1;
    }
    0
}

/// Hashes the name at `off`: `(offset just past it, hash)`, or `None` if it is malformed.
#[inline(always)]
fn hash_name(w: *mut c_void, st: *mut WalkState, off: u32) -> Option<(u32, u64)> {
    set!(st, n_pos, off);
    set!(st, n_end, 0);
    set!(st, n_hops, 0);
    set!(st, n_done, 0);
    set!(st, n_hash, 0xcbf2_9ce4_8422_2325);
    // 128 labels and 32 pointers at most.
    // SAFETY: the callback has the signature bpf_loop expects; `w` is the walk's context.
    unsafe { bpf_loop(160, name_label as *mut c_void, w, 0) };
    if get!(st, n_done) == 1 {
        Some((get!(st, n_end), get!(st, n_hash)))
    } else {
        None
    }
}

/// What the transport carried: a UDP response, or a segment from a TCP DNS server.
pub struct Segment {
    /// [`transport`].
    pub transport: u8,
    /// The DNS id as on the wire (UDP); 0 for TCP, whose connection is remembered at its SYN.
    pub id_raw: u16,
    /// Offset of the DNS message (UDP) or of the TCP payload, and where the datagram ends.
    pub off: usize,
    pub end: usize,
    /// TCP only: sequence number and flags.
    pub seq: u32,
    pub flags: u8,
}

/// A response from port 53: paired with the query (UDP) or the connection (TCP) the program
/// saw leave; trusted ones are walked for glue and handed to userspace.
///
/// TCP: every segment of a trusted connection that is not a bare ACK goes to userspace, which
/// reassembles the stream (a message may span segments). A segment that starts with a whole
/// message behind its two-byte length, as a name server writes a referral that fits one
/// segment, has that message walked here like a UDP response, so that its glue is in the
/// allow map before the resolver opens its next connection. The connection's slot stays
/// until the server's FIN or RST: it carries many responses.
#[inline(always)]
pub fn handle<C: Packet>(ctx: &C, flow: &Flow, sport: u16, dport: u16, seg: &Segment) -> u32 {
    let tcp = seg.transport == transport::TCP;
    let key = inflight_key(
        flow.family,
        &flow.dst,
        &flow.src,
        dport.to_be(),
        seg.id_raw,
        seg.transport,
    );
    let Some(cfg) = CONFIG.get(0) else {
        count(counter::INTERNAL_ERROR);
        return xdp_action::XDP_PASS;
    };
    let total = seg.end.saturating_sub(seg.off);
    if tcp && total == 0 && seg.flags & (tcp_flag::SYN | tcp_flag::FIN | tcp_flag::RST) == 0 {
        // A bare ACK: nothing for anyone to learn.
        count(counter::TCP_OTHER);
        return xdp_action::XDP_PASS;
    }
    let Some(slot) = find_slot(cfg, &key) else {
        count(if tcp {
            counter::TCP_OTHER
        } else {
            counter::RESP_UNSOLICITED
        });
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a slot of the array map; another CPU may write it concurrently, which at worst
    // makes this response look unsolicited or lets one copy through twice.
    let query_ts = unsafe { (*slot).stamp };
    if !tcp || seg.flags & (tcp_flag::FIN | tcp_flag::RST) != 0 {
        // One response per query: a second (replayed or spoofed) copy teaches nothing. A TCP
        // connection's slot goes when the server closes it.
        unsafe { (*slot).stamp = 0 };
    }
    if tcp {
        // A connection monitor mode let through to an unknown server teaches nothing.
        if query_ts & 1 == 0 {
            count(counter::TCP_OTHER);
            return xdp_action::XDP_PASS;
        }
        count(counter::TCP_RESP_SEGMENTS);
    } else {
        count(counter::RESP_PAIRED);
        if query_ts & 1 == 0 {
            count(counter::RESP_UNTRUSTED);
            return xdp_action::XDP_PASS;
        }
    }
    let query_ts = query_ts & !1;
    // What is walked: the UDP payload, or the whole message a TCP segment starts with.
    let (walk_off, walk_total) = if !tcp {
        (seg.off, total)
    } else if total >= 2 + 12 {
        // The length, then the DNS header's id and flags: a response (QR=1) that ends within
        // the segment. Read with the helper (under TC the payload may lie beyond the skb's
        // linear part) into the scratch buffer the walk copies into rather than onto the
        // stack, which with the deepest callback's frame is near the verifier's 512 bytes.
        match MSG.get_ptr_mut(0) {
            Some(h) => {
                // SAFETY: this CPU's scratch buffer, with room for the 5 bytes asked for.
                let h = unsafe { &mut *h };
                let rc = unsafe { ctx.load_bytes(seg.off as u32, h.as_mut_ptr().cast(), 5) };
                let n = u16::from_be_bytes([h[0], h[1]]) as usize;
                if rc == 0 && n + 2 <= total && h[4] & 0x80 != 0 {
                    (seg.off + 2, n)
                } else {
                    (0, 0)
                }
            }
            None => (0, 0),
        }
    } else {
        (0, 0)
    };
    let walk = cfg.learn != 0 && walk_total >= 12;
    // Whether the walk covers every byte userspace gets: if not (a TCP segment with more than
    // its first message, or none), userspace has more to learn from and is woken at once.
    let whole = walk && (!tcp || walk_total + 2 == total);
    let len = if total > RESP_MSG_MAX {
        RESP_MSG_MAX
    } else {
        total
    };
    if len < 12 && !tcp {
        return xdp_action::XDP_PASS;
    }
    let mut flags = if total > RESP_MSG_MAX {
        resp_flag::TRUNCATED_COPY
    } else {
        0
    };
    if tcp {
        flags |= resp_flag::TCP;
    }
    let Some(st) = STATE.get_ptr_mut(0) else {
        count(counter::INTERNAL_ERROR);
        return xdp_action::XDP_PASS;
    };
    set!(
        st,
        held,
        Held {
            query_ts,
            seq: seg.seq,
            off: seg.off as u32,
            len: len as u32,
            total: if total > 0xffff { 0xffff } else { total as u32 },
            sport,
            dport,
            flags,
            tcp_flags: seg.flags,
            whole: whole as u8,
            _pad: 0,
        }
    );
    let mut learned = 0u32;
    let mut stop = 0u8;
    let mut more = 0u8;
    if walk {
        // A message longer than the copy is walked as far as the copy goes.
        let long = walk_total > RESP_MSG_MAX;
        let wlen = if long { RESP_MSG_MAX } else { walk_total };
        // As in query.rs: restate 1..=RESP_MSG_MAX in a form the verifier tracks.
        let wlen = ((core::hint::black_box(wlen) - 1) & MASK) + 1;
        if let Some(b) = MSG.get_ptr_mut(0) {
            // SAFETY: this CPU's scratch buffer; `wlen` fits it.
            let b = unsafe { &mut *b };
            let rc = unsafe { ctx.load_bytes(walk_off as u32, b.as_mut_ptr().cast(), wlen as u32) };
            if rc == 0 {
                walk_message(cfg, st, b, wlen);
                more |= resp_flag::WALKED;
                learned = get!(st, learned);
                stop = get!(st, stopped) as u8;
                if stop != 0 || long {
                    count(counter::RESP_WALK_LIMIT);
                }
                if get!(st, pending) != 0 {
                    more |= resp_flag::PENDING_HIT;
                }
                if learned != 0 {
                    more |= resp_flag::KERNEL_LEARNED;
                }
            }
        }
    }
    send(ctx, cfg, flow, &get!(st, held), more, learned, stop);
    xdp_action::XDP_PASS
}

/// Walks the copy of a paired response in MSG, learning what it carries; the outcome is left
/// in the walk state (`learned`, `pending`, `stopped`).
#[inline(always)]
fn walk_message(cfg: &Config, st: *mut WalkState, b: &[u8; RESP_MSG_MAX], len: usize) {
    let qd = u16_at(b, 4);
    let an = u16_at(b, 6) as u32;
    let ns = u16_at(b, 8) as u32;
    let ar = u16_at(b, 10) as u32;
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let init = WalkState {
        off: 0,
        len: len as u32,
        an,
        ns,
        have_ns: 0,
        pending: 0,
        learned: 0,
        stopped: 0,
        s_off: 0,
        s_done: 0,
        n_pos: 0,
        n_end: 0,
        n_hops: 0,
        n_done: 0,
        n_hash: 0,
        pending_until: now + cfg.pending_window_ns,
        now,
        held: get!(st, held),
    };
    // SAFETY: `st` is this CPU's walk state (see `get!`).
    unsafe { core::ptr::write_volatile(st, init) };
    let mut walk = Walk {
        st,
        b: b as *const [u8; RESP_MSG_MAX],
        cfg: cfg as *const Config,
    };
    let w = (&mut walk as *mut Walk).cast::<c_void>();
    // Exactly one question in practice (RFC 9619); anything else is not walked.
    if qd != 1 {
        set!(st, stopped, 1);
        return;
    }
    // The question name, hashed: if it is a pending glue-less NS name, the answer's
    // addresses are that name server's.
    let qend = match hash_name(w, st, 12) {
        Some((end, h)) => {
            if let Some(exp) = unsafe { PENDING_NS.get(h) } {
                if now < *exp {
                    set!(st, pending, 1);
                    count(counter::PENDING_LEARNED);
                }
            }
            Some(end)
        }
        None => None,
    };
    let Some(qend) = qend else {
        set!(st, stopped, 2);
        return;
    };
    set!(st, off, qend + 4);
    let total = an + ns + ar;
    if total > MAX_RRS {
        set!(st, stopped, 6);
    }
    let n = if total > MAX_RRS { MAX_RRS } else { total };
    if n > 0 {
        // SAFETY: the callback has the signature bpf_loop expects; `w` is the walk's context.
        unsafe { bpf_loop(n, walk_rr as *mut c_void, w, 0) };
    }
}

/// Hands a trusted response (or TCP segment) to userspace: the facts parked in `held`, the
/// walk's outcome (`more`: resp_flag bits) and a copy of the bytes.
#[inline(always)]
fn send<C: Packet>(
    ctx: &C,
    cfg: &Config,
    flow: &Flow,
    held: &Held,
    more: u8,
    learned: u32,
    stop: u8,
) {
    let flags = held.flags | more;
    let Some(mut entry) = RESPONSES.reserve::<ResponseEvent>(0) else {
        count(counter::RESP_LOST);
        return;
    };
    let ev = entry.as_mut_ptr();
    let len = held.len as usize;
    // SAFETY: a reserved, exclusively owned ring-buffer record of the right size; the copy's
    // length is restated below to at most RESP_MSG_MAX, the size of `msg`.
    let rc = unsafe {
        (*ev).ts_ns = bpf_ktime_get_boot_ns();
        (*ev).query_ts_ns = held.query_ts;
        (*ev).ifindex = ctx.ingress_ifindex();
        (*ev).family = flow.family;
        (*ev).flags = flags;
        (*ev).learned = if learned > 255 { 255 } else { learned as u8 };
        (*ev).stop = stop;
        (*ev).client = core::mem::transmute::<[u32; 4], [u8; 16]>(flow.dst);
        (*ev).server = core::mem::transmute::<[u32; 4], [u8; 16]>(flow.src);
        (*ev).client_port = held.dport;
        (*ev).server_port = held.sport;
        (*ev).orig_len = held.total as u16;
        (*ev).seq = held.seq;
        (*ev).tcp_flags = held.tcp_flags;
        (*ev)._pad = [0; 3];
        if len == 0 {
            // A TCP SYN-ACK or FIN without data: the record marks the stream's start or end.
            (*ev).msg_len = 0;
            0
        } else {
            // As in query.rs: restate 1..=RESP_MSG_MAX in a form the verifier tracks.
            let len = ((core::hint::black_box(len) - 1) & MASK) + 1;
            (*ev).msg_len = len as u16;
            ctx.load_bytes(held.off, (*ev).msg.as_mut_ptr().cast(), len as u32)
        }
    };
    if rc != 0 {
        entry.discard(0);
        count(counter::RESP_LOST);
        return;
    }
    // Wake-up batching (Config::resp_wake_bytes). The ring buffer's own rule (flags 0) wakes
    // the reader only for a record written into an empty ring; the batching reader, so woken,
    // waits a few ms before it reads, and what comes meanwhile wakes nobody. A response that
    // only userspace can learn from whole (the walk stopped early, or the copy was cut) and a
    // ring a quarter full wake the reader at once, forced, since it is not caught up. So does
    // a TCP segment with data the program did not walk whole: a piece of a longer message,
    // or messages after the first, which only userspace can learn from. With learning off
    // every response is userspace's to learn, and nothing is batched.
    let wake = if cfg.resp_wake_bytes == 0 || cfg.learn == 0 {
        0
    } else if stop != 0
        || flags & resp_flag::TRUNCATED_COPY != 0
        || (flags & resp_flag::TCP != 0 && held.whole == 0 && len != 0)
        || RESPONSES.query(BPF_RB_AVAIL_DATA as u64) >= cfg.resp_wake_bytes as u64
    {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        0
    };
    entry.submit(wake);
    count(counter::RESP_SENT);
}

/// The first slot of the key's set (slots `i` and `i + 1`).
#[inline(always)]
fn set_of(cfg: &Config, key: &InflightKey) -> u32 {
    // SAFETY: InflightKey is 40 bytes of plain data: five u64 words.
    let w: [u64; 5] = unsafe { core::mem::transmute(*key) };
    let mut h = cfg.inflight_seed;
    for x in w {
        h = (h ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    ((h as u32) & (INFLIGHT_SLOTS - 1)) & !1
}

#[inline(always)]
fn same(a: &InflightKey, b: &InflightKey) -> bool {
    // SAFETY: as above.
    let (a, b): ([u64; 5], [u64; 5]) =
        unsafe { (core::mem::transmute(*a), core::mem::transmute(*b)) };
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
}

/// The occupied slot holding `key`, if any.
#[inline(always)]
fn find_slot(cfg: &Config, key: &InflightKey) -> Option<*mut InflightSlot> {
    let i = set_of(cfg, key);
    for j in [i, i + 1] {
        let s = INFLIGHT.get_ptr_mut(j)?;
        // SAFETY: a slot of the array map.
        if unsafe { (*s).stamp != 0 && same(&(*s).key, key) } {
            return Some(s);
        }
    }
    None
}

/// Remembers an outbound query for pairing its response. `trusted`: the destination was a
/// registered, exempt or internal server. A response from an unknown destination (a query
/// that monitor mode let through) is paired but never teaches: otherwise a C&C server could
/// register itself by answering with NS records and glue pointing at its own address.
#[inline(always)]
pub fn remember(
    cfg: &Config,
    flow: &Flow,
    transport: u8,
    sport: u16,
    id_raw: u16,
    trusted: bool,
    now: u64,
) {
    let key = inflight_key(
        flow.family,
        &flow.src,
        &flow.dst,
        sport.to_be(),
        id_raw,
        transport,
    );
    let i = set_of(cfg, &key);
    let (Some(a), Some(b)) = (INFLIGHT.get_ptr_mut(i), INFLIGHT.get_ptr_mut(i + 1)) else {
        return;
    };
    // `now` is the coarse clock (query.rs reads it once per query). Bit 0 carries `trusted`;
    // a stamp is never 0 (0 marks an empty slot).
    let stamp = (now & !1) | u64::from(trusted) | 2;
    // SAFETY: slots of the array map (see `handle` on concurrent writers). Take the slot that
    // already holds this query, else an empty one, else the older.
    unsafe {
        let slot = if (*b).stamp != 0 && same(&(*b).key, &key) {
            b
        } else if (*a).stamp == 0
            || same(&(*a).key, &key)
            || (*b).stamp != 0 && (*a).stamp <= (*b).stamp
        {
            a
        } else {
            b
        };
        (*slot).key = key;
        (*slot).stamp = stamp;
    }
}
