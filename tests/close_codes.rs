//! Close codes the client sends: codes RFC 6455 forbids an endpoint to send
//! (7.4.1, 7.4.2) and reasons over 123 bytes are refused before anything goes
//! on the wire, on every handle; the connection stays open.
mod common;

use std::sync::mpsc;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use wsapp::{ErrorKind, Message};

const WAIT: Duration = Duration::from_secs(5);

/// Codes an endpoint may not put in a close frame.
const FORBIDDEN: [u16; 12] = [
    0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
];

/// An echo server that reports the close frame it receives.
fn recording_server() -> (common::Server, mpsc::Receiver<Option<CloseFrame>>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = common::serve(move |tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        loop {
            match ws.read() {
                Ok(Message::Close(frame)) => {
                    let _ = tx.lock().unwrap().send(frame);
                    while ws.read().is_ok() {}
                    return;
                }
                Ok(m @ Message::Text(_)) => {
                    if ws.send(m).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    (server, rx)
}

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

#[test]
fn forbidden_codes_and_long_reasons_are_refused_and_nothing_is_sent() {
    let (server, closes) = recording_server();
    let ws = wsapp::Client::new(server.url())
        .close_timeout(Duration::from_secs(2))
        .connect()
        .unwrap();
    let tx = ws.sender();
    for code in FORBIDDEN {
        let err = ws.close(code, "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{code}: {err}");
        assert!(err.to_string().contains(&code.to_string()), "{err}");
        let err = tx.close(code, "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{code}: {err}");
        let err = tx.send(close_msg(code, "")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{code}: {err}");
        let err = tx.send_timeout(close_msg(code, ""), WAIT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{code}: {err}");
        assert!(tx.try_send(close_msg(code, "")).is_err(), "{code}");
    }
    // 124 bytes of UTF-8 (62 two-byte characters), and 200 bytes.
    for reason in ["é".repeat(62), "x".repeat(200)] {
        let err = ws.close(1000, &reason).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("123"), "{err}");
        assert!(tx.send(close_msg(1000, &reason)).is_err());
    }
    // Nothing of that reached the server: the connection is open.
    assert!(!tx.is_closed());
    ws.send_text("still open").unwrap();
    assert_eq!(
        ws.recv_timeout(WAIT).unwrap(),
        Some(Message::text("still open"))
    );
    assert!(closes.try_recv().is_err(), "the server got a close frame");
    // The longest reason that fits, with a code from the private range.
    let reason = format!("{}a", "é".repeat(61));
    assert_eq!(reason.len(), 123);
    ws.close(4999, &reason).unwrap();
    let frame = closes
        .recv_timeout(WAIT)
        .unwrap()
        .expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 4999);
    assert_eq!(frame.reason.as_str(), reason);
}

#[test]
fn every_code_an_endpoint_may_send_goes_out() {
    // 1014 is allowed too, but the tungstenite server here would record it as
    // its own substitute 1002 (it refuses 1014 on receipt).
    for code in [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 3000, 4000] {
        let (server, closes) = recording_server();
        let ws = wsapp::connect(&server.url()).unwrap();
        ws.close(code, "ok").unwrap();
        let frame = closes.recv_timeout(WAIT).unwrap().expect("a code");
        assert_eq!(u16::from(frame.code), code);
        assert_eq!(frame.reason.as_str(), "ok");
    }
}

#[test]
fn app_close_with_a_forbidden_code_is_refused_and_the_app_stays_open() {
    let app = wsapp::AppSender::default();
    let err = app.close(1005, "").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    // Not closed for good: between connections, as before.
    let err = app.send_text("hi").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    app.close(1000, "bye").unwrap();
    assert!(app.send_text("late").unwrap_err().is_closed());
}
