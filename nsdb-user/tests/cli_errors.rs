//! Bad input gives a one-line error naming what and where, and a non-zero exit; never a panic.

mod common;
use common::*;
use hickory_proto::rr::RecordType;

fn fails(args: &[&str]) -> String {
    let o = nsdb(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "nsdb {args:?} should fail; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "nsdb {args:?} panicked: {err}");
    err
}

#[test]
fn bad_capture_files() {
    let d = tmpdir("cli-bad");
    let db = d.join("h.db");
    let db = db.to_str().unwrap();
    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let e = fails(&["learn", "-q", empty.to_str().unwrap(), "--db", db]);
    assert!(
        e.contains(&format!("nsdb: error: {}: empty file", empty.display())),
        "{e}"
    );
    let e = fails(&["check", d.to_str().unwrap(), "--db", db]);
    assert!(e.contains("is a directory"), "{e}");
    let e = fails(&["learn", "-q", "/nonexistent/x.pcap", "--db", db]);
    assert!(
        e.contains("/nonexistent/x.pcap: No such file or directory"),
        "{e}"
    );
}

#[test]
fn truncated_capture_keeps_what_came_before() {
    let d = tmpdir("cli-trunc");
    let mut p = Pcap::new();
    p.udp(
        1_000,
        "192.0.2.10:40000",
        "198.41.0.4:53",
        &query(1, "a.test", RecordType::A),
    );
    p.udp(
        1_010,
        "198.41.0.4:53",
        "192.0.2.10:40000",
        &referral(
            1,
            "a.test",
            RecordType::A,
            "test",
            &["ns.test"],
            &[("ns.test", "192.0.2.53")],
            3600,
        ),
    );
    p.udp(
        1_020,
        "192.0.2.10:40000",
        "198.41.0.4:53",
        &query(2, "b.test", RecordType::A),
    );
    let bytes = p.bytes();
    let cut = d.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let o = nsdb(&[
        "learn",
        "-q",
        "--format",
        "json",
        cut.to_str().unwrap(),
        "--db",
        d.join("h.db").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "a truncated capture is a warning: {err}"
    );
    assert!(
        err.contains(&format!(
            "{}: file truncated in the record at byte",
            cut.display()
        )),
        "{err}"
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["read"]["files_truncated"], 1);
    assert_eq!(s["engine"]["learned"], 1, "{s}");
}

#[test]
fn bad_flags() {
    let d = tmpdir("cli-flags");
    let db = d.join("h.db");
    let db = db.to_str().unwrap();
    let pc = d.join("x.pcap");
    Pcap::new().write(&pc);
    let pc = pc.to_str().unwrap();
    let e = fails(&[
        "learn",
        pc,
        "--db",
        db,
        "--min-ttl",
        "100",
        "--max-ttl",
        "10",
    ]);
    assert!(
        e.contains("--min-ttl 100 is larger than --max-ttl 10"),
        "{e}"
    );
    let e = fails(&["learn", pc, "--db", db, "--exception", "not-an-ip"]);
    assert!(
        e.contains("--exception \"not-an-ip\": not an IP address or prefix"),
        "{e}"
    );
    let e = fails(&["learn", pc, "--db", db, "--bailiwick", "sometimes"]);
    assert!(e.contains("invalid value 'sometimes'"), "{e}");
    let e = fails(&["lookup", "not-an-ip", "--db", db]);
    assert!(e.contains("invalid value 'not-an-ip'"), "{e}");
    let e = fails(&["export", "--db", db, "--format", "xml"]);
    assert!(e.contains("invalid value 'xml'"), "{e}");
    let e = fails(&[
        "learn",
        pc,
        "--db",
        db,
        "--root-hints",
        "/nonexistent/root.hints",
    ]);
    assert!(e.contains("--root-hints /nonexistent/root.hints"), "{e}");
    // Every flag has help with an example.
    for cmd in ["learn", "check", "lookup", "export"] {
        let h = nsdb_ok(&[cmd, "--help"]);
        assert!(h.contains("Example"), "{cmd} --help has no example:\n{h}");
        for line in h
            .lines()
            .filter(|l| l.trim_start().starts_with("--") && !l.contains("--help"))
        {
            let flag = line.split_whitespace().next().unwrap();
            let i = h.find(line).unwrap();
            let block: String = h[i..].lines().take(4).collect::<Vec<_>>().join(" ");
            assert!(
                block.contains("Example") || block.contains("example"),
                "{cmd} {flag}: help without an example: {block}"
            );
        }
    }
}

#[test]
fn missing_foreign_and_corrupt_databases_are_refused_and_untouched() {
    let d = tmpdir("cli-db");
    let pc = d.join("x.pcap");
    Pcap::new().write(&pc);
    let pc = pc.to_str().unwrap();
    // Missing: check/lookup/export say so (learn creates it).
    let missing = d.join("missing.db");
    for args in [
        vec!["check", pc, "--db", missing.to_str().unwrap()],
        vec!["lookup", "192.0.2.1", "--db", missing.to_str().unwrap()],
        vec![
            "export",
            "--db",
            missing.to_str().unwrap(),
            "--format",
            "csv",
        ],
    ] {
        let e = fails(&args);
        assert!(
            e.contains(&format!("{}: no such database", missing.display())),
            "{e}"
        );
        assert!(!missing.exists());
    }
    // Not SQLite.
    let text = d.join("text.db");
    std::fs::write(&text, b"name,address\nx,192.0.2.1\n").unwrap();
    let e = fails(&["learn", pc, "--db", text.to_str().unwrap()]);
    assert!(
        e.contains(&format!("{}: not an SQLite database", text.display())),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&text).unwrap(),
        b"name,address\nx,192.0.2.1\n"
    );
    // Somebody else's SQLite database.
    let foreign = d.join("foreign.db");
    foreign_db(&foreign);
    let before = std::fs::read(&foreign).unwrap();
    let e = fails(&["learn", pc, "--db", foreign.to_str().unwrap()]);
    assert!(e.contains("does not belong to nsdb"), "{e}");
    assert_eq!(std::fs::read(&foreign).unwrap(), before);
    // A real nsdb database, then damaged in the middle.
    let good = d.join("good.db");
    nsdb_ok(&[
        "learn",
        "-q",
        &pcaps()
            .join("A-iterative/dnscap-resolver-root-referral-aaa.pcap")
            .display()
            .to_string(),
        "--db",
        good.to_str().unwrap(),
    ]);
    let mut bytes = std::fs::read(&good).unwrap();
    assert!(
        bytes.len() > 8192,
        "db too small to damage: {}",
        bytes.len()
    );
    let end = bytes.len() - 100;
    for b in &mut bytes[4096..end] {
        *b = 0xa5;
    }
    std::fs::write(&good, &bytes).unwrap();
    let e = fails(&["lookup", "37.209.192.9", "--db", good.to_str().unwrap()]);
    assert!(
        e.contains(&format!("{}:", good.display()))
            && (e.contains("corrupt") || e.contains("malformed")),
        "{e}"
    );
    let e = fails(&["learn", pc, "--db", good.to_str().unwrap()]);
    assert!(e.contains("corrupt") || e.contains("malformed"), "{e}");
    assert_eq!(
        std::fs::read(&good).unwrap(),
        bytes,
        "corrupt database was modified"
    );
    // Each error is one line.
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}

/// Somebody else's SQLite database: one table that is not nsdb's.
fn foreign_db(path: &std::path::Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x');")
        .unwrap();
}

/// Every file under `dir` with its size and content hash: "nothing was created or changed".
fn snapshot(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, (u64, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                out.insert(p.clone(), (0, 0));
                stack.push(p);
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap_or_default().hash(&mut h);
                out.insert(p, (m.len(), h.finish()));
            }
        }
    }
    out
}

