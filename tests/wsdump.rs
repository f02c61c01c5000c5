//! Runs the `wsdump` binary against tungstenite servers on 127.0.0.1.
//!
//! The binary needs the `cli` feature. Under `cargo test --features cli` cargo
//! builds it and hands over its path; under plain `cargo test` this file builds
//! it once with `cargo build --features cli --bin wsdump` (cargo has released
//! its build lock while tests run), so CI's plain `cargo test` exercises it.
//! Every wait is bounded; a child that overstays is killed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

const RUN_LIMIT: Duration = Duration::from_secs(20);

/// The wsdump executable, built once per test process when cargo did not.
///
/// Cargo sets `CARGO_BIN_EXE_wsdump` even when the `cli` feature is off (it
/// then names a file that may be missing or stale), so the feature decides.
fn wsdump() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if cfg!(feature = "cli") {
            PathBuf::from(env!("CARGO_BIN_EXE_wsdump"))
        } else {
            build()
        }
    })
}

fn build() -> PathBuf {
    let mut child = Command::new(env!("CARGO"))
        .args(["build", "--features", "cli", "--bin", "wsdump"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run cargo build");
    let (out, ended) = collect(child.stdout.take().unwrap());
    let status = wait(&mut child, Duration::from_secs(900), "cargo build");
    assert!(
        status.success(),
        "cargo build --features cli --bin wsdump failed"
    );
    ended.recv_timeout(RUN_LIMIT).expect("cargo's output ends");
    let out = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    // {"reason":"compiler-artifact",...,"executable":"/.../target/debug/wsdump",...}
    out.lines()
        .filter(|l| l.contains("\"compiler-artifact\""))
        .filter_map(|l| l.split("\"executable\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .find(|exe| {
            let p = PathBuf::from(exe);
            p.file_stem().is_some_and(|s| s == "wsdump")
        })
        .map(|exe| PathBuf::from(exe.replace("\\\\", "\\")))
        .expect("cargo build names the wsdump executable")
}

/// Reads `r` to its end on a thread: the bytes so far are in the buffer, and
/// the receiver hears when the end came.
fn collect(mut r: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, Receiver<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (done, ended) = mpsc::channel();
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
        let _ = done.send(());
    });
    (buf, ended)
}

/// Waits for `child` up to `limit`; kills it and fails the test after that.
fn wait(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running wsdump.
struct Run {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    ends: [Receiver<()>; 2],
}

struct Done {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn start(args: &[&str]) -> Run {
        let mut child = Command::new(wsdump())
            .args(args)
            .env_remove("http_proxy")
            .env_remove("all_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("ALL_PROXY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wsdump");
        let (stdout, out_end) = collect(child.stdout.take().unwrap());
        let (stderr, err_end) = collect(child.stderr.take().unwrap());
        Run {
            child,
            stdout,
            stderr,
            ends: [out_end, err_end],
        }
    }

    fn type_in(&mut self, text: &str) {
        // A wsdump that already ended (a refused handshake, say) has closed
        // its stdin; what it printed tells the test what happened.
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        let _ = stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush());
    }

    fn end_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    fn wait_stdout(&self, needle: &str) {
        let deadline = Instant::now() + RUN_LIMIT;
        while !String::from_utf8_lossy(&self.stdout.lock().unwrap()).contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} on stdout");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> Done {
        let status = wait(&mut self.child, RUN_LIMIT, "wsdump");
        for end in &self.ends {
            end.recv_timeout(RUN_LIMIT).expect("wsdump's output ends");
        }
        let text =
            |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
        Done {
            status,
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
        }
    }
}

/// Runs wsdump with `stdin` piped in and closed, to its end.
fn run(args: &[&str], stdin: &str) -> Done {
    let mut r = Run::start(args);
    r.type_in(stdin);
    r.end_stdin();
    r.finish()
}

type Ws = tungstenite::WebSocket<TcpStream>;

