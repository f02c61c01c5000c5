//! `wsdump`: an interactive WebSocket client, after the one Python's
//! websocket-client ships, on `wsapp`.
//!
//! Lines read from stdin are sent as text messages; received messages are
//! printed on stdout. Built on [`WebSocketApp`]: `run_forever` runs on the main
//! thread and its callbacks print, in wire order; a stdin thread (started once
//! the connection opens) sends through the app's [`AppSender`], which follows
//! reconnects. Ctrl-C and stdin EOF close through the library, so the close
//! handshake runs. `--stats` is printed by a thread of its own, so that it keeps
//! its pace while messages stream.
//!
//! ```sh
//! cargo install --path . --features cli
//! echo hello | wsdump --eof-wait 1 ws://127.0.0.1:9001/
//! cargo run --features cli --bin wsdump -- --help
//! ```

#[path = "wsdump/args.rs"]
mod args;
#[path = "wsdump/display.rs"]
mod display;

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wsapp::{
    AppSender, Backoff, Client, CloseCode, Error, ErrorKind, Message, Overflow, WebSocketApp,
};

use args::{Action, Args, Policy};

fn main() {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Action::Run(args)) => args,
        Ok(Action::Help) => {
            print!("{}", args::HELP);
            return;
        }
        Ok(Action::Version) => {
            println!("wsdump {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("wsdump: {e}\nTry 'wsdump --help'.");
            std::process::exit(2);
        }
    };
    Logger::install(args.verbose);
    let status = match run(*args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wsdump: {e}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    // Ends the stdin thread too, which may be blocked in a read.
    std::process::exit(status);
}

