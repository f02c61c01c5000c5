//! Ping timeout: a server that completes the handshake and then never reads (so never answers a ping) is given up on within interval + timeout + margin, with a Timeout error that mentions pong.

mod app_common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app_common::*;
use wsapp::{Client, ErrorKind, Phase, WebSocketApp};

#[derive(Debug)]
enum Ev {
    Open,
    Error(ErrorKind, String, bool),
    Close(bool),
}

#[test]
fn unanswered_ping_ends_the_app_with_a_pong_timeout() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let ws = accept_ws(&listener, Duration::from_secs(10));
        // Handshake done: hold the socket, read nothing, answer nothing.
        let _ = stop_rx.recv_timeout(Duration::from_secs(20));
        drop(ws);
    });

    let events = Arc::new(Mutex::new(Vec::new()));
    let (e1, e2, e3) = (events.clone(), events.clone(), events.clone());
    let app = WebSocketApp::new(Client::new(url(addr)).close_timeout(Duration::from_millis(500)))
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .on_open(move |_| e1.lock().unwrap().push((Instant::now(), Ev::Open)))
        .on_error(move |_, e| {
            let is_pong = matches!(e, wsapp::Error::Timeout(Phase::Pong));
            e2.lock()
                .unwrap()
                .push((Instant::now(), Ev::Error(e.kind(), e.to_string(), is_pong)))
        })
        .on_close(move |_, f| {
            e3.lock()
                .unwrap()
                .push((Instant::now(), Ev::Close(f.is_some())))
        });

    let (result, took) = run_bounded(app, Duration::from_secs(10));
    let _ = stop_tx.send(());
    join_thread(server, Duration::from_secs(5));

    let events = events.lock().unwrap();
    eprintln!("run_forever returned after {took:?}: {result:?}; events {events:?}");
    let opened_at = match events.first() {
        Some((at, Ev::Open)) => *at,
        other => panic!("first event should be on_open, got {other:?}"),
    };

    // Exactly one error: the pong timeout.
    let errors: Vec<_> = events
        .iter()
        .filter_map(|(at, e)| match e {
            Ev::Error(kind, text, is_pong) => Some((*at, *kind, text.clone(), *is_pong)),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one on_error call, got {errors:?}"
    );
    let (error_at, kind, text, is_pong) = errors[0].clone();
    assert_eq!(kind, ErrorKind::Timeout, "{text}");
    assert!(is_pong, "expected Error::Timeout(Phase::Pong), got {text}");
    assert!(
        text.to_lowercase().contains("pong"),
        "message should mention pong: {text}"
    );

    // Not before the first ping's deadline (300 ms + 200 ms), not much after it.
    let after_open = error_at.saturating_duration_since(opened_at);
    assert!(
        after_open >= Duration::from_millis(450),
        "timed out too early: {after_open:?} after open"
    );
    assert!(
        took < Duration::from_millis(1500),
        "the app took {took:?} to give up"
    );

    // Then on_close, without a frame (there was no close handshake).
    assert!(
        matches!(events.last(), Some((_, Ev::Close(false)))),
        "last event should be on_close(None): {events:?}"
    );

    // run_forever (reconnect off) returns the same timeout.
    let err = result.expect_err("a dead connection must end run_forever with an error");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(matches!(err, wsapp::Error::Timeout(Phase::Pong)), "{err}");
}
