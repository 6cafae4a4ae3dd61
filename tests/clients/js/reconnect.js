'use strict';
// Scenario g: automatic reconnection after a gateway restart.
// Protocol with the harness: the script prints `READY` on stdout once both clients are connected and joined; the
// harness then kills the gateway and starts a new one on the SAME port; both clients must reconnect on their own,
// re-join their room, and a publish round-trip must work; the script prints `RECONNECTED` and exits 0.
const { assert, usage, run, client, connected, call, Recorder, withTimeout, assertOk, assertRooms, log } = require('./lib');

const url = usage('reconnect');
const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500, randomizationFactor: 0.2 };

function cycle(socket, label) {
  // resolves after a disconnect followed by a successful re-connect
  return new Promise((resolve) => {
    socket.once('disconnect', (reason) => {
      log(`${label} disconnected: ${reason}`);
      socket.once('connect', () => { log(`${label} reconnected as ${socket.id}`); resolve(reason); });
    });
  });
}

run('reconnect', async () => {
  const a = client(url, { transports: ['websocket'], ...RECONNECT });
  const b = client(url, RECONNECT); // polling + upgrade
  await connected(a, 'A initial connect');
  await connected(b, 'B initial connect');
  const rb = new Recorder(b, 'B');
  assertRooms(await call(a, 'join', 'rc'), ['rc'], 'A join');
  assertRooms(await call(b, 'join', 'rc'), ['rc'], 'B join');
  assertOk(await call(a, 'publish', { to: 'rc', event: 'before', data: 1 }), 'publish before restart');
  await rb.waitFor('before');
  const oldIds = [a.id, b.id];

  const cycles = Promise.all([cycle(a, 'A'), cycle(b, 'B')]);
  process.stdout.write('READY\n');
  await withTimeout(cycles, 15000, 'both clients to disconnect and reconnect after the gateway restart');
  assert.notEqual(a.id, oldIds[0], 'A kept its old socket id after reconnecting to a new server');
  assert.notEqual(b.id, oldIds[1], 'B kept its old socket id after reconnecting to a new server');

  // the new server knows nothing about the old rooms: re-join and round-trip
  assertRooms(await call(a, 'join', 'rc'), ['rc'], 'A re-join');
  assertRooms(await call(b, 'join', 'rc'), ['rc'], 'B re-join');
  assertOk(await call(a, 'publish', { to: 'rc', event: 'after', data: { again: true } }), 'publish after restart');
  assert.deepEqual((await rb.waitFor('after'))[0], { again: true });
  b.on('ping-back', (d, ack) => ack(d));
  const r = await call(a, 'publish', { to: 'rc', event: 'ping-back', data: 'pong', timeout: 3000 });
  assert.deepEqual(r, { ok: true, responses: ['pong'] }, `publish-with-ack after restart: ${JSON.stringify(r)}`);
  process.stdout.write('RECONNECTED\n');
}, { timeoutMs: 25000 });
