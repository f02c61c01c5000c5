//! App layer: [`WebSocketApp`], the callback model of Python's
//! websocket-client, on top of [`WebSocket`](crate::WebSocket).
//!
//! Owns the dispatcher loop (callbacks run on the thread that calls
//! `run_forever`, never on the I/O thread), panic isolation, reconnect with
//! backoff, and the [`AppSender`] that follows reconnects. Keepalive is the
//! connection's (the I/O thread sees pauses and every frame); this module only
//! forwards the settings. It never touches a socket.
//!
//! On a hub (`HubApp`), the same life is a state machine (`Phase`: live,
//! connected, waiting) turned by the hub's dispatchers: a backoff is a hub
//! timer, a reconnect's connect a task on the hub's connect pool, and every
//! callback still runs under the app's lock, in the order `run_forever`
//! gives (see the hub module for why connects have a pool of their own).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::connection::Sender;
use crate::error::{panic_message, Error, Result, TrySendError};
use crate::hub::{HubShared, Task};
use crate::stats::Stats;
use crate::{Bytes, CloseFrame, Message, Utf8Bytes};

/// Callbacks for a [`WebSocketApp`], for handlers that keep state.
///
/// Every method has a default that does nothing (`on_reconnect` calls
/// `on_open`, so subscriptions sent there are sent again). Methods run on the
/// dispatcher thread, one at a time, in wire order. A panic in one is caught
/// and reported to `on_error` as [`Error::Handler`]; the connection goes on.
///
/// # Examples
///
/// ```no_run
/// use wsapp::{AppSender, Handler, Message, WebSocketApp, Client};
///
/// struct Counter { seen: u64 }
///
/// impl Handler for Counter {
///     fn on_open(&mut self, ws: &AppSender) {
///         let _ = ws.send_text("subscribe");
///     }
///     fn on_message(&mut self, _ws: &AppSender, _msg: Message) {
///         self.seen += 1;
///     }
/// }
///
/// WebSocketApp::with_handler(Client::new("ws://127.0.0.1:9001/"), Counter { seen: 0 })
///     .run_forever()?;
/// # Ok::<(), wsapp::Error>(())
/// ```
pub trait Handler: Send {
    /// The connection is open (the first time).
    ///
    /// # Examples
    ///
    /// ```
    /// struct Subscriber;
    /// impl wsapp::Handler for Subscriber {
    ///     fn on_open(&mut self, ws: &wsapp::AppSender) {
    ///         let _ = ws.send_text(r#"{"subscribe":"trades"}"#);
    ///     }
    /// }
    /// let app = wsapp::WebSocketApp::with_handler(wsapp::Client::new("ws://h/"), Subscriber);
    /// # let _ = app;
    /// ```
    fn on_open(&mut self, ws: &AppSender) {
        let _ = ws;
    }
    /// A text or binary message arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Echo;
    /// impl wsapp::Handler for Echo {
    ///     fn on_message(&mut self, ws: &wsapp::AppSender, msg: wsapp::Message) {
    ///         let _ = ws.send(msg);
    ///     }
    /// }
    /// let mut h = Echo;
    /// wsapp::Handler::on_message(&mut h, &wsapp::AppSender::default(), wsapp::Message::text("hi"));
    /// ```
    fn on_message(&mut self, ws: &AppSender, msg: Message) {
        let _ = (ws, msg);
    }
    /// The server sent a ping (the pong is already on its way).
    ///
    /// # Examples
    ///
    /// ```
    /// struct Pings(u64);
    /// impl wsapp::Handler for Pings {
    ///     fn on_ping(&mut self, _ws: &wsapp::AppSender, _payload: wsapp::Bytes) {
    ///         self.0 += 1;
    ///     }
    /// }
    /// let mut h = Pings(0);
    /// wsapp::Handler::on_ping(&mut h, &wsapp::AppSender::default(), wsapp::Bytes::new());
    /// assert_eq!(h.0, 1);
    /// ```
    fn on_ping(&mut self, ws: &AppSender, payload: Bytes) {
        let _ = (ws, payload);
    }
    /// The server sent a pong.
    ///
    /// # Examples
    ///
    /// ```
    /// struct LastPong(Option<std::time::Instant>);
    /// impl wsapp::Handler for LastPong {
    ///     fn on_pong(&mut self, _ws: &wsapp::AppSender, _payload: wsapp::Bytes) {
    ///         self.0 = Some(std::time::Instant::now());
    ///     }
    /// }
    /// let mut h = LastPong(None);
    /// wsapp::Handler::on_pong(&mut h, &wsapp::AppSender::default(), wsapp::Bytes::new());
    /// assert!(h.0.is_some());
    /// ```
    fn on_pong(&mut self, ws: &AppSender, payload: Bytes) {
        let _ = (ws, payload);
    }
    /// Something failed: connecting, the connection, or a callback.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Log;
    /// impl wsapp::Handler for Log {
    ///     fn on_error(&mut self, _ws: &wsapp::AppSender, err: &wsapp::Error) {
    ///         eprintln!("{:?}: {err}", err.kind());
    ///     }
    /// }
    /// let mut h = Log;
    /// wsapp::Handler::on_error(&mut h, &wsapp::AppSender::default(), &wsapp::Error::NotConnected);
    /// ```
    fn on_error(&mut self, ws: &AppSender, err: &Error) {
        let _ = (ws, err);
    }
    /// A connection that opened has ended: with the peer's close frame after a
    /// close handshake, `None` after an abrupt end. Called once per connection.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Closes(Vec<Option<u16>>);
    /// impl wsapp::Handler for Closes {
    ///     fn on_close(&mut self, _ws: &wsapp::AppSender, frame: Option<wsapp::CloseFrame>) {
    ///         self.0.push(frame.map(|f| u16::from(f.code)));
    ///     }
    /// }
    /// let mut h = Closes(Vec::new());
    /// wsapp::Handler::on_close(&mut h, &wsapp::AppSender::default(), None);
    /// assert_eq!(h.0, [None]);
    /// ```
    fn on_close(&mut self, ws: &AppSender, frame: Option<CloseFrame>) {
        let _ = (ws, frame);
    }
    /// A reconnect succeeded. Defaults to calling `on_open`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Resume { last_seq: u64 }
    /// impl wsapp::Handler for Resume {
    ///     fn on_reconnect(&mut self, ws: &wsapp::AppSender) {
    ///         let _ = ws.send_text(format!("resume {}", self.last_seq));
    ///     }
    /// }
    /// let app = wsapp::WebSocketApp::with_handler(wsapp::Client::new("ws://h/"), Resume { last_seq: 0 });
    /// # let _ = app;
    /// ```
    fn on_reconnect(&mut self, ws: &AppSender) {
        self.on_open(ws)
    }
    /// Called every stats interval (see [`WebSocketApp::stats_interval`]).
    ///
    /// # Examples
    ///
    /// ```
    /// struct Watch;
    /// impl wsapp::Handler for Watch {
    ///     fn on_stats(&mut self, _ws: &wsapp::AppSender, stats: &wsapp::Stats) {
    ///         eprintln!("{stats}");
    ///     }
    /// }
    /// let app = wsapp::WebSocketApp::with_handler(wsapp::Client::new("ws://h/"), Watch)
    ///     .stats_interval(std::time::Duration::from_secs(5));
    /// # let _ = app;
    /// ```
    fn on_stats(&mut self, ws: &AppSender, stats: &Stats) {
        let _ = (ws, stats);
    }
}

