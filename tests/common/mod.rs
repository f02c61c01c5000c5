//! Test servers on `127.0.0.1:0` (echo, flood, raw HTTP, TLS echo, custom),
//! test-time certificates, and process probes (thread count, RSS) for the
//! `core_*` integration tests.
//!
//! Every server thread is bounded: accepted sockets get read timeouts, loops
//! have deadlines, and dropping a [`Server`] stops its acceptor and joins it.
#![allow(dead_code)]
// The handshake callback's `Result<Response, ErrorResponse>` is tungstenite's signature.
#![allow(clippy::result_large_err)]

pub mod peers;
pub mod raw;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// The longest any server-side read may block; ends forgotten connections.
pub const SERVER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A listening test server; dropping it stops accepting and joins the acceptor.
/// Connection threads end with their connections.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// The address it listens on (`127.0.0.1:<ephemeral>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ws://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor out of accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Starts a server on `127.0.0.1:0` that runs `handler` on its own thread for
/// every accepted connection.
pub fn serve<F>(handler: F) -> Server
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(handler);
    let stop2 = stop.clone();
    let acceptor = std::thread::Builder::new()
        .name("test-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let _ = tcp.set_read_timeout(Some(SERVER_READ_TIMEOUT));
                let _ = tcp.set_write_timeout(Some(SERVER_READ_TIMEOUT));
                let h = handler.clone();
                std::thread::Builder::new()
                    .name("test-conn".into())
                    .spawn(move || h(tcp))
                    .expect("spawn server connection thread");
            }
        })
        .expect("spawn acceptor");
    Server {
        addr,
        stop,
        acceptor: Some(acceptor),
    }
}

