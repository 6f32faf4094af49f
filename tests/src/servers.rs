//! Real DNS software (NSD, dig) and the nsdb daemon, run inside test namespaces.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// An NSD authoritative server in a namespace, killed on drop.
pub struct Nsd {
    child: Child,
    pub dir: PathBuf,
}

/// A zone for [`Nsd::start`]: origin and zone-file text.
pub struct Zone<'a> {
    pub name: &'a str,
    pub text: String,
}

impl Nsd {
    /// Starts NSD in `ns` on `addrs`, serving `zones`; returns once it answers on the first
    /// address.
    pub fn start(ns: &Netns, dir: &Path, addrs: &[&str], zones: &[Zone<'_>]) -> Self {
        let dir = dir.join(crate::unique("nsd"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = String::from("server:\n");
        for a in addrs {
            conf += &format!("  ip-address: {a}\n");
        }
        conf += &format!(
            "  port: 53\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  \
             database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
             logfile: \"{d}/nsd.log\"\n  verbosity: 1\n  server-count: 1\n  tcp-count: 64\n  \
             hide-version: yes\n  refuse-any: no\nremote-control:\n  control-enable: no\n",
            d = dir.display()
        );
        for z in zones {
            let file = format!("{}.zone", z.name.trim_end_matches('.'));
            std::fs::write(dir.join(&file), &z.text).unwrap();
            conf += &format!("zone:\n  name: \"{}\"\n  zonefile: \"{}\"\n", z.name, file);
        }
        let conf_path = dir.join("nsd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = ns
            .cmd(&["nsd", "-d", "-c", conf_path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nsd (apt-get install nsd; `cargo xtask setup` does it)");
        let nsd = Self { child, dir };
        let probe = zones.first().map(|z| z.name).unwrap_or(".");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(out) = dig(ns, addrs[0], probe, "SOA", 1)
                && out.contains("status: NOERROR")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nsd did not answer on {} within 10 s: {}",
                addrs[0],
                std::fs::read_to_string(nsd.dir.join("nsd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        nsd
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dig @server name type` from namespace `ns`, one try of `timeout_s` seconds, UDP.
/// `Some(output)` if dig got an answer, `None` on a time-out.
pub fn dig(ns: &Netns, server: &str, name: &str, qtype: &str, timeout_s: u32) -> Option<String> {
    let out = ns
        .cmd(&[
            "dig",
            &format!("@{server}"),
            name,
            qtype,
            "+tries=1",
            &format!("+time={timeout_s}"),
            "+norecurse",
            "+noedns",
        ])
        .output()
        .expect("cannot run dig (apt-get install dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() && text.contains("->>HEADER<<-") {
        Some(text)
    } else {
        None
    }
}

/// The DNS id dig printed for its query (`id: NNNN` in its header line).
pub fn dig_id(out: &str) -> u64 {
    let at = out.find("id: ").expect("dig prints the id");
    out[at + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A running `nsdb run`, stopped with SIGTERM on [`Daemon::stop`] (or killed on drop).
pub struct Daemon {
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The control socket the daemon was given (unless the test gave its own --control).
    pub control: Option<PathBuf>,
}

impl Daemon {
    /// Starts `nsdb run <args>` in `ns` and waits for "nsdb ready".
    pub fn start(ns: &Netns, args: &[&str]) -> Self {
        let bin = crate::nsdb_bin();
        let mut all = vec![bin.to_str().unwrap(), "run"];
        all.extend_from_slice(args);
        // Each daemon gets its own control socket (tests run in parallel).
        let control = std::env::temp_dir().join(format!("nsdb-{}.sock", crate::unique("ctl")));
        let control_arg = control.to_str().unwrap().to_string();
        if !args.contains(&"--control") {
            all.extend_from_slice(&["--control", &control_arg]);
        }
        let mut child = ns
            .cmd(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start nsdb");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("nsdb ready") {
                    let _ = tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut d = Self {
            child: Some(child),
            stderr,
            control: if args.contains(&"--control") {
                None
            } else {
                Some(control)
            },
        };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let status = d.child.as_mut().unwrap().try_wait();
            panic!(
                "nsdb did not become ready in 30 s ({status:?}): {}",
                d.stderr_text()
            );
        }
        d
    }

    /// The daemon's process id (`ip netns exec` runs nsdb in its own process).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGKILL (no clean-up of any kind), wait, and return what it had printed on stderr.
    pub fn kill9(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.stderr_text()
    }

    /// Waits up to `timeout` for a stderr line containing `text`.
    pub fn wait_for_line(&self, text: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.stderr.lock().unwrap().iter().any(|l| l.contains(text)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERM, wait, and return the final counters it printed.
    pub fn stop(self) -> serde_json::Value {
        self.stop_report()["final_counters"].clone()
    }

    /// SIGTERM, wait, and return the whole exit report: `final_counters`, `live` (what live
    /// learning did), `engine` (the learning engine's counters), `learn_latency_us`.
    pub fn stop_report(mut self) -> serde_json::Value {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("waiting for nsdb");
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let text = self.stderr_text();
        assert!(status.success(), "nsdb exited with {status}: {text}");
        let line = text
            .lines()
            .find(|l| l.starts_with('{') && l.contains("\"final_counters\""))
            .unwrap_or_else(|| panic!("no final counters printed: {text}"));
        serde_json::from_str(line).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a JSON-lines alert file.
pub fn read_alerts(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad alert line {l:?}: {e}")))
        .collect()
}

/// The counter `key` of a final report's `final_counters` (panics, naming it, if absent).
pub fn counter(c: &serde_json::Value, key: &str) -> u64 {
    c[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key} in {c}"))
}

/// Sum of the counters whose names start with `prefix` (e.g. `query_unknown_drop_`); at least
/// one must exist.
pub fn counter_sum(c: &serde_json::Value, prefix: &str) -> u64 {
    let m = c.as_object().expect("counters are an object");
    let keys: Vec<_> = m.keys().filter(|k| k.starts_with(prefix)).collect();
    assert!(!keys.is_empty(), "no counter starts with {prefix}: {c}");
    keys.iter().map(|k| m[*k].as_u64().unwrap_or(0)).sum()
}
