//! Connection layer: the I/O thread, the outbox, and the [`WebSocket`] and
//! [`Sender`] handles.
//!
//! Owns the socket after the handshake: only code in this module reads or
//! writes it. The state two threads share is [`Shared`], in one place: the
//! tungstenite `WebSocket` behind a mutex that no thread holds while it waits,
//! the outbox, the inbox, the poller (whose `notify` is the waker) and counters.
//! Besides the I/O thread, two kinds of callers take that mutex: senders, to
//! write directly when nothing is queued ahead, and consumers (through
//! `Reader for Shared`), to read the next message when nothing is queued and
//! the policy is `Block`; the I/O thread then stands back.
//! Policies live in `queue`, counters in `stats`; this module only moves data.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel as channel;
use polling::{Event, Events, PollMode, Poller};
use tungstenite::protocol::frame::coding::CloseCode;

use crate::error::{Error, Phase, Result, TrySendError};
use crate::queue::{payload_len, Direct, Inbox, Item, Reader};
use crate::stats::{Counters, Stats};
use crate::stream::Stream;
use crate::{Bytes, CloseFrame, Message, Response, Utf8Bytes};

/// What the I/O thread needs from the builder.
#[derive(Debug, Clone)]
pub(crate) struct IoOptions {
    pub(crate) outbox: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) ping_timeout: Option<Duration>,
    pub(crate) ping_payload: Bytes,
}

/// Messages read per lock of the inbox.
const BATCH: usize = 64;
/// Bytes read per lock of the inbox: bounds what the reader holds outside it.
const BATCH_BYTES: usize = 256 << 10;
/// Messages read before the I/O thread looks at its outbox and timers again.
const READ_TURN: usize = 1024;
/// How long a consumer in the middle of a message waits, awake, for
/// `PARTIAL_PIECE` bytes before it sleeps until the socket is readable.
const PARTIAL_SPIN: Duration = Duration::from_micros(10);
const PARTIAL_PIECE: usize = 32 << 10;
/// While a consumer reads the socket itself, the I/O thread checks this often
/// whether it still does; a consumer away longer than this (in a slow
/// handler, say) finds the I/O thread reading ahead into the inbox.
const STAND_BACK: Duration = Duration::from_millis(1);

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// The socket-side state: touched by one thread at a time, never held while waiting.
struct Io {
    ws: tungstenite::WebSocket<Stream>,
    /// tungstenite holds unwritten bytes: the socket's send buffer is full.
    write_pending: bool,
    /// An error a direct writer met; the I/O thread ends the connection with it.
    fatal: Option<Error>,
    /// Consumers' own reads of the socket.
    consumer: ConsumerReads,
}

/// How consumers read the socket themselves (under `Block`, when nothing is
/// queued) and take turns with the I/O thread; part of [`Io`].
#[derive(Default)]
struct ConsumerReads {
    /// Set by the I/O thread: a consumer that finds the inbox empty may read
    /// (the policy allows it, the reader holds nothing back, no close is under way).
    allowed: bool,
    /// Messages consumers read themselves: a sign of life, and of a consumer
    /// that keeps up. Counted here, under this lock, rather than in shared
    /// atomics bumped per message; `stats` adds them in.
    messages: u64,
    /// Their payload bytes.
    bytes: u64,
    /// A consumer watches the socket for readability (and will read it).
    watching: bool,
    /// A consumer stopped watching and sleeps: the I/O thread must watch the socket.
    idle: bool,
    /// tungstenite holds part of a message a consumer's read took: the rest
    /// is on its way.
    partial: bool,
    /// The I/O thread is not reading because a consumer is.
    standing_back: bool,
    /// What a consumer read that only the I/O thread handles (a close frame,
    /// an error); it takes it as if it had read it.
    handoff: Option<tungstenite::Result<Message>>,
}

