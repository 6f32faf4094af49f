//! `nsdb learn`: build the NS record history from capture files (paper §3–4).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::learn::{Bailiwick, Engine, LearnConfig, Source};
use crate::offline::{self, ReadSummary};
use crate::store::{Store, Writer};

/// Settings of the learning engine, shared by `learn` and `check --replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineFlags {
    /// How long after a glue-less referral a lookup of the NS name still supplies its address,
    /// in milliseconds (paper §4: 2 s). Example: --glueless-window-ms 3000
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub glueless_window_ms: u64,
    /// Shortest TTL honoured, in seconds; shorter ones are raised to it. Example: --min-ttl 60
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub min_ttl: u32,
    /// Longest TTL honoured, in seconds; longer ones are cut to it. Example: --max-ttl 86400
    #[arg(long, default_value_t = 172_800, value_name = "SECONDS")]
    pub max_ttl: u32,
    /// Extra time an entry stays valid after its TTL, in seconds (resolvers serve stale data,
    /// RFC 8767, and prefetch). Example: --grace 600
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub grace: u64,
    /// Bailiwick rule: auto (known servers teach their zones; unknown servers the parent of
    /// the delegated zone), strict (only known servers teach), off (the paper's prototype).
    /// Example: --bailiwick strict
    #[arg(long, value_enum, default_value_t = Bailiwick::Auto)]
    pub bailiwick: Bailiwick,
    /// Replace the built-in IANA root hints with a named.root-format file.
    /// Example: --root-hints /usr/share/dns/root.hints
    #[arg(long, value_name = "FILE")]
    pub root_hints: Option<PathBuf>,
    /// An address or prefix always registered (e.g. a public resolver the site uses); kept
    /// apart from learned data. Repeatable. Example: --exception 192.0.2.53 --exception 2001:db8::/64
    #[arg(long = "exception", value_name = "IP[/LEN]")]
    pub exceptions: Vec<String>,
    /// UDP/TCP port carrying DNS; repeatable (default 53). Example: --port 53 --port 1053
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
}

impl EngineFlags {
    pub fn ports(&self) -> Vec<u16> {
        if self.ports.is_empty() {
            vec![53]
        } else {
            self.ports.clone()
        }
    }

