"""The coverage tool scores V3 route kinds like the V2 ones, and never confirms a V3 post-state it cannot read.

Pure: ``_score`` on ground-truth lines and a record of what the pipeline did, with the
strategy's real post-state entries (``V2Reserves``, ``V3Slot``).
"""

from __future__ import annotations

import json
from typing import Any

from aether.devnet._coverage import _Record, _score, render_markdown
from aether.devnet._universal import RouteKind, V3RouteKind
from aether.strategy import PostState
from aether.strategy._poststate import V2Reserves, V3Slot

P2 = "0x" + "22" * 20
P3 = "0x" + "33" * 20


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
    rec.post["0x02"] = _post("0x02", V3Slot(P3, 2**96, 10**18, 0, b""))
    rec.verified["0x02"] = "ok"
    rec.post["0x03"] = _post("0x03", V3Slot(P3, 2**96, 10**18, 0, b""))
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
