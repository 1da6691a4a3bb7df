//! Kubernetes API types shared by the agent, the operator, the CRD generator and the tests.

pub mod ip_pool;
pub mod l2_policy;
mod schema;

pub use l2_policy::{
    CiliumL2AnnouncementPolicy, CiliumL2AnnouncementPolicySpec, CiliumL2AnnouncementPolicyStatus,
};
