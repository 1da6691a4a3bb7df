//! The `kube-testkit` binary: prints its URL and kubeconfig, serves until SIGTERM, and has an
//! admin endpoint for faults and the audit log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

struct Server {
    child: Child,
    url: String,
    kubeconfig: String,
    admin: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(extra: &[&str]) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "kube-testkit-bin-{}-{}",
        std::process::id(),
        extra.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-testkit"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--kubeconfig-dir",
        ])
        .arg(&dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut field = |prefix: &str| {
        let line = lines.next().unwrap().unwrap();
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .to_string()
    };
    let url = field("url: ");
    let kubeconfig = field("kubeconfig: ");
    let admin = field("admin: ");
    std::thread::spawn(move || lines.for_each(drop));
    Server {
        child,
        url,
        kubeconfig,
        admin,
        dir,
    }
}

/// A bare HTTP/1.1 request (no client library needed).
fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn binary_serves_and_obeys_its_admin_endpoint() {
    let server = start(&[]);
    assert!(server.url.starts_with("http://127.0.0.1:"));
    let (code, body) = http(&server.url, "GET", "/version", "");
    assert_eq!(code, 200);
    assert!(body.contains("v1.33"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kc = Kubeconfig::read_from(&server.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let cms: Api<ConfigMap> =
            Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
        let cm: ConfigMap =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "via-binary"}}))
                .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    });
    let (code, _) = http(
        &server.admin,
        "PUT",
        "/_testkit/faults",
        r#"{"outage": true}"#,
    );
    assert_eq!(code, 200);
    let host = server.url.trim_start_matches("http://");
    assert!(
        TcpStream::connect(host).is_err(),
        "connections are refused during an outage"
    );
    http(&server.admin, "PUT", "/_testkit/faults", "{}");
    let (code, body) = http(
        &server.url,
        "GET",
        "/api/v1/namespaces/default/configmaps/via-binary",
        "",
    );
    assert_eq!(code, 200, "{body}");
    let (_, audit) = http(&server.admin, "GET", "/_testkit/audit", "");
    let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let creates = audit["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["verb"] == "create" && c["resource"] == "configmaps")
        .unwrap();
    assert_eq!(creates["count"], 1);
    let (code, _) = http(&server.admin, "POST", "/_testkit/compact", "");
    assert_eq!(code, 200);
    let (_, body) = http(
        &server.url,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&timeoutSeconds=1",
        "",
    );
    assert!(body.contains("\"code\":410"), "{body}");
}

#[test]
fn binary_authenticates_with_a_token_file_and_rbac() {
    let dir = std::env::temp_dir().join(format!("kube-testkit-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "t1,alice,1,\"devs\"\n").unwrap();
    let server = start(&["--token-auth-file", tokens.to_str().unwrap(), "--rbac"]);
    assert_eq!(
        http(
            &server.url,
            "GET",
            "/api/v1/namespaces/default/configmaps",
            ""
        )
        .0,
        401
    );
    assert_eq!(
        http(
            &server.url,
            "GET",
            "/_token/t1/api/v1/namespaces/default/configmaps",
            ""
        )
        .0,
        403
    );
    assert_eq!(
        http(&server.url, "GET", "/_token/t1/api", "").0,
        200,
        "discovery is open to every authenticated user"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
