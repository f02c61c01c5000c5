//! The upgrade request: built from the client's options into the bytes that
//! are written, with what was offered (key, subprotocols, extensions) kept for
//! the checks of the response. Pure: no I/O.

use tungstenite::http::{HeaderName, HeaderValue};

use super::HandshakeOptions;
use crate::error::{Error, Result};
use crate::url::Target;

/// An upgrade request ready to write, and what it offered.
pub(crate) struct UpgradeRequest {
    /// The request head, `GET ...` to the blank line.
    pub(crate) head: Vec<u8>,
    /// The `Sec-WebSocket-Key` sent.
    pub(crate) key: String,
    /// The subprotocols offered, in order (from `subprotocols` and any
    /// `Sec-WebSocket-Protocol` header).
    pub(crate) protocols: Vec<String>,
    /// The extensions offered, as `Sec-WebSocket-Extensions` elements
    /// (permessage-deflate's offer, when compression is on).
    pub(crate) extensions: Vec<String>,
    /// The permessage-deflate options offered.
    pub(crate) compression: Option<crate::Compression>,
}

impl std::fmt::Debug for UpgradeRequest {
    // The head carries header values (credentials): leave it out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeRequest")
            .field("head_len", &self.head.len())
            .field("protocols", &self.protocols)
            .field("extensions", &self.extensions)
            .finish()
    }
}

/// Checks a header value: no CR/LF (header injection), only what HTTP allows.
fn header_value(name: &str, value: &str) -> Result<()> {
    if value.contains(['\r', '\n']) {
        return Err(Error::config(format!(
            "header {name:?}: value contains CR or LF (header injection refused)"
        )));
    }
    HeaderValue::from_str(value).map(drop).map_err(|_| {
        Error::config(format!(
            "header {name:?}: value has characters HTTP does not allow"
        ))
    })
}

/// Refuses request headers the handshake writes itself.
fn check_name(name: &str) -> Result<()> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Error::config(format!("header name {name:?} is not a valid token")))?;
    let lower = name.to_ascii_lowercase();
    let why = match lower.as_str() {
        "host" => "use Client::host_header to override the Host header",
        "sec-websocket-extensions" => {
            "extensions are negotiated by the client from its own options; it cannot be set by hand"
        }
        "sec-websocket-key" | "sec-websocket-version" | "upgrade" | "connection" => {
            "the client writes it for the upgrade; it cannot be replaced"
        }
        _ => return Ok(()),
    };
    Err(Error::config(format!("header {name:?}: {why}")))
}

fn check_subprotocol(p: &str) -> Result<()> {
    let token = !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && !b",;\"".contains(&b));
    if token {
        Ok(())
    } else {
        Err(Error::config(format!(
            "subprotocol {p:?} is not a valid token"
        )))
    }
}

/// `host[:port]` for the `Host` header: the port only when it is not the
/// scheme's default; IPv6 in brackets.
fn host_header(target: &Target) -> String {
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let default = if target.secure { 443 } else { 80 };
    if target.port == default {
        host
    } else {
        format!("{host}:{}", target.port)
    }
}

/// The path and query of the target, as sent in the request line.
fn request_target(target: &Target) -> Result<String> {
    let url = url::Url::parse(&target.url).map_err(|e| Error::url(&target.url, e.to_string()))?;
    let mut line = url.path().to_string();
    if line.is_empty() {
        line.push('/');
    }
    if let Some(q) = url.query() {
        line.push('?');
        line.push_str(q);
    }
    Ok(line)
}

/// Builds and checks the request with `key`; fails before any connection is made.
pub(crate) fn build_with_key(
    target: &Target,
    opts: &HandshakeOptions,
    key: String,
) -> Result<UpgradeRequest> {
    let mut protocols: Vec<String> = Vec::new();
    let mut offer = |p: &str| -> Result<()> {
        check_subprotocol(p)?;
        if !protocols.iter().any(|o| o == p) {
            protocols.push(p.to_string());
        }
        Ok(())
    };
    for p in &opts.subprotocols {
        offer(p)?;
    }
    let mut extra: Vec<(&str, &str)> = Vec::new();
    for (name, value) in &opts.headers {
        check_name(name)?;
        header_value(name, value)?;
        if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            // Merged with `subprotocols`: offered, so checked like them.
            for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                offer(p)?;
            }
            continue;
        }
        let replaced = (name.eq_ignore_ascii_case("origin") && opts.origin.is_some())
            || (name.eq_ignore_ascii_case("cookie") && opts.cookie.is_some());
        if !replaced {
            extra.push((name, value));
        }
    }
    let host = match &opts.host {
        Some(h) => {
            header_value("Host", h)?;
            h.clone()
        }
        None => host_header(target),
    };
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n",
        request_target(target)?
    );
    let mut line = |name: &str, value: &str| -> Result<()> {
        header_value(name, value)?;
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
        Ok(())
    };
    if !protocols.is_empty() {
        line("Sec-WebSocket-Protocol", &protocols.join(", "))?;
    }
    if let Some(origin) = &opts.origin {
        line("Origin", origin)?;
    }
    if let Some(cookie) = &opts.cookie {
        line("Cookie", cookie)?;
    }
    let extensions: Vec<String> = opts.compression.iter().map(|c| c.offer()).collect();
    if !extensions.is_empty() {
        line("Sec-WebSocket-Extensions", &extensions.join(", "))?;
    }
    for (name, value) in extra {
        line(name, value)?;
    }
    head.push_str("\r\n");
    Ok(UpgradeRequest {
        head: head.into_bytes(),
        key,
        protocols,
        extensions,
        compression: opts.compression,
    })
}

