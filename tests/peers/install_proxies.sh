#!/usr/bin/env bash
# Installs the real proxies tests/proxy.rs runs on 127.0.0.1: squid (HTTP CONNECT,
# Basic auth through basic_ncsa_auth), microsocks (SOCKS5) and openssl (to hash
# the test password); for tests/proxy_socks4a_5h.rs also OpenSSH (`ssh -D` is the
# SOCKS4a proxy, sshd runs as its ProxyCommand, no daemon) and unshare/mount
# (microsocks with its own /etc/hosts). Idempotent: installs only what is
# missing. Needs root and apt-get.
#
#   bash tests/peers/install_proxies.sh
set -euo pipefail

missing=()
command -v squid >/dev/null 2>&1 || [[ -x /usr/sbin/squid ]] || missing+=(squid)
command -v microsocks >/dev/null 2>&1 || missing+=(microsocks)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[[ -x /usr/sbin/sshd ]] || command -v sshd >/dev/null 2>&1 || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v mount >/dev/null 2>&1 || missing+=(mount)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install_proxies: squid, microsocks, openssl, openssh, unshare and mount already installed"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "install_proxies: apt-get not found; install ${missing[*]} by hand" >&2; exit 1; }
SUDO=
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install_proxies: not root and no sudo; install ${missing[*]} by hand" >&2; exit 1; }
    SUDO=sudo
fi
echo "install_proxies: installing ${missing[*]}"
$SUDO apt-get update -qq
# Debian's policy-rc.d (if any) keeps apt from starting squid as a service; the
# tests start their own instances on free ports.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install_proxies: done"
