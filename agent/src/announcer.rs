//! The announcer: turns "these addresses on interfaces matching these patterns" into XDP map
//! entries on the machine's actual links, follows the links as they change, keeps the
//! heartbeat, joins the IPv6 multicast groups and sends the gratuitous announcements. The
//! standalone mode feeds it a fixed set; the Kubernetes mode feeds it what it wins.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::StreamExt;
use regex::Regex;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{
    announce::{self, MulticastGroups, PacketSocket},
    dataplane::{Announcement, AttachMode, Dataplane, XdpModeSetting},
    links::{self, Link},
};

/// Addresses to announce on the interfaces whose names match any of the patterns
/// (unanchored regular expressions, as Cilium's policy `interfaces` field).
#[derive(Clone, Debug)]
pub struct Group {
    pub interfaces: Vec<Regex>,
    pub ips: Vec<IpAddr>,
}

impl Group {
    fn selects(&self, link: &Link) -> bool {
        self.interfaces.iter().any(|r| r.is_match(&link.name))
    }
}

/// How the announcer behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    pub xdp_mode: XdpModeSetting,
    /// Gratuitous ARP / unsolicited NA sent per new announcement.
    pub garp_count: u32,
    /// Time between them.
    pub garp_interval: Duration,
    /// Re-announce everything this often, for switches that age out MAC tables.
    pub garp_refresh: Option<Duration>,
    /// How stale the heartbeat may get before the XDP program stops answering.
    pub liveness_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            xdp_mode: XdpModeSetting::Auto,
            garp_count: 3,
            garp_interval: Duration::from_secs(1),
            garp_refresh: None,
            liveness_timeout: Duration::from_secs(5),
        }
    }
}

/// The heartbeat period; the liveness timeout should be several of these.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the announcer owns, shared with the HTTP server for /status and /metrics.
pub struct Core {
    pub dataplane: Dataplane,
    pub links: BTreeMap<u32, Link>,
    /// Gratuitous frames sent, per interface.
    pub gratuitous_sent: BTreeMap<u32, u64>,
    /// Errors attaching, per interface name (shown in status).
    pub attach_errors: BTreeMap<String, String>,
    /// The first reconcile has completed.
    pub ready: bool,
}

/// The shared core.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Core>>);

impl Shared {
    pub fn new(core: Core) -> Self {
        Self(Arc::new(Mutex::new(core)))
    }

    /// Locks the core. A panic while holding the lock cannot leave it inconsistent in a way
    /// that matters more than stopping, so a poisoned lock is used as it is.
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which addresses go on which links: pure, so it is tested without any I/O.
pub fn desired(groups: &[Group], links: &BTreeMap<u32, Link>) -> BTreeMap<Announcement, [u8; 6]> {
    let mut out = BTreeMap::new();
    for link in links.values().filter(|l| l.announceable()) {
        let Some(mac) = link.mac else { continue };
        for group in groups.iter().filter(|g| g.selects(link)) {
            for ip in &group.ips {
                out.insert(
                    Announcement {
                        ip: *ip,
                        ifindex: link.index,
                    },
                    mac,
                );
            }
        }
    }
    out
}

/// Interface patterns that select no link at all: almost always a typo, so say so.
pub fn unmatched_patterns<'a>(groups: &'a [Group], links: &BTreeMap<u32, Link>) -> Vec<&'a str> {
    groups
        .iter()
        .flat_map(|g| g.interfaces.iter())
        .filter(|r| !links.values().any(|l| r.is_match(&l.name)))
        .map(|r| r.as_str())
        .collect()
}

