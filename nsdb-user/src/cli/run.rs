//! `nsdb run`: attach the filter (XDP or TC ingress) to gateway interfaces and run the daemon.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ipnet::IpNet;
use nsdb_common::{kind, mode};
use tokio::signal::unix::{SignalKind, signal};

use aya::maps::{MapData, RingBuf};

use crate::{
    alerts::AlertSink,
    allowlist,
    events::{self, RingReader},
    learn::Engine,
    live::{self, LiveLearner},
    loader::{self, AttachMode, Filter, Hook, OnExit, Sizes},
    metrics::{self, Metrics, MetricsAddr, RunInfo},
    store::{Store, Writer},
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

    /// auto: native XDP, falling back to generic mode with a warning; native or generic: only
    /// that. Ignored with --attach tc. Example: --xdp-mode generic
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,

    /// Where the filter runs: xdp (before the kernel builds an skb; best on physical NICs with
    /// native XDP) or tc (TC ingress through a tcx link, on the normal skb path; best on veth
    /// and other virtual interfaces, where XDP itself costs about a quarter of the forwarding
    /// rate). Same checks, learning, counters and alerts either way; --on-exit keep needs tcx
    /// links (Linux ≥ 6.6) with tc. Example: --attach tc
    #[arg(long, value_enum, default_value_t = Hook::Xdp)]
    pub attach: Hook,

    /// Alerts per second allowed per source address after the burst (0: unlimited); counters
    /// stay exact either way. Example: --event-rate 10
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub event_rate: u32,

    /// Alerts a source address may raise at once before --event-rate applies.
    /// Example: --event-burst 50
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub event_burst: u32,

    /// Capacity of each allow map (IPv4 and IPv6 name servers); least recently used entries
    /// are evicted beyond it. The kernel allocates the maps whole at start: about 88 bytes per
    /// entry for IPv4 and 96 for IPv6, 184 MiB for the default (nsdb_kernel_map_bytes).
    /// Example: --allow-entries 2000000
    #[arg(long, default_value_t = nsdb_common::DEFAULT_ALLOW_ENTRIES, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub allow_entries: u32,

    /// Learn only in userspace, not in the XDP program (for comparison: the program then no
    /// longer has referral glue in the map before the resolver's next query).
    /// Example: --no-kernel-learning
    #[arg(long)]
    pub no_kernel_learning: bool,

    /// Every how many milliseconds the daemon reads the paired responses that the program has
    /// already learned from; 0 reads each one as it arrives. Batching spares a wake-up per
    /// response; the cost is that the history and the userspace checks (which may withdraw
    /// what the program learned) run up to this much later. Responses the program could not
    /// learn from whole are read at once either way; with --no-kernel-learning nothing is
    /// batched. Example: --response-batch-ms 0
    #[arg(long, default_value_t = 10, value_name = "MS",
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub response_batch_ms: u32,

    /// Where to serve Prometheus metrics (/metrics) and the status page (/): an address with
    /// a port, or `off`. Example: --metrics-addr [::1]:9853
    #[arg(long, default_value = metrics::DEFAULT_ADDR, value_name = "ADDR|off")]
    pub metrics_addr: MetricsAddr,

    /// What happens to filtering when the daemon ends (also by kill -9). detach: the program
    /// is removed. keep: it stays attached with its maps pinned under --pin-dir, so filtering
    /// (and in-kernel learning of referral glue) goes on; the next daemon takes it over without
    /// a gap. Example: --on-exit keep
    #[arg(long, value_enum, default_value_t = OnExit::Detach)]
    pub on_exit: OnExit,

    /// Directory on the BPF file system for --on-exit keep (links and allow maps), one per
    /// daemon. A daemon started with a directory holding a previous daemon's state takes it
    /// over (whatever its --on-exit). Example: --pin-dir /sys/fs/bpf/nsdb-wan
    #[arg(long, default_value = "/sys/fs/bpf/nsdb", value_name = "DIR")]
    pub pin_dir: PathBuf,

    /// The control socket for `nsdb stats` and `nsdb allow` (mode 0600), or `off`.
    /// Example: --control /run/nsdb/wan.sock
    #[arg(long, default_value = crate::control::DEFAULT_PATH, value_name = "PATH|off")]
    pub control: String,

    /// A TOML file with any of these flags (keys are the long flag names: `mode = "enforce"`,
    /// `iface = ["lan0", "wan0"]`); flags on the command line replace its values.
    /// Example: --config /etc/nsdb/nsdb.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the configuration (flags, config file, interfaces, allow file, root hints,
    /// database, alert log and metrics address) and exit without loading or attaching
    /// anything. Example: nsdb run --config /etc/nsdb/nsdb.toml --check-config
    #[arg(long)]
    pub check_config: bool,

    #[command(flatten)]
    pub engine: crate::cli::learn::EngineFlags,
}

