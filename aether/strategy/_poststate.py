"""A victim's effect on the pools, learned from the node, whatever contract it called.

The victim is simulated alone on the head state (``eth_simulateV1``, one block at
``head + 1 s`` with base fee zero and validation off, as the validator does) and
its logs are read: the last ``Sync(reserve0, reserve1)`` of each tracked V2 pair
is that pair's state after the victim. Nothing about the victim's calldata is
assumed, so Router02 calls, the Universal Router, aggregators and bots calling
``pair.swap`` directly are all seen the same way, and a victim that moves several
pools yields all of them.

Trust: a ``Sync`` log is used only when its address is a pair of a configured V2
DEX, that is when ``CREATE2(factory, keccak(token0 ++ token1), init_code_hash)``
gives back that very address for the tokens the contract itself reports
(``token0()``/``token1()``, read once and cached). A contract that merely emits
the ``Sync`` signature fails that check (nobody can find a CREATE2 preimage), is
ignored and counted. Pairs already in the pool book were derived by CREATE2 in
the first place and need no call.

Fail closed: a simulation that errors, times out, answers malformed, or in
which the victim reverts yields a :class:`~aether.strategy.Rejection` with a
named reason (:class:`SimFailure`) and no post-state; never an exception.

Uniswap V3 pools are read the same way: the last ``Swap(sender, recipient,
amount0, amount1, sqrtPriceX96, liquidity, tick)`` of a pool carries its price,
active liquidity and tick after the victim (:class:`V3Slot`). Its emitter is
trusted only when ``CREATE2(factory, keccak(token0, token1, fee), init_code_hash)``
of a configured V3 DEX gives it back, for the ``token0()``/``token1()``/``fee()``
the contract reports (or when the V3 book already tracks it, its key having come
from CREATE2). A pool that also emits ``Mint``/``Burn`` in the victim changed its
ticks, which the event does not carry: it is dropped (counted), and named in
:attr:`PostState.v3_unheld` with every other V3 pool the victim changed whose
post-victim state is not held, so the strategy never trades it at the head's
state either. The ``MAX_SYNC_EMITTERS`` cap and the one deadline cover V2 and V3 emitters together.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import trio

from .._errors import DecodeError, NodeError, NodeTimeout, RpcError
from ..config import ChainConfig, DexConfig
from ..config import DexKind
from ..dex import FEE_TIERS, PairInfo, V3PoolKey, pair_address, v3_pool_address
from ..dex._logs import LogEntry, parse_logs, sync_events
from ..dex._v3pool import BURN_EVENT_TOPIC, MINT_EVENT_TOPIC, SWAP_EVENT_TOPIC
from ..messages import Head, PendingTx
from ..quantity import hex_quantity
from ._backrun import Rejection

if TYPE_CHECKING:
    from ..dex import PoolBook, V3PoolBook

__all__ = [
    "PoolKind",
    "PoolPostState",
    "PoolTrust",
    "PostState",
    "ScreenSkip",
    "SimFailure",
    "V2Reserves",
    "V3Slot",
    "VictimSimulator",
    "VictimSimulatorStatistics",
    "v2_dexes",
]

_TOKEN0 = "0x0dfe1681"
_TOKEN1 = "0xd21220a7"
_FEE = "0xddca3f43"


class SimFailure(enum.StrEnum):
    """Why a victim's simulation gave no post-state (``aether_candidate_rejected_total`` reasons)."""

    SIM_ERROR = "sim_error"  # the node refused eth_simulateV1 or the request failed
    SIM_TIMEOUT = "sim_timeout"  # no answer within the simulator's deadline
    SIM_MALFORMED = "sim_malformed"  # an answer not shaped as the spec says (or a tracked pair's bad Sync)
    NO_POOL_MOVED = "no_pool_moved"  # the victim ran but no tracked pair emitted Sync
    TOO_MANY_POOLS = "too_many_pools"  # Sync logs from more distinct contracts than one victim may cost us
    POOL_LIQUIDITY_CHANGED = "pool_liquidity_changed"  # the only V3 pools moved also had liquidity minted/burned


