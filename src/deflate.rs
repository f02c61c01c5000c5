//! Deflate layer: permessage-deflate (RFC 7692) on stock tungstenite.
//!
//! Owns the options ([`Compression`]), the offer and the check of the
//! server's answer (7.1), the inflater the frame follower (`wire`) feeds with
//! the payload of compressed messages, and the deflater outgoing messages pass.
//!
//! tungstenite refuses any frame with RSV1 set, so it never sees one:
//! - inbound, `wire` takes the frames of a compressed message off the byte
//!   stream, inflates their payload here as it arrives (bounded by
//!   `max_message_size` in both compressed and inflated bytes, so a bomb
//!   stops after inflating at most the limit), and hands tungstenite one plain
//!   frame with the whole message, RSV1 clear. Control frames between its
//!   fragments, and uncompressed messages, pass untouched;
//! - outbound, a text or binary message at or over the threshold is deflated
//!   *before* tungstenite frames it, and written as a `Message::Frame` with RSV1
//!   set: tungstenite masks it as any client frame. Deflating before framing
//!   avoids unmasking and re-masking every byte, and keeps tungstenite's
//!   write buffer, WouldBlock handling and flush exactly as for other frames.
//!
//! Must not touch the socket or tungstenite's state. Memory: the inflater
//! (about 40 KiB: zlib's state and a 32 KiB window, less with a smaller
//! `server_max_window_bits`) exists from the upgrade on; the deflater (about
//! 256 KiB at 15 bits, zlib's window and hash chains at memLevel 8) only from
//! the first message compressed. Both are kept for the connection's life: with
//! context takeover that is required, without it they are reset per message.

use std::fmt;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::Frame;

use crate::wire::WireError;

/// The name of the extension.
pub(crate) const NAME: &str = "permessage-deflate";
/// The bytes a sender strips from the end of each compressed message (RFC 7692 7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
/// Room kept in front of an inflated message for its frame header.
pub(crate) const HEADER_ROOM: usize = 10;

/// permessage-deflate (RFC 7692) options, and what was agreed.
///
/// Given to [`Client::compression`](crate::Client::compression) it says what
/// to offer and how to compress; [`WebSocket::compression`](crate::WebSocket::compression)
/// returns the agreed parameters in the same type (window bits as agreed, the
/// no-context-takeover flags as the server answered).
///
/// # Examples
///
/// ```
/// use wsapp::Compression;
///
/// let c = Compression::default().threshold(1024).level(1);
/// assert_eq!((c.threshold, c.level), (1024, 1));
/// let client = wsapp::Client::new("ws://127.0.0.1:9001/").compression(c);
/// # let _ = client;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compression {
    /// zlib compression level for outgoing messages, 0 (store) to 9 (best).
    /// Defaults to 6, zlib's default (as Node's `ws`).
    pub level: u32,
    /// Outgoing text and binary messages shorter than this many bytes are sent
    /// uncompressed. Defaults to 256.
    pub threshold: usize,
    /// Ask the server to reset its compressor after every message (less memory
    /// for it, worse ratio). Defaults to `false`.
    pub server_no_context_takeover: bool,
    /// Reset the client's compressor after every message, and tell the server.
    /// Defaults to `false`.
    pub client_no_context_takeover: bool,
    /// The largest window the server may compress with, 8 to 15 (asked for
    /// when under 15). Defaults to 15.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with, 9 to 15. Defaults to 15;
    /// the offer always says the client can honour a smaller one. If the server
    /// asks for 8 (zlib cannot compress raw deflate with a 256-byte window),
    /// the client sends every message uncompressed, as RFC 7692 allows.
    pub client_max_window_bits: u8,
}

