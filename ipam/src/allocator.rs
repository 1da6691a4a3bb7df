//! The allocator: a state machine fed by pool and service events, producing the status each
//! Service and each pool should have.
//!
//! Use: feed events with [`Allocator::apply`], then call [`Allocator::reconcile`] and write
//! what it returns. At start-up, apply the whole initial list of pools and services first and
//! reconcile once: the addresses already in the services' status are then re-adopted before
//! anything new is handed out, so a restart or a failover moves nothing, and the result does
//! not depend on the order of the initial events.
//!
//! How a reconcile works, over the services changed since the last one plus the unsatisfied
//! ones that may gain from what changed (an address freed, their sharing group or an address
//! they request changed hands), in order of (creation time, namespace, name), repeated while
//! a pass frees addresses or changes sharing groups that waiting services may use:
//! 1. revalidate the addresses each holds (release those no longer valid: family or requested
//!    addresses changed, no longer selected by the pool, sharing no longer compatible, pool
//!    deleted; an address left outside every block by a pool edit is kept and reported);
//! 2. adopt addresses found in the service's status (the restart state) when still valid;
//! 3. satisfy specific requests (`loadBalancerIP`, `lbipam.cilium.io/ips`);
//! 4. satisfy generic requests per family: join the sharing group, or take the lowest free
//!    address of the first matching enabled pool (pools by creation time, blocks in order).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::addr::{Block, Family, FreeSet, IpRange};
use crate::model::{Condition, Config, Pool, Service, ServiceKey};
use l2announcer_api::ip_pool as api;

/// Pool condition this allocator adds to Cilium's: addresses in use that a pool edit left
/// outside the pool's blocks (kept, not renumbered).
pub const POOL_CONDITION_OUTSIDE_BLOCKS: &str = "l2announcer.io/AddressesOutsideBlocks";
/// Pool condition this allocator adds to Cilium's: blocks that cannot be parsed.
pub const POOL_CONDITION_INVALID_BLOCKS: &str = "l2announcer.io/InvalidBlocks";

/// Reasons of `cilium.io/IPAMRequestSatisfied`, as Cilium writes them.
pub mod reason {
    pub const SATISFIED: &str = "satisfied";
    pub const NO_POOL: &str = "no_pool";
    pub const POOL_SELECTOR_MISMATCH: &str = "pool_selector_mismatch";
    pub const ALREADY_ALLOCATED: &str = "already_allocated";
    pub const ALREADY_ALLOCATED_INCOMPATIBLE: &str = "already_allocated_incompatible_service";
    pub const OUT_OF_IPS: &str = "out_of_ips";
}

/// An input change.
// Events are built and consumed one at a time; boxing the large variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    PoolUpserted(Pool),
    PoolDeleted(String),
    ServiceUpserted(Service),
    ServiceDeleted(ServiceKey),
}

/// A status write the caller should make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceUpdate {
    /// Set `status.loadBalancer.ingress` to exactly these addresses and set this condition.
    Set {
        key: ServiceKey,
        ingress_ips: Vec<IpAddr>,
        condition: Condition,
    },
    /// The service left our responsibility: remove its ingress addresses and our condition.
    Clear { key: ServiceKey },
}

/// Conditions a pool should carry (the types listed replace any existing ones of that type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUpdate {
    pub name: String,
    pub conditions: Vec<Condition>,
}

/// What one reconcile decided: only what differs from the objects as last observed or
/// last decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    pub services: Vec<ServiceUpdate>,
    pub pools: Vec<PoolUpdate>,
}

/// Address counts of a pool, as in Cilium's conditions (reserved addresses count as used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolCounts {
    pub total: u128,
    pub available: u128,
    pub used: u128,
}

/// Numbers for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub conflicting_pools: usize,
    pub services_matching: usize,
    pub services_unsatisfied: usize,
    pub pools: BTreeMap<String, PoolCounts>,
}

#[derive(Clone, Debug)]
pub(crate) struct RangeState {
    block: Block,
    reserved: Vec<IpAddr>,
    pub(crate) free: FreeSet,
}

#[derive(Clone, Debug)]
pub(crate) struct PoolState {
    pub(crate) pool: Pool,
    pub(crate) ranges: Vec<RangeState>,
    conflict: Option<String>,
    /// Conditions last returned for this pool since its last observed version.
    emitted: Option<Vec<Condition>>,
}

impl PoolState {
    fn enabled(&self) -> bool {
        !self.pool.disabled && self.conflict.is_none()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.block.range.contains(ip))
    }
}

