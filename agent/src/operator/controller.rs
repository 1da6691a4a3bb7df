//! The operator loop: reflector watches on Services and pools feed the pure
//! [`Allocator`]; while this replica leads, what a reconcile decides is written as Service and
//! pool status, and failed writes come back through the allocator's `retry_*` after a backoff.
//!
//! Both watches run on the standby too (a hot standby): when it becomes the leader it builds
//! a fresh allocator from complete caches (every pool and Service, with the addresses in
//! their status), reconciles once, and only then writes, so a failover or a restart keeps
//! every address. On losing the lease it stops writing at once: queued writes are dropped,
//! and each write checks the lease just before it is sent.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use futures::TryStreamExt;
use k8s_openapi::{
    api::core::v1::Service, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use l2announcer_api::ip_pool::CiliumLoadBalancerIPPool;
use l2announcer_ipam::{
    Allocator, Condition as Decided, Config as IpamConfig, Decisions, Event, ServiceKey,
    ServiceUpdate, pool_from_crd, service_from_k8s,
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{http::Health, metrics::IpamMetrics, status};

/// Status writes in flight at once: enough to hide the API server's latency, few enough
/// not to flood it. The rest wait in a queue (cheaper than thousands of parked tasks).
const WRITE_CONCURRENCY: usize = 16;
/// Backoff of failed writes (Cilium's LB-IPAM: 250 ms doubling to 5 min).
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// The wait before retry number `failures` (1 for the first failure).
pub fn retry_backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    RETRY_FIRST.saturating_mul(factor).min(RETRY_MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Services,
    Pools,
}

// Moved one at a time through a channel: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    Event(Event),
    /// A watch has (re)listed everything.
    Listed(Kind),
    /// Every Service, listed afresh after this replica became the leader (term `term`), as
    /// allocator events.
    Snapshot {
        term: u64,
        services: Vec<Event>,
    },
}

/// What a status write is for (also the key of its retry).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    ServiceSet(ServiceKey),
    ServiceClear(ServiceKey),
    Pool(String),
}

