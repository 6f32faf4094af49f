//! Network namespaces and veth pairs, created per test under unique names and deleted on drop
//! (also when the test panics), so parallel tests and crashed runs leave nothing behind.

use std::process::{Command, Output};

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {:?}: {e} (is it installed? `cargo xtask setup` installs it)",
                args
            )
        });
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = crate::unique(tag);
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec <ns> <args>` as a Command, to run or spawn.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs a command in the namespace and returns its output; panics if it fails.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// `ip <args>` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Enables IPv4 and IPv6 forwarding (a router).
    pub fn forwarding(&self) {
        self.run(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        self.run(&["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Killing processes left in the namespace first lets `ip netns del` free it at once.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    // SAFETY: sending a signal to a pid.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Connects `a` and `b` with a veth pair named `a_if` (in a) and `b_if` (in b), both up, with
/// the given addresses (CIDR notation, IPv4 or IPv6; none is fine).
pub fn veth(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    let tmp_a = crate::unique("va");
    let tmp_b = crate::unique("vb");
    sh(&[
        "ip", "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
    ]);
    sh(&["ip", "link", "set", &tmp_a, "netns", &a.name]);
    sh(&["ip", "link", "set", &tmp_b, "netns", &b.name]);
    a.ip(&["link", "set", &tmp_a, "name", a_if]);
    b.ip(&["link", "set", &tmp_b, "name", b_if]);
    for (ns, ifn, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            let mut args = vec!["addr", "add", addr, "dev", ifn];
            if addr.contains(':') {
                args.push("nodad");
            }
            ns.ip(&args);
        }
        ns.ip(&["link", "set", ifn, "up"]);
    }
}
