//! flashnode's end-to-end tests, one binary: each module drives the real `flashnode` binary
//! (and anvil, cast, chromium, a libp2p peer where it needs them) through its public surface.
//! One binary links the test dependencies once instead of twelve times.

mod cadence;
mod chart;
mod clients;
mod devnet;
mod differential;
mod fanout;
mod faults;
mod gossip;
mod ingest;
mod native_blocks;
mod node;
mod ops;
mod provisional;
mod readiness;
mod relay;
mod rpc_limits;
mod state;
mod status_page;
mod subblocks;
mod subscriptions;
mod supervision;
