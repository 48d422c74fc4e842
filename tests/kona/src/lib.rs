//! Interop tests with kona-p2p live in `tests/` (see docs/gossip.md, "Interop with kona-p2p").
