//! Keepalive is on by default: a default client pings, a silent peer ends the connection with `Timeout(Pong)`, and `no_keepalive` turns it off.
mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use wsapp::{Client, Error, Phase, WebSocketApp};

/// A server that completes the upgrade, then never sends anything nor answers
/// pings (it does not even read) until the client hangs up or 10 s pass.
fn silent_server() -> common::Server {
    common::serve(|mut tcp| {
        if common::raw::handshake(&mut tcp).is_err() {
            return;
        }
        let end = Instant::now() + Duration::from_secs(10);
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(100)));
        let mut b = [0u8; 1];
        // Peek-free wait: read only to notice the client's hang-up, never answer.
        while Instant::now() < end {
            match tcp.peek(&mut b) {
                Ok(0) => return,
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => {}
            }
        }
        let _ = tcp.read(&mut b);
    })
}

#[test]
fn a_default_client_has_keepalive_on() {
    let dbg = format!("{:?}", Client::new("ws://127.0.0.1:9/"));
    assert!(dbg.contains("ping_interval: Some(20s)"), "{dbg}");
    assert!(dbg.contains("ping_timeout: Some(10s)"), "{dbg}");
    let dbg = format!("{:?}", WebSocketApp::new(Client::new("ws://127.0.0.1:9/")));
    assert!(dbg.contains("ping_interval: Some(20s)"), "{dbg}");
}

#[test]
fn no_keepalive_turns_it_off_on_the_client_and_the_app() {
    let dbg = format!("{:?}", Client::new("ws://127.0.0.1:9/").no_keepalive());
    assert!(dbg.contains("ping_interval: None"), "{dbg}");
    assert!(dbg.contains("ping_timeout: None"), "{dbg}");
    let app = WebSocketApp::new(Client::new("ws://127.0.0.1:9/")).no_keepalive();
    let dbg = format!("{app:?}");
    assert!(dbg.contains("ping_interval: None"), "{dbg}");
}

#[test]
fn a_silent_peer_ends_with_a_pong_timeout() {
    let server = silent_server();
    let ws = Client::new(server.url())
        .proxy_from_env(false)
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .close_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    let start = Instant::now();
    let err = ws.recv_timeout(Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, Error::Timeout(Phase::Pong)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn an_interval_alone_gets_a_pong_timeout_too() {
    // Only the interval is set: the timeout that goes with it is not off.
    let server = silent_server();
    let ws = Client::new(server.url())
        .proxy_from_env(false)
        .ping_interval(Duration::from_millis(300))
        .close_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    let start = Instant::now();
    let res = ws.recv_timeout(Duration::from_secs(3));
    assert!(matches!(res, Err(Error::Timeout(Phase::Pong))), "{res:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
