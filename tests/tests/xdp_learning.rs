//! The XDP program's own learning under BPF_PROG_TEST_RUN: responses are paired with the
//! queries it saw leave, referral glue is in the allow map by the time the program returns,
//! and unsolicited, spoofed or replayed responses teach nothing.

use nsdb::{
    clock, live,
    loader::{Filter, Sizes},
};
use nsdb_common::{counter as c, kind, mode, resp_flag};
use nsdb_tests::packet::*;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const RESOLVER: &str = "192.0.2.53";
const ROOT: &str = "198.51.100.1";
const GLUE4: &str = "203.0.113.10";
const GLUE6: &str = "2001:db8:99::10";

struct Fx {
    filter: Filter,
    responses: aya::maps::RingBuf<aya::maps::MapData>,
}

impl Fx {
    fn new() -> Self {
        let mut filter = Filter::load(Sizes {
            allow_entries: 1024,
        })
        .expect("loading the XDP program");
        filter.set_mode(mode::ENFORCE).unwrap();
        filter
            .set_learning(true, 1, 86400, 0, 2_000_000_000)
            .unwrap();
        filter
            .add_internal("192.0.2.0/24".parse().unwrap())
            .unwrap();
        filter
            .allow(ROOT.parse().unwrap(), u64::MAX, kind::ROOT)
            .unwrap();
        let responses = filter.take_responses().unwrap();
        Fx { filter, responses }
    }
    fn run(&self, pkt: &[u8]) -> u32 {
        nsdb_tests::test_run(self.filter.program(), pkt, 1).return_value
    }
    fn query(&self, dst: &str, port: u16, id: u16, name: &str, qtype: u16) -> u32 {
        self.run(&frame(
            &[],
            &L3::v4(RESOLVER, dst),
            &udp(port, 53, &dns_query(id, name, qtype)),
        ))
    }
    fn response(&self, src: &str, port: u16, msg: &[u8]) -> u32 {
        self.run(&frame(&[], &L3::v4(src, RESOLVER), &udp(53, port, msg)))
    }
    /// A lookup of `name` (type A) at the root from `port` with `id`, answered with `addr`:
    /// both pass.
    fn lookup(&self, port: u16, id: u16, name: &str, ttl: u32, addr: &str) {
        assert_eq!(self.query(ROOT, port, id, name, 1), XDP_PASS, "{name}");
        let answer = a_answer(id, name, ttl, addr);
        assert_eq!(self.response(ROOT, port, &answer), XDP_PASS, "{name}");
    }
    fn count(&self, i: u32) -> u64 {
        self.filter.counters().unwrap().get(i)
    }
    fn records(&mut self) -> Vec<nsdb_common::ResponseEvent> {
        let mut v = Vec::new();
        while let Some(item) = self.responses.next() {
            v.push(live::decode(&item).expect("a whole response record"));
        }
        v
    }
}

fn referral(id: u16) -> Vec<u8> {
    dns_message(
        id,
        "www.example.test",
        1,
        &[],
        &[
            Rr::ns("test", 172800, "a.nic.test"),
            Rr::ns("test", 172800, "b.nic.test"),
        ],
        &[
            Rr::a("a.nic.test", 172800, GLUE4),
            Rr::aaaa("a.nic.test", 172800, GLUE6),
        ],
    )
}

#[test]
fn referral_glue_is_allowed_before_the_resolver_can_use_it() {
    let mut fx = Fx::new();
    // Before: the glue address is unknown.
    assert_eq!(fx.query(GLUE4, 1000, 1, "www.example.test", 1), XDP_DROP);
    assert_eq!(
        fx.query(ROOT, 40000, 0x1234, "www.example.test", 1),
        XDP_PASS
    );
    let msg = referral(0x1234);
    assert_eq!(fx.response(ROOT, 40000, &msg), XDP_PASS);
    assert_eq!(fx.count(c::RESP_PAIRED), 1);
    assert_eq!(fx.count(c::GLUE_LEARNED), 2, "the A and the AAAA glue");
    // The very next query to the glue address passes: learned while the referral was processed.
    assert_eq!(fx.query(GLUE4, 40001, 2, "www.example.test", 1), XDP_PASS);
    let v6 = frame(
        &[],
        &L3::v6("2001:db8:1::53", GLUE6),
        &udp(40002, 53, &dns_query(3, "www.example.test", 1)),
    );
    assert_eq!(fx.run(&v6), XDP_PASS);
    let e = fx.filter.allowed(GLUE4.parse().unwrap()).unwrap();
    assert_eq!(e.kind, kind::KERNEL_GLUE);
    let ttl_left = e.expires_ns.saturating_sub(clock::mono_ns()) / 1_000_000_000;
    // The glue's TTL (172800 s) clamped to the configured maximum (86400 s).
    assert!(
        (86390..=86400).contains(&ttl_left),
        "expiry follows the clamped TTL: {ttl_left} s"
    );
    // Userspace gets the paired response, whole, with what the program did.
    let recs = fx.records();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(&r.msg[..r.msg_len as usize], &msg[..]);
    assert_eq!((r.client_port, r.server_port, r.learned), (40000, 53, 2));
    assert_ne!(r.flags & resp_flag::KERNEL_LEARNED, 0);
    assert_ne!(r.flags & resp_flag::WALKED, 0);
    assert_eq!(r.stop, nsdb_common::walk_stop::NONE, "walked to its end");
    assert_eq!(&r.server[..4], &[198, 51, 100, 1]);
}

