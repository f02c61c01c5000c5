//! An app with workers is refused on a hub, before it connects, with an
//! error that says what to do.
mod common;

use wsapp::{Client, ErrorKind, Hub, WebSocketApp};

#[test]
fn workers_on_a_hub_are_refused_with_what_to_do() {
    let server = common::echo_server();
    let hub = Hub::with_threads(1, 1).unwrap();
    let e = WebSocketApp::new(Client::new(server.url()).hub(&hub))
        .workers(2, |_| 0, |_, _| {})
        .start()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("workers") && text.contains("without a hub"),
        "{text}"
    );
    assert_eq!(hub.stats().connections, 0, "refused before connecting");
}
