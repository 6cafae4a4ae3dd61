'use strict';
// The harness's JSON conventions, shared by the cluster scripts: {"$bin": base64} stands for a
// Buffer in both directions, at any depth.

function isBinObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) &&
    Object.keys(v).length === 1 && typeof v.$bin === 'string';
}

// JSON from the test harness -> values to emit ({"$bin"} -> Buffer, at any depth).
function fromWire(v) {
  if (Array.isArray(v)) return v.map(fromWire);
  if (isBinObject(v)) return Buffer.from(v.$bin, 'base64');
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const [k, val] of Object.entries(v)) out[k] = fromWire(val);
    return out;
  }
  return v;
}

// Received values -> JSON for the test harness (Buffer/ArrayBuffer/typed array -> {"$bin"}, at any depth).
function toWire(v) {
  if (v === undefined || typeof v === 'function') return null;
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString('base64') };
  if (ArrayBuffer.isView(v)) {
    return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  }
  if (Array.isArray(v)) return v.map(toWire);
  if (v instanceof Set) return [...v].map(toWire);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, val]) => [String(k), toWire(val)]));
  if (v !== null && typeof v === 'object') {
    if (typeof v.toJSON === 'function') return toWire(v.toJSON());
    const out = {};
    for (const [k, val] of Object.entries(v)) {
      if (val !== undefined && typeof val !== 'function') out[k] = toWire(val);
    }
    return out;
  }
  if (typeof v === 'bigint') return v.toString();
  return v;
}

function errorMessage(err) {
  if (err === undefined || err === null) return String(err);
  if (typeof err === 'string') return err;
  return err.message || String(err);
}

// The command loop of the long-running scripts: one JSON command per line on stdin, handled
// once `ready` resolves; each answer `{id, ok, ...}` goes to `respond`. Stdin EOF calls `onClose`.
function serveCommands({ ready = Promise.resolve(), handle, respond, log, onClose }) {
  const readline = require('node:readline');
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      log(`unparsable command line: ${line}`);
      return;
    }
    const id = cmd.id;
    ready
      .then(() => handle(cmd))
      .then(
        (fields) => respond({ id, ok: true, ...(fields || {}) }),
        (err) => respond({ id, ok: false, error: errorMessage(err) }),
      );
  });
  rl.on('close', onClose);
}

module.exports = { isBinObject, fromWire, toWire, errorMessage, serveCommands };
