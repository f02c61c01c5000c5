//! Command-line arguments, parsed by hand (no parser dependency): long options
//! as `--name VALUE` or `--name=VALUE`, short flags clustered (`-vvn`), a short
//! option's value attached or next (`-pURL`, `-p URL`).

use std::time::Duration;

pub(crate) const HELP: &str = "\
wsdump: an interactive WebSocket client

Usage: wsdump [OPTIONS] URL

Lines typed on stdin are sent as text messages (lines that are not UTF-8 as
binary). Received messages are printed on stdout with their type:
  < text: hello
  < binary: ...         decoded when it is UTF-8, else a hex dump
  < binary (gzip 31 B -> 120 B): ...    gzip/zlib payloads are shown decompressed
On stdin EOF wsdump waits --eof-wait seconds, then closes (--close). Ctrl-C
closes with 1000. Exit status: 0 after a normal close, 1 with a one-line
`wsdump: <error>` otherwise, 2 for bad arguments.

Arguments:
  URL                      ws:// or wss:// URL to connect to

Options (as Python websocket-client's wsdump):
  -p, --proxy URL          proxy: http://, https://, socks5://, socks5h://, socks4://, socks4a://
                           (default: http_proxy/https_proxy/all_proxy unless no_proxy matches)
  -v, --verbose            -v: also print pings, pongs and the close frame;
                           -vv: also log frames and the connection's life to stderr
  -n, --nocert             do not verify the server's certificate nor its host name (danger)
  -r, --raw                print only received payloads, one per line, as they came
  -s, --subprotocols P..   subprotocols to offer (several arguments, or comma-separated)
  -o, --origin ORIGIN      the Origin header
      --eof-wait SECS      after stdin EOF, wait this long for messages before closing [default: 0]
  -t, --text TEXT          a text message to send right after connecting (and reconnecting)
      --timings            prefix printed messages with the seconds since the connection opened
      --headers \"A: b, C: d\" extra request headers (repeatable)

More:
      --recv-buffer BYTES  SO_RCVBUF, set before connect (suffixes K, M, G allowed)
      --queue N            inbox bound in messages [default: 8192]
      --overflow POLICY    block | drop-newest | drop-oldest, when the inbox is full [default: block]
      --stats SECS         print the connection's buffers and counters to stderr every SECS
      --ping SECS          send a keepalive ping every SECS; give up when nothing comes
                           back within SECS/2
      --reconnect          reconnect when the connection fails or ends
                           (exponential backoff from 0.5 s to 30 s, with jitter)
      --close CODE[:REASON]  the close frame sent on stdin EOF [default: 1000]
  -h, --help               print this help
  -V, --version            print the version
";

/// The inbox overflow policies offered on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    Block,
    DropNewest,
    DropOldest,
}

/// Everything the command line says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Args {
    pub(crate) url: String,
    pub(crate) proxy: Option<String>,
    pub(crate) verbose: u8,
    pub(crate) nocert: bool,
    pub(crate) raw: bool,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) origin: Option<String>,
    pub(crate) eof_wait: Duration,
    pub(crate) text: Option<String>,
    pub(crate) timings: bool,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) recv_buffer: Option<usize>,
    pub(crate) queue: Option<usize>,
    pub(crate) overflow: Policy,
    pub(crate) stats: Option<Duration>,
    pub(crate) ping: Option<Duration>,
    pub(crate) reconnect: bool,
    pub(crate) close: (u16, String),
}

/// What to do.
#[derive(Debug)]
pub(crate) enum Action {
    Run(Box<Args>),
    Help,
    Version,
}

