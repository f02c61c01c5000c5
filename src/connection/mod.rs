//! Connection layer: the I/O thread, the outbox, who reads the socket, and
//! the [`WebSocket`] and [`Sender`] handles.
//!
//! Owns the socket after the handshake: only code in this module reads or
//! writes it. What two threads share is [`Shared`], in one place: the
//! tungstenite `WebSocket` behind a mutex that no thread holds while it waits
//! (with the reading state, [`reading::Reading`], under it), the outbox, the
//! inbox, the poller (whose `notify` is the waker) and counters. Policies
//! live in `queue`, counters in `stats`; this module only moves data.
//!
//! Files: `sender` (the [`Sender`] handle: sending, starting a close, stats),
//! `websocket` (the [`WebSocket`] handle: start-up, receiving, closing),
//! `io_thread` (one connection's I/O state machine, `IoThread`, and the
//! dedicated thread that drives it), `hub` (the shared threads that drive
//! many of them, for [`Hub`](crate::Hub)),
//! `reading` (who reads: the state, its moves, the I/O thread's decision),
//! `outbox` (what senders queue, bounded in messages and bytes),
//! `direct` (a consumer's own reads under `Block`), `slab` (copying small
//! payloads out of tungstenite's read buffer).
//!
//! Besides the I/O thread, two kinds of callers take the mutex: senders, to
//! write directly when nothing is queued ahead, and consumers, to read the
//! next message when the inbox is empty and the reading state lets them.

mod direct;
mod hub;
mod io_thread;
mod outbox;
mod reading;
mod sender;
mod slab;
mod websocket;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use polling::Poller;

pub(crate) use hub::HubIo;
pub use sender::Sender;
pub use websocket::{Incoming, WebSocket};

use crate::error::{Error, Result};
use crate::queue::Inbox;
use crate::stats::Counters;
use crate::stream::Stream;
use crate::{Bytes, CloseFrame, Message};

pub(crate) use slab::SLAB as DEFAULT_PAYLOAD_CHUNK;

/// What the I/O thread needs from the builder.
#[derive(Debug, Clone)]
pub(crate) struct IoOptions {
    pub(crate) outbox: usize,
    pub(crate) outbox_bytes: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) ping_timeout: Option<Duration>,
    pub(crate) ping_payload: Bytes,
    /// Size of the chunks small payloads are copied into (`slab`).
    pub(crate) payload_chunk: usize,
}

/// The socket-side state: touched by one thread at a time, never held while waiting.
struct Io {
    ws: tungstenite::WebSocket<Stream>,
    /// tungstenite holds unwritten bytes: the socket's send buffer is full.
    write_pending: bool,
    /// An error a direct writer met; the I/O thread ends the connection with it.
    fatal: Option<Error>,
    /// Who reads the socket now.
    reading: reading::Reading,
    /// Messages and payload bytes consumers read themselves. Counted here,
    /// under this lock, rather than in shared atomics bumped per message;
    /// `stats` adds them in.
    direct_messages: u64,
    direct_bytes: u64,
}

/// How `recv` gets its messages, chosen once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// From the inbox only: the I/O thread reads everything.
    Queue,
    /// From the inbox, or, when it is empty and the reading state allows,
    /// from the socket itself (`Block` without a filter).
    Direct,
}

/// Everything the handles and the I/O thread share.
struct Shared {
    io: Mutex<Io>,
    outbox: outbox::Outbox,
    poller: Arc<Poller>,
    /// The socket's key in `poller`: 0 on its own, unique on a hub thread's.
    key: usize,
    /// On a hub: the hub thread's list of connections to turn, which the
    /// waker adds this one to before it notifies the (shared) poller.
    ready: Option<Arc<hub::Ready>>,
    /// This connection is on `ready` and not yet turned (wakes coalesce).
    queued: AtomicBool,
    /// Set once the I/O side has finished: what `WebSocket::close` waits
    /// for on a hub, where there is no thread to join.
    done: Done,
    /// On a hub: called by the hub thread after a turn that left messages
    /// queued, and once after the end (an app's dispatcher schedules itself).
    on_ready: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    inbox: Inbox,
    flavor: Flavor,
    counters: Counters,
    /// The socket's descriptor, for probes from any thread (never read from
    /// or written to; `io` owns the socket and keeps it open).
    probe: crate::socket::Probe,
    /// The close frame the user asked to send; set once.
    close_request: Mutex<Option<Option<CloseFrame>>>,
    closing: AtomicBool,
    ended: AtomicBool,
}

impl Shared {
    fn lock_io(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        if let Some(ready) = &self.ready {
            if self.queued.swap(true, Ordering::AcqRel) {
                // Already on the hub thread's list, not yet turned.
                return;
            }
            ready.push(self.key);
        }
        if let Err(e) = self.poller.notify() {
            log::warn!("waking the I/O thread failed: {e}");
        }
    }

    /// Asks for the close handshake with `frame` (once; later asks do nothing).
    fn request_close(&self, frame: Option<CloseFrame>) {
        let mut req = self.close_request.lock().unwrap_or_else(|p| p.into_inner());
        if req.is_none() && !self.ended.load(Ordering::Acquire) {
            *req = Some(frame);
            self.closing.store(true, Ordering::Release);
            drop(req);
            self.wake();
        }
    }

