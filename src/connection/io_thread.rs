//! One connection's I/O state machine, [`IoThread`]: owns the socket between
//! consumers' reads. Each turn it writes what the outbox holds, runs the close
//! handshake and keepalive, settles who reads (`reading::decide`) and reads
//! ahead into the inbox when that is its job, and says how long it may sleep.
//!
//! Two drivers call `turn`: the dedicated thread here (`run`, which waits on
//! the connection's own poller: readiness, the waker, a timer), and a hub
//! thread (`hub`), which holds many connections and turns the ones whose
//! socket is ready, whose waker was called or whose timer is due. The state
//! machine does not know which drives it; the ending (`finish`) is split
//! into steps so that a hub thread never waits inside it.
//!
//! It must not block while holding the connection's lock, and it never runs
//! user code.

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel as channel;
use polling::{Event, Events, PollMode};
use tungstenite::protocol::frame::coding::CloseCode;

use super::reading::{self, Decision, Snapshot};
use super::slab::Slab;
use super::{would_block, Io, IoOptions, Shared};
use crate::error::{Error, Phase};
use crate::queue::{payload_len, Item};
use crate::stream::Stream;
use crate::{CloseFrame, Message, Utf8Bytes};

/// Messages read per lock of the inbox.
const BATCH: usize = 64;
/// Bytes read per lock of the inbox: bounds what the reader holds outside it.
const BATCH_BYTES: usize = 256 << 10;
/// Messages read before the I/O thread looks at its outbox and timers again.
const READ_TURN: usize = 1024;
/// A connection quiet this long (nothing read, nothing queued) frees the
/// spare read buffers its queued messages had shared (`lane`), at its next
/// turn (the keepalive tick gives one). Far longer than a flood's gaps, where
/// freeing them would only have the next reads allocate (and fault in) new
/// ones; short next to how long an idle connection lives.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// How often an ending connection that owes the peer a close code looks
/// whether the handler has taken everything read before the fault.
const SETTLE_TICK: Duration = Duration::from_millis(50);
/// How long the owed close frame may wait for room in a full socket buffer.
const SETTLE_FLUSH: Duration = Duration::from_millis(200);
/// How often that flush is tried again.
const SETTLE_FLUSH_TICK: Duration = Duration::from_millis(2);

/// Why the I/O loop stopped.
pub(super) struct Ended {
    error: Error,
    /// The close code owed to the peer for a fault it caused; sent once the
    /// handler has taken everything read before the fault.
    owed_close: Option<CloseCode>,
}

/// An ending connection that owes the peer a close code (see `settle_step`).
pub(super) struct Settling {
    code: CloseCode,
    deadline: Instant,
    /// The close frame is written; its flush may wait until then.
    flush_until: Option<Instant>,
}

/// The I/O thread's own state: nobody else touches it (on a hub, the hub
/// thread that holds it is its I/O thread).
pub(super) struct IoThread {
    shared: Arc<Shared>,
    outbox: channel::Receiver<Message>,
    opts: IoOptions,
    /// Read but not yet in the inbox (the inbox was full, or the batch is open).
    pending: VecDeque<Item>,
    pending_bytes: usize,
    filtered: u64,
    close_sent: bool,
    close_deadline: Option<Instant>,
    peer_close: Option<CloseFrame>,
    our_close: Option<CloseFrame>,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    interest: (bool, bool),
    unpin: Slab,
    /// The peer's close frame had a code the protocol does not allow.
    bad_close: bool,
    /// `Io::direct_messages` as of the last turn.
    seen_direct: u64,
    /// The inbox's count of messages taken, as of the last turn.
    seen_taken: u64,
    /// Messages and bytes read since the last `push`, not yet in the counters.
    uncounted: (u64, u64),
    /// Bytes read off the stream (by any thread) as of the last turn: any
    /// byte is a sign of life, a message in progress too.
    seen_bytes: u64,
    /// Since when nothing was read and nothing queued (see `TRIM_AFTER`).
    quiet_since: Option<Instant>,
}

/// What to do after one read.
enum Next {
    Read,
    /// The socket has nothing now, or the inbox is full.
    Stop,
}

