//! permessage-deflate benchmark: receiving a compressible stream (JSON-like
//! text) compressed against the same stream uncompressed, and against flate2
//! inflating the same payloads in one thread with no WebSocket (the limit).
//!
//! `cargo run --release --example bench_deflate [-- --runs 5]`
//!
//! With the interop tests' Python venv present (`tests/peers/install_interop.sh`),
//! a row for Python `websockets` receiving the same compressed stream.
//!
//! Apart from `examples/bench.rs` on purpose: its own server (a child process,
//! this binary with `--serve`, writing pre-encoded frames compressed with
//! context takeover, as a server would), so CPU time (`getrusage`) is the
//! client's alone.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression as Level, Decompress, FlushCompress, FlushDecompress};
use wsapp::{Client, Compression, Message};

fn cpu_time() -> Duration {
    // SAFETY: all-zero bytes are a valid rusage, and `ru` is valid and writable.
    #[allow(unsafe_code)]
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Message `i` of `size` bytes: JSON-like records, varying numbers.
fn message(i: usize, size: usize) -> Vec<u8> {
    let mut s = String::with_capacity(size + 128);
    s.push('[');
    let mut j = 0;
    while s.len() < size {
        let k = i * 31 + j;
        s.push_str(&format!(
            r#"{{"id":{k},"sym":"BTC-USD","px":"{}.{:02}","qty":"0.{:04}","side":"{}"}},"#,
            60_000 + k % 977,
            k % 100,
            k % 9973,
            if k % 3 == 0 { "buy" } else { "sell" }
        ));
        j += 1;
    }
    s.truncate(size);
    s.into_bytes()
}

fn deflate(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = z.total_in();
    loop {
        let done = (z.total_in() - start) as usize;
        z.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .unwrap();
        if (z.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    out.truncate(out.len() - 4);
    out
}

fn frame(first: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(first);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len < 65536 {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// The compressed payloads of the stream (one deflate context, as a server keeps).
fn compressed(size: usize, count: usize) -> Vec<Vec<u8>> {
    let mut z = Compress::new(Level::default(), false);
    (0..count)
        .map(|i| deflate(&mut z, &message(i % 512, size)))
        .collect()
}

// ---------- server (child process) ----------

fn serve() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || handle(stream));
    }
}

fn handle(mut tcp: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).unwrap();
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap().to_string();
    let key = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .unwrap();
    // /c/SIZE/COUNT compressed, /p/SIZE/COUNT plain.
    let parts: Vec<&str> = path.split('/').collect();
    let (mode, size, count): (&str, usize, usize) = (
        parts[1],
        parts[2].parse().unwrap(),
        parts[3].parse().unwrap(),
    );
    let mut wire = Vec::new();
    let ext = if mode == "c" {
        for p in compressed(size, count) {
            frame(0xC1, &p, &mut wire);
        }
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        for i in 0..count {
            frame(0x81, &message(i % 512, size), &mut wire);
        }
        ""
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{ext}\r\n"
    );
    tcp.write_all(resp.as_bytes()).unwrap();
    let _ = tcp.write_all(&wire);
    // Until the client goes.
    while matches!(tcp.read(&mut buf), Ok(n) if n > 0) {}
}

// ---------- clients ----------

struct Run {
    secs: f64,
    cpu: f64,
}

fn wsapp_run(port: u16, compressed: bool, size: usize, count: usize) -> Run {
    let mode = if compressed { "c" } else { "p" };
    let ws = Client::new(format!("ws://127.0.0.1:{port}/{mode}/{size}/{count}"))
        .compression(compressed.then(Compression::default))
        .no_keepalive()
        .connect()
        .unwrap();
    assert_eq!(ws.compression().is_some(), compressed);
    let (t0, c0) = (Instant::now(), cpu_time());
    let mut n = 0;
    while n < count {
        if let Message::Text(t) = ws.recv().unwrap() {
            assert_eq!(t.len(), size);
            n += 1;
        }
    }
    let r = Run {
        secs: t0.elapsed().as_secs_f64(),
        cpu: (cpu_time() - c0).as_secs_f64(),
    };
    if std::env::var_os("BENCH_STATS").is_some() {
        println!("{}", ws.stats());
    }
    drop(ws);
    r
}

/// The limit: flate2 inflating the same payloads in one thread, no WebSocket.
fn flate2_run(payloads: &[Vec<u8>], size: usize) -> Run {
    let mut z = Decompress::new(false);
    let mut out = Vec::with_capacity(size + 64);
    let (t0, c0) = (Instant::now(), cpu_time());
    let mut total = 0;
    for p in payloads {
        out.clear();
        for input in [&p[..], &[0, 0, 0xff, 0xff]] {
            let start = z.total_in();
            while ((z.total_in() - start) as usize) < input.len() {
                let done = (z.total_in() - start) as usize;
                z.decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
                    .unwrap();
                if out.len() == out.capacity() {
                    out.reserve(size);
                }
            }
        }
        total += out.len();
    }
    assert_eq!(total, size * payloads.len());
    Run {
        secs: t0.elapsed().as_secs_f64(),
        cpu: (cpu_time() - c0).as_secs_f64(),
    }
}

/// The peer a user would compare: Python `websockets` (sync client,
/// permessage-deflate on, as by default) receiving the same compressed stream,
/// when the interop tests' venv is there (`tests/peers/install_interop.sh`).
/// Its own timing: wall time and `process_time` over the messages.
fn python_run(port: u16, size: usize, count: usize) -> Option<Run> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let dir = std::env::var("WSAPP_PEERS").unwrap_or_else(|_| format!("{home}/.cache/wsapp-peers"));
    let python = format!("{dir}/venv/bin/python");
    if !std::path::Path::new(&python).exists() {
        return None;
    }
    let script = format!(
        "import time\n\
         from websockets.sync.client import connect\n\
         ws = connect('ws://127.0.0.1:{port}/c/{size}/{count}', max_size=None)\n\
         assert ws.protocol.extensions, 'permessage-deflate not agreed'\n\
         t, c = time.perf_counter(), time.process_time()\n\
         for _ in range({count}): ws.recv()\n\
         print(time.perf_counter() - t, time.process_time() - c)\n\
         ws.close()\n"
    );
    let out = Command::new(&python).arg("-c").arg(script).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "python websockets: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>());
    Some(Run {
        secs: it.next()?.ok()?,
        cpu: it.next()?.ok()?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        serve();
        return;
    }
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .map_or(5, |i| args[i + 1].parse().expect("--runs N"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = [0u8; 16];
    let n = child.stdout.as_mut().unwrap().read(&mut line).unwrap();
    let port: u16 = std::str::from_utf8(&line[..n])
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    println!(
        "| message | client | payload MB/s | msgs/s | CPU µs/msg | wire B/msg | vs limit |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (size, count) in [(256usize, 200_000usize), (16 << 10, 10_000)] {
        let payloads = compressed(size, count);
        let wire = payloads.iter().map(Vec::len).sum::<usize>() as f64 / count as f64;
        let mut rows: Vec<(&str, Vec<Run>, f64)> = Vec::new();
        let limit: Vec<Run> = (0..runs).map(|_| flate2_run(&payloads, size)).collect();
        let c: Vec<Run> = (0..runs)
            .map(|_| wsapp_run(port, true, size, count))
            .collect();
        let p: Vec<Run> = (0..runs)
            .map(|_| wsapp_run(port, false, size, count))
            .collect();
        let limit_mbs = median(
            limit
                .iter()
                .map(|r| (size * count) as f64 / r.secs / 1e6)
                .collect(),
        );
        rows.push(("flate2 inflate, no WebSocket (limit)", limit, wire));
        rows.push(("wsapp, permessage-deflate", c, wire));
        rows.push(("wsapp, uncompressed", p, size as f64));
        let py: Vec<Run> = (0..runs)
            .filter_map(|_| python_run(port, size, count))
            .collect();
        if !py.is_empty() {
            rows.push(("Python websockets, permessage-deflate", py, wire));
        }
        for (name, rs, wire) in rows {
            let mbs = median(
                rs.iter()
                    .map(|r| (size * count) as f64 / r.secs / 1e6)
                    .collect(),
            );
            let mps = median(rs.iter().map(|r| count as f64 / r.secs).collect());
            let cpu = median(rs.iter().map(|r| r.cpu / count as f64 * 1e6).collect());
            println!(
                "| {size} B | {name} | {mbs:.0} | {mps:.0} | {cpu:.2} | {wire:.0} | {:.2}x |",
                mbs / limit_mbs
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
