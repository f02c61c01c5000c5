//! Shared harness for the `policy_*` integration tests.
//!
//! A one-connection server on `127.0.0.1:0` writes `n` numbered binary messages
//! (8-byte big-endian sequence number, then filler bytes derived from it) as
//! pre-encoded frames, then closes. A deliberately slow consumer receives
//! everything until the close, while another thread takes bounded, repeated
//! `Sender::stats()` snapshots. Every wait is bounded.
#![allow(dead_code)]

use std::io::{self, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wsapp::{Client, Message, Stats};

/// Messages each policy test sends.
pub const N: u64 = 100_000;
/// Payload of a numbered message: 8 bytes of sequence number and 8 of filler.
pub const SMALL: usize = 16;
/// The longest a whole run may take before the test fails (not hangs).
pub const RUN_LIMIT: Duration = Duration::from_secs(9);
/// At most this many snapshots per run.
pub const MAX_SNAPSHOTS: usize = 20_000;
/// Pause between snapshots.
pub const SNAPSHOT_EVERY: Duration = Duration::from_micros(200);
/// Messages the I/O thread reads per inbox lock (`connection::BATCH`): when the
/// connection ends while reading is paused, the last batch is queued past the bound.
pub const END_BATCH_SLACK: usize = 64;

/// The sequence number of a numbered message, after checking its payload.
pub fn seq_of(msg: &Message, size: impl Fn(u64) -> usize) -> u64 {
    let Message::Binary(b) = msg else {
        panic!("expected a binary message, got {msg:?}");
    };
    assert!(b.len() >= 8, "payload too short: {} bytes", b.len());
    let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
    assert_eq!(b.len(), size(seq), "payload length of message {seq}");
    let fill = seq as u8;
    assert!(
        b[8..].iter().all(|&x| x == fill),
        "payload of message {seq} is corrupt"
    );
    seq
}

/// The sequence number of a message the policy function sees (no checks: it
/// runs on the I/O thread, where a panic would only end the connection).
pub fn seq(msg: &Message) -> u64 {
    match msg {
        Message::Binary(b) if b.len() >= 8 => u64::from_be_bytes(b[..8].try_into().unwrap()),
        _ => u64::MAX,
    }
}

fn encode(seq: u64, size: usize, out: &mut Vec<u8>) {
    assert!((8..65_536).contains(&size));
    out.push(0x82); // FIN, binary, unmasked (server to client)
    if size < 126 {
        out.push(size as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(size as u16).to_be_bytes());
    }
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend(std::iter::repeat_n(seq as u8, size - 8));
}

/// How the server writes: `chunk` frames per `write_all`, then `gap` of sleep.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub chunk: usize,
    pub gap: Duration,
}

impl Pace {
    /// As fast as the socket takes it.
    pub const FLAT_OUT: Pace = Pace {
        chunk: 2_000,
        gap: Duration::ZERO,
    };
}

/// What the server thread saw.
#[derive(Debug)]
pub struct ServerReport {
    /// Time from the handshake to the last frame written to the socket.
    pub send_time: Duration,
}

pub struct Server {
    pub url: String,
    handle: JoinHandle<io::Result<ServerReport>>,
}

impl Server {
    pub fn join(self) -> ServerReport {
        self.handle
            .join()
            .expect("server thread panicked")
            .expect("server failed")
    }
}

/// Starts a one-connection server that sends `n` numbered messages of `size`
/// payload bytes, then a close frame, and waits for the client's close reply.
pub fn flood_server(n: u64, size: usize, pace: Pace) -> Server {
    sized_server(n, move |_| size, pace)
}

/// As [`flood_server`], with the payload size of each message given by `size`.
pub fn sized_server(n: u64, size: impl Fn(u64) -> usize + Send + 'static, pace: Pace) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || -> io::Result<ServerReport> {
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + RUN_LIMIT + Duration::from_secs(5);
        let tcp = loop {
            match listener.accept() {
                Ok((tcp, _)) => break tcp,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => return Err(e),
            }
        };
        tcp.set_nonblocking(false)?;
        // Bounded: a client that stops reading fails the server instead of hanging it.
        tcp.set_write_timeout(Some(RUN_LIMIT + Duration::from_secs(5)))?;
        tcp.set_read_timeout(Some(RUN_LIMIT + Duration::from_secs(5)))?;
        tcp.set_nodelay(true)?;
        let mut ws = tungstenite::accept(tcp).map_err(io::Error::other)?;
        let start = Instant::now();
        let mut buf = Vec::new();
        let mut seq = 0;
        while seq < n {
            buf.clear();
            let end = (seq + pace.chunk as u64).min(n);
            for s in seq..end {
                encode(s, size(s), &mut buf);
            }
            // Whole frames straight to the socket: tungstenite's state is unaffected.
            ws.get_mut().write_all(&buf)?;
            seq = end;
            // Also after the last chunk: the client's snapshot should see the
            // policy at work, not the end of the stream (which may queue the
            // reader's last batch past the bounds rather than lose it).
            if !pace.gap.is_zero() {
                std::thread::sleep(pace.gap);
            }
        }
        let send_time = start.elapsed();
        ws.close(None).map_err(io::Error::other)?;
        // Until the client's close reply (or the connection drops).
        loop {
            match ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(tungstenite::Error::Io(e)) if e.kind() != io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::Protocol(_)) => break,
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        // Dropping the socket now sends the FIN the client waits for.
        Ok(ServerReport { send_time })
    });
    Server { url, handle }
}

