//! Interoperability with WebSocket servers nobody here wrote: Node's `ws` and
//! Python's `websockets`, plain and over TLS, each started by the test on a
//! free port of 127.0.0.1 (`tests/peers/echo.js`, `tests/peers/echo.py`).
//!
//! The peers are installed by `tests/peers/install_interop.sh` into
//! `${WSAPP_PEERS:-$HOME/.cache/wsapp-peers}`; the tests run it themselves when
//! they are missing (this needs the npm registry and PyPI). The TLS certificate
//! is made at test time with `openssl req -x509`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wsapp::{Client, CloseCode, ErrorKind, Message, WebSocket};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------
// Installing and starting the peers.

fn peers_dir() -> PathBuf {
    match std::env::var_os("WSAPP_PEERS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
            Path::new(&home).join(".cache/wsapp-peers")
        }
    }
}

fn installed(dir: &Path) -> bool {
    dir.join("node_modules/ws/package.json").is_file() && dir.join("venv/bin/python").is_file()
}

/// The peers' directory, installing them first if needed (once per process).
fn peers() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let res = DIR.get_or_init(|| {
        let dir = peers_dir();
        if installed(&dir) {
            return Ok(dir);
        }
        let script = Path::new(MANIFEST_DIR).join("tests/peers/install_interop.sh");
        eprintln!(
            "interop: peers missing in {}; running {}",
            dir.display(),
            script.display()
        );
        let mut child = Command::new("bash")
            .arg(&script)
            .env("WSAPP_PEERS", &dir)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        let end = Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} took over 10 minutes", script.display()));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if !status.success() || !installed(&dir) {
            return Err(format!(
                "{} failed ({status}); the interop tests need node/npm, python3 with venv, \
                 and the npm registry and PyPI",
                script.display()
            ));
        }
        Ok(dir)
    });
    match res {
        Ok(d) => d,
        Err(e) => panic!("interop peers unavailable: {e}"),
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, made once per run.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    pem: Vec<u8>,
}

fn cert() -> &'static Cert {
    static CERT: OnceLock<Cert> = OnceLock::new();
    CERT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Remove the certificates of earlier runs whose process is gone.
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("interop-cert-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = base.join(format!("interop-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-days", "30", "-subj", "/CN=localhost", "-addext"])
            .arg("subjectAltName=IP:127.0.0.1,DNS:localhost")
            .stdin(Stdio::null())
            .output()
            .expect("openssl (needed for the TLS interop tests) did not run");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = std::fs::read(&cert).unwrap();
        Cert { cert, key, pem }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Node,
    Python,
}

