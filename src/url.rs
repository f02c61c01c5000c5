//! URL layer: turns a `ws://` or `wss://` string into a [`Target`].
//!
//! Owns parsing and validation of WebSocket URLs, and redaction of credentials
//! for messages. It does no I/O and knows nothing of sockets or proxies.

use crate::error::{Error, Result};

/// Where to connect: a parsed and checked WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `wss://`: TLS to the server.
    pub(crate) secure: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub(crate) host: String,
    /// Port, with the scheme's default filled in.
    pub(crate) port: u16,
    /// The URL without its fragment, as sent in the request line (path and query).
    pub(crate) url: String,
}

impl Target {
    /// `host:port` as written in a `Host` header or a CONNECT request (IPv6 in brackets).
    pub(crate) fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// `host:port`, with an IPv6 literal (given without brackets) in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses and checks a WebSocket URL.
pub(crate) fn parse(input: &str) -> Result<Target> {
    let trimmed = input.trim();
    let scheme_end = trimmed
        .find("://")
        .ok_or_else(|| Error::url(input, "missing scheme: use ws:// or wss://"))?;
    let secure = match trimmed[..scheme_end].to_ascii_lowercase().as_str() {
        "ws" => false,
        "wss" => true,
        other => {
            return Err(Error::url(
                input,
                format!("scheme {other:?} is not supported: use ws:// or wss://"),
            ))
        }
    };
    // WHATWG parsing would take `ws:///path` as host "path".
    if trimmed[scheme_end + 3..].starts_with(['/', '?', '#']) || trimmed.len() == scheme_end + 3 {
        return Err(Error::url(input, "missing host"));
    }
    let mut url = url::Url::parse(trimmed).map_err(|e| Error::url(input, e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::url(
            input,
            "credentials in the URL are not supported: send them with .header(\"Authorization\", ..)",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err(Error::url(input, "missing host")),
    };
    let port = url
        .port_or_known_default()
        .unwrap_or(if secure { 443 } else { 80 });
    if port == 0 {
        return Err(Error::url(input, "port 0 is not a port to connect to"));
    }
    url.set_fragment(None);
    Ok(Target {
        secure,
        host,
        port,
        url: url.to_string(),
    })
}

/// The URL with any `user:password@` removed, for messages and logs.
pub(crate) fn redact(input: &str) -> String {
    let (prefix, rest) = match input.find("://") {
        Some(i) => input.split_at(i + 3),
        None => ("", input),
    };
    // The userinfo ends at the last '@' before the path; but a password that is
    // not percent-encoded may hold a '/', so any '@' after a ':' also counts.
    // Redacting too much is harmless here: this is for messages and logs.
    let path_start = rest.find('/').unwrap_or(rest.len());
    let at = rest[..path_start]
        .rfind('@')
        .or_else(|| rest.rfind('@').filter(|&at| rest[..at].contains(':')));
    match at {
        Some(at) => format!("{prefix}***@{}", &rest[at + 1..]),
        None => input.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Target {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn refused(s: &str) -> String {
        match parse(s) {
            Ok(t) => panic!("{s} accepted as {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_and_schemes() {
        let t = ok("ws://example.com");
        assert_eq!(
            (t.secure, t.host.as_str(), t.port),
            (false, "example.com", 80)
        );
        assert_eq!(t.url, "ws://example.com/");
        let t = ok("WSS://Example.COM/a");
        assert_eq!(
            (t.secure, t.host.as_str(), t.port),
            (true, "example.com", 443)
        );
        assert_eq!(ok("wss://h:443/").port, 443);
        assert_eq!(ok("ws://h:8080/").port, 8080);
    }

    #[test]
    fn path_query_kept_fragment_dropped() {
        let t = ok("ws://h:1/a/b?x=1&y=2#frag");
        assert_eq!(t.url, "ws://h:1/a/b?x=1&y=2");
    }

    #[test]
    fn ipv6_literals() {
        let t = ok("ws://[::1]:9001/x");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9001));
        assert_eq!(t.authority(), "[::1]:9001");
        assert_eq!(ok("ws://127.0.0.1:5/").authority(), "127.0.0.1:5");
        assert_eq!(authority("fe80::1", 80), "[fe80::1]:80");
        assert_eq!(authority("h", 1), "h:1");
    }

    #[test]
    fn refusals_name_url_and_reason() {
        assert!(refused("http://h/").contains("ws:// or wss://"));
        assert!(refused("h:80").contains("missing scheme"));
        assert!(refused("ws://h:0/").contains("port 0"));
        assert!(refused("ws://h:65536/").contains("port"));
        assert!(refused("ws://h:abc/").contains("port"));
        assert!(refused("ws:///path").contains("ws:///path"));
        assert!(refused("ws://[::1/").contains("ws://[::1/"));
        let e = refused("ws://bob:secret@h/");
        assert!(e.contains("credentials") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("http://u:p@proxy:3128"), "http://***@proxy:3128");
        assert_eq!(redact("ws://h/a@b"), "ws://h/a@b");
        assert_eq!(redact("nothing"), "nothing");
        assert_eq!(redact("u:pw@h:1"), "***@h:1");
        assert_eq!(redact("http://u:p/ss@h:3128"), "http://***@h:3128");
    }
}
