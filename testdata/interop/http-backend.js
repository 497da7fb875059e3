'use strict';
// A small Node.js app server for the everyday trials: a blank page,
// server-sent events,
// an upload that answers with its length and SHA-256, a download that says
// its SHA-256 in a header, a page that shows the request headers, and an
// echo WebSocket on /ws.
//
//   node http-backend.js [HOST PORT]   (default 127.0.4.1 9001)

const crypto = require('node:crypto');
const http = require('node:http');
const { WebSocketServer } = require('ws');

const eventCount = 5;
const eventGapMs = 300;

// The download is a fixed random MiB repeated, so its hash is known before
// the first byte goes out.
const block = crypto.randomBytes(1 << 20);

function sse(req, res) {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  // An event stream resumes after the last event the client saw.
  let id = Number(req.headers['last-event-id'] || 0);
  let sent = 0;
  const tick = () => {
    id++;
    sent++;
    res.write(`id: ${id}\nevent: tick\ndata: {"id":${id},"at":${Date.now()}}\n\n`);
    if (sent === eventCount) {
      res.end();
      return;
    }
    timer = setTimeout(tick, eventGapMs);
  };
  let timer = setTimeout(tick, eventGapMs);
  req.on('close', () => clearTimeout(timer));
}

function upload(req, res) {
  const h = crypto.createHash('sha256');
  let n = 0;
  req.on('data', (c) => {
    n += c.length;
    h.update(c);
  });
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`${n} ${h.digest('hex')}\n`);
  });
}

function download(req, res) {
  const mib = Math.min(64, Number(new URL(req.url, 'http://x').searchParams.get('mib') || 1));
  const h = crypto.createHash('sha256');
  for (let i = 0; i < mib; i++) h.update(block);
  res.writeHead(200, {
    'Content-Type': 'application/octet-stream', 'Content-Length': String(mib * block.length), 'X-Content-Sha256': h.digest('hex'),
  });
  let i = 0;
  const more = () => {
    while (i < mib) {
      i++;
      if (!res.write(block)) {
        res.once('drain', more);
        return;
      }
    }
    res.end();
  };
  more();
}

function start(host = '127.0.4.1', port = 9001) {
  const server = http.createServer((req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>http backend</title></head><body><h1>http backend</h1></body></html>\n');
      return;
    }
    if (path === '/healthz') {
      res.end('ok\n');
      return;
    }
    if (path === '/events') return sse(req, res);
    if (path === '/upload' && (req.method === 'POST' || req.method === 'PUT')) return upload(req, res);
    if (path === '/download') return download(req, res);
    if (path === '/headers') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }, null, 2) + '\n');
      return;
    }
    res.writeHead(404);
    res.end('not found\n');
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws, req) => {
    ws.send(JSON.stringify({ hello: 'http-backend', realIP: req.headers['x-real-ip'] }));
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve({
    close: () => new Promise((r) => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      server.close(r);
    }),
  })));
}

module.exports = { start, eventCount, eventGapMs };

if (require.main === module) {
  const [host, port] = process.argv.slice(2);
  start(host, port ? Number(port) : undefined).then(() => console.log('ready'));
}
