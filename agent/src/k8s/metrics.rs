//! Metrics of the Kubernetes mode: leases, takeovers, API requests, selection.

use std::{collections::BTreeSet, net::IpAddr};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub verb: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub namespace: String,
    pub name: String,
}

pub struct K8sMetrics {
    pub leases_held: Gauge,
    pub acquisitions: Counter,
    pub losses: Counter,
    pub takeover_seconds: Histogram,
    pub renew_errors: Counter,
    pub renew_seconds: Histogram,
    pub api_requests: Family<ApiLabels, Counter>,
    pub services_selected: Gauge,
    pub no_eligible_node: Family<ServiceLabels, Gauge>,
}

impl K8sMetrics {
    /// Creates the metrics and registers them (names get the registry's prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            leases_held: Gauge::default(),
            acquisitions: Counter::default(),
            losses: Counter::default(),
            takeover_seconds: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0,
            ]),
            renew_errors: Counter::default(),
            renew_seconds: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            api_requests: Family::default(),
            services_selected: Gauge::default(),
            no_eligible_node: Family::default(),
        };
        registry.register(
            "leases_held",
            "Leases this node holds (addresses it may announce).",
            m.leases_held.clone(),
        );
        registry.register(
            "lease_acquisitions",
            "Leases acquired (created or taken over).",
            m.acquisitions.clone(),
        );
        registry.register(
            "lease_losses",
            "Leases lost to another node or to failed renewals.",
            m.losses.clone(),
        );
        registry.register(
            "takeover_seconds",
            "From the moment this node wanted a free or expired lease to holding it.",
            m.takeover_seconds.clone(),
        );
        registry.register(
            "lease_renew_errors",
            "Lease renewals that failed.",
            m.renew_errors.clone(),
        );
        registry.register(
            "lease_renew_seconds",
            "Latency of lease renewals.",
            m.renew_seconds.clone(),
        );
        registry.register(
            "api_requests",
            "Writes to the API server by verb and outcome (ok, conflict, unavailable, rejected).",
            m.api_requests.clone(),
        );
        registry.register(
            "services_selected",
            "Services some policy selects for announcement, cluster-wide.",
            m.services_selected.clone(),
        );
        registry.register(
            "service_no_eligible_node",
            "1 for a selected Service whose address no node is eligible to announce.",
            m.no_eligible_node.clone(),
        );
        m
    }

    pub fn api_request(&self, verb: &'static str, outcome: &'static str) {
        self.api_requests
            .get_or_create(&ApiLabels { verb, outcome })
            .inc();
    }

    /// Marks the Services whose addresses have no eligible node (labels and endpoints).
    pub fn set_no_eligible(
        &self,
        selection: &l2announcer_k8s_select::Selection<'_>,
        eligible: &std::collections::BTreeMap<IpAddr, BTreeSet<String>>,
    ) {
        self.no_eligible_node.clear();
        for (ip, services) in l2announcer_k8s_select::select::services_by_ip(selection) {
            if eligible.get(&ip).is_some_and(|e| !e.is_empty()) {
                continue;
            }
            for key in services {
                self.no_eligible_node
                    .get_or_create(&ServiceLabels {
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                    })
                    .set(1);
            }
        }
    }
}