/// A server config whose message and frame limits are `max` bytes.
pub fn config_with_max(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Echoes every text and binary message; answers pings and closes as tungstenite does.
pub fn echo_loop<S: Read + Write>(ws: &mut WebSocket<S>) {
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// An echo server with tungstenite's default limits.
pub fn echo_server() -> Server {
    echo_server_with(WebSocketConfig::default())
}

/// An echo server with the given config (raise limits for big messages).
pub fn echo_server_with(config: WebSocketConfig) -> Server {
    serve(move |tcp| {
        if let Ok(mut ws) = tungstenite::accept_with_config(tcp, Some(config)) {
            echo_loop(&mut ws);
        }
    })
}

/// What a handshake callback saw: the request's headers, lowercased names.
pub type SeenHeaders = Vec<(String, String)>;

/// An echo server that reports each upgrade request's headers on the channel
/// and answers with `Sec-WebSocket-Protocol: <choose(offered)>` when `choose`
/// returns a name.
pub fn inspecting_server(
    choose: impl Fn(Option<&str>) -> Option<String> + Send + Sync + 'static,
) -> (Server, mpsc::Receiver<SeenHeaders>) {
    let (tx, rx) = mpsc::channel();
    let choose = Arc::new(choose);
    let tx = Arc::new(std::sync::Mutex::new(tx));
    let server = serve(move |tcp| {
        let choose = choose.clone();
        let tx = tx.clone();
        let callback =
            move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
                let seen: SeenHeaders = req
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_ascii_lowercase(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let offered = req
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok());
                if let Some(p) = choose(offered) {
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
                }
                let _ = tx.lock().unwrap().send(seen);
                Ok(resp)
            };
        if let Ok(mut ws) = tungstenite::accept_hdr(tcp, callback) {
            echo_loop(&mut ws);
        }
    });
    (server, rx)
}

/// Reads an HTTP request head (up to the blank line, at most 64 KiB).
pub fn read_request_head(tcp: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 64 << 10 {
            return Err(io::Error::other("request head too long"));
        }
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A raw HTTP server that reads each request head and answers with `status`
/// (such as `"403 Forbidden"`) and `body`, in one write, then closes.
pub fn http_responder(status: &'static str, body: &'static str) -> Server {
    serve(move |mut tcp| {
        if read_request_head(&mut tcp).is_ok() {
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(reply.as_bytes());
            let _ = tcp.flush();
            // Let the client read the reply before the socket goes away.
            let _ = tcp.shutdown(std::net::Shutdown::Write);
            let mut sink = [0u8; 1024];
            let deadline = Instant::now() + Duration::from_secs(5);
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
            while Instant::now() < deadline {
                match tcp.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        }
    })
}

/// The payload of flood message `i`: `size` bytes (at least 8), the first 8 the
/// big-endian counter, the rest filled with `i as u8`.
pub fn flood_payload(i: u64, size: usize) -> Vec<u8> {
    let mut v = vec![i as u8; size.max(8)];
    v[..8].copy_from_slice(&i.to_be_bytes());
    v
}

/// The counter of a flood message.
pub fn flood_number(msg: &Message) -> Option<u64> {
    match msg {
        Message::Binary(b) if b.len() >= 8 => Some(u64::from_be_bytes(b[..8].try_into().unwrap())),
        _ => None,
    }
}

/// A flood server and what it reports.
pub struct Flood {
    /// The server; keep it alive for the test.
    pub server: Server,
    /// Messages the server has handed to tungstenite so far (at most a few KiB
    /// of them still in tungstenite's write buffer, the rest in the kernel).
    pub written: Arc<AtomicU64>,
    /// Set when all `n` messages are written and flushed to the kernel.
    pub all_flushed: Arc<AtomicBool>,
    /// Text and binary messages the server read from the client, while flooding.
    pub from_client: mpsc::Receiver<Message>,
}

/// A server that, on one connection, writes `n` binary messages numbered
/// `0..n` ([`flood_payload`] of `size` bytes), as fast as the socket takes
/// them, while it keeps reading what the client sends. The socket is
/// non-blocking, so a stalled write never stops the read side.
pub fn flood_server(n: u64, size: usize) -> Flood {
    let written = Arc::new(AtomicU64::new(0));
    let all_flushed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(std::sync::Mutex::new(tx));
    let (w, f) = (written.clone(), all_flushed.clone());
    let server = serve(move |tcp| {
        // A small write buffer: what "written" counts is almost all in the kernel.
        let config = WebSocketConfig::default().write_buffer_size(4 << 10);
        let Ok(mut ws) = tungstenite::accept_with_config(tcp, Some(config)) else {
            return;
        };
        if ws.get_mut().set_nonblocking(true).is_err() {
            return;
        }
        let tx = tx.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut sent = 0u64;
        let mut stalled = false;
        let would_block = |e: &tungstenite::Error| matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock);
        while Instant::now() < deadline {
            let mut progress = false;
            if stalled || sent == n {
                match ws.flush() {
                    Ok(()) => {
                        if stalled {
                            progress = true;
                        }
                        stalled = false;
                        if sent == n {
                            f.store(true, Ordering::SeqCst);
                        }
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => return,
                }
            }
            let mut burst = 0;
            while !stalled && sent < n && burst < 256 {
                match ws.write(Message::binary(flood_payload(sent, size))) {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => stalled = true, // kept in tungstenite's buffer
                    Err(_) => return,
                }
                sent += 1;
                burst += 1;
                progress = true;
                w.store(sent, Ordering::SeqCst);
            }
            loop {
                match ws.read() {
                    Ok(m) => {
                        progress = true;
                        if m.is_text() || m.is_binary() {
                            let _ = tx.send(m);
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(_) => return, // closed by the client, or broken
                }
            }
            if !progress {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    Flood {
        server,
        written,
        all_flushed,
        from_client: rx,
    }
}

/// A certificate authority made at test time.
pub struct TestCa {
    /// The CA certificate, PEM: what the client adds as a root.
    pub root_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wsapp test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            root_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses) signed by
    /// this CA, as a native-tls identity.
    pub fn identity(&self, names: &[&str]) -> native_tls::Identity {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].clone());
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let chain = format!("{}{}", cert.pem(), self.root_pem);
        native_tls::Identity::from_pkcs8(chain.as_bytes(), key.serialize_pem().as_bytes())
            .expect("native-tls identity from the generated certificate")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// A TLS echo server presenting `identity`. Failed TLS handshakes (a client
/// refusing the certificate) just end that connection.
pub fn tls_echo_server(identity: native_tls::Identity) -> Server {
    let acceptor = native_tls::TlsAcceptor::new(identity).expect("TLS acceptor");
    serve(move |tcp| {
        let Ok(tls) = acceptor.accept(tcp) else {
            return;
        };
        if let Ok(mut ws) = tungstenite::accept(tls) {
            echo_loop(&mut ws);
        }
    })
}

/// A field of `/proc/self/status` (Linux), such as `Threads` or `VmRSS`, as a number.
pub fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The process's thread count, from `/proc/self/status` (Linux).
pub fn threads() -> usize {
    proc_status("Threads").expect("/proc/self/status has Threads") as usize
}

/// The process's resident set size in bytes, from `/proc/self/status` (Linux).
pub fn rss_bytes() -> u64 {
    proc_status("VmRSS").expect("/proc/self/status has VmRSS") * 1024
}

/// The names of the process's threads that start with `prefix` (Linux).
pub fn thread_names(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| s.starts_with(prefix))
        .collect()
}

/// Polls `probe` every few milliseconds until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A server that sends `n` numbered binary messages ([`flood_payload`] of 16
/// bytes) on every connection, then reads until the client closes.
pub fn numbered_server(n: u64) -> Server {
    serve(move |tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        for i in 0..n {
            if ws.send(Message::binary(flood_payload(i, 16))).is_err() {
                return;
            }
        }
        while ws.read().is_ok() {}
    })
}
