//! The [`Client`] builder: every connection option in one place, and
//! [`Client::connect`], which runs the layers in order (url, socket, proxy,
//! tls, handshake) and hands the socket to the connection layer.
//!
//! It holds options and sequences the layers; it does no I/O of its own.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use native_tls::{Certificate, Identity, TlsConnector};
use tungstenite::protocol::WebSocketConfig;

use crate::connection::{IoOptions, WebSocket};
use crate::deflate::Compression;
use crate::error::{Error, Result};
use crate::handshake::HandshakeOptions;
use crate::hub::{Hub, HubShared};
use crate::proxy::Proxy;
use crate::queue::{FilterFn, Inbox, Overflow};
use crate::socket::SocketOptions;
use crate::stream::Stream;
use crate::tls::TlsOptions;
use crate::{Bytes, Message};

/// What "no limit" means for message and frame sizes: the most memory can
/// hold. tungstenite reserves a frame's announced length up front, and an
/// unlimited 2^63 would make that allocation panic.
const NO_LIMIT: usize = isize::MAX as usize;

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

/// Where the proxy setting comes from.
/// [`Client::outbox_bytes`]'s default.
const DEFAULT_OUTBOX_BYTES: usize = 16 << 20;

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
            queue: 1024,
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

    /// Puts the connections this client makes on `hub`: its threads drive
    /// them, and no thread is started per connection. Connecting (DNS, TCP,
    /// proxy, TLS, the upgrade) still runs on the thread that calls
    /// [`connect`](Client::connect), with its timeouts; only the established
    /// connection goes to the hub. Without it, each connection has an I/O
    /// thread of its own.
    ///
    /// On a hub, [`read_buffer_size`](Client::read_buffer_size) and
    /// [`payload_chunk_size`](Client::payload_chunk_size) default to 4 KiB.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let hub = wsapp::Hub::new()?;
    /// let ws = wsapp::Client::new("ws://127.0.0.1:9001/").hub(&hub).connect()?;
    /// assert_eq!(hub.stats().connections, 1);
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn hub(mut self, hub: &Hub) -> Client {
        self.hub = Some(Arc::downgrade(&hub.inner));
        self
    }

    /// The size of the read buffer (the fast lane's, and tungstenite's for
    /// the frames the lane leaves to it): how much one read of the socket
    /// takes at most, and what a connection holds once it has read
    /// anything. A message larger than it grows the buffer for itself.
    /// While queued messages still share a buffer, the connection reads into
    /// another and reuses the first once they are gone; after a second of
    /// quiet it keeps at most one spare. Defaults to 128 KiB, or 4 KiB on a
    /// [`hub`](Client::hub).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").read_buffer_size(16 << 10);
    /// # let _ = c;
    /// ```
    pub fn read_buffer_size(mut self, bytes: usize) -> Client {
        self.read_buffer_size = Some(bytes.max(1));
        self
    }

    /// The size of the chunks small payloads (under 16 KiB) are copied into
    /// out of the read buffer, many messages to a chunk (one allocation per
    /// chunk, freed when its last message is dropped). A connection keeps
    /// one chunk once it has received anything. Defaults to 64 KiB, or
    /// 4 KiB on a [`hub`](Client::hub).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").payload_chunk_size(8 << 10);
    /// # let _ = c;
    /// ```
    pub fn payload_chunk_size(mut self, bytes: usize) -> Client {
        self.payload_chunk_size = Some(bytes.max(1));
        self
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

    /// Adds a request header. Values with CR or LF are refused at connect.
    /// Header values are never logged.
    ///
    /// The headers the handshake writes itself are refused at connect with
    /// [`Error::Config`]: `Host` (use [`host_header`](Client::host_header)),
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`
    /// and `Sec-WebSocket-Extensions` (extensions are negotiated by the
    /// client). A `Sec-WebSocket-Protocol` header is merged with
    /// [`subprotocols`](Client::subprotocols): its names are offered and
    /// checked the same way. `Origin` and `Cookie` headers give way to
    /// [`origin`](Client::origin) and [`cookie`](Client::cookie) when those are set.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").header("Authorization", "Bearer x");
    /// # let _ = c;
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Client {
        self.handshake.headers.push((name.into(), value.into()));
        self
    }

    /// Subprotocols to offer; the server must choose one of them, else
    /// [`Error::Subprotocol`]. Names given in a `Sec-WebSocket-Protocol`
    /// [`header`](Client::header) are offered after these. Defaults to none.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").subprotocols(["v2.json", "v1.json"]);
    /// # let _ = c;
    /// ```
    pub fn subprotocols<I, S>(mut self, protocols: I) -> Client
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.handshake.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The `Origin` header. Defaults to none.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").origin("https://example.com");
    /// # let _ = c;
    /// ```
    pub fn origin(mut self, origin: impl Into<String>) -> Client {
        self.handshake.origin = Some(origin.into());
        self
    }

    /// The `Cookie` header. Defaults to none.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").cookie("session=abc");
    /// # let _ = c;
    /// ```
    pub fn cookie(mut self, cookie: impl Into<String>) -> Client {
        self.handshake.cookie = Some(cookie.into());
        self
    }

    /// Overrides the `Host` header (the connection still goes to the URL's host).
    /// Defaults to the URL's host and port.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://127.0.0.1:9001/").host_header("example.com");
    /// # let _ = c;
    /// ```
    pub fn host_header(mut self, host: impl Into<String>) -> Client {
        self.handshake.host = Some(host.into());
        self
    }

    /// `SO_RCVBUF` in bytes, set before `connect` so that TCP window scaling is
    /// negotiated for it. Linux doubles the value and caps it at
    /// `net.core.rmem_max`; [`Stats::recv_buffer_size`](crate::Stats::recv_buffer_size)
    /// shows what the kernel took. Defaults to the system's default (autotuning).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").recv_buffer_size(4 << 20);
    /// # let _ = c;
    /// ```
    pub fn recv_buffer_size(mut self, bytes: usize) -> Client {
        self.socket.recv_buffer_size = Some(bytes);
        self
    }

    /// `SO_SNDBUF` in bytes, set before `connect`. Defaults to the system's default.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").send_buffer_size(1 << 20);
    /// # let _ = c;
    /// ```
    pub fn send_buffer_size(mut self, bytes: usize) -> Client {
        self.socket.send_buffer_size = Some(bytes);
        self
    }

    /// `TCP_NODELAY`. Defaults to `true`: messages are sent at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").nodelay(false);
    /// # let _ = c;
    /// ```
    pub fn nodelay(mut self, on: bool) -> Client {
        self.socket.nodelay = on;
        self
    }

    /// TCP keepalive after `idle` without traffic. Defaults to off.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").tcp_keepalive(std::time::Duration::from_secs(60));
    /// # let _ = c;
    /// ```
    pub fn tcp_keepalive(mut self, idle: Duration) -> Client {
        self.socket.keepalive = Some(idle);
        self
    }

    /// Time allowed to connect to each resolved address. Defaults to 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").connect_timeout(std::time::Duration::from_secs(3));
    /// # let _ = c;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Client {
        self.socket.connect_timeout = timeout;
        self
    }

    /// Time allowed for the TLS handshake and the HTTP upgrade together.
    /// Defaults to 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").handshake_timeout(std::time::Duration::from_secs(3));
    /// # let _ = c;
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Client {
        self.handshake_timeout = timeout;
        self
    }

    /// Time to wait for the server's close frame after sending ours; then the
    /// socket is shut. Defaults to 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").close_timeout(std::time::Duration::from_secs(1));
    /// # let _ = c;
    /// ```
    pub fn close_timeout(mut self, timeout: Duration) -> Client {
        self.io.close_timeout = timeout;
        self
    }

    /// The inbox bound in messages. Defaults to 1024.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").queue(10_000);
    /// # let _ = c;
    /// ```
    pub fn queue(mut self, messages: usize) -> Client {
        self.queue = messages;
        self
    }

    /// The inbox bound in payload bytes. A single message larger than the bound
    /// is still taken when the inbox is empty. When the connection ends, the
    /// reader's last batch (at most 64 messages or 256 KiB, plus one message)
    /// is queued past the bounds rather than lost. Defaults to 64 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").queue_bytes(16 << 20);
    /// # let _ = c;
    /// ```
    pub fn queue_bytes(mut self, bytes: usize) -> Client {
        self.queue_bytes = bytes;
        self
    }

    /// What the inbox does when it is full. Defaults to [`Overflow::Block`]
    /// (lossless backpressure).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").overflow(wsapp::Overflow::DropOldest);
    /// # let _ = c;
    /// ```
    pub fn overflow(mut self, policy: Overflow) -> Client {
        self.overflow = policy;
        self
    }

    /// A predicate run on the I/O thread before a message is queued; messages it
    /// refuses are dropped and counted as `dropped.filtered`. Pings and pongs
    /// go through it too. Defaults to none.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").filter(|m: &wsapp::Message| !m.is_ping());
    /// # let _ = c;
    /// ```
    pub fn filter(mut self, keep: impl Fn(&Message) -> bool + Send + Sync + 'static) -> Client {
        self.filter = Some(std::sync::Arc::new(keep));
        self
    }

    /// Under [`Overflow::Block`] without a filter, whether a consumer that finds
    /// the inbox empty reads the next message from the socket itself. Defaults
    /// to `true`: handing each message from the I/O thread to the consumer
    /// costs more than reading it, so a consumer that keeps up reads at close to
    /// a one-thread loop's speed, and the I/O thread reads ahead into the inbox
    /// only once the consumer has taken nothing for about a millisecond (a slow
    /// handler, say). The backlog of a consumer that keeps up then waits in the
    /// kernel's receive buffer rather than in the inbox. With `false` the I/O
    /// thread always reads ahead, as under the other policies: the inbox takes
    /// bursts first, and the server is throttled only once it is full.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").direct_reads(false);
    /// # let _ = c;
    /// ```
    pub fn direct_reads(mut self, enabled: bool) -> Client {
        self.direct_reads = enabled;
        self
    }

    /// How long a consumer that finds the inbox empty waits awake (spinning)
    /// for the I/O thread's next batch before it sleeps. Defaults to zero: it
    /// sleeps at once and the batch wakes it. A spin saves that wake-up (tens
    /// of microseconds on the way from the wire to `recv`) but keeps a core
    /// busy while it lasts, CPU that the I/O thread and everything else on
    /// the machine then lack: on two cores, a 50 µs spin made a 4 KiB flood
    /// through the inbox a quarter slower (BENCHMARKS.md). Worth it for a
    /// latency-bound consumer with a core to spare.
    ///
    /// It applies where messages come through the inbox: any policy but
    /// [`Overflow::Block`], a [`filter`](Client::filter), or
    /// [`direct_reads(false)`](Client::direct_reads). A consumer that reads
    /// the socket itself sleeps in the kernel instead, as a one-thread loop
    /// does. On a [`hub`](Client::hub), where the app's handlers are run
    /// when messages are queued, it does not apply.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = wsapp::Client::new("ws://h/")
    ///     .overflow(wsapp::Overflow::DropOldest)
    ///     .busy_wait(Duration::from_micros(50));
    /// # let _ = c;
    /// ```
    pub fn busy_wait(mut self, spin: Duration) -> Client {
        self.busy_wait = spin;
        self
    }

    /// The outbox bound in payload bytes: `send` waits and `try_send` fails
    /// while queued messages hold this much (an empty outbox takes any one
    /// message). Defaults to 16 MiB, as OkHttp's outgoing queue: a peer that
    /// reads slowly holds at most that much of the sender's memory.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").outbox_bytes(1 << 20);
    /// # let _ = c;
    /// ```
    pub fn outbox_bytes(mut self, bytes: usize) -> Client {
        self.io.outbox_bytes = bytes;
        self
    }

    /// The outbox bound in messages: `send` waits and `try_send` fails when it is
    /// full. Defaults to 1024.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").outbox(64);
    /// # let _ = c;
    /// ```
    pub fn outbox(mut self, messages: usize) -> Client {
        self.io.outbox = messages;
        self
    }

    /// The largest message accepted; a bigger one closes the connection with
    /// 1009 and gives [`Error::Capacity`]. `None` removes the limit: a peer can
    /// then make this process allocate whatever it announces. Defaults to 64 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").max_message_size(Some(1 << 20));
    /// # let _ = c;
    /// ```
    pub fn max_message_size(mut self, bytes: Option<usize>) -> Client {
        self.ws_config.max_message_size = Some(bytes.unwrap_or(NO_LIMIT));
        self
    }

    /// The largest frame accepted (as [`max_message_size`](Client::max_message_size)).
    /// Defaults to 16 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").max_frame_size(Some(1 << 20));
    /// # let _ = c;
    /// ```
    pub fn max_frame_size(mut self, bytes: Option<usize>) -> Client {
        self.ws_config.max_frame_size = Some(bytes.unwrap_or(NO_LIMIT));
        self
    }

    /// permessage-deflate (RFC 7692): what to offer and how to compress, or
    /// `None` to offer nothing (every message then goes as it is). The server
    /// decides: [`WebSocket::compression`](crate::WebSocket::compression) says
    /// what it agreed. Inflated sizes count against
    /// [`max_message_size`](Client::max_message_size) and the inbox's bytes.
    /// Defaults to `Some(Compression::default())`: offered, as browsers and
    /// Node's `ws` client do.
    ///
    /// # Examples
    ///
    /// ```
    /// use wsapp::{Client, Compression};
    ///
    /// let on = Client::new("ws://h/").compression(Compression::default().threshold(1024));
    /// let off = Client::new("ws://h/").compression(None);
    /// # let _ = (on, off);
    /// ```
    pub fn compression(mut self, compression: impl Into<Option<Compression>>) -> Client {
        self.handshake.compression = compression.into();
        self
    }

    /// Sends a keepalive ping every `interval` from the I/O thread, while
    /// nothing else is read. Unless [`ping_timeout`](Client::ping_timeout) is
    /// set, the pong timeout follows: half the interval, at most 10 s.
    /// Defaults to 20 s (with a 10 s timeout), so that a silent peer or a dead
    /// network ends the connection with
    /// [`Error::Timeout`]`(`[`Phase::Pong`](crate::Phase::Pong)`)` rather than
    /// holding it forever (Python's `websockets` does the same);
    /// [`no_keepalive`](Client::no_keepalive) turns it off.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").ping_interval(std::time::Duration::from_secs(30));
    /// # let _ = c;
    /// ```
    pub fn ping_interval(mut self, interval: Duration) -> Client {
        self.io.ping_interval = Some(interval);
        if !self.ping_timeout_set {
            self.io.ping_timeout = Some(default_ping_timeout(interval));
        }
        self
    }

    /// Turns keepalive off: no pings, no pong timeout. A silent peer then
    /// holds the connection until the kernel gives up on it (see
    /// [`tcp_keepalive`](Client::tcp_keepalive)). Keepalive is on by default
    /// ([`ping_interval`](Client::ping_interval)); setting an interval after
    /// this turns it on again.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").no_keepalive();
    /// assert!(format!("{c:?}").contains("ping_interval: None"));
    /// ```
    pub fn no_keepalive(mut self) -> Client {
        self.io.ping_interval = None;
        self.io.ping_timeout = None;
        self.ping_timeout_set = false;
        self
    }

    /// Ends the connection with [`Error::Timeout`]`(`[`Phase::Pong`](crate::Phase::Pong)`)`
    /// when nothing at all is read within `timeout` of a keepalive ping. While
    /// reading is paused by backpressure the deadline is suspended. Must be
    /// shorter than the interval. Defaults to 10 s (half the interval, at most
    /// 10 s, when only the interval is set).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = wsapp::Client::new("ws://h/")
    ///     .ping_interval(Duration::from_secs(20))
    ///     .ping_timeout(Duration::from_secs(10));
    /// # let _ = c;
    /// ```
    pub fn ping_timeout(mut self, timeout: Duration) -> Client {
        self.io.ping_timeout = Some(timeout);
        self.ping_timeout_set = true;
        self
    }

    /// The payload of keepalive pings. Defaults to empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").ping_payload(&b"hb"[..]);
    /// # let _ = c;
    /// ```
    pub fn ping_payload(mut self, payload: impl Into<Bytes>) -> Client {
        self.io.ping_payload = payload.into();
        self
    }

    /// How many HTTP redirects (301, 302, 303, 307, 308) the handshake follows.
    /// `0` turns following off. A redirect from `wss` to `ws` is always refused.
    /// On a redirect to another origin (scheme, host or port), the
    /// `Authorization` and `Cookie` headers and the `Host` and TLS server-name
    /// overrides are not used again. Defaults to 3.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").redirects(0);
    /// # let _ = c;
    /// ```
    pub fn redirects(mut self, max: u32) -> Client {
        self.redirects = max;
        self
    }

    /// Connects through this proxy (HTTP CONNECT, HTTPS, SOCKS5, SOCKS5h,
    /// SOCKS4, SOCKS4a); the environment is then not read. The socket options
    /// apply to the socket to the proxy, which carries the data.
    ///
    /// # Examples
    ///
    /// ```
    /// let proxy = wsapp::Proxy::new("http://user:secret@127.0.0.1:3128")?;
    /// let c = wsapp::Client::new("ws://example.com/").proxy(proxy);
    /// assert!(!format!("{c:?}").contains("secret"));
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn proxy(mut self, proxy: Proxy) -> Client {
        self.proxy = ProxyChoice::Explicit(proxy);
        self
    }

    /// Whether to take the proxy from the environment when none is set:
    /// `wss` uses `https_proxy`, `ws` uses `http_proxy`, then `all_proxy`
    /// (lower case first, then upper case), unless `no_proxy` matches the host.
    /// Defaults to `true`; `false` connects directly.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://127.0.0.1:9001/").proxy_from_env(false);
    /// # let _ = c;
    /// ```
    pub fn proxy_from_env(mut self, on: bool) -> Client {
        if !matches!(self.proxy, ProxyChoice::Explicit(_)) {
            self.proxy = if on {
                ProxyChoice::Env
            } else {
                ProxyChoice::Direct
            };
        }
        self
    }

    /// Trusts an extra root certificate, PEM or DER, besides the system's.
    /// A certificate that does not parse is reported by `connect`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pem = std::fs::read("ca.pem").unwrap();
    /// let c = wsapp::Client::new("wss://localhost/").add_root_certificate(&pem);
    /// # let _ = c;
    /// ```
    pub fn add_root_certificate(mut self, pem_or_der: &[u8]) -> Client {
        let parsed = if pem_or_der.starts_with(b"-----") {
            Certificate::from_pem(pem_or_der)
        } else {
            Certificate::from_der(pem_or_der)
        };
        match parsed {
            Ok(c) => {
                self.tls.roots.push(c);
                self.tls.changed();
            }
            Err(e) => self.deferred = Some(format!("root certificate: {e}")),
        }
        self
    }

    /// A client certificate and key for TLS client authentication.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let (cert, key) = (std::fs::read("c.pem").unwrap(), std::fs::read("k.pem").unwrap());
    /// let id = wsapp::native_tls::Identity::from_pkcs8(&cert, &key).unwrap();
    /// let c = wsapp::Client::new("wss://localhost/").identity(id);
    /// # let _ = c;
    /// ```
    pub fn identity(mut self, identity: Identity) -> Client {
        self.tls.identity = Some(identity);
        self.tls.changed();
        self
    }

    /// The name sent in SNI and checked against the certificate, when it differs
    /// from the URL's host. Defaults to the URL's host.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("wss://127.0.0.1:8443/").tls_server_name("localhost");
    /// # let _ = c;
    /// ```
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Client {
        self.tls.server_name = Some(name.into());
        self
    }

    /// **Danger**: accepts any certificate, expired, self-signed or for another
    /// host. Anyone on the path can read and change the traffic. Defaults to `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("wss://localhost/").danger_accept_invalid_certs(true);
    /// # let _ = c;
    /// ```
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Client {
        self.tls.accept_invalid_certs = accept;
        self.tls.changed();
        self
    }

    /// **Danger**: accepts a valid certificate issued for another host name.
    /// Defaults to `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("wss://127.0.0.1/").danger_accept_invalid_hostnames(true);
    /// # let _ = c;
    /// ```
    pub fn danger_accept_invalid_hostnames(mut self, accept: bool) -> Client {
        self.tls.accept_invalid_hostnames = accept;
        self.tls.changed();
        self
    }

    /// Uses a connector built by the caller (with [`native_tls`](crate::native_tls),
    /// re-exported); the other TLS options are then ignored. Without one, the
    /// connector is built from the options on the first `wss://` connect and
    /// shared by clones of this `Client` and their reconnects.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let tls = wsapp::native_tls::TlsConnector::new().unwrap();
    /// let c = wsapp::Client::new("wss://example.com/").tls_connector(tls);
    /// # let _ = c;
    /// ```
    pub fn tls_connector(mut self, connector: TlsConnector) -> Client {
        self.tls.connector = Some(connector);
        self.tls.changed();
        self
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