/// Why the last attempt to satisfy a service failed.
#[derive(Clone, Debug)]
enum Failure {
    Fixed(&'static str, String),
    /// A requested address held by incompatible sharers: the message names the reason found
    /// among the holders at decision time (holders may join later in the same reconcile).
    Incompatible(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Desired {
    ips: Vec<IpAddr>,
    condition: Condition,
}

#[derive(Clone, Debug)]
struct ServiceState {
    /// Shared so the phases can read it while mutating the allocator.
    svc: Arc<Service>,
    /// `svc.selectable_labels()`, computed once per version.
    labels: Arc<BTreeMap<String, String>>,
    ips: Vec<IpAddr>,
    /// The pool each held address belongs to for this service (sharers may differ); none
    /// for an address adopted from the status while outside every pool.
    origins: BTreeMap<IpAddr, String>,
    /// Sharing key the held addresses are indexed under.
    indexed_key: String,
    failure: Option<Failure>,
    desired: Option<Desired>,
    /// `desired` was returned as an update since the service's last observed version.
    emitted: bool,
}

/// Where an address belongs for a given service.
enum Home {
    Pool(String),
    /// Inside no block of any pool.
    Outside,
    /// Inside blocks only of pools that do not select the service.
    Mismatch,
}

/// The LB-IPAM state machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct Allocator {
    config: Config,
    pub(crate) pools: BTreeMap<String, PoolState>,
    /// Pool names by (creation time, name): allocation and conflict order.
    pool_order: Vec<String>,
    services: BTreeMap<ServiceKey, ServiceState>,
    /// Holders of each address in use, sorted, without duplicates.
    ips: BTreeMap<IpAddr, Vec<ServiceKey>>,
    sharing: BTreeMap<String, BTreeSet<IpAddr>>,
    dirty: BTreeSet<ServiceKey>,
    all_dirty: bool,
    unsatisfied: BTreeSet<ServiceKey>,
    cleared: BTreeSet<ServiceKey>,
    /// Addresses in use that lie outside the blocks of the pool they came from.
    pub(crate) outside: BTreeSet<IpAddr>,
    /// An address was freed since the last reconcile.
    freed: bool,
    /// Sharing keys (old and new) of services changed or deleted since the last reconcile.
    touched_keys: BTreeSet<String>,
    /// Addresses whose holders changed since the last reconcile.
    touched_ips: BTreeSet<IpAddr>,
    /// Services by (non-empty) sharing key.
    by_sharing_key: BTreeMap<String, BTreeSet<ServiceKey>>,
    /// Services by address they request.
    by_requested_ip: BTreeMap<IpAddr, BTreeSet<ServiceKey>>,
}

impl Allocator {
    pub fn new(config: Config) -> Allocator {
        Allocator {
            config,
            pools: BTreeMap::new(),
            pool_order: Vec::new(),
            services: BTreeMap::new(),
            ips: BTreeMap::new(),
            sharing: BTreeMap::new(),
            dirty: BTreeSet::new(),
            all_dirty: false,
            unsatisfied: BTreeSet::new(),
            cleared: BTreeSet::new(),
            outside: BTreeSet::new(),
            freed: false,
            touched_keys: BTreeSet::new(),
            touched_ips: BTreeSet::new(),
            by_sharing_key: BTreeMap::new(),
            by_requested_ip: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Records an input change; nothing is allocated until [`Allocator::reconcile`].
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::PoolUpserted(pool) => self.upsert_pool(pool),
            Event::PoolDeleted(name) => self.delete_pool(&name),
            Event::ServiceUpserted(svc) => self.upsert_service(svc),
            Event::ServiceDeleted(key) => self.delete_service(&key),
        }
    }

    fn upsert_pool(&mut self, pool: Pool) {
        if let Some(existing) = self.pools.get_mut(&pool.name) {
            let mut old = existing.pool.clone();
            old.conditions = pool.conditions.clone();
            if old == pool {
                // Only the status changed (often our own write coming back).
                existing.pool = pool;
                existing.emitted = None;
                return;
            }
        }
        let ranges = pool
            .blocks
            .iter()
            .map(|block| {
                let reserved = if pool.allow_first_last {
                    Vec::new()
                } else {
                    block.reserved_when_first_last_disallowed()
                };
                let mut free = FreeSet::new(block.range);
                for ip in &reserved {
                    free.take(*ip);
                }
                for ip in self
                    .ips
                    .range(block.range.first()..=block.range.last())
                    .map(|(ip, _)| *ip)
                {
                    free.take(ip);
                }
                RangeState {
                    block: *block,
                    reserved,
                    free,
                }
            })
            .collect();
        let name = pool.name.clone();
        self.pools.insert(
            name,
            PoolState {
                pool,
                ranges,
                conflict: None,
                emitted: None,
            },
        );
        self.pools_changed();
    }

    fn delete_pool(&mut self, name: &str) {
        if self.pools.remove(name).is_some() {
            self.pools_changed();
        }
    }

    fn pools_changed(&mut self) {
        let mut order: Vec<(i64, String)> = self
            .pools
            .values()
            .map(|p| (p.pool.created, p.pool.name.clone()))
            .collect();
        order.sort();
        self.pool_order = order.into_iter().map(|(_, n)| n).collect();
        self.settle_conflicts();
        self.all_dirty = true;
    }

    /// The newer of two overlapping pools (by creation time, then name) conflicts, unless
    /// the older one conflicts itself; a pool whose own blocks overlap conflicts too.
    fn settle_conflicts(&mut self) {
        let mut settled: Vec<(String, Option<String>)> = Vec::new();
        for name in &self.pool_order {
            let p = &self.pools[name];
            let mut conflict = None;
            'internal: for (i, a) in p.ranges.iter().enumerate() {
                for b in &p.ranges[i + 1..] {
                    if a.block.range.overlaps(&b.block.range) {
                        conflict = Some(conflict_message(&a.block.range, &b.block.range, name));
                        break 'internal;
                    }
                }
            }
            if conflict.is_none() {
                'outer: for (older, older_conflict) in &settled {
                    if older_conflict.is_some() {
                        continue;
                    }
                    for a in &p.ranges {
                        for b in &self.pools[older].ranges {
                            if a.block.range.overlaps(&b.block.range) {
                                conflict =
                                    Some(conflict_message(&a.block.range, &b.block.range, older));
                                break 'outer;
                            }
                        }
                    }
                }
            }
            settled.push((name.clone(), conflict));
        }
        for (name, conflict) in settled {
            if let Some(p) = self.pools.get_mut(&name) {
                p.conflict = conflict;
            }
        }
    }

