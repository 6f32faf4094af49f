//! A small Internet in three network namespaces, for testing live learning with real DNS
//! software: a LAN with clients and a real Unbound full resolver, a gateway router (where the
//! test runs nsdb on both interfaces), and an "Internet" namespace with real NSD authoritative
//! servers forming a delegation tree from a test root zone down to domains, plus C&C servers.
//!
//! ```text
//!  lan  eth0 192.0.2.10 (client/bot), 192.0.2.53 (Unbound)       2001:db8:1::10, 2001:db8:1::53
//!   │
//!  gw   lan0 192.0.2.1/24 2001:db8:1::1/64   (nsdb: --iface lan0 --iface wan0)
//!       wan0 198.51.100.1/24 2001:db8:2::1/64
//!       routes: 203.0.113.0/24, 198.18.0.0/15, 2001:db8::/32 via inet
//!   │
//!  inet eth0 198.51.100.2/24 2001:db8:2::2/64 + every server address below (/32, /128)
//! ```
//!
//! | host (one NSD process each)    | IPv4          | IPv6            | zones                         |
//! |--------------------------------|---------------|-----------------|-------------------------------|
//! | a.root-servers.test            | 203.0.113.1   | 2001:db8:53::1  | `.`                           |
//! | b.root-servers.test (same NSD) | 203.0.113.2   | —               | `.`                           |
//! | ns1.nic.test                   | 203.0.113.10  | 2001:db8:53::10 | `test.`                       |
//! | a.nic.example                  | 203.0.113.20  | 2001:db8:53::20 | `example.`                    |
//! | ns1.glue.test / ns2.glue.test  | 203.0.113.30/31 | 2001:db8:53::30/31 | `glue.test.` (in-bailiwick A+AAAA glue), `glueless2.example.` (NS names in another TLD, no glue) |
//! | ns1.dns-host.example           | 203.0.113.40  | 2001:db8:53::40 | `dns-host.example.`           |
//! | ns.dns-host.example            | 198.18.1.1    | 2001:db8:18::1  | `glueless.test.` (glue-less: its NS name lives in `dns-host.example.`) |
//! | ns.v6only.test                 | —             | 2001:db8:53::60 | `v6only.test.` (AAAA-only glue: IPv6 transport) |
//! | ns.big.test                    | 203.0.113.70  | 2001:db8:53::70 | `big.test.` (100-address A RRsets: truncated over UDP, Unbound retries over TCP) |
//! | ns.short.test                  | 203.0.113.80  | 2001:db8:53::80 | `short.test.` (NS, glue and data TTL [`SHORT_TTL`] s) |
//! | ns.partial.test                | 203.0.113.90  | 2001:db8:53::90 | `partial.test.` (the `test.` referral carries its A glue only; its AAAA is in `partial.test.`) |
//! | C&C (no zone of the tree delegates to it; its own zone claims `c2.test. NS c2.test.` with itself as glue) | 198.18.66.6 (Feederbot, hard-coded), 198.18.66.7 | 2001:db8:66::7 | `c2.test.` (`cmd.c2.test TXT`) |
//! | "public resolver" (Table 2's 8.8.8.8) | 198.18.8.8, 198.18.4.4 | — | a copy of `glue.test.` |
//!
//! `c2.test. A 198.18.66.7` / `AAAA 2001:db8:66::7` sit in the `test.` zone (Morto: the bot
//! resolves its C&C's address through the resolver, then queries it directly).
//!
//! Unbound: a full resolver from the test root hints, iterator only (no DNSSEC validation),
//! `qname-minimisation: yes` (Unbound's default, so the resolver walks the tree one label at a
//! time, as deployed resolvers do; each step is a referral nsdb sees), IPv4 and IPv6,
//! `outgoing-interface` pinned to its LAN addresses, prefetch off, small caches, no remote
//! control; it is (re)started with a cold cache by [`Testbed::restart_unbound`].

