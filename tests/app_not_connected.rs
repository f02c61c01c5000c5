//! Between connections (before the first, after a loss, during reconnect attempts) `AppSender::send_text` fails with NotConnected; once reconnected it sends again.

mod app_common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app_common::*;
use tungstenite::Message;
use wsapp::{Backoff, Client, ErrorKind, WebSocketApp};

#[test]
fn sends_between_connections_fail_with_not_connected() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let port = addr.port();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let server1 = std::thread::spawn(move || {
        let ws = accept_ws(&listener, Duration::from_secs(10));
        let _ = stop_rx.recv_timeout(Duration::from_secs(10));
        // Gone: no close handshake, and nothing listens any more.
        drop(ws);
        drop(listener);
    });

    // What sends made from inside the callbacks returned.
    let in_close = Arc::new(Mutex::new(Vec::new()));
    let in_error = Arc::new(Mutex::new(Vec::new()));
    let (c, e) = (in_close.clone(), in_error.clone());
    let (open_tx, open_rx) = mpsc::channel::<&'static str>();
    let open_tx2 = open_tx.clone();
    let app = WebSocketApp::new(Client::new(url(addr)).connect_timeout(Duration::from_secs(1)))
        .reconnect(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ))
        .on_open(move |_| {
            let _ = open_tx.send("open");
        })
        .on_reconnect(move |_| {
            let _ = open_tx2.send("reconnect");
        })
        .on_close(move |ws, _| {
            c.lock()
                .unwrap()
                .push(ws.send_text("from on_close").map_err(|e| e.kind()))
        })
        .on_error(move |ws, err| {
            if err.kind() == ErrorKind::Connect {
                e.lock()
                    .unwrap()
                    .push(ws.send_text("from on_error").map_err(|e| e.kind()));
            }
        });

    // Before the first connection.
    let sender = app.sender();
    let err = sender.send_text("too early").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");

    let handle = app.start().expect("start");
    assert_eq!(
        open_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        "open"
    );
    sender
        .send_text("connected")
        .expect("a send on an open connection");

    // Lose the connection; the server stays down, so no connection can exist.
    let _ = stop_tx.send(());
    join_thread(server1, Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(5), || in_error.lock().unwrap().len()
            >= 2),
        "no failed reconnect attempts"
    );
    assert!(!sender.is_connected());
    let err = sender.send_text("while down").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    assert!(err.to_string().contains("not connected"), "{err}");
    assert_eq!(
        in_close.lock().unwrap().as_slice(),
        &[Err(ErrorKind::NotConnected)],
        "a send from on_close (the connection is gone)"
    );
    assert!(
        in_error
            .lock()
            .unwrap()
            .iter()
            .all(|r| *r == Err(ErrorKind::NotConnected)),
        "sends from on_error during reconnect attempts: {:?}",
        in_error.lock().unwrap()
    );

    // Back again: sends work.
    let listener = rebind(port, Duration::from_secs(5));
    let server2 = std::thread::spawn(move || {
        let mut ws = accept_ws(&listener, Duration::from_secs(10));
        drain_until_closed(&mut ws, Duration::from_secs(10))
    });
    assert_eq!(
        open_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "reconnect"
    );
    sender
        .send_text("back")
        .expect("a send after the reconnect");
    handle.close(1000, "done").unwrap();
    let (result, _) = join_bounded(handle, Duration::from_secs(5));
    assert!(result.is_ok(), "{result:?}");
    let seen = join_thread(server2, Duration::from_secs(10));
    assert!(
        seen.iter()
            .any(|m| matches!(m, Message::Text(t) if t.as_str() == "back")),
        "{seen:?}"
    );
    // After close: closed, not "not connected".
    assert!(sender.send_text("late").unwrap_err().is_closed());
}
