//! Proxies that resolve the target's name themselves: `socks5h://` (microsocks)
//! and `socks4a://` (OpenSSH `ssh -D`), against names only the proxy can
//! resolve. The proxy runs in its own mount namespace (`unshare -m`) with a
//! hosts file bind-mounted on /etc/hosts, so a unique `*.test` name resolves
//! for it and not for this process: `socks5h`/`socks4a` reach the echo server,
//! while `socks5`/`socks4` (the client resolves) fail with `ErrorKind::Dns`.
//!
//! `ssh -D` needs no listening sshd: `sshd -i` is ssh's ProxyCommand.
//! Missing binaries are installed by `tests/peers/install_proxies.sh`.
//!
//! Skips: when the sandbox does not allow the mount namespace (or bind mount),
//! or sshd cannot run for lack of a privilege, the test prints a `SKIPPED`
//! line and passes, also under `CI` (the capability is missing, not broken).
//! Any other failure to set a peer up (a binary still missing after the install
//! script, a peer that does not start) is a skip only when `CI` is not set.

mod common;

use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::peers::{self, free_port};
use wsapp::{Client, ErrorKind, Message, Proxy};

const TIMEOUT: Duration = Duration::from_secs(10);

// --- skipping -----------------------------------------------------------------

/// Why a peer could not be set up.
#[derive(Debug)]
enum Unavailable {
    /// The sandbox lacks a capability (namespaces, mounts, privileges): a
    /// skip is a pass, with or without `CI`.
    Capability(String),
    /// Anything else (a binary missing, a peer that did not start): a skip
    /// without `CI`, a failure with it.
    Setup(String),
}

/// Prints a SKIPPED line past the test harness's capture, or panics under
/// `CI` when the cause is not a missing capability.
fn skip(test: &str, why: Unavailable) {
    let line = match why {
        Unavailable::Capability(reason) => {
            format!("SKIPPED {test}: capability missing in this environment: {reason}")
        }
        Unavailable::Setup(reason) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {reason} (CI is set: not skipping)"
            );
            format!("SKIPPED {test} (CI not set): {reason}")
        }
    };
    // Written to the real stderr, not through eprintln!, which the harness captures.
    let _ = writeln!(std::io::stderr(), "\n{line}");
}

macro_rules! or_skip {
    ($test:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(why) => {
                skip($test, why);
                return;
            }
        }
    };
}

/// Error output that says a privilege or kernel feature is refused.
fn is_capability_error(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "operation not permitted",
        "permission denied",
        "function not implemented",
        "invalid argument",
        "cannot open /proc/self/uid_map",
        "cannot open /proc/self/setgroups",
    ]
    .iter()
    .any(|p| text.contains(p))
        && !text.contains("permission denied (publickey")
}

// --- peers ------------------------------------------------------------------

/// `bin`, installed if need be.
fn find_binary(bin: &str) -> Result<PathBuf, Unavailable> {
    peers::find_binary(bin).ok_or_else(|| {
        Unavailable::Setup(format!(
            "{bin} is missing (run tests/peers/install_proxies.sh)"
        ))
    })
}

