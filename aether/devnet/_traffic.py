"""Victim traffic: the swaps (and noise) that aether's mempool path should see.

Many deterministic victim accounts send swaps through one of three route kinds
(:class:`RouteKind`, split by a configurable mix): Router02 (both DEXes), the real
Uniswap Universal Router (``WRAP_ETH``/``V2_SWAP_EXACT_IN``/``_OUT``/``UNWRAP_WETH``,
the ``uniswap`` DEX) and direct multi-pair calls from MultiSwap (pairs of both
DEXes in one transaction). With the V3 devnet (``v3=``) two more
(:class:`V3RouteKind`) trade its pools: the real V3 SwapRouter
(``exactInputSingle``, ``exactInput`` over token -> WETH -> token paths, and
``multicall`` with ``unwrapWETH9`` for ETH out) and the Universal Router's
``V3_SWAP_EXACT_IN``. V3 victims are exact-in (an exact-out shape is sent as its
exact-in twin) and are quoted by QuoterV2 on the node's pending block, so a
victim is sized on the state the earlier victims of the block leave. Each swap has one of the shapes of the six
non-fee-on-transfer Router02 swap functions, over single- and multi-hop paths,
with ETH-worth sizes drawn from a heavy-tailed (lognormal) distribution. About
one swap in eight carries an ``amountOutMin``/``amountInMax`` it cannot meet and
reverts on slippage, and about 15% of transactions are plain ETH transfers.
Transaction types 0 (legacy, EIP-155), 1 (EIP-2930, sometimes with an access
list) and 2 (EIP-1559) are mixed. Everything is signed locally with a locally
tracked nonce and sent with ``eth_sendRawTransaction``.

Which pool a swap goes through is weighted towards the trade that pulls that
pool back to the reference price the devnet was seeded with. Without this the
two DEXes would random-walk apart within an hour (nobody arbitrages them while
aether runs in shadow) and every swap would leave a huge gap; with it, gaps stay
in the range a real market shows while big swaps still open gaps worth taking.

Floats appear only in choosing shapes (which kind, which pool, a size draw); a
size is turned into integer wei before any amount is computed, and all amount
math (quotes, slippage bounds) is integer, mirroring ``UniswapV2Library``.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Mapping, Sequence
from typing import IO, Any

import attrs
import orjson
import trio
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from .._errors import BadNodeData, NodeError, RpcError
from ..chain import RpcClient
from ..dex._v3pool import V3PoolKey
from ._deploy import DevnetInfo, PairInfo, selector, victim_account
from ._universal import (
    ADDRESS_THIS,
    MSG_SENDER,
    AnyRouteKind,
    RouteContracts,
    RouteKind,
    V3RouteKind,
    encode_execute,
    encode_multiswap,
    encode_v3_path,
    route_kind as _route_kind,
    unwrap_weth,
    v2_swap_exact_in,
    v2_swap_exact_out,
    v3_swap_exact_in,
    wrap_eth,
)
from ._v3 import V3_DEX_NAME, V3DevnetInfo

__all__ = [
    "DEFAULT_MIX",
    "DEFAULT_MIX_V3",
    "ETH_IN_KINDS",
    "ETH_OUT_KINDS",
    "KINDS",
    "SWAP_KINDS",
    "parse_route_mix",
    "SentTx",
    "TrafficStatistics",
    "VictimTraffic",
    "parse_mix",
    "with_eth_refund",
]

ETHER = 10**18
SWAP_KINDS = (
    "swapExactTokensForTokens",
    "swapTokensForExactTokens",
    "swapExactETHForTokens",
    "swapTokensForExactETH",
    "swapExactTokensForETH",
    "swapETHForExactTokens",
)
KINDS = (*SWAP_KINDS, "transfer")
ETH_IN_KINDS = frozenset({"swapExactETHForTokens", "swapETHForExactTokens"})
ETH_OUT_KINDS = frozenset({"swapTokensForExactETH", "swapExactTokensForETH"})
_EXACT_OUT = frozenset({"swapTokensForExactTokens", "swapTokensForExactETH", "swapETHForExactTokens"})
_SIGNATURES = {
    "swapExactTokensForTokens": "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
    "swapTokensForExactTokens": "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)",
    "swapExactETHForTokens": "swapExactETHForTokens(uint256,address[],address,uint256)",
    "swapTokensForExactETH": "swapTokensForExactETH(uint256,uint256,address[],address,uint256)",
    "swapExactTokensForETH": "swapExactTokensForETH(uint256,uint256,address[],address,uint256)",
    "swapETHForExactTokens": "swapETHForExactTokens(uint256,address[],address,uint256)",
}
_SELECTORS = {k: selector(v) for k, v in _SIGNATURES.items()}
_GET_RESERVES = "0x" + selector("getReserves()").hex()
_RESERVES_SLOT = "0x" + "00" * 31 + "08"
_SLOT0 = "0x" + selector("slot0()").hex()
_SLOT0_SLOT = "0x" + "00" * 32
_EXACT_INPUT_SINGLE = selector("exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))")
_EXACT_INPUT = selector("exactInput((bytes,address,uint256,uint256,uint256))")
_MULTICALL = selector("multicall(bytes[])")
_UNWRAP_WETH9 = selector("unwrapWETH9(uint256,address)")
_REFUND_ETH = selector("refundETH()")


def with_eth_refund(swap: bytes) -> bytes:
    """A SwapRouter ETH-in swap as wallets send it: ``multicall(swap, refundETH())``.

    ETH a partial fill leaves in the router comes back to the sender. Left there, it would pay
    the next WETH-in swap through the router (``PeripheryPayments.pay`` wraps the router's own
    ETH first), ours included: a devnet no real router is.
    """
    return _MULTICALL + abi_encode(["bytes[]"], [[swap, _REFUND_ETH]])
_QUOTE_EXACT_INPUT = selector("quoteExactInput(bytes,uint256)")
#: An exact-out shape sent through a V3 route goes as its exact-in twin (same ends).
_EXACT_IN_TWIN = {
    "swapTokensForExactTokens": "swapExactTokensForTokens",
    "swapTokensForExactETH": "swapExactTokensForETH",
    "swapETHForExactTokens": "swapExactETHForTokens",
}
#: V3 victims are this many times the V2 size draw: the seeded V3 pools hold several
#: times the V2 pairs' depth near the price, and a victim that moves its pool less
#: than the two legs' fees leaves nothing to backrun.
_V3_SIZE_FACTOR = 4

# Shapes (probabilities): 15% transfers; of all transactions ~10% revert on purpose.
_P_TRANSFER = 0.15
_P_REVERT_OF_SWAPS = 0.10 / (1 - _P_TRANSFER)
# Sizes: lognormal ETH-worth, median 0.6 ETH, long right tail, clamped.
_SIZE_MEDIAN_ETH = 0.6
_SIZE_SIGMA = 1.3
_SIZE_MIN_MICRO = 5_000  # 0.005 ETH, in micro-ETH
_SIZE_MAX_MICRO = 25_000_000  # 25 ETH
# Reversion strength: a pool 2% off its reference price is e^1 times as likely
# to get the trade that pulls it back as one at the reference.
_REVERSION_K = 50.0

#: Share of swaps per route kind when the extra route contracts are deployed
#: (``--route-mix`` / ``AETHER_DEVNET_ROUTE_MIX`` change it). Mainnet's V2 flow is mostly
#: Universal Router today; Router02 stays the largest here so the older figures keep
#: their meaning.
DEFAULT_MIX: dict[RouteKind, float] = {
    RouteKind.ROUTER02: 0.5,
    RouteKind.UNIVERSAL_ROUTER: 0.3,
    RouteKind.DIRECT: 0.2,
}
#: The default mix when the V3 devnet is deployed (``aether devnet`` without ``--no-v3``):
#: a third of the swaps trade V3 pools, the V2 routes keep their proportions among themselves.
DEFAULT_MIX_V3: dict[AnyRouteKind, float] = {
    RouteKind.ROUTER02: 0.35,
    RouteKind.UNIVERSAL_ROUTER: 0.2,
    RouteKind.DIRECT: 0.15,
    V3RouteKind.SWAP_ROUTER: 0.2,
    V3RouteKind.UNIVERSAL_ROUTER: 0.1,
}


def parse_route_mix(text: str) -> dict[AnyRouteKind, float]:
    """``router02=5,universal_router=3,direct_multi_pair=2,v3_swap_router=2`` -> shares (normalised).

    Kinds of both families (:class:`RouteKind`, :class:`V3RouteKind`).

    Raises:
        ValueError: an unknown kind, a negative or non-numeric weight, or all zero.
    """
    mix: dict[AnyRouteKind, float] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        try:
            kind = _route_kind(name.strip())
        except ValueError as exc:
            raise ValueError(f"route mix: {exc}") from None
        try:
            w = float(weight) if sep else float("nan")
        except ValueError:
            w = float("nan")
        if not w >= 0 or math.isinf(w):
            raise ValueError(f"route mix: {part.strip()!r}: expected KIND=WEIGHT with a weight >= 0")
        mix[kind] = w
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("route mix: every weight is zero")
    return {k: w / total for k, w in mix.items()}


def parse_mix(text: str) -> dict[RouteKind, float]:
    """``router02=5,universal_router=3,direct_multi_pair=2`` -> shares (normalised); V2 route kinds only.

    Raises:
        ValueError: an unknown kind (a V3 kind included), a negative or non-numeric weight, or all zero.
    """
    mix = parse_route_mix(text)
    v3 = [k.value for k in mix if not isinstance(k, RouteKind)]
    if v3:
        raise ValueError(f"route mix: {', '.join(v3)}: no V3 pools here; expected one of "
                         f"{', '.join(k.value for k in RouteKind)}")
    return {k: w for k, w in mix.items() if isinstance(k, RouteKind)}


@attrs.frozen
class SentTx:
    """One victim transaction as sent."""

    hash: bytes
    kind: str
    sender: str
    tx_type: int
    router: str | None = None
    dex: str | None = None
    path: tuple[str, ...] = ()
    expect_revert: bool = False
    size_wei: int = 0
    #: Which contract the victim calls, and the tracked pairs it moves (in order) unless it reverts.
    route_kind: str = RouteKind.ROUTER02.value
    pools: tuple[str, ...] = ()
    #: An earlier victim of the same block moves one of these pools: this one was quoted
    #: on the state that victim leaves, so on the head alone it may do otherwise.
    after_pending: bool = False
    #: V3 victims: initialised ticks the swap crosses, as QuoterV2 quoted it (0 for V2).
    ticks_crossed: int = 0


@attrs.frozen
class TrafficStatistics:
    sent: int
    by_kind: tuple[tuple[str, int], ...]
    expected_reverts: int
    refused: int
    by_type: tuple[tuple[int, int], ...]
    by_route: tuple[tuple[str, int], ...] = ()


def _amount_out(amount_in: int, r_in: int, r_out: int) -> int:
    fee_in = amount_in * 997
    return fee_in * r_out // (r_in * 1000 + fee_in)


def _amount_in(amount_out: int, r_in: int, r_out: int) -> int | None:
    if amount_out >= r_out:
        return None
    return r_in * amount_out * 1000 // ((r_out - amount_out) * 997) + 1


@attrs.frozen
class _Route:
    dex: str
    router: str
    path: tuple[str, ...]
    pairs: tuple[PairInfo, ...]


@attrs.frozen
class _V3Route:
    """Tokens in order and the V3 pool of each hop (token/WETH pools only, so at most two hops)."""

    path: tuple[str, ...]
    pools: tuple[V3PoolKey, ...]

    @property
    def encoded(self) -> bytes:
        return encode_v3_path(self.path, [p.fee for p in self.pools])


class VictimTraffic:
    """Sends victim transactions on the devnet.

    Args:
        rpc: the devnet node.
        info: what :func:`deploy` returned (victims are re-derived from ``info.seed``).
        seed: the traffic's own random stream (default: ``info.seed``).
        lock: held around each ``eth_sendRawTransaction`` so that the devnet's
            miner and local builder see a stable pool while assembling a block.
        history: how many recent :class:`SentTx` to keep (bounded).
        routes: the Universal Router and MultiSwap (:func:`deploy_route_contracts`);
            without them every swap goes through Router02.
        mix: share of swaps per :class:`RouteKind` (default :data:`DEFAULT_MIX` with
            ``routes``, else Router02 only).
        ground_truth: a text file to which one JSON line per sent transaction is
            written: its hash, route kind, shape, the pools it moves and whether it
            is meant to revert (what ``scripts/coverage.py`` scores aether against).
        fresh_senders: make victims independent of each other where possible (coverage
            runs use it): draw each sender among the accounts that sent nothing in the
            current or the previous block, so every victim is its sender's next
            transaction on the head a searcher sees it on, and prefer routes through
            pools no earlier victim of the block moved, so what the victim does on the
            head alone (where a backrun bundle puts it) is what it does in the block.
        transfer_share: share of plain ETH transfers (default 15%).
        size_scale: multiplies every victim's size draw (``aether devnet
            --victim-scale``: big victims on deep pools).
        v3: the V3 devnet (:func:`aether.devnet._v3.deploy_v3`); needed by the
            :class:`V3RouteKind` routes, and then the default mix is :data:`DEFAULT_MIX_V3`.
    """

    def __init__(
        self,
        rpc: RpcClient,
        info: DevnetInfo,
        *,
        seed: int | None = None,
        lock: trio.Lock | None = None,
        history: int = 1000,
        routes: RouteContracts | None = None,
        mix: Mapping[RouteKind, float] | Mapping[AnyRouteKind, float] | None = None,
        ground_truth: IO[str] | None = None,
        fresh_senders: bool = False,
        transfer_share: float = _P_TRANSFER,
        size_scale: int = 1,
        v3: V3DevnetInfo | None = None,
    ) -> None:
        if type(size_scale) is not int or size_scale < 1:
            raise ValueError(f"size_scale must be a whole number >= 1, got {size_scale!r}")
        self._size_scale = size_scale
        self.rpc = rpc
        self.routes = routes
        self.v3 = v3
        if mix is None:
            if routes is None:
                mix = {RouteKind.ROUTER02: 1.0}
            else:
                mix = DEFAULT_MIX_V3 if v3 is not None and routes.universal_v3_factory is not None else DEFAULT_MIX
        mix = dict[AnyRouteKind, float](mix.items())
        if routes is None and any(w > 0 for k, w in mix.items() if k not in (RouteKind.ROUTER02, V3RouteKind.SWAP_ROUTER)):
            raise ValueError("VictimTraffic: a route mix beyond router02 needs the route contracts (routes=...)")
        if v3 is None and any(w > 0 for k, w in mix.items() if isinstance(k, V3RouteKind)):
            raise ValueError("VictimTraffic: a V3 route kind in the mix needs the V3 devnet (v3=...)")
        if mix.get(V3RouteKind.UNIVERSAL_ROUTER, 0) > 0 and (routes is None or routes.universal_v3_factory is None):
            raise ValueError("VictimTraffic: universal_router_v3 needs a Universal Router wired to the V3 factory")
        self._mix = [(k, w) for k, w in mix.items() if w > 0]
        self._truth = ground_truth
        self._fresh = fresh_senders
        if not 0.0 <= transfer_share < 1.0:
            raise ValueError(f"VictimTraffic: transfer_share must be in [0, 1), got {transfer_share!r}")
        self._p_transfer = transfer_share
        self._last_block: dict[str, int] = {}
        self._touched: set[str] = set()  # pools moved by our swaps since the last block was read
        self.info = info
        self.lock = lock
        self._rng = random.Random(info.seed if seed is None else seed)
        self._accounts: list[LocalAccount] = [victim_account(info.seed, i) for i in range(len(info.victims))]
        if [a.address.lower() for a in self._accounts] != list(info.victims):
            raise ValueError("VictimTraffic: info.victims do not match the accounts derived from info.seed")
        self._nonces: dict[str, int] | None = None
        self._shadow: dict[str, tuple[int, int]] = {}
        self._shadow_block = -1
        self._ref = {info.weth: ETHER, **{t.address: u for t, u in zip(info.tokens, info.units_per_eth, strict=True)}}
        self._pair_by_key = {(p.dex, p.token0, p.token1): p for p in info.pairs}
        self._routes = self._all_routes()
        self._v3_routes = self._all_v3_routes()
        self._v3_sqrt: dict[str, int] = {}  # V3 pool -> sqrtPriceX96 at the last block read
        self.recent: collections.deque[SentTx] = collections.deque(maxlen=history)
        self._by_kind: collections.Counter[str] = collections.Counter()
        self._by_route: collections.Counter[str] = collections.Counter()
        self._by_type: collections.Counter[int] = collections.Counter()
        self._sent = 0
        self._expected_reverts = 0
        self._refused = 0

    def statistics(self) -> TrafficStatistics:
        return TrafficStatistics(
            sent=self._sent,
            by_kind=tuple(sorted(self._by_kind.items())),
            expected_reverts=self._expected_reverts,
            refused=self._refused,
            by_type=tuple(sorted(self._by_type.items())),
            by_route=tuple(sorted(self._by_route.items())),
        )

    # ------------------------------------------------------------------ routes

    def _pair(self, dex: str, a: str, b: str) -> PairInfo | None:
        t0, t1 = sorted((a, b))
        return self._pair_by_key.get((dex, t0, t1))

    def _all_routes(self) -> list[_Route]:
        weth = self.info.weth
        tokens = [t.address for t in self.info.tokens]
        paths: list[tuple[str, ...]] = []
        for t in tokens:
            paths += [(weth, t), (t, weth)]
        for a in tokens:
            for b in tokens:
                if a != b:
                    paths.append((a, weth, b))
                    paths.append((a, b))
                    paths += [(weth, a, b), (a, b, weth)]
        routes = []
        for dex in self.info.dexes:
            for path in paths:
                pairs = [self._pair(dex.name, x, y) for x, y in zip(path, path[1:])]
                if all(p is not None for p in pairs):
                    routes.append(_Route(dex.name, dex.router, path, tuple(p for p in pairs if p is not None)))
        return routes

    def _all_v3_routes(self) -> list[_V3Route]:
        if self.v3 is None:
            return []
        weth = self.info.weth
        by_token: dict[str, list[V3PoolKey]] = {}
        for p in self.v3.pools:
            if weth in (p.token0, p.token1):
                by_token.setdefault(p.token1 if p.token0 == weth else p.token0, []).append(p)
        routes: list[_V3Route] = []
        for t, pools in by_token.items():
            for p in pools:
                routes += [_V3Route((weth, t), (p,)), _V3Route((t, weth), (p,))]
        for a, pa_list in by_token.items():
            for b, pb_list in by_token.items():
                if a != b:
                    routes += [_V3Route((a, weth, b), (pa, pb)) for pa in pa_list for pb in pb_list]
        return routes

    def _v3_candidates(self, kind: str) -> list[_V3Route]:
        weth = self.info.weth
        if kind in ETH_IN_KINDS:
            return [r for r in self._v3_routes if r.path[0] == weth]
        if kind in ETH_OUT_KINDS:
            return [r for r in self._v3_routes if r.path[-1] == weth]
        return [r for r in self._v3_routes if r.path[0] != weth and r.path[-1] != weth]

    def _v3_weight(self, route: _V3Route) -> float:
        """Shape only, as :meth:`_weight`: how much this route pulls its V3 pools back to the reference."""
        dev_sum = 0.0
        for (x, y), pool in zip(zip(route.path, route.path[1:]), route.pools, strict=True):
            sqrt_p = self._v3_sqrt.get(pool.address, 0)
            if sqrt_p == 0:
                return 0.0
            p = (sqrt_p / 2**96) ** 2  # token1 per token0
            y_per_x = p if x == pool.token0 else 1.0 / p
            dev_sum += y_per_x * self._ref[x] / self._ref[y] - 1.0
        hop_penalty = 1.0 if len(route.path) == 2 else 0.35
        return hop_penalty * math.exp(max(-10.0, min(10.0, _REVERSION_K * dev_sum)))

    async def _v3_quote(self, route: _V3Route, amount_in: int) -> tuple[int, int] | None:
        """QuoterV2 ``quoteExactInput`` on the pending block: (amount out, initialised ticks crossed).

        None when the quoter reverts (a pool ran out of liquidity for this size).
        Raises BadNodeData on an answer that is not the quoter's shape.
        """
        assert self.v3 is not None
        data = _QUOTE_EXACT_INPUT + abi_encode(["bytes", "uint256"], [route.encoded, amount_in])
        try:
            reply = await self.rpc.call("eth_call", [{"to": self.v3.quoter, "data": "0x" + data.hex()}, "pending"])
        except RpcError:
            return None
        try:
            out, _prices, crossed, _gas = abi_decode(["uint256", "uint160[]", "uint32[]", "uint256"], bytes.fromhex(reply[2:]))
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            raise BadNodeData(f"victim traffic: unexpected QuoterV2 answer ({type(exc).__name__})") from exc
        return int(out), sum(int(c) for c in crossed)

    def _candidates(self, kind: str) -> list[_Route]:
        weth = self.info.weth
        if kind in ETH_IN_KINDS:
            return [r for r in self._routes if r.path[0] == weth]
        if kind in ETH_OUT_KINDS:
            return [r for r in self._routes if r.path[-1] == weth]
        return [r for r in self._routes if r.path[0] != weth and r.path[-1] != weth]

    def _weight(self, route: _Route, reserves: dict[str, tuple[int, int]]) -> float:
        """Shape only: how much this route pulls its pools back to the reference prices."""
        dev_sum = 0.0
        for (x, y), pair in zip(zip(route.path, route.path[1:]), route.pairs, strict=True):
            r0, r1 = reserves[pair.address]
            rx, ry = (r0, r1) if x == pair.token0 else (r1, r0)
            if rx == 0 or ry == 0:
                return 0.0
            # y per x in the pool vs. at the reference; selling x lowers it.
            dev_sum += (ry * self._ref[x]) / (rx * self._ref[y]) - 1.0
        hop_penalty = 1.0 if len(route.path) == 2 else 0.35
        return hop_penalty * math.exp(max(-10.0, min(10.0, _REVERSION_K * dev_sum)))

    # ------------------------------------------------------------------ sizes and quotes

    def _draw_size_wei(self) -> int:
        micro = int(self._rng.lognormvariate(math.log(_SIZE_MEDIAN_ETH * 1e6), _SIZE_SIGMA))
        return max(_SIZE_MIN_MICRO, min(_SIZE_MAX_MICRO, micro)) * 10**12 * self._size_scale

    @staticmethod
    def _quote_out(amount_in: int, route: _Route, reserves: dict[str, tuple[int, int]]) -> list[int]:
        """``getAmountsOut``: the amount at every step of the path."""
        amounts = [amount_in]
        for (x, _y), pair in zip(zip(route.path, route.path[1:]), route.pairs, strict=True):
            r0, r1 = reserves[pair.address]
            r_in, r_out = (r0, r1) if x == pair.token0 else (r1, r0)
            amounts.append(_amount_out(amounts[-1], r_in, r_out))
        return amounts

    @staticmethod
    def _quote_in(amount_out: int, route: _Route, reserves: dict[str, tuple[int, int]]) -> list[int] | None:
        """``getAmountsIn``: the amount at every step of the path, or None if a pool is too shallow."""
        amounts = [amount_out]
        hops = list(zip(zip(route.path, route.path[1:]), route.pairs, strict=True))
        for (x, _y), pair in reversed(hops):
            r0, r1 = reserves[pair.address]
            r_in, r_out = (r0, r1) if x == pair.token0 else (r1, r0)
            needed = _amount_in(amounts[0], r_in, r_out)
            if needed is None:
                return None
            amounts.insert(0, needed)
        return amounts

    # ------------------------------------------------------------------ sending

    async def _sync_nonces(self) -> dict[str, int]:
        if self._nonces is None:
            replies = await self.rpc.batch(
                [("eth_getTransactionCount", [a.address, "pending"]) for a in self._accounts]
            )
            nonces: dict[str, int] = {}
            for a, r in zip(self._accounts, replies, strict=True):
                if isinstance(r, RpcError):
                    raise r
                nonces[a.address] = int(r, 16)
            self._nonces = nonces
        return self._nonces

    async def _chain_state(self) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """Base fee, timestamp and the pools' reserves as our pending swaps leave them.

        Reserves are read from the latest block once per block; after that the
        effect of every swap we send is applied locally. With ``--order fifo``
        our transactions are mined in the order sent, so the quote for the next
        one matches what it will meet (within the slippage bound, when the
        searcher's backruns move a pool in between). Without this, victims of
        one block would all quote the same stale reserves and pile up reverts.
        """
        try:
            block = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
            number = int(block["number"], 16)
            base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
            timestamp = int(block["timestamp"], 16)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadNodeData(f"victim traffic: unexpected block ({type(exc).__name__})") from exc
        if number != self._shadow_block:
            pairs = self.info.pairs
            v3_pools = self.v3.pools if self.v3 is not None else ()
            tag = hex(number)
            replies = await self.rpc.batch(
                [("eth_call", [{"to": p.address, "data": _GET_RESERVES}, tag]) for p in pairs]
                + [("eth_call", [{"to": p.address, "data": _SLOT0}, tag]) for p in v3_pools]
            )
            reserves = {}
            try:
                for p, r in zip(pairs, replies, strict=False):
                    if isinstance(r, RpcError):
                        raise r
                    r0, r1, _ = abi_decode(["uint112", "uint112", "uint32"], bytes.fromhex(r[2:]))
                    reserves[p.address] = (int(r0), int(r1))
                for key, r in zip(v3_pools, replies[len(pairs):], strict=True):
                    if isinstance(r, RpcError):
                        raise r
                    self._v3_sqrt[key.address] = int(r[2:66], 16)
            except (ValueError, TypeError, AttributeError) as exc:
                raise BadNodeData(f"victim traffic: unexpected getReserves/slot0 ({type(exc).__name__})") from exc
            self._shadow = reserves
            self._shadow_block = number
            self._touched = set()
        return base_fee, timestamp, self._shadow

    def _apply(self, route: _Route, amounts: list[int]) -> None:
        """Move the local reserves as the router will: amounts[i] in, amounts[i+1] out."""
        for i, ((x, _y), pair) in enumerate(zip(zip(route.path, route.path[1:]), route.pairs, strict=True)):
            r0, r1 = self._shadow[pair.address]
            a_in, a_out = amounts[i], amounts[i + 1]
            self._shadow[pair.address] = (r0 + a_in, r1 - a_out) if x == pair.token0 else (r0 - a_out, r1 + a_in)

    def _pick_kind(self) -> str:
        if self._rng.random() < self._p_transfer:
            return "transfer"
        return self._rng.choice(SWAP_KINDS)

    def _fees(self, tx: dict[str, Any], tx_type: int, base_fee: int) -> None:
        tip = self._rng.randint(1, 30) * 10**8  # 0.1 .. 3 gwei
        if tx_type == 2:
            tx["maxPriorityFeePerGas"] = tip
            tx["maxFeePerGas"] = 2 * base_fee + tip
        else:
            tx["gasPrice"] = 2 * base_fee + tip

    async def send_one(self, kind: str | None = None) -> bytes:
        """Send one victim transaction (random kind unless given); returns its hash."""
        return (await self.send_tx(kind)).hash

    def _pick_account(self) -> LocalAccount:
        if not self._fresh:
            return self._rng.choice(self._accounts)
        block = self._shadow_block
        fresh = [a for a in self._accounts if self._last_block.get(a.address, -10) < block - 1]
        account = self._rng.choice(fresh or self._accounts)
        self._last_block[account.address] = block
        return account

    def _pick_route_kind(self) -> AnyRouteKind:
        if len(self._mix) == 1:
            return self._mix[0][0]
        return self._rng.choices([k for k, _ in self._mix], weights=[w for _, w in self._mix])[0]

    async def send_tx(
        self,
        kind: str | None = None,
        *,
        revert: bool | None = None,
        dex: str | None = None,
        route_kind: AnyRouteKind | str | None = None,
    ) -> SentTx:
        """Send one victim transaction and describe it.

        Args:
            kind: one of :data:`KINDS`; random when None. For a direct multi-pair
                victim it picks only the ends of the path (ETH-in kinds start at WETH,
                ETH-out kinds end at it); the contract's swaps are exact-in.
            revert: force (True) or forbid (False) a slippage bound that makes the
                swap revert; random (about 10% of all transactions) when None.
            dex: restrict the route to this DEX; any when None.
            route_kind: the contract to call; drawn from the mix when None.

        Raises:
            ValueError: an unknown ``kind`` or route kind, or one without its contract.
            RpcError: the node refused the transaction (the sender's nonce is re-read).
        """
        if kind is not None and kind not in KINDS:
            raise ValueError(f"VictimTraffic.send_tx: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        rk = _route_kind(route_kind) if route_kind is not None else None
        if rk not in (None, RouteKind.ROUTER02, V3RouteKind.SWAP_ROUTER) and self.routes is None:
            raise ValueError(f"VictimTraffic.send_tx: route kind {rk} needs the route contracts")
        if isinstance(rk, V3RouteKind) and self.v3 is None:
            raise ValueError(f"VictimTraffic.send_tx: route kind {rk} needs the V3 devnet")
        if rk == V3RouteKind.UNIVERSAL_ROUTER and (self.routes is None or self.routes.universal_v3_factory is None):
            raise ValueError("VictimTraffic.send_tx: the Universal Router is not wired to the V3 factory")
        nonces = await self._sync_nonces()
        base_fee, timestamp, reserves = await self._chain_state()
        kind = kind or self._pick_kind()
        account = self._pick_account()
        tx_type = self._rng.choices((0, 1, 2), weights=(3, 2, 5))[0]
        size = self._draw_size_wei()
        tx: dict[str, Any] = {"type": tx_type, "chainId": self.info.chain_id, "nonce": nonces[account.address]}
        if tx_type == 0:
            del tx["type"]  # legacy with chainId: EIP-155
        self._fees(tx, tx_type, base_fee)
        sent: SentTx
        effect: tuple[_Route, list[int]] | None = None
        moved_v3: tuple[str, ...] = ()
        if kind == "transfer":
            to = self._rng.choice([*self.info.victims, "0x" + self._rng.randbytes(20).hex()])
            tx.update(to=to_checksum_address(to), value=size // 10 + 1, gas=21_000, data=b"")
            sent = SentTx(b"", kind, account.address.lower(), tx_type, size_wei=size // 10 + 1, route_kind="transfer")
        else:
            if revert is None:
                revert = self._rng.random() < _P_REVERT_OF_SWAPS
            if rk is None:
                rk = self._pick_route_kind()
            if isinstance(rk, V3RouteKind):
                if dex not in (None, V3_DEX_NAME):
                    raise ValueError(f"VictimTraffic.send_tx: route kind {rk} trades on {V3_DEX_NAME} only")
                kind = _EXACT_IN_TWIN.get(kind, kind)
                sent = await self._v3_tx(tx, kind, rk, account.address, tx_type, revert, size, timestamp + 1200)
                if not revert:
                    moved_v3 = sent.pools
            else:
                if rk == RouteKind.UNIVERSAL_ROUTER:
                    assert self.routes is not None
                    if dex is not None and dex != self.routes.universal_dex:
                        raise ValueError(f"VictimTraffic.send_tx: the Universal Router trades on {self.routes.universal_dex} only")
                    dex = self.routes.universal_dex
                candidates = [r for r in self._candidates(kind) if dex is None or r.dex == dex]
                if not candidates:
                    raise ValueError(f"VictimTraffic.send_tx: no route for {kind!r} on dex {dex!r}")
                if self._fresh:
                    untouched = [r for r in candidates if not any(p.address in self._touched for p in r.pairs)]
                    candidates = untouched or candidates
                weights = [self._weight(r, reserves) for r in candidates]
                route = self._rng.choices(candidates, weights=weights if sum(weights) > 0 else None)[0]
                deadline = timestamp + 1200
                if rk == RouteKind.DIRECT:
                    route = self._mixed_dexes(route) if dex is None else route
                    data, value, size, amounts = self._direct_call(route, reserves, size, revert, account.address)
                    to_addr = self.routes.multiswap if self.routes is not None else ""
                    gas = 150_000 + 100_000 * (len(route.path) - 1)
                else:
                    data, value, size, amounts = self._swap_call(kind, route, reserves, size, revert, account.address,
                                                                 deadline, rk)
                    to_addr = route.router if rk == RouteKind.ROUTER02 else self.routes.universal_router  # type: ignore[union-attr]
                    gas = 200_000 + 100_000 * (len(route.path) - 1) + (60_000 if rk == RouteKind.UNIVERSAL_ROUTER else 0)
                tx.update(to=to_checksum_address(to_addr), value=value, data=data, gas=gas)
                if not revert:
                    effect = (route, amounts)
                if tx_type == 1 and self._rng.random() < 0.5:
                    tx["accessList"] = [
                        {"address": to_checksum_address(p.address), "storageKeys": [_RESERVES_SLOT]} for p in route.pairs
                    ]
                sent = SentTx(
                    b"", kind, account.address.lower(), tx_type, to_addr.lower(), route.dex, route.path, revert, size,
                    route_kind=rk.value, pools=tuple(dict.fromkeys(p.address for p in route.pairs)),
                    after_pending=any(p.address in self._touched for p in route.pairs),
                )
        if tx_type == 1:
            tx.setdefault("accessList", [])
        signed = account.sign_transaction(tx)
        raw = "0x" + signed.raw_transaction.hex()
        try:
            if self.lock is not None:
                async with self.lock:
                    await self.rpc.call("eth_sendRawTransaction", [raw])
            else:
                await self.rpc.call("eth_sendRawTransaction", [raw])
        except RpcError:
            self._refused += 1
            count = await self.rpc.call("eth_getTransactionCount", [account.address, "pending"])
            nonces[account.address] = int(count, 16)
            raise
        nonces[account.address] += 1
        if effect is not None:
            self._apply(*effect)
            self._touched.update(p.address for p in effect[0].pairs)
        self._touched.update(moved_v3)
        sent = attrs.evolve(sent, hash=bytes(signed.hash))
        self._sent += 1
        self._by_kind[kind] += 1
        self._by_type[tx_type] += 1
        self._by_route[sent.route_kind] += 1
        self._expected_reverts += int(sent.expect_revert)
        self.recent.append(sent)
        if self._truth is not None:
            self._truth.write(orjson.dumps({
                "hash": "0x" + sent.hash.hex(), "route_kind": sent.route_kind, "kind": sent.kind,
                "pools": list(sent.pools), "expect_revert": sent.expect_revert, "to": sent.router,
                "after_pending": sent.after_pending, "ticks_crossed": sent.ticks_crossed,
            }).decode() + "\n")
            self._truth.flush()
        return sent

    async def _v3_tx(
        self, tx: dict[str, Any], kind: str, rk: V3RouteKind, sender: str, tx_type: int, revert: bool, size: int,
        deadline: int,
    ) -> SentTx:
        """Fill ``tx`` with one exact-in V3 victim and describe it (its hash still empty).

        The route is drawn like a V2 route (weighted towards pulling its pools back to
        the reference price); the amount out is QuoterV2's on the pending block, and the
        slippage bound is taken below it (or, to revert, above it: "Too little received").
        """
        assert self.v3 is not None
        candidates = self._v3_candidates(kind)
        if self._fresh:
            candidates = [r for r in candidates if not any(p.address in self._touched for p in r.pools)] or candidates
        weights = [self._v3_weight(r) for r in candidates]
        route = self._rng.choices(candidates, weights=weights if sum(weights) > 0 else None)[0]
        src = route.path[0]
        size *= _V3_SIZE_FACTOR
        for _ in range(20):
            amount_in = size * self._ref[src] // ETHER
            quote = await self._v3_quote(route, amount_in) if amount_in > 0 else None
            if quote is not None and quote[0] > 0:
                break
            size //= 2
        else:
            raise BadNodeData("victim traffic: V3 pools too shallow for any swap size")
        out, crossed = quote
        slip_bps = self._rng.randint(50, 300)
        min_out = out * 11 // 10 + 1 if revert else out * (10_000 - slip_bps) // 10_000
        eth_in, eth_out = kind in ETH_IN_KINDS, kind in ETH_OUT_KINDS
        value = amount_in if eth_in else 0
        hops = len(route.pools)
        if rk == V3RouteKind.SWAP_ROUTER:
            to_addr = self.v3.router
            recipient = to_addr if eth_out else sender  # ETH out: the router unwraps for the victim
            if hops == 1:
                pool = route.pools[0]
                call = _EXACT_INPUT_SINGLE + abi_encode(
                    ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
                    [(route.path[0], route.path[1], pool.fee, recipient, deadline, amount_in, min_out, 0)],
                )
            else:
                call = _EXACT_INPUT + abi_encode(
                    ["(bytes,address,uint256,uint256,uint256)"], [(route.encoded, recipient, deadline, amount_in, min_out)]
                )
            if eth_out:
                unwrap = _UNWRAP_WETH9 + abi_encode(["uint256", "address"], [min_out, sender])
                call = _MULTICALL + abi_encode(["bytes[]"], [[call, unwrap]])
            elif eth_in:
                call = with_eth_refund(call)
            data, gas = call, 350_000 + 200_000 * (hops - 1) + 60_000 * crossed
        else:
            assert self.routes is not None
            to_addr = self.routes.universal_router
            commands = []
            if eth_in:
                commands.append(wrap_eth(ADDRESS_THIS, amount_in))
            commands.append(v3_swap_exact_in(ADDRESS_THIS if eth_out else MSG_SENDER, amount_in, min_out,
                                             route.encoded, not eth_in))
            if eth_out:
                commands.append(unwrap_weth(MSG_SENDER, min_out))
            data, gas = encode_execute(commands, deadline), 410_000 + 200_000 * (hops - 1) + 60_000 * crossed
        tx.update(to=to_checksum_address(to_addr), value=value, data=data, gas=gas)
        if tx_type == 1 and self._rng.random() < 0.5:
            tx["accessList"] = [
                {"address": to_checksum_address(p.address), "storageKeys": [_SLOT0_SLOT]} for p in route.pools
            ]
        return SentTx(
            b"", kind, sender.lower(), tx_type, to_addr.lower(), V3_DEX_NAME, route.path, revert, size,
            route_kind=rk.value, pools=tuple(dict.fromkeys(p.address for p in route.pools)),
            after_pending=any(p.address in self._touched for p in route.pools), ticks_crossed=crossed,
        )

    def _mixed_dexes(self, route: _Route) -> _Route:
        """The same path with each hop's DEX drawn again: one transaction across both DEXes."""
        pairs = []
        for x, y in zip(route.path, route.path[1:]):
            options = [p for d in self.info.dexes if (p := self._pair(d.name, x, y)) is not None]
            if self._fresh:
                options = [p for p in options if p.address not in self._touched] or options
            pairs.append(self._rng.choice(options))
        dexes = {p.dex for p in pairs}
        return _Route(dexes.pop() if len(dexes) == 1 else "mixed", route.router, route.path, tuple(pairs))

    def _direct_call(
        self, route: _Route, reserves: dict[str, tuple[int, int]], size: int, revert: bool, to: str
    ) -> tuple[bytes, int, int, list[int]]:
        """MultiSwap calldata: exact in, each pair's output asked a little below its quote
        (the pair keeps the rest), or, to revert, the last one asked above it (UniswapV2: K)."""
        slip_bps = self._rng.randint(10, 100)
        src = route.path[0]
        for _ in range(20):
            amount_in = size * self._ref[src] // ETHER
            amounts = [amount_in]
            zero_for_one = []
            for (x, _y), pair in zip(zip(route.path, route.path[1:]), route.pairs, strict=True):
                r0, r1 = reserves[pair.address]
                r_in, r_out = (r0, r1) if x == pair.token0 else (r1, r0)
                amounts.append(_amount_out(amounts[-1], r_in, r_out) * (10_000 - slip_bps) // 10_000)
                zero_for_one.append(x == pair.token0)
            if amount_in > 0 and amounts[-1] > 0:
                break
            size //= 2
        else:
            raise BadNodeData("victim traffic: pools too shallow for any swap size")
        outs = amounts[1:]
        if revert:
            outs = [*outs[:-1], outs[-1] * 11 // 10 + 1]
        value = amount_in if src == self.info.weth else 0
        data = encode_multiswap(src, amount_in, [p.address for p in route.pairs], outs, zero_for_one, to)
        return data, value, size, amounts

    def _swap_call(
        self,
        kind: str,
        route: _Route,
        reserves: dict[str, tuple[int, int]],
        size: int,
        revert: bool,
        to: str,
        deadline: int,
        route_kind: RouteKind = RouteKind.ROUTER02,
    ) -> tuple[bytes, int, int, list[int]]:
        """Calldata, ETH value, size and path amounts of one swap; integer amount math only.

        The same swap through Router02 or the Universal Router (commands as Uniswap's
        SDK builds them: WRAP_ETH first for ETH in, UNWRAP_WETH last for ETH out or
        to refund an exact-out's unused ETH; token input paid through Permit2).
        """
        slip_bps = self._rng.randint(50, 300)
        path = [to_checksum_address(a) for a in route.path]
        src, dst = route.path[0], route.path[-1]
        for _ in range(20):
            if kind in _EXACT_OUT:
                amount_out = size * self._ref[dst] // ETHER
                amounts = self._quote_in(amount_out, route, reserves) if amount_out > 0 else None
                # Stay well inside the pool: an exact-out for most of a reserve is not a real trade.
                if amounts is not None and amounts[0] <= size * 4 * self._ref[src] // ETHER:
                    need = amounts[0]
                    break
            else:
                amount_in = size * self._ref[src] // ETHER
                amounts = self._quote_out(amount_in, route, reserves) if amount_in > 0 else [0, 0]
                out = amounts[-1]
                if out > 0:
                    break
            size //= 2
        else:
            raise BadNodeData("victim traffic: pools too shallow for any swap size")
        sel = _SELECTORS[kind]
        if kind in _EXACT_OUT:
            max_in = need * 9 // 10 if revert else need * (10_000 + slip_bps) // 10_000
            if route_kind == RouteKind.UNIVERSAL_ROUTER:
                return self._universal(kind, path, amount_out, max_in, deadline), (
                    max_in if kind in ETH_IN_KINDS else 0), size, amounts
            if kind == "swapETHForExactTokens":
                args = abi_encode(["uint256", "address[]", "address", "uint256"], [amount_out, path, to, deadline])
                return sel + args, max_in, size, amounts
            args = abi_encode(
                ["uint256", "uint256", "address[]", "address", "uint256"], [amount_out, max_in, path, to, deadline]
            )
            return sel + args, 0, size, amounts
        min_out = out * 11 // 10 + 1 if revert else out * (10_000 - slip_bps) // 10_000
        if route_kind == RouteKind.UNIVERSAL_ROUTER:
            return self._universal(kind, path, amount_in, min_out, deadline), (
                amount_in if kind in ETH_IN_KINDS else 0), size, amounts
        if kind == "swapExactETHForTokens":
            args = abi_encode(["uint256", "address[]", "address", "uint256"], [min_out, path, to, deadline])
            return sel + args, amount_in, size, amounts
        args = abi_encode(["uint256", "uint256", "address[]", "address", "uint256"], [amount_in, min_out, path, to, deadline])
        return sel + args, 0, size, amounts

    @staticmethod
    def _universal(kind: str, path: Sequence[str], amount: int, limit: int, deadline: int) -> bytes:
        """``execute`` calldata: ``amount`` is the exact input (or output), ``limit`` the bound."""
        eth_in, eth_out, exact_out = kind in ETH_IN_KINDS, kind in ETH_OUT_KINDS, kind in _EXACT_OUT
        recipient = ADDRESS_THIS if eth_out else MSG_SENDER
        commands = []
        if eth_in:
            commands.append(wrap_eth(ADDRESS_THIS, limit if exact_out else amount))
        if exact_out:
            commands.append(v2_swap_exact_out(recipient, amount, limit, path, not eth_in))
        else:
            commands.append(v2_swap_exact_in(recipient, amount, limit, path, not eth_in))
        if eth_out:
            commands.append(unwrap_weth(MSG_SENDER, amount if exact_out else limit))
        elif eth_in and exact_out:
            commands.append(unwrap_weth(MSG_SENDER, 0))  # the unused ETH back
        return encode_execute(commands, deadline)

    async def run(self, rate_per_s: float, stop_event: trio.Event | None = None) -> None:
        """Send transactions at ``rate_per_s`` on average (Poisson arrivals).

        Runs until ``stop_event`` is set or the task is cancelled. A refused
        transaction is counted (``statistics().refused``) and the loop goes on.
        """
        if rate_per_s <= 0:
            raise ValueError(f"VictimTraffic.run: rate_per_s must be > 0, got {rate_per_s!r}")
        next_at = trio.current_time()
        while stop_event is None or not stop_event.is_set():
            next_at += self._rng.expovariate(rate_per_s)
            now = trio.current_time()
            if next_at < now - 1.0:
                next_at = now  # fell behind (a slow block): do not burst to catch up
            if stop_event is not None:
                with trio.move_on_at(next_at):
                    await stop_event.wait()
                if stop_event.is_set():
                    return
            else:
                await trio.sleep_until(next_at)
            try:
                await self.send_tx()
            except NodeError:
                continue
