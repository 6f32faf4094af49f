//! The learning engine (paper §3): pairs responses with queries, learns NS records and their
//! addresses, and answers "is this destination a registered name server?".
//!
//! Pure logic: time is passed in (milliseconds, capture time offline or a clock live), nothing
//! here does I/O, so the live daemon and the offline commands run the very same code.
//!
//! What teaches (each rule is counted when it rejects something):
//! - Only a response that pairs with a query we saw: same client address and port, same server
//!   address and port, same DNS id, same question (RFC 5452 §9.1). Unpaired responses are
//!   `unsolicited` (or `question_mismatch`) and never teach; a pairing consumes the query, so a
//!   duplicate answer is unsolicited too.
//! - Only NOERROR answers to standard queries that are not truncated (RFC 2181 §9: a TC=1
//!   response's sections may be incomplete; the resolver retries over TCP and that one teaches).
//! - NS records come from the answer and authority sections; their addresses from A/AAAA records
//!   in the additional section whose owner is the NS name (glue, RFC 1034 §4.2.1).
//! - Bailiwick (RFC 2181 §5.4.1 spirit, as passive DNS sensors do): the NS owner must be the
//!   query name or one of its ancestors, and a server teaches only about names inside the zones
//!   it was itself learned to serve (roots and exceptions serve the whole tree). For a server
//!   not (or no longer) in the history, [`Bailiwick::Auto`] assumes it serves the parent of the
//!   delegated zone, so in-zone and same-parent glue teach and unrelated glue does not;
//!   [`Bailiwick::Strict`] lets only known servers teach; [`Bailiwick::Off`] is the paper's
//!   prototype (everything in a paired response teaches).
//! - An NS name without glue: an A/AAAA answer for that name within `glueless_window_ms`
//!   (paper §4: 2 s) supplies the address; an address already known for that NS name is used
//!   at once.
//! - Every entry is valid until response time + TTL (the smaller of the NS and address TTLs),
//!   the TTL clamped to [min_ttl, max_ttl], plus a grace period for serve-stale (RFC 8767) and
//!   prefetching resolvers.

mod hash;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use crate::roots::{self, Hint};
use crate::wire::{self, Message, NameBuf, NameCache, Section, TextRange};
pub use hash::FastMap;

/// How strictly servers are held to their zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
pub enum Bailiwick {
    /// Known servers: their zones; unknown servers: the parent of the delegated zone.
    #[default]
    Auto,
    /// Only servers already in the history (or roots, or exceptions) teach.
    Strict,
    /// No bailiwick check at all (the paper's prototype).
    Off,
}

/// Configuration of the engine.
#[derive(Debug, Clone)]
pub struct LearnConfig {
    /// How long after a glue-less referral an address lookup of the NS name still counts.
    pub glueless_window_ms: u64,
    /// TTLs are clamped to [min_ttl, max_ttl] seconds.
    pub min_ttl: u32,
    pub max_ttl: u32,
    /// Added to every expiry (serve-stale, prefetch).
    pub grace_ms: u64,
    /// A query with no response after this long is forgotten.
    pub query_timeout_ms: u64,
    /// Most queries awaiting a response; the oldest is dropped beyond this.
    pub max_inflight: usize,
    pub bailiwick: Bailiwick,
    /// Root hints seeding the history (the built-in IANA ones unless overridden).
    pub root_hints: Vec<Hint>,
    /// The operator's exceptions (e.g. public resolvers): always registered, kept apart.
    pub exceptions: Vec<ipnet::IpNet>,
    /// Keep the paper's query_db / ns_db rows for [`Engine::take_rows`].
    pub record_rows: bool,
    /// Record every query in query_db (the paper does); otherwise only queries whose response
    /// taught something.
    pub record_all_queries: bool,
    /// Record an ns_db row for every sighting (the paper's prototype); otherwise only for the
    /// first sighting of each (zone, NS name, address) and of each glue-less (zone, NS name).
    /// Either way the history table counts every sighting.
    pub record_all_ns_rows: bool,
    /// Keep a [`Decision`] for every candidate (zone, NS, address), for `--explain`.
    pub explain: bool,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            glueless_window_ms: 2_000,
            min_ttl: 300,
            max_ttl: 172_800,
            grace_ms: 900_000,
            query_timeout_ms: 30_000,
            max_inflight: 1 << 20,
            bailiwick: Bailiwick::Auto,
            root_hints: roots::builtin(),
            exceptions: Vec::new(),
            record_rows: false,
            record_all_queries: false,
            record_all_ns_rows: false,
            explain: false,
        }
    }
}

/// Where a history entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    RootHints,
    /// Glue in the additional section of the same response.
    Glue,
    /// A later A/AAAA lookup of a glue-less NS name.
    GluelessLookup,
    /// A glue-less NS name whose address the history already held.
    KnownNs,
    /// A later A/AAAA lookup of a registered name server's name: the family its glue did not
    /// carry (a dual-stack resolver's target fetch), or the address again after its TTL.
    NsLookup,
    /// Loaded from the history database.
    Stored,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::RootHints => "root_hints",
            Source::Glue => "glue",
            Source::GluelessLookup => "glueless_lookup",
            Source::KnownNs => "known_ns",
            Source::NsLookup => "ns_lookup",
            Source::Stored => "stored",
        }
    }
    pub fn parse(s: &str) -> Source {
        match s {
            "root_hints" => Source::RootHints,
            "glue" => Source::Glue,
            "glueless_lookup" => Source::GluelessLookup,
            "known_ns" => Source::KnownNs,
            "ns_lookup" => Source::NsLookup,
            _ => Source::Stored,
        }
    }
}

/// One (zone, NS name, address) learned or refreshed by a response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Learned {
    pub zone: String,
    pub ns_name: String,
    pub addr: IpAddr,
    /// Unix ms (capture time offline) after which the entry no longer registers the address.
    pub expires_ms: u64,
    /// Effective TTL in seconds (min of NS and address TTL, clamped).
    pub ttl: u32,
    pub learned_ms: u64,
    pub source: Source,
    /// First time this triple was seen (this response's time if it is new).
    pub first_seen_ms: u64,
}

/// What a registered destination is known as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KnownAs {
    /// "glue" for learned name servers, "root_hints", "exception".
    pub kind: &'static str,
    pub zone: String,
    pub ns_name: String,
    pub first_seen_ms: u64,
    pub expires_ms: u64,
    pub source: Source,
}

/// Counters (all monotonically increasing).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub queries: u64,
    pub responses: u64,
    pub paired: u64,
    /// Responses with no matching query (spoofed, late, duplicate).
    pub unsolicited: u64,
    /// Responses matching a query's addresses, ports and id but not its question.
    pub question_mismatch: u64,
    pub malformed: u64,
    /// Paired responses with TC=1 (not learned from).
    pub truncated: u64,
    /// Paired responses with an rcode other than NOERROR, or an opcode other than QUERY.
    pub not_noerror: u64,
    /// NS records seen in paired, learnable responses.
    pub ns_records: u64,
    /// Glue addresses matched to an NS record.
    pub glue_addrs: u64,
    /// New (zone, NS, address) triples.
    pub learned: u64,
    /// Triples seen again (expiry extended).
    pub refreshed: u64,
    pub out_of_bailiwick: u64,
    /// Strict mode: responses from servers not in the history.
    pub unknown_server: u64,
    pub glueless_pending: u64,
    pub glueless_resolved: u64,
    pub glueless_expired: u64,
    /// Addresses taken from the answer to a lookup of a registered name server's name
    /// (`Source::NsLookup`).
    pub ns_lookup_addrs: u64,
    /// Queries forgotten unanswered (timeout) or dropped because too many were in flight.
    pub inflight_expired: u64,
    pub inflight_dropped: u64,
}

/// Verdict on one candidate (zone, NS name, address) seen in a response (`--explain`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub ts_ms: u64,
    pub server: SocketAddr,
    pub client: SocketAddr,
    pub id: u16,
    pub zone: String,
    pub ns_name: String,
    pub addr: Option<IpAddr>,
    /// "learned", "refreshed", "pending_glueless", "unsolicited", "question_mismatch",
    /// "malformed", "truncated", "not_noerror", "ns_not_for_query", "out_of_bailiwick",
    /// "glue_out_of_bailiwick", "unknown_server", "glueless_lookup", "known_ns", "ns_lookup".
    pub verdict: &'static str,
}

/// A query_db row (paper §3.2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueryRow {
    pub querytime: u64,
    pub queryid: u16,
    /// "FQDN" for A queries, "FQDN TYPE" otherwise.
    pub queryname: String,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// An ns_db row (paper §3.3, Table 1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NsRow {
    pub querytime: u64,
    pub queryid: u16,
    pub queryname: String,
    pub res_time: u64,
    pub zname: String,
    pub nsttl: u32,
    pub nsfqdn: String,
    #[serde(rename = "glueAttl")]
    pub glue_ttl: Option<u32>,
    #[serde(rename = "glueA")]
    pub glue: Option<IpAddr>,
    pub server: SocketAddr,
    pub source: Source,
    pub expires_ms: u64,
}

/// Rows produced since the last [`Engine::take_rows`].
#[derive(Debug, Default)]
pub struct Rows {
    pub queries: Vec<QueryRow>,
    pub ns: Vec<NsRow>,
    /// One history entry per changed (zone, NS name, address), with its current state.
    pub learned: Vec<Learned>,
    /// Sighting count of each entry of `learned` (same index).
    pub counts: Vec<u64>,
}