    fn upsert_service(&mut self, svc: Service) {
        let key = svc.key.clone();
        if !svc.is_responsible(&self.config) {
            if self.services.contains_key(&key) {
                self.forget_service(&key);
                self.cleared.insert(key);
            }
            return;
        }
        self.cleared.remove(&key);
        let old_key = match self.services.get(&key) {
            Some(st) if sharing_view(&st.svc) == sharing_view(&svc) => None,
            Some(st) => Some(st.svc.sharing_key.clone()),
            None => Some(String::new()),
        };
        if let Some(old_key) = old_key {
            self.touched_keys.extend(
                [old_key, svc.sharing_key.clone()]
                    .into_iter()
                    .filter(|k| !k.is_empty()),
            );
        }
        self.unindex(&key);
        self.index(&svc);
        match self.services.get_mut(&key) {
            Some(st) => {
                st.labels = Arc::new(svc.selectable_labels());
                st.svc = Arc::new(svc);
                st.emitted = false;
            }
            None => {
                let st = ServiceState {
                    labels: Arc::new(svc.selectable_labels()),
                    svc: Arc::new(svc),
                    ips: Vec::new(),
                    origins: BTreeMap::new(),
                    indexed_key: String::new(),
                    failure: None,
                    desired: None,
                    emitted: false,
                };
                self.services.insert(key.clone(), st);
            }
        }
        self.dirty.insert(key);
    }

    fn delete_service(&mut self, key: &ServiceKey) {
        self.cleared.remove(key);
        self.forget_service(key);
    }

    fn forget_service(&mut self, key: &ServiceKey) {
        if let Some(st) = self.services.get(key)
            && !st.svc.sharing_key.is_empty()
        {
            self.touched_keys.insert(st.svc.sharing_key.clone());
        }
        let ips = self
            .services
            .get(key)
            .map(|st| st.ips.clone())
            .unwrap_or_default();
        for ip in ips {
            self.release(key, ip);
        }
        self.unindex(key);
        self.services.remove(key);
        self.dirty.remove(key);
        self.unsatisfied.remove(key);
    }

    fn index(&mut self, svc: &Service) {
        if !svc.sharing_key.is_empty() {
            self.by_sharing_key
                .entry(svc.sharing_key.clone())
                .or_default()
                .insert(svc.key.clone());
        }
        for ip in &svc.requested_ips {
            self.by_requested_ip
                .entry(*ip)
                .or_default()
                .insert(svc.key.clone());
        }
    }

    /// Removes the indexed entries of the tracked version of a service.
    fn unindex(&mut self, key: &ServiceKey) {
        let Some(st) = self.services.get(key) else {
            return;
        };
        let svc = Arc::clone(&st.svc);
        if let Some(set) = self.by_sharing_key.get_mut(&svc.sharing_key) {
            set.remove(key);
            if set.is_empty() {
                self.by_sharing_key.remove(&svc.sharing_key);
            }
        }
        for ip in &svc.requested_ips {
            if let Some(set) = self.by_requested_ip.get_mut(ip) {
                set.remove(key);
                if set.is_empty() {
                    self.by_requested_ip.remove(ip);
                }
            }
        }
    }

    /// Allocates, releases and adopts addresses for every service that needs it, and returns
    /// the status writes to make.
    pub fn reconcile(&mut self) -> Decisions {
        // Unsatisfied services are worth another try only when addresses were freed, pools
        // changed, or a service of their sharing group changed.
        let freed = std::mem::take(&mut self.freed);
        let touched_keys = std::mem::take(&mut self.touched_keys);
        let touched_ips = std::mem::take(&mut self.touched_ips);
        let first: Vec<&ServiceState> = if self.all_dirty {
            self.services.values().collect()
        } else {
            let unsatisfied = self
                .may_gain(freed, &touched_keys, &touched_ips, self.unsatisfied.iter())
                .filter(|st| self.unsatisfied.contains(&st.svc.key));
            self.dirty
                .iter()
                .filter_map(|k| self.services.get(k))
                .chain(unsatisfied)
                .collect()
        };
        let mut work = in_order(first);
        let changed = std::mem::take(&mut self.dirty);
        let everything = std::mem::take(&mut self.all_dirty);

        let mut processed: BTreeSet<ServiceKey> = BTreeSet::new();
        // Each further pass needs an address freed or a sharing group changed by the one
        // before, and only adds addresses; the bound is a safety net.
        for _ in 0..MAX_PASSES {
            if work.is_empty() {
                break;
            }
            self.run_phases(&work, &changed);
            processed.extend(work.iter().cloned());
            // Addresses freed, or sharing groups changed, in this pass may satisfy (or change
            // the reason of) services still waiting, including ones this pass already saw.
            let freed = std::mem::take(&mut self.freed);
            let touched_keys = std::mem::take(&mut self.touched_keys);
            let touched_ips = std::mem::take(&mut self.touched_ips);
            if !freed && touched_keys.is_empty() && touched_ips.is_empty() {
                break;
            }
            let waiting = self
                .may_gain(
                    freed,
                    &touched_keys,
                    &touched_ips,
                    self.unsatisfied.iter().chain(processed.iter()),
                )
                .filter(|st| !self.is_satisfied(st))
                .collect();
            work = in_order(waiting);
        }
        let all_work = in_order(
            processed
                .iter()
                .filter_map(|k| self.services.get(k))
                .collect(),
        );
        // Releases in this reconcile were all seen by the passes above.
        self.freed = false;
        self.touched_keys.clear();
        self.touched_ips.clear();

        if everything {
            let all: Vec<IpAddr> = self.ips.keys().copied().collect();
            self.outside = all.into_iter().filter(|ip| self.is_outside(*ip)).collect();
        } else {
            for key in &all_work {
                for ip in self
                    .services
                    .get(key)
                    .map(|st| st.ips.clone())
                    .unwrap_or_default()
                {
                    if self.is_outside(ip) {
                        self.outside.insert(ip);
                    } else {
                        self.outside.remove(&ip);
                    }
                }
            }
        }

        let mut decisions = Decisions::default();
        for key in &all_work {
            if let Some(update) = self.decide_service(key) {
                decisions.services.push(update);
            }
        }
        for key in std::mem::take(&mut self.cleared) {
            decisions.services.push(ServiceUpdate::Clear { key });
        }
        decisions.pools = self.decide_pools();
        decisions
    }

