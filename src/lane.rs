//! Fast lane: small whole data frames taken straight from the stream's own
//! read buffer, past tungstenite's frame codec; every other frame goes to
//! tungstenite whole, in wire order.
//!
//! Owns that read buffer (the socket's bytes land in it after the frame
//! follower, `wire`, has seen them) and the split of its frames between the
//! two ways. Must not answer anything or judge a frame: pings, closes,
//! fragments, limits and every protocol error stay tungstenite's, which
//! gets the frames a lane cannot take. It never touches the socket: the
//! stream reads for it. Used only when permessage-deflate is not agreed
//! (the follower then rewrites the byte stream; see `stream`).
//!
//! Why: tungstenite's read costs about 340 instructions per small message
//! (header parse into a struct, codec buffer bookkeeping, `Frame` and
//! `Message` building); a lane frame costs a header check and a split.
//! Which frames: FIN, no RSV bit, text or binary, unmasked, payload below
//! [`FAST_BELOW`] and within the limits, no fragmented message open, and
//! for text valid UTF-8. tungstenite would accept every such frame as one
//! message and do nothing else with it, so the lane changes no outcome.

use std::io;

use bytes::{Buf, BytesMut};

use crate::{Message, Utf8Bytes};

/// Payloads below this go the lane: the size below which queued payloads are
/// copied into shared chunks anyway (`connection::slab`), so a large payload
/// still gets tungstenite's buffer of its own.
pub(crate) const FAST_BELOW: usize = 16 << 10;

/// After a large frame of tungstenite's, the next read into this buffer
/// asks for only a header's worth (the longest, 14 bytes): a large frame
/// tends to follow one, and its payload is then read straight into
/// tungstenite's buffer, where a full read here would be copied over to it.
/// One more read per large message; none per small one.
const HEADER_PEEK: usize = 14;

/// Read buffers a lane keeps parked while queued messages share them, to
/// reuse each once its messages are gone. A parked buffer costs nothing
/// while messages hold it (they would keep it alive anyway), so the bound is
/// for the case the inbox holds many buffers' worth (1,024 messages of 4 KiB
/// are 32 reads of 128 KiB): with only two parked, a new buffer was
/// allocated (fresh pages: faults, and the consumer unmapping it) for most
/// reads, and the queue path ran at 0.70x tungstenite at 4 KiB; with 40
/// (more than that span), 0.93x (BENCHMARKS.md). A consumer that keeps up
/// is woken every 1 MiB (`queue::WAKE_BYTES`), a span of about eight. A
/// full inbox (8,192 x 4 KiB) spans 256, but then the consumer, not the
/// reader, sets the pace; 256 parked would also keep up to 32 MiB of free
/// buffers until the connection is quiet.
const PARKED: usize = 64;
/// Free parked buffers kept once the connection is quiet (`trim`): the
/// others go back to the allocator, so an idle connection holds at most
/// this many beyond its own.
const FREE_KEEP: usize = 1;

/// What the front of the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// A whole lane frame: header length, payload length, text or binary.
    Fast { head: usize, len: usize, text: bool },
    /// Bytes of frames that are tungstenite's (whole frames, maybe not all here yet).
    Slow,
    /// Not enough bytes to tell (a partial header), or a lane frame not whole yet.
    Incomplete,
}

/// The read buffer and the split of its frames.
#[derive(Debug)]
pub(crate) struct Lane {
    /// Bytes read (and followed) but not yet handed on.
    rx: BytesMut,
    /// Bytes the buffer is filled to per read: `read_buffer_size`.
    chunk: usize,
    /// The size of the last `spare`.
    want: usize,
    /// Earlier buffers still shared by messages (see `make_room`).
    parked: std::collections::VecDeque<BytesMut>,
    /// The frame at the front is tungstenite's and large: see `HEADER_PEEK`.
    after_large: bool,
    /// Bytes at the front of `rx`, and to come, that are tungstenite's.
    slow: u64,
    /// A fragmented message is open: every frame up to its last is tungstenite's.
    open: bool,
    /// Payloads below this go the lane: `FAST_BELOW` within the limits.
    fast_below: u64,
    /// A read's outcome (an error, or `Ok(0)` at the end) met while filling
    /// for the lane, kept for tungstenite, whose read reports it.
    deferred: Option<io::Result<usize>>,
}

