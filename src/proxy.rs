//! Proxy layer: proxy URLs, proxies from the environment, `no_proxy`, and the
//! tunnel handshakes (HTTP CONNECT with Basic auth, SOCKS5 with RFC 1929 auth,
//! SOCKS4 and SOCKS4a).
//!
//! It never opens a socket, resolves a name or does TLS. The caller connects to
//! [`Proxy::host`]:[`Proxy::port`] (with TLS when [`Proxy::is_tls`]), sets the
//! stream's read and write timeouts, resolves the target first when
//! [`Proxy::resolves_locally`], and hands the blocking stream to [`tunnel`].
//! When `tunnel` returns `Ok`, the stream is a byte pipe to the target: not one
//! byte past the proxy's reply has been read.
//!
//! Credentials never leave this module except on the wire: `Display` and
//! `Debug` print `***` for the password, and errors and logs name the proxy as
//! [`Proxy::redacted`] (no user information at all).
//!
//! Logs: `debug` for the proxy chosen and the tunnel opened, `warn` for a
//! `*_proxy` environment variable that is not a usable proxy URL.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::error::{Error, Phase, Result};
use crate::url::Target;

/// Longest CONNECT response head accepted, status line to blank line.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

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
        let shown = hide_userinfo(url);
        let input = url.trim();
        let scheme_end = input
            .find("://")
            .ok_or_else(|| Error::url(&shown, format!("missing scheme: use {SCHEMES}")))?;
        let scheme = input[..scheme_end].to_ascii_lowercase();
        let kind = Kind::from_scheme(&scheme).ok_or_else(|| {
            Error::url(
                url,
                format!("proxy scheme {scheme:?} is not supported: use {SCHEMES}"),
            )
        })?;
        let parsed = ::url::Url::parse(input)
            .map_err(|e| Error::url(&shown, format!("not a proxy URL: {e}")))?;
        if !matches!(parsed.path(), "" | "/") {
            return Err(Error::url(&shown, "a proxy URL has no path"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::url(&shown, "a proxy URL has no query or fragment"));
        }
        // Non-special schemes (socks*) keep an opaque host: parse it the way
        // http:// hosts are (lower case, IDNA, IPv4 literals).
        let host = match parsed.host() {
            Some(::url::Host::Domain(d)) if !d.is_empty() => match ::url::Host::parse(d) {
                Ok(::url::Host::Domain(d)) => d,
                Ok(::url::Host::Ipv4(a)) => a.to_string(),
                Ok(::url::Host::Ipv6(a)) => a.to_string(),
                Err(e) => return Err(Error::url(&shown, format!("bad proxy host: {e}"))),
            },
            Some(::url::Host::Ipv4(a)) => a.to_string(),
            Some(::url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(Error::url(&shown, "missing proxy host")),
        };
        let port = parsed.port().unwrap_or(kind.default_port());
        if port == 0 {
            return Err(Error::url(&shown, "port 0 is not a port to connect to"));
        }
        let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let user = percent_decode(parsed.username())
                .ok_or_else(|| Error::url(&shown, "the proxy user name is not UTF-8"))?;
            let password = percent_decode(parsed.password().unwrap_or(""))
                .ok_or_else(|| Error::url(&shown, "the proxy password is not UTF-8"))?;
            check_credentials(kind, &user, &password)
                .map_err(|reason| Error::url(&shown, reason))?;
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
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `https://`: the caller wraps the stream to the proxy in TLS (checked
    /// against [`Proxy::host`]) before calling [`tunnel`].
    pub(crate) fn is_tls(&self) -> bool {
        self.kind == Kind::Https
    }

    /// `socks5://` and `socks4://`: the caller resolves the target's name and
    /// passes an IP literal to [`tunnel`] (an IPv4 one for SOCKS4, see
    /// [`Proxy::ipv4_only`]).
    pub(crate) fn resolves_locally(&self) -> bool {
        matches!(self.kind, Kind::Socks5 | Kind::Socks4)
    }

    /// `socks4://`: only IPv4 targets can be reached.
    pub(crate) fn ipv4_only(&self) -> bool {
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

/// The input with everything before its last `@` hidden, for error messages.
/// A proxy URL has no path, so its last `@` ends the user information even
/// when the password holds an unencoded `/`, `?` or `#` (or the scheme is missing).
fn hide_userinfo(input: &str) -> String {
    let start = input.find("://").map_or(0, |i| i + 3);
    match input[start..].rfind('@') {
        Some(at) => format!("{}***@{}", &input[..start], &input[start + at + 1..]),
        None => input.to_string(),
    }
}

/// `%XX` to bytes, then UTF-8; a `%` not followed by two hex digits stays as is.
fn percent_decode(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Standard base64 (RFC 4648 §4) with padding, for `Proxy-Authorization: Basic`.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `host:port`, with IPv6 literals in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---------------------------------------------------------------------------
// Environment

/// The proxy for `target` from the process environment, if any; see [`from_env_with`].
pub(crate) fn from_env(target: &Target) -> Option<Proxy> {
    from_env_with(target, |name| std::env::var(name).ok())
}

/// The proxy for `target` from the variables `var` looks up.
///
/// `wss` uses `https_proxy`, `ws` uses `http_proxy`, then both fall back to
/// `all_proxy`; each lower-case name is read before its upper-case one, and
/// an empty value counts as unset. `HTTP_PROXY` is skipped when
/// `REQUEST_METHOD` is set (a CGI program, where a request's `Proxy:` header
/// arrives as `HTTP_PROXY`: "httpoxy"). A value without `://` is an
/// `http://` proxy. A value that is not a usable proxy URL is skipped with a
/// warning that names the variable, not the value. `no_proxy` (then
/// `NO_PROXY`) is checked first, see [`no_proxy_matches`].
pub(crate) fn from_env_with(
    target: &Target,
    var: impl Fn(&str) -> Option<String>,
) -> Option<Proxy> {
    let get = |name: &str| {
        var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(no_proxy) = get("no_proxy").or_else(|| get("NO_PROXY")) {
        if no_proxy_matches(&no_proxy, &target.host, target.port) {
            log::debug!("no proxy for {}: no_proxy matches", target.authority());
            return None;
        }
    }
    let cgi = var("REQUEST_METHOD").is_some();
    let names: [&str; 4] = if target.secure {
        ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    for name in names {
        let Some(value) = get(name) else { continue };
        if name == "HTTP_PROXY" && cgi {
            log::warn!("ignoring HTTP_PROXY: REQUEST_METHOD is set (CGI); use http_proxy");
            continue;
        }
        let value = if value.contains("://") {
            value
        } else {
            format!("http://{value}")
        };
        match Proxy::new(&value) {
            Ok(proxy) => {
                log::debug!(
                    "proxy for {}: {} (from {name})",
                    target.authority(),
                    proxy.redacted()
                );
                return Some(proxy);
            }
            Err(e) => {
                // The reason only: the value may hold a password.
                let reason = match e {
                    Error::Url { reason, .. } => reason,
                    other => other.to_string(),
                };
                log::warn!("ignoring {name}: not a usable proxy URL: {reason}");
            }
        }
    }
    None
}

/// Whether a `no_proxy` list exempts `host:port` from the proxy.
///
/// Entries are comma-separated; spaces around them are ignored and names
/// compare case-insensitively, with trailing dots dropped. An entry is:
/// - `*`: every host;
/// - a domain, with or without a leading `.` or `*.`: `example.com` and
///   `.example.com` both match `example.com` and `a.example.com`, not
///   `badexample.com` (curl's behaviour);
/// - an IPv4 or IPv6 literal (`10.1.2.3`, `::1`, `[::1]`) or CIDR block
///   (`10.0.0.0/8`, `::1/128`, `[fd00::]/8`), matching only IP-literal hosts of
///   the same family (names are not resolved for this);
/// - any of these followed by `:port` (`example.com:8080`, `[::1]:443`), which
///   then matches that port only.
///
/// Unparsable entries are ignored.
pub(crate) fn no_proxy_matches(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let host_ip = host.parse::<IpAddr>().ok();
    no_proxy
        .split(',')
        .filter_map(|entry| NoProxyEntry::parse(entry.trim()))
        .any(|entry| entry.matches(&host, host_ip, port))
}

#[derive(Debug, PartialEq)]
enum NoProxyRule {
    All,
    Domain(String),
    Net(IpAddr, u8),
}

#[derive(Debug, PartialEq)]
struct NoProxyEntry {
    rule: NoProxyRule,
    port: Option<u16>,
}

impl NoProxyEntry {
    fn parse(entry: &str) -> Option<NoProxyEntry> {
        if entry.is_empty() {
            return None;
        }
        if entry == "*" {
            return Some(NoProxyEntry {
                rule: NoProxyRule::All,
                port: None,
            });
        }
        // Split off the port and, for IPs, the prefix length.
        let (addr, prefix, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (addr, rest) = rest.split_once(']')?;
            let (prefix, port) = match rest.strip_prefix('/') {
                Some(p) => match p.split_once(':') {
                    Some((len, port)) => (Some(len), Some(port)),
                    None => (Some(p), None),
                },
                None if rest.is_empty() => (None, None),
                None => (None, Some(rest.strip_prefix(':')?)),
            };
            (addr, prefix, port)
        } else {
            let (addr, port) = match entry.matches(':').count() {
                0 => (entry, None),
                1 => entry.split_once(':').map(|(a, p)| (a, Some(p)))?,
                _ => (entry, None), // a bare IPv6 literal: no port possible
            };
            match addr.split_once('/') {
                Some((addr, len)) => (addr, Some(len), port),
                None => (addr, None, port),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok()?),
            None => None,
        };
        let rule = match addr.parse::<IpAddr>() {
            Ok(ip) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len = match prefix {
                    Some(len) => len.parse::<u8>().ok().filter(|l| *l <= max)?,
                    None => max,
                };
                NoProxyRule::Net(ip, len)
            }
            Err(_) if prefix.is_some() => return None,
            Err(_) => {
                let d = addr
                    .strip_prefix("*.")
                    .or_else(|| addr.strip_prefix('.'))
                    .unwrap_or(addr);
                let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
                if d.is_empty() || d.contains(['*', '/', '[', ']']) {
                    return None;
                }
                NoProxyRule::Domain(d)
            }
        };
        Some(NoProxyEntry { rule, port })
    }

    fn matches(&self, host: &str, host_ip: Option<IpAddr>, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.rule, host_ip) {
            (NoProxyRule::All, _) => true,
            (NoProxyRule::Domain(d), None) => {
                host == d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }
            (NoProxyRule::Net(IpAddr::V4(net), len), Some(IpAddr::V4(ip))) => {
                in_net(u32::from(*net).into(), u32::from(ip).into(), *len, 32)
            }
            (NoProxyRule::Net(IpAddr::V6(net), len), Some(IpAddr::V6(ip))) => {
                in_net(u128::from(*net), u128::from(ip), *len, 128)
            }
            _ => false,
        }
    }
}

/// Whether the first `len` of the low `bits` bits of `a` and `b` agree.
fn in_net(a: u128, b: u128, len: u8, bits: u32) -> bool {
    let shift = bits - u32::from(len);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Tunnels

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
pub(crate) fn tunnel<S: Read + Write>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<()> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(proxy.error(format!("invalid target host {host:?}")));
    }
    log::debug!(
        "proxy {}: opening a tunnel to {}",
        proxy.redacted(),
        authority(host, port)
    );
    match proxy.kind {
        Kind::Http | Kind::Https => http_connect(stream, proxy, host, port)?,
        Kind::Socks5 | Kind::Socks5h => socks5(stream, proxy, host, port)?,
        Kind::Socks4 | Kind::Socks4a => socks4(stream, proxy, host, port)?,
    }
    log::debug!(
        "proxy {}: tunnel to {} open",
        proxy.redacted(),
        authority(host, port)
    );
    Ok(())
}

fn io_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(Phase::Proxy),
        _ => Error::Io(e),
    }
}

fn send<S: Write>(stream: &mut S, bytes: &[u8]) -> Result<()> {
    stream
        .write_all(bytes)
        .and_then(|()| stream.flush())
        .map_err(io_error)
}

/// Reads exactly `buf.len()` bytes; an early end of stream is a truncated `what`.
fn receive<S: Read>(stream: &mut S, proxy: &Proxy, buf: &mut [u8], what: &str) -> Result<()> {
    stream.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            proxy.error(format!(
                "connection closed by the proxy in the middle of the {what}"
            ))
        } else {
            io_error(e)
        }
    })
}

