"""WebSocket subscriptions (``eth_subscribe``), with reconnect, over wsproto driven in the reading task.

A :class:`Subscriber` holds one subscription (``newHeads`` or
``newPendingTransactions``) alive for as long as its ``run`` task lives: any
drop (closed socket, OS error, failed handshake, a silent connection that no
longer answers pings) leads to a reconnect with exponential backoff and jitter
and a fresh subscription. Every reconnect is counted.

What it pushes downstream is a :class:`Frame`: the notification's ``result``
object as the node sent it, stamped on arrival. Decoding (and its counted
rejections) is the consumer's job, so this module stays a transport.

Nodes that send only hashes for pending transactions (no ``true`` param, or a
node that ignores it) are handled by fetching each transaction with
``eth_getTransactionByHash`` through a bounded pool of workers.

The WebSocket protocol is wsproto's (the library under trio-websocket, the design
card's choice): every byte from the node is parsed by ``wsproto.WSConnection``, but
the task that consumes the messages drives it (:class:`_InlineWebSocket`), with no
reader task and no channel hop. Measured, trio-websocket's reader task, queue and
two task switches cost about 79 us of CPU a frame, which cannot hold issue 13's
10,000 frames/s plus the work on each frame (docs/performance.md). The byte stream
comes from a *transport*: by default TCP, or TLS over TCP with the system trust
store for ``wss://``; tests pass one that returns an end of
``trio.testing.memory_stream_pair()`` and run the node's side on the other end, in
virtual time. wsproto's, trio's and the OS's exceptions become aether's own in one
place, :func:`_map_ws_errors`. Garbage from the node (non-JSON, wrong shape) is
counted in ``bad_frames`` and skipped, never raised.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import logging
import os
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit

import attrs
import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .._errors import BadNodeData, NodeError, NodeTimeout, NodeUnreachable, RpcError, node_text
from .._urls import display_url, url_problem
from ._rpc import RpcClient

__all__ = [
    "HEADS",
    "PENDING",
    "Frame",
    "FrameSink",
    "StreamOpener",
    "Subscriber",
    "SubscriberStatistics",
    "SubscriptionKind",
]

log = logging.getLogger(__name__)


class SubscriptionKind(enum.StrEnum):
    """What ``eth_subscribe`` is asked for (the value is the node's own name)."""

    HEADS = "newHeads"
    PENDING = "newPendingTransactions"


HEADS: Final = SubscriptionKind.HEADS
PENDING: Final = SubscriptionKind.PENDING

#: A longer message is refused (close 1009, counted as it arrives: never buffered whole),
#: which makes a reconnect.
#: Full blocks are not subscribed to; the longest pending transaction (a 128 KiB
#: calldata, hex-encoded) fits with room to spare.
MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024
#: What each fragment of a message counts against ``MAX_MESSAGE_SIZE`` beyond its payload
#: (a str/bytes object and a list slot); a node that fragments in KiB pieces pays ~1.5%.
FRAGMENT_OVERHEAD: Final = 64
#: Bytes asked of the stream per read (trio-websocket's default is 4 KiB): a burst of
#: notifications is parsed from one read instead of one read per frame or two. Nothing
#: is read while the consumer works, so a slow consumer pushes back into TCP.
RECEIVE_BUFFER_SIZE: Final = 256 * 1024
#: Messages served from one read's buffer between two checkpoints at most, whatever the
#: consumer does with them: a burst of small frames cannot hold off cancellation or the
#: other tasks for long.
CHECKPOINT_EVERY: Final = 64
#: How long the close handshake may take before the stream is simply closed.
CLOSE_TIMEOUT: Final = 1.0

_TX_HASH_RE = re.compile(r"0x[0-9a-fA-F]{64}\Z")

#: Opens one byte stream to the node for one connection attempt.
StreamOpener = Callable[[], Awaitable[trio.abc.Stream]]


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _CounterFamily(Protocol):
    def labels(self, *labelvalues: str) -> _Counter: ...


class SubscriberMetrics(Protocol):
    """The counters a subscription reports to (:class:`aether.metrics.Metrics` has them).

    A protocol, so the chain layer does not import the metrics module.
    """

    @property
    def ws_reconnects(self) -> _CounterFamily: ...

    @property
    def dropped(self) -> _CounterFamily: ...

    @property
    def intake_rejected(self) -> _CounterFamily: ...


class FrameSink(Protocol):
    """A stage that takes pending-transaction frames inline, in the subscription's own task.

    The intake actor is one: it screens each frame as it is read, so the hottest path
    has no channel hop of ours. ``take_frame`` must not block; what becomes of the
    frame (forwarded, skipped, dropped on overload) is the stage's to decide and
    count. The subscription yields after each frame it hands over, so the tasks the
    stage feeds run before the rest of a burst is screened. Raising
    ``trio.BrokenResourceError`` / ``trio.ClosedResourceError`` means nobody listens
    any more: the subscription ends. (A memory channel can stand in for a sink:
    :meth:`Subscriber.run` takes either.)
    """

    def take_frame(self, frame: Frame, /) -> object: ...


@attrs.frozen
class Frame:
    """One notification's ``result`` object, stamped when it arrived.

    Attributes:
        obj: the JSON object (a block header or a transaction) as the node sent it.
        seen_at: trio clock time of arrival (monotonic; freshness windows use it).
        first_seen_ns: wall clock of arrival, ``time.time_ns()`` (for humans and dumps).
    """

    obj: dict[str, Any]
    seen_at: float
    first_seen_ns: int


@attrs.frozen
class SubscriberStatistics:
    """Counters of a :class:`Subscriber` (a snapshot).

    Attributes:
        frames: well-formed notifications received (objects and hashes).
        bad_frames: frames that were not JSON or not a notification of our shape.
        reconnects: connection attempts after a drop or a failed attempt.
        fetched: transactions fetched by hash and pushed.
        fetch_failed: hashes whose transaction could not be fetched.
        dropped: frames (or hashes) dropped because a bounded queue was full.
        subscriptions: successful ``eth_subscribe`` calls (1 + the resubscriptions).
        connected: a subscription is live right now.
    """

    frames: int
    bad_frames: int
    reconnects: int
    fetched: int
    fetch_failed: int
    dropped: int
    subscriptions: int
    connected: bool


class _DownstreamClosed(Exception):
    """Every receiver of our send channel is gone: nobody wants frames any more."""


class _BadFrame(Exception):
    """A frame that is not JSON or not of the expected shape (counted, skipped)."""


class _Closed(Exception):
    """The WebSocket ended: the peer's Close (its code), a frame wsproto refused (the
    code it chose), a message over the cap (1009), or the stream's end (no code)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class _Rejected(Exception):
    """The node answered the upgrade with an HTTP status other than 101."""

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


class _HandshakeFailed(Exception):
    """The node closed the stream before it answered the upgrade."""


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


#: wsproto's handshake errors that carry no text of the node's.
_WSPROTO_PHRASES: Final = frozenset({
    "Bad HTTP message",
    "Missing header, 'Connection: Upgrade'",
    "Missing header, 'Upgrade: websocket'",
    "Bad accept token",
})


def _translate(exc: BaseException, where: str) -> BaseException | None:
    """Ours for a library's exception; ``exc`` itself if it is ours already; None if not a connection failure."""
    if isinstance(exc, (NodeError, _DownstreamClosed)):
        return exc
    if isinstance(exc, _Rejected):
        return NodeUnreachable(f"{where} rejected the websocket handshake with HTTP {exc.status_code}")
    if isinstance(exc, _Closed):
        if exc.code is None:
            why = "no close frame"
        else:
            try:
                why = f"{CloseReason(exc.code).name} ({exc.code})"
            except ValueError:
                why = f"code {exc.code}"
        return NodeUnreachable(f"websocket to {where} closed: {why}")
    if isinstance(exc, _HandshakeFailed):
        return NodeUnreachable(f"websocket handshake with {where} failed: {exc}")
    if isinstance(exc, RemoteProtocolError):
        # Garbled HTTP or an answer without the upgrade headers. wsproto's fixed phrases
        # are kept; a message that could quote the node's headers (a subprotocol, an
        # extension) is not: no node-chosen text reaches the log.
        detail = str(exc) if str(exc) in _WSPROTO_PHRASES else "the answer is not a websocket upgrade"
        return NodeUnreachable(f"websocket handshake with {where} failed: {detail}")
    if isinstance(exc, LocalProtocolError):
        return NodeUnreachable(f"websocket to {where} is closed")
    if isinstance(exc, trio.TooSlowError):
        return NodeTimeout(f"{where} did not answer in time")
    if isinstance(exc, trio.BrokenResourceError) and isinstance(exc.__cause__, ssl.SSLError):
        cause = exc.__cause__
        detail = getattr(cause, "verify_message", None) or cause.reason or type(cause).__name__
        return NodeUnreachable(f"TLS with {where} failed: {detail}")
    if isinstance(exc, ssl.SSLError):
        detail = getattr(exc, "verify_message", None) or exc.reason or type(exc).__name__
        return NodeUnreachable(f"TLS with {where} failed: {detail}")
    if isinstance(exc, (OSError, trio.BrokenResourceError, trio.ClosedResourceError)):
        return NodeUnreachable(f"websocket to {where} failed: {type(exc).__name__}")
    return None


@contextlib.contextmanager
def _map_ws_errors(where: str) -> Iterator[None]:
    """The one place where wsproto's, trio's and OS errors become ours (``raise Ours from exc``).

    The pump and the idle watch share a nursery, so what comes out may be an
    exception group: one failure plus the cancellations it caused. The failure is what
    counts; a group of cancellations only, or of two real failures, goes on as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        failures = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if len(failures) != 1:
            raise
        exc = failures[0]
        ours = _translate(exc, where)
        if ours is None:
            raise
        if ours is exc:
            raise exc from None  # ours already (or the end of the line): out of its group
        raise ours from exc
    except BaseException as exc:
        ours = _translate(exc, where)
        if ours is None or ours is exc:
            raise
        raise ours from exc


class _InlineWebSocket:
    """A WebSocket client whose messages are parsed by wsproto in the task that reads them.

    Why it exists: trio-websocket (the design card's choice) runs a reader task that
    reads 4 KiB at a time, parses with wsproto and hands each message over a memory
    channel, two task switches a frame; measured on the loopback benchmark that is
    about 79 us of CPU a frame, too much for issue 13's 10,000 frames/s with work on
    each frame. Issue 13 item 5 sanctions the fallback this is: wsproto's parser, our
    loop. Every byte is parsed by ``wsproto.WSConnection`` (handshake via h11, frames,
    masking, UTF-8, close codes); this class only moves bytes between the stream and
    wsproto, reassembles fragments under a size cap, answers pings and closes.

    ``get_message`` reads ``RECEIVE_BUFFER_SIZE`` bytes at a time and serves the
    messages of one read without a task switch (at most ``CHECKPOINT_EVERY`` of them
    between two checkpoints); the caller decides where else to yield. Only one task
    may read (the pump; ``aclose`` after it ended). Sends come from two tasks (the
    pump's pongs, the idle watch's pings) and go through one ``StrictFIFOLock``.
    Failures are raised as :class:`_Closed` / :class:`_Rejected` /
    :class:`_HandshakeFailed` or as wsproto's, trio's and the OS's own, for
    :func:`_map_ws_errors` to turn into aether's.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._send_lock = trio.StrictFIFOLock()
        self._events: Iterator[Event] = iter(())  # what the last read parsed, not yet served
        self._parts: list[str | bytes] = []  # a fragmented message so far
        self._size = 0
        self._served = 0  # messages served since the last checkpoint
        self._pong: trio.Event | None = None  # set by the next pong (our ping waits on it)
        self._failed = False  # ended without a close handshake to wait for

    async def handshake(self, host: str, target: str) -> None:
        """Send the upgrade request and read until the answer is complete.

        A status other than 101 raises :class:`_Rejected` as soon as its head is read
        (the body is not read); garbled HTTP raises wsproto's ``RemoteProtocolError``
        (h11 caps the head's size); the stream's end raises :class:`_HandshakeFailed`.
        The caller bounds the time. Frames that came in the same read as the answer
        are kept for ``get_message``.
        """
        await self._send(Request(host=host, target=target))
        while True:
            events = self._ws.events()
            for event in events:
                if isinstance(event, AcceptConnection):
                    self._events = events
                    return
                if isinstance(event, RejectConnection):
                    self._failed = True
                    raise _Rejected(event.status_code)
            data = await self._stream.receive_some(RECEIVE_BUFFER_SIZE)
            if not data:
                raise _HandshakeFailed("the connection closed before the answer")
            self._ws.receive_data(cast(bytes, data))  # a bytearray parses the same

    async def send_message(self, text: str) -> None:
        await self._send(TextMessage(data=text))

    async def ping(self) -> None:
        """Send a ping and wait for a pong (any pong: it is a sign of life either way)."""
        if self._pong is None:
            self._pong = trio.Event()
        pong = self._pong
        await self._send(Ping(payload=os.urandom(4)))
        await pong.wait()

    async def get_message(self) -> str | bytes:
        """The next whole message, text or bytes; raises :class:`_Closed` when the connection ends."""
        while True:
            for event in self._events:
                if isinstance(event, Message):
                    data = event.data
                    if event.message_finished and not self._parts:
                        if len(data) > MAX_MESSAGE_SIZE:
                            await self._refuse_too_big()
                        return await self._serve(data)
                    self._parts.append(data)
                    # A fragment costs an object and a list slot beyond its payload: counted, so
                    # a flood of empty (2-byte) fragments reaches the cap instead of growing the
                    # list without bound.
                    self._size += len(data) + FRAGMENT_OVERHEAD
                    if self._size > MAX_MESSAGE_SIZE:
                        await self._refuse_too_big()
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        joined: str | bytes = (
                            "".join(cast(list[str], parts))
                            if isinstance(parts[0], str)
                            else b"".join(cast(list[bytes], parts))
                        )
                        return await self._serve(joined)
                elif isinstance(event, Ping):
                    await self._send(event.response())
                elif isinstance(event, Pong):
                    if self._pong is not None:
                        self._pong.set()
                        self._pong = None
                elif isinstance(event, CloseConnection):
                    await self._closed_by_peer(event)
            data = await self._stream.receive_some(RECEIVE_BUFFER_SIZE)  # a checkpoint
            self._served = 0
            if not data:
                self._failed = True
                raise _Closed(None)
            self._ws.receive_data(cast(bytes, data))  # a bytearray parses the same
            self._events = self._ws.events()

    async def _serve(self, message: str | bytes) -> str | bytes:
        self._served += 1
        if self._served >= CHECKPOINT_EVERY:
            self._served = 0
            await trio.lowlevel.checkpoint()
        return message

    async def _refuse_too_big(self) -> None:
        self._parts, self._size = [], 0
        await self._send(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG, reason="message too big"))
        raise _Closed(CloseReason.MESSAGE_TOO_BIG, "message too big")

    async def _closed_by_peer(self, event: CloseConnection) -> None:
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            await self._send(event.response())  # the peer's Close, answered
        else:
            # wsproto refused a frame (a protocol error: its close code, the state still
            # open): say so to the peer and drop the stream without waiting for an answer.
            self._failed = True
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                await self._send(CloseConnection(code=event.code, reason=event.reason))
        raise _Closed(event.code, event.reason or "")

    async def _send(self, event: Event) -> None:
        async with self._send_lock:
            await self._stream.send_all(self._ws.send(event))

    async def aclose(self, timeout: float) -> None:
        """Close: our Close and at most ``timeout`` seconds for the peer's (0: do not wait); then the stream."""
        try:
            with trio.move_on_after(timeout):
                if self._failed:
                    return
                if self._ws.state is ConnectionState.OPEN:
                    await self._send(CloseConnection(code=CloseReason.NORMAL_CLOSURE))
                for _ in self._events:  # what is left of the last read may hold the answer
                    pass
                while self._ws.state is ConnectionState.LOCAL_CLOSING:
                    data = await self._stream.receive_some(RECEIVE_BUFFER_SIZE)
                    if not data:
                        return
                    self._ws.receive_data(cast(bytes, data))  # a bytearray parses the same
                    for _ in self._ws.events():
                        pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, LocalProtocolError, RemoteProtocolError):
            pass  # closing anyway
        finally:
            self._failed = True
            await trio.aclose_forcefully(self._stream)


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


