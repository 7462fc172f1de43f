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
from collections.abc import Callable, Iterable

from ..config import ChainConfig
from ._poststate import ScreenSkip

__all__ = ["HINT_SCAN_CHARS", "LEARNED_MAX", "Prefilter", "ScreenHint", "SimBudget"]

#: Contracts remembered as pool-touching (oldest forgotten first).
LEARNED_MAX = 4096
#: Calldata scanned for token addresses, in hex characters (8 KiB of calldata): a swap's
#: tokens sit near the start; a flood of huge transactions must not make screening slow.
HINT_SCAN_CHARS = 16_384


class ScreenHint(enum.StrEnum):
    """Why a pending transaction was let through (``aether_mempool_screen_passed_total`` hints)."""

    ROUTER = "router"
    LEARNED = "learned"
    TOKEN = "token"


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
        self._cut, self._frags = _fragments(tuple(t for t in self._tokens if t))
        self._any_frag = frozenset(self._frags)
        self._width = _block_width(tuple(t for t in self._tokens if t))
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
        """``(True, hint)`` to simulate, ``(False, ScreenSkip)`` to skip; never raises."""
        to = obj.get("to")
        if to.__class__ is not str:
            return False, ScreenSkip.CONTRACT_CREATION
        data = obj.get("input")
        if data.__class__ is not str:
            data = obj.get("data")
        if data.__class__ is not str or len(data) <= 2:
            return False, ScreenSkip.PLAIN_TRANSFER
        low = to.lower()
        if low in self._routers:
            return True, ScreenHint.ROUTER
        if low in self._learned:
            return True, ScreenHint.LEARNED
        if self._names_token(data[:HINT_SCAN_CHARS].lower()):
            return True, ScreenHint.TOKEN
        return False, ScreenSkip.NO_POOL_HINT

    def _names_token(self, text: str) -> bool:
        """Whether any tracked token's hex digits occur in ``text``, at any character offset.

        One pass instead of one substring search per token (151 searches of up to
        16 KiB of hex cost about 100 us a frame): ``text`` is cut into blocks of
        ``B`` characters at offsets 0, B, 2B, ... by one C-level ``findall``, and
        every occurrence of a token of length L >= 2B - 1 starting at offset i
        covers the whole block starting at the first multiple of B at or after i.
        So a text without any block equal to some token's B-character fragment
        names no token (one ``isdisjoint``); a hit is then confirmed exactly with
        ``startswith`` at the offset the fragment implies. The decision is the
        same as ``any(t in text for t in tokens)`` for every text, nibble-aligned
        or not (tests/strategy/test_screen_onepass.py holds the two equal).
        """
        if self._empty_token:
            return True
        blocks = self._cut(text)
        frags = self._frags
        if self._any_frag.isdisjoint(blocks):
            return False
        width = self._width
        for k, block in enumerate(blocks):
            hits = frags.get(block)
            if hits is None:
                continue
            at = k * width
            for token, offset in hits:
                start = at - offset
                if start >= 0 and text.startswith(token, start):
                    return True
        return False


def _block_width(tokens: tuple[str, ...]) -> int:
    """The block width B: the largest with 2B - 1 <= every token's length (at least 1)."""
    return max(1, (min((len(t) for t in tokens), default=1) + 1) // 2)


def _fragments(tokens: tuple[str, ...]) -> tuple[Callable[[str], list[str]], dict[str, tuple[tuple[str, int], ...]]]:
    """The block cutter and, for every B-character fragment of a token, where it sits in which token.

    Empty tokens are left to the caller (only a hand-built ``ChainConfig`` could hold one).
    """
    width = _block_width(tokens)
    frags: dict[str, list[tuple[str, int]]] = {}
    for t in tokens:
        for off in range(len(t) - width + 1):
            frags.setdefault(t[off:off + width], []).append((t, off))
    cut = re.compile("." * width, re.S).findall
    return cut, {f: tuple(v) for f, v in frags.items()}


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
