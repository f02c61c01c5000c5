//! An app on a hub waiting out a long reconnect backoff (its server refuses)
//! ends at once when closed, and ends with the hub when the hub is dropped:
//! the wait is a hub timer that `close` and the hub's end cut short.
mod common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wsapp::{AppHandle, Backoff, Client, ErrorKind, Hub, WebSocketApp};

/// Far longer than the test waits for anything.
const BACKOFF: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(5);

/// A `ws://` URL on a port nothing listens on (connects are refused at once).
fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("ws://{addr}/")
}

/// Starts an app on `hub` and waits for its first refused connect.
fn backing_off(hub: &Hub, url: &str) -> AppHandle {
    let (tx, rx) = mpsc::channel();
    let app = WebSocketApp::new(Client::new(url).hub(hub))
        .reconnect(Backoff::exponential(BACKOFF, BACKOFF))
        .on_error(move |_, e| {
            let _ = tx.send(e.kind());
        })
        .start()
        .expect("an app that reconnects starts on a hub even if its first connect fails");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), ErrorKind::Connect);
    app
}

/// `join` on a thread, bounded by `within`.
fn join_within(app: AppHandle, within: Duration) -> (wsapp::Result<()>, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(app.join());
    });
    let r = rx.recv_timeout(within).expect("the app ends in time");
    (r, start.elapsed())
}

#[test]
fn close_and_hub_drop_cut_a_backoff_short() {
    let url = refused_url();
    let hub = Hub::with_threads(1, 2).unwrap();

    let app = backing_off(&hub, &url);
    app.close(1000, "").unwrap();
    let (r, took) = join_within(app, WAIT);
    assert!(r.is_ok(), "a closed app ends with Ok: {r:?}");
    assert!(took < Duration::from_secs(1), "close took {took:?}");

    let app = backing_off(&hub, &url);
    let started = Instant::now();
    drop(hub);
    let (r, _) = join_within(app, WAIT);
    let took = started.elapsed();
    let err = r.expect_err("an app whose hub went away ends with why");
    // The hub's end, or (if the hub went before the app set its timer) the
    // refused connect it was about to retry.
    assert!(
        err.to_string().contains("hub") || err.kind() == ErrorKind::Connect,
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "the hub's end took {took:?}");
    assert!(common::thread_names("wsapp-conn").is_empty());
}