/// A server for one connection: upgrades it and hands it to `session`.
/// Returns its URL and what the client's close frame said, if one came.
fn serve(
    session: impl FnOnce(&mut Ws, &Sender<(u16, String)>) + Send + 'static,
) -> (String, Receiver<(u16, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(RUN_LIMIT)).unwrap();
        let mut ws = tungstenite::accept(stream).expect("upgrade");
        session(&mut ws, &tx);
    });
    (url, rx)
}

/// Echoes text and binary until the client closes; reports its close frame.
fn echo(ws: &mut Ws, closes: &Sender<(u16, String)>) {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                let f = frame.map_or((1005, String::new()), |f| {
                    (f.code.into(), f.reason.to_string())
                });
                let _ = closes.send(f);
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return, // ConnectionClosed after the close handshake, or a failure
        }
    }
}

fn client_close(rx: &Receiver<(u16, String)>) -> (u16, String) {
    rx.recv_timeout(RUN_LIMIT)
        .expect("the client sent a close frame")
}

#[test]
fn stdin_lines_come_back_on_stdout() {
    let (url, closes) = serve(echo);
    let done = run(&[&url], "hello\nwörld\r\n");
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(done.stdout, "< text: hello\n< text: wörld\n");
    assert_eq!(client_close(&closes), (1000, String::new()));
}

#[test]
fn raw_prints_payloads_only_and_text_goes_first() {
    let (url, _closes) = serve(echo);
    let done = run(&["--raw", "-t", "first", &url], "second\nthird\n");
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(done.stdout, "first\nsecond\nthird\n");
}

#[test]
fn close_code_and_reason_on_eof() {
    let (url, closes) = serve(echo);
    let done = run(&["--close", "4001:done", "--eof-wait", "0.2", &url], "");
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(client_close(&closes), (4001, "done".to_string()));
}

#[test]
fn refused_handshake_prints_the_status() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(RUN_LIMIT)).unwrap();
        let mut req = Vec::new();
        let mut byte = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
            req.push(byte[0]);
        }
        let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno");
    });
    let done = run(&[&url], "never sent\n");
    assert!(!done.status.success());
    assert_eq!(done.stdout, "");
    assert_eq!(done.stderr.lines().count(), 1, "{}", done.stderr);
    assert!(done.stderr.starts_with("wsdump: "), "{}", done.stderr);
    assert!(done.stderr.contains("403"), "{}", done.stderr);
}

#[test]
fn stats_lines_on_stderr() {
    let (url, _closes) = serve(echo);
    let done = run(&["--stats", "0.2", "--eof-wait", "1", &url], "x\n");
    assert!(done.status.success(), "{}", done.stderr);
    let stats = done
        .stderr
        .lines()
        .filter(|l| l.starts_with("stats: "))
        .count();
    assert!(stats >= 2, "{}", done.stderr);
    assert!(done.stderr.contains("inbox "), "{}", done.stderr);
    assert_eq!(done.stdout, "< text: x\n");
}

#[test]
fn binary_compressed_and_control_frames_are_shown() {
    let (url, _closes) = serve(|ws, _| {
        ws.send(Message::binary(vec![0u8, 1, 2, 0xff, b'A']))
            .unwrap();
        ws.send(Message::binary(zlib_stored(b"zipped"))).unwrap();
        ws.send(Message::binary(gzip_stored(b"gzipped"))).unwrap();
        ws.send(Message::binary(&b"utf-8 bytes"[..])).unwrap();
        ws.send(Message::Ping("hb".into())).unwrap();
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
        while ws.read().is_ok() {}
    });
    let done = Run::start(&["-v", "--timings", &url]).finish();
    assert!(done.status.success(), "{}", done.stderr);
    let out = &done.stdout;
    for want in [
        "< binary: 5 bytes\n  0000  00 01 02 ff 41 ",
        "|....A|",
        "< binary (zlib 17 B -> 6 B): zipped\n",
        "< binary (gzip 30 B -> 7 B): gzipped\n",
        "< binary: utf-8 bytes\n",
        "< ping: hb\n",
        "< close 1000 bye\n",
    ] {
        assert!(out.contains(want), "no {want:?} in\n{out}");
    }
    // --timings: "0.001234: < binary..."
    let first = out.lines().next().unwrap();
    let (secs, rest) = first.split_once(": ").unwrap();
    assert!(
        secs.parse::<f64>().is_ok() && rest.starts_with("< binary"),
        "{first}"
    );
}

