//! Admission: which paths and keys are served, what a query may ask for, who the client is
//! (its socket address, or the entry a trusted proxy added to `X-Forwarded-For`), and how
//! many connections it and everyone together may hold.
//!
//! A connection is counted from the moment it is accepted, not once its handshake is done, so
//! half-open sockets are bounded by the same limits as subscribers.

use crate::{
    filter::{FilterError, FrameFilter},
    resume::{parse_from, parse_on_gap, Resume, ResumeError},
};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

/// A query that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    /// A filter parameter does not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// `from=` or `on_gap=` does not parse.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// `compress=` names something other than brotli.
    #[error("compress must be brotli (or left out for Text frames), not {0:?}")]
    Compress(String),
    /// A parameter this path does not know.
    #[error("unknown parameter {key:?} (this path takes: {known})")]
    Unknown {
        /// The parameter.
        key: String,
        /// The parameters the path takes.
        known: &'static str,
    },
}

/// Why a connection is refused; each is one HTTP status with a body saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    /// `/ws` is closed to the public.
    #[error("an API key is required: /ws/{{key}}")]
    KeyRequired,
    /// `/ws/{key}` with a key that is not configured.
    #[error("unknown API key")]
    UnknownKey,
    /// Not a path the fan-out serves.
    #[error("not found: flashblocks are served on /ws (websocket), health on /healthz")]
    NotFound,
    /// A query the path cannot serve.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// A plain HTTP request on a websocket path.
    #[error("upgrade required: {path} is a websocket endpoint (connect with a websocket client, e.g. ws://<host>/ws)")]
    UpgradeRequired {
        /// The path asked for.
        path: String,
    },
    /// A websocket version other than 13.
    #[error("unsupported websocket version: only 13 is served")]
    WebsocketVersion,
    /// Not a GET.
    #[error("method not allowed: the fan-out serves GET only")]
    Method,
    /// The request head does not parse or lacks what a websocket handshake needs.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request head is larger than the fan-out reads.
    #[error("request head too large")]
    HeadTooLarge,
    /// The client's address holds its share of connections.
    #[error("too many connections from this address")]
    TooManyFromIp,
    /// The fan-out holds all the connections it may.
    #[error("too many connections")]
    TooMany,
    /// The API key holds its share of connections.
    #[error("too many connections for this API key")]
    TooManyForKey,
}

impl Rejection {
    /// The HTTP status it answers.
    pub(crate) const fn status(&self) -> u16 {
        match self {
            Self::KeyRequired | Self::UnknownKey => 401,
            Self::NotFound => 404,
            Self::Query(_) | Self::BadRequest(_) => 400,
            Self::UpgradeRequired { .. } | Self::WebsocketVersion => 426,
            Self::Method => 405,
            Self::HeadTooLarge => 431,
            Self::TooManyFromIp | Self::TooMany | Self::TooManyForKey => 429,
        }
    }

    /// Stable, low-cardinality label for metrics.
    pub(crate) const fn label(&self) -> &'static str {
        match self {
            Self::KeyRequired => "key_required",
            Self::UnknownKey => "unknown_key",
            Self::NotFound => "not_found",
            Self::Query(_) => "bad_query",
            Self::UpgradeRequired { .. } => "upgrade_required",
            Self::WebsocketVersion => "websocket_version",
            Self::Method => "method",
            Self::BadRequest(_) => "bad_request",
            Self::HeadTooLarge => "head_too_large",
            Self::TooManyFromIp => "per_ip_limit",
            Self::TooMany => "global_limit",
            Self::TooManyForKey => "per_key_limit",
        }
    }
}

/// What a subscriber asked for in its path and query.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Route {
    /// Its filter (`/ws/{key}/filter` only).
    pub(crate) filter: Option<FrameFilter>,
    /// `?compress=brotli`.
    pub(crate) brotli: bool,
    /// `?from=` (and `on_gap=`): where to resume.
    pub(crate) resume: Option<Resume>,
    /// The API key of `/ws/{key}`.
    pub(crate) key: Option<String>,
}

/// Which paths are open, to whom.
#[derive(Debug, Clone, Default)]
pub(crate) struct Paths {
    /// Whether `/ws` is served without a key.
    pub(crate) public: bool,
    /// Keys accepted on `/ws/{key}`.
    pub(crate) api_keys: Vec<String>,
}

