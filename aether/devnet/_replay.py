"""Replaying every candidate on the devnet: does the chain pay exactly what we predicted?

The strategies predict a backrun's gross profit from reserves alone (integer
Uniswap V2 math on a copy of the book); the validator checks that prediction
with ``eth_simulateV1``. This harness closes the loop on a real chain: every
candidate is executed as the bundle we would send, in a real block, and the
searcher's WETH balance must move by exactly the predicted gross, wei for wei.

It drives the devnet itself, one block at a time, with no background miner, so
that nothing moves the chain between sizing and replay:

1. Take the head ``H``; refresh the pool book at ``H`` together with the
   searcher's balances (the batch the heads actor makes), as the strategy
   actor does on each tick.
2. Run the block-driven source on ``H`` and replay its candidates.
3. Send a batch of victim transactions (:class:`VictimTraffic`) to the pool;
   read each back with ``eth_getTransactionByHash`` and decode it with
   :func:`aether.chain.decode_pending_tx` (the intake path); size each one
   addressed to a configured router with the real :class:`BackrunStrategy`
   against the book at ``H``, and replay its candidate.
4. Put the batch back in the pool (a replay drops it, and ``evm_revert`` does
   not restore the pool: mined transactions are gone from it and dropped ones
   stay dropped) and mine it, so the chain moves on as it would have.

A replay (:meth:`CandidateReplayer.replay`) is: ``evm_snapshot``;
``anvil_dropAllTransactions``; send the victim's re-encoded raw bytes
(``PendingTx.raw``, the bytes that go into a bundle) and our transactions
signed by the real :class:`~aether.bundle.BundleBuilder`; ``evm_mine``; check
the block holds exactly ``[victim, ours...]`` in that order, all succeeded, and
the searcher's WETH delta equals ``expected_gross_profit_wei`` (gas is paid in
ETH, so the WETH delta is exactly the gross); ``evm_revert``.

A victim whose sender has an earlier transaction in the same batch carries a
nonce ahead of the chain at ``H``: the prediction assumes it executes first on
``H``, which it only can once its predecessor is in. The replay reproduces the
prediction's premise by setting the sender's nonce (inside the snapshot) and
counts such victims as ``nonce_ahead``: on mainnet their bundle would land only
behind the predecessor. The validator rejects exactly these (``victim_nonce_ahead``),
so a running aether never builds on them; the replay still replays them to show the
sizing itself is exact.

With ``simulate`` (``--detect simulate``, the default of the script) victims are
found the way ``aether run`` finds them: every swap the traffic sends, whatever
contract it calls (Router02, the Universal Router, MultiSwap across both DEXes;
``--route-mix``), is simulated on ``H`` by the real :class:`VictimSimulator`, and
:meth:`BackrunStrategy.on_post_state` sizes every gap its post-state opens. The
simulator rejects victims that are not their sender's next transaction, as the
running pipeline does, so the traffic draws senders that are (``fresh_senders``).
The table then has one row per route kind.

Before each replay the candidate goes through the real :class:`Validator`
(when validation is on), so the run also measures what validation costs in
latency and whether its verdict agrees with the chain.

With ``v3`` (``--v3``) the real Uniswap V3 contracts are deployed beside the V2
devnet (:func:`aether.devnet._v3.deploy_v3`) and configured as a ``kind = "v3"``
DEX: a :class:`~aether.dex.V3PoolBook` of every seeded pool is read at each
head, victims that move a V3 pool are seen from their ``Swap`` logs, and
cycles are sized across V2 pairs and V3 fee tiers. Besides the traffic, the
harness sends ``v3_victims_per_block`` swaps of its own through the V3
SwapRouter (ETH in, seeded random token, tier and size; from accounts of
their own, so the traffic's nonces are untouched). Every replayed candidate
is counted by its venue pair (``v2/v2``, ``v2/v3``, ``v3/v2``, ``v3/v3``) in
``by_venue_pair``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio
from eth_utils import to_checksum_address

from .._errors import AetherError, ConfigError, DecodeError, NodeError, RpcError
from ..actors import balance_calls
from ..bundle import BundleBuilder, NonceTracker
from ..chain import RpcClient, decode_pending_tx, head_from_rpc, open_rpc
from ..config import ChainConfig, DexConfig, DexKind
from ..dex import PoolBook, V3PoolBook
from ..keys import load_key_file
from ..messages import Candidate, Head, PendingTx, venue_pair
from ..strategy import BackrunStrategy, BlockArbStrategy, Rejection, Validator, VictimSimulator
from ..strategy._backrun import encode_exact_input_single
from ._anvil import run_anvil
from ._deploy import DevnetInfo, deploy, victim_account
from ._v3 import V3_DEX_NAME, V3DevnetInfo, deploy_v3
from ._traffic import DEFAULT_MIX, VictimTraffic, parse_mix, with_eth_refund
from ._universal import RouteContracts, RouteKind, deploy_route_contracts

__all__ = [
    "CandidateReplayer",
    "ReplayHarness",
    "ReplayOutcome",
    "ReplayReport",
    "replay_main",
    "run_replay",
]

_BALANCE_OF = "0x70a08231"
#: How many mismatch details the summary carries (all are in ``records``).
_FIRST_MISMATCHES = 5
#: ``tip_share_bps`` of ``Settings`` (what ``aether run`` uses by default).
DEFAULT_TIP_SHARE_BPS = 8000
#: The venue pairs of a two-leg cycle, in the order the table shows them.
VENUE_PAIRS = ("v2/v2", "v2/v3", "v3/v2", "v3/v3")
#: Victim account indexes of the harness's own V3 victims (far above the traffic's).
_V3_VICTIM_BASE = 10_000
#: The route kind the harness's own SwapRouter victims are recorded under.
V3_VICTIM_KIND = "v3_swaprouter"


def v3_chain(info: DevnetInfo, v3: V3DevnetInfo) -> ChainConfig:
    """The devnet's chain config with the V3 DEX added (``kind = "v3"``, its fee tiers)."""
    base = info.chain_config
    dex = DexConfig(name=V3_DEX_NAME, router=v3.router, factory=v3.factory, init_code_hash=v3.init_code_hash,
                    fee_bps=0, kind=DexKind.V3, fee_tiers=v3.fee_tiers)
    return ChainConfig(weth=base.weth, dexes=(*base.dexes, dex), tokens=base.tokens)


