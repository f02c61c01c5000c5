//! `close()` during a long reconnect backoff (server down, backoff minimum 10 s) makes `run_forever` return `Ok(())` at once.

mod app_common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app_common::*;
use wsapp::{Backoff, Client, ErrorKind, WebSocketApp};

#[test]
fn close_cuts_a_long_backoff_short() {
    // A port with nothing listening: every connect is refused at once.
    let port = {
        let l = listen_reusable();
        l.local_addr().unwrap().port()
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    let errors = Arc::new(Mutex::new(Vec::<(Instant, ErrorKind)>::new()));
    let errs = errors.clone();
    let app = WebSocketApp::new(Client::new(url(addr)).connect_timeout(Duration::from_secs(1)))
        .reconnect(Backoff::exponential(
            Duration::from_secs(10),
            Duration::from_secs(20),
        ))
        .on_error(move |_, e| errs.lock().unwrap().push((Instant::now(), e.kind())));
    let sender = app.sender();

    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send((app.run_forever(), Instant::now()));
    });

    assert!(
        wait_until(Duration::from_secs(5), || !errors
            .lock()
            .unwrap()
            .is_empty()),
        "the first connect attempt never failed"
    );
    // Now in the backoff sleep (a random delay of up to 10 s); let it settle in there.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!sender.is_connected());

    let closed_at = Instant::now();
    sender.close(1000, "bye").expect("close");
    let (result, ended_at) = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("run_forever kept sleeping in its backoff after close()");
    let took = ended_at.saturating_duration_since(closed_at);
    let errors = errors.lock().unwrap().clone();
    eprintln!("run_forever returned {took:?} after close(); errors {errors:?}");
    assert!(
        result.is_ok(),
        "close() must end run_forever with Ok(()), got {result:?}"
    );
    assert!(
        took < Duration::from_millis(500),
        "returned {took:?} after close()"
    );
    assert!(
        errors.iter().all(|(_, k)| *k == ErrorKind::Connect),
        "only refused connects expected: {errors:?}"
    );
    // After close, sends fail as closed rather than "not connected".
    assert!(sender.send_text("late").unwrap_err().is_closed());
}
