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
//!
//! The files: this one holds the builder ([`WebSocketApp`] and its
//! settings, [`Backoff`]) and `start`; `handler` the [`Handler`] trait and
//! the closures' [`Callbacks`]; `sender` the handles ([`AppSender`],
//! [`AppHandle`]) and the state they share with the dispatcher; `run` the
//! dispatcher loop of `run_forever` and the worker pool; `hub` the app on
//! a hub's dispatcher pool.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::stats::Stats;
use crate::{Bytes, CloseFrame, Message};

mod handler;
mod hub;
mod run;
mod sender;

pub use handler::{Callbacks, Handler};
pub use sender::{AppHandle, AppSender};

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
    /// On a [`Hub`](crate::Hub), a hub thread's timer marks it due and a
    /// dispatcher calls it, under the app's lock like every other callback
    /// (between two batches of messages, so a busy connection still gets it
    /// on time); no thread waits for the interval.
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
    /// Not on a [`Hub`](crate::Hub) yet: [`start`](WebSocketApp::start) on
    /// one refuses an app with workers ([`Error::Config`]). The hub's
    /// dispatchers would wait for a full worker queue, holding a pool thread
    /// from the other apps; start such an app without a hub.
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
    /// reconnect, the error of a hub that is shutting down, and
    /// [`Error::Config`] for [`workers`](WebSocketApp::workers).
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
}
