'use strict';
// A real Node socket.io@4 server on @socket.io/redis-adapter@8 (classic or sharded), driven by JSON lines on
// stdin. First stdout line: {"event":"listening","port":P}; then one response line per command
// (`{"id":N,"ok":true,...}` / `{"id":N,"ok":false,"error":"..."}`). Diagnostics on stderr.
// Binary values travel as `{"$bin":"<base64>"}`. See README.md in this folder.
//
// usage: node node-server.js --redis redis://127.0.0.1:R [--mode classic|sharded] [--port 0]
//          [--requests-timeout MS] [--name NAME] [--key PREFIX] [--subscription-mode dynamic|static|dynamic-private]
//          [--specific-response-channel] [--cluster]
//   --cluster: --redis is a seed node of a Redis Cluster (node-redis createCluster for both clients)

const http = require('node:http');
const { Server } = require('socket.io');
const { createClient, createCluster } = require('redis');
const { createAdapter, createShardedAdapter } = require('@socket.io/redis-adapter');

// Keep stdout for protocol lines only (libraries may log with console.*).
console.log = (...a) => console.error(...a);
console.info = (...a) => console.error(...a);

// ---- arguments --------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = {
    redis: null,
    mode: 'classic',
    port: 0,
    requestsTimeout: 2000,
    name: 'node',
    key: null,
    subscriptionMode: null,
    specificResponseChannel: false,
    cluster: false,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`missing value after ${flag}`);
      i += 1;
      return argv[i];
    };
    switch (flag) {
      case '--redis': opts.redis = value(); break;
      case '--mode': opts.mode = value(); break;
      case '--port': opts.port = Number(value()); break;
      case '--requests-timeout': opts.requestsTimeout = Number(value()); break;
      case '--name': opts.name = value(); break;
      case '--key': opts.key = value(); break;
      case '--subscription-mode': opts.subscriptionMode = value(); break;
      case '--specific-response-channel': opts.specificResponseChannel = true; break;
      case '--cluster': opts.cluster = true; break;
      default: usage(`unknown argument ${flag}`);
    }
  }
  if (!opts.redis) usage('--redis is required');
  if (opts.mode !== 'classic' && opts.mode !== 'sharded') usage(`bad --mode ${opts.mode}`);
  if (!Number.isInteger(opts.port) || opts.port < 0) usage('bad --port');
  if (!Number.isFinite(opts.requestsTimeout) || opts.requestsTimeout <= 0) usage('bad --requests-timeout');
  return opts;
}

function usage(msg) {
  process.stderr.write(`node-server.js: ${msg}\n` +
    'usage: node node-server.js --redis redis://127.0.0.1:R [--mode classic|sharded] [--port 0] ' +
    '[--requests-timeout MS] [--name NAME] [--key PREFIX] [--subscription-mode MODE] ' +
    '[--specific-response-channel] [--cluster]\n');
  process.exit(2);
}

const OPTS = parseArgs(process.argv.slice(2));
const NAME = OPTS.name;

function log(...parts) {
  process.stderr.write(`[${NAME} ${new Date().toISOString().slice(11, 23)}] ${parts.join(' ')}\n`);
}

// ---- binary convention ------------------------------------------------------------------------------------

const { fromWire, toWire, errorMessage, serveCommands } = require('./wire');