/// Everything the handles and the I/O thread share.
struct Shared {
    io: Mutex<Io>,
    outbox: channel::Sender<Message>,
    poller: Arc<Poller>,
    inbox: Inbox,
    counters: Counters,
    /// A duplicate of the socket's descriptor, for probes from any thread and a
    /// final shutdown; never read from or written to.
    probe: TcpStream,
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
        if let Err(e) = self.poller.notify() {
            log::warn!("waking the I/O thread failed: {e}");
        }
    }

    fn hand_off(&self, mut io: MutexGuard<'_, Io>, read: tungstenite::Result<Message>) -> Direct {
        io.consumer.handoff = Some(read);
        io.consumer.allowed = false;
        drop(io);
        self.wake();
        Direct::Unavailable
    }

    #[inline(always)]
    fn pop(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
        self.inbox.pop(deadline, self)
    }
}

/// A consumer's own reads, while the inbox is empty (see `queue`).
impl Reader for Shared {
    // Inlined, with `Inbox::pop` and `Shared::pop`, into `recv`: each layer a
    // message is returned through costs a copy on the hot path (64 B floods:
    // ~105 -> ~93 ns CPU per message in A/B runs).
    #[inline(always)]
    fn read(&self) -> Direct {
        let mut io = self.lock_io();
        // The producer pushes under this lock, so the check is exact.
        if !self.inbox.is_empty() {
            return Direct::Queued;
        }
        if !io.consumer.allowed || io.fatal.is_some() {
            return Direct::Unavailable;
        }
        let before = io.ws.get_ref().bytes_read();
        match io.ws.read() {
            Ok(Message::Close(frame)) => self.hand_off(io, Ok(Message::Close(frame))),
            Ok(msg) => {
                io.consumer.messages += 1;
                io.consumer.bytes += payload_len(&msg) as u64;
                io.consumer.idle = false;
                io.consumer.watching = false;
                io.consumer.partial = false;
                if msg.is_ping() {
                    // tungstenite queued the pong: send it now.
                    match io.ws.flush() {
                        Ok(()) => io.write_pending = false,
                        Err(e) if would_block(&e) => {
                            io.write_pending = true;
                            drop(io);
                            self.wake();
                        }
                        Err(e) => {
                            io.fatal = Some(Error::from_ws(e));
                            drop(io);
                            self.wake();
                        }
                    }
                }
                Direct::Message(msg)
            }
            Err(e) if would_block(&e) => {
                io.consumer.watching = true;
                io.consumer.partial |= io.ws.get_ref().bytes_read() != before;
                Direct::Empty
            }
            Err(e) => self.hand_off(io, Err(e)),
        }
    }

    fn watch(&self, timeout: Duration) {
        if self.lock_io().consumer.partial {
            // The rest of a message is arriving (a large one, most likely):
            // wait briefly for a good part of it rather than wake for each
            // piece. Each wake costs a poll, a read and one more read that
            // finds the socket dry, where a one-thread reader sleeps in recv.
            let until = Instant::now() + PARTIAL_SPIN.min(timeout);
            while Instant::now() < until {
                if crate::socket::recv_queue(&self.probe).unwrap_or(0) >= PARTIAL_PIECE {
                    return;
                }
                std::hint::spin_loop();
            }
        }
        crate::socket::wait_readable(&self.probe, timeout);
    }

