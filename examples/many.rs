//! Many connections on one hub: `cargo run --release --example many`
//! (`--connections N`, default 10,000; `--no-hub` for a thread per
//! connection; `--seconds S`, default 15; `--io-threads I` and
//! `--dispatchers D` for the hub, default 2 and 4; `--connect-burst B`,
//! default 0).
//!
//! It starts its own loopback server (polling-based, in a child process of
//! this example, because the open-files limit counts per process: N client
//! sockets here, N server sockets there) and opens N connections, each a
//! `WebSocketApp`. Every connection receives one small timestamped message
//! per second; every 3 s a burst of 500 messages goes to 5 connections;
//! connection 0's handler is slow (20 ms per message). The policy is `Block`.
//! The last line:
//! `connections=N io_threads=I crate_threads=T rss_per_conn_kib=K p99_delivery_ms=L drops=D`
//! with the RSS of both processes over N, and the p99 of the per-second
//! messages' delivery (server write to handler), after a 3 s warm-up.
//!
//! With `--connect-burst B`, halfway through the measurement B more
//! connects go to the same hub from `BURST_THREADS` caller threads while
//! the N connections run: one in `BURST_HANGING_SHARE` to a local listener
//! that accepts TCP and never answers the upgrade (each fails at its
//! handshake timeout), the rest to the server (each closed at once). Lines
//! before the last give the p99 before and during the burst, and how the
//! connects ended.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use polling::{Event, Events, Poller};
use wsapp::{Client, Hub, Overflow, WebSocketApp};

const TICK: u8 = 0;
const BURST: u8 = 1;
const BURST_EVERY: Duration = Duration::from_secs(3);
const BURST_CONNS: usize = 5;
const BURST_LEN: usize = 500;
const WARM_UP: Duration = Duration::from_secs(3);
const SLOW_HANDLER: Duration = Duration::from_millis(20);
/// Caller threads of a connect burst: connects block their caller, so the
/// threads bound how many are in flight at once.
const BURST_THREADS: usize = 16;
/// One burst connect in this many goes to the listener that never answers.
const BURST_HANGING_SHARE: usize = 4;
/// A burst connect's connect and handshake timeouts: short, so the hanging
/// ones end and the burst lasts seconds, not minutes.
const BURST_TIMEOUT: Duration = Duration::from_millis(500);
/// The path burst connects ask for: the server sends them nothing and
/// drops them when they send anything (their close).
const BURST_PATH: &str = "/burst";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Raises the soft open-files limit to the hard limit; returns it.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit, a live local.
    #[allow(unsafe_code)]
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    let cur = lim.rlim_cur as u64;
    cur
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// An unmasked binary frame: 8 bytes timestamp, 1 byte kind, padding.
fn frame(kind: u8, len: usize) -> Vec<u8> {
    let mut payload = now_ns().to_be_bytes().to_vec();
    payload.push(kind);
    payload.resize(len.max(9), 0);
    let mut f = vec![0x82, payload.len() as u8];
    f.extend(payload);
    f
}

struct Conn {
    tcp: TcpStream,
    /// The upgrade request so far; `None` once answered.
    head: Option<Vec<u8>>,
    out: Vec<u8>,
    /// A burst connect: no ticks, dropped at its first byte after the upgrade.
    burst: bool,
}

