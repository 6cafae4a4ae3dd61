"""Scenario d: join/publish/leave between three clients."""
import time

from common import QUIET, Client, assert_error, assert_ok, assert_rooms, check, eq, run, usage

URL = usage("rooms")


def scenario():
    a = Client("A").connect(URL, transports=["websocket"])
    b = Client("B").connect(URL, transports=["websocket"])
    c = Client("C").connect(URL)  # polling + upgrade

    assert_rooms(a.call("join", "r1"), ["r1"], "A join r1")
    assert_rooms(b.call("join", ["r1", "r2"]), ["r1", "r2"], "B join [r1,r2]")
    assert_rooms(c.call("join", "r2"), ["r2"], "C join r2")

    # room delivery; self defaults to false
    d1 = {"n": 1, "s": "ünïcödé ✓", "nested": {"arr": [1, 2, {"x": None}]}}
    assert_ok(a.call("publish", {"to": "r1", "event": "m1", "data": d1}), "publish m1")
    eq(b.wait_for("m1")[0], d1, "B m1 payload")
    time.sleep(QUIET)
    a.assert_count("m1", 0)
    c.assert_count("m1", 0)

    assert_ok(a.call("publish", {"to": "r1", "event": "m1b", "data": "x", "self": False}), "publish m1b")
    b.wait_for("m1b")
    time.sleep(QUIET)
    a.assert_count("m1b", 0)

    # self:true includes the sender
    assert_ok(a.call("publish", {"to": "r1", "event": "m2", "data": "x", "self": True}), "publish m2")
    eq(a.wait_for("m2")[0], "x", "A m2")
    eq(b.wait_for("m2")[0], "x", "B m2")
    time.sleep(QUIET)
    c.assert_count("m2", 0)

    # list of rooms: B (in both) gets it once; sender C excluded
    assert_ok(c.call("publish", {"to": ["r1", "r2"], "event": "m3", "data": [1, 2]}), "publish m3")
    eq(a.wait_for("m3")[0], [1, 2], "A m3")
    eq(b.wait_for("m3")[0], [1, 2], "B m3")
    time.sleep(QUIET)
    a.assert_count("m3", 1)
    b.assert_count("m3", 1)
    c.assert_count("m3", 0)

    # after leave, no more delivery
    assert_rooms(b.call("leave", "r1"), ["r2"], "B leave r1")
    assert_ok(a.call("publish", {"to": "r1", "event": "m4", "data": 4, "self": True}), "publish m4")
    a.wait_for("m4")
    time.sleep(QUIET)
    b.assert_count("m4", 0)
    c.assert_count("m4", 0)

    # no `to`: whole namespace minus the sender
    assert_ok(a.call("publish", {"event": "m5", "data": {"all": True}}), "publish m5")
    eq(b.wait_for("m5")[0], {"all": True}, "B m5")
    eq(c.wait_for("m5")[0], {"all": True}, "C m5")
    time.sleep(QUIET)
    a.assert_count("m5", 0)

    for i, v in enumerate([0, False, "str", 3.5, None]):
        assert_ok(a.call("publish", {"to": "r2", "event": f"scalar{i}", "data": v}), f"publish scalar {v!r}")
        got = b.wait_for(f"scalar{i}")
        check(len(got) == 1 and got[0] == v and type(got[0]) is type(v), f"scalar {v!r}: got args {got!r}")

    # invalid shapes: error ack, socket stays usable
    for bad in ["not-an-object", 42, [1, 2], {}, {"event": 123}, {"event": "x", "to": 5}, {"event": "x", "to": [1, 2]}]:
        assert_error(a.call("publish", bad), f"invalid publish {bad!r}")
    for bad in [42, {"room": "x"}, [1]]:
        r = a.call("join", bad)
        check(isinstance(r, dict) and r.get("ok") is False, f"invalid join {bad!r} should fail, got {r!r}")
    check(a.sio.connected, "A disconnected after invalid publishes")
    assert_rooms(a.call("join", "r9"), ["r1", "r9"], "A join after invalid publishes")
    assert_ok(a.call("publish", {"to": "r2", "event": "m6", "data": "still-works"}), "publish m6")
    eq(b.wait_for("m6")[0], "still-works", "B m6")
    eq(c.wait_for("m6")[0], "still-works", "C m6")


run("rooms", scenario)
