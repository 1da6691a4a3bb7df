//! The scenarios driven with the official Python `kubernetes` client (skipped, with a message,
//! where python3 or the package is absent).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use kube_testkit::TestKit;

fn have_python_client() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: the Python kubernetes client is missing (pip install kubernetes) or python3 is absent"
        );
    }
    ok
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/scenarios.py")
}

fn kit() -> TestKit {
    TestKit::builder()
        .admin_listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .spawn_blocking()
        .unwrap()
}

fn run(kit: &TestKit, scenario: &str, extra_env: &[(&str, PathBuf)]) {
    let admin = format!("http://{}", kit.admin_addr().unwrap());
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .arg(scenario)
        .env("KUBECONFIG", kit.kubeconfig_path())
        .env("TESTKIT_ADMIN", admin);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "python scenario {scenario} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_crd_then_custom_resources() {
    if have_python_client() {
        run(&kit(), "crd", &[]);
    }
}

#[test]
fn python_list_watch_and_relist_after_410() {
    if have_python_client() {
        run(&kit(), "watch_relist", &[]);
    }
}

#[test]
fn python_optimistic_concurrency() {
    if have_python_client() {
        run(&kit(), "conflict", &[]);
    }
}

#[test]
fn python_server_side_apply_by_two_managers() {
    if have_python_client() {
        run(&kit(), "ssa", &[]);
    }
}

#[test]
fn python_outage_and_recovery() {
    if have_python_client() {
        run(&kit(), "outage", &[]);
    }
}

#[test]
fn python_rbac_allows_and_denies() {
    if !have_python_client() {
        return;
    }
    let kit = TestKit::builder()
        .admin_listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .rbac(true)
        .token("reader-token", "reader", &["readers"])
        .spawn_blocking()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use k8s_openapi::api::core::v1::ConfigMap;
        use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
        use kube::api::{Api, PostParams};
        let c = kit.client();
        let role: ClusterRole = serde_json::from_value(serde_json::json!({"metadata": {"name": "cm-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})).unwrap();
        Api::<ClusterRole>::all(c.clone()).create(&PostParams::default(), &role).await.unwrap();
        let rb: RoleBinding = serde_json::from_value(serde_json::json!({"metadata": {"name": "readers", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-reader"},
            "subjects": [{"kind": "Group", "name": "readers", "apiGroup": "rbac.authorization.k8s.io"}]})).unwrap();
        Api::<RoleBinding>::namespaced(c.clone(), "default").create(&PostParams::default(), &rb).await.unwrap();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "visible"}})).unwrap();
        Api::<ConfigMap>::namespaced(c, "default").create(&PostParams::default(), &cm).await.unwrap();
    });
    let reader = kit
        .write_kubeconfig("reader", Some("reader-token"), None)
        .unwrap();
    let stranger = kit
        .write_kubeconfig("stranger", Some("bad-token"), None)
        .unwrap();
    run(
        &kit,
        "rbac",
        &[
            ("READER_KUBECONFIG", reader),
            ("STRANGER_KUBECONFIG", stranger),
        ],
    );
}
