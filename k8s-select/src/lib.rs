//! Selection of Services, nodes and interfaces for L2 announcements (pure, no I/O).
