//! Echo of text, binary, empty and 16 MiB messages over `ws://`.
mod common;

use std::time::Duration;

use wsapp::{Client, Message};

const WAIT: Duration = Duration::from_secs(10);

fn recv(ws: &wsapp::WebSocket) -> Message {
    ws.recv_timeout(WAIT)
        .expect("recv")
        .expect("an echo within the timeout")
}

#[test]
fn echoes_text_binary_and_empty_messages() {
    let server = common::echo_server();
    let ws = wsapp::connect(&server.url()).unwrap();
    assert_eq!(ws.response().status(), 101);
    assert_eq!(ws.protocol(), None);

    ws.send_text("hello").unwrap();
    assert_eq!(recv(&ws), Message::text("hello"));
    ws.send_text("héllo ✓ 漢字").unwrap();
    assert_eq!(recv(&ws), Message::text("héllo ✓ 漢字"));
    ws.send_binary(vec![0u8, 1, 2, 255]).unwrap();
    assert_eq!(recv(&ws), Message::binary(vec![0u8, 1, 2, 255]));
    ws.send_text("").unwrap();
    assert_eq!(recv(&ws), Message::text(""));
    ws.send_binary(Vec::new()).unwrap();
    assert_eq!(recv(&ws), Message::binary(Vec::new()));
    ws.send(Message::text("via send")).unwrap();
    assert_eq!(recv(&ws), Message::text("via send"));

    // Nothing else is waiting.
    assert_eq!(ws.try_recv().unwrap(), None);
    let s = ws.stats();
    assert_eq!(s.messages_out, 6, "{s:?}");
    assert_eq!(s.delivered, 6, "{s:?}");
    assert_eq!(
        s.received,
        s.delivered + s.dropped.total() + s.queued as u64
    );
    ws.close(1000, "done").unwrap();
    assert!(ws.recv().unwrap_err().is_closed());
}

#[test]
fn echoes_a_16_mib_message() {
    const SIZE: usize = 16 << 20;
    let server = common::echo_server_with(common::config_with_max(32 << 20));
    let ws = Client::new(server.url())
        .max_message_size(Some(32 << 20))
        .max_frame_size(Some(32 << 20))
        .connect()
        .unwrap();
    let payload: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    ws.send_binary(payload.clone()).unwrap();
    let got = ws
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the 16 MiB echo within 30 s");
    let Message::Binary(got) = got else {
        panic!("expected binary, got {got:?}")
    };
    assert_eq!(got.len(), SIZE);
    assert!(got[..] == payload[..], "16 MiB payload came back changed");

    // And a 16 MiB text message.
    let text = "abcdefghijklmnop".repeat(SIZE / 16);
    ws.send_text(text.clone()).unwrap();
    match ws.recv_timeout(Duration::from_secs(30)).unwrap() {
        Some(Message::Text(t)) => assert!(t.as_str() == text, "16 MiB text came back changed"),
        other => panic!("expected the text echo, got {:?}", other.map(|m| m.len())),
    }
    let s = ws.stats();
    assert!(s.bytes_in >= 2 * SIZE as u64, "{s:?}");
}

#[test]
fn the_default_limit_refuses_a_16_mib_frame_from_the_server() {
    // Without raising the client's limits the same echo must fail with Capacity:
    // the test above really depends on the options it sets.
    let server = common::echo_server_with(common::config_with_max(32 << 20));
    let ws = Client::new(server.url())
        .max_frame_size(Some(1 << 20))
        .connect()
        .unwrap();
    ws.send_binary(vec![7u8; 2 << 20]).unwrap();
    let err = ws.recv_timeout(Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.kind(), wsapp::ErrorKind::Capacity, "{err}");
}
