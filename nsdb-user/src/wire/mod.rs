//! A zero-copy, zero-allocation, bounded DNS wire-format parser (RFC 1035 §4.1).
//!
//! Everything here reads untrusted bytes: every offset is checked against the message length,
//! every loop is bounded either by a named constant or by the message length (each step consumes
//! at least one byte), and name decompression only follows pointers that go strictly backwards
//! (RFC 1035 §4.1.4: a pointer refers to a *prior* occurrence), which rules out loops.
//!
//! Names are decoded into a fixed stack buffer ([`NameBuf`]) in a lower-cased presentation form
//! without the trailing dot (`www.example.com`; the root is `.`). Bytes that are not letters,
//! digits, `-` or `_` are written as `\DDD` (RFC 1035 §5.1), so a label containing a dot can
//! never be confused with a label boundary and suffix comparisons on the text are label-exact.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// DNS header length (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets included (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE: usize = 255;
/// Most compression pointers followed while decoding one name. Backward-only pointers already
/// exclude loops; this caps the work a hostile message can ask for (127 two-byte labels is the
/// most a 255-byte name can have, so a legitimate name never needs more).
pub const MAX_POINTER_HOPS: usize = 127;
/// Capacity of a decoded name: 255 wire bytes, each possibly escaped as `\DDD` (4 bytes).
pub const NAME_TEXT_CAP: usize = MAX_NAME_WIRE * 4;

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

/// What was wrong with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message shorter than the 12-byte header ({0} bytes)")]
    ShortHeader(usize),
    #[error("name runs past the end of the message at offset {0}")]
    NameTruncated(usize),
    #[error("reserved label type 0x{1:02x} at offset {0} (RFC 1035 §4.1.4, RFC 6891 §5)")]
    BadLabelType(usize, u8),
    #[error("compression pointer at offset {0} does not point backwards (RFC 1035 §4.1.4)")]
    ForwardPointer(usize),
    #[error("name longer than 255 bytes at offset {0} (RFC 1035 §2.3.4)")]
    NameTooLong(usize),
    #[error("more than {MAX_POINTER_HOPS} compression pointers in one name at offset {0}")]
    TooManyPointers(usize),
    #[error("resource record at offset {0} runs past the end of the message")]
    RecordTruncated(usize),
    #[error("question at offset {0} runs past the end of the message")]
    QuestionTruncated(usize),
    #[error("{0} record at offset {1} has rdlength {2}, expected {3}")]
    BadRdLength(&'static str, usize, u16, u16),
}

/// The fixed header (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
        if msg.len() < HEADER_LEN {
            return Err(WireError::ShortHeader(msg.len()));
        }
        let w = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        Ok(Header {
            id: w(0),
            flags: w(2),
            qdcount: w(4),
            ancount: w(6),
            nscount: w(8),
            arcount: w(10),
        })
    }
    /// QR: true for a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }
    /// TC: the message was truncated (RFC 1035 §4.1.1, RFC 2181 §9).
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
}

/// A decoded name in lower-cased presentation form, held on the stack.
///
/// The buffer is not zeroed on creation (1 KiB per name on the hot path): only the first
/// `len` bytes are ever read, and each of them was written by `push`.
pub struct NameBuf {
    len: usize,
    buf: [std::mem::MaybeUninit<u8>; NAME_TEXT_CAP],
}

impl Default for NameBuf {
    fn default() -> Self {
        NameBuf {
            len: 0,
            buf: [std::mem::MaybeUninit::uninit(); NAME_TEXT_CAP],
        }
    }
}

impl Clone for NameBuf {
    fn clone(&self) -> Self {
        let mut n = NameBuf::default();
        n.buf[..self.len].copy_from_slice(&self.buf[..self.len]);
        n.len = self.len;
        n
    }
}

impl NameBuf {
    pub fn as_str(&self) -> &str {
        // SAFETY: bytes 0..len were all initialised by `push`.
        let bytes = unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) };
        debug_assert!(bytes.is_ascii());
        // SAFETY: only ASCII is ever pushed (letters, digits, `-_*.`, `\` and decimal digits
        // of escapes, see `push_label`), and ASCII is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
    fn clear(&mut self) {
        self.len = 0;
    }
    #[inline]
    fn push(&mut self, b: u8) {
        // Cannot overflow: at most 255 wire bytes, each expands to at most 4 text bytes.
        self.buf[self.len] = std::mem::MaybeUninit::new(b);
        self.len += 1;
    }
    /// Append a label, lower-cased and escaped. Room is checked once per label (for every byte
    /// escaped), not once per byte: this loop is most of decoding a name.
    #[inline]
    fn push_label(&mut self, label: &[u8]) {
        // Never fails for names `walk_name` accepts: at most 255 wire bytes, so the text (4
        // bytes per label byte at most, plus one dot per length octet) is at most 1,020 bytes.
        assert!(
            self.len + 4 * label.len() <= NAME_TEXT_CAP,
            "name text over capacity"
        );
        // SAFETY: the assert above bounds what `write_label` writes (at most 4 bytes per
        // label byte from `self.len`) by the buffer's capacity; the buffer is ours to write.
        let len = unsafe { write_label(self.buf.as_mut_ptr().cast::<u8>(), self.len, label) };
        self.len = len;
    }
}

impl fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Write `label` at `out + len`, lower-cased and escaped (RFC 1035 §5.1: `\DDD` for the bytes
/// [`PLAIN`] does not keep); returns the new length.
///
/// # Safety
/// `out + len .. out + len + 4 * label.len()` must be valid for writes.
#[inline]
unsafe fn write_label(out: *mut u8, mut len: usize, label: &[u8]) -> usize {
    for &b in label {
        let c = PLAIN[b as usize];
        // SAFETY: at most 4 bytes per label byte from the starting `len` (the caller's bound).
        unsafe {
            if c != 0 {
                out.add(len).write(c);
                len += 1;
            } else {
                let b = b.to_ascii_lowercase();
                out.add(len).write(b'\\');
                out.add(len + 1).write(b'0' + b / 100);
                out.add(len + 2).write(b'0' + (b / 10) % 10);
                out.add(len + 3).write(b'0' + b % 10);
                len += 4;
            }
        }
    }
    len
}

/// Label bytes written as themselves (lower-cased): letters, digits, `-`, `_`, `*`; 0 for the
/// bytes written as `\DDD` (RFC 1035 §5.1).
const PLAIN: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*' {
            t[i] = b.to_ascii_lowercase();
        }
        i += 1;
    }
    t
};

