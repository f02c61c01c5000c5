//! Hub threads: a fixed set of threads (`wsapp-hub-N`), each with one
//! poller, that drive many connections' [`IoThread`]s, for [`Hub`](crate::Hub).
//!
//! Owns which connection is turned when. A hub thread holds its connections
//! by the poller's event key and turns a connection (one `IoThread::turn`,
//! the same state machine a dedicated thread runs) when its socket is ready,
//! when its waker was called, or when its timer is due. It owns nothing of a
//! connection's state: inbox, policy, pause, keepalive, close and stats stay
//! the connection's own, in its `Shared`. It never runs user code and never
//! connects: only established connections are handed to it.
//!
//! - **Waking.** A connection's waker (a sender, a resuming inbox, a consumer
//!   handing the watch back) puts its key on the thread's [`Ready`] list,
//!   once until it is turned (`Shared::queued`), and notifies the poller.
//! - **Timers.** One heap per thread of (instant, key). A connection keeps
//!   one live entry, its earliest; an entry that is no longer the earliest is
//!   skipped when it comes up (a later deadline leaves the earlier entry in
//!   place: one turn too many, never one too few).
//! - **Fairness.** A turn reads at most `READ_TURN` messages (and the inbox's
//!   bounds): a flooded connection that has more is turned again after every
//!   other ready connection has had its turn, never in a loop of its own.
//! - **Pausing.** A connection whose inbox is full stops polling its own
//!   socket (level-triggered interest is dropped), so it costs the thread
//!   nothing until its waker says the inbox has room.
//! - **Other timers.** [`HubIo::after`] runs a short closure on a hub
//!   thread when its instant comes (an app's reconnect backoff: the closure
//!   only hands the connect to the hub's connect pool). The closures share
//!   the thread's wait with the connections' timers, in a heap of their own;
//!   when the thread ends, the ones still waiting run at once, so that what
//!   waits on them learns the hub is gone.
//! - **Ending.** The end is in steps (`IoThread::begin_finish`,
//!   `settle_step`, `end_finish`); the waits of the settling step are the
//!   thread's timers, so a connection that owes the peer a close code never
//!   stalls the others.
//!
//! Why not one thread per core with work stealing: a connection's `IoThread`
//! keeps per-connection state that a turn mutates, and stealing it would need
//! a lock per turn; connections are spread over the threads when they arrive
//! (to the one with the fewest), which is enough when connections are alike.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polling::{Events, Poller};
use tungstenite::protocol::frame::coding::CloseCode;

use super::io_thread::{IoThread, Settling};
use super::{register, Shared};
use crate::error::{Error, Result};
use crate::stats::Stats;
use crate::{CloseFrame, Utf8Bytes};

/// Connections a hub thread has been woken for and not yet turned.
#[derive(Default)]
pub(super) struct Ready {
    keys: Mutex<Vec<usize>>,
}

