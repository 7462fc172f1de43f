"""End to end on the devnet: `aether run` in shadow sends nothing; the inverted gate does send.

Both runs are real processes against a real `aether devnet` (anvil, Uniswap V2,
victim traffic, the local builder that records every byte it receives). The
inverted run exists so that the shadow assertion can fail: the same setup with
AETHER_SHADOW=0 does put bytes on the builder's wire.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults._harness import SEED_FIELDS, devnet_process

from aether.messages import BLOCK_ARB_GATES, GATES_BY_SOURCE

pytestmark = pytest.mark.devnet

AETHER = [sys.executable, "-m", "aether.cli"]


@pytest.fixture(scope="module")
def devnet_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    with devnet_process(tmp_path_factory.mktemp("e2e-devnet")) as devnet:
        yield devnet.env, devnet.workdir


def _run(env: dict[str, str], duration: int) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_")}
    full.update(env)
    full["AETHER_METRICS_ADDR"] = "127.0.0.1:0"
    return subprocess.run([*AETHER, "run", "--duration", str(duration)], env=full, capture_output=True, text=True,
                          timeout=duration + 60)


def _run_dir(reports: Path) -> Path:
    [d] = [p for p in reports.iterdir() if p.is_dir() and p.name.endswith("Z")]
    return d


def test_shadow_run_dumps_every_bundle_and_the_builder_receives_nothing(
    devnet_proc: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, chain_dir = devnet_proc
    record = chain_dir / "builder-record.jsonl"
    before = record.stat().st_size if record.exists() else 0
    reports = tmp_path / "reports"
    res = _run({**env, "AETHER_SHADOW": "1", "MEMPOOL_TRACKING": "1", "AETHER_REPORTS_DIR": str(reports)}, 15)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "SHADOW MODE: ENABLED" in res.stdout

    run = _run_dir(reports)
    assert run.name.startswith("shadow_mempool_")
    summary = json.loads((run / "summary.json").read_text())
    built = sum(s["built"] for s in summary["sources"].values())
    dumps = sorted((run / "bundles").glob("*.json"))
    assert summary["sources"]["mempool_backrun"]["built"] >= 1
    assert len(dumps) == built  # one dump per built bundle, none missing, none extra
    assert summary["panics"] == 0 and summary["dump_errors"] == 0
    assert all(s["submitted"] == 0 for s in summary["sources"].values())
    blocked = sum(s["shadow_blocked"] for s in summary["sources"].values())
    rejected = sum(summary["risk_rejected"].values()) + sum(summary["block_arb_risk_rejected"].values())
    assert blocked + rejected == built  # every bundle accounted for
    for f in dumps:
        doc = json.loads(f.read_text())
        assert SEED_FIELDS <= doc.keys()
        gates = GATES_BY_SOURCE[doc["source"]]
        assert [d["gate"] for d in doc["risk_decisions"]][: len(gates)] == list(gates)
        assert doc["outcome"] in ("shadow_blocked", "rejected")
        assert doc["flashloan_provider"] == "none"
        assert int(doc["expected_net_profit_wei"]) == int(doc["expected_gross_profit_wei"]) - doc["gas_used"] * (
            int(doc["base_fee_wei"]) + int(doc["priority_fee_wei"]))
    tasks = json.loads((run / "tasks.json").read_text())
    assert "submit" not in tasks["actors"] and "shadow_sink" in tasks["actors"]
    assert not any("submit" in t.lower() for t in tasks["tasks"])
    assert tasks["submit_module_loaded"] is False
    # Every bundle that passed risk was settled exactly once (settlements.jsonl).
    settled = [json.loads(x)["arb_id"] for x in (run / "settlements.jsonl").read_text().splitlines()]
    passed = {json.loads(f.read_text())["arb_id"] for f in dumps if json.loads(f.read_text())["outcome"] == "shadow_blocked"}
    assert len(settled) == len(set(settled)) and set(settled) == passed
    # The recording builder received not one byte during the shadow run.
    after = record.stat().st_size if record.exists() else 0
    assert after == before


def test_inverted_gate_live_run_does_reach_the_builder(devnet_proc: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, chain_dir = devnet_proc
    record = chain_dir / "builder-record.jsonl"
    before = record.stat().st_size if record.exists() else 0
    auth = tmp_path / "auth.key"
    auth.write_text(secrets.token_hex(32))
    auth.chmod(0o600)
    reports = tmp_path / "reports"
    res = _run({**env, "AETHER_SHADOW": "0", "MEMPOOL_TRACKING": "1", "AETHER_REPORTS_DIR": str(reports),
                "AETHER_FLASHBOTS_AUTH_KEY_FILE": str(auth)}, 15)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "LIVE MODE" in res.stdout
    run = _run_dir(reports)
    assert run.name.startswith("live_mempool_")
    summary = json.loads((run / "summary.json").read_text())
    submitted = sum(s["submitted"] for s in summary["sources"].values())
    assert submitted >= 1
    tasks = json.loads((run / "tasks.json").read_text())
    assert "submit" in tasks["actors"] and tasks["submit_module_loaded"] is True
    after = record.stat().st_size if record.exists() else 0
    assert after > before
    sent = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    bodies = [base64.b64decode(r["body_b64"]) for r in sent]
    assert any(b'"eth_sendBundle"' in b for b in bodies)


def test_block_driven_path_builds_and_gates_with_mempool_tracking_off(
    devnet_proc: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """MEMPOOL_TRACKING=0 at the Stage B mempool minimum: the block-driven path alone, on its own gates.

    The Stage B minimum (5e16) is far above what a devnet block arb nets, so if
    the mempool's min_profit still judged block-driven bundles not one would
    pass; with its own floor they are shadow-blocked.
    """
    env, chain_dir = devnet_proc
    record = chain_dir / "builder-record.jsonl"
    before = record.stat().st_size if record.exists() else 0
    reports = tmp_path / "reports"
    res = _run({**env, "AETHER_SHADOW": "1", "MEMPOOL_TRACKING": "0", "AETHER_REPORTS_DIR": str(reports),
                "AETHER_MEMPOOL_MIN_PROFIT_WEI": "5e16"}, 15)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "SHADOW MODE: ENABLED" in res.stdout
    run = _run_dir(reports)
    summary = json.loads((run / "summary.json").read_text())
    arb = summary["sources"]["block_arb"]
    assert summary["sources"]["mempool_backrun"]["built"] == 0 and summary["pending_seen"] == 0
    assert arb["built"] >= 1, summary
    assert sum(summary["risk_rejected"].values()) == 0  # the seed's mempool counter saw nothing
    assert arb["shadow_blocked"] + sum(summary["block_arb_risk_rejected"].values()) == arb["built"]
    assert arb["shadow_blocked"] >= 1, summary  # not throttled by the mempool's 5e16
    dumps = [json.loads(f.read_text()) for f in sorted((run / "bundles").glob("*.json"))]
    assert len(dumps) == arb["built"]
    for doc in dumps:
        assert doc["source"] == "block_arb"
        assert [d["gate"] for d in doc["risk_decisions"]] == list(BLOCK_ARB_GATES)
        passed = {d["gate"]: d["passed"] for d in doc["risk_decisions"]}
        if doc["outcome"] == "shadow_blocked":
            assert all(passed.values()) and int(doc["expected_net_profit_wei"]) >= 10**15
    tasks = json.loads((run / "tasks.json").read_text())
    assert "intake" not in tasks["actors"] and "shadow_sink" in tasks["actors"]
    assert (record.stat().st_size if record.exists() else 0) == before
