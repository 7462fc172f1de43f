"""WebSocket subscriptions (``eth_subscribe``), with reconnect, over trio-websocket.

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

The WebSocket protocol is trio-websocket's (the design card's choice; wsproto
parses every byte underneath). The byte stream under it comes from a *transport*:
by default TCP, or TLS over TCP with the system trust store for ``wss://``; tests
pass one that returns an end of ``trio.testing.memory_stream_pair()`` (or a scripted
stream) and run the node's side on the other end, in virtual time. Between the two
sits :class:`_ReadBudget`, which bounds what the node may send without completing a
message (trio-websocket alone keeps every fragment of an unfinished message, and an
empty fragment adds nothing to its size cap). trio-websocket's, trio's and the OS's
exceptions become aether's own in one place, :func:`_map_ws_errors`. Garbage from
the node (non-JSON, wrong shape) is counted in ``bad_frames`` and skipped, never
raised.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import logging
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit

import attrs
import h11
import orjson
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)
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

#: A longer message is refused by trio-websocket (close 1009), which makes a reconnect.
#: It counts characters of a text message (a UTF-8 character is at most 4 bytes).
#: Full blocks are not subscribed to; the longest pending transaction nodes relay
#: (geth's, reth's and Nethermind's pools refuse transactions over 128 KiB; its
#: calldata hex-encoded, about 260 KB of JSON) fits four times over.
MAX_MESSAGE_SIZE: Final = 1024 * 1024
#: Bytes asked of the stream per read (trio-websocket's default is 4 KiB): a burst of
#: notifications is parsed from one read instead of one read per frame or two.
RECEIVE_BUFFER_SIZE: Final = 256 * 1024
#: Parsed messages trio-websocket's reader task may hold ahead of the consumer: none.
#: The reader parses one read's messages and hands each one over as the consumer asks,
#: so a slow consumer pushes back into TCP, and what the node sent that the consumer
#: has not had is bounded (see ``READ_BUDGET``). A deeper queue bought nothing on the
#: loopback pipeline, whose consumer is the slower side (docs/performance.md).
MESSAGE_QUEUE_SIZE: Final = 0
#: Bytes the node may send between two messages the consumer gets: the rest of one
#: read, a whole message at its largest in UTF-8 bytes, its frame headers, and the
#: read that ends it. A node that goes past it (an endless message of empty fragments,
#: a flood of pings) is dropped: trio-websocket would keep every fragment.
READ_BUDGET: Final = 2 * RECEIVE_BUFFER_SIZE + 4 * MAX_MESSAGE_SIZE + MAX_MESSAGE_SIZE // 4
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
    count. Reading each frame is a checkpoint, so the tasks the stage feeds run
    before the rest of a burst is screened. Raising
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


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


def _translate(exc: BaseException, where: str) -> BaseException | None:
    """Ours for a library's exception; ``exc`` itself if it is ours already; None if not a connection failure."""
    if isinstance(exc, (NodeError, _DownstreamClosed)):
        return exc
    if isinstance(exc, ConnectionRejected):
        return NodeUnreachable(f"{where} rejected the websocket handshake with HTTP {exc.status_code}")
    if isinstance(exc, ConnectionClosed):
        reason = exc.reason
        why = f"{reason.name} ({reason.code})" if reason is not None else "no close frame"
        return NodeUnreachable(f"websocket to {where} closed: {why}")
    if isinstance(exc, HandshakeError):
        # The class name only: its text could quote the node's headers.
        return NodeUnreachable(f"websocket handshake with {where} failed: {type(exc).__name__}")
    if isinstance(exc, (LocalProtocolError, RemoteProtocolError, h11.LocalProtocolError,
                        h11.RemoteProtocolError)):
        # wsproto refused what the node sent (trio-websocket's reader task then raises
        # h11's LocalProtocolError answering a bad upgrade). Its text could quote the
        # node's headers: fixed words only.
        return NodeUnreachable(f"websocket to {where} failed: the node broke the websocket protocol")
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
    """The one place where trio-websocket's, trio's and OS errors become ours (``raise Ours from exc``).

    The connection lives in a nursery (trio-websocket's reader task, the pump, the
    idle watch), so what comes out may be an exception group: one failure plus the
    cancellations it caused, or plus a failure it caused in another task while the
    connection closed (the reader refusing to pong a ping that came after our Close;
    the idle watch's ping into the socket the pump found dead). One of them is what
    counts: the end of the line first, then one of ours, then the first. A group of
    cancellations only, or with anything that is not a connection failure, goes on
    as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        failures: list[tuple[BaseException, BaseException]] = []
        for leaf in _leaves(group):
            if isinstance(leaf, trio.Cancelled):
                continue
            translated = _translate(leaf, where)
            if translated is None:
                raise
            failures.append((leaf, translated))
        if not failures:
            raise
        cause, chosen = min(failures, key=lambda pair: 0 if isinstance(pair[1], _DownstreamClosed)
                            else 1 if pair[0] is pair[1] else 2)
        if chosen is cause:
            raise cause from None  # ours already (or the end of the line): out of its group
        raise chosen from cause
    except BaseException as exc:
        ours = _translate(exc, where)
        if ours is None or ours is exc:
            raise
        raise ours from exc


class _ReadBudget(trio.abc.Stream):
    """The node's byte stream, with a bound on what it may send the consumer nothing for.

    trio-websocket reads through this stream. Every read adds to ``unanswered``; the
    consumer sets it back to 0 each time it gets a message. A read asked for while
    ``unanswered`` is past ``budget`` raises :class:`BadNodeData` in trio-websocket's
    reader task, which ends the connection (and the subscriber reconnects). Why: a
    node that opens a message and sends empty continuation frames without end costs
    trio-websocket a list slot each and adds nothing to its size cap; nor does a flood
    of pings. With no message queued ahead (``MESSAGE_QUEUE_SIZE`` 0), a well-behaved
    node never sends more than ``READ_BUDGET`` between two messages the consumer gets.

    It also tells how the stream ended (``ended``, ``end_reason``): trio-websocket
    closes the stream on an answer that is not an upgrade, or sees it end, but leaves
    its opening handshake waiting; :meth:`Subscriber._connection` races the two.
    """

    def __init__(self, stream: trio.abc.Stream, where: str, budget: int = 0) -> None:
        self._stream = stream
        self._where = where
        self._budget = budget or READ_BUDGET
        self.unanswered = 0
        self.ended = trio.Event()
        self.end_reason = ""

    def _end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.unanswered > self._budget:
            self._end("too many bytes without a message")
            raise BadNodeData(f"websocket to {self._where}: {self.unanswered:,} bytes without a complete message "
                              f"(at most {self._budget:,})")
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._end("the connection broke")
            raise
        if not data:
            self._end("the connection closed")
        self.unanswered += len(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # trio-websocket then gives up without closing the stream, its handshake waiting.
            self._end("the connection broke")
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        # Before the upgrade, trio-websocket closes the stream on an answer wsproto refused.
        self._end("the answer is not a websocket upgrade")
        await self._stream.aclose()


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
        screens inline that way, without a channel hop on the hot path). Every frame
        is read through a checkpoint (trio-websocket's ``get_message``), so the tasks
        downstream get a turn between any two frames of a burst and a victim
        forwarded is taken by the strategy before the next one is screened.
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
    async def _connection(self) -> AsyncIterator[tuple[WebSocketConnection, _ReadBudget]]:
        """Open the stream, shake hands (within ``connect_timeout``), yield the connection, close it.

        trio-websocket's reader task lives in this nursery: the connection's lifetime
        is this block, as with ``open_websocket_url``, only over our transport.
        """
        self._peer_silent = False
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(self._connect_timeout) as scope:
                stream = _ReadBudget(await self._transport(), self._where)
                try:
                    ws = await self._handshake(nursery, stream)
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
            if scope.cancelled_caught:
                # A peer that says nothing (or dribbles) after the upgrade request.
                raise NodeTimeout(f"websocket handshake with {self._where} timed out")
            try:
                yield ws, stream
            finally:
                # A drop closes with a close handshake (the reader task still runs to read
                # the answer). A cancellation does not wait: aclose is cancelled at once
                # and trio-websocket then closes the stream without ceremony.
                # A peer found dead by the idle watch is not waited for either.
                with trio.move_on_after(0.0 if self._peer_silent else CLOSE_TIMEOUT):
                    await ws.aclose()
                # trio-websocket leaves the stream open when the node ended the close
                # handshake (a client waits for the server's TCP close) or when its reader
                # is cancelled: closed here, whoever closed first, so no socket outlives
                # its connection. (Before the nursery is cancelled: a checkpoint after that
                # would turn the drop being raised into a cancellation.) Shielded: the nursery
                # is cancelled already if the reader task failed during the close, and the
                # Cancelled aclose_forcefully would raise then takes the place of the drop
                # (or of the end of the line) being raised. It does not wait either way.
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
                nursery.cancel_scope.cancel()

    async def _handshake(self, nursery: trio.Nursery, stream: _ReadBudget) -> WebSocketConnection:
        """trio-websocket's opening handshake, raced against the end of the stream.

        A node that closes the connection, or answers something wsproto refuses
        (garbage, a 101 without the right accept token, a subprotocol we did not ask
        for), makes trio-websocket close or lose the stream but leaves its handshake
        waiting; the stream's end is the answer, and the next dial follows at once
        instead of after ``connect_timeout``. Only our fixed words are logged: the
        node's text (its headers) stays out.
        """
        done: list[WebSocketConnection] = []

        async def shake() -> None:
            done.append(await wrap_client_stream(
                nursery,
                cast(trio.SocketStream, stream),  # any trio Stream works; the hint is narrower
                self._host_header,
                self._resource,
                message_queue_size=MESSAGE_QUEUE_SIZE,
                max_message_size=MAX_MESSAGE_SIZE,
                receive_buffer_size=RECEIVE_BUFFER_SIZE,
            ))
            race.cancel_scope.cancel()

        async with trio.open_nursery() as race:
            race.start_soon(shake)
            await stream.ended.wait()
            # The stream ended first; a last checkpoint lets a 4xx answer's
            # ConnectionRejected, raised in the reader task, be the reason instead.
            await trio.lowlevel.checkpoint()
            raise NodeUnreachable(f"websocket handshake with {self._where} failed: {stream.end_reason}")
        return done[0]

    async def _session(
        self,
        send: FrameSink | trio.MemorySendChannel[Frame],
        push: Callable[[Frame], object],
        on_subscribed: Callable[[], None],
    ) -> None:
        """One connection: connect, subscribe, pump frames until something breaks."""
        with _map_ws_errors(self._where):
            async with self._connection() as (ws, budget):
                with trio.fail_after(self._connect_timeout):
                    sub_id = await self._subscribe(ws, budget)
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
                        await self._pump_heads(ws, budget, sub_id, cast(trio.MemorySendChannel[Frame], send))
                    else:
                        await self._pump_pending(ws, budget, sub_id, push)

    async def _watch(self, ws: WebSocketConnection, idle: float) -> None:
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

    async def _pump_pending(self, ws: WebSocketConnection, budget: _ReadBudget, sub_id: str,
                            push: Callable[[Frame], object]) -> None:
        """The hot path: read, parse, hand on without blocking, until the connection breaks."""
        get = ws.get_message
        accept = self._accept
        clock = self._clock
        wall_ns = self._wall_ns
        while True:
            message = await get()  # a checkpoint: downstream tasks run between frames
            budget.unanswered = 0
            result = accept(message, sub_id)
            if result is None:
                continue
            if result.__class__ is dict:
                self._push_pending(push, Frame(result, clock(), wall_ns()))
            else:
                self._queue_fetch(cast(str, result))

    async def _pump_heads(self, ws: WebSocketConnection, budget: _ReadBudget, sub_id: str,
                          send: trio.MemorySendChannel[Frame]) -> None:
        """Heads: a blocking send, so a slow consumer holds the node back instead of losing a head."""
        while True:
            message = await ws.get_message()
            budget.unanswered = 0
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

    async def _subscribe(self, ws: WebSocketConnection, budget: _ReadBudget) -> str:
        params: list[Any] = [str(self.kind), True] if self._full_param else [str(self.kind)]
        req_id = next(self._ids)
        await ws.send_message(
            orjson.dumps({"jsonrpc": "2.0", "id": req_id, "method": "eth_subscribe", "params": params}).decode()
        )
        while True:
            message = await ws.get_message()
            budget.unanswered = 0
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
                    return await self._subscribe(ws, budget)
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
