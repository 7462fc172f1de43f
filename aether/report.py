"""``aether report DIR`` and ``aether rollout check --stage B|C DIR...``.

Both read run directories as ``aether run`` leaves them:

    <run>/run.json            start-up facts (mode, chain, limits)
    <run>/summary.json        counters (rewritten every 15 s and at a clean stop)
    <run>/bundles/*.json      one forensic dump per built bundle
    <run>/inclusions.jsonl    live mode: one line per submitted bundle's outcome

A missing, empty or corrupt run directory is a clear error (exit 2), and every
corrupt file is named, never skipped in silence. Amounts stay integers; ETH
figures are formatted from wei by integer division.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = ["RunData", "StageCheck", "check_stage", "load_run", "render_html", "render_text", "report_main",
           "rollout_check_main"]

ETHER = 10**18


class RunDirError(Exception):
    """A run directory is missing, empty or holds corrupt files (the message names them)."""


def fmt_eth(wei: int) -> str:
    sign = "-" if wei < 0 else ""
    whole, frac = divmod(abs(wei), ETHER)
    return f"{sign}{whole}.{frac:018d}"[: len(sign) + len(str(whole)) + 7] + " ETH"


@attrs.frozen
class RunData:
    path: Path
    meta: dict[str, Any]
    summary: dict[str, Any] | None
    bundles: tuple[dict[str, Any], ...]
    inclusions: tuple[dict[str, Any], ...]


_REQUIRED = ("arb_id", "source", "target_block", "built_at", "envelope", "expected_gross_profit_wei",
             "expected_net_profit_wei", "tip_share_bps", "gas_used", "risk_decisions")


def _read_json(path: Path, bad: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        bad.append(f"{path}: {type(exc).__name__}: {exc}")
        return None


def load_run(path: Path) -> RunData:
    """Read one run directory.

    Raises:
        RunDirError: missing directory, no run data in it, or corrupt files (all named).
    """
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    bad: list[str] = []
    meta = _read_json(path / "run.json", bad) if (path / "run.json").exists() else None
    summary = _read_json(path / "summary.json", bad) if (path / "summary.json").exists() else None
    bundles: list[dict[str, Any]] = []
    bdir = path / "bundles"
    if bdir.is_dir():
        for f in sorted(bdir.glob("*.json")):
            doc = _read_json(f, bad)
            if doc is None:
                continue
            missing = [k for k in _REQUIRED if not isinstance(doc, dict) or k not in doc]
            if missing:
                bad.append(f"{f}: missing fields {', '.join(missing)}")
                continue
            try:
                int(doc["expected_gross_profit_wei"]), int(doc["expected_net_profit_wei"])
                _parse_time(doc["built_at"])
            except (TypeError, ValueError):
                bad.append(f"{f}: amounts or built_at malformed")
                continue
            bundles.append(doc)
    inclusions: list[dict[str, Any]] = []
    inc = path / "inclusions.jsonl"
    if inc.exists():
        for i, line in enumerate(inc.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                inclusions.append(json.loads(line))
            except json.JSONDecodeError:
                bad.append(f"{inc}:{i}: not JSON")
    if bad:
        raise RunDirError("corrupt files in run directory:\n  " + "\n  ".join(bad))
    if meta is None and summary is None and not bundles:
        raise RunDirError(f"{path}: empty (no run.json, summary.json or bundles/*.json)")
    return RunData(path, meta or {}, summary, tuple(bundles), tuple(inclusions))


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _run_span_hours(run: RunData) -> float:
    if run.summary and run.summary.get("duration_s"):
        return max(run.summary["duration_s"] / 3600, 1 / 3600)
    times = [_parse_time(b["built_at"]) for b in run.bundles]
    if len(times) < 2:
        return 1 / 60
    return max((max(times) - min(times)).total_seconds() / 3600, 1 / 3600)


def summarise(run: RunData) -> dict[str, Any]:
    """Per-source figures of one run (all amounts integer wei)."""
    hours = _run_span_hours(run)
    out: dict[str, Any] = {"path": str(run.path), "hours": hours, "mode": run.meta.get("mode", "?"),
                           "panics": (run.summary or {}).get("panics"), "sources": {}}
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for b in run.bundles:
        by_source[b["source"]].append(b)
    for source in sorted(set(by_source) | {"mempool_backrun", "block_arb"}):
        docs = by_source.get(source, [])
        reasons = Counter(d.get("rejected_reason") or "passed" for d in docs)
        ages = sorted(int(d["victim_age_ms_at_gate"]) for d in docs
                      if isinstance(d.get("victim_age_ms_at_gate"), int))
        summ = ((run.summary or {}).get("sources") or {}).get(source, {})
        out["sources"][source] = {
            "built": len(docs),
            "per_hour": len(docs) / hours,
            "predicted_gross_wei": sum(int(d["expected_gross_profit_wei"]) for d in docs),
            "predicted_net_wei": sum(int(d["expected_net_profit_wei"]) for d in docs),
            "passed_gates": reasons.get("passed", 0),
            "reasons": dict(reasons.most_common()),
            "freshness_ms": {
                "n": len(ages),
                "p50": ages[len(ages) // 2] if ages else None,
                "p90": ages[min(len(ages) - 1, (len(ages) * 9) // 10)] if ages else None,
                "max": ages[-1] if ages else None,
            },
            "submitted": summ.get("submitted"),
            "shadow_blocked": summ.get("shadow_blocked"),
            "candidate_rejected": summ.get("candidate_rejected", {}),
        }
    return out


def render_text(run: RunData) -> str:
    s = summarise(run)
    lines = [f"run {s['path']}  mode={s['mode']}  span={s['hours']:.2f} h  panics={s['panics']}"]
    for source, f in s["sources"].items():
        lines.append(f"\n[{source}]")
        lines.append(f"  bundles built          {f['built']}  ({f['per_hour']:.1f}/h)")
        lines.append(f"  passed every gate      {f['passed_gates']}  (shadow-blocked {f['shadow_blocked']}, "
                     f"submitted {f['submitted']})")
        lines.append(f"  predicted gross profit {fmt_eth(f['predicted_gross_wei'])}  ({f['predicted_gross_wei']} wei)")
        lines.append(f"  predicted net profit   {fmt_eth(f['predicted_net_wei'])}  ({f['predicted_net_wei']} wei)")
        lines.append("  verdicts by reason:")
        for reason, n in f["reasons"].items():
            lines.append(f"    {reason:<22} {n}")
        if f["candidate_rejected"]:
            lines.append("  dropped before a bundle:")
            for reason, n in sorted(f["candidate_rejected"].items(), key=lambda kv: -kv[1]):
                lines.append(f"    {reason:<22} {n}")
        fr = f["freshness_ms"]
        if fr["n"]:
            lines.append(f"  victim age at gate     p50 {fr['p50']} ms, p90 {fr['p90']} ms, max {fr['max']} ms")
    return "\n".join(lines) + "\n"


def _bars(title: str, data: dict[str, int]) -> str:
    if not data:
        return f"<h3>{html.escape(title)}</h3><p>none</p>"
    top = max(data.values()) or 1
    rows = []
    for i, (k, v) in enumerate(data.items()):
        w = int(400 * v / top)
        rows.append(f'<text x="0" y="{i * 22 + 15}">{html.escape(k)}</text>'
                    f'<rect x="170" y="{i * 22 + 3}" width="{w}" height="16" fill="#4a7"/>'
                    f'<text x="{175 + w}" y="{i * 22 + 15}">{v}</text>')
    return (f"<h3>{html.escape(title)}</h3><svg width='640' height='{len(data) * 22 + 6}' "
            f"font-family='monospace' font-size='12'>{''.join(rows)}</svg>")


def _hourly(run: RunData, source: str) -> dict[str, int]:
    c: Counter[str] = Counter()
    for b in run.bundles:
        if b["source"] == source:
            c[_parse_time(b["built_at"]).strftime("%Y-%m-%d %H:00")] += 1
    return dict(sorted(c.items()))


def render_html(run: RunData) -> str:
    s = summarise(run)
    parts = [f"<!doctype html><meta charset='utf-8'><title>aether run {html.escape(run.path.name)}</title>",
             "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}pre{background:#f4f4f4;padding:1em}"
             "</style>", f"<h1>aether run {html.escape(run.path.name)}</h1>",
             f"<pre>{html.escape(render_text(run))}</pre>"]
    for source, f in s["sources"].items():
        parts.append(f"<h2>{source}</h2>")
        parts.append(_bars("bundles built per hour", _hourly(run, source)))
        parts.append(_bars("verdicts by reason", f["reasons"]))
        parts.append(_bars("dropped before a bundle", f["candidate_rejected"]))
    return "\n".join(parts) + "\n"


def report_main(path: Path, *, html: Path | None = None) -> int:
    try:
        run = load_run(path)
    except RunDirError as exc:
        print(f"aether report: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_text(run))
    from ._settlement_report import SettlementFileError, load_settlements, render_settlement_html, render_settlement_text
    try:
        settled = load_settlements(run.path)
    except SettlementFileError as exc:
        print(f"aether report: {run.path}: settlements.jsonl: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_settlement_text(settled))
    if html is not None:
        html.write_text(render_html(run) + render_settlement_html(settled) + "\n")
        print(f"html report: {html}")
    return 0


# --------------------------------------------------------------------------- rollout gates


@attrs.frozen
class Criterion:
    name: str
    measured: str
    required: str
    met: bool


@attrs.frozen
class StageCheck:
    stage: str
    criteria: tuple[Criterion, ...]

    @property
    def met(self) -> bool:
        return all(c.met for c in self.criteria)


MIN_DAILY_BUILT = 10
MIN_DAYS = 7
MIN_INCLUSIONS = 3
MAX_PREDICTION_ERROR_BPS = 1000  # 10%


def check_stage(stage: str, runs: Sequence[RunData]) -> StageCheck:
    """Evaluate the runbook's gate into ``stage`` (B or C) from run directories."""
    crit: list[Criterion] = []
    panics = sum(int((r.summary or {}).get("panics") or 0) for r in runs)
    missing_summary = [r.path.name for r in runs if r.summary is None]
    if stage == "B":
        shadow = [r for r in runs if r.meta.get("mode", "shadow") == "shadow"]
        per_day: Counter[str] = Counter()
        for r in shadow:
            for b in r.bundles:
                if b["source"] == "mempool_backrun" and int(b["expected_gross_profit_wei"]) > 0:
                    per_day[_parse_time(b["built_at"]).date().isoformat()] += 1
        days = sorted(per_day)
        worst = min(per_day.values()) if per_day else 0
        crit.append(Criterion("mempool backruns built per day with non-zero predicted profit",
                              f"min {worst}/day over {len(days)} day(s): "
                              + ", ".join(f"{d}={per_day[d]}" for d in days[-10:]),
                              f">= {MIN_DAILY_BUILT} every day", bool(days) and worst >= MIN_DAILY_BUILT))
        span = 0
        if days:
            span = (dt.date.fromisoformat(days[-1]) - dt.date.fromisoformat(days[0])).days + 1
        crit.append(Criterion("shadow runs cover at least a week", f"{len(days)} day(s) with shadow bundles, "
                              f"spanning {span} calendar day(s)", f">= {MIN_DAYS} days", len(days) >= MIN_DAYS))
        crit.append(Criterion("panics", str(panics), "0", panics == 0 and not missing_summary))
        submitted = sum(int(src.get("submitted") or 0) for r in shadow
                        for src in ((r.summary or {}).get("sources") or {}).values())
        crit.append(Criterion("submissions during shadow", str(submitted), "0", submitted == 0 and not missing_summary))
        from ._settlement_report import load_settlements, stage_b_settlement_criteria
        crit += [Criterion(*c) for c in stage_b_settlement_criteria([load_settlements(r.path) for r in shadow])]
    elif stage == "C":
        live = [r for r in runs if r.meta.get("mode") == "live"]
        inc = [i for r in live for i in r.inclusions if i.get("included")]
        crit.append(Criterion("inclusions", str(len(inc)), f">= {MIN_INCLUSIONS}", len(inc) >= MIN_INCLUSIONS))
        breaches = sum(int(((r.summary or {}).get("risk_rejected") or {}).get("daily_pnl") or 0) for r in live)
        crit.append(Criterion("daily P&L breaches (daily_pnl HALT rejections)", str(breaches), "0",
                              breaches == 0 and bool(live) and not missing_summary))
        predicted = sum(int(i["predicted_profit_wei"]) for i in inc)
        actual = sum(int(i["realised_profit_wei"]) for i in inc)
        if inc and actual != 0:
            err_bps = abs(predicted - actual) * 10000 // abs(actual)
            measured = f"predicted {predicted} wei vs actual {actual} wei: {err_bps / 100:.2f}%"
            ok = err_bps <= MAX_PREDICTION_ERROR_BPS
        else:
            measured, ok = "no included bundles to compare", False
        crit.append(Criterion("predicted vs actual profit", measured, "within 10%", ok))
        crit.append(Criterion("panics", str(panics), "0", panics == 0 and not missing_summary))
    else:
        raise ValueError(f"unknown stage {stage!r}: expected B or C")
    if missing_summary:
        crit.append(Criterion("every run has summary.json", "missing in " + ", ".join(missing_summary), "present",
                              False))
    return StageCheck(stage, tuple(crit))


def rollout_check_main(stage: str, dirs: Sequence[Path]) -> int:
    runs = []
    for d in dirs:
        try:
            runs.append(load_run(d))
        except RunDirError as exc:
            print(f"aether rollout check: {exc}", file=sys.stderr)
            return 2
    result = check_stage(stage, runs)
    print(f"gate into Stage {stage} over {len(runs)} run(s):")
    for c in result.criteria:
        print(f"  [{'PASS' if c.met else 'FAIL'}] {c.name}: {c.measured} (required {c.required})")
    print(f"Stage {stage} gate {'MET' if result.met else 'NOT MET'}")
    return 0 if result.met else 1