impl Ready {
    pub(super) fn push(&self, key: usize) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key);
    }

    fn take_into(&self, into: &mut Vec<usize>) {
        into.append(&mut self.keys.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// What other threads share with one hub thread.
pub(super) struct Lane {
    poller: Arc<Poller>,
    ready: Arc<Ready>,
    /// Connections handed over and not yet taken in; `None` once the thread has ended.
    adopt: Mutex<Option<Vec<IoThread>>>,
    next_key: AtomicUsize,
    /// Live connections, for the hub's stats and its shutdown.
    live: Mutex<HashMap<usize, Arc<Shared>>>,
    /// Connections handed over and not yet ended (for placing new ones).
    load: AtomicUsize,
    shutdown: AtomicBool,
    /// Closures handed over by [`HubIo::after`] and not yet taken in; `None`
    /// once the thread has ended.
    timed: Mutex<Option<Vec<(Instant, Timed)>>>,
}

/// A closure that runs on a hub thread when its timer is due: short, never
/// blocking, never user code.
pub(crate) type Timed = Box<dyn FnOnce() + Send>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lane {
    pub(super) fn poller(&self) -> Arc<Poller> {
        self.poller.clone()
    }

    pub(super) fn ready(&self) -> Arc<Ready> {
        self.ready.clone()
    }

    pub(super) fn next_key(&self) -> usize {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands an established connection to this thread.
    pub(super) fn adopt(&self, mut io: IoThread) {
        let mut adopt = lock(&self.adopt);
        match adopt.as_mut() {
            Some(list) => {
                list.push(io);
                drop(adopt);
                self.load.fetch_add(1, Ordering::Relaxed);
                let _ = self.poller.notify();
            }
            None => {
                // The hub ended between this connection's placement and its
                // hand-over: close it here with 1001, as the hub thread
                // closed the others (the turns end it by the close timeout).
                drop(adopt);
                io.shared().request_close(Some(away()));
                let until = Instant::now() + LATE_CLOSE_LIMIT;
                let ended = loop {
                    match io.hub_turn() {
                        Err(ended) => break ended,
                        Ok(_) if Instant::now() >= until => {
                            break io.end_with(Error::Closed(Some(away())))
                        }
                        Ok(wait) => {
                            std::thread::sleep(wait.unwrap_or(LATE_CLOSE_TICK).min(LATE_CLOSE_TICK))
                        }
                    }
                };
                if let Some(mut settling) = io.begin_finish(ended) {
                    while let Some(wait) = io.settle_step(&mut settling) {
                        std::thread::sleep(wait);
                    }
                }
                io.end_finish();
            }
        }
    }
}

/// A connection handed to a hub that has just ended is closed on the
/// caller's thread: it polls no socket, so it looks for the peer's answer
/// this often.
const LATE_CLOSE_TICK: Duration = Duration::from_millis(2);
/// A backstop over that close, should a turn never end it (the close
/// timeout, 5 s by default, ends it first).
const LATE_CLOSE_LIMIT: Duration = Duration::from_secs(30);

/// The close frame a hub that goes away sends.
fn away() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Away,
        reason: Utf8Bytes::from(""),
    }
}

/// The hub's I/O threads.
pub(crate) struct HubIo {
    lanes: Vec<Arc<Lane>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for HubIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubIo")
            .field("threads", &self.lanes.len())
            .finish()
    }
}

/// A snapshot of the hub's I/O side, summed over its connections.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HubIoStats {
    pub(crate) connections: usize,
    pub(crate) io_threads: usize,
    pub(crate) paused: usize,
    pub(crate) queued: usize,
    pub(crate) queued_bytes: usize,
    pub(crate) outbox_bytes: usize,
}

static NEXT_HUB_THREAD: AtomicUsize = AtomicUsize::new(1);

impl HubIo {
    /// Starts `threads` hub threads (at least one).
    pub(crate) fn start(threads: usize) -> Result<HubIo> {
        let hub = HubIo {
            lanes: Vec::new(),
            threads: Mutex::new(Vec::new()),
        };
        let mut hub = hub;
        for _ in 0..threads.max(1) {
            let lane = Arc::new(Lane {
                poller: Arc::new(Poller::new().map_err(Error::Io)?),
                ready: Arc::default(),
                adopt: Mutex::new(Some(Vec::new())),
                next_key: AtomicUsize::new(1),
                live: Mutex::default(),
                load: AtomicUsize::new(0),
                shutdown: AtomicBool::new(false),
                timed: Mutex::new(Some(Vec::new())),
            });
            let id = NEXT_HUB_THREAD.fetch_add(1, Ordering::Relaxed);
            let worker = HubThread {
                lane: lane.clone(),
                slots: HashMap::new(),
                timers: BinaryHeap::new(),
                turn: Vec::new(),
                again: Vec::new(),
                closing_all: false,
                timed: BinaryHeap::new(),
                timed_fns: HashMap::new(),
                next_timed: 0,
            };
            let thread = std::thread::Builder::new()
                .name(format!("wsapp-hub-{id}"))
                .spawn(move || worker.run())
                .map_err(Error::Io)?;
            hub.lanes.push(lane);
            lock(&hub.threads).push(thread);
        }
        Ok(hub)
    }

    /// The thread a new connection goes to: the one with the fewest.
    pub(super) fn lane(&self) -> Result<Arc<Lane>> {
        let lane = self
            .lanes
            .iter()
            .min_by_key(|l| l.load.load(Ordering::Relaxed))
            .expect("a hub has at least one thread");
        if lane.shutdown.load(Ordering::Acquire) {
            return Err(Error::config(
                "the hub this client is on is shutting down: put the client on a live Hub",
            ));
        }
        Ok(lane.clone())
    }

