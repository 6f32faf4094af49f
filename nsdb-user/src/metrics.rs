//! Prometheus metrics of the daemon, and the data behind the status page.
//!
//! The event loop is single-threaded and owns the [`Filter`] and the [`LiveLearner`]; the HTTP
//! server ([`crate::status`]) runs on its own thread. They share one [`Metrics`]: at each
//! 500 ms tick the loop copies the kernel counters and the learning statistics into a snapshot
//! ([`Metrics::update`]), and hands every alert to [`Metrics::on_alert`] (top talkers, recent
//! alerts). A scrape encodes the snapshot through a prometheus-client [`Collector`], so the
//! counters are the kernel's own (summed over CPUs), never re-counted. The latency histograms
//! are prometheus-client histograms, observed as learning and commits happen.
//!
//! Metric names, labels and meaning are documented in `docs/metrics.md`.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    sync::{Arc, Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use nsdb_common::{action, counter, family, kind, transport, verdict};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::ConstCounter,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use serde_json::json;

use crate::{
    counters::Counters,
    events::Alert,
    learn,
    live::{LiveLearner, LiveStats},
    loader::Filter,
};

/// Default address of the metrics and status server: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9853";

/// Where the metrics and status server listens: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl FromStr for MetricsAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "none" | "" => Ok(Self(None)),
            _ => s.parse().map(|a| Self(Some(a))).map_err(|_| {
                format!(
                    "{s:?} is not an address with a port (e.g. 127.0.0.1:9853, [::1]:9853) or `off`"
                )
            }),
        }
    }
}

impl TryFrom<String> for MetricsAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("off"),
        }
    }
}

/// Samples of the query chart: one per tick (500 ms), 6 minutes.
const SERIES_LEN: usize = 720;
/// Addresses tracked per top list; beyond it the least seen are forgotten.
const TOP_TRACKED: usize = 4096;
/// Entries of the top lists and of the recent alerts shown.
const TOP_SHOWN: usize = 10;
const RECENT_ALERTS: usize = 20;

/// What the daemon was started with (shown on the status page and in `nsdb_info`).
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub mode: &'static str,
    pub ifaces: Vec<String>,
    /// Capacity of each allow map (IPv4, IPv6).
    pub allow_capacity: u64,
    /// Exception prefixes configured (`--allow` and the engine's exceptions).
    pub exceptions: u64,
}

/// Counts of a bounded set of addresses; when full, the least counted quarter is forgotten at
/// once (an approximation that keeps the heavy hitters; one O(n) pass per n/4 new addresses).
#[derive(Debug, Default)]
struct Top {
    counts: HashMap<IpAddr, u64>,
}

impl Top {
    fn add(&mut self, a: IpAddr) {
        if !self.counts.contains_key(&a) && self.counts.len() >= TOP_TRACKED {
            self.forget_least(TOP_TRACKED / 4);
        }
        *self.counts.entry(a).or_insert(0) += 1;
    }

    /// Removes `n` entries, the least counted first.
    fn forget_least(&mut self, n: usize) {
        let mut v: Vec<u64> = self.counts.values().copied().collect();
        if n == 0 || v.is_empty() {
            return;
        }
        let n = n.min(v.len());
        let threshold = *v.select_nth_unstable(n - 1).1;
        let below = v.iter().filter(|c| **c < threshold).count();
        let mut at_threshold = n - below;
        self.counts.retain(|_, c| {
            if *c < threshold {
                false
            } else if *c == threshold && at_threshold > 0 {
                at_threshold -= 1;
                false
            } else {
                true
            }
        });
    }