impl Default for Compression {
    fn default() -> Compression {
        Compression {
            level: 6,
            threshold: 256,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl Compression {
    /// Sets [`level`](Compression::level) (0 to 9; checked by `connect`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wsapp::Compression::default().level(1).level, 1);
    /// ```
    pub fn level(mut self, level: u32) -> Compression {
        self.level = level;
        self
    }

    /// Sets [`threshold`](Compression::threshold), in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wsapp::Compression::default().threshold(0).threshold, 0);
    /// ```
    pub fn threshold(mut self, bytes: usize) -> Compression {
        self.threshold = bytes;
        self
    }

    /// Sets [`server_no_context_takeover`](Compression::server_no_context_takeover).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Compression::default().server_no_context_takeover(true);
    /// assert!(c.server_no_context_takeover);
    /// ```
    pub fn server_no_context_takeover(mut self, on: bool) -> Compression {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`client_no_context_takeover`](Compression::client_no_context_takeover).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Compression::default().client_no_context_takeover(true);
    /// assert!(c.client_no_context_takeover);
    /// ```
    pub fn client_no_context_takeover(mut self, on: bool) -> Compression {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`server_max_window_bits`](Compression::server_max_window_bits) (8 to 15).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wsapp::Compression::default().server_max_window_bits(10).server_max_window_bits, 10);
    /// ```
    pub fn server_max_window_bits(mut self, bits: u8) -> Compression {
        self.server_max_window_bits = bits;
        self
    }

    /// Sets [`client_max_window_bits`](Compression::client_max_window_bits) (9 to 15).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wsapp::Compression::default().client_max_window_bits(9).client_max_window_bits, 9);
    /// ```
    pub fn client_max_window_bits(mut self, bits: u8) -> Compression {
        self.client_max_window_bits = bits;
        self
    }

    /// Refuses options out of range, before anything is sent.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.level > 9 {
            return Err(format!(
                "compression level {} is out of range: use 0 (store) to 9 (best)",
                self.level
            ));
        }
        if !(8..=15).contains(&self.server_max_window_bits) {
            return Err(format!(
                "server_max_window_bits {} is out of range: use 8 to 15",
                self.server_max_window_bits
            ));
        }
        if !(9..=15).contains(&self.client_max_window_bits) {
            return Err(format!(
                "client_max_window_bits {} is out of range: use 9 to 15 (zlib cannot \
                 compress raw deflate with 8)",
                self.client_max_window_bits
            ));
        }
        Ok(())
    }

    /// The `Sec-WebSocket-Extensions` element offered.
    pub(crate) fn offer(&self) -> String {
        let mut s = NAME.to_string();
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        s.push_str("; client_max_window_bits");
        if self.client_max_window_bits < 15 {
            s.push_str(&format!("={}", self.client_max_window_bits));
        }
        s
    }

    /// Checks the server's answer to [`offer`](Compression::offer) (RFC 7692
    /// 7.1): its parameters, each at most once, with valid values. Returns what
    /// was agreed.
    pub(crate) fn agree(&self, params: &[(String, Option<String>)]) -> Result<Compression, String> {
        let mut agreed = Compression {
            server_no_context_takeover: false,
            ..*self
        };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in params {
            if seen.contains(&name.as_str()) {
                return Err(format!(
                    "the server's {NAME} answer has {name} twice (RFC 7692 7.1: the connection must fail)"
                ));
            }
            seen.push(name);
            let bits = |lo: u8| -> Result<u8, String> {
                let v = value.as_deref().unwrap_or_default();
                match v.parse::<u8>() {
                    Ok(b) if (lo..=15).contains(&b) && !v.starts_with('0') => Ok(b),
                    _ => Err(format!(
                        "the server's {NAME} answer has {name}={v:?}; RFC 7692 7.1.2 allows 8 to 15"
                    )),
                }
            };
            match name.as_str() {
                "server_no_context_takeover" | "client_no_context_takeover" if value.is_some() => {
                    return Err(format!(
                        "the server's {NAME} answer gives {name} a value; it takes none (RFC 7692 7.1.1)"
                    ))
                }
                "server_no_context_takeover" => agreed.server_no_context_takeover = true,
                "client_no_context_takeover" => agreed.client_no_context_takeover = true,
                "server_max_window_bits" => {
                    let b = bits(8)?;
                    if b > self.server_max_window_bits {
                        return Err(format!(
                            "the server's {NAME} answer has server_max_window_bits={b}, over the {} \
                             the client asked for (RFC 7692 7.1.2.1)",
                            self.server_max_window_bits
                        ));
                    }
                    agreed.server_max_window_bits = b;
                }
                "client_max_window_bits" => {
                    // Offered always; the answer must give a value.
                    let b = bits(8)?;
                    if b > self.client_max_window_bits {
                        return Err(format!(
                            "the server's {NAME} answer has client_max_window_bits={b}, over the {} \
                             offered (RFC 7692 7.1.2.2)",
                            self.client_max_window_bits
                        ));
                    }
                    agreed.client_max_window_bits = b;
                }
                other => {
                    return Err(format!(
                        "the server's {NAME} answer has an unknown parameter {other:?} (RFC 7692 7.1: \
                         the connection must fail)"
                    ))
                }
            }
        }
        Ok(agreed)
    }
}

