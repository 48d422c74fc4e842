//! What every flashblock stream client in flashnode shares: the node's stream (`overlay`) and
//! the relay's upstream (`fanout`) read the same kind of websocket with the same liveness
//! settings, ask for a resume the same way and log their URLs without credentials.
//!
//! A flashnode fan-out that serves `?from=` says so with [`RESUME_HEADER`] on its 101; a client
//! that saw it asks for the frames after its last one with [`with_query`] on reconnect.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The response header of a flashnode fan-out that serves `/ws?from=<block>-<index>`.
pub const RESUME_HEADER: &str = "x-flashnode-resume";

/// Default cap on one websocket message or frame, in bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Default cap on one flashblock once decompressed, in bytes.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 32 * 1024 * 1024;

/// Default of [`StreamClientConfig::ping_interval`].
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(500);

/// Default of [`StreamClientConfig::silence_timeout`].
pub const DEFAULT_SILENCE_TIMEOUT: Duration = Duration::from_secs(1);

/// Default of [`StreamClientConfig::backoff_max`]: a 200 ms stream loses ~10 flashblocks per
/// second of backoff, so a reconnect is tried at least every 2 s.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Settings of a flashblock stream client: where it connects, how it proves the link alive,
/// what it accepts and how it backs off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClientConfig {
    /// Websocket URL of the stream (`ws://` or `wss://`).
    pub url: String,
    /// Interval between the client's pings. Keep it well below `silence_timeout`.
    pub ping_interval: Duration,
    /// The connection is dead when neither a frame nor a pong arrived within this long.
    pub silence_timeout: Duration,
    /// Upper bound on the TCP + TLS + websocket handshake.
    pub connect_timeout: Duration,
    /// Messages and frames above this size are refused by the websocket layer.
    pub max_frame_bytes: usize,
    /// Cap on the decompressed size of one flashblock.
    pub max_decompressed_bytes: usize,
    /// Smallest reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for StreamClientConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            ping_interval: DEFAULT_PING_INTERVAL,
            silence_timeout: DEFAULT_SILENCE_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            backoff_min: Duration::from_millis(10),
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl StreamClientConfig {
    /// The default settings for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Default::default() }
    }

    /// The websocket-layer limits matching these settings.
    pub fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_frame_bytes))
            .max_frame_size(Some(self.max_frame_bytes))
    }
}

/// `url` with `extra` appended to its query (the resume parameters).
pub fn with_query(url: &str, extra: &str) -> String {
    // Parsed, so a URL without a path gets `/` (`ws://host:port?q` would send the request
    // target `?q`, which servers refuse) and a fragment stays last.
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let query = match parsed.query() {
                Some(q) if !q.is_empty() => format!("{q}&{extra}"),
                _ => extra.to_string(),
            };
            parsed.set_query(Some(&query));
            parsed.into()
        }
        // Not a URL: the connection attempt reports it.
        Err(_) => format!("{url}?{extra}"),
    }
}

/// Strips what may carry credentials from a URL before it is logged: user info, the query,
/// and long path segments (API keys often sit in the path, e.g. `/ws/<key>`).
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let path: Vec<&str> =
        path.split('/').map(|segment| if segment.len() > 16 { "***" } else { segment }).collect();
    let path = path.join("/");
    let prefix = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    if path.is_empty() {
        format!("{prefix}{host}")
    } else {
        format!("{prefix}{host}/{path}")
    }
}

/// At most one warn line per kind of problem per this period; the rest go to debug.
pub const WARN_PERIOD: Duration = Duration::from_secs(5);

/// Lets one warn line per key through per period and counts the ones it held back, so a
/// stream that fails the same way again and again (an upstream down, refusing every
/// reconnect) logs it once per period with the number suppressed.
#[derive(Debug)]
pub struct WarnLimiter {
    period: Duration,
    seen: HashMap<&'static str, (Instant, u64)>,
}

impl WarnLimiter {
    /// A limiter letting one line per key through every `period`.
    pub fn new(period: Duration) -> Self {
        Self { period, seen: HashMap::new() }
    }

    /// `Some(suppressed since the last warn)` when a warn is due for `key`, else `None`.
    pub fn check(&mut self, key: &'static str, now: Instant) -> Option<u64> {
        match self.seen.get_mut(key) {
            Some((last, suppressed)) if now.saturating_duration_since(*last) < self.period => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_queries_keep_the_url_valid() {
        assert_eq!(with_query("ws://h:1/ws", "from=earliest"), "ws://h:1/ws?from=earliest");
        assert_eq!(
            with_query("ws://h:1/ws?compress=brotli", "from=1-2"),
            "ws://h:1/ws?compress=brotli&from=1-2"
        );
        assert_eq!(with_query("ws://h/ws#x", "a=b"), "ws://h/ws?a=b#x");
        // No path: `/` is added, so the request target is not `?from=…`.
        assert_eq!(with_query("ws://h:1", "from=1-2"), "ws://h:1/?from=1-2");
        assert_eq!(with_query("wss://h/ws?k=v#f", "from=1-2"), "wss://h/ws?k=v&from=1-2#f");
        assert_eq!(with_query("not a url", "a=b"), "not a url?a=b");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("wss://mainnet.flashblocks.base.org/ws"),
            "wss://mainnet.flashblocks.base.org/ws"
        );
        assert_eq!(
            redact("wss://user:pass@host:443/ws/0123456789abcdef0123?token=x"),
            "wss://host:443/ws/***"
        );
        assert_eq!(redact("ws://127.0.0.1:8080"), "ws://127.0.0.1:8080");
        assert_eq!(redact(""), "");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn warn_limiter_lets_one_through_per_period() {
        let mut limiter = WarnLimiter::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(limiter.check("json", t0), Some(0));
        assert_eq!(limiter.check("json", t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.check("json", t0 + Duration::from_secs(4)), None);
        // Other kinds have their own budget.
        assert_eq!(limiter.check("brotli", t0 + Duration::from_secs(4)), Some(0));
        assert_eq!(limiter.check("json", t0 + Duration::from_secs(5)), Some(2));
        assert_eq!(limiter.check("json", t0 + Duration::from_secs(6)), None);
        // A clock that goes backwards does not panic.
        assert_eq!(limiter.check("json", t0), None);
    }

    #[test]
    fn default_settings() {
        let cfg = StreamClientConfig::new("ws://x");
        assert_eq!(cfg.url, "ws://x");
        assert_eq!(cfg.ping_interval, Duration::from_millis(500));
        assert_eq!(cfg.silence_timeout, Duration::from_secs(1));
        assert_eq!(cfg.connect_timeout, Duration::from_secs(5));
        assert_eq!(cfg.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(cfg.max_decompressed_bytes, 32 * 1024 * 1024);
        assert_eq!(cfg.backoff_min, Duration::from_millis(10));
        assert_eq!(cfg.backoff_max, Duration::from_secs(2));
        let ws = cfg.websocket_config();
        assert_eq!(ws.max_message_size, Some(cfg.max_frame_bytes));
        assert_eq!(ws.max_frame_size, Some(cfg.max_frame_bytes));
    }
}
