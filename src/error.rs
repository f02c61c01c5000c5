//! Errors: one enum for every layer, each variant saying what failed and where.
//!
//! Owns [`Error`], [`ErrorKind`], [`Phase`] and [`TrySendError`]. Other layers
//! build these values; this module must not depend on any of them.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::{CloseFrame, Message};

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The HTTP response of a refused or completed upgrade: status, headers and,
/// for a refusal, the body (up to its length, at most 64 KiB).
///
/// # Examples
///
/// ```no_run
/// let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
/// let resp: &wsapp::Response = ws.response();
/// println!("{} {:?}", resp.status(), resp.headers().get("Server"));
/// # Ok::<(), wsapp::Error>(())
/// ```
pub type Response = tungstenite::handshake::client::Response;

/// Which step of a connection's life a [`Error::Timeout`] happened in.
///
/// # Examples
///
/// ```
/// let err = wsapp::Error::Timeout(wsapp::Phase::Pong);
/// assert!(matches!(err, wsapp::Error::Timeout(wsapp::Phase::Pong)));
/// assert_eq!(wsapp::Phase::Handshake.to_string(), "WebSocket handshake");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// TCP-connecting (`Client::connect_timeout`). A name the resolver
    /// gives no answer for within that time is [`Error::Dns`].
    Connect,
    /// Talking to a proxy (`Client::connect_timeout`).
    Proxy,
    /// The TLS handshake (`Client::handshake_timeout`).
    Tls,
    /// The HTTP upgrade (`Client::handshake_timeout`).
    Handshake,
    /// Waiting for the peer's close frame (`Client::close_timeout`).
    Close,
    /// Waiting for a pong after a keepalive ping (`Client::ping_timeout`).
    Pong,
    /// Waiting for room in the outbox (`send_timeout`).
    Send,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Proxy => "proxy",
            Phase::Tls => "TLS handshake",
            Phase::Handshake => "WebSocket handshake",
            Phase::Close => "close handshake",
            Phase::Pong => "pong",
            Phase::Send => "send",
        })
    }
}

