"""``aether rollout check --stage B|C DIR...``: the runbook's gates, made hard to fool.

Every criterion is measured on the runs as :func:`~._load.load_runs` returns
them (each run once, each bundle once) and fails closed: a run that does not
record what a criterion needs fails that criterion with the reason, it is never
taken on trust. A run of the wrong stage fails the first criterion (so the
gate); the other criteria are still measured over every run given, so the
operator sees the figures, but no figure can make up for that failure.

The week. "At least 1 week" means **7 whole UTC days** (00:00 to 24:00) inside
one stretch of run time: the runs' ``[started_at, last summary update]``
intervals, joined where the gap between one run's end and the next one's start
is at most :data:`MAX_GAP_S` (a restart), must cover 7 consecutive whole UTC
days. Neither "first-to-last span" alone (two short runs a week apart) nor
"distinct days" alone (a few minutes on each of 7 scattered days) says the
system ran for a week; this does, and it tolerates restarts. Partial days at
either end of the stretch are shown but not required.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from fractions import Fraction

import attrs

from ..messages import Source
from ._load import Bundle, Inclusion, RunData
from ._settlement import load_settlements, stage_b_settlement_criteria

__all__ = [
    "MAX_GAP_S",
    "MAX_PREDICTION_ERROR",
    "MIN_DAILY_BUILT",
    "MIN_DAYS",
    "MIN_INCLUSIONS",
    "STAGE_B_MIN_PROFIT_WEI",
    "Criterion",
    "Stage",
    "StageCheck",
    "check_stage",
    "included_errors",
    "unique_bundles",
    "unique_inclusions",
    "worst_and_median",
]


class Stage(enum.StrEnum):
    """The stage whose entry gate is checked."""

    B = "B"
    C = "C"


MIN_DAILY_BUILT = 10
MIN_DAYS = 7
MIN_INCLUSIONS = 3
MAX_PREDICTION_ERROR = Fraction(1, 10)  # 10% of actual, per included bundle
MAX_GAP_S = 3600
#: Stage B runs at ``AETHER_MEMPOOL_MIN_PROFIT_WEI=5e16`` (the runbook's setting).
STAGE_B_MIN_PROFIT_WEI = 5 * 10**16
DAY = dt.timedelta(days=1)
#: A dump may be dated slightly past the last summary (written every 15 s) or before a rounded start.
SLACK = dt.timedelta(seconds=60)


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
        return bool(self.criteria) and all(c.met for c in self.criteria)


def unique_bundles(runs: Sequence[RunData]) -> list[tuple[RunData, Bundle]]:
    """Every bundle once across the runs (first by run path, then file name).

    Once per ``arb_id`` and once per signed envelope: a copy whose arb_ids
    were renamed still carries the same signed transactions.
    """
    ids: set[str] = set()
    envelopes: set[str] = set()
    out = []
    for r in runs:
        for b in r.bundles:
            if b.arb_id not in ids and b.envelope_digest not in envelopes:
                ids.add(b.arb_id)
                envelopes.add(b.envelope_digest)
                out.append((r, b))
    return out


def unique_inclusions(runs: Sequence[RunData]) -> list[Inclusion]:
    """Settled submissions once per bundle, only those whose run holds the bundle's dump."""
    ids: set[str] = set()
    envelopes: set[str] = set()
    out = []
    for r in runs:
        digest: dict[str, str] = {}
        for b in r.bundles:
            digest.setdefault(b.arb_id, b.envelope_digest)
        for i in r.inclusions:
            d = digest.get(i.arb_id)
            if d is not None and i.arb_id not in ids and d not in envelopes:
                ids.add(i.arb_id)
                envelopes.add(d)
                out.append(i)
    return out


def included_errors(incs: Sequence[Inclusion]) -> list[tuple[Inclusion, Fraction | None]]:
    """Per included bundle: |predicted - actual| / |actual| exactly (None: actual 0, predicted not)."""
    out: list[tuple[Inclusion, Fraction | None]] = []
    for i in incs:
        if not i.included or i.unknown:
            continue
        diff = abs(i.predicted_wei - i.realised_wei)
        if i.realised_wei == 0:
            out.append((i, Fraction(0) if diff == 0 else None))
        else:
            out.append((i, Fraction(diff, abs(i.realised_wei))))
    return out


