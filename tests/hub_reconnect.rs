//! Apps on a hub reconnect with backoff: a server that drops each app's
//! connection twice; every app reconnects (backoff on the hub's timers, the
//! connect on its bounded connect pool), gets each connection's messages in
//! order, sees `on_error`, `on_close`, `on_reconnect` in the order an app off
//! the hub does, and the process's `wsapp-*` threads stay bounded by the
//! hub's (no thread per app).
mod common;

use std::collections::HashMap;
use std::io::Read;
use std::net::Shutdown;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::Message;
use wsapp::{Backoff, Client, ErrorKind, Hub, WebSocketApp};

const APPS: usize = 8;
/// Connections each app gets: the first two are dropped by the server.
const ROUNDS: usize = 3;
const PER_ROUND: usize = 3;
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Open,
    Reconnect,
    Message(String),
    Error(ErrorKind),
    Close(bool),
}

/// Reads the app's greeting (`app-K`), counts the app's connections, sends
/// `K:round:j` for j in 0..PER_ROUND, then drops the first `ROUNDS - 1`
/// connections (shutting down its write side, no close handshake) and keeps
/// the last one until the client closes.
fn dropping_server() -> common::Server {
    let rounds: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    common::serve(move |tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let app = match ws.read() {
            Ok(Message::Text(t)) => t.to_string(),
            _ => return,
        };
        let round = {
            let mut r = rounds.lock().unwrap();
            let n = r.entry(app.clone()).or_default();
            *n += 1;
            *n - 1
        };
        for j in 0..PER_ROUND {
            if ws
                .send(Message::text(format!("{app}:{round}:{j}")))
                .is_err()
            {
                return;
            }
        }
        if round + 1 < ROUNDS {
            // Dropped: the client reads the messages, then the end of stream.
            let tcp = ws.get_mut();
            let _ = tcp.shutdown(Shutdown::Write);
            let mut sink = [0u8; 256];
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                match tcp.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        } else {
            while ws.read().is_ok() {}
        }
    })
}

fn wsapp_threads() -> usize {
    common::thread_names("wsapp").len()
}

#[test]
fn apps_on_a_hub_reconnect_with_backoff_on_fixed_threads() {
    let server = dropping_server();
    let hub = Hub::with_threads(1, 2).unwrap();
    // The hub's own: one I/O thread and two dispatchers (names set as they start).
    let before = common::wait_for(WAIT, || (wsapp_threads() == 3).then_some(3))
        .expect("the hub's three threads");
    let mut apps = Vec::new();
    let mut logs = Vec::new();
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    let mut peak = 0;
    for k in 0..APPS {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (e1, e2, e3, e4, e5) = (
            events.clone(),
            events.clone(),
            events.clone(),
            events.clone(),
            events.clone(),
        );
        let done = done_tx.clone();
        let name = format!("app-{k}");
        let (n1, n2) = (name.clone(), name.clone());
        let app = WebSocketApp::new(
            Client::new(server.url())
                .hub(&hub)
                .connect_timeout(Duration::from_secs(2)),
        )
        .reconnect(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .on_open(move |ws| {
            e1.lock().unwrap().push(Ev::Open);
            ws.send_text(n1.clone()).unwrap();
        })
        .on_reconnect(move |ws| {
            e2.lock().unwrap().push(Ev::Reconnect);
            ws.send_text(n2.clone()).unwrap();
        })
        .on_message(move |_, m| {
            let t = m.into_text().unwrap().to_string();
            let last = t.ends_with(&format!(":{}:{}", ROUNDS - 1, PER_ROUND - 1));
            e3.lock().unwrap().push(Ev::Message(t));
            if last {
                let _ = done.send(k);
            }
        })
        .on_error(move |_, e| e4.lock().unwrap().push(Ev::Error(e.kind())))
        .on_close(move |_, f| e5.lock().unwrap().push(Ev::Close(f.is_some())))
        .start()
        .expect("an app with reconnect starts on a hub");
        apps.push(app);
        logs.push(events);
        peak = peak.max(wsapp_threads());
    }
    let deadline = Instant::now() + WAIT;
    let mut finished = 0;
    while finished < APPS {
        let left = deadline.saturating_duration_since(Instant::now());
        done_rx
            .recv_timeout(left)
            .expect("every app gets its last connection's messages in time");
        finished += 1;
        peak = peak.max(wsapp_threads());
    }
    let during = wsapp_threads();
    eprintln!("wsapp threads: before {before}, peak {peak}, after reconnects {during}");
    assert!(
        common::thread_names("wsapp-io").is_empty(),
        "no thread per connection"
    );
    // The hub's I/O thread and dispatchers, plus its bounded connect pool.
    assert!(
        peak <= before + 2,
        "at most the connect pool's threads were added: {before} -> {peak}"
    );
    assert_eq!(common::thread_names("wsapp-hub").len(), 1);
    assert_eq!(common::thread_names("wsapp-disp").len(), 2);
    assert!(common::thread_names("wsapp-conn").len() <= 2);

    for (k, (app, events)) in apps.into_iter().zip(logs).enumerate() {
        app.close(1000, "").unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(app.join());
        });
        rx.recv_timeout(WAIT)
            .expect("a closed app ends in time")
            .expect("a closed app ends with Ok");
        let events = events.lock().unwrap().clone();
        let mut want = Vec::new();
        for round in 0..ROUNDS {
            want.push(if round == 0 { Ev::Open } else { Ev::Reconnect });
            for j in 0..PER_ROUND {
                want.push(Ev::Message(format!("app-{k}:{round}:{j}")));
            }
            if round + 1 < ROUNDS {
                want.push(Ev::Error(ErrorKind::ConnectionLost));
                want.push(Ev::Close(false));
            }
        }
        // The user's close: on_close with the server's answer.
        want.push(Ev::Close(true));
        assert_eq!(events, want, "app-{k}'s callbacks, in order");
    }
    drop(hub);
}
