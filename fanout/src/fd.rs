//! File descriptors: the fan-out's connection cap is kept below the process's `RLIMIT_NOFILE`
//! (see [`flashnode_fd`]) so that, however many sockets clients open, the RPC, health checks
//! and the rest of the node still get descriptors.

use crate::FanoutError;
use tracing::warn;

/// The connection cap in force for a configured `global` limit: `global` if the descriptor
/// limit leaves room for it after `reserve`, else as many as it does (with a warning); an error
/// when it leaves none.
pub(crate) fn connection_cap(global: usize, reserve: usize) -> Result<usize, FanoutError> {
    cap_for(global, reserve, flashnode_fd::nofile_limit())
}

fn cap_for(global: usize, reserve: usize, nofile: Option<u64>) -> Result<usize, FanoutError> {
    let room = flashnode_fd::room(reserve, nofile)
        .map_err(|e| FanoutError::Descriptors { nofile: e.nofile, reserve: e.reserve })?;
    match (room, nofile) {
        (Some(room), Some(nofile)) if global > room => {
            warn!(
                configured = global,
                cap = room,
                nofile,
                reserve,
                "fan-out connection limit lowered to {room}: RLIMIT_NOFILE is {nofile} and {reserve} descriptors are kept for the RPC, health checks and the node (--fd-reserve); raise the limit (ulimit -n) to serve --ws-global-limit {global}"
            );
            Ok(room)
        }
        _ => Ok(global),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        assert_eq!(cap_for(10_000, 256, Some(1024)).unwrap(), 768, "clamped");
        assert_eq!(cap_for(500, 256, Some(1024)).unwrap(), 500, "fits");
        assert_eq!(cap_for(10_000, 256, None).unwrap(), 10_000, "unlimited");
        assert!(matches!(
            cap_for(10, 256, Some(200)),
            Err(FanoutError::Descriptors { nofile: 200, reserve: 256 })
        ));
    }
}
