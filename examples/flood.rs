//! The flood demo: a loopback server floods numbered messages as fast as it
//! can while a deliberately slow handler takes them, once per overflow policy.
//! It shows live where the backlog sits (the inbox, the kernel's receive
//! queue, the server) and ends with a table per policy.
//!
//! `cargo run --release --example flood [-- --count 200000 --size 256 --delay-us 20
//!  --rcvbuf 262144 --queue 1000 --policies block,block-ahead,drop-newest,drop-oldest,priority,conflate
//!  --compress]` (`--compress`: the server agrees permessage-deflate and compresses every message)
//!
//! `block` is the default client: a handler that keeps up reads the socket
//! itself, so the backlog waits in the kernel; `block-ahead` is `Block` with
//! `direct_reads(false)`, where the I/O thread reads ahead into the inbox.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use wsapp::{Client, Message, Overflow, Stats, WebSocketApp};

struct Opts {
    count: u64,
    size: usize,
    delay: Duration,
    rcvbuf: usize,
    queue: usize,
    policies: Vec<String>,
    /// The server compresses every message (permessage-deflate).
    compress: bool,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        count: 200_000,
        size: 256,
        delay: Duration::from_micros(20),
        rcvbuf: 256 << 10,
        queue: 1000,
        policies: [
            "block",
            "block-ahead",
            "drop-newest",
            "drop-oldest",
            "priority",
            "conflate",
        ]
        .map(String::from)
        .to_vec(),
        compress: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        let num = |s: &str| -> u64 {
            s.parse().unwrap_or_else(|_| {
                eprintln!("{}: expected a number, got {s:?}", args[i]);
                std::process::exit(2)
            })
        };
        match args[i].as_str() {
            "--count" => o.count = num(&v),
            "--size" => o.size = (num(&v) as usize).max(16),
            "--delay-us" => o.delay = Duration::from_micros(num(&v)),
            "--rcvbuf" => o.rcvbuf = num(&v) as usize,
            "--queue" => o.queue = num(&v) as usize,
            "--policies" => o.policies = v.split(',').map(String::from).collect(),
            "--compress" => {
                o.compress = true;
                i += 1;
                continue;
            }
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("flood.rs")
                        .lines()
                        .take(7)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0)
            }
            other => {
                eprintln!("unknown flag {other}; try --help");
                std::process::exit(2)
            }
        }
        i += 2;
    }
    o
}

/// What the server saw: how many it sent, and how long its writes were stuck.
#[derive(Default)]
struct ServerStats {
    sent: AtomicU64,
    throttled_us: AtomicU64,
    done: AtomicBool,
}

/// What the server sends.
#[derive(Clone, Copy)]
struct ServeOpts {
    count: u64,
    size: usize,
    compress: bool,
}

