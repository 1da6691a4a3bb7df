//! The agent's HTTP endpoints: /metrics (Prometheus, read from the maps at scrape time),
//! /livez, /readyz and /status (JSON, for `l2announcer status`).

use std::{fmt::Write as _, net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, text::encode},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::announcer::{Shared, Status};

/// The metrics registry: the data plane's counters (read from the maps at scrape time);
/// other parts register theirs into it before serving.
pub fn registry(shared: Shared) -> Registry {
    let mut registry = Registry::with_prefix("l2announcer");
    registry.register_collector(Box::new(StatusCollector(shared)));
    registry
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Shared,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared, registry))
        .with_graceful_shutdown(shutdown)
        .await
}

pub fn router(shared: Shared, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics).with_state(registry))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(shared)
}

/// Binds the metrics address, with a clear error when it is taken.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn status(State(shared): State<Shared>) -> Result<Json<Status>, (StatusCode, String)> {
    let status = shared.lock().status();
    status
        .map(Json)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Live while the announcer loop keeps the heartbeat fresh: a stuck loop fails liveness and
/// gets restarted, as the XDP program already stopped answering for it.
async fn livez(State(shared): State<Shared>) -> (StatusCode, String) {
    let core = shared.lock();
    match core.dataplane.liveness_age() {
        Ok(age) if age < crate::announcer::HEARTBEAT * 3 => (StatusCode::OK, "ok\n".into()),
        Ok(age) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("heartbeat is {:.1}s old\n", age.as_secs_f64()),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn readyz(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    if shared.lock().ready {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut body = String::new();
    match encode(&mut body, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

struct StatusCollector(Shared);

impl std::fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusCollector")
    }
}

type Labels = Vec<(&'static str, String)>;

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, None, first.1.metric_type())?;
    for (labels, value) in &rows {
        value.encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(status) = self.0.lock().status() else {
            return Err(std::fmt::Error);
        };
        let mut packets = Vec::new();
        let mut modes = Vec::new();
        let mut gratuitous = Vec::new();
        for i in &status.interfaces {
            for (counter, value) in &i.counters {
                packets.push((
                    vec![("interface", i.name.clone()), ("counter", counter.clone())],
                    ConstCounter::new(*value),
                ));
            }
            modes.push((
                vec![("interface", i.name.clone()), ("mode", i.xdp_mode.clone())],
                ConstGauge::new(1i64),
            ));
            gratuitous.push((
                vec![("interface", i.name.clone())],
                ConstCounter::new(i.gratuitous_sent),
            ));
        }
        family(
            &mut encoder,
            "xdp_packets",
            "ARP/NDP frames the XDP program handled, per interface and counter (requests seen, replies sent, passed by reason, conflicts).",
            packets,
        )?;
        family(
            &mut encoder,
            "xdp_attached",
            "1 for each interface the XDP program is attached to, with its mode (native or generic).",
            modes,
        )?;
        family(
            &mut encoder,
            "gratuitous_sent",
            "Gratuitous ARP and unsolicited NA frames sent, per interface.",
            gratuitous,
        )?;
        let mut replies = Vec::new();
        let mut conflicts = Vec::new();
        let mut announced = Vec::new();
        for a in &status.announcements {
            let labels = vec![("ip", a.ip.to_string()), ("interface", a.interface.clone())];
            replies.push((labels.clone(), ConstCounter::new(a.replies)));
            conflicts.push((labels.clone(), ConstCounter::new(a.conflicts)));
            announced.push((labels, ConstGauge::new(1i64)));
        }
        family(
            &mut encoder,
            "announcements",
            "1 for each address announced on an interface.",
            announced,
        )?;
        family(
            &mut encoder,
            "replies",
            "ARP replies and Neighbor Advertisements sent, per address and interface.",
            replies,
        )?;
        family(
            &mut encoder,
            "conflicts",
            "Frames from another MAC claiming an announced address, per address and interface.",
            conflicts,
        )?;
        family(
            &mut encoder,
            "liveness_age_seconds",
            "Age of the heartbeat the XDP program checks; past the liveness timeout it answers nothing.",
            vec![(Vec::new(), ConstGauge::new(status.liveness_age_seconds))],
        )?;
        Ok(())
    }
}

/// Renders a status as the human table of `l2announcer status`.
pub fn render_table(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<16} {:<18} {:>10} {:>10}",
        "ADDRESS", "INTERFACE", "MAC", "REPLIES", "CONFLICTS"
    );
    for a in &status.announcements {
        let conflicts = match &a.conflict_mac {
            Some(mac) => format!("{} (last {mac})", a.conflicts),
            None => a.conflicts.to_string(),
        };
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:<18} {:>10} {:>10}",
            a.ip, a.interface, a.mac, a.replies, conflicts
        );
    }
    let _ = writeln!(out);
    for i in &status.interfaces {
        let _ = writeln!(
            out,
            "interface {} (ifindex {}, {}): XDP {}, gratuitous sent {}",
            i.name, i.ifindex, i.mac, i.xdp_mode, i.gratuitous_sent
        );
        let nonzero: Vec<String> = i
            .counters
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "  counters: {}",
            if nonzero.is_empty() {
                "all zero".to_owned()
            } else {
                nonzero.join(" ")
            }
        );
    }
    let _ = writeln!(
        out,
        "liveness: heartbeat {:.1}s old; ready: {}",
        status.liveness_age_seconds, status.ready
    );
    out
}
