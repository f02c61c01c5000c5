//! The upgrade response: parsing the head with `httparse`, the checks of
//! RFC 6455 4.1 (status, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`,
//! extensions and subprotocol against what was offered) and the framing of an
//! error body. Pure functions over bytes and headers: no I/O.

use tungstenite::http::{self, HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use super::request::UpgradeRequest;
use crate::error::{Error, Result};

/// The longest response head taken (status line and headers).
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// The most header lines taken in a response head.
const MAX_HEADERS: usize = 124;
/// The most bytes of a refusal's body kept (and read) for `Error::HandshakeRejected`.
pub(crate) const MAX_ERROR_BODY: usize = 64 << 10;

fn upgrade(problem: impl Into<String>) -> Error {
    Error::Upgrade {
        problem: problem.into(),
    }
}

/// Parses the response head at the start of `buf`. `Ok(None)`: more bytes are
/// needed. On success, the head (without body) and its length in `buf`.
/// `secure` says the bytes came over TLS to the server (`wss://`).
pub(crate) fn parse_head(buf: &[u8], secure: bool) -> Result<Option<(http::Response<()>, usize)>> {
    if let (Some(&first @ (0x15 | 0x16)), false) = (buf.first(), secure) {
        let record = if first == 0x15 { "alert" } else { "handshake" };
        return Err(upgrade(format!(
            "the server answered with a TLS {record} record (first byte {first:#04x}), not HTTP: \
             it speaks TLS; use wss:// instead of ws://"
        )));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(too_long());
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(too_long()),
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(upgrade(format!(
                "the response has more than {MAX_HEADERS} header lines (refused)"
            )))
        }
        Err(e) => {
            return Err(upgrade(format!(
                "the response is not HTTP ({e}): is this a WebSocket server?"
            )))
        }
    };
    let mut resp = http::Response::new(());
    let code = parsed.code.unwrap_or_default();
    *resp.status_mut() = StatusCode::from_u16(code)
        .map_err(|_| upgrade(format!("the response has an invalid status {code}")))?;
    *resp.version_mut() = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
            upgrade(format!(
                "the response has an invalid header name {:?}",
                h.name
            ))
        })?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| {
            upgrade(format!(
                "the response's {} header has an invalid value",
                h.name
            ))
        })?;
        resp.headers_mut().append(name, value);
    }
    Ok(Some((resp, len)))
}

fn too_long() -> Error {
    upgrade(format!(
        "the response head is longer than {} KiB (refused)",
        MAX_HEAD >> 10
    ))
}

/// The comma-separated elements of every `name` header line, trimmed, in order
/// (RFC 9110 5.3: lines of the same name are one list).
pub(crate) fn list<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_list)
        .collect()
}

/// Splits a header list on commas outside quoted strings.
fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|e| !e.is_empty());
    out
}

fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    list(headers, name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(token))
}

fn shown(headers: &HeaderMap, name: &str) -> String {
    list(headers, name).join(", ")
}

/// One element of the server's `Sec-WebSocket-Extensions` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtensionAnswer {
    /// The extension's name, such as `permessage-deflate`.
    pub(crate) name: String,
    /// Its parameters, with values unquoted.
    pub(crate) params: Vec<(String, Option<String>)>,
}

/// Parses one extension element: `name; param; param=value; param="value"`.
pub(crate) fn parse_extension(element: &str) -> ExtensionAnswer {
    let mut parts = element.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default().to_ascii_lowercase();
    let params = parts
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                (k.trim().to_ascii_lowercase(), Some(v.replace('\\', "")))
            }
            None => (p.to_ascii_lowercase(), None),
        })
        .collect();
    ExtensionAnswer { name, params }
}

/// What the server agreed to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// The subprotocol it chose, one of those offered.
    pub(crate) protocol: Option<String>,
    /// The extensions it accepted, each one the client offered.
    pub(crate) extensions: Vec<ExtensionAnswer>,
}

