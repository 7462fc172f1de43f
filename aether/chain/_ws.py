"""WebSocket subscriptions (``eth_subscribe``), with reconnect.

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

The connection itself is :mod:`aether.chain._wsconn` (a client written for this
hot path: see its docstring and the benchmark); it raises :mod:`aether._errors`
already, and OS and trio transport errors are translated in one place,
:func:`_map_ws_errors`. Garbage from the node (non-JSON, wrong shape) is counted
in ``bad_frames`` and skipped, never raised.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal

import attrs
import orjson
import trio

from .._errors import BadNodeData, NodeError, NodeTimeout, NodeUnreachable, RpcError
from .._urls import display_url
from ..metrics import Metrics
from ._rpc import RpcClient
from ._wsconn import WsConnection, check_ws_url, open_ws

__all__ = ["HEADS", "PENDING", "Frame", "Subscriber", "SubscriberStatistics", "SubscriptionKind"]

log = logging.getLogger(__name__)

SubscriptionKind = Literal["newHeads", "newPendingTransactions"]
HEADS: Final = "newHeads"
PENDING: Final = "newPendingTransactions"

_TX_HASH_RE = re.compile(r"0x[0-9a-fA-F]{64}\Z")


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


@contextlib.contextmanager
def _map_ws_errors(where: str) -> Iterator[None]:
    """The one place where OS and trio transport errors become ours (the connection raises ours already)."""
    try:
        yield
    except trio.TooSlowError as exc:
        raise NodeTimeout(f"{where} did not answer in time") from exc
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise NodeUnreachable(f"websocket to {where} failed: {type(exc).__name__}") from exc


class Subscriber:
    """One ``eth_subscribe`` stream that survives drops.

    Args:
        ws_url: ``ws://`` or ``wss://`` endpoint of the node.
        kind: ``"newHeads"`` or ``"newPendingTransactions"``.
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
        connect_timeout: seconds for TCP + handshake + the subscription reply.
        clock: the monotonic clock stamped into ``Frame.seen_at``.
        wall_ns: the wall clock stamped into ``Frame.first_seen_ns``.
        rng: jitter source (tests pass a seeded one).

    Raises:
        ValueError: a bad argument, with the argument's name.
    """

    def __init__(
        self,
        ws_url: str,
        kind: SubscriptionKind,
        *,
        rpc: RpcClient | None = None,
        metrics: Metrics | None = None,
        full_txs: bool = True,
        max_fetch_concurrency: int = 16,
        fetch_queue: int = 1024,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        idle_timeout: float | None = 30.0,
        ping_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = trio.current_time,
        wall_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        if kind not in (HEADS, PENDING):
            raise ValueError(f"kind must be 'newHeads' or 'newPendingTransactions', not {kind!r}")
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
        self.kind: SubscriptionKind = kind
        self._where = display_url(ws_url)
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

    def _next_delay(self) -> float:
        base = min(self._backoff_max, self._backoff_initial * (2 ** min(self._attempt, 32)))
        self._attempt += 1
        return base * (0.5 + 0.5 * self._rng.random())

    # ----------------------------------------------------------------- run

    async def run(
        self,
        send: trio.MemorySendChannel[Frame],
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
        worthless); heads are pushed with a blocking ``send``.

        For pending transactions ``send`` may be any object with a
        ``send_nowait(frame)`` that handles the frame at once (the intake actor
        screens inline that way, without a channel hop on the hot path). Its
        return value says whether it passed work on to another task (a victim
        forwarded): then the subscription yields before the next frame, so a
        burst read in one go does not starve the actors downstream. A memory
        channel's receiver gets a turn after every frame.
        """
        started = False

        def on_subscribed() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        async with trio.open_nursery() as nursery:
            if self.kind == PENDING:
                hash_send, hash_recv = trio.open_memory_channel[tuple[str, float, int]](self._fetch_queue)
                self._hash_send = hash_send
                async with hash_recv:
                    for _ in range(self._max_fetch):
                        nursery.start_soon(self._fetch_worker, hash_recv.clone(), send)
            try:
                while True:
                    try:
                        await self._session(send, on_subscribed)
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

    async def _session(self, send: trio.MemorySendChannel[Frame], on_subscribed: Callable[[], None]) -> None:
        """One connection: connect, subscribe, pump frames until something breaks."""
        with _map_ws_errors(self._where):
            async with open_ws(
                self.ws_url, where=self._where, connect_timeout=self._connect_timeout,
                max_message_size=4 * 1024 * 1024,
            ) as ws:
                sub_id = await self._subscribe(ws)
                self._connected = True
                self._subscriptions += 1
                self._subscribed.set()
                self._subscribed = trio.Event()
                on_subscribed()
                log.info("%s subscription to %s is live", self.kind, self._where)
                await self._pump(ws, sub_id, send)

    async def _pump(self, ws: WsConnection, sub_id: str, send: trio.MemorySendChannel[Frame]) -> None:
        """Frames until the connection breaks or stays silent past the idle timeout and a ping.

        Hot path: the idle watch is one cancel scope per quiet period, not one per
        frame. The scope's deadline is the last frame's time plus the idle timeout
        as of when it was armed (or the ping's time plus the ping timeout once a ping
        is out); when it fires, a connection that did deliver in the meantime simply
        re-arms, and only a really quiet one gets pinged. Any frame, a pong included,
        is a sign of life.
        """
        first = True
        idle = self._idle_timeout
        last_frame = trio.current_time()
        pinged_at: float | None = None
        # A memory channel's receiver is another task: give it a turn after every frame.
        yield_each = isinstance(send, trio.MemorySendChannel)
        while True:
            if idle is None:
                deadline = math.inf
            elif pinged_at is None:
                deadline = last_frame + idle
            else:
                deadline = pinged_at + self._ping_timeout
            with trio.CancelScope(deadline=deadline):
                while True:
                    message = await ws.get_message()
                    last_frame = trio.current_time()
                    if message is None:
                        continue  # a pong
                    try:
                        result = self._parse(message, sub_id)
                    except _BadFrame:
                        self._count_bad_frame()
                        continue
                    self._frames += 1
                    if first:
                        # The connection delivers: the next drop starts from the short delay.
                        self._attempt = 0
                        first = False
                    if self.kind == HEADS:
                        # A head's delivery may wait on a full channel: never let the idle
                        # deadline cancel it half-way (a head would be lost).
                        with trio.CancelScope(shield=True):
                            await self._deliver(result, send)
                    elif await self._deliver(result, send) or yield_each:
                        # The sink handed work on (a victim): let the actors downstream take it
                        # before the next frame of the burst is screened. Frames that were only
                        # screened out cost no task switch.
                        await trio.lowlevel.checkpoint()
            assert idle is not None  # an infinite deadline never fires
            now = trio.current_time()
            if pinged_at is not None and last_frame >= pinged_at:
                pinged_at = None  # the ping was answered (or data came): alive
            if pinged_at is None:
                if now < last_frame + idle:
                    continue  # frames kept coming: re-arm from the last one
                # Quiet for a while: a quiet mempool, or a dead peer? Ask.
                await ws.ping()
                pinged_at = now
                continue
            raise NodeTimeout(f"{self._where}: no frame for {idle}s and no pong within {self._ping_timeout}s")

    async def _subscribe(self, ws: WsConnection) -> str:
        params: list[Any] = [self.kind, True] if self._full_param else [self.kind]
        req_id = next(self._ids)
        await ws.send_message(
            orjson.dumps({"jsonrpc": "2.0", "id": req_id, "method": "eth_subscribe", "params": params}).decode()
        )
        with trio.fail_after(self._connect_timeout):
            while True:
                message = await ws.get_message()
                if message is None:
                    continue  # a pong
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
                                    self._where, msg)
                        self._full_param = False
                        return await self._subscribe(ws)
                    raise RpcError("eth_subscribe", code if isinstance(code, int) else -1, str(msg))
                sub_id = reply.get("result")
                if sub_id.__class__ is not str or not sub_id:
                    raise BadNodeData(f"eth_subscribe: {self._where} answered without a subscription id")
                return sub_id  # type: ignore[no-any-return]

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
            return result  # type: ignore[no-any-return]
        if self.kind == PENDING and result.__class__ is str and _TX_HASH_RE.match(result):
            return result  # type: ignore[no-any-return]
        raise _BadFrame

    async def _deliver(self, result: dict[str, Any] | str, send: trio.MemorySendChannel[Frame]) -> bool:
        """Hand one result on; True when the sink says it passed work to another task."""
        seen_at = self._clock()
        first_seen_ns = self._wall_ns()
        if self.kind == HEADS:
            try:
                await send.send(Frame(result, seen_at, first_seen_ns))  # type: ignore[arg-type]
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _DownstreamClosed from exc
            return False
        if isinstance(result, dict):
            return self._push_pending(send, Frame(result, seen_at, first_seen_ns))
        # A hash only: fetch the object (bounded; overflow is dropped and counted).
        if self._rpc is None or self._hash_send is None:
            self._count_fetch_failed()
            return False
        try:
            self._hash_send.send_nowait((result, seen_at, first_seen_ns))
        except trio.WouldBlock:
            self._count_drop()
            return False
        return True

    def _push_pending(self, send: trio.MemorySendChannel[Frame], frame: Frame) -> bool:
        try:
            return bool(send.send_nowait(frame))  # an inline sink returns what it forwarded
        except trio.WouldBlock:
            self._count_drop()
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _DownstreamClosed from exc

    async def _fetch_worker(
        self,
        hashes: trio.MemoryReceiveChannel[tuple[str, float, int]],
        send: trio.MemorySendChannel[Frame],
    ) -> None:
        async with hashes:
            async for tx_hash, seen_at, first_seen_ns in hashes:
                if self._rpc is None:  # pragma: no cover - _deliver never queues without rpc
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
                    self._push_pending(send, Frame(obj, seen_at, first_seen_ns))
                except _DownstreamClosed:
                    return
