"""The structural shadow guarantee, checked fast (no anvil, no network).

1. Importing and building the shadow tree (every actor constructed) leaves
   ``aether.submit`` unloaded. It runs in a fresh interpreter so that other
   tests' imports cannot pollute ``sys.modules``; the same probe building the
   live tree *does* load it, so the check can fail.
2. ``build_live_tree`` raises :class:`ShadowViolation` whenever shadow is on,
   before building anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from aether._errors import ShadowViolation
from aether.chain import RpcClient
from aether.config import Settings
from aether.dumps import RunDir
from aether.metrics import Metrics
from supervisors._tree import Runtime

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
from pathlib import Path
import httpx
from eth_account import Account

mode, tmp = sys.argv[1], Path(sys.argv[2])
from aether.chain import RpcClient
from aether.config import Settings
from aether.dumps import RunDir
from aether.metrics import Metrics
from supervisors._tree import Runtime

shadow = mode == "shadow"
env = {"AETHER_SHADOW": "1" if shadow else "0", "AETHER_REPORTS_DIR": str(tmp / "reports"), "MEMPOOL_TRACKING": "1"}
settings = Settings.from_env(env)
def refuse(request):  # no byte leaves this probe
    raise AssertionError("network used while building a tree")
rt = Runtime(settings=settings, metrics=Metrics(), rpc=RpcClient("http://127.0.0.1:9", transport=httpx.MockTransport(refuse)),
             chain_id=31337, signer=Account.create(), run_dir=RunDir(settings.reports_dir, shadow=shadow))
if shadow:
    from supervisors.shadow import build_shadow_tree
    specs = build_shadow_tree(rt)
else:
    from supervisors.live import build_live_tree
    specs = build_live_tree(rt, auth=Account.create())
import trio
async def construct():  # construct every actor, as the supervisor does (inside trio: risk reads trio's clock)
    return {s.name: type(s.factory()).__name__ for s in specs}
actors = trio.run(construct)
print(json.dumps({"actors": actors, "submit_modules": sorted(m for m in sys.modules if m.startswith("aether.submit"))}))
"""


def _probe(mode: str, tmp: Path) -> dict[str, object]:
    res = subprocess.run([sys.executable, "-c", PROBE, mode, str(tmp)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_building_the_shadow_tree_leaves_aether_submit_unloaded(tmp_path: Path) -> None:
    out = _probe("shadow", tmp_path)
    assert out["submit_modules"] == []
    actors = out["actors"]
    assert isinstance(actors, dict)
    assert "shadow_sink" in actors and "submit" not in actors
    assert {"heads", "intake", "strategy", "validate", "build", "risk"} <= actors.keys()


def test_the_probe_sees_aether_submit_when_the_live_tree_is_built(tmp_path: Path) -> None:
    out = _probe("live", tmp_path)
    assert "aether.submit" in out["submit_modules"]  # the check above is able to fail
    actors = out["actors"]
    assert isinstance(actors, dict) and "submit" in actors and "shadow_sink" not in actors


@pytest.mark.parametrize("env", [{}, {"AETHER_SHADOW": "1"}])
def test_build_live_tree_refuses_in_shadow_mode(tmp_path: Path, env: dict[str, str]) -> None:
    from supervisors.live import build_live_tree

    settings = Settings.from_env({**env, "AETHER_REPORTS_DIR": str(tmp_path)})
    assert settings.shadow is True

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError("network used")

    metrics = Metrics()
    rt = Runtime(settings=settings, metrics=metrics, rpc=RpcClient("http://127.0.0.1:9", transport=httpx.MockTransport(refuse)),
                 chain_id=31337, signer=Account.create(), run_dir=RunDir(tmp_path, shadow=True))
    with pytest.raises(ShadowViolation, match="refusing to build the live tree"):
        build_live_tree(rt, auth=Account.create())
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # nothing was built, no run directory
    assert metrics.value("aether_executor_bundles_submitted_total", source="mempool_backrun") == 0