function withTimeout(promise, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

// ---- redis + socket.io ------------------------------------------------------------------------------------

const NAMESPACES = ['/', '/admin'];
let pub;
let sub;
let io;
let probeSeq = 0;
/** nsp -> [[args...], ...] received through serverSideEmit("sse", ...) */
const sseReceived = new Map(NAMESPACES.map((n) => [n, []]));

// Round trip on the subscriber connection: node-redis sends commands of one connection in order, so when a
// fresh probe (s)subscription is confirmed, every (s)subscribe issued before it has been processed by redis.
async function syncSubscriber() {
  probeSeq += 1;
  const channel = `switchboard-probe#${NAME}#${process.pid}#${probeSeq}`;
  const noop = () => {};
  if (OPTS.mode === 'sharded') {
    await sub.sSubscribe(channel, noop);
    await sub.sUnsubscribe(channel, noop);
  } else {
    await sub.subscribe(channel, noop);
    await sub.unsubscribe(channel, noop);
  }
}

// Round trip on the publisher connection: every publish issued before has reached redis. On a Redis Cluster
// (one connection per shard) both barriers are weaker: they only cover the probe channel's shard.
async function syncPublisher() {
  if (OPTS.cluster) await pub.sPublish(`switchboard-probe#${NAME}`, 'x');
  else await pub.ping();
}

async function barrier(which, ms = 3000) {
  try {
    await withTimeout(which === 'sub' ? syncSubscriber() : syncPublisher(), ms, `${which} barrier`);
    return true;
  } catch (e) {
    log(`${which} barrier failed: ${errorMessage(e)}`);
    return false;
  }
}

function onConnection(nspName) {
  return (socket) => {
    socket.data = { server: NAME, user: socket.handshake.auth?.user ?? null };
    log(`${nspName}: connection ${socket.id}`);
    socket.on('join', async (room, cb) => {
      socket.join(room);
      await barrier('sub');
      if (typeof cb === 'function') cb('joined');
    });
    socket.on('leave', async (room, cb) => {
      socket.leave(room);
      await barrier('sub');
      if (typeof cb === 'function') cb('left');
    });
    socket.on('disconnect', (reason) => log(`${nspName}: disconnect ${socket.id} (${reason})`));
  };
}

function onServerSideEmit(nspName) {
  return (...args) => {
    let ack = null;
    if (args.length > 0 && typeof args[args.length - 1] === 'function') ack = args.pop();
    sseReceived.get(nspName).push(toWire(args));
    log(`${nspName}: serverSideEmit sse ${JSON.stringify(toWire(args))}${ack ? ' (with ack)' : ''}`);
    if (ack) ack(`pong-${NAME}`);
  };
}

async function start() {
  const clientOpts = { url: OPTS.redis };
  const make = () => (OPTS.cluster ? createCluster({ rootNodes: [clientOpts] }) : createClient(clientOpts));
  pub = make();
  sub = make();
  for (const [label, client] of [['pub', pub], ['sub', sub]]) {
    client.on('error', (e) => log(`redis ${label} error: ${errorMessage(e)}`));
    client.on('reconnecting', () => log(`redis ${label} reconnecting`));
    client.on('ready', () => log(`redis ${label} ready`));
  }
  await Promise.all([pub.connect(), sub.connect()]);

  let adapter;
  if (OPTS.mode === 'sharded') {
    const adapterOpts = {};
    if (OPTS.key) adapterOpts.channelPrefix = OPTS.key;
    if (OPTS.subscriptionMode) adapterOpts.subscriptionMode = OPTS.subscriptionMode;
    adapter = createShardedAdapter(pub, sub, adapterOpts);
  } else {
    const adapterOpts = { requestsTimeout: OPTS.requestsTimeout };
    if (OPTS.key) adapterOpts.key = OPTS.key;
    if (OPTS.specificResponseChannel) adapterOpts.publishOnSpecificResponseChannel = true;
    adapter = createAdapter(pub, sub, adapterOpts);
  }

  const httpServer = http.createServer();
  io = new Server(httpServer, { cors: { origin: '*' }, adapter });
  for (const nspName of NAMESPACES) {
    const nsp = io.of(nspName);
    nsp.on('connection', onConnection(nspName));
    nsp.on('sse', onServerSideEmit(nspName));
  }
  // Adapters subscribe without exposing the promise: wait until redis has processed those subscriptions.
  if (!(await barrier('sub', 10000))) throw new Error('redis subscriptions were not confirmed');

  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(OPTS.port, '127.0.0.1', resolve);
  });
  const { port } = httpServer.address();
  log(`listening on 127.0.0.1:${port} (mode=${OPTS.mode}, redis=${OPTS.redis})`);
  respond({ event: 'listening', port });
}

// ---- commands ---------------------------------------------------------------------------------------------

function nspOf(cmd) {
  const name = cmd.nsp ?? '/';
  if (!NAMESPACES.includes(name)) throw new Error(`namespace ${name} is not served (only ${NAMESPACES.join(', ')})`);
  return io.of(name);
}

function operator(cmd) {
  let op = nspOf(cmd).to(Array.isArray(cmd.rooms) ? cmd.rooms : []);
  if (Array.isArray(cmd.except) && cmd.except.length > 0) op = op.except(cmd.except);
  if (cmd.local === true) op = op.local;
  return op;
}

function args(cmd) {
  return fromWire(Array.isArray(cmd.args) ? cmd.args : []);
}

function timeoutOf(cmd, dflt) {
  return typeof cmd.timeout_ms === 'number' ? cmd.timeout_ms : dflt;
}

