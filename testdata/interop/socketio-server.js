'use strict';
// One Socket.IO v4 app server, as a team would run three of them behind a
// sticky proxy: default transports (long-polling, then upgrade to
// WebSocket), an "echo" event answered with an ack that says which server
// answered and over which transport. It also serves a small page that uses
// the Socket.IO client from a browser.
//
// Run it as a child with IPC (the Socket.IO trial does):
//   node socketio-server.js NAME HOST PORT
// or by hand; it prints "ready NAME HOST:PORT" once it listens.

const http = require('node:http');
const { Server } = require('socket.io');

const [name, host, port] = process.argv.slice(2);

// stats is what the trial asks for over IPC: what this server saw.
function freshStats() {
  return {
    name,
    connections: 0, // Socket.IO connections (after the CONNECT packet)
    upgrades: 0, // engine.io connections that upgraded to websocket
    messages: { polling: 0, websocket: 0 },
    connectionErrors: [], // engine.io's own refusals: "Session ID unknown", ...
    statuses: {}, // HTTP status of every /socket.io/ response
    requests: 0,
    requestsWithRouteCookie: 0,
    clients: {}, // X-Real-IP as set by the proxy -> connection count
    forwardedFor: {}, // X-Forwarded-For seen on the handshake request -> count
  };
}
let stats = freshStats();

const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Socket.IO behind wsedge</title></head>
<body>
<h1>Socket.IO behind wsedge</h1>
<p>page from <b id="page">${name}</b></p>
<p>socket on <b id="server">connecting…</b> over <b id="transport">?</b></p>
<pre id="log"></pre>
<script src="/socket.io/socket.io.js"></script>
<script>
  const log = (l) => { document.getElementById('log').textContent += l + '\\n'; };
  const socket = io({ reconnection: false });
  socket.on('welcome', (w) => { document.getElementById('server').textContent = w.server; log('welcome from ' + w.server); });
  socket.io.engine.on('upgrade', (t) => { document.getElementById('transport').textContent = t.name; log('upgraded to ' + t.name); });
  socket.on('connect', () => { document.getElementById('transport').textContent = socket.io.engine.transport.name; });
  socket.on('connect_error', (e) => log('connect_error: ' + e.message));
  socket.on('disconnect', (r) => log('disconnect: ' + r));
  window.echo = (payload) => socket.timeout(5000).emitWithAck('echo', payload);
</script>
</body></html>`;

const httpServer = http.createServer((req, res) => {
  if (req.url === '/favicon.ico') {
    res.writeHead(204);
    res.end();
    return;
  }
  if (req.url === '/healthz') {
    res.end('ok\n');
    return;
  }
  if (req.url === '/' || req.url === '/index.html') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
    return;
  }
  if (!req.url.startsWith('/socket.io/')) {
    res.writeHead(404);
    res.end();
  }
});

const io = new Server(httpServer, { serveClient: true });

// Count every Socket.IO response by status. Added after engine.io has
// taken over the request event, so it sees its requests too.
httpServer.on('request', (req, res) => {
  if (!req.url.startsWith('/socket.io/')) return;
  stats.requests++;
  if (/(^|;\s*)wsedge_route=/.test(req.headers.cookie || '')) stats.requestsWithRouteCookie++;
  res.on('finish', () => {
    stats.statuses[res.statusCode] = (stats.statuses[res.statusCode] || 0) + 1;
  });
});

io.engine.on('connection_error', (err) => {
  stats.connectionErrors.push({
    code: err.code, message: err.message, url: err.req && err.req.url,
    xff: err.req && err.req.headers['x-forwarded-for'],
  });
});

io.on('connection', (socket) => {
  stats.connections++;
  const ip = socket.handshake.headers['x-real-ip'] || 'none';
  stats.clients[ip] = (stats.clients[ip] || 0) + 1;
  const xff = socket.handshake.headers['x-forwarded-for'] || 'none';
  stats.forwardedFor[xff] = (stats.forwardedFor[xff] || 0) + 1;
  socket.conn.on('upgrade', (t) => {
    if (t.name === 'websocket') stats.upgrades++;
  });
  socket.emit('welcome', { server: name, ip, transport: socket.conn.transport.name });
  socket.on('echo', (payload, ack) => {
    const transport = socket.conn.transport.name;
    stats.messages[transport] = (stats.messages[transport] || 0) + 1;
    if (typeof ack === 'function') ack({ server: name, transport, payload });
  });
});

process.on('message', (m) => {
  if (m === 'stats') process.send({ stats });
  if (m === 'reset') {
    stats = freshStats();
    process.send({ reset: true });
  }
});
process.on('disconnect', () => process.exit(0));

httpServer.listen(Number(port), host, () => {
  console.log(`ready ${name} ${host}:${port}`);
  if (process.send) process.send({ ready: true });
});
