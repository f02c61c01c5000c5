//! Proxy: connects to a WebSocket server through a proxy (HTTP CONNECT,
//! HTTPS, SOCKS5, SOCKS5h, SOCKS4, SOCKS4a), sends one text message and
//! prints the reply.
//!
//! The proxy is `--proxy URL`, else the environment's (`https_proxy` for
//! `wss://`, `http_proxy` for `ws://`, then `all_proxy`; `no_proxy` applies).
//!
//! ```text
//! cargo run --example proxy -- --proxy socks5h://127.0.0.1:1080 ws://127.0.0.1:9001/
//! http_proxy=http://user:secret@127.0.0.1:3128 cargo run --example proxy -- ws://127.0.0.1:9001/
//! ```

use std::process::ExitCode;
use std::time::Duration;

use wsapp::{Client, Proxy};

const USAGE: &str = "usage: proxy [--proxy URL] [--message TEXT] ws[s]://host[:port]/path
  --proxy URL      http://, https://, socks5://, socks5h://, socks4:// or socks4a://
                   (user:password@ allowed); without it, https_proxy (wss),
                   http_proxy (ws) or all_proxy is used, and no_proxy is honoured
  --message TEXT   the text to send (default: \"hello through the proxy\")";

const ENV_VARS: [&str; 6] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

struct Args {
    url: String,
    proxy: Option<String>,
    message: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut proxy, mut message) = (None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--proxy" => proxy = Some(args.next().ok_or("--proxy needs a URL")?),
            "--message" => message = Some(args.next().ok_or("--message needs a text")?),
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other if url.is_none() => url = Some(other.to_string()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Args {
        url: url.ok_or("missing the ws:// or wss:// URL")?,
        proxy,
        message: message.unwrap_or_else(|| "hello through the proxy".to_string()),
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("proxy: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut client = Client::new(&args.url)
        .connect_timeout(Duration::from_secs(10))
        .handshake_timeout(Duration::from_secs(10));
    match &args.proxy {
        Some(url) => match Proxy::new(url) {
            // Display hides the password.
            Ok(proxy) => {
                println!("proxy: {proxy} (from --proxy)");
                client = client.proxy(proxy);
            }
            Err(e) => {
                eprintln!("proxy: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            // The values may hold passwords: name the variables only.
            let set: Vec<&str> = ENV_VARS
                .into_iter()
                .filter(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
                .collect();
            if set.is_empty() {
                eprintln!(
                    "proxy: no proxy: pass --proxy URL or set http_proxy, https_proxy or all_proxy"
                );
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
            println!("proxy: from the environment ({} set)", set.join(", "));
        }
    }

    let ws = match client.connect() {
        Ok(ws) => ws,
        Err(e) => {
            // Proxy errors name the proxy (without credentials).
            eprintln!("proxy: connect failed ({:?}): {e}", e.kind());
            return ExitCode::FAILURE;
        }
    };
    println!("connected to {} via {}", args.url, ws.peer_addr());
    let result = (|| -> wsapp::Result<()> {
        ws.send_text(args.message.clone())?;
        match ws.recv_timeout(Duration::from_secs(10))? {
            Some(reply) => println!("got: {reply}"),
            None => println!("no reply within 10 s"),
        }
        ws.close(1000, "bye")
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
