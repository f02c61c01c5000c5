//! The [`Client`] setters for the established connection: the hub that
//! drives it, read buffers and payload chunks, the inbox and its overflow
//! policy, the outbox, message and frame limits, keepalive and the close
//! timeout.
//!
//! They only store options on the builder: checking them is `connect`'s,
//! and they do no I/O of their own.

use std::sync::Arc;
use std::time::Duration;

use super::{default_ping_timeout, Client};
#[cfg(doc)]
use crate::error::Error;
use crate::hub::Hub;
use crate::queue::Overflow;
use crate::{Bytes, Message};

/// What "no limit" means for message and frame sizes: the most memory can
/// hold. tungstenite reserves a frame's announced length up front, and an
/// unlimited 2^63 would make that allocation panic.
const NO_LIMIT: usize = isize::MAX as usize;

impl Client {
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

    /// The inbox bound in messages. Defaults to 8192 (with
    /// [`queue_bytes`](Client::queue_bytes), 64 MiB, the bound on memory).
    /// In a flood a sleeping consumer is woken once half of it (at most
    /// 4096 messages) or 1 MiB has come since it began to wait: at 1024, a
    /// 64 B flood on a VM filled the rest before the woken thread ran, and
    /// the reader paused or paid a wake-up every ~500 messages
    /// (BENCHMARKS.md, session 6).
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
}
