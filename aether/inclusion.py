"""Did our submitted bundles land, and what did they really earn?

After each head, every tracked bundle whose target block is at or below the
head is settled: the receipts of our transactions (one batch) say whether the
bundle landed in its target block and whether anything reverted.

Realised profit comes from the receipts, per bundle: the WETH ``Transfer``
logs into and out of the searcher's account inside our transactions, minus
``gasUsed x effectiveGasPrice`` of each (the builder's tip is inside the gas
price). Phase 1 backruns move no ETH value, so that is the whole of it, and it
is compared with ``expected_net_profit_wei`` (and reported next to the gross).
Receipts attribute exactly even when several of our bundles share a block.

The balances are the ground truth all the same: for each block where bundles
landed, the searcher's WETH plus ETH at the block minus the block before must
equal the sum the receipts gave. If it does not (someone sent the account
money, or a transaction moved value the receipts do not show) the difference
is split over that block's bundles (equal shares, remainder to the first) so
the sums stay exact, and it is counted as ``unattributed``.

``clean`` says that nothing else touched our pools before our last
transaction in the target block: no ``Sync``/``Swap`` log on one of the
route's pairs from a transaction other than the victim and ours, at a lower
index than our last transaction. A clean bundle ran on exactly the state it
was sized on, so it must realise its prediction to the wei.

A bundle is judged once its target block N has :data:`CONFIRMATIONS` blocks on
top (the head is at N + 1, as for settlement). A missing receipt is not a
miss by itself: the node answering may be a block behind the WebSocket that
announced the head (a load balancer's backends). The same batch fetches
``eth_getBlockByNumber(N)``; "not included" is concluded only when that block
exists on the node and, when the heads told us N's hash, is that block. Until
then the bundle stays tracked and is asked about again at the next head.

Node failures are not outcomes either: the bundles stay tracked and are
retried on the next head. A bundle still not judged :data:`GIVE_UP_AFTER`
blocks past its target ends as an explicit *unknown* outcome
(``Outcome.unknown``, with a reason), logged and counted in
``aether_inclusion_unknown_total`` and in ``abandoned``: never a miss, never an
inclusion, and no P&L or revert for risk (we do not know of any).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs
from eth_abi import encode as abi_encode
from eth_hash.auto import keccak

from ._errors import NodeError
from .chain import RpcClient
from .messages import Bundle, Head
from .metrics import Metrics
from .quantity import hex_quantity

__all__ = ["CONFIRMATIONS", "GIVE_UP_AFTER", "InclusionStatistics", "InclusionTracker", "Outcome"]

log = logging.getLogger(__name__)

#: Blocks past its target after which a bundle not judged yet is an unknown outcome.
GIVE_UP_AFTER = 16
#: Judge block N once the head is at N + this (as the settlement of the in-flight actor).
CONFIRMATIONS = 1
_BALANCE_OF = bytes.fromhex("70a08231")
_TRANSFER = "0x" + keccak(b"Transfer(address,address,uint256)").hex()
_SYNC = "0x" + keccak(b"Sync(uint112,uint112)").hex()
_SWAP = "0x" + keccak(b"Swap(address,uint256,uint256,uint256,uint256,address)").hex()


@attrs.frozen
class Outcome:
    """What happened to one submitted bundle (feeds the risk state and metrics).

    ``clean`` is only ever true for an included bundle: nothing but the victim
    and our own transactions touched the route's pools before our last one.
    ``unknown`` means the node never let us judge it (``reason`` says why):
    neither included nor missed, and ``included``/``reverted`` are False and
    ``realised_profit_wei`` 0 because nothing is known, not because nothing happened.
    """

    bundle: Bundle
    included: bool
    reverted: bool
    realised_profit_wei: int
    predicted_profit_wei: int
    clean: bool = False
    unknown: bool = False
    reason: str | None = None

    @property
    def predicted_gross_wei(self) -> int:
        return self.bundle.expected_gross_profit_wei

    @property
    def delta_wei(self) -> int:
        """Realised minus predicted net (0 when the prediction was exact)."""
        return self.realised_profit_wei - self.predicted_profit_wei

    @property
    def exact(self) -> bool:
        return self.included and self.delta_wei == 0

    def record(self) -> dict[str, Any]:
        """One ``inclusions.jsonl`` line: amounts as decimal strings."""
        b = self.bundle
        return {
            "arb_id": b.arb_id,
            "source": b.source,
            "target_block": b.target_block,
            "included": self.included,
            "unknown": self.unknown,
            "reason": self.reason,
            "reverted": self.reverted,
            "clean": self.clean,
            "exact": self.exact,
            "realised_profit_wei": str(self.realised_profit_wei),
            "predicted_profit_wei": str(self.predicted_profit_wei),
            "predicted_gross_wei": str(self.predicted_gross_wei),
            "delta_wei": str(self.delta_wei),
            "victim_tx_hash": b.victim_hash_hex,
            "our_tx_hashes": ["0x" + h.hex() for h in b.our_tx_hashes],
        }


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
    exact: int = 0
    clean: int = 0
    unattributed_wei: int = 0


def _word_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


class InclusionTracker:
    """Settles submitted bundles against the chain, one head at a time.

    Args:
        rpc: the node.
        searcher: the searcher's address (the bundle signer).
        weth: the WETH token address (the inventory).
        metrics: the process's metrics.
        confirmations: judge block N once the head is at N + this.
        give_up_after: blocks past the target after which a bundle not
            judged yet ends as an unknown outcome.
    """

    def __init__(
        self, rpc: RpcClient, *, searcher: str, weth: str, metrics: Metrics,
        confirmations: int = CONFIRMATIONS, give_up_after: int = GIVE_UP_AFTER,
    ) -> None:
        self._rpc = rpc
        self._confirmations = confirmations
        self._give_up = give_up_after
        self._hashes: dict[int, str] = {}  # block number -> hash, as the heads told us
        self._searcher = searcher.lower()
        self._weth = weth.lower()
        self._metrics = metrics
        self._balance_call = "0x" + (_BALANCE_OF + abi_encode(["address"], [self._searcher])).hex()
        self._pending: list[Bundle] = []
        self._included = 0
        self._not_included = 0
        self._reverted = 0
        self._errors = 0
        self._abandoned = 0
        self._realised = 0
        self._predicted = 0
        self._exact = 0
        self._clean = 0
        self._unattributed = 0

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
            exact=self._exact,
            clean=self._clean,
            unattributed_wei=self._unattributed,
        )

    def track(self, bundle: Bundle) -> None:
        """Watch a bundle that was sent to builders."""
        self._pending.append(bundle)

    async def on_head(self, head: Head) -> list[Outcome]:
        """Judge every tracked bundle whose target block is confirmed at ``head``.

        Returns the outcomes concluded now (included, missed, or unknown after
        :data:`GIVE_UP_AFTER` blocks); the others stay tracked.
        """
        self._learn(head)
        due = [b for b in self._pending if b.target_block + self._confirmations <= head.number]
        if not due:
            return []
        try:
            outcomes = await self._settle(due)
        except (NodeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            # Node down, or an answer of the wrong shape: not an outcome, retry later.
            self._errors += 1
            log.warning("inclusion check failed (%s); retrying on the next head", type(exc).__name__)
            outcomes = []
            waiting = due
            why = f"node_error: {type(exc).__name__}"
        else:
            judged = {id(o.bundle) for o in outcomes}
            waiting = [b for b in due if id(b) not in judged]
            why = "receipts_not_indexed"
        for b in waiting:
            if head.number - b.target_block >= self._give_up:
                outcomes.append(Outcome(bundle=b, included=False, reverted=False, realised_profit_wei=0,
                                        predicted_profit_wei=b.expected_net_profit_wei, unknown=True, reason=why))
        settled = {id(o.bundle) for o in outcomes}
        self._pending = [b for b in self._pending if id(b) not in settled]
        for o in outcomes:
            self._count(o)
        return outcomes

    def _learn(self, head: Head) -> None:
        """Remember the hashes of the head and its parent (the latest head wins: reorg-aware), bounded."""
        for number, h in ((head.number, head.hash), (head.number - 1, head.parent_hash)):
            if isinstance(h, str) and len(h) == 66:  # a 32-byte hash; anything else tells us nothing
                self._hashes[number] = h.lower()
        horizon = head.number - self._give_up - self._confirmations - 1
        for n in [n for n in self._hashes if n < horizon]:
            del self._hashes[n]

    def _count(self, o: Outcome) -> None:
        source = o.bundle.source
        if o.unknown:
            self._abandoned += 1
            self._metrics.inclusion_unknown.labels(source).inc()
            log.error("bundle %s (block %d): inclusion unknown after %d blocks (%s); not counted as a miss",
                      o.bundle.arb_id, o.bundle.target_block, self._give_up, o.reason)
            return
        if o.included:
            self._included += 1
            self._metrics.included.labels(source).inc()
            self._realised += o.realised_profit_wei
            self._predicted += o.predicted_profit_wei
            self._metrics.realised_profit.labels(source).inc(o.realised_profit_wei)
            self._metrics.inclusion_delta.labels(source).inc(o.delta_wei)
            self._metrics.included_predicted.labels(source).inc(o.predicted_profit_wei)
            if o.exact:
                self._exact += 1
                self._metrics.included_exact.labels(source).inc()
            if o.clean:
                self._clean += 1
                self._metrics.included_clean.labels(source).inc()
        else:
            self._not_included += 1
            self._metrics.not_included.labels(source).inc()
        if o.reverted:
            self._reverted += 1
            self._metrics.reverted.labels(source).inc()

    def _receipt_value(self, r: dict[str, Any]) -> int:
        """What one of our transactions earned: WETH in minus WETH out minus gas paid."""
        value = -hex_quantity(r["gasUsed"]) * hex_quantity(r["effectiveGasPrice"])
        for lg in r.get("logs") or ():
            topics: list[Any] = lg.get("topics") or []
            if str(lg.get("address", "")).lower() != self._weth or len(topics) != 3 or topics[0] != _TRANSFER:
                continue
            amount = hex_quantity(lg["data"])
            if _word_address(topics[2]) == self._searcher:
                value += amount
            if _word_address(topics[1]) == self._searcher:
                value -= amount
        return value

    def _block_known(self, target: int, block: Any) -> bool:
        """The node has block ``target``, and it is the one our heads named (when they named one)."""
        if isinstance(block, Exception):
            log.info("block %d not readable (%s): no miss concluded", target, type(block).__name__)
            return False
        if not isinstance(block, dict) or hex_quantity(block["number"]) != target:
            return False
        known = self._hashes.get(target)
        return known is None or str(block.get("hash", "")).lower() == known

    def _on_our_chain(self, r: Any) -> bool:
        """A receipt whose block hash contradicts the heads' is from a fork: not a fact yet."""
        known = self._hashes.get(hex_quantity(r["blockNumber"]))
        got = r.get("blockHash")
        return known is None or not isinstance(got, str) or got.lower() == known

    async def _settle(self, due: Sequence[Bundle]) -> list[Outcome]:
        """The outcomes of the ``due`` bundles the node lets us judge now (the others are left out)."""
        hashes = [h for b in due for h in b.our_tx_hashes]
        targets = sorted({b.target_block for b in due})
        answers = await self._rpc.batch(
            [("eth_getTransactionReceipt", ["0x" + h.hex()]) for h in hashes]
            + [("eth_getBlockByNumber", [hex(t), False]) for t in targets]
        )
        receipts = answers[: len(hashes)]
        for r in receipts:
            if isinstance(r, Exception):
                raise r
        # A block the node cannot give is no proof it has it (a miss waits); receipts it gave still count.
        known = {t: self._block_known(t, blk) for t, blk in zip(targets, answers[len(hashes):], strict=True)}
        by_hash: dict[bytes, Any] = dict(zip(hashes, receipts, strict=True))

        judged: list[Bundle] = []
        for b in due:
            rs = [by_hash[h] for h in b.our_tx_hashes]
            if not all(isinstance(r, dict) and self._on_our_chain(r) for r in rs) and not known[b.target_block]:
                # A receipt the node does not have (yet), and no proof the node has block N:
                # the node may be behind the head. Ask again at the next head.
                log.info("bundle %s: block %d or its receipts not on the node yet; asking again next head",
                         b.arb_id, b.target_block)
                continue
            judged.append(b)
        due = judged

        landed: dict[int, list[Bundle]] = {}
        status: dict[int, tuple[bool, bool]] = {}
        realised: dict[int, int] = {}
        block_sum: dict[int, int] = {}  # receipts' value of every tx of ours per block
        for b in due:
            rs = [by_hash[h] for h in b.our_tx_hashes]
            included = all(isinstance(r, dict) and hex_quantity(r["blockNumber"]) == b.target_block
                           and self._on_our_chain(r) for r in rs)
            reverted = any(isinstance(r, dict) and r.get("status") == "0x0" for r in rs)
            status[id(b)] = (included, reverted)
            value = 0
            for r in rs:
                if isinstance(r, dict):
                    v = self._receipt_value(r)
                    value += v
                    block = hex_quantity(r["blockNumber"])
                    block_sum[block] = block_sum.get(block, 0) + v
            realised[id(b)] = value
            if included:
                landed.setdefault(b.target_block, []).append(b)

        blocks = sorted(landed)
        deltas, logs = await self._block_facts(blocks, landed)
        clean: dict[int, bool] = {}
        for block, group in landed.items():
            surprise = deltas[block] - block_sum.get(block, 0)
            if surprise:
                self._unattributed += surprise
                log.warning("block %d: balance moved %d wei more than our receipts show", block, surprise)
                share, rem = divmod(surprise, len(group))
                for i, b in enumerate(group):
                    realised[id(b)] += share + (rem if i == 0 else 0)
            for b in group:
                clean[id(b)] = self._is_clean(b, by_hash, logs[block])

        out = []
        for b in due:
            included, reverted = status[id(b)]
            out.append(
                Outcome(
                    bundle=b,
                    included=included,
                    reverted=reverted,
                    # A bundle that missed may still have spent gas on a stray landed tx.
                    realised_profit_wei=realised[id(b)],
                    predicted_profit_wei=b.expected_net_profit_wei,
                    clean=clean.get(id(b), False),
                )
            )
        return out

    @staticmethod
    def _is_clean(b: Bundle, by_hash: dict[bytes, Any], logs: Sequence[dict[str, Any]]) -> bool:
        ours = {"0x" + h.hex() for h in b.our_tx_hashes}
        allowed = set(ours)
        if b.victim_hash_hex is not None:
            allowed.add(b.victim_hash_hex)
        last = max(hex_quantity(by_hash[h]["transactionIndex"]) for h in b.our_tx_hashes)
        pairs = {hop.pair.lower() for hop in b.candidate.route}
        for lg in logs:
            if str(lg.get("address", "")).lower() not in pairs:
                continue
            if str(lg.get("transactionHash", "")).lower() in allowed:
                continue
            if hex_quantity(lg["transactionIndex"]) < last:
                return False
        return True

    async def _block_facts(
        self, blocks: Sequence[int], landed: dict[int, list[Bundle]]
    ) -> tuple[dict[int, int], dict[int, list[dict[str, Any]]]]:
        """Per block: the searcher's WETH+ETH delta, and the Sync/Swap logs on our pairs."""
        if not blocks:
            return {}, {}
        calls: list[tuple[str, list[Any]]] = []
        for block in blocks:
            for tag in (hex(block), hex(block - 1)):
                calls.append(("eth_getBalance", [self._searcher, tag]))
                calls.append(("eth_call", [{"to": self._weth, "data": self._balance_call}, tag]))
            pairs = sorted({hop.pair.lower() for b in landed[block] for hop in b.candidate.route})
            calls.append(("eth_getLogs", [{"fromBlock": hex(block), "toBlock": hex(block), "address": pairs,
                                           "topics": [[_SYNC, _SWAP]]}]))
        results = await self._rpc.batch(calls)
        for r in results:
            if isinstance(r, Exception):
                raise r
        deltas: dict[int, int] = {}
        logs: dict[int, list[dict[str, Any]]] = {}
        for i, block in enumerate(blocks):
            eth_at, weth_at, eth_before, weth_before = (hex_quantity(x) for x in results[5 * i : 5 * i + 4])
            deltas[block] = (eth_at + weth_at) - (eth_before + weth_before)
            got = results[5 * i + 4]
            if not isinstance(got, list):
                raise TypeError("eth_getLogs did not return a list")
            logs[block] = got
        return deltas, logs