/// A query in flight: client address and port, server address and port, DNS id, packed
/// into 40 bytes of 8-byte words and hashed as five words (a `SocketAddr` pair is 64 bytes,
/// hashed field by field with its enum tags; this key is built and hashed for every query and
/// response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QKey {
    /// Client then server address as IPv6 (IPv4 mapped), each as two words (high, low): u128
    /// fields would align the key to 16 bytes.
    addrs: [u64; 4],
    /// Client port, server port, id, and one bit per address: was it IPv4.
    rest: u64,
}

impl QKey {
    fn new(client: SocketAddr, server: SocketAddr, id: u16) -> QKey {
        fn bits(a: IpAddr) -> (u128, u64) {
            match a {
                IpAddr::V4(v4) => (v4.to_ipv6_mapped().to_bits(), 1),
                IpAddr::V6(v6) => (v6.to_bits(), 0),
            }
        }
        let (c, c4) = bits(client.ip());
        let (s, s4) = bits(server.ip());
        QKey {
            addrs: [(c >> 64) as u64, c as u64, (s >> 64) as u64, s as u64],
            rest: (client.port() as u64) << 48
                | (server.port() as u64) << 32
                | (id as u64) << 16
                | c4 << 1
                | s4,
        }
    }
}

const _: () = assert!(std::mem::size_of::<QKey>() == 40);

impl std::hash::Hash for QKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for w in self.addrs {
            h.write_u64(w);
        }
        h.write_u64(self.rest);
    }
}

#[derive(Debug, Clone, Copy)]
struct QInfo {
    ts_ms: u64,
    qhash: u64,
}

/// A query in flight, in `Engine::inflight_slots`.
#[derive(Debug, Clone, Copy)]
struct InflightSlot {
    key: QKey,
    info: QInfo,
    /// Raised each time the slot is freed: an `inflight_order` element naming an older
    /// generation is about a query already answered (or replaced), and is skipped.
    generation: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    first_seen: u64,
    last_seen: u64,
    count: u64,
    expires: u64,
    ttl: u32,
    source: Source,
    /// Changed since the last `take_rows`.
    dirty: bool,
}

/// One (zone, NS name) entry of an address: the ids of its names, and where its [`Entry`] is
/// in `Engine::slab`.
#[derive(Debug, Clone, Copy)]
struct Serve {
    zone: u32,
    ns: u32,
    slot: u32,
}

/// What the history holds for one address. Kept small (the refresh fast path and the
/// bailiwick check of every response read one of these): most addresses serve one zone's NS
/// name, and their entry is inline.
#[derive(Debug, Default)]
struct AddrInfo {
    /// Latest expiry over the address's entries.
    expires: u64,
    /// The address's entries, in the order learned.
    serves: SmallVec<[Serve; 1]>,
    /// The zone ids of `serves`, sorted and deduplicated, once the address has more than
    /// `SMALL_SERVES` entries (a big provider's address serves many zones: bailiwick checks
    /// must not scan them all). None until then; boxed so that it takes one word of the
    /// bucket, not three.
    #[allow(clippy::box_collection)]
    zones: Option<Box<Vec<u32>>>,
}

// With its address, one 64-byte bucket of `Engine::by_addr`.
const _: () = assert!(std::mem::size_of::<AddrInfo>() == 40);

impl AddrInfo {
    /// Few entries: examined linearly rather than through `zones`.
    fn is_few(&self) -> bool {
        self.serves.len() <= SMALL_SERVES
    }

    fn push(&mut self, s: Serve) {
        self.serves.push(s);
        if self.is_few() {
            return;
        }
        let zones = self.zones.get_or_insert_with(|| {
            let mut z: Vec<u32> = self.serves.iter().map(|s| s.zone).collect();
            z.sort_unstable();
            z.dedup();
            Box::new(z)
        });
        if let Err(i) = zones.binary_search(&s.zone) {
            zones.insert(i, s.zone);
        }
    }

    fn serves_zone(&self, z: u32) -> bool {
        if self.is_few() {
            self.serves.iter().any(|s| s.zone == z)
        } else {
            self.zones
                .as_ref()
                .is_some_and(|zs| zs.binary_search(&z).is_ok())
        }
    }
}

/// Who sent a response, for the bailiwick rule.
#[derive(Debug, Clone, Copy)]
enum ServerKind {
    /// Not registered (or expired) at the response time.
    Unknown,
    /// An operator exception: trusted for the whole tree.
    Everything,
    /// Registered: serves the zones of `by_addr[ip]`.
    Known(IpAddr),
    /// Registered and serving few zones: their ids, copied once per response.
    KnownFew([u32; SMALL_SERVES], u8),
}

/// Most entries of one address examined linearly; beyond it lookups go through the maps.
const SMALL_SERVES: usize = 8;

#[derive(Debug, Clone)]
struct PendingNs {
    zone: u32,
    /// The glue-less NS name itself: `pending` is keyed by its hash, and an answer is only
    /// taken for it when the question's text is this name.
    ns: u32,
    nsttl: u32,
    deadline: u64,
    querytime: u64,
    queryid: u16,
    /// The name and type of the referral's query, for the paper's queryname column (the name
    /// only kept when rows are recorded: query names are not interned, or the name table would
    /// grow with the trace; formatted only if a row is written).
    qname: Box<str>,
    qtype: u16,
    res_time: u64,
    server: SocketAddr,
}

/// Interned names: a history of 18,000 NS records repeats a few thousand names many times.
///
/// A name of up to 31 bytes (nearly every zone and NS name) is kept inline in a 32-byte record,
/// so that reading the name of an id touches one cache line: the refresh fast path and the
/// bailiwick checks compare the names of ids from all over the history, and a `Box<str>` per
/// name cost two misses (the pointer, then the text). Longer names go to `long`.
#[derive(Default)]
struct Names {
    /// Ids by the hash of their text (compared through `recs`: the text is kept once).
    ids: hashbrown::HashTable<u32>,
    recs: Vec<NameRec>,
    long: Vec<Box<str>>,
}

#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct NameRec {
    /// Length of the inline name, or `NameRec::LONG`: `text` starts with the index into
    /// `Names::long` (4 bytes, little-endian).
    len: u8,
    text: [u8; 31],
}

impl NameRec {
    const LONG: u8 = u8::MAX;
}

impl Names {
    fn hash(s: &str) -> u64 {
        use std::hash::BuildHasher;
        hash::FastBuild.hash_one(s.as_bytes())
    }
    fn id(&mut self, s: &str) -> u32 {
        let h = Self::hash(s);
        if let Some(&i) = self.ids.find(h, |&i| self.bytes(i) == s.as_bytes()) {
            return i;
        }
        let i = self.recs.len() as u32;
        let mut rec = NameRec {
            len: NameRec::LONG,
            text: [0; 31],
        };
        if s.len() <= rec.text.len() {
            rec.len = s.len() as u8;
            rec.text[..s.len()].copy_from_slice(s.as_bytes());
        } else {
            rec.text[..4].copy_from_slice(&(self.long.len() as u32).to_le_bytes());
            self.long.push(s.into());
        }
        self.recs.push(rec);
        let (recs, long) = (&self.recs, &self.long);
        self.ids
            .insert_unique(h, i, |&j| Self::hash(Names::text_of(recs, long, j)));
        i
    }
    fn get(&self, s: &str) -> Option<u32> {
        self.ids
            .find(Self::hash(s), |&i| self.bytes(i) == s.as_bytes())
            .copied()
    }
    /// The name's bytes (the text of a `&str` given to `id`).
    fn bytes(&self, i: u32) -> &[u8] {
        Self::bytes_of(&self.recs, &self.long, i)
    }
    fn bytes_of<'a>(recs: &'a [NameRec], long: &'a [Box<str>], i: u32) -> &'a [u8] {
        let r = &recs[i as usize];
        match r.text.get(..r.len as usize) {
            Some(t) => t,
            None => {
                let j = u32::from_le_bytes([r.text[0], r.text[1], r.text[2], r.text[3]]);
                long[j as usize].as_bytes()
            }
        }
    }
    fn text_of<'a>(recs: &'a [NameRec], long: &'a [Box<str>], i: u32) -> &'a str {
        // Always valid: the bytes were copied whole from a `&str`.
        std::str::from_utf8(Self::bytes_of(recs, long, i)).unwrap_or_default()
    }
    fn name(&self, i: u32) -> &str {
        Self::text_of(&self.recs, &self.long, i)
    }
}

/// Most NS records and glue addresses examined in one response (real referrals carry ≤ 13 NS
/// and ≤ 26 glue; the rest of a hostile message is counted in `malformed` and ignored).
pub const MAX_NS_PER_RESPONSE: usize = 64;
pub const MAX_GLUE_PER_RESPONSE: usize = 256;
/// Most CNAMEs followed from a glue-less NS name to its address.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Most zones an address looked up for a registered name server's name is learned for (the
/// ones seen most recently with that name).
const NS_LOOKUP_ZONES: usize = 8;
/// Most entries of one address examined to find a name server's zones (its latest; a big
/// provider's address may serve hundreds of thousands).
const NS_LOOKUP_SCAN: usize = 512;

