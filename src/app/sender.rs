//! The app's handles: [`AppSender`], which follows reconnects, and
//! [`AppHandle`], for an app started in the background; and `AppShared`,
//! the state they share with the dispatcher (the current connection's
//! sender, the last stats, closed and ended).
//!
//! Owns what a send does between connections and what `close` wakes. It
//! never runs a callback and never touches a socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::hub::HubAppDone;
use crate::connection::Sender;
use crate::error::{Error, Result, TrySendError};
use crate::stats::Stats;
use crate::{Bytes, Message, Utf8Bytes};

/// State shared by the app's dispatcher and its [`AppSender`]s.
#[derive(Default)]
pub(super) struct AppShared {
    pub(super) current: Mutex<Option<Sender>>,
    pub(super) last_stats: Mutex<Stats>,
    pub(super) closed: AtomicBool,
    /// Set when `run_forever` has returned: sends fail with `AppEnded`.
    pub(super) ended: AtomicBool,
    /// Wakes a backoff sleep when the user closes.
    pub(super) sleep: (Mutex<()>, Condvar),
    /// On a hub: schedules the app when the user closes (ending a backoff wait).
    pub(super) wake: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl AppShared {
    pub(super) fn current(&self) -> MutexGuard<'_, Option<Sender>> {
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
    pub(super) shared: Arc<AppShared>,
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
/// A running app started with [`WebSocketApp::start`](crate::WebSocketApp::start).
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
    pub(super) sender: AppSender,
    pub(super) thread: Option<JoinHandle<Result<()>>>,
    /// On a hub: the app's end, set by the dispatcher that ran its last callback.
    pub(super) on_hub: Option<Arc<HubAppDone>>,
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
    /// As [`WebSocketApp::run_forever`](crate::WebSocketApp::run_forever).
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