use std::{
    fmt,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::{
    TempDir,
    netns::{Netns, veth},
};

pub const LAN4_CIDR: &str = "192.0.2.0/24";
pub const LAN6_CIDR: &str = "2001:db8:1::/64";
pub const CLIENT4: &str = "192.0.2.10";
pub const CLIENT6: &str = "2001:db8:1::10";
pub const UNBOUND4: &str = "192.0.2.53";
pub const UNBOUND6: &str = "2001:db8:1::53";
pub const GW_LAN_IF: &str = "lan0";
pub const GW_WAN_IF: &str = "wan0";

pub const ROOT_A4: &str = "203.0.113.1";
pub const ROOT_A6: &str = "2001:db8:53::1";
pub const ROOT_B4: &str = "203.0.113.2";
pub const TLD_TEST4: &str = "203.0.113.10";
pub const TLD_TEST6: &str = "2001:db8:53::10";
pub const TLD_EXAMPLE4: &str = "203.0.113.20";
pub const TLD_EXAMPLE6: &str = "2001:db8:53::20";
pub const GLUE1_4: &str = "203.0.113.30";
pub const GLUE1_6: &str = "2001:db8:53::30";
pub const GLUE2_4: &str = "203.0.113.31";
pub const GLUE2_6: &str = "2001:db8:53::31";
pub const DNSHOST4: &str = "203.0.113.40";
pub const DNSHOST6: &str = "2001:db8:53::40";
/// The glue-less server (ns.dns-host.example, serving glueless.test).
pub const GLUELESS4: &str = "198.18.1.1";
pub const GLUELESS6: &str = "2001:db8:18::1";
/// The only address of ns.v6only.test (AAAA glue only).
pub const V6ONLY6: &str = "2001:db8:53::60";
pub const BIG4: &str = "203.0.113.70";
pub const BIG6: &str = "2001:db8:53::70";
pub const SHORT4: &str = "203.0.113.80";
pub const SHORT6: &str = "2001:db8:53::80";
/// ns.partial.test: the `test.` referral gives its A glue only; its AAAA is in its own zone,
/// where a dual-stack resolver looks it up (Unbound's target fetch) and may then use it.
pub const PARTIAL4: &str = "203.0.113.90";
pub const PARTIAL6: &str = "2001:db8:53::90";
/// TTL of short.test's NS, glue and data, in seconds.
pub const SHORT_TTL: u32 = 4;
/// Feederbot's hard-coded C&C address: never in any DNS answer.
pub const FEEDERBOT_CC4: &str = "198.18.66.6";
/// Morto's C&C address: the A record of c2.test.
pub const MORTO_CC4: &str = "198.18.66.7";
pub const MORTO_CC6: &str = "2001:db8:66::7";
/// The C&C's command record, served by the C&C servers.
pub const CC_CMD_NAME: &str = "cmd.c2.test";
pub const CC_CMD_TXT: &str = "ddos 203.0.113.99 port 80";
/// A public-resolver-like server that is no name server of the tree (Table 2's 8.8.8.8/8.8.4.4).
pub const PUBLIC1_4: &str = "198.18.8.8";
pub const PUBLIC2_4: &str = "198.18.4.4";

/// Number of addresses in each big.test A RRset (about 1.6 kB: more than Unbound's 1232-byte
/// EDNS buffer, so NSD truncates and Unbound retries over TCP).
pub const BIG_RRSET: usize = 100;

/// The longest a [`Testbed::resolve_list`] batch may run; unanswered names then count as
/// failures.
pub const RESOLVE_DEADLINE: Duration = Duration::from_secs(40);

static BATCH_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One name the resolver must resolve, with its expected answer (sorted).
#[derive(Clone, Debug)]
pub struct Expect {
    pub name: String,
    pub qtype: &'static str,
    pub answer: Vec<String>,
    /// Which part of the tree it exercises: glue, partial-glue, glueless, glueless-cross, v6only, tcp, short, c2.
    pub kind: &'static str,
}

/// A name that did not resolve to its expected answer.
#[derive(Clone, Debug)]
pub struct Failure {
    pub name: String,
    pub qtype: &'static str,
    pub status: String,
    pub expected: Vec<String>,
    pub got: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: status {}, got {:?}, expected {:?}",
            self.name,
            self.qtype,
            self.status,
            if self.got.len() > 4 {
                &self.got[..4]
            } else {
                &self.got
            },
            if self.expected.len() > 4 {
                &self.expected[..4]
            } else {
                &self.expected
            },
        )
    }
}

struct Host {
    tag: &'static str,
    addrs: Vec<&'static str>,
    zones: Vec<(String, String)>,
    /// NSD's `minimal-responses: yes` (answers without the authority NS and additional
    /// addresses, as Knot DNS and BIND's no-auth modes send them).
    minimal: bool,
}

/// The testbed. Fields drop in order: processes first, then the namespaces, then the files.
pub struct Testbed {
    unbound: Option<Child>,
    nsds: Vec<(String, Child, PathBuf)>,
    pub lan: Netns,
    pub gw: Netns,
    pub inet: Netns,
    /// Every name with its expected answer (≥ 200).
    pub names: Vec<Expect>,
    pub tmp: TempDir,
    unbound_dir: PathBuf,
    unbound_starts: u32,
    /// Lines added to Unbound's `server:` clause from the next (re)start on
    /// ([`Testbed::set_unbound_extra`]).
    unbound_extra: String,
}

fn addr_list(v4: &str, count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("{v4}.{i}")).collect()
}

/// Zone text with a SOA and the given default TTL.
fn soa(origin: &str, ttl: u32, ns: &str) -> String {
    format!("$ORIGIN {origin}\n$TTL {ttl}\n@ IN SOA {ns} hostmaster.test. 1 3600 600 86400 {ttl}\n")
}

