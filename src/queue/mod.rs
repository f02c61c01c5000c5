//! Queue layer: the bounded inbox between the I/O thread and the consumer,
//! and its overflow policies.
//!
//! Owns [`Overflow`], the inbox's items, bounds, counters, pause state
//! (backpressure with hysteresis) and the end-of-stream marker. It never
//! touches the socket: when reading may resume it calls the waker it was given.
//!
//! Why a `Mutex<VecDeque>` and not a crossbeam channel: the policies remove
//! from the front (drop oldest), from the middle (priority) and replace in place
//! (conflation), which a channel cannot do. The producer takes the lock once per
//! batch of messages, and wakes the consumer only when it sleeps.
//!
//! A plain bounded queue: `push_batch` (the I/O thread), `try_pop` and
//! `pop_deadline` (consumers), with no calls back into `connection`. Whether
//! a consumer reads the socket itself when the inbox is empty is decided in
//! `connection` (`direct`, `reading`); the inbox only says whether its
//! policy allows it ([`Inbox::allows_direct`]).

mod policy;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::stats::{Drops, Stats, WaitHistogram};
use crate::Message;

pub use policy::Overflow;

pub(crate) type FilterFn = Arc<dyn Fn(&Message) -> bool + Send + Sync>;

/// A message on its way through the inbox, with what the policy needs.
#[derive(Debug)]
pub(crate) struct Item {
    msg: Message,
    size: usize,
    /// When it entered the inbox (set per batch, under the lock).
    at: Option<Instant>,
    prio: u8,
    key: Option<String>,
    seq: u64,
}

impl Item {
    pub(crate) fn size(&self) -> usize {
        self.size
    }
}

/// Payload length of a message.
pub(crate) fn payload_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(c) => c.as_ref().map_or(0, |c| c.reason.len() + 2),
        Message::Frame(f) => f.payload().len(),
    }
}

enum End {
    Open,
    /// Why the stream ended; every `recv` after the last message reports it.
    /// `bool`: a consumer has seen it.
    Ended(Error, bool),
}

struct State {
    items: VecDeque<Item>,
    bytes: usize,
    keys: HashMap<String, u64>,
    front_seq: u64,
    next_seq: u64,
    high_water: usize,
    received: u64,
    drops: Drops,
    paused: bool,
    paused_since: Option<Instant>,
    pause_count: u64,
    paused_total: Duration,
    waiting: usize,
    /// The producer has woken the waiting consumers and none has run since:
    /// waking them again would be a syscall that does nothing (std's
    /// `Condvar` does not count waiters), and a woken thread can take a
    /// while to get a CPU, over many batches.
    woken: bool,
    /// Messages and bytes the producer has pushed (queued, or dropped by the
    /// policy) since a consumer began to wait: what the wake-up thresholds
    /// count, so that a queue a policy keeps short (conflation, say) still
    /// wakes its consumer in a flood.
    since_park: (usize, usize),
    /// Wake-ups sent, for the tests of the rule above.
    #[cfg(test)]
    wakes: u64,
    end: End,
    abandoned: bool,
    /// Consumers' taken-ahead messages and bytes, as of the last snapshot.
    front: (usize, usize),
    /// No message in `items` has a lower priority than this. A bound, not
    /// the minimum: taking and evicting leave it as it was. It lets a
    /// priority inbox that is full of messages no lower than the incoming
    /// one shed it without scanning them all.
    prio_floor: u8,
}

impl State {
    /// A consumer is back from its wait (woken, or at its deadline): the
    /// next push that finds one waiting wakes it again.
    fn woke(&mut self) {
        self.waiting -= 1;
        self.woken = false;
    }
}

/// The consumers' end: messages taken from the shared queue a batch per lock,
/// handed out one by one without touching the producer's lock. They still
/// count as queued, but the policies no longer reach them.
#[derive(Default)]
struct Front {
    items: VecDeque<Item>,
    delivered: u64,
    wait: WaitHistogram,
}