/// Parses the arguments after the program name.
pub(crate) fn parse(argv: impl IntoIterator<Item = String>) -> Result<Action, String> {
    let mut argv: std::collections::VecDeque<String> = argv.into_iter().collect();
    let mut url = None;
    let mut a = Args {
        url: String::new(),
        proxy: None,
        verbose: 0,
        nocert: false,
        raw: false,
        subprotocols: Vec::new(),
        origin: None,
        eof_wait: Duration::ZERO,
        text: None,
        timings: false,
        headers: Vec::new(),
        recv_buffer: None,
        queue: None,
        overflow: Policy::Block,
        stats: None,
        ping: None,
        reconnect: false,
        close: (1000, String::new()),
    };
    let mut only_positional = false;
    while let Some(arg) = argv.pop_front() {
        if only_positional || arg == "-" || !arg.starts_with('-') {
            if url.replace(arg.clone()).is_some() {
                return Err(format!("unexpected argument {arg:?} (one URL only)"));
            }
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        // Normalise to (option name, attached value).
        let (name, mut attached) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else {
            // Short options: flags may be clustered; one taking a value ends the cluster.
            let mut chars = arg[1..].chars();
            let c = chars.next().unwrap_or('-');
            let rest: String = chars.collect();
            let long = match c {
                'p' => "proxy",
                'v' => "verbose",
                'n' => "nocert",
                'r' => "raw",
                's' => "subprotocols",
                'o' => "origin",
                't' => "text",
                'h' => "help",
                'V' => "version",
                _ => return Err(format!("unknown option -{c}")),
            };
            let takes_value = matches!(c, 'p' | 's' | 'o' | 't');
            if rest.is_empty() {
                (long.to_string(), None)
            } else if takes_value {
                (long.to_string(), Some(rest))
            } else {
                argv.push_front(format!("-{rest}"));
                (long.to_string(), None)
            }
        };
        let mut value = |what: &str| -> Result<String, String> {
            attached
                .take()
                .or_else(|| argv.pop_front())
                .ok_or_else(|| format!("--{name} needs {what}"))
        };
        match name.as_str() {
            "help" => return Ok(Action::Help),
            "version" => return Ok(Action::Version),
            "verbose" => a.verbose = a.verbose.saturating_add(1),
            "nocert" => a.nocert = true,
            "raw" => a.raw = true,
            "timings" => a.timings = true,
            "reconnect" => a.reconnect = true,
            "proxy" => a.proxy = Some(value("a proxy URL")?),
            "origin" => a.origin = Some(value("an origin")?),
            "text" => a.text = Some(value("a text")?),
            "eof-wait" => a.eof_wait = seconds(&name, &value("seconds")?, true)?,
            "stats" => a.stats = Some(seconds(&name, &value("seconds")?, false)?),
            "ping" => a.ping = Some(seconds(&name, &value("seconds")?, false)?),
            "recv-buffer" => a.recv_buffer = Some(bytes(&value("a size in bytes")?)?),
            "queue" => {
                let v = value("a number of messages")?;
                match v.parse::<usize>() {
                    Ok(n) if n > 0 => a.queue = Some(n),
                    _ => return Err(format!("--queue: {v:?} is not a positive number")),
                }
            }
            "overflow" => {
                a.overflow = match value("a policy")?.as_str() {
                    "block" => Policy::Block,
                    "drop-newest" => Policy::DropNewest,
                    "drop-oldest" => Policy::DropOldest,
                    other => {
                        return Err(format!(
                            "--overflow: {other:?} is not one of block, drop-newest, drop-oldest"
                        ))
                    }
                }
            }
            "close" => a.close = close(&value("CODE[:REASON]")?)?,
            "headers" => {
                for h in value("headers")?
                    .split(',')
                    .filter(|h| !h.trim().is_empty())
                {
                    let (n, v) = h.split_once(':').ok_or_else(|| {
                        format!("--headers: {:?} is not \"Name: value\"", h.trim())
                    })?;
                    a.headers.push((n.trim().to_string(), v.trim().to_string()));
                }
            }
            "subprotocols" => {
                // One value, then every following argument that is neither an
                // option nor the URL (which has "://").
                let mut values = vec![value("at least one subprotocol")?];
                while argv
                    .front()
                    .is_some_and(|v| !v.starts_with('-') && !v.contains("://"))
                {
                    values.extend(argv.pop_front());
                }
                a.subprotocols.extend(
                    values
                        .iter()
                        .flat_map(|v| v.split(','))
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(String::from),
                );
            }
            _ => return Err(format!("unknown option --{name}")),
        }
        if let Some(v) = attached {
            return Err(format!("--{name} takes no value (got {v:?})"));
        }
    }
    a.url = url.ok_or("a URL is required (wsdump [OPTIONS] URL)")?;
    Ok(Action::Run(Box::new(a)))
}

fn seconds(name: &str, v: &str, zero_ok: bool) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (s > 0.0 || (zero_ok && s == 0.0)) && s < 1e9 => {
            Ok(Duration::from_secs_f64(s))
        }
        _ => Err(format!(
            "--{name}: {v:?} is not a {} number of seconds",
            if zero_ok { "non-negative" } else { "positive" }
        )),
    }
}