/// What the server's answer agreed, for the offer in `request`: `None` when
/// nothing was offered or the server declined. Fails on a malformed answer
/// or more than one permessage-deflate element.
pub(crate) fn agree(
    request: &crate::handshake::UpgradeRequest,
    accepted: &[crate::handshake::ExtensionAnswer],
) -> crate::Result<Option<Compression>> {
    let fail = |problem: String| crate::Error::Extension {
        offered: request.extensions.clone(),
        problem,
    };
    let mut answers = accepted.iter().filter(|a| a.name == NAME);
    let (Some(offer), Some(answer)) = (request.compression.as_ref(), answers.next()) else {
        return Ok(None);
    };
    if answers.next().is_some() {
        return Err(fail(format!(
            "the server accepted {NAME} more than once (RFC 7692 7: the connection must fail)"
        )));
    }
    offer.agree(&answer.params).map(Some).map_err(fail)
}

/// Compression counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) messages: u64,
    pub(crate) wire: u64,
    pub(crate) plain: u64,
}

/// Inflates the compressed messages `wire` takes off the stream.
pub(crate) struct Inflater {
    z: Decompress,
    reset_each: bool,
    max_message: usize,
    pub(crate) max_frame: u64,
    /// The message being inflated: [`HEADER_ROOM`] bytes, then its payload.
    pub(crate) msg: Vec<u8>,
    opcode: u8,
    /// Compressed bytes of this message so far.
    wire: usize,
    /// The deflate stream ended (BFINAL): anything after it in the message is ignored.
    ended: bool,
    pub(crate) counts: Counts,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("reset_each", &self.reset_each)
            .field("max_message", &self.max_message)
            .field("counts", &self.counts)
            .finish()
    }
}

impl Inflater {
    pub(crate) fn new(agreed: &Compression, max_message: usize, max_frame: usize) -> Inflater {
        Inflater {
            z: Decompress::new_with_window_bits(false, agreed.server_max_window_bits.max(9)),
            reset_each: agreed.server_no_context_takeover,
            max_message,
            max_frame: max_frame as u64,
            msg: Vec::new(),
            opcode: 0,
            wire: 0,
            ended: false,
            counts: Counts::default(),
        }
    }

    /// Starts a message with `opcode` (text or binary).
    pub(crate) fn begin(&mut self, opcode: u8) {
        self.opcode = opcode;
        self.wire = 0;
        self.ended = false;
        self.msg.clear();
        self.msg.resize(HEADER_ROOM, 0);
    }

    fn too_long(&self, size: usize) -> WireError {
        WireError::Capacity {
            size,
            max: self.max_message,
        }
    }

    /// Inflates the next compressed bytes of the message.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<(), WireError> {
        self.wire += input.len();
        if self.wire > self.max_message {
            return Err(self.too_long(self.wire));
        }
        self.inflate(input)
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<(), WireError> {
        while !input.is_empty() && !self.ended {
            let have = self.msg.len() - HEADER_ROOM;
            // At most one byte over the limit is ever inflated.
            let room = self.max_message.saturating_add(1).saturating_sub(have);
            if room == 0 {
                return Err(self.too_long(have));
            }
            if self.msg.capacity() - self.msg.len() < 1024 {
                let want = input.len().saturating_mul(4).clamp(16 << 10, 1 << 20);
                self.msg.reserve(want.min(room));
            }
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = if self.msg.capacity() - self.msg.len() > room {
                // Near the limit: inflate into exactly `room` bytes.
                let at = self.msg.len();
                self.msg.resize(at + room, 0);
                let r = self
                    .z
                    .decompress(input, &mut self.msg[at..], FlushDecompress::None);
                let made = (self.z.total_out() - out0) as usize;
                self.msg.truncate(at + made);
                r
            } else {
                self.z
                    .decompress_vec(input, &mut self.msg, FlushDecompress::None)
            }
            .map_err(|_| WireError::Inflate)?;
            let used = (self.z.total_in() - in0) as usize;
            let made = (self.z.total_out() - out0) as usize;
            input = &input[used..];
            if self.msg.len() - HEADER_ROOM > self.max_message {
                return Err(self.too_long(self.msg.len() - HEADER_ROOM));
            }
            match status {
                Status::StreamEnd => self.ended = true,
                _ if used == 0 && made == 0 => return Err(WireError::Inflate),
                _ => {}
            }
        }
        Ok(())
    }