type Cb0 = Box<dyn FnMut(&AppSender) + Send>;
type Cb<T> = Box<dyn FnMut(&AppSender, T) + Send>;
type CbRef<T> = Box<dyn FnMut(&AppSender, &T) + Send>;

/// The [`Handler`] made from closures by [`WebSocketApp::new`] and its `on_*` setters.
///
/// # Examples
///
/// ```
/// let app: wsapp::WebSocketApp<wsapp::Callbacks> =
///     wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/")).on_message(|_ws, msg| println!("{msg}"));
/// assert!(format!("{app:?}").contains("WebSocketApp"));
/// let empty = wsapp::Callbacks::default();
/// assert!(format!("{empty:?}").contains("on_message: false"));
/// ```
#[derive(Default)]
pub struct Callbacks {
    open: Option<Cb0>,
    message: Option<Cb<Message>>,
    ping: Option<Cb<Bytes>>,
    pong: Option<Cb<Bytes>>,
    error: Option<CbRef<Error>>,
    close: Option<Cb<Option<CloseFrame>>>,
    reconnect: Option<Cb0>,
    stats: Option<CbRef<Stats>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("on_open", &self.open.is_some())
            .field("on_message", &self.message.is_some())
            .field("on_ping", &self.ping.is_some())
            .field("on_pong", &self.pong.is_some())
            .field("on_error", &self.error.is_some())
            .field("on_close", &self.close.is_some())
            .field("on_reconnect", &self.reconnect.is_some())
            .field("on_stats", &self.stats.is_some())
            .finish()
    }
}

impl Handler for Callbacks {
    fn on_open(&mut self, ws: &AppSender) {
        if let Some(f) = &mut self.open {
            f(ws)
        }
    }
    // Inlined into the dispatch loop: every by-value hop of a message costs
    // a copy on the hot path.
    #[inline]
    fn on_message(&mut self, ws: &AppSender, msg: Message) {
        if let Some(f) = &mut self.message {
            f(ws, msg)
        }
    }
    fn on_ping(&mut self, ws: &AppSender, payload: Bytes) {
        if let Some(f) = &mut self.ping {
            f(ws, payload)
        }
    }
    fn on_pong(&mut self, ws: &AppSender, payload: Bytes) {
        if let Some(f) = &mut self.pong {
            f(ws, payload)
        }
    }
    fn on_error(&mut self, ws: &AppSender, err: &Error) {
        match &mut self.error {
            Some(f) => f(ws, err),
            None => log::warn!("wsapp: {err}"),
        }
    }
    fn on_close(&mut self, ws: &AppSender, frame: Option<CloseFrame>) {
        if let Some(f) = &mut self.close {
            f(ws, frame)
        }
    }
    fn on_reconnect(&mut self, ws: &AppSender) {
        match &mut self.reconnect {
            Some(f) => f(ws),
            None => self.on_open(ws),
        }
    }
    fn on_stats(&mut self, ws: &AppSender, stats: &Stats) {
        if let Some(f) = &mut self.stats {
            f(ws, stats)
        }
    }
}

/// Reconnect delays: exponential with full jitter.
///
/// Attempt `n` (from 1) waits a random time in `[0, min(max, min * 2^(n-1))]`.
/// After a connection stayed up for `reset_after` (defaults to `max`), the
/// attempt count starts again at 1.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let b = wsapp::Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30))
///     .max_attempts(10);
/// assert!(b.delay(3) <= Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    max_attempts: Option<u32>,
    reset_after: Duration,
}

impl Backoff {
    /// Delays growing from `min` up to `max`, with full jitter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = wsapp::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));
    /// # let _ = b;
    /// ```
    pub fn exponential(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            max_attempts: None,
            reset_after: max.max(min),
        }
    }

    /// Gives up after `n` reconnect attempts in a row have failed (so at most
    /// `n + 1` connects after a connection is lost). Defaults to never.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = wsapp::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5)).max_attempts(3);
    /// # let _ = b;
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Backoff {
        self.max_attempts = Some(n);
        self
    }

    /// A connection that stays up this long resets the attempt count.
    /// Defaults to the maximum delay.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = wsapp::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5))
    ///     .reset_after(Duration::from_secs(60));
    /// # let _ = b;
    /// ```
    pub fn reset_after(mut self, d: Duration) -> Backoff {
        self.reset_after = d;
        self
    }

    /// The upper bound of the delay before attempt `attempt` (1-based).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = wsapp::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
    /// assert_eq!(b.ceiling(1), Duration::from_millis(100));
    /// assert_eq!(b.ceiling(3), Duration::from_millis(400));
    /// assert_eq!(b.ceiling(30), Duration::from_secs(1));
    /// ```
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        self.min.saturating_mul(1u32 << shift).min(self.max)
    }

    /// A random delay in `[0, ceiling(attempt)]`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = wsapp::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
    /// assert!(b.delay(2) <= Duration::from_millis(200));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_nanos() as u64;
        // Full jitter; std's RandomState is randomly keyed, enough for spreading clients.
        let mut h = RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        Duration::from_nanos(h.finish() % (ceiling + 1))
    }
}

