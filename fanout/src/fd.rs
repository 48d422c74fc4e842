//! File descriptors: the fan-out's connection cap is kept below the process's `RLIMIT_NOFILE`
//! so that, however many sockets clients open, the RPC, health checks and the rest of the
//! node still get descriptors.

use crate::FanoutError;
use tracing::warn;

/// The soft `RLIMIT_NOFILE` of this process, or `None` when unlimited or unknown.
pub(crate) fn nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes the current limits into `limit`, which outlives the call.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        // `rlim_t` is u64 on Linux but not on every target libc supports.
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap in force for a configured `global` limit: `global` if the descriptor
/// limit leaves room for it after `reserve`, else as many as it does (with a warning); an error
/// when it leaves none.
pub(crate) fn connection_cap(global: usize, reserve: usize) -> Result<usize, FanoutError> {
    cap_for(global, reserve, nofile_limit())
}

fn cap_for(global: usize, reserve: usize, nofile: Option<u64>) -> Result<usize, FanoutError> {
    let Some(nofile) = nofile else { return Ok(global) };
    let room = usize::try_from(nofile).unwrap_or(usize::MAX).saturating_sub(reserve);
    if room == 0 {
        return Err(FanoutError::Descriptors { nofile, reserve });
    }
    if global > room {
        warn!(
            configured = global,
            cap = room,
            nofile,
            reserve,
            "fan-out connection limit lowered to {room}: RLIMIT_NOFILE is {nofile} and {reserve} descriptors are kept for the RPC, health checks and the node (--ws-fd-reserve); raise the limit (ulimit -n) to serve --ws-global-limit {global}"
        );
        return Ok(room);
    }
    Ok(global)
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
