//! The small gateway network of tests/gateway.rs and tests/metrics.rs: namespaces `cli` (dig) —
//! `gw` (nsdb on g0 and g1, routing) — `srv` (NSD on a known and an unknown address, IPv4 and
//! IPv6, serving `nsdb.test`). The known server is a root server for nsdb: `root.hints` in the
//! temporary directory names it, so it is allowed without having been learned.

use std::path::{Path, PathBuf};

use crate::{
    TempDir,
    netns::{Netns, veth},
    servers::{Daemon, Nsd, Zone},
};

pub const CLIENT: &str = "192.0.2.10";
pub const KNOWN: &str = "198.51.100.53";
pub const UNKNOWN: &str = "198.51.100.54";
pub const CLIENT6: &str = "2001:db8:1::10";
pub const KNOWN6: &str = "2001:db8:2::53";
pub const UNKNOWN6: &str = "2001:db8:2::54";

/// The namespaces and servers; dropping it stops NSD and removes the namespaces.
pub struct GatewayNet {
    pub cli: Netns,
    pub gw: Netns,
    pub srv: Netns,
    pub nsd: Nsd,
    pub tmp: TempDir,
}

impl GatewayNet {
    /// The root hints naming the known server (IPv4 and IPv6).
    pub fn hints(&self) -> PathBuf {
        self.tmp.path().join("root.hints")
    }

    /// `nsdb run` flags for this gateway: both interfaces, `mode`, the client side as internal
    /// prefixes, the root hints, and `alerts`; then `extra`.
    pub fn nsdb_args(&self, mode: &str, alerts: &Path, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = [
            "--iface",
            "g0",
            "--iface",
            "g1",
            "--mode",
            mode,
            "--internal",
            "192.0.2.0/24",
            "--internal",
            "2001:db8:1::/64",
            "--root-hints",
            self.hints().to_str().unwrap(),
            "--alerts",
            alerts.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    /// Starts `nsdb run` in the gateway namespace with [`GatewayNet::nsdb_args`].
    pub fn start_nsdb(&self, mode: &str, alerts: &Path, extra: &[&str]) -> Daemon {
        let args = self.nsdb_args(mode, alerts, extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start(&self.gw, &refs)
    }
}

/// The zone NSD serves on both addresses: `www` (A and AAAA) and the bot's `c2` TXT record.
pub fn zone() -> Zone<'static> {
    Zone {
        name: "nsdb.test.",
        text:
            "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 198.51.100.53\n\
               www A 198.51.100.80\nwww AAAA 2001:db8:2::80\nc2 TXT \"sleep 3600\"\n"
                .to_string(),
    }
}

/// Builds the network. `tag` names the temporary directory; `prefix` is put before the
/// namespace names (`cli`, `gw`, `srv`), so tests of different files are told apart in `ip
/// netns list`.
pub fn gateway_net(tag: &str, prefix: &str) -> GatewayNet {
    let tmp = TempDir::new(tag);
    let cli = Netns::new(&format!("{prefix}cli"));
    let gw = Netns::new(&format!("{prefix}gw"));
    let srv = Netns::new(&format!("{prefix}srv"));
    veth(
        &cli,
        "c0",
        &["192.0.2.10/24", "2001:db8:1::10/64"],
        &gw,
        "g0",
        &["192.0.2.1/24", "2001:db8:1::1/64"],
    );
    veth(
        &gw,
        "g1",
        &["198.51.100.1/24", "2001:db8:2::1/64"],
        &srv,
        "s0",
        &[
            "198.51.100.53/24",
            "198.51.100.54/24",
            "2001:db8:2::53/64",
            "2001:db8:2::54/64",
        ],
    );
    gw.forwarding();
    cli.ip(&["route", "add", "default", "via", "192.0.2.1"]);
    cli.ip(&["-6", "route", "add", "default", "via", "2001:db8:1::1"]);
    srv.ip(&["route", "add", "default", "via", "198.51.100.1"]);
    srv.ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"]);
    let nsd = Nsd::start(
        &srv,
        tmp.path(),
        &[KNOWN, UNKNOWN, KNOWN6, UNKNOWN6],
        &[zone()],
    );
    std::fs::write(
        tmp.path().join("root.hints"),
        format!(
            ".  3600000 NS ns1.nsdb.test.\nns1.nsdb.test. 3600000 A {KNOWN}\nns1.nsdb.test. 3600000 AAAA {KNOWN6}\n"
        ),
    )
    .unwrap();
    GatewayNet {
        cli,
        gw,
        srv,
        nsd,
        tmp,
    }
}
