#!/usr/bin/env python3
"""A group-chat backend for the switchboard gateway, in Python's standard library only.

The gateway holds the Socket.IO connections; this process holds the logic and the data:

* POST /connect      -- a client connects: its auth token names a user (refused otherwise).
* POST /event        -- "joinRoom" (authorized against channel membership) and "message:send"
                        (stored in SQLite, then emitted as "message:new" to channel-<id>, and
                        acknowledged with the stored id).
* POST /disconnect   -- recorded as the user's last-seen time.

A message mentioning "@name" sends that user a "notification" through the gateway's HTTP
server API (POST /api/v1/emit to the room user:<id>), wherever the user is connected.

Run:  python3 chat_backend.py --seed --gateway-api http://127.0.0.1:9464 --api-token TOKEN
and start the gateway with  --proxy-url http://127.0.0.1:8000 --api-token TOKEN.
"""

import argparse
import hmac
import json
import logging
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger("chat-backend")
MAX_BODY = 1 << 20
MAX_CONTENT = 4000

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, token TEXT UNIQUE NOT NULL, last_seen REAL
);
CREATE TABLE IF NOT EXISTS channel_members (
    channel_id INTEGER NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (channel_id, user_id)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, channel_id INTEGER NOT NULL, user_id TEXT NOT NULL,
    content TEXT NOT NULL, created_at TEXT NOT NULL
);
"""

# Demo data for --seed: two users; both in channel 5, only nikhil in channel 6.
SEED_USERS = [("nikhil", "Nikhil", "token-nikhil"), ("mridul", "Mridul", "token-mridul")]
SEED_MEMBERS = [(5, "nikhil"), (5, "mridul"), (6, "nikhil")]


class Store:
    """The chat's SQLite database; one connection shared under a lock."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.lock = threading.Lock()
        with self.lock, self.db:
            self.db.executescript(SCHEMA)

    def seed(self):
        with self.lock, self.db:
            self.db.executemany("INSERT OR IGNORE INTO users (id, name, token) VALUES (?, ?, ?)", SEED_USERS)
            self.db.executemany("INSERT OR IGNORE INTO channel_members VALUES (?, ?)", SEED_MEMBERS)

    def user_by_token(self, token):
        with self.lock:
            for user_id, name, known in self.db.execute("SELECT id, name, token FROM users"):
                if hmac.compare_digest(known.encode(), token.encode()):
                    return user_id, name
        return None

    def user_name(self, user_id):
        with self.lock:
            row = self.db.execute("SELECT name FROM users WHERE id = ?", (user_id,)).fetchone()
        return row[0] if row else None

    def is_member(self, channel_id, user_id):
        with self.lock:
            row = self.db.execute(
                "SELECT 1 FROM channel_members WHERE channel_id = ? AND user_id = ?", (channel_id, user_id)
            ).fetchone()
        return row is not None

    def save_message(self, channel_id, user_id, content):
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock, self.db:
            cur = self.db.execute(
                "INSERT INTO messages (channel_id, user_id, content, created_at) VALUES (?, ?, ?, ?)",
                (channel_id, user_id, content, created),
            )
        return cur.lastrowid, created

    def seen(self, user_id):
        with self.lock, self.db:
            self.db.execute("UPDATE users SET last_seen = ? WHERE id = ?", (time.time(), user_id))


class Gateway:
    """The gateway's HTTP server API."""

    def __init__(self, base_url, token):
        self.base_url = base_url.rstrip("/") if base_url else None
        self.token = token

    def emit(self, rooms, event, data):
        if not self.base_url:
            LOG.warning("no --gateway-api: %s to %s not sent", event, rooms)
            return
        body = json.dumps({"rooms": rooms, "event": event, "data": data}).encode()
        req = urllib.request.Request(
            self.base_url + "/api/v1/emit",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.token},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                res.read()
        except (urllib.error.URLError, OSError) as err:
            LOG.warning("gateway API emit failed: %s; check --gateway-api and --api-token", err)

    def emit_later(self, rooms, event, data):
        threading.Thread(target=self.emit, args=(rooms, event, data), daemon=True).start()


