"""Secrets and exposure, checked on every output of real ``aether run`` processes.

Four runs against one devnet, each with the devnet's searcher key and a fresh
builder auth key, both also set *inline* in the environment
(``AETHER_SIGNER_KEY``, ``AETHER_FLASHBOTS_AUTH_KEY``), under ``umask 000``:

* shadow, and live (the auth key loaded and used to sign ``X-Flashbots-Signature``);
* a forced actor panic whose exception message holds the key (tracebacks on
  stderr, exit 70 once the restart intensity is spent);
* a forced exception outside the supervisor altogether (a task of ``aether run``
  itself: logged through the secret filter with its traceback, exit 70; the
  interpreter's last-resort hook is covered by ``test_last_resort_tracebacks_are_scrubbed``).

Every byte they produce is collected: stdout, stderr, every file under the
reports directory and the state file, a metrics exposition scraped mid-run and the
bytes the local builder received. Then the key is searched for in every form
(hex with and without ``0x``, any case, and the raw 32 bytes): it must never be
found. The same runs check that inline keys draw a warning naming the ``*_FILE``
variable, that the metrics server answers on loopback only, and that every
directory aether creates is 0700 and every file 0600 even with ``umask 000``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from aether.config import Settings

from ._harness import AETHER, AetherRun, Devnet, devnet_process, record_figures, run_env

# A panic inside an actor whose message carries the key the way a careless repr would.
PANIC = r"""
import os, sys
import aether.actors._strategy as strategy
key = open(os.environ["AETHER_SIGNER_KEY_FILE"]).read().strip().removeprefix("0x")

async def run(self, *, task_status=None):
    from hexbytes import HexBytes
    raise RuntimeError(f"strategy blew up holding {key} / 0x{key.upper()} / {HexBytes(bytes.fromhex(key))!r}")

strategy.StrategyActor.run = run
from aether.cli import main
sys.exit(main(["run"]))
"""

# An exception that escapes every handler of `aether run` (a task outside the supervisor).
ESCAPE = r"""
import os, sys
import aether.run as run
key = open(os.environ["AETHER_SIGNER_KEY_FILE"]).read().strip().removeprefix("0x")

async def summaries(*args):
    raise RuntimeError(f"summary writer crashed holding 0X{key.upper()} and {key}")

