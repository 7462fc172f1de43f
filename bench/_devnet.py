"""The simulation round trip on the embedded devnet (real anvil, real Uniswap V2 contracts).

Starts ``aether devnet`` as a child process, then times ``eth_simulateV1`` with
the parameters the :class:`~aether.strategy.Validator` sends for a two-leg
backrun (WETH -> token on one DEX, back on the other, with the balance probes
around it), over real HTTP JSON-RPC.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from aether.chain import open_rpc
from aether.config import load_chain_config
from aether.dex import encode_swap_exact_tokens_for_tokens
from aether.messages import Call, Candidate, Hop
from aether.strategy import Validator

ROOT = Path(__file__).resolve().parent.parent


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


async def _measure(env: dict[str, str], n: int) -> dict[str, Any]:
    chain = load_chain_config(Path(env["AETHER_CONFIG"]))
    key = Path(env["AETHER_SIGNER_KEY_FILE"]).read_text().strip()
    from eth_account import Account

    searcher = Account.from_key(key).address.lower()
    weth, tok = chain.weth, chain.tokens[0].address
    a, b = chain.dexes[0], chain.dexes[1]
    amt = 10**16
    calls = (
        Call(a.router, encode_swap_exact_tokens_for_tokens(amt, 0, [weth, tok], searcher, 2**40)),
        Call(b.router, encode_swap_exact_tokens_for_tokens(1, 0, [tok, weth], searcher, 2**40)),
    )
    route = (Hop(a.name, a.router, "0x" + "00" * 20, weth, tok, amt, 1),
             Hop(b.name, b.router, "0x" + "00" * 20, tok, weth, 1, amt))
    cand = Candidate(source="mempool_backrun", target_block=1, head_number=0, victim=None, route=route,
                     amount_in=amt, amount_out=amt, expected_gross_profit_wei=0, gas_estimate=240_000,
                     seen_at=0.0, found_at=0.0, calls=calls)
    validator = Validator(None, searcher=searcher, weth=weth)
    params = validator.simulate_params(cand)
    times: list[float] = []
    async with open_rpc(env["AETHER_RPC_URL"]) as rpc:
        await rpc.call("eth_simulateV1", params)  # warm up
        for _ in range(n):
            t0 = time.perf_counter()
            await rpc.call("eth_simulateV1", params)
            times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return {"p50_us": statistics.median(times), "p99_us": times[min(len(times) - 1, int(0.99 * len(times)))],
            "n": n}


def simulate_round_trip(n: int = 50) -> dict[str, Any]:
    """Start a devnet, time ``n`` simulations, stop it (by its pid)."""
    with tempfile.TemporaryDirectory(prefix="aether-bench-devnet-") as tmp:
        env_file = Path(tmp) / "env"
        proc = subprocess.Popen(
            [sys.executable, "-m", "aether.cli", "devnet", "--env-file", str(env_file), "--port", "0",
             "--workdir", str(Path(tmp) / "w"), "--no-traffic", "--seed", "1"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
        )
        try:
            deadline = time.monotonic() + 60
            while not env_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("devnet did not start")
                time.sleep(0.05)
            return trio.run(_measure, _read_env(env_file), n)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
