//! Live learning: paired responses from the XDP program go through the same learning engine
//! as offline captures; what it learns goes into the allow maps and the history database.
//!
//! The program has already learned referral glue by itself (race-free); here userspace
//! confirms it (setting the engine's expiry), withdraws what the engine rejects (out of
//! bailiwick, not an NS of the referral), marks glue-less NS names as pending so that the
//! program learns their addresses from the lookup's answer, and ages entries out.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nsdb_common::{ResponseEvent, kind, resp_flag, tcp_flag};

use crate::{
    capture::tcp::Reassembler,
    clock,
    learn::{Engine, Learned},
    loader::{self, Filter},
    store::Writer,
    wire::{Message, Section},
};

/// What live learning did, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LiveStats {
    /// Paired responses received from the program.
    pub responses: u64,
    /// Responses too short to hold a DNS message.
    pub bad_records: u64,
    /// Addresses the engine learned or refreshed and userspace wrote to the maps.
    pub allowed: u64,
    /// Addresses the program learned that the engine rejected, removed from the maps.
    pub withdrawn: u64,
    /// Entries removed from the maps because they expired.
    pub expired: u64,
    /// Database write errors (learning goes on in memory; the rows stay queued and are
    /// retried every second).
    pub db_errors: u64,
    /// Rows queued for the database and not yet committed.
    pub db_queued: u64,
    /// Log rows dropped because the database could not be written for long (history rows
    /// are never dropped).
    pub db_dropped: u64,
    /// Entries in the allow maps at the last full sweep (IPv4 + IPv6), and their capacity.
    pub allow_entries: u64,
    pub allow_capacity: u64,
    /// Entries the LRU allow maps evicted to make room (an estimate: entries written minus
    /// entries removed minus entries present, at the last full sweep).
    pub evicted: u64,
    /// New entries userspace wrote (the program's own are counted by `glue_learned_kernel`).
    pub inserted: u64,
    /// Warnings logged about full maps (evictions seen, or 90 % occupancy).
    pub full_warnings: u64,
    /// Records the program walked, by where the walk stopped (`nsdb_common::walk_stop`: none,
    /// i.e. at the end, then qdcount, qname, owner, rr_header, rdata, too_many_rrs).
    pub walk_stops: [u64; 7],
    /// Full sweeps done, and the allow-map entries by kind (index: `nsdb_common::kind`) at the
    /// last one.
    pub full_sweeps: u64,
    pub allow_kinds: [u64; 4],
    /// Whether the program now batches the wake-ups of paired responses (--response-batch-ms;
    /// off while the allow maps may be over half full, see [`LiveLearner::check_batching`]).
    pub response_batching: bool,
    /// TCP: segments from trusted DNS connections received, the DNS messages reassembled from
    /// them (each also counted in `responses`), and holes skipped (a segment lost to a full
    /// ring buffer, or longer than the program copies).
    pub tcp_segments: u64,
    pub tcp_messages: u64,
    pub tcp_gaps: u64,
    /// Streams dropped to stay within [`TCP_STREAMS`] and [`TCP_BYTES`], or idle for 2 min.
    pub tcp_evicted: u64,
}

/// The live learner, driven by the daemon's event loop.
pub struct LiveLearner {
    engine: Engine,
    writer: Option<Writer>,
    /// Map entries userspace wrote, by expiry (CLOCK_MONOTONIC_COARSE ns), for aging.
    expiries: BinaryHeap<Reverse<(u64, IpAddr)>>,
    last_full_sweep: Instant,
    /// Learning latency samples: response arrival (boot ns) to map update, in µs.
    latencies_us: Vec<u64>,
    /// Entries in the maps when learning started (roots, restored history).
    baseline: u64,
    warned_full: bool,
    /// Called with each learning latency sample (µs), e.g. for a metrics histogram.
    latency_observer: Option<Box<dyn FnMut(u64) + Send>>,
    db_failing: bool,
    /// Response batching as configured (--response-batch-ms; 0: off), and when it was last
    /// checked.
    batch_ms: u32,
    batching_checked: Option<Instant>,
    /// The server-to-client streams of TCP DNS connections.
    tcp: Reassembler,
    pub stats: LiveStats,
}

