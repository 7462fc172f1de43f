"""A hostile or broken node, on loopback: bounded I/O and every stop path.

Two layers:

* the JSON-RPC client itself against a real HTTP server on 127.0.0.1 that answers
  200 MB bodies, one byte per second, garbage or nothing: each request ends within
  its total deadline, as a counted, typed node error, and the client stays usable;
* ``aether run`` as a process against the same servers: the node failures end in
  exit 3 with one line and a summary naming the failure, its peak RSS (``wait4``)
  (VmHWM) stays bounded for the 200 MB body, a node that goes silent or sends only
  malformed heads makes it exit 3 after the configured grace, and every stop signal
  (SIGINT, SIGTERM, SIGHUP, twice) before the pipeline is up ends in a summary and exit 0.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from aether._errors import BadNodeData, NodeErrorKind, NodeTimeout, ResponseTooLarge
from aether.chain import RpcClient
from faults._harness import AETHER, find_run_dir, record_figures, start_run
from faults._hostile import HUGE_BYTES, Mode, hostile_rpc, ws_node

MiB = 1024 * 1024


# --------------------------------------------------------------------------- the client


@pytest.mark.parametrize(
    ("mode", "error", "kind"),
    [
        (Mode.HUGE, ResponseTooLarge, NodeErrorKind.TOO_LARGE),
        (Mode.HUGE_DECLARED, ResponseTooLarge, NodeErrorKind.TOO_LARGE),
        (Mode.TRICKLE, NodeTimeout, NodeErrorKind.TIMEOUT),
        (Mode.GARBAGE, BadNodeData, NodeErrorKind.BAD_DATA),
        (Mode.SILENT, NodeTimeout, NodeErrorKind.TIMEOUT),
    ],
)
async def test_each_hostile_answer_is_a_counted_node_error_within_the_deadline(
    mode: Mode, error: type[Exception], kind: NodeErrorKind
) -> None:
    seen: list[NodeErrorKind] = []
    deadline = 0.8
    with hostile_rpc(Mode.OK, eth_getBalance=mode) as node:
        rpc = RpcClient(node.url, timeout=deadline, max_response_bytes=1 * MiB, on_error=seen.append)
        try:
            t0 = time.monotonic()
            with pytest.raises(error):
                await rpc.call("eth_getBalance", ["0x" + "11" * 20, "latest"])
            elapsed = time.monotonic() - t0
            # the same client still works: a breach is one failed request, not a broken client
            assert await rpc.call("eth_chainId") == "0x7a69"
            batch = await rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])
        finally:
            await rpc.aclose()
        sent = node.bytes_sent
    assert batch == ["0x7a69", "0x10"]
    assert seen == [kind]
    stats = rpc.statistics()
    assert (stats.too_large, stats.timeouts, stats.bad_data) == (
        int(kind is NodeErrorKind.TOO_LARGE), int(kind is NodeErrorKind.TIMEOUT), int(kind is NodeErrorKind.BAD_DATA))
    assert elapsed < deadline + 0.7, f"{mode}: {elapsed:.2f}s for a {deadline}s deadline"
    if mode is Mode.HUGE:
        # reading stopped at the cap: what the server pushed is the cap plus socket buffers, not 200 MB
        assert sent < 1 * MiB + 16 * MiB, sent
    record_figures(f"rpc client: {mode}", elapsed_s=round(elapsed, 3), deadline_s=deadline, error=error.__name__,
                   counted=str(kind), server_bytes_sent=sent)


async def test_a_breach_in_a_batch_fails_the_whole_batch_closed() -> None:
    with hostile_rpc(Mode.OK, eth_call=Mode.HUGE) as node:
        rpc = RpcClient(node.url, timeout=2.0, max_response_bytes=256 * 1024)
        try:
            with pytest.raises(ResponseTooLarge):
                await rpc.batch([("eth_getBalance", ["0x" + "11" * 20, "0x1"]), ("eth_call", [{}, "0x1"])])
        finally:
            await rpc.aclose()
    assert issubclass(ResponseTooLarge, BadNodeData) and rpc.statistics().too_large == 1


# --------------------------------------------------------------------------- aether run


def _env(tmp_path: Path, rpc_url: str, ws_url: str = "ws://127.0.0.1:9", **extra: str) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    key = tmp_path / "signer.key"
    if not key.exists():
        key.write_text(secrets.token_hex(32))
        key.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_") and k != "MEMPOOL_TRACKING"}
    env.update({
        "AETHER_SIGNER_KEY_FILE": str(key), "AETHER_REPORTS_DIR": str(tmp_path / "reports"),
        "AETHER_METRICS_ADDR": "127.0.0.1:0", "AETHER_RPC_URL": rpc_url, "AETHER_WS_URL": ws_url,
        "MEMPOOL_TRACKING": "0", "AETHER_RPC_TIMEOUT_MS": "1000",
    })
    env.update(extra)
    return env


#: ``aether run`` exactly as the console script runs it, recording its own peak RSS at exit.
#: VmHWM of /proc/self/status belongs to the process's memory map, which exec replaces;
#: ``ru_maxrss`` (getrusage, wait4) would instead carry over the RSS of the forked pytest
#: process (Linux keeps the larger of the two across exec), hiding aether's own peak.
_MEASURED_RUN = """
import atexit, os, sys
def _hwm():
    with open('/proc/self/status') as f:
        kib = next(int(l.split()[1]) for l in f if l.startswith('VmHWM:'))
    with open(os.environ['HWM_FILE'], 'w') as out:
        out.write(str(kib * 1024))
