//! Handshake layer: the opening handshake is wsapp's. It writes the upgrade
//! request, reads the response with `httparse`, checks it (RFC 6455 4.1) and
//! hands the stream, with any bytes read past the head, to tungstenite.
//!
//! - `request`: the request built from the options (headers validated: no
//!   CR/LF, no header the handshake writes itself), and what it offered;
//! - `response`: parsing and checking the response, pure functions over bytes;
//! - `redirect`: which refusals redirect, where to, and the loop;
//! - here: running it on a blocking stream within the handshake deadline, and
//!   the error body of a refusal.
//!
//! It does not open sockets: the stream is handed to it.

mod redirect;
mod request;
mod response;

use std::io::{self, Read, Write};
use std::time::Instant;

use tungstenite::http;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::error::{Error, Phase, Result};
use crate::stream::Stream;
use crate::tls::set_timeouts;

pub(crate) use redirect::follow as follow_redirects;
pub(crate) use request::{build as request, UpgradeRequest};
pub(crate) use response::ExtensionAnswer;
use response::{BodyLength, MAX_ERROR_BODY, MAX_HEAD};

/// What goes into the upgrade request besides the URL.
#[derive(Clone, Default)]
pub(crate) struct HandshakeOptions {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) origin: Option<String>,
    pub(crate) cookie: Option<String>,
    pub(crate) host: Option<String>,
    /// permessage-deflate to offer, if any.
    pub(crate) compression: Option<crate::Compression>,
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
            .field("compression", &self.compression)
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

/// Runs the upgrade on a blocking stream, giving up at `deadline`.
/// `tls_host` names the server when the stream is TLS to it (`wss://`): a TLS
/// failure while reading the response is then reported as one.
pub(crate) fn handshake(
    stream: Stream,
    request: &UpgradeRequest,
    tls_host: Option<&str>,
    config: WebSocketConfig,
    deadline: Instant,
) -> Result<(tungstenite::WebSocket<Stream>, crate::Response)> {
    let mut stream = stream;
    set_timeouts(&stream, deadline, Phase::Handshake)?;
    // A peer that trickles header bytes never lets a read time out.
    stream.set_handshake_deadline(deadline);
    let failed = |e: io::Error| io_failure(e, tls_host);
    stream.write_all(&request.head).map_err(failed)?;
    stream.flush().map_err(failed)?;
    let mut buf = Vec::with_capacity(4096);
    let (head, len) = loop {
        if let Some(parsed) = response::parse_head(&buf, tls_host.is_some())? {
            break parsed;
        }
        set_timeouts(&stream, deadline, Phase::Handshake)?;
        if read_more(&mut stream, &mut buf, MAX_HEAD).map_err(failed)? == 0 {
            return Err(Error::ConnectionLost(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if buf.is_empty() {
                    "the server closed the connection without answering the upgrade"
                } else {
                    "the server closed the connection in the middle of the upgrade response"
                },
            )));
        }
    };
    let leftover = buf.split_off(len);
    if head.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let body = read_body(&mut stream, &head, leftover, deadline);
        return Err(Error::HandshakeRejected(Box::new(
            head.map(|()| Some(body)),
        )));
    }
    let negotiated = response::check(&head, request)?;
    log::debug!(
        "upgrade done: subprotocol {:?}, extensions {:?}",
        negotiated.protocol,
        negotiated.extensions
    );
    let deflate = crate::deflate::agree(request, &negotiated.extensions)?;
    let mut leftover = leftover;
    let limit = |l: Option<usize>| l.unwrap_or(usize::MAX);
    stream.follow_frames(
        &mut leftover,
        deflate.as_ref(),
        limit(config.max_message_size),
        limit(config.max_frame_size),
        config.read_buffer_size,
    );
    let mut config = config;
    if deflate.is_some() {
        // A compressed message reaches tungstenite as one inflated frame: the
        // frame limit is the follower's, on the frames as they came.
        config.max_frame_size = config.max_frame_size.max(config.max_message_size);
    }
    let ws =
        tungstenite::WebSocket::from_partially_read(stream, leftover, Role::Client, Some(config));
    Ok((ws, head.map(|()| None)))
}