/// The server: accepts, answers upgrades, writes ticks and bursts, drains reads.
fn serve(n: usize, seconds: u64) {
    raise_nofile();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let poller = Poller::new().unwrap();
    // SAFETY: the listener outlives the poller's use of it (deleted at the end).
    #[allow(unsafe_code)]
    unsafe {
        poller
            .add(&listener, Event::readable(usize::MAX - 1))
            .unwrap();
    }
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut order: Vec<usize> = Vec::new();
    // Connections whose last flush left bytes (a paused client): only these
    // are flushed again each round, not all N.
    let mut pending: Vec<usize> = Vec::new();
    let mut next_key = 0;
    let mut events = Events::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let mut next_burst = Instant::now() + BURST_EVERY;
    let mut burst_round = 0;
    let end = Instant::now() + Duration::from_secs(seconds + 120);
    while Instant::now() < end {
        events.clear();
        let _ = poller.wait(&mut events, Some(Duration::from_millis(5)));
        for ev in events.iter() {
            if ev.key == usize::MAX - 1 {
                while let Ok((tcp, _)) = listener.accept() {
                    tcp.set_nonblocking(true).unwrap();
                    let _ = tcp.set_nodelay(true);
                    let key = next_key;
                    next_key += 1;
                    // SAFETY: deleted before the socket is dropped (below).
                    #[allow(unsafe_code)]
                    unsafe {
                        poller.add(&tcp, Event::readable(key)).unwrap();
                    }
                    conns.insert(
                        key,
                        Conn {
                            tcp,
                            head: Some(Vec::new()),
                            out: Vec::new(),
                            burst: false,
                        },
                    );
                }
                poller
                    .modify(&listener, Event::readable(usize::MAX - 1))
                    .unwrap();
                continue;
            }
            let Some(c) = conns.get_mut(&ev.key) else {
                continue;
            };
            let mut gone = false;
            loop {
                match c.tcp.read(&mut buf) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(k) => {
                        if let Some(head) = c.head.as_mut() {
                            head.extend_from_slice(&buf[..k]);
                            if let Some(resp) = upgrade(head) {
                                c.burst = head.starts_with(format!("GET {BURST_PATH}").as_bytes());
                                c.head = None;
                                c.out.extend(resp);
                                if !c.burst {
                                    order.push(ev.key);
                                }
                            }
                        } else if c.burst {
                            gone = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            if gone {
                let c = conns.remove(&ev.key).unwrap();
                let _ = poller.delete(&c.tcp);
                order.retain(|&k| k != ev.key);
            } else {
                if !flush(c) {
                    pending.push(ev.key);
                }
                let _ = poller.modify(&c.tcp, Event::readable(ev.key));
            }
        }
        let now = Instant::now();
        if order.len() == n && now >= next_tick {
            next_tick += Duration::from_secs(1);
            for k in &order {
                let c = conns.get_mut(k).unwrap();
                c.out.extend(frame(TICK, 16));
                if !flush(c) {
                    pending.push(*k);
                }
            }
        }
        if order.len() == n && now >= next_burst {
            next_burst += BURST_EVERY;
            burst_round += 1;
            for i in 0..BURST_CONNS {
                // Connection 0 (the slow handler) is in every burst: it pauses.
                let k = if i == 0 {
                    order[0]
                } else {
                    order[(burst_round * BURST_CONNS + i) % order.len()]
                };
                let c = conns.get_mut(&k).unwrap();
                for _ in 0..BURST_LEN {
                    c.out.extend(frame(BURST, 64));
                }
                if !flush(c) {
                    pending.push(k);
                }
            }
        }
        // What a paused client left in our buffers.
        pending.sort_unstable();
        pending.dedup();
        pending.retain(|k| conns.get_mut(k).is_some_and(|c| !flush(c)));
        if n > 0 && order.is_empty() && next_key >= n {
            break; // every client has gone
        }
    }
    let _ = poller.delete(&listener);
    for c in conns.values() {
        let _ = poller.delete(&c.tcp);
    }
}

/// Writes what it can; `true` once nothing is left.
fn flush(c: &mut Conn) -> bool {
    while !c.out.is_empty() {
        match c.tcp.write(&c.out) {
            Ok(k) => {
                c.out.drain(..k);
            }
            Err(_) => break,
        }
    }
    if c.out.is_empty() && c.out.capacity() > 4096 {
        c.out = Vec::new();
    }
    c.out.is_empty()
}

/// The 101 response, once the request head is complete.
fn upgrade(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    if !text.contains("\r\n\r\n") {
        return None;
    }
    let key = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_string())
    })?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Some(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize =
        arg(&args, "--connections").map_or(10_000, |v| v.parse().expect("--connections N"));
    let seconds: u64 = arg(&args, "--seconds").map_or(15, |v| v.parse().expect("--seconds S"));
    if args.iter().any(|a| a == "--serve") {
        serve(n, seconds);
        return;
    }
    let no_hub = args.iter().any(|a| a == "--no-hub");
    let limit = raise_nofile();
    let need = n as u64 + 64;
    if limit < need {
        eprintln!("the open-files limit is {limit} (hard), {need} needed: fewer connections, or raise the hard limit");
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--serve",
            "--connections",
            &n.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/", port.trim());

    let io_threads: usize =
        arg(&args, "--io-threads").map_or(2, |v| v.parse().expect("--io-threads N"));
    let dispatchers: usize =
        arg(&args, "--dispatchers").map_or(4, |v| v.parse().expect("--dispatchers N"));
    let hub = (!no_hub).then(|| Hub::with_threads(io_threads, dispatchers).expect("a hub"));
    let started = Instant::now();
    // (ms since `started` at delivery, delivery in us)
    let lat: Arc<Mutex<Vec<(u32, u32)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(n * seconds as usize)));
    let mut apps = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = Client::new(url.clone())
            .queue(256)
            .overflow(Overflow::Block)
            .connect_timeout(Duration::from_secs(10));
        if let Some(h) = &hub {
            client = client.hub(h);
        }
        let lat = lat.clone();
        let app = WebSocketApp::new(client)
            .on_message(move |_, m| {
                let data = m.into_data();
                if data.len() < 9 {
                    return;
                }
                if i == 0 {
                    std::thread::sleep(SLOW_HANDLER);
                }
                if data[8] == TICK && started.elapsed() > WARM_UP {
                    let sent = u64::from_be_bytes(data[..8].try_into().unwrap());
                    let us = now_ns().saturating_sub(sent) / 1000;
                    let at = started.elapsed().as_millis() as u32;
                    lat.lock()
                        .unwrap()
                        .push((at, us.min(u32::MAX as u64) as u32));
                }
            })
            .start();
        match app {
            Ok(a) => apps.push(a),
            Err(e) => {
                eprintln!("connection {i}: {e}");
                break;
            }
        }
    }
    let connected = apps.len();
    eprintln!("{connected} connected in {:?}", started.elapsed());
    lat.lock().unwrap().clear();
    let measure_from = Instant::now();
    let burst_n: usize =
        arg(&args, "--connect-burst").map_or(0, |v| v.parse().expect("--connect-burst N"));
    let mut burst = None;
    while measure_from.elapsed() < Duration::from_secs(seconds)
        || burst.as_ref().is_some_and(|b: &Burst| !b.is_finished())
    {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(h) = &hub {
            eprintln!("{}", h.stats());
        }
        if burst_n > 0
            && burst.is_none()
            && measure_from.elapsed() >= Duration::from_secs(seconds / 2)
        {
            burst = Some(Burst::start(burst_n, &url, hub.as_ref(), started));
        }
    }
    if let Some(b) = burst {
        let l = lat.lock().unwrap();
        b.report(&l, hub.as_ref());
    }
    let names = thread_names();
    let io_threads = names
        .iter()
        .filter(|t| t.starts_with("wsapp-hub") || t.starts_with("wsapp-io"))
        .count();
    let crate_threads = names.iter().filter(|t| t.starts_with("wsapp-")).count();
    let rss = rss_kib("self") + rss_kib(&child.id().to_string());
    let drops: u64 = apps.iter().map(|a| a.stats().dropped.total()).sum();
    let l = std::mem::take(&mut *lat.lock().unwrap());
    let p99 = p99_ms(l.iter().map(|s| s.1));
    eprintln!("{} tick deliveries measured", l.len());
    println!(
        "connections={connected} io_threads={io_threads} crate_threads={crate_threads} rss_per_conn_kib={} p99_delivery_ms={p99:.1} drops={drops}",
        rss / connected.max(1) as u64
    );
    // The server goes first: every connection then ends at once, with no
    // close handshake to wait for one by one.
    let _ = child.kill();
    let _ = child.wait();
    let t = Instant::now();
    for a in &apps {
        let _ = a.close(1000, "");
    }
    drop(hub);
    for a in apps {
        let _ = a.join();
    }
    eprintln!("closed in {:?}", t.elapsed());
}

