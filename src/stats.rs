//! Stats layer: the counters the threads share and the [`Stats`] snapshot.
//!
//! Owns [`Stats`], [`Drops`], the wire counters the I/O thread and senders bump
//! ([`Counters`]) and the queue-wait histogram. It reads no socket and takes no
//! lock of its own: the inbox fills its part under the inbox lock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Messages dropped by the inbox, by reason.
///
/// # Examples
///
/// ```
/// let d = wsapp::Drops::default();
/// assert_eq!(d.total(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drops {
    /// Incoming messages refused because the inbox was full
    /// ([`DropNewest`](crate::Overflow::DropNewest)).
    pub newest: u64,
    /// Queued messages evicted to make room ([`DropOldest`](crate::Overflow::DropOldest)).
    pub oldest: u64,
    /// Messages dropped by [`Overflow::priority`](crate::Overflow::priority):
    /// lower-priority queued messages evicted for a higher-priority one, and
    /// incoming messages with nothing lower queued to make room.
    pub priority: u64,
    /// Queued messages replaced by a newer one with the same key (conflation).
    pub conflated: u64,
    /// Messages the filter refused before they were queued.
    pub filtered: u64,
}

impl Drops {
    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.newest + self.oldest + self.priority + self.conflated + self.filtered
    }
}

/// A snapshot of every buffer between the wire and the handler.
///
/// `received == delivered + dropped.total() + queued` holds in every snapshot.
/// Its `Display` is one line, like a row of `ss -tn`.
///
/// # Examples
///
/// ```
/// let s = wsapp::Stats::default();
/// assert_eq!(s.received, s.delivered + s.dropped.total() + s.queued as u64);
/// assert!(s.to_string().contains("inbox 0/0"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Data messages (text and binary) and pings/pongs read off the wire.
    pub messages_in: u64,
    /// Payload bytes of those messages.
    pub bytes_in: u64,
    /// Messages this side wrote: data messages and pings (keepalive too); not
    /// close frames, nor the pongs tungstenite sends back by itself.
    pub messages_out: u64,
    /// Payload bytes of those messages.
    pub bytes_out: u64,
    /// Messages read for the consumer: those that reached the inbox's
    /// overflow policy, and those a consumer read itself (`read_by_consumer`).
    pub received: u64,
    /// Messages handed to `recv` or a handler.
    pub delivered: u64,
    /// Of those, the messages a consumer read from the socket itself because
    /// the inbox was empty (only under [`Overflow::Block`](crate::Overflow::Block)
    /// without a filter). They never waited in the inbox; they count in
    /// `received` and `delivered`.
    pub read_by_consumer: u64,
    /// Messages dropped, by reason.
    pub dropped: Drops,
    /// Messages in the inbox now.
    pub queued: usize,
    /// Payload bytes in the inbox now.
    pub queued_bytes: usize,
    /// The most messages the inbox ever held.
    pub queue_high_water: usize,
    /// The inbox bound in messages.
    pub queue_capacity: usize,
    /// The inbox bound in payload bytes.
    pub queue_capacity_bytes: usize,
    /// Whether the I/O thread has stopped reading because the inbox is full.
    pub paused: bool,
    /// Who reads the socket now.
    pub reader: Reader,
    /// How many times reading was paused.
    pub pause_count: u64,
    /// How long reading has been paused in all.
    pub paused_for: Duration,
    /// Median time a message waited in the inbox. The wait percentiles and
    /// the max are taken over a sample: one message in eight is timed.
    pub wait_p50: Duration,
    /// 99th percentile of the time a message waited in the inbox.
    pub wait_p99: Duration,
    /// Longest time a message waited in the inbox.
    pub wait_max: Duration,
    /// Messages waiting in the outbox to be written.
    pub outbox: usize,
    /// Their payload bytes (bounded by [`Client::outbox_bytes`](crate::Client::outbox_bytes)).
    pub outbox_bytes: usize,
    /// Bytes in the kernel's receive queue (`Recv-Q`), where the platform tells.
    pub kernel_recv_queue: Option<usize>,
    /// Effective `SO_RCVBUF` as the kernel reports it (Linux doubles the request).
    pub recv_buffer_size: Option<usize>,
    /// Effective `SO_SNDBUF` as the kernel reports it.
    pub send_buffer_size: Option<usize>,
    /// What permessage-deflate agreed, if it was
    /// ([`WebSocket::compression`](crate::WebSocket::compression)).
    pub compression: Option<crate::Compression>,
    /// Messages received compressed (included in `messages_in`).
    pub compressed_in: u64,
    /// Their payload bytes on the wire, compressed.
    pub compressed_in_wire: u64,
    /// Their payload bytes once inflated (counted in `bytes_in` too).
    pub compressed_in_plain: u64,
    /// Messages sent compressed (included in `messages_out`).
    pub compressed_out: u64,
    /// Their payload bytes on the wire, compressed.
    pub compressed_out_wire: u64,
    /// Their payload bytes before deflating (counted in `bytes_out` too).
    pub compressed_out_plain: u64,
}

impl Stats {
    /// Inflated bytes per compressed byte received (`None` before any
    /// compressed message came in).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = wsapp::Stats::default();
    /// assert_eq!(s.compression_ratio_in(), None);
    /// ```
    pub fn compression_ratio_in(&self) -> Option<f64> {
        (self.compressed_in_wire > 0)
            .then(|| self.compressed_in_plain as f64 / self.compressed_in_wire as f64)
    }

