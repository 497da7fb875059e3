'use strict';
// Trial 2: Socket.IO v4 with its default transports (long-polling first,
// then an upgrade to WebSocket) across three Socket.IO servers behind
// wsedge, sticky by client IP and then by route cookie. Every client must
// stay on one server through the polling requests and the upgrade: a
// request that reaches another server is answered 400 "Session ID
// unknown", which is what breaks Socket.IO behind a non-sticky proxy.
//
// A control shows the trial can fail: clients whose IP changes right after
// the handshake ("roaming") lose their session under ip affinity, and keep
// it under cookie affinity.

const { io } = require('socket.io-client');
const { Trial, startServe, getJSON, counts, withTimeout } = require('./lib');
const {
  proxyURL, adminURL, backends, nameOf, startServers, serverStats, resetServers, stopServers,
} = require('./socketio-fleet');

const clientCount = 50;
const messagesPerClient = 20;
const roamingCount = 10;

// runClient connects one Socket.IO client that says it is ip, waits for
// the upgrade to WebSocket and exchanges messagesPerClient acked messages.
// With roamTo it claims another IP from the first request after the
// handshake on, as a phone that changes network would. The client stays
// connected: the caller disconnects it with r.close().
async function runClient({ ip, roamTo, cookies, url = proxyURL }) {
  const r = { ip, roamTo, errors: [], acks: [], welcome: null, upgradedTo: null, connected: false };
  const started = Date.now();
  const headers = { 'X-Forwarded-For': ip };
  const socket = io(url, {
    extraHeaders: headers, withCredentials: cookies, reconnection: false, forceNew: true, timeout: 10000,
  });
  const welcome = new Promise((resolve) => socket.once('welcome', resolve));
  const upgraded = new Promise((resolve) => {
    socket.io.on('open', () => {
      if (roamTo) headers['X-Forwarded-For'] = roamTo;
      socket.io.engine.once('upgrade', (t) => resolve(t.name));
    });
  });
  socket.on('connect_error', (e) => r.errors.push(`connect_error: ${e.message}${e.description ? ' ' + JSON.stringify(e.description.message || e.description) : ''}`));
  socket.io.on('error', (e) => r.errors.push(`manager error: ${e.message}`));
  socket.on('disconnect', (reason) => {
    if (!r.closing) r.errors.push(`disconnect: ${reason}`);
  });
  try {
    r.welcome = await withTimeout(welcome, 10000, 'welcome');
    r.connected = true;
    r.connectMs = Date.now() - started;
    r.upgradedTo = await withTimeout(upgraded, 10000, 'upgrade');
    r.upgradeMs = Date.now() - started;
    for (let i = 0; i < messagesPerClient; i++) {
      const ack = await socket.timeout(5000).emitWithAck('echo', { ip, i });
      r.acks.push(ack);
    }
    r.transport = socket.io.engine.transport.name;
  } catch (e) {
    r.errors.push(String(e.message || e));
  }
  // more sends n further acked messages; it resolves with how many were
  // acknowledged by the client's own server over websocket.
  r.more = async (n) => {
    let good = 0;
    for (let i = 0; i < n; i++) {
      try {
        const ack = await socket.timeout(5000).emitWithAck('echo', { ip, i: messagesPerClient + i });
        if (ack.server === r.welcome?.server && ack.transport === 'websocket') good++;
      } catch {
        // a lost ack counts as a failure below
      }
    }
    return good;
  };
  r.close = () => {
    r.closing = true;
    socket.disconnect();
  };
  return r;
}

// ipsFor picks n client IPs from the documentation ranges.
function ipsFor(n, base) {
  return Array.from({ length: n }, (_, i) => `${base}.${i + 1}`);
}

async function owner(ip) {
  const ex = await getJSON(`${adminURL}/debug/ring?key=${ip}`);
  return ex.backend;
}

