//! The XDP program and its maps: load, attach per interface, make the announcement maps match
//! a desired set (a diff, never a rewrite), keep the heartbeat, read the counters.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, MapError, PerCpuHashMap, PerCpuValues},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
    util::nr_cpus,
};
use l2announcer_common::{
    Counter, Counters, Entry, KeyV4, KeyV6, LIVENESS_HEARTBEAT, LIVENESS_MAX_AGE, MAP_ANNOUNCE_V4,
    MAP_ANNOUNCE_V6, MAP_COUNTERS, MAP_LIVENESS, PROG_FLOOR, PROG_PASS, PROG_RESPONDER,
};
use serde::Serialize;

/// The compiled XDP object, built by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/l2announcer"));

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the XDP object: {0} (root, or CAP_BPF and CAP_NET_ADMIN, is needed)")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map or program {0} missing from the XDP object")]
    Missing(&'static str),
    #[error("counting CPUs: {0}")]
    Cpus(String),
    #[error("attaching XDP to interface {ifindex}: {source}")]
    Attach {
        ifindex: u32,
        #[source]
        source: ProgramError,
    },
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// The XDP mode the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Native (driver) mode where the driver supports it, generic otherwise.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// The mode a program was attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    /// The name used in metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// One announced address on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Announcement {
    pub ip: IpAddr,
    pub ifindex: u32,
}

/// What the program has counted for one announcement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EntryStats {
    pub replies: u64,
    pub conflicts: u64,
    /// The MAC of the last other host that claimed the address, if any did.
    pub conflict_mac: Option<[u8; 6]>,
}

struct Attachment {
    link: XdpLinkId,
    mode: AttachMode,
}

/// The loaded program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    v4: PerCpuHashMap<MapData, KeyV4, Entry>,
    v6: PerCpuHashMap<MapData, KeyV6, Entry>,
    counters: PerCpuHashMap<MapData, u32, Counters>,
    liveness: Array<MapData, u64>,
    cpus: usize,
    attached: HashMap<u32, Attachment>,
    /// What the announcement maps hold, with the MAC each entry answers with.
    installed: BTreeMap<Announcement, [u8; 6]>,
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

