"""The prefilter's one-pass token search decides exactly as the per-token search it replaced.

The reference below is the search ``Prefilter.screen`` ran before (one
``str.__contains__`` per tracked token over the first ``HINT_SCAN_CHARS``
characters, lowered). The one-pass search must never be weaker: a token hidden
at an odd (nibble-unaligned) character offset, split by the 8 KiB bound or by a
chunk of the key reader, in mixed case, behind characters whose UTF-8 is longer
than one byte (or whose lowercase is longer than themselves), or next to
near-miss fragments of other tokens must be seen exactly when the reference sees
it, and nothing else may pass. ``reference_screen`` is the whole screen as it
stood, fields and routing included.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether.config import ChainConfig, TokenConfig
from aether.strategy import Prefilter, ScreenSkip
from aether.strategy._screen import _CHUNK, HINT_SCAN_CHARS, ScreenHint

OTHER = "0x" + "77" * 20
#: Characters the key reader takes per chunk for 40-digit tokens (64 keys, 31 apart).
CHUNK_CHARS = _CHUNK * 31
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(tokens: tuple[str, ...], data: str) -> bool:
    """The per-token search as it stood before the one-pass change (the oracle)."""
    text = data[:HINT_SCAN_CHARS].lower()
    return any(t in text for t in tokens)


def reference_screen(obj: dict[str, object], routers: set[str], learned: set[str],
                     tokens: tuple[str, ...]) -> tuple[bool, str]:
    """``Prefilter.screen`` as it stood before the one-pass change, routing and field checks included."""
    to = obj.get("to")
    if type(to) is not str:
        return False, ScreenSkip.CONTRACT_CREATION
    data = obj.get("input")
    if type(data) is not str:
        data = obj.get("data")
    if type(data) is not str or len(data) <= 2:
        return False, ScreenSkip.PLAIN_TRANSFER
    if to.lower() in routers:
        return True, ScreenHint.ROUTER
    if to.lower() in learned:
        return True, ScreenHint.LEARNED
    if reference(tokens, data):
        return True, ScreenHint.TOKEN
    return False, ScreenSkip.NO_POOL_HINT


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
# Sometimes with a vanity token (a long run of zeros: the search then takes longer keys).
token_sets = st.tuples(st.lists(hex40, min_size=1, max_size=8, unique=True), st.sampled_from([0, 9, 11, 20, 36])).map(
    lambda drawn: drawn[0] + [b[:30] + "0123456789" for b in drawn[0][:2]]
    + ["0" * drawn[1] + b[drawn[1]:] for b in drawn[0][:1] if drawn[1]])


@st.composite
def calldata(draw: st.DrawFn, tokens: list[str]) -> str:
    """Random hex calldata with tokens (or fragments of them) planted at random character offsets."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    size = draw(st.sampled_from([0, 1, 7, 9, 10, 11, 40, 41, 138, 1000, CHUNK_CHARS - 1, CHUNK_CHARS + 9,
                                 2 * CHUNK_CHARS + 20, HINT_SCAN_CHARS - 42, HINT_SCAN_CHARS - 2,
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
        text = text[:at] + draw(st.sampled_from(JUNK)) + text[at:]
    return text


# Non-hex text a hostile peer may send (JSON strings are any text): letters whose lowercase is
# longer (U+0130) or ASCII (U+212A Kelvin), multi-byte UTF-8, a lone surrogate, NUL, near-hex.
JUNK = ["\u0130", "\u212a", "\x00", "zz", "0X", "\u00e9" * 3, "\U0001f600", "\ud800", "\u0130" * 25]


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


def test_a_token_around_every_chunk_boundary_is_seen() -> None:
    """The key reader works in chunks of 64 keys (1,984 characters for 40-digit tokens) and a tail;
    a token at every offset around the chunk boundaries, in texts ending anywhere near them."""
    t = "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
    pf = Prefilter(chain_of([t, "11" * 20]))
    for boundary in (CHUNK_CHARS, 2 * CHUNK_CHARS, 3 * CHUNK_CHARS):
        for at in range(boundary - 45, boundary + 5):
            for tail in (0, 1, 9, 10, 31, 40):
                cd = "0x" + "0" * at + t + "0" * tail
                assert decision(pf, cd) is True is reference((t,), cd), (boundary, at, tail)
                miss = "0x" + "0" * at + t[:39] + "0" * tail
                assert decision(pf, miss) is False is reference((t,), miss), (boundary, at, tail)


def test_multibyte_and_lowercase_growing_text_before_a_token() -> None:
    """Characters of two to four UTF-8 bytes, and U+0130 (whose lowercase is two characters), shift
    byte offsets against character offsets: a token after them is still seen, within the bound the
    reference counts in characters before lowering."""
    t = "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
    pf = Prefilter(chain_of([t]))
    for junk in JUNK:
        for lead in (0, 1, 5, 33):
            for at in (0, 3, 31, 100, HINT_SCAN_CHARS - 60, HINT_SCAN_CHARS - 50):
                cd = "0x" + junk * lead + "0" * at + t.upper() + "0" * 7
                assert decision(pf, cd) is reference((t,), cd), (junk, lead, at)