#[test]
fn unsolicited_spoofed_and_replayed_responses_teach_nothing() {
    let mut fx = Fx::new();
    // No query at all.
    assert_eq!(fx.response(ROOT, 40000, &referral(7)), XDP_PASS);
    // A query, then responses with the wrong id, the wrong port, from the wrong server.
    assert_eq!(fx.query(ROOT, 40000, 7, "www.example.test", 1), XDP_PASS);
    assert_eq!(fx.response(ROOT, 40000, &referral(8)), XDP_PASS);
    assert_eq!(fx.response(ROOT, 40001, &referral(7)), XDP_PASS);
    assert_eq!(fx.response("198.51.100.2", 40000, &referral(7)), XDP_PASS);
    assert_eq!(fx.count(c::RESP_UNSOLICITED), 4);
    assert_eq!(fx.count(c::GLUE_LEARNED), 0);
    assert_eq!(
        fx.query(GLUE4, 1000, 1, "x.test", 1),
        XDP_DROP,
        "nothing was learned"
    );
    // The genuine response teaches; a replay of it afterwards is unsolicited.
    assert_eq!(fx.response(ROOT, 40000, &referral(7)), XDP_PASS);
    assert_eq!(fx.count(c::GLUE_LEARNED), 2);
    assert_eq!(fx.response(ROOT, 40000, &referral(7)), XDP_PASS);
    assert_eq!(fx.count(c::RESP_UNSOLICITED), 5);
    assert_eq!(fx.count(c::RESP_PAIRED), 1);
    assert_eq!(
        fx.records().len(),
        1,
        "only the paired response reaches userspace"
    );
}

#[test]
fn addresses_in_answers_are_not_glue() {
    let mut fx = Fx::new();
    assert_eq!(fx.query(ROOT, 40000, 9, "www.example.test", 1), XDP_PASS);
    // An answer (no NS records) with an address in the additional section: nothing to learn.
    let msg = dns_message(
        9,
        "www.example.test",
        1,
        &[Rr::a("www.example.test", 300, "203.0.113.80")],
        &[],
        &[Rr::a("x.example.test", 300, GLUE4)],
    );
    assert_eq!(fx.response(ROOT, 40000, &msg), XDP_PASS);
    assert_eq!(fx.count(c::RESP_PAIRED), 1);
    assert_eq!(fx.count(c::GLUE_LEARNED), 0);
    assert_eq!(fx.query("203.0.113.80", 1, 1, "x.test", 1), XDP_DROP);
    let r = fx.records();
    assert_eq!(
        (
            r.len(),
            r[0].learned,
            r[0].flags & resp_flag::KERNEL_LEARNED
        ),
        (1, 0, 0)
    );
}

#[test]
fn pending_glueless_ns_name_is_learned_from_its_lookup() {
    let mut fx = Fx::new();
    // Userspace marks ns1.other.test (a glue-less NS name) as pending.
    fx.filter
        .add_pending(
            &wire_name("NS1.Other.Test"),
            clock::mono_ns() + 2_000_000_000,
        )
        .unwrap();
    fx.lookup(40000, 11, "ns1.other.test", 3600, "203.0.113.99");
    assert_eq!(fx.count(c::PENDING_LEARNED), 1);
    assert_eq!(fx.count(c::GLUE_LEARNED), 1);
    assert_eq!(
        fx.query("203.0.113.99", 40001, 12, "www.other.test", 1),
        XDP_PASS
    );
    // A lookup of a name that is not pending teaches nothing.
    fx.lookup(40000, 13, "www.other.test", 3600, "203.0.113.98");
    assert_eq!(fx.count(c::GLUE_LEARNED), 1);
    assert_eq!(fx.records().len(), 2);
}

#[test]
fn root_referral_with_13_glue_pairs_is_learned_whole() {
    let mut fx = Fx::new();
    let msg = referral_13(21, "198.18.0.", "2001:db8:18::");
    assert!(msg.len() > 512);
    assert_eq!(fx.query(ROOT, 40000, 21, "www.example.test", 1), XDP_PASS);
    assert_eq!(fx.response(ROOT, 40000, &msg), XDP_PASS);
    assert_eq!(fx.count(c::GLUE_LEARNED), 26);
    assert_eq!(fx.count(c::RESP_WALK_LIMIT), 0);
    for i in 1..=13 {
        assert_eq!(
            fx.query(&format!("198.18.0.{i}"), 40001, 1, "x.test", 1),
            XDP_PASS,
            "glue {i}"
        );
    }
    // The same referral again (a second query) refreshes nothing: the expiry is not later.
    assert_eq!(fx.query(ROOT, 40002, 22, "www.example.test", 1), XDP_PASS);
    let mut again = msg.clone();
    again[..2].copy_from_slice(&22u16.to_be_bytes());
    assert_eq!(fx.response(ROOT, 40002, &again), XDP_PASS);
    assert_eq!(fx.count(c::GLUE_LEARNED), 26);
    assert_eq!(fx.records().len(), 2);
}

