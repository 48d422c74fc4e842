//! Names of the metrics recorded by the overlay crate, in one place so dashboards and code
//! agree.

/// Counter: data (Text/Binary) frames received from the flashblock stream.
pub const STREAM_FRAMES_TOTAL: &str = "flashnode_stream_frames_total";

/// Counter: bytes of data frames received from the flashblock stream, as sent on the wire.
pub const STREAM_BYTES_TOTAL: &str = "flashnode_stream_bytes_total";

/// Counter: reconnection attempts to the flashblock stream.
pub const STREAM_RECONNECTS_TOTAL: &str = "flashnode_stream_reconnects_total";

/// Counter, label `reason`: connections lost or connection attempts failed.
pub const STREAM_DISCONNECTS_TOTAL: &str = "flashnode_stream_disconnects_total";

/// Counter, label `kind`: frames that could not be decoded into a flashblock.
pub const STREAM_MALFORMED_TOTAL: &str = "flashnode_stream_malformed_total";

/// Counter: reconnections that resumed right after the last flashblock (`?from=`).
pub const STREAM_RESUMES_TOTAL: &str = "flashnode_stream_resumes_total";

/// Gauge: 1 while connected to the flashblock stream, else 0.
pub const STREAM_CONNECTED: &str = "flashnode_stream_connected";

/// Counter: read-discovery rounds (a speculative run of a flashblock's remaining
/// transactions and one upstream batch of what they read) run before executing for real.
pub const DISCOVERY_ROUNDS_TOTAL: &str = "flashnode_overlay_discovery_rounds_total";

/// Counter: accounts and slots read-discovery fetched in batches ahead of execution.
pub const DISCOVERED_READS_TOTAL: &str = "flashnode_overlay_discovered_reads_total";

/// Histogram: seconds of one read-discovery round's speculative run.
pub const DISCOVERY_RUN_SECONDS: &str = "flashnode_overlay_discovery_run_seconds";

/// Histogram: seconds of one read-discovery round's upstream fetch (all its batches).
pub const DISCOVERY_FETCH_SECONDS: &str = "flashnode_overlay_discovery_fetch_seconds";

/// Counter: transactions whose speculative outcome was committed as it was (every value the
/// speculative run guessed turned out right), saving their second execution.
pub const SPECULATED_TXS_KEPT_TOTAL: &str = "flashnode_overlay_speculated_txs_kept_total";

/// Counter: blocks started on their parent's state as this node executed it, because the
/// parent sealed exactly as executed (no refetch of what the parent read or wrote).
pub const CARRIED_BLOCKS_TOTAL: &str = "flashnode_overlay_carried_blocks_total";

/// Registers units and descriptions of the metrics above with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

    describe_counter!(
        CARRIED_BLOCKS_TOTAL,
        Unit::Count,
        "Blocks started on their parent's state as executed here (the parent sealed as executed)"
    );
    describe_counter!(
        DISCOVERY_ROUNDS_TOTAL,
        Unit::Count,
        "Read-discovery rounds (speculative run + one upstream batch) before executing"
    );
    describe_counter!(
        DISCOVERED_READS_TOTAL,
        Unit::Count,
        "Accounts and slots fetched in batches by read-discovery ahead of execution"
    );
    describe_histogram!(
        DISCOVERY_RUN_SECONDS,
        Unit::Seconds,
        "Seconds of one read-discovery round's speculative run"
    );
    describe_histogram!(
        DISCOVERY_FETCH_SECONDS,
        Unit::Seconds,
        "Seconds of one read-discovery round's upstream fetch"
    );
    describe_counter!(
        SPECULATED_TXS_KEPT_TOTAL,
        Unit::Count,
        "Transactions whose speculative outcome was committed as it was (every guess right)"
    );
    describe_counter!(
        STREAM_FRAMES_TOTAL,
        Unit::Count,
        "Data frames received from the flashblock stream"
    );
    describe_counter!(
        STREAM_BYTES_TOTAL,
        Unit::Bytes,
        "Wire bytes of data frames received from the flashblock stream"
    );
    describe_counter!(
        STREAM_RECONNECTS_TOTAL,
        Unit::Count,
        "Reconnection attempts to the flashblock stream"
    );
    describe_counter!(
        STREAM_DISCONNECTS_TOTAL,
        Unit::Count,
        "Flashblock stream connections lost or failed, by reason"
    );
    describe_counter!(
        STREAM_MALFORMED_TOTAL,
        Unit::Count,
        "Undecodable flashblock frames, by kind"
    );
    describe_counter!(
        STREAM_RESUMES_TOTAL,
        Unit::Count,
        "Reconnections to the flashblock stream that resumed after the last flashblock"
    );
    describe_gauge!(STREAM_CONNECTED, "1 while connected to the flashblock stream");
}
