"""The block-driven source: cross-DEX gaps on each new head, with no victim.

A victim that landed (or any trade) can leave WETH/X priced differently on two
DEXes. On each head, after the book has been refreshed at that head, every X
whose WETH pair is tracked on two or more DEXes is sized with the same exact
math and the same two Router02 calls as a backrun; its candidates go down the
same line (validation, bundle, risk), with ``victim=None``.
"""

from __future__ import annotations

from .._errors import NodeError
from ..config import ChainConfig, DexConfig, DexKind
from ..dex import PoolBook
from ..messages import Candidate, Head, Source
from ._backrun import (
    GAS_PER_SWAP,
    Rejection,
    StrategyStatistics,
    _Counts,
    build_round_trip,
    size_best_round_trip,
)

__all__ = ["BlockArbStrategy"]


class BlockArbStrategy:
    """Finds same-block cross-DEX gaps among the tracked WETH pairs.

    The caller refreshes the book at the head first (``book.refresh(head.number,
    ...)``, one batched call that also reads the searcher's inventory); this
    strategy does no per-pair I/O beyond, on its first head, one ``ensure`` of
    the configured tokens' WETH pairs on every DEX.

    Args:
        chain: WETH, DEXes, tokens.
        book: the shared pool book.
        searcher: the account that trades.
        min_gross_wei: a gap yields a candidate only above this gross profit.
        gas_per_swap: gas estimate of one call.
    """

    source: Source = Source.BLOCK_ARB

    def __init__(
        self,
        chain: ChainConfig,
        book: PoolBook,
        *,
        searcher: str,
        min_gross_wei: int = 0,
        gas_per_swap: int = GAS_PER_SWAP,
    ) -> None:
        self.chain = chain
        self.book = book
        self.searcher = searcher.lower()
        self.min_gross_wei = min_gross_wei
        self.gas_per_swap = gas_per_swap
        self._seeded = False
        self._counts = _Counts()

    def statistics(self) -> StrategyStatistics:
        return self._counts.snapshot()

    async def on_head(self, head: Head, *, inventory_wei: int) -> list[Candidate | Rejection]:
        """Every gap above ``min_gross_wei``, at most one candidate per token X.

        A token with no gap yields nothing (not a rejection: that is the normal
        case on every block). Node failures come back as one
        ``reserves_unavailable`` rejection; no inventory as ``no_inventory``.
        """
        self._counts.seen += 1
        if not self._seeded and self.chain.tokens:
            try:
                await self.book.ensure(
                    self.book.pair_for(d, self.chain.weth, t.address)
                    for d in self.chain.dexes
                    if d.kind == DexKind.V2  # V3 pools have no V2 pair address; the V3 book reads them
                    for t in self.chain.tokens
                    if t.address.lower() != self.chain.weth
                )
            except NodeError as exc:
                return [self._counts.note(Rejection("reserves_unavailable", type(exc).__name__))]
            self._seeded = True
        if inventory_wei <= 0:
            return [self._counts.note(Rejection("no_inventory"))]
        weth = self.chain.weth
        by_token: dict[str, list[tuple[DexConfig, str]]] = {}
        for pair, info in self.book.tracked().items():
            if weth not in (info.token0, info.token1):
                continue
            by_token.setdefault(info.other(weth), []).append((self.book.dex(info.dex), pair))
        view = self.book.view()
        out: list[Candidate | Rejection] = []
        for token, dexes in sorted(by_token.items()):
            if len(dexes) < 2:
                continue
            sized = size_best_round_trip(view, self.chain, token, dexes, cap=inventory_wei)
            if sized is None or sized.rt.profit <= self.min_gross_wei:
                continue
            cand = build_round_trip(
                sized,
                self.chain,
                source=self.source,
                head=head,
                victim=None,
                searcher=self.searcher,
                gas_per_swap=self.gas_per_swap,
            )
            out.append(self._counts.note(cand))
        return out
