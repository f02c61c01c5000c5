//! The dispatcher loop of [`WebSocketApp::run_forever`] (and of `start`
//! off a hub): connect, dispatch each event to the handler on this thread,
//! back off and reconnect; and the per-connection worker pool of
//! [`WebSocketApp::workers`].
//!
//! Owns the order of callbacks off a hub and panic isolation (`call`, used
//! by the hub app too). It takes messages from the connection's handle and
//! never touches a socket; the hub's state machine is `hub`'s.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{AppSender, Handler, KeyFn, WebSocketApp, Workers};
use crate::error::{panic_message, Error, Result};
use crate::Message;

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
    pub(super) fn start(w: &Workers, sender: &AppSender, app_id: usize) -> Result<Pool> {
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

impl<H: Handler + 'static> WebSocketApp<H> {
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

    pub(super) fn closed(&self) -> bool {
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
    pub(super) fn call(&mut self, name: &'static str, f: impl FnOnce(&mut H, &AppSender)) {
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
    pub(super) fn session_end(&mut self, ws: crate::WebSocket, end: &Error) {
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

    pub(super) fn dispatch(&mut self, msg: Message) {
        match msg {
            Message::Ping(p) => self.call("on_ping", |h, s| h.on_ping(s, p)),
            Message::Pong(p) => self.call("on_pong", |h, s| h.on_pong(s, p)),
            Message::Close(_) | Message::Frame(_) => {}
            msg => self.call("on_message", |h, s| h.on_message(s, msg)),
        }
    }
}