    fn top(&self, n: usize) -> Vec<(IpAddr, u64)> {
        let mut v: Vec<(IpAddr, u64)> = self.counts.iter().map(|(a, c)| (*a, *c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// One chart sample: cumulative query counts at a tick.
#[derive(Clone, Copy, Debug)]
struct Sample {
    unix_ms: u64,
    registered: u64,
    unknown: u64,
}

/// The snapshot the event loop refreshes and the server reads.
#[derive(Debug)]
struct State {
    info: RunInfo,
    started_unix_ms: u64,
    kernel: Counters,
    live: LiveStats,
    engine: learn::Stats,
    /// Allow-map entries by kind (index: `nsdb_common::kind`), at start and at each full sweep.
    allow_kinds: [u64; 4],
    /// Kernel memory of each of the program's maps (name, bytes), read at start.
    kernel_maps: Vec<(String, u64)>,
    sweeps_seen: u64,
    /// Eviction estimate, never decreasing (a counter).
    evicted: u64,
    /// Database commits seen and their total time, to observe new commits.
    db_commits: (u64, u64),
    alerts: u64,
    series: VecDeque<Sample>,
    top_dst: Top,
    top_src: Top,
    recent: VecDeque<Alert>,
}

/// The daemon's metrics, shared by the event loop and the HTTP server (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
    learn_latency: Histogram,
    db_commit: Histogram,
    registry: Arc<Registry>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl Metrics {
    pub fn new(info: RunInfo) -> Self {
        let state = Arc::new(Mutex::new(State {
            info,
            started_unix_ms: unix_ms(),
            kernel: Counters::from_raw(vec![0; counter::COUNT as usize]),
            live: LiveStats::default(),
            engine: learn::Stats::default(),
            allow_kinds: [0; 4],
            kernel_maps: Vec::new(),
            sweeps_seen: 0,
            evicted: 0,
            db_commits: (0, 0),
            alerts: 0,
            series: VecDeque::with_capacity(SERIES_LEN),
            top_dst: Top::default(),
            top_src: Top::default(),
            recent: VecDeque::with_capacity(RECENT_ALERTS),
        }));
        // Learning: 5 µs to ~0.16 s (userspace lagging behind a burst).
        let learn_latency = Histogram::new(exponential_buckets(5e-6, 2.0, 16));
        // SQLite commits: 0.1 ms to ~3 s.
        let db_commit = Histogram::new(exponential_buckets(1e-4, 2.0, 16));
        let mut registry = Registry::with_prefix("nsdb");
        registry.register_with_unit(
            "learn_latency",
            "Time from a paired response's arrival in the kernel to the allow-map update by the learning engine",
            Unit::Seconds,
            learn_latency.clone(),
        );
        registry.register_with_unit(
            "db_commit_duration",
            "Time one batched commit of the history database took",
            Unit::Seconds,
            db_commit.clone(),
        );
        registry.register_collector(Box::new(SnapshotCollector(state.clone())));
        Self {
            state,
            learn_latency,
            db_commit,
            registry: Arc::new(registry),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the allow map by kind now (at start; later the live learner's full sweeps do).
    pub fn count_allow(&self, filter: &Filter) {
        let mut kinds = [0u64; 4];
        for (_, e) in filter.allow_entries() {
            if let Some(n) = kinds.get_mut(usize::from(e.kind)) {
                *n += 1;
            }
        }
        self.lock().allow_kinds = kinds;
    }

    /// Records the kernel memory of the program's maps (`Filter::map_memory`). Nearly all of it
    /// is allocated when the program is loaded (the allow maps, the in-flight table, the ring
    /// buffers), so it is read once, at start.
    pub fn set_kernel_maps(&self, filter: &Filter) {
        match filter.map_memory() {
            Ok(maps) => {
                self.lock().kernel_maps = maps.into_iter().map(|m| (m.name, m.bytes)).collect();
            }
            Err(e) => tracing::warn!(error = %e, "reading the maps' memory failed"),
        }
    }

    /// Sets the number of exception prefixes (when the operator changes them at run time).
    pub fn set_exceptions(&self, n: u64) {
        self.lock().info.exceptions = n;
    }

    /// Refreshes the snapshot from the program's counters and the learner (each tick).
    pub fn update(&self, filter: &Filter, live: &LiveLearner) {
        let kernel = match filter.counters() {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "reading the program's counters failed");
                None
            }
        };
        let commits = live.writer().map(|w| w.commit_stats());
        let engine = live.engine().stats();
        let mut s = self.lock();
        if let Some(k) = kernel {
            s.kernel = k;
        }
        s.live = live.stats;
        s.engine = engine;
        s.evicted = s.evicted.max(live.stats.evicted);
        if live.stats.full_sweeps != s.sweeps_seen {
            s.sweeps_seen = live.stats.full_sweeps;
            s.allow_kinds = live.stats.allow_kinds;
        }
        if let Some((n, ns)) = commits {
            let (n0, ns0) = s.db_commits;
            if n > n0 {
                // Commits happen at most once a second unless a batch fills up: one per tick
                // is observed exactly, several at their mean.
                let each = (ns.saturating_sub(ns0)) as f64 / 1e9 / (n - n0) as f64;
                for _ in 0..(n - n0).min(1000) {
                    self.db_commit.observe(each);
                }
            }
            s.db_commits = (n, ns);
        }
        let sample = Sample {
            unix_ms: unix_ms(),
            registered: s.kernel.verdict_total(verdict::REGISTERED),
            unknown: s.kernel.verdict_total(verdict::UNKNOWN),
        };
        if s.series.len() == SERIES_LEN {
            s.series.pop_front();
        }
        s.series.push_back(sample);
    }

    /// One alert written to the alert log.
    pub fn on_alert(&self, a: &Alert) {
        let mut s = self.lock();
        s.alerts += 1;
        s.top_dst.add(a.dst_ip);
        s.top_src.add(a.src_ip);
        if s.recent.len() == RECENT_ALERTS {
            s.recent.pop_front();
        }
        s.recent.push_back(a.clone());
    }

    /// One learning latency sample, in µs (response arrival to map update).
    pub fn observe_learn_latency_us(&self, us: u64) {
        self.learn_latency.observe(us as f64 / 1e6);
    }

    /// A closure for [`LiveLearner::set_latency_observer`].
    pub fn learn_latency_observer(&self) -> Box<dyn FnMut(u64) + Send> {
        let h = self.learn_latency.clone();
        Box::new(move |us| h.observe(us as f64 / 1e6))
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The status page's data (`/api/status`).
    pub fn status_json(&self) -> serde_json::Value {
        let s = self.lock();
        let k = &s.kernel;
        let by_verdict: serde_json::Map<String, serde_json::Value> = verdict::NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_string(), json!(k.verdict_total(i as u8))))
            .collect();
        let mut by_family_transport = Vec::new();
        for (vi, v) in verdict::NAMES.iter().enumerate() {
            for (ai, a) in action::NAMES.iter().enumerate() {
                for (fi, f) in family::NAMES.iter().enumerate() {
                    for (ti, t) in transport::NAMES.iter().enumerate() {
                        let n = k.query(vi as u8, ai as u8, fi as u8, ti as u8);
                        if n > 0 {
                            by_family_transport.push(json!({
                                "verdict": v, "action": a, "family": f, "transport": t, "count": n
                            }));
                        }
                    }
                }
            }
        }
        let top = |t: &Top| {
            t.top(TOP_SHOWN)
                .into_iter()
                .map(|(a, c)| json!({"addr": a, "count": c}))
                .collect::<Vec<_>>()
        };
        let paired = k.get(counter::RESP_PAIRED);
        let untrusted = k.get(counter::RESP_UNTRUSTED);
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "mode": s.info.mode,
            "ifaces": s.info.ifaces,
            "started_unix_ms": s.started_unix_ms,
            "now_unix_ms": unix_ms(),
            "queries": by_verdict,
            "queries_dropped": k.dropped(),
            "queries_detail": by_family_transport,
            "responses": {
                "trusted": paired.saturating_sub(untrusted),
                "untrusted": untrusted,
                "unsolicited": k.get(counter::RESP_UNSOLICITED),
                "tcp_segments": k.get(counter::TCP_RESP_SEGMENTS),
            },
            "events": {
                "sent": k.get(counter::EVENTS_SENT),
                "suppressed": k.get(counter::EVENTS_RATE_LIMITED),
                "lost": k.get(counter::EVENTS_LOST),
                "alerts": s.alerts,
            },
            "learning": {
                "responses": s.live.responses,
                "learned": s.engine.learned,
                "refreshed": s.engine.refreshed,
                "out_of_bailiwick": s.engine.out_of_bailiwick,
                "kernel_learned": k.get(counter::GLUE_LEARNED) + k.get(counter::PENDING_LEARNED),
                "withdrawn": s.live.withdrawn,
                "expired": s.live.expired,
                "evicted": s.evicted,
            },
            "allow": {
                "root": s.allow_kinds[usize::from(kind::ROOT)],
                "glue": s.allow_kinds[usize::from(kind::GLUE)],
                "kernel_glue": s.allow_kinds[usize::from(kind::KERNEL_GLUE)],
                "exception": s.info.exceptions,
                "capacity": s.info.allow_capacity * 2,
            },
            "series": {
                "interval_ms": 500,
                "t": s.series.iter().map(|x| x.unix_ms).collect::<Vec<_>>(),
                "registered": s.series.iter().map(|x| x.registered).collect::<Vec<_>>(),
                "unknown": s.series.iter().map(|x| x.unknown).collect::<Vec<_>>(),
            },
            "top_destinations": top(&s.top_dst),
            "top_sources": top(&s.top_src),
            "recent_alerts": s.recent.iter().rev().collect::<Vec<_>>(),
        })
    }
}

/// Encodes the snapshot at each scrape.
#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<State>>);

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A metric family with one label, one value per label value; `make` builds the metric
/// (a constant counter or gauge) for a value.
fn family_by<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
    make: impl Fn(u64) -> M,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, make(0).metric_type())?;
    for (l, v) in values {
        make(*v).encode(m.encode_family(&[(label, *l)])?)?;
    }
    Ok(())
}

