//! No false ping timeout under backpressure: a flooding server that answers pings, a slow handler with a small Block inbox (reading pauses longer than the ping timeout), and keepalive pings every 200 ms with a 100 ms timeout: no timeout fires and reading does pause.

mod app_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app_common::*;
use wsapp::{Client, Overflow, Stats, WebSocketApp};

const TOTAL: usize = 50_000;
const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(100);
/// Per message while slow: 32 messages (half the inbox, the resume mark) take
/// about 190 ms, so a pause outlasts the ping timeout.
const HANDLER_DELAY: Duration = Duration::from_millis(6);
const RUN_FOR: Duration = Duration::from_millis(2500);

#[test]
fn paused_reading_does_not_fire_the_ping_timeout() {
    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || flood(listener, TOTAL));

    let slow = Arc::new(AtomicBool::new(true));
    let delivered = Arc::new(AtomicU64::new(0));
    let max_pause_count = Arc::new(AtomicU64::new(0));
    let last_stats = Arc::new(Mutex::new(Stats::default()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));

    let (slow2, delivered2, max2, last2, errs) = (
        slow.clone(),
        delivered.clone(),
        max_pause_count.clone(),
        last_stats.clone(),
        errors.clone(),
    );
    let handle = WebSocketApp::new(
        Client::new(url(addr))
            .queue(64)
            .overflow(Overflow::Block)
            .close_timeout(Duration::from_secs(2)),
    )
    .ping_interval(PING_INTERVAL)
    .ping_timeout(PING_TIMEOUT)
    .on_message(move |ws, _msg| {
        delivered2.fetch_add(1, Ordering::Relaxed);
        if slow2.load(Ordering::Relaxed) {
            std::thread::sleep(HANDLER_DELAY);
            let s = ws.stats();
            max2.fetch_max(s.pause_count, Ordering::Relaxed);
            *last2.lock().unwrap() = s;
        }
    })
    .on_error(move |_, e| errs.lock().unwrap().push(format!("{:?}: {e}", e.kind())))
    .start()
    .expect("start");

    // Let it run through a dozen ping intervals, stopping early if it fails.
    let started = Instant::now();
    wait_until(RUN_FOR, || !errors.lock().unwrap().is_empty());
    let ran = started.elapsed();
    let during = errors.lock().unwrap().clone();
    let stats = last_stats.lock().unwrap().clone();

    slow.store(false, Ordering::Relaxed);
    handle.close(1000, "done").unwrap();
    let (result, _) = join_bounded(handle, Duration::from_secs(5));
    let report = join_thread(server, Duration::from_secs(10));

    eprintln!(
        "ran {ran:?}; delivered {} while slow; server {report:?}; stats: {stats}; \
         pause_count {} paused_for {:?} messages_out {}",
        delivered.load(Ordering::Relaxed),
        stats.pause_count,
        stats.paused_for,
        stats.messages_out
    );

    assert!(
        during.is_empty(),
        "errors while the reader was paused: {during:?}"
    );
    assert!(
        result.is_ok(),
        "close() must end the app with Ok, got {result:?}"
    );
    assert!(
        errors.lock().unwrap().is_empty(),
        "errors: {:?}",
        errors.lock().unwrap()
    );

    // Backpressure really happened, with pauses longer than the ping timeout.
    let pauses = max_pause_count.load(Ordering::Relaxed);
    assert!(pauses >= 1, "reading never paused (pause_count {pauses})");
    assert!(
        stats.paused_for > PING_TIMEOUT * 2,
        "test precondition: reading paused only {:?} in all",
        stats.paused_for
    );
    let mean_pause = stats.paused_for / (stats.pause_count.max(1) as u32);
    assert!(
        mean_pause > PING_TIMEOUT,
        "test precondition: pauses ({mean_pause:?} on average) must outlast the ping timeout"
    );
    // Keepalive was running: pings were sent, and the server saw (and answered) them.
    assert!(
        stats.messages_out >= 5,
        "only {} pings sent",
        stats.messages_out
    );
    assert!(report.pings >= 3, "server saw only {} pings", report.pings);
    assert!(report.sent > 1000, "server could not flood: {report:?}");
}
