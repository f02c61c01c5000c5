//! A consumer's own reads of the socket: under `Block` without a filter, a
//! consumer that finds the inbox empty reads the next message itself, under
//! the connection's lock, when the reading state lets it. Handing a message
//! to another thread costs more than reading it, and with nothing queued
//! there is no order to keep.
//!
//! Owns the consumer's side of the hand-over: its wait loop (take from the
//! inbox, read, watch the socket, park on the inbox) and its moves of
//! [`Reading`](super::reading::Reading). The I/O thread's side is in `io_thread`.

use std::time::{Duration, Instant};

use super::{would_block, Shared};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::queue::payload_len;
use crate::Message;

/// A consumer that found the socket empty watches it this long before it
/// hands the watch back to the I/O thread and parks: a message that comes
/// sooner costs no thread hand-over (the kernel wakes the consumer, as it
/// would wake a one-thread reader), and a quiet connection costs one
/// hand-over per quiet spell. See `reading` for how it relates to the others.
const WATCH: Duration = Duration::from_millis(2);
/// How long a consumer in the middle of a message waits, awake, for
/// `PARTIAL_PIECE` bytes before it sleeps until the socket is readable: each
/// wake costs a poll, a read and one more read that finds the socket dry,
/// where a one-thread reader sleeps in `recv`.
const PARTIAL_SPIN: Duration = Duration::from_micros(10);
const PARTIAL_PIECE: usize = 32 << 10;

/// What a consumer's own read of the socket gave.
enum Direct {
    Message(Message),
    /// The socket has nothing now.
    Empty,
    /// Messages were queued meanwhile: take those first.
    Queued,
    /// The reading state does not let consumers read now.
    Unavailable,
}

impl Shared {
    /// `recv` for [`Flavor::Direct`](super::Flavor::Direct): the inbox first,
    /// else the socket, else a watch of the socket, else a park on the inbox.
    #[inline(always)]
    pub(super) fn recv_direct(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
        let mut watch = Backoff::new(WATCH, deadline);
        loop {
            // Only the connection's lock: the read checks again under it that
            // nothing is queued. Never under the inbox's lock, which the I/O
            // thread takes while it holds the connection's.
            if self.inbox.is_empty() {
                match self.read_direct() {
                    Direct::Message(msg) => return Ok(Some(msg)),
                    Direct::Queued => {}
                    Direct::Empty => {
                        if let Some(left) = watch.left() {
                            self.watch(left);
                            continue;
                        }
                        self.park();
                        return self.inbox.pop_deadline(deadline);
                    }
                    Direct::Unavailable => return self.inbox.pop_deadline(deadline),
                }
            }
            if let Some(msg) = self.inbox.try_pop()? {
                return Ok(Some(msg));
            }
        }
    }

    #[inline(always)]
    fn read_direct(&self) -> Direct {
        let mut io = self.lock_io();
        // The I/O thread pushes under this lock, so the check is exact.
        if !self.inbox.is_empty() {
            return Direct::Queued;
        }
        if !io.reading.consumers_may_read() || io.fatal.is_some() {
            return Direct::Unavailable;
        }
        let before = io.ws.get_ref().bytes_read();
        match crate::stream::read_message(&mut io.ws) {
            Ok(Message::Close(frame)) => {
                io.reading.hand_off(Ok(Message::Close(frame)));
                drop(io);
                self.wake();
                Direct::Unavailable
            }
            Ok(msg) => {
                io.direct_messages += 1;
                io.direct_bytes += payload_len(&msg) as u64;
                io.reading.consumer_read();
                if msg.is_ping() {
                    // tungstenite queued the pong: send it now, or have the
                    // I/O thread finish it.
                    if let Err(e) = io.flush() {
                        io.fatal = Some(Error::from_ws(e));
                    }
                    if io.write_pending || io.fatal.is_some() {
                        drop(io);
                        self.wake();
                    }
                }
                Direct::Message(msg)
            }
            Err(e) if would_block(&e) => {
                let partial = io.ws.get_ref().bytes_read() != before;
                io.reading.consumer_found_empty(partial);
                Direct::Empty
            }
            Err(e) => {
                io.reading.hand_off(Err(e));
                drop(io);
                self.wake();
                Direct::Unavailable
            }
        }
    }

    /// Waits, holding no lock, until the socket may be readable or `timeout` passes.
    fn watch(&self, timeout: Duration) {
        if self.lock_io().reading.consumer_partial() {
            // The rest of a message is arriving (a large one, most likely):
            // wait briefly for a good part of it rather than wake for each piece.
            let mut spin = Backoff::new(PARTIAL_SPIN.min(timeout), None);
            while spin.left().is_some() {
                if crate::socket::recv_queue(&self.probe).unwrap_or(0) >= PARTIAL_PIECE {
                    return;
                }
                spin.spin();
            }
        }
        crate::socket::wait_readable(&self.probe, timeout);
    }

    /// The consumer stops watching and parks on the inbox: the I/O thread
    /// watches the socket again.
    fn park(&self) {
        let wake = self.lock_io().reading.consumer_parks();
        if wake {
            self.wake();
        }
    }
}
