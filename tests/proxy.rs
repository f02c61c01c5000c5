//! Proxies: WebSocket echo through real squid (HTTP CONNECT with and without
//! Basic auth, and squid as an HTTPS proxy) and microsocks (SOCKS5 with and
//! without username/password), all on 127.0.0.1 and started by the tests.
//!
//! A missing proxy binary is installed by `tests/peers/install_proxies.sh`
//! (apt-get). If that is not possible the test is skipped with a message,
//! unless `CI` is set, where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::peers::{self, free_port};
use common::TestCa;
use wsapp::{Client, ErrorKind, Message, Proxy};

const TIMEOUT: Duration = Duration::from_secs(10);
const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

// --- peers ------------------------------------------------------------------

/// `bin`, installed if need be; `None` means skip the test (never under `CI`).
fn find_binary(bin: &str) -> Option<PathBuf> {
    let found = peers::find_binary(bin);
    if found.is_none() {
        skip(&format!(
            "{bin} is missing (run tests/peers/install_proxies.sh)"
        ));
    }
    found
}

fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
}

/// A proxy process this test started; on drop it is killed by its id and
/// its files are removed.
struct Peer {
    child: Child,
    port: u16,
    dir: Option<PathBuf>,
    /// squid's shared memory segments, /dev/shm/NAME-*, left behind by SIGKILL.
    shm_prefix: Option<String>,
    /// For an HTTPS proxy: its self-signed certificate, PEM.
    cert_pem: Option<String>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(prefix) = &self.shm_prefix {
            if let Ok(entries) = std::fs::read_dir("/dev/shm") {
                for entry in entries.flatten() {
                    if entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(prefix.as_str())
                    {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
    }
}

/// A name unique to this process and call; alphanumeric, as squid's `-n` wants.
fn unique_name(what: &str) -> String {
    static INSTANCE: AtomicUsize = AtomicUsize::new(0);
    format!(
        "wsapp{what}{}x{}",
        std::process::id(),
        INSTANCE.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Squid {
    Plain,
    BasicAuth,
    Https,
}

/// squid on a free port of 127.0.0.1, allowing CONNECT to loopback only.
fn squid(mode: Squid) -> Option<Peer> {
    let squid = find_binary("squid")?;
    let helper = [
        "/usr/lib/squid/basic_ncsa_auth",
        "/usr/lib64/squid/basic_ncsa_auth",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    if mode == Squid::BasicAuth && helper.is_none() {
        skip("squid's basic_ncsa_auth helper is missing");
        return None;
    }
    for _attempt in 0..3 {
        let name = unique_name("sq");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        // squid drops root to user `proxy`; its helper must read the htpasswd.
        set_mode(&dir, 0o755);
        let port = free_port();
        let mut cert_pem = None;
        let (listen, auth) = match mode {
            Squid::Plain => (format!("http_port 127.0.0.1:{port}"), String::new()),
            Squid::BasicAuth => {
                let htpasswd = dir.join("htpasswd");
                let hash = Command::new("openssl")
                    .args(["passwd", "-apr1", PASSWORD])
                    .output()
                    .expect("openssl passwd (tests/peers/install_proxies.sh installs openssl)");
                assert!(hash.status.success(), "openssl passwd failed");
                let hash = String::from_utf8(hash.stdout).unwrap();
                std::fs::write(&htpasswd, format!("{USER}:{}\n", hash.trim())).unwrap();
                set_mode(&htpasswd, 0o644);
                let auth = format!(
                    "auth_param basic program {} {}\n\
                     acl authed proxy_auth REQUIRED\n\
                     http_access deny !authed\n",
                    helper.as_ref().unwrap().display(),
                    htpasswd.display()
                );
                (format!("http_port 127.0.0.1:{port}"), auth)
            }
            Squid::Https => {
                let certified =
                    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
                let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
                std::fs::write(&cert, certified.cert.pem()).unwrap();
                std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
                set_mode(&key, 0o644);
                cert_pem = Some(certified.cert.pem());
                let listen = format!(
                    "https_port 127.0.0.1:{port} tls-cert={} tls-key={}",
                    cert.display(),
                    key.display()
                );
                (listen, String::new())
            }
        };
        let conf = dir.join("squid.conf");
        std::fs::write(
            &conf,
            format!(
                "{listen}\n\
                 pid_filename none\n\
                 cache_log /dev/null\n\
                 access_log none\n\
                 cache deny all\n\
                 shutdown_lifetime 0 seconds\n\
                 pinger_enable off\n\
                 udp_incoming_address 127.0.0.1\n\
                 dns_nameservers 127.0.0.1\n\
                 acl to_lo dst 127.0.0.0/8 ::1\n\
                 http_access deny !to_lo\n\
                 {auth}\
                 http_access allow localhost\n\
                 http_access deny all\n"
            ),
        )
        .unwrap();
        let stderr = dir.join("stderr");
        let child = Command::new(&squid)
            .args(["-N", "-n", &name, "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start squid");
        let mut peer = Peer {
            child,
            port,
            dir: Some(dir),
            shm_prefix: Some(format!("{name}-")),
            cert_pem,
        };
        if peers::wait_ready(&mut peer.child, port, TIMEOUT) {
            return Some(peer);
        }
        let output = std::fs::read_to_string(&stderr).unwrap_or_default();
        eprintln!("squid did not start on port {port}; retrying. Its stderr:\n{output}");
    }
    panic!("squid did not start in 3 attempts");
}

/// microsocks on a free port of 127.0.0.1; with `auth`, only USER:PASSWORD is accepted.
fn microsocks(auth: bool) -> Option<Peer> {
    let bin = find_binary("microsocks")?;
    for _attempt in 0..3 {
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-b",
            "127.0.0.1",
        ]);
        if auth {
            cmd.args(["-u", USER, "-P", PASSWORD]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start microsocks");
        let mut peer = Peer {
            child,
            port,
            dir: None,
            shm_prefix: None,
            cert_pem: None,
        };
        if peers::wait_ready(&mut peer.child, port, TIMEOUT) {
            return Some(peer);
        }
        eprintln!("microsocks did not start on port {port}; retrying");
    }
    panic!("microsocks did not start in 3 attempts");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// --- helpers ----------------------------------------------------------------

fn client(url: &str, proxy: &str) -> Client {
    Client::new(url)
        .proxy(Proxy::new(proxy).unwrap())
        .connect_timeout(TIMEOUT)
        .handshake_timeout(TIMEOUT)
}

/// Connects, checks the connection runs through the proxy, and echoes a few messages.
fn assert_echo(client: &Client, proxy_port: u16) {
    let ws = client.connect().unwrap_or_else(|e| panic!("connect: {e}"));
    assert_eq!(ws.peer_addr().port(), proxy_port, "not through the proxy");
    for i in 0..3 {
        let text = format!("hello through the proxy {i}");
        ws.send_text(text.clone()).unwrap();
        let got = ws.recv_timeout(TIMEOUT).unwrap().expect("echo in time");
        assert_eq!(got, Message::text(text));
    }
    let bytes = vec![0u8, 1, 2, 255];
    ws.send_binary(bytes.clone()).unwrap();
    let got = ws.recv_timeout(TIMEOUT).unwrap().expect("echo in time");
    assert_eq!(got, Message::binary(bytes));
}

/// Connecting fails with a proxy error whose message has every part of
/// `expected` and no password.
fn assert_proxy_error(client: &Client, expected: &[&str]) {
    let err = match client.connect() {
        Ok(_) => panic!("connected; expected a proxy error"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Proxy, "{text}");
    for part in expected {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    assert!(
        !text.contains(PASSWORD) && !text.contains("wrong"),
        "{text}"
    );
}

// --- tests ------------------------------------------------------------------

#[test]
fn http_connect_without_auth() {
    let Some(squid) = squid(Squid::Plain) else {
        return;
    };
    let proxy = format!("http://127.0.0.1:{}", squid.port);
    let echo = common::echo_server();
    assert_echo(&client(&echo.url(), &proxy), squid.port);

    // wss: TLS to the server inside the tunnel.
    let ca = TestCa::new();
    let tls_echo = common::tls_echo_server(ca.identity(&["127.0.0.1"]));
    let url = format!("wss://127.0.0.1:{}/", tls_echo.port());
    let c = client(&url, &proxy).add_root_certificate(ca.root_pem.as_bytes());
    assert_echo(&c, squid.port);
}

#[test]
fn http_connect_with_basic_auth() {
    let Some(squid) = squid(Squid::BasicAuth) else {
        return;
    };
    let echo = common::echo_server();
    let proxy = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", squid.port);
    assert_echo(&client(&echo.url(), &proxy), squid.port);
}

#[test]
fn http_connect_refusals() {
    let Some(squid) = squid(Squid::BasicAuth) else {
        return;
    };
    let echo = common::echo_server();
    let port = squid.port;
    let wrong = client(
        &echo.url(),
        &format!("http://{USER}:wrong@127.0.0.1:{port}"),
    );
    assert_proxy_error(
        &wrong,
        &["CONNECT refused: 407", "did not accept the credentials"],
    );
    let none = client(&echo.url(), &format!("http://127.0.0.1:{port}"));
    assert_proxy_error(&none, &["CONNECT refused: 407", "wants credentials"]);
    // The target's port is closed: squid answers 503.
    let closed = format!("ws://127.0.0.1:{}/", free_port());
    let closed = client(
        &closed,
        &format!("http://{USER}:{PASSWORD}@127.0.0.1:{port}"),
    );
    assert_proxy_error(&closed, &["CONNECT refused: 503"]);
}

#[test]
fn https_proxy() {
    let Some(squid) = squid(Squid::Https) else {
        return;
    };
    let proxy = format!("https://127.0.0.1:{}", squid.port);
    let proxy_cert = squid.cert_pem.clone().unwrap();
    let echo = common::echo_server();
    let c = client(&echo.url(), &proxy).add_root_certificate(proxy_cert.as_bytes());
    assert_echo(&c, squid.port);

    // wss through an HTTPS proxy: TLS inside TLS.
    let ca = TestCa::new();
    let tls_echo = common::tls_echo_server(ca.identity(&["127.0.0.1"]));
    let url = format!("wss://127.0.0.1:{}/", tls_echo.port());
    let c = client(&url, &proxy)
        .add_root_certificate(proxy_cert.as_bytes())
        .add_root_certificate(ca.root_pem.as_bytes());
    assert_echo(&c, squid.port);

    // The proxy's certificate is checked.
    let err = client(&echo.url(), &proxy).connect().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(
        err.to_string().starts_with(&format!("proxy {proxy}: tls:")),
        "{err}"
    );
}

#[test]
fn socks5_without_auth() {
    let Some(socks) = microsocks(false) else {
        return;
    };
    let echo = common::echo_server();
    for scheme in ["socks5", "socks5h"] {
        let proxy = format!("{scheme}://127.0.0.1:{}", socks.port);
        assert_echo(&client(&echo.url(), &proxy), socks.port);
    }

    // wss: TLS to the server inside the SOCKS tunnel.
    let ca = TestCa::new();
    let tls_echo = common::tls_echo_server(ca.identity(&["127.0.0.1"]));
    let url = format!("wss://127.0.0.1:{}/", tls_echo.port());
    for scheme in ["socks5", "socks5h"] {
        let proxy = format!("{scheme}://127.0.0.1:{}", socks.port);
        let c = client(&url, &proxy).add_root_certificate(ca.root_pem.as_bytes());
        assert_echo(&c, socks.port);
    }
}

#[test]
fn socks5_with_auth() {
    let Some(socks) = microsocks(true) else {
        return;
    };
    let echo = common::echo_server();
    for scheme in ["socks5", "socks5h"] {
        let proxy = format!("{scheme}://{USER}:{PASSWORD}@127.0.0.1:{}", socks.port);
        assert_echo(&client(&echo.url(), &proxy), socks.port);
    }
}

#[test]
fn socks5_refusals() {
    let Some(socks) = microsocks(true) else {
        return;
    };
    let echo = common::echo_server();
    let port = socks.port;
    let wrong = client(
        &echo.url(),
        &format!("socks5h://{USER}:wrong@127.0.0.1:{port}"),
    );
    assert_proxy_error(&wrong, &["username/password authentication failed"]);
    let none = client(&echo.url(), &format!("socks5h://127.0.0.1:{port}"));
    assert_proxy_error(&none, &["requires authentication"]);
    // The target's port is closed: microsocks replies 5.
    let closed = format!("ws://127.0.0.1:{}/", free_port());
    let closed = client(
        &closed,
        &format!("socks5://{USER}:{PASSWORD}@127.0.0.1:{port}"),
    );
    assert_proxy_error(&closed, &["connection refused (reply 5)"]);
}

// --- errors that name the proxy (no external peer needed) --------------------

/// A listener on 127.0.0.1 that accepts connections and never writes a byte.
/// It holds what it accepted until it is dropped (or for at most `TIMEOUT`).
struct SilentProxy {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentProxy {
    fn start() -> SilentProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + TIMEOUT;
            let mut held = Vec::new();
            while std::time::Instant::now() < deadline && !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) if held.len() < 16 => held.push(tcp),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentProxy {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn untrusted_https_proxy_certificate_names_the_proxy() {
    // A TLS listener with a certificate from a CA the client does not trust
    // plays the HTTPS proxy; the target is never reached.
    let untrusted = TestCa::new();
    let fake_proxy = common::tls_echo_server(untrusted.identity(&["127.0.0.1"]));
    let port = fake_proxy.port();
    let proxy = format!("https://{USER}:{PASSWORD}@127.0.0.1:{port}");
    let err = client("ws://127.0.0.1:9/", &proxy).connect().unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Tls, "{text}");
    assert!(
        text.starts_with(&format!("proxy https://***@127.0.0.1:{port}: tls:")),
        "{text}"
    );
    assert!(!text.contains(PASSWORD) && !text.contains(USER), "{text}");
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
}

#[test]
fn silent_proxy_timeout_names_the_proxy() {
    let silent = SilentProxy::start();
    let port = silent.port;
    let short = Duration::from_millis(300);
    for (scheme, phase) in [("http", "proxy"), ("socks5h", "proxy"), ("https", "TLS")] {
        let proxy = Proxy::new(&format!("{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}")).unwrap();
        let started = std::time::Instant::now();
        let err = Client::new("ws://127.0.0.1:9/")
            .proxy(proxy)
            .connect_timeout(short)
            .handshake_timeout(short)
            .connect()
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{scheme}: {text}");
        assert!(
            text.contains(&format!("127.0.0.1:{port}")) && text.contains(phase),
            "{scheme}: {text}"
        );
        assert!(
            !text.contains(PASSWORD) && !text.contains(USER),
            "{scheme}: {text}"
        );
        assert!(
            started.elapsed() < TIMEOUT,
            "{scheme}: {:?}",
            started.elapsed()
        );
    }
}
