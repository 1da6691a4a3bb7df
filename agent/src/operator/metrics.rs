//! Metrics of the LB-IPAM operator (names get the registry's `l2announcer_` prefix).

use std::sync::atomic::AtomicU64;

use l2announcer_ipam::Stats;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

/// Address counts can exceed what an integer gauge holds (IPv6 pools): float gauges.
type BigGauge = Gauge<f64, AtomicU64>;

pub struct IpamMetrics {
    pub leader: Gauge,
    pub addresses_total: Family<PoolLabels, BigGauge>,
    pub addresses_used: Family<PoolLabels, BigGauge>,
    pub addresses_available: Family<PoolLabels, BigGauge>,
    pub conflicting_pools: Gauge,
    pub services_matching: Gauge,
    pub services_unsatisfied: Gauge,
    pub allocation_seconds: Histogram,
    pub reconcile_seconds: Histogram,
    pub status_writes: Family<WriteLabels, Counter>,
    pub writes_pending: Gauge,
    pub retries_pending: Gauge,
}

impl IpamMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            leader: Gauge::default(),
            addresses_total: Family::default(),
            addresses_used: Family::default(),
            addresses_available: Family::default(),
            conflicting_pools: Gauge::default(),
            services_matching: Gauge::default(),
            services_unsatisfied: Gauge::default(),
            allocation_seconds: Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            reconcile_seconds: Histogram::new([0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            status_writes: Family::default(),
            writes_pending: Gauge::default(),
            retries_pending: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("ipam");
        r.register(
            "leader",
            "1 while this replica holds the operator's Lease and writes.",
            m.leader.clone(),
        );
        r.register(
            "pool_addresses_total",
            "Addresses in a pool's blocks.",
            m.addresses_total.clone(),
        );
        r.register(
            "pool_addresses_used",
            "Addresses of a pool assigned or reserved.",
            m.addresses_used.clone(),
        );
        r.register(
            "pool_addresses_available",
            "Addresses of a pool still free.",
            m.addresses_available.clone(),
        );
        r.register(
            "conflicting_pools",
            "Pools that overlap an older pool and allocate nothing.",
            m.conflicting_pools.clone(),
        );
        r.register(
            "services_matching",
            "Services the operator is responsible for.",
            m.services_matching.clone(),
        );
        r.register(
            "services_unsatisfied",
            "Services the operator is responsible for that lack an address they ask for.",
            m.services_unsatisfied.clone(),
        );
        r.register(
            "allocation_seconds",
            "From a Service event (or the start of leadership) to its status written.",
            m.allocation_seconds.clone(),
        );
        r.register(
            "reconcile_seconds",
            "Time the allocator took for one reconcile.",
            m.reconcile_seconds.clone(),
        );
        r.register(
            "status_writes",
            "Status writes by kind (service, pool) and outcome (ok, conflict, not_found, error).",
            m.status_writes.clone(),
        );
        r.register(
            "status_writes_pending",
            "Status writes queued or in flight.",
            m.writes_pending.clone(),
        );
        r.register(
            "status_retries_pending",
            "Failed status writes waiting for their retry.",
            m.retries_pending.clone(),
        );
        m
    }

    /// Sets the gauges from the allocator's numbers.
    pub fn set_stats(&self, stats: &Stats) {
        self.addresses_total.clear();
        self.addresses_used.clear();
        self.addresses_available.clear();
        for (pool, counts) in &stats.pools {
            let labels = PoolLabels { pool: pool.clone() };
            self.addresses_total
                .get_or_create(&labels)
                .set(counts.total as f64);
            self.addresses_used
                .get_or_create(&labels)
                .set(counts.used as f64);
            self.addresses_available
                .get_or_create(&labels)
                .set(counts.available as f64);
        }
        self.conflicting_pools.set(stats.conflicting_pools as i64);
        self.services_matching.set(stats.services_matching as i64);
        self.services_unsatisfied
            .set(stats.services_unsatisfied as i64);
    }

    /// A standby knows nothing: its numbers would be stale.
    pub fn clear_stats(&self) {
        self.set_stats(&Stats::default());
    }

    pub fn write(&self, kind: &'static str, outcome: &'static str) {
        self.status_writes
            .get_or_create(&WriteLabels { kind, outcome })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use l2announcer_ipam::PoolCounts;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn stats_are_exported_per_pool() {
        let mut registry = Registry::with_prefix("l2announcer");
        let m = IpamMetrics::register(&mut registry);
        let mut stats = Stats {
            conflicting_pools: 1,
            services_matching: 3,
            services_unsatisfied: 1,
            ..Stats::default()
        };
        stats.pools.insert(
            "ip-pool-eno1".into(),
            PoolCounts {
                total: 101,
                available: 99,
                used: 2,
            },
        );
        m.set_stats(&stats);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("l2announcer_ipam_pool_addresses_available{pool=\"ip-pool-eno1\"} 99.0"),
            "{text}"
        );
        assert!(text.contains("l2announcer_ipam_services_unsatisfied 1"));
        assert!(text.contains("l2announcer_ipam_conflicting_pools 1"));
        // A pool that is gone disappears from the export.
        m.set_stats(&Stats::default());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(!text.contains("ip-pool-eno1"));
    }
}
