//! `kube-testkit --listen 127.0.0.1:18080`: serve the test API server until stopped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kube_testkit::{FaultConfig, TestKit};

/// An in-process Kubernetes API server for tests (plain HTTP).
#[derive(Debug, Parser)]
#[command(name = "kube-testkit", version)]
struct Args {
    /// Address to serve the Kubernetes API on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// Address of the admin endpoint (/_testkit/faults, /_testkit/close-watches,
    /// /_testkit/compact, /_testkit/audit); it stays up during an outage.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// kube-apiserver style token file: token,user,uid,"group1,group2".
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Authorize requests with RBAC (needs --token-auth-file).
    #[arg(long)]
    rbac: bool,
    /// Events kept for watches; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    history_size: usize,
    /// Where to write the kubeconfig (default: a temporary directory).
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    /// Add this latency to every request (milliseconds).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Answer CODE:FRACTION of requests with an error, e.g. 503:0.1.
    #[arg(long)]
    error_rate: Option<String>,
}

fn parse_error_rate(s: &str) -> anyhow::Result<(u16, f64)> {
    let (code, fraction) = s.split_once(':').context("--error-rate is CODE:FRACTION")?;
    Ok((
        code.parse().context("error code")?,
        fraction.parse().context("error fraction")?,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut builder = TestKit::builder()
        .listen(args.listen)
        .rbac(args.rbac)
        .history_size(args.history_size);
    if let Some(a) = args.admin_listen {
        builder = builder.admin_listen(a);
    }
    if let Some(f) = &args.token_auth_file {
        builder = builder.token_file(f);
    }
    if let Some(d) = &args.kubeconfig_dir {
        builder = builder.kubeconfig_dir(d);
    }
    let kit = builder.start().await.context("starting the server")?;
    let mut faults = FaultConfig {
        latency_ms: args.latency_ms,
        ..Default::default()
    };
    if let Some(r) = &args.error_rate {
        (faults.error_code, faults.error_fraction) = parse_error_rate(r)?;
    }
    kit.faults().set(faults);
    // Whoever reads our output may stop listening: a closed stdout must not stop the server.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "url: {}", kit.url());
    let _ = writeln!(out, "kubeconfig: {}", kit.kubeconfig_path().display());
    if let Some(a) = kit.admin_addr() {
        let _ = writeln!(out, "admin: http://{a}/_testkit/");
    }
    if let Some(t) = kit.admin_token() {
        let _ = writeln!(out, "admin token: {t}");
    }
    let _ = out.flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    kit.shutdown();
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
