"""Immutable messages that flow between actors over trio memory channels.

Everything here is an ``@attrs.frozen`` value with no I/O and no wire parsing:
decoders live at the edges (``aether.chain``) and build these. Amounts are
integer wei (or token base units). Times are trio clock seconds (``seen_at``,
monotonic, what windows and freshness use) and, where a human reads them,
wall-clock nanoseconds since the epoch (``*_ns``).
"""

from __future__ import annotations

import enum
import functools

import attrs

from .config import DexKind
from .fees import next_base_fee as _next_base_fee

__all__ = [
    "ALL_GATES",
    "BLOCK_ARB_GATES",
    "GATES",
    "GATES_BY_SOURCE",
    "HALT_GATES",
    "Gate",
    "HaltReason",
    "RISK_ERROR",
    "SOURCES",
    "ActorStatistics",
    "Bundle",
    "Call",
    "Candidate",
    "Head",
    "Hop",
    "venue_pair",
    "PendingTx",
    "RiskDecision",
    "RiskState",
    "Source",
    "Tick",
    "Verdict",
]

class Source(enum.StrEnum):
    """Where a candidate came from: a ``source`` label value and a dump field."""

    MEMPOOL_BACKRUN = "mempool_backrun"
    BLOCK_ARB = "block_arb"


#: The plain label values (JSON object keys must be exact ``str``: orjson refuses an enum key).
SOURCES: tuple[str, ...] = tuple(s.value for s in Source)


class RiskState(enum.StrEnum):
    """The risk engine's state (``aether_risk_state{state=...}``)."""

    ACTIVE = "active"
    PAUSED = "paused"
    HALTED = "halted"


class HaltReason(enum.StrEnum):
    """Halts asked for from outside the gates (a ``gate`` label of the halt metrics)."""

    REPORTS_DIR_WRITABLE = "reports_dir_writable"
    SETTLEMENTS_WRITABLE = "settlements_writable"
    INCLUSIONS_WRITABLE = "inclusions_writable"



class Gate(enum.StrEnum):
    """Every risk gate's name: the ``gate`` of a risk decision and a ``reason`` label value.

    Decisions, dumps and metrics carry the plain ``.value`` strings (JSON object
    keys must be exact ``str``); the tuples below are derived from here.

    The first four are the seed's existing gates and judge both sources; the
    next five are the seed's mempool gates; the ``block_arb_*`` two are the
    block-driven source's own floor and duplicate guard, so a Stage B change
    of the mempool minimum never throttles the block-driven path.
    """

    GAS_PRICE = "gas_price"
    ETH_BALANCE = "eth_balance"
    DAILY_PNL = "daily_pnl"
    CONSECUTIVE_REVERTS = "consecutive_reverts"
    MIN_PROFIT = "min_profit"
    MAX_TIP_SHARE = "max_tip_share"
    VICTIM_FRESHNESS = "victim_freshness"
    MAX_IN_FLIGHT = "max_in_flight"
    DEDUP = "dedup"
    BLOCK_ARB_MIN_PROFIT = "block_arb_min_profit"
    BLOCK_ARB_DEDUP = "block_arb_dedup"


#: The mempool source's gates, in evaluation order: the ``reason`` label values of
#: ``aether_mempool_risk_rejected_total`` and the ``gate`` of each decision of a
#: mempool bundle. ``risk_error`` is not a gate: it is the reason when evaluation
#: itself failed (fail closed).
GATES: tuple[str, ...] = tuple(
    g.value
    for g in (
        Gate.GAS_PRICE,
        Gate.ETH_BALANCE,
        Gate.DAILY_PNL,
        Gate.CONSECUTIVE_REVERTS,
        Gate.MIN_PROFIT,
        Gate.MAX_TIP_SHARE,
        Gate.VICTIM_FRESHNESS,
        Gate.MAX_IN_FLIGHT,
        Gate.DEDUP,
    )
)
#: The block-driven source's gates, in evaluation order (``reason`` values of
#: ``aether_block_arb_risk_rejected_total``): the four shared ones, its own
#: profit floor and its own one-bundle-per-(target block, first pair) guard.
BLOCK_ARB_GATES: tuple[str, ...] = tuple(
    g.value
    for g in (
        Gate.GAS_PRICE,
        Gate.ETH_BALANCE,
        Gate.DAILY_PNL,
        Gate.CONSECUTIVE_REVERTS,
        Gate.BLOCK_ARB_MIN_PROFIT,
        Gate.BLOCK_ARB_DEDUP,
    )
)
#: Which gates judge a bundle of each source.
GATES_BY_SOURCE: dict[str, tuple[str, ...]] = {Source.MEMPOOL_BACKRUN.value: GATES, Source.BLOCK_ARB.value: BLOCK_ARB_GATES}
#: The gates whose failure latches a HALT (until the operator or a good tick lifts it).
HALT_GATES: tuple[str, ...] = (Gate.GAS_PRICE.value, Gate.ETH_BALANCE.value, Gate.DAILY_PNL.value)
#: Every gate of every source, in :class:`Gate` order (HALT latches, gauges).
ALL_GATES: tuple[str, ...] = tuple(g.value for g in Gate)
RISK_ERROR = "risk_error"


