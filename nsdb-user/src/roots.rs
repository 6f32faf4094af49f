//! IANA root hints (the 13 root servers' names and addresses), built in and overridable.
//!
//! Source: the IANA `named.root` file (<https://www.internic.net/domain/named.root>), last
//! changed for b.root-servers.net's renumbering in 2023 (b: 170.247.170.2, 2801:1b8:10::b).
//! An operator can replace them with [`parse_named_root`] on a file of the same format.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One root server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootServer {
    pub name: &'static str,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

const fn v6(s: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
}

/// TTL of the root NS and address records in `named.root` (3,600,000 s).
pub const ROOT_HINTS_TTL: u32 = 3_600_000;

/// The IANA root servers.
pub const ROOT_HINTS: [RootServer; 13] = [
    RootServer {
        name: "a.root-servers.net",
        v4: Ipv4Addr::new(198, 41, 0, 4),
        v6: v6([0x2001, 0x503, 0xba3e, 0, 0, 0, 2, 0x30]),
    },
    RootServer {
        name: "b.root-servers.net",
        v4: Ipv4Addr::new(170, 247, 170, 2),
        v6: v6([0x2801, 0x1b8, 0x10, 0, 0, 0, 0, 0xb]),
    },
    RootServer {
        name: "c.root-servers.net",
        v4: Ipv4Addr::new(192, 33, 4, 12),
        v6: v6([0x2001, 0x500, 0x2, 0, 0, 0, 0, 0xc]),
    },
    RootServer {
        name: "d.root-servers.net",
        v4: Ipv4Addr::new(199, 7, 91, 13),
        v6: v6([0x2001, 0x500, 0x2d, 0, 0, 0, 0, 0xd]),
    },
    RootServer {
        name: "e.root-servers.net",
        v4: Ipv4Addr::new(192, 203, 230, 10),
        v6: v6([0x2001, 0x500, 0xa8, 0, 0, 0, 0, 0xe]),
    },
    RootServer {
        name: "f.root-servers.net",
        v4: Ipv4Addr::new(192, 5, 5, 241),
        v6: v6([0x2001, 0x500, 0x2f, 0, 0, 0, 0, 0xf]),
    },
    RootServer {
        name: "g.root-servers.net",
        v4: Ipv4Addr::new(192, 112, 36, 4),
        v6: v6([0x2001, 0x500, 0x12, 0, 0, 0, 0, 0xd0d]),
    },
    RootServer {
        name: "h.root-servers.net",
        v4: Ipv4Addr::new(198, 97, 190, 53),
        v6: v6([0x2001, 0x500, 0x1, 0, 0, 0, 0, 0x53]),
    },
    RootServer {
        name: "i.root-servers.net",
        v4: Ipv4Addr::new(192, 36, 148, 17),
        v6: v6([0x2001, 0x7fe, 0, 0, 0, 0, 0, 0x53]),
    },
    RootServer {
        name: "j.root-servers.net",
        v4: Ipv4Addr::new(192, 58, 128, 30),
        v6: v6([0x2001, 0x503, 0xc27, 0, 0, 0, 2, 0x30]),
    },
    RootServer {
        name: "k.root-servers.net",
        v4: Ipv4Addr::new(193, 0, 14, 129),
        v6: v6([0x2001, 0x7fd, 0, 0, 0, 0, 0, 1]),
    },
    RootServer {
        name: "l.root-servers.net",
        v4: Ipv4Addr::new(199, 7, 83, 42),
        v6: v6([0x2001, 0x500, 0x9f, 0, 0, 0, 0, 0x42]),
    },
    RootServer {
        name: "m.root-servers.net",
        v4: Ipv4Addr::new(202, 12, 27, 33),
        v6: v6([0x2001, 0xdc3, 0, 0, 0, 0, 0, 0x35]),
    },
];

/// A root hint as (name, address) pairs: the built-in ones, or those read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub name: String,
    pub addr: IpAddr,
}

/// The built-in hints as (name, address) pairs, IPv4 and IPv6.
pub fn builtin() -> Vec<Hint> {
    ROOT_HINTS
        .iter()
        .flat_map(|r| {
            [IpAddr::V4(r.v4), IpAddr::V6(r.v6)].map(|addr| Hint {
                name: r.name.to_string(),
                addr,
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("line {0}: {1}")]
    Line(usize, String),
    #[error("no A or AAAA records found")]
    Empty,
}

/// Parse a `named.root`-style file: `NAME [TTL] [IN] A|AAAA ADDRESS` lines (NS lines and `;`
/// comments are skipped).
pub fn parse_named_root(text: &str) -> Result<Vec<Hint>, RootsError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(tpos) = f.iter().position(|w| {
            w.eq_ignore_ascii_case("A")
                || w.eq_ignore_ascii_case("AAAA")
                || w.eq_ignore_ascii_case("NS")
        }) else {
            return Err(RootsError::Line(
                i + 1,
                format!("no record type in {line:?}"),
            ));
        };
        if f[tpos].eq_ignore_ascii_case("NS") {
            continue;
        }
        let addr: IpAddr = f
            .get(tpos + 1)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| RootsError::Line(i + 1, format!("bad address in {line:?}")))?;
        let name = f[0].trim_end_matches('.').to_ascii_lowercase();
        out.push(Hint { name, addr });
    }
    if out.is_empty() {
        return Err(RootsError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_servers_both_families() {
        let b = builtin();
        assert_eq!(b.len(), 26);
        assert!(b.contains(&Hint {
            name: "a.root-servers.net".into(),
            addr: "198.41.0.4".parse().unwrap()
        }));
        assert!(b.contains(&Hint {
            name: "m.root-servers.net".into(),
            addr: "2001:dc3::35".parse().unwrap()
        }));
    }

    #[test]
    fn named_root_format() {
        let t = ".                        3600000      NS    A.ROOT-SERVERS.NET.\n\
                 A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4 ; comment\n\
                 A.ROOT-SERVERS.NET.      3600000      AAAA  2001:503:ba3e::2:30\n";
        let h = parse_named_root(t).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name, "a.root-servers.net");
        assert!(matches!(
            parse_named_root("x 1 A notanip"),
            Err(RootsError::Line(1, _))
        ));
    }
}
