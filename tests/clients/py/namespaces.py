"""Scenario e: namespaces. Server must be started with `--namespace /chat`.

`/` and `/chat` are isolated; an unknown namespace is refused with connect_error "Invalid namespace".
"""
import time

import socketio

from common import QUIET, Client, assert_ok, assert_rooms, check, eq, run, usage

URL = usage("namespaces")


def expect_invalid_namespace(label, namespaces, transports):
    c = Client(label, namespaces=namespaces)
    try:
        c.connect(URL, transports=transports)
    except socketio.exceptions.ConnectionError as exc:
        check("/nope" in str(exc), f"{label}: unexpected ConnectionError: {exc}")
    else:
        raise AssertionError(f"{label}: connecting to {namespaces} succeeded")
    errs = c.all("<connect_error>", ns="/nope")
    check(len(errs) == 1, f"{label}: expected one connect_error on /nope, got {errs!r}")
    data = errs[0][0]
    # python-socketio hands the whole CONNECT_ERROR payload ({"message": ...}) to the handler
    check(isinstance(data, dict), f"{label}: connect_error payload is not an object: {data!r}")
    eq(data.get("message"), "Invalid namespace", f"{label}: connect_error message")


def scenario():
    # A: one Engine.IO connection multiplexing / and /chat
    a = Client("A", namespaces=["/", "/chat"]).connect(URL, transports=["websocket"])
    check(a.sio.get_sid("/") != a.sio.get_sid("/chat"), "each namespace socket has its own id")
    b = Client("B", namespaces=["/chat"]).connect(URL)  # polling + upgrade
    c = Client("C").connect(URL, transports=["websocket"])

    assert_ok(a.call("publish", {"event": "chat-msg", "data": "in chat", "self": True}, ns="/chat"), "publish /chat")
    eq(a.wait_for("chat-msg", ns="/chat")[0], "in chat", "A/chat chat-msg")
    eq(b.wait_for("chat-msg", ns="/chat")[0], "in chat", "B/chat chat-msg")
    assert_ok(c.call("publish", {"event": "root-msg", "data": "in root", "self": True}), "publish /")
    eq(a.wait_for("root-msg")[0], "in root", "A/ root-msg")
    eq(c.wait_for("root-msg")[0], "in root", "C/ root-msg")
    time.sleep(QUIET)
    a.assert_count("chat-msg", 0, ns="/")
    c.assert_count("chat-msg", 0)
    a.assert_count("root-msg", 0, ns="/chat")
    b.assert_count("root-msg", 0, ns="/chat")

    assert_rooms(b.call("join", "same", ns="/chat"), ["same"], "B/chat join same")
    assert_rooms(c.call("join", "same"), ["same"], "C/ join same")
    assert_rooms(a.call("join", "other"), ["other"], "A/ join other")
    assert_rooms(a.call("join", "mine", ns="/chat"), ["mine"], "A/chat join mine (rooms are per namespace)")
    assert_ok(a.call("publish", {"to": "same", "event": "room-msg", "data": 1}, ns="/chat"), "publish to same in /chat")
    b.wait_for("room-msg", ns="/chat")
    time.sleep(QUIET)
    c.assert_count("room-msg", 0)

    expect_invalid_namespace("nope-ws", ["/nope"], ["websocket"])
    expect_invalid_namespace("nope-poll", ["/nope"], ["polling"])
    expect_invalid_namespace("nope-multi", ["/", "/nope"], ["websocket"])

    assert_rooms(a.call("join", "still", ns="/chat"), ["mine", "still"], "A/chat still usable")


run("namespaces", scenario)
