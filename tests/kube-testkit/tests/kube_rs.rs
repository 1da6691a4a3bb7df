//! The API server's semantics, checked through kube-rs over a real socket.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::ObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use kube_testkit::TestKit;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "testkit.example.io",
    version = "v1",
    kind = "Pool",
    namespaced,
    status = "PoolStatus"
)]
pub struct PoolSpec {
    pub cidr: String,
    #[serde(default)]
    pub size: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct PoolStatus {
    pub used: i32,
}

async fn install_pool_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Pool::crd())
        .await
        .unwrap();
    let established = kube::runtime::wait::await_condition(
        crds,
        "pools.testkit.example.io",
        kube::runtime::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(5), established)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn discovery_lists_builtins_and_new_crds() {
    let kit = TestKit::start().await.unwrap();
    let client = kit.client();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    for (group, kind) in [
        ("", "Service"),
        ("coordination.k8s.io", "Lease"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("apps", "DaemonSet"),
    ] {
        let found = d.groups().any(|g| {
            g.name() == group
                && g.recommended_resources()
                    .iter()
                    .any(|(r, _)| r.kind == kind)
        });
        assert!(found, "{group}/{kind} not discovered");
    }
    assert!(!d.has_group("testkit.example.io"));
    install_pool_crd(&client).await;
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    let g = d
        .get("testkit.example.io")
        .expect("the CRD's group is served");
    let (ar, caps) = g.recommended_kind("Pool").unwrap();
    assert_eq!(ar.plural, "pools");
    assert!(
        caps.subresources.iter().any(|(s, _)| s.plural == "status"),
        "{:?}",
        caps.subresources
    );
}

#[tokio::test]
async fn crud_status_codes_and_optimistic_concurrency() {
    let kit = TestKit::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
    let a = cms
        .create(&PostParams::default(), &cm("a", &[("k", "1")]))
        .await
        .unwrap();
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    assert_eq!(
        api_code(
            cms.create(&PostParams::default(), &cm("a", &[]))
                .await
                .unwrap_err()
        ),
        409
    );
    assert_eq!(api_code(cms.get("missing").await.unwrap_err()), 404);
    assert_eq!(
        api_code(
            cms.create(&PostParams::default(), &cm("Bad_Name", &[]))
                .await
                .unwrap_err()
        ),
        422
    );
    let in_missing_ns: Api<ConfigMap> = Api::namespaced(kit.client(), "nope");
    assert_eq!(
        api_code(
            in_missing_ns
                .create(&PostParams::default(), &cm("a", &[]))
                .await
                .unwrap_err()
        ),
        404
    );

    let mut stale = a.clone();
    let mut fresh = a.clone();
    fresh.data = Some(BTreeMap::from([("k".into(), "2".into())]));
    let b = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(b.resource_version(), a.resource_version());
    stale.data = Some(BTreeMap::from([("k".into(), "3".into())]));
    match cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        e => panic!("{e:?}"),
    }
    // generateName
    let g = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    generate_name: Some("gen-".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(g.name_any().starts_with("gen-") && g.name_any().len() == 9);
    // delete with a stale precondition, then for real
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: a.metadata.resource_version.clone(),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_code(cms.delete("a", &dp).await.unwrap_err()), 409);
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(cms.get("a").await.unwrap_err()), 404);
}