@attrs.frozen
class Head:
    """A new block header as the node announced it."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee: int
    gas_used: int
    gas_limit: int
    seen_at: float = 0.0

    @functools.cached_property
    def next_base_fee(self) -> int:
        """The base fee of block ``number + 1`` (EIP-1559), derived once per head: the heads
        actor, the strategy and the builder all ask it for every victim and bundle.

        Raises:
            ValueError: the header's gas figures are out of range (as :func:`aether.fees.next_base_fee`).
        """
        return _next_base_fee(self.base_fee, self.gas_used, self.gas_limit)


@attrs.frozen
class Tick:
    """A head plus the searcher's account state at that head, fetched in one batch.

    ``None`` balances mean the fetch failed: risk fails closed on them.
    """

    head: Head
    next_base_fee: int
    eth_balance_wei: int | None
    weth_balance_wei: int | None
    pending_nonce: int | None


@attrs.frozen
class PendingTx:
    """A signed transaction from the public mempool.

    ``raw`` is the signed envelope re-encoded from the fields; the decoder only
    builds a ``PendingTx`` when ``keccak(raw) == hash``, so these bytes can go
    into a bundle as they are.
    """

    hash: bytes
    raw: bytes
    type: int
    chain_id: int | None
    nonce: int
    sender: str
    to: str | None
    value: int
    input: bytes
    gas: int
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    seen_at: float = 0.0
    first_seen_ns: int = 0

    @property
    def hash_hex(self) -> str:
        return "0x" + self.hash.hex()


@attrs.frozen
class Hop:
    """One swap through one pool: a V2 pair (``kind`` v2) or a V3 pool at fee tier ``fee`` (pips)."""

    dex: str
    router: str
    pair: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    kind: DexKind = DexKind.V2
    fee: int = 0  # a V3 pool's fee tier in pips; 0 for a V2 pair (its fee is the DEX's fee_bps)


def venue_pair(route: tuple[Hop, ...]) -> str:
    """The venue kinds of a route, in order: ``v2/v2``, ``v2/v3``, ``v3/v2`` or ``v3/v3``."""
    return "/".join(str(h.kind) for h in route)


@attrs.frozen
class Call:
    """One transaction we intend to send, before gas, nonce and signature."""

    to: str
    data: bytes
    value: int = 0


@attrs.frozen
class Candidate:
    """A sized arbitrage: WETH in on ``route[0]``, WETH out of ``route[-1]``.

    Carries everything the forensic dump needs. ``victim`` is None for the
    block-driven source. ``calls`` are the backrun transactions exactly as they
    will be signed (validation simulates them; the bundle builder signs them);
    ``simulated_gas`` holds the gas each used in validation, one per call.
    """

    source: Source
    target_block: int
    head_number: int
    victim: PendingTx | None
    route: tuple[Hop, ...]
    amount_in: int
    amount_out: int
    expected_gross_profit_wei: int
    gas_estimate: int
    seen_at: float
    found_at: float
    calls: tuple[Call, ...] = ()
    validated: bool = False
    simulated_gas: tuple[int, ...] = ()
    #: The head's timestamp (0: unknown). Validation simulates the target block
    #: one second later, as a real next block is: a V2 pair's first swap in a
    #: block pays for the price accumulators only when time has passed.
    head_timestamp: int = 0

    @property
    def victim_hash_hex(self) -> str | None:
        return None if self.victim is None else self.victim.hash_hex


@attrs.frozen
class Bundle:
    """A signed bundle for one target block: ``envelope[0]`` is the victim (if any)."""

    arb_id: str
    source: Source
    candidate: Candidate
    target_block: int
    built_at: str
    envelope: tuple[bytes, ...]
    our_tx_hashes: tuple[bytes, ...]
    expected_gross_profit_wei: int
    expected_net_profit_wei: int
    tip_share_bps: int
    gas_used: int
    base_fee_wei: int
    priority_fee_wei: int
    max_fee_per_gas_wei: int
    signer: str
    nonces: tuple[int, ...]
    flashloan_provider: str = "none"
    flashloan_amount: int = 0

    @property
    def victim_hash_hex(self) -> str | None:
        return self.candidate.victim_hash_hex

    @property
    def gas_price_wei(self) -> int:
        return self.base_fee_wei + self.priority_fee_wei


@attrs.frozen
class RiskDecision:
    """One gate's answer for one bundle: the seed's ``risk_decisions`` entry."""

    gate: str
    passed: bool
    value: str


@attrs.frozen
class Verdict:
    """A bundle with the decision of every gate.

    ``passed`` only when every gate passed; ``reason`` is the first failing gate.
    """

    bundle: Bundle
    decisions: tuple[RiskDecision, ...]
    passed: bool
    reason: str | None = None


@attrs.frozen
class ActorStatistics:
    """A snapshot of an actor's counters (trio's ``statistics()`` habit)."""

    queued: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
