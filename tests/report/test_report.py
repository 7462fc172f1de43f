"""aether report and aether rollout check over run directories (synthetic, exact expectations).

Each stage criterion is tested on the input that should make it fail: a week
one day short, a gap day, runs of the wrong stage, a daily-loss HALT masked by
another gate, per-bundle errors that cancel in the sum.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from aether.report import check_stage, fmt_eth, load_run, load_runs, report_main, rollout_check_main

DAY0 = dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
B_LIMITS = {"min_profit_wei": str(5 * 10**16), "daily_loss_limit_wei": str(5 * 10**17)}
A_LIMITS = {"min_profit_wei": str(10**15), "daily_loss_limit_wei": str(5 * 10**17)}


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def bundle(arb: str, built_at: dt.datetime | str, *, source: str = "mempool_backrun", gross: int = 10**16,
           net: int | None = None, reason: str | None = None, failing: tuple[str, ...] = (),
           outcome: str = "shadow_blocked") -> dict[str, Any]:
    """A dump as aether writes it; ``failing`` gates fail in ``risk_decisions`` (``reason`` is the first)."""
    gates = ("gas_price", "eth_balance", "daily_pnl", "consecutive_reverts", "min_profit", "max_tip_share",
             "victim_freshness", "max_in_flight", "dedup")
    return {"arb_id": arb, "source": source, "victim_tx_hash": "0x" + "11" * 32, "target_block": 5,
            "built_at": built_at if isinstance(built_at, str) else _iso(built_at),
            "envelope": ["0x02" + "11" * 8, "0x02" + arb.encode().hex()],
            "expected_gross_profit_wei": str(gross), "expected_net_profit_wei": str(gross // 2 if net is None else net),
            "tip_share_bps": 8000, "gas_used": 200000, "base_fee_wei": "1", "priority_fee_wei": "2",
            "risk_decisions": [{"gate": g, "passed": g not in failing, "value": "x"} for g in gates],
            "rejected_reason": reason, "outcome": outcome, "victim_age_ms_at_gate": 7}


def make_run(root: Path, name: str, bundles: list[dict[str, Any]], *, mode: str = "shadow",
             start: dt.datetime = DAY0, hours: float = 24, panics: int = 0, submitted: int = 0,
             inclusions: list[dict[str, Any]] | None = None, risk_rejected: dict[str, int] | None = None,
             halts_seen: tuple[str, ...] = (), state: dict[str, Any] | None = None,
             limits: dict[str, str] | None = None, mempool_tracking: bool = True,
             meta: dict[str, Any] | None = None, risk_record: bool = True) -> Path:
    run = root / name
    (run / "bundles").mkdir(parents=True)
    end = start + dt.timedelta(hours=hours)
    doc = meta if meta is not None else {
        "mode": mode, "run_id": secrets.token_hex(16), "started_at": start.strftime("%Y%m%dT%H%M%SZ"),
        "mempool_tracking": mempool_tracking, "limits": limits or (A_LIMITS if mode == "shadow" else B_LIMITS)}
    (run / "run.json").write_text(json.dumps(doc))
    summary: dict[str, Any] = {
        "panics": panics, "duration_s": int(hours * 3600), "final": True, "started_unix": int(start.timestamp()),
        "updated_unix": int(end.timestamp()),
        "sources": {"mempool_backrun": {"submitted": submitted, "shadow_blocked": 0},
                    "block_arb": {"submitted": 0, "shadow_blocked": 0}},
        "risk_rejected": risk_rejected or {"daily_pnl": 0},
    }
    if risk_record:
        summary["risk"] = {"halts_seen": list(halts_seen), "state": state}
    (run / "summary.json").write_text(json.dumps(summary))
    for b in bundles:
        (run / "bundles" / f"{b['arb_id']}.json").write_text(json.dumps(b))
    if inclusions is not None:
        (run / "inclusions.jsonl").write_text("".join(json.dumps(i) + "\n" for i in inclusions))
    return run


def week_of_runs(root: Path, per_day: int, days: int, *, skip: int | None = None) -> list[Path]:
    """One run a day, each from 00:00 to the next 00:00 UTC; day ``skip`` has no run (a gap)."""
    runs = []
    for d in range(days):
        if d == skip:
            continue
        start = DAY0 + dt.timedelta(days=d)
        bundles = [bundle(f"d{d}b{i}", start + dt.timedelta(hours=12, minutes=i)) for i in range(per_day)]
        runs.append(make_run(root, f"shadow_mempool_{start:%Y%m%d}T000000Z", bundles, start=start))
    return runs


def failing(result: Any) -> list[str]:
    return [c.name for c in result.criteria if not c.met]


def test_fmt_eth_is_integer_exact() -> None:
    assert fmt_eth(1_234_567_890_123_456_789) == "1.234567 ETH"
    assert fmt_eth(-5 * 10**14) == "-0.000500 ETH"
    assert fmt_eth(0) == "0.000000 ETH"


def test_report_text_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = DAY0 + dt.timedelta(hours=12)
    run = make_run(tmp_path, "r", [bundle("a", t), bundle("b", t, reason="min_profit", failing=("min_profit",)),
                                   bundle("c", t, source="block_arb", gross=3)], hours=1)
    assert report_main(run, html=tmp_path / "r.html") == 0
    out = capsys.readouterr().out
    assert "[mempool_backrun]" in out and "bundles built          2  (2.0/h)" in out
    assert "min_profit             1" in out
    assert "predicted gross profit 0.020000 ETH  (20000000000000000 wei)" in out
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "http" not in html.replace("http-equiv", "")
    assert "src=" not in html and "<link" not in html and "<script" not in html


def test_report_counts_every_failing_gate_not_only_the_first(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    t = DAY0 + dt.timedelta(hours=1)
    masked = [bundle(f"m{i}", t, reason="gas_price", failing=("gas_price", "daily_pnl", "min_profit"))
              for i in range(3)]
    run = make_run(tmp_path, "r", [*masked, bundle("p", t, reason="min_profit", failing=("min_profit",))], hours=1)
    assert report_main(run) == 0
    out = capsys.readouterr().out
    first = out.split("verdicts by reason (first failing gate):")[1].split("bundles each gate")[0]
    assert "gas_price              3" in first and "daily_pnl" not in first
    every = out.split("bundles each gate would reject (every failing gate, from the dumps):")[1].split("\n[")[0]
    assert "min_profit             4" in every
    assert "gas_price              3" in every and "daily_pnl              3" in every


def test_report_shows_inclusion_rate_and_each_bundle_prediction(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    t = DAY0 + dt.timedelta(hours=1)
    dumps = [bundle(a, t, net=100, outcome="submitted") for a in ("a", "b", "c", "d")]
    incs = [inc("a", 100, 100), inc("b", 100, 150), inc("c", 100, 50), inc("d", 100, 0, included=False)]
    run = make_run(tmp_path, "live", dumps, mode="live", inclusions=incs, hours=1, submitted=5)
    assert report_main(run) == 0
    out = capsys.readouterr().out
    assert "settled submissions    4  (submitted 5;" in out
    assert "included               3  (inclusion rate 75% of the settled)" in out
    assert "worst 100.00%" in out and "median 33.33%" in out
    assert "a                        predicted                      100  realised                      100  " \
           "error 0.00%" in out


def test_an_unknown_inclusion_is_neither_a_miss_nor_an_inclusion(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    t = DAY0 + dt.timedelta(hours=1)
    dumps = [bundle(a, t, net=100, outcome="submitted") for a in ("a", "b", "u")]
    unknown = inc("u", 100, 0, included=True) | {"unknown": True, "reason": "receipts_not_indexed"}
    run = make_run(tmp_path, "live", dumps, mode="live", hours=1, submitted=3,
                   inclusions=[inc("a", 100, 100), inc("b", 100, 0, included=False), unknown])
    assert report_main(run) == 0
    out = capsys.readouterr().out
    assert "settled submissions    2  (submitted 3;" in out
    assert "included               1  (inclusion rate 50% of the settled)" in out
    assert "unknown                1  (the node never let them be judged" in out
    assert [i.arb_id for i in load_run(run).inclusions if i.included] == ["a"]  # "unknown" wins over "included"


def test_stage_c_does_not_count_an_unknown_as_an_inclusion(tmp_path: Path) -> None:
    run = live_week(tmp_path, [(100, 100)] * 3)
    lines = (run / "inclusions.jsonl").read_text().splitlines()
    lines[2] = json.dumps(inc("x2", 100, 100) | {"unknown": True, "reason": "receipts_not_indexed"})
    (run / "inclusions.jsonl").write_text("\n".join(lines) + "\n")
    result = check_stage("C", [load_run(run)])
    assert failing(result) == ["inclusions"]
    assert [c.measured for c in result.criteria if c.name == "inclusions"] == ["2"]


def test_missing_empty_and_corrupt_run_dirs_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(tmp_path / "nope") == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main(tmp_path / "empty") == 2
    assert "empty" in capsys.readouterr().err
    run = make_run(tmp_path, "bad", [bundle("ok", DAY0)])
    (run / "bundles" / "broken.json").write_text('{"arb_id": "x", ')
    (run / "bundles" / "short.json").write_text('{"arb_id": "y"}')
    assert rollout_check_main("B", [run]) == 2
    err = capsys.readouterr().err
    assert "broken.json: not JSON" in err and "short.json: missing field envelope" in err
    assert len(err.splitlines()) == 2 and "Traceback" not in err


# --------------------------------------------------------------------------- Stage B


def test_stage_b_met_by_a_week_of_good_days(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    result = check_stage("B", [load_run(r) for r in runs])
    assert result.met, result.criteria
    assert rollout_check_main("B", runs) == 0
    assert "Stage B gate MET" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("per_day", "days", "skip", "failing_names"),
    [
        (9, 7, None, ["mempool backruns built per whole UTC day with non-zero predicted net profit"]),
        (10, 6, None, ["shadow runs span the runbook's week"]),
        # Seven runs, but day 3 has none: two stretches of 3 and 4 whole days, not a week.
        (10, 8, 3, ["shadow runs span the runbook's week"]),
    ],
)
def test_stage_b_fails_exactly_at_the_threshold(tmp_path: Path, per_day: int, days: int, skip: int | None,
                                                failing_names: list[str]) -> None:
    result = check_stage("B", [load_run(r) for r in week_of_runs(tmp_path, per_day, days, skip=skip)])
    assert not result.met
    assert failing(result) == failing_names


def test_stage_b_a_quiet_day_inside_the_week_fails_it(tmp_path: Path) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    for f in (runs[3] / "bundles").iterdir():  # the run kept going, but built nothing that day
        f.unlink()
    result = check_stage("B", [load_run(r) for r in runs])
    assert failing(result) == ["mempool backruns built per whole UTC day with non-zero predicted net profit"]
    [c] = [c for c in result.criteria if not c.met]
    assert c.measured.startswith("min 0/day over 7 whole day(s)")


def test_stage_b_needs_whole_days_not_seven_dates(tmp_path: Path) -> None:
    # 23:00 on day 0 to 01:00 on day 7: seven dates touched, only six whole days in between.
    start = DAY0 + dt.timedelta(hours=23)
    bundles = [bundle(f"d{d}b{i}", DAY0 + dt.timedelta(days=d, hours=12, minutes=i)) for d in range(8)
               for i in range(10)]
    run = make_run(tmp_path, "long", bundles, start=start, hours=6 * 24 + 2)
    result = check_stage("B", [load_run(run)])
    assert "shadow runs span the runbook's week" in failing(result)


def test_stage_b_counts_net_profit_not_gross(tmp_path: Path) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    doc = json.loads((runs[2] / "bundles" / "d2b0.json").read_text())
    doc["expected_net_profit_wei"] = "0"  # all of the gross paid away: not a profitable backrun
    (runs[2] / "bundles" / "d2b0.json").write_text(json.dumps(doc))
    result = check_stage("B", [load_run(r) for r in runs])
    assert failing(result) == ["mempool backruns built per whole UTC day with non-zero predicted net profit"]


def test_stage_b_fails_on_a_panic_or_a_submission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    extra = make_run(tmp_path, "late", [], panics=1, submitted=1, start=DAY0 + dt.timedelta(days=7), hours=1)
    assert rollout_check_main("B", [*runs, extra]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] panics: 1" in out and "[FAIL] submissions during shadow: 1" in out
    assert "Stage B gate NOT MET" in out


def test_stage_b_any_trace_of_a_submission_fails_it(tmp_path: Path) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    (runs[0] / "inclusions.jsonl").write_text("")  # only a submitter writes this file
    doc = json.loads((runs[1] / "bundles" / "d1b0.json").read_text())
    doc["outcome"] = "submitted"
    (runs[1] / "bundles" / "d1b0.json").write_text(json.dumps(doc))
    result = check_stage("B", [load_run(r) for r in runs])
    assert failing(result) == ["submissions during shadow"]
    [c] = [c for c in result.criteria if not c.met]
    assert "has inclusions.jsonl" in c.measured and "d1b0.json" in c.measured


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"mode": "live"}, "mode=live"),
        ({"mempool_tracking": False}, "mempool_tracking=False"),
        ({"mempool_tracking": None}, "mempool_tracking=not recorded"),
        ({"mode": None}, "mode=not recorded"),
    ],
)
def test_stage_b_reads_only_stage_a_runs_as_recorded(tmp_path: Path, change: dict[str, Any], why: str) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    meta = json.loads((runs[4] / "run.json").read_text())
    meta.update(change)
    (runs[4] / "run.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
    result = check_stage("B", [load_run(r) for r in runs])
    assert failing(result) == ["runs are Stage A runs"]  # however good the other figures are
    assert why in result.criteria[0].measured and not result.met


def test_an_old_run_dir_without_settings_is_not_evidence(tmp_path: Path) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    for r in runs:
        (r / "run.json").write_text(json.dumps({"mode": "shadow"}))  # written before the settings were recorded
    result = check_stage("B", [load_run(r) for r in runs])
    assert "runs are Stage A runs" in failing(result)
    assert "mempool_tracking=not recorded" in result.criteria[0].measured


# --------------------------------------------------------------------------- Stage C


def inc(arb: str, pred: int, real: int, *, included: bool = True) -> dict[str, Any]:
    return {"arb_id": arb, "included": included, "reverted": False, "predicted_profit_wei": str(pred),
            "realised_profit_wei": str(real)}


def live_week(root: Path, incs: list[tuple[int, int]], **kw: Any) -> Path:
    """One live Stage B run of 7 whole UTC days with one submitted dump and one settled line per (pred, real)."""
    dumps = [bundle(f"x{i}", DAY0 + dt.timedelta(hours=1 + i), net=p, outcome="submitted")
             for i, (p, _r) in enumerate(incs)]
    lines = [inc(f"x{i}", p, r) for i, (p, r) in enumerate(incs)]
    return make_run(root, kw.pop("name", "live_mempool_20260510T000000Z"), dumps, mode="live", hours=7 * 24,
                    inclusions=lines, **kw)


def test_stage_c_met_by_a_week_of_good_inclusions(tmp_path: Path) -> None:
    result = check_stage("C", [load_run(live_week(tmp_path, [(100, 100), (100, 95), (100, 105)]))])
    assert result.met, result.criteria


def test_stage_c_per_bundle_errors_that_cancel_in_the_sum_fail(tmp_path: Path) -> None:
    # +50% and -50%: predicted sum 300, actual sum 300; a check on sums would pass.
    run = live_week(tmp_path, [(150, 100), (50, 100), (100, 100)])
    result = check_stage("C", [load_run(run)])
    assert failing(result) == ["predicted vs actual profit"]
    [c] = [c for c in result.criteria if not c.met]
    assert c.measured.startswith("worst 50.00% (x0: predicted 150 wei, actual 100 wei), median 50.00%, 2 of 3")


@pytest.mark.parametrize(("real", "met"), [(1000, True), (999, False), (1_000_000, True)])
def test_stage_c_prediction_bound_is_exact_per_bundle(tmp_path: Path, real: int, met: bool) -> None:
    # |1100 - 1000| / 1000 = 10% exactly passes; one wei less actual is over.
    pred = 1100 if real < 10**6 else real
    run = live_week(tmp_path, [(pred, real), (5, 5), (7, 7)])
    assert ("predicted vs actual profit" not in failing(check_stage("C", [load_run(run)]))) is met


def test_stage_c_zero_actual_with_nonzero_prediction_is_an_infinite_error(tmp_path: Path) -> None:
    run = live_week(tmp_path, [(10, 0), (5, 5), (7, 7)])
    result = check_stage("C", [load_run(run)])
    assert failing(result) == ["predicted vs actual profit"]
    assert "worst infinite" in result.criteria[-2].measured


def test_stage_c_a_masked_daily_loss_halt_in_the_dumps_fails(tmp_path: Path) -> None:
    run = live_week(tmp_path, [(100, 100)] * 3)
    # Every later bundle was rejected first by gas_price; the counter says daily_pnl = 0.
    for i in range(5):
        b = bundle(f"late{i}", DAY0 + dt.timedelta(days=2), reason="gas_price", failing=("gas_price", "daily_pnl"),
                   outcome="rejected")
        (run / "bundles" / f"late{i}.json").write_text(json.dumps(b))
    result = check_stage("C", [load_run(run)])
    assert failing(result) == ["no daily P&L breach"]
    [c] = [c for c in result.criteria if not c.met]
    assert "5 dump(s) fail the daily_pnl gate" in c.measured and "rejected first by gas_price" in c.measured


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"halts_seen": ("gas_price", "daily_pnl")}, "daily_pnl HALT latched during the run"),
        ({"state": {"utc_day": "2026-05-12", "daily_pnl_wei": "-600000000000000000",
                    "halts": {"daily_pnl": "-600000000000000000"}}}, "saved risk state has a daily_pnl HALT"),
        ({"state": {"utc_day": "2026-05-12", "daily_pnl_wei": "-500000000000000001", "halts": {}}},
         "is below -500000000000000000"),
        ({"risk_rejected": {"daily_pnl": 2}}, "2 daily_pnl rejection(s)"),
        ({"risk_record": False}, "no risk record in summary.json"),
    ],
)
def test_stage_c_every_record_of_a_daily_loss_fails_it(tmp_path: Path, kw: dict[str, Any], text: str) -> None:
    run = live_week(tmp_path, [(100, 100)] * 3, **kw)
    result = check_stage("C", [load_run(run)])
    assert failing(result) == ["no daily P&L breach"]
    assert text in [c for c in result.criteria if not c.met][0].measured


def test_stage_c_reads_the_persisted_risk_state_file_run_json_names(tmp_path: Path) -> None:
    run = live_week(tmp_path, [(100, 100)] * 3)
    state = tmp_path / "risk-state.json"
    meta = json.loads((run / "run.json").read_text())
    meta["state_file"] = str(state)
    (run / "run.json").write_text(json.dumps(meta))
    assert check_stage("C", [load_run(run)]).met  # named but absent: nothing to read
    state.write_text(json.dumps({"version": 1, "utc_day": "2026-05-16", "daily_pnl_wei": "-7",
                                 "halts": {"daily_pnl": "-7", "eth_balance": "unknown"}}))
    result = check_stage("C", [load_run(run)])
    assert failing(result) == ["no daily P&L breach"]
    assert f"{state}: daily_pnl HALT latched (2026-05-16" in result.criteria[3].measured


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"mode": "shadow"}, "mode=shadow"),
        ({"limits": A_LIMITS}, "min_profit_wei=1000000000000000"),
        ({"limits": {}}, "min_profit_wei=not recorded"),
        ({"mempool_tracking": False}, "mempool_tracking=False"),
    ],
)
def test_stage_c_reads_only_stage_b_runs_as_recorded(tmp_path: Path, change: dict[str, Any], why: str) -> None:
    run = live_week(tmp_path, [(100, 100)] * 3)
    meta = json.loads((run / "run.json").read_text())
    meta.update(change)
    (run / "run.json").write_text(json.dumps(meta))
    result = check_stage("C", [load_run(run)])
    assert failing(result)[0] == "runs are Stage B runs"
    assert why in result.criteria[0].measured and not result.met


def test_stage_c_needs_the_week_and_three_distinct_inclusions(tmp_path: Path) -> None:
    short = make_run(tmp_path, "short", [bundle("x0", DAY0, net=100, outcome="submitted")], mode="live", hours=6 * 24,
                     inclusions=[inc("x0", 100, 100)] * 3)  # one bundle settled three times is one inclusion
    result = check_stage("C", [load_run(short)])
    assert failing(result) == ["live runs span the runbook's week", "inclusions"]
    assert [c.measured for c in result.criteria if c.name == "inclusions"] == ["1"]


def test_stage_c_an_inclusion_without_its_dump_is_not_counted(tmp_path: Path) -> None:
    run = live_week(tmp_path, [(100, 100)] * 3)
    with (run / "inclusions.jsonl").open("a") as f:
        f.write(json.dumps(inc("invented", 100, 100)) + "\n")
    (run / "bundles" / "x2.json").unlink()
    result = check_stage("C", [load_run(run)])
    assert failing(result) == ["inclusions"]


def test_stage_c_an_edited_inclusion_line_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = live_week(tmp_path, [(100, 100)] * 3)
    lines = (run / "inclusions.jsonl").read_text().splitlines()
    lines[1] = json.dumps(inc("x1", 101, 100))
    (run / "inclusions.jsonl").write_text("\n".join(lines) + "\n")
    assert rollout_check_main("C", [run]) == 2
    assert "inclusions.jsonl:2: predicted_profit_wei 101 differs from the dump" in capsys.readouterr().err


def test_unknown_stage_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown stage 'D': expected B or C"):
        check_stage("D", load_runs(week_of_runs(tmp_path, 1, 1)).runs)