#[tokio::test]
async fn two_writers_race_and_nothing_is_lost() {
    let kit = TestKit::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
    cms.create(&PostParams::default(), &cm("counter", &[("n", "0")]))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            let mut done = 0;
            while done < 25 {
                let mut c = cms.get("counter").await.unwrap();
                let n: u32 = c.data.as_ref().unwrap()["n"].parse().unwrap();
                c.data = Some(BTreeMap::from([("n".into(), (n + 1).to_string())]));
                match cms.replace("counter", &PostParams::default(), &c).await {
                    Ok(_) => done += 1,
                    Err(kube::Error::Api(s)) if s.code == 409 => conflicts += 1,
                    Err(e) => panic!("{e:?}"),
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let c = cms.get("counter").await.unwrap();
    assert_eq!(c.data.unwrap()["n"], "50");
    println!("optimistic concurrency: 50 increments, {conflicts} conflicts retried");
}

#[tokio::test]
async fn patches_of_every_type() {
    let kit = TestKit::start().await.unwrap();
    let svcs: Api<Service> = Api::namespaced(kit.client(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web", "labels": {"a": "1"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP", "name": "http"}]}})).unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let pp = PatchParams::default();
    // strategic: ports merge by key
    let s = svcs
        .patch(
            "web",
            &pp,
            &Patch::Strategic(
                json!({"spec": {"ports": [{"port": 443, "protocol": "TCP", "name": "https"}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(s.spec.as_ref().unwrap().ports.as_ref().unwrap().len(), 2);
    // merge: lists replace
    let s = svcs.patch("web", &pp, &Patch::Merge(json!({"metadata": {"labels": {"a": null, "b": "2"}}, "spec": {"ports": [{"port": 53, "protocol": "UDP", "name": "dns"}]}}))).await.unwrap();
    assert_eq!(s.spec.as_ref().unwrap().ports.as_ref().unwrap().len(), 1);
    assert_eq!(s.labels().get("b").map(String::as_str), Some("2"));
    assert!(!s.labels().contains_key("a"));
    // json patch, with a failing test op
    let jp: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/spec/type", "value": "ClusterIP"}]),
    )
    .unwrap();
    let s = svcs
        .patch("web", &pp, &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(s.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/type", "value": "NodePort"}]))
            .unwrap();
    assert_eq!(
        api_code(
            svcs.patch("web", &pp, &Patch::<()>::Json(bad))
                .await
                .unwrap_err()
        ),
        422
    );
    // status subresource: main resource ignores status, /status ignores the rest
    let st = svcs
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        st.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
            .ip
            .as_deref(),
        Some("192.0.2.10")
    );
    let s = svcs
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"status": {"loadBalancer": null}})),
        )
        .await
        .unwrap();
    assert!(s.status.unwrap().load_balancer.unwrap().ingress.is_some());
}

#[tokio::test]
async fn server_side_apply_by_two_managers() {
    let kit = TestKit::start().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(kit.client(), "default");
    let cfg = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l"}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}})
    };
    let l = leases
        .patch("l", &PatchParams::apply("agent-a"), &Patch::Apply(cfg("a")))
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("a"));
    let mf = l.metadata.managed_fields.unwrap();
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("agent-a"), Some("Apply"))
    );
    match leases
        .patch("l", &PatchParams::apply("agent-b"), &Patch::Apply(cfg("b")))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("agent-a") && s.message.contains(".spec.holderIdentity"),
                "{}",
                s.message
            );
        }
        e => panic!("{e:?}"),
    }
    let l = leases
        .patch(
            "l",
            &PatchParams::apply("agent-b").force(),
            &Patch::Apply(cfg("b")),
        )
        .await
        .unwrap();
    assert_eq!(
        l.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("b")
    );
    // agent-a lost holderIdentity but still co-owns leaseDurationSeconds (same value).
    let owners: Vec<String> = l
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(owners.len(), 2);
    // agent-b stops managing leaseDurationSeconds: agent-a still owns it, so it stays.
    let l = leases
        .patch(
            "l",
            &PatchParams::apply("agent-b"),
            &Patch::Apply(
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l"}, "spec": {"holderIdentity": "b"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().lease_duration_seconds, Some(15));
    // apply creates when missing
    leases.patch("new", &PatchParams::apply("agent-a"), &Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "new"}, "spec": {}}))).await.unwrap();
    leases.get("new").await.unwrap();
}

