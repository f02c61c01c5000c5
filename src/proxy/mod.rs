//! Proxy layer: the public [`Proxy`] type (parsing, credentials, redaction)
//! and [`open`], which connects to a proxy and opens a tunnel through it.
//!
//! | file | owns |
//! | --- | --- |
//! | `mod.rs` | [`Proxy`], its parsing and redaction, [`open`] and the dispatch to a protocol |
//! | `env.rs` | proxies from `*_proxy` variables, `no_proxy` matching |
//! | `http.rs` | HTTP `CONNECT`, Basic auth, TLS to an `https://` proxy |
//! | `socks.rs` | SOCKS5, SOCKS5h, SOCKS4 and SOCKS4a handshakes |
//!
//! [`open`] is the only place here that connects a socket (through `socket`),
//! resolves a name (for `socks5://` and `socks4://`, which take addresses) or
//! starts TLS (through `tls`, for `https://` proxies). The protocol files only
//! read and write the stream they are given. When `open` returns, the stream
//! is a byte pipe to the target: not one byte past the proxy's reply has been
//! read. It must not do TLS to the target or speak WebSocket: the client does.
//!
//! Credentials never leave this module except on the wire: `Display` and
//! `Debug` print `***` for the password, and errors and logs name the proxy as
//! [`Proxy::redacted`] (no user information at all).
//!
//! Errors from [`open`] name the proxy: [`Error::Proxy`] for a refusal or a
//! reply that is not the proxy's protocol, and [`Error::AtProxy`] around a
//! timeout, a TLS failure or an I/O error while talking to the proxy (its
//! [`Error::kind`] is the inner error's: `Timeout`, `Tls` or `Io`).
//!
//! Logs: `debug` for the proxy chosen and the tunnel opened, `warn` for a
//! `*_proxy` environment variable that is not a usable proxy URL.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::error::{Error, Phase, Result};
use crate::socket::SocketOptions;
use crate::stream::Stream;
use crate::tls::TlsOptions;
use crate::url::{authority, Target};

mod env;
mod http;
mod socks;

pub(crate) use env::from_env;

const SCHEMES: &str = "http://, https://, socks4://, socks4a://, socks5:// or socks5h://";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Https,
    Socks4,
    Socks4a,
    Socks5,
    Socks5h,
}

impl Kind {
    fn from_scheme(scheme: &str) -> Option<Kind> {
        Some(match scheme {
            "http" => Kind::Http,
            "https" => Kind::Https,
            "socks4" => Kind::Socks4,
            "socks4a" => Kind::Socks4a,
            "socks5" => Kind::Socks5,
            "socks5h" => Kind::Socks5h,
            _ => return None,
        })
    }

