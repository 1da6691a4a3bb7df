//! Cilium's L2 announcement selection semantics, plus ours, as pure code (no I/O).
