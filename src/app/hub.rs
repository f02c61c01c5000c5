//! An app on a hub: `start` on a [`Hub`](crate::Hub) connects on the
//! caller, then a state machine (`Phase`) turned by the hub's dispatcher
//! pool runs the callbacks, a hub timer waits out each backoff, and the
//! hub's connect pool runs each reconnect's connect. A `stats_interval` is
//! a hub timer per connection that marks `on_stats` due for the next turn.
//!
//! Owns the app's phases and its end on a hub (`AppHandle::join` waits on
//! `HubAppDone`). It never touches a socket and never connects on a hub
//! I/O thread or a dispatcher; the callbacks themselves and their panic
//! isolation are `run`'s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{AppHandle, Handler, WebSocketApp};
use crate::error::{Error, Result};
use crate::hub::{HubShared, Task};

impl<H: Handler + 'static> WebSocketApp<H> {
    /// [`start`](WebSocketApp::start) on a hub: connects here, then runs
    /// the callbacks on the hub's dispatcher pool.
    pub(super) fn start_on_hub(mut self, hub: &Arc<HubShared>) -> Result<AppHandle> {
        if self.workers.is_some() {
            return Err(Error::config(
                "an app on a hub does not run workers yet: start it without a hub \
                 (Client without .hub) for workers, or keep on_message short on the hub",
            ));
        }
        // The dispatcher takes from the inbox; a direct read would have it
        // wait on the socket, holding a pool thread.
        self.client = self.client.clone().direct_reads(false);
        // The first connect runs here, on the caller, as without a hub; an
        // app that reconnects reports a failure to `on_error` and backs off.
        let first = match self.client.connect() {
            Ok(ws) => Ok(ws),
            // A hub that is ending retries nothing: the caller hears it now.
            Err(e) if self.reconnect.is_some() && !hub.io.shutting_down() => Err(e),
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
            stats_session: AtomicU64::new(0),
            stats_due: AtomicBool::new(false),
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
    /// The connection whose stats timer is live (counted per attach): a
    /// timer of an earlier connection comes up stale and is dropped.
    stats_session: AtomicU64,
    /// The stats timer came up: `on_stats` is due on the next turn.
    stats_due: AtomicBool,
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
pub(super) struct HubAppDone {
    result: Mutex<Option<Result<()>>>,
    cv: Condvar,
}

impl HubAppDone {
    fn set(&self, r: Result<()>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.cv.notify_all();
    }

    pub(super) fn wait(&self) -> Result<()> {
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
            // The hub is gone (its dispatchers have stopped, after its I/O
            // threads closed every connection): the app ends where it
            // stands, and says why unless the user closed it.
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(mut st) = state.take() {
                let gone = hub_gone();
                let outcome = match std::mem::replace(&mut st.phase, Phase::Waiting) {
                    Phase::Live { ws, .. } => {
                        st.app.session_end(ws, &gone);
                        gone
                    }
                    Phase::Connected(Ok(ws)) => {
                        let _ = ws.sender().close(1001, "");
                        gone
                    }
                    Phase::Connected(Err(e)) => e,
                    Phase::Waiting => gone,
                };
                let closed = st.app.closed();
                st.app.sender.shared.ended.store(true, Ordering::Release);
                self.done.set(if closed { Ok(()) } else { Err(outcome) });
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
        let session = self.stats_session.fetch_add(1, Ordering::AcqRel) + 1;
        self.stats_due.store(false, Ordering::Release);
        self.arm_stats(st.app.stats_interval, session);
    }

    /// Sets the hub timer for the next `on_stats` of connection `session`,
    /// as `run_forever` keeps a deadline: no thread waits for it.
    fn arm_stats(self: &Arc<Self>, interval: Option<Duration>, session: u64) {
        let (Some(interval), Some(hub)) = (interval, self.hub.upgrade()) else {
            return;
        };
        let app = Arc::downgrade(self);
        let timer = hub.io.after(
            interval,
            Box::new(move || {
                let Some(app) = app.upgrade() else { return };
                if app.stats_session.load(Ordering::Acquire) == session {
                    app.stats_due.store(true, Ordering::Release);
                    app.schedule();
                }
            }),
        );
        // A hub that is ending takes no timer: its connections are closing.
        drop(timer);
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

/// Why an app ends when its hub went away under it.
fn hub_gone() -> Error {
    Error::config("the hub this app was on has shut down: start the app on a live Hub")
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
            if end.is_none() && self.stats_due.swap(false, Ordering::AcqRel) {
                let stats = ws.stats();
                st.app.call("on_stats", |h, s| h.on_stats(s, &stats));
                let session = self.stats_session.load(Ordering::Acquire);
                self.arm_stats(st.app.stats_interval, session);
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
            Phase::Live { ws, .. } => ws.has_news() || self.stats_due.load(Ordering::Acquire),
            Phase::Connected(_) => true,
            Phase::Waiting => st.app.closed(),
        };
        drop(state);
        if news {
            self.schedule();
        }
    }
}
