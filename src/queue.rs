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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::stats::{Drops, Stats, WaitHistogram};
use crate::Message;

type PriorityFn = Arc<dyn Fn(&Message) -> u8 + Send + Sync>;
type KeyFn = Arc<dyn Fn(&Message) -> Option<String> + Send + Sync>;
pub(crate) type FilterFn = Arc<dyn Fn(&Message) -> bool + Send + Sync>;

/// What the inbox does when a message arrives and it is full.
///
/// The inbox is full when it holds its bound in messages
/// ([`Client::queue`](crate::Client::queue)) or when the new message would take
/// it past its bound in bytes ([`Client::queue_bytes`](crate::Client::queue_bytes)).
/// Every drop is counted by reason in [`Stats::dropped`](crate::Stats::dropped).
///
/// # Examples
///
/// ```
/// use wsapp::{Message, Overflow};
/// let lossless = Overflow::Block; // the default
/// let trades_first = Overflow::priority(|m: &Message| {
///     if m.to_text().is_ok_and(|t| t.contains("trade")) { Overflow::TOP } else { 0 }
/// });
/// let latest_per_symbol = Overflow::conflate(|m: &Message| {
///     m.to_text().ok().and_then(|t| t.split(':').next().map(str::to_string))
/// });
/// # let _ = (lossless, trades_first, latest_per_symbol);
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Lossless: stop reading the socket until the inbox drains to half its bound.
    /// The kernel buffer fills, the TCP window closes and the server slows down.
    #[default]
    Block,
    /// Drop the incoming message (counted as `dropped.newest`).
    DropNewest,
    /// Drop the oldest queued message to make room (counted as `dropped.oldest`).
    DropOldest,
    /// Each message gets a priority from the function; made with [`Overflow::priority`].
    Priority(#[doc(hidden)] PriorityFn),
    /// Each message may get a key from the function; made with [`Overflow::conflate`].
    Conflate(#[doc(hidden)] KeyFn),
}

impl Overflow {
    /// The top priority: a message with it is never dropped.
    pub const TOP: u8 = u8::MAX;

    /// Priority shedding. When the inbox is full, the oldest queued message of the
    /// lowest priority below the incoming one's is dropped to make room; if nothing
    /// queued is below it, the incoming message is dropped, unless it has priority
    /// [`Overflow::TOP`]: then the reader blocks (backpressure) rather than drop it.
    /// All these drops count as `dropped.priority`.
    ///
    /// The function runs on the I/O thread for every message: keep it cheap.
    ///
    /// # Examples
    ///
    /// ```
    /// use wsapp::{Message, Overflow};
    /// let policy = Overflow::priority(|m: &Message| if m.is_binary() { Overflow::TOP } else { 1 });
    /// # let _ = policy;
    /// ```
    pub fn priority(f: impl Fn(&Message) -> u8 + Send + Sync + 'static) -> Overflow {
        Overflow::Priority(Arc::new(f))
    }

    /// Conflation by key: a message whose key matches a queued message replaces it
    /// in place (the latest value wins; counted as `dropped.conflated`), whether or
    /// not the inbox is full. Order holds per key; across keys a replaced value
    /// keeps its old place, so it can come out ahead of older messages of other
    /// keys. A message without a key, or with a new key while the
    /// inbox is full, waits: the reader blocks (backpressure).
    ///
    /// The function runs on the I/O thread for every message: keep it cheap.
    ///
    /// # Examples
    ///
    /// ```
    /// use wsapp::{Message, Overflow};
    /// // "BTC:42000" -> key "BTC"
    /// let policy = Overflow::conflate(|m: &Message| {
    ///     m.to_text().ok()?.split_once(':').map(|(k, _)| k.to_string())
    /// });
    /// # let _ = policy;
    /// ```
    pub fn conflate(f: impl Fn(&Message) -> Option<String> + Send + Sync + 'static) -> Overflow {
        Overflow::Conflate(Arc::new(f))
    }

    fn name(&self) -> &'static str {
        match self {
            Overflow::Block => "Block",
            Overflow::DropNewest => "DropNewest",
            Overflow::DropOldest => "DropOldest",
            Overflow::Priority(_) => "Priority",
            Overflow::Conflate(_) => "Conflate",
        }
    }
}

