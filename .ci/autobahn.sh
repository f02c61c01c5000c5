#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing server against examples/autobahn_client.rs
# and checks the report. Installs what it needs (idempotent) on first use.
#
#   bash .ci/autobahn.sh
#
# Every case runs, 12.* and 13.* (permessage-deflate, which wsapp implements
# below tungstenite) included: see .ci/autobahn/fuzzingserver.json.
#
# Environment (all optional):
#   AUTOBAHN_VENV     Python 2.7 virtualenv for wstest (default ~/.cache/wsapp-autobahn-venv)
#   AUTOBAHN_PYTHON2  Python 2.7 interpreter to build it from (default: pyenv's 2.7.x, else python2.7)
#   AUTOBAHN_PORT     port for the fuzzing server on 127.0.0.1 (default: a free one)
#   AUTOBAHN_CLIENT   command run instead of `cargo run --release --example autobahn_client --`
#                     (the server URL is appended)
#   AUTOBAHN_TIMEOUT  seconds the client may run (default 3600: 12.* and 13.* take long in wstest)
#   AUTOBAHN_KEEP=1   keep the work dir (reports/, wstest.log) even when all cases pass
#
# The last line is `autobahn: N passed, M failed`; exit status is non-zero if any
# case failed, no case ran, or something broke on the way.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CONF_DIR=$ROOT/.ci/autobahn
REQS=$CONF_DIR/requirements-py27.txt
SUITE_PKG=autobahntestsuite==25.10.1
# Bump when the install or the patch below changes, to force a reinstall.
INSTALL_REV=1
VENV=${AUTOBAHN_VENV:-$HOME/.cache/wsapp-autobahn-venv}

log() { echo "autobahn: $*"; }
die() { echo "autobahn: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }

command -v python3 >/dev/null || die "python3 not found"

# --- install -------------------------------------------------------------------

find_python2() {
    if [[ -n ${AUTOBAHN_PYTHON2:-} ]]; then
        echo "$AUTOBAHN_PYTHON2"
        return
    fi
    local root=${PYENV_ROOT:-}
    if [[ -z $root ]] && command -v pyenv >/dev/null; then
        root=$(pyenv root)
    fi
    root=${root:-$HOME/.pyenv}
    local p
    for p in "$root"/versions/2.7.*/bin/python; do
        if [[ -x $p ]]; then
            echo "$p"
            return
        fi
    done
    if command -v python2.7 >/dev/null; then
        command -v python2.7
        return
    fi
    die "no Python 2.7 found (autobahntestsuite is Python 2 code): set AUTOBAHN_PYTHON2"
}

# What the venv was built from; a mismatch forces a rebuild.
install_stamp() {
    { echo "rev $INSTALL_REV $SUITE_PKG"; cat "$REQS"; } | sha256sum | cut -d' ' -f1
}

FUZZING_PY=
venv_ok() {
    [[ -x $VENV/bin/wstest && -f $VENV/.wsapp-stamp ]] || return 1
    [[ $(cat "$VENV/.wsapp-stamp") == "$(install_stamp)" ]] || return 1
    FUZZING_PY=$("$VENV/bin/python" -c 'import autobahntestsuite.fuzzing as f; print(f.__file__.replace(".pyc", ".py"))' 2>/dev/null) || return 1
    grep -q 'listenWS(factory, sslContext, interface = "127.0.0.1")' "$FUZZING_PY"
}

install_suite() {
    local py2 pylog
    py2=$(find_python2)
    pylog=$(mktemp)
    log "installing autobahntestsuite into $VENV (python2: $py2, log: $pylog)"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore
    if ! "$py2" -m virtualenv --version >/dev/null 2>&1; then
        "$py2" -m pip install -q 'virtualenv<20.22' >>"$pylog" 2>&1 \
            || { tail -30 "$pylog"; die "could not install virtualenv for $py2"; }
    fi
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    {
        "$py2" -m virtualenv -q "$VENV" &&
        # autobahntestsuite declares none of its dependencies usably: install the
        # pinned set first, then the suite itself without dependencies.
        "$VENV/bin/pip" install -r "$REQS" &&
        "$VENV/bin/pip" install --no-deps "$SUITE_PKG"
    } >>"$pylog" 2>&1 || { tail -30 "$pylog"; die "pip install failed (full log: $pylog)"; }

    # wstest -m fuzzingserver binds on all interfaces and has no option for it:
    # make it listen on loopback only.
    FUZZING_PY=$("$VENV/bin/python" -c 'import autobahntestsuite.fuzzing as f; print(f.__file__.replace(".pyc", ".py"))')
    # (The file has CRLF line ends.)
    [[ $(grep -cF 'listenWS(factory, sslContext)' "$FUZZING_PY") == 1 ]] \
        || die "cannot patch $FUZZING_PY: listenWS call not found exactly once"
    sed -i 's/listenWS(factory, sslContext)/listenWS(factory, sslContext, interface = "127.0.0.1")/' "$FUZZING_PY"
    # A .pyc compiled in the same second would be taken as fresh: drop it.
    rm -f "${FUZZING_PY}c"
    install_stamp >"$VENV/.wsapp-stamp"
    rm -f "$pylog"
    venv_ok || die "installed venv $VENV does not check out"
}

t0=$(now)
if venv_ok; then
    log "using $VENV"
else
    install_suite
    log "installed in $(since "$t0") s"
fi

# --- build the client ------------------------------------------------------------

if [[ -n ${AUTOBAHN_CLIENT:-} ]]; then
    read -r -a CLIENT <<<"$AUTOBAHN_CLIENT"
else
    t0=$(now)
    cargo build --release --example autobahn_client
    log "client built in $(since "$t0") s"
    CLIENT=(cargo run -q --release --example autobahn_client --)
fi

# --- run -------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsapp-autobahn.XXXXXX")
SERVER_PID=
KEEP=${AUTOBAHN_KEEP:-0}
cleanup() {
    local rc=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $rc == 0 && $KEEP != 1 ]]; then
        rm -rf "$WORK"
    else
        echo "autobahn: reports and server log kept in $WORK" >&2
    fi
}
trap cleanup EXIT

