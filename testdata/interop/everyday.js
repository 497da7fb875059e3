'use strict';
// Trial 4: what a user replacing nginx tries in the first ten minutes:
// `wsedge check` and `wsedge route` on their configs, wscat and curl
// against `wsedge demo`, server-sent events with `curl -N`, an upload and
// a download through the proxy, heartbeats seen from wscat and from a
// client that stops answering pings, and a Python `websockets` client.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { WebSocket } = require('ws');
const backend = require('./http-backend');
const wsBackend = require('./ws-backend');
const { Trial, startServe, startDemo, getJSON, run, tempDir, sleep, withTimeout, here, wsedgeBin } = require('./lib');

const wscat = path.join(here, 'node_modules', '.bin', 'wscat');
const demoListen = '127.0.1.100:8080';
const demoAdmin = '127.0.1.100:9090';
const proxy = 'http://127.0.4.100:8080';
const admin = 'http://127.0.4.100:9090';

async function commands(t) {
  const configs = fs.readdirSync(here).filter((f) => f.endsWith('.toml')).sort();
  for (const c of configs) {
    const r = await run(wsedgeBin, ['check', '--config', path.join(here, c)]);
    t.check(r.code === 0 && r.stdout.includes(': ok'), `wsedge check ${c}`, (r.stdout + r.stderr).trim());
  }
  const r = await run(wsedgeBin, ['route', '--config', path.join(here, 'socketio-ip.toml'), '203.0.113.7']);
  t.figure('wsedge route --config socketio-ip.toml 203.0.113.7', r.stdout.trim());
  t.check(r.code === 0 && /127\.0\.2\.[123]:9001/.test(r.stdout), 'wsedge route names a backend of the config', r.stderr.trim());
}

async function demo(t) {
  const d = await startDemo(demoListen, demoAdmin);
  try {
    const w = await run(wscat, ['-c', `ws://${demoListen}/ws`, '-x', 'hello from wscat', '-w', '1', '--no-color']);
    t.figure('wscat -c ws://.../ws -x "hello from wscat" -w 1', w.stdout.trim().replace(/\n/g, ' | '));
    // Without a terminal wscat prints each message on its own line, with
    // no "< " prompt.
    const greet = /^(?:< )?(\{.*"backend":"(demo-\d)".*\})$/m.exec(w.stdout);
    t.check(w.code === 0 && greet !== null, 'wscat sees the demo backend\'s greeting', w.stdout + w.stderr);
    t.check(/^(?:< )?\{"type":"chat".*"text":"hello from wscat"/m.test(w.stdout), 'wscat\'s message comes back from the room', w.stdout);

    const who = await run('curl', ['-s', '--max-time', '5', `http://${demoListen}/whoami`]);
    t.check(greet !== null && who.stdout.trim() === greet[2], 'curl /whoami lands on the same backend as wscat',
      `${who.stdout.trim()} vs ${greet && greet[2]}`);

    const bad = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5',
      '-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13', `http://${demoListen}/ws`]);
    t.check(bad.stdout === '400', 'an upgrade without Sec-WebSocket-Key gets 400', bad.stdout);

    const ring = await getJSON(`http://${demoAdmin}/debug/ring`);
    t.check(ring.members.length === 3 && Math.abs(ring.members.reduce((s, m) => s + m.share, 0) - 1) < 1e-6,
      '/debug/ring lists the 3 demo backends, shares adding up to 1', JSON.stringify(ring));
  } finally {
    await d.stop();
  }
}

// curlEvents runs `curl -sN URL` and notes when each event arrives.
function curlEvents(url, headers = []) {
  return new Promise((resolve) => {
    const args = ['-sN', '--max-time', '10'];
    for (const h of headers) args.push('-H', h);
    const started = Date.now();
    const child = spawn('curl', [...args, url]);
    const events = [];
    let buf = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const id = /^id: (\d+)$/m.exec(ev);
        events.push({ id: id ? Number(id[1]) : null, ms: Date.now() - started });
      }
    });
    child.on('exit', (code) => resolve({ code, events, ms: Date.now() - started }));
  });
}