/// The learning engine. See the module documentation for the rules.
///
/// Use from a live daemon: `Engine::new(LearnConfig { record_rows: true, ..Default::default() })`,
/// feed it `on_query` / `on_response` (the latter returns what each response taught, for the
/// kernel maps), and once a second hand `take_rows()` to a [`crate::store::Writer`]
/// (`push`, then `flush`/`finish` on shutdown). Seed it at start with
/// [`Engine::restore`] from [`crate::store::Store::history`].
pub struct Engine {
    cfg: LearnConfig,
    stats: Stats,
    names: Names,
    /// Queries in flight: where each is in `inflight_slots`.
    inflight: FastMap<QKey, u32>,
    /// The queries in flight, in slots reused once answered (so few, and warm in the cache).
    inflight_slots: Vec<InflightSlot>,
    inflight_free: Vec<u32>,
    /// Slot and generation of each query in the order sent, for expiry and the size bound.
    /// Eight bytes per query: this queue spans the whole query timeout (30 s of queries, most
    /// of them long answered), and with the key and time in each element (48 bytes) it was
    /// megabytes streamed through the cache the history needs.
    inflight_order: VecDeque<(u32, u32)>,
    /// Where each (zone, NS name, address) entry is in `slab`.
    entries: FastMap<(u32, u32, IpAddr), u32>,
    /// The entries themselves: a refresh found through `by_addr` reaches its entry without a
    /// second hash lookup (entries are never removed).
    slab: Vec<Entry>,
    by_addr: FastMap<IpAddr, AddrInfo>,
    /// Addresses known per NS name.
    by_ns: FastMap<u32, Vec<IpAddr>>,
    /// Glue-less NS names awaiting an address lookup, by name hash (see `name_hash`).
    pending: FastMap<u64, Vec<PendingNs>>,
    pending_sweep_at: u64,
    rows: Rows,
    /// History entries changed since the last `take_rows`.
    dirty: Vec<(u32, u32, IpAddr)>,
    /// (zone, NS name) pairs seen glue-less (for the one-row-per-first-sighting rule).
    glueless_seen: FastMap<(u32, u32), ()>,
    /// Whether `learn_with` builds [`Learned`] values for the caller.
    collect: bool,
    out: Vec<Learned>,
    /// NS rows pushed while handling the current response.
    ns_rows_now: usize,
    decisions: Vec<Decision>,
    root_zone: u32,
    /// Buffers reused by every response (see [`Collected`]).
    scratch: Option<Box<Collected>>,
    /// The addresses known for a glue-less NS name (`respond_with`), kept for reuse.
    known_scratch: Vec<IpAddr>,
    /// One bit per NS name hash (`name_hash`, top bits) of every name server in the history:
    /// an A/AAAA answer whose question hash misses it is no lookup of a name server's name,
    /// which spares the question's decoding and the name lookup for nearly every answer.
    ns_filter: Vec<u64>,
}

/// Bits of [`Engine::ns_filter`] (2^20: 128 KiB; past a few hundred thousand NS names it
/// lets most answers through to the exact check, which stays correct).
const NS_FILTER_BITS_LOG2: u32 = 20;

/// One NS record collected from a response (its names are in `Collected::names`).
struct NsCand {
    zone: TextRange,
    target: TextRange,
    /// Offset of the target name in the message (hashed only when it is glue-less).
    target_off: usize,
    /// The owner is a compression pointer to a label of the question name where it lies
    /// (`points_into_question`): it is the question or one of its ancestors.
    owner_in_question: bool,
    ttl: u32,
    /// Index of the first NS record of the response with the same target (its own index
    /// if none before it has), so glue is matched to NS records by comparing integers.
    same_as: u32,
}
struct GlueCand {
    /// The owner name; empty when `ns` says which NS record's target it is.
    owner: TextRange,
    /// `same_as` of the NS record whose target this glue's owner points to (see `collect`),
    /// or `NO_NS`.
    ns: u32,
    addr: IpAddr,
    ttl: u32,
}

const NO_NS: u32 = u32::MAX;

impl GlueCand {
    /// Is this the glue of NS record `n` (RFC 1034 §4.2.1: an address record owned by the NS
    /// record's target)?
    fn is_glue_of(&self, n: &NsCand, names: &NameCache) -> bool {
        if self.ns != NO_NS {
            self.ns == n.same_as
        } else {
            names.text(self.owner) == names.text(n.target)
        }
    }
}

/// A hint to the CPU to start loading `v`'s cache line (no effect on other targets).
#[inline(always)]
fn prefetch<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is only a hint; it reads nothing and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((v as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// Case-insensitive hash of the name at `off`, from its wire labels (no text is built).
fn name_hash(msg: &[u8], off: usize) -> Result<u64, wire::WireError> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = hash::FastBuild.build_hasher();
    wire::hash_name(msg, off, &mut h)?;
    Ok(h.finish())
}

/// [`name_hash`] of the message's first question (`wire::hash_question_name`).
fn question_name_hash(m: &Message<'_>) -> Result<u64, wire::WireError> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = hash::FastBuild.build_hasher();
    wire::hash_question_name(m, &mut h)?;
    Ok(h.finish())
}

/// The word of `Engine::ns_filter` a name hash falls in, and its bit there (the hash's top
/// `NS_FILTER_BITS_LOG2` bits).
fn ns_filter_bit(name_hash: u64) -> (usize, u64) {
    let b = (name_hash >> (64 - NS_FILTER_BITS_LOG2)) as usize;
    (b / 64, 1 << (b % 64))
}

/// [`name_hash`] of a name given as text (as `Names` keeps it).
fn text_name_hash(text: &str) -> Option<u64> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = hash::FastBuild.build_hasher();
    wire::hash_text_name(text, &mut h).then(|| h.finish())
}

/// The question's identity for pairing (RFC 5452 §9.1: name, type and class must match).
fn question_hash(name_hash: u64, qtype: u16, qclass: u16) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = hash::FastBuild.build_hasher();
    h.write_u64(name_hash);
    h.write_u16(qtype);
    h.write_u16(qclass);
    h.finish()
}

/// Paper §3.2: "FQDN" for A, "FQDN TYPE" otherwise (type as a number, as in the paper's
/// example "251.13.112.131.in-addr.arpa 12").
pub fn queryname(name: &str, qtype: u16) -> String {
    if qtype == wire::TYPE_A {
        name.to_string()
    } else {
        format!("{name} {qtype}")
    }
}

fn parent(zone: &str) -> &str {
    match zone.find('.') {
        Some(i) if zone != "." => &zone[i + 1..],
        _ => ".",
    }
}

impl Engine {
    pub fn new(cfg: LearnConfig) -> Engine {
        let mut e = Engine {
            stats: Stats::default(),
            names: Names::default(),
            inflight: FastMap::default(),
            inflight_slots: Vec::new(),
            inflight_free: Vec::new(),
            inflight_order: VecDeque::new(),
            entries: FastMap::default(),
            slab: Vec::new(),
            by_addr: FastMap::default(),
            by_ns: FastMap::default(),
            pending: FastMap::default(),
            pending_sweep_at: 0,
            rows: Rows::default(),
            dirty: Vec::new(),
            glueless_seen: FastMap::default(),
            collect: true,
            out: Vec::new(),
            ns_rows_now: 0,
            decisions: Vec::new(),
            root_zone: 0,
            scratch: None,
            known_scratch: Vec::new(),
            ns_filter: vec![0; (1 << NS_FILTER_BITS_LOG2) / 64],
            cfg,
        };
        e.root_zone = e.names.id(".");
        for h in e.cfg.root_hints.clone() {
            let ns = e.names.id(&h.name);
            e.insert_entry(
                e.root_zone,
                ns,
                h.addr,
                Entry {
                    first_seen: 0,
                    last_seen: 0,
                    count: 0,
                    expires: u64::MAX,
                    ttl: roots::ROOT_HINTS_TTL,
                    source: Source::RootHints,
                    dirty: false,
                },
            );
        }
        e
    }

    pub fn config(&self) -> &LearnConfig {
        &self.cfg
    }