    /// Runs `f` on a hub thread after `delay` (the thread with the fewest
    /// connections). Hands `f` back if the hub is shutting down.
    pub(crate) fn after(&self, delay: Duration, f: Timed) -> std::result::Result<(), Timed> {
        let Ok(lane) = self.lane() else {
            return Err(f);
        };
        let mut timed = lock(&lane.timed);
        match timed.as_mut() {
            Some(list) => {
                list.push((Instant::now() + delay, f));
                drop(timed);
                let _ = lane.poller.notify();
                Ok(())
            }
            None => Err(f),
        }
    }

    /// Whether the hub has begun to shut down.
    pub(crate) fn shutting_down(&self) -> bool {
        self.lanes
            .iter()
            .any(|l| l.shutdown.load(Ordering::Acquire))
    }

    pub(crate) fn threads(&self) -> usize {
        self.lanes.len()
    }

    pub(crate) fn stats(&self) -> HubIoStats {
        let mut hs = HubIoStats {
            io_threads: self.lanes.len(),
            ..HubIoStats::default()
        };
        for lane in &self.lanes {
            // Handed over and not ended: taken in or about to be.
            hs.connections += lane.load.load(Ordering::Relaxed);
            let live: Vec<Arc<Shared>> = lock(&lane.live).values().cloned().collect();
            for sh in live {
                let mut s = Stats::default();
                sh.inbox.fill(&mut s);
                hs.queued += s.queued;
                hs.queued_bytes += s.queued_bytes;
                hs.outbox_bytes += sh.outbox.bytes();
                if sh.lock_io().reading.keepalive_suspended() {
                    hs.paused += 1;
                }
            }
        }
        hs
    }

    /// Closes every live connection with 1001 (going away) and joins the
    /// threads; each close is bounded by its connection's close timeout.
    pub(crate) fn shutdown(&self) {
        for lane in &self.lanes {
            lane.shutdown.store(true, Ordering::Release);
            let _ = lane.poller.notify();
        }
        for t in lock(&self.threads).drain(..) {
            // As the dispatcher pool's: never join the thread we run on.
            if t.thread().id() == std::thread::current().id() {
                continue;
            }
            if t.join().is_err() {
                log::error!("a wsapp hub thread panicked");
            }
        }
    }
}

