//! Redirects of the upgrade request: 301, 302, 303, 307 and 308 with an
//! absolute `ws://`, an absolute `http://` (mapped to `ws://`) and a relative
//! `Location`; `redirects(0)`, the limit, loops, a missing `Location`, and
//! `wss://` → `ws://` refused (`wss://` → `wss://` and `ws://` → `wss://` followed).
//!
//! Every server is a raw HTTP router on `127.0.0.1:0` (plain or TLS) that
//! answers each path either with a redirect or with a tungstenite echo, and
//! logs every request it gets. Servers are bounded: socket timeouts, drains
//! with deadlines, and dropping a router stops and joins its acceptor.

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, TestCa};
use wsapp::{Client, Error, ErrorKind, Message};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Read/write timeout of every server-side socket: no thread waits longer.
const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(10);
const STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

// --- the router -------------------------------------------------------------

/// What a router does with a request for a path.
#[derive(Clone, Debug)]
enum Route {
    /// Answers `status` with this `Location` (none: no header at all).
    Redirect(u16, Option<String>),
    /// Completes the upgrade and echoes text and binary messages.
    Echo,
}

/// One request as the router saw it.
#[derive(Clone, Debug)]
struct Hit {
    /// The request target: path and query.
    target: String,
    /// The `Host` header.
    host: String,
    /// Every header, names lowercased.
    headers: Vec<(String, String)>,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;
type Hits = Arc<Mutex<Vec<Hit>>>;

/// A server whose answer depends on the request path (query ignored); an
/// unknown path gets 404. Routes can be added after it starts, so that two
/// routers can point at each other.
struct Router {
    server: Server,
    routes: Routes,
    hits: Hits,
    tls: bool,
}

impl Router {
    fn plain() -> Router {
        let (routes, hits) = (Routes::default(), Hits::default());
        let (r, h) = (routes.clone(), hits.clone());
        let server = common::serve(move |tcp| {
            if set_timeouts(&tcp) {
                handle(tcp, &r, &h);
            }
        });
        Router {
            server,
            routes,
            hits,
            tls: false,
        }
    }

    /// A TLS router presenting `identity`.
    fn tls(identity: native_tls::Identity) -> Router {
        let acceptor = native_tls::TlsAcceptor::new(identity).expect("TLS acceptor");
        let (routes, hits) = (Routes::default(), Hits::default());
        let (r, h) = (routes.clone(), hits.clone());
        let server = common::serve(move |tcp| {
            if !set_timeouts(&tcp) {
                return;
            }
            // A client that refuses the certificate just ends this connection.
            if let Ok(tls) = acceptor.accept(tcp) {
                handle(tls, &r, &h);
            }
        });
        Router {
            server,
            routes,
            hits,
            tls: true,
        }
    }

    fn route(&self, path: &str, route: Route) -> &Router {
        self.routes.lock().unwrap().insert(path.to_string(), route);
        self
    }

    fn port(&self) -> u16 {
        self.server.port()
    }

    /// `ws(s)://127.0.0.1:<port><path>`.
    fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port())
    }

    /// `http(s)://127.0.0.1:<port><path>`.
    fn http_url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port())
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The request targets seen so far, in order.
    fn targets(&self) -> Vec<String> {
        self.hits().into_iter().map(|h| h.target).collect()
    }
}

fn set_timeouts(tcp: &TcpStream) -> bool {
    tcp.set_read_timeout(Some(SERVER_IO_TIMEOUT)).is_ok()
        && tcp.set_write_timeout(Some(SERVER_IO_TIMEOUT)).is_ok()
}