impl fmt::Debug for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
    end: End,
    abandoned: bool,
    /// Consumers' taken-ahead messages and bytes, as of the last snapshot.
    front: (usize, usize),
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
/// messages wait rather than at every batch of `connection`'s `BATCH` (64):
/// a wake-up costs the reader more than reading a batch, and a consumer woken
/// for four batches sleeps a quarter as often. A turn's last push always
/// wakes it, so this adds latency only while a flood keeps the reader busy.
const WAKE_QUEUED: usize = 256;

/// One message in this many has its wait in the inbox timed: reading the
/// clock for every message costs about as much as the rest of a pop.
const WAIT_SAMPLE: u64 = 8;

/// Messages a consumer takes from the shared queue per lock, under the
/// policies that reach into the queue (`Block` and `DropNewest` take all).
const PREFETCH: usize = 32;

/// Slots the inbox allocates up front; it grows on demand past them. A
/// preallocation of the whole bound costs every idle connection its whole
/// queue in memory (about 100 KiB at 1,024 messages), which a hub of 10,000
/// connections cannot afford; growing is amortized and happens once.
const PREALLOC: usize = 64;

/// The bounded inbox. One producer (the I/O thread), any number of consumers.
pub(crate) struct Inbox {
    state: Mutex<State>,
    ready: Condvar,
    /// Lock order: `front` before `state`.
    front: Mutex<Front>,
    /// Mirrors for lock-free looks (`try_pop`, `len`) and for the producer's bound checks.
    shared_len: AtomicUsize,
    front_len: AtomicUsize,
    front_bytes: AtomicUsize,
    paused: AtomicBool,
    policy: Overflow,
    filter: Option<FilterFn>,
    /// Consumers may read the socket themselves when the inbox is empty.
    direct: bool,
    /// How long a consumer spins before it parks (`Client::busy_wait`).
    busy_wait: Duration,
    /// Messages consumers have taken from the inbox, for the reader to see
    /// that they keep taking (written under the consumers' lock, read without it).
    taken: AtomicU64,
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
            state: Mutex::new(State {
                items: VecDeque::with_capacity(cap.min(PREALLOC)),
                bytes: 0,
                keys: HashMap::new(),
                front_seq: 0,
                next_seq: 0,
                high_water: 0,
                received: 0,
                drops: Drops::default(),
                paused: false,
                paused_since: None,
                pause_count: 0,
                paused_total: Duration::ZERO,
                waiting: 0,
                end: End::Open,
                abandoned: false,
                front: (0, 0),
            }),
            ready: Condvar::new(),
            front: Mutex::new(Front::default()),
            shared_len: AtomicUsize::new(0),
            front_len: AtomicUsize::new(0),
            front_bytes: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            direct: direct_reads && matches!(policy, Overflow::Block) && filter.is_none(),
            taken: AtomicU64::new(0),
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
        self.front.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages queued, including those a consumer has taken ahead.
    pub(crate) fn len(&self) -> usize {
        self.shared_len.load(Ordering::Acquire) + self.front_len.load(Ordering::Acquire)
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
        self.taken.load(Ordering::Relaxed)
    }