    pub fn exceptions(&self) -> Result<Vec<ipnet::IpNet>> {
        self.exceptions
            .iter()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("--exception {s:?}: not an IP address or prefix"))
            })
            .collect()
    }

    pub fn config(&self) -> Result<LearnConfig> {
        if self.min_ttl > self.max_ttl {
            bail!(
                "--min-ttl {} is larger than --max-ttl {}",
                self.min_ttl,
                self.max_ttl
            );
        }
        let mut cfg = LearnConfig {
            glueless_window_ms: self.glueless_window_ms,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            grace_ms: self.grace.saturating_mul(1000),
            bailiwick: self.bailiwick,
            exceptions: self.exceptions()?,
            ..LearnConfig::default()
        };
        if let Some(p) = &self.root_hints {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--root-hints {}", p.display()))?;
            cfg.root_hints = crate::roots::parse_named_root(&text)
                .with_context(|| format!("--root-hints {}", p.display()))?;
        }
        Ok(cfg)
    }
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  nsdb learn campus-2026-11-27.pcap more.pcapng --db /var/lib/nsdb/history.db"
)]
pub struct LearnArgs {
    /// Capture files (pcap or pcapng), read in the order given. Example: trace1.pcap trace2.pcapng
    #[arg(required = true, value_name = "PCAP")]
    pub pcaps: Vec<PathBuf>,
    /// History database (SQLite); created if missing, added to if it exists.
    /// Example: --db history.db
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
    #[command(flatten)]
    pub engine: EngineFlags,
    /// Record every query in query_db as the paper's prototype did (default: only the queries
    /// whose responses taught something). Example: --all-queries
    #[arg(long)]
    pub all_queries: bool,
    /// Record an ns_db row for every sighting of an NS record, as the paper's prototype did
    /// (default: the first sighting of each (zone, NS name, address); the history table counts
    /// every sighting either way). Example: --all-ns-rows
    #[arg(long)]
    pub all_ns_rows: bool,
    /// Write one JSON line per candidate (zone, NS name, address) with the verdict on it
    /// (learned, unsolicited, out_of_bailiwick, ...). Example: --explain decisions.jsonl
    #[arg(long, value_name = "FILE")]
    pub explain: Option<PathBuf>,
    /// Summary format. Example: --format json
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
    /// Do not draw a progress bar even on a terminal. Example: --quiet
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryFormat {
    Text,
    Json,
}

/// Load the stored history (and exceptions) into an engine.
pub fn restore(engine: &mut Engine, store: &Store) -> Result<usize> {
    let rows = store.history()?;
    for r in &rows {
        engine.restore(
            &r.zone,
            &r.ns_name,
            r.addr,
            r.first_seen,
            r.last_seen,
            r.count,
            r.expires,
            r.ttl,
            Source::parse(&r.source),
        );
    }
    Ok(rows.len())
}

/// Offline commit policy: the history is committed after this many DNS messages read (and at
/// the end, also after SIGINT/SIGTERM), not once per wall-clock second as the daemon does. The
/// input can be read again, so a crash costs re-reading, not data; and each commit upserts every
/// history entry refreshed since the previous one (on a busy trace nearly the whole history), so
/// commits by wall time made a slowed-down run (a loaded machine) do more work for the same
/// input. 2,000,000 messages are about two CPU-seconds of learning; a commit of 18,000 entries
/// costs about 0.1 s.
pub const COMMIT_EVERY_MESSAGES: u64 = 2_000_000;
/// Also commit once this many query_db/ns_db rows are waiting (bounds memory with
/// `--all-queries` / `--all-ns-rows`).
pub const COMMIT_LOG_ROWS: usize = 500_000;

pub fn run(args: LearnArgs) -> Result<()> {
    let mut cfg = args.engine.config()?;
    offline::check_any_readable(&args.pcaps)?;
    if let Some(p) = &args.explain {
        // Checked before the database is created; the file itself is created after it opens.
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        if p.is_dir() {
            bail!("--explain {}: is a directory", p.display());
        }
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            bail!(
                "--explain {}: directory {} does not exist",
                p.display(),
                dir.display()
            );
        }
    }
    let store = Store::open(&args.db)?;
    cfg.exceptions.extend(store.exceptions()?);
    cfg.record_rows = true;
    cfg.record_all_queries = args.all_queries;
    cfg.record_all_ns_rows = args.all_ns_rows;
    cfg.explain = args.explain.is_some();
    let mut engine = Engine::new(cfg);
    let restored = restore(&mut engine, &store)?;
    let mut writer = Writer::new(store);
    writer_exceptions(&mut writer, &args.engine)?;
    let mut explain = match &args.explain {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("--explain {}", p.display()))?,
        )),
        None => None,
    };
    offline::catch_signals();
    let mut write_err: Option<anyhow::Error> = None;
    let ports = args.engine.ports();
    let engine_cell = std::cell::RefCell::new(&mut engine);
    let messages = std::cell::Cell::new(0u64);
    let mut committed_at = 0u64;
    let (summary, errors) = offline::read_all(
        &args.pcaps,
        &ports,
        !args.quiet,
        &mut |m| {
            messages.set(messages.get() + 1);
            let mut e = engine_cell.borrow_mut();
            if m.is_response {
                e.on_response_count(m.ts_ms, m.pkt.src, m.pkt.dst, m.pkt.msg);
            } else {
                e.on_query(m.ts_ms, m.pkt.src, m.pkt.dst, m.pkt.msg);
            }
        },
        &mut || {
            let mut e = engine_cell.borrow_mut();
            // Commits by capture progress (see COMMIT_EVERY_MESSAGES); a history entry seen
            // many times since the last commit is written once. After a signal, reading stops
            // and the final commit below writes everything.
            if messages.get() - committed_at >= COMMIT_EVERY_MESSAGES
                || e.log_rows_pending() >= COMMIT_LOG_ROWS
            {
                committed_at = messages.get();
                writer.queue(e.take_rows());
                // On failure the rows stay queued for the next commit.
                if let Err(err) = writer.flush() {
                    write_err.get_or_insert(err.into());
                }
            }
            if let Some(w) = explain.as_mut() {
                for d in e.take_decisions() {
                    let _ = serde_json::to_writer(&mut *w, &d);
                    let _ = w.write_all(b"\n");
                }
            }
        },
    );
    // Final batch (also after SIGINT/SIGTERM: everything read is written).
    writer.queue(engine.take_rows());
    if let Some(w) = explain.as_mut() {
        for d in engine.take_decisions() {
            serde_json::to_writer(&mut *w, &d)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    writer.flush()?;
    let commits = writer.commit_stats().0;
    let store = writer.finish()?;
    if let Some(e) = write_err {
        return Err(e);
    }
    let (nq, nn, nh) = store.counts()?;
    for e in &errors {
        eprintln!("nsdb: {e}");
    }
    print_summary(&args, &summary, &engine, restored, (nq, nn, nh, commits))?;
    if offline::stop_requested() {
        eprintln!("nsdb: stopped by signal; everything read so far was written");
    }
    let failed = summary.files_failed;
    if failed > 0 {
        bail!(
            "{failed} of {} files could not be read (see above)",
            summary.files
        );
    }
    Ok(())
}

fn writer_exceptions(w: &mut Writer, flags: &EngineFlags) -> Result<()> {
    let ex = flags.exceptions()?;
    if !ex.is_empty() {
        // Through a fresh handle: the writer owns the store.
        let mut s = Store::open(w.store().path())?;
        s.set_exceptions(&ex)?;
    }
    Ok(())
}

fn print_summary(
    args: &LearnArgs,
    s: &ReadSummary,
    e: &Engine,
    restored: usize,
    db: (u64, u64, u64, u64),
) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match summary_to(&mut o, args, s, e, restored, db) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn summary_to(
    o: &mut impl Write,
    args: &LearnArgs,
    s: &ReadSummary,
    e: &Engine,
    restored: usize,
    (nq, nn, nh, commits): (u64, u64, u64, u64),
) -> std::io::Result<()> {
    let st = e.stats();
    let rate = s.dns_messages as f64 / s.seconds.max(1e-9);
    match args.format {
        SummaryFormat::Json => {
            let v = serde_json::json!({
                "read": s,
                "engine": st,
                "history_restored": restored,
                "db": { "path": args.db, "query_db_rows": nq, "ns_db_rows": nn, "history_rows": nh, "commits": commits },
                "dns_messages_per_second": rate,
            });
            writeln!(o, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        SummaryFormat::Text => {
            let c = &s.capture;
            writeln!(
                o,
                "files {} ({} unreadable, {} truncated), {} bytes in {:.3} s",
                s.files, s.files_failed, s.files_truncated, s.bytes, s.seconds
            )?;
            writeln!(
                o,
                "packets {}  DNS messages {} ({:.0}/s; UDP {}, TCP {}, IP fragments reassembled {})",
                s.packets, s.dns_messages, rate, c.udp_messages, c.tcp.messages, c.frag.reassembled
            )?;
            writeln!(
                o,
                "queries {}  responses {}  paired {}  unsolicited {}  question mismatch {}",
                st.queries, st.responses, st.paired, st.unsolicited, st.question_mismatch
            )?;
            writeln!(
                o,
                "NS records {}  glue addresses {}  learned {}  refreshed {}  out of bailiwick {}",
                st.ns_records, st.glue_addrs, st.learned, st.refreshed, st.out_of_bailiwick
            )?;
            writeln!(
                o,
                "glue-less: pending {}  resolved {}  expired {}  lookups of NS names {}",
                st.glueless_pending, st.glueless_resolved, st.glueless_expired, st.ns_lookup_addrs
            )?;
            writeln!(
                o,
                "malformed skipped {}  truncated (TC) {}  not NOERROR {}  bad headers {}  other ports {}",
                st.malformed + s.runts,
                st.truncated,
                st.not_noerror,
                c.bad_headers,
                c.other_ports
            )?;
            writeln!(
                o,
                "database {}: query_db {}  ns_db {}  history {}  ({} commits)",
                args.db.display(),
                nq,
                nn,
                nh,
                commits
            )?;
        }
    }
    Ok(())
}
