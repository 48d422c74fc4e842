//! The HTTP side of a connection: reading the request head (bounded in size; the caller bounds
//! it in time), telling a health check, a plain request and a websocket upgrade apart, and the
//! answers (101, or a status with a body that says why).

use crate::admission::Rejection;
use tokio::{io::AsyncReadExt, net::TcpStream};

/// Largest request head read; a longer one is answered 431.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// Headers parsed from one request head at most.
const MAX_HEADERS: usize = 64;

/// A request head that could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The client closed before the head was complete.
    #[error("closed before the request head was complete")]
    Closed,
    /// The head does not fit in [`MAX_HEAD`] bytes.
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// The head is not HTTP/1.x.
    #[error("not an HTTP request: {0}")]
    Malformed(#[from] httparse::Error),
}

impl HeadError {
    /// Stable, low-cardinality label for metrics.
    pub(crate) const fn label(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::Closed => "closed",
            Self::TooLarge => "head_too_large",
            Self::Malformed(_) => "malformed",
        }
    }

    /// The answer it deserves, if the client is still there to read one.
    pub(crate) const fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::TooLarge => Some(Rejection::HeadTooLarge),
            Self::Malformed(_) => Some(Rejection::BadRequest("not an HTTP/1.1 request")),
            Self::Io(_) | Self::Closed => None,
        }
    }
}

/// A parsed request head.
#[derive(Debug, Default)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    /// HTTP/1.1 (or later) rather than 1.0.
    pub(crate) http11: bool,
    /// Header names lowercased, values as sent (non-UTF-8 values are dropped).
    headers: Vec<(String, String)>,
    /// Bytes the client sent after the head (frames it did not wait to send).
    pub(crate) rest: Vec<u8>,
}

