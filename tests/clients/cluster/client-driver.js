'use strict';
// Hosts many official socket.io-client sockets in one process, driven by JSON lines on stdin.
// One response line per command on stdout (`{"id":N,"ok":true,...}` / `{"id":N,"ok":false,"error":"..."}`),
// diagnostics on stderr. Binary values travel as `{"$bin":"<base64>"}`. See README.md in this folder.

const { io } = require('socket.io-client');

// Keep stdout for protocol lines only.
console.log = (...a) => console.error(...a);
console.info = (...a) => console.error(...a);

function log(...parts) {
  process.stderr.write(`[driver ${new Date().toISOString().slice(11, 23)}] ${parts.join(' ')}\n`);
}

// ---- binary convention ------------------------------------------------------------------------------------

const { fromWire, toWire, errorMessage, serveCommands } = require('./wire');

// ---- sockets ----------------------------------------------------------------------------------------------

/** name -> { socket, events: [{event,args}], waiters: Set<fn>, disconnectReason, connects } */
const clients = new Map();

function getClient(name) {
  const c = clients.get(name);
  if (!c) throw new Error(`no socket named ${JSON.stringify(name)} (connect it first)`);
  return c;
}

function notify(c) {
  for (const w of [...c.waiters]) w();
}

function socketUrl(url, nsp) {
  const base = String(url).replace(/\/+$/, '');
  if (!nsp || nsp === '/') return base;
  return base + (nsp.startsWith('/') ? nsp : `/${nsp}`);
}

function cmdConnect(cmd) {
  const name = cmd.name;
  if (typeof name !== 'string' || !name) throw new Error('connect needs a "name"');
  if (typeof cmd.url !== 'string') throw new Error('connect needs a "url"');
  const old = clients.get(name);
  if (old) {
    log(`replacing socket ${name}`);
    old.socket.disconnect();
    clients.delete(name);
  }
  const opts = {
    forceNew: true,
    reconnection: cmd.reconnection === true,
    timeout: typeof cmd.timeout_ms === 'number' ? cmd.timeout_ms : 10000,
  };
  if (Array.isArray(cmd.transports)) opts.transports = cmd.transports;
  if (cmd.auth !== undefined) opts.auth = fromWire(cmd.auth);
  if (cmd.query !== undefined) opts.query = cmd.query;
  if (typeof cmd.path === 'string') opts.path = cmd.path;
  if (cmd.extraHeaders !== undefined) opts.extraHeaders = cmd.extraHeaders;
  // The packet encoding: "default" (socket.io-parser) or "msgpack" (socket.io-msgpack-parser).
  if (cmd.parser === 'msgpack') opts.parser = require('socket.io-msgpack-parser');
  else if (cmd.parser !== undefined && cmd.parser !== 'default') {
    throw new Error(`unknown parser ${JSON.stringify(cmd.parser)}: use "default" or "msgpack"`);
  }
  // Any other client option (e.g. rejectUnauthorized for a test certificate).
  if (cmd.opts !== undefined) Object.assign(opts, cmd.opts);
  const socket = io(socketUrl(cmd.url, cmd.nsp), opts);
  const c = { socket, events: [], waiters: new Set(), disconnectReason: null, connects: 0 };
  clients.set(name, c);

  socket.onAny((event, ...args) => {
    if (args.length > 0 && typeof args[args.length - 1] === 'function') {
      const ack = args.pop();
      try {
        ack(`ack-${name}`);
      } catch (e) {
        log(`${name}: ack for ${event} threw: ${errorMessage(e)}`);
      }
    }
    c.events.push({ event, args: toWire(args) });
    notify(c);
  });
  return new Promise((resolve, reject) => {
    let settled = false;
    socket.on('disconnect', (reason) => {
      c.disconnectReason = reason;
      log(`${name}: disconnect (${reason})`);
      notify(c);
      // Without reconnection, a connection closed before CONNECT never connects (e.g. the
      // server uses another parser and closes on the first packet).
      if (!settled && !opts.reconnection) {
        settled = true;
        reject(new Error(`disconnected before connecting: ${reason}`));
      }
    });
    socket.on('connect', () => {
      c.connects += 1;
      c.disconnectReason = null;
      log(`${name}: connect sid=${socket.id} (#${c.connects})`);
      if (!settled) {
        settled = true;
        resolve({ sid: socket.id });
      }
    });
    socket.on('connect_error', (err) => {
      log(`${name}: connect_error ${errorMessage(err)}`);
      if (!settled) {
        settled = true;
        const data = err && err.data !== undefined ? ` data=${JSON.stringify(err.data)}` : '';
        reject(new Error(`connect_error: ${errorMessage(err)}${data}`));
      }
    });
  });
}