#[tokio::test]
async fn custom_resources_generation_status_and_validation() {
    let kit = TestKit::start().await.unwrap();
    let client = kit.client();
    install_pool_crd(&client).await;
    let pools: Api<Pool> = Api::namespaced(client.clone(), "default");
    let p = pools
        .create(
            &PostParams::default(),
            &Pool::new(
                "p1",
                PoolSpec {
                    cidr: "10.0.0.0/24".into(),
                    size: 1,
                },
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(1));
    let p = pools
        .patch_status(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"used": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (p.metadata.generation, p.status.as_ref().map(|s| s.used)),
        (Some(1), Some(3))
    );
    let p = pools
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    let p = pools
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    let bad = pools
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": "huge"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(bad), 422);
    let strategic = pools
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 3}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(strategic), 415);
    // finalizers hold deletion until removed
    pools
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["testkit.example.io/hold"]}})),
        )
        .await
        .unwrap();
    pools.delete("p1", &DeleteParams::default()).await.unwrap();
    let p = pools.get("p1").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    pools
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(api_code(pools.get("p1").await.unwrap_err()), 404);
}

#[tokio::test]
async fn lists_select_and_page() {
    let kit = TestKit::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
    for i in 0..7 {
        let mut c = cm(&format!("c{i}"), &[]);
        c.metadata.labels = Some(BTreeMap::from([
            (
                "tier".into(),
                if i % 2 == 0 { "even" } else { "odd" }.into(),
            ),
            ("n".into(), i.to_string()),
        ]));
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    let names = |l: kube::api::ObjectList<ConfigMap>| {
        l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=odd"))
                .await
                .unwrap()
        ),
        ["c1", "c3", "c5"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier in (odd),n notin (1,3)"))
                .await
                .unwrap()
        ),
        ["c5"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("n>4"))
                .await
                .unwrap()
        ),
        ["c5", "c6"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        )
        .len(),
        0
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=c2"))
                .await
                .unwrap()
        ),
        ["c2"]
    );
    let mut all = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = cms.list(&lp).await.unwrap();
        let cont = page.metadata.continue_.clone();
        all.extend(names(page));
        match cont {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(all.len(), 7);
    assert_eq!(kit.audit().count("list", "configmaps"), 5 + 3);
}

#[tokio::test]
async fn watch_events_bookmarks_and_410() {
    let kit = TestKit::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.create(&PostParams::default(), &cm("w", &[]))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let mut s = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    let mut last_rv = 0u64;
    while let Some(ev) = s.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                let rv: u64 = o.resource_version().unwrap().parse().unwrap();
                assert!(rv > last_rv);
                last_rv = rv;
                seen.push(o.name_any());
            }
            WatchEvent::Bookmark(b) => {
                assert!(b.metadata.resource_version.parse::<u64>().unwrap() >= last_rv);
                break;
            }
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(seen, ["w", "w", "w"]);
    kit.faults().compact();
    let mut s = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn reflector_relists_after_410_and_streaming_lists_work() {
    let kit = TestKit::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let client = kit.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("before", &[]))
        .await
        .unwrap();
    for streaming in [false, true] {
        let (reader, writer) = reflector::store::<ConfigMap>();
        let cfg = if streaming {
            watcher::Config::default().streaming_lists()
        } else {
            watcher::Config::default()
        };
        let stream = reflector::reflector(writer, watcher(cms.clone(), cfg)).applied_objects();
        let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
        wait_for("the initial list", Duration::from_secs(5), || {
            reader.len() == 1
        })
        .await;
        let lists_before =
            kit.audit().count("list", "configmaps") + kit.audit().count("watch", "configmaps");
        kit.faults().compact();
        kit.faults().close_watches();
        let name = format!("after-{streaming}");
        cms.create(&PostParams::default(), &cm(&name, &[]))
            .await
            .unwrap();
        wait_for("the relisted state", Duration::from_secs(10), || {
            reader.state().iter().any(|c| c.name_any() == name)
        })
        .await;
        let lists_after =
            kit.audit().count("list", "configmaps") + kit.audit().count("watch", "configmaps");
        assert!(
            lists_after >= lists_before + 2,
            "expected a re-watch and a relist ({lists_before} -> {lists_after})"
        );
        task.abort();
        cms.delete(&name, &DeleteParams::default()).await.unwrap();
    }
}