    /// Services that may gain something from the changes seen: all of `waiting` when an
    /// address was freed, else those of a changed sharing group or requesting an address
    /// whose holders changed (found through the indexes, not by scanning `waiting`).
    fn may_gain<'a>(
        &'a self,
        freed: bool,
        keys: &BTreeSet<String>,
        ips: &BTreeSet<IpAddr>,
        waiting: impl Iterator<Item = &'a ServiceKey>,
    ) -> impl Iterator<Item = &'a ServiceState> {
        let found: BTreeSet<&ServiceKey> = if freed {
            waiting.collect()
        } else {
            let by_key = keys.iter().filter_map(|k| self.by_sharing_key.get(k));
            let by_ip = ips.iter().filter_map(|ip| self.by_requested_ip.get(ip));
            by_key.chain(by_ip).flatten().collect()
        };
        found.into_iter().filter_map(|k| self.services.get(k))
    }

    /// The four phases over `work` (in order): revalidate, adopt, specific, generic.
    fn run_phases(&mut self, work: &[ServiceKey], changed: &BTreeSet<ServiceKey>) {
        for key in work {
            self.revalidate(key, changed);
        }
        for key in work {
            self.adopt(key);
        }
        for key in work {
            if let Some(st) = self.services.get_mut(key) {
                st.failure = None;
            }
        }
        for key in work {
            if self
                .services
                .get(key)
                .is_some_and(|st| !st.svc.requested_ips.is_empty())
            {
                self.satisfy_specific(key);
            }
        }
        for key in work {
            if self
                .services
                .get(key)
                .is_some_and(|st| st.svc.requested_ips.is_empty())
            {
                self.satisfy_generic(key);
            }
        }
    }

    // ---- addresses ------------------------------------------------------------------

    fn ranges_containing(&mut self, ip: IpAddr) -> impl Iterator<Item = &mut RangeState> {
        self.pools
            .values_mut()
            .flat_map(|p| p.ranges.iter_mut())
            .filter(move |r| r.block.range.contains(ip))
    }

    fn assign(&mut self, key: &ServiceKey, ip: IpAddr, pool: Option<String>) {
        self.touched_ips.insert(ip);
        match self.ips.get_mut(&ip) {
            Some(h) => {
                if let Err(at) = h.binary_search(key) {
                    h.insert(at, key.clone());
                }
            }
            None => {
                self.ips.insert(ip, vec![key.clone()]);
                for r in self.ranges_containing(ip) {
                    r.free.take(ip);
                }
            }
        }
        if let Some(st) = self.services.get_mut(key) {
            st.ips.push(ip);
            st.ips.sort();
            if let Some(pool) = pool {
                st.origins.insert(ip, pool);
            }
            if !st.indexed_key.is_empty() {
                self.sharing
                    .entry(st.indexed_key.clone())
                    .or_default()
                    .insert(ip);
                self.touched_keys.insert(st.indexed_key.clone());
            }
        }
    }

    fn release(&mut self, key: &ServiceKey, ip: IpAddr) {
        self.touched_ips.insert(ip);
        let mut indexed_key = String::new();
        if let Some(st) = self.services.get_mut(key) {
            st.ips.retain(|a| *a != ip);
            st.origins.remove(&ip);
            indexed_key = st.indexed_key.clone();
        }
        let Some(h) = self.ips.get_mut(&ip) else {
            return;
        };
        h.retain(|k| k != key);
        if !indexed_key.is_empty() {
            self.touched_keys.insert(indexed_key.clone());
        }
        if !h.is_empty() {
            // The holder that left may have been the one whose pool no longer contains it.
            if !self.is_outside(ip) {
                self.outside.remove(&ip);
            }
            return;
        }
        self.ips.remove(&ip);
        self.outside.remove(&ip);
        self.freed = true;
        if let Some(set) = self.sharing.get_mut(&indexed_key) {
            set.remove(&ip);
            if set.is_empty() {
                self.sharing.remove(&indexed_key);
            }
        }
        for r in self.ranges_containing(ip) {
            if !r.reserved.contains(&ip) {
                r.free.give_back(ip);
            }
        }
    }

    /// The pool an address belongs to for this service: the current one if it still
    /// contains the address and selects the service, else the first (oldest) such pool.
    fn home(&self, labels: &BTreeMap<String, String>, ip: IpAddr, current: Option<&str>) -> Home {
        let mut contained = false;
        let mut first = None;
        for name in &self.pool_order {
            let p = &self.pools[name];
            if !p.contains(ip) {
                continue;
            }
            contained = true;
            if p.pool.selects(labels) {
                if current == Some(name.as_str()) {
                    return Home::Pool(name.clone());
                }
                first.get_or_insert_with(|| name.clone());
            }
        }
        match (first, contained) {
            (Some(name), _) => Home::Pool(name),
            (None, true) => Home::Mismatch,
            (None, false) => Home::Outside,
        }
    }

    fn incompatible_holder(&self, svc: &Service, ip: IpAddr) -> Option<&'static str> {
        let h = self.ips.get(&ip)?;
        h.iter()
            .filter(|k| **k != svc.key)
            .filter_map(|k| self.services.get(k))
            .find_map(|other| svc.sharing_incompatibility(&other.svc))
    }

    // ---- phases ---------------------------------------------------------------------

    /// Whether a sharer `other`, incompatible with `svc`, keeps the address over it: a
    /// service that did not change since the last reconcile keeps it over one that did, and
    /// otherwise the older one (creation time, then key) keeps it.
    fn outranks(&self, other: &Service, svc: &Service, changed: &BTreeSet<ServiceKey>) -> bool {
        let rank = |s: &Service| (changed.contains(&s.key), s.created, s.key.clone());
        rank(other) < rank(svc)
    }

    fn revalidate(&mut self, key: &ServiceKey, changed: &BTreeSet<ServiceKey>) {
        let Some(st) = self.services.get(key) else {
            return;
        };
        let svc = &st.svc;
        let labels = &st.labels;
        let families = svc.requested_families(&self.config);
        let mut release = Vec::new();
        let mut rehome = Vec::new();
        for &ip in &st.ips {
            let wanted = if svc.requested_ips.is_empty() {
                families.wants(Family::of(ip))
            } else {
                svc.requested_ips.contains(&ip)
            };
            let origin = st.origins.get(&ip).cloned();
            let keep = wanted
                && match self.home(labels, ip, origin.as_deref()) {
                    Home::Pool(p) => {
                        if origin.as_deref() != Some(p.as_str()) {
                            rehome.push((ip, p));
                        }
                        true
                    }
                    // Only pools that do not select the service contain it: released, unless
                    // an edit of its own pool left it there (shrunk: kept and reported).
                    Home::Mismatch => origin
                        .as_ref()
                        .and_then(|p| self.pools.get(p))
                        .is_some_and(|p| !p.contains(ip)),
                    // Left outside every block by a pool edit: kept unless its pool is gone.
                    Home::Outside => origin.is_none_or(|p| self.pools.contains_key(&p)),
                }
                && !self.ips.get(&ip).is_some_and(|h| {
                    h.iter()
                        .filter(|k| **k != svc.key)
                        .filter_map(|k| self.services.get(k))
                        .any(|other| {
                            svc.sharing_incompatibility(&other.svc).is_some()
                                && self.outranks(&other.svc, svc, changed)
                        })
                });
            if !keep {
                release.push(ip);
            }
        }
        let new_key = svc.sharing_key.clone();
        for ip in release {
            self.release(key, ip);
        }
        if let Some(st) = self.services.get_mut(key) {
            st.origins.extend(rehome);
        }
        if let Some(st) = self.services.get_mut(key)
            && st.indexed_key != new_key
        {
            let old = std::mem::replace(&mut st.indexed_key, new_key.clone());
            for ip in st.ips.clone() {
                if let Some(set) = self.sharing.get_mut(&old) {
                    set.remove(&ip);
                    if set.is_empty() {
                        self.sharing.remove(&old);
                    }
                }
                if !new_key.is_empty() {
                    self.sharing.entry(new_key.clone()).or_default().insert(ip);
                }
            }
        }
    }

    /// Adopts addresses from the service's status that it does not hold yet, when valid.
    fn adopt(&mut self, key: &ServiceKey) {
        let Some(st) = self.services.get(key) else {
            return;
        };
        let svc = Arc::clone(&st.svc);
        let labels = Arc::clone(&st.labels);
        let families = svc.requested_families(&self.config);
        let was_satisfied = svc.condition.as_ref().is_some_and(|c| c.status == "True");
        let mut seen = BTreeSet::new();
        for &ip in &svc.ingress_ips {
            if !seen.insert(ip) {
                continue;
            }
            let held = &self.services[key].ips;
            if held.contains(&ip) {
                continue;
            }
            let eligible = if svc.requested_ips.is_empty() {
                families.wants(Family::of(ip))
                    && !held.iter().any(|h| Family::of(*h) == Family::of(ip))
            } else {
                svc.requested_ips.contains(&ip)
            };
            if !eligible {
                continue;
            }
            let origin = match self.home(&labels, ip, None) {
                Home::Pool(p) => Some(p),
                Home::Outside if was_satisfied => None,
                Home::Outside | Home::Mismatch => continue,
            };
            if self.ips.contains_key(&ip)
                && (svc.sharing_key.is_empty() || self.incompatible_holder(&svc, ip).is_some())
            {
                continue;
            }
            // A reserved address (allowFirstLastIPs: No) is only taken back from a service
            // LB-IPAM had satisfied, i.e. one that got it before the pool reserved it.
            if !was_satisfied && self.is_reserved(ip) {
                continue;
            }
            self.assign(key, ip, origin);
        }
    }

    fn is_reserved(&self, ip: IpAddr) -> bool {
        self.pools
            .values()
            .flat_map(|p| &p.ranges)
            .any(|r| r.reserved.contains(&ip))
    }

    fn fail(&mut self, key: &ServiceKey, reason: &'static str, message: String) {
        if let Some(st) = self.services.get_mut(key) {
            st.failure = Some(Failure::Fixed(reason, message));
        }
    }

    fn satisfy_specific(&mut self, key: &ServiceKey) {
        let Some(st) = self.services.get(key) else {
            return;
        };
        let svc = Arc::clone(&st.svc);
        let labels = Arc::clone(&st.labels);
        for &ip in &svc.requested_ips {
            if self.services[key].ips.contains(&ip) {
                continue;
            }
            let mut contained = false;
            let mut pool = None;
            for name in &self.pool_order {
                let p = &self.pools[name];
                if p.enabled() && p.contains(ip) {
                    contained = true;
                    if p.pool.selects(&labels) {
                        pool = Some(name.clone());
                        break;
                    }
                }
            }
            let Some(pool) = pool else {
                if contained {
                    let msg = format!(
                        "The pool with the CIDR containing '{ip}', doesn't select this service"
                    );
                    self.fail(key, reason::POOL_SELECTOR_MISMATCH, msg);
                } else {
                    self.fail(
                        key,
                        reason::NO_POOL,
                        format!("No pool exists with a CIDR containing '{ip}'"),
                    );
                }
                continue;
            };
            if self.ips.contains_key(&ip) {
                if svc.sharing_key.is_empty() {
                    let msg = format!("The IP '{ip}' is already allocated to another service");
                    self.fail(key, reason::ALREADY_ALLOCATED, msg);
                    continue;
                }
                if self.incompatible_holder(&svc, ip).is_some() {
                    if let Some(st) = self.services.get_mut(key) {
                        st.failure = Some(Failure::Incompatible(ip));
                    }
                    continue;
                }
            } else if self.pools[&pool]
                .ranges
                .iter()
                .any(|r| r.reserved.contains(&ip))
            {
                let msg =
                    format!("The IP '{ip}' is reserved by pool '{pool}' (allowFirstLastIPs: No)");
                self.fail(key, reason::ALREADY_ALLOCATED, msg);
                continue;
            }
            self.assign(key, ip, Some(pool));
        }
    }

    fn satisfy_generic(&mut self, key: &ServiceKey) {
        let Some(st) = self.services.get(key) else {
            return;
        };
        let svc = Arc::clone(&st.svc);
        let labels = Arc::clone(&st.labels);
        let families = svc.requested_families(&self.config);
        for family in [Family::V4, Family::V6] {
            if !families.wants(family)
                || self.services[key]
                    .ips
                    .iter()
                    .any(|ip| Family::of(*ip) == family)
            {
                continue;
            }
            if let Some((ip, pool)) = self.shareable(&svc, &labels, family) {
                self.assign(key, ip, Some(pool));
                continue;
            }
            let mut matched = false;
            let mut found = None;
            'pools: for name in &self.pool_order {
                let p = &self.pools[name];
                if !p.enabled() || !p.pool.selects(&labels) {
                    continue;
                }
                for r in p.ranges.iter().filter(|r| r.block.range.family() == family) {
                    matched = true;
                    if let Some(ip) = r.free.lowest_free() {
                        found = Some((ip, name.clone()));
                        break 'pools;
                    }
                }
            }
            match found {
                Some((ip, pool)) => self.assign(key, ip, Some(pool)),
                None if matched => self.fail(
                    key,
                    reason::OUT_OF_IPS,
                    "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs".into(),
                ),
                None => self.fail(
                    key,
                    reason::NO_POOL,
                    "There are no enabled CiliumLoadBalancerIPPools that match this service".into(),
                ),
            }
        }
    }

    /// The lowest address of the service's sharing group it may join for this family.
    fn shareable(
        &self,
        svc: &Service,
        labels: &BTreeMap<String, String>,
        family: Family,
    ) -> Option<(IpAddr, String)> {
        if svc.sharing_key.is_empty() {
            return None;
        }
        self.sharing
            .get(&svc.sharing_key)?
            .iter()
            .copied()
            .filter(|&ip| {
                Family::of(ip) == family
                    && self
                        .ips
                        .get(&ip)
                        .is_some_and(|h| h.binary_search(&svc.key).is_err())
                    && self.incompatible_holder(svc, ip).is_none()
            })
            .find_map(|ip| match self.home(labels, ip, None) {
                Home::Pool(p) => Some((ip, p)),
                Home::Mismatch | Home::Outside => None,
            })
    }

    // ---- decisions ------------------------------------------------------------------

    fn is_satisfied(&self, st: &ServiceState) -> bool {
        if !st.svc.requested_ips.is_empty() {
            return st.svc.requested_ips.iter().all(|ip| st.ips.contains(ip));
        }
        let f = st.svc.requested_families(&self.config);
        [Family::V4, Family::V6]
            .into_iter()
            .all(|fam| !f.wants(fam) || st.ips.iter().any(|ip| Family::of(*ip) == fam))
    }

    fn decide_service(&mut self, key: &ServiceKey) -> Option<ServiceUpdate> {
        let st = self.services.get(key)?;
        let satisfied = self.is_satisfied(st);
        let outside: Vec<String> = st
            .ips
            .iter()
            .filter(|ip| match st.origins.get(*ip) {
                Some(origin) => self.pools.get(origin).is_some_and(|p| !p.contains(**ip)),
                None => !self.pools.values().any(|p| p.contains(**ip)),
            })
            .map(|ip| ip.to_string())
            .collect();
        let condition = if satisfied {
            let message = if outside.is_empty() {
                String::new()
            } else {
                format!(
                    "Kept {} although outside the blocks of its pool, so as not to renumber",
                    join_some(&outside, ", ")
                )
            };
            service_condition("True", reason::SATISFIED, message)
        } else {
            let (reason, message) = match &st.failure {
                Some(Failure::Fixed(reason, message)) => (*reason, message.clone()),
                Some(Failure::Incompatible(ip)) => {
                    let why = self
                        .incompatible_holder(&st.svc, *ip)
                        .unwrap_or("incompatible");
                    let msg = format!(
                        "The IP '{ip}' is already allocated to an incompatible service. Reason: {why}"
                    );
                    (reason::ALREADY_ALLOCATED_INCOMPATIBLE, msg)
                }
                None => (
                    reason::NO_POOL,
                    "There are no enabled CiliumLoadBalancerIPPools that match this service"
                        .to_string(),
                ),
            };
            service_condition("False", reason, message)
        };
        let desired = Desired {
            ips: st.ips.clone(),
            condition,
        };
        let observed = {
            let mut ips = st.svc.ingress_ips.clone();
            ips.sort();
            ips.dedup();
            st.svc
                .condition
                .clone()
                .map(|condition| Desired { ips, condition })
        };
        let last = if st.emitted {
            st.desired.as_ref()
        } else {
            observed.as_ref()
        };
        let changed = last != Some(&desired);
        if satisfied {
            self.unsatisfied.remove(key);
        } else {
            self.unsatisfied.insert(key.clone());
        }
        let st = self.services.get_mut(key)?;
        st.desired = Some(desired.clone());
        if !changed {
            return None;
        }
        st.emitted = true;
        Some(ServiceUpdate::Set {
            key: key.clone(),
            ingress_ips: desired.ips,
            condition: desired.condition,
        })
    }

    /// Whether an address in use lies outside the blocks of the pool it came from.
    pub(crate) fn is_outside(&self, ip: IpAddr) -> bool {
        !self.outside_origins(ip).is_empty()
    }

    /// Pools that some holder of `ip` got it from and that no longer contain it.
    fn outside_origins(&self, ip: IpAddr) -> BTreeSet<&str> {
        let holders = self.ips.get(&ip).map_or(&[][..], |h| h.as_slice());
        holders
            .iter()
            .filter_map(|k| self.services.get(k)?.origins.get(&ip))
            .filter_map(|n| self.pools.get_key_value(n))
            .filter(|(_, p)| !p.contains(ip))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Addresses in use, by origin pool, that lie outside that pool's blocks.
    fn outside_blocks(&self) -> BTreeMap<&str, Vec<(IpAddr, &[ServiceKey])>> {
        let mut out: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        for ip in &self.outside {
            let Some(h) = self.ips.get(ip) else { continue };
            for name in self.outside_origins(*ip) {
                out.entry(name).or_default().push((*ip, h.as_slice()));
            }
        }
        out
    }

    fn pool_conditions(
        &self,
        p: &PoolState,
        outside: &[(IpAddr, &[ServiceKey])],
    ) -> Vec<Condition> {
        let counts = counts_of(p);
        let unknown = |t: &str, n: u128| Condition {
            type_: t.to_string(),
            status: "Unknown".into(),
            reason: "noreason".into(),
            message: n.to_string(),
        };
        let outside: Vec<String> = outside
            .iter()
            .map(|(ip, holders)| {
                let holders: Vec<String> = holders.iter().map(|k| k.to_string()).collect();
                format!("{ip} ({})", holders.join(", "))
            })
            .collect();
        let invalid: Vec<String> = p
            .pool
            .invalid_blocks
            .iter()
            .map(|e| e.to_string())
            .collect();
        let flag = |t: &str, reason: &str, items: &[String], what: &str| {
            if items.is_empty() {
                Condition {
                    type_: t.into(),
                    status: "False".into(),
                    reason: "none".into(),
                    message: String::new(),
                }
            } else {
                Condition {
                    type_: t.into(),
                    status: "True".into(),
                    reason: reason.into(),
                    message: format!("{what}: {}", join_some(items, "; ")),
                }
            }
        };
        vec![
            unknown(api::POOL_CONDITION_IPS_TOTAL, counts.total),
            unknown(api::POOL_CONDITION_IPS_AVAILABLE, counts.available),
            unknown(api::POOL_CONDITION_IPS_USED, counts.used),
            match &p.conflict {
                Some(msg) => Condition {
                    type_: api::POOL_CONDITION_CONFLICT.into(),
                    status: "True".into(),
                    reason: "cidr_overlap".into(),
                    message: msg.clone(),
                },
                None => Condition {
                    type_: api::POOL_CONDITION_CONFLICT.into(),
                    status: "False".into(),
                    reason: "resolved".into(),
                    message: String::new(),
                },
            },
            flag(
                POOL_CONDITION_OUTSIDE_BLOCKS,
                "pool_shrunk",
                &outside,
                "Addresses in use outside this pool's blocks, kept so as not to renumber",
            ),
            flag(
                POOL_CONDITION_INVALID_BLOCKS,
                "invalid_block",
                &invalid,
                "Blocks ignored",
            ),
        ]
    }

    fn decide_pools(&mut self) -> Vec<PoolUpdate> {
        let mut updates = Vec::new();
        let mut all_desired = Vec::new();
        let outside = self.outside_blocks();
        for name in &self.pool_order {
            let here = outside.get(name.as_str()).map_or(&[][..], |v| v.as_slice());
            all_desired.push((name.clone(), self.pool_conditions(&self.pools[name], here)));
        }
        for (name, desired) in all_desired {
            let Some(p) = self.pools.get_mut(&name) else {
                continue;
            };
            let same = match &p.emitted {
                Some(e) => *e == desired,
                None => desired.iter().all(|d| p.pool.conditions.contains(d)),
            };
            if !same {
                p.emitted = Some(desired.clone());
                updates.push(PoolUpdate {
                    name,
                    conditions: desired,
                });
            }
        }
        updates
    }

    /// A write of a returned [`ServiceUpdate::Set`] failed: the next reconcile returns it
    /// again (unless an event shows the object already carries it).
    pub fn retry_service(&mut self, key: &ServiceKey) {
        if let Some(st) = self.services.get_mut(key) {
            st.emitted = false;
            self.dirty.insert(key.clone());
        }
    }

    /// A write of a returned [`ServiceUpdate::Clear`] failed: the next reconcile returns it
    /// again, unless the service has become ours again meanwhile.
    pub fn retry_clear(&mut self, key: &ServiceKey) {
        if !self.services.contains_key(key) {
            self.cleared.insert(key.clone());
        }
    }

    /// A write of a returned [`PoolUpdate`] failed: the next reconcile returns it again.
    pub fn retry_pool(&mut self, name: &str) {
        if let Some(p) = self.pools.get_mut(name) {
            p.emitted = None;
        }
    }

    /// Makes the next reconcile re-evaluate every service (tests compare with it).
    #[cfg(test)]
    pub(crate) fn mark_all_dirty(&mut self) {
        self.all_dirty = true;
    }

    // ---- queries --------------------------------------------------------------------

    /// Addresses a service holds now.
    pub fn service_ips(&self, key: &ServiceKey) -> Option<&[IpAddr]> {
        self.services.get(key).map(|st| st.ips.as_slice())
    }

    /// The condition last decided for a service.
    pub fn service_condition(&self, key: &ServiceKey) -> Option<&Condition> {
        self.services
            .get(key)?
            .desired
            .as_ref()
            .map(|d| &d.condition)
    }

    /// Every tracked service with the addresses it holds.
    pub fn assignments(&self) -> BTreeMap<ServiceKey, Vec<IpAddr>> {
        self.services
            .iter()
            .map(|(k, st)| (k.clone(), st.ips.clone()))
            .collect()
    }

    /// Holders of every address in use.
    pub fn holders(&self) -> BTreeMap<IpAddr, Vec<ServiceKey>> {
        self.ips.iter().map(|(ip, h)| (*ip, h.to_vec())).collect()
    }

    /// The tracked version of a service.
    pub fn service(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(key).map(|st| st.svc.as_ref())
    }

    /// The conflict message of a pool, if it conflicts.
    pub fn pool_conflict(&self, name: &str) -> Option<&str> {
        self.pools.get(name)?.conflict.as_deref()
    }

    pub fn pool_counts(&self, name: &str) -> Option<PoolCounts> {
        self.pools.get(name).map(counts_of)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            conflicting_pools: self.pools.values().filter(|p| p.conflict.is_some()).count(),
            services_matching: self.services.len(),
            services_unsatisfied: self.unsatisfied.len(),
            pools: self
                .pools
                .iter()
                .map(|(n, p)| (n.clone(), counts_of(p)))
                .collect(),
        }
    }
}

