//! Backpressure with the default `Block` policy: a server floods 200,000
//! numbered messages while the test does not receive; the inbox stops at its
//! bound, reading pauses, the kernel queue fills, the server's writes stall and
//! memory stays flat; sending still works while paused; then every message
//! arrives, in order, none lost.
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wsapp::{Client, Message};

const N: u64 = 200_000;
const SIZE: usize = 256;
const CAP: usize = 1024;
/// If the inbox were unbounded, the 200,000 messages (51 MB of payload alone)
/// would all sit in this process; while paused it holds 1024 of them.
const RSS_LIMIT: u64 = 32 << 20;

#[test]
fn block_policy_pauses_reading_and_loses_nothing() {
    let rss_before = common::rss_bytes();
    let flood = common::flood_server(N, SIZE);
    let ws = Client::new(flood.server.url())
        .queue(CAP)
        .connect()
        .unwrap();
    assert_eq!(ws.stats().queue_capacity, CAP);

    // 1. The inbox fills to its bound and reading pauses.
    let s = common::wait_for(Duration::from_secs(10), || {
        let s = ws.stats();
        (s.paused && s.queued == CAP).then_some(s)
    })
    .unwrap_or_else(|| panic!("never paused at the bound: {}", ws.stats()));
    println!("paused: {s}");
    assert!(s.pause_count >= 1, "{s:?}");
    assert_eq!(s.delivered, 0);

    // 2. The server's writes stall: the count stops advancing, well below N,
    //    while the inbox stays at its bound and the kernel queue holds data.
    let mut peak_recv_q = 0usize;
    let mut last = flood.written.load(Ordering::SeqCst);
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    let stalled_at = loop {
        let s = ws.stats();
        assert!(s.paused, "resumed without anyone receiving: {s}");
        assert!(s.queued <= CAP && s.queue_high_water <= CAP, "{s}");
        assert_eq!(s.delivered, 0, "{s}");
        peak_recv_q = peak_recv_q.max(s.kernel_recv_queue.unwrap_or(0));
        let now = flood.written.load(Ordering::SeqCst);
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_millis(500) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "server writes never stalled: {now} written, {s}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let s = ws.stats();
    let rss_paused = common::rss_bytes();
    let grew = rss_paused.saturating_sub(rss_before);
    println!(
        "stalled: server wrote {stalled_at} of {N}; peak Recv-Q {peak_recv_q} B; \
         rcvbuf {:?}; RSS {} -> {} KiB (+{} KiB); {s}",
        s.recv_buffer_size,
        rss_before >> 10,
        rss_paused >> 10,
        grew >> 10
    );
    assert!(
        stalled_at < N / 2,
        "server was not slowed down: {stalled_at} written"
    );
    assert!(!flood.all_flushed.load(Ordering::SeqCst));
    assert!(
        peak_recv_q > 0,
        "the kernel receive queue never filled: {:?}",
        s.kernel_recv_queue
    );
    assert!(
        grew < RSS_LIMIT,
        "RSS grew by {} KiB while paused",
        grew >> 10
    );

    // 3. While paused, a send from another thread reaches the server, and
    //    reading stays paused.
    let tx = ws.sender();
    std::thread::spawn(move || tx.send_text("sent while paused"))
        .join()
        .unwrap()
        .unwrap();
    let got = flood
        .from_client
        .recv_timeout(Duration::from_secs(5))
        .expect("the server got the client's message while the client was paused");
    assert_eq!(got, Message::text("sent while paused"));
    let s = ws.stats();
    assert!(s.paused && s.queued == CAP, "{s}");
    assert_eq!(flood.written.load(Ordering::SeqCst), stalled_at);

    // 4. Drain: every message, in order, none lost, and the bound holds throughout.
    let deadline = Instant::now() + Duration::from_secs(40);
    for expected in 0..N {
        let msg = ws
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_or_else(|| panic!("message {expected} did not come: {}", ws.stats()));
        let Message::Binary(b) = &msg else {
            panic!("message {expected}: not binary: {msg:?}")
        };
        assert_eq!(
            common::flood_number(&msg),
            Some(expected),
            "out of order or lost"
        );
        assert_eq!(b.len(), SIZE);
        assert_eq!(
            b[SIZE - 1],
            expected as u8,
            "payload of {expected} corrupted"
        );
        if expected % 4096 == 0 {
            let s = ws.stats();
            assert!(s.queued <= CAP && s.queue_high_water <= CAP, "{s}");
            assert!(
                Instant::now() < deadline,
                "draining too slow at {expected}: {s}"
            );
        }
    }
    assert_eq!(ws.try_recv().unwrap(), None, "more than {N} messages");
    assert!(common::wait_for(Duration::from_secs(10), || flood
        .all_flushed
        .load(Ordering::SeqCst)
        .then_some(()))
    .is_some());

    let s = ws.stats();
    println!("drained: {s}");
    assert_eq!(
        s.received,
        s.delivered + s.dropped.total() + s.queued as u64,
        "{s:?}"
    );
    assert_eq!(s.delivered, N, "{s:?}");
    assert_eq!(s.dropped.total(), 0, "{s:?}");
    assert_eq!(s.queued, 0, "{s:?}");
    assert!(s.pause_count >= 1, "{s:?}");
    assert!(s.paused_for >= Duration::from_millis(500), "{s:?}");
    assert!(s.queue_high_water <= CAP, "{s:?}");
    assert_eq!(s.messages_in, N, "{s:?}");
    assert_eq!(s.bytes_in, N * SIZE as u64, "{s:?}");
    ws.close(1000, "").unwrap();
}