/// The p99 of delivery times in us, in ms.
fn p99_ms(us: impl Iterator<Item = u32>) -> f64 {
    let mut l: Vec<u32> = us.collect();
    l.sort_unstable();
    l.get(l.len() * 99 / 100).copied().unwrap_or(0) as f64 / 1000.0
}

/// How the connects of a burst ended.
#[derive(Debug, Default)]
struct BurstCount {
    ok: usize,
    timeouts: usize,
    other: usize,
    /// The first error of each kind seen, for the report.
    samples: Vec<String>,
}

/// A connect burst in flight: `BURST_THREADS` caller threads and a listener
/// that takes TCP connections and never answers.
struct Burst {
    threads: Vec<std::thread::JoinHandle<()>>,
    count: Arc<Mutex<BurstCount>>,
    silent: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// ms since `started`: the burst's start, and its end once known.
    from_ms: u32,
    until_ms: Arc<Mutex<u32>>,
    threads_before: usize,
}

impl Burst {
    fn start(n: usize, url: &str, hub: Option<&Hub>, started: Instant) -> Burst {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let threads_before = thread_names()
            .iter()
            .filter(|t| t.starts_with("wsapp-"))
            .count();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let silent_url = format!("ws://{}/", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        // Accepts and holds every connection, answering nothing, until the burst ends.
        let silent = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => held.push(tcp),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        let next = Arc::new(AtomicUsize::new(0));
        let count = Arc::new(Mutex::new(BurstCount::default()));
        let until_ms = Arc::new(Mutex::new(0));
        let from_ms = started.elapsed().as_millis() as u32;
        eprintln!("connect burst: {n} connects, one in {BURST_HANGING_SHARE} to a listener that never answers, from {BURST_THREADS} threads");
        let threads = (0..BURST_THREADS)
            .map(|_| {
                let (next, count, until_ms) = (next.clone(), count.clone(), until_ms.clone());
                let good = format!("{}{}", url.trim_end_matches('/'), BURST_PATH);
                let clients = [silent_url.clone(), good].map(|u| {
                    let c = Client::new(u)
                        .connect_timeout(BURST_TIMEOUT)
                        .handshake_timeout(BURST_TIMEOUT);
                    match hub {
                        Some(h) => c.hub(h),
                        None => c,
                    }
                });
                std::thread::spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        let mut u = until_ms.lock().unwrap();
                        *u = (*u).max(started.elapsed().as_millis() as u32);
                        return;
                    }
                    let client = &clients[usize::from(i % BURST_HANGING_SHARE != 0)];
                    let r = client.connect();
                    let mut c = count.lock().unwrap();
                    match r {
                        Ok(ws) => {
                            c.ok += 1;
                            drop(c);
                            drop(ws);
                        }
                        Err(e) => {
                            let timeout = e.kind() == wsapp::ErrorKind::Timeout;
                            if timeout {
                                c.timeouts += 1
                            } else {
                                c.other += 1
                            }
                            if c.samples.len() < 3
                                && !c
                                    .samples
                                    .iter()
                                    .any(|s| s.split(':').next() == e.to_string().split(':').next())
                            {
                                c.samples.push(e.to_string());
                            }
                        }
                    }
                })
            })
            .collect();
        Burst {
            threads,
            count,
            silent: Some(silent),
            stop,
            from_ms,
            until_ms,
            threads_before,
        }
    }

    fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    fn report(mut self, lat: &[(u32, u32)], hub: Option<&Hub>) {
        let threads_during = thread_names()
            .iter()
            .filter(|t| t.starts_with("wsapp-"))
            .count();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = self.silent.take() {
            let _ = s.join();
        }
        let (from, until) = (self.from_ms, *self.until_ms.lock().unwrap());
        let before = p99_ms(lat.iter().filter(|s| s.0 < from).map(|s| s.1));
        let during = p99_ms(
            lat.iter()
                .filter(|s| s.0 >= from && s.0 <= until)
                .map(|s| s.1),
        );
        let (nb, nd) = (
            lat.iter().filter(|s| s.0 < from).count(),
            lat.iter().filter(|s| s.0 >= from && s.0 <= until).count(),
        );
        let c = self.count.lock().unwrap();
        eprintln!("connect burst errors, first of each kind: {:?}", c.samples);
        if let Some(h) = hub {
            eprintln!("after the burst: {}", h.stats());
        }
        println!(
            "connect_burst={} burst_s={:.1} ok={} timeouts={} other_errors={} crate_threads_before={} during={} p99_before_ms={before:.1} ({nb} ticks) p99_during_ms={during:.1} ({nd} ticks)",
            c.ok + c.timeouts + c.other,
            f64::from(until.saturating_sub(from)) / 1000.0,
            c.ok,
            c.timeouts,
            c.other,
            self.threads_before,
            threads_during,
        );
    }
}
