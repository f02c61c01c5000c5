//! Apps on a hub share its dispatcher pool: each app's callbacks keep wire
//! order, and one handler that blocks holds one dispatcher while the other
//! apps' callbacks go on.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use wsapp::{Client, Hub, WebSocketApp};

const N: u64 = 300;
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn apps_keep_order_and_a_blocked_handler_holds_one_dispatcher() {
    let server = common::numbered_server(N);
    let hub = Hub::with_threads(1, 2).unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    // The slow one: its first message blocks its handler until released.
    let slow = WebSocketApp::new(Client::new(server.url()).hub(&hub).queue(8))
        .on_message(move |_, _| {
            let until = std::time::Instant::now() + WAIT;
            while !r.load(Ordering::Acquire) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .start()
        .unwrap();
    let mut apps = Vec::new();
    let mut done = Vec::new();
    for _ in 0..4 {
        let (tx, rx) = mpsc::channel();
        let mut next = 0u64;
        let app = WebSocketApp::new(Client::new(server.url()).hub(&hub).queue(16))
            .on_error(|_, e| eprintln!("app error: {e}"))
            .on_message(move |_, m| {
                assert_eq!(common::flood_number(&m), Some(next), "wire order");
                next += 1;
                if next == N {
                    let _ = tx.send(());
                }
            })
            .start()
            .unwrap();
        apps.push(app);
        done.push(rx);
    }
    for rx in &done {
        rx.recv_timeout(WAIT)
            .expect("every other app gets all its messages, in order");
    }
    assert_eq!(
        common::thread_names("wsapp-disp").len(),
        2,
        "the hub's pool only"
    );
    release.store(true, Ordering::Release);
    for app in apps.into_iter().chain([slow]) {
        app.close(1000, "").unwrap();
        app.join().unwrap();
    }
}
