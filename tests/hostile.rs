//! A hostile server: one raw TCP server on `127.0.0.1:0` per case, each sending
//! one misbehaviour, during the upgrade or after it.
//!
//! For every case the client must end with the right [`ErrorKind`], within a
//! bound, without a panic; where RFC 6455 says so the server must receive a
//! close frame with the right code (1002, 1007, 1009); the connection's I/O
//! thread must be gone afterwards; and the good messages sent before the fault
//! must still be delivered, in order, before the error.
//!
//! Then property tests: random URLs, random header names and values, and random
//! frame sequences from a raw server.
//!
//! The tests here count the process's threads, so they run one at a time
//! (`SERIAL`); each case takes well under a second except the timeouts.

mod common;

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use wsapp::{Client, Error, ErrorKind, Message};

use common::raw::*;

// ---------------------------------------------------------------------------
// Process probes: serial runs, thread counts, panics on the crate's threads.

static SERIAL: Mutex<()> = Mutex::new(());
static WSAPP_PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// Test threads are named after their tests, which all start with this.
const TEST_PREFIX: &str = "hostile_";
/// Threads this file starts to play the server.
const SERVER_THREAD: &str = "hostile-srv";

fn install_panic_hook() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("wsapp"))
            {
                WSAPP_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Names of the process's live threads (Linux: `/proc/self/task/*/comm`).
fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .map(|s| s.trim_end().to_string())
        .collect()
}

/// Threads that are not libtest's per-test threads (those come and go as the
/// runner schedules tests and are not ours to count).
fn counted_threads() -> Vec<String> {
    thread_names()
        .into_iter()
        .filter(|n| !n.starts_with(TEST_PREFIX))
        .collect()
}

fn wsapp_threads() -> Vec<String> {
    thread_names()
        .into_iter()
        .filter(|n| n.starts_with("wsapp"))
        .collect()
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs one case alone and checks afterwards that the thread count is back
/// where it was and that no crate thread panicked.
struct Guard {
    _serial: MutexGuard<'static, ()>,
    baseline: usize,
    panics: usize,
}

fn guard() -> Guard {
    install_panic_hook();
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Guard {
        _serial: serial,
        baseline: counted_threads().len(),
        panics: WSAPP_PANICS.load(Ordering::SeqCst),
    }
}

impl Guard {
    fn finish(self) {
        let ok = wait_until(Duration::from_secs(3), || {
            counted_threads().len() <= self.baseline && wsapp_threads().is_empty()
        });
        assert!(
            ok,
            "threads did not come back: {} now, {} before; live: {:?}",
            counted_threads().len(),
            self.baseline,
            counted_threads()
        );
        assert_eq!(
            WSAPP_PANICS.load(Ordering::SeqCst),
            self.panics,
            "a wsapp thread panicked (see stderr)"
        );
    }
}

// ---------------------------------------------------------------------------
// The raw server.

/// One connection's server on `127.0.0.1:0`, run by `f` on its own thread.
struct RawServer<T> {
    port: u16,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> RawServer<T> {
    fn start(f: impl FnOnce(TcpStream) -> T + Send + 'static) -> RawServer<T> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let handle = std::thread::Builder::new()
            .name(SERVER_THREAD.into())
            .spawn(move || {
                let end = Instant::now() + Duration::from_secs(10);
                let tcp = loop {
                    match listener.accept() {
                        Ok((tcp, _)) => break tcp,
                        Err(e) if e.kind() == IoKind::WouldBlock && Instant::now() < end => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                };
                drop(listener);
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                f(tcp)
            })
            .unwrap();
        RawServer {
            port,
            handle: Some(handle),
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// Waits for the server thread (bounded by its own timeouts) and returns what it saw.
    fn join(mut self) -> T {
        match self.handle.take().unwrap().join() {
            Ok(t) => t,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl<T> Drop for RawServer<T> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Handshake cases.

/// Client options for every case: short, bounded timeouts.
fn client(url: &str) -> Client {
    Client::new(url)
        .connect_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(2))
        .close_timeout(Duration::from_secs(1))
}

/// Runs a server that answers the upgrade with `reply(key, stream)`, connects,
/// and returns the error and how long it took.
fn handshake_case(
    configure: impl FnOnce(Client) -> Client,
    reply: impl FnOnce(String, &mut TcpStream) + Send + 'static,
) -> (Error, Duration) {
    let server = RawServer::start(move |mut tcp| {
        if let Ok(key) = read_request(&mut tcp) {
            reply(key, &mut tcp);
        }
    });
    let start = Instant::now();
    let res = configure(client(&server.url())).connect();
    let took = start.elapsed();
    let err = match res {
        Ok(ws) => panic!("the upgrade succeeded: {ws:?}"),
        Err(e) => e,
    };
    println!("error after {took:?}: {err}");
    drop(server);
    (err, took)
}

#[test]
fn hostile_handshake_wrong_accept_key() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c,
        |_key, tcp| {
            let _ = tcp.write_all(switching("bm90IHRoZSBrZXkgc2VudA==").as_bytes());
            std::thread::sleep(Duration::from_millis(200));
        },
    );
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert!(
        err.to_string().to_lowercase().contains("accept"),
        "the message should name the bad Sec-WebSocket-Accept: {err}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    g.finish();
}

#[test]
fn hostile_handshake_no_upgrade_header() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c,
        |key, tcp| {
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(&key)
            );
            let _ = tcp.write_all(reply.as_bytes());
            std::thread::sleep(Duration::from_millis(200));
        },
    );
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert!(
        err.to_string().to_lowercase().contains("upgrade"),
        "the message should name the missing Upgrade header: {err}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    g.finish();
}

#[test]
fn hostile_handshake_status_200() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c,
        |_key, tcp| {
            let _ = tcp.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nnot a socket",
            );
            std::thread::sleep(Duration::from_millis(200));
        },
    );
    assert_eq!(err.kind(), ErrorKind::HandshakeRejected, "{err}");
    match &err {
        Error::HandshakeRejected(resp) => assert_eq!(resp.status().as_u16(), 200),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("200"), "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    g.finish();
}

#[test]
fn hostile_handshake_slowloris_headers_time_out() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c.handshake_timeout(Duration::from_secs(1)),
        |key, tcp| {
            // A status line, then a header line every 100 ms, never the blank line.
            let _ = key;
            let _ = tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\n");
            let end = Instant::now() + Duration::from_secs(15);
            let mut i = 0;
            while Instant::now() < end {
                i += 1;
                if tcp
                    .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                    .is_err()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        },
    );
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err} after {took:?}");
    assert!(
        matches!(err, Error::Timeout(wsapp::Phase::Handshake)),
        "{err:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "handshake_timeout(1s) took {took:?}"
    );
    g.finish();
}

