//! HTTP proxies: the `CONNECT` request with Basic auth, reading and judging
//! the proxy's reply, and TLS to an `https://` proxy.
//!
//! Owns the bytes of the CONNECT exchange and the TLS options used for the
//! proxy itself. It must not read one byte past the reply's blank line (that
//! is the target's), nor connect sockets or resolve names (`proxy::open` does).

use std::io::{self, Read, Write};
use std::time::Instant;

use data_encoding::BASE64;

use super::{send, Proxy};
use crate::error::{Error, Phase, Result};
use crate::stream::Stream;
use crate::tls::TlsOptions;
use crate::url::authority;

/// Longest CONNECT response head accepted, status line to blank line.
pub(super) const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// TLS to an `https://` proxy, its certificate checked against the proxy's
/// host with the client's roots and identity. The server-name override is the
/// target's, not the proxy's, so it is not used here.
pub(super) fn wrap_tls(
    stream: Stream,
    proxy: &Proxy,
    tls: &TlsOptions,
    deadline: Instant,
) -> Result<Stream> {
    let proxy_tls = TlsOptions {
        server_name: None,
        ..tls.clone()
    };
    crate::tls::wrap(stream, proxy.host(), &proxy_tls, deadline)
}

/// Sends `CONNECT host:port` (with `Proxy-Authorization: Basic` when the proxy
/// URL has credentials) and reads the reply head; any 2xx opens the tunnel.
pub(super) fn connect<S: Read + Write>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<()> {
    let target = authority(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = &proxy.credentials {
        let token = BASE64.encode(format!("{}:{}", c.user, c.password).as_bytes());
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    send(stream, request.as_bytes())?;

    let head = read_head(stream, proxy)?;
    let Some((status, reason)) = parse_status(&head) else {
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
/// time so that nothing of the tunnelled stream is consumed; at most
/// [`MAX_RESPONSE_HEAD`] bytes. The stream's deadline bounds a proxy that
/// trickles its reply.
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
            Err(e) => return Err(Error::from_io(Phase::Proxy, e, Error::Io)),
        }
    }
    Err(proxy.error(format!(
        "CONNECT response head longer than {MAX_RESPONSE_HEAD} bytes"
    )))
}

/// A complete response head (HTTP/1.0 or 1.1) → status and a printable
/// reason phrase (at most 100 characters). Headers are checked leniently:
/// the tunnel needs none of them.
fn parse_status(head: &[u8]) -> Option<(u16, String)> {
    // A control character in the reason phrase (which httparse refuses) must
    // not turn a clear refusal into "not an HTTP response": drop them.
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let mut cleaned: Vec<u8> = head[..line_end]
        .iter()
        .copied()
        .filter(|&b| !(b.is_ascii_control() && b != b'\r' && b != b'\t'))
        .collect();
    cleaned.extend_from_slice(&head[line_end..]);
    // Each header takes a line: this many slots are always enough.
    let lines = cleaned.iter().filter(|&&b| b == b'\n').count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines];
    let mut response = httparse::Response::new(&mut headers);
    let parsed = httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true)
        .parse_response(&mut response, &cleaned);
    if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let reason = response
        .reason
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    Some((response.code?, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::tests::{reason, run};

    #[test]
    fn basic_auth_token_is_standard_base64() {
        // RFC 7617's example, and bytes that use '+' and '/'.
        assert_eq!(
            BASE64.encode(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(BASE64.encode(&[0xFB, 0xFF, 0xBF]), "+/+/");
        assert_eq!(BASE64.encode(b"f"), "Zg==");
    }

    #[test]
    fn status_lines() {
        let ok = |head: &str| parse_status(head.as_bytes());
        assert_eq!(ok("HTTP/1.1 200 OK\r\n\r\n"), Some((200, "OK".into())));
        assert_eq!(ok("HTTP/1.0 204\r\n\r\n"), Some((204, String::new())));
        assert_eq!(
            ok("HTTP/1.1 407 Who\tare you\r\nProxy-Authenticate: Basic\r\n\r\n"),
            Some((407, "Whoare you".into()))
        );
        // Odd headers do not matter; odd status lines do.
        assert_eq!(ok("HTTP/1.1 200 OK\r\nbad header\r\n\r\n").unwrap().0, 200);
        assert_eq!(ok("HTTP/1.1 200  OK\r\n\r\n").unwrap().0, 200);
        for bad in [
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.2x 200\r\n\r\n",
            "\r\n\r\n",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
        let long = format!("HTTP/1.1 403 {}\r\n\r\n", "x".repeat(300));
        assert_eq!(ok(&long).unwrap().1.len(), 100);
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
}