    /// The next message, waiting until `deadline` (`None`: forever).
    #[inline(always)]
    fn recv(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
        match self.flavor {
            Flavor::Queue => self.inbox.pop_deadline(deadline),
            Flavor::Direct => self.recv_direct(deadline),
        }
    }
}

/// Registers a connection's socket with a poller (its own, or a hub thread's).
fn register(poller: &Poller, tcp: &TcpStream, key: usize) -> std::io::Result<()> {
    // SAFETY: the socket stays open until its I/O side deletes it from the
    // poller: `Io` (which owns it) lives in `Shared`, which that side holds,
    // and it deletes the registration (`IoThread::end_finish`) before it lets go.
    #[allow(unsafe_code)]
    unsafe {
        poller.add_with_mode(tcp, polling::Event::readable(key), polling::PollMode::Level)
    }
}

/// A flag set once, and a wait for it.
#[derive(Default)]
struct Done {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    fn signal(&self) {
        *self.set.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        while !*set {
            set = self.cv.wait(set).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Io {
    /// Writes a message through tungstenite, compressed first when
    /// permessage-deflate was agreed (the deflater keeps wire order: it is
    /// used only under this lock).
    fn write(&mut self, msg: Message) -> tungstenite::Result<()> {
        let msg = self.ws.get_mut().encode(msg);
        self.ws.write(msg)
    }

    /// Flushes what tungstenite holds (see [`flush_or_defer`]).
    fn flush(&mut self) -> tungstenite::Result<()> {
        flush_or_defer(&mut self.ws, &mut self.write_pending)
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)
}

/// Flushes tungstenite's write buffer. A full socket is not an error:
/// tungstenite keeps the bytes and `write_pending` says the rest waits for
/// the socket to be writable (the I/O thread polls for that).
fn flush_or_defer<S: Read + Write>(
    ws: &mut tungstenite::WebSocket<S>,
    write_pending: &mut bool,
) -> tungstenite::Result<()> {
    match ws.flush() {
        Ok(()) => *write_pending = false,
        Err(e) if would_block(&e) => *write_pending = true,
        Err(e) => return Err(e),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use tungstenite::protocol::Role;

    /// A socket whose first `blocked` writes find the send buffer full, and
    /// whose reads hand out `incoming` in pieces of `piece` bytes, the socket
    /// running dry (`WouldBlock`) after each piece.
    #[derive(Default)]
    struct Mock {
        blocked: usize,
        written: Vec<u8>,
        incoming: Vec<u8>,
        piece: usize,
        dry: bool,
    }

    impl Read for Mock {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if std::mem::replace(&mut self.dry, true) || self.incoming.is_empty() {
                self.dry = false;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.piece.min(buf.len()).min(self.incoming.len());
            buf[..n].copy_from_slice(&self.incoming[..n]);
            self.incoming.drain(..n);
            Ok(n)
        }
    }

    impl Write for Mock {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.blocked > 0 {
                self.blocked -= 1;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn client(mock: Mock) -> tungstenite::WebSocket<Mock> {
        tungstenite::WebSocket::from_raw_socket(mock, Role::Client, None)
    }

    #[test]
    fn a_full_socket_defers_the_flush_and_keeps_the_frame() {
        let mut ws = client(Mock {
            blocked: 2,
            ..Mock::default()
        });
        let mut pending = false;
        ws.write(Message::text("hello")).unwrap(); // buffered, no syscall yet
        flush_or_defer(&mut ws, &mut pending).unwrap();
        assert!(pending, "a full socket: the rest waits for writability");
        flush_or_defer(&mut ws, &mut pending).unwrap();
        assert!(pending, "still full");
        flush_or_defer(&mut ws, &mut pending).unwrap();
        assert!(!pending, "the socket took it once it had room");
        let w = &ws.get_ref().written;
        assert_eq!(w[0], 0x81, "FIN | text");
        assert_eq!(w[1] & 0x7F, 5, "payload length");
        assert_eq!(w.len(), 2 + 4 + 5, "header, mask, payload: written once");
    }

    #[test]
    fn a_message_split_by_would_block_arrives_whole() {
        let mut frame = vec![0x82, 126, 0x04, 0x00];
        frame.extend(std::iter::repeat_n(7u8, 1024));
        let mut ws = client(Mock {
            incoming: frame,
            piece: 100,
            ..Mock::default()
        });
        // Pieces of 100 bytes with the socket dry between them: every read
        // but the last stops mid-message with WouldBlock, and tungstenite
        // keeps the part it has.
        let mut stops = 0;
        let msg = loop {
            match ws.read() {
                Ok(m) => break m,
                Err(e) if would_block(&e) && stops < 100 => stops += 1,
                Err(e) => panic!("{e}"),
            }
        };
        assert!(stops >= 10, "{stops} WouldBlocks mid-message");
        assert_eq!(msg.len(), 1024);
        let e = ws.read().unwrap_err();
        assert!(would_block(&e), "then the socket is dry: {e}");
        let mut pending = true;
        flush_or_defer(&mut ws, &mut pending).unwrap();
        assert!(!pending);
    }
}