    fn idle(&self) {
        let mut io = self.lock_io();
        io.consumer.watching = false;
        io.consumer.idle = true;
        if std::mem::take(&mut io.consumer.standing_back) {
            drop(io);
            self.wake();
        }
    }
}

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
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("closing", &self.shared.closing.load(Ordering::Relaxed))
            .field("outbox", &self.shared.outbox.len())
            .finish()
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
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
        let res = io.ws.write(msg).and_then(|()| io.ws.flush());
        match res {
            Ok(()) => {
                self.shared.counters.count_out(len);
                Ok(Ok(()))
            }
            Err(e) if would_block(&e) => {
                // tungstenite keeps the frame; the I/O thread finishes the write.
                self.shared.counters.count_out(len);
                io.write_pending = true;
                drop(io);
                self.shared.wake();
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

    /// Sends a message, waiting for room in the outbox if it is full.
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
        self.check_open()?;
        let Err(msg) = self.try_direct(msg)? else {
            return Ok(());
        };
        self.shared
            .outbox
            .send(msg)
            .map_err(|_| Error::Closed(None))?;
        self.shared.wake();
        Ok(())
    }

    /// Sends a message, waiting at most `timeout` for room in the outbox.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]`(`[`Phase::Send`]`)` if the outbox stayed full;
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
        if let Message::Close(frame) = msg {
            return self.close_frame(frame);
        }
        self.check_open()?;
        let Err(msg) = self.try_direct(msg)? else {
            return Ok(());
        };
        match self.shared.outbox.send_timeout(msg, timeout) {
            Ok(()) => {
                self.shared.wake();
                Ok(())
            }
            Err(channel::SendTimeoutError::Timeout(_)) => Err(Error::Timeout(Phase::Send)),
            Err(channel::SendTimeoutError::Disconnected(_)) => Err(Error::Closed(None)),
        }
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
        if self.check_open().is_err() {
            return Err(TrySendError::Closed(msg));
        }
        if let Message::Close(frame) = msg {
            return self
                .close_frame(frame.clone())
                .map_err(|_| TrySendError::Closed(Message::Close(frame)));
        }
        let copy = msg.clone(); // cheap: payloads are reference-counted
        let msg = match self.try_direct(msg) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(msg)) => msg,
            Err(_) => return Err(TrySendError::Closed(copy)),
        };
        match self.shared.outbox.try_send(msg) {
            Ok(()) => {
                self.shared.wake();
                Ok(())
            }
            Err(channel::TrySendError::Full(m)) => Err(TrySendError::Full(m)),
            Err(channel::TrySendError::Disconnected(m)) => Err(TrySendError::Closed(m)),
        }
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
        let mut req = self
            .shared
            .close_request
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if req.is_none() && !self.shared.ended.load(Ordering::Acquire) {
            *req = Some(frame);
            self.shared.closing.store(true, Ordering::Release);
            drop(req);
            self.shared.wake();
        }
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
            s.read_by_consumer = io.consumer.messages;
            s.received += io.consumer.messages;
            s.delivered += io.consumer.messages;
            s.messages_in += io.consumer.messages;
            s.bytes_in += io.consumer.bytes;
        }
        s.outbox = sh.outbox.len();
        s.kernel_recv_queue = crate::socket::recv_queue(&sh.probe);
        (s.recv_buffer_size, s.send_buffer_size) = crate::socket::buffer_sizes(&sh.probe);
        s
    }
}

/// A blocking WebSocket connection: receive on one thread, send from any.
///
/// An I/O thread (`wsapp-io-N`) owns the socket. It reads messages into a
/// bounded inbox under the client's [`Overflow`](crate::Overflow) policy, writes
/// what the outbox holds, answers pings at once and runs the close handshake.
/// Dropping the `WebSocket` closes the connection and joins that thread.
///
/// # Examples
///
/// ```no_run
/// let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
/// ws.send_text("hello")?;
/// let reply = ws.recv()?;
/// println!("{reply}");
/// ws.close(1000, "done")?;
/// # Ok::<(), wsapp::Error>(())
/// ```
pub struct WebSocket {
    sender: Sender,
    thread: Mutex<Option<JoinHandle<()>>>,
    response: Response,
    protocol: Option<String>,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .field("protocol", &self.protocol)
            .field("closed", &self.sender.is_closed())
            .finish()
    }
}

