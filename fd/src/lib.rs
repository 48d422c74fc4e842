//! File descriptors: the connection limits of the node's listeners (RPC, fan-out) are kept
//! below the process's `RLIMIT_NOFILE`, minus a reserve, so that however many sockets clients
//! open, health checks, the upstream, gossip and the node's files still get descriptors. A
//! listener that runs out of descriptors fails `accept` in a loop and answers nobody; one at
//! its connection limit answers HTTP 429 and stays healthy.

/// Descriptors kept for everything but client connections, unless configured otherwise.
pub const DEFAULT_RESERVE: usize = 256;

/// The limit leaves no descriptor for client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RLIMIT_NOFILE is {nofile}, which leaves no descriptors for client connections after the {reserve} kept for the rest of the node")]
pub struct NoRoom {
    /// The soft `RLIMIT_NOFILE`.
    pub nofile: u64,
    /// The descriptors kept back.
    pub reserve: usize,
}

/// The soft `RLIMIT_NOFILE` of this process, or `None` when unlimited or unknown.
pub fn nofile_limit() -> Option<u64> {
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

/// The descriptors client connections may use: `nofile` minus `reserve` (`None`: no limit).
pub fn room(reserve: usize, nofile: Option<u64>) -> Result<Option<usize>, NoRoom> {
    let Some(nofile) = nofile else { return Ok(None) };
    match usize::try_from(nofile).unwrap_or(usize::MAX).saturating_sub(reserve) {
        0 => Err(NoRoom { nofile, reserve }),
        room => Ok(Some(room)),
    }
}

/// Shares `room` between listeners that each want a connection limit (`wanted`, in the same
/// order in the answer). When the wanted limits fit they are kept; otherwise the room is shared
/// max-min fairly: a listener that wants less than an even share keeps its limit and the rest
/// is split evenly among the others (every listener gets one at least).
pub fn share(wanted: &[usize], room: Option<usize>) -> Vec<usize> {
    let Some(room) = room else { return wanted.to_vec() };
    if wanted.iter().fold(0usize, |a, w| a.saturating_add(*w)) <= room {
        return wanted.to_vec();
    }
    let mut out = vec![0; wanted.len()];
    let mut open: Vec<usize> = (0..wanted.len()).collect();
    let mut left = room;
    // Water-filling: settle everyone below the even share, then split what is left.
    loop {
        let even = left / open.len().max(1);
        let (settled, rest): (Vec<usize>, Vec<usize>) =
            open.iter().partition(|&&i| wanted[i] <= even);
        if settled.is_empty() {
            let n = rest.len().max(1);
            for (k, &i) in rest.iter().enumerate() {
                // The first `left % n` get one more, so the whole room is shared.
                out[i] = (left / n + usize::from(k < left % n)).max(1);
            }
            return out;
        }
        for &i in &settled {
            out[i] = wanted[i];
            left -= wanted[i];
        }
        open = rest;
        if open.is_empty() {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_is_the_limit_minus_the_reserve() {
        assert_eq!(room(256, Some(1024)), Ok(Some(768)));
        assert_eq!(room(256, None), Ok(None), "unlimited");
        assert_eq!(room(256, Some(200)), Err(NoRoom { nofile: 200, reserve: 256 }));
        assert_eq!(room(200, Some(200)), Err(NoRoom { nofile: 200, reserve: 200 }));
    }

    #[test]
    fn limits_that_fit_are_kept_and_others_share_max_min_fairly() {
        assert_eq!(share(&[100, 50], Some(768)), [100, 50], "fits");
        assert_eq!(share(&[10_000, 10_000], None), [10_000, 10_000], "unlimited");
        assert_eq!(share(&[10_000, 10_000], Some(200)), [100, 100], "even");
        assert_eq!(share(&[50, 10_000], Some(200)), [50, 150], "the small one keeps its own");
        assert_eq!(share(&[10_000, 10_000], Some(201)), [101, 100], "all of the room");
        assert_eq!(share(&[10_000, 10_000, 10_000], Some(2)), [1, 1, 1], "one at least");
        assert_eq!(share(&[10_000], Some(768)), [768]);
        for (wanted, room) in [(vec![3, 900, 40, 7], 500usize), (vec![600, 600], 1000)] {
            let got = share(&wanted, Some(room));
            assert_eq!(got.iter().sum::<usize>(), room, "{wanted:?} in {room}: {got:?}");
            assert!(got.iter().zip(&wanted).all(|(g, w)| g <= w));
        }
    }
}
