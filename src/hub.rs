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
//!   poller (two descriptors), a 128 KiB read buffer (the fast lane's;
//!   tungstenite's, as large, stays mostly untouched), 64 KiB payload chunks;
//! - on a hub: no thread and no poller of its own; a 4 KiB read buffer and
//!   4 KiB payload chunks by default ([`Client::read_buffer_size`],
//!   [`Client::payload_chunk_size`]), allocated when data comes.
//!
//! Apps that reconnect: the backoff waits on a hub thread's timer (no
//! sleeping thread per app), and the connect itself (DNS, TCP, proxy, TLS,
//! the upgrade: blocking, each with its deadline) runs on the hub's connect
//! pool, `CONNECT_THREADS` threads (`wsapp-conn-hN`) started at the first
//! reconnect. Not on an I/O thread, which would stall every connection on
//! it for up to a connect timeout; not on a dispatcher, which would hold up
//! other apps' callbacks just as long. The connect task only connects and
//! hands the result back: the app's callbacks for it (`on_error` for a
//! failed attempt, `on_reconnect` for a new connection) run on the
//! dispatcher pool like all the others, under the app's own lock, so the
//! order is that of an app off the hub. The price of a bounded pool: a
//! reconnect storm queues on it, so with every attempt hanging to its
//! connect timeout T, the last of N apps tries after about N·T/2 (lower the
//! connect timeout for many apps on one server).
//!
//! [`Client::read_buffer_size`]: crate::Client::read_buffer_size
//! [`Client::payload_chunk_size`]: crate::Client::payload_chunk_size

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel as channel;

use crate::connection::HubIo;
use crate::error::{Error, Result};

/// Dispatcher threads a hub starts by default: one per core, at least two
/// (one handler that blocks then leaves the others a thread), at most 4.
const DEFAULT_MAX_DISPATCHERS: usize = 4;

/// Work for the dispatcher pool: one app's next callbacks.
pub(crate) trait Task: Send + Sync {
    /// Runs a bounded share of the task's callbacks, then returns the thread.
    fn run(self: Arc<Self>);
}

/// The hub's dispatcher pool (`wsapp-disp-N`): runs apps' callbacks.
pub(crate) struct Dispatch {
    tx: Mutex<Option<channel::Sender<Arc<dyn Task>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    n: usize,
}

impl Dispatch {
    fn start(n: usize, name: &str) -> Result<Dispatch> {
        let (tx, rx) = channel::unbounded::<Arc<dyn Task>>();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("{name}{i}"))
                .spawn(move || {
                    for task in rx.iter() {
                        task.run();
                    }
                })
                .map_err(Error::Io)?;
            threads.push(t);
        }
        Ok(Dispatch {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            n: n.max(1),
        })
    }

    /// Queues `task`; `false` once the hub is shutting down.
    pub(crate) fn send(&self, task: Arc<dyn Task>) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref().is_some_and(|tx| tx.send(task).is_ok())
    }

    /// Lets the threads finish what is queued, and joins them.
    fn shutdown(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            // Dropped by a callback on this pool: that thread ends on its
            // own once it returns to the closed queue; joining it here
            // would wait on ourselves.
            if t.thread().id() == std::thread::current().id() {
                continue;
            }
            if t.join().is_err() {
                log::error!("a wsapp dispatcher thread panicked");
            }
        }
    }
}

/// Threads of a hub's connect pool: a reconnect's connect blocks up to its
/// deadlines (DNS, TCP, TLS, upgrade), so two let one attempt that hangs on
/// an address that never answers leave the other apps' reconnects a thread;
/// more would only help reconnect storms, where the backoff already spreads
/// the attempts, and every one is a thread whatever the load.
const CONNECT_THREADS: usize = 2;

/// The hub's connect pool, started at the first reconnect.
#[derive(Default)]
pub(crate) struct Connects {
    pool: Option<Dispatch>,
    shut: bool,
}

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
/// threads (a callback may drop it too: the dispatcher it runs on then ends
/// on its own once the callback returns). A `WebSocket` that outlives its
/// hub reports the close as usual.
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
    pub(crate) dispatch: Dispatch,
    connects: Mutex<Connects>,
}

