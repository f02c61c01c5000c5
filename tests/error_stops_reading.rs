//! A protocol error ends reading at the faulty frame: nothing behind it is
//! read, answered or delivered (RFC 6455 7.1.7: the connection is failed).
//!
//! Autobahn cases 3.2, 3.3 and 5.15 as an echo client sees them: a good
//! message, then a frame with a reserved bit (or a continuation with nothing
//! to continue), then a ping (or a good message). The client must echo the
//! good message, close with 1002, and neither answer the ping nor deliver
//! what follows the fault. Many rounds, because who reads the socket at that
//! moment (the consumer or the I/O thread) depends on timing.

mod common;

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wsapp::{Client, WebSocketApp};

use common::raw::*;

const RSV2: u8 = 0x20;
const PONG: u8 = 0xA;
/// Rounds per case: the fault showed in about one run in three of the
/// Autobahn cases, each a single round.
const ROUNDS: usize = 25;
/// Bound on one round: the client ends within the close timeout (1 s here).
const ROUND: Duration = Duration::from_secs(5);

/// Every frame the client sent (opcode, unmasked payload), up to and with its
/// close frame, or until EOF or `within`.
fn client_frames(tcp: &mut TcpStream, within: Duration) -> Vec<(u8, Vec<u8>)> {
    let end = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 6 {
            let opcode = buf[0] & 0x0F;
            let (len, at) = match buf[1] & 0x7F {
                126 if buf.len() >= 8 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                126 => break,
                127 => panic!("no test message is that long"),
                n => (n as usize, 2),
            };
            if buf.len() < at + 4 + len {
                break;
            }
            let key: [u8; 4] = buf[at..at + 4].try_into().unwrap();
            let payload: Vec<u8> = buf[at + 4..at + 4 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            buf.drain(..at + 4 + len);
            out.push((opcode, payload));
            if opcode == CLOSE {
                return out;
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        let _ = tcp.set_read_timeout(Some(left));
        match tcp.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => return out,
            Err(_) => return out,
        }
    }
}

/// How the client echoes.
#[derive(Clone, Copy, Debug)]
enum Echo {
    /// `WebSocketApp`, as the Autobahn client does.
    App,
    /// A `recv` loop on the caller's thread, sending through the `WebSocket`.
    Recv,
}

/// One round: the server writes `frames` one write each, then records what
/// the client sent back.
fn round(frames: &[Vec<u8>], echo: Echo) -> Vec<(u8, Vec<u8>)> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let frames = frames.to_vec();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(ROUND)).unwrap();
        handshake(&mut tcp).unwrap();
        for f in &frames {
            if tcp.write_all(f).is_err() {
                break;
            }
        }
        client_frames(&mut tcp, Duration::from_secs(3))
    });
    let client = Client::new(url)
        .compression(None)
        .close_timeout(Duration::from_secs(1));
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        match echo {
            Echo::App => {
                let _ = WebSocketApp::new(client)
                    .on_message(|ws, msg| {
                        let _ = ws.send(msg);
                    })
                    .on_error(|_, _| {})
                    .run_forever();
            }
            Echo::Recv => {
                let ws = client.connect().unwrap();
                while let Ok(msg) = ws.recv() {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg);
                    }
                }
            }
        }
        let _ = done.send(());
    });
    ended
        .recv_timeout(ROUND)
        .unwrap_or_else(|_| panic!("the {echo:?} client did not end within {ROUND:?}"));
    server.join().unwrap()
}

fn check_rounds(frames: &[Vec<u8>], echoed: &[u8], not_after: &str) {
    for echo in [Echo::App, Echo::Recv] {
        for i in 0..ROUNDS {
            let got = round(frames, echo);
            let what = format!("{echo:?} round {i}: the client sent {got:?}");
            assert!(
                got.iter().all(|(op, _)| *op != PONG),
                "a ping behind the faulty frame was answered. {what}"
            );
            assert_eq!(
                got.first(),
                Some(&(TEXT, echoed.to_vec())),
                "the good message first. {what}"
            );
            assert_eq!(got.len(), 2, "{not_after}. {what}");
            assert_eq!(got[1].0, CLOSE, "{what}");
            assert_eq!(
                got[1].1[..2],
                1002u16.to_be_bytes(),
                "close with 1002. {what}"
            );
        }
    }
}

#[test]
fn a_frame_with_a_reserved_bit_ends_reading_before_the_ping_behind_it() {
    // Autobahn 3.2 (3.3 is the same with RSV1 | RSV2).
    let frames = [
        frame(FIN | TEXT, b"Hello, world!"),
        frame(FIN | RSV2 | TEXT, b"Hello, world!"),
        frame(FIN | PING, b""),
    ];
    check_rounds(&frames, b"Hello, world!", "nothing after the faulty frame");
}

#[test]
fn a_continuation_with_nothing_to_continue_ends_reading_before_what_follows() {
    // Autobahn 5.15.
    let frames = [
        frame(TEXT, b"fragment1"),
        frame(FIN | CONT, b"fragment2"),
        frame(CONT, b"fragment3"),
        frame(FIN | TEXT, b"fragment4"),
    ];
    check_rounds(
        &frames,
        b"fragment1fragment2",
        "fragment4 must not be echoed",
    );
}
