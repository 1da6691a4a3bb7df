//! `l2announcer operator` end to end: the real binary, as child processes on loopback, against
//! the API test kit. The seed's pools (as its Terraform renders them) and its example
//! Services are applied verbatim with kubectl; the operator must give the Services addresses
//! from the right ranges, keep every address through a restart and a failover between two
//! replicas, and report conflicts, exhaustion and selector mismatches as Cilium does.
//!
//! No root needed. `cold_start_10000_services` is a benchmark (`--ignored`): it prints the
//! cold-start allocation time and the operator's memory, it asserts no time.

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use kube::{
    Api,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams},
    core::GroupVersionKind,
};
use kube_testkit::TestKit;
use l2announcer_tests::{binary, cpu_time, eventually, http_get, metric, unique};
use serde_json::{Value, json};

const LEASE_NAMESPACE: &str = "kube-system";
const LEASE_NAME: &str = "l2announcer-operator";

/// Fast lease timings so that failover takes seconds (valid by Cilium's rules).
const TIMINGS: [&str; 6] = [
    "--lease-duration",
    "3s",
    "--lease-renew-deadline",
    "1500ms",
    "--lease-retry-period",
    "500ms",
];

/// The seed's pools (as its Terraform renders them for eno1 and eno2) and its example
/// Services (my-service, api-internal, api-external), verbatim.
const SEED_POOLS: &str = include_str!("fixtures/seed/pools.yaml");
const SEED_SERVICES: &str = include_str!("fixtures/seed/services.yaml");

const SATISFIED: &str = "cilium.io/IPAMRequestSatisfied";

fn eno1_range() -> std::ops::RangeInclusive<IpAddr> {
    IpAddr::V4(Ipv4Addr::new(192, 168, 3, 150))..=IpAddr::V4(Ipv4Addr::new(192, 168, 3, 250))
}

fn eno2_range() -> std::ops::RangeInclusive<IpAddr> {
    IpAddr::V4(Ipv4Addr::new(192, 168, 4, 150))..=IpAddr::V4(Ipv4Addr::new(192, 168, 4, 250))
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn services_resource() -> ApiResource {
    resource("", "v1", "Service", "services")
}

fn pools_resource() -> ApiResource {
    resource(
        "cilium.io",
        "v2",
        "CiliumLoadBalancerIPPool",
        "ciliumloadbalancerippools",
    )
}

/// What the test reads of a Service.
#[derive(Clone, Debug, PartialEq)]
struct SvcState {
    ips: Vec<IpAddr>,
    /// `(status, reason, message)` of `cilium.io/IPAMRequestSatisfied`.
    condition: Option<(String, String, String)>,
}

fn svc_state(data: &Value) -> SvcState {
    let ips = data["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str()?.parse().ok())
        .collect();
    let condition = data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == SATISFIED)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("reason"), s("message"))
        });
    SvcState { ips, condition }
}

fn is_satisfied(s: &SvcState) -> bool {
    !s.ips.is_empty()
        && s.condition
            .as_ref()
            .is_some_and(|(status, reason, _)| status == "True" && reason == "satisfied")
}

