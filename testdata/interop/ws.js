'use strict';
// Trial 3: a Node.js `ws` server with permessage-deflate behind wsedge and
// a `ws` client with permessage-deflate. The extension and a subprotocol
// must be negotiated between the real peers through the proxy, and 100
// compressible messages from 1 B to 1 MiB must come back byte for byte.
// Then what a user of `ws` relies on besides: fragmented messages, pings
// from the client, close codes both ways, a backend's refusal, the message
// size limit.

const crypto = require('node:crypto');
const { WebSocket } = require('ws');
const backend = require('./ws-backend');
const { Trial, startServe, getJSON, withTimeout } = require('./lib');

const proxyURL = 'ws://127.0.3.100:8080';
const adminURL = 'http://127.0.3.100:9090';
const messageCount = 100;
const maxSize = 1 << 20;

// open connects a client and resolves once it is open, with the 101's
// headers.
function open(path, opts = {}, protocols = []) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(proxyURL + path, protocols, { maxPayload: 64 << 20, ...opts });
    let upgradeHeaders = {};
    ws.on('upgrade', (res) => (upgradeHeaders = res.headers));
    ws.once('open', () => resolve({ ws, upgradeHeaders }));
    ws.once('error', reject);
  });
}

// sameExtensions compares two Sec-WebSocket-Extensions values as RFC 6455
// does: case and the optional white space around ";" and "," do not count.
function sameExtensions(a, b) {
  const norm = (v) => String(v || '').replace(/^sec-websocket-extensions:/i, '').replace(/\s+/g, '').toLowerCase();
  return norm(a) === norm(b);
}

