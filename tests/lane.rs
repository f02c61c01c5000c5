//! The fast lane (`src/lane.rs`) against a raw server: a scripted mix of
//! frames the lane takes (small whole text and binary) and frames it must
//! leave to tungstenite (pings, fragmented messages with a ping inside,
//! frames of 16 KiB and more, empty ones), written in pieces of random
//! sizes (1 byte to 8 KiB, with pauses), then a text frame that is not
//! UTF-8. Every way of reading must give the same messages, in wire order,
//! answer every ping, and end with 1007 after the good messages.
//!
//! Ways of reading: `recv` with direct reads, `recv` with the I/O thread
//! reading ahead (`direct_reads(false)`), a lossy policy (copies out of the
//! lane's buffer), a hub (4 KiB reads), and a one-byte read buffer.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use wsapp::{Client, ErrorKind, Hub, Message, Overflow};

use common::raw::*;

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The wire the server sends and the messages the client must see.
fn script(seed: u64) -> (Vec<u8>, Vec<Message>, usize) {
    let mut rng = Rng(seed);
    let (mut wire, mut want, mut pings) = (Vec::new(), Vec::new(), 0);
    for i in 0..400u32 {
        let tag = i.to_be_bytes();
        match rng.below(10) {
            0..=4 => {
                let mut p = tag.to_vec();
                p.resize(4 + rng.below(300) as usize, b'b');
                wire.extend(frame(FIN | BINARY, &p));
                want.push(Message::binary(p));
            }
            5 => {
                let t = format!("{i} héllo {}", "x".repeat(rng.below(200) as usize));
                wire.extend(frame(FIN | TEXT, t.as_bytes()));
                want.push(Message::text(t));
            }
            6 => {
                wire.extend(frame(FIN | PING, &tag));
                want.push(Message::Ping(tag.to_vec().into()));
                pings += 1;
            }
            7 => {
                // Fragmented, with a ping between the fragments.
                let t = format!("{i} fragmented");
                let (a, b) = t.as_bytes().split_at(3);
                wire.extend(frame(TEXT, a));
                wire.extend(frame(FIN | PING, &tag));
                wire.extend(frame(FIN | CONT, b));
                want.push(Message::Ping(tag.to_vec().into()));
                want.push(Message::text(t));
                pings += 1;
            }
            8 => {
                // At and past the lane's size.
                let mut p = tag.to_vec();
                p.resize((16 << 10) + rng.below(3) as usize - 1, b'L');
                wire.extend(frame(FIN | BINARY, &p));
                want.push(Message::binary(p));
            }
            _ => {
                wire.extend(frame(FIN | BINARY, &[]));
                want.push(Message::binary(Vec::<u8>::new()));
            }
        }
    }
    // Not UTF-8: tungstenite refuses it, with 1007.
    wire.extend(frame(FIN | TEXT, &[b'o', b'k', 0xC3, 0x28]));
    (wire, want, pings)
}

/// Sends the script in random pieces, then reads what the client sends:
/// returns the pongs' payloads and the close code.
fn serve_script(mut tcp: TcpStream, seed: u64) -> (usize, Saw) {
    let (wire, _, _) = script(seed);
    handshake(&mut tcp).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut rng = Rng(seed ^ 0x9E37_79B9);
    let mut at = 0;
    while at < wire.len() {
        let n = match rng.below(4) {
            0 => 1,
            1 => 1 + rng.below(16),
            2 => 1 + rng.below(1500),
            _ => 1 + rng.below(8 << 10),
        } as usize;
        let end = (at + n).min(wire.len());
        tcp.write_all(&wire[at..end]).unwrap();
        at = end;
        if rng.below(20) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    count_pongs_until_close(&mut tcp, Duration::from_secs(10))
}

/// Reads the client's frames: counts pongs, stops at its close frame.
fn count_pongs_until_close(tcp: &mut TcpStream, within: Duration) -> (usize, Saw) {
    let end = Instant::now() + within;
    let (mut buf, mut pongs) = (Vec::<u8>::new(), 0);
    let mut chunk = [0u8; 4096];
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while Instant::now() < end {
        while buf.len() >= 6 && buf[1] & 0x7F < 126 {
            let len = usize::from(buf[1] & 0x7F);
            if buf.len() < 6 + len {
                break;
            }
            let op = buf[0] & 0x0F;
            let payload: Vec<u8> = buf[6..6 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ buf[2 + i % 4])
                .collect();
            buf.drain(..6 + len);
            match op {
                0xA => pongs += 1,
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return (pongs, Saw::Close(code));
                }
                _ => {}
            }
        }
        match tcp.read(&mut chunk) {
            Ok(0) => return (pongs, Saw::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    (pongs, Saw::Nothing)
}

fn run(client: impl Fn(String) -> Client, seed: u64, how: &str) {
    let server = common::serve(move |tcp| {
        let (pongs, saw) = serve_script(tcp, seed);
        let _ = RESULT.lock().map(|mut r| r.push((seed, pongs, saw)));
    });
    let (_, want, pings) = script(seed);
    let ws = client(server.url()).connect().expect("connect");
    let mut got = Vec::new();
    let end = loop {
        match ws.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(m)) => got.push(m),
            Ok(None) => panic!("{how}: nothing for 10 s after {} messages", got.len()),
            Err(e) => break e,
        }
    };
    assert_eq!(got.len(), want.len(), "{how} (seed {seed}): message count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g == w,
            "{how} (seed {seed}): message {i} differs: {g:?} vs {w:?}"
        );
    }
    assert_eq!(end.kind(), ErrorKind::Protocol, "{how}: {end}");
    drop(ws);
    // The server thread records what it saw back.
    let saw = common::wait_for(Duration::from_secs(15), || {
        let mut results = RESULT.lock().unwrap();
        let i = results.iter().position(|r| r.0 == seed)?;
        Some(results.remove(i))
    })
    .unwrap_or_else(|| panic!("{how}: the server did not finish"));
    assert_eq!(saw.1, pings, "{how} (seed {seed}): every ping answered");
    assert_eq!(saw.2, Saw::Close(Some(1007)), "{how} (seed {seed})");
}

static RESULT: std::sync::Mutex<Vec<(u64, usize, Saw)>> = std::sync::Mutex::new(Vec::new());

const SEEDS: [u64; 3] = [0x1234_5678, 0xDEAD_BEEF, 42];

#[test]
fn lane_direct_reads_keep_wire_order() {
    for seed in SEEDS {
        run(Client::new, seed, "direct");
    }
}

#[test]
fn lane_read_ahead_keeps_wire_order() {
    for seed in SEEDS {
        run(
            |u| Client::new(u).direct_reads(false),
            seed + 1,
            "read ahead",
        );
    }
}

#[test]
fn lane_lossy_policy_copies_and_keeps_wire_order() {
    for seed in SEEDS {
        // Large enough that nothing is dropped: the copy path, not the policy.
        run(
            |u| Client::new(u).overflow(Overflow::DropNewest).queue(4096),
            seed + 2,
            "drop-newest",
        );
    }
}

#[test]
fn lane_on_a_hub_keeps_wire_order() {
    let hub = Hub::new().unwrap();
    for seed in SEEDS {
        run(|u| Client::new(u).hub(&hub), seed + 3, "hub");
    }
}

#[test]
fn lane_with_one_byte_reads_keeps_wire_order() {
    run(|u| Client::new(u).read_buffer_size(1), 7, "1-byte reads");
}
