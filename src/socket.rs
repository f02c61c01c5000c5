//! Socket layer: resolve (with a timeout), set socket2 options, connect with a
//! timeout, probe.
//!
//! Owns everything about the TCP socket before and beside the WebSocket:
//! `SO_RCVBUF`/`SO_SNDBUF` set *before* `connect` (so the window scale is
//! negotiated for them), `TCP_NODELAY`, keepalive, the effective sizes read
//! back, and the kernel receive-queue probe. It does not read or write data.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::error::{Error, Phase, Result};

/// Socket options, applied before connecting.
#[derive(Debug, Clone)]
pub(crate) struct SocketOptions {
    pub(crate) recv_buffer_size: Option<usize>,
    pub(crate) send_buffer_size: Option<usize>,
    pub(crate) nodelay: bool,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) connect_timeout: Duration,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            recv_buffer_size: None,
            send_buffer_size: None,
            nodelay: true,
            keepalive: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Resolves `host` and connects to each address in turn, each attempt bounded
/// by the connect timeout (as is the resolving). Returns a blocking stream.
pub(crate) fn connect(host: &str, port: u16, opts: &SocketOptions) -> Result<TcpStream> {
    let addrs = resolve(host, port, opts.connect_timeout)?;
    let mut last = None;
    for addr in &addrs {
        match connect_addr(*addr, opts) {
            Ok(stream) => {
                log::debug!("connected to {addr}");
                return Ok(stream);
            }
            Err(e) => {
                log::debug!("connect to {addr} failed: {e}");
                last = Some((*addr, e));
            }
        }
    }
    let (addr, source) = last.expect("at least one address was tried");
    let tried = addrs.len();
    let failed = |source| Error::Connect {
        addr,
        tried,
        source,
    };
    // With one address a timeout is the phase's; with several, say which was last.
    Err(if tried == 1 {
        Error::from_io(Phase::Connect, source, failed)
    } else {
        failed(source)
    })
}

/// `host`'s addresses, at least one: an IP literal at once, a name from the
/// system resolver, waited for at most `timeout`.
pub(crate) fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_string();
    resolve_with(host, timeout, move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
    })
}

/// Runs `lookup` on a thread of its own and waits for it at most `timeout`:
/// std's resolver (`getaddrinfo`) has no timeout, and a resolver that never
/// answers must not hold `connect` (or a hub's connect thread) forever. A
/// lookup given up on finishes on its thread, within the system resolver's
/// own timeouts, and its answer is dropped.
fn resolve_with(
    host: &str,
    timeout: Duration,
    lookup: impl FnOnce() -> io::Result<Vec<SocketAddr>> + Send + 'static,
) -> Result<Vec<SocketAddr>> {
    let dns = |source| Error::Dns {
        host: host.to_string(),
        source,
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("wsapp-dns".into())
        .spawn(move || {
            let _ = tx.send(lookup());
        })
        .map_err(dns)?;
    let addrs = match rx.recv_timeout(timeout) {
        Ok(answer) => answer.map_err(dns)?,
        Err(_) => {
            return Err(dns(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer from the system resolver within {timeout:?} \
                     (Client::connect_timeout); check its configuration, or connect to an IP address"
                ),
            )))
        }
    };
    if addrs.is_empty() {
        return Err(dns(io::Error::new(io::ErrorKind::NotFound, "no addresses")));
    }
    Ok(addrs)
}

fn connect_addr(addr: SocketAddr, opts: &SocketOptions) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Before connect: the SYN carries the window scale chosen for this buffer.
    if let Some(size) = opts.recv_buffer_size {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = opts.send_buffer_size {
        socket.set_send_buffer_size(size)?;
    }
    socket.set_tcp_nodelay(opts.nodelay)?;
    if let Some(idle) = opts.keepalive {
        socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?;
    }
    socket.connect_timeout(&addr.into(), opts.connect_timeout)?;
    Ok(socket.into())
}

/// Effective buffer sizes after connect, as the kernel reports them
/// (Linux doubles what was asked, for its own bookkeeping).
pub(crate) fn buffer_sizes(stream: &TcpStream) -> (Option<usize>, Option<usize>) {
    let sock = SockRef::from(stream);
    (sock.recv_buffer_size().ok(), sock.send_buffer_size().ok())
}

/// The descriptor of a connection's socket, for probes from any thread
/// without the connection's lock and without a duplicate descriptor (one
/// per connection counts against the open-files limit at 10,000 connections).
///
/// It does not own the socket: the owner (the connection's `Io`, which lives
/// as long as whoever holds the probe) keeps it open. Probes only ask the
/// kernel (`poll`, `FIONREAD`); nothing reads, writes or closes through it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
}