#: Distinct ``Sync`` emitters one victim may make us look up. A real swap, even an
#: aggregator's split route, moves a handful of pairs; a contract that emits thousands
#: of fake ``Sync`` logs from fresh addresses would otherwise cost two ``eth_call`` per
#: address (8,192 for one victim at the log cap) and push real pairs out of the
#: verdict cache.
MAX_SYNC_EMITTERS = 32


class ScreenSkip(enum.StrEnum):
    """Why a pending transaction was not simulated (``aether_mempool_screen_skipped_total`` reasons)."""

    CONTRACT_CREATION = "contract_creation"  # no `to`
    PLAIN_TRANSFER = "plain_transfer"  # empty calldata: cannot call a pool's code path that swaps
    NO_POOL_HINT = "no_pool_hint"  # `to` never touched a pool and no tracked token in calldata
    SIM_BUDGET = "sim_budget"  # over the simulations-per-second budget


class PoolKind(enum.StrEnum):
    """The kinds of pool a post-state holds (the same names as :class:`aether.config.DexKind`)."""

    V2 = DexKind.V2.value
    V3 = DexKind.V3.value


@attrs.frozen
class V2Reserves:
    """A Uniswap-V2-style pair's reserves after the victim (its last ``Sync``)."""

    kind: ClassVar[PoolKind] = PoolKind.V2
    pair: str
    reserve0: int
    reserve1: int

    @property
    def address(self) -> str:
        """The pool's address, whatever its kind."""
        return self.pair


@attrs.frozen
class V3Slot:
    """A Uniswap V3 pool after the victim (its last ``Swap``): price, active liquidity, tick.

    ``data`` is that event's 160-byte data, for
    :meth:`aether.dex.V3PoolState.after_swap_event` (the pool's ticks are the
    head's: a swap does not change them).
    """

    kind: ClassVar[PoolKind] = PoolKind.V3
    pool: str
    sqrt_price_x96: int
    liquidity: int
    tick: int
    data: bytes

    @property
    def address(self) -> str:
        """The pool's address, whatever its kind."""
        return self.pool


#: Every kind of pool state a post-state may hold.
PoolPostState = V2Reserves | V3Slot


@attrs.frozen
class PostState:
    """What a victim leaves the tracked pools at, on top of block ``block``.

    ``pools`` holds one entry per pool the victim moved, in the order each first
    moved; the state is the last one the pool reported.
    """

    victim_hash: bytes
    block: int
    pools: tuple[PoolPostState, ...]
    #: Every contract that emitted a V3 ``Swap``, ``Mint`` or ``Burn`` in the victim and
    #: whose post-victim state ``pools`` does not hold (liquidity minted/burned, an untrusted
    #: or unverifiable emitter): a pool among them changed, so it is no venue at all, not
    #: even as a counter leg at the head's state. Excluding needs no trust.
    v3_unheld: frozenset[str] = frozenset()

    def v2(self) -> dict[str, tuple[int, int]]:
        """The V2 pairs moved, ``pair -> (reserve0, reserve1)``."""
        return {p.pair: (p.reserve0, p.reserve1) for p in self.pools if isinstance(p, V2Reserves)}

    def v3(self) -> dict[str, V3Slot]:
        """The V3 pools moved, ``pool -> V3Slot``."""
        return {p.pool: p for p in self.pools if isinstance(p, V3Slot)}

    def split(self) -> tuple[dict[str, tuple[int, int]], dict[str, V3Slot]]:
        """:meth:`v2` and :meth:`v3` in one pass over the pools."""
        v2: dict[str, tuple[int, int]] = {}
        v3: dict[str, V3Slot] = {}
        for p in self.pools:
            if isinstance(p, V2Reserves):
                v2[p.pair] = (p.reserve0, p.reserve1)
            elif isinstance(p, V3Slot):
                v3[p.pool] = p
        return v2, v3


def v2_dexes(chain: ChainConfig) -> tuple[DexConfig, ...]:
    """The configured DEXes with V2 pairs (a ``kind`` other than ``v2`` is skipped)."""
    return tuple(d for d in chain.dexes if getattr(d, "kind", DexKind.V2) == DexKind.V2)


def v3_dexes(chain: ChainConfig) -> tuple[DexConfig, ...]:
    """The configured DEXes with V3 pools (``kind = "v3"``)."""
    return tuple(d for d in chain.dexes if getattr(d, "kind", DexKind.V2) == DexKind.V3)


