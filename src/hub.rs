//! Hub layer: [`Hub`], a fixed set of I/O threads (and a dispatcher pool for
//! apps) shared by many connections, and its snapshot [`HubStats`].
//!
//! Owns the hub's lifetime: starting its threads, placing connections on
//! them, and, on drop, closing every live connection with 1001 and joining
//! the threads. The I/O threads themselves are the connection layer's
//! (`connection::hub`): this module never touches a socket, and it never
//! connects (DNS, TCP, proxy, TLS and the upgrade run on the caller of
//! [`Client::connect`](crate::Client::connect), with their deadlines; only
//! the established connection is handed to a hub thread).
//!
//! What a connection costs, each way (measured in BENCHMARKS.md):
//! - alone: an I/O thread (`wsapp-io-N`, its stack mostly untouched), a
//!   poller (two descriptors), tungstenite's 128 KiB read buffer, 64 KiB
//!   payload chunks;
//! - on a hub: no thread and no poller of its own; a 4 KiB read buffer and
//!   4 KiB payload chunks by default ([`Client::read_buffer_size`],
//!   [`Client::payload_chunk_size`]), allocated when data comes.
//!
//! [`Client::read_buffer_size`]: crate::Client::read_buffer_size
//! [`Client::payload_chunk_size`]: crate::Client::payload_chunk_size

use std::fmt;
use std::sync::Arc;

use crate::connection::HubIo;
use crate::error::Result;

/// I/O threads a hub starts by default: one per core, at most this many (a
/// hub thread turns thousands of idle connections per millisecond; more
/// threads than cores only add wake-ups).
const DEFAULT_MAX_IO_THREADS: usize = 4;

/// Many connections on a few threads.
///
/// Without a hub, each connection has an I/O thread of its own. A `Hub` is a
/// fixed set of I/O threads (`wsapp-hub-N`), each with one poller, that drive
/// every connection put on it with [`Client::hub`](crate::Client::hub). On a
/// hub each connection keeps everything it has alone: its inbox and overflow
/// policy, its byte bounds, pausing (a paused connection stops reading *its*
/// socket and never stalls the others), keepalive, the close handshake,
/// direct reads under [`Overflow::Block`](crate::Overflow::Block), its
/// [`Stats`](crate::Stats).
///
/// Dropping the hub closes every live connection with 1001 (going away),
/// waiting for each close handshake up to its close timeout, and joins the
/// threads. A `WebSocket` that outlives its hub reports the close as usual.
///
/// # Examples
///
/// ```no_run
/// let hub = wsapp::Hub::new()?;
/// let client = wsapp::Client::new("ws://127.0.0.1:9001/").hub(&hub);
/// let a = client.connect()?;
/// let b = client.connect()?;
/// a.send_text("on the hub")?;
/// println!("{}", b.recv()?);
/// println!("{}", hub.stats());
/// # Ok::<(), wsapp::Error>(())
/// ```
pub struct Hub {
    pub(crate) inner: Arc<HubShared>,
}

/// What clients on the hub hold (weakly: a client does not keep a hub alive).
pub(crate) struct HubShared {
    pub(crate) io: HubIo,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("io_threads", &self.inner.io.threads())
            .finish()
    }
}

impl Hub {
    /// A hub with one I/O thread per core (at most 4).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a poller or a thread cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// let hub = wsapp::Hub::new()?;
    /// assert!(hub.stats().io_threads >= 1);
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn new() -> Result<Hub> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Hub::with_io_threads(cores.min(DEFAULT_MAX_IO_THREADS))
    }

    /// A hub with `threads` I/O threads (at least one).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a poller or a thread cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// let hub = wsapp::Hub::with_io_threads(2)?;
    /// assert_eq!(hub.stats().io_threads, 2);
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn with_io_threads(threads: usize) -> Result<Hub> {
        Ok(Hub {
            inner: Arc::new(HubShared {
                io: HubIo::start(threads)?,
            }),
        })
    }

    /// A snapshot over the hub's connections: how many, on how many
    /// threads, how many paused, what they hold queued.
    ///
    /// It locks each connection briefly: meant for a periodic log line,
    /// not for every message.
    ///
    /// # Examples
    ///
    /// ```
    /// let hub = wsapp::Hub::new()?;
    /// let s = hub.stats();
    /// assert_eq!((s.connections, s.paused, s.queued_bytes), (0, 0, 0));
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn stats(&self) -> HubStats {
        let io = self.inner.io.stats();
        HubStats {
            connections: io.connections,
            io_threads: io.io_threads,
            paused: io.paused,
            queued: io.queued,
            queued_bytes: io.queued_bytes,
            outbox_bytes: io.outbox_bytes,
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Not left to the last `Arc`: a connect in progress may hold one.
        self.inner.io.shutdown();
    }
}

/// A snapshot of a [`Hub`], from [`Hub::stats`]. Per-connection figures are
/// each connection's [`Stats`](crate::Stats).
///
/// # Examples
///
/// ```
/// let s = wsapp::HubStats::default();
/// assert!(s.to_string().starts_with("connections 0"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Live connections on the hub.
    pub connections: usize,
    /// The hub's I/O threads.
    pub io_threads: usize,
    /// Connections that stopped reading their socket because their inbox is
    /// full ([`Overflow::Block`](crate::Overflow::Block)'s backpressure).
    pub paused: usize,
    /// Messages queued in all inboxes.
    pub queued: usize,
    /// Payload bytes queued in all inboxes.
    pub queued_bytes: usize,
    /// Payload bytes waiting in all outboxes.
    pub outbox_bytes: usize,
}

impl fmt::Display for HubStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections {} io_threads {} paused {} queued {} ({} B) outbox {} B",
            self.connections,
            self.io_threads,
            self.paused,
            self.queued,
            self.queued_bytes,
            self.outbox_bytes
        )
    }
}
