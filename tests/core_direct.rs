//! A fast consumer — one thread calling `recv` in a tight loop and doing
//! nothing else — sees exactly what a slow one sees: every message once, in
//! wire order, intact; server pings in their places and answered; the close
//! code and reason, protocol and capacity errors (with the close code the
//! server gets) after the last good message; keepalive without false
//! timeouts; `try_recv` reaching data still in the kernel; no leaked threads.
//!
//! These tests check behaviour through the public API only, so they hold
//! whether `recv` waits for the I/O thread or reads the socket itself when the
//! inbox is empty (and whichever of the two is reading when the consumer
//! speeds up or slows down).
//!
//! Every blocking `recv` runs on a consumer thread watched by the test thread
//! (see [`bounded`]): a lost message fails the test with the stats instead of
//! hanging it. Servers run on `127.0.0.1:0`, every server loop has a deadline.
//! The tests run one at a time (`SERIAL`): one of them counts threads, and the
//! others are timing-sensitive (keepalive).
mod common;

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::raw::{self, Saw};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use wsapp::{Client, Error, ErrorKind, Message, WebSocket};

/// The longest any one test's consumer may take (they take a few seconds).
const LIMIT: Duration = Duration::from_secs(60);
/// The longest a server waits for one thing from the client.
const WAIT: Duration = Duration::from_secs(10);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------
// Helpers: a watched consumer thread, payload checks, stats checks.

/// Runs `f` on its own thread and waits at most `limit` for it. A panic in `f`
/// is re-raised here; a consumer stuck in `recv` fails the test with
/// `report()` (progress, stats) instead of hanging it.
fn bounded<T: Send + 'static>(
    limit: Duration,
    report: impl Fn() -> String,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("direct-consumer".into())
        .spawn(move || {
            let out = f();
            let _ = tx.send(out);
        })
        .expect("spawn the consumer thread");
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let _ = handle.join();
            out
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("the consumer ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the consumer did not finish within {limit:?}: {}", report())
        }
    }
}

/// Progress of a consumer and a connection's stats, for a stuck consumer's report.
fn reporter(ws: &Arc<WebSocket>, progress: &Arc<AtomicU64>) -> impl Fn() -> String {
    let (ws, progress) = (ws.clone(), progress.clone());
    move || {
        format!(
            "{} messages received; stats: {}",
            progress.load(Ordering::SeqCst),
            ws.stats()
        )
    }
}

/// Panics unless `msg` is flood message `i` of `size` bytes, every byte right.
fn check_flood(msg: &Message, i: u64, size: usize) {
    let Message::Binary(b) = msg else {
        panic!("message {i}: expected binary, got {msg:?}");
    };
    let got = common::flood_number(msg);
    assert_eq!(
        got,
        Some(i),
        "message {i}: got number {got:?} (lost, reordered or duplicated)"
    );
    assert_eq!(b.len(), size.max(8), "message {i}: length");
    assert!(
        b[8..].iter().all(|&x| x == i as u8),
        "message {i}: payload corrupted: {:?}",
        &b[..b.len().min(32)]
    );
}

/// Keeps every `KEEP_EVERY`th message to check again at the end: a payload
/// that shares a buffer later reads overwrite would change under us.
const KEEP_EVERY: u64 = 997;

/// Receives flood messages `from..to` with `recv` in a tight loop.
fn recv_flood(
    ws: &WebSocket,
    from: u64,
    to: u64,
    size: usize,
    progress: &AtomicU64,
    kept: &mut Vec<(u64, Message)>,
) {
    for i in from..to {
        let msg = ws
            .recv()
            .unwrap_or_else(|e| panic!("recv of message {i} of {to} failed: {e} ({e:?})"));
        check_flood(&msg, i, size);
        if i % KEEP_EVERY == 0 {
            kept.push((i, msg));
        }
        progress.store(i + 1, Ordering::Relaxed);
    }
}

fn recheck_kept(kept: &[(u64, Message)], size: usize) {
    for (i, msg) in kept {
        check_flood(msg, *i, size);
    }
}

/// `received == delivered + dropped + queued`, nothing dropped.
fn check_accounting(s: &wsapp::Stats, when: &str) {
    assert_eq!(
        s.received,
        s.delivered + s.dropped.total() + s.queued as u64,
        "{when}: received != delivered + dropped + queued: {s}"
    );
    assert_eq!(s.dropped.total(), 0, "{when}: Block never drops: {s}");
    assert!(s.queued <= s.queue_capacity, "{when}: over the bound: {s}");
}

