//! Kubernetes API types shared by the agent, the operator, the CRD generator and the tests.

pub mod ip_pool;
