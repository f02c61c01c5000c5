//! Stream layer: the byte stream the WebSocket runs on (plain TCP, or TLS over
//! a stream, which also covers TLS to a target inside TLS to an HTTPS proxy),
//! with the handshake deadline and a count of bytes read.
//!
//! It knows nothing of HTTP; after the upgrade, every byte read passes the
//! frame follower (`wire`), the bytes that came with the response first, and
//! then (unless permessage-deflate was agreed) the fast lane (`lane`), whose
//! frames [`read_message`] takes before tungstenite sees them; outgoing
//! messages pass the deflater when permessage-deflate was agreed. `tls`
//! builds its TLS case.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use tungstenite::protocol::frame::coding::Data as OpData;
use tungstenite::Message;

use crate::deflate::{Compression, Counts, Deflater};
use crate::lane::{Front, Lane};
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
    /// permessage-deflate for outgoing messages, when agreed.
    deflater: Option<Deflater>,
    /// The fast lane (`lane`), from the end of the handshake on, unless
    /// permessage-deflate was agreed.
    lane: Option<Lane>,
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
            deflater: None,
            lane: None,
        }
    }

    /// TLS over `inner` (plain TCP, or TLS to an HTTPS proxy).
    pub(crate) fn tls_stream(tls: native_tls::TlsStream<Stream>) -> Stream {
        Stream {
            inner: Inner::Tls(Box::new(tls)),
            deadline: None,
            bytes_read: 0,
            frames: None,
            deflater: None,
            lane: None,
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
    /// `deflate`: permessage-deflate as agreed, with the message and frame
    /// limits; `read_buffer`: bytes per read. Without deflate, the leftover
    /// goes to the lane and `leftover` is left empty.
    pub(crate) fn follow_frames(
        &mut self,
        leftover: &mut Vec<u8>,
        deflate: Option<&Compression>,
        max_message: usize,
        max_frame: usize,
        read_buffer: usize,
    ) {
        let mut frames = Inbound::with_deflate(deflate, max_message, max_frame);
        // A refused frame among them fails the first read (with its close
        // code), not the handshake.
        let n = if leftover.is_empty() {
            0
        } else {
            frames.filter(leftover).unwrap_or(0)
        };
        leftover.truncate(n);
        if deflate.is_none() {
            // The follower rewrites the stream for a compressed message; the
            // lane keeps to streams it leaves as they came.
            let mut lane = Lane::new(read_buffer, max_message, max_frame);
            lane.preload(leftover);
            leftover.clear();
            self.lane = Some(lane);
        }
        self.frames = Some(frames);
        self.deflater = deflate.map(|a| Deflater::new(*a));
    }

    /// What permessage-deflate agreed, if it was.
    pub(crate) fn compression(&self) -> Option<&Compression> {
        self.deflater.as_ref().map(Deflater::agreed)
    }

    /// Compression counters `(in, out)`, when permessage-deflate was agreed.
    pub(crate) fn compression_counts(&self) -> Option<(Counts, Counts)> {
        let inflated = self.frames.as_ref()?.inflated()?;
        Some((inflated, self.deflater.as_ref()?.counts))
    }

    /// An outgoing message as it is to be written: compressed into a frame
    /// with RSV1 when permessage-deflate was agreed and it is over the threshold.
    pub(crate) fn encode(&mut self, msg: Message) -> Message {
        let Some(d) = &mut self.deflater else {
            return msg;
        };
        let frame = match &msg {
            Message::Text(t) => d.frame(OpData::Text, t.as_bytes()),
            Message::Binary(b) => d.frame(OpData::Binary, b),
            _ => None,
        };
        frame.map_or(msg, Message::Frame)
    }

    /// The peer's close frame as it was sent, once read whole.
    pub(crate) fn peer_close(&self) -> Option<&PeerClose> {
        self.frames.as_ref()?.peer_close()
    }

    /// Whether the lane reads (permessage-deflate not agreed, handshake done).
    #[inline]
    pub(crate) fn lane_on(&self) -> bool {
        self.lane.is_some()
    }

    /// Frees the lane's spare read buffers: nothing is queued any more.
    pub(crate) fn trim_read_buffers(&mut self) {
        if let Some(lane) = &mut self.lane {
            lane.trim();
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
    // Small: the follower's work is per read, out of line.
    #[inline(always)]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check_deadline()?;
        if self.frames.is_none() {
            return read_inner(&mut self.inner, &mut self.bytes_read, buf);
        }
        if self.lane.is_some() {
            return self.read_for_tungstenite(buf);
        }
        self.read_followed(buf)
    }
}

/// Reads the next message: from the lane when its frame is at the front,
/// else from tungstenite (which reads through the lane the frames that are
/// its own). tungstenite's `WouldBlock` is the socket's, or the lane's "the
/// next frame is mine".
#[inline(always)]
pub(crate) fn read_message(
    ws: &mut tungstenite::WebSocket<Stream>,
) -> tungstenite::Result<Message> {
    let s = ws.get_mut();
    if s.lane.is_some() {
        match s.lane_next() {
            Ok(Some(msg)) => return Ok(msg),
            Ok(None) => {}
            Err(e) => return Err(tungstenite::Error::Io(e)),
        }
    }
    ws.read()
}

impl Stream {
    /// The lane's next message, reading the socket when the front frame is
    /// not whole yet. `Ok(None)`: the front is tungstenite's (or an error
    /// or the end, deferred to tungstenite's read). `Err`: only WouldBlock.
    #[inline]
    fn lane_next(&mut self) -> io::Result<Option<Message>> {
        for _ in 0..LANE_FILLS {
            let lane = self.lane.as_mut().expect("lane");
            if let Some(msg) = lane.take() {
                return Ok(Some(msg));
            }
            if lane.front() != Front::Incomplete {
                return Ok(None);
            }
            match self.fill() {
                Ok(0) => {
                    self.lane.as_mut().expect("lane").defer(Ok(0));
                    return Ok(None);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) => {
                    self.lane.as_mut().expect("lane").defer(Err(e));
                    return Ok(None);
                }
            }
        }
        // A frame growing over many reads: tungstenite's read goes on from here.
        Ok(None)
    }

    /// One read from the socket into the lane's buffer, through the
    /// follower. `Ok(0)`: the end.
    fn fill(&mut self) -> io::Result<usize> {
        let (Some(f), Some(lane)) = (&mut self.frames, &mut self.lane) else {
            unreachable!("a lane follows frames");
        };
        f.check()?;
        let read = match &mut self.inner {
            Inner::Tcp(tcp) => {
                let n = socket2::SockRef::from(&*tcp).recv(lane.spare_uninit());
                if let Ok(n) = n {
                    lane.commit(n);
                    self.bytes_read += n as u64;
                } else {
                    lane.commit(0);
                }
                n
            }
            Inner::Tls(_) => {
                let spare = lane.spare();
                read_inner(&mut self.inner, &mut self.bytes_read, spare)
            }
        };
        let outcome = match read {
            Ok(0) => Ok((0, 0)),
            Ok(n) => f.filter(&mut lane.last_read()[..n]).map(|kept| (n, kept)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((n, kept)) => {
                lane.filled(kept);
                Ok(n)
            }
            Err(e) => {
                lane.filled(0);
                Err(e)
            }
        }
    }

    /// tungstenite's read with the lane on: only bytes of the frames that
    /// are its own; `WouldBlock` when the next frame is the lane's.
    fn read_for_tungstenite(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let lane = self.lane.as_mut().expect("lane");
        if let Some(outcome) = lane.take_deferred() {
            return outcome;
        }
        for _ in 0..LANE_FILLS {
            let lane = self.lane.as_mut().expect("lane");
            match lane.front() {
                Front::Fast { .. } => return Err(io::ErrorKind::WouldBlock.into()),
                Front::Slow if lane.slow_buffered() => return Ok(lane.give_slow(buf)),
                Front::Slow => {
                    // The rest of a frame of tungstenite's: straight into its buffer.
                    let Some(f) = &mut self.frames else {
                        unreachable!("a lane follows frames")
                    };
                    f.check()?;
                    // Not past the frame's end: what follows may be the lane's.
                    let cap = lane.slow_left().min(buf.len());
                    let n = read_inner(&mut self.inner, &mut self.bytes_read, &mut buf[..cap])?;
                    if n == 0 {
                        return Ok(0);
                    }
                    let kept = f.filter(&mut buf[..n])?;
                    let mine = lane.keep_slow(buf, kept);
                    if mine > 0 {
                        return Ok(mine);
                    }
                }
                Front::Incomplete => {
                    if self.fill()? == 0 {
                        return Ok(0);
                    }
                }
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// A read through the frame follower (after the upgrade).
    #[inline(never)]
    fn read_followed(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(f) = &mut self.frames else {
            return read_inner(&mut self.inner, &mut self.bytes_read, buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            // Inflated messages (and what followed them) first.
            let n = f.take_ready(buf);
            if n > 0 {
                return Ok(n);
            }
            f.check()?;
            let n = read_inner(&mut self.inner, &mut self.bytes_read, buf)?;
            if n == 0 {
                return Ok(0);
            }
            let kept = f.filter(&mut buf[..n])?;
            if kept > 0 {
                return Ok(kept);
            }
            // All of it taken (a compressed message's frames) or waiting in
            // the follower: hand that up, or read on until the socket would block.
        }
    }
}

/// Reads one read of the lane's (or tungstenite's through it) may make in a
/// row before it yields: a bound on a frame that trickles in, as on any
/// loop; the caller's next read goes on where it stopped. Far above what a
/// frame below `lane::FAST_BELOW` needs at the smallest read size a hub uses.
const LANE_FILLS: usize = 64;

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
