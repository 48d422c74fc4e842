//! The chain's cadence (block time, flashblock interval) and the timing flags checked against
//! it at start. Every timing default suits the cadences that stream today (2 s / 200-250 ms and
//! 1 s / 200 ms); a flag set for one chain and run on another could flap (`pending` turning
//! stale between two flashblocks) or cover less than it says (a resume ring shorter than a
//! block), so a value that would flap refuses to start and one that weakens a promise warns,
//! each naming the flag and the value that fits.

use crate::cli::OverlayArgs;
use std::time::Duration;

/// How often a chain seals blocks and streams flashblocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// Time between blocks.
    pub block_time: Duration,
    /// Target time between flashblocks (a target, not a guarantee: Subblocks allows jitter);
    /// `None` where the chain's configuration does not say.
    pub flashblock_interval: Option<Duration>,
}

/// Flashblock intervals a stream may miss before `pending` is taken for stale or the stream
/// for dead: the spec's interval is a target, and a frame one interval late must not flap.
const STALE_INTERVALS: u32 = 2;
/// Blocks the canonical tip may stand still before readiness fails: one late block is not an
/// outage.
const CANONICAL_STALE_BLOCKS: u32 = 3;
/// Blocks of frames the fan-out's resume ring should hold, so a subscriber that reconnects
/// within a block catches up.
const RING_BLOCKS: u32 = 2;

/// What the check found: `Err` for a setting that would flap (the node refuses to start),
/// warnings for ones that weaken what the flag promises.
pub fn check(cadence: &Cadence, args: &OverlayArgs) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let block = cadence.block_time;
    if let Some(interval) = cadence.flashblock_interval.filter(|i| !i.is_zero()) {
        let floor = times(interval, STALE_INTERVALS);
        for (flag, value) in [
            ("--pending-stale-after", args.pending_stale_after),
            ("--stream-silence-timeout", args.stream_silence_timeout),
        ] {
            if value <= floor {
                return Err(format!(
                    "{flag} {} is at most {STALE_INTERVALS} flashblock intervals of this chain ({} each): pending would flap between frames; give more than {} (the default, 1s, fits every chain that streams today)",
                    shown(value),
                    shown(interval),
                    shown(floor),
                ));
            }
        }
        // The sync send answers at the preconfirmation, the next flashblock or the one after.
        if args.send_raw_sync_max <= floor {
            warnings.push(format!(
                "--send-raw-sync-max {} is at most {STALE_INTERVALS} flashblock intervals ({} each): eth_sendRawTransactionSync may give up before the transaction is preconfirmed; give more than {}",
                shown(args.send_raw_sync_max),
                shown(interval),
                shown(floor),
            ));
        }
        let (per_block, wanted) = ring_frames(block, interval);
        if args.fanout.ws_ring_frames < wanted {
            warnings.push(format!(
                "--ws-ring-frames {} holds less than {RING_BLOCKS} blocks of this chain's flashblocks ({per_block} a block): a subscriber resuming with /ws?from= may find its position gone; give {wanted} or more",
                args.fanout.ws_ring_frames
            ));
        }
    }
    if !block.is_zero() {
        let floor = times(block, CANONICAL_STALE_BLOCKS);
        if args.canonical_stale_after < floor {
            return Err(format!(
                "--canonical-stale-after {} is less than {CANONICAL_STALE_BLOCKS} blocks of this chain ({} each): one late block would fail readiness; give {} or more",
                shown(args.canonical_stale_after),
                shown(block),
                shown(floor),
            ));
        }
    }
    Ok(warnings)
}

/// The flashblocks a block of `block` holds at one every `interval` (one at least), and the
/// frames [`RING_BLOCKS`] blocks of them make.
fn ring_frames(block: Duration, interval: Duration) -> (usize, usize) {
    let n = block.as_micros() / interval.as_micros().max(1);
    let per_block = usize::try_from(n).unwrap_or(usize::MAX).max(1);
    (per_block, per_block.saturating_mul(RING_BLOCKS as usize))
}

/// `d` times `n`, saturating (a block time from a config can be anything).
fn times(d: Duration, n: u32) -> Duration {
    d.checked_mul(n).unwrap_or(Duration::MAX)
}

