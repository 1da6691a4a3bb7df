//! The scenarios driven with the real `kubectl` binary (skipped, with a message, where absent).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kube_testkit::TestKit;

fn have_kubectl() -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: kubectl is not installed (install it to run the kubectl scenarios)");
    }
    ok
}

struct Kubectl {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn new(kit: &TestKit) -> Self {
        Kubectl {
            kubeconfig: kit.kubeconfig_path().to_path_buf(),
            dir: kit.kubeconfig_path().parent().unwrap().to_path_buf(),
        }
    }

    fn with_kubeconfig(&self, path: &Path) -> Self {
        Kubectl {
            kubeconfig: path.to_path_buf(),
            dir: self.dir.clone(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout", "10s"])
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl runs")
    }

    /// Runs kubectl and returns stdout, failing the test on a non-zero exit.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail, printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"#;

#[test]
fn kubectl_crd_then_custom_resources() {
    if !have_kubectl() {
        return;
    }
    let kit = TestKit::spawn_blocking().unwrap();
    let k = Kubectl::new(&kit);
    assert!(k.ok(&["version"]).contains("Server Version: v1.33"));
    k.ok(&["apply", "-f", &k.file("crd.yaml", CRD)]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.io",
        "--timeout=10s",
    ]);
    let w = k.file("w.yaml", "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w1, labels: {app: demo}}\nspec: {size: 1}\n");
    assert!(
        k.ok(&["apply", "-f", &w])
            .contains("widget.example.io/w1 created")
    );
    let table = k.ok(&["get", "wd"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "SIZE", "AGE"],
        "server-side printing with the CRD's columns: {table}"
    );
    assert_eq!(rows[1][..2], ["w1", "1"]);
    let w = k.file("w.yaml", "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w1, labels: {app: demo}}\nspec: {size: 2}\n");
    assert!(k.ok(&["apply", "-f", &w]).contains("configured"));
    assert_eq!(
        k.ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.size} {.metadata.generation}"
        ]),
        "2 2"
    );
    k.ok(&["label", "widget", "w1", "tier=gold"]);
    assert!(
        k.ok(&[
            "get",
            "widgets",
            "-l",
            "tier in (gold),app=demo",
            "-o",
            "name"
        ])
        .contains("widget.example.io/w1")
    );
    let err = k.fails(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":"big"}}"#,
    ]);
    assert!(
        err.contains("is invalid") && err.contains("spec.size"),
        "{err}"
    );
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    assert!(k.ok(&["describe", "widget", "w1"]).contains("Name:"));
    k.ok(&["delete", "widget", "w1"]);
    k.ok(&["delete", "-f", &k.file("crd.yaml", CRD)]);
    let err = k.fails(&["get", "widgets"]);
    assert!(err.contains("widgets"), "{err}");
}

#[test]
fn kubectl_builtin_kinds_every_patch_type_and_conflicts() {
    if !have_kubectl() {
        return;
    }
    let kit = TestKit::spawn_blocking().unwrap();
    let k = Kubectl::new(&kit);
    let svc = k.file("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: LoadBalancer\n  ports:\n  - {name: http, port: 80, protocol: TCP}\n");
    k.ok(&["apply", "-f", &svc]);
    k.ok(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"ports":[{"name":"https","port":443,"protocol":"TCP"}]}}"#,
    ]);
    assert_eq!(
        k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[*].port}"]),
        "80 443"
    );
    k.ok(&[
        "patch",
        "svc",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/type","value":"ClusterIP"}]"#,
    ]);
    k.ok(&[
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"a":"b"}}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.type} {.metadata.annotations.a}"
        ]),
        "ClusterIP b"
    );
    // Optimistic concurrency: replacing with a stale resourceVersion is a conflict.
    let stale = k.ok(&["get", "svc", "web", "-o", "yaml"]);
    k.ok(&["label", "svc", "web", "bump=1"]);
    let err = k.fails(&["replace", "-f", &k.file("stale.yaml", &stale)]);
    assert!(err.contains("the object has been modified"), "{err}");
    // Server-side apply by two field managers.
    let cm = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared}}\ndata: {{owner: {v}}}\n"
        )
    };
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=alpha",
        "-f",
        &k.file("a.yaml", &cm("alpha")),
    ]);
    let err = k.fails(&[
        "apply",
        "--server-side",
        "--field-manager=beta",
        "-f",
        &k.file("b.yaml", &cm("beta")),
    ]);
    assert!(err.contains("conflict") && err.contains("alpha"), "{err}");
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=beta",
        "--force-conflicts",
        "-f",
        &k.file("b.yaml", &cm("beta")),
    ]);
    assert_eq!(
        k.ok(&["get", "cm", "shared", "-o", "jsonpath={.data.owner}"]),
        "beta"
    );
    assert!(
        k.ok(&["get", "cm", "shared", "-o", "yaml", "--show-managed-fields"])
            .contains("manager: beta")
    );
    k.ok(&["delete", "svc", "web"]);
    assert!(k.fails(&["get", "svc", "web"]).contains("NotFound"));
}

