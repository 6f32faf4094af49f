//! Cross-check of nsdb's wire parser against hickory-proto (the reference decoder) on every DNS
//! message in the shared captures: whenever both parse a message, they agree on the id, the
//! records (owner, type, TTL) and the A/AAAA/NS data nsdb learns from.

mod common;
use common::*;

use hickory_proto::op::Message as HMessage;
use hickory_proto::rr::RData;
use hickory_proto::serialize::binary::BinDecodable;
use nsdb::capture::{Extractor, Reader, map_file};
use nsdb::wire::{Message, NameBuf, read_name};

fn hname(n: &hickory_proto::rr::Name) -> String {
    let s = n.to_ascii().to_ascii_lowercase();
    let s = s.trim_end_matches('.');
    if s.is_empty() {
        ".".into()
    } else {
        s.to_string()
    }
}

#[test]
fn agrees_with_hickory_on_every_shared_capture() {
    let (mut both, mut only_ours, mut only_theirs, mut neither) = (0, 0, 0, 0);
    for (path, _, _) in manifest() {
        let map = map_file(&path).unwrap();
        let mut rd = Reader::new(&map).unwrap();
        let mut ex = Extractor::new(&[53]);
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        while let Ok(Some(f)) = rd.next_frame() {
            ex.frame(&f, &mut |p| msgs.push(p.msg.to_vec()));
        }
        ex.finish(&mut |p| msgs.push(p.msg.to_vec()));
        for wire in &msgs {
            let ours = Message::parse(wire).ok().and_then(|m| {
                let recs: Result<Vec<_>, _> = m.records().collect();
                recs.ok().map(|r| (m, r))
            });
            let theirs = HMessage::from_bytes(wire).ok();
            match (ours, theirs) {
                (Some((m, recs)), Some(h)) => {
                    both += 1;
                    assert_eq!(m.header.id, h.metadata.id, "{}", path.display());
                    let all: Vec<_> = h
                        .answers
                        .iter()
                        .chain(h.authorities.iter())
                        .chain(h.additionals.iter())
                        .collect();
                    // hickory moves EDNS OPT (and SIG(0)/TSIG) out of the additional section.
                    let recs: Vec<_> = recs
                        .into_iter()
                        .filter(|r| r.rtype != 41 && r.rtype != 250 && r.rtype != 24)
                        .collect();
                    let all: Vec<_> = all
                        .into_iter()
                        .filter(|r| !matches!(u16::from(r.record_type()), 41 | 250 | 24))
                        .collect();
                    assert_eq!(recs.len(), all.len(), "{}: record count", path.display());
                    let mut n = NameBuf::default();
                    for (a, b) in recs.iter().zip(all) {
                        read_name(wire, a.name_off, &mut n).unwrap();
                        if n.as_str().contains('\\') {
                            continue; // escaping conventions differ for odd bytes
                        }
                        assert_eq!(n.as_str(), hname(&b.name), "{}: owner", path.display());
                        assert_eq!(a.rtype, u16::from(b.record_type()), "{}", path.display());
                        assert_eq!(a.ttl, b.ttl, "{}: ttl", path.display());
                        match &b.data {
                            RData::A(x) => assert_eq!(a.addr(wire).unwrap(), Some(x.0.into())),
                            RData::AAAA(x) => assert_eq!(a.addr(wire).unwrap(), Some(x.0.into())),
                            RData::NS(x) => {
                                a.target(wire, &mut n).unwrap();
                                assert_eq!(
                                    n.as_str(),
                                    hname(&x.0),
                                    "{}: NS target",
                                    path.display()
                                );
                            }
                            _ => {}
                        }
                    }
                }
                (Some(_), None) => only_ours += 1,
                (None, Some(_)) => only_theirs += 1,
                (None, None) => neither += 1,
            }
        }
    }
    eprintln!("both {both}, only nsdb {only_ours}, only hickory {only_theirs}, neither {neither}");
    assert!(both > 2000, "too few messages compared: {both}");
    // hickory validates rdata of every type; nsdb reads only what it learns from, so it may
    // accept more, but never rejects a message hickory accepts.
    assert_eq!(only_theirs, 0, "messages hickory parses but nsdb rejects");
}
