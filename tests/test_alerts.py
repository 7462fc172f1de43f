"""The shipped alerting rules, unit-tested by Prometheus' own ``promtool``.

``docs/observability/aether-alerts.test.yml`` holds the cases (each alert where it
must fire and where it must stay silent, ``AetherSubmittedInShadow`` with a
submission during shadow and with one in live mode). CI installs promtool
(Debian's ``prometheus`` package, from ``.ci/run``); elsewhere these tests skip
and say why.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

OBS = Path(__file__).resolve().parents[1] / "docs" / "observability"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH (Debian: apt-get install --no-install-recommends prometheus; CI's .ci/run does)",
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=OBS, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_alert_rules_are_valid() -> None:
    res = _promtool("check", "rules", "aether-alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_alert_rule_unit_tests_pass() -> None:
    res = _promtool("test", "rules", "aether-alerts.test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@needs_promtool
def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """The pre-fix rule (a plain ``and`` between an unlabelled and a labelled series) must fail them."""
    rules = (OBS / "aether-alerts.yml").read_text()
    fixed = "increase(aether_executor_bundles_submitted_total[5m]) > 0\n            and on(instance, job) (aether_shadow_mode == 1)"
    assert fixed in rules
    (tmp_path / "aether-alerts.yml").write_text(
        rules.replace(fixed, "aether_shadow_mode == 1 and increase(aether_executor_bundles_submitted_total[5m]) > 0")
    )
    (tmp_path / "aether-alerts.test.yml").write_text((OBS / "aether-alerts.test.yml").read_text())
    assert PROMTOOL is not None
    res = subprocess.run([PROMTOOL, "test", "rules", "aether-alerts.test.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    assert "AetherSubmittedInShadow" in res.stdout + res.stderr


def test_every_alert_has_a_unit_test() -> None:
    """No promtool needed: each alert named in the rules appears in the test file."""
    rules = (OBS / "aether-alerts.yml").read_text()
    tests = (OBS / "aether-alerts.test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")]
    assert len(names) >= 6
    for name in names:
        assert f"alertname: {name}" in tests, name
