"""Scenario f: auth payload + connect_error. Server must be started with `--auth-token s3cret`
(or pass the token as the 2nd argument)."""
import sys

import socketio

from common import Client, assert_rooms, check, eq, run, usage

URL = usage("auth", "[token]")
TOKEN = sys.argv[2] if len(sys.argv) > 2 else "s3cret"


def refused(label, auth, transports, reason):
    c = Client(label)
    try:
        c.connect(URL, transports=transports, auth=auth)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        raise AssertionError(f"{label}: connected although it should have been refused")
    errs = c.all("<connect_error>")
    check(len(errs) == 1, f"{label}: expected one connect_error, got {errs!r}")
    data = errs[0][0]
    # python-socketio passes the CONNECT_ERROR payload {"message": ..., "data": ...} as one dict
    check(isinstance(data, dict), f"{label}: connect_error payload is not an object: {data!r}")
    eq(data.get("message"), "unauthorized", f"{label}: connect_error message")
    eq(data.get("data"), {"reason": reason}, f"{label}: connect_error data")
    check(not c.sio.connected, f"{label}: still connected")


def scenario():
    ok1 = Client("ok-ws").connect(URL, transports=["websocket"], auth={"token": TOKEN})
    assert_rooms(ok1.call("join", "authed"), ["authed"], "join with good token (websocket)")
    ok2 = Client("ok-default").connect(URL, auth={"token": TOKEN})
    assert_rooms(ok2.call("join", "authed"), ["authed"], "join with good token (polling+upgrade)")
    ok3 = Client("ok-callable").connect(URL, transports=["websocket"], auth=lambda: {"token": TOKEN})
    check(ok3.sio.connected, "auth given as a callable")

    refused("wrong-ws", {"token": "wrong"}, ["websocket"], "bad token")
    refused("wrong-poll", {"token": "wrong"}, ["polling"], "bad token")
    # python-socketio sends `40{}` (an empty auth object) when no auth is given
    refused("none-ws", None, ["websocket"], "missing token")
    refused("other-key", {"other": "x"}, ["websocket"], "missing token")
    refused("none-poll", None, ["polling"], "missing token")

    assert_rooms(ok1.call("join", "still"), ["authed", "still"], "good socket still usable")


run("auth", scenario)
