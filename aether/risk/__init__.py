"""Risk: pure gate functions, the ACTIVE/PAUSED/HALTED engine, and its state file.

The risk actor holds one :class:`RiskEngine`: it feeds it heads
(:meth:`RiskEngine.on_tick`) and outcomes (:meth:`RiskEngine.on_outcome`), asks
it for a :class:`~aether.messages.Verdict` per bundle
(:meth:`RiskEngine.evaluate`) and tells it which bundles went out
(:meth:`RiskEngine.commit`). The gates themselves are plain functions of a
bundle and a :class:`RiskSnapshot` (see :mod:`aether.risk._gates`).
"""

from ._gates import (
    BLOCK_ARB_GATE_FUNCTIONS,
    GATE_FUNCTIONS,
    GATE_FUNCTIONS_BY_SOURCE,
    RiskSnapshot,
    block_arb_dedup,
    block_arb_min_profit,
    consecutive_reverts,
    daily_pnl,
    dedup,
    dedup_gate,
    dedup_key,
    eth_balance,
    gas_price,
    max_in_flight,
    max_tip_share,
    min_profit,
    victim_age_ms,
    victim_freshness,
)
from ._latch import LATCH_UNPUBLISHED, RiskLatch
from ._state import HALT_GATES, STATE_VERSION, RiskEngine, RiskStatistics
from ._store import RiskStore, StoreStatistics

__all__ = [
    "BLOCK_ARB_GATE_FUNCTIONS",
    "GATE_FUNCTIONS",
    "GATE_FUNCTIONS_BY_SOURCE",
    "HALT_GATES",
    "LATCH_UNPUBLISHED",
    "STATE_VERSION",
    "RiskEngine",
    "RiskLatch",
    "RiskSnapshot",
    "RiskStatistics",
    "RiskStore",
    "StoreStatistics",
    "block_arb_dedup",
    "block_arb_min_profit",
    "consecutive_reverts",
    "daily_pnl",
    "dedup",
    "dedup_gate",
    "dedup_key",
    "eth_balance",
    "gas_price",
    "max_in_flight",
    "max_tip_share",
    "min_profit",
    "victim_age_ms",
    "victim_freshness",
]
