"""Shared helpers for the python-socketio (sync client) compatibility scenarios.

Every scenario script: ``python3 tests/clients/py/<scenario>.py http://127.0.0.1:PORT [extra]``
exits 0 on success, 1 on an assertion/protocol failure, 2 on bad usage, 3 on overall timeout.
"""

import json
import os
import sys
import threading
import time
import traceback

import socketio

_clients = []


def usage(name, extra=""):
    if len(sys.argv) < 2 or not sys.argv[1].startswith(("http://", "https://")):
        sys.stderr.write(f"usage: python3 {name}.py http://127.0.0.1:PORT {extra}\n")
        sys.exit(2)
    return sys.argv[1].rstrip("/")


def log(*args):
    ts = time.strftime("%H:%M:%S")
    sys.stderr.write(f"[{ts}] {' '.join(str(a) for a in args)}\n")
    sys.stderr.flush()


def say(line):
    """A line for the harness on stdout (e.g. READY)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _close_all():
    def close():
        for c in _clients:
            try:
                c.sio.reconnection = False
                c.sio.disconnect()
            except Exception:  # noqa: BLE001 - best effort
                pass

    t = threading.Thread(target=close, daemon=True)
    t.start()
    t.join(3)


def run(name, fn, timeout=15):
    """Run fn() with an overall timeout, print PASS/FAIL and exit (os._exit: never wait for client threads)."""

    def on_timeout():
        sys.stderr.write(f"FAIL py/{name}: overall timeout of {timeout} s exceeded\n")
        sys.stderr.flush()
        os._exit(3)

    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc()
        sys.stderr.write(f"FAIL py/{name}: {type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        _close_all()
        os._exit(1)
    timer.cancel()
    _close_all()
    say(f"PASS py/{name}")
    os._exit(0)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def assert_ok(reply, what):
    check(isinstance(reply, dict), f"{what}: ack is not an object: {reply!r}")
    check(reply.get("ok") is True, f"{what}: expected ok:true, got {reply!r}")


def assert_rooms(reply, expected, what):
    assert_ok(reply, what)
    check(isinstance(reply.get("rooms"), list), f"{what}: rooms is not a list: {reply!r}")
    eq(sorted(reply["rooms"]), sorted(expected), f"{what}: rooms")


def assert_error(reply, what):
    check(isinstance(reply, dict), f"{what}: ack is not an object: {reply!r}")
    check(reply.get("ok") is False, f"{what}: expected ok:false, got {reply!r}")
    check(isinstance(reply.get("error"), str), f"{what}: error must be a string: {reply!r}")


class Client:
    """A socketio.Client that records every event (per namespace) and can answer acks via `responders`."""

    def __init__(self, label, namespaces=("/",), **client_kwargs):
        kwargs = {"reconnection": False, "request_timeout": 5}
        kwargs.update(client_kwargs)
        self.sio = socketio.Client(**kwargs)
        self.label = label
        self.namespaces = list(namespaces)
        self.events = []  # (namespace, event, args)
        self.cond = threading.Condition()
        self.responders = {}  # (namespace, event) -> fn(*args) -> ack value
        for ns in self.namespaces:
            self._install(ns)
        _clients.append(self)

    def _record(self, ns, event, args):
        with self.cond:
            self.events.append((ns, event, args))
            self.cond.notify_all()

    def _install(self, ns):
        def catch_all(event, *args):
            self._record(ns, event, args)
            fn = self.responders.get((ns, event))
            if fn is not None:
                return fn(*args)
            return None

        self.sio.on("*", catch_all, namespace=ns)
        self.sio.on("connect", lambda: self._record(ns, "<connect>", ()), namespace=ns)
        self.sio.on("disconnect", lambda *a: self._record(ns, "<disconnect>", a), namespace=ns)
        self.sio.on("connect_error", lambda *a: self._record(ns, "<connect_error>", a), namespace=ns)

    def connect(self, url, transports=None, auth=None):
        self.sio.connect(url, transports=transports, namespaces=self.namespaces, auth=auth, wait_timeout=5)
        return self

    def call(self, event, data, ns="/", timeout=5):
        try:
            return self.sio.call(event, data, namespace=ns, timeout=timeout)
        except socketio.exceptions.TimeoutError:
            raise AssertionError(f"{self.label}: no ack for '{event}' on {ns} within {timeout} s") from None

    def all(self, event, ns="/"):
        with self.cond:
            return [args for (n, e, args) in self.events if n == ns and e == event]

    def count(self, event, ns="/"):
        return len(self.all(event, ns))

    def wait_for(self, event, n=1, ns="/", timeout=5):
        """Wait until `n` events named `event` arrived on `ns`; return the args tuple of the n-th."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [args for (nn, e, args) in self.events if nn == ns and e == event]
                if len(got) >= n:
                    return got[n - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.label}: timed out after {timeout} s waiting for {n}x '{event}' on {ns}; "
                        f"got {len(got)}; all events: {self.summary()}"
                    )
                self.cond.wait(left)

    def assert_count(self, event, n, ns="/"):
        got = self.all(event, ns)
        check(len(got) == n, f"{self.label}: expected {n}x '{event}' on {ns}, got {len(got)}: {got!r}")

    def summary(self):
        return json.dumps([(n, e) for (n, e, _) in self.events])


QUIET = 0.25  # seconds to wait before asserting that something was NOT delivered
