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

use std::fmt;
use std::io;

use crate::deflate::{Compression, Counts, Inflater};
use crate::error::{Error, Result};
use crate::CloseFrame;

/// Longest control frame payload (RFC 6455 5.5).
const MAX_CONTROL: usize = 125;
/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;
const OP_CLOSE: u8 = 0x8;

/// Whether an endpoint may put `code` in a close frame, and so whether a peer's
/// close with it is valid (RFC 6455 7.4.1, 7.4.2): 1000-1003, 1007-1014 (1012-1014
/// registered with IANA since), 3000-4999. Never 1004 (reserved), 1005, 1006
/// or 1015 (for reports only), 1016-2999 (reserved) or outside 1000-4999.
pub(crate) const fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Checks a close frame before it is sent: refuses a code an endpoint may not
/// send and a reason over 123 bytes.
pub(crate) fn check_close(code: u16, reason: &str) -> Result<()> {
    if !close_code_allowed(code) {
        return Err(Error::config(format!(
            "close code {code} may not be sent (RFC 6455 7.4 allows 1000-1003, 1007-1014 \
             and 3000-4999; 1000 is a normal close); nothing was sent"
        )));
    }
    if reason.len() > MAX_CONTROL - 2 {
        return Err(Error::config(format!(
            "close reason is {} bytes of UTF-8, a close frame holds at most 123 (RFC 6455 5.5); \
             nothing was sent: shorten it",
            reason.len()
        )));
    }
    Ok(())
}

/// The code tungstenite is shown for a peer's close code. tungstenite refuses
/// 1014, which RFC 6455 allows: it becomes 1000, which tungstenite then echoes
/// in its reply (5.5.1: the reply "typically" echoes the code; 1000 is a fair
/// answer to "bad gateway"). Every other code is shown as sent. A replacement
/// keeps the code's high byte, so only the second byte is rewritten (and a
/// code split across two reads needs nothing held back).
const fn shown_code(code: u16) -> u16 {
    match code {
        1014 => 1000,
        c => c,
    }
}
const _: () = assert!(shown_code(1014) >> 8 == 1014 >> 8);

/// A frame the layer refuses. It travels up through tungstenite inside an
/// `io::Error`; [`WireError::find`] gets it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The peer broke RFC 6455 (or RFC 7692) where tungstenite does not check: answer 1002.
    Protocol(&'static str),
    /// A compressed message over `max_message_size` (compressed or inflated): answer 1009.
    Capacity { size: usize, max: usize },
    /// A compressed message that is not a valid deflate stream: answer 1007.
    Inflate,
}

impl WireError {
    /// The `WireError` inside a tungstenite error, if it is one.
    pub(crate) fn find(e: &tungstenite::Error) -> Option<WireError> {
        match e {
            tungstenite::Error::Io(io) => io.get_ref()?.downcast_ref::<WireError>().copied(),
            _ => None,
        }
    }

    /// The close code the peer is owed.
    pub(crate) fn close_code(self) -> tungstenite::protocol::frame::coding::CloseCode {
        use tungstenite::protocol::frame::coding::CloseCode;
        match self {
            WireError::Protocol(_) => CloseCode::Protocol,
            WireError::Capacity { .. } => CloseCode::Size,
            WireError::Inflate => CloseCode::Invalid,
        }
    }

    fn to_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Protocol(what) => f.write_str(what),
            WireError::Capacity { size, max } => {
                write!(f, "compressed message of at least {size} bytes, over {max}")
            }
            WireError::Inflate => f.write_str("compressed message is not a valid deflate stream"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        match e {
            WireError::Protocol(what) => Error::Frame(what.to_string()),
            WireError::Capacity { size, max } => {
                Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
                    size,
                    max_size: max,
                })
            }
            WireError::Inflate => Error::Compression(
                "a compressed message is not a valid deflate stream (RFC 7692 7.2.2)".into(),
            ),
        }
    }
}

/// The peer's close frame as it was sent: code and reason bytes.
#[derive(Clone)]
pub(crate) struct PeerClose {
    payload: [u8; MAX_CONTROL],
    len: u8,
}

impl Default for PeerClose {
    fn default() -> PeerClose {
        PeerClose {
            payload: [0; MAX_CONTROL],
            len: 0,
        }
    }
}

