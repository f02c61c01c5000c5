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
                    // Evict the oldest of the lowest priorities below the incoming
                    // one, but only if that makes room: never evict for nothing.
                    // At or below the floor nothing queued is lower: no scan.
                    let mut candidates: Vec<(u8, usize)> = if item.prio > st.prio_floor {
                        st.items
                            .iter()
                            .enumerate()
                            .filter(|(_, q)| q.prio < item.prio)
                            .map(|(i, q)| (q.prio, i))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    if candidates.is_empty() {
                        // Nothing queued is below the incoming priority.
                        st.prio_floor = st.prio_floor.max(item.prio);
                    }
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
        st.prio_floor = if st.items.is_empty() {
            item.prio
        } else {
            st.prio_floor.min(item.prio)
        };
        st.items.push_back(item);
        st.high_water = st.high_water.max(self.totals(st).0);
        Ok(())
    }
}
