//! deploy/: generated CRDs up to date, every manifest parses into the typed Kubernetes objects
//! (and round-trips, so no field is misspelt or misplaced), the DaemonSet and Deployment say
//! what the agent and operator need, the all-in-one manifest applies into the API test kit
//! with kubectl, the Helm chart lints, renders and installs with real Helm (helm-sdkpy), the
//! Terraform module yields the seed's objects, and the dashboard and alerts use only metric
//! names the code exports.
//!
//! None of these needs root except `daemonset_args_are_accepted_by_the_binary` (it only runs
//! the binary's argument parser) and the metrics test (a standalone agent in a namespace).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::{Namespace, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube_testkit::TestKit;
use l2announcer_tests::{Kubectl, file_docs, yaml_docs};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

/// The seed's two policies and two pools: the project's one copy, tests/fixtures/seed/.
fn seed_fixture() -> Vec<Value> {
    ["policies.yaml", "pools.yaml"]
        .iter()
        .flat_map(|f| file_docs(&root().join("tests/fixtures/seed").join(f)))
        .collect()
}

/// Drops JSON nulls and empty objects that typed serialization leaves out or adds.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        // Typed fields may be floats (JSON-schema minimum): compare numbers by value.
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        other => other.clone(),
    }
}

/// Deserializes into `T` and back: equal JSON means every field is one `T` knows, in the
/// right place and of the right type.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what}: not a valid object: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        normalize(&back),
        normalize(doc),
        "{what}: fields lost or changed through the typed object (misspelt or misplaced?)"
    );
    typed
}

/// Every object in a manifest, checked against its typed form; returns them by kind.
fn typed_check(docs: &[Value], what: &str) -> BTreeMap<String, Vec<Value>> {
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for doc in docs {
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no kind"));
        let name = doc["metadata"]["name"].as_str().unwrap_or("?");
        let what = format!("{what}: {kind} {name}");
        match kind {
            "Namespace" => drop(round_trip::<Namespace>(doc, &what)),
            "ServiceAccount" => drop(round_trip::<ServiceAccount>(doc, &what)),
            "Service" => drop(round_trip::<Service>(doc, &what)),
            "ClusterRole" => drop(round_trip::<ClusterRole>(doc, &what)),
            "ClusterRoleBinding" => drop(round_trip::<ClusterRoleBinding>(doc, &what)),
            "Role" => drop(round_trip::<Role>(doc, &what)),
            "RoleBinding" => drop(round_trip::<RoleBinding>(doc, &what)),
            "DaemonSet" => drop(round_trip::<DaemonSet>(doc, &what)),
            "Deployment" => drop(round_trip::<Deployment>(doc, &what)),
            "CustomResourceDefinition" => drop(round_trip::<CustomResourceDefinition>(doc, &what)),
            "CiliumL2AnnouncementPolicy" => drop(
                serde_json::from_value::<l2announcer_api::CiliumL2AnnouncementPolicy>(doc.clone())
                    .unwrap_or_else(|e| panic!("{what}: {e}")),
            ),
            "CiliumLoadBalancerIPPool" => drop(
                serde_json::from_value::<
                    l2announcer_api::ip_pool::v2alpha1::CiliumLoadBalancerIPPool,
                >(doc.clone())
                .unwrap_or_else(|e| panic!("{what}: {e}")),
            ),
            // Prometheus Operator kinds have no k8s-openapi type: checked in their own tests.
            "ServiceMonitor" | "PrometheusRule" => {}
            other => panic!("{what}: unexpected kind {other}"),
        }
        by_kind
            .entry(kind.to_owned())
            .or_default()
            .push(doc.clone());
    }
    by_kind
}

fn kubectl_kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (installed by cargo xtask setup)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const OVERLAYS: &[&str] = &["default", "no-crds", "agent-only", "agent-only-no-crds"];

// ---------------------------------------------------------------------------------------------
// CRDs

#[test]
fn generated_files_are_up_to_date() {
    // The xtask's own check: the CRDs from the Rust types and the overlays rendered with
    // kustomize equal what is committed.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "crds",
            "--check",
        ])
        .current_dir(root())
        .output()
        .expect("cargo");
    assert!(
        out.status.success(),
        "cargo xtask crds --check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn crd_files_equal_the_rust_types() {
    let expected = [
        (
            "ciliuml2announcementpolicies",
            serde_json::to_value(l2announcer_api::l2_policy::crd()).unwrap(),
        ),
        (
            "ciliumloadbalancerippools",
            serde_json::to_value(l2announcer_api::ip_pool::crd().unwrap()).unwrap(),
        ),
    ];
    for dir in ["deploy/crds", "deploy/helm/l2announcer/crds"] {
        for (name, crd) in &expected {
            let path = root().join(dir).join(format!("{name}.yaml"));
            let docs = file_docs(&path);
            assert_eq!(docs.len(), 1, "{}", path.display());
            assert_eq!(
                &docs[0],
                crd,
                "{} differs from the Rust type",
                path.display()
            );
            round_trip::<CustomResourceDefinition>(&docs[0], &path.display().to_string());
        }
    }
}