/// Connects, runs until the connection ends for good, and says whether that
/// was a normal close.
fn run(args: Args) -> Result<(), String> {
    let out = Arc::new(Output {
        raw: args.raw,
        verbose: args.verbose,
        timings: args.timings,
        opened: OnceLock::new(),
        broken: AtomicBool::new(false),
    });
    let mut app = WebSocketApp::new(client(&args)?);
    if let Some(secs) = args.ping {
        app = app.ping_interval(secs).ping_timeout(secs / 2);
    }
    if args.reconnect {
        app = app.reconnect(Backoff::exponential(
            Duration::from_millis(500),
            Duration::from_secs(30),
        ));
    }
    let tx = app.sender();
    on_signal(tx.clone())?;
    if let Some(every) = args.stats {
        let tx = tx.clone();
        spawn("wsdump-stats", move || loop {
            std::thread::sleep(every);
            eprintln!("stats: {}", tx.stats());
        })?;
    }

    let mut stdin = Some(StdinPump {
        text: args.text.clone(),
        eof_wait: args.eof_wait,
        close: args.close.clone(),
    });
    let (o1, o2, o3, o4) = (out.clone(), out.clone(), out.clone(), out.clone());
    let (text, url, reconnect) = (args.text.clone(), args.url.clone(), args.reconnect);
    let result = app
        .on_open(move |ws| {
            let _ = o1.opened.set(Instant::now());
            if o1.verbose > 0 {
                match ws.stats().compression {
                    Some(c) => eprintln!(
                        "wsdump: connected to {url} (permessage-deflate: server window {} bits, \
                         client window {} bits{}{})",
                        c.server_max_window_bits,
                        c.client_max_window_bits,
                        if c.server_no_context_takeover {
                            ", server no context takeover"
                        } else {
                            ""
                        },
                        if c.client_no_context_takeover {
                            ", client no context takeover"
                        } else {
                            ""
                        },
                    ),
                    None => eprintln!("wsdump: connected to {url} (uncompressed)"),
                }
            }
            // --text goes first, then the stdin thread starts (once: it follows reconnects).
            if let Some(pump) = stdin.take() {
                if let Err(e) = pump.start(ws.clone()) {
                    eprintln!("wsdump: {e}");
                    let _ = ws.close(1011, "");
                }
            }
        })
        .on_reconnect(move |ws| {
            eprintln!("wsdump: reconnected");
            if let Some(t) = &text {
                let _ = ws.send_text(t.as_str());
            }
        })
        .on_message(move |ws, msg| o2.message(ws, &msg))
        .on_ping(move |ws, p| o3.control(ws, "ping", &p))
        .on_pong(move |ws, p| o4.control(ws, "pong", &p))
        .on_close(move |ws, frame| {
            if let Some(f) = frame {
                let line = format!("close {} {}", u16::from(f.code), display::text(&f.reason));
                out.control(ws, line.trim_end(), &[]);
            }
        })
        .on_error(move |_ws, e| {
            // Without --reconnect the error that ends the run is printed by main.
            if reconnect {
                eprintln!("wsdump: {e}");
            }
        })
        .run_forever();
    match result {
        Ok(()) => Ok(()),
        Err(Error::Closed(None)) => Ok(()),
        Err(Error::Closed(Some(f))) if matches!(f.code, CloseCode::Normal | CloseCode::Away) => {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The `Client` the arguments describe.
fn client(a: &Args) -> Result<Client, String> {
    let mut c = Client::new(a.url.as_str());
    for (name, value) in &a.headers {
        c = c.header(name.as_str(), value.as_str());
    }
    if !a.subprotocols.is_empty() {
        c = c.subprotocols(a.subprotocols.iter().map(String::as_str));
    }
    if let Some(origin) = &a.origin {
        c = c.origin(origin.as_str());
    }
    if let Some(p) = &a.proxy {
        c = c.proxy(wsapp::Proxy::new(p).map_err(|e| e.to_string())?);
    }
    if a.nocert {
        c = c
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    if let Some(bytes) = a.recv_buffer {
        c = c.recv_buffer_size(bytes);
    }
    if let Some(n) = a.queue {
        c = c.queue(n);
    }
    Ok(c.overflow(match a.overflow {
        Policy::Block => Overflow::Block,
        Policy::DropNewest => Overflow::DropNewest,
        Policy::DropOldest => Overflow::DropOldest,
    }))
}

/// Ctrl-C (and SIGTERM) close with 1000 through the library; a second one exits at once.
fn on_signal(tx: AppSender) -> Result<(), String> {
    let hits = AtomicU8::new(0);
    ctrlc::set_handler(move || {
        if hits.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("wsdump: interrupted again, exiting without waiting for the close");
            std::process::exit(130);
        }
        let _ = tx.close(1000, "");
    })
    .map_err(|e| format!("cannot handle Ctrl-C: {e}"))
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| format!("cannot start a thread: {e}"))
}

/// Sends `--text`, then what stdin says, then closes on EOF.
struct StdinPump {
    text: Option<String>,
    eof_wait: Duration,
    close: (u16, String),
}

impl StdinPump {
    fn start(self, ws: AppSender) -> Result<(), String> {
        if let Some(t) = &self.text {
            send(&ws, Message::text(t.as_str()));
        }
        spawn("wsdump-stdin", move || {
            let mut stdin = std::io::stdin().lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("wsdump: stdin: {e}");
                        break;
                    }
                }
                let end = line.len() - usize::from(line.ends_with(b"\n"));
                let end = end - usize::from(line[..end].ends_with(b"\r"));
                let msg = match std::str::from_utf8(&line[..end]) {
                    Ok(text) => Message::text(text),
                    Err(_) => Message::binary(line[..end].to_vec()),
                };
                if !send(&ws, msg) {
                    return;
                }
            }
            std::thread::sleep(self.eof_wait);
            let _ = ws.close(self.close.0, &self.close.1);
        })
    }
}

/// Sends `msg`, waiting through a reconnect. `false`: the app is closed.
fn send(ws: &AppSender, msg: Message) -> bool {
    loop {
        match ws.send(msg.clone()) {
            Ok(()) => return true,
            Err(e) if e.kind() == ErrorKind::NotConnected => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.is_closed() => return false,
            Err(e) => {
                // The connection is ending; its error is reported when it has.
                log::debug!("send: {e}");
                return false;
            }
        }
    }
}

/// Prints what arrives, on stdout.
struct Output {
    raw: bool,
    verbose: u8,
    timings: bool,
    /// When the first connection opened (`--timings` counts from it).
    opened: OnceLock<Instant>,
    /// Stdout is gone (a closed pipe): print nothing more.
    broken: AtomicBool,
}