#[tokio::test]
async fn outage_and_recovery_lose_no_events() {
    let kit = TestKit::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
    let backdoor: Api<ConfigMap> = Api::namespaced(kit.backdoor_client(), "default");
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("pre{i}"), &[]))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector::reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
    wait_for("the initial list", Duration::from_secs(5), || {
        reader.len() == 5
    })
    .await;

    kit.faults().outage(true);
    let refused = tokio::time::timeout(Duration::from_secs(5), cms.get("pre0"))
        .await
        .unwrap();
    assert!(refused.is_err(), "requests fail during the outage");
    for i in 0..5 {
        backdoor
            .create(&PostParams::default(), &cm(&format!("during{i}"), &[]))
            .await
            .unwrap();
    }
    backdoor
        .delete("pre0", &DeleteParams::default())
        .await
        .unwrap();
    backdoor
        .patch(
            "pre1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"changed": "yes"}})),
        )
        .await
        .unwrap();
    kit.faults().outage(false);

    let expected: Vec<String> = backdoor
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    wait_for("the reflector to catch up", Duration::from_secs(30), || {
        let mut names: Vec<String> = reader.state().iter().map(|c| c.name_any()).collect();
        names.sort();
        let changed = reader.state().iter().any(|c| {
            c.name_any() == "pre1" && c.data.as_ref().is_some_and(|d| d.contains_key("changed"))
        });
        names == expected && changed
    })
    .await;
    task.abort();
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        9
    );
}

#[tokio::test]
async fn injected_errors_latency_and_hangs() {
    let kit = TestKit::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
    cms.create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    // The in-process client has no retry layer: it sees every injected error.
    let direct: Api<ConfigMap> = Api::namespaced(kit.in_process_client(), "default");
    kit.faults().errors(503, 0.5);
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(match direct.get("x").await {
            Ok(_) => 200,
            Err(e) => api_code(e),
        });
    }
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 5, "{codes:?}");
    // kube's default client retries 503s: every call succeeds, the audit shows the errors.
    kit.audit().clear();
    for _ in 0..10 {
        cms.get("x").await.unwrap();
    }
    let answered_503 = kit
        .audit()
        .entries()
        .iter()
        .filter(|e| e.code == 503)
        .count();
    assert!(
        answered_503 >= 5,
        "half of the requests were answered 503 and retried ({answered_503})"
    );
    kit.faults().errors(429, 1.0);
    assert_eq!(api_code(direct.get("x").await.unwrap_err()), 429);
    kit.faults().clear();
    kit.faults().latency(Duration::from_millis(200));
    let t = Instant::now();
    cms.get("x").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    kit.faults().clear();
    kit.faults().hang(true);
    let hung = tokio::time::timeout(Duration::from_millis(300), cms.get("x")).await;
    assert!(hung.is_err(), "the request hangs");
    let pending = tokio::spawn({
        let cms = cms.clone();
        async move { cms.get("x").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    kit.faults().hang(false);
    tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn rbac_allows_and_denies() {
    let kit = TestKit::builder()
        .rbac(true)
        .token(
            "agent-token",
            "system:serviceaccount:kube-system:agent",
            &["agents"],
        )
        .token("nobody-token", "nobody", &[])
        .start()
        .await
        .unwrap();
    let admin = kit.client();
    let ns = "kube-system";
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &Role {
                metadata: ObjectMeta {
                    name: Some("leases".into()),
                    ..Default::default()
                },
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["coordination.k8s.io".into()]),
                    resources: Some(vec!["leases".into()]),
                    verbs: vec!["get".into(), "create".into(), "update".into()],
                    ..Default::default()
                }]),
            },
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: ObjectMeta {
                    name: Some("agent-leases".into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: "leases".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "agent".into(),
                    namespace: Some(ns.into()),
                    ..Default::default()
                }]),
            },
        )
        .await
        .unwrap();
    let agent: Api<Lease> = Api::namespaced(kit.client_with_token(Some("agent-token")), ns);
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {}})).unwrap();
    agent.create(&PostParams::default(), &lease).await.unwrap();
    agent.get("l").await.unwrap();
    match agent
        .delete("l", &DeleteParams::default())
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            assert!(
                s.message.contains("cannot delete resource \"leases\""),
                "{}",
                s.message
            );
        }
        e => panic!("{e:?}"),
    }
    let elsewhere: Api<Lease> =
        Api::namespaced(kit.client_with_token(Some("agent-token")), "default");
    assert_eq!(api_code(elsewhere.get("l").await.unwrap_err()), 403);
    let nobody: Api<Lease> = Api::namespaced(kit.client_with_token(Some("nobody-token")), ns);
    assert_eq!(api_code(nobody.get("l").await.unwrap_err()), 403);
    let anonymous: Api<Lease> = Api::namespaced(kit.client_with_token(None), ns);
    assert_eq!(api_code(anonymous.get("l").await.unwrap_err()), 401);
    let by_user = kit.audit().by_user();
    assert!(by_user["system:serviceaccount:kube-system:agent"] >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_and_watches_lose_nothing() {
    let kit = TestKit::start().await.unwrap();
    let writer: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
    let start_rv = writer
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    const AGENTS: usize = 12;
    const WATCHES: usize = 3;
    const WRITES: usize = 60;
    let mut watchers = Vec::new();
    for _ in 0..AGENTS {
        let client = kit.client();
        for _ in 0..WATCHES {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
            let rv = start_rv.clone();
            watchers.push(tokio::spawn(async move {
                let mut s = api
                    .watch(&WatchParams::default().timeout(30), &rv)
                    .await
                    .unwrap()
                    .boxed();
                let mut rvs = Vec::new();
                while rvs.len() < WRITES * 2 {
                    match s.try_next().await.unwrap() {
                        Some(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                            rvs.push(o.resource_version().unwrap().parse::<u64>().unwrap())
                        }
                        Some(WatchEvent::Bookmark(_)) => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                rvs
            }));
        }
    }
    let mut writers = Vec::new();
    for w in 0..3 {
        let api = writer.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES / 3 {
                let name = format!("w{w}-{i}");
                api.create(&PostParams::default(), &cm(&name, &[]))
                    .await
                    .unwrap();
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"v": "2"}})),
                )
                .await
                .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for w in watchers {
        let rvs = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rvs.len(), WRITES * 2);
        assert!(
            rvs.windows(2).all(|p| p[0] < p[1]),
            "events of one watch arrive in resourceVersion order"
        );
    }
}

