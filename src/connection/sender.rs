//! The [`Sender`] handle: send from any thread, start a close, stats.
//!
//! It never reads the socket; it writes it only in `Sender::try_direct`
//! (nothing queued ahead, the lock free), otherwise it queues in the outbox
//! and wakes the I/O side.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, TryLockError};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;

use super::outbox::{Refused, Wait};
#[cfg(doc)]
use super::websocket::WebSocket;
use super::{would_block, Shared};
use crate::error::{Error, Result, TrySendError};
use crate::queue::payload_len;
use crate::stats::Stats;
use crate::{Bytes, CloseFrame, Message, Utf8Bytes};

/// A cloneable handle that sends on a connection from any thread.
///
/// It works while another thread is blocked in [`WebSocket::recv`]. A message
/// is written directly when the socket is free and nothing is queued before it;
/// otherwise it goes to the bounded outbox and the I/O thread writes it.
///
/// # Examples
///
/// ```no_run
/// let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
/// let tx = ws.sender();
/// std::thread::spawn(move || tx.send_text("from another thread"));
/// let reply = ws.recv()?;
/// # Ok::<(), wsapp::Error>(())
/// ```
#[derive(Clone)]
pub struct Sender {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("closing", &self.shared.closing.load(Ordering::Relaxed))
            .field("outbox", &self.shared.outbox.len())
            .finish()
    }
}

impl Sender {
    fn check_open(&self) -> Result<()> {
        if self.shared.closing.load(Ordering::Acquire) || self.shared.ended.load(Ordering::Acquire)
        {
            return Err(Error::Closed(None));
        }
        Ok(())
    }

    /// Writes `msg` now if the socket is free and nothing is queued ahead of it.
    /// `Ok(Err(msg))`: not written, queue it.
    fn try_direct(&self, msg: Message) -> Result<std::result::Result<(), Message>> {
        let mut io = match self.shared.io.try_lock() {
            Ok(io) => io,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(Err(msg)),
        };
        // The I/O thread takes from the outbox only under this lock, so an empty
        // outbox now means no message sent earlier is still waiting.
        if io.write_pending || io.fatal.is_some() || !self.shared.outbox.is_empty() {
            return Ok(Err(msg));
        }
        let len = payload_len(&msg);
        // A full socket is no failure: tungstenite keeps the frame, and the
        // I/O thread finishes the write.
        let res = match io.write(msg) {
            Err(e) if would_block(&e) => Ok(()),
            other => other,
        }
        .and_then(|()| io.flush());
        match res {
            Ok(()) => {
                self.shared.counters.count_out(len);
                if io.write_pending {
                    drop(io);
                    self.shared.wake();
                }
                Ok(Ok(()))
            }
            Err(e) => {
                let err = Error::from_ws(e);
                let reply = Error::ConnectionLost(io::Error::other(err.to_string()));
                io.fatal = Some(err);
                drop(io);
                self.shared.wake();
                Err(reply)
            }
        }
    }

