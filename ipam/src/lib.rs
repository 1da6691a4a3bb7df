//! LB-IPAM allocation as a pure state machine (no I/O).
