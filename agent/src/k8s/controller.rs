//! The Kubernetes-mode loop: watches (Services, Nodes, EndpointSlices, policies, Leases) feed
//! selection; selection and the lease watch feed one [`Election`] per IP; the elections decide
//! lease writes and what this node announces, which goes to the announcer as groups.
//!
//! Everything that decides is pure ([`l2announcer_k8s_select`], [`super::election`]); this
//! file only moves events and results between them and the API.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use futures::TryStreamExt;
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Node, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, Store},
        watcher,
    },
};
use l2announcer_api::l2_policy::CiliumL2AnnouncementPolicy;
use l2announcer_k8s_select::{
    Candidacy, Interfaces, PolicyInfo, Selection, ServiceInfo, ServiceKey, conditions_need_update,
    desired_conditions, endpoint_index, lease_name, node_labels, ranking,
};
use regex::Regex;
use serde_json::json;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{
    election::{Election, Timings, Write, WriteResult},
    leases::{self, LeaseWriter},
    metrics::K8sMetrics,
};
use crate::{
    announcer::{Group, Shared},
    dataplane::Announcement,
};

/// The condition type this agent writes on the Services it announces.
pub const SERVICE_CONDITION: &str = "l2announcer.io/Announced";

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    pub lease_namespace: String,
    pub timings: Timings,
    /// Keep announcing through an API outage until another MAC claims the address.
    pub keep_on_outage: bool,
}

// Moved one at a time through a channel: boxing the large lease event buys nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    /// An event of the lease watch.
    Lease(watcher::Event<Lease>),
    /// The lease watch failed; it starts over with a fresh list.
    LeaseWatchLost,
    /// Something selection depends on changed.
    Changed,
    /// The watch of this kind has listed everything once.
    Listed(String),
    Written {
        ip: IpAddr,
        write: Write,
        result: WriteResult,
        took: Duration,
    },
}

struct Tracked {
    election: Election,
    /// Selection still wants this IP announced by this node.
    wanted: bool,
    lease_name: String,
    candidacy: Candidacy,
    wake_at: Option<Instant>,
    /// Conflicts counted by the XDP program when last looked.
    conflicts_seen: u64,
}

struct Stores {
    services: Store<Service>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    policies: Store<CiliumL2AnnouncementPolicy>,
}

/// The managed leases, kept by the controller itself rather than a reflector: after any
/// watch error the lease watch starts over with a full list, and until that list is done the
/// controller knows it cannot see renewals (see [`Election::set_blind`]).
#[derive(Default)]
struct LeaseCache {
    leases: BTreeMap<String, Arc<Lease>>,
    /// Filled during a (re)list, swapped in when it is done.
    listing: Option<BTreeMap<String, Arc<Lease>>>,
}

/// The controller; `run` it, then `release_all` after the announcer has withdrawn.
pub struct Controller {
    config: Config,
    client: Client,
    writer: Arc<LeaseWriter>,
    recorder: Recorder,
    shared: Shared,
    metrics: Arc<K8sMetrics>,
    stores: Stores,
    leases: LeaseCache,
    inputs: mpsc::Receiver<Input>,
    inputs_tx: mpsc::Sender<Input>,
    elections: BTreeMap<IpAddr, Tracked>,
    leases_synced: bool,
    /// Kinds whose watch has listed once.
    listed: BTreeSet<String>,
    /// The announceable interfaces last used for eligibility.
    links_seen: BTreeSet<String>,
    groups: watch::Sender<Vec<Group>>,
    announced: BTreeMap<IpAddr, Vec<String>>,
    /// Every address some Service wants announced somewhere (from the last selection).
    all_wanted: BTreeSet<IpAddr>,
}

fn spawn_watch<K>(api: Api<K>, config: watcher::Config, tx: mpsc::Sender<Input>) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    tokio::spawn(async move {
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        futures::pin_mut!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(event)) => {
                    let input = match &event {
                        watcher::Event::InitApply(_) | watcher::Event::Init => continue,
                        watcher::Event::InitDone => {
                            Input::Listed(K::kind(&Default::default()).into_owned())
                        }
                        watcher::Event::Apply(_) | watcher::Event::Delete(_) => Input::Changed,
                    };
                    if tx.send(input).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                // The backoff retries; a relist follows (410 Gone included).
                Err(e) => warn!(error = %e, kind = %K::kind(&Default::default()), "watch"),
            }
        }
    });
    store
}

