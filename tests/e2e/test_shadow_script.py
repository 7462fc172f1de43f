"""scripts/mempool_backrun_shadow.sh: its three outcomes, on the real embedded devnet.

- preflight failures exit non-zero (2) with one line, before anything starts;
- a clean shadow run exits 0 and leaves its summary in the run directory;
- the inverted gate (CI smoke test): an aether whose shadow gate is broken, so a
  mempool bundle does get submitted, makes the script exit non-zero (3) at once.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "mempool_backrun_shadow.sh"
AETHER_BIN = Path(sys.executable).with_name("aether")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AETHER_", "MEMPOOL_", "SHADOW_"))}
    env.update({"AETHER_REPORTS_DIR": str(tmp / "reports"), "AETHER_BIN": str(AETHER_BIN),
                "AETHER_PYTHON": sys.executable, "SHADOW_POLL_SEC": "1", "TMPDIR": str(tmp)})
    env.update(extra)
    return env


def _script(env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"MEMPOOL_TRACKING": "1"}, "AETHER_SHADOW must be exactly 1"),
        ({"AETHER_SHADOW": "0", "MEMPOOL_TRACKING": "1"}, "AETHER_SHADOW must be exactly 1 (got '0')"),
        ({"AETHER_SHADOW": "1"}, "MEMPOOL_TRACKING must be 1"),
        ({"AETHER_SHADOW": "1", "MEMPOOL_TRACKING": "1", "SHADOW_DURATION_SEC": "ten"}, "SHADOW_DURATION_SEC must be"),
        ({"AETHER_SHADOW": "1", "MEMPOOL_TRACKING": "1", "AETHER_BIN": "/nonexistent/aether"}, "aether is not installed"),
        ({"AETHER_SHADOW": "1", "MEMPOOL_TRACKING": "1", "AETHER_RPC_URL": "http://127.0.0.1:9"},
         "does not answer eth_chainId"),
    ],
)
def test_preflight_failure_exits_before_starting_anything(tmp_path: Path, extra: dict[str, str], needle: str) -> None:
    res = _script(_env(tmp_path, **extra), timeout=60)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "preflight failed" in res.stderr
    assert "starting:" not in res.stdout  # aether was never started
    assert not (tmp_path / "reports").exists()


@pytest.mark.devnet
def test_clean_shadow_run_exits_zero_with_summary(tmp_path: Path) -> None:
    res = _script(_env(tmp_path, AETHER_SHADOW="1", MEMPOOL_TRACKING="1", SHADOW_DURATION_SEC="12",
                       DEVNET_ARGS="--block-time 1 --tx-rate 20"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "PASSED" in res.stdout
    [run] = list((tmp_path / "reports").glob("shadow_mempool_*"))
    doc = json.loads((run / "shadow-run.json").read_text())
    assert doc["passed"] is True and doc["submitted"] == 0 and doc["panics"] == 0
    assert doc["mempool_backrun_built"] >= 1
    assert doc["dump_files"] == doc["mempool_backrun_built"] + doc["block_arb_built"]
    assert (run / "report.txt").read_text().startswith("run ")
    assert "elapsed" in res.stdout  # the progress line
    # aether's own banner reaches the operator's terminal and stays with the run.
    assert "SHADOW MODE: ENABLED" in res.stdout
    assert res.stdout.index("SHADOW MODE: ENABLED") < res.stdout.index("elapsed")  # shown at start, not at the end
    kept = (run / "aether.out").read_text()
    assert "SHADOW MODE: ENABLED" in kept and f"dumps: {run}/bundles" in kept
    assert (run / "aether.log").stat().st_size > 0
    assert doc["shadow_banner"] is True
    # No halt went on, and the record says so per reason.
    assert doc["halted"] is False and doc["failures"] == []
    assert set(doc["risk_halts"]) >= {"gas_price", "eth_balance", "daily_pnl", "risk_error"}
    assert not any(doc["risk_halts"].values())


@pytest.mark.devnet
def test_a_risk_halt_during_the_run_fails_the_verdict(tmp_path: Path) -> None:
    # A gas limit of 1 wei: the first head's next base fee is above it, so the gas HALT latches.
    res = _script(_env(tmp_path, AETHER_SHADOW="1", MEMPOOL_TRACKING="1", SHADOW_DURATION_SEC="10",
                       AETHER_RISK_MAX_GAS_PRICE_WEI="1", DEVNET_ARGS="--block-time 1 --tx-rate 20"))
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "[shadow-run] FAILED: risk-breach halts during the run: gas_price=1" in res.stderr
    assert "PASSED" not in res.stdout
    [run] = list((tmp_path / "reports").glob("shadow_mempool_*"))
    doc = json.loads((run / "shadow-run.json").read_text())
    assert doc["passed"] is False and doc["halted"] is True
    assert doc["risk_halts"]["gas_price"] == 1 and doc["submitted"] == 0
    assert "SHADOW MODE: ENABLED" in (run / "aether.out").read_text()


@pytest.mark.devnet
def test_inverted_gate_submission_makes_the_script_exit_nonzero(tmp_path: Path) -> None:
    # A broken aether: the script's environment says shadow, but this wrapper runs it live.
    auth = tmp_path / "auth.key"
    auth.write_text(secrets.token_hex(32))
    auth.chmod(0o600)
    wrapper = tmp_path / "aether-broken-gate"
    wrapper.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = run ]; then export AETHER_SHADOW=0 AETHER_FLASHBOTS_AUTH_KEY_FILE="{auth}"; fi\n'
        f'exec "{AETHER_BIN}" "$@"\n'
    )
    wrapper.chmod(0o755)
    res = _script(_env(tmp_path, AETHER_SHADOW="1", MEMPOOL_TRACKING="1", SHADOW_DURATION_SEC="60",
                       AETHER_BIN=str(wrapper), DEVNET_ARGS="--block-time 1 --tx-rate 25"))
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    assert "SUBMISSION DETECTED" in res.stderr
    assert "PASSED" not in res.stdout
