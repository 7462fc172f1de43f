"""Small, complete domain values for unit tests (one place, so a new field is added once).

``make_bundle`` builds a two-hop WETH -> token -> WETH bundle; ``victim_hash=None``
makes it a block_arb bundle. The victim is seen at ``seen_at`` (trio's clock
now, when called inside trio and not given; else 0). ``Wall`` is a wall clock a
test moves by hand.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import trio

from aether.config import GWEI
from aether.messages import Bundle, Candidate, Head, Hop, PendingTx

__all__ = ["PAIR_A", "PAIR_B", "T0", "Wall", "make_bundle", "make_head"]

PAIR_A = "0x" + "aa" * 20
PAIR_B = "0x" + "bb" * 20
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


class Wall:
    """A wall clock the test moves by hand (jumps included)."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def jump(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def _now_or_zero() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside trio (plain sync tests)
        return 0.0


def make_bundle(
    *,
    target_block: int = 101,
    victim_hash: bytes | None = b"\x11" * 32,
    seen_at: float | None = None,
    net: int = 10**16,
    tip_bps: int = 8000,
    base_fee: int = 30 * GWEI,
    priority: int = 2 * GWEI,
    route: tuple[Hop, ...] | None = None,
) -> Bundle:
    """A complete Bundle; see the module docstring."""
    seen = _now_or_zero() if seen_at is None else seen_at
    weth, tok = "0x" + "ee" * 20, "0x" + "dd" * 20
    if route is None:
        route = (
            Hop("uniswap", "0x" + "01" * 20, PAIR_A, weth, tok, 10**18, 2000 * 10**6),
            Hop("sushiswap", "0x" + "02" * 20, PAIR_B, tok, weth, 2000 * 10**6, 10**18 + 2 * 10**16),
        )
    victim = None
    if victim_hash is not None:
        victim = PendingTx(
            hash=victim_hash, raw=b"\x02raw", type=2, chain_id=1, nonce=7, sender="0x" + "cc" * 20,
            to="0x" + "01" * 20, value=0, input=b"", gas=200_000, seen_at=seen,
        )
    source: Any = "mempool_backrun" if victim is not None else "block_arb"
    cand = Candidate(
        source=source, target_block=target_block, head_number=target_block - 1, victim=victim, route=route,
        amount_in=10**18, amount_out=10**18 + 2 * 10**16, expected_gross_profit_wei=2 * 10**16,
        gas_estimate=250_000, seen_at=seen, found_at=seen,
    )
    return Bundle(
        arb_id="arb-1", source=source, candidate=cand, target_block=target_block, built_at="2026-03-01T12:00:00Z",
        envelope=(b"\x02raw", b"\x02ours"), our_tx_hashes=(b"\x22" * 32,), expected_gross_profit_wei=2 * 10**16,
        expected_net_profit_wei=net, tip_share_bps=tip_bps, gas_used=250_000, base_fee_wei=base_fee,
        priority_fee_wei=priority, max_fee_per_gas_wei=2 * base_fee + priority, signer="0x" + "cc" * 20,
        nonces=(3,),
    )


def make_head(number: int = 100, base_fee: int = 30 * GWEI) -> Head:
    """Exactly half full: the next base fee equals this one (EIP-1559)."""
    return Head(number, "0x" + "00" * 32, "0x" + "00" * 32, 1_700_000_000, base_fee, 15_000_000, 30_000_000)