/// Reads once into the end of `buf`, at most up to `cap` bytes in all.
fn read_more(stream: &mut Stream, buf: &mut Vec<u8>, cap: usize) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let want = cap.saturating_sub(buf.len()).clamp(1, chunk.len());
    loop {
        match stream.read(&mut chunk[..want]) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The body of a refusal: up to its `Content-Length`, its last chunk or the
/// end of the connection, at most [`MAX_ERROR_BODY`] bytes, within `deadline`.
/// A body cut short by the deadline or the connection is kept as far as it came.
fn read_body(
    stream: &mut Stream,
    head: &http::Response<()>,
    mut raw: Vec<u8>,
    deadline: Instant,
) -> Vec<u8> {
    let framing = match response::body_length(head) {
        // A redirect's body is not what anyone waits for: without a length,
        // take what came with the head rather than wait for the end of the
        // connection (a keep-alive server would hold it to the deadline).
        BodyLength::UntilEof if redirect::is_redirect_status(head.status()) => {
            return truncate(raw);
        }
        framing => framing,
    };
    // Chunk framing takes room too; bound what is read of it.
    let raw_cap = match framing {
        BodyLength::Chunked => 4 * MAX_ERROR_BODY,
        _ => MAX_ERROR_BODY,
    };
    let decode = |raw: &[u8]| -> (Vec<u8>, bool) {
        match framing {
            BodyLength::Empty => (Vec::new(), true),
            BodyLength::Exactly(n) => {
                let want = n.min(MAX_ERROR_BODY);
                (raw[..raw.len().min(want)].to_vec(), raw.len() >= want)
            }
            BodyLength::Chunked => response::decode_chunked(raw),
            BodyLength::UntilEof => (raw.to_vec(), false),
        }
    };
    loop {
        let (body, done) = decode(&raw);
        if done || body.len() >= MAX_ERROR_BODY || raw.len() >= raw_cap {
            return truncate(body);
        }
        if set_timeouts(stream, deadline, Phase::Handshake).is_err() {
            return truncate(body);
        }
        match read_more(stream, &mut raw, raw_cap) {
            Ok(0) | Err(_) => return truncate(decode(&raw).0),
            Ok(_) => {}
        }
    }
}

fn truncate(mut body: Vec<u8>) -> Vec<u8> {
    body.truncate(MAX_ERROR_BODY);
    body
}

/// Maps an I/O error of the upgrade: timeouts to `Timeout(Handshake)`, a
/// failure of the TLS layer (an alert, say) to `TlsSession`, the rest to
/// `ConnectionLost`.
fn io_failure(e: io::Error, tls_host: Option<&str>) -> Error {
    Error::from_io(Phase::Handshake, e, |e| match tls_host {
        // native-tls hands socket errors through with their kind; its own
        // (alerts, bad records) come as `Other` wrapping the TLS library's error.
        Some(host) if e.kind() == io::ErrorKind::Other && e.get_ref().is_some() => {
            Error::TlsSession {
                host: host.to_string(),
                source: e,
            }
        }
        _ => Error::ConnectionLost(e),
    })
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

    #[test]
    fn other_origin_drops_credentials_and_host() {
        let opts = HandshakeOptions {
            headers: vec![
                ("Authorization".into(), "Bearer x".into()),
                ("cookie".into(), "a=b".into()),
                ("X-Keep".into(), "1".into()),
            ],
            cookie: Some("c=d".into()),
            host: Some("h".into()),
            ..Default::default()
        };
        let next = opts.for_other_origin();
        assert_eq!(next.headers, [("X-Keep".to_string(), "1".to_string())]);
        assert_eq!((next.cookie, next.host), (None, None));
    }

    #[test]
    fn io_failures_map_to_timeout_tls_or_lost() {
        let timeout = io::Error::new(io::ErrorKind::TimedOut, "handshake deadline passed");
        assert!(matches!(
            io_failure(timeout, Some("h")),
            Error::Timeout(Phase::Handshake)
        ));
        let alert = io::Error::other("tlsv13 alert certificate required");
        let e = io_failure(alert, Some("h"));
        assert_eq!(e.kind(), crate::ErrorKind::Tls);
        assert!(e.to_string().contains("Client::identity"), "{e}");
        let alert = io::Error::other("tlsv13 alert certificate required");
        assert_eq!(
            io_failure(alert, None).kind(),
            crate::ErrorKind::ConnectionLost
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            io_failure(reset, Some("h")).kind(),
            crate::ErrorKind::ConnectionLost
        );
    }
}
