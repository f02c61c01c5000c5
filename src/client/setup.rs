//! The [`Client`] setters for getting connected: request headers,
//! subprotocols and compression offered in the handshake, socket options,
//! connect and handshake timeouts, redirects, the proxy and TLS.
//!
//! They only store options on the builder: checking them is `connect`'s,
//! and they do no I/O of their own.

use std::time::Duration;

use native_tls::{Certificate, Identity, TlsConnector};

use super::{Client, ProxyChoice};
use crate::deflate::Compression;
#[cfg(doc)]
use crate::error::Error;
use crate::proxy::Proxy;

impl Client {
    /// Adds a request header. Values with CR or LF are refused at connect.
    /// Header values are never logged.
    ///
    /// The headers the handshake writes itself are refused at connect with
    /// [`Error::Config`]: `Host` (use [`host_header`](Client::host_header)),
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`
    /// and `Sec-WebSocket-Extensions` (extensions are negotiated by the
    /// client). A `Sec-WebSocket-Protocol` header is merged with
    /// [`subprotocols`](Client::subprotocols): its names are offered and
    /// checked the same way. `Origin` and `Cookie` headers give way to
    /// [`origin`](Client::origin) and [`cookie`](Client::cookie) when those are set.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").header("Authorization", "Bearer x");
    /// # let _ = c;
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Client {
        self.handshake.headers.push((name.into(), value.into()));
        self
    }

    /// Subprotocols to offer; the server must choose one of them, else
    /// [`Error::Subprotocol`]. Names given in a `Sec-WebSocket-Protocol`
    /// [`header`](Client::header) are offered after these. Defaults to none.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").subprotocols(["v2.json", "v1.json"]);
    /// # let _ = c;
    /// ```
    pub fn subprotocols<I, S>(mut self, protocols: I) -> Client
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.handshake.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The `Origin` header. Defaults to none.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").origin("https://example.com");
    /// # let _ = c;
    /// ```
    pub fn origin(mut self, origin: impl Into<String>) -> Client {
        self.handshake.origin = Some(origin.into());
        self
    }

    /// The `Cookie` header. Defaults to none.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").cookie("session=abc");
    /// # let _ = c;
    /// ```
    pub fn cookie(mut self, cookie: impl Into<String>) -> Client {
        self.handshake.cookie = Some(cookie.into());
        self
    }

    /// Overrides the `Host` header (the connection still goes to the URL's host).
    /// Defaults to the URL's host and port.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://127.0.0.1:9001/").host_header("example.com");
    /// # let _ = c;
    /// ```
    pub fn host_header(mut self, host: impl Into<String>) -> Client {
        self.handshake.host = Some(host.into());
        self
    }

    /// `SO_RCVBUF` in bytes, set before `connect` so that TCP window scaling is
    /// negotiated for it. Linux doubles the value and caps it at
    /// `net.core.rmem_max`; [`Stats::recv_buffer_size`](crate::Stats::recv_buffer_size)
    /// shows what the kernel took. Defaults to the system's default (autotuning).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").recv_buffer_size(4 << 20);
    /// # let _ = c;
    /// ```
    pub fn recv_buffer_size(mut self, bytes: usize) -> Client {
        self.socket.recv_buffer_size = Some(bytes);
        self
    }

    /// `SO_SNDBUF` in bytes, set before `connect`. Defaults to the system's default.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").send_buffer_size(1 << 20);
    /// # let _ = c;
    /// ```
    pub fn send_buffer_size(mut self, bytes: usize) -> Client {
        self.socket.send_buffer_size = Some(bytes);
        self
    }

    /// `TCP_NODELAY`. Defaults to `true`: messages are sent at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").nodelay(false);
    /// # let _ = c;
    /// ```
    pub fn nodelay(mut self, on: bool) -> Client {
        self.socket.nodelay = on;
        self
    }

    /// TCP keepalive after `idle` without traffic. Defaults to off.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").tcp_keepalive(std::time::Duration::from_secs(60));
    /// # let _ = c;
    /// ```
    pub fn tcp_keepalive(mut self, idle: Duration) -> Client {
        self.socket.keepalive = Some(idle);
        self
    }