/// Message layout: 8-byte sequence number, then padding to `size`.
fn serve(listener: TcpListener, o: ServeOpts, stats: Arc<ServerStats>) {
    let ServeOpts {
        count,
        size,
        compress,
    } = o;
    let Ok((stream, _)) = listener.accept() else {
        return;
    };
    // With --compress: agree permessage-deflate (with context takeover).
    #[allow(clippy::result_large_err)] // tungstenite's callback type
    let agree = |_: &tungstenite::handshake::server::Request,
                 mut resp: tungstenite::handshake::server::Response| {
        if compress {
            resp.headers_mut().insert(
                "Sec-WebSocket-Extensions",
                "permessage-deflate".parse().expect("a header value"),
            );
        }
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, agree) else {
        return;
    };
    let mut deflater = flate2::Compress::new(flate2::Compression::default(), false);
    let raw: &mut TcpStream = ws.get_mut();
    let mut chunk = Vec::with_capacity(64 << 10);
    let mut seq = 0u64;
    while seq < count {
        chunk.clear();
        while chunk.len() < (64 << 10) - size - 16 && seq < count {
            let mut payload = vec![0u8; size];
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            let mut frame = if compress {
                let mut out = Vec::with_capacity(size + 64);
                deflater
                    .compress_vec(&payload, &mut out, flate2::FlushCompress::Sync)
                    .expect("deflate into a Vec");
                out.truncate(out.len() - 4); // RFC 7692 7.2.1: without 00 00 ff ff
                Frame::message(out, OpCode::Data(Data::Binary), true)
            } else {
                Frame::message(payload, OpCode::Data(Data::Binary), true)
            };
            frame.header_mut().rsv1 = compress;
            frame.format(&mut chunk).expect("frame into a Vec");
            seq += 1;
        }
        let t = Instant::now();
        if raw.write_all(&chunk).is_err() {
            break;
        }
        let took = t.elapsed();
        // A 64 KiB write to loopback takes microseconds unless the window is closed.
        if took > Duration::from_millis(1) {
            stats
                .throttled_us
                .fetch_add(took.as_micros() as u64, Relaxed);
        }
        stats.sent.store(seq, Relaxed);
    }
    stats.done.store(true, Relaxed);
    let _ = ws.close(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && ws.read().is_ok() {}
}

/// Instruments in the conflation run: the key is the sequence number mod this.
const CONFLATE_KEYS: u64 = 32;

fn seq_of(m: &Message) -> u64 {
    let data = m.clone().into_data();
    u64::from_be_bytes(data[..8].try_into().expect("8-byte sequence number"))
}

fn policy(name: &str) -> Overflow {
    match name {
        "block" | "block-ahead" => Overflow::Block,
        "drop-newest" => Overflow::DropNewest,
        "drop-oldest" => Overflow::DropOldest,
        // Every 10th message is critical; the rest get priorities 0..=2.
        "priority" => Overflow::priority(|m: &Message| {
            let s = seq_of(m);
            if s % 10 == 0 {
                Overflow::TOP
            } else {
                (s % 3) as u8
            }
        }),
        // 32 instruments; only the latest value of each matters.
        "conflate" => {
            Overflow::conflate(|m: &Message| Some((seq_of(m) % CONFLATE_KEYS).to_string()))
        }
        other => {
            eprintln!("unknown policy {other}");
            std::process::exit(2)
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits `d` precisely: sleeping is too coarse below a millisecond.
fn slow_work(d: Duration) {
    if d >= Duration::from_millis(1) {
        thread::sleep(d);
    } else {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }
}

struct Row {
    name: String,
    sent: u64,
    final_stats: Stats,
    in_order: bool,
    top_lost: u64,
    peak_recvq: usize,
    throttled: Duration,
    peak_rss_mib: f64,
    secs: f64,
}

fn run_policy(o: &Opts, name: &str) -> Row {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("addr").port();
    let server = Arc::new(ServerStats::default());
    let s2 = server.clone();
    let serve_opts = ServeOpts {
        count: o.count,
        size: o.size,
        compress: o.compress,
    };
    let server_thread = thread::spawn(move || serve(listener, serve_opts, s2));

    // Conflation replaces in place, so only the order per key holds.
    let keys = if name == "conflate" { CONFLATE_KEYS } else { 1 };
    let last: Arc<Vec<AtomicU64>> = Arc::new((0..keys).map(|_| AtomicU64::new(u64::MAX)).collect());
    let in_order = Arc::new(AtomicBool::new(true));
    let seen_top = Arc::new(AtomicU64::new(0));
    let (l2, o2, t2, delay) = (last.clone(), in_order.clone(), seen_top.clone(), o.delay);
    let client = Client::new(format!("ws://127.0.0.1:{port}/"))
        .recv_buffer_size(o.rcvbuf)
        .queue(o.queue)
        // "block-ahead": Block with the I/O thread always reading ahead.
        .direct_reads(name != "block-ahead")
        .overflow(policy(name));
    let app = WebSocketApp::new(client)
        .on_message(move |_ws, m| {
            let s = seq_of(&m);
            let prev = l2[(s % keys) as usize].swap(s, Relaxed);
            if prev != u64::MAX && s <= prev {
                o2.store(false, Relaxed);
            }
            if s % 10 == 0 {
                t2.fetch_add(1, Relaxed);
            }
            slow_work(delay);
        })
        .start()
        .expect("start the app");

    let started = Instant::now();
    let (mut peak_recvq, mut peak_rss) = (0usize, 0u64);
    let mut last_sent = (0u64, Instant::now());
    let mut rate = 0.0;
    let mut stats;
    loop {
        thread::sleep(Duration::from_millis(200));
        stats = app.stats();
        peak_recvq = peak_recvq.max(stats.kernel_recv_queue.unwrap_or(0));
        peak_rss = peak_rss.max(rss_kib());
        let sent = server.sent.load(Relaxed);
        let dt = last_sent.1.elapsed().as_secs_f64();
        if dt > 0.0 {
            rate = (sent - last_sent.0) as f64 / dt;
        }
        last_sent = (sent, Instant::now());
        let bar_len = 24;
        let filled = (stats.delivered * bar_len / o.count.max(1)).min(bar_len) as usize;
        eprint!(
            "\r{name:>11} [{}{}] handled {:>7} | inbox {:>5}/{} | Recv-Q {:>8} | dropped {:>7} | {} | server {:>9.0} msg/s   ",
            "#".repeat(filled),
            ".".repeat(bar_len as usize - filled),
            stats.delivered,
            stats.queued,
            stats.queue_capacity,
            stats.kernel_recv_queue.map_or("-".into(), |q| q.to_string()),
            stats.dropped.total(),
            if stats.paused { "PAUSED " } else { "reading" },
            rate,
        );
        let _ = std::io::stderr().flush();
        let finished = server.done.load(Relaxed) && !app.sender().is_connected();
        if finished || started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    eprintln!();
    let _ = app.close(1000, "done");
    let _ = app.join();
    let _ = server_thread.join();
    let expected_top = o.count.div_ceil(10);
    Row {
        name: name.to_string(),
        sent: server.sent.load(Relaxed),
        final_stats: stats,
        in_order: in_order.load(Relaxed),
        top_lost: expected_top.saturating_sub(seen_top.load(Relaxed)),
        peak_recvq,
        throttled: Duration::from_micros(server.throttled_us.load(Relaxed)),
        peak_rss_mib: peak_rss as f64 / 1024.0,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn main() {
    let o = parse_args();
    println!(
        "flood: {} messages of {} B, handler {:?} per message, SO_RCVBUF asked {} B, inbox bound {} messages",
        o.count, o.size, o.delay, o.rcvbuf, o.queue
    );
    let rows: Vec<Row> = o.policies.iter().map(|p| run_policy(&o, p)).collect();
    let rcvbuf = rows
        .first()
        .and_then(|r| r.final_stats.recv_buffer_size)
        .map_or("-".into(), |b| b.to_string());
    println!();
    println!("effective SO_RCVBUF: {rcvbuf} B (Linux doubles what was asked)");
    println!(
        "| policy | sent | delivered | dropped: newest | oldest | priority | conflated | in order | top-priority lost | peak inbox | peak Recv-Q | server throttled | paused | peak RSS | time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let s = &r.final_stats;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} B | {:.2} s | {}x {:.2} s | {:.1} MiB | {:.1} s |",
            r.name,
            r.sent,
            s.delivered,
            s.dropped.newest,
            s.dropped.oldest,
            s.dropped.priority,
            s.dropped.conflated,
            if r.in_order { "yes" } else { "NO" },
            if r.name == "priority" { r.top_lost.to_string() } else { "-".into() },
            s.queue_high_water,
            r.peak_recvq,
            r.throttled.as_secs_f64(),
            s.pause_count,
            s.paused_for.as_secs_f64(),
            r.peak_rss_mib,
            r.secs,
        );
        assert_eq!(
            s.received,
            s.delivered + s.dropped.total() + s.queued as u64,
            "accounting identity"
        );
    }
    if o.compress {
        println!();
        println!(
            "| policy | compressed messages in | bytes on the wire | bytes inflated | ratio |"
        );
        println!("|---|---|---|---|---|");
        for r in &rows {
            let s = &r.final_stats;
            println!(
                "| {} | {} | {} | {} | {} |",
                r.name,
                s.compressed_in,
                s.compressed_in_wire,
                s.compressed_in_plain,
                s.compression_ratio_in()
                    .map_or("-".into(), |x| format!("{x:.1}x")),
            );
        }
    }
}