def fee_tiers(dex: DexConfig) -> tuple[int, ...]:
    """A V3 DEX's fee tiers: the configured ones, else the four standard tiers."""
    return dex.fee_tiers or tuple(int(f) for f in FEE_TIERS)


def v3_keys(chain: ChainConfig, token: str) -> list[V3PoolKey]:
    """The WETH/``token`` pool of every V3 DEX at each of its fee tiers, by CREATE2 (no I/O)."""
    weth = chain.weth
    if token == weth:
        return []
    t0, t1 = sorted((weth, token))
    return [
        V3PoolKey(v3_pool_address(d.factory, t0, t1, fee, d.init_code_hash), d.name, t0, t1, fee)
        for d in v3_dexes(chain)
        for fee in fee_tiers(d)
    ]


class PoolTrust:
    """Decides whether a log's emitter is a tracked pair; verdicts are cached (bounded).

    Args:
        rpc: anything with ``batch`` like :class:`aether.chain.RpcClient`.
        book: the pool book; trusted pairs are registered there (``pair_for``) so
            sizing knows their DEX and tokens.
        max_cached: verdicts kept; the oldest half is forgotten past it.
    """

    def __init__(self, rpc: Any, book: PoolBook, *, v3book: V3PoolBook | None = None,
                 max_cached: int = 65_536) -> None:
        self._rpc = rpc
        self._book = book
        self._v3book = v3book
        self._dexes = v2_dexes(book.chain)
        self._v3_dexes = v3_dexes(book.chain)
        self._verdict: dict[str, PairInfo | None] = {}
        self._v3_verdict: dict[str, V3PoolKey | None] = {}
        self._max = max_cached
        self.lookups = 0

    def _derive(self, address: str, t0: str, t1: str) -> PairInfo | None:
        if t0 == t1:
            return None
        for d in self._dexes:
            if pair_address(d.factory, d.init_code_hash, t0, t1) == address:
                self._book.pair_for(d, t0, t1)
                return self._book.info(address)
        return None

    def known(self, addresses: Iterable[str]) -> tuple[dict[str, PairInfo | None], list[str]]:
        """The verdicts held without asking the node, and the addresses still to ask (no I/O)."""
        out: dict[str, PairInfo | None] = {}
        unknown: list[str] = []
        for a in dict.fromkeys(addresses):
            info = self._book.info(a)
            if info is not None:
                out[a] = info
            elif a in self._verdict:
                v = out[a] = self._verdict[a]
                if v is not None:  # the book may have forgotten it since: register it again
                    self._book.pair_for(self._book.dex(v.dex), v.token0, v.token1)
            else:
                unknown.append(a)
        return out, unknown

    async def check(self, addresses: Iterable[str]) -> dict[str, PairInfo | None]:
        """``address -> PairInfo`` for tracked pairs, ``None`` for anything else.

        Raises:
            NodeError: the ``token0``/``token1`` request as a whole failed.
        """
        out, unknown = self.known(addresses)
        if not unknown:
            return out
        return await self.ask(out, unknown)

    async def ask(self, out: dict[str, PairInfo | None], unknown: list[str]) -> dict[str, PairInfo | None]:
        """:meth:`check` for the ``unknown`` of :meth:`known`: their verdicts added to ``out``.

        Raises:
            NodeError: the ``token0``/``token1`` request as a whole failed.
        """
        self.lookups += len(unknown)
        calls = []
        for a in unknown:
            calls += [("eth_call", [{"to": a, "data": _TOKEN0}, "latest"]),
                      ("eth_call", [{"to": a, "data": _TOKEN1}, "latest"])]
        replies = await self._rpc.batch(calls)
        for i, a in enumerate(unknown):
            t0, t1 = _address_word(replies[2 * i]), _address_word(replies[2 * i + 1])
            verdict = self._derive(a, t0, t1) if t0 is not None and t1 is not None else None
            if verdict is None and any(isinstance(r, RpcError) and not _is_revert(r) for r in replies[2 * i: 2 * i + 2]):
                out[a] = None  # the node failed this call: untrusted now, asked again next time
                continue
            self._verdict[a] = verdict
            out[a] = verdict
        if len(self._verdict) > self._max:
            for k in list(self._verdict)[: len(self._verdict) // 2]:
                del self._verdict[k]
        return out

    def _derive_v3(self, address: str, t0: str, t1: str, fee: int) -> V3PoolKey | None:
        if t0 >= t1:  # a pool's token0 sorts strictly below its token1
            return None
        for d in self._v3_dexes:
            if fee in fee_tiers(d) and v3_pool_address(d.factory, t0, t1, fee, d.init_code_hash) == address:
                return V3PoolKey(address, d.name, t0, t1, fee)
        return None

    def known_v3(self, addresses: Iterable[str]) -> tuple[dict[str, V3PoolKey | None], list[str]]:
        """:meth:`known` for V3 emitters: the verdicts held, and the addresses still to ask (no I/O).

        Without a configured V3 DEX there is nothing to ask: every unknown emitter is ``None``.
        """
        out: dict[str, V3PoolKey | None] = {}
        unknown: list[str] = []
        for a in dict.fromkeys(addresses):
            key = self._v3book.key(a) if self._v3book is not None else None
            if key is not None:
                out[a] = key
            elif a in self._v3_verdict:
                out[a] = self._v3_verdict[a]
            else:
                unknown.append(a)
        if unknown and not self._v3_dexes:
            return out | {a: None for a in unknown}, []
        return out, unknown

    async def check_v3(self, addresses: Iterable[str]) -> dict[str, V3PoolKey | None]:
        """``address -> V3PoolKey`` for pools of a configured V3 DEX, ``None`` for anything else.

        A pool the V3 book tracks is trusted without a call (its key came from
        CREATE2); any other emitter is asked ``token0()``, ``token1()`` and
        ``fee()`` and trusted only if CREATE2 of a configured V3 DEX, at one of
        its fee tiers, gives back its address. A trusted pool the book does not
        track yet is registered there, to be read from the next head on.

        Raises:
            NodeError: the request as a whole failed.
        """
        out, unknown = self.known_v3(addresses)
        if not unknown:
            return out
        return await self.ask_v3(out, unknown)

    async def ask_v3(self, out: dict[str, V3PoolKey | None], unknown: list[str]) -> dict[str, V3PoolKey | None]:
        """:meth:`check_v3` for the ``unknown`` of :meth:`known_v3`: their verdicts added to ``out``.

        Raises:
            NodeError: the request as a whole failed.
        """
        self.lookups += len(unknown)
        calls = []
        for a in unknown:
            calls += [("eth_call", [{"to": a, "data": sel}, "latest"]) for sel in (_TOKEN0, _TOKEN1, _FEE)]
        replies = await self._rpc.batch(calls)
        for i, a in enumerate(unknown):
            got = replies[3 * i: 3 * i + 3]
            t0, t1, fee = _address_word(got[0]), _address_word(got[1]), _uint24_word(got[2])
            verdict = self._derive_v3(a, t0, t1, fee) if t0 and t1 and fee is not None else None
            if verdict is None and any(isinstance(r, RpcError) and not _is_revert(r) for r in got):
                out[a] = None  # the node failed this call: untrusted now, asked again next time
                continue
            self._v3_verdict[a] = verdict
            out[a] = verdict
            if verdict is not None and self._v3book is not None and self._book.chain.weth in (t0, t1):
                self._v3book.track([verdict])  # a WETH pool: a venue from the next head on
        if len(self._v3_verdict) > self._max:
            for k in list(self._v3_verdict)[: len(self._v3_verdict) // 2]:
                del self._v3_verdict[k]
        return out


def _uint24_word(reply: object) -> int | None:
    """A 32-byte ABI word holding a uint24 (a V3 fee); else None."""
    if not isinstance(reply, str) or len(reply) != 66 or not reply.startswith("0x"):
        return None
    try:
        v = hex_quantity(reply)
    except ValueError:
        return None
    return v if v < 1 << 24 else None


_LIQUIDITY_TOPICS = frozenset({MINT_EVENT_TOPIC, BURN_EVENT_TOPIC})
_NOTHING: frozenset[str] = frozenset()


def _v3_slot(e: LogEntry) -> V3Slot | None:
    """A real V3 pool's ``Swap`` (two indexed addresses, five words of data), else None."""
    if len(e.topics) != 3 or len(e.data) != 160:
        return None
    price = int.from_bytes(e.data[64:96], "big")
    liquidity = int.from_bytes(e.data[96:128], "big")
    tick = int.from_bytes(e.data[128:160], "big", signed=True)
    if price >> 160 or liquidity >> 128 or not -(1 << 23) <= tick < (1 << 23):
        return None
    return V3Slot(e.address, price, liquidity, tick, e.data)


def _is_revert(err: RpcError) -> bool:
    return err.code == 3 or "revert" in f"{err.message} {err.data}".lower()


def _address_word(reply: object) -> str | None:
    """A 32-byte ABI word holding an address (upper 12 bytes zero), lowercase; else None."""
    if not isinstance(reply, str) or len(reply) != 66 or not reply.startswith("0x"):
        return None
    try:
        hex_quantity(reply)
    except ValueError:
        return None
    if reply[2:26] != "0" * 24:
        return None
    return "0x" + reply[26:].lower()


def _q(v: int) -> str:
    return hex(v)


def victim_call(tx: PendingTx) -> dict[str, Any]:
    """The victim as an ``eth_simulateV1`` call: its own sender, nonce, gas and fee fields."""
    call: dict[str, Any] = {
        "from": tx.sender,
        "to": tx.to,
        "value": hex(tx.value),
        "input": "0x" + tx.input.hex(),
        "gas": hex(tx.gas),
        "nonce": hex(tx.nonce),
    }
    if tx.max_fee_per_gas is not None:
        call["maxFeePerGas"] = hex(tx.max_fee_per_gas)
        call["maxPriorityFeePerGas"] = hex(tx.max_priority_fee_per_gas or 0)
    elif tx.gas_price is not None:
        call["gasPrice"] = hex(tx.gas_price)
    return call


@attrs.frozen
class VictimSimulatorStatistics:
    """Counters of a :class:`VictimSimulator`."""

    simulated: int
    post_states: int
    failed: tuple[tuple[str, int], ...]
    untrusted_logs: int
    trust_lookups: int
    in_flight: int
    max_in_flight: int
    liquidity_changed: int = 0  # V3 pools dropped from a post-state: the victim also minted/burned there


class VictimSimulator:
    """Simulates one pending victim on a head and returns its :class:`PostState`.

    Args:
        rpc: an :class:`aether.chain.RpcClient` (or anything with ``batch``).
        book: the pool book (for trust and pair metadata).
        timeout_s: deadline of one simulation request; past it the victim fails
            closed as ``sim_timeout``.
        on_untrusted: called with the number of ``Sync``/V3 ``Swap``-topic logs ignored
            because their emitter is not a tracked pool (for a metric).
        v3book: the V3 pool book (its pools are trusted without a call; pools of a
            configured V3 DEX found in a victim are registered there).
    """

    def __init__(
        self,
        rpc: Any,
        book: PoolBook,
        *,
        timeout_s: float = 1.0,
        on_untrusted: Callable[[int], None] | None = None,
        v3book: V3PoolBook | None = None,
    ) -> None:
        self._rpc = rpc
        # An RpcClient takes the victim's deadline into its own cancel scope; anything else
        # with a plain ``batch`` gets ours around the call.
        try:
            self._rpc_takes_deadline = "deadline" in inspect.signature(rpc.batch).parameters
        except (TypeError, ValueError):
            self._rpc_takes_deadline = False
        self.trust = PoolTrust(rpc, book, v3book=v3book)
        self.timeout_s = timeout_s
        self._on_untrusted = on_untrusted
        self._simulated = 0
        self._post_states = 0
        self._failed: dict[str, int] = {}
        self._untrusted = 0
        self._liquidity_changed = 0
        self._in_flight = 0
        self._max_in_flight = 0

    def statistics(self) -> VictimSimulatorStatistics:
        return VictimSimulatorStatistics(
            self._simulated, self._post_states, tuple(sorted(self._failed.items())), self._untrusted,
            self.trust.lookups, self._in_flight, self._max_in_flight, self._liquidity_changed,
        )

    @staticmethod
    def simulate_params(tx: PendingTx, head: Head) -> list[Any]:
        """``eth_simulateV1`` params: the victim alone, one block after ``head``."""
        overrides = {"baseFeePerGas": "0x0"}
        if head.timestamp:
            # As the validator: anvil's default is the parent's own time, which the
            # victim's deadline (and a pair's accumulators) would see wrongly.
            overrides["time"] = _q(head.timestamp + 1)
        return [
            {
                "blockStateCalls": [{"blockOverrides": overrides, "calls": [victim_call(tx)]}],
                "validation": False,
                "traceTransfers": False,
                "returnFullTransactions": False,
            },
            hex(head.number),
        ]

    async def simulate(self, tx: PendingTx, head: Head) -> PostState | Rejection:
        """The victim's post-state on ``head``; never raises on node trouble or bad answers."""
        self._simulated += 1
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            result = await self._simulate(tx, head)
        finally:
            self._in_flight -= 1
        if isinstance(result, Rejection):
            self._failed[result.reason] = self._failed.get(result.reason, 0) + 1
        else:
            self._post_states += 1
        return result

    async def _simulate(self, tx: PendingTx, head: Head) -> PostState | Rejection:
        if tx.to is None:
            return Rejection(SimFailure.NO_POOL_MOVED.value, "contract creation")
        calls: list[tuple[str, list[Any]]] = [
            ("eth_simulateV1", self.simulate_params(tx, head)),
            # Same request, same block: a victim that is not its sender's next
            # transaction lands (if ever) on state this simulation never saw.
            ("eth_getTransactionCount", [tx.sender, hex(head.number)]),
            # And the node's own head: if it has moved on, our tick is late and the bundle
            # would target a block that is already mined (fail closed, before any more work).
            ("eth_blockNumber", []),
        ]
        replies: list[Any] | None = None
        # One deadline for the whole victim: the simulation and the trust look-up after it.
        deadline = trio.current_time() + self.timeout_s
        try:
            if self._rpc_takes_deadline:
                # The client's own cancel scope carries our deadline too (one scope, not two).
                try:
                    replies = await self._rpc.batch(calls, deadline=deadline)
                except trio.TooSlowError:
                    pass
            else:
                with trio.move_on_at(deadline):
                    replies = await self._rpc.batch(calls)
        except NodeTimeout as exc:
            return Rejection(SimFailure.SIM_TIMEOUT.value, str(exc)[:200])
        except NodeError as exc:
            return Rejection(SimFailure.SIM_ERROR.value, f"{type(exc).__name__}: {str(exc)[:200]}")
        if replies is None:
            return Rejection(SimFailure.SIM_TIMEOUT.value, f"no answer in {self.timeout_s} s")
        sim, count, latest = replies
        if isinstance(latest, str) and latest.startswith("0x"):
            try:
                if hex_quantity(latest) > head.number:
                    return Rejection("stale_head", f"the node is at {hex_quantity(latest)}, simulated on {head.number}")
            except ValueError:
                pass
        if isinstance(sim, RpcError):
            return Rejection(SimFailure.SIM_ERROR.value, f"eth_simulateV1: {str(sim)[:200]}")
        try:
            next_nonce = hex_quantity(count)
        except (TypeError, ValueError):
            return Rejection(SimFailure.SIM_ERROR.value, "bad eth_getTransactionCount answer")
        if tx.nonce > next_nonce:
            return Rejection("victim_nonce_ahead", f"victim nonce {tx.nonce}, the sender's next is {next_nonce}")
        if tx.nonce < next_nonce:
            return Rejection("victim_nonce_used", f"victim nonce {tx.nonce}, the sender's next is {next_nonce}")
        try:
            blocks = sim
            if not isinstance(blocks, list) or len(blocks) != 1:
                raise DecodeError("not one block", SimFailure.SIM_MALFORMED)
            results = blocks[0]["calls"]
            if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], dict):
                raise DecodeError("not one call result", SimFailure.SIM_MALFORMED)
            status = results[0].get("status")
            if not isinstance(status, str):
                raise DecodeError("no status", SimFailure.SIM_MALFORMED)
            ok = hex_quantity(status) == 1
            if not ok:
                err = results[0].get("error")
                msg = err.get("message", "") if isinstance(err, dict) else str(err or "")
                return Rejection("victim_reverts", msg[:200])
            entries = parse_logs(results[0].get("logs"))
            syncs = sync_events(entries)
        except DecodeError as exc:
            return Rejection(SimFailure.SIM_MALFORMED.value, str(exc)[:200])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            return Rejection(SimFailure.SIM_MALFORMED.value, f"{type(exc).__name__}")
        # One pass over the logs: V3 swaps, V3 liquidity changes, and where each emitter first logged.
        swaps: list[LogEntry] = []
        minted_list: list[str] = []
        first: dict[str, int] = {}
        for i, e in enumerate(entries):
            if e.address not in first:
                first[e.address] = i
            if e.topics:
                t = e.topics[0]
                if t == SWAP_EVENT_TOPIC:
                    swaps.append(e)
                elif t in _LIQUIDITY_TOPICS:
                    minted_list.append(e.address)
        if not syncs and not swaps:
            return Rejection(SimFailure.NO_POOL_MOVED.value)
        emitters = {ev.address for ev in syncs}
        if swaps:
            emitters.update(e.address for e in swaps)
        if len(emitters) > MAX_SYNC_EMITTERS:
            return Rejection(SimFailure.TOO_MANY_POOLS.value,
                             f"pool events from {len(emitters)} contracts (more than {MAX_SYNC_EMITTERS})")
        # The verdicts held already need no I/O, and no cancel scope (~5 us): only an
        # emitter never seen before makes a trip to the node, under the victim's deadline.
        trusted, unknown = self.trust.known(ev.address for ev in syncs)
        trusted_v3, unknown_v3 = self.trust.known_v3(e.address for e in swaps) if swaps else ({}, [])
        if unknown or unknown_v3:
            done = False
            try:
                with trio.move_on_at(deadline):
                    if unknown:
                        trusted = await self.trust.ask(trusted, unknown)
                    if unknown_v3:
                        trusted_v3 = await self.trust.ask_v3(trusted_v3, unknown_v3)
                    done = True
            except NodeTimeout as exc:
                return Rejection(SimFailure.SIM_TIMEOUT.value, f"pool trust: {str(exc)[:200]}")
            except NodeError as exc:
                return Rejection(SimFailure.SIM_ERROR.value, f"pool trust: {type(exc).__name__}")
            if not done:
                return Rejection(SimFailure.SIM_TIMEOUT.value, f"pool trust: no answer within {self.timeout_s} s")
        last: dict[str, PoolPostState] = {}
        untrusted = 0
        for ev in syncs:
            if trusted.get(ev.address) is None:
                untrusted += 1
                continue
            if ev.reserves is None:
                return Rejection(SimFailure.SIM_MALFORMED.value, f"tracked pair {ev.address}: malformed Sync")
            last[ev.address] = V2Reserves(ev.address, ev.reserves[0], ev.reserves[1])
        for e in swaps:
            if trusted_v3.get(e.address) is None:
                untrusted += 1
                continue
            slot = _v3_slot(e)
            if slot is None:
                return Rejection(SimFailure.SIM_MALFORMED.value, f"tracked V3 pool {e.address}: malformed Swap")
            last[e.address] = slot
        if untrusted:
            self._untrusted += untrusted
            if self._on_untrusted is not None:
                self._on_untrusted(untrusted)
        # A V3 pool whose liquidity the victim also minted or burned has ticks the
        # head's book does not hold: its Swap alone would predict wrongly. Dropped.
        minted = frozenset(minted_list)
        changed = minted & trusted_v3.keys()
        for a in changed:
            if last.pop(a, None) is not None:
                self._liquidity_changed += 1
        if not last:
            if changed:
                return Rejection(SimFailure.POOL_LIQUIDITY_CHANGED.value, f"{len(changed)} V3 pools")
            return Rejection(SimFailure.NO_POOL_MOVED.value, f"{untrusted} untrusted pool logs")
        order = sorted(last, key=first.__getitem__) if len(last) > 1 else last
        unheld = (minted | {e.address for e in swaps}) - last.keys() if minted or swaps else _NOTHING
        return PostState(tx.hash, head.number, tuple([last[a] for a in order]), unheld)
