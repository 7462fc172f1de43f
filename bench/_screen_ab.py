"""``python -m bench._screen_ab``: the one-pass prefilter against the per-token one, in one run.

A/B on the same frames and the same load, interleaved repetition by repetition:

- ``Prefilter.screen`` alone over the parsed frames of the generated stream (us a frame);
- the whole production pipeline over loopback (as ``python -m bench --only ws``), once
  with the per-token search put back (``LegacyPrefilter``) and once as shipped.

The machine is shared: the load average is printed at the start and the end, and
the figures that matter are the ratios within one repetition.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import orjson
import trio

import aether.strategy
from aether.strategy import Prefilter
from aether.strategy._screen import HINT_SCAN_CHARS

from . import _victimsim, _wsbench
from ._gen import make_market, make_stream


class LegacyPrefilter(Prefilter):
    """The token search as it was before the one-pass change: one substring search per token."""

    def _names_token(self, text: str) -> bool:
        return any(t in text for t in self._tokens)


def screen_us(pf: Prefilter, objs: list[dict[str, object]]) -> float:
    """CPU microseconds a frame for ``pf.screen`` over ``objs``."""
    screen = pf.screen
    c0 = time.process_time()
    for o in objs:
        screen(o)
    return (time.process_time() - c0) / len(objs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench._screen_ab", description=__doc__)
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ws-frames", type=int, default=40_000)
    ap.add_argument("--ws-reps", type=int, default=3, help="0: the prefilter alone, no pipeline")
    args = ap.parse_args()
    print("load", " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    market = make_market(seed=1)
    stream = make_stream(market, args.frames, seed=2)
    objs = [orjson.loads(f)["params"]["result"] for f in stream.frames]
    old, new = LegacyPrefilter(market.chain), Prefilter(market.chain)
    same = sum(old.screen(o) == new.screen(o) for o in objs)
    print(f"decisions equal on {same:,} of {len(objs):,} frames (scan bound {HINT_SCAN_CHARS} hex chars)")
    a, b = [], []
    for _ in range(args.reps):
        a.append(screen_us(old, objs))
        b.append(screen_us(new, objs))
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    print(f"Prefilter.screen per frame (CPU): per-token {statistics.median(a):.1f} us, one pass "
          f"{statistics.median(b):.1f} us = {statistics.median(ratios):.1f}x less (median of {args.reps})", flush=True)
    if args.ws_reps <= 0:
        return
    ws_stream = stream if args.ws_frames <= len(stream.frames) else make_stream(market, args.ws_frames, seed=3)
    sims = trio.run(_victimsim.sim_table, market, ws_stream.frames[: args.ws_frames])
    runs: dict[str, list[dict[str, Any]]] = {"per-token": [], "one-pass": []}
    with _wsbench.feeder(ws_stream.frames, count=args.ws_frames, head=market.head_json(), head_every=1.0) as url:
        for _ in range(args.ws_reps):
            for name, cls in (("per-token", LegacyPrefilter), ("one-pass", Prefilter)):
                aether.strategy.Prefilter = cls  # build_pipeline imports it from here at build time
                try:
                    p = trio.run(lambda: _wsbench.pipeline_run(market, url, args.ws_frames, sims))
                finally:
                    aether.strategy.Prefilter = Prefilter
                runs[name].append(p)
                print(f"  {name}: pipeline {p['rate']:,.0f}/s wall ({p['cpu_rate']:,.0f}/CPU-s), dropped "
                      f"{p['dropped']}, " + ", ".join(f"{k} {p[k]:,}" for k in _wsbench.COUNTS), flush=True)
    for name, ps in runs.items():
        print(f"{name}: pipeline median {statistics.median(p['rate'] for p in ps):,.0f}/s wall, "
              f"{statistics.median(p['cpu_rate'] for p in ps):,.0f}/CPU-s, dropped {sum(p['dropped'] for p in ps)}")
    print("load", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