/// The files and resources `run` will use, checked without creating or changing anything:
/// the database opens (or its directory exists), the alert log's directory exists, the metrics
/// address is free, the pin directory is on a BPF file system.
fn validate(args: &RunArgs) -> Result<()> {
    if let Some(db) = &args.db {
        if db.exists() {
            Store::open_existing(db)
                .with_context(|| format!("opening history database {}", db.display()))?;
        } else {
            let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                anyhow::bail!(
                    "history database {}: directory {} does not exist",
                    db.display(),
                    dir.display()
                );
            }
        }
    }
    if args.alerts != "-" {
        let p = std::path::Path::new(&args.alerts);
        if p.is_dir() {
            anyhow::bail!("alert log {}: is a directory", p.display());
        }
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            anyhow::bail!(
                "alert log {}: directory {} does not exist",
                p.display(),
                dir.display()
            );
        }
    }
    if let Some(addr) = args.metrics_addr.0 {
        std::net::TcpListener::bind(addr)
            .with_context(|| format!("metrics address {addr}: cannot listen"))?;
    }
    if args.on_exit == OnExit::Keep || args.pin_dir.exists() {
        let dir = &args.pin_dir;
        if dir.exists() && !dir.is_dir() {
            anyhow::bail!("pin directory {}: not a directory", dir.display());
        }
        // The nearest existing ancestor tells the file system (as Filter::use_pin_dir does).
        let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(dir);
        if !loader::on_bpffs(existing) {
            anyhow::bail!(
                "pin directory {}: not on a BPF file system (mount one: mount -t bpf bpf /sys/fs/bpf)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// `--check-config`: what `run` would check before attaching, without side effects; prints
/// the effective configuration as JSON on stdout.
fn check_config(args: &RunArgs, exempt: &[IpNet], roots: usize) -> Result<()> {
    println!(
        "{}",
        serde_json::json!({
            "config": "ok",
            "ifaces": args.ifaces,
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "internal": args.internal.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "exceptions": exempt.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "root_hints": roots,
            "db": args.db,
            "alerts": args.alerts,
            "metrics_addr": args.metrics_addr.0.map(|a| a.to_string()),
            "xdp_mode": format!("{:?}", args.xdp_mode).to_lowercase(),
            "attach": format!("{:?}", args.attach).to_lowercase(),
            "allow_entries": args.allow_entries,
            "event_rate": args.event_rate,
            "event_burst": args.event_burst,
            "kernel_learning": !args.no_kernel_learning,
            "on_exit": format!("{:?}", args.on_exit).to_lowercase(),
            "pin_dir": args.pin_dir,
        })
    );
    Ok(())
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
    let mut exempt = match &args.allow {
        Some(p) => {
            let nets = allowlist::load(p)?;
            // A file with only comments says "no exceptions"; an empty one is more likely a
            // failed copy or the wrong path.
            if std::fs::metadata(p).is_ok_and(|m| m.len() == 0) {
                anyhow::bail!(
                    "allow file {}: empty file (list one IP or CIDR per line, or leave out --allow)",
                    p.display()
                );
            }
            nets
        }
        None => Vec::new(),
    };
    let from_file = exempt.len();
    let mut learn_cfg = args.engine.config()?;
    exempt.extend(learn_cfg.exceptions.iter().copied());
    learn_cfg.exceptions = exempt.clone();
    learn_cfg.record_rows = args.db.is_some();
    let hints = learn_cfg.root_hints.clone();
    validate(&args)?;
    if args.check_config {
        return check_config(&args, &exempt, hints.len());
    }

    // The program is loaded (and verified) before any file or socket is created: a kernel that refuses
    // it leaves no new database or alert log behind. It is not attached yet.
    let mut filter = Filter::load(Sizes {
        allow_entries: args.allow_entries,
    })
    .with_context(|| {
        format!(
            "loading the eBPF programs (allow maps of {} entries each)",
            args.allow_entries
        )
    })?;
    let metrics = Metrics::new(RunInfo {
        mode: match args.mode {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        },
        ifaces: args.ifaces.clone(),
        allow_capacity: u64::from(args.allow_entries),
        exceptions: exempt.len() as u64,
    });
    if let Some(addr) = args.metrics_addr.0 {
        crate::status::spawn(addr, metrics.clone())?;
    }
    let control_socket = match args.control.as_str() {
        "off" => None,
        path => Some(crate::control::bind(std::path::Path::new(path))?),
    };
    // Files last, after everything that can fail without leaving anything behind.
    let store = match &args.db {
        Some(db) => Some(
            Store::open(db)
                .with_context(|| format!("opening history database {}", db.display()))?,
        ),
        None => None,
    };
    let mut sink = AlertSink::open(&args.alerts)
        .with_context(|| format!("cannot open alert log {}", args.alerts))?;

    filter.set_mode(match args.mode {
        Mode::Monitor => mode::MONITOR,
        Mode::Enforce => mode::ENFORCE,
    })?;
    filter.set_event_rate(args.event_rate, args.event_burst)?;
    filter.set_learning(
        !args.no_kernel_learning,
        learn_cfg.min_ttl,
        learn_cfg.max_ttl,
        learn_cfg.grace_ms.saturating_mul(1_000_000),
        learn_cfg.glueless_window_ms.saturating_mul(1_000_000),
    )?;
    for net in &args.internal {
        filter.add_internal(*net)?;
    }
    for net in &exempt {
        filter.add_exempt(*net)?;
    }
    for h in &hints {
        filter.allow(h.addr, u64::MAX, kind::ROOT)?;
    }
    let mut engine = Engine::new(learn_cfg);
    let mut restored = 0;
    if let Some(store) = &store {
        crate::cli::learn::restore(&mut engine, store)?;
        restored = crate::cli::restore_history(&mut filter, store)?;
    }
    let mut live = LiveLearner::new(engine, store.map(Writer::new));
    live.set_latency_observer(metrics.learn_latency_observer());
    metrics.count_allow(&filter);
    metrics.set_kernel_maps(&filter);
    let (v4, v6) = filter.allow_len();
    live.set_baseline((v4 + v6) as u64, u64::from(args.allow_entries));
    // With learning in userspace only, every response is urgent: no batching.
    let batch_ms = if args.no_kernel_learning {
        0
    } else {
        args.response_batch_ms
    };
    live.set_response_batching(&mut filter, batch_ms)?;
    let events = filter.take_events().expect("events are taken once, here");
    let responses = filter
        .take_responses()
        .expect("responses are taken once, here");
    let keep = args.on_exit == OnExit::Keep;
    let mut takeover = loader::Takeover::default();
    if keep || args.pin_dir.exists() {
        takeover = filter
            .use_pin_dir(&args.pin_dir, keep)
            .context("using the pin directory")?;
    }
    let (attached, took) = filter.attach_all(&args.ifaces, args.xdp_mode, args.attach)?;
    takeover.entries += took.entries;
    takeover.links += took.links;
    for (iface, how) in &attached {
        match args.attach {
            Hook::Xdp => tracing::info!(iface = %iface, xdp = how, "attached"),
            Hook::Tc => tracing::info!(iface = %iface, tc = how, "attached"),
        }
    }
    if takeover.links > 0 || takeover.entries > 0 {
        tracing::info!(
            links = takeover.links,
            entries = takeover.entries,
            "took over the previous daemon's pinned state"
        );
    }
    tracing::info!(
        mode = ?args.mode,
        roots = hints.len(),
        exceptions = exempt.len(),
        internal = args.internal.len(),
        restored,
        "nsdb ready"
    );

    let mut ctl = Ctl {
        socket: control_socket,
        rx: None,
        mode: match args.mode {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        },
        ifaces: args.ifaces.clone(),
        started: std::time::Instant::now(),
        exceptions: exempt
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, if i < from_file { "allow-file" } else { "flag" }))
            .collect(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let loop_result = rt.block_on(event_loop(
        events,
        responses,
        &mut sink,
        &mut filter,
        &mut live,
        &metrics,
        &mut ctl,
    ));

    // Detach first (dropping the links), then report what was seen.
    live.full_sweep(&mut filter, crate::clock::mono_ns());
    let counters = filter.counters()?;
    let stats = live.stats;
    let latency = live.latency_percentiles();
    let engine_stats = live.engine().stats();
    drop(filter);
    if keep {
        tracing::info!(pin_dir = %args.pin_dir.display(), "left attached with its maps pinned (--on-exit keep)");
    } else {
        tracing::info!("detached");
    }
    let finished = live.finish();
    eprintln!(
        "{}",
        serde_json::json!({
            "final_counters": counters.to_json(),
            "live": stats,
            "engine": engine_stats,
            "takeover": takeover,
            "learn_latency_us": latency.map(|(p50, p99)| serde_json::json!({"p50": p50, "p99": p99})),
        })
    );
    loop_result?;
    finished.context("saving the history database")?;
    Ok(())
}

/// How long after the program wakes the daemon for an alert event it reads the event ring
/// (see `event_loop`): an alert is written at most this much later.
const EVENT_BATCH: std::time::Duration = std::time::Duration::from_millis(10);

async fn event_loop(
    events: RingBuf<MapData>,
    responses: RingBuf<MapData>,
    sink: &mut AlertSink,
    filter: &mut Filter,
    live: &mut LiveLearner,
    metrics: &Metrics,
    ctl: &mut Ctl,
) -> Result<()> {
    if let Some(socket) = ctl.socket.as_mut() {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        socket.serve(tx)?;
        ctl.rx = Some(rx);
    }
    let mut events = RingReader::new(events).context("watching the event ring buffer")?;
    let mut responses = RingReader::new(responses).context("watching the response ring buffer")?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Response batching (--response-batch-ms): woken by the first response into an empty ring,
    // the loop reads the ring `batch` later, and what arrives meanwhile wakes nobody. The
    // program forces a wake-up for a response only userspace can learn from whole (counted in
    // response_walk_limit, so the loop can tell) and for a ring a quarter full: both are read
    // at once.
    let batching = live.response_batch_ms() > 0;
    let batch = std::time::Duration::from_millis(u64::from(live.response_batch_ms()));
    let mut read_at: Option<tokio::time::Instant> = None;
    let walk_limit = |filter: &Filter| {
        filter
            .counter(nsdb_common::counter::RESP_WALK_LIMIT)
            .unwrap_or(u64::MAX)
    };
    let mut stops_seen = walk_limit(filter);
    // Alerts are read in batches too: woken by the first event into an empty ring, the loop
    // reads the ring EVENT_BATCH later, and the events that arrive meanwhile wake nobody. A
    // wake-up is a self-IPI on the CPU that sent the packet (in a VM, an exit to the
    // hypervisor), which perf showed at about a tenth of the program's time on a DNS mix
    // with unknown destinations; batched, at most 100 a second.
    let mut events_at: Option<tokio::time::Instant> = None;
    let mut bad_events = 0u64;
    let mut write_err = None;
    let mut on_event = |bytes: &[u8], sink: &mut AlertSink| match events::decode(bytes) {
        Some(a) => {
            metrics.on_alert(&a);
            if let Err(e) = sink.write(&a) {
                write_err.get_or_insert(e);
            }
        }
        None => bad_events += 1,
    };
    loop {
        tokio::select! {
            r = responses.woken() => {
                r?;
                let read_now = !batching || read_at.is_some() || !live.stats.response_batching || {
                    let stops = walk_limit(filter);
                    let forced = stops != stops_seen;
                    stops_seen = stops;
                    forced
                };
                if read_now {
                    // Not batching, or forced (see above), or batching suspended (the maps may
                    // be over half full): read now.
                    read_at = None;
                    responses.drain(|bytes| take_response(live, filter, bytes));
                    live.check_batching(filter);
                } else {
                    read_at = Some(tokio::time::Instant::now() + batch);
                }
            }
            _ = async {
                match read_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            }, if read_at.is_some() => {
                read_at = None;
                responses.drain(|bytes| take_response(live, filter, bytes));
                live.check_batching(filter);
            }
            r = events.woken(), if events_at.is_none() => {
                r?;
                events_at = Some(tokio::time::Instant::now() + EVENT_BATCH);
            }
            _ = async {
                match events_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            }, if events_at.is_some() => {
                events_at = None;
                events.drain(|bytes| on_event(bytes, sink));
                if let Err(e) = sink.flush() {
                    tracing::error!(error = %e, "flushing alerts failed");
                }
            }
            _ = tick.tick() => {
                filter.check_interfaces();
                live.tick(filter);
                metrics.update(filter, live);
            }
            Some(call) = async {
                match ctl.rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let answer = ctl.handle(&call.req, filter, live, metrics);
                let _ = call.reply.send(answer);
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
    responses.drain(|bytes| take_response(live, filter, bytes));
    events.drain(|bytes| on_event(bytes, sink));
    sink.flush()?;
    if let Some(e) = write_err {
        tracing::error!(error = %e, "writing alerts failed");
    }
    if bad_events > 0 {
        tracing::warn!(records = bad_events, "malformed event records skipped");
    }
    Ok(())
}

/// One record of the RESPONSES ring buffer.
fn take_response(live: &mut LiveLearner, filter: &mut Filter, bytes: &[u8]) {
    match live::decode(bytes) {
        Some(ev) => live.on_response(filter, &ev),
        None => live.stats.bad_records += 1,
    }
}

/// What the control socket needs besides the filter and the learner.
struct Ctl {
    socket: Option<crate::control::Socket>,
    rx: Option<tokio::sync::mpsc::Receiver<crate::control::Call>>,
    mode: &'static str,
    ifaces: Vec<String>,
    started: std::time::Instant,
    /// The exceptions in force, with where each came from.
    exceptions: Vec<(IpNet, &'static str)>,
}

impl Ctl {
    fn handle(
        &mut self,
        req: &crate::control::Request,
        filter: &mut Filter,
        live: &mut LiveLearner,
        metrics: &Metrics,
    ) -> serde_json::Value {
        use crate::control::Request;
        use serde_json::json;
        match req {
            Request::Stats => {
                let counters = match filter.counters() {
                    Ok(c) => c.to_json(),
                    Err(e) => return json!({"ok": false, "error": e.to_string()}),
                };
                json!({
                    "ok": true,
                    "mode": self.mode,
                    "ifaces": self.ifaces,
                    "attached": filter.attached_now(),
                    "uptime_s": self.started.elapsed().as_secs(),
                    "counters": counters,
                    "live": live.stats,
                    "engine": live.engine().stats(),
                    "learn_latency_us": live.latency_percentiles().map(|(p50, p99)| json!({"p50": p50, "p99": p99})),
                    "exceptions": self.list(),
                })
            }
            Request::AllowList => json!({"ok": true, "exceptions": self.list()}),
            Request::AllowAdd(net) => {
                let net = net.trunc();
                if self.exceptions.iter().any(|(n, _)| *n == net) {
                    return json!({"ok": true, "changed": false});
                }
                if let Err(e) = filter.add_exempt(net) {
                    return json!({"ok": false, "error": e.to_string()});
                }
                live.engine_mut().exceptions_mut().push(net);
                self.exceptions.push((net, "runtime"));
                metrics.set_exceptions(self.exceptions.len() as u64);
                tracing::info!(net = %net, "exception added (nsdb allow add)");
                json!({"ok": true, "changed": true})
            }
            Request::AllowRemove(net) => {
                let net = net.trunc();
                let Some(i) = self.exceptions.iter().position(|(n, _)| *n == net) else {
                    return json!({"ok": false, "error": format!("{net} is not an exception (see nsdb allow list)")});
                };
                filter.remove_exempt(net);
                live.engine_mut().exceptions_mut().retain(|n| *n != net);
                self.exceptions.remove(i);
                metrics.set_exceptions(self.exceptions.len() as u64);
                tracing::info!(net = %net, "exception removed (nsdb allow remove)");
                json!({"ok": true, "changed": true})
            }
        }
    }

    fn list(&self) -> Vec<serde_json::Value> {
        self.exceptions
            .iter()
            .map(|(n, src)| serde_json::json!({"net": n.to_string(), "source": src}))
            .collect()
    }
}
