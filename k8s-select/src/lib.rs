//! Cilium's L2 announcement selection semantics, plus ours, as pure code (no I/O, no
//! client): which IPs a node competes for, on which interfaces, which nodes are eligible for
//! each IP and in which order they are preferred, the status conditions a policy should
//! carry, and the name of the Lease for each IP.
//!
//! Inputs are plain values ([`ServiceInfo`], [`PolicyInfo`], node labels, [`EndpointIndex`])
//! with thin conversions from the Kubernetes objects. See [`select`] for the rules.

pub mod conditions;
pub mod lease;
pub mod model;
pub mod policy;
pub mod rank;
pub mod select;
pub mod selector;

pub use conditions::{conditions_need_update, desired_conditions};
pub use lease::{LEASE_NAME_PREFIX, ip_of_lease_name, lease_name};
pub use model::{
    EndpointIndex, ServiceEndpoints, ServiceInfo, ServiceKey, endpoint_index, node_labels,
};
pub use policy::{Interfaces, PolicyInfo, PolicyProblems, policy_selects_node};
pub use rank::{rank, ranking};
pub use select::{Candidacy, Selection};
pub use selector::{Labels, Selector, SelectorError};