fn counter_by(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    family_by(e, name, help, label, values, ConstCounter::new)
}

fn gauge_by(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    family_by(e, name, help, label, values, |v| {
        ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
    })
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let k = &s.kernel;
        let c = |i: u32| k.get(i);

        // Queries: the program's per-CPU counters, summed.
        {
            let mut m = e.encode_descriptor(
                "dns_queries",
                "DNS queries (and TCP SYNs to port 53) the program checked, by verdict, action, family and transport",
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (vi, v) in verdict::NAMES.iter().enumerate() {
                for (ai, a) in action::NAMES.iter().enumerate() {
                    for (fi, f) in family::NAMES.iter().enumerate() {
                        for (ti, t) in transport::NAMES.iter().enumerate() {
                            let labels = [
                                ("verdict", *v),
                                ("action", *a),
                                ("family", *f),
                                ("transport", *t),
                            ];
                            let n = k.query(vi as u8, ai as u8, fi as u8, ti as u8);
                            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                        }
                    }
                }
            }
        }

        let paired = c(counter::RESP_PAIRED);
        let untrusted = c(counter::RESP_UNTRUSTED);
        counter_by(
            &mut e,
            "dns_responses",
            "UDP DNS responses from port 53, by how the program paired them: trusted (answers a query to a registered, exempt or internal server: learned from), untrusted (answers a query to an unknown server: never learned from), unsolicited (answers no outstanding query)",
            "outcome",
            &[
                ("trusted", paired.saturating_sub(untrusted)),
                ("untrusted", untrusted),
                ("unsolicited", c(counter::RESP_UNSOLICITED)),
            ],
        )?;
        counter(
            &mut e,
            "dns_tcp_response_segments",
            "Segments from the server of TCP DNS connections the program let through to a registered, exempt or internal server (SYN-ACK, data, FIN, RST), handed to userspace to reassemble and learn from",
            c(counter::TCP_RESP_SEGMENTS),
        )?;
        counter(
            &mut e,
            "dns_response_walk_limit",
            "Trusted responses whose walk in the program stopped at a bound (userspace still learns from what it receives)",
            c(counter::RESP_WALK_LIMIT),
        )?;
        counter_by(
            &mut e,
            "packets_skipped",
            "Packets passed without a check, by reason",
            "reason",
            &[
                ("not_ip", c(counter::NOT_IP)),
                ("not_dns", c(counter::NOT_DNS)),
                ("malformed", c(counter::MALFORMED)),
                ("tcp_other", c(counter::TCP_OTHER)),
                ("fragment", c(counter::FRAGMENTS)),
                ("ipv6_ext_limit", c(counter::IPV6_EXT_LIMIT)),
            ],
        )?;
        counter(
            &mut e,
            "qname_truncated",
            "Queries to unknown destinations whose question could not be read whole (reported with a truncated name)",
            c(counter::QNAME_TRUNCATED),
        )?;
        counter(
            &mut e,
            "internal_errors",
            "Internal errors of the program (a map lookup that cannot fail did); the packet was passed",
            c(counter::INTERNAL_ERROR),
        )?;

        // Events and alerts.
        counter(
            &mut e,
            "events_sent",
            "Unknown-destination events the program wrote to its ring buffer",
            c(counter::EVENTS_SENT),
        )?;
        counter(
            &mut e,
            "events_suppressed",
            "Unknown-destination events not raised because their source exceeded --event-rate/--event-burst (the query counters stay exact)",
            c(counter::EVENTS_RATE_LIMITED),
        )?;
        counter_by(
            &mut e,
            "ringbuf_lost",
            "Records lost because a ring buffer to userspace was full, by ring: events (alerts) or responses (learning)",
            "ring",
            &[
                ("events", c(counter::EVENTS_LOST)),
                ("responses", c(counter::RESP_LOST)),
            ],
        )?;
        counter(
            &mut e,
            "alerts",
            "Alerts written to the alert log",
            s.alerts,
        )?;

        // Learning.
        counter(
            &mut e,
            "learning_responses",
            "Trusted responses userspace received from the program and ran through the learning engine",
            s.live.responses,
        )?;
        counter_by(
            &mut e,
            "learning_tcp",
            "DNS over TCP: messages reassembled from trusted connections' segments (each also in learning_responses), holes skipped in a stream (a segment lost or longer than the program copies), and streams dropped (idle 2 min, or over the reassembly bounds: 16,384 streams, 64 MiB)",
            "what",
            &[
                ("messages", s.live.tcp_messages),
                ("gaps", s.live.tcp_gaps),
                ("evicted", s.live.tcp_evicted),
            ],
        )?;
        let en = &s.engine;
        counter_by(
            &mut e,
            "learning_rejected",
            "What the learning engine did not learn from, by reason: whole responses (malformed, truncated, not_noerror, question_mismatch, unsolicited) and NS records or glue (out_of_bailiwick)",
            "reason",
            &[
                ("malformed", en.malformed + s.live.bad_records),
                ("truncated", en.truncated),
                ("not_noerror", en.not_noerror),
                ("question_mismatch", en.question_mismatch),
                ("unsolicited", en.unsolicited),
                ("out_of_bailiwick", en.out_of_bailiwick),
            ],
        )?;
        counter_by(
            &mut e,
            "learned",
            "(zone, NS name, address) triples the learning engine learned (new) or saw again (refreshed)",
            "result",
            &[("new", en.learned), ("refreshed", en.refreshed)],
        )?;
        counter_by(
            &mut e,
            "allow_added",
            "New allow-map entries, by who added them: the program (glue of a referral; the answer to a glue-less NS name's lookup) or userspace",
            "by",
            &[
                ("kernel_glue", c(counter::GLUE_LEARNED)),
                ("kernel_pending", c(counter::PENDING_LEARNED)),
                ("userspace", s.live.inserted),
            ],
        )?;
        counter(
            &mut e,
            "allow_withdrawn",
            "Allow-map entries the program learned that the learning engine rejected, removed",
            s.live.withdrawn,
        )?;
        counter(
            &mut e,
            "allow_expired",
            "Allow-map entries removed because their TTL (plus grace) expired",
            s.live.expired,
        )?;
        counter(
            &mut e,
            "allow_evicted",
            "Allow-map entries the full LRU maps evicted (an estimate, updated at each 30 s sweep); raise --allow-entries when it grows",
            s.evicted,
        )?;
        counter(
            &mut e,
            "db_errors",
            "History database write errors (learning goes on in memory)",
            s.live.db_errors,
        )?;

        // Occupancy.
        gauge_by(
            &mut e,
            "allow_entries",
            "Entries allowed, by kind: root (root hints), glue (confirmed by the learning engine), kernel_glue (learned by the program, not yet confirmed), exception (--allow prefixes). Map entries are counted at start and at each 30 s sweep",
            "kind",
            &[
                ("root", s.allow_kinds[usize::from(kind::ROOT)]),
                ("glue", s.allow_kinds[usize::from(kind::GLUE)]),
                ("kernel_glue", s.allow_kinds[usize::from(kind::KERNEL_GLUE)]),
                ("exception", s.info.exceptions),
            ],
        )?;
        if !s.kernel_maps.is_empty() {
            let maps: Vec<(&str, u64)> = s
                .kernel_maps
                .iter()
                .map(|(n, b)| (n.as_str(), *b))
                .collect();
            gauge_by(
                &mut e,
                "kernel_map_bytes",
                "Kernel memory held by each of the program's BPF maps (memlock in the map's fdinfo), read at start; the allow maps are allocated whole (--allow-entries)",
                "map",
                &maps,
            )?;
        }
        gauge_by(
            &mut e,
            "allow_capacity",
            "Capacity of each allow map (--allow-entries), by family",
            "family",
            &[
                ("ipv4", s.info.allow_capacity),
                ("ipv6", s.info.allow_capacity),
            ],
        )?;
        gauge(
            &mut e,
            "response_batching",
            "1 while paired responses the program learned from whole are read in batches (--response-batch-ms); 0 when off, or suspended because the allow maps may be over half full",
            i64::from(s.live.response_batching),
        )?;
        gauge(
            &mut e,
            "start_time_seconds",
            "When the daemon started, Unix time in seconds",
            (s.started_unix_ms / 1000) as i64,
        )?;
        let mut m = e.encode_descriptor(
            "info",
            "The daemon's version and mode (value 1)",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        let labels = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("mode", s.info.mode),
        ];
        ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(RunInfo {
            mode: "monitor",
            ifaces: vec!["eth0".into()],
            allow_capacity: 1024,
            exceptions: 3,
        })
    }

    #[test]
    fn addresses_parse_or_turn_off() {
        assert_eq!(
            "127.0.0.1:9853".parse::<MetricsAddr>().unwrap().0,
            Some("127.0.0.1:9853".parse().unwrap())
        );
        assert_eq!(
            "[::1]:1".parse::<MetricsAddr>().unwrap().to_string(),
            "[::1]:1"
        );
        assert_eq!("off".parse::<MetricsAddr>().unwrap().0, None);
        assert!("127.0.0.1".parse::<MetricsAddr>().is_err());
    }

    #[test]
    fn exposition_follows_the_naming_conventions() {
        let m = metrics();
        m.observe_learn_latency_us(20);
        let text = m.encode();
        for line in [
            "# TYPE nsdb_dns_queries_total counter",
            "nsdb_dns_queries_total{verdict=\"registered\",action=\"pass\",family=\"ipv4\",transport=\"udp\"} 0",
            "nsdb_dns_responses_total{outcome=\"unsolicited\"} 0",
            "nsdb_allow_entries{kind=\"exception\"} 3",
            "nsdb_allow_capacity{family=\"ipv6\"} 1024",
            "# TYPE nsdb_response_batching gauge",
            "nsdb_response_batching 0",
            "# TYPE nsdb_learn_latency_seconds histogram",
            "nsdb_learn_latency_seconds_count 1",
            "# TYPE nsdb_db_commit_duration_seconds histogram",
            "nsdb_info{version=\"",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        // Every sample line belongs to a declared family with the nsdb_ prefix.
        for l in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(l.starts_with("nsdb_"), "{l}");
        }
    }

    #[test]
    fn top_lists_keep_heavy_hitters_when_full() {
        let mut t = Top::default();
        let heavy: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            t.add(heavy);
        }
        for i in 0..(TOP_TRACKED as u32 + 10) {
            t.add(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()));
        }
        assert!(t.counts.len() <= TOP_TRACKED);
        // A quarter was forgotten, not everything seen once.
        assert!(t.counts.len() > TOP_TRACKED / 2, "{}", t.counts.len());
        assert_eq!(t.top(1), vec![(heavy, 5)]);
    }

    #[test]
    fn alerts_feed_the_status() {
        let m = metrics();
        let a = Alert {
            timestamp: "2026-01-01T00:00:00Z".into(),
            iface: "eth0".into(),
            src_ip: "192.0.2.10".parse().unwrap(),
            src_port: 5353,
            dst_ip: "198.51.100.54".parse().unwrap(),
            dst_port: 53,
            proto: "udp".into(),
            dns_id: 1,
            qname: "<script>".into(),
            qtype: "TXT".into(),
            verdict: "unknown".into(),
            action: "pass".into(),
        };
        m.on_alert(&a);
        m.on_alert(&a);
        let s = m.status_json();
        assert_eq!(s["events"]["alerts"], 2);
        assert_eq!(s["top_destinations"][0]["addr"], "198.51.100.54");
        assert_eq!(s["top_destinations"][0]["count"], 2);
        assert_eq!(s["recent_alerts"].as_array().unwrap().len(), 2);
        assert!(m.encode().contains("nsdb_alerts_total 2"));
    }
}
