//! permessage-deflate (RFC 7692) against a raw server on `127.0.0.1:0` that
//! compresses by hand with flate2: the offer, fragmented compressed messages
//! with pings between fragments, RSV1 where it may not be (1002), a compressed
//! message when nothing was negotiated (1002), a decompression bomb (1009), an
//! invalid deflate stream (1007), and context takeover over 10,000 messages in
//! each direction.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression as Level, Decompress, FlushCompress, FlushDecompress};
use wsapp::{Client, Compression, Error, ErrorKind, Message};

use common::raw::*;

const WAIT: Duration = Duration::from_secs(10);
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// A one-connection raw server: answers the upgrade with `extensions` as its
/// `Sec-WebSocket-Extensions` (none if empty), then runs `script` with the
/// request head. Returns the URL and the thread, which returns what the script does.
fn server<T: Send + 'static>(
    extensions: &'static str,
    script: impl FnOnce(&mut TcpStream, String) -> T + Send + 'static,
) -> (String, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let h = std::thread::Builder::new()
        .name("deflate-srv".into())
        .spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(WAIT)).unwrap();
            let head = common::read_request_head(&mut tcp).unwrap();
            let key = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| v.trim().to_string())
                })
                .unwrap();
            let ext = if extensions.is_empty() {
                String::new()
            } else {
                format!("Sec-WebSocket-Extensions: {extensions}\r\n")
            };
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n{ext}\r\n",
                accept_key(&key)
            );
            tcp.write_all(resp.as_bytes()).unwrap();
            script(&mut tcp, head)
        })
        .unwrap();
    (url, h)
}

/// Raw deflate of one message with `z` (its context kept), without the tail.
fn deflate(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = z.total_in();
    loop {
        let done = (z.total_in() - start) as usize;
        z.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .unwrap();
        if (z.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

/// Raw inflate of one message with `z` (its context kept).
fn inflate(z: &mut Decompress, data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(data.len() * 4 + 64);
    let start = z.total_in();
    loop {
        let done = (z.total_in() - start) as usize;
        z.decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
            .unwrap();
        if (z.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    out
}

/// Reads one frame the client sent (masked): `(first byte, unmasked payload)`.
fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    tcp.read_exact(&mut h).ok()?;
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    if h[1] & 0x80 != 0 {
        tcp.read_exact(&mut key).ok()?;
    }
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).ok()?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    Some((h[0], payload))
}

fn json(i: usize) -> String {
    format!(
        r#"{{"id":{i},"type":"trade","symbol":"BTC-USD","price":"{}.{:02}","size":"0.{:04}","side":"{}","ts":"2026-12-01T10:00:{:02}.{:03}Z"}}"#,
        60_000 + i % 977,
        i % 100,
        i % 10_000,
        if i % 2 == 0 { "buy" } else { "sell" },
        i % 60,
        i % 1000
    )
}

/// Receives until a data message, skipping pings and pongs.
fn recv_data(ws: &wsapp::WebSocket) -> wsapp::Result<Message> {
    let end = Instant::now() + WAIT;
    loop {
        match ws.recv_timeout(end.saturating_duration_since(Instant::now()))? {
            Some(m @ (Message::Text(_) | Message::Binary(_))) => return Ok(m),
            Some(_) => {}
            None => panic!("no message within {WAIT:?}"),
        }
    }
}

/// The client's error once the connection ends.
fn ending(ws: &wsapp::WebSocket) -> Error {
    let end = Instant::now() + WAIT;
    loop {
        match ws.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("connection did not end within {WAIT:?}"),
            Err(e) => return e,
        }
    }
}

#[test]
fn deflate_is_offered_by_default() {
    let (url, srv) = server("", |_, head| head);
    let ws = Client::new(&url).connect().unwrap();
    let head = srv.join().unwrap();
    let line = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-extensions:")
        })
        .unwrap_or_else(|| panic!("no offer in {head}"));
    assert!(
        line.contains("permessage-deflate") && line.contains("client_max_window_bits"),
        "{line}"
    );
    drop(ws);
}

