//! TCP stream reassembly for DNS over TCP: each message is preceded by a two-byte length
//! (RFC 1035 §4.2.2, RFC 7766 §8); messages may span segments and a segment may carry several.
//!
//! Per direction we keep the next expected sequence number, the in-order bytes not yet consumed,
//! and a bounded set of out-of-order segments. A hole that is never filled (a capture gap) is
//! skipped once the out-of-order data exceeds its bound or the stream ends; the partial message
//! before the hole is dropped and counted, and parsing resumes at the next segment.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// Most streams tracked at once; idle ones are evicted first.
pub const MAX_STREAMS: usize = 65_536;
/// Most out-of-order segments held per direction before the hole is given up on.
pub const MAX_OOO_SEGMENTS: usize = 64;
/// Most buffered bytes per direction (a DNS message is at most 65,535 + 2 bytes).
pub const MAX_BUFFER: usize = 2 * 65_537;
/// A stream idle this long (capture time) is dropped.
pub const IDLE_US: u64 = 120_000_000;

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct TcpStats {
    pub segments: u64,
    pub messages: u64,
    /// Holes skipped (bytes never captured).
    pub gaps: u64,
    /// Streams evicted because the table was full or idle.
    pub evicted: u64,
}

#[derive(Default)]
struct Dir {
    next: Option<u32>,
    buf: Vec<u8>,
    /// Consumed prefix of `buf`.
    start: usize,
    ooo: BTreeMap<u32, Vec<u8>>,
    last_us: u64,
}

pub struct Reassembler {
    streams: HashMap<(SocketAddr, SocketAddr), Dir>,
    pub stats: TcpStats,
    since_sweep: u32,
    /// Most streams, and most bytes the streams may hold together (buffers and out-of-order
    /// segments, by capacity); past the budget the biggest streams are dropped (counted in
    /// `evicted`).
    max_streams: usize,
    max_bytes: usize,
    /// Bytes the streams hold now.
    bytes: usize,
}

impl Default for Reassembler {
    /// The capture reader's limits: [`MAX_STREAMS`] streams, no byte budget beyond each
    /// stream's own bounds.
    fn default() -> Self {
        Self::with_limits(MAX_STREAMS, usize::MAX)
    }
}

/// Signed distance from `b` to `a` in sequence space (RFC 9293 §3.4 modular arithmetic).
fn seq_diff(a: u32, b: u32) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

impl Reassembler {
    /// A reassembler holding at most `max_streams` streams and `max_bytes` bytes in all. The
    /// daemon bounds both: the far end of a connection it reassembles may be any registered
    /// name server, which an attacker can own, and each stream may hold a partial message of
    /// up to 64 KiB plus out-of-order segments.
    pub fn with_limits(max_streams: usize, max_bytes: usize) -> Self {
        Self {
            streams: HashMap::new(),
            stats: TcpStats::default(),
            since_sweep: 0,
            max_streams: max_streams.max(1),
            max_bytes,
            bytes: 0,
        }
    }

    /// Bytes the streams hold now (buffers and out-of-order segments, by capacity).
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Streams tracked now.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    fn held(d: &Dir) -> usize {
        d.buf.capacity() + d.ooo.values().map(Vec::capacity).sum::<usize>()
    }