/// A slow consumer: it sleeps `initial` before its first `recv`, then `pause`
/// after every `every` messages, but never more than `budget` in all.
#[derive(Debug, Clone, Copy)]
pub struct Consumer {
    pub initial: Duration,
    pub every: usize,
    pub pause: Duration,
    pub budget: Duration,
}

impl Consumer {
    /// About 20 µs a message for the first ~1.5 s of receiving.
    pub const SLOW: Consumer = Consumer {
        initial: Duration::from_millis(100),
        every: 50,
        pause: Duration::from_millis(1),
        budget: Duration::from_millis(1_500),
    };
}

/// Everything a run produced.
#[derive(Debug)]
pub struct Run {
    /// Sequence numbers in the order `recv` returned them.
    pub seqs: Vec<u64>,
    /// Snapshots taken by another thread while the consumer ran.
    pub snapshots: Vec<Stats>,
    /// Taken after `recv` reported the end.
    pub end: Stats,
    pub elapsed: Duration,
    pub server: ServerReport,
}

/// Connects `configure(Client::new(url))` to a flood server and consumes slowly.
pub fn run(
    n: u64,
    size: usize,
    pace: Pace,
    consumer: Consumer,
    configure: impl FnOnce(Client) -> Client,
) -> Run {
    run_sized(n, move |_| size, pace, consumer, configure)
}

/// As [`run`], with the payload size of each message given by `size`.
pub fn run_sized(
    n: u64,
    size: impl Fn(u64) -> usize + Clone + Send + 'static,
    pace: Pace,
    consumer: Consumer,
    configure: impl FnOnce(Client) -> Client,
) -> Run {
    let start = Instant::now();
    let server = sized_server(n, size.clone(), pace);
    let ws = configure(Client::new(server.url.clone()))
        .connect()
        .expect("connect");

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let tx = ws.sender();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut snaps = Vec::new();
            while !done.load(Ordering::Acquire) && snaps.len() < MAX_SNAPSHOTS {
                snaps.push(tx.stats());
                std::thread::sleep(SNAPSHOT_EVERY);
            }
            snaps
        })
    };

    let deadline = start + RUN_LIMIT;
    let mut seqs = Vec::new();
    let mut slept = Duration::ZERO;
    let mut nap = |d: Duration| {
        if slept < consumer.budget {
            let t = Instant::now();
            std::thread::sleep(d);
            slept += t.elapsed();
        }
    };
    nap(consumer.initial);
    let outcome = loop {
        match ws.recv_deadline(deadline) {
            Ok(Some(m)) => {
                seqs.push(seq_of(&m, &size));
                if consumer.every > 0 && seqs.len() % consumer.every == 0 {
                    nap(consumer.pause);
                }
            }
            Ok(None) => break Err(format!("run not over after {RUN_LIMIT:?}")),
            Err(e) if e.is_closed() => break Ok(()),
            Err(e) => break Err(format!("recv failed: {e}")),
        }
    };
    done.store(true, Ordering::Release);
    let snapshots = sampler.join().expect("sampler panicked");
    let end = ws.stats();
    if let Err(e) = outcome {
        panic!("{e}; {} delivered; last stats: {end}", seqs.len());
    }
    drop(ws);
    let server = server.join();
    Run {
        seqs,
        snapshots,
        end,
        elapsed: start.elapsed(),
        server,
    }
}

/// `received == delivered + dropped.total() + queued`.
pub fn identity_holds(s: &Stats) -> bool {
    s.received == s.delivered + s.dropped.total() + s.queued as u64
}