type KeyFn = Arc<dyn Fn(&Message) -> u64 + Send + Sync>;
type ParallelFn = Arc<dyn Fn(&AppSender, Message) + Send + Sync>;

/// A worker pool for `on_message`: see [`WebSocketApp::workers`].
#[derive(Clone)]
struct Workers {
    n: usize,
    key: KeyFn,
    handler: ParallelFn,
}

/// How many messages wait for each worker before the dispatcher waits.
const WORKER_QUEUE: usize = 64;

/// One connection's running workers: a bounded channel and a thread each.
struct Pool {
    queues: Vec<crossbeam_channel::Sender<Message>>,
    threads: Vec<JoinHandle<()>>,
    key: KeyFn,
    /// Panics in workers, reported to `on_error` by the dispatcher.
    panics: crossbeam_channel::Receiver<Error>,
}

impl Pool {
    fn start(w: &Workers, sender: &AppSender, app_id: usize) -> Result<Pool> {
        let (panic_tx, panics) = crossbeam_channel::unbounded();
        let mut queues = Vec::with_capacity(w.n);
        let mut threads = Vec::with_capacity(w.n);
        for i in 0..w.n {
            let (tx, rx) = crossbeam_channel::bounded::<Message>(WORKER_QUEUE);
            let (handler, sender, panic_tx) = (w.handler.clone(), sender.clone(), panic_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("wsapp-work-{app_id}-{i}"))
                .spawn(move || {
                    for msg in rx {
                        if let Err(p) = catch_unwind(AssertUnwindSafe(|| handler(&sender, msg))) {
                            let _ = panic_tx.send(Error::Handler {
                                callback: "on_message (worker)",
                                message: panic_message(&*p),
                            });
                        }
                    }
                })
                .map_err(Error::Io)?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok(Pool {
            queues,
            threads,
            key: w.key.clone(),
            panics,
        })
    }

    /// Hands a message to its key's worker, waiting while that worker's queue
    /// is full (the inbox then fills and its policy applies).
    fn dispatch(&self, msg: Message) {
        let i = ((self.key)(&msg) % self.queues.len() as u64) as usize;
        let _ = self.queues[i].send(msg);
    }

    /// Lets the workers finish what they were given, and joins them.
    fn finish(self) -> Vec<Error> {
        drop(self.queues);
        for t in self.threads {
            let _ = t.join();
        }
        self.panics.try_iter().collect()
    }
}

/// State shared by the app's dispatcher and its [`AppSender`]s.
#[derive(Default)]
struct AppShared {
    current: Mutex<Option<Sender>>,
    last_stats: Mutex<Stats>,
    closed: AtomicBool,
    /// Set when `run_forever` has returned: sends fail with `AppEnded`.
    ended: AtomicBool,
    /// Wakes a backoff sleep when the user closes.
    sleep: (Mutex<()>, Condvar),
    /// On a hub: schedules the app when the user closes (ending a backoff wait).
    wake: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl AppShared {
    fn current(&self) -> MutexGuard<'_, Option<Sender>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle on an app's connection that stays valid across reconnects.
///
/// Between connections, sends fail with [`Error::NotConnected`] rather than
/// queueing for a connection that does not exist yet. `Clone + Send + Sync`.
///
/// # Examples
///
/// ```no_run
/// let handle = wsapp::WebSocketApp::new(wsapp::Client::new("ws://127.0.0.1:9001/")).start()?;
/// let tx = handle.sender();
/// std::thread::spawn(move || { let _ = tx.send_text("from elsewhere"); });
/// # Ok::<(), wsapp::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct AppSender {
    shared: Arc<AppShared>,
}

impl std::fmt::Debug for AppSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSender")
            .field("connected", &self.is_connected())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl AppSender {
    fn with<T>(&self, f: impl FnOnce(&Sender) -> Result<T>) -> Result<T> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed(None));
        }
        // Clone out of the lock: a send may wait for room in the outbox.
        let sender = self.shared.current().clone();
        match sender {
            Some(s) => f(&s),
            None if self.shared.ended.load(Ordering::Acquire) => Err(Error::AppEnded),
            None => Err(Error::NotConnected),
        }
    }

    /// Sends a message on the current connection. See [`Sender::send`].
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] between connections; [`Error::Closed`] after `close`;
    /// [`Error::AppEnded`] once `run_forever` has returned.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::AppSender::default();
    /// ws.send(wsapp::Message::text("hi"))?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send(&self, msg: Message) -> Result<()> {
        self.with(|s| s.send(msg))
    }

    /// Sends without waiting. See [`Sender::try_send`].
    ///
    /// # Errors
    ///
    /// Hands the message back when the outbox is full, or in `Closed` when there
    /// is no open connection.
    ///
    /// # Examples
    ///
    /// ```
    /// let ws = wsapp::AppSender::default(); // never connected
    /// assert!(ws.try_send(wsapp::Message::text("hi")).is_err());
    /// ```
    pub fn try_send(&self, msg: Message) -> std::result::Result<(), TrySendError> {
        let sender = self.shared.current().clone();
        match sender {
            Some(s) if !self.shared.closed.load(Ordering::Acquire) => s.try_send(msg),
            _ => Err(TrySendError::Closed(msg)),
        }
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// As [`send`](AppSender::send).
    ///
    /// # Examples
    ///
    /// ```
    /// let ws = wsapp::AppSender::default(); // never connected
    /// assert_eq!(ws.send_text("hi").unwrap_err().kind(), wsapp::ErrorKind::NotConnected);
    /// ```
    pub fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.send(Message::Text(text.into()))
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send`](AppSender::send).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::AppSender::default();
    /// ws.send_binary(vec![1u8, 2])?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Binary(data.into()))
    }

    /// Sends a ping.
    ///
    /// # Errors
    ///
    /// As [`send`](AppSender::send).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::AppSender::default();
    /// ws.ping(Vec::new())?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into()))
    }

    /// Closes for good: starts the close handshake on the current connection,
    /// cancels any reconnect or backoff sleep, and makes `run_forever` return
    /// `Ok(())` once the connection has ended. Returns at once.
    ///
    /// # Errors
    ///
    /// As [`Sender::close`]: a code or reason that may
    /// not be sent is refused with [`Error::Config`]; the app goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// let ws = wsapp::AppSender::default();
    /// ws.close(1000, "bye")?;
    /// assert!(ws.send_text("late").unwrap_err().is_closed());
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        crate::wire::check_close(code, reason)?;
        self.shared.closed.store(true, Ordering::Release);
        let current = self.shared.current().clone();
        if let Some(s) = current {
            s.close(code, reason)?;
        }
        {
            let (lock, cv) = &self.shared.sleep;
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            cv.notify_all();
        }
        if let Some(wake) = self.shared.wake.get() {
            wake();
        }
        Ok(())
    }

    /// Whether a connection is open now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!wsapp::AppSender::default().is_connected());
    /// ```
    pub fn is_connected(&self) -> bool {
        self.shared
            .current()
            .as_ref()
            .is_some_and(|s| !s.is_closed())
    }

    /// Stats of the current connection, or of the last one between connections.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = wsapp::AppSender::default().stats();
    /// assert_eq!(s.received, 0);
    /// ```
    pub fn stats(&self) -> Stats {
        let current = self.shared.current().clone();
        match current {
            Some(s) => s.stats(),
            None => self
                .shared
                .last_stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// The callback app: connect, dispatch every event to a handler on this
/// thread, keep alive, reconnect.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use wsapp::{Backoff, Client, WebSocketApp};
///
/// WebSocketApp::new(Client::new("ws://127.0.0.1:9001/").queue(1024))
///     .on_open(|ws| { let _ = ws.send_text("subscribe"); })
///     .on_message(|_ws, msg| println!("{msg}"))
///     .on_error(|_ws, err| eprintln!("{err}"))
///     .on_close(|_ws, frame| println!("closed: {frame:?}"))
///     .ping_interval(Duration::from_secs(20))
///     .ping_timeout(Duration::from_secs(10))
///     .reconnect(Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30)))
///     .run_forever()?;
/// # Ok::<(), wsapp::Error>(())
/// ```
pub struct WebSocketApp<H: Handler = Callbacks> {
    client: Client,
    handler: H,
    reconnect: Option<Backoff>,
    reconnect_on_server_close: bool,
    stats_interval: Option<Duration>,
    workers: Option<Workers>,
    sender: AppSender,
    id: usize,
}

impl<H: Handler> std::fmt::Debug for WebSocketApp<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketApp")
            .field("client", &self.client)
            .field("reconnect", &self.reconnect)
            .field("reconnect_on_server_close", &self.reconnect_on_server_close)
            .field("stats_interval", &self.stats_interval)
            .field("workers", &self.workers.as_ref().map(|w| w.n))
            .finish()
    }
}

static NEXT_APP: AtomicUsize = AtomicUsize::new(1);

impl WebSocketApp<Callbacks> {
    /// An app whose handler is made of closures set with the `on_*` methods.
    ///
    /// # Examples
    ///
    /// ```
    /// let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://127.0.0.1:9001/"));
    /// # let _ = app;
    /// ```
    pub fn new(client: Client) -> Self {
        WebSocketApp::with_handler(client, Callbacks::default())
    }

    /// Called when the connection opens (and on reconnect, unless `on_reconnect` is set).
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.on_open(|ws| { let _ = ws.send_text("subscribe"); });
    /// ```
    pub fn on_open(mut self, f: impl FnMut(&AppSender) + Send + 'static) -> Self {
        self.handler.open = Some(Box::new(f));
        self
    }

    /// Called for every text and binary message.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.on_message(|_ws, msg| println!("{msg}"));
    /// ```
    pub fn on_message(mut self, f: impl FnMut(&AppSender, Message) + Send + 'static) -> Self {
        self.handler.message = Some(Box::new(f));
        self
    }

    /// Called for every ping from the server (already answered).
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.on_ping(|_ws, payload| println!("ping {payload:?}"));
    /// ```
    pub fn on_ping(mut self, f: impl FnMut(&AppSender, Bytes) + Send + 'static) -> Self {
        self.handler.ping = Some(Box::new(f));
        self
    }

    /// Called for every pong.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.on_pong(|_ws, payload| println!("pong {payload:?}"));
    /// ```
    pub fn on_pong(mut self, f: impl FnMut(&AppSender, Bytes) + Send + 'static) -> Self {
        self.handler.pong = Some(Box::new(f));
        self
    }

    /// Called for every error. Without it, errors are logged at warn level.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.on_error(|_ws, err| eprintln!("{err}"));
    /// ```
    pub fn on_error(mut self, f: impl FnMut(&AppSender, &Error) + Send + 'static) -> Self {
        self.handler.error = Some(Box::new(f));
        self
    }

    /// Called once per connection that opened, when it ends.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.on_close(|_ws, frame| println!("{frame:?}"));
    /// ```
    pub fn on_close(
        mut self,
        f: impl FnMut(&AppSender, Option<CloseFrame>) + Send + 'static,
    ) -> Self {
        self.handler.close = Some(Box::new(f));
        self
    }

    /// Called after each successful reconnect instead of `on_open`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.on_reconnect(|ws| { let _ = ws.send_text("resubscribe"); });
    /// ```
    pub fn on_reconnect(mut self, f: impl FnMut(&AppSender) + Send + 'static) -> Self {
        self.handler.reconnect = Some(Box::new(f));
        self
    }

    /// Called with a stats snapshot every `interval` while connected.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.on_stats(std::time::Duration::from_secs(1), |_ws, s| eprintln!("{s}"));
    /// ```
    pub fn on_stats(
        mut self,
        interval: Duration,
        f: impl FnMut(&AppSender, &Stats) + Send + 'static,
    ) -> Self {
        self.handler.stats = Some(Box::new(f));
        self.stats_interval = Some(interval);
        self
    }
}

impl<H: Handler + 'static> WebSocketApp<H> {
    /// An app that calls the methods of `handler`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Quiet;
    /// impl wsapp::Handler for Quiet {}
    /// let app = wsapp::WebSocketApp::with_handler(wsapp::Client::new("ws://h/"), Quiet);
    /// # let _ = app;
    /// ```
    pub fn with_handler(client: Client, handler: H) -> Self {
        WebSocketApp {
            client,
            handler,
            reconnect: None,
            reconnect_on_server_close: true,
            stats_interval: None,
            workers: None,
            sender: AppSender::default(),
            id: NEXT_APP.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sends a keepalive ping every `interval` (from the I/O thread). On by
    /// default (20 s, pong timeout 10 s), as on the `Client`; see
    /// [`Client::ping_interval`] and [`no_keepalive`](WebSocketApp::no_keepalive).
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.ping_interval(std::time::Duration::from_secs(20));
    /// ```
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.client = self.client.ping_interval(interval);
        self
    }

    /// Ends the connection when nothing is read within `timeout` of a ping;
    /// suspended while reading is paused. See [`Client::ping_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.ping_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.ping_timeout(timeout);
        self
    }

    /// Turns keepalive off (no pings, no pong timeout). See [`Client::no_keepalive`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.no_keepalive();
    /// assert!(format!("{app:?}").contains("ping_interval: None"));
    /// ```
    pub fn no_keepalive(mut self) -> Self {
        self.client = self.client.no_keepalive();
        self
    }

    /// The payload of keepalive pings.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.ping_payload(&b"hb"[..]);
    /// ```
    pub fn ping_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.client = self.client.ping_payload(payload);
        self
    }

    /// Reconnects with this backoff after a failed connect or a lost connection.
    /// Off by default. A connection closed by the user is never reconnected.
    ///
    /// On a [`Hub`](crate::Hub), the backoff waits on a hub thread's timer and
    /// the connect runs on the hub's connect pool (two threads, started at the
    /// first reconnect), so no thread per app sleeps or connects; callbacks
    /// come in the same order as off the hub. A failed first connect, which
    /// `start` returns as an error without reconnect, then goes to
    /// `on_error` and is retried.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.reconnect(wsapp::Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30)));
    /// ```
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// Whether a close started by the server is reconnected too (when reconnect is on).
    /// Defaults to `true`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.reconnect_on_server_close(false);
    /// ```
    pub fn reconnect_on_server_close(mut self, on: bool) -> Self {
        self.reconnect_on_server_close = on;
        self
    }

    /// How often `on_stats` is called. Defaults to never.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let app = app.stats_interval(std::time::Duration::from_secs(5));
    /// ```
    pub fn stats_interval(mut self, interval: Duration) -> Self {
        self.stats_interval = Some(interval);
        self
    }

    /// Runs text and binary messages on `n` worker threads (`wsapp-work-A-i`)
    /// with `on_message`, instead of the handler's `on_message` on the
    /// dispatcher. Messages with the same `key` go to the same worker, in wire
    /// order; different keys run in parallel. Each worker takes up to 64
    /// messages before the dispatcher waits for it, so a slow worker fills the
    /// inbox and its overflow policy applies. Pings, pongs and the other
    /// callbacks stay on the dispatcher; `on_close` comes after the workers
    /// have finished the connection's messages. A panic in a worker is
    /// reported to `on_error`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// // Per-symbol order, symbols in parallel: "BTC:42000" has key hash("BTC").
    /// let app = app.workers(
    ///     4,
    ///     |m| m.to_text().map_or(0, |t| t.bytes().take_while(|b| *b != b':').map(u64::from).sum()),
    ///     |_ws, msg| println!("{msg}"),
    /// );
    /// ```
    pub fn workers(
        mut self,
        n: usize,
        key: impl Fn(&Message) -> u64 + Send + Sync + 'static,
        on_message: impl Fn(&AppSender, Message) + Send + Sync + 'static,
    ) -> Self {
        self.workers = Some(Workers {
            n: n.max(1),
            key: Arc::new(key),
            handler: Arc::new(on_message),
        });
        self
    }

    /// A sender that follows reconnects; usable before `run_forever` starts.
    ///
    /// # Examples
    ///
    /// ```
    /// let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/"));
    /// let tx = app.sender();
    /// # let _ = tx;
    /// ```
    pub fn sender(&self) -> AppSender {
        self.sender.clone()
    }

    /// Runs the app in a background thread (`wsapp-disp-N`); returns its handle.
    ///
    /// On a [`Hub`](crate::Hub) (`Client::hub`), it connects on the caller
    /// and then runs the callbacks on the hub's dispatcher pool instead, with
    /// no thread of its own (see [`reconnect`](WebSocketApp::reconnect)).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for invalid settings (checked before the thread starts).
    /// On a hub, also the first connect's error when the app does not
    /// reconnect, and [`Error::Config`] for `workers` or `stats_interval`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://127.0.0.1:9001/")).start()?;
    /// app.sender().send_text("hi")?;
    /// app.close(1000, "done")?;
    /// app.join()?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn start(self) -> Result<AppHandle> {
        self.client.validate()?;
        if let Some(hub) = self.client.live_hub()? {
            return self.start_on_hub(&hub);
        }
        let sender = self.sender.clone();
        let id = self.id;
        let thread = std::thread::Builder::new()
            .name(format!("wsapp-disp-{id}"))
            .spawn(move || self.run_forever())
            .map_err(Error::Io)?;
        Ok(AppHandle {
            sender,
            thread: Some(thread),
            on_hub: None,
        })
    }

    /// Connects and dispatches events to the handler on this thread until the
    /// app is closed, or the connection ends and is not reconnected.
    ///
    /// # Errors
    ///
    /// `Ok(())` after [`AppSender::close`]. Otherwise the error that ended it:
    /// [`Error::Config`] for invalid settings, the last connect error when the
    /// attempts are used up, [`Error::Closed`] with the server's frame when the
    /// server closed and that is not reconnected, or the connection's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// wsapp::WebSocketApp::new(wsapp::Client::new("ws://127.0.0.1:9001/"))
    ///     .on_message(|ws, msg| { let _ = ws.send(msg); })
    ///     .run_forever()?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn run_forever(mut self) -> Result<()> {
        let result = self.run_until_end();
        self.sender.shared.ended.store(true, Ordering::Release);
        result
    }

    fn run_until_end(&mut self) -> Result<()> {
        self.client.validate()?;
        let mut attempt: u32 = 0;
        let mut opened_before = false;
        loop {
            if self.closed() {
                return Ok(());
            }
            let outcome = match self.client.connect() {
                Ok(ws) => {
                    let up = Instant::now();
                    let end = self.session(ws, opened_before);
                    opened_before = true;
                    if up.elapsed()
                        >= self
                            .reconnect
                            .as_ref()
                            .map_or(Duration::ZERO, |b| b.reset_after)
                    {
                        attempt = 0;
                    }
                    end
                }
                Err(e) => {
                    self.call("on_error", |h, s| h.on_error(s, &e));
                    e
                }
            };
            if self.closed() {
                return Ok(());
            }
            let server_close = matches!(outcome, Error::Closed(_));
            let Some(backoff) = self.reconnect.clone() else {
                return Err(outcome);
            };
            if server_close && !self.reconnect_on_server_close {
                return Err(outcome);
            }
            attempt += 1;
            if backoff.max_attempts.is_some_and(|max| attempt > max) {
                return Err(outcome);
            }
            let delay = backoff.delay(attempt);
            log::debug!("reconnecting in {delay:?} (attempt {attempt})");
            self.sleep(delay);
        }
    }

    /// [`start`](WebSocketApp::start) on a hub: connects here, then runs
    /// the callbacks on the hub's dispatcher pool.
    fn start_on_hub(mut self, hub: &Arc<HubShared>) -> Result<AppHandle> {
        if self.workers.is_some() || self.stats_interval.is_some() {
            return Err(Error::config(
                "an app on a hub does not run workers or report stats periodically \
                 yet: start it without a hub for those",
            ));
        }
        // The dispatcher takes from the inbox; a direct read would have it
        // wait on the socket, holding a pool thread.
        self.client = self.client.clone().direct_reads(false);
        // The first connect runs here, on the caller, as without a hub; an
        // app that reconnects reports a failure to `on_error` and backs off.
        let first = match self.client.connect() {
            Ok(ws) => Ok(ws),
            Err(e) if self.reconnect.is_some() => Err(e),
            Err(e) => return Err(e),
        };
        let sender = self.sender.clone();
        let done = Arc::new(HubAppDone::default());
        let task = Arc::new(HubApp {
            state: Mutex::new(Some(HubAppState {
                app: self,
                phase: Phase::Waiting,
                opened_before: false,
                attempt: 0,
                up: Instant::now(),
            })),
            // Until the first schedule below: hooks set meanwhile do not queue it.
            scheduled: AtomicBool::new(true),
            hub: Arc::downgrade(hub),
            done: done.clone(),
        });
        let weak = Arc::downgrade(&task);
        let _ = sender.shared.wake.set(Box::new(move || {
            if let Some(app) = weak.upgrade() {
                app.schedule();
            }
        }));
        {
            let mut state = task.state.lock().unwrap_or_else(|p| p.into_inner());
            let st = state.as_mut().expect("just set");
            match first {
                Ok(ws) => task.attach(st, ws),
                Err(e) => st.phase = Phase::Connected(Err(e)),
            }
        }
        task.scheduled.store(false, Ordering::SeqCst);
        task.schedule(); // on_open (or the first connect's on_error)
        Ok(AppHandle {
            sender,
            thread: None,
            on_hub: Some(done),
        })
    }

    fn closed(&self) -> bool {
        self.sender.shared.closed.load(Ordering::Acquire)
    }

    /// Sleeps up to `d`; `close()` cuts it short.
    fn sleep(&self, d: Duration) {
        let (lock, cv) = &self.sender.shared.sleep;
        let deadline = Instant::now() + d;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.closed() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            guard = cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Runs a callback, turning a panic into an `on_error` call.
    fn call(&mut self, name: &'static str, f: impl FnOnce(&mut H, &AppSender)) {
        let sender = &self.sender;
        let handler = &mut self.handler;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(handler, sender))) {
            let err = Error::Handler {
                callback: name,
                message: panic_message(&*panic),
            };
            log::debug!("{err}");
            if name == "on_error" {
                log::error!("wsapp: on_error panicked while reporting: {err}");
                return;
            }
            let handler = &mut self.handler;
            if catch_unwind(AssertUnwindSafe(|| handler.on_error(sender, &err))).is_err() {
                log::error!("wsapp: on_error panicked while reporting: {err}");
            }
        }
    }

    /// One connection's life: open, dispatch, close. Returns why it ended.
    fn session(&mut self, ws: crate::WebSocket, reopened: bool) -> Error {
        *self.sender.shared.current() = Some(ws.sender());
        if self.closed() {
            // close() raced with connect: it saw no connection to close.
            let _ = ws.sender().close(1000, "");
        }
        if reopened {
            self.call("on_reconnect", |h, s| h.on_reconnect(s));
        } else {
            self.call("on_open", |h, s| h.on_open(s));
        }
        let pool = match &self.workers {
            Some(w) => match Pool::start(w, &self.sender, self.id) {
                Ok(p) => Some(p),
                Err(e) => {
                    let _ = ws.sender().close(1011, "");
                    return e;
                }
            },
            None => None,
        };
        let mut next_stats = self.stats_interval.map(|i| Instant::now() + i);
        let end = if next_stats.is_none() && pool.is_none() {
            // The common case, kept to the bare loop: every message to its callback.
            loop {
                match ws.recv() {
                    Ok(msg) => self.dispatch(msg),
                    Err(e) => break e,
                }
            }
        } else {
            loop {
                let got = match next_stats {
                    Some(at) => ws.recv_deadline(at),
                    None => ws.recv().map(Some),
                };
                match got {
                    Ok(Some(msg)) => {
                        match &pool {
                            Some(p) if msg.is_text() || msg.is_binary() => {
                                p.dispatch(msg);
                                for err in p.panics.try_iter() {
                                    self.call("on_error", |h, s| h.on_error(s, &err));
                                }
                            }
                            _ => self.dispatch(msg),
                        }
                        // A busy connection never lets the deadline pass idle.
                        if next_stats.is_some_and(|at| Instant::now() >= at) {
                            let stats = ws.stats();
                            self.call("on_stats", |h, s| h.on_stats(s, &stats));
                            next_stats = self.stats_interval.map(|i| Instant::now() + i);
                        }
                    }
                    Ok(None) => {
                        let stats = ws.stats();
                        self.call("on_stats", |h, s| h.on_stats(s, &stats));
                        next_stats = self.stats_interval.map(|i| Instant::now() + i);
                    }
                    Err(e) => break e,
                }
            }
        };
        if let Some(p) = pool {
            for err in p.finish() {
                self.call("on_error", |h, s| h.on_error(s, &err));
            }
        }
        self.session_end(ws, &end);
        end
    }

    /// The end of a session: the last stats, then `on_close` (and
    /// `on_error` for an end other than a close handshake).
    fn session_end(&mut self, ws: crate::WebSocket, end: &Error) {
        *self
            .sender
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = ws.stats();
        *self.sender.shared.current() = None;
        match end {
            Error::Closed(frame) => {
                let frame = frame.clone();
                self.call("on_close", |h, s| h.on_close(s, frame));
            }
            e => {
                // After the user's close, a peer that does not answer is no news.
                if !self.closed() {
                    self.call("on_error", |h, s| h.on_error(s, e));
                }
                self.call("on_close", |h, s| h.on_close(s, None));
            }
        }
        drop(ws);
    }

    fn dispatch(&mut self, msg: Message) {
        match msg {
            Message::Ping(p) => self.call("on_ping", |h, s| h.on_ping(s, p)),
            Message::Pong(p) => self.call("on_pong", |h, s| h.on_pong(s, p)),
            Message::Close(_) | Message::Frame(_) => {}
            msg => self.call("on_message", |h, s| h.on_message(s, msg)),
        }
    }
}