impl Paths {
    /// Routes `path` with `query` (without the `?`): the subscriber's route, or why not.
    pub(crate) fn route(&self, path: &str, query: &str) -> Result<Route, Rejection> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (filtered, key) = match segments.as_slice() {
            ["ws"] if self.public => (false, None),
            ["ws"] => return Err(Rejection::KeyRequired),
            ["ws", key] | ["ws", key, "filter"] => {
                if !self.api_keys.iter().any(|k| k == key) {
                    return Err(Rejection::UnknownKey);
                }
                (segments.len() == 3, Some(key.to_string()))
            }
            _ => return Err(Rejection::NotFound),
        };
        let mut route =
            Route { filter: filtered.then(FrameFilter::default), brotli: false, resume: None, key };
        let mut on_gap = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "compress" => {
                    match value {
                        "brotli" => route.brotli = true,
                        other => return Err(QueryError::Compress(other.into()).into()),
                    }
                    continue;
                }
                "from" => {
                    let from = parse_from(value).map_err(QueryError::from)?;
                    route.resume = Some(Resume { from, on_gap: Default::default() });
                    continue;
                }
                "on_gap" => {
                    on_gap = Some(parse_on_gap(value).map_err(QueryError::from)?);
                    continue;
                }
                _ => {}
            }
            let known = match &mut route.filter {
                Some(filter) => {
                    if filter.set(key, value).map_err(QueryError::from)? {
                        continue;
                    }
                    "addresses, topics, match, compress, from, on_gap"
                }
                None => "compress, from, on_gap",
            };
            return Err(QueryError::Unknown { key: key.into(), known }.into());
        }
        match (&mut route.resume, on_gap) {
            (Some(resume), Some(on_gap)) => resume.on_gap = on_gap,
            (None, Some(_)) => return Err(QueryError::from(ResumeError::OnGapWithoutFrom).into()),
            _ => {}
        }
        Ok(route)
    }
}

/// The client's address: the socket's peer, or with a trusted proxy in front the entry of
/// `X-Forwarded-For` the nearest trusted proxy added.
///
/// Each proxy appends the address it received the request from, so with `hops` trusted proxies
/// the client is the `hops`-th entry from the right; everything left of it was sent by the
/// client and proves nothing. Several headers form one list, in order. A list shorter than
/// `hops`, or an entry that is not an address, leaves the socket's peer (the proxy).
pub(crate) fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    hops: usize,
) -> IpAddr {
    if hops == 0 {
        return peer;
    }
    let entries: Vec<&str> =
        forwarded_for.into_iter().flat_map(|v| v.split(',')).map(str::trim).collect();
    let Some(entry) = entries.len().checked_sub(hops).map(|i| entries[i]) else { return peer };
    entry.parse::<IpAddr>().or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip())).unwrap_or(peer)
}

/// Live connection counts and their limits.
#[derive(Debug)]
pub(crate) struct Limits {
    per_ip: usize,
    global: usize,
    /// Subscribers per API key; 0 is no limit.
    per_key: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_key: HashMap<String, usize>,
}

impl Limits {
    /// Limits of `per_ip` connections per client address and `global` in all.
    #[cfg(test)]
    pub(crate) fn new(per_ip: usize, global: usize) -> Arc<Self> {
        Self::with_per_key(per_ip, global, 0)
    }

    /// [`Self::new`] with at most `per_key` subscribers per API key (0: no limit).
    pub(crate) fn with_per_key(per_ip: usize, global: usize, per_key: usize) -> Arc<Self> {
        Arc::new(Self { per_ip, global, per_key, counts: Mutex::default() })
    }

    /// Counts a connection just accepted: against the global limit, and against its address's
    /// share when `ip` is known now (without a trusted proxy it is the socket's peer).
    pub(crate) fn accept(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Slot, Rejection> {
        let mut c = self.counts.lock().map_err(|_| Rejection::TooMany)?;
        if c.total >= self.global {
            return Err(Rejection::TooMany);
        }
        if let Some(ip) = ip {
            let n = c.per_ip.entry(ip).or_default();
            if *n >= self.per_ip {
                if *n == 0 {
                    c.per_ip.remove(&ip);
                }
                return Err(Rejection::TooManyFromIp);
            }
            *n += 1;
        }
        c.total += 1;
        metrics::gauge!("flashnode_fanout_connections").increment(1.0);
        Ok(Slot { limits: self.clone(), ip, key: None })
    }

    /// Connections held now.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

/// One counted connection; released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
    key: Option<String>,
}

impl Slot {
    /// Counts the connection against its API key's share (`--ws-per-key-limit`).
    pub(crate) fn claim_key(&mut self, key: &str) -> Result<(), Rejection> {
        if self.key.is_some() || self.limits.per_key == 0 {
            return Ok(());
        }
        let mut c = self.limits.counts.lock().map_err(|_| Rejection::TooMany)?;
        let n = c.per_key.get(key).copied().unwrap_or(0);
        if n >= self.limits.per_key {
            return Err(Rejection::TooManyForKey);
        }
        c.per_key.insert(key.to_string(), n + 1);
        self.key = Some(key.to_string());
        Ok(())
    }