/// The API test kit, a runtime for its client, and kubectl.
struct Lab {
    kit: TestKit,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Lab {
    fn new() -> Self {
        Self::with_kit(TestKit::builder())
    }

    fn with_kit(builder: kube_testkit::TestKitBuilder) -> Self {
        let kit = builder.spawn_blocking().expect("start the API test kit");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let client = {
            let _guard = rt.enter();
            kit.backdoor_client()
        };
        let lab = Lab { kit, rt, client };
        let crd = serde_json::to_string(&l2announcer_api::ip_pool::crd().expect("pool CRD"))
            .expect("CRD JSON");
        lab.apply(&crd);
        lab
    }

    fn kubeconfig(&self) -> &Path {
        self.kit.kubeconfig_path()
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        l2announcer_tests::Kubectl {
            netns: None,
            kubeconfig: self.kubeconfig().to_path_buf(),
        }
        .run(args, stdin)
    }

    fn apply(&self, yaml: &str) {
        self.kubectl(&["apply", "-f", "-"], Some(yaml));
    }

    fn apply_seed(&self) {
        self.apply(SEED_POOLS);
        self.apply(SEED_SERVICES);
    }

    fn services(&self) -> BTreeMap<String, SvcState> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &services_resource());
        let list = self
            .rt
            .block_on(api.list(&ListParams::default()))
            .expect("list services");
        list.items
            .iter()
            .map(|o| {
                (
                    format!(
                        "{}/{}",
                        o.metadata.namespace.clone().unwrap_or_default(),
                        o.metadata.name.clone().unwrap_or_default()
                    ),
                    svc_state(&o.data),
                )
            })
            .collect()
    }

    fn service(&self, name: &str) -> SvcState {
        self.services()
            .remove(&format!("default/{name}"))
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    fn service_object(&self, name: &str) -> DynamicObject {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), "default", &services_resource());
        self.rt.block_on(api.get(name)).expect("get service")
    }

    /// A pool's conditions by type: `(status, reason, message)`.
    fn pool_conditions(&self, name: &str) -> BTreeMap<String, (String, String, String)> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &pools_resource());
        let pool = self.rt.block_on(api.get(name)).expect("get pool");
        pool.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (s("type"), (s("status"), s("reason"), s("message")))
            })
            .collect()
    }

    fn lease_holder(&self) -> Option<String> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            LEASE_NAMESPACE,
            &resource("coordination.k8s.io", "v1", "Lease", "leases"),
        );
        let lease = self
            .rt
            .block_on(api.get_opt(LEASE_NAME))
            .expect("get lease")?;
        lease.data["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(String::from)
    }

    /// A LoadBalancer Service in `default` with these labels and annotations.
    fn create_service(&self, name: &str, labels: Value, annotations: Value, spec: Value) {
        let mut full_spec = json!({
            "type": "LoadBalancer",
            "selector": { "app": name },
            "ports": [{ "port": 80 }],
        });
        if let (Some(base), Some(extra)) = (full_spec.as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        let svc: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": name, "labels": labels, "annotations": annotations },
            "spec": full_spec,
        }))
        .expect("service object");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), "default", &services_resource());
        self.rt
            .block_on(api.create(&PostParams::default(), &svc))
            .expect("create service");
    }

    fn delete_service(&self, name: &str) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), "default", &services_resource());
        self.rt
            .block_on(api.delete(name, &DeleteParams::default()))
            .expect("delete service");
    }

    /// Waits until `f` holds for the Services, returning how long it took.
    fn wait_services(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&BTreeMap<String, SvcState>) -> bool,
    ) -> Duration {
        let started = Instant::now();
        let mut last = BTreeMap::new();
        let ok = eventually(timeout, || {
            last = self.services();
            f(&last)
        });
        assert!(ok, "{what}: not within {timeout:?}; services: {last:#?}");
        started.elapsed()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `l2announcer operator`, killed on drop (its log printed if the test failed).
struct Operator {
    child: Child,
    log: PathBuf,
    metrics: SocketAddr,
    identity: String,
}

impl Operator {
    fn start(kubeconfig: &Path, identity: &str) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", unique("l2a-operator-")));
        let file = fs::File::create(&log).expect("log file");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let child = Command::new(binary())
            .arg("operator")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--identity", identity])
            .args(["--leader-election-namespace", LEASE_NAMESPACE])
            .args(TIMINGS)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn l2announcer operator");
        let mut op = Operator {
            child,
            log,
            metrics,
            identity: identity.to_string(),
        };
        op.wait_ready();
        op
    }

    /// Ready: both watches have listed (leader or standby).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("operator exited with {status}:\n{}", self.log_text());
            }
            if let Some((200, _)) = http_get(self.metrics, "/readyz") {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("operator not ready in 60s:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metrics_text(&self) -> String {
        match http_get(self.metrics, "/metrics") {
            Some((200, body)) => body,
            other => panic!("{}: /metrics: {other:?}", self.identity),
        }
    }

    fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.metrics_text(), series)
    }

    fn leads(&self) -> bool {
        self.metric("l2announcer_ipam_leader") == Some(1.0)
    }

    /// Resident and peak resident memory in KiB, from /proc.
    fn memory_kib(&self) -> (u64, u64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status of the operator");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// CPU time (user + system) the operator has used so far.
    fn cpu(&self) -> Duration {
        cpu_time(self.child.id())
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill with the pid of a child we own.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM and wait: whether it exited successfully.
    fn stop(mut self) -> bool {
        self.signal(libc::SIGTERM);
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// SIGKILL and wait.
    fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- operator {} log ---\n{}",
                self.identity,
                self.log_text()
            );
        }
        let _ = fs::remove_file(&self.log);
    }
}

