"""``aether run``: start-up checks, the banner, the supervision tree, a clean stop.

Start-up fails fast and closed, each failure one line on stderr:
exit 2 for configuration (bad variable, unreadable key file, reports directory
not writable, corrupt risk state, metrics address in use), exit 3 when the node
cannot be reached. A SIGINT or SIGTERM stops the sources, lets the pipeline
drain (in-progress dumps complete) and exits 0. An actor that panics past its
restart intensity makes the process exit 70 for the OS supervisor to restart it.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from . import __version__
from ._errors import ConfigError, NodeError
from ._log import configure_logging, register_secret
from .chain import open_rpc
from .config import Settings
from .dumps import RunDir
from .messages import BLOCK_ARB_GATES, GATES, RISK_ERROR, SOURCES
from .metrics import CANDIDATE_REJECT_REASONS, RISK_HALT_REASONS, Metrics

__all__ = ["EXIT_CONFIG", "EXIT_NODE", "EXIT_SUPERVISOR", "run_main", "summarise_metrics"]

log = logging.getLogger("aether.run")

EXIT_CONFIG = 2
EXIT_NODE = 3
EXIT_SUPERVISOR = 70

SHADOW_BANNER = """\
==============================================================
  SHADOW MODE: ENABLED
  bundles are built, signed, gated and dumped; none is sent
  dumps: {run_dir}/bundles
=============================================================="""

LIVE_BANNER = """\
##############################################################
##  LIVE MODE: AETHER_SHADOW=0 -- BUNDLES WILL BE SUBMITTED  ##
##  builders: {builders}
##  real money is at risk; Ctrl-C stops cleanly
##############################################################"""


def _fail(code: int, message: str) -> int:
    print(f"aether: error: {message}", file=sys.stderr)
    return code


def summarise_metrics(m: Metrics) -> dict[str, Any]:
    """The counters a run summary and the shadow-run script care about."""

    def v(name: str, **labels: str) -> int:
        return int(m.value(name, **labels))

    per_source = {}
    for src in SOURCES:
        per_source[src] = {
            "candidates": v("aether_candidates_total", source=src),
            "built": v("aether_bundles_built_total", source=src),
            "shadow_blocked": v("aether_executor_bundles_shadow_blocked_total", source=src),
            "submitted": v("aether_executor_bundles_submitted_total", source=src),
            "dumped": v("aether_shadow_dumps_written_total", source=src),
            "included": v("aether_bundles_included_total", source=src),
            "not_included": v("aether_bundles_not_included_total", source=src),
            "reverted": v("aether_bundles_reverted_total", source=src),
            "candidate_rejected": {
                r: n for r in CANDIDATE_REJECT_REASONS
                if (n := v("aether_candidate_rejected_total", source=src, reason=r))
            },
        }
    panics = 0
    builders: dict[str, dict[str, int]] = {}
    for metric in m.registry.collect():
        if metric.name == "aether_actor_panics":
            panics = int(sum(s.value for s in metric.samples if s.name.endswith("_total")))
        elif metric.name == "aether_builder_requests":
            for s in metric.samples:
                if s.name.endswith("_total"):
                    builders.setdefault(s.labels["builder"], {})[s.labels["outcome"]] = int(s.value)
    return {
        "sources": per_source,
        "risk_rejected": {g: v("aether_mempool_risk_rejected_total", reason=g) for g in (*GATES, RISK_ERROR)},
        # The block-driven source's own rejections (its own gates and counter).
        "block_arb_risk_rejected": {
            g: v("aether_block_arb_risk_rejected_total", reason=g) for g in (*BLOCK_ARB_GATES, RISK_ERROR)
        },
        # HALT episodes during the run, per reason (the seed's "no risk-breach halts").
        "risk_halts": {g: v("aether_risk_halts_total", gate=g) for g in RISK_HALT_REASONS},
        "panics": panics,
        "dump_errors": v("aether_shadow_dump_errors_total"),
        "pending_seen": v("aether_mempool_pending_seen_total"),
        "ws_reconnects": {
            s: v("aether_ws_reconnects_total", stream=s) for s in ("newHeads", "newPendingTransactions")
        },
        "head": v("aether_head_block"),
        # Live only: eth_sendBundle requests per builder label and outcome (empty in shadow).
        "builder_requests": builders,
    }


