#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod app;
mod backoff;
mod client;
mod connection;
mod deflate;
mod error;
mod handshake;
mod hub;
mod lane;
mod proxy;
mod queue;
mod socket;
mod stats;
mod stream;
mod tls;
mod url;
mod wire;

pub use app::{AppHandle, AppSender, Backoff, Callbacks, Handler, WebSocketApp};
pub use client::{connect, Client};
pub use connection::{Incoming, Sender, WebSocket};
pub use deflate::Compression;
pub use error::{Error, ErrorKind, Phase, Response, Result, TrySendError};
pub use hub::{Hub, HubStats};
pub use proxy::Proxy;
pub use queue::Overflow;
pub use stats::{Drops, Reader, Stats};
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
pub use tungstenite::{Bytes, Message};

/// The TLS crate `wsapp` is built on, for [`Client::identity`] and
/// [`Client::tls_connector`] without a second, matching dependency.
///
/// # Examples
///
/// ```
/// use wsapp::native_tls::TlsConnector;
/// let tls = TlsConnector::builder().min_protocol_version(None).build().unwrap();
/// let client = wsapp::Client::new("wss://example.com/").tls_connector(tls);
/// # let _ = client;
/// ```
pub use native_tls;
