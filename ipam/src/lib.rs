//! LB-IPAM allocation as a pure state machine (no I/O).
//!
//! Cilium's LB-IPAM semantics (`CiliumLoadBalancerIPPool`, the `lbipam.cilium.io/*`
//! annotations, the `cilium.io/IPAMRequestSatisfied` condition and its reasons), with
//! addresses that never move because of a restart, a pool edit or another service's change.
//!
//! # Contract with the operator shell
//!
//! * Build inputs with [`service_from_k8s`] and [`pool_from_crd`] and feed them as [`Event`]s
//!   to [`Allocator::apply`]; deletions by key/name.
//! * At start-up (and after a failover), apply the complete initial lists of pools and
//!   services, then call [`Allocator::reconcile`] once. Addresses already in the services'
//!   status are re-adopted before anything new is handed out, so nothing moves, and the
//!   result does not depend on the order of the initial events. Afterwards, reconcile after
//!   each event (or batch of events).
//! * Write what [`Decisions`] says, and only that:
//!   - [`ServiceUpdate::Set`]: `status.loadBalancer.ingress` becomes exactly
//!     `[{ip}, ...]`, and the `cilium.io/IPAMRequestSatisfied` condition is set (keep
//!     `lastTransitionTime` when the status value does not change; `observedGeneration` is
//!     the service's `metadata.generation`). Field manager `cilium-operator-lb-ipam` keeps
//!     Cilium's tooling happy.
//!   - [`ServiceUpdate::Clear`]: the service left our responsibility; remove its ingress
//!     addresses and our condition.
//!   - [`PoolUpdate`]: replace the pool's conditions of the listed types (Cilium's four
//!     plus [`allocator::POOL_CONDITION_OUTSIDE_BLOCKS`] and
//!     [`allocator::POOL_CONDITION_INVALID_BLOCKS`]), leave other types alone.
//!   - When a write fails, call [`Allocator::retry_service`], [`Allocator::retry_clear`] or
//!     [`Allocator::retry_pool`]: the next reconcile returns it again. (Any later event for
//!     the object also makes the allocator compare with what the object really carries.)
//! * [`Allocator::stats`] gives the numbers for metrics (per-pool total/used/available,
//!   conflicting pools, matching and unsatisfied services).
//!
//! # Where this differs from Cilium (on purpose)
//!
//! * Addresses already assigned are kept through a restart even when their pool is disabled
//!   or conflicting, and through pool edits: an address a shrink leaves outside its pool's
//!   blocks stays assigned, and is reported on the pool (`l2announcer.io/AddressesOutsideBlocks`)
//!   and in the service's condition message. Deleting a pool releases its addresses, unless
//!   another pool selecting the service covers them (a renamed pool).
//! * Allocation order is deterministic: pools by creation time then name, blocks in spec
//!   order, the lowest free address; services by creation time then namespace/name, with
//!   specific requests served before generic ones.
//! * When two sharers become incompatible, the one whose spec changed leaves the address
//!   (if both changed, the younger one).

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
pub use selector::PoolSelector;
