//! Connections with different overflow policies on one hub: each keeps its
//! own inbox, bound and drops (Block loses nothing and keeps order,
//! DropNewest keeps the first, DropOldest the last), side by side.
mod common;

use std::time::Duration;

use wsapp::{Client, Hub, Overflow};

const N: u64 = 200;
const WAIT: Duration = Duration::from_secs(10);

fn drain(ws: &wsapp::WebSocket) -> Vec<u64> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = ws.recv_timeout(Duration::from_millis(200)) {
        got.extend(common::flood_number(&m));
    }
    got
}

#[test]
fn each_connection_keeps_its_own_policy() {
    let hub = Hub::with_io_threads(2).unwrap();
    let server = common::numbered_server(N);
    let on_hub = |policy: Overflow, cap: usize| {
        Client::new(server.url())
            .hub(&hub)
            .queue(cap)
            .overflow(policy)
            .connect()
            .unwrap()
    };
    let block = on_hub(Overflow::Block, 8);
    let newest = on_hub(Overflow::DropNewest, 4);
    let oldest = on_hub(Overflow::DropOldest, 4);
    assert_eq!(hub.stats().connections, 3);
    // The lossy ones read everything; the blocking one pauses at its bound.
    for ws in [&newest, &oldest] {
        common::wait_for(WAIT, || (ws.stats().received >= N).then_some(()))
            .expect("a lossy connection reads everything");
    }
    common::wait_for(WAIT, || block.stats().paused.then_some(())).expect("Block pauses");
    assert_eq!(hub.stats().paused, 1, "{}", hub.stats());

    let newest_got = drain(&newest);
    assert_eq!(
        newest_got,
        (0..4).collect::<Vec<_>>(),
        "DropNewest keeps the first"
    );
    assert_eq!(newest.stats().dropped.newest, N - 4);
    let oldest_got = drain(&oldest);
    assert_eq!(
        oldest_got,
        (N - 4..N).collect::<Vec<_>>(),
        "DropOldest keeps the last"
    );
    assert_eq!(oldest.stats().dropped.oldest, N - 4);
    let block_got = drain(&block);
    assert_eq!(
        block_got,
        (0..N).collect::<Vec<_>>(),
        "Block: all, in order"
    );
    assert_eq!(block.stats().dropped.total(), 0);
}