function cmdEmit(cmd) {
  const c = getClient(cmd.name);
  const args = fromWire(Array.isArray(cmd.args) ? cmd.args : []);
  c.socket.emit(cmd.event, ...args);
  return {};
}

function cmdEmitWithAck(cmd) {
  const c = getClient(cmd.name);
  const args = fromWire(Array.isArray(cmd.args) ? cmd.args : []);
  const timeout = typeof cmd.timeout_ms === 'number' ? cmd.timeout_ms : 5000;
  return new Promise((resolve, reject) => {
    c.socket.timeout(timeout).emit(cmd.event, ...args, (err, ...ackArgs) => {
      if (err) reject(new Error(`no ack for ${JSON.stringify(cmd.event)} within ${timeout} ms: ${errorMessage(err)}`));
      else resolve({ ack: toWire(ackArgs) });
    });
  });
}

function cmdWait(cmd) {
  const c = getClient(cmd.name);
  const count = typeof cmd.count === 'number' ? cmd.count : 1;
  const timeout = typeof cmd.timeout_ms === 'number' ? cmd.timeout_ms : 5000;
  const matching = () => c.events.filter((e) => e.event === cmd.event);
  return new Promise((resolve, reject) => {
    let timer = null;
    const check = () => {
      const found = matching();
      if (found.length >= count) {
        c.waiters.delete(check);
        clearTimeout(timer);
        resolve({ events: found });
      }
    };
    timer = setTimeout(() => {
      c.waiters.delete(check);
      reject(new Error(
        `timeout after ${timeout} ms: ${cmd.name} wanted ${count} x ${JSON.stringify(cmd.event)}, ` +
        `got ${matching().length}; recorded: ${JSON.stringify(c.events)}; connected=${c.socket.connected}` +
        (c.disconnectReason ? ` disconnect_reason=${c.disconnectReason}` : ''),
      ));
    }, timeout);
    c.waiters.add(check);
    check();
  });
}

function cmdStatus(cmd) {
  const c = getClient(cmd.name);
  return {
    connected: c.socket.connected,
    disconnect_reason: c.disconnectReason,
    sid: c.socket.id ?? null,
    connects: c.connects,
    recovered: c.socket.recovered === true,
  };
}

// Connection state recovery: the next reconnection goes to `url` (another node), as it would
// behind a load balancer after the first node died.
function cmdSetUrl(cmd) {
  const c = getClient(cmd.name);
  if (typeof cmd.url !== 'string') throw new Error('setUrl needs a "url"');
  c.socket.io.uri = cmd.url;
  return {};
}

// Closes the Engine.IO connection under the socket (no Socket.IO DISCONNECT): with
// `reconnection: true` the client reconnects and asks for its session back.
function cmdDropTransport(cmd) {
  const c = getClient(cmd.name);
  c.socket.io.engine.close();
  return {};
}

function cmdDisconnect(cmd) {
  const c = getClient(cmd.name);
  c.socket.disconnect();
  return {};
}

// ---- command loop -----------------------------------------------------------------------------------------

function respond(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'connect': return cmdConnect(cmd);
    case 'emit': return cmdEmit(cmd);
    case 'emitWithAck': return cmdEmitWithAck(cmd);
    case 'events': return { events: getClient(cmd.name).events };
    case 'wait': return cmdWait(cmd);
    case 'clear': getClient(cmd.name).events = []; return {};
    case 'status': return cmdStatus(cmd);
    case 'disconnect': return cmdDisconnect(cmd);
    case 'setUrl': return cmdSetUrl(cmd);
    case 'dropTransport': return cmdDropTransport(cmd);
    case 'exit': setImmediate(shutdown); return {};
    default: throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
  }
}

let shuttingDown = false;
function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  for (const c of clients.values()) {
    try { c.socket.disconnect(); } catch (_) { /* ignore */ }
  }
  // Let the close frames go out, then leave.
  setTimeout(() => process.exit(0), 50);
}

process.on('unhandledRejection', (e) => log(`unhandled rejection: ${e && e.stack ? e.stack : e}`));
process.on('uncaughtException', (e) => log(`uncaught exception: ${e && e.stack ? e.stack : e}`));

serveCommands({ handle, respond, log, onClose: shutdown });
log('ready');
