//! Socket layer: resolve, set socket2 options, connect with a timeout, probe.
//!
//! Owns everything about the TCP socket before and beside the WebSocket:
//! `SO_RCVBUF`/`SO_SNDBUF` set *before* `connect` (so the window scale is
//! negotiated for them), `TCP_NODELAY`, keepalive, the effective sizes read
//! back, and the kernel receive-queue probe. It does not read or write data.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
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
/// by the connect timeout. Returns a blocking stream.
pub(crate) fn connect(host: &str, port: u16, opts: &SocketOptions) -> Result<TcpStream> {
    // std's resolver has no timeout; an IP literal skips it.
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| Error::Dns {
            host: host.to_string(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Dns {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        });
    }
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