/// In the middle of a read turn, a sleeping consumer is woken once this many
/// messages have been pushed since it began to wait (under `Block`, what
/// waits: it sleeps only on an empty inbox), or half the bound if that is
/// less (past it the reader would pause first), rather than at every batch of `connection`'s `BATCH`
/// (64). A wake-up is a futex call, and on a VM an interrupt to the other
/// CPU: in a 64 B flood's profile, ~1,800 of them took 20% of the client's
/// CPU, and the woken thread took about as long again to run, while the
/// reader filled the inbox (BENCHMARKS.md, session 6). This bounds the wait
/// for a large `Client::queue`. A turn's last push always wakes it, so this
/// adds latency only while a flood keeps the reader busy.
const WAKE_QUEUED: usize = 4096;

/// As `WAKE_QUEUED`, where a consumer may read the socket itself (`Block`
/// with direct reads): one batch of the reader's. Such a consumer sleeps
/// only after it has watched an empty socket (`connection::direct`), and
/// woken it reads for itself and the reader stands back; woken later, it
/// found a deeper inbox to drain while the reader kept reading ahead (at
/// 512, one run in eight of a 50,000-message flood had 18,832 read directly
/// against 39,696-49,496 in the others; `tests/core_direct.rs`).
const DIRECT_WAKE: usize = 64;

/// As `WAKE_QUEUED`, in bytes: a flood of larger messages wakes the
/// consumer sooner (at 4 KiB, every 256), while what it takes is still in
/// the caches. Waking at 4,096 x 4 KiB (16 MiB) cost 4 KiB floods a fifth
/// more CPU than at 1 MiB (BENCHMARKS.md, session 6).
const WAKE_BYTES: usize = 1 << 20;

/// One message in this many has its wait in the inbox timed: reading the
/// clock for every message costs about as much as the rest of a pop.
const WAIT_SAMPLE: u64 = 8;

/// Messages a consumer takes from the shared queue per lock, under the
/// policies that reach into the queue (`Block` and `DropNewest` take all).
const PREFETCH: usize = 32;

/// Slots the inbox allocates up front; it grows on demand past them. A
/// preallocation of the whole bound costs every idle connection its whole
/// queue in memory (about 1 MiB at the default 8,192 messages), which a hub of 10,000
/// connections cannot afford; growing is amortized and happens once.
const PREALLOC: usize = 64;

/// What consumers write with every message they take, on cache lines of
/// its own: the producer reads the inbox's settings with every message it
/// reads, and sharing a line with these cost it a cache miss each time.
#[derive(Default)]
struct ConsumerSide {
    /// Lock order: `front` before `state`.
    front: Mutex<Front>,
    front_len: AtomicUsize,
    front_bytes: AtomicUsize,
    /// Messages consumers have taken from the inbox, for the reader to see
    /// that they keep taking (written under the consumers' lock, read without it).
    taken: AtomicU64,
}

/// The bounded inbox. One producer (the I/O thread), any number of consumers.
pub(crate) struct Inbox {
    state: CachePadded<Mutex<State>>,
    side: CachePadded<ConsumerSide>,
    ready: Condvar,
    /// Mirrors for lock-free looks (`try_pop`, `len`) and for the producer's
    /// bound checks (the consumers' in `side`).
    shared_len: AtomicUsize,
    paused: AtomicBool,
    policy: Overflow,
    filter: Option<FilterFn>,
    /// Consumers may read the socket themselves when the inbox is empty.
    direct: bool,
    /// How long a consumer spins before it parks (`Client::busy_wait`).
    busy_wait: Duration,
    cap: usize,
    cap_bytes: usize,
    resume: Box<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("policy", &self.policy)
            .field("cap", &self.cap)
            .field("cap_bytes", &self.cap_bytes)
            .field("len", &self.len())
            .finish()
    }
}

