"""Router02 calldata: the slice decoder equals eth-abi, named rejections, and the measured rates."""

from __future__ import annotations

import time

import eth_abi
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aether._errors import DecodeError
from aether.dex import (
    FEE_ON_TRANSFER_SELECTORS,
    SWAP_FUNCTIONS,
    decode_amounts,
    decode_swap,
    decode_swap_eth_abi,
    encode_swap,
)

NAMES = [fn.name for fn in SWAP_FUNCTIONS.values()]
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint = st.one_of(st.integers(0, 2**256 - 1), st.integers(0, 10**24), st.sampled_from([0, 1, 2**256 - 1, 2**112 - 1]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMES), uint, uint, st.lists(addresses, min_size=2, max_size=6), addresses, uint)
def test_every_swap_round_trips_and_both_decoders_agree(
    name: str, a_in: int, a_out: int, path: list[str], to: str, deadline: int
) -> None:
    data, value = encode_swap(name, amount_in=a_in, amount_out=a_out, path=path, to=to, deadline=deadline)
    fast = decode_swap(data, value)
    ref = decode_swap_eth_abi(data, value)
    assert fast == ref
    assert (fast.function, fast.amount_in, fast.amount_out, fast.path, fast.to, fast.deadline) == (
        name,
        a_in,
        a_out,
        tuple(path),
        to,
        deadline,
    )


def _outcome(fn, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return fn(data, 7)
    except DecodeError as exc:
        return exc.reason


@settings(max_examples=400, deadline=None)
# Found in CI: the path offset's last byte zeroed points the path into the head; the slice decoder
# read amounts as addresses where eth-abi refuses the pointer.
@example("swapExactTokensForTokens", ["0x" + "00" * 20] * 2, 95, b"\x00", "overwrite")
@given(
    st.sampled_from(NAMES),
    st.lists(addresses, min_size=2, max_size=4),
    st.integers(0, 400),
    st.binary(min_size=1, max_size=4),
    st.sampled_from(["truncate", "overwrite", "append"]),
)
def test_malformed_calldata_is_a_named_rejection_and_agrees_with_eth_abi(
    name: str, path: list[str], pos: int, junk: bytes, how: str
) -> None:
    data, _ = encode_swap(name, amount_in=5, amount_out=6, path=path, to=path[0], deadline=9)
    if how == "truncate":
        bad = data[: 4 + pos % (len(data) - 4)]
    elif how == "overwrite":
        i = 4 + pos % (len(data) - 4)
        bad = data[:i] + junk + data[i + len(junk) :]
    else:
        bad = data + junk
    fast, ref = _outcome(decode_swap, bad), _outcome(decode_swap_eth_abi, bad)
    # Both accept with the same result, or both reject as bad calldata.
    assert fast == ref or (isinstance(fast, str) and isinstance(ref, str)), (fast, ref)
    if isinstance(fast, str):
        assert fast == "bad_calldata"


def test_named_reasons() -> None:
    data, _ = encode_swap("swapExactTokensForTokens", amount_in=1, amount_out=1, path=["0x" + "11" * 20] * 2,
                          to="0x" + "22" * 20, deadline=1)
    for sel in FEE_ON_TRANSFER_SELECTORS:
        with pytest.raises(DecodeError) as ei:
            decode_swap(sel + data[4:])
        assert ei.value.reason == "fee_on_transfer"
    for bad, reason in [
        (b"", "not_swap"),
        (b"\x38\xed", "not_swap"),
        (bytes.fromhex("a9059cbb") + bytes(64), "not_swap"),  # ERC-20 transfer
        (data[:4], "bad_calldata"),
        (data[:-1], "bad_calldata"),
    ]:
        with pytest.raises(DecodeError) as ei:
            decode_swap(bad)
        assert ei.value.reason == reason
    # a path of one token, a huge path length, an offset near 2**256, dirty address padding
    one = eth_abi.encode(("uint256", "uint256", "address[]", "address", "uint256"), (1, 1, ["0x" + "11" * 20], "0x" + "22" * 20, 1))
    body = bytearray(data[4:])
    huge_len = bytearray(body)
    huge_len[5 * 32 : 6 * 32] = (2**256 - 1).to_bytes(32, "big")
    huge_off = bytearray(body)
    huge_off[2 * 32 : 3 * 32] = (2**256 - 32).to_bytes(32, "big")
    dirty = bytearray(body)
    dirty[3 * 32] = 1
    for b in (one, huge_len, huge_off, dirty):
        with pytest.raises(DecodeError) as ei:
            decode_swap(data[:4] + bytes(b))
        assert ei.value.reason == "bad_calldata"


def test_decode_amounts() -> None:
    assert decode_amounts(eth_abi.encode(("uint256[]",), ([3, 2**255],))) == (3, 2**255)
    with pytest.raises(DecodeError):
        decode_amounts(b"\x00" * 5)


def test_benchmark_decoders() -> None:
    """The slice decoder must be meaningfully faster than eth-abi to be the one used."""
    data, value = encode_swap(
        "swapExactTokensForTokens", amount_in=10**18, amount_out=1, path=["0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20],
        to="0x" + "44" * 20, deadline=2**32,
    )
    n = 3000
    rates = {}
    for fn in (decode_swap, decode_swap_eth_abi):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(data, value)
        rates[fn.__name__] = n / (time.perf_counter() - t0)
    print(f"decode rates per second: {rates}")
    assert rates["decode_swap"] > 3 * rates["decode_swap_eth_abi"]