#[test]
fn deflate_fragmented_message_with_pings_between_fragments() {
    let (url, srv) = server("permessage-deflate", |tcp, _| {
        let mut z = Compress::new(Level::default(), false);
        let text = "fragmented and compressed ".repeat(40);
        let c = deflate(&mut z, text.as_bytes());
        let (a, rest) = c.split_at(c.len() / 3);
        let (b, d) = rest.split_at(rest.len() / 2);
        let mut wire = frame(RSV1 | TEXT, a);
        wire.extend(frame(FIN | PING, b"p1"));
        wire.extend(frame(CONT, b));
        wire.extend(frame(FIN | PING, b"p2"));
        wire.extend(frame(FIN | CONT, d));
        // A plain message after it, and a second compressed one (context kept).
        wire.extend(frame(FIN | TEXT, b"plain"));
        wire.extend(frame(FIN | RSV1 | BINARY, &deflate(&mut z, &[7u8; 3000])));
        // Split into small writes, so headers and payloads cross reads.
        for chunk in wire.chunks(7) {
            tcp.write_all(chunk).unwrap();
            tcp.flush().unwrap();
        }
        // Both pings are answered.
        let mut pongs = Vec::new();
        while pongs.len() < 2 {
            let (first, payload) = read_frame(tcp).expect("pong");
            if first & 0x0F == 0xA {
                pongs.push(payload);
            }
        }
        pongs
    });
    let ws = Client::new(&url).connect().unwrap();
    let text = "fragmented and compressed ".repeat(40);
    assert_eq!(recv_data(&ws).unwrap(), Message::text(text));
    assert_eq!(recv_data(&ws).unwrap(), Message::text("plain"));
    assert_eq!(recv_data(&ws).unwrap(), Message::binary(vec![7u8; 3000]));
    assert_eq!(srv.join().unwrap(), [b"p1".to_vec(), b"p2".to_vec()]);
}

/// A server that sends `wire` after a good compressed message, then reports
/// the close code the client sent.
fn faulty(extensions: &'static str, wire: Vec<u8>) -> (String, JoinHandle<Saw>) {
    server(extensions, move |tcp, _| {
        let mut z = Compress::new(Level::default(), false);
        tcp.write_all(&frame(FIN | RSV1 | TEXT, &deflate(&mut z, b"good")))
            .unwrap();
        tcp.write_all(&wire).unwrap();
        read_client_close(tcp, WAIT)
    })
}

fn check_fault(
    extensions: &'static str,
    wire: Vec<u8>,
    code: u16,
    kind: ErrorKind,
    says: &str,
) -> Error {
    let (url, srv) = faulty(extensions, wire);
    let ws = Client::new(&url).connect().unwrap();
    if !extensions.is_empty() {
        assert_eq!(recv_data(&ws).unwrap(), Message::text("good"));
    }
    let err = ending(&ws);
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.to_string().contains(says), "{err}");
    assert_eq!(srv.join().unwrap(), Saw::Close(Some(code)), "{err}");
    err
}

#[test]
fn deflate_rsv1_on_a_continuation_is_1002() {
    let mut wire = frame(TEXT, b"plain start");
    wire.extend(frame(FIN | RSV1 | CONT, b"x"));
    check_fault(
        "permessage-deflate",
        wire,
        1002,
        ErrorKind::Protocol,
        "continuation frame with RSV1",
    );
}

#[test]
fn deflate_rsv1_on_a_control_frame_is_1002() {
    check_fault(
        "permessage-deflate",
        frame(FIN | RSV1 | PING, b"x"),
        1002,
        ErrorKind::Protocol,
        "control frame with RSV1",
    );
}

#[test]
fn deflate_compressed_message_when_not_negotiated_is_1002() {
    let mut z = Compress::new(Level::default(), false);
    check_fault(
        "",
        frame(FIN | RSV1 | TEXT, &deflate(&mut z, b"unasked")),
        1002,
        ErrorKind::Protocol,
        "permessage-deflate was not negotiated",
    );
}

#[test]
fn deflate_invalid_stream_is_1007() {
    check_fault(
        "permessage-deflate",
        frame(FIN | RSV1 | BINARY, &[0xff; 40]),
        1007,
        ErrorKind::Protocol,
        "not a valid deflate stream",
    );
}