impl WebSocket {
    /// Takes over a handshaken tungstenite socket and starts its I/O thread.
    pub(crate) fn start(
        ws: tungstenite::WebSocket<Stream>,
        response: Response,
        opts: IoOptions,
        make_inbox: impl FnOnce(Box<dyn Fn() + Send + Sync>) -> Inbox,
    ) -> Result<WebSocket> {
        let mut ws = ws;
        ws.get_mut().clear_deadline();
        ws.get_mut().follow_frames();
        let tcp = ws.get_ref().tcp();
        tcp.set_nonblocking(true).map_err(Error::Io)?;
        // A server that reset right after the upgrade: the connection is lost.
        let local_addr = tcp.local_addr().map_err(Error::from_io)?;
        let peer_addr = tcp.peer_addr().map_err(Error::from_io)?;
        let probe = tcp.try_clone().map_err(Error::Io)?;
        let poller = Arc::new(Poller::new().map_err(Error::Io)?);
        // SAFETY: the socket stays open until the I/O thread deletes it from the
        // poller: `Io` (which owns it) outlives the thread, and the thread deletes
        // the registration before it returns.
        #[allow(unsafe_code)]
        unsafe {
            poller
                .add_with_mode(tcp, Event::readable(0), PollMode::Level)
                .map_err(Error::Io)?;
        }
        let waker = poller.clone();
        let inbox = make_inbox(Box::new(move || {
            let _ = waker.notify();
        }));
        let (tx, rx) = channel::bounded(opts.outbox.max(1));
        let protocol = crate::handshake::chosen_protocol(&response);
        let shared = Arc::new(Shared {
            io: Mutex::new(Io {
                ws,
                write_pending: false,
                fatal: None,
                consumer: ConsumerReads::default(),
            }),
            outbox: tx,
            poller,
            inbox,
            counters: Counters::default(),
            probe,
            close_request: Mutex::new(None),
            closing: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        });
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let worker = IoThread::new(shared.clone(), rx, opts);
        let thread = std::thread::Builder::new()
            .name(format!("wsapp-io-{id}"))
            .spawn(move || worker.run())
            .map_err(Error::Io)?;
        log::debug!("connection {id} open: {local_addr} -> {peer_addr}");
        Ok(WebSocket {
            sender: Sender { shared },
            thread: Mutex::new(Some(thread)),
            response,
            protocol,
            local_addr,
            peer_addr,
        })
    }