/// Everything that can go wrong, from URL parsing to the close handshake.
///
/// Each message says what failed and, where it helps, what to do.
/// [`Error::kind`] gives a `Copy` summary to match on.
///
/// # Examples
///
/// ```
/// let err = wsapp::connect("http://example.com/").unwrap_err();
/// assert_eq!(err.kind(), wsapp::ErrorKind::Url);
/// assert!(err.to_string().contains("ws:// or wss://"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be used.
    Url {
        /// The URL as given (user information removed).
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A header, subprotocol, origin or other option was refused before
    /// connecting, or a close code or reason before sending (nothing was sent).
    Config {
        /// What was wrong.
        reason: String,
    },
    /// The host name did not resolve.
    Dns {
        /// The host that was looked up.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address of the host accepted a TCP connection.
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// How many addresses were tried.
        tried: usize,
        /// The last address's error.
        source: io::Error,
    },
    /// A step did not finish in time.
    Timeout(Phase),
    /// The proxy refused or broke the tunnel.
    Proxy {
        /// The proxy, without credentials.
        proxy: String,
        /// The status or code and reason it gave.
        reason: String,
    },
    /// TLS set-up or handshake failed.
    Tls {
        /// The name the certificate was checked against.
        host: String,
        /// native-tls's error.
        source: native_tls::Error,
    },
    /// The server answered the upgrade with something other than `101`.
    HandshakeRejected(Box<Response>),
    /// A redirect of the upgrade could not be followed (limit reached, loop,
    /// no `Location`, or a `wss` to `ws` downgrade).
    Redirect {
        /// The URL that answered with the redirect.
        url: String,
        /// Why it was not followed.
        reason: String,
    },
    /// tungstenite reported an error it has no other variant for. The upgrade's
    /// own failures are [`Error::Upgrade`].
    Handshake(tungstenite::Error),
    /// The server chose a subprotocol that was not offered, or none when one was required.
    Subprotocol {
        /// What the client offered.
        offered: Vec<String>,
        /// What was wrong with the server's answer.
        problem: String,
    },
    /// The peer broke the WebSocket protocol; a close frame with the matching
    /// code (1002 or 1007) was sent where the protocol allows it.
    Protocol(tungstenite::error::ProtocolError),
    /// The peer sent a close frame with a status code the protocol does not
    /// allow (such as 999 or 1005); it was answered with 1002.
    /// [`Error::kind`] is [`ErrorKind::Protocol`].
    InvalidCloseCode,
    /// The peer sent a text message (or close reason) that is not valid UTF-8;
    /// the connection was closed with 1007. [`Error::kind`] is [`ErrorKind::Protocol`].
    Utf8(String),
    /// A message or frame exceeded a configured limit; the connection was closed with 1009.
    Capacity(tungstenite::error::CapacityError),
    /// The connection was closed with a close handshake, by either side.
    /// Carries the close frame, if the closing side sent one.
    Closed(Option<CloseFrame>),
    /// The connection ended without a close frame (EOF or reset).
    ConnectionLost(io::Error),
    /// Another I/O error on the connection.
    Io(io::Error),
    /// The app is between connections (reconnecting); nothing was sent.
    NotConnected,
    /// A callback panicked; the connection went on.
    Handler {
        /// The callback's name, such as `on_message`.
        callback: &'static str,
        /// The panic message.
        message: String,
    },
    /// An error met while talking to a proxy: a timeout ([`Phase::Proxy`], or
    /// [`Phase::Tls`] for an `https://` proxy's handshake), a TLS failure with
    /// an `https://` proxy (such as an untrusted certificate: add its root with
    /// `Client::add_root_certificate`), or an I/O error. The message starts
    /// with the proxy, so one taken from the environment is named.
    ///
    /// [`Error::kind`] is the inner error's kind (`Timeout`, `Tls` or `Io`),
    /// and [`source`](std::error::Error::source) is the inner error.
    ///
    /// # Examples
    ///
    /// ```
    /// use wsapp::{Error, ErrorKind, Phase};
    ///
    /// fn describe(err: &Error) -> String {
    ///     match err {
    ///         Error::AtProxy { proxy, error } if error.kind() == ErrorKind::Timeout => {
    ///             format!("{proxy} did not answer")
    ///         }
    ///         other => other.to_string(),
    ///     }
    /// }
    /// let err = Error::AtProxy {
    ///     proxy: "http://127.0.0.1:3128".into(),
    ///     error: Box::new(Error::Timeout(Phase::Proxy)),
    /// };
    /// assert_eq!(err.kind(), ErrorKind::Timeout);
    /// assert_eq!(describe(&err), "http://127.0.0.1:3128 did not answer");
    /// ```
    AtProxy {
        /// The proxy, without credentials.
        proxy: String,
        /// What went wrong.
        error: Box<Error>,
    },
    /// The upgrade response broke RFC 6455 4.1: not HTTP (or a TLS reply to
    /// `ws://`), no `Upgrade: websocket` or `Connection: upgrade` token, a bad
    /// `Sec-WebSocket-Accept`, a head too long. [`Error::kind`] is [`ErrorKind::Handshake`].
    Upgrade {
        /// What was wrong with the response.
        problem: String,
    },
    /// The server's `Sec-WebSocket-Extensions` named an extension the client
    /// did not offer.
    Extension {
        /// The extensions the client offered.
        offered: Vec<String>,
        /// What was wrong with the server's answer.
        problem: String,
    },
    /// The TLS session failed after the TLS handshake, during the upgrade: a TLS
    /// 1.3 server that wants a client certificate says so here, with an alert.
    /// [`Error::kind`] is [`ErrorKind::Tls`].
    TlsSession {
        /// The name the certificate was checked against.
        host: String,
        /// The TLS library's error.
        source: io::Error,
    },
    /// The app has ended (`run_forever` returned); nothing more can be sent.
    /// [`Error::kind`] is [`ErrorKind::Closed`].
    AppEnded,
    /// The peer broke the WebSocket protocol where wsapp's frame layer checks
    /// it (such as a 64-bit frame length with its most significant bit set,
    /// RFC 6455 5.2); a close frame with 1002 was sent where the protocol
    /// allows it. [`Error::kind`] is [`ErrorKind::Protocol`].
    Frame(String),
    /// The peer's compressed message (permessage-deflate, RFC 7692) could not
    /// be inflated: not a valid deflate stream, or one using a larger window
    /// than agreed. The connection was closed with 1007.
    /// [`Error::kind`] is [`ErrorKind::Protocol`].
    Compression(String),
}