#[test]
fn an_unknown_server_cannot_register_itself() {
    let mut fx = Fx::new();
    fx.filter.set_mode(mode::MONITOR).unwrap();
    // A bot's query to its C&C server passes in monitor mode; the C&C answers with a
    // "referral" naming itself as a name server, with glue.
    let cc = "198.18.66.7";
    assert_eq!(fx.query(cc, 40000, 5, "cmd.c2.test", 16), XDP_PASS);
    let msg = dns_message(
        5,
        "cmd.c2.test",
        16,
        &[],
        &[Rr::ns("c2.test", 86400, "ns.c2.test")],
        &[Rr::a("ns.c2.test", 86400, cc)],
    );
    assert_eq!(fx.response(cc, 40000, &msg), XDP_PASS);
    assert_eq!(fx.count(c::RESP_PAIRED), 1);
    assert_eq!(fx.count(c::RESP_UNTRUSTED), 1);
    assert_eq!(fx.count(c::GLUE_LEARNED), 0);
    assert!(fx.filter.allowed(cc.parse().unwrap()).is_none());
    assert!(
        fx.records().is_empty(),
        "an untrusted response is not handed to the learner"
    );
    // The next query to it is still unknown.
    assert_eq!(fx.query(cc, 40001, 6, "cmd.c2.test", 16), XDP_PASS);
    let unknown = fx.filter.counters().unwrap().query(
        nsdb_common::verdict::UNKNOWN,
        nsdb_common::action::PASS,
        nsdb_common::family::V4,
        nsdb_common::transport::UDP,
    );
    assert_eq!(unknown, 2);
}

#[test]
fn glueless_ns_names_of_a_referral_are_marked_pending_in_the_kernel() {
    let mut fx = Fx::new();
    // Referral for example.test to ns1.other.test, with no glue. The NS target is compressed:
    // "ns1.other" then a pointer to the question's "test" label (offset 24).
    assert_eq!(fx.query(ROOT, 40000, 31, "www.example.test", 1), XDP_PASS);
    let mut target = b"\x03ns1\x05other".to_vec();
    target.extend_from_slice(&[0xC0, 24]);
    let ns = Rr {
        name: "example.test".into(),
        rtype: 2,
        ttl: 3600,
        rdata: target,
    };
    let msg = dns_message(31, "www.example.test", 1, &[], &[ns], &[]);
    assert_eq!(fx.response(ROOT, 40000, &msg), XDP_PASS);
    assert_eq!(fx.count(c::GLUE_LEARNED), 0, "no glue to learn yet");
    // The resolver looks the NS name up (here at the root again, a registered server); the
    // answer is learned by the program as it passes.
    fx.lookup(40001, 32, "NS1.other.TEST", 3600, "203.0.113.77");
    assert_eq!(fx.count(c::PENDING_LEARNED), 1);
    assert_eq!(fx.count(c::GLUE_LEARNED), 1);
    assert_eq!(
        fx.query("203.0.113.77", 40002, 33, "www.example.test", 1),
        XDP_PASS
    );
    // A name that was never an NS target is not pending: its answer teaches nothing.
    fx.lookup(40003, 34, "www.other.test", 3600, "203.0.113.78");
    assert_eq!(fx.count(c::GLUE_LEARNED), 1);
    assert_eq!(fx.query("203.0.113.78", 40004, 35, "x.test", 1), XDP_DROP);
    assert_eq!(fx.records().len(), 3);
}

#[test]
fn compressed_root_referral_is_learned_whole() {
    // As servers send it: NS owners point into the question, NS targets share `nic.test`,
    // glue owners are pointers to the targets.
    let fx = Fx::new();
    let msg = referral_13_compressed(41, "198.18.1.", "2001:db8:18:1::");
    assert!(msg.len() < referral_13(41, "198.18.1.", "2001:db8:18:1::").len());
    assert_eq!(fx.query(ROOT, 40000, 41, "www.example.test", 1), XDP_PASS);
    assert_eq!(fx.response(ROOT, 40000, &msg), XDP_PASS);
    assert_eq!(fx.count(c::GLUE_LEARNED), 26);
    assert_eq!(fx.count(c::RESP_WALK_LIMIT), 0);
    for i in 1..=13 {
        assert_eq!(
            fx.query(&format!("198.18.1.{i}"), 40001, 1, "x.test", 1),
            XDP_PASS,
            "glue {i}"
        );
        let v6 = frame(
            &[],
            &L3::v6("2001:db8:1::53", &format!("2001:db8:18:1::{i}")),
            &udp(40002, 53, &dns_query(3, "x.test", 1)),
        );
        assert_eq!(fx.run(&v6), XDP_PASS, "glue {i} (AAAA)");
    }
    // Every NS target was hashed through its pointers: the lookup of one (the resolver
    // ignoring the glue) is answered and learned in the kernel, as pending.
    fx.lookup(40003, 42, "k.nic.test", 3600, "203.0.113.91");
    assert_eq!(fx.count(c::PENDING_LEARNED), 1);
    assert!(fx.filter.allowed("203.0.113.91".parse().unwrap()).is_some());
}