    /// Receives the next message, waiting as long as it takes.
    ///
    /// Text, binary, ping and pong messages arrive in wire order (pongs to
    /// server pings are already sent by the I/O thread).
    ///
    /// # Errors
    ///
    /// Once the connection has ended and every queued message was received:
    /// [`Error::Closed`] with the close frame after a close handshake (on every
    /// later call too); [`Error::ConnectionLost`] if it ended without one; the
    /// protocol, capacity or timeout error that ended it otherwise.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// loop {
    ///     match ws.recv() {
    ///         Ok(msg) => println!("{msg}"),
    ///         Err(e) if e.is_closed() => break,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn recv(&self) -> Result<Message> {
        self.shared()
            .pop(None)
            .map(|m| m.expect("waits without a deadline"))
    }

    /// Receives the next message, waiting at most `timeout`. `Ok(None)`: nothing came.
    ///
    /// # Errors
    ///
    /// As [`recv`](WebSocket::recv).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// use std::time::Duration;
    /// if let Some(msg) = ws.recv_timeout(Duration::from_millis(100))? {
    ///     println!("{msg}");
    /// }
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Message>> {
        self.recv_deadline(Instant::now() + timeout)
    }

    /// Receives the next message, waiting until `deadline`. `Ok(None)`: nothing came.
    ///
    /// # Errors
    ///
    /// As [`recv`](WebSocket::recv).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    /// while let Some(msg) = ws.recv_deadline(deadline)? {
    ///     println!("{msg}");
    /// }
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Option<Message>> {
        self.shared().pop(Some(deadline))
    }

    /// Receives a message if one is queued. `Ok(None)`: none is.
    ///
    /// # Errors
    ///
    /// As [`recv`](WebSocket::recv).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// while let Some(msg) = ws.try_recv()? {
    ///     println!("{msg}");
    /// }
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn try_recv(&self) -> Result<Option<Message>> {
        self.shared().pop(Some(Instant::now()))
    }

    /// An iterator over received messages. It ends after a close handshake; any
    /// other end is yielded once as an `Err`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// for msg in ws.incoming() {
    ///     println!("{}", msg?);
    /// }
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            ws: self,
            done: false,
        }
    }

    /// A cloneable handle for sending from other threads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// let tx = ws.sender();
    /// std::thread::spawn(move || tx.send_text("hi"));
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Sends a message. See [`Sender::send`].
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.send(wsapp::Message::text("hi"))?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send(&self, msg: Message) -> Result<()> {
        self.sender.send(msg)
    }

    /// Sends without waiting. See [`Sender::try_send`].
    ///
    /// # Errors
    ///
    /// Hands the message back when the outbox is full or the connection closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// let _ = ws.try_send(wsapp::Message::text("hi"));
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn try_send(&self, msg: Message) -> std::result::Result<(), TrySendError> {
        self.sender.try_send(msg)
    }

    /// Sends a text message. See [`Sender::send_text`].
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.send_text("hi")?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.sender.send_text(text)
    }

    /// Sends a binary message. See [`Sender::send_binary`].
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.send_binary(vec![1u8, 2, 3])?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<()> {
        self.sender.send_binary(data)
    }

    /// Sends a ping. See [`Sender::ping`].
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.ping(Vec::new())?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.sender.ping(payload)
    }

    /// Closes the connection: sends a close frame with `code` and `reason`, waits
    /// for the server's close frame up to the close timeout, then shuts the
    /// socket and joins the I/O thread. Messages still queued can be received
    /// afterwards; then `recv` returns [`Error::Closed`].
    ///
    /// With [`Overflow::Block`](crate::Overflow::Block) and a full inbox the
    /// server's close frame cannot be read, so this waits for the close timeout.
    ///
    /// # Errors
    ///
    /// As [`Sender::close`]: a code or reason that may not be sent is refused
    /// with [`Error::Config`]; nothing is sent and the connection stays open.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.close(1000, "bye")?;
    /// assert!(ws.recv().unwrap_err().is_closed());
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.sender.close(code, reason)?;
        self.join();
        Ok(())
    }

    fn join(&self) {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            if h.join().is_err() {
                log::error!("wsapp I/O thread panicked");
            }
        }
    }

    /// A snapshot of the connection's buffers and counters. See [`Stats`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// let s = ws.stats();
    /// println!("{s}");
    /// assert_eq!(s.received, s.delivered + s.dropped.total() + s.queued as u64);
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.sender.stats()
    }

    /// The server's upgrade response: status, headers.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// assert_eq!(ws.response().status(), 101);
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The subprotocol the server chose, if any.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ws = wsapp::Client::new("ws://127.0.0.1:9001/").subprotocols(["v2.json"]).connect()?;
    /// assert_eq!(ws.protocol(), Some("v2.json"));
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The local address of the TCP connection.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// println!("{}", ws.local_addr());
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The peer's address of the TCP connection (the proxy's, through a proxy).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// println!("{}", ws.peer_addr());
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    fn shared(&self) -> &Shared {
        &self.sender.shared
    }
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        // Nobody will receive now: let the reader run free so the close handshake
        // is not stuck behind a full inbox.
        self.shared().inbox.abandon();
        let _ = self.sender.close(1000, "");
        self.join();
    }
}

/// Iterator returned by [`WebSocket::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    ws: &'a WebSocket,
    done: bool,
}

impl Iterator for Incoming<'_> {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.ws.recv() {
            Ok(m) => Some(Ok(m)),
            Err(e) => {
                self.done = true;
                (!e.is_closed()).then_some(Err(e))
            }
        }
    }
}

/// Messages below this size are copied out of tungstenite's read buffer.
const UNPIN_BELOW: usize = 16 << 10;
/// Size of the chunks small payloads are copied into (below glibc's mmap
/// threshold, so chunks are recycled by the allocator rather than mapped).
const SLAB: usize = 64 << 10;

/// A payload tungstenite hands out shares its read buffer. Queued, it would pin
/// that buffer, and tungstenite would then read into small fresh buffers: one
/// `recv` per message instead of one per 128 KiB. So small payloads are copied
/// into chunks that many messages share: one allocation per chunk, freed when
/// its last message is dropped. A large payload gets a buffer of its own anyway.
#[derive(Default)]
struct Slab {
    slab: bytes::BytesMut,
}

impl Slab {
    fn copy(&mut self, data: &[u8]) -> Bytes {
        if self.slab.capacity() - self.slab.len() < data.len() {
            self.slab = bytes::BytesMut::with_capacity(SLAB);
        }
        self.slab.extend_from_slice(data);
        self.slab.split().freeze()
    }

