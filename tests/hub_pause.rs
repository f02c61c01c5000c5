//! A paused connection beside a busy one on the same hub thread: the paused
//! one (Block, full inbox, nobody receiving) stops reading its socket, and
//! the busy one's round trips keep their latency and throughput.
mod common;

use std::time::{Duration, Instant};

use wsapp::{Client, Hub, Overflow};

const WAIT: Duration = Duration::from_secs(10);
const ROUND_TRIPS: usize = 500;

#[test]
fn a_paused_connection_does_not_stall_a_busy_one() {
    let hub = Hub::with_io_threads(1).unwrap();
    let flood = common::flood_server(1_000_000, 64);
    let echo = common::echo_server();
    let paused = Client::new(flood.server.url())
        .hub(&hub)
        .queue(16)
        .overflow(Overflow::Block)
        .connect()
        .unwrap();
    common::wait_for(WAIT, || paused.stats().paused.then_some(())).expect("the flood pauses");
    assert_eq!(hub.stats().paused, 1);

    let busy = Client::new(echo.url()).hub(&hub).connect().unwrap();
    let mut lat = Vec::with_capacity(ROUND_TRIPS);
    let start = Instant::now();
    for i in 0..ROUND_TRIPS {
        let t = Instant::now();
        busy.send_text(format!("{i}")).unwrap();
        let m = busy.recv_timeout(WAIT).unwrap().expect("echo");
        assert_eq!(m.to_text().unwrap(), i.to_string());
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    let p99 = lat[ROUND_TRIPS * 99 / 100];
    // Generous for a shared 2-core machine; a stalled thread would show seconds.
    assert!(p99 < Duration::from_millis(50), "p99 round trip {p99:?}");
    assert!(
        total < Duration::from_secs(5),
        "{ROUND_TRIPS} round trips took {total:?}"
    );
    let s = paused.stats();
    assert!(s.paused && s.queued == 16, "still paused, untouched: {s}");

    // And the paused one resumes, in order, when its consumer comes back.
    for want in 0..1000u64 {
        let m = paused.recv_timeout(WAIT).unwrap().expect("resumes");
        assert_eq!(common::flood_number(&m), Some(want));
    }
    assert_eq!(paused.stats().dropped.total(), 0);
}
