//! Following redirects of the upgrade: which statuses redirect, where to
//! (`Location` against the current URL, `http(s)` mapped to `ws(s)`, never
//! from `wss` down to `ws`), loops and the limit, and what is not carried to
//! another origin. The connecting is the caller's, one hop at a time.

use super::HandshakeOptions;
use crate::error::{Error, Result};
use crate::tls::TlsOptions;
use crate::url::Target;
use crate::Response;

/// Whether a refusal is a redirect the handshake follows.
pub(crate) fn is_redirect(resp: &Response) -> bool {
    is_redirect_status(resp.status())
}

/// Whether `status` is one the handshake follows.
pub(crate) fn is_redirect_status(status: tungstenite::http::StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Runs `hop` from `first`, following up to `max` redirects. On a redirect to
/// another origin (scheme, host or port), credentials and the `Host` and
/// TLS-name overrides are dropped.
pub(crate) fn follow<T>(
    first: Target,
    max: u32,
    handshake: &HandshakeOptions,
    tls: &TlsOptions,
    mut hop: impl FnMut(&Target, &HandshakeOptions, &TlsOptions) -> Result<T>,
) -> Result<T> {
    let mut target = first.clone();
    let mut visited = vec![target.url.clone()];
    let mut handshake = handshake.clone();
    let mut tls = tls.clone();
    loop {
        match hop(&target, &handshake, &tls) {
            Err(Error::HandshakeRejected(resp)) if max > 0 && is_redirect(&resp) => {
                let next = redirect_target(&target, &resp)?;
                let reason = if visited.contains(&next.url) {
                    format!("redirect loop back to {}", next.url)
                } else if visited.len() > max as usize {
                    format!(
                        "more than {max} redirect{}",
                        if max == 1 { "" } else { "s" }
                    )
                } else {
                    log::debug!("redirected ({}) to {}", resp.status(), next.url);
                    if (next.secure, &next.host, next.port)
                        != (first.secure, &first.host, first.port)
                    {
                        // Credentials and overrides were meant for the first origin only.
                        handshake = handshake.for_other_origin();
                        tls.server_name = None;
                    }
                    visited.push(next.url.clone());
                    target = next;
                    continue;
                };
                return Err(Error::Redirect {
                    url: target.url,
                    reason,
                });
            }
            other => return other,
        }
    }
}

/// The next hop of a redirect: `Location` resolved against the current URL,
/// `http(s)` mapped to `ws(s)`, and never from `wss` down to `ws`.
pub(crate) fn redirect_target(current: &Target, resp: &Response) -> Result<Target> {
    let location = resp
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Redirect {
            url: current.url.clone(),
            reason: format!("{} without a Location header", resp.status()),
        })?;
    let base =
        url::Url::parse(&current.url).map_err(|e| Error::url(&current.url, e.to_string()))?;
    let mut next = base
        .join(location)
        .map_err(|e| Error::url(location, format!("redirect Location: {e}")))?;
    let scheme = match next.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(Error::url(
                location,
                format!("redirect to scheme {other:?} refused"),
            ))
        }
    };
    if current.secure && scheme == "ws" {
        return Err(Error::Redirect {
            url: current.url.clone(),
            reason: format!("refused to go from wss:// down to ws:// ({location})"),
        });
    }
    let rest = &next.as_str()[next.scheme().len()..];
    let text = format!("{scheme}{rest}");
    next = url::Url::parse(&text).map_err(|e| Error::url(&text, e.to_string()))?;
    crate::url::parse(next.as_str())
}