/// `-v` on a compressed connection: what was agreed, and per message the
/// bytes on the wire against the bytes inflated.
#[test]
fn verbose_shows_compressed_and_inflated_sizes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let text = "{\"symbol\":\"BTC\",\"bid\":42000.5}".repeat(20);
    let payload = text.clone();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(RUN_LIMIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
            tcp.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(
            head.contains("permessage-deflate"),
            "offered by default: {head}"
        );
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_string();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        );
        tcp.write_all(resp.as_bytes()).unwrap();
        // One compressed text message (RSV1), then a close.
        let mut z = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(payload.len() + 64);
        z.compress_vec(payload.as_bytes(), &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        assert!(out.len() < 126);
        let mut frame = vec![0x80 | 0x40 | 0x1, out.len() as u8];
        frame.extend_from_slice(&out);
        frame.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
        tcp.write_all(&frame).unwrap();
        let mut sink = [0u8; 256];
        while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
    });
    let done = Run::start(&["-v", &url]).finish();
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("(permessage-deflate: server window 15 bits"),
        "{}",
        done.stderr
    );
    let line = done
        .stdout
        .lines()
        .find(|l| l.starts_with("< text: "))
        .unwrap_or_else(|| panic!("no text line in\n{}", done.stdout));
    assert!(line.contains(&text), "{line}");
    let plain = format!("{} B inflated", text.len());
    assert!(
        line.contains("deflate so far: 1 messages") && line.contains(&plain),
        "{line}"
    );
}

#[test]
fn abnormal_server_close_is_an_error() {
    let (url, _closes) = serve(|ws, _| {
        ws.close(Some(CloseFrame {
            code: CloseCode::Error,
            reason: "oops".into(),
        }))
        .unwrap();
        while ws.read().is_ok() {}
    });
    // Stdin stays open: the server ends the run.
    let done = Run::start(&[&url]).finish();
    assert_eq!(done.status.code(), Some(1));
    assert!(
        done.stderr.starts_with("wsdump: closed: code 1011"),
        "{}",
        done.stderr
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_closes_with_1000() {
    let (url, closes) = serve(echo);
    let mut r = Run::start(&[&url]);
    r.type_in("before ctrl-c\n");
    r.wait_stdout("< text: before ctrl-c\n");
    let pid = r.child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let done = r.finish();
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(client_close(&closes), (1000, String::new()));
}

#[test]
fn help_and_bad_arguments() {
    let done = run(&["--help"], "");
    assert!(done.status.success());
    assert!(done.stdout.contains("Usage: wsdump [OPTIONS] URL"));
    let done = run(&["--overflow", "sometimes", "ws://127.0.0.1:1/"], "");
    assert_eq!(done.status.code(), Some(2));
    assert!(
        done.stderr.starts_with("wsdump: --overflow"),
        "{}",
        done.stderr
    );
}

/// A zlib stream holding `data` in one stored (uncompressed) deflate block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    out.extend(stored_block(data));
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend(((b << 16) | a).to_be_bytes());
    out
}

/// A gzip member holding `data` in one stored deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(stored_block(data));
    let mut crc = !0u32;
    for &x in data {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend((!crc).to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

fn stored_block(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut out = vec![1]; // BFINAL, BTYPE 00
    out.extend(len.to_le_bytes());
    out.extend((!len).to_le_bytes());
    out.extend(data);
    out
}
