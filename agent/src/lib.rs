//! l2announcer: answers ARP and NDP for announced addresses from an XDP program, and decides
//! what to announce (standalone, or Kubernetes Services elected by Leases).

pub mod announce;
pub mod announcer;
pub mod dataplane;
pub mod http;
pub mod k8s;
pub mod links;
pub mod operator;
pub mod standalone;