/// Checks a `101` response against the request (RFC 6455 4.1, the client's
/// checks of the server's handshake).
pub(crate) fn check(resp: &http::Response<()>, req: &UpgradeRequest) -> Result<Negotiated> {
    let h = resp.headers();
    if resp.version() != Version::HTTP_11 {
        return Err(upgrade(
            "the server answered 101 in HTTP/1.0; a WebSocket upgrade needs HTTP/1.1",
        ));
    }
    if !h.contains_key("Upgrade") {
        return Err(upgrade(
            "the response has no Upgrade header: the server did not switch to WebSocket",
        ));
    }
    if !has_token(h, "Upgrade", "websocket") {
        return Err(upgrade(format!(
            "the response's Upgrade header is {:?}, not \"websocket\"",
            shown(h, "Upgrade")
        )));
    }
    if !has_token(h, "Connection", "upgrade") {
        return Err(upgrade(format!(
            "the response's Connection header ({:?}) does not name \"upgrade\"",
            shown(h, "Connection")
        )));
    }
    let expected = tungstenite::handshake::derive_accept_key(req.key.as_bytes());
    let accepts: Vec<&[u8]> = h
        .get_all("Sec-WebSocket-Accept")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if accepts != [expected.as_bytes()] {
        let got = accepts
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(upgrade(format!(
            "the server's Sec-WebSocket-Accept {got:?} does not match the key sent (expected \
             {expected:?}): not a WebSocket server, or something on the way changed the request"
        )));
    }
    let extensions = check_extensions(h, &req.extensions)?;
    let protocol = check_protocol(h, &req.protocols)?;
    Ok(Negotiated {
        protocol,
        extensions,
    })
}

/// Every extension the server names must have been offered (RFC 6455 4.1, 9.1).
fn check_extensions(h: &HeaderMap, offered: &[String]) -> Result<Vec<ExtensionAnswer>> {
    let offered_names: Vec<String> = offered.iter().map(|o| parse_extension(o).name).collect();
    let mut accepted = Vec::new();
    for element in list(h, "Sec-WebSocket-Extensions") {
        let answer = parse_extension(element);
        if !offered_names.contains(&answer.name) {
            return Err(Error::Extension {
                offered: offered_names,
                problem: format!(
                    "the server answered with extension {:?}, which the client did not offer \
                     (RFC 6455 4.1: the connection must fail)",
                    answer.name
                ),
            });
        }
        accepted.push(answer);
    }
    Ok(accepted)
}

/// The server's subprotocol must be one of those offered; when some were
/// offered, it must choose one.
fn check_protocol(h: &HeaderMap, offered: &[String]) -> Result<Option<String>> {
    let chosen = list(h, "Sec-WebSocket-Protocol");
    let fail = |problem: String| Error::Subprotocol {
        offered: offered.to_vec(),
        problem,
    };
    match chosen.as_slice() {
        [] if offered.is_empty() => Ok(None),
        [] => Err(fail(
            "the server chose none of the offered subprotocols".to_string(),
        )),
        [_] if offered.is_empty() => Err(fail(format!(
            "the server chose a subprotocol ({:?}) although none was offered",
            chosen[0]
        ))),
        [p] if offered.iter().any(|o| o == p) => Ok(Some(p.to_string())),
        [p] => Err(fail(format!(
            "the server chose a subprotocol that was not offered ({p:?})"
        ))),
        _ => Err(fail(format!(
            "the server chose more than one subprotocol ({:?})",
            chosen.join(", ")
        ))),
    }
}

/// How the body of a refusal is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// No body (1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Exactly(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Up to the end of the connection.
    UntilEof,
}

pub(crate) fn body_length(resp: &http::Response<()>) -> BodyLength {
    let status = resp.status().as_u16();
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return BodyLength::Empty;
    }
    let h = resp.headers();
    if list(h, "Transfer-Encoding")
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        return BodyLength::Chunked;
    }
    match h
        .get("Content-Length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(n) => BodyLength::Exactly(n),
        None => BodyLength::UntilEof,
    }
}

