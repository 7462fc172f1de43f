"""What ``settlements.jsonl`` says: outcome mix, counterfactual against predicted, rivals' tips.

Small functions over the loaded rows, so ``aether report`` and ``aether rollout
check`` each hook them in with a line or two:

- :func:`load_settlements` reads ``<run>/settlements.jsonl`` (bad lines are
  named, not skipped silently);
- :func:`summarise_settlements` is the numbers (all money integer wei);
- :func:`render_settlement_text` and :func:`render_settlement_html` (charts as
  inline SVG: no script, no network, one self-contained file);
- :func:`stage_b_settlement_criteria` gives the Stage B evidence lines (the
  would-have-won rate and the counterfactual error), informational: the
  runbook's gate does not put a threshold on them.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..settlement import OUTCOMES, SettlementOutcome
from ._load import _Bad, parse_amount, read_bytes

__all__ = [
    "SettlementFileError",
    "load_settlements",
    "render_settlement_html",
    "render_settlement_text",
    "stage_b_settlement_criteria",
    "summarise_settlements",
]

O = SettlementOutcome
_COLOURS = {
    O.INCLUDED: "#2a7",
    O.WOULD_HAVE_WON: "#4a7",
    O.LOST_TO_COMPETITOR: "#d64",
    O.STATE_MOVED_BEFORE_VICTIM: "#e90",
    O.VICTIM_NOT_INCLUDED: "#888",
    O.UNKNOWN: "#bbb",
}


#: settlements.jsonl is one line per bundle that passed risk: ~64 MiB is months of rows.
MAX_SETTLEMENTS_BYTES = 64 << 20


class SettlementFileError(Exception):
    """``settlements.jsonl`` holds lines that are not settlement rows (the file is corrupt)."""


def load_settlements(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``run_dir/settlements.jsonl`` ([] when the run has none).

    Raises:
        SettlementFileError: naming each bad line.
    """
    path = run_dir / "settlements.jsonl"
    if not os.path.lexists(path):
        return []
    try:
        # The same strict read as every other run file: a regular file (no FIFO, device or
        # symlink), bounded in size.
        data = read_bytes(path, MAX_SETTLEMENTS_BYTES)
    except _Bad as exc:
        raise SettlementFileError(f"{path}: {exc}") from None
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    seen: set[str] = set()
    for i, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or row.get("outcome") not in OUTCOMES or not isinstance(row.get("arb_id"), str):
                raise ValueError("not a settlement row")
            if row["arb_id"] in seen:
                raise ValueError(f"arb_id {row['arb_id'][:80]} settled twice")
            seen.add(row["arb_id"])
            if type(row.get("target_block")) is not int or row["target_block"] < 0:
                raise ValueError("target_block is not a block number")
            tip = row.get("winner_tip_share_bps")
            if tip is not None and type(tip) is not int:
                raise ValueError("winner_tip_share_bps is not an integer")
            for k in ("predicted_net_wei", "counterfactual_net_wei", "error_wei", "realised_profit_wei"):
                if row.get(k) is not None:
                    parse_amount(row[k], k)  # an integer or an exact decimal string; never a float or a bool
        except (ValueError, TypeError, _Bad) as exc:
            bad.append(f"{path}:{i}: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        rows.append(row)
    if bad:
        raise SettlementFileError("corrupt lines: " + "; ".join(bad[:10]))
    return rows


def _pct(values: Sequence[int], q: float) -> int | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _dist(values: Sequence[int]) -> dict[str, Any]:
    return {"n": len(values), "min": min(values, default=None), "p10": _pct(values, 0.1), "p50": _pct(values, 0.5),
            "p90": _pct(values, 0.9), "max": max(values, default=None)}


def summarise_settlements(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Outcome mix, counterfactual error and rivals' tip share (amounts in integer wei)."""
    rows = list(rows)
    mix: dict[str, dict[str, int]] = defaultdict(lambda: {str(o): 0 for o in OUTCOMES})
    for r in rows:
        mix[r["source"]][r["outcome"]] += 1
    wins = [r for r in rows if r["outcome"] in (O.WOULD_HAVE_WON, O.INCLUDED) and r.get("error_wei") is not None]
    errors = [int(r["error_wei"]) for r in wins]
    moved_rows = [r for r in rows if r["outcome"] == O.STATE_MOVED_BEFORE_VICTIM]
    moved = [int(r["error_wei"]) for r in moved_rows if r.get("error_wei") is not None]
    tips: list[int] = []
    payments: list[int] = []
    for r in rows:
        if r["outcome"] != O.LOST_TO_COMPETITOR:
            continue
        payments.append(sum(int(w.get("coinbase_payment_wei") or 0) for w in r.get("winners") or ()))
        if r.get("winner_tip_share_bps") is not None:
            tips.append(int(r["winner_tip_share_bps"]))
    included = [r for r in rows if r["outcome"] == O.INCLUDED and r.get("realised_profit_wei") is not None
                and r.get("counterfactual_net_wei") is not None]
    n = len(rows)
    would = sum(1 for r in rows if r["outcome"] == O.WOULD_HAVE_WON)
    return {
        "settled": n,
        "mix": {k: dict(v) for k, v in sorted(mix.items())},
        "totals": {str(o): sum(1 for r in rows if r["outcome"] == o) for o in OUTCOMES},
        "would_have_won_rate": (would / n) if n else None,
        "counterfactual_error_wei": _dist(errors),
        "counterfactual_exact": sum(1 for e in errors if e == 0),
        # Every inexact would_have_won/included row names its measured cause ("unexplained": none given).
        "counterfactual_deviations": dict(Counter(
            str(r.get("deviation") or "unexplained") for r in wins if int(r["error_wei"]) != 0).most_common()),
        "state_moved_change_wei": _dist(moved),
        "state_moved_reverts": len(moved_rows) - len(moved),
        "winners_tip_share_bps": _dist(tips),
        "winners_payment_wei": sum(payments),
        "winners": len(payments),  # lost bundles (one winner each)
        "included_realised_equals_counterfactual": sum(
            1 for r in included if int(r["realised_profit_wei"]) == int(r["counterfactual_net_wei"])),
        "included_compared": len(included),
        "unknown_reasons": dict(Counter(r.get("reason") or "?" for r in rows if r["outcome"] == O.UNKNOWN)
                                .most_common()),
    }


def render_settlement_text(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "\n[settlement]\n  no settlements.jsonl rows\n"
    s = summarise_settlements(rows)
    lines = ["", f"[settlement]  {s['settled']} bundles settled at their target block"]
    lines.append("  outcome                     " + "  ".join(f"{src:>16}" for src in s["mix"]) + "      total")
    for o in OUTCOMES:
        lines.append(f"    {o:<26}" + "  ".join(f"{s['mix'][src][o]:>16}" for src in s["mix"])
                     + f"  {s['totals'][o]:>9}")
    if s["would_have_won_rate"] is not None:
        lines.append(f"  would-have-won rate       {s['would_have_won_rate']:.1%}")
    e = s["counterfactual_error_wei"]
    if e["n"]:
        lines.append(f"  counterfactual - predicted (would_have_won/included): {s['counterfactual_exact']} of {e['n']} "
                     f"exact to the wei; p10 {e['p10']} p50 {e['p50']} p90 {e['p90']} wei (min {e['min']}, max {e['max']})")
        if s["counterfactual_deviations"]:
            lines.append("    not exact, by measured cause: " + ", ".join(
                f"{k}={v}" for k, v in s["counterfactual_deviations"].items()))
    m = s["state_moved_change_wei"]
    if m["n"] or s["state_moved_reverts"]:
        lines.append(f"  profit change when state moved before the victim: p10 {m['p10']} p50 {m['p50']} "
                     f"p90 {m['p90']} wei over {m['n']} bundles; our backrun would revert in "
                     f"{s['state_moved_reverts']} more")
    t = s["winners_tip_share_bps"]
    if s["winners"]:
        lines.append(f"  winners of {s['winners']} lost bundles paid builders {s['winners_payment_wei']} wei; "
                     f"tip share of the gap p10 {t['p10']} p50 {t['p50']} p90 {t['p90']} bps (n={t['n']})")
    if s["included_compared"]:
        lines.append(f"  included: realised == counterfactual in {s['included_realised_equals_counterfactual']} of "
                     f"{s['included_compared']}")
    if s["unknown_reasons"]:
        lines.append("  unknown because: " + ", ".join(f"{k} {v}" for k, v in s["unknown_reasons"].items()))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- SVG charts


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (f"<svg role='img' aria-label='{html.escape(label)}' width='{width}' "
            f"height='{height}' font-family='monospace' font-size='11'>{body}</svg>")


def _mix_over_time(rows: Sequence[dict[str, Any]], buckets: int = 24) -> str:
    blocks = [int(r["target_block"]) for r in rows]
    lo, hi = min(blocks), max(blocks)
    span = max(1, (hi - lo + 1 + buckets - 1) // buckets)
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for r in rows:
        counts[(int(r["target_block"]) - lo) // span][r["outcome"]] += 1
    n = max(counts) + 1
    top = max(sum(c.values()) for c in counts.values()) or 1
    w, h, left, bar = 640, 220, 40, max(4, 560 // n)
    parts = []
    for i in range(n):
        y: float = h - 30
        for o in OUTCOMES:
            v = counts[i][o]
            if not v:
                continue
            bh = (h - 50) * v / top
            y -= bh
            parts.append(f"<rect class='mix' data-bucket='{i}' data-outcome='{o}' data-count='{v}' x='{left + i * bar}' "
                         f"y='{y:.1f}' width='{bar - 1}' height='{bh:.1f}' fill='{_COLOURS[o]}'/>")
    parts.append(f"<text x='{left}' y='{h - 12}'>blocks {lo}..{hi} ({span} per bar)</text>")
    for j, o in enumerate(OUTCOMES):
        parts.append(f"<rect x='{left + j * 100}' y='2' width='10' height='10' fill='{_COLOURS[o]}'/>"
                     f"<text x='{left + 14 + j * 100}' y='11'>{html.escape(str(o))[:14]}</text>")
    return _svg(w, h, "".join(parts), "outcome mix over time")


def _scatter(rows: Sequence[dict[str, Any]]) -> str:
    pts = [(int(r["predicted_net_wei"]), int(r["counterfactual_net_wei"]), r["outcome"], r["arb_id"]) for r in rows
           if r.get("counterfactual_net_wei") is not None and r.get("predicted_net_wei") is not None]
    w = h = 320
    if not pts:
        return _svg(w, 30, "<text x='0' y='15'>no counterfactual computed</text>", "predicted vs counterfactual")
    lo = min(min(p, c) for p, c, _, _ in pts)
    hi = max(max(p, c) for p, c, _, _ in pts)
    rng = (hi - lo) or 1

    def sx(v: int) -> float:
        return 30 + (w - 40) * (v - lo) / rng

    def sy(v: int) -> float:
        return h - 30 - (h - 40) * (v - lo) / rng

    parts = [f"<line x1='{sx(lo):.1f}' y1='{sy(lo):.1f}' x2='{sx(hi):.1f}' y2='{sy(hi):.1f}' stroke='#999' "
             "stroke-dasharray='4'/>"]
    for p, c, o, a in pts:
        parts.append(f"<circle class='bundle' data-arb-id='{html.escape(a)}' data-predicted='{p}' "
                     f"data-counterfactual='{c}' cx='{sx(p):.1f}' cy='{sy(c):.1f}' r='3' fill='{_COLOURS[O(o)]}'/>")
    parts.append(f"<text x='30' y='{h - 8}'>predicted net (x) vs counterfactual net (y), wei</text>")
    return _svg(w, h, "".join(parts), "predicted vs counterfactual profit per bundle")


def _tip_histogram(rows: Sequence[dict[str, Any]]) -> str:
    tips = [int(r["winner_tip_share_bps"]) for r in rows if r["outcome"] == O.LOST_TO_COMPETITOR
            and r.get("winner_tip_share_bps") is not None]
    if not tips:
        return _svg(640, 30, "<text x='0' y='15'>no winner with a derivable tip share</text>", "winners' tip share")
    bins = Counter(min(t, 10_000) // 1000 for t in tips)
    top = max(bins.values())
    parts = []
    for b in range(11):
        v = bins.get(b, 0)
        bh = 150 * v / top
        parts.append(f"<rect class='tip' data-bin-bps='{b * 1000}' data-count='{v}' x='{30 + b * 54}' "
                     f"y='{170 - bh:.1f}' width='50' height='{bh:.1f}' fill='#d64'/>"
                     f"<text x='{30 + b * 54}' y='185'>{b * 10}%</text>")
    return _svg(640, 200, "".join(parts), "winners' tip share of the gap")


def render_settlement_html(rows: Sequence[dict[str, Any]]) -> str:
    """The settlement section of the HTML report (inline SVG only)."""
    if not rows:
        return "<h2>settlement</h2><p>no settlements.jsonl rows</p>"
    return "\n".join([
        "<h2>settlement</h2>",
        f"<pre>{html.escape(render_settlement_text(rows))}</pre>",
        "<h3>outcome mix over time</h3>", _mix_over_time(rows),
        "<h3>predicted against counterfactual net profit, per bundle</h3>", _scatter(rows),
        "<h3>winners' tip share of the gap (lost bundles)</h3>", _tip_histogram(rows),
    ])


def stage_b_settlement_criteria(rows_per_run: Sequence[Sequence[dict[str, Any]]]) -> list[tuple[str, str, str, bool]]:
    """Stage B evidence: ``(name, measured, required, met)`` lines, informational (always met)."""
    rows = [r for run in rows_per_run for r in run]
    s = summarise_settlements(rows)
    if not rows:
        return [("would-have-won rate", "no settlements.jsonl rows", "reported", True)]
    e = s["counterfactual_error_wei"]
    return [
        ("would-have-won rate", f"{s['totals'][O.WOULD_HAVE_WON]} of {s['settled']} settled "
         f"({s['would_have_won_rate']:.1%}); mix " + ", ".join(f"{k}={v}" for k, v in s["totals"].items() if v),
         "reported", True),
        ("counterfactual error (would_have_won)", f"{s['counterfactual_exact']} of {e['n']} exact to the wei; "
         f"p50 {e['p50']} wei, p90 {e['p90']} wei", "reported", True),
    ]