fn hosts_and_names() -> (Vec<Host>, Vec<Expect>) {
    let mut names: Vec<Expect> = Vec::new();
    let mut push = |name: String, qtype: &'static str, mut answer: Vec<String>, kind| {
        answer.sort();
        names.push(Expect {
            name,
            qtype,
            answer,
            kind,
        })
    };

    // The root zone.
    let root = soa(".", 86400, "a.root-servers.test.")
        + &format!(
            ". NS a.root-servers.test.\n. NS b.root-servers.test.\n\
             a.root-servers.test. A {ROOT_A4}\na.root-servers.test. AAAA {ROOT_A6}\n\
             b.root-servers.test. A {ROOT_B4}\n\
             test. 172800 NS ns1.nic.test.\n\
             ns1.nic.test. 172800 A {TLD_TEST4}\nns1.nic.test. 172800 AAAA {TLD_TEST6}\n\
             example. 172800 NS a.nic.example.\n\
             a.nic.example. 172800 A {TLD_EXAMPLE4}\na.nic.example. 172800 AAAA {TLD_EXAMPLE6}\n"
        );

    // test.
    let test = soa("test.", 3600, "ns1.nic.test.")
        + &format!(
            "@ NS ns1.nic.test.\nns1.nic A {TLD_TEST4}\nns1.nic AAAA {TLD_TEST6}\n\
             a.root-servers A {ROOT_A4}\na.root-servers AAAA {ROOT_A6}\nb.root-servers A {ROOT_B4}\n\
             glue NS ns1.glue\nglue NS ns2.glue\n\
             ns1.glue A {GLUE1_4}\nns1.glue AAAA {GLUE1_6}\nns2.glue A {GLUE2_4}\nns2.glue AAAA {GLUE2_6}\n\
             glueless NS ns.dns-host.example.\n\
             v6only NS ns.v6only\nns.v6only AAAA {V6ONLY6}\n\
             big NS ns.big\nns.big A {BIG4}\nns.big AAAA {BIG6}\n\
             short {t} NS ns.short\nns.short {t} A {SHORT4}\nns.short {t} AAAA {SHORT6}\n\
             partial NS ns.partial\nns.partial A {PARTIAL4}\n\
             c2 A {MORTO_CC4}\nc2 AAAA {MORTO_CC6}\n",
            t = SHORT_TTL
        );
    push("c2.test".into(), "A", vec![MORTO_CC4.into()], "c2");
    push("c2.test".into(), "AAAA", vec![MORTO_CC6.into()], "c2");

    // example.
    let example = soa("example.", 3600, "a.nic.example.")
        + &format!(
            "@ NS a.nic.example.\na.nic A {TLD_EXAMPLE4}\na.nic AAAA {TLD_EXAMPLE6}\n\
             dns-host NS ns1.dns-host\nns1.dns-host A {DNSHOST4}\nns1.dns-host AAAA {DNSHOST6}\n\
             glueless2 NS ns1.glue.test.\nglueless2 NS ns2.glue.test.\n"
        );

    // glue.test: in-bailiwick glue (A and AAAA), 50 A names and 10 AAAA names.
    let mut glue = soa("glue.test.", 3600, "ns1.glue.test.")
        + &format!(
            "@ NS ns1\n@ NS ns2\nns1 A {GLUE1_4}\nns1 AAAA {GLUE1_6}\nns2 A {GLUE2_4}\nns2 AAAA {GLUE2_6}\n"
        );
    for i in 0..50 {
        glue += &format!("h{i} A 198.18.30.{}\n", i + 1);
        push(
            format!("h{i}.glue.test"),
            "A",
            vec![format!("198.18.30.{}", i + 1)],
            "glue",
        );
    }
    for i in 0..10 {
        glue += &format!("h{i} AAAA 2001:db8:30::{:x}\n", i + 1);
        push(
            format!("h{i}.glue.test"),
            "AAAA",
            vec![format!("2001:db8:30::{:x}", i + 1)],
            "glue",
        );
    }
    // glueless2.example: NS names in test. (no glue from example.'s server), 30 names.
    let mut glueless2 = soa("glueless2.example.", 3600, "ns1.glue.test.")
        + "@ NS ns1.glue.test.\n@ NS ns2.glue.test.\n";
    for i in 0..30 {
        glueless2 += &format!("e{i} A 198.18.31.{}\n", i + 1);
        push(
            format!("e{i}.glueless2.example"),
            "A",
            vec![format!("198.18.31.{}", i + 1)],
            "glueless-cross",
        );
    }
    // dns-host.example: the hosting provider's zone, holding the glue-less NS name's address.
    let mut dnshost = soa("dns-host.example.", 3600, "ns1.dns-host.example.")
        + &format!(
            "@ NS ns1\nns1 A {DNSHOST4}\nns1 AAAA {DNSHOST6}\nns A {GLUELESS4}\nns AAAA {GLUELESS6}\n"
        );
    for i in 0..10 {
        dnshost += &format!("w{i} A 198.18.40.{}\n", i + 1);
        push(
            format!("w{i}.dns-host.example"),
            "A",
            vec![format!("198.18.40.{}", i + 1)],
            "glue",
        );
    }
    // glueless.test: 40 names.
    let mut glueless =
        soa("glueless.test.", 3600, "ns.dns-host.example.") + "@ NS ns.dns-host.example.\n";
    for i in 0..40 {
        glueless += &format!("g{i} A 198.18.41.{}\n", i + 1);
        push(
            format!("g{i}.glueless.test"),
            "A",
            vec![format!("198.18.41.{}", i + 1)],
            "glueless",
        );
    }
    // v6only.test: 20 A and 20 AAAA names, server reachable over IPv6 only.
    let mut v6only =
        soa("v6only.test.", 3600, "ns.v6only.test.") + &format!("@ NS ns\nns AAAA {V6ONLY6}\n");
    for i in 0..40 {
        if i % 2 == 0 {
            v6only += &format!("v{i} A 198.18.60.{}\n", i + 1);
            push(
                format!("v{i}.v6only.test"),
                "A",
                vec![format!("198.18.60.{}", i + 1)],
                "v6only",
            );
        } else {
            v6only += &format!("v{i} AAAA 2001:db8:60::{:x}\n", i + 1);
            push(
                format!("v{i}.v6only.test"),
                "AAAA",
                vec![format!("2001:db8:60::{:x}", i + 1)],
                "v6only",
            );
        }
    }
    // big.test: 10 names of BIG_RRSET addresses each (TCP fallback).
    let mut big =
        soa("big.test.", 3600, "ns.big.test.") + &format!("@ NS ns\nns A {BIG4}\nns AAAA {BIG6}\n");
    for i in 0..10 {
        let addrs = addr_list(&format!("198.18.{}", 70 + i), BIG_RRSET);
        for a in &addrs {
            big += &format!("b{i} A {a}\n");
        }
        push(format!("b{i}.big.test"), "A", addrs, "tcp");
    }
    // short.test: everything with a SHORT_TTL-second TTL, 20 names.
    let mut short = soa("short.test.", SHORT_TTL, "ns.short.test.")
        + &format!("@ NS ns\nns A {SHORT4}\nns AAAA {SHORT6}\n");
    for i in 0..20 {
        short += &format!("s{i} A 198.18.80.{}\n", i + 1);
        push(
            format!("s{i}.short.test"),
            "A",
            vec![format!("198.18.80.{}", i + 1)],
            "short",
        );
    }
    // partial.test: the referral carries A glue only; the AAAA of its name server is here.
    let mut partial = soa("partial.test.", 3600, "ns.partial.test.")
        + &format!("@ NS ns\nns A {PARTIAL4}\nns AAAA {PARTIAL6}\n");
    for i in 0..20 {
        partial += &format!("p{i} A 198.18.90.{}\n", i + 1);
        push(
            format!("p{i}.partial.test"),
            "A",
            vec![format!("198.18.90.{}", i + 1)],
            "partial-glue",
        );
    }
    // The C&C's own zone.
    let c2 = soa("c2.test.", 300, "c2.test.")
        + &format!("@ NS @\n@ A {MORTO_CC4}\ncmd TXT \"{CC_CMD_TXT}\"\n");

    let z = |n: &str, t: &String| (n.to_string(), t.clone());
    let hosts = vec![
        Host {
            tag: "root",
            addrs: vec![ROOT_A4, ROOT_A6, ROOT_B4],
            zones: vec![z(".", &root)],
            minimal: false,
        },
        Host {
            tag: "tldtest",
            addrs: vec![TLD_TEST4, TLD_TEST6],
            zones: vec![z("test.", &test)],
            minimal: false,
        },
        Host {
            tag: "tldexample",
            addrs: vec![TLD_EXAMPLE4, TLD_EXAMPLE6],
            zones: vec![z("example.", &example)],
            minimal: false,
        },
        Host {
            tag: "glue",
            addrs: vec![GLUE1_4, GLUE1_6, GLUE2_4, GLUE2_6],
            zones: vec![z("glue.test.", &glue), z("glueless2.example.", &glueless2)],
            minimal: false,
        },
        Host {
            tag: "dnshost",
            addrs: vec![DNSHOST4, DNSHOST6],
            zones: vec![z("dns-host.example.", &dnshost)],
            minimal: false,
        },
        Host {
            tag: "glueless",
            addrs: vec![GLUELESS4, GLUELESS6],
            zones: vec![z("glueless.test.", &glueless)],
            minimal: false,
        },
        Host {
            tag: "v6only",
            addrs: vec![V6ONLY6],
            zones: vec![z("v6only.test.", &v6only)],
            minimal: false,
        },
        Host {
            tag: "big",
            addrs: vec![BIG4, BIG6],
            zones: vec![z("big.test.", &big)],
            minimal: false,
        },
        Host {
            tag: "short",
            addrs: vec![SHORT4, SHORT6],
            zones: vec![z("short.test.", &short)],
            minimal: false,
        },
        Host {
            tag: "partial",
            addrs: vec![PARTIAL4, PARTIAL6],
            zones: vec![z("partial.test.", &partial)],
            minimal: true,
        },
        Host {
            tag: "cc",
            addrs: vec![FEEDERBOT_CC4, MORTO_CC4, MORTO_CC6],
            zones: vec![z("c2.test.", &c2)],
            minimal: false,
        },
        Host {
            tag: "public",
            addrs: vec![PUBLIC1_4, PUBLIC2_4],
            zones: vec![z("glue.test.", &glue)],
            minimal: false,
        },
    ];
    // Resolution order: the cross-TLD glue-less zone before glue.test (so ns1.glue.test's
    // address is not yet known when glueless2.example needs it), the glue-less zone before its
    // provider's names, then the rest.
    let rank = |k: &str| {
        [
            "c2",
            "glueless-cross",
            "glueless",
            "glue",
            "partial-glue",
            "v6only",
            "tcp",
            "short",
        ]
        .iter()
        .position(|x| *x == k)
        .unwrap_or(99)
    };
    names.sort_by_key(|e| rank(e.kind));
    (hosts, names)
}