    /// The operator's exceptions, changed while running (`nsdb allow add|remove`).
    pub fn exceptions_mut(&mut self) -> &mut Vec<ipnet::IpNet> {
        &mut self.cfg.exceptions
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of (zone, NS, address) triples in the history, root hints included.
    pub fn history_len(&self) -> usize {
        self.entries.len()
    }

    /// Queries awaiting a response.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// query_db and ns_db rows waiting for [`Self::take_rows`].
    pub fn log_rows_pending(&self) -> usize {
        self.rows.queries.len() + self.rows.ns.len()
    }

    /// Rows (query_db, ns_db, learned triples) produced since the last call; each history
    /// entry changed since the last call once, in its current state.
    pub fn take_rows(&mut self) -> Rows {
        let mut rows = std::mem::take(&mut self.rows);
        for key in std::mem::take(&mut self.dirty) {
            let Some(e) = self.entries.get(&key).map(|&i| &mut self.slab[i as usize]) else {
                continue;
            };
            e.dirty = false;
            let e = *e;
            rows.learned.push(Learned {
                zone: self.names.name(key.0).to_string(),
                ns_name: self.names.name(key.1).to_string(),
                addr: key.2,
                expires_ms: e.expires,
                ttl: e.ttl,
                learned_ms: e.last_seen,
                source: e.source,
                first_seen_ms: e.first_seen,
            });
            // The store keeps absolute counts (see `Store::write`).
            rows.counts.push(e.count);
        }
        rows
    }

    /// Decisions recorded since the last call (only with `explain`).
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.decisions)
    }

    /// Seed the history with an entry loaded from the database.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &mut self,
        zone: &str,
        ns_name: &str,
        addr: IpAddr,
        first_seen: u64,
        last_seen: u64,
        count: u64,
        expires: u64,
        ttl: u32,
        source: Source,
    ) {
        let z = self.names.id(zone);
        let n = self.names.id(ns_name);
        let key = (z, n, addr);
        if let Some(e) = self.entries.get(&key).map(|&i| &mut self.slab[i as usize]) {
            e.expires = e.expires.max(expires);
            e.first_seen = e.first_seen.min(first_seen);
            e.count = e.count.max(count);
            let ex = e.expires;
            if let Some(a) = self.by_addr.get_mut(&addr) {
                a.expires = a.expires.max(ex);
            }
            return;
        }
        self.insert_entry(
            z,
            n,
            addr,
            Entry {
                first_seen,
                last_seen,
                count,
                expires,
                ttl,
                source,
                dirty: false,
            },
        );
    }

    fn insert_entry(&mut self, z: u32, n: u32, addr: IpAddr, e: Entry) {
        let slot = self.slab.len() as u32;
        let a = self.by_addr.entry(addr).or_default();
        a.expires = a.expires.max(e.expires);
        // Only called for a (zone, NS, address) not yet in `entries`, so (z, n) is new here.
        a.push(Serve {
            zone: z,
            ns: n,
            slot,
        });
        let v = self.by_ns.entry(n).or_default();
        if !v.contains(&addr) {
            v.push(addr);
        }
        self.note_ns_name(n);
        self.slab.push(e);
        self.entries.insert((z, n, addr), slot);
    }

    /// A DNS query seen going from `src` (client) to `dst` (server).
    pub fn on_query(&mut self, ts_ms: u64, src: SocketAddr, dst: SocketAddr, msg: &[u8]) {
        self.stats.queries += 1;
        self.expire_inflight(ts_ms);
        let Ok(m) = Message::parse(msg) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(q) = m.question() else {
            // No question: nothing a response could be paired on (RFC 9619 requires one).
            return;
        };
        let Ok(nh) = question_name_hash(&m) else {
            self.stats.malformed += 1;
            return;
        };
        let key = QKey::new(src, dst, m.header.id);
        let info = QInfo {
            ts_ms,
            qhash: question_hash(nh, q.qtype, q.qclass),
        };
        if self.inflight.len() >= self.cfg.max_inflight && !self.inflight.contains_key(&key) {
            // Drop the oldest query still in flight.
            while let Some((slot, generation)) = self.inflight_order.pop_front() {
                if let Some(k) = self.live_slot(slot, generation) {
                    self.inflight.remove(&k);
                    self.free_slot(slot);
                    self.stats.inflight_dropped += 1;
                    break;
                }
            }
        }
        let slot = self.take_slot(key, info);
        if let Some(old) = self.inflight.insert(key, slot) {
            // The same key asked again: the new query replaces the old one.
            self.free_slot(old);
        }
        let generation = self.inflight_slots[slot as usize].generation;
        self.inflight_order.push_back((slot, generation));
        if self.cfg.record_rows && self.cfg.record_all_queries {
            let mut name = NameBuf::default();
            let _ = wire::read_name(msg, q.name_off, &mut name);
            self.rows.queries.push(QueryRow {
                querytime: ts_ms,
                queryid: m.header.id,
                queryname: queryname(name.as_str(), q.qtype),
                client: src,
                server: dst,
            });
        }
    }

    fn expire_inflight(&mut self, now: u64) {
        let limit = now.saturating_sub(self.cfg.query_timeout_ms);
        // Bounded by the queue length; amortised O(1) per query.
        while let Some(&(slot, generation)) = self.inflight_order.front() {
            let Some(k) = self.live_slot(slot, generation) else {
                // Answered (or replaced) already: nothing to expire.
                self.inflight_order.pop_front();
                continue;
            };
            let ts = self.inflight_slots[slot as usize].info.ts_ms;
            if ts >= limit && self.inflight_order.len() <= self.cfg.max_inflight * 2 {
                break;
            }
            self.inflight_order.pop_front();
            self.inflight.remove(&k);
            self.free_slot(slot);
            self.stats.inflight_expired += 1;
        }
    }

    /// The key of the query in `slot` if the slot still holds the query of `generation`.
    fn live_slot(&self, slot: u32, generation: u32) -> Option<QKey> {
        let s = &self.inflight_slots[slot as usize];
        (s.generation == generation).then_some(s.key)
    }

    /// A slot for a new query in flight: a freed one if any (its generation already raised).
    fn take_slot(&mut self, key: QKey, info: QInfo) -> u32 {
        match self.inflight_free.pop() {
            Some(i) => {
                let s = &mut self.inflight_slots[i as usize];
                s.key = key;
                s.info = info;
                i
            }
            None => {
                self.inflight_slots.push(InflightSlot {
                    key,
                    info,
                    generation: 0,
                });
                (self.inflight_slots.len() - 1) as u32
            }
        }
    }

    fn free_slot(&mut self, slot: u32) {
        let s = &mut self.inflight_slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        self.inflight_free.push(slot);
    }

    /// A DNS response from `src` (server) to `dst` (client). Returns what it taught.
    pub fn on_response(
        &mut self,
        ts_ms: u64,
        src: SocketAddr,
        dst: SocketAddr,
        msg: &[u8],
    ) -> Vec<Learned> {
        self.collect = true;
        self.respond(ts_ms, src, dst, msg);
        std::mem::take(&mut self.out)
    }

    /// Like [`Engine::on_response`] without building the returned values (offline learning,
    /// where the history rows come from [`Engine::take_rows`]). Returns how many (zone, NS,
    /// address) entries the response taught or refreshed.
    pub fn on_response_count(
        &mut self,
        ts_ms: u64,
        src: SocketAddr,
        dst: SocketAddr,
        msg: &[u8],
    ) -> usize {
        self.collect = false;
        let before = self.stats.learned + self.stats.refreshed;
        self.respond(ts_ms, src, dst, msg);
        (self.stats.learned + self.stats.refreshed - before) as usize
    }

    fn respond(&mut self, ts_ms: u64, src: SocketAddr, dst: SocketAddr, msg: &[u8]) {
        let mut c = self.scratch.take().unwrap_or_default();
        self.respond_with(ts_ms, src, dst, msg, &mut c);
        self.scratch = Some(c);
    }

    fn respond_with(
        &mut self,
        ts_ms: u64,
        src: SocketAddr,
        dst: SocketAddr,
        msg: &[u8],
        c: &mut Collected,
    ) {
        self.stats.responses += 1;
        self.ns_rows_now = 0;
        let m = match Message::parse(msg) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let (qtype, qclass, qname_hash) = match m.question() {
            Some(q) => match question_name_hash(&m) {
                Ok(h) => (q.qtype, q.qclass, h),
                Err(_) => {
                    self.stats.malformed += 1;
                    return;
                }
            },
            None => (0, 0, 0),
        };
        let key = QKey::new(dst, src, m.header.id);
        // One map operation for the common case (a paired response consumes its query); a
        // query whose question does not match is put back, as it was never consumed.
        let found = self
            .inflight
            .remove(&key)
            .map(|slot| (slot, self.inflight_slots[slot as usize].info));
        let qinfo = match found {
            Some((slot, i))
                if m.header.qdcount > 0 && i.qhash == question_hash(qname_hash, qtype, qclass) =>
            {
                self.free_slot(slot);
                i
            }
            other => {
                let v = match other {
                    None => {
                        self.stats.unsolicited += 1;
                        "unsolicited"
                    }
                    Some((slot, _)) => {
                        self.inflight.insert(key, slot);
                        self.stats.question_mismatch += 1;
                        "question_mismatch"
                    }
                };
                if self.cfg.explain {
                    self.explain_all(ts_ms, src, dst, &m, v);
                }
                return;
            }
        };
        self.stats.paired += 1;

        let h = m.header;
        let reject = if h.truncated() {
            self.stats.truncated += 1;
            Some("truncated")
        } else if h.opcode() != 0 || h.rcode() != 0 {
            self.stats.not_noerror += 1;
            Some("not_noerror")
        } else {
            None
        };
        if let Some(v) = reject {
            if self.cfg.explain {
                self.explain_all(ts_ms, src, dst, &m, v);
            }
            return;
        }

        // Collect NS records, glue, and answers: for glue-less lookups, and for a lookup of a
        // registered name server's own name.
        let addr_query = qtype == wire::TYPE_A || qtype == wire::TYPE_AAAA;
        let pending_lookup = addr_query && self.pending.contains_key(&qname_hash);
        c.reset();
        let maybe_ns = addr_query && m.header.ancount > 0 && self.may_be_ns(qname_hash);
        // A pending glue-less lookup wants the answers anyway; whether it is also a registered
        // name server's name is only asked if the glue-less rule teaches nothing (below).
        let mut ns_lookup = None;
        if maybe_ns && !pending_lookup {
            c.read_qname(&m);
            ns_lookup = self.live_ns_named(c.qname.map(|r| c.text(r)), ts_ms);
        }
        let want_answers = pending_lookup || ns_lookup.is_some();
        if collect(msg, &m, want_answers, c).is_err() {
            self.stats.malformed += 1;
            if self.cfg.explain {
                self.explain_cands(ts_ms, src, dst, h.id, c, "malformed");
            }
            return;
        }
        self.stats.ns_records += c.ns.len() as u64;
        if c.ns.is_empty() && !want_answers {
            // A plain answer: nothing to learn (the common case).
            if ts_ms >= self.pending_sweep_at {
                self.sweep_pending(ts_ms);
            }
            return;
        }
        // The question's text, for the answers and the CNAME chain; otherwise decoded only if
        // something asks for it (`QName`): a referral whose NS owner points into the question
        // (`NsCand::owner_in_question`) and that teaches nothing new never does.
        if want_answers || !c.cnames.is_empty() {
            c.read_qname(&m);
            if m.header.qdcount > 0 && c.qname.is_none() {
                self.stats.malformed += 1;
                return;
            }
        }
        // A paired response has a question whose name `name_hash` read without error, and
        // `hash_name` validates a name exactly as `read_name` does (`wire::tests::names_agree`),
        // so its text, decoded now or later, is never missing.
        debug_assert!(m.header.qdcount > 0);
        let lazy_qname = std::cell::OnceCell::new();
        let qname = QName {
            text: c.qname.map(|r| c.text(r)),
            msg,
            lazy: &lazy_qname,
        };
        let c = &*c;
        let (ns, glue) = (c.ns(), c.glue());
        let server_known = self.warm(src.ip(), glue, ts_ms);
        if self.cfg.bailiwick == Bailiwick::Strict && matches!(server_known, ServerKind::Unknown) {
            if !ns.is_empty() || want_answers {
                self.stats.unknown_server += 1;
                if self.cfg.explain {
                    self.explain_cands(ts_ms, src, dst, h.id, c, "unknown_server");
                }
            }
            return;
        }
        let ctx = RespCtx {
            qname_hash,
            ts_ms,
            server: src,
            client: dst,
            id: h.id,
            querytime: qinfo.ts_ms,
            qname,
            qtype,
        };
        // The names this response answers: the question and the CNAME chain from it (the NS
        // records of a CNAME target's zone are as relevant as the question's, RFC 1034 §4.3.2).
        // Without CNAMEs (nearly every response) that is the question alone, with no chain
        // built.
        let chain_buf;
        let chain: Option<&[&str]> = if c.cnames.is_empty() {
            None
        } else {
            chain_buf = c.cname_chain(qname.get());
            Some(&chain_buf.0[..chain_buf.1])
        };
        // The NS records of one RRset share their owner (`collect` decodes it once): its two
        // checks are made once per owner, not once per record.
        let mut last_zone: Option<(TextRange, bool, bool)> = None;
        for n in ns {
            let (zone, target) = (c.text(n.zone), c.text(n.target));
            let (in_query, in_server) = match last_zone {
                Some((z, q, s)) if z == n.zone => (q, s),
                _ => {
                    // An owner that points into the question is the question or an ancestor.
                    let q = self.cfg.bailiwick == Bailiwick::Off
                        || n.owner_in_question
                        || match chain {
                            Some(chain) => chain.iter().any(|q| wire::is_subdomain(q, zone)),
                            None => wire::is_subdomain(qname.get(), zone),
                        };
                    let s = self.may_teach(server_known, zone, None);
                    last_zone = Some((n.zone, q, s));
                    (q, s)
                }
            };
            // The glue of this NS record, as an iterator rather than a collected Vec: one
            // allocation per NS record showed up in profiles of referral-heavy traces.
            let matching = || glue.iter().filter(|g| g.is_glue_of(n, &c.names));
            if !in_query || !in_server {
                self.stats.out_of_bailiwick += 1;
                let v = if in_query {
                    "out_of_bailiwick"
                } else {
                    "ns_not_for_query"
                };
                if self.cfg.explain {
                    if matching().next().is_none() {
                        self.decide(&ctx, zone, target, None, v);
                    }
                    for g in matching() {
                        self.decide(&ctx, zone, target, Some(g.addr), v);
                    }
                }
                continue;
            }
            let mut any = false;
            // An in-zone target (`ns1.example.com` of `example.com`, the common case) may be
            // taught by a server allowed to teach its zone (`in_server`): every rule of
            // `may_teach` is closed under going down the tree, and a server's zones only grow
            // while this response is learned. Decided at the first glue, for all of them.
            let mut in_zone: Option<bool> = None;
            for g in matching() {
                self.stats.glue_addrs += 1;
                let in_zone = *in_zone.get_or_insert_with(|| wire::is_subdomain(target, zone));
                // The glue's owner is the NS record's target (`is_glue_of`).
                if !in_zone && !self.may_teach(server_known, target, Some(zone)) {
                    self.stats.out_of_bailiwick += 1;
                    if self.cfg.explain {
                        self.decide(&ctx, zone, target, Some(g.addr), "glue_out_of_bailiwick");
                    }
                    continue;
                }
                any = true;
                self.learn(&ctx, zone, target, n.ttl, g.addr, g.ttl, Source::Glue);
            }
            if !any {
                // Glue-less (or all glue rejected): wait for a lookup of the NS name, and use
                // what the history already knows about it.
                // Validated when collected, so the hash cannot fail here.
                let target_hash = name_hash(msg, n.target_off).unwrap_or(0);
                let t = self.add_pending(&ctx, zone, target, target_hash, n.ttl);
                // Copied out (`learn` changes the history), into a list kept for reuse.
                let mut known = std::mem::take(&mut self.known_scratch);
                known.clear();
                if let Some(v) = self.by_ns.get(&t) {
                    known.extend(
                        v.iter()
                            .copied()
                            .filter(|a| self.by_addr.get(a).is_some_and(|i| i.expires >= ts_ms)),
                    );
                }
                for &a in &known {
                    self.learn(&ctx, zone, target, n.ttl, a, n.ttl, Source::KnownNs);
                }
                self.known_scratch = known;
            }
        }
        if pending_lookup && !self.resolve_glueless(&ctx, server_known, c) && maybe_ns {
            ns_lookup = self.live_ns_named(c.qname.map(|r| c.text(r)), ts_ms);
        }
        if let Some(n) = ns_lookup {
            self.resolve_ns_lookup(&ctx, server_known, c, n);
        }
        if self.ns_rows_now > 0 && self.cfg.record_rows && !self.cfg.record_all_queries {
            self.rows.queries.push(QueryRow {
                querytime: qinfo.ts_ms,
                queryid: h.id,
                queryname: queryname(qname.get(), qtype),
                client: dst,
                server: src,
            });
        }
        if ts_ms >= self.pending_sweep_at {
            self.sweep_pending(ts_ms);
        }
    }

    /// Bring into the cache what the rest of the response will read in the history: the
    /// buckets of the server and of each glue address, then the entries and names they point
    /// to. Touched here in one tight loop, the cache misses overlap, where the checks and
    /// refreshes that follow would take them one after another (the history of a paper-scale
    /// trace is a few megabytes, read at random).
    ///
    /// Returns what the server is at `now` (`server_kind_of`), from the bucket looked up here.
    fn warm(&self, server: IpAddr, glue: &[GlueCand], now: u64) -> ServerKind {
        let warm_one = |a: &AddrInfo| {
            for s in a.serves.iter().take(2) {
                prefetch(&self.slab[s.slot as usize]);
                prefetch(&self.names.recs[s.zone as usize]);
                prefetch(&self.names.recs[s.ns as usize]);
            }
        };
        let server_info = self.by_addr.get(&server);
        if let Some(a) = server_info {
            warm_one(a);
        }
        for g in glue {
            if let Some(a) = self.by_addr.get(&g.addr) {
                warm_one(a);
            }
        }
        self.server_kind_of(server, server_info, now)
    }

    /// `server_kind_of` with the server's bucket looked up (tests).
    #[cfg(test)]
    fn server_kind(&self, server: IpAddr, now: u64) -> ServerKind {
        self.server_kind_of(server, self.by_addr.get(&server), now)
    }

    /// Is `server`, whose history bucket is `info`, registered (unexpired) at `now`?
    /// Exceptions serve the whole tree.
    fn server_kind_of(&self, server: IpAddr, info: Option<&AddrInfo>, now: u64) -> ServerKind {
        if self.cfg.exceptions.iter().any(|n| n.contains(&server)) {
            return ServerKind::Everything;
        }
        match info {
            Some(a) if a.expires >= now && a.is_few() => {
                // Zone ids may repeat (one zone, several NS names): harmless for `any`.
                let mut ids = [0u32; SMALL_SERVES];
                for (id, s) in ids.iter_mut().zip(&a.serves) {
                    *id = s.zone;
                }
                ServerKind::KnownFew(ids, a.serves.len() as u8)
            }
            Some(a) if a.expires >= now => ServerKind::Known(server),
            _ => ServerKind::Unknown,
        }
    }

    /// Does the address serve `name`'s zone or one of its ancestors?
    fn serves_ancestor(&self, a: &AddrInfo, name: &str) -> bool {
        if a.is_few() {
            return a
                .serves
                .iter()
                .any(|s| wire::is_subdomain_bytes(name.as_bytes(), self.names.bytes(s.zone)));
        }
        // Walk the name's ancestors (at most 127 labels) and look each up.
        let mut rest = name;
        loop {
            if self.names.get(rest).is_some_and(|z| a.serves_zone(z)) {
                return true;
            }
            match rest.find('.') {
                Some(i) if rest != "." => rest = &rest[i + 1..],
                _ => break,
            }
        }
        self.names.get(".").is_some_and(|z| a.serves_zone(z))
    }

    /// May a server with zones `known` (None: unknown server) teach about `name`?
    /// `delegated`: the zone of the NS record, for glue from unknown servers.
    fn may_teach(&self, known: ServerKind, name: &str, delegated: Option<&str>) -> bool {
        match (self.cfg.bailiwick, known) {
            (Bailiwick::Off, _) | (_, ServerKind::Everything) => true,
            (_, ServerKind::KnownFew(ids, n)) => ids[..n as usize]
                .iter()
                .any(|z| wire::is_subdomain_bytes(name.as_bytes(), self.names.bytes(*z))),
            (_, ServerKind::Known(ip)) => self
                .by_addr
                .get(&ip)
                .is_some_and(|a| self.serves_ancestor(a, name)),
            (Bailiwick::Strict, ServerKind::Unknown) => false,
            (Bailiwick::Auto, ServerKind::Unknown) => match delegated {
                // NS owner from an unknown server: checked against the query name already.
                None => true,
                // Glue: inside the parent of the delegated zone.
                Some(z) => wire::is_subdomain(name, parent(z)),
            },
        }
    }

    /// Makes the glue-less NS name `target` of `zone` wait for its lookup; returns its id.
    fn add_pending(
        &mut self,
        ctx: &RespCtx<'_>,
        zone: &str,
        target: &str,
        target_hash: u64,
        nsttl: u32,
    ) -> u32 {
        let z = self.names.id(zone);
        let t = self.names.id(target);
        let qn: Box<str> = if self.cfg.record_rows {
            ctx.qname.get().into()
        } else {
            Box::default()
        };
        self.stats.glueless_pending += 1;
        let p = PendingNs {
            zone: z,
            ns: t,
            nsttl,
            deadline: ctx.ts_ms + self.cfg.glueless_window_ms,
            querytime: ctx.querytime,
            queryid: ctx.id,
            qname: qn,
            qtype: ctx.qtype,
            res_time: ctx.ts_ms,
            server: ctx.server,
        };
        let v = self.pending.entry(target_hash).or_default();
        if let Some(old) = v.iter_mut().find(|o| o.zone == z && o.ns == t) {
            *old = p;
        } else {
            v.push(p);
        }
        if self.cfg.explain {
            self.decide(ctx, zone, target, None, "pending_glueless");
        }
        let first = self.glueless_seen.insert((z, t), ()).is_none();
        if self.cfg.record_rows && (first || self.cfg.record_all_ns_rows) {
            // Paper §4: the NS row is registered at once with empty glue columns.
            self.ns_rows_now += 1;
            self.rows.ns.push(NsRow {
                querytime: ctx.querytime,
                queryid: ctx.id,
                queryname: queryname(ctx.qname.get(), ctx.qtype),
                res_time: ctx.ts_ms,
                zname: zone.to_string(),
                nsttl,
                nsfqdn: target.to_string(),
                glue_ttl: None,
                glue: None,
                server: ctx.server,
                source: Source::Glue,
                expires_ms: 0,
            });
        }
        t
    }

    /// Learns the answer to a pending glue-less NS name's lookup; whether it learned anything.
    fn resolve_glueless(&mut self, ctx: &RespCtx<'_>, known: ServerKind, c: &Collected) -> bool {
        if !self.pending.contains_key(&ctx.qname_hash) {
            return false;
        }
        // Follow CNAMEs from the NS name (bounded), then take its A/AAAA answers.
        let answers = c.chain_answers(ctx.qname.get());
        let addrs = || answers.iter().copied();
        if answers.is_empty() {
            return false;
        }
        let in_bailiwick = self.may_teach(known, ctx.qname.get(), Some("."));
        // The names waiting for this lookup, taken out of the map while the history learns
        // (nothing below reads `pending`) and put back after: no copy of them.
        let pend = match self.pending.get_mut(&ctx.qname_hash) {
            Some(v) => std::mem::take(v),
            None => return false,
        };
        let mut learned = false;
        for p in &pend {
            if self.names.name(p.ns) != ctx.qname.get() {
                // Another name with the same hash (see `wire::hash_name`): not this lookup.
                continue;
            }
            let zone = self.names.name(p.zone).to_string();
            if ctx.ts_ms > p.deadline {
                if self.cfg.explain {
                    self.decide_answers(ctx, &zone, &answers, "glueless_too_late");
                }
                continue;
            }
            if !in_bailiwick {
                self.stats.out_of_bailiwick += 1;
                if self.cfg.explain {
                    self.decide_answers(ctx, &zone, &answers, "glue_out_of_bailiwick");
                }
                continue;
            }
            let pctx = RespCtx {
                qname_hash: ctx.qname_hash,
                ts_ms: ctx.ts_ms,
                server: p.server,
                client: ctx.client,
                id: p.queryid,
                querytime: p.querytime,
                qname: ctx.qname,
                qtype: ctx.qtype,
            };
            for a in addrs() {
                self.stats.glueless_resolved += 1;
                learned = true;
                self.learn_with(
                    &pctx,
                    Some((&*p.qname, p.qtype)),
                    p.res_time,
                    &zone,
                    ctx.qname.get(),
                    p.nsttl,
                    a.addr,
                    a.ttl,
                    Source::GluelessLookup,
                );
            }
        }
        if let Some(v) = self.pending.get_mut(&ctx.qname_hash) {
            *v = pend;
        }
        learned
    }

    /// Sets `n`'s bit in `ns_filter` (once per new entry: kept out of line, away from the
    /// refresh path it is inlined into).
    #[cold]
    #[inline(never)]
    fn note_ns_name(&mut self, n: u32) {
        if let Some(h) = text_name_hash(self.names.name(n)) {
            let (word, bit) = ns_filter_bit(h);
            self.ns_filter[word] |= bit;
        }
    }

    /// The id of `name` if it is a registered name server's name (`is_live_ns`).
    #[inline(never)]
    fn live_ns_named(&self, name: Option<&str>, now: u64) -> Option<u32> {
        name.and_then(|t| self.names.get(t))
            .filter(|&n| self.is_live_ns(n, now))
    }

    /// Might the name of this hash be a name server's (`ns_filter`)?
    fn may_be_ns(&self, name_hash: u64) -> bool {
        let (word, bit) = ns_filter_bit(name_hash);
        self.ns_filter[word] & bit != 0
    }

    /// `n`'s unexpired entries (zone, entry) among the latest `NS_LOOKUP_SCAN` of each of its
    /// addresses (a big provider's address serves many zones). The one scan both questions
    /// below read, so they cannot disagree on which entries count.
    fn live_ns_entries(&self, n: u32, now: u64) -> impl Iterator<Item = (u32, &Entry)> + '_ {
        self.by_ns
            .get(&n)
            .into_iter()
            .flatten()
            .filter_map(|a| self.by_addr.get(a))
            .filter(move |info| info.expires >= now)
            .flat_map(|info| info.serves.iter().rev().take(NS_LOOKUP_SCAN))
            .filter(move |s| s.ns == n)
            .map(|s| (s.zone, &self.slab[s.slot as usize]))
            .filter(move |(_, e)| e.expires >= now)
    }

    /// Is `n` the NS name of an unexpired history entry (a registered name server's name)?
    fn is_live_ns(&self, n: u32, now: u64) -> bool {
        self.live_ns_entries(n, now).next().is_some()
    }

    /// The zones of `n`'s unexpired entries, most recently seen first (at most
    /// `NS_LOOKUP_ZONES`), with the TTL each entry was learned with.
    fn live_ns_zones(&self, n: u32, now: u64) -> SmallVec<[(u32, u32); NS_LOOKUP_ZONES]> {
        let mut found: SmallVec<[(u64, u32, u32); NS_LOOKUP_ZONES]> = SmallVec::new();
        for (zone, e) in self.live_ns_entries(n, now) {
            // The NS_LOOKUP_ZONES seen last, kept as the scan goes: O(entries × zones kept),
            // not a sort of everything a big provider's address serves.
            if let Some(f) = found.iter_mut().find(|f| f.1 == zone) {
                f.0 = f.0.max(e.last_seen);
            } else if found.len() < NS_LOOKUP_ZONES {
                found.push((e.last_seen, zone, e.ttl));
            } else if let Some(oldest) = found.iter_mut().min_by_key(|f| f.0)
                && oldest.0 < e.last_seen
            {
                *oldest = (e.last_seen, zone, e.ttl);
            }
        }
        found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        found.iter().map(|&(_, z, ttl)| (z, ttl)).collect()
    }

    /// The answer to an A/AAAA lookup of `n`, the name of a registered name server: its
    /// addresses serve that name server's zones. A dual-stack resolver given a referral with
    /// glue of one family looks up the other (Unbound's target fetch) and queries the address
    /// it gets; it also looks the name up again when the address's TTL runs out while the
    /// delegation is cached. Without this, those queries were unknown (dropped in enforce
    /// mode) whenever the authoritative server answers minimally (no NS and glue beside the
    /// answer). The same trust as a glue-less lookup: the answer pairs with the resolver's
    /// query, and its server must be allowed to teach the name (`may_teach`).
    #[inline(never)]
    fn resolve_ns_lookup(&mut self, ctx: &RespCtx<'_>, known: ServerKind, c: &Collected, n: u32) {
        let answers = c.chain_answers(ctx.qname.get());
        let addrs = || answers.iter().copied();
        if answers.is_empty() {
            return;
        }
        if !self.may_teach(known, ctx.qname.get(), Some(".")) {
            self.stats.out_of_bailiwick += 1;
            if self.cfg.explain {
                for (z, _) in self.live_ns_zones(n, ctx.ts_ms) {
                    let zone = self.names.name(z).to_string();
                    self.decide_answers(ctx, &zone, &answers, "glue_out_of_bailiwick");
                }
            }
            return;
        }
        for (z, ttl) in self.live_ns_zones(n, ctx.ts_ms) {
            let zone = self.names.name(z).to_string();
            for a in addrs() {
                // Learned from this very response already (a pending glue-less lookup of the
                // same name, or the same address twice in the answer): not twice.
                let slot = self.entries.get(&(z, n, a.addr)).copied();
                if slot.is_some_and(|i| self.slab[i as usize].last_seen == ctx.ts_ms) {
                    continue;
                }
                self.stats.ns_lookup_addrs += 1;
                self.learn_with(
                    ctx,
                    None,
                    ctx.ts_ms,
                    &zone,
                    ctx.qname.get(),
                    ttl,
                    a.addr,
                    a.ttl,
                    Source::NsLookup,
                );
            }
        }
    }

    fn sweep_pending(&mut self, now: u64) {
        let mut expired = 0;
        self.pending.retain(|_, v| {
            let before = v.len();
            v.retain(|p| p.deadline >= now);
            expired += before - v.len();
            !v.is_empty()
        });
        self.stats.glueless_expired += expired as u64;
        self.pending_sweep_at = now + self.cfg.glueless_window_ms.max(1);
    }

    #[allow(clippy::too_many_arguments)]
    fn learn(
        &mut self,
        ctx: &RespCtx<'_>,
        zone: &str,
        ns: &str,
        nsttl: u32,
        addr: IpAddr,
        addr_ttl: u32,
        source: Source,
    ) {
        self.learn_with(
            ctx, None, ctx.ts_ms, zone, ns, nsttl, addr, addr_ttl, source,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn learn_with(
        &mut self,
        ctx: &RespCtx<'_>,
        // The query of the paper's queryname column (name, type); None: `ctx`'s.
        qn: Option<(&str, u16)>,
        res_time: u64,
        zone: &str,
        ns: &str,
        nsttl: u32,
        addr: IpAddr,
        addr_ttl: u32,
        source: Source,
    ) {
        let now = ctx.ts_ms;
        let ttl = nsttl
            .min(addr_ttl)
            .clamp(self.cfg.min_ttl, self.cfg.max_ttl.max(self.cfg.min_ttl));
        let expires = now + ttl as u64 * 1000 + self.cfg.grace_ms;
        // Fast path for a refresh: the address's own (zone, NS) list, compared as strings,
        // spares two hash-map lookups of the names and the lookup of the entry. The address's
        // expiry is raised here for both outcomes (a new entry would raise it to the same
        // value in `insert_entry`).
        let mut known = None;
        if let Some(a) = self.by_addr.get_mut(&addr) {
            if a.is_few() {
                let names = &self.names;
                known = a
                    .serves
                    .iter()
                    .find(|s| {
                        names.bytes(s.ns) == ns.as_bytes() && names.bytes(s.zone) == zone.as_bytes()
                    })
                    .map(|s| ((s.zone, s.ns), s.slot));
            }
            a.expires = a.expires.max(expires);
        }
        let ((z, n), slot) = match known {
            Some((ids, slot)) => (ids, Some(slot)),
            None => {
                let ids = (self.names.id(zone), self.names.id(ns));
                (ids, self.entries.get(&(ids.0, ids.1, addr)).copied())
            }
        };
        let key = (z, n, addr);
        let (first_seen, verdict) = match slot.map(|i| &mut self.slab[i as usize]) {
            Some(e) => {
                e.last_seen = now;
                e.count += 1;
                if e.expires != u64::MAX {
                    e.expires = e.expires.max(expires);
                    e.ttl = ttl;
                }
                self.stats.refreshed += 1;
                let fs = e.first_seen;
                if !e.dirty && self.cfg.record_rows {
                    e.dirty = true;
                    self.dirty.push(key);
                }
                (fs, "refreshed")
            }
            None => {
                self.stats.learned += 1;
                self.insert_entry(
                    z,
                    n,
                    addr,
                    Entry {
                        first_seen: now,
                        last_seen: now,
                        count: 1,
                        expires,
                        ttl,
                        source,
                        dirty: self.cfg.record_rows,
                    },
                );
                if self.cfg.record_rows {
                    self.dirty.push(key);
                }
                (now, "learned")
            }
        };
        if self.cfg.explain {
            let v = if source == Source::GluelessLookup {
                "glueless_lookup"
            } else if source == Source::KnownNs {
                "known_ns"
            } else if source == Source::NsLookup {
                "ns_lookup"
            } else {
                verdict
            };
            self.decide(ctx, zone, ns, Some(addr), v);
        }
        if self.cfg.record_rows && (verdict == "learned" || self.cfg.record_all_ns_rows) {
            self.ns_rows_now += 1;
            self.rows.ns.push(NsRow {
                querytime: ctx.querytime,
                queryid: ctx.id,
                queryname: match qn {
                    Some((name, qtype)) => queryname(name, qtype),
                    None => queryname(ctx.qname.get(), ctx.qtype),
                },
                res_time,
                zname: zone.to_string(),
                nsttl,
                nsfqdn: ns.to_string(),
                glue_ttl: Some(addr_ttl),
                glue: Some(addr),
                server: ctx.server,
                source,
                expires_ms: expires,
            });
        }
        if self.collect {
            self.out.push(Learned {
                zone: zone.to_string(),
                ns_name: ns.to_string(),
                addr,
                expires_ms: expires,
                ttl,
                learned_ms: now,
                source,
                first_seen_ms: first_seen,
            });
        }
    }

    fn decide(
        &mut self,
        ctx: &RespCtx<'_>,
        zone: &str,
        ns: &str,
        addr: Option<IpAddr>,
        verdict: &'static str,
    ) {
        self.decisions.push(Decision {
            ts_ms: ctx.ts_ms,
            server: ctx.server,
            client: ctx.client,
            id: ctx.id,
            zone: zone.to_string(),
            ns_name: ns.to_string(),
            addr,
            verdict,
        });
    }

    /// Explain mode: one decision with `verdict` for each address answering the lookup of an
    /// NS name (`ctx`'s question) for `zone`.
    fn decide_answers(
        &mut self,
        ctx: &RespCtx<'_>,
        zone: &str,
        answers: &[&GlueCand],
        verdict: &'static str,
    ) {
        for a in answers {
            self.decide(ctx, zone, ctx.qname.get(), Some(a.addr), verdict);
        }
    }

    fn explain_all(
        &mut self,
        ts_ms: u64,
        src: SocketAddr,
        dst: SocketAddr,
        m: &Message<'_>,
        verdict: &'static str,
    ) {
        // Slow path (explain only): its own buffers; a malformed tail keeps what came before.
        let mut c = Collected::default();
        let _ = collect(m.buf, m, false, &mut c);
        self.explain_cands(ts_ms, src, dst, m.header.id, &c, verdict);
    }

    fn explain_cands(
        &mut self,
        ts_ms: u64,
        src: SocketAddr,
        dst: SocketAddr,
        id: u16,
        c: &Collected,
        verdict: &'static str,
    ) {
        let ctx = RespCtx {
            qname_hash: 0,
            ts_ms,
            server: src,
            client: dst,
            id,
            querytime: 0,
            qname: QName {
                text: Some(""),
                msg: &[],
                lazy: &std::cell::OnceCell::new(),
            },
            qtype: 0,
        };
        for n in c.ns() {
            let (zone, target) = (c.text(n.zone), c.text(n.target));
            let mut any = false;
            for g in c.glue().iter().filter(|g| g.is_glue_of(n, &c.names)) {
                any = true;
                self.decide(&ctx, zone, target, Some(g.addr), verdict);
            }
            if !any {
                self.decide(&ctx, zone, target, None, verdict);
            }
        }
    }

    /// Is `addr` a registered destination at `now_ms`? Exceptions first, then the history
    /// (learned name servers and root hints) with expiry.
    pub fn is_registered(&self, addr: IpAddr, now_ms: u64) -> Option<KnownAs> {
        self.known_as(addr, Some(now_ms))
    }

    /// What the history knows about `addr`, ignoring expiry (the paper's check: "exists in the
    /// glueA column").
    pub fn lookup(&self, addr: IpAddr) -> Option<KnownAs> {
        self.known_as(addr, None)
    }

    fn known_as(&self, addr: IpAddr, now: Option<u64>) -> Option<KnownAs> {
        if let Some(net) = self.cfg.exceptions.iter().find(|n| n.contains(&addr)) {
            return Some(KnownAs {
                kind: "exception",
                zone: ".".into(),
                ns_name: net.to_string(),
                first_seen_ms: 0,
                expires_ms: u64::MAX,
                source: Source::Stored,
            });
        }
        let a = self.by_addr.get(&addr)?;
        if now.is_some_and(|now| a.expires < now) {
            return None;
        }
        // Report the earliest-seen entry valid now, among the first few (an address of a big
        // provider serves many zones; which one is reported does not change the verdict, which
        // `a.expires` already decided). Only if none of those is valid are the rest examined.
        let pick = |list: &'_ [Serve]| {
            let mut best: Option<(Serve, Entry)> = None;
            for s in list {
                let e = &self.slab[s.slot as usize];
                if now.is_some_and(|t| e.expires < t) {
                    continue;
                }
                if best.is_none_or(|(_, b)| {
                    (e.first_seen, u64::MAX - e.expires) < (b.first_seen, u64::MAX - b.expires)
                }) {
                    best = Some((*s, *e));
                }
            }
            best
        };
        let (head, tail) = a.serves.split_at(a.serves.len().min(64));
        let best = pick(head).or_else(|| pick(tail));
        let (s, e) = best?;
        Some(KnownAs {
            kind: if e.source == Source::RootHints {
                "root_hints"
            } else {
                "glue"
            },
            zone: self.names.name(s.zone).to_string(),
            ns_name: self.names.name(s.ns).to_string(),
            first_seen_ms: e.first_seen,
            expires_ms: e.expires,
            source: e.source,
        })
    }

    /// Every history entry: (zone, NS name, address, first_seen, last_seen, count, expires,
    /// ttl, source).
    pub fn entries(&self) -> impl Iterator<Item = HistoryEntry<'_>> + '_ {
        self.entries
            .iter()
            .map(|(k, &i)| (k, &self.slab[i as usize]))
            .map(|(k, e)| HistoryEntry {
                zone: self.names.name(k.0),
                ns_name: self.names.name(k.1),
                addr: k.2,
                first_seen: e.first_seen,
                last_seen: e.last_seen,
                count: e.count,
                expires: e.expires,
                ttl: e.ttl,
                source: e.source,
            })
    }

    /// Unexpired registered addresses with their latest expiry.
    pub fn unexpired(&self, now_ms: u64) -> Vec<(IpAddr, u64)> {
        self.by_addr
            .iter()
            .filter(|(_, a)| a.expires >= now_ms)
            .map(|(ip, a)| (*ip, a.expires))
            .collect()
    }
}

