//! Starting external peers (squid, microsocks, sshd) for the proxy tests:
//! finding their binaries (installing them once if missing), free ports and
//! readiness.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

/// `bin` from PATH or the sbin directories; runs
/// `tests/peers/install_proxies.sh` (once per test binary) if it is missing.
pub fn find_binary(bin: &str) -> Option<PathBuf> {
    static INSTALL: Once = Once::new();
    let lookup = || {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(bin))
            .find(|p| p.is_file())
    };
    if let Some(p) = lookup() {
        return Some(p);
    }
    INSTALL.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/install_proxies.sh");
        let status = Command::new("bash").arg(script).status();
        eprintln!("tests/peers/install_proxies.sh: {status:?}");
    });
    lookup()
}

/// A port that was free a moment ago on 127.0.0.1 (for a peer that cannot
/// take port 0); callers retry when it is taken in between.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Waits until `port` accepts TCP connections; false if `child` exits first
/// or `within` passes.
pub fn wait_ready(child: &mut Child, port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
            .is_ok()
        {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}
