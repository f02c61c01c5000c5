//! TLS layer: builds a native-tls connector from options and runs the TLS
//! handshake with a deadline.
//!
//! Owns the TLS options and the connector built from them, once per set of
//! options: building one loads the system roots (about 100 ms), so clones of
//! a `Client` and its reconnects share it, and it is built before the
//! handshake deadline starts. It does not connect sockets or speak HTTP; the
//! stream it wraps is [`Stream`].
//!
//! The handshake is done here rather than by tungstenite, whose native-tls path
//! panics when a read timeout fires mid-handshake.

use std::sync::{Arc, Mutex};
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
    /// The connector built from the fields above, shared by clones; a setter
    /// that changes them calls [`TlsOptions::changed`] to start a new one.
    pub(crate) cache: Arc<ConnectorCache>,
}

/// A connector built once, on first use.
#[derive(Default)]
pub(crate) struct ConnectorCache {
    built: Mutex<Option<TlsConnector>>,
    /// How many times a connector was built here (for tests).
    #[cfg(test)]
    builds: std::sync::atomic::AtomicUsize,
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
    /// Forgets the built connector: the options it was built from changed.
    /// Clones made before keep theirs.
    pub(crate) fn changed(&mut self) {
        self.cache = Arc::default();
    }

    /// The connector for these options: the caller's, or the one built from
    /// them (built on first use, then shared by every clone). `host` is for
    /// the error message; the name to verify is given to `connect`.
    pub(crate) fn connector(&self, host: &str) -> Result<TlsConnector> {
        if let Some(c) = &self.connector {
            return Ok(c.clone());
        }
        let mut built = self.cache.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &*built {
            return Ok(c.clone());
        }
        let c = self.build(host)?;
        #[cfg(test)]
        self.cache
            .builds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *built = Some(c.clone());
        Ok(c)
    }

    fn build(&self, host: &str) -> Result<TlsConnector> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn connector_is_built_once_and_shared_by_clones_until_options_change() {
        let opts = TlsOptions::default();
        let clone = opts.clone();
        for _ in 0..5 {
            opts.connector("h").unwrap();
            clone.clone().connector("h").unwrap();
        }
        assert_eq!(opts.cache.builds.load(Ordering::Relaxed), 1);
        let mut changed = opts.clone();
        changed.accept_invalid_certs = true;
        changed.changed();
        changed.connector("h").unwrap();
        assert_eq!(changed.cache.builds.load(Ordering::Relaxed), 1);
        assert_eq!(opts.cache.builds.load(Ordering::Relaxed), 1);
        // A proxy's options differ only in the server name: same connector.
        let proxy = TlsOptions {
            server_name: None,
            ..opts.clone()
        };
        proxy.connector("p").unwrap();
        assert_eq!(opts.cache.builds.load(Ordering::Relaxed), 1);
    }
}
