//! Fault injection: outages, hanging requests, error answers, latency, closed watches and
//! compacted history.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::Store;

/// The faults in force. `Default` is a healthy server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultConfig {
    /// Refuse connections (the listener is closed) and drop open ones.
    pub outage: bool,
    /// Hold every request until this is cleared.
    pub hang: bool,
    /// Answer this HTTP code (429, 500, 503, ...) to `error_fraction` of requests.
    pub error_code: u16,
    pub error_fraction: f64,
    /// Delay every request by this many milliseconds.
    pub latency_ms: u64,
}

/// Whether the n-th request (0-based) is one of the `fraction` that fail: failures are spread
/// evenly and deterministically (fraction 0.25 fails requests 3, 7, 11, ...).
pub fn fails(n: u64, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    if fraction >= 1.0 {
        return true;
    }
    ((n + 1) as f64 * fraction).floor() > (n as f64 * fraction).floor()
}

/// The fault-injection handle of a running server (cheap to clone).
#[derive(Clone)]
pub struct Faults {
    config: Arc<watch::Sender<FaultConfig>>,
    /// Whether the API listener is bound (false during an outage).
    listening: Arc<watch::Sender<bool>>,
    requests: Arc<AtomicU64>,
    store: Arc<Store>,
}

impl Faults {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Faults {
            config: Arc::new(watch::Sender::new(FaultConfig::default())),
            listening: Arc::new(watch::Sender::new(true)),
            requests: Arc::new(AtomicU64::new(0)),
            store,
        }
    }

    pub fn config(&self) -> FaultConfig {
        self.config.borrow().clone()
    }

    /// Replaces the whole fault configuration. Returns once the listener follows the outage
    /// setting (closed during an outage, bound again after it), or after 2 s.
    pub fn set(&self, config: FaultConfig) {
        let outage = config.outage;
        self.config.send_replace(config);
        self.wait_listening(!outage);
    }

    fn wait_listening(&self, want: bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while *self.listening.borrow() != want && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(crate) fn set_listening(&self, on: bool) {
        self.listening.send_replace(on);
    }

    /// Back to a healthy server (history and watches are not restored, objects are intact).
    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    /// Refuse connections and drop the open ones (`true`), or accept again (`false`).
    pub fn outage(&self, on: bool) {
        self.config.send_modify(|c| c.outage = on);
        self.wait_listening(!on);
    }

    /// Hold every request until called again with `false`.
    pub fn hang(&self, on: bool) {
        self.config.send_modify(|c| c.hang = on);
    }

    /// Answer `code` (e.g. 429, 500, 503) to `fraction` (0.0 to 1.0) of requests.
    pub fn errors(&self, code: u16, fraction: f64) {
        self.config.send_modify(|c| {
            c.error_code = code;
            c.error_fraction = fraction;
        });
    }

    /// Delay every request.
    pub fn latency(&self, delay: Duration) {
        self.config
            .send_modify(|c| c.latency_ms = delay.as_millis() as u64);
    }

    /// End every open watch now.
    pub fn close_watches(&self) {
        self.store.close_watches();
    }

    /// Forget the event history: watches from any resourceVersion seen so far get 410 Gone.
    pub fn compact(&self) {
        self.store.compact();
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<FaultConfig> {
        self.config.subscribe()
    }

    /// The injected error code for the next request, if it is to fail.
    pub(crate) fn next_error(&self) -> Option<u16> {
        let c = self.config.borrow();
        if c.error_code == 0 || c.error_fraction <= 0.0 {
            return None;
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        fails(n, c.error_fraction).then_some(c.error_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_spread_evenly() {
        let count = |f: f64| (0..1000).filter(|n| fails(*n, f)).count();
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 1000);
        assert_eq!(count(0.25), 250);
        assert_eq!(count(0.1), 100);
        assert!(!fails(0, 0.5) && fails(1, 0.5) && !fails(2, 0.5));
    }
}
