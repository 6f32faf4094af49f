//! Loads the embedded eBPF programs, sizes and fills their maps, attaches the filter to
//! interfaces: as XDP, or as a TC classifier at ingress (`--attach tc`).

use std::{
    ffi::CString,
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, IterableMap, LpmTrie, Map, MapData, MapError, PerCpuArray, RingBuf,
        lpm_trie::Key,
    },
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{self, NlOptions, SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
        xdp::{XdpLink, XdpLinkId},
    },
};
use ipnet::IpNet;
use nsdb_common::{AllowEntry, Config, FirstBytes, counter, map, prog};

use crate::counters::Counters;

/// The XDP object, built by build.rs from nsdb-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nsdb"));

/// With response batching on, the program wakes the reader once this much of the RESPONSES
/// ring is queued: a quarter, so a reader woken late still has three quarters of room (at
/// 2,120 bytes a record, about 2,000 responses between wake-ups at most).
pub const RESPONSES_WAKE_BYTES: u32 = nsdb_common::DEFAULT_RESPONSES_BYTES / 4;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this nsdb binary was built without its XDP program (AYA_BUILD_SKIP was set)")]
    NoObject,
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("interface {0:?} does not exist")]
    NoSuchInterface(String),
    #[error("attaching to {iface}: {source}")]
    Attach { iface: String, source: ProgramError },
    #[error("pin directory {path}: {msg}")]
    Pin { path: PathBuf, msg: String },
}

/// One BPF map and the kernel memory it holds ([`Filter::map_memory`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MapMemory {
    /// The map's name as the kernel knows it (at most 15 bytes: `ALLOW_V4`, `INFLIGHT`…).
    pub name: String,
    pub max_entries: u32,
    /// Bytes, as `memlock` in the map's fdinfo.
    pub bytes: u64,
}

/// The kernel memory of every BPF map process `pid` holds a descriptor of (each map once,
/// however many descriptors): `memlock` summed over its /proc fdinfo entries that have a
/// `map_id`. `None` if the process's fdinfo cannot be read.
pub fn map_memory_of_process(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let mut seen = std::collections::HashMap::new();
    for e in dir.flatten() {
        let Ok(t) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if let (Some(id), Some(bytes)) = (fdinfo_field(&t, "map_id"), fdinfo_field(&t, "memlock")) {
            seen.insert(id, bytes);
        }
    }
    Some(seen.values().sum())
}

/// A numeric `name:` line of a /proc fdinfo file.
fn fdinfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().parse().ok())?
    })
}

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) XDP, falling back to generic XDP with a warning.
    Auto,
    /// Native XDP only.
    Native,
    /// Generic (skb) XDP.
    Generic,
}

/// Where the filter runs on each interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// XDP, before the kernel builds an skb: the cheapest hook on a physical NIC with native
    /// XDP (see `--xdp-mode`).
    Xdp,
    /// TC ingress (a tcx link, Linux ≥ 6.6; else a clsact qdisc filter): the same program on
    /// the normal skb path. Cheaper than XDP on veth and other virtual interfaces, where
    /// attaching XDP switches the device to a slower receive path.
    Tc,
}

/// Map capacities.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub allow_entries: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            allow_entries: nsdb_common::DEFAULT_ALLOW_ENTRIES,
        }
    }
}

