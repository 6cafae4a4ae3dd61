"""Scenario b: acks both ways.

client -> server: join/leave with an ack return {ok, rooms}.
server -> client: publish with `timeout` makes the server broadcast WITH ACK; the recipients' handlers return a
value (python-socketio sends it as the ack) and the publisher gets {ok:true, responses:[...]}.
"""
import time

from common import Client, assert_rooms, check, eq, run, usage

URL = usage("ack")


def scenario():
    a = Client("A").connect(URL, transports=["websocket"])
    b = Client("B").connect(URL, transports=["websocket"])
    c = Client("C").connect(URL)  # polling + upgrade

    assert_rooms(a.call("join", "r-ack"), ["r-ack"], "A join r-ack")
    assert_rooms(a.call("join", ["x", "y"]), ["r-ack", "x", "y"], "A join [x,y]")
    assert_rooms(a.call("leave", "x"), ["r-ack", "y"], "A leave x")
    assert_rooms(a.call("leave", ["y"]), ["r-ack"], "A leave [y]")
    check(a.sio.get_sid("/") not in a.call("join", "r-ack")["rooms"], "rooms must exclude the socket id")
    assert_rooms(b.call("join", "r-ack"), ["r-ack"], "B join r-ack")

    b.responders[("/", "ask")] = lambda data: {"answer": data["q"] * 2, "from": "b"}
    r = a.call("publish", {"to": "r-ack", "event": "ask", "data": {"q": 21}, "timeout": 3000})
    eq(b.wait_for("ask")[0], {"q": 21}, "B ask payload")
    eq(r, {"ok": True, "responses": [{"answer": 42, "from": "b"}]}, "publish-with-ack reply")

    # three responders, publisher included via self:true
    assert_rooms(c.call("join", "r-ack"), ["r-ack"], "C join r-ack")
    c.responders[("/", "ask")] = lambda data: {"answer": data["q"] + 1, "from": "c"}
    a.responders[("/", "ask")] = lambda data: {"answer": 0, "from": "a"}
    r2 = a.call("publish", {"to": "r-ack", "event": "ask", "data": {"q": 1}, "self": True, "timeout": 3000})
    check(r2.get("ok") is True, f"three-responder publish: {r2!r}")
    eq(sorted(r2["responses"], key=lambda x: x["from"]),
       [{"answer": 0, "from": "a"}, {"answer": 2, "from": "b"}, {"answer": 2, "from": "c"}], "responses")

    # a recipient that answers too late -> timeout with partial responses
    # (python-socketio always acks an event that carries an id, so "never" = after the deadline)
    def slow(data):
        time.sleep(1.0)
        return {"late": True}

    c.responders[("/", "ask")] = slow
    t0 = time.monotonic()
    r3 = a.call("publish", {"to": "r-ack", "event": "ask", "data": {"q": 5}, "timeout": 400})
    took = time.monotonic() - t0
    eq(r3.get("ok"), False, f"expected timeout: {r3!r}")
    eq(r3.get("error"), "timeout", f"timeout error: {r3!r}")
    eq(r3.get("responses"), [{"answer": 10, "from": "b"}], "partial responses")
    check(took >= 0.3, f"timeout reply came too early ({took:.3f} s)")

    r4 = a.call("publish", {"to": "nobody-here", "event": "ask", "data": {}, "timeout": 3000})
    eq(r4, {"ok": True, "responses": []}, "empty room publish-with-ack")
    time.sleep(0.8)  # let the late ack reach the server (must be ignored, connection must survive)
    assert_rooms(c.call("join", "late"), ["r-ack", "late"], "C still usable after its late ack")


run("ack", scenario)
