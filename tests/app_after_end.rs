//! After `run_forever` has returned, the app's sender says the app has ended, not that it is reconnecting.
mod common;

use std::time::Duration;

use wsapp::{Client, ErrorKind, WebSocketApp};

#[test]
fn send_after_run_forever_returned_says_the_app_ended() {
    // The server closes right after the upgrade; no reconnect is set.
    let server = common::serve(|mut tcp| {
        if common::raw::handshake(&mut tcp).is_ok() {
            use std::io::Write;
            let close = common::raw::frame(
                common::raw::FIN | common::raw::CLOSE,
                &common::raw::close_payload(1000, b"bye"),
            );
            let _ = tcp.write_all(&close);
            let _ = common::raw::read_client_close(&mut tcp, Duration::from_secs(5));
        }
    });
    let app = WebSocketApp::new(
        Client::new(server.url())
            .proxy_from_env(false)
            .close_timeout(Duration::from_millis(500)),
    );
    let tx = app.sender();
    let result = app.run_forever();
    assert!(result.is_err(), "the server's close ends it: {result:?}");
    let err = tx.send_text("late").unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Closed, "{text}");
    assert!(!text.contains("reconnecting"), "{text}");
    assert!(text.contains("ended"), "{text}");
}
