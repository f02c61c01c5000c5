//! The opening handshake against peers that stretch or break RFC 6455 4.1: header token lists, repeated header lines, unoffered extensions and subprotocols, error bodies in pieces, a TLS server behind `ws://`, reserved request headers and a TLS 1.3 alert during the upgrade read.
mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::*;
use wsapp::{Client, Error, ErrorKind, Message};

const WAIT: Duration = Duration::from_secs(10);

/// Client options for every case: short, bounded timeouts, no proxy.
fn client(url: &str) -> Client {
    Client::new(url)
        .proxy_from_env(false)
        .connect_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(3))
        .close_timeout(Duration::from_secs(1))
}

/// A server that reads the upgrade request and answers with `reply(key)`, then
/// keeps the socket open (bounded) so the client can read what it wrote.
fn replying_server(
    reply: impl Fn(&str) -> Vec<Vec<u8>> + Send + Sync + 'static,
    pause: Duration,
) -> common::Server {
    common::serve(move |mut tcp| {
        let Ok(key) = read_request(&mut tcp) else {
            return;
        };
        for (i, part) in reply(&key).iter().enumerate() {
            if i > 0 {
                std::thread::sleep(pause);
            }
            if tcp.write_all(part).is_err() {
                return;
            }
        }
        // Hold the connection until the client hangs up (bounded).
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        let mut sink = [0u8; 1024];
        while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
    })
}

/// A 101 with the given extra or replaced header lines.
fn upgrade_with(key: &str, connection: &str, upgrade: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n{upgrade}{connection}\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        accept_key(key)
    )
    .into_bytes()
}

#[test]
fn connection_upgrade_in_a_token_list_is_accepted_and_bytes_after_the_head_are_kept() {
    let server = replying_server(
        |key| {
            let mut reply = upgrade_with(
                key,
                "Connection: keep-alive, Upgrade\r\n",
                "Upgrade: WebSocket\r\n",
                "",
            );
            // A frame in the same write as the head: must not be lost.
            reply.extend_from_slice(&frame(FIN | TEXT, b"early"));
            vec![reply]
        },
        Duration::ZERO,
    );
    let ws = client(&server.url()).connect().expect("upgrade accepted");
    assert_eq!(ws.recv_timeout(WAIT).unwrap(), Some(Message::text("early")));
}

#[test]
fn repeated_header_lines_are_combined() {
    let server = replying_server(
        |key| {
            vec![upgrade_with(
                key,
                "Connection: keep-alive\r\nConnection: upgrade\r\n",
                "Upgrade: websocket\r\n",
                "",
            )]
        },
        Duration::ZERO,
    );
    let ws = client(&server.url()).connect().expect("upgrade accepted");
    ws.close(1000, "").unwrap();
}

#[test]
fn connection_header_without_the_upgrade_token_is_refused() {
    let server = replying_server(
        |key| {
            vec![upgrade_with(
                key,
                "Connection: keep-alive, upgraded\r\n",
                "Upgrade: websocket\r\n",
                "",
            )]
        },
        Duration::ZERO,
    );
    let err = client(&server.url()).connect().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert!(err.to_string().contains("Connection"), "{err}");
}

#[test]
fn an_extension_the_client_never_offered_is_refused() {
    let server = replying_server(
        |key| {
            vec![upgrade_with(
                key,
                "Connection: Upgrade\r\n",
                "Upgrade: websocket\r\n",
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
            )]
        },
        Duration::ZERO,
    );
    // Compression is offered by default: turned off, nothing is offered.
    let err = client(&server.url())
        .compression(None)
        .connect()
        .expect_err("an unoffered extension must fail the connection");
    assert_eq!(err.kind(), ErrorKind::Extension, "{err}");
    let text = err.to_string();
    assert!(text.contains("permessage-deflate"), "{text}");
    assert!(text.contains("offered: none"), "{text}");
}

#[test]
fn a_subprotocol_offered_by_header_counts_as_offered() {
    // The server ignores the offer: the error must show what was offered.
    let server = replying_server(
        |key| {
            vec![upgrade_with(
                key,
                "Connection: Upgrade\r\n",
                "Upgrade: websocket\r\n",
                "",
            )]
        },
        Duration::ZERO,
    );
    let err = client(&server.url())
        .header("Sec-WebSocket-Protocol", "chat, superchat")
        .connect()
        .unwrap_err();
    match &err {
        Error::Subprotocol { offered, .. } => assert_eq!(offered, &["chat", "superchat"]),
        other => panic!("{other:?}"),
    }

    // The server picks one offered by header: accepted.
    let server = replying_server(
        |key| {
            vec![upgrade_with(
                key,
                "Connection: Upgrade\r\n",
                "Upgrade: websocket\r\n",
                "Sec-WebSocket-Protocol: superchat\r\n",
            )]
        },
        Duration::ZERO,
    );
    let ws = client(&server.url())
        .header("Sec-WebSocket-Protocol", "chat, superchat")
        .connect()
        .unwrap();
    assert_eq!(ws.protocol(), Some("superchat"));
}

