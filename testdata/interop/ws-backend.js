'use strict';
// A Node.js `ws` app server with permessage-deflate, as the `ws` trials
// run it behind wsedge (ws.toml):
//   /          a blank page, so that a browser has an origin to open
//              WebSockets from
//   /healthz   200 for wsedge's health checks
//   /private   refuses the upgrade: 401 with WWW-Authenticate
//   /close     accepts, then closes at once with 4000 "bye from backend"
//   /tuned     echo, with permessage-deflate parameters of its own
//              (no context takeover, small windows)
//   anything   echo, with ws's default permessage-deflate
// Subprotocols: echo.v2 is preferred over echo.v1.
//
//   node ws-backend.js [HOST PORT]   (default 127.0.3.1 9001)

const http = require('node:http');
const { WebSocketServer } = require('ws');

function choose(offered) {
  if (offered.has('echo.v2')) return 'echo.v2';
  if (offered.has('echo.v1')) return 'echo.v1';
  return false;
}

// start listens and resolves with { seen, close }; seen records what the
// backend was offered and what it answered, for the trials to compare
// with what the client got.
function start(host = '127.0.3.1', port = 9001) {
  const seen = { offers: [], answers: [], pings: [], closes: [], messages: 0 };
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.end('ok\n');
      return;
    }
    if (req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ws backend</title></head><body><h1>ws backend</h1></body></html>\n');
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const common = { noServer: true, maxPayload: 64 << 20, handleProtocols: choose };
  const plain = new WebSocketServer({ ...common, perMessageDeflate: true });
  const tuned = new WebSocketServer({
    ...common,
    perMessageDeflate: {
      serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 11,
    },
  });
  for (const wss of [plain, tuned]) {
    wss.on('headers', (headers) => {
      seen.answers.push(headers.find((h) => /^sec-websocket-extensions:/i.test(h)) || 'none');
    });
    wss.on('connection', (ws, req) => {
      seen.offers.push({
        path: req.url, extensions: req.headers['sec-websocket-extensions'], protocols: req.headers['sec-websocket-protocol'],
        origin: req.headers.origin,
      });
      if (req.url === '/close') {
        ws.close(4000, 'bye from backend');
        return;
      }
      ws.on('message', (data, isBinary) => {
        seen.messages++;
        ws.send(data, { binary: isBinary });
      });
      ws.on('ping', (data) => seen.pings.push(data.toString()));
      ws.on('close', (code, reason) => seen.closes.push({ code, reason: reason.toString() }));
    });
  }
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/private') {
      socket.end('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="trial"\r\nContent-Type: text/plain\r\n'
        + 'Content-Length: 13\r\nConnection: close\r\n\r\nsign in first');
      return;
    }
    const wss = req.url === '/tuned' ? tuned : plain;
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve({
    seen,
    close: () => new Promise((r) => {
      for (const wss of [plain, tuned]) {
        for (const c of wss.clients) c.terminate();
        wss.close();
      }
      server.closeAllConnections();
      server.close(r);
    }),
  })));
}

module.exports = { start };

if (require.main === module) {
  const [host, port] = process.argv.slice(2);
  start(host, port ? Number(port) : undefined).then(() => console.log('ready'));
}
