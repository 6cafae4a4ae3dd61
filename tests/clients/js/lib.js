'use strict';
// Shared helpers for the socket.io-client compatibility scenarios.
// Every scenario script: `node tests/clients/js/<scenario>.js http://127.0.0.1:PORT [extra]`
// exits 0 on success, 1 on an assertion/protocol failure, 2 on bad usage, 3 on overall timeout.

const assert = require('node:assert/strict');
const { io } = require('socket.io-client');

const sockets = [];

function usage(name, extra = '') {
  const url = process.argv[2];
  if (!url || !/^https?:\/\//.test(url)) {
    process.stderr.write(`usage: node ${name}.js http://127.0.0.1:PORT ${extra}\n`);
    process.exit(2);
  }
  return url.replace(/\/+$/, '');
}

function log(...args) {
  process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${args.join(' ')}\n`);
}

function closeAll() {
  for (const s of sockets) {
    try { s.disconnect(); } catch (_) { /* ignore */ }
  }
}

// Runs `fn()` with an overall timeout; prints PASS/FAIL and exits.
function run(name, fn, { timeoutMs = 15000 } = {}) {
  const timer = setTimeout(() => {
    process.stderr.write(`FAIL js/${name}: overall timeout of ${timeoutMs} ms exceeded\n`);
    closeAll();
    process.exit(3);
  }, timeoutMs);
  Promise.resolve()
    .then(fn)
    .then(() => {
      clearTimeout(timer);
      closeAll();
      process.stdout.write(`PASS js/${name}\n`);
      process.exit(0);
    })
    .catch((err) => {
      clearTimeout(timer);
      process.stderr.write(`FAIL js/${name}: ${err && err.stack ? err.stack : err}\n`);
      closeAll();
      process.exit(1);
    });
}

// Creates a socket (autoConnect) and remembers it for cleanup. `forceNew` defaults to true so that every
// logical client gets its own Engine.IO connection unless `forceNew: false` is passed (multiplexing).
function client(url, opts = {}) {
  const s = io(url, { forceNew: true, reconnection: false, timeout: 5000, ...opts });
  sockets.push(s);
  return s;
}

function withTimeout(promise, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

// Resolves when the socket is connected; rejects with the connect_error Error.
function connected(socket, what = 'connect') {
  if (socket.connected) return Promise.resolve(socket);
  return withTimeout(new Promise((resolve, reject) => {
    const onOk = () => { socket.off('connect_error', onErr); resolve(socket); };
    const onErr = (err) => { socket.off('connect', onOk); reject(err); };
    socket.once('connect', onOk);
    socket.once('connect_error', onErr);
  }), 8000, what);
}

// Resolves with the connect_error Error; rejects if the socket connects instead.
function connectError(socket, what = 'connect_error') {
  return withTimeout(new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error(`${what}: expected connect_error but the socket connected`)));
    socket.once('connect_error', resolve);
  }), 8000, what);
}

async function connect(url, opts = {}) {
  const s = client(url, opts);
  await connected(s, `connect to ${url}`);
  return s;
}

// emit with an ack; resolves with the first ack argument.
function call(socket, event, data, ms = 5000) {
  return withTimeout(socket.timeout(ms).emitWithAck(event, data), ms + 500, `ack of ${event}`);
}

// Records every event received by a socket (catch-all listener).
class Recorder {
  constructor(socket, label) {
    this.socket = socket;
    this.label = label;
    this.events = [];
    this.waiters = [];
    socket.onAny((event, ...args) => {
      this.events.push({ event, args });
      this.waiters = this.waiters.filter((w) => !w());
    });
  }

  all(event) { return this.events.filter((e) => e.event === event); }

  count(event) { return this.all(event).length; }

  // Waits until `n` events named `event` have been received; returns the args of the n-th.
  waitFor(event, n = 1, ms = 5000) {
    return withTimeout(new Promise((resolve) => {
      const check = () => {
        const got = this.all(event);
        if (got.length >= n) { resolve(got[n - 1].args); return true; }
        return false;
      };
      if (!check()) this.waiters.push(check);
    }), ms, `${this.label} to receive ${n}x '${event}'`);
  }

  assertCount(event, n) {
    assert.equal(this.count(event), n,
      `${this.label}: expected ${n}x '${event}', got ${this.count(event)}: ${JSON.stringify(this.all(event))}`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assertOk(reply, what) {
  assert.ok(reply && typeof reply === 'object', `${what}: ack is not an object: ${JSON.stringify(reply)}`);
  assert.equal(reply.ok, true, `${what}: expected ok:true, got ${JSON.stringify(reply)}`);
}

function assertRooms(reply, expected, what) {
  assertOk(reply, what);
  assert.ok(Array.isArray(reply.rooms), `${what}: rooms is not an array: ${JSON.stringify(reply)}`);
  assert.deepEqual([...reply.rooms].sort(), [...expected].sort(), `${what}: unexpected rooms`);
}

module.exports = {
  assert, io, usage, log, run, client, connect, connected, connectError, call, Recorder, sleep,
  withTimeout, assertOk, assertRooms,
};