run._write_summaries = summaries
from aether.cli import main
sys.exit(main(["run"]))
"""


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with devnet_process(tmp_path_factory.mktemp("security"), block_time=1.0, tx_rate=30.0, seed=9) as d:
        yield d


def _forms(key_hex: str) -> tuple[list[str], bytes]:
    k = key_hex.strip().lower().removeprefix("0x")
    assert len(k) == 64
    return [k, "0x" + k, k.upper(), "0X" + k.upper(), "0x" + k.upper()], bytes.fromhex(k)


def _leaks(blob: bytes, key_hex: str) -> list[str]:
    """Every form of the key found in ``blob`` (case-insensitive hex, or the raw bytes)."""
    hexes, raw = _forms(key_hex)
    low = blob.lower()
    found = [h for h in hexes if h.lower().encode() in low]
    if raw in blob:
        found.append("raw bytes")
    return found


async def _start(env: dict[str, str], log_dir: Path, argv: list[str]) -> AetherRun:
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "run.out", "wb") as out, open(log_dir / "run.err", "wb") as err:
        proc = await trio.lowlevel.open_process(argv, env=env, stdout=out, stderr=err, umask=0)
    return AetherRun(proc=proc, reports=Path(env["AETHER_REPORTS_DIR"]), log_dir=log_dir, started=time.monotonic())


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def _port_refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect((host, port))
        except OSError:
            return True
    return False


def _private_modes(root: Path, created_from: Path) -> list[str]:
    """Directories aether created (``created_from`` and below) not 0700, files not 0600."""
    bad = []
    for p in [created_from, *created_from.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        want = 0o700 if p.is_dir() else 0o600
        if mode != want:
            bad.append(f"{p.relative_to(root)}: {mode:o}")
    return bad


@pytest.mark.devnet
async def test_keys_never_leave_the_process_and_everything_written_is_private(devnet: Devnet, tmp_path: Path) -> None:
    signer_hex = Path(devnet.env["AETHER_SIGNER_KEY_FILE"]).read_text().strip()
    auth_hex = os.urandom(32).hex()
    auth_file = tmp_path / "auth.key"
    auth_file.write_text(auth_hex)
    auth_file.chmod(0o600)
    inline = {"AETHER_SIGNER_KEY": "0x" + signer_hex.removeprefix("0x"), "AETHER_FLASHBOTS_AUTH_KEY": auth_hex.upper()}
    outputs: dict[str, bytes] = {}
    record_before = devnet.record_size()
    runs: list[tuple[str, int]] = []
    created_roots: list[tuple[Path, Path]] = []

    for name, shadow, argv, want in [
        ("shadow", True, [*AETHER, "run", "--duration", "3"], 0),
        ("live", False, [*AETHER, "run", "--duration", "3"], 0),
        ("panic", True, [AETHER[0], "-c", PANIC], 70),
        ("escape", True, [AETHER[0], "-c", ESCAPE], 70),
    ]:
        base = tmp_path / name
        # Nested, not yet existing: aether creates every level (checked for 0700 below).
        reports = base / "made" / "by" / "aether" / "reports"
        state = base / "state-made" / "by-aether" / "risk-state.json"
        # (run_env writes a live auth key next to the reports dir it is given: not under ``made``.)
        env = run_env(devnet.env, base / "harness", shadow=shadow, AETHER_REPORTS_DIR=str(reports),
                      AETHER_STATE_FILE=str(state),
                      AETHER_FLASHBOTS_AUTH_KEY_FILE=str(auth_file), **inline)
        run = await _start(env, base / "log", argv)
        try:
            if name in ("shadow", "live"):
                run_json = await run.wait_for_file("run.json")
                url = json.loads(run_json.read_text())["metrics_url"]
                host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
                assert host == "127.0.0.1"
                ip = _non_loopback_ip()
                if ip is not None:
                    assert _port_refused(ip, int(port)), f"metrics answer on {ip}:{port}"
                samples = await run.metrics()
                assert samples  # the scrape worked on loopback
                import httpx

                async with httpx.AsyncClient(timeout=5.0) as client:
                    outputs[f"{name}: metrics"] = (await client.get(url)).content
            code = await run.wait(timeout=60)
        finally:
            await run.aclose()
        runs.append((name, code))
        assert code == want, f"{name}: exit {code}\n{run.stderr()[-3000:]}"
        outputs[f"{name}: stdout"] = (base / "log" / "run.out").read_bytes()
        outputs[f"{name}: stderr"] = err = (base / "log" / "run.err").read_bytes()
        for p in [*reports.rglob("*"), *state.parent.rglob("*")]:
            if p.is_file():
                outputs[f"{name}: {p.relative_to(base)}"] = p.read_bytes()
        created_roots += [(base, base / "made"), (base, base / "state-made")]

        text = err.decode(errors="replace")
        # Inline keys are ignored, with a warning naming the file variable (and never the value).
        assert "AETHER_SIGNER_KEY is set in the environment and ignored" in text and "AETHER_SIGNER_KEY_FILE" in text
        assert "AETHER_FLASHBOTS_AUTH_KEY_FILE" in text
        if name == "panic":
            assert "panicked" in text and "Traceback" in text and "<redacted>" in text
        if name == "escape":
            assert "unexpected failure outside the actors" in text and "Traceback" in text and "<redacted>" in text

    outputs["live: bytes received by the builder"] = devnet.record.read_bytes()[record_before:]
    assert outputs["live: bytes received by the builder"]  # the live run did talk to the builder

    leaks = {f"{where} [{which}]": forms for where, blob in outputs.items()
             for which, key in (("signer", signer_hex), ("auth", auth_hex)) if (forms := _leaks(blob, key))}
    assert leaks == {}
    bad_modes = [m for base, root in created_roots if root.exists() for m in _private_modes(base, root)]
    assert bad_modes == []
    record_figures(
        "secrets_and_modes", injected=len(runs), survived=sum(1 for _ in runs), outputs_scanned=len(outputs),
        bytes_scanned=sum(len(b) for b in outputs.values()), key_hits=len(leaks), bad_modes=len(bad_modes),
        exits=dict(runs),
    )


async def test_metrics_default_to_loopback_and_inline_keys_warn_toward_the_file_variable() -> None:
    s = Settings.from_env({"AETHER_SIGNER_KEY": "0x" + "ab" * 32, "AETHER_FLASHBOTS_AUTH_KEY": "cd" * 32})
    assert s.metrics_addr[0] == "127.0.0.1"
    text = "\n".join(s.warnings)
    assert "AETHER_SIGNER_KEY_FILE" in text and "AETHER_FLASHBOTS_AUTH_KEY_FILE" in text
    assert "ab" * 32 not in text.lower() and "cd" * 32 not in text.lower()


def test_last_resort_tracebacks_are_scrubbed(capfd: pytest.CaptureFixture[str]) -> None:
    import sys
    import threading

    from aether._log import configure_logging, register_secret

    key = os.urandom(32).hex()
    saved = sys.excepthook, threading.excepthook
    try:
        configure_logging()
        register_secret("0x" + key)

        def boom() -> Any:
            raise RuntimeError(f"holding {key.upper()}")

        try:
            boom()
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
        t = threading.Thread(target=boom, name="worker")
        t.start()
        t.join()
    finally:
        sys.excepthook, threading.excepthook = saved
    err = capfd.readouterr().err
    assert err.count("<redacted>") == 2 and "uncaught exception in thread worker" in err
    assert key not in err.lower()
