"""Shared helpers for the fault suite: real ``aether devnet`` / ``aether run`` processes, run-dir checks.

Every fault test has the same shape: start a devnet, start ``aether run`` against it
(possibly through a fault proxy), inject one fault, let the run stop, then check the
run directory with :func:`inspect_run` and :func:`assert_run_ok`. Those checks are the
guarantees of the reliability issue, written once:

* every built bundle is accounted for: in shadow ``built == shadow_blocked + risk
  rejections``; in live ``built == submitted + stale + not_validated + not_recorded + risk rejections``
  (the last three read from the dumps' ``outcome``, submitted also from the metric);
* one dump per built bundle, and every dump parses as complete JSON carrying the
  seed's fields (a truncated or half-written file counts as *partial*);
* in shadow, the devnet's recording builder received not one byte (its record file
  has the same size before and after).

The public API (stable; ``test_process_faults.py`` imports it):

``AETHER``, ``SEED_FIELDS``, ``read_env(path)``, ``Devnet``, ``devnet_process(root, ...)``,
``run_env(devnet_env, reports, ...)``, ``popen_run(env, ...)``, ``run_aether(env, ...)``,
``AetherRun`` / ``start_run(env, ...)`` (async, trio), ``find_run_dir(reports)``,
``RunCheck`` / ``inspect_run(run_dir)``, ``assert_run_ok(check, ...)``,
``parse_metrics(text)``, ``metric(samples, name, **labels)``, ``record_figures(fault, **figures)``.

Waiting for an external process is the only place the suite polls: a bounded loop
on a file or an exit code, never a bare sleep that hopes something happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from aether.messages import BLOCK_ARB_GATES, GATES, RISK_ERROR

__all__ = [
    "AETHER",
    "SEED_FIELDS",
    "AetherRun",
    "Devnet",
    "RunCheck",
    "assert_run_ok",
    "devnet_process",
    "find_run_dir",
    "inspect_run",
    "metric",
    "parse_metrics",
    "popen_run",
    "read_env",
    "record_figures",
    "risk_rejected",
    "run_aether",
    "run_env",
    "start_run",
]

AETHER = [sys.executable, "-m", "aether.cli"]

#: The seed's fields: a dump lacking any of them counts as partial.
SEED_FIELDS = frozenset({
    "arb_id", "source", "victim_tx_hash", "target_block", "built_at", "envelope", "expected_gross_profit_wei",
    "expected_net_profit_wei", "tip_share_bps", "gas_used", "base_fee_wei", "priority_fee_wei",
    "flashloan_provider", "flashloan_amount", "risk_decisions",
})

#: Dump outcomes that count as "accounted for".
LIVE_OUTCOMES = ("submitted", "stale", "not_validated", "not_recorded", "stopped", "rejected")
SHADOW_OUTCOMES = ("shadow_blocked", "rejected")


def read_env(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a devnet env file."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def _stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGINT, bounded wait, then SIGKILL: only the process we started, by its pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@attrs.frozen
class Devnet:
    """A running ``aether devnet``: its env file's values and its work directory."""

    env: dict[str, str]
    workdir: Path
    pid: int

    @property
    def record(self) -> Path:
        """The local builder's record: one JSON line per request it received."""
        return self.workdir / "builder-record.jsonl"

    def record_size(self) -> int:
        return self.record.stat().st_size if self.record.exists() else 0

    def record_lines(self, start: int = 0) -> list[dict[str, Any]]:
        """The recorded requests from byte offset ``start`` on."""
        if not self.record.exists():
            return []
        data = self.record.read_bytes()[start:]
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    @property
    def builder_url(self) -> str:
        """The local builder's URL (the devnet writes ``local=<url>``)."""
        raw = self.env.get("AETHER_BUILDER_URLS", "")
        return raw.partition("=")[2] if "=" in raw else raw


@contextlib.contextmanager
def devnet_process(
    root: Path, *, block_time: float = 1.0, tx_rate: float = 25.0, seed: int = 7, timeout: float = 60.0,
    competitors: str = "off",
) -> Iterator[Devnet]:
    """Start ``aether devnet`` (free ports) under ``root``; stop it (SIGINT, then SIGKILL) on exit.

    ``competitors`` is ``aether devnet --competitors`` (off here unless a test asks: the
    other tests' figures assume aether is the only searcher).
    """
    root.mkdir(parents=True, exist_ok=True)
    env_file = root / "devnet.env"
    log = open(root / "devnet.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [*AETHER, "devnet", "--env-file", str(env_file), "--port", "0", "--workdir", str(root / "chain"),
         "--block-time", str(block_time), "--tx-rate", str(tx_rate), "--seed", str(seed),
         "--competitors", competitors],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not env_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"devnet did not start: {(root / 'devnet.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield Devnet(env=read_env(env_file), workdir=root / "chain", pid=proc.pid)
    finally:
        _stop(proc)
        log.close()


