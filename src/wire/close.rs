//! The close frame's rules: which codes an endpoint may send and accept, how
//! long a reason may be, the code tungstenite is shown, and the peer's close
//! as it was sent ([`PeerClose`], [`reported_close`]). The follower in
//! `mod.rs` fills `PeerClose`; nothing here follows the stream.

use std::fmt;

use super::MAX_CONTROL;
use crate::error::{Error, Result};
use crate::CloseFrame;

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
pub(super) const fn shown_code(code: u16) -> u16 {
    match code {
        1014 => 1000,
        c => c,
    }
}
const _: () = assert!(shown_code(1014) >> 8 == 1014 >> 8);

/// The peer's close frame as it was sent: code and reason bytes.
#[derive(Clone)]
pub(crate) struct PeerClose {
    pub(super) payload: [u8; MAX_CONTROL],
    pub(super) len: u8,
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
