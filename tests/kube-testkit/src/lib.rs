//! An in-process Kubernetes API server that real clients talk to.
//!
//! ```no_run
//! # async fn demo() {
//! let kit = kube_testkit::TestKit::start().await.expect("server starts");
//! let client = kit.client(); // a kube::Client over HTTP to 127.0.0.1
//! kit.faults().close_watches();
//! println!("{} requests so far", kit.audit().len());
//! # }
//! ```
//!
//! See the crate README for what is implemented and what is not.

pub mod audit;
pub mod auth;
pub mod defaults;
pub mod faults;
pub mod patch;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod server;
pub mod ssa;
pub mod status;
pub mod store;
pub mod table;
pub mod util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::sync::watch;

pub use audit::{Audit, AuditEntry};
pub use auth::User;
pub use faults::{FaultConfig, Faults};
pub use status::ApiError;

/// Why a test kit could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestKitError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading the token file {path}: {source}")]
    TokenFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    TokenFile(#[from] auth::TokenFileError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the server thread: {0}")]
    Thread(String),
}

/// The token of the administrator user the kit's own clients use when authentication is on.
pub const ADMIN_TOKEN: &str = "kube-testkit-admin-token";
/// That administrator's user name (member of `system:masters`).
pub const ADMIN_USER: &str = "kube-testkit-admin";

/// Options of a [`TestKit`].
#[derive(Debug, Clone)]
pub struct TestKitBuilder {
    listen: SocketAddr,
    admin_listen: Option<SocketAddr>,
    rbac: bool,
    token_file: Option<PathBuf>,
    tokens: Vec<(String, User)>,
    history_size: usize,
    bookmark_interval: Duration,
    kubeconfig_dir: Option<PathBuf>,
}

impl Default for TestKitBuilder {
    fn default() -> Self {
        TestKitBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: None,
            rbac: false,
            token_file: None,
            tokens: Vec::new(),
            history_size: 10_000,
            bookmark_interval: Duration::from_secs(1),
            kubeconfig_dir: None,
        }
    }
}

impl TestKitBuilder {
    /// Address to serve on (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Also serve the admin endpoint (`/_testkit/faults`, `/_testkit/audit`, ...) here.
    pub fn admin_listen(mut self, addr: SocketAddr) -> Self {
        self.admin_listen = Some(addr);
        self
    }

    /// Authorize every request with RBAC (needs authentication: a token file or tokens).
    pub fn rbac(mut self, on: bool) -> Self {
        self.rbac = on;
        self
    }

    /// Authenticate with a kube-apiserver `--token-auth-file` (`token,user,uid,"groups"`).
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    /// Authenticate with this bearer token (turns authentication on).
    pub fn token(mut self, token: &str, user: &str, groups: &[&str]) -> Self {
        let user = User {
            name: user.into(),
            uid: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        self.tokens.push((token.into(), user));
        self
    }

    /// How many events the watch history keeps (older resourceVersions get 410 Gone).
    pub fn history_size(mut self, n: usize) -> Self {
        self.history_size = n;
        self
    }

    /// How often watches that allow bookmarks get one (default 1 s).
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }

    /// Where to write the kubeconfig (default: a fresh directory under the system temp dir,
    /// removed when the kit is dropped).
    pub fn kubeconfig_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.kubeconfig_dir = Some(dir.into());
        self
    }

    fn tokens(&self) -> Result<Option<HashMap<String, User>>, TestKitError> {
        let mut map = HashMap::new();
        if let Some(path) = &self.token_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| TestKitError::TokenFileRead {
                    path: path.clone(),
                    source,
                })?;
            map.extend(auth::parse_token_file(&text)?);
        }
        map.extend(self.tokens.iter().cloned());
        if map.is_empty() && !self.rbac {
            return Ok(None);
        }
        map.insert(
            ADMIN_TOKEN.into(),
            User {
                name: ADMIN_USER.into(),
                uid: ADMIN_USER.into(),
                groups: vec!["system:masters".into()],
            },
        );
        Ok(Some(map))
    }

    /// Starts the server on its own thread and runtime and waits until it listens. Works from
    /// async code; the server keeps running while the caller's runtime is busy or paused.
    pub async fn start(self) -> Result<TestKit, TestKitError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = self.launch_thread(move |r| {
            let _ = tx.send(r);
        })?;
        let started = rx
            .await
            .map_err(|_| TestKitError::Thread("the server thread ended early".into()))??;
        self.finish(started, thread)
    }

    /// Like [`start`](Self::start), for tests that are not async.
    pub fn spawn_blocking(self) -> Result<TestKit, TestKitError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = self.launch_thread(move |r| {
            let _ = tx.send(r);
        })?;
        let started = rx
            .recv()
            .map_err(|_| TestKitError::Thread("the server thread ended early".into()))??;
        self.finish(started, thread)
    }

    fn launch_thread(
        &self,
        report: impl FnOnce(Result<Started, TestKitError>) + Send + 'static,
    ) -> Result<std::thread::JoinHandle<()>, TestKitError> {
        let builder = self.clone();
        std::thread::Builder::new()
            .name("kube-testkit".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return report(Err(TestKitError::Thread(e.to_string()))),
                };
                rt.block_on(async move {
                    match builder.run().await {
                        Ok((started, mut shutdown)) => {
                            report(Ok(started));
                            let _ = shutdown.wait_for(|s| *s).await;
                        }
                        Err(e) => report(Err(e)),
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| TestKitError::Thread(e.to_string()))
    }

    async fn run(&self) -> Result<(Started, watch::Receiver<bool>), TestKitError> {
        let tokens = self.tokens()?;
        let store = Arc::new(store::Store::new(self.history_size));
        let server = Arc::new(server::Server {
            faults: Faults::new(store.clone()),
            store,
            audit: Arc::new(Audit::default()),
            tokens,
            rbac: self.rbac,
        });
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| TestKitError::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| TestKitError::Bind {
            addr: self.listen,
            source,
        })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let admin_addr = match self.admin_listen {
            Some(a) => {
                let l = tokio::net::TcpListener::bind(a)
                    .await
                    .map_err(|source| TestKitError::Bind { addr: a, source })?;
                let admin_addr = l
                    .local_addr()
                    .map_err(|source| TestKitError::Bind { addr: a, source })?;
                tokio::spawn(server::serve_admin(server.clone(), l, shutdown_rx.clone()));
                Some(admin_addr)
            }
            None => None,
        };
        tokio::spawn(server::serve(server.clone(), listener, shutdown_rx.clone()));
        let store = server.store.clone();
        let interval = self.bookmark_interval;
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => store.send_bookmarks(),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
        Ok((
            Started {
                server,
                addr,
                admin_addr,
                shutdown: shutdown_tx,
            },
            shutdown_rx,
        ))
    }

    fn finish(
        &self,
        started: Started,
        thread: std::thread::JoinHandle<()>,
    ) -> Result<TestKit, TestKitError> {
        static DIRS: AtomicU64 = AtomicU64::new(0);
        let (dir, owned) = match &self.kubeconfig_dir {
            Some(d) => (d.clone(), false),
            None => {
                let n = DIRS.fetch_add(1, Ordering::Relaxed);
                (
                    std::env::temp_dir().join(format!("kube-testkit-{}-{n}", std::process::id())),
                    true,
                )
            }
        };
        std::fs::create_dir_all(&dir).map_err(|source| TestKitError::Write {
            path: dir.clone(),
            source,
        })?;
        let host = match started.addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            a => a,
        };
        let url = format!("http://{host}");
        let admin_token = started
            .server
            .tokens
            .as_ref()
            .map(|_| ADMIN_TOKEN.to_string());
        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &url, admin_token.as_deref(), "default")?;
        Ok(TestKit {
            server: started.server,
            addr: started.addr,
            admin_addr: started.admin_addr,
            url,
            dir,
            owned_dir: owned,
            kubeconfig,
            admin_token,
            shutdown: started.shutdown,
            thread: Some(thread),
        })
    }
}

struct Started {
    server: Arc<server::Server>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
}