/// The close code and reason of a `Closed` error; panics on any other error.
fn closed_with(err: &Error) -> (u16, String) {
    assert!(err.is_closed(), "expected a close, got {err} ({err:?})");
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    let frame = err
        .close_frame()
        .unwrap_or_else(|| panic!("a close without a frame: {err:?}"));
    (u16::from(frame.code), frame.reason.as_str().to_string())
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), IoKind::WouldBlock | IoKind::TimedOut))
}

/// Reads with tungstenite until the client's close frame (its code), the end
/// of the connection, or `within`.
fn read_close_reply<S: Read + Write>(
    ws: &mut tungstenite::WebSocket<S>,
    within: Duration,
) -> Option<Option<u16>> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        match ws.read() {
            Ok(Message::Close(frame)) => return Some(frame.map(|f| u16::from(f.code))),
            Ok(_) => {}
            Err(e) if would_block(&e) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return None,
        }
    }
    None
}

// ---------------------------------------------------------------------------
// 1. Speed changes: the fast consumer stops now and then; nothing is lost.

#[test]
fn fast_consumer_gets_every_message_in_order_across_speed_changes() {
    let _serial = serial();
    const N: u64 = 200_000;
    const SIZE: usize = 64;
    const PAUSE_EVERY: u64 = 20_000;
    const PAUSE: Duration = Duration::from_millis(20);

    let flood = common::flood_server(N, SIZE);
    let ws = Arc::new(Client::new(flood.server.url()).connect().unwrap());
    let progress = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (ws2, p2) = (ws.clone(), progress.clone());
    let after_pauses = bounded(LIMIT, reporter(&ws, &progress), move || {
        let mut kept = Vec::new();
        let mut after_pauses = Vec::new();
        let mut from = 0;
        while from < N {
            let to = (from + PAUSE_EVERY).min(N);
            recv_flood(&ws2, from, to, SIZE, &p2, &mut kept);
            from = to;
            if to == N {
                break;
            }
            let s = ws2.stats();
            check_accounting(&s, &format!("after message {to}"));
            assert_eq!(s.delivered, to, "delivered after {to} recvs: {s}");
            // The slow moment: whoever reads the socket now, nothing may be lost.
            std::thread::sleep(PAUSE);
            let s = ws2.stats();
            check_accounting(&s, &format!("after the pause at {to}"));
            assert_eq!(s.delivered, to, "delivered while nobody received: {s}");
            after_pauses.push(s.queued);
        }
        recheck_kept(&kept, SIZE);
        drop(ws2);
        after_pauses
    });
    let took = start.elapsed();

    // Nothing after the last message: the server sends no more.
    assert_eq!(ws.try_recv().unwrap(), None, "a message after the last one");
    let s = ws.stats();
    println!("{N} messages in {took:?}; queued after each pause: {after_pauses:?}; {s}");
    check_accounting(&s, "at the end");
    assert_eq!(s.delivered, N, "{s}");
    assert_eq!(s.received, N, "{s}");
    assert_eq!(s.queued, 0, "{s}");
    assert_eq!(
        s.messages_in, N,
        "every message read off the wire is counted: {s}"
    );
    assert_eq!(s.bytes_in, N * SIZE as u64, "{s}");
    assert!(s.queue_high_water <= s.queue_capacity, "{s}");
    assert!(flood.all_flushed.load(Ordering::SeqCst));
    // While the consumer slept (20 ms, far longer than the I/O thread's 1 ms
    // stand-back tick) the I/O thread read ahead into the inbox.
    assert!(
        after_pauses.iter().all(|&q| q > 0),
        "the I/O thread did not read ahead during a pause: {after_pauses:?}"
    );
}

// ---------------------------------------------------------------------------
// 2. Server pings in a fast stream: delivered in place, every one answered.

