"""Hostile node endpoints on loopback, for the bounded-I/O and stop-path tests.

A JSON-RPC server whose misbehaviour is chosen per method (stdlib ``http.server``
in a thread: the HTTP framing is the library's, only the answers are hostile) and
a WebSocket node (trio-websocket) that accepts ``eth_subscribe`` and then sends
nothing, or only malformed heads. 127.0.0.1 only; every server is shut down, and
every handler released, when its context exits.

Misbehaviours (``Mode``):

* ``ok``: a healthy answer (``eth_chainId`` 0x7a69, ``eth_blockNumber``, balances, ...);
* ``huge``: 200 MB of body, streamed without a length (read until the close);
* ``huge_declared``: the same with a ``Content-Length`` of 200 MB announced first;
* ``trickle``: a valid answer, one byte per second;
* ``garbage``: HTTP 200 with bytes that are not JSON;
* ``silent``: the request is read and never answered.
"""

from __future__ import annotations

import contextlib
import enum
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import trio

__all__ = ["HUGE_BYTES", "HostileRpc", "Mode", "hostile_rpc", "ws_node"]

HUGE_BYTES = 200 * 1024 * 1024
_CHUNK = b" " * 65536  # whitespace: valid JSON padding, so only the size can be the problem


class Mode(enum.StrEnum):
    OK = "ok"
    HUGE = "huge"
    HUGE_DECLARED = "huge_declared"
    TRICKLE = "trickle"
    GARBAGE = "garbage"
    SILENT = "silent"


def _healthy(req: Any) -> Any:
    if isinstance(req, list):
        return [_healthy(r) for r in req]
    method = req.get("method") if isinstance(req, dict) else None
    rid = req.get("id") if isinstance(req, dict) else None
    results = {"eth_chainId": "0x7a69", "eth_blockNumber": "0x10", "eth_getBalance": hex(10**18),
               "eth_call": "0x" + "00" * 31 + "01", "eth_getTransactionCount": "0x0", "eth_gasPrice": "0x3b9aca00"}
    if method in results:
        return {"jsonrpc": "2.0", "id": rid, "result": results[method]}
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "method not found"}}


@attrs.define
class HostileRpc:
    """The running server: its URL, per-method modes, and what it did."""

    url: str
    modes: dict[str, Mode]
    default: Mode
    released: threading.Event
    requests: int = 0
    handshakes: int = 0  # GETs (WebSocket handshakes), held unanswered
    bytes_sent: int = 0
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def mode_for(self, body: bytes) -> Mode:
        try:
            req = json.loads(body)
        except ValueError:
            return self.default
        methods = [r.get("method") for r in req if isinstance(r, dict)] if isinstance(req, list) else [
            req.get("method") if isinstance(req, dict) else None]
        for m in methods:
            if m in self.modes:
                return self.modes[m]
        return self.default


def _handler(state: HostileRpc) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # a body without Content-Length ends at the close

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

        def _send(self, data: bytes) -> None:
            self.wfile.write(data)
            with state.lock:
                state.bytes_sent += len(data)

        def do_GET(self) -> None:  # a WebSocket handshake to this server: never answered
            with state.lock:
                state.handshakes += 1
            state.released.wait()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(min(length, 1 << 20))
            with state.lock:
                state.requests += 1
            mode = state.mode_for(body)
            try:
                self._answer(mode, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: what a cap or a deadline should make it do

        def _answer(self, mode: Mode, body: bytes) -> None:
            if mode is Mode.SILENT:
                state.released.wait()
                return
            if mode is Mode.GARBAGE:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self._send(b"\x00\xffnot json at all<html>")
                return
            if mode in (Mode.HUGE, Mode.HUGE_DECLARED):
                self.send_response(200)
                self.send_header("content-type", "application/json")
                if mode is Mode.HUGE_DECLARED:
                    self.send_header("content-length", str(HUGE_BYTES))
                self.end_headers()
                sent = 0
                while sent < HUGE_BYTES and not state.released.is_set():
                    self._send(_CHUNK)
                    sent += len(_CHUNK)
                return
            answer = json.dumps(_healthy(json.loads(body))).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            if mode is Mode.TRICKLE:
                for i in range(len(answer)):
                    self._send(answer[i:i + 1])
                    self.wfile.flush()
                    if state.released.wait(1.0):  # one byte per second, until the test ends
                        return
                return
            self._send(answer)

    return Handler


@contextlib.contextmanager
def hostile_rpc(default: Mode = Mode.OK, **modes: Mode) -> Iterator[HostileRpc]:
    """A JSON-RPC server on 127.0.0.1 that answers ``method=mode`` as told, ``default`` otherwise."""
    released = threading.Event()
    state = HostileRpc(url="", modes=dict(modes), default=default, released=released)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="hostile-rpc", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@attrs.define
class WsNode:
    url: str
    subscriptions: int = 0
    frames_sent: int = 0


@contextlib.asynccontextmanager
async def ws_node(*, malformed_every_s: float | None) -> Any:
    """A WebSocket node on 127.0.0.1 that accepts subscriptions, then sends nothing
    (``malformed_every_s=None``) or a malformed head every ``malformed_every_s`` seconds."""
    from trio_websocket import ConnectionClosed, serve_websocket

    node = WsNode(url="")

    async def handler(request: Any) -> None:
        ws = await request.accept()
        try:
            while True:
                msg = json.loads(await ws.get_message())
                node.subscriptions += 1
                sub_id = f"0x{node.subscriptions:x}"
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": sub_id}))
                if malformed_every_s is None:
                    await trio.sleep_forever()
                n = 0
                while True:
                    n += 1
                    bad = {"number": "0xZZ", "hash": "not a hash", "n": n}
                    await ws.send_message(json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                                                      "params": {"subscription": sub_id, "result": bad}}))
                    node.frames_sent += 1
                    await trio.sleep(malformed_every_s)
        except ConnectionClosed:
            return

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        node.url = f"ws://127.0.0.1:{server.port}"
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