/// Is `name` equal to `zone` or below it? Both in the form produced by [`read_name`].
pub fn is_subdomain(name: &str, zone: &str) -> bool {
    is_subdomain_bytes(name.as_bytes(), zone.as_bytes())
}

/// [`is_subdomain`] on the names' bytes.
pub fn is_subdomain_bytes(name: &[u8], zone: &[u8]) -> bool {
    if zone == b"." {
        return true;
    }
    if name.len() == zone.len() {
        return name == zone;
    }
    name.len() > zone.len() && name.ends_with(zone) && name[name.len() - zone.len() - 1] == b'.'
}

/// Skip the name starting at `off` without following pointers; returns the offset just past it.
/// Validates label types but not pointer targets (those are checked when the name is decoded).
#[inline]
pub fn skip_name(msg: &[u8], off: usize) -> Result<usize, WireError> {
    skip_name_ended(msg, off).map(|(end, _)| end)
}

/// [`skip_name`], also telling whether the name ended with its root label (true) or with a
/// compression pointer (false).
#[inline]
fn skip_name_ended(msg: &[u8], mut off: usize) -> Result<(usize, bool), WireError> {
    let start = off;
    // Bounded: each iteration consumes at least one byte of the message.
    loop {
        let Some(&len) = msg.get(off) else {
            return Err(WireError::NameTruncated(off));
        };
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok((off + 1, true));
                }
                off += 1 + len as usize;
                if off - start > MAX_NAME_WIRE {
                    return Err(WireError::NameTooLong(start));
                }
            }
            0xc0 => {
                if off + 2 > msg.len() {
                    return Err(WireError::NameTruncated(off));
                }
                return Ok((off + 2, false));
            }
            _ => return Err(WireError::BadLabelType(off, len)),
        }
    }
}

/// Decode the name at `off` into `out` (lower-cased presentation form); returns the offset just
/// past the name in place (i.e. past the first pointer if there is one).
pub fn read_name(msg: &[u8], off: usize, out: &mut NameBuf) -> Result<usize, WireError> {
    out.clear();
    let end = walk_name(msg, off, |label| {
        if out.len != 0 {
            out.push(b'.');
        }
        out.push_label(label);
    })?;
    if out.len == 0 {
        out.push(b'.');
    }
    Ok(end)
}

/// The names of one message decoded so far, kept so that a later name whose compression
/// pointer lands on a label already decoded copies that label's text to the end of its name
/// instead of walking it again (a referral's NS owner points into the question, each NS target
/// into the owner: with this cache each of them costs its own first label and a copy).
///
/// Results are exactly [`read_name`]'s, errors included: a copied suffix was validated when it
/// was first decoded, a pointer that lands on it passed the same backward-pointer check the
/// full walk makes, and the suffix's wire length and pointer count are added to the name's
/// before its limits are checked (if they would be exceeded, the name is walked in full, which
/// reports the error as `read_name` does).
pub struct NameCache {
    /// The decoded names' text, one after another.
    text: Vec<u8>,
    /// Label starts of decoded names (`marks[..n_marks]`).
    marks: [Mark; MAX_MARKS],
    n_marks: usize,
    /// One per decoded name.
    names: Vec<Decoded>,
}

impl Default for NameCache {
    fn default() -> Self {
        NameCache {
            text: Vec::new(),
            marks: [Mark::default(); MAX_MARKS],
            n_marks: 0,
            names: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Mark {
    /// Offset of the label's length octet in the message.
    off: u32,
    /// Where the label's text starts in `text`.
    text: u32,
    /// Index in `names` of the name it belongs to.
    name: u32,
    /// Wire bytes and pointers of the name before this label.
    wire: u16,
    hops: u16,
}

#[derive(Clone, Copy)]
struct Decoded {
    /// End of the name's text in `text`.
    end: u32,
    /// Wire bytes (without the root label) and pointers of the whole name.
    wire: u16,
    hops: u16,
}

/// A decoded name in a [`NameCache`]: its text is `cache.text(range)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextRange {
    start: u32,
    end: u32,
}

/// Most label starts remembered per message: a pointer is looked up among them, so this bounds
/// the work per pointer for a hostile message with many names (a referral has a few dozen).
const MAX_MARKS: usize = 64;

impl NameCache {
    /// Forget everything (call before each message).
    pub fn clear(&mut self) {
        self.text.clear();
        self.n_marks = 0;
        self.names.clear();
    }

    pub fn text(&self, r: TextRange) -> &str {
        let bytes = &self.text[r.start as usize..r.end as usize];
        debug_assert!(bytes.is_ascii());
        // SAFETY: only ASCII is ever written to `text` (letters, digits, `-_*.`, `\` and the
        // decimal digits of escapes, as `NameBuf::push_label` writes), and every range handed
        // out covers whole names.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Decode the name at `off` (as [`read_name`] does); returns its text range and the offset
    /// just past the name in place.
    pub fn read(&mut self, msg: &[u8], off: usize) -> Result<(TextRange, usize), WireError> {
        let marks_before = self.n_marks;
        // Room for the longest name's text (checked in `walk`: every write stays below it).
        self.text.reserve(NAME_TEXT_CAP);
        let start = self.text.len();
        let r = self.walk(msg, off, start);
        match r {
            Ok((end_text, _)) => {
                // SAFETY: `walk` initialised bytes start..end_text, within the reserved room.
                unsafe { self.text.set_len(end_text) };
            }
            Err(_) => self.n_marks = marks_before,
        }
        r.map(|(end_text, end)| {
            (
                TextRange {
                    start: start as u32,
                    end: end_text as u32,
                },
                end,
            )
        })
    }

    /// The walk of [`walk_labels`] (so the same checks and errors as `read_name`) writing text
    /// after `start` in the reserved room; returns (end of the text, offset past the name in
    /// place).
    fn walk(&mut self, msg: &[u8], off: usize, start: usize) -> Result<(usize, usize), WireError> {
        let mut v = CacheWalk {
            out: self.text.as_mut_ptr(),
            start,
            len: start,
            cap_end: start + NAME_TEXT_CAP,
            name: self.names.len() as u32,
            marks: &mut self.marks,
            n_marks: &mut self.n_marks,
            names: &self.names,
            wire: 0,
            hops: 0,
        };
        let end = walk_labels(msg, off, &mut v)?;
        let (mut len, wire, hops) = (v.len, v.wire, v.hops);
        if len == start {
            // SAFETY: the reserved room holds at least one byte.
            unsafe { self.text.as_mut_ptr().add(len).write(b'.') };
            len += 1;
        }
        self.names.push(Decoded {
            end: len as u32,
            wire: wire as u16,
            hops: hops as u16,
        });
        Ok((len, end))
    }
}

/// [`NameCache::walk`]'s visitor: writes each label's text and remembers where it starts; at a
/// pointer that lands on a remembered label, copies the rest of that name and ends the walk.
struct CacheWalk<'a> {
    /// The cache's text buffer, with room reserved up to `cap_end`.
    out: *mut u8,
    start: usize,
    len: usize,
    cap_end: usize,
    /// This name's index in `names` (once pushed).
    name: u32,
    marks: &'a mut [Mark; MAX_MARKS],
    n_marks: &'a mut usize,
    names: &'a [Decoded],
    /// The whole name's wire bytes (without the root label) and pointers, as far as walked.
    wire: usize,
    hops: usize,
}

impl CacheWalk<'_> {
    fn dot(&mut self) {
        if self.len > self.start {
            // SAFETY: callers check that the dot and what follows stay below `cap_end`, inside
            // the room reserved in `NameCache::read`.
            unsafe { self.out.add(self.len).write(b'.') };
            self.len += 1;
        }
    }
}

impl LabelVisitor for CacheWalk<'_> {
    #[inline]
    fn label(&mut self, pos: usize, bytes: &[u8], wire: usize, hops: usize) {
        // At most 254 wire bytes so far: the text (one dot per length octet, at most 4 bytes
        // per label byte) stays within NAME_TEXT_CAP of `start`.
        assert!(
            self.len + 1 + 4 * bytes.len() <= self.cap_end,
            "name text over capacity"
        );
        self.dot();
        if *self.n_marks < MAX_MARKS {
            self.marks[*self.n_marks] = Mark {
                off: pos as u32,
                text: self.len as u32,
                name: self.name,
                wire: wire as u16,
                hops: hops as u16,
            };
            *self.n_marks += 1;
        }
        // SAFETY: bounded by the assert above.
        self.len = unsafe { write_label(self.out, self.len, bytes) };
        self.wire = wire + 1 + bytes.len();
        self.hops = hops;
    }