/// A unique name for this process and call.
fn unique(what: &str) -> String {
    static INSTANCE: AtomicUsize = AtomicUsize::new(0);
    format!(
        "wsapp-{what}-{}-{}",
        std::process::id(),
        INSTANCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(what));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A proxy process this test started; on drop it is killed by its id and
/// waited for, then its files are removed.
struct Peer {
    child: Child,
    port: u16,
    stderr: PathBuf,
    /// Its config, keys and logs; removed after it is stopped.
    _dir: Option<TempDir>,
}

impl Peer {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn child_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hosts file where `name` (and `localhost`) is 127.0.0.1, and a name this
/// process must not be able to resolve.
struct HostsFile {
    path: PathBuf,
    name: String,
}

impl HostsFile {
    fn new(dir: &TempDir) -> HostsFile {
        let name = format!("{}.test", unique("only-proxy"));
        let path = dir.path("hosts");
        std::fs::write(&path, format!("127.0.0.1 localhost\n127.0.0.1 {name}\n")).unwrap();
        HostsFile { path, name }
    }
}

/// How to run a command with `hosts` on /etc/hosts in a private mount
/// namespace: the command prefix (`unshare [-r] -m sh -c ... sh HOSTS`), to
/// which the program and its arguments are appended. Probed once per process:
/// as root `unshare -m`, else (or if that is refused) in a user namespace too.
fn namespace_prefix(hosts: &Path) -> Result<Vec<String>, Unavailable> {
    static PROBE: Mutex<Option<Result<Vec<String>, String>>> = Mutex::new(None);
    let unshare = find_binary("unshare")?;
    find_binary("mount")?;
    let mut cached = PROBE.lock().unwrap();
    if cached.is_none() {
        *cached = Some(probe_namespace(&unshare));
    }
    match cached.as_ref().unwrap() {
        Ok(flags) => {
            let mut prefix = vec![unshare.display().to_string()];
            prefix.extend(flags.iter().cloned());
            prefix.extend(
                [
                    "sh",
                    "-c",
                    "mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"",
                    "sh",
                ]
                .map(String::from),
            );
            prefix.push(hosts.display().to_string());
            Ok(prefix)
        }
        Err(reason) if is_capability_error(reason) => Err(Unavailable::Capability(reason.clone())),
        Err(reason) => Err(Unavailable::Setup(reason.clone())),
    }
}

/// Tries `unshare -m` then `unshare -r -m`: the flags of the first that can
/// bind-mount a file on /etc/hosts, and leaves this process's /etc/hosts alone.
fn probe_namespace(unshare: &Path) -> Result<Vec<String>, String> {
    let dir = TempDir::new("nsprobe");
    let marker = unique("probe");
    let hosts = dir.path("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 {marker}\n")).unwrap();
    let mut reasons = Vec::new();
    for flags in [vec!["-m"], vec!["-r", "-m"]] {
        let out = Command::new(unshare)
            .args(&flags)
            .args([
                "sh",
                "-c",
                "mount --bind \"$1\" /etc/hosts && cat /etc/hosts",
                "sh",
            ])
            .arg(&hosts)
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                reasons.push(format!("unshare {}: {e}", flags.join(" ")));
                continue;
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && stdout.contains(&marker) {
            let ours = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            assert!(
                !ours.contains(&marker),
                "the bind mount leaked into this process's /etc/hosts"
            );
            return Ok(flags.into_iter().map(String::from).collect());
        }
        reasons.push(format!(
            "`unshare {} sh -c 'mount --bind HOSTS /etc/hosts'`: {}; {}",
            flags.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Err(reasons.join(" | "))
}

/// microsocks on a free port, in a mount namespace where `hosts` is /etc/hosts.
fn microsocks_with_hosts(dir: TempDir, hosts: &Path) -> Result<Peer, Unavailable> {
    let bin = find_binary("microsocks")?;
    let prefix = namespace_prefix(hosts)?;
    let stderr = dir.path("microsocks.stderr");
    for _attempt in 0..3 {
        let port = free_port();
        let child = Command::new(&prefix[0])
            .args(&prefix[1..])
            .arg(&bin)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-b",
                "127.0.0.1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start unshare");
        let mut peer = Peer {
            child,
            port,
            stderr: stderr.clone(),
            _dir: None,
        };
        if peers::wait_ready(&mut peer.child, port, TIMEOUT) {
            peer._dir = Some(dir);
            return Ok(peer);
        }
        eprintln!(
            "microsocks did not start on port {port}; retrying. Its stderr:\n{}",
            peer.stderr()
        );
    }
    Err(Unavailable::Setup(
        "microsocks did not start in 3 attempts".into(),
    ))
}

/// `ssh -D` on a free port (SOCKS4, 4a, 5 and 5h), its sshd run as the
/// ProxyCommand (`sshd -i`, no daemon, no port). With `hosts`, ssh and sshd
/// run in a mount namespace where it is /etc/hosts, and sshd may open
/// channels to its extra name.
fn ssh_socks(dir: TempDir, hosts: Option<&HostsFile>) -> Result<Peer, Unavailable> {
    let ssh = find_binary("ssh")?;
    let sshd = find_binary("sshd")?;
    let keygen = find_binary("ssh-keygen")?;
    let prefix = match hosts {
        Some(h) => namespace_prefix(&h.path)?,
        None => Vec::new(),
    };
    let user = Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .ok_or_else(|| Unavailable::Setup("`id -un` failed".into()))?;
    // sshd's privilege separation directory (the Debian package's tmpfiles.d
    // creates it at boot; containers often have none).
    if !Path::new("/run/sshd").is_dir() {
        if let Err(e) = std::fs::create_dir_all("/run/sshd") {
            eprintln!("mkdir /run/sshd: {e}");
        }
    }
    let (hk, uk) = (dir.path("hk"), dir.path("uk"));
    for key in [&hk, &uk] {
        let out = Command::new(&keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(key)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-keygen");
        assert!(
            out.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ak = dir.path("ak");
    std::fs::copy(dir.path("uk.pub"), &ak).unwrap();
    let mut permit = "127.0.0.1:* localhost:*".to_string();
    if let Some(h) = hosts {
        permit.push_str(&format!(" {}:*", h.name));
    }
    let conf = dir.path("sshd_config");
    std::fs::write(
        &conf,
        format!(
            "HostKey {}\n\
             AuthorizedKeysFile {}\n\
             UsePAM no\n\
             StrictModes no\n\
             PidFile none\n\
             PermitRootLogin prohibit-password\n\
             AllowTcpForwarding local\n\
             PermitOpen {permit}\n",
            hk.display(),
            ak.display()
        ),
    )
    .unwrap();
    let sshd_log = dir.path("sshd.log");
    // sshd checks its config before anything else: a bad one is our bug.
    let check = Command::new(&sshd)
        .args(["-t", "-f"])
        .arg(&conf)
        .output()
        .expect("run sshd -t");
    if !check.status.success() {
        let text = String::from_utf8_lossy(&check.stderr).trim().to_string();
        let why = format!("sshd -t: {text}");
        return Err(if is_capability_error(&text) {
            Unavailable::Capability(why)
        } else {
            Unavailable::Setup(why)
        });
    }
    let stderr = dir.path("ssh.stderr");
    let mut last = String::new();
    for _attempt in 0..3 {
        let port = free_port();
        let proxy_command = format!(
            "{} -i -f {} -E {}",
            sshd.display(),
            conf.display(),
            sshd_log.display()
        );
        let (program, pre_args) = match prefix.split_first() {
            Some((p, rest)) => (p.clone(), rest.to_vec()),
            None => (ssh.display().to_string(), Vec::new()),
        };
        let mut cmd = Command::new(program);
        cmd.args(pre_args);
        if !prefix.is_empty() {
            cmd.arg(&ssh);
        }
        cmd.args([
            "-N",
            "-F",
            "/dev/null",
            "-D",
            &format!("127.0.0.1:{port}"),
            "-i",
        ])
        .arg(&uk)
        .arg("-o")
        .arg(format!("ProxyCommand={proxy_command}"))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "LogLevel=ERROR",
            &format!("{user}@localhost"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
        let child = cmd.spawn().expect("start ssh");
        let mut peer = Peer {
            child,
            port,
            stderr: stderr.clone(),
            _dir: None,
        };
        if peers::wait_ready(&mut peer.child, port, TIMEOUT) {
            peer._dir = Some(dir);
            return Ok(peer);
        }
        let _ = peer.child.kill();
        let _ = peer.child.wait();
        last = format!(
            "ssh -D did not start: ssh: {} sshd: {}",
            peer.stderr().trim(),
            std::fs::read_to_string(&sshd_log)
                .unwrap_or_default()
                .trim()
        );
        eprintln!("{last} (port {port}); retrying");
        if !last.contains("ddress already in use") {
            break;
        }
    }
    Err(if is_capability_error(&last) {
        Unavailable::Capability(last)
    } else {
        Unavailable::Setup(last)
    })
}

// --- helpers ----------------------------------------------------------------

fn client(url: &str, proxy: &str) -> Client {
    Client::new(url)
        .proxy(Proxy::new(proxy).unwrap())
        .connect_timeout(TIMEOUT)
        .handshake_timeout(TIMEOUT)
}

/// Connects, checks the connection runs through the proxy, and echoes.
fn assert_echo(client: &Client, proxy_port: u16, context: &str) {
    let ws = client
        .connect()
        .unwrap_or_else(|e| panic!("{context}: connect: {e}"));
    assert_eq!(
        ws.peer_addr().port(),
        proxy_port,
        "{context}: not through the proxy"
    );
    for i in 0..3 {
        let text = format!("{context} {i}");
        ws.send_text(text.clone()).unwrap();
        let got = ws.recv_timeout(TIMEOUT).unwrap().expect("echo in time");
        assert_eq!(got, Message::text(text), "{context}");
    }
    let bytes = vec![0u8, 1, 2, 255];
    ws.send_binary(bytes.clone()).unwrap();
    let got = ws.recv_timeout(TIMEOUT).unwrap().expect("echo in time");
    assert_eq!(got, Message::binary(bytes), "{context}");
}

/// The client resolves `name` itself and cannot: `ErrorKind::Dns` naming it.
fn assert_dns_error(client: &Client, name: &str, context: &str) {
    let err = match client.connect() {
        Ok(_) => panic!("{context}: connected; expected a DNS error"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Dns, "{context}: {text}");
    assert!(text.contains(name), "{context}: {text}");
}

/// The premise of these tests: this process cannot resolve `name`.
fn assert_unresolvable_here(name: &str) {
    if let Ok(addrs) = (name, 80).to_socket_addrs() {
        let addrs: Vec<_> = addrs.collect();
        panic!("{name} resolves in this process ({addrs:?}): the test proves nothing");
    }
}

// --- tests ------------------------------------------------------------------

#[test]
fn socks5h_reaches_a_name_only_the_proxy_resolves() {
    const TEST: &str = "socks5h_reaches_a_name_only_the_proxy_resolves";
    let dir = TempDir::new("socks5h");
    let hosts = HostsFile::new(&dir);
    let mut socks = or_skip!(TEST, microsocks_with_hosts(dir, &hosts.path));
    assert_unresolvable_here(&hosts.name);
    let echo = common::echo_server();
    let url = format!("ws://{}:{}/", hosts.name, echo.port());

    let proxy = format!("socks5h://127.0.0.1:{}", socks.port);
    assert_echo(&client(&url, &proxy), socks.port, "socks5h");

    // socks5: the client resolves the name, and cannot.
    let proxy = format!("socks5://127.0.0.1:{}", socks.port);
    assert_dns_error(&client(&url, &proxy), &hosts.name, "socks5");

    // The proxy itself is fine with what the client can resolve.
    let proxy = format!("socks5://127.0.0.1:{}", socks.port);
    assert_echo(
        &client(&echo.url(), &proxy),
        socks.port,
        "socks5 to 127.0.0.1",
    );
    assert!(socks.child_alive(), "microsocks exited: {}", socks.stderr());
}

#[test]
fn socks4a_through_ssh_dynamic_forwarding() {
    const TEST: &str = "socks4a_through_ssh_dynamic_forwarding";
    let ssh = or_skip!(TEST, ssh_socks(TempDir::new("ssh4a"), None));
    let echo = common::echo_server();
    let proxy = format!("socks4a://127.0.0.1:{}", ssh.port);
    let url = format!("ws://localhost:{}/", echo.port());
    assert_echo(&client(&url, &proxy), ssh.port, "socks4a to localhost");
    // An IP literal goes out as plain SOCKS4 under socks4a:// too.
    assert_echo(
        &client(&echo.url(), &proxy),
        ssh.port,
        "socks4a to 127.0.0.1",
    );
    let proxy = format!("socks4://127.0.0.1:{}", ssh.port);
    assert_echo(&client(&url, &proxy), ssh.port, "socks4 to localhost");
}

#[test]
fn socks4a_sends_the_name_for_the_proxy_to_resolve() {
    const TEST: &str = "socks4a_sends_the_name_for_the_proxy_to_resolve";
    let dir = TempDir::new("ssh4ans");
    let hosts = HostsFile::new(&dir);
    let ssh = or_skip!(TEST, ssh_socks(dir, Some(&hosts)));
    assert_unresolvable_here(&hosts.name);
    let echo = common::echo_server();
    let url = format!("ws://{}:{}/", hosts.name, echo.port());

    let port = ssh.port;
    assert_echo(
        &client(&url, &format!("socks4a://127.0.0.1:{port}")),
        port,
        "socks4a",
    );
    assert_echo(
        &client(&url, &format!("socks5h://127.0.0.1:{port}")),
        port,
        "socks5h through ssh",
    );
    assert_dns_error(
        &client(&url, &format!("socks4://127.0.0.1:{port}")),
        &hosts.name,
        "socks4",
    );
    assert_dns_error(
        &client(&url, &format!("socks5://127.0.0.1:{port}")),
        &hosts.name,
        "socks5 through ssh",
    );
}