fn http_connect<S: Read + Write>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<()> {
    let target = authority(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = &proxy.credentials {
        let token = base64(format!("{}:{}", c.user, c.password).as_bytes());
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    send(stream, request.as_bytes())?;

    let head = read_head(stream, proxy)?;
    let Some((status, reason)) = parse_status_line(&head) else {
        let first = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let first = &first[..first.len().min(80)];
        return Err(proxy.error(format!(
            "not an HTTP response to CONNECT: {:?}",
            String::from_utf8_lossy(first).trim_end()
        )));
    };
    if (200..300).contains(&status) {
        return Ok(());
    }
    let mut message = format!("CONNECT refused: {status}");
    if !reason.is_empty() {
        message.push(' ');
        message.push_str(&reason);
    }
    if status == 407 {
        message.push_str(if proxy.credentials.is_some() {
            " (the proxy did not accept the credentials)"
        } else {
            " (the proxy wants credentials: put user:password@ in the proxy URL)"
        });
    }
    Err(proxy.error(message))
}

/// Reads the response head up to and including the blank line, one byte at a
/// time so that nothing of the tunnelled stream is consumed.
fn read_head<S: Read>(stream: &mut S, proxy: &Proxy) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while head.len() < MAX_RESPONSE_HEAD {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(proxy.error(if head.is_empty() {
                    "connection closed by the proxy without a response to CONNECT"
                } else {
                    "connection closed by the proxy in the middle of the CONNECT response"
                }))
            }
            Ok(_) => {
                head.push(byte[0]);
                if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                    return Ok(head);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    Err(proxy.error(format!(
        "CONNECT response head longer than {MAX_RESPONSE_HEAD} bytes"
    )))
}

/// `HTTP/1.x SSS reason` → status and a printable reason phrase.
fn parse_status_line(head: &[u8]) -> Option<(u16, String)> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..end])
        .ok()?
        .trim_end_matches('\r');
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut parts = rest.splitn(3, ' ');
    let minor = parts.next()?;
    let code = parts.next()?;
    if minor.len() != 1 || !minor.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let reason: String = parts
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    Some((code.parse().ok()?, reason))
}