/// A referral whose glue owners are written out in full with `labels` labels.
fn referral_long_owners(id: u16, owner: &str) -> Vec<u8> {
    dns_message(
        id,
        "www.example.test",
        1,
        &[],
        &[Rr::ns("test", 172800, owner)],
        &[
            Rr::a(owner, 172800, "203.0.113.21"),
            Rr::a(owner, 172800, "203.0.113.22"),
            Rr::a(owner, 172800, "203.0.113.23"),
        ],
    )
}

#[test]
fn owner_names_longer_than_the_inline_skip_are_walked_to_their_end() {
    // Four labels are skipped in line, the rest by the bpf_loop walk: owners of three to nine
    // labels all lead to the same records.
    for owner in [
        "ns.nic.test",
        "a.ns.nic.test",
        "b.a.ns.nic.test",
        "e.d.c.b.a.ns.nic.test",
        "h.g.f.e.d.c.b.a.ns.nic.test",
    ] {
        let fx = Fx::new();
        assert_eq!(fx.query(ROOT, 40000, 51, "www.example.test", 1), XDP_PASS);
        let msg = referral_long_owners(51, owner);
        assert_eq!(fx.response(ROOT, 40000, &msg), XDP_PASS, "{owner}");
        assert_eq!(fx.count(c::GLUE_LEARNED), 3, "{owner}");
        assert_eq!(fx.count(c::RESP_WALK_LIMIT), 0, "{owner}");
    }
}

#[test]
fn a_bad_label_in_an_owner_name_stops_the_walk_there() {
    // The second glue owner's label at `bad` (0-based) gets the reserved type 0b01 (RFC 6891
    // §5): the first glue record is learned, the walk stops at the second, nothing after it.
    let owner = "e.d.c.b.a.ns.nic.test";
    for bad in [0usize, 3, 4, 6] {
        let fx = Fx::new();
        assert_eq!(fx.query(ROOT, 40000, 52, "www.example.test", 1), XDP_PASS);
        let mut msg = referral_long_owners(52, owner);
        let starts = name_offsets(&msg, owner);
        // The NS target, then the three glue owners.
        assert_eq!(starts.len(), 4);
        let mut at = starts[2];
        for _ in 0..bad {
            at += 1 + msg[at] as usize;
        }
        msg[at] |= 0x40;
        assert_eq!(fx.response(ROOT, 40000, &msg), XDP_PASS, "label {bad}");
        assert_eq!(fx.count(c::GLUE_LEARNED), 1, "label {bad}");
        assert_eq!(fx.count(c::RESP_WALK_LIMIT), 1, "label {bad}");
        assert!(fx.filter.allowed("203.0.113.21".parse().unwrap()).is_some());
        assert!(fx.filter.allowed("203.0.113.22".parse().unwrap()).is_none());
        assert!(fx.filter.allowed("203.0.113.23".parse().unwrap()).is_none());
    }
}

/// An edge-triggered epoll instance watching the RESPONSES ring of `fx`: the ring's fd becomes
/// ready in it only when the program wakes readers, once per wake-up.
struct RingWatch(std::os::fd::OwnedFd);

impl RingWatch {
    fn new(fx: &mut Fx) -> Self {
        use std::os::fd::{AsRawFd, FromRawFd};
        assert!(fx.records().is_empty(), "watch an empty ring");
        // SAFETY: plain syscalls on descriptors this test owns; `ev` is valid for reading.
        unsafe {
            let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            assert!(ep >= 0, "epoll_create1");
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                u64: 1,
            };
            let rc = libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fx.responses.as_raw_fd(), &mut ev);
            assert_eq!(rc, 0, "epoll_ctl");
            RingWatch(std::os::fd::OwnedFd::from_raw_fd(ep))
        }
    }
    /// Did the program wake the ring's readers since the last call? Waits up to a second for
    /// the wake-up (the kernel delivers it from irq_work, just after the program returns).
    fn woken(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 1];
        // SAFETY: `ev` has room for the one event asked for.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), ev.as_mut_ptr(), 1, 1000) };
        assert!(n >= 0, "epoll_wait");
        n == 1
    }
}

/// Where `name`, written in full, occurs in `msg`.
fn name_offsets(msg: &[u8], name: &str) -> Vec<usize> {
    let wire = wire_name(name);
    msg.windows(wire.len())
        .enumerate()
        .filter(|(_, w)| *w == &wire[..])
        .map(|(i, _)| i)
        .collect()
}

/// `referral` with the reserved label type in the first glue record's owner: the program's
/// walk stops there (walk_stop::OWNER), so only userspace can learn the rest.
fn referral_with_bad_glue_owner(id: u16) -> Vec<u8> {
    let mut msg = referral(id);
    let starts = name_offsets(&msg, "a.nic.test");
    // The NS target, then the owners of the A and the AAAA glue.
    assert_eq!(starts.len(), 3);
    msg[starts[1]] |= 0x40;
    msg
}

impl Fx {
    /// A query to the root from port `port` with id `port`, and its referral (`msg(id)`).
    fn pair(&self, port: u16, msg: impl Fn(u16) -> Vec<u8>) {
        assert_eq!(
            self.query(ROOT, port, port, "www.example.test", 1),
            XDP_PASS
        );
        assert_eq!(self.response(ROOT, port, &msg(port)), XDP_PASS);
    }
}

