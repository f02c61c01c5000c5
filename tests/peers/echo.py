"""Python `websockets` peer for tests/interop.rs.

Listens on 127.0.0.1, on a free port, and prints that port on stdout once
listening.

    $WSAPP_PEERS/venv/bin/python echo.py [cert.pem key.pem]

Paths (as tests/peers/echo.js):
  /            echo
  /proto       sends "protocol=<chosen>" then echoes
  /fragments   "frag-" "ment-" "ed" as one fragmented text message, then
               b"\\x01\\x02" b"\\x03" as one fragmented binary message
  /ping        pings with b"hb"; once the pong is in, sends "pong-ok:hb"
  /close<N>    closes with code N and reason "reason"
  /ext         sends "ext=<negotiated Sec-WebSocket-Extensions>" then echoes

permessage-deflate is on, as websockets has it by default.
"""

import ssl
import sys
import threading

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

SUPPORTED = ["v2.json", "chat"]


def select_subprotocol(connection, offered):
    return next((p for p in SUPPORTED if p in offered), None)


def handler(ws):
    try:
        serve_path(ws)
    except ConnectionClosed:
        pass  # the client went away: expected in some tests, not worth a traceback


def serve_path(ws):
    path = ws.request.path.split("?", 1)[0]
    if path.startswith("/close") and path[6:].isdigit():
        ws.close(int(path[6:]), "reason")
        return
    if path == "/ext":
        ws.send("ext=" + str(ws.response.headers.get("Sec-WebSocket-Extensions")))
    elif path == "/proto":
        ws.send("protocol=" + str(ws.subprotocol))
    elif path == "/fragments":
        ws.send(iter(["frag-", "ment-", "ed"]))
        ws.send(iter([b"\x01\x02", b"\x03"]))
    elif path == "/ping":
        pong = ws.ping(b"hb")
        ws.send("pong-ok:hb" if pong.wait(5) else "pong-missing")
    for message in ws:
        ws.send(message)


def main():
    ctx = None
    if len(sys.argv) > 2:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    with serve(
        handler,
        "127.0.0.1",
        0,
        ssl=ctx,
        max_size=64 << 20,
        select_subprotocol=select_subprotocol,
    ) as server:
        print(server.socket.getsockname()[1], flush=True)
        # Ends when the test kills it, or when its stdin (the test) goes away.
        threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
        server.serve_forever()


if __name__ == "__main__":
    main()
