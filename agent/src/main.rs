//! The `l2announcer` binary.

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use l2announcer::{
    announcer::{Announcer, Core, Settings, Shared, Status},
    dataplane::{Dataplane, XdpModeSetting},
    http, links,
    standalone::{self, Config, parse_duration},
};
use tokio::sync::watch;
use tracing::{error, info};

/// Layer-2 (ARP/NDP) announcements for bare-metal LoadBalancer addresses, answered by XDP.
#[derive(Parser)]
#[command(name = "l2announcer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Kubernetes mode (DaemonSet): announce the LoadBalancer IPs this node wins, by Lease,
    /// as CiliumL2AnnouncementPolicy objects select them.
    Agent(AgentArgs),
    /// Announce fixed addresses on this machine, without Kubernetes, until stopped.
    Standalone(StandaloneArgs),
    /// Show what the running l2announcer on this machine announces, and its counters.
    Status(StatusArgs),
    /// LB-IPAM (Deployment): assign LoadBalancer addresses from CiliumLoadBalancerIPPools,
    /// one active replica through a Lease.
    Operator(OperatorArgs),
}

const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9470";

#[derive(clap::Args)]
struct StandaloneArgs {
    /// Interfaces to announce on: a regular expression matched against interface names
    /// (unanchored; repeat to OR several).
    #[arg(long = "interface", value_name = "REGEX")]
    interfaces: Vec<String>,
    /// An IPv4 or IPv6 address to announce (repeat for more).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,
    /// A YAML file with groups of addresses and interfaces (and the settings below).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    dataplane: DataplaneArgs,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// This node's name (as in its Node object).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Kubeconfig file; without it, the in-cluster service account (or ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the per-IP leases [default: the pod's namespace, else kube-system].
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a lease is valid without renewal (Cilium's l2-announcements-lease-duration).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How long a holder whose renewals fail keeps announcing (Cilium's
    /// l2-announcements-renew-deadline).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    lease_renew_deadline: Duration,
    /// Time between retries (Cilium's l2-announcements-retry-period).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    lease_retry_period: Duration,
    /// During an API outage: keep announcing until another MAC claims the address on the
    /// wire (`keep`), or stop at the renew deadline (`stop`).
    #[arg(long, value_enum, default_value = "keep")]
    api_outage: OutagePolicy,
    #[command(flatten)]
    dataplane: DataplaneArgs,
}

#[derive(clap::Args)]
struct OperatorArgs {
    /// Run at all: `--enabled=false` exits at once, for clusters where Cilium's operator
    /// does LB-IPAM.
    #[arg(long, env = "L2ANNOUNCER_OPERATOR_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    enabled: bool,
    /// Kubeconfig file; without it, the in-cluster service account (or ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address for /metrics, /livez and /readyz.
    #[arg(long, default_value = "0.0.0.0:9471")]
    metrics_addr: SocketAddr,
    /// Take LoadBalancer Services without a loadBalancerClass (Cilium's
    /// --default-lb-service-ipam=lbipam).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    classless_services: bool,
    /// loadBalancerClass values taken (repeat, or comma-separated).
    #[arg(long = "load-balancer-class", value_delimiter = ',', default_value = l2announcer_ipam::model::L2_ANNOUNCER_CLASS)]
    load_balancer_classes: Vec<String>,
    /// Allocate IPv4 addresses.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ipv4: bool,
    /// Allocate IPv6 addresses.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ipv6: bool,
    /// Namespace of the operator's Lease [default: the pod's namespace, else kube-system].
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the operator's Lease.
    #[arg(long, default_value = l2announcer::operator::DEFAULT_LEASE_NAME)]
    leader_election_id: String,
    /// This replica's identity in the Lease [default: the host name].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long the Lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How long a leader whose renewals fail keeps writing.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    lease_renew_deadline: Duration,
    /// Time between retries.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    lease_retry_period: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutagePolicy {
    Keep,
    Stop,
}

/// Data-plane settings shared by `agent` and `standalone`.
#[derive(clap::Args)]
struct DataplaneArgs {
    /// XDP attach mode [default: auto: native where the driver supports it, else generic].
    #[arg(long, value_enum)]
    xdp_mode: Option<XdpModeSetting>,
    /// Address for /metrics, /livez, /readyz and /status [default: 0.0.0.0:9470].
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Gratuitous ARP / unsolicited NA sent per new announcement [default: 3].
    #[arg(long)]
    garp_count: Option<u32>,
    /// Time between them [default: 1s].
    #[arg(long, value_parser = parse_duration)]
    garp_interval: Option<Duration>,
    /// Re-announce every address this often (switches that age out MAC tables) [default: off].
    #[arg(long, value_parser = parse_duration)]
    garp_refresh: Option<Duration>,
    /// Stop answering when the agent's heartbeat is older than this [default: 5s].
    #[arg(long, value_parser = parse_duration)]
    liveness_timeout: Option<Duration>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// The running agent's metrics address.
    #[arg(long, default_value = "127.0.0.1:9470")]
    addr: SocketAddr,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("l2announcer: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Agent(args) => run_agent(args).await,
            Command::Standalone(args) => run_standalone(args).await,
            Command::Status(args) => show_status(args).await,
            Command::Operator(args) => run_operator(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l2announcer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let groups = standalone::groups(&args.interfaces, &args.ips, &config)?;
    let dp = &args.dataplane;
    let settings = settings(
        dp,
        Settings {
            xdp_mode: config.xdp_mode.unwrap_or_default(),
            garp_count: config.garp_count.unwrap_or(Settings::default().garp_count),
            garp_interval: config
                .garp_interval
                .unwrap_or(Settings::default().garp_interval),
            garp_refresh: config.garp_refresh,
            liveness_timeout: config
                .liveness_timeout
                .unwrap_or(Settings::default().liveness_timeout),
        },
    )?;
    let metrics_addr = dp
        .metrics_addr
        .or(config.metrics_addr)
        .unwrap_or(DEFAULT_METRICS_ADDR.parse()?);

    // Refuse patterns that match nothing now: a typo should not be a silent no-op.
    let (handle, _) = links::watch().context("rtnetlink")?;
    let current = links::dump(&handle).await.context("listing interfaces")?;
    let unmatched = l2announcer::announcer::unmatched_patterns(&groups, &current);
    if !unmatched.is_empty() {
        let names: Vec<&str> = current.values().map(|l| l.name.as_str()).collect();
        bail!(
            "interface pattern {:?} matches no interface on this machine (interfaces: {})",
            unmatched,
            names.join(", ")
        );
    }
    let (groups_tx, groups_rx) = watch::channel(groups);
    if let Some(path) = args.config.clone() {
        tokio::spawn(reload_on_sighup(
            path,
            args.interfaces.clone(),
            args.ips.clone(),
            groups_tx,
        ));
    }
    let (mut node, announcer) = Node::start(settings, metrics_addr, current).await?;
    node.serve_http();
    let result = announcer.run(groups_rx, shutdown_signal()).await;
    node.stop_http().await;
    result?;
    info!("stopped");
    Ok(())
}

/// The settings: flags over `base` (which holds the config file's values and the defaults).
fn settings(dp: &DataplaneArgs, base: Settings) -> anyhow::Result<Settings> {
    let settings = Settings {
        xdp_mode: dp.xdp_mode.unwrap_or(base.xdp_mode),
        garp_count: dp.garp_count.unwrap_or(base.garp_count),
        garp_interval: dp.garp_interval.unwrap_or(base.garp_interval),
        garp_refresh: dp.garp_refresh.or(base.garp_refresh),
        liveness_timeout: dp.liveness_timeout.unwrap_or(base.liveness_timeout),
    };
    if settings.liveness_timeout < l2announcer::announcer::HEARTBEAT * 2 {
        bail!("--liveness-timeout must be at least 2s (the heartbeat is written every second)");
    }
    Ok(settings)
}

/// What both modes run besides the announcer: the shared core and the HTTP endpoints.
struct Node {
    shared: Shared,
    registry: prometheus_client::registry::Registry,
    listener: Option<tokio::net::TcpListener>,
    http: Option<(
        watch::Sender<bool>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
}

impl Node {
    async fn start(
        settings: Settings,
        metrics_addr: SocketAddr,
        links: std::collections::BTreeMap<u32, links::Link>,
    ) -> anyhow::Result<(Self, Announcer)> {
        // Bind first: a taken port is a clear error before anything is attached.
        let listener = http::bind(metrics_addr)
            .await
            .with_context(|| format!("listening on {metrics_addr}"))?;
        if unsafe { libc::geteuid() } != 0 {
            info!(
                "not running as root: XDP needs CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_PERFMON"
            );
        }
        let dataplane = Dataplane::load(settings.liveness_timeout)?;
        let shared = Shared::new(Core {
            dataplane,
            links,
            gratuitous_sent: Default::default(),
            attach_errors: Default::default(),
            ready: false,
        });
        let announcer = Announcer::new(shared.clone(), settings)?;
        let registry = http::registry(shared.clone());
        let node = Node {
            shared,
            registry,
            listener: Some(listener),
            http: None,
        };
        Ok((node, announcer))
    }

    /// Starts the HTTP endpoints with the registry as it is now.
    fn serve_http(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let registry = std::mem::take(&mut self.registry);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let addr = listener.local_addr().ok();
        let server = tokio::spawn(http::serve(
            listener,
            self.shared.clone(),
            std::sync::Arc::new(registry),
            async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            },
        ));
        info!(metrics_addr = ?addr, "serving /metrics, /livez, /readyz, /status");
        self.http = Some((stop_tx, server));
    }

    async fn stop_http(self) {
        if let Some((stop, server)) = self.http {
            let _ = stop.send(true);
            if let Ok(Err(e)) = server.await {
                error!(error = %e, "HTTP server");
            }
        }
    }
}

async fn kube_client_config(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .context("kubeconfig")?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    })
}

async fn run_operator(args: OperatorArgs) -> anyhow::Result<()> {
    use l2announcer::{
        k8s::election::Timings,
        operator::{self, LeaderConfig, http::Health, metrics::IpamMetrics},
    };
    if !args.enabled {
        info!("operator disabled (--enabled=false): not assigning LoadBalancer addresses");
        return Ok(());
    }
    let timings = Timings {
        lease_duration: args.lease_duration,
        renew_deadline: args.lease_renew_deadline,
        retry_period: args.lease_retry_period,
    };
    timings.validate().context("lease timings")?;
    let identity = match args.identity {
        Some(id) if !id.is_empty() => id,
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .context("no --identity/POD_NAME and no host name")?,
    };
    let config = operator::Config {
        ipam: l2announcer_ipam::Config {
            classless: args.classless_services,
            classes: args.load_balancer_classes.into_iter().collect(),
            ipv4_enabled: args.ipv4,
            ipv6_enabled: args.ipv6,
        },
        leader: LeaderConfig {
            namespace: args
                .leader_election_namespace
                .unwrap_or_else(|| "kube-system".into()),
            name: args.leader_election_id,
            identity,
            timings,
        },
    };
    let kube_config = kube_client_config(args.kubeconfig.as_ref()).await?;
    let client = kube::Client::try_from(kube_config.clone()).context("API client")?;
    let lease_client = kube::Client::try_from(kube_config).context("API client")?;
    let listener = http::bind(args.metrics_addr)
        .await
        .with_context(|| format!("listening on {}", args.metrics_addr))?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("l2announcer");
    let metrics = std::sync::Arc::new(IpamMetrics::register(&mut registry));
    let health = std::sync::Arc::new(Health::default());
    let (stop_http, mut stop_http_rx) = watch::channel(false);
    let server = tokio::spawn(operator::http::serve(
        listener,
        std::sync::Arc::new(registry),
        health.clone(),
        async move {
            let _ = stop_http_rx.wait_for(|s| *s).await;
        },
    ));
    info!(
        identity = %config.leader.identity,
        lease = %format!("{}/{}", config.leader.namespace, config.leader.name),
        metrics_addr = %args.metrics_addr,
        "operator started"
    );
    operator::run(
        config,
        client,
        lease_client,
        metrics,
        health,
        shutdown_signal(),
    )
    .await;
    let _ = stop_http.send(true);
    if let Ok(Err(e)) = server.await {
        error!(error = %e, "HTTP server");
    }
    info!("stopped");
    Ok(())
}

async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    use l2announcer::k8s::{
        controller::{Config as AgentConfig, Controller},
        election::Timings,
        metrics::K8sMetrics,
    };
    let timings = Timings {
        lease_duration: args.lease_duration,
        renew_deadline: args.lease_renew_deadline,
        retry_period: args.lease_retry_period,
    };
    timings.validate().context("lease timings")?;
    let settings = settings(&args.dataplane, Settings::default())?;
    let metrics_addr = args
        .dataplane
        .metrics_addr
        .unwrap_or(DEFAULT_METRICS_ADDR.parse()?);
    let kube_config = kube_client_config(args.kubeconfig.as_ref()).await?;
    // Two clients, two connection pools: watches and status writes never queue in front of
    // lease renewals.
    let client = kube::Client::try_from(kube_config.clone()).context("API client")?;
    let lease_client = kube::Client::try_from(kube_config).context("API client")?;
    let lease_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| "kube-system".into());

    let (handle, _) = links::watch().context("rtnetlink")?;
    let current = links::dump(&handle).await.context("listing interfaces")?;
    let (mut node, announcer) = Node::start(settings, metrics_addr, current).await?;
    let metrics = std::sync::Arc::new(K8sMetrics::register(&mut node.registry));
    node.serve_http();
    let (groups_tx, groups_rx) = watch::channel(Vec::new());
    let controller = Controller::new(
        AgentConfig {
            node_name: args.node_name.clone(),
            lease_namespace,
            timings,
            keep_on_outage: args.api_outage == OutagePolicy::Keep,
        },
        client,
        lease_client,
        node.shared.clone(),
        metrics,
        groups_tx,
    );
    info!(node = %args.node_name, "agent started");

    // On SIGTERM: the controller stops deciding, the announcer withdraws every entry and
    // detaches, and only then are the leases released, so that no two nodes ever answer.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_controller = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let controller = tokio::spawn(controller.run(stop_controller));
    let stop_announcer = {
        let mut rx = stop_rx;
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let result = announcer.run(groups_rx, stop_announcer).await;
    signal.abort();
    match controller.await {
        Ok(controller) => controller.release_all().await,
        Err(e) => error!(error = %e, "controller task"),
    }
    node.stop_http().await;
    result?;
    info!("stopped");
    Ok(())
}