/// A `Copy` summary of an [`Error`], for matching.
///
/// # Examples
///
/// ```
/// let err = wsapp::Client::new("ws://[::1").connect().unwrap_err();
/// assert_eq!(err.kind(), wsapp::ErrorKind::Url);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Url`]
    Url,
    /// [`Error::Config`]
    Config,
    /// [`Error::Dns`]
    Dns,
    /// [`Error::Connect`]
    Connect,
    /// [`Error::Timeout`], or an [`Error::AtProxy`] around one
    Timeout,
    /// [`Error::Proxy`]
    Proxy,
    /// [`Error::Tls`], or an [`Error::AtProxy`] around one (an `https://`
    /// proxy's certificate or handshake)
    Tls,
    /// [`Error::HandshakeRejected`]
    HandshakeRejected,
    /// [`Error::Redirect`]
    Redirect,
    /// [`Error::Handshake`]
    Handshake,
    /// [`Error::Subprotocol`]
    Subprotocol,
    /// [`Error::Protocol`]
    Protocol,
    /// [`Error::Capacity`]
    Capacity,
    /// [`Error::Closed`]
    Closed,
    /// [`Error::ConnectionLost`]
    ConnectionLost,
    /// [`Error::Io`], or an [`Error::AtProxy`] around one
    Io,
    /// [`Error::NotConnected`]
    NotConnected,
    /// [`Error::Handler`]
    Handler,
    /// [`Error::Extension`]
    Extension,
}

