//! A panicking `on_message` (on the 2nd message) is reported to `on_error` as a Handler error naming the callback and the panic text, and later messages still arrive.

mod app_common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app_common::*;
use tungstenite::Message;
use wsapp::{Client, ErrorKind, WebSocketApp};

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Message(String),
    Error(ErrorKind, String, Option<(&'static str, String)>),
}

#[test]
fn a_panic_in_on_message_is_reported_and_the_connection_goes_on() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut ws = accept_ws(&listener, Duration::from_secs(10));
        for m in ["m1", "m2", "m3", "m4"] {
            ws.send(Message::text(m)).unwrap();
        }
        drain_until_closed(&mut ws, Duration::from_secs(10))
    });

    let events = Arc::new(Mutex::new(Vec::new()));
    let (e1, e2) = (events.clone(), events.clone());
    let (last_tx, last_rx) = mpsc::channel();
    let mut n = 0;
    let handle = WebSocketApp::new(Client::new(url(addr)).close_timeout(Duration::from_secs(2)))
        .on_message(move |_, m| {
            n += 1;
            let text = m.into_text().unwrap().to_string();
            if n == 2 {
                panic!("boom on message {text}");
            }
            e1.lock().unwrap().push(Ev::Message(text.clone()));
            if text == "m4" {
                let _ = last_tx.send(());
            }
        })
        .on_error(move |_, e| {
            let handler = match e {
                wsapp::Error::Handler { callback, message } => Some((*callback, message.clone())),
                _ => None,
            };
            e2.lock()
                .unwrap()
                .push(Ev::Error(e.kind(), e.to_string(), handler));
        })
        .start()
        .expect("start");

    let got_last = last_rx.recv_timeout(Duration::from_secs(10));
    handle.close(1000, "done").unwrap();
    let (result, _) = join_bounded(handle, Duration::from_secs(5));
    join_thread(server, Duration::from_secs(10));
    let events = events.lock().unwrap().clone();
    eprintln!("{events:?}");

    assert!(
        got_last.is_ok(),
        "messages after the panic never arrived: {events:?}"
    );
    assert!(
        result.is_ok(),
        "the app must survive its handler's panic: {result:?}"
    );
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0], Ev::Message("m1".into()));
    match &events[1] {
        Ev::Error(kind, text, handler) => {
            assert_eq!(*kind, ErrorKind::Handler, "{text}");
            assert!(
                text.contains("on_message"),
                "message should name the callback: {text}"
            );
            assert!(
                text.contains("boom on message m2"),
                "message should carry the panic text: {text}"
            );
            let (callback, message) = handler.clone().expect("Error::Handler");
            assert_eq!(callback, "on_message");
            assert_eq!(message, "boom on message m2");
        }
        other => panic!("expected the panic report second, got {other:?}"),
    }
    assert_eq!(events[2], Ev::Message("m3".into()));
    assert_eq!(events[3], Ev::Message("m4".into()));
}
