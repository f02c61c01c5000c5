//! A burst of connects to a hub, a quarter of them to a listener that
//! accepts TCP and never answers the upgrade, while established connections
//! on the same hub keep echoing: they deliver every message, in order, during
//! the burst; the hanging connects fail at their handshake timeout; the good
//! ones connect; the hub's threads stay the same (connects run on callers).
mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsapp::{Client, ErrorKind, Hub};

const WAIT: Duration = Duration::from_secs(10);
const CONNECTS: usize = 200;
/// One connect in this many goes to the listener that never answers (50 of 200).
const HANGING_SHARE: usize = 4;
const CALLERS: usize = 8;
const ESTABLISHED: usize = 4;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
/// Round trips per established connection at most (the burst usually ends first).
const MAX_ROUND_TRIPS: u64 = 50_000;

#[test]
fn established_connections_deliver_everything_through_a_connect_burst() {
    let hub = Hub::with_threads(1, 2).unwrap();
    let echo = common::echo_server();
    // The kernel completes the TCP handshake from the backlog (128, above
    // CALLERS connects in flight); nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("ws://{}/", silent.local_addr().unwrap());
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // A new thread names itself as it starts: wait for the hub's three.
    let threads_before = common::wait_for(WAIT, || {
        let names = sorted(common::thread_names("wsapp-"));
        (names.len() == 3).then_some(names)
    })
    .expect("the hub's I/O thread and two dispatchers");
    let before = hub.stats();

    let burst_done = Arc::new(AtomicBool::new(false));
    let echoes: Vec<_> = (0..ESTABLISHED)
        .map(|c| {
            let ws = Client::new(echo.url()).hub(&hub).connect().unwrap();
            let done = burst_done.clone();
            std::thread::spawn(move || {
                let until = Instant::now() + 2 * WAIT;
                let mut n = 0u64;
                while !done.load(Ordering::Acquire) && n < MAX_ROUND_TRIPS && Instant::now() < until
                {
                    ws.send_text(format!("{c}:{n}")).unwrap();
                    let got = ws.recv_timeout(WAIT).unwrap().expect("an echo within 10 s");
                    assert_eq!(got.to_text().unwrap(), format!("{c}:{n}"), "in order");
                    n += 1;
                }
                (n, ws)
            })
        })
        .collect();

    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let next = next.clone();
            let [hang, good] = [silent_url.clone(), echo.url()].map(|u| {
                Client::new(u)
                    .hub(&hub)
                    .connect_timeout(HANDSHAKE_TIMEOUT)
                    .handshake_timeout(HANDSHAKE_TIMEOUT)
            });
            std::thread::spawn(move || {
                let (mut ok, mut timeouts) = (0, 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= CONNECTS {
                        return (ok, timeouts);
                    }
                    if i % HANGING_SHARE == 0 {
                        let e = hang.connect().expect_err("nobody answers the upgrade");
                        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
                        assert!(e.to_string().contains("handshake"), "names the phase: {e}");
                        timeouts += 1;
                    } else {
                        let ws = good.connect().expect("a good connect during the burst");
                        ws.send_text("x").unwrap();
                        assert!(ws.recv_timeout(WAIT).unwrap().is_some());
                        ok += 1;
                    }
                }
            })
        })
        .collect();
    // Midway: the hub has not grown a thread; the connects run on their callers.
    std::thread::sleep(HANDSHAKE_TIMEOUT);
    let threads_during = sorted(common::thread_names("wsapp-"));
    let (mut ok, mut timeouts) = (0, 0);
    for c in callers {
        let (o, t) = c.join().expect("a caller thread");
        ok += o;
        timeouts += t;
    }
    let burst = t.elapsed();
    burst_done.store(true, Ordering::Release);
    let mut trips = Vec::new();
    let mut live = Vec::new();
    for e in echoes {
        let (n, ws) = e.join().expect("an established connection's echo loop");
        trips.push(n);
        live.push(ws);
    }
    eprintln!("burst of {CONNECTS} in {burst:?}: {ok} ok, {timeouts} timeouts; round trips meanwhile {trips:?}");
    assert_eq!(
        (ok, timeouts),
        (
            CONNECTS - CONNECTS / HANGING_SHARE,
            CONNECTS / HANGING_SHARE
        )
    );
    assert!(
        trips.iter().all(|&n| n > 0),
        "every established connection echoed: {trips:?}"
    );
    assert_eq!(
        threads_during, threads_before,
        "the crate's threads during the burst"
    );
    let after = hub.stats();
    assert_eq!(
        (after.io_threads, after.dispatchers),
        (before.io_threads, before.dispatchers)
    );
    // A dropped connection is joined a moment before the hub counts it out.
    let left = common::wait_for(WAIT, || {
        let n = hub.stats().connections;
        (n == ESTABLISHED).then_some(n)
    });
    assert_eq!(left, Some(ESTABLISHED), "the burst's connections are gone");
    for ws in &live {
        let stats = ws.stats();
        assert_eq!(stats.dropped.total(), 0);
    }
}