#[test]
fn crds_read_the_same_with_a_yaml_1_1_parser() {
    // PyYAML implements YAML 1.1, where unquoted Yes/No are booleans.
    let script = r#"
import json, sys, yaml
for path in sys.argv[1:]:
    print(json.dumps([d for d in yaml.safe_load_all(open(path)) if d is not None]))
"#;
    // The CRD files, the rendered manifests (kustomize re-serializes them) and the chart's.
    let mut paths: Vec<PathBuf> = ["ciliuml2announcementpolicies", "ciliumloadbalancerippools"]
        .iter()
        .map(|n| deploy().join("crds").join(format!("{n}.yaml")))
        .collect();
    paths.extend(
        OVERLAYS
            .iter()
            .map(|o| deploy().join("manifests").join(format!("{o}.yaml"))),
    );
    paths.push(chart_path("crds/ciliumloadbalancerippools.yaml"));
    let out = Command::new("python3")
        .args(["-c", script])
        .args(&paths)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3 yaml (pip install pyyaml): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (path, v) in paths.iter().zip(&parsed) {
        assert_eq!(
            v,
            &Value::Array(file_docs(path)),
            "{}: YAML 1.1 reads it differently",
            path.display()
        );
    }
    let pool = parsed[1].to_string();
    assert!(
        pool.contains(r#"["Yes","No"]"#),
        "allowFirstLastIPs enum lost its strings"
    );
}

// ---------------------------------------------------------------------------------------------
// Manifests

#[test]
fn every_manifest_parses_into_typed_objects() {
    let mut files = 0;
    for overlay in OVERLAYS {
        let path = deploy().join("manifests").join(format!("{overlay}.yaml"));
        typed_check(&file_docs(&path), &path.display().to_string());
        files += 1;
    }
    for base in ["kustomize/base/agent", "kustomize/base/operator"] {
        for entry in std::fs::read_dir(deploy().join(base)).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() == "kustomization.yaml" {
                continue;
            }
            typed_check(&file_docs(&path), &path.display().to_string());
            files += 1;
        }
    }
    assert!(files >= 10, "{files} files");
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn overlays_hold_what_their_names_say() {
    for overlay in OVERLAYS {
        let docs = yaml_docs(
            &kubectl_kustomize(&deploy().join("kustomize/overlays").join(overlay)),
            overlay,
        );
        let k = kinds(&docs);
        let crds = k.iter().any(|k| k.starts_with("CustomResourceDefinition/"));
        let operator = k.contains("Deployment/l2announcer-operator");
        assert_eq!(crds, !overlay.contains("no-crds"), "{overlay}: {k:?}");
        assert_eq!(
            operator,
            !overlay.contains("agent-only"),
            "{overlay}: {k:?}"
        );
        assert!(k.contains("DaemonSet/l2announcer-agent"), "{overlay}");
        assert!(
            k.contains("ClusterRole/l2announcer-agent") && k.contains("Role/l2announcer-agent")
        );
        assert_eq!(
            k.contains("ClusterRole/l2announcer-operator"),
            operator,
            "{overlay}: operator RBAC without the operator or the reverse"
        );
        if crds {
            assert!(k.contains("CustomResourceDefinition/ciliuml2announcementpolicies.cilium.io"));
            assert!(k.contains("CustomResourceDefinition/ciliumloadbalancerippools.cilium.io"));
        }
    }
}

fn container<'a>(
    pod_spec: &'a k8s_openapi::api::core::v1::PodSpec,
    name: &str,
) -> &'a k8s_openapi::api::core::v1::Container {
    pod_spec
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn agent_daemonset() -> DaemonSet {
    let docs = file_docs(&deploy().join("manifests/default.yaml"));
    let doc = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    serde_json::from_value(doc.clone()).unwrap()
}