    fn scheme(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Socks4 => "socks4",
            Kind::Socks4a => "socks4a",
            Kind::Socks5 => "socks5",
            Kind::Socks5h => "socks5h",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Kind::Http => 80,
            Kind::Https => 443,
            _ => 1080,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: String,
}

/// A proxy to tunnel the WebSocket connection through.
///
/// | URL | protocol | who resolves the target's name |
/// | --- | --- | --- |
/// | `http://[user:pass@]host[:port]` | HTTP `CONNECT`, Basic auth | the proxy |
/// | `https://[user:pass@]host[:port]` | the same, inside TLS to the proxy | the proxy |
/// | `socks5h://[user:pass@]host[:port]` | SOCKS5, username/password auth | the proxy |
/// | `socks5://[user:pass@]host[:port]` | SOCKS5, username/password auth | this client |
/// | `socks4a://[user@]host[:port]` | SOCKS4a, user id | the proxy |
/// | `socks4://[user@]host[:port]` | SOCKS4 (IPv4 targets only), user id | this client |
///
/// The port defaults to 80 for `http`, 443 for `https` and 1080 for SOCKS.
/// Credentials are percent-decoded (`p%40ss` is `p@ss`). A URL with a path
/// other than `/`, a query or a fragment is refused.
///
/// `Display` and `Debug` never show the password: they print `user:***@`.
///
/// # Examples
///
/// ```
/// use wsapp::Proxy;
///
/// let proxy = Proxy::new("http://alice:s3cr%40t@127.0.0.1:3128")?;
/// assert_eq!(proxy.to_string(), "http://alice:***@127.0.0.1:3128");
/// assert!(!format!("{proxy:?}").contains("s3cr"));
///
/// let socks: Proxy = "socks5h://[::1]".parse()?;
/// assert_eq!(socks.to_string(), "socks5h://[::1]:1080");
///
/// assert!(Proxy::new("ftp://127.0.0.1:21").is_err());
/// # Ok::<(), wsapp::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: Kind,
    /// Host name (lower case, IDNA) or IP literal, without IPv6 brackets.
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

impl Proxy {
    /// Parses a proxy URL; see the table above for the schemes.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] when the URL has no scheme or an unsupported one, no host,
    /// port 0, a path, query or fragment, or credentials the protocol cannot
    /// carry (a SOCKS4 password, a SOCKS5 user name or password over 255 bytes,
    /// a `:` in an HTTP user name). The password is never part of the message.
    pub fn new(url: &str) -> Result<Proxy> {
        let input = url.trim();
        let scheme_end = input
            .find("://")
            .ok_or_else(|| Error::url(url, format!("missing scheme: use {SCHEMES}")))?;
        let scheme = input[..scheme_end].to_ascii_lowercase();
        let kind = Kind::from_scheme(&scheme).ok_or_else(|| {
            Error::url(
                url,
                format!("proxy scheme {scheme:?} is not supported: use {SCHEMES}"),
            )
        })?;
        let parsed = ::url::Url::parse(input)
            .map_err(|e| Error::url(url, format!("not a proxy URL: {e}")))?;
        if !matches!(parsed.path(), "" | "/") {
            return Err(Error::url(url, "a proxy URL has no path"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::url(url, "a proxy URL has no query or fragment"));
        }
        // Non-special schemes (socks*) keep an opaque host: parse it the way
        // http:// hosts are (lower case, IDNA, IPv4 literals).
        let host = match parsed.host() {
            Some(::url::Host::Domain(d)) if !d.is_empty() => match ::url::Host::parse(d) {
                Ok(::url::Host::Domain(d)) => d,
                Ok(::url::Host::Ipv4(a)) => a.to_string(),
                Ok(::url::Host::Ipv6(a)) => a.to_string(),
                Err(e) => return Err(Error::url(url, format!("bad proxy host: {e}"))),
            },
            Some(::url::Host::Ipv4(a)) => a.to_string(),
            Some(::url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(Error::url(url, "missing proxy host")),
        };
        let port = parsed.port().unwrap_or(kind.default_port());
        if port == 0 {
            return Err(Error::url(url, "port 0 is not a port to connect to"));
        }
        let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let user = percent_decode(parsed.username())
                .ok_or_else(|| Error::url(url, "the proxy user name is not UTF-8"))?;
            let password = percent_decode(parsed.password().unwrap_or(""))
                .ok_or_else(|| Error::url(url, "the proxy password is not UTF-8"))?;
            check_credentials(kind, &user, &password).map_err(|reason| Error::url(url, reason))?;
            Some(Credentials { user, password })
        };
        Ok(Proxy {
            kind,
            host,
            port,
            credentials,
        })
    }

    /// The proxy's host name or IP literal (no IPv6 brackets), to connect to
    /// and, for `https://`, to verify the proxy's certificate against.
    fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    fn port(&self) -> u16 {
        self.port
    }

    /// `https://`: the stream to the proxy is wrapped in TLS (checked
    /// against [`Proxy::host`]) before the CONNECT.
    fn is_tls(&self) -> bool {
        self.kind == Kind::Https
    }

    /// `socks5://` and `socks4://`: the target's name is resolved here and an
    /// IP literal is sent (an IPv4 one for SOCKS4, see [`Proxy::ipv4_only`]).
    fn resolves_locally(&self) -> bool {
        matches!(self.kind, Kind::Socks5 | Kind::Socks4)
    }

    /// `socks4://`: only IPv4 targets can be reached.
    fn ipv4_only(&self) -> bool {
        self.kind == Kind::Socks4
    }

    /// `scheme://host:port`, or `scheme://***@host:port` with credentials:
    /// the form used in errors and logs.
    pub(crate) fn redacted(&self) -> String {
        let userinfo = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        format!(
            "{}://{userinfo}{}",
            self.kind.scheme(),
            authority(&self.host, self.port)
        )
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Proxy {
            proxy: self.redacted(),
            reason: reason.into(),
        }
    }

    /// `e`, met while talking to this proxy, wrapped in [`Error::AtProxy`] so
    /// that its message names the proxy: timeouts, TLS and I/O errors. Errors
    /// that already name it ([`Error::Proxy`]) are returned as they are.
    fn named(&self, e: Error) -> Error {
        match e {
            Error::Timeout(_) | Error::Tls { .. } | Error::Io(_) => Error::AtProxy {
                proxy: self.redacted(),
                error: Box::new(e),
            },
            other => other,
        }
    }
}

impl FromStr for Proxy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Proxy> {
        Proxy::new(s)
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        if let Some(c) = &self.credentials {
            write!(f, "{}:***@", c.user.escape_debug())?;
        }
        f.write_str(&authority(&self.host, self.port))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Proxy")
            .field(&format_args!("{self}"))
            .finish()
    }
}

fn check_credentials(kind: Kind, user: &str, password: &str) -> std::result::Result<(), String> {
    match kind {
        Kind::Http | Kind::Https if user.contains(':') => {
            Err("an HTTP proxy user name cannot contain ':' (Basic auth)".into())
        }
        Kind::Socks4 | Kind::Socks4a if !password.is_empty() => Err(
            "SOCKS4 has no password: use socks4://user@host, or socks5:// for a password".into(),
        ),
        Kind::Socks4 | Kind::Socks4a if user.contains('\0') => {
            Err("a SOCKS4 user id cannot contain NUL".into())
        }
        Kind::Socks5 | Kind::Socks5h if user.is_empty() || user.len() > 255 => {
            Err("a SOCKS5 user name must be 1 to 255 bytes".into())
        }
        Kind::Socks5 | Kind::Socks5h if password.len() > 255 => {
            Err("a SOCKS5 password must be at most 255 bytes".into())
        }
        _ => Ok(()),
    }
}

/// `%XX` to bytes, then UTF-8 (`None` if it is not); a `%` not followed by
/// two hex digits stays as is.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

// ---------------------------------------------------------------------------
// Opening a tunnel

/// Connects to `proxy` and opens a tunnel through it to `target`; the stream
/// returned carries the target's bytes (TLS to the target is the caller's).
///
/// Steps: TCP to the proxy with `socket` (its options apply to the socket that
/// carries the data, `connect_timeout` bounds the connect), TLS to the proxy
/// for `https://` (with `tls`, minus its server-name override, which is the
/// target's), the target's name resolved here for `socks5://`/`socks4://`,
/// then the proxy's handshake. Everything after the TCP connect must end
/// within `connect_timeout + handshake_timeout`, even against a proxy that
/// trickles its reply.
///
/// Errors: [`Error::Proxy`] when the proxy cannot be reached, refuses, or
/// answers something that is not its protocol; [`Error::AtProxy`] around a
/// timeout ([`Phase::Proxy`], or [`Phase::Tls`] for an `https://` proxy's
/// handshake), a TLS failure (such as an untrusted proxy certificate) or
/// another I/O error; [`Error::Dns`] when a target this client must resolve
/// does not resolve.
pub(crate) fn open(
    proxy: &Proxy,
    target: &Target,
    socket: &SocketOptions,
    tls: &TlsOptions,
    handshake_timeout: Duration,
) -> Result<Stream> {
    log::debug!("connecting through proxy {}", proxy.redacted());
    let tcp = crate::socket::connect(proxy.host(), proxy.port(), socket)
        .map_err(|e| proxy.error(format!("cannot reach the proxy: {e}")))?;
    let deadline = Instant::now() + socket.connect_timeout + handshake_timeout;
    let mut stream = Stream::tcp_stream(tcp);
    if proxy.is_tls() {
        stream = http::wrap_tls(stream, proxy, tls, deadline).map_err(|e| proxy.named(e))?;
    }
    crate::tls::set_timeouts(&stream, deadline, Phase::Proxy).map_err(|e| proxy.named(e))?;
    // A proxy that trickles its reply cannot hold the connect open.
    stream.set_handshake_deadline(deadline);
    let host = if proxy.resolves_locally() {
        resolve(
            &target.host,
            target.port,
            proxy.ipv4_only(),
            deadline.saturating_duration_since(Instant::now()),
        )?
    } else {
        target.host.clone()
    };
    tunnel(&mut stream, proxy, &host, target.port).map_err(|e| proxy.named(e))?;
    Ok(stream)
}

/// Resolves `host` for a proxy that takes addresses, not names, within `timeout`.
fn resolve(host: &str, port: u16, ipv4_only: bool, timeout: Duration) -> Result<String> {
    crate::socket::resolve(host, port, timeout)?
        .into_iter()
        .find(|a| !ipv4_only || a.is_ipv4())
        .map(|a| a.ip().to_string())
        .ok_or_else(|| Error::Dns {
            host: host.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no IPv4 address (SOCKS4 needs one)",
            ),
        })
}

