"""Victim traffic: the swaps (and noise) that aether's mempool path should see.

Many deterministic victim accounts send, through both routers, all six
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
from typing import Any

import attrs
import trio
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from .._errors import BadNodeData, NodeError, RpcError
from ..chain import RpcClient
from ._deploy import DevnetInfo, PairInfo, selector, victim_account

__all__ = ["ETH_IN_KINDS", "ETH_OUT_KINDS", "KINDS", "SWAP_KINDS", "SentTx", "TrafficStatistics", "VictimTraffic"]

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


@attrs.frozen
class TrafficStatistics:
    sent: int
    by_kind: tuple[tuple[str, int], ...]
    expected_reverts: int
    refused: int
    by_type: tuple[tuple[int, int], ...]


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


class VictimTraffic:
    """Sends victim transactions on the devnet.

    Args:
        rpc: the devnet node.
        info: what :func:`deploy` returned (victims are re-derived from ``info.seed``).
        seed: the traffic's own random stream (default: ``info.seed``).
        lock: held around each ``eth_sendRawTransaction`` so that the devnet's
            miner and local builder see a stable pool while assembling a block.
        history: how many recent :class:`SentTx` to keep (bounded).
        size_scale: multiplies every victim's size draw (``aether devnet
            --victim-scale``: big victims on deep pools).
    """

    def __init__(
        self,
        rpc: RpcClient,
        info: DevnetInfo,
        *,
        seed: int | None = None,
        lock: trio.Lock | None = None,
        history: int = 1000,
        size_scale: int = 1,
    ) -> None:
        if type(size_scale) is not int or size_scale < 1:
            raise ValueError(f"size_scale must be a whole number >= 1, got {size_scale!r}")
        self._size_scale = size_scale
        self.rpc = rpc
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
        self.recent: collections.deque[SentTx] = collections.deque(maxlen=history)
        self._by_kind: collections.Counter[str] = collections.Counter()
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
            nonces = {}
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
            tag = hex(number)
            replies = await self.rpc.batch(
                [("eth_call", [{"to": p.address, "data": _GET_RESERVES}, tag]) for p in pairs]
            )
            reserves = {}
            try:
                for p, r in zip(pairs, replies, strict=True):
                    if isinstance(r, RpcError):
                        raise r
                    r0, r1, _ = abi_decode(["uint112", "uint112", "uint32"], bytes.fromhex(r[2:]))
                    reserves[p.address] = (int(r0), int(r1))
            except (ValueError, TypeError, AttributeError) as exc:
                raise BadNodeData(f"victim traffic: unexpected getReserves ({type(exc).__name__})") from exc
            self._shadow = reserves
            self._shadow_block = number
        return base_fee, timestamp, self._shadow

    def _apply(self, route: _Route, amounts: list[int]) -> None:
        """Move the local reserves as the router will: amounts[i] in, amounts[i+1] out."""
        for i, ((x, _y), pair) in enumerate(zip(zip(route.path, route.path[1:]), route.pairs, strict=True)):
            r0, r1 = self._shadow[pair.address]
            a_in, a_out = amounts[i], amounts[i + 1]
            self._shadow[pair.address] = (r0 + a_in, r1 - a_out) if x == pair.token0 else (r0 - a_out, r1 + a_in)

    def _pick_kind(self) -> str:
        if self._rng.random() < _P_TRANSFER:
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

    async def send_tx(self, kind: str | None = None, *, revert: bool | None = None, dex: str | None = None) -> SentTx:
        """Send one victim transaction and describe it.

        Args:
            kind: one of :data:`KINDS`; random when None.
            revert: force (True) or forbid (False) a slippage bound that makes the
                swap revert; random (about 10% of all transactions) when None.
            dex: restrict the route to this DEX; any when None.

        Raises:
            ValueError: an unknown ``kind``.
            RpcError: the node refused the transaction (the sender's nonce is re-read).
        """
        if kind is not None and kind not in KINDS:
            raise ValueError(f"VictimTraffic.send_tx: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        nonces = await self._sync_nonces()
        base_fee, timestamp, reserves = await self._chain_state()
        kind = kind or self._pick_kind()
        account = self._rng.choice(self._accounts)
        tx_type = self._rng.choices((0, 1, 2), weights=(3, 2, 5))[0]
        size = self._draw_size_wei()
        tx: dict[str, Any] = {"type": tx_type, "chainId": self.info.chain_id, "nonce": nonces[account.address]}
        if tx_type == 0:
            del tx["type"]  # legacy with chainId: EIP-155
        self._fees(tx, tx_type, base_fee)
        sent: SentTx
        effect: tuple[_Route, list[int]] | None = None
        if kind == "transfer":
            to = self._rng.choice([*self.info.victims, "0x" + self._rng.randbytes(20).hex()])
            tx.update(to=to_checksum_address(to), value=size // 10 + 1, gas=21_000, data=b"")
            sent = SentTx(b"", kind, account.address.lower(), tx_type, size_wei=size // 10 + 1)
        else:
            if revert is None:
                revert = self._rng.random() < _P_REVERT_OF_SWAPS
            candidates = [r for r in self._candidates(kind) if dex is None or r.dex == dex]
            if not candidates:
                raise ValueError(f"VictimTraffic.send_tx: no route for {kind!r} on dex {dex!r}")
            weights = [self._weight(r, reserves) for r in candidates]
            route = self._rng.choices(candidates, weights=weights if sum(weights) > 0 else None)[0]
            data, value, size, amounts = self._swap_call(kind, route, reserves, size, revert, account.address, timestamp + 1200)
            tx.update(
                to=to_checksum_address(route.router),
                value=value,
                data=data,
                gas=200_000 + 100_000 * (len(route.path) - 1),
            )
            if not revert:
                effect = (route, amounts)
            if tx_type == 1 and self._rng.random() < 0.5:
                tx["accessList"] = [
                    {"address": to_checksum_address(p.address), "storageKeys": [_RESERVES_SLOT]} for p in route.pairs
                ]
            sent = SentTx(
                b"", kind, account.address.lower(), tx_type, route.router, route.dex, route.path, revert, size
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
        sent = attrs.evolve(sent, hash=bytes(signed.hash))
        self._sent += 1
        self._by_kind[kind] += 1
        self._by_type[tx_type] += 1
        self._expected_reverts += int(sent.expect_revert)
        self.recent.append(sent)
        return sent

    def _swap_call(
        self,
        kind: str,
        route: _Route,
        reserves: dict[str, tuple[int, int]],
        size: int,
        revert: bool,
        to: str,
        deadline: int,
    ) -> tuple[bytes, int, int, list[int]]:
        """Calldata, ETH value, size and path amounts of one swap; integer amount math only."""
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
            if kind == "swapETHForExactTokens":
                args = abi_encode(["uint256", "address[]", "address", "uint256"], [amount_out, path, to, deadline])
                return sel + args, max_in, size, amounts
            args = abi_encode(
                ["uint256", "uint256", "address[]", "address", "uint256"], [amount_out, max_in, path, to, deadline]
            )
            return sel + args, 0, size, amounts
        min_out = out * 11 // 10 + 1 if revert else out * (10_000 - slip_bps) // 10_000
        if kind == "swapExactETHForTokens":
            args = abi_encode(["uint256", "address[]", "address", "uint256"], [min_out, path, to, deadline])
            return sel + args, amount_in, size, amounts
        args = abi_encode(["uint256", "uint256", "address[]", "address", "uint256"], [amount_in, min_out, path, to, deadline])
        return sel + args, 0, size, amounts

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