/// A running peer; dropping it kills the process.
struct Peer {
    child: Child,
    port: u16,
    tls: bool,
    kind: Kind,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn start(kind: Kind, tls: bool) -> Peer {
        let dir = peers();
        let peers_src = Path::new(MANIFEST_DIR).join("tests/peers");
        let mut cmd = match kind {
            Kind::Node => {
                let mut c = Command::new("node");
                c.arg(peers_src.join("echo.js"))
                    .env("NODE_PATH", dir.join("node_modules"));
                c
            }
            Kind::Python => {
                let mut c = Command::new(dir.join("venv/bin/python"));
                c.arg(peers_src.join("echo.py"));
                c
            }
        };
        if tls {
            let c = cert();
            cmd.arg(&c.cert).arg(&c.key);
        }
        // stdin stays open while the test runs: the peer exits when it closes,
        // even if this process dies without running Drop.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {kind:?} peer: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut peer = Peer {
            child,
            port: 0,
            tls,
            kind,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the {kind:?} peer did not print its port within 20 s"));
        peer.port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the {kind:?} peer printed {line:?}, not a port"));
        peer
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// A client for `path` that trusts the test certificate.
    fn client(&self, path: &str) -> Client {
        let c = Client::new(self.url(path))
            .connect_timeout(Duration::from_secs(5))
            .handshake_timeout(Duration::from_secs(5))
            .close_timeout(Duration::from_secs(3));
        if self.tls {
            c.add_root_certificate(&cert().pem)
        } else {
            c
        }
    }

    fn connect(&self, path: &str) -> WebSocket {
        self.client(path)
            .connect()
            .unwrap_or_else(|e| panic!("{:?} peer, {}: {e}", self.kind, self.url(path)))
    }
}

/// The next text or binary message (pings and pongs skipped), within 10 s.
fn next_data(ws: &WebSocket) -> Message {
    next_data_within(ws, Duration::from_secs(10))
}

fn next_data_within(ws: &WebSocket, limit: Duration) -> Message {
    let deadline = Instant::now() + limit;
    loop {
        match ws.recv_deadline(deadline) {
            Ok(Some(Message::Ping(_) | Message::Pong(_))) => {}
            Ok(Some(m)) => return m,
            Ok(None) => panic!("no message within {limit:?}"),
            Err(e) => panic!("connection ended: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Scenarios, each run against every peer (see the matrix at the end).

fn text(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    let ws = peer.connect("/");
    let msgs = ["hello", "", "snow ☃ and 𝄞", &"x".repeat(70_000)];
    for m in msgs {
        ws.send_text(m).unwrap();
    }
    for m in msgs {
        assert_eq!(next_data(&ws), Message::text(m));
    }
    ws.close(1000, "done").unwrap();
    assert!(ws.recv().unwrap_err().is_closed());
}

fn binary(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    let ws = peer.connect("/");
    let all: Vec<u8> = (0..=255u8).collect();
    let msgs: Vec<Vec<u8>> = vec![all.clone(), Vec::new(), vec![0; 126], all.repeat(300)];
    for m in &msgs {
        ws.send_binary(m.clone()).unwrap();
    }
    for m in &msgs {
        assert_eq!(next_data(&ws), Message::binary(m.clone()));
    }
    ws.close(1000, "").unwrap();
}

fn big_message(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    let ws = peer
        .client("/")
        .max_message_size(Some(32 << 20))
        .max_frame_size(Some(32 << 20))
        .connect()
        .unwrap();
    let size = 16 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let start = Instant::now();
    ws.send_binary(data.clone()).unwrap();
    let got = next_data_within(&ws, Duration::from_secs(30));
    println!(
        "{kind:?} tls={tls}: 16 MiB round trip in {:?}",
        start.elapsed()
    );
    match got {
        Message::Binary(b) => {
            assert_eq!(b.len(), size);
            assert!(b[..] == data[..], "the echo differs");
        }
        other => panic!("expected binary, got {:?}", other.len()),
    }
    ws.close(1000, "").unwrap();
}

fn fragmented_from_server(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    let ws = peer.connect("/fragments");
    assert_eq!(next_data(&ws), Message::text("frag-ment-ed"));
    assert_eq!(next_data(&ws), Message::binary(vec![1u8, 2, 3]));
    // The connection is still good after it.
    ws.send_text("after").unwrap();
    assert_eq!(next_data(&ws), Message::text("after"));
    ws.close(1000, "").unwrap();
}

fn subprotocol(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    let ws = peer
        .client("/proto")
        .subprotocols(["x-unknown", "v2.json"])
        .connect()
        .unwrap();
    assert_eq!(ws.protocol(), Some("v2.json"));
    assert_eq!(next_data(&ws), Message::text("protocol=v2.json"));
    ws.close(1000, "").unwrap();

    // None that the server supports: both servers go on without one, which the
    // client refuses, as documented for `Client::subprotocols`.
    let res = peer.client("/proto").subprotocols(["x-unknown"]).connect();
    match res {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Subprotocol, "{e}"),
        Ok(ws) => panic!("connected with protocol {:?}", ws.protocol()),
    }
}

fn server_close(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    for code in [4001u16, 1001, 3000] {
        let ws = peer.connect(&format!("/close{code}"));
        let start = Instant::now();
        let err = loop {
            match ws.recv_timeout(Duration::from_secs(10)) {
                Ok(Some(Message::Ping(_) | Message::Pong(_))) => {}
                Ok(other) => panic!("expected the close, got {other:?}"),
                Err(e) => break e,
            }
        };
        assert!(err.is_closed(), "{err}");
        let frame = err.close_frame().expect("the server sent a close frame");
        assert_eq!(frame.code, CloseCode::from(code), "{err}");
        assert_eq!(frame.reason.as_str(), "reason");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // Every later call says the same.
        let again = ws.recv().unwrap_err();
        assert_eq!(
            again.close_frame().map(|f| f.code),
            Some(CloseCode::from(code))
        );
        assert!(ws.send_text("too late").is_err());
    }
}

fn server_ping_answered(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    let ws = peer.connect("/ping");
    // The ping reaches the application too, in order, before the server's verdict.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw_ping = false;
    let verdict = loop {
        match ws.recv_deadline(deadline) {
            Ok(Some(Message::Ping(p))) => {
                assert_eq!(&p[..], b"hb");
                saw_ping = true;
            }
            Ok(Some(m)) => break m,
            Ok(None) => panic!("no verdict within 10 s"),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(verdict, Message::text("pong-ok:hb"));
    assert!(saw_ping, "the server's ping was not delivered");
    ws.close(1000, "").unwrap();
}

fn client_ping_gets_pong(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    let ws = peer.connect("/");
    ws.ping(&b"are you there"[..]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ws.recv_deadline(deadline) {
            Ok(Some(Message::Pong(p))) => {
                assert_eq!(&p[..], b"are you there");
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("no pong within 10 s"),
            Err(e) => panic!("{e}"),
        }
    }
    ws.close(1000, "").unwrap();
}

/// permessage-deflate: the server says it agreed, and compressed frames
/// flowed both ways (wsapp's counters: fewer bytes on the wire than inflated).
fn compressed_both_ways(kind: Kind, tls: bool) {
    let peer = Peer::start(kind, tls);
    let ws = peer
        .client("/ext")
        .compression(wsapp::Compression::default().threshold(0))
        .connect()
        .unwrap();
    let agreed = ws.compression().expect("permessage-deflate agreed");
    match next_data(&ws) {
        Message::Text(t) => assert!(t.contains("permessage-deflate"), "{kind:?}: {t}"),
        other => panic!("{other:?}"),
    }
    let msgs: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"id":{i},"kind":"quote","bid":"{i}.25","ask":"{i}.75"}}"#))
        .chain(["".to_string(), "z".repeat(100_000)])
        .collect();
    for m in &msgs {
        ws.send_text(m.as_str()).unwrap();
    }
    for m in &msgs {
        assert_eq!(next_data(&ws), Message::text(m.as_str()));
    }
    let s = ws.stats();
    println!("{kind:?} tls={tls}: {agreed:?}\n{s}");
    assert_eq!(s.compressed_out, msgs.len() as u64, "{s}");
    assert!(s.compressed_in >= msgs.len() as u64, "{s}");
    assert!(s.compressed_in_wire * 5 < s.compressed_in_plain, "{s}");
    assert!(s.compressed_out_wire * 5 < s.compressed_out_plain, "{s}");
    ws.close(1000, "").unwrap();
}

macro_rules! matrix {
    ($($module:ident: $kind:expr, $tls:expr;)*) => {$(
        mod $module {
            use super::*;
            #[test]
            fn text() {
                super::text($kind, $tls)
            }
            #[test]
            fn binary() {
                super::binary($kind, $tls)
            }
            #[test]
            fn big_message_16_mib() {
                super::big_message($kind, $tls)
            }
            #[test]
            fn fragmented_from_server() {
                super::fragmented_from_server($kind, $tls)
            }
            #[test]
            fn subprotocol() {
                super::subprotocol($kind, $tls)
            }
            #[test]
            fn server_close_codes_and_reasons() {
                super::server_close($kind, $tls)
            }
            #[test]
            fn server_ping_answered() {
                super::server_ping_answered($kind, $tls)
            }
            #[test]
            fn client_ping_gets_pong() {
                super::client_ping_gets_pong($kind, $tls)
            }
            #[test]
            fn compressed_both_ways() {
                super::compressed_both_ways($kind, $tls)
            }
        }
    )*};
}

matrix! {
    node_ws: Kind::Node, false;
    node_wss: Kind::Node, true;
    python_ws: Kind::Python, false;
    python_wss: Kind::Python, true;
}