#[test]
fn deflate_bomb_is_1009_within_the_limit() {
    const LIMIT: usize = 1 << 20;
    let mut z = Compress::new(Level::fast(), false);
    let bomb = deflate(&mut z, &vec![0u8; 16 << 20]);
    assert!(bomb.len() < 256 << 10, "{}", bomb.len());
    let (url, srv) = server("permessage-deflate", move |tcp, _| {
        // In frames of 4 KiB, as a real sender would.
        let chunks: Vec<&[u8]> = bomb.chunks(4096).collect();
        for (i, c) in chunks.iter().enumerate() {
            let first = match (i == 0, i + 1 == chunks.len()) {
                (true, _) => RSV1 | BINARY,
                (false, true) => FIN | CONT,
                (false, false) => CONT,
            };
            if tcp.write_all(&frame(first, c)).is_err() {
                break;
            }
        }
        read_client_close(tcp, WAIT)
    });
    let ws = Client::new(&url)
        .max_message_size(Some(LIMIT))
        .connect()
        .unwrap();
    let err = ending(&ws);
    assert_eq!(err.kind(), ErrorKind::Capacity, "{err}");
    match &err {
        Error::Capacity(tungstenite::error::CapacityError::MessageTooLong { size, max_size }) => {
            assert_eq!(*max_size, LIMIT);
            assert!(*size <= LIMIT + 1, "inflated {size} bytes");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(srv.join().unwrap(), Saw::Close(Some(1009)));
}

#[test]
fn deflate_context_takeover_over_10000_messages_in() {
    const N: usize = 10_000;
    let (url, srv) = server("permessage-deflate", |tcp, _| {
        let mut z = Compress::new(Level::default(), false);
        let mut wire = Vec::new();
        let mut sent = 0;
        for i in 0..N {
            let msg = json(i);
            let c = deflate(&mut z, msg.as_bytes());
            sent += c.len();
            wire.extend(frame(FIN | RSV1 | TEXT, &c));
            if wire.len() > 64 << 10 {
                tcp.write_all(&wire).unwrap();
                wire.clear();
            }
        }
        tcp.write_all(&wire).unwrap();
        let _ = read_client_close(tcp, WAIT);
        sent
    });
    let ws = Client::new(&url).connect().unwrap();
    let mut plain = 0;
    for i in 0..N {
        let want = json(i);
        plain += want.len();
        assert_eq!(recv_data(&ws).unwrap(), Message::text(want), "message {i}");
    }
    ws.close(1000, "").unwrap();
    let sent = srv.join().unwrap();
    // Context takeover: later messages compress against earlier ones.
    assert!(sent * 3 < plain, "{sent} compressed bytes for {plain}");
}

#[test]
fn deflate_context_takeover_over_10000_messages_out() {
    const N: usize = 10_000;
    let (url, srv) = server("permessage-deflate", |tcp, _| {
        let mut z = Decompress::new(false);
        let (mut wire, mut compressed) = (0, 0);
        for i in 0..N {
            let (first, payload) = read_frame(tcp).expect("a frame");
            assert_eq!(first & 0x8F, FIN | TEXT, "message {i}");
            wire += payload.len();
            let text = if first & RSV1 != 0 {
                compressed += 1;
                inflate(&mut z, &payload)
            } else {
                payload
            };
            assert_eq!(String::from_utf8(text).unwrap(), json(i), "message {i}");
        }
        let _ = read_client_close(tcp, WAIT);
        (wire, compressed)
    });
    let ws = Client::new(&url)
        .compression(Compression::default().threshold(0))
        .connect()
        .unwrap();
    let mut plain = 0;
    for i in 0..N {
        let msg = json(i);
        plain += msg.len();
        ws.send_text(msg).unwrap();
    }
    ws.close(1000, "").unwrap();
    let (wire, compressed) = srv.join().unwrap();
    assert!(compressed > 0, "nothing was sent compressed");
    assert!(wire * 2 < plain, "{wire} wire bytes for {plain}");
}

#[test]
fn deflate_bad_answer_fails_the_connection() {
    for answer in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; x-unknown",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate, permessage-deflate",
    ] {
        let (url, srv) = server(answer, |_, _| ());
        let err = Client::new(&url).connect().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Extension, "{answer}: {err}");
        assert!(
            err.to_string().contains("permessage-deflate"),
            "{answer}: {err}"
        );
        srv.join().unwrap();
    }
}

