"""aether report and aether rollout check over run directories (synthetic, exact expectations)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aether.report import check_stage, fmt_eth, load_run, report_main, rollout_check_main


def _bundle(arb: str, built_at: str, *, source: str = "mempool_backrun", gross: int = 10**16,
            reason: str | None = None) -> dict[str, object]:
    return {"arb_id": arb, "source": source, "victim_tx_hash": "0x" + "11" * 32, "target_block": 5,
            "built_at": built_at, "envelope": ["0x02"], "expected_gross_profit_wei": str(gross),
            "expected_net_profit_wei": str(gross // 2), "tip_share_bps": 8000, "gas_used": 200000,
            "risk_decisions": [], "rejected_reason": reason, "victim_age_ms_at_gate": 7}


def make_run(root: Path, name: str, bundles: list[dict[str, object]], *, mode: str = "shadow", panics: int = 0,
             submitted: int = 0, inclusions: list[dict[str, object]] | None = None,
             daily_pnl_rejections: int = 0) -> Path:
    run = root / name
    (run / "bundles").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"mode": mode}))
    (run / "summary.json").write_text(json.dumps({
        "panics": panics, "duration_s": 3600,
        "sources": {"mempool_backrun": {"submitted": submitted, "shadow_blocked": 0},
                    "block_arb": {"submitted": 0, "shadow_blocked": 0}},
        "risk_rejected": {"daily_pnl": daily_pnl_rejections},
    }))
    for b in bundles:
        (run / "bundles" / f"{b['arb_id']}.json").write_text(json.dumps(b))
    if inclusions is not None:
        (run / "inclusions.jsonl").write_text("".join(json.dumps(i) + "\n" for i in inclusions))
    return run


def week_of_runs(root: Path, per_day: int, days: int) -> list[Path]:
    runs = []
    for d in range(days):
        bundles = [_bundle(f"d{d}b{i}", f"2026-05-{10 + d:02d}T12:{i:02d}:00Z") for i in range(per_day)]
        runs.append(make_run(root, f"shadow_mempool_202605{10 + d:02d}T000000Z", bundles))
    return runs


def test_fmt_eth_is_integer_exact() -> None:
    assert fmt_eth(1_234_567_890_123_456_789) == "1.234567 ETH"
    assert fmt_eth(-5 * 10**14) == "-0.000500 ETH"
    assert fmt_eth(0) == "0.000000 ETH"


def test_report_text_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, "r", [_bundle("a", "2026-05-10T12:00:00Z"),
                                   _bundle("b", "2026-05-10T12:30:00Z", reason="min_profit"),
                                   _bundle("c", "2026-05-10T12:40:00Z", source="block_arb", gross=3)])
    assert report_main(run, html=tmp_path / "r.html") == 0
    out = capsys.readouterr().out
    assert "[mempool_backrun]" in out and "bundles built          2  (2.0/h)" in out
    assert "min_profit             1" in out
    assert "predicted gross profit 0.020000 ETH  (20000000000000000 wei)" in out
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "http" not in html.replace("http-equiv", "")


def test_missing_empty_and_corrupt_run_dirs_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(tmp_path / "nope") == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main(tmp_path / "empty") == 2
    assert "empty" in capsys.readouterr().err
    run = make_run(tmp_path, "bad", [_bundle("ok", "2026-05-10T12:00:00Z")])
    (run / "bundles" / "broken.json").write_text('{"arb_id": "x", ')
    (run / "bundles" / "short.json").write_text('{"arb_id": "y"}')
    assert rollout_check_main("B", [run]) == 2
    err = capsys.readouterr().err
    assert "broken.json" in err and "short.json: missing fields" in err


def test_stage_b_met_by_a_week_of_good_days(tmp_path: Path) -> None:
    result = check_stage("B", [load_run(r) for r in week_of_runs(tmp_path, 10, 7)])
    assert result.met, result.criteria


@pytest.mark.parametrize(
    ("per_day", "days", "failing"),
    [
        (9, 7, "mempool backruns built per day with non-zero predicted profit"),
        (10, 6, "shadow runs cover at least a week"),
    ],
)
def test_stage_b_fails_exactly_at_the_threshold(tmp_path: Path, per_day: int, days: int, failing: str) -> None:
    result = check_stage("B", [load_run(r) for r in week_of_runs(tmp_path, per_day, days)])
    assert not result.met
    assert [c.name for c in result.criteria if not c.met] == [failing]


def test_stage_b_fails_on_a_panic_or_a_submission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    extra = make_run(tmp_path, "late", [], panics=1, submitted=1)
    assert rollout_check_main("B", [*runs, extra]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] panics: 1" in out and "[FAIL] submissions during shadow: 1" in out
    assert "Stage B gate NOT MET" in out


def test_stage_c_inclusions_pnl_and_prediction(tmp_path: Path) -> None:
    def inc(pred: int, real: int) -> dict[str, object]:
        return {"arb_id": "x", "included": True, "predicted_profit_wei": str(pred), "realised_profit_wei": str(real)}

    good = make_run(tmp_path, "live1", [], mode="live", inclusions=[inc(100, 100), inc(100, 95), inc(100, 105)])
    assert check_stage("C", [load_run(good)]).met
    off = make_run(tmp_path, "live2", [], mode="live", inclusions=[inc(100, 80), inc(100, 90), inc(100, 90)])
    r = check_stage("C", [load_run(off)])
    assert [c.name for c in r.criteria if not c.met] == ["predicted vs actual profit"]
    few = make_run(tmp_path, "live3", [], mode="live", inclusions=[inc(1, 1), inc(1, 1)], daily_pnl_rejections=1)
    r = check_stage("C", [load_run(few)])
    assert {c.name for c in r.criteria if not c.met} == {"inclusions", "daily P&L breaches (daily_pnl HALT rejections)"}
