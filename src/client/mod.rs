//! The [`Client`] builder: every connection option in one place, and
//! [`Client::connect`], which runs the layers in order (url, socket, proxy,
//! tls, handshake) and hands the socket to the connection layer.
//!
//! It holds options and sequences the layers; it does no I/O of its own.
//!
//! The files: this one holds the [`Client`] struct, [`Client::new`],
//! [`Client::connect`] and the sequencing of the layers; `setup` the setters
//! for getting connected (handshake, socket, timeouts, redirects, proxy,
//! TLS); `traffic` the setters for the established connection (hub, buffers,
//! inbox, outbox, limits, keepalive, close).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocketConfig;

use crate::connection::{IoOptions, WebSocket};
use crate::deflate::Compression;
use crate::error::{Error, Result};
use crate::handshake::HandshakeOptions;
use crate::hub::HubShared;
use crate::proxy::Proxy;
use crate::queue::{FilterFn, Inbox, Overflow};
use crate::socket::SocketOptions;
use crate::stream::Stream;
use crate::tls::TlsOptions;
use crate::Bytes;

mod setup;
mod traffic;

/// Keepalive is on by default, as in Python's `websockets`: a silent peer or a
/// dead network ends the connection instead of holding it forever.
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// The longest pong timeout that follows the interval when none is set.
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The pong timeout for `interval` when none is set: half of it, at most 10 s
/// (it must be shorter than the interval).
fn default_ping_timeout(interval: Duration) -> Duration {
    DEFAULT_PING_TIMEOUT.min(interval / 2)
}

/// [`Client::outbox_bytes`]'s default.
const DEFAULT_OUTBOX_BYTES: usize = 16 << 20;

/// Where the proxy setting comes from.
#[derive(Debug, Clone)]
enum ProxyChoice {
    /// `http_proxy`/`https_proxy`/`all_proxy` and `no_proxy`, read at each connect.
    Env,
    Direct,
    Explicit(Proxy),
}

/// Connects with every option at its default.
///
/// # Errors
///
/// As [`Client::connect`].
///
/// # Examples
///
/// ```no_run
/// let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
/// ws.send_text("hello")?;
/// # Ok::<(), wsapp::Error>(())
/// ```
pub fn connect(url: &str) -> Result<WebSocket> {
    Client::new(url).connect()
}

/// A builder for a connection: URL, socket, TLS, handshake, inbox and keepalive options.
///
/// Setters take and return the builder; nothing is checked or connected until
/// [`connect`](Client::connect). A `Client` can be cloned and connected again
/// (the app does that to reconnect).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use wsapp::{Client, Overflow};
///
/// let ws = Client::new("wss://example.com/stream")
///     .header("Authorization", "Bearer token")
///     .subprotocols(["v2.json"])
///     .recv_buffer_size(4 << 20)
///     .queue(1024)
///     .overflow(Overflow::Block)
///     .connect_timeout(Duration::from_secs(5))
///     .connect()?;
/// # Ok::<(), wsapp::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    url: String,
    socket: SocketOptions,
    tls: TlsOptions,
    handshake: HandshakeOptions,
    ws_config: WebSocketConfig,
    handshake_timeout: Duration,
    queue: usize,
    queue_bytes: usize,
    overflow: Overflow,
    filter: Option<FilterFn>,
    direct_reads: bool,
    busy_wait: Duration,
    io: IoOptions,
    /// Whether `ping_timeout` was set, rather than following the interval.
    ping_timeout_set: bool,
    redirects: u32,
    proxy: ProxyChoice,
    /// An option that could not be taken (a bad certificate, say), reported by `connect`.
    deferred: Option<String>,
    /// The hub connections go on (weak: a client does not keep a hub alive).
    hub: Option<Weak<HubShared>>,
    read_buffer_size: Option<usize>,
    payload_chunk_size: Option<usize>,
}

/// tungstenite's read buffer on a hub, by default: small messages need no
/// more, a larger one grows it for itself, and tungstenite zeroes the whole
/// buffer on its first read (128 KiB per connection at its default).
const HUB_READ_BUFFER: usize = 4 << 10;
/// Payload chunks on a hub, by default (see `connection::slab`): one chunk
/// is kept per connection that has received anything.
const HUB_PAYLOAD_CHUNK: usize = 4 << 10;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &crate::url::redact(&self.url))
            .field("socket", &self.socket)
            .field("tls", &self.tls)
            .field("handshake", &self.handshake)
            .field("queue", &self.queue)
            .field("queue_bytes", &self.queue_bytes)
            .field("overflow", &self.overflow)
            .field("filter", &self.filter.is_some())
            .field("io", &self.io)
            .field("redirects", &self.redirects)
            .field("proxy", &self.proxy)
            .field("hub", &self.hub.is_some())
            .finish()
    }
}

impl Client {
    /// A builder for `url` (`ws://` or `wss://`) with every option at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// let client = wsapp::Client::new("ws://127.0.0.1:9001/");
    /// # let _ = client;
    /// ```
    pub fn new(url: impl Into<String>) -> Client {
        Client {
            url: url.into(),
            socket: SocketOptions::default(),
            tls: TlsOptions::default(),
            handshake: HandshakeOptions {
                compression: Some(Compression::default()),
                ..HandshakeOptions::default()
            },
            ws_config: WebSocketConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            queue: 8192,
            queue_bytes: 64 << 20,
            overflow: Overflow::Block,
            filter: None,
            direct_reads: true,
            busy_wait: Duration::ZERO,
            io: IoOptions {
                outbox: 1024,
                outbox_bytes: DEFAULT_OUTBOX_BYTES,
                close_timeout: Duration::from_secs(5),
                ping_interval: Some(DEFAULT_PING_INTERVAL),
                ping_timeout: Some(default_ping_timeout(DEFAULT_PING_INTERVAL)),
                ping_payload: Bytes::new(),
                payload_chunk: crate::connection::DEFAULT_PAYLOAD_CHUNK,
            },
            ping_timeout_set: false,
            redirects: 3,
            proxy: ProxyChoice::Env,
            deferred: None,
            hub: None,
            read_buffer_size: None,
            payload_chunk_size: None,
        }
    }

