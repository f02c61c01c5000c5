//! Proxies from the environment: `http_proxy`, `https_proxy`, `all_proxy`
//! (lower case, then upper case) and `no_proxy` matching.
//!
//! Owns which proxy, if any, the environment names for a target. It reads
//! variables only (through a lookup function, so tests pass their own); it
//! never opens a socket, resolves a name or speaks a proxy protocol, and it
//! never logs a variable's value (it may hold a password).

use std::net::IpAddr;

use super::Proxy;
use crate::error::Error;
use crate::url::Target;

/// The proxy for `target` from the process environment, if any; see [`from_env_with`].
pub(crate) fn from_env(target: &Target) -> Option<Proxy> {
    from_env_with(target, |name| std::env::var(name).ok())
}

/// The proxy for `target` from the variables `var` looks up.
///
/// `wss` uses `https_proxy`, `ws` uses `http_proxy`, then both fall back to
/// `all_proxy`; each lower-case name is read before its upper-case one, and
/// an empty value counts as unset. `HTTP_PROXY` is skipped when
/// `REQUEST_METHOD` is set (a CGI program, where a request's `Proxy:` header
/// arrives as `HTTP_PROXY`: "httpoxy"). A value without `://` is an
/// `http://` proxy. A value that is not a usable proxy URL is skipped with a
/// warning that names the variable, not the value. `no_proxy` (then
/// `NO_PROXY`) is checked first, see [`no_proxy_matches`].
pub(crate) fn from_env_with(
    target: &Target,
    var: impl Fn(&str) -> Option<String>,
) -> Option<Proxy> {
    let get = |name: &str| {
        var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(no_proxy) = get("no_proxy").or_else(|| get("NO_PROXY")) {
        if no_proxy_matches(&no_proxy, &target.host, target.port) {
            log::debug!("no proxy for {}: no_proxy matches", target.authority());
            return None;
        }
    }
    let cgi = var("REQUEST_METHOD").is_some();
    let names: [&str; 4] = if target.secure {
        ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    for name in names {
        let Some(value) = get(name) else { continue };
        if name == "HTTP_PROXY" && cgi {
            log::warn!("ignoring HTTP_PROXY: REQUEST_METHOD is set (CGI); use http_proxy");
            continue;
        }
        let value = if value.contains("://") {
            value
        } else {
            format!("http://{value}")
        };
        match Proxy::new(&value) {
            Ok(proxy) => {
                log::debug!(
                    "proxy for {}: {} (from {name})",
                    target.authority(),
                    proxy.redacted()
                );
                return Some(proxy);
            }
            Err(e) => {
                // The reason only: the value may hold a password.
                let reason = match e {
                    Error::Url { reason, .. } => reason,
                    other => other.to_string(),
                };
                log::warn!("ignoring {name}: not a usable proxy URL: {reason}");
            }
        }
    }
    None
}

/// Whether a `no_proxy` list exempts `host:port` from the proxy.
///
/// Entries are comma-separated; spaces around them are ignored and names
/// compare case-insensitively, with trailing dots dropped. An entry is:
/// - `*`: every host;
/// - a domain, with or without a leading `.` or `*.`: `example.com` and
///   `.example.com` both match `example.com` and `a.example.com`, not
///   `badexample.com` (curl's behaviour);
/// - an IPv4 or IPv6 literal (`10.1.2.3`, `::1`, `[::1]`) or CIDR block
///   (`10.0.0.0/8`, `::1/128`, `[fd00::]/8`), matching only IP-literal hosts of
///   the same family (names are not resolved for this);
/// - any of these followed by `:port` (`example.com:8080`, `[::1]:443`), which
///   then matches that port only.
///
/// Unparsable entries are ignored.
pub(crate) fn no_proxy_matches(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let host_ip = host.parse::<IpAddr>().ok();
    no_proxy
        .split(',')
        .filter_map(|entry| NoProxyEntry::parse(entry.trim()))
        .any(|entry| entry.matches(&host, host_ip, port))
}

#[derive(Debug, PartialEq)]
enum NoProxyRule {
    All,
    Domain(String),
    Net(IpAddr, u8),
}

#[derive(Debug, PartialEq)]
struct NoProxyEntry {
    rule: NoProxyRule,
    port: Option<u16>,
}

impl NoProxyEntry {
    fn parse(entry: &str) -> Option<NoProxyEntry> {
        if entry.is_empty() {
            return None;
        }
        if entry == "*" {
            return Some(NoProxyEntry {
                rule: NoProxyRule::All,
                port: None,
            });
        }
        // Split off the port and, for IPs, the prefix length.
        let (addr, prefix, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (addr, rest) = rest.split_once(']')?;
            let (prefix, port) = match rest.strip_prefix('/') {
                Some(p) => match p.split_once(':') {
                    Some((len, port)) => (Some(len), Some(port)),
                    None => (Some(p), None),
                },
                None if rest.is_empty() => (None, None),
                None => (None, Some(rest.strip_prefix(':')?)),
            };
            (addr, prefix, port)
        } else {
            let (addr, port) = match entry.matches(':').count() {
                0 => (entry, None),
                1 => entry.split_once(':').map(|(a, p)| (a, Some(p)))?,
                _ => (entry, None), // a bare IPv6 literal: no port possible
            };
            match addr.split_once('/') {
                Some((addr, len)) => (addr, Some(len), port),
                None => (addr, None, port),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok()?),
            None => None,
        };
        let rule = match addr.parse::<IpAddr>() {
            Ok(ip) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len = match prefix {
                    Some(len) => len.parse::<u8>().ok().filter(|l| *l <= max)?,
                    None => max,
                };
                NoProxyRule::Net(ip, len)
            }
            Err(_) if prefix.is_some() => return None,
            Err(_) => {
                let d = addr
                    .strip_prefix("*.")
                    .or_else(|| addr.strip_prefix('.'))
                    .unwrap_or(addr);
                let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
                if d.is_empty() || d.contains(['*', '/', '[', ']']) {
                    return None;
                }
                NoProxyRule::Domain(d)
            }
        };
        Some(NoProxyEntry { rule, port })
    }

    fn matches(&self, host: &str, host_ip: Option<IpAddr>, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.rule, host_ip) {
            (NoProxyRule::All, _) => true,
            (NoProxyRule::Domain(d), None) => {
                host == d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }
            (NoProxyRule::Net(IpAddr::V4(net), len), Some(IpAddr::V4(ip))) => {
                in_net(u32::from(*net).into(), u32::from(ip).into(), *len, 32)
            }
            (NoProxyRule::Net(IpAddr::V6(net), len), Some(IpAddr::V6(ip))) => {
                in_net(u128::from(*net), u128::from(ip), *len, 128)
            }
            _ => false,
        }
    }
}