/// Each interface [`Filter::attach_all`] attached, with the mode it got ("native", "tc", …).
pub type AttachedModes = Vec<(String, &'static str)>;

/// Inserts `net` (value 1) into the IPv4 or the IPv6 trie of a pair (internal, exempt).
fn insert_prefix(
    v4: &mut LpmTrie<MapData, [u8; 4], u8>,
    v6: &mut LpmTrie<MapData, [u8; 16], u8>,
    net: IpNet,
) -> Result<(), MapError> {
    match net {
        IpNet::V4(n) => v4.insert(
            &Key::new(u32::from(n.prefix_len()), n.network().octets()),
            1,
            0,
        ),
        IpNet::V6(n) => v6.insert(
            &Key::new(u32::from(n.prefix_len()), n.network().octets()),
            1,
            0,
        ),
    }
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

/// The loaded program and typed handles on its maps.
pub struct Filter {
    ebpf: Ebpf,
    allow_v4: HashMap<MapData, [u8; 4], AllowEntry>,
    allow_v6: HashMap<MapData, [u8; 16], AllowEntry>,
    exempt_v4: LpmTrie<MapData, [u8; 4], u8>,
    exempt_v6: LpmTrie<MapData, [u8; 16], u8>,
    internal_v4: LpmTrie<MapData, [u8; 4], u8>,
    internal_v6: LpmTrie<MapData, [u8; 16], u8>,
    config: Array<MapData, Config>,
    counters: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
    responses: Option<RingBuf<MapData>>,
    pending: HashMap<MapData, u64, u64>,
    cfg: Config,
    /// Interfaces attached to, by name.
    attached: Vec<String>,
    /// Per interface: its index when attached, and how the program is held there.
    links: Vec<Link>,
    mode: AttachMode,
    hook: Hook,
    pins: Option<Pins>,
}

/// How the program is attached to one interface.
struct Link {
    iface: String,
    /// The interface's index when attached (a new index means it was re-created).
    ifindex: u32,
    how: &'static str,
    held: Held,
}

impl Link {
    fn new(iface: &str, ifindex: u32, how: &'static str, held: Held) -> Self {
        Link {
            iface: iface.to_string(),
            ifindex,
            how,
            held,
        }
    }
}

enum Held {
    /// Owned by the program: detached when the filter is dropped (or when the process dies).
    Program(XdpLinkId),
    /// Owned by the TC classifier, likewise.
    Classifier(SchedClassifierLinkId),
    /// Pinned on bpffs: stays attached after the process ends, until the pin is removed.
    Pinned(#[allow(dead_code)] PinnedLink),
    /// Not attached (the interface disappeared).
    Gone,
}

/// The pin directory: where the links and allow maps are pinned with `--on-exit keep`, and
/// where a restarted daemon finds the state of the previous one.
struct Pins {
    dir: PathBuf,
    /// Keep the program attached and the maps pinned when this process ends.
    keep: bool,
    /// An exclusive lock on the directory: one daemon per pin directory.
    _lock: File,
    /// The previous daemon's allow maps, until the takeover is done.
    old: Vec<(&'static str, Map)>,
}

/// What was taken over from a previous daemon's pinned state.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Takeover {
    /// Unexpired allow entries copied from the previous daemon's pinned maps.
    pub entries: u64,
    /// Interfaces whose pinned link now runs this program (replaced atomically: no gap).
    pub links: u64,
}

/// What to do with the program and maps when the daemon ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    /// Detach the program (also when the process is killed: nothing is pinned).
    Detach,
    /// Keep the program attached and its maps pinned: filtering and in-kernel learning go on
    /// without the daemon (even after kill -9); the next daemon takes the state over.
    Keep,
}

impl Drop for Pins {
    fn drop(&mut self) {
        if !self.keep {
            // Empty unless another tool put something there: then it stays.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

fn pin_err(path: &Path, msg: impl std::fmt::Display) -> LoadError {
    LoadError::Pin {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Takes over a previous daemon's pinned link at `path` (an XDP or a tcx link, `L`) by
/// attaching this daemon's program to it with `attach`: the kernel swaps the programs
/// atomically, so filtering has no gap. With `keep` the pin stays (this process holds the link
/// until it exits, the pin after); without it the pin is removed and the link ends with this
/// process. `None` if the pin is not a usable link of that kind: it is removed, and the caller
/// attaches anew.
fn take_over<L, Id, E>(
    path: &Path,
    keep: bool,
    iface: &str,
    kind: &str,
    attach: impl FnOnce(L) -> Result<Id, E>,
) -> Option<Id>
where
    L: TryFrom<FdLink>,
    L::Error: std::fmt::Display,
    E: std::fmt::Display,
{
    let replaced = PinnedLink::from_pin(path)
        .map_err(|e| e.to_string())
        .and_then(|pl| L::try_from(FdLink::from(pl)).map_err(|e| e.to_string()))
        .and_then(|l| attach(l).map_err(|e| e.to_string()));
    match replaced {
        Ok(id) => {
            if !keep {
                let _ = std::fs::remove_file(path);
            }
            tracing::info!(
                iface,
                "took over the pinned {kind} link of the previous daemon (no gap in filtering)"
            );
            Some(id)
        }
        Err(e) => {
            tracing::warn!(iface, error = %e, "cannot take over the pinned link; attaching anew");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// Pins a newly attached link (`--on-exit keep`). `no_link` words the error when the kernel
/// attached without a bpf_link, from the conversion's error.
fn pin_link<L>(
    link: L,
    path: &Path,
    no_link: impl FnOnce(String) -> String,
) -> Result<Held, LoadError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    let fd = FdLink::try_from(link).map_err(|e| pin_err(path, no_link(e.to_string())))?;
    Ok(Held::Pinned(fd.pin(path).map_err(|e| pin_err(path, e))?))
}

/// One of the loaded XDP programs (`load()` checked that they exist).
fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("load() checked that the XDP programs exist")
}

/// One of the loaded TC classifiers (`load()` checked that both exist).
fn tc_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut SchedClassifier {
    ebpf.program_mut(name)
        .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
        .expect("load() checked that both TC programs exist")
}

/// True if `dir` is on a BPF file system (where objects can be pinned).
pub fn on_bpffs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path and a zeroed statfs buffer the call fills.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Adds a prefix's first bytes to the program's filter of its family (the twin of
/// [`insert_prefix`] for the filters in front of the tries).
fn note_first_bytes(v4: &mut FirstBytes, v6: &mut FirstBytes, net: IpNet) {
    match net {
        IpNet::V4(n) => v4.add(n.network().octets()[0], n.prefix_len()),
        IpNet::V6(n) => v6.add(n.network().octets()[0], n.prefix_len()),
    }
}

fn link_pin_path(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link_{iface}"))
}

impl Filter {
    /// Loads the program into the kernel (nothing is attached yet).
    pub fn load(sizes: Sizes) -> Result<Self, LoadError> {
        Self::load_object(OBJECT, sizes)
    }

    /// Loads another build of the program object (an ELF file's bytes, 8-byte aligned), for
    /// comparing two builds side by side (`nsdb-xdp-ab`). It must have been built against
    /// this binary's nsdb-common: the maps' layouts are not checked beyond their sizes.
    pub fn load_object(object: &[u8], sizes: Sizes) -> Result<Self, LoadError> {
        if object.is_empty() {
            return Err(LoadError::NoObject);
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(map::ALLOW_V4, sizes.allow_entries)
            .map_max_entries(map::ALLOW_V6, sizes.allow_entries)
            .load(object)?;
        for name in [prog::NSDB, prog::NOOP, prog::FLOOR] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(LoadError::Missing(name))?
                .try_into()
                .map_err(|source| LoadError::Program { name, source })?;
            p.load()
                .map_err(|source| LoadError::Program { name, source })?;
        }
        for name in [prog::NSDB_TC, prog::NOOP_TC] {
            let p: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(LoadError::Missing(name))?
                .try_into()
                .map_err(|source| LoadError::Program { name, source })?;
            p.load()
                .map_err(|source| LoadError::Program { name, source })?;
        }
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::Missing(name));
        let allow_v4 = HashMap::try_from(take(map::ALLOW_V4)?).map_err(map_err(map::ALLOW_V4))?;
        let allow_v6 = HashMap::try_from(take(map::ALLOW_V6)?).map_err(map_err(map::ALLOW_V6))?;
        let exempt_v4 =
            LpmTrie::try_from(take(map::EXEMPT_V4)?).map_err(map_err(map::EXEMPT_V4))?;
        let exempt_v6 =
            LpmTrie::try_from(take(map::EXEMPT_V6)?).map_err(map_err(map::EXEMPT_V6))?;
        let internal_v4 =
            LpmTrie::try_from(take(map::INTERNAL_V4)?).map_err(map_err(map::INTERNAL_V4))?;
        let internal_v6 =
            LpmTrie::try_from(take(map::INTERNAL_V6)?).map_err(map_err(map::INTERNAL_V6))?;
        let config = Array::try_from(take(map::CONFIG)?).map_err(map_err(map::CONFIG))?;
        let counters =
            PerCpuArray::try_from(take(map::COUNTERS)?).map_err(map_err(map::COUNTERS))?;
        let events = RingBuf::try_from(take(map::EVENTS)?).map_err(map_err(map::EVENTS))?;
        let responses =
            RingBuf::try_from(take(map::RESPONSES)?).map_err(map_err(map::RESPONSES))?;
        let pending =
            HashMap::try_from(take(map::PENDING_NS)?).map_err(map_err(map::PENDING_NS))?;
        let mut filter = Self {
            ebpf,
            allow_v4,
            allow_v6,
            exempt_v4,
            exempt_v6,
            internal_v4,
            internal_v6,
            config,
            counters,
            events: Some(events),
            responses: Some(responses),
            pending,
            cfg: Config::new(),
            attached: Vec::new(),
            links: Vec::new(),
            mode: AttachMode::Auto,
            hook: Hook::Xdp,
            pins: None,
        };
        // A secret seed for the outstanding-query table's hash.
        let mut seed = [0u8; 8];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read as _;
            let _ = f.read_exact(&mut seed);
        }
        filter.cfg.inflight_seed = u64::from_ne_bytes(seed) | 1;
        filter.write_config()?;
        Ok(filter)
    }

    fn write_config(&mut self) -> Result<(), LoadError> {
        self.config
            .set(0, self.cfg, 0)
            .map_err(map_err(map::CONFIG))
    }

    /// Sets the mode (`nsdb_common::mode`).
    pub fn set_mode(&mut self, mode: u32) -> Result<(), LoadError> {
        self.cfg.mode = mode;
        self.write_config()
    }

    /// Event rate limit per source address: `burst` events at once, then one per
    /// `1/per_second` s. `per_second == 0` disables the limit.
    pub fn set_event_rate(&mut self, per_second: u32, burst: u32) -> Result<(), LoadError> {
        let interval = if per_second == 0 {
            0
        } else {
            1_000_000_000 / u64::from(per_second)
        };
        self.cfg.event_interval_ns = interval;
        self.cfg.event_tolerance_ns = interval.saturating_mul(u64::from(burst.max(1) - 1));
        self.write_config()
    }

    /// Adds an internal prefix: queries to it are not checked.
    pub fn add_internal(&mut self, net: IpNet) -> Result<(), LoadError> {
        insert_prefix(&mut self.internal_v4, &mut self.internal_v6, net)
            .map_err(map_err(map::INTERNAL_V4))?;
        note_first_bytes(
            &mut self.cfg.internal_v4_first,
            &mut self.cfg.internal_v6_first,
            net,
        );
        self.write_config()
    }

    /// Adds an exception prefix: queries to it are `exempt`.
    pub fn add_exempt(&mut self, net: IpNet) -> Result<(), LoadError> {
        insert_prefix(&mut self.exempt_v4, &mut self.exempt_v6, net)
            .map_err(map_err(map::EXEMPT_V4))?;
        note_first_bytes(
            &mut self.cfg.exempt_v4_first,
            &mut self.cfg.exempt_v6_first,
            net,
        );
        self.write_config()
    }

    /// Removes an exception prefix added by [`Filter::add_exempt`]; true if it was there.
    pub fn remove_exempt(&mut self, net: IpNet) -> bool {
        match net {
            IpNet::V4(n) => self
                .exempt_v4
                .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                .is_ok(),
            IpNet::V6(n) => self
                .exempt_v6
                .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                .is_ok(),
        }
    }

    /// Allows `addr` as a name server until `expires_ns` (CLOCK_MONOTONIC_COARSE, see
    /// [`crate::clock::mono_ns`]; `u64::MAX`: forever).
    pub fn allow(&mut self, addr: IpAddr, expires_ns: u64, kind: u8) -> Result<(), LoadError> {
        let e = AllowEntry::new(expires_ns, kind);
        match addr {
            IpAddr::V4(a) => self
                .allow_v4
                .insert(a.octets(), e, 0)
                .map_err(map_err(map::ALLOW_V4)),
            IpAddr::V6(a) => self
                .allow_v6
                .insert(a.octets(), e, 0)
                .map_err(map_err(map::ALLOW_V6)),
        }
    }

    /// The allow entry for `addr`, if any (expired or not).
    pub fn allowed(&self, addr: IpAddr) -> Option<AllowEntry> {
        match addr {
            IpAddr::V4(a) => self.allow_v4.get(&a.octets(), 0).ok(),
            IpAddr::V6(a) => self.allow_v6.get(&a.octets(), 0).ok(),
        }
    }

    /// Removes `addr` from the allow maps; true if it was there.
    pub fn disallow(&mut self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.allow_v4.remove(&a.octets()).is_ok(),
            IpAddr::V6(a) => self.allow_v6.remove(&a.octets()).is_ok(),
        }
    }

    /// Number of entries in the allow maps (IPv4, IPv6).
    pub fn allow_len(&self) -> (usize, usize) {
        (self.allow_v4.keys().count(), self.allow_v6.keys().count())
    }

    /// Every map the XDP program uses, with the kernel memory it holds as the kernel accounts
    /// it: `memlock` in the fdinfo of a descriptor of the map, which since Linux 6.4 is the
    /// map's own count of its memory (elements, buckets, per-CPU copies, ring pages). The
    /// allow maps are LRU hashes with their elements allocated up front, so their figure is
    /// the same empty or full: what `--allow-entries` costs.
    pub fn map_memory(&self) -> Result<Vec<MapMemory>, LoadError> {
        let prog_err = |source| LoadError::Program {
            name: prog::NSDB,
            source,
        };
        let ids = self
            .program()
            .info()
            .map_err(prog_err)?
            .map_ids()
            .map_err(prog_err)?
            .unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let info = aya::maps::MapInfo::from_id(id).map_err(map_err("map by id"))?;
            let fd = info.fd().map_err(map_err("map by id"))?;
            let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
            let bytes = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| fdinfo_field(&t, "memlock"))
                .unwrap_or(0);
            out.push(MapMemory {
                name: info.name_as_str().unwrap_or("?").to_string(),
                max_entries: info.max_entries(),
                bytes,
            });
        }
        out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// One counter ([`nsdb_common::counter`]), summed over CPUs.
    pub fn counter(&self, i: u32) -> Result<u64, LoadError> {
        let per_cpu = self.counters.get(&i, 0).map_err(map_err(map::COUNTERS))?;
        Ok(per_cpu.iter().sum())
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, LoadError> {
        let values = (0..counter::COUNT)
            .map(|i| self.counter(i))
            .collect::<Result<Vec<u64>, _>>()?;
        Ok(Counters::from_raw(values))
    }

    /// Turns in-kernel learning of referral glue on or off, with the TTL clamp, grace and
    /// glue-less window the program applies (the same as the learning engine's).
    pub fn set_learning(
        &mut self,
        on: bool,
        min_ttl_s: u32,
        max_ttl_s: u32,
        grace_ns: u64,
        glueless_window_ns: u64,
    ) -> Result<(), LoadError> {
        self.cfg.learn = u32::from(on);
        self.cfg.pending_window_ns = glueless_window_ns;
        self.cfg.min_ttl_s = min_ttl_s;
        self.cfg.max_ttl_s = max_ttl_s.max(min_ttl_s);
        self.cfg.grace_ns = grace_ns;
        self.write_config()
    }

    /// Wake-up batching of paired responses ([`nsdb_common::Config::resp_wake_bytes`]): on,
    /// the program also forces a wake-up for a response it could not learn from whole and
    /// once a quarter of the RESPONSES ring is queued (the reader, woken by the first record
    /// into an empty ring, then waits before it reads); off, only the ring buffer's own rule
    /// applies (a record into an empty ring wakes the reader).
    pub fn set_response_batching(&mut self, on: bool) -> Result<(), LoadError> {
        self.cfg.resp_wake_bytes = if on { RESPONSES_WAKE_BYTES } else { 0 };
        self.write_config()
    }

    /// Marks an NS name (wire format) as expected until `expires_ns` (CLOCK_MONOTONIC_COARSE):
    /// the program learns the addresses in the answer to its lookup. (The program marks the NS
    /// names of trusted responses itself; this is for tests and operators.)
    pub fn add_pending(&mut self, wire_name: &[u8], expires_ns: u64) -> Result<(), LoadError> {
        self.pending
            .insert(nsdb_common::name_hash(wire_name), expires_ns, 0)
            .map_err(map_err(map::PENDING_NS))
    }

    /// Removes expired pending names. Returns how many remain.
    pub fn sweep_pending(&mut self, now_ns: u64) -> Result<usize, LoadError> {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter_map(|r| r.ok())
            .filter(|(_, exp)| *exp <= now_ns)
            .map(|(k, _)| k)
            .collect();
        for k in expired {
            let _ = self.pending.remove(&k);
        }
        Ok(self.pending.keys().count())
    }

    /// Every allow entry (IPv4 and IPv6) with its value.
    pub fn allow_entries(&self) -> Vec<(IpAddr, AllowEntry)> {
        let mut out: Vec<(IpAddr, AllowEntry)> = self
            .allow_v4
            .iter()
            .filter_map(|r| r.ok())
            .map(|(k, v)| (IpAddr::V4(Ipv4Addr::from(k)), v))
            .collect();
        out.extend(
            self.allow_v6
                .iter()
                .filter_map(|r| r.ok())
                .map(|(k, v)| (IpAddr::V6(Ipv6Addr::from(k)), v)),
        );
        out
    }

    /// Takes the paired-response ring buffer (once) for the live learner.
    pub fn take_responses(&mut self) -> Option<RingBuf<MapData>> {
        self.responses.take()
    }

    /// Takes the event ring buffer (once) for the event reader.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// The filter program, e.g. for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> &Xdp {
        self.xdp(prog::NSDB)
    }

    /// The no-op baseline program.
    pub fn noop_program(&self) -> &Xdp {
        self.xdp(prog::NOOP)
    }

    /// The benchmark reference: one allow-map lookup of a UDP port-53 packet's IPv4
    /// destination and nothing else (`nsdb_common::prog::FLOOR`).
    pub fn floor_program(&self) -> &Xdp {
        self.xdp(prog::FLOOR)
    }

    /// The filter as a TC classifier (the same code), e.g. for BPF_PROG_TEST_RUN.
    pub fn tc_program(&self) -> &SchedClassifier {
        self.sched_cls(prog::NSDB_TC)
    }

    /// The no-op TC baseline.
    pub fn noop_tc_program(&self) -> &SchedClassifier {
        self.sched_cls(prog::NOOP_TC)
    }

    fn sched_cls(&self, name: &str) -> &SchedClassifier {
        self.ebpf
            .program(name)
            .and_then(|p| <&SchedClassifier>::try_from(p).ok())
            .expect("load() checked that both TC programs exist")
    }

    fn xdp(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("load() checked that the XDP programs exist")
    }

    /// Uses `dir` (on a bpffs) as the pin directory: locks it (one daemon per directory),
    /// and copies the unexpired learned entries of a previous daemon's pinned allow maps into
    /// this program's maps. Call before [`Filter::attach_all`], which takes over the previous
    /// daemon's pinned links. With `keep`, this daemon's links and maps are pinned there too.
    pub fn use_pin_dir(&mut self, dir: &Path, keep: bool) -> Result<Takeover, LoadError> {
        // The nearest existing ancestor tells the file system (nothing is created elsewhere).
        let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(dir);
        if !on_bpffs(existing) {
            return Err(pin_err(
                dir,
                "not on a BPF file system (mount one: mount -t bpf bpf /sys/fs/bpf)",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| pin_err(dir, e))?;
        let lock = File::open(dir).map_err(|e| pin_err(dir, e))?;
        {
            use std::os::fd::AsRawFd as _;
            // SAFETY: a valid open file descriptor.
            let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                return Err(pin_err(
                    dir,
                    "in use by another nsdb daemon (each daemon needs its own --pin-dir)",
                ));
            }
        }
        let mut old = Vec::new();
        for name in [map::ALLOW_V4, map::ALLOW_V6] {
            let path = dir.join(name);
            if path.exists() {
                match MapData::from_pin(&path) {
                    Ok(m) => old.push((name, Map::LruHashMap(m))),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable pinned map")
                    }
                }
            }
        }
        self.pins = Some(Pins {
            dir: dir.to_path_buf(),
            keep,
            _lock: lock,
            old,
        });
        Ok(Takeover {
            entries: self.inherit(),
            links: 0,
        })
    }

    /// Copies the previous daemon's unexpired learned entries (roots and exceptions are this
    /// daemon's own) into the maps. Entries already present are left as they are.
    fn inherit(&mut self) -> u64 {
        let Some(pins) = &self.pins else { return 0 };
        let now = crate::clock::mono_ns();
        let mut copied = 0;
        for (name, data) in &pins.old {
            let found: Vec<(IpAddr, AllowEntry)> = if *name == map::ALLOW_V4 {
                match HashMap::<&MapData, [u8; 4], AllowEntry>::try_from(data) {
                    Ok(m) => m
                        .iter()
                        .filter_map(|r| r.ok())
                        .map(|(k, v)| (IpAddr::V4(Ipv4Addr::from(k)), v))
                        .collect(),
                    Err(_) => Vec::new(),
                }
            } else {
                match HashMap::<&MapData, [u8; 16], AllowEntry>::try_from(data) {
                    Ok(m) => m
                        .iter()
                        .filter_map(|r| r.ok())
                        .map(|(k, v)| (IpAddr::V6(Ipv6Addr::from(k)), v))
                        .collect(),
                    Err(_) => Vec::new(),
                }
            };
            for (addr, e) in found {
                if e.kind == nsdb_common::kind::ROOT || e.expires_ns <= now {
                    continue;
                }
                let present = match addr {
                    IpAddr::V4(a) => self.allow_v4.get(&a.octets(), 0).is_ok(),
                    IpAddr::V6(a) => self.allow_v6.get(&a.octets(), 0).is_ok(),
                };
                if !present {
                    let ok = match addr {
                        IpAddr::V4(a) => self.allow_v4.insert(a.octets(), e, 0).is_ok(),
                        IpAddr::V6(a) => self.allow_v6.insert(a.octets(), e, 0).is_ok(),
                    };
                    copied += u64::from(ok);
                }
            }
        }
        copied
    }

    /// Attaches to every interface in `ifaces`, or to none: all names are checked first, and a
    /// failure part-way detaches what was attached. Where the pin directory holds a previous
    /// daemon's link for an interface, the link is given this program atomically (no moment
    /// without a filter) instead. `hook` chooses XDP (with `mode`) or TC ingress. Returns the
    /// mode used per interface, and what was taken over.
    pub fn attach_all(
        &mut self,
        ifaces: &[String],
        mode: AttachMode,
        hook: Hook,
    ) -> Result<(AttachedModes, Takeover), LoadError> {
        let mut indexes = Vec::new();
        for iface in ifaces {
            match ifindex(iface) {
                Some(i) => indexes.push(i),
                None => return Err(LoadError::NoSuchInterface(iface.clone())),
            }
        }
        self.mode = mode;
        self.hook = hook;
        let mut takeover = Takeover::default();
        let mut done = Vec::new();
        for (iface, idx) in ifaces.iter().zip(indexes) {
            match self.attach_one(iface, idx, true) {
                Ok((link, took)) => {
                    takeover.links += u64::from(took);
                    done.push((iface.clone(), link.how));
                    self.links.push(link);
                }
                Err(e) => {
                    self.detach_all();
                    return Err(e);
                }
            }
        }
        // Entries the previous program learned between the first copy and the switch.
        takeover.entries += self.inherit();
        self.finish_takeover()?;
        self.attached = done.iter().map(|(i, _)| i.clone()).collect();
        Ok((done, takeover))
    }

    /// Drops the previous daemon's maps and pins this daemon's (with `keep`).
    fn finish_takeover(&mut self) -> Result<(), LoadError> {
        let Some(pins) = &mut self.pins else {
            return Ok(());
        };
        for (name, _) in pins.old.drain(..) {
            let _ = std::fs::remove_file(pins.dir.join(name));
        }
        if pins.keep {
            for (name, data) in [
                (map::ALLOW_V4, self.allow_v4.map()),
                (map::ALLOW_V6, self.allow_v6.map()),
            ] {
                let path = pins.dir.join(name);
                data.pin(&path).map_err(|e| pin_err(&path, e))?;
            }
        }
        Ok(())
    }

    /// Attaches to one interface (taking over a pinned link if `takeover` and there is one).
    /// Returns the link and whether it was taken over.
    fn attach_one(
        &mut self,
        iface: &str,
        ifindex: u32,
        takeover: bool,
    ) -> Result<(Link, bool), LoadError> {
        if self.hook == Hook::Tc {
            return self.attach_one_tc(iface, ifindex, takeover);
        }
        let mode = self.mode;
        let pin_path = self.pins.as_ref().map(|p| link_pin_path(&p.dir, iface));
        let keep = self.pins.as_ref().is_some_and(|p| p.keep);
        let prog: &mut Xdp = xdp_mut(&mut self.ebpf, prog::NSDB);
        let attach_err = |source| LoadError::Attach {
            iface: iface.to_string(),
            source,
        };
        // A previous daemon's pinned link: replace its program atomically.
        if let Some(path) = pin_path.as_ref().filter(|p| takeover && p.exists())
            && let Some(id) = take_over(path, keep, iface, "XDP", |l: XdpLink| {
                prog.attach_to_link(l)
            })
        {
            return Ok((
                Link::new(iface, ifindex, "taken over", Held::Program(id)),
                true,
            ));
        }
        let attempt = match mode {
            AttachMode::Generic => prog.attach(iface, XdpMode::Skb).map(|l| (l, "generic")),
            AttachMode::Native => prog.attach(iface, XdpMode::Driver).map(|l| (l, "native")),
            AttachMode::Auto => match prog.attach(iface, XdpMode::Driver) {
                Ok(l) => Ok((l, "native")),
                Err(e) => {
                    tracing::warn!(iface = %iface, error = %e, "native XDP unavailable, falling back to generic mode");
                    prog.attach(iface, XdpMode::Skb).map(|l| (l, "generic"))
                }
            },
        };
        let (id, how) = attempt.map_err(attach_err)?;
        let held = match pin_path.filter(|_| keep) {
            Some(path) => pin_link(prog.take_link(id).map_err(attach_err)?, &path, |e| {
                format!(
                    "the kernel attached without a BPF link ({e}); --on-exit keep needs Linux ≥ 5.9"
                )
            })?,
            None => Held::Program(id),
        };
        Ok((Link::new(iface, ifindex, how, held), false))
    }

    /// [`Filter::attach_one`] at TC ingress: a tcx link (pinnable and replaceable like an XDP
    /// link), else a filter on a clsact qdisc (kernels before 6.6; not with `--on-exit keep`).
    fn attach_one_tc(
        &mut self,
        iface: &str,
        ifindex: u32,
        takeover: bool,
    ) -> Result<(Link, bool), LoadError> {
        let pin_path = self.pins.as_ref().map(|p| link_pin_path(&p.dir, iface));
        let keep = self.pins.as_ref().is_some_and(|p| p.keep);
        let prog = tc_mut(&mut self.ebpf, prog::NSDB_TC);
        let attach_err = |source| LoadError::Attach {
            iface: iface.to_string(),
            source,
        };
        // A previous daemon's pinned tcx link: replace its program atomically. (A pinned XDP
        // link of a daemon that ran with --attach xdp is not a tcx link: it is removed and
        // the classifier attached anew.)
        if let Some(path) = pin_path.as_ref().filter(|p| takeover && p.exists())
            && let Some(id) = take_over(path, keep, iface, "tcx", |l: SchedClassifierLink| {
                prog.attach_to_link(l)
            })
        {
            return Ok((
                Link::new(iface, ifindex, "taken over", Held::Classifier(id)),
                true,
            ));
        }
        let (id, how) = match prog.attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        ) {
            Ok(id) => (id, "tcx"),
            // A clsact filter is no bpf_link: it cannot be pinned to outlive the daemon.
            Err(e) if keep => {
                return Err(LoadError::Attach {
                    iface: format!(
                        "{iface} (--on-exit keep with --attach tc needs tcx links, Linux ≥ 6.6)"
                    ),
                    source: e,
                });
            }
            Err(e) => {
                tracing::warn!(iface, error = %e, "tcx links unavailable, using a clsact qdisc");
                match tc::qdisc_add_clsact(iface) {
                    Ok(()) | Err(tc::TcError::AlreadyAttached) => {}
                    Err(e) => return Err(attach_err(e.into())),
                }
                let id = prog
                    .attach_with_options(
                        iface,
                        TcAttachType::Ingress,
                        TcAttachOptions::Netlink(NlOptions::default()),
                    )
                    .map_err(attach_err)?;
                (id, "clsact")
            }
        };
        let held = match pin_path.filter(|_| keep) {
            Some(path) => pin_link(prog.take_link(id).map_err(attach_err)?, &path, |e| {
                format!("not a tcx link ({e}); --on-exit keep with --attach tc needs Linux ≥ 6.6")
            })?,
            None => Held::Classifier(id),
        };
        Ok((Link::new(iface, ifindex, how, held), false))
    }

    fn detach_all(&mut self) {
        for i in 0..self.links.len() {
            self.release_link(i);
        }
        self.links.clear();
    }

    /// Checks that every interface is still there with the index it had: an interface that
    /// disappeared is reported once; one that came back (a new index) gets the program
    /// attached again. Returns the names re-attached.
    pub fn check_interfaces(&mut self) -> Vec<String> {
        let mut reattached = Vec::new();
        for i in 0..self.links.len() {
            let (iface, old) = (self.links[i].iface.clone(), self.links[i].ifindex);
            let now = ifindex(&iface);
            if now == Some(old) && !matches!(self.links[i].held, Held::Gone) {
                continue;
            }
            match now {
                None => {
                    if !matches!(self.links[i].held, Held::Gone) {
                        tracing::warn!(iface = %iface, "interface disappeared: not filtering there; the program is attached again when it returns");
                        self.release_link(i);
                    }
                }
                Some(idx) => {
                    if !matches!(self.links[i].held, Held::Gone) {
                        self.release_link(i);
                    }
                    match self.attach_one(&iface, idx, false) {
                        Ok((link, _)) => {
                            tracing::info!(iface = %iface, hook = link.how, "interface is back: attached again");
                            self.links[i] = link;
                            reattached.push(iface);
                        }
                        Err(e) => {
                            tracing::error!(iface = %iface, error = %e, "attaching to the returned interface failed; retrying");
                        }
                    }
                }
            }
        }
        reattached
    }

    fn release_link(&mut self, i: usize) {
        let held = std::mem::replace(&mut self.links[i].held, Held::Gone);
        match held {
            Held::Program(id) => {
                let _ = xdp_mut(&mut self.ebpf, prog::NSDB).detach(id);
            }
            Held::Classifier(id) => {
                let _ = tc_mut(&mut self.ebpf, prog::NSDB_TC).detach(id);
            }
            Held::Pinned(p) => {
                let _ = p.unpin();
            }
            Held::Gone => {}
        }
    }

    /// Interfaces where the program is attached now.
    pub fn attached_now(&self) -> usize {
        self.links
            .iter()
            .filter(|l| !matches!(l.held, Held::Gone))
            .count()
    }

    /// Attaches the no-op baseline program (native XDP) to `iface` instead of the filter, to
    /// measure what XDP itself costs there (benchmarks). Detached when the filter is dropped.
    pub fn attach_noop(&mut self, iface: &str) -> Result<(), LoadError> {
        let prog: &mut Xdp = xdp_mut(&mut self.ebpf, prog::NOOP);
        prog.attach(iface, XdpMode::Driver)
            .map_err(|source| LoadError::Attach {
                iface: iface.to_string(),
                source,
            })?;
        Ok(())
    }

    /// Attaches the no-op TC classifier at `iface`'s ingress (tcx) instead of the filter, to
    /// measure what the TC hook itself costs there (benchmarks). Detached when the filter is
    /// dropped.
    pub fn attach_noop_tc(&mut self, iface: &str) -> Result<(), LoadError> {
        tc_mut(&mut self.ebpf, prog::NOOP_TC)
            .attach(iface, TcAttachType::Ingress)
            .map_err(|source| LoadError::Attach {
                iface: iface.to_string(),
                source,
            })?;
        Ok(())
    }

    /// Names of the interfaces attached to.
    pub fn attached(&self) -> &[String] {
        &self.attached
    }
}

/// The index of interface `name`, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The name of interface `index`, if it exists.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// Address bytes of an event (IPv4 in the first four) as an `IpAddr`.
pub fn event_addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == nsdb_common::family::V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::fdinfo_field;

    #[test]
    fn fdinfo_fields_are_read_by_exact_name() {
        // The shape of /proc/<pid>/fdinfo/<fd> of a BPF map (Linux 6.x).
        let t = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2087\nmap_type:\t9\n\
                 key_size:\t4\nvalue_size:\t16\nmax_entries:\t1048576\nmap_flags:\t0x0\n\
                 map_extra:\t0x0\nmemlock:\t92275584\nmap_id:\t812\nfrozen:\t0\n";
        assert_eq!(fdinfo_field(t, "memlock"), Some(92_275_584));
        assert_eq!(fdinfo_field(t, "max_entries"), Some(1_048_576));
        assert_eq!(fdinfo_field(t, "map_flags"), None, "not a decimal number");
        assert_eq!(fdinfo_field(t, "mem"), None, "no prefix match");
        assert_eq!(fdinfo_field("", "memlock"), None);
    }
}
