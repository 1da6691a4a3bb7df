//! An in-process Kubernetes API server that real clients talk to.