/// A running app started with [`WebSocketApp::start`].
///
/// Dropping the handle does not stop the app; call [`close`](AppHandle::close)
/// and [`join`](AppHandle::join).
///
/// # Examples
///
/// ```no_run
/// let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://127.0.0.1:9001/")).start()?;
/// println!("{}", app.stats());
/// app.close(1000, "bye")?;
/// app.join()?;
/// # Ok::<(), wsapp::Error>(())
/// ```
#[derive(Debug)]
pub struct AppHandle {
    sender: AppSender,
    thread: Option<JoinHandle<Result<()>>>,
    /// On a hub: the app's end, set by the dispatcher that ran its last callback.
    on_hub: Option<Arc<HubAppDone>>,
}

impl AppHandle {
    /// A sender that follows reconnects.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/")).start()?;
    /// app.sender().send_text("hi")?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn sender(&self) -> AppSender {
        self.sender.clone()
    }

    /// Stats of the current (or last) connection.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/")).start()?;
    /// println!("{}", app.stats());
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.sender.stats()
    }

    /// Closes for good. See [`AppSender::close`].
    ///
    /// # Errors
    ///
    /// As [`AppSender::close`]: [`Error::Config`] for a code or reason that
    /// may not be sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/")).start()?;
    /// app.close(1000, "bye")?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.sender.close(code, reason)
    }

    /// Waits for the app to end; returns what `run_forever` returned.
    ///
    /// # Errors
    ///
    /// As [`WebSocketApp::run_forever`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let app = wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/")).start()?;
    /// app.close(1000, "")?;
    /// app.join()?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn join(mut self) -> Result<()> {
        if let Some(done) = self.on_hub.take() {
            return done.wait();
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Handler {
                callback: "dispatcher",
                message: "the dispatcher thread panicked".into(),
            }),
            None => Ok(()),
        }
    }
}