impl Drop for HubIo {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One connection on a hub thread.
struct Slot {
    io: IoThread,
    /// The instant of this connection's live timer entry.
    due: Option<Instant>,
    /// The connection is ending and owes the peer a close code.
    settling: Option<Settling>,
}

/// What a turn asks for next.
enum Next {
    /// Turn again after this long at the latest (`None`: on readiness or a wake).
    Wait(Option<Duration>),
    Done,
}

struct HubThread {
    lane: Arc<Lane>,
    slots: HashMap<usize, Slot>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Keys to turn this round.
    turn: Vec<usize>,
    /// Keys whose turn stopped with work left: turned next round.
    again: Vec<usize>,
    closing_all: bool,
    /// [`HubIo::after`]'s closures by instant, then by arrival.
    timed: BinaryHeap<Reverse<(Instant, u64)>>,
    timed_fns: HashMap<u64, Timed>,
    next_timed: u64,
}

impl HubThread {
    fn run(mut self) {
        let mut events = Events::new();
        loop {
            self.take_in();
            if !self.closing_all && self.lane.shutdown.load(Ordering::Acquire) {
                self.closing_all = true;
                for slot in self.slots.values() {
                    slot.io.shared().request_close(Some(away()));
                }
            }
            if self.closing_all && self.slots.is_empty() {
                break;
            }
            let timeout = if !self.turn.is_empty() || !self.again.is_empty() {
                Some(Duration::ZERO)
            } else {
                let now = Instant::now();
                let conn = self.timers.peek().map(|Reverse((at, _))| *at);
                let timed = self.timed.peek().map(|Reverse((at, _))| *at);
                conn.into_iter()
                    .chain(timed)
                    .min()
                    .map(|at| at.saturating_duration_since(now))
            };
            events.clear();
            if let Err(e) = self.lane.poller.wait(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("wsapp hub thread: waiting on the poller failed: {e}");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            self.turn.extend(events.iter().map(|ev| ev.key));
            self.lane.ready.take_into(&mut self.turn);
            self.turn.append(&mut self.again);
            let now = Instant::now();
            while let Some(&Reverse((at, key))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                if let Some(slot) = self.slots.get_mut(&key) {
                    if slot.due == Some(at) {
                        slot.due = None;
                        self.turn.push(key);
                    }
                }
            }
            while let Some(&Reverse((at, id))) = self.timed.peek() {
                if at > now {
                    break;
                }
                self.timed.pop();
                if let Some(f) = self.timed_fns.remove(&id) {
                    f();
                }
            }
            self.turn.sort_unstable();
            self.turn.dedup();
            let turn = std::mem::take(&mut self.turn);
            for &key in &turn {
                self.turn_one(key);
            }
            self.turn = turn;
            self.turn.clear();
        }
        // Connections handed over from now on are ended by `Lane::adopt`.
        let late = lock(&self.lane.adopt).take().unwrap_or_default();
        for io in late {
            self.lane.adopt(io);
        }
        // Closures still waiting run now: the hub is gone, and they say so.
        let late = lock(&self.lane.timed).take().unwrap_or_default();
        let mut waiting: Vec<(Instant, u64)> =
            self.timed.drain().map(|Reverse(entry)| entry).collect();
        waiting.sort_unstable();
        for (_, id) in waiting {
            if let Some(f) = self.timed_fns.remove(&id) {
                f();
            }
        }
        for (_, f) in late {
            f();
        }
    }

    /// Takes in the connections (and the timed closures) handed over since
    /// the last round.
    fn take_in(&mut self) {
        let timed = lock(&self.lane.timed).as_mut().map(std::mem::take);
        for (at, f) in timed.unwrap_or_default() {
            let id = self.next_timed;
            self.next_timed += 1;
            self.timed.push(Reverse((at, id)));
            self.timed_fns.insert(id, f);
        }
        let new = match lock(&self.lane.adopt).as_mut() {
            Some(list) => std::mem::take(list),
            None => return,
        };
        for mut io in new {
            let sh = io.shared().clone();
            let key = sh.key;
            let registered = {
                let guard = sh.lock_io();
                register(&self.lane.poller, guard.ws.get_ref().tcp(), key)
            };
            if let Err(e) = registered {
                let ended = io.end_with(Error::Io(e));
                let _ = io.begin_finish(ended);
                io.end_finish();
                self.lane.load.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            if self.closing_all {
                sh.request_close(Some(away()));
            }
            lock(&self.lane.live).insert(key, sh);
            self.slots.insert(
                key,
                Slot {
                    io,
                    due: None,
                    settling: None,
                },
            );
            self.turn.push(key);
        }
    }

    fn turn_one(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return; // ended already, or an event for a key since reused: none are
        };
        // Before the turn: a wake during it queues the connection again.
        slot.io.shared().queued.swap(false, Ordering::AcqRel);
        let next = match slot.settling.as_mut() {
            Some(s) => slot
                .io
                .settle_step(s)
                .map_or(Next::Done, |w| Next::Wait(Some(w))),
            None => match slot.io.hub_turn() {
                Ok(wait) => Next::Wait(wait),
                Err(ended) => match slot.io.begin_finish(ended) {
                    Some(mut s) => {
                        let next = slot
                            .io
                            .settle_step(&mut s)
                            .map_or(Next::Done, |w| Next::Wait(Some(w)));
                        slot.settling = Some(s);
                        next
                    }
                    None => Next::Done,
                },
            },
        };
        let sh = slot.io.shared();
        if let Some(ready) = sh.on_ready.get() {
            if !sh.inbox.is_empty() {
                ready();
            }
        }
        match next {
            Next::Wait(Some(Duration::ZERO)) => self.again.push(key),
            Next::Wait(Some(wait)) => {
                let at = Instant::now() + wait;
                if slot.due.is_none_or(|due| at < due) {
                    slot.due = Some(at);
                    self.timers.push(Reverse((at, key)));
                }
            }
            Next::Wait(None) => {}
            Next::Done => {
                if let Some(mut slot) = self.slots.remove(&key) {
                    slot.io.end_finish();
                    if let Some(ready) = slot.io.shared().on_ready.get() {
                        ready();
                    }
                }
                lock(&self.lane.live).remove(&key);
                self.lane.load.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for HubThread {
    fn drop(&mut self) {
        // Only on a panic of the loop itself (turns catch their own): end
        // what is left, so that no `WebSocket::close` waits forever.
        for (_, mut slot) in self.slots.drain() {
            let ended = slot.io.end_with(Error::Io(io::Error::other(
                "the wsapp hub thread driving this connection panicked",
            )));
            if slot.settling.is_none() {
                let _ = slot.io.begin_finish(ended);
            }
            slot.io.end_finish();
        }
        lock(&self.lane.live).clear();
    }
}
