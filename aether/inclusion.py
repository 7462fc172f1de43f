"""Did our submitted bundles land, and what did they really earn?

After each head, every tracked bundle whose target block is at or below the
head is settled: the receipts of our transactions (one batch) say whether the
bundle landed in its target block and whether anything reverted; for bundles
that landed, the realised profit is the searcher's WETH plus ETH balance at the
target block minus the same at the block before. Gas and the builder's tip are
already inside the ETH delta, so realised is compared with
``expected_net_profit_wei`` (and reported next to the gross).

When several of our bundles land in the same block their effects cannot be
told apart from balances alone: the block's delta is split so that each gets
its predicted net plus an equal share of the difference (remainder to the
first), which keeps the sum exact.

Node failures are not outcomes: the bundles stay tracked and are retried on
the next head, up to :data:`GIVE_UP_AFTER` blocks past their target, then
abandoned and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs
from eth_abi import encode as abi_encode

from ._errors import NodeError
from .bundle import NonceTracker
from .chain import RpcClient
from .messages import Bundle, Head
from .metrics import Metrics

__all__ = ["GIVE_UP_AFTER", "InclusionStatistics", "InclusionTracker", "Outcome"]

log = logging.getLogger(__name__)

GIVE_UP_AFTER = 16
_BALANCE_OF = bytes.fromhex("70a08231")


@attrs.frozen
class Outcome:
    """What happened to one submitted bundle (feeds the risk state and metrics)."""

    bundle: Bundle
    included: bool
    reverted: bool
    realised_profit_wei: int
    predicted_profit_wei: int

    @property
    def predicted_gross_wei(self) -> int:
        return self.bundle.expected_gross_profit_wei

    @property
    def delta_wei(self) -> int:
        """Realised minus predicted net (0 when the prediction was exact)."""
        return self.realised_profit_wei - self.predicted_profit_wei


@attrs.frozen
class InclusionStatistics:
    tracked: int
    included: int
    not_included: int
    reverted: int
    node_errors: int
    abandoned: int
    realised_profit_wei: int
    predicted_profit_wei: int


class InclusionTracker:
    """Settles submitted bundles against the chain, one head at a time.

    Args:
        rpc: the node.
        searcher: the searcher's address (the bundle signer).
        weth: the WETH token address (the inventory).
        metrics: the process's metrics.
        nonces: if given, the nonces of bundles that missed are released.
    """

    def __init__(
        self, rpc: RpcClient, *, searcher: str, weth: str, metrics: Metrics, nonces: NonceTracker | None = None
    ) -> None:
        self._rpc = rpc
        self._searcher = searcher.lower()
        self._weth = weth.lower()
        self._metrics = metrics
        self._nonces = nonces
        self._balance_call = "0x" + (_BALANCE_OF + abi_encode(["address"], [self._searcher])).hex()
        self._pending: list[Bundle] = []
        self._included = 0
        self._not_included = 0
        self._reverted = 0
        self._errors = 0
        self._abandoned = 0
        self._realised = 0
        self._predicted = 0

    def statistics(self) -> InclusionStatistics:
        return InclusionStatistics(
            tracked=len(self._pending),
            included=self._included,
            not_included=self._not_included,
            reverted=self._reverted,
            node_errors=self._errors,
            abandoned=self._abandoned,
            realised_profit_wei=self._realised,
            predicted_profit_wei=self._predicted,
        )

    def track(self, bundle: Bundle) -> None:
        """Watch a bundle that was sent to builders."""
        self._pending.append(bundle)

    async def on_head(self, head: Head) -> list[Outcome]:
        """Settle every tracked bundle whose target block is at or below ``head``."""
        due = [b for b in self._pending if b.target_block <= head.number]
        if not due:
            return []
        try:
            outcomes = await self._settle(due)
        except (NodeError, KeyError, ValueError, TypeError) as exc:
            # Node down, or an answer of the wrong shape: not an outcome, retry later.
            self._errors += 1
            log.warning("inclusion check failed (%s); retrying on the next head", type(exc).__name__)
            stale = [b for b in due if head.number - b.target_block >= GIVE_UP_AFTER]
            for b in stale:
                self._pending.remove(b)
                self._abandoned += 1
            return []
        settled = {id(o.bundle) for o in outcomes}
        self._pending = [b for b in self._pending if id(b) not in settled]
        for o in outcomes:
            self._count(o)
        return outcomes

    def _count(self, o: Outcome) -> None:
        source = o.bundle.source
        if o.included:
            self._included += 1
            self._metrics.included.labels(source).inc()
            self._realised += o.realised_profit_wei
            self._predicted += o.predicted_profit_wei
            self._metrics.realised_profit.labels(source).inc(o.realised_profit_wei)
        else:
            self._not_included += 1
            self._metrics.not_included.labels(source).inc()
            if self._nonces is not None:
                self._nonces.release(o.bundle)
        if o.reverted:
            self._reverted += 1
            self._metrics.reverted.labels(source).inc()

    async def _settle(self, due: Sequence[Bundle]) -> list[Outcome]:
        hashes = [h for b in due for h in b.our_tx_hashes]
        receipts = await self._rpc.batch([("eth_getTransactionReceipt", ["0x" + h.hex()]) for h in hashes])
        for r in receipts:
            if isinstance(r, Exception):
                raise r
        by_hash: dict[bytes, Any] = dict(zip(hashes, receipts, strict=True))

        landed: dict[int, list[Bundle]] = {}
        status: dict[int, tuple[bool, bool]] = {}
        for b in due:
            rs = [by_hash[h] for h in b.our_tx_hashes]
            included = all(isinstance(r, dict) and int(r["blockNumber"], 16) == b.target_block for r in rs)
            reverted = any(isinstance(r, dict) and r.get("status") == "0x0" for r in rs)
            status[id(b)] = (included, reverted)
            if included:
                landed.setdefault(b.target_block, []).append(b)

        deltas = await self._balance_deltas(sorted(landed))
        realised: dict[int, int] = {}
        for block, group in landed.items():
            delta = deltas[block]
            surprise = delta - sum(b.expected_net_profit_wei for b in group)
            share, rem = divmod(surprise, len(group))
            for i, b in enumerate(group):
                realised[id(b)] = b.expected_net_profit_wei + share + (rem if i == 0 else 0)

        out = []
        for b in due:
            included, reverted = status[id(b)]
            out.append(
                Outcome(
                    bundle=b,
                    included=included,
                    reverted=reverted,
                    realised_profit_wei=realised.get(id(b), 0),
                    predicted_profit_wei=b.expected_net_profit_wei,
                )
            )
        return out

    async def _balance_deltas(self, blocks: Sequence[int]) -> dict[int, int]:
        if not blocks:
            return {}
        calls: list[tuple[str, list[Any]]] = []
        for block in blocks:
            for tag in (hex(block), hex(block - 1)):
                calls.append(("eth_getBalance", [self._searcher, tag]))
                calls.append(("eth_call", [{"to": self._weth, "data": self._balance_call}, tag]))
        results = await self._rpc.batch(calls)
        for r in results:
            if isinstance(r, Exception):
                raise r
        out: dict[int, int] = {}
        for i, block in enumerate(blocks):
            eth_at, weth_at, eth_before, weth_before = (int(x, 16) for x in results[4 * i : 4 * i + 4])
            out[block] = (eth_at + weth_at) - (eth_before + weth_before)
        return out