impl IoThread {
    pub(super) fn new(
        shared: Arc<Shared>,
        outbox: channel::Receiver<Message>,
        opts: IoOptions,
    ) -> IoThread {
        let next_ping = opts.ping_interval.map(|i| Instant::now() + i);
        let unpin = Slab::new(opts.payload_chunk);
        IoThread {
            shared,
            outbox,
            opts,
            pending: VecDeque::new(),
            pending_bytes: 0,
            filtered: 0,
            close_sent: false,
            close_deadline: None,
            peer_close: None,
            our_close: None,
            next_ping,
            pong_deadline: None,
            interest: (true, false),
            unpin,
            bad_close: false,
            seen_direct: 0,
            seen_taken: 0,
            seen_bytes: 0,
            quiet_since: None,
            uncounted: (0, 0),
        }
    }

    pub(super) fn run(mut self) {
        // A panic here (a bug, ours or a dependency's) must still end the
        // connection for the consumer, or `recv` would wait forever.
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()))
            .unwrap_or_else(|panic| self.panicked(&*panic));
        self.finish(ended);
    }

    fn panicked(&self, panic: &(dyn std::any::Any + Send)) -> Ended {
        let what = crate::error::panic_message(panic);
        log::error!("wsapp I/O thread panicked: {what}");
        self.end_with(Error::Io(io::Error::other(format!(
            "the I/O thread panicked: {what}"
        ))))
    }

    /// The connection's state, for the hub thread that drives it.
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// One turn for a hub thread: as `run_loop`'s, with a panic ending this
    /// connection only. `Ok(wait)`: turn again after `wait` at the latest
    /// (`None`: only on readiness or the waker).
    pub(super) fn hub_turn(&mut self) -> std::result::Result<Option<Duration>, Ended> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.turn()))
            .unwrap_or_else(|panic| Err(self.panicked(&*panic)))
    }

    fn run_loop(&mut self) -> Ended {
        let mut events = Events::new();
        loop {
            match self.turn() {
                // More to read at once: a zero-timeout wait would be five
                // syscalls in `polling` to learn nothing.
                Ok(Some(Duration::ZERO)) => {}
                Ok(timeout) => {
                    events.clear();
                    if let Err(e) = self.shared.poller.wait(&mut events, timeout) {
                        if e.kind() != io::ErrorKind::Interrupted {
                            return self.end_with(Error::Io(e));
                        }
                    }
                }
                Err(ended) => return ended,
            }
        }
    }

    /// Ends the connection on the dedicated thread: the steps below, with
    /// the settling waits on the connection's own poller.
    fn finish(mut self, ended: Ended) {
        if let Some(mut settling) = self.begin_finish(ended) {
            let mut events = Events::new();
            while let Some(wait) = self.settle_step(&mut settling) {
                events.clear();
                let _ = self.shared.poller.wait(&mut events, Some(wait));
            }
        }
        self.end_finish();
    }

    /// The first step of the end: what was read goes to the inbox, then the
    /// error. `Some`: a close code is owed to the peer; call `settle_step`
    /// until it returns `None`, then `end_finish`.
    pub(super) fn begin_finish(&mut self, ended: Ended) -> Option<Settling> {
        let sh = self.shared.clone();
        match &ended.error {
            Error::Closed(_) => log::debug!("connection closed: {}", ended.error),
            e => log::debug!("connection ended: {e}"),
        }
        // No consumer reads the socket past the end.
        sh.lock_io().reading.end();
        if ended.owed_close.is_none() {
            // Before `recv` can report the end, so that a send after it fails.
            sh.ended.store(true, Ordering::Release);
        }
        let (n, bytes) = std::mem::take(&mut self.uncounted);
        sh.counters.count_in_batch(n, bytes);
        // Everything read before the end is delivered first, then the error.
        sh.inbox.finish(&mut self.pending, ended.error);
        let code = ended.owed_close?;
        {
            let io = sh.lock_io();
            // Only the waker matters now.
            let _ = sh.poller.modify_with_mode(
                io.ws.get_ref().tcp(),
                Event::none(sh.key),
                PollMode::Level,
            );
        }
        Some(Settling {
            code,
            deadline: Instant::now() + self.opts.close_timeout,
            flush_until: None,
        })
    }

    /// The last step of the end: the socket leaves the poller and is shut,
    /// senders get `Closed`, and `done` is set.
    pub(super) fn end_finish(&mut self) {
        let sh = self.shared.clone();
        {
            let io = sh.lock_io();
            let tcp = io.ws.get_ref().tcp();
            let _ = sh.poller.delete(tcp);
            let _ = tcp.shutdown(Shutdown::Both);
        }
        sh.ended.store(true, Ordering::Release);
        // Senders blocked on a full outbox get `Closed` once the receiver is gone.
        sh.outbox.close();
        drop(std::mem::replace(&mut self.outbox, channel::never()));
        sh.done.signal();
    }

    /// After a fault the peer caused: lets the handler answer the messages
    /// read before it (their replies still go out), then sends the close code
    /// the protocol asks for. Bounded by the close timeout. One step: writes
    /// what it can and returns how long to wait before the next (`None`: done).
    pub(super) fn settle_step(&mut self, s: &mut Settling) -> Option<Duration> {
        let sh = self.shared.clone();
        let now = Instant::now();
        if let Some(until) = s.flush_until {
            // The close frame is written; waiting for room to flush it.
            let mut io = sh.lock_io();
            let full = matches!(io.ws.flush(), Err(ref e) if would_block(e));
            return (full && now < until).then_some(SETTLE_FLUSH_TICK);
        }
        {
            let mut io = sh.lock_io();
            while let Some(msg) = self.next_out() {
                if self.write(&mut io, msg).is_err() {
                    return None;
                }
            }
        }
        if !sh.inbox.end_seen() && now < s.deadline {
            return Some(s.deadline.saturating_duration_since(now).min(SETTLE_TICK));
        }
        // From here on sends are refused; what is queued still goes out.
        sh.closing.store(true, Ordering::Release);
        let mut io = sh.lock_io();
        while let Some(msg) = self.next_out() {
            if self.write(&mut io, msg).is_err() {
                return None;
            }
        }
        let frame = CloseFrame {
            code: s.code,
            reason: Utf8Bytes::from(""),
        };
        // Best effort: the connection ends either way. Give a full socket
        // buffer a moment to take the close frame.
        let _ = io.ws.close(Some(frame));
        if matches!(io.ws.flush(), Err(ref e) if would_block(e)) {
            s.flush_until = Some(now + SETTLE_FLUSH);
            return Some(SETTLE_FLUSH_TICK);
        }
        None
    }

    /// The next message from the outbox; its bytes are given back to senders.
    fn next_out(&self) -> Option<Message> {
        let msg = self.outbox.try_recv().ok()?;
        self.shared.outbox.release(payload_len(&msg));
        Some(msg)
    }

    pub(super) fn end_with(&self, error: Error) -> Ended {
        Ended {
            error,
            owed_close: None,
        }
    }

    /// One pass: writes, close, keepalive, who reads, reads. Returns how long to wait.
    fn turn(&mut self) -> std::result::Result<Option<Duration>, Ended> {
        let sh = self.shared.clone();
        let mut io = sh.lock_io();
        let (more, decision, held_back) = match self.turn_locked(&sh, &mut io) {
            Ok(turned) => turned,
            Err(ended) => {
                // No consumer reads past the end, not even in the moment
                // before `begin_finish` takes the lock again: behind a
                // faulty frame it would answer a ping, or deliver a message.
                io.reading.end();
                return Err(ended);
            }
        };
        drop(io);
        let next = self.timers(held_back)?;
        Ok(reading::sleep_for(Instant::now(), next, more, decision))
    }

    /// The part of a turn under the connection's lock. `Ok`: whether more
    /// is to be read at once, the turn's decision, and whether data is held back.
    fn turn_locked(
        &mut self,
        sh: &Shared,
        io: &mut Io,
    ) -> std::result::Result<(bool, Decision, bool), Ended> {
        if let Some(e) = io.fatal.take() {
            return Err(self.end_with(e));
        }
        let taken = sh.inbox.taken();
        let consumer_took = io.direct_messages != self.seen_direct || taken != self.seen_taken;
        self.seen_direct = io.direct_messages;
        self.seen_taken = taken;
        // What a consumer handed over (the peer's close, say) is taken
        // before anything is written: nothing may follow a close.
        let mut more = match io.reading.take_hand_off() {
            Some(read) => self.read_side(io, Some(read))?,
            None => false,
        };
        self.write_side(io)?;
        if !self.pending.is_empty() {
            // What a full inbox held back goes first, before any read.
            self.push();
        }
        let queued = sh.inbox.len();
        let snapshot = Snapshot {
            direct: sh.inbox.allows_direct(),
            held_back: !self.pending.is_empty(),
            closing: self.close_sent,
            queued,
            consumer_took,
        };
        let decision = reading::decide(&snapshot, &io.reading);
        io.reading.settle(decision);
        if decision.io_reads() {
            more |= self.read_side(io, None)?;
        }
        // What this turn's reads changed: a full inbox, a close.
        if !self.pending.is_empty() {
            io.reading.settle(Decision::HeldBack);
        } else if self.close_sent {
            io.reading.settle(Decision::IoThread);
        }
        let bytes = io.ws.get_ref().bytes_read();
        if bytes != self.seen_bytes {
            self.seen_bytes = bytes;
            self.pong_deadline = None;
            self.quiet_since = None;
        } else if self.pending.is_empty() && sh.inbox.is_empty() {
            // Quiet: nothing read for a whole turn, nothing queued.
            let now = Instant::now();
            let since = *self.quiet_since.get_or_insert(now);
            if now - since >= TRIM_AFTER {
                io.ws.get_mut().trim_read_buffers();
            }
        }
        // A consumer taking what is queued reads nothing from the socket:
        // the data it holds back delays the pong as a full inbox does.
        let held_back =
            io.reading.keepalive_suspended() || (decision == Decision::StandBack && queued > 0);
        let interest = (io.reading.io_thread_polls(), io.write_pending);
        if interest != self.interest {
            let tcp = io.ws.get_ref().tcp();
            let key = sh.key;
            let ev = match interest {
                (true, true) => Event::all(key),
                (true, false) => Event::readable(key),
                (false, true) => Event::writable(key),
                (false, false) => Event::none(key),
            };
            sh.poller
                .modify_with_mode(tcp, ev, PollMode::Level)
                .map_err(|e| self.end_with(Error::Io(e)))?;
            self.interest = interest;
        }
        Ok((more, decision, held_back))
    }

    fn write_side(&mut self, io: &mut Io) -> std::result::Result<(), Ended> {
        if io.write_pending {
            self.flush(io)?;
        }
        while !io.write_pending {
            let Some(msg) = self.next_out() else {
                break;
            };
            self.write(io, msg)?;
        }
        let request = if self.close_sent {
            None
        } else {
            self.shared
                .close_request
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        if let Some(frame) = request {
            // Everything sent before the close goes first, whatever the socket's state.
            while let Some(msg) = self.next_out() {
                let len = payload_len(&msg);
                match io.write(msg) {
                    Ok(()) => self.shared.counters.count_out(len),
                    Err(e) if would_block(&e) => self.shared.counters.count_out(len),
                    Err(e) => return Err(self.end_with(Error::from_ws(e))),
                }
            }
            log::debug!("sending close {frame:?}");
            self.our_close = frame.clone();
            self.close_sent = true;
            self.close_deadline = Some(Instant::now() + self.opts.close_timeout);
            match io.ws.close(frame) {
                Ok(()) => io.write_pending = false,
                Err(e) if would_block(&e) => io.write_pending = true,
                Err(e) => return Err(self.end_with(Error::from_ws(e))),
            }
        }
        if let (Some(at), false, true) = (self.next_ping, self.close_sent, io.ws.can_write()) {
            if Instant::now() >= at {
                let interval = self.opts.ping_interval.unwrap_or(Duration::MAX);
                self.next_ping = Some(Instant::now() + interval);
                if self.pong_deadline.is_none() {
                    self.pong_deadline = self.opts.ping_timeout.map(|t| Instant::now() + t);
                }
                log::trace!("keepalive ping");
                self.write(io, Message::Ping(self.opts.ping_payload.clone()))?;
            }
        }
        Ok(())
    }

    fn write(&mut self, io: &mut Io, msg: Message) -> std::result::Result<(), Ended> {
        let len = payload_len(&msg);
        match io.write(msg) {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(self.end_with(Error::from_ws(e))),
        }
        self.shared.counters.count_out(len);
        self.flush(io)
    }

    fn flush(&mut self, io: &mut Io) -> std::result::Result<(), Ended> {
        io.flush().map_err(|e| self.fail(e))
    }

    /// Reads while the inbox takes messages. `Ok(true)`: stopped with data left
    /// in buffers the poller cannot see, so do not sleep.
    /// `handoff`: what a consumer read that only this thread handles.
    fn read_side(
        &mut self,
        io: &mut Io,
        handoff: Option<tungstenite::Result<Message>>,
    ) -> std::result::Result<bool, Ended> {
        if !self.pending.is_empty() {
            // `turn` has just tried to push it: the inbox is still full.
            return Ok(false);
        }
        let mut flush = false;
        let mut more = false;
        let mut next = match handoff {
            Some(read) => self.take(read, io.ws.get_ref(), &mut flush)?,
            None => Next::Read,
        };
        let mut n = 0;
        while let Next::Read = next {
            if n == READ_TURN {
                more = true;
                break;
            }
            n += 1;
            // Matched here, not in `take`: moving a whole `Result` (with
            // tungstenite's large error type) per message shows in a flood.
            next = match crate::stream::read_message(&mut io.ws) {
                Ok(msg) => self.take_message(msg, io.ws.get_ref(), &mut flush)?,
                Err(e) => self.take_error(e)?,
            };
        }
        // A turn cut short by `READ_TURN` goes on at once: its push is a
        // push in the middle of a read, not the turn's last.
        self.push_batch(more);
        if flush {
            self.flush(io)?;
        }
        Ok(more && self.pending.is_empty())
    }

    /// Takes the result of one read (its own, or one a consumer handed over).
    /// Sets `flush` when tungstenite queued a reply (pong, close). `stream`
    /// has the peer's close frame as sent.
    fn take(
        &mut self,
        read: tungstenite::Result<Message>,
        stream: &Stream,
        flush: &mut bool,
    ) -> std::result::Result<Next, Ended> {
        match read {
            Ok(msg) => self.take_message(msg, stream, flush),
            Err(e) => self.take_error(e),
        }
    }

    /// A read that gave no message: the socket is dry, or the end.
    #[cold]
    fn take_error(&mut self, e: tungstenite::Error) -> std::result::Result<Next, Ended> {
        match e {
            e if would_block(&e) => Ok(Next::Stop),
            tungstenite::Error::ConnectionClosed => {
                self.push();
                if self.bad_close {
                    return Err(self.end_with(Error::InvalidCloseCode));
                }
                let frame = self.peer_close.clone().or_else(|| self.our_close.clone());
                Err(self.end_with(Error::Closed(frame)))
            }
            e => {
                self.push();
                Err(self.fail(e))
            }
        }
    }

    /// A message read (by this thread, or handed over by a consumer).
    #[inline]
    fn take_message(
        &mut self,
        msg: Message,
        stream: &Stream,
        flush: &mut bool,
    ) -> std::result::Result<Next, Ended> {
        // Any frame is a sign of life.
        self.pong_deadline = None;
        match msg {
            Message::Close(frame) => {
                // As sent: tungstenite may show its substitute for an invalid
                // code (and has answered it with 1002), or the code `wire` rewrote.
                let (frame, valid) = crate::wire::reported_close(stream.peer_close(), frame);
                log::debug!("server sent close {frame:?}");
                self.bad_close = !valid;
                self.peer_close = frame;
                self.close_sent = true;
                if self.close_deadline.is_none() {
                    self.close_deadline = Some(Instant::now() + self.opts.close_timeout);
                }
                *flush = true; // tungstenite's queued close reply
                return Ok(Next::Read);
            }
            Message::Ping(_) => *flush = true,
            _ => {}
        }
        // Under `Block` without a filter the queue holds an unbroken run of
        // the stream, so payloads that share the lane's read buffer keep
        // only as much of it as they fill; anywhere else a kept message
        // could pin a whole buffer, and is copied out (`slab`).
        let msg = if self.shared.inbox.keeps_runs() && stream.lane_on() {
            msg
        } else {
            self.unpin.unpin(msg)
        };
        // Counted per batch (in `push`): two shared atomics per message cost
        // more than the rest of this function.
        self.uncounted.0 += 1;
        self.uncounted.1 += payload_len(&msg) as u64;
        match self.shared.inbox.classify_into(msg, &mut self.pending) {
            Some(size) => self.pending_bytes += size,
            None => self.filtered += 1,
        }
        if self.pending.len() >= BATCH || self.pending_bytes >= BATCH_BYTES {
            if !self.push_more() {
                return Ok(Next::Stop);
            }
            if self.shared.inbox.allows_direct() && self.shared.inbox.taken() != self.seen_taken {
                // The consumer has started taking: end the turn, so the next
                // one can stand back rather than read ahead a whole turn.
                return Ok(Next::Stop);
            }
        }
        Ok(Next::Read)
    }

    /// Moves the batch into the inbox; `false` when the inbox is full (pause).
    fn push(&mut self) -> bool {
        self.push_batch(false)
    }

    /// As `push`, in the middle of a read turn: more follows at once.
    fn push_more(&mut self) -> bool {
        self.push_batch(true)
    }

    fn push_batch(&mut self, more: bool) -> bool {
        let (n, bytes) = std::mem::take(&mut self.uncounted);
        self.shared.counters.count_in_batch(n, bytes);
        let all = self.shared.inbox.push_batch(
            &mut self.pending,
            std::mem::take(&mut self.filtered),
            more,
        );
        self.pending_bytes = self.pending.iter().map(Item::size).sum();
        all
    }

    /// Ends on a read or write error; a fault of the peer's owes it a close code.
    fn fail(&self, e: tungstenite::Error) -> Ended {
        use tungstenite::error::ProtocolError;
        let wire = crate::wire::WireError::find(&e);
        let code = match &e {
            _ if wire.is_some() => wire.map(crate::wire::WireError::close_code),
            tungstenite::Error::Capacity(_) => Some(CloseCode::Size),
            tungstenite::Error::Utf8(_) => Some(CloseCode::Invalid),
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
            tungstenite::Error::Protocol(_) => Some(CloseCode::Protocol),
            _ => None,
        };
        Ended {
            error: wire.map_or_else(|| Error::from_ws(e), Error::from),
            owed_close: code.filter(|_| !self.close_sent),
        }
    }

    /// Checks deadlines; returns how long the poller may sleep.
    /// Checks deadlines; returns the next one. `held_back`: nobody reads
    /// because data is held back, so a pong cannot be seen.
    fn timers(&mut self, held_back: bool) -> std::result::Result<Option<Instant>, Ended> {
        let now = Instant::now();
        if let Some(d) = self.close_deadline {
            if now >= d {
                // Both close frames went by and the peer keeps TCP open: end as
                // on its EOF; `finish` shuts TCP (RFC 6455 7.1.1).
                let sh = self.shared.clone();
                let io = sh.lock_io();
                if !io.ws.can_read() && !io.reading.has_hand_off() {
                    let read = Err(tungstenite::Error::ConnectionClosed);
                    return self.take(read, io.ws.get_ref(), &mut false).map(|_| None);
                }
                return Err(self.end_with(Error::Timeout(Phase::Close)));
            }
        }
        if let Some(d) = self.pong_deadline {
            if held_back {
                // The pong cannot be seen behind held-back data: the deadline waits too.
                let timeout = self.opts.ping_timeout.unwrap_or_default();
                self.pong_deadline = Some(d.max(now + timeout));
            } else if now >= d {
                return Err(self.end_with(Error::Timeout(Phase::Pong)));
            }
        }
        Ok([self.close_deadline, self.pong_deadline, self.next_ping]
            .into_iter()
            .flatten()
            .min())
    }
}