#[test]
fn fast_consumer_server_pings_are_answered_in_order() {
    let _serial = serial();
    const N: u64 = 50_000;
    const SIZE: usize = 16;
    const PING_EVERY: u64 = 1_000;
    const PINGS: u64 = N / PING_EVERY;

    /// What the server saw: pongs with the right payload in the right order,
    /// all pongs, the wrong ones, and whether the client answered its close.
    #[derive(Debug)]
    struct Seen {
        right: u64,
        total: u64,
        wrong: Vec<Vec<u8>>,
        close_reply: Option<Option<u16>>,
    }
    let (tx, rx) = mpsc::channel::<Seen>();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |tcp| {
        let tx = tx.lock().unwrap().clone();
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)));
        for i in 0..N {
            if ws
                .write(Message::binary(common::flood_payload(i, SIZE)))
                .is_err()
            {
                return;
            }
            if (i + 1) % PING_EVERY == 0 {
                let k = (i + 1) / PING_EVERY - 1;
                let ping = Message::Ping((k as u32).to_be_bytes().to_vec().into());
                if ws.write(ping).is_err() || ws.flush().is_err() {
                    return;
                }
            }
        }
        let mut seen = Seen {
            right: 0,
            total: 0,
            wrong: Vec::new(),
            close_reply: None,
        };
        let end = Instant::now() + WAIT;
        while seen.total < PINGS && Instant::now() < end {
            match ws.read() {
                Ok(Message::Pong(p)) => {
                    if p[..] == (seen.total as u32).to_be_bytes() {
                        seen.right += 1;
                    } else {
                        seen.wrong.push(p.to_vec());
                    }
                    seen.total += 1;
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        let _ = ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = ws.flush();
        seen.close_reply = read_close_reply(&mut ws, Duration::from_secs(5));
        let _ = tx.send(seen);
    });

    let ws = Arc::new(Client::new(server.url()).connect().unwrap());
    let progress = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (ws2, p2) = (ws.clone(), progress.clone());
    let end = bounded(LIMIT, reporter(&ws, &progress), move || {
        let mut kept = Vec::new();
        for k in 0..PINGS {
            recv_flood(
                &ws2,
                k * PING_EVERY,
                (k + 1) * PING_EVERY,
                SIZE,
                &p2,
                &mut kept,
            );
            let msg = ws2
                .recv()
                .unwrap_or_else(|e| panic!("recv of ping {k} failed: {e}"));
            assert_eq!(
                msg,
                Message::Ping((k as u32).to_be_bytes().to_vec().into()),
                "ping {k} belongs after message {}",
                (k + 1) * PING_EVERY - 1
            );
        }
        recheck_kept(&kept, SIZE);
        let end = ws2.recv().map(|m| format!("{m:?}"));
        drop(ws2);
        end
    });
    let took = start.elapsed();
    let err = end.expect_err("the server's close comes right after the last ping");
    assert_eq!(closed_with(&err), (1000, String::new()), "{err}");
    let seen = rx
        .recv_timeout(WAIT)
        .expect("the server reports what it saw");
    println!("{N} messages and {PINGS} pings in {took:?}; server saw {seen:?}");
    assert!(
        seen.wrong.is_empty(),
        "pongs with the wrong payload: {seen:?}"
    );
    assert_eq!(seen.total, PINGS, "every ping answered: {seen:?}");
    assert_eq!(seen.right, PINGS, "{seen:?}");
    assert_eq!(
        seen.close_reply,
        Some(Some(1000)),
        "the client answered the close"
    );
    let s = ws.stats();
    check_accounting(&s, "at the end");
    assert_eq!(s.delivered, N + PINGS, "{s}");
    assert_eq!(s.messages_in, N + PINGS, "{s}");
}

// ---------------------------------------------------------------------------
// 3. The server's close comes after all its messages, with its code and reason.

#[test]
fn fast_consumer_sees_close_after_all_messages() {
    let _serial = serial();
    const N: u64 = 100_000;
    const SIZE: usize = 32;

    let (tx, rx) = mpsc::channel::<Option<Option<u16>>>();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |tcp| {
        let tx = tx.lock().unwrap().clone();
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)));
        for i in 0..N {
            if ws
                .write(Message::binary(common::flood_payload(i, SIZE)))
                .is_err()
            {
                return;
            }
        }
        let _ = ws.close(Some(CloseFrame {
            code: CloseCode::from(4000),
            reason: "bye".into(),
        }));
        let _ = ws.flush();
        let _ = tx.send(read_close_reply(&mut ws, Duration::from_secs(5)));
    });

    let ws = Arc::new(Client::new(server.url()).connect().unwrap());
    let progress = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (ws2, p2) = (ws.clone(), progress.clone());
    let (first, second) = bounded(LIMIT, reporter(&ws, &progress), move || {
        let mut kept = Vec::new();
        recv_flood(&ws2, 0, N, SIZE, &p2, &mut kept);
        recheck_kept(&kept, SIZE);
        let first = ws2.recv().map(|m| format!("{m:?}"));
        let second = ws2.recv().map(|m| format!("{m:?}"));
        drop(ws2);
        (first, second)
    });
    let took = start.elapsed();
    let first = first.expect_err("the close comes right after the last message");
    println!("{N} messages in {took:?}, then {first}");
    assert_eq!(closed_with(&first), (4000, "bye".to_string()), "{first:?}");
    let second = second.expect_err("recv after the close");
    assert_eq!(
        closed_with(&second),
        (4000, "bye".to_string()),
        "{second:?}"
    );
    let third = ws.try_recv().expect_err("try_recv after the close");
    assert_eq!(closed_with(&third), (4000, "bye".to_string()), "{third:?}");
    let reply = rx.recv_timeout(WAIT).expect("the server reports");
    assert_eq!(
        reply,
        Some(Some(4000)),
        "the server gets the client's close reply (echoing 4000) within 5 s"
    );
    let s = ws.stats();
    check_accounting(&s, "at the end");
    assert_eq!((s.delivered, s.received, s.queued), (N, N, 0), "{s}");
}

