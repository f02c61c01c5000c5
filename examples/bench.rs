//! Throughput, CPU and round-trip benchmark: `WebSocket::recv` against a plain
//! one-thread tungstenite read loop, in the same run, against the same server.
//!
//! `cargo run --release --example bench [-- --runs 5 --quick]`
//! (`--only wsapp|app|app:POLICY|tungstenite SIZE COUNT` runs one client alone,
//! `--only rtt:wsapp|rtt:queue|rtt:queue-spin|rtt:tungstenite COUNT` one echo client; with
//! `BENCH_STATS=1` the wsapp run prints its `Stats` line at the end.)
//!
//! The server runs in a child process (this binary with `--serve`), so the
//! CPU time measured with `getrusage` is the client's alone. The flood server
//! writes pre-encoded frames, so the client, not the server, is the bottleneck.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe_free_rusage();
    // getrusage is the only portable way to read this process's CPU time.
    #[allow(unsafe_code)]
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn unsafe_free_rusage() -> libc::rusage {
    // rusage is plain integers; zeroed is a valid value.
    #[allow(unsafe_code)]
    // SAFETY: all-zero bytes are a valid rusage.
    unsafe {
        std::mem::zeroed()
    }
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

// tungstenite's callback type fixes the error type.
#[allow(clippy::result_large_err)]
fn handle(stream: TcpStream) {
    stream.set_nodelay(true).unwrap();
    let mut path = String::new();
    let cb = |req: &tungstenite::handshake::server::Request, resp| {
        path = req.uri().to_string();
        Ok(resp)
    };
    let cfg = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(stream, cb, Some(cfg)) else {
        return;
    };
    // /flood/SIZE/COUNT or /echo
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts[0] == "flood" {
        let size: usize = parts[1].parse().unwrap();
        let count: usize = parts[2].parse().unwrap();
        let mut frame = Vec::new();
        Frame::message(vec![b'x'; size], OpCode::Data(Data::Binary), true)
            .format(&mut frame)
            .unwrap();
        let per = (256 << 10) / frame.len() + 1;
        let chunk: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * per)
            .collect();
        let mut sent = 0;
        let raw = ws.get_mut();
        while sent < count {
            let n = per.min(count - sent);
            if raw.write_all(&chunk[..n * frame.len()]).is_err() {
                return;
            }
            sent += n;
        }
        let _ = ws.close(None);
        while ws.read().is_ok() {}
    } else {
        while let Ok(m) = ws.read() {
            if (m.is_binary() || m.is_text()) && ws.send(m).is_err() {
                break;
            }
        }
    }
}

// ---------- clients ----------

struct Run {
    secs: f64,
    cpu: f64,
    /// Messages the handler saw (fewer than sent under the lossy policies).
    delivered: u64,
}

fn tungstenite_flood(port: u16, size: usize, count: usize) -> Run {
    let (t0, c0) = (Instant::now(), cpu_time());
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let cfg = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let url = format!("ws://127.0.0.1:{port}/flood/{size}/{count}");
    let (mut ws, _) = tungstenite::client::client_with_config(url, stream, Some(cfg)).unwrap();
    let mut n = 0;
    while n < count {
        if let Message::Binary(b) = ws.read().unwrap() {
            assert_eq!(b.len(), size);
            n += 1;
        }
    }
    let run = Run {
        secs: t0.elapsed().as_secs_f64(),
        cpu: (cpu_time() - c0).as_secs_f64(),
        delivered: count as u64,
    };
    let _ = ws.close(None);
    while ws.read().is_ok() {}
    run
}

fn wsapp_flood(port: u16, size: usize, count: usize) -> Run {
    let (t0, c0) = (Instant::now(), cpu_time());
    let ws = wsapp::Client::new(format!("ws://127.0.0.1:{port}/flood/{size}/{count}"))
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
        .connect()
        .unwrap();
    let mut n = 0;
    while n < count {
        if let Message::Binary(b) = ws.recv().unwrap() {
            assert_eq!(b.len(), size);
            n += 1;
        }
    }
    let run = Run {
        secs: t0.elapsed().as_secs_f64(),
        cpu: (cpu_time() - c0).as_secs_f64(),
        delivered: count as u64,
    };
    if std::env::var_os("BENCH_STATS").is_some() {
        eprintln!("{}", ws.stats());
    }
    drop(ws);
    run
}

