//! Helpers shared by the integration tests: where the shared captures are, running the real
//! `nsdb` binary, and writing small pcap files with DNS messages built by hickory-proto.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata};

/// `<workspace root>/../shared`, or `$NSDB_SHARED`.
pub fn shared() -> PathBuf {
    if let Some(p) = std::env::var_os("NSDB_SHARED") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    assert!(
        p.join("pcaps/MANIFEST.tsv").exists(),
        "shared captures not found at {} (set NSDB_SHARED to the shared/ directory)",
        p.display()
    );
    p
}

pub fn pcaps() -> PathBuf {
    shared().join("pcaps")
}

/// Every capture listed in MANIFEST.tsv: (path, category, description).
pub fn manifest() -> Vec<(PathBuf, String, String)> {
    let text = std::fs::read_to_string(pcaps().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let rel = f[0].trim_start_matches("shared/pcaps/");
            let cat = rel.split('/').next().unwrap_or("").to_string();
            (pcaps().join(rel), cat, f.last().unwrap_or(&"").to_string())
        })
        .collect()
}

/// A fresh temporary directory for one test, deleted when the test ends (pass or fail), so
/// parallel tests and repeated runs leave nothing behind.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tmpdir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("nsdb-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

pub fn nsdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsdb"))
        .args(args)
        .output()
        .expect("run nsdb")
}

/// Run nsdb, assert success, return stdout.
pub fn nsdb_ok(args: &[&str]) -> String {
    let o = nsdb(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "nsdb {args:?} failed: {:?}\nstderr: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "nsdb {args:?} panicked: {err}");
    String::from_utf8(o.stdout).unwrap()
}

/// `nsdb learn --format json` on the given files; returns the summary.
pub fn learn_json(pcaps: &[&Path], db: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "learn",
        "--quiet",
        "--format",
        "json",
        "--db",
        db.to_str().unwrap(),
    ];
    let ps: Vec<String> = pcaps.iter().map(|p| p.display().to_string()).collect();
    args.extend(ps.iter().map(|s| s.as_str()));
    args.extend_from_slice(extra);
    serde_json::from_str(&nsdb_ok(&args)).expect("learn summary JSON")
}

// ---- building DNS messages (hickory-proto as the reference encoder) ----

pub fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

pub fn query(id: u16, q: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name(q), t));
    m.to_vec().unwrap()
}

fn addr_rdata(a: IpAddr) -> RData {
    match a {
        IpAddr::V4(v) => RData::A(rdata::A(v)),
        IpAddr::V6(v) => RData::AAAA(rdata::AAAA(v)),
    }
}

/// A referral: NS records for `zone` in authority, glue in additional.
pub fn referral(
    id: u16,
    q: &str,
    t: RecordType,
    zone: &str,
    ns: &[&str],
    glue: &[(&str, &str)],
    ttl: u32,
) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(name(q), t));
    for n in ns {
        m.add_authority(Record::from_rdata(
            name(zone),
            ttl,
            RData::NS(rdata::NS(name(n))),
        ));
    }
    for (n, a) in glue {
        m.add_additional(Record::from_rdata(
            name(n),
            ttl,
            addr_rdata(a.parse().unwrap()),
        ));
    }
    m.to_vec().unwrap()
}

/// An answer with A/AAAA records for `q`.
pub fn answer(id: u16, q: &str, t: RecordType, addrs: &[&str], ttl: u32) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(name(q), t));
    for a in addrs {
        m.add_answer(Record::from_rdata(
            name(q),
            ttl,
            addr_rdata(a.parse().unwrap()),
        ));
    }
    m.to_vec().unwrap()
}

// ---- writing pcap files ----

/// A classic pcap (LINKTYPE_ETHERNET, µs timestamps) written in memory.
pub struct Pcap {
    buf: Vec<u8>,
    ip_id: u16,
}

impl Default for Pcap {
    fn default() -> Self {
        Self::new()
    }
}

impl Pcap {
    pub fn new() -> Pcap {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&262_144u32.to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        Pcap { buf, ip_id: 1 }
    }

    pub fn frame(&mut self, ts_ms: u64, data: &[u8]) {
        let sec = (ts_ms / 1000) as u32;
        let usec = ((ts_ms % 1000) * 1000) as u32;
        self.buf.extend_from_slice(&sec.to_le_bytes());
        self.buf.extend_from_slice(&usec.to_le_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(data);
    }

    /// One UDP datagram over Ethernet/IPv4 or IPv6 (checksums zero: not checked by readers
    /// of captures).
    pub fn udp(&mut self, ts_ms: u64, src: &str, dst: &str, payload: &[u8]) {
        let s: SocketAddr = src.parse().unwrap();
        let d: SocketAddr = dst.parse().unwrap();
        let mut udp = Vec::new();
        udp.extend_from_slice(&s.port().to_be_bytes());
        udp.extend_from_slice(&d.port().to_be_bytes());
        udp.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        match (s.ip(), d.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                f.extend_from_slice(&[0x08, 0x00]);
                let total = (20 + udp.len()) as u16;
                self.ip_id = self.ip_id.wrapping_add(1);
                f.extend_from_slice(&[0x45, 0]);
                f.extend_from_slice(&total.to_be_bytes());
                f.extend_from_slice(&self.ip_id.to_be_bytes());
                f.extend_from_slice(&[0, 0, 64, 17, 0, 0]);
                f.extend_from_slice(&a.octets());
                f.extend_from_slice(&b.octets());
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                f.extend_from_slice(&[0x86, 0xdd]);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(udp.len() as u16).to_be_bytes());
                f.extend_from_slice(&[17, 64]);
                f.extend_from_slice(&a.octets());
                f.extend_from_slice(&b.octets());
            }
            _ => panic!("mixed address families"),
        }
        f.extend_from_slice(&udp);
        self.frame(ts_ms, &f);
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.buf).unwrap();
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}