// ---------------------------------------------------------------------------
// 4. Keepalive while the consumer reads a flood: no false pong timeout.

#[test]
fn fast_consumer_keepalive_has_no_false_timeout() {
    let _serial = serial();
    const SIZE: usize = 16;
    const FLOOD_FOR: Duration = Duration::from_millis(2500);
    const INTERVAL: Duration = Duration::from_millis(100);
    // Must be shorter than the interval (`Client::ping_timeout`).
    const PONG_TIMEOUT: Duration = Duration::from_millis(60);

    /// What the server did: messages sent, pings seen, the client's close reply.
    #[derive(Debug)]
    struct Seen {
        sent: u64,
        pings: u64,
        close_reply: Option<Option<u16>>,
        error: Option<String>,
    }
    let (tx, rx) = mpsc::channel::<Seen>();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |tcp| {
        let tx = tx.lock().unwrap().clone();
        let config = WebSocketConfig::default().write_buffer_size(4 << 10);
        let Ok(mut ws) = tungstenite::accept_with_config(tcp, Some(config)) else {
            return;
        };
        let mut seen = Seen {
            sent: 0,
            pings: 0,
            close_reply: None,
            error: None,
        };
        if let Err(e) = ws.get_mut().set_nonblocking(true) {
            seen.error = Some(e.to_string());
            let _ = tx.send(seen);
            return;
        }
        let start = Instant::now();
        let mut stalled = false;
        let failed = |seen: &mut Seen, what: &str, e: tungstenite::Error| {
            seen.error = Some(format!("{what} after {:?}: {e}", start.elapsed()));
        };
        // Writes in bursts while reading between them: tungstenite answers the
        // client's pings on read. Every other half second it writes slower
        // than the consumer reads (small bursts, 1 ms apart): then the inbox
        // is empty, nothing pauses reading, and the pong deadline counts.
        'flood: while start.elapsed() < FLOOD_FOR {
            let paced = (start.elapsed().as_millis() / 500) % 2 == 1;
            let mut progress = false;
            if stalled {
                match ws.flush() {
                    Ok(()) => {
                        stalled = false;
                        progress = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => {
                        failed(&mut seen, "flush", e);
                        break 'flood;
                    }
                }
            }
            let mut burst = 0;
            while !stalled && burst < if paced { 32 } else { 256 } {
                match ws.write(Message::binary(common::flood_payload(seen.sent, SIZE))) {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => stalled = true, // kept in the buffer
                    Err(e) => {
                        failed(&mut seen, "write", e);
                        break 'flood;
                    }
                }
                seen.sent += 1;
                burst += 1;
                progress = true;
            }
            loop {
                match ws.read() {
                    Ok(Message::Ping(_)) => {
                        seen.pings += 1;
                        progress = true;
                    }
                    Ok(_) => progress = true,
                    Err(e) if would_block(&e) => break,
                    Err(e) => {
                        failed(&mut seen, "read", e);
                        break 'flood;
                    }
                }
            }
            if paced && !stalled {
                match ws.flush() {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => stalled = true,
                    Err(e) => {
                        failed(&mut seen, "flush", e);
                        break 'flood;
                    }
                }
            }
            if paced || !progress {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if seen.error.is_none() {
            let end = Instant::now() + WAIT;
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "done".into(),
            }));
            while matches!(ws.flush(), Err(ref e) if would_block(e)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            seen.close_reply = read_close_reply(&mut ws, Duration::from_secs(5));
        }
        let _ = tx.send(seen);
    });

    let ws = Arc::new(
        Client::new(server.url())
            .ping_interval(INTERVAL)
            .ping_timeout(PONG_TIMEOUT)
            .connect()
            .unwrap(),
    );
    let progress = Arc::new(AtomicU64::new(0));
    let (ws2, p2) = (ws.clone(), progress.clone());
    let start = Instant::now();
    let (got, pongs, end) = bounded(LIMIT, reporter(&ws, &progress), move || {
        let mut got = 0u64;
        let mut pongs = 0u64;
        let end = loop {
            match ws2.recv() {
                Ok(Message::Pong(_)) => pongs += 1,
                Ok(msg) => {
                    check_flood(&msg, got, SIZE);
                    got += 1;
                    p2.store(got, Ordering::Relaxed);
                }
                Err(e) => break e,
            }
        };
        drop(ws2);
        (got, pongs, end)
    });
    let took = start.elapsed();
    let seen = rx.recv_timeout(WAIT).expect("the server reports");
    println!(
        "{got} messages and {pongs} pongs in {took:?}, then {end}; server saw {seen:?}; {}",
        ws.stats()
    );
    assert!(
        !matches!(end, Error::Timeout(_)),
        "a false keepalive timeout while data kept coming: {end:?} after {got} messages; \
         server: {seen:?}"
    );
    assert_eq!(closed_with(&end), (1000, "done".to_string()), "{end:?}");
    assert!(seen.error.is_none(), "server: {seen:?}");
    assert_eq!(got, seen.sent, "every message sent arrived: {seen:?}");
    assert!(
        seen.pings >= 10,
        "keepalive pings every {INTERVAL:?} for {FLOOD_FOR:?}: the server saw {}",
        seen.pings
    );
    assert!(
        pongs >= 10 && pongs <= seen.pings,
        "the server's pongs are delivered: {pongs} of {} pings",
        seen.pings
    );
    assert_eq!(seen.close_reply, Some(Some(1000)), "{seen:?}");
    check_accounting(&ws.stats(), "at the end");
}