    #[inline]
    fn pointer(&mut self, target: usize, wire: usize, hops: usize) -> bool {
        self.hops = hops;
        let marks = &self.marks[..*self.n_marks];
        let Some(m) = marks.iter().find(|m| m.off as usize == target) else {
            return false;
        };
        let d = self.names[m.name as usize];
        let rest_wire = (d.wire - m.wire) as usize;
        let rest_hops = (d.hops - m.hops) as usize;
        // The whole name within the limits, or the walk goes on and fails as a full walk does.
        if wire + rest_wire >= MAX_NAME_WIRE || hops + rest_hops > MAX_POINTER_HOPS {
            return false;
        }
        let (from, to) = (m.text as usize, d.end as usize);
        assert!(
            self.len + 1 + (to - from) <= self.cap_end,
            "name text over capacity"
        );
        self.dot();
        // SAFETY: the source is an earlier name's text (below `start`, so initialised and not
        // overlapping the destination at `len`); the destination is bounded by the assert.
        unsafe {
            std::ptr::copy_nonoverlapping(self.out.add(from), self.out.add(self.len), to - from)
        };
        self.len += to - from;
        self.wire = wire + rest_wire;
        self.hops = hops + rest_hops;
        true
    }
}

/// A 64-bit hash of the name at `off`, case-insensitive (RFC 4343), computed from the wire
/// bytes without building its text; equal names hash equally whatever their compression.
/// Validated exactly as [`read_name`] validates. Returns the offset past the name in place.
///
/// What is hashed is the name's uncompressed wire form (length octets, label bytes, the final
/// zero), 8 bytes at a time with bit 0x20 set in every byte. An uncompressed name (every
/// question, in practice) is hashed where it lies, with no per-label work; a compressed one is
/// first spelled out into a stack buffer. Setting 0x20 folds ASCII case (RFC 4343) and also a
/// few other pairs (`-` and CR, digits and control bytes 0x10–0x19, `@` and `` ` ``, `_` and
/// DEL…), so two names differing only in those bytes hash alike: the hash pairs a response
/// with a query already matched on addresses, ports and id, and finds pending NS names, which
/// are compared as text before anything is learned, so such a collision is harmless.
pub fn hash_name(
    msg: &[u8],
    off: usize,
    h: &mut impl std::hash::Hasher,
) -> Result<usize, WireError> {
    // Fast path: the labels run uncompressed up to the root label, within the message and
    // within 255 bytes. Anything else (a pointer, a bad label type, truncation, too long) takes
    // the general walk, which also reports the error exactly as `read_name` would.
    let mut pos = off;
    while let Some(&len) = msg.get(pos) {
        if len == 0 {
            let wire = &msg[off..=pos];
            if wire.len() <= MAX_NAME_WIRE {
                hash_folded(wire, h);
                return Ok(pos + 1);
            }
            break;
        }
        if len & 0xc0 != 0 || pos + 1 - off > MAX_NAME_WIRE {
            break;
        }
        pos += 1 + len as usize;
    }
    let mut buf = [0u8; MAX_NAME_WIRE];
    let mut n = 0;
    let end = walk_name(msg, off, |label| {
        // `walk_name` keeps the labels' total (with their length octets) under 255 bytes
        // including the root label, so this never overflows.
        buf[n] = label.len() as u8;
        buf[n + 1..n + 1 + label.len()].copy_from_slice(label);
        n += 1 + label.len();
    })?;
    buf[n] = 0;
    hash_folded(&buf[..n + 1], h);
    Ok(end)
}

