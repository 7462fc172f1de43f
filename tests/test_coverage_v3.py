"""The coverage tool scores V3 route kinds like the V2 ones, and never confirms a V3 post-state it cannot read.

Pure: ``_score`` on ground-truth lines and a record of what the pipeline did. The
V3 pool entry below stands in for the post-state kind another branch adds (issue
16): the tool reads its address and slot fields by name, so an entry shaped
otherwise is scored as a miss, not as a match.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from aether.devnet._coverage import _Record, _is_v2, _pool_address, _score, render_markdown
from aether.devnet._universal import RouteKind, V3RouteKind
from aether.strategy import PostState
from aether.strategy._poststate import V2Reserves

P2 = "0x" + "22" * 20
P3 = "0x" + "33" * 20


@attrs.frozen
class _V3Slot:
    kind = "v3"
    pool: str
    sqrt_price_x96: int
    tick: int
    liquidity: int


def _line(h: str, kind: str, pools: list[str], revert: bool = False) -> str:
    return json.dumps({"hash": h, "route_kind": kind, "kind": "swapExactETHForTokens", "pools": pools,
                       "expect_revert": revert, "to": "0x", "after_pending": False})


def _post(h: str, *entries: Any) -> PostState:
    return PostState(bytes.fromhex(h[2:]), 7, tuple(entries))


def test_v3_rows_are_scored_like_the_others() -> None:
    rec = _Record()
    truth = [
        _line("0x01", "router02", [P2]),
        _line("0x02", "v3_swap_router", [P3]),
        _line("0x03", "universal_router_v3", [P3]),
        _line("0x04", "universal_router_v3", [P3]),
        _line("0x05", "v3_swap_router", [], revert=True),
    ]
    rec.post["0x01"] = _post("0x01", V2Reserves(P2, 1, 2))
    rec.verified["0x01"] = "ok"
    rec.post["0x02"] = _post("0x02", _V3Slot(P3, 2**96, 0, 10**18))
    rec.verified["0x02"] = "ok"
    rec.post["0x03"] = _post("0x03", _V3Slot(P3, 2**96, 0, 10**18))
    rec.verified["0x03"] = "v3_state_differs"
    rec.rejected["0x04"] = "no_pool_moved"  # what a V2-only strategy says of a V3 victim
    rec.rejected["0x05"] = "victim_reverts"
    mix = {RouteKind.ROUTER02: 0.5, V3RouteKind.SWAP_ROUTER: 0.25, V3RouteKind.UNIVERSAL_ROUTER: 0.25}
    run = _score("\n".join(truth), rec, 60.0, 1.0, 2.0, mix, {})
    assert list(run.rows) == ["router02", "v3_swap_router", "universal_router_v3"]  # no rows for kinds not run
    assert run.rows["v3_swap_router"]["correct"] == 1 and run.rows["v3_swap_router"]["coverage_pct"] == 100.0
    u = run.rows["universal_router_v3"]
    assert (u["pool_moving"], u["post_states"], u["correct"], u["coverage_pct"]) == (2, 1, 0, 0.0)
    assert u["missed"] == {"not_verified (v3_state_differs)": 1, "no_pool_moved": 1}
    assert run.failing["v3_swap_router"] == {"sent": 1, "victim_reverts": 1}
    assert "| universal_router_v3 | 2 | 2 | 1 | 0 | 0.00% |" in render_markdown(run)


def test_a_pool_entry_without_a_known_address_never_matches() -> None:
    @attrs.frozen
    class Odd:
        venue: str

    rec = _Record()
    rec.post["0x02"] = _post("0x02", Odd(P3))
    rec.verified["0x02"] = "ok"
    run = _score(_line("0x02", "v3_swap_router", [P3]), rec, 60.0, 1.0, 2.0, {V3RouteKind.SWAP_ROUTER: 1.0}, {})
    assert run.rows["v3_swap_router"]["missed"] == {"wrong_pools": 1}
    assert _pool_address(V2Reserves(P2, 1, 2)) == P2 and _pool_address(_V3Slot(P3, 1, 0, 1)) == P3
    assert _is_v2(V2Reserves(P2, 1, 2)) and not _is_v2(_V3Slot(P3, 1, 0, 1)) and not _is_v2(Odd(P3))