impl Head {
    /// Parses `buf` if it holds a complete head.
    pub(crate) fn parse(buf: &[u8]) -> Result<Option<Self>, httparse::Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(buf)? {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return Ok(None),
        };
        let target = req.path.unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Ok(Some(Self {
            method: req.method.unwrap_or("").to_string(),
            path: path.to_string(),
            query: query.to_string(),
            http11: req.version.unwrap_or(0) >= 1,
            headers: req
                .headers
                .iter()
                .filter_map(|h| {
                    Some((h.name.to_ascii_lowercase(), std::str::from_utf8(h.value).ok()?.into()))
                })
                .collect(),
            rest: buf[len..].to_vec(),
        }))
    }

    /// Every value of header `name` (lowercase), in order.
    pub(crate) fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header `name` carries `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers(name).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// What the request asks for: a health check, or a websocket upgrade (its key) once the
    /// caller has routed the path; anything else is answered with why.
    pub(crate) fn upgrade_key(&self) -> Result<String, Rejection> {
        if !self.has_token("upgrade", "websocket") || !self.has_token("connection", "upgrade") {
            return Err(Rejection::UpgradeRequired { path: self.path.clone() });
        }
        if !self.http11 {
            return Err(Rejection::BadRequest("a websocket handshake needs HTTP/1.1"));
        }
        if self.headers("sec-websocket-version").next().map(str::trim) != Some("13") {
            return Err(Rejection::WebsocketVersion);
        }
        match self.headers("sec-websocket-key").next().map(str::trim) {
            Some(key) if !key.is_empty() => Ok(key.to_string()),
            _ => Err(Rejection::BadRequest("missing Sec-WebSocket-Key")),
        }
    }

    /// Whether this is the health check (`GET /healthz`).
    pub(crate) fn is_health(&self) -> bool {
        self.path == "/healthz"
    }
}

/// Reads one request head from `stream` (at most [`MAX_HEAD`] bytes).
pub(crate) async fn read_head(stream: &mut TcpStream) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = Head::parse(&buf)? {
            return Ok(head);
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The 101 that completes a websocket handshake; it says the fan-out serves `?from=`
/// ([`RESUME_HEADER`](crate::RESUME_HEADER)).
pub(crate) fn switching_protocols(key: &str) -> Vec<u8> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: {accept}\r\n{}: 1\r\n\r\n",
        crate::RESUME_HEADER
    )
    .into_bytes()
}

/// The answer to `GET /healthz`.
pub(crate) const HEALTH_OK: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

/// A refusal: its status, and its reason as a plain-text body.
pub(crate) fn refusal(rejection: &Rejection) -> Vec<u8> {
    let status = rejection.status();
    let phrase = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let extra = match rejection {
        Rejection::UpgradeRequired { .. } => "upgrade: websocket\r\nconnection: Upgrade, close\r\n",
        Rejection::WebsocketVersion => "sec-websocket-version: 13\r\nconnection: close\r\n",
        Rejection::Method => "allow: GET\r\nconnection: close\r\n",
        _ => "connection: close\r\n",
    };
    let body = format!("{rejection}\n");
    format!(
        "HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /ws?compress=brotli HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n\r\n";

    #[test]
    fn an_upgrade_parses_with_its_key_query_and_headers() {
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend_from_slice(b"\x89\x80");
        let head = Head::parse(&bytes).unwrap().unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str()), ("GET", "/ws"));
        assert_eq!(head.query, "compress=brotli");
        assert_eq!(head.headers("x-forwarded-for").collect::<Vec<_>>(), ["1.1.1.1", "2.2.2.2"]);
        assert_eq!(head.rest, b"\x89\x80", "bytes after the head are kept");
        let key = head.upgrade_key().unwrap();
        // RFC 6455's own example.
        let ok = String::from_utf8(switching_protocols(&key)).unwrap();
        assert!(ok.starts_with("HTTP/1.1 101 "));
        assert!(ok.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{ok}");
        assert!(ok.contains("\r\nx-flashnode-resume: 1\r\n"), "resume advertised: {ok}");
        assert!(Head::parse(&UPGRADE.as_bytes()[..40]).unwrap().is_none(), "partial");
    }

    #[test]
    fn what_is_not_an_upgrade_says_so() {
        let plain = Head::parse(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(plain.upgrade_key(), Err(Rejection::UpgradeRequired { path: "/ws".into() }));
        let answer = String::from_utf8(refusal(&plain.upgrade_key().unwrap_err())).unwrap();
        assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nupgrade required: /ws is a websocket endpoint (connect with a websocket client, e.g. ws://<host>/ws)\n"), "{answer}");
        let old = UPGRADE.replace("Version: 13", "Version: 8");
        assert_eq!(
            Head::parse(old.as_bytes()).unwrap().unwrap().upgrade_key(),
            Err(Rejection::WebsocketVersion)
        );
        let keyless = UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert!(matches!(
            Head::parse(keyless.as_bytes()).unwrap().unwrap().upgrade_key(),
            Err(Rejection::BadRequest(_))
        ));
        let health = Head::parse(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(health.is_health());
        assert!(Head::parse(b"\x16\x03\x01 not http\r\n\r\n").is_err());
    }

    #[test]
    fn refusals_carry_a_length_that_matches_their_body() {
        let r = Rejection::TooManyFromIp;
        let text = String::from_utf8(refusal(&r)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(body, "too many connections from this address\n");
    }

    #[tokio::test]
    async fn a_head_larger_than_the_cap_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let long = format!("GET /ws HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(MAX_HEAD));
            let _ = s.write_all(long.as_bytes()).await;
            s
        });
        let (mut server, _) = listener.accept().await.unwrap();
        assert!(matches!(read_head(&mut server).await, Err(HeadError::TooLarge)));
        drop(client.await.unwrap());
        let (mut closed, _) = {
            let c = TcpStream::connect(addr).await.unwrap();
            drop(c);
            listener.accept().await.unwrap()
        };
        assert!(matches!(read_head(&mut closed).await, Err(HeadError::Closed)));
    }
}