// roamingTargets gives each IP another IP that the ring puts on another
// backend, so that losing stickiness is certain to show.
async function roamingTargets(ips) {
  const pool = ipsFor(200, '198.51.100');
  const owners = {};
  for (const p of pool) owners[p] = await owner(p);
  const out = [];
  for (const ip of ips) {
    const mine = await owner(ip);
    out.push(pool.find((p) => owners[p] !== mine));
  }
  return out;
}

async function runMode(t, servers, mode) {
  t.note(`--- affinity by ${mode} (socketio-${mode}.toml)`);
  const proxy = await startServe(`socketio-${mode}.toml`);
  let mainLines = Infinity;
  try {
    await resetServers(servers);
    const ips = ipsFor(clientCount, '203.0.113');
    const expected = {};
    for (const ip of ips) expected[ip] = nameOf[await owner(ip)];

    // Every client connects and exchanges while the others do; once all
    // are done, the live connections are looked at, then all disconnect.
    const started = Date.now();
    const results = await Promise.all(ips.map((ip) => withTimeout(runClient({ ip, cookies: mode === 'cookie' }), 60000,
      `client ${ip}`).catch((e) => ({ ip, errors: [String(e.message)], acks: [] }))));
    const elapsed = Date.now() - started;
    const ring = await getJSON(`${adminURL}/debug/ring`);

    // Reload the config (SIGHUP, as `nginx -s reload`) while every client
    // is connected: none may be dropped, and all keep talking.
    const reloadsBefore = proxy.lines.filter((l) => l.includes('config reloaded')).length;
    proxy.proc.kill('SIGHUP');
    for (let i = 0; i < 100 && proxy.lines.filter((l) => l.includes('config reloaded')).length === reloadsBefore; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    t.check(proxy.lines.filter((l) => l.includes('config reloaded')).length > reloadsBefore, `${mode}: SIGHUP reloads the config`);
    const after = await Promise.all(results.map((r) => (r.more ? r.more(5) : 0)));
    const dropped = results.filter((r) => r.errors.some((e) => e.startsWith('disconnect')));
    t.check(after.every((n) => n === 5) && dropped.length === 0,
      `${mode}: after the reload all ${clientCount} clients still connected, 5 more acks each from the same server`,
      `${after.filter((n) => n === 5).length} clients fine, ${dropped.length} disconnected`);
    for (const r of results) if (r.close) r.close();

    const ok = results.filter((r) => r.errors.length === 0 && r.acks.length === messagesPerClient);
    t.check(ok.length === clientCount, `${mode}: ${clientCount} clients connected, upgraded and got ${messagesPerClient} acks`,
      `${ok.length} did; first problems: ${JSON.stringify(results.filter((r) => !ok.includes(r)).slice(0, 3).map((r) => ({ ip: r.ip, errors: r.errors })))}`);
    const upgraded = results.filter((r) => r.upgradedTo === 'websocket' && r.transport === 'websocket');
    t.check(upgraded.length === clientCount, `${mode}: every client upgraded to websocket`, `${upgraded.length}/${clientCount}`);
    const wrongAcks = results.filter((r) => r.acks.some((a) => a.server !== r.welcome?.server || a.transport !== 'websocket' || a.payload.ip !== r.ip));
    t.check(wrongAcks.length === 0, `${mode}: every ack from the client's own server, over websocket`,
      JSON.stringify(wrongAcks.slice(0, 2)));
    const misplaced = results.filter((r) => r.welcome && r.welcome.server !== expected[r.ip]);
    t.check(misplaced.length === 0, `${mode}: every client on the server /debug/ring names for its IP`,
      misplaced.map((r) => `${r.ip} on ${r.welcome.server}, ring says ${expected[r.ip]}`).join('; '));
    const wrongIP = results.filter((r) => r.welcome && r.welcome.ip !== r.ip);
    t.check(wrongIP.length === 0, `${mode}: servers see the client's IP in X-Real-IP`,
      wrongIP.map((r) => `${r.ip} seen as ${r.welcome.ip}`).slice(0, 3).join('; '));

    const landed = counts(results.filter((r) => r.welcome).map((r) => r.welcome.server));
    t.figure(`${mode}: clients per server`, landed);
    t.figure(`${mode}: ring shares`, Object.fromEntries(ring.members.map((m) => [nameOf[m.addr], `${(100 * m.share).toFixed(1)}%`])));
    const live = Object.fromEntries(ring.members.map((m) => [nameOf[m.addr], m.live]));
    t.figure(`${mode}: live WebSockets per backend in /debug/ring while all clients were connected`, live);
    t.check(backends.every((b) => (live[b.name] || 0) === (landed[b.name] || 0)), `${mode}: /debug/ring live counts match where clients landed`);
    const connectMs = results.filter((r) => r.connectMs).map((r) => r.connectMs).sort((a, b) => a - b);
    const upgradeMs = results.filter((r) => r.upgradeMs).map((r) => r.upgradeMs).sort((a, b) => a - b);
    t.figure(`${mode}: connect ms (median/max)`, `${connectMs[connectMs.length >> 1]}/${connectMs[connectMs.length - 1]}`);
    t.figure(`${mode}: upgraded ms (median/max)`, `${upgradeMs[upgradeMs.length >> 1]}/${upgradeMs[upgradeMs.length - 1]}`);
    t.figure(`${mode}: wall time for all clients`, `${elapsed} ms`);

    const stats = await serverStats(servers);
    const errs = stats.flatMap((s) => s.connectionErrors.map((e) => `${s.name}: ${e.code} ${e.message} ${e.url}`));
    t.check(errs.length === 0, `${mode}: no "Session ID unknown" or other engine.io refusal on any server`, errs.slice(0, 5).join('; '));
    const statuses = {};
    for (const s of stats) for (const [k, v] of Object.entries(s.statuses)) statuses[k] = (statuses[k] || 0) + v;
    t.figure(`${mode}: HTTP statuses of polling requests (all servers)`, statuses);
    t.check(Object.keys(statuses).every((k) => k === '200'), `${mode}: every polling request answered 200`);
    t.check(stats.reduce((n, s) => n + s.upgrades, 0) === clientCount, `${mode}: servers saw ${clientCount} upgrades`,
      stats.map((s) => `${s.name}:${s.upgrades}`).join(' '));
    t.figure(`${mode}: messages per transport (server side)`, stats.map((s) => `${s.name} ${JSON.stringify(s.messages)}`).join(', '));
    const xff = stats.flatMap((s) => Object.keys(s.forwardedFor));
    t.check(xff.length === clientCount && xff.every((v) => /^203\.0\.113\.\d+, 127\.0\.0\.1$/.test(v)),
      `${mode}: X-Forwarded-For extended with the trusted peer ("client, 127.0.0.1")`, xff.slice(0, 3).join(' | '));
    if (mode === 'cookie') {
      const reqs = stats.reduce((n, s) => n + s.requests, 0);
      const withCookie = stats.reduce((n, s) => n + s.requestsWithRouteCookie, 0);
      t.figure('cookie: polling requests with the route cookie', `${withCookie} of ${reqs}`);
      t.check(reqs - withCookie === clientCount, 'cookie: only each client\'s first request lacks the route cookie',
        `${reqs - withCookie} without`);
    }

    // Roaming clients: the IP changes after the handshake. What wsedge
    // logs from here on is judged apart: under ip affinity the control's
    // clients are refused and give up mid-upgrade on purpose.
    mainLines = proxy.lines.length;
    await resetServers(servers);
    const roamers = ipsFor(roamingCount, '192.0.2');
    const targets = await roamingTargets(roamers);
    const roamed = await Promise.all(roamers.map((ip, i) => withTimeout(
      runClient({ ip, roamTo: targets[i], cookies: mode === 'cookie' }), 60000, `roaming ${ip}`,
    ).catch((e) => ({ ip, errors: [String(e.message)], acks: [] }))));
    for (const r of roamed) if (r.close) r.close();
    const kept = roamed.filter((r) => r.errors.length === 0 && r.acks.length === messagesPerClient && r.transport === 'websocket');
    const rstats = await serverStats(servers);
    const unknown = rstats.flatMap((s) => s.connectionErrors).filter((e) => e.message === 'Session ID unknown');
    t.figure(`${mode}: roaming clients that kept their session`, `${kept.length} of ${roamingCount}`);
    t.figure(`${mode}: "Session ID unknown" refusals for roaming clients`, unknown.length);
    if (mode === 'cookie') {
      t.check(kept.length === roamingCount && unknown.length === 0, 'cookie: the route cookie keeps a client whose IP changes on its server',
        JSON.stringify(roamed.filter((r) => !kept.includes(r)).slice(0, 2).map((r) => ({ ip: r.ip, errors: r.errors }))));
    } else {
      // The control: under ip affinity a changed IP is a new client, so
      // the session is lost. That the trial sees it proves it can fail.
      t.check(kept.length === 0 && unknown.length >= roamingCount,
        'ip (control): clients whose IP changes lose their session (400 "Session ID unknown"), and the trial notices',
        `${kept.length} kept their session, ${unknown.length} refusals`);
      t.note(`control errors seen by a roaming client: ${JSON.stringify(roamed[0].errors)}`);
    }
  } finally {
    await proxy.stop();
  }
  const notable = proxy.notable();
  const main = notable.filter((l) => proxy.lines.indexOf(l) < mainLines);
  t.check(main.length === 0, `${mode}: wsedge logged no warnings or failures for the ${clientCount} clients`, main.slice(0, 5).join('\n'));
  const roaming = notable.filter((l) => !main.includes(l));
  t.figure(`${mode}: wsedge log lines about refused or failed requests of roaming clients`, roaming.length);
  for (const l of roaming.slice(0, 2)) t.note(`e.g. ${l}`);
}

// baseline runs the same clients straight to the servers, without
// wsedge, each to the server the ring would pick: the timings to compare
// the proxied runs with.
async function baseline(t) {
  const proxy = await startServe('socketio-ip.toml');
  const ips = ipsFor(clientCount, '203.0.113');
  const target = {};
  try {
    for (const ip of ips) target[ip] = `http://${await owner(ip)}`;
  } finally {
    await proxy.stop();
  }
  const started = Date.now();
  const results = await Promise.all(ips.map((ip) => withTimeout(runClient({ ip, cookies: false, url: target[ip] }), 60000,
    `client ${ip}`).catch((e) => ({ ip, errors: [String(e.message)], acks: [] }))));
  const elapsed = Date.now() - started;
  for (const r of results) if (r.close) r.close();
  const ok = results.filter((r) => r.errors.length === 0 && r.acks.length === messagesPerClient);
  t.check(ok.length === clientCount, `direct (no proxy): ${clientCount} clients connected, upgraded and got ${messagesPerClient} acks`,
    `${ok.length} did`);
  const connectMs = results.filter((r) => r.connectMs).map((r) => r.connectMs).sort((a, b) => a - b);
  t.figure('direct (no proxy): connect ms (median/max)', `${connectMs[connectMs.length >> 1]}/${connectMs[connectMs.length - 1]}`);
  t.figure('direct (no proxy): wall time for all clients', `${elapsed} ms`);
}

async function main() {
  const t = new Trial('socket.io: three Socket.IO v4 servers behind wsedge');
  t.figure('socket.io', require('socket.io/package.json').version);
  t.figure('socket.io-client', require('socket.io-client/package.json').version);
  const servers = await startServers();
  try {
    await baseline(t);
    await runMode(t, servers, 'ip');
    await runMode(t, servers, 'cookie');
  } finally {
    stopServers(servers);
  }
  t.finish();
}

main().catch((e) => {
  console.log(`FAIL socket.io: ${e.stack || e}`);
  process.exitCode = 1;
});