    /// Add one segment and call `emit` with every DNS message it completes.
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        ts_us: u64,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        syn: bool,
        fin_or_rst: bool,
        payload: &[u8],
        emit: &mut dyn FnMut(&[u8]),
    ) {
        self.stats.segments += 1;
        self.since_sweep += 1;
        if self.since_sweep >= 4096 {
            self.since_sweep = 0;
            self.sweep(ts_us);
        }
        let key = (src, dst);
        if !self.streams.contains_key(&key) {
            if payload.is_empty() && !syn {
                return;
            }
            if self.streams.len() >= self.max_streams {
                self.sweep(ts_us);
                let oldest = self
                    .streams
                    .iter()
                    .min_by_key(|(_, d)| d.last_us)
                    .map(|(k, _)| *k);
                if let (true, Some(k)) = (self.streams.len() >= self.max_streams, oldest) {
                    self.remove(&k);
                    self.stats.evicted += 1;
                }
            }
        }
        let d = self.streams.entry(key).or_default();
        let held_before = Self::held(d);
        d.last_us = ts_us;
        if syn {
            // A new connection on this 4-tuple: the SYN occupies one sequence number.
            *d = Dir {
                next: Some(seq.wrapping_add(1)),
                last_us: ts_us,
                ..Dir::default()
            };
        } else if !payload.is_empty() {
            let next = *d.next.get_or_insert(seq);
            let rel = seq_diff(seq, next);
            if rel <= 0 {
                let skip = (-rel) as usize;
                if skip < payload.len() {
                    d.buf.extend_from_slice(&payload[skip..]);
                    d.next = Some(seq.wrapping_add(payload.len() as u32));
                }
            } else if rel < MAX_BUFFER as i64 {
                d.ooo.entry(seq).or_insert_with(|| payload.to_vec());
            }
            // Pull in out-of-order segments that have become contiguous.
            Self::drain_ooo(d);
            if d.ooo.len() > MAX_OOO_SEGMENTS || d.buf.len() - d.start > MAX_BUFFER {
                Self::skip_hole(d, &mut self.stats);
            }
        }
        self.stats.messages += Self::extract(d, emit);
        if fin_or_rst && !d.ooo.is_empty() {
            Self::skip_hole(d, &mut self.stats);
            self.stats.messages += Self::extract(d, emit);
        }
        self.bytes = (self.bytes + Self::held(d)).saturating_sub(held_before);
        if fin_or_rst {
            self.remove(&key);
        }
        while self.bytes > self.max_bytes {
            let Some(k) = self
                .streams
                .iter()
                .max_by_key(|(_, d)| Self::held(d))
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.remove(&k);
            self.stats.evicted += 1;
        }
    }

    /// The segment just given to [`Self::segment`] was only the beginning of one: its bytes
    /// up to `seq_end` never came. If that segment extended the stream in order, the message
    /// it left unfinished is dropped and the stream resumes at `seq_end` (one gap counted
    /// here), so that the segments after it are read at once instead of waiting as out of
    /// order for a hole that will never fill. Otherwise (it came out of order, or ended the
    /// stream) nothing changes, and the hole is skipped and counted when the stream gives up
    /// on it.
    pub fn cut(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        seq_end: u32,
        copied_end: u32,
        emit: &mut dyn FnMut(&[u8]),
    ) {
        let key = (src, dst);
        let Some(d) = self.streams.get_mut(&key) else {
            return;
        };
        if d.next != Some(copied_end) || seq_diff(seq_end, copied_end) <= 0 {
            return;
        }
        let held_before = Self::held(d);
        Self::resume_at(d, &mut self.stats, Some(seq_end));
        self.stats.messages += Self::extract(d, emit);
        self.bytes = (self.bytes + Self::held(d)).saturating_sub(held_before);
    }

    fn remove(&mut self, key: &(SocketAddr, SocketAddr)) {
        if let Some(d) = self.streams.remove(key) {
            self.bytes = self.bytes.saturating_sub(Self::held(&d));
        }
    }

    fn drain_ooo(d: &mut Dir) {
        // Bounded by the number of held segments.
        while let Some(next) = d.next {
            let Some((&s, _)) = d.ooo.iter().find(|(s, _)| seq_diff(**s, next) <= 0) else {
                break;
            };
            let seg = d.ooo.remove(&s).unwrap_or_default();
            let skip = seq_diff(next, s) as usize;
            if skip < seg.len() {
                d.buf.extend_from_slice(&seg[skip..]);
                d.next = Some(s.wrapping_add(seg.len() as u32));
            }
        }
    }

    /// Give up on the hole before the first out-of-order segment: drop the partial message and
    /// resume at that segment, assuming it starts a message.
    fn skip_hole(d: &mut Dir, stats: &mut TcpStats) {
        let next = d.next.unwrap_or(0);
        let first = d
            .ooo
            .keys()
            .copied()
            .min_by_key(|s| seq_diff(*s, next) as u64);
        Self::resume_at(d, stats, first);
    }

    /// A hole: the partial message in the buffer is dropped (one gap), and the stream goes on
    /// at `next`, with whatever held segments are contiguous from there.
    fn resume_at(d: &mut Dir, stats: &mut TcpStats, next: Option<u32>) {
        stats.gaps += 1;
        d.buf.clear();
        d.start = 0;
        d.next = next;
        Self::drain_ooo(d);
    }

    /// Emit the complete length-prefixed messages in the buffer; returns how many.
    fn extract(d: &mut Dir, emit: &mut dyn FnMut(&[u8])) -> u64 {
        let mut n = 0;
        // Bounded: each iteration consumes at least 2 bytes.
        loop {
            let avail = &d.buf[d.start..];
            if avail.len() < 2 {
                break;
            }
            let len = u16::from_be_bytes([avail[0], avail[1]]) as usize;
            if avail.len() < 2 + len {
                break;
            }
            if len > 0 {
                emit(&avail[2..2 + len]);
                n += 1;
            }
            d.start += 2 + len;
        }
        if d.start == d.buf.len() {
            d.buf.clear();
            d.start = 0;
        } else if d.start > 65_536 {
            d.buf.drain(..d.start);
            d.start = 0;
        }
        n
    }

    /// Drop streams idle for longer than [`IDLE_US`].
    pub fn sweep(&mut self, now_us: u64) {
        let before = self.streams.len();
        let mut freed = 0;
        self.streams.retain(|_, d| {
            let keep = now_us.saturating_sub(d.last_us) < IDLE_US;
            if !keep {
                freed += Self::held(d);
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        self.stats.evicted += (before - self.streams.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for m in msgs {
            v.extend_from_slice(&(m.len() as u16).to_be_bytes());
            v.extend_from_slice(m);
        }
        v
    }

    fn run(segs: &[(u32, bool, bool, Vec<u8>)]) -> (Vec<Vec<u8>>, TcpStats) {
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        for (seq, syn, fin, p) in segs {
            r.segment(
                0,
                a("192.0.2.1:5000"),
                a("192.0.2.53:53"),
                *seq,
                *syn,
                *fin,
                p,
                &mut |m| out.push(m.to_vec()),
            );
        }
        (out, r.stats)
    }

    #[test]
    fn messages_across_segments_and_several_per_segment() {
        let s = framed(&[b"first-message", b"second", b"third-msg"]);
        // SYN at 99, data from 100, split at odd places, one segment out of order.
        let (p1, rest) = s.split_at(5);
        let (p2, p3) = rest.split_at(17);
        let (out, st) = run(&[
            (99, true, false, vec![]),
            (100, false, false, p1.to_vec()),
            (100 + 5 + 17, false, false, p3.to_vec()),
            (105, false, false, p2.to_vec()),
        ]);
        assert_eq!(
            out,
            vec![
                b"first-message".to_vec(),
                b"second".to_vec(),
                b"third-msg".to_vec()
            ]
        );
        assert_eq!(st.messages, 3);
        assert_eq!(st.gaps, 0);
    }

    #[test]
    fn retransmissions_are_not_duplicated_and_seq_wraps() {
        let s = framed(&[b"abcdef"]);
        let start = u32::MAX - 2;
        let (out, _) = run(&[
            (start, false, false, s[..4].to_vec()),
            (start, false, false, s[..4].to_vec()),
            (start.wrapping_add(2), false, false, s[2..].to_vec()),
        ]);
        assert_eq!(out, vec![b"abcdef".to_vec()]);
    }

    #[test]
    fn the_byte_budget_drops_the_biggest_streams() {
        let mut r = Reassembler::with_limits(8, 16 * 1024);
        let mut out = Vec::new();
        // Four streams, each announcing a 60,000-byte message and sending 6,000 bytes of it.
        for port in 0..4u16 {
            let src: SocketAddr = format!("192.0.2.1:{}", 5000 + port).parse().unwrap();
            let mut p = 60_000u16.to_be_bytes().to_vec();
            p.extend_from_slice(&[0; 6000]);
            r.segment(0, src, a("192.0.2.53:53"), 1, false, false, &p, &mut |m| {
                out.push(m.to_vec())
            });
            assert!(r.held_bytes() <= 16 * 1024, "{}", r.held_bytes());
        }
        assert!(r.streams() < 4 && r.stats.evicted >= 1, "{:?}", r.stats);
        // A stream that completes its messages holds little and is kept.
        let m = framed(&[b"small"]);
        r.segment(
            0,
            a("192.0.2.2:9"),
            a("192.0.2.53:53"),
            1,
            false,
            false,
            &m,
            &mut |m| out.push(m.to_vec()),
        );
        assert_eq!(out, vec![b"small".to_vec()]);
        // FIN releases what a stream held.
        let mut r = Reassembler::with_limits(8, usize::MAX);
        let mut p = 60_000u16.to_be_bytes().to_vec();
        p.extend_from_slice(&[0; 6000]);
        let (c, srv) = (a("192.0.2.1:5000"), a("192.0.2.53:53"));
        r.segment(0, c, srv, 1, false, false, &p, &mut |_| {});
        assert!(r.held_bytes() >= 6000);
        r.segment(1, c, srv, 6003, false, true, &[], &mut |_| {});
        assert_eq!((r.held_bytes(), r.streams()), (0, 0));
        // Stream-count bound.
        let mut r = Reassembler::with_limits(2, usize::MAX);
        for port in 0..5u16 {
            let src: SocketAddr = format!("192.0.2.1:{}", 6000 + port).parse().unwrap();
            r.segment(
                u64::from(port),
                src,
                a("192.0.2.53:53"),
                1,
                false,
                false,
                &[0, 9, 1],
                &mut |_| {},
            );
            assert!(r.streams() <= 2);
        }
        assert_eq!(r.stats.evicted, 3);
    }

    #[test]
    fn a_hole_is_skipped_at_fin() {
        let m1 = framed(&[b"lost-one"]);
        let m2 = framed(&[b"kept"]);
        let (out, st) = run(&[
            (1, false, false, m1[..3].to_vec()),
            // bytes 4..(4+rest of m1) never captured
            (1 + m1.len() as u32, false, true, m2.clone()),
        ]);
        assert_eq!(out, vec![b"kept".to_vec()]);
        assert_eq!(st.gaps, 1);
    }

    #[test]
    fn a_cut_segment_is_one_gap_and_the_stream_goes_on_at_once() {
        let (c, srv) = (a("192.0.2.1:5000"), a("192.0.2.53:53"));
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        // Segment 1 (seq 1): message A whole, then the start of B. It was 50 bytes on the
        // wire, of which the copy kept the first `cp.len()`.
        let mut seg = framed(&[b"AAAA"]);
        let b = framed(&[&[b'b'; 40]]);
        seg.extend_from_slice(&b[..10]);
        let (cp, wire_len) = (seg.clone(), seg.len() as u32 + 32);
        r.segment(0, srv, c, 1, false, false, &cp, &mut |m| {
            out.push(m.to_vec())
        });
        r.cut(srv, c, 1 + wire_len, 1 + cp.len() as u32, &mut |m| {
            out.push(m.to_vec())
        });
        assert_eq!(out, vec![b"AAAA".to_vec()]);
        assert_eq!(r.stats.gaps, 1);
        // The next segment starts message C right after the lost bytes: read at once.
        r.segment(
            1,
            srv,
            c,
            1 + wire_len,
            false,
            false,
            &framed(&[b"CC"]),
            &mut |m| out.push(m.to_vec()),
        );
        assert_eq!(out, vec![b"AAAA".to_vec(), b"CC".to_vec()]);
        // The connection's end finds no other hole: the gap is counted once.
        r.segment(2, srv, c, 1 + wire_len + 4, false, true, &[], &mut |_| {});
        assert_eq!((r.stats.gaps, r.stats.messages), (1, 2));

        // A cut segment that came out of order changes nothing: the hole before it is
        // skipped (and counted once) when the stream gives up on it, at FIN here.
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        r.segment(0, srv, c, 1, false, false, &framed(&[b"first"]), &mut |m| {
            out.push(m.to_vec())
        });
        let m = framed(&[b"later"]);
        r.segment(1, srv, c, 500, false, false, &m, &mut |m| {
            out.push(m.to_vec())
        });
        r.cut(
            srv,
            c,
            500 + m.len() as u32 + 100,
            500 + m.len() as u32,
            &mut |m| out.push(m.to_vec()),
        );
        assert_eq!((out.len(), r.stats.gaps), (1, 0));
        r.segment(2, srv, c, 9999, false, true, &[], &mut |m| {
            out.push(m.to_vec())
        });
        assert_eq!(out, vec![b"first".to_vec(), b"later".to_vec()]);
        assert_eq!(r.stats.gaps, 1);
    }
}