#[test]
fn a_server_choosing_none_of_the_offered_subprotocols_is_refused() {
    let server = replying_server(
        |key| {
            vec![upgrade_with(
                key,
                "Connection: Upgrade\r\n",
                "Upgrade: websocket\r\n",
                "",
            )]
        },
        Duration::ZERO,
    );
    let err = client(&server.url())
        .subprotocols(["v1.json"])
        .connect()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Subprotocol, "{err}");
    assert!(err.to_string().contains("none of the offered"), "{err}");
}

#[test]
fn an_error_body_sent_in_two_parts_is_read_to_its_content_length() {
    let body: Vec<u8> = (0..2048u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (first, second) = (body[..1024].to_vec(), body[1024..].to_vec());
    let server = replying_server(
        move |_| {
            let mut head =
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 2048\r\n\r\n"
                    .to_vec();
            head.extend_from_slice(&first);
            vec![head, second.clone()]
        },
        Duration::from_millis(200),
    );
    let err = client(&server.url()).connect().unwrap_err();
    let Error::HandshakeRejected(resp) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(resp.status(), 403);
    let got = resp.body().as_deref().unwrap_or_default();
    assert_eq!(got.len(), body.len(), "body length");
    assert!(got == &body[..], "body differs");
}

#[test]
fn an_error_body_without_a_length_is_read_to_eof() {
    let server = common::serve(|mut tcp| {
        if read_request(&mut tcp).is_ok() {
            let _ = tcp.write_all(b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nfirst part, ");
            std::thread::sleep(Duration::from_millis(150));
            let _ = tcp.write_all(b"second part");
        }
    });
    let err = client(&server.url()).connect().unwrap_err();
    let Error::HandshakeRejected(resp) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        resp.body().as_deref(),
        Some(&b"first part, second part"[..])
    );
}

#[test]
fn an_error_body_is_bounded() {
    let server = replying_server(
        |_| {
            let mut reply = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1048576\r\n\r\n".to_vec();
            reply.extend(std::iter::repeat_n(b'x', 1 << 20));
            vec![reply]
        },
        Duration::ZERO,
    );
    let start = Instant::now();
    let err = client(&server.url()).connect().unwrap_err();
    let Error::HandshakeRejected(resp) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(resp.body().as_ref().map(Vec::len), Some(64 << 10));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_redirect_without_a_length_from_a_keep_alive_server_is_not_waited_on() {
    let server = replying_server(
        |_| vec![b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\nmoved".to_vec()],
        Duration::ZERO,
    );
    let start = Instant::now();
    let err = client(&server.url()).redirects(0).connect().unwrap_err();
    let Error::HandshakeRejected(resp) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(resp.status(), 302);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn ws_to_a_tls_server_says_to_use_wss() {
    // A TLS alert record (protocol version, 2 bytes: fatal, protocol_version)
    // and the start of a ServerHello-like record: what a TLS server may send.
    for record in [
        &[0x15u8, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46][..],
        &[0x16u8, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00][..],
    ] {
        let record = record.to_vec();
        let server = replying_server(move |_| vec![record.clone()], Duration::ZERO);
        let err = client(&server.url()).connect().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
        let text = err.to_string();
        assert!(text.contains("TLS") && text.contains("wss://"), "{text}");
    }
}

#[test]
fn reserved_request_headers_are_refused_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    for (name, hint) in [
        ("Sec-WebSocket-Key", "cannot be replaced"),
        ("host", "host_header"),
        ("Upgrade", "cannot be replaced"),
        ("connection", "cannot be replaced"),
        ("Sec-WebSocket-Version", "cannot be replaced"),
        ("Sec-WebSocket-Extensions", "negotiated"),
    ] {
        let err = client(&url).header(name, "x").connect().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{name}: {err}");
        let text = err.to_string();
        assert!(text.contains(hint) && text.contains(name), "{name}: {text}");
        assert!(
            listener.accept().is_err(),
            "{name}: the client connected before refusing"
        );
    }
}

// ---------------------------------------------------------------------------
// TLS 1.3: the server asks for a client certificate, none is given.

/// `openssl s_server` started by the test; killed (by its own pid) on drop.
struct OpensslServer(Child);

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `openssl s_server -tls1_3 -Verify 1` with a fresh self-signed
/// certificate for `localhost`; `None` if openssl is not installed.
fn tls13_server_requiring_a_client_cert() -> Option<(OpensslServer, u16)> {
    let dir = std::env::temp_dir().join(format!("wsapp-tls13-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    for _attempt in 0..5 {
        let port = common::peers::free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-tls1_3", "-Verify", "1"])
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert_path)
            .arg("-key")
            .arg(&key_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("openssl is not installed: skipping");
            return None;
        };
        if common::peers::wait_ready(&mut child, port, Duration::from_secs(5)) {
            // s_server has read its files.
            let _ = std::fs::remove_dir_all(&dir);
            return Some((OpensslServer(child), port));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("openssl s_server did not start on a free port in 5 attempts");
}

#[test]
fn tls13_alert_during_the_upgrade_read_is_a_tls_error() {
    let Some((_server, port)) = tls13_server_requiring_a_client_cert() else {
        return;
    };
    let err = client(&format!("wss://localhost:{port}/"))
        .danger_accept_invalid_certs(true)
        .connect()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    let text = err.to_string();
    assert!(text.contains("localhost"), "{text}");
    assert!(text.contains("certificate required"), "{text}");
}