/// Decodes a chunked body from `raw`: the data so far and whether it is
/// complete (the last chunk seen, or framing that cannot be read further).
pub(crate) fn decode_chunked(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let (used, size) = match httparse::parse_chunk_size(&raw[at..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return (out, false),
            Err(_) => return (out, true),
        };
        at += used;
        if size == 0 {
            return (out, true);
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let take = size.min(raw.len() - at);
        out.extend_from_slice(&raw[at..at + take]);
        if take < size {
            return (out, false);
        }
        at += size;
        match raw.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some(_) => return (out, true),
            None => return (out, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn req(protocols: &[&str], extensions: &[&str]) -> UpgradeRequest {
        UpgradeRequest {
            head: Vec::new(),
            key: KEY.into(),
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            extensions: extensions.iter().map(|p| p.to_string()).collect(),
            compression: None,
        }
    }

    fn head(lines: &str) -> http::Response<()> {
        let text = format!("HTTP/1.1 101 Switching Protocols\r\n{lines}\r\n");
        let (resp, len) = parse_head(text.as_bytes(), false).unwrap().unwrap();
        assert_eq!(len, text.len());
        resp
    }

    fn good(extra: &str) -> http::Response<()> {
        head(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n{extra}"
        ))
    }

    #[test]
    fn rfc_example_passes() {
        assert_eq!(
            check(&good(""), &req(&[], &[])).unwrap(),
            Negotiated::default()
        );
    }

    #[test]
    fn partial_heads_wait_and_leftover_is_not_part_of_the_head() {
        let mut full = format!(
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        )
        .into_bytes();
        full.extend_from_slice(b"\x81\x02hi");
        let bytes = &full[..];
        for cut in [0, 1, 10, bytes.len() - 5] {
            assert!(parse_head(&bytes[..cut], false).unwrap().is_none(), "{cut}");
        }
        let (_, len) = parse_head(bytes, false).unwrap().unwrap();
        assert_eq!(&bytes[len..], b"\x81\x02hi");
    }

    #[test]
    fn tokens_are_case_insensitive_in_lists_and_across_lines() {
        for lines in [
            "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n",
            "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: UPGRADE\r\n",
            "Upgrade: h2c, websocket\r\nConnection: upgrade\r\n",
        ] {
            let resp = head(&format!("{lines}Sec-WebSocket-Accept: {ACCEPT}\r\n"));
            check(&resp, &req(&[], &[])).unwrap_or_else(|e| panic!("{lines:?}: {e}"));
        }
    }

    #[test]
    fn missing_or_wrong_tokens_fail_and_say_which() {
        for (lines, says) in [
            ("Connection: upgrade\r\n", "no Upgrade header"),
            (
                "Upgrade: websockets\r\nConnection: upgrade\r\n",
                "Upgrade header is",
            ),
            ("Upgrade: websocket\r\n", "Connection header"),
            (
                "Upgrade: websocket\r\nConnection: upgraded\r\n",
                "Connection header",
            ),
        ] {
            let resp = head(&format!("{lines}Sec-WebSocket-Accept: {ACCEPT}\r\n"));
            let e = check(&resp, &req(&[], &[])).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Handshake);
            assert!(e.to_string().contains(says), "{lines:?}: {e}");
        }
    }

    #[test]
    fn accept_key_must_match_once() {
        for accept in ["", "Sec-WebSocket-Accept: bm90\r\n"] {
            let resp = head(&format!(
                "Upgrade: websocket\r\nConnection: upgrade\r\n{accept}"
            ));
            let e = check(&resp, &req(&[], &[])).unwrap_err().to_string();
            assert!(e.contains("Sec-WebSocket-Accept"), "{e}");
        }
        let twice = good(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"));
        assert!(check(&twice, &req(&[], &[])).is_err());
    }

    #[test]
    fn http_1_0_101_fails() {
        let text = format!(
            "HTTP/1.0 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        let (resp, _) = parse_head(text.as_bytes(), false).unwrap().unwrap();
        assert!(check(&resp, &req(&[], &[])).is_err());
    }

    #[test]
    fn unoffered_extensions_fail_offered_ones_are_parsed() {
        let resp =
            good("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n");
        let e = check(&resp, &req(&[], &[])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Extension);
        let text = e.to_string();
        assert!(
            text.contains("\"permessage-deflate\"") && text.contains("offered: none"),
            "{text}"
        );

        let e = check(
            &good("Sec-WebSocket-Extensions: x-other\r\n"),
            &req(&[], &["permessage-deflate"]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x-other") && e.contains("offered: permessage-deflate"),
            "{e}"
        );

        let n = check(
            &resp,
            &req(&[], &["permessage-deflate; client_max_window_bits"]),
        )
        .unwrap();
        assert_eq!(
            n.extensions,
            [ExtensionAnswer {
                name: "permessage-deflate".into(),
                params: vec![("client_max_window_bits".into(), Some("10".into()))],
            }]
        );
        assert_eq!(
            parse_extension("x; a; b=\"q\""),
            ExtensionAnswer {
                name: "x".into(),
                params: vec![("a".into(), None), ("b".into(), Some("q".into()))],
            }
        );
    }

    #[test]
    fn subprotocol_rules() {
        let p = |line: &str, offered: &[&str]| check(&good(line), &req(offered, &[]));
        assert_eq!(p("", &[]).unwrap().protocol, None);
        assert_eq!(
            p("Sec-WebSocket-Protocol: b\r\n", &["a", "b"])
                .unwrap()
                .protocol
                .as_deref(),
            Some("b")
        );
        for (line, offered, says) in [
            ("", &["a"][..], "none of the offered"),
            (
                "Sec-WebSocket-Protocol: a\r\n",
                &[][..],
                "although none was offered",
            ),
            (
                "Sec-WebSocket-Protocol: c\r\n",
                &["a", "b"][..],
                "not offered",
            ),
            (
                "Sec-WebSocket-Protocol: a, b\r\n",
                &["a", "b"][..],
                "more than one",
            ),
            (
                "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n",
                &["a", "b"][..],
                "more than one",
            ),
        ] {
            let e = p(line, offered).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Subprotocol);
            assert!(e.to_string().contains(says), "{line:?}: {e}");
        }
    }

    #[test]
    fn not_http_tls_and_oversized_heads_fail() {
        let e = parse_head(b"SSH-2.0-OpenSSH\r\n\r\n", false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake);
        for tls in [&[0x16u8, 3, 1][..], &[0x15, 3, 3, 0, 2, 2, 70][..]] {
            let e = parse_head(tls, false).unwrap_err().to_string();
            assert!(e.contains("TLS") && e.contains("wss://"), "{e}");
        }
        let mut long = b"HTTP/1.1 101 OK\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert!(parse_head(&long, false)
            .unwrap_err()
            .to_string()
            .contains("longer than 64 KiB"));
        let many: String = (0..200).map(|i| format!("X-{i}: a\r\n")).collect();
        let text = format!("HTTP/1.1 101 OK\r\n{many}\r\n");
        assert!(parse_head(text.as_bytes(), false).is_err());
    }

    #[test]
    fn body_lengths() {
        let resp = |lines: &str| {
            let text = format!("HTTP/1.1 403 No\r\n{lines}\r\n");
            parse_head(text.as_bytes(), false).unwrap().unwrap().0
        };
        assert_eq!(
            body_length(&resp("Content-Length: 12\r\n")),
            BodyLength::Exactly(12)
        );
        assert_eq!(body_length(&resp("")), BodyLength::UntilEof);
        assert_eq!(
            body_length(&resp(
                "Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n"
            )),
            BodyLength::Chunked
        );
        let text = "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n";
        let r = parse_head(text.as_bytes(), false).unwrap().unwrap().0;
        assert_eq!(body_length(&r), BodyLength::Empty);
    }

    #[test]
    fn chunked_bodies_decode_in_pieces() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        assert_eq!(decode_chunked(raw), (b"hello, world".to_vec(), true));
        assert_eq!(decode_chunked(&raw[..6]), (b"hel".to_vec(), false));
        assert_eq!(decode_chunked(&raw[..10]), (b"hello".to_vec(), false));
        assert_eq!(decode_chunked(b"zz\r\n"), (Vec::new(), true));
    }
}