def _balance_data(who: str) -> str:
    return _BALANCE_OF + "0" * 24 + who.lower().removeprefix("0x")


def _int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"expected a hex quantity, got {str(value)[:40]!r}")
    return int(value, 16) if len(value) > 2 else 0


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _mine_params(timestamp: int | None) -> list[Any]:
    return [] if timestamp is None else [{"timestamp": timestamp, "blocks": 1}]


def _percentiles(values_s: Sequence[float]) -> dict[str, float | int]:
    """``n``, p50, p90 and max in milliseconds (nearest rank); zeros when empty."""
    if not values_s:
        return {"n": 0, "p50_ms": 0.0, "p90_ms": 0.0, "max_ms": 0.0}
    xs = sorted(values_s)

    def rank(q: float) -> float:
        k = max(0, min(len(xs) - 1, -(-len(xs) * q // 100) - 1))
        return xs[int(k)]

    return {"n": len(xs), "p50_ms": _ms(rank(50)), "p90_ms": _ms(rank(90)), "max_ms": _ms(xs[-1])}


# --------------------------------------------------------------------------- one replay


@attrs.frozen
class ReplayOutcome:
    """What the chain did with one candidate.

    ``exact`` only when the block held exactly ``[victim, ours...]`` in order,
    every one of them succeeded, and the WETH delta equals the prediction.
    ``realised_wei`` is None when the replay did not get as far as a block.
    """

    exact: bool
    realised_wei: int | None
    detail: str = ""
    nonce_ahead: bool = False
    seconds: float = 0.0


@attrs.define
class CandidateReplayer:
    """Executes a candidate as the bundle we would send, in a real block, then reverts.

    Args:
        rpc: the devnet node (anvil: needs ``evm_*`` and ``anvil_*``).
        weth: the profit currency.
        builder: the real bundle builder with the searcher's key.
    """

    rpc: RpcClient
    weth: str
    builder: BundleBuilder

    @property
    def searcher(self) -> str:
        return self.builder.signer.address.lower()

    async def replay(
        self, candidate: Candidate, head: Head, *, searcher_nonce: int, timestamp: int | None = None
    ) -> ReplayOutcome:
        """Replay ``candidate`` on top of ``head`` (the latest block) and undo it.

        ``timestamp`` is the replay block's (None: anvil's choice); the harness
        gives it the timestamp the next real block will get.

        The pool is emptied first and is empty afterwards (``evm_revert`` does not
        bring dropped transactions back): the caller puts back what it needs.

        Raises:
            NodeError: the snapshot could not be taken or reverted (the chain is
                then in an unknown state and the run must stop). Everything else
                is an outcome with ``exact=False`` and a detail.
        """
        t0 = time.perf_counter()
        snapshot = await self.rpc.call("evm_snapshot", [])
        try:
            outcome = await self._replay(candidate, head, searcher_nonce, timestamp)
        except (NodeError, ValueError, KeyError, TypeError) as exc:
            outcome = ReplayOutcome(False, None, f"replay error: {type(exc).__name__}: {str(exc)[:200]}")
        finally:
            with trio.CancelScope(shield=True):
                if await self.rpc.call("evm_revert", [snapshot]) is not True:
                    raise NodeError(f"evm_revert({snapshot}) failed: the chain is left in the replayed state")
        return attrs.evolve(outcome, seconds=time.perf_counter() - t0)

    async def _replay(self, c: Candidate, head: Head, searcher_nonce: int, timestamp: int | None) -> ReplayOutcome:
        latest = _int(await self.rpc.call("eth_blockNumber", []))
        if latest != head.number:
            return ReplayOutcome(False, None, f"chain is at {latest}, candidate was sized on {head.number}")
        victim = c.victim
        calls: list[tuple[str, list[Any]]] = [("anvil_dropAllTransactions", [])]
        if victim is not None:
            calls.append(("eth_getTransactionCount", [victim.sender, "latest"]))
        replies = await self.rpc.batch(calls)
        for r in replies:
            if isinstance(r, RpcError):
                raise r
        nonce_ahead = False
        expected: list[str] = []
        if victim is not None:
            chain_nonce = _int(replies[1])
            if victim.nonce != chain_nonce:
                if victim.nonce < chain_nonce:
                    return ReplayOutcome(False, None, f"victim nonce {victim.nonce} already used ({chain_nonce})")
                nonce_ahead = True
                await self.rpc.call("anvil_setNonce", [victim.sender, hex(victim.nonce)])
            sent = await self.rpc.call("eth_sendRawTransaction", ["0x" + victim.raw.hex()])
            if str(sent).lower() != victim.hash_hex:
                return ReplayOutcome(False, None, f"victim hash {sent} != {victim.hash_hex}", nonce_ahead)
            expected.append(victim.hash_hex)
        self.builder.nonces.reset(searcher_nonce)
        bundle = self.builder.build(c, head, now_ns=time.time_ns())
        for raw, h in zip(bundle.envelope[len(expected) :], bundle.our_tx_hashes, strict=True):
            sent = await self.rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
            if str(sent).lower() != "0x" + h.hex():
                return ReplayOutcome(False, None, f"backrun hash {sent} != 0x{h.hex()}", nonce_ahead)
            expected.append("0x" + h.hex())
        await self.rpc.call("evm_mine", _mine_params(timestamp))
        target = hex(c.target_block)
        checks: list[tuple[str, list[Any]]] = [
            ("eth_getBlockByNumber", [target, False]),
            ("eth_call", [{"to": self.weth, "data": _balance_data(self.searcher)}, hex(head.number)]),
            ("eth_call", [{"to": self.weth, "data": _balance_data(self.searcher)}, target]),
            *(("eth_getTransactionReceipt", [h]) for h in expected),
        ]
        replies = await self.rpc.batch(checks)
        for r in replies:
            if isinstance(r, RpcError):
                raise r
        block, before, after, *receipts = replies
        if block is None:
            return ReplayOutcome(False, None, f"block {c.target_block} was not mined", nonce_ahead)
        realised = _int(after) - _int(before)
        mined = [str(h).lower() for h in block["transactions"]]
        if mined != expected:
            return ReplayOutcome(
                False, realised, f"block holds {len(mined)} txs {mined[:4]}, expected {expected}", nonce_ahead
            )
        failed = [i for i, r in enumerate(receipts) if r is None or _int(r.get("status")) != 1]
        if failed:
            names = ["victim" if (victim is not None and i == 0) else f"ours[{i - (victim is not None)}]" for i in failed]
            return ReplayOutcome(False, realised, f"reverted: {', '.join(names)}", nonce_ahead)
        if realised != c.expected_gross_profit_wei:
            return ReplayOutcome(
                False,
                realised,
                f"WETH delta {realised}, predicted {c.expected_gross_profit_wei} "
                f"(off by {realised - c.expected_gross_profit_wei})",
                nonce_ahead,
            )
        return ReplayOutcome(True, realised, "", nonce_ahead)


# --------------------------------------------------------------------------- the run


@attrs.frozen
class ReplayReport:
    """The run's figures (``summary``) and one record per replayed candidate."""

    summary: dict[str, Any]
    records: tuple[dict[str, Any], ...]

    @property
    def ok(self) -> bool:
        """Every replayed candidate was exact (and the run was not empty of candidates)."""
        return self.summary["replayed"] > 0 and self.summary["not_exact"] == 0

    def to_json(self) -> str:
        # stdlib json: wei amounts exceed 64 bits and must stay exact integers.
        return json.dumps({"summary": self.summary, "records": list(self.records)}, indent=1) + "\n"

    def table(self) -> str:
        """The human summary: counts per source, agreement, latencies."""
        s = self.summary
        lines = [
            f"replay: {s['blocks']} blocks in {s['seconds']:.0f} s, {s['victim_txs_sent']} victim txs sent, "
            f"{s['router_victims']} to a router, validation {'on' if s['validation'] else 'off'}, seed {s['seed']}",
            "",
            f"{'source':<17}{'candidates':>11}{'replayed':>10}{'exact':>8}{'not exact':>11}{'nonce ahead':>13}",
        ]
        for src, row in s["by_source"].items():
            lines.append(
                f"{src:<17}{row['candidates']:>11}{row['replayed']:>10}{row['exact']:>8}"
                f"{row['not_exact']:>11}{row['nonce_ahead']:>13}"
            )
        lines.append(
            f"{'total':<17}{s['candidates']:>11}{s['replayed']:>10}{s['exact']:>8}{s['not_exact']:>11}"
            f"{s['nonce_ahead']:>13}"
        )
        if "by_route" in s:
            lines += ["", f"{'route kind':<19}{'swaps':>7}{'post-states':>13}{'reverts':>9}{'replayed':>10}"
                          f"{'exact':>8}{'not exact':>11}"]
            for kind, row in s["by_route"].items():
                lines.append(f"{kind:<19}{row['swaps_sent']:>7}{row['post_states']:>13}{row['victim_reverts']:>9}"
                             f"{row['replayed']:>10}{row['exact']:>8}{row['not_exact']:>11}")
        if "by_venue_pair" in s:
            lines += ["", f"{'venue pair':<19}{'replayed':>10}{'validated':>11}{'exact':>8}{'not exact':>11}"]
            for vp, row in s["by_venue_pair"].items():
                lines.append(f"{vp:<19}{row['replayed']:>10}{row['validator_passed']:>11}{row['exact']:>8}"
                             f"{row['not_exact']:>11}")
        v = s["validator"]
        lines += [
            "",
            f"validator: passed {v['passed']} (exact on chain {v['passed_exact']}), "
            f"rejected {v['rejected']} (exact on chain {v['rejected_exact']}) {v['rejected_by_reason']}",
        ]

        def lat(name: str, d: dict[str, Any]) -> str:
            return f"{name:<24} n={d['n']:<6} p50 {d['p50_ms']:8.3f} ms   p90 {d['p90_ms']:8.3f} ms   max {d['max_ms']:8.3f} ms"

        lat_ = s["latency"]
        lines += [
            lat("sizing (on_victim)" if "victim_simulation" not in lat_ else "sizing (on_post_state)",
                lat_["sizing_on_victim"]),
            *([lat("victim simulation", lat_["victim_simulation"])] if "victim_simulation" in lat_ else []),
            lat("block_arb (on_head)", lat_["block_arb_on_head"]),
            lat("validation", lat_["validation"]),
            lat("replay (chain)", lat_["replay"]),
        ]
        if s["first_mismatches"]:
            lines += ["", "first mismatches:"]
            lines += [f"  {m}" for m in s["first_mismatches"]]
        lines.append("")
        lines.append(f"gross predicted = realised on {s['exact']}/{s['replayed']} replayed candidates; "
                     f"realised total {s['realised_gross_wei']} wei")
        return "\n".join(lines)


@attrs.define
class ReplayHarness:
    """Drives the devnet block by block, finds candidates with the real strategies, replays each.

    Args:
        rpc: the devnet node (no one else may mine on it while this runs).
        info: the deployment.
        seed: the victim traffic's random stream.
        txs_per_block: victim transactions sent per block.
        validate: run the real :class:`Validator` before each replay (its
            latency is what validation costs on the hot path).
        tip_share_bps: the bundle builder's tip share.
        chain_block_time_s: each block's timestamp is its parent's plus this
            (mainnet's 12 by default), for the replay blocks and the real ones
            alike, so that every block moves the pairs' price accumulators as
            on a live chain; 0 leaves timestamps to anvil (wall clock, and
            blocks mined within one second share it).
    """

    rpc: RpcClient
    info: DevnetInfo
    seed: int = 1
    txs_per_block: int = 10
    validate: bool = True
    tip_share_bps: int = DEFAULT_TIP_SHARE_BPS
    chain_block_time_s: int = 12
    routes: RouteContracts | None = None
    mix: dict[RouteKind, float] | None = None
    simulate: bool = False
    #: Victim swaps this many times bigger (``--victim-scale``; pair it with a deep deployment).
    victim_scale: int = 1
    #: The V3 deployment: configure it as a DEX and read its pools every head (needs ``simulate``).
    v3: V3DevnetInfo | None = None
    #: Swaps per block the harness itself sends through the V3 SwapRouter.
    v3_victims_per_block: int = 0

    _sim: VictimSimulator | None = attrs.field(default=None, init=False)
    _v3book: V3PoolBook | None = attrs.field(default=None, init=False)
    _v3_rng: random.Random = attrs.field(init=False)
    _v3_sent: int = attrs.field(default=0, init=False)
    _by_venue: Counter[str] = attrs.field(factory=Counter, init=False)
    _by_route: Counter[str] = attrs.field(factory=Counter, init=False)
    _sim_s: list[float] = attrs.field(factory=list, init=False)
    _book: PoolBook = attrs.field(init=False)
    _backrun: BackrunStrategy = attrs.field(init=False)
    _block_arb: BlockArbStrategy = attrs.field(init=False)
    _validator: Validator = attrs.field(init=False)
    _replayer: CandidateReplayer = attrs.field(init=False)
    _traffic: VictimTraffic = attrs.field(init=False)
    _routers: frozenset[str] = attrs.field(init=False)
    _records: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    _c: Counter[str] = attrs.field(factory=Counter, init=False)
    _sizing_s: list[float] = attrs.field(factory=list, init=False)
    _on_head_s: list[float] = attrs.field(factory=list, init=False)
    _validation_s: list[float] = attrs.field(factory=list, init=False)
    _replay_s: list[float] = attrs.field(factory=list, init=False)
    _rejections: Counter[str] = attrs.field(factory=Counter, init=False)
    _mismatches: list[str] = attrs.field(factory=list, init=False)
    _started: float = attrs.field(default=0.0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.txs_per_block < 0:
            raise ValueError(f"txs_per_block must be >= 0, got {self.txs_per_block!r}")
        if self.chain_block_time_s < 0:
            raise ValueError(f"chain_block_time_s must be >= 0, got {self.chain_block_time_s!r}")
        if self.v3 is not None and not self.simulate:
            raise ValueError("replay: V3 victims are found by simulation only (simulate=True)")
        if self.v3_victims_per_block < 0 or (self.v3_victims_per_block and self.v3 is None):
            raise ValueError("v3_victims_per_block must be >= 0, and needs the V3 deployment")
        chain = self.info.chain_config if self.v3 is None else v3_chain(self.info, self.v3)
        searcher = self.info.searcher_address
        self._book = PoolBook(self.rpc, chain)
        self._v3_rng = random.Random(f"v3-victims-{self.seed}")
        if self.v3 is not None:
            self._v3book = V3PoolBook(self.rpc)
            self._v3book.track(list(self.v3.pools))
        self._backrun = BackrunStrategy(chain, self._book, searcher=searcher, v3book=self._v3book)
        self._block_arb = BlockArbStrategy(chain, self._book, searcher=searcher)
        self._validator = Validator(self.rpc, searcher=searcher, weth=self.info.weth, enabled=self.validate)
        account = load_key_file(self.info.searcher_key_file, "AETHER_SIGNER_KEY_FILE")
        if account.address.lower() != searcher:
            raise ConfigError("replay: the searcher key file does not belong to the devnet's searcher account")
        builder = BundleBuilder(account, self.info.chain_id, tip_share_bps=self.tip_share_bps, nonces=NonceTracker())
        self._replayer = CandidateReplayer(self.rpc, self.info.weth, builder)
        self._traffic = VictimTraffic(self.rpc, self.info, seed=self.seed, routes=self.routes, mix=self.mix,
                                      size_scale=self.victim_scale,
                                      fresh_senders=self.simulate)
        if self.simulate:
            self._sim = VictimSimulator(self.rpc, self._book, timeout_s=10.0, v3book=self._v3book)
        self._routers = frozenset(d.router.lower() for d in chain.dexes)

    # ------------------------------------------------------------------ driving

    async def run(self, *, duration_s: float, block_time_s: float = 0.0, max_blocks: int | None = None,
                  progress: TextIO | None = None) -> ReplayReport:
        """Run blocks until ``duration_s`` (trio clock) has passed or ``max_blocks`` were mined.

        Args:
            block_time_s: pace blocks at most this often (0: as fast as the work allows).
            progress: a line every 30 s goes here.

        Raises:
            NodeError: the node failed in a way that leaves the chain unknown
                (a snapshot that will not revert, a block that will not mine).
        """
        self._started = trio.current_time()
        end = self._started + duration_s
        next_at = self._started
        next_note = self._started + 30.0
        while trio.current_time() < end and (max_blocks is None or self._c["blocks"] < max_blocks):
            await self.step()
            now = trio.current_time()
            if progress is not None and now >= next_note:
                next_note += 30.0
                print(
                    f"replay: {now - self._started:5.0f} s, {self._c['blocks']} blocks, "
                    f"{self._c['replayed']} replayed, {self._c['exact']} exact, {self._c['not_exact']} not exact",
                    file=progress,
                    flush=True,
                )
            next_at += block_time_s
            if next_at > now:
                await trio.sleep_until(min(next_at, end))
            else:
                next_at = now
        return self.report(seconds=trio.current_time() - self._started)

    async def step(self) -> None:
        """One block: tick, block-driven candidates, a batch of victims and theirs, then mine the batch."""
        head = head_from_rpc(await self.rpc.call("eth_getBlockByNumber", ["latest", False]), seen_at=trio.current_time())
        extra = await self._book.refresh(head.number, balance_calls(self.info.searcher_address, self.info.weth,
                                                                      hex(head.number)))
        vals = [None if isinstance(v, RpcError) else _int(v) for v in extra]
        inventory, searcher_nonce = vals[1] or 0, vals[2]
        if searcher_nonce is None:
            raise NodeError(f"replay: the searcher's nonce at head {head.number} is unavailable")
        if self._v3book is not None:
            failed = await self._v3book.refresh_tracked(head.number)
            self._c["v3_pool_unreadable"] += len(failed)

        t0 = time.perf_counter()
        found = await self._block_arb.on_head(head, inventory_wei=inventory)
        self._on_head_s.append(time.perf_counter() - t0)
        for r in found:
            if isinstance(r, Candidate):
                await self._check(r, head, searcher_nonce, kind=None)
            else:
                self._rejections[f"block_arb:{r.reason}"] += 1

        sent = []
        for _ in range(self.txs_per_block):
            try:
                sent.append(await self._traffic.send_tx())
            except NodeError:
                self._c["victim_refused"] += 1
        self._c["victim_txs_sent"] += len(sent)
        raws: list[bytes] = []
        victims: list[tuple[PendingTx, str]] = []
        swaps: list[tuple[PendingTx, str]] = []
        if sent:
            objs = await self.rpc.batch([("eth_getTransactionByHash", ["0x" + s.hash.hex()]) for s in sent])
            for s, obj in zip(sent, objs, strict=True):
                if isinstance(obj, RpcError) or obj is None:
                    self._c["pending_missing"] += 1
                    continue
                try:
                    tx = decode_pending_tx(obj, seen_at=trio.current_time(), first_seen_ns=time.time_ns(),
                                           chain_id=self.info.chain_id)
                except DecodeError as exc:
                    self._c["pending_undecodable"] += 1
                    self._rejections[f"intake:{exc.reason}"] += 1
                    raw = await self.rpc.call("eth_getRawTransactionByHash", ["0x" + s.hash.hex()])
                    raws.append(bytes.fromhex(str(raw)[2:]))
                    continue
                raws.append(tx.raw)
                if (tx.to or "").lower() in self._routers:
                    victims.append((tx, s.kind))
                if s.kind != "transfer":
                    self._by_route[f"{s.route_kind}:sent"] += 1
                    swaps.append((tx, s.route_kind))
        self._c["router_victims"] += len(victims)
        for tx in await self._send_v3_victims(head):
            raws.append(tx.raw)
            swaps.append((tx, V3_VICTIM_KIND))

        dirty = False
        if self._sim is not None:
            for tx, route_kind in swaps:
                t0 = time.perf_counter()
                post = await self._sim.simulate(tx, head)
                self._sim_s.append(time.perf_counter() - t0)
                if isinstance(post, Rejection):
                    self._rejections[f"mempool_backrun:{post.reason}"] += 1
                    self._by_route[f"{route_kind}:{post.reason}"] += 1
                    continue
                self._by_route[f"{route_kind}:post_states"] += 1
                t0 = time.perf_counter()
                backruns = await self._backrun.on_post_state(tx, head, post, inventory_wei=inventory)
                self._sizing_s.append(time.perf_counter() - t0)
                if isinstance(backruns, Rejection):
                    self._rejections[f"mempool_backrun:{backruns.reason}"] += 1
                    continue
                for cand in backruns:
                    dirty = True
                    await self._check(cand, head, searcher_nonce, kind=route_kind, route_kind=route_kind)
            await self._mine_batch(raws, head, dirty=dirty)
            return
        for tx, kind in victims:
            t0 = time.perf_counter()
            result = await self._backrun.on_victim(tx, head, inventory_wei=inventory)
            self._sizing_s.append(time.perf_counter() - t0)
            if isinstance(result, Rejection):
                self._rejections[f"mempool_backrun:{result.reason}"] += 1
                continue
            dirty = True
            await self._check(result, head, searcher_nonce, kind=kind)
        await self._mine_batch(raws, head, dirty=dirty)

    async def _send_v3_victims(self, head: Head) -> list[PendingTx]:
        """Send this block's own SwapRouter victims (ETH in), each from a fresh funded account."""
        if self.v3 is None or not self.v3_victims_per_block:
            return []
        out: list[PendingTx] = []
        for _ in range(self.v3_victims_per_block):
            key = self._v3_rng.choice(self.v3.pools)
            token = key.token1 if key.token0 == self.info.weth else key.token0
            eth_in = self._v3_rng.randint(1, 30) * 10**18 * self.victim_scale
            account = victim_account(self.seed, _V3_VICTIM_BASE + self._v3_sent)
            self._v3_sent += 1
            sender = account.address.lower()
            await self.rpc.call("anvil_setBalance", [sender, hex(eth_in + 10**18)])
            data = with_eth_refund(
                encode_exact_input_single(self.info.weth, token, key.fee, sender, head.timestamp + 600, eth_in, 0))
            signed = account.sign_transaction({
                "type": 2, "chainId": self.info.chain_id, "nonce": 0, "to": to_checksum_address(self.v3.router),
                "value": eth_in, "data": data, "gas": 600_000, "maxFeePerGas": 200 * 10**9,
                "maxPriorityFeePerGas": 2 * 10**9,
            })
            try:
                h = await self.rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
                obj = await self.rpc.call("eth_getTransactionByHash", [h])
                tx = decode_pending_tx(obj, seen_at=trio.current_time(), first_seen_ns=time.time_ns(),
                                       chain_id=self.info.chain_id)
            except (NodeError, DecodeError):
                self._c["v3_victim_refused"] += 1
                continue
            self._c["v3_victims_sent"] += 1
            self._by_route[f"{V3_VICTIM_KIND}:sent"] += 1
            out.append(tx)
        return out

    def _next_timestamp(self, head: Head) -> int | None:
        return head.timestamp + self.chain_block_time_s if self.chain_block_time_s else None

    async def _mine_batch(self, raws: list[bytes], head: Head, *, dirty: bool) -> None:
        """Put the batch back in the pool (in its order) if a replay emptied it, and mine it."""
        if dirty:
            await self.rpc.call("anvil_dropAllTransactions", [])
            for raw in raws:
                try:
                    await self.rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
                except RpcError:
                    self._c["batch_resend_refused"] += 1
        await self.rpc.call("evm_mine", _mine_params(self._next_timestamp(head)))
        block = await self.rpc.call("eth_getBlockByNumber", [hex(head.number + 1), False])
        if block is None:
            raise NodeError(f"replay: block {head.number + 1} was not mined")
        self._c["blocks"] += 1
        self._c["batch_txs_mined"] += len(block["transactions"])
        if len(block["transactions"]) != len(raws):
            self._c["batch_short_blocks"] += 1

    async def _check(self, c: Candidate, head: Head, searcher_nonce: int, *, kind: str | None,
                     route_kind: str | None = None) -> None:
        """Validate (timed), replay, and record one candidate."""
        src = c.source
        self._c[f"{src}:candidates"] += 1
        verdict = "off"
        vdetail = ""
        vms: float | None = None
        if self._validator.enabled:
            t0 = time.perf_counter()
            checked = await self._validator.validate(c)
            dt = time.perf_counter() - t0
            self._validation_s.append(dt)
            vms = _ms(dt)
            if isinstance(checked, Candidate):
                c, verdict = checked, "passed"
            else:
                verdict, vdetail = checked.reason, checked.detail
        out = await self._replayer.replay(c, head, searcher_nonce=searcher_nonce, timestamp=self._next_timestamp(head))
        self._replay_s.append(out.seconds)
        self._c["replayed"] += 1
        self._c[f"{src}:replayed"] += 1
        self._c["exact" if out.exact else "not_exact"] += 1
        self._c[f"{src}:{'exact' if out.exact else 'not_exact'}"] += 1
        if out.nonce_ahead:
            self._c["nonce_ahead"] += 1
            self._c[f"{src}:nonce_ahead"] += 1
        if out.realised_wei is not None and out.exact:
            self._c["realised_gross_wei"] += out.realised_wei
        vp = venue_pair(c.route)
        self._by_venue[f"{vp}:replayed"] += 1
        self._by_venue[f"{vp}:{'exact' if out.exact else 'not_exact'}"] += 1
        if verdict == "passed":
            self._by_venue[f"{vp}:validator_passed"] += 1
        if route_kind is not None:
            self._by_route[f"{route_kind}:replayed"] += 1
            self._by_route[f"{route_kind}:{'exact' if out.exact else 'not_exact'}"] += 1
        if verdict != "off":
            self._c[f"validator:{'passed' if verdict == 'passed' else 'rejected'}:{out.exact}"] += 1
            if verdict != "passed":
                self._c[f"validator_rejected:{verdict}"] += 1
        rec = {
            "source": src,
            "head": head.number,
            "target_block": c.target_block,
            "victim": c.victim_hash_hex,
            "victim_kind": kind,
            "route_kind": route_kind,
            "token": c.route[0].token_out,
            "dexes": [h.dex for h in c.route],
            "venue_pair": vp,
            "fees": [h.fee for h in c.route],
            "amount_in_wei": c.amount_in,
            "expected_gross_wei": c.expected_gross_profit_wei,
            "realised_wei": out.realised_wei,
            "exact": out.exact,
            "detail": out.detail,
            "nonce_ahead": out.nonce_ahead,
            "validation": verdict,
            "validation_detail": vdetail,
            "validation_ms": vms,
            "replay_ms": _ms(out.seconds),
        }
        self._records.append(rec)
        if not out.exact and len(self._mismatches) < _FIRST_MISMATCHES:
            self._mismatches.append(
                f"{src} head {head.number} victim {c.victim_hash_hex} ({kind}): {out.detail} [validation {verdict}]"
            )

    # ------------------------------------------------------------------ results

    def report(self, *, seconds: float) -> ReplayReport:
        c = self._c
        by_source = {
            src: {
                "candidates": c[f"{src}:candidates"],
                "replayed": c[f"{src}:replayed"],
                "exact": c[f"{src}:exact"],
                "not_exact": c[f"{src}:not_exact"],
                "nonce_ahead": c[f"{src}:nonce_ahead"],
            }
            for src in ("mempool_backrun", "block_arb")
        }
        summary: dict[str, Any] = {
            "seed": self.seed,
            "validation": self.validate,
            "txs_per_block": self.txs_per_block,
            "tip_share_bps": self.tip_share_bps,
            "chain_block_time_s": self.chain_block_time_s,
            "seconds": round(seconds, 3),
            "blocks": c["blocks"],
            "victim_txs_sent": c["victim_txs_sent"],
            "victim_refused": c["victim_refused"],
            "router_victims": c["router_victims"],
            "pending_missing": c["pending_missing"],
            "pending_undecodable": c["pending_undecodable"],
            "batch_txs_mined": c["batch_txs_mined"],
            "batch_short_blocks": c["batch_short_blocks"],
            "batch_resend_refused": c["batch_resend_refused"],
            "candidates": sum(r["candidates"] for r in by_source.values()),
            "replayed": c["replayed"],
            "exact": c["exact"],
            "not_exact": c["not_exact"],
            "nonce_ahead": c["nonce_ahead"],
            "realised_gross_wei": c["realised_gross_wei"],
            "by_source": by_source,
            "validator": {
                "passed": c["validator:passed:True"] + c["validator:passed:False"],
                "passed_exact": c["validator:passed:True"],
                "passed_not_exact": c["validator:passed:False"],
                "rejected": c["validator:rejected:True"] + c["validator:rejected:False"],
                "rejected_exact": c["validator:rejected:True"],
                "rejected_not_exact": c["validator:rejected:False"],
                "rejected_by_reason": {k.split(":", 1)[1]: v for k, v in sorted(c.items())
                                       if k.startswith("validator_rejected:")},
            },
            "rejections": dict(sorted(self._rejections.items())),
            "latency": {
                "sizing_on_victim": _percentiles(self._sizing_s),
                "block_arb_on_head": _percentiles(self._on_head_s),
                "validation": _percentiles(self._validation_s),
                "replay": _percentiles(self._replay_s),
            },
            "first_mismatches": list(self._mismatches),
            "by_venue_pair": {
                vp: {
                    "replayed": self._by_venue[f"{vp}:replayed"],
                    "validator_passed": self._by_venue[f"{vp}:validator_passed"],
                    "exact": self._by_venue[f"{vp}:exact"],
                    "not_exact": self._by_venue[f"{vp}:not_exact"],
                }
                for vp in VENUE_PAIRS
            },
        }
        if self.v3 is not None:
            summary["v3"] = {
                "pools": len(self.v3.pools),
                "fee_tiers": list(self.v3.fee_tiers),
                "own_victims_sent": c["v3_victims_sent"],
                "own_victims_refused": c["v3_victim_refused"],
                "pool_reads_failed": c["v3_pool_unreadable"],
                "inexact_sizings": self._backrun.statistics().inexact_sizings,
            }
        if self.simulate:
            summary["detect"] = "simulate"
            summary["latency"]["victim_simulation"] = _percentiles(self._sim_s)
            summary["by_route"] = {
                k: {
                    "swaps_sent": self._by_route[f"{k}:sent"],
                    "post_states": self._by_route[f"{k}:post_states"],
                    "victim_reverts": self._by_route[f"{k}:victim_reverts"],
                    "replayed": self._by_route[f"{k}:replayed"],
                    "exact": self._by_route[f"{k}:exact"],
                    "not_exact": self._by_route[f"{k}:not_exact"],
                }
                for k in (*(r.value for r in RouteKind), *((V3_VICTIM_KIND,) if self.v3_victims_per_block else ()))
            }
        return ReplayReport(summary=summary, records=tuple(self._records))


async def run_replay(
    *,
    duration_s: float,
    seed: int = 1,
    txs_per_block: int = 10,
    block_time_s: float = 0.0,
    validate: bool = True,
    chain_block_time_s: int = 12,
    max_blocks: int | None = None,
    workdir: Path | None = None,
    progress: TextIO | None = None,
    simulate: bool = False,
    mix: dict[RouteKind, float] | None = None,
    liquidity_scale: int = 1,
    victim_scale: int = 1,
    v3: bool = False,
    v3_victims_per_block: int = 0,
) -> ReplayReport:
    """Start anvil, deploy, run the harness, stop anvil.

    Args:
        duration_s: how long to drive blocks (trio clock).
        seed: deployment (keys, prices) and traffic.
        workdir: key file, chain config and anvil log (default: a temporary directory).
    """
    with tempfile.TemporaryDirectory(prefix="aether-replay-") as tmp:
        wd = (workdir or Path(tmp)).resolve()
        wd.mkdir(parents=True, exist_ok=True)
        async with run_anvil(log_path=wd / "anvil.log") as node, open_rpc(node.rpc_url, timeout=30.0) as rpc:
            info = await deploy(rpc, wd, seed=seed, ws_url=node.ws_url, liquidity_scale=liquidity_scale)
            routes = None
            if mix is not None and any(w > 0 for k, w in mix.items() if k != RouteKind.ROUTER02):
                routes = await deploy_route_contracts(rpc, info)
            v3info = await deploy_v3(rpc, info) if v3 else None
            harness = ReplayHarness(rpc, info, seed=seed, txs_per_block=txs_per_block, validate=validate,
                                    chain_block_time_s=chain_block_time_s, routes=routes, mix=mix,
                                    simulate=simulate, victim_scale=victim_scale, v3=v3info,
                                    v3_victims_per_block=v3_victims_per_block)
            return await harness.run(duration_s=duration_s, block_time_s=block_time_s, max_blocks=max_blocks,
                                     progress=progress)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="replay_candidates",
        description="Replay every candidate found on a fresh devnet as [victim, backrun] and check "
        "that the chain pays exactly the predicted gross profit.",
    )
    p.add_argument("--duration", type=float, default=600.0, metavar="SECONDS", help="how long to run (default 600)")
    p.add_argument("--seed", type=int, default=1, help="deployment and traffic seed (default 1)")
    p.add_argument("--txs-per-block", type=int, default=10, help="victim transactions per block (default 10)")
    p.add_argument("--block-time", type=float, default=1.0, metavar="SECONDS",
                   help="start a block at most this often (default 1; 0: as fast as the work allows)")
    p.add_argument("--chain-block-time", type=int, default=12, metavar="SECONDS",
                   help="timestamp step between blocks on the chain (default 12; 0: anvil's wall clock)")
    p.add_argument("--max-blocks", type=int, default=None, help="stop after this many blocks")
    p.add_argument("--no-validate", action="store_true", help="skip the validator (measure the run without it)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON results (default reports/replay/replay_<utc>.json)")
    p.add_argument("--workdir", type=Path, default=None, help="devnet files and anvil log (default: a temp dir)")
    p.add_argument("--detect", choices=("simulate", "calldata"), default="simulate",
                   help="find victims by simulation, whatever they call (default), or by Router02 calldata only")
    p.add_argument("--route-mix", default=None, metavar="KIND=W,...",
                   help="swaps per route kind with --detect simulate (default router02=0.5,universal_router=0.3,"
                        "direct_multi_pair=0.2)")
    p.add_argument("--liquidity-scale", type=int, default=1, metavar="N", help="pools N times deeper (default 1)")
    p.add_argument("--victim-scale", type=int, default=1, metavar="N", help="victim swaps N times bigger (default 1)")
    p.add_argument("--v3", action="store_true",
                   help="deploy Uniswap V3 beside V2 and size cycles across V2 pairs and V3 fee tiers")
    p.add_argument("--v3-victims-per-block", type=int, default=None, metavar="N",
                   help="swaps per block the harness sends through the V3 SwapRouter (default 3 with --v3)")
    return p


def replay_main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the replay and print the table.

    Returns:
        0 when every replayed candidate was exact (and there was at least one),
        1 otherwise, 2 on a configuration error.
    """
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    if not 1 <= args.liquidity_scale <= 10_000 or not 1 <= args.victim_scale <= 10_000:
        print("replay: --liquidity-scale and --victim-scale must be whole numbers in 1..10000", file=sys.stderr)
        return 2
    if args.duration <= 0 or min(args.txs_per_block, args.block_time, args.chain_block_time) < 0:
        print("replay: --duration must be > 0, --txs-per-block, --block-time and --chain-block-time >= 0",
              file=sys.stderr)
        return 2
    simulate = args.detect == "simulate"
    v3_victims = args.v3_victims_per_block
    if v3_victims is None:
        v3_victims = 3 if args.v3 else 0
    if (args.v3 or v3_victims) and not (args.v3 and simulate and 0 <= v3_victims <= 1000):
        print("replay: --v3-victims-per-block needs --v3 and is 0..1000; --v3 needs --detect simulate",
              file=sys.stderr)
        return 2
    try:
        mix = (parse_mix(args.route_mix) if args.route_mix else dict(DEFAULT_MIX)) if simulate else None
    except ValueError as exc:
        print(f"replay: --route-mix: {exc}", file=sys.stderr)
        return 2
    if not simulate and args.route_mix:
        print("replay: --route-mix needs --detect simulate (calldata decoding sees Router02 only)", file=sys.stderr)
        return 2
    path = args.out or Path("reports/replay") / time.strftime("replay_%Y%m%dT%H%M%SZ.json", time.gmtime())
    try:
        report = trio.run(
            lambda: run_replay(
                duration_s=args.duration,
                seed=args.seed,
                txs_per_block=args.txs_per_block,
                block_time_s=args.block_time,
                validate=not args.no_validate,
                chain_block_time_s=args.chain_block_time,
                max_blocks=args.max_blocks,
                workdir=args.workdir,
                progress=sys.stderr,
                simulate=simulate,
                mix=mix,
                liquidity_scale=args.liquidity_scale,
                victim_scale=args.victim_scale,
                v3=args.v3,
                v3_victims_per_block=v3_victims,
            )
        )
    except ConfigError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except AetherError as exc:
        print(f"replay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(report.to_json())
    os.replace(tmp, path)
    print(report.table(), file=out)
    print(f"results: {path}", file=out, flush=True)
    if not report.ok:
        print("replay: FAILED: " + ("no candidate was replayed" if report.summary["replayed"] == 0
                                    else f"{report.summary['not_exact']} candidate(s) not exact"), file=out)
        return 1
    return 0
