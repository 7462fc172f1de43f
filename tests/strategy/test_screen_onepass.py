"""The prefilter's one-pass token search decides exactly as the per-token search it replaced.

The reference below is the search ``Prefilter.screen`` ran before (one
``str.__contains__`` per tracked token over the first ``HINT_SCAN_CHARS``
characters, lowered). The one-pass search must never be weaker: a token hidden
at an odd (nibble-unaligned) character offset, split by the 8 KiB bound, in
mixed case or next to near-miss fragments of other tokens must be seen exactly
when the reference sees it, and nothing else may pass.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether.config import ChainConfig, TokenConfig
from aether.strategy import Prefilter, ScreenSkip
from aether.strategy._screen import HINT_SCAN_CHARS

OTHER = "0x" + "77" * 20
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(tokens: tuple[str, ...], data: str) -> bool:
    """The per-token search as it stood before the one-pass change (the oracle)."""
    text = data[:HINT_SCAN_CHARS].lower()
    return any(t in text for t in tokens)


def chain_of(tokens: list[str]) -> ChainConfig:
    """WETH and tokens only: no DEX router, so every decision below is the token search's."""
    return ChainConfig(weth="0x" + tokens[0], dexes=(),
                       tokens=tuple(TokenConfig("0x" + t, f"T{i}") for i, t in enumerate(tokens[1:])))


def decision(pf: Prefilter, data: str) -> bool:
    ok, why = pf.screen({"to": OTHER, "input": data})
    assert ok or why in (ScreenSkip.NO_POOL_HINT, ScreenSkip.PLAIN_TRANSFER)
    return ok


hex40 = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
# Tokens that share long prefixes and suffixes with each other, so fragments collide.
token_sets = st.lists(hex40, min_size=1, max_size=8, unique=True).flatmap(
    lambda base: st.just(base + [b[:30] + "0123456789" for b in base[:2]] + ["0" * 20 + b[:20] for b in base[:1]]))


@st.composite
def calldata(draw: st.DrawFn, tokens: list[str]) -> str:
    """Random hex calldata with tokens (or fragments of them) planted at random character offsets."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    size = draw(st.sampled_from([0, 1, 7, 40, 41, 138, 1000, HINT_SCAN_CHARS - 42, HINT_SCAN_CHARS - 2,
                                 HINT_SCAN_CHARS + 100]))
    chars = [rnd.choice("0123456789abcdefABCDEF") for _ in range(size)]
    for _ in range(draw(st.integers(0, 4))):
        t = draw(st.sampled_from(tokens))
        kind = draw(st.sampled_from(["whole", "upper", "prefix", "suffix", "middle"]))
        piece = {"whole": t, "upper": t.upper(), "prefix": t[: rnd.randint(1, 39)],
                 "suffix": t[rnd.randint(1, 39):], "middle": t[5:35]}[kind]
        at = draw(st.integers(0, max(0, size + 2)))  # any offset: odd, even, across the bound
        chars[at:at + len(piece)] = piece
    text = "".join(chars)
    if draw(st.booleans()):
        text = "0x" + text
    if draw(st.booleans()):  # non-hex junk a hostile peer may send (JSON strings are any text)
        at = rnd.randint(0, len(text))
        text = text[:at] + draw(st.sampled_from(["\u0130", "\u212a", "\x00", "zz", "0X"])) + text[at:]
    return text


@PROPS
@given(st.data(), token_sets)
def test_one_pass_decides_as_the_per_token_search(data: st.DataObject, tokens: list[str]) -> None:
    pf = Prefilter(chain_of(tokens))
    wanted = tuple(dict.fromkeys(tokens))
    for _ in range(5):
        cd = data.draw(calldata(tokens))
        if len(cd) <= 2:
            continue
        assert decision(pf, cd) is reference(wanted, cd), cd


def test_every_offset_of_every_token_is_seen_and_the_bound_is_kept() -> None:
    """Deterministic sweep: each token at every character offset of the first bytes and around
    the 8 KiB bound; a token cut by the bound, or wholly past it, is not a hint (as before)."""
    tokens = [f"{i:02x}" * 20 for i in range(1, 4)] + ["c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"]
    pf = Prefilter(chain_of(tokens))
    filler = "0" * (HINT_SCAN_CHARS + 64)
    for t in tokens:
        for at in [*range(0, 90), *range(HINT_SCAN_CHARS - 60, HINT_SCAN_CHARS + 2)]:
            cd = "0x" + filler[: at] + t.upper() + filler[at:]
            want = at + 2 + 40 <= HINT_SCAN_CHARS
            assert decision(pf, cd) is want is reference(tuple(tokens), cd), (t, at)


def test_near_misses_do_not_pass() -> None:
    """Every 20-character fragment of a token, side by side, names no token: blocks hit, confirmation fails."""
    t = "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
    pf = Prefilter(chain_of([t]))
    frags = "".join(t[i:i + 20] + "f" for i in range(21))
    for shift in range(3):
        cd = "0x" + "1" * shift + frags * 8
        assert decision(pf, cd) is False is reference((t,), cd)
        assert decision(pf, cd + t) is True is reference((t,), cd + t)


def test_an_empty_token_still_passes_everything() -> None:
    """Only a hand-built ChainConfig can hold an empty address; ``"" in text`` was always true."""
    pf = Prefilter(ChainConfig(weth="0x", dexes=()))
    assert decision(pf, "0x12") is True
    pf = Prefilter(ChainConfig(weth="0x" + "1" * 40, dexes=(), tokens=(TokenConfig("0x" + "2" * 7, "SHORT"),)))
    assert decision(pf, "0x" + "9" * 100 + "2" * 7) is True  # a short token still found at any offset
    assert decision(pf, "0x" + "92" * 50) is False