/// SIGHUP re-reads the configuration file: addresses and interface patterns change without a
/// restart (the other settings need one). A bad file is logged and the running set kept.
async fn reload_on_sighup(
    path: PathBuf,
    interfaces: Vec<String>,
    ips: Vec<IpAddr>,
    groups: watch::Sender<Vec<l2announcer::announcer::Group>>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let reloaded = Config::from_file(&path)
            .map_err(anyhow::Error::from)
            .and_then(|c| Ok(standalone::groups(&interfaces, &ips, &c)?));
        match reloaded {
            Ok(g) => {
                info!(path = %path.display(), "SIGHUP: configuration reloaded");
                let _ = groups.send(g);
            }
            Err(e) => error!(error = %e, "SIGHUP: keeping the running configuration"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed; the liveness fail-safe still covers it.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: withdrawing announcements"),
        _ = int.recv() => info!("SIGINT: withdrawing announcements"),
    }
}

async fn show_status(args: StatusArgs) -> anyhow::Result<()> {
    let body = http_get(args.addr, "/status").await.with_context(|| {
        format!(
            "no l2announcer answering on {} (is it running? --addr)",
            args.addr
        )
    })?;
    let status: Status = serde_json::from_str(&body).context("parsing the agent's status")?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Table => print!("{}", http::render_table(&status)),
    }
    Ok(())
}

/// A minimal HTTP/1.0 GET: the status client needs nothing more.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await??;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{}: {}", head.lines().next().unwrap_or(""), body.trim());
    }
    Ok(body.to_owned())
}
