"""Cheap screening: which pending transactions are worth a simulation.

A simulation costs the node a few milliseconds; the mempool carries hundreds of
transactions a second, most of which cannot move a tracked pool. The prefilter
looks only at the pending transaction's JSON (no decode, no keccak) and lets
through a transaction when one of these holds (the hint, counted by
``aether_mempool_screen_passed_total{hint}``):

``router``   ``to`` is a configured Router02 (or another known router given at start);
``learned``  ``to`` is a contract whose earlier victims moved a tracked pair, or a
             tracked pair itself (a bot calling ``pair.swap`` directly): learned from
             simulations and from the pool book, bounded (oldest forgotten first);
``token``    the calldata's first 8 KiB contain the address of WETH or of a configured
             token (any ABI-encoded path or packed V3 path carries its tokens verbatim).

Everything else is skipped and counted by reason (:class:`ScreenSkip`): no ``to``
(contract creation), empty calldata (a plain transfer cannot swap), or no hint.
What it costs in coverage (docs/validation/coverage.md): a victim through a
contract never seen before whose calldata names no tracked token (compressed or
index-encoded calldata, tokens read from storage) is missed until another victim
teaches the prefilter that contract; nothing else is.

A second bound sits after the prefilter: :class:`SimBudget`, a token bucket of
simulations per second. Beyond it a victim is skipped (``sim_budget``), never
queued without bound.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..config import ChainConfig
from ._poststate import ScreenSkip

__all__ = ["HINT_SCAN_CHARS", "LEARNED_MAX", "Prefilter", "ScreenHint", "SimBudget"]

#: Contracts remembered as pool-touching (oldest forgotten first).
LEARNED_MAX = 4096
#: Calldata scanned for token addresses, in hex characters (8 KiB of calldata): a swap's
#: tokens sit near the start; a flood of huge transactions must not make screening slow.
HINT_SCAN_CHARS = 16_384
#: Bytes of a key of the token search (see ``Prefilter._names_token``): 10 hex digits
#: leave a key every 31 bytes for 40-digit addresses. Keys are longer when a token holds
#: a longer run of one byte (see ``_geometry``), so ABI padding never matches a key.
_KEY_BYTES = 10
#: Keys the search reads per ``struct`` call (2**6: about 2 KB of hex): most calldata is one call.
_CHUNK_BITS = 6
_CHUNK = 1 << _CHUNK_BITS
#: Runs of one repeated byte (see ``_geometry``).
_RUNS = re.compile(rb"(.)\1*", re.S)


class ScreenHint(enum.StrEnum):
    """Why a pending transaction was let through (``aether_mempool_screen_passed_total`` hints)."""

    ROUTER = "router"
    LEARNED = "learned"
    TOKEN = "token"


_CONTRACT_CREATION: tuple[bool, str] = (False, ScreenSkip.CONTRACT_CREATION)
_PLAIN_TRANSFER: tuple[bool, str] = (False, ScreenSkip.PLAIN_TRANSFER)
_NO_POOL_HINT: tuple[bool, str] = (False, ScreenSkip.NO_POOL_HINT)
_ROUTER: tuple[bool, str] = (True, ScreenHint.ROUTER)
_LEARNED: tuple[bool, str] = (True, ScreenHint.LEARNED)
_TOKEN: tuple[bool, str] = (True, ScreenHint.TOKEN)


class Prefilter:
    """Screens pending transactions on their JSON alone; learns pool-touching contracts.

    Args:
        chain: WETH, the DEX routers, the configured tokens (their addresses are the
            calldata hints).
        routers: more addresses always let through (for example a Universal Router).
        learned_max: bound of the learned set.
    """

    def __init__(self, chain: ChainConfig, *, routers: Iterable[str] = (), learned_max: int = LEARNED_MAX) -> None:
        self._routers = {d.router.lower() for d in chain.dexes} | {r.lower() for r in routers}
        tokens = [chain.weth, *(t.address for t in chain.tokens)]
        self._tokens = tuple(dict.fromkeys(t.lower().removeprefix("0x") for t in tokens))
        # An empty token occurs in every text ("" in text), as the per-token search had it.
        self._empty_token = "" in self._tokens
        raw = tuple(t.encode("utf-8", "surrogatepass") for t in self._tokens if t)
        self._key, self._stride = _geometry(raw)
        self._frags = _fragments(raw, self._key)
        self._any_frag = frozenset(self._frags)
        self._chunk, self._tail = _unpackers(self._key, self._stride)
        self._chunk_bytes = _CHUNK * self._stride
        # Texts of up to _CHUNK keys (shorter than _one_read bytes) take one tail reader,
        # indexed by the text's length; shorter than a key, a reader of no keys.
        self._one_read = (_CHUNK - 1) * self._stride + self._key + 1
        self._reader_of_len = [self._tail[(n - self._key) // self._stride + 1 if n >= self._key else 0]
                               for n in range(self._one_read)]
        self._learned: dict[str, None] = {}
        self._max = learned_max

    def learn(self, addresses: Iterable[str | None]) -> None:
        """Remember contracts that touched a tracked pool (re-learning refreshes one)."""
        learned = self._learned
        for a in addresses:
            if a is None:
                continue
            a = a.lower()
            learned.pop(a, None)
            learned[a] = None
        while len(learned) > self._max:
            del learned[next(iter(learned))]

    def knows(self, address: str) -> bool:
        return address.lower() in self._learned

    @property
    def learned(self) -> int:
        return len(self._learned)

    def screen(self, obj: dict[str, object]) -> tuple[bool, str]:
        """``(True, hint)`` to simulate, ``(False, ScreenSkip)`` to skip; never raises.

        The verdicts are shared constant tuples: building one per frame (an enum member
        lookup and a tuple) cost as much as all the checks of a plain transfer.
        """
        to = obj.get("to")
        if to.__class__ is not str:
            return _CONTRACT_CREATION
        data = obj.get("input")
        if data.__class__ is not str:
            data = obj.get("data")
        if data.__class__ is not str or len(data) <= 2:
            return _PLAIN_TRANSFER
        low = to.lower()
        if low in self._routers:
            return _ROUTER
        if low in self._learned:
            return _LEARNED
        if self._names_token(data[:HINT_SCAN_CHARS].lower()):
            return _TOKEN
        return _NO_POOL_HINT

    def _names_token(self, text: str) -> bool:
        """Whether any tracked token's characters occur in ``text``, at any character offset.

        The same decision as ``any(t in text for t in tokens)`` for every text (the
        per-token search it replaced: 151 searches of up to 16 KiB of hex cost about
        100 us a frame), in one pass of a few C calls. ``text`` is searched as its UTF-8
        bytes: a character string occurs in a text exactly when its UTF-8 occurs in the
        text's (UTF-8 is self-synchronising; ``surrogatepass`` keeps lone surrogates
        encodable the same way), so offsets below are byte offsets.

        Every token is at least ``L`` bytes long. Keys of ``K`` bytes are read at the
        offsets 0, S, 2S, ... with ``S = L - K + 1``: an occurrence of a token at
        offset i spans [i, i + L), and the window [i, i + L - K] of S offsets holds a
        multiple p of S, so the key at p lies wholly inside the occurrence and equals
        the token's K bytes at offset p - i. So a text none of whose keys is a
        K-byte fragment of a token names no token (one ``struct`` unpack, one
        ``isdisjoint``); a hit is then confirmed exactly with ``startswith`` at the
        offset the fragment implies (tests/strategy/test_screen_onepass.py holds the
        decision equal to the per-token search, adversarial texts included).
        """
        if self._empty_token:
            return True
        raw = text.encode("utf-8", "surrogatepass")
        n = len(raw)
        if n < self._one_read:  # most calldata: one reader, picked by length (no arithmetic)
            if self._any_frag.isdisjoint(self._reader_of_len[n](raw, 0)):
                return False
            return self._confirm(raw)
        frags = self._any_frag
        count = (n - self._key) // self._stride + 1
        full = (count - 1) >> _CHUNK_BITS  # whole chunks before the tail (the tail keeps >= 1 key)
        tail_at = full * self._chunk_bytes
        for chunk in self._chunk(memoryview(raw)[:tail_at]):
            if not frags.isdisjoint(chunk):
                return self._confirm(raw)
        if frags.isdisjoint(self._tail[count - (full << _CHUNK_BITS)](raw, tail_at)):
            return False
        return self._confirm(raw)

    def _confirm(self, raw: bytes) -> bool:
        """Some key is a token fragment: whether a whole token sits where a hit says (rare, exact)."""
        key, stride, frags = self._key, self._stride, self._frags
        # One pass, linear in the keys (a text of hits and near misses must not cost more).
        for at in range(0, len(raw) - key + 1, stride):
            hits = frags.get(raw[at:at + key])
            if hits is None:
                continue
            for token, offset in hits:
                start = at - offset
                if start >= 0 and raw.startswith(token, start):
                    return True
        return False


def _geometry(tokens: tuple[bytes, ...]) -> tuple[int, int]:
    """The key length K and stride S = L - K + 1 for tokens at least L bytes long.

    K is ``_KEY_BYTES``, or one more than the longest run of one repeated byte in a
    token (a vanity address such as TUSD's ``0x0000000000085d47...``): calldata is full
    of zero (and ``f``) runs, and a key that is a run of a token would hit on nearly
    every frame and send it to the slow confirmation. K <= (L + 1) // 2 keeps K <= S:
    keys do not overlap, so one ``struct`` format reads them.
    """
    shortest = min((len(t) for t in tokens), default=1)
    run = max((len(m.group()) for t in tokens for m in _RUNS.finditer(t)), default=0)
    key = max(1, min(max(_KEY_BYTES, run + 1), (shortest + 1) // 2))
    return key, shortest - key + 1


def _fragments(tokens: tuple[bytes, ...], key: int) -> dict[bytes, tuple[tuple[bytes, int], ...]]:
    """For every ``key``-byte fragment of a token, which tokens hold it and at which offset.

    Empty tokens are left to the caller (only a hand-built ``ChainConfig`` could hold one).
    """
    frags: dict[bytes, list[tuple[bytes, int]]] = {}
    for t in tokens:
        for off in range(len(t) - key + 1):
            frags.setdefault(t[off:off + key], []).append((t, off))
    return {f: tuple(v) for f, v in frags.items()}


_Chunks = Callable[[memoryview], Iterator[tuple[Any, ...]]]
_Tail = Callable[[bytes, int], tuple[Any, ...]]


def _unpackers(key: int, stride: int) -> tuple[_Chunks, list[_Tail]]:
    """C-level key readers: whole chunks of ``_CHUNK`` keys (``iter_unpack``), and a tail of 1..``_CHUNK`` keys.

    A chunk reads ``_CHUNK * stride`` bytes; a tail of r keys reads ``(r - 1) * stride + key``
    bytes from its offset, so no reader needs a byte past the last key.
    """
    one = f"{key}s{stride - key}x"
    chunk = struct.Struct(one * _CHUNK).iter_unpack
    tails: list[_Tail] = [struct.Struct("").unpack_from]  # index 0: no key (a text shorter than one)
    tails += [struct.Struct(one * (r - 1) + f"{key}s").unpack_from for r in range(1, _CHUNK + 1)]
    return chunk, tails


class SimBudget:
    """A token bucket: at most ``rate_per_s`` simulations a second, bursts up to ``burst``.

    Time comes from the caller (trio's clock), so tests run on the autojump clock.
    """

    def __init__(self, rate_per_s: float, *, burst: float | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"SimBudget: rate_per_s must be > 0, got {rate_per_s!r}")
        self.rate = float(rate_per_s)
        self.burst = float(burst if burst is not None else rate_per_s)
        self._tokens = self.burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Spend one simulation if the budget allows it at time ``now``."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
