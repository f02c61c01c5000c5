//! Stream layer: the byte stream the WebSocket runs on (plain TCP, or TLS over
//! a stream, which also covers TLS to a target inside TLS to an HTTPS proxy),
//! with the handshake deadline and a count of bytes read.
//!
//! It knows nothing of HTTP or WebSocket frames; `tls` builds its TLS case.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

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
        }
    }

    /// TLS over `inner` (plain TCP, or TLS to an HTTPS proxy).
    pub(crate) fn tls_stream(tls: native_tls::TlsStream<Stream>) -> Stream {
        Stream {
            inner: Inner::Tls(Box::new(tls)),
            deadline: None,
            bytes_read: 0,
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
        let n = match &mut self.inner {
            Inner::Tcp(s) => s.read(buf)?,
            Inner::Tls(s) => s.read(buf)?,
        };
        self.bytes_read += n as u64;
        Ok(n)
    }
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