atexit.register(_hwm)
from aether.cli import main
sys.exit(main(['run']))
"""


def _run(env: dict[str, str], timeout: float = 60.0) -> tuple[int, str, str, float, int]:
    """Run ``aether run`` to its end: (exit code, stdout, stderr, seconds, its peak RSS in bytes)."""
    hwm = Path(env["AETHER_REPORTS_DIR"]).with_name("hwm")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", _MEASURED_RUN], env={**env, "HWM_FILE": str(hwm)},
                         capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    return res.returncode, res.stdout, res.stderr, elapsed, int(hwm.read_text())


def _summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((find_run_dir(tmp_path / "reports") / "summary.json").read_text())


@pytest.mark.parametrize("mode", [Mode.HUGE, Mode.HUGE_DECLARED, Mode.TRICKLE, Mode.GARBAGE, Mode.SILENT])
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc")
def test_aether_run_against_a_hostile_rpc_exits_3_in_time_with_bounded_memory(tmp_path: Path, mode: Mode) -> None:
    with hostile_rpc(mode) as node:
        code, out, err, elapsed, rss = _run(_env(tmp_path, node.url))
        sent = node.bytes_sent
    lines = [ln for ln in err.splitlines() if ln.startswith("aether: error:")]
    assert code == 3, err
    assert "Traceback" not in err and len(lines) == 1 and "AETHER_RPC_URL" in lines[0], err
    summary = _summary(tmp_path)
    assert summary["final"] is True and summary["exit_code"] == 3
    kind = {Mode.HUGE: "too_large", Mode.HUGE_DECLARED: "too_large", Mode.TRICKLE: "timeout",
            Mode.GARBAGE: "bad_data", Mode.SILENT: "timeout"}[mode]
    assert summary["node_errors"][kind] == 1, summary["node_errors"]
    # 1 s deadline; the rest is interpreter start-up and imports on a loaded machine
    assert elapsed < 20
    # Peak RSS of the whole process (Python, trio, httpx, eth-account, prometheus) with the
    # default 16 MiB cap: the 200 MB body must not be buffered.
    assert rss < 100 * MiB, rss
    if mode is Mode.HUGE:
        assert sent < HUGE_BYTES // 4
    record_figures(f"aether run vs rpc {mode}", exit_code=code, seconds=round(elapsed, 2), peak_rss_mib=round(rss / MiB, 1),
                   server_bytes_sent=sent, counted=kind)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc")
def test_peak_rss_with_a_200mb_body_is_bounded_by_the_cap(tmp_path: Path) -> None:
    """The bound, measured in one run: peak RSS against a 200 MB body, against a small
    garbage answer, and (to show the measurement sees the buffer at all) against the
    200 MB body with the cap raised to 96 MiB: the extra memory follows the cap."""
    runs = {"small": (Mode.GARBAGE, {}), "huge_default_cap": (Mode.HUGE, {}),
            # a long deadline here, so that the read reaches the raised cap instead of timing out first
            "huge_cap_96mib": (Mode.HUGE, {"AETHER_RPC_MAX_RESPONSE_BYTES": str(96 * MiB),
                                           "AETHER_RPC_TIMEOUT_MS": "60000"})}
    peaks = {}
    for name, (mode, extra_env) in runs.items():
        with hostile_rpc(mode) as node:
            code, _out, err, _elapsed, rss = _run(_env(tmp_path / name, node.url, **extra_env))
        assert code == 3, err
        peaks[name] = rss
    extra = peaks["huge_default_cap"] - peaks["small"]
    assert extra < 16 * MiB + 8 * MiB, peaks  # the default cap (16 MiB) plus the last chunk and slack
    assert peaks["huge_cap_96mib"] - peaks["small"] > 64 * MiB, peaks  # the measurement does see a big buffer
    record_figures("200 MB body: RSS bound", **{f"peak_rss_{k}_mib": round(v / MiB, 1) for k, v in peaks.items()},
                   extra_default_cap_mib=round(extra / MiB, 1))


@pytest.mark.parametrize(
    ("signals", "phase"),
    [
        ((signal.SIGHUP,), "ws_handshake"),
        ((signal.SIGTERM,), "ws_handshake"),
        ((signal.SIGINT,), "ws_handshake"),
        ((signal.SIGTERM, signal.SIGTERM), "ws_handshake"),
        ((signal.SIGHUP, signal.SIGINT), "ws_handshake"),
        ((signal.SIGHUP,), "rpc_silent"),
        ((signal.SIGTERM,), "rpc_silent"),
    ],
)
async def test_a_stop_before_the_pipeline_is_up_ends_with_a_summary_and_exit_0(
    tmp_path: Path, signals: tuple[signal.Signals, ...], phase: str
) -> None:
    rpc_mode = Mode.SILENT if phase == "rpc_silent" else Mode.OK
    with hostile_rpc(rpc_mode) as rpc, hostile_rpc(Mode.SILENT) as silent_ws:
        ws_url = silent_ws.url.replace("http://", "ws://")  # the handshake is read and never answered
        env = _env(tmp_path, rpc.url, ws_url, AETHER_RPC_TIMEOUT_MS="30000")
        run = await start_run(env, duration=None, log_dir=tmp_path / "logs")
        try:
            if phase == "rpc_silent":
                # run dir exists and eth_chainId is pending: wait for the request to arrive
                with trio.fail_after(30):
                    while rpc.requests == 0:
                        await trio.sleep(0.05)
            else:
                await run.wait_for_file("run.json")
                with trio.fail_after(30):  # the heads subscription's handshake is held unanswered
                    while silent_ws.handshakes == 0:
                        await trio.sleep(0.05)
            t0 = time.monotonic()
            for sig in signals:
                run.proc.send_signal(sig)
            code = await run.wait(30)
            elapsed = time.monotonic() - t0
        finally:
            await run.aclose()
    err = run.stderr()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    assert "before the pipeline was up" in err
    summary = _summary(tmp_path)
    assert summary["final"] is True and summary["exit_code"] == 0
    assert (find_run_dir(tmp_path / "reports") / "tasks.json").exists()
    assert elapsed < 10  # not the 30 s RPC deadline: the stop cancels the pending request
    record_figures(f"stop before pipeline: {'+'.join(s.name for s in signals)} during {phase}", exit_code=code,
                   seconds=round(elapsed, 2))


@pytest.mark.parametrize("malformed", [False, True], ids=["silent", "malformed_heads"])
async def test_a_node_without_usable_heads_makes_the_run_exit_3_after_the_grace(tmp_path: Path, malformed: bool) -> None:
    grace = 2
    with hostile_rpc(Mode.OK) as rpc:
        async with ws_node(malformed_every_s=0.1 if malformed else None) as ws:
            env = _env(tmp_path, rpc.url, ws.url, AETHER_NODE_SILENCE_GRACE_SEC=str(grace))
            run = await start_run(env, duration=None, log_dir=tmp_path / "logs")
            try:
                t0 = time.monotonic()
                code = await run.wait(60)
                elapsed = time.monotonic() - t0
            finally:
                await run.aclose()
            frames = ws.frames_sent
    err = run.stderr()
    assert code == 3, err[-3000:]
    assert "Traceback" not in err
    summary = _summary(tmp_path)
    assert summary["exit_code"] == 3 and summary["node_errors"]["silent"] == 1
    if malformed:
        assert "malformed heads" in err and summary["node_errors"]["malformed_head"] >= 5
        assert "malformed head from the node" in err
    else:
        assert "no head at all" in err and summary["node_errors"]["malformed_head"] == 0
    assert grace <= elapsed < grace + 20
    record_figures(f"node {'malformed heads' if malformed else 'silent'}: exit 3 after grace", grace_s=grace,
                   seconds_to_exit=round(elapsed, 2), malformed_heads_sent=frames,
                   malformed_heads_counted=summary["node_errors"]["malformed_head"])


def test_a_metrics_port_in_use_fails_before_the_banner_and_the_run_dir(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _env(tmp_path, "http://127.0.0.1:9", AETHER_METRICS_ADDR=f"127.0.0.1:{port}")
        res = subprocess.run([*AETHER, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stdout == ""  # no banner
    assert res.stderr.count("\n") == 1 and f"AETHER_METRICS_ADDR=127.0.0.1:{port}: cannot listen" in res.stderr
    assert not (tmp_path / "reports").exists()


def test_a_public_metrics_address_is_refused_without_the_opt_in(tmp_path: Path) -> None:
    env = _env(tmp_path, "http://127.0.0.1:9", AETHER_METRICS_ADDR="0.0.0.0:0")
    res = subprocess.run([*AETHER, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "AETHER_METRICS_ALLOW_PUBLIC=1" in res.stderr
    assert not (tmp_path / "reports").exists()
    # with the opt-in: started, and warned about (it then fails on the unreachable node, exit 3)
    env["AETHER_METRICS_ALLOW_PUBLIC"] = "1"
    res = subprocess.run([*AETHER, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 3, res.stderr
    assert "WARNING" in res.stderr and "AETHER_METRICS_ALLOW_PUBLIC=1: metrics are served on 0.0.0.0" in res.stderr


def test_the_shadow_script_names_aethers_exit_when_it_cannot_start(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "mempool_backrun_shadow.sh"
    with hostile_rpc(Mode.OK) as node:
        env = _env(tmp_path, node.url, AETHER_SHADOW="1", MEMPOOL_TRACKING="1", AETHER_LOG_LEVEL="LOUD",
                   SHADOW_DURATION_SEC="5", SHADOW_POLL_SEC="1")
        env.pop("AETHER_METRICS_ADDR")
        res = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "(exit 2: configuration error)" in res.stderr and "AETHER_LOG_LEVEL='LOUD'" in res.stderr