impl HubShared {
    /// Queues a connect on the connect pool (starting it the first time);
    /// `false` once the hub is shutting down or the pool cannot start.
    pub(crate) fn connect(&self, task: Arc<dyn Task>) -> bool {
        let mut c = self.connects.lock().unwrap_or_else(|p| p.into_inner());
        if c.shut {
            return false;
        }
        if c.pool.is_none() {
            match Dispatch::start(CONNECT_THREADS, "wsapp-conn-h") {
                Ok(pool) => c.pool = Some(pool),
                Err(e) => {
                    log::error!("wsapp hub: starting the connect pool failed: {e}");
                    return false;
                }
            }
        }
        c.pool.as_ref().is_some_and(|pool| pool.send(task))
    }

    /// Lets queued connects finish and joins the connect pool.
    fn shutdown_connects(&self) {
        let pool = {
            let mut c = self.connects.lock().unwrap_or_else(|p| p.into_inner());
            c.shut = true;
            c.pool.take()
        };
        if let Some(pool) = pool {
            pool.shutdown();
        }
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("io_threads", &self.inner.io.threads())
            .finish()
    }
}

impl Hub {
    /// A hub with one I/O thread per core (at most 4), and as many dispatcher
    /// threads (at least 2) for apps.
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
        Hub::with_threads(
            default_threads(DEFAULT_MAX_IO_THREADS, 1),
            default_dispatchers(),
        )
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
        Hub::with_threads(threads, default_dispatchers())
    }

    /// A hub with `io_threads` I/O threads and `dispatchers` dispatcher
    /// threads (each at least one) for the [`WebSocketApp`](crate::WebSocketApp)s
    /// started on it.
    ///
    /// An app's callbacks run on one dispatcher at a time, in wire order,
    /// at most a batch per turn before the thread goes to the next app. A
    /// handler that blocks holds its dispatcher: the other apps share the
    /// rest, and with every dispatcher blocked no app's callbacks run (each
    /// connection's inbox then fills, and its policy decides: `Block`
    /// pauses that socket, the lossy ones drop). Size the pool for the
    /// handlers that may block at once.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a poller or a thread cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// let hub = wsapp::Hub::with_threads(1, 3)?;
    /// let s = hub.stats();
    /// assert_eq!((s.io_threads, s.dispatchers), (1, 3));
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn with_threads(io_threads: usize, dispatchers: usize) -> Result<Hub> {
        Ok(Hub {
            inner: Arc::new(HubShared {
                io: HubIo::start(io_threads)?,
                dispatch: Dispatch::start(dispatchers, "wsapp-disp-h")?,
                connects: Mutex::default(),
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
            dispatchers: self.inner.dispatch.n,
            paused: io.paused,
            queued: io.queued,
            queued_bytes: io.queued_bytes,
            outbox_bytes: io.outbox_bytes,
        }
    }
}

fn default_threads(max: usize, min: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.clamp(min, max)
}

fn default_dispatchers() -> usize {
    default_threads(DEFAULT_MAX_DISPATCHERS, 2)
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Not left to the last `Arc`: a connect in progress may hold one.
        // Connections first: their apps' last callbacks run on the pool.
        // Then connects: a backoff timer the I/O threads ran at their end
        // queued its connect, which now fails and hands the app back to
        // the pool to end.
        self.inner.io.shutdown();
        self.inner.shutdown_connects();
        self.inner.dispatch.shutdown();
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
    /// The hub's dispatcher threads, for apps.
    pub dispatchers: usize,
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
            "connections {} io_threads {} dispatchers {} paused {} queued {} ({} B) outbox {} B",
            self.connections,
            self.io_threads,
            self.dispatchers,
            self.paused,
            self.queued,
            self.queued_bytes,
            self.outbox_bytes
        )
    }
}