/// `4096`, `256K`, `4M`, `1G` (binary multiples).
fn bytes(v: &str) -> Result<usize, String> {
    let (digits, shift) = match v.char_indices().last() {
        Some((i, 'k' | 'K')) => (&v[..i], 10),
        Some((i, 'm' | 'M')) => (&v[..i], 20),
        Some((i, 'g' | 'G')) => (&v[..i], 30),
        _ => (v, 0),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            format!("--recv-buffer: {v:?} is not a size in bytes (e.g. 262144, 256K, 4M)")
        })
}

/// `CODE[:REASON]`: a code a client may send (1000, 3000-4999, or the other
/// registered codes) and a reason of at most 123 bytes.
fn close(v: &str) -> Result<(u16, String), String> {
    let (code, reason) = v.split_once(':').unwrap_or((v, ""));
    let code: u16 = code
        .trim()
        .parse()
        .map_err(|_| format!("--close: {code:?} is not a close code"))?;
    let sendable = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
    if !sendable {
        return Err(format!("--close: {code} cannot be sent in a close frame"));
    }
    if reason.len() > 123 {
        return Err("--close: the reason is longer than 123 bytes".into());
    }
    Ok((code, reason.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Action::Run(a) => Ok(*a),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn python_style_options() {
        let a = run(&[
            "-vv",
            "-n",
            "-s",
            "chat",
            "v2,v3",
            "ws://h/",
            "--headers",
            "A: b, C: d:e",
            "--eof-wait=1.5",
            "-tHi",
            "--close",
            "4000:bye",
        ])
        .unwrap();
        assert_eq!(a.url, "ws://h/");
        assert_eq!(a.verbose, 2);
        assert!(a.nocert);
        assert_eq!(a.subprotocols, ["chat", "v2", "v3"]);
        assert_eq!(
            a.headers,
            [("A".into(), "b".into()), ("C".into(), "d:e".into())]
        );
        assert_eq!(a.eof_wait, Duration::from_millis(1500));
        assert_eq!(a.text.as_deref(), Some("Hi"));
        assert_eq!(a.close, (4000, "bye".into()));
    }

    #[test]
    fn clustered_flags_and_errors() {
        let a = run(&[
            "-vrv",
            "--recv-buffer",
            "256K",
            "--overflow",
            "drop-oldest",
            "ws://h",
        ])
        .unwrap();
        assert_eq!((a.verbose, a.raw), (2, true));
        assert_eq!(a.recv_buffer, Some(256 << 10));
        assert_eq!(a.overflow, Policy::DropOldest);
        assert!(run(&[]).is_err());
        assert!(run(&["ws://a", "ws://b"]).is_err());
        assert!(run(&["--close", "1005", "ws://h"]).is_err());
        assert!(run(&["--stats", "0", "ws://h"]).is_err());
        assert!(run(&["--raw=yes", "ws://h"]).is_err());
        assert!(run(&["-x", "ws://h"]).is_err());
        assert!(matches!(parse(["-h".to_string()]), Ok(Action::Help)));
    }
}