/// The [`hash_name`] of the first question's name (at [`HEADER_LEN`]), with the same result
/// and errors. A name without compression pointers (nearly every question) is hashed over the
/// bytes [`Message::parse`] already walked, without walking its labels a second time.
pub fn hash_question_name(
    m: &Message<'_>,
    h: &mut impl std::hash::Hasher,
) -> Result<usize, WireError> {
    let end = m.plain_qname_end;
    // Exactly the case `hash_name` takes its fast path for: uncompressed labels (of valid
    // types, `parse` checked) up to the root label, at most 255 bytes with it.
    if end > HEADER_LEN && end - HEADER_LEN <= MAX_NAME_WIRE {
        hash_folded(&m.buf[HEADER_LEN..end], h);
        return Ok(end);
    }
    hash_name(m.buf, HEADER_LEN, h)
}

/// The [`hash_name`] of a name given as text in the form [`read_name`] writes (lower case,
/// `\DDD` escapes, `.` for the root): equal to the hash of the name's wire form wherever it
/// is met. `false` (nothing hashed) if the text is not in that form.
pub fn hash_text_name(text: &str, h: &mut impl std::hash::Hasher) -> bool {
    let mut buf = [0u8; MAX_NAME_WIRE];
    let mut n = 0usize;
    if text != "." {
        for label in text.split('.') {
            let start = n;
            n += 1;
            let b = label.as_bytes();
            let mut i = 0;
            while i < b.len() {
                let c = if b[i] == b'\\' {
                    let Some(d) = b
                        .get(i + 1..i + 4)
                        .filter(|d| d.iter().all(u8::is_ascii_digit))
                    else {
                        return false;
                    };
                    let v = (d[0] - b'0') as u32 * 100
                        + (d[1] - b'0') as u32 * 10
                        + (d[2] - b'0') as u32;
                    let Ok(v) = u8::try_from(v) else {
                        return false;
                    };
                    i += 4;
                    v
                } else {
                    i += 1;
                    b[i - 1]
                };
                if n + 1 >= MAX_NAME_WIRE {
                    return false;
                }
                buf[n] = c;
                n += 1;
            }
            let len = n - start - 1;
            if len == 0 || len > 63 {
                return false;
            }
            buf[start] = len as u8;
        }
    }
    buf[n] = 0;
    hash_folded(&buf[..n + 1], h);
    true
}

/// Hash `bytes` 8 at a time with 0x20 set in every byte (see [`hash_name`]); the last 1..8
/// bytes by fixed-size loads that overlap bytes already hashed, so no copy is made. The
/// length is hashed first, so the overlap cannot make two different runs alike.
#[inline]
fn hash_folded(bytes: &[u8], h: &mut impl std::hash::Hasher) {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let n = bytes.len();
    h.write_u8(n as u8);
    if n >= 8 {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h.write_u64(w | FOLD);
        }
        if !chunks.remainder().is_empty() {
            let c = &bytes[n - 8..];
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h.write_u64(w | FOLD);
        }
    } else if n >= 4 {
        let w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64
            | (u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]) as u64)
                << 32;
        h.write_u64(w | FOLD);
    } else {
        // 1..3 bytes (a name is at least its root label).
        let w = bytes[0] as u64 | (bytes[n / 2] as u64) << 8 | (bytes[n - 1] as u64) << 16;
        h.write_u64(w | FOLD);
    }
}

/// Walk the labels of the name at `off`, following compression pointers, calling `label` for
/// each; returns the offset just past the name in place.
#[inline]
fn walk_name(msg: &[u8], off: usize, label: impl FnMut(&[u8])) -> Result<usize, WireError> {
    struct Labels<F>(F);
    impl<F: FnMut(&[u8])> LabelVisitor for Labels<F> {
        #[inline]
        fn label(&mut self, _pos: usize, bytes: &[u8], _wire: usize, _hops: usize) {
            (self.0)(bytes)
        }
    }
    walk_labels(msg, off, &mut Labels(label))
}

/// What [`walk_labels`] reports while it walks a name.
trait LabelVisitor {
    /// A label whose length octet is at `pos`; `wire` is the name's wire length before it and
    /// `hops` the pointers followed so far.
    fn label(&mut self, pos: usize, bytes: &[u8], wire: usize, hops: usize);
    /// A pointer to `target` was followed (counted in `hops`; `wire` as it stands). Returning
    /// true ends the walk there: the visitor knows the rest of the name and has checked that
    /// the whole name stays within the limits the walk enforces.
    #[inline]
    fn pointer(&mut self, _target: usize, _wire: usize, _hops: usize) -> bool {
        false
    }
}

/// The one walk over a name's labels and compression pointers, with every check of a wire
/// name (see the module documentation); returns the offset just past the name in place.
#[inline]
fn walk_labels(msg: &[u8], off: usize, v: &mut impl LabelVisitor) -> Result<usize, WireError> {
    let mut pos = off;
    let mut end_in_place: Option<usize> = None;
    let mut wire_len = 0usize;
    let mut hops = 0usize;
    // A pointer must point before the start of the label sequence that contains it.
    let mut lowest = off;
    // Bounded: each iteration either consumes a label (≥1 byte, total ≤255 by the check below)
    // or follows a pointer (≤ MAX_POINTER_HOPS).
    loop {
        let Some(&len) = msg.get(pos) else {
            return Err(WireError::NameTruncated(pos));
        };
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok(end_in_place.unwrap_or(pos + 1));
                }
                let l = len as usize;
                let before = wire_len;
                wire_len += 1 + l;
                if wire_len + 1 > MAX_NAME_WIRE {
                    return Err(WireError::NameTooLong(off));
                }
                let Some(bytes) = msg.get(pos + 1..pos + 1 + l) else {
                    return Err(WireError::NameTruncated(pos));
                };
                v.label(pos, bytes, before, hops);
                pos += 1 + l;
            }
            0xc0 => {
                let Some(&lo) = msg.get(pos + 1) else {
                    return Err(WireError::NameTruncated(pos));
                };
                let target = (((len & 0x3f) as usize) << 8) | lo as usize;
                // RFC 1035 §4.1.4: pointers refer to a prior occurrence. Requiring the target
                // to be strictly below every position visited so far makes loops impossible.
                if target >= lowest {
                    return Err(WireError::ForwardPointer(pos));
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(WireError::TooManyPointers(off));
                }
                if end_in_place.is_none() {
                    end_in_place = Some(pos + 2);
                }
                lowest = target;
                pos = target;
                if v.pointer(target, wire_len, hops) {
                    return Ok(end_in_place.unwrap_or(pos));
                }
            }
            // 0x40 (extended label, RFC 6891 §5 deprecates it) and 0x80 are reserved.
            _ => return Err(WireError::BadLabelType(pos, len)),
        }
    }
}

