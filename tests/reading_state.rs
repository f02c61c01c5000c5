//! Who reads the socket, at the seams: a pause followed by a slow handler, a
//! large message trickling in under keepalive, `close` from several threads,
//! and what a paused connection can and cannot do (pings, close).

mod app_common;
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw::*;
use wsapp::{Client, ErrorKind, Message, Overflow, Reader, WebSocketApp};

/// Busy-waits `d`: sleeps this short are rounded up far past it here.
fn busy(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Finding 1: a handler that blocks (the inbox fills, reading pauses) and then
/// takes 0.4 ms per message. After reading resumes, someone must read the
/// socket again: the pongs sit behind the backlog, and a pong timeout there
/// would end a healthy connection and, with reconnect, lose what the kernel held.
fn pause_then_slow(direct: bool) {
    const TOTAL: usize = 6_000;
    let listener = app_common::listen_reusable();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || app_common::flood(listener, TOTAL));
    let delivered = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (d2, errs) = (delivered.clone(), errors.clone());
    let handle = WebSocketApp::new(
        Client::new(app_common::url(addr))
            .queue(2048)
            .overflow(Overflow::Block)
            .direct_reads(direct)
            .close_timeout(Duration::from_secs(2)),
    )
    .ping_interval(Duration::from_secs(1))
    .ping_timeout(Duration::from_millis(300))
    .on_message(move |ws, _| {
        let n = d2.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 {
            std::thread::sleep(Duration::from_secs(2));
        } else {
            busy(Duration::from_micros(400));
        }
        if n == TOTAL as u64 {
            let _ = ws.close(1000, "done");
        }
    })
    .on_error(move |_, e| errs.lock().unwrap().push(format!("{:?}: {e}", e.kind())))
    .start()
    .expect("start");
    let (res, took) = app_common::join_bounded(handle, Duration::from_secs(30));
    let report = app_common::join_thread(server, Duration::from_secs(25));
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "no error expected, got {errors:?} after {took:?} with {} of {TOTAL} delivered",
        delivered.load(Ordering::Relaxed)
    );
    assert_eq!(delivered.load(Ordering::Relaxed), TOTAL as u64, "{res:?}");
    assert!(report.pings > 0, "keepalive pings reached the server");
}

#[test]
fn a_pause_then_a_slow_handler_gets_everything_without_a_pong_timeout() {
    pause_then_slow(true);
}

#[test]
fn the_same_without_direct_reads() {
    pause_then_slow(false);
}

/// Finding 2: a pong cannot overtake a frame in progress, so bytes of a large
/// message arriving are life too. 1.5 MiB in one frame at about 1.3 MB/s,
/// ping every 400 ms with a 250 ms timeout.
fn trickled_large_message(direct: bool) {
    const SIZE: usize = 3 << 19;
    let server = common::serve(move |mut tcp: TcpStream| {
        if handshake(&mut tcp).is_err() {
            return;
        }
        let mut head = vec![FIN | BINARY];
        push_len(&mut head, 0, SIZE as u64);
        let _ = tcp.write_all(&head);
        let piece = vec![b'x'; 32 << 10];
        for _ in 0..SIZE / piece.len() {
            std::thread::sleep(Duration::from_millis(25));
            if tcp.write_all(&piece).is_err() {
                return;
            }
        }
        let _ = tcp.write_all(&frame(FIN | CLOSE, &close_payload(1000, b"")));
        let _ = read_client_close(&mut tcp, Duration::from_secs(5));
    });
    let ws = Client::new(server.url())
        .direct_reads(direct)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20))
        .ping_interval(Duration::from_millis(400))
        .ping_timeout(Duration::from_millis(250))
        .connect()
        .expect("connect");
    let start = Instant::now();
    match ws.recv_timeout(Duration::from_secs(15)) {
        Ok(Some(Message::Binary(b))) => assert_eq!(b.len(), SIZE),
        other => panic!(
            "expected the {SIZE}-byte message, got {other:?} after {:?}",
            start.elapsed()
        ),
    }
    let end = ws.recv_timeout(Duration::from_secs(5)).unwrap_err();
    assert!(end.is_closed(), "{end:?}");
}

#[test]
fn bytes_of_a_large_message_count_as_life() {
    trickled_large_message(true);
}

#[test]
fn bytes_of_a_large_message_count_as_life_without_direct_reads() {
    trickled_large_message(false);
}

