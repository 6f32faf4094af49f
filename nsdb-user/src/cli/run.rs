//! `nsdb run`: attach the XDP filter to gateway interfaces and run the daemon.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ipnet::IpNet;
use nsdb_common::{kind, mode};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    alerts::AlertSink,
    allowlist,
    events::EventReader,
    loader::{self, AttachMode, Filter, Sizes},
    roots,
};

/// Filtering mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Pass everything; count unknown destinations and raise alerts.
    Monitor,
    /// Drop DNS queries (and TCP connections to port 53) to unknown destinations.
    Enforce,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    nsdb run --iface eth1 --iface eth2 --internal 192.0.2.0/24 --mode monitor\n  \
    nsdb run --iface lan0 --mode enforce --allow /etc/nsdb/allow.txt --alerts /var/log/nsdb/alerts.json")]
pub struct RunArgs {
    /// Interface to attach to; repeat for several (inline router: LAN and WAN; mirror port: the
    /// one that sees both directions). Example: --iface eth1 --iface eth2
    #[arg(long = "iface", required = true, value_name = "IF")]
    pub ifaces: Vec<String>,

    /// monitor: pass everything, alert on unknown destinations; enforce: also drop them.
    /// Example: --mode enforce
    #[arg(long, value_enum, default_value_t = Mode::Monitor)]
    pub mode: Mode,

    /// The organisation's own prefixes; queries to them are not checked (verdict `internal`).
    /// Repeat for several. Example: --internal 192.0.2.0/24 --internal 2001:db8:1::/48
    #[arg(long = "internal", value_name = "CIDR", value_parser = parse_cidr)]
    pub internal: Vec<IpNet>,

    /// File of exceptions always allowed (verdict `exempt`): one IP or CIDR per line, `#`
    /// comments; e.g. public resolvers the organisation uses. Example: --allow /etc/nsdb/allow.txt
    #[arg(long, value_name = "FILE")]
    pub allow: Option<PathBuf>,

    /// Where alerts go, one JSON object per line: a file (appended, reopened on SIGHUP) or `-`
    /// for stdout. Example: --alerts /var/log/nsdb/alerts.json
    #[arg(long, value_name = "PATH|-", default_value = "-")]
    pub alerts: String,

    /// The NS history database (SQLite); its unexpired name servers are allowed at start.
    /// Example: --db /var/lib/nsdb/history.db
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Root hints file in named.root format, replacing the built-in IANA root servers.
    /// Example: --root-hints /usr/share/dns/root.hints
    #[arg(long, value_name = "FILE")]
    pub root_hints: Option<PathBuf>,

    /// auto: native XDP, falling back to generic mode with a warning; native or generic: only
    /// that. Example: --xdp-mode generic
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,

    /// Alerts per second allowed per source address after the burst (0: unlimited); counters
    /// stay exact either way. Example: --event-rate 10
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub event_rate: u32,

    /// Alerts a source address may raise at once before --event-rate applies.
    /// Example: --event-burst 50
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub event_burst: u32,

    /// Capacity of each allow map (IPv4 and IPv6 name servers); least recently used entries
    /// are evicted beyond it. Example: --allow-entries 2000000
    #[arg(long, default_value_t = nsdb_common::DEFAULT_ALLOW_ENTRIES, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub allow_entries: u32,
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    allowlist::parse_net(s).ok_or_else(|| format!("{s:?} is not an IP address or CIDR prefix"))
}

pub fn run(args: RunArgs) -> Result<()> {
    crate::cli::init_logging();
    // Everything that can be checked is checked before anything is loaded or attached.
    for iface in &args.ifaces {
        if loader::ifindex(iface).is_none() {
            anyhow::bail!("interface {iface:?} does not exist");
        }
    }
    let exempt = match &args.allow {
        Some(p) => allowlist::load(p)?,
        None => Vec::new(),
    };
    let hints = match &args.root_hints {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read root hints {}", p.display()))?;
            roots::parse_named_root(&text).with_context(|| format!("root hints {}", p.display()))?
        }
        None => roots::builtin(),
    };
    let mut sink = AlertSink::open(&args.alerts)
        .with_context(|| format!("cannot open alert log {}", args.alerts))?;

    let mut filter = Filter::load(Sizes {
        allow_entries: args.allow_entries,
    })?;
    filter.set_mode(match args.mode {
        Mode::Monitor => mode::MONITOR,
        Mode::Enforce => mode::ENFORCE,
    })?;
    filter.set_event_rate(args.event_rate, args.event_burst)?;
    for net in &args.internal {
        filter.add_internal(*net)?;
    }
    for net in &exempt {
        filter.add_exempt(*net)?;
    }
    for h in &hints {
        filter.allow(h.addr, u64::MAX, kind::ROOT)?;
    }
    let restored = match &args.db {
        Some(db) => crate::cli::restore_history(&mut filter, db)?,
        None => 0,
    };
    let ring = filter.take_events().expect("events are taken once, here");
    let attached = filter.attach_all(&args.ifaces, args.xdp_mode)?;
    for (iface, how) in &attached {
        tracing::info!(iface = %iface, xdp = how, "attached");
    }
    tracing::info!(
        mode = ?args.mode,
        roots = hints.len(),
        exceptions = exempt.len(),
        internal = args.internal.len(),
        restored,
        "nsdb ready"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(event_loop(ring, &mut sink))?;

    // Detach first (dropping the links), then report what was seen.
    let counters = filter.counters()?;
    drop(filter);
    tracing::info!("detached");
    eprintln!(
        "{}",
        serde_json::json!({ "final_counters": counters.to_json() })
    );
    Ok(())
}

async fn event_loop(
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    sink: &mut AlertSink,
) -> Result<()> {
    let mut reader = EventReader::new(ring).context("watching the event ring buffer")?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut write_err = None;
    loop {
        tokio::select! {
            r = reader.next_batch(|a| {
                if let Err(e) = sink.write(&a) {
                    write_err.get_or_insert(e);
                }
            }) => {
                let bad = r?;
                if bad > 0 {
                    tracing::warn!(records = bad, "malformed event records skipped");
                }
                if let Some(e) = write_err.take() {
                    tracing::error!(error = %e, "writing alerts failed");
                }
                if let Err(e) = sink.flush() {
                    tracing::error!(error = %e, "flushing alerts failed");
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => {
                match sink.reopen() {
                    Ok(()) => tracing::info!("alert log reopened"),
                    Err(e) => tracing::error!(error = %e, "reopening the alert log failed"),
                }
            }
        }
    }
    reader.drain(|a| {
        let _ = sink.write(&a);
    });
    sink.flush()?;
    Ok(())
}