fn socks5<S: Read + Write>(stream: &mut S, proxy: &Proxy, host: &str, port: u16) -> Result<()> {
    // Greeting: offer no authentication, and username/password when we have them.
    let creds = proxy.credentials.as_ref();
    let greeting: &[u8] = if creds.is_some() {
        &[5, 2, 0x00, 0x02]
    } else {
        &[5, 1, 0x00]
    };
    send(stream, greeting)?;
    let mut choice = [0u8; 2];
    receive(stream, proxy, &mut choice, "SOCKS5 method reply")?;
    if choice[0] != 5 {
        return Err(proxy.error(format!(
            "not a SOCKS5 proxy: its reply has version {}",
            choice[0]
        )));
    }
    match (choice[1], creds) {
        (0x00, _) => {}
        (0x02, Some(c)) => {
            let (user, password) = (c.user.as_bytes(), c.password.as_bytes());
            if user.is_empty() || user.len() > 255 || password.len() > 255 {
                return Err(
                    proxy.error("SOCKS5 user name and password must be 1-255 and 0-255 bytes")
                );
            }
            let mut auth = Vec::with_capacity(3 + user.len() + password.len());
            auth.push(1);
            auth.push(user.len() as u8);
            auth.extend_from_slice(user);
            auth.push(password.len() as u8);
            auth.extend_from_slice(password);
            send(stream, &auth)?;
            let mut status = [0u8; 2];
            receive(stream, proxy, &mut status, "SOCKS5 authentication reply")?;
            if status[1] != 0 {
                return Err(proxy.error(format!(
                    "SOCKS5 username/password authentication failed (status {})",
                    status[1]
                )));
            }
        }
        (0xFF, None) => {
            return Err(proxy.error(
                "the SOCKS5 proxy requires authentication: put user:password@ in the proxy URL",
            ))
        }
        (0xFF, Some(_)) => {
            return Err(proxy
                .error("the SOCKS5 proxy accepts neither no authentication nor username/password"))
        }
        (method, _) => {
            return Err(proxy.error(format!(
                "the SOCKS5 proxy chose authentication method {method:#04x}, which was not offered"
            )))
        }
    }

    // CONNECT request.
    let mut request = vec![5, 0x01, 0x00];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(0x01);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(0x04);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            if host.len() > 255 {
                return Err(proxy.error("SOCKS5 host names are at most 255 bytes"));
            }
            request.push(0x03);
            request.push(host.len() as u8);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    send(stream, &request)?;

    let mut reply = [0u8; 4];
    receive(stream, proxy, &mut reply, "SOCKS5 reply")?;
    if reply[0] != 5 {
        return Err(proxy.error(format!(
            "not a SOCKS5 proxy: its reply has version {}",
            reply[0]
        )));
    }
    if reply[1] != 0 {
        return Err(proxy.error(format!(
            "SOCKS5 connect to {} failed: {} (reply {})",
            authority(host, port),
            socks5_reply_text(reply[1]),
            reply[1]
        )));
    }
    // Skip the bound address and port so the stream starts at the target's bytes.
    let rest = match reply[3] {
        0x01 => 4 + 2,
        0x04 => 16 + 2,
        0x03 => {
            let mut len = [0u8; 1];
            receive(stream, proxy, &mut len, "SOCKS5 reply")?;
            usize::from(len[0]) + 2
        }
        other => return Err(proxy.error(format!("SOCKS5 reply has unknown address type {other}"))),
    };
    let mut bound = [0u8; 255 + 2];
    receive(stream, proxy, &mut bound[..rest], "SOCKS5 reply")
}

fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

fn socks4<S: Read + Write>(stream: &mut S, proxy: &Proxy, host: &str, port: u16) -> Result<()> {
    let (ip, name) = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => (ip, None),
        Ok(IpAddr::V6(_)) if proxy.kind == Kind::Socks4 => {
            return Err(proxy.error(format!(
                "SOCKS4 cannot reach the IPv6 address {host}: use socks5:// or socks4a://"
            )))
        }
        Err(_) if proxy.kind == Kind::Socks4 => {
            return Err(proxy.error(format!(
                "SOCKS4 needs an IPv4 address, not the name {host:?}: resolve it first, or use socks4a://"
            )))
        }
        // SOCKS4a: 0.0.0.x (x != 0) says "the name follows".
        _ => (Ipv4Addr::new(0, 0, 0, 1), Some(host)),
    };
    let user = proxy.credentials.as_ref().map_or("", |c| c.user.as_str());
    if user.contains('\0') || host.contains('\0') {
        return Err(proxy.error("SOCKS4 user ids and host names cannot contain NUL"));
    }
    let mut request = vec![4, 0x01];
    request.extend_from_slice(&port.to_be_bytes());
    request.extend_from_slice(&ip.octets());
    request.extend_from_slice(user.as_bytes());
    request.push(0);
    if let Some(name) = name {
        request.extend_from_slice(name.as_bytes());
        request.push(0);
    }
    send(stream, &request)?;

    let mut reply = [0u8; 8];
    receive(stream, proxy, &mut reply, "SOCKS4 reply")?;
    if reply[0] != 0 {
        return Err(proxy.error(format!(
            "not a SOCKS4 proxy: its reply has version {}",
            reply[0]
        )));
    }
    let reason = match reply[1] {
        0x5A => return Ok(()),
        0x5B => "request rejected or failed",
        0x5C => "request rejected: the proxy could not reach identd on this host",
        0x5D => "request rejected: identd reported a different user id",
        _ => "unknown reply code",
    };
    Err(proxy.error(format!(
        "{} connect to {} failed: {reason} (reply {:#04x})",
        if proxy.kind == Kind::Socks4 {
            "SOCKS4"
        } else {
            "SOCKS4a"
        },
        authority(host, port),
        reply[1]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Cursor;

    fn proxy(url: &str) -> Proxy {
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
    fn base64_known_vectors() {
        // RFC 4648 §10, and RFC 7617's example.
        let cases: [(&[u8], &str); 9] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (b"Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            (&[0xFB, 0xFF, 0xBF], "+/+/"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input), expected, "{input:?}");
        }
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

    // --- no_proxy ---------------------------------------------------------

    #[test]
    fn no_proxy_table() {
        // no_proxy, host, port, expected
        let cases: &[(&str, &str, u16, bool)] = &[
            ("", "example.com", 80, false),
            (" , ,", "example.com", 80, false),
            ("*", "example.com", 80, true),
            ("*", "10.0.0.1", 80, true),
            ("*", "::1", 80, true),
            ("other.org, *", "example.com", 80, true),
            // exact names and domain suffixes (curl)
            ("example.com", "example.com", 80, true),
            ("example.com", "a.example.com", 80, true),
            ("example.com", "a.b.example.com", 80, true),
            ("example.com", "badexample.com", 80, false),
            ("example.com", "example.com.evil.org", 80, false),
            ("example.com", "com", 80, false),
            (".example.com", "example.com", 80, true),
            (".example.com", "a.example.com", 80, true),
            (".example.com", "badexample.com", 80, false),
            ("*.example.com", "a.example.com", 80, true),
            ("*.example.com", "badexample.com", 80, false),
            ("EXAMPLE.com", "Example.COM", 80, true),
            ("example.com.", "a.example.com", 80, true),
            ("example.com", "a.example.com.", 80, true),
            ("localhost", "localhost", 9001, true),
            ("  foo.org ,  example.com  ", "x.example.com", 80, true),
            ("foo.org,bar.org", "example.com", 80, false),
            // ports
            ("example.com:8080", "example.com", 8080, true),
            ("example.com:8080", "example.com", 80, false),
            ("example.com:8080", "a.example.com", 8080, true),
            ("example.com:x", "example.com", 80, false),
            ("example.com:99999", "example.com", 80, false),
            // IPv4
            ("127.0.0.1", "127.0.0.1", 80, true),
            ("127.0.0.1", "127.0.0.2", 80, false),
            ("127.0.0.1:9001", "127.0.0.1", 9001, true),
            ("127.0.0.1:9001", "127.0.0.1", 9002, false),
            ("10.0.0.0/8", "10.200.3.4", 80, true),
            ("10.0.0.0/8", "11.0.0.1", 80, false),
            ("10.0.0.0/8:443", "10.1.1.1", 443, true),
            ("10.0.0.0/8:443", "10.1.1.1", 80, false),
            ("192.168.1.0/24", "192.168.1.255", 80, true),
            ("192.168.1.0/24", "192.168.2.0", 80, false),
            ("0.0.0.0/0", "8.8.8.8", 80, true),
            ("0.0.0.0/0", "::1", 80, false),
            ("10.0.0.0/33", "10.0.0.1", 80, false),
            ("10.0.0.0/x", "10.0.0.1", 80, false),
            ("0.0.1", "127.0.0.1", 80, false),
            ("127.0.0.1", "localhost", 80, false),
            ("example.com/8", "example.com", 80, false),
            // IPv6
            ("::1", "::1", 80, true),
            ("::1", "[::1]", 80, true),
            ("[::1]", "::1", 80, true),
            ("[::1]:9001", "::1", 9001, true),
            ("[::1]:9001", "::1", 9002, false),
            ("::1/128", "::1", 80, true),
            ("::1/128", "::2", 80, false),
            ("fd00::/8", "fd12:3456::1", 80, true),
            ("fd00::/8", "fe80::1", 80, false),
            ("[fd00::]/8", "fd00::5", 80, true),
            ("[fd00::]/8:443", "fd00::5", 443, true),
            ("[fd00::]/8:443", "fd00::5", 80, false),
            ("::/0", "2001:db8::1", 80, true),
            ("::/0", "10.0.0.1", 80, false),
            ("::1/129", "::1", 80, false),
            ("[::1", "::1", 80, false),
            ("127.0.0.1", "::ffff:127.0.0.1", 80, false),
            ("::1", "localhost", 80, false),
        ];
        for &(no_proxy, host, port, expected) in cases {
            assert_eq!(
                no_proxy_matches(no_proxy, host, port),
                expected,
                "no_proxy={no_proxy:?} host={host} port={port}"
            );
        }
    }

    // --- environment ------------------------------------------------------

    fn target(url: &str) -> Target {
        crate::url::parse(url).unwrap()
    }

    fn env_proxy(url: &str, vars: &[(&str, &str)]) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env_with(&target(url), |name| vars.get(name).cloned()).map(|p| p.to_string())
    }

    #[test]
    fn env_table() {
        type Vars = &'static [(&'static str, &'static str)];
        // url, variables, expected proxy (Display)
        #[rustfmt::skip]
        let cases: &[(&str, Vars, Option<&str>)] = &[
            ("ws://h/", &[], None),
            ("ws://h/", &[("http_proxy", "http://p:1")], Some("http://p:1")),
            ("wss://h/", &[("http_proxy", "http://p:1")], None),
            ("wss://h/", &[("https_proxy", "http://p:2")], Some("http://p:2")),
            ("ws://h/", &[("https_proxy", "http://p:2")], None),
            ("ws://h/", &[("HTTP_PROXY", "http://P:1")], Some("http://p:1")),
            ("wss://h/", &[("HTTPS_PROXY", "http://P:2")], Some("http://p:2")),
            // lower case first
            ("ws://h/", &[("http_proxy", "http://lo:1"), ("HTTP_PROXY", "http://up:1")], Some("http://lo:1")),
            ("wss://h/", &[("https_proxy", "http://lo:1"), ("HTTPS_PROXY", "http://up:1")], Some("http://lo:1")),
            ("ws://h/", &[("all_proxy", "socks5h://lo:1"), ("ALL_PROXY", "socks5h://up:1")], Some("socks5h://lo:1")),
            // scheme-specific before all_proxy
            ("ws://h/", &[("all_proxy", "socks5://a:1"), ("HTTP_PROXY", "http://s:1")], Some("http://s:1")),
            ("wss://h/", &[("ALL_PROXY", "socks5://a:1")], Some("socks5://a:1")),
            ("ws://h/", &[("all_proxy", "socks4a://a:1")], Some("socks4a://a:1")),
            // empty counts as unset
            ("ws://h/", &[("http_proxy", ""), ("HTTP_PROXY", "http://up:1")], Some("http://up:1")),
            ("ws://h/", &[("http_proxy", "  "), ("all_proxy", "http://all:1")], Some("http://all:1")),
            // no scheme means http://
            ("ws://h/", &[("http_proxy", "p:3128")], Some("http://p:3128")),
            ("ws://h/", &[("http_proxy", "u:pw@p:3128")], Some("http://u:***@p:3128")),
            ("ws://h/", &[("http_proxy", "p")], Some("http://p:80")),
            // unparsable: skipped, the next one is used
            ("ws://h/", &[("http_proxy", "ftp://p:1"), ("HTTP_PROXY", "http://ok:1")], Some("http://ok:1")),
            ("ws://h/", &[("http_proxy", "http://p:1/path")], None),
            ("ws://h/", &[("http_proxy", "http://u:pw@p:notaport"), ("all_proxy", "socks5h://s:1")], Some("socks5h://s:1")),
            // no_proxy applies to every kind
            ("ws://h/", &[("http_proxy", "http://p:1"), ("no_proxy", "h")], None),
            ("ws://a.h:9/", &[("http_proxy", "http://p:1"), ("NO_PROXY", ".h")], None),
            ("wss://h/", &[("all_proxy", "socks5://p:1"), ("no_proxy", "*")], None),
            ("ws://127.0.0.1:9001/", &[("all_proxy", "socks5://p:1"), ("no_proxy", "127.0.0.0/8")], None),
            ("ws://[::1]:9001/", &[("http_proxy", "p:1"), ("no_proxy", "::1")], None),
            ("ws://h:9001/", &[("http_proxy", "p:1"), ("no_proxy", "h:9002")], Some("http://p:1")),
            ("ws://other/", &[("http_proxy", "p:1"), ("no_proxy", "h")], Some("http://p:1")),
            // lower-case no_proxy wins, even when it does not match; empty counts as unset
            ("ws://h/", &[("http_proxy", "p:1"), ("no_proxy", "x"), ("NO_PROXY", "h")], Some("http://p:1")),
            ("ws://h/", &[("http_proxy", "p:1"), ("no_proxy", ""), ("NO_PROXY", "h")], None),
            // httpoxy: HTTP_PROXY is not trusted in a CGI program
            ("ws://h/", &[("HTTP_PROXY", "http://evil:1"), ("REQUEST_METHOD", "GET")], None),
            ("ws://h/", &[("http_proxy", "http://ok:1"), ("REQUEST_METHOD", "GET")], Some("http://ok:1")),
            ("wss://h/", &[("HTTPS_PROXY", "http://ok:1"), ("REQUEST_METHOD", "GET")], Some("http://ok:1")),
        ];
        for (url, vars, expected) in cases {
            assert_eq!(env_proxy(url, vars).as_deref(), *expected, "{url} {vars:?}");
        }
    }

    // --- tunnels ----------------------------------------------------------

    /// A stream that reads from `input` and records what is written.
    /// With `stall`, a read at the end of `input` times out instead of
    /// returning end of stream.
    struct Fake {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
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

        fn rest(&self) -> &[u8] {
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

    fn run(proxy_url: &str, host: &str, port: u16, reply: impl AsRef<[u8]>) -> (Result<()>, Fake) {
        let mut fake = Fake::new(reply);
        let result = tunnel(&mut fake, &proxy(proxy_url), host, port);
        (result, fake)
    }

    fn reason(result: Result<()>) -> String {
        match result {
            Err(Error::Proxy { proxy, reason }) => {
                assert!(!proxy.contains("pw"), "{proxy}");
                reason
            }
            other => panic!("expected a proxy error, got {other:?}"),
        }
    }

    #[test]
    fn connect_ok_leaves_the_rest_of_the_stream() {
        let (r, fake) = run(
            "http://p:3128",
            "echo.example",
            9001,
            "HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nHTTP/1.1 101 ...",
        );
        r.unwrap();
        assert_eq!(
            fake.output,
            b"CONNECT echo.example:9001 HTTP/1.1\r\nHost: echo.example:9001\r\n\r\n"
        );
        assert_eq!(fake.rest(), b"HTTP/1.1 101 ...");

        // HTTP/1.0, other 2xx, LF-only line ends.
        for reply in [
            "HTTP/1.0 200 OK\r\n\r\nX",
            "HTTP/1.1 204\r\n\r\nX",
            "HTTP/1.1 200 OK\n\nX",
        ] {
            let (r, fake) = run("https://p", "h", 1, reply);
            r.unwrap_or_else(|e| panic!("{reply:?}: {e}"));
            assert_eq!(fake.rest(), b"X", "{reply:?}");
        }
    }

    #[test]
    fn connect_ipv6_target_and_basic_auth() {
        let (r, fake) = run(
            "http://Aladdin:open%20sesame@p:3128",
            "::1",
            443,
            "HTTP/1.1 200 OK\r\n\r\n",
        );
        r.unwrap();
        assert_eq!(
            String::from_utf8(fake.output).unwrap(),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
        // Brackets already present are not doubled.
        let (r, fake) = run("http://p", "[::1]", 1, "HTTP/1.1 200 OK\r\n\r\n");
        r.unwrap();
        assert!(fake.output.starts_with(b"CONNECT [::1]:1 HTTP/1.1\r\n"));
    }

    #[test]
    fn connect_refusals() {
        let r = reason(run("http://p:3128", "h", 1, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=x\r\nContent-Length: 3\r\n\r\nabc").0);
        assert!(
            r.starts_with("CONNECT refused: 407 Proxy Authentication Required"),
            "{r}"
        );
        assert!(r.contains("wants credentials"), "{r}");
        let r = reason(
            run(
                "http://u:pw@p:3128",
                "h",
                1,
                "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            )
            .0,
        );
        assert!(r.contains("did not accept the credentials"), "{r}");
        let r = reason(run("http://p", "h", 1, "HTTP/1.1 403 Forbidden\r\n\r\n").0);
        assert_eq!(r, "CONNECT refused: 403 Forbidden");
        let r = reason(run("http://p", "h", 1, "HTTP/1.1 503\r\n\r\n").0);
        assert_eq!(r, "CONNECT refused: 503");
        let r = reason(
            run(
                "http://p",
                "h",
                1,
                "HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n",
            )
            .0,
        );
        assert_eq!(r, "CONNECT refused: 301 Moved");
        let r = reason(run("http://p", "h", 1, "SSH-2.0-OpenSSH\r\n\r\n").0);
        assert!(
            r.contains("not an HTTP response") && r.contains("SSH-2.0"),
            "{r}"
        );
        let r = reason(run("http://p", "h", 1, "HTTP/1.1 2000 OK\r\n\r\n").0);
        assert!(r.contains("not an HTTP response"), "{r}");
        let r = reason(run("http://p", "h", 1, "HTTP/2 200\r\n\r\n").0);
        assert!(r.contains("not an HTTP response"), "{r}");
        let r = reason(run("http://p", "h", 1, "HTTP/1.1 400 Bad\x07 request\r\n\r\n").0);
        assert_eq!(r, "CONNECT refused: 400 Bad request");
    }

    #[test]
    fn connect_truncated_and_oversized() {
        let r = reason(run("http://p", "h", 1, "").0);
        assert!(r.contains("without a response"), "{r}");
        let r = reason(run("http://p", "h", 1, "HTTP/1.1 200 OK\r\nVia: x\r\n").0);
        assert!(r.contains("in the middle of the CONNECT response"), "{r}");

        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        while long.len() < MAX_RESPONSE_HEAD + 100 {
            long.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        long.extend_from_slice(b"\r\n");
        let (r, fake) = run("http://p", "h", 1, &long);
        assert!(reason(r).contains("longer than 16384 bytes"));
        assert_eq!(fake.input.position() as usize, MAX_RESPONSE_HEAD);

        // Just under the bound is fine.
        let mut fits = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        fits.resize(MAX_RESPONSE_HEAD - 4, b'a');
        fits.extend_from_slice(b"\r\n\r\nZ");
        let (r, fake) = run("http://p", "h", 1, &fits);
        r.unwrap();
        assert_eq!(fake.rest(), b"Z");
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
    fn socks5_no_auth_domain_ipv4_ipv6() {
        const OK_V4: &[u8] = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38";
        // socks5h with a name: domain address type.
        let mut reply = b"\x05\x00".to_vec();
        reply.extend_from_slice(OK_V4);
        reply.extend_from_slice(b"REST");
        let (r, fake) = run("socks5h://p", "echo.example", 9001, &reply);
        r.unwrap();
        let mut expected = b"\x05\x01\x00\x05\x01\x00\x03\x0cecho.example".to_vec();
        expected.extend_from_slice(&9001u16.to_be_bytes());
        assert_eq!(fake.output, expected);
        assert_eq!(fake.rest(), b"REST");

        // IPv4 literal.
        let mut reply = b"\x05\x00".to_vec();
        reply.extend_from_slice(OK_V4);
        let (r, fake) = run("socks5://p", "10.1.2.3", 80, &reply);
        r.unwrap();
        assert_eq!(
            fake.output,
            b"\x05\x01\x00\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50"
        );

        // IPv6 literal, with an IPv6 bound address in the reply.
        let mut reply = b"\x05\x00\x05\x00\x00\x04".to_vec();
        reply.extend_from_slice(&[0; 16]);
        reply.extend_from_slice(b"\x00\x50REST");
        let (r, fake) = run("socks5://p", "[::1]", 80, &reply);
        r.unwrap();
        let mut expected = b"\x05\x01\x00\x05\x01\x00\x04".to_vec();
        expected.extend_from_slice(&"::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        expected.extend_from_slice(b"\x00\x50");
        assert_eq!(fake.output, expected);
        assert_eq!(fake.rest(), b"REST");

        // A name with plain socks5 (the caller did not resolve): sent as a name.
        let mut reply = b"\x05\x00\x05\x00\x00\x03\x04host\x00\x50".to_vec();
        reply.extend_from_slice(b"REST");
        let (r, fake) = run("socks5://p", "h", 80, &reply);
        r.unwrap();
        assert_eq!(fake.output, b"\x05\x01\x00\x05\x01\x00\x03\x01h\x00\x50");
        assert_eq!(fake.rest(), b"REST");
    }

    #[test]
    fn socks5_username_password() {
        let reply = b"\x05\x02\x01\x00\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00";
        let (r, fake) = run("socks5h://bob:p%40w@p", "h", 80, reply);
        r.unwrap();
        assert_eq!(
            fake.output,
            b"\x05\x02\x00\x02\x01\x03bob\x03p@w\x05\x01\x00\x03\x01h\x00\x50"
        );
        // The proxy may skip authentication even when we offer it.
        let reply = b"\x05\x00\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00";
        let (r, fake) = run("socks5h://bob:pw@p", "h", 80, reply);
        r.unwrap();
        assert_eq!(
            fake.output,
            b"\x05\x02\x00\x02\x05\x01\x00\x03\x01h\x00\x50"
        );
        // Some servers answer the sub-negotiation with version 5.
        let reply = b"\x05\x02\x05\x00\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00";
        run("socks5h://bob:pw@p", "h", 80, reply).0.unwrap();
    }

    #[test]
    fn socks5_refusals() {
        let r = reason(run("socks5h://bob:pw@p", "h", 80, b"\x05\x02\x01\x01").0);
        assert!(r.contains("authentication failed (status 1)"), "{r}");
        let r = reason(run("socks5h://p", "h", 80, b"\x05\xff").0);
        assert!(r.contains("requires authentication"), "{r}");
        let r = reason(run("socks5h://bob:pw@p", "h", 80, b"\x05\xff").0);
        assert!(r.contains("accepts neither"), "{r}");
        let r = reason(run("socks5h://p", "h", 80, b"\x05\x02").0);
        assert!(r.contains("method 0x02, which was not offered"), "{r}");
        let r = reason(run("socks5h://p", "h", 80, b"HTTP/1.1 400 Bad Request\r\n\r\n").0);
        assert!(r.contains("not a SOCKS5 proxy"), "{r}");
        let r = reason(run("socks5h://p", "h", 80, b"\x05\x00\x04\x00\x00\x01").0);
        assert!(r.contains("not a SOCKS5 proxy"), "{r}");
        let texts = [
            (1, "general SOCKS server failure"),
            (2, "connection not allowed by ruleset"),
            (3, "network unreachable"),
            (4, "host unreachable"),
            (5, "connection refused"),
            (6, "TTL expired"),
            (7, "command not supported"),
            (8, "address type not supported"),
            (9, "unknown reply code"),
        ];
        for (code, text) in texts {
            let reply = [5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0];
            let r = reason(run("socks5h://p", "h", 9001, reply).0);
            assert_eq!(
                r,
                format!("SOCKS5 connect to h:9001 failed: {text} (reply {code})")
            );
        }
        let r = reason(run("socks5h://p", "h", 80, b"\x05\x00\x05\x00\x00\x07").0);
        assert!(r.contains("unknown address type 7"), "{r}");
        let long = "a".repeat(256);
        let r = reason(run("socks5h://p", &long, 80, b"\x05\x00").0);
        assert!(r.contains("at most 255 bytes"), "{r}");
    }

    #[test]
    fn socks5_truncated_replies() {
        let cases: [&[u8]; 8] = [
            b"",
            b"\x05",
            b"\x05\x02\x01",
            b"\x05\x00",
            b"\x05\x00\x05\x00",
            b"\x05\x00\x05\x00\x00\x01\x7f\x00",
            b"\x05\x00\x05\x00\x00\x03",
            b"\x05\x00\x05\x00\x00\x03\x04hos",
        ];
        for reply in cases {
            let r = reason(run("socks5h://bob:pw@p", "h", 80, reply).0);
            assert!(
                r.contains("connection closed by the proxy"),
                "{reply:?}: {r}"
            );
        }
    }

    #[test]
    fn socks4_and_socks4a() {
        let ok = b"\x00\x5a\x00\x00\x00\x00\x00\x00REST";
        // SOCKS4: IPv4, empty user id.
        let (r, fake) = run("socks4://p", "127.0.0.1", 9001, ok);
        r.unwrap();
        assert_eq!(fake.output, b"\x04\x01\x23\x29\x7f\x00\x00\x01\x00");
        assert_eq!(fake.rest(), b"REST");
        // SOCKS4 with a user id.
        let (r, fake) = run("socks4://fred@p", "10.0.0.2", 80, ok);
        r.unwrap();
        assert_eq!(fake.output, b"\x04\x01\x00\x50\x0a\x00\x00\x02fred\x00");
        // SOCKS4a: 0.0.0.1, user id, then the name.
        let (r, fake) = run("socks4a://fred@p", "echo.example", 80, ok);
        r.unwrap();
        assert_eq!(
            fake.output,
            b"\x04\x01\x00\x50\x00\x00\x00\x01fred\x00echo.example\x00"
        );
        assert_eq!(fake.rest(), b"REST");
        // SOCKS4a with an IPv4 literal: plain SOCKS4.
        let (r, fake) = run("socks4a://p", "10.0.0.2", 80, ok);
        r.unwrap();
        assert_eq!(fake.output, b"\x04\x01\x00\x50\x0a\x00\x00\x02\x00");
    }

    #[test]
    fn socks4_refusals() {
        let r = reason(run("socks4://p", "echo.example", 80, b"").0);
        assert!(
            r.contains("needs an IPv4 address") && r.contains("socks4a://"),
            "{r}"
        );
        let r = reason(run("socks4://p", "::1", 80, b"").0);
        assert!(r.contains("cannot reach the IPv6 address"), "{r}");
        let texts = [
            (0x5B, "request rejected or failed"),
            (0x5C, "could not reach identd"),
            (0x5D, "identd reported a different user id"),
            (0x42, "unknown reply code"),
        ];
        for (code, text) in texts {
            let r = reason(run("socks4a://p", "h", 80, [0, code, 0, 0, 0, 0, 0, 0]).0);
            assert!(r.starts_with("SOCKS4a connect to h:80 failed: "), "{r}");
            assert!(
                r.contains(text) && r.contains(&format!("{code:#04x}")),
                "{r}"
            );
        }
        let r = reason(run("socks4://p", "10.0.0.1", 80, [0, 0x5B, 0, 0, 0, 0, 0, 0]).0);
        assert!(r.starts_with("SOCKS4 connect to 10.0.0.1:80 failed"), "{r}");
        let r = reason(
            run(
                "socks4://p",
                "10.0.0.1",
                80,
                b"\x05\x00\x00\x00\x00\x00\x00\x00",
            )
            .0,
        );
        assert!(r.contains("not a SOCKS4 proxy"), "{r}");
        for truncated in [&b""[..], b"\x00", b"\x00\x5a\x00\x00\x00\x00\x00"] {
            let r = reason(run("socks4://p", "10.0.0.1", 80, truncated).0);
            assert!(
                r.contains("connection closed by the proxy"),
                "{truncated:?}: {r}"
            );
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