// ---------------------------------------------------------------------------
// Raw frames for the fault cases (no tungstenite on the server's write side).

/// Runs a raw server that upgrades, writes `good` numbered binary frames of
/// 8 bytes then `fault`, and reports what the client sent back; the client
/// (from `configure`) reads with `recv` in a tight loop. Returns the messages'
/// count, the first two errors, and what the server saw.
fn good_then_fault(
    good: u64,
    fault: Vec<u8>,
    configure: impl FnOnce(Client) -> Client,
) -> (u64, Error, Error, Saw) {
    let (tx, rx) = mpsc::channel::<Saw>();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |mut tcp| {
        let tx = tx.lock().unwrap().clone();
        if raw::handshake(&mut tcp).is_err() {
            let _ = tx.send(Saw::Nothing);
            return;
        }
        let mut out = Vec::with_capacity(good as usize * 10 + fault.len());
        for i in 0..good {
            out.extend(raw::frame(0x80 | 0x2, &i.to_be_bytes()));
        }
        out.extend_from_slice(&fault);
        // The client may hang up before it has read everything: that is fine.
        let _ = tcp.write_all(&out);
        let _ = tx.send(raw::read_client_close(&mut tcp, Duration::from_secs(5)));
    });
    let ws = Arc::new(
        configure(Client::new(server.url()).close_timeout(Duration::from_secs(2)))
            .connect()
            .unwrap(),
    );
    let progress = Arc::new(AtomicU64::new(0));
    let (ws2, p2) = (ws.clone(), progress.clone());
    let start = Instant::now();
    let (got, first, second) = bounded(LIMIT, reporter(&ws, &progress), move || {
        let mut got = 0u64;
        let first = loop {
            match ws2.recv() {
                Ok(msg) => {
                    assert_eq!(
                        msg,
                        Message::binary(got.to_be_bytes().to_vec()),
                        "message {got}"
                    );
                    got += 1;
                    p2.store(got, Ordering::Relaxed);
                }
                Err(e) => break e,
            }
        };
        let second = ws2.recv().expect_err("recv after the end");
        drop(ws2);
        (got, first, second)
    });
    let took = start.elapsed();
    let saw = rx.recv_timeout(WAIT).expect("the server reports");
    println!("{got} messages in {took:?}, then {first} / {second}; server saw {saw:?}");
    check_accounting(&ws.stats(), "at the end");
    (got, first, second, saw)
}

// ---------------------------------------------------------------------------
// 5. A protocol error after many good messages: they all come first.

#[test]
fn fast_consumer_protocol_error_after_good_messages() {
    let _serial = serial();
    const GOOD: u64 = 10_000;
    // A data frame with reserved opcode 0x3.
    let mut fault = Vec::new();
    fault.extend(raw::frame(0x80 | 0x3, b"op3"));
    let (got, first, second, saw) = good_then_fault(GOOD, fault, |c| c);
    assert_eq!(got, GOOD, "every good message before the error");
    assert_eq!(first.kind(), ErrorKind::Protocol, "{first} / {first:?}");
    assert!(matches!(first, Error::Protocol(_)), "{first:?}");
    assert!(!first.is_closed());
    assert_eq!(
        second.kind(),
        ErrorKind::Protocol,
        "the end is reported again: {second:?}"
    );
    assert_eq!(saw, Saw::Close(Some(1002)), "the server gets close 1002");
}