#[test]
fn kubectl_watch_ends_on_closed_watches_and_relists_after_410() {
    if !have_kubectl() {
        return;
    }
    let kit = TestKit::spawn_blocking().unwrap();
    let k = Kubectl::new(&kit);
    let child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(k.dir.join("kubectl-cache"))
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while kit.watch_count() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "kubectl never started watching"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..3 {
        k.ok(&[
            "apply",
            "-f",
            &k.file(
                "c.yaml",
                &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"),
            ),
        ]);
    }
    k.ok(&["delete", "cm", "c0"]);
    std::thread::sleep(Duration::from_millis(300));
    kit.faults().close_watches();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    let expected = [
        ("ADDED", "c0"),
        ("ADDED", "c1"),
        ("ADDED", "c2"),
        ("DELETED", "c0"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(events, expected, "kubectl printed {text}");
    // After compaction an old resourceVersion is gone; a fresh list + watch works.
    kit.faults().compact();
    assert!(k.ok(&["get", "cm", "-o", "name"]).contains("configmap/c1"));
}

#[test]
fn kubectl_rbac_allows_and_denies() {
    if !have_kubectl() {
        return;
    }
    let kit = TestKit::builder()
        .rbac(true)
        .token("reader-token", "reader", &["readers"])
        .spawn_blocking()
        .unwrap();
    let admin = Kubectl::new(&kit);
    admin.ok(&["create", "-f", &admin.file("role.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: cm-reader}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch]\n")]);
    admin.ok(&["create", "-f", &admin.file("binding.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: readers, namespace: default}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cm-reader}\nsubjects:\n- {kind: Group, name: readers, apiGroup: rbac.authorization.k8s.io}\n")]);
    admin.ok(&[
        "apply",
        "-f",
        &admin.file(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: visible}\n",
        ),
    ]);
    let reader = admin.with_kubeconfig(
        &kit.write_kubeconfig("reader", Some("reader-token"), None)
            .unwrap(),
    );
    assert!(
        reader
            .ok(&["get", "cm", "visible", "-o", "name"])
            .contains("configmap/visible")
    );
    let err = reader.fails(&["delete", "cm", "visible"]);
    assert!(
        err.contains("Forbidden")
            && err.contains("User \"reader\" cannot delete resource \"configmaps\""),
        "{err}"
    );
    let err = reader.fails(&["get", "cm", "-n", "kube-system"]);
    assert!(err.contains("Forbidden"), "{err}");
    let stranger = admin.with_kubeconfig(
        &kit.write_kubeconfig("stranger", Some("wrong-token"), None)
            .unwrap(),
    );
    let err = stranger.fails(&["get", "cm"]);
    assert!(
        err.contains("You must be logged in") || err.contains("Unauthorized"),
        "{err}"
    );
}

#[test]
fn kubectl_outage_and_recovery() {
    if !have_kubectl() {
        return;
    }
    let kit = TestKit::spawn_blocking().unwrap();
    let k = Kubectl::new(&kit);
    k.ok(&[
        "apply",
        "-f",
        &k.file(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\ndata: {a: \"1\"}\n",
        ),
    ]);
    kit.faults().outage(true);
    let err = k.fails(&["get", "cm", "kept"]);
    assert!(
        err.contains("connection refused") || err.contains("was refused"),
        "{err}"
    );
    kit.faults().outage(false);
    assert_eq!(
        k.ok(&["get", "cm", "kept", "-o", "jsonpath={.data.a}"]),
        "1"
    );
}
