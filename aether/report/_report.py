"""``aether report DIR``: one run directory summarised, as text and as one HTML page.

The report is a list of sections (:data:`SECTIONS`); each is a function of the
run that returns a :class:`Section` (its text lines and, for the HTML page, bar
charts), or None when it has nothing to say. Adding a section (say, settlement
outcomes) is writing one such function and appending it to :data:`SECTIONS`;
the text and HTML renderers need no change.

Amounts stay integer wei; ETH figures are formatted from wei by integer
division. Bundles are counted once per ``arb_id`` (a dedup twin,
``<arb_id>-2.json``, is shown as a twin, not as a second bundle).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Sequence

import attrs

from ..messages import SOURCES
from ._load import Bundle, Note, RunData
from ._rollout import fmt_error, included_errors, unique_bundles, unique_inclusions, worst_and_median

__all__ = ["SECTIONS", "Section", "fmt_eth", "render_html", "render_text"]

ETHER = 10**18


def fmt_eth(wei: int) -> str:
    sign = "-" if wei < 0 else ""
    whole, frac = divmod(abs(wei), ETHER)
    return f"{sign}{whole}.{frac:018d}"[: len(sign) + len(str(whole)) + 7] + " ETH"


@attrs.frozen
class Section:
    """One part of the report: text lines, and bar charts for the HTML page."""

    title: str
    lines: tuple[str, ...]
    bars: tuple[tuple[str, dict[str, int]], ...] = ()


def _hours(run: RunData) -> float:
    """The run's span in hours, for rates only (never for money)."""
    if run.summary is not None and run.summary.duration_s:
        return max(run.summary.duration_s / 3600, 1 / 3600)
    times = [b.built_at for b in run.bundles]
    if len(times) < 2:
        return 1 / 60
    return max((max(times) - min(times)).total_seconds() / 3600, 1 / 3600)


def _header(run: RunData) -> Section:
    s = run.summary
    panics = "not recorded" if s is None else s.panics
    final = "" if s is None or s.final else "  (summary not final: the run did not stop cleanly, or is running)"
    return Section("run", (f"run {run.path}  mode={run.mode}  span={_hours(run):.2f} h  panics={panics}{final}",
                           f"  identity {run.identity}"))