/// Every path with compression on: direct reads under `Block`, the I/O thread
/// reading ahead (`direct_reads(false)`), and each lossy policy, over a
/// compressed stream with server pings between messages and a close at the
/// end. A consumer that starts late makes the inbox fill and reading pause.
#[test]
fn deflate_every_policy_with_pauses_pings_and_close() {
    const N: usize = 5_000;
    let key = |m: &Message| -> Option<String> {
        let t = m.to_text().ok()?;
        t.contains("\"side\":\"buy\"").then(|| "buy".to_string())
    };
    let policies: Vec<(&str, wsapp::Overflow, bool)> = vec![
        ("block", wsapp::Overflow::Block, true),
        ("block-ahead", wsapp::Overflow::Block, false),
        ("drop-newest", wsapp::Overflow::DropNewest, false),
        ("drop-oldest", wsapp::Overflow::DropOldest, false),
        (
            "priority",
            wsapp::Overflow::priority(|m: &Message| (m.len() % 3) as u8),
            false,
        ),
        ("conflate", wsapp::Overflow::conflate(key), false),
    ];
    for (name, policy, direct) in policies {
        let lossless = name.starts_with("block");
        // The server says when it has written far more than the inbox holds.
        let (wrote, written) = std::sync::mpsc::channel();
        let (url, srv) = server("permessage-deflate", move |tcp, _| {
            let mut z = Compress::new(Level::default(), false);
            let mut wire = Vec::new();
            for i in 0..N {
                let c = deflate(&mut z, json(i).as_bytes());
                wire.extend(frame(FIN | RSV1 | TEXT, &c));
                if i % 1000 == 999 {
                    wire.extend(frame(FIN | PING, b"between"));
                }
                if wire.len() > 64 << 10 {
                    if tcp.write_all(&wire).is_err() {
                        return Saw::Eof;
                    }
                    wire.clear();
                    let _ = wrote.send(i);
                }
            }
            wire.extend(frame(FIN | CLOSE, &close_payload(4000, b"done")));
            let _ = tcp.write_all(&wire);
            read_client_close(tcp, WAIT)
        });
        let ws = Client::new(&url)
            .queue(64)
            .overflow(policy)
            .direct_reads(direct)
            .connect()
            .unwrap();
        assert!(ws.compression().is_some(), "{name}");
        // Start late, once more than the inbox and a batch are on the wire
        // (on a loaded machine the server can take longer than the sleep):
        // the inbox fills, and under Block reading pauses.
        written.recv_timeout(WAIT).expect("the server writes");
        std::thread::sleep(Duration::from_millis(200));
        let mut last: Option<usize> = None;
        let mut got = 0;
        let end = loop {
            match ws.recv_timeout(WAIT) {
                Ok(Some(Message::Text(t))) => {
                    let id: usize = t
                        .split("\"id\":")
                        .nth(1)
                        .and_then(|r| r.split(',').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("{name}: not a numbered message: {t}"));
                    assert_eq!(t.as_str(), json(id), "{name}: inflated wrong");
                    if lossless {
                        assert_eq!(id, got, "{name}: out of order or lost");
                    } else if name != "conflate" {
                        assert!(last.is_none_or(|l| id > l), "{name}: {id} after {last:?}");
                    }
                    last = Some(id);
                    got += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("{name}: nothing within {WAIT:?} after {got}"),
                Err(e) => break e,
            }
        };
        let s = ws.stats();
        assert_eq!(
            s.received,
            s.delivered + s.dropped.total() + s.queued as u64,
            "{name}: {s}"
        );
        // The server's pings are messages too.
        let pings = (N / 1000) as u64;
        assert_eq!(
            s.received,
            N as u64 + pings,
            "{name}: every message counted: {s}"
        );
        assert!(s.compressed_in >= N as u64, "{name}: {s}");
        if lossless {
            assert_eq!(got, N, "{name}: {s}");
            assert!(
                s.pause_count > 0,
                "{name}: a late consumer pauses reading: {s}"
            );
        } else {
            assert!(s.dropped.total() > 0, "{name}: a late consumer drops: {s}");
        }
        let frame = end
            .close_frame()
            .unwrap_or_else(|| panic!("{name}: ended without the server's close: {end}"));
        assert_eq!(u16::from(frame.code), 4000, "{name}");
        assert_eq!(
            srv.join().unwrap(),
            Saw::Close(Some(4000)),
            "{name}: the reply"
        );
    }
}
