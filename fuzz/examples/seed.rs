//! Seeds the fuzz corpora from capture files (the project's ../shared/pcaps):
//! `corpus/capture/`: each capture's first 64 KiB (a cut capture is still a valid prefix);
//! `corpus/engine/`: the DNS messages of each capture, in capture order, as inputs of the
//! engine target (queries and responses paired by client, server and id), six operations per
//! seed.
//!
//! cargo run --release --example seed -- <pcap dir> <corpus dir>   (cargo xtask fuzz runs it)

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use nsdb::capture::{Extractor, Reader};

const CAPTURE_MAX: usize = 64 * 1024;
const OPS_PER_SEED: usize = 6;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut v: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    v.sort();
    for p in v {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
            out.push(p);
        }
    }
}

struct Msg {
    ts_ms: u64,
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (pcaps, corpus) = match &args[..] {
        [_, p, c] => (PathBuf::from(p), PathBuf::from(c)),
        _ => {
            eprintln!("usage: seed <pcap dir> <corpus dir>");
            std::process::exit(2);
        }
    };
    let mut list = Vec::new();
    files(&pcaps, &mut list);
    let (cap_dir, eng_dir) = (corpus.join("capture"), corpus.join("engine"));
    std::fs::create_dir_all(&cap_dir).unwrap();
    std::fs::create_dir_all(&eng_dir).unwrap();
    let (mut n_cap, mut n_eng) = (0, 0);
    for path in &list {
        let data = std::fs::read(path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        std::fs::write(cap_dir.join(&stem), &data[..data.len().min(CAPTURE_MAX)]).unwrap();
        n_cap += 1;
        let Ok(mut rd) = Reader::new(&data) else { continue };
        let mut ex = Extractor::new(&[53]);
        let mut msgs = Vec::new();
        let mut keep = |p: nsdb::capture::DnsPacket<'_>| {
            if p.msg.len() >= 12 {
                msgs.push(Msg {
                    ts_ms: p.ts_us / 1000,
                    src: p.src,
                    dst: p.dst,
                    bytes: p.msg.to_vec(),
                });
            }
        };
        while let Ok(Some(f)) = rd.next_frame() {
            ex.frame(&f, &mut keep);
        }
        ex.finish(&mut keep);
        for (k, chunk) in engine_inputs(&msgs).iter().enumerate() {
            std::fs::write(eng_dir.join(format!("{stem}-{k}")), chunk).unwrap();
            n_eng += 1;
        }
    }
    println!("seeded {n_cap} capture inputs, {n_eng} engine inputs");
}

/// The engine target's input for these messages: pairs where a response answers an earlier
/// query, single messages otherwise; six operations per input.
fn engine_inputs(msgs: &[Msg]) -> Vec<Vec<u8>> {
    let mut servers: HashMap<IpAddr, u8> = HashMap::new();
    let mut clients: HashMap<IpAddr, u8> = HashMap::new();
    let index = |m: &mut HashMap<IpAddr, u8>, a: IpAddr| {
        let n = m.len() as u8;
        *m.entry(a).or_insert(n % 8)
    };
    let mut used = vec![false; msgs.len()];
    let mut ops: Vec<Vec<u8>> = Vec::new();
    let mut last_ts = msgs.first().map_or(0, |m| m.ts_ms);
    for i in 0..msgs.len() {
        if used[i] {
            continue;
        }
        let m = &msgs[i];
        let is_resp = m.bytes[2] & 0x80 != 0;
        let (cl, sv) = if is_resp { (m.dst, m.src) } else { (m.src, m.dst) };
        let (ci, si) = (index(&mut clients, cl.ip()), index(&mut servers, sv.ip()));
        let step = (m.ts_ms.saturating_sub(last_ts) / 100).min(127) as u8;
        last_ts = m.ts_ms;
        let tb = step | if sv.is_ipv6() { 0x80 } else { 0 };
        let mut op = Vec::new();
        let answer = (!is_resp)
            .then(|| {
                (i + 1..msgs.len()).find(|&j| {
                    !used[j]
                        && msgs[j].src == m.dst
                        && msgs[j].dst == m.src
                        && msgs[j].bytes[2] & 0x80 != 0
                        && msgs[j].bytes[..2] == m.bytes[..2]
                })
            })
            .flatten();
        let kind = match (is_resp, answer) {
            (_, Some(_)) => 2,
            (true, None) => 1,
            (false, None) => 0,
        };
        op.push(kind | (ci << 2) | (si << 5));
        op.push(tb);
        op.extend_from_slice(&(m.bytes.len() as u16).to_be_bytes());
        op.extend_from_slice(&m.bytes);
        if let Some(j) = answer {
            used[j] = true;
            op.extend_from_slice(&(msgs[j].bytes.len() as u16).to_be_bytes());
            op.extend_from_slice(&msgs[j].bytes);
        }
        ops.push(op);
    }
    ops.chunks(OPS_PER_SEED)
        .enumerate()
        .map(|(k, c)| {
            // Vary the configuration byte: bailiwick mode, collect, explain.
            let mut v = vec![(k as u8 & 3) | 4 | if k % 2 == 0 { 16 } else { 8 }];
            v.extend(c.iter().flatten());
            v
        })
        .collect()
}
