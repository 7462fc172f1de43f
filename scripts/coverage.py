#!/usr/bin/env python3
"""Victim-detection coverage by route kind, and notification -> bundle latency, on the embedded devnet.

    .venv/bin/python scripts/coverage.py --duration 180 --tx-rate 5 [--mix router02=1,...] [--v3] [--json out.json]

Starts its own anvil (a free port), deploys the Uniswap V2 DEXes, the Universal
Router and MultiSwap (and, with ``--v3``, Uniswap V3: the route kinds
``v3_swap_router`` and ``universal_router_v3`` join the default mix, and the pipeline's
config holds the V3 DEX), sends victim traffic over the route mix while aether's real
pipeline watches the node, then prints the coverage and latency tables (see
``aether/devnet/_coverage.py`` for what "correct" means). Exits 1 when any route
kind's coverage is below ``--min-coverage`` (default 99).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aether.devnet._coverage import measure, render_markdown  # noqa: E402
from aether.devnet._traffic import parse_route_mix  # noqa: E402
from aether.devnet._universal import V3RouteKind  # noqa: E402


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="scripts/coverage.py", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=180.0, help="seconds of victim traffic (default 180)")
    p.add_argument("--tx-rate", type=float, default=5.0, help="victim transactions per second (default 5)")
    p.add_argument("--block-time", type=float, default=2.0, help="seconds between blocks (default 2)")
    p.add_argument("--mix", default=None, help="route mix (default: every route kind of the run, equal shares)")
    p.add_argument("--v3", action="store_true", help="deploy Uniswap V3 and send V3 victims too")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-verify", action="store_true", help="skip the independent reserves check (latency runs)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--min-coverage", type=float, default=99.0)
    args = p.parse_args(argv)
    try:
        mix = parse_route_mix(args.mix) if args.mix else None
    except ValueError as exc:
        print(f"coverage: {exc}", file=sys.stderr)
        return 2
    if mix is not None and not args.v3 and any(w > 0 for k, w in mix.items() if isinstance(k, V3RouteKind)):
        print("coverage: a V3 route kind in --mix needs --v3", file=sys.stderr)
        return 2
    if args.duration <= 0 or args.tx_rate <= 0 or args.block_time <= 0:
        print("coverage: --duration, --tx-rate and --block-time must be positive", file=sys.stderr)
        return 2
    run = trio.run(lambda: measure(duration_s=args.duration, tx_rate=args.tx_rate, block_time=args.block_time,
                                   seed=args.seed, mix=mix, verify=not args.no_verify, v3=args.v3))
    print(render_markdown(run))
    if args.json is not None:
        args.json.write_text(json.dumps(attrs.asdict(run), indent=2, sort_keys=True) + "\n")
    low = [k for k, r in run.rows.items() if r["coverage_pct"] is not None and r["coverage_pct"] < args.min_coverage]
    return 1 if low and not args.no_verify else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