/// Checks every snapshot and the final one: the accounting identity, counters
/// that never go back, nothing beyond `n`, the message bound, and the end state.
/// `strict_bound`: the policy never pauses, so even the end stays within the bound.
pub fn check_accounting(run: &Run, n: u64, cap: usize, strict_bound: bool) {
    assert!(!run.snapshots.is_empty(), "no snapshots taken");
    assert!(run.elapsed < RUN_LIMIT, "the run took {:?}", run.elapsed);
    let mut prev: Option<&Stats> = None;
    for (i, s) in run.snapshots.iter().chain([&run.end]).enumerate() {
        assert!(identity_holds(s), "snapshot {i}: identity broken: {s}");
        assert!(
            s.received <= n,
            "snapshot {i}: received more than sent: {s}"
        );
        assert_eq!(s.queue_capacity, cap, "snapshot {i}");
        let slack = if strict_bound || s.paused {
            0
        } else {
            END_BATCH_SLACK
        };
        assert!(
            s.queued <= cap + slack,
            "snapshot {i}: {} queued, bound {cap}: {s}",
            s.queued
        );
        if let Some(p) = prev {
            let d = (&s.dropped, &p.dropped);
            assert!(
                s.received >= p.received
                    && s.delivered >= p.delivered
                    && d.0.newest >= d.1.newest
                    && d.0.oldest >= d.1.oldest
                    && d.0.priority >= d.1.priority
                    && d.0.conflated >= d.1.conflated
                    && d.0.filtered >= d.1.filtered
                    && s.pause_count >= p.pause_count,
                "snapshot {i}: a counter went back:\n  before {p}\n  after  {s}"
            );
        }
        prev = Some(s);
    }
    let end = &run.end;
    assert_eq!(end.received, n, "every message reached the policy: {end}");
    assert_eq!(end.queued, 0, "everything delivered or dropped: {end}");
    assert_eq!(end.queued_bytes, 0, "{end}");
    assert_eq!(end.delivered, run.seqs.len() as u64, "{end}");
}

/// Strictly increasing, so no duplicates and no reordering.
pub fn assert_strictly_increasing(seqs: &[u64]) {
    if let Some(w) = seqs.windows(2).find(|w| w[0] >= w[1]) {
        panic!("out of order or duplicated: {} then {}", w[0], w[1]);
    }
}

/// One line for the test log (`--nocapture`).
pub fn report(name: &str, n: u64, run: &Run) {
    eprintln!(
        "{name}: {} delivered of {n} in {:.2?} (server sent in {:.2?}), {} snapshots; end: {}",
        run.seqs.len(),
        run.elapsed,
        run.server.send_time,
        run.snapshots.len(),
        run.end
    );
}

/// `queue_high_water` is "the most messages the inbox ever held", and `queued`
/// is what it holds now: no snapshot may show more queued than the high water mark.
pub fn assert_high_water_covers_queued(run: &Run) {
    let worst = run
        .snapshots
        .iter()
        .chain([&run.end])
        .filter(|s| s.queued > s.queue_high_water)
        .max_by_key(|s| s.queued - s.queue_high_water);
    let n = run
        .snapshots
        .iter()
        .filter(|s| s.queued > s.queue_high_water)
        .count();
    if let Some(s) = worst {
        panic!(
            "{n} of {} snapshots show more messages queued than queue_high_water; worst: \
             {} queued, high water {}: {s}",
            run.snapshots.len(),
            s.queued,
            s.queue_high_water
        );
    }
}

/// A scripted session: the server sends these messages (seq `i` has payload
/// `sizes[i]`) at once, then a close frame; the client does not `recv` until
/// `ready` says so of its stats (or `WAIT_LIMIT` passes), keeps that snapshot,
/// then receives everything.
pub struct Scripted {
    /// The snapshot taken before the first `recv`.
    pub before: Stats,
    pub seqs: Vec<u64>,
    pub end: Stats,
}

/// How long a scripted client waits for the policy to see the messages.
pub const WAIT_LIMIT: Duration = Duration::from_secs(2);

pub fn scripted(
    sizes: Vec<usize>,
    ready: impl Fn(&Stats) -> bool,
    configure: impl FnOnce(Client) -> Client,
) -> Scripted {
    let n = sizes.len() as u64;
    let sizes = Arc::new(sizes);
    let size = {
        let sizes = sizes.clone();
        move |seq: u64| sizes[seq as usize]
    };
    let server = sized_server(
        n,
        size.clone(),
        Pace {
            chunk: sizes.len(),
            gap: Duration::from_millis(300),
        },
    );
    let ws = configure(Client::new(server.url.clone()))
        .connect()
        .expect("connect");
    let until = Instant::now() + WAIT_LIMIT;
    let before = loop {
        let s = ws.stats();
        if ready(&s) || Instant::now() >= until {
            break s;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let deadline = Instant::now() + RUN_LIMIT;
    let mut seqs = Vec::new();
    loop {
        match ws.recv_deadline(deadline) {
            Ok(Some(m)) => seqs.push(seq_of(&m, &size)),
            Ok(None) => panic!("scripted run not over after {RUN_LIMIT:?}: {}", ws.stats()),
            Err(e) if e.is_closed() => break,
            Err(e) => panic!("recv failed: {e}"),
        }
    }
    let end = ws.stats();
    drop(ws);
    server.join();
    assert!(identity_holds(&before), "{before}");
    assert!(identity_holds(&end), "{end}");
    assert_eq!(end.received, n, "{end}");
    Scripted { before, seqs, end }
}
