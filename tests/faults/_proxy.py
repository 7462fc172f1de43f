"""Loopback fault proxies on trio: a TCP proxy that cuts (and replays), an HTTP proxy that misbehaves.

Both bind 127.0.0.1 on a free port and are started with ``await nursery.start(proxy.serve)``.

:class:`TcpProxy` sits in front of the node's WebSocket. :meth:`TcpProxy.cut_all`
aborts every open connection with a TCP RST (SO_LINGER 0) on both sides, the way a
flaky network or a restarting node drops a socket. With ``replay`` on, it also
imitates a node that re-announces its pending transactions after a reconnect: it
keeps the last pending-transaction notifications it relayed (server frames are
unmasked, so it can read them) and, on the first pending-transaction stream after a
cut, injects them again under the new subscription id before the live ones.

:class:`HttpFaultProxy` is a tiny HTTP/1.1 server (keep-alive, Content-Length
bodies). With an ``upstream`` it forwards to it (anvil's RPC) unless told to
misbehave; without one it plays a builder that answers ``{"result": ...}``. Its
``fault`` is one of :data:`FAULTS`; ``faults`` may also be a sequence it cycles
through request by request. Every request is logged with the fault it got.
"""

from __future__ import annotations

import collections
import itertools
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

import attrs
import httpx
import orjson
import trio

__all__ = ["FAULTS", "HttpFaultProxy", "HttpRequestLog", "TcpProxy"]

#: What an HttpFaultProxy can do to a request.
FAULTS = (
    "pass",        # forward (or answer a plain JSON-RPC result)
    "rpc_error",   # 200 with a JSON-RPC error object
    "status_429",  # HTTP 429 Too Many Requests
    "status_500",  # HTTP 500
    "garbage",     # 200 with bytes that are not JSON
    "wrong_shape", # 200 with JSON that is not a JSON-RPC answer (a list of numbers)
    "hang",        # read the request, never answer (until the client gives up)
    "reset",       # read the request, answer with a TCP RST
)


def _rst_close(stream: trio.SocketStream) -> None:
    """Arrange for the next close to send RST instead of FIN."""
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _ws_frame(text: bytes) -> bytes:
    """An unmasked, final text frame (server to client)."""
    n = len(text)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 1 << 16:
        head = bytes([0x81, 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 127]) + struct.pack("!Q", n)
    return head + text


