//! Handshake layer: builds the HTTP upgrade request and runs tungstenite's
//! client handshake with a deadline.
//!
//! Owns request headers (validated: no CR/LF), subprotocol offers, origin,
//! cookie and host override, and the mapping of handshake failures to errors.
//! It runs on a blocking stream handed to it and does not open sockets.

use std::time::Instant;

use tungstenite::handshake::client::Request;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::protocol::WebSocketConfig;

use crate::error::{Error, Phase, Result};
use crate::stream::Stream;
use crate::tls::set_timeouts;
use crate::url::Target;

/// What goes into the upgrade request besides the URL.
#[derive(Clone, Default)]
pub(crate) struct HandshakeOptions {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) origin: Option<String>,
    pub(crate) cookie: Option<String>,
    pub(crate) host: Option<String>,
}

impl std::fmt::Debug for HandshakeOptions {
    // Header values may carry credentials: show names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HandshakeOptions")
            .field("headers", &names)
            .field("subprotocols", &self.subprotocols)
            .field("origin", &self.origin)
            .field("cookie", &self.cookie.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .finish()
    }
}

impl HandshakeOptions {
    /// The options for a redirect to another origin: without the credentials
    /// and the `Host` override meant for the first one.
    pub(crate) fn for_other_origin(&self) -> HandshakeOptions {
        let mut next = self.clone();
        next.headers.retain(|(name, _)| {
            !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("cookie")
        });
        next.cookie = None;
        next.host = None;
        next
    }
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue> {
    if value.contains(['\r', '\n']) {
        return Err(Error::config(format!(
            "header {name:?}: value contains CR or LF (header injection refused)"
        )));
    }
    HeaderValue::from_str(value).map_err(|_| {
        Error::config(format!(
            "header {name:?}: value has characters HTTP does not allow"
        ))
    })
}

/// Builds and checks the request; fails before any connection is made.
pub(crate) fn request(target: &Target, opts: &HandshakeOptions) -> Result<Request> {
    use tungstenite::client::IntoClientRequest;
    let mut req = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::url(&target.url, e.to_string()))?;
    let headers = req.headers_mut();
    for (name, value) in &opts.headers {
        let hn = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::config(format!("header name {name:?} is not a valid token")))?;
        headers.append(hn, header_value(name, value)?);
    }
    for p in &opts.subprotocols {
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b",;\"".contains(&b))
        {
            return Err(Error::config(format!(
                "subprotocol {p:?} is not a valid token"
            )));
        }
    }
    if !opts.subprotocols.is_empty() {
        let joined = opts.subprotocols.join(", ");
        headers.insert(
            "Sec-WebSocket-Protocol",
            header_value("Sec-WebSocket-Protocol", &joined)?,
        );
    }
    if let Some(origin) = &opts.origin {
        headers.insert("Origin", header_value("Origin", origin)?);
    }
    if let Some(cookie) = &opts.cookie {
        headers.insert("Cookie", header_value("Cookie", cookie)?);
    }
    if let Some(host) = &opts.host {
        headers.insert("Host", header_value("Host", host)?);
    }
    Ok(req)
}

/// Runs the upgrade on a blocking stream, giving up at `deadline`.
pub(crate) fn handshake(
    stream: Stream,
    request: Request,
    subprotocols: &[String],
    config: WebSocketConfig,
    deadline: Instant,
) -> Result<(tungstenite::WebSocket<Stream>, crate::Response)> {
    set_timeouts(&stream, deadline, Phase::Handshake)?;
    let mut stream = stream;
    // A peer that trickles header bytes never lets a read time out.
    stream.set_handshake_deadline(deadline);
    let mut attempt = tungstenite::client::client_with_config(request, stream, Some(config));
    loop {
        match attempt {
            Ok(done) => return Ok(done),
            Err(HandshakeError::Interrupted(mid)) => {
                set_timeouts(mid.get_ref().get_ref(), deadline, Phase::Handshake)?;
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => return Err(map_failure(e, subprotocols)),
        }
    }
}

fn map_failure(e: tungstenite::Error, offered: &[String]) -> Error {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::Http(resp) => Error::HandshakeRejected(resp),
        tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(e)) => {
            use tungstenite::error::SubProtocolError as S;
            let problem = match e {
                S::NoSubProtocol => "the server chose none of the offered subprotocols",
                S::InvalidSubProtocol => "the server chose a subprotocol that was not offered",
                S::ServerSentSubProtocolNoneRequested => {
                    "the server chose a subprotocol although none was offered"
                }
            };
            Error::Subprotocol {
                offered: offered.to_vec(),
                problem: problem.to_string(),
            }
        }
        tungstenite::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Error::Timeout(Phase::Handshake)
        }
        tungstenite::Error::Io(io) => Error::ConnectionLost(io),
        other => Error::Handshake(other),
    }
}

/// The subprotocol the server chose, from the upgrade response.
pub(crate) fn chosen_protocol(resp: &crate::Response) -> Option<String> {
    resp.headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        crate::url::parse("ws://127.0.0.1:9/p?q=1").unwrap()
    }

    #[test]
    fn crlf_in_header_values_refused() {
        let opts = HandshakeOptions {
            headers: vec![("X-A".into(), "ok\r\nEvil: 1".into())],
            ..Default::default()
        };
        let e = request(&target(), &opts).unwrap_err().to_string();
        assert!(e.contains("CR or LF") && e.contains("X-A"), "{e}");
        let opts = HandshakeOptions {
            origin: Some("a\nb".into()),
            ..Default::default()
        };
        assert!(request(&target(), &opts).is_err());
    }

    #[test]
    fn bad_header_names_and_subprotocols_refused() {
        let opts = HandshakeOptions {
            headers: vec![("Bad Name".into(), "v".into())],
            ..Default::default()
        };
        assert!(request(&target(), &opts).is_err());
        let opts = HandshakeOptions {
            subprotocols: vec!["a,b".into()],
            ..Default::default()
        };
        assert!(request(&target(), &opts).is_err());
    }

    #[test]
    fn request_carries_options() {
        let opts = HandshakeOptions {
            headers: vec![("Authorization".into(), "Bearer x".into())],
            subprotocols: vec!["v1".into(), "v2.json".into()],
            origin: Some("https://o".into()),
            cookie: Some("a=b".into()),
            host: Some("example.com".into()),
        };
        let req = request(&target(), &opts).unwrap();
        let h = req.headers();
        assert_eq!(h["Authorization"], "Bearer x");
        assert_eq!(h["Sec-WebSocket-Protocol"], "v1, v2.json");
        assert_eq!(h["Origin"], "https://o");
        assert_eq!(h["Cookie"], "a=b");
        assert_eq!(h["Host"], "example.com");
        assert_eq!(req.uri().to_string(), "ws://127.0.0.1:9/p?q=1");
        let dbg = format!("{opts:?}");
        assert!(!dbg.contains("Bearer") && !dbg.contains("a=b"), "{dbg}");
    }
}