/// A borrowed view of one history entry.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HistoryEntry<'a> {
    pub zone: &'a str,
    pub ns_name: &'a str,
    pub addr: IpAddr,
    pub first_seen: u64,
    pub last_seen: u64,
    pub count: u64,
    pub expires: u64,
    pub ttl: u32,
    pub source: Source,
}

struct RespCtx<'a> {
    /// Hash of the question name (see `name_hash`).
    qname_hash: u64,
    ts_ms: u64,
    server: SocketAddr,
    client: SocketAddr,
    id: u16,
    querytime: u64,
    qname: QName<'a>,
    qtype: u16,
}

/// The question name of a response (as `read_name` writes it): decoded by `collect` when the
/// response needed it, otherwise only once something asks for it (a row is recorded, a
/// glue-less name waits for its lookup, an NS owner is not a pointer into the question).
#[derive(Clone, Copy)]
struct QName<'a> {
    text: Option<&'a str>,
    /// The message, whose first question is decoded when `text` is None.
    msg: &'a [u8],
    lazy: &'a std::cell::OnceCell<NameBuf>,
}

impl<'a> QName<'a> {
    fn get(&self) -> &'a str {
        match self.text {
            Some(t) => t,
            None => self
                .lazy
                .get_or_init(|| {
                    let mut n = NameBuf::default();
                    // Cannot fail for a paired response (see `respond_with`).
                    let _ = wire::read_name(self.msg, wire::HEADER_LEN, &mut n);
                    n
                })
                .as_str(),
        }
    }
}