/// A stream that first gives back the bytes already read from it.
struct Replay<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: Read> Read for Replay<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Replay<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads bytes until the end of the request head (at most 64 KiB).
fn read_head<S: Read>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 64 << 10 {
            return Err(io::Error::other("request head too long"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        404 => "Not Found",
        _ => "Whatever",
    }
}

fn handle<S: Read + Write>(mut stream: S, routes: &Routes, hits: &Hits) {
    let Ok(head) = read_head(&mut stream) else {
        return;
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let headers: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect();
    let host = headers
        .iter()
        .find(|(n, _)| n == "host")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    hits.lock().unwrap().push(Hit {
        target: target.clone(),
        host,
        headers,
    });
    let path = target.split('?').next().unwrap_or("");
    let route = routes.lock().unwrap().get(path).cloned();
    let (status, location) = match route {
        Some(Route::Echo) => {
            let replay = Replay {
                head,
                pos: 0,
                inner: stream,
            };
            if let Ok(mut ws) = tungstenite::accept(replay) {
                common::echo_loop(&mut ws);
            }
            return;
        }
        Some(Route::Redirect(status, location)) => (status, location),
        None => (404, None),
    };
    let mut reply = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    if let Some(location) = location {
        reply.push_str(&format!("Location: {location}\r\n"));
    }
    reply.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    if stream.write_all(reply.as_bytes()).is_err() || stream.flush().is_err() {
        return;
    }
    // Keep the socket until the client has read the answer and closed its side
    // (closing first could reset the connection under the unread reply).
    let deadline = Instant::now() + SERVER_IO_TIMEOUT;
    let mut sink = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

// --- helpers ----------------------------------------------------------------

fn client(url: &str) -> Client {
    Client::new(url)
        .proxy_from_env(false)
        .connect_timeout(TIMEOUT)
        .handshake_timeout(TIMEOUT)
}

/// Connects, checks the socket goes to `port`, and echoes a text and a binary message.
fn assert_echo(client: &Client, port: u16, context: &str) {
    let ws = client
        .connect()
        .unwrap_or_else(|e| panic!("{context}: connect: {e}"));
    assert_eq!(ws.peer_addr().port(), port, "{context}: wrong server");
    let text = format!("hello after {context}");
    ws.send_text(text.clone()).unwrap();
    let got = ws.recv_timeout(TIMEOUT).unwrap().expect("echo in time");
    assert_eq!(got, Message::text(text), "{context}");
    let bytes = vec![0u8, 1, 2, 255];
    ws.send_binary(bytes.clone()).unwrap();
    let got = ws.recv_timeout(TIMEOUT).unwrap().expect("echo in time");
    assert_eq!(got, Message::binary(bytes), "{context}");
}

/// Connecting fails; the error is returned with its text.
fn connect_err(client: &Client, context: &str) -> (Error, String) {
    match client.connect() {
        Ok(ws) => panic!(
            "{context}: connected to port {}; expected an error",
            ws.peer_addr().port()
        ),
        Err(e) => {
            let text = e.to_string();
            (e, text)
        }
    }
}

// --- following --------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum LocationForm {
    /// `ws://127.0.0.1:P/x` on another server.
    AbsoluteWs,
    /// `http://127.0.0.1:P/x` on another server: followed as `ws://`.
    AbsoluteHttp,
    /// `/x` on the same server.
    Relative,
}

#[test]
fn each_status_and_location_form_is_followed() {
    for status in STATUSES {
        for form in [
            LocationForm::AbsoluteWs,
            LocationForm::AbsoluteHttp,
            LocationForm::Relative,
        ] {
            let context = format!("{status} with {form:?} Location");
            let redirector = Router::plain();
            let echo = Router::plain();
            echo.route("/x", Route::Echo);
            redirector.route("/x", Route::Echo);
            let (location, lands_on) = match form {
                LocationForm::AbsoluteWs => (echo.url("/x?from=ws"), &echo),
                LocationForm::AbsoluteHttp => (echo.http_url("/x?from=http"), &echo),
                LocationForm::Relative => ("/x?from=relative".to_string(), &redirector),
            };
            redirector.route("/start", Route::Redirect(status, Some(location)));

            assert_echo(
                &client(&redirector.url("/start")),
                lands_on.port(),
                &context,
            );

            let expected_query = match form {
                LocationForm::AbsoluteWs => "/x?from=ws",
                LocationForm::AbsoluteHttp => "/x?from=http",
                LocationForm::Relative => "/x?from=relative",
            };
            match form {
                LocationForm::Relative => {
                    assert_eq!(
                        redirector.targets(),
                        ["/start", expected_query],
                        "{context}"
                    );
                }
                _ => {
                    assert_eq!(redirector.targets(), ["/start"], "{context}");
                    assert_eq!(echo.targets(), [expected_query], "{context}");
                }
            }
            // The second request names its own server in Host.
            let last = lands_on.hits().pop().unwrap();
            assert_eq!(
                last.host,
                format!("127.0.0.1:{}", lands_on.port()),
                "{context}"
            );
        }
    }
}

#[test]
fn relative_location_without_leading_slash_resolves_against_the_path() {
    let router = Router::plain();
    router.route("/a/start", Route::Redirect(302, Some("x".into())));
    router.route("/a/x", Route::Echo);
    assert_echo(&client(&router.url("/a/start")), router.port(), "302 to x");
    assert_eq!(router.targets(), ["/a/start", "/a/x"]);
}

#[test]
fn ws_to_wss_is_followed_and_https_maps_to_wss() {
    let ca = TestCa::new();
    let secure = Router::tls(ca.identity(&["127.0.0.1"]));
    secure.route("/x", Route::Echo);
    for location in [secure.url("/x"), secure.http_url("/x")] {
        let plain = Router::plain();
        plain.route("/start", Route::Redirect(307, Some(location.clone())));
        let c = client(&plain.url("/start")).add_root_certificate(ca.root_pem.as_bytes());
        assert_echo(&c, secure.port(), &format!("ws:// → {location}"));
    }
}

#[test]
fn wss_to_wss_is_followed() {
    let ca = TestCa::new();
    let secure = Router::tls(ca.identity(&["127.0.0.1"]));
    secure.route("/start", Route::Redirect(301, Some("/x".into())));
    secure.route("/x", Route::Echo);
    let c = client(&secure.url("/start")).add_root_certificate(ca.root_pem.as_bytes());
    assert_echo(&c, secure.port(), "wss 301 to relative /x");
    assert_eq!(secure.targets(), ["/start", "/x"]);
}

// --- refusals ---------------------------------------------------------------

#[test]
fn redirects_zero_reports_the_3xx_as_rejected() {
    let echo = Router::plain();
    echo.route("/x", Route::Echo);
    for status in STATUSES {
        let redirector = Router::plain();
        redirector.route("/start", Route::Redirect(status, Some(echo.url("/x"))));
        let c = client(&redirector.url("/start")).redirects(0);
        let (err, text) = connect_err(&c, &format!("{status} with redirects(0)"));
        assert_eq!(err.kind(), ErrorKind::HandshakeRejected, "{text}");
        match &err {
            Error::HandshakeRejected(resp) => {
                assert_eq!(resp.status().as_u16(), status, "{text}");
                assert_eq!(
                    resp.headers().get("Location").and_then(|v| v.to_str().ok()),
                    Some(echo.url("/x").as_str())
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(text.contains(&status.to_string()), "{text}");
        assert_eq!(redirector.targets(), ["/start"]);
    }
    assert!(echo.targets().is_empty(), "{:?}", echo.targets());
}

/// A router where `/hop/i` redirects to `/hop/i+1` for `i < hops`, and
/// `/hop/<hops>` is the echo.
fn chain(hops: u32) -> Router {
    let router = Router::plain();
    for i in 0..hops {
        router.route(
            &format!("/hop/{i}"),
            Route::Redirect(302, Some(format!("/hop/{}", i + 1))),
        );
    }
    router.route(&format!("/hop/{hops}"), Route::Echo);
    router
}

#[test]
fn chains_up_to_the_limit_are_followed_and_longer_ones_refused() {
    // Default limit: 3.
    let ok = chain(3);
    assert_echo(&client(&ok.url("/hop/0")), ok.port(), "3 redirects");
    assert_eq!(ok.targets(), ["/hop/0", "/hop/1", "/hop/2", "/hop/3"]);

    let long = chain(4);
    let (err, text) = connect_err(&client(&long.url("/hop/0")), "4 redirects");
    assert_eq!(err.kind(), ErrorKind::Redirect, "{text}");
    assert!(text.contains("more than 3 redirects"), "{text}");
    // The URL in the error is the one that answered with the redirect not followed.
    assert!(text.contains(&long.url("/hop/3")), "{text}");
    assert_eq!(long.targets(), ["/hop/0", "/hop/1", "/hop/2", "/hop/3"]);

    // A limit set by hand.
    let one = chain(1);
    assert_echo(
        &client(&one.url("/hop/0")).redirects(1),
        one.port(),
        "1 redirect",
    );
    let two = chain(2);
    let (err, text) = connect_err(&client(&two.url("/hop/0")).redirects(1), "2 > 1");
    assert_eq!(err.kind(), ErrorKind::Redirect, "{text}");
    assert!(text.contains("more than 1 redirect"), "{text}");
    assert_eq!(two.targets(), ["/hop/0", "/hop/1"]);

    let many = chain(10);
    assert_echo(
        &client(&many.url("/hop/0")).redirects(10),
        many.port(),
        "10 redirects",
    );
}

#[test]
fn loops_are_refused() {
    // A → B → A, across two servers, and with http:// spelling on the way back.
    for back_as_http in [false, true] {
        let a = Router::plain();
        let b = Router::plain();
        a.route("/a", Route::Redirect(302, Some(b.url("/b"))));
        let back = if back_as_http {
            a.http_url("/a")
        } else {
            a.url("/a")
        };
        b.route("/b", Route::Redirect(307, Some(back)));
        // A high limit: the loop, not the limit, stops it.
        let c = client(&a.url("/a")).redirects(10);
        let (err, text) = connect_err(&c, "A → B → A");
        assert_eq!(err.kind(), ErrorKind::Redirect, "{text}");
        assert!(text.contains("loop"), "{text}");
        assert_eq!(a.targets(), ["/a"]);
        assert_eq!(b.targets(), ["/b"]);
    }
    // A → A.
    let a = Router::plain();
    a.route("/a", Route::Redirect(308, Some("/a".into())));
    let (err, text) = connect_err(&client(&a.url("/a")), "A → A");
    assert_eq!(err.kind(), ErrorKind::Redirect, "{text}");
    assert!(text.contains("loop"), "{text}");
    assert_eq!(a.targets(), ["/a"]);
}

#[test]
fn missing_location_is_refused() {
    for status in STATUSES {
        let router = Router::plain();
        router.route("/start", Route::Redirect(status, None));
        let (err, text) = connect_err(&client(&router.url("/start")), &status.to_string());
        assert_eq!(err.kind(), ErrorKind::Redirect, "{text}");
        assert!(text.contains("Location"), "{text}");
        assert!(text.contains(&status.to_string()), "{text}");
        assert_eq!(router.targets(), ["/start"]);
    }
}

#[test]
fn wss_to_ws_is_refused() {
    let ca = TestCa::new();
    let secure = Router::tls(ca.identity(&["127.0.0.1"]));
    let plain = Router::plain();
    plain.route("/x", Route::Echo);
    let locations = [plain.url("/x"), plain.http_url("/x")];
    for (i, location) in locations.iter().enumerate() {
        let path = format!("/start{i}");
        secure.route(&path, Route::Redirect(302, Some(location.clone())));
        let c = client(&secure.url(&path)).add_root_certificate(ca.root_pem.as_bytes());
        let (err, text) = connect_err(&c, &format!("wss → {location}"));
        assert_eq!(err.kind(), ErrorKind::Redirect, "{text}");
        assert!(text.contains("wss://") && text.contains("ws://"), "{text}");
        // Refused even with following turned up.
        let c = c.redirects(10);
        let (err, _) = connect_err(&c, &format!("wss → {location}, redirects(10)"));
        assert_eq!(err.kind(), ErrorKind::Redirect);
    }
    assert!(plain.targets().is_empty(), "{:?}", plain.targets());
    assert_eq!(secure.targets().len(), 4);
}

// --- credentials on redirects -------------------------------------------------

const SECRET: &str = "Bearer s3cret-token";
const COOKIE: &str = "session=s3cret-cookie";

fn with_credentials(url: &str) -> Client {
    client(url)
        .header("Authorization", SECRET)
        .header("X-Trace", "kept")
        .cookie(COOKIE)
}

#[test]
fn same_origin_redirect_keeps_the_request_headers() {
    let router = Router::plain();
    router.route("/start", Route::Redirect(302, Some("/x".into())));
    router.route("/x", Route::Echo);
    assert_echo(
        &with_credentials(&router.url("/start")),
        router.port(),
        "same-origin 302",
    );
    let hits = router.hits();
    assert_eq!(hits.len(), 2);
    for hit in &hits {
        assert_eq!(hit.header("authorization"), Some(SECRET), "{hit:?}");
        assert_eq!(hit.header("cookie"), Some(COOKIE), "{hit:?}");
        assert_eq!(hit.header("x-trace"), Some("kept"), "{hit:?}");
    }
}

/// What curl (without `--location-trusted`), reqwest and browsers do: a
/// redirect to another origin (scheme, host or port) does not carry the
/// credentials meant for the first one. A server that can send a `Location`
/// must not be able to collect the client's `Authorization` and `Cookie`.
#[test]
fn cross_origin_redirect_drops_credentials() {
    let other = Router::plain();
    other.route("/x", Route::Echo);
    let redirector = Router::plain();
    redirector.route("/start", Route::Redirect(302, Some(other.url("/x"))));
    assert_echo(
        &with_credentials(&redirector.url("/start")),
        other.port(),
        "cross-origin 302",
    );
    let first = redirector.hits().pop().unwrap();
    assert_eq!(first.header("authorization"), Some(SECRET), "{first:?}");
    let hit = other.hits().pop().unwrap();
    assert_eq!(hit.header("x-trace"), Some("kept"), "{hit:?}");
    assert_eq!(
        hit.header("authorization"),
        None,
        "Authorization sent to another origin after a redirect"
    );
    assert_eq!(
        hit.header("cookie"),
        None,
        "Cookie sent to another origin after a redirect"
    );
}
