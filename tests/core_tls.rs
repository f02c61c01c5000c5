//! `wss://` against servers with certificates made at test time: verification
//! against an added root, hostname checks and their `danger_` opt-out, and a
//! TLS handshake the server never answers.
mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::TestCa;
use wsapp::{Client, ErrorKind, Message};

const WAIT: Duration = Duration::from_secs(10);

fn echo_once(ws: &wsapp::WebSocket) {
    ws.send_text("over tls").unwrap();
    assert_eq!(
        ws.recv_timeout(WAIT).unwrap(),
        Some(Message::text("over tls"))
    );
}

#[test]
fn untrusted_root_is_refused_and_the_added_root_is_trusted() {
    let ca = TestCa::new();
    let server = common::tls_echo_server(ca.identity(&["localhost", "127.0.0.1"]));
    let url = format!("wss://localhost:{}/", server.port());

    let err = Client::new(&url)
        .handshake_timeout(WAIT)
        .connect()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("localhost"), "{err}");

    let ws = Client::new(&url)
        .add_root_certificate(ca.root_pem.as_bytes())
        .handshake_timeout(WAIT)
        .connect()
        .unwrap();
    echo_once(&ws);
    ws.close(1000, "").unwrap();

    // The IP address SAN works too.
    let ws = Client::new(format!("wss://127.0.0.1:{}/", server.port()))
        .add_root_certificate(ca.root_pem.as_bytes())
        .handshake_timeout(WAIT)
        .connect()
        .unwrap();
    echo_once(&ws);
}

#[test]
fn a_root_of_another_ca_does_not_help() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let server = common::tls_echo_server(ca.identity(&["localhost"]));
    let err = Client::new(format!("wss://localhost:{}/", server.port()))
        .add_root_certificate(other.root_pem.as_bytes())
        .handshake_timeout(WAIT)
        .connect()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
}

#[test]
fn certificate_for_another_name_needs_the_danger_opt_out() {
    let ca = TestCa::new();
    let server = common::tls_echo_server(ca.identity(&["example.test"]));
    let url = format!("wss://localhost:{}/", server.port());

    let err = Client::new(&url)
        .add_root_certificate(ca.root_pem.as_bytes())
        .handshake_timeout(WAIT)
        .connect()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");

    let ws = Client::new(&url)
        .add_root_certificate(ca.root_pem.as_bytes())
        .danger_accept_invalid_hostnames(true)
        .handshake_timeout(WAIT)
        .connect()
        .unwrap();
    echo_once(&ws);
    ws.close(1000, "").unwrap();

    // Accepting other host names does not mean accepting any issuer.
    let err = Client::new(&url)
        .danger_accept_invalid_hostnames(true)
        .handshake_timeout(WAIT)
        .connect()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");

    // With the name the certificate is for, it verifies without any opt-out.
    let ws = Client::new(&url)
        .add_root_certificate(ca.root_pem.as_bytes())
        .tls_server_name("example.test")
        .handshake_timeout(WAIT)
        .connect()
        .unwrap();
    echo_once(&ws);
}

#[test]
fn silent_tls_server_times_out_within_the_handshake_timeout() {
    // The kernel completes the TCP handshake from the backlog; nobody ever
    // accepts, so no byte of TLS comes back.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let timeout = Duration::from_millis(700);
    let start = Instant::now();
    let err = Client::new(format!("wss://localhost:{port}/"))
        .connect_timeout(Duration::from_secs(2))
        .handshake_timeout(timeout)
        .connect()
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        matches!(err, wsapp::Error::Timeout(wsapp::Phase::Tls)),
        "{err:?}"
    );
    assert!(
        took >= timeout - Duration::from_millis(50),
        "gave up early: {took:?}"
    );
    assert!(took < timeout + Duration::from_secs(2), "took {took:?}");
    drop(listener);
}

#[test]
fn silent_ws_server_times_out_within_the_handshake_timeout() {
    // Plain ws://: the upgrade request is never answered.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let timeout = Duration::from_millis(500);
    let start = Instant::now();
    let err = Client::new(format!("ws://127.0.0.1:{port}/"))
        .handshake_timeout(timeout)
        .connect()
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        took >= timeout - Duration::from_millis(50),
        "gave up early: {took:?}"
    );
    assert!(took < timeout + Duration::from_secs(2), "took {took:?}");
    drop(listener);
}