/// Asks the proxy, over `stream` (connected to it, TLS done for `https://`,
/// read and write timeouts set), for a tunnel to `host:port`.
///
/// `host` is a name or an IP literal (IPv6 with or without brackets). For
/// [`Proxy::resolves_locally`] proxies the caller should pass an IP; a name is
/// sent as a name all the same. On `Ok` the stream carries the target's bytes:
/// nothing after the proxy's reply has been read.
///
/// Errors: [`Error::Proxy`] when the proxy refuses (with status or reply code
/// and its meaning) or answers something that is not its protocol or is cut
/// short; [`Error::Timeout`]`(`[`Phase::Proxy`]`)` when a read or write times
/// out; [`Error::Io`] for other I/O errors.
fn tunnel<S: Read + Write>(stream: &mut S, proxy: &Proxy, host: &str, port: u16) -> Result<()> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(proxy.error(format!("invalid target host {host:?}")));
    }
    let target = authority(host, port);
    log::debug!("proxy {}: opening a tunnel to {target}", proxy.redacted());
    match proxy.kind {
        Kind::Http | Kind::Https => http::connect(stream, proxy, host, port)?,
        Kind::Socks5 | Kind::Socks5h => socks::socks5(stream, proxy, host, port)?,
        Kind::Socks4 | Kind::Socks4a => socks::socks4(stream, proxy, host, port)?,
    }
    log::debug!("proxy {}: tunnel to {target} open", proxy.redacted());
    Ok(())
}