    /// The URL this builder connects to.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wsapp::Client::new("ws://h/").url(), "ws://h/");
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connects: resolves, connects the socket with its options, runs TLS and the
    /// upgrade (following redirects), then starts the connection's I/O thread.
    ///
    /// # Errors
    ///
    /// [`Error::Url`], [`Error::Config`] before any I/O; then [`Error::Dns`],
    /// [`Error::Connect`], [`Error::Timeout`], [`Error::Tls`] (or
    /// [`Error::TlsSession`] for a TLS alert during the upgrade),
    /// [`Error::HandshakeRejected`] (with status, headers and the body, at most
    /// 64 KiB), [`Error::Redirect`], [`Error::Upgrade`] (a response that breaks
    /// RFC 6455), [`Error::Extension`] or [`Error::Subprotocol`].
    ///
    /// # Examples
    ///
    /// ```
    /// // Nothing listens on port 1 here: a clear error, no panic.
    /// let err = wsapp::Client::new("ws://127.0.0.1:1/")
    ///     .connect_timeout(std::time::Duration::from_secs(1))
    ///     .connect()
    ///     .unwrap_err();
    /// assert!(matches!(err.kind(), wsapp::ErrorKind::Connect | wsapp::ErrorKind::Timeout));
    /// ```
    pub fn connect(&self) -> Result<WebSocket> {
        if let Some(reason) = &self.deferred {
            return Err(Error::config(reason.clone()));
        }
        self.validate()?;
        let first = crate::url::parse(&self.url)?;
        crate::handshake::follow_redirects(
            first,
            self.redirects,
            &self.handshake,
            &self.tls,
            |target, handshake, tls| self.connect_once(target, handshake, tls),
        )
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let (Some(i), Some(t)) = (self.io.ping_interval, self.io.ping_timeout) {
            if t.is_zero() || t >= i {
                return Err(Error::config(
                    "ping_timeout must be non-zero and shorter than ping_interval",
                ));
            }
        }
        if let Some(c) = &self.handshake.compression {
            c.validate().map_err(Error::config)?;
        }
        if self.io.ping_interval.is_some_and(|i| i.is_zero()) {
            return Err(Error::config("ping_interval must be non-zero"));
        }
        Ok(())
    }

    fn connect_once(
        &self,
        target: &crate::url::Target,
        handshake: &HandshakeOptions,
        tls: &TlsOptions,
    ) -> Result<WebSocket> {
        let request = crate::handshake::request(target, handshake)?;
        if target.secure {
            // Built (once per client) before the clock of the handshake starts.
            tls.connector(&target.host)?;
        }
        let proxy = match &self.proxy {
            ProxyChoice::Env => crate::proxy::from_env(target),
            ProxyChoice::Direct => None,
            ProxyChoice::Explicit(p) => Some(p.clone()),
        };
        let mut stream = match &proxy {
            None => Stream::tcp_stream(crate::socket::connect(
                &target.host,
                target.port,
                &self.socket,
            )?),
            Some(p) => {
                crate::proxy::open(p, target, &self.socket, &self.tls, self.handshake_timeout)?
            }
        };
        let deadline = Instant::now() + self.handshake_timeout;
        if target.secure {
            stream = crate::tls::wrap(stream, &target.host, tls, deadline)?;
        }
        let tls_name = tls.server_name.as_deref().unwrap_or(&target.host);
        let hub = self.live_hub()?;
        let mut ws_config = self.ws_config;
        let mut io = self.io.clone();
        if let Some(bytes) = self
            .read_buffer_size
            .or(hub.as_ref().map(|_| HUB_READ_BUFFER))
        {
            ws_config.read_buffer_size = bytes;
        }
        if let Some(bytes) = self
            .payload_chunk_size
            .or(hub.as_ref().map(|_| HUB_PAYLOAD_CHUNK))
        {
            io.payload_chunk = bytes;
        }
        let (ws, response) = crate::handshake::handshake(
            stream,
            &request,
            target.secure.then_some(tls_name),
            ws_config,
            deadline,
        )?;
        let (queue, queue_bytes) = (self.queue, self.queue_bytes);
        let (overflow, filter) = (self.overflow.clone(), self.filter.clone());
        let (direct, spin) = (self.direct_reads, self.busy_wait);
        WebSocket::start(
            ws,
            response,
            io,
            hub.as_ref().map(|h| &h.io),
            move |resume| Inbox::new(queue, queue_bytes, overflow, filter, direct, spin, resume),
        )
    }

    /// The hub this client is on, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the hub has been dropped.
    pub(crate) fn live_hub(&self) -> Result<Option<Arc<HubShared>>> {
        match &self.hub {
            None => Ok(None),
            Some(weak) => weak.upgrade().map(Some).ok_or_else(|| {
                Error::config(
                    "the hub this client was put on has been dropped: put it on a live Hub",
                )
            }),
        }
    }
}