def tcp_opener(url: str, *, ssl_context: ssl.SSLContext | None = None) -> StreamOpener:
    """The default transport: TCP to the URL's host and port, TLS over it for ``wss://``.

    ``wss://`` verifies the certificate and host name (the system trust store unless
    ``ssl_context`` is given). The TLS handshake is done here, before any WebSocket
    byte, so an untrusted certificate is a clear error at once rather than a failure
    somewhere inside the WebSocket handshake.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)

    async def open_stream() -> trio.abc.Stream:
        if not secure:
            return await trio.open_tcp_stream(host, port)
        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl_context or _default_ssl_context())
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    return open_stream


class Subscriber:
    """One ``eth_subscribe`` stream that survives drops.

    Args:
        ws_url: ``ws://`` or ``wss://`` endpoint of the node.
        kind: ``"newHeads"`` or ``"newPendingTransactions"`` (a :class:`SubscriptionKind`).
        rpc: used to fetch transactions when the node sends only hashes.
            Without it, hash-only notifications are counted as ``fetch_failed``.
        metrics: where reconnects, bad frames, failed fetches and drops are counted.
        full_txs: ask for full transaction objects (``["newPendingTransactions", true]``).
            If the node refuses that form, the subscriber falls back to hashes.
        max_fetch_concurrency: concurrent ``eth_getTransactionByHash`` calls.
        fetch_queue: hashes waiting for a fetch worker; beyond that they are dropped
            (a stale transaction is worthless).
        backoff_initial, backoff_max: reconnect delay bounds in seconds; the delay
            doubles per failed attempt, with jitter in [d/2, d].
        idle_timeout: after this many seconds without a frame, the connection is
            probed with a ping; ``None`` disables the probe.
        ping_timeout: seconds to wait for the pong before treating the connection
            as dead and reconnecting.
        connect_timeout: seconds for TCP + TLS + handshake + the subscription reply.
        transport: opens the byte stream of one connection attempt (the seam tests
            use for in-memory streams); default :func:`tcp_opener` of ``ws_url``.
        ssl_context: for ``wss://`` with the default transport (default: system trust).
        clock: the monotonic clock stamped into ``Frame.seen_at``.
        wall_ns: the wall clock stamped into ``Frame.first_seen_ns``.
        rng: jitter source (tests pass a seeded one).

    Raises:
        ValueError: a bad argument, with the argument's name.
    """

    def __init__(
        self,
        ws_url: str,
        kind: SubscriptionKind | str,
        *,
        rpc: RpcClient | None = None,
        metrics: SubscriberMetrics | None = None,
        full_txs: bool = True,
        max_fetch_concurrency: int = 16,
        fetch_queue: int = 1024,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        idle_timeout: float | None = 30.0,
        ping_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        transport: StreamOpener | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = trio.current_time,
        wall_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        try:
            kind = SubscriptionKind(kind)
        except ValueError:
            raise ValueError(f"kind must be 'newHeads' or 'newPendingTransactions', not {kind!r}") from None
        check_ws_url(ws_url)
        if max_fetch_concurrency < 1:
            raise ValueError(f"max_fetch_concurrency must be >= 1, not {max_fetch_concurrency}")
        if fetch_queue < 1:
            raise ValueError(f"fetch_queue must be >= 1, not {fetch_queue}")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError(f"need 0 < backoff_initial <= backoff_max, got {backoff_initial}, {backoff_max}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive or None, not {idle_timeout}")
        if ping_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("ping_timeout and connect_timeout must be positive")
        self.ws_url = ws_url
        self.kind = kind
        self._where = display_url(ws_url)
        parts = urlsplit(ws_url)
        host = parts.hostname or ""
        bracketed = f"[{host}]" if ":" in host else host  # an IPv6 literal (RFC 7230 5.4)
        self._host_header = bracketed if parts.port is None else f"{bracketed}:{parts.port}"
        self._resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._transport = transport if transport is not None else tcp_opener(ws_url, ssl_context=ssl_context)
        self._rpc = rpc
        self._metrics = metrics
        self._full_param = full_txs and kind == PENDING
        self._max_fetch = max_fetch_concurrency
        self._fetch_queue = fetch_queue
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._idle_timeout = idle_timeout
        self._ping_timeout = ping_timeout
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._wall_ns = wall_ns
        self._rng = rng if rng is not None else random.Random()
        self._ids = itertools.count(1)
        self._attempt = 0
        self._hash_send: trio.MemorySendChannel[tuple[str, float, int]] | None = None
        self._messages = 0  # every message read, good or bad: the idle watch's sign of life
        self._delivering = False  # a head is waiting on a full channel: our stall, not the node's
        self._peer_silent = False  # the idle watch found the connection dead: close it without a handshake
        self._frames = 0
        self._bad_frames = 0
        self._reconnects = 0
        self._fetched = 0
        self._fetch_failed = 0
        self._dropped = 0
        self._subscriptions = 0
        self._subscribed = trio.Event()
        self._connected = False
        if metrics is not None:
            # Create the series at start-up so rate() sees the first increment.
            metrics.ws_reconnects.labels(kind)
            metrics.dropped.labels(self._drop_channel)

    @property
    def _drop_channel(self) -> str:
        return "ws_pending" if self.kind == PENDING else "ws_heads"

    def statistics(self) -> SubscriberStatistics:
        return SubscriberStatistics(
            frames=self._frames,
            bad_frames=self._bad_frames,
            reconnects=self._reconnects,
            fetched=self._fetched,
            fetch_failed=self._fetch_failed,
            dropped=self._dropped,
            subscriptions=self._subscriptions,
            connected=self._connected,
        )

    async def wait_subscribed(self, count: int = 1) -> None:
        """Block until ``count`` subscriptions have been made in total.

        ``wait_subscribed(2)`` returns once the stream is live again after the
        first drop: a supervisor's health check, and how tests order "cut the
        connection" before "send the next transaction" without sleeping.
        """
        while self._subscriptions < count:
            await self._subscribed.wait()

    def _next_delay(self) -> float:
        """The wait before the next connection attempt (counted as an attempt).

        Doubles from ``backoff_initial`` per failed attempt up to ``backoff_max``, with
        jitter in [d/2, d] so that many clients cut at once do not come back in step.
        A connection that delivers a frame starts the sequence over.
        """
        base = min(self._backoff_max, self._backoff_initial * (2 ** min(self._attempt, 32)))
        self._attempt += 1
        return base * (0.5 + 0.5 * self._rng.random())

    # ----------------------------------------------------------------- counting

    def _count_bad_frame(self) -> None:
        self._bad_frames += 1
        if self._metrics is not None and self.kind == PENDING:
            self._metrics.intake_rejected.labels("bad_frame").inc()

    def _count_fetch_failed(self) -> None:
        self._fetch_failed += 1
        if self._metrics is not None:
            self._metrics.intake_rejected.labels("fetch_failed").inc()

    def _count_drop(self) -> None:
        self._dropped += 1
        if self._metrics is not None:
            self._metrics.dropped.labels(self._drop_channel).inc()

    def _count_reconnect(self) -> None:
        self._reconnects += 1
        if self._metrics is not None:
            self._metrics.ws_reconnects.labels(self.kind).inc()

    # ----------------------------------------------------------------- run

    async def run(
        self,
        send: FrameSink | trio.MemorySendChannel[Frame],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep the subscription alive and push a :class:`Frame` per notification.

        Calls ``task_status.started()`` once the first subscription is live, so
        ``await nursery.start(sub.run, send)`` returns only when frames can flow.
        Until then it keeps retrying with backoff (wrap it in a deadline if the
        node may never come up). Returns when every receiver of ``send`` is
        closed; ``send`` itself is left open (the caller owns it).

        Overload: pending transactions are pushed with ``send_nowait`` and
        counted in ``dropped`` when the channel is full (a stale transaction is
        worthless); heads are pushed with a blocking ``send`` (``send`` must then
        be a memory channel).

        For pending transactions ``send`` may instead be a :class:`FrameSink`, a
        stage whose ``take_frame`` handles the frame at once (the intake actor
        screens inline that way, without a channel hop on the hot path). The pump
        yields after each frame handed on (see :meth:`_pump_pending`), so a victim
        forwarded is taken by the strategy before the next frame is screened.
        """
        started = False

        def on_subscribed() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        # Pending frames go to a sink's take_frame, or a channel's send_nowait (a frame that
        # finds the channel full is dropped and counted here).
        push = send.send_nowait if isinstance(send, trio.MemorySendChannel) else send.take_frame
        async with trio.open_nursery() as nursery:
            if self.kind == PENDING:
                hash_send, hash_recv = trio.open_memory_channel[tuple[str, float, int]](self._fetch_queue)
                self._hash_send = hash_send
                async with hash_recv:
                    for _ in range(self._max_fetch):
                        nursery.start_soon(self._fetch_worker, hash_recv.clone(), push)
            try:
                while True:
                    try:
                        await self._session(send, push, on_subscribed)
                    except NodeError as exc:
                        log.warning("%s subscription to %s dropped: %s", self.kind, self._where, exc)
                    self._connected = False
                    await trio.sleep(self._next_delay())
                    self._count_reconnect()
            except _DownstreamClosed:
                log.info("%s subscription: every receiver is closed, stopping", self.kind)
            finally:
                self._connected = False
                nursery.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_InlineWebSocket]:
        """Open the stream, shake hands (within ``connect_timeout``), yield the connection, close it."""
        self._peer_silent = False
        with trio.move_on_after(self._connect_timeout) as scope:
            stream = await self._transport()
            ws = _InlineWebSocket(stream)
            try:
                await ws.handshake(self._host_header, self._resource)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        if scope.cancelled_caught:
            # A peer that says nothing (or dribbles) after the upgrade request: the
            # deadline ends it (the stream was closed on the way out).
            raise NodeTimeout(f"websocket handshake with {self._where} timed out")
        try:
            yield ws
        finally:
            # A drop closes with a close handshake (at most CLOSE_TIMEOUT for the answer).
            # A cancellation does not wait: the handshake is cancelled at once and the
            # stream closed without ceremony. A peer found dead by the idle watch is not
            # waited for either.
            await ws.aclose(0.0 if self._peer_silent else CLOSE_TIMEOUT)

    async def _session(
        self,
        send: FrameSink | trio.MemorySendChannel[Frame],
        push: Callable[[Frame], object],
        on_subscribed: Callable[[], None],
    ) -> None:
        """One connection: connect, subscribe, pump frames until something breaks."""
        with _map_ws_errors(self._where):
            async with self._connection() as ws:
                with trio.fail_after(self._connect_timeout):
                    sub_id = await self._subscribe(ws)
                self._connected = True
                self._subscriptions += 1
                self._subscribed.set()
                self._subscribed = trio.Event()
                on_subscribed()
                log.info("%s subscription to %s is live", self.kind, self._where)
                async with trio.open_nursery() as nursery:
                    if self._idle_timeout is not None:
                        nursery.start_soon(self._watch, ws, self._idle_timeout)
                    if self.kind == HEADS:
                        await self._pump_heads(ws, sub_id, cast(trio.MemorySendChannel[Frame], send))
                    else:
                        await self._pump_pending(ws, sub_id, push)

    async def _watch(self, ws: _InlineWebSocket, idle: float) -> None:
        """Ping a connection that stayed quiet for ``idle`` seconds; raise if it answers nothing.

        Runs beside the pump, so the hot path pays one integer increment a frame for it.
        Any message is a sign of life, and so is a pong; time spent waiting for our own
        consumer (a full heads channel) is not held against the node.
        """
        while True:
            seen = self._messages
            await trio.sleep(idle)
            if self._messages != seen or self._delivering:
                continue
            # Quiet for a while: a quiet mempool, or a dead peer? Ask.
            with trio.move_on_after(self._ping_timeout):
                await ws.ping()
                continue
            if self._messages == seen and not self._delivering:
                self._peer_silent = True
                raise NodeTimeout(f"{self._where}: no frame for {idle}s and no pong within {self._ping_timeout}s")

    async def _pump_pending(self, ws: _InlineWebSocket, sub_id: str, push: Callable[[Frame], object]) -> None:
        """The hot path: read, parse, hand on without blocking, until the connection breaks.

        One read may hold hundreds of frames and ``get_message`` serves them without a
        task switch, so the pump yields after each well-formed frame it hands on: the
        tasks downstream (the strategy taking a victim, a fetch worker, a channel's
        reader) run before the rest of the burst is screened. Measured on the loopback
        pipeline (docs/performance.md): yielding only after a victim forwarded let the
        strategy's inbox overflow (928 drops in one pass of three), yielding after every
        frame dropped none. Malformed frames are not yielded for, but ``get_message``
        itself yields at least every ``CHECKPOINT_EVERY`` messages, so a burst nobody
        wants still lets cancellation in.
        """
        get = ws.get_message
        accept = self._accept
        clock = self._clock
        wall_ns = self._wall_ns
        checkpoint = trio.lowlevel.checkpoint
        while True:
            message = await get()
            result = accept(message, sub_id)
            if result is None:
                continue
            if result.__class__ is dict:
                self._push_pending(push, Frame(result, clock(), wall_ns()))
            else:
                self._queue_fetch(cast(str, result))
            await checkpoint()

    async def _pump_heads(self, ws: _InlineWebSocket, sub_id: str, send: trio.MemorySendChannel[Frame]) -> None:
        """Heads: a blocking send, so a slow consumer holds the node back instead of losing a head."""
        while True:
            message = await ws.get_message()
            result = self._accept(message, sub_id)
            if result is None:
                continue
            self._delivering = True
            try:
                await send.send(Frame(cast(dict[str, Any], result), self._clock(), self._wall_ns()))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _DownstreamClosed from exc
            finally:
                self._delivering = False

    def _accept(self, message: str | bytes, sub_id: str) -> dict[str, Any] | str | None:
        """The head both read loops share: count the message, parse it, count a bad frame
        (``None``) or a good one. A good frame means the connection delivers, so the next
        drop starts again from the short reconnect delay."""
        self._messages += 1
        try:
            result = self._parse(message, sub_id)
        except _BadFrame:
            self._count_bad_frame()
            return None
        self._frames += 1
        self._attempt = 0
        return result

    async def _subscribe(self, ws: _InlineWebSocket) -> str:
        params: list[Any] = [str(self.kind), True] if self._full_param else [str(self.kind)]
        req_id = next(self._ids)
        await ws.send_message(
            orjson.dumps({"jsonrpc": "2.0", "id": req_id, "method": "eth_subscribe", "params": params}).decode()
        )
        while True:
            message = await ws.get_message()
            try:
                reply = orjson.loads(message)
            except orjson.JSONDecodeError:
                self._count_bad_frame()
                continue
            if reply.__class__ is not dict or reply.get("id") != req_id:
                self._count_bad_frame()
                continue
            err = reply.get("error")
            if err is not None:
                code = err.get("code") if isinstance(err, dict) else None
                msg = err.get("message", "") if isinstance(err, dict) else str(err)
                if self._full_param:
                    # The node does not take the `true` form: hashes plus fetches will do.
                    log.warning("%s refused full transaction objects (%s); falling back to hashes",
                                self._where, node_text(str(msg)))
                    self._full_param = False
                    return await self._subscribe(ws)
                raise RpcError("eth_subscribe", code if isinstance(code, int) else -1, str(msg))
            sub_id = reply.get("result")
            if sub_id.__class__ is not str or not sub_id:
                raise BadNodeData(f"eth_subscribe: {self._where} answered without a subscription id")
            return sub_id

    def _parse(self, message: str | bytes, sub_id: str) -> dict[str, Any] | str:
        try:
            obj = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            raise _BadFrame from exc
        if obj.__class__ is not dict or obj.get("method") != "eth_subscription":
            raise _BadFrame
        params = obj.get("params")
        if params.__class__ is not dict or params.get("subscription") != sub_id:
            raise _BadFrame
        result = params.get("result")
        if result.__class__ is dict:
            return result
        if self.kind == PENDING and result.__class__ is str and _TX_HASH_RE.match(result):
            return result
        raise _BadFrame

    def _queue_fetch(self, tx_hash: str) -> None:
        """A hash only: fetch the object (bounded; overflow is dropped and counted)."""
        if self._rpc is None or self._hash_send is None:
            self._count_fetch_failed()
            return
        try:
            self._hash_send.send_nowait((tx_hash, self._clock(), self._wall_ns()))
        except trio.WouldBlock:
            self._count_drop()

    def _push_pending(self, push: Callable[[Frame], object], frame: Frame) -> None:
        try:
            push(frame)
        except trio.WouldBlock:
            self._count_drop()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _DownstreamClosed from exc

    async def _fetch_worker(
        self,
        hashes: trio.MemoryReceiveChannel[tuple[str, float, int]],
        push: Callable[[Frame], object],
    ) -> None:
        async with hashes:
            async for tx_hash, seen_at, first_seen_ns in hashes:
                if self._rpc is None:  # pragma: no cover - _queue_fetch never queues without rpc
                    self._count_fetch_failed()
                    continue
                try:
                    obj = await self._rpc.call("eth_getTransactionByHash", [tx_hash])
                except NodeError as exc:
                    log.debug("eth_getTransactionByHash failed: %s", exc)
                    self._count_fetch_failed()
                    continue
                if obj.__class__ is not dict:
                    # null: mined or evicted since the announcement.
                    self._count_fetch_failed()
                    continue
                self._fetched += 1
                try:
                    self._push_pending(push, Frame(obj, seen_at, first_seen_ns))
                except _DownstreamClosed:
                    return