/// Callbacks handled per turn of a dispatcher before it goes to the next
/// app: one busy connection does not keep the others' callbacks waiting
/// longer than this many of its own.
const DISPATCH_TURN: usize = 64;

/// An app running on a hub's dispatcher pool.
struct HubApp<H: Handler> {
    /// `None` once the app has ended. The lock is held through a turn of
    /// callbacks: one app's callbacks never run at the same time.
    state: Mutex<Option<HubAppState<H>>>,
    /// Queued on the pool, or running: a wake then only makes sure of another turn.
    scheduled: AtomicBool,
    hub: std::sync::Weak<HubShared>,
    done: Arc<HubAppDone>,
}

struct HubAppState<H: Handler> {
    app: WebSocketApp<H>,
    phase: Phase,
    /// A connection has opened before: the next one is a reconnect.
    opened_before: bool,
    /// Reconnect attempts in a row (as `run_forever` counts them).
    attempt: u32,
    /// When the current connection opened, for [`Backoff::reset_after`].
    up: Instant,
}

/// Where an app on a hub stands.
enum Phase {
    /// A connection; `greeted` once `on_open` or `on_reconnect` has run.
    Live { ws: crate::WebSocket, greeted: bool },
    /// A connect attempt's result, for the dispatcher to take up.
    Connected(Result<crate::WebSocket>),
    /// Between connections: the backoff timer, or the connect pool, has it.
    Waiting,
}