def run_main(env: Mapping[str, str] | None = None, *, duration_s: float | None = None) -> int:
    """The whole of ``aether run``; returns the process exit code."""
    env = os.environ if env is None else env
    configure_logging(env.get("AETHER_LOG_LEVEL", "INFO").upper())
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, str(exc))
    for warning in settings.warnings:
        log.warning(warning)

    from .keys import load_key_file

    if settings.signer_key_file is None:
        return _fail(EXIT_CONFIG, "AETHER_SIGNER_KEY_FILE is not set: the searcher key is needed to sign bundles "
                                  "(shadow mode signs too); point it at a file holding the hex key, mode 0600")
    try:
        signer = load_key_file(settings.signer_key_file, "AETHER_SIGNER_KEY_FILE")
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, str(exc))
    register_secret(signer.key.hex())

    auth = None
    if not settings.shadow:
        if not settings.builders:
            return _fail(EXIT_CONFIG, "AETHER_SHADOW=0 but AETHER_BUILDER_URLS is empty: nowhere to submit")
        if not settings.validate:
            return _fail(EXIT_CONFIG, "AETHER_SHADOW=0 with AETHER_VALIDATE=0: live mode never sends an "
                                      "unsimulated bundle; set AETHER_VALIDATE=1")
        if settings.flashbots_auth_key_file is None:
            return _fail(EXIT_CONFIG, "AETHER_SHADOW=0 but AETHER_FLASHBOTS_AUTH_KEY_FILE is not set: builders "
                                      "need a signed X-Flashbots-Signature (use a key that holds no funds)")
        try:
            auth = load_key_file(settings.flashbots_auth_key_file, "AETHER_FLASHBOTS_AUTH_KEY_FILE")
        except ConfigError as exc:
            return _fail(EXIT_CONFIG, str(exc))
        register_secret(auth.key.hex())
        if auth.address == signer.address:
            return _fail(EXIT_CONFIG, "AETHER_FLASHBOTS_AUTH_KEY_FILE holds the searcher key: use a separate "
                                      "key for builder reputation")

    run_dir = RunDir(settings.reports_dir, shadow=settings.shadow)
    try:
        run_dir.create()
    except OSError as exc:
        return _fail(EXIT_CONFIG, f"AETHER_REPORTS_DIR={str(settings.reports_dir)!r}: not writable "
                                  f"({exc.strerror or type(exc).__name__})")

    from .risk import RiskEngine, RiskStore

    try:
        # Restore it the way the risk actor will (not just parse it): a file with a
        # wrong version or an ill-typed field must stop start-up here, with one line.
        RiskEngine(settings.risk, store=RiskStore(settings.state_file), clock=time.monotonic)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, str(exc))

    if settings.shadow:
        print(SHADOW_BANNER.format(run_dir=run_dir.path), flush=True)
    else:
        print(LIVE_BANNER.format(builders=", ".join(b.display for b in settings.builders)), flush=True)
    try:
        return trio.run(_amain, settings, signer, auth, run_dir, duration_s)
    except KeyboardInterrupt:  # a second Ctrl-C during the drain
        return 130


async def _amain(settings: Settings, signer: Any, auth: Any, run_dir: RunDir, duration_s: float | None) -> int:
    from prometheus_client import start_http_server

    from supervisors import Supervisor, SupervisorGaveUp
    from supervisors._tree import Runtime

    metrics = Metrics(builders=[b.name for b in settings.builders] if not settings.shadow else [])
    metrics.shadow_mode.set(1 if settings.shadow else 0)
    host, port = settings.metrics_addr
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        return _fail(EXIT_CONFIG, f"AETHER_METRICS_ADDR={host}:{port}: cannot listen ({exc.strerror})")
    metrics_url = f"http://{host}:{server.server_port}/metrics"
    log.info("metrics on %s", metrics_url)
    started = time.time()
    try:
        async with open_rpc(settings.rpc_url, timeout=settings.rpc_timeout_s) as rpc:
            try:
                chain_id = int(await rpc.call("eth_chainId"), 16)
            except (NodeError, TypeError, ValueError) as exc:
                return _fail(EXIT_NODE, f"AETHER_RPC_URL: {exc}")
            run_dir.write_meta("run.json", {
                "version": __version__,
                "mode": run_dir.mode,
                "started_at": run_dir.stamp,
                "chain_id": chain_id,
                "searcher": signer.address,
                "metrics_url": metrics_url,
                "mempool_tracking": settings.mempool_tracking,
                "block_arb": settings.block_arb,
                "validate": settings.validate,
                "limits": {k: str(v) for k, v in attrs.asdict(settings.risk).items()},
                "tip_share_bps": settings.tip_share_bps,
                "dexes": [d.name for d in settings.chain.dexes],
                "pid": os.getpid(),
                # For the sign-off (aether rollout check): a copy of this directory keeps
                # this id, so it can be counted once; and where the risk state lives.
                "run_id": secrets.token_hex(16),
                "state_file": str(settings.state_file.absolute()),
            })
            rt = Runtime(settings=settings, metrics=metrics, rpc=rpc, chain_id=chain_id, signer=signer,
                         run_dir=run_dir)
            if settings.shadow:
                from supervisors.shadow import build_shadow_tree

                specs = build_shadow_tree(rt)
            else:
                from supervisors.live import build_live_tree

                specs = build_live_tree(rt, auth=auth)
            supervisor = Supervisor(metrics)
            halts_seen: set[str] = set()
            code = 0
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_stop_on_signal, supervisor, run_dir, nursery.cancel_scope)
                    nursery.start_soon(_write_summaries, run_dir, metrics, started, halts_seen, settings)
                    if duration_s is not None:
                        nursery.start_soon(_stop_after, supervisor, run_dir, duration_s)
                    await supervisor.run(specs)
                    nursery.cancel_scope.cancel()
            except* SupervisorGaveUp as group:
                log.critical("%s; exiting for the OS supervisor to restart us", group.exceptions[0])
                code = EXIT_SUPERVISOR
            except* NodeError as group:
                log.critical("node failure at start-up: %s", group.exceptions[0])
                code = EXIT_NODE
            except* Exception as group:  # a bug outside every actor: still leave the summary behind
                log.critical("unexpected failure outside the actors; exiting %d", EXIT_SUPERVISOR,
                             exc_info=group)
                code = EXIT_SUPERVISOR
            _write_summary(run_dir, metrics, started, final=True, exit_code=code, halts_seen=halts_seen,
                           settings=settings)
            if code == 0:
                log.info("stopped cleanly")
            else:
                log.info("stopped with exit code %d", code)
            return code
    finally:
        server.shutdown()