impl Probe {
    /// A probe of `stream`'s descriptor; `stream`'s owner must outlive it.
    pub(crate) fn of(stream: &TcpStream) -> Probe {
        let _ = stream;
        Probe {
            #[cfg(unix)]
            fd: std::os::fd::AsRawFd::as_raw_fd(stream),
        }
    }
}

/// Bytes waiting in the kernel's receive queue (`FIONREAD`, the `Recv-Q` of `ss -tn`).
pub(crate) fn recv_queue(probe: &Probe) -> Option<usize> {
    sys::recv_queue(probe)
}

/// Waits until the socket is readable (or has an error or hang-up), at most
/// `timeout`. Only waits: reading is the connection layer's.
pub(crate) fn wait_readable(probe: &Probe, timeout: Duration) {
    sys::wait_readable(probe, timeout)
}

#[cfg(unix)]
#[allow(unsafe_code)]
mod sys {
    use super::Probe;
    use std::time::Duration;

    pub(super) fn wait_readable(probe: &Probe, timeout: Duration) {
        let mut fd = libc::pollfd {
            fd: probe.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, and the count says one; the timespec is a
        // live local. An error or EINTR just ends the wait early; the caller
        // looks again.
        #[cfg(target_os = "linux")]
        unsafe {
            // ppoll: microseconds count here (a `recv_timeout` of 300 µs).
            let ts = libc::timespec {
                tv_sec: timeout.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            libc::ppoll(&mut fd, 1, &ts, std::ptr::null());
        }
        #[cfg(not(target_os = "linux"))]
        // SAFETY: as above.
        unsafe {
            let ms = timeout.as_millis().clamp(1, libc::c_int::MAX as u128) as libc::c_int;
            libc::poll(&mut fd, 1, ms);
        }
    }

    pub(super) fn recv_queue(probe: &Probe) -> Option<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which points to
        // a live local; the fd stays open while the probe's owner lives (see `Probe`).
        let rc = unsafe { libc::ioctl(probe.fd, libc::FIONREAD, &mut n) };
        (rc == 0 && n >= 0).then_some(n as usize)
    }
}

#[cfg(not(unix))]
mod sys {
    pub(super) fn wait_readable(_probe: &super::Probe, timeout: std::time::Duration) {
        // No readiness wait here: a short sleep, then the caller reads again.
        std::thread::sleep(timeout.min(std::time::Duration::from_micros(100)));
    }

    pub(super) fn recv_queue(_probe: &super::Probe) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn a_resolver_that_does_not_answer_is_given_up_at_the_timeout() {
        let start = std::time::Instant::now();
        let err = resolve_with("stuck.example", Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(vec![])
        })
        .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "waited {:?}",
            start.elapsed()
        );
        assert_eq!(err.kind(), crate::ErrorKind::Dns);
        let text = err.to_string();
        assert!(
            text.contains("stuck.example") && text.contains("connect_timeout"),
            "{text}"
        );
    }

    #[test]
    fn resolving_gives_the_lookup_its_answer_or_its_error() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let got = resolve_with("h", Duration::from_secs(5), move || Ok(vec![addr])).unwrap();
        assert_eq!(got, vec![addr]);
        let err = resolve_with("h", Duration::from_secs(5), || {
            Err(io::Error::new(io::ErrorKind::NotFound, "nxdomain"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("nxdomain"), "{err}");
        let err = resolve_with("h", Duration::from_secs(5), || Ok(vec![])).unwrap_err();
        assert!(err.to_string().contains("no addresses"), "{err}");
    }

    #[test]
    fn ip_literals_need_no_resolver() {
        let zero = Duration::ZERO;
        assert_eq!(
            resolve("127.0.0.1", 80, zero).unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("::1", 80, zero).unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]", 80, zero).unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
    }

    #[test]
    fn rcvbuf_is_set_before_connect_and_read_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let opts = SocketOptions {
            recv_buffer_size: Some(256 << 10),
            ..SocketOptions::default()
        };
        let stream = connect("127.0.0.1", port, &opts).unwrap();
        let (rcv, _) = buffer_sizes(&stream);
        assert!(rcv.unwrap() >= 256 << 10, "{rcv:?}");
        let (mut peer, _) = listener.accept().unwrap();
        peer.write_all(&[7; 1000]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while recv_queue(&Probe::of(&stream)) != Some(1000) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(recv_queue(&Probe::of(&stream)), Some(1000));
    }

    #[test]
    fn refused_connect_names_the_address() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = connect("127.0.0.1", port, &SocketOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
