"""Competing searchers on the devnet: without them every shadow bundle looks like a winner.

Each competitor is a searcher account of its own (funded with ETH and WETH and
with the routers approved at start-up, like aether's). They share one watcher
that polls the node's pending block (the public mempool as a builder sees it)
and the head. For every new pending transaction, each competitor either misses
it (``miss_share`` of victims, drawn per competitor) or, ``latency_s`` after it
first appeared, sizes a backrun of it if it is still pending, with aether's own
sizing code (``BackrunStrategy`` on a ``PoolBook`` refreshed at every head: a
competitor finds what aether finds), signs it with its own key and tip share
and sends the bundle ``[victim, backrun]`` to the local builder with
``eth_sendBundle`` over HTTP, signed like Flashbots asks. The builder takes the
best-paying bundle for a victim (see ``_builder.py``), so a competitor that
bids a larger tip share than aether wins the victim; one that is slower than
the block, or missed the victim, leaves it to aether.

Private order flow: at each head, with probability ``private_share``, one
competitor sends a lone swap on a random pool straight to the builder as a
one-transaction bundle. It never appears in the mempool and lands at the top
of the next block, before the victims: what moves pools "before the victim"
on a real chain.

Cancellations: ``cancel_share`` of victims are cancelled by their own sender
``cancel_delay_s`` after they appear (a same-nonce self-transfer paying twice
the fees, sent publicly): what a user does with a stuck swap. aether may
already have built a bundle for the victim, which then meets a block without
it (``victim_not_included``, replaced).

Everything is deterministic from ``seed`` except timing. Statistics say what
each competitor saw, missed, sized and sent.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import orjson
import trio

if TYPE_CHECKING:
    from eth_typing import ChecksumAddress
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from .._errors import ConfigError, DecodeError, NodeError
from ..bundle import BundleBuilder, NonceTracker
from ..chain import RpcClient, decode_pending_tx, head_from_rpc
from ..dex import PoolBook
from ..messages import Candidate, Head
from ..strategy import BackrunStrategy
from ._deploy import DevnetInfo, mine_until_included, selector, victim_account

__all__ = ["CompetitorConfig", "CompetitorStatistics", "Competitors"]

log = logging.getLogger(__name__)

#: Each competitor's inventory (WETH) and gas money (ETH).
COMPETITOR_WETH = 200 * 10**18
COMPETITOR_ETH = 100 * 10**18


@attrs.frozen
class CompetitorConfig:
    """How many competitors and how they behave (``aether devnet --competitors``)."""

    count: int = 2
    latency_s: float = 0.3
    tip_share_bps: int = 9000
    miss_share: float = 0.35
    private_share: float = 0.25
    cancel_share: float = 0.03
    cancel_delay_s: float = 0.4
    poll_s: float = 0.1
    seed: int = 1

    @classmethod
    def parse(cls, spec: str, *, seed: int = 1) -> CompetitorConfig | None:
        """``off`` / ``0`` (none), ``on`` (defaults), or ``key=value,...`` with keys
        ``count``, ``latency_ms``, ``tip_bps``, ``miss``, ``private``.

        Raises:
            ConfigError: an unknown key or a value out of range (one line).
        """
        spec = spec.strip()
        if spec in ("off", "0", "none"):
            return None
        if spec in ("", "on", "1"):
            return cls(seed=seed)
        kw: dict[str, Any] = {"seed": seed}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            try:
                if not sep:
                    raise ValueError
                if key == "count":
                    kw["count"] = int(value)
                elif key == "latency_ms":
                    kw["latency_s"] = float(value) / 1000
                elif key == "tip_bps":
                    kw["tip_share_bps"] = int(value)
                elif key == "miss":
                    kw["miss_share"] = float(value)
                elif key == "private":
                    kw["private_share"] = float(value)
                elif key == "cancel":
                    kw["cancel_share"] = float(value)
                else:
                    raise ConfigError(f"--competitors: unknown key {key!r} (count, latency_ms, tip_bps, miss, private, cancel)")
            except ValueError:
                raise ConfigError(f"--competitors: {part.strip()!r} is not key=number") from None
        cfg = cls(**kw)
        if not 0 <= cfg.count <= 8:
            raise ConfigError(f"--competitors: count={cfg.count} out of range 0..8")
        if not 0 <= cfg.tip_share_bps <= 10_000:
            raise ConfigError(f"--competitors: tip_bps={cfg.tip_share_bps} out of range 0..10000")
        if not (0 <= cfg.miss_share <= 1 and 0 <= cfg.private_share <= 1 and 0 <= cfg.cancel_share <= 1
                and 0 <= cfg.latency_s <= 60):
            raise ConfigError("--competitors: miss, private and cancel must be within 0..1, latency_ms within 0..60000")
        return cfg if cfg.count else None


@attrs.define
class CompetitorStatistics:
    seen: int = 0
    missed: int = 0
    late: int = 0
    sized: int = 0
    rejected: int = 0
    sent: int = 0
    refused: int = 0
    private_sent: int = 0
    cancelled: int = 0


def _competitor_account(seed: int, index: int) -> LocalAccount:
    return Account.from_key(keccak(f"aether-devnet:{seed}:competitor:{index}".encode()))


@attrs.define
class _Searcher:
    account: LocalAccount
    book: PoolBook
    strategy: BackrunStrategy
    builder: BundleBuilder
    nonces: NonceTracker
    rng: random.Random
    stats: CompetitorStatistics = attrs.field(factory=CompetitorStatistics)
    inventory: int = 0
    ready: bool = False


class Competitors:
    """The competing searchers of one devnet (see the module docstring).

    Args:
        rpc: the devnet node.
        info: the deployment (WETH, DEXes, pairs, chain id).
        builder_url: the local builder's ``eth_sendBundle`` endpoint.
        config: how many and how they behave.
    """

    def __init__(self, rpc: RpcClient, info: DevnetInfo, builder_url: str, config: CompetitorConfig) -> None:
        self._rpc = rpc
        self._info = info
        self._url = builder_url
        self.config = config
        chain = info.chain_config
        self._searchers: list[_Searcher] = []
        for i in range(config.count):
            acct = _competitor_account(config.seed, i)
            book = PoolBook(rpc, chain)
            nonces = NonceTracker()
            self._searchers.append(
                _Searcher(
                    account=acct,
                    book=book,
                    strategy=BackrunStrategy(chain, book, searcher=acct.address.lower()),
                    builder=BundleBuilder(acct, info.chain_id, tip_share_bps=config.tip_share_bps, nonces=nonces),
                    nonces=nonces,
                    rng=random.Random(f"{config.seed}:{i}"),
                )
            )
        self._rng = random.Random(f"{config.seed}:private")
        self._cancel_rng = random.Random(f"{config.seed}:cancel")
        self._victims = {a: victim_account(info.seed, i) for i, a in enumerate(info.victims)}
        self._cancels: list[tuple[float, dict[str, Any]]] = []
        self.cancelled = 0
        self.poll_errors = 0
        self._seen: dict[str, float] = {}  # pending hash -> first seen (trio clock)
        self._due: list[tuple[float, int, str]] = []  # (when, searcher index, hash)
        self._head: Head | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def addresses(self) -> list[str]:
        return [s.account.address.lower() for s in self._searchers]

    def statistics(self) -> list[CompetitorStatistics]:
        return [attrs.evolve(s.stats) for s in self._searchers]

    async def setup(self) -> None:
        """Fund each competitor, wrap its WETH, approve the routers (mines until done)."""
        from ..prepare import approve_routers

        funding = await self._rpc.batch(
            [("anvil_setBalance", [s.account.address, hex(COMPETITOR_ETH + COMPETITOR_WETH)]) for s in self._searchers]
        )
        for r in funding:
            if isinstance(r, Exception):
                raise r
        hashes: list[str] = []
        base = await self._rpc.call("eth_getBlockByNumber", ["latest", False])
        base_fee = int(base["baseFeePerGas"], 16)
        for s in self._searchers:
            signed = s.account.sign_transaction({
                "type": 2, "chainId": self._info.chain_id, "nonce": 0, "to": _checksum(self._info.weth), "value":
                COMPETITOR_WETH, "data": selector("deposit()"), "gas": 100_000, "maxPriorityFeePerGas": 10**9,
                "maxFeePerGas": 4 * base_fee + 10**9})
            hashes.append(await self._rpc.call("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()]))
        await mine_until_included(self._rpc, hashes, ["competitor WETH deposit"] * len(hashes))
        approvals: list[str] = []
        for s in self._searchers:
            approvals += await approve_routers(self._rpc, s.account, self._info.chain_config)
        await mine_until_included(self._rpc, approvals, ["competitor approval"] * len(approvals))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            self._client = client
            task_status.started()
            while True:
                try:
                    await self._poll()
                except Exception as exc:  # noqa: BLE001 - a rival's bad poll must not stop the devnet
                    self.poll_errors += 1
                    log.info("competitors: poll failed (%s)", type(exc).__name__)
                await trio.sleep(self.config.poll_s)

    async def _poll(self) -> None:
        latest, pending = await self._rpc.batch(
            [("eth_getBlockByNumber", ["latest", False]), ("eth_getBlockByNumber", ["pending", True])]
        )
        if isinstance(latest, Exception) or isinstance(pending, Exception):
            return
        head = head_from_rpc(latest)
        if self._head is None or head.number != self._head.number:
            self._head = head
            await self._on_head(head)
        now = trio.current_time()
        txs = {str(t["hash"]).lower(): t for t in pending.get("transactions") or ()}
        mine = set(self.addresses)
        for h, t in txs.items():
            if h in self._seen or str(t.get("from", "")).lower() in mine:
                continue
            self._seen[h] = now
            if str(t.get("from", "")).lower() in self._victims and self._cancel_rng.random() < self.config.cancel_share:
                self._cancels.append((now + self.config.cancel_delay_s, t))
            for i, s in enumerate(self._searchers):
                s.stats.seen += 1
                if s.rng.random() < self.config.miss_share:
                    s.stats.missed += 1
                    continue
                self._due.append((now + self.config.latency_s, i, h))
        keep: list[tuple[float, int, str]] = []
        for when, i, h in self._due:
            if when > now:
                keep.append((when, i, h))
            elif h in txs:
                await self._backrun(self._searchers[i], txs[h], head)
            else:
                self._searchers[i].stats.late += 1  # mined (or gone) before this competitor reacted
        self._due = keep
        later: list[tuple[float, dict[str, Any]]] = []
        for when, t in self._cancels:
            if when > now:
                later.append((when, t))
            elif str(t["hash"]).lower() in txs:
                await self._cancel(t)
        self._cancels = later
        if len(self._seen) > 50_000:  # bounded: forget the oldest half
            for k in list(self._seen)[:25_000]:
                del self._seen[k]

    async def _on_head(self, head: Head) -> None:
        calls: list[tuple[str, list[Any]]] = []
        for s in self._searchers:
            calls.append(("eth_getTransactionCount", [s.account.address, "pending"]))
            calls.append(("eth_call", [{"to": self._info.weth, "data": "0x70a08231" + "00" * 12
                                        + s.account.address[2:].lower()}, hex(head.number)]))
        replies = await self._rpc.batch(calls)
        for k, s in enumerate(self._searchers):
            nonce, bal = replies[2 * k], replies[2 * k + 1]
            if isinstance(nonce, Exception) or isinstance(bal, Exception):
                s.ready = False
                continue
            try:
                await s.book.refresh(hex(head.number))
            except NodeError:
                s.ready = False
                continue
            s.nonces.reset(int(nonce, 16))
            s.inventory = int(bal, 16)
            s.ready = True
        if self._searchers and self._rng.random() < self.config.private_share:
            await self._private(self._rng.choice(self._searchers), head)

    async def _backrun(self, s: _Searcher, obj: dict[str, Any], head: Head) -> None:
        if not s.ready:
            s.stats.rejected += 1
            return
        try:
            victim = decode_pending_tx(obj, chain_id=self._info.chain_id)
        except DecodeError:
            s.stats.rejected += 1
            return
        result = await s.strategy.on_victim(victim, head, inventory_wei=s.inventory)
        if not isinstance(result, Candidate):
            s.stats.rejected += 1
            return
        s.stats.sized += 1
        try:
            bundle = s.builder.build(result, head, now_ns=time.time_ns())
        except ValueError:
            s.stats.rejected += 1
            return
        if await self._send(s, list(bundle.envelope), bundle.target_block):
            s.stats.sent += 1

    async def _private(self, s: _Searcher, head: Head) -> None:
        """A lone swap, sent only to the builder: it lands without ever being in the mempool."""
        if not s.ready or not self._info.pairs:
            return
        pair = self._rng.choice(self._info.pairs)
        dex = next((d for d in self._info.dexes if d.name == pair.dex), None)
        if dex is None:
            return
        other = pair.token1 if pair.token0 == self._info.weth else pair.token0
        if self._info.weth not in (pair.token0, pair.token1):
            return
        amount = self._rng.randint(1, 20) * 10**17  # 0.1 .. 2 WETH
        data = selector("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)") + _abi(
            ["uint256", "uint256", "address[]", "address", "uint256"],
            [amount, 0, [self._info.weth, other], s.account.address, 2**40])
        [nonce] = s.nonces.reserve(1)  # an alternative to this competitor's backruns of the block
        tip = 2 * 10**9
        signed = s.account.sign_transaction({
            "type": 2, "chainId": self._info.chain_id, "nonce": nonce, "to": _checksum(dex.router), "value": 0,
            "data": data, "gas": 200_000, "maxPriorityFeePerGas": tip, "maxFeePerGas": 3 * head.base_fee + tip})
        if await self._send(s, [bytes(signed.raw_transaction)], head.number + 1):
            s.stats.private_sent += 1

    async def _cancel(self, t: dict[str, Any]) -> None:
        """The victim's sender replaces it: same nonce, a self-transfer of 0 paying twice the fees."""
        acct = self._victims[str(t["from"]).lower()]
        tip = 2 * int(t.get("maxPriorityFeePerGas") or t.get("gasPrice") or "0x3b9aca00", 16) + 10**9
        cap = 2 * int(t.get("maxFeePerGas") or t.get("gasPrice") or "0x3b9aca00", 16) + tip
        signed = acct.sign_transaction({"type": 2, "chainId": self._info.chain_id, "nonce": int(t["nonce"], 16),
                                        "to": acct.address, "value": 0, "data": b"", "gas": 21_000,
                                        "maxPriorityFeePerGas": tip, "maxFeePerGas": cap})
        try:
            await self._rpc.call("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
        except NodeError as exc:
            log.info("cancellation refused: %s", exc)
            return
        self.cancelled += 1

    async def _send(self, s: _Searcher, raws: list[bytes], block: int) -> bool:
        assert self._client is not None
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle",
                             "params": [{"txs": ["0x" + r.hex() for r in raws], "blockNumber": hex(block)}]})
        sig = s.account.sign_message(encode_defunct(text="0x" + keccak(body).hex()))
        header = f"{s.account.address}:0x{bytes(sig.signature).hex()}"
        try:
            r = await self._client.post(self._url, content=body, headers={"X-Flashbots-Signature": header,
                                                                          "content-type": "application/json"})
            ok = r.status_code == 200 and "result" in r.json()
        except (httpx.HTTPError, ValueError):
            ok = False
        if not ok:
            s.stats.refused += 1
        return ok


def _checksum(address: str) -> ChecksumAddress:
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


def _abi(types: list[str], values: list[Any]) -> bytes:
    from eth_abi import encode

    return encode(types, values)
