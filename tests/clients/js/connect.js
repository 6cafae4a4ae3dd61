'use strict';
// Scenario a: connect over WebSocket only, over polling only, and polling-then-upgrade (default transports).
const { assert, usage, run, client, connect, connected, call, Recorder, withTimeout, assertRooms } = require('./lib');

const url = usage('connect');

run('connect', async () => {
  // 1. WebSocket only.
  const ws = await connect(url, { transports: ['websocket'] });
  assert.equal(ws.io.engine.transport.name, 'websocket', 'websocket-only client is not on websocket');
  assert.equal(typeof ws.id, 'string', 'socket id missing');
  assertRooms(await call(ws, 'join', 'lobby'), ['lobby'], 'join over websocket');

  // 2. Polling only (no upgrade).
  const poll = await connect(url, { transports: ['polling'] });
  assert.equal(poll.io.engine.transport.name, 'polling', 'polling-only client is not on polling');
  assertRooms(await call(poll, 'join', 'lobby'), ['lobby'], 'join over polling');

  // 3. Default transports: starts with polling, must upgrade to websocket.
  const up = client(url);
  let openTransport = null;
  up.io.on('open', () => { openTransport = up.io.engine.transport.name; });
  await connected(up, 'connect with default transports');
  assert.equal(openTransport, 'polling', 'default client did not open over polling');
  if (up.io.engine.transport.name !== 'websocket') {
    await withTimeout(new Promise((resolve) => up.io.engine.once('upgrade', resolve)), 5000, 'engine upgrade event');
  }
  assert.equal(up.io.engine.transport.name, 'websocket', 'transport after upgrade is not websocket');
  assertRooms(await call(up, 'join', ['lobby', 'up']), ['lobby', 'up'], 'join after upgrade');

  // 4. Relay between the three transports.
  const recWs = new Recorder(ws, 'ws');
  const recPoll = new Recorder(poll, 'poll');
  const recUp = new Recorder(up, 'upgraded');
  const sent = { hello: 'world', n: 1 };
  const r = await call(ws, 'publish', { to: 'lobby', event: 'hi', data: sent, self: true });
  assert.equal(r.ok, true, `publish failed: ${JSON.stringify(r)}`);
  for (const rec of [recWs, recPoll, recUp]) {
    const [data] = await rec.waitFor('hi');
    assert.deepEqual(data, sent, `${rec.label} got wrong payload`);
  }
  // And from the polling client.
  const r2 = await call(poll, 'publish', { to: 'up', event: 'from-poll', data: [1, 'two', null] });
  assert.equal(r2.ok, true, `publish from polling failed: ${JSON.stringify(r2)}`);
  assert.deepEqual((await recUp.waitFor('from-poll'))[0], [1, 'two', null]);
});
