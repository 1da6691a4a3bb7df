//! The operator's HTTP endpoints: /metrics, /livez and /readyz. (The agent's server in
//! [`crate::http`] is tied to the data plane; the operator has none.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding::text::encode, registry::Registry};

/// Liveness and readiness, as the controller loop reports them.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds after `started` of the loop's last heartbeat.
    heartbeat_ms: AtomicU64,
    ready: AtomicBool,
}

/// The loop beats every second; three missed beats mean it is stuck.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Health {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        }
    }
}

impl Health {
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    /// Ready once the watches have listed everything (leader or standby).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Age of the last heartbeat.
    pub fn heartbeat_age(&self) -> Duration {
        let beat = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat)
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

pub fn router(registry: Arc<Registry>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, health })
}

async fn livez(State(s): State<AppState>) -> (StatusCode, String) {
    let age = s.health.heartbeat_age();
    if age < LIVENESS_TIMEOUT {
        (StatusCode::OK, "ok\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("controller loop silent for {:.1}s\n", age.as_secs_f64()),
        )
    }
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.health.ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "listing\n")
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut body = String::new();
    match encode(&mut body, &s.registry) {
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

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, health))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_age_follows_beats() {
        let h = Health::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(h.heartbeat_age() >= Duration::from_millis(30));
        h.beat();
        assert!(h.heartbeat_age() < Duration::from_millis(30));
        assert!(!h.ready());
        h.set_ready(true);
        assert!(h.ready());
    }
}
