//! Packet floods with trafgen (netsniff-ng) and the interface counters that account for them,
//! for the flood tests and the forwarding benchmark.
//!
//! trafgen sends whole frames on a PF_PACKET socket, without the sender's IP stack, as fast as
//! one core can (or at a set rate), one sendto(2) per frame, and prints on exit how many frames
//! the kernel took. When the receiving veth is full, the sender's veth refuses the frame
//! (counted in its `tx_dropped`), sendto fails with ENOBUFS and trafgen sends the same frame
//! again without counting it: so trafgen's count is exactly what reached the other end, and
//! `tx_dropped` counts push-backs, not losses (the flood test checks this against the XDP
//! program's own counters).

use std::{
    io::Read,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use crate::netns::Netns;

/// Packet and drop counters of one interface (`ip -s -j link show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

impl LinkStats {
    /// Counter increases from `before` to `self`.
    pub fn since(&self, before: &LinkStats) -> LinkStats {
        LinkStats {
            rx_packets: self.rx_packets - before.rx_packets,
            rx_dropped: self.rx_dropped - before.rx_dropped,
            tx_packets: self.tx_packets - before.tx_packets,
            tx_dropped: self.tx_dropped - before.tx_dropped,
        }
    }
}

fn link_json(ns: &Netns, iface: &str) -> serde_json::Value {
    let out = ns.ip(&["-s", "-j", "link", "show", iface]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    v[0].clone()
}

/// The counters of `iface` in `ns`.
pub fn link_stats(ns: &Netns, iface: &str) -> LinkStats {
    let s = &link_json(ns, iface)["stats64"];
    let n = |dir: &str, k: &str| s[dir][k].as_u64().unwrap_or(0);
    LinkStats {
        rx_packets: n("rx", "packets"),
        rx_dropped: n("rx", "dropped"),
        tx_packets: n("tx", "packets"),
        tx_dropped: n("tx", "dropped"),
    }
}

/// The MAC address of `iface` in `ns`.
pub fn mac(ns: &Netns, iface: &str) -> String {
    link_json(ns, iface)["address"]
        .as_str()
        .expect("an Ethernet interface has an address")
        .to_string()
}

/// Bytes as a trafgen byte list (`0x01, 0x02, …`).
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A DNS message as trafgen payload with a random message id (`drnd(2)` for its first two
/// bytes).
pub fn random_id(msg: &[u8]) -> String {
    format!("drnd(2), {}", hex(&msg[2..]))
}

/// One IPv4/UDP frame of a trafgen configuration. `ip` and `udp` are the arguments of
/// trafgen's `ipv4()` and `udp()` header functions (e.g. `sa=192.0.2.10, da=198.18.0.1,
/// da[3]=drnd()` and `sp=40000, sp[1]=drnd(), dp=53`); `payload` is a trafgen byte list.
/// Checksums are filled in by trafgen, also for the fields it varies.
pub fn udp4_frame(dst_mac: &str, ip: &str, udp: &str, payload: &str) -> String {
    format!("{{ eth(da={dst_mac}), ipv4(ttl=64, {ip}), udp({udp}), {payload} }}\n")
}

/// A running trafgen, sending the frames of its configuration round-robin.
pub struct Trafgen {
    child: Option<Child>,
    cfg: PathBuf,
}

impl Trafgen {
    /// Starts trafgen in `ns` on `iface` with configuration `cfg` (written to `dir`), on one
    /// core (`-P 1`), as fast as it can or at `pps` packets per second.
    pub fn start(ns: &Netns, iface: &str, dir: &Path, cfg: &str, pps: Option<u64>) -> Self {
        let path = dir.join(crate::unique("trafgen") + ".cfg");
        std::fs::write(&path, cfg).expect("writing the trafgen configuration");
        let rate = pps.map(|p| format!("{p}pps"));
        let mut args = vec![
            "trafgen",
            "--no-sock-mem",
            "--cpus",
            "1",
            "--dev",
            iface,
            "--conf",
            path.to_str().unwrap(),
        ];
        match &rate {
            Some(r) => args.extend(["--rate", r]),
            // One sendto(2) per frame with no gap rather than the TX ring: the TX ring's
            // non-blocking flush fails (EAGAIN) when the receiving veth falls behind, which a
            // loaded machine makes happen at random; a blocking sendto waits instead.
            None => args.extend(["--gap", "0"]),
        }
        // Its own process group: trafgen forks a sender per CPU, and SIGINT must reach it too.
        let child = ns
            .cmd(&args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "cannot run trafgen (apt-get install netsniff-ng; `cargo xtask setup` does it)",
            );
        Self {
            child: Some(child),
            cfg: path,
        }
    }

    /// SIGINT, wait, and return how many frames trafgen sent ("N packets outgoing").
    pub fn stop(mut self) -> u64 {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child's process group (`ip netns exec` execs trafgen in
        // place; the group holds trafgen and the sender it forked).
        unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
        let mut out = String::new();
        let mut err = String::new();
        let _ = child.stdout.take().unwrap().read_to_string(&mut out);
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let status = child.wait().expect("waiting for trafgen");
        let text = format!("{out}\n{err}");
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_suffix("packets outgoing")
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("trafgen ({status}) printed no packet count: {text}"))
    }

    /// Runs trafgen for `d` and returns how many frames it sent.
    pub fn run_for(
        ns: &Netns,
        iface: &str,
        dir: &Path,
        cfg: &str,
        pps: Option<u64>,
        d: Duration,
    ) -> u64 {
        let t = Self::start(ns, iface, dir, cfg, pps);
        std::thread::sleep(d);
        t.stop()
    }
}

impl Drop for Trafgen {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as in `stop`.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.cfg);
    }
}

/// The process's resident memory and CPU time, from /proc/<pid>/status and /proc/<pid>/stat.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcUsage {
    /// Resident set now and its peak (VmRSS, VmHWM), KiB.
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// The anonymous part of the resident set (RssAnon, KiB): the process's own heap and
    /// stacks, without mapped files and shared memory such as BPF ring buffers.
    pub anon_kib: u64,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
}

/// Reads [`ProcUsage`] of `pid`; `None` if it is gone.
pub fn proc_usage(pid: u32) -> Option<ProcUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime
    // are fields 14 and 15 (proc(5)).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ProcUsage {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        anon_kib: kib("RssAnon:"),
        cpu_ticks: ticks,
    })
}

/// Clock ticks per second (for [`ProcUsage::cpu_ticks`]).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}