/// TCP streams reassembled at once, and the bytes they may hold together: a stream's far end
/// is a registered name server, which an attacker may own and have trickle partial messages.
/// Past the bounds the biggest streams are dropped (`tcp_evicted`).
pub const TCP_STREAMS: usize = 16_384;
pub const TCP_BYTES: usize = 64 << 20;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The client and the server of a record.
fn endpoints(ev: &ResponseEvent) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(loader::event_addr(ev.family, &ev.client), ev.client_port),
        SocketAddr::new(loader::event_addr(ev.family, &ev.server), ev.server_port),
    )
}

/// Wall-clock Unix ms of a CLOCK_MONOTONIC_COARSE stamp.
fn mono_to_unix_ms(mono_ns: u64) -> u64 {
    let now_mono = clock::mono_ns();
    let now_ms = unix_ms(SystemTime::now());
    now_ms.saturating_sub(now_mono.saturating_sub(mono_ns) / 1_000_000)
}

impl LiveLearner {
    pub fn new(engine: Engine, writer: Option<Writer>) -> Self {
        Self {
            engine,
            writer,
            expiries: BinaryHeap::new(),
            last_full_sweep: Instant::now(),
            latencies_us: Vec::new(),
            baseline: 0,
            warned_full: false,
            latency_observer: None,
            db_failing: false,
            batch_ms: 0,
            batching_checked: None,
            tcp: Reassembler::with_limits(TCP_STREAMS, TCP_BYTES),
            stats: LiveStats::default(),
        }
    }

    /// Records what the maps held before learning started and their capacity (per family).
    pub fn set_baseline(&mut self, entries: u64, capacity_per_family: u64) {
        self.baseline = entries;
        self.stats.allow_entries = entries;
        self.stats.allow_capacity = capacity_per_family * 2;
    }

    /// Turns the program's batching of response wake-ups on (`batch_ms` > 0: the daemon reads
    /// the ring that long after a wake-up) or off, as configured (call after
    /// [`LiveLearner::set_baseline`]); [`LiveLearner::check_batching`] may then suspend it.
    pub fn set_response_batching(
        &mut self,
        filter: &mut Filter,
        batch_ms: u32,
    ) -> Result<(), loader::LoadError> {
        self.batch_ms = batch_ms;
        filter.set_response_batching(false)?;
        self.stats.response_batching = false;
        self.batching_checked = None;
        // On only if the maps have room for it.
        self.check_batching(filter);
        Ok(())
    }

    /// The configured batching delay (ms; 0: responses are read as they come).
    pub fn response_batch_ms(&self) -> u32 {
        self.batch_ms
    }

    /// Call after reading responses (it looks at most every 10 ms). Batching runs only while
    /// the allow maps are at most half full. Near full they evict, and then the refills
    /// userspace makes (name servers re-inserted from the history, used ones touched) must
    /// reach them before the resolver's next query, as they do when every response is read
    /// at once. The estimate is the entries written minus those removed, against one family's
    /// capacity (either family might hold them all), so it errs towards reading at once.
    pub fn check_batching(&mut self, filter: &mut Filter) {
        if self.batch_ms == 0
            || self
                .batching_checked
                .is_some_and(|t| t.elapsed() < Duration::from_millis(10))
        {
            return;
        }
        self.batching_checked = Some(Instant::now());
        // Unreadable counters: as if the program had filled the maps (read at once).
        let live = self.written_minus_removed(
            filter
                .counter(nsdb_common::counter::GLUE_LEARNED)
                .unwrap_or(u64::MAX / 2),
        );
        let per_family = self.stats.allow_capacity / 2;
        let room = live.saturating_mul(2) < per_family;
        if room != self.stats.response_batching {
            match filter.set_response_batching(room) {
                Ok(()) => {
                    self.stats.response_batching = room;
                    tracing::info!(
                        entries_estimate = live,
                        capacity_per_family = per_family,
                        batching = room,
                        "{}",
                        if room {
                            "allow maps at most half full again: response wake-ups batched"
                        } else {
                            "allow maps may be over half full: every response is read at once"
                        }
                    );
                }
                Err(e) => tracing::warn!(error = %e, "setting response batching failed"),
            }
        }
    }

