//! Stream layer: the byte stream the WebSocket runs on (plain TCP, or TLS over
//! a stream, which also covers TLS to a target inside TLS to an HTTPS proxy),
//! with the handshake deadline and a count of bytes read.
//!
//! It knows nothing of HTTP; after the upgrade, every byte read passes the
//! frame follower (`wire`), the bytes that came with the response first.
//! `tls` builds its TLS case.

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
}

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
        }
    }

    /// TLS over `inner` (plain TCP, or TLS to an HTTPS proxy).
    pub(crate) fn tls_stream(tls: native_tls::TlsStream<Stream>) -> Stream {
        Stream {
            inner: Inner::Tls(Box::new(tls)),
            deadline: None,
            bytes_read: 0,
            frames: None,
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

    /// From now on, reads go through the frame follower (`wire`): called
    /// once the upgrade response has been read, with the bytes that came
    /// after its head (the first frames, maybe), which it follows first.
    pub(crate) fn follow_frames(&mut self, leftover: &mut Vec<u8>) -> io::Result<()> {
        let mut frames = Inbound::default();
        let n = frames.filter(leftover)?;
        leftover.truncate(n);
        self.frames = Some(frames);
        Ok(())
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
        let n = read_inner(&mut self.inner, &mut self.bytes_read, buf)?;
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
