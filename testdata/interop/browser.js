'use strict';
// Trial 1: a real browser (Debian's headless Chromium, driven by
// playwright-core) against `wsedge demo`. The page must say which backend
// its WebSocket is stuck to, stay on that backend over five reloads (the
// tab keeps its key, offered in Sec-WebSocket-Protocol), land where the
// ring puts that key, and show in the room what it says.
// Then the same browser against a Node.js `ws` server with
// permessage-deflate (ws.toml): Chromium's own extension offer must be
// negotiated with the backend through the proxy. Last, an idle Chromium
// WebSocket under fast heartbeats (http.toml) must answer the proxy's
// pings and stay open.

const { chromium } = require('playwright-core');
const wsBackend = require('./ws-backend');
const httpBackend = require('./http-backend');
const { Trial, startDemo, startServe, getJSON, tempDir, sleep } = require('./lib');

const listen = '127.0.1.100:8080';
const admin = '127.0.1.100:9090';
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const screenshot = process.env.SCREENSHOT || '/tmp/wsedge-interop-demo.png';

// The flags a CI job or a kiosk would give a headless Chromium: nothing
// talks to the internet, no GPU, a fresh profile.
const chromiumArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

// deflate opens a WebSocket from a page of the ws backend (served through
// wsedge) and echoes 40 messages from 1 B to 1 MiB, text and binary.
async function deflate(t, ctx) {
  const b = await wsBackend.start();
  const proxy = await startServe('ws.toml');
  try {
    const page = await ctx.newPage();
    await page.goto('http://127.0.3.100:8080/');
    const r = await page.evaluate(async () => {
      const ws = new WebSocket('ws://127.0.3.100:8080/echo', ['echo.v1', 'echo.v2']);
      ws.binaryType = 'arraybuffer';
      const opened = await new Promise((res) => {
        ws.onopen = () => res(true);
        ws.onclose = (e) => res(`closed ${e.code}`);
      });
      if (opened !== true) return { opened };
      const out = { opened, extensions: ws.extensions, protocol: ws.protocol, ok: 0, bad: [] };
      const count = 40;
      for (let i = 0; i < count; i++) {
        const size = Math.round(Math.pow(1 << 20, i / (count - 1)));
        let s = '';
        for (let k = 0; s.length < size; k++) s += `{"msg":${i},"seq":${k},"from":"chromium"}\n`;
        s = s.slice(0, size);
        const binary = i % 2 === 1;
        const sent = binary ? new TextEncoder().encode(s) : s;
        const got = await new Promise((res) => {
          ws.onmessage = (e) => res(e.data);
          ws.send(sent);
        });
        let same;
        if (binary) {
          const g = new Uint8Array(got);
          same = g.length === sent.length && g.every((v, j) => v === sent[j]);
        } else {
          same = got === s;
        }
        if (same) out.ok++;
        else out.bad.push(i);
      }
      out.count = count;
      await new Promise((res) => {
        ws.onclose = res;
        ws.close(4002, 'done');
      });
      return out;
    });
    const offer = b.seen.offers[0] || {};
    t.figure('Chromium offered (as the backend saw it)', offer.extensions);
    t.figure('backend answered', b.seen.answers[0]);
    t.check(r.extensions === 'permessage-deflate' && r.protocol === 'echo.v2',
      'Chromium negotiated permessage-deflate and subprotocol echo.v2 with the ws backend', JSON.stringify(r));
    t.check(offer.origin === 'http://127.0.3.100:8080', 'backend saw the page\'s Origin', offer.origin);
    t.check(r.ok === r.count, `Chromium: ${r.count} messages (1 B .. 1 MiB) echoed byte-identical`, JSON.stringify(r.bad));
    t.check(b.seen.closes.some((c) => c.code === 4002), 'Chromium\'s close code 4002 reached the backend', JSON.stringify(b.seen.closes));
    await page.close();
  } finally {
    await proxy.stop();
    await b.close();
  }
  const bad = proxy.notable();
  t.check(bad.length === 0, 'wsedge (ws.toml) logged no warnings or failures', bad.join('\n'));
}

