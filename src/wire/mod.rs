//! Frame layer below tungstenite: follows the server's byte stream frame by
//! frame, on the bytes each read brings and exactly as tungstenite will parse
//! them, and applies the RFC 6455 rules tungstenite does not.
//!
//! Owns: which close codes an endpoint may send and accept (7.4.1, 7.4.2) and
//! how long a close reason may be (5.5); the end of the peer's stream at its
//! close frame (bytes after it are discarded, 5.5.1); the peer's close frame as
//! it was sent ([`PeerClose`]), with codes RFC 6455 allows but tungstenite
//! refuses (1014) rewritten to one it accepts before it sees them; a 64-bit
//! frame length with its most significant bit set (5.2), refused with
//! [`WireError`]; with permessage-deflate, the frames of compressed messages
//! (taken off the stream and inflated by `deflate`, handed up as one plain
//! frame each) and RSV1 where RFC 7692 6.1 forbids it.
//!
//! Must not touch the socket (it sees what `Stream` read), tungstenite's state,
//! the handshake's bytes, or the frames the client sends. The cost per read is
//! a few branches per frame header; payload bytes are skipped by counting
//! unless they are compressed.

mod close;
mod error;
#[cfg(test)]
mod tests;

use std::io;

use crate::deflate::{Compression, Counts, Inflater};

use close::shown_code;
pub(crate) use close::{check_close, reported_close, PeerClose};
pub(crate) use error::WireError;

/// Longest control frame payload (RFC 6455 5.5).
const MAX_CONTROL: usize = 125;
/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;
const OP_CLOSE: u8 = 0x8;

/// The inbound frame follower: state across reads.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    /// Payload bytes of the current frame still to come; 0: a header is next.
    left: u64,
    /// The first bytes of a header split across reads.
    head: [u8; MAX_HEADER],
    head_len: u8,
    /// The current frame is a close frame: its payload goes into `close`.
    collecting: bool,
    /// The peer's close frame, once `closed` (being collected before).
    close: PeerClose,
    /// The peer's close frame has been seen: its stream has ended.
    closed: bool,
    /// A refused frame: every later read fails with it.
    failed: Option<WireError>,
    /// permessage-deflate, when negotiated.
    deflate: Option<Box<Inflate>>,
}

/// The follower's state for permessage-deflate: the frames of a compressed
/// message are taken off the stream (their bytes are not handed up) and its
/// inflated payload is handed up as one plain frame, from `out`.
#[derive(Debug)]
struct Inflate {
    inflater: Inflater,
    /// A compressed message is open (its first frame was seen, its last not yet).
    open: bool,
    /// An uncompressed fragmented message is open.
    plain_open: bool,
    /// The current frame belongs to the compressed message: its bytes are taken.
    taking: bool,
    /// The current frame is the message's last.
    fin: bool,
    /// The current (or split) header's bytes are taken, not handed up.
    head_taken: bool,
    /// Bytes to hand up after those a read leaves in place, from `out_at`.
    out: Vec<u8>,
    out_at: usize,
}

/// Most bytes `out` keeps allocated once drained (a large message's room is freed).
const OUT_KEEP: usize = 256 << 10;

impl Inbound {
    /// A follower that inflates compressed messages as `deflate` agreed.
    pub(crate) fn with_deflate(
        agreed: Option<&Compression>,
        max_message: usize,
        max_frame: usize,
    ) -> Inbound {
        Inbound {
            deflate: agreed.map(|a| {
                Box::new(Inflate {
                    inflater: Inflater::new(a, max_message, max_frame),
                    open: false,
                    plain_open: false,
                    taking: false,
                    fin: false,
                    head_taken: false,
                    out: Vec::new(),
                    out_at: 0,
                })
            }),
            ..Inbound::default()
        }
    }

    /// Inbound compression counters, when permessage-deflate was agreed.
    pub(crate) fn inflated(&self) -> Option<Counts> {
        self.deflate.as_ref().map(|d| d.inflater.counts)
    }

