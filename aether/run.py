"""``aether run``: start-up checks, the banner, the supervision tree, a clean stop.

Start-up fails fast and closed, each failure one line on stderr:
exit 2 for configuration (bad variable, unreadable key file, reports directory
not writable, corrupt risk state, metrics address in use; all found before the
banner and before the run directory exists), exit 3 when the node cannot be
reached. A SIGINT, SIGTERM or SIGHUP stops the sources, lets the pipeline drain
(in-progress dumps complete), writes the summary and exits 0, also when it
comes before the node answered or the subscriptions were accepted. A node that
sends no usable head for ``AETHER_NODE_SILENCE_GRACE_SEC`` (default 60 s) makes
the process exit 3. An actor that panics past its restart intensity makes the
process exit 70 for the OS supervisor to restart it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from supervisors import Supervisor, SupervisorGaveUp

from . import __version__
from ._errors import ConfigError, NodeError, NodeErrorKind, NodeSilent
from ._log import configure_logging, register_secret
from .chain import open_rpc
from .config import Settings
from .dumps import RunDir
from .messages import BLOCK_ARB_GATES, GATES, RISK_ERROR, SOURCES
from .metrics import CANDIDATE_REJECT_REASONS, RISK_HALT_REASONS, Metrics
from .quantity import hex_quantity

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = ["EXIT_CONFIG", "EXIT_NODE", "EXIT_SUPERVISOR", "STOP_SIGNALS", "run_main", "summarise_metrics"]

log = logging.getLogger("aether.run")

EXIT_CONFIG = 2
EXIT_NODE = 3
EXIT_SUPERVISOR = 70
#: The signals that ask for a clean stop. SIGHUP too: a closed terminal or a
#: supervisor's reload must not kill the process with dumps half written.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Longest ``--duration`` (ten years): anything longer is a typo, and inf/nan are refused.
MAX_DURATION_S = 10 * 365 * 86_400

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
            "inclusion_unknown": v("aether_inclusion_unknown_total", source=src),
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
        "node_errors": {k.value: v("aether_node_errors_total", kind=k) for k in NodeErrorKind},
        # Live only: eth_sendBundle requests per builder label and outcome (empty in shadow).
        "builder_requests": builders,
    }


#: A stop signal that arrived before trio's signal receiver was open (start-up checks,
#: the metrics bind): remembered here and honoured as soon as the run starts.
_early_signals: list[int] = []


def _remember_early_signal(signum: int, _frame: object) -> None:
    _early_signals.append(signum)


def run_main(env: Mapping[str, str] | None = None, *, duration_s: float | None = None) -> int:
    """The whole of ``aether run``; returns the process exit code.

    Every check that can fail on the operator's configuration runs before the banner
    is printed and before the run directory is created (the metrics port included),
    so a configuration error leaves nothing behind but one line on stderr.
    """
    env = os.environ if env is None else env
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # Until trio takes over the signals, a stop signal must not kill the process
        # (SIGTERM/SIGHUP's default) nor raise KeyboardInterrupt into a half-made start.
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, _remember_early_signal)
    try:
        return _run_main(env, duration_s)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _early_signals.clear()


def _run_main(env: Mapping[str, str], duration_s: float | None) -> int:
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, str(exc))
    configure_logging(settings.log_level)
    for warning in settings.warnings:
        log.warning(warning)
    if duration_s is not None and not (math.isfinite(duration_s) and 0 < duration_s <= MAX_DURATION_S):
        return _fail(EXIT_CONFIG, f"--duration {duration_s!r}: expected seconds in (0, {MAX_DURATION_S}]")

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

    from .risk import RiskEngine, RiskStore

    try:
        # Restore it the way the risk actor will (not just parse it): a file with a
        # wrong version or an ill-typed field must stop start-up here, with one line.
        RiskEngine(settings.risk, store=RiskStore(settings.state_file), clock=time.monotonic)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, str(exc))

    # The port is taken before the banner and the run directory: "address in use" is a
    # configuration error, and a run that cannot be observed must not look started.
    from prometheus_client import start_http_server

    metrics = Metrics(builders=[b.name for b in settings.builders] if not settings.shadow else [])
    metrics.shadow_mode.set(1 if settings.shadow else 0)
    host, port = settings.metrics_addr
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except (OSError, OverflowError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        return _fail(EXIT_CONFIG, f"AETHER_METRICS_ADDR={host}:{port}: cannot listen ({why})")
    try:
        metrics_url = f"http://{host}:{server.server_port}/metrics"
        run_dir = RunDir(settings.reports_dir, shadow=settings.shadow)
        try:
            run_dir.create()
        except OSError as exc:
            return _fail(EXIT_CONFIG, f"AETHER_REPORTS_DIR={str(settings.reports_dir)!r}: not writable "
                                      f"({exc.strerror or type(exc).__name__})")
        if settings.shadow:
            print(SHADOW_BANNER.format(run_dir=run_dir.path), flush=True)
        else:
            print(LIVE_BANNER.format(builders=", ".join(b.display for b in settings.builders)), flush=True)
        log.info("metrics on %s", metrics_url)
        try:
            return trio.run(_amain, settings, signer, auth, run_dir, duration_s, metrics, metrics_url)
        except KeyboardInterrupt:  # a second Ctrl-C during the drain
            return 130
    finally:
        server.shutdown()


@attrs.define
class _Stop:
    """What the signal task and the run share: was a stop asked for, and is the pipeline up.

    Before every actor has started (the node is down, silent or slow to accept the
    subscriptions) nothing was built, so there is nothing to drain: a stop then
    cancels the node part at once and the run still ends with its summary and exit 0.
    """

    run_dir: RunDir
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    supervisor: Supervisor | None = None
    requested: bool = False
    draining: bool = False  # the --duration stop is under way
    signals: int = 0


async def _amain(settings: Settings, signer: LocalAccount, auth: LocalAccount | None, run_dir: RunDir, duration_s: float | None,
                 metrics: Metrics, metrics_url: str) -> int:
    started = time.time()
    stop = _Stop(run_dir)
    halts_seen: set[str] = set()  # HALT latches sampled at every summary (the sign-off reads them)
    code = 0
    try:
        async with trio.open_nursery() as root:
            # Signals are handled from the first moment, so a stop while the node is still
            # being dialled is a clean stop too (not a default-action death or exit 70).
            await root.start(_stop_on_signal, stop)
            with stop.scope:
                code = await _run_node(settings, signer, auth, run_dir, duration_s, metrics, metrics_url, stop,
                                      started, halts_seen)
            root.cancel_scope.cancel()
    except* SupervisorGaveUp as group:
        log.critical("%s; exiting for the OS supervisor to restart us", _leaf(group))
        code = EXIT_SUPERVISOR
    except* NodeError as group:
        log.critical("node failure: %s", _leaf(group))
        code = EXIT_NODE
    except* Exception as group:  # a bug outside every actor: still leave the summary behind
        log.critical("unexpected failure outside the actors; exiting %d", EXIT_SUPERVISOR, exc_info=group)
        code = EXIT_SUPERVISOR
    if stop.requested and stop.supervisor is None and code == 0:
        log.info("stopped before the pipeline was up: nothing was built")
    _write_summary(run_dir, metrics, started, final=True, exit_code=code, halts_seen=halts_seen, settings=settings)
    if code == 0:
        log.info("stopped cleanly")
    else:
        log.info("stopped with exit code %d", code)
    return code


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups, for a one-line log."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _run_node(settings: Settings, signer: LocalAccount, auth: LocalAccount | None, run_dir: RunDir, duration_s: float | None,
                    metrics: Metrics, metrics_url: str, stop: _Stop, started: float, halts_seen: set[str]) -> int:
    from supervisors._tree import Runtime

    def count(kind: NodeErrorKind) -> None:
        metrics.node_errors.labels(kind).inc()

    async with open_rpc(settings.rpc_url, timeout=settings.rpc_timeout_s,
                        max_response_bytes=settings.rpc_max_response_bytes, on_error=count) as rpc:
        try:
            chain_id = hex_quantity(await rpc.call("eth_chainId"))
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

            if auth is None:  # checked at start-up (live needs a Flashbots auth key); fail closed anyway
                return _fail(EXIT_CONFIG, "AETHER_FLASHBOTS_AUTH_KEY_FILE: live mode needs a Flashbots auth key")
            specs = build_live_tree(rt, auth=auth)
        supervisor = Supervisor(metrics)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_heads, metrics, settings.node_silence_grace_s, stop)
            nursery.start_soon(_write_summaries, run_dir, metrics, started, halts_seen, settings)

            async def tree(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                await supervisor.run(specs, task_status=task_status)
                nursery.cancel_scope.cancel()

            if duration_s is not None:
                nursery.start_soon(_stop_after, run_dir, duration_s, stop)
            await nursery.start(tree)
            stop.supervisor = supervisor  # from now on a stop drains instead of cancelling
        return 0


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


async def _stop_on_signal(stop: _Stop, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Signal 1 drains; signal 2 stops fast but in order; signal 3 cancels everything.

    The fast stop is the supervisor's own ordered cancel (sources first, then each
    actor in pipeline order with a moment for the next one to take what it handed
    on), so a bundle already built still reaches the end of the line and is dumped
    or counted; an all-at-once cancel could leave one between two actors.
    """
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started()
        async with trio.open_nursery() as nursery:
            async for signum in _with_early(signals):
                stop.signals += 1
                name = signal.Signals(signum).name
                if stop.supervisor is None:
                    if not stop.requested:
                        stop.requested = True
                        _record_tasks(stop.run_dir)
                    log.info("%s before the pipeline was up (node not answering or not subscribed yet): "
                             "stopping now", name)
                    stop.scope.cancel()
                elif not stop.requested:
                    stop.requested = True
                    _record_tasks(stop.run_dir)
                    log.info("%s: stopping sources and draining the pipeline", name)
                    # The drain runs beside this loop, so a second signal can cut it short.
                    nursery.start_soon(stop.supervisor.stop)
                elif stop.signals == 2:
                    log.warning("second signal (%s): stopping now, actor by actor in pipeline order "
                                "(bundles already built are still dumped); a third signal cancels at once", name)
                    nursery.start_soon(functools.partial(stop.supervisor.stop, drain_timeout_s=0.0))
                else:
                    log.warning("signal %d (%s): cancelling at once", stop.signals, name)
                    stop.scope.cancel()


