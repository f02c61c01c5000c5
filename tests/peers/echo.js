// Node `ws` peer for tests/interop.rs. Listens on 127.0.0.1, on a free port,
// prints that port on stdout once listening.
//
//   NODE_PATH=$WSAPP_PEERS/node_modules node echo.js [cert.pem key.pem]
//
// Paths:
//   /            echo (text stays text, binary stays binary)
//   /proto       sends "protocol=<chosen>" then echoes; chooses the first of
//                SUPPORTED that the client offered
//   /fragments   sends "frag-" "ment-" "ed" as one fragmented text message
//                (a ping between fragments), then [1,2] [3] as one binary message
//   /ping        pings with "hb"; on the pong sends "pong-ok:<payload>"
//   /close<N>    closes with code N and reason "reason"
//   /ext         sends "ext=<negotiated Sec-WebSocket-Extensions>" then echoes
//
// permessage-deflate is on (threshold 0: every message is compressed).
'use strict';
const fs = require('fs');
const { WebSocketServer } = require('ws');

const [cert, key] = process.argv.slice(2);
const SUPPORTED = ['v2.json', 'chat'];
const onHttp = (req, res) => res.end('ok\n'); // a plain GET gets 200 (else it hangs)
const server = cert
  ? require('https').createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, onHttp)
  : require('http').createServer(onHttp);

const wss = new WebSocketServer({
  server,
  maxPayload: 64 << 20,
  perMessageDeflate: { threshold: 0 },
  handleProtocols: (offered) => SUPPORTED.find((p) => offered.has(p)) ?? false,
});

wss.on('connection', (ws, req) => {
  ws.on('error', () => {});
  const path = new URL(req.url, 'http://peer').pathname;
  const echo = () => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  const close = /^\/close(\d+)$/.exec(path);
  if (close) {
    ws.close(Number(close[1]), 'reason');
  } else if (path === '/ext') {
    ws.send('ext=' + ws.extensions);
    echo();
  } else if (path === '/proto') {
    ws.send('protocol=' + ws.protocol);
    echo();
  } else if (path === '/fragments') {
    ws.send('frag-', { fin: false });
    ws.ping('mid');
    ws.send('ment-', { fin: false });
    ws.send('ed', { fin: true });
    ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
    ws.send(Buffer.from([3]), { binary: true, fin: true });
    echo();
  } else if (path === '/ping') {
    ws.on('pong', (data) => ws.send('pong-ok:' + data.toString()));
    ws.ping('hb');
    echo();
  } else {
    echo();
  }
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});
// Ends when the test kills it, or when its stdin (the test) goes away.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
