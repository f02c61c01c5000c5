//! The outbox is bounded in bytes too: against a peer that reads nothing,
//! `try_send` of 1 MiB messages is refused once the outbox holds its byte
//! bound (16 MiB by default), long before its bound in messages (1,024).

mod common;

use std::net::TcpStream;
use std::time::Duration;

use wsapp::{Client, Message};

#[test]
fn a_peer_that_reads_nothing_holds_at_most_the_byte_bound() {
    let server = common::serve(|mut tcp: TcpStream| {
        if common::raw::handshake(&mut tcp).is_ok() {
            // Read nothing: the client's writes pile up.
            std::thread::sleep(Duration::from_secs(5));
        }
    });
    let ws = Client::new(server.url())
        .send_buffer_size(64 << 10)
        .close_timeout(Duration::from_millis(300))
        .connect()
        .expect("connect");
    let payload = wsapp::Bytes::from(vec![7u8; 1 << 20]);
    let mut accepted = 0;
    let full = (0..200).find(|_| {
        let refused = ws.try_send(Message::Binary(payload.clone())).is_err();
        if !refused {
            accepted += 1;
        }
        refused
    });
    let s = ws.stats();
    assert!(
        full.is_some(),
        "200 MiB accepted for a peer that reads nothing: {s}"
    );
    assert!(
        s.outbox_bytes <= 16 << 20,
        "{} bytes queued",
        s.outbox_bytes
    );
    // A bounded wait for room gives a timeout, not a hang. (The I/O thread
    // may still be moving the last messages into the socket when `try_send`
    // is refused, so a few more may find room first.)
    let mut timed_out = false;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        match ws.send_timeout(Message::Binary(payload.clone()), Duration::from_millis(200)) {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert_eq!(e.kind(), wsapp::ErrorKind::Timeout, "{e}");
                assert!(t.elapsed() < Duration::from_secs(2));
                timed_out = true;
                break;
            }
        }
    }
    assert!(timed_out, "the outbox kept finding room: {}", ws.stats());
    // The socket and tungstenite's buffer take a few messages; the outbox 16.
    assert!((16..=40).contains(&accepted), "{accepted} accepted");
    assert!(ws.stats().outbox_bytes <= 16 << 20);
}