impl Error {
    /// The kind of error, for matching.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Url { .. } => ErrorKind::Url,
            Error::Config { .. } => ErrorKind::Config,
            Error::Dns { .. } => ErrorKind::Dns,
            Error::Connect { .. } => ErrorKind::Connect,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Proxy { .. } => ErrorKind::Proxy,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::HandshakeRejected(_) => ErrorKind::HandshakeRejected,
            Error::Redirect { .. } => ErrorKind::Redirect,
            Error::Handshake(_) => ErrorKind::Handshake,
            Error::Subprotocol { .. } => ErrorKind::Subprotocol,
            Error::Protocol(_)
            | Error::Utf8(_)
            | Error::InvalidCloseCode
            | Error::Frame(_)
            | Error::Compression(_) => ErrorKind::Protocol,
            Error::Capacity(_) => ErrorKind::Capacity,
            Error::Closed(_) => ErrorKind::Closed,
            Error::ConnectionLost(_) => ErrorKind::ConnectionLost,
            Error::Io(_) => ErrorKind::Io,
            Error::NotConnected => ErrorKind::NotConnected,
            Error::Handler { .. } => ErrorKind::Handler,
            Error::AtProxy { error, .. } => error.kind(),
            Error::Upgrade { .. } => ErrorKind::Handshake,
            Error::Extension { .. } => ErrorKind::Extension,
            Error::TlsSession { .. } => ErrorKind::Tls,
            Error::AppEnded => ErrorKind::Closed,
        }
    }

    /// The close frame of a [`Error::Closed`], if the closing side sent one.
    ///
    /// # Examples
    ///
    /// ```
    /// use wsapp::{CloseCode, CloseFrame, Error};
    /// let err = Error::Closed(Some(CloseFrame { code: CloseCode::Away, reason: "bye".into() }));
    /// assert_eq!(err.close_frame().map(|f| u16::from(f.code)), Some(1001));
    /// assert!(Error::Closed(None).close_frame().is_none());
    /// ```
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        match self {
            Error::Closed(frame) => frame.as_ref(),
            _ => None,
        }
    }

    /// Whether this is the normal end of a connection (a close handshake).
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed(_))
    }

    /// A copy for repeated reports of the same end (`recv` after the end).
    pub(crate) fn duplicate(&self) -> Error {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            Error::Closed(f) => Error::Closed(f.clone()),
            Error::ConnectionLost(e) => Error::ConnectionLost(io(e)),
            Error::Io(e) => Error::Io(io(e)),
            Error::Protocol(e) => Error::Protocol(e.clone()),
            Error::Capacity(e) => Error::Capacity(*e),
            Error::Utf8(s) => Error::Utf8(s.clone()),
            Error::Timeout(p) => Error::Timeout(*p),
            Error::NotConnected => Error::NotConnected,
            Error::InvalidCloseCode => Error::InvalidCloseCode,
            Error::AppEnded => Error::AppEnded,
            Error::Frame(s) => Error::Frame(s.clone()),
            Error::Compression(s) => Error::Compression(s.clone()),
            other => Error::ConnectionLost(io::Error::other(other.to_string())),
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Error {
        Error::Config {
            reason: reason.into(),
        }
    }

    pub(crate) fn url(url: &str, reason: impl Into<String>) -> Error {
        Error::Url {
            url: crate::url::redact(url),
            reason: reason.into(),
        }
    }

    /// Maps an I/O error of a blocking step that runs under a timeout: a
    /// timeout (`WouldBlock` from a read or write timeout, `TimedOut` from a
    /// deadline or a connect) becomes [`Error::Timeout`]`(phase)`, any other
    /// error goes through `other` (such as `Error::Io` or `Error::ConnectionLost`).
    pub(crate) fn from_io(
        phase: Phase,
        e: io::Error,
        other: impl FnOnce(io::Error) -> Error,
    ) -> Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(phase),
            _ => other(e),
        }
    }

    /// Maps an I/O error on an upgraded connection: a reset or a socket that is
    /// no longer connected is [`Error::ConnectionLost`].
    pub(crate) fn lost_or_io(e: io::Error) -> Error {
        if is_lost(&e) {
            Error::ConnectionLost(e)
        } else {
            Error::Io(e)
        }
    }

    /// Maps an error from tungstenite's frame layer on an open connection.
    pub(crate) fn from_ws(err: tungstenite::Error) -> Error {
        use tungstenite::Error as T;
        match err {
            T::ConnectionClosed | T::AlreadyClosed => Error::Closed(None),
            T::Io(e) if is_lost(&e) => Error::ConnectionLost(e),
            T::Io(e) => Error::Io(e),
            T::Capacity(e) => Error::Capacity(e),
            T::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
                Error::ConnectionLost(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection ended without a close frame",
                ))
            }
            T::Protocol(e) => Error::Protocol(e),
            T::Utf8(detail) => Error::Utf8(detail),
            other => Error::Handshake(other),
        }
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_string())
}

