//! [`WireError`]: a frame the layer refuses, the close code the peer is owed
//! for it, and how it travels up through tungstenite inside an `io::Error`
//! and becomes an [`Error`]. No frame parsing here.

use std::fmt;
use std::io;

use crate::error::Error;

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

    pub(super) fn to_io(self) -> io::Error {
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
