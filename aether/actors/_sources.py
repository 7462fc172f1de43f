"""The two sources of the pipeline: heads and mempool intake.

Both sit on a WebSocket :class:`~aether.chain.Subscriber` (which reconnects and
resubscribes on its own) and turn its frames into typed messages.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import trio

from .._errors import DecodeError, NodeError, NodeErrorKind, RpcError
from ..chain import Frame, RpcClient, Subscriber, decode_pending_tx, head_from_rpc
from ..messages import ActorStatistics, Head, PendingTx, Tick
from ..metrics import Metrics
from ..quantity import hex_quantity
from ..strategy._screen import Prefilter

__all__ = ["SEEN_MAX", "HeadsActor", "IntakeActor", "IntakeSkip", "RecentHashes", "balance_calls"]

log = logging.getLogger("aether.actors.heads")

_BALANCE_OF = "0x70a08231"

#: Victim hashes intake remembers (about a day of mainnet's swaps; 32-byte keys, a few MB).
SEEN_MAX = 65_536


class _Inc(Protocol):
    def inc(self, amount: int = 1, /) -> None: ...


class _Labelled(Protocol):
    def labels(self, label: str, /) -> _Inc: ...


class IntakeSkip(enum.StrEnum):
    """Why intake skipped a victim the prefilter let through (``aether_mempool_screen_skipped_total``
    reasons beside :class:`~aether.strategy.ScreenSkip`'s)."""

    DUPLICATE = "duplicate"  # the same transaction hash, announced again (a node re-broadcast, a reconnect)


class RecentHashes:
    """A bounded set of recently seen transaction hashes, least recently seen forgotten first.

    Keys are the 32 hash bytes the decoder checked against the re-encoded
    transaction, so two spellings of one hash (case, leading zeros) are one key and a
    frame cannot name a hash it does not carry. A replacement transaction (same
    sender and nonce, new fee) has a new hash: it is not a duplicate.
    """

    __slots__ = ("_max", "_seen")

    def __init__(self, max_size: int = SEEN_MAX) -> None:
        if max_size < 1:
            raise ValueError(f"RecentHashes: max_size must be >= 1, got {max_size!r}")
        self._max = max_size
        self._seen: dict[bytes, None] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, tx_hash: bytes) -> bool:
        """True if ``tx_hash`` was seen before (it becomes the newest either way)."""
        seen = self._seen
        if tx_hash in seen:
            del seen[tx_hash]
            seen[tx_hash] = None
            return True
        seen[tx_hash] = None
        if len(seen) > self._max:
            del seen[next(iter(seen))]
        return False

    def forget(self, tx_hash: bytes) -> None:
        """Forget ``tx_hash`` (a victim dropped unprocessed may be taken when announced again)."""
        self._seen.pop(tx_hash, None)


def balance_calls(searcher: str, weth: str, block_tag: str) -> list[tuple[str, list[Any]]]:
    """The account-state calls made once per head, in one batch."""
    data = _BALANCE_OF + "0" * 24 + searcher.lower().removeprefix("0x")
    return [
        ("eth_getBalance", [searcher, block_tag]),
        ("eth_call", [{"to": weth, "data": data}, block_tag]),
        ("eth_getTransactionCount", [searcher, "pending"]),
    ]


def _int_or_none(value: object) -> int | None:
    if value == "0x":
        return 0
    try:
        return hex_quantity(value)
    except (TypeError, ValueError):
        return None


class HeadsActor:
    """New heads in, :class:`Tick` out to every downstream actor that needs the head.

    Each head costs one batched RPC call for the searcher's ETH and WETH balance
    and pending nonce. A failed fetch still emits the tick, with ``None``
    balances, so that risk fails closed instead of acting on stale numbers.
    """

    def __init__(
        self,
        *,
        ws_url: str,
        rpc: RpcClient,
        searcher: str,
        weth: str,
        metrics: Metrics,
        outs: Sequence[trio.MemorySendChannel[Tick]],
    ) -> None:
        self._ws_url = ws_url
        self._rpc = rpc
        self._searcher = searcher
        self._weth = weth
        self._metrics = metrics
        self._outs = outs
        self._last = -1
        self._last_hash = ""
        self._processed = 0
        self._rejected = 0

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(processed=self._processed, rejected=self._rejected)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, recv = trio.open_memory_channel[Frame](16)
        sub = Subscriber(self._ws_url, "newHeads", rpc=self._rpc, metrics=self._metrics)
        async with trio.open_nursery() as nursery:
            await nursery.start(sub.run, send)
            task_status.started()
            async for frame in recv:
                try:
                    head = head_from_rpc(frame.obj, seen_at=frame.seen_at)
                except DecodeError as exc:
                    # Counted for the run's silence watchdog too: a node sending only these is
                    # as good as silent. Logged on the first and every 100th, so a flood cannot
                    # flood the log.
                    self._rejected += 1
                    self._metrics.node_errors.labels(NodeErrorKind.MALFORMED_HEAD).inc()
                    if self._rejected % 100 == 1:
                        log.warning("malformed head from the node (%d so far): %s", self._rejected, exc)
                    continue
                if head.number < self._last or (head.number == self._last and head.hash == self._last_hash):
                    continue  # an old or the same head, replayed after a reconnect (a reorg's new hash passes)
                self._last, self._last_hash = head.number, head.hash
                self._metrics.head.set(head.number)
                tick = await self._tick(head)
                self._processed += 1
                for out in self._outs:
                    await out.send(tick)
            nursery.cancel_scope.cancel()

    async def _tick(self, head: Head) -> Tick:
        nbf = head.next_base_fee
        try:
            eth, weth, nonce = await self._rpc.batch(balance_calls(self._searcher, self._weth, hex(head.number)))
        except NodeError as exc:
            log.warning("account state at head %d unavailable: %s", head.number, exc)
            return Tick(head, nbf, None, None, None)
        vals = [None if isinstance(v, RpcError) else _int_or_none(v) for v in (eth, weth, nonce)]
        return Tick(head, nbf, vals[0], vals[1], vals[2])


