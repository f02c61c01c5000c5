//! Autobahn|Testsuite client: runs every case of a `wstest -m fuzzingserver`
//! through wsapp's public API (a `WebSocketApp` whose handler echoes each
//! text and binary message with its `AppSender`), then asks the server to
//! write its reports.
//!
//! ```text
//! cargo run --release --example autobahn_client -- ws://127.0.0.1:9001
//! ```
//!
//! Driven by `.ci/autobahn.sh`.

use std::process::ExitCode;
use std::time::Duration;

use wsapp::{Client, Message, WebSocketApp};

const AGENT: &str = "wsapp";

/// Case 9.* sends messages of up to 16 MiB, in frames of up to 16 MiB.
fn client(url: &str) -> Client {
    Client::new(url)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(32 << 20))
        .queue_bytes(128 << 20)
        .close_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(5))
}

fn case_count(base: &str) -> Result<u32, String> {
    let url = format!("{base}/getCaseCount");
    let ws = client(&url).connect().map_err(|e| format!("{url}: {e}"))?;
    loop {
        match ws.recv() {
            Ok(Message::Text(t)) => {
                return t
                    .trim()
                    .parse()
                    .map_err(|e| format!("case count {:?}: {e}", t.as_str()));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{url}: no case count: {e}")),
        }
    }
}

/// Runs one case: echoes text and binary messages until the connection ends.
/// Errors end the case; in fuzzing cases they are expected.
fn run_case(base: &str, case: u32) {
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    let result = WebSocketApp::new(client(&url))
        .on_message(|ws, msg| {
            let _ = ws.send(msg);
        })
        .on_error(|_, _| {})
        .run_forever();
    if let Err(e) = result {
        if !e.is_closed() {
            log_case(case, &e);
        }
    }
}

fn log_case(case: u32, e: &wsapp::Error) {
    if std::env::var_os("AUTOBAHN_VERBOSE").is_some() {
        eprintln!("case {case}: {e}");
    }
}

fn update_reports(base: &str) -> Result<(), String> {
    let url = format!("{base}/updateReports?agent={AGENT}");
    let ws = client(&url).connect().map_err(|e| format!("{url}: {e}"))?;
    // Wait for the server's close so the reports are written before we exit.
    ws.close(1000, "").map_err(|e| format!("{url}: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_string());
    let base = base.trim_end_matches('/');
    let count = match case_count(base) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("autobahn_client: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("autobahn_client: running {count} cases against {base}");
    for case in 1..=count {
        run_case(base, case);
    }
    match update_reports(base) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autobahn_client: {e}");
            ExitCode::FAILURE
        }
    }
}