def task_tree() -> list[str]:
    """Names of every task in this trio run, depth-first from the root."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        names.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None  # called from inside trio.run
    walk(root)
    return names


def _record_tasks(run_dir: RunDir) -> None:
    """Write which tasks ran and whether the submit code was loaded: forensic proof for shadow runs."""
    doc = {"tasks": task_tree(), "submit_module_loaded": "aether.submit" in sys.modules,
           "actors": sorted({n.removeprefix("actor:") for n in task_tree() if n.startswith("actor:")})}
    try:
        run_dir.write_meta("tasks.json", doc)
    except OSError as exc:
        log.error("cannot write tasks.json: %s", exc.strerror)


async def _stop_on_signal(supervisor: Any, run_dir: RunDir, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            first = True
            async for signum in signals:
                if first:
                    first = False
                    log.info("%s: stopping sources and draining the pipeline", signal.Signals(signum).name)
                    _record_tasks(run_dir)
                    # The drain runs beside this loop, so a second signal can cut it short.
                    nursery.start_soon(supervisor.stop)
                else:
                    log.warning("second signal: cancelling now (queued dumps are still written)")
                    scope.cancel()


async def _stop_after(supervisor: Any, run_dir: RunDir, duration_s: float) -> None:
    await trio.sleep(duration_s)
    log.info("duration of %.0fs reached: stopping", duration_s)
    _record_tasks(run_dir)
    await supervisor.stop()


def _risk_record(metrics: Metrics, halts_seen: set[str], settings: Settings) -> dict[str, Any]:
    """What the sign-off reads about HALTs: latches seen set during the run, and the saved state.

    ``halts_seen`` accumulates the ``aether_risk_halted{gate}`` latches sampled at every
    summary (every 15 s and at the stop); the daily P&L latch holds until the UTC day
    rolls, so a sample sees it. ``state`` is the persisted risk state file as it was
    at this summary (None when absent or unreadable), so the evidence stays in the run
    directory after the next run rewrites the file.
    """
    for metric in metrics.registry.collect():
        if metric.name == "aether_risk_halted":
            halts_seen.update(s.labels["gate"] for s in metric.samples if s.value)
    from .risk import RiskStore

    try:
        saved = RiskStore(settings.state_file).load()
    except ConfigError:
        saved = None
    keep = ("version", "saved_at", "utc_day", "daily_pnl_wei", "halts", "paused_until")
    state = None if saved is None else {k: saved.get(k) for k in keep}
    return {"halts_seen": sorted(halts_seen), "state": state}


def _write_summary(run_dir: RunDir, metrics: Metrics, started: float, *, final: bool, exit_code: int | None = None,
                   halts_seen: set[str] | None = None, settings: Settings | None = None) -> None:
    doc = summarise_metrics(metrics)
    if halts_seen is not None and settings is not None:
        doc["risk"] = _risk_record(metrics, halts_seen, settings)
    doc.update({"final": final, "started_unix": int(started), "updated_unix": int(time.time()),
                "duration_s": int(time.time() - started), "mode": run_dir.mode})
    if exit_code is not None:
        doc["exit_code"] = exit_code
    try:
        run_dir.write_meta("summary.json", doc)
    except OSError as exc:
        log.error("cannot write summary.json: %s", exc.strerror)


async def _write_summaries(run_dir: RunDir, metrics: Metrics, started: float, halts_seen: set[str],
                           settings: Settings) -> None:
    while True:
        await trio.sleep(15)
        await trio.to_thread.run_sync(lambda: _write_summary(run_dir, metrics, started, final=False,
                                                             halts_seen=halts_seen, settings=settings))