/// Builds and checks the request with a fresh random key.
pub(crate) fn build(target: &Target, opts: &HandshakeOptions) -> Result<UpgradeRequest> {
    build_with_key(target, opts, tungstenite::handshake::client::generate_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        crate::url::parse(url).unwrap()
    }

    fn head(url: &str, opts: &HandshakeOptions) -> String {
        let req = build_with_key(&target(url), opts, "dGhlIHNhbXBsZSBub25jZQ==".into()).unwrap();
        String::from_utf8(req.head).unwrap()
    }

    #[test]
    fn default_request_is_rfc_6455_s_example() {
        let h = head("ws://server.example.com/chat", &HandshakeOptions::default());
        assert_eq!(
            h,
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
    }

    #[test]
    fn host_has_the_port_unless_default_and_ipv6_in_brackets() {
        let opts = HandshakeOptions::default();
        assert!(head("ws://h:9001/", &opts).contains("\r\nHost: h:9001\r\n"));
        assert!(head("wss://h:443/", &opts).contains("\r\nHost: h\r\n"));
        assert!(head("wss://h:80/", &opts).contains("\r\nHost: h:80\r\n"));
        assert!(head("ws://[::1]:9/", &opts).contains("\r\nHost: [::1]:9\r\n"));
        assert!(head("ws://h/p?q=1&r", &opts).starts_with("GET /p?q=1&r HTTP/1.1\r\n"));
    }

    #[test]
    fn crlf_in_header_values_refused() {
        let opts = HandshakeOptions {
            headers: vec![("X-A".into(), "ok\r\nEvil: 1".into())],
            ..Default::default()
        };
        let e = build(&target("ws://h/"), &opts).unwrap_err().to_string();
        assert!(e.contains("CR or LF") && e.contains("X-A"), "{e}");
        for opts in [
            HandshakeOptions {
                origin: Some("a\nb".into()),
                ..Default::default()
            },
            HandshakeOptions {
                cookie: Some("a\rb".into()),
                ..Default::default()
            },
            HandshakeOptions {
                host: Some("h\r\nX: 1".into()),
                ..Default::default()
            },
        ] {
            assert!(build(&target("ws://h/"), &opts).is_err());
        }
    }

    #[test]
    fn bad_header_names_and_subprotocols_refused() {
        let opts = HandshakeOptions {
            headers: vec![("Bad Name".into(), "v".into())],
            ..Default::default()
        };
        assert!(build(&target("ws://h/"), &opts).is_err());
        for bad in ["a,b", "", "a b", "a;b"] {
            let opts = HandshakeOptions {
                subprotocols: vec![bad.into()],
                ..Default::default()
            };
            assert!(build(&target("ws://h/"), &opts).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserved_headers_refused_with_what_to_do() {
        for (name, hint) in [
            ("Host", "host_header"),
            ("sec-websocket-key", "cannot be replaced"),
            ("Sec-WebSocket-Version", "cannot be replaced"),
            ("UPGRADE", "cannot be replaced"),
            ("Connection", "cannot be replaced"),
            ("Sec-WebSocket-Extensions", "negotiated by the client"),
        ] {
            let opts = HandshakeOptions {
                headers: vec![(name.into(), "x".into())],
                ..Default::default()
            };
            let e = build(&target("ws://h/"), &opts).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config);
            assert!(e.to_string().contains(hint), "{e}");
        }
    }

    #[test]
    fn protocol_header_is_merged_with_subprotocols() {
        let opts = HandshakeOptions {
            headers: vec![("sec-websocket-protocol".into(), "b, c ,a".into())],
            subprotocols: vec!["a".into()],
            ..Default::default()
        };
        let req = build(&target("ws://h/"), &opts).unwrap();
        assert_eq!(req.protocols, ["a", "b", "c"]);
        let h = String::from_utf8(req.head).unwrap();
        assert_eq!(h.matches("Sec-WebSocket-Protocol").count(), 1, "{h}");
        assert!(h.contains("\r\nSec-WebSocket-Protocol: a, b, c\r\n"), "{h}");
    }

    #[test]
    fn request_carries_options() {
        let opts = HandshakeOptions {
            headers: vec![
                ("Authorization".into(), "Bearer x".into()),
                ("Origin".into(), "https://replaced".into()),
            ],
            subprotocols: vec!["v1".into(), "v2.json".into()],
            origin: Some("https://o".into()),
            cookie: Some("a=b".into()),
            host: Some("example.com".into()),
            compression: Some(crate::Compression::default()),
        };
        let h = head("ws://127.0.0.1:9/p?q=1", &opts);
        assert!(
            h.starts_with("GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\n"),
            "{h}"
        );
        for line in [
            "Authorization: Bearer x",
            "Sec-WebSocket-Protocol: v1, v2.json",
            "Origin: https://o",
            "Cookie: a=b",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        ] {
            assert!(h.contains(&format!("\r\n{line}\r\n")), "{line}: {h}");
        }
        assert!(!h.contains("replaced"), "{h}");
        let dbg = format!("{opts:?}");
        assert!(!dbg.contains("Bearer") && !dbg.contains("a=b"), "{dbg}");
    }
}
