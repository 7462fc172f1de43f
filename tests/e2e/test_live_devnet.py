"""Live mode end to end on the devnet: bundles land, realised equals predicted, inclusions recorded.

A real `aether devnet` (anvil, Uniswap V2, victim traffic, the local builder
that puts each bundle at the top of its block) and a real `aether run` with
AETHER_SHADOW=0. The run's ``inclusions.jsonl`` must show at least one bundle
included in its target block; every included bundle that nothing else
disturbed (``clean``) realised its predicted net profit to the wei, and every
included bundle is within 10% of its prediction. The same file passes the
rollout runbook's Stage C reader.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults._harness import devnet_process

from aether.report import check_stage, load_run

pytestmark = pytest.mark.devnet

AETHER = [sys.executable, "-m", "aether.cli"]
REQUIRED = {"arb_id", "source", "target_block", "included", "reverted", "realised_profit_wei", "predicted_profit_wei",
            "predicted_gross_wei", "delta_wei", "clean"}


@pytest.fixture
def devnet_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with devnet_process(tmp_path / "devnet") as devnet:
        yield devnet.env


def test_live_bundles_land_and_realise_their_prediction(devnet_env: dict[str, str], tmp_path: Path) -> None:
    auth = tmp_path / "auth.key"
    auth.write_text(secrets.token_hex(32))
    auth.chmod(0o600)
    reports = tmp_path / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_")}
    env.update(devnet_env)
    env.update({"AETHER_SHADOW": "0", "MEMPOOL_TRACKING": "1", "AETHER_REPORTS_DIR": str(reports),
                "AETHER_FLASHBOTS_AUTH_KEY_FILE": str(auth), "AETHER_METRICS_ADDR": "127.0.0.1:0",
                "AETHER_STATE_FILE": str(tmp_path / "risk.json")})
    res = subprocess.run([*AETHER, "run", "--duration", "22"], env=env, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-3000:]
    [run] = [p for p in reports.iterdir() if p.is_dir() and p.name.startswith("live_mempool_")]

    path = run / "inclusions.jsonl"
    assert path.stat().st_mode & 0o777 == 0o600
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and all(REQUIRED <= r.keys() for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    submitted = sum(s["submitted"] for s in summary["sources"].values())
    assert len(rows) <= submitted  # one line per settled submission, none invented
    assert len({r["arb_id"] for r in rows}) == len(rows)
    for r in rows:
        dump = json.loads((run / "bundles" / f"{r['arb_id']}.json").read_text())
        assert dump["outcome"] == "submitted"
        assert r["predicted_profit_wei"] == dump["expected_net_profit_wei"]
        assert r["predicted_gross_wei"] == dump["expected_gross_profit_wei"]
        assert int(r["delta_wei"]) == int(r["realised_profit_wei"]) - int(r["predicted_profit_wei"])
        assert r["target_block"] == dump["target_block"]
        assert not r["clean"] or r["included"]

    included = [r for r in rows if r["included"]]
    clean = [r for r in included if r["clean"]]
    exact = [r for r in included if r["realised_profit_wei"] == r["predicted_profit_wei"]]
    print(f"\nsubmitted {submitted}, settled {len(rows)}, included {len(included)}, clean {len(clean)}, "
          f"exact {len(exact)}, reverted {sum(r['reverted'] for r in rows)}")
    assert included, "no bundle landed in its target block"
    assert not any(r["reverted"] for r in included)
    for r in clean:
        assert r["realised_profit_wei"] == r["predicted_profit_wei"], r
    for r in included:
        predicted, realised = int(r["predicted_profit_wei"]), int(r["realised_profit_wei"])
        assert abs(realised - predicted) * 10 <= abs(predicted), r

    # The runbook's Stage C reader takes the same file.
    check = check_stage("C", [load_run(run)])
    [inclusions] = [c for c in check.criteria if c.name == "inclusions"]
    assert inclusions.measured == str(len(included))
    [pva] = [c for c in check.criteria if c.name == "predicted vs actual profit"]
    assert pva.met, pva.measured

    # Settlement of the same bundles: every included one is `included` there too, and its
    # realised profit (receipts) equals the counterfactual (the target block replayed up to
    # the victim, then our backrun) and the inclusion tracker's figure, to the wei.
    settled = {json.loads(x)["arb_id"]: json.loads(x) for x in (run / "settlements.jsonl").read_text().splitlines()}
    for r in included:
        s = settled[r["arb_id"]]
        assert s["outcome"] == "included", s
        assert s["realised_profit_wei"] == s["counterfactual_net_wei"] == r["realised_profit_wei"], (s, r)