def run_env(
    devnet_env: Mapping[str, str],
    reports: Path,
    *,
    shadow: bool = True,
    mempool: bool = True,
    **overrides: str,
) -> dict[str, str]:
    """The full environment of an ``aether run`` against a devnet.

    Inherits the test's environment minus every ``AETHER_*`` variable, adds the
    devnet's values, metrics on a free loopback port, the reports dir and the
    risk state file under ``reports``' parent, and in live mode a fresh builder
    auth key (``<reports>.auth.key``, 0600). ``overrides`` win (an empty string
    removes the variable).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_") and k != "MEMPOOL_TRACKING"}
    env.update(devnet_env)
    env.update({
        "AETHER_SHADOW": "1" if shadow else "0",
        "MEMPOOL_TRACKING": "1" if mempool else "0",
        "AETHER_REPORTS_DIR": str(reports),
        "AETHER_METRICS_ADDR": "127.0.0.1:0",
    })
    if not shadow:
        auth = reports.with_name(reports.name + ".auth.key")
        if not auth.exists():
            auth.parent.mkdir(parents=True, exist_ok=True)
            auth.write_text(os.urandom(32).hex())
            auth.chmod(0o600)
        env["AETHER_FLASHBOTS_AUTH_KEY_FILE"] = str(auth)
    for k, v in overrides.items():
        if v == "":
            env.pop(k, None)
        else:
            env[k] = v
    return env


def popen_run(env: Mapping[str, str], *, duration: float | None = None, log_dir: Path | None = None) -> subprocess.Popen[Any]:
    """Start ``aether run`` (sync API); stdout/stderr go to ``log_dir/run.out|err`` (or pipes)."""
    cmd = [*AETHER, "run"] + ([] if duration is None else ["--duration", str(duration)])
    if log_dir is None:
        return subprocess.Popen(cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "run.out", "w") as out, open(log_dir / "run.err", "w") as err:
        return subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=err, text=True)


def run_aether(env: Mapping[str, str], duration: float, *, grace: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``aether run --duration`` to completion (sync API)."""
    return subprocess.run([*AETHER, "run", "--duration", str(duration)], env=dict(env), capture_output=True,
                          text=True, timeout=duration + grace)


def find_run_dir(reports: Path) -> Path:
    """The single run directory under ``reports`` (``<mode>_mempool_<ts>``)."""
    dirs = [p for p in reports.iterdir() if p.is_dir() and "_mempool_" in p.name]
    if len(dirs) != 1:
        raise AssertionError(f"expected one run directory under {reports}, found {[d.name for d in dirs]}")
    return dirs[0]