    /// Sends a data or control message (not a close) through the direct
    /// write or the outbox, waiting for room as `wait` allows.
    fn send_with(&self, msg: Message, wait: Wait) -> std::result::Result<(), Refused> {
        if self.check_open().is_err() {
            return Err(Refused::Closed(msg));
        }
        let copy = msg.clone(); // cheap: payloads are reference-counted
        let msg = match self.try_direct(msg) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(msg)) => msg,
            Err(_) => return Err(Refused::Closed(copy)),
        };
        self.shared.outbox.push(msg, wait)?;
        self.shared.wake();
        Ok(())
    }

    /// Sends a message, waiting for room in the outbox if it is full (in
    /// messages, [`Client::outbox`](crate::Client::outbox), or in bytes,
    /// [`Client::outbox_bytes`](crate::Client::outbox_bytes)).
    ///
    /// A `Message::Close` is the same as [`close`](Sender::close).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.sender().send(wsapp::Message::binary(vec![1, 2, 3]))?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send(&self, msg: Message) -> Result<()> {
        if let Message::Close(frame) = msg {
            return self.close_frame(frame);
        }
        self.send_with(msg, Wait::Forever)
            .map_err(Refused::into_error)
    }

    /// Sends a message, waiting at most `timeout` for room in the outbox.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]`(`[`Phase::Send`](crate::Phase::Send)`)` if the outbox stayed full;
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// use std::time::Duration;
    /// ws.sender().send_timeout(wsapp::Message::text("hi"), Duration::from_secs(1))?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_timeout(&self, msg: Message, timeout: Duration) -> Result<()> {
        self.send_deadline(msg, Instant::now() + timeout)
    }

    /// Sends a message, waiting until `deadline` for room in the outbox.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Sender::send_timeout).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    /// ws.sender().send_deadline(wsapp::Message::text("hi"), deadline)?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_deadline(&self, msg: Message, deadline: Instant) -> Result<()> {
        if let Message::Close(frame) = msg {
            return self.close_frame(frame);
        }
        self.send_with(msg, Wait::Until(deadline))
            .map_err(Refused::into_error)
    }

    /// Sends a message if that can be done without waiting.
    ///
    /// # Errors
    ///
    /// Hands the message back in [`TrySendError::Full`] when the outbox is full,
    /// and in [`TrySendError::Closed`] when the connection is closing or closed
    /// (also when a direct write failed, and for a close frame
    /// [`close`](Sender::close) would refuse).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// if let Err(e) = ws.sender().try_send(wsapp::Message::text("tick")) {
    ///     let unsent = e.into_inner();
    ///     # let _ = unsent;
    /// }
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn try_send(&self, msg: Message) -> std::result::Result<(), TrySendError> {
        if let Message::Close(frame) = msg {
            if self.check_open().is_err() {
                return Err(TrySendError::Closed(Message::Close(frame)));
            }
            return self
                .close_frame(frame.clone())
                .map_err(|_| TrySendError::Closed(Message::Close(frame)));
        }
        self.send_with(msg, Wait::No).map_err(|e| match e {
            Refused::Full(m) | Refused::Timeout(m) => TrySendError::Full(m),
            Refused::Closed(m) => TrySendError::Closed(m),
        })
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// As [`send`](Sender::send).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.sender().send_text("hello")?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.send(Message::Text(text.into()))
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send`](Sender::send).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.sender().send_binary(vec![0u8, 1, 2])?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Binary(data.into()))
    }

    /// Sends a ping; the server's pong arrives as `Message::Pong`.
    ///
    /// # Errors
    ///
    /// As [`send`](Sender::send).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.sender().ping(&b"are you there"[..])?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into()))
    }

    /// Starts the close handshake and returns at once; messages sent before it
    /// are written first. The I/O thread waits for the server's close frame up
    /// to the close timeout, then shuts the socket. A second call does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], and nothing is sent, for a code an endpoint may not
    /// send (RFC 6455 7.4: only 1000-1003, 1007-1014 and 3000-4999) or a reason
    /// over 123 bytes of UTF-8. The same goes for a `Message::Close` given to
    /// [`send`](Sender::send) (and to [`try_send`](Sender::try_send), which
    /// hands it back in [`TrySendError::Closed`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.sender().close(1000, "bye")?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.close_frame(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
    }

    fn close_frame(&self, frame: Option<CloseFrame>) -> Result<()> {
        if let Some(f) = &frame {
            crate::wire::check_close(u16::from(f.code), &f.reason)?;
        }
        self.shared.request_close(frame);
        Ok(())
    }

    /// Whether a close has started or the connection has ended.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// assert!(!ws.sender().is_closed());
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.check_open().is_err()
    }

    /// A snapshot of the connection's buffers and counters.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// println!("{}", ws.sender().stats());
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let sh = &self.shared;
        let mut s = Stats::default();
        sh.counters.fill(&mut s);
        sh.inbox.fill(&mut s);
        {
            // What consumers read themselves never passed the inbox.
            let io = sh.lock_io();
            s.read_by_consumer = io.direct_messages;
            s.received += io.direct_messages;
            s.delivered += io.direct_messages;
            s.messages_in += io.direct_messages;
            s.bytes_in += io.direct_bytes;
            s.reader = io.reading.reader();
            let stream = io.ws.get_ref();
            s.compression = stream.compression().copied();
            if let Some((inflated, deflated)) = stream.compression_counts() {
                s.compressed_in = inflated.messages;
                s.compressed_in_wire = inflated.wire;
                s.compressed_in_plain = inflated.plain;
                s.compressed_out = deflated.messages;
                s.compressed_out_wire = deflated.wire;
                s.compressed_out_plain = deflated.plain;
            }
            (s.recv_buffer_size, s.send_buffer_size) =
                crate::socket::buffer_sizes(io.ws.get_ref().tcp());
        }
        s.outbox = sh.outbox.len();
        s.outbox_bytes = sh.outbox.bytes();
        s.kernel_recv_queue = crate::socket::recv_queue(&sh.probe);
        s
    }
}
