"""``aether devnet``: anvil, the deployment, the miner, victim traffic and the local builder.

One trio nursery owns everything it starts: anvil (a child process killed on
the way out), the miner loop, the victim traffic and the local builder's HTTP
server. SIGINT/SIGTERM cancel the nursery, so Ctrl-C stops all of it and
exits 0.

The miner and the traffic share ``block_lock``: a block is assembled (the
local builder's ``before_mine`` inserts the bundles it holds) and mined while
no victim transaction can arrive, so the builder sees a stable pool.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import TextIO

import attrs
import trio

from .._errors import AetherError, ConfigError, NodeError
from ..chain import RpcClient, open_rpc
from ._anvil import run_anvil
from ._competitor import CompetitorConfig, Competitors
from ._deploy import DevnetInfo, deploy
from ._traffic import DEFAULT_MIX, DEFAULT_MIX_V3, VictimTraffic, parse_route_mix
from ._universal import RouteKind, V3RouteKind, deploy_route_contracts
from ._v3 import V3DevnetInfo, deploy_v3_into

__all__ = ["ENV_KEYS", "DevnetReady", "devnet_main", "env_file_text", "run_devnet"]

ENV_KEYS = ("AETHER_WS_URL", "AETHER_RPC_URL", "AETHER_CONFIG", "AETHER_SIGNER_KEY_FILE", "AETHER_BUILDER_URLS")


@attrs.frozen
class DevnetReady:
    """What ``run_devnet`` hands to ``task_status.started``."""

    info: DevnetInfo
    builder_url: str | None
    env_file: Path | None
    seconds: float


def env_file_text(info: DevnetInfo, builder_url: str | None) -> str:
    """The ``KEY=VALUE`` lines that point ``aether run`` at this devnet."""
    lines = [
        "# written by `aether devnet`; load with: set -a; . THIS_FILE; set +a",
        f"AETHER_WS_URL={info.ws_url}",
        f"AETHER_RPC_URL={info.rpc_url}",
        f"AETHER_CONFIG={info.config_path}",
        f"AETHER_SIGNER_KEY_FILE={info.searcher_key_file}",
        f"AETHER_BUILDER_URLS={'local=' + builder_url if builder_url else ''}",
    ]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_builder() -> type | None:
    """The local builder class, or None when its module is not available."""
    try:
        from ._builder import LocalBuilder
    except ImportError:
        return None
    return LocalBuilder


async def _miner(rpc: RpcClient, lock: trio.Lock, builder: object | None, block_time: float, err: TextIO) -> None:
    """Mine a block every ``block_time`` seconds, letting the builder fill it first."""
    next_at = trio.current_time() + block_time
    while True:
        await trio.sleep_until(next_at)
        next_at = max(next_at + block_time, trio.current_time())
        async with lock:
            try:
                latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
                target = int(latest["number"], 16) + 1
                if builder is not None:
                    try:
                        await builder.before_mine(target)  # type: ignore[attr-defined]
                    except AetherError as exc:
                        print(f"aether devnet: local builder failed before block {target}: {exc}", file=err, flush=True)
                # Strictly later than the parent, as on a real chain: anvil's own clock
                # sometimes repeats the parent's second, and a Uniswap V2 pair's first
                # swap of a block then skips its accumulator writes (10,416 gas less).
                await rpc.call("evm_mine", [{"timestamp": max(int(time.time()), int(latest["timestamp"], 16) + 1)}])
            except NodeError as exc:
                print(f"aether devnet: mining failed: {exc}", file=err, flush=True)


async def run_devnet(
    *,
    port: int = 8545,
    block_time: float = 2.0,
    tx_rate: float = 5.0,
    workdir: Path = Path(".devnet"),
    seed: int = 1,
    traffic: bool = True,
    builder: bool = True,
    env_file: Path | None = None,
    out: TextIO | None = None,
    competitors: CompetitorConfig | None = None,
    task_status: trio.TaskStatus[DevnetReady] = trio.TASK_STATUS_IGNORED,
    v3: bool = True,
    route_mix: str | None = None,
    ground_truth: Path | None = None,
    liquidity_scale: int = 1,
    victim_scale: int = 1,
) -> None:
    """Run the devnet until cancelled.

    Args:
        port: anvil's port on 127.0.0.1 (0 picks a free one).
        block_time: seconds between blocks.
        tx_rate: victim transactions per second (on average).
        workdir: where the chain config, the searcher key and the builder's record go.
        seed: keys, prices and traffic are reproducible from it.
        traffic: start the victim traffic.
        builder: start the local builder (when its module is available).
        env_file: written atomically once everything is ready.
        competitors: competing searchers (needs the builder); None: none.
        out: where the ready banner goes (default stdout).
        task_status: receives a :class:`DevnetReady` once everything is up.
        v3: deploy Uniswap V3 (factory, SwapRouter, position manager, QuoterV2 and
            seeded pools) beside V2, add its ``[[dex]]`` block to the run's config and
            send V3 victims (``aether devnet --no-v3`` turns it off).
        route_mix: ``KIND=WEIGHT,...`` over ``router02``, ``universal_router``,
            ``direct_multi_pair``, ``v3_swap_router`` and ``universal_router_v3``
            (default :data:`DEFAULT_MIX_V3`, or :data:`DEFAULT_MIX` without V3); the
            Universal Router and MultiSwap are deployed unless only the two routers
            (Router02, SwapRouter) have weight.
        ground_truth: append one JSON line per victim sent (the pools it moves) here.
        liquidity_scale: pools (and the searcher's WETH) this many times deeper.
        victim_scale: victim swaps this many times bigger.

    Raises:
        ConfigError: anvil or the npm artifacts are missing, or a bad argument.
        AetherError: the deployment failed.
    """
    if block_time <= 0:
        raise ConfigError(f"--block-time={block_time!r}: expected a positive number of seconds")
    if traffic and tx_rate <= 0:
        raise ConfigError(f"--tx-rate={tx_rate!r}: expected a positive rate (or --no-traffic)")
    try:
        mix = parse_route_mix(route_mix) if route_mix else dict(DEFAULT_MIX_V3 if v3 else DEFAULT_MIX)
    except ValueError as exc:
        raise ConfigError(f"--route-mix={route_mix!r}: {exc}") from None
    if not v3 and any(w > 0 for k, w in mix.items() if isinstance(k, V3RouteKind)):
        raise ConfigError(f"--route-mix={route_mix!r}: a V3 route kind needs the V3 devnet (drop --no-v3)")
    for flag, scale in (("--liquidity-scale", liquidity_scale), ("--victim-scale", victim_scale)):
        if type(scale) is not int or not 1 <= scale <= 10_000:
            raise ConfigError(f"{flag}={scale!r}: expected a whole number in 1..10000")
    out = out or sys.stdout
    started = time.perf_counter()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    async with run_anvil(port=port, log_path=workdir / "anvil.log") as node:
        async with open_rpc(node.rpc_url, timeout=10.0) as rpc:
            # Deploy before the nursery opens, so that a failure surfaces as itself,
            # not wrapped in an exception group.
            info = await deploy(rpc, workdir, seed=seed, ws_url=node.ws_url, liquidity_scale=liquidity_scale)
            v3_info: V3DevnetInfo | None = None
            if v3:  # Uniswap V3 beside V2 (issue 16); its [[dex]] block joins the run's config
                v3_info = await deploy_v3_into(rpc, info, workdir, out=out)
            routes = None
            if any(w > 0 for k, w in mix.items() if k not in (RouteKind.ROUTER02, V3RouteKind.SWAP_ROUTER)):
                routes = await deploy_route_contracts(
                    rpc, info,
                    v3_factory=v3_info.factory if v3_info is not None else None,
                    v3_init_code_hash=v3_info.init_code_hash if v3_info is not None else None,
                )
            truth = ground_truth.open("a", encoding="utf-8") if ground_truth is not None else None
            try:
                make_traffic = functools.partial(VictimTraffic, routes=routes, mix=mix, ground_truth=truth,
                                                size_scale=victim_scale, v3=v3_info)
                await _serve(rpc, info, started, block_time, tx_rate, traffic, builder, workdir, env_file, out,
                             task_status, make_traffic, competitors)
            finally:
                if truth is not None:
                    truth.close()


async def _serve(
    rpc: RpcClient,
    info: DevnetInfo,
    started: float,
    block_time: float,
    tx_rate: float,
    traffic: bool,
    builder: bool,
    workdir: Path,
    env_file: Path | None,
    out: TextIO,
    task_status: trio.TaskStatus[DevnetReady],
    make_traffic: Callable[..., VictimTraffic] = VictimTraffic,
    competitors: CompetitorConfig | None = None,
) -> None:
    async with trio.open_nursery() as nursery:
        lock = trio.Lock()
        local_builder = None
        builder_url: str | None = None
        builder_cls = _load_builder() if builder else None
        if builder_cls is not None:
            local_builder = builder_cls(rpc, record_path=workdir / "builder-record.jsonl")
            builder_url = await nursery.start(local_builder.serve)
        elif builder:
            print("aether devnet: aether/devnet/_builder.py is not available; no local builder", file=sys.stderr)
        rivals = None
        if competitors is not None and builder_url is not None:
            rivals = Competitors(rpc, info, builder_url, competitors)
            await rivals.setup()  # funded and approved before the first mined block
            await nursery.start(rivals.run)
        nursery.start_soon(_miner, rpc, lock, local_builder, block_time, sys.stderr)
        if traffic:
            victims = make_traffic(rpc, info, lock=lock)
            nursery.start_soon(victims.run, tx_rate)
        if env_file is not None:
            _write_atomic(env_file, env_file_text(info, builder_url))
        seconds = time.perf_counter() - started
        banner = _banner(info, builder_url, env_file, block_time, tx_rate if traffic else 0.0, seconds)
        if rivals is not None:
            c = rivals.config
            banner += (f"\n  rivals     {c.count} competing searchers (latency {c.latency_s * 1000:.0f} ms, tip share "
                       f"{c.tip_share_bps} bps, miss {c.miss_share:.0%}, private flow {c.private_share:.0%} of blocks, "
                       f"victims cancelled {c.cancel_share:.0%})")
        print(banner, file=out, flush=True)
        task_status.started(DevnetReady(info=info, builder_url=builder_url, env_file=env_file, seconds=seconds))
        await trio.sleep_forever()


def _banner(
    info: DevnetInfo, builder_url: str | None, env_file: Path | None, block_time: float, tx_rate: float, seconds: float
) -> str:
    lines = [
        f"aether devnet ready in {seconds:.2f} s (chain id {info.chain_id}, block every {block_time:g} s, "
        f"victim traffic {tx_rate:g} tx/s)",
        f"  RPC        {info.rpc_url}",
        f"  WS         {info.ws_url}",
        f"  builder    {builder_url or '(none)'}",
        f"  config     {info.config_path}",
        f"  searcher   {info.searcher_address} (key file {info.searcher_key_file})",
        f"  WETH       {info.weth}",
    ]
    lines += [f"  {d.name:<10} router {d.router} factory {d.factory}" for d in info.dexes]
    lines += [f"  {t.symbol:<10} {t.address} ({t.decimals} decimals)" for t in info.tokens]
    lines.append(f"  victims    {len(info.victims)} accounts")
    if env_file is not None:
        lines.append(f"  env file   {env_file}   (set -a; . {env_file}; set +a; aether run)")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aether devnet",
        description="Run a local chain with two Uniswap V2 DEXes and Uniswap V3, victim traffic and a local builder.",
    )
    p.add_argument("--env-file", type=Path, default=None, help="write KEY=VALUE lines for `aether run` here when ready")
    p.add_argument("--block-time", type=float, default=2.0, metavar="SECONDS", help="seconds between blocks (default 2)")
    p.add_argument("--tx-rate", type=float, default=5.0, metavar="PER_S", help="victim transactions per second (default 5)")
    p.add_argument("--port", type=int, default=8545, help="anvil port on 127.0.0.1 (default 8545; 0 picks a free one)")
    p.add_argument("--workdir", type=Path, default=Path(".devnet"), help="config, key file and logs (default .devnet)")
    p.add_argument("--seed", type=int, default=1, help="keys, prices and traffic are reproducible from it (default 1)")
    p.add_argument("--no-traffic", action="store_true", help="do not send victim traffic")
    p.add_argument("--v3", action=argparse.BooleanOptionalAction, default=True,
                   help="deploy Uniswap V3 beside V2 (default on: pools at four fee tiers, V3 victims, and the "
                        "[[dex]] kind = \"v3\" block in the run's config); --no-v3 turns it off")
    p.add_argument(
        "--competitors", default=os.environ.get("AETHER_DEVNET_COMPETITORS", "on"), metavar="SPEC",
        help="competing searchers: on (default; 2 of them), off, or count=N,latency_ms=MS,tip_bps=BPS,miss=0..1,"
             "private=0..1 (default from AETHER_DEVNET_COMPETITORS)",
    )
    p.add_argument("--route-mix", default=os.environ.get("AETHER_DEVNET_ROUTE_MIX"), metavar="KIND=W,...",
                   help="share of swaps per route kind: router02, universal_router, direct_multi_pair, "
                        "v3_swap_router, universal_router_v3 (default router02=0.35,universal_router=0.2,"
                        "direct_multi_pair=0.15,v3_swap_router=0.2,universal_router_v3=0.1; without V3 "
                        "router02=0.5,universal_router=0.3,direct_multi_pair=0.2; env AETHER_DEVNET_ROUTE_MIX)")
    p.add_argument("--ground-truth", type=Path, default=None, metavar="FILE",
                   help="append one JSON line per victim sent: its route kind and the pools it moves")
    p.add_argument("--liquidity-scale", type=int, default=1, metavar="N",
                   help="pools (and the searcher's WETH) N times deeper (default 1)")
    p.add_argument("--victim-scale", type=int, default=1, metavar="N",
                   help="victim swaps N times bigger (default 1); with --liquidity-scale: big backruns")
    return p


def devnet_main(argv: list[str]) -> int:
    """``aether devnet``: run until SIGINT/SIGTERM, then stop everything and return 0.

    Returns 2 on a configuration error (one line on stderr), 1 if the devnet failed.
    """
    args = _parser().parse_args(argv)
    try:
        rivals = CompetitorConfig.parse(args.competitors, seed=args.seed)
    except ConfigError as exc:
        print(f"aether devnet: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        print("aether devnet: stopping", file=sys.stderr, flush=True)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                await run_devnet(
                    port=args.port,
                    block_time=args.block_time,
                    tx_rate=args.tx_rate,
                    workdir=args.workdir,
                    seed=args.seed,
                    traffic=not args.no_traffic,
                    env_file=args.env_file,
                    v3=args.v3,
                    competitors=rivals,
                    route_mix=args.route_mix,
                    ground_truth=args.ground_truth,
                    liquidity_scale=args.liquidity_scale,
                    victim_scale=args.victim_scale,
                )

    try:
        trio.run(main)
    except (AetherError, BaseExceptionGroup) as exc:
        leaf = _aether_leaf(exc)
        if leaf is None:
            raise
        print(f"aether devnet: {leaf}", file=sys.stderr)
        return 2 if isinstance(leaf, ConfigError) else 1
    return 0


def _aether_leaf(exc: BaseException) -> AetherError | None:
    """The first AetherError in ``exc`` (unwrapping trio's exception groups)."""
    if isinstance(exc, AetherError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _aether_leaf(inner)
            if found is not None:
                return found
    return None
