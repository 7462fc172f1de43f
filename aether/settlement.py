"""Would it have won? Every bundle that passed risk, judged against the block that landed.

A bundle targets block N. Once N is known, the :class:`Settler` reads block N
(full transactions), its parent and block N's receipts in one batch, and gives
each bundle exactly one :class:`SettlementOutcome`. Where several apply, the
first in this order wins (ARCHITECTURE.md, "Settlement"):

1. ``included``: every one of our transactions is in block N (live).
2. ``victim_not_included``: the victim is not in block N; the row says where it
   is (an earlier or later block, still pending, replaced by another
   transaction of the same nonce, or dropped).
3. ``state_moved_before_victim``: a transaction before the victim in block N
   (neither ours nor the victim) touched one of the route's pools or one of
   the pools the victim itself trades through (its effect on ours flows
   through them); the row says by how much our profit changes at the
   victim's real position.
4. ``lost_to_competitor``: a transaction after the victim (or anywhere in the
   block, for the block-driven source which has no victim) touched one of the
   route's pools; the row names each such transaction, its sender, its
   effective priority fee, what it paid the block's fee recipient and, when
   its receipt shows WETH moving to its sender, what it earned and its tip as
   a share of that gap.
5. ``would_have_won``: none of the above.

``unknown`` (with a reason) when the node cannot answer: block N missing, an
inconsistent answer (a reorg between the calls), or a node error. Those are
not outcomes yet: the caller retries at the next head and gives up after
:data:`GIVE_UP_AFTER` blocks past the target.

The counterfactual is one ``eth_simulateV1`` per bundle on block N-1's state
(addressed by hash, so a reorg cannot swap it), with block N's number,
timestamp, base fee and fee recipient, running block N's transactions up to
and including the victim (ours excluded), then WETH ``balanceOf`` the
searcher, our backrun calls, and ``balanceOf`` again: the gross is the WETH
delta, the net subtracts each call's simulated gas at block N's base fee plus
our effective priority fee. Because the simulation replays the real prefix of
block N, its result is what our backrun would really have done right behind
the victim; when nothing moved the pools before the victim it equals the
prediction to the wei (the validator simulated the same thing on the same
state). For an included bundle the realised profit is also read from block N's
receipts (WETH ``Transfer`` logs into and out of the searcher minus gas paid),
so realised and counterfactual can be compared bundle by bundle.

A bundle with a victim in block N whose counterfactual is off the prediction
(or whose victim reverted in block N) with no pool event before the victim to
explain it also gets a baseline simulation: the victim alone on block N-1's
state, then ours, with block N's header (what the prediction simulated, on the
real parent). Comparing the two attributes the difference, measured: a victim that reverts in block N
(its pools are then read from the baseline's logs, so a swap before it on one
of its other pools is still named in ``moved_by``), block N's earlier
transactions changing the outcome without a pool event, or only our gas
(``deviation``: :class:`Deviation`), the prediction's state or header not
being block N's, or the base fee.

Node calls per target block are bounded: one batch of three reads, one batch
with one simulation per bundle and two look-ups per victim that is not in the
block, and, only when some bundle needs it, one batch of baselines (at most one
per bundle). Blocks with more than ``max_block_txs`` transactions are not
replayed (``unknown``, reason ``block_too_large``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio
from eth_hash.auto import keccak

from ._errors import NodeError
from .messages import Bundle
from .quantity import hex_quantity

if TYPE_CHECKING:  # the chain package imports the metrics, which import the outcomes from here
    from .chain import RpcClient

__all__ = [
    "GIVE_UP_AFTER",
    "OUTCOMES",
    "PRECEDENCE",
    "Retry",
    "Settlement",
    "SettlementOutcome",
    "Deviation",
    "Settler",
    "VictimStatus",
    "Winner",
]

log = logging.getLogger(__name__)

#: Blocks past its target after which a bundle the node cannot settle is ``unknown``.
GIVE_UP_AFTER = 16
#: Block N's transactions replayed at most (a mainnet block holds a few hundred).
MAX_BLOCK_TXS = 2000
#: Gas limit of each of our calls inside the counterfactual simulation.
SIM_GAS = 1_000_000

_BALANCE_OF = bytes.fromhex("70a08231")
_TRANSFER = "0x" + keccak(b"Transfer(address,address,uint256)").hex()
#: Logs a pool emits only when its price or liquidity changes (V2 and V3).
_POOL_TOPICS = frozenset(
    "0x" + keccak(sig.encode()).hex()
    for sig in (
        "Sync(uint112,uint112)",
        "Swap(address,uint256,uint256,uint256,uint256,address)",
        "Swap(address,address,int256,int256,uint160,uint128,int24)",
        "Mint(address,address,int24,int24,uint128,uint256,uint256)",
        "Burn(address,int24,int24,uint128,uint256,uint256)",
    )
)


class SettlementOutcome(enum.StrEnum):
    """The one outcome of a bundle at its target block (label values of the metric)."""

    INCLUDED = "included"
    VICTIM_NOT_INCLUDED = "victim_not_included"
    STATE_MOVED_BEFORE_VICTIM = "state_moved_before_victim"
    LOST_TO_COMPETITOR = "lost_to_competitor"
    WOULD_HAVE_WON = "would_have_won"
    UNKNOWN = "unknown"


#: Every outcome, for metric series and reports.
OUTCOMES: tuple[SettlementOutcome, ...] = tuple(SettlementOutcome)
#: Where several outcomes apply, the first of these wins (``unknown`` is not a fact about the block).
PRECEDENCE: tuple[SettlementOutcome, ...] = OUTCOMES[:-1]


class VictimStatus(enum.StrEnum):
    """Where the victim is when a bundle is settled."""

    IN_BLOCK = "in_block"
    EARLIER_BLOCK = "earlier_block"
    LATER_BLOCK = "later_block"
    PENDING = "pending"
    REPLACED = "replaced"
    DROPPED = "dropped"
    NONE = "none"  # block-driven bundles have no victim


class Deviation(enum.StrEnum):
    """Why a settled bundle's counterfactual differs from its prediction (``none``: to the wei).

    Measured, not guessed: the settler runs two simulations per bundle with a
    victim, the counterfactual (block N's transactions up to the victim, then
    ours) and a baseline (the victim alone on block N-1's state, then ours,
    with block N's header), and attributes the difference to the first of these
    that explains it.
    """

    NONE = "none"
    #: The victim is in block N but reverts there: its effect on our pools is absent.
    VICTIM_REVERTED = "victim_reverted"
    #: Block N's earlier transactions change only our gas (storage they touched), not our gross.
    GAS_AT_POSITION = "gas_at_position"
    #: On block N-1 with block N's header, victim + backrun differ from the prediction
    #: (the prediction's state or header was not block N's).
    PREDICTION_STATE = "prediction_state"
    #: Gross and gas as predicted; block N's base fee differs from the one we priced.
    BASE_FEE = "base_fee"


@attrs.frozen
class Winner:
    """A transaction in block N that moved our pools after the victim."""

    tx_hash: str
    sender: str
    tx_index: int
    priority_fee_wei: int  # effective, per gas
    coinbase_payment_wei: int  # priority fee x gas used, plus ETH sent straight to the fee recipient
    earned_wei: int | None  # WETH into its sender minus out minus gas paid; None when not derivable
    gross_wei: int | None  # WETH into its sender minus out (the gap it closed), None when not derivable

    @property
    def tip_share_bps(self) -> int | None:
        """Its payment to the builder as a share of the gap it took (aether's own tip_share_bps)."""
        if self.gross_wei is None or self.gross_wei <= 0:
            return None
        return self.coinbase_payment_wei * 10_000 // self.gross_wei

    def record(self) -> dict[str, Any]:
        return {
            "tx_hash": self.tx_hash,
            "sender": self.sender,
            "tx_index": self.tx_index,
            "priority_fee_wei": str(self.priority_fee_wei),
            "coinbase_payment_wei": str(self.coinbase_payment_wei),
            "earned_wei": None if self.earned_wei is None else str(self.earned_wei),
            "gross_wei": None if self.gross_wei is None else str(self.gross_wei),
            "tip_share_bps": self.tip_share_bps,
        }


@attrs.frozen
class Settlement:
    """One bundle's outcome at its target block: one ``settlements.jsonl`` line."""

    bundle: Bundle
    outcome: SettlementOutcome
    reason: str = ""
    block_hash: str | None = None
    victim_status: VictimStatus | None = None
    victim_block: int | None = None
    victim_index: int | None = None
    counterfactual_gross_wei: int | None = None
    counterfactual_net_wei: int | None = None
    counterfactual_gas: int | None = None
    realised_profit_wei: int | None = None
    winners: tuple[Winner, ...] = ()
    moved_by: tuple[str, ...] = ()
    #: The victim's status in block N's receipt (None: no victim or not in block N).
    victim_reverted: bool | None = None
    #: Our backrun right behind the victim on block N-1's state (block N's header), no prefix.
    baseline_gross_wei: int | None = None
    baseline_gas: int | None = None
    deviation: Deviation | None = None
    deviation_detail: str = ""

    @property
    def winner_payment_wei(self) -> int:
        return sum(w.coinbase_payment_wei for w in self.winners)

    @property
    def winner_gross_wei(self) -> int | None:
        """The WETH the winner's transactions took out of the gap, together (None when not derivable)."""
        if not self.winners or any(w.gross_wei is None for w in self.winners):
            return None
        return sum(w.gross_wei or 0 for w in self.winners)

    @property
    def winner_tip_share_bps(self) -> int | None:
        """What the winner paid the builder as a share of the gap it took (its tip_share_bps)."""
        gross = self.winner_gross_wei
        if gross is None or gross <= 0:
            return None
        return self.winner_payment_wei * 10_000 // gross

    @property
    def predicted_net_wei(self) -> int:
        return self.bundle.expected_net_profit_wei

    @property
    def error_wei(self) -> int | None:
        """Counterfactual minus predicted net profit (for state_moved: how much our profit changes)."""
        if self.counterfactual_net_wei is None:
            return None
        return self.counterfactual_net_wei - self.predicted_net_wei

    def record(self, *, settled_at_head: int | None = None) -> dict[str, Any]:
        """The JSON line: amounts as decimal strings, like every other file aether writes."""
        b = self.bundle

        def s(v: int | None) -> str | None:
            return None if v is None else str(v)

        return {
            "arb_id": b.arb_id,
            "source": b.source,
            "target_block": b.target_block,
            "outcome": str(self.outcome),
            "reason": self.reason,
            "block_hash": self.block_hash,
            "settled_at_head": settled_at_head,
            "victim_tx_hash": b.victim_hash_hex,
            "victim_status": None if self.victim_status is None else str(self.victim_status),
            "victim_block": self.victim_block,
            "victim_index": self.victim_index,
            "predicted_gross_wei": str(b.expected_gross_profit_wei),
            "predicted_net_wei": str(b.expected_net_profit_wei),
            "counterfactual_gross_wei": s(self.counterfactual_gross_wei),
            "counterfactual_net_wei": s(self.counterfactual_net_wei),
            "counterfactual_gas": self.counterfactual_gas,
            "error_wei": s(self.error_wei),
            "realised_profit_wei": s(self.realised_profit_wei),
            "winners": [w.record() for w in self.winners],
            "winner_tx_hashes": [w.tx_hash for w in self.winners],
            "winner_payment_wei": str(self.winner_payment_wei) if self.winners else None,
            "winner_gross_wei": s(self.winner_gross_wei),
            "winner_tip_share_bps": self.winner_tip_share_bps,
            "moved_by": list(self.moved_by),
            "victim_reverted": self.victim_reverted,
            "baseline_gross_wei": s(self.baseline_gross_wei),
            "baseline_gas": self.baseline_gas,
            "deviation": None if self.deviation is None else str(self.deviation),
            "deviation_detail": self.deviation_detail,
            "our_tx_hashes": ["0x" + h.hex() for h in b.our_tx_hashes],
        }


@attrs.frozen
class Retry:
    """The node could not settle this block now; try again at the next head."""

    reason: str


def unknown(bundle: Bundle, reason: str) -> Settlement:
    return Settlement(bundle=bundle, outcome=SettlementOutcome.UNKNOWN, reason=reason)


def _q(v: int) -> str:
    return hex(v)


def _addr(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def _tx_call(tx: dict[str, Any]) -> dict[str, Any]:
    """A mined transaction as an ``eth_simulateV1`` call (same sender, nonce, gas, fees)."""
    call: dict[str, Any] = {
        "from": tx["from"],
        "value": tx.get("value", "0x0"),
        "input": tx.get("input") or tx.get("data") or "0x",
        "gas": tx["gas"],
        "nonce": tx["nonce"],
    }
    if tx.get("to"):
        call["to"] = tx["to"]
    if tx.get("accessList"):  # its gas (and whether it runs out of it) depends on it
        call["accessList"] = tx["accessList"]
    if tx.get("maxFeePerGas") is not None:
        call["maxFeePerGas"] = tx["maxFeePerGas"]
        call["maxPriorityFeePerGas"] = tx.get("maxPriorityFeePerGas") or "0x0"
    elif tx.get("gasPrice") is not None:
        call["gasPrice"] = tx["gasPrice"]
    return call


def _pools_of(logs: Any) -> frozenset[str]:
    """The pools that emitted a price/liquidity log."""
    return frozenset(str(lg.get("address", "")).lower() for lg in logs
                     if (lg.get("topics") or [None])[0] in _POOL_TOPICS)


def _fmt(v: int | None) -> str:
    return "none (reverts)" if v is None else str(v)


@attrs.frozen
class _Run:
    """Our backrun in one simulation: gross, gas, net (None when a call reverts) and the victim's fate."""

    gross: int | None
    gas: int | None
    net: int | None
    victim_ok: bool | None
    victim_pools: frozenset[str]


@attrs.frozen
class _Block:
    """Block N as the settler needs it, parsed once."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee: int
    miner: str
    txs: tuple[dict[str, Any], ...]
    receipts: tuple[dict[str, Any], ...]
    index: dict[str, int]  # tx hash -> index
    touched: tuple[frozenset[str], ...]  # per tx: pool addresses that emitted a price/liquidity log


def _parse_block(block: Any, parent: Any, receipts: Any, max_txs: int) -> _Block | Retry:
    if block is None:
        return Retry("block_missing")
    if parent is None:
        return Retry("parent_missing")
    if not isinstance(block, dict) or not isinstance(parent, dict) or not isinstance(receipts, list):
        return Retry("bad_node_answer")
    txs = block.get("transactions")
    if not isinstance(txs, list):
        return Retry("bad_node_answer")
    if len(txs) > max_txs:
        return Retry("block_too_large")
    h = str(block.get("hash", "")).lower()
    if str(block.get("parentHash", "")).lower() != str(parent.get("hash", "")).lower():
        return Retry("reorg_between_calls")
    if len(receipts) != len(txs) or any(str(r.get("blockHash", "")).lower() != h for r in receipts):
        return Retry("reorg_between_calls")
    index: dict[str, int] = {}
    touched: list[frozenset[str]] = []
    for i, (tx, r) in enumerate(zip(txs, receipts, strict=True)):
        th = str(tx["hash"]).lower()
        if str(r.get("transactionHash", "")).lower() != th:
            return Retry("bad_node_answer")
        index[th] = i
        pools = set()
        for lg in r.get("logs") or ():
            topics = lg.get("topics") or ()
            if topics and topics[0] in _POOL_TOPICS:
                pools.add(str(lg.get("address", "")).lower())
        touched.append(frozenset(pools))
    base_fee = block.get("baseFeePerGas")
    return _Block(
        number=hex_quantity(block["number"]),
        hash=h,
        parent_hash=str(block["parentHash"]).lower(),
        timestamp=hex_quantity(block["timestamp"]),
        base_fee=0 if base_fee is None else hex_quantity(base_fee),
        miner=str(block.get("miner", "")).lower(),
        txs=tuple(txs),
        receipts=tuple(receipts),
        index=index,
        touched=tuple(touched),
    )


class Settler:
    """Settles the bundles of one target block against the chain (see the module docstring).

    Args:
        rpc: the node.
        searcher: the searcher's address (our calls come from it).
        weth: the WETH token (the profit currency).
        max_block_txs: blocks with more transactions are not replayed.
    """

    def __init__(self, rpc: RpcClient, *, searcher: str, weth: str, max_block_txs: int = MAX_BLOCK_TXS) -> None:
        self._rpc = rpc
        self._searcher = searcher.lower()
        self._weth = weth.lower()
        self._max_txs = max_block_txs
        self.node_calls = 0
        self.batches = 0

    def _balance_call(self) -> dict[str, Any]:
        data = _BALANCE_OF + bytes(12) + bytes.fromhex(self._searcher[2:])
        return {"from": self._searcher, "to": self._weth, "input": "0x" + data.hex(), "gas": _q(100_000)}

    async def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        self.batches += 1
        self.node_calls += len(calls)
        return await self._rpc.batch(calls)

    async def settle(self, target: int, bundles: Sequence[Bundle]) -> list[Settlement] | Retry:
        """One outcome per bundle of ``target``, or :class:`Retry` when the node cannot answer now.

        Never raises on node trouble or on answers of the wrong shape.
        """
        try:
            return await self._settle(target, bundles)
        except NodeError as exc:
            return Retry(f"node_error: {type(exc).__name__}")
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            return Retry(f"bad_node_answer: {type(exc).__name__}")

    async def _settle(self, target: int, bundles: Sequence[Bundle]) -> list[Settlement] | Retry:
        if not bundles:
            return []
        first = await self._batch(
            [
                ("eth_getBlockByNumber", [_q(target), True]),
                ("eth_getBlockByNumber", [_q(target - 1), False]),
                ("eth_getBlockReceipts", [_q(target)]),
            ]
        )
        for r in first:
            if isinstance(r, Exception):
                return Retry(f"node_error: {str(r)[:120]}")
        await trio.lowlevel.checkpoint()  # the hot path runs between the parse steps
        blk = _parse_block(first[0], first[1], first[2], self._max_txs)
        if isinstance(blk, Retry):
            return blk
        await trio.lowlevel.checkpoint()

        calls: list[tuple[str, list[Any]]] = []
        plan: list[tuple[Bundle, str, int, int]] = []  # bundle, kind, first call index, victim index
        for b in bundles:
            ours = {"0x" + h.hex() for h in b.our_tx_hashes}
            victim = b.victim_hash_hex
            if victim is not None and victim.lower() not in blk.index:
                assert b.candidate.victim is not None
                plan.append((b, "victim_lookup", len(calls), -1))
                calls.append(("eth_getTransactionByHash", [victim]))
                calls.append(("eth_getTransactionCount", [b.candidate.victim.sender, _q(target)]))
                continue
            k = -1 if victim is None else blk.index[victim.lower()]
            plan.append((b, "simulate", len(calls), k))
            calls.append(("eth_simulateV1", self._simulate_params(b, blk, k, ours)))
        replies = await self._batch(calls)
        for (_b, kind, at, _k) in plan:
            if kind == "simulate" and isinstance(replies[at], Exception):
                return Retry(f"node_error: {str(replies[at])[:120]}")

        # The baseline (the victim alone on N-1, then ours: what the prediction simulated), only
        # where a difference is left to attribute: the counterfactual is off the prediction, or the
        # victim reverted in block N, and no pool event before the victim explains it already.
        # One more batch at most, and none in the common case (settlement stays cheap for the node
        # the hot path shares).
        base_calls: list[tuple[str, list[Any]]] = []
        base_at: dict[int, int] = {}  # plan index -> index in base_calls
        for i, (b, kind, at, k) in enumerate(plan):
            if kind == "simulate" and self._needs_baseline(b, blk, k, replies[at]):
                base_at[i] = len(base_calls)
                ours = {"0x" + h.hex() for h in b.our_tx_hashes}
                base_calls.append(("eth_simulateV1", self._simulate_params(b, blk, k, ours, baseline=True)))
        base_replies = await self._batch(base_calls) if base_calls else []
        for r in base_replies:
            if isinstance(r, Exception):
                return Retry(f"node_error: {str(r)[:120]}")

        out: list[Settlement] = []
        for i, (b, kind, at, k) in enumerate(plan):
            if kind == "victim_lookup":
                if isinstance(replies[at], Exception) or isinstance(replies[at + 1], Exception):
                    return Retry(f"node_error: {str(replies[at] if isinstance(replies[at], Exception) else replies[at + 1])[:120]}")
                out.append(self._victim_missing(b, blk, replies[at], replies[at + 1]))
            else:
                base = base_replies[base_at[i]] if i in base_at else None
                out.append(self._judge(b, blk, k, replies[at], base))
            await trio.lowlevel.checkpoint()
        return out

    def _needs_baseline(self, b: Bundle, blk: _Block, k: int, reply: Any) -> bool:
        if k < 0:
            return False  # no victim: the counterfactual already runs on N-1 at the top of block N
        ours = {"0x" + h.hex() for h in b.our_tx_hashes}
        victim = str(blk.txs[k]["hash"]).lower()
        watched = {hop.pair.lower() for hop in b.candidate.route} | blk.touched[k]
        if any(blk.touched[i] & watched for i in range(k)
               if str(blk.txs[i]["hash"]).lower() not in ours and str(blk.txs[i]["hash"]).lower() != victim):
            return False  # state_moved_before_victim, named by the pool events
        reverted = hex_quantity(blk.receipts[k].get("status", "0x1")) != 1
        return reverted or self._ours(b, blk, reply).net != b.expected_net_profit_wei

    def _simulate_params(self, b: Bundle, blk: _Block, k: int, ours: set[str], *, baseline: bool = False) -> list[Any]:
        txs = blk.txs[k : k + 1] if baseline else blk.txs[: k + 1]
        prefix = [_tx_call(tx) for tx in txs if str(tx["hash"]).lower() not in ours]
        mine = [
            {"from": self._searcher, "to": c.to, "value": _q(c.value), "input": "0x" + c.data.hex(), "gas": _q(SIM_GAS)}
            for c in b.candidate.calls
        ]
        overrides = {
            "number": _q(blk.number),
            "time": _q(blk.timestamp),
            "baseFeePerGas": _q(blk.base_fee),
        }
        if blk.miner:
            overrides["feeRecipient"] = blk.miner
        return [
            {
                "blockStateCalls": [
                    {"blockOverrides": overrides,
                     "calls": [*prefix, self._balance_call(), *mine, self._balance_call()]}
                ],
                "validation": False,
                "traceTransfers": False,
                "returnFullTransactions": False,
            },
            {"blockHash": blk.parent_hash},
        ]

    def _victim_missing(self, b: Bundle, blk: _Block, tx: Any, count: Any) -> Settlement:
        v = b.candidate.victim
        assert v is not None
        base: dict[str, Any] = {"bundle": b, "outcome": SettlementOutcome.VICTIM_NOT_INCLUDED, "block_hash": blk.hash}
        if isinstance(tx, dict):
            number = tx.get("blockNumber")
            if number is None:
                return Settlement(**base, victim_status=VictimStatus.PENDING, reason="victim still pending")
            n = hex_quantity(number)
            status = VictimStatus.EARLIER_BLOCK if n < blk.number else VictimStatus.LATER_BLOCK
            return Settlement(**base, victim_status=status, victim_block=n, reason=f"victim landed in block {n}")
        # Gone from the node: replaced (its nonce was used by another transaction) or dropped.
        for i, other in enumerate(blk.txs):
            if str(other.get("from", "")).lower() == v.sender.lower() and hex_quantity(other["nonce"]) == v.nonce:
                return Settlement(**base, victim_status=VictimStatus.REPLACED, victim_block=blk.number,
                                  reason=f"nonce {v.nonce} used in block N by {other['hash']} (index {i})")
        if isinstance(count, str) and hex_quantity(count) > v.nonce:
            return Settlement(**base, victim_status=VictimStatus.REPLACED,
                              reason=f"nonce {v.nonce} used by another transaction")
        return Settlement(**base, victim_status=VictimStatus.DROPPED, reason="victim unknown to the node")

    def _ours(self, b: Bundle, blk: _Block, reply: Any) -> _Run:
        """Our backrun in one simulation answer: [..., victim?, balance, ours..., balance]."""
        results = reply[0]["calls"]
        n = len(b.candidate.calls)
        prefix_len = len(results) - n - 2
        if prefix_len < 0:
            raise ValueError("short simulate answer")
        victim_ok: bool | None = None
        victim_pools: frozenset[str] = frozenset()
        if prefix_len > 0 and b.victim_hash_hex is not None:
            v = results[prefix_len - 1]
            victim_ok = hex_quantity(v.get("status", "0x0")) == 1
            victim_pools = _pools_of(v.get("logs") or ())
        mine = results[prefix_len + 1 : prefix_len + 1 + n]
        if not all(hex_quantity(r.get("status", "0x0")) == 1 for r in mine):
            return _Run(None, None, None, victim_ok, victim_pools)
        gross = hex_quantity(results[-1]["returnData"]) - hex_quantity(results[prefix_len]["returnData"])
        gas = sum(hex_quantity(r["gasUsed"]) for r in mine)
        priority = min(b.priority_fee_wei, max(0, b.max_fee_per_gas_wei - blk.base_fee))
        return _Run(gross, gas, gross - gas * (blk.base_fee + priority), victim_ok, victim_pools)

    def _judge(self, b: Bundle, blk: _Block, k: int, reply: Any, base_reply: Any = None) -> Settlement:
        ours = {"0x" + h.hex() for h in b.our_tx_hashes}
        pools = {hop.pair.lower() for hop in b.candidate.route}
        victim = None if b.victim_hash_hex is None else b.victim_hash_hex.lower()
        run = self._ours(b, blk, reply)
        base = None if base_reply is None else self._ours(b, blk, base_reply)
        gross, gas, net = run.gross, run.gas, run.net
        reason = ""
        if net is None:
            reason = "our backrun reverts at the victim's position"
        elif b.max_fee_per_gas_wei < blk.base_fee:
            reason = "our max fee is below block N's base fee"

        victim_status = VictimStatus.NONE if victim is None else VictimStatus.IN_BLOCK
        victim_reverted = None
        if k >= 0:
            victim_reverted = hex_quantity(blk.receipts[k].get("status", "0x1")) != 1
        common: dict[str, Any] = dict(
            bundle=b, block_hash=blk.hash, victim_status=victim_status,
            victim_block=None if victim is None else blk.number, victim_index=None if k < 0 else k,
            counterfactual_gross_wei=gross, counterfactual_net_wei=net, counterfactual_gas=gas,
            victim_reverted=victim_reverted,
            baseline_gross_wei=None if base is None else base.gross,
            baseline_gas=None if base is None else base.gas,
        )
        if ours and ours <= set(blk.index):
            realised = sum(self._value(blk.receipts[blk.index[h]], self._searcher) for h in ours)
            return self._explained(Settlement(**common, outcome=SettlementOutcome.INCLUDED, reason=reason,
                                              realised_profit_wei=realised), run, base, blk.base_fee)

        def others(idx: range, watched: set[str] | frozenset[str]) -> list[int]:
            return [i for i in idx if blk.touched[i] & watched
                    and str(blk.txs[i]["hash"]).lower() not in ours and str(blk.txs[i]["hash"]).lower() != victim]

        # Before the victim, the victim's own pools count too: its effect on ours flows through them
        # (seen on the devnet: a swap on the victim's first hop changed our gas by 4,800). Its pools
        # are read from its receipt in block N and from the baseline simulation: a victim that
        # reverts in block N has no logs, and what made it revert (a swap on one of its other pools)
        # was invisible (seen in the 30-minute run: 19.8e15 wei more, nothing "moved").
        victim_pools = (blk.touched[k] if k >= 0 else frozenset()) | (base.victim_pools if base else frozenset())
        before_victim = others(range(0, max(k, 0)), pools | victim_pools)
        if before_victim:
            return Settlement(**common, outcome=SettlementOutcome.STATE_MOVED_BEFORE_VICTIM,
                              reason=reason or "pools moved before the victim",
                              moved_by=tuple(str(blk.txs[i]["hash"]).lower() for i in before_victim))
        if base is not None and (run.gross != base.gross or run.victim_ok != base.victim_ok):
            # No pool event before the victim, yet block N's prefix changes the victim or our gross
            # (a token transfer into a pool, a balance or allowance the victim depends on): the
            # pools' state as we trade them moved before the victim all the same.
            what = ("the victim reverts behind them" if base.victim_ok and not run.victim_ok
                    else f"our gross is {_fmt(run.gross)} wei behind them, {_fmt(base.gross)} without them")
            return Settlement(**common, outcome=SettlementOutcome.STATE_MOVED_BEFORE_VICTIM,
                              reason=reason or f"block N's transactions before the victim change the outcome "
                                               f"without a pool event: {what}")
        after_victim = others(range(k + 1, len(blk.txs)), pools)
        if after_victim:
            # The winner is the first to touch our pools after the victim, with its sender's next
            # touching transactions up to someone else's (a backrun of two legs is two txs).
            first = str(blk.txs[after_victim[0]]["from"]).lower()
            group: list[int] = []
            for i in after_victim:
                if str(blk.txs[i]["from"]).lower() != first:
                    break
                group.append(i)
            return self._explained(Settlement(**common, outcome=SettlementOutcome.LOST_TO_COMPETITOR, reason=reason,
                                              winners=tuple(self._winner(blk, i) for i in group)), run, base, blk.base_fee)
        if net is None or b.max_fee_per_gas_wei < blk.base_fee:
            # Nothing else explains it: our backrun could not have run there (say why).
            return Settlement(**common, outcome=SettlementOutcome.UNKNOWN, reason=reason)
        return self._explained(Settlement(**common, outcome=SettlementOutcome.WOULD_HAVE_WON, reason=reason),
                               run, base, blk.base_fee)

    def _explained(self, s: Settlement, run: _Run, base: _Run | None, base_fee: int) -> Settlement:
        """Attach the measured reason the counterfactual differs from the prediction (if it does)."""
        b = s.bundle
        if run.net is None or run.gross is None or run.gas is None:
            return s
        if run.net == b.expected_net_profit_wei:
            return attrs.evolve(s, deviation=Deviation.NONE)
        if s.victim_reverted:
            return attrs.evolve(s, deviation=Deviation.VICTIM_REVERTED,
                                deviation_detail="the victim reverts in block N: our backrun runs without its effect")
        if base is not None and base.gas is not None and run.gas != base.gas and run.gross == base.gross:
            return attrs.evolve(s, deviation=Deviation.GAS_AT_POSITION, deviation_detail=(
                f"block N's transactions before the victim change our gas by {run.gas - base.gas:+d} "
                f"({base.gas} right behind the victim alone, {run.gas} at its real position), not our gross"))
        ref = base if base is not None else run
        if ref.gross != b.expected_gross_profit_wei or ref.gas != b.gas_used:
            return attrs.evolve(s, deviation=Deviation.PREDICTION_STATE, deviation_detail=(
                f"on block N-1 with block N's header, gross {_fmt(ref.gross)} and gas {ref.gas} "
                f"(predicted {b.expected_gross_profit_wei} and {b.gas_used})"))
        return attrs.evolve(s, deviation=Deviation.BASE_FEE, deviation_detail=(
            f"block N's base fee is {base_fee} wei, we priced {b.base_fee_wei}"))

    def _value(self, r: dict[str, Any], who: str) -> int:
        """WETH into ``who`` minus out of it in one receipt, minus the gas it paid (if it sent it)."""
        return self._weth_net(r, who) - (
            hex_quantity(r["gasUsed"]) * hex_quantity(r["effectiveGasPrice"]) if str(r.get("from", "")).lower() == who else 0
        )

    def _weth_net(self, r: dict[str, Any], who: str) -> int:
        value = 0
        for lg in r.get("logs") or ():
            topics: list[Any] = lg.get("topics") or []
            if str(lg.get("address", "")).lower() != self._weth or len(topics) != 3 or topics[0] != _TRANSFER:
                continue
            amount = hex_quantity(lg["data"])
            if _addr(topics[2]) == who:
                value += amount
            if _addr(topics[1]) == who:
                value -= amount
        return value

    def _winner(self, blk: _Block, i: int) -> Winner:
        tx, r = blk.txs[i], blk.receipts[i]
        sender = str(tx["from"]).lower()
        gas_used = hex_quantity(r["gasUsed"])
        price = hex_quantity(r["effectiveGasPrice"])
        priority = max(0, price - blk.base_fee)
        payment = priority * gas_used
        if blk.miner and str(tx.get("to") or "").lower() == blk.miner:
            payment += hex_quantity(tx.get("value", "0x0"))
        weth = self._weth_net(r, sender)
        moved = any(
            str(lg.get("address", "")).lower() == self._weth and (lg.get("topics") or [None])[0] == _TRANSFER
            for lg in r.get("logs") or ()
        )
        gross = weth if moved else None
        earned = None if gross is None else gross - gas_used * price
        return Winner(tx_hash=str(tx["hash"]).lower(), sender=sender, tx_index=i, priority_fee_wei=priority,
                      coinbase_payment_wei=payment, earned_wei=earned, gross_wei=gross)

