"""A WebSocket client connection for the subscription hot path (RFC 6455, client side).

Why by hand: on the loopback pipeline benchmark, receiving through trio-websocket
cost about 26 us a frame, half of the whole pipeline's per-frame budget. Its
reader task parses with wsproto (pure Python), reads 4 KiB at a time and hands
every message to the consumer through a memory channel, so every frame costs two
task switches. Here the consumer parses frames straight out of a 256 KiB receive
buffer: one task, no hop, a few byte operations per frame. ``bench`` prints both
rates side by side ("frame reception" rows of docs/performance.md).

What is and is not implemented (all a node subscription needs):

- Opening handshake through h11 (the well-kept HTTP/1.1 library; its
  ``trailing_data`` hands over any frame bytes that came with the 101), with the
  ``Sec-WebSocket-Accept`` check. No extensions and no subprotocols are offered,
  so a server that answers with either is refused.
- Text, binary and continuation frames (fragmented messages reassembled), ping
  (answered with a pong at once), pong (returned as ``None``: a sign of life for
  the caller's idle watch), close (answered, then :class:`NodeUnreachable`).
- Frames from the server must be unmasked, with zero RSV bits, control frames
  whole and at most 125 bytes: anything else is a protocol error, answered with
  close code 1002 and raised as :class:`BadNodeData`. A message over
  ``max_message_size`` gets 1009.
- Text payloads are returned as bytes, not decoded: the caller's JSON parser
  (orjson) validates UTF-8 and counts a bad frame like any other bad JSON.
- Frames we send are masked with a fresh key each (``os.urandom``).

The connection is owned by one task: ``get_message`` and the sends are not meant
to be called concurrently (a lock still keeps two sends from interleaving). There
is no background reader, so a server's ping is answered when the owner next reads:
an owner that stops reading for longer than the server's pong timeout (geth: 30 s)
gets dropped. The subscription reads continuously; only a full heads channel makes
it wait.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import ssl
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import urlsplit

import h11
import trio

from .._errors import BadNodeData, NodeTimeout, NodeUnreachable
from .._urls import display_url, url_problem

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RECEIVE_SIZE: Final = 256 * 1024

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPS: Final = frozenset((OP_TEXT, OP_BINARY))
_CONTROL_OPS: Final = frozenset((OP_CLOSE, OP_PING, OP_PONG))
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG = 1000, 1002, 1009
_CLOSE_NAMES: Final = {
    1000: "NORMAL_CLOSURE", 1001: "GOING_AWAY", 1002: "PROTOCOL_ERROR", 1003: "UNSUPPORTED_DATA",
    1006: "ABNORMAL_CLOSURE", 1007: "INVALID_FRAME_PAYLOAD_DATA", 1008: "POLICY_VIOLATION",
    1009: "MESSAGE_TOO_BIG", 1010: "MANDATORY_EXT", 1011: "INTERNAL_ERROR", 1012: "SERVICE_RESTART",
    1013: "TRY_AGAIN_LATER",
}
# How long a close or pong may take to write before the connection is given up.
_CONTROL_SEND_TIMEOUT: Final = 1.0


def accept_token(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value a server must answer to ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())  # the RFC's choice of hash, not ours


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (its own inverse)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def client_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One masked FIN frame, as a client must send it."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + mask_payload(payload, key)


class WsConnection:
    """An open WebSocket client connection; see the module docstring.

    Args:
        stream: the transport, after a successful handshake.
        buffered: bytes that arrived with the handshake answer (frames already).
        where: the endpoint as it may be shown (scheme://host:port), for errors.
        max_message_size: a longer message is a protocol error (close 1009).
    """

    def __init__(self, stream: trio.abc.Stream, buffered: bytes, *, where: str, max_message_size: int) -> None:
        self._stream = stream
        self._buf = bytes(buffered)
        self._pos = 0
        self._where = where
        self._max = max_message_size
        self._chunks: list[bytes] = []  # bytes read but not yet joined into _buf (see _fill)
        self._chunks_len = 0
        self._parts: list[bytes] | None = None  # a fragmented message being reassembled
        self._parts_size = 0
        self._parts_op = OP_TEXT
        self._closed = False
        self._send_lock = trio.Lock()
        self.pings_received = 0
        self.pongs_received = 0

    async def get_message(self) -> bytes | None:
        """The next data message's payload, or ``None`` when a pong arrived.

        Raises:
            NodeUnreachable: the server closed (with or without a close frame).
            BadNodeData: the server broke the protocol (the connection is closed).
        """
        while True:
            buf, pos = self._buf, self._pos
            avail = len(buf) - pos
            if avail >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                if b1 > 0x7F:  # a masking key would follow: servers must not mask
                    await self._fail(CLOSE_PROTOCOL_ERROR, "the server masked a frame")
                n = b1
                if n < 126:
                    start = pos + 2
                elif n == 126:
                    start = pos + 4
                    n = int.from_bytes(buf[pos + 2 : start], "big") if avail >= 4 else -1
                else:
                    start = pos + 10
                    n = int.from_bytes(buf[pos + 2 : start], "big") if avail >= 10 else -1
                if n > self._max:
                    await self._fail(CLOSE_TOO_BIG, f"a frame of {n} bytes is over the {self._max}-byte limit")
                if n > 125 and b0 & 0x08:  # a control frame may not be long: refused before it is buffered
                    await self._fail(CLOSE_PROTOCOL_ERROR, "a fragmented or oversized control frame")
                if n >= 0 and len(buf) >= start + n:
                    end = start + n
                    self._pos = end
                    if (b0 == 0x81 or b0 == 0x82) and self._parts is None:
                        return buf[start:end]  # the hot path: a whole unmasked text/binary message
                    message = await self._slow_frame(b0, buf[start:end])
                    if message is not _NO_MESSAGE:
                        return message  # type: ignore[return-value]
                    continue
                await self._fill(start - pos + n if n >= 0 else start - pos)
            else:
                await self._fill(2)

    async def _fill(self, need: int) -> None:
        """Read until ``need`` bytes are buffered from the parse position (joined once).

        Chunks live on the object until joined, so a cancellation between two reads
        loses nothing, and a long frame read in many small pieces (TLS records are at
        most 16 KiB) is copied once, not once per piece.
        """
        if self._closed:
            raise NodeUnreachable(f"websocket to {self._where} is closed")
        chunks = self._chunks
        if self._pos < len(self._buf):
            chunks.insert(0, self._buf[self._pos :])
            self._chunks_len += len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        while True:
            data = await self._stream.receive_some(RECEIVE_SIZE)
            if not data:
                self._closed = True
                chunks.clear()
                await trio.aclose_forcefully(self._stream)
                raise NodeUnreachable(f"websocket to {self._where} closed (no close frame)")
            chunks.append(data)
            self._chunks_len += len(data)
            if self._chunks_len >= need:
                break
        self._buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._chunks_len = 0

    async def _slow_frame(self, b0: int, payload: bytes) -> bytes | None | object:
        """Everything but a whole unmasked data frame; ``_NO_MESSAGE`` when nothing is returned."""
        if b0 & 0x70:
            await self._fail(CLOSE_PROTOCOL_ERROR, "a frame with RSV bits set (no extension was negotiated)")
        fin = bool(b0 & 0x80)
        op = b0 & 0x0F
        if op in _CONTROL_OPS:
            if not fin:  # (a long one was refused with its header)
                await self._fail(CLOSE_PROTOCOL_ERROR, "a fragmented or oversized control frame")
            if op == OP_PING:
                self.pings_received += 1
                await self._send_control(OP_PONG, payload)
                return _NO_MESSAGE
            if op == OP_PONG:
                self.pongs_received += 1
                return None
            await self._on_close(payload)
        if op in _DATA_OPS:
            if self._parts is not None:
                await self._fail(CLOSE_PROTOCOL_ERROR, "a new message began inside a fragmented one")
            if fin:
                return payload
            self._parts, self._parts_size, self._parts_op = [payload], len(payload), op
            return _NO_MESSAGE
        if op == OP_CONT:
            if self._parts is None:
                await self._fail(CLOSE_PROTOCOL_ERROR, "a continuation frame outside a message")
            assert self._parts is not None
            self._parts.append(payload)
            self._parts_size += len(payload)
            if self._parts_size > self._max:
                await self._fail(CLOSE_TOO_BIG, f"a message over the {self._max}-byte limit")
            if not fin:
                return _NO_MESSAGE
            message = b"".join(self._parts)
            self._parts = None
            return message
        await self._fail(CLOSE_PROTOCOL_ERROR, f"reserved opcode {op:#x}")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _on_close(self, payload: bytes) -> None:
        if len(payload) == 1:
            await self._fail(CLOSE_PROTOCOL_ERROR, "a close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big") if payload else None
        if code is not None and not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            await self._fail(CLOSE_PROTOCOL_ERROR, f"a close frame with code {code}, which may not be sent")
        await self._send_control(OP_CLOSE, payload[:2])  # echo the code, as the RFC asks
        self._closed = True
        self._buf, self._pos = b"", 0
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await trio.aclose_forcefully(self._stream)
        detail = f"code {code} {_CLOSE_NAMES.get(code, 'UNKNOWN')}" if code is not None else "no status code"
        raise NodeUnreachable(f"websocket to {self._where} closed ({detail})")

    async def _fail(self, code: int, why: str) -> None:
        """Close with ``code`` (best effort) and raise: the server broke the protocol."""
        self._buf, self._pos = b"", 0  # nothing after a protocol error can be trusted
        self._chunks.clear()
        self._chunks_len = 0
        if not self._closed:
            with contextlib.suppress(NodeUnreachable, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self._send_control(OP_CLOSE, code.to_bytes(2, "big"))
            self._closed = True
            await trio.aclose_forcefully(self._stream)
        raise BadNodeData(f"websocket to {self._where}: {why}")

    async def _send_control(self, opcode: int, payload: bytes) -> None:
        # A control frame half-written would corrupt the stream: never let a cancellation
        # cut it, but never wait on a stuck peer for long either.
        with trio.CancelScope(shield=True), trio.move_on_after(_CONTROL_SEND_TIMEOUT) as scope:
            await self._send(client_frame(opcode, payload))
        if scope.cancelled_caught:
            self._closed = True
            await trio.aclose_forcefully(self._stream)
            raise NodeUnreachable(f"websocket to {self._where}: a control frame could not be sent in time")

    async def _send(self, data: bytes) -> None:
        if self._closed:
            raise NodeUnreachable(f"websocket to {self._where} is closed")
        async with self._send_lock:
            await self._stream.send_all(data)

    async def send_message(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message, masked."""
        if isinstance(message, str):
            await self._send(client_frame(OP_TEXT, message.encode()))
        else:
            await self._send(client_frame(OP_BINARY, message))

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping; its pong comes back from :meth:`get_message` as ``None``."""
        await self._send_control(OP_PING, payload)

    async def aclose(self, code: int = CLOSE_NORMAL) -> None:
        """Send a close frame (best effort, briefly, unless closed already) and close the transport."""
        if not self._closed:
            with contextlib.suppress(NodeUnreachable, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self._send_control(OP_CLOSE, code.to_bytes(2, "big"))
            self._closed = True
        await trio.aclose_forcefully(self._stream)  # idempotent


_NO_MESSAGE: Final = object()


async def _handshake(stream: trio.abc.Stream, host: str, target: str, where: str) -> bytes:
    """The opening handshake; returns the bytes that followed the server's 101."""
    key = base64.b64encode(os.urandom(16))
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=target,
        headers=[
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise NodeUnreachable(f"{where} closed the connection during the websocket handshake")
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                headers = {name.lower(): value for name, value in event.headers}
                if headers.get(b"upgrade", b"").lower() != b"websocket":
                    raise NodeUnreachable(f"websocket handshake with {where} failed: no 'Upgrade: websocket'")
                if headers.get(b"sec-websocket-accept") != accept_token(key):
                    raise NodeUnreachable(f"websocket handshake with {where} failed: wrong Sec-WebSocket-Accept")
                if b"sec-websocket-extensions" in headers or b"sec-websocket-protocol" in headers:
                    raise NodeUnreachable(
                        f"websocket handshake with {where} failed: the server chose an extension or "
                        "subprotocol that was not offered"
                    )
                return bytes(conn.trailing_data[0])
            if isinstance(event, h11.Response):
                raise NodeUnreachable(f"{where} rejected the websocket handshake with HTTP {event.status_code}")
            if isinstance(event, h11.ConnectionClosed):
                raise NodeUnreachable(f"{where} closed the connection during the websocket handshake")
            # A 1xx other than 101: keep reading.
    except h11.RemoteProtocolError as exc:
        raise NodeUnreachable(f"websocket handshake with {where} failed: bad HTTP answer ({exc})") from exc


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """The system trust store, loaded once per process rather than once per reconnect."""
    return ssl.create_default_context()


def check_ws_url(url: str) -> None:
    """Raise ``ValueError`` (without the path, which may hold a key) unless ``url`` can be dialled."""
    parts = urlsplit(url)
    shown = display_url(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"ws_url must be a ws:// or wss:// URL, not {shown!r}")
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(f"{shown}: {problem}")


@contextlib.asynccontextmanager
async def open_ws(
    url: str,
    *,
    where: str,
    connect_timeout: float,
    max_message_size: int = 4 * 1024 * 1024,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[WsConnection]:
    """Connect, shake hands (all within ``connect_timeout``), yield the connection, close it.

    ``wss://`` verifies the server's certificate and host name with ``ssl_context``
    (by default the system's trust store, ``ssl.create_default_context()``).

    Raises:
        NodeTimeout: TCP, TLS and the handshake took longer than ``connect_timeout``.
        NodeUnreachable: refused, or the handshake failed.
        OSError, trio.BrokenResourceError: from the transport, for the caller to map.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    bracketed = f"[{host}]" if ":" in host else host  # an IPv6 literal (RFC 7230 5.4)
    host_header = bracketed if parts.port is None else f"{bracketed}:{port}"
    with trio.move_on_after(connect_timeout) as scope:
        if secure:
            stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=ssl_context or _default_ssl_context()
            )
        else:
            stream = await trio.open_tcp_stream(host, port)
        try:
            buffered = await _handshake(stream, host_header, target, where)
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(stream)
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):  # the TLS handshake happens on the first write
                detail = getattr(cause, "verify_message", None) or cause.reason or type(cause).__name__
                raise NodeUnreachable(f"TLS with {where} failed: {detail}") from exc
            raise
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    if scope.cancelled_caught:
        raise NodeTimeout(f"websocket handshake with {where} timed out")
    ws = WsConnection(stream, buffered, where=where, max_message_size=max_message_size)
    try:
        yield ws
    finally:
        with trio.CancelScope(shield=True):
            await ws.aclose()