/// One question (RFC 1035 §4.1.2).
#[derive(Debug, Clone, Copy)]
pub struct Question {
    /// Offset of the name in the message.
    pub name_off: usize,
    pub qtype: u16,
    pub qclass: u16,
}

/// Which section an RR is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// One resource record (RFC 1035 §4.1.3); its name and rdata are read on demand.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    pub section: Section,
    pub name_off: usize,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata_off: usize,
    pub rdlen: u16,
}

impl Record {
    pub fn rdata<'a>(&self, msg: &'a [u8]) -> &'a [u8] {
        // Checked when the record was iterated.
        &msg[self.rdata_off..self.rdata_off + self.rdlen as usize]
    }
    /// The address of an A or AAAA record (class IN), checking rdlength.
    pub fn addr(&self, msg: &[u8]) -> Result<Option<IpAddr>, WireError> {
        if self.class != CLASS_IN {
            return Ok(None);
        }
        let d = self.rdata(msg);
        match self.rtype {
            TYPE_A => match <[u8; 4]>::try_from(d) {
                Ok(a) => Ok(Some(IpAddr::V4(Ipv4Addr::from(a)))),
                Err(_) => Err(WireError::BadRdLength("A", self.rdata_off, self.rdlen, 4)),
            },
            TYPE_AAAA => match <[u8; 16]>::try_from(d) {
                Ok(a) => Ok(Some(IpAddr::V6(Ipv6Addr::from(a)))),
                Err(_) => Err(WireError::BadRdLength(
                    "AAAA",
                    self.rdata_off,
                    self.rdlen,
                    16,
                )),
            },
            _ => Ok(None),
        }
    }
    /// The target of an NS or CNAME record (a domain name, possibly compressed, RFC 1035 §3.3).
    /// The name must end inside the rdata.
    pub fn target(&self, msg: &[u8], out: &mut NameBuf) -> Result<(), WireError> {
        let end = read_name(msg, self.rdata_off, out)?;
        if end > self.rdata_off + self.rdlen as usize {
            return Err(WireError::RecordTruncated(self.rdata_off));
        }
        Ok(())
    }
}

/// A parsed header plus the bounds of the question section; RRs are iterated lazily.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub buf: &'a [u8],
    pub header: Header,
    /// Offset of the first RR (just past the question section).
    pub rr_start: usize,
    /// End of the first question's name (just past its root label) if it has no compression
    /// pointer, else 0 (see [`hash_question_name`]).
    plain_qname_end: usize,
}

impl<'a> Message<'a> {
    /// Parse the header and skip the question section.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, WireError> {
        let header = Header::parse(buf)?;
        let mut off = HEADER_LEN;
        let mut plain_qname_end = 0;
        // Bounded by the message length: each question is at least 5 bytes.
        for i in 0..header.qdcount {
            let (end, plain) = skip_name_ended(buf, off)?;
            if i == 0 && plain {
                plain_qname_end = end;
            }
            off = end;
            if off + 4 > buf.len() {
                return Err(WireError::QuestionTruncated(off));
            }
            off += 4;
        }
        Ok(Message {
            buf,
            header,
            rr_start: off,
            plain_qname_end,
        })
    }

    /// The first question, if any. Real traffic has exactly one (RFC 9619).
    pub fn question(&self) -> Option<Question> {
        if self.header.qdcount == 0 {
            return None;
        }
        // One question (nearly every message): `parse` checked that its type and class are the
        // 4 bytes just before `rr_start`, so its name need not be skipped a second time.
        let end = if self.header.qdcount == 1 {
            self.rr_start.checked_sub(4)?
        } else {
            skip_name(self.buf, HEADER_LEN).ok()?
        };
        let t = self.buf.get(end..end + 4)?;
        Some(Question {
            name_off: HEADER_LEN,
            qtype: u16::from_be_bytes([t[0], t[1]]),
            qclass: u16::from_be_bytes([t[2], t[3]]),
        })
    }

    /// Iterate answer, authority and additional records in order.
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter {
            buf: self.buf,
            off: self.rr_start,
            left: [
                self.header.ancount,
                self.header.nscount,
                self.header.arcount,
            ],
            section: 0,
            failed: false,
        }
    }
}

/// Iterator over RRs; yields an error once and then stops if the message is malformed.
pub struct RecordIter<'a> {
    buf: &'a [u8],
    off: usize,
    left: [u16; 3],
    section: usize,
    failed: bool,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record, WireError>;
    // Inlined into the loop of its caller (`learn::collect` walks every record of every
    // response): the record then lives in registers, where a call returned it through memory.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.section < 3 && self.left[self.section] == 0 {
            self.section += 1;
        }
        if self.section >= 3 {
            return None;
        }
        self.left[self.section] -= 1;
        let start = self.off;
        let r = (|| {
            let name_end = skip_name(self.buf, start)?;
            let fixed = self
                .buf
                .get(name_end..name_end + 10)
                .ok_or(WireError::RecordTruncated(start))?;
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            let class = u16::from_be_bytes([fixed[2], fixed[3]]);
            let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
            let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]);
            let rdata_off = name_end + 10;
            if rdata_off + rdlen as usize > self.buf.len() {
                return Err(WireError::RecordTruncated(start));
            }
            self.off = rdata_off + rdlen as usize;
            Ok(Record {
                section: [Section::Answer, Section::Authority, Section::Additional][self.section],
                name_off: start,
                rtype,
                class,
                // RFC 2181 §8: a TTL with the top bit set is treated as zero.
                ttl: if ttl & 0x8000_0000 != 0 { 0 } else { ttl },
                rdata_off,
                rdlen,
            })
        })();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// Human name of a query type for the paper's `queryname` column ("FQDN TYPE" unless A).