impl Inbox {
    /// `resume` is called (outside the lock) when a paused reader may read again.
    pub(crate) fn new(
        cap: usize,
        cap_bytes: usize,
        policy: Overflow,
        filter: Option<FilterFn>,
        direct_reads: bool,
        busy_wait: Duration,
        resume: Box<dyn Fn() + Send + Sync>,
    ) -> Inbox {
        Inbox {
            state: CachePadded::new(Mutex::new(State {
                items: VecDeque::with_capacity(cap.min(PREALLOC)),
                bytes: 0,
                keys: HashMap::new(),
                front_seq: 0,
                next_seq: 0,
                high_water: 0,
                prio_floor: 0,
                received: 0,
                drops: Drops::default(),
                paused: false,
                paused_since: None,
                pause_count: 0,
                paused_total: Duration::ZERO,
                waiting: 0,
                woken: false,
                since_park: (0, 0),
                #[cfg(test)]
                wakes: 0,
                end: End::Open,
                abandoned: false,
                front: (0, 0),
            })),
            side: CachePadded::new(ConsumerSide::default()),
            ready: Condvar::new(),
            shared_len: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            direct: direct_reads && matches!(policy, Overflow::Block) && filter.is_none(),
            busy_wait,
            policy,
            filter,
            cap: cap.max(1),
            cap_bytes: cap_bytes.max(1),
            resume,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // User code never runs under these locks, so poisoning means a bug in
        // this module; the state is still consistent between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_front(&self) -> MutexGuard<'_, Front> {
        self.side.front.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages queued, including those a consumer has taken ahead.
    pub(crate) fn len(&self) -> usize {
        self.shared_len.load(Ordering::Acquire) + self.side.front_len.load(Ordering::Acquire)
    }

    /// Whether a consumer that finds the inbox empty may read the socket
    /// itself: only under `Block` without a filter, where nothing would be
    /// dropped or filtered had the I/O thread read the message instead.
    pub(crate) fn allows_direct(&self) -> bool {
        self.direct
    }

    /// Whether what is queued is always an unbroken run of the stream
    /// (`Block` without a filter: nothing is dropped or filtered out).
    pub(crate) fn keeps_runs(&self) -> bool {
        matches!(self.policy, Overflow::Block) && self.filter.is_none()
    }

    /// How many messages consumers have taken so far.
    pub(crate) fn taken(&self) -> u64 {
        self.side.taken.load(Ordering::Relaxed)
    }

    /// Nothing is queued, not even taken ahead by a consumer. Exact when the
    /// producer cannot push (the caller holds the lock the producer pushes
    /// under); a consumer moves messages from the shared queue to its front
    /// before it lowers `shared_len`, so they are seen in one or the other.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared_len.load(Ordering::Acquire) == 0
            && self.side.front_len.load(Ordering::Acquire) == 0
    }

    /// Runs the user's filter and policy functions, outside the lock, and
    /// appends the message to `pending`. Returns its size, or `None` when
    /// the filter refused it.
    #[inline]
    pub(crate) fn classify_into(
        &self,
        msg: Message,
        pending: &mut VecDeque<Item>,
    ) -> Option<usize> {
        if let Some(filter) = &self.filter {
            if !filter(&msg) {
                return None;
            }
        }
        let (prio, key) = match &self.policy {
            Overflow::Priority(f) => (f(&msg), None),
            Overflow::Conflate(f) => (0, f(&msg)),
            _ => (0, None),
        };
        let size = payload_len(&msg);
        pending.push_back(Item {
            size,
            msg,
            at: None,
            prio,
            key,
            seq: 0,
        });
        Some(size)
    }

    /// Moves messages from `pending` into the inbox under the policy, in order.
    /// Returns `false` when the inbox is full under `Block` (or a blocking case of
    /// another policy): the rest stays in `pending` and the reader must pause
    /// until the resume waker fires.
    /// `more`: the reader is in the middle of a read turn and pushes again
    /// at once; a sleeping consumer is then woken only once `WAKE_QUEUED`
    /// messages wait (the last push of a turn always wakes it).
    pub(crate) fn push_batch(
        &self,
        pending: &mut VecDeque<Item>,
        filtered: u64,
        more: bool,
    ) -> bool {
        // Outside the lock: a consumer that finds the queue locked sleeps on
        // it, and waking it costs more than this whole batch.
        let now = Some(Instant::now());
        let mut batch_bytes = 0;
        let mut batch_floor = u8::MAX;
        for item in pending.iter_mut() {
            item.at = now;
            batch_bytes += item.size;
            batch_floor = batch_floor.min(item.prio);
        }
        let mut st = self.lock();
        self.snapshot_front(&mut st);
        st.drops.filtered += filtered;
        st.received += filtered;
        if st.abandoned {
            pending.clear();
            return true;
        }
        let mut all = true;
        let offered = pending.len();
        let mut offered_bytes = batch_bytes;
        let (len, bytes) = self.totals(&st);
        if st.paused {
            all = pending.is_empty();
            offered_bytes = 0;
        } else if len + pending.len() <= self.cap
            && bytes + batch_bytes <= self.cap_bytes
            && !matches!(self.policy, Overflow::Conflate(_))
        {
            // The whole batch fits: no policy has anything to decide (only
            // conflation looks at every message, full or not, and only it
            // needs the sequence numbers). Into an empty queue it goes whole.
            st.received += pending.len() as u64;
            st.bytes += batch_bytes;
            st.prio_floor = if st.items.is_empty() {
                batch_floor
            } else {
                st.prio_floor.min(batch_floor)
            };
            if st.items.is_empty() {
                std::mem::swap(&mut st.items, pending);
            } else {
                st.items.append(pending);
            }
            st.high_water = st.high_water.max(self.totals(&st).0);
        } else {
            while let Some(item) = pending.pop_front() {
                if let Err(item) = self.admit(&mut st, item) {
                    offered_bytes -= pending.iter().map(Item::size).sum::<usize>() + item.size;
                    pending.push_front(item);
                    st.paused = true;
                    self.paused.store(true, Ordering::Release);
                    st.paused_since = Some(Instant::now());
                    st.pause_count += 1;
                    all = false;
                    break;
                }
            }
        }
        self.shared_len.store(st.items.len(), Ordering::Release);
        st.since_park.0 += offered - pending.len();
        st.since_park.1 += offered_bytes;
        let wake = st.waiting > 0
            && !st.woken
            && !st.items.is_empty()
            && (!more
                || !all
                || st.since_park.0 >= self.wake_queued()
                || st.since_park.1 >= WAKE_BYTES);
        st.woken |= wake;
        #[cfg(test)]
        {
            st.wakes += u64::from(wake);
        }
        // Woken after the lock is let go, so the consumer does not wake only
        // to find it held and sleep again on the lock.
        drop(st);
        if wake {
            self.ready.notify_all();
        }
        all
    }

    /// In the middle of a read turn, how many pushed messages wake a
    /// sleeping consumer.
    fn wake_queued(&self) -> usize {
        if self.direct {
            DIRECT_WAKE
        } else {
            WAKE_QUEUED.min(self.cap / 2)
        }
    }

    /// Messages and bytes queued, including those a consumer has taken ahead.
    fn totals(&self, st: &State) -> (usize, usize) {
        (st.items.len() + st.front.0, st.bytes + st.front.1)
    }

    /// Reads what consumers hold ahead, once per batch: those counters change
    /// with every `recv`, and reading them per message would bounce their
    /// cache line between the threads. Between snapshots they only shrink
    /// (taking more happens under the state lock), so the bound stays safe.
    fn snapshot_front(&self, st: &mut State) {
        st.front = (
            self.side.front_len.load(Ordering::Acquire),
            self.side.front_bytes.load(Ordering::Acquire),
        );
    }

    fn take_front(&self, st: &mut State) -> Option<Item> {
        let item = st.items.pop_front()?;
        st.bytes -= item.size;
        st.front_seq = item.seq + 1;
        if let Some(key) = &item.key {
            if st.keys.get(key) == Some(&item.seq) {
                st.keys.remove(key);
            }
        }
        Some(item)
    }

    /// Takes the next message if one is queued. `Ok(None)`: none is.
    /// `Err`: the connection has ended and everything queued was delivered.
    ///
    /// The common case (a message in the consumers' front) is kept apart
    /// from the refill, so that it stays small where it is inlined.
    #[inline(always)]
    pub(crate) fn try_pop(&self) -> Result<Option<Message>> {
        match self.pop_front() {
            Some(msg) => Ok(Some(msg)),
            None => self.refill(),
        }
    }

    /// The next message of the consumers' front, if it holds one.
    #[inline(always)]
    fn pop_front(&self) -> Option<Message> {
        let mut front = self.lock_front();
        let item = front.items.pop_front()?;
        front.delivered += 1;
        self.side.taken.store(front.delivered, Ordering::Relaxed);
        if front.delivered % WAIT_SAMPLE == 0 {
            if let Some(at) = item.at {
                front.wait.record(at.elapsed());
            }
        }
        self.side
            .front_len
            .store(front.items.len(), Ordering::Release);
        // Only holders of the front lock write it: no read-modify-write needed.
        let bytes = self.side.front_bytes.load(Ordering::Relaxed) - item.size;
        self.side.front_bytes.store(bytes, Ordering::Release);
        drop(front);
        if self.paused.load(Ordering::Acquire) {
            self.maybe_resume();
        }
        Some(item.msg)
    }

    /// `try_pop` with the front empty: moves what the shared queue holds
    /// to the front, then takes from it; or reports the end.
    #[inline(never)]
    fn refill(&self) -> Result<Option<Message>> {
        loop {
            let mut front = self.lock_front();
            if !front.items.is_empty() {
                // Another consumer refilled it.
                drop(front);
                if let Some(msg) = self.pop_front() {
                    return Ok(Some(msg));
                }
                continue;
            }
            let mut st = self.lock();
            if st.items.is_empty() {
                drop(front);
                return match &mut st.end {
                    End::Open => Ok(None),
                    End::Ended(error, seen) => {
                        let first = !std::mem::replace(seen, true);
                        let error = error.duplicate();
                        drop(st);
                        if first {
                            // The I/O thread may be waiting for this (see `end_seen`).
                            (self.resume)();
                        }
                        Err(error)
                    }
                };
            }
            let mut bytes = 0;
            if matches!(self.policy, Overflow::Block | Overflow::DropNewest) {
                // These policies only count what is queued: take it all at once.
                std::mem::swap(&mut front.items, &mut st.items);
                bytes = std::mem::take(&mut st.bytes);
                st.front_seq = st.next_seq;
            } else {
                while front.items.len() < PREFETCH {
                    let Some(item) = self.take_front(&mut st) else {
                        break;
                    };
                    bytes += item.size;
                    front.items.push_back(item);
                }
            }
            let bytes = self.side.front_bytes.load(Ordering::Relaxed) + bytes;
            self.side.front_bytes.store(bytes, Ordering::Release);
            self.side
                .front_len
                .store(front.items.len(), Ordering::Release);
            self.shared_len.store(st.items.len(), Ordering::Release);
            drop(st);
            drop(front);
            if let Some(msg) = self.pop_front() {
                return Ok(Some(msg));
            }
        }
    }

    /// Takes the next message, waiting until `deadline` (`None`: forever):
    /// try, spin for `busy_wait` (none by default), park until the reader's
    /// next batch wakes it.
    /// `Ok(None)`: the deadline passed. `Err`: as [`try_pop`](Inbox::try_pop).
    #[inline(always)]
    pub(crate) fn pop_deadline(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
        match self.pop_front() {
            Some(msg) => Ok(Some(msg)),
            None => self.wait(deadline),
        }
    }

    /// `pop_deadline` with the front empty.
    #[inline(never)]
    fn wait(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
        let mut spin = Backoff::new(self.busy_wait, deadline);
        loop {
            if let Some(msg) = self.try_pop()? {
                return Ok(Some(msg));
            }
            if !self.busy_wait.is_zero() && spin.left().is_some() {
                spin.pause();
                continue;
            }
            let mut st = self.lock();
            if !st.items.is_empty() || matches!(st.end, End::Ended(..)) {
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Ok(None);
            }
            if st.waiting == 0 {
                st.since_park = (0, 0);
            }
            st.waiting += 1;
            st = match deadline {
                None => self.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    self.ready
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            st.woke();
        }
    }

    /// Lets a paused reader go once the inbox is down to half its bounds.
    fn maybe_resume(&self) {
        let mut st = self.lock();
        let len = st.items.len() + self.side.front_len.load(Ordering::Acquire);
        let bytes = st.bytes + self.side.front_bytes.load(Ordering::Acquire);
        if !(st.paused && len <= self.cap / 2 && bytes <= self.cap_bytes / 2) {
            return;
        }
        st.paused = false;
        self.paused.store(false, Ordering::Release);
        if let Some(since) = st.paused_since.take() {
            st.paused_total += since.elapsed();
        }
        drop(st);
        (self.resume)();
    }

    /// Whether a consumer has received the end: everything before it was handled.
    /// True at once when nobody will consume (abandoned).
    pub(crate) fn end_seen(&self) -> bool {
        let st = self.lock();
        st.abandoned || matches!(st.end, End::Ended(_, true))
    }

    /// Marks the end of the stream: `recv` returns `error` once everything queued
    /// (including `leftover`, the reader's unqueued batch) is delivered.
    pub(crate) fn finish(&self, leftover: &mut VecDeque<Item>, error: Error) {
        let mut st = self.lock();
        self.snapshot_front(&mut st);
        if !st.abandoned {
            // Reading has stopped, so the bound can give by one batch rather than lose it.
            let now = Some(Instant::now());
            for mut item in leftover.drain(..) {
                item.at = now;
                st.received += 1;
                st.bytes += item.size;
                item.seq = st.next_seq;
                st.next_seq += 1;
                st.prio_floor = st.prio_floor.min(item.prio);
                st.items.push_back(item);
            }
            st.high_water = st.high_water.max(self.totals(&st).0);
        }
        if let Some(since) = st.paused_since.take() {
            st.paused_total += since.elapsed();
        }
        st.paused = false;
        self.paused.store(false, Ordering::Release);
        st.end = End::Ended(error, false);
        self.shared_len.store(st.items.len(), Ordering::Release);
        self.ready.notify_all();
    }

    /// Nobody will read any more (the `WebSocket` was dropped): drop what is queued,
    /// accept and discard from now on, and let the reader run.
    pub(crate) fn abandon(&self) {
        let mut front = self.lock_front();
        front.items.clear();
        self.side.front_len.store(0, Ordering::Release);
        self.side.front_bytes.store(0, Ordering::Release);
        let mut st = self.lock();
        drop(front);
        st.abandoned = true;
        st.items.clear();
        st.bytes = 0;
        let was_paused = std::mem::replace(&mut st.paused, false);
        self.paused.store(false, Ordering::Release);
        self.shared_len.store(0, Ordering::Release);
        drop(st);
        if was_paused {
            (self.resume)();
        }
    }

    /// Whether the reader must stay paused.
    #[cfg(test)]
    pub(crate) fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Fills the inbox part of a snapshot.
    pub(crate) fn fill(&self, s: &mut Stats) {
        let front = self.lock_front();
        let st = self.lock();
        s.received = st.received;
        s.delivered = front.delivered;
        s.dropped = st.drops;
        s.queued = st.items.len() + front.items.len();
        s.queued_bytes = st.bytes + self.side.front_bytes.load(Ordering::Acquire);
        s.queue_high_water = st.high_water;
        s.queue_capacity = self.cap;
        s.queue_capacity_bytes = self.cap_bytes;
        s.paused = st.paused;
        s.pause_count = st.pause_count;
        s.paused_for = st.paused_total + st.paused_since.map_or(Duration::ZERO, |t| t.elapsed());
        s.wait_p50 = front.wait.quantile(0.5);
        s.wait_p99 = front.wait.quantile(0.99);
        s.wait_max = front.wait.max();
    }
}