    /// Hands every learning latency sample (µs) to `f` as well.
    pub fn set_latency_observer(&mut self, f: Box<dyn FnMut(u64) + Send>) {
        self.latency_observer = Some(f);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Allows an address the engine learned, until the engine's expiry.
    fn allow(&mut self, filter: &mut Filter, l: &Learned) {
        let exp = clock::wall_ms_to_mono(l.expires_ms);
        let current = filter.allowed(l.addr);
        if current.is_some_and(|e| e.kind == kind::ROOT) {
            return;
        }
        if let Err(e) = filter.allow(l.addr, exp, kind::GLUE) {
            tracing::error!(addr = %l.addr, error = %e, "cannot write the allow map");
            return;
        }
        if current.is_none() {
            self.stats.inserted += 1;
        }
        self.expiries.push(Reverse((exp, l.addr)));
        self.stats.allowed += 1;
    }

    /// One record of the program's RESPONSES ring: a paired UDP response, or a segment of a
    /// trusted TCP connection.
    pub fn on_response(&mut self, filter: &mut Filter, ev: &ResponseEvent) {
        // Once per record the program walked (a TCP segment's record may carry no message, or
        // several, or a piece of one; the walk covered at most the first).
        if ev.flags & resp_flag::WALKED != 0
            && let Some(n) = self.stats.walk_stops.get_mut(usize::from(ev.stop))
        {
            *n += 1;
        }
        if ev.flags & resp_flag::TCP != 0 {
            self.on_tcp_segment(filter, ev);
            return;
        }
        let len = usize::from(ev.msg_len).min(ev.msg.len());
        let msg = &ev.msg[..len];
        let mut taught = HashSet::new();
        self.learn_from(filter, ev, msg, &mut taught);
        self.withdraw_rejected(filter, ev, msg, &taught);
    }

    /// A segment from the server of a trusted TCP connection: the stream is reassembled
    /// (messages span segments, RFC 7766 §8) and each whole message learned from like a UDP
    /// response. The program saw the connection open to a registered, exempt or internal
    /// server, and TCP's handshake keeps off-path spoofers out of it.
    fn on_tcp_segment(&mut self, filter: &mut Filter, ev: &ResponseEvent) {
        self.stats.tcp_segments += 1;
        let len = usize::from(ev.msg_len).min(ev.msg.len());
        let (client, server) = endpoints(ev);
        let gaps = self.tcp.stats.gaps;
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        let mut emit = |m: &[u8]| msgs.push(m.to_vec());
        self.tcp.segment(
            ev.ts_ns / 1000,
            server,
            client,
            ev.seq,
            ev.tcp_flags & tcp_flag::SYN != 0,
            ev.tcp_flags & (tcp_flag::FIN | tcp_flag::RST) != 0,
            &ev.msg[..len],
            &mut emit,
        );
        if ev.flags & resp_flag::TRUNCATED_COPY != 0 {
            // Only the segment's beginning came: the stream has a hole where the rest was.
            self.tcp.cut(
                server,
                client,
                ev.seq.wrapping_add(u32::from(ev.orig_len)),
                ev.seq.wrapping_add(len as u32),
                &mut emit,
            );
        }
        self.stats.tcp_gaps += self.tcp.stats.gaps - gaps;
        self.stats.tcp_evicted = self.tcp.stats.evicted;
        let mut taught = HashSet::new();
        for m in &msgs {
            self.stats.tcp_messages += 1;
            self.learn_from(filter, ev, m, &mut taught);
        }
        // What the program walked is the message at the segment's start (behind its length),
        // which need not be what the stream holds: a segment in the middle of a long message
        // may look like a whole one. So what the program learned is checked against the
        // program's own view, and withdrawn unless the engine learned it from the stream or
        // already holds it.
        let payload = &ev.msg[..len];
        if payload.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
            let walked = &payload[2..(2 + n).min(payload.len())];
            self.withdraw_rejected(filter, ev, walked, &taught);
        }
    }