@attrs.define
class AetherRun:
    """A running ``aether run`` driven from a trio test (``await start_run(...)``)."""

    proc: trio.Process
    reports: Path
    log_dir: Path
    started: float

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def stdout(self) -> str:
        return (self.log_dir / "run.out").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.log_dir / "run.err").read_text(errors="replace")

    def run_dir(self) -> Path:
        return find_run_dir(self.reports)

    async def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit; on timeout SIGKILL it and fail."""
        with trio.move_on_after(timeout) as scope:
            await self.proc.wait()
        if scope.cancelled_caught:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"aether run did not exit within {timeout}s:\n{self.stderr()[-3000:]}")
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def wait_for_file(self, name: str, timeout: float = 30.0) -> Path:
        """Bounded poll for ``<run dir>/<name>`` (run.json appears once the node answered)."""
        with trio.fail_after(timeout):
            while True:
                if self.proc.returncode is not None or self.proc.poll() is not None:
                    raise AssertionError(f"aether run exited early ({self.proc.returncode}):\n{self.stderr()[-3000:]}")
                with contextlib.suppress(OSError, AssertionError):
                    path = self.run_dir() / name
                    if path.exists():
                        return path
                await trio.sleep(0.05)

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Scrape the run's Prometheus endpoint (its URL is in run.json)."""
        import httpx

        url = json.loads((await self.wait_for_file("run.json")).read_text())["metrics_url"]
        async with httpx.AsyncClient(timeout=5.0) as client:
            resp = await client.get(url)
        return parse_metrics(resp.text)

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (a clean stop), then wait."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        return await self.wait(timeout)

    async def aclose(self) -> None:
        """Make sure the process is gone (SIGKILL if it still runs)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with trio.CancelScope(shield=True):
            await self.proc.wait()


async def start_run(env: Mapping[str, str], *, duration: float | None, log_dir: Path) -> AetherRun:
    """Start ``aether run`` from trio; output goes to ``log_dir/run.out`` and ``run.err``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [*AETHER, "run"] + ([] if duration is None else ["--duration", str(duration)])
    with open(log_dir / "run.out", "wb") as out, open(log_dir / "run.err", "wb") as err:
        proc = await trio.lowlevel.open_process(cmd, env=dict(env), stdout=out, stderr=err)
    return AetherRun(proc=proc, reports=Path(env["AETHER_REPORTS_DIR"]), log_dir=log_dir, started=time.monotonic())


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition -> {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def risk_rejected(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], **labels: str) -> float:
    """Risk rejections of both sources (the mempool's seed counter plus the block-driven one)."""
    return (metric(samples, "aether_mempool_risk_rejected_total", **labels)
            + metric(samples, "aether_block_arb_risk_rejected_total", **labels))