/// Writes all of `bytes` and flushes; a timeout is one in [`Phase::Proxy`].
fn send<S: Write>(stream: &mut S, bytes: &[u8]) -> Result<()> {
    stream
        .write_all(bytes)
        .and_then(|()| stream.flush())
        .map_err(|e| Error::from_io(Phase::Proxy, e, Error::Io))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::{self, Cursor};

    pub(super) fn proxy(url: &str) -> Proxy {
        Proxy::new(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refused(url: &str) -> String {
        match Proxy::new(url) {
            Ok(p) => panic!("{url} accepted as {p}"),
            Err(e) => {
                assert!(matches!(e, Error::Url { .. }), "{url}: {e:?}");
                e.to_string()
            }
        }
    }

    #[test]
    fn proxy_is_send_sync_clone() {
        fn is<T: Send + Sync + Clone + fmt::Debug + fmt::Display + 'static>() {}
        is::<Proxy>();
    }

    #[test]
    fn parses_schemes_hosts_and_default_ports() {
        // url, kind, host, port, tls, resolves locally, display
        #[rustfmt::skip]
        let cases = [
            ("http://proxy:3128", Kind::Http, "proxy", 3128, false, false, "http://proxy:3128"),
            ("http://proxy", Kind::Http, "proxy", 80, false, false, "http://proxy:80"),
            ("http://proxy:80/", Kind::Http, "proxy", 80, false, false, "http://proxy:80"),
            ("HTTPS://Proxy.Example", Kind::Https, "proxy.example", 443, true, false, "https://proxy.example:443"),
            ("https://p:8443", Kind::Https, "p", 8443, true, false, "https://p:8443"),
            ("socks5://127.0.0.1", Kind::Socks5, "127.0.0.1", 1080, false, true, "socks5://127.0.0.1:1080"),
            ("socks5h://Sock.Example:1081", Kind::Socks5h, "sock.example", 1081, false, false, "socks5h://sock.example:1081"),
            ("socks4://h:80", Kind::Socks4, "h", 80, false, true, "socks4://h:80"),
            ("socks4a://h/", Kind::Socks4a, "h", 1080, false, false, "socks4a://h:1080"),
            ("socks5h://[::1]:9050", Kind::Socks5h, "::1", 9050, false, false, "socks5h://[::1]:9050"),
            ("http://[::1]", Kind::Http, "::1", 80, false, false, "http://[::1]:80"),
            ("  socks5://h:1  ", Kind::Socks5, "h", 1, false, true, "socks5://h:1"),
        ];
        for (url, kind, host, port, tls, local, display) in cases {
            let p = proxy(url);
            assert_eq!(p.kind, kind, "{url}");
            assert_eq!((p.host(), p.port()), (host, port), "{url}");
            assert_eq!(p.is_tls(), tls, "{url}");
            assert_eq!(p.resolves_locally(), local, "{url}");
            assert_eq!(p.to_string(), display, "{url}");
            assert_eq!(p.redacted(), display, "{url}");
            assert!(p.credentials.is_none(), "{url}");
        }
        assert!(proxy("socks4://h").ipv4_only());
        assert!(!proxy("socks4a://h").ipv4_only());
        assert!(!proxy("socks5://h").ipv4_only());
        assert_eq!("socks5://h".parse::<Proxy>().unwrap(), proxy("socks5://h"));
    }

    #[test]
    fn credentials_are_decoded_and_never_shown() {
        let p = proxy("http://alice:s3cr%40t%3A@proxy:3128");
        let c = p.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cr@t:"));
        assert_eq!(p.to_string(), "http://alice:***@proxy:3128");
        assert_eq!(format!("{p:?}"), "Proxy(http://alice:***@proxy:3128)");
        assert_eq!(p.redacted(), "http://***@proxy:3128");

        let p = proxy("socks5h://b%C3%B6b:p%20w@h");
        let c = p.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("böb", "p w"));
        // An unencoded '@' in the password: the last '@' ends the user information.
        let p = proxy("socks5://u:p@ss@h:1");
        assert_eq!(p.credentials.as_ref().unwrap().password, "p@ss");
        assert_eq!(p.host(), "h");
        // A user without a password.
        let p = proxy("socks4a://userid@h");
        let c = p.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("userid", ""));
        assert_eq!(p.to_string(), "socks4a://userid:***@h:1080");

        for p in [
            proxy("http://alice:topsecret@h"),
            proxy("socks5://alice:topsecret@h"),
        ] {
            for shown in [
                p.to_string(),
                format!("{p:?}"),
                format!("{p:#?}"),
                p.redacted(),
            ] {
                assert!(!shown.contains("topsecret"), "{shown}");
            }
            let err = p.error("x").to_string();
            assert!(
                !err.contains("topsecret") && !err.contains("alice"),
                "{err}"
            );
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            ("proxy:3128", "missing scheme"),
            ("ftp://h:21", "\"ftp\" is not supported"),
            ("socks://h", "\"socks\" is not supported"),
            ("http://h:3128/path", "no path"),
            ("http://h:3128/?q=1", "no query"),
            ("socks5://h:1080#f", "no query or fragment"),
            ("socks5://h:1080/x", "no path"),
            ("http://h:0", "port 0"),
            ("socks5://h:0", "port 0"),
            ("http://h:65536", "port"),
            ("socks5://h:x", "port"),
            ("http://", "not a proxy URL"),
            ("socks5://", "missing proxy host"),
            ("http://[::1", "not a proxy URL"),
            ("http://a%3Ab:pw@h", "cannot contain ':'"),
            ("socks4://u:pw@h", "SOCKS4 has no password"),
            ("socks5://:pw@h", "1 to 255 bytes"),
            ("http://u:%FF@h", "not UTF-8"),
        ];
        for (url, expected) in cases {
            let e = refused(url);
            assert!(e.contains(expected), "{url}: {e}");
            assert!(!e.contains("pw"), "{url}: {e}");
        }
        // Whatever the password holds, it is not in the message.
        for url in [
            "alice:pw@p:3128",
            "http://alice:p/w@p:3128",
            "http://alice:p?w@p:3128",
            "http://alice:p#w@p:3128",
            "ftp://alice:pw@p",
            "socks4://alice:pw@p",
        ] {
            let e = refused(url);
            assert!(!e.contains("pw") && !e.contains("p/w"), "{url}: {e}");
            assert!(!e.contains("p?w") && !e.contains("p#w"), "{url}: {e}");
            assert!(e.contains("***@p"), "{url}: {e}");
        }
        let long = "x".repeat(256);
        assert!(refused(&format!("socks5://{long}:p@h")).contains("255"));
        assert!(refused(&format!("socks5://u:{long}@h")).contains("255"));
        proxy(&format!("http://{long}:{long}@h")); // HTTP has no such limit
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%41%4a%4A").as_deref(), Some("AJJ"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }

    // --- tunnels: a fake proxy stream, shared with http.rs and socks.rs ---

    /// A stream that reads from `input` and records what is written.
    /// With `stall`, a read at the end of `input` times out instead of
    /// returning end of stream.
    pub(super) struct Fake {
        pub(super) input: Cursor<Vec<u8>>,
        pub(super) output: Vec<u8>,
        stall: bool,
    }

    impl Fake {
        fn new(input: impl AsRef<[u8]>) -> Fake {
            Fake {
                input: Cursor::new(input.as_ref().to_vec()),
                output: Vec::new(),
                stall: false,
            }
        }

        fn stalling(input: impl AsRef<[u8]>) -> Fake {
            Fake {
                stall: true,
                ..Fake::new(input)
            }
        }

        pub(super) fn rest(&self) -> &[u8] {
            &self.input.get_ref()[self.input.position() as usize..]
        }
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.stall && self.rest().is_empty() && !buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.input.read(buf)
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    pub(super) fn run(
        proxy_url: &str,
        host: &str,
        port: u16,
        reply: impl AsRef<[u8]>,
    ) -> (Result<()>, Fake) {
        let mut fake = Fake::new(reply);
        let result = tunnel(&mut fake, &proxy(proxy_url), host, port);
        (result, fake)
    }

    pub(super) fn reason(result: Result<()>) -> String {
        match result {
            Err(Error::Proxy { proxy, reason }) => {
                assert!(!proxy.contains("pw"), "{proxy}");
                reason
            }
            other => panic!("expected a proxy error, got {other:?}"),
        }
    }

    #[test]
    fn timeouts_map_to_phase_proxy() {
        let cases = [
            ("http://p", ""),
            ("http://p", "HTTP/1.1 200 OK\r\n"),
            ("socks5://p", ""),
            ("socks5://p", "\x05\x00\x05"),
            ("socks4://p", "\x00"),
        ];
        for (url, input) in cases {
            let mut fake = Fake::stalling(input);
            let r = tunnel(&mut fake, &proxy(url), "127.0.0.1", 80);
            assert!(
                matches!(r, Err(Error::Timeout(Phase::Proxy))),
                "{url} {input:?}: {r:?}"
            );
        }
        // Other I/O errors stay I/O errors.
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::ConnectionReset.into())
            }
        }
        impl Write for Broken {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let r = tunnel(&mut Broken, &proxy("socks5://p"), "h", 1);
        assert!(
            matches!(r, Err(Error::Io(ref e)) if e.kind() == io::ErrorKind::ConnectionReset),
            "{r:?}"
        );
    }

    #[test]
    fn tunnel_refuses_bad_target_hosts() {
        for host in ["", "a b", "h\r\nX: y", "[]"] {
            let (r, fake) = run("http://p", host, 1, "HTTP/1.1 200 OK\r\n\r\n");
            assert!(reason(r).contains("invalid target host"), "{host:?}");
            assert!(fake.output.is_empty());
        }
    }

    #[test]
    fn error_display_names_the_proxy_without_credentials() {
        let r = run(
            "http://alice:pw@p:3128",
            "h",
            1,
            "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
        )
        .0;
        let text = r.unwrap_err().to_string();
        assert!(
            text.starts_with("proxy http://***@p:3128: CONNECT refused: 407"),
            "{text}"
        );
        assert!(!text.contains("alice") && !text.contains("pw"), "{text}");
    }
}