fn in_range(ips: &[IpAddr], range: &std::ops::RangeInclusive<IpAddr>) -> bool {
    !ips.is_empty() && ips.iter().all(|ip| range.contains(ip))
}

/// Status writes to Services since the audit log was cleared, by Service name.
fn service_status_writes(kit: &TestKit) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in kit.audit().entries() {
        if e.resource == "services" && e.subresource == "status" && e.verb == "patch" {
            *out.entry(e.name.clone()).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn seed_services_get_addresses_from_their_pools_and_keep_them_across_a_restart() {
    let lab = Lab::new();
    lab.apply_seed();
    let op = Operator::start(lab.kubeconfig(), "operator-a");
    let took = lab.wait_services("seed services satisfied", Duration::from_secs(30), |s| {
        ["my-service", "api-internal", "api-external"]
            .iter()
            .all(|n| s.get(&format!("default/{n}")).is_some_and(is_satisfied))
    });
    println!("seed: 3 services satisfied {took:?} after the operator was ready");

    let my = lab.service("my-service");
    let internal = lab.service("api-internal");
    let external = lab.service("api-external");
    assert!(in_range(&my.ips, &eno1_range()), "my-service: {my:?}");
    assert!(
        in_range(&internal.ips, &eno1_range()),
        "api-internal: {internal:?}"
    );
    assert!(
        in_range(&external.ips, &eno2_range()),
        "api-external: {external:?}"
    );
    assert_ne!(my.ips, internal.ips);
    assert_eq!(my.ips.len(), 1);

    // Pool status as Cilium writes it.
    let eno1 = lab.pool_conditions("ip-pool-eno1");
    let count = |c: &BTreeMap<String, (String, String, String)>, t: &str| c[t].2.clone();
    assert_eq!(count(&eno1, "cilium.io/IPsTotal"), "101");
    assert_eq!(count(&eno1, "cilium.io/IPsUsed"), "2");
    assert_eq!(count(&eno1, "cilium.io/IPsAvailable"), "99");
    assert_eq!(eno1["cilium.io/PoolConflict"].0, "False");
    let eno2 = lab.pool_conditions("ip-pool-eno2");
    assert_eq!(count(&eno2, "cilium.io/IPsUsed"), "1");

    // Written by Cilium's field manager; metrics agree.
    let obj = lab.service_object("my-service");
    let managers: Vec<&str> = obj
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert!(
        managers.contains(&"cilium-operator-lb-ipam"),
        "managers: {managers:?}"
    );
    assert!(op.leads());
    assert_eq!(lab.lease_holder().as_deref(), Some("operator-a"));
    let text = op.metrics_text();
    assert_eq!(
        metric(
            &text,
            "l2announcer_ipam_pool_addresses_used{pool=\"ip-pool-eno1\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "l2announcer_ipam_pool_addresses_available{pool=\"ip-pool-eno2\"}"
        ),
        Some(100.0)
    );
    assert_eq!(
        metric(&text, "l2announcer_ipam_services_unsatisfied"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "l2announcer_ipam_services_matching"),
        Some(3.0)
    );
    assert!(metric(&text, "l2announcer_ipam_allocation_seconds_count").is_some_and(|n| n >= 3.0));

    // SIGTERM releases the lease; a Service created meanwhile is served after the restart,
    // and nothing that had an address is rewritten or moved.
    assert!(op.stop(), "operator did not exit cleanly");
    assert_eq!(lab.lease_holder(), None, "the lease was not released");
    let before = lab.services();
    lab.create_service(
        "late",
        json!({ "network.example.com/interface": "eno1" }),
        json!({}),
        json!({}),
    );
    lab.kit.audit().clear();
    let started = Instant::now();
    let op = Operator::start(lab.kubeconfig(), "operator-b");
    lab.wait_services("late satisfied", Duration::from_secs(30), |s| {
        s.get("default/late").is_some_and(is_satisfied)
    });
    println!(
        "restart: new replica ready and the late service satisfied in {:?}",
        started.elapsed()
    );
    let after = lab.services();
    for (name, state) in &before {
        if state.condition.is_some() {
            assert_eq!(after[name], *state, "{name} changed across the restart");
        }
    }
    let late = &after["default/late"];
    assert!(in_range(&late.ips, &eno1_range()));
    assert!(!before.values().any(|s| s.ips == late.ips));
    let writes = service_status_writes(&lab.kit);
    assert_eq!(
        writes.keys().collect::<Vec<_>>(),
        vec!["late"],
        "status writes after the restart: {writes:?}"
    );
    assert!(op.leads());
    assert_eq!(lab.lease_holder().as_deref(), Some("operator-b"));

    // Widening a pool renumbers nothing: only the pool's counts change.
    let before = lab.services();
    lab.kit.audit().clear();
    lab.kubectl(
        &[
            "patch",
            "ciliumloadbalancerippools.cilium.io",
            "ip-pool-eno1",
            "--type=merge",
            "-p",
            r#"{"spec":{"blocks":[{"start":"192.168.3.150","stop":"192.168.3.250"},{"cidr":"192.168.30.0/24"}]}}"#,
        ],
        None,
    );
    let widened = eventually(Duration::from_secs(20), || {
        lab.pool_conditions("ip-pool-eno1")["cilium.io/IPsTotal"].2 == "357"
    });
    assert!(widened, "{:?}", lab.pool_conditions("ip-pool-eno1"));
    // Writes of the same reconcile may land a little after the pool's.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.services(), before, "widening the pool moved addresses");
    let writes = service_status_writes(&lab.kit);
    assert!(
        writes.is_empty(),
        "status writes after widening: {writes:?}"
    );
}

#[test]
fn failover_to_the_standby_keeps_every_address() {
    let builder = TestKit::builder()
        .token("operator-a-token", "operator-a", &[])
        .token("operator-b-token", "operator-b", &[]);
    let lab = Lab::with_kit(builder);
    let kubeconfig = |who: &str| {
        lab.kit
            .write_kubeconfig(who, Some(&format!("{who}-token")), None)
            .expect("kubeconfig")
    };
    let (config_a, config_b) = (kubeconfig("operator-a"), kubeconfig("operator-b"));
    lab.apply_seed();
    for i in 0..20 {
        let interface = if i % 2 == 0 { "eno1" } else { "eno2" };
        lab.create_service(
            &format!("svc-{i:02}"),
            json!({ "network.example.com/interface": interface }),
            json!({}),
            json!({}),
        );
    }
    let a = Operator::start(&config_a, "operator-a");
    let all_satisfied =
        |s: &BTreeMap<String, SvcState>| s.len() == 23 && s.values().all(is_satisfied);
    let took = lab.wait_services(
        "23 services satisfied",
        Duration::from_secs(30),
        all_satisfied,
    );
    println!("failover: 23 services satisfied {took:?} after the first replica was ready");
    let b = Operator::start(&config_b, "operator-b");
    assert!(
        eventually(Duration::from_secs(5), || a.leads()),
        "operator-a does not lead"
    );
    assert!(!b.leads(), "the standby claims to lead");
    thread::sleep(Duration::from_secs(2));
    let before = lab.services();
    // The standby watches but writes nothing.
    let by_b: Vec<_> = lab
        .kit
        .audit()
        .entries()
        .into_iter()
        .filter(|e| e.user == "operator-b" && !matches!(e.verb.as_str(), "get" | "list" | "watch"))
        .map(|e| format!("{} {}/{}", e.verb, e.resource, e.name))
        .collect();
    assert!(by_b.is_empty(), "the standby wrote: {by_b:?}");

    a.kill();
    let killed = Instant::now();
    lab.create_service(
        "after-failover",
        json!({ "network.example.com/interface": "eno2" }),
        json!({}),
        json!({}),
    );
    lab.wait_services(
        "the standby serves a new service",
        Duration::from_secs(30),
        |s| s.get("default/after-failover").is_some_and(is_satisfied),
    );
    let takeover = killed.elapsed();
    println!(
        "failover: after kill -9 of the leader, the standby satisfied a new service in {takeover:?} (lease duration 3s)"
    );
    assert!(b.leads());
    assert_eq!(lab.lease_holder().as_deref(), Some("operator-b"));
    // The standby's caches may lag the old leader's last writes: it listed them afresh.
    assert!(
        b.log_text().contains("a fresh list of Services"),
        "{}",
        b.log_text()
    );
    let after = lab.services();
    for (name, state) in &before {
        assert_eq!(after[name], *state, "{name} changed across the failover");
    }
    let new = &after["default/after-failover"];
    assert!(in_range(&new.ips, &eno2_range()));
    assert!(!before.values().any(|s| s.ips == new.ips));
    // Of the old services, the new leader rewrote none.
    let rewritten: Vec<_> = lab
        .kit
        .audit()
        .entries()
        .into_iter()
        .filter(|e| e.user == "operator-b" && e.resource == "services" && e.verb == "patch")
        .filter(|e| e.name != "after-failover")
        .map(|e| e.name)
        .collect();
    assert!(
        rewritten.is_empty(),
        "rewritten after failover: {rewritten:?}"
    );
}

#[test]
fn an_api_outage_stops_the_leader_writing_and_it_resumes_without_moving_anything() {
    let lab = Lab::new();
    lab.apply_seed();
    let op = Operator::start(lab.kubeconfig(), "operator-a");
    lab.wait_services("seed services satisfied", Duration::from_secs(30), |s| {
        s.len() == 3 && s.values().all(is_satisfied)
    });
    let before = lab.services();

    lab.kit.faults().outage(true);
    let outage = Instant::now();
    // Renewals fail: past the renew deadline (1.5 s) the replica must stop writing.
    assert!(
        eventually(Duration::from_secs(5), || !op.leads()),
        "still leading during the outage"
    );
    println!(
        "outage: stopped leading {:?} after the API went away",
        outage.elapsed()
    );
    // Created meanwhile (the backdoor is not affected by the outage).
    lab.create_service(
        "during-outage",
        json!({ "network.example.com/interface": "eno2" }),
        json!({}),
        json!({}),
    );
    thread::sleep(Duration::from_secs(1));
    lab.kit.faults().outage(false);
    let back = Instant::now();
    lab.wait_services("served after the outage", Duration::from_secs(30), |s| {
        s.get("default/during-outage").is_some_and(is_satisfied)
    });
    println!(
        "outage: the service created during the outage satisfied {:?} after the API came back",
        back.elapsed()
    );
    assert!(op.leads());
    let after = lab.services();
    for (name, state) in &before {
        assert_eq!(after[name], *state, "{name} changed across the outage");
    }
    assert!(in_range(&after["default/during-outage"].ips, &eno2_range()));
}

#[test]
fn failed_writes_are_retried_until_every_service_is_served() {
    let lab = Lab::new();
    lab.apply(SEED_POOLS);
    for i in 0..30 {
        lab.create_service(
            &format!("svc-{i:02}"),
            json!({ "network.example.com/interface": if i % 2 == 0 { "eno1" } else { "eno2" } }),
            json!({}),
            json!({}),
        );
    }
    // One request in five fails with a 500 (not retried by the client): status writes
    // fail, and so may lease renewals (leadership may come and go).
    lab.kit.faults().errors(500, 0.2);
    let op = Operator::start(lab.kubeconfig(), "operator-a");
    let took = lab.wait_services(
        "30 services satisfied despite errors",
        Duration::from_secs(60),
        |s| s.len() == 30 && s.values().all(is_satisfied),
    );
    lab.kit.faults().clear();
    let text = op.metrics_text();
    let failed = metric(
        &text,
        "l2announcer_ipam_status_writes_total{kind=\"service\",outcome=\"error\"}",
    )
    .unwrap_or(0.0);
    println!(
        "errors: 30 services satisfied in {took:?} with 20% of requests failing ({failed} failed service writes retried)"
    );
    assert!(
        failed > 0.0,
        "no write failed, the retry path was not exercised:\n{text}"
    );
    let s = lab.services();
    let mut ips: Vec<&IpAddr> = s.values().flat_map(|s| &s.ips).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 30, "an address was given twice: {s:#?}");
}

#[test]
fn conflicts_exhaustion_and_selector_mismatch_show_cilium_conditions() {
    let lab = Lab::new();
    lab.apply(SEED_POOLS);
    // Created after the seed's pools: a copy of eno1's pool that overlaps it, and a pool of
    // one address.
    lab.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata:
  name: ip-pool-eno1-copy
spec:
  blocks:
    - cidr: 192.168.3.240/28
  serviceSelector:
    matchLabels:
      network.example.com/interface: eno1
---
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata:
  name: tiny
spec:
  blocks:
    - start: 10.20.0.1
  serviceSelector:
    matchLabels:
      tier: tiny
---
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata:
  name: dual
spec:
  blocks:
    - cidr: 10.30.0.0/30
    - cidr: 2001:db8::/126
  serviceSelector:
    matchLabels:
      tier: dual
"#,
    );
    lab.create_service(
        "dual",
        json!({ "tier": "dual" }),
        json!({}),
        json!({ "ipFamilyPolicy": "RequireDualStack" }),
    );
    let tiny = json!({ "tier": "tiny" });
    lab.create_service("tiny-a", tiny.clone(), json!({}), json!({}));
    lab.create_service("tiny-b", tiny, json!({}), json!({}));
    lab.create_service(
        "wrong-pool",
        json!({ "network.example.com/interface": "eno1" }),
        json!({ "lbipam.cilium.io/ips": "192.168.4.200" }),
        json!({}),
    );
    lab.create_service(
        "no-pool",
        json!({ "network.example.com/interface": "eno9" }),
        json!({}),
        json!({}),
    );
    lab.create_service(
        "other-class",
        json!({ "network.example.com/interface": "eno1" }),
        json!({}),
        json!({ "loadBalancerClass": "example.com/other" }),
    );
    let op = Operator::start(lab.kubeconfig(), "operator-a");

    let reason = |s: &BTreeMap<String, SvcState>, n: &str| {
        s.get(&format!("default/{n}"))
            .and_then(|s| s.condition.clone())
            .map(|c| c.1)
    };
    lab.wait_services("conditions", Duration::from_secs(30), |s| {
        reason(s, "tiny-a").as_deref() == Some("satisfied")
            && reason(s, "tiny-b").as_deref() == Some("out_of_ips")
            && reason(s, "wrong-pool").as_deref() == Some("pool_selector_mismatch")
            && reason(s, "no-pool").as_deref() == Some("no_pool")
            && reason(s, "dual").as_deref() == Some("satisfied")
    });
    let s = lab.services();
    assert_eq!(
        s["default/tiny-a"].ips,
        vec!["10.20.0.1".parse::<IpAddr>().unwrap()]
    );
    assert!(s["default/tiny-b"].ips.is_empty());
    assert!(s["default/wrong-pool"].ips.is_empty());
    assert!(s["default/no-pool"].ips.is_empty());
    assert_eq!(
        s["default/other-class"],
        SvcState {
            ips: vec![],
            condition: None
        },
        "a foreign class is left alone"
    );
    let dual = &s["default/dual"].ips;
    assert_eq!(dual.len(), 2, "dual stack: {dual:?}");
    assert!(
        dual.contains(&"10.30.0.0".parse::<IpAddr>().unwrap()),
        "{dual:?}"
    );
    assert!(
        dual.contains(&"2001:db8::".parse::<IpAddr>().unwrap()),
        "{dual:?}"
    );
    let (_, _, message) = s["default/tiny-b"].condition.clone().unwrap();
    assert!(message.contains("ran out"), "{message}");

    let copy = lab.pool_conditions("ip-pool-eno1-copy");
    let conflict = &copy["cilium.io/PoolConflict"];
    assert_eq!(
        (conflict.0.as_str(), conflict.1.as_str()),
        ("True", "cidr_overlap")
    );
    assert!(conflict.2.contains("ip-pool-eno1"), "{}", conflict.2);
    assert_eq!(
        lab.pool_conditions("ip-pool-eno1")["cilium.io/PoolConflict"].0,
        "False"
    );
    assert_eq!(op.metric("l2announcer_ipam_conflicting_pools"), Some(1.0));
    let tiny_pool = lab.pool_conditions("tiny");
    assert_eq!(tiny_pool["cilium.io/IPsAvailable"].2, "0");

    // Freeing the one address satisfies the waiting service; moving the copy out of the
    // way resolves the conflict.
    lab.delete_service("tiny-a");
    lab.wait_services(
        "tiny-b takes the freed address",
        Duration::from_secs(30),
        |s| s.get("default/tiny-b").is_some_and(is_satisfied),
    );
    assert_eq!(
        lab.service("tiny-b").ips,
        vec!["10.20.0.1".parse::<IpAddr>().unwrap()]
    );
    // A Service that stops being a LoadBalancer leaves the operator's responsibility: what
    // it had set is removed, and the address returns to the pool.
    lab.kubectl(
        &[
            "patch",
            "service",
            "tiny-b",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"ClusterIP"}}"#,
        ],
        None,
    );
    lab.wait_services("tiny-b cleared", Duration::from_secs(30), |s| {
        s.get("default/tiny-b").is_some_and(|s| {
            *s == SvcState {
                ips: vec![],
                condition: None,
            }
        })
    });
    let back = eventually(Duration::from_secs(20), || {
        lab.pool_conditions("tiny")["cilium.io/IPsAvailable"].2 == "1"
    });
    assert!(back, "{:?}", lab.pool_conditions("tiny"));

    lab.kubectl(
        &[
            "patch",
            "ciliumloadbalancerippools.cilium.io",
            "ip-pool-eno1-copy",
            "--type=merge",
            "-p",
            r#"{"spec":{"blocks":[{"cidr":"192.168.5.0/28"}]}}"#,
        ],
        None,
    );
    let resolved = eventually(Duration::from_secs(20), || {
        let c = lab.pool_conditions("ip-pool-eno1-copy");
        c["cilium.io/PoolConflict"].0 == "False" && c["cilium.io/PoolConflict"].1 == "resolved"
    });
    assert!(resolved, "{:?}", lab.pool_conditions("ip-pool-eno1-copy"));
    assert_eq!(op.metric("l2announcer_ipam_conflicting_pools"), Some(0.0));
}

