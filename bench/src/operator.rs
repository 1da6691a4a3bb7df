//! The LB-IPAM operator's cold start: 20 pools and 10,000 Services already in the API, the
//! real `l2announcer operator` started against the API test kit (on loopback), the time until
//! every Service is satisfied, its memory and CPU; then a restart, which must re-adopt every
//! address without writing. As `tests/operator_lab.rs` `cold_start_10000_services` does it,
//! repeated for a spread.

use std::{
    collections::BTreeSet,
    fs,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use k8s_openapi::{
    api::core::v1::Service,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DynamicObject, ListParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use kube_testkit::TestKit;
use l2announcer_tests::{binary, http_get, metric, unique};
use serde_json::json;

use crate::{
    Ctx,
    lab::{cpu_seconds, memory_kib},
    report::{Headline, Section, Table},
    stats::{Summary, fmt, fmt_spread},
    svg::{Plot, PlotKind},
};

const POOLS: usize = 20;
const SATISFIED: &str = "cilium.io/IPAMRequestSatisfied";
/// The operator's own leader election: the test lab's fast timings, so that the restarted
/// replica does not wait out a lease (the stopped one releases it anyway).
const TIMINGS: [&str; 6] = [
    "--lease-duration",
    "3s",
    "--lease-renew-deadline",
    "1500ms",
    "--lease-retry-period",
    "500ms",
];

/// What one cold start (and its restart) measured.
#[derive(serde::Serialize)]
struct Run {
    services: usize,
    /// From spawning the operator until its /readyz (both watches listed).
    ready_s: f64,
    /// From spawning the operator until every Service is satisfied and no write is pending.
    satisfied_s: f64,
    cpu_s: f64,
    rss_kib: u64,
    peak_rss_kib: u64,
    status_writes: usize,
    restart_ready_s: f64,
    restart_settled_s: f64,
    restart_status_writes: usize,
    restart_cpu_s: f64,
    restart_rss_kib: u64,
    restart_peak_rss_kib: u64,
    moved: usize,
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let n = ctx.reps(10_000, 1_000);
    let reps = ctx.reps(3, 1);
    let mut runs = Vec::new();
    for _ in 0..reps {
        runs.push(one(n)?);
    }
    let col = |f: &dyn Fn(&Run) -> f64| -> anyhow::Result<Summary> {
        Summary::of(&runs.iter().map(f).collect::<Vec<_>>())
            .ok_or_else(|| anyhow::anyhow!("no runs"))
    };
    let satisfied = col(&|r| r.satisfied_s)?;
    let ready = col(&|r| r.ready_s)?;
    let cpu = col(&|r| r.cpu_s)?;
    let rss = col(&|r| r.rss_kib as f64 / 1024.0)?;
    let peak = col(&|r| r.peak_rss_kib as f64 / 1024.0)?;
    let writes = col(&|r| r.status_writes as f64)?;
    let r_settled = col(&|r| r.restart_settled_s)?;
    let r_writes = col(&|r| r.restart_status_writes as f64)?;
    let r_cpu = col(&|r| r.restart_cpu_s)?;
    let moved: usize = runs.iter().map(|r| r.moved).sum();

    let mut table = Table::new(
        &format!(
            "Cold start of {} Services over {POOLS} pools, median (min–max) of {reps} run(s)",
            fmt(n as f64)
        ),
        &["measure", "cold start", "restart"],
    );
    table.row(vec![
        "ready (both lists done), s".into(),
        fmt_spread(&ready),
        fmt_spread(&col(&|r| r.restart_ready_s)?),
    ]);
    table.row(vec![
        "every Service satisfied, nothing pending, s".into(),
        fmt_spread(&satisfied),
        fmt_spread(&r_settled),
    ]);
    table.row(vec![
        "Service status writes".into(),
        count_spread(&writes),
        count_spread(&r_writes),
    ]);
    table.row(vec![
        "operator CPU (user + system), s".into(),
        fmt_spread(&cpu),
        fmt_spread(&r_cpu),
    ]);
    table.row(vec![
        "RSS at the end, MiB".into(),
        fmt_spread(&rss),
        fmt_spread(&col(&|r| r.restart_rss_kib as f64 / 1024.0)?),
    ]);
    table.row(vec![
        "peak RSS, MiB".into(),
        fmt_spread(&peak),
        fmt_spread(&col(&|r| r.restart_peak_rss_kib as f64 / 1024.0)?),
    ]);
    Ok(Section {
        method: format!(
            "The API test kit on loopback holds {POOLS} `CiliumLoadBalancerIPPool`s \
             (`cilium.io/v2`, one /21 each, `10.p.0.0/21`, each selecting the Services labelled \
             `pool: pNN`) and {} LoadBalancer Services spread evenly over them, created before \
             the operator starts (8 concurrent writers through the kit's in-process client). \
             The real `l2announcer operator` is spawned (leader election 3 s / 1500 ms / 500 ms, \
             its lease is free); \"satisfied\" is when its metrics show every Service matching, \
             none unsatisfied and no status write or retry pending (polled every 100 ms), \
             timed from the spawn. CPU is utime + stime of the operator from /proc/<pid>/stat at \
             that moment; RSS and peak RSS are VmRSS and VmHWM from /proc/<pid>/status. Every \
             Service is then checked to hold a distinct address with the condition \
             `{SATISFIED}`. Then the operator gets SIGTERM, a new one is started, timed the same \
             way, and the kit's audit log counts its Service status writes (a restart should \
             re-adopt every address and write nothing). {reps} run(s), a fresh kit each.",
            fmt(n as f64)
        ),
        tables: vec![table],
        plots: vec![Plot {
            file: "operator.svg".into(),
            title: format!("Operator cold start, {} Services", fmt(n as f64)),
            unit: "s".into(),
            kind: PlotKind::Samples(vec![
                (
                    "cold start: all satisfied".into(),
                    runs.iter().map(|r| r.satisfied_s).collect(),
                ),
                (
                    "restart: settled".into(),
                    runs.iter().map(|r| r.restart_settled_s).collect(),
                ),
            ]),
        }],
        headline: vec![
            Headline::new(
                &format!(
                    "Operator cold start, {} Services / {POOLS} pools: all satisfied",
                    fmt(n as f64)
                ),
                format!("{} s, peak RSS {} MiB", fmt(satisfied.p50), fmt(peak.p50)),
                "–".into(),
                "–".into(),
            ),
            Headline::new(
                "Operator restart: Service status writes / addresses moved (worst run)",
                format!("{} / {moved}", r_writes.max),
                "Cilium: a restart reassigned addresses until fixed piecemeal (#40358, #41458, \
                 #43131; reference §6)"
                    .into(),
                if r_writes.max == 0.0 && moved == 0 {
                    "nothing rewritten, nothing moved".into()
                } else {
                    "see the table".into()
                },
            ),
        ],
        notes: vec![
            "The kit is an in-process API server on the same 2-core machine: it serves the \
             operator's lists, watch and every status write, so its CPU competes with the \
             operator's and a real API server's latency is not included."
                .into(),
            "Cilium's LB-IPAM is not run here; its scale test (50,000 Services, reference §7) \
             reports event processing times, not a cold start, so there is no like-for-like \
             number."
                .into(),
        ],
        raw: json!({"runs": runs}),
        ..Section::default()
    })
}

/// One cold start and restart on a fresh kit.
fn one(n: usize) -> anyhow::Result<Run> {
    let kit = TestKit::builder()
        .history_size(4 * n + 1000)
        .spawn_blocking()
        .context("start the API test kit")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = {
        let _guard = rt.enter();
        kit.backdoor_client()
    };
    rt.block_on(populate(client.clone(), n))?;

    kit.audit().clear();
    let started = Instant::now();
    let op = Operator::start(kit.kubeconfig_path(), "bench-operator-a")?;
    let ready_s = started.elapsed().as_secs_f64();
    op.wait_settled(n, Duration::from_secs(600))?;
    let satisfied_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds(op.pid());
    let (rss_kib, peak_rss_kib) = memory_kib(op.pid());
    let status_writes = count_status_writes(&kit);
    let before = rt.block_on(addresses(client.clone(), n))?;

    anyhow::ensure!(op.stop(), "the operator did not exit cleanly on SIGTERM");
    kit.audit().clear();
    let started = Instant::now();
    let op = Operator::start(kit.kubeconfig_path(), "bench-operator-b")?;
    let restart_ready_s = started.elapsed().as_secs_f64();
    op.wait_settled(n, Duration::from_secs(600))?;
    let restart_settled_s = started.elapsed().as_secs_f64();
    let restart_cpu_s = cpu_seconds(op.pid());
    let (restart_rss_kib, restart_peak_rss_kib) = memory_kib(op.pid());
    let restart_status_writes = count_status_writes(&kit);
    let after = rt.block_on(addresses(client, n))?;
    let moved = before.difference(&after).count();
    op.stop();
    Ok(Run {
        services: n,
        ready_s,
        satisfied_s,
        cpu_s,
        rss_kib,
        peak_rss_kib,
        status_writes,
        restart_ready_s,
        restart_settled_s,
        restart_status_writes,
        restart_cpu_s,
        restart_rss_kib,
        restart_peak_rss_kib,
        moved,
    })
}

/// "p50 (min–max)" of counts, as integers.
fn count_spread(s: &Summary) -> String {
    let f = |x: f64| {
        if x >= 1000.0 { fmt(x) } else { format!("{x}") }
    };
    format!("{} ({}–{})", f(s.p50), f(s.min), f(s.max))
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The pool CRD, {POOLS} pools and `n` Services (8 writers).
async fn populate(client: kube::Client, n: usize) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &l2announcer_api::ip_pool::crd()?)
        .await
        .context("create the pool CRD")?;
    let pools: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &resource(
            "cilium.io",
            "v2",
            "CiliumLoadBalancerIPPool",
            "ciliumloadbalancerippools",
        ),
    );
    for p in 0..POOLS {
        let pool: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": format!("pool-{p:02}")},
            "spec": {
                "blocks": [{"cidr": format!("10.{p}.0.0/21")}],
                "serviceSelector": {"matchLabels": {"pool": format!("p{p:02}")}},
            },
        }))?;
        pools
            .create(&PostParams::default(), &pool)
            .await
            .with_context(|| format!("create pool-{p:02}"))?;
    }
    let api: Api<Service> = Api::namespaced(client, "default");
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 8;
    for w in 0..workers {
        let api = api.clone();
        tasks.spawn(async move {
            for i in (w..n).step_by(workers) {
                let svc: Service = serde_json::from_value(json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": format!("svc-{i:05}"),
                        "labels": {"pool": format!("p{:02}", i % POOLS)},
                    },
                    "spec": {
                        "type": "LoadBalancer",
                        "selector": {"app": format!("app-{i}")},
                        "ports": [{"port": 80}],
                    },
                }))?;
                api.create(&PostParams::default(), &svc)
                    .await
                    .with_context(|| format!("create svc-{i:05}"))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Every Service's (name, address); fails unless all `n` are satisfied with distinct addresses.
async fn addresses(client: kube::Client, n: usize) -> anyhow::Result<BTreeSet<(String, String)>> {
    let api: Api<Service> = Api::namespaced(client, "default");
    let list = api.list(&ListParams::default()).await?;
    let mut out = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for svc in list.items {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let status = svc.status.unwrap_or_default();
        let ip = status
            .load_balancer
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.into_iter().next())
            .and_then(|i| i.ip);
        let satisfied = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == SATISFIED && c.status == "True" && c.reason == "satisfied");
        match ip {
            Some(ip) if satisfied => {
                ips.insert(ip.clone());
                out.insert((name, ip));
            }
            _ => anyhow::bail!("service {name} is not satisfied"),
        }
    }
    anyhow::ensure!(
        out.len() == n && ips.len() == n,
        "{} services satisfied with {} distinct addresses, expected {n}",
        out.len(),
        ips.len()
    );
    Ok(out)
}

