//! Stream layer: the byte stream the WebSocket runs on (plain TCP, or TLS over
//! a stream, which also covers TLS to a target inside TLS to an HTTPS proxy),
//! with the handshake deadline and a count of bytes read.
//!
//! It knows nothing of HTTP or WebSocket frames but where an HTTP head ends:
//! until the frame follower (`wire`) starts after the upgrade, a read ends
//! at the CRLF CRLF of a `101` response and the bytes after it wait for the
//! next read, so tungstenite's handshake keeps none of the first frames and
//! the follower sees every frame byte (a refusal's body still comes with its
//! head, for the error). `tls` builds its TLS case.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::wire::{Inbound, PeerClose};

/// The stream under the WebSocket.
#[derive(Debug)]
pub(crate) struct Stream {
    inner: Inner,
    /// While set (during the handshakes), reads and writes fail with
    /// `TimedOut` once it has passed, even if the peer trickles bytes.
    deadline: Option<Instant>,
    /// Bytes read so far (after TLS): tells whether a read that gave no
    /// message took part of one.
    bytes_read: u64,
    /// The frame follower, from the end of the handshake on.
    frames: Option<Inbound>,
    /// Until the frame follower has taken what the handshake read past the
    /// upgrade response.
    heads: Option<Box<Heads>>,
}

/// Reads end at the end of a `101` response's head until frames are followed
/// (a short read is always allowed): the bytes after it are kept here.
#[derive(Debug)]
struct Heads {
    /// Still ending reads at heads (off once frames are followed, and under TLS).
    splitting: bool,
    /// How many bytes of CRLF CRLF the last bytes read matched.
    matched: u8,
    /// The start of the current head's status line.
    status: [u8; STATUS_101.len()],
    status_len: u8,
    /// Bytes read past the end of a head, served before the next socket read.
    carry: Vec<u8>,
    at: usize,
}

impl Heads {
    fn new() -> Box<Heads> {
        Box::new(Heads {
            splitting: true,
            matched: 0,
            status: [0; STATUS_101.len()],
            status_len: 0,
            carry: Vec::new(),
            at: 0,
        })
    }

    fn read(
        &mut self,
        buf: &mut [u8],
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let from_carry = self.at < self.carry.len();
        let n = if from_carry {
            let k = buf.len().min(self.carry.len() - self.at);
            buf[..k].copy_from_slice(&self.carry[self.at..self.at + k]);
            self.at += k;
            k
        } else {
            read(buf)?
        };
        if !self.splitting {
            return Ok(n);
        }
        let Some(end) = self.upgrade_end(&buf[..n]) else {
            return Ok(n);
        };
        if from_carry {
            self.at -= n - end;
        } else {
            self.carry.clear();
            self.carry.extend_from_slice(&buf[end..n]);
            self.at = 0;
        }
        Ok(end)
    }

    fn is_done(&self) -> bool {
        !self.splitting && self.at >= self.carry.len()
    }

    /// Where the head of a `101` response ends in `bytes`, which follow the
    /// bytes scanned before.
    fn upgrade_end(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(s) = self.status.get_mut(self.status_len as usize) {
                *s = b;
                self.status_len += 1;
            }
            self.matched = match (self.matched, b) {
                (0 | 2, b'\r') | (1 | 3, b'\n') => self.matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.matched == 4 {
                self.matched = 0;
                let upgrade = self.status_len as usize == STATUS_101.len()
                    && self.status[..5] == STATUS_101[..5]
                    && self.status[8..] == STATUS_101[8..];
                self.status_len = 0;
                if upgrade {
                    return Some(i + 1);
                }
            }
        }
        None
    }
}

/// How a `101` response starts (`HTTP/1.x`).
const STATUS_101: &[u8; 13] = b"HTTP/1.1 101 ";

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Tls(Box<native_tls::TlsStream<Stream>>),
}

impl Stream {
    pub(crate) fn tcp_stream(tcp: TcpStream) -> Stream {
        Stream {
            inner: Inner::Tcp(tcp),
            deadline: None,
            bytes_read: 0,
            frames: None,
            heads: Some(Heads::new()),
        }
    }

    /// TLS over `inner` (plain TCP, or TLS to an HTTPS proxy).
    pub(crate) fn tls_stream(mut tls: native_tls::TlsStream<Stream>) -> Stream {
        // The stream under TLS carries records, not heads.
        if let Some(h) = &mut tls.get_mut().heads {
            h.splitting = false;
        }
        Stream {
            inner: Inner::Tls(Box::new(tls)),
            deadline: None,
            bytes_read: 0,
            frames: None,
            heads: Some(Heads::new()),
        }
    }

