//! How connections end: a server close with code and reason, an abrupt EOF
//! without a close frame, and a message over `max_message_size` (Capacity,
//! and the server gets close code 1009).
mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use wsapp::{Client, Error, ErrorKind, Message};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn server_close_with_code_and_reason_is_reported_on_every_recv() {
    let server = common::serve(|tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws.send(Message::text("before close"));
        let _ = ws.close(Some(CloseFrame {
            code: CloseCode::from(4000),
            reason: "bye".into(),
        }));
        // Complete the close handshake: read until the client's reply.
        while ws.read().is_ok() {}
    });
    let ws = wsapp::connect(&server.url()).unwrap();
    // Messages sent before the close come first.
    assert_eq!(
        ws.recv_timeout(WAIT).unwrap(),
        Some(Message::text("before close"))
    );
    for attempt in 0..3 {
        let err = ws.recv_timeout(WAIT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed, "attempt {attempt}: {err}");
        assert!(err.is_closed());
        match &err {
            Error::Closed(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4000, "attempt {attempt}");
                assert_eq!(frame.reason.as_str(), "bye", "attempt {attempt}");
            }
            other => panic!("attempt {attempt}: expected Closed(Some(4000, bye)), got {other:?}"),
        }
    }
    assert!(ws.try_recv().unwrap_err().is_closed());
    assert!(ws.send_text("too late").unwrap_err().is_closed());
}

#[test]
fn abrupt_eof_is_connection_lost() {
    let server = common::serve(|tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws.send(Message::text("last words"));
        // Drop the TCP connection without a close frame.
        let tcp = ws.get_mut();
        let _ = tcp.shutdown(std::net::Shutdown::Both);
    });
    let ws = wsapp::connect(&server.url()).unwrap();
    assert_eq!(
        ws.recv_timeout(WAIT).unwrap(),
        Some(Message::text("last words"))
    );
    let err = ws.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(!err.is_closed());
    // Later calls do not hang and still report the end.
    assert!(ws.recv_timeout(WAIT).is_err());
    assert!(ws.send_text("into the void").is_err());
}

/// Docs of `WebSocket::recv`: `Closed` "after a close handshake (on every later
/// call too)"; `ConnectionLost` "if it ended without one"; `Error::is_closed`:
/// "the normal end of a connection (a close handshake)". So a lost connection
/// must not turn into a clean close on the second `recv`.
#[test]
fn abrupt_eof_is_not_reported_as_a_clean_close_on_later_recvs() {
    let server = common::serve(|tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws.get_mut().shutdown(std::net::Shutdown::Both);
    });
    let ws = wsapp::connect(&server.url()).unwrap();
    let first = ws.recv_timeout(WAIT).unwrap_err();
    assert_eq!(first.kind(), ErrorKind::ConnectionLost, "{first}");
    for attempt in 1..3 {
        let again = ws.recv_timeout(WAIT).unwrap_err();
        assert!(
            !again.is_closed() && again.kind() == ErrorKind::ConnectionLost,
            "recv #{attempt} after an EOF without a close frame says {again:?} \
             (is_closed() = {}); the first said {first}",
            again.is_closed()
        );
    }
}

#[test]
fn message_over_max_message_size_is_capacity_and_server_gets_1009() {
    let (tx, rx) = mpsc::channel::<Option<CloseFrame>>();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws.send(Message::binary(vec![1u8; 1000]));
        let _ = ws.send(Message::binary(vec![2u8; 4096]));
        // What does the client answer?
        loop {
            match ws.read() {
                Ok(Message::Close(frame)) => {
                    let _ = tx.lock().unwrap().send(frame);
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = tx.lock().unwrap().send(None);
                    break;
                }
            }
        }
        while ws.read().is_ok() {}
    });
    let ws = Client::new(server.url())
        .max_message_size(Some(2048))
        .max_frame_size(Some(2048))
        .connect()
        .unwrap();
    // Under the limit: fine.
    assert_eq!(
        ws.recv_timeout(WAIT).unwrap(),
        Some(Message::binary(vec![1u8; 1000]))
    );
    let err = ws.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity, "{err}");
    let frame = rx
        .recv_timeout(WAIT)
        .expect("the server saw the connection end")
        .expect("the server got a close frame");
    assert_eq!(frame.code, CloseCode::Size, "{frame:?}");
    assert_eq!(u16::from(frame.code), 1009);
}

#[test]
fn fragmented_message_over_max_message_size_is_capacity() {
    // Each frame is under the frame limit; the message is not.
    let server = common::serve(|tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        use tungstenite::protocol::frame::Frame;
        let part = |op, fin| Frame::message(vec![3u8; 1024], op, fin);
        let _ = ws.write(Message::Frame(part(OpCode::Data(Data::Binary), false)));
        for _ in 0..3 {
            let _ = ws.write(Message::Frame(part(OpCode::Data(Data::Continue), false)));
        }
        let _ = ws.write(Message::Frame(part(OpCode::Data(Data::Continue), true)));
        let _ = ws.flush();
        while ws.read().is_ok() {}
    });
    let ws = Client::new(server.url())
        .max_message_size(Some(4096))
        .max_frame_size(Some(2048))
        .connect()
        .unwrap();
    let err = ws.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity, "{err}");
}
