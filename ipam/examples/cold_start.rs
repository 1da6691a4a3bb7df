//! Cold-start benchmark: N LoadBalancer services (default 10,000) over 20 pools, from an
//! empty state, then a restart that re-adopts every address from the services' status.
//!
//! `cargo run --release -p l2announcer-ipam --example cold_start -- [services] [pools] [v4 prefix]`
//!
//! Prints wall and CPU time per phase, resident memory (Linux /proc) and the live heap bytes
//! counted by a wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service as K8sService, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use l2announcer_ipam::{
    Allocator, Block, Config, Event, Pool, PoolSelector, ServiceUpdate, service_from_k8s,
};

/// Counts live heap bytes, so the allocator's own memory can be told apart from the rest.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_heap() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of this (only) thread so far, from the scheduler's own accounting.
fn cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        stat.split_whitespace().next()?.parse().ok()?,
    ))
}

fn cpu_since(start: Option<Duration>) -> String {
    match (start, cpu()) {
        (Some(a), Some(b)) => format!("{:?}", b.saturating_sub(a)),
        _ => "n/a".to_string(),
    }
}

fn pools(count: usize, prefix: u8) -> Vec<Pool> {
    (0..count)
        .map(|i| {
            let mut blocks = vec![
                Block::parse(Some(&format!("10.{i}.0.0/{prefix}")), None, None)
                    .expect("valid cidr"),
            ];
            blocks.push(
                Block::parse(Some(&format!("2001:db8:{i:x}::/64")), None, None)
                    .expect("valid cidr"),
            );
            let mut p = Pool::new(format!("pool-{i}"), blocks);
            p.created = i as i64;
            p.allow_first_last = i % 2 == 0;
            p.selector = Some(PoolSelector::from(&LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "network".to_string(),
                    format!("net-{i}"),
                )])),
                match_expressions: None,
            }));
            p
        })
        .collect()
}

