"""Scenario c: binary payloads (bytes at top level, nested, empty, large) over websocket and polling, plus binary
inside broadcast-with-ack responses."""
import os

from common import Client, assert_ok, assert_rooms, check, eq, run, usage

URL = usage("binary")


def same_bytes(got, want, what):
    check(isinstance(got, (bytes, bytearray)), f"{what}: expected bytes, got {type(got).__name__} {got!r:.80}")
    check(bytes(got) == want, f"{what}: bytes differ (got {len(got)} bytes, want {len(want)})")


def scenario():
    pub = Client("pub").connect(URL, transports=["websocket"])
    ws_rx = Client("wsRx").connect(URL, transports=["websocket"])
    poll_rx = Client("pollRx").connect(URL, transports=["polling"])
    poll_pub = Client("pollPub").connect(URL, transports=["polling"])
    for c in (ws_rx, poll_rx):
        assert_rooms(c.call("join", "bin"), ["bin"], f"{c.label} join")

    every = bytes(range(256))
    big = os.urandom(100 * 1024)

    assert_ok(pub.call("publish", {"to": "bin", "event": "blob", "data": every}), "publish top-level")
    for c in (ws_rx, poll_rx):
        same_bytes(c.wait_for("blob")[0], every, f"{c.label} top-level")

    nested = {
        "name": "file.bin",
        "payload": big,
        "list": ["héllo".encode(), 1, {"deep": b"\x00\xff\x10"}, b""],
        "meta": {"ok": True, "n": None},
    }
    assert_ok(pub.call("publish", {"to": "bin", "event": "nested", "data": nested}), "publish nested")
    for c in (ws_rx, poll_rx):
        got = c.wait_for("nested")[0]
        eq(got["name"], "file.bin", f"{c.label} name")
        eq(got["meta"], {"ok": True, "n": None}, f"{c.label} meta")
        same_bytes(got["payload"], big, f"{c.label} payload")
        eq(len(got["list"]), 4, f"{c.label} list length")
        same_bytes(got["list"][0], nested["list"][0], f"{c.label} list[0]")
        eq(got["list"][1], 1, f"{c.label} list[1]")
        same_bytes(got["list"][2]["deep"], b"\x00\xff\x10", f"{c.label} list[2].deep")
        same_bytes(got["list"][3], b"", f"{c.label} list[3] (empty)")

    from_poll = b"sent over polling \x00\x01\x02"
    assert_ok(poll_pub.call("publish", {"to": "bin", "event": "pblob", "data": [from_poll]}), "publish from polling")
    for c in (ws_rx, poll_rx):
        same_bytes(c.wait_for("pblob")[0][0], from_poll, f"{c.label} from polling")

    ws_rx.responders[("/", "echo-bin")] = lambda d: b"ws:" + d["bytes"]
    poll_rx.responders[("/", "echo-bin")] = lambda d: b"poll:" + d["bytes"]
    r = pub.call("publish", {"to": "bin", "event": "echo-bin", "data": {"bytes": b"\x01\x02\x03"}, "timeout": 3000})
    check(r.get("ok") is True, f"binary ack publish: {r!r}")
    for x in r["responses"]:
        check(isinstance(x, (bytes, bytearray)), f"ack response is not bytes: {x!r}")
    eq(sorted(bytes(x) for x in r["responses"]), [b"poll:\x01\x02\x03", b"ws:\x01\x02\x03"], "binary responses")


run("binary", scenario)
