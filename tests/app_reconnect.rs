//! Reconnect: the server stops and starts again on the same port; the app reconnects with backoff, `on_reconnect` re-sends the subscription the new server sees, and messages flow again.

mod app_common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app_common::*;
use tungstenite::Message;
use wsapp::{Backoff, Client, ErrorKind, WebSocketApp};

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Open,
    Reconnect,
    Message(String),
    Error(ErrorKind),
    Close(bool),
}

/// Reads the first text message (the subscription), with the server read timeout.
fn read_subscription(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match ws.read().expect("server read") {
            Message::Text(t) => return t.to_string(),
            _ => continue,
        }
    }
    panic!("no subscription within 10 s");
}

#[test]
fn reconnects_to_a_restarted_server_and_resubscribes() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let port = addr.port();

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let server1 = std::thread::spawn(move || {
        let mut ws = accept_ws(&listener, Duration::from_secs(10));
        let sub = read_subscription(&mut ws);
        ws.send(Message::text("hello-1")).unwrap();
        let _ = stop_rx.recv_timeout(Duration::from_secs(10));
        // The server goes away: connection and listener, no close handshake.
        drop(ws);
        drop(listener);
        sub
    });

    let events = Arc::new(Mutex::new(Vec::new()));
    let (msg_tx, msg_rx) = mpsc::channel::<String>();
    let (e1, e2, e3, e4, e5) = (
        events.clone(),
        events.clone(),
        events.clone(),
        events.clone(),
        events.clone(),
    );
    let handle = WebSocketApp::new(
        Client::new(url(addr))
            .connect_timeout(Duration::from_secs(1))
            .close_timeout(Duration::from_secs(2)),
    )
    .reconnect(Backoff::exponential(
        Duration::from_millis(50),
        Duration::from_millis(500),
    ))
    .on_open(move |ws| {
        e1.lock().unwrap().push(Ev::Open);
        ws.send_text("subscribe:open").unwrap();
    })
    .on_reconnect(move |ws| {
        e2.lock().unwrap().push(Ev::Reconnect);
        ws.send_text("subscribe:reconnect").unwrap();
    })
    .on_message(move |_, m| {
        let t = m.into_text().unwrap().to_string();
        e3.lock().unwrap().push(Ev::Message(t.clone()));
        let _ = msg_tx.send(t);
    })
    .on_error(move |_, e| e4.lock().unwrap().push(Ev::Error(e.kind())))
    .on_close(move |_, f| e5.lock().unwrap().push(Ev::Close(f.is_some())))
    .start()
    .expect("start");
    let sender = handle.sender();

    assert_eq!(
        msg_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        "hello-1"
    );
    let _ = stop_tx.send(());
    assert_eq!(
        join_thread(server1, Duration::from_secs(10)),
        "subscribe:open"
    );

    // The app notices, and its reconnect attempts are refused while the server is down.
    let connect_errors = || {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Ev::Error(ErrorKind::Connect)))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(5), || connect_errors() >= 2),
        "no refused reconnect attempts seen: {:?}",
        events.lock().unwrap()
    );
    assert!(!sender.is_connected());

    // The server comes back on the same port.
    let listener = rebind(port, Duration::from_secs(5));
    let restarted_at = Instant::now();
    let server2 = std::thread::spawn(move || {
        let mut ws = accept_ws(&listener, Duration::from_secs(10));
        let sub = read_subscription(&mut ws);
        ws.send(Message::text("hello-2")).unwrap();
        ws.send(Message::text("hello-3")).unwrap();
        let rest = drain_until_closed(&mut ws, Duration::from_secs(10));
        (sub, rest)
    });

    assert_eq!(
        msg_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "hello-2"
    );
    assert_eq!(
        msg_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "hello-3"
    );
    let back_after = restarted_at.elapsed();
    eprintln!("messages flowed again {back_after:?} after the restart");
    // The backoff ceiling is 500 ms: the app must be back well within a second or so.
    assert!(
        back_after < Duration::from_millis(1500),
        "reconnect took {back_after:?}"
    );

    // Messages flow both ways on the new connection.
    sender.send_text("after-reconnect").unwrap();
    handle.close(1000, "done").unwrap();
    let (result, _) = join_bounded(handle, Duration::from_secs(5));
    assert!(result.is_ok(), "{result:?}");
    let (sub2, rest) = join_thread(server2, Duration::from_secs(10));
    assert_eq!(sub2, "subscribe:reconnect", "on_reconnect's subscription");
    assert!(
        rest.iter()
            .any(|m| m.to_text().ok() == Some("after-reconnect")),
        "the new server never saw a later send: {rest:?}"
    );

    let events = events.lock().unwrap().clone();
    eprintln!("{events:?}");
    assert_eq!(
        events.iter().filter(|e| **e == Ev::Open).count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| **e == Ev::Reconnect).count(),
        1,
        "{events:?}"
    );
    // The first connection's loss is reported, then its on_close (no frame).
    let lost = events
        .iter()
        .position(|e| matches!(e, Ev::Error(ErrorKind::ConnectionLost)))
        .expect("the lost connection was not reported");
    assert_eq!(events[lost + 1], Ev::Close(false), "{events:?}");
    let reconnect_at = events.iter().position(|e| *e == Ev::Reconnect).unwrap();
    assert!(lost < reconnect_at);
    assert_eq!(events[reconnect_at + 1], Ev::Message("hello-2".into()));
}
