'use strict';
// Scenario c: binary payloads (Buffer at top level, nested in objects/arrays, empty, large), over websocket and
// over long-polling, plus binary inside an ack (broadcast-with-ack response).
const crypto = require('node:crypto');
const { assert, usage, run, connect, call, Recorder, assertRooms } = require('./lib');

const url = usage('binary');

function assertSameBinary(got, want, what) {
  assert.ok(Buffer.isBuffer(got), `${what}: expected a Buffer, got ${typeof got} ${JSON.stringify(got)}`);
  assert.ok(got.equals(want), `${what}: bytes differ (got ${got.length} bytes, want ${want.length})`);
}

run('binary', async () => {
  const pub = await connect(url, { transports: ['websocket'] });
  const wsRx = await connect(url, { transports: ['websocket'] });
  const pollRx = await connect(url, { transports: ['polling'] });
  const pollPub = await connect(url, { transports: ['polling'] });
  for (const [s, n] of [[wsRx, 'wsRx'], [pollRx, 'pollRx']]) {
    assertRooms(await call(s, 'join', 'bin'), ['bin'], `${n} join`);
  }
  const recWs = new Recorder(wsRx, 'wsRx');
  const recPoll = new Recorder(pollRx, 'pollRx');

  const all = Buffer.from([...Array(256).keys()]);
  const big = crypto.randomBytes(100 * 1024);

  // top level
  assert.equal((await call(pub, 'publish', { to: 'bin', event: 'blob', data: all })).ok, true, 'publish top-level');
  for (const rec of [recWs, recPoll]) assertSameBinary((await rec.waitFor('blob'))[0], all, `${rec.label} top-level`);

  // nested, several attachments, plus an empty buffer
  const nested = {
    name: 'file.bin',
    payload: big,
    list: [Buffer.from('héllo', 'utf8'), 1, { deep: Buffer.from([0, 0xff, 0x10]) }, Buffer.alloc(0)],
    meta: { ok: true, n: null },
  };
  assert.equal((await call(pub, 'publish', { to: 'bin', event: 'nested', data: nested })).ok, true, 'publish nested');
  for (const rec of [recWs, recPoll]) {
    const [got] = await rec.waitFor('nested');
    assert.equal(got.name, 'file.bin');
    assert.deepEqual(got.meta, { ok: true, n: null });
    assertSameBinary(got.payload, big, `${rec.label} nested.payload`);
    assert.equal(got.list.length, 4, `${rec.label} nested.list length`);
    assertSameBinary(got.list[0], nested.list[0], `${rec.label} list[0]`);
    assert.equal(got.list[1], 1);
    assertSameBinary(got.list[2].deep, nested.list[2].deep, `${rec.label} list[2].deep`);
    assertSameBinary(got.list[3], nested.list[3], `${rec.label} list[3] (empty)`);
  }

  // publisher on polling (binary POST) to a websocket + polling receiver
  const fromPoll = Buffer.from('sent over polling \x00\x01\x02');
  assert.equal((await call(pollPub, 'publish', { to: 'bin', event: 'pblob', data: [fromPoll] })).ok, true);
  for (const rec of [recWs, recPoll]) assertSameBinary((await rec.waitFor('pblob'))[0][0], fromPoll, `${rec.label} from polling`);

  // binary in acks: recipients answer with a Buffer, the publisher gets it back in `responses`
  wsRx.on('echo-bin', (data, ack) => ack(Buffer.concat([Buffer.from('ws:'), data.bytes])));
  pollRx.on('echo-bin', (data, ack) => ack(Buffer.concat([Buffer.from('poll:'), data.bytes])));
  const r = await call(pub, 'publish', { to: 'bin', event: 'echo-bin', data: { bytes: Buffer.from([1, 2, 3]) }, timeout: 3000 });
  assert.equal(r.ok, true, `binary ack publish: ${JSON.stringify(r)}`);
  assert.equal(r.responses.length, 2);
  const resp = r.responses.map((b) => { assert.ok(Buffer.isBuffer(b), 'ack response is not a Buffer'); return b.toString('latin1'); }).sort();
  assert.deepEqual(resp, ['poll:\x01\x02\x03', 'ws:\x01\x02\x03']);
});