    /// Time allowed to resolve the host name, and then to connect to each
    /// address it resolved to. Defaults to 10 s. A resolver that gives no
    /// answer within it ends the connect with [`Error::Dns`].
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").connect_timeout(std::time::Duration::from_secs(3));
    /// # let _ = c;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Client {
        self.socket.connect_timeout = timeout;
        self
    }

    /// Time allowed for the TLS handshake and the HTTP upgrade together.
    /// Defaults to 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").handshake_timeout(std::time::Duration::from_secs(3));
    /// # let _ = c;
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Client {
        self.handshake_timeout = timeout;
        self
    }

    /// permessage-deflate (RFC 7692): what to offer and how to compress, or
    /// `None` to offer nothing (every message then goes as it is). The server
    /// decides: [`WebSocket::compression`](crate::WebSocket::compression) says
    /// what it agreed. Inflated sizes count against
    /// [`max_message_size`](Client::max_message_size) and the inbox's bytes.
    /// Defaults to `Some(Compression::default())`: offered, as browsers and
    /// Node's `ws` client do.
    ///
    /// # Examples
    ///
    /// ```
    /// use wsapp::{Client, Compression};
    ///
    /// let on = Client::new("ws://h/").compression(Compression::default().threshold(1024));
    /// let off = Client::new("ws://h/").compression(None);
    /// # let _ = (on, off);
    /// ```
    pub fn compression(mut self, compression: impl Into<Option<Compression>>) -> Client {
        self.handshake.compression = compression.into();
        self
    }

    /// How many HTTP redirects (301, 302, 303, 307, 308) the handshake follows.
    /// `0` turns following off. A redirect from `wss` to `ws` is always refused.
    /// On a redirect to another origin (scheme, host or port), the
    /// `Authorization` and `Cookie` headers and the `Host` and TLS server-name
    /// overrides are not used again. Defaults to 3.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://h/").redirects(0);
    /// # let _ = c;
    /// ```
    pub fn redirects(mut self, max: u32) -> Client {
        self.redirects = max;
        self
    }

    /// Connects through this proxy (HTTP CONNECT, HTTPS, SOCKS5, SOCKS5h,
    /// SOCKS4, SOCKS4a); the environment is then not read. The socket options
    /// apply to the socket to the proxy, which carries the data.
    ///
    /// # Examples
    ///
    /// ```
    /// let proxy = wsapp::Proxy::new("http://user:secret@127.0.0.1:3128")?;
    /// let c = wsapp::Client::new("ws://example.com/").proxy(proxy);
    /// assert!(!format!("{c:?}").contains("secret"));
    /// # Ok::<(), wsapp::Error>(())
    /// ```
    pub fn proxy(mut self, proxy: Proxy) -> Client {
        self.proxy = ProxyChoice::Explicit(proxy);
        self
    }

    /// Whether to take the proxy from the environment when none is set:
    /// `wss` uses `https_proxy`, `ws` uses `http_proxy`, then `all_proxy`
    /// (lower case first, then upper case), unless `no_proxy` matches the host.
    /// Defaults to `true`; `false` connects directly.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("ws://127.0.0.1:9001/").proxy_from_env(false);
    /// # let _ = c;
    /// ```
    pub fn proxy_from_env(mut self, on: bool) -> Client {
        if !matches!(self.proxy, ProxyChoice::Explicit(_)) {
            self.proxy = if on {
                ProxyChoice::Env
            } else {
                ProxyChoice::Direct
            };
        }
        self
    }

    /// Trusts an extra root certificate, PEM or DER, besides the system's.
    /// A certificate that does not parse is reported by `connect`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pem = std::fs::read("ca.pem").unwrap();
    /// let c = wsapp::Client::new("wss://localhost/").add_root_certificate(&pem);
    /// # let _ = c;
    /// ```
    pub fn add_root_certificate(mut self, pem_or_der: &[u8]) -> Client {
        let parsed = if pem_or_der.starts_with(b"-----") {
            Certificate::from_pem(pem_or_der)
        } else {
            Certificate::from_der(pem_or_der)
        };
        match parsed {
            Ok(c) => {
                self.tls.roots.push(c);
                self.tls.changed();
            }
            Err(e) => self.deferred = Some(format!("root certificate: {e}")),
        }
        self
    }

    /// A client certificate and key for TLS client authentication.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let (cert, key) = (std::fs::read("c.pem").unwrap(), std::fs::read("k.pem").unwrap());
    /// let id = wsapp::native_tls::Identity::from_pkcs8(&cert, &key).unwrap();
    /// let c = wsapp::Client::new("wss://localhost/").identity(id);
    /// # let _ = c;
    /// ```
    pub fn identity(mut self, identity: Identity) -> Client {
        self.tls.identity = Some(identity);
        self.tls.changed();
        self
    }

    /// The name sent in SNI and checked against the certificate, when it differs
    /// from the URL's host. Defaults to the URL's host.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("wss://127.0.0.1:8443/").tls_server_name("localhost");
    /// # let _ = c;
    /// ```
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Client {
        self.tls.server_name = Some(name.into());
        self
    }

    /// **Danger**: accepts any certificate, expired, self-signed or for another
    /// host. Anyone on the path can read and change the traffic. Defaults to `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("wss://localhost/").danger_accept_invalid_certs(true);
    /// # let _ = c;
    /// ```
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Client {
        self.tls.accept_invalid_certs = accept;
        self.tls.changed();
        self
    }

    /// **Danger**: accepts a valid certificate issued for another host name.
    /// Defaults to `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = wsapp::Client::new("wss://127.0.0.1/").danger_accept_invalid_hostnames(true);
    /// # let _ = c;
    /// ```
    pub fn danger_accept_invalid_hostnames(mut self, accept: bool) -> Client {
        self.tls.accept_invalid_hostnames = accept;
        self.tls.changed();
        self
    }

    /// Uses a connector built by the caller (with [`native_tls`](crate::native_tls),
    /// re-exported); the other TLS options are then ignored. Without one, the
    /// connector is built from the options on the first `wss://` connect and
    /// shared by clones of this `Client` and their reconnects.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let tls = wsapp::native_tls::TlsConnector::new().unwrap();
    /// let c = wsapp::Client::new("wss://example.com/").tls_connector(tls);
    /// # let _ = c;
    /// ```
    pub fn tls_connector(mut self, connector: TlsConnector) -> Client {
        self.tls.connector = Some(connector);
        self.tls.changed();
        self
    }
}