async def _with_early(signals: AsyncIterator[int]) -> AsyncIterator[int]:
    while _early_signals:
        yield _early_signals.pop(0)
    async for signum in signals:
        yield signum


async def _watch_heads(metrics: Metrics, grace_s: float, stop: _Stop) -> None:
    """Exit 3 when the node sends no usable head for ``grace_s`` (silence or only malformed heads).

    Reads the metrics the heads actor keeps (the latest head, malformed heads
    counted); the grace starts when the node answered ``eth_chainId``. A stop
    that was asked for is never turned into a node failure.

    Raises:
        NodeSilent: the grace passed without a new head.
    """
    def head() -> float:
        return metrics.value("aether_head_block")

    def malformed() -> float:
        return metrics.value("aether_node_errors_total", kind=NodeErrorKind.MALFORMED_HEAD)

    last_head, last_malformed = head(), malformed()
    since = trio.current_time()
    while True:
        await trio.sleep(min(1.0, grace_s / 10))
        if stop.requested or stop.draining:
            return
        now = trio.current_time()
        if head() != last_head:
            last_head, last_malformed, since = head(), malformed(), now
            continue
        if now - since >= grace_s:
            bad = int(malformed() - last_malformed)
            metrics.node_errors.labels(NodeErrorKind.SILENT).inc()
            what = f"only {bad} malformed heads" if bad else "no head at all"
            raise NodeSilent(f"the node sent {what} for {grace_s:.0f}s (AETHER_NODE_SILENCE_GRACE_SEC); "
                             f"exiting {EXIT_NODE} for the OS supervisor to restart us")


async def _stop_after(run_dir: RunDir, duration_s: float, stop: _Stop) -> None:
    await trio.sleep(duration_s)
    if stop.requested:
        return
    log.info("duration of %.0fs reached: stopping", duration_s)
    _record_tasks(run_dir)
    if stop.supervisor is None:  # the pipeline never came up: nothing to drain
        stop.requested = True
        stop.scope.cancel()
        return
    stop.draining = True
    await stop.supervisor.stop()


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