impl Output {
    fn message(&self, ws: &AppSender, msg: &Message) {
        let mut line = self.prefix();
        match msg {
            Message::Text(t) if self.raw => line.push_str(t),
            Message::Text(t) => {
                line.push_str("< text: ");
                line.push_str(&display::text(t));
            }
            Message::Binary(b) if self.raw => {
                return self.write(ws, |o| {
                    o.write_all(line.as_bytes())?;
                    o.write_all(b)?;
                    o.write_all(b"\n")
                })
            }
            Message::Binary(b) => {
                let (label, body) = display::binary(b);
                line.push_str(&format!("< {label}: {body}"));
            }
            _ => return,
        }
        if self.verbose > 0 && !self.raw {
            line.push_str(&self.compressed(ws, msg.len()));
        }
        line.push('\n');
        self.write(ws, |o| o.write_all(line.as_bytes()));
    }

    /// With `-v` on a compressed connection: the message's size and the
    /// compressed and inflated bytes received so far (the reader may be a
    /// few messages ahead of the handler, so these are totals, not this
    /// message's own).
    fn compressed(&self, ws: &AppSender, len: usize) -> String {
        let s = ws.stats();
        if s.compression.is_none() {
            return String::new();
        }
        let ratio = s
            .compression_ratio_in()
            .map_or("-".to_string(), |r| format!("{r:.1}x"));
        format!(
            " [{len} B; deflate so far: {} messages, {} B on the wire, {} B inflated, {ratio}]",
            s.compressed_in, s.compressed_in_wire, s.compressed_in_plain
        )
    }

    /// Pings, pongs and the close frame: with `-v`, never with `--raw`.
    fn control(&self, ws: &AppSender, what: &str, payload: &[u8]) {
        if self.raw || self.verbose == 0 {
            return;
        }
        let mut line = format!("{}< {what}", self.prefix());
        if !payload.is_empty() {
            line.push_str(": ");
            line.push_str(&display::binary(payload).1);
        }
        line.push('\n');
        self.write(ws, |o| o.write_all(line.as_bytes()));
    }

    fn prefix(&self) -> String {
        match (self.timings, self.opened.get()) {
            (true, Some(t)) => format!("{:.6}: ", t.elapsed().as_secs_f64()),
            _ => String::new(),
        }
    }

    /// Writes to stdout; when stdout is gone (`wsdump ... | head`), closes.
    fn write(
        &self,
        ws: &AppSender,
        f: impl FnOnce(&mut std::io::StdoutLock) -> std::io::Result<()>,
    ) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        if f(&mut std::io::stdout().lock()).is_err() {
            self.broken.store(true, Ordering::Relaxed);
            let _ = ws.close(1000, "");
        }
    }
}

/// A small `log` logger to stderr: warnings by default, everything (frames
/// included) with `-vv`. Request header values are not logged.
struct Logger;

static LOGGER: Logger = Logger;
static START: OnceLock<Instant> = OnceLock::new();

impl Logger {
    fn install(verbose: u8) {
        START.get_or_init(Instant::now);
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(if verbose >= 2 {
                log::LevelFilter::Trace
            } else {
                log::LevelFilter::Warn
            });
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        // tungstenite's frame parser traces each header bit; its frame layer
        // above already logs every frame whole.
        if !self.enabled(record.metadata())
            || record.target() == "tungstenite::protocol::frame::frame"
        {
            return;
        }
        // One line per record (tungstenite prints a frame over several).
        let mut text = record
            .args()
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // tungstenite traces the whole upgrade request: keep its first line only,
        // so that Authorization, Cookie and the like stay out of the log.
        if let Some(request) = text.strip_prefix("Request: ") {
            let first = request
                .split("\\r\\n")
                .next()
                .unwrap_or("")
                .trim_matches('"');
            text = format!("Request: {first} (headers not logged)");
        }
        text = display::text(&text).into_owned();
        if text.len() > 1000 {
            let mut cut = 1000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" ...");
        }
        let t = START.get().map_or(0.0, |s| s.elapsed().as_secs_f64());
        eprintln!("{t:10.6} {:<5} {}: {text}", record.level(), record.target());
    }

    fn flush(&self) {}
}
