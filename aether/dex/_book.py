"""The pool book: reserves of every pair we care about, one block at a time.

Pair addresses come from CREATE2 locally (:func:`pair_address`), never from the
node. Reserves are fetched the first time a pair is needed (:meth:`PoolBook.ensure`)
and then refreshed on every new head for all tracked pairs in one batched
request (:meth:`PoolBook.refresh`), which also carries the caller's own calls
(the searcher's balances) so that everything is read at the same block.

A pending victim never touches the book: strategies take a :meth:`PoolBook.view`,
a copy-on-write overlay, and apply the victim's swaps there.

Bounded for months-long runs: with a ``[[token]]`` list the tracked pairs are those
of the listed tokens. Without one, any token a victim trades may be tracked, so the
book keeps at most ``max_pairs`` (:data:`OPEN_UNIVERSE_MAX_PAIRS` by default): the
pairs used least recently (by :meth:`PoolBook.ensure`) are forgotten first, and so is
the oldest half of the remembered absent pairs once they exceed four times that.
Without the bound the per-head refresh batch would grow with every token ever seen,
past what nodes accept in one batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from .._errors import RpcError
from ..config import ChainConfig, DexConfig
from ..quantity import hex_quantity
from ._math import UINT112_MAX
from ._pairs import pair_address, sort_tokens

__all__ = ["OPEN_UNIVERSE_MAX_PAIRS", "BookStatistics", "BookView", "PairInfo", "PoolBook"]

_GET_RESERVES = "0x0902f1ac"

#: Pairs kept when no ``[[token]]`` list bounds the universe (one refresh batch carries
#: them all every head; providers commonly refuse batches past 1,000 calls).
OPEN_UNIVERSE_MAX_PAIRS = 512


@attrs.frozen
class PairInfo:
    """What a pair address stands for: its DEX and its sorted tokens."""

    address: str
    dex: str
    token0: str
    token1: str

    def other(self, token: str) -> str:
        return self.token1 if token == self.token0 else self.token0


@attrs.frozen
class BookStatistics:
    """A snapshot of the book's counters."""

    tracked: int
    absent: int
    block: int | None
    refreshes: int
    fetches: int
    fetch_errors: int
    evicted: int = 0


def _is_revert(err: RpcError) -> bool:
    text = f"{err.message} {err.data}".lower()
    return err.code == 3 or "revert" in text


def _parse_reserves(result: Any) -> tuple[int, int] | None:
    """``getReserves()`` return data -> (reserve0, reserve1); None if it is not one."""
    if not isinstance(result, str) or not result.startswith("0x"):
        return None
    try:
        raw = bytes.fromhex(result[2:])
    except ValueError:
        return None
    if len(raw) < 64:
        return None
    r0 = int.from_bytes(raw[0:32], "big")
    r1 = int.from_bytes(raw[32:64], "big")
    if r0 > UINT112_MAX or r1 > UINT112_MAX:
        return None
    return r0, r1


def _tag(block: int | str) -> str:
    return hex(block) if isinstance(block, int) else block