/// The app path: `WebSocketApp` with a no-op `on_message` on the dispatcher,
/// under an overflow policy. Counts what reached the handler. `block-ahead`
/// is `Block` with `direct_reads(false)`: every message through the inbox.
fn app_flood(port: u16, size: usize, count: usize, policy: &str) -> Run {
    let overflow = match policy {
        "block" | "block-ahead" => wsapp::Overflow::Block,
        "drop-newest" => wsapp::Overflow::DropNewest,
        "drop-oldest" => wsapp::Overflow::DropOldest,
        "priority" => wsapp::Overflow::priority(|m: &Message| (m.len() % 3) as u8),
        "conflate" => wsapp::Overflow::conflate(|m: &Message| Some((m.len() % 8).to_string())),
        other => panic!("unknown policy {other}"),
    };
    let (t0, c0) = (Instant::now(), cpu_time());
    let client = wsapp::Client::new(format!("ws://127.0.0.1:{port}/flood/{size}/{count}"))
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
        .direct_reads(policy != "block-ahead")
        .overflow(overflow);
    let app = wsapp::WebSocketApp::new(client)
        .on_message(|_ws, _m| {})
        .start()
        .unwrap();
    let sender = app.sender();
    // The run ends when the server has sent everything and closed; drops
    // (under the lossy policies) are what the handler did not see.
    let _ = app.join();
    let mut run = Run {
        secs: t0.elapsed().as_secs_f64(),
        cpu: (cpu_time() - c0).as_secs_f64(),
        delivered: 0,
    };
    let stats = sender.stats();
    run.delivered = stats.delivered;
    if std::env::var_os("BENCH_STATS").is_some() {
        eprintln!("{stats}");
    }
    assert!(stats.delivered > 0, "the handler saw nothing");
    assert_eq!(stats.received, count as u64, "{stats}");
    run
}

/// The crossbeam alternative to the inbox, for the policies a channel can
/// carry: a reader thread reads with tungstenite and sends batches of 64
/// messages (a `Vec` each) through `bounded(16)` (1,024 messages, as the
/// inbox), under `xbeam-block` (the send waits) or `xbeam-drop-oldest` (the
/// reader also holds a `Receiver` and evicts the oldest batch when full); a
/// no-op consumer takes them on this thread. No copy of small payloads (the
/// inbox makes one so that queued messages do not pin tungstenite's read
/// buffer), no counters, no byte bound: its best case.
fn xbeam_flood(port: u16, size: usize, count: usize, policy: &str) -> Run {
    const XBATCH: usize = 64;
    let (t0, c0) = (Instant::now(), cpu_time());
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Message>>(1024 / XBATCH);
    let evict = rx.clone();
    let drop_oldest = policy == "xbeam-drop-oldest";
    let reader = std::thread::spawn(move || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        let url = format!("ws://127.0.0.1:{port}/flood/{size}/{count}");
        let (mut ws, _) = tungstenite::client::client(url, stream).unwrap();
        let mut batch = Vec::with_capacity(XBATCH);
        let mut n = 0;
        while n < count {
            if let Message::Binary(b) = ws.read().unwrap() {
                batch.push(Message::Binary(b));
                n += 1;
            }
            if batch.len() == XBATCH || n == count {
                let mut b = std::mem::replace(&mut batch, Vec::with_capacity(XBATCH));
                if !drop_oldest {
                    tx.send(b).unwrap();
                    continue;
                }
                loop {
                    match tx.try_send(b) {
                        Ok(()) => break,
                        Err(crossbeam_channel::TrySendError::Full(back)) => {
                            b = back;
                            drop(evict.try_recv());
                        }
                        Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
                    }
                }
            }
        }
        let _ = ws.close(None);
    });
    let mut delivered = 0u64;
    for batch in rx.iter() {
        for m in batch {
            std::hint::black_box(&m);
            delivered += 1;
        }
    }
    reader.join().unwrap();
    Run {
        secs: t0.elapsed().as_secs_f64(),
        cpu: (cpu_time() - c0).as_secs_f64(),
        delivered,
    }
}

