//! The check of one outbound query: internal → registered → exempt → unknown; counting; the
//! event for an unknown destination (rate-limited per source); the drop in enforce mode.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns},
    maps::lpm_trie::Key,
};
use nsdb_common::{
    Config, QNAME_MAX, QueryEvent, action, counter, event_flag, family, mode, transport, verdict,
};

use crate::{
    ALLOW_V4, ALLOW_V6, CONFIG, EVENTS, EXEMPT_V4, EXEMPT_V6, INTERNAL_V4, INTERNAL_V6, RATE,
    SCRATCH, count, ctx::Packet, parse::Flow, response,
};

/// At most 127 labels fit in a 255-byte name (RFC 1035 §3.1); walking 128 covers every valid
/// name in the event buffer.
const MAX_LABELS: usize = 128;

/// What the program read of the question of an unknown-destination query.
struct Question {
    /// Bytes of the name in SCRATCH (wire format); the whole name if `flags` has
    /// HAS_QUESTION without QNAME_TRUNCATED.
    name_len: u16,
    qtype: u16,
    /// `nsdb_common::event_flag` bits.
    flags: u16,
}

/// Checks a query to `flow.dst` and returns the action. `question` is the offset of the DNS
/// question (UDP) or 0 (TCP SYN: no DNS message yet).
#[inline(always)]
pub fn check<C: Packet>(
    ctx: &C,
    flow: &Flow,
    transport: u8,
    sport: u16,
    dport: u16,
    dns_id: u16,
    question: usize,
) -> u32 {
    let Some(cfg) = CONFIG.get(0) else {
        count(counter::INTERNAL_ERROR);
        return xdp_action::XDP_PASS;
    };
    // One clock read per query, shared by the expiry check and the pairing stamp.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let v = lookup(cfg, flow, now);
    if v != verdict::UNKNOWN {
        count(counter::query_index(
            v,
            action::PASS,
            flow.family,
            transport,
        ));
        // A UDP query, or a TCP connection (id 0) whose segments from the server pair with it.
        response::remember(cfg, flow, transport, sport, dns_id.to_be(), true, now);
        return xdp_action::XDP_PASS;
    }
    // Unknown destination: the slow path. Read the question for the report; a UDP "query"
    // whose question cannot be read is malformed, and malformed packets are passed (and
    // still reported, so the operator sees them).
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        count(counter::INTERNAL_ERROR);
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's scratch slot; XDP runs with preemption disabled.
    let scratch = unsafe { &mut *scratch };
    let q = if transport == transport::UDP {
        read_question(ctx, question, scratch)
    } else {
        Question {
            name_len: 0,
            qtype: 0,
            flags: 0,
        }
    };
    let malformed = transport == transport::UDP && q.flags != event_flag::HAS_QUESTION;
    let act = if !malformed && cfg.mode == mode::ENFORCE {
        action::DROP
    } else {
        action::PASS
    };
    if malformed {
        count(counter::MALFORMED);
    } else {
        count(counter::query_index(v, act, flow.family, transport));
    }
    report(
        ctx, cfg, flow, transport, sport, dport, dns_id, &q, scratch, act, now,
    );
    if act == action::PASS {
        // Monitor mode (or a malformed query): it leaves, so its response is paired, but an
        // unknown server's answer never teaches.
        response::remember(cfg, flow, transport, sport, dns_id.to_be(), false, now);
    }
    if act == action::DROP {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// The verdict for a destination. The allow map comes first: a registered name server is the
/// common case on a busy gateway, and one hash lookup settles it. The prefix tries are looked
/// up only when a configured prefix shares the destination's first byte.
#[inline(always)]
fn lookup(cfg: &Config, flow: &Flow, now: u64) -> u8 {
    if flow.family == family::V4 {
        let a = flow.dst[0];
        if let Some(e) = unsafe { ALLOW_V4.get(a) } {
            if unexpired(e.expires_ns, now) {
                return verdict::REGISTERED;
            }
        }
        // The first byte on the wire: the low byte of the word loaded from the packet.
        let first = a as u8;
        if cfg.internal_v4_first.has(first) && INTERNAL_V4.get(Key::new(32, a)).is_some() {
            return verdict::INTERNAL;
        }
        if cfg.exempt_v4_first.has(first) && EXEMPT_V4.get(Key::new(32, a)).is_some() {
            return verdict::EXEMPT;
        }
    } else {
        let a = flow.dst;
        if let Some(e) = unsafe { ALLOW_V6.get(a) } {
            if unexpired(e.expires_ns, now) {
                return verdict::REGISTERED;
            }
        }
        let first = a[0] as u8;
        if cfg.internal_v6_first.has(first) && INTERNAL_V6.get(Key::new(128, a)).is_some() {
            return verdict::INTERNAL;
        }
        if cfg.exempt_v6_first.has(first) && EXEMPT_V6.get(Key::new(128, a)).is_some() {
            return verdict::EXEMPT;
        }
    }
    verdict::UNKNOWN
}

/// The program compares the expiry itself, so an expired entry counts as absent even before
/// userspace removes it. `now` is CLOCK_MONOTONIC_COARSE (`bpf_ktime_get_coarse_ns`, a read
/// of a kernel variable): it costs a fraction of the precise clocks, and a jiffy of
/// resolution is nothing next to TTLs of seconds.
#[inline(always)]
fn unexpired(expires_ns: u64, now: u64) -> bool {
    expires_ns == u64::MAX || now < expires_ns
}

/// GCRA rate limit per source: at most `burst` events at once, then one per
/// `event_interval_ns`. `now` is the coarse clock: a tick of resolution is nothing next to
/// intervals of many ms. Counters stay exact whatever this decides.
#[inline(always)]
fn allow_event(cfg: &Config, src: &[u32; 4], now: u64) -> bool {
    let interval = cfg.event_interval_ns;
    if interval == 0 {
        return true;
    }
    let tolerance = cfg.event_tolerance_ns;
    match RATE.get_ptr_mut(src) {
        Some(tat) => {
            // SAFETY: a value slot of the LRU map; a racing CPU can at worst let one extra event
            // through, which the limit tolerates.
            let t = unsafe { *tat };
            if now.saturating_add(tolerance) < t {
                return false;
            }
            unsafe { *tat = if t > now { t } else { now } + interval };
            true
        }
        None => {
            let _ = RATE.insert(src, now + interval, 0);
            true
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn report<C: Packet>(
    ctx: &C,
    cfg: &Config,
    flow: &Flow,
    transport: u8,
    sport: u16,
    dport: u16,
    dns_id: u16,
    q: &Question,
    name: &[u8; QNAME_MAX],
    act: u8,
    now: u64,
) {
    // The limit runs on the coarse clock the check already read; the precise boot clock (a
    // TSC read, the dearest step of a rate-limited query) is read only for an event sent.
    if !allow_event(cfg, &flow.src, now) {
        count(counter::EVENTS_RATE_LIMITED);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<QueryEvent>(0) else {
        count(counter::EVENTS_LOST);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer record of the right size.
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_boot_ns();
        (*ev).ifindex = ctx.ingress_ifindex();
        (*ev).family = flow.family;
        (*ev).transport = transport;
        (*ev).verdict = verdict::UNKNOWN;
        (*ev).action = act;
        (*ev).src_addr = core::mem::transmute::<[u32; 4], [u8; 16]>(flow.src);
        (*ev).dst_addr = core::mem::transmute::<[u32; 4], [u8; 16]>(flow.dst);
        (*ev).src_port = sport;
        (*ev).dst_port = dport;
        (*ev).dns_id = dns_id;
        (*ev).qtype = q.qtype;
        (*ev).qname_len = q.name_len;
        (*ev).flags = q.flags;
        (*ev)._pad = [0; 4];
        (*ev).qname = *name;
    }
    entry.submit(0);
    count(counter::EVENTS_SENT);
}

/// Copies the question name (wire format) into `buf` and reads the qtype after it.
#[inline(always)]
fn read_question<C: Packet>(ctx: &C, question: usize, buf: &mut [u8; QNAME_MAX]) -> Question {
    let truncated = Question {
        name_len: 0,
        qtype: 0,
        flags: event_flag::QNAME_TRUNCATED,
    };
    let avail = ctx.len().saturating_sub(question);
    let len = if avail > QNAME_MAX { QNAME_MAX } else { avail };
    if len == 0 {
        count(counter::QNAME_TRUNCATED);
        return truncated;
    }
    // `len` is in 1..=QNAME_MAX here; the mask restates that in a form the verifier can
    // track (LLVM turns the `len == 0` test above into a packet-pointer comparison).
    // black_box keeps LLVM from folding the mask away again.
    let len = ((core::hint::black_box(len) - 1) & (QNAME_MAX - 1)) + 1;
    // SAFETY: `len` is in 1..=QNAME_MAX, the size of `buf`.
    let rc = unsafe { ctx.load_bytes(question as u32, buf.as_mut_ptr().cast(), len as u32) };
    if rc != 0 {
        count(counter::QNAME_TRUNCATED);
        return truncated;
    }
    // Walk the labels (RFC 1035 §3.1): a length byte, then that many bytes; 0 ends the name.
    // A question name never needs compression (it is the first name of the message); a
    // pointer or an extended label type here means a malformed query.
    let mut off = 0usize;
    let mut end = 0usize;
    for _ in 0..MAX_LABELS {
        if off >= len {
            break;
        }
        let l = buf[off & (QNAME_MAX - 1)] as usize;
        if l == 0 {
            end = off + 1;
            break;
        }
        if l & 0xC0 != 0 {
            break;
        }
        off += l + 1;
    }
    if end == 0 {
        count(counter::QNAME_TRUNCATED);
        return Question {
            name_len: len as u16,
            ..truncated
        };
    }
    let mut qtype = [0u8; 2];
    // SAFETY: 2-byte stack buffer.
    let rc = unsafe { ctx.load_bytes((question + end) as u32, qtype.as_mut_ptr().cast(), 2) };
    if rc != 0 {
        count(counter::QNAME_TRUNCATED);
        return Question {
            name_len: end as u16,
            ..truncated
        };
    }
    Question {
        name_len: end as u16,
        qtype: u16::from_be_bytes(qtype),
        flags: event_flag::HAS_QUESTION,
    }
}
