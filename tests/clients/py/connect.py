"""Scenario a: connect over WebSocket only, polling only, and polling-then-upgrade (default transports)."""
from common import Client, assert_ok, assert_rooms, check, eq, run, usage

URL = usage("connect")


def scenario():
    ws = Client("ws").connect(URL, transports=["websocket"])
    eq(ws.sio.transport(), "websocket", "websocket-only transport")
    check(isinstance(ws.sio.get_sid("/"), str), "no socket id for /")
    assert_rooms(ws.call("join", "lobby"), ["lobby"], "join over websocket")

    poll = Client("poll").connect(URL, transports=["polling"])
    eq(poll.sio.transport(), "polling", "polling-only transport")
    assert_rooms(poll.call("join", "lobby"), ["lobby"], "join over polling")

    # default transports: the sync client handshakes over polling and upgrades before connect() returns
    up = Client("upgraded").connect(URL)
    eq(up.sio.transport(), "websocket", "transport after polling->websocket upgrade")
    assert_rooms(up.call("join", ["lobby", "up"]), ["lobby", "up"], "join after upgrade")

    sent = {"hello": "world", "n": 1}
    assert_ok(ws.call("publish", {"to": "lobby", "event": "hi", "data": sent, "self": True}), "publish hi")
    for c in (ws, poll, up):
        eq(c.wait_for("hi")[0], sent, f"{c.label} payload")
    assert_ok(poll.call("publish", {"to": "up", "event": "from-poll", "data": [1, "two", None]}), "publish from poll")
    eq(up.wait_for("from-poll")[0], [1, "two", None], "from-poll payload")


run("connect", scenario)
