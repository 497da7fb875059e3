'use strict';
// Shared plumbing of the interop trials: start wsedge (serve or demo) as a
// user would, read its logs, ask its admin endpoints, and keep a tally of
// checks so that each trial ends with a clear verdict and a non-zero exit
// status when anything a user would notice went wrong.

const { spawn, execFile } = require('node:child_process');
const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');

const here = __dirname;
const wsedgeBin = process.env.WSEDGE_BIN || '/tmp/wsedge';

// Every wsedge this trial started is killed when the trial's process ends,
// however it ends, so that no proxy is left holding its port.
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(130));

// Trial collects the outcome of one trial's checks and figures.
class Trial {
  constructor(name) {
    this.name = name;
    this.failures = [];
    this.passes = 0;
    this.figures = {};
    this.started = Date.now();
  }

  // check records one assertion; a failure does not stop the trial, so
  // that one run shows every problem at once.
  check(ok, what, detail) {
    if (ok) {
      this.passes++;
      console.log(`  ok    ${what}`);
    } else {
      this.failures.push(detail === undefined ? what : `${what}: ${detail}`);
      console.log(`  FAIL  ${what}${detail === undefined ? '' : ': ' + detail}`);
    }
    return ok;
  }

  figure(key, value) {
    this.figures[key] = value;
    console.log(`  ..    ${key} = ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  }

  note(line) {
    console.log(`  ..    ${line}`);
  }

  // finish prints the verdict and sets the exit status.
  finish() {
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    const verdict = this.failures.length === 0 ? 'PASS' : 'FAIL';
    console.log(`${verdict} ${this.name}: ${this.passes} checks passed, ${this.failures.length} failed (${secs}s)`);
    for (const f of this.failures) console.log(`  - ${f}`);
    process.exitCode = this.failures.length === 0 ? 0 : 1;
  }
}

// Wsedge is a running wsedge process with its log lines.
class Wsedge {
  constructor(proc, name) {
    this.proc = proc;
    this.name = name;
    this.lines = [];
    children.add(proc);
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
      children.delete(proc);
      resolve({ code, signal });
    }));
  }

  // records returns the JSON log records (serve logs JSON).
  records() {
    const out = [];
    for (const l of this.lines) {
      if (!l.startsWith('{')) continue;
      try {
        out.push(JSON.parse(l));
      } catch {
        // a line cut by the buffer boundary is not a record
      }
    }
    return out;
  }

  // notable is every log line at warn or above, or about a refused or
  // failed request: what a user would look at after a failure.
  notable() {
    return this.lines.filter((l) => /"level":"(warn|error)"|\tWARN\t|\tERROR\t|refused|failed|panic/i.test(l));
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
      const res = await this.exited;
      clearTimeout(timer);
      return res;
    }
    return this.exited;
  }
}

function collectLines(stream, into, echo) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      into.push(line);
      if (echo) echo(line);
    }
  });
}

// startServe runs `wsedge serve --config FILE` and resolves once it logs
// that it listens and its admin listener says every backend of the file
// is in the ring (health checks may take a moment to let them in).
async function startServe(configFile, { timeoutMs = 15000 } = {}) {
  const file = path.resolve(here, configFile);
  const proc = spawn(wsedgeBin, ['serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const w = new Wsedge(proc, path.basename(file));
  collectLines(proc.stdout, w.lines);
  collectLines(proc.stderr, w.lines);
  const deadline = Date.now() + timeoutMs;
  await waitFor(w, (l) => l.includes('"msg":"listening"'), timeoutMs);
  const listening = w.records().find((r) => r.msg === 'listening');
  const want = (fs.readFileSync(file, 'utf8').match(/^\s*address\s*=/gm) || []).length;
  if (listening && listening.admin) {
    for (;;) {
      try {
        const ring = await getJSON(`http://${listening.admin}/debug/ring`);
        if (ring.members.length >= want) break;
      } catch {
        // not answering yet
      }
      if (Date.now() > deadline) {
        await w.stop();
        throw new Error(`${w.name}: backends not all in the ring after ${timeoutMs} ms:\n${w.lines.join('\n')}`);
      }
      await sleep(50);
    }
  }
  return w;
}

// startDemo runs `wsedge demo` on the given addresses.
function startDemo(listen, admin, { timeoutMs = 10000 } = {}) {
  const proc = spawn(wsedgeBin, ['demo', '--listen', listen, '--admin', admin], { stdio: ['ignore', 'pipe', 'pipe'] });
  const w = new Wsedge(proc, 'demo');
  collectLines(proc.stdout, w.lines);
  collectLines(proc.stderr, w.lines);
  return waitFor(w, (l) => l.includes('press Ctrl-C to stop'), timeoutMs);
}

function waitFor(w, pred, timeoutMs) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const tick = () => {
      if (w.lines.some(pred)) return resolve(w);
      if (w.proc.exitCode !== null || Date.now() > deadline) {
        w.proc.kill('SIGKILL');
        return reject(new Error(`${w.name} did not start:\n${w.lines.join('\n')}`));
      }
      setTimeout(tick, 20);
    };
    tick();
  });
}

// httpGet fetches a URL over plain HTTP and resolves with status, headers
// and body (as a string).
function httpGet(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.setTimeout(10000, () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

async function getJSON(url) {
  const res = await httpGet(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${res.body}`);
  return JSON.parse(res.body);
}

// run executes a command and resolves with its exit code and output; it
// never rejects, so that a failing tool is a failed check, not a crash.
function run(cmd, args, { timeoutMs = 30000, input } = {}) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr, ms: Date.now() - started, err });
      });
    if (input !== undefined) child.stdin.end(input);
  });
}

function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// withTimeout rejects when p does not settle within ms.
function withTimeout(p, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// counts tallies the values of an array: { value: count }.
function counts(values) {
  const out = {};
  for (const v of values) out[v] = (out[v] || 0) + 1;
  return out;
}

module.exports = {
  Trial, Wsedge, startServe, startDemo, httpGet, getJSON, run, tempDir, sleep, withTimeout, counts, here, wsedgeBin,
};