/// The root hints (named.root format), for Unbound and for `nsdb run --root-hints`.
pub fn root_hints_text() -> String {
    format!(
        ".                      3600000 NS a.root-servers.test.\n\
         a.root-servers.test.   3600000 A {ROOT_A4}\n\
         a.root-servers.test.   3600000 AAAA {ROOT_A6}\n\
         .                      3600000 NS b.root-servers.test.\n\
         b.root-servers.test.   3600000 A {ROOT_B4}\n"
    )
}

fn require(prog: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).exists()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(prog).exists();
    assert!(
        found,
        "{prog} is not installed: run `apt-get install {package}` (or `cargo xtask setup`)"
    );
}

/// The LAN's veth pair (the LAN's `eth0` with the client's and Unbound's addresses, the
/// gateway's GW_LAN_IF) and the LAN's default routes through the gateway.
fn link_lan(lan: &Netns, gw: &Netns) {
    veth(
        lan,
        "eth0",
        &[
            &format!("{CLIENT4}/24"),
            &format!("{UNBOUND4}/24"),
            &format!("{CLIENT6}/64"),
            &format!("{UNBOUND6}/64"),
        ],
        gw,
        GW_LAN_IF,
        &["192.0.2.1/24", "2001:db8:1::1/64"],
    );
    lan.ip(&["route", "add", "default", "via", "192.0.2.1"]);
    lan.ip(&["-6", "route", "add", "default", "via", "2001:db8:1::1"]);
}