fn is_lost(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url { url, reason } => write!(f, "url: {url:?}: {reason}"),
            Error::Config { reason } => write!(f, "config: {reason}"),
            Error::Dns { host, source } => write!(f, "dns: could not resolve {host:?}: {source}"),
            Error::Connect {
                addr,
                tried,
                source,
            } => write!(
                f,
                "connect: {addr}: {source} ({tried} address{} tried)",
                if *tried == 1 { "" } else { "es" }
            ),
            Error::Timeout(phase) => write!(
                f,
                "timeout: {phase} did not finish in time (raise the matching timeout option if the peer is slow)"
            ),
            Error::Proxy { proxy, reason } => write!(f, "proxy {proxy}: {reason}"),
            Error::Tls { host, source } => write!(f, "tls: {host}: {source}"),
            Error::HandshakeRejected(resp) => {
                write!(f, "handshake: server answered {} instead of 101", resp.status())?;
                if let Some(body) = resp.body().as_deref().filter(|b| !b.is_empty()) {
                    let start = &body[..body.len().min(200)];
                    write!(f, ": {:?}", String::from_utf8_lossy(start))?;
                }
                Ok(())
            }
            Error::Redirect { url, reason } => write!(f, "redirect from {url:?}: {reason}"),
            Error::Handshake(tungstenite::Error::AttackAttempt) => write!(
                f,
                "handshake: the response headers were too long or came in too many small pieces (refused)"
            ),
            Error::Handshake(e) => write!(f, "handshake: {e}"),
            Error::Subprotocol { offered, problem } => write!(
                f,
                "handshake: subprotocol: {problem} (offered: {offered:?})"
            ),
            Error::Protocol(e) => write!(f, "protocol: peer broke the WebSocket protocol: {e}"),
            Error::Utf8(detail) => write!(f, "protocol: peer sent invalid UTF-8 text: {detail}"),
            Error::InvalidCloseCode => write!(
                f,
                "protocol: peer sent a close frame with an invalid status code (answered with 1002)"
            ),
            Error::Capacity(e) => write!(
                f,
                "capacity: {e} (closed with 1009; raise max_message_size/max_frame_size to accept it)"
            ),
            Error::Closed(Some(frame)) => write!(
                f,
                "closed: code {} reason {:?}",
                u16::from(frame.code),
                frame.reason.as_str()
            ),
            Error::Closed(None) => write!(f, "closed: without a status code"),
            Error::ConnectionLost(e) => write!(f, "connection lost without a close frame: {e}"),
            Error::Io(e) => write!(f, "io: {e}"),
            Error::NotConnected => write!(f, "not connected: the app is reconnecting; try again after on_open/on_reconnect"),
            Error::Handler { callback, message } => write!(f, "handler: {callback} panicked: {message}"),
            Error::AtProxy { proxy, error } => write!(f, "proxy {proxy}: {error}"),
            Error::Upgrade { problem } => write!(f, "handshake: {problem}"),
            Error::Extension { offered, problem } if offered.is_empty() => {
                write!(f, "handshake: extension: {problem} (offered: none)")
            }
            Error::Extension { offered, problem } => write!(
                f,
                "handshake: extension: {problem} (offered: {})",
                offered.join(", ")
            ),
            Error::TlsSession { host, source } => {
                write!(f, "tls: {host}: {source}")?;
                if source.to_string().contains("certificate required") {
                    f.write_str(" (the server wants a client certificate: set Client::identity)")?;
                }
                Ok(())
            }
            Error::AppEnded => write!(
                f,
                "closed: the app has ended (run_forever returned); start a new app to send again"
            ),
            Error::Frame(detail) => write!(f, "protocol: peer broke the WebSocket protocol: {detail}"),
            Error::Compression(detail) => write!(
                f,
                "protocol: {detail}; closed with 1007 (a broken server: Client::compression(None) \
                 turns permessage-deflate off)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Dns { source, .. } | Error::Connect { source, .. } => Some(source),
            Error::Tls { source, .. } => Some(source),
            Error::Handshake(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Capacity(e) => Some(e),
            Error::ConnectionLost(e) | Error::Io(e) => Some(e),
            Error::AtProxy { error, .. } => Some(&**error),
            Error::TlsSession { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why [`try_send`](crate::Sender::try_send) did not send; hands the message back.
///
/// # Examples
///
/// ```
/// use wsapp::{Message, TrySendError};
/// let err = TrySendError::Full(Message::text("hi"));
/// assert!(err.is_full());
/// assert_eq!(err.into_inner(), Message::text("hi"));
/// ```
#[derive(Debug, PartialEq)]
pub enum TrySendError {
    /// The outbox is full: the I/O thread is behind (the peer reads slowly).
    Full(Message),
    /// The connection is closed or closing; nothing more can be sent.
    Closed(Message),
}

impl TrySendError {
    /// The message that was not sent.
    pub fn into_inner(self) -> Message {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m) => m,
        }
    }

    /// Whether the outbox was full (try again later).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl fmt::Display for TrySendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("send: outbox full (the peer is reading slowly)"),
            TrySendError::Closed(_) => f.write_str("send: connection closed"),
        }
    }
}

impl std::error::Error for TrySendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_io_maps_timeouts_to_the_phase() {
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            let e = Error::from_io(Phase::Proxy, kind.into(), Error::Io);
            assert!(matches!(e, Error::Timeout(Phase::Proxy)), "{e:?}");
        }
        let e = Error::from_io(
            Phase::Handshake,
            io::ErrorKind::ConnectionReset.into(),
            Error::ConnectionLost,
        );
        assert!(matches!(e, Error::ConnectionLost(_)), "{e:?}");
    }

    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<Error>() <= 64,
            "{}",
            std::mem::size_of::<Error>()
        );
    }
}