    /// Learns from one DNS message the program paired (`ev` says who sent it to whom, and
    /// when), adding the addresses the engine learned to `taught`.
    fn learn_from(
        &mut self,
        filter: &mut Filter,
        ev: &ResponseEvent,
        msg: &[u8],
        taught: &mut HashSet<IpAddr>,
    ) {
        self.stats.responses += 1;
        if msg.len() < 12 {
            self.stats.bad_records += 1;
            return;
        }
        let (client, server) = endpoints(ev);
        let ts_ms = unix_ms(clock::boot_to_wall(ev.ts_ns));
        // The program paired this response with the query it saw leave; the query carried the
        // same id and question, so the response stands in for it here. A TCP record's stamp
        // is its connection's SYN, which a resolver may reuse for minutes (past the engine's
        // query timeout): its query is taken to have left just before the answer.
        let query_ms = if ev.flags & resp_flag::TCP != 0 {
            ts_ms
        } else {
            mono_to_unix_ms(ev.query_ts_ns).min(ts_ms)
        };
        self.engine.on_query(query_ms, client, server, msg);
        let learned = self.engine.on_response(ts_ms, server, client, msg);
        for l in &learned {
            taught.insert(l.addr);
            self.allow(filter, l);
        }
        if !learned.is_empty() {
            let lat = clock::boot_ns().saturating_sub(ev.ts_ns) / 1000;
            if self.latencies_us.len() < 1 << 20 {
                self.latencies_us.push(lat);
            }
            if let Some(f) = &mut self.latency_observer {
                f(lat);
            }
        }
        if let Some(w) = &mut self.writer {
            let r = w.push(self.engine.take_rows());
            self.db_result(r);
        } else {
            let _ = self.engine.take_rows();
        }
    }

    /// Removes what the program learned from `msg` (its view of the record `ev`, whose flags
    /// say whether it learned anything) that the engine did not accept: not in `taught`, and
    /// not registered.
    fn withdraw_rejected(
        &mut self,
        filter: &mut Filter,
        ev: &ResponseEvent,
        msg: &[u8],
        taught: &HashSet<IpAddr>,
    ) {
        if ev.flags & resp_flag::KERNEL_LEARNED == 0 {
            return;
        }
        let pending_hit = ev.flags & resp_flag::PENDING_HIT != 0;
        let now_ms = unix_ms(clock::boot_to_wall(ev.ts_ns));
        let Ok(m) = Message::parse(msg) else { return };
        let mut have_ns = false;
        let mut candidates = Vec::new();
        for rec in m.records() {
            let Ok(rec) = rec else { break };
            match rec.section {
                Section::Answer | Section::Authority if rec.rtype == 2 => have_ns = true,
                _ => {}
            }
            let take = (rec.section == Section::Additional && have_ns)
                || (rec.section == Section::Answer && pending_hit);
            if take
                && rec.class == 1
                && let Ok(Some(a)) = rec.addr(msg)
            {
                candidates.push(a);
            }
        }
        for a in candidates {
            if taught.contains(&a) || self.engine.is_registered(a, now_ms).is_some() {
                continue;
            }
            if filter
                .allowed(a)
                .is_some_and(|e| e.kind == kind::KERNEL_GLUE)
                && filter.disallow(a)
            {
                self.stats.withdrawn += 1;
                tracing::debug!(addr = %a, "withdrew glue the engine rejected");
            }
        }
    }

    /// Periodic work: age entries out of the maps, drop stale pending names, commit the
    /// database batch.
    pub fn tick(&mut self, filter: &mut Filter) {
        let now = clock::mono_ns();
        while let Some(Reverse((exp, addr))) = self.expiries.peek().copied() {
            if exp > now {
                break;
            }
            self.expiries.pop();
            match filter.allowed(addr) {
                // The program or a later response extended it: look again then.
                Some(e) if e.expires_ns > now && e.expires_ns != u64::MAX => {
                    self.expiries.push(Reverse((e.expires_ns, addr)));
                }
                Some(e) if e.kind != kind::ROOT && e.expires_ns <= now && filter.disallow(addr) => {
                    self.stats.expired += 1;
                }
                _ => {}
            }
        }
        // Entries the program learned that userspace never heard of (a lost ring-buffer
        // record): a slower full sweep finds them.
        // Pending NS names need no prompt removal (the program compares their expiry itself
        // and the map is an LRU), so they are swept with the rest, not every tick.
        if self.last_full_sweep.elapsed() >= Duration::from_secs(30) {
            self.last_full_sweep = Instant::now();
            self.full_sweep(filter, now);
            if let Err(e) = filter.sweep_pending(now) {
                tracing::warn!(error = %e, "sweeping pending NS names failed");
            }
        }
        if let Some(w) = &mut self.writer {
            let r = w.tick();
            self.db_result(r);
        }
    }

