//! One `Client` reconnecting to a local `wss://` echo: every connect works, the connector is reused (the time of 20 connects is printed), and `wsapp::native_tls` is usable without a second dependency.
mod common;

use std::time::{Duration, Instant};

use common::TestCa;
use wsapp::{Client, Message};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn twenty_wss_connects_from_one_client() {
    let ca = TestCa::new();
    let server = common::tls_echo_server(ca.identity(&["localhost"]));
    let client = Client::new(format!("wss://localhost:{}/", server.port()))
        .proxy_from_env(false)
        .add_root_certificate(ca.root_pem.as_bytes())
        .handshake_timeout(WAIT);
    let start = Instant::now();
    for i in 0..20 {
        // Clones share the connector, as the app's reconnects do.
        let ws = client.clone().connect().unwrap();
        ws.send_text(format!("n{i}")).unwrap();
        assert_eq!(
            ws.recv_timeout(WAIT).unwrap(),
            Some(Message::text(format!("n{i}")))
        );
        ws.close(1000, "").unwrap();
    }
    eprintln!("20 wss connects: {:?}", start.elapsed());
}

#[test]
fn the_reexported_native_tls_builds_a_connector() {
    let ca = TestCa::new();
    let server = common::tls_echo_server(ca.identity(&["localhost"]));
    let root = wsapp::native_tls::Certificate::from_pem(ca.root_pem.as_bytes()).unwrap();
    let tls = wsapp::native_tls::TlsConnector::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let ws = Client::new(format!("wss://localhost:{}/", server.port()))
        .proxy_from_env(false)
        .tls_connector(tls)
        .connect()
        .unwrap();
    ws.close(1000, "").unwrap();
}
