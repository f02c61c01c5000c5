//! SOCKS proxies: SOCKS5 and SOCKS5h (RFC 1928, username/password auth of
//! RFC 1929), SOCKS4 and SOCKS4a (user id, and the name for the proxy to
//! resolve).
//!
//! Owns the bytes of these handshakes, up to and including the proxy's reply
//! (the bound address is read and dropped so the stream starts at the
//! target's bytes). It must not connect sockets or resolve names: for
//! `socks5://` and `socks4://` the caller passes an IP it resolved itself.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};

use super::{send, Kind, Proxy};
use crate::error::{Error, Phase, Result};
use crate::url::authority;

/// Reads exactly `buf.len()` bytes; an early end of stream is a truncated `what`.
fn receive<S: Read>(stream: &mut S, proxy: &Proxy, buf: &mut [u8], what: &str) -> Result<()> {
    stream.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            proxy.error(format!(
                "connection closed by the proxy in the middle of the {what}"
            ))
        } else {
            Error::from_io(Phase::Proxy, e, Error::Io)
        }
    })
}

/// The first byte of a reply: the protocol's version (5 for SOCKS5, 0 in a
/// SOCKS4 reply). Anything else is not the protocol asked for.
fn expect_version(proxy: &Proxy, protocol: &str, expected: u8, got: u8) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    Err(proxy.error(format!(
        "not a {protocol} proxy: its reply has version {got}"
    )))
}

pub(super) fn socks5<S: Read + Write>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<()> {
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
    expect_version(proxy, "SOCKS5", 5, choice[0])?;
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
    expect_version(proxy, "SOCKS5", 5, reply[0])?;
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

pub(super) fn socks4<S: Read + Write>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<()> {
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
    expect_version(proxy, "SOCKS4", 0, reply[0])?;
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
    use crate::proxy::tests::{reason, run};

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
}
