//! A WebSocket peer by hand, for servers that must break the protocol on
//! purpose: the upgrade, frames (unmasked from a server, masked as a client
//! sends them) and reading what the client sent back, all bounded.

use std::io::{self, ErrorKind as IoKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads the upgrade request (bounded) and returns its `Sec-WebSocket-Key`.
pub fn read_request(tcp: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 << 10 {
            return Err(io::Error::other("request too long"));
        }
        let n = tcp.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::from(IoKind::UnexpectedEof));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .ok_or_else(|| io::Error::other("no Sec-WebSocket-Key"))
}

pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

pub fn switching(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
}

/// A correct upgrade, by hand.
pub fn handshake(tcp: &mut TcpStream) -> io::Result<()> {
    let key = read_request(tcp)?;
    tcp.write_all(switching(&key).as_bytes())
}

// Frames, by hand.
pub const FIN: u8 = 0x80;
pub const RSV1: u8 = 0x40;
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

pub fn push_len(v: &mut Vec<u8>, mask_bit: u8, len: u64) {
    if len < 126 {
        v.push(mask_bit | len as u8);
    } else if len < 65536 {
        v.push(mask_bit | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(mask_bit | 127);
        v.extend_from_slice(&len.to_be_bytes());
    }
}

/// An unmasked frame: `first` is FIN|RSV|opcode.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    push_len(&mut v, 0, payload.len() as u64);
    v.extend_from_slice(payload);
    v
}

pub fn masked_frame(first: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut v = vec![first];
    push_len(&mut v, 0x80, payload.len() as u64);
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason);
    v
}

/// What the server got back from the client after the fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Saw {
    /// A close frame, with its code if it had one.
    Close(Option<u16>),
    /// EOF or reset without a close frame.
    Eof,
    /// Nothing within the bound.
    Nothing,
}

/// Reads the client's frames (masked) until a close frame, EOF or `within`.
pub fn read_client_close(tcp: &mut TcpStream, within: Duration) -> Saw {
    let end = Instant::now() + within;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse whole frames from the front of `buf`.
        while buf.len() >= 2 {
            let opcode = buf[0] & 0x0F;
            let masked = buf[1] & 0x80 != 0;
            let (len, mut at) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            let key_at = at;
            if masked {
                at += 4;
            }
            if buf.len() < at + len {
                break;
            }
            let mut payload = buf[at..at + len].to_vec();
            if masked {
                let key: [u8; 4] = buf[key_at..key_at + 4].try_into().unwrap();
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
            }
            buf.drain(..at + len);
            if opcode == CLOSE {
                return Saw::Close(
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
                );
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Saw::Nothing;
        }
        let _ = tcp.set_read_timeout(Some(left));
        match tcp.read(&mut chunk) {
            Ok(0) => return Saw::Eof,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {
                return Saw::Nothing
            }
            Err(_) => return Saw::Eof,
        }
    }
}