/// The end of an app on a hub, for [`AppHandle::join`].
#[derive(Debug, Default)]
struct HubAppDone {
    result: Mutex<Option<Result<()>>>,
    cv: Condvar,
}

impl HubAppDone {
    fn set(&self, r: Result<()>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.cv.notify_all();
    }

    fn wait(&self) -> Result<()> {
        let mut r = self.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = r.take() {
                return r;
            }
            r = self.cv.wait(r).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl<H: Handler + 'static> HubApp<H> {
    fn schedule(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let queued = self
            .hub
            .upgrade()
            .is_some_and(|hub| hub.dispatch.send(self.clone()));
        if !queued {
            // The hub is gone: the app ends where it stands.
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(mut st) = state.take() {
                match std::mem::replace(&mut st.phase, Phase::Waiting) {
                    Phase::Live { ws, .. } => st.app.session_end(ws, &Error::Closed(None)),
                    Phase::Connected(Ok(ws)) => {
                        let _ = ws.sender().close(1001, "");
                    }
                    _ => {}
                }
                st.app.sender.shared.ended.store(true, Ordering::Release);
                self.done.set(Ok(()));
            }
        }
    }

    /// Makes `ws` the app's connection. Called with the state locked and the
    /// app scheduled (so that the ready hook, set here, only marks news).
    fn attach(self: &Arc<Self>, st: &mut HubAppState<H>, ws: crate::WebSocket) {
        *st.app.sender.shared.current() = Some(ws.sender());
        if st.app.closed() {
            // close() raced with connect: it saw no connection to close.
            let _ = ws.sender().close(1000, "");
        }
        // The connection's hook keeps the app alive while the connection
        // lives (as the thread of `start` does without a hub); the app lets
        // go of the connection when it ends, which ends the cycle.
        let hook = self.clone();
        ws.on_ready(Box::new(move || hook.schedule()));
        st.up = Instant::now();
        st.phase = Phase::Live { ws, greeted: false };
    }

    /// After a connection or a connect attempt ended with `outcome`: sets
    /// the backoff timer for the next attempt, as `run_forever` would sleep,
    /// or hands back what the app ends with.
    fn backoff(self: &Arc<Self>, st: &mut HubAppState<H>, outcome: Error) -> Result<()> {
        if st.app.closed() {
            return Err(outcome);
        }
        let server_close = matches!(outcome, Error::Closed(_));
        let Some(backoff) = st.app.reconnect.clone() else {
            return Err(outcome);
        };
        if server_close && !st.app.reconnect_on_server_close {
            return Err(outcome);
        }
        st.attempt += 1;
        if backoff.max_attempts.is_some_and(|max| st.attempt > max) {
            return Err(outcome);
        }
        let delay = backoff.delay(st.attempt);
        log::debug!(
            "reconnecting in {delay:?} (attempt {}, on a hub)",
            st.attempt
        );
        let Some(hub) = self.hub.upgrade() else {
            return Err(outcome);
        };
        let app = self.clone();
        let timer = hub.io.after(delay, Box::new(move || app.connect_on_pool()));
        match timer {
            Ok(()) => {
                st.phase = Phase::Waiting;
                Ok(())
            }
            Err(_) => Err(outcome),
        }
    }

    /// The backoff timer is due (on a hub thread): hands the connect to the
    /// hub's connect pool.
    fn connect_on_pool(self: Arc<Self>) {
        // A hub that is ending runs its timers early: no connect then.
        let queued = self.hub.upgrade().is_some_and(|hub| {
            !hub.io.shutting_down() && hub.connect(Arc::new(HubConnect(self.clone())))
        });
        if !queued {
            self.connected(Err(Error::config(
                "the hub this app is on is shutting down: start the app on a live Hub",
            )));
        }
    }

    /// A connect attempt's result: for the dispatcher to take up.
    fn connected(self: &Arc<Self>, r: Result<crate::WebSocket>) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match (state.as_mut(), r) {
                (Some(st), r) => st.phase = Phase::Connected(r),
                // The app ended (closed) while the attempt ran.
                (None, Ok(ws)) => {
                    let _ = ws.sender().close(1000, "");
                }
                (None, Err(_)) => {}
            }
        }
        self.schedule();
    }

    /// The app ends: its last callbacks have run.
    fn end(&self, mut state: MutexGuard<'_, Option<HubAppState<H>>>, outcome: Error) {
        let Some(st) = state.take() else { return };
        let closed = st.app.closed();
        st.app.sender.shared.ended.store(true, Ordering::Release);
        drop(st);
        drop(state);
        self.done.set(if closed { Ok(()) } else { Err(outcome) });
    }
}

