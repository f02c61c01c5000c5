#!/usr/bin/env bash
# Installs the third-party WebSocket servers tests/interop.rs runs on 127.0.0.1:
# Node's `ws` (npm) and Python's `websockets` (pip, in a venv). Idempotent: does
# nothing when both are already there. Needs node/npm and python3 with venv.
#
#   bash tests/peers/install_interop.sh          # into ${WSAPP_PEERS:-$HOME/.cache/wsapp-peers}
#   WSAPP_PEERS=/some/dir bash tests/peers/install_interop.sh
#
# Layout: $DIR/node_modules/ws, $DIR/venv/bin/python (with websockets importable).
set -euo pipefail

DIR=${WSAPP_PEERS:-${HOME:-/tmp}/.cache/wsapp-peers}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

have_node() { [[ -f "$DIR/node_modules/ws/package.json" ]] && node -e "require('$DIR/node_modules/ws')" >/dev/null 2>&1; }
have_py() { [[ -x "$DIR/venv/bin/python" ]] && "$DIR/venv/bin/python" -c 'import websockets.sync.server' >/dev/null 2>&1; }

# One installer at a time (tests may call this from parallel test threads or binaries).
exec 9>"$DIR/.install.lock"
if command -v flock >/dev/null 2>&1; then flock -w 300 9; fi

if have_node; then
    echo "install_interop: node ws present in $DIR"
else
    command -v npm >/dev/null 2>&1 || { echo "install_interop: npm not found (install nodejs/npm)" >&2; exit 1; }
    echo "install_interop: npm install ws@8 into $DIR"
    [[ -f "$DIR/package.json" ]] || echo '{"name":"wsapp-peers","private":true}' >"$DIR/package.json"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error ws@8
    have_node || { echo "install_interop: ws still not loadable" >&2; exit 1; }
fi

if have_py; then
    echo "install_interop: python websockets present in $DIR/venv"
else
    PY=$(command -v python3 || true)
    [[ -n "$PY" ]] || { echo "install_interop: python3 not found" >&2; exit 1; }
    echo "install_interop: creating venv and pip install websockets into $DIR/venv"
    rm -rf "$DIR/venv"
    "$PY" -m venv "$DIR/venv"
    "$DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check 'websockets>=13'
    have_py || { echo "install_interop: websockets still not importable" >&2; exit 1; }
fi
echo "install_interop: ready in $DIR"