impl Lane {
    /// A lane reading `chunk` bytes at a time, under tungstenite's limits.
    pub(crate) fn new(chunk: usize, max_message: usize, max_frame: usize) -> Lane {
        let limit = max_message.min(max_frame).saturating_add(1);
        Lane {
            rx: BytesMut::new(),
            chunk: chunk.clamp(1, 120 << 10),
            want: 0,
            parked: std::collections::VecDeque::new(),
            after_large: false,
            slow: 0,
            open: false,
            fast_below: FAST_BELOW.min(limit) as u64,
            deferred: None,
        }
    }

    /// Starts with bytes already read (after the upgrade response).
    pub(crate) fn preload(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
    }

    /// What the front holds. At a frame that is tungstenite's, its length
    /// becomes `slow`.
    #[inline]
    pub(crate) fn front(&mut self) -> Front {
        if self.slow > 0 {
            return Front::Slow;
        }
        let b = &self.rx[..];
        if b.len() < 2 {
            return Front::Incomplete;
        }
        let (b0, b1) = (b[0], b[1]);
        let (len, ext) = match b1 & 0x7F {
            n @ 0..=125 => (u64::from(n), 0),
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 2),
            127 if b.len() >= 10 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(l), 8)
            }
            _ => return Front::Incomplete,
        };
        let masked = b1 & 0x80 != 0;
        let head = 2 + ext + if masked { 4 } else { 0 };
        if !self.open && (b0 == 0x81 || b0 == 0x82) && !masked && len < self.fast_below {
            let len = len as usize;
            return if b.len() >= head + len {
                Front::Fast {
                    head,
                    len,
                    text: b0 == 0x81,
                }
            } else {
                Front::Incomplete
            };
        }
        self.slow = (head as u64).saturating_add(len);
        self.after_large = len >= FAST_BELOW as u64;
        // Fragments: tungstenite refuses those out of order; the lane only
        // needs to know when a message made of them ends.
        let fin = b0 & 0x80 != 0;
        match b0 & 0x0F {
            1 | 2 if !self.open => self.open = !fin,
            0 if fin => self.open = false,
            _ => {}
        }
        Front::Slow
    }

    /// The message of the lane frame at the front, if there is one. Text
    /// that is not valid UTF-8 becomes tungstenite's, which refuses it.
    #[inline]
    pub(crate) fn take(&mut self) -> Option<Message> {
        let Front::Fast { head, len, text } = self.front() else {
            return None;
        };
        if text && std::str::from_utf8(&self.rx[head..head + len]).is_err() {
            self.slow = (head + len) as u64;
            return None;
        }
        self.rx.advance(head);
        let payload = self.rx.split_to(len).freeze();
        Some(if text {
            // Checked just above; the conversion checks again (no unchecked
            // constructor), cheap next to the read at these sizes.
            Message::Text(Utf8Bytes::try_from(payload).expect("checked"))
        } else {
            Message::Binary(payload)
        })
    }

    /// Bytes of tungstenite's frames already here.
    #[inline]
    pub(crate) fn slow_buffered(&self) -> bool {
        self.slow > 0 && !self.rx.is_empty()
    }

    /// Bytes of tungstenite's frames still to hand on (buffered or to come).
    #[inline]
    pub(crate) fn slow_left(&self) -> usize {
        usize::try_from(self.slow).unwrap_or(usize::MAX)
    }

    /// Hands up to `buf.len()` buffered bytes of tungstenite's frames.
    pub(crate) fn give_slow(&mut self, buf: &mut [u8]) -> usize {
        let n = (self.slow.min(self.rx.len() as u64) as usize).min(buf.len());
        buf[..n].copy_from_slice(&self.rx[..n]);
        self.rx.advance(n);
        self.slow -= n as u64;
        n
    }

    /// `buf[..n]` was read straight into tungstenite's buffer while `rx` was
    /// empty: returns how many of those bytes are tungstenite's; the rest
    /// (the next frames) move into `rx`.
    pub(crate) fn keep_slow(&mut self, buf: &[u8], n: usize) -> usize {
        debug_assert!(self.rx.is_empty());
        let mine = self.slow.min(n as u64) as usize;
        self.slow -= mine as u64;
        self.rx.extend_from_slice(&buf[mine..n]);
        mine
    }

    /// Room for the next read at the end of `rx` (zeroed, as tungstenite's
    /// own buffer is: no unsafe code here). A buffer whose front is still
    /// shared by messages is left to them and a new one is allocated.
    ///
    /// The buffer is filled up to `chunk` bytes, not grown by `chunk` per
    /// read: a buffer that its messages have let go of is then reused in
    /// place (its few unread bytes moved to the front), where asking for a
    /// whole `chunk` more would allocate (and, at 128 KiB, map) a new one
    /// per read. Past `chunk` (a frame larger than the reads) it grows.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        let len = self.rx.len();
        self.size_spare();
        self.rx.reserve(self.want);
        self.rx.resize(len + self.want, 0);
        &mut self.rx[len..]
    }

    fn size_spare(&mut self) {
        let len = self.rx.len();
        self.want = if std::mem::take(&mut self.after_large) && len == 0 {
            HEADER_PEEK
        } else if len < self.chunk {
            self.chunk - len
        } else {
            self.chunk
        };
        self.make_room();
    }

    /// Room for `want` more bytes. A buffer that messages still share (they
    /// wait in the inbox) is parked and another one read into: a parked one
    /// whose messages are all gone, else a new one. Reusing them keeps the
    /// reads in memory that is mapped and cached; a new buffer per read
    /// costs page faults, and the thread that drops the last message frees it.
    fn make_room(&mut self) {
        let need = self.rx.len() + self.want;
        if self.rx.capacity() == 0 || self.rx.capacity() >= need || self.rx.try_reclaim(self.want) {
            self.rx.reserve(self.want);
            return;
        }
        let size = self.chunk.max(need);
        let free = (0..self.parked.len()).find(|&i| self.parked[i].try_reclaim(size));
        let mut next = match free.and_then(|i| self.parked.remove(i)) {
            Some(b) => b,
            None => BytesMut::with_capacity(size),
        };
        next.extend_from_slice(&self.rx);
        let mut old = std::mem::replace(&mut self.rx, next);
        old.clear();
        if self.parked.len() == PARKED {
            self.parked.pop_front();
        }
        self.parked.push_back(old);
    }

    /// The last `spare` (or committed read), for the follower to filter.
    pub(crate) fn last_read(&mut self) -> &mut [u8] {
        let len = self.rx.len();
        &mut self.rx[len - self.want..]
    }

    /// As `spare`, for a socket read that writes into uninitialized memory
    /// (plain TCP): no zeroing of the room first, which costs as much as
    /// the kernel's copy of the bytes. `commit` then says how many came.
    pub(crate) fn spare_uninit(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
        self.size_spare();
        self.rx.reserve(self.want);
        &mut self.rx.spare_capacity_mut()[..self.want]
    }

    /// After `spare_uninit`: the read wrote `n` bytes at its start.
    #[allow(unsafe_code)]
    pub(crate) fn commit(&mut self, n: usize) {
        assert!(n <= self.want && n <= self.rx.capacity() - self.rx.len());
        // SAFETY: `recv` initialized the first `n` bytes of the spare
        // capacity handed to it (at most `want`, checked above).
        unsafe { self.rx.set_len(self.rx.len() + n) };
        self.want = n;
    }

    /// After `spare`: `kept` bytes of it hold followed bytes; drops the rest.
    pub(crate) fn filled(&mut self, kept: usize) {
        let len = self.rx.len() - self.want;
        self.rx.truncate(len + kept);
    }

    /// Frees parked buffers no message shares any more, beyond `FREE_KEEP`:
    /// called when the connection is quiet (nothing queued).
    pub(crate) fn trim(&mut self) {
        if self.parked.len() <= FREE_KEEP {
            return;
        }
        let mut free = 0;
        let chunk = self.chunk;
        self.parked.retain_mut(|b| {
            if !b.try_reclaim(chunk) {
                return true;
            }
            free += 1;
            free <= FREE_KEEP
        });
    }

    /// Keeps a read's outcome for tungstenite's next read.
    pub(crate) fn defer(&mut self, outcome: io::Result<usize>) {
        self.deferred = Some(outcome);
    }

    /// The outcome kept by `defer`, once.
    #[inline]
    pub(crate) fn take_deferred(&mut self) -> Option<io::Result<usize>> {
        self.deferred.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n if n < 65536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    fn lane(bytes: &[u8]) -> Lane {
        let mut l = Lane::new(4096, 1 << 20, 1 << 20);
        l.preload(bytes);
        l
    }

    /// Drains the lane: lane messages, and the bytes handed to tungstenite.
    fn drain(l: &mut Lane) -> (Vec<Message>, Vec<u8>) {
        let (mut msgs, mut slow) = (vec![], vec![]);
        for _ in 0..1000 {
            if let Some(m) = l.take() {
                msgs.push(m);
                continue;
            }
            match l.front() {
                Front::Slow if l.slow_buffered() => {
                    let mut buf = [0u8; 7];
                    let n = l.give_slow(&mut buf);
                    slow.extend_from_slice(&buf[..n]);
                }
                _ => break,
            }
        }
        (msgs, slow)
    }

    #[test]
    fn lane_takes_small_whole_data_frames() {
        let mut wire = frame(0x82, b"abc");
        wire.extend(frame(0x81, "héllo".as_bytes()));
        wire.extend(frame(0x82, &[7u8; 300]));
        let (msgs, slow) = drain(&mut lane(&wire));
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0], Message::binary(&b"abc"[..]));
        assert_eq!(msgs[1], Message::text("héllo"));
        assert_eq!(msgs[2].len(), 300);
        assert!(slow.is_empty());
    }

    #[test]
    fn lane_leaves_every_other_frame_to_tungstenite_whole_and_in_order() {
        let ping = frame(0x89, b"p");
        let close = frame(0x88, &[3, 232]);
        let mut first = frame(0x01, b"frag"); // text, not FIN
        let cont = frame(0x80, b"ment"); // continuation, FIN
        let big = frame(0x82, &vec![1u8; FAST_BELOW]);
        let bad_text = frame(0x81, &[0xff, 0xfe]);
        let rsv = frame(0xC2, b"x");
        let mut wire = frame(0x82, b"a");
        for f in [&ping, &first, &ping, &cont, &big, &bad_text, &rsv] {
            wire.extend_from_slice(f);
            wire.extend(frame(0x82, b"b"));
        }
        wire.extend_from_slice(&close);
        let mut l = lane(&wire);
        let mut seen = vec![];
        let mut slow_bytes = vec![];
        for _ in 0..10_000 {
            if let Some(m) = l.take() {
                seen.push(m);
                continue;
            }
            if l.front() == Front::Slow && l.slow_buffered() {
                let mut buf = [0u8; 5];
                let n = l.give_slow(&mut buf);
                slow_bytes.extend_from_slice(&buf[..n]);
                continue;
            }
            break;
        }
        // The fragmented message's frames (and the ping between them) are
        // tungstenite's, so the data frame after the first fragment is too.
        first.extend(frame(0x82, b"b"));
        first.extend_from_slice(&ping);
        first.extend(frame(0x82, b"b"));
        first.extend_from_slice(&cont);
        let mut want_slow = ping.clone();
        want_slow.extend_from_slice(&first);
        for f in [&big, &bad_text, &rsv, &close] {
            want_slow.extend_from_slice(f);
        }
        let first_diff = slow_bytes.iter().zip(&want_slow).position(|(a, b)| a != b);
        assert_eq!(
            (slow_bytes.len(), first_diff),
            (want_slow.len(), None),
            "tungstenite's bytes"
        );
        // "a", the "b" after the first ping, then one "b" after each of
        // cont, big, bad_text, rsv.
        assert_eq!(seen.len(), 6);
        assert!(seen.iter().all(|m| m.len() == 1));
    }

    #[test]
    fn lane_waits_for_the_rest_of_a_split_frame() {
        let wire = frame(0x82, &[9u8; 200]);
        for cut in 0..wire.len() {
            let mut l = lane(&wire[..cut]);
            assert_eq!(l.take(), None, "cut at {cut}");
            assert_eq!(l.front(), Front::Incomplete, "cut at {cut}");
            l.preload(&wire[cut..]);
            assert_eq!(l.take().map(|m| m.len()), Some(200), "cut at {cut}");
        }
    }

    #[test]
    fn lane_respects_the_limits() {
        let mut l = Lane::new(4096, 10, 1 << 20);
        l.preload(&frame(0x82, &[0u8; 11]));
        assert_eq!(l.take(), None, "over max_message: tungstenite's to refuse");
        assert_eq!(l.front(), Front::Slow);
        let mut l = Lane::new(4096, 1 << 20, 10);
        l.preload(&frame(0x82, &[0u8; 10]));
        assert!(l.take().is_some(), "at the limit");
    }

    #[test]
    fn lane_read_straight_into_tungstenite_keeps_what_follows() {
        let big = frame(0x82, &vec![5u8; FAST_BELOW + 10]);
        let mut l = lane(&big[..6]);
        assert_eq!(l.front(), Front::Slow);
        let mut buf = [0u8; 8];
        assert_eq!(l.give_slow(&mut buf), 6);
        // The rest of the frame and a lane frame, read into tungstenite's buffer.
        let mut rest = big[6..].to_vec();
        rest.extend(frame(0x82, b"next"));
        let n = rest.len();
        assert_eq!(l.keep_slow(&rest, n), big.len() - 6);
        assert_eq!(l.take(), Some(Message::binary(&b"next"[..])));
    }

    #[test]
    fn lane_parks_shared_buffers_reuses_free_ones_and_trims_when_quiet() {
        let wire = frame(0x82, &[3u8; 1000]);
        let mut l = Lane::new(4096, 1 << 20, 1 << 20);
        let mut held = vec![];
        // Each read fills a buffer whose messages are then held (queued).
        for _ in 0..10 {
            let spare = l.spare();
            let n = spare.len().min(wire.len() * 4) / wire.len() * wire.len();
            for i in 0..n / wire.len() {
                spare[i * wire.len()..(i + 1) * wire.len()].copy_from_slice(&wire);
            }
            l.filled(n);
            while let Some(m) = l.take() {
                held.push(m);
            }
        }
        assert_eq!(held.len(), 40);
        assert!(l.parked.len() >= 8, "{} parked", l.parked.len());
        let parked = l.parked.len();
        // Messages still held: nothing to trim.
        l.trim();
        assert_eq!(l.parked.len(), parked);
        // Once they are gone, a read reuses a parked buffer rather than allocating.
        held.clear();
        let before = l.parked.len();
        let _ = l.spare();
        l.filled(0);
        assert!(l.parked.len() <= before, "reused, not grown");
        l.trim();
        assert!(l.parked.len() <= FREE_KEEP, "{} kept", l.parked.len());
    }

    #[test]
    fn lane_spare_and_filled_append_what_a_read_kept() {
        let wire = frame(0x82, b"xyz");
        let mut l = lane(&[]);
        let spare = l.spare();
        spare[..wire.len()].copy_from_slice(&wire);
        l.filled(wire.len());
        assert_eq!(l.take(), Some(Message::binary(&b"xyz"[..])));
        assert_eq!(l.front(), Front::Incomplete);
    }
}
