//! Autobahn|Testsuite client: runs every case of a `wstest -m fuzzingserver`
//! and echoes back each text and binary message, then asks the server to
//! write its reports.
//!
//! ```text
//! cargo run --release --example autobahn_client -- ws://127.0.0.1:9001
//! ```
//!
//! Driven by `.ci/autobahn.sh`. For now this runs on plain `tungstenite`
//! (the crate's own dependency) so that the suite's infrastructure can be
//! checked end to end; it is to be ported to the `wsapp` API.

use std::process::ExitCode;

use tungstenite::client::connect_with_config;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

const AGENT: &str = "wsapp";

/// Limits for the case connections: case 9.* sends messages of up to 16 MiB,
/// in frames of up to 16 MiB.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(32 << 20))
}

fn case_count(base: &str) -> Result<u32, String> {
    let url = format!("{base}/getCaseCount");
    let (mut ws, _) =
        connect_with_config(url.as_str(), None, 0).map_err(|e| format!("{url}: {e}"))?;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let n = t
                    .trim()
                    .parse()
                    .map_err(|e| format!("case count {:?}: {e}", t.as_str()))?;
                let _ = ws.close(None);
                // Let the closing handshake finish; errors here do not matter.
                while ws.read().is_ok() {}
                return Ok(n);
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{url}: no case count: {e}")),
        }
    }
}

/// Runs one case: echoes text and binary messages until the connection ends.
/// Any error ends the case; in fuzzing cases errors are expected.
fn run_case(base: &str, case: u32) {
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    let mut ws = match connect_with_config(url.as_str(), Some(config()), 0) {
        Ok((ws, _)) => ws,
        Err(e) => {
            eprintln!("case {case}: connect: {e}");
            return;
        }
    };
    loop {
        let result = match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => ws.send(msg),
            // Pings are answered and closes acknowledged by tungstenite itself.
            Ok(_) => Ok(()),
            Err(_) => break,
        };
        if result.is_err() {
            break;
        }
    }
}

fn update_reports(base: &str) -> Result<(), String> {
    let url = format!("{base}/updateReports?agent={AGENT}");
    let (mut ws, _) =
        connect_with_config(url.as_str(), None, 0).map_err(|e| format!("{url}: {e}"))?;
    let _ = ws.close(None);
    // Wait for the server's close so the reports are written before we exit.
    while ws.read().is_ok() {}
    Ok(())
}

fn main() -> ExitCode {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
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
    if let Err(e) = update_reports(base) {
        eprintln!("autobahn_client: {e}");
        return ExitCode::FAILURE;
    }
    println!("autobahn_client: done");
    ExitCode::SUCCESS
}
