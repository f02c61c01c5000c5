//! Connecting, using and dropping a `WebSocket` 200 times leaves the process's
//! thread count where it began: every I/O thread is joined on drop.
mod common;

use std::time::{Duration, Instant};

use wsapp::Message;

const ROUNDS: usize = 200;

/// The tests here count the process's threads: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn dropping_connections_leaves_no_threads() {
    let _serial = serial();
    let server = common::echo_server();
    // Warm up once so lazily started runtime threads (if any) are counted.
    drop(wsapp::connect(&server.url()).unwrap());
    let settle = |limit: usize| {
        common::wait_for(Duration::from_secs(10), || {
            (common::threads() <= limit && common::thread_names("wsapp-").is_empty()).then_some(())
        })
    };
    let baseline = common::threads();
    println!("baseline threads: {baseline}");

    let start = Instant::now();
    let mut peak = baseline;
    for i in 0..ROUNDS {
        let ws = wsapp::connect(&server.url()).unwrap();
        ws.send_text(format!("round {i}")).unwrap();
        let got = ws
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_or_else(|| panic!("round {i}: no echo"));
        assert_eq!(got, Message::text(format!("round {i}")));
        peak = peak.max(common::threads());
        drop(ws);
        // The drop joined this connection's I/O thread.
        let left = common::thread_names("wsapp-");
        assert!(
            left.is_empty() || settle(usize::MAX).is_some(),
            "round {i}: wsapp threads still running after drop: {left:?}"
        );
    }
    println!(
        "{ROUNDS} rounds in {:?}, peak threads {peak}",
        start.elapsed()
    );

    // The server's connection threads finish once their clients are gone.
    let ok = settle(baseline);
    let now = common::threads();
    println!("threads after: {now} (baseline {baseline})");
    assert!(
        ok.is_some(),
        "thread count did not come back: {now} now, {baseline} before; wsapp threads: {:?}",
        common::thread_names("wsapp-")
    );
    // And stopping the server returns it below the baseline: the measure sees threads.
    drop(server);
    assert!(
        common::threads() < baseline,
        "the acceptor thread was counted"
    );
}

#[test]
fn dropping_a_connection_blocked_by_backpressure_ends_its_thread() {
    let _serial = serial();
    // A paused reader (full inbox) must not keep the thread alive after drop.
    let flood = common::flood_server(50_000, 64);
    let ws = wsapp::Client::new(flood.server.url())
        .queue(16)
        .close_timeout(Duration::from_secs(5))
        .connect()
        .unwrap();
    common::wait_for(Duration::from_secs(10), || ws.stats().paused.then_some(())).expect("paused");
    let start = Instant::now();
    drop(ws);
    let took = start.elapsed();
    println!("drop of a paused connection took {took:?}");
    assert!(took < Duration::from_secs(5), "drop waited {took:?}");
    assert!(
        common::wait_for(Duration::from_secs(5), || common::thread_names("wsapp-")
            .is_empty()
            .then_some(()))
        .is_some(),
        "{:?}",
        common::thread_names("wsapp-")
    );
}