    /// The TCP socket at the bottom: for timeouts, non-blocking mode, readiness and probes.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Tcp(s) => s,
            Inner::Tls(s) => s.get_ref().tcp(),
        }
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
        if let Inner::Tls(s) = &mut self.inner {
            s.get_mut().set_deadline(deadline);
        }
    }

    /// From now on, reads go through the frame follower (`wire`): call once
    /// the handshake is done and before the first frame is read.
    pub(crate) fn follow_frames(&mut self) {
        self.frames = Some(Inbound::default());
        if let Some(h) = &mut self.heads {
            h.splitting = false;
        }
    }

    /// The peer's close frame as it was sent, once read whole.
    pub(crate) fn peer_close(&self) -> Option<&PeerClose> {
        self.frames.as_ref()?.peer_close()
    }

    /// Bytes read so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Starts a handshake phase that must end by `deadline`.
    pub(crate) fn set_handshake_deadline(&mut self, deadline: Instant) {
        self.set_deadline(Some(deadline));
    }

    /// Ends the handshake phase: no deadline from now on.
    pub(crate) fn clear_deadline(&mut self) {
        self.set_deadline(None);
    }

    fn check_deadline(&self) -> io::Result<()> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake deadline passed",
            )),
            _ => Ok(()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check_deadline()?;
        if let Some(f) = &self.frames {
            f.check()?;
        }
        let n = match &mut self.heads {
            None => read_inner(&mut self.inner, &mut self.bytes_read, buf)?,
            Some(h) => {
                let n = h.read(buf, |b| {
                    read_inner(&mut self.inner, &mut self.bytes_read, b)
                })?;
                if h.is_done() {
                    self.heads = None;
                }
                n
            }
        };
        match &mut self.frames {
            Some(f) if n > 0 => f.filter(&mut buf[..n]),
            _ => Ok(n),
        }
    }
}

#[inline]
fn read_inner(inner: &mut Inner, bytes_read: &mut u64, buf: &mut [u8]) -> io::Result<usize> {
    let n = match inner {
        Inner::Tcp(s) => s.read(buf)?,
        Inner::Tls(s) => s.read(buf)?,
    };
    *bytes_read += n as u64;
    Ok(n)
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_deadline()?;
        match &mut self.inner {
            Inner::Tcp(s) => s.write(buf),
            Inner::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tcp(s) => s.flush(),
            Inner::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `chunks` through `Heads` with reads of `size` bytes.
    fn read_all(chunks: &[&[u8]], size: usize) -> Vec<Vec<u8>> {
        let mut h = Heads::new();
        let mut chunks = chunks.iter();
        let mut left: &[u8] = &[];
        let mut reads = Vec::new();
        for _ in 0..1000 {
            let mut buf = vec![0u8; size];
            let n = h
                .read(&mut buf, |b| {
                    if left.is_empty() {
                        left = chunks.next().map_or(&[][..], |c| *c);
                    }
                    let k = left.len().min(b.len());
                    b[..k].copy_from_slice(&left[..k]);
                    left = &left[k..];
                    Ok(k)
                })
                .unwrap();
            if n == 0 {
                break;
            }
            reads.push(buf[..n].to_vec());
        }
        reads
    }

    #[test]
    fn reads_end_at_the_end_of_an_upgrade_response() {
        let wire: &[u8] = b"HTTP/1.1 101 Switching\r\nA: b\r\n\r\n\x81\x02hi";
        let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let reads = read_all(&[wire], 64);
        assert_eq!(reads, [&wire[..end], &wire[end..]]);
        // CRLF CRLF split across reads; a head before it that is not a 101.
        let reads = read_all(
            &[b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.0 101 Up\r\n\r", b"\nframes"],
            64,
        );
        assert_eq!(
            reads,
            [
                &b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.0 101 Up\r\n\r"[..],
                b"\n",
                b"frames"
            ]
        );
        // A refusal's body stays with its head.
        let refusal: &[u8] = b"HTTP/1.1 403 Forbidden\r\n\r\nno";
        assert_eq!(read_all(&[refusal], 64), [refusal]);
        // Small reads from the carry.
        let reads = read_all(&[b"HTTP/1.1 101 \r\n\r\nabcdef"], 2);
        assert_eq!(reads.concat(), b"HTTP/1.1 101 \r\n\r\nabcdef");
        let ends: Vec<usize> = reads
            .iter()
            .scan(0, |at, r| {
                *at += r.len();
                Some(*at)
            })
            .collect();
        assert!(ends.contains(&17), "{ends:?}");
    }
}