/// Runs nsdb with a deadline (a `run` that got past validation would start the daemon).
fn nsdb_deadline(args: &[String]) -> std::process::Output {
    use std::io::Read as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nsdb"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nsdb {args:?} still running after 30 s: it did not fail");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// Issue 6: every command given bad input at the edges (missing file, directory, empty file,
/// truncated capture, corrupt or foreign database, invalid CIDR, unknown interface, port in
/// use, bad config, pin directory not on bpffs, no daemon listening) exits non-zero with one
/// line on stderr that starts with `nsdb: error:` (clap's usage error, exit 2, for values a
/// flag's parser refuses) and names the offending path or value; nothing is created or
/// changed (every file under the test directory is the same before and after; the paths a
/// command would create do not exist).
#[test]
fn bad_input_table() {
    let d = tmpdir("cli-table");
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    // Inputs.
    let pcap = p("ok.pcap");
    Pcap::new().write(std::path::Path::new(&pcap));
    let mut one = Pcap::new();
    one.udp(
        1_000,
        "192.0.2.10:40000",
        "198.41.0.4:53",
        &query(1, "a.test", RecordType::A),
    );
    let bytes = one.bytes().to_vec();
    std::fs::write(p("cut-header.pcap"), &bytes[..10]).unwrap();
    std::fs::write(p("cut-first-record.pcap"), &bytes[..bytes.len() - 5]).unwrap();
    std::fs::write(p("empty"), b"").unwrap();
    std::fs::write(p("text.pcap"), b"this is not a capture\n").unwrap();
    std::fs::create_dir(p("dir")).unwrap();
    std::fs::write(p("text.db"), b"name,address\nx,192.0.2.1\n").unwrap();
    foreign_db(std::path::Path::new(&p("foreign.db")));
    std::fs::write(p("allow-bad.txt"), b"192.0.2.1\nnot-a-net\n").unwrap();
    std::fs::write(p("hints-bad"), b"; nothing here\n").unwrap();
    std::fs::write(p("bad-key.toml"), b"mode = \"enforce\"\nfrobnicate = 1\n").unwrap();
    std::fs::write(p("invalid.toml"), b"mode = \n").unwrap();
    std::fs::write(p("not-a-socket"), b"").unwrap();
    // A real nsdb database (check needs one to get as far as the captures).
    let good = p("good.db");
    nsdb_ok(&["learn", "-q", &pcap, "--db", &good]);
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{good}{ext}"));
    }
    // A port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();

    // Paths a failed command must not create.
    let new_db = p("new.db");
    let alerts = p("alerts.json");
    let explain = p("explain.jsonl");
    // `run` cases get these unless they set the flag themselves: nothing is served, bound or
    // created by a run that fails validation.
    let run_defaults = [
        ("--db", new_db.as_str()),
        ("--alerts", alerts.as_str()),
        ("--metrics-addr", "off"),
        ("--control", "off"),
    ];
    let nosock = p("no-daemon.sock");

    struct Case {
        args: Vec<String>,
        /// Substrings of the error line: what is wrong, and the path or value.
        says: Vec<String>,
        /// clap refuses the value (exit 2, its own usage message).
        usage: bool,
    }
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let case = |args: &[&str], says: &[&str]| Case {
        args: own(args),
        says: own(says),
        usage: false,
    };
    let usage = |args: &[&str], says: &[&str]| Case {
        args: own(args),
        says: own(says),
        usage: true,
    };
    let pc = pcap.as_str();
    let (nd, gd) = (new_db.as_str(), good.as_str());
    let (dir, empty, text_db, foreign) = (p("dir"), p("empty"), p("text.db"), p("foreign.db"));
    let (dir, empty, text_db, foreign) = (
        dir.as_str(),
        empty.as_str(),
        text_db.as_str(),
        foreign.as_str(),
    );
    let missing_pcap = p("missing.pcap");
    let missing_pcap = missing_pcap.as_str();
    let (cut_h, cut_r, text_pc) = (
        p("cut-header.pcap"),
        p("cut-first-record.pcap"),
        p("text.pcap"),
    );
    let (cut_h, cut_r, text_pc) = (cut_h.as_str(), cut_r.as_str(), text_pc.as_str());
    let nodir_db = p("nodir/h.db");
    let nodir_db = nodir_db.as_str();
    let nodir_file = p("nodir/x");
    let nodir_file = nodir_file.as_str();
    let allow_bad = p("allow-bad.txt");
    let hints_bad = p("hints-bad");
    let bad_key = p("bad-key.toml");
    let invalid_toml = p("invalid.toml");
    let missing_toml = p("missing.toml");
    let not_sock = p("not-a-socket");
    let pin = p("pins");
    let cases = vec![
        // learn: captures
        case(
            &["learn", missing_pcap, "--db", nd],
            &[missing_pcap, "No such file"],
        ),
        case(&["learn", dir, "--db", nd], &[dir, "is a directory"]),
        case(&["learn", empty, "--db", nd], &[empty, "empty file"]),
        case(
            &["learn", text_pc, "--db", nd],
            &[text_pc, "not a pcap or pcapng file"],
        ),
        case(&["learn", cut_h, "--db", nd], &[cut_h, "truncated"]),
        case(&["learn", cut_r, "--db", nd], &[cut_r, "truncated"]),
        case(
            &["learn", missing_pcap, empty, "--db", nd],
            &["none of the 2 capture files", missing_pcap, empty],
        ),
        // learn: database and flags
        case(&["learn", pc, "--db", dir], &[dir, "is a directory"]),
        case(
            &["learn", pc, "--db", nodir_db],
            &[nodir_db, "does not exist"],
        ),
        case(
            &["learn", pc, "--db", text_db],
            &[text_db, "not an SQLite database"],
        ),
        case(
            &["learn", pc, "--db", foreign],
            &[foreign, "does not belong to nsdb"],
        ),
        case(
            &["learn", pc, "--db", nd, "--root-hints", missing_pcap],
            &["--root-hints", missing_pcap],
        ),
        case(
            &["learn", pc, "--db", nd, "--root-hints", dir],
            &["--root-hints", dir],
        ),
        case(
            &["learn", pc, "--db", nd, "--root-hints", &hints_bad],
            &["--root-hints", &hints_bad],
        ),
        case(
            &["learn", pc, "--db", nd, "--exception", "192.0.2.0/33"],
            &["--exception", "192.0.2.0/33"],
        ),
        case(
            &[
                "learn",
                pc,
                "--db",
                nd,
                "--min-ttl",
                "100",
                "--max-ttl",
                "10",
            ],
            &["--min-ttl 100"],
        ),
        case(
            &["learn", pc, "--db", nd, "--explain", nodir_file],
            &["--explain", nodir_file, "does not exist"],
        ),
        case(
            &["learn", pc, "--db", nd, "--explain", dir],
            &["--explain", dir, "is a directory"],
        ),
        usage(&["learn", pc, "--db", nd, "--port", "70000"], &["70000"]),
        usage(
            &["learn", pc, "--db", nd, "--bailiwick", "sometimes"],
            &["sometimes"],
        ),
        // check
        case(
            &["check", missing_pcap, "--db", gd],
            &[missing_pcap, "No such file"],
        ),
        case(&["check", dir, "--db", gd], &[dir, "is a directory"]),
        case(&["check", empty, "--db", gd], &[empty, "empty file"]),
        case(&["check", cut_h, "--db", gd], &[cut_h, "truncated"]),
        case(&["check", pc, "--db", nd], &[nd, "no such database"]),
        case(&["check", pc, "--db", dir], &[dir, "is a directory"]),
        case(
            &["check", pc, "--db", empty],
            &[empty, "not an nsdb database"],
        ),
        case(
            &["check", pc, "--db", text_db],
            &[text_db, "not an SQLite database"],
        ),
        case(
            &["check", pc, "--db", foreign],
            &[foreign, "does not belong to nsdb"],
        ),
        // lookup
        case(
            &["lookup", "192.0.2.1", "--db", nd],
            &[nd, "no such database"],
        ),
        case(
            &["lookup", "192.0.2.1", "--db", dir],
            &[dir, "is a directory"],
        ),
        case(
            &["lookup", "192.0.2.1", "--db", empty],
            &[empty, "not an nsdb database"],
        ),
        case(
            &["lookup", "192.0.2.1", "--db", text_db],
            &[text_db, "not an SQLite database"],
        ),
        case(
            &["lookup", "192.0.2.1", "--db", foreign],
            &[foreign, "does not belong to nsdb"],
        ),
        usage(&["lookup", "192.0.2.256", "--db", gd], &["192.0.2.256"]),
        // export
        case(
            &["export", "--db", nd, "--format", "csv"],
            &[nd, "no such database"],
        ),
        case(
            &["export", "--db", dir, "--format", "json"],
            &[dir, "is a directory"],
        ),
        case(
            &["export", "--db", empty, "--format", "csv"],
            &[empty, "not an nsdb database"],
        ),
        case(
            &["export", "--db", text_db, "--format", "csv"],
            &[text_db, "not an SQLite database"],
        ),
        case(
            &["export", "--db", foreign, "--format", "csv"],
            &[foreign, "does not belong to nsdb"],
        ),
        usage(&["export", "--db", gd, "--format", "xml"], &["xml"]),
        // run: everything is checked before anything is loaded, bound or created
        case(
            &["run", "--iface", "nsdb-nosuch0"],
            &["nsdb-nosuch0", "does not exist"],
        ),
        usage(
            &["run", "--iface", "lo", "--internal", "192.0.2.0/33"],
            &["192.0.2.0/33"],
        ),
        usage(&["run", "--iface", "lo", "--internal", "lan"], &["lan"]),
        case(
            &["run", "--iface", "lo", "--allow", missing_pcap],
            &["allow file", missing_pcap, "No such file"],
        ),
        case(
            &["run", "--iface", "lo", "--allow", dir],
            &["allow file", dir],
        ),
        case(
            &["run", "--iface", "lo", "--allow", empty],
            &["allow file", empty, "empty file"],
        ),
        case(
            &["run", "--iface", "lo", "--allow", &allow_bad],
            &[&allow_bad, ":2:", "not-a-net"],
        ),
        case(
            &["run", "--iface", "lo", "--root-hints", missing_pcap],
            &["--root-hints", missing_pcap],
        ),
        case(
            &["run", "--iface", "lo", "--root-hints", &hints_bad],
            &["--root-hints", &hints_bad],
        ),
        case(
            &["run", "--iface", "lo", "--db", dir],
            &[dir, "is a directory"],
        ),
        case(
            &["run", "--iface", "lo", "--db", text_db],
            &[text_db, "not an SQLite database"],
        ),
        case(
            &["run", "--iface", "lo", "--db", foreign],
            &[foreign, "does not belong to nsdb"],
        ),
        case(
            &["run", "--iface", "lo", "--db", nodir_db],
            &[nodir_db, "does not exist"],
        ),
        case(
            &["run", "--iface", "lo", "--alerts", nodir_file],
            &["alert log", nodir_file, "does not exist"],
        ),
        case(
            &["run", "--iface", "lo", "--alerts", dir],
            &["alert log", dir, "is a directory"],
        ),
        case(
            &["run", "--iface", "lo", "--metrics-addr", &busy],
            &["metrics address", &busy],
        ),
        usage(
            &["run", "--iface", "lo", "--metrics-addr", "localhost"],
            &["localhost"],
        ),
        case(
            &["run", "--iface", "lo", "--config", &missing_toml],
            &[&missing_toml, "No such file"],
        ),
        case(&["run", "--iface", "lo", "--config", dir], &[dir]),
        case(
            &["run", "--iface", "lo", "--config", &invalid_toml],
            &[&invalid_toml],
        ),
        case(
            &["run", "--iface", "lo", "--config", &bad_key],
            &[&bad_key, "unknown key \"frobnicate\""],
        ),
        case(
            &[
                "run",
                "--iface",
                "lo",
                "--on-exit",
                "keep",
                "--pin-dir",
                &pin,
            ],
            &[&pin, "not on a BPF file system"],
        ),
        case(
            &[
                "run",
                "--iface",
                "lo",
                "--min-ttl",
                "100",
                "--max-ttl",
                "10",
            ],
            &["--min-ttl 100"],
        ),
        // The kernel refuses the maps (2^32 buckets): nothing may be left behind, neither the
        // database nor the alert log (run_defaults; the program is loaded before any file).
        case(
            &["run", "--iface", "lo", "--allow-entries", "4294967295"],
            &["loading the eBPF programs", "4294967295 entries"],
        ),
        // stats and allow with no daemon listening
        case(
            &["stats", "--control", &nosock],
            &[&nosock, "no nsdb daemon"],
        ),
        case(
            &["stats", "--control", &not_sock],
            &[&not_sock, "no nsdb daemon"],
        ),
        case(
            &["allow", "list", "--control", &nosock],
            &[&nosock, "no nsdb daemon"],
        ),
        case(
            &["allow", "add", "192.0.2.1", "--control", &nosock],
            &[&nosock, "no nsdb daemon"],
        ),
        case(
            &["allow", "remove", "192.0.2.1", "--control", dir],
            &[dir, "no nsdb daemon"],
        ),
        usage(
            &["allow", "add", "192.0.2.0/33", "--control", &nosock],
            &["192.0.2.0/33"],
        ),
    ];
    let commands: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| c.args[0].as_str()).collect();
    assert_eq!(
        commands.into_iter().collect::<Vec<_>>(),
        [
            "allow", "check", "export", "learn", "lookup", "run", "stats"
        ],
        "every command is in the table"
    );
    let mut failures = Vec::new();
    for c in &cases {
        let mut args = c.args.clone();
        if args[0] == "run" {
            for (flag, v) in run_defaults {
                if !c.args.iter().any(|a| a == flag) {
                    args.extend([flag.to_string(), v.to_string()]);
                }
            }
        }
        let before = snapshot(&d);
        let o = nsdb_deadline(&args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let after = snapshot(&d);
        let mut bad = Vec::new();
        if o.status.success() {
            bad.push("exit status 0".to_string());
        }
        if err.contains("panicked") {
            bad.push("panicked".into());
        }
        let first = err.lines().next().unwrap_or("");
        if c.usage {
            if o.status.code() != Some(2) || !first.starts_with("error: invalid value") {
                bad.push(format!(
                    "not clap's usage error (exit {:?})",
                    o.status.code()
                ));
            }
        } else if err.trim_end().lines().count() != 1 || !first.starts_with("nsdb: error: ") {
            bad.push("stderr is not one `nsdb: error:` line".into());
        }
        for s in &c.says {
            if !first.contains(s.as_str()) {
                bad.push(format!("the error does not say {s:?}"));
            }
        }
        if before != after {
            let changed: Vec<_> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| k.display().to_string())
                .chain(
                    before
                        .keys()
                        .filter(|k| !after.contains_key(*k))
                        .map(|k| k.display().to_string()),
                )
                .collect();
            bad.push(format!("files created or changed: {changed:?}"));
        }
        for path in [&new_db, &alerts, &explain] {
            if std::path::Path::new(path).exists() {
                bad.push(format!("{path} was created"));
                let _ = std::fs::remove_file(path);
            }
        }
        if !bad.is_empty() {
            failures.push(format!(
                "nsdb {}\n  {}\n  stderr: {err}",
                args.join(" "),
                bad.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