function describeSocket(s) {
  return {
    id: s.id,
    rooms: toWire([...s.rooms]),
    data: toWire(s.data ?? null),
    handshake: toWire(s.handshake ?? null),
  };
}

async function fetchSockets(cmd) {
  let op = operator(cmd);
  if (typeof cmd.timeout_ms === 'number') op = op.timeout(cmd.timeout_ms);
  return op.fetchSockets();
}

// Every command that publishes waits for a PING round trip on the publisher connection, so an ok answer means
// the message has reached redis (used by tests asserting that something is NOT delivered).
async function handle(cmd) {
  switch (cmd.cmd) {
    case 'emit': {
      let op = operator(cmd);
      if (cmd.volatile === true) op = op.volatile;
      op.emit(cmd.event, ...args(cmd));
      return { flushed: await barrier('pub') };
    }
    case 'emitWithAck': {
      const timeout = timeoutOf(cmd, 5000);
      return new Promise((resolve) => {
        operator(cmd).timeout(timeout).emit(cmd.event, ...args(cmd), (err, responses) => {
          resolve({ err: err ? errorMessage(err) : null, responses: toWire(responses ?? []) });
        });
      });
    }
    case 'fetchSockets': {
      const sockets = await fetchSockets(cmd);
      return { sockets: sockets.map(describeSocket) };
    }
    case 'socketsJoin':
      operator(cmd).socketsJoin(cmd.join ?? []);
      return { flushed: await barrier('pub') };
    case 'socketsLeave':
      operator(cmd).socketsLeave(cmd.leave ?? []);
      return { flushed: await barrier('pub') };
    case 'disconnectSockets':
      operator(cmd).disconnectSockets(cmd.close === true);
      return { flushed: await barrier('pub') };
    case 'serverSideEmit':
      nspOf(cmd).serverSideEmit(cmd.event, ...args(cmd));
      return { flushed: await barrier('pub') };
    case 'serverSideEmitWithAck': {
      // Namespace#timeout() returns a BroadcastOperator, which has no serverSideEmit: the adapter's own timeout
      // applies (classic: --requests-timeout; sharded: socket.io-adapter's fixed 5000 ms). timeout_ms only bounds
      // how long this script waits for the adapter's callback.
      const guard = Math.max(timeoutOf(cmd, 0), 6000) + 1000;
      const answer = new Promise((resolve) => {
        nspOf(cmd).serverSideEmit(cmd.event, ...args(cmd), (err, responses) => {
          resolve({ err: err ? errorMessage(err) : null, responses: toWire(responses ?? []) });
        });
      });
      return withTimeout(answer, guard, 'serverSideEmit acknowledgement callback');
    }
    case 'sseReceived':
      return { events: sseReceived.get(nspOf(cmd).name) };
    case 'serverCount':
      return { count: await nspOf(cmd).adapter.serverCount() };
    case 'allRooms': {
      const adapter = nspOf(cmd).adapter;
      if (typeof adapter.allRooms !== 'function') throw new Error(`allRooms is not supported by the ${OPTS.mode} adapter`);
      return { rooms: [...(await adapter.allRooms())] };
    }
    case 'localSockets':
      return { sockets: [...nspOf(cmd).sockets.keys()] };
    case 'remoteEmit': {
      const sockets = await fetchSockets({ ...cmd, rooms: [], except: [] });
      const target = sockets.find((s) => s.id === cmd.socket_id);
      if (!target) throw new Error(`socket ${cmd.socket_id} not found among ${sockets.map((s) => s.id).join(', ')}`);
      target.emit(cmd.event, ...args(cmd));
      return { flushed: await barrier('pub') };
    }
    case 'exit':
      setImmediate(shutdown);
      return {};
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
  }
}

function respond(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

let shuttingDown = false;
async function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  const hardExit = setTimeout(() => process.exit(0), 1500);
  hardExit.unref();
  try {
    if (io) await withTimeout(new Promise((resolve) => io.close(() => resolve())), 1000, 'io.close');
  } catch (_) { /* ignore */ }
  for (const client of [pub, sub]) {
    try { if (client) client.disconnect().catch(() => {}); } catch (_) { /* ignore */ }
  }
  process.exit(0);
}

process.on('unhandledRejection', (e) => log(`unhandled rejection: ${e && e.stack ? e.stack : e}`));
process.on('uncaughtException', (e) => log(`uncaught exception: ${e && e.stack ? e.stack : e}`));

const ready = start();
ready.catch((e) => {
  log(`startup failed: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});

serveCommands({ ready, handle, respond, log, onClose: shutdown });