def metric(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@attrs.frozen
class RunCheck:
    """What a run directory says about accounting, dumps and duplicates. No judgement: see assert_run_ok."""

    run_dir: Path
    mode: str
    summary: dict[str, Any] | None
    built: int
    shadow_blocked: int
    submitted: int
    risk_rejected: int
    dumps: int
    outcomes: dict[str, int]
    partial_dumps: tuple[str, ...]
    tmp_leftovers: tuple[str, ...]
    duplicates: tuple[tuple[int, str], ...]
    panics: int
    dump_errors: int

    @property
    def accounted(self) -> int:
        """Bundles with a known fate: the summary's counters (shadow) or the dumps' outcomes (live)."""
        if self.mode == "shadow":
            return self.shadow_blocked + self.risk_rejected
        return sum(self.outcomes.get(o, 0) for o in LIVE_OUTCOMES)

    def figures(self) -> dict[str, int]:
        """The docs/reliability.md columns for this run."""
        return {"built": self.built, "accounted": self.accounted, "dumps": self.dumps,
                "partial_dumps": len(self.partial_dumps), "duplicates": len(self.duplicates)}


def _dump_is_complete(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not SEED_FIELDS <= doc.keys():
        return None
    return doc


def inspect_run(run_dir: Path) -> RunCheck:
    """Read ``summary.json`` (if any) and every dump of a run directory."""
    mode = "shadow" if run_dir.name.startswith("shadow_") else "live"
    summary: dict[str, Any] | None = None
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads((run_dir / "summary.json").read_text())
    sources = (summary or {}).get("sources", {})
    bundles = run_dir / "bundles"
    files = sorted(bundles.glob("*.json")) if bundles.exists() else []
    partial: list[str] = []
    outcomes: Counter[str] = Counter()
    passed_keys: Counter[tuple[int, str]] = Counter()
    for f in files:
        doc = _dump_is_complete(f)
        if doc is None:
            partial.append(f.name)
            continue
        outcomes[str(doc.get("outcome"))] += 1
        if doc.get("outcome") != "rejected" and doc.get("victim_tx_hash"):
            passed_keys[(int(doc["target_block"]), str(doc["victim_tx_hash"]))] += 1
    tmp = tuple(sorted(p.name for p in bundles.iterdir() if p.name.endswith(".tmp"))) if bundles.exists() else ()
    return RunCheck(
        run_dir=run_dir,
        mode=mode,
        summary=summary,
        built=sum(int(s.get("built", 0)) for s in sources.values()),
        shadow_blocked=sum(int(s.get("shadow_blocked", 0)) for s in sources.values()),
        submitted=sum(int(s.get("submitted", 0)) for s in sources.values()),
        risk_rejected=sum(int((summary or {}).get("risk_rejected", {}).get(g, 0)) for g in (*GATES, RISK_ERROR))
        + sum(int((summary or {}).get("block_arb_risk_rejected", {}).get(g, 0)) for g in (*BLOCK_ARB_GATES, RISK_ERROR)),
        dumps=len(files),
        outcomes=dict(outcomes),
        partial_dumps=tuple(partial),
        tmp_leftovers=tmp,
        duplicates=tuple(sorted(k for k, n in passed_keys.items() if n > 1)),
        panics=int((summary or {}).get("panics", 0)),
        dump_errors=int((summary or {}).get("dump_errors", 0)),
    )


def assert_run_ok(
    check: RunCheck,
    *,
    record_before: int | None = None,
    record_after: int | None = None,
    final: bool = True,
    allow_panics: bool = False,
) -> None:
    """Fail with every broken guarantee listed (not just the first).

    Args:
        check: from :func:`inspect_run`.
        record_before / record_after: the recording builder's record size around a
            shadow run; they must be equal (0 bytes to the builder in shadow).
        final: require the summary written at a clean stop (``final: true``). A run
            killed with SIGKILL has only the periodic summary: pass ``final=False``
            and only the dump checks and ``dumps >= accounted`` apply.
        allow_panics: an actor exception that escaped is a failure unless allowed.
    """
    problems: list[str] = []
    if check.partial_dumps:
        problems.append(f"partial dumps: {list(check.partial_dumps)}")
    if check.duplicates:
        problems.append(f"two bundles passed the gates for the same (target block, victim): {list(check.duplicates)}")
    if check.summary is None:
        problems.append("no summary.json")
    elif final:
        if check.summary.get("final") is not True:
            problems.append("summary.json is not the final one (the run did not stop cleanly)")
        if check.dumps != check.built:
            problems.append(f"{check.dumps} dumps for {check.built} built bundles (one dump per built bundle)")
        if check.mode == "shadow":
            if check.accounted != check.built:
                problems.append(f"built {check.built} != shadow_blocked {check.shadow_blocked} + risk rejected "
                                f"{check.risk_rejected}")
            if check.submitted:
                problems.append(f"{check.submitted} bundles submitted in shadow mode")
            if check.outcomes.get("shadow_blocked", 0) != check.shadow_blocked:
                problems.append(f"dumps say {check.outcomes.get('shadow_blocked', 0)} shadow_blocked, summary "
                                f"{check.shadow_blocked}")
        else:
            if check.accounted != check.built:
                problems.append(f"built {check.built} != accounted {check.accounted} (dump outcomes {check.outcomes})")
            if check.outcomes.get("submitted", 0) != check.submitted:
                problems.append(f"dumps say {check.outcomes.get('submitted', 0)} submitted, summary {check.submitted}")
        if check.outcomes.get("rejected", 0) != check.risk_rejected:
            problems.append(f"dumps say {check.outcomes.get('rejected', 0)} rejected, summary {check.risk_rejected}")
        unknown = set(check.outcomes) - set(SHADOW_OUTCOMES if check.mode == "shadow" else LIVE_OUTCOMES)
        if unknown:
            problems.append(f"dumps with unknown outcomes: {sorted(unknown)}")
        if check.dump_errors:
            problems.append(f"{check.dump_errors} dump write errors")
    else:
        if check.dumps + len(check.partial_dumps) < check.accounted:
            problems.append(f"fewer dumps ({check.dumps}) than bundles the last summary accounted for "
                            f"({check.accounted})")
    if not allow_panics and check.panics:
        problems.append(f"{check.panics} actor panics")
    if record_before is not None and record_after is not None and record_after != record_before:
        problems.append(f"the recording builder received {record_after - record_before} bytes in shadow mode")
    if problems:
        raise AssertionError(f"{check.run_dir.name}: " + "; ".join(problems))


def record_figures(fault: str, **figures: Any) -> None:
    """Print one fault's figures and, when ``AETHER_FAULT_FIGURES`` names a file, append them as a JSON line.

    docs/reliability.md is filled from that file after a run of the suite
    (``AETHER_FAULT_FIGURES=/tmp/figures.jsonl pytest tests/faults -s``). Columns:
    faults injected, survived, bundles built, bundles accounted for, dumps partial,
    bytes to the builder in shadow, plus anything fault-specific.
    """
    line = json.dumps({"fault": fault, **figures}, sort_keys=True, default=str)
    print(f"\n[fault figures] {line}")
    target = os.environ.get("AETHER_FAULT_FIGURES")
    if target:
        with open(target, "a") as f:
            f.write(line + "\n")