def test_tokens_shorter_than_an_address_and_non_hex_tokens() -> None:
    """A hand-built ChainConfig may hold any text as an address: 1-, 2- and 3-character tokens,
    tokens with non-hex and non-ASCII characters, and one token inside another."""
    rnd = random.Random(7)
    for tokens in (["a"], ["ab", "cd"], ["abc", "9" * 40], ["\u00e9t\u00e9" * 5, "ff" * 20],
                   ["zz" * 20, "\u0130x" * 10], ["abcdef", "abcdef" * 7]):
        pf = Prefilter(chain_of(tokens))
        wanted = tuple(dict.fromkeys(t.lower() for t in tokens))
        for _ in range(300):
            size = rnd.choice([3, 5, 20, 80, 700])
            text = "".join(rnd.choice("abcdef0123456789\u00e9tz\u0130ABC") for _ in range(size))
            if rnd.random() < 0.5:
                piece = rnd.choice(tokens)
                at = rnd.randrange(len(text) + 1)
                text = text[:at] + rnd.choice([piece, piece.upper(), piece[1:], piece[:-1]]) + text[at:]
            cd = "0x" + text
            assert decision(pf, cd) is reference(wanted, cd), (tokens, cd)


ROUTER = "0x" + "ab" * 20
LEARNED = "0x" + "cd" * 20
TOKEN = "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
field_values = st.one_of(
    st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
    st.sampled_from([ROUTER, ROUTER.upper(), LEARNED, LEARNED.upper().replace("0X", "0x"), OTHER, "", "0x",
                     "0x0", "0x" + TOKEN, "0x" + "00" * 4 + TOKEN.upper(), "0x" + "1" * 5000 + TOKEN,
                     "0x" + "1" * (HINT_SCAN_CHARS - 41) + TOKEN, "\u0130" * 100 + TOKEN, "0x\ud800" + TOKEN]),
    st.text(max_size=60),
)


@PROPS
@given(st.dictionaries(st.sampled_from(["to", "input", "data", "from", "value"]), field_values, max_size=4))
def test_the_whole_screen_decides_and_counts_as_before(obj: dict[str, object]) -> None:
    """Routing (router, learned, token), the field checks (missing, non-str, empty) and the skip
    reasons, on objects a hostile node could send."""
    pf = Prefilter(ChainConfig(weth="0x" + TOKEN, dexes=()), routers=[ROUTER])
    pf.learn([LEARNED])
    assert pf.screen(obj) == reference_screen(obj, {ROUTER.lower()}, {LEARNED.lower()}, (TOKEN,))


def test_str_subclasses_are_not_taken_for_str() -> None:
    """Only exact ``str`` fields are read (orjson gives exact types; nothing else reaches a str method)."""
    class Sly(str):
        def lower(self) -> str:
            raise AssertionError("called")

    pf = Prefilter(ChainConfig(weth="0x" + TOKEN, dexes=()), routers=[ROUTER])
    assert pf.screen({"to": Sly(ROUTER), "input": "0x12"}) == (False, ScreenSkip.CONTRACT_CREATION)
    assert pf.screen({"to": OTHER, "input": Sly("0x" + TOKEN)}) == (False, ScreenSkip.PLAIN_TRANSFER)
    assert pf.screen({"to": OTHER, "input": Sly("0x"), "data": "0x" + TOKEN}) == (True, ScreenHint.TOKEN)


def test_a_vanity_token_does_not_send_padded_calldata_to_the_confirmation() -> None:
    """A configured token with a long run of zeros (TUSD's 0x0000000000085d47...) must not make
    ABI padding hit: the keys are then longer than the run, and zero-padded calldata that names
    no token is screened out by the one-pass filter alone, never by the slow confirmation."""
    tusd = "0000000000085d4780b73119b644ae5ecd22b376"
    pf = Prefilter(chain_of(["c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2", tusd, "f" * 16 + "1" * 24]))
    confirmed: list[bytes] = []
    real = pf._confirm

    def spy(raw: bytes) -> bool:
        confirmed.append(raw)
        return real(raw)

    pf._confirm = spy  # type: ignore[method-assign]
    rnd = random.Random(3)
    for _ in range(200):
        words = "".join("0" * 24 + rnd.randbytes(20).hex() if rnd.random() < 0.5 else
                        rnd.choice(["0" * 64, "f" * 64, "0" * 60 + rnd.randbytes(2).hex()]) for _ in range(8))
        cd = "0xa9059cbb" + words
        assert decision(pf, cd) is False is reference(pf._tokens, cd)
        assert decision(pf, cd + tusd) is True
    assert len(confirmed) == 200  # only the frames that do name TUSD
