"""The console script's small commands: --version, prepare, bad-config exits."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aether.devnet import DevnetInfo

AETHER = [sys.executable, "-m", "aether.cli"]


def test_version() -> None:
    res = subprocess.run([*AETHER, "--version"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.startswith("aether ")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"AETHER_SHADOW": "yes"}, "AETHER_SHADOW='yes'"),
        ({"AETHER_MEMPOOL_MAX_TIP_BPS": "10001"}, "AETHER_MEMPOOL_MAX_TIP_BPS='10001'"),
        ({"AETHER_MEMPOOL_MIN_PROFIT_WEI": "-1"}, "AETHER_MEMPOOL_MIN_PROFIT_WEI='-1'"),
        ({}, "AETHER_SIGNER_KEY_FILE is not set"),
        ({"AETHER_SIGNER_KEY_FILE": "/nonexistent/key"}, "AETHER_SIGNER_KEY_FILE"),
    ],
)
def test_run_config_errors_exit_2_with_one_line(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    full = {"PATH": "/usr/bin:/bin", "AETHER_REPORTS_DIR": str(tmp_path / "r"), **env}
    res = subprocess.run([*AETHER, "run"], env=full, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("aether: error:")]
    assert len(lines) == 1 and needle in lines[0], res.stderr


def test_run_reports_dir_not_writable_exits_2(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    full = {"PATH": "/usr/bin:/bin", "AETHER_REPORTS_DIR": str(blocker / "reports"), "AETHER_SIGNER_KEY_FILE": str(key)}
    res = subprocess.run([*AETHER, "run"], env=full, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "AETHER_REPORTS_DIR" in res.stderr and "not writable" in res.stderr


def test_run_node_unreachable_exits_3_naming_the_url(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    full = {"PATH": "/usr/bin:/bin", "AETHER_REPORTS_DIR": str(tmp_path / "r"), "AETHER_SIGNER_KEY_FILE": str(key),
            "AETHER_RPC_URL": "http://127.0.0.1:9", "AETHER_METRICS_ADDR": "127.0.0.1:0"}
    res = subprocess.run([*AETHER, "run"], env=full, capture_output=True, text=True, timeout=30)
    assert res.returncode == 3
    assert "http://127.0.0.1:9" in res.stderr


@pytest.mark.devnet
def test_prepare_lists_then_sends_missing_approvals(devnet: DevnetInfo, tmp_path: Path) -> None:
    key = tmp_path / "fresh.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    env = {"PATH": "/usr/bin:/bin", "AETHER_RPC_URL": devnet.rpc_url, "AETHER_CONFIG": str(devnet.config_path),
           "AETHER_SIGNER_KEY_FILE": str(key)}
    from eth_account import Account

    addr = Account.from_key(key.read_text()).address
    httpx.post(devnet.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance",
                                     "params": [addr, hex(10**18)]})
    n_assets = 1 + len(devnet.tokens)
    dry = subprocess.run([*AETHER, "prepare"], env=env, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 1, dry.stderr
    assert dry.stdout.count("missing:") == n_assets * len(devnet.dexes)
    sent = subprocess.run([*AETHER, "prepare", "--yes"], env=env, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.count("sent 0x") == n_assets * len(devnet.dexes)
    httpx.post(devnet.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []})
    again = subprocess.run([*AETHER, "prepare"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already approved" in again.stdout
