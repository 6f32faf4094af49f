//! A lean pcap and pcapng reader over a byte slice (normally a memory map).
//!
//! pcap: <https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html> (µs and ns magic, either
//! byte order). pcapng: <https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html>
//! (SHB, IDB with `if_tsresol`, EPB, SPB, the obsolete Packet Block; other blocks are skipped).
//! Every length read from the file is checked before use; a bad block stops the file with an
//! error naming the byte offset, after the frames read before it have been delivered.

use super::CaptureError;

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// LINKTYPE_* value of the interface the frame came from.
    pub linktype: u32,
    pub data: &'a [u8],
}

enum Kind {
    Pcap {
        be: bool,
        nanos: bool,
        linktype: u32,
    },
    Pcapng {
        be: bool,
        ifaces: Vec<Iface>,
    },
}

#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
}

/// Iterates the frames of a pcap or pcapng file held in memory.
pub struct Reader<'a> {
    buf: &'a [u8],
    off: usize,
    kind: Kind,
}

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
/// Largest block or frame accepted; real captures stay far below (snaplen ≤ 256 KiB).
const MAX_BLOCK: usize = 16 << 20;

#[inline(always)]
fn rd32(b: &[u8], off: usize, be: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(if be {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}
#[inline(always)]
fn rd16(b: &[u8], off: usize, be: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(off..off + 2)?.try_into().ok()?;
    Some(if be {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

impl<'a> Reader<'a> {
    /// Recognise the file format from its first bytes.
    pub fn new(buf: &'a [u8]) -> Result<Reader<'a>, CaptureError> {
        if buf.is_empty() {
            return Err(CaptureError::Empty);
        }
        let magic_le = rd32(buf, 0, false).ok_or(CaptureError::NotCapture)?;
        let magic_be = rd32(buf, 0, true).ok_or(CaptureError::NotCapture)?;
        if magic_le == PCAPNG_SHB {
            let bom = rd32(buf, 8, false).ok_or(CaptureError::Truncated(0))?;
            let be = match bom {
                PCAPNG_BOM => false,
                x if x.swap_bytes() == PCAPNG_BOM => true,
                _ => return Err(CaptureError::Format(8, "bad pcapng byte-order magic")),
            };
            return Ok(Reader {
                buf,
                off: 0,
                kind: Kind::Pcapng {
                    be,
                    ifaces: Vec::new(),
                },
            });
        }
        let (be, nanos) = match (magic_le, magic_be) {
            (PCAP_MAGIC_US, _) => (false, false),
            (PCAP_MAGIC_NS, _) => (false, true),
            (_, PCAP_MAGIC_US) => (true, false),
            (_, PCAP_MAGIC_NS) => (true, true),
            _ => return Err(CaptureError::NotCapture),
        };
        if buf.len() < 24 {
            return Err(CaptureError::Truncated(0));
        }
        // The link type is the low 16 bits of the last header word (the upper bits may carry
        // an FCS length).
        let linktype = rd32(buf, 20, be).ok_or(CaptureError::Truncated(20))? & 0xffff;
        Ok(Reader {
            buf,
            off: 24,
            kind: Kind::Pcap {
                be,
                nanos,
                linktype,
            },
        })
    }

    /// Bytes consumed so far (for progress reporting).
    pub fn offset(&self) -> usize {
        self.off
    }

    /// The next frame, `Ok(None)` at a clean end of file.
    #[inline(always)]
    pub fn next_frame(&mut self) -> Result<Option<Frame<'a>>, CaptureError> {
        // The pcap record reader is compiled once per byte order and time unit.
        match self.kind {
            Kind::Pcap {
                be: false,
                nanos: false,
                linktype,
            } => self.next_pcap::<false, false>(linktype),
            Kind::Pcap {
                be: false,
                nanos: true,
                linktype,
            } => self.next_pcap::<false, true>(linktype),
            Kind::Pcap {
                be: true,
                nanos: false,
                linktype,
            } => self.next_pcap::<true, false>(linktype),
            Kind::Pcap {
                be: true,
                nanos: true,
                linktype,
            } => self.next_pcap::<true, true>(linktype),
            Kind::Pcapng { .. } => self.next_pcapng(),
        }
    }

    /// Call `f` with each frame and the offset just past it, in file order, until `f`
    /// returns false or the file ends: the frames [`Self::next_frame`] would give one by one,
    /// with the file format dispatched once instead of per frame. A damaged record stops the
    /// file with its error, after the frames before it were passed to `f`.
    #[inline]
    pub fn for_each_frame(
        &mut self,
        mut f: impl FnMut(&Frame<'a>, usize) -> bool,
    ) -> Result<(), CaptureError> {
        match self.kind {
            Kind::Pcap {
                be: false,
                nanos: false,
                linktype,
            } => self.each_pcap::<false, false>(linktype, &mut f),
            Kind::Pcap {
                be: false,
                nanos: true,
                linktype,
            } => self.each_pcap::<false, true>(linktype, &mut f),
            Kind::Pcap {
                be: true,
                nanos: false,
                linktype,
            } => self.each_pcap::<true, false>(linktype, &mut f),
            Kind::Pcap {
                be: true,
                nanos: true,
                linktype,
            } => self.each_pcap::<true, true>(linktype, &mut f),
            Kind::Pcapng { .. } => {
                while let Some(fr) = self.next_pcapng()? {
                    if !f(&fr, self.off) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    #[inline(always)]
    fn each_pcap<const BE: bool, const NANOS: bool>(
        &mut self,
        linktype: u32,
        f: &mut impl FnMut(&Frame<'a>, usize) -> bool,
    ) -> Result<(), CaptureError> {
        while let Some(fr) = self.next_pcap::<BE, NANOS>(linktype)? {
            if !f(&fr, self.off) {
                break;
            }
        }
        Ok(())
    }

    /// A pcap record: 16-byte header (seconds, fraction, captured length, original length),
    /// then the frame. `BE`: big-endian file; `NANOS`: nanosecond timestamps.
    #[inline(always)]
    fn next_pcap<const BE: bool, const NANOS: bool>(
        &mut self,
        linktype: u32,
    ) -> Result<Option<Frame<'a>>, CaptureError> {
        let off = self.off;
        let rest = self.buf.get(off..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let Some((hdr, rest)) = rest.split_first_chunk::<16>() else {
            return Err(CaptureError::Truncated(off));
        };
        let word = |i: usize| {
            let b = [hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]];
            if BE {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (sec, frac, incl) = (word(0) as u64, word(4) as u64, word(8) as usize);
        if incl > MAX_BLOCK {
            return Err(CaptureError::Format(off, "frame length over 16 MiB"));
        }
        let Some(data) = rest.get(..incl) else {
            return Err(CaptureError::Truncated(off));
        };
        self.off = off + 16 + incl;
        let ts_us = sec * 1_000_000 + if NANOS { frac / 1000 } else { frac };
        Ok(Some(Frame {
            ts_us,
            linktype,
            data,
        }))
    }

    #[inline(never)]
    fn next_pcapng(&mut self) -> Result<Option<Frame<'a>>, CaptureError> {
        // Bounded: each block is at least 12 bytes long, checked below.
        loop {
            let off = self.off;
            if off == self.buf.len() {
                return Ok(None);
            }
            let Kind::Pcapng { be, ifaces } = &mut self.kind else {
                unreachable!("next_pcapng on a pcap file")
            };
            let btype = rd32(self.buf, off, false).ok_or(CaptureError::Truncated(off))?;
            if btype == PCAPNG_SHB {
                // A new section may switch byte order; interfaces restart.
                let bom = rd32(self.buf, off + 8, false).ok_or(CaptureError::Truncated(off))?;
                *be = match bom {
                    PCAPNG_BOM => false,
                    x if x.swap_bytes() == PCAPNG_BOM => true,
                    _ => return Err(CaptureError::Format(off, "bad pcapng byte-order magic")),
                };
                ifaces.clear();
            }
            let be = *be;
            let btype = rd32(self.buf, off, be).ok_or(CaptureError::Truncated(off))?;
            let blen = rd32(self.buf, off + 4, be).ok_or(CaptureError::Truncated(off))? as usize;
            if blen < 12 || !blen.is_multiple_of(4) || blen > MAX_BLOCK {
                return Err(CaptureError::Format(off, "bad pcapng block length"));
            }
            let block = self
                .buf
                .get(off..off + blen)
                .ok_or(CaptureError::Truncated(off))?;
            self.off = off + blen;
            let body = &block[8..blen - 4];
            match btype {
                // Interface Description Block.
                1 => {
                    let linktype = rd16(body, 0, be).ok_or(CaptureError::Truncated(off))? as u32;
                    let mut units = 1_000_000u64;
                    // Options: code(2) len(2) value padded to 4. Bounded by the body length.
                    let mut o = 8;
                    while let (Some(code), Some(len)) = (rd16(body, o, be), rd16(body, o + 2, be)) {
                        if code == 0 {
                            break;
                        }
                        let len = len as usize;
                        if let (9, 1.., Some(&r)) = (code, len, body.get(o + 4)) {
                            // if_tsresol: MSB clear = 10^-n, set = 2^-n. Clamp to 10^-9.
                            units = if r & 0x80 == 0 {
                                10u64.pow((r as u32).min(9))
                            } else {
                                1u64 << (r & 0x7f).min(30)
                            };
                        }
                        o += 4 + len.div_ceil(4) * 4;
                    }
                    let Kind::Pcapng { ifaces, .. } = &mut self.kind else {
                        unreachable!()
                    };
                    ifaces.push(Iface {
                        linktype,
                        units_per_sec: units,
                    });
                }
                // Enhanced Packet Block, obsolete Packet Block (same layout but a 16-bit iface).
                6 | 2 => {
                    let iface_id = if btype == 6 {
                        rd32(body, 0, be).ok_or(CaptureError::Truncated(off))? as usize
                    } else {
                        rd16(body, 0, be).ok_or(CaptureError::Truncated(off))? as usize
                    };
                    let hi = rd32(body, 4, be).ok_or(CaptureError::Truncated(off))? as u64;
                    let lo = rd32(body, 8, be).ok_or(CaptureError::Truncated(off))? as u64;
                    let caplen = rd32(body, 12, be).ok_or(CaptureError::Truncated(off))? as usize;
                    let data = body
                        .get(20..20 + caplen)
                        .ok_or(CaptureError::Format(off, "packet longer than its block"))?;
                    let Kind::Pcapng { ifaces, .. } = &self.kind else {
                        unreachable!()
                    };
                    let iface = ifaces.get(iface_id).copied().ok_or(CaptureError::Format(
                        off,
                        "packet names an undefined interface",
                    ))?;
                    let ts = (hi << 32) | lo;
                    // Microseconds (the default resolution) need no 128-bit division.
                    let ts_us = if iface.units_per_sec == 1_000_000 {
                        ts
                    } else {
                        (ts as u128 * 1_000_000 / iface.units_per_sec as u128) as u64
                    };
                    return Ok(Some(Frame {
                        ts_us,
                        linktype: iface.linktype,
                        data,
                    }));
                }
                // Simple Packet Block: interface 0, no timestamp.
                3 => {
                    let orig = rd32(body, 0, be).ok_or(CaptureError::Truncated(off))? as usize;
                    let data = &body[4..];
                    let data = &data[..orig.min(data.len())];
                    let Kind::Pcapng { ifaces, .. } = &self.kind else {
                        unreachable!()
                    };
                    let iface = ifaces.first().copied().ok_or(CaptureError::Format(
                        off,
                        "packet names an undefined interface",
                    ))?;
                    return Ok(Some(Frame {
                        ts_us: 0,
                        linktype: iface.linktype,
                        data,
                    }));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_both_byte_orders_and_nanos() {
        for (magic, be) in [
            (PCAP_MAGIC_US, false),
            (PCAP_MAGIC_NS, true),
            (PCAP_MAGIC_US, true),
            (PCAP_MAGIC_NS, false),
        ] {
            let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
            let mut f = Vec::new();
            f.extend_from_slice(&w32(magic));
            f.extend_from_slice(&[0; 12]);
            f.extend_from_slice(&w32(65535));
            f.extend_from_slice(&w32(101));
            f.extend_from_slice(&w32(10));
            f.extend_from_slice(&w32(5000));
            f.extend_from_slice(&w32(3));
            f.extend_from_slice(&w32(3));
            f.extend_from_slice(b"abc");
            let mut r = Reader::new(&f).unwrap();
            let fr = r.next_frame().unwrap().unwrap();
            assert_eq!(fr.data, b"abc");
            assert_eq!(fr.linktype, 101);
            let expect = if magic == PCAP_MAGIC_NS {
                10_000_005
            } else {
                10_005_000
            };
            assert_eq!(fr.ts_us, expect);
            assert!(r.next_frame().unwrap().is_none());
            // Truncated record header: an error with the offset, never a panic.
            let mut r = Reader::new(&f[..30]).unwrap();
            assert_eq!(r.next_frame().unwrap_err(), CaptureError::Truncated(24));
        }
    }

    /// Frames (time, link type, bytes, offset after) and the error that stopped them.
    type Read = (Vec<(u64, u32, Vec<u8>, usize)>, Option<CaptureError>);

    /// All frames through `next_frame`, then the error (if any).
    fn by_next(buf: &[u8]) -> Read {
        let mut r = Reader::new(buf).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next_frame() {
                Ok(Some(f)) => out.push((f.ts_us, f.linktype, f.data.to_vec(), r.offset())),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn by_each(buf: &[u8], stop_after: usize) -> Read {
        let mut r = Reader::new(buf).unwrap();
        let mut out = Vec::new();
        let res = r.for_each_frame(|f, off| {
            out.push((f.ts_us, f.linktype, f.data.to_vec(), off));
            out.len() < stop_after
        });
        (out, res.err())
    }

    #[test]
    fn for_each_frame_gives_what_next_frame_gives() {
        let mut files = Vec::new();
        for (magic, be) in [
            (PCAP_MAGIC_US, false),
            (PCAP_MAGIC_NS, true),
            (PCAP_MAGIC_US, true),
            (PCAP_MAGIC_NS, false),
        ] {
            let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
            let mut f = Vec::new();
            for v in [magic, 0, 0, 0, 65535, 1] {
                f.extend_from_slice(&w32(v));
            }
            for (i, len) in [5u32, 0, 17].into_iter().enumerate() {
                for v in [1_700_000_000 + i as u32, 999 * i as u32, len, len + 3] {
                    f.extend_from_slice(&w32(v));
                }
                f.extend((0..len).map(|b| b as u8 ^ i as u8));
            }
            files.push(f.clone());
            // Cut inside the last record header, and inside the last frame.
            files.push(f[..f.len() - 17 - 9].to_vec());
            files.push(f[..f.len() - 4].to_vec());
        }
        // pcapng: section header, interface (Ethernet, µs), two enhanced packet blocks.
        let mut ng = Vec::new();
        let block = |ng: &mut Vec<u8>, btype: u32, body: &[u8]| {
            let len = (12 + body.len().div_ceil(4) * 4) as u32;
            ng.extend_from_slice(&btype.to_le_bytes());
            ng.extend_from_slice(&len.to_le_bytes());
            ng.extend_from_slice(body);
            ng.resize(ng.len() + (4 - body.len() % 4) % 4, 0);
            ng.extend_from_slice(&len.to_le_bytes());
        };
        let mut shb = PCAPNG_BOM.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        block(&mut ng, PCAPNG_SHB, &shb);
        block(&mut ng, 1, &[1, 0, 0, 0, 0xff, 0xff, 0, 0]);
        for (i, data) in [&b"abcde"[..], b"0123456789"].into_iter().enumerate() {
            let mut epb = Vec::new();
            for v in [
                0u32,
                0,
                1_000 + i as u32,
                data.len() as u32,
                data.len() as u32,
            ] {
                epb.extend_from_slice(&v.to_le_bytes());
            }
            epb.extend_from_slice(data);
            block(&mut ng, 6, &epb);
        }
        files.push(ng.clone());
        files.push(ng[..ng.len() - 6].to_vec());
        let damaged = files.iter().filter(|f| by_next(f).1.is_some()).count();
        assert_eq!(damaged, 9);
        for f in &files {
            let (frames, err) = by_next(f);
            assert!(!frames.is_empty());
            assert_eq!(by_each(f, usize::MAX), (frames.clone(), err));
            // Stopped early by the callback: no error, the frames so far.
            assert_eq!(by_each(f, 1), (frames[..1].to_vec(), None));
        }
    }

    #[test]
    fn not_a_capture() {
        assert_eq!(Reader::new(b"").err(), Some(CaptureError::Empty));
        assert_eq!(
            Reader::new(b"hello world").err(),
            Some(CaptureError::NotCapture)
        );
    }
}
