//! Unknown-destination events from the XDP program, decoded into alerts.

use std::{net::IpAddr, os::fd::AsRawFd};

use aya::maps::{MapData, RingBuf};
use nsdb_common::{QueryEvent, action, event_flag, transport, verdict};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

use crate::{clock, loader};

/// One alert, as written to the alert log (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Alert {
    /// When the packet was seen (RFC 3339, UTC).
    pub timestamp: String,
    /// Interface it arrived on.
    pub iface: String,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    /// `udp` or `tcp`.
    pub proto: String,
    /// DNS message id (0 for a TCP SYN: no message yet).
    pub dns_id: u16,
    /// Query name in presentation format without the trailing dot ("" for a TCP SYN); a name
    /// the event could not carry whole ends in "…".
    pub qname: String,
    /// Query type mnemonic (`TXT`, `A`, `TYPE65399`); "" for a TCP SYN.
    pub qtype: String,
    /// `unknown` (the only verdict that raises an alert today).
    pub verdict: String,
    /// `pass` (monitor mode) or `drop` (enforce mode).
    pub action: String,
}

/// Decodes a raw ring-buffer record. `None` if it is not a whole `QueryEvent`.
pub fn decode(bytes: &[u8]) -> Option<Alert> {
    if bytes.len() < size_of::<QueryEvent>() {
        return None;
    }
    // SAFETY: the length was checked; QueryEvent is plain old data; read_unaligned copes with
    // any alignment of the ring buffer record.
    let ev: QueryEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Some(alert(&ev))
}

/// Turns an event into an alert.
pub fn alert(ev: &QueryEvent) -> Alert {
    let has_q = ev.flags & event_flag::HAS_QUESTION != 0;
    let truncated = ev.flags & event_flag::QNAME_TRUNCATED != 0;
    let qlen = usize::from(ev.qname_len).min(ev.qname.len());
    let qname = if ev.transport == transport::TCP {
        String::new()
    } else {
        let mut s = wire_name_to_text(&ev.qname[..qlen]);
        if truncated {
            s.push('…');
        }
        s
    };
    Alert {
        timestamp: clock::rfc3339(clock::boot_to_wall(ev.ts_ns)),
        iface: loader::ifname(ev.ifindex).unwrap_or_else(|| format!("if{}", ev.ifindex)),
        src_ip: loader::event_addr(ev.family, &ev.src_addr),
        src_port: ev.src_port,
        dst_ip: loader::event_addr(ev.family, &ev.dst_addr),
        dst_port: ev.dst_port,
        proto: transport::NAMES
            .get(usize::from(ev.transport))
            .unwrap_or(&"?")
            .to_string(),
        dns_id: ev.dns_id,
        qname,
        qtype: if has_q {
            qtype_name(ev.qtype)
        } else {
            String::new()
        },
        verdict: verdict::NAMES
            .get(usize::from(ev.verdict))
            .unwrap_or(&"?")
            .to_string(),
        action: action::NAMES
            .get(usize::from(ev.action))
            .unwrap_or(&"?")
            .to_string(),
    }
}

/// Presentation format of an uncompressed wire-format name (RFC 1035 §5.1 escaping:
/// `\.` inside labels, `\DDD` for non-printable bytes), without the trailing dot.
/// Decodes as many whole labels as `wire` holds.
pub fn wire_name_to_text(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < wire.len() {
        let len = usize::from(wire[i]);
        if len == 0 || len & 0xC0 != 0 {
            break;
        }
        let end = (i + 1 + len).min(wire.len());
        if !out.is_empty() {
            out.push('.');
        }
        for &b in &wire[i + 1..end] {
            match b {
                b'.' | b'\\' => {
                    out.push('\\');
                    out.push(b as char);
                }
                0x21..=0x7e => out.push(b as char),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        i = end;
    }
    if out.is_empty() { ".".to_string() } else { out }
}

/// Mnemonic of a query type (IANA DNS parameters), `TYPEnnn` (RFC 3597 §5) otherwise.
pub fn qtype_name(t: u16) -> String {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    s.to_string()
}

/// Reads a ring buffer of the program as records arrive.
pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl RingReader {
    pub fn new(ring: RingBuf<MapData>) -> std::io::Result<Self> {
        // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as long
        // as the AsyncFd owns the ring buffer.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Self { ring })
    }

    /// Waits until the program wakes readers of the ring buffer, and takes note (the next call
    /// waits for the next wake-up, whatever is left in the ring).
    pub async fn woken(&mut self) -> std::io::Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Hands whatever is in the ring buffer now to `f`, without waiting.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            f(&item);
        }
    }

    pub fn fd(&self) -> i32 {
        self.ring.get_ref().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decode_with_escapes() {
        assert_eq!(
            wire_name_to_text(b"\x03www\x07example\x03com\x00"),
            "www.example.com"
        );
        assert_eq!(wire_name_to_text(b"\x00"), ".");
        assert_eq!(wire_name_to_text(b"\x03a.b\x01\x07\x00"), "a\\.b.\\007");
        // Truncated: the last label is cut at the buffer end.
        assert_eq!(wire_name_to_text(b"\x03www\x07exa"), "www.exa");
    }

    #[test]
    fn qtypes_have_mnemonics() {
        assert_eq!(qtype_name(16), "TXT");
        assert_eq!(qtype_name(1), "A");
        assert_eq!(qtype_name(65399), "TYPE65399");
    }
}