class _Frames:
    """Split a server-to-client WebSocket byte stream (after the HTTP upgrade) into frames."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.upgraded = False

    def feed(self, data: bytes) -> list[tuple[bytes, bytes | None]]:
        """Returns [(raw bytes, text payload or None)] of the complete units in the buffer."""
        self.buf += data
        out: list[tuple[bytes, bytes | None]] = []
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            out.append((bytes(self.buf[: end + 4]), None))
            del self.buf[: end + 4]
            self.upgraded = True
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    break
                n, off = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    break
                n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
            if b1 & 0x80:
                off += 4  # a masked server frame would be a protocol error; pass it through untouched
            if len(self.buf) < off + n:
                break
            raw = bytes(self.buf[: off + n])
            del self.buf[: off + n]
            text = raw[off:] if b0 == 0x81 and not b1 & 0x80 else None  # final, uncompressed text
            out.append((raw, text))
        return out


@attrs.define(eq=False)
class _Conn:
    client: trio.SocketStream
    upstream: trio.SocketStream | None = None
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    sub_id: str | None = None


@attrs.define
class TcpProxy:
    """127.0.0.1:<free port> -> ``upstream_host:upstream_port``, byte for byte, until told to cut.

    Attributes:
        accepted: connections accepted so far.
        accept_times: ``time.monotonic()`` of each accept (reconnect latency = accept - cut).
        cut_times: ``time.monotonic()`` of each :meth:`cut_all`.
        cuts: connections aborted.
        replayed: pending-transaction notifications injected again after a cut.
        relayed_notifications: subscription notifications relayed server -> client.
    """

    upstream_host: str
    upstream_port: int
    replay: int = 0
    port: int = 0
    accepted: int = 0
    accept_times: list[float] = attrs.field(factory=list)
    cut_times: list[float] = attrs.field(factory=list)
    cuts: int = 0
    replayed: int = 0
    replayed_hashes: list[str] = attrs.field(factory=list)
    relayed_notifications: int = 0
    _conns: set[Any] = attrs.field(factory=set)
    _recent: collections.deque[dict[str, Any]] = attrs.field(factory=lambda: collections.deque(maxlen=64))
    _to_replay: list[dict[str, Any]] = attrs.field(factory=list)

    @classmethod
    def for_url(cls, url: str, *, replay: int = 0) -> TcpProxy:
        u = httpx.URL(url)
        return cls(upstream_host=u.host, upstream_port=u.port or 80, replay=replay)

    def url(self, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    def cut_all(self) -> int:
        """Abort every open connection now (RST to both sides). Returns how many."""
        self.cut_times.append(time.monotonic())
        if self.replay:
            self._to_replay = list(self._recent)[-self.replay:]
        n = 0
        for conn in list(self._conns):
            for s in (conn.client, conn.upstream):
                if s is not None:
                    _rst_close(s)
            conn.scope.cancel()
            n += 1
        self.cuts += n
        return n

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        self.accept_times.append(time.monotonic())
        conn = _Conn(client=client)
        try:
            conn.upstream = await trio.open_tcp_stream(self.upstream_host, self.upstream_port)
        except OSError:
            _rst_close(client)
            await trio.aclose_forcefully(client)
            return
        self._conns.add(conn)
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump_up, conn)
                    nursery.start_soon(self._pump_down, conn)
        finally:
            self._conns.discard(conn)
            await trio.aclose_forcefully(conn.upstream)
            await trio.aclose_forcefully(client)

    async def _pump_up(self, conn: _Conn) -> None:
        assert conn.upstream is not None
        try:
            while data := await conn.client.receive_some(65536):
                await conn.upstream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        conn.scope.cancel()

    async def _pump_down(self, conn: _Conn) -> None:
        assert conn.upstream is not None
        frames = _Frames()
        try:
            while data := await conn.upstream.receive_some(65536):
                if not self.replay:
                    await conn.client.send_all(data)
                    continue
                for raw, text in frames.feed(data):
                    await conn.client.send_all(self._inspect(conn, raw, text))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        conn.scope.cancel()

    def _inspect(self, conn: _Conn, raw: bytes, text: bytes | None) -> bytes:
        """Remember pending-tx notifications; inject the replay before the first one after a cut."""
        if text is None:
            return raw
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(msg, dict):
            return raw
        if isinstance(msg.get("result"), str) and "id" in msg:
            conn.sub_id = msg["result"]
            return raw
        params = msg.get("params")
        if msg.get("method") != "eth_subscription" or not isinstance(params, dict):
            return raw
        self.relayed_notifications += 1
        result = params.get("result")
        if not (isinstance(result, dict) and "input" in result):
            return raw  # a head
        self._recent.append(result)
        if not self._to_replay:
            return raw
        replay, self._to_replay = self._to_replay, []
        sub = params.get("subscription", conn.sub_id)
        out = b""
        for old in replay:
            self.replayed += 1
            self.replayed_hashes.append(str(old.get("hash")))
            note = {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sub, "result": old}}
            out += _ws_frame(orjson.dumps(note))
        return out + raw


@attrs.frozen
class HttpRequestLog:
    """One request the HTTP proxy saw: when, what, and what it did to it."""

    at: float
    fault: str
    method: str | None
    body: bytes
    head_at_arrival: int | None


class _BadRequest(Exception):
    pass


@attrs.define
class HttpFaultProxy:
    """A misbehaving HTTP/1.1 endpoint on 127.0.0.1.

    Args:
        upstream: forward ``pass`` requests here (e.g. anvil's RPC URL); None plays a builder.
        faults: one fault for every request, or a sequence cycled request by request.
        head_probe: an RPC URL asked for ``eth_blockNumber`` when each request
            arrives (recorded in ``head_at_arrival``), to prove a builder request
            never arrives after its target block.
        hang_s: how long a ``hang`` holds the request before closing (the client
            normally gives up first).
    """

    upstream: str | None = None
    faults: str | Sequence[str] = "pass"
    head_probe: str | None = None
    hang_s: float = 30.0
    port: int = 0
    log: list[HttpRequestLog] = attrs.field(factory=list)
    counts: collections.Counter[str] = attrs.field(factory=collections.Counter)
    _cycle: Any = None
    _client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, faults: str | Sequence[str]) -> None:
        """Change what happens to the next requests."""
        for f in [faults] if isinstance(faults, str) else faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}")
        self.faults = faults
        self._cycle = None

    def _next_fault(self) -> str:
        if isinstance(self.faults, str):
            return self.faults
        if self._cycle is None:
            self._cycle = itertools.cycle(list(self.faults))
        return str(next(self._cycle))

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.set(self.faults)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with httpx.AsyncClient(timeout=30.0) as client:
            self._client = client
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _read_request(self, stream: trio.SocketStream, buf: bytearray) -> bytes | None:
        while (end := buf.find(b"\r\n\r\n")) < 0:
            data = await stream.receive_some(65536)
            if not data:
                return None
            buf += data
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        length = 0
        for line in head[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
            if k.strip().lower() == "transfer-encoding":
                raise _BadRequest("chunked bodies are not supported by this test proxy")
        while len(buf) < length:
            data = await stream.receive_some(65536)
            if not data:
                return None
            buf += data
        body = bytes(buf[:length])
        del buf[:length]
        return body

    async def _head(self) -> int | None:
        if self.head_probe is None or self._client is None:
            return None
        try:
            r = await self._client.post(self.head_probe, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"})
            return int(r.json()["result"], 16)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    async def _handle(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while True:
                body = await self._read_request(stream, buf)
                if body is None:
                    return
                fault = self._next_fault()
                method = None
                req_id: Any = 1
                try:
                    req = orjson.loads(body)
                    if isinstance(req, dict):
                        method, req_id = req.get("method"), req.get("id", 1)
                    elif isinstance(req, list) and req and isinstance(req[0], dict):
                        method, req_id = "batch:" + str(req[0].get("method")), [r.get("id") for r in req]
                except orjson.JSONDecodeError:
                    pass
                self.counts[fault] += 1
                self.log.append(HttpRequestLog(time.monotonic(), fault, method, body, await self._head()))
                if fault == "hang":
                    with trio.move_on_after(self.hang_s):
                        while await stream.receive_some(65536):
                            pass
                    return
                if fault == "reset":
                    _rst_close(stream)
                    return
                status, payload = await self._answer(fault, body, req_id)
                reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "X")
                head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n").encode()
                await stream.send_all(head + payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, _BadRequest, ValueError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, fault: str, body: bytes, req_id: Any) -> tuple[int, bytes]:
        def rpc(obj: dict[str, Any]) -> bytes:
            if isinstance(req_id, list):
                return orjson.dumps([{"jsonrpc": "2.0", "id": i, **obj} for i in req_id])
            return orjson.dumps({"jsonrpc": "2.0", "id": req_id, **obj})

        if fault == "rpc_error":
            return 200, rpc({"error": {"code": -32000, "message": "injected fault"}})
        if fault == "status_429":
            return 429, b'{"error":"rate limited"}'
        if fault == "status_500":
            return 500, b"internal error"
        if fault == "garbage":
            return 200, b"\x00\xffnot json at all{{"
        if fault == "wrong_shape":
            return 200, b"[1, 2, 3]"
        if self.upstream is None:
            return 200, rpc({"result": {"bundleHash": "0x" + "00" * 32}})
        assert self._client is not None
        try:
            r = await self._client.post(self.upstream, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError:
            return 502, b"upstream unreachable"
        return r.status_code, r.content
