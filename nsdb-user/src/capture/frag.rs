//! IPv4 (RFC 791 §3.2) and IPv6 (RFC 8200 §4.5) fragment reassembly, bounded in memory and time.

use std::collections::HashMap;
use std::net::IpAddr;

/// Largest reassembled datagram (the IP length fields allow no more).
pub const MAX_DATAGRAM: usize = 65_535;
/// Most datagrams being reassembled at once; the oldest is dropped beyond this.
pub const MAX_PENDING: usize = 4096;
/// Most fragments kept per datagram (a 64 KiB datagram in 8-byte pieces would be 8192;
/// real ones have 2–50). Beyond this the datagram is dropped and counted.
pub const MAX_FRAGS: usize = 256;
/// Fragments older than this (capture time) are dropped; RFC 8200 §4.5 uses 60 s.
pub const TIMEOUT_US: u64 = 60_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub id: u32,
}

struct Pending {
    first_ts: u64,
    /// (offset, bytes) in arrival order.
    parts: Vec<(usize, Vec<u8>)>,
    /// Total length, known once the last fragment (MF=0) arrived.
    total: Option<usize>,
}

/// Counters kept by the reassembler.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct FragStats {
    pub fragments: u64,
    pub reassembled: u64,
    pub dropped: u64,
    /// Incomplete datagrams whose first bytes were passed on anyway.
    pub partial: u64,
}

#[derive(Default)]
pub struct Reassembler {
    pending: HashMap<FragKey, Pending>,
    pub stats: FragStats,
    /// Reused output buffer.
    out: Vec<u8>,
}

impl Reassembler {
    /// Add one fragment (`offset` in bytes, `more` = MF flag). Returns the whole payload when the
    /// datagram is complete.
    pub fn add(
        &mut self,
        ts_us: u64,
        key: FragKey,
        offset: usize,
        more: bool,
        data: &[u8],
    ) -> Option<&[u8]> {
        self.stats.fragments += 1;
        // A non-final fragment whose length is not a multiple of 8 was cut by the snaplen; it is
        // kept (it can only ever give a partial datagram, see `expire_with`).
        if offset + data.len() > MAX_DATAGRAM {
            self.stats.dropped += 1;
            return None;
        }
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&key) {
            self.expire(ts_us);
            if self.pending.len() >= MAX_PENDING {
                // Still full: drop the oldest.
                if let Some(k) = self
                    .pending
                    .iter()
                    .min_by_key(|(_, p)| p.first_ts)
                    .map(|(k, _)| *k)
                {
                    self.pending.remove(&k);
                    self.stats.dropped += 1;
                }
            }
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            first_ts: ts_us,
            parts: Vec::new(),
            total: None,
        });
        if p.parts.len() >= MAX_FRAGS {
            self.pending.remove(&key);
            self.stats.dropped += 1;
            return None;
        }
        if !more {
            p.total = Some(offset + data.len());
        }
        p.parts.push((offset, data.to_vec()));
        let total = p.total?;
        // Complete when the parts cover [0, total) without holes. Overlaps: later data wins
        // (RFC 5722 forbids overlapping IPv6 fragments; a capture may still have them).
        let mut spans: Vec<(usize, usize)> =
            p.parts.iter().map(|(o, d)| (*o, *o + d.len())).collect();
        spans.sort_unstable();
        let mut covered = 0;
        for (s, e) in spans {
            if s > covered {
                return None;
            }
            covered = covered.max(e);
        }
        if covered < total {
            return None;
        }
        let p = self.pending.remove(&key)?;
        self.out.clear();
        self.out.resize(total, 0);
        for (o, d) in &p.parts {
            let end = (*o + d.len()).min(total);
            if *o < end {
                self.out[*o..end].copy_from_slice(&d[..end - *o]);
            }
        }
        self.stats.reassembled += 1;
        Some(&self.out)
    }

    /// Drop datagrams whose first fragment is older than [`TIMEOUT_US`].
    pub fn expire(&mut self, now_us: u64) {
        self.expire_with(now_us, &mut |_, _, _| {});
    }

    /// Like [`Reassembler::expire`], but hand the contiguous prefix of each dropped datagram
    /// that has its first fragment to `f` (timestamp, key, bytes): a capture with a short
    /// snaplen or lost later fragments still shows the start of the message, as tshark does.
    pub fn expire_with(&mut self, now_us: u64, f: &mut dyn FnMut(u64, FragKey, &[u8])) {
        let old: Vec<FragKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now_us.saturating_sub(p.first_ts) >= TIMEOUT_US)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            let Some(mut p) = self.pending.remove(&k) else {
                continue;
            };
            self.stats.dropped += 1;
            p.parts.sort_by_key(|(o, _)| *o);
            let mut prefix: Vec<u8> = Vec::new();
            for (o, d) in &p.parts {
                if *o > prefix.len() {
                    break;
                }
                let skip = prefix.len() - *o;
                if skip < d.len() {
                    prefix.extend_from_slice(&d[skip..]);
                }
            }
            if !prefix.is_empty() {
                self.stats.partial += 1;
                f(p.first_ts, k, &prefix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FragKey {
        FragKey {
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            proto: 17,
            id: 7,
        }
    }

    #[test]
    fn out_of_order_fragments_reassemble() {
        let mut r = Reassembler::default();
        let a = vec![1u8; 16];
        let b = vec![2u8; 5];
        assert!(r.add(0, key(), 16, false, &b).is_none());
        let out = r.add(1, key(), 0, true, &a).unwrap().to_vec();
        assert_eq!(out.len(), 21);
        assert_eq!(&out[..16], &a[..]);
        assert_eq!(&out[16..], &b[..]);
        assert_eq!(r.stats.reassembled, 1);
    }

    #[test]
    fn holes_never_complete_and_expire() {
        let mut r = Reassembler::default();
        assert!(r.add(0, key(), 0, true, &[0; 8]).is_none());
        assert!(r.add(0, key(), 16, false, &[0; 8]).is_none());
        r.expire(TIMEOUT_US + 1);
        assert_eq!(r.stats.dropped, 1);
        assert!(r.pending.is_empty());
    }

    #[test]
    fn oversize_is_dropped() {
        let mut r = Reassembler::default();
        assert!(r.add(0, key(), 65_528, false, &[0; 16]).is_none());
        assert_eq!(r.stats.dropped, 1);
    }
}
