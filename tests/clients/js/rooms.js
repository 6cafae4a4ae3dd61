'use strict';
// Scenario d: join/publish/leave between three clients.
const { assert, usage, run, connect, call, Recorder, sleep, assertOk, assertRooms } = require('./lib');

const url = usage('rooms');
const QUIET_MS = 250; // how long to wait before asserting that something was NOT delivered

run('rooms', async () => {
  const a = await connect(url, { transports: ['websocket'] });
  const b = await connect(url, { transports: ['websocket'] });
  const c = await connect(url); // polling + upgrade
  const ra = new Recorder(a, 'A');
  const rb = new Recorder(b, 'B');
  const rc = new Recorder(c, 'C');

  assertRooms(await call(a, 'join', 'r1'), ['r1'], 'A join r1');
  assertRooms(await call(b, 'join', ['r1', 'r2']), ['r1', 'r2'], 'B join [r1,r2]');
  assertRooms(await call(c, 'join', 'r2'), ['r2'], 'C join r2');

  // room delivery, self:false (default) excludes the sender
  const d1 = { n: 1, s: 'ünïcödé ✓', nested: { arr: [1, 2, { x: null }] } };
  assertOk(await call(a, 'publish', { to: 'r1', event: 'm1', data: d1 }), 'publish m1');
  assert.deepEqual((await rb.waitFor('m1'))[0], d1, 'B m1 payload');
  await sleep(QUIET_MS);
  ra.assertCount('m1', 0); rc.assertCount('m1', 0);

  // explicit self:false
  assertOk(await call(a, 'publish', { to: 'r1', event: 'm1b', data: 'x', self: false }), 'publish m1b');
  await rb.waitFor('m1b');
  await sleep(QUIET_MS);
  ra.assertCount('m1b', 0);

  // self:true includes the sender
  assertOk(await call(a, 'publish', { to: 'r1', event: 'm2', data: 'x', self: true }), 'publish m2');
  assert.equal((await ra.waitFor('m2'))[0], 'x');
  assert.equal((await rb.waitFor('m2'))[0], 'x');
  await sleep(QUIET_MS);
  rc.assertCount('m2', 0);

  // list of rooms: B is in both and must get it exactly once; the sender C is excluded
  assertOk(await call(c, 'publish', { to: ['r1', 'r2'], event: 'm3', data: [1, 2] }), 'publish m3');
  assert.deepEqual((await ra.waitFor('m3'))[0], [1, 2]);
  assert.deepEqual((await rb.waitFor('m3'))[0], [1, 2]);
  await sleep(QUIET_MS);
  ra.assertCount('m3', 1); rb.assertCount('m3', 1); rc.assertCount('m3', 0);

  // after leave, no more delivery
  assertRooms(await call(b, 'leave', 'r1'), ['r2'], 'B leave r1');
  assertOk(await call(a, 'publish', { to: 'r1', event: 'm4', data: 4, self: true }), 'publish m4');
  await ra.waitFor('m4');
  await sleep(QUIET_MS);
  rb.assertCount('m4', 0); rc.assertCount('m4', 0);

  // no `to`: whole namespace (minus the sender)
  assertOk(await call(a, 'publish', { event: 'm5', data: { all: true } }), 'publish m5');
  assert.deepEqual((await rb.waitFor('m5'))[0], { all: true });
  assert.deepEqual((await rc.waitFor('m5'))[0], { all: true });
  await sleep(QUIET_MS);
  ra.assertCount('m5', 0);

  // scalar payloads survive the relay
  for (const [i, v] of [0, false, 'str', 3.5, null].entries()) {
    assertOk(await call(a, 'publish', { to: 'r2', event: `scalar${i}`, data: v }), `publish scalar ${v}`);
    assert.deepEqual((await rb.waitFor(`scalar${i}`))[0], v, `scalar ${JSON.stringify(v)}`);
  }

  // invalid publish shapes: error ack, socket stays connected and usable
  const invalid = [
    'not-an-object',
    42,
    [1, 2],
    {},
    { event: 123 },
    { event: 'x', to: 5 },
    { event: 'x', to: [1, 2] },
  ];
  for (const bad of invalid) {
    const r = await call(a, 'publish', bad);
    assert.ok(r && typeof r === 'object', `invalid publish ${JSON.stringify(bad)}: ack not an object: ${JSON.stringify(r)}`);
    assert.equal(r.ok, false, `invalid publish ${JSON.stringify(bad)} should fail, got ${JSON.stringify(r)}`);
    assert.equal(typeof r.error, 'string', `invalid publish ${JSON.stringify(bad)}: error must be a string: ${JSON.stringify(r)}`);
  }
  for (const bad of [42, { room: 'x' }, [1]]) {
    const r = await call(a, 'join', bad);
    assert.equal(r && r.ok, false, `invalid join ${JSON.stringify(bad)} should fail, got ${JSON.stringify(r)}`);
  }
  assert.equal(a.connected, true, 'A disconnected after invalid publishes');
  assertRooms(await call(a, 'join', 'r9'), ['r1', 'r9'], 'A join after invalid publishes');
  assertOk(await call(a, 'publish', { to: 'r2', event: 'm6', data: 'still-works' }), 'publish m6');
  assert.equal((await rb.waitFor('m6'))[0], 'still-works');
  assert.equal((await rc.waitFor('m6'))[0], 'still-works');
});