def _source(source: str) -> Callable[[RunData], Section]:
    def section(run: RunData) -> Section:
        all_docs = [b for b in run.bundles if b.source == source]
        docs: list[Bundle] = [b for _r, b in unique_bundles([run]) if b.source == source]
        twins = len(all_docs) - len(docs)
        reasons = Counter(b.rejected_reason or "passed" for b in docs)
        would_reject = Counter(g for b in docs for g in b.failing_gates())
        ages = sorted(b.victim_age_ms for b in docs if b.victim_age_ms is not None)
        summ = (run.summary.sources if run.summary is not None else {}).get(source, {})
        gross = sum(b.gross_wei for b in docs)
        net = sum(b.net_wei for b in docs)
        lines = [
            f"  bundles built          {len(docs)}  ({len(docs) / _hours(run):.1f}/h)"
            + (f"  + {twins} dedup twin(s) of the same arb_id" if twins else ""),
            f"  passed every gate      {reasons.get('passed', 0)}  (shadow-blocked {summ.get('shadow_blocked')}, "
            f"submitted {summ.get('submitted')})",
            f"  predicted gross profit {fmt_eth(gross)}  ({gross} wei)",
            f"  predicted net profit   {fmt_eth(net)}  ({net} wei)",
            "  verdicts by reason (first failing gate):",
            *(f"    {reason:<22} {n}" for reason, n in reasons.most_common()),
        ]
        if would_reject:
            lines.append("  bundles each gate would reject (every failing gate, from the dumps):")
            lines += [f"    {gate:<22} {n}" for gate, n in would_reject.most_common()]
        rejected = summ.get("candidate_rejected") or {}
        if rejected:
            lines.append("  dropped before a bundle:")
            lines += [f"    {reason:<22} {n}" for reason, n in sorted(rejected.items(), key=lambda kv: -kv[1])]
        if ages:
            p90 = ages[min(len(ages) - 1, (len(ages) * 9) // 10)]
            lines.append(f"  victim age at gate     p50 {ages[len(ages) // 2]} ms, p90 {p90} ms, max {ages[-1]} ms")
        hourly = Counter(b.built_at.strftime("%Y-%m-%d %H:00") for b in docs)
        return Section(source, tuple(lines), (("bundles built per hour", dict(sorted(hourly.items()))),
                                              ("verdicts by reason (first failing gate)", dict(reasons.most_common())),
                                              ("bundles each gate would reject", dict(would_reject.most_common())),
                                              ("dropped before a bundle", dict(rejected))))

    return section


def _inclusions(run: RunData) -> Section | None:
    if not run.has_inclusions_file:
        return None
    incs = unique_inclusions([run])
    dumped = {b.arb_id for b in run.bundles}
    orphans = sorted({i.arb_id for i in run.inclusions} - dumped)
    unknown = [i for i in incs if i.unknown]
    incs = [i for i in incs if not i.unknown]  # neither a miss nor an inclusion
    included = [i for i in incs if i.included]
    rate = f"{len(included) * 100 // len(incs)}%" if incs else "n/a"
    submitted = "not recorded" if run.summary is None else str(run.summary.submitted())
    lines = [f"  settled submissions    {len(incs)}  (submitted {submitted}; the rest were not settled by the stop)",
             f"  included               {len(included)}  (inclusion rate {rate} of the settled)",
             f"  reverted               {sum(i.reverted for i in incs)}"]
    if unknown:
        lines.append(f"  unknown                {len(unknown)}  (the node never let them be judged; not in the rate)")
    if orphans:
        lines.append(f"  not counted: {len(orphans)} line(s) without a dump in bundles/ (e.g. {orphans[0]})")
    errors = included_errors(included)
    if errors:
        (worst_i, worst), median = worst_and_median(errors)
        lines.append(f"  prediction error       worst {fmt_error(worst)} ({worst_i.arb_id}), "
                     f"median {fmt_error(median)} (|predicted - realised| / |realised|, per bundle)")
        lines.append("  predicted vs realised per included bundle (net wei):")
        for i, e in errors:
            lines.append(f"    {i.arb_id:<24} predicted {i.predicted_wei:>24}  realised {i.realised_wei:>24}  "
                         f"error {fmt_error(e)}")
    return Section("inclusions", tuple(lines), (("settled submissions", {"included": len(included),
                                                                         "not included": len(incs) - len(included)}),))


def _risk(run: RunData) -> Section:
    s = run.summary
    if s is None or s.risk is None:
        lines = ["  no risk record in summary.json (the run predates it)"]
    else:
        lines = [f"  HALT latches seen      {', '.join(s.risk.halts_seen) or 'none'}",
                 f"  saved risk state       day {s.risk.state_day}, daily P&L {s.risk.state_pnl_wei} wei, halts "
                 f"{', '.join(g for g, _v in s.risk.state_halts) or 'none'}"]
    if run.persisted is not None:
        path, halts, day, pnl = run.persisted
        lines.append(f"  risk state file now    {path}: day {day}, daily P&L {pnl} wei, halts "
                     f"{', '.join(g for g, _v in halts) or 'none'}")
    if s is not None:
        firsts = ", ".join(f"{k}={v}" for k, v in s.risk_rejected.items() if v) or "none"
        lines.append(f"  rejections by first failing gate (counter): {firsts}")
    return Section("risk", tuple(lines))


#: The report, in order. Append a function of the run to add a section.
SECTIONS: list[Callable[[RunData], Section | None]] = [
    _header,
    *(_source(s) for s in SOURCES),
    _inclusions,
    _risk,
]


def _sections(run: RunData) -> list[Section]:
    return [s for f in SECTIONS if (s := f(run)) is not None]


def render_text(run: RunData, notes: Sequence[Note] = ()) -> str:
    out: list[str] = []
    for sec in _sections(run):
        if sec.title != "run":
            out.append(f"\n[{sec.title}]")
        out.extend(sec.lines)
    if notes:
        out.append("\n[counted once]")
        out.extend(f"  {n.text}" for n in notes)
    return "\n".join(out) + "\n"


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


def render_html(run: RunData, notes: Sequence[Note] = ()) -> str:
    """One self-contained page (no external resource): the text report, then each section's charts."""
    name = html.escape(run.path.name)
    parts = [f"<!doctype html><meta charset='utf-8'><title>aether run {name}</title>",
             "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}pre{background:#f4f4f4;padding:1em}"
             "</style>", f"<h1>aether run {name}</h1>", f"<pre>{html.escape(render_text(run, notes))}</pre>"]
    for sec in _sections(run):
        if sec.bars:
            parts.append(f"<h2>{html.escape(sec.title)}</h2>")
            parts.extend(_bars(title, data) for title, data in sec.bars)
    return "\n".join(parts) + "\n"
