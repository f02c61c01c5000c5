//! `on_stats` for an app on a hub: driven by the hub's timers and run on its
//! dispatchers, it keeps its interval while messages stream in without a gap
//! (a flooding server, a handler slower than the wire), with no thread of its own.

mod app_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app_common::*;
use wsapp::{Client, Hub, WebSocketApp};

const INTERVAL: Duration = Duration::from_millis(200);
const RUN_FOR: Duration = Duration::from_millis(1500);

#[test]
fn on_stats_fires_on_schedule_on_a_hub_while_the_inbox_is_never_empty() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || flood(listener, 50_000));
    let hub = Hub::with_threads(1, 2).unwrap();

    let slow = Arc::new(AtomicBool::new(true));
    let delivered = Arc::new(AtomicU64::new(0));
    let stats_at = Arc::new(Mutex::new(Vec::<(Instant, usize, String)>::new()));
    let (slow2, delivered2, stats2) = (slow.clone(), delivered.clone(), stats_at.clone());
    let handle = WebSocketApp::new(
        Client::new(url(addr))
            .hub(&hub)
            .queue(64)
            .close_timeout(Duration::from_secs(2)),
    )
    .on_message(move |_, _| {
        delivered2.fetch_add(1, Ordering::Relaxed);
        if slow2.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .on_stats(INTERVAL, move |_, s| {
        let thread = std::thread::current().name().unwrap_or("").to_string();
        stats2
            .lock()
            .unwrap()
            .push((Instant::now(), s.queued, thread))
    })
    .start()
    .expect("start on a hub with a stats interval");

    let started = Instant::now();
    wait_until(RUN_FOR, || false);
    let calls = stats_at.lock().unwrap().clone();
    let ran = started.elapsed();
    slow.store(false, Ordering::Relaxed);
    handle.close(1000, "done").unwrap();
    let (result, _) = join_bounded(handle, Duration::from_secs(5));
    let report = join_thread(server, Duration::from_secs(10));

    eprintln!(
        "ran {ran:?}: {} on_stats calls (queued at each: {:?}); {} delivered; server {report:?}",
        calls.len(),
        calls.iter().map(|c| c.1).collect::<Vec<_>>(),
        delivered.load(Ordering::Relaxed)
    );
    assert!(result.is_ok(), "{result:?}");
    assert!(
        delivered.load(Ordering::Relaxed) > 200,
        "test precondition: messages kept flowing"
    );
    // Every 200 ms over 1.5 s is 7; allow for scheduling.
    assert!(
        calls.len() >= 4,
        "on_stats ran {} times in {ran:?} with a {INTERVAL:?} interval while messages kept arriving",
        calls.len()
    );
    assert!(
        calls.iter().all(|c| c.2.starts_with("wsapp-disp-h")),
        "on the hub's dispatchers: {:?}",
        calls.iter().map(|c| &c.2).collect::<Vec<_>>()
    );
    // Not much more often than asked either: one timer chain per connection.
    assert!(calls.len() <= 10, "{} calls in {ran:?}", calls.len());
}