#[test]
fn hostile_handshake_megabytes_of_headers() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c,
        |_key, tcp| {
            let _ = tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\n");
            let line = format!("X-Big: {}\r\n", "a".repeat(1000));
            // 8 MiB of headers, unless the client hangs up first.
            for _ in 0..8 * 1024 {
                if tcp.write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
            let _ = tcp.write_all(b"\r\n");
        },
    );
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert!(err.to_string().starts_with("handshake"), "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    g.finish();
}

#[test]
fn hostile_handshake_megabytes_in_one_header_line() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c,
        |_key, tcp| {
            let _ = tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\nX-Huge: ");
            let chunk = vec![b'a'; 64 << 10];
            for _ in 0..64 {
                if tcp.write_all(&chunk).is_err() {
                    break;
                }
            }
        },
    );
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    g.finish();
}

#[test]
fn hostile_handshake_garbage_instead_of_http() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c,
        |_key, tcp| {
            let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe garbage \x01\x02\r\n\r\n");
            std::thread::sleep(Duration::from_millis(200));
        },
    );
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    g.finish();
}

#[test]
fn hostile_handshake_binary_noise_then_eof() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c,
        |_key, tcp| {
            let noise: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
            let _ = tcp.write_all(&noise);
        },
    );
    assert!(
        matches!(err.kind(), ErrorKind::Handshake | ErrorKind::ConnectionLost),
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    g.finish();
}

#[test]
fn hostile_handshake_eof_mid_response() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c,
        |_key, tcp| {
            let _ = tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webso");
        },
    );
    assert!(
        matches!(err.kind(), ErrorKind::Handshake | ErrorKind::ConnectionLost),
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    g.finish();
}