impl fmt::Debug for PeerClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClose")
            .field("code", &self.code())
            .field("reason", &String::from_utf8_lossy(self.reason()))
            .finish()
    }
}

impl PeerClose {
    /// The status code; `None` for a close without payload (or a 1-byte one).
    pub(crate) fn code(&self) -> Option<u16> {
        (self.len >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// The reason's bytes.
    pub(crate) fn reason(&self) -> &[u8] {
        self.payload.get(2..self.len as usize).unwrap_or(&[])
    }
}

/// What to report for the peer's close: the frame as the peer sent it
/// (`recorded`), rather than what tungstenite returned (`seen`: its substitute
/// `1002 "Protocol violation"` for an invalid code, or the code this layer
/// rewrote), and whether its code is valid.
pub(crate) fn reported_close(
    recorded: Option<&PeerClose>,
    seen: Option<CloseFrame>,
) -> (Option<CloseFrame>, bool) {
    let Some(rec) = recorded else {
        // Not followed (no frame layer): what tungstenite says.
        return (seen, true);
    };
    let Some(code) = rec.code() else {
        return (None, true);
    };
    let reason = String::from_utf8_lossy(rec.reason()).into_owned();
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    (Some(frame), close_code_allowed(code))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tungstenite::protocol::frame::coding::CloseCode;

    #[test]
    fn wire_close_codes_over_the_whole_u16_range() {
        let ranges = [(1000, 1003), (1007, 1014), (3000, 4999)];
        for code in 0..=u16::MAX {
            let expected = ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&code));
            assert_eq!(close_code_allowed(code), expected, "{code}");
            assert_eq!(check_close(code, "").is_ok(), expected, "{code}");
            // What tungstenite is shown: accepted exactly when the RFC allows
            // the code, and rewritten only in its low byte.
            let shown = shown_code(code);
            assert_eq!(CloseCode::from(shown).is_allowed(), expected, "{code}");
            assert_eq!(shown >> 8, code >> 8, "{code}");
        }
        for code in [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!close_code_allowed(code), "{code}");
        }
        for code in [1000, 1003, 1007, 1014, 3000, 4999] {
            assert!(close_code_allowed(code), "{code}");
        }
    }

    #[test]
    fn wire_close_reason_length() {
        assert!(check_close(1000, &"x".repeat(123)).is_ok());
        let err = check_close(1000, &"x".repeat(124)).unwrap_err();
        assert!(err.to_string().contains("124 bytes"), "{err}");
        // Counted in bytes of UTF-8, not characters.
        assert!(check_close(1000, &"é".repeat(61)).is_ok());
        assert!(check_close(1000, &"é".repeat(62)).is_err());
        let err = check_close(1005, "").unwrap_err();
        assert!(err.to_string().contains("1005"), "{err}");
    }

    // Frames as a server sends them.
    fn frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![first];
        let m = if mask.is_some() { 0x80 } else { 0 };
        let len = payload.len();
        if len < 126 {
            v.push(m | len as u8);
        } else if len < 65536 {
            v.push(m | 126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            v.push(m | 127);
            v.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match mask {
            Some(k) => {
                v.extend_from_slice(&k);
                v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => v.extend_from_slice(payload),
        }
        v
    }

    fn close(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        frame(0x88, None, &p)
    }

    /// Feeds `wire` to a fresh follower in chunks of the given sizes (cycled);
    /// returns what it handed up, the error that stopped it, and the follower.
    fn feed(wire: &[u8], chunks: &[usize]) -> (Vec<u8>, Option<io::Error>, Inbound) {
        let mut f = Inbound::default();
        let mut out = Vec::new();
        let mut at = 0;
        let mut sizes = chunks.iter().copied().filter(|&c| c > 0).cycle();
        while at < wire.len() {
            if let Err(e) = f.check() {
                return (out, Some(e), f);
            }
            let n = sizes.next().unwrap_or(wire.len()).min(wire.len() - at);
            let mut buf = wire[at..at + n].to_vec();
            at += n;
            match f.filter(&mut buf) {
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (out, Some(e), f),
            }
        }
        (out, f.check().err(), f)
    }

    /// Every chunking of small inputs: one byte, two, three, ..., the whole.
    fn all_splits(wire: &[u8], mut check: impl FnMut(&str, Vec<u8>, Option<io::Error>, Inbound)) {
        for size in 1..=wire.len().max(1) {
            let (out, err, f) = feed(wire, &[size]);
            check(&format!("chunks of {size}"), out, err, f);
        }
    }

    #[test]
    fn wire_data_frames_pass_unchanged_whatever_the_splits() {
        let mut wire = frame(0x81, None, b"hello");
        wire.extend(frame(0x82, None, &[7u8; 300])); // 2-byte length
        wire.extend(frame(0x82, None, &[8u8; 70_000])); // 8-byte length
        wire.extend(frame(0x89, None, b"ping"));
        wire.extend(frame(0x01, None, b"frag"));
        wire.extend(frame(0x80, None, b"ment"));
        for size in [1, 2, 3, 5, 7, 13, 64, 4096, wire.len()] {
            let (out, err, f) = feed(&wire, &[size]);
            assert!(err.is_none(), "{size}: {err:?}");
            assert!(out == wire, "chunks of {size}: output differs");
            assert!(f.peer_close().is_none());
        }
    }

    #[test]
    fn wire_close_ends_the_stream_and_is_recorded() {
        let mut wire = frame(0x81, None, b"before");
        wire.extend(close(1001, b"going away"));
        let end = wire.len();
        wire.extend(frame(0x81, None, b"after the close"));
        wire.extend(close(1000, b"twice"));
        all_splits(&wire, |how, out, err, f| {
            assert!(err.is_none(), "{how}: {err:?}");
            assert_eq!(out, wire[..end], "{how}");
            let rec = f.peer_close().expect(how);
            assert_eq!(rec.code(), Some(1001), "{how}");
            assert_eq!(rec.reason(), b"going away", "{how}");
        });
    }

    #[test]
    fn wire_close_without_payload() {
        let mut wire = frame(0x88, None, b"");
        wire.extend(frame(0x81, None, b"late"));
        all_splits(&wire, |how, out, err, f| {
            assert!(err.is_none(), "{how}");
            assert_eq!(out, [0x88, 0], "{how}");
            assert_eq!(f.peer_close().expect(how).code(), None, "{how}");
        });
    }

    #[test]
    fn wire_close_1014_is_shown_as_1000_and_recorded_as_sent() {
        let wire = close(1014, b"bad gateway");
        let mut shown = wire.clone();
        shown[2..4].copy_from_slice(&1000u16.to_be_bytes());
        all_splits(&wire, |how, out, err, f| {
            assert!(err.is_none(), "{how}");
            assert_eq!(out, shown, "{how}");
            let rec = f.peer_close().expect(how);
            assert_eq!(rec.code(), Some(1014), "{how}");
            assert_eq!(rec.reason(), b"bad gateway", "{how}");
            let (frame, valid) = reported_close(Some(rec), None);
            let frame = frame.unwrap();
            assert!(valid);
            assert_eq!(u16::from(frame.code), 1014);
            assert_eq!(frame.reason.as_str(), "bad gateway");
        });
    }

    #[test]
    fn wire_invalid_codes_and_the_peers_own_1002_are_told_apart() {
        // tungstenite's substitute looks like this; the record says what was sent.
        let seen = Some(CloseFrame {
            code: CloseCode::Protocol,
            reason: "Protocol violation".into(),
        });
        for (code, reason, valid) in [
            (999u16, &b"bad"[..], false),
            (1005, b"", false),
            (1002, b"Protocol violation", true),
        ] {
            let (_, err, f) = feed(&close(code, reason), &[1]);
            assert!(err.is_none());
            let (frame, ok) = reported_close(f.peer_close(), seen.clone());
            let frame = frame.unwrap();
            assert_eq!(ok, valid, "{code}");
            assert_eq!(u16::from(frame.code), code);
            assert_eq!(frame.reason.as_bytes(), reason);
        }
    }

    #[test]
    fn wire_length_with_top_bit_is_refused_after_the_frames_before_it() {
        let good = frame(0x81, None, b"good");
        let mut wire = good.clone();
        wire.extend_from_slice(&[0x82, 127]);
        wire.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
        wire.extend_from_slice(b"12345");
        all_splits(&wire, |how, out, err, f| {
            let err = err.unwrap_or_else(|| panic!("{how}: not refused"));
            // The frames before it pass; of the bad header, at most the bytes
            // of it that came in earlier reads (tungstenite waits for the rest).
            assert_eq!(out[..good.len()], good, "{how}");
            assert!(out.len() < good.len() + 10, "{how}: {out:?}");
            let inner = err.get_ref().and_then(|e| e.downcast_ref::<WireError>());
            assert!(
                matches!(inner, Some(WireError::Protocol(m)) if m.contains("most significant")),
                "{how}: {err:?}"
            );
            assert!(f.check().is_err(), "{how}: later reads must fail too");
        });
        // The largest length RFC 6455 allows is not refused here.
        let mut ok = vec![0x82, 127];
        ok.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        ok.extend_from_slice(b"abc");
        let (out, err, _) = feed(&ok, &[1]);
        assert!(err.is_none());
        assert_eq!(out, ok);
    }

    #[test]
    fn wire_masked_and_oversized_closes_are_left_to_tungstenite() {
        // Masked (a server must not mask): passed on whole, not taken as a close.
        let mut wire = frame(0x88, Some([1, 2, 3, 4]), &[0x03, 0xf6, b'x']);
        wire.extend(frame(0x81, None, b"next"));
        all_splits(&wire, |how, out, err, f| {
            assert!(err.is_none(), "{how}");
            assert_eq!(out, wire, "{how}");
            assert!(f.peer_close().is_none(), "{how}");
        });
        // A close over 125 bytes: tungstenite refuses it.
        let mut wire = close(1000, &[b'r'; 200]);
        wire.extend(frame(0x81, None, b"next"));
        let (out, err, f) = feed(&wire, &[7]);
        assert!(err.is_none());
        assert_eq!(out, wire);
        assert!(f.peer_close().is_none());
    }

    #[test]
    fn wire_data_after_close_in_a_later_read_would_block() {
        let mut f = Inbound::default();
        let mut c = close(1000, b"");
        assert_eq!(f.filter(&mut c).unwrap(), 4);
        let mut late = frame(0x81, None, b"late");
        let err = f.filter(&mut late).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    /// A frame a server might send, for the property test.
    fn any_frame() -> impl Strategy<Value = Vec<u8>> {
        let payload = prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..130),
            1 => prop::collection::vec(any::<u8>(), 0..70_000),
        ];
        let code = prop_oneof![
            Just(1000u16),
            Just(1014),
            Just(999),
            Just(4000),
            any::<u16>()
        ];
        prop_oneof![
            6 => (prop::sample::select(vec![0x81u8, 0x82, 0x01, 0x80, 0x89, 0x8A]), payload)
                .prop_map(|(op, p)| frame(op, None, &p)),
            1 => (code, prop::collection::vec(any::<u8>(), 0..=123))
                .prop_map(|(c, r)| close(c, &r)),
            1 => (any::<[u8; 4]>(), prop::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(k, p)| frame(0x82, Some(k), &p)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any frame sequence, in any chunking: the output is the input up to
        /// the end of the first close frame (its code shown as tungstenite
        /// accepts it), and the close is recorded as sent.
        #[test]
        fn wire_prop_output_is_input_up_to_the_close(
            frames in prop::collection::vec(any_frame(), 1..12),
            chunks in prop::collection::vec(1usize..200, 1..8),
        ) {
            let wire: Vec<u8> = frames.concat();
            let (out, err, f) = feed(&wire, &chunks);
            prop_assert!(err.is_none());
            // Where the first close frame ends, and its code.
            let mut at = 0;
            let mut expected = wire.clone();
            let mut close_at = None;
            for fr in &frames {
                let end = at + fr.len();
                if fr[0] == 0x88 {
                    close_at = Some((at, end));
                    break;
                }
                at = end;
            }
            match close_at {
                Some((start, end)) => {
                    expected.truncate(end);
                    let hl = header_len(wire[start + 1]);
                    let code = u16::from_be_bytes([wire[start + hl], wire[start + hl + 1]]);
                    expected[start + hl + 1] = shown_code(code) as u8;
                    let rec = f.peer_close().expect("recorded");
                    prop_assert_eq!(rec.code(), Some(code));
                    prop_assert_eq!(rec.reason(), &wire[start + hl + 2..end]);
                }
                None => prop_assert!(f.peer_close().is_none()),
            }
            prop_assert!(out == expected, "output differs from the input");
        }
    }
}
