//! The overflow policies: [`Overflow`], and how the inbox admits a message
//! when it is full (drop newest or oldest, priority shedding, conflation).
//! Admission runs on the I/O thread under the state lock; it never takes the
//! consumers' `Front` lock or touches the socket.

use std::fmt;
use std::sync::Arc;

use super::{Inbox, Item, State};
use crate::Message;

type PriorityFn = Arc<dyn Fn(&Message) -> u8 + Send + Sync>;
type KeyFn = Arc<dyn Fn(&Message) -> Option<String> + Send + Sync>;

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

impl Inbox {
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
    pub(super) fn admit(&self, st: &mut State, mut item: Item) -> std::result::Result<(), Item> {
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
                    if !self.evict_below(st, item.prio, item.size) {
                        if item.prio == Overflow::TOP {
                            return Err(item);
                        }
                        st.received += 1;
                        st.drops.priority += 1;
                        return Ok(());
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
        st.prio_floor = if st.items.is_empty() {
            item.prio
        } else {
            st.prio_floor.min(item.prio)
        };
        st.items.push_back(item);
        st.high_water = st.high_water.max(self.totals(st).0);
        Ok(())
    }

    /// Makes room for a message of `prio` and `size` by evicting the oldest
    /// of the lowest priorities below `prio`, in that order, and only if that
    /// makes room: never evicts for nothing. `false`: it cannot.
    ///
    /// Two passes at most, whatever the number of victims: one sums what
    /// each priority below `prio` holds, which says which priorities go
    /// whole and how far into the next the eviction reaches; one removes
    /// them. At or below the floor nothing queued is lower: no pass at all.
    fn evict_below(&self, st: &mut State, prio: u8, size: usize) -> bool {
        if prio <= st.prio_floor {
            return false;
        }
        // Messages and bytes queued at each priority below `prio`.
        let mut held = [(0usize, 0usize); 256];
        let mut any = false;
        for q in st.items.iter().filter(|q| q.prio < prio) {
            let h = &mut held[q.prio as usize];
            h.0 += 1;
            h.1 += q.size;
            any = true;
        }
        if !any {
            st.prio_floor = prio;
            return false;
        }
        // Priorities below `whole` go whole; then `partial`'s oldest, one by
        // one, until the message fits.
        let (mut len, mut bytes) = self.totals(st);
        let mut whole = 0u8;
        let mut partial = None;
        for level in 0..prio {
            if self.fits(len, bytes, size) {
                break;
            }
            let (n, b) = held[level as usize];
            if n > 0 && self.fits(len - n, bytes - b, size) {
                partial = Some(level);
                break;
            }
            (len, bytes) = (len - n, bytes - b);
            whole = level + 1;
        }
        if partial.is_none() && !self.fits(len, bytes, size) {
            return false;
        }
        let (mut evicted, mut evicted_bytes) = (0u64, 0usize);
        st.items.retain(|q| {
            let out = q.prio < whole
                || (Some(q.prio) == partial && !self.fits(len, bytes, size) && {
                    (len, bytes) = (len - 1, bytes - q.size);
                    true
                });
            if out {
                evicted += 1;
                evicted_bytes += q.size;
            }
            !out
        });
        st.bytes -= evicted_bytes;
        st.drops.priority += evicted;
        true
    }
}
