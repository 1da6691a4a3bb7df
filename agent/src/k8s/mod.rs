//! Kubernetes mode: which node announces each Service IP, decided with one Lease per IP.

pub mod controller;
pub mod election;
pub mod leases;
pub mod metrics;
