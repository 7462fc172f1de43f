"""The package type-checks: mypy, with the ``[tool.mypy]`` settings in pyproject.toml, on
``aether/`` and ``supervisors/``.

Run by the suite so CI runs it: a typed edge (a channel's message type, an actor's
collaborator) that stops matching the code fails here, not in production. The cache
(``.mypy_cache/``, git-ignored) makes a rerun take well under a second; a cold run takes
about ten seconds on one core.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean_on_the_package() -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extra; not installed here")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mypy found problems:\n{report}"
    assert "Success: no issues found" in report, report