    /// Removes every expired entry, and checks occupancy: the allow maps are LRU maps, so when
    /// they are full the kernel evicts the least recently used entry rather than refusing a new
    /// one (learning never stops); evictions are estimated, and a warning is logged when new
    /// ones are seen or the maps are 90 % full.
    pub fn full_sweep(&mut self, filter: &mut Filter, now: u64) {
        let entries = filter.allow_entries();
        let mut left = 0u64;
        let mut kinds = [0u64; 4];
        for (addr, e) in entries {
            if e.kind != kind::ROOT && e.expires_ns <= now && filter.disallow(addr) {
                self.stats.expired += 1;
            } else {
                left += 1;
                if let Some(n) = kinds.get_mut(usize::from(e.kind)) {
                    *n += 1;
                }
            }
        }
        self.stats.allow_entries = left;
        self.stats.allow_kinds = kinds;
        self.stats.full_sweeps += 1;
        let written_left = self.written_minus_removed(
            filter
                .counter(nsdb_common::counter::GLUE_LEARNED)
                .unwrap_or(0),
        );
        let evicted = written_left.saturating_sub(left);
        let cap = self.stats.allow_capacity;
        let near_full = cap > 0 && left * 10 >= cap * 9;
        if evicted > self.stats.evicted || (near_full && !self.warned_full) {
            tracing::warn!(
                entries = left,
                capacity = cap,
                evicted,
                "allow maps full: least recently used name servers are being evicted; raise --allow-entries"
            );
            self.stats.full_warnings += 1;
        }
        self.warned_full = near_full;
        self.stats.evicted = evicted;
    }

    /// Allow-map entries written (at start, `kernel_new` by the program, by userspace) minus
    /// those removed (expired, withdrawn): what the maps would hold without evictions.
    fn written_minus_removed(&self, kernel_new: u64) -> u64 {
        (self.baseline + kernel_new + self.stats.inserted)
            .saturating_sub(self.stats.expired + self.stats.withdrawn)
    }

    /// Learning latency (response arrival to map update), p50 and p99 in µs.
    pub fn latency_percentiles(&self) -> Option<(u64, u64)> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((p(0.5), p(0.99)))
    }

    /// Counts a database write's outcome; the first failure of a run of failures is logged
    /// as an error, the retries that fail again only at debug level.
    fn db_result(&mut self, r: Result<(), crate::store::StoreError>) {
        let Some(w) = &self.writer else { return };
        if let Err(e) = r {
            self.stats.db_errors += 1;
            if self.stats.db_errors == 1 || !self.db_failing {
                tracing::error!(error = %e, queued = w.queued(), "writing the history database failed; learning goes on in memory and the rows are retried every second");
            } else {
                tracing::debug!(error = %e, queued = w.queued(), "history database still cannot be written");
            }
        }
        self.db_failing = w.failing();
        self.stats.db_queued = w.queued() as u64;
        self.stats.db_dropped = w.dropped();
    }

    /// The database writer, if there is a database.
    pub fn writer(&self) -> Option<&Writer> {
        self.writer.as_ref()
    }

    /// Commits what is pending to the database (on shutdown).
    pub fn finish(self) -> anyhow::Result<()> {
        if let Some(w) = self.writer {
            let store = w.finish()?;
            store.checkpoint()?;
        }
        Ok(())
    }
}

/// Decodes a raw RESPONSES ring-buffer record.
pub fn decode(bytes: &[u8]) -> Option<ResponseEvent> {
    if bytes.len() < size_of::<ResponseEvent>() {
        return None;
    }
    // SAFETY: the length was checked; ResponseEvent is plain old data.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}
