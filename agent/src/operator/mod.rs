//! `l2announcer operator`: LB-IPAM for clusters without Cilium. It assigns
//! `status.loadBalancer.ingress` to LoadBalancer Services from `CiliumLoadBalancerIPPool`s,
//! with Cilium's semantics, as decided by the pure allocator of `l2announcer-ipam`.
//!
//! - [`leader`]: one active replica through a single Lease (a second one is a hot standby);
//! - [`controller`]: watches, the allocator, status writes and their retries;
//! - [`status`]: the status patches, as pure functions;
//! - [`metrics`], [`http`]: /metrics, /livez, /readyz.

pub mod controller;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod status;

use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;
use tracing::warn;

pub use controller::Controller;
pub use leader::LeaderConfig;

/// Default name of the operator's Lease.
pub const DEFAULT_LEASE_NAME: &str = "l2announcer-operator";

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub ipam: l2announcer_ipam::Config,
    pub leader: LeaderConfig,
}

/// Runs the operator until `shutdown` resolves: the controller stops writing first, then
/// the Lease is released so that a standby takes over at once. `client` serves watches and
/// status writes, `lease_client` only the Lease (its watch and writes), so renewals never
/// queue behind status writes or large lists.
pub async fn run(
    config: Config,
    client: Client,
    lease_client: Client,
    metrics: Arc<metrics::IpamMetrics>,
    health: Arc<http::Health>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (leading_tx, leading_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    // The lease watch has its own client too: it must not wait behind the first list of
    // thousands of Services.
    let leader = tokio::spawn(leader::run(
        config.leader.clone(),
        lease_client.clone(),
        lease_client,
        leading_tx,
        stop_rx,
    ));
    let controller = Controller::new(config.ipam, client, leading_rx, metrics, health);
    controller.run(shutdown).await;
    let _ = stop_tx.send(true);
    if let Err(e) = leader.await {
        warn!(error = %e, "leader election task");
    }
}
