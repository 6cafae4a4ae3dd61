// Group chat on the Switchboard gateway's relay events (no server code): `join` a room, then
// `publish` to it. The gateway leaves the sender out of a publish unless `self` is true, so
// "X is typing" reaches everyone but X.
//
// Events published to the room:
//   chat:message  {from, text}   a message (sent with self: true, so the sender sees it echoed)
//   chat:typing   {from}         the sender is typing (at most every 2 s)
//   user:online   {name}         someone joined; members answer with user:here
//   user:here     {name}         "I am in the room too"
//   user:offline  {name}         someone left or closed the page
"use strict";

const $ = (id) => document.getElementById(id);
// Same origin: the page is served by the gateway (--static-dir) or through the balancer.
const socket = io({ withCredentials: true });

let me = null;
let room = null;
const members = new Set();
let lastTyping = 0;
let typingTimer = null;

function line(html, notice) {
  const li = document.createElement("li");
  if (notice) li.className = "notice";
  li.innerHTML = html;
  $("log").appendChild(li);
  $("log").scrollTop = $("log").scrollHeight;
}

function escape(s) {
  const d = document.createElement("div");
  d.textContent = String(s);
  return d.innerHTML;
}

function renderMembers() {
  $("members").innerHTML = [...members].sort().map((m) => `<li>${escape(m)}</li>`).join("");
}

function publish(event, data, self = false) {
  return socket.emitWithAck("publish", { to: room, event, data, self });
}

async function join(name, roomName) {
  const ack = await socket.emitWithAck("join", roomName);
  if (!ack || !ack.ok) {
    line(`could not join ${escape(roomName)}: ${escape(ack && ack.error)}`, true);
    return;
  }
  me = name;
  room = roomName;
  members.clear();
  members.add(me);
  renderMembers();
  $("chat").classList.add("joined");
  $("join").disabled = true;
  line(`you joined <b>${escape(room)}</b> as <b>${escape(me)}</b>`, true);
  await publish("user:online", { name: me });
}

async function leave() {
  if (!room) return;
  await publish("user:offline", { name: me });
  await socket.emitWithAck("leave", room);
  line(`you left ${escape(room)}`, true);
  room = null;
  $("chat").classList.remove("joined");
  $("join").disabled = false;
}

socket.on("connect", () => {
  $("status").textContent = `connected (${socket.io.engine.transport.name})`;
  // After a reconnect (for example to another gateway) the room must be joined again.
  if (room) join(me, room);
});
socket.io.engine.on("upgrade", (t) => {
  $("status").textContent = `connected (${t.name})`;
});
socket.on("disconnect", (reason) => {
  $("status").textContent = `disconnected (${reason}), reconnecting…`;
});

socket.on("chat:message", ({ from, text }) => {
  line(`<b>${escape(from)}</b>: ${escape(text)}`);
  if (from !== me) $("typing").textContent = "";
});

socket.on("chat:typing", ({ from }) => {
  $("typing").textContent = `${from} is typing…`;
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => ($("typing").textContent = ""), 3000);
});

socket.on("user:online", ({ name }) => {
  members.add(name);
  renderMembers();
  line(`${escape(name)} is online`, true);
  publish("user:here", { name: me });
});

socket.on("user:here", ({ name }) => {
  members.add(name);
  renderMembers();
});

socket.on("user:offline", ({ name }) => {
  members.delete(name);
  renderMembers();
  line(`${escape(name)} went offline`, true);
});

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name").value.trim();
  const roomName = $("room").value.trim();
  if (name && roomName) join(name, roomName);
});

$("send-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text || !room) return;
  $("text").value = "";
  publish("chat:message", { from: me, text }, true);
});

$("text").addEventListener("input", () => {
  const now = Date.now();
  if (room && now - lastTyping > 2000) {
    lastTyping = now;
    publish("chat:typing", { from: me });
  }
});

$("leave").addEventListener("click", leave);

// Best effort: tell the room when the page goes away.
window.addEventListener("pagehide", () => {
  if (room) socket.emit("publish", { to: room, event: "user:offline", data: { name: me } });
});