enum Job {
    ServiceSet {
        key: ServiceKey,
        ips: Vec<std::net::IpAddr>,
        condition: Decided,
        /// When the event that led to it was seen, for the allocation latency.
        since: Instant,
    },
    ServiceClear(ServiceKey),
    Pool {
        name: String,
        conditions: Vec<Decided>,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Written,
    /// The object already carries it, or is gone from the cache (a delete event follows).
    Nothing,
    /// Refused because the object changed (409) or vanished (404).
    Conflict,
    NotFound,
    Failed,
    /// This replica no longer leads: not sent.
    NotLeading,
}

struct Done {
    target: Target,
    outcome: Outcome,
    /// For a written Set that satisfied the service: event-to-write latency.
    latency: Option<Duration>,
}

/// Everything a write task needs.
#[derive(Clone)]
struct Writer {
    client: Client,
    services: Store<Service>,
    pools: Store<CiliumLoadBalancerIPPool>,
    leading: watch::Receiver<bool>,
}

impl Writer {
    async fn run(self, job: Job) -> Done {
        let target = match &job {
            Job::ServiceSet { key, .. } => Target::ServiceSet(key.clone()),
            Job::ServiceClear(key) => Target::ServiceClear(key.clone()),
            Job::Pool { name, .. } => Target::Pool(name.clone()),
        };
        let done = |outcome| Done {
            target: target.clone(),
            outcome,
            latency: None,
        };
        if !*self.leading.borrow() {
            return done(Outcome::NotLeading);
        }
        let now = Time(Timestamp::now());
        let params = PatchParams {
            field_manager: Some(status::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        // Built from the freshest copy in the cache, with its resourceVersion.
        let (result, latency) = match &job {
            Job::ServiceSet {
                key,
                ips,
                condition,
                since,
            } => {
                let Some(svc) = self
                    .services
                    .get(&ObjectRef::new(&key.name).within(&key.namespace))
                else {
                    return done(Outcome::Nothing);
                };
                let Some(patch) = status::service_set(&svc, ips, condition, &now) else {
                    return done(Outcome::Nothing);
                };
                let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
                let result = api
                    .patch_status(&key.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ());
                let latency = (condition.status == "True").then(|| since.elapsed());
                (result, latency)
            }
            Job::ServiceClear(key) => {
                let Some(svc) = self
                    .services
                    .get(&ObjectRef::new(&key.name).within(&key.namespace))
                else {
                    return done(Outcome::Nothing);
                };
                let Some(patch) = status::service_clear(&svc) else {
                    return done(Outcome::Nothing);
                };
                let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
                let result = api
                    .patch_status(&key.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ());
                (result, None)
            }
            Job::Pool { name, conditions } => {
                let Some(pool) = self.pools.get(&ObjectRef::new(name)) else {
                    return done(Outcome::Nothing);
                };
                let Some(patch) = status::pool_conditions(&pool, conditions, &now) else {
                    return done(Outcome::Nothing);
                };
                let api: Api<CiliumLoadBalancerIPPool> = Api::all(self.client.clone());
                let result = api
                    .patch_status(name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ());
                (result, None)
            }
        };
        let outcome = match result {
            Ok(()) => Outcome::Written,
            Err(kube::Error::Api(s)) if s.code == 409 => Outcome::Conflict,
            Err(kube::Error::Api(s)) if s.code == 404 => Outcome::NotFound,
            Err(e) => {
                debug!(?target, error = %e, "status write failed");
                Outcome::Failed
            }
        };
        Done {
            target,
            latency: if outcome == Outcome::Written {
                latency
            } else {
                None
            },
            outcome,
        }
    }
}

fn spawn_watch<K>(
    api: Api<K>,
    kind: Kind,
    convert: fn(&K, bool) -> Event,
    tx: mpsc::Sender<Input>,
) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            // Nobody here reads managedFields: do not keep thousands of them.
            .modify(|o| o.managed_fields_mut().clear())
            .reflect(writer)
            .default_backoff();
        futures::pin_mut!(stream);
        loop {
            let input = match stream.try_next().await {
                Ok(Some(watcher::Event::Apply(o))) => Input::Event(convert(&o, false)),
                Ok(Some(watcher::Event::Delete(o))) => Input::Event(convert(&o, true)),
                Ok(Some(watcher::Event::InitDone)) => Input::Listed(kind),
                Ok(Some(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                Ok(None) => return,
                // The backoff retries; a relist follows (410 Gone included).
                Err(e) => {
                    warn!(error = %e, ?kind, "watch");
                    continue;
                }
            };
            if tx.send(input).await.is_err() {
                return;
            }
        }
    });
    store
}

fn service_event(svc: &Service, deleted: bool) -> Event {
    if deleted {
        Event::ServiceDeleted(ServiceKey::new(
            svc.namespace().unwrap_or_default(),
            svc.name_any(),
        ))
    } else {
        Event::ServiceUpserted(service_from_k8s(svc))
    }
}

fn pool_event(pool: &CiliumLoadBalancerIPPool, deleted: bool) -> Event {
    if deleted {
        Event::PoolDeleted(pool.name_any())
    } else {
        Event::PoolUpserted(pool_from_crd(pool))
    }
}

/// Every object of a kind, read page by page and converted at once (a full page of
/// Services weighs far more than what the allocator keeps of it).
async fn list_all<K>(
    api: &Api<K>,
    convert: fn(&K, bool) -> Event,
) -> Result<Vec<Event>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = kube::api::ListParams::default().limit(500);
    let mut out = Vec::new();
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items.iter().map(|o| convert(o, false)));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

/// Lists every Service afresh (retrying while this replica leads) and sends them as the
/// snapshot of leadership term `term`.
async fn read_snapshot(
    client: Client,
    term: u64,
    leading: watch::Receiver<bool>,
    tx: mpsc::Sender<Input>,
) {
    let api: Api<Service> = Api::all(client);
    loop {
        match list_all(&api, service_event).await {
            Ok(services) => {
                let _ = tx.send(Input::Snapshot { term, services }).await;
                return;
            }
            Err(e) => {
                warn!(error = %e, "listing after winning the lease; retrying");
                if !*leading.borrow() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The LB-IPAM controller; [`Controller::run`] it.
pub struct Controller {
    config: IpamConfig,
    stores: (Store<Service>, Store<CiliumLoadBalancerIPPool>),
    inputs: mpsc::Receiver<Input>,
    inputs_tx: mpsc::Sender<Input>,
    /// When each watch last finished a full list.
    listed: BTreeMap<Kind, Instant>,
    leading: watch::Receiver<bool>,
    /// Leadership terms of this replica, and since when the current one lasts.
    term: u64,
    leading_since: Option<Instant>,
    /// Fresh lists are being read for this term.
    snapshot_pending: Option<u64>,
    writer: Writer,
    allocator: Option<Allocator>,
    /// Writes decided but not started yet.
    queue: VecDeque<Job>,
    /// Writes in flight (at most [`WRITE_CONCURRENCY`]).
    writes: JoinSet<Done>,
    failures: BTreeMap<Target, u32>,
    retry_at: BTreeMap<Target, Instant>,
    /// Services changed since the last reconcile, and when the change was seen.
    changed_since: HashMap<ServiceKey, Instant>,
    dirty: bool,
    /// The next reconcile is the first of this leadership (logged).
    first_reconcile: bool,
    metrics: Arc<IpamMetrics>,
    health: Arc<Health>,
}

impl Controller {
    /// Starts the watches. `leading` says whether this replica may write.
    pub fn new(
        config: IpamConfig,
        client: Client,
        leading: watch::Receiver<bool>,
        metrics: Arc<IpamMetrics>,
        health: Arc<Health>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let services = spawn_watch(
            Api::all(client.clone()),
            Kind::Services,
            service_event,
            tx.clone(),
        );
        let pools = spawn_watch(
            Api::all(client.clone()),
            Kind::Pools,
            pool_event,
            tx.clone(),
        );
        let writer = Writer {
            client,
            services: services.clone(),
            pools: pools.clone(),
            leading: leading.clone(),
        };
        Self {
            config,
            stores: (services, pools),
            inputs: rx,
            inputs_tx: tx,
            listed: BTreeMap::new(),
            leading,
            term: 0,
            leading_since: None,
            snapshot_pending: None,
            writer,
            allocator: None,
            queue: VecDeque::new(),
            writes: JoinSet::new(),
            failures: BTreeMap::new(),
            retry_at: BTreeMap::new(),
            changed_since: HashMap::new(),
            dirty: false,
            first_reconcile: false,
            metrics,
            health,
        }
    }

    /// Runs until `shutdown` resolves; queued writes are dropped then.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        self.metrics.leader.set(0);
        loop {
            let next_retry = self.retry_at.values().min().copied();
            let retry = async {
                match next_retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                changed = self.leading.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.leadership_changed();
                }
                input = self.inputs.recv() => {
                    let Some(input) = input else { break };
                    let mut batch = vec![input];
                    while let Ok(more) = self.inputs.try_recv() {
                        batch.push(more);
                    }
                    for input in batch {
                        self.handle(input);
                    }
                }
                Some(done) = self.writes.join_next(), if !self.writes.is_empty() => {
                    if let Ok(done) = done {
                        self.written(done);
                    }
                    self.start_writes();
                }
                _ = retry => self.retry_due(),
                _ = tick.tick() => self.health.beat(),
            }
            self.reconcile();
            self.metrics.writes_pending.set(self.writes_pending());
            self.metrics.retries_pending.set(self.retry_at.len() as i64);
        }
        self.queue.clear();
        self.writes.abort_all();
    }

    fn leadership_changed(&mut self) {
        let leading = *self.leading.borrow_and_update();
        if leading {
            self.metrics.leader.set(1);
            self.term += 1;
            self.leading_since = Some(Instant::now());
            self.start_leading();
        } else {
            self.metrics.leader.set(0);
            if self.allocator.take().is_some() {
                warn!("lost the operator lease: stopped writing");
            }
            self.queue.clear();
            self.writes.abort_all();
            self.failures.clear();
            self.retry_at.clear();
            self.changed_since.clear();
            self.metrics.clear_stats();
        }
    }

    /// Builds the allocator from complete lists once this replica leads and both watches
    /// have listed; nothing is written before that first reconcile. The Service cache serves
    /// when its list finished after the lease was won; otherwise (a standby taking over) it
    /// may lag behind the last writes of the previous leader, so the Services are listed
    /// afresh first: building from a stale view could hand out an address that leader had
    /// just assigned. (Pools are written by users; a stale pool status only costs a write
    /// refused by its precondition.)
    fn start_leading(&mut self) {
        if self.allocator.is_some() || !*self.leading.borrow() || self.listed.len() < 2 {
            return;
        }
        let fresh = self.leading_since.is_some_and(|since| {
            self.listed
                .get(&Kind::Services)
                .is_some_and(|at| *at >= since)
        });
        if fresh {
            let services = self.stores.0.state();
            let events = services.iter().map(|s| service_event(s, false));
            self.build(events, "caches");
        } else if self.snapshot_pending != Some(self.term) {
            self.snapshot_pending = Some(self.term);
            tokio::spawn(read_snapshot(
                self.writer.client.clone(),
                self.term,
                self.leading.clone(),
                self.inputs_tx.clone(),
            ));
        }
    }

    /// A new allocator from the cached pools and a complete list of Services.
    fn build(&mut self, services: impl Iterator<Item = Event>, from: &str) {
        let started = Instant::now();
        let mut allocator = Allocator::new(self.config.clone());
        let (mut pool_count, mut service_count) = (0, 0);
        let pools: Vec<Event> = self
            .stores
            .1
            .state()
            .iter()
            .map(|p| pool_event(p, false))
            .collect();
        for event in pools.into_iter().chain(services) {
            match &event {
                Event::ServiceUpserted(svc) => {
                    self.changed_since.insert(svc.key.clone(), started);
                    service_count += 1;
                }
                _ => pool_count += 1,
            }
            allocator.apply(event);
        }
        info!(
            pools = pool_count,
            services = service_count,
            from,
            "leading: allocator built from the full lists"
        );
        self.allocator = Some(allocator);
        self.dirty = true;
        self.first_reconcile = true;
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Snapshot { term, services } => {
                let current = term == self.term && *self.leading.borrow();
                if current && self.allocator.is_none() {
                    self.build(services.into_iter(), "a fresh list of Services");
                }
            }
            Input::Listed(kind) => {
                self.listed.insert(kind, Instant::now());
                if self.listed.len() == 2 {
                    self.health.set_ready(true);
                }
                if self.allocator.is_some() {
                    self.resync(kind);
                } else {
                    self.start_leading();
                }
            }
            Input::Event(event) => {
                let Some(allocator) = &mut self.allocator else {
                    return;
                };
                if let Event::ServiceUpserted(svc) = &event {
                    self.changed_since
                        .entry(svc.key.clone())
                        .or_insert_with(Instant::now);
                }
                allocator.apply(event);
                self.dirty = true;
            }
        }
    }

    /// After a relist: objects deleted while the watch was down produced no event.
    fn resync(&mut self, kind: Kind) {
        let Some(allocator) = &mut self.allocator else {
            return;
        };
        match kind {
            Kind::Services => {
                let services = self.stores.0.state();
                let present: BTreeSet<ServiceKey> = services
                    .iter()
                    .map(|s| ServiceKey::new(s.namespace().unwrap_or_default(), s.name_any()))
                    .collect();
                for key in allocator.assignments().into_keys() {
                    if !present.contains(&key) {
                        allocator.apply(Event::ServiceDeleted(key));
                    }
                }
                for svc in &services {
                    allocator.apply(service_event(svc, false));
                }
            }
            Kind::Pools => {
                let pools = self.stores.1.state();
                let present: BTreeSet<String> = pools.iter().map(|p| p.name_any()).collect();
                for name in allocator.stats().pools.into_keys() {
                    if !present.contains(&name) {
                        allocator.apply(Event::PoolDeleted(name));
                    }
                }
                for pool in &pools {
                    allocator.apply(pool_event(pool, false));
                }
            }
        }
        self.dirty = true;
    }

    fn reconcile(&mut self) {
        if !self.dirty {
            return;
        }
        let Some(allocator) = &mut self.allocator else {
            return;
        };
        self.dirty = false;
        let started = std::time::Instant::now();
        let first = std::mem::take(&mut self.first_reconcile);
        let decisions = allocator.reconcile();
        let took = started.elapsed();
        self.metrics.reconcile_seconds.observe(took.as_secs_f64());
        let stats = allocator.stats();
        if first || took > Duration::from_millis(100) {
            info!(
                took_ms = took.as_millis() as u64,
                services = stats.services_matching,
                unsatisfied = stats.services_unsatisfied,
                writes = decisions.services.len() + decisions.pools.len(),
                "reconciled"
            );
        }
        self.dispatch(decisions);
        self.changed_since.clear();
        // Pending writes first: a scrape that sees the new numbers sees them pending too.
        self.metrics.writes_pending.set(self.writes_pending());
        self.metrics.set_stats(&stats);
    }

    fn dispatch(&mut self, decisions: Decisions) {
        let now = Instant::now();
        for update in decisions.services {
            let job = match update {
                ServiceUpdate::Set {
                    key,
                    ingress_ips,
                    condition,
                } => Job::ServiceSet {
                    since: self.changed_since.get(&key).copied().unwrap_or(now),
                    key,
                    ips: ingress_ips,
                    condition,
                },
                ServiceUpdate::Clear { key } => Job::ServiceClear(key),
            };
            self.queue.push_back(job);
        }
        for update in decisions.pools {
            self.queue.push_back(Job::Pool {
                name: update.name,
                conditions: update.conditions,
            });
        }
        self.start_writes();
    }

    /// Starts queued writes up to the concurrency limit.
    fn start_writes(&mut self) {
        while self.writes.len() < WRITE_CONCURRENCY {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            self.writes.spawn(self.writer.clone().run(job));
        }
    }

    fn writes_pending(&self) -> i64 {
        i64::try_from(self.queue.len() + self.writes.len()).unwrap_or(i64::MAX)
    }

    fn written(&mut self, done: Done) {
        let kind = match done.target {
            Target::Pool(_) => "pool",
            _ => "service",
        };
        let outcome = match done.outcome {
            Outcome::Written => "ok",
            Outcome::Nothing => "unchanged",
            Outcome::Conflict => "conflict",
            Outcome::NotFound => "not_found",
            Outcome::Failed => "error",
            Outcome::NotLeading => return,
        };
        self.metrics.write(kind, outcome);
        if let Some(latency) = done.latency {
            self.metrics
                .allocation_seconds
                .observe(latency.as_secs_f64());
        }
        match done.outcome {
            Outcome::Conflict | Outcome::Failed => {
                let failures = self.failures.entry(done.target.clone()).or_insert(0);
                *failures += 1;
                let at = Instant::now() + retry_backoff(*failures);
                self.retry_at.insert(done.target, at);
            }
            // Gone: its delete event settles it.
            _ => {
                self.failures.remove(&done.target);
            }
        }
    }

    /// Failed writes whose backoff has passed go back to the allocator.
    fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Target> = self
            .retry_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, _)| t.clone())
            .collect();
        let Some(allocator) = &mut self.allocator else {
            self.retry_at.clear();
            return;
        };
        for target in due {
            self.retry_at.remove(&target);
            match &target {
                Target::ServiceSet(key) => allocator.retry_service(key),
                Target::ServiceClear(key) => allocator.retry_clear(key),
                Target::Pool(name) => allocator.retry_pool(name),
            }
        }
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_250ms_to_5min() {
        assert_eq!(retry_backoff(1), Duration::from_millis(250));
        assert_eq!(retry_backoff(2), Duration::from_millis(500));
        assert_eq!(retry_backoff(5), Duration::from_secs(4));
        assert_eq!(retry_backoff(12), Duration::from_secs(300));
        assert_eq!(retry_backoff(u32::MAX), Duration::from_secs(300));
    }

    fn k8s_service(json: &str) -> Service {
        serde_json::from_str(json).expect("service JSON")
    }

    #[test]
    fn watch_events_become_allocator_events() {
        let svc = k8s_service(
            r#"{"metadata": {"namespace": "default", "name": "my-service"},
                "spec": {"type": "LoadBalancer"}}"#,
        );
        match service_event(&svc, false) {
            Event::ServiceUpserted(s) => {
                assert_eq!(s.key, ServiceKey::new("default", "my-service"));
                assert!(s.load_balancer);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            service_event(&svc, true),
            Event::ServiceDeleted(ServiceKey::new("default", "my-service"))
        );
        let pool = CiliumLoadBalancerIPPool::new("ip-pool-eno1", Default::default());
        assert_eq!(
            pool_event(&pool, true),
            Event::PoolDeleted("ip-pool-eno1".into())
        );
    }
}
