//! A hub dropped while an app's `start` on it is still connecting (the
//! server holds its upgrade answer back): `start` either fails saying the
//! hub is going, or its app is closed with 1001 like every other live
//! connection on the hub (the peer sees the code) and `join` says so; never
//! a silent `Ok`, nothing hangs, and the hub's threads are joined.
mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wsapp::{Backoff, Client, Hub, WebSocketApp};

/// One round, both sides, bounded: a hang fails here.
const ROUND_LIMIT: Duration = Duration::from_secs(10);
/// Rounds per setting: each one moves the drop a step across the upgrade answer.
const ROUNDS: u32 = 100;
/// The step, in microseconds: the hand-over window after the answer is a
/// few tens of microseconds here, so steps this small land in it.
const STEP_US: i64 = 6;
/// How long a server connection waits for its round to release the answer.
const GATE_MAX: Duration = Duration::from_secs(5);

/// What the side that calls `start` saw.
#[derive(Debug)]
enum Started {
    Refused(String),
    Ended(Result<(), String>),
}

#[test]
fn dropping_the_hub_while_start_connects_ends_the_app_clearly() {
    // The server reads the request, says so, answers when released, then
    // reports the close code it got (None: the TCP connection just ended).
    let (arrived_tx, arrived) = mpsc::channel::<()>();
    let (release, gate) = mpsc::channel::<()>();
    let (code_tx, codes) = mpsc::channel::<Option<u16>>();
    let arrived = Arc::new(Mutex::new(arrived));
    let (arrived_tx, gate) = (Mutex::new(arrived_tx), Arc::new(Mutex::new(gate)));
    let code_tx = Mutex::new(code_tx);
    let server = common::serve(move |tcp| {
        let _ = arrived_tx.lock().unwrap().send(());
        let code_tx = code_tx.lock().unwrap().clone();
        if gate.lock().unwrap().recv_timeout(GATE_MAX).is_err() {
            return;
        }
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            let _ = code_tx.send(None);
            return;
        };
        let code = loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    break frame.map(|f| u16::from(f.code));
                }
                Ok(m) if m.is_text() || m.is_binary() => {
                    let _ = ws.send(m);
                }
                Ok(_) => {}
                Err(_) => break None,
            }
        };
        let _ = code_tx.send(code);
        while ws.read().is_ok() {}
    });
    let t = Instant::now();
    let (mut refused, mut ended) = (0, 0);
    for reconnect in [false, true] {
        for round in 0..ROUNDS {
            // Negative: the hub is dropped before the answer goes out.
            let shift = (i64::from(round) - i64::from(ROUNDS / 3)) * STEP_US;
            let (tx, rx) = mpsc::channel();
            let url = server.url();
            let (release, arrived) = (release.clone(), arrived.clone());
            let racer = std::thread::spawn(move || {
                let hub = Hub::with_threads(1, 2).unwrap();
                let mut app = WebSocketApp::new(
                    Client::new(url)
                        .hub(&hub)
                        .handshake_timeout(Duration::from_secs(3))
                        .close_timeout(Duration::from_secs(1)),
                );
                if reconnect {
                    app = app.reconnect(
                        Backoff::exponential(Duration::from_millis(5), Duration::from_millis(20))
                            .max_attempts(2),
                    );
                }
                let starter = std::thread::spawn(move || match app.start() {
                    Err(e) => Started::Refused(e.to_string()),
                    Ok(handle) => Started::Ended(handle.join().map_err(|e| e.to_string())),
                });
                // From when the request is in: only the answer is left.
                let _ = arrived.lock().unwrap().recv_timeout(ROUND_LIMIT);
                let pause = Duration::from_micros(shift.unsigned_abs());
                if shift < 0 {
                    drop(hub);
                    std::thread::sleep(pause);
                    let _ = release.send(());
                } else {
                    let _ = release.send(());
                    std::thread::sleep(pause);
                    drop(hub);
                }
                let _ = tx.send(starter.join().expect("the starting thread"));
            });
            let started = rx.recv_timeout(ROUND_LIMIT).unwrap_or_else(|_| {
                panic!(
                    "round {round} (reconnect {reconnect}): dropping the hub {shift} us \
                     from the upgrade answer hung: no end within {ROUND_LIMIT:?}"
                )
            });
            racer.join().unwrap();
            let code = codes
                .recv_timeout(ROUND_LIMIT)
                .expect("the server reports how its connection ended");
            let what = format!("round {round} (reconnect {reconnect}, {shift} us)");
            match &started {
                Started::Refused(e) => {
                    refused += 1;
                    assert!(e.contains("hub"), "{what}: a refusal names the hub: {e}");
                }
                Started::Ended(r) => {
                    ended += 1;
                    let e = r.as_ref().expect_err(&format!(
                        "{what}: an app the hub's end closed ends with that, not Ok"
                    ));
                    assert!(e.contains("1001") || e.contains("hub"), "{what}: {e}");
                    if e.contains("1001") {
                        assert_eq!(code, Some(1001), "{what}: the peer sees 1001");
                    }
                }
            }
        }
    }
    eprintln!(
        "{} rounds in {:?}: {refused} refused, {ended} started and closed",
        2 * ROUNDS,
        t.elapsed()
    );
    assert!(
        common::wait_for(Duration::from_secs(5), || common::thread_names("wsapp-")
            .is_empty()
            .then_some(()))
        .is_some(),
        "threads left: {:?}",
        common::thread_names("wsapp-")
    );
}