    /// Bytes before deflating per compressed byte sent (`None` before any
    /// message went out compressed).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = wsapp::Stats::default();
    /// assert_eq!(s.compression_ratio_out(), None);
    /// ```
    pub fn compression_ratio_out(&self) -> Option<f64> {
        (self.compressed_out_wire > 0)
            .then(|| self.compressed_out_plain as f64 / self.compressed_out_wire as f64)
    }
}

/// Who reads the socket at the moment of a [`Stats`] snapshot.
///
/// # Examples
///
/// ```no_run
/// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
/// if ws.stats().reader == wsapp::Reader::HeldBack {
///     println!("the inbox is full: the server is being slowed down");
/// }
/// # Ok::<(), wsapp::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reader {
    /// The I/O thread reads ahead into the inbox.
    #[default]
    IoThread,
    /// A consumer (`recv`, the app's dispatcher) reads the socket itself
    /// (under [`Overflow::Block`](crate::Overflow::Block), while it keeps up).
    Consumer,
    /// Nobody: the inbox is full and the I/O thread holds back what it read.
    /// Pings behind the held-back data wait too, and so does the pong deadline.
    HeldBack,
    /// Nobody: the connection has ended.
    Ended,
}

impl fmt::Display for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reader::IoThread => "io-thread",
            Reader::Consumer => "consumer",
            Reader::HeldBack => "held-back",
            Reader::Ended => "ended",
        })
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
        write!(
            f,
            "Recv-Q {} rcvbuf {} | inbox {}/{} ({} B, peak {}) | in {} delivered {} ({} direct) dropped {} \
             (newest {} oldest {} priority {} conflated {} filtered {}) | {} paused x{} {:.1?} | reader {} | \
             wait p50 {:.1?} p99 {:.1?} max {:.1?} | outbox {} ({} B)",
            opt(self.kernel_recv_queue),
            opt(self.recv_buffer_size),
            self.queued,
            self.queue_capacity,
            self.queued_bytes,
            self.queue_high_water,
            self.received,
            self.delivered,
            self.read_by_consumer,
            self.dropped.total(),
            self.dropped.newest,
            self.dropped.oldest,
            self.dropped.priority,
            self.dropped.conflated,
            self.dropped.filtered,
            if self.paused { "PAUSED" } else { "not" },
            self.pause_count,
            self.paused_for,
            self.reader,
            self.wait_p50,
            self.wait_p99,
            self.wait_max,
            self.outbox,
            self.outbox_bytes,
        )?;
        if self.compression.is_none() {
            return f.write_str(" | deflate off");
        }
        let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("x{r:.1}"));
        write!(
            f,
            " | deflate in {} msgs {} -> {} B ({}) out {} msgs {} -> {} B ({})",
            self.compressed_in,
            self.compressed_in_wire,
            self.compressed_in_plain,
            ratio(self.compression_ratio_in()),
            self.compressed_out,
            self.compressed_out_plain,
            self.compressed_out_wire,
            ratio(self.compression_ratio_out()),
        )
    }
}

/// Wire counters, bumped by the I/O thread (in) and by whoever writes (out).
/// What consumers read themselves is counted under the connection's lock
/// instead, and added in by `Sender::stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

impl Counters {
    pub(crate) fn count_in_batch(&self, messages: u64, bytes: u64) {
        if messages > 0 {
            self.messages_in.fetch_add(messages, Relaxed);
            self.bytes_in.fetch_add(bytes, Relaxed);
        }
    }

    pub(crate) fn count_out(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn fill(&self, s: &mut Stats) {
        s.messages_in = self.messages_in.load(Relaxed);
        s.bytes_in = self.bytes_in.load(Relaxed);
        s.messages_out = self.messages_out.load(Relaxed);
        s.bytes_out = self.bytes_out.load(Relaxed);
    }
}

/// Queue-wait times in buckets of a quarter power of two of nanoseconds:
/// fixed memory, at most 25% resolution, integer-only so it is cheap enough to
/// record every message.
#[derive(Debug, Clone)]
pub(crate) struct WaitHistogram {
    buckets: Vec<u64>,
    count: u64,
    max: Duration,
}

const BUCKETS: usize = 4 * 40; // up to 2^40 ns, about 18 minutes

impl Default for WaitHistogram {
    fn default() -> Self {
        WaitHistogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            max: Duration::ZERO,
        }
    }
}

impl WaitHistogram {
    pub(crate) fn record(&mut self, d: Duration) {
        let ns = (d.as_nanos() as u64).max(1);
        let log = 63 - ns.leading_zeros() as usize;
        // The two bits below the top one pick the quarter.
        let quarter = if log >= 2 { (ns >> (log - 2)) & 3 } else { 0 } as usize;
        let i = (log * 4 + quarter).min(BUCKETS - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max = self.max.max(d);
    }

    /// The upper edge of the bucket holding quantile `q` (0..=1); at most the max.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (log, quarter) = (i / 4, (i % 4) as u64);
                let edge = (1u64 << log) + ((quarter + 1) << log) / 4;
                return Duration::from_nanos(edge).min(self.max);
            }
        }
        self.max
    }

    pub(crate) fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = WaitHistogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((500.0..=500.0 * 1.25).contains(&p50), "{p50}");
        assert!((990.0..=1000.0).contains(&p99), "{p99}");
        assert_eq!(h.max(), Duration::from_micros(1000));
        assert_eq!(WaitHistogram::default().quantile(0.5), Duration::ZERO);
    }
}