// heartbeats keeps a Chromium WebSocket idle for 2 s under ping_interval
// 500ms and pong_timeout 400ms: the browser must answer every ping.
async function heartbeats(t, ctx) {
  const b = await httpBackend.start();
  const proxy = await startServe('http.toml');
  try {
    const page = await ctx.newPage();
    await page.goto('http://127.0.4.100:8080/');
    await page.evaluate(() => new Promise((res) => {
      window.closedWith = null;
      window.sock = new WebSocket('ws://127.0.4.100:8080/ws');
      window.sock.onopen = res;
      window.sock.onclose = (e) => {
        window.closedWith = e.code;
        res();
      };
    }));
    await sleep(2000);
    const state = await page.evaluate(() => ({ readyState: window.sock.readyState, closedWith: window.closedWith }));
    const conns = await getJSON('http://127.0.4.100:9090/debug/connections');
    const age = conns.length === 1 && conns[0].last_pong ? Date.now() - Date.parse(conns[0].last_pong) : null;
    t.figure('idle Chromium WebSocket after 2 s of 500ms pings', `${JSON.stringify(state)}, last pong ${age} ms ago`);
    t.check(state.readyState === 1 && age !== null && age < 1500, 'Chromium answers the proxy\'s pings and stays open',
      JSON.stringify({ state, conns }));
    await page.close();
  } finally {
    await proxy.stop();
    await b.close();
  }
}

async function main() {
  const t = new Trial('browser: Chromium against wsedge demo and a ws server');
  const demo = await startDemo(listen, admin);
  const profile = tempDir('wsedge-chromium-');
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath, headless: true, args: chromiumArgs,
  });
  try {
    t.figure('chromium', ctx.browser() ? ctx.browser().version() : 'persistent context');
    const page = ctx.pages()[0] || (await ctx.newPage());
    const consoleErrors = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));

    const visits = [];
    for (let i = 0; i <= 5; i++) {
      if (i === 0) await page.goto(`http://${listen}/`);
      else await page.reload();
      await page.waitForFunction(() => !document.getElementById('backend').textContent.startsWith('connecting'),
        null, { timeout: 10000 });
      visits.push({
        page: await page.textContent('#page'),
        ws: await page.textContent('#backend'),
        log: await page.textContent('#log'),
      });
    }
    const first = visits[0];
    t.note(`first visit: page from ${first.page}, WebSocket stuck to ${first.ws}`);
    t.check(/^demo-\d \(127\.0\.0\.1:\d+\)$/.test(first.ws), 'page shows "stuck to demo-N (addr)"', first.ws);
    t.check(visits.every((v) => v.ws === first.ws), 'same WebSocket backend on 5 reloads',
      visits.map((v) => v.ws).join(' | '));
    t.check(sockets.length === 6, 'one WebSocket per page load', `${sockets.length} sockets`);

    // The demo keys affinity on Sec-WebSocket-Protocol, where the page
    // offers "chat.v1" and its tab's token: the ring must name the
    // backend the tab landed on for that header value.
    const tab = await page.evaluate(() => window.demoState.tab);
    const ex = await getJSON(`http://${admin}/debug/ring?key=${encodeURIComponent('chat.v1, tab.' + tab)}`);
    t.figure('admin says', `${ex.key} -> ${ex.backend} (${ex.why})`);
    t.check(first.ws.includes(`(${ex.backend})`), 'browser landed where /debug/ring says its tab key goes',
      `${first.ws} vs ${ex.backend}`);

    await page.fill('#text', 'hello from chromium');
    await page.click('#send button');
    await page.waitForFunction(() => document.getElementById('log').textContent.includes(': hello from chromium'),
      null, { timeout: 5000 }).then(() => {}, () => {});
    const log = await page.textContent('#log');
    t.check(log.includes(': hello from chromium'), 'message shown in the room', log);
    const events = await page.textContent('#events');
    t.check(!events.includes('closed:'), 'WebSocket still open after the message', events);
    await page.screenshot({ path: screenshot, fullPage: true });
    t.figure('screenshot', screenshot);
    t.check(consoleErrors.length === 0, 'no errors in the browser console', consoleErrors.join(' | '));
    await demo.stop();
    // Chromium keeps a spare connection open to an origin it expects more
    // requests from (the page polls /demo/backends) and may never use it:
    // the proxy closing it with 408 after handshake_timeout is no failure.
    const bad = demo.notable().filter((l) => !/request head not received in time/.test(l));
    t.check(bad.length === 0, 'wsedge demo logged no warnings or failures', bad.join('\n'));
    await deflate(t, ctx);
    await heartbeats(t, ctx);
  } finally {
    await ctx.close();
    await demo.stop();
  }
  t.finish();
}

main().catch((e) => {
  console.log(`FAIL browser: ${e.stack || e}`);
  process.exitCode = 1;
});
