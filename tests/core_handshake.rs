//! The upgrade: subprotocol negotiation, custom headers seen by the server, a
//! refused upgrade (403 with a body) and CR/LF in header values.
mod common;

use std::io::ErrorKind as IoKind;
use std::net::TcpListener;
use std::time::Duration;

use wsapp::{Client, Error, ErrorKind, Message};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn server_picks_an_offered_subprotocol() {
    let (server, seen) = common::inspecting_server(|offered| {
        // Pick the second offer, to show it is the server's choice that counts.
        offered
            .and_then(|o| o.split(',').nth(1))
            .map(|p| p.trim().to_string())
    });
    let ws = Client::new(server.url())
        .subprotocols(["v1.json", "v2.json"])
        .connect()
        .unwrap();
    assert_eq!(ws.protocol(), Some("v2.json"));
    let headers = seen.recv_timeout(WAIT).unwrap();
    let offered: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "sec-websocket-protocol")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(offered, ["v1.json, v2.json"]);
    ws.send_text("x").unwrap();
    assert_eq!(ws.recv_timeout(WAIT).unwrap(), Some(Message::text("x")));
}

#[test]
fn server_picking_an_unoffered_subprotocol_is_refused() {
    let (server, _seen) = common::inspecting_server(|_| Some("v9.evil".to_string()));
    let err = Client::new(server.url())
        .subprotocols(["v1.json", "v2.json"])
        .connect()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Subprotocol, "{err}");
    match &err {
        Error::Subprotocol { offered, .. } => assert_eq!(offered, &["v1.json", "v2.json"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_picking_a_subprotocol_when_none_was_offered_is_refused() {
    let (server, _seen) = common::inspecting_server(|_| Some("v1.json".to_string()));
    let err = wsapp::connect(&server.url()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Subprotocol, "{err}");
}

#[test]
fn custom_headers_origin_and_cookie_reach_the_server() {
    let (server, seen) = common::inspecting_server(|_| None);
    let ws = Client::new(format!("{}path/x?token=abc", server.url()))
        .header("X-Custom", "value-1")
        .header("Authorization", "Bearer secret-token")
        .origin("https://app.example.test")
        .cookie("session=abc123; theme=dark")
        .connect()
        .unwrap();
    let headers = seen.recv_timeout(WAIT).unwrap();
    let get = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("x-custom"), ["value-1"], "{headers:?}");
    assert_eq!(get("authorization"), ["Bearer secret-token"], "{headers:?}");
    assert_eq!(get("origin"), ["https://app.example.test"], "{headers:?}");
    assert_eq!(get("cookie"), ["session=abc123; theme=dark"], "{headers:?}");
    assert_eq!(
        get("host"),
        [format!("127.0.0.1:{}", server.port())],
        "{headers:?}"
    );
    assert_eq!(get("sec-websocket-protocol"), Vec::<&str>::new());
    ws.close(1000, "").unwrap();
}

#[test]
fn refused_upgrade_reports_status_and_body() {
    const BODY: &str = "forbidden: token expired at 12:00; ask the admin for a new one";
    let server = common::http_responder("403 Forbidden", BODY);
    let err = Client::new(server.url())
        .handshake_timeout(WAIT)
        .connect()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HandshakeRejected, "{err}");
    let Error::HandshakeRejected(resp) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()
            .get("Content-Type")
            .map(|v| v.to_str().unwrap()),
        Some("text/plain")
    );
    let body = resp.body().as_deref().unwrap_or_default();
    assert!(
        String::from_utf8_lossy(body).starts_with("forbidden: token expired"),
        "body {body:?}"
    );
    let text = err.to_string();
    assert!(text.contains("403"), "{text}");
    assert!(text.contains("forbidden: token expired"), "{text}");
}

#[test]
fn crlf_in_header_values_is_refused_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let cases: Vec<(&str, Client)> = vec![
        (
            "header CRLF",
            Client::new(&url).header("X-A", "ok\r\nX-Evil: 1"),
        ),
        (
            "header LF",
            Client::new(&url).header("X-A", "ok\nX-Evil: 1"),
        ),
        (
            "header CR",
            Client::new(&url).header("X-A", "ok\rX-Evil: 1"),
        ),
        ("origin", Client::new(&url).origin("https://a\r\nX-Evil: 1")),
        ("cookie", Client::new(&url).cookie("a=b\r\nX-Evil: 1")),
    ];
    for (what, client) in cases {
        let err = client
            .connect_timeout(Duration::from_secs(2))
            .handshake_timeout(Duration::from_secs(2))
            .connect()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{what}: {err}");
        match listener.accept() {
            Err(e) if e.kind() == IoKind::WouldBlock => {}
            Ok((_, peer)) => panic!("{what}: the client connected ({peer}) before refusing"),
            Err(e) => panic!("{what}: accept: {e}"),
        }
    }
    // The same listener does take a connection, so the check above can fail.
    let _ = Client::new(&url)
        .connect_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_millis(300))
        .connect();
    let accepted = common::wait_for(WAIT, || listener.accept().ok());
    assert!(accepted.is_some(), "a valid request did connect");
}