/// A reconnect's connect, on the hub's connect pool: blocking with its
/// deadlines, and no callbacks (the dispatcher runs those).
struct HubConnect<H: Handler>(Arc<HubApp<H>>);

impl<H: Handler + 'static> Task for HubConnect<H> {
    fn run(self: Arc<Self>) {
        let client = {
            let state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            match state.as_ref() {
                Some(st) if !st.app.closed() => st.app.client.clone(),
                // Closed meanwhile: the dispatcher ends the app.
                _ => return,
            }
        };
        self.0.connected(client.connect());
    }
}

impl<H: Handler + 'static> Task for HubApp<H> {
    fn run(self: Arc<Self>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(st) = state.as_mut() else {
            return;
        };
        let mut outcome = None;
        match std::mem::replace(&mut st.phase, Phase::Waiting) {
            Phase::Connected(Ok(ws)) => self.attach(st, ws),
            Phase::Connected(Err(e)) => {
                st.app.call("on_error", |h, s| h.on_error(s, &e));
                outcome = Some(e);
            }
            // Woken by close() during a backoff wait or a connect.
            Phase::Waiting if st.app.closed() => outcome = Some(Error::Closed(None)),
            phase => st.phase = phase,
        }
        if let Phase::Live { ws, greeted } = &mut st.phase {
            if !*greeted {
                *greeted = true;
                if st.opened_before {
                    st.app.call("on_reconnect", |h, s| h.on_reconnect(s));
                } else {
                    st.app.call("on_open", |h, s| h.on_open(s));
                }
                st.opened_before = true;
            }
            let mut end = None;
            for _ in 0..DISPATCH_TURN {
                match ws.try_recv() {
                    Ok(Some(msg)) => st.app.dispatch(msg),
                    Ok(None) => break,
                    Err(e) => {
                        end = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = end {
                if let Phase::Live { ws, .. } = std::mem::replace(&mut st.phase, Phase::Waiting) {
                    st.app.session_end(ws, &e);
                }
                let reset_after = st
                    .app
                    .reconnect
                    .as_ref()
                    .map_or(Duration::ZERO, |b| b.reset_after);
                if st.up.elapsed() >= reset_after {
                    st.attempt = 0;
                }
                outcome = Some(e);
            }
        }
        if let Some(e) = outcome {
            if let Err(e) = self.backoff(st, e) {
                self.end(state, e);
                return;
            }
        }
        // Unscheduled before the look: a message pushed after it schedules
        // the app itself, one pushed before it is seen here.
        self.scheduled.store(false, Ordering::SeqCst);
        let news = match &st.phase {
            Phase::Live { ws, .. } => ws.has_news(),
            Phase::Connected(_) => true,
            Phase::Waiting => st.app.closed(),
        };
        drop(state);
        if news {
            self.schedule();
        }
    }
}