#[test]
fn hostile_handshake_silent_server_times_out() {
    let g = guard();
    let (err, took) = handshake_case(
        |c| c.handshake_timeout(Duration::from_millis(500)),
        |_key, tcp| {
            // Read whatever comes until the client gives up.
            let mut b = [0u8; 64];
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            while matches!(tcp.read(&mut b), Ok(n) if n > 0) {}
        },
    );
    assert!(
        matches!(err, Error::Timeout(wsapp::Phase::Handshake)),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    g.finish();
}

// ---------------------------------------------------------------------------
// Cases after a good upgrade.

const GOOD: [&str; 3] = ["good 1", "good 2", "good 3"];

/// What the server does after the good messages: write its fault and hand the
/// stream back to read the client's close frame, or consume it (reset, hang up).
type Fault = Box<dyn FnOnce(TcpStream) -> Option<TcpStream> + Send>;

fn write_then_read(bytes: Vec<u8>) -> Fault {
    Box::new(move |mut tcp| {
        // The client may hang up before it has read everything: that is fine.
        let _ = tcp.write_all(&bytes);
        Some(tcp)
    })
}

#[derive(Debug)]
struct Outcome {
    msgs: Vec<Message>,
    err: Option<Error>,
    took: Duration,
    server: Saw,
}

/// Bound on how long any post-handshake case may take to end.
const CASE_BOUND: Duration = Duration::from_secs(3);

fn post_handshake_case(configure: impl FnOnce(Client) -> Client, fault: Fault) -> Outcome {
    let server = RawServer::start(move |mut tcp| {
        if handshake(&mut tcp).is_err() {
            return Saw::Nothing;
        }
        for g in GOOD {
            if tcp.write_all(&frame(FIN | TEXT, g.as_bytes())).is_err() {
                return Saw::Eof;
            }
        }
        match fault(tcp) {
            Some(mut tcp) => read_client_close(&mut tcp, Duration::from_secs(3)),
            None => Saw::Eof,
        }
    });
    let ws = configure(client(&server.url()))
        .connect()
        .expect("the upgrade itself is good");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(5);
    let mut msgs = Vec::new();
    let err = loop {
        match ws.recv_deadline(deadline) {
            Ok(Some(m)) => msgs.push(m),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let took = start.elapsed();
    // The error ended the connection: its I/O thread ends on its own, even
    // while the `WebSocket` is still held.
    let io_gone = wait_until(Duration::from_secs(2), || wsapp_threads().is_empty());
    assert!(
        io_gone || err.is_none(),
        "I/O thread still alive after the error: {:?}",
        wsapp_threads()
    );
    drop(ws);
    let server = server.join();
    let out = Outcome {
        msgs,
        err,
        took,
        server,
    };
    println!(
        "{:?} after {:?}; server saw {:?}; {} messages before",
        out.err.as_ref().map(|e| e.to_string()),
        out.took,
        out.server,
        out.msgs.len()
    );
    out
}

/// The usual checks: the good messages first, then `kind`, in bounded time,
/// and the close code the server saw.
fn check(out: &Outcome, kind: ErrorKind, close: Option<u16>) {
    let good: Vec<Message> = GOOD.iter().map(|g| Message::text(*g)).collect();
    assert_eq!(
        out.msgs, good,
        "the messages sent before the fault must be delivered first"
    );
    let err = out
        .err
        .as_ref()
        .unwrap_or_else(|| panic!("no error within 5 s (took {:?})", out.took));
    assert_eq!(err.kind(), kind, "{err} / {err:?}");
    assert!(out.took < CASE_BOUND, "took {:?}", out.took);
    if let Some(code) = close {
        assert_eq!(
            out.server,
            Saw::Close(Some(code)),
            "the server should receive a close frame with {code}"
        );
    }
}

#[test]
fn hostile_masked_frame_from_server() {
    let g = guard();
    let out = post_handshake_case(
        |c| c,
        write_then_read(masked_frame(FIN | TEXT, b"masked", [1, 2, 3, 4])),
    );
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_reserved_data_opcode() {
    let g = guard();
    let out = post_handshake_case(|c| c, write_then_read(frame(FIN | 0x3, b"op3")));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_reserved_control_opcode() {
    let g = guard();
    let out = post_handshake_case(|c| c, write_then_read(frame(FIN | 0xB, b"opB")));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_rsv_bits_set() {
    let g = guard();
    let out = post_handshake_case(|c| c, write_then_read(frame(FIN | RSV1 | TEXT, b"rsv1")));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_control_frame_over_125_bytes() {
    let g = guard();
    let out = post_handshake_case(|c| c, write_then_read(frame(FIN | PING, &[b'p'; 126])));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_fragmented_control_frame() {
    let g = guard();
    // A ping without FIN, then its "continuation".
    let mut bytes = frame(PING, b"half");
    bytes.extend(frame(FIN | CONT, b"ping"));
    let out = post_handshake_case(|c| c, write_then_read(bytes));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_continuation_without_start() {
    let g = guard();
    let out = post_handshake_case(|c| c, write_then_read(frame(FIN | CONT, b"orphan")));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_new_message_inside_a_fragmented_one() {
    let g = guard();
    let mut bytes = frame(TEXT, b"start");
    bytes.extend(frame(FIN | BINARY, b"interloper"));
    let out = post_handshake_case(|c| c, write_then_read(bytes));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_invalid_utf8_text() {
    let g = guard();
    let out = post_handshake_case(
        |c| c,
        write_then_read(frame(FIN | TEXT, b"bad \xff\xfe utf-8")),
    );
    check(&out, ErrorKind::Protocol, Some(1007));
    g.finish();
}

#[test]
fn hostile_invalid_utf8_across_fragments() {
    let g = guard();
    // "é" is C3 A9: split across frames it is fine; C3 followed by 28 is not.
    let mut bytes = frame(TEXT, b"caf\xc3");
    bytes.extend(frame(FIN | CONT, b"\x28 bad"));
    let out = post_handshake_case(|c| c, write_then_read(bytes));
    check(&out, ErrorKind::Protocol, Some(1007));
    g.finish();
}

#[test]
fn hostile_close_code_999() {
    let g = guard();
    let out = post_handshake_case(
        |c| c,
        write_then_read(frame(FIN | CLOSE, &close_payload(999, b"bad code"))),
    );
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_close_code_1005_on_the_wire() {
    let g = guard();
    let out = post_handshake_case(
        |c| c,
        write_then_read(frame(FIN | CLOSE, &close_payload(1005, b""))),
    );
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_close_with_one_byte_payload() {
    let g = guard();
    let out = post_handshake_case(|c| c, write_then_read(frame(FIN | CLOSE, &[0x03])));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_close_reason_invalid_utf8() {
    let g = guard();
    let out = post_handshake_case(
        |c| c,
        write_then_read(frame(FIN | CLOSE, &close_payload(1000, b"bye \xff"))),
    );
    check(&out, ErrorKind::Protocol, Some(1007));
    g.finish();
}

#[test]
fn hostile_frame_over_max_frame_size() {
    let g = guard();
    let out = post_handshake_case(
        |c| c.max_frame_size(Some(1024)),
        write_then_read(frame(FIN | BINARY, &[7u8; 2048])),
    );
    check(&out, ErrorKind::Capacity, Some(1009));
    g.finish();
}

#[test]
fn hostile_message_over_max_message_size_in_fragments() {
    let g = guard();
    // Four 1 KiB fragments, each under the frame limit, 4 KiB in all.
    let mut bytes = frame(BINARY, &[1u8; 1024]);
    for i in 0..3 {
        let fin = if i == 2 { FIN } else { 0 };
        bytes.extend(frame(fin | CONT, &[1u8; 1024]));
    }
    let out = post_handshake_case(
        |c| c.max_frame_size(Some(2048)).max_message_size(Some(3000)),
        write_then_read(bytes),
    );
    check(&out, ErrorKind::Capacity, Some(1009));
    g.finish();
}

/// A frame header announcing 2^63 bytes, then a few bytes of it.
fn huge_length_frame() -> Vec<u8> {
    let mut bytes = vec![FIN | BINARY, 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(b"just a few bytes");
    bytes
}

/// RFC 6455 5.2: "the most significant bit MUST be 0": a protocol error
/// (1002), whatever the size limit.
#[test]
fn hostile_length_2_pow_63_with_default_limits() {
    let g = guard();
    let out = post_handshake_case(|c| c, write_then_read(huge_length_frame()));
    check(&out, ErrorKind::Protocol, Some(1002));
    g.finish();
}

#[test]
fn hostile_length_2_pow_63_with_limits_removed() {
    // `None` removes the limits; a length with the top bit set (RFC 6455 5.2:
    // "the most significant bit MUST be 0") must still end the connection with
    // an error, not a panic of the I/O thread or a hang.
    let g = guard();
    let out = post_handshake_case(
        |c| c.max_frame_size(None).max_message_size(None),
        write_then_read(huge_length_frame()),
    );
    let err = out.err.as_ref().unwrap_or_else(|| {
        panic!(
            "no error within 5 s: recv hangs ({} wsapp thread panic(s) so far)",
            WSAPP_PANICS.load(Ordering::SeqCst)
        )
    });
    let good: Vec<Message> = GOOD.iter().map(|g| Message::text(*g)).collect();
    assert_eq!(out.msgs, good);
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("most significant bit"), "{err}");
    assert!(out.took < CASE_BOUND, "took {:?}", out.took);
    assert_eq!(out.server, Saw::Close(Some(1002)));
    g.finish();
}

#[test]
fn hostile_tcp_reset_mid_frame() {
    let g = guard();
    let out = post_handshake_case(
        |c| c,
        Box::new(|mut tcp: TcpStream| {
            // A header announcing 1000 bytes, 10 of them, then RST.
            let mut bytes = vec![FIN | BINARY, 126];
            bytes.extend_from_slice(&1000u16.to_be_bytes());
            bytes.extend_from_slice(&[9u8; 10]);
            let _ = tcp.write_all(&bytes);
            std::thread::sleep(Duration::from_millis(100));
            socket2::SockRef::from(&tcp)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(tcp);
            None
        }),
    );
    check(&out, ErrorKind::ConnectionLost, None);
    g.finish();
}

#[test]
fn hostile_eof_mid_frame() {
    let g = guard();
    let out = post_handshake_case(
        |c| c,
        Box::new(|mut tcp: TcpStream| {
            let mut bytes = vec![FIN | BINARY, 126];
            bytes.extend_from_slice(&1000u16.to_be_bytes());
            bytes.extend_from_slice(&[9u8; 10]);
            let _ = tcp.write_all(&bytes);
            let _ = tcp.shutdown(std::net::Shutdown::Write);
            // Whatever the client says now, the server does not answer.
            Some(tcp)
        }),
    );
    check(&out, ErrorKind::ConnectionLost, None);
    g.finish();
}

/// The server says nothing after the good messages; it reads (and ignores)
/// what the client sends until the client hangs up or `for_` passes.
fn silence(for_: Duration) -> Fault {
    Box::new(move |mut tcp: TcpStream| {
        let end = Instant::now() + for_;
        let mut b = [0u8; 1024];
        while Instant::now() < end {
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(50)));
            match tcp.read(&mut b) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        None
    })
}

#[test]
fn hostile_silence_with_keepalive_times_out() {
    let g = guard();
    let out = post_handshake_case(
        |c| {
            c.ping_interval(Duration::from_millis(300))
                .ping_timeout(Duration::from_millis(200))
        },
        silence(Duration::from_secs(4)),
    );
    check(&out, ErrorKind::Timeout, None);
    assert!(
        matches!(out.err, Some(Error::Timeout(wsapp::Phase::Pong))),
        "{:?}",
        out.err
    );
    assert!(
        out.took < Duration::from_millis(1500),
        "ping 300 ms + pong 200 ms took {:?}",
        out.took
    );
    g.finish();
}

#[test]
fn hostile_silence_without_keepalive_is_just_quiet() {
    let g = guard();
    let server = RawServer::start(|mut tcp| {
        if handshake(&mut tcp).is_err() {
            return Saw::Nothing;
        }
        for g in GOOD {
            let _ = tcp.write_all(&frame(FIN | TEXT, g.as_bytes()));
        }
        // Silent; then, on the client's close, hang up without a reply.
        read_client_close(&mut tcp, Duration::from_secs(4))
    });
    let ws = client(&server.url()).connect().unwrap();
    for g in GOOD {
        let m = ws.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(m, Some(Message::text(g)));
    }
    let start = Instant::now();
    let got = ws.recv_timeout(Duration::from_millis(500));
    let took = start.elapsed();
    assert!(matches!(got, Ok(None)), "{got:?}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // Closing against a server that never answers ends within close_timeout(1s).
    let start = Instant::now();
    ws.close(1000, "bye").unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "close took {took:?}");
    assert!(wsapp_threads().is_empty(), "{:?}", wsapp_threads());
    drop(ws);
    assert_eq!(server.join(), Saw::Close(Some(1000)));
    g.finish();
}

// ---------------------------------------------------------------------------
// Close codes and how connections end (issue 12).

/// Checks a clean end with the peer's close frame exactly as it was sent, and
/// the code the server got back.
fn check_closed(out: &Outcome, code: u16, reason: &str, answer: u16) {
    check(out, ErrorKind::Closed, Some(answer));
    match &out.err {
        Some(Error::Closed(Some(f))) => {
            assert_eq!(u16::from(f.code), code, "{f:?}");
            assert_eq!(f.reason.as_str(), reason, "{f:?}");
        }
        other => panic!("expected Closed({code}, {reason:?}), got {other:?}"),
    }
}

/// Every code RFC 6455 lets a peer send (7.4.1, 7.4.2) ends the connection
/// cleanly with the peer's frame as sent. tungstenite refuses 1014 ("bad
/// gateway", registered by IANA): wsapp accepts it and answers 1000.
#[test]
fn hostile_peer_close_codes_the_rfc_allows_are_accepted() {
    let g = guard();
    let codes = [
        1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
    ];
    for code in codes {
        let reason = format!("reason {code}");
        let out = post_handshake_case(
            |c| c,
            write_then_read(frame(FIN | CLOSE, &close_payload(code, reason.as_bytes()))),
        );
        let answer = if code == 1014 { 1000 } else { code };
        check_closed(&out, code, &reason, answer);
    }
    g.finish();
}

/// A close that arrives in the same segment as the upgrade response is seen
/// by the frame layer too (tungstenite's handshake reads past the response).
#[test]
fn hostile_close_1014_in_the_same_segment_as_the_upgrade() {
    let g = guard();
    let server = RawServer::start(|mut tcp| {
        let Ok(key) = read_request(&mut tcp) else {
            return Saw::Nothing;
        };
        let mut bytes = switching(&key).into_bytes();
        bytes.extend(frame(FIN | TEXT, b"hello"));
        bytes.extend(frame(FIN | CLOSE, &close_payload(1014, b"upstream")));
        let _ = tcp.write_all(&bytes);
        read_client_close(&mut tcp, Duration::from_secs(3))
    });
    let ws = client(&server.url()).connect().unwrap();
    assert_eq!(
        ws.recv_timeout(Duration::from_secs(3)).unwrap(),
        Some(Message::text("hello"))
    );
    match ws.recv_timeout(Duration::from_secs(3)) {
        Err(Error::Closed(Some(f))) => {
            assert_eq!(u16::from(f.code), 1014);
            assert_eq!(f.reason.as_str(), "upstream");
        }
        other => panic!("expected Closed(1014), got {other:?}"),
    }
    drop(ws);
    assert_eq!(server.join(), Saw::Close(Some(1000)));
    g.finish();
}

/// A peer's own `1002 "Protocol violation"` is the peer's frame, not the
/// substitute tungstenite makes of an invalid code.
#[test]
fn hostile_peer_close_1002_protocol_violation_is_reported_as_sent() {
    let g = guard();
    let out = post_handshake_case(
        |c| c,
        write_then_read(frame(
            FIN | CLOSE,
            &close_payload(1002, b"Protocol violation"),
        )),
    );
    check_closed(&out, 1002, "Protocol violation", 1002);
    g.finish();
}

/// Codes a peer may not send (RFC 6455 7.4.1, 7.4.2) are still refused with 1002.
#[test]
fn hostile_peer_close_codes_the_rfc_forbids_get_1002() {
    let g = guard();
    for code in [0, 999, 1004, 1006, 1015, 1016, 2999, 5000, 65535] {
        let out = post_handshake_case(
            |c| c,
            write_then_read(frame(FIN | CLOSE, &close_payload(code, b"no"))),
        );
        check(&out, ErrorKind::Protocol, Some(1002));
        assert!(
            matches!(out.err, Some(Error::InvalidCloseCode)),
            "{code}: {:?}",
            out.err
        );
    }
    g.finish();
}

/// The peer's close ends its stream (RFC 6455 5.5.1): a data frame after it,
/// in the same segment or later, is ignored, and the close handshake that
/// finished correctly on the wire is reported as such.
#[test]
fn hostile_data_after_peer_close_is_ignored() {
    let g = guard();
    let mut bytes = frame(FIN | CLOSE, &close_payload(1000, b"bye"));
    bytes.extend(frame(FIN | TEXT, b"after the close"));
    let out = post_handshake_case(|c| c, write_then_read(bytes));
    check_closed(&out, 1000, "bye", 1000);

    let out = post_handshake_case(
        |c| c,
        Box::new(|mut tcp: TcpStream| {
            let _ = tcp.write_all(&frame(FIN | CLOSE, &close_payload(4001, b"later")));
            std::thread::sleep(Duration::from_millis(50));
            let _ = tcp.write_all(&frame(FIN | BINARY, &[0u8; 300]));
            Some(tcp)
        }),
    );
    check_closed(&out, 4001, "later", 4001);
    g.finish();
}

/// The server answers the close but keeps TCP open: both close frames went
/// by, so the end is `Closed` with the server's frame, and the client shuts
/// TCP after the close timeout (RFC 6455 7.1.1).
#[test]
fn hostile_close_answered_but_tcp_kept_open() {
    let g = guard();
    for client_first in [true, false] {
        let server = RawServer::start(move |mut tcp| {
            if handshake(&mut tcp).is_err() {
                return (Saw::Nothing, false);
            }
            let reply = frame(FIN | CLOSE, &close_payload(1001, b"going"));
            let saw = if client_first {
                let saw = read_client_close(&mut tcp, Duration::from_secs(3));
                let _ = tcp.write_all(&reply);
                saw
            } else {
                let _ = tcp.write_all(&reply);
                read_client_close(&mut tcp, Duration::from_secs(3))
            };
            // Keep TCP open; did the client shut it (EOF) within the bound?
            let eof = matches!(
                read_client_close(&mut tcp, Duration::from_secs(3)),
                Saw::Eof
            );
            (saw, eof)
        });
        let ws = client(&server.url())
            .close_timeout(Duration::from_millis(300))
            .connect()
            .unwrap();
        let start = Instant::now();
        if client_first {
            ws.sender().close(1000, "bye").unwrap();
        }
        let err = ws.recv_timeout(Duration::from_secs(3)).unwrap_err();
        let took = start.elapsed();
        match &err {
            Error::Closed(Some(f)) => {
                assert_eq!(u16::from(f.code), 1001, "{f:?}");
                assert_eq!(f.reason.as_str(), "going");
            }
            other => panic!("client_first {client_first}: expected Closed(1001), got {other:?}"),
        }
        assert!(took < Duration::from_secs(2), "took {took:?}");
        drop(ws);
        let (saw, eof) = server.join();
        let answer = if client_first { 1000 } else { 1001 };
        assert_eq!(saw, Saw::Close(Some(answer)), "client_first {client_first}");
        assert!(eof, "the client did not shut TCP");
    }
    g.finish();
}

/// A server that resets the connection right after the upgrade: `connect`
/// either succeeds (and `recv` says the connection was lost) or fails with
/// `ConnectionLost`, never with a bare I/O error.
#[test]
fn hostile_reset_right_after_upgrade_is_connection_lost() {
    let g = guard();
    let mut failed_connects = 0;
    for _ in 0..40 {
        let server = RawServer::start(|mut tcp| {
            if let Ok(key) = read_request(&mut tcp) {
                let _ = tcp.write_all(switching(&key).as_bytes());
                let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            }
        });
        match client(&server.url()).connect() {
            Ok(ws) => {
                let err = ws.recv_timeout(Duration::from_secs(2)).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err:?}");
            }
            Err(e) => {
                failed_connects += 1;
                assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{e:?}: {e}");
            }
        }
        drop(server);
    }
    println!("{failed_connects} of 40 connects failed");
    g.finish();
}

// ---------------------------------------------------------------------------
// Property tests.

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Whether connecting to `s` could reach anything but this machine's loopback
/// (a domain name or another address): such strings are not connected to.
fn leaves_the_machine(s: &str) -> bool {
    match url::Url::parse(s.trim()) {
        Err(_) => false,
        Ok(u) => match u.host() {
            None => false,
            Some(url::Host::Domain(d)) => !(d.is_empty() || d.eq_ignore_ascii_case("localhost")),
            Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        },
    }
}

fn url_strings() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "ws", "wss", "WS", "wSs", "http", "https", "", "ws:", "w s", "ws\u{0}",
    ]);
    let host = prop::sample::select(vec![
        "127.0.0.1",
        "[::1]",
        "localhost",
        "",
        "[",
        "[::1",
        "::1",
        "127.0.0.1@127.0.0.1",
        "user:pw@127.0.0.1",
        "%31%32%37.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "[::ffff:127.0.0.1]",
        "127.0.0.1 ",
        "\u{7f}",
        "127.0.0.256",
    ]);
    let port = prop_oneof![
        Just(String::new()),
        Just(":".to_string()),
        Just(":0".to_string()),
        Just(":99999".to_string()),
        Just(":-1".to_string()),
        Just(":abc".to_string()),
        Just(String::from("CLOSED")),
    ];
    let rest = "\\PC{0,24}|[/?#%@:\\[\\] \r\n\t]{0,12}";
    prop_oneof![
        // Anything at all.
        any::<String>(),
        "\\PC{0,40}",
        // Shaped like a URL, aimed at loopback.
        (scheme, host, port, rest).prop_map(|(s, h, p, r)| {
            let p = if p == "CLOSED" {
                format!(":{}", closed_port())
            } else {
                p
            };
            format!("{s}://{h}{p}{r}")
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_prop_random_urls_never_panic(s in url_strings()) {
        let g = guard();
        if !leaves_the_machine(&s) {
            let start = Instant::now();
            let res = Client::new(s.clone())
                .connect_timeout(Duration::from_millis(200))
                .handshake_timeout(Duration::from_millis(200))
                .connect();
            let took = start.elapsed();
            prop_assert!(took < Duration::from_secs(2), "{:?}: took {:?}", s, took);
            if let Err(e) = &res {
                // Every error says something.
                prop_assert!(!e.to_string().is_empty());
            }
            drop(res);
        }
        g.finish();
    }

    #[test]
    fn hostile_prop_crlf_in_headers_refused(
        name in "[A-Za-z][A-Za-z0-9-]{0,15}",
        before in "\\PC{0,20}",
        after in "\\PC{0,20}",
        brk in prop::sample::select(vec!["\r", "\n", "\r\n", "\n\r", "\r\n\r\n"]),
        in_name in any::<bool>(),
    ) {
        // Refused before any connection: the port is closed anyway.
        let url = format!("ws://127.0.0.1:{}/", closed_port());
        let (n, v) = if in_name {
            (format!("{name}{brk}{after}"), before.clone())
        } else {
            (name.clone(), format!("{before}{brk}{after}"))
        };
        let res = Client::new(url)
            .connect_timeout(Duration::from_millis(200))
            .header(n.clone(), v.clone())
            .connect();
        match res {
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Config, "{:?}: {:?} -> {}", n, v, e),
            Ok(_) => prop_assert!(false, "{:?}: {:?} was accepted", n, v),
        }
    }
}

/// One random frame: header fields and payload.
#[derive(Debug, Clone)]
struct RandomFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
    /// Announce a different length than the payload has (a lie).
    lie: Option<u16>,
}

impl RandomFrame {
    fn bytes(&self) -> Vec<u8> {
        let first = (if self.fin { FIN } else { 0 }) | (self.rsv << 4) | self.opcode;
        let mut v = vec![first];
        let len = self.lie.map_or(self.payload.len() as u64, u64::from);
        push_len(&mut v, if self.mask.is_some() { 0x80 } else { 0 }, len);
        match self.mask {
            Some(key) => {
                v.extend_from_slice(&key);
                v.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => v.extend_from_slice(&self.payload),
        }
        v
    }
}

fn random_frame() -> impl Strategy<Value = RandomFrame> {
    let opcode = prop_oneof![
        6 => prop::sample::select(vec![CONT, TEXT, BINARY, CLOSE, PING, 0xA]),
        1 => 0u8..16,
    ];
    let payload = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..130),
        2 => "\\PC{0,64}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..4096),
    ];
    (
        prop::bool::weighted(0.8),
        prop_oneof![8 => Just(0u8), 1 => 0u8..8],
        opcode,
        prop_oneof![8 => Just(None), 1 => any::<[u8; 4]>().prop_map(Some)],
        payload,
        prop_oneof![12 => Just(None), 1 => any::<u16>().prop_map(Some)],
    )
        .prop_map(|(fin, rsv, opcode, mask, payload, lie)| RandomFrame {
            fin,
            rsv,
            opcode,
            mask,
            payload,
            lie,
        })
}

impl RandomFrame {
    fn good(fin: bool, opcode: u8, payload: Vec<u8>) -> RandomFrame {
        RandomFrame {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload,
            lie: None,
        }
    }
}

/// Frames that follow the protocol: a whole message, a fragmented one (with a
/// ping among its fragments, sometimes), a ping, a pong, or a valid close.
fn good_frames() -> impl Strategy<Value = Vec<RandomFrame>> {
    let text = "\\PC{0,200}".prop_map(String::into_bytes);
    let bytes = prop::collection::vec(any::<u8>(), 0..2048);
    let control = prop::collection::vec(any::<u8>(), 0..=125);
    prop_oneof![
        4 => text.clone().prop_map(|p| vec![RandomFrame::good(true, TEXT, p)]),
        3 => bytes.clone().prop_map(|p| vec![RandomFrame::good(true, BINARY, p)]),
        2 => (prop::collection::vec("\\PC{0,40}", 2..5), any::<bool>()).prop_map(|(parts, ping)| {
            let n = parts.len();
            let mut v: Vec<RandomFrame> = parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    RandomFrame::good(i + 1 == n, if i == 0 { TEXT } else { CONT }, p.into_bytes())
                })
                .collect();
            if ping {
                v.insert(1, RandomFrame::good(true, PING, b"mid".to_vec()));
            }
            v
        }),
        2 => control.clone().prop_map(|p| vec![RandomFrame::good(true, PING, p)]),
        1 => control.prop_map(|p| vec![RandomFrame::good(true, 0xA, p)]),
        1 => (prop::sample::select(vec![1000u16, 1001, 1003, 1008, 1011, 3000, 4999]), "\\PC{0,20}")
            .prop_filter("reason fits a control frame", |(_, r)| r.len() <= 123)
            .prop_map(|(code, reason)| vec![RandomFrame::good(true, CLOSE, close_payload(code, reason.as_bytes()))]),
    ]
}

/// Mostly good frames, with now and then a random (often bad) one.
fn frame_sequence() -> impl Strategy<Value = Vec<RandomFrame>> {
    prop::collection::vec(
        prop_oneof![6 => good_frames(), 1 => random_frame().prop_map(|f| vec![f])],
        1..10,
    )
    .prop_map(|chunks| chunks.into_iter().flatten().collect())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_prop_random_frames_end_cleanly(
        frames in frame_sequence(),
        hang_up in any::<bool>(),
    ) {
        let g = guard();
        let wire: Vec<u8> = frames.iter().flat_map(RandomFrame::bytes).collect();
        let server = RawServer::start(move |mut tcp| {
            if handshake(&mut tcp).is_err() {
                return;
            }
            let _ = tcp.write_all(&wire);
            if hang_up {
                let _ = tcp.shutdown(std::net::Shutdown::Write);
            }
            // Read what the client says, then hang up: EOF ends every case.
            let _ = read_client_close(&mut tcp, Duration::from_millis(300));
        });
        let ws = client(&server.url())
            .close_timeout(Duration::from_millis(500))
            .max_frame_size(Some(8 << 10))
            .connect()
            .expect("the upgrade itself is good");
        let start = Instant::now();
        let deadline = start + Duration::from_secs(2);
        let end = loop {
            match ws.recv_deadline(deadline) {
                Ok(Some(_)) => {}
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let took = start.elapsed();
        println!("{} frames: {:?} after {took:?}", frames.len(), end.as_ref().map(Error::kind));
        drop(ws);
        drop(server);
        prop_assert!(end.is_some(), "no end within 2 s for {:?}", frames);
        prop_assert!(took < Duration::from_secs(2), "took {:?}", took);
        g.finish();
    }
}