/// Errors of the announcer.
#[derive(Debug, thiserror::Error)]
pub enum AnnouncerError {
    #[error(transparent)]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error(transparent)]
    Links(#[from] links::LinkError),
    #[error(transparent)]
    Announce(#[from] announce::AnnounceError),
    #[error("multicast socket: {0}")]
    Multicast(#[from] std::io::Error),
}

/// The running announcer.
pub struct Announcer {
    core: Shared,
    settings: Settings,
    groups: Vec<Group>,
    multicast: MulticastGroups,
    socket: Arc<PacketSocket>,
    /// Bumped on every reconcile; a burst stops when the address it announces is gone.
    generation: Arc<Mutex<BTreeSet<Announcement>>>,
}

impl Announcer {
    pub fn new(core: Shared, settings: Settings) -> Result<Self, AnnouncerError> {
        Ok(Self {
            core,
            settings,
            groups: Vec::new(),
            multicast: MulticastGroups::new()?,
            socket: Arc::new(PacketSocket::new()?),
            generation: Arc::default(),
        })
    }

    /// Runs until `shutdown` resolves, then removes every entry, leaves the groups and
    /// detaches: nothing keeps answering after it returns.
    pub async fn run(
        mut self,
        mut groups: watch::Receiver<Vec<Group>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AnnouncerError> {
        let (handle, mut link_events) = links::watch()?;
        self.groups = groups.borrow_and_update().clone();
        let links = links::dump(&handle).await?;
        for p in unmatched_patterns(&self.groups, &links) {
            warn!(pattern = p, "interface pattern matches no interface (yet)");
        }
        self.core.lock().links = links;
        self.reconcile()?;
        self.core.lock().ready = true;

        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        // Links are also re-read now and then, in case an event was lost (netlink can drop).
        let mut relist = tokio::time::interval(Duration::from_secs(30));
        let refresh_period = self.settings.garp_refresh.unwrap_or(Duration::MAX / 4);
        let mut refresh =
            tokio::time::interval_at(tokio::time::Instant::now() + refresh_period, refresh_period);
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = heartbeat.tick() => {
                    // The heartbeat comes from this loop, so a stuck loop goes stale.
                    if let Err(e) = self.core.lock().dataplane.heartbeat() {
                        warn!(error = %e, "heartbeat");
                    }
                }
                Some(()) = link_events.next() => {
                    // Coalesce a burst of link events into one re-read.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while futures::FutureExt::now_or_never(link_events.next()).is_some() {}
                    if let Err(e) = self.relink(&handle).await { break Err(e) }
                }
                _ = relist.tick() => {
                    if let Err(e) = self.relink(&handle).await { break Err(e) }
                }
                changed = groups.changed() => {
                    if changed.is_err() { break Ok(()) }
                    self.groups = groups.borrow_and_update().clone();
                    if let Err(e) = self.reconcile() { break Err(e) }
                }
                _ = refresh.tick(), if self.settings.garp_refresh.is_some() => {
                    let all: Vec<_> = self.core.lock().dataplane.installed().keys().copied().collect();
                    self.burst(all, 1);
                }
            }
        };
        self.stop();
        result
    }

    async fn relink(&mut self, handle: &rtnetlink::Handle) -> Result<(), AnnouncerError> {
        let links = links::dump(handle).await?;
        let changed = {
            let mut core = self.core.lock();
            let changed = core.links != links;
            core.links = links;
            changed
        };
        if changed {
            self.reconcile()?;
        }
        Ok(())
    }

    fn reconcile(&mut self) -> Result<(), AnnouncerError> {
        let mut core = self.core.lock();
        let desired = desired(&self.groups, &core.links);
        let before: BTreeSet<Announcement> = core.dataplane.installed().keys().copied().collect();

        // Attach where needed first: an entry on an interface without the program is useless.
        let wanted: BTreeSet<u32> = desired.keys().map(|a| a.ifindex).collect();
        let mut usable = desired;
        for ifindex in &wanted {
            let name = core
                .links
                .get(ifindex)
                .map(|l| l.name.clone())
                .unwrap_or_default();
            match core.dataplane.attach(*ifindex, self.settings.xdp_mode) {
                Ok(mode) => {
                    if core.attach_errors.remove(&name).is_some()
                        || !before.iter().any(|a| a.ifindex == *ifindex)
                    {
                        info!(interface = %name, mode = mode.as_str(), "XDP attached");
                    }
                }
                Err(e) => {
                    warn!(interface = %name, error = %e, "cannot attach XDP; not announcing there");
                    core.attach_errors.insert(name, e.to_string());
                    usable.retain(|a, _| a.ifindex != *ifindex);
                }
            }
        }
        let added = core.dataplane.apply(&usable)?;
        let attached: Vec<u32> = core.dataplane.attached().keys().copied().collect();
        for ifindex in attached.into_iter().filter(|i| !wanted.contains(i)) {
            core.dataplane.detach(ifindex)?;
            debug!(ifindex, "XDP detached");
        }
        drop(core);

        // Solicited-node groups follow the IPv6 entries.
        let after: BTreeSet<Announcement> = usable.keys().copied().collect();
        for a in before.difference(&after) {
            if let IpAddr::V6(ip) = a.ip {
                self.multicast.leave(ip, a.ifindex);
            }
            info!(ip = %a.ip, ifindex = a.ifindex, "announcement removed");
        }
        for a in after.difference(&before) {
            if let IpAddr::V6(ip) = a.ip
                && let Err(e) = self.multicast.join(ip, a.ifindex)
            {
                warn!(error = %e, "multicast join");
            }
            info!(ip = %a.ip, ifindex = a.ifindex, "announcing");
        }
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) = after;
        self.burst(added, self.settings.garp_count);
        Ok(())
    }

    /// Sends `count` announcements for each address, `garp_interval` apart, in the
    /// background; each burst stops early once its address is no longer announced.
    fn burst(&self, added: Vec<Announcement>, count: u32) {
        if added.is_empty() || count == 0 {
            return;
        }
        let core = self.core.clone();
        let socket = self.socket.clone();
        let current = self.generation.clone();
        let interval = self.settings.garp_interval;
        tokio::spawn(async move {
            for round in 0..count {
                if round > 0 {
                    tokio::time::sleep(interval).await;
                }
                let still: Vec<Announcement> = {
                    let current = current.lock().unwrap_or_else(|p| p.into_inner());
                    added
                        .iter()
                        .filter(|a| current.contains(a))
                        .copied()
                        .collect()
                };
                for a in still {
                    let mac = core.lock().dataplane.installed().get(&a).copied();
                    let Some(mac) = mac else { continue };
                    let sent = announce::announcement(mac, a.ip)
                        .and_then(|frame| socket.send(a.ifindex, &frame));
                    match sent {
                        Ok(()) => *core.lock().gratuitous_sent.entry(a.ifindex).or_default() += 1,
                        Err(e) => warn!(ip = %a.ip, error = %e, "gratuitous announcement"),
                    }
                }
            }
        });
    }

    fn stop(&mut self) {
        self.generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let mut core = self.core.lock();
        for a in core.dataplane.installed().keys() {
            if let IpAddr::V6(ip) = a.ip {
                self.multicast.leave(ip, a.ifindex);
            }
        }
        match core.dataplane.shutdown() {
            Ok(()) => info!("all announcements withdrawn, XDP detached"),
            Err(e) => warn!(error = %e, "shutting the data plane down"),
        }
    }
}

/// A snapshot for `l2announcer status` and /status.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Status {
    pub interfaces: Vec<InterfaceStatus>,
    pub announcements: Vec<AnnouncementStatus>,
    pub liveness_age_seconds: f64,
    pub ready: bool,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub ifindex: u32,
    pub mac: String,
    pub xdp_mode: String,
    pub gratuitous_sent: u64,
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct AnnouncementStatus {
    pub ip: IpAddr,
    pub interface: String,
    pub mac: String,
    pub replies: u64,
    pub conflicts: u64,
    pub conflict_mac: Option<String>,
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Core {
    fn link_name(&self, ifindex: u32) -> String {
        self.links
            .get(&ifindex)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("if{ifindex}"))
    }

    /// The current state, read from the maps.
    pub fn status(&self) -> Result<Status, crate::dataplane::DataplaneError> {
        let counters = self.dataplane.counters()?;
        let interfaces = self
            .dataplane
            .attached()
            .into_iter()
            .map(|(ifindex, mode): (u32, AttachMode)| InterfaceStatus {
                name: self.link_name(ifindex),
                ifindex,
                mac: self
                    .links
                    .get(&ifindex)
                    .and_then(|l| l.mac)
                    .map(|m| format_mac(&m))
                    .unwrap_or_default(),
                xdp_mode: mode.as_str().to_owned(),
                gratuitous_sent: self.gratuitous_sent.get(&ifindex).copied().unwrap_or(0),
                counters: counters
                    .get(&ifindex)
                    .map(|c| c.iter().map(|(k, v)| (k.name().to_owned(), *v)).collect())
                    .unwrap_or_default(),
            })
            .collect();
        let mut announcements = Vec::new();
        for (a, mac) in self.dataplane.installed() {
            let stats = self.dataplane.entry_stats(a)?;
            announcements.push(AnnouncementStatus {
                ip: a.ip,
                interface: self.link_name(a.ifindex),
                mac: format_mac(mac),
                replies: stats.replies,
                conflicts: stats.conflicts,
                conflict_mac: stats.conflict_mac.map(|m| format_mac(&m)),
            });
        }
        Ok(Status {
            interfaces,
            announcements,
            liveness_age_seconds: self.dataplane.liveness_age()?.as_secs_f64(),
            ready: self.ready,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, up: bool) -> Link {
        Link {
            index,
            name: name.into(),
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            up,
            loopback: false,
            has_controller: false,
        }
    }

    fn group(patterns: &[&str], ips: &[&str]) -> Group {
        Group {
            interfaces: patterns.iter().map(|p| Regex::new(p).unwrap()).collect(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn patterns_are_unanchored_and_ored() {
        let links: BTreeMap<u32, Link> = [
            (1, link(1, "eno1", true)),
            (2, link(2, "eno2", true)),
            (3, link(3, "eth0", true)),
        ]
        .into();
        let d = desired(&[group(&["no1", "^eth"], &["192.0.2.1"])], &links);
        let ifs: Vec<u32> = d.keys().map(|a| a.ifindex).collect();
        assert_eq!(ifs, [1, 3]);
        assert_eq!(d.values().next(), Some(&[2, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn down_loopback_ports_and_macless_links_are_skipped() {
        let mut lo = link(1, "lo", true);
        lo.loopback = true;
        let mut port = link(2, "eth1", true);
        port.has_controller = true;
        let mut tun = link(3, "eth2", true);
        tun.mac = None;
        let links: BTreeMap<u32, Link> = [
            (1, lo),
            (2, port),
            (3, tun),
            (4, link(4, "eth3", false)),
            (5, link(5, "eth4", true)),
        ]
        .into();
        let d = desired(&[group(&[""], &["2001:db8::1"])], &links);
        assert_eq!(d.keys().map(|a| a.ifindex).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn groups_union_and_unmatched_patterns_are_reported() {
        let links: BTreeMap<u32, Link> = [(1, link(1, "eno1", true))].into();
        let groups = [
            group(&["eno1"], &["192.0.2.1"]),
            group(&["eno1", "bond9"], &["192.0.2.2"]),
        ];
        assert_eq!(desired(&groups, &links).len(), 2);
        assert_eq!(unmatched_patterns(&groups, &links), ["bond9"]);
    }
}