    /// Counts the connection against `ip`'s share once the address is known from the request
    /// (behind a trusted proxy). A slot already counted against an address keeps it.
    pub(crate) fn claim(&mut self, ip: IpAddr) -> Result<(), Rejection> {
        if self.ip.is_some() {
            return Ok(());
        }
        let mut c = self.limits.counts.lock().map_err(|_| Rejection::TooMany)?;
        let n = c.per_ip.entry(ip).or_default();
        if *n >= self.limits.per_ip {
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
            return Err(Rejection::TooManyFromIp);
        }
        *n += 1;
        self.ip = Some(ip);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.limits.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(ip) = self.ip {
                if let Some(n) = c.per_ip.get_mut(&ip) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        c.per_ip.remove(&ip);
                    }
                }
            }
            if let Some(key) = self.key.take() {
                if let Some(n) = c.per_key.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        c.per_key.remove(&key);
                    }
                }
            }
        }
        metrics::gauge!("flashnode_fanout_connections").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn paths_keys_and_queries() {
        let open = Paths { public: true, api_keys: vec!["k".into()] };
        assert_eq!(open.route("/ws", ""), Ok(Route::default()));
        assert_eq!(open.route("/ws", "compress=brotli").map(|r| r.brotli), Ok(true));
        assert_eq!(
            open.route("/ws", "compress=gzip"),
            Err(Rejection::Query(QueryError::Compress("gzip".into())))
        );
        assert_eq!(
            open.route("/ws", "compress"),
            Err(Rejection::Query(QueryError::Compress("".into())))
        );
        assert_eq!(
            open.route("/ws", "addresses=0x00"),
            Err(Rejection::Query(QueryError::Unknown {
                key: "addresses".into(),
                known: "compress, from, on_gap"
            })),
            "filters are served on /ws/{{key}}/filter only"
        );
        assert_eq!(
            open.route("/ws/k", ""),
            Ok(Route { key: Some("k".into()), ..Route::default() })
        );
        assert_eq!(open.route("/ws/nope", ""), Err(Rejection::UnknownKey));
        assert_eq!(open.route("/nope", ""), Err(Rejection::NotFound));
        assert_eq!(open.route("/ws/k/other", ""), Err(Rejection::NotFound));
        let filtered = open.route("/ws/k/filter", "match=all&compress=brotli").unwrap();
        assert!(filtered.brotli && filtered.filter.is_some());
        assert_eq!(open.route("/ws/k/filter", "match=sometimes").map_err(|e| e.status()), Err(400));
        assert!(matches!(
            open.route("/ws/k/filter", "colour=red"),
            Err(Rejection::Query(QueryError::Unknown { .. }))
        ));
        use crate::resume::{From, OnGap};
        assert_eq!(
            open.route("/ws", "from=12-3").unwrap().resume,
            Some(Resume { from: From::After((12, 3)), on_gap: OnGap::Close })
        );
        assert_eq!(
            open.route("/ws/k/filter", "on_gap=next_block&from=earliest&match=all").unwrap().resume,
            Some(Resume { from: From::Earliest, on_gap: OnGap::NextBlock })
        );
        assert_eq!(open.route("/ws", "from=12").map_err(|e| e.status()), Err(400));
        assert_eq!(
            open.route("/ws", "on_gap=next_block"),
            Err(Rejection::Query(QueryError::Resume(ResumeError::OnGapWithoutFrom)))
        );
        assert_eq!(open.route("/ws", "").unwrap().resume, None, "no resume: today's stream");
        let closed = Paths { public: false, api_keys: vec!["k".into()] };
        assert_eq!(closed.route("/ws", ""), Err(Rejection::KeyRequired));
        assert_eq!(closed.route("/ws/k", "").map(|r| r.key), Ok(Some("k".into())));
    }

    #[test]
    fn rejections_answer_their_status_with_a_reason() {
        for (r, status) in [
            (Rejection::KeyRequired, 401),
            (Rejection::NotFound, 404),
            (Rejection::UpgradeRequired { path: "/ws".into() }, 426),
            (Rejection::TooManyFromIp, 429),
            (Rejection::TooMany, 429),
            (Rejection::Query(QueryError::Compress("gzip".into())), 400),
        ] {
            assert_eq!(r.status(), status, "{r}");
            assert!(!r.label().is_empty());
        }
        assert!(Rejection::UpgradeRequired { path: "/ws".into() }.to_string().contains("/ws"));
        assert!(Rejection::Query(QueryError::Compress("gzip".into())).to_string().contains("gzip"));
    }

    #[test]
    fn the_trusted_proxy_entry_is_the_client() {
        let peer = ip("10.0.0.1");
        // One trusted proxy: the rightmost entry is what it saw; forged ones left of it count
        // for nothing.
        assert_eq!(client_ip(peer, ["6.6.6.6, 1.2.3.4"], 1), ip("1.2.3.4"));
        assert_eq!(client_ip(peer, ["6.6.6.6", "1.2.3.4"], 1), ip("1.2.3.4"), "headers join");
        assert_eq!(client_ip(peer, ["1.2.3.4"], 1), ip("1.2.3.4"));
        // Two hops: a CDN added the client, the balancer added the CDN.
        assert_eq!(client_ip(peer, ["6.6.6.6, 1.2.3.4, 9.9.9.9"], 2), ip("1.2.3.4"));
        // Too few entries for the hops, garbage, no header: the socket's peer.
        assert_eq!(client_ip(peer, ["1.2.3.4"], 2), peer);
        assert_eq!(client_ip(peer, ["6.6.6.6, nonsense"], 1), peer);
        assert_eq!(client_ip(peer, [], 1), peer);
        assert_eq!(client_ip(peer, ["1.2.3.4"], 0), peer);
        // Ports and IPv6.
        assert_eq!(client_ip(peer, ["1.2.3.4:5678"], 1), ip("1.2.3.4"));
        assert_eq!(client_ip(peer, ["[2001:db8::1]:443"], 1), ip("2001:db8::1"));
        assert_eq!(client_ip(peer, ["2001:db8::2"], 1), ip("2001:db8::2"));
    }

    #[test]
    fn connections_count_from_accept_per_address_and_in_all() {
        let limits = Limits::new(2, 3);
        let a = limits.accept(Some(ip("1.1.1.1"))).unwrap();
        let _b = limits.accept(Some(ip("1.1.1.1"))).unwrap();
        assert_eq!(limits.accept(Some(ip("1.1.1.1"))).unwrap_err(), Rejection::TooManyFromIp);
        // Behind a proxy the address comes later; the global count starts at accept.
        let mut c = limits.accept(None).unwrap();
        assert_eq!(limits.accept(None).unwrap_err(), Rejection::TooMany);
        assert_eq!(c.claim(ip("1.1.1.1")).unwrap_err(), Rejection::TooManyFromIp);
        drop(a);
        c.claim(ip("1.1.1.1")).unwrap();
        assert_eq!(limits.total(), 2, "a claim counts no second connection");
        drop(c);
        assert_eq!(limits.total(), 1);
        let _d = limits.accept(Some(ip("2.2.2.2"))).unwrap();
        let _e = limits.accept(Some(ip("1.1.1.1"))).unwrap();
        assert_eq!(limits.accept(Some(ip("3.3.3.3"))).unwrap_err(), Rejection::TooMany);
    }

    #[test]
    fn api_keys_hold_their_share() {
        let limits = Limits::with_per_key(100, 100, 2);
        let mut a = limits.accept(None).unwrap();
        let mut b = limits.accept(None).unwrap();
        let mut c = limits.accept(None).unwrap();
        a.claim_key("k").unwrap();
        b.claim_key("k").unwrap();
        assert_eq!(c.claim_key("k").unwrap_err(), Rejection::TooManyForKey);
        c.claim_key("other").unwrap();
        drop(a);
        let mut d = limits.accept(None).unwrap();
        d.claim_key("k").unwrap();
        drop((b, c, d));
        assert!(limits.counts.lock().unwrap().per_key.is_empty());
        // 0: no limit.
        let open = Limits::new(100, 100);
        let mut slots: Vec<Slot> = (0..5).map(|_| open.accept(None).unwrap()).collect();
        for s in &mut slots {
            s.claim_key("k").unwrap();
        }
    }

    #[test]
    fn a_zero_limit_refuses_without_leaving_entries() {
        let limits = Limits::new(0, 10);
        assert_eq!(limits.accept(Some(ip("1.1.1.1"))).unwrap_err(), Rejection::TooManyFromIp);
        let mut s = limits.accept(None).unwrap();
        assert_eq!(s.claim(ip("1.1.1.1")).unwrap_err(), Rejection::TooManyFromIp);
        assert!(limits.counts.lock().unwrap().per_ip.is_empty());
    }
}
