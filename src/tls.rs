//! TLS layer: builds a native-tls connector from options and runs the TLS
//! handshake with a deadline.
//!
//! Owns the TLS options and the connector built from them. It does not
//! connect sockets or speak HTTP; the stream it wraps is [`Stream`].
//!
//! The handshake is done here rather than by tungstenite, whose native-tls path
//! panics when a read timeout fires mid-handshake.

use std::time::Instant;

use native_tls::{Certificate, HandshakeError, Identity, TlsConnector};

use crate::error::{Error, Phase, Result};
use crate::stream::Stream;

/// TLS options; the defaults verify certificates against the system roots.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    pub(crate) roots: Vec<Certificate>,
    pub(crate) identity: Option<Identity>,
    pub(crate) server_name: Option<String>,
    pub(crate) accept_invalid_certs: bool,
    pub(crate) accept_invalid_hostnames: bool,
    pub(crate) connector: Option<TlsConnector>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("extra_roots", &self.roots.len())
            .field("identity", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .field("danger_accept_invalid_certs", &self.accept_invalid_certs)
            .field(
                "danger_accept_invalid_hostnames",
                &self.accept_invalid_hostnames,
            )
            .field("custom_connector", &self.connector.is_some())
            .finish()
    }
}

impl TlsOptions {
    fn connector(&self, host: &str) -> Result<TlsConnector> {
        if let Some(c) = &self.connector {
            return Ok(c.clone());
        }
        let mut b = TlsConnector::builder();
        for root in &self.roots {
            b.add_root_certificate(root.clone());
        }
        if let Some(id) = &self.identity {
            b.identity(id.clone());
        }
        b.danger_accept_invalid_certs(self.accept_invalid_certs);
        b.danger_accept_invalid_hostnames(self.accept_invalid_hostnames);
        b.build().map_err(|source| Error::Tls {
            host: host.to_string(),
            source,
        })
    }
}

/// Runs the TLS handshake over `stream` for `host`, giving up at `deadline`.
pub(crate) fn wrap(
    mut stream: Stream,
    host: &str,
    opts: &TlsOptions,
    deadline: Instant,
) -> Result<Stream> {
    let name = opts.server_name.as_deref().unwrap_or(host);
    let connector = opts.connector(name)?;
    set_timeouts(&stream, deadline, Phase::Tls)?;
    stream.set_handshake_deadline(deadline);
    let mut attempt = connector.connect(name, stream);
    loop {
        match attempt {
            Ok(tls) => {
                log::debug!("TLS handshake with {name} done");
                return Ok(Stream::tls_stream(tls));
            }
            Err(HandshakeError::Failure(source)) if timed_out(&source) => {
                return Err(Error::Timeout(Phase::Tls))
            }
            Err(HandshakeError::Failure(source)) => {
                return Err(Error::Tls {
                    host: name.to_string(),
                    source,
                })
            }
            Err(HandshakeError::WouldBlock(mid)) => {
                set_timeouts(mid.get_ref(), deadline, Phase::Tls)?;
                attempt = mid.handshake();
            }
        }
    }
}

/// Whether a TLS failure was our deadline firing. native-tls hides the io
/// error's kind, so this reads the message the deadline check writes.
fn timed_out(e: &native_tls::Error) -> bool {
    e.to_string().contains("handshake deadline passed")
}

/// Sets read and write timeouts on the socket to what is left until `deadline`,
/// or fails with a timeout in `phase` if nothing is left.
pub(crate) fn set_timeouts(stream: &Stream, deadline: Instant, phase: Phase) -> Result<()> {
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or(Error::Timeout(phase))?;
    let tcp = stream.tcp();
    tcp.set_read_timeout(Some(left)).map_err(Error::Io)?;
    tcp.set_write_timeout(Some(left)).map_err(Error::Io)?;
    Ok(())
}
