'use strict';
// One-shot @socket.io/redis-emitter@5 publisher.
//
// usage: node emitter.js --redis redis://127.0.0.1:R '<json command>'
//   {"cmd":"emit","nsp"?,"rooms"?,"except"?,"volatile"?,"event","args"}
//   {"cmd":"socketsJoin","nsp"?,"rooms"?,"except"?,"join":[...]}
//   {"cmd":"socketsLeave","nsp"?,"rooms"?,"except"?,"leave":[...]}
//   {"cmd":"disconnectSockets","nsp"?,"rooms"?,"except"?,"close":bool}
//   {"cmd":"serverSideEmit","nsp"?,"event","args"}
// Optional "key" (channel prefix, default "socket.io"). Binary values as {"$bin":"<base64>"}.
// Prints {"ok":true} and exits 0 once redis has answered every PUBLISH; otherwise an error on stderr, exit 1
// (exit 2 on bad usage).

const { createClient } = require('redis');
const { Emitter } = require('@socket.io/redis-emitter');

console.log = (...a) => console.error(...a);
console.info = (...a) => console.error(...a);

const OVERALL_TIMEOUT_MS = 10000;

function usage(msg) {
  process.stderr.write(`emitter.js: ${msg}\nusage: node emitter.js --redis redis://127.0.0.1:R '<json command>'\n`);
  process.exit(2);
}

const { fromWire } = require('./wire');

function parseArgs(argv) {
  let redis = null;
  let json = null;
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--redis') {
      if (i + 1 >= argv.length) usage('missing value after --redis');
      i += 1;
      redis = argv[i];
    } else if (json === null) {
      json = argv[i];
    } else {
      usage(`unexpected argument ${argv[i]}`);
    }
  }
  if (!redis) usage('--redis is required');
  if (json === null) usage('missing the JSON command');
  let cmd;
  try {
    cmd = JSON.parse(json);
  } catch (e) {
    usage(`the command is not JSON: ${e.message}`);
  }
  if (cmd === null || typeof cmd !== 'object' || typeof cmd.cmd !== 'string') usage('the command needs a "cmd"');
  return { redis, cmd };
}

function target(emitter, cmd) {
  let op = emitter.to(Array.isArray(cmd.rooms) ? cmd.rooms : []);
  if (Array.isArray(cmd.except) && cmd.except.length > 0) op = op.except(cmd.except);
  return op;
}

async function main() {
  const { redis, cmd } = parseArgs(process.argv.slice(2));
  const client = createClient({ url: redis, socket: { connectTimeout: 5000, reconnectStrategy: false } });
  client.on('error', (e) => process.stderr.write(`emitter.js: redis error: ${e.message}\n`));
  await client.connect();

  // The emitter fires PUBLISH without returning the promise: hand it a client that keeps them.
  const pending = [];
  const recorder = {
    publish(channel, message) {
      const p = client.publish(channel, message).then((receivers) => {
        process.stderr.write(`emitter.js: PUBLISH ${channel} -> ${receivers} receiver(s)\n`);
        return receivers;
      });
      pending.push(p);
      return p;
    },
  };
  const opts = {};
  if (typeof cmd.key === 'string') opts.key = cmd.key;
  const nsp = typeof cmd.nsp === 'string' ? cmd.nsp : '/';
  const emitter = new Emitter(recorder, opts, nsp);
  const args = fromWire(Array.isArray(cmd.args) ? cmd.args : []);

  switch (cmd.cmd) {
    case 'emit': {
      let op = target(emitter, cmd);
      if (cmd.volatile === true) op = op.volatile;
      op.emit(cmd.event, ...args);
      break;
    }
    case 'socketsJoin':
      target(emitter, cmd).socketsJoin(cmd.join ?? []);
      break;
    case 'socketsLeave':
      target(emitter, cmd).socketsLeave(cmd.leave ?? []);
      break;
    case 'disconnectSockets':
      target(emitter, cmd).disconnectSockets(cmd.close === true);
      break;
    case 'serverSideEmit':
      emitter.serverSideEmit(cmd.event, ...args);
      break;
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
  }
  if (pending.length === 0) throw new Error('the emitter published nothing');
  await Promise.all(pending);
  await client.quit();
}

const timer = setTimeout(() => {
  process.stderr.write(`emitter.js: overall timeout of ${OVERALL_TIMEOUT_MS} ms exceeded\n`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

main().then(
  () => {
    clearTimeout(timer);
    process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
    process.exit(0);
  },
  (err) => {
    clearTimeout(timer);
    process.stderr.write(`emitter.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