impl Testbed {
    /// Re-creates the LAN link after a test deleted the gateway's GW_LAN_IF (which deletes the
    /// pair): same names, addresses and routes as [`Testbed::new`] made.
    pub fn relink_lan(&self) {
        link_lan(&self.lan, &self.gw);
    }

    /// Builds the namespaces, starts every NSD and Unbound (cold cache), and checks they answer.
    pub fn new(tag: &str) -> Self {
        require("nsd", "nsd");
        require("unbound", "unbound");
        require("dig", "dnsutils");
        let tmp = TempDir::new(tag);
        let lan = Netns::new(&format!("{tag}l"));
        let gw = Netns::new(&format!("{tag}g"));
        let inet = Netns::new(&format!("{tag}i"));
        link_lan(&lan, &gw);
        let (hosts, names) = hosts_and_names();
        let mut inet_addrs: Vec<String> = vec!["198.51.100.2/24".into(), "2001:db8:2::2/64".into()];
        for h in &hosts {
            for a in &h.addrs {
                inet_addrs.push(if a.contains(':') {
                    format!("{a}/128")
                } else {
                    format!("{a}/32")
                });
            }
        }
        let inet_refs: Vec<&str> = inet_addrs.iter().map(String::as_str).collect();
        veth(
            &gw,
            GW_WAN_IF,
            &["198.51.100.1/24", "2001:db8:2::1/64"],
            &inet,
            "eth0",
            &inet_refs,
        );
        gw.forwarding();
        inet.ip(&["route", "add", "default", "via", "198.51.100.1"]);
        inet.ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"]);
        for net in ["203.0.113.0/24", "198.18.0.0/15"] {
            gw.ip(&["route", "add", net, "via", "198.51.100.2"]);
        }
        gw.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8::/32",
            "via",
            "2001:db8:2::2",
        ]);

        std::fs::write(tmp.path().join("root.hints"), root_hints_text()).unwrap();
        let unbound_dir = tmp.path().join("unbound");
        std::fs::create_dir_all(&unbound_dir).unwrap();
        let mut tb = Self {
            unbound: None,
            nsds: Vec::new(),
            lan,
            gw,
            inet,
            names,
            tmp,
            unbound_dir,
            unbound_starts: 0,
            unbound_extra: String::new(),
        };
        // Start every NSD at once, then wait for each to answer.
        for h in &hosts {
            let child_dir = tb.tmp.path().join(format!("nsd-{}", h.tag));
            let child = start_nsd(&tb.inet, &child_dir, &h.addrs, &h.zones, h.minimal);
            tb.nsds.push((h.tag.to_string(), child, child_dir));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for h in &hosts {
            loop {
                let out = tb
                    .inet
                    .cmd(&[
                        "dig",
                        &format!("@{}", h.addrs[0]),
                        &h.zones[0].0,
                        "SOA",
                        "+norecurse",
                        "+tries=1",
                        "+time=1",
                    ])
                    .output()
                    .expect("cannot run dig (apt-get install dnsutils)");
                let text = String::from_utf8_lossy(&out.stdout);
                if text.contains("status: NOERROR") && text.contains(" aa") {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "NSD {} did not answer on {} within 20 s: {text}\n{}",
                        h.tag,
                        h.addrs[0],
                        tb.nsd_logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        tb.start_unbound();
        tb
    }

    pub fn root_hints(&self) -> PathBuf {
        self.tmp.path().join("root.hints")
    }

    /// A file path inside this testbed's temp dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Arguments for `nsdb run` on this gateway, plus `extra`.
    pub fn nsdb_args(
        &self,
        mode: &str,
        alerts: &Path,
        db: Option<&Path>,
        extra: &[&str],
    ) -> Vec<String> {
        let mut v: Vec<String> = [
            "--iface",
            GW_LAN_IF,
            "--iface",
            GW_WAN_IF,
            "--mode",
            mode,
            "--internal",
            LAN4_CIDR,
            "--internal",
            LAN6_CIDR,
            "--root-hints",
            self.root_hints().to_str().unwrap(),
            "--alerts",
            alerts.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(db) = db {
            v.push("--db".into());
            v.push(db.to_str().unwrap().into());
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    /// Starts `nsdb run` on this gateway with [`Testbed::nsdb_args`].
    pub fn start_nsdb(
        &self,
        mode: &str,
        alerts: &Path,
        db: Option<&Path>,
        extra: &[&str],
    ) -> crate::servers::Daemon {
        let args = self.nsdb_args(mode, alerts, db, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::servers::Daemon::start(&self.gw, &args)
    }

    fn unbound_conf(&self) -> String {
        let d = self.unbound_dir.display();
        format!(
            "server:\n  \
             interface: {UNBOUND4}\n  interface: {UNBOUND6}\n  port: 53\n  \
             outgoing-interface: {UNBOUND4}\n  outgoing-interface: {UNBOUND6}\n  \
             do-ip4: yes\n  do-ip6: yes\n  do-udp: yes\n  do-tcp: yes\n  prefer-ip6: no\n  \
             access-control: {LAN4_CIDR} allow\n  access-control: {LAN6_CIDR} allow\n  \
             root-hints: \"{root}\"\n  module-config: \"iterator\"\n  \
             chroot: \"\"\n  username: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  \
             logfile: \"{d}/unbound.log\"\n  use-syslog: no\n  log-time-ascii: yes\n  verbosity: 1\n  \
             log-servfail: yes\n  num-threads: 1\n  so-reuseport: no\n  \
             outgoing-range: 256\n  num-queries-per-thread: 128\n  \
             msg-cache-size: 4m\n  rrset-cache-size: 8m\n  key-cache-size: 1m\n  neg-cache-size: 1m\n  \
             prefetch: no\n  prefetch-key: no\n  serve-expired: no\n  \
             qname-minimisation: yes\n  qname-minimisation-strict: no\n  \
             harden-glue: yes\n  harden-below-nxdomain: yes\n  harden-referral-path: no\n  \
             harden-dnssec-stripped: no\n  harden-algo-downgrade: no\n  aggressive-nsec: no\n  \
             edns-buffer-size: 1232\n  do-not-query-localhost: yes\n  \
             local-zone: \"test.\" nodefault\n  local-zone: \"example.\" nodefault\n{extra}\
             remote-control:\n  control-enable: no\n",
            root = self.root_hints().display(),
            extra = self.unbound_extra,
        )
    }

    fn start_unbound(&mut self) {
        self.unbound_starts += 1;
        let conf = self.unbound_dir.join("unbound.conf");
        std::fs::write(&conf, self.unbound_conf()).unwrap();
        let check = std::process::Command::new("unbound-checkconf")
            .arg(&conf)
            .output()
            .expect("cannot run unbound-checkconf (apt-get install unbound)");
        assert!(
            check.status.success(),
            "unbound.conf rejected: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.unbound_dir.join("unbound.stderr"))
            .unwrap();
        let child = self
            .lan
            .cmd(&["unbound", "-d", "-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("cannot start unbound (apt-get install unbound)");
        self.unbound = Some(child);
        // Ready when it answers from its built-in localhost zone (no upstream query: the cache
        // stays cold).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(out) = self.dig_from_lan(UNBOUND4, "localhost", "A", 1, &[])
                && out.contains("127.0.0.1")
            {
                break;
            }
            if let Some(Ok(Some(st))) = self.unbound.as_mut().map(|c| c.try_wait()) {
                panic!("unbound exited with {st}: {}", self.unbound_log());
            }
            assert!(
                Instant::now() < deadline,
                "unbound did not answer within 15 s: {}",
                self.unbound_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_unbound(&mut self) {
        if let Some(mut c) = self.unbound.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// Adds `lines` (each `name: value`) to Unbound's `server:` clause; they take effect at the
    /// next [`Testbed::restart_unbound`].
    pub fn set_unbound_extra(&mut self, lines: &[&str]) {
        self.unbound_extra = lines.iter().map(|l| format!("  {l}\n")).collect();
    }

    /// Restarts Unbound: its cache (messages, RRsets, infrastructure) starts cold again.
    pub fn restart_unbound(&mut self) {
        self.stop_unbound();
        self.start_unbound();
    }

    /// How many times Unbound was started.
    pub fn unbound_starts(&self) -> u32 {
        self.unbound_starts
    }

    /// `dig @server name type` from a LAN client address (192.0.2.10 or 2001:db8:1::10,
    /// matching the server's family), one try, UDP unless `extra` says otherwise.
    /// `Some(output)` if a response came back, `None` on a time-out.
    pub fn dig_from_lan(
        &self,
        server: &str,
        name: &str,
        qtype: &str,
        timeout_s: u32,
        extra: &[&str],
    ) -> Option<String> {
        let src = if server.contains(':') {
            CLIENT6
        } else {
            CLIENT4
        };
        let mut args = vec![
            "dig".to_string(),
            "-b".into(),
            src.into(),
            format!("@{server}"),
            name.into(),
            qtype.into(),
            "+tries=1".into(),
            format!("+time={timeout_s}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self
            .lan
            .cmd(&refs)
            .output()
            .expect("cannot run dig (apt-get install dnsutils)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("->>HEADER<<-") {
            Some(text)
        } else {
            None
        }
    }

    /// Resolves `name type` through Unbound from a LAN client; the sorted answer addresses /
    /// texts of that type, or `Err(status or "timeout")`.
    pub fn resolve(&self, name: &str, qtype: &str) -> Result<Vec<String>, String> {
        let out = self
            .dig_from_lan(UNBOUND4, name, qtype, 5, &[])
            .ok_or_else(|| "timeout".to_string())?;
        let parsed = parse_dig(&out);
        let (status, answers) = parsed
            .into_iter()
            .next()
            .ok_or_else(|| format!("unparsable dig output: {out}"))?;
        let mut got: Vec<String> = answers
            .into_iter()
            .filter(|(owner, t, _)| {
                owner
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(name.trim_end_matches('.'))
                    && t == qtype
            })
            .map(|(_, _, v)| v)
            .collect();
        got.sort();
        if status != "NOERROR" || got.is_empty() {
            return Err(format!("{status} {got:?}"));
        }
        Ok(got)
    }

    /// Resolves every name of [`Testbed::names`] through Unbound, in one `dig -f` batch from a
    /// LAN client (one query at a time, as a client would), and checks each answer. Returns the
    /// failures and the wall-clock time of the batch.
    pub fn resolve_all(&self) -> (Vec<Failure>, Duration) {
        let list: Vec<&Expect> = self.names.iter().collect();
        self.resolve_list(&list)
    }

    /// [`Testbed::resolve_all`] for a subset of the names.
    pub fn resolve_list(&self, list: &[&Expect]) -> (Vec<Failure>, Duration) {
        self.resolve_concurrently(&[list])
    }

    /// Several clients at once: one `dig -f` batch per list, all started together (a resolver
    /// serving several clients; nsdb then sees interleaved referrals). Returns the failures
    /// of all lists and the time until the last batch finished.
    pub fn resolve_concurrently(&self, lists: &[&[&Expect]]) -> (Vec<Failure>, Duration) {
        // One set of batches at a time in this process: parallel tests would otherwise compete
        // for the two cores exactly while a batch is timed.
        let _one_at_a_time = BATCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut running = Vec::new();
        for list in lists {
            let batch = self.tmp.path().join(crate::unique("batch"));
            let text: String = list
                .iter()
                .map(|e| format!("{} {}\n", e.name, e.qtype))
                .collect();
            std::fs::write(&batch, text).unwrap();
            let out_path = self.tmp.path().join(crate::unique("batch-out"));
            running.push((batch, out_path));
        }
        let t0 = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut pids = Vec::new();
        let mut waiters = Vec::new();
        for (batch, out_path) in &running {
            let mut child = self
                .lan
                .cmd(&[
                    "dig",
                    "-b",
                    CLIENT4,
                    &format!("@{UNBOUND4}"),
                    "+tries=2",
                    "+time=3",
                    "+noall",
                    "+comments",
                    "+question",
                    "+answer",
                    "-f",
                    batch.to_str().unwrap(),
                ])
                .stdout(std::fs::File::create(out_path).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot run dig (apt-get install dnsutils)");
            pids.push(child.id() as i32);
            let tx = tx.clone();
            waiters.push(std::thread::spawn(move || {
                let _ = child.wait();
                let _ = tx.send(Instant::now());
            }));
        }
        // A broken filter must not make a batch run for minutes (each lost name can cost dig
        // 6 s): whatever has not been answered by the deadline counts as failed.
        let deadline = t0 + RESOLVE_DEADLINE;
        let mut last = t0;
        for _ in 0..running.len() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(done) => last = last.max(done),
                Err(_) => {
                    for pid in &pids {
                        // SAFETY: signalling our own children; a finished one is not reaped
                        // before its waiter thread ran, and those are joined below.
                        unsafe { libc::kill(*pid, libc::SIGKILL) };
                    }
                    last = Instant::now();
                    break;
                }
            }
        }
        let took = last - t0;
        for w in waiters {
            let _ = w.join();
        }
        let mut failures = Vec::new();
        for ((batch, out_path), list) in running.iter().zip(lists) {
            let _ = std::fs::remove_file(batch);
            let text = std::fs::read_to_string(out_path).unwrap_or_default();
            let _ = std::fs::remove_file(out_path);
            failures.extend(check_batch(&text, list));
        }
        (failures, took)
    }

    /// The names of one kind (glue, glueless, glueless-cross, v6only, tcp, short, c2).
    pub fn names_of(&self, kind: &str) -> Vec<&Expect> {
        self.names.iter().filter(|e| e.kind == kind).collect()
    }

    pub fn unbound_log(&self) -> String {
        let mut s = String::new();
        for f in ["unbound.log", "unbound.stderr"] {
            let t = std::fs::read_to_string(self.unbound_dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = t.lines().collect();
            let from = lines.len().saturating_sub(60);
            s += &format!(
                "--- {f} (last {} lines)\n{}\n",
                lines.len() - from,
                lines[from..].join("\n")
            );
        }
        s
    }

    pub fn nsd_logs(&self) -> String {
        let mut s = String::new();
        for (tag, _, dir) in &self.nsds {
            let t = std::fs::read_to_string(dir.join("nsd.log")).unwrap_or_default();
            let lines: Vec<&str> = t.lines().collect();
            let from = lines.len().saturating_sub(10);
            s += &format!("--- nsd {tag}\n{}\n", lines[from..].join("\n"));
        }
        s
    }

    /// The hard-coded C&C answers a UDP query from the LAN (the query reached it).
    pub fn cc_answers(&self) -> bool {
        self.dig_from_lan(FEEDERBOT_CC4, CC_CMD_NAME, "TXT", 2, &["+norecurse"])
            .is_some_and(|o| o.contains(CC_CMD_TXT))
    }

    /// Resolution failures for an assertion message: how many of the names, the first 20,
    /// and the servers' logs.
    pub fn describe_failures(&self, fails: &[Failure]) -> String {
        let list: Vec<String> = fails.iter().take(20).map(|f| f.to_string()).collect();
        format!(
            "{} of {} failed:\n{}\n{}",
            fails.len(),
            self.names.len(),
            list.join("\n"),
            self.logs()
        )
    }

    /// Everything useful after a failure: Unbound's and NSD's logs.
    pub fn logs(&self) -> String {
        format!("{}{}", self.unbound_log(), self.nsd_logs())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Some(mut c) = self.unbound.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (_, c, _) in &mut self.nsds {
            // NSD forks a server and xfrd; SIGTERM lets the parent take them down.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for (_, c, _) in &mut self.nsds {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // The namespaces' Drop kills anything left in them.
    }
}

fn start_nsd(
    ns: &Netns,
    dir: &Path,
    addrs: &[&str],
    zones: &[(String, String)],
    minimal: bool,
) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let mut conf = String::from("server:\n");
    for a in addrs {
        conf += &format!("  ip-address: {a}\n");
    }
    conf += &format!(
        "  port: 53\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  \
         database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  zonelistfile: \"{d}/zone.list\"\n  \
         logfile: \"{d}/nsd.log\"\n  verbosity: 1\n  server-count: 1\n  tcp-count: 64\n  \
         hide-version: yes\n  refuse-any: no\n  minimal-responses: {m}\n\
         remote-control:\n  control-enable: no\n",
        d = dir.display(),
        m = if minimal { "yes" } else { "no" },
    );
    for (i, (name, text)) in zones.iter().enumerate() {
        let file = format!("zone{i}.zone");
        std::fs::write(dir.join(&file), text).unwrap();
        conf += &format!("zone:\n  name: \"{name}\"\n  zonefile: \"{file}\"\n");
    }
    let conf_path = dir.join("nsd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let check = std::process::Command::new("nsd-checkconf")
        .arg(&conf_path)
        .output()
        .expect("cannot run nsd-checkconf (apt-get install nsd)");
    assert!(
        check.status.success(),
        "nsd.conf rejected: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let errf = std::fs::File::create(dir.join("nsd.stderr")).unwrap();
    ns.cmd(&["nsd", "-d", "-c", conf_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(errf)
        .spawn()
        .expect("cannot start nsd (apt-get install nsd)")
}

type Rr = (String, String, String);

/// Checks a `dig -f` batch's output against the expected answers.
fn check_batch(text: &str, list: &[&Expect]) -> Vec<Failure> {
    // (name, type) -> (status, answers of that type for that owner)
    let mut results: std::collections::HashMap<(String, String), (String, Vec<String>)> =
        Default::default();
    for (block_status, q, answers) in parse_dig_blocks(text) {
        let Some((qname, qtype)) = q else { continue };
        let mut got: Vec<String> = answers
            .iter()
            .filter(|(o, t, _)| o.eq_ignore_ascii_case(&qname) && *t == qtype)
            .map(|(_, _, v)| v.clone())
            .collect();
        got.sort();
        results.insert((qname.to_ascii_lowercase(), qtype), (block_status, got));
    }
    let mut failures = Vec::new();
    for e in list {
        let key = (
            format!("{}.", e.name.to_ascii_lowercase()),
            e.qtype.to_string(),
        );
        match results.get(&key) {
            Some((status, got)) if status == "NOERROR" && *got == e.answer => {}
            Some((status, got)) => failures.push(Failure {
                name: e.name.clone(),
                qtype: e.qtype,
                status: status.clone(),
                expected: e.answer.clone(),
                got: got.clone(),
            }),
            None => failures.push(Failure {
                name: e.name.clone(),
                qtype: e.qtype,
                status: "no response (timeout)".into(),
                expected: e.answer.clone(),
                got: Vec::new(),
            }),
        }
    }
    failures
}

/// Parses dig output with comments: (status, answers) per response.
fn parse_dig(text: &str) -> Vec<(String, Vec<Rr>)> {
    parse_dig_blocks(text)
        .into_iter()
        .map(|(s, _, a)| (s, a))
        .collect()
}

/// One response in dig's output: status, question (name, type), answer RRs.
type DigBlock = (String, Option<(String, String)>, Vec<Rr>);

/// Splits dig output (with `+comments`) into responses: status, question (name with the final
/// dot, type) and answer RRs (owner, type, rdata).
fn parse_dig_blocks(text: &str) -> Vec<DigBlock> {
    let mut blocks: Vec<DigBlock> = Vec::new();
    for line in text.lines() {
        if let Some(at) = line.find("status: ") {
            let status = line[at + 8..]
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            blocks.push((status, None, Vec::new()));
            continue;
        }
        let Some(cur) = blocks.last_mut() else {
            continue;
        };
        if line.starts_with(";;") || line.trim().is_empty() {
            continue;
        }
        if let Some(q) = line.strip_prefix(';') {
            let f: Vec<&str> = q.split_whitespace().collect();
            if f.len() == 3 && cur.1.is_none() {
                cur.1 = Some((f[0].to_ascii_lowercase(), f[2].to_string()));
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5 {
            let rdata = f[4..].join(" ");
            cur.2
                .push((f[0].to_ascii_lowercase(), f[3].to_string(), rdata));
        }
    }
    blocks
}