/// What one response holds, in buffers reused from response to response (their strings keep
/// their capacity, so a steady stream of referrals allocates nothing here).
#[derive(Default)]
struct Collected {
    /// The text of every name below, and of the question.
    names: NameCache,
    /// The question name, once decoded (`collect` decodes it before an answer or additional
    /// record's name, so that the names pointing into it are copied rather than walked; not
    /// for NS records, whose owner usually names the question's ancestor on its own, see
    /// `QName`).
    qname: Option<TextRange>,
    ns: Vec<NsCand>,
    glue: Vec<GlueCand>,
    answers: Vec<GlueCand>,
    cnames: Vec<(TextRange, TextRange)>,
}

impl Collected {
    fn reset(&mut self) {
        self.names.clear();
        self.qname = None;
        self.ns.clear();
        self.glue.clear();
        self.answers.clear();
        self.cnames.clear();
    }
    fn ns(&self) -> &[NsCand] {
        &self.ns
    }
    fn glue(&self) -> &[GlueCand] {
        &self.glue
    }
    /// `first` and the CNAME chain from it in this response (RFC 1034 §4.3.2), without loops
    /// and at most `MAX_CNAME_CHAIN` links: the names, and how many of them there are.
    fn cname_chain<'a>(&'a self, first: &'a str) -> ([&'a str; MAX_CNAME_CHAIN + 1], usize) {
        let mut chain = [""; MAX_CNAME_CHAIN + 1];
        chain[0] = first;
        let mut n = 1;
        while !self.cnames.is_empty() && n <= MAX_CNAME_CHAIN {
            let last = chain[n - 1];
            match self.cnames.iter().find(|(o, _)| self.text(*o) == last) {
                Some((_, t)) if !chain[..n].contains(&self.text(*t)) => {
                    chain[n] = self.text(*t);
                    n += 1;
                }
                _ => break,
            }
        }
        (chain, n)
    }
    /// The A/AAAA answers for `first` or a name of its CNAME chain.
    fn chain_answers<'a>(&'a self, first: &'a str) -> SmallVec<[&'a GlueCand; 4]> {
        let (chain, n) = self.cname_chain(first);
        let chain = &chain[..n];
        self.answers
            .iter()
            .filter(|a| chain.contains(&self.text(a.owner)))
            .collect()
    }
    fn text(&self, r: TextRange) -> &str {
        self.names.text(r)
    }
    fn push_ns(
        &mut self,
        zone: TextRange,
        owner_in_question: bool,
        target: TextRange,
        target_off: usize,
        ttl: u32,
    ) {
        let i = self.ns.len();
        let names = &self.names;
        let same_as = self
            .ns
            .iter()
            .position(|o| names.text(o.target) == names.text(target))
            .unwrap_or(i) as u32;
        self.ns.push(NsCand {
            zone,
            target,
            target_off,
            owner_in_question,
            ttl,
            same_as,
        });
    }
    fn push_addr(&mut self, answer: bool, owner: TextRange, addr: IpAddr, ttl: u32) {
        let v = if answer {
            &mut self.answers
        } else {
            &mut self.glue
        };
        v.push(GlueCand {
            owner,
            ns: NO_NS,
            addr,
            ttl,
        });
    }
    /// Glue whose owner is the target of NS record `j` (same name: neither decoded nor copied).
    fn push_glue_of_ns(&mut self, j: usize, addr: IpAddr, ttl: u32) {
        self.glue.push(GlueCand {
            owner: TextRange::default(),
            ns: self.ns[j].same_as,
            addr,
            ttl,
        });
    }
    /// Decode the question name into `names` if not done yet (errors are left for the caller
    /// to find: the question is read again there).
    fn read_qname(&mut self, m: &Message<'_>) {
        if self.qname.is_none() && m.header.qdcount > 0 {
            self.qname = self
                .names
                .read(m.buf, wire::HEADER_LEN)
                .ok()
                .map(|(r, _)| r);
        }
    }
}