pub fn type_name(t: u16) -> std::borrow::Cow<'static, str> {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => return format!("TYPE{t}").into(),
    };
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a message by hand: header + question + the given raw RR bytes.
    fn msg(id: u16, flags: u16, counts: [u16; 4], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            v.extend_from_slice(&c.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn decodes_compressed_names_lowercased() {
        // question: Www.Example.COM A IN; answer: pointer to 12, A 192.0.2.1
        let mut body = b"\x03Www\x07Example\x03COM\x00\x00\x01\x00\x01".to_vec();
        body.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01");
        let m = msg(7, 0x8180, [1, 1, 0, 0], &body);
        let p = Message::parse(&m).unwrap();
        let q = p.question().unwrap();
        let mut n = NameBuf::default();
        read_name(&m, q.name_off, &mut n).unwrap();
        assert_eq!(n.as_str(), "www.example.com");
        let rr: Vec<_> = p.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(rr.len(), 1);
        read_name(&m, rr[0].name_off, &mut n).unwrap();
        assert_eq!(n.as_str(), "www.example.com");
        assert_eq!(rr[0].ttl, 3600);
        assert_eq!(rr[0].addr(&m).unwrap(), Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_rejected() {
        // name at 12 is a pointer to itself
        let m = msg(1, 0, [1, 0, 0, 0], b"\xc0\x0c\x00\x01\x00\x01");
        let mut n = NameBuf::default();
        assert_eq!(
            read_name(&m, 12, &mut n),
            Err(WireError::ForwardPointer(12))
        );
        // two labels pointing at each other: 12: "\x01a" + ptr->17 ; 17: ptr->12
        let m = msg(1, 0, [0, 0, 0, 0], b"\x01a\xc0\x11\x00\xc0\x0c");
        assert!(matches!(
            read_name(&m, 12, &mut n),
            Err(WireError::ForwardPointer(_))
        ));
        assert!(matches!(
            read_name(&m, 17, &mut n),
            Err(WireError::ForwardPointer(_))
        ));
    }

    #[test]
    fn the_question_hashed_from_the_parse_keeps_the_255_byte_limit() {
        use std::hash::{BuildHasher, Hasher};
        let st = std::collections::hash_map::RandomState::new();
        // Questions of 254, 255 and 256 wire bytes (labels of 63 bytes, one shorter one, the
        // root label): `parse` skips all three, `read_name` rejects the last.
        for total in [254usize, 255, 256] {
            let mut name = Vec::new();
            let mut left = total - 1;
            while left > 0 {
                let l = (left - 1).min(63);
                name.push(l as u8);
                name.extend(std::iter::repeat_n(b'a', l));
                left -= 1 + l;
            }
            name.push(0);
            assert_eq!(name.len(), total);
            name.extend_from_slice(&[0, 1, 0, 1]);
            let m = msg(1, 0, [1, 0, 0, 0], &name);
            let p = Message::parse(&m).unwrap();
            let (mut a, mut b) = (st.build_hasher(), st.build_hasher());
            let fast = hash_question_name(&p, &mut a);
            assert_eq!(fast, hash_name(&m, HEADER_LEN, &mut b), "{total} bytes");
            assert_eq!(a.finish(), b.finish());
            let mut n = NameBuf::default();
            assert_eq!(fast.is_ok(), read_name(&m, HEADER_LEN, &mut n).is_ok());
            assert_eq!(fast.is_ok(), total <= MAX_NAME_WIRE, "{total} bytes");
        }
    }

    #[test]
    fn long_pointer_chains_are_bounded() {
        // 200 pointers each pointing to the previous one, ending at a root label at offset 12.
        let mut body = vec![0u8];
        for i in 0..200u16 {
            let target = 12 + if i == 0 { 0 } else { 1 + 2 * (i - 1) };
            body.extend_from_slice(&(0xc000 | target).to_be_bytes());
        }
        let m = msg(1, 0, [0, 0, 0, 0], &body);
        let mut n = NameBuf::default();
        let last = m.len() - 2;
        assert_eq!(
            read_name(&m, last, &mut n),
            Err(WireError::TooManyPointers(last))
        );
        // A short chain is fine.
        assert_eq!(read_name(&m, 12 + 1 + 2 * 5, &mut n), Ok(12 + 1 + 2 * 6));
        assert_eq!(n.as_str(), ".");
    }

    #[test]
    fn names_over_255_bytes_are_rejected() {
        let mut body = Vec::new();
        for _ in 0..5 {
            body.push(63);
            body.extend_from_slice(&[b'a'; 63]);
        }
        body.push(0);
        let m = msg(1, 0, [0, 0, 0, 0], &body);
        let mut n = NameBuf::default();
        assert_eq!(read_name(&m, 12, &mut n), Err(WireError::NameTooLong(12)));
        assert_eq!(skip_name(&m, 12), Err(WireError::NameTooLong(12)));
    }

    #[test]
    fn odd_bytes_are_escaped_so_dots_in_labels_stay_labels() {
        let m = msg(1, 0, [0, 0, 0, 0], b"\x03a.b\x07example\x00");
        let mut n = NameBuf::default();
        read_name(&m, 12, &mut n).unwrap();
        assert_eq!(n.as_str(), "a\\046b.example");
        assert!(is_subdomain(n.as_str(), "example"));
        assert!(!is_subdomain(n.as_str(), "b.example"));
    }

    #[test]
    fn a_name_as_text_hashes_as_on_the_wire() {
        use std::hash::{BuildHasher, Hasher};
        let st = std::collections::hash_map::RandomState::new();
        let wire = |m: &[u8]| {
            let mut h = st.build_hasher();
            hash_name(m, 0, &mut h).unwrap();
            h.finish()
        };
        let text = |t: &str| {
            let mut h = st.build_hasher();
            hash_text_name(t, &mut h).then(|| h.finish())
        };
        assert_eq!(
            text("ns.partial.test"),
            Some(wire(b"\x02NS\x07partial\x04test\x00"))
        );
        assert_eq!(text("."), Some(wire(b"\x00")));
        assert_eq!(
            text("a\\046b.example"),
            Some(wire(b"\x03a.b\x07example\x00"))
        );
        assert_ne!(text("ab.c"), text("a.bc"));
        // Not read_name's form: no hash.
        for bad in ["a..b", "a.", "a\\2", "a\\256.b", &"x".repeat(64)] {
            assert_eq!(text(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn name_hash_ignores_case_and_compression() {
        use std::hash::{BuildHasher, Hasher};
        let st = std::collections::hash_map::RandomState::new();
        let hash = |m: &[u8], off| {
            let mut h = st.build_hasher();
            hash_name(m, off, &mut h).unwrap();
            h.finish()
        };
        // "WWW.Example.com" at 12, then "www.example.COM" spelled out, then a pointer form.
        let m = msg(
            1,
            0,
            [0, 0, 0, 0],
            b"\x03WWW\x07Example\x03com\x00\x03www\x07example\x03COM\x00\x03wWw\xc0\x10",
        );
        assert_eq!(hash(&m, 12), hash(&m, 29));
        assert_eq!(hash(&m, 12), hash(&m, 46));
        let other = msg(1, 0, [0, 0, 0, 0], b"\x03www\x07example\x03net\x00");
        assert_ne!(hash(&m, 12), hash(&other, 12));
        // Label boundaries matter: "ab.c" differs from "a.bc".
        let a = msg(1, 0, [0, 0, 0, 0], b"\x02ab\x01c\x00");
        let b = msg(1, 0, [0, 0, 0, 0], b"\x01a\x02bc\x00");
        assert_ne!(hash(&a, 12), hash(&b, 12));
    }

    #[test]
    fn name_cache_keeps_the_length_and_pointer_limits() {
        // A name of the longest wire length at 12, a name that would exceed it by pointing
        // there after a label of its own, and one pointing into its middle.
        let mut body = Vec::new();
        for l in [63u8, 63, 63, 61] {
            body.push(l);
            body.extend(std::iter::repeat_n(b'x', l as usize));
        }
        body.push(0);
        body.extend_from_slice(b"\x05abcde\xc0\x0c\x05abcde\xc0\x4c");
        let m = msg(1, 0, [0, 0, 0, 0], &body);
        let mut cache = NameCache::default();
        let (long, _) = cache.read(&m, 12).unwrap();
        assert_eq!(cache.text(long).len(), 253);
        let over = 12 + body.len() - 16;
        assert_eq!(cache.read(&m, over), Err(WireError::NameTooLong(over)));
        let (r, end) = cache.read(&m, over + 8).unwrap();
        assert_eq!(end, over + 16);
        assert!(cache.text(r).starts_with("abcde.xxx"));
        vs_hickory::names_agree(&m);

        // Pointer counts: "a" at 12, a chain of 125 bare pointers ending there, "b" + a pointer
        // to the chain's end (126 pointers), C pointing to "b" (127, the most allowed) and D
        // pointing to C (128: the copied suffix would hide one too many).
        let mut body = b"\x01a\x00".to_vec();
        let mut prev = 12usize;
        for _ in 0..125 {
            let here = 12 + body.len();
            body.extend_from_slice(&[0xc0 | (prev >> 8) as u8, prev as u8]);
            prev = here;
        }
        let b_off = 12 + body.len();
        body.extend_from_slice(&[1, b'b', 0xc0 | (prev >> 8) as u8, prev as u8]);
        let c_off = 12 + body.len();
        body.extend_from_slice(&[0xc0 | (b_off >> 8) as u8, b_off as u8]);
        let d_off = 12 + body.len();
        body.extend_from_slice(&[0xc0 | (c_off >> 8) as u8, c_off as u8]);
        let m = msg(1, 0, [0, 0, 0, 0], &body);
        let mut cache = NameCache::default();
        let mut n = NameBuf::default();
        for (off, want) in [(12, "a"), (b_off, "b.a"), (c_off, "b.a")] {
            let (r, _) = cache.read(&m, off).unwrap();
            assert_eq!(cache.text(r), want);
            read_name(&m, off, &mut n).unwrap();
            assert_eq!(n.as_str(), want);
        }
        assert_eq!(
            read_name(&m, d_off, &mut n),
            Err(WireError::TooManyPointers(d_off))
        );
        assert_eq!(
            cache.read(&m, d_off),
            Err(WireError::TooManyPointers(d_off))
        );
        vs_hickory::names_agree(&m);
    }

    #[test]
    fn subdomain_is_label_exact() {
        assert!(is_subdomain("a.example.com", "example.com"));
        assert!(is_subdomain("example.com", "example.com"));
        assert!(!is_subdomain("badexample.com", "example.com"));
        assert!(is_subdomain("anything", "."));
        assert!(!is_subdomain("com", "example.com"));
    }

    #[test]
    fn truncated_records_and_headers_error() {
        assert_eq!(
            Message::parse(&[0; 11]).unwrap_err(),
            WireError::ShortHeader(11)
        );
        let m = msg(
            1,
            0x8000,
            [0, 1, 0, 0],
            b"\x00\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x01",
        );
        let p = Message::parse(&m).unwrap();
        let r: Vec<_> = p.records().collect();
        assert_eq!(r, vec![Err(WireError::RecordTruncated(12))]);
        // A record with wrong rdlength
        let m = msg(
            1,
            0x8000,
            [0, 1, 0, 0],
            b"\x00\x00\x01\x00\x01\x00\x00\x00\x05\x00\x03\x01\x02\x03",
        );
        let p = Message::parse(&m).unwrap();
        let r = p.records().next().unwrap().unwrap();
        assert!(matches!(r.addr(&m), Err(WireError::BadRdLength("A", ..))));
    }

    impl PartialEq for Record {
        fn eq(&self, o: &Record) -> bool {
            self.rdata_off == o.rdata_off && self.name_off == o.name_off
        }
    }

    /// Cross-check against hickory-proto, the reference decoder, on arbitrary messages built by
    /// hickory: every RR's owner, type, TTL and A/AAAA/NS rdata must agree.
    mod vs_hickory {
        use super::*;
        use hickory_proto::op::{Message as HMessage, MessageType, Query};
        use hickory_proto::rr::{Name, RData, Record as HRecord, rdata};
        use hickory_proto::serialize::binary::BinDecodable;
        use proptest::prelude::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
        }
        fn name() -> impl Strategy<Value = String> {
            prop::collection::vec(label(), 1..5).prop_map(|v| v.join(".") + ".")
        }

        /// Compare our reading of `wire` with hickory's.
        pub(crate) fn compare(wire: &[u8]) {
            let ours = Message::parse(wire);
            let theirs = HMessage::from_bytes(wire);
            let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
                return;
            };
            assert_eq!(ours.header.id, theirs.metadata.id);
            let mut recs = Vec::new();
            for r in ours.records() {
                match r {
                    Ok(r) => recs.push(r),
                    Err(_) => return,
                }
            }
            let all: Vec<&HRecord> = theirs
                .answers
                .iter()
                .chain(theirs.authorities.iter())
                .chain(theirs.additionals.iter())
                .collect();
            assert_eq!(recs.len(), all.len(), "record counts");
            let mut n = NameBuf::default();
            for (a, b) in recs.iter().zip(all) {
                read_name(wire, a.name_off, &mut n).unwrap();
                let hn = b.name.to_ascii().to_ascii_lowercase();
                let hn = hn.trim_end_matches('.');
                assert_eq!(n.as_str(), if hn.is_empty() { "." } else { hn });
                assert_eq!(a.rtype, u16::from(b.record_type()));
                assert_eq!(a.ttl, b.ttl);
                match &b.data {
                    RData::A(x) => assert_eq!(a.addr(wire).unwrap(), Some(IpAddr::V4(x.0))),
                    RData::AAAA(x) => {
                        assert_eq!(a.addr(wire).unwrap(), Some(IpAddr::V6(x.0)))
                    }
                    RData::NS(x) => {
                        a.target(wire, &mut n).unwrap();
                        let t = x.0.to_ascii().to_ascii_lowercase();
                        assert_eq!(n.as_str(), t.trim_end_matches('.'));
                    }
                    _ => {}
                }
            }
        }

        /// Every offset of `wire` read in order through one [`NameCache`], and hashed: the same
        /// text, end and error as [`read_name`] (the cache copies suffixes of earlier names; the
        /// hash takes a shortcut for uncompressed names).
        pub(crate) fn names_agree(wire: &[u8]) {
            use std::hash::{BuildHasher, Hasher};
            let st = std::collections::hash_map::RandomState::new();
            let mut cache = NameCache::default();
            let mut n = NameBuf::default();
            for off in 0..wire.len() {
                let plain = read_name(wire, off, &mut n);
                let cached = cache.read(wire, off);
                match (&plain, &cached) {
                    (Ok(end), Ok((r, cend))) => {
                        assert_eq!(end, cend, "end of the name at {off}");
                        assert_eq!(n.as_str(), cache.text(*r), "name at {off}");
                    }
                    (Err(a), Err(b)) => assert_eq!(a, b, "error at {off}"),
                    _ => panic!(
                        "at {off}: read_name {plain:?}, cache {:?}",
                        cached.map(|c| c.1)
                    ),
                }
                let mut h = st.build_hasher();
                let hashed = hash_name(wire, off, &mut h);
                assert_eq!(plain, hashed, "hash_name validation at {off}");
            }
            // The question's name hashed from the parse: the same result, error and hash.
            if let Ok(m) = Message::parse(wire)
                && m.header.qdcount > 0
            {
                let (mut a, mut b) = (st.build_hasher(), st.build_hasher());
                let from_parse = hash_question_name(&m, &mut a);
                assert_eq!(from_parse, hash_name(wire, HEADER_LEN, &mut b), "question");
                assert_eq!(a.finish(), b.finish(), "hash of the question");
            }
            // Equal names hash equally: every decoded name against a spelled-out copy of it.
            for off in 0..wire.len() {
                if read_name(wire, off, &mut n).is_err() {
                    continue;
                }
                let mut spelled = Vec::new();
                let _ = walk_name(wire, off, |l| {
                    spelled.push(l.len() as u8);
                    spelled.extend_from_slice(l);
                });
                spelled.push(0);
                let (mut a, mut b) = (st.build_hasher(), st.build_hasher());
                hash_name(wire, off, &mut a).unwrap();
                hash_name(&spelled, 0, &mut b).unwrap();
                assert_eq!(a.finish(), b.finish(), "hash of the name at {off}");
                // And its text form (as the history keeps names) hashes the same.
                let mut c = st.build_hasher();
                assert!(hash_text_name(n.as_str(), &mut c), "text {:?}", n.as_str());
                assert_eq!(a.finish(), c.finish(), "hash of the text {:?}", n.as_str());
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn referrals_agree_with_hickory(
                q in name(),
                zone in name(),
                nss in prop::collection::vec((name(), any::<u32>(), any::<[u8;4]>(), any::<[u8;16]>()), 0..8),
                id in any::<u16>(),
            ) {
                let mut m = HMessage::new(id, MessageType::Response, hickory_proto::op::OpCode::Query);
                m.add_query(Query::query(Name::from_ascii(&q).unwrap(), hickory_proto::rr::RecordType::A));
                let z = Name::from_ascii(&zone).unwrap();
                for (ns, ttl, a4, a6) in &nss {
                    let nsn = Name::from_ascii(ns).unwrap();
                    let ttl = ttl & 0x7fff_ffff;
                    m.add_authority(HRecord::from_rdata(z.clone(), ttl, RData::NS(rdata::NS(nsn.clone()))));
                    m.add_additional(HRecord::from_rdata(nsn.clone(), ttl, RData::A(rdata::A((*a4).into()))));
                    m.add_additional(HRecord::from_rdata(nsn, ttl, RData::AAAA(rdata::AAAA((*a6).into()))));
                }
                let wire = m.to_vec().unwrap();
                compare(&wire);
                names_agree(&wire);
                // And every truncation of it must be handled without a panic.
                for cut in 0..wire.len() {
                    let _ = Message::parse(&wire[..cut]).map(|p| p.records().count());
                }
            }

            #[test]
            fn cache_and_hash_validate_as_read_name(
                bytes in prop::collection::vec(any::<u8>(), 0..300),
                // Pointers aimed at the bytes already seen, so that chains and cache hits occur.
                ptrs in prop::collection::vec((0usize..300, any::<u8>()), 0..20),
            ) {
                let mut bytes = bytes;
                for (at, to) in ptrs {
                    if at + 1 < bytes.len() {
                        bytes[at] = 0xc0;
                        bytes[at + 1] = to;
                    }
                }
                names_agree(&bytes);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
                if let Ok(p) = Message::parse(&bytes) {
                    let mut n = NameBuf::default();
                    if let Some(q) = p.question() { let _ = read_name(&bytes, q.name_off, &mut n); }
                    for r in p.records().flatten() {
                        let _ = read_name(&bytes, r.name_off, &mut n);
                        let _ = r.addr(&bytes);
                        let _ = r.target(&bytes, &mut n);
                    }
                }
            }
        }
    }
}
