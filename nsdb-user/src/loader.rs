//! Loads the embedded XDP program, sizes and fills its maps, attaches it to interfaces.

use std::{
    ffi::CString,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{ProgramError, Xdp, XdpMode},
};
use ipnet::IpNet;
use nsdb_common::{AllowEntry, Config, counter, map, prog};

use crate::counters::Counters;

/// The XDP object, built by build.rs from nsdb-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nsdb"));

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
}

impl Filter {
    /// Loads the program into the kernel (nothing is attached yet).
    pub fn load(sizes: Sizes) -> Result<Self, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(map::ALLOW_V4, sizes.allow_entries)
            .map_max_entries(map::ALLOW_V6, sizes.allow_entries)
            .load(OBJECT)?;
        for name in [prog::NSDB, prog::NOOP] {
            let p: &mut Xdp = ebpf
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
        match net {
            IpNet::V4(n) => self.internal_v4.insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                1,
                0,
            ),
            IpNet::V6(n) => self.internal_v6.insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                1,
                0,
            ),
        }
        .map_err(map_err(map::INTERNAL_V4))?;
        self.cfg.have_internal = 1;
        self.write_config()
    }

    /// Adds an exception prefix: queries to it are `exempt`.
    pub fn add_exempt(&mut self, net: IpNet) -> Result<(), LoadError> {
        match net {
            IpNet::V4(n) => self.exempt_v4.insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                1,
                0,
            ),
            IpNet::V6(n) => self.exempt_v6.insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                1,
                0,
            ),
        }
        .map_err(map_err(map::EXEMPT_V4))?;
        self.cfg.have_exempt = 1;
        self.write_config()
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

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, LoadError> {
        let mut values = vec![0u64; counter::COUNT as usize];
        for (i, v) in values.iter_mut().enumerate() {
            let per_cpu = self
                .counters
                .get(&(i as u32), 0)
                .map_err(map_err(map::COUNTERS))?;
            *v = per_cpu.iter().sum();
        }
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

    fn xdp(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("load() checked that both XDP programs exist")
    }

    /// Attaches to every interface in `ifaces`, or to none: all names are checked first, and a
    /// failure part-way detaches what was attached. Returns the mode used per interface.
    pub fn attach_all(
        &mut self,
        ifaces: &[String],
        mode: AttachMode,
    ) -> Result<Vec<(String, &'static str)>, LoadError> {
        for iface in ifaces {
            if ifindex(iface).is_none() {
                return Err(LoadError::NoSuchInterface(iface.clone()));
            }
        }
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(prog::NSDB)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("load() checked that the XDP program exists");
        let mut done = Vec::new();
        let mut links = Vec::new();
        for iface in ifaces {
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
            match attempt {
                Ok((link, how)) => {
                    links.push(link);
                    done.push((iface.clone(), how));
                }
                Err(source) => {
                    for link in links {
                        let _ = prog.detach(link);
                    }
                    return Err(LoadError::Attach {
                        iface: iface.clone(),
                        source,
                    });
                }
            }
        }
        self.attached = done.iter().map(|(i, _)| i.clone()).collect();
        Ok(done)
    }

    /// Attaches the no-op baseline program (native XDP) to `iface` instead of the filter, to
    /// measure what XDP itself costs there (benchmarks). Detached when the filter is dropped.
    pub fn attach_noop(&mut self, iface: &str) -> Result<(), LoadError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(prog::NOOP)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("load() checked that the no-op program exists");
        prog.attach(iface, XdpMode::Driver)
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