def _rank(e: Fraction | None) -> tuple[bool, Fraction]:
    return (e is None, e or Fraction(0))


def worst_and_median(
    errors: Sequence[tuple[Inclusion, Fraction | None]],
) -> tuple[tuple[Inclusion, Fraction | None], Fraction | None]:
    """The worst (first of the largest) error with its bundle, and the median (upper, for an even count)."""
    worst = max(errors, key=lambda ie: _rank(ie[1]))
    ranked = sorted((e for _i, e in errors), key=_rank)
    return worst, ranked[len(ranked) // 2]


def fmt_error(e: Fraction | None) -> str:
    if e is None:
        return "infinite"
    bps = e * 10000
    return f"{int(bps) // 100}.{int(bps) % 100:02d}%"


# --------------------------------------------------------------------------- the week


def _stretches(runs: Sequence[RunData]) -> list[tuple[dt.datetime, dt.datetime]]:
    intervals = sorted(iv for r in runs if (iv := r.interval()) is not None)
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for start, end in intervals:
        if out and (start - out[-1][1]).total_seconds() <= MAX_GAP_S:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _whole_days(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    first = start.date() if start.time() == dt.time(0) else start.date() + DAY
    days = []
    d = first
    while dt.datetime.combine(d + DAY, dt.time(0), dt.UTC) <= end:
        days.append(d)
        d += DAY
    return days


def _week(runs: Sequence[RunData], what: str) -> tuple[Criterion, list[dt.date]]:
    """The week criterion and the whole UTC days of the longest stretch."""
    missing = [str(r.path) for r in runs if r.interval() is None]
    best: list[dt.date] = []
    best_span = None
    for start, end in _stretches(runs):
        days = _whole_days(start, end)
        if len(days) >= len(best):
            best, best_span = days, (start, end)
    if best_span is None:
        measured = "no run records its start and end"
    else:
        measured = (f"longest stretch {best_span[0]:%Y-%m-%d %H:%M} to {best_span[1]:%Y-%m-%d %H:%M} UTC: "
                    f"{len(best)} whole UTC day(s)")
    if missing:
        measured += "; no start/end recorded (run.json started_at, summary.json updated_unix) in " + ", ".join(missing)
    return (Criterion(f"{what} span the runbook's week", measured,
                      f">= {MIN_DAYS} whole UTC days, gaps between runs <= {MAX_GAP_S} s",
                      len(best) >= MIN_DAYS and not missing), best)


# --------------------------------------------------------------------------- stages


def _panics(runs: Sequence[RunData]) -> list[Criterion]:
    missing = [str(r.path) for r in runs if r.summary is None]
    panics = sum(r.summary.panics for r in runs if r.summary is not None)
    crit = [Criterion("panics", str(panics), "0", panics == 0 and not missing)]
    if missing:
        crit.append(Criterion("every run has summary.json", "missing in " + ", ".join(missing), "present", False))
    return crit


def _settings(runs: Sequence[RunData], stage: Stage) -> tuple[Criterion, list[RunData]]:
    """Which runs are the previous stage's, as their ``run.json`` records it."""
    bad: list[str] = []
    ok: list[RunData] = []
    for r in runs:
        m = r.meta
        why = []
        if stage is Stage.B:
            if m.mode != "shadow":
                why.append(f"mode={m.mode or 'not recorded'}")
            if m.mempool_tracking is not True:
                why.append(f"mempool_tracking={'not recorded' if m.mempool_tracking is None else m.mempool_tracking}")
        else:
            if m.mode != "live":
                why.append(f"mode={m.mode or 'not recorded'}")
            if m.mempool_tracking is not True:
                why.append(f"mempool_tracking={'not recorded' if m.mempool_tracking is None else m.mempool_tracking}")
            mp = m.limits.get("min_profit_wei")
            if mp != STAGE_B_MIN_PROFIT_WEI:
                why.append(f"min_profit_wei={'not recorded' if mp is None else mp}")
        (bad.append(f"{r.path} ({', '.join(why)})") if why else ok.append(r))
    if stage is Stage.B:
        name, required = "runs are Stage A runs", "every run: mode=shadow, mempool_tracking=true (run.json)"
    else:
        name = "runs are Stage B runs"
        required = f"every run: mode=live, mempool_tracking=true, min_profit_wei={STAGE_B_MIN_PROFIT_WEI} (run.json)"
    measured = f"{len(ok)} of {len(runs)} run(s) qualify" + ("; not: " + "; ".join(bad) if bad else "")
    return Criterion(name, measured, required, not bad and bool(runs)), ok


def _stage_b(runs: Sequence[RunData]) -> list[Criterion]:
    settings, _ok = _settings(runs, Stage.B)
    week, days = _week(runs, "shadow runs")
    per_day: dict[dt.date, int] = {}
    outside = 0
    for r, b in unique_bundles(runs):
        if b.source == Source.MEMPOOL_BACKRUN and b.net_wei > 0:
            iv = r.interval()
            if iv is None or not iv[0] - SLACK <= b.built_at <= iv[1] + SLACK:
                outside += 1  # a dump dated outside the run that holds it is not evidence of that day
                continue
            day = b.built_at.date()
            per_day[day] = per_day.get(day, 0) + 1
    counts = [per_day.get(d, 0) for d in days]
    worst = min(counts) if counts else 0
    shown = ", ".join(f"{d}={per_day.get(d, 0)}" for d in days[-10:])
    daily = Criterion("mempool backruns built per whole UTC day with non-zero predicted net profit",
                      f"min {worst}/day over {len(days)} whole day(s)" + (f": {shown}" if shown else "")
                      + (f"; {outside} dump(s) dated outside their run not counted" if outside else ""),
                      f">= {MIN_DAILY_BUILT} on every whole day of the week", bool(days) and worst >= MIN_DAILY_BUILT)
    evidence = []
    for r in runs:
        s = r.summary
        if s is not None and s.submitted():
            evidence.append(f"{r.path}: summary counts {s.submitted()} submitted")
        if s is not None and s.builder_requests:
            evidence.append(f"{r.path}: {s.builder_requests} builder request(s)")
        if r.has_inclusions_file:
            evidence.append(f"{r.path}: has inclusions.jsonl")
        sent = [b.file for b in r.bundles if b.outcome == "submitted" or b.mode == "live"]
        if sent:
            evidence.append(f"{r.path}: {len(sent)} dump(s) submitted or live, e.g. {sent[0]}")
    missing = [str(r.path) for r in runs if r.summary is None]
    submitted = sum(r.summary.submitted() for r in runs if r.summary is not None)
    subs = Criterion("submissions during shadow", str(submitted) + ("; " + "; ".join(evidence) if evidence else ""),
                     "0 (summary, builder requests, inclusions.jsonl, dumps)", not evidence and not missing)
    panics, *summaries = _panics(runs)
    # Evidence without a threshold (the runbook sets none): would it have won, and how far
    # the counterfactual was from the prediction, from each run's settlements.jsonl.
    settled = [Criterion(*c) for c in stage_b_settlement_criteria([load_settlements(r.path) for r in runs])]
    return [settings, week, daily, panics, subs, *summaries, *settled]


def _breaches(runs: Sequence[RunData]) -> Criterion:
    """Daily P&L breaches from every record of them, never from a first-failing-gate counter alone.

    A bundle rejected first by ``gas_price`` while the ``daily_pnl`` latch was set
    counts only under ``gas_price`` in ``aether_mempool_risk_rejected_total``;
    so the check reads the latches the run saw, the saved risk state (in the
    summary and the file ``run.json`` names), and every dump's decisions.
    """
    found: list[str] = []
    unknown: list[str] = []
    state_files: set[str] = set()
    for r in runs:
        s = r.summary
        limit = r.meta.limits.get("daily_loss_limit_wei")
        if s is not None and s.risk_rejected.get("daily_pnl"):
            found.append(f"{r.path}: {s.risk_rejected['daily_pnl']} daily_pnl rejection(s)")
        if s is None or s.risk is None:
            unknown.append(f"{r.path}: no risk record in summary.json (the run predates it)")
        else:
            if "daily_pnl" in s.risk.halts_seen:
                found.append(f"{r.path}: daily_pnl HALT latched during the run")
            if dict(s.risk.state_halts).get("daily_pnl") is not None:
                found.append(f"{r.path}: saved risk state has a daily_pnl HALT ({s.risk.state_day}, "
                             f"P&L {s.risk.state_pnl_wei} wei)")
            elif limit is not None and s.risk.state_pnl_wei is not None and s.risk.state_pnl_wei < -limit:
                found.append(f"{r.path}: saved daily P&L {s.risk.state_pnl_wei} wei is below -{limit}")
        if r.persisted is not None and r.persisted[0] not in state_files:
            path, halts, day, pnl = r.persisted
            state_files.add(path)  # runs of one host share the file: one finding, not one per run
            if dict(halts).get("daily_pnl") is not None:
                found.append(f"{path}: daily_pnl HALT latched ({day}, P&L {pnl} wei)")
            elif limit is not None and pnl is not None and pnl < -limit:
                found.append(f"{path}: daily P&L {pnl} wei ({day}) is below -{limit}")
        failing = [b for b in r.bundles if "daily_pnl" in b.failing_gates()]
        if failing:
            first = failing[0]
            found.append(f"{r.path}: {len(failing)} dump(s) fail the daily_pnl gate (e.g. {first.file}, "
                         f"rejected first by {first.rejected_reason})")
    measured = "; ".join(found + unknown) if found or unknown else "none in summaries, risk state or dumps"
    return Criterion("no daily P&L breach", f"{len(found)} record(s): {measured}" if found else measured,
                     "no daily_pnl HALT in the run's latches, risk state or dumps", not found and not unknown
                     and bool(runs))


def _stage_c(runs: Sequence[RunData]) -> list[Criterion]:
    settings, _ok = _settings(runs, Stage.C)
    week, _days = _week(runs, "live runs")
    incs = unique_inclusions(runs)
    included = [i for i in incs if i.included and not i.unknown]  # an unknown is neither
    crit = [settings, week, Criterion("inclusions", str(len(included)), f">= {MIN_INCLUSIONS} (each arb_id once)",
                                      len(included) >= MIN_INCLUSIONS)]
    crit.append(_breaches(runs))
    errors = included_errors(included)
    if errors:
        (worst_i, worst), median = worst_and_median(errors)
        over = [i for i, e in errors if e is None or e > MAX_PREDICTION_ERROR]
        measured = (f"worst {fmt_error(worst)} ({worst_i.arb_id}: predicted {worst_i.predicted_wei} wei, actual "
                    f"{worst_i.realised_wei} wei), median {fmt_error(median)}, {len(over)} of {len(errors)} "
                    f"bundle(s) over 10%")
        ok_pred = not over
    else:
        measured, ok_pred = "no included bundles to compare", False
    crit.append(Criterion("predicted vs actual profit", measured, "within 10% of actual for every included bundle",
                          ok_pred))
    crit += _panics(runs)
    return crit


def check_stage(stage: str, runs: Sequence[RunData]) -> StageCheck:
    """Evaluate the runbook's gate into ``stage`` (B or C) from run directories.

    ``runs`` should come from :func:`~._load.load_runs` (each run once, sorted);
    repeated arb_ids are counted once here as well.

    Raises:
        ValueError: ``stage`` is neither B nor C.
    """
    try:
        st = Stage(stage)
    except ValueError:
        raise ValueError(f"unknown stage {stage!r}: expected B or C") from None
    once: dict[str, RunData] = {}
    for r in sorted(runs, key=lambda r: str(r.path)):
        once.setdefault(r.identity, r)  # the same run passed twice still counts once
    runs = list(once.values())
    crit = _stage_b(runs) if st is Stage.B else _stage_c(runs)
    return StageCheck(st.value, tuple(crit))
