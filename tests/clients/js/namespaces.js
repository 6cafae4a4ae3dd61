'use strict';
// Scenario e: namespaces. Server must be started with `--namespace /chat`.
// `/` and `/chat` are isolated; an unknown namespace is refused with connect_error "Invalid namespace" and the
// shared (multiplexed) Engine.IO connection stays usable.
const { assert, usage, run, client, connect, connected, connectError, call, Recorder, sleep, assertOk, assertRooms } = require('./lib');

const url = usage('namespaces');
const QUIET_MS = 250;

run('namespaces', async () => {
  // A: one Engine.IO connection multiplexing `/` and `/chat` (same Manager).
  const aRoot = await connect(url, { transports: ['websocket'], forceNew: false });
  const aChat = client(`${url}/chat`, { transports: ['websocket'], forceNew: false });
  await connected(aChat, 'connect to /chat (multiplexed)');
  assert.ok(aChat.io === aRoot.io, 'A sockets are not multiplexed on one Manager');
  assert.notEqual(aChat.id, aRoot.id, 'each namespace socket has its own id');
  // B: /chat only, own connection (polling + upgrade). C: / only.
  const bChat = await connect(`${url}/chat`);
  const cRoot = await connect(url, { transports: ['websocket'] });

  const rec = {
    aRoot: new Recorder(aRoot, 'A/'), aChat: new Recorder(aChat, 'A/chat'),
    bChat: new Recorder(bChat, 'B/chat'), cRoot: new Recorder(cRoot, 'C/'),
  };

  // whole-namespace publish in /chat reaches only /chat sockets
  assertOk(await call(aChat, 'publish', { event: 'chat-msg', data: 'in chat', self: true }), 'publish in /chat');
  assert.equal((await rec.aChat.waitFor('chat-msg'))[0], 'in chat');
  assert.equal((await rec.bChat.waitFor('chat-msg'))[0], 'in chat');
  // whole-namespace publish in / reaches only / sockets
  assertOk(await call(cRoot, 'publish', { event: 'root-msg', data: 'in root', self: true }), 'publish in /');
  assert.equal((await rec.aRoot.waitFor('root-msg'))[0], 'in root');
  assert.equal((await rec.cRoot.waitFor('root-msg'))[0], 'in root');
  await sleep(QUIET_MS);
  rec.aRoot.assertCount('chat-msg', 0); rec.cRoot.assertCount('chat-msg', 0);
  rec.aChat.assertCount('root-msg', 0); rec.bChat.assertCount('root-msg', 0);

  // rooms are per namespace: same room name in both
  assertRooms(await call(bChat, 'join', 'same'), ['same'], 'B/chat join same');
  assertRooms(await call(cRoot, 'join', 'same'), ['same'], 'C/ join same');
  assertRooms(await call(aRoot, 'join', 'other'), ['other'], 'A/ join other (room sets are per namespace)');
  assertRooms(await call(aChat, 'join', 'mine'), ['mine'], 'A/chat join mine');
  assertOk(await call(aChat, 'publish', { to: 'same', event: 'room-msg', data: 1 }), 'publish to same in /chat');
  await rec.bChat.waitFor('room-msg');
  await sleep(QUIET_MS);
  rec.cRoot.assertCount('room-msg', 0);

  // unknown namespace on the multiplexed connection
  const nope = client(`${url}/nope`, { transports: ['websocket'], forceNew: false });
  const err = await connectError(nope, 'connect to /nope');
  assert.equal(err.message, 'Invalid namespace', `unexpected connect_error: ${err.message} ${JSON.stringify(err.data)}`);
  assert.equal(nope.connected, false);
  // ... the other sockets on that connection keep working
  assert.equal(aRoot.connected && aChat.connected, true, 'multiplexed sockets dropped after /nope refusal');
  assertRooms(await call(aChat, 'join', 'after-nope'), ['mine', 'after-nope'], 'A/chat usable after /nope');
  assertRooms(await call(aRoot, 'join', 'after-nope'), ['other', 'after-nope'], 'A/ usable after /nope');

  // unknown namespace on its own connection
  const nope2 = client(`${url}/nope`, { transports: ['polling'] });
  const err2 = await connectError(nope2, 'connect to /nope over polling');
  assert.equal(err2.message, 'Invalid namespace');
});