#[test]
fn batched_responses_wake_the_reader_when_the_ring_was_empty_or_userspace_must_learn_now() {
    let mut fx = Fx::new();
    fx.filter.set_response_batching(true).unwrap();
    let watch = RingWatch::new(&mut fx);
    // Into an empty ring: the reader is woken (and, batching, reads a few ms later).
    fx.pair(40000, referral);
    assert_eq!(fx.count(c::GLUE_LEARNED), 2);
    assert!(watch.woken(), "the first response into an empty ring");
    // While it waits, responses the program learned from whole wake nobody...
    fx.pair(40001, referral);
    fx.pair(40002, referral);
    assert!(!watch.woken(), "a response learned whole, ring not empty");
    // ...but one it could not walk whole does: userspace must learn it now.
    fx.pair(40003, referral_with_bad_glue_owner);
    assert_eq!(fx.count(c::RESP_WALK_LIMIT), 1);
    assert!(watch.woken(), "a response the program could not walk whole");
    let recs = fx.records();
    assert_eq!(recs.len(), 4, "none lost");
    assert_eq!(
        recs.iter().map(|r| r.stop != 0).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    // The ring is empty again: the next response wakes the reader.
    fx.pair(40004, referral);
    assert!(watch.woken(), "into an empty ring again");
    // Learning off in the kernel: no forced wake-ups (the ring buffer's own rule), since
    // userspace reads every response at once.
    fx.filter
        .set_learning(false, 1, 86400, 0, 2_000_000_000)
        .unwrap();
    fx.pair(40005, referral_with_bad_glue_owner);
    assert!(
        !watch.woken(),
        "learning off: ring not empty, nothing forced"
    );
    assert_eq!(fx.records().len(), 2);
    // Batching off: likewise.
    fx.filter
        .set_learning(true, 1, 86400, 0, 2_000_000_000)
        .unwrap();
    fx.filter.set_response_batching(false).unwrap();
    fx.pair(40006, referral);
    assert!(watch.woken(), "into an empty ring");
    fx.pair(40007, referral_with_bad_glue_owner);
    assert!(
        !watch.woken(),
        "batching off: ring not empty, nothing forced"
    );
    assert_eq!(fx.records().len(), 2);
}

#[test]
fn batched_responses_wake_the_reader_once_a_quarter_of_the_ring_is_queued() {
    let mut fx = Fx::new();
    fx.filter.set_response_batching(true).unwrap();
    let watch = RingWatch::new(&mut fx);
    // Each record takes its size rounded up to 8 plus an 8-byte header.
    let record = std::mem::size_of::<nsdb_common::ResponseEvent>().div_ceil(8) * 8 + 8;
    let threshold = nsdb::loader::RESPONSES_WAKE_BYTES as usize;
    let below = threshold.div_ceil(record) - 1;
    let pair = |i: usize| {
        let (port, id) = (10000 + (i % 50000) as u16, i as u16);
        assert_eq!(fx.query(ROOT, port, id, "www.example.test", 1), XDP_PASS);
        assert_eq!(fx.response(ROOT, port, &referral(id)), XDP_PASS);
    };
    pair(0);
    assert!(watch.woken(), "the first record");
    for i in 1..below {
        pair(i);
    }
    assert_eq!(fx.count(c::RESP_SENT), below as u64);
    assert!(
        !watch.woken(),
        "{below} records ({} bytes) wake nobody more",
        below * record
    );
    pair(below);
    assert!(
        watch.woken(),
        "record {} crosses {threshold} bytes",
        below + 1
    );
    assert_eq!(fx.records().len(), below + 1, "none lost");
}

/// DNS over TCP (RFC 7766): a resolver that asks over TCP (after a truncated UDP answer, or
/// always, as Unbound's `tcp-upstream: yes`) gets its referrals in TCP segments.
mod tcp {
    use super::*;
    use nsdb::{
        learn::{Engine, LearnConfig},
        live::LiveLearner,
        roots::Hint,
    };

    const SYN_ACK: u8 = TCP_SYN | TCP_ACK;

    /// A segment between the resolver's `port` and `server`:53.
    fn seg(server: &str, port: u16, to_server: bool, flags: u8, seq: u32, data: &[u8]) -> Vec<u8> {
        if to_server {
            frame(
                &[],
                &L3::v4(RESOLVER, server),
                &tcp_seq(port, 53, flags, seq, data),
            )
        } else {
            frame(
                &[],
                &L3::v4(server, RESOLVER),
                &tcp_seq(53, port, flags, seq, data),
            )
        }
    }

    /// The resolver opens a connection from port 40000 to the root server, which answers with
    /// initial sequence number `isn`: both segments pass.
    fn open(fx: &mut Fx, isn: u32) {
        assert_eq!(fx.run(&seg(ROOT, 40000, true, TCP_SYN, 100, &[])), XDP_PASS);
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, SYN_ACK, isn, &[])),
            XDP_PASS
        );
    }

    /// `msg` behind its two-byte length (RFC 1035 §4.2.2).
    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    /// The engine as the daemon builds it, trusting the test root for every zone.
    fn learner() -> LiveLearner {
        let cfg = LearnConfig {
            root_hints: vec![Hint {
                name: "a.root-servers.test".into(),
                addr: ROOT.parse().unwrap(),
            }],
            ..LearnConfig::default()
        };
        LiveLearner::new(Engine::new(cfg), None)
    }

    #[test]
    fn a_referral_in_one_segment_is_learned_before_the_next_connection() {
        let mut fx = Fx::new();
        let glue_syn = seg(GLUE4, 40001, true, TCP_SYN, 7, &[]);
        assert_eq!(fx.run(&glue_syn), XDP_DROP, "unknown before the referral");
        open(&mut fx, 5000);
        // The resolver's query and the server's bare ACK: nothing to learn from.
        let query = framed(&dns_query(0x1234, "www.example.test", 1));
        assert_eq!(
            fx.run(&seg(ROOT, 40000, true, TCP_ACK | TCP_PSH, 101, &query)),
            XDP_PASS
        );
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, TCP_ACK, 5001, &[])),
            XDP_PASS
        );
        let msg = referral(0x1234);
        let data = framed(&msg);
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, TCP_ACK | TCP_PSH, 5001, &data)),
            XDP_PASS
        );
        assert_eq!(fx.count(c::GLUE_LEARNED), 2, "the A and the AAAA glue");
        assert_eq!(
            fx.run(&glue_syn),
            XDP_PASS,
            "learned in the segment's own pass"
        );
        assert_eq!(
            fx.filter.allowed(GLUE4.parse().unwrap()).unwrap().kind,
            kind::KERNEL_GLUE
        );
        assert_eq!(
            fx.count(c::TCP_RESP_SEGMENTS),
            2,
            "the SYN-ACK and the data"
        );
        assert_eq!(
            fx.count(c::TCP_OTHER),
            2,
            "the query's segment and the bare ACK"
        );
        assert_eq!(fx.count(c::RESP_PAIRED), 0, "UDP pairing is apart");
        let recs = fx.records();
        assert_eq!(recs.len(), 2);
        let (syn, d) = (&recs[0], &recs[1]);
        assert_eq!(
            (syn.flags, syn.msg_len, syn.seq, syn.tcp_flags),
            (resp_flag::TCP, 0, 5000, SYN_ACK)
        );
        assert_eq!(
            d.flags,
            resp_flag::TCP | resp_flag::KERNEL_LEARNED | resp_flag::WALKED
        );
        assert_eq!(
            (d.seq, d.learned, d.client_port, d.server_port),
            (5001, 2, 40000, 53)
        );
        assert_eq!(&d.msg[..d.msg_len as usize], &data[..]);

        // Userspace reassembles the stream and learns the referral as the engine's own. The
        // connection opened long before: resolvers keep TCP connections for reuse, past the
        // engine's 30 s query timeout.
        let mut live = learner();
        for r in &recs {
            let mut r = *r;
            r.query_ts_ns = r.query_ts_ns.saturating_sub(120_000_000_000);
            live.on_response(&mut fx.filter, &r);
        }
        assert_eq!(
            (
                live.stats.tcp_segments,
                live.stats.tcp_messages,
                live.stats.withdrawn
            ),
            (2, 1, 0)
        );
        let e = live.engine().stats();
        assert_eq!((e.ns_records, e.glue_addrs), (2, 2), "{e:?}");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            live.engine()
                .is_registered(GLUE4.parse().unwrap(), now_ms)
                .is_some()
        );
        assert_eq!(
            fx.filter.allowed(GLUE4.parse().unwrap()).unwrap().kind,
            kind::GLUE,
            "confirmed by the engine"
        );
    }

    #[test]
    fn a_referral_split_across_segments_is_reassembled_in_userspace() {
        let mut fx = Fx::new();
        open(&mut fx, u32::MAX - 10);
        let data = framed(&referral(0x4321));
        let (a, b) = data.split_at(30);
        // The sequence numbers wrap between the two pieces; the second arrives first.
        let start = (u32::MAX - 10).wrapping_add(1);
        let second = seg(
            ROOT,
            40000,
            false,
            TCP_ACK | TCP_PSH,
            start.wrapping_add(30),
            b,
        );
        assert_eq!(fx.run(&second), XDP_PASS);
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, TCP_ACK, start, a)),
            XDP_PASS
        );
        assert_eq!(
            fx.count(c::GLUE_LEARNED),
            0,
            "neither piece is a whole message"
        );
        assert_eq!(fx.count(c::TCP_RESP_SEGMENTS), 3);
        let recs = fx.records();
        assert_eq!(recs.len(), 3);
        assert!(recs.iter().all(|r| r.flags == resp_flag::TCP), "not walked");
        let mut live = learner();
        for r in &recs {
            live.on_response(&mut fx.filter, r);
        }
        assert_eq!((live.stats.tcp_messages, live.stats.tcp_gaps), (1, 0));
        assert_eq!(live.engine().stats().glue_addrs, 2);
        assert_eq!(
            fx.filter.allowed(GLUE4.parse().unwrap()).map(|e| e.kind),
            Some(kind::GLUE),
            "userspace wrote what the program could not learn"
        );
        assert_eq!(fx.run(&seg(GLUE4, 40001, true, TCP_SYN, 7, &[])), XDP_PASS);
    }

    /// A segment longer than the program copies (TC on a device that merges segments): its
    /// copy ends in the middle of a message. The stream skips the lost bytes once, counted as
    /// one gap, and the next segment's referral is read from the stream at once (it used to
    /// wait as out of order for the hole to fill, and the hole was counted twice).
    #[test]
    fn a_segment_longer_than_the_copy_is_one_gap_and_what_follows_is_learned_at_once() {
        let mut fx = Fx::new();
        open(&mut fx, 10);
        let first = dns_response(0x0101, "www.example.test", 1);
        let mut data = framed(&first);
        // An answer of 2,600 bytes (its contents are never read: its end is lost).
        let mut big = dns_response(0x0102, "big.example.test", 1);
        big.resize(2600, 0);
        data.extend_from_slice(&framed(&big));
        assert!(data.len() > nsdb_common::RESP_MSG_MAX);
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, TCP_ACK | TCP_PSH, 11, &data)),
            XDP_PASS
        );
        let next = 11 + data.len() as u32;
        assert_eq!(
            fx.run(&seg(
                ROOT,
                40000,
                false,
                TCP_ACK | TCP_PSH,
                next,
                &framed(&referral(0x0103))
            )),
            XDP_PASS
        );
        let recs = fx.records();
        assert_eq!(recs.len(), 3);
        assert_ne!(recs[1].flags & resp_flag::TRUNCATED_COPY, 0);
        assert_eq!(
            (recs[1].msg_len as usize, recs[1].orig_len as usize),
            (nsdb_common::RESP_MSG_MAX, data.len())
        );
        let mut live = learner();
        for r in &recs {
            live.on_response(&mut fx.filter, r);
        }
        assert_eq!(
            (live.stats.tcp_messages, live.stats.tcp_gaps),
            (2, 1),
            "the first answer and the referral; one hole"
        );
        assert_eq!(
            fx.filter.allowed(GLUE4.parse().unwrap()).map(|e| e.kind),
            Some(kind::GLUE),
            "the referral after the hole is confirmed by the engine"
        );
        // Both whole-message starts were walked by the program; the first stopped nowhere.
        assert_eq!(live.stats.walk_stops.iter().sum::<u64>(), 2);
        let fin = seg(
            ROOT,
            40000,
            false,
            TCP_ACK | TCP_FIN,
            next + 2 + referral(0x0103).len() as u32,
            &[],
        );
        assert_eq!(fx.run(&fin), XDP_PASS);
        for r in &fx.records() {
            live.on_response(&mut fx.filter, r);
        }
        assert_eq!(
            live.stats.tcp_gaps, 1,
            "the hole is not counted again at FIN"
        );
    }

    #[test]
    fn a_segment_with_two_referrals_has_the_first_walked_and_both_learned() {
        let mut fx = Fx::new();
        open(&mut fx, 10);
        // Two pipelined answers the server's stack sent in one segment.
        let second = dns_message(
            0x2222,
            "www.example.org",
            1,
            &[],
            &[Rr::ns("org", 172800, "a.nic.org")],
            &[Rr::a("a.nic.org", 172800, "203.0.113.11")],
        );
        let mut data = framed(&referral(0x1111));
        data.extend_from_slice(&framed(&second));
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, TCP_ACK | TCP_PSH, 11, &data)),
            XDP_PASS
        );
        assert_eq!(
            fx.count(c::GLUE_LEARNED),
            2,
            "the first message's glue, in the kernel"
        );
        assert!(fx.filter.allowed("203.0.113.11".parse().unwrap()).is_none());
        let recs = fx.records();
        assert_eq!(
            recs[1].flags,
            resp_flag::TCP | resp_flag::KERNEL_LEARNED | resp_flag::WALKED
        );
        let mut live = learner();
        for r in &recs {
            live.on_response(&mut fx.filter, r);
        }
        assert_eq!((live.stats.tcp_messages, live.stats.withdrawn), (2, 0));
        for a in [GLUE4, "203.0.113.11"] {
            assert_eq!(
                fx.filter.allowed(a.parse().unwrap()).map(|e| e.kind),
                Some(kind::GLUE),
                "{a}"
            );
        }
    }

    /// A segment in the middle of a long message can look like a whole referral: the program
    /// walks it, but the stream never holds that message, so userspace withdraws what the
    /// program learned from it. (A registered server, which an attacker can own, could
    /// otherwise have addresses allowed that no engine rule accepts.)
    #[test]
    fn what_the_program_learned_from_a_look_alike_segment_is_withdrawn() {
        let mut fx = Fx::new();
        open(&mut fx, 10);
        // The stream announces a 3,000-byte message and sends 1,000 bytes of it...
        let mut start = 3000u16.to_be_bytes().to_vec();
        start.extend_from_slice(&[0; 1000]);
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, TCP_ACK, 11, &start)),
            XDP_PASS
        );
        // ...then a segment of its middle that reads like a whole referral.
        let look_alike = framed(&referral(0x1234));
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, TCP_ACK, 1013, &look_alike)),
            XDP_PASS
        );
        assert_eq!(fx.count(c::GLUE_LEARNED), 2, "the program walked it");
        assert!(fx.filter.allowed(GLUE4.parse().unwrap()).is_some());
        let recs = fx.records();
        let mut live = learner();
        for r in &recs {
            live.on_response(&mut fx.filter, r);
        }
        assert_eq!(
            live.stats.tcp_messages, 0,
            "the 3,000-byte message is not complete"
        );
        assert_eq!(live.stats.withdrawn, 2, "the A and the AAAA glue");
        assert!(fx.filter.allowed(GLUE4.parse().unwrap()).is_none());
        assert!(fx.filter.allowed(GLUE6.parse().unwrap()).is_none());
    }

    #[test]
    fn segments_of_unseen_untrusted_or_closed_connections_teach_nothing() {
        let mut fx = Fx::new();
        let data = framed(&referral(1));
        // No SYN seen for this connection.
        assert_eq!(
            fx.run(&seg(ROOT, 40000, false, TCP_ACK | TCP_PSH, 1, &data)),
            XDP_PASS
        );
        // A connection monitor mode let through to an unknown server.
        fx.filter.set_mode(mode::MONITOR).unwrap();
        let cc = "198.51.100.66";
        assert_eq!(fx.run(&seg(cc, 40001, true, TCP_SYN, 1, &[])), XDP_PASS);
        assert_eq!(fx.run(&seg(cc, 40001, false, SYN_ACK, 1, &[])), XDP_PASS);
        assert_eq!(
            fx.run(&seg(cc, 40001, false, TCP_ACK | TCP_PSH, 2, &data)),
            XDP_PASS
        );
        // A trusted connection, after the server's FIN: its slot is gone.
        assert_eq!(fx.run(&seg(ROOT, 40002, true, TCP_SYN, 1, &[])), XDP_PASS);
        assert_eq!(
            fx.run(&seg(ROOT, 40002, false, TCP_ACK | TCP_FIN, 9, &[])),
            XDP_PASS
        );
        assert_eq!(
            fx.run(&seg(ROOT, 40002, false, TCP_ACK | TCP_PSH, 10, &data)),
            XDP_PASS
        );
        // Same after an RST.
        assert_eq!(fx.run(&seg(ROOT, 40003, true, TCP_SYN, 1, &[])), XDP_PASS);
        assert_eq!(fx.run(&seg(ROOT, 40003, false, TCP_RST, 9, &[])), XDP_PASS);
        assert_eq!(
            fx.run(&seg(ROOT, 40003, false, TCP_ACK | TCP_PSH, 9, &data)),
            XDP_PASS
        );
        assert_eq!(fx.count(c::GLUE_LEARNED), 0);
        assert!(fx.filter.allowed(GLUE4.parse().unwrap()).is_none());
        // Only the FIN and the RST of the trusted connections reached userspace.
        assert_eq!(fx.count(c::TCP_RESP_SEGMENTS), 2);
        let recs = fx.records();
        assert_eq!(
            recs.iter().map(|r| r.tcp_flags).collect::<Vec<_>>(),
            vec![TCP_ACK | TCP_FIN, TCP_RST]
        );
        assert_eq!(
            fx.count(c::TCP_OTHER),
            5,
            "{:?}",
            fx.filter.counters().unwrap()
        );
        // A trusted connection's segment whose bytes are not a response (QR=0: a piece of a
        // stream that only looks like a length and a header) is handed over, not walked.
        let mut not_response = referral(2);
        not_response[2] &= 0x7f;
        assert_eq!(fx.run(&seg(ROOT, 40005, true, TCP_SYN, 1, &[])), XDP_PASS);
        let d = framed(&not_response);
        assert_eq!(
            fx.run(&seg(ROOT, 40005, false, TCP_ACK | TCP_PSH, 2, &d)),
            XDP_PASS
        );
        assert_eq!(fx.count(c::GLUE_LEARNED), 0);
        let recs = fx.records();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].flags, resp_flag::TCP, "not walked");
        // A UDP response with the connection's addresses and ports does not pair with it.
        assert_eq!(fx.run(&seg(ROOT, 40004, true, TCP_SYN, 1, &[])), XDP_PASS);
        assert_eq!(fx.response(ROOT, 40004, &referral(0)), XDP_PASS);
        assert_eq!(fx.count(c::RESP_UNSOLICITED), 1);
    }

    #[test]
    fn a_short_frames_ethernet_padding_is_not_payload() {
        let mut fx = Fx::new();
        assert_eq!(fx.run(&seg(ROOT, 40000, true, TCP_SYN, 1, &[])), XDP_PASS);
        // A SYN-ACK is 54 bytes; a NIC pads it to the 60-byte minimum.
        let mut synack = seg(ROOT, 40000, false, SYN_ACK, 77, &[]);
        assert_eq!(synack.len(), 54);
        synack.extend_from_slice(&[0xab; 6]);
        assert_eq!(fx.run(&synack), XDP_PASS);
        let recs = fx.records();
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].msg_len, recs[0].orig_len, recs[0].seq), (0, 0, 77));
    }
}