    /// Ends the message: inflates the tail, writes the frame header in front of
    /// the payload and returns the frame's start in `msg`.
    pub(crate) fn finish(&mut self) -> Result<usize, WireError> {
        // An empty payload is an empty message: the tail alone would open a
        // stored block that the next message's bytes would fill.
        if !self.ended && self.wire > 0 {
            // Flush what zlib holds back: the tail of the sync flush.
            self.inflate(&TAIL)?;
            loop {
                // Output held back for want of room (rare): drain it.
                let out0 = self.z.total_out();
                if self.msg.capacity() == self.msg.len() {
                    self.msg.reserve(16 << 10);
                }
                self.z
                    .decompress_vec(&[], &mut self.msg, FlushDecompress::Sync)
                    .map_err(|_| WireError::Inflate)?;
                if self.msg.len() - HEADER_ROOM > self.max_message {
                    return Err(self.too_long(self.msg.len() - HEADER_ROOM));
                }
                if self.z.total_out() == out0 {
                    break;
                }
            }
        }
        let len = self.msg.len() - HEADER_ROOM;
        let mut head = [0u8; HEADER_ROOM];
        head[0] = 0x80 | self.opcode;
        let h = if len < 126 {
            head[1] = len as u8;
            2
        } else if len < 65536 {
            head[1] = 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        let start = HEADER_ROOM - h;
        self.msg[start..HEADER_ROOM].copy_from_slice(&head[..h]);
        self.counts.messages += 1;
        self.counts.wire += self.wire as u64;
        self.counts.plain += len as u64;
        if self.reset_each || self.ended {
            self.z.reset(false);
        }
        Ok(start)
    }
}

/// Deflates outgoing messages; created on the first message to compress.
pub(crate) struct Deflater {
    z: Option<Compress>,
    agreed: Compression,
    pub(crate) counts: Counts,
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("agreed", &self.agreed)
            .field("counts", &self.counts)
            .finish()
    }
}

impl Deflater {
    pub(crate) fn new(agreed: Compression) -> Deflater {
        Deflater {
            z: None,
            agreed,
            counts: Counts::default(),
        }
    }

    /// What was agreed.
    pub(crate) fn agreed(&self) -> &Compression {
        &self.agreed
    }

    /// A compressed frame for a text or binary message, or `None` to send it
    /// as it is (under the threshold, or a window of 8 bits agreed).
    pub(crate) fn frame(&mut self, op: OpData, data: &[u8]) -> Option<Frame> {
        let a = self.agreed;
        if data.len() < a.threshold || a.client_max_window_bits < 9 {
            return None;
        }
        let z = self.z.get_or_insert_with(|| {
            Compress::new_with_window_bits(
                flate2::Compression::new(a.level),
                false,
                a.client_max_window_bits,
            )
        });
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let start = z.total_in();
        loop {
            let done = (z.total_in() - start) as usize;
            // Compressing into memory cannot fail short of a bug in zlib;
            // the message was not taken yet if it does on the first call.
            z.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
                .ok()?;
            if (z.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // Nothing new to flush (an empty message): an empty block, as
            // RFC 7692 7.2.3.6 has it; a bare tail would open a stored block.
            out.push(0);
        }
        if a.client_no_context_takeover {
            z.reset();
        }
        self.counts.messages += 1;
        self.counts.plain += data.len() as u64;
        self.counts.wire += out.len() as u64;
        let mut frame = Frame::message(out, OpCode::Data(op), true);
        frame.header_mut().rsv1 = true;
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Vec<(String, Option<String>)> {
        s.split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (p.to_string(), None),
            })
            .collect()
    }

