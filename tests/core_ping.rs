//! A server's ping is answered by the I/O thread at once, while the
//! application is not calling `recv`; the ping is still delivered in order.
mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use wsapp::Message;

const WAIT: Duration = Duration::from_secs(10);
/// "Promptly": far below any human-scale delay, far above scheduling noise.
const PROMPT: Duration = Duration::from_millis(500);

/// A server that sends `before` text messages, then pings with `payload`
/// `pings` times, and reports how long each pong took.
fn pinging_server(
    before: usize,
    pings: usize,
) -> (common::Server, mpsc::Receiver<Result<Duration, String>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |tcp| {
        let tx = tx.lock().unwrap().clone();
        let _ = tcp.set_read_timeout(Some(WAIT));
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        for i in 0..before {
            let _ = ws.send(Message::text(format!("before-{i}")));
        }
        for p in 0..pings {
            let payload = format!("ping-{p}").into_bytes();
            let start = Instant::now();
            if ws.send(Message::Ping(payload.clone().into())).is_err() {
                let _ = tx.send(Err("ping write failed".into()));
                return;
            }
            let result = loop {
                match ws.read() {
                    Ok(Message::Pong(got)) if got[..] == payload[..] => break Ok(start.elapsed()),
                    Ok(Message::Pong(got)) => {
                        break Err(format!("pong with wrong payload {got:?}"))
                    }
                    Ok(_) => {}
                    Err(e) => break Err(format!("no pong: {e}")),
                }
            };
            let _ = tx.send(result);
        }
        while ws.read().is_ok() {}
    });
    (server, rx)
}

#[test]
fn pong_is_sent_while_nobody_calls_recv() {
    let (server, pongs) = pinging_server(10, 3);
    let ws = wsapp::connect(&server.url()).unwrap();
    // Not calling recv: the messages before the pings sit in the inbox.
    for p in 0..3 {
        let took = pongs
            .recv_timeout(WAIT)
            .expect("the server saw the connection")
            .unwrap_or_else(|e| panic!("ping {p}: {e}"));
        println!("pong {p} after {took:?}");
        assert!(took < PROMPT, "pong {p} took {took:?}");
    }
    // The pong may leave before the ping is queued: wait (bounded) for the inbox.
    let s = common::wait_for(WAIT, || Some(ws.stats()).filter(|s| s.queued == 13))
        .unwrap_or_else(|| panic!("10 texts and 3 pings wait in the inbox: {}", ws.stats()));
    assert_eq!(s.delivered, 0, "{s}");

    // Everything is still delivered, in wire order, pings included.
    for i in 0..10 {
        assert_eq!(
            ws.recv_timeout(WAIT).unwrap(),
            Some(Message::text(format!("before-{i}")))
        );
    }
    for p in 0..3 {
        assert_eq!(
            ws.recv_timeout(WAIT).unwrap(),
            Some(Message::Ping(format!("ping-{p}").into_bytes().into()))
        );
    }
}

#[test]
fn client_ping_gets_the_servers_pong() {
    let server = common::echo_server();
    let ws = wsapp::connect(&server.url()).unwrap();
    ws.ping(&b"hello?"[..]).unwrap();
    assert_eq!(
        ws.recv_timeout(WAIT).unwrap(),
        Some(Message::Pong((&b"hello?"[..]).into()))
    );
}