#[test]
fn daemonset_has_what_the_agent_needs_and_no_more() {
    let ds = agent_daemonset();
    let ns = ds.metadata.namespace.clone().unwrap();
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert!(
        pod.tolerations
            .as_ref()
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()),
        "tolerates every taint (control-plane nodes announce in the seed's pattern)"
    );
    let c = container(pod, "agent");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    let add: BTreeSet<&str> = caps
        .add
        .as_ref()
        .unwrap()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        add,
        BTreeSet::from(["BPF", "NET_ADMIN", "NET_RAW", "PERFMON"])
    );
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    // Downward API: NODE_NAME and POD_NAMESPACE, the agent's env-backed flags.
    let env: BTreeMap<&str, &str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let f = e.value_from.as_ref()?.field_ref.as_ref()?;
            Some((e.name.as_str(), f.field_path.as_str()))
        })
        .collect();
    assert_eq!(env.get("NODE_NAME"), Some(&"spec.nodeName"));
    assert_eq!(env.get("POD_NAMESPACE"), Some(&"metadata.namespace"));
    // Probes on the health endpoints, on the port the agent serves them.
    let port = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .unwrap();
    let args = c.args.as_ref().unwrap();
    assert!(args.contains(&format!("--metrics-addr=0.0.0.0:{}", port.container_port)));
    for (probe, path) in [
        (&c.liveness_probe, "/livez"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let http = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(http.path.as_deref(), Some(path));
        assert_eq!(
            http.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into())
        );
    }
    let limits = c.resources.as_ref().unwrap();
    assert!(limits.requests.as_ref().unwrap().contains_key("cpu"));
    assert!(limits.limits.as_ref().unwrap().contains_key("memory"));
    // bpffs from the host.
    let bpffs = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "bpffs")
        .unwrap();
    assert_eq!(bpffs.host_path.as_ref().unwrap().path, "/sys/fs/bpf");
    // Time to release the leases on SIGTERM: more than a renew deadline plus a retry.
    let lease_arg = |flag: &str| -> f64 {
        let v = args
            .iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("{flag} not set"));
        v.trim_end_matches('s').parse().unwrap()
    };
    let grace = pod.termination_grace_period_seconds.unwrap() as f64;
    assert!(
        grace >= lease_arg("--lease-renew-deadline") + lease_arg("--lease-retry-period") + 10.0
    );
    // The service account is the one the RBAC binds, in the same namespace.
    let rbac = file_docs(&deploy().join("kustomize/base/agent/rbac.yaml"));
    let sa = pod.service_account_name.as_deref().unwrap();
    for b in rbac
        .iter()
        .filter(|d| d["kind"].as_str().unwrap().ends_with("Binding"))
    {
        assert_eq!(b["subjects"][0]["name"], sa);
        assert_eq!(b["subjects"][0]["namespace"], ns.as_str());
    }
    let role = rbac.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(
        role["metadata"]["namespace"],
        ns.as_str(),
        "leases are granted where POD_NAMESPACE points"
    );
}

#[test]
fn operator_deployment_is_highly_available() {
    let docs = file_docs(&deploy().join("manifests/default.yaml"));
    let doc = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let d: Deployment = serde_json::from_value(doc.clone()).unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    let anti = pod.affinity.clone().unwrap().pod_anti_affinity.unwrap();
    let term = &anti
        .preferred_during_scheduling_ignored_during_execution
        .unwrap()[0];
    assert_eq!(
        term.pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let c = container(&pod, "operator");
    assert_eq!(c.args.as_ref().unwrap()[0], "operator");
    assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("l2announcer-operator")
    );
}

/// The DaemonSet's arguments and environment are accepted by the binary's parser: it gets past
/// argument parsing (clap exits 2 on a usage error) and fails later, on the missing kubeconfig.
#[test]
fn workload_args_are_accepted_by_the_binary() {
    let ds = agent_daemonset();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_args_accepted(container(&pod, "agent").args.as_ref().unwrap());
    let docs = file_docs(&deploy().join("manifests/default.yaml"));
    let d: Deployment = serde_json::from_value(
        docs.iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap()
            .clone(),
    )
    .unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_args_accepted(container(&pod, "operator").args.as_ref().unwrap());
}

/// Runs the binary with a workload's arguments and its downward-API environment: it must get
/// past argument parsing (clap exits 2 on a usage error) and fail later, on the missing
/// kubeconfig (read before anything touches the network or loads BPF).
fn assert_args_accepted(args: &[String]) {
    let out = Command::new(l2announcer_tests::binary())
        .args(args)
        .env("NODE_NAME", "node-1")
        .env("POD_NAMESPACE", "l2announcer")
        .env("POD_NAME", "operator-1")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("l2announcer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(2),
        "{args:?}: usage error: {stderr}"
    );
    assert!(
        !out.status.success(),
        "{args:?}: ran without a kubeconfig? {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("kubeconfig"),
        "{args:?}: {stderr}"
    );
}

