"""``aether devnet --liquidity-scale N --victim-scale N``: bad values are refused before anything starts.

The deep option itself is exercised by the measured run in
``docs/validation/deep-pools.md``; here only its edges (no anvil needed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aether._errors import ConfigError
from aether.devnet._run import run_devnet


@pytest.mark.parametrize(("kw", "needle"), [
    ({"liquidity_scale": 0}, "--liquidity-scale=0"),
    ({"victim_scale": 0}, "--victim-scale=0"),
    ({"victim_scale": 10_001}, "--victim-scale=10001"),
    ({"liquidity_scale": 2.5}, "--liquidity-scale=2.5"),
])
async def test_bad_scales_are_refused_before_anvil_starts(tmp_path: Path, kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        await run_devnet(port=0, workdir=tmp_path / "wd", **kw)  # type: ignore[arg-type]
    assert not (tmp_path / "wd").exists()  # nothing was created


def test_cli_bad_scale_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "aether.cli", "devnet", "--port", "0", "--workdir", str(tmp_path / "wd"),
                          "--victim-scale", "-3"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == ["aether devnet: --victim-scale=-3: expected a whole number in 1..10000"]
    assert "Traceback" not in res.stderr
