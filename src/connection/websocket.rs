//! The [`WebSocket`] handle: start-up of a connection (`WebSocket::start`),
//! receive, close and wait, the upgrade's facts; it sends through its
//! [`Sender`].
//!
//! It never reads the socket itself except through `direct` (a consumer's
//! own reads).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polling::Poller;

use super::io_thread::IoThread;
use super::outbox::Outbox;
use super::sender::Sender;
use super::{register, Done, Flavor, HubIo, Io, IoOptions, Shared};
use crate::error::{Error, Result, TrySendError};
use crate::queue::Inbox;
use crate::stats::{Counters, Stats};
use crate::stream::Stream;
use crate::{Bytes, Message, Response, Utf8Bytes};

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// A blocking WebSocket connection: receive on one thread, send from any.
///
/// An I/O thread (`wsapp-io-N`, or one of a [`Hub`](crate::Hub)'s
/// `wsapp-hub-N` threads with [`Client::hub`](crate::Client::hub)) owns the socket. It reads messages into a
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
    /// The dedicated I/O thread; `None` on a hub (or once joined).
    thread: Mutex<Option<JoinHandle<()>>>,
    on_hub: bool,
    response: Response,
    protocol: Option<String>,
    compression: Option<crate::Compression>,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("closed", &self.sender.is_closed())
            .finish()
    }
}

impl WebSocket {
    /// Takes over a handshaken tungstenite socket and starts its I/O thread,
    /// or hands it to a thread of `hub`.
    pub(crate) fn start(
        ws: tungstenite::WebSocket<Stream>,
        response: Response,
        opts: IoOptions,
        hub: Option<&HubIo>,
        make_inbox: impl FnOnce(Box<dyn Fn() + Send + Sync>) -> Inbox,
    ) -> Result<WebSocket> {
        let mut ws = ws;
        ws.get_mut().clear_deadline();
        let tcp = ws.get_ref().tcp();
        tcp.set_nonblocking(true).map_err(Error::Io)?;
        // A server that reset right after the upgrade: the connection is lost.
        let local_addr = tcp.local_addr().map_err(Error::lost_or_io)?;
        let peer_addr = tcp.peer_addr().map_err(Error::lost_or_io)?;
        let probe = crate::socket::Probe::of(tcp);
        let lane = hub.map(HubIo::lane).transpose()?;
        let (poller, key, ready) = match &lane {
            None => {
                let poller = Arc::new(Poller::new().map_err(Error::Io)?);
                register(&poller, tcp, 0).map_err(Error::Io)?;
                (poller, 0, None)
            }
            Some(lane) => (lane.poller(), lane.next_key(), Some(lane.ready())),
        };
        let (outbox, rx) = Outbox::new(opts.outbox, opts.outbox_bytes);
        let protocol = crate::handshake::chosen_protocol(&response);
        let compression = ws.get_ref().compression().copied();
        let shared = Arc::new_cyclic(|me: &std::sync::Weak<Shared>| {
            let me = me.clone();
            // The inbox wakes the I/O side when a paused reader may read again.
            let inbox = make_inbox(Box::new(move || {
                if let Some(sh) = me.upgrade() {
                    sh.wake();
                }
            }));
            Shared {
                io: Mutex::new(Io {
                    ws,
                    write_pending: false,
                    fatal: None,
                    reading: Default::default(),
                    direct_messages: 0,
                    direct_bytes: 0,
                }),
                outbox,
                poller,
                key,
                ready,
                queued: AtomicBool::new(false),
                done: Done::default(),
                on_ready: Default::default(),
                flavor: if inbox.allows_direct() {
                    Flavor::Direct
                } else {
                    Flavor::Queue
                },
                inbox,
                counters: Counters::default(),
                probe,
                close_request: Mutex::new(None),
                closing: AtomicBool::new(false),
                ended: AtomicBool::new(false),
            }
        });
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let worker = IoThread::new(shared.clone(), rx, opts);
        let thread = match lane {
            None => Some(
                std::thread::Builder::new()
                    .name(format!("wsapp-io-{id}"))
                    .spawn(move || worker.run())
                    .map_err(Error::Io)?,
            ),
            Some(lane) => {
                lane.adopt(worker);
                None
            }
        };
        log::debug!("connection {id} open: {local_addr} -> {peer_addr}");
        Ok(WebSocket {
            sender: Sender { shared },
            on_hub: thread.is_none(),
            thread: Mutex::new(thread),
            response,
            protocol,
            compression,
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
            .recv(None)
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
        self.shared().recv(Some(deadline))
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
        self.shared().recv(Some(Instant::now()))
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

    /// Sends, waiting at most `timeout` for room. See [`Sender::send_timeout`].
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]`(`[`Phase::Send`](crate::Phase::Send)`)` if the
    /// outbox stayed full; [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// ws.send_timeout(wsapp::Message::text("hi"), std::time::Duration::from_secs(1))?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_timeout(&self, msg: Message, timeout: Duration) -> Result<()> {
        self.sender.send_timeout(msg, timeout)
    }

    /// Sends, waiting until `deadline` for room. See [`Sender::send_deadline`].
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](WebSocket::send_timeout).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    /// ws.send_deadline(wsapp::Message::text("hi"), deadline)?;
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn send_deadline(&self, msg: Message, deadline: Instant) -> Result<()> {
        self.sender.send_deadline(msg, deadline)
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

    /// Waits for the I/O thread to end (on a hub: for the hub thread to
    /// finish this connection). The lock is held through the join, so a
    /// second caller returns only once the thread has ended too.
    fn join(&self) {
        let mut handle = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = handle.take() {
            if h.join().is_err() {
                log::error!("wsapp I/O thread panicked");
            }
        }
        if self.on_hub {
            self.shared().done.wait();
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

    /// What permessage-deflate (RFC 7692) agreed, or `None` when it was not
    /// offered ([`Client::compression`](crate::Client::compression)) or the
    /// server declined. [`Stats`] counts the bytes on the wire against the
    /// bytes inflated and deflated.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ws = wsapp::connect("ws://127.0.0.1:9001/")?;
    /// match ws.compression() {
    ///     Some(c) => println!("compressed, server window {} bits", c.server_max_window_bits),
    ///     None => println!("uncompressed"),
    /// }
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn compression(&self) -> Option<&crate::Compression> {
        self.compression.as_ref()
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

    /// On a hub: `f` runs (on the hub thread; it must be quick) after a turn
    /// that left messages queued, and once the connection has ended. Set once.
    pub(crate) fn on_ready(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.shared().on_ready.set(f);
        f_now(self.shared());
    }

    /// Whether a `try_recv` now has something to give: a message or the end.
    pub(crate) fn has_news(&self) -> bool {
        let sh = self.shared();
        !sh.inbox.is_empty() || sh.ended.load(Ordering::Acquire)
    }
}

/// Calls the ready hook if something is already there (set after messages came).
fn f_now(sh: &Shared) {
    if let Some(f) = sh.on_ready.get() {
        if !sh.inbox.is_empty() || sh.ended.load(Ordering::Acquire) {
            f();
        }
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
