//! LB-IPAM allocation as a pure state machine (no I/O).
//!
//! Cilium's LB-IPAM semantics (`CiliumLoadBalancerIPPool`, the `lbipam.cilium.io/*`
//! annotations, the `cilium.io/IPAMRequestSatisfied` condition and its reasons), with
//! addresses that never move because of a restart, a pool edit or another service's change.
//! The operator feeds [`Event`]s built with [`service_from_k8s`] and [`pool_from_crd`] into an
//! [`Allocator`] and writes the [`Decisions`] of [`Allocator::reconcile`].

pub mod addr;
pub mod allocator;
pub mod convert;
pub mod model;
pub mod selector;

#[cfg(test)]
mod proptests;

pub use addr::{Block, BlockError, Family, IpRange};
pub use allocator::{Allocator, Decisions, Event, PoolCounts, PoolUpdate, ServiceUpdate, Stats};
pub use convert::{pool_from_crd, service_from_k8s};
pub use model::{
    Condition, Config, FamilyRequest, IpFamilyPolicy, Pool, Port, Service, ServiceKey,
};
pub use selector::{LabelSelector, Operator, Requirement};