class IntakeActor:
    """Pending transactions in, decoded victims out: a :class:`~aether.chain.FrameSink` stage.

    The cheap filter runs before the decode, so the keccak re-encoding is paid only
    for candidate victims. Without a ``prefilter`` it is ``to`` is a configured
    router (the Router02 decoder's victims). With one (what ``aether run`` uses:
    victims are then simulated, whatever they call) it is the
    :class:`~aether.strategy.Prefilter`: every skip is counted by reason in
    ``aether_mempool_screen_skipped_total`` and every pass by hint in
    ``aether_mempool_screen_passed_total``. Overload policy: the output is never
    waited on; when it is full the victim is dropped and counted (a stale victim is
    worthless).

    A victim whose hash was forwarded before (among the last ``seen_max``) is
    skipped and counted as ``duplicate``: a node announces a pending transaction
    again (re-broadcasts, reconnects), and each announcement would otherwise be
    simulated and built again only for the risk ``dedup`` gate to refuse it.
    """

    def __init__(
        self,
        *,
        ws_url: str,
        rpc: RpcClient,
        chain_id: int,
        routers: set[str],
        metrics: Metrics,
        out: trio.MemorySendChannel[PendingTx],
        prefilter: Prefilter | None = None,
        seen_max: int = SEEN_MAX,
    ) -> None:
        self._ws_url = ws_url
        self._prefilter = prefilter
        self._rpc = rpc
        self._chain_id = chain_id
        self._routers = {r.lower() for r in routers}
        self._metrics = metrics
        self._out = out
        self._seen = 0
        self._processed = 0
        self._dropped = 0
        self._rejected = 0
        self._recent = RecentHashes(seen_max)
        self._duplicates = 0
        self._duplicate_count = metrics.screen_skipped.labels(IntakeSkip.DUPLICATE)
        # Each frame counts one skip or pass: the labelled series' bound inc() are looked up
        # once per verdict, not per frame (labels() makes and hashes its key tuple each call).
        self._seen_count = metrics.pending_seen.inc
        self._counts: dict[tuple[bool, str], Callable[[], None]] = {}

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(processed=self._processed, dropped=self._dropped, rejected=self._rejected)

    @property
    def duplicates(self) -> int:
        """Victims skipped because their hash was forwarded before."""
        return self._duplicates

    @property
    def seen(self) -> int:
        """Frames screened so far (forwarded or not)."""
        return self._seen

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sub = Subscriber(self._ws_url, "newPendingTransactions", rpc=self._rpc, metrics=self._metrics)
        # Frames are screened inline as the subscription delivers them: no channel hop of
        # ours on the hottest path. Bursts wait in trio-websocket's reader (one read's
        # worth, no message queued ahead), then in TCP; reading each frame is a checkpoint,
        # so the strategy takes a forwarded victim before the rest of the burst is
        # screened; victims that still find the strategy's inbox full are dropped and counted.
        await sub.run(self, task_status=task_status)

    def _count_of(self, verdict: tuple[bool, str]) -> Callable[[], None]:
        """The counter of a screen verdict: the pass by hint or the skip by reason (cached)."""
        passed, label = verdict
        family: _Labelled = self._metrics.screen_passed if passed else self._metrics.screen_skipped
        count = self._counts[verdict] = family.labels(label).inc
        return count

    def take_frame(self, frame: Frame) -> None:
        """The :class:`~aether.chain.FrameSink` side: the subscription hands each frame here."""
        self.screen(frame)

    def screen(self, frame: Frame) -> PendingTx | None:
        """Screen one frame; returns the victim forwarded, if any. Never raises on bad input."""
        self._seen += 1
        self._seen_count()
        obj = frame.obj
        if obj.__class__ is not dict:
            return None
        prefilter = self._prefilter
        if prefilter is not None:
            verdict = prefilter.screen(obj)
            count = self._counts.get(verdict)
            if count is None:
                count = self._count_of(verdict)
            count()
            if not verdict[0]:
                return None
        else:
            to = obj.get("to")
            # Nine frames in ten stop here: exact-type checks, and lower() only when the
            # spelling is not already the lowercase one nodes send.
            if to.__class__ is not str or (to not in self._routers and to.lower() not in self._routers):
                return None
        try:
            tx = decode_pending_tx(
                obj, seen_at=frame.seen_at, first_seen_ns=frame.first_seen_ns, chain_id=self._chain_id
            )
        except DecodeError as exc:
            self._rejected += 1
            self._metrics.intake_rejected.labels(exc.reason).inc()
            return None
        if self._recent.seen(tx.hash):
            self._duplicates += 1
            self._duplicate_count.inc()
            return None
        try:
            self._out.send_nowait(tx)
        except trio.WouldBlock:
            self._recent.forget(tx.hash)
            self._dropped += 1
            self._metrics.dropped.labels("victims").inc()
            return None
        self._processed += 1
        return tx
