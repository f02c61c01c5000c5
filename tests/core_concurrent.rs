//! One thread blocked in `recv` while another sends 1,000 messages to an echo
//! server: all arrive in order; a `close` from a third thread wakes the
//! blocked `recv`, which returns a "closed" error.
mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use wsapp::{Message, Result, WebSocket};

const COUNT: usize = 1000;
const WAIT: Duration = Duration::from_secs(10);

/// Receives COUNT echoes (reporting progress), then blocks in one more `recv`
/// and reports what ended it.
fn receiver(
    ws: &WebSocket,
    got_all: mpsc::Sender<Vec<String>>,
    ended: mpsc::Sender<Result<Message>>,
) {
    let mut texts = Vec::with_capacity(COUNT);
    for _ in 0..COUNT {
        match ws.recv() {
            Ok(Message::Text(t)) => texts.push(t.to_string()),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("recv failed after {} messages: {e}", texts.len()),
        }
    }
    got_all.send(texts).unwrap();
    let _ = ended.send(ws.recv());
}

fn run(close_from_third_thread: impl FnOnce(&WebSocket) + Send) {
    let server = common::echo_server();
    let ws = wsapp::connect(&server.url()).unwrap();
    let (all_tx, all_rx) = mpsc::channel();
    let (end_tx, end_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let ws = &ws;
        // The receiver blocks in recv before anything is sent.
        scope.spawn(move || receiver(ws, all_tx, end_tx));
        let sender = ws.sender();
        scope.spawn(move || {
            for i in 0..COUNT {
                sender.send_text(format!("msg-{i:04}")).unwrap();
            }
        });

        let texts = all_rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("echoes did not all arrive: {}", ws.stats()));
        let expected: Vec<String> = (0..COUNT).map(|i| format!("msg-{i:04}")).collect();
        assert_eq!(texts, expected, "echoes out of order or lost");

        // The receiver is now blocked: nothing else is coming.
        assert!(
            end_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "recv returned without a message or a close"
        );
        let start = Instant::now();
        scope.spawn(move || close_from_third_thread(ws));
        let ended = end_rx
            .recv_timeout(WAIT)
            .expect("close woke the blocked recv");
        println!("blocked recv woke {:?} after close", start.elapsed());
        let err = ended.expect_err("recv after close returns an error");
        assert!(err.is_closed(), "{err}");
        assert_eq!(err.kind(), wsapp::ErrorKind::Closed);
        let code = err.close_frame().map(|f| u16::from(f.code));
        assert_eq!(code, Some(1000), "{err}");
    });
    let s = ws.stats();
    assert_eq!(s.messages_out as usize, COUNT, "{s:?}");
    assert_eq!(s.delivered as usize, COUNT, "{s:?}");
    assert!(
        ws.recv().unwrap_err().is_closed(),
        "closed again on the next recv"
    );
    assert!(ws.send_text("late").unwrap_err().is_closed());
}

#[test]
fn sender_close_from_a_third_thread_wakes_a_blocked_recv() {
    run(|ws| ws.sender().close(1000, "").unwrap());
}

#[test]
fn websocket_close_from_a_third_thread_wakes_a_blocked_recv() {
    run(|ws| ws.close(1000, "bye").unwrap());
}