#[test]
fn all_in_one_manifest_applies_into_the_test_kit() {
    let kit = TestKit::spawn_blocking().expect("test kit");
    let kubeconfig = kit.kubeconfig_path().to_owned();
    let kubectl = |args: &[&str]| -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("KUBECACHEDIR", kubeconfig.parent().unwrap().join("cache"))
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let manifest = deploy().join("manifests/default.yaml");
    let manifest = manifest.to_str().unwrap();
    let first = kubectl(&["apply", "-f", manifest]);
    let created = first.lines().filter(|l| l.ends_with(" created")).count();
    let expected = file_docs(Path::new(manifest)).len();
    assert_eq!(created, expected, "{first}");
    // Applying again changes nothing.
    let again = kubectl(&["apply", "-f", manifest]);
    assert!(again.lines().all(|l| l.ends_with(" unchanged")), "{again}");
    // The objects are there, and the CRDs serve their kinds.
    let ds = kubectl(&[
        "-n",
        "l2announcer",
        "get",
        "daemonset",
        "l2announcer-agent",
        "-o",
        "json",
    ]);
    let ds: Value = serde_json::from_str(&ds).unwrap();
    assert_eq!(ds["spec"]["template"]["spec"]["hostNetwork"], true);
    kubectl(&["get", "ciliuml2announcementpolicies"]);
    kubectl(&["get", "ciliumloadbalancerippools.cilium.io"]);
    // And the seed's policies and pools validate against the installed CRDs.
    let fixtures = root().join("tests/fixtures/seed");
    let out = kubectl(&[
        "apply",
        "-f",
        fixtures.join("policies.yaml").to_str().unwrap(),
        "-f",
        fixtures.join("pools.yaml").to_str().unwrap(),
    ]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        4,
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Helm (real Helm through helm-sdkpy)

fn python(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("python3")
        .args(args)
        .output()
        .expect("python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn helm(args: &[&str]) -> Value {
    let script = deploy().join("tests/helm_check.py");
    let mut full = vec![script.to_str().unwrap()];
    full.extend_from_slice(args);
    let (ok, stdout, stderr) = python(&full);
    assert!(
        ok,
        "helm_check.py {args:?} (pip install --ignore-requires-python helm-sdkpy; cargo xtask setup does): {stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("helm_check.py output: {e}: {stdout}"))
}

fn chart() -> PathBuf {
    deploy().join("helm/l2announcer")
}

/// Lint messages at warning or error severity (Helm: 1 info, 2 warning, 3 error).
fn lint_problems(result: &Value) -> Vec<String> {
    let mut out: Vec<String> = result["Messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Severity"].as_i64().unwrap_or(0) >= 2)
        .map(|m| m.to_string())
        .collect();
    out.extend(
        result["Errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e.to_string()),
    );
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn helm_chart_lints_clean_and_lint_catches_a_broken_chart() {
    let result = helm(&["lint", chart().to_str().unwrap()]);
    assert_eq!(result["TotalChartsLinted"], 1, "{result}");
    assert!(lint_problems(&result).is_empty(), "{result}");
    // The same lint on a copy with a template error reports it: the check can fail.
    let dir = std::env::temp_dir().join(format!("l2a-chart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&chart(), &dir);
    let ds = dir.join("templates/agent-daemonset.yaml");
    let text = std::fs::read_to_string(&ds).unwrap();
    std::fs::write(
        &ds,
        text.replace(
            "{{ .Values.agent.metricsPort }}",
            "{{ .Values.agent.metricsPort ",
        ),
    )
    .unwrap();
    let broken = helm(&["lint", dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !lint_problems(&broken).is_empty(),
        "lint accepted a broken template: {broken}"
    );
}

fn rules_of(docs: &[Value], kind: &str, name_suffix: &str) -> Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with(name_suffix)
        })
        .unwrap_or_else(|| panic!("no {kind} *{name_suffix}"))["rules"]
        .clone()
}

/// Prometheus Operator CRDs, reduced to what the API needs to store the chart's objects.
fn prometheus_operator_crds() -> String {
    [
        "servicemonitors:ServiceMonitor",
        "prometheusrules:PrometheusRule",
    ]
    .iter()
    .map(|pk| {
        let (plural, kind) = pk.split_once(':').unwrap();
        serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
            "spec": {
                "group": "monitoring.coreos.com",
                "names": {"plural": plural, "kind": kind, "singular": kind.to_lowercase()},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        })
        .to_string()
    })
    .collect::<Vec<_>>()
    .join("\n---\n")
}

/// A release installed by helm_check.py, which stays running (memory storage driver) until
/// [`HelmRelease::uninstall`] or drop.
struct HelmRelease {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    release: Value,
}

impl HelmRelease {
    fn install(chart: &str, kubeconfig: &str, namespace: &str, name: &str, values: &Value) -> Self {
        use std::io::BufRead as _;
        let script = deploy().join("tests/helm_check.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args([
                "install",
                chart,
                kubeconfig,
                namespace,
                name,
                &values.to_string(),
            ])
            // Helm's release storage in memory: see helm_check.py.
            .env("HELM_DRIVER", "memory")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "helm install {name} (pip install --ignore-requires-python helm-sdkpy; cargo xtask setup does): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let release = serde_json::from_str(&line).unwrap();
        HelmRelease {
            child,
            stdout,
            release,
        }
    }

    fn manifest(&self) -> Vec<Value> {
        let text = self.release["manifest"]
            .as_str()
            .unwrap_or_else(|| panic!("no manifest: {}", self.release));
        yaml_docs(text, "helm manifest")
    }

    /// `helm upgrade` to `values`; returns the new release.
    fn upgrade(&mut self, values: &Value) -> Value {
        use std::io::{BufRead as _, Write as _};
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "upgrade {values}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.trim().is_empty(), "helm upgrade failed (see stderr)");
        serde_json::from_str(&line).unwrap()
    }

    fn uninstall(mut self) -> Value {
        use std::io::{BufRead as _, Write as _};
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(b"uninstall\n").unwrap();
        drop(stdin);
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "helm uninstall failed");
        serde_json::from_str(&line).unwrap_or(Value::Null)
    }
}

impl Drop for HelmRelease {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn helm_chart_installs_into_the_test_kit() {
    let kit = TestKit::spawn_blocking().expect("test kit");
    let kubeconfig = kit.kubeconfig_path().to_owned();
    let k = Kubectl {
        netns: None,
        kubeconfig: kubeconfig.clone(),
    };
    let kc = kubeconfig.to_str().unwrap();
    let chart = chart();
    let chart = chart.to_str().unwrap();

    // 1. Default values, as `helm install l2announcer deploy/helm/l2announcer -n l2announcer
    //    --create-namespace`.
    let release = HelmRelease::install(
        chart,
        kc,
        "l2announcer",
        "l2announcer",
        &serde_json::json!({}),
    );
    let docs = release.manifest();
    let by_kind = typed_check(&docs, "helm manifest");
    for kind in [
        "DaemonSet",
        "Deployment",
        "ClusterRole",
        "Role",
        "ServiceAccount",
        "Service",
    ] {
        assert!(
            by_kind.contains_key(kind),
            "no {kind} in {:?}",
            by_kind.keys()
        );
    }
    assert!(
        !by_kind.contains_key("ServiceMonitor"),
        "ServiceMonitor is off by default"
    );
    for (kind, container) in [("DaemonSet", "agent"), ("Deployment", "operator")] {
        let c = by_kind[kind][0]["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == container)
            .unwrap()
            .clone();
        let args: Vec<String> = serde_json::from_value(c["args"].clone()).unwrap();
        assert_args_accepted(&args);
    }
    // The chart's RBAC is the one the RBAC lab proves.
    let kustomize = file_docs(&deploy().join("manifests/default.yaml"));
    for (kind, name) in [
        ("ClusterRole", "-agent"),
        ("Role", "-agent"),
        ("ClusterRole", "-operator"),
        ("Role", "-operator"),
    ] {
        assert_eq!(
            rules_of(&docs, kind, name),
            rules_of(&kustomize, kind, name),
            "{kind} *{name}: chart and kustomize rules differ"
        );
    }
    // Objects are in the API: the CRDs from crds/, the workloads in the release namespace.
    k.run(
        &["get", "crd", "ciliuml2announcementpolicies.cilium.io"],
        None,
    );
    k.run(&["get", "crd", "ciliumloadbalancerippools.cilium.io"], None);
    let ds: Value = serde_json::from_str(&k.run(
        &[
            "-n",
            "l2announcer",
            "get",
            "daemonset",
            "l2announcer-agent",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    let args = ds["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    for a in [
        "--lease-duration=15s",
        "--lease-renew-deadline=5s",
        "--lease-retry-period=2s",
    ] {
        assert!(
            args.as_array().unwrap().iter().any(|x| x == a),
            "{a} not in {args}"
        );
    }
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "l2announcer/l2announcer:0.1.0"
    );
    k.run(
        &[
            "-n",
            "l2announcer",
            "get",
            "deployment",
            "l2announcer-operator",
        ],
        None,
    );

    // 2. Cilium-style values: no operator, other lease timings, ServiceMonitor and rules on.
    let crds = kubeconfig.parent().unwrap().join("prom-crds.yaml");
    std::fs::write(&crds, prometheus_operator_crds()).unwrap();
    k.run(&["apply", "-f", crds.to_str().unwrap()], None);
    let values = serde_json::json!({
        "image": {"repository": "registry.example/l2announcer", "tag": "dev"},
        "l2announcements": {"leaseDuration": "30s", "leaseRenewDeadline": "10s",
                            "leaseRetryPeriod": "3s", "garpRefresh": "60s"},
        "operator": {"enabled": false},
        "prometheus": {"serviceMonitor": {"enabled": true, "labels": {"release": "kps"}},
                       "rules": {"enabled": true}}
    });
    let edge = HelmRelease::install(chart, kc, "edge", "lab", &values);
    let docs = edge.manifest();
    let by_kind = typed_check(&docs, "helm manifest (values)");
    assert!(
        !by_kind.contains_key("Deployment"),
        "operator.enabled=false still renders it"
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"].as_str().unwrap().contains("operator")),
        "operator objects without the operator"
    );
    let ds = &by_kind["DaemonSet"][0];
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example/l2announcer:dev");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_args_accepted(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    for a in [
        "--lease-duration=30s",
        "--lease-renew-deadline=10s",
        "--lease-retry-period=3s",
        "--garp-refresh=60s",
    ] {
        assert!(args.contains(&a), "{a} not in {args:?}");
    }
    let sm = &by_kind["ServiceMonitor"];
    assert_eq!(sm.len(), 1, "one ServiceMonitor (agent only)");
    assert_eq!(sm[0]["metadata"]["labels"]["release"], "kps");
    let rule = &by_kind["PrometheusRule"][0];
    let alerts = file_docs(&chart_path("files/alerts.yaml"));
    assert_eq!(
        rule["spec"], alerts[0],
        "chart rules differ from files/alerts.yaml"
    );
    k.run(&["-n", "edge", "get", "servicemonitor", "lab-agent"], None);
    k.run(&["-n", "edge", "get", "prometheusrule", "lab"], None);

    // 3. Upgrade with other lease timings and without the operator: the DaemonSet in the API
    //    changes, the operator's objects go.
    let mut release = release;
    let upgraded = release.upgrade(&serde_json::json!({
        "operator": {"enabled": false},
        "l2announcements": {"leaseDuration": "20s"}
    }));
    assert_eq!(upgraded["version"], 2, "{upgraded}");
    let ds: Value = serde_json::from_str(&k.run(
        &[
            "-n",
            "l2announcer",
            "get",
            "daemonset",
            "l2announcer-agent",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    let args = &ds["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--lease-duration=20s"),
        "{args}"
    );
    let gone = k.try_run(
        &[
            "-n",
            "l2announcer",
            "get",
            "deployment",
            "l2announcer-operator",
        ],
        None,
    );
    assert!(
        gone.is_err_and(|e| e.contains("NotFound")),
        "operator left after upgrade"
    );

    // 4. Uninstall removes the release's objects.
    release.uninstall();
    let gone = k.try_run(
        &["-n", "l2announcer", "get", "daemonset", "l2announcer-agent"],
        None,
    );
    assert!(
        gone.is_err_and(|e| e.contains("NotFound")),
        "DaemonSet left after uninstall"
    );
}

fn chart_path(rel: &str) -> PathBuf {
    chart().join(rel)
}

// ---------------------------------------------------------------------------------------------
// Terraform

#[test]
fn terraform_module_creates_exactly_the_seeds_objects() {
    let seed = root().join("../shared/seeds/cilium-l2-loadbalancer-pattern.md");
    assert!(seed.exists(), "{} missing", seed.display());
    let script = deploy().join("tests/terraform_eval.py");
    let (ok, stdout, stderr) = python(&[
        script.to_str().unwrap(),
        deploy().join("terraform").to_str().unwrap(),
        seed.to_str().unwrap(),
    ]);
    assert!(
        ok,
        "terraform_eval.py (pip install python-hcl2 pyyaml): {stderr}"
    );
    let out: Value = serde_json::from_str(&stdout).unwrap();
    let objects = |key: &str| -> BTreeMap<(String, String), Value> {
        out[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let o = r["object"].clone();
                (
                    (
                        o["kind"].as_str().unwrap().to_owned(),
                        o["metadata"]["name"].as_str().unwrap().to_owned(),
                    ),
                    o,
                )
            })
            .collect()
    };
    let module = objects("module");
    let seed_objects = objects("seed");
    let expected: BTreeMap<(String, String), Value> = seed_fixture()
        .into_iter()
        .map(|o| {
            (
                (
                    o["kind"].as_str().unwrap().to_owned(),
                    o["metadata"]["name"].as_str().unwrap().to_owned(),
                ),
                o,
            )
        })
        .collect();
    assert_eq!(module.len(), 4, "{:?}", module.keys());
    assert_eq!(
        module, seed_objects,
        "the module's objects differ from the seed's own HCL"
    );
    assert_eq!(
        module, expected,
        "the module's objects differ from tests/fixtures/seed/"
    );
    // The objects are valid Cilium objects for the project's types.
    for ((kind, name), o) in &module {
        match kind.as_str() {
            "CiliumL2AnnouncementPolicy" => drop(
                serde_json::from_value::<l2announcer_api::CiliumL2AnnouncementPolicy>(o.clone())
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
            ),
            "CiliumLoadBalancerIPPool" => drop(
                serde_json::from_value::<
                    l2announcer_api::ip_pool::v2alpha1::CiliumLoadBalancerIPPool,
                >(o.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}")),
            ),
            other => panic!("unexpected {other}"),
        }
    }
    // Terraform's own formatter, where Terraform is installed (it is not part of the setup:
    // its providers cannot be fetched here, so it cannot plan).
    if Command::new("terraform")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("terraform")
            .args(["fmt", "-check", "-recursive", "-diff"])
            .arg(deploy().join("terraform"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "terraform fmt: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    } else {
        eprintln!("terraform not installed: `terraform fmt -check` skipped");
    }
}

// ---------------------------------------------------------------------------------------------
// Monitoring

#[test]
fn prometheus_rules_are_the_same_in_chart_and_monitoring() {
    let chart_rules = file_docs(&chart_path("files/alerts.yaml"));
    let standalone = file_docs(&deploy().join("monitoring/prometheusrule.yaml"));
    assert_eq!(standalone[0]["kind"], "PrometheusRule");
    assert_eq!(standalone[0]["spec"], chart_rules[0]);
    let names: BTreeSet<&str> = chart_rules[0]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    for wanted in [
        "L2AnnouncerServiceNoEligibleNode",
        "L2AnnouncerAddressConflict",
        "L2AnnouncerLeaseRenewErrors",
        "L2AnnouncerPoolExhausted",
        "L2AnnouncerLivenessStale",
    ] {
        assert!(names.contains(wanted), "no alert {wanted}");
    }
}

// ---------------------------------------------------------------------------------------------
// Image

/// The Dockerfile cannot be built here (no container engine): this checks that it builds the
/// way `cargo xtask setup` prepares a machine (same LLVM packages, same bpf-linker), and that
/// the binary it copies carries its XDP program (an embedded ELF object for EM_BPF), so the
/// single-binary image needs nothing else.
#[test]
fn dockerfile_matches_setup_and_the_binary_embeds_its_xdp_program() {
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let setup = std::fs::read_to_string(root().join("xtask/src/setup.rs")).unwrap();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "build and runtime stages: {froms:?}");
    assert!(froms[0].ends_with(" AS build"));
    let version = setup
        .lines()
        .find_map(|l| l.strip_prefix("const BPF_LINKER_VERSION: &str = \""))
        .and_then(|v| v.strip_suffix("\";"))
        .expect("BPF_LINKER_VERSION in setup.rs");
    assert!(dockerfile.contains(&format!(
        "bpf-linker@{version} --no-default-features --features llvm-22"
    )));
    for pkg in [
        "llvm-22-dev",
        "libpolly-22-dev",
        "zlib1g-dev",
        "libzstd-dev",
    ] {
        assert!(
            setup.contains(&format!("\"{pkg}\"")),
            "{pkg} not in setup.rs"
        );
        assert!(dockerfile.contains(pkg), "{pkg} not in the Dockerfile");
    }
    assert!(dockerfile.contains("--component rust-src"));
    assert!(dockerfile.contains("cargo build --release --locked --package l2announcer"));
    assert!(dockerfile.contains("COPY --from=build /out/l2announcer /usr/local/bin/l2announcer"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/l2announcer\"]"));
    // The DaemonSet and Deployment run the entrypoint with their args.
    let ds = agent_daemonset();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert!(
        container(&pod, "agent").command.is_none(),
        "the image's entrypoint is used"
    );

    let bin = std::fs::read(l2announcer_tests::binary()).expect("l2announcer binary");
    const EM_BPF: u16 = 247;
    let embedded = bin
        .windows(4)
        .enumerate()
        .skip(1)
        .filter(|(_, w)| *w == b"\x7fELF")
        .any(|(off, _)| {
            bin.get(off + 18..off + 20)
                .is_some_and(|m| u16::from_le_bytes([m[0], m[1]]) == EM_BPF)
        });
    assert!(
        embedded,
        "no eBPF ELF object embedded in {}",
        l2announcer_tests::binary().display()
    );
}

// ---------------------------------------------------------------------------------------------
// deploy/README.md

/// The `kubectl` commands of deploy/README.md run, in order, against the API test kit; its
/// `helm install` commands name the chart and only values the chart has.
#[test]
fn readme_commands_run_against_the_test_kit() {
    let readme = std::fs::read_to_string(deploy().join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() && !l.starts_with('#') => commands.push(l.to_owned()),
            _ => {}
        }
    }
    let kit = TestKit::spawn_blocking().expect("test kit");
    let kubeconfig = kit.kubeconfig_path().to_owned();
    let k = Kubectl {
        netns: None,
        kubeconfig,
    };
    let values: Value = file_docs(&chart_path("values.yaml")).remove(0);
    let (mut kubectl_runs, mut helm_checks) = (0, 0);
    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words[0] {
            "kubectl" => {
                let out = Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&k.kubeconfig)
                    .args(&words[1..])
                    .current_dir(root())
                    .env("KUBECACHEDIR", k.kubeconfig.parent().unwrap().join("cache"))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "README: `{command}`: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                kubectl_runs += 1;
            }
            "helm" => {
                assert_eq!(words[1], "install", "{command}");
                assert!(
                    root().join(words[3]).join("Chart.yaml").exists(),
                    "{command}"
                );
                for (i, w) in words.iter().enumerate() {
                    if *w == "--set" {
                        let (key, _) = words[i + 1].split_once('=').unwrap();
                        let found = key.split('.').try_fold(&values, |v, part| v.get(part));
                        assert!(
                            found.is_some(),
                            "README: `{command}`: no value {key} in the chart"
                        );
                    }
                }
                helm_checks += 1;
            }
            other => panic!("README: unexpected command {other}: add it to this test"),
        }
    }
    assert!(
        kubectl_runs >= 10 && helm_checks == 2,
        "{kubectl_runs} kubectl, {helm_checks} helm"
    );
    // The seed's objects went in, with the workloads.
    k.run(
        &["get", "ciliuml2announcementpolicy", "l2-policy-eno2"],
        None,
    );
    k.run(
        &["-n", "l2announcer", "get", "daemonset", "l2announcer-agent"],
        None,
    );
}

/// `l2announcements.interfaces` with the seed's values gives the seed's policies and pools
/// (but for the managed-by label, Helm instead of terraform), and they are created.
#[test]
fn helm_chart_creates_the_seeds_objects_from_interfaces() {
    let kit = TestKit::spawn_blocking().expect("test kit");
    let kubeconfig = kit.kubeconfig_path().to_owned();
    let k = Kubectl {
        netns: None,
        kubeconfig: kubeconfig.clone(),
    };
    let values = serde_json::json!({
        "operator": {"enabled": false},
        "l2announcements": {"interfaces": {
            "eno1": {"networkType": "internal",
                     "ipRange": {"start": "192.168.3.150", "stop": "192.168.3.250"},
                     "nodeSelector": {}},
            "eno2": {"interfaceName": "eno2", "networkType": "public-api",
                     "ipRange": {"start": "192.168.4.150", "stop": "192.168.4.250"},
                     "nodeSelector": {"node.kubernetes.io/control-plane": ""}}
        }}
    });
    let chart = chart();
    let release = HelmRelease::install(
        chart.to_str().unwrap(),
        kubeconfig.to_str().unwrap(),
        "l2announcer",
        "l2announcer",
        &values,
    );
    let docs = release.manifest();
    typed_check(&docs, "helm manifest (interfaces)");
    let key = |o: &Value| {
        (
            o["kind"].as_str().unwrap().to_owned(),
            o["metadata"]["name"].as_str().unwrap().to_owned(),
        )
    };
    let made: BTreeMap<(String, String), Value> = docs
        .iter()
        .filter(|d| d["kind"].as_str().unwrap().starts_with("Cilium"))
        .map(|d| {
            let mut d = d.clone();
            assert_eq!(
                d["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "Helm"
            );
            d["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "terraform".into();
            (key(&d), d)
        })
        .collect();
    let expected: BTreeMap<(String, String), Value> =
        seed_fixture().into_iter().map(|o| (key(&o), o)).collect();
    assert_eq!(made, expected);
    for (kind, name) in made.keys() {
        k.run(&["get", &kind.to_lowercase(), name], None);
    }
}