if [[ -n ${AUTOBAHN_PORT:-} ]]; then
    PORT=$AUTOBAHN_PORT
else
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
URL=ws://127.0.0.1:$PORT
python3 - "$CONF_DIR/fuzzingserver.json" "$WORK/fuzzingserver.json" "$URL" <<'EOF'
import json, sys
src, dst, url = sys.argv[1:]
with open(src) as f:
    spec = json.load(f)
spec["url"] = url
with open(dst, "w") as f:
    json.dump(spec, f, indent=2)
EOF

# --webport 0: no embedded web server (it would listen on 0.0.0.0:8080).
(cd "$WORK" && exec "$VENV/bin/wstest" -m fuzzingserver -s fuzzingserver.json --webport 0) \
    >"$WORK/wstest.log" 2>&1 &
SERVER_PID=$!

ready=0
for _ in $(seq 100); do   # 100 x 0.2 s = 20 s
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/wstest.log" >&2
        die "fuzzing server exited early"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.2
done
[[ $ready == 1 ]] || { cat "$WORK/wstest.log" >&2; die "fuzzing server not listening on $URL after 20 s"; }

# It must listen on loopback only.
if command -v ss >/dev/null; then
    listeners=$(ss -Hltnp | grep "pid=$SERVER_PID," || true)
    [[ -n $listeners ]] || die "no listening socket found for wstest (pid $SERVER_PID)"
    if awk '{print $4}' <<<"$listeners" | grep -qv '^127\.0\.0\.1:'; then
        echo "$listeners" >&2
        die "wstest listens on a non-loopback address"
    fi
    log "fuzzing server (pid $SERVER_PID) listening on $(awk '{print $4}' <<<"$listeners" | paste -sd' ')"
else
    log "ss not found: cannot check the server listens on loopback only"
fi

t0=$(now)
client_rc=0
timeout "${AUTOBAHN_TIMEOUT:-3600}" "${CLIENT[@]}" "$URL" || client_rc=$?
log "client ran in $(since "$t0") s (exit $client_rc)"

kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=

if [[ $client_rc != 0 ]]; then
    [[ $client_rc == 124 ]] && log "client timed out after ${AUTOBAHN_TIMEOUT:-3600} s"
    log "client failed (exit $client_rc)"
fi
check_rc=0
python3 "$CONF_DIR/check_report.py" "$WORK/reports/clients/index.json" wsapp || check_rc=$?
if [[ $client_rc != 0 ]]; then
    exit "$client_rc"
fi
exit "$check_rc"
