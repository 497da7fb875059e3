'use strict';
// Trial 1b: Chromium running the Socket.IO browser client (served by the
// Socket.IO servers themselves, through wsedge) against three servers with
// cookie affinity. Each browser context is a separate user with its own
// X-Forwarded-For; the page, the long-polling requests and the WebSocket
// must all reach one server, the route cookie must be set, and after the
// user's IP changes a reload must still land on the same server, because
// the cookie pins it.

const { chromium } = require('playwright-core');
const { Trial, startServe, getJSON, counts } = require('./lib');
const {
  proxyURL, adminURL, nameOf, startServers, serverStats, stopServers,
} = require('./socketio-fleet');

const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const chromiumArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];
const perServer = 2;
const screenshot = process.env.SCREENSHOT_SIO || '/tmp/wsedge-interop-socketio.png';

async function owner(ip) {
  return nameOf[(await getJSON(`${adminURL}/debug/ring?key=${ip}`)).backend];
}

// visit loads the page and waits for the socket to be welcomed and
// upgraded, then sends one acked message.
async function visit(page) {
  await page.goto(`${proxyURL}/`);
  await page.waitForFunction(() => document.getElementById('transport').textContent === 'websocket'
    && !document.getElementById('server').textContent.startsWith('connecting'), null, { timeout: 10000 });
  const ack = await page.evaluate(() => window.echo({ hello: 'from chromium' }));
  return {
    page: await page.textContent('#page'),
    server: await page.textContent('#server'),
    transport: await page.textContent('#transport'),
    ack,
    log: await page.textContent('#log'),
  };
}

async function main() {
  const t = new Trial('browser + socket.io: Chromium, Socket.IO client, cookie affinity');
  const servers = await startServers();
  const proxy = await startServe('socketio-cookie.toml');
  // launch() gives the browser a fresh temporary profile of its own.
  let ips = [];
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
  try {
    t.figure('chromium', browser.version());
    // Two users per server, so that every server serves a browser.
    const taken = {};
    for (let k = 101; k <= 200 && ips.length < 3 * perServer; k++) {
      const ip = `203.0.113.${k}`;
      const o = await owner(ip);
      if ((taken[o] || 0) < perServer) {
        taken[o] = (taken[o] || 0) + 1;
        ips.push(ip);
      }
    }
    const landed = [];
    for (let u = 1; u <= ips.length; u++) {
      const ip = ips[u - 1];
      const ctx = await browser.newContext({ extraHTTPHeaders: { 'X-Forwarded-For': ip } });
      const page = await ctx.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      const v = await visit(page);
      landed.push(v.server);
      const want = await owner(ip);
      t.check(v.page === v.server && v.ack.server === v.server && v.ack.transport === 'websocket',
        `user ${u} (${ip}): page, socket and ack from one server over websocket`, JSON.stringify(v));
      t.check(v.server === want, `user ${u}: first visit placed by IP as /debug/ring says (${want})`, v.server);
      const cookie = (await ctx.cookies()).find((c) => c.name === 'wsedge_route');
      t.check(cookie !== undefined && cookie.httpOnly && cookie.sameSite === 'Lax' && cookie.path === '/',
        `user ${u}: route cookie set (HttpOnly, SameSite=Lax, Path=/)`, JSON.stringify(cookie));

      // The user's IP changes to one the ring gives to another server; the
      // cookie must keep them where they were.
      let other = null;
      for (let k = 1; k <= 50 && other === null; k++) {
        const cand = `198.51.100.${k}`;
        if ((await owner(cand)) !== v.server) other = cand;
      }
      await ctx.setExtraHTTPHeaders({ 'X-Forwarded-For': other });
      const again = [];
      for (let r = 0; r < 3; r++) again.push(await visit(page));
      t.check(again.every((a) => a.page === v.server && a.server === v.server && a.ack.server === v.server),
        `user ${u}: after moving to ${other} (ring: ${await owner(other)}), 3 reloads stay on ${v.server}`,
        again.map((a) => `${a.page}/${a.server}`).join(' '));
      t.check(errors.length === 0, `user ${u}: no errors in the browser console`, errors.join(' | '));
      if (u === 1) await page.screenshot({ path: screenshot, fullPage: true });
      await ctx.close();
    }
    t.figure('users per server', counts(landed));
    t.figure('screenshot', screenshot);
    t.check(Object.keys(counts(landed)).length === 3, 'users spread over all three servers', JSON.stringify(counts(landed)));
    const stats = await serverStats(servers);
    const errs = stats.flatMap((s) => s.connectionErrors.map((e) => `${s.name}: ${e.message} ${e.url}`));
    t.check(errs.length === 0, 'no "Session ID unknown" or other engine.io refusal', errs.slice(0, 5).join('; '));
    t.check(stats.reduce((n, s) => n + s.upgrades, 0) === ips.length * 4, `servers saw ${ips.length * 4} upgrades to websocket`,
      stats.map((s) => `${s.name}:${s.upgrades}`).join(' '));
  } finally {
    await browser.close();
    await proxy.stop();
    stopServers(servers);
  }
  const bad = proxy.notable();
  t.check(bad.length === 0, 'wsedge logged no warnings or failures', bad.slice(0, 5).join('\n'));
  t.finish();
}

main().catch((e) => {
  console.log(`FAIL browser + socket.io: ${e.stack || e}`);
  process.exitCode = 1;
});