fn percentile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn tungstenite_rtt(port: u16, n: usize) -> Vec<Duration> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/echo"), stream).unwrap();
    let payload = vec![b'r'; 64];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        ws.send(Message::binary(payload.clone())).unwrap();
        loop {
            if ws.read().unwrap().is_binary() {
                break;
            }
        }
        out.push(t.elapsed());
    }
    let _ = ws.close(None);
    while ws.read().is_ok() {}
    out
}

/// `direct`: `recv` reads the socket itself (the default); otherwise every
/// message comes through the inbox, as under `block-ahead` or a lossy policy,
/// and `recv` spins `spin` before it sleeps (`Client::busy_wait`).
fn wsapp_rtt(port: u16, n: usize, direct: bool, spin: Duration) -> Vec<Duration> {
    let ws = wsapp::Client::new(format!("ws://127.0.0.1:{port}/echo"))
        .direct_reads(direct)
        .busy_wait(spin)
        .connect()
        .unwrap();
    let payload = vec![b'r'; 64];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        ws.send_binary(payload.clone()).unwrap();
        loop {
            if ws.recv().unwrap().is_binary() {
                break;
            }
        }
        out.push(t.elapsed());
    }
    out
}

/// The spin of the `busy_wait` row: the default before it became an option.
const QUEUE_SPIN: Duration = Duration::from_micros(50);