/// Is `target` where a label of the first question's name starts (or its root label), with
/// only uncompressed labels before it? The name a compression pointer to it names (once it
/// decodes) is then the question's name from that label on: the question or one of its
/// ancestors, whatever the case of their letters.
fn points_into_question(m: &Message<'_>, target: usize) -> bool {
    if m.header.qdcount == 0 {
        return false;
    }
    let mut pos = wire::HEADER_LEN;
    // Bounded: each step moves past at least one byte.
    while pos < target {
        match m.buf.get(pos) {
            Some(&len) if len != 0 && len & 0xc0 == 0 => pos += 1 + len as usize,
            _ => return false,
        }
    }
    pos == target
}

/// Walk the records once: NS (answer + authority), A/AAAA in additional, and, if asked, A/AAAA
/// and CNAME in the answer section. On a malformed record, returns what was collected so far as
/// the error. `c` must be reset for this message (it may hold the question name already).
fn collect(msg: &[u8], m: &Message<'_>, want_answers: bool, c: &mut Collected) -> Result<(), ()> {
    // NS records of one RRset share an owner, usually the same compression pointer: decode it
    // once (`owner` still holds it while `last_owner_ptr` matches).
    let mut last_owner_ptr: Option<[u8; 2]> = None;
    let mut owner = TextRange::default();
    let mut owner_in_question = false;
    for r in m.records() {
        let Ok(r) = r else { return Err(()) };
        if r.class != wire::CLASS_IN {
            continue;
        }
        match (r.section, r.rtype) {
            (Section::Answer | Section::Authority, wire::TYPE_NS) => {
                if c.ns.len() >= MAX_NS_PER_RESPONSE {
                    continue;
                }
                // The question is not decoded first (see `QName`): an owner pointing into it
                // (nearly always) walks its few labels, and the targets that point into the
                // owner copy them.
                let ptr = msg
                    .get(r.name_off..r.name_off + 2)
                    .and_then(|p| <[u8; 2]>::try_from(p).ok())
                    .filter(|p| p[0] & 0xc0 == 0xc0);
                if ptr.is_none() || ptr != last_owner_ptr {
                    owner = c.names.read(msg, r.name_off).map_err(|_| ())?.0;
                    owner_in_question = ptr.is_some_and(|p| {
                        let target = (((p[0] & 0x3f) as usize) << 8) | p[1] as usize;
                        points_into_question(m, target)
                    });
                }
                last_owner_ptr = ptr;
                let (target, end) = c.names.read(msg, r.rdata_off).map_err(|_| ())?;
                if end > r.rdata_off + r.rdlen as usize {
                    // The target must end inside the rdata (`Record::target`).
                    return Err(());
                }
                c.push_ns(owner, owner_in_question, target, r.rdata_off, r.ttl);
            }
            (Section::Additional, wire::TYPE_A | wire::TYPE_AAAA)
            | (Section::Answer, wire::TYPE_A | wire::TYPE_AAAA) => {
                let is_answer = r.section == Section::Answer;
                if is_answer && !want_answers {
                    // Still validate rdata so malformed answers are caught consistently.
                    if r.addr(msg).is_err() {
                        return Err(());
                    }
                    continue;
                }
                let list_len = if is_answer {
                    c.answers.len()
                } else {
                    c.glue.len()
                };
                if list_len >= MAX_GLUE_PER_RESPONSE {
                    continue;
                }
                let Ok(Some(addr)) = r.addr(msg) else {
                    return Err(());
                };
                last_owner_ptr = None;
                // Glue owners are normally a bare pointer to an NS record's target (RFC 1035
                // §4.1.4 compression as servers do it): reuse that decoded name. The pointer
                // goes backwards to a name already validated, exactly as read_name would.
                if !is_answer {
                    let ptr = msg
                        .get(r.name_off..r.name_off + 2)
                        .filter(|p| p[0] & 0xc0 == 0xc0)
                        .map(|p| (((p[0] & 0x3f) as usize) << 8) | p[1] as usize);
                    if let Some(j) = ptr.and_then(|t| c.ns().iter().position(|n| n.target_off == t))
                    {
                        c.push_glue_of_ns(j, addr, r.ttl);
                        continue;
                    }
                }
                c.read_qname(m);
                let (name, _) = c.names.read(msg, r.name_off).map_err(|_| ())?;
                c.push_addr(is_answer, name, addr, r.ttl);
            }
            (Section::Answer, wire::TYPE_CNAME) => {
                if c.cnames.len() >= MAX_CNAME_CHAIN * 4 {
                    continue;
                }
                last_owner_ptr = None;
                c.read_qname(m);
                let (name, _) = c.names.read(msg, r.name_off).map_err(|_| ())?;
                let (target, end) = c.names.read(msg, r.rdata_off).map_err(|_| ())?;
                if end > r.rdata_off + r.rdlen as usize {
                    return Err(());
                }
                c.cnames.push((name, target));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
