'use strict';
// The Node.js contender for switchboard-load: socket.io 4 on the relay API of the switchboard
// gateway (README.md, "Relay events"): `join` / `leave` (a room or an array) acked with
// {ok, rooms}, and `publish` {to, event, data, self} acked with {ok: true}.
// WebSocket transport only, per-message deflate off. With REDIS_URL set it joins a cluster
// through @socket.io/redis-adapter 8 (classic pub/sub); otherwise rooms are in memory.
//
// usage: PORT=3000 [REDIS_URL=redis://127.0.0.1:6379] node server.js

const http = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 3000);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write(`server.js: PORT must be a TCP port, got ${process.env.PORT}\n`);
  process.exit(64);
}
const MAX_ROOM = 256;

function roomList(value) {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) return null;
  for (const r of list) {
    if (typeof r !== 'string' || r.length === 0 || r.length > MAX_ROOM) return null;
  }
  return list;
}

function currentRooms(socket) {
  return [...socket.rooms].filter((r) => r !== socket.id);
}

function reply(ack, value) {
  if (typeof ack === 'function') ack(value);
}

function relay(io, socket) {
  socket.on('join', (rooms, ack) => {
    const list = roomList(rooms);
    if (!list) return reply(ack, { ok: false, error: 'invalid room' });
    socket.join(list);
    reply(ack, { ok: true, rooms: currentRooms(socket) });
  });
  socket.on('leave', (rooms, ack) => {
    const list = roomList(rooms);
    if (!list) return reply(ack, { ok: false, error: 'invalid room' });
    for (const r of list) socket.leave(r);
    reply(ack, { ok: true, rooms: currentRooms(socket) });
  });
  socket.on('publish', (req, ack) => {
    if (!req || typeof req !== 'object' || typeof req.event !== 'string') {
      return reply(ack, { ok: false, error: 'invalid publish' });
    }
    let target = req.self === true ? io : socket.broadcast;
    if (req.to !== undefined) {
      const list = roomList(req.to);
      if (!list) return reply(ack, { ok: false, error: 'invalid room' });
      target = target.to(list);
    }
    target.emit(req.event, req.data);
    reply(ack, { ok: true });
  });
}

async function main() {
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ['websocket'],
    perMessageDeflate: false,
    maxHttpBufferSize: 1e6,
  });
  if (process.env.REDIS_URL) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    pub.on('error', (e) => process.stderr.write(`redis: ${e.message}\n`));
    sub.on('error', (e) => process.stderr.write(`redis: ${e.message}\n`));
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  io.on('connection', (socket) => relay(io, socket));
  httpServer.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
    process.stderr.write(`node peer listening on 127.0.0.1:${port}${process.env.REDIS_URL ? ' (redis)' : ''}\n`);
  });
  process.on('SIGTERM', () => io.close(() => process.exit(0)));
}

main().catch((e) => {
  process.stderr.write(`server.js: ${e.stack || e}\n`);
  process.exit(1);
});