fn human(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else if size >= 1024 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
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
        .map_or(3, |i| args[i + 1].parse().expect("--runs N"));
    let quick = args.iter().any(|a| a == "--quick");
    // --only wsapp|app|tungstenite SIZE COUNT: one client alone, for profiling
    // (app: WebSocketApp under Block).
    let only = args.iter().position(|a| a == "--only");
    let scale = if quick { 10 } else { 1 };

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

    if let Some(i) = only.filter(|&i| args[i + 1].starts_with("rtt")) {
        // --only rtt:tungstenite|rtt:wsapp|rtt:queue|rtt:queue-spin COUNT
        let n: usize = args[i + 2].parse().unwrap();
        let mut v = match args[i + 1].as_str() {
            "rtt:tungstenite" => tungstenite_rtt(port, n),
            "rtt:queue" => wsapp_rtt(port, n, false, Duration::ZERO),
            "rtt:queue-spin" => wsapp_rtt(port, n, false, QUEUE_SPIN),
            _ => wsapp_rtt(port, n, true, Duration::ZERO),
        };
        println!(
            "{} 64 B: p50 {:.1} us p99 {:.1} us",
            args[i + 1],
            percentile(&mut v, 0.5).as_secs_f64() * 1e6,
            percentile(&mut v, 0.99).as_secs_f64() * 1e6
        );
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    if let Some(i) = only {
        let (size, count): (usize, usize) =
            (args[i + 2].parse().unwrap(), args[i + 3].parse().unwrap());
        let r = match args[i + 1].as_str() {
            "wsapp" => wsapp_flood(port, size, count),
            "app" => app_flood(port, size, count, "block"),
            s if s.starts_with("app:") => app_flood(port, size, count, &s[4..]),
            s if s.starts_with("xbeam") => xbeam_flood(port, size, count, s),
            _ => tungstenite_flood(port, size, count),
        };
        println!(
            "{} {size} B: {:.0} msgs/s, {:.0} ns CPU/msg, {:.1}% delivered",
            args[i + 1],
            count as f64 / r.secs,
            r.cpu / count as f64 * 1e9,
            r.delivered as f64 / count as f64 * 100.0
        );
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    println!("wsapp bench: {runs} runs, medians; server in a child process on 127.0.0.1:{port}");
    println!();
    println!("| size | tungstenite msgs/s | wsapp msgs/s | ratio | tungstenite CPU/msg | wsapp CPU/msg | CPU ratio |");
    println!("|---|---|---|---|---|---|---|");
    for (size, count) in [(64usize, 2_000_000usize), (4096, 300_000), (1 << 20, 2_000)] {
        let count = count / scale;
        let (mut tr, mut wr, mut tc, mut wc, mut ratios, mut cratios) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            // Interleaved, so both see the same machine state.
            let t = tungstenite_flood(port, size, count);
            let w = wsapp_flood(port, size, count);
            let (trate, wrate) = (count as f64 / t.secs, count as f64 / w.secs);
            let (tcpu, wcpu) = (t.cpu / count as f64 * 1e9, w.cpu / count as f64 * 1e9);
            tr.push(trate);
            wr.push(wrate);
            tc.push(tcpu);
            wc.push(wcpu);
            ratios.push(wrate / trate);
            cratios.push(wcpu / tcpu);
        }
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {:.0} ns | {:.0} ns | {:.2}x |",
            human(size),
            median(tr),
            median(wr),
            median(ratios),
            median(tc),
            median(wc),
            median(cratios),
        );
    }
    println!();
    println!("App path (WebSocketApp, no-op on_message on the dispatcher), msgs/s = messages the server sent / time to the end of the stream:");
    println!();
    println!("(`xbeam-*`: a reader thread and crossbeam's `bounded` channel of batches instead of the app; see `xbeam_flood`.)");
    println!();
    println!(
        "| size | policy | tungstenite msgs/s | app msgs/s | ratio | app CPU/msg | CPU ratio | delivered |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (size, count) in [(64usize, 2_000_000usize), (4096, 300_000), (1 << 20, 2_000)] {
        let count = count / scale;
        for policy in [
            "block",
            "block-ahead",
            "drop-newest",
            "drop-oldest",
            "priority",
            "conflate",
            "xbeam-block",
            "xbeam-drop-oldest",
        ] {
            if size > 4096 && !policy.starts_with("block") {
                continue;
            }
            let (mut ratios, mut cratios, mut tr, mut ar, mut ac, mut share) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for _ in 0..runs {
                let t = tungstenite_flood(port, size, count);
                let a = if policy.starts_with("xbeam") {
                    xbeam_flood(port, size, count, policy)
                } else {
                    app_flood(port, size, count, policy)
                };
                share.push(a.delivered as f64 / count as f64 * 100.0);
                let (trate, arate) = (count as f64 / t.secs, count as f64 / a.secs);
                let (tcpu, acpu) = (t.cpu / count as f64 * 1e9, a.cpu / count as f64 * 1e9);
                tr.push(trate);
                ar.push(arate);
                ac.push(acpu);
                ratios.push(arate / trate);
                cratios.push(acpu / tcpu);
            }
            println!(
                "| {} | {policy} | {:.0} | {:.0} | {:.2}x | {:.0} ns | {:.2}x | {:.1}% |",
                human(size),
                median(tr),
                median(ar),
                median(ratios),
                median(ac),
                median(cratios),
                median(share),
            );
        }
    }
    println!();
    println!("| echo round trip, 64 B | p50 | p99 | p50 ratio |");
    println!("|---|---|---|---|");
    let n = 20_000 / scale;
    let (mut t50, mut t99) = (vec![], vec![]);
    type Row = (&'static str, bool, Duration, Vec<f64>, Vec<f64>, Vec<f64>);
    let mut rows: [Row; 3] = [
        ("wsapp", true, Duration::ZERO, vec![], vec![], vec![]),
        (
            "wsapp, through the inbox",
            false,
            Duration::ZERO,
            vec![],
            vec![],
            vec![],
        ),
        (
            "wsapp, through the inbox, busy_wait 50 us",
            false,
            QUEUE_SPIN,
            vec![],
            vec![],
            vec![],
        ),
    ];
    for _ in 0..runs {
        let mut t = tungstenite_rtt(port, n);
        let a = percentile(&mut t, 0.5);
        t50.push(a.as_secs_f64() * 1e6);
        t99.push(percentile(&mut t, 0.99).as_secs_f64() * 1e6);
        for (_, direct, spin, p50, p99, ratio) in rows.iter_mut() {
            let mut w = wsapp_rtt(port, n, *direct, *spin);
            let b = percentile(&mut w, 0.5);
            p50.push(b.as_secs_f64() * 1e6);
            p99.push(percentile(&mut w, 0.99).as_secs_f64() * 1e6);
            ratio.push(b.as_secs_f64() / a.as_secs_f64());
        }
    }
    println!(
        "| tungstenite | {:.1} us | {:.1} us | |",
        median(t50),
        median(t99)
    );
    for (name, _, _, p50, p99, ratio) in rows {
        println!(
            "| {name} | {:.1} us | {:.1} us | {:.2}x |",
            median(p50),
            median(p99),
            median(ratio)
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
