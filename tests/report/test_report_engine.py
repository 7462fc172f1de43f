"""Stage C against what the real risk engine and run writer leave behind: a masked daily-loss HALT.

No synthetic dump here: the real :class:`RiskEngine` latches the daily P&L HALT
from a losing outcome, a gas spike then makes ``gas_price`` the first failing
gate (so ``aether_mempool_risk_rejected_total{reason="daily_pnl"}`` stays 0),
the real :class:`RunDir` writes the dumps, and ``aether run``'s own summary
writer records the risk state. The check must still fail on the breach.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path

import attrs

from aether.config import ETHER, GWEI, RiskLimits, Settings
from aether.dumps import RunDir
from aether.inclusion import Outcome
from aether.messages import Verdict
from aether.metrics import Metrics
from aether.report import check_stage, load_run
from aether.risk import RiskEngine, RiskStore
from aether.run import _write_summary
from factories import Wall, make_bundle, make_head

LIMITS = RiskLimits(min_profit_wei=5 * 10**16, daily_loss_limit_wei=ETHER // 2)
START = dt.datetime(2026, 2, 20, tzinfo=dt.UTC)


def _live_run(tmp_path: Path) -> tuple[RunDir, Path, Metrics, RiskEngine]:
    reports = tmp_path / "reports"
    state = reports / "risk-state.json"
    run_dir = RunDir(reports, shadow=False, stamp=START.strftime("%Y%m%dT%H%M%SZ"))
    run_dir.create()
    run_dir.write_meta("run.json", {
        "mode": run_dir.mode, "started_at": run_dir.stamp, "mempool_tracking": True,
        "limits": {k: str(v) for k, v in attrs.asdict(LIMITS).items()}, "run_id": secrets.token_hex(16),
        "state_file": str(state),
    })
    metrics = Metrics()
    engine = RiskEngine(LIMITS, store=RiskStore(state), metrics=metrics, wall_clock=Wall())
    engine.on_head(make_head(100), ETHER)
    # Three submitted bundles that landed exactly as predicted.
    for i in range(3):
        b = attrs.evolve(make_bundle(target_block=101 + i, net=6 * 10**16), arb_id=f"good-{i}",
                         envelope=(b"\x02raw", b"\x02ours" + bytes([i])))  # distinct signed transactions
        v = engine.evaluate(b)
        assert v.passed, v
        run_dir.write_bundle(v, outcome="submitted")
        record = Outcome(bundle=b, included=True, reverted=False, realised_profit_wei=b.expected_net_profit_wei,
                         predicted_profit_wei=b.expected_net_profit_wei, clean=True).record()
        with (run_dir.path / "inclusions.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
    return run_dir, state, metrics, engine


def _summary(run_dir: RunDir, metrics: Metrics, state: Path) -> None:
    _write_summary(run_dir, metrics, START.timestamp(), final=True, exit_code=0, halts_seen=set(),
                   settings=Settings(state_file=state, risk=LIMITS))


async def test_a_clean_week_of_the_real_writers_meets_stage_c(tmp_path: Path) -> None:
    run_dir, state, metrics, _engine = _live_run(tmp_path)
    _summary(run_dir, metrics, state)
    summary = json.loads((run_dir.path / "summary.json").read_text())
    assert summary["risk"]["halts_seen"] == [] and summary["risk"]["state"]["halts"] == {}
    result = check_stage("C", [load_run(run_dir.path)])
    assert result.met, result.criteria


async def test_a_daily_loss_halt_masked_by_the_gas_gate_fails_stage_c(tmp_path: Path) -> None:
    run_dir, state, metrics, engine = _live_run(tmp_path)
    engine.on_outcome("mempool_backrun", True, True, -(ETHER // 2) - 1)  # a reverted loss past the limit
    engine.on_head(make_head(104, base_fee=400 * GWEI), ETHER)  # and then a gas spike
    masked: list[Verdict] = []
    for i in range(4):
        v = engine.evaluate(attrs.evolve(make_bundle(target_block=105, net=6 * 10**16), arb_id=f"late-{i}"))
        assert (v.passed, v.reason) == (False, "gas_price")
        assert [d.gate for d in v.decisions if not d.passed][:2] == ["gas_price", "daily_pnl"]
        run_dir.write_bundle(v, outcome="rejected")
        masked.append(v)
    _summary(run_dir, metrics, state)
    summary = json.loads((run_dir.path / "summary.json").read_text())
    # The counter the old check read: the first failing gate hides the breach.
    assert summary["risk_rejected"]["daily_pnl"] == 0 and summary["risk_rejected"]["gas_price"] == 4
    assert "daily_pnl" in summary["risk"]["halts_seen"]

    result = check_stage("C", [load_run(run_dir.path)])
    assert [c.name for c in result.criteria if not c.met] == ["no daily P&L breach"]
    [c] = [c for c in result.criteria if not c.met]
    for evidence in ("daily_pnl HALT latched during the run", "saved risk state has a daily_pnl HALT",
                     f"{state}: daily_pnl HALT latched", "4 dump(s) fail the daily_pnl gate",
                     "rejected first by gas_price"):
        assert evidence in c.measured, (evidence, c.measured)

    # Each record alone is enough: drop the dumps and the summary's record, keep only the state file.
    for v in masked:
        run_dir.bundle_path(v.bundle.arb_id).unlink()
    del summary["risk"]["halts_seen"][:]
    summary["risk"]["state"] = None
    (run_dir.path / "summary.json").write_text(json.dumps(summary))
    result = check_stage("C", [load_run(run_dir.path)])
    assert [c.name for c in result.criteria if not c.met] == ["no daily P&L breach"]