function closed(ws) {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

// payload makes message i: sizes spread evenly on a log scale from 1 B to
// 1 MiB, text and binary in turn, both compressible like real JSON or
// telemetry but never two alike.
function payload(i) {
  const size = Math.max(1, Math.round(Math.pow(maxSize, i / (messageCount - 1))));
  if (i % 2 === 0) {
    let s = '';
    for (let k = 0; s.length < size; k++) s += `{"msg":${i},"seq":${k},"text":"the quick brown fox ${k % 97}"}\n`;
    return { data: s.slice(0, size), binary: false };
  }
  const b = Buffer.alloc(size);
  for (let k = 0; k < size; k++) b[k] = (k % 64) ^ (k >> 10 & 0xff) ^ i;
  return { data: b, binary: true };
}

// echoRound sends every message at once (so the proxy relays while both
// ends are busy) and compares each echo with what was sent.
async function echoRound(ws) {
  const sent = Array.from({ length: messageCount }, (_, i) => payload(i));
  const got = [];
  const done = new Promise((resolve, reject) => {
    ws.on('message', (data, isBinary) => {
      got.push({ data, isBinary });
      if (got.length === messageCount) resolve();
    });
    ws.once('close', (code) => reject(new Error(`closed with ${code} after ${got.length} echoes`)));
  });
  const started = Date.now();
  for (const m of sent) ws.send(m.data, { binary: m.binary });
  await withTimeout(done, 60000, 'echoes');
  const ms = Date.now() - started;
  const mismatched = [];
  for (let i = 0; i < messageCount; i++) {
    const want = Buffer.from(sent[i].data);
    if (!got[i] || got[i].isBinary !== sent[i].binary || !Buffer.from(got[i].data).equals(want)) mismatched.push(i);
  }
  const bytes = sent.reduce((n, m) => n + Buffer.byteLength(m.data), 0);
  return { mismatched, bytes, ms };
}

async function wireBytes() {
  const conns = await getJSON(`${adminURL}/debug/connections`);
  return conns.reduce((acc, c) => ({ in: acc.in + c.bytes_in, out: acc.out + c.bytes_out }), { in: 0, out: 0 });
}

async function main() {
  const t = new Trial('ws: permessage-deflate and subprotocols end to end');
  t.figure('ws', require('ws/package.json').version);
  const b = await backend.start();
  const { seen } = b;
  const proxy = await startServe('ws.toml');
  try {
    // permessage-deflate and a subprotocol, negotiated by the real peers.
    const { ws, upgradeHeaders } = await open('/echo', { perMessageDeflate: true }, ['echo.v1', 'echo.v2']);
    t.figure('client offered', seen.offers[0]);
    t.figure('backend answered', seen.answers[0]);
    t.figure('client got', `Sec-WebSocket-Extensions: ${upgradeHeaders['sec-websocket-extensions']}; Sec-WebSocket-Protocol: ${upgradeHeaders['sec-websocket-protocol']}`);
    t.check(ws.extensions === 'permessage-deflate', 'client negotiated permessage-deflate (ws.extensions)', JSON.stringify(ws.extensions));
    t.check(/client_max_window_bits/.test(seen.offers[0].extensions || ''), 'backend received the client\'s own extension offer',
      seen.offers[0].extensions);
    t.check(sameExtensions(upgradeHeaders['sec-websocket-extensions'], seen.answers[0]),
      'client got exactly the parameters the backend chose', `${upgradeHeaders['sec-websocket-extensions']} vs ${seen.answers[0]}`);
    t.check(ws.protocol === 'echo.v2', 'subprotocol echo.v2 chosen by the backend reaches the client', JSON.stringify(ws.protocol));
    t.check(seen.offers[0].protocols === 'echo.v1, echo.v2', 'backend received both offered subprotocols in order', seen.offers[0].protocols);

    const r = await echoRound(ws);
    const wire = await wireBytes();
    t.check(r.mismatched.length === 0, `${messageCount} messages (1 B .. 1 MiB, text and binary) echoed byte-identical`,
      `mismatched: ${r.mismatched.join(',')}`);
    t.figure('deflate: payload each way', `${r.bytes} bytes in ${r.ms} ms`);
    t.figure('deflate: bytes through the proxy (client->backend / backend->client)', `${wire.in} / ${wire.out}`);
    t.check(wire.in < r.bytes / 2 && wire.out < r.bytes / 2, 'frames crossed the proxy compressed (under half the payload)',
      `${wire.in} and ${wire.out} of ${r.bytes}`);

    // Fragments: one message in three frames; only the first carries RSV1.
    const parts = ['{"part":1,"pad":"' + 'a'.repeat(3000) + '"}', ' middle ', 'end'.repeat(500)];
    const echo = new Promise((resolve) => ws.once('message', (d) => resolve(d.toString())));
    ws.send(parts[0], { fin: false });
    ws.send(parts[1], { fin: false });
    ws.send(parts[2], { fin: true });
    const whole = await withTimeout(echo, 5000, 'fragmented echo');
    t.check(whole === parts.join(''), 'a compressed message sent in 3 fragments echoed whole', `${whole.length} chars`);

    // Pings from the client reach the backend, whose pong comes back.
    const pong = new Promise((resolve) => ws.once('pong', (d) => resolve(d.toString())));
    ws.ping('are you there');
    t.check(await withTimeout(pong, 5000, 'pong') === 'are you there', 'client ping answered with its payload');
    t.check(seen.pings.includes('are you there'), 'client ping reached the backend', JSON.stringify(seen.pings));

    const c = closed(ws);
    ws.close(4001, 'bye from client');
    const cl = await withTimeout(c, 5000, 'close');
    await new Promise((r) => setTimeout(r, 100));
    t.check(seen.closes.some((x) => x.code === 4001 && x.reason === 'bye from client'), 'client close code 4001 and reason reach the backend',
      JSON.stringify(seen.closes));
    t.check(cl.code === 4001, 'client sees its close echoed (4001)', JSON.stringify(cl));

    // The same round without the extension: the proxy must not force it,
    // and the bytes on the wire show what compression saved.
    const plain = await open('/echo', { perMessageDeflate: false });
    t.check(plain.ws.extensions === '', 'client without permessage-deflate gets no extension', JSON.stringify(plain.ws.extensions));
    const pr = await echoRound(plain.ws);
    const pwire = await wireBytes();
    t.check(pr.mismatched.length === 0, `without deflate: ${messageCount} messages echoed byte-identical`, `mismatched: ${pr.mismatched.join(',')}`);
    t.figure('no deflate: bytes through the proxy (client->backend / backend->client)', `${pwire.in} / ${pwire.out} in ${pr.ms} ms`);
    plain.ws.close();

    // Deflate parameters the backend insists on (no context takeover,
    // small windows) reach the client as the backend wrote them.
    const n = seen.answers.length;
    const tuned = await open('/tuned', { perMessageDeflate: true });
    const tunedHeader = tuned.upgradeHeaders['sec-websocket-extensions'] || '';
    t.figure('tuned: backend answered', seen.answers[n]);
    t.check(sameExtensions(tunedHeader, seen.answers[n])
      && /server_no_context_takeover/.test(tunedHeader) && /server_max_window_bits=10/.test(tunedHeader),
    'permessage-deflate parameters (no context takeover, window bits) pass through unchanged', tunedHeader);
    const tr = await echoRound(tuned.ws);
    t.check(tr.mismatched.length === 0, `tuned: ${messageCount} messages echoed byte-identical`, `mismatched: ${tr.mismatched.join(',')}`);
    tuned.ws.close();

    // A backend's close code passes through unchanged.
    const bye = await open('/close');
    const byeClose = await withTimeout(closed(bye.ws), 5000, 'backend close');
    t.check(byeClose.code === 4000 && byeClose.reason === 'bye from backend', 'backend close 4000 with its reason reaches the client',
      JSON.stringify(byeClose));

    // A backend's refusal reaches the client as is.
    const refusal = await new Promise((resolve) => {
      const ws2 = new WebSocket(proxyURL + '/private');
      ws2.on('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, auth: res.headers['www-authenticate'], body }));
      });
      ws2.on('error', () => {});
    });
    t.check(refusal.status === 401 && refusal.auth === 'Bearer realm="trial"' && refusal.body === 'sign in first',
      'backend 401 with WWW-Authenticate and body reaches the client',
      JSON.stringify(refusal));

    // Over max_message_bytes (1 MiB by default): refused with 1009, in
    // both the plain and the compressed case (random bytes do not shrink).
    for (const deflate of [false, true]) {
      const big = await open('/echo', { perMessageDeflate: deflate });
      const cc = closed(big.ws);
      big.ws.send(crypto.randomBytes(1536 << 10));
      const got = await withTimeout(cc, 10000, 'close after oversized message');
      t.check(got.code === 1009, `${deflate ? 'compressed' : 'plain'} 1.5 MiB message refused with 1009`, JSON.stringify(got));
    }

    // The limit counts bytes on the wire: with permessage-deflate a message
    // that inflates far past it passes. Recorded, not judged: the proxy
    // does not inflate, so the backend's own limit (ws maxPayload) is the
    // one that counts there.
    const bomb = await open('/echo', { perMessageDeflate: true });
    const before = seen.messages;
    const back = new Promise((resolve) => bomb.ws.once('message', (d) => resolve(d.length)));
    const bc = closed(bomb.ws);
    bomb.ws.send(Buffer.alloc(8 << 20));
    const outcome = await withTimeout(Promise.race([back.then((n) => `echoed ${n} bytes`), bc.then((x) => `closed ${x.code}`)]),
      10000, '8 MiB of zeros');
    t.figure('8 MiB of zeros, compressed (about 8 KiB on the wire), with max_message_bytes 1 MiB', `${outcome}; backend got ${seen.messages - before} message(s)`);
    bomb.ws.terminate();
  } finally {
    await proxy.stop();
    await b.close();
  }
  const bad = proxy.notable().filter((l) => !l.includes('backend refused upgrade'));
  t.note(`wsedge log lines at warn and above or about failures: ${bad.length}`);
  for (const l of bad.slice(0, 10)) t.note(`  ${l}`);
  t.finish();
}

main().catch((e) => {
  console.log(`FAIL ws: ${e.stack || e}`);
  process.exitCode = 1;
});
