"""Scenario g: automatic reconnection after a gateway restart.

Protocol with the harness: prints READY on stdout once both clients are connected and joined; the harness then
kills the gateway and starts a new one on the SAME port; both clients must reconnect on their own
(reconnection=True), re-join their room, and a publish round-trip must work; prints RECONNECTED and exits 0.
"""
from common import Client, assert_ok, assert_rooms, check, eq, log, run, say, usage

URL = usage("reconnect")
RECONNECT = {"reconnection": True, "reconnection_delay": 0.1, "reconnection_delay_max": 0.5,
             "randomization_factor": 0.05}


def scenario():
    a = Client("A", **RECONNECT).connect(URL, transports=["websocket"])
    b = Client("B", **RECONNECT).connect(URL)  # polling + upgrade
    assert_rooms(a.call("join", "rc"), ["rc"], "A join")
    assert_rooms(b.call("join", "rc"), ["rc"], "B join")
    assert_ok(a.call("publish", {"to": "rc", "event": "before", "data": 1}), "publish before restart")
    b.wait_for("before")
    old = (a.sio.get_sid("/"), b.sio.get_sid("/"))

    say("READY")
    for c in (a, b):
        c.wait_for("<disconnect>", timeout=15)
        log(f"{c.label} disconnected: {c.all('<disconnect>')[0]!r}")
    for c in (a, b):
        c.wait_for("<connect>", n=2, timeout=15)
        log(f"{c.label} reconnected as {c.sio.get_sid('/')} over {c.sio.transport()}")
    check(a.sio.get_sid("/") != old[0], "A kept its old socket id")
    check(b.sio.get_sid("/") != old[1], "B kept its old socket id")

    assert_rooms(a.call("join", "rc"), ["rc"], "A re-join")
    assert_rooms(b.call("join", "rc"), ["rc"], "B re-join")
    assert_ok(a.call("publish", {"to": "rc", "event": "after", "data": {"again": True}}), "publish after restart")
    eq(b.wait_for("after")[0], {"again": True}, "B after payload")
    b.responders[("/", "ping-back")] = lambda d: d
    r = a.call("publish", {"to": "rc", "event": "ping-back", "data": "pong", "timeout": 3000})
    eq(r, {"ok": True, "responses": ["pong"]}, "publish-with-ack after restart")
    say("RECONNECTED")


run("reconnect", scenario, timeout=25)