/// Most items a condition message lists (condition messages are limited to 32768
/// characters, and a short message is a stable one).
const MESSAGE_ITEMS: usize = 20;

/// Joins the first [`MESSAGE_ITEMS`] items and says how many more there are.
fn join_some(items: &[String], sep: &str) -> String {
    let shown = items[..items.len().min(MESSAGE_ITEMS)].join(sep);
    match items.len().saturating_sub(MESSAGE_ITEMS) {
        0 => shown,
        more => format!("{shown}{sep}and {more} more"),
    }
}

/// Upper bound on allocation passes in one reconcile (see [`Allocator::reconcile`]).
const MAX_PASSES: usize = 64;

/// The fields deciding whether a service may share an address.
fn sharing_view(s: &Service) -> impl PartialEq + '_ {
    (
        &s.sharing_key,
        &s.sharing_cross_namespace,
        &s.ports,
        s.external_traffic_local,
        &s.selector,
    )
}

/// Service keys by (creation time, key), without duplicates.
fn in_order(states: Vec<&ServiceState>) -> Vec<ServiceKey> {
    let mut v: Vec<(i64, &ServiceKey)> = states
        .into_iter()
        .map(|st| (st.svc.created, &st.svc.key))
        .collect();
    v.sort();
    v.dedup();
    v.into_iter().map(|(_, k)| k.clone()).collect()
}

fn counts_of(p: &PoolState) -> PoolCounts {
    let total = p
        .ranges
        .iter()
        .fold(0u128, |acc, r| acc.saturating_add(r.block.range.size()));
    let available = p
        .ranges
        .iter()
        .fold(0u128, |acc, r| acc.saturating_add(r.free.free_count()));
    PoolCounts {
        total,
        available,
        used: total.saturating_sub(available),
    }
}

fn conflict_message(ours: &IpRange, theirs: &IpRange, their_pool: &str) -> String {
    format!(
        "Pool conflicts since range '{ours}' overlaps range '{theirs}' from IP Pool '{their_pool}'"
    )
}

fn service_condition(status: &str, reason: &str, message: String) -> Condition {
    Condition {
        type_: api::SERVICE_CONDITION_REQUEST_SATISFIED.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_in_messages() {
        let items: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let joined = join_some(&items, ", ");
        assert!(joined.starts_with("0, 1, 2"));
        assert!(joined.ends_with("19, and 5 more"), "{joined}");
        assert_eq!(join_some(&items[..2], "; "), "0; 1");
    }
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
