//! Callbacks: a `WebSocketApp` in the style of Python's websocket-client.
//!
//! Starts a loopback tungstenite server that streams ticks to whoever
//! subscribes (and restarts the first connection once, with close code 1012,
//! to show a reconnect), then runs an app against it for about two seconds:
//! it subscribes in `on_open` (and again, automatically, after the reconnect),
//! prints messages in `on_message`, prints a stats line from `on_stats`, then
//! closes and exits.
//!
//! `cargo run --example callbacks`

use std::io::ErrorKind as IoKind;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use wsapp::{Backoff, Client, WebSocketApp};

const TICK: Duration = Duration::from_millis(20);
const RUN_FOR: Duration = Duration::from_secs(2);

/// One server connection: wait for `subscribe <topic>`, then send a tick every
/// 20 ms until the client closes. With `restart_after`, closes with 1012
/// ("service restart") after that many ticks.
fn serve(stream: TcpStream, restart_after: Option<u64>) {
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    // Reads time out after a tick, so one loop both listens and streams.
    let _ = ws.get_ref().set_read_timeout(Some(TICK));
    let mut topic = None;
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) => {
                // The client closes: flush tungstenite's close reply, then end.
                let _ = ws.flush();
                return;
            }
            Ok(msg) if msg.is_text() => {
                let text = msg.into_text().unwrap_or_default();
                if let Some(t) = text.strip_prefix("subscribe ") {
                    topic = Some(t.to_string());
                    let _ = ws.send(format!("subscribed to {t}").into());
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {}
            Err(_) => return, // closed by the client, or gone
        }
        if let Some(t) = &topic {
            n += 1;
            if ws.send(format!("{t} tick {n}").into()).is_err() {
                return;
            }
            if restart_after == Some(n) {
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Restart,
                    reason: "service restart".into(),
                }));
                // Read until the client's close reply ends the connection.
                while ws.read().is_ok() {}
                return;
            }
        }
    }
}

fn main() -> Result<(), wsapp::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    thread::spawn(move || {
        for (i, stream) in listener.incoming().flatten().enumerate() {
            let restart_after = (i == 0).then_some(40);
            thread::spawn(move || serve(stream, restart_after));
        }
    });

    let mut messages = 0u64;
    let app = WebSocketApp::new(Client::new(format!("ws://{addr}/")).queue(1024))
        .on_open(|ws| {
            println!("open: subscribing");
            if let Err(e) = ws.send_text("subscribe prices") {
                eprintln!("subscribe failed: {e}");
            }
        })
        // No on_reconnect: after a reconnect on_open runs again and re-subscribes.
        .on_message(move |_ws, msg| {
            messages += 1;
            println!("message {messages}: {msg}");
        })
        .on_error(|_ws, err| eprintln!("error: {err}"))
        .on_close(|_ws, frame| match frame {
            Some(f) => println!("closed: {} {:?}", u16::from(f.code), f.reason.as_str()),
            None => println!("closed without a close frame"),
        })
        .on_stats(Duration::from_millis(500), |_ws, stats| {
            println!("stats: {stats}")
        })
        .ping_interval(Duration::from_secs(1))
        .ping_timeout(Duration::from_millis(500))
        .reconnect(Backoff::exponential(
            Duration::from_millis(50),
            Duration::from_secs(2),
        ));

    let handle = app.start()?;
    thread::sleep(RUN_FOR);
    println!("final: {}", handle.stats());
    handle.close(1000, "done")?;
    handle.join()?;
    println!("done");
    Ok(())
}