    #[test]
    fn deflate_offer_names_what_is_asked() {
        assert_eq!(
            Compression::default().offer(),
            "permessage-deflate; client_max_window_bits"
        );
        let c = Compression::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(10)
            .client_max_window_bits(12);
        assert_eq!(
            c.offer(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
    }

    #[test]
    fn deflate_answers_are_checked() {
        let c = Compression::default();
        let a = c.agree(&params("")).unwrap();
        assert_eq!(a, c);
        let a = c
            .agree(&params(
                "server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=10",
            ))
            .unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        assert_eq!(
            (a.server_max_window_bits, a.client_max_window_bits),
            (9, 10)
        );
        for (bad, says) in [
            ("x", "unknown parameter"),
            ("server_max_window_bits=7", "allows 8 to 15"),
            ("server_max_window_bits=16", "allows 8 to 15"),
            ("server_max_window_bits", "allows 8 to 15"),
            ("server_max_window_bits=010", "allows 8 to 15"),
            ("client_max_window_bits", "allows 8 to 15"),
            ("client_max_window_bits=abc", "allows 8 to 15"),
            ("server_no_context_takeover=1", "takes none"),
            (
                "client_no_context_takeover; client_no_context_takeover",
                "twice",
            ),
        ] {
            let e = c.agree(&params(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let small = Compression::default().client_max_window_bits(10);
        assert!(small.agree(&params("client_max_window_bits=12")).is_err());
        let asked = Compression::default().server_max_window_bits(10);
        assert!(asked.agree(&params("server_max_window_bits=11")).is_err());
        assert!(Compression::default().level(10).validate().is_err());
        assert!(Compression::default()
            .client_max_window_bits(8)
            .validate()
            .is_err());
        assert!(Compression::default().validate().is_ok());
    }

    fn round_trip(agreed: Compression, msgs: &[Vec<u8>]) {
        let mut d = Deflater::new(agreed);
        let mut i = Inflater::new(&agreed, 1 << 20, 1 << 20);
        for m in msgs {
            let f = d.frame(OpData::Binary, m).expect("compressed");
            assert!(f.header().rsv1);
            i.begin(2);
            for chunk in f.payload().chunks(7) {
                i.feed(chunk).unwrap();
            }
            let start = i.finish().unwrap();
            let frame = &i.msg[start..];
            assert_eq!(frame[0], 0x82);
            assert!(frame.ends_with(m));
        }
    }

    #[test]
    fn deflate_round_trips_with_and_without_takeover() {
        let msgs: Vec<Vec<u8>> = (0..200)
            .map(|n| format!("{{\"n\":{n},\"pad\":\"{}\"}}", "ab".repeat(n % 300)).into_bytes())
            .chain([vec![], vec![9u8; 100_000]])
            .collect();
        let c = Compression::default().threshold(0);
        round_trip(c, &msgs);
        round_trip(
            c.server_no_context_takeover(true)
                .client_no_context_takeover(true),
            &msgs,
        );
        round_trip(c.client_max_window_bits(9).server_max_window_bits(9), &msgs);
    }

    #[test]
    fn deflate_threshold_and_window_8_send_plain() {
        let mut d = Deflater::new(Compression::default());
        assert!(d.frame(OpData::Text, b"short").is_none());
        assert!(d.frame(OpData::Text, &[b'a'; 300]).is_some());
        let mut d = Deflater::new(Compression::default().client_max_window_bits(8));
        assert!(d.frame(OpData::Text, &[b'a'; 300]).is_none());
    }

    #[test]
    fn deflate_bomb_stops_at_the_limit() {
        let mut d = Deflater::new(Compression::default().threshold(0));
        let bomb = d.frame(OpData::Binary, &vec![0u8; 8 << 20]).unwrap();
        let limit = 100_000;
        let mut i = Inflater::new(&Compression::default(), limit, usize::MAX);
        i.begin(2);
        let mut err = None;
        for chunk in bomb.payload().chunks(1000) {
            if let Err(e) = i.feed(chunk) {
                err = Some(e);
                break;
            }
        }
        assert!(
            matches!(err, Some(WireError::Capacity { max, .. }) if max == limit),
            "{err:?}"
        );
        assert!(i.msg.len() - HEADER_ROOM <= limit + 1, "{}", i.msg.len());
    }

    #[test]
    fn deflate_garbage_is_refused() {
        let mut i = Inflater::new(&Compression::default(), 1 << 20, 1 << 20);
        i.begin(1);
        let r = i.feed(&[0xff; 64]).and_then(|()| i.finish().map(drop));
        assert_eq!(r, Err(WireError::Inflate));
    }
}