/// Writes a kubeconfig pointing at `server_url` with an optional bearer token. The token is
/// also put in the server URL's path (`<url>/_token/<token>`), which the kit accepts like a
/// bearer token: client-go (kubectl) sends no credentials over plain HTTP.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    token: Option<&str>,
    namespace: &str,
) -> Result<(), TestKitError> {
    let server_url = match token {
        Some(t) => format!("{}/_token/{t}", server_url.trim_end_matches('/')),
        None => server_url.to_string(),
    };
    let user = match token {
        Some(t) => format!("  user:\n    token: {t}\n"),
        None => "  user: {}\n".to_string(),
    };
    let text = [
        "apiVersion: v1\nkind: Config\n".to_string(),
        format!("clusters:\n- name: kube-testkit\n  cluster:\n    server: {server_url}\n"),
        format!("users:\n- name: kube-testkit-user\n{user}"),
        "contexts:\n- name: kube-testkit\n  context:\n    cluster: kube-testkit\n    user: kube-testkit-user\n".to_string(),
        format!("    namespace: {namespace}\ncurrent-context: kube-testkit\n"),
    ]
    .concat();
    std::fs::write(path, text).map_err(|source| TestKitError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A running API server. Dropping it stops the server.
pub struct TestKit {
    server: Arc<server::Server>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    url: String,
    dir: PathBuf,
    owned_dir: bool,
    kubeconfig: PathBuf,
    admin_token: Option<String>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestKit {
    /// Starts a server with default options on `127.0.0.1:<free port>`.
    pub async fn start() -> Result<TestKit, TestKitError> {
        TestKitBuilder::default().start().await
    }

    /// Starts a server with default options, for non-async tests.
    pub fn spawn_blocking() -> Result<TestKit, TestKitError> {
        TestKitBuilder::default().spawn_blocking()
    }

    pub fn builder() -> TestKitBuilder {
        TestKitBuilder::default()
    }

    /// `http://127.0.0.1:<port>` (the bound address; an unspecified address is shown as loopback).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin endpoint's address, if one was asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// A kubeconfig for this server (as the administrator when authentication is on).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Writes another kubeconfig, for `token` (or none), named `<name>.kubeconfig` beside the
    /// default one, with `server_url` overriding the server address (e.g. an address reachable
    /// from a network namespace).
    pub fn write_kubeconfig(
        &self,
        name: &str,
        token: Option<&str>,
        server_url: Option<&str>,
    ) -> Result<PathBuf, TestKitError> {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        write_kubeconfig(&path, server_url.unwrap_or(&self.url), token, "default")?;
        Ok(path)
    }

    /// The administrator's bearer token when authentication is on.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// A `kube::Client` talking HTTP to the server (as the administrator). Call it inside a
    /// tokio runtime.
    pub fn client(&self) -> kube::Client {
        self.client_with_token(self.admin_token.as_deref())
    }

    /// A `kube::Client` over HTTP authenticating with `token` (or none). Call it inside a
    /// tokio runtime.
    pub fn client_with_token(&self, token: Option<&str>) -> kube::Client {
        let uri: http::Uri = self
            .url
            .parse()
            .unwrap_or_else(|e| unreachable!("our own URL {} parses: {e}", self.url));
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        config.read_timeout = None;
        if let Some(t) = token
            && let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {t}"))
        {
            config.headers.push((http::header::AUTHORIZATION, v));
        }
        match kube::Client::try_from(config) {
            Ok(c) => c,
            Err(e) => unreachable!("a plain-HTTP kube client always builds: {e}"),
        }
    }

    /// A `kube::Client` that calls the server in-process (no socket), as the administrator.
    /// During an outage its requests fail with "connection refused".
    pub fn in_process_client(&self) -> kube::Client {
        self.in_process(false)
    }

    /// An in-process `kube::Client` that no fault affects (outage, hang, errors, latency):
    /// for tests that change objects while other clients suffer a fault. Its requests are
    /// audited like any other.
    pub fn backdoor_client(&self) -> kube::Client {
        self.in_process(true)
    }

    fn in_process(&self, bypass: bool) -> kube::Client {
        let server = self.server.clone();
        let auth = self
            .admin_token
            .as_ref()
            .and_then(|t| http::HeaderValue::from_str(&format!("Bearer {t}")).ok());
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let server = server.clone();
            let auth = auth.clone();
            async move {
                if !bypass && server.faults.config().outage {
                    return Err::<http::Response<server::Body>, tower::BoxError>(Box::new(
                        std::io::Error::new(
                            std::io::ErrorKind::ConnectionRefused,
                            "kube-testkit: connection refused (outage)",
                        ),
                    ));
                }
                let (mut parts, body) = req.into_parts();
                if let Some(a) = auth {
                    parts.headers.insert(http::header::AUTHORIZATION, a);
                }
                if bypass {
                    parts.extensions.insert(server::BypassFaults);
                }
                let bytes = body.collect().await?.to_bytes();
                Ok(server::handle(server, parts, bytes).await)
            }
        });
        kube::Client::new(svc, "default")
    }

    /// Fault injection.
    pub fn faults(&self) -> &Faults {
        &self.server.faults
    }

    /// The audit log.
    pub fn audit(&self) -> &Audit {
        &self.server.audit
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.server.store.resource_version()
    }

    /// Number of watches currently open.
    pub fn watch_count(&self) -> usize {
        self.server.store.watch_count()
    }

    /// Stops the server now (dropping the kit does the same).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.owned_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for TestKit {
    fn drop(&mut self) {
        self.stop();
    }
}