    /// Nothing is queued, not even taken ahead by a consumer. Exact when the
    /// producer cannot push (the caller holds the lock the producer pushes
    /// under); a consumer moves messages from the shared queue to its front
    /// before it lowers `shared_len`, so they are seen in one or the other.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared_len.load(Ordering::Acquire) == 0 && self.front_len.load(Ordering::Acquire) == 0
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
        for item in pending.iter_mut() {
            item.at = now;
            batch_bytes += item.size;
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
        let (len, bytes) = self.totals(&st);
        if st.paused {
            all = pending.is_empty();
        } else if len + pending.len() <= self.cap
            && bytes + batch_bytes <= self.cap_bytes
            && !matches!(self.policy, Overflow::Conflate(_))
        {
            // The whole batch fits: no policy has anything to decide (only
            // conflation looks at every message, full or not, and only it
            // needs the sequence numbers). Into an empty queue it goes whole.
            st.received += pending.len() as u64;
            st.bytes += batch_bytes;
            if st.items.is_empty() {
                std::mem::swap(&mut st.items, pending);
            } else {
                st.items.extend(pending.drain(..));
            }
            st.high_water = st.high_water.max(self.totals(&st).0);
        } else {
            while let Some(item) = pending.pop_front() {
                if let Err(item) = self.admit(&mut st, item) {
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
        let wake = st.waiting > 0
            && !st.items.is_empty()
            && (!more || !all || st.items.len() >= WAKE_QUEUED);
        // Woken after the lock is let go, so the consumer does not wake only
        // to find it held and sleep again on the lock.
        drop(st);
        if wake {
            self.ready.notify_all();
        }
        all
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
            self.front_len.load(Ordering::Acquire),
            self.front_bytes.load(Ordering::Acquire),
        );
    }

    /// Whether a message of `size` fits beside `len` messages of `bytes`.
    /// An empty inbox takes any one message.
    fn fits(&self, len: usize, bytes: usize, size: usize) -> bool {
        len < self.cap && (len == 0 || bytes + size <= self.cap_bytes)
    }

    fn is_full(&self, st: &State, size: usize) -> bool {
        let (len, bytes) = self.totals(st);
        !self.fits(len, bytes, size)
    }

    /// Applies the policy to one message; `Err` hands it back when the reader must block.
    fn admit(&self, st: &mut State, mut item: Item) -> std::result::Result<(), Item> {
        if let (Overflow::Conflate(_), Some(key)) = (&self.policy, &item.key) {
            if let Some(&seq) = st.keys.get(key) {
                if seq >= st.front_seq {
                    let (len, bytes) = self.totals(st);
                    let old_size = st.items[(seq - st.front_seq) as usize].size;
                    if len > 1 && bytes - old_size + item.size > self.cap_bytes {
                        return Err(item);
                    }
                    let slot = &mut st.items[(seq - st.front_seq) as usize];
                    st.bytes = st.bytes - slot.size + item.size;
                    item.seq = seq;
                    item.at = slot.at;
                    *slot = item;
                    st.received += 1;
                    st.drops.conflated += 1;
                    return Ok(());
                }
            }
        }
        if self.is_full(st, item.size) {
            match &self.policy {
                Overflow::Block | Overflow::Conflate(_) => return Err(item),
                Overflow::DropNewest => {
                    st.received += 1;
                    st.drops.newest += 1;
                    return Ok(());
                }
                Overflow::DropOldest => {
                    while self.is_full(st, item.size) {
                        let Some(old) = self.take_front(st) else {
                            break;
                        };
                        drop(old);
                        st.drops.oldest += 1;
                    }
                }
                Overflow::Priority(_) => {
                    // Evict the oldest of the lowest priorities below the incoming
                    // one, but only if that makes room: never evict for nothing.
                    let mut candidates: Vec<(u8, usize)> = st
                        .items
                        .iter()
                        .enumerate()
                        .filter(|(_, q)| q.prio < item.prio)
                        .map(|(i, q)| (q.prio, i))
                        .collect();
                    candidates.sort_unstable();
                    let (mut len, mut bytes) = self.totals(st);
                    let mut victims = Vec::new();
                    for (_, i) in candidates {
                        if self.fits(len, bytes, item.size) {
                            break;
                        }
                        len -= 1;
                        bytes -= st.items[i].size;
                        victims.push(i);
                    }
                    if !self.fits(len, bytes, item.size) {
                        if item.prio == Overflow::TOP {
                            return Err(item);
                        }
                        st.received += 1;
                        st.drops.priority += 1;
                        return Ok(());
                    }
                    victims.sort_unstable_by(|a, b| b.cmp(a));
                    for i in victims {
                        let old = st.items.remove(i).expect("index from iter");
                        st.bytes -= old.size;
                        st.drops.priority += 1;
                    }
                }
            }
        }
        st.received += 1;
        st.bytes += item.size;
        item.seq = st.next_seq;
        st.next_seq += 1;
        if let Some(key) = &item.key {
            st.keys.insert(key.clone(), item.seq);
        }
        st.items.push_back(item);
        st.high_water = st.high_water.max(self.totals(st).0);
        Ok(())
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
    #[inline(always)]
    pub(crate) fn try_pop(&self) -> Result<Option<Message>> {
        loop {
            let mut front = self.lock_front();
            if let Some(item) = front.items.pop_front() {
                front.delivered += 1;
                self.taken.store(front.delivered, Ordering::Relaxed);
                if front.delivered % WAIT_SAMPLE == 0 {
                    if let Some(at) = item.at {
                        front.wait.record(at.elapsed());
                    }
                }
                self.front_len.store(front.items.len(), Ordering::Release);
                // Only holders of the front lock write it: no read-modify-write needed.
                let bytes = self.front_bytes.load(Ordering::Relaxed) - item.size;
                self.front_bytes.store(bytes, Ordering::Release);
                drop(front);
                if self.paused.load(Ordering::Acquire) {
                    self.maybe_resume();
                }
                return Ok(Some(item.msg));
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
            let bytes = self.front_bytes.load(Ordering::Relaxed) + bytes;
            self.front_bytes.store(bytes, Ordering::Release);
            self.front_len.store(front.items.len(), Ordering::Release);
            self.shared_len.store(st.items.len(), Ordering::Release);
        }
    }

    /// Takes the next message, waiting until `deadline` (`None`: forever):
    /// try, spin for `busy_wait` (none by default), park until the reader's
    /// next batch wakes it.
    /// `Ok(None)`: the deadline passed. `Err`: as [`try_pop`](Inbox::try_pop).
    #[inline(always)]
    pub(crate) fn pop_deadline(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
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
            st.waiting += 1;
            st = match deadline {
                None => self.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) if d <= now => {
                    st.waiting -= 1;
                    return Ok(None);
                }
                Some(d) => {
                    self.ready
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            st.waiting -= 1;
        }
    }

    /// Lets a paused reader go once the inbox is down to half its bounds.
    fn maybe_resume(&self) {
        let mut st = self.lock();
        let len = st.items.len() + self.front_len.load(Ordering::Acquire);
        let bytes = st.bytes + self.front_bytes.load(Ordering::Acquire);
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
        self.front_len.store(0, Ordering::Release);
        self.front_bytes.store(0, Ordering::Release);
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
        s.queued_bytes = st.bytes + self.front_bytes.load(Ordering::Acquire);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(cap: usize, policy: Overflow) -> (Arc<Inbox>, Arc<AtomicBool>) {
        let woke = Arc::new(AtomicBool::new(false));
        let w = woke.clone();
        let resume = Box::new(move || w.store(true, Ordering::SeqCst));
        (
            Arc::new(Inbox::new(
                cap,
                usize::MAX,
                policy,
                None,
                false,
                Duration::ZERO,
                resume,
            )),
            woke,
        )
    }

    fn push(q: &Inbox, texts: &[&str]) -> (bool, VecDeque<Item>) {
        let mut pending = VecDeque::new();
        for t in texts {
            q.classify_into(Message::text(*t), &mut pending);
        }
        let all = q.push_batch(&mut pending, 0, false);
        (all, pending)
    }

    fn drain(q: &Inbox) -> Vec<String> {
        let mut out = vec![];
        while let Ok(Some(m)) = q.try_pop() {
            out.push(m.into_text().unwrap().to_string());
        }
        out
    }

    fn check_identity(q: &Inbox) {
        let mut s = Stats::default();
        q.fill(&mut s);
        assert_eq!(
            s.received,
            s.delivered + s.dropped.total() + s.queued as u64
        );
    }

    #[test]
    fn block_pauses_at_bound_and_resumes_at_half() {
        let (q, woke) = inbox(4, Overflow::Block);
        let (all, pending) = push(&q, &["1", "2", "3", "4", "5", "6"]);
        assert!(!all);
        assert_eq!(pending.len(), 2);
        assert!(q.is_paused());
        check_identity(&q);
        q.pop_deadline(None).unwrap();
        assert!(
            q.is_paused() && !woke.load(Ordering::SeqCst),
            "no flapping above low water"
        );
        q.pop_deadline(None).unwrap();
        assert!(!q.is_paused() && woke.load(Ordering::SeqCst));
        let mut pending = pending;
        assert!(q.push_batch(&mut pending, 0, false));
        assert_eq!(drain(&q), ["3", "4", "5", "6"]);
        check_identity(&q);
    }

    #[test]
    fn bytes_bound_admits_one_oversized_message_when_empty() {
        let woke = Box::new(|| {});
        let q = Inbox::new(100, 10, Overflow::Block, None, false, Duration::ZERO, woke);
        let (all, _) = push(&q, &["0123456789ABCDEF"]);
        assert!(all, "an empty inbox takes any one message");
        let (all, pending) = push(&q, &["x"]);
        assert!(!all && pending.len() == 1);
    }

    #[test]
    fn drop_newest_and_oldest() {
        let (q, _) = inbox(3, Overflow::DropNewest);
        push(&q, &["1", "2", "3", "4", "5"]);
        assert_eq!(drain(&q), ["1", "2", "3"]);
        check_identity(&q);
        let (q, _) = inbox(3, Overflow::DropOldest);
        push(&q, &["1", "2", "3", "4", "5"]);
        check_identity(&q);
        assert_eq!(drain(&q), ["3", "4", "5"]);
        let mut s = Stats::default();
        q.fill(&mut s);
        assert_eq!(s.dropped.oldest, 2);
    }

    #[test]
    fn priority_sheds_lowest_oldest_and_blocks_on_top() {
        let prio = |m: &Message| -> u8 {
            match m.to_text().unwrap().as_bytes()[0] {
                b'h' => Overflow::TOP,
                b'm' => 5,
                _ => 1,
            }
        };
        let (q, _) = inbox(3, Overflow::priority(prio));
        push(&q, &["l1", "m1", "l2", "h1"]); // l1 evicted
        push(&q, &["l3"]); // nothing lower: dropped
        push(&q, &["h2"]); // evicts l2
        check_identity(&q);
        assert_eq!(drain(&q), ["m1", "h1", "h2"]);
        let (q, _) = inbox(2, Overflow::priority(prio));
        let (all, pending) = push(&q, &["h1", "h2", "h3"]);
        assert!(!all && pending.len() == 1, "top priority is never dropped");
        check_identity(&q);
    }

    #[test]
    fn conflation_keeps_latest_per_key_in_place() {
        let key = |m: &Message| {
            m.to_text()
                .ok()
                .and_then(|t| t.split_once(':').map(|(k, _)| k.to_string()))
        };
        let (q, _) = inbox(2, Overflow::conflate(key));
        push(&q, &["a:1", "b:1", "a:2", "b:2", "a:3"]);
        check_identity(&q);
        assert_eq!(drain(&q), ["a:3", "b:2"]);
        let (all, pending) = push(&q, &["a:4", "b:3", "c:1"]);
        assert!(
            !all && pending.len() == 1,
            "a new key in a full inbox waits"
        );
        check_identity(&q);
    }

    #[test]
    fn end_comes_after_queued_messages() {
        let (q, _) = inbox(8, Overflow::Block);
        push(&q, &["1"]);
        let mut left = VecDeque::new();
        q.classify_into(Message::text("2"), &mut left);
        q.finish(&mut left, Error::Closed(None));
        assert_eq!(drain(&q), ["1", "2"]);
        assert!(q.pop_deadline(None).unwrap_err().is_closed());
        assert!(
            q.pop_deadline(None).unwrap_err().is_closed(),
            "the end repeats"
        );
    }

    #[test]
    fn pop_times_out_and_wakes_on_push() {
        let (q, _) = inbox(8, Overflow::Block);
        let t = Instant::now();
        assert!(q
            .pop_deadline(Some(t + Duration::from_millis(20)))
            .unwrap()
            .is_none());
        assert!(t.elapsed() >= Duration::from_millis(20));
        let q2 = q.clone();
        let h = std::thread::spawn(move || {
            q2.pop_deadline(Some(Instant::now() + Duration::from_secs(10)))
        });
        std::thread::sleep(Duration::from_millis(30));
        push(&q, &["x"]);
        assert!(h.join().unwrap().unwrap().is_some());
    }

    #[test]
    fn a_busy_wait_keeps_to_the_deadline_and_takes_what_comes() {
        let resume = Box::new(|| {});
        let spin = Duration::from_secs(2);
        let q = Arc::new(Inbox::new(
            8,
            usize::MAX,
            Overflow::DropOldest,
            None,
            false,
            spin,
            resume,
        ));
        let t = Instant::now();
        assert!(q
            .pop_deadline(Some(t + Duration::from_millis(20)))
            .unwrap()
            .is_none());
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(20) && waited < Duration::from_secs(1),
            "the spin ends at the caller's deadline, not its own: {waited:?}"
        );
        // A message pushed while the consumer spins, and one after its spin
        // has given way to parking, both arrive.
        let q2 = q.clone();
        let h = std::thread::spawn(move || {
            let deadline = Some(Instant::now() + Duration::from_secs(10));
            let first = q2.pop_deadline(deadline).unwrap();
            let second = q2.pop_deadline(deadline).unwrap();
            (first, second)
        });
        std::thread::sleep(Duration::from_millis(30));
        push(&q, &["spun"]);
        std::thread::sleep(Duration::from_millis(2500));
        push(&q, &["parked"]);
        let (first, second) = h.join().unwrap();
        assert_eq!(first.unwrap().into_text().unwrap().as_str(), "spun");
        assert_eq!(second.unwrap().into_text().unwrap().as_str(), "parked");
    }
}
