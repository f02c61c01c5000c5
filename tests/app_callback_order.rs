//! Callback order: open, three messages, a ping, a message, then the server's close (4000 "bye"), in wire order; `run_forever` returns the server's close.

mod app_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use app_common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;
use wsapp::{Client, ErrorKind, WebSocketApp};

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Open,
    Message(String),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Error(String),
    Close(Option<(u16, String)>),
    Reconnect,
}

#[test]
fn callbacks_run_in_wire_order_and_run_forever_returns_the_server_close() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut ws = accept_ws(&listener, Duration::from_secs(10));
        for m in ["m1", "m2", "m3"] {
            ws.send(Message::text(m)).unwrap();
        }
        ws.send(Message::Ping(b"p1"[..].into())).unwrap();
        ws.send(Message::text("m4")).unwrap();
        ws.close(Some(CloseFrame {
            code: CloseCode::from(4000),
            reason: "bye".into(),
        }))
        .unwrap();
        // The client's pong and close reply.
        drain_until_closed(&mut ws, Duration::from_secs(5))
    });

    let events = Arc::new(Mutex::new(Vec::new()));
    let rec = |e: &Arc<Mutex<Vec<Ev>>>| {
        let e = e.clone();
        move |ev: Ev| e.lock().unwrap().push(ev)
    };
    let (r1, r2, r3, r4, r5, r6, r7) = (
        rec(&events),
        rec(&events),
        rec(&events),
        rec(&events),
        rec(&events),
        rec(&events),
        rec(&events),
    );
    let app = WebSocketApp::new(Client::new(url(addr)).close_timeout(Duration::from_secs(2)))
        .on_open(move |_| r1(Ev::Open))
        .on_message(move |_, m| r2(Ev::Message(m.into_text().unwrap().to_string())))
        .on_ping(move |_, p| r3(Ev::Ping(p.to_vec())))
        .on_pong(move |_, p| r4(Ev::Pong(p.to_vec())))
        .on_error(move |_, e| r5(Ev::Error(e.to_string())))
        .on_close(move |_, f| {
            r6(Ev::Close(
                f.map(|f| (u16::from(f.code), f.reason.to_string())),
            ))
        })
        .on_reconnect(move |_| r7(Ev::Reconnect));

    let (result, took) = run_bounded(app, Duration::from_secs(10));
    let seen_by_server = join_thread(server, Duration::from_secs(10));

    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            Ev::Open,
            Ev::Message("m1".into()),
            Ev::Message("m2".into()),
            Ev::Message("m3".into()),
            Ev::Ping(b"p1".to_vec()),
            Ev::Message("m4".into()),
            Ev::Close(Some((4000, "bye".into()))),
        ],
        "callbacks out of order or extra callbacks"
    );

    // Reconnect is off: run_forever returns the server's close as Error::Closed.
    let err =
        result.expect_err("a server close without reconnect must end run_forever with an error");
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert!(err.is_closed());
    let frame = err.close_frame().expect("the server's close frame");
    assert_eq!(u16::from(frame.code), 4000);
    assert_eq!(frame.reason.as_str(), "bye");
    assert!(took < Duration::from_secs(3), "run_forever took {took:?}");

    // The I/O thread answered the server's ping on its own.
    assert!(
        seen_by_server
            .iter()
            .any(|m| matches!(m, Message::Pong(p) if &p[..] == b"p1")),
        "server never saw the pong: {seen_by_server:?}"
    );
}