/// Status writes to Services since the audit log was cleared.
fn count_status_writes(kit: &TestKit) -> usize {
    kit.audit()
        .entries()
        .iter()
        .filter(|e| {
            e.resource == "services"
                && e.subresource == "status"
                && matches!(e.verb.as_str(), "patch" | "update")
        })
        .count()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `l2announcer operator`, killed on drop.
struct Operator {
    child: Child,
    log: PathBuf,
    metrics: SocketAddr,
}

impl Operator {
    /// Spawns the operator and waits for its /readyz.
    fn start(kubeconfig: &Path, identity: &str) -> anyhow::Result<Operator> {
        let log = std::env::temp_dir().join(format!("{}.log", unique("l2a-bench-operator-")));
        let file = fs::File::create(&log)?;
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let child = Command::new(binary())
            .arg("operator")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--identity", identity])
            .args(["--leader-election-namespace", "kube-system"])
            .args(TIMINGS)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("spawn l2announcer operator")?;
        let mut op = Operator {
            child,
            log,
            metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = op.child.try_wait() {
                anyhow::bail!("operator exited with {status}:\n{}", op.log_text());
            }
            if let Some((200, _)) = http_get(op.metrics, "/readyz") {
                return Ok(op);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "operator not ready in 120 s:\n{}",
                op.log_text()
            );
            sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it leads, every Service matches and is satisfied, and no write is pending.
    fn wait_settled(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some((200, text)) = http_get(self.metrics, "/metrics") {
                let m = |s: &str| metric(&text, s);
                if m("l2announcer_ipam_leader") == Some(1.0)
                    && m("l2announcer_ipam_services_matching") == Some(n as f64)
                    && m("l2announcer_ipam_services_unsatisfied") == Some(0.0)
                    && m("l2announcer_ipam_status_writes_pending") == Some(0.0)
                    && m("l2announcer_ipam_status_retries_pending") == Some(0.0)
                {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "operator not settled within {timeout:?}:\n{}",
                self.log_text()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM and wait: whether it exited successfully.
    fn stop(mut self) -> bool {
        // SAFETY: kill with the pid of a child we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_file(&self.log);
    }
}