/// The lease watch: every event goes to the controller; on any error the watch is dropped and
/// started again, which lists afresh (`Init` … `InitDone`).
fn spawn_lease_watch(api: Api<Lease>, tx: mpsc::Sender<Input>) {
    let config = watcher::Config::default().labels(&format!(
        "{}={}",
        leases::MANAGED_BY_LABEL,
        leases::MANAGED_BY
    ));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let stream = watcher(api.clone(), config.clone());
            futures::pin_mut!(stream);
            loop {
                match stream.try_next().await {
                    Ok(Some(event)) => {
                        backoff = Duration::from_millis(200);
                        if tx.send(Input::Lease(event)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "lease watch lost; relisting");
                        if tx.send(Input::LeaseWatchLost).await.is_err() {
                            return;
                        }
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

impl Controller {
    /// Starts the watches. `client` serves the watches and status writes, `lease_client` only
    /// the lease writes, so that neither can queue behind the other.
    pub fn new(
        config: Config,
        client: Client,
        lease_client: Client,
        shared: Shared,
        metrics: Arc<K8sMetrics>,
        groups: watch::Sender<Vec<Group>>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let stores = Stores {
            services: spawn_watch(
                Api::all(client.clone()),
                watcher::Config::default(),
                tx.clone(),
            ),
            nodes: spawn_watch(
                Api::all(client.clone()),
                watcher::Config::default(),
                tx.clone(),
            ),
            slices: spawn_watch(
                Api::all(client.clone()),
                watcher::Config::default(),
                tx.clone(),
            ),
            policies: spawn_watch(
                Api::all(client.clone()),
                watcher::Config::default(),
                tx.clone(),
            ),
        };
        spawn_lease_watch(
            Api::namespaced(client.clone(), &config.lease_namespace),
            tx.clone(),
        );
        let writer = Arc::new(LeaseWriter {
            api: Api::namespaced(lease_client, &config.lease_namespace),
            me: config.node_name.clone(),
            timings: config.timings,
        });
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "l2announcer".into(),
                instance: Some(config.node_name.clone()),
            },
        );
        Self {
            config,
            client,
            writer,
            recorder,
            shared,
            metrics,
            stores,
            leases: LeaseCache::default(),
            inputs: rx,
            inputs_tx: tx,
            elections: BTreeMap::new(),
            leases_synced: false,
            listed: BTreeSet::new(),
            links_seen: BTreeSet::new(),
            groups,
            announced: BTreeMap::new(),
            all_wanted: BTreeSet::new(),
        }
    }

    /// Runs until `shutdown` resolves; the announcer keeps what it was last given until it
    /// stops itself. Returns the controller for [`Controller::release_all`].
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Self {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut selection_due: Option<Instant> = Some(Instant::now());
        // Garbage is also collected on a timer, not only when a selection runs: a release
        // that failed (the API erring just when the Services went) leaves a lease naming this
        // node that no later change would clean up.
        let gc_period = self.config.timings.lease_duration;
        let mut gc_due = Instant::now() + gc_period;
        loop {
            let wake = self
                .elections
                .values()
                .filter_map(|t| t.wake_at)
                .chain(selection_due)
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(input) = self.inputs.recv() => {
                    // Take everything that is waiting before deciding once.
                    let mut batch = vec![input];
                    while let Ok(more) = self.inputs.try_recv() {
                        batch.push(more);
                    }
                    for input in batch {
                        if let Input::Listed(kind) = &input {
                            self.listed.insert(kind.clone());
                            selection_due.get_or_insert(Instant::now());
                        } else if let Input::Changed = input {
                            // Coalesce bursts of watch events into one selection.
                            selection_due.get_or_insert(Instant::now() + Duration::from_millis(50));
                        } else {
                            self.handle(input);
                        }
                    }
                }
                _ = tick.tick() => {
                    // Only against a current selection: before the first one (or with one
                    // pending) "not wanted" would include addresses that are.
                    if Instant::now() >= gc_due && self.inputs_ready() && selection_due.is_none() {
                        gc_due = Instant::now() + gc_period;
                        self.collect_garbage(&self.all_wanted);
                    }
                    self.check_wire_conflicts();
                    if self.links_changed() {
                        selection_due.get_or_insert(Instant::now());
                    }
                }
                _ = sleep => {}
            }
            let now = Instant::now();
            if selection_due.is_some_and(|at| at <= now) && self.inputs_ready() {
                selection_due = None;
                self.reselect(now);
            }
            self.step(now);
            self.publish();
        }
        self
    }

    /// Whether every watch has listed once: selecting from half-filled caches would release
    /// addresses that are still wanted.
    fn inputs_ready(&self) -> bool {
        // Services, Nodes, EndpointSlices, policies.
        self.leases_synced && self.listed.len() == 4
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Lease(watcher::Event::Init) => self.leases.listing = Some(BTreeMap::new()),
            Input::Lease(watcher::Event::InitApply(lease)) => {
                if let Some(listing) = &mut self.leases.listing {
                    listing.insert(lease.name_any(), Arc::new(lease));
                }
            }
            Input::Lease(watcher::Event::InitDone) => {
                // A full list: every lease is seen afresh, and renewals are visible again.
                self.leases.leases = self.leases.listing.take().unwrap_or_default();
                self.leases_synced = true;
                let ips: Vec<IpAddr> = self.elections.keys().copied().collect();
                for ip in ips {
                    self.observe_with(ip, now, true);
                }
            }
            Input::Lease(watcher::Event::Apply(lease)) => {
                let name = lease.name_any();
                self.leases.leases.insert(name.clone(), Arc::new(lease));
                self.lease_changed(&name, now);
            }
            Input::Lease(watcher::Event::Delete(lease)) => {
                let name = lease.name_any();
                self.leases.leases.remove(&name);
                self.lease_changed(&name, now);
            }
            Input::LeaseWatchLost => {
                // Blind until the next full list: no takeover on the strength of renewals
                // this node could not have seen.
                for t in self.elections.values_mut() {
                    t.election.set_blind();
                    t.wake_at = Some(now);
                }
            }
            Input::Changed | Input::Listed(_) => {}
            Input::Written {
                ip,
                write,
                result,
                took,
            } => self.written(ip, write, result, took, now),
        }
    }

    fn lease_changed(&mut self, name: &str, now: Instant) {
        if !self.leases_synced {
            return;
        }
        if let Some(ip) = l2announcer_k8s_select::ip_of_lease_name(name)
            && self.elections.contains_key(&ip)
        {
            self.observe_with(ip, now, false);
        }
    }

    fn observe_with(&mut self, ip: IpAddr, now: Instant, relisted: bool) {
        let Some(t) = self.elections.get_mut(&ip) else {
            return;
        };
        let lease = self.leases.leases.get(&t.lease_name).cloned();
        let held_before = t.election.holds();
        let record = lease.as_deref().map(leases::record);
        if relisted {
            t.election.relisted(record, now);
        } else {
            t.election.observe(record, now);
        }
        t.wake_at = Some(now);
        if held_before && !t.election.holds() {
            self.metrics.losses.inc();
            info!(%ip, "lease lost to another node");
        }
    }

    fn written(
        &mut self,
        ip: IpAddr,
        write: Write,
        result: WriteResult,
        took: Duration,
        now: Instant,
    ) {
        let verb = match write {
            Write::Create => "create",
            _ => "update",
        };
        self.metrics.api_request(verb, outcome(&result));
        let Some(t) = self.elections.get_mut(&ip) else {
            return;
        };
        let held_before = t.election.holds();
        let acquired = matches!(write, Write::Create | Write::Acquire { .. })
            && matches!(result, WriteResult::Ok(_));
        // Released because no Service wants the address any more: delete the lease now.
        let delete_after_release = match (&write, &result) {
            (Write::Release { .. }, WriteResult::Ok(record)) if !self.all_wanted.contains(&ip) => {
                Some((t.lease_name.clone(), record.resource_version.clone()))
            }
            _ => None,
        };
        if let Write::Renew { .. } = write {
            self.metrics.renew_seconds.observe(took.as_secs_f64());
            if !matches!(result, WriteResult::Ok(_)) {
                self.metrics.renew_errors.inc();
            }
        }
        t.election.written(&write, result, now);
        t.wake_at = Some(now);

        if acquired {
            self.metrics.acquisitions.inc();
            if let Some(latency) = t.election.take_takeover_latency(now) {
                self.metrics.takeover_seconds.observe(latency.as_secs_f64());
            }
            info!(%ip, services = t.candidacy.services.len(), "lease acquired: announcing");
        }
        if held_before && !t.election.holds() && !matches!(write, Write::Release { .. }) {
            self.metrics.losses.inc();
            warn!(%ip, "lease lost");
        }
        if acquired {
            let services = t.candidacy.services.clone();
            self.report_takeover(ip, services);
        }
        if let Some((name, rv)) = delete_after_release {
            self.delete_lease(name, rv);
        }
    }

    /// Recomputes what this node competes for, from the caches.
    fn reselect(&mut self, now: Instant) {
        let policies: Vec<PolicyInfo> = self
            .stores
            .policies
            .state()
            .iter()
            .map(|p| PolicyInfo::new(p.name_any(), &p.spec))
            .collect();
        let services: Vec<ServiceInfo> = self
            .stores
            .services
            .state()
            .iter()
            .map(|s| ServiceInfo::from(s.as_ref()))
            .collect();
        let nodes: BTreeMap<String, BTreeMap<String, String>> = self
            .stores
            .nodes
            .state()
            .iter()
            .map(|n| node_labels(n))
            .collect();
        let Some(my_labels) = nodes.get(&self.config.node_name).cloned() else {
            warn!(node = %self.config.node_name, "this node's Node object is not in the cache; competing for nothing");
            self.set_candidacies(BTreeMap::new(), now);
            return;
        };
        let slices = self.stores.slices.state();
        let endpoints = endpoint_index(slices.iter().map(|s| s.as_ref()));
        let selection = Selection::new(&policies, &services);
        let candidacies =
            selection.candidacies(&self.config.node_name, &my_labels, &nodes, &endpoints);
        let all_wanted: BTreeSet<IpAddr> = selection.ips().copied().collect();
        let eligible = selection.eligible_nodes(&nodes, &endpoints);
        self.metrics.services_selected.set(
            l2announcer_k8s_select::select::services_by_ip(&selection)
                .values()
                .flatten()
                .collect::<BTreeSet<_>>()
                .len() as i64,
        );
        self.metrics.set_no_eligible(&selection, &eligible);
        self.update_policy_conditions(&policies);
        self.collect_garbage(&all_wanted);
        self.all_wanted = all_wanted;
        self.set_candidacies(candidacies, now);
    }

    fn set_candidacies(&mut self, mut candidacies: BTreeMap<IpAddr, Candidacy>, now: Instant) {
        let links: Vec<String> = {
            let core = self.shared.lock();
            core.links
                .values()
                .filter(|l| l.announceable())
                .map(|l| l.name.clone())
                .collect()
        };
        self.links_seen = links.iter().cloned().collect();
        // Gone: not eligible any more; the election releases if it held the lease.
        for (ip, t) in &mut self.elections {
            if !candidacies.contains_key(ip) {
                t.wanted = false;
                t.election.set_eligible(false, Vec::new(), now);
                t.wake_at = Some(now);
            }
        }
        for (ip, candidacy) in std::mem::take(&mut candidacies) {
            // A node competes only where it has an interface to announce on.
            let has_interface = links.iter().any(|l| candidacy.interfaces.matches(l));
            // The eligible nodes ranked ahead of this one (all of them if it is not eligible).
            let ahead: Vec<String> = ranking(ip, &candidacy.eligible_nodes)
                .into_iter()
                .take_while(|n| *n != self.config.node_name)
                .map(str::to_owned)
                .collect();
            let t = self.elections.entry(ip).or_insert_with(|| Tracked {
                election: Election::new(
                    self.config.node_name.clone(),
                    self.config.timings,
                    self.config.keep_on_outage,
                ),
                lease_name: lease_name(ip),
                wanted: true,
                candidacy: candidacy.clone(),
                wake_at: Some(now),
                conflicts_seen: 0,
            });
            t.wanted = true;
            t.election.set_eligible(has_interface, ahead, now);
            t.candidacy = candidacy;
            t.wake_at = Some(now);
            if self.leases_synced {
                let lease = self.leases.leases.get(&t.lease_name).cloned();
                t.election
                    .observe(lease.as_deref().map(leases::record), now);
            }
        }
    }

    /// Decides every election that is due, and starts the writes.
    fn step(&mut self, now: Instant) {
        let mut done: Vec<IpAddr> = Vec::new();
        for (ip, t) in &mut self.elections {
            if t.wake_at.is_some_and(|w| w > now) {
                continue;
            }
            let d = t.election.decide(now);
            t.wake_at = d.wake_at;
            if let Some(write) = d.write {
                let lease = self.leases.leases.get(&t.lease_name).cloned();
                let writer = self.writer.clone();
                let tx = self.inputs_tx.clone();
                let name = t.lease_name.clone();
                let ip = *ip;
                tokio::spawn(async move {
                    let started = Instant::now();
                    let (result, _) = writer.execute(&name, ip, lease.as_deref(), &write).await;
                    let _ = tx
                        .send(Input::Written {
                            ip,
                            write,
                            result,
                            took: started.elapsed(),
                        })
                        .await;
                });
            } else if !t.wanted && !t.election.busy() {
                // Neither wanted nor held, no write in flight: forget it.
                done.push(*ip);
            }
        }
        for ip in done {
            self.elections.remove(&ip);
        }
    }

    /// Sends the announcer what this node announces now, when it changed.
    fn publish(&mut self) {
        let now = Instant::now();
        let mut announced: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for (ip, t) in &self.elections {
            if t.election.announcing(now) {
                let patterns = match &t.candidacy.interfaces {
                    Interfaces::All => vec![String::new()],
                    Interfaces::Matching(m) => m.keys().cloned().collect(),
                };
                announced.insert(*ip, patterns);
            }
        }
        if announced == self.announced {
            return;
        }
        self.metrics.leases_held.set(
            self.elections
                .values()
                .filter(|t| t.election.holds())
                .count() as i64,
        );
        let groups = announced
            .iter()
            .map(|(ip, patterns)| Group {
                interfaces: patterns.iter().filter_map(|p| Regex::new(p).ok()).collect(),
                ips: vec![*ip],
            })
            .collect();
        debug!(count = announced.len(), "announcing");
        self.announced = announced;
        let _ = self.groups.send(groups);
    }

    /// An increase of an address's conflict counter means another MAC claims it.
    fn check_wire_conflicts(&mut self) {
        let stats: BTreeMap<IpAddr, u64> = {
            let core = self.shared.lock();
            let installed: Vec<Announcement> = core.dataplane.installed().keys().copied().collect();
            let mut out = BTreeMap::new();
            for a in installed {
                if let Ok(s) = core.dataplane.entry_stats(&a) {
                    *out.entry(a.ip).or_insert(0) += s.conflicts;
                }
            }
            out
        };
        for (ip, conflicts) in stats {
            if let Some(t) = self.elections.get_mut(&ip) {
                if conflicts > t.conflicts_seen {
                    if t.election.holds() {
                        warn!(%ip, "another MAC claims this address on the wire");
                    }
                    t.election.wire_conflict();
                    t.wake_at = Some(Instant::now());
                }
                t.conflicts_seen = conflicts;
            }
        }
    }

    fn links_changed(&self) -> bool {
        let core = self.shared.lock();
        let links: BTreeSet<String> = core
            .links
            .values()
            .filter(|l| l.announceable())
            .map(|l| l.name.clone())
            .collect();
        links != self.links_seen
    }

    /// Deletes leases of addresses no Service wants any more, when nobody holds them.
    fn collect_garbage(&self, wanted: &BTreeSet<IpAddr>) {
        for lease in self.leases.leases.values() {
            let Some(ip) = leases::lease_ip(lease) else {
                continue;
            };
            if wanted.contains(&ip) || self.elections.get(&ip).is_some_and(|t| t.election.holds()) {
                continue;
            }
            let record = leases::record(lease);
            if record.holder.is_some() && record.holder.as_deref() != Some(&self.config.node_name) {
                continue;
            }
            self.delete_lease(lease.name_any(), record.resource_version);
        }
    }

    /// Deletes a lease no Service needs, if it is still as last seen.
    fn delete_lease(&self, name: String, resource_version: String) {
        let writer = self.writer.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let result = writer.delete(&name, &resource_version).await;
            metrics.api_request("delete", result_outcome(&result));
            if result.is_ok() {
                info!(lease = %name, "deleted a lease no Service needs");
            }
        });
    }

    /// Writes the policies' conditions where they differ from what they should be. Every
    /// node computes the same, so once one has written, the others find nothing to change.
    fn update_policy_conditions(&self, policies: &[PolicyInfo]) {
        for (info, policy) in policies.iter().zip(self.stores.policies.state()) {
            let current: Vec<Condition> = policy
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let desired = desired_conditions(
                &current,
                &info.problems,
                policy.metadata.generation,
                &Time(Timestamp::now()),
            );
            if !conditions_need_update(&current, &desired) {
                continue;
            }
            let api: Api<CiliumL2AnnouncementPolicy> = Api::all(self.client.clone());
            let name = policy.name_any();
            let rv = policy.resource_version();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let patch = json!({
                    "metadata": { "resourceVersion": rv },
                    "status": { "conditions": desired },
                });
                let result = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                metrics.api_request("patch", result_outcome(&result));
                if let Err(e) = result {
                    debug!(policy = %name, error = %e, "policy conditions not written (another node may have)");
                }
            });
        }
    }

    /// A condition on each Service of the address and an Event, after a takeover.
    fn report_takeover(&self, ip: IpAddr, services: BTreeSet<ServiceKey>) {
        let interfaces: Vec<String> = {
            let core = self.shared.lock();
            let t = self.elections.get(&ip);
            core.links
                .values()
                .filter(|l| l.announceable())
                .filter(|l| t.is_some_and(|t| t.candidacy.interfaces.matches(&l.name)))
                .map(|l| l.name.clone())
                .collect()
        };
        let message = format!(
            "{ip} is announced by node {} on {}",
            self.config.node_name,
            interfaces.join(", ")
        );
        for key in services {
            let Some(svc) = self
                .stores
                .services
                .get(&reflector::ObjectRef::new(&key.name).within(&key.namespace))
            else {
                continue;
            };
            let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
            let recorder = self.recorder.clone();
            let message = message.clone();
            let metrics = self.metrics.clone();
            let node = self.config.node_name.clone();
            tokio::spawn(async move {
                let mut conditions: Vec<Condition> = svc
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default();
                conditions.retain(|c| c.type_ != SERVICE_CONDITION);
                conditions.push(Condition {
                    type_: SERVICE_CONDITION.into(),
                    status: "True".into(),
                    reason: "Announced".into(),
                    message: message.clone(),
                    observed_generation: svc.metadata.generation,
                    last_transition_time: Time(Timestamp::now()),
                });
                let patch = json!({
                    "metadata": { "resourceVersion": svc.resource_version() },
                    "status": { "conditions": conditions },
                });
                let result = api
                    .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                metrics.api_request("patch", result_outcome(&result));
                if let Err(e) = result {
                    debug!(service = %key.name, error = %e, "service condition not written");
                }
                let event = Event {
                    type_: EventType::Normal,
                    reason: "Announcing".into(),
                    note: Some(message),
                    action: "Takeover".into(),
                    secondary: None,
                };
                let published = recorder.publish(&event, &svc.object_ref(&())).await;
                metrics.api_request("create", result_outcome(&published));
                if let Err(e) = published {
                    debug!(service = %key.name, %node, error = %e, "event not published");
                }
            });
        }
    }

    /// Gives up every lease this node holds (after the announcer has withdrawn the entries),
    /// so that watching candidates take over at once.
    pub async fn release_all(mut self) {
        let mut releases = Vec::new();
        for (ip, t) in &mut self.elections {
            if let Some(write) = t.election.release() {
                let lease = self.leases.leases.get(&t.lease_name).cloned();
                let writer = self.writer.clone();
                let name = t.lease_name.clone();
                let ip = *ip;
                releases.push(async move {
                    let (result, _) = writer.execute(&name, ip, lease.as_deref(), &write).await;
                    (ip, result)
                });
            }
        }
        let results =
            tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(releases)).await;
        match results {
            Ok(results) => {
                let released = results
                    .iter()
                    .filter(|(_, r)| matches!(r, WriteResult::Ok(_)))
                    .count();
                info!(released, of = results.len(), "leases released");
            }
            Err(_) => warn!("releasing leases timed out; they will expire"),
        }
    }
}

/// The outcome label of an API request, for metrics.
fn outcome(result: &WriteResult) -> &'static str {
    match result {
        WriteResult::Ok(_) => "ok",
        WriteResult::Conflict => "conflict",
        WriteResult::Unavailable => "unavailable",
        WriteResult::Rejected => "rejected",
    }
}

fn result_outcome<T>(r: &Result<T, kube::Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(kube::Error::Api(s)) if s.code == 409 => "conflict",
        Err(kube::Error::Api(s)) if s.code == 429 || s.code >= 500 => "unavailable",
        Err(kube::Error::Api(_)) => "rejected",
        Err(_) => "unavailable",
    }
}