#[tokio::test]
async fn in_process_client_and_audit() {
    let kit = TestKit::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kit.in_process_client(), "default");
    cms.create(&PostParams::default(), &cm("ip", &[]))
        .await
        .unwrap();
    cms.get("ip").await.unwrap();
    let mut w = cms
        .watch(&WatchParams::default().timeout(2), "0")
        .await
        .unwrap()
        .boxed();
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "ip"),
        other => panic!("{other:?}"),
    }
    let entries = kit.audit().entries();
    let create = entries.iter().find(|e| e.verb == "create").unwrap();
    assert_eq!(
        (
            create.resource.as_str(),
            create.namespace.as_str(),
            create.name.as_str(),
            create.code
        ),
        ("configmaps", "default", "", 201)
    );
    assert_eq!(kit.audit().count("get", "configmaps"), 1);
    assert_eq!(kit.audit().count("watch", "configmaps"), 1);
    kit.faults().outage(true);
    assert!(cms.get("ip").await.is_err());
    kit.faults().outage(false);
    cms.get("ip").await.unwrap();
}

#[tokio::test]
async fn metadata_only_lists_and_watches() {
    let kit = TestKit::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
    let mut c = cm("m", &[("big", "data")]);
    c.metadata.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
    cms.create(&PostParams::default(), &c).await.unwrap();
    let list = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.items[0].labels().get("a").map(String::as_str),
        Some("b")
    );
    let one = cms.get_metadata("m").await.unwrap();
    assert_eq!(
        one.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(
            Api::<kube::core::PartialObjectMeta<ConfigMap>>::namespaced(kit.client(), "default"),
            watcher::Config::default(),
        ),
    )
    .applied_objects();
    let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
    cms.create(&PostParams::default(), &cm("m2", &[]))
        .await
        .unwrap();
    wait_for("the metadata watcher", Duration::from_secs(5), || {
        reader.len() == 2
    })
    .await;
    task.abort();
}