class Chat:
    """The three hooks."""

    def __init__(self, store, gateway):
        self.store = store
        self.gateway = gateway

    def connect(self, req):
        auth = req.get("auth") or {}
        token = auth.get("token") if isinstance(auth, dict) else None
        found = self.store.user_by_token(token) if isinstance(token, str) else None
        if not found:
            return {"accept": False, "message": "unauthorized", "data": {"reason": "unknown token"}}
        user_id, name = found
        LOG.info("%s connected on socket %s", user_id, req.get("socket"))
        return {"accept": True, "user": user_id, "data": {"name": name}}

    def event(self, req):
        user = req.get("user")
        args = req.get("args") or []
        name = req.get("event")
        if not isinstance(user, str):
            return {"ack": {"ok": False, "error": "not signed in"}}
        if name == "joinRoom":
            return self.join_room(user, args[0] if args else None)
        if name == "message:send":
            return self.send_message(user, args[0] if args else None)
        return {"ack": {"ok": False, "error": f"unknown event {name!r}"}}

    def join_room(self, user, channel_id):
        if not isinstance(channel_id, int) or isinstance(channel_id, bool):
            return {"ack": {"ok": False, "error": "joinRoom takes a channel id (a number)"}}
        if not self.store.is_member(channel_id, user):
            return {"ack": {"ok": False, "error": f"not a member of channel {channel_id}"}}
        return {"join": [f"channel-{channel_id}"], "ack": {"ok": True, "room": f"channel-{channel_id}"}}

    def send_message(self, user, data):
        if not isinstance(data, dict):
            return {"ack": {"ok": False, "error": "message:send takes {channelId, content}"}}
        channel_id, content = data.get("channelId"), data.get("content")
        if not isinstance(channel_id, int) or not isinstance(content, str) or not content.strip():
            return {"ack": {"ok": False, "error": "message:send takes {channelId: number, content: text}"}}
        if len(content) > MAX_CONTENT:
            return {"ack": {"ok": False, "error": f"content is longer than {MAX_CONTENT} characters"}}
        if not self.store.is_member(channel_id, user):
            return {"ack": {"ok": False, "error": f"not a member of channel {channel_id}"}}
        message_id, created = self.store.save_message(channel_id, user, content)
        message = {
            "id": message_id,
            "channelId": channel_id,
            "userId": user,
            "userName": self.store.user_name(user),
            "content": content,
            "createdAt": created,
        }
        for word in content.split():
            mentioned = word.lstrip("@").rstrip(",.!?:;")
            if word.startswith("@") and mentioned != user and self.store.is_member(channel_id, mentioned):
                note = {"from": user, "channelId": channel_id, "messageId": message_id}
                self.gateway.emit_later([f"user:{mentioned}"], "notification", note)
        return {
            "ack": {"ok": True, "id": message_id},
            "emits": [{"to": [f"channel-{channel_id}"], "event": "message:new", "data": message, "self": True}],
        }

    def disconnect(self, req):
        user = req.get("user")
        if isinstance(user, str):
            self.store.seen(user)
        LOG.info("socket %s of %s left: %s", req.get("socket"), user, req.get("reason"))
        return {}


def handler_for(chat, secret):
    hooks = {"connect": chat.connect, "event": chat.event, "disconnect": chat.disconnect}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            LOG.debug("%s " + fmt, self.address_string(), *args)

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            hook = hooks.get(self.path.rstrip("/").rsplit("/", 1)[-1])
            length = int(self.headers.get("Content-Length") or 0)
            if hook is None:
                return self.answer(404, {"error": "unknown hook"})
            if length > MAX_BODY:
                return self.answer(413, {"error": "body too large"})
            given = self.headers.get("X-Switchboard-Secret", "")
            if secret and not hmac.compare_digest(given.encode(), secret.encode()):
                return self.answer(401, {"error": "bad shared secret"})
            try:
                req = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self.answer(400, {"error": "invalid JSON"})
            try:
                return self.answer(200, hook(req))
            except Exception:  # a bug in a hook must not kill the server
                LOG.exception("hook failed")
                return self.answer(500, {"error": "internal error"})

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:8000", help="host:port of the hooks (default %(default)s)")
    p.add_argument("--db", default="chat.db", help="SQLite file (default %(default)s)")
    p.add_argument("--seed", action="store_true", help="add the demo users and channels")
    p.add_argument("--gateway-api", help="the gateway's admin URL, e.g. http://127.0.0.1:9464")
    p.add_argument("--api-token", default="", help="the gateway's --api-token")
    p.add_argument("--secret", default="", help="expected X-Switchboard-Secret header (the gateway's --proxy-header)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    store = Store(args.db)
    if args.seed:
        store.seed()
    chat = Chat(store, Gateway(args.gateway_api, args.api_token))
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler_for(chat, args.secret))
    server.daemon_threads = True
    bound = server.server_address
    print(f"chat backend listening on http://{bound[0]}:{bound[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