#[test]
fn fast_consumer_rsv_bits_error_after_good_messages() {
    let _serial = serial();
    const GOOD: u64 = 10_000;
    // A text frame with RSV1 set and no extension negotiated.
    let mut fault = Vec::new();
    fault.extend(raw::frame(0x80 | 0x40 | 0x1, b"rsv1"));
    let (got, first, second, saw) = good_then_fault(GOOD, fault, |c| c);
    assert_eq!(got, GOOD, "every good message before the error");
    assert_eq!(first.kind(), ErrorKind::Protocol, "{first} / {first:?}");
    assert_eq!(second.kind(), ErrorKind::Protocol, "{second:?}");
    assert_eq!(saw, Saw::Close(Some(1002)), "the server gets close 1002");
}

// ---------------------------------------------------------------------------
// 6. A message over max_message_size after many good ones.

#[test]
fn fast_consumer_oversized_message_closes_1009() {
    let _serial = serial();
    const GOOD: u64 = 5_000;
    const SIZE: usize = 64;

    let (tx, rx) = mpsc::channel::<Option<Option<u16>>>();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |tcp| {
        let tx = tx.lock().unwrap().clone();
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)));
        for i in 0..GOOD {
            if ws
                .write(Message::binary(common::flood_payload(i, SIZE)))
                .is_err()
            {
                return;
            }
        }
        let _ = ws.write(Message::binary(vec![0xEE; 4096]));
        let _ = ws.flush();
        let _ = tx.send(read_close_reply(&mut ws, Duration::from_secs(5)));
    });
    let ws = Arc::new(
        Client::new(server.url())
            .max_message_size(Some(1024))
            .close_timeout(Duration::from_secs(2))
            .connect()
            .unwrap(),
    );
    let progress = Arc::new(AtomicU64::new(0));
    let (ws2, p2) = (ws.clone(), progress.clone());
    let start = Instant::now();
    let (first, second) = bounded(LIMIT, reporter(&ws, &progress), move || {
        let mut kept = Vec::new();
        recv_flood(&ws2, 0, GOOD, SIZE, &p2, &mut kept);
        recheck_kept(&kept, SIZE);
        let first = ws2.recv().map(|m| format!("{m:?}"));
        let second = ws2.recv().map(|m| format!("{m:?}"));
        drop(ws2);
        (first, second)
    });
    let took = start.elapsed();
    let first = first.expect_err("the oversized message is an error");
    let second = second.expect_err("recv after the end");
    let reply = rx.recv_timeout(WAIT).expect("the server reports");
    println!("{GOOD} messages in {took:?}, then {first} / {second}; server saw {reply:?}");
    assert_eq!(first.kind(), ErrorKind::Capacity, "{first:?}");
    assert!(matches!(first, Error::Capacity(_)), "{first:?}");
    assert_eq!(
        second.kind(),
        ErrorKind::Capacity,
        "the end is reported again: {second:?}"
    );
    assert_eq!(reply, Some(Some(1009)), "the server gets close 1009");
    let s = ws.stats();
    check_accounting(&s, "at the end");
    assert_eq!(s.delivered, GOOD, "{s}");
}

// ---------------------------------------------------------------------------
// 7. try_recv reaches messages that arrived while nobody was receiving,
//    at the start and after a fast recv phase.

