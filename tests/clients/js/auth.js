'use strict';
// Scenario f: auth payload + connect_error. Server must be started with `--auth-token s3cret`
// (or pass the token as the 2nd argument).
const { assert, usage, run, client, connect, connectError, call, assertRooms } = require('./lib');

const url = usage('auth', '[token]');
const token = process.argv[3] || 's3cret';

async function refused(opts, reason, what) {
  const s = client(url, opts);
  const err = await connectError(s, what);
  assert.equal(err.message, 'unauthorized', `${what}: connect_error message ${JSON.stringify(err.message)}`);
  assert.ok(err.data && typeof err.data === 'object', `${what}: connect_error without data: ${JSON.stringify(err.data)}`);
  assert.equal(err.data.reason, reason, `${what}: err.data = ${JSON.stringify(err.data)}`);
  assert.equal(s.connected, false, `${what}: socket connected anyway`);
  s.close();
}

run('auth', async () => {
  // correct token, websocket and polling+upgrade
  const ok1 = await connect(url, { transports: ['websocket'], auth: { token } });
  assertRooms(await call(ok1, 'join', 'authed'), ['authed'], 'join with good token (websocket)');
  const ok2 = await connect(url, { auth: { token } });
  assertRooms(await call(ok2, 'join', 'authed'), ['authed'], 'join with good token (polling)');
  // auth given as a callback (evaluated per connection attempt)
  const ok3 = await connect(url, { transports: ['websocket'], auth: (cb) => cb({ token }) });
  assert.equal(ok3.connected, true);

  await refused({ transports: ['websocket'], auth: { token: 'wrong' } }, 'bad token', 'wrong token (websocket)');
  await refused({ transports: ['polling'], auth: { token: 'wrong' } }, 'bad token', 'wrong token (polling)');
  await refused({ transports: ['websocket'] }, 'missing token', 'no auth (websocket)');
  await refused({ transports: ['websocket'], auth: { other: 'x' } }, 'missing token', 'auth without token');
  await refused({ transports: ['polling'] }, 'missing token', 'no auth (polling)');

  // the good sockets are unaffected
  assertRooms(await call(ok1, 'join', 'still'), ['authed', 'still'], 'good socket still usable');
});