/// A duration as the flags take it: `2s`, `250ms`.
fn shown(d: Duration) -> String {
    match d.as_millis() {
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Flashblock intervals the derived stale and silence windows span (the defaults, 1 s, are
/// 4-5 intervals of the chains that stream today).
const DERIVED_STALE_INTERVALS: u32 = 4;

/// Derives the timing flags the operator left at their defaults from `cadence` where the
/// chain is slower than the defaults assume (never lower than the default), and returns what
/// was derived (flag, value) for the log.
pub fn derive(
    cadence: &Cadence,
    args: &mut OverlayArgs,
    explicit: impl Fn(&str) -> bool,
) -> Vec<(&'static str, String)> {
    let mut derived = Vec::new();
    let mut raise = |id: &str, flag: &'static str, value: &mut Duration, wanted: Duration| {
        if !explicit(id) && wanted > *value {
            *value = wanted;
            derived.push((flag, shown(wanted)));
        }
    };
    if let Some(interval) = cadence.flashblock_interval {
        let window = times(interval, DERIVED_STALE_INTERVALS);
        raise(
            "pending_stale_after",
            "--pending-stale-after",
            &mut args.pending_stale_after,
            window,
        );
        raise(
            "stream_silence_timeout",
            "--stream-silence-timeout",
            &mut args.stream_silence_timeout,
            window,
        );
    }
    let canonical = times(cadence.block_time, CANONICAL_STALE_BLOCKS);
    raise(
        "canonical_stale_after",
        "--canonical-stale-after",
        &mut args.canonical_stale_after,
        canonical,
    );
    if let Some(interval) = cadence.flashblock_interval.filter(|i| !i.is_zero()) {
        let (_, frames) = ring_frames(cadence.block_time, interval);
        if !explicit("ws_ring_frames") && frames > args.fanout.ws_ring_frames {
            args.fanout.ws_ring_frames = frames;
            derived.push(("--ws-ring-frames", frames.to_string()));
        }
    }
    derived
}

/// Fits the timing flags to `cadence` (when known): derives the ones left at their defaults
/// (see [`derive()`]), then checks them all ([`check`]), logging warnings or failing with the
/// reason.
pub fn enforce(cadence: Option<Cadence>, args: &mut OverlayArgs) -> anyhow::Result<()> {
    let Some(cadence) = cadence else {
        tracing::debug!("the chain's cadence is unknown: timing flags are not checked against it");
        return Ok(());
    };
    for (flag, value) in derive(&cadence, args, crate::config::explicitly_set) {
        tracing::info!(
            flag,
            value,
            block_time = %shown(cadence.block_time),
            "{flag} {value}: derived from the chain's cadence (the default is shorter than it needs)"
        );
    }
    for warning in check(&cadence, args).map_err(anyhow::Error::msg)? {
        tracing::warn!("{warning}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> OverlayArgs {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            overlay: OverlayArgs,
        }
        Wrap::parse_from(std::iter::once("flashnode").chain(extra.iter().copied())).overlay
    }

    fn cadence(block_ms: u64, interval_ms: u64) -> Cadence {
        Cadence {
            block_time: Duration::from_millis(block_ms),
            flashblock_interval: Some(Duration::from_millis(interval_ms)),
        }
    }

    #[test]
    fn the_defaults_fit_every_chain_that_streams_today() {
        for c in [cadence(2000, 200), cadence(2000, 250), cadence(1000, 200)] {
            assert_eq!(check(&c, &args(&[])), Ok(vec![]), "{c:?}");
        }
    }

    #[test]
    fn a_value_that_would_flap_is_refused_naming_the_flag() {
        let err = check(&cadence(1000, 200), &args(&["--pending-stale-after", "400ms"]));
        let err = err.unwrap_err();
        assert!(err.starts_with("--pending-stale-after 400ms") && err.contains("200ms"), "{err}");
        let err = check(&cadence(2000, 250), &args(&["--stream-silence-timeout", "300ms"]));
        assert!(err.unwrap_err().starts_with("--stream-silence-timeout 300ms"));
        let err = check(&cadence(2000, 250), &args(&["--canonical-stale-after", "4s"]));
        assert!(err.unwrap_err().contains("give 6s or more"));
    }

    #[test]
    fn values_that_weaken_a_promise_warn() {
        let w = check(
            &cadence(2000, 100),
            &args(&["--ws-ring-frames", "30", "--send-raw-sync-max", "200ms"]),
        )
        .unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("--send-raw-sync-max 200ms"), "{w:?}");
        assert!(w[1].starts_with("--ws-ring-frames 30") && w[1].contains("give 40"), "{w:?}");
    }

    #[test]
    fn defaults_derive_from_a_slow_cadence_and_explicit_values_are_kept() {
        let mut a = args(&[]);
        let derived = derive(&cadence(40_000, 500), &mut a, |_| false);
        assert_eq!(a.canonical_stale_after, Duration::from_secs(120));
        assert_eq!(a.pending_stale_after, Duration::from_secs(2));
        assert_eq!(a.stream_silence_timeout, Duration::from_secs(2));
        assert_eq!(a.fanout.ws_ring_frames, 160);
        assert_eq!(derived.len(), 4, "{derived:?}");
        assert_eq!(check(&cadence(40_000, 500), &a), Ok(vec![]), "derived values pass");
        // Fast chains keep the defaults.
        let mut a = args(&[]);
        assert!(derive(&cadence(1_000, 200), &mut a, |_| false).is_empty());
        // What the operator set is checked, never changed.
        let mut a = args(&["--canonical-stale-after", "20s"]);
        derive(&cadence(40_000, 500), &mut a, |id| id == "canonical_stale_after");
        assert_eq!(a.canonical_stale_after, Duration::from_secs(20));
        assert!(check(&cadence(40_000, 500), &a).unwrap_err().contains("give 120s or more"));
    }

    #[test]
    fn extreme_cadences_never_panic() {
        let tiny = Cadence {
            block_time: Duration::from_secs(1),
            flashblock_interval: Some(Duration::from_micros(500)),
        };
        let mut a = args(&[]);
        derive(&tiny, &mut a, |_| false);
        assert_eq!(a.fanout.ws_ring_frames, 4000, "2,000 a block, two blocks");
        let huge = Cadence { block_time: Duration::MAX, flashblock_interval: Some(Duration::MAX) };
        let mut a = args(&[]);
        derive(&huge, &mut a, |_| false);
        assert_eq!(a.canonical_stale_after, Duration::MAX);
        // Absurd, but answered (the stale window cannot exceed the interval): no panic.
        assert!(check(&huge, &a).is_err());
    }

    #[test]
    fn an_unknown_interval_checks_only_what_the_block_time_decides() {
        let c = Cadence { block_time: Duration::from_secs(2), flashblock_interval: None };
        assert_eq!(check(&c, &args(&["--pending-stale-after", "100ms"])), Ok(vec![]));
        assert!(check(&c, &args(&["--canonical-stale-after", "5s"])).is_err());
    }
}