async function http(t) {
  const b = await backend.start();
  const p = await startServe('http.toml');
  const dir = tempDir('wsedge-http-');
  try {
    // Server-sent events: each event must reach curl when the backend
    // writes it, not when the stream ends.
    const gap = backend.eventGapMs;
    const sse = await curlEvents(`${proxy}/events`);
    t.figure('curl -N /events: event arrival ms', sse.events.map((e) => e.ms).join(', '));
    t.check(sse.code === 0 && sse.events.length === backend.eventCount, `${backend.eventCount} events through curl -N`,
      `exit ${sse.code}, ${sse.events.length} events`);
    const first = sse.events[0] ? sse.events[0].ms : Infinity;
    t.check(first < 2 * gap + 200, 'first event arrives as it is sent, not buffered until the end',
      `first after ${first} ms, stream took ${sse.ms} ms`);
    const spread = sse.events.length > 1 ? sse.events[sse.events.length - 1].ms - first : 0;
    t.check(spread >= (backend.eventCount - 2) * gap, 'events arrive spread out in time', `${spread} ms between first and last`);
    const resumed = await curlEvents(`${proxy}/events`, ['Last-Event-ID: 41']);
    t.check(resumed.events.length > 0 && resumed.events[0].id === 42, 'Last-Event-ID reaches the backend (stream resumes at 42)',
      JSON.stringify(resumed.events.map((e) => e.id)));

    const hdr = await run('curl', ['-s', '--max-time', '5', '-H', 'X-Forwarded-For: 6.6.6.6', `${proxy}/headers`]);
    const seen = JSON.parse(hdr.stdout).headers;
    t.figure('headers the backend saw', `host=${seen.host} x-forwarded-for=${seen['x-forwarded-for']} x-real-ip=${seen['x-real-ip']} x-forwarded-proto=${seen['x-forwarded-proto']}`);
    t.check(seen['x-forwarded-for'] === '127.0.0.1' && seen['x-real-ip'] === '127.0.0.1' && seen['x-forwarded-proto'] === 'http',
      'an untrusted client\'s X-Forwarded-For is replaced, X-Real-IP and X-Forwarded-Proto set', JSON.stringify(seen));
    t.check(seen.host === '127.0.4.100:8080', 'Host header passes through', seen.host);

    // Upload and download, each 16 MiB, through the proxy.
    const file = path.join(dir, 'upload.bin');
    const data = crypto.randomBytes(16 << 20);
    fs.writeFileSync(file, data);
    const want = `${data.length} ${crypto.createHash('sha256').update(data).digest('hex')}`;
    const put = await run('curl', ['-s', '--max-time', '30', '-T', file, `${proxy}/upload`]);
    t.check(put.stdout.trim() === want, 'curl -T: 16 MiB upload arrives intact', `${put.stdout.trim()} vs ${want}`);
    t.figure('16 MiB upload (curl -T)', `${put.ms} ms`);
    const chunked = await run('curl', ['-s', '--max-time', '30', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`,
      `${proxy}/upload`]);
    t.check(chunked.stdout.trim() === want, 'chunked 16 MiB POST arrives intact', chunked.stdout.trim());
    const out = path.join(dir, 'download.bin');
    const dl = await run('curl', ['-s', '--max-time', '30', '-D', '-', '-o', out, `${proxy}/download?mib=16`]);
    const sum = /x-content-sha256: ([0-9a-f]+)/i.exec(dl.stdout);
    const got = crypto.createHash('sha256').update(fs.readFileSync(out)).digest('hex');
    t.check(sum !== null && sum[1] === got, '16 MiB download arrives intact', `${got} vs ${sum && sum[1]}`);
    t.figure('16 MiB download', `${dl.ms} ms`);

    // Heartbeats: wscat shows the proxy's pings (ping_interval 500ms).
    const w = await run(wscat, ['-P', '--no-color', '-c', `ws://127.0.4.100:8080/ws`, '-x', 'hi', '-w', '2']);
    const pings = (w.stdout.match(/Received ping/g) || []).length;
    t.figure('wscat -P over 2 s with ping_interval 500ms', `${pings} pings seen`);
    t.check(pings >= 2 && pings <= 6, 'wscat sees the proxy\'s pings at about ping_interval', w.stdout.trim().replace(/\n/g, ' | '));
    t.check(!/Disconnected/.test(w.stdout), 'wscat stays connected while answering pings', w.stdout);

    // An idle client that answers pings stays; one that does not is closed.
    const live = new WebSocket(`${proxy.replace('http', 'ws')}/ws`);
    const liveClosed = new Promise((r) => live.once('close', (code) => r(code)));
    const mute = new WebSocket(`${proxy.replace('http', 'ws')}/ws`, { autoPong: false });
    const opened = Date.now();
    const muteClosed = new Promise((r) => mute.once('close', (code, reason) => r({ code, reason: reason.toString(), ms: Date.now() - opened })));
    await Promise.all([live, mute].map((s) => new Promise((r) => s.once('open', r))));
    const muted = await withTimeout(muteClosed, 5000, 'mute client close').catch((e) => ({ code: null, reason: e.message }));
    t.figure('client that never answers pings', `closed with ${muted.code} "${muted.reason}" after ${muted.ms} ms`);
    t.check(muted.code === 1008 && muted.ms < 2000, 'a client that never answers pings is closed (1008 pong timeout) within ping_interval + pong_timeout',
      JSON.stringify(muted));
    await sleep(1500);
    const conns = await getJSON(`${admin}/debug/connections`);
    const lastPong = conns.length === 1 && conns[0].last_pong ? Date.now() - Date.parse(conns[0].last_pong) : null;
    t.check(live.readyState === WebSocket.OPEN && lastPong !== null && lastPong < 1500,
      'a client that answers pings stays open; /debug/connections shows a recent last_pong', JSON.stringify(conns));
    live.close();
    await liveClosed;
  } finally {
    await p.stop();
    await b.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const bad = p.notable();
  t.note(`wsedge log lines at warn and above or about failures: ${bad.length}`);
  for (const l of bad.slice(0, 10)) t.note(`  ${l}`);
}

// python runs Debian's python3-websockets client against the ws backend
// through ws.toml.
async function python(t) {
  const b = await wsBackend.start();
  const p = await startServe('ws.toml');
  try {
    const r = await run('/usr/bin/python3', [path.join(here, 'python_client.py'), 'ws://127.0.3.100:8080/echo']);
    let got = {};
    try {
      got = JSON.parse(r.stdout);
    } catch {
      // reported by the check below
    }
    t.figure('python websockets client', r.stdout.trim() || r.stderr.trim().split('\n').slice(-3).join(' | '));
    t.check(r.code === 0 && got.subprotocol === 'echo.v2' && got.extensions?.[0] === 'PerMessageDeflate',
      'python websockets: subprotocol and permessage-deflate negotiated with the Node.js backend', r.stderr.trim());
    t.check(got.echoed === got.sent && got.pong === true, 'python websockets: messages echoed identical, ping answered',
      JSON.stringify(got));
    t.check(b.seen.closes.some((c) => c.code === 4003 && c.reason === 'bye from python'), 'python websockets: close 4003 reached the backend',
      JSON.stringify(b.seen.closes));
  } finally {
    await p.stop();
    await b.close();
  }
}

async function main() {
  const t = new Trial('everyday: wsedge commands, wscat, curl, SSE, heartbeats');
  t.figure('wscat', require('wscat/package.json').version);
  t.figure('curl', (await run('curl', ['--version'])).stdout.split('\n')[0]);
  await commands(t);
  await demo(t);
  await http(t);
  await python(t);
  t.finish();
}

main().catch((e) => {
  console.log(`FAIL everyday: ${e.stack || e}`);
  process.exitCode = 1;
});