class PoolBook:
    """Reserves of the tracked pairs, as of one block.

    One task owns a book (the strategy actor handles ticks and victims in turn);
    calls are not meant to overlap.

    Args:
        rpc: anything with ``batch([(method, params), ...])`` like
            :class:`aether.chain.RpcClient`.
        chain: WETH and the DEXes (factory, init-code hash).
        max_pairs: the most pairs tracked at once; by default unbounded when the
            chain lists its tokens, else :data:`OPEN_UNIVERSE_MAX_PAIRS`.
    """

    def __init__(self, rpc: Any, chain: ChainConfig, *, max_pairs: int | None = -1) -> None:
        self._rpc = rpc
        self.chain = chain
        if max_pairs == -1:
            max_pairs = None if chain.tokens else OPEN_UNIVERSE_MAX_PAIRS
        if max_pairs is not None and max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1 or None, not {max_pairs}")
        self.max_pairs = max_pairs
        self._dexes: dict[str, DexConfig] = {d.name: d for d in chain.dexes}
        self._info: dict[str, PairInfo] = {}
        # Both ordered oldest use first (dicts keep insertion order; a use re-inserts).
        self._reserves: dict[str, tuple[int, int]] = {}
        self._absent: dict[str, None] = {}
        self._evicted = 0
        self._block: int | None = None
        self._refreshes = 0
        self._fetches = 0
        self._fetch_errors = 0

    # ------------------------------------------------------------------ addresses

    def dex(self, name: str) -> DexConfig:
        return self._dexes[name]

    def pair_for(self, dex: str | DexConfig, a: str, b: str) -> str:
        """The pair of ``a``/``b`` on ``dex`` by CREATE2 (cached); registers its metadata.

        Raises:
            KeyError: unknown DEX name. ValueError: identical tokens.
        """
        d = dex if isinstance(dex, DexConfig) else self._dexes[dex]
        addr = pair_address(d.factory, d.init_code_hash, a, b)
        if addr not in self._info:
            t0, t1 = sort_tokens(a, b)
            self._info[addr] = PairInfo(addr, d.name, t0, t1)
        return addr

    def info(self, pair: str) -> PairInfo | None:
        return self._info.get(pair)

    # ------------------------------------------------------------------ state

    @property
    def block(self) -> int | None:
        """The block the reserves were last refreshed at (None before the first refresh)."""
        return self._block

    def is_absent(self, pair: str) -> bool:
        return pair in self._absent

    def reserves(self, pair: str) -> tuple[int, int] | None:
        return self._reserves.get(pair)

    def tracked(self) -> dict[str, PairInfo]:
        """Every pair with known reserves, with its metadata."""
        return {p: self._info[p] for p in self._reserves}

    def view(self) -> BookView:
        """A copy-on-write overlay: writes stay in the view, the book never changes."""
        return BookView(self)

    def statistics(self) -> BookStatistics:
        return BookStatistics(
            tracked=len(self._reserves),
            absent=len(self._absent),
            block=self._block,
            refreshes=self._refreshes,
            fetches=self._fetches,
            fetch_errors=self._fetch_errors,
            evicted=self._evicted,
        )

    # ------------------------------------------------------------------ node I/O

    def _reserves_call(self, pair: str, tag: str) -> tuple[str, list[Any]]:
        return ("eth_call", [{"to": pair, "data": _GET_RESERVES}, tag])

    def _store(self, pair: str, result: Any) -> None:
        if isinstance(result, RpcError):
            if _is_revert(result):
                self._absent[pair] = None
                self._reserves.pop(pair, None)
            else:
                self._fetch_errors += 1
            return
        if result == "0x":  # no code at the address: the pair was never created
            self._absent[pair] = None
            self._reserves.pop(pair, None)
            return
        parsed = _parse_reserves(result)
        if parsed is None:
            self._fetch_errors += 1
            return
        self._reserves[pair] = parsed
        self._absent.pop(pair, None)

    async def ensure(self, pairs: Iterable[str]) -> None:
        """Fetch reserves, in one batched request, of the pairs not yet known.

        Pairs must have come from :meth:`pair_for` (one that has not, or whose
        metadata the bound has since dropped, is not fetched). Reads at the book's block
        once a refresh has set one (so every pair is of the same block), else at
        ``latest``. Pairs without code or whose ``getReserves`` reverts are
        remembered as absent and not asked again.

        Raises:
            NodeError: the whole request failed (callers count it as
                ``reserves_unavailable``).
        """
        missing = self.touch(pairs)
        if missing:
            await self.fetch(missing)

    def touch(self, pairs: Iterable[str]) -> list[str]:
        """The first half of :meth:`ensure`, no I/O: mark the known pairs used now, and return
        the pairs to fetch (not known, not absent, with metadata), each once."""
        missing = []
        reserves = self._reserves
        for p in dict.fromkeys(pairs):
            if p in reserves:
                if self.max_pairs is not None:
                    reserves[p] = reserves.pop(p)  # used now: the newest
            elif p not in self._absent and p in self._info:  # metadata comes from pair_for
                missing.append(p)
        return missing

    async def fetch(self, missing: list[str]) -> None:
        """The second half of :meth:`ensure`: read ``missing`` (from :meth:`touch`) in one request.

        Raises:
            NodeError: the whole request failed.
        """
        tag = "latest" if self._block is None else hex(self._block)
        self._fetches += 1
        results = await self._rpc.batch([self._reserves_call(p, tag) for p in missing])
        for pair, result in zip(missing, results, strict=True):
            self._store(pair, result)
        self._evict()

    def _evict(self) -> None:
        """Forget the least recently used pairs beyond ``max_pairs`` (and old absent ones)."""
        cap = self.max_pairs
        if cap is None:
            return
        while len(self._reserves) > cap:
            pair = next(iter(self._reserves))
            del self._reserves[pair]
            self._info.pop(pair, None)
            self._evicted += 1
        if len(self._absent) > 4 * cap:
            for pair in list(self._absent)[: len(self._absent) // 2]:
                del self._absent[pair]
                self._info.pop(pair, None)
        if len(self._info) > 8 * cap:
            # Metadata of pairs computed but neither tracked nor absent (their fetch failed):
            # pair_for registers it again when the pair is next wanted.
            keep = self._reserves.keys() | self._absent.keys()
            self._info = {p: i for p, i in self._info.items() if p in keep}

    async def refresh(self, block: int | str, extra_calls: Sequence[tuple[str, Sequence[Any]]] = ()) -> list[Any]:
        """Re-read every tracked pair at ``block``, plus the caller's calls, in one request.

        Args:
            block: the new head's number (or a tag such as ``latest``).
            extra_calls: ``(method, params)`` to send in the same batch, for
                example WETH ``balanceOf(searcher)`` and ``eth_getBalance``.

        Returns:
            The results of ``extra_calls`` in order (a value or an ``RpcError``).

        Raises:
            NodeError: the whole request failed; the book keeps its old block.
        """
        tag = _tag(block)
        pairs = list(self._reserves)
        calls = [self._reserves_call(p, tag) for p in pairs] + [(m, list(p)) for m, p in extra_calls]
        results = await self._rpc.batch(calls) if calls else []
        for pair, result in zip(pairs, results[: len(pairs)], strict=True):
            if pair in self._info:  # not evicted while the batch was out (a book has one owner)
                self._store(pair, result)
        self._refreshes += 1
        if isinstance(block, int):
            self._block = block
        elif block.startswith("0x"):
            self._block = hex_quantity(block)
        return list(results[len(pairs) :])


class BookView:
    """A copy-on-write overlay of a :class:`PoolBook` that a victim's swaps mutate."""

    def __init__(self, book: PoolBook) -> None:
        self._book = book
        self._own: dict[str, tuple[int, int]] = {}

    @property
    def book(self) -> PoolBook:
        return self._book

    def reserves(self, pair: str) -> tuple[int, int] | None:
        own = self._own.get(pair)
        return own if own is not None else self._book.reserves(pair)

    def oriented(self, pair: str, token_in: str) -> tuple[int, int] | None:
        """``(reserve_in, reserve_out)`` for a swap of ``token_in`` through ``pair``."""
        r = self.reserves(pair)
        info = self._book.info(pair)
        if r is None or info is None:
            return None
        return (r[0], r[1]) if token_in == info.token0 else (r[1], r[0])

    def apply(self, pair: str, token_in: str, amount_in: int, amount_out: int) -> None:
        """Record a swap: ``amount_in`` of ``token_in`` in, ``amount_out`` of the other out."""
        r = self.reserves(pair)
        info = self._book.info(pair)
        if r is None or info is None:
            raise KeyError(pair)
        if token_in == info.token0:
            self._own[pair] = (r[0] + amount_in, r[1] - amount_out)
        else:
            self._own[pair] = (r[0] - amount_out, r[1] + amount_in)

    def set_reserves(self, pair: str, reserve0: int, reserve1: int) -> None:
        """Record a pair's reserves as a victim left them (its last ``Sync``), whatever it did."""
        self._own[pair] = (reserve0, reserve1)

    def changed(self) -> dict[str, tuple[int, int]]:
        """The pairs this view changed, with their new reserves."""
        return dict(self._own)