/// A raw server that answers the client's close after `delay`, then closes TCP.
fn slow_closer(delay: Duration) -> common::Server {
    common::serve(move |mut tcp: TcpStream| {
        if handshake(&mut tcp).is_err() {
            return;
        }
        if let Saw::Close(code) = read_client_close(&mut tcp, Duration::from_secs(10)) {
            std::thread::sleep(delay);
            let _ = tcp.write_all(&frame(
                FIN | CLOSE,
                &close_payload(code.unwrap_or(1000), b""),
            ));
        }
    })
}

/// Finding 3: `WebSocket::close` waits for the end; from any number of
/// threads, every call returns only once the connection has ended.
#[test]
fn close_from_several_threads_waits_in_each() {
    const DELAY: Duration = Duration::from_millis(300);
    let server = slow_closer(DELAY);
    let ws = Arc::new(
        Client::new(server.url())
            .close_timeout(Duration::from_secs(5))
            .connect()
            .expect("connect"),
    );
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let ws = ws.clone();
            std::thread::spawn(move || {
                let r = ws.close(1000, "bye");
                let ended = ws.try_recv().is_err();
                (r.is_ok(), start.elapsed(), ended)
            })
        })
        .collect();
    for t in threads {
        let (ok, took, ended) = t.join().unwrap();
        assert!(ok);
        assert!(
            took >= DELAY - Duration::from_millis(20),
            "close returned after {took:?}, before the server's close frame"
        );
        assert!(ended, "close returned before the connection ended");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
}

/// Finding 4, what is true of a paused connection: a ping that arrives behind
/// held-back data is answered only once that data is read, and `close` while
/// paused waits for the close timeout; what was queued is still delivered.
#[test]
fn a_paused_connection_answers_pings_after_the_data_ahead_and_closes_at_the_timeout() {
    const BEFORE: usize = 200;
    let pong_seen = Arc::new(Mutex::new(None::<Instant>));
    let p2 = pong_seen.clone();
    let server = common::serve(move |mut tcp: TcpStream| {
        if handshake(&mut tcp).is_err() {
            return;
        }
        let mut out = Vec::new();
        for _ in 0..BEFORE {
            out.extend(frame(FIN | BINARY, &[7u8; 1000]));
        }
        out.extend(frame(FIN | PING, b"p"));
        let _ = tcp.write_all(&out);
        // Wait for the pong (or the client's close); note when the pong came.
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = [0u8; 2];
        if std::io::Read::read_exact(&mut tcp, &mut buf).is_ok() && buf[0] & 0x0F == 0xA {
            *p2.lock().unwrap() = Some(Instant::now());
        }
        let _ = read_client_close(&mut tcp, Duration::from_secs(10));
    });
    let ws = Client::new(server.url())
        .queue(16)
        .close_timeout(Duration::from_millis(500))
        .connect()
        .expect("connect");
    // Let the inbox fill and reading pause; the stats say nobody reads.
    assert!(app_common::wait_until(Duration::from_secs(5), || ws
        .stats()
        .paused));
    assert_eq!(ws.stats().reader, Reader::HeldBack, "{}", ws.stats());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pong_seen.lock().unwrap().is_none(),
        "the ping sits behind held-back data: no pong while paused"
    );
    let drained = Instant::now();
    let mut got = 0;
    while got < BEFORE {
        match ws.recv_timeout(Duration::from_secs(5)).expect("recv") {
            Some(Message::Binary(_)) => got += 1,
            Some(Message::Ping(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(app_common::wait_until(Duration::from_secs(2), || pong_seen
        .lock()
        .unwrap()
        .is_some()));
    assert!(pong_seen.lock().unwrap().unwrap() >= drained);
    drop(ws);

    // Closing while paused: the server's close frame cannot be read behind a
    // full inbox, so close waits for the close timeout.
    let server = slow_closer(Duration::ZERO);
    let flood = common::flood_server(100_000, 1000);
    drop(server);
    let ws = Client::new(flood.server.url())
        .queue(16)
        .recv_buffer_size(64 << 10)
        .close_timeout(Duration::from_millis(500))
        .connect()
        .expect("connect");
    assert!(app_common::wait_until(Duration::from_secs(5), || ws
        .stats()
        .paused));
    let t = Instant::now();
    ws.close(1000, "").unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // What was queued is still there, then the end.
    let mut queued = 0;
    let end = loop {
        match ws.recv_timeout(Duration::from_secs(2)) {
            Ok(Some(_)) => queued += 1,
            Ok(None) => panic!("no end after close"),
            Err(e) => break e,
        }
    };
    assert!(queued >= 16, "{queued}");
    assert_eq!(end.kind(), ErrorKind::Timeout, "{end}");
}