impl Dataplane {
    /// Loads the program; nothing is attached and nothing answered yet. Past `max_age`
    /// without a [`Dataplane::heartbeat`], the program stops answering.
    pub fn load(max_age: Duration) -> Result<Self, DataplaneError> {
        let mut ebpf = EbpfLoader::new().load(OBJECT)?;
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(DataplaneError::Missing(name))
        };
        let v4 = PerCpuHashMap::try_from(take(&mut ebpf, MAP_ANNOUNCE_V4)?)
            .map_err(map_err(MAP_ANNOUNCE_V4))?;
        let v6 = PerCpuHashMap::try_from(take(&mut ebpf, MAP_ANNOUNCE_V6)?)
            .map_err(map_err(MAP_ANNOUNCE_V6))?;
        let counters = PerCpuHashMap::try_from(take(&mut ebpf, MAP_COUNTERS)?)
            .map_err(map_err(MAP_COUNTERS))?;
        let mut liveness: Array<MapData, u64> =
            Array::try_from(take(&mut ebpf, MAP_LIVENESS)?).map_err(map_err(MAP_LIVENESS))?;
        liveness
            .set(LIVENESS_MAX_AGE, max_age.as_nanos() as u64, 0)
            .map_err(map_err(MAP_LIVENESS))?;
        for name in [PROG_RESPONDER, PROG_PASS] {
            program(&mut ebpf, name)?.load()?;
        }
        let cpus = nr_cpus().map_err(|(what, e)| DataplaneError::Cpus(format!("{what}: {e}")))?;
        Ok(Self {
            ebpf,
            v4,
            v6,
            counters,
            liveness,
            cpus,
            attached: HashMap::new(),
            installed: BTreeMap::new(),
        })
    }

    /// Tells the program user space is alive.
    pub fn heartbeat(&mut self) -> Result<(), DataplaneError> {
        self.set_heartbeat(monotonic_ns())
    }

    /// Writes the heartbeat; zero stops all answers at once.
    pub fn set_heartbeat(&mut self, ns: u64) -> Result<(), DataplaneError> {
        self.liveness
            .set(LIVENESS_HEARTBEAT, ns, 0)
            .map_err(map_err(MAP_LIVENESS))
    }

    /// The heartbeat's age as the program sees it.
    pub fn liveness_age(&self) -> Result<Duration, DataplaneError> {
        let beat = self
            .liveness
            .get(&LIVENESS_HEARTBEAT, 0)
            .map_err(map_err(MAP_LIVENESS))?;
        Ok(Duration::from_nanos(monotonic_ns().saturating_sub(beat)))
    }

    /// Attaches the responder to an interface, in `setting`'s mode. Idempotent.
    pub fn attach(
        &mut self,
        ifindex: u32,
        setting: XdpModeSetting,
    ) -> Result<AttachMode, DataplaneError> {
        if let Some(a) = self.attached.get(&ifindex) {
            return Ok(a.mode);
        }
        let tries: &[(XdpMode, AttachMode)] = match setting {
            XdpModeSetting::Auto => &[
                (XdpMode::Driver, AttachMode::Native),
                (XdpMode::Skb, AttachMode::Generic),
            ],
            XdpModeSetting::Native => &[(XdpMode::Driver, AttachMode::Native)],
            XdpModeSetting::Generic => &[(XdpMode::Skb, AttachMode::Generic)],
        };
        let prog = program(&mut self.ebpf, PROG_RESPONDER)?;
        let mut last = None;
        for &(xdp_mode, mode) in tries {
            match prog.attach_to_if_index(ifindex, xdp_mode) {
                Ok(link) => {
                    self.counters
                        .insert(ifindex, self.zeroed(Counters::default())?, 0)
                        .map_err(map_err(MAP_COUNTERS))?;
                    self.attached.insert(ifindex, Attachment { link, mode });
                    return Ok(mode);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(DataplaneError::Attach {
            ifindex,
            source: last.unwrap_or(ProgramError::NotLoaded),
        })
    }

    /// Attaches the pass-everything program (for the peer of a veth in a lab). The link lives
    /// as long as this `Dataplane`.
    pub fn attach_pass(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), DataplaneError> {
        self.attach_other(PROG_PASS, ifindex, mode)
    }

    /// Attaches the benchmark floor ([`PROG_FLOOR`]) to an otherwise unused interface, so that
    /// the kernel's XDP dispatcher calls it directly, as it calls the attached responder:
    /// unattached, every `BPF_PROG_RUN` rebuilds the dispatcher for it and the timed run
    /// starts cold.
    pub fn attach_floor(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), DataplaneError> {
        self.attach_other(PROG_FLOOR, ifindex, mode)
    }

    fn attach_other(
        &mut self,
        name: &'static str,
        ifindex: u32,
        mode: XdpMode,
    ) -> Result<(), DataplaneError> {
        let prog = program(&mut self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load()?;
        }
        prog.attach_to_if_index(ifindex, mode)
            .map_err(|source| DataplaneError::Attach { ifindex, source })?;
        Ok(())
    }

    /// Detaches from an interface (gone, or no longer selected).
    pub fn detach(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        if let Some(a) = self.attached.remove(&ifindex) {
            // A vanished interface takes its link with it; detaching then fails harmlessly.
            let _ = program(&mut self.ebpf, PROG_RESPONDER)?.detach(a.link);
            let _ = self.counters.remove(&ifindex);
        }
        Ok(())
    }

    /// Interfaces the responder is attached to, with their mode.
    pub fn attached(&self) -> BTreeMap<u32, AttachMode> {
        self.attached.iter().map(|(i, a)| (*i, a.mode)).collect()
    }

    fn zeroed<V: aya::Pod>(&self, v: V) -> Result<PerCpuValues<V>, DataplaneError> {
        PerCpuValues::try_from(vec![v; self.cpus]).map_err(|e| DataplaneError::Cpus(e.to_string()))
    }

    /// Makes the maps hold exactly `desired`, touching only what differs, and returns what was
    /// added (new addresses, or a MAC change), for gratuitous announcements. Removals go first,
    /// so an address that moves interface is never answered twice.
    pub fn apply(
        &mut self,
        desired: &BTreeMap<Announcement, [u8; 6]>,
    ) -> Result<Vec<Announcement>, DataplaneError> {
        let gone: Vec<Announcement> = self
            .installed
            .keys()
            .filter(|a| !desired.contains_key(a))
            .copied()
            .collect();
        for a in gone {
            let removed = match a.ip {
                IpAddr::V4(ip) => self.v4.remove(&KeyV4 {
                    ip: ip.octets(),
                    ifindex: a.ifindex,
                }),
                IpAddr::V6(ip) => self.v6.remove(&KeyV6 {
                    ip: ip.octets(),
                    ifindex: a.ifindex,
                }),
            };
            match removed {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("announce")(e)),
            }
            self.installed.remove(&a);
        }
        let mut added = Vec::new();
        for (a, mac) in desired {
            if self.installed.get(a) == Some(mac) {
                continue;
            }
            // A MAC change keeps the counters: rewrite each CPU's copy.
            let values = match self.stats_raw(a)? {
                Some(mut per_cpu) => {
                    for e in per_cpu.iter_mut() {
                        e.mac = *mac;
                    }
                    PerCpuValues::try_from(per_cpu)
                        .map_err(|e| DataplaneError::Cpus(e.to_string()))?
                }
                None => self.zeroed(Entry::new(*mac))?,
            };
            match a.ip {
                IpAddr::V4(ip) => self.v4.insert(
                    KeyV4 {
                        ip: ip.octets(),
                        ifindex: a.ifindex,
                    },
                    values,
                    0,
                ),
                IpAddr::V6(ip) => self.v6.insert(
                    KeyV6 {
                        ip: ip.octets(),
                        ifindex: a.ifindex,
                    },
                    values,
                    0,
                ),
            }
            .map_err(map_err("announce"))?;
            self.installed.insert(*a, *mac);
            added.push(*a);
        }
        Ok(added)
    }

    /// What the maps hold.
    pub fn installed(&self) -> &BTreeMap<Announcement, [u8; 6]> {
        &self.installed
    }

    fn stats_raw(&self, a: &Announcement) -> Result<Option<Vec<Entry>>, DataplaneError> {
        let got = match a.ip {
            IpAddr::V4(ip) => self.v4.get(
                &KeyV4 {
                    ip: ip.octets(),
                    ifindex: a.ifindex,
                },
                0,
            ),
            IpAddr::V6(ip) => self.v6.get(
                &KeyV6 {
                    ip: ip.octets(),
                    ifindex: a.ifindex,
                },
                0,
            ),
        };
        match got {
            Ok(v) => Ok(Some(v.iter().copied().collect())),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("announce")(e)),
        }
    }

    /// The counters of one announcement, summed over CPUs.
    pub fn entry_stats(&self, a: &Announcement) -> Result<EntryStats, DataplaneError> {
        let mut stats = EntryStats::default();
        for e in self.stats_raw(a)?.unwrap_or_default() {
            stats.replies += e.replies;
            stats.conflicts += e.conflicts;
            if e.conflicts > 0 {
                stats.conflict_mac = Some(e.conflict_mac);
            }
        }
        Ok(stats)
    }

    /// The program's counters per interface, summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<u32, BTreeMap<Counter, u64>>, DataplaneError> {
        let mut out = BTreeMap::new();
        for ifindex in self.attached.keys() {
            let per_cpu = match self.counters.get(ifindex, 0) {
                Ok(v) => v,
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err(MAP_COUNTERS)(e)),
            };
            let mut sums = BTreeMap::new();
            for c in Counter::ALL {
                sums.insert(*c, per_cpu.iter().map(|v| v.0[*c as usize]).sum());
            }
            out.insert(*ifindex, sums);
        }
        Ok(out)
    }

    /// Runs the responder on one frame as if it had arrived on `ifindex` (`BPF_PROG_RUN`),
    /// without any interface: returns the XDP action and the frame as the program left it.
    pub fn test_run(&self, ifindex: u32, frame: &[u8]) -> Result<(u32, Vec<u8>), DataplaneError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_RESPONDER)
            .ok_or(DataplaneError::Missing(PROG_RESPONDER))?
            .try_into()?;
        let (result, out) = run_once(prog, ifindex, frame)?;
        Ok((result.return_value, out))
    }

    /// Runs one of the object's programs ([`PROG_RESPONDER`], [`PROG_PASS`], [`PROG_FLOOR`];
    /// loaded on first use) once on `frame` with `BPF_PROG_RUN`: the verdict and the run time
    /// as the kernel timed it (the program alone, without the syscall). For `cargo xtask bench`.
    pub fn timed_run(
        &mut self,
        name: &'static str,
        ifindex: u32,
        frame: &[u8],
    ) -> Result<(u32, Duration), DataplaneError> {
        let prog = program(&mut self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load()?;
        }
        let (result, _) = run_once(prog, ifindex, frame)?;
        Ok((result.return_value, result.duration))
    }

    /// Stops everything: no entry, no heartbeat, no attachment.
    pub fn shutdown(&mut self) -> Result<(), DataplaneError> {
        self.set_heartbeat(0)?;
        self.apply(&BTreeMap::new())?;
        let ifindexes: Vec<u32> = self.attached.keys().copied().collect();
        for i in ifindexes {
            self.detach(i)?;
        }
        Ok(())
    }
}

/// Runs `prog` once on `frame` arriving on `ifindex` (BPF_PROG_RUN): the kernel's result and
/// the frame as the program left it.
fn run_once(
    prog: &Xdp,
    ifindex: u32,
    frame: &[u8],
) -> Result<(aya::programs::TestRunResult, Vec<u8>), DataplaneError> {
    let ctx = xdp_md(ifindex, frame);
    let mut out = vec![0u8; frame.len() + 256];
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        ..TestRunOptions::default()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok((result, out))
}

/// `struct xdp_md` for BPF_PROG_RUN: data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index, egress_ifindex. The kernel takes the ingress interface from it, and that
/// interface must exist.
fn xdp_md(ifindex: u32, frame: &[u8]) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DataplaneError> {
    Ok(ebpf
        .program_mut(name)
        .ok_or(DataplaneError::Missing(name))?
        .try_into()?)
}