    fn unpin(&mut self, msg: Message) -> Message {
        match msg {
            Message::Binary(b) if b.len() < UNPIN_BELOW => Message::Binary(self.copy(&b)),
            Message::Text(t) if t.len() < UNPIN_BELOW => {
                let copy = self.copy(t.as_bytes());
                // Valid UTF-8 a moment ago; checking again is cheap at this size.
                Utf8Bytes::try_from(copy).map_or(Message::Text(t), Message::Text)
            }
            other => other,
        }
    }
}

/// Why the I/O loop stopped.
struct Ended {
    error: Error,
    /// The close code owed to the peer for a fault it caused; sent once the
    /// handler has taken everything read before the fault.
    owed_close: Option<CloseCode>,
}

/// The I/O thread's own state: nobody else touches it.
struct IoThread {
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
    /// `ConsumerReads::messages` as of the last turn.
    seen_frames: u64,
    /// The inbox's count of messages taken, as of the last turn.
    seen_taken: u64,
}

/// What to do after one read.
enum Next {
    Read,
    /// The socket has nothing now, or the inbox is full.
    Stop,
}

impl IoThread {
    fn new(shared: Arc<Shared>, outbox: channel::Receiver<Message>, opts: IoOptions) -> IoThread {
        let next_ping = opts.ping_interval.map(|i| Instant::now() + i);
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
            unpin: Slab::default(),
            bad_close: false,
            seen_frames: 0,
            seen_taken: 0,
        }
    }

    fn run(mut self) {
        // A panic here (a bug, ours or a dependency's) must still end the
        // connection for the consumer, or `recv` would wait forever.
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()))
            .unwrap_or_else(|panic| {
                let what = crate::error::panic_message(&*panic);
                log::error!("wsapp I/O thread panicked: {what}");
                self.end_with(Error::Io(io::Error::other(format!(
                    "the I/O thread panicked: {what}"
                ))))
            });
        self.finish(ended);
    }

    fn run_loop(&mut self) -> Ended {
        let mut events = Events::new();
        loop {
            match self.turn() {
                Ok(timeout) => {
                    events.clear();
                    let sleeps = timeout != Some(Duration::ZERO);
                    if sleeps {
                        self.shared.inbox.set_reader_busy(false);
                    }
                    let waited = self.shared.poller.wait(&mut events, timeout);
                    if sleeps {
                        self.shared.inbox.set_reader_busy(true);
                    }
                    if let Err(e) = waited {
                        if e.kind() != io::ErrorKind::Interrupted {
                            return self.end_with(Error::Io(e));
                        }
                    }
                }
                Err(ended) => return ended,
            }
        }
    }

    fn finish(mut self, ended: Ended) {
        let sh = self.shared.clone();
        match &ended.error {
            Error::Closed(_) => log::debug!("connection closed: {}", ended.error),
            e => log::debug!("connection ended: {e}"),
        }
        // No consumer reads the socket past the end.
        sh.lock_io().consumer.allowed = false;
        if ended.owed_close.is_none() {
            // Before `recv` can report the end, so that a send after it fails.
            sh.ended.store(true, Ordering::Release);
        }
        // Everything read before the end is delivered first, then the error.
        sh.inbox.finish(&mut self.pending, ended.error);
        if let Some(code) = ended.owed_close {
            self.settle_fault(code);
        }
        {
            let io = sh.lock_io();
            let tcp = io.ws.get_ref().tcp();
            let _ = sh.poller.delete(tcp);
            let _ = tcp.shutdown(Shutdown::Both);
        }
        sh.ended.store(true, Ordering::Release);
        // Senders blocked on a full outbox get `Closed` once the receiver is gone.
        drop(std::mem::replace(&mut self.outbox, channel::never()));
    }

    /// After a fault the peer caused: lets the handler answer the messages
    /// read before it (their replies still go out), then sends the close code
    /// the protocol asks for. Bounded by the close timeout.
    fn settle_fault(&mut self, code: CloseCode) {
        let sh = self.shared.clone();
        let deadline = Instant::now() + self.opts.close_timeout;
        let mut events = Events::new();
        {
            let io = sh.lock_io();
            // Only the waker matters now.
            let _ =
                sh.poller
                    .modify_with_mode(io.ws.get_ref().tcp(), Event::none(0), PollMode::Level);
        }
        while !sh.inbox.end_seen() && Instant::now() < deadline {
            {
                let mut io = sh.lock_io();
                while let Ok(msg) = self.outbox.try_recv() {
                    if self.write(&mut io, msg).is_err() {
                        return;
                    }
                }
            }
            events.clear();
            let wait = deadline.saturating_duration_since(Instant::now());
            let _ = sh
                .poller
                .wait(&mut events, Some(wait.min(Duration::from_millis(50))));
        }
        // From here on sends are refused; what is queued still goes out.
        sh.closing.store(true, Ordering::Release);
        let mut io = sh.lock_io();
        while let Ok(msg) = self.outbox.try_recv() {
            if self.write(&mut io, msg).is_err() {
                return;
            }
        }
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(""),
        };
        // Best effort: the connection ends either way. Give a full socket
        // buffer a moment to take the close frame.
        let _ = io.ws.close(Some(frame));
        let until = Instant::now() + Duration::from_millis(200);
        while matches!(io.ws.flush(), Err(ref e) if would_block(e)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn end_with(&self, error: Error) -> Ended {
        Ended {
            error,
            owed_close: None,
        }
    }

    /// One pass: writes, close, keepalive, reads. Returns how long to wait.
    fn turn(&mut self) -> std::result::Result<Option<Duration>, Ended> {
        let sh = self.shared.clone();
        let mut io = sh.lock_io();
        if let Some(e) = io.fatal.take() {
            return Err(self.end_with(e));
        }
        let consumer_read = io.consumer.messages != self.seen_frames;
        if consumer_read {
            self.seen_frames = io.consumer.messages;
            // Any frame is a sign of life.
            self.pong_deadline = None;
        }
        let taken = self.shared.inbox.taken();
        let consumer_keeps_up = taken != self.seen_taken || consumer_read;
        self.seen_taken = taken;
        self.write_side(&mut io)?;
        if !self.pending.is_empty() {
            // What a full inbox held back goes first, before any read.
            self.push();
        }
        // A consumer that keeps taking messages reads the socket itself once
        // the inbox is empty: reading ahead for it only costs a hand-over.
        let stand_back = (consumer_keeps_up || io.consumer.watching)
            && self.shared.inbox.allows_direct()
            && !self.close_sent
            && !io.consumer.idle
            && io.consumer.handoff.is_none()
            && self.pending.is_empty();
        io.consumer.standing_back = stand_back;
        let more = if stand_back {
            false
        } else {
            // From here the consumer must show again that it runs dry, and
            // what it left of a message is this thread's to finish.
            io.consumer.idle = false;
            io.consumer.partial = false;
            self.read_side(&mut io)?
        };
        io.consumer.allowed = self.shared.inbox.allows_direct()
            && self.pending.is_empty()
            && !self.close_sent
            && io.consumer.handoff.is_none();
        let interest = (self.pending.is_empty() && !stand_back, io.write_pending);
        if interest != self.interest {
            let tcp = io.ws.get_ref().tcp();
            let ev = match interest {
                (true, true) => Event::all(0),
                (true, false) => Event::readable(0),
                (false, true) => Event::writable(0),
                (false, false) => Event::none(0),
            };
            sh.poller
                .modify_with_mode(tcp, ev, PollMode::Level)
                .map_err(|e| self.end_with(Error::Io(e)))?;
            self.interest = interest;
        }
        drop(io);
        let wait = self.timers(more)?;
        Ok(if stand_back {
            Some(wait.map_or(STAND_BACK, |w| w.min(STAND_BACK)))
        } else {
            wait
        })
    }

    fn write_side(&mut self, io: &mut Io) -> std::result::Result<(), Ended> {
        if io.write_pending {
            self.flush(io)?;
        }
        while !io.write_pending {
            let Ok(msg) = self.outbox.try_recv() else {
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
            while let Ok(msg) = self.outbox.try_recv() {
                let len = payload_len(&msg);
                match io.ws.write(msg) {
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
        if let (Some(at), false) = (self.next_ping, self.close_sent) {
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
        match io.ws.write(msg) {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(self.end_with(Error::from_ws(e))),
        }
        self.shared.counters.count_out(len);
        self.flush(io)
    }

    fn flush(&mut self, io: &mut Io) -> std::result::Result<(), Ended> {
        match io.ws.flush() {
            Ok(()) => io.write_pending = false,
            Err(e) if would_block(&e) => io.write_pending = true,
            Err(e) => return Err(self.fail(e)),
        }
        Ok(())
    }

    /// Reads while the inbox takes messages. `Ok(true)`: stopped with data left
    /// in buffers the poller cannot see, so do not sleep.
    fn read_side(&mut self, io: &mut Io) -> std::result::Result<bool, Ended> {
        if !self.pending.is_empty() {
            // `turn` has just tried to push it: the inbox is still full.
            return Ok(false);
        }
        let mut flush = false;
        let mut more = false;
        let mut next = match io.consumer.handoff.take() {
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
            next = self.take(io.ws.read(), io.ws.get_ref(), &mut flush)?;
        }
        self.push();
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
        let msg = match read {
            Ok(msg) => msg,
            Err(e) if would_block(&e) => return Ok(Next::Stop),
            Err(tungstenite::Error::ConnectionClosed) => {
                self.push();
                if self.bad_close {
                    return Err(self.end_with(Error::InvalidCloseCode));
                }
                let frame = self.peer_close.clone().or_else(|| self.our_close.clone());
                return Err(self.end_with(Error::Closed(frame)));
            }
            Err(e) => {
                self.push();
                return Err(self.fail(e));
            }
        };
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
        let msg = self.unpin.unpin(msg);
        let len = payload_len(&msg);
        self.shared.counters.count_in(len);
        match self.shared.inbox.classify(msg) {
            Some(item) => {
                self.pending_bytes += item.size();
                self.pending.push_back(item);
            }
            None => self.filtered += 1,
        }
        if self.pending.len() >= BATCH || self.pending_bytes >= BATCH_BYTES {
            if !self.push() {
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
        let all = self
            .shared
            .inbox
            .push_batch(&mut self.pending, std::mem::take(&mut self.filtered));
        self.pending_bytes = self.pending.iter().map(Item::size).sum();
        all
    }

    /// Ends on a read or write error; a fault of the peer's owes it a close code.
    fn fail(&self, e: tungstenite::Error) -> Ended {
        use tungstenite::error::ProtocolError;
        let wire = crate::wire::WireError::find(&e);
        let code = match &e {
            _ if wire.is_some() => Some(CloseCode::Protocol),
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
    fn timers(&mut self, more: bool) -> std::result::Result<Option<Duration>, Ended> {
        let now = Instant::now();
        if let Some(d) = self.close_deadline {
            if now >= d {
                // Both close frames went by and the peer keeps TCP open: end as
                // on its EOF; `finish` shuts TCP (RFC 6455 7.1.1).
                let sh = self.shared.clone();
                let io = sh.lock_io();
                if !io.ws.can_read() && io.consumer.handoff.is_none() {
                    let read = Err(tungstenite::Error::ConnectionClosed);
                    return self.take(read, io.ws.get_ref(), &mut false).map(|_| None);
                }
                return Err(self.end_with(Error::Timeout(Phase::Close)));
            }
        }
        if let Some(d) = self.pong_deadline {
            if !self.pending.is_empty() {
                // Reading is paused: the pong cannot be seen, so the deadline waits too.
                let timeout = self.opts.ping_timeout.unwrap_or_default();
                self.pong_deadline = Some(d.max(now + timeout));
            } else if now >= d {
                return Err(self.end_with(Error::Timeout(Phase::Pong)));
            }
        }
        if more {
            return Ok(Some(Duration::ZERO));
        }
        let next = [self.close_deadline, self.pong_deadline, self.next_ping]
            .into_iter()
            .flatten()
            .min();
        Ok(next.map(|t| t.saturating_duration_since(now)))
    }
}
