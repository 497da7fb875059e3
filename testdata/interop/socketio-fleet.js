'use strict';
// The three Socket.IO servers the Socket.IO trials run behind wsedge, each
// a child process of its own as in production, and the questions the
// trials ask them over IPC.

const path = require('node:path');
const { fork } = require('node:child_process');
const { here } = require('./lib');

const proxyURL = 'http://127.0.2.100:8080';
const adminURL = 'http://127.0.2.100:9090';
const backends = [
  { name: 'io-1', host: '127.0.2.1', port: 9001 },
  { name: 'io-2', host: '127.0.2.2', port: 9001 },
  { name: 'io-3', host: '127.0.2.3', port: 9001 },
];
// nameOf maps a backend address, as wsedge names it, to the server's name.
const nameOf = Object.fromEntries(backends.map((b) => [`${b.host}:${b.port}`, b.name]));

function startServers() {
  return Promise.all(backends.map((b) => new Promise((resolve, reject) => {
    const child = fork(path.join(here, 'socketio-server.js'), [b.name, b.host, String(b.port)],
      { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    child.once('message', (m) => (m.ready ? resolve(child) : reject(new Error(`${b.name}: ${JSON.stringify(m)}`))));
    child.once('exit', (code) => reject(new Error(`${b.name} exited with ${code}`)));
  })));
}

function ask(child, what) {
  return new Promise((resolve) => {
    child.once('message', resolve);
    child.send(what);
  });
}

async function serverStats(servers) {
  const out = [];
  for (const s of servers) out.push((await ask(s, 'stats')).stats);
  return out;
}

async function resetServers(servers) {
  for (const s of servers) await ask(s, 'reset');
}

function stopServers(servers) {
  for (const s of servers) s.kill('SIGTERM');
}

module.exports = { proxyURL, adminURL, backends, nameOf, startServers, serverStats, resetServers, stopServers };
