//! `close()` from another thread ends `run_forever` with `Ok(())` within the close timeout, whether the server answers the close or not.

mod app_common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app_common::*;
use tungstenite::Message;
use wsapp::{Client, WebSocketApp};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_secs(1);

/// A well-behaved server answers the close at once: `run_forever` returns
/// `Ok(())` well inside the close timeout, and the server sees our code and reason.
#[test]
fn close_via_app_sender_ends_run_forever_ok() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut ws = accept_ws(&listener, Duration::from_secs(10));
        ws.send(Message::text("hello")).unwrap();
        drain_until_closed(&mut ws, Duration::from_secs(10))
    });

    let (opened_tx, opened_rx) = mpsc::channel();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let errs = errors.clone();
    let app = WebSocketApp::new(Client::new(url(addr)).close_timeout(CLOSE_TIMEOUT))
        .on_message(move |_, m| {
            let _ = opened_tx.send(m.into_text().unwrap().to_string());
        })
        .on_error(move |_, e| errs.lock().unwrap().push(e.to_string()));
    let sender = app.sender(); // taken before run_forever

    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send((app.run_forever(), Instant::now()));
    });

    assert_eq!(
        opened_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no message from the server"),
        "hello"
    );
    let closing = std::thread::spawn(move || {
        let at = Instant::now();
        sender.close(1000, "done").expect("close");
        at
    });
    let closed_at = closing.join().unwrap();
    let (result, ended_at) = done_rx
        .recv_timeout(CLOSE_TIMEOUT + MARGIN)
        .expect("run_forever did not return within the close timeout after close()");
    let took = ended_at.saturating_duration_since(closed_at);
    eprintln!("run_forever returned {took:?} after close()");
    assert!(
        result.is_ok(),
        "close() must end run_forever with Ok(()), got {result:?}"
    );
    // The server answers at once: no reason to wait for the close timeout.
    assert!(
        took < CLOSE_TIMEOUT,
        "took {took:?} although the server answered the close"
    );
    assert!(
        errors.lock().unwrap().is_empty(),
        "errors: {:?}",
        errors.lock().unwrap()
    );

    let seen = join_thread(server, Duration::from_secs(10));
    let close = seen.iter().find_map(|m| match m {
        Message::Close(f) => Some(f.clone()),
        _ => None,
    });
    let frame = close
        .expect("the server never got a close frame")
        .expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1000);
    assert_eq!(frame.reason.as_str(), "done");
}

/// A server that never reads: the close handshake cannot finish, so the app
/// gives up after the close timeout and still returns `Ok(())` (started with
/// `start()`, closed through the `AppHandle`).
#[test]
fn close_via_app_handle_against_a_silent_server_ends_within_close_timeout() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let ws = accept_ws(&listener, Duration::from_secs(10));
        // Handshake done; now hold the socket and never read or write.
        let _ = stop_rx.recv_timeout(Duration::from_secs(20));
        drop(ws);
    });

    let (open_tx, open_rx) = mpsc::channel();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let errs = errors.clone();
    let handle = WebSocketApp::new(Client::new(url(addr)).close_timeout(CLOSE_TIMEOUT))
        .on_open(move |_| {
            let _ = open_tx.send(());
        })
        .on_error(move |_, e| errs.lock().unwrap().push(e.to_string()))
        .start()
        .expect("start");
    open_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("never opened");
    assert!(handle.sender().is_connected());

    let closed_at = Instant::now();
    let closer = handle.sender();
    std::thread::spawn(move || closer.close(1001, "going away"))
        .join()
        .unwrap()
        .expect("close");
    let (result, _) = join_bounded(handle, CLOSE_TIMEOUT + MARGIN);
    let took = closed_at.elapsed();
    eprintln!("run_forever returned {took:?} after close() (silent server)");
    assert!(
        result.is_ok(),
        "close() must end run_forever with Ok(()), got {result:?}"
    );
    assert!(took < CLOSE_TIMEOUT + MARGIN, "took {took:?}");
    // A close the user asked for is not an error, even when it timed out.
    assert!(
        errors.lock().unwrap().is_empty(),
        "errors: {:?}",
        errors.lock().unwrap()
    );

    let _ = stop_tx.send(());
    join_thread(server, Duration::from_secs(5));
}