/// Whether the first `len` of the low `bits` bits of `a` and `b` agree.
fn in_net(a: u128, b: u128, len: u8, bits: u32) -> bool {
    let shift = bits - u32::from(len);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn no_proxy_table() {
        // no_proxy, host, port, expected
        let cases: &[(&str, &str, u16, bool)] = &[
            ("", "example.com", 80, false),
            (" , ,", "example.com", 80, false),
            ("*", "example.com", 80, true),
            ("*", "10.0.0.1", 80, true),
            ("*", "::1", 80, true),
            ("other.org, *", "example.com", 80, true),
            // exact names and domain suffixes (curl)
            ("example.com", "example.com", 80, true),
            ("example.com", "a.example.com", 80, true),
            ("example.com", "a.b.example.com", 80, true),
            ("example.com", "badexample.com", 80, false),
            ("example.com", "example.com.evil.org", 80, false),
            ("example.com", "com", 80, false),
            (".example.com", "example.com", 80, true),
            (".example.com", "a.example.com", 80, true),
            (".example.com", "badexample.com", 80, false),
            ("*.example.com", "a.example.com", 80, true),
            ("*.example.com", "badexample.com", 80, false),
            ("EXAMPLE.com", "Example.COM", 80, true),
            ("example.com.", "a.example.com", 80, true),
            ("example.com", "a.example.com.", 80, true),
            ("localhost", "localhost", 9001, true),
            ("  foo.org ,  example.com  ", "x.example.com", 80, true),
            ("foo.org,bar.org", "example.com", 80, false),
            // ports
            ("example.com:8080", "example.com", 8080, true),
            ("example.com:8080", "example.com", 80, false),
            ("example.com:8080", "a.example.com", 8080, true),
            ("example.com:x", "example.com", 80, false),
            ("example.com:99999", "example.com", 80, false),
            // IPv4
            ("127.0.0.1", "127.0.0.1", 80, true),
            ("127.0.0.1", "127.0.0.2", 80, false),
            ("127.0.0.1:9001", "127.0.0.1", 9001, true),
            ("127.0.0.1:9001", "127.0.0.1", 9002, false),
            ("10.0.0.0/8", "10.200.3.4", 80, true),
            ("10.0.0.0/8", "11.0.0.1", 80, false),
            ("10.0.0.0/8:443", "10.1.1.1", 443, true),
            ("10.0.0.0/8:443", "10.1.1.1", 80, false),
            ("192.168.1.0/24", "192.168.1.255", 80, true),
            ("192.168.1.0/24", "192.168.2.0", 80, false),
            ("0.0.0.0/0", "8.8.8.8", 80, true),
            ("0.0.0.0/0", "::1", 80, false),
            ("10.0.0.0/33", "10.0.0.1", 80, false),
            ("10.0.0.0/x", "10.0.0.1", 80, false),
            ("0.0.1", "127.0.0.1", 80, false),
            ("127.0.0.1", "localhost", 80, false),
            ("example.com/8", "example.com", 80, false),
            // IPv6
            ("::1", "::1", 80, true),
            ("::1", "[::1]", 80, true),
            ("[::1]", "::1", 80, true),
            ("[::1]:9001", "::1", 9001, true),
            ("[::1]:9001", "::1", 9002, false),
            ("::1/128", "::1", 80, true),
            ("::1/128", "::2", 80, false),
            ("fd00::/8", "fd12:3456::1", 80, true),
            ("fd00::/8", "fe80::1", 80, false),
            ("[fd00::]/8", "fd00::5", 80, true),
            ("[fd00::]/8:443", "fd00::5", 443, true),
            ("[fd00::]/8:443", "fd00::5", 80, false),
            ("::/0", "2001:db8::1", 80, true),
            ("::/0", "10.0.0.1", 80, false),
            ("::1/129", "::1", 80, false),
            ("[::1", "::1", 80, false),
            ("127.0.0.1", "::ffff:127.0.0.1", 80, false),
            ("::1", "localhost", 80, false),
        ];
        for &(no_proxy, host, port, expected) in cases {
            assert_eq!(
                no_proxy_matches(no_proxy, host, port),
                expected,
                "no_proxy={no_proxy:?} host={host} port={port}"
            );
        }
    }

    fn target(url: &str) -> Target {
        crate::url::parse(url).unwrap()
    }

    fn env_proxy(url: &str, vars: &[(&str, &str)]) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env_with(&target(url), |name| vars.get(name).cloned()).map(|p| p.to_string())
    }

    #[test]
    fn env_table() {
        type Vars = &'static [(&'static str, &'static str)];
        // url, variables, expected proxy (Display)
        #[rustfmt::skip]
        let cases: &[(&str, Vars, Option<&str>)] = &[
            ("ws://h/", &[], None),
            ("ws://h/", &[("http_proxy", "http://p:1")], Some("http://p:1")),
            ("wss://h/", &[("http_proxy", "http://p:1")], None),
            ("wss://h/", &[("https_proxy", "http://p:2")], Some("http://p:2")),
            ("ws://h/", &[("https_proxy", "http://p:2")], None),
            ("ws://h/", &[("HTTP_PROXY", "http://P:1")], Some("http://p:1")),
            ("wss://h/", &[("HTTPS_PROXY", "http://P:2")], Some("http://p:2")),
            // lower case first
            ("ws://h/", &[("http_proxy", "http://lo:1"), ("HTTP_PROXY", "http://up:1")], Some("http://lo:1")),
            ("wss://h/", &[("https_proxy", "http://lo:1"), ("HTTPS_PROXY", "http://up:1")], Some("http://lo:1")),
            ("ws://h/", &[("all_proxy", "socks5h://lo:1"), ("ALL_PROXY", "socks5h://up:1")], Some("socks5h://lo:1")),
            // scheme-specific before all_proxy
            ("ws://h/", &[("all_proxy", "socks5://a:1"), ("HTTP_PROXY", "http://s:1")], Some("http://s:1")),
            ("wss://h/", &[("ALL_PROXY", "socks5://a:1")], Some("socks5://a:1")),
            ("ws://h/", &[("all_proxy", "socks4a://a:1")], Some("socks4a://a:1")),
            // empty counts as unset
            ("ws://h/", &[("http_proxy", ""), ("HTTP_PROXY", "http://up:1")], Some("http://up:1")),
            ("ws://h/", &[("http_proxy", "  "), ("all_proxy", "http://all:1")], Some("http://all:1")),
            // no scheme means http://
            ("ws://h/", &[("http_proxy", "p:3128")], Some("http://p:3128")),
            ("ws://h/", &[("http_proxy", "u:pw@p:3128")], Some("http://u:***@p:3128")),
            ("ws://h/", &[("http_proxy", "p")], Some("http://p:80")),
            // unparsable: skipped, the next one is used
            ("ws://h/", &[("http_proxy", "ftp://p:1"), ("HTTP_PROXY", "http://ok:1")], Some("http://ok:1")),
            ("ws://h/", &[("http_proxy", "http://p:1/path")], None),
            ("ws://h/", &[("http_proxy", "http://u:pw@p:notaport"), ("all_proxy", "socks5h://s:1")], Some("socks5h://s:1")),
            // no_proxy applies to every kind
            ("ws://h/", &[("http_proxy", "http://p:1"), ("no_proxy", "h")], None),
            ("ws://a.h:9/", &[("http_proxy", "http://p:1"), ("NO_PROXY", ".h")], None),
            ("wss://h/", &[("all_proxy", "socks5://p:1"), ("no_proxy", "*")], None),
            ("ws://127.0.0.1:9001/", &[("all_proxy", "socks5://p:1"), ("no_proxy", "127.0.0.0/8")], None),
            ("ws://[::1]:9001/", &[("http_proxy", "p:1"), ("no_proxy", "::1")], None),
            ("ws://h:9001/", &[("http_proxy", "p:1"), ("no_proxy", "h:9002")], Some("http://p:1")),
            ("ws://other/", &[("http_proxy", "p:1"), ("no_proxy", "h")], Some("http://p:1")),
            // lower-case no_proxy wins, even when it does not match; empty counts as unset
            ("ws://h/", &[("http_proxy", "p:1"), ("no_proxy", "x"), ("NO_PROXY", "h")], Some("http://p:1")),
            ("ws://h/", &[("http_proxy", "p:1"), ("no_proxy", ""), ("NO_PROXY", "h")], None),
            // httpoxy: HTTP_PROXY is not trusted in a CGI program
            ("ws://h/", &[("HTTP_PROXY", "http://evil:1"), ("REQUEST_METHOD", "GET")], None),
            ("ws://h/", &[("http_proxy", "http://ok:1"), ("REQUEST_METHOD", "GET")], Some("http://ok:1")),
            ("wss://h/", &[("HTTPS_PROXY", "http://ok:1"), ("REQUEST_METHOD", "GET")], Some("http://ok:1")),
        ];
        for (url, vars, expected) in cases {
            assert_eq!(env_proxy(url, vars).as_deref(), *expected, "{url} {vars:?}");
        }
    }
}