#[test]
fn disabled_operator_exits_at_once() {
    let out = Command::new(binary())
        .args(["operator", "--enabled=false"])
        .env("RUST_LOG", "info")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run l2announcer operator");
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("operator disabled"), "{log}");
}

/// Cold start of N Services (default 10,000; `OPERATOR_BENCH_SERVICES`) over 20 pools
/// through the real binary, then a restart. Prints times and memory; asserts only that
/// every Service ends up with an address and that the restart moves nothing.
#[test]
#[ignore = "benchmark: prints cold-start time and memory"]
fn cold_start_10000_services() {
    let n: usize = std::env::var("OPERATOR_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    const POOLS: usize = 20;
    let lab = Lab::with_kit(TestKit::builder().history_size(4 * n + 1000));
    let created = Instant::now();
    for p in 0..POOLS {
        lab.apply(&format!(
            "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: pool-{p:02}\nspec:\n  blocks:\n    - cidr: 10.{p}.0.0/21\n  serviceSelector:\n    matchLabels:\n      pool: p{p:02}\n"
        ));
    }
    {
        let client = lab.client.clone();
        lab.rt.block_on(async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client, "default", &services_resource());
            let mut tasks = tokio::task::JoinSet::new();
            let workers = 8;
            for w in 0..workers {
                let api = api.clone();
                tasks.spawn(async move {
                    for i in (w..n).step_by(workers) {
                        let svc: DynamicObject = serde_json::from_value(json!({
                            "apiVersion": "v1",
                            "kind": "Service",
                            "metadata": {
                                "name": format!("svc-{i:05}"),
                                "labels": { "pool": format!("p{:02}", i % POOLS) },
                            },
                            "spec": {
                                "type": "LoadBalancer",
                                "selector": { "app": format!("app-{i}") },
                                "ports": [{ "port": 80 }],
                            },
                        }))
                        .expect("service object");
                        api.create(&PostParams::default(), &svc)
                            .await
                            .expect("create service");
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("creator task");
            }
        });
    }
    println!(
        "bench: created {POOLS} pools and {n} services in {:?}",
        created.elapsed()
    );

    let wait_settled = |op: &Operator, timeout: Duration| -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let text = op.metrics_text();
            let m = |s: &str| metric(&text, s);
            if m("l2announcer_ipam_services_matching") == Some(n as f64)
                && m("l2announcer_ipam_services_unsatisfied") == Some(0.0)
                && m("l2announcer_ipam_status_writes_pending") == Some(0.0)
                && m("l2announcer_ipam_status_retries_pending") == Some(0.0)
            {
                return Some(started.elapsed());
            }
            thread::sleep(Duration::from_millis(100));
        }
        None
    };

    lab.kit.audit().clear();
    let test_cpu = cpu_time(std::process::id());
    let started = Instant::now();
    let op = Operator::start(lab.kubeconfig(), "operator-a");
    let ready = started.elapsed();
    let settled = wait_settled(&op, Duration::from_secs(600)).expect("cold start settles");
    let total = started.elapsed();
    let op_cpu = op.cpu();
    let kit_cpu = cpu_time(std::process::id()).saturating_sub(test_cpu);
    let (rss, peak) = op.memory_kib();
    let text = op.metrics_text();
    let latency_sum = metric(&text, "l2announcer_ipam_allocation_seconds_sum").unwrap_or(0.0);
    let latency_count = metric(&text, "l2announcer_ipam_allocation_seconds_count").unwrap_or(0.0);
    let writes = service_status_writes(&lab.kit).values().sum::<usize>();
    println!(
        "bench: cold start of {n} services over {POOLS} pools: ready (lists done) {ready:?}, all satisfied {total:?} after start ({settled:?} after ready); {writes} service status writes; mean event-to-write latency {:.2}s; operator RSS {} MiB (peak {} MiB); CPU: operator {op_cpu:?}, test kit (and test) {kit_cpu:?}",
        latency_sum / latency_count.max(1.0),
        rss / 1024,
        peak / 1024,
    );
    for line in op.log_text().lines() {
        if line.contains("allocator built") || line.contains("reconciled") {
            println!("bench: cold start log: {line}");
        }
    }
    let services = lab.services();
    let satisfied = services.values().filter(|s| is_satisfied(s)).count();
    assert_eq!(satisfied, n, "satisfied services");
    let mut ips: Vec<&IpAddr> = services.values().flat_map(|s| &s.ips).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), n, "every service has its own address");

    assert!(op.stop());
    lab.kit.audit().clear();
    let started = Instant::now();
    let op = Operator::start(lab.kubeconfig(), "operator-b");
    let ready = started.elapsed();
    let settled = wait_settled(&op, Duration::from_secs(600)).expect("restart settles");
    let (rss, peak) = op.memory_kib();
    let writes = service_status_writes(&lab.kit).values().sum::<usize>();
    println!(
        "bench: restart with {n} services: ready {ready:?}, settled {:?} after start; {writes} service status writes; operator RSS {} MiB (peak {} MiB)",
        started.elapsed(),
        rss / 1024,
        peak / 1024,
    );
    let _ = settled;
    for line in op.log_text().lines() {
        if line.contains("allocator built") || line.contains("reconciled") {
            println!("bench: restart log: {line}");
        }
    }
    assert_eq!(lab.services(), services, "the restart moved addresses");
}