#[test]
fn spawn_blocking_works_without_a_runtime() {
    let kit = TestKit::spawn_blocking().unwrap();
    let text = std::fs::read_to_string(kit.kubeconfig_path()).unwrap();
    assert!(text.contains(kit.url()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cms: Api<ConfigMap> = Api::namespaced(kit.client(), "default");
        cms.create(&PostParams::default(), &cm("sync", &[]))
            .await
            .unwrap();
    });
    let dir = kit.kubeconfig_path().parent().unwrap().to_path_buf();
    drop(kit);
    assert!(!dir.exists(), "the temporary directory is removed");
}

#[tokio::test]
async fn dry_run_collections_namespaces_and_selector_watches() {
    use k8s_openapi::api::core::v1::Namespace;
    let kit = TestKit::start().await.unwrap();
    let client = kit.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "scratch"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "scratch");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let rv = kit.resource_version();
    cms.create(&dry, &cm("ghost", &[])).await.unwrap();
    assert_eq!(api_code(cms.get("ghost").await.unwrap_err()), 404);
    assert_eq!(kit.resource_version(), rv, "a dry run stores nothing");

    let mut w = cms
        .watch(
            &WatchParams::default().labels("pick=yes").timeout(5),
            &rv.to_string(),
        )
        .await
        .unwrap()
        .boxed();
    for i in 0..4 {
        let mut c = cm(&format!("c{i}"), &[]);
        c.metadata.labels = Some(BTreeMap::from([(
            "pick".into(),
            if i < 2 { "yes" } else { "no" }.into(),
        )]));
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    cms.patch(
        "c2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"pick": "yes"}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "c0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"pick": "no"}}})),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match w.try_next().await.unwrap() {
            Some(WatchEvent::Added(o)) => seen.push(format!("ADDED {}", o.name_any())),
            Some(WatchEvent::Deleted(o)) => seen.push(format!("DELETED {}", o.name_any())),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED c0", "ADDED c1", "ADDED c2", "DELETED c0"]);

    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("pick=yes"),
        )
        .await
        .unwrap();
    let names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(names, ["c1", "c2"]);
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    nss.delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_code(nss.get("scratch").await.unwrap_err()), 404);
    let everywhere: Api<ConfigMap> = Api::all(client);
    let left: Vec<String> = everywhere
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert!(
        left.is_empty(),
        "deleting a namespace deletes its objects: {left:?}"
    );
}

#[tokio::test]
async fn server_side_apply_to_status_subresource() {
    let kit = TestKit::start().await.unwrap();
    let svcs: Api<Service> = Api::namespaced(kit.client(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}))
    .unwrap();
    let created = svcs.create(&PostParams::default(), &svc).await.unwrap();
    assert_eq!(
        created.spec.as_ref().unwrap().ip_families.as_deref(),
        Some(&["IPv4".to_string()][..])
    );
    let status = |ip: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "labels": {"ignored": "yes"}},
               "spec": {"type": "ClusterIP"},
               "status": {"loadBalancer": {"ingress": [{"ip": ip}]}, "conditions": [{"type": "Allocated", "status": "True",
                   "reason": "Ok", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    };
    let s = svcs
        .patch_status(
            "lb",
            &PatchParams::apply("ipam").force(),
            &Patch::Apply(status("192.0.2.1")),
        )
        .await
        .unwrap();
    assert_eq!(
        s.spec.as_ref().unwrap().type_.as_deref(),
        Some("LoadBalancer"),
        "/status ignores spec"
    );
    assert!(s.metadata.labels.is_none(), "/status ignores metadata");
    let st = s.status.unwrap();
    assert_eq!(
        st.load_balancer.unwrap().ingress.unwrap()[0].ip.as_deref(),
        Some("192.0.2.1")
    );
    assert_eq!(st.conditions.unwrap()[0].type_, "Allocated");
    let mf = s.metadata.managed_fields.unwrap();
    let ipam = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("ipam"))
        .unwrap();
    assert_eq!(ipam.subresource.as_deref(), Some("status"));
    // Another manager may not take the ingress without force.
    let err = svcs
        .patch_status(
            "lb",
            &PatchParams::apply("other"),
            &Patch::Apply(status("192.0.2.2")),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 409);
}