fn k8s_services(count: usize, pools: usize) -> Vec<K8sService> {
    (0..count)
        .map(|i| {
            let mut annotations = BTreeMap::new();
            if i % 10 == 0 {
                // Pairs of services sharing one address (ports differ).
                annotations.insert(
                    "lbipam.cilium.io/sharing-key".to_string(),
                    format!("share-{}", i / 20),
                );
            }
            K8sService {
                metadata: ObjectMeta {
                    namespace: Some(format!("ns-{}", i % 50)),
                    name: Some(format!("svc-{i}")),
                    labels: Some(BTreeMap::from([(
                        "network".to_string(),
                        format!("net-{}", i % pools),
                    )])),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                },
                spec: Some(ServiceSpec {
                    type_: Some("LoadBalancer".into()),
                    ip_family_policy: Some(
                        if i % 4 == 0 {
                            "PreferDualStack"
                        } else {
                            "SingleStack"
                        }
                        .into(),
                    ),
                    ports: Some(vec![ServicePort {
                        port: 80 + (i % 20) as i32,
                        ..ServicePort::default()
                    }]),
                    selector: Some(BTreeMap::from([("app".to_string(), format!("app-{i}"))])),
                    ..ServiceSpec::default()
                }),
                status: None,
            }
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let pool_count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    // A smaller IPv4 prefix leaves services unsatisfied, to measure that case too.
    let prefix: u8 = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let rss_start = peak_rss_kib();

    let t = Instant::now();
    let objects = k8s_services(services, pool_count);
    let build = t.elapsed();
    let rss_objects = peak_rss_kib();

    let t = Instant::now();
    let inputs: Vec<_> = objects.iter().map(service_from_k8s).collect();
    let convert = t.elapsed();
    drop(objects);
    let keys: Vec<_> = inputs.iter().map(|s| s.key.clone()).collect();

    let rss_inputs = rss_kib();
    let heap_inputs = live_heap();
    let cpu_start = cpu();
    let t = Instant::now();
    let mut alloc = Allocator::new(Config::default());
    for p in pools(pool_count, prefix) {
        alloc.apply(Event::PoolUpserted(p));
    }
    for s in inputs {
        alloc.apply(Event::ServiceUpserted(s));
    }
    let apply = t.elapsed();
    let t = Instant::now();
    let decisions = alloc.reconcile();
    let reconcile = t.elapsed();
    let alloc_cpu = cpu_since(cpu_start);
    let rss_peak = peak_rss_kib();
    let rss_alloc = rss_kib();
    let heap_alloc = live_heap();
    let stats = alloc.stats();
    let addresses: usize = alloc.assignments().values().map(Vec::len).sum();
    let service_writes = decisions
        .services
        .iter()
        .filter(|d| matches!(d, ServiceUpdate::Set { .. }))
        .count();

    // Restart: a fresh allocator fed the services as the API server now shows them.
    let restart_inputs: Vec<_> = keys
        .iter()
        .filter_map(|k| alloc.service(k))
        .map(|s| {
            let mut s = s.clone();
            s.ingress_ips = alloc.service_ips(&s.key).unwrap_or_default().to_vec();
            s.condition = alloc.service_condition(&s.key).cloned();
            s
        })
        .collect();
    let cpu_start = cpu();
    let t = Instant::now();
    let mut restarted = Allocator::new(Config::default());
    for p in pools(pool_count, prefix) {
        restarted.apply(Event::PoolUpserted(p));
    }
    for s in restart_inputs.into_iter().rev() {
        restarted.apply(Event::ServiceUpserted(s));
    }
    let restart_decisions = restarted.reconcile();
    let restart = t.elapsed();
    let restart_cpu = cpu_since(cpu_start);
    let same = restarted.assignments() == alloc.assignments();

    // One more service on the warm state: the steady-state cost of an event.
    let Some(mut extra) = alloc.service(&keys[0]).cloned() else {
        std::process::exit(1);
    };
    extra.key.name = "one-more".into();
    let t = Instant::now();
    alloc.apply(Event::ServiceUpserted(extra));
    let one = alloc.reconcile();
    let steady = t.elapsed();

    // A reconcile with nothing to do: the fixed cost of an event that changes nothing.
    let t = Instant::now();
    let idle = alloc.reconcile();
    let idle_time = t.elapsed();
    if !idle.services.is_empty() {
        std::process::exit(1);
    }

    let kib = |v: Option<u64>| v.map_or("n/a".to_string(), |v| format!("{v} KiB"));
    println!("services: {services}, pools: {pool_count} (each a /{prefix} and a /64)");
    println!(
        "build k8s objects: {build:?} (peak RSS {} -> {})",
        kib(rss_start),
        kib(rss_objects)
    );
    println!("convert k8s -> input: {convert:?} (k8s objects dropped afterwards)");
    println!("apply events: {apply:?}");
    println!(
        "cold-start reconcile: {reconcile:?} ({service_writes} service writes, {} pool writes, \
         {addresses} addresses, {} unsatisfied)",
        decisions.pools.len(),
        stats.services_unsatisfied,
    );
    println!(
        "allocation total (apply + reconcile): {:?} wall, {alloc_cpu} CPU",
        apply + reconcile
    );
    println!(
        "RSS: {} with the inputs built, {} with the allocator (inputs moved in) and its decisions; peak {}",
        kib(rss_inputs),
        kib(rss_alloc),
        kib(rss_peak)
    );
    println!(
        "restart (apply + reconcile, reversed order): {restart:?} wall, {restart_cpu} CPU, \
         same assignments: {same}, writes: {}",
        restart_decisions.services.len()
    );
    println!(
        "live heap: inputs {} KiB; allocator state + its decisions {} KiB ({} bytes per service)",
        heap_inputs / 1024,
        heap_alloc / 1024,
        heap_alloc / services.max(1)
    );
    println!(
        "one more service on the warm state: {steady:?} wall ({} writes)",
        one.services.len()
    );
    println!("a reconcile with nothing to do: {idle_time:?} wall");
    if !same
        || !restart_decisions.services.is_empty()
        || (prefix <= 16 && stats.services_unsatisfied != 0)
    {
        eprintln!("unexpected result");
        std::process::exit(1);
    }
}
