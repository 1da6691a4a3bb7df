//! An in-process Kubernetes API server that real clients talk to.
pub mod patch;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod ssa;
pub mod status;
pub mod store;
pub mod util;
