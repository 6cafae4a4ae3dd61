'use strict';
// Scenario b: acks both ways.
//  client -> server: `join` / `leave` with an ack return {ok, rooms}.
//  server -> client: `publish` with `timeout` makes the server broadcast WITH ACK; the recipients' handlers call
//  their ack callback and the publisher gets {ok:true, responses:[...]}; a recipient that never acks yields
//  {ok:false, error:"timeout", responses:[partial]}.
const { assert, usage, run, connect, call, assertRooms } = require('./lib');

const url = usage('ack');

run('ack', async () => {
  const a = await connect(url, { transports: ['websocket'] });
  const b = await connect(url, { transports: ['websocket'] });
  const c = await connect(url); // polling + upgrade

  // client -> server acks
  assertRooms(await call(a, 'join', 'r-ack'), ['r-ack'], 'a join r-ack');
  assertRooms(await call(a, 'join', ['x', 'y']), ['r-ack', 'x', 'y'], 'a join [x,y]');
  assertRooms(await call(a, 'leave', 'x'), ['r-ack', 'y'], 'a leave x');
  assertRooms(await call(a, 'leave', ['y']), ['r-ack'], 'a leave [y]');
  assert.ok(!(await call(a, 'join', 'r-ack')).rooms.includes(a.id), 'rooms must exclude the socket id');
  assertRooms(await call(b, 'join', 'r-ack'), ['r-ack'], 'b join r-ack');

  // server -> client acks
  let bGot = null;
  b.on('ask', (data, ack) => {
    bGot = data;
    assert.equal(typeof ack, 'function', 'recipient handler did not get an ack callback');
    ack({ answer: data.q * 2, from: 'b' }, 'second-arg-ignored');
  });
  const r = await call(a, 'publish', { to: 'r-ack', event: 'ask', data: { q: 21 }, timeout: 3000 });
  assert.deepEqual(bGot, { q: 21 }, 'b did not receive the ask payload');
  assert.deepEqual(r, { ok: true, responses: [{ answer: 42, from: 'b' }] }, `publish-with-ack reply: ${JSON.stringify(r)}`);

  // two responders, publisher included via self:true
  assertRooms(await call(c, 'join', 'r-ack'), ['r-ack'], 'c join r-ack');
  c.on('ask', (data, ack) => ack({ answer: data.q + 1, from: 'c' }));
  a.on('ask', (data, ack) => ack({ answer: 0, from: 'a' }));
  const r2 = await call(a, 'publish', { to: 'r-ack', event: 'ask', data: { q: 1 }, self: true, timeout: 3000 });
  assert.equal(r2.ok, true, `two-responder publish: ${JSON.stringify(r2)}`);
  const sorted = [...r2.responses].sort((x, y) => x.from.localeCompare(y.from));
  assert.deepEqual(sorted, [{ answer: 0, from: 'a' }, { answer: 2, from: 'b' }, { answer: 2, from: 'c' }],
    `responses: ${JSON.stringify(r2.responses)}`);

  // a recipient that never acks -> timeout with partial responses
  c.off('ask');
  c.on('ask', () => { /* never acks */ });
  const t0 = Date.now();
  const r3 = await call(a, 'publish', { to: 'r-ack', event: 'ask', data: { q: 5 }, timeout: 400 });
  const took = Date.now() - t0;
  assert.equal(r3.ok, false, `expected timeout, got ${JSON.stringify(r3)}`);
  assert.equal(r3.error, 'timeout', `expected error "timeout", got ${JSON.stringify(r3)}`);
  assert.deepEqual(r3.responses, [{ answer: 10, from: 'b' }], `partial responses: ${JSON.stringify(r3)}`);
  assert.ok(took >= 300, `timeout reply came too early (${took} ms)`);

  // no recipients at all -> immediate ok with empty responses
  const r4 = await call(a, 'publish', { to: 'nobody-here', event: 'ask', data: {}, timeout: 3000 });
  assert.deepEqual(r4, { ok: true, responses: [] }, `empty room publish-with-ack: ${JSON.stringify(r4)}`);
});