    /// Before a read: a refused frame fails every read from then on.
    #[inline]
    pub(crate) fn check(&self) -> io::Result<()> {
        match self.failed {
            Some(e) => Err(e.to_io()),
            None => Ok(()),
        }
    }

    /// Hands up bytes made ready by an earlier read (inflated messages and
    /// what followed them): 0 when there are none.
    #[inline]
    pub(crate) fn take_ready(&mut self, buf: &mut [u8]) -> usize {
        let Some(d) = &mut self.deflate else { return 0 };
        let ready = &d.out[d.out_at..];
        if ready.is_empty() {
            return 0;
        }
        let n = ready.len().min(buf.len());
        buf[..n].copy_from_slice(&ready[..n]);
        d.out_at += n;
        if d.out_at == d.out.len() {
            d.out.clear();
            d.out_at = 0;
            if d.out.capacity() > OUT_KEEP {
                d.out = Vec::new();
            }
        }
        n
    }

    /// The peer's close frame as sent, once it has been read whole.
    pub(crate) fn peer_close(&self) -> Option<&PeerClose> {
        self.closed.then_some(&self.close)
    }

    /// Runs on `buf`, the bytes a read just brought (not empty): returns how many
    /// of them to hand up to tungstenite (moved to the front), and may rewrite a
    /// close code in place. The frames of a compressed message are taken out;
    /// the plain frame it inflates to, and every byte after it in this read,
    /// go to the bytes [`take_ready`](Inbound::take_ready) hands up next, so
    /// `Ok(0)` says "nothing in place, try `take_ready`, then read again".
    /// Bytes after the peer's close frame are dropped; if nothing is left of a
    /// read after it, the error is `WouldBlock` (the socket is non-blocking),
    /// as `Ok(0)` would say EOF. A refused frame header ends the bytes handed
    /// up before it, and the next read fails (this one, if nothing is before it).
    #[inline]
    pub(crate) fn filter(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.closed {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len();
        let mut at = self.skim(buf);
        // The end of the bytes kept in place.
        let mut w = at;
        while at < n {
            if self.left > 0 {
                let take = self.left.min((n - at) as u64) as usize;
                if self.taking() {
                    let d = self.deflate.as_mut().expect("taking");
                    if let Err(e) = d.inflater.feed(&buf[at..at + take]) {
                        return self.refuse(e, w);
                    }
                } else {
                    if self.collecting {
                        self.collect(&mut buf[at..at + take]);
                    }
                    self.keep(buf, at, take, &mut w);
                }
                at += take;
                self.left -= take as u64;
            } else {
                let start = at;
                match self.header(buf, &mut at) {
                    Ok(done) => {
                        if !self.head_taken() {
                            self.keep(buf, start, at - start, &mut w);
                        }
                        if !done {
                            break;
                        }
                    }
                    Err(e) => return self.refuse(e, w),
                }
            }
            if self.left == 0 && self.taking() {
                if let Err(e) = self.end_taken_frame() {
                    return self.refuse(e, w);
                }
            }
            if self.collecting && self.left == 0 {
                self.collecting = false;
                self.closed = true;
                return Ok(w);
            }
        }
        Ok(w)
    }

    /// The common case in a tight loop: frames that pass untouched (RSV1
    /// clear, not a close, unmasked, no message of any kind being taken or
    /// collected), their bytes left in place, only their headers read.
    /// Returns where it stopped (at the first frame it does not take, or a
    /// header split across reads); `filter`'s general loop goes on from there.
    #[inline]
    fn skim(&mut self, buf: &[u8]) -> usize {
        if self.collecting || self.head_len != 0 {
            return 0;
        }
        let max_frame = match &self.deflate {
            None => u64::MAX,
            Some(d) if d.taking || d.open || d.plain_open || d.out_at < d.out.len() => return 0,
            Some(d) => d.inflater.max_frame,
        };
        let n = buf.len();
        // The rest of the current frame's payload.
        let mut at = self.left.min(n as u64) as usize;
        self.left -= at as u64;
        while n - at >= 2 {
            let (b0, b1) = (buf[at], buf[at + 1]);
            // FIN, RSV clear, unfragmented data (a fragment needs `plain_open`
            // kept) or a control frame other than close, unmasked; the rest
            // goes the long way.
            if b0 & 0xF0 != 0x80 || !matches!(b0 & 0x0F, 1 | 2 | 9 | 10) {
                return at;
            }
            let (len, head) = match b1 {
                0..=125 => (usize::from(b1), 2),
                126 if n - at >= 4 => (
                    usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                    4,
                ),
                _ => return at,
            };
            if len as u64 > max_frame {
                return at;
            }
            let end = at + head + len;
            if end > n {
                self.left = (end - n) as u64;
                return n;
            }
            at = end;
        }
        at
    }

    #[inline]
    fn taking(&self) -> bool {
        matches!(&self.deflate, Some(d) if d.taking)
    }

    #[inline]
    fn head_taken(&self) -> bool {
        matches!(&self.deflate, Some(d) if d.head_taken)
    }

    /// Hands up `buf[from..from + len]`: in place (moved down to `w`) unless
    /// bytes are waiting in `out`, which they must follow.
    #[inline]
    fn keep(&mut self, buf: &mut [u8], from: usize, len: usize, w: &mut usize) {
        if let Some(d) = &mut self.deflate {
            if d.out_at < d.out.len() {
                d.out.extend_from_slice(&buf[from..from + len]);
                return;
            }
        }
        if *w != from {
            buf.copy_within(from..from + len, *w);
        }
        *w += len;
    }

    /// A refused frame: the bytes before it are handed up, later reads fail.
    fn refuse(&mut self, e: WireError, w: usize) -> io::Result<usize> {
        self.failed = Some(e);
        let waiting = matches!(&self.deflate, Some(d) if d.out_at < d.out.len());
        if w > 0 || waiting {
            Ok(w)
        } else {
            Err(e.to_io())
        }
    }

    /// A frame of the compressed message has ended; on its last, the message
    /// goes to `out` as one plain frame.
    fn end_taken_frame(&mut self) -> std::result::Result<(), WireError> {
        let d = self.deflate.as_mut().expect("taking");
        d.taking = false;
        if !d.fin {
            return Ok(());
        }
        d.open = false;
        let start = d.inflater.finish()?;
        if d.out_at == d.out.len() {
            // Nothing waiting: the message's buffer becomes `out`.
            std::mem::swap(&mut d.out, &mut d.inflater.msg);
            d.out_at = start;
        } else {
            d.out.extend_from_slice(&d.inflater.msg[start..]);
        }
        d.inflater.msg.clear();
        if d.inflater.msg.capacity() > OUT_KEEP {
            d.inflater.msg = Vec::new();
        }
        Ok(())
    }

    /// Parses the header at `buf[*at..]`, after the bytes of it kept from the
    /// last read. `Ok(false)`: incomplete, its bytes so far are kept.
    #[inline]
    fn header(&mut self, buf: &[u8], at: &mut usize) -> std::result::Result<bool, WireError> {
        let rest = &buf[*at..];
        if self.head_len == 0 {
            if let Some(d) = &mut self.deflate {
                // Whether its bytes are handed up is known from the first one.
                d.head_taken = taken_by(d, rest[0]);
            }
            if rest.len() >= 2 {
                let need = header_len(rest[1]);
                if rest.len() >= need {
                    *at += need;
                    self.start_frame(&rest[..need])?;
                    return Ok(true);
                }
            }
        }
        // Split across reads: gather it byte by byte (once per read at most).
        while *at < buf.len() {
            self.head[self.head_len as usize] = buf[*at];
            self.head_len += 1;
            *at += 1;
            let have = self.head_len as usize;
            if have >= 2 && have == header_len(self.head[1]) {
                self.head_len = 0;
                let head = self.head;
                self.start_frame(&head[..have])?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn start_frame(&mut self, h: &[u8]) -> std::result::Result<(), WireError> {
        let len = match h[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(WireError::Protocol(
                        "frame length with the most significant bit set (RFC 6455 5.2)",
                    ));
                }
                len
            }
            n => u64::from(n),
        };
        self.left = len;
        let masked = h[1] & 0x80 != 0;
        match &mut self.deflate {
            Some(d) => d.start_frame(h[0], masked, len)?,
            None if h[0] & RSV1 != 0 => {
                return Err(WireError::Protocol(
                    "frame with RSV1 set, but permessage-deflate was not negotiated (RFC 6455 5.2)",
                ))
            }
            None => {}
        }
        // A masked or oversized close is tungstenite's to refuse: not collected.
        self.collecting = h[0] & 0x0F == OP_CLOSE && !masked && len <= MAX_CONTROL as u64;
        if self.collecting {
            self.close.len = 0;
        }
        Ok(())
    }

    /// Takes close payload bytes: records them as sent and shows tungstenite
    /// a code it accepts (see [`shown_code`]).
    fn collect(&mut self, bytes: &mut [u8]) {
        for b in bytes {
            let i = self.close.len as usize;
            self.close.payload[i] = *b;
            self.close.len += 1;
            if i == 1 {
                let code = u16::from_be_bytes([self.close.payload[0], *b]);
                *b = shown_code(code) as u8;
            }
        }
    }
}

const RSV1: u8 = 0x40;

/// Whether the frame whose first byte is `b0` is taken off the stream: it
/// has RSV1 set (a compressed message's first frame, or refused), or it
/// continues the open compressed message.
#[inline]
fn taken_by(d: &Inflate, b0: u8) -> bool {
    b0 & RSV1 != 0 || (d.open && b0 & 0x0F == 0)
}

impl Inflate {
    /// The frame rules of RFC 7692 6.1 and of fragmentation (RFC 6455 5.4)
    /// for the frame with first byte `b0`.
    fn start_frame(
        &mut self,
        b0: u8,
        masked: bool,
        len: u64,
    ) -> std::result::Result<(), WireError> {
        let op = b0 & 0x0F;
        let fin = b0 & 0x80 != 0;
        let taken = taken_by(self, b0);
        if b0 & RSV1 != 0 {
            if op >= 8 {
                return Err(WireError::Protocol(
                    "control frame with RSV1 set (RFC 7692 6.1: only a message's first frame has it)",
                ));
            }
            if op == 0 {
                return Err(WireError::Protocol(
                    "continuation frame with RSV1 set (RFC 7692 6.1: only a message's first frame has it)",
                ));
            }
            if op > 2 {
                return Err(WireError::Protocol(
                    "frame with a reserved opcode (RFC 6455 5.2)",
                ));
            }
            if self.open || self.plain_open {
                return Err(WireError::Protocol(
                    "a new message began inside a fragmented one (RFC 6455 5.4)",
                ));
            }
            self.open = true;
            self.inflater.begin(op);
        } else if !taken {
            if len > self.inflater.max_frame {
                return Err(WireError::Capacity {
                    size: usize::try_from(len).unwrap_or(usize::MAX),
                    max: self.inflater.max_frame as usize,
                });
            }
            if (1..8).contains(&op) && self.open {
                return Err(WireError::Protocol(
                    "a new message began inside a fragmented one (RFC 6455 5.4)",
                ));
            }
            match op {
                1 | 2 => self.plain_open = !fin,
                0 if fin => self.plain_open = false,
                _ => {}
            }
            return Ok(());
        }
        if masked {
            return Err(WireError::Protocol(
                "masked frame from the server (RFC 6455 5.1)",
            ));
        }
        if len > self.inflater.max_frame {
            return Err(WireError::Capacity {
                size: usize::try_from(len).unwrap_or(usize::MAX),
                max: self.inflater.max_frame as usize,
            });
        }
        self.taking = true;
        self.fin = fin;
        Ok(())
    }
}

/// Length of the header whose second byte is `b1`.
#[inline]
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}