#[test]
fn try_recv_reaches_messages_waiting_in_the_kernel() {
    let _serial = serial();
    const BURST: u64 = 10_000;
    const SIZE: usize = 16;

    let server = common::serve(move |tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)));
        let end = Instant::now() + WAIT;
        // Waits for the client's text `word` (bounded).
        let wait_for_text = |ws: &mut tungstenite::WebSocket<TcpStream>, word: &str| loop {
            if Instant::now() >= end {
                return false;
            }
            match ws.read() {
                Ok(Message::Text(t)) if t.as_str() == word => return true,
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(_) => return false,
            }
        };
        for i in 0..10 {
            let _ = ws.write(Message::text(format!("a-{i}")));
        }
        let _ = ws.flush();
        if !wait_for_text(&mut ws, "go") {
            return;
        }
        for i in 0..BURST {
            let _ = ws.write(Message::binary(common::flood_payload(i, SIZE)));
        }
        let _ = ws.flush();
        if !wait_for_text(&mut ws, "again") {
            return;
        }
        for i in 0..10 {
            let _ = ws.write(Message::text(format!("b-{i}")));
        }
        let _ = ws.flush();
        // Keep the connection open (about 3 s) until the client closes it.
        let hold = Instant::now() + Duration::from_secs(3);
        while Instant::now() < hold {
            match ws.read() {
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(_) => return,
            }
        }
    });

    /// Takes `prefix-0..10` with `try_recv`: at most 1,000 tries, 5 ms apart when empty.
    fn try_recv_ten(ws: &WebSocket, prefix: &str) -> usize {
        let mut next = 0;
        let mut empty = 0;
        for _ in 0..1_000 {
            match ws.try_recv() {
                Ok(Some(msg)) => {
                    assert_eq!(
                        msg,
                        Message::text(format!("{prefix}-{next}")),
                        "{}",
                        ws.stats()
                    );
                    next += 1;
                    if next == 10 {
                        return empty;
                    }
                }
                Ok(None) => {
                    empty += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("try_recv after {next} {prefix}-messages: {e}"),
            }
        }
        panic!(
            "try_recv got {next} of 10 {prefix}-messages in 1,000 tries: {}",
            ws.stats()
        );
    }

    let ws = Arc::new(Client::new(server.url()).connect().unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let empty_a = try_recv_ten(&ws, "a");
    assert_eq!(ws.try_recv().unwrap(), None);

    // A fast phase: the consumer reads a burst with recv in a tight loop.
    ws.send_text("go").unwrap();
    let progress = Arc::new(AtomicU64::new(0));
    let (ws2, p2) = (ws.clone(), progress.clone());
    bounded(LIMIT, reporter(&ws, &progress), move || {
        let mut kept = Vec::new();
        recv_flood(&ws2, 0, BURST, SIZE, &p2, &mut kept);
        recheck_kept(&kept, SIZE);
    });
    // Then it stops receiving; more comes; then it polls with try_recv.
    ws.send_text("again").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let empty_b = try_recv_ten(&ws, "b");
    assert_eq!(ws.try_recv().unwrap(), None);
    println!(
        "try_recv came back empty {empty_a} times (start), {empty_b} times (after the fast phase); {}",
        ws.stats()
    );
    let s = ws.stats();
    check_accounting(&s, "at the end");
    assert_eq!(s.delivered, BURST + 20, "{s}");
}

// ---------------------------------------------------------------------------
// 8. Threads: fast consumers leave none behind.

/// libtest names its per-test threads after the tests (`comm` keeps 15 bytes);
/// those come and go as tests are scheduled and are not counted.
const TEST_NAMES: [&str; 9] = [
    "fast_consumer_gets_every_message_in_order_across_speed_changes",
    "fast_consumer_server_pings_are_answered_in_order",
    "fast_consumer_sees_close_after_all_messages",
    "fast_consumer_keepalive_has_no_false_timeout",
    "fast_consumer_protocol_error_after_good_messages",
    "fast_consumer_rsv_bits_error_after_good_messages",
    "fast_consumer_oversized_message_closes_1009",
    "try_recv_reaches_messages_waiting_in_the_kernel",
    "thread_count_is_stable_after_fast_consumer_runs",
];

/// The process's threads other than libtest's test threads.
fn counted_threads() -> Vec<String> {
    common::thread_names("")
        .into_iter()
        .filter(|n| {
            !TEST_NAMES
                .iter()
                .any(|t| t.starts_with(n.as_str()) && n.len() >= 15)
        })
        .collect()
}

#[test]
fn thread_count_is_stable_after_fast_consumer_runs() {
    let _serial = serial();
    const ROUNDS: usize = 50;
    const N: u64 = 2_000;
    const SIZE: usize = 64;

    let flood = common::flood_server(N, SIZE);
    let url = flood.server.url();
    let settle = |limit: usize| {
        common::wait_for(Duration::from_secs(10), || {
            (counted_threads().len() <= limit && common::thread_names("wsapp").is_empty())
                .then_some(())
        })
    };
    // One round first, so that the acceptor has its own name (a new thread
    // shows its parent's name until it sets its own) and lazily started
    // threads, if any, are counted; earlier tests' server threads end once
    // their clients are gone.
    bounded(LIMIT, || "warm-up".to_string(), {
        let url = url.clone();
        move || {
            let ws = Client::new(url.as_str()).connect().unwrap();
            recv_flood(&ws, 0, N, SIZE, &AtomicU64::new(0), &mut Vec::new());
        }
    });
    let _ = common::wait_for(Duration::from_secs(10), || {
        (common::thread_names("test-conn").is_empty()
            && common::thread_names("wsapp").is_empty()
            && !common::thread_names("test-accept").is_empty())
        .then_some(())
    });
    let baseline = counted_threads();
    println!("baseline: {} threads {baseline:?}", baseline.len());

    let progress = Arc::new(AtomicU64::new(0));
    let p2 = progress.clone();
    let report = {
        let progress = progress.clone();
        move || format!("round {}", progress.load(Ordering::SeqCst))
    };
    let start = Instant::now();
    let peak = bounded(LIMIT, report, move || {
        let mut peak = 0;
        for round in 0..ROUNDS {
            p2.store(round as u64, Ordering::SeqCst);
            let ws = Client::new(url.as_str()).connect().unwrap();
            let mut kept = Vec::new();
            let counter = AtomicU64::new(0);
            recv_flood(&ws, 0, N, SIZE, &counter, &mut kept);
            recheck_kept(&kept, SIZE);
            peak = peak.max(common::threads());
            drop(ws);
            // Dropping a connection joins its threads. A joined thread can stay
            // listed in /proc for a moment after `join` returns (the kernel
            // frees the task after it wakes the joiner), so allow a moment.
            let gone = common::wait_for(Duration::from_millis(500), || {
                common::thread_names("wsapp").is_empty().then_some(())
            });
            assert!(
                gone.is_some(),
                "round {round}: wsapp threads still running 500 ms after drop: {:?}",
                common::thread_names("wsapp")
            );
        }
        peak
    });
    let took = start.elapsed();
    let ok = settle(baseline.len());
    let now = counted_threads();
    println!(
        "{ROUNDS} rounds in {took:?}; peak {peak} threads; after: {} (baseline {})",
        now.len(),
        baseline.len()
    );
    assert!(
        ok.is_some(),
        "thread count did not come back: {} now {now:?}, {} before {baseline:?}",
        now.len(),
        baseline.len()
    );
}

/// A consumer in a tight loop reads most messages itself under `Block`
/// (`read_by_consumer`); with `direct_reads(false)` it reads none, and both
/// deliver everything in order.
///
/// "Most" of 50,000 holds for a bound of 1024: before the consumer starts,
/// the I/O thread reads ahead up to the bound, and while the consumer
/// drains that it keeps reading ahead. With the default bound of 8192 a
/// debug build's consumer, no faster than its reader, sometimes never
/// caught up: 16 and 222 of 50,000 read directly in 2 runs of 16 (24,908
/// in one CI run).
#[test]
fn read_by_consumer_counts_direct_reads_and_the_switch_turns_them_off() {
    let _serial = serial();
    const N: u64 = 50_000;
    const SIZE: usize = 64;
    for direct in [true, false] {
        let flood = common::flood_server(N, SIZE);
        let ws = Client::new(flood.server.url())
            .queue(1024)
            .direct_reads(direct)
            .connect()
            .unwrap();
        let deadline = Instant::now() + LIMIT;
        for i in 0..N {
            let msg = ws
                .recv_deadline(deadline)
                .unwrap()
                .unwrap_or_else(|| panic!("message {i} did not come in time"));
            check_flood(&msg, i, SIZE);
        }
        let s = ws.stats();
        check_accounting(&s, "after the flood");
        assert_eq!(s.delivered, N, "{s}");
        if direct {
            assert!(s.read_by_consumer > N / 2, "direct reads: {s}");
        } else {
            assert_eq!(s.read_by_consumer, 0, "direct_reads(false): {s}");
        }
    }
}

/// Over TLS, a consumer in a tight loop (reading the socket itself) while
/// another thread sends (writing it directly): both take the same lock on
/// one TLS stream. Every echo comes back, in order.
#[test]
fn tls_echo_with_a_fast_consumer_and_a_concurrent_sender() {
    let _serial = serial();
    const N: u64 = 20_000;
    let ca = common::TestCa::new();
    let server = common::tls_echo_server(ca.identity(&["localhost", "127.0.0.1"]));
    let ws = Arc::new(
        Client::new(format!("wss://localhost:{}/", server.port()))
            .add_root_certificate(ca.root_pem.as_bytes())
            .connect()
            .unwrap(),
    );
    let tx = ws.sender();
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            tx.send_binary(common::flood_payload(i, 64)).unwrap();
        }
    });
    let deadline = Instant::now() + LIMIT;
    for i in 0..N {
        let msg = ws
            .recv_deadline(deadline)
            .unwrap()
            .unwrap_or_else(|| panic!("echo {i} did not come in time: {}", ws.stats()));
        check_flood(&msg, i, 64);
    }
    sender.join().unwrap();
    let s = ws.stats();
    println!("{s}");
    check_accounting(&s, "after the echoes");
    assert_eq!(s.delivered, N, "{s}");
    assert_eq!(s.messages_out, N, "{s}");
    // The path under test: most echoes were read by the consumer itself.
    assert!(s.read_by_consumer > 0, "{s}");
}
