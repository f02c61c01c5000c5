//! Shared helpers for the `app_*` integration tests: loopback servers on
//! `127.0.0.1:0` (tungstenite for well-behaved ones, raw std::net for
//! misbehaving ones), a bounded `run_forever`, deadline waits and a thread
//! counter. Every wait here has a deadline; nothing loops unbounded.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tungstenite::{Bytes, Message, WebSocket};
use wsapp::{AppHandle, Callbacks, WebSocketApp};

/// The longest a server-side socket may block in a read.
pub const SERVER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `ws://<addr>/`.
pub fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// A listener on `127.0.0.1:0` with `SO_REUSEADDR`, so that its port can be bound again later.
pub fn listen_reusable() -> TcpListener {
    listen_on(0).expect("bind 127.0.0.1:0")
}

/// Binds `127.0.0.1:<port>` with `SO_REUSEADDR` (the port may have connections in TIME_WAIT).
pub fn listen_on(port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

/// Binds `127.0.0.1:<port>` again, retrying for up to `within`.
pub fn rebind(port: u16, within: Duration) -> TcpListener {
    let deadline = Instant::now() + within;
    loop {
        match listen_on(port) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("rebind {port}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("could not bind port {port} again: {e}"),
        }
    }
}

/// Accepts one TCP connection, waiting at most `within`.
pub fn accept_tcp(listener: &TcpListener, within: Duration) -> Option<TcpStream> {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + within;
    let got = loop {
        match listener.accept() {
            Ok((s, _)) => break Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    let s = got?;
    s.set_nonblocking(false).expect("blocking stream");
    s.set_read_timeout(Some(SERVER_READ_TIMEOUT))
        .expect("read timeout");
    s.set_nodelay(true).expect("nodelay");
    Some(s)
}

/// Accepts one connection and completes the WebSocket handshake, within `within`.
pub fn accept_ws(listener: &TcpListener, within: Duration) -> WebSocket<TcpStream> {
    let tcp = accept_tcp(listener, within).expect("no client connected in time");
    tungstenite::accept(tcp).expect("server handshake")
}

/// Reads until the client's close completes the handshake, or the socket ends,
/// or `within` passes. Returns the messages read on the way.
pub fn drain_until_closed(
    ws: &mut WebSocket<TcpStream>,
    within: Duration,
) -> Vec<tungstenite::Message> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match ws.read() {
            Ok(m) => seen.push(m),
            Err(_) => break,
        }
    }
    seen
}

/// Runs `run_forever` on a thread and waits at most `limit` for it to return.
/// Panics (failing the test) if it does not return in time.
pub fn run_bounded(app: WebSocketApp<Callbacks>, limit: Duration) -> (wsapp::Result<()>, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::Builder::new()
        .name("app-runner".into())
        .spawn(move || {
            let r = app.run_forever();
            let _ = tx.send(r);
        })
        .expect("spawn runner");
    match rx.recv_timeout(limit) {
        Ok(r) => (r, start.elapsed()),
        Err(_) => panic!("run_forever did not return within {limit:?}"),
    }
}

/// Joins a started app, failing the test if it does not end within `limit`.
pub fn join_bounded(handle: AppHandle, limit: Duration) -> (wsapp::Result<()>, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => (r, start.elapsed()),
        Err(_) => panic!("the app did not end within {limit:?}"),
    }
}

/// Polls `cond` until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Joins a server thread, failing the test if it does not end within `limit`.
pub fn join_thread<T: Send + 'static>(h: JoinHandle<T>, limit: Duration) -> T {
    let deadline = Instant::now() + limit;
    while !h.is_finished() {
        assert!(
            Instant::now() < deadline,
            "a server thread did not end within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().expect("server thread panicked")
}

/// This process's thread count (`Threads:` in `/proc/self/status`).
pub fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: line")
}

/// What [`flood`] did: messages sent, client pings read, whether the client closed.
#[derive(Debug, Default)]
pub struct ServerReport {
    pub sent: usize,
    pub pings: u64,
    pub client_closed: bool,
}

/// Whether a tungstenite error is a non-blocking socket's `WouldBlock`.
pub fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)
}

/// Accepts one client and floods it with up to `total` 1 KiB binary messages on
/// a non-blocking socket, reading between batches, so the client's pings are
/// read (and answered by tungstenite) while the flood is blocked on a full
/// socket. Ends when the client closes (finishing the close handshake), or
/// after 20 s.
pub fn flood(listener: TcpListener, total: usize) -> ServerReport {
    let mut ws = accept_ws(&listener, Duration::from_secs(10));
    ws.get_ref().set_nonblocking(true).unwrap();
    let payload = Bytes::from(vec![b'x'; 1024]);
    let mut report = ServerReport::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut blocked = false;
    'outer: while Instant::now() < deadline {
        let mut progressed = false;
        // Read side: pings get their pong queued by tungstenite.
        for _ in 0..1000 {
            match ws.read() {
                Ok(Message::Ping(_)) => {
                    report.pings += 1;
                    progressed = true;
                }
                Ok(Message::Close(_)) => {
                    report.client_closed = true;
                    break 'outer;
                }
                Ok(_) => progressed = true,
                Err(e) if is_would_block(&e) => break,
                Err(_) => return report,
            }
        }
        // Write side.
        if blocked {
            match ws.flush() {
                Ok(()) => blocked = false,
                Err(e) if is_would_block(&e) => {}
                Err(_) => return report,
            }
        }
        let mut n = 0;
        while !blocked && report.sent < total && n < 64 {
            match ws.write(Message::Binary(payload.clone())) {
                Ok(()) => {}
                // The frame is buffered; the socket is full.
                Err(e) if is_would_block(&e) => blocked = true,
                Err(_) => return report,
            }
            report.sent += 1;
            n += 1;
        }
        if !blocked && n > 0 {
            match ws.flush() {
                Ok(()) => {}
                Err(e) if is_would_block(&e) => blocked = true,
                Err(_) => return report,
            }
        }
        if n == 0 && !progressed {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Finish the close handshake: tungstenite sends our close after what is buffered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match ws.flush() {
            Err(e) if is_would_block(&e) => std::thread::sleep(Duration::from_millis(1)),
            Ok(()) => match ws.read() {
                Err(e) if is_would_block(&e) => std::thread::sleep(Duration::from_millis(1)),
                Ok(_) => {}
                Err(_) => break,
            },
            Err(_) => break,
        }
    }
    report
}
