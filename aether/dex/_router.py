"""Uniswap V2 Router02 calldata: decoding victims' swaps, encoding our own calls.

The six swap functions all have a static head (one or two ``uint256``, the
offset of one dynamic ``address[]``, an ``address``, a ``uint256``) followed by
the path, so a hand-rolled slice decoder reads them without eth-abi's generic
machinery. It is the one :func:`decode_swap` uses because it measured about
eight times faster on the same calldata (about 200,000 against 25,000 decodes
a second on the 2-core dev machine; ``tests/dex/test_dex_router.py::test_benchmark_decoders``
prints the rates and fails below a 3x margin), and a hypothesis test holds it
equal to eth-abi on random valid and malformed inputs.
:func:`decode_swap_eth_abi` is the reference, kept for that test.

Encoding our own calls goes through eth-abi (:func:`encode_swap`), except the
one call every backrun leg makes, :func:`encode_swap_exact_tokens_for_tokens`,
which is laid out by hand and held equal to eth-abi by a test.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import eth_abi
from eth_abi.exceptions import DecodingError as _AbiDecodingError

from .._errors import DecodeError

__all__ = [
    "FEE_ON_TRANSFER_SELECTORS",
    "SWAP_FUNCTIONS",
    "SwapCall",
    "decode_amounts",
    "decode_swap",
    "decode_swap_eth_abi",
    "encode_swap",
    "encode_swap_exact_tokens_for_tokens",
]


@attrs.frozen
class _Fn:
    name: str
    exact_in: bool
    eth_in: bool
    eth_out: bool
    types: tuple[str, ...]


_FIVE = ("uint256", "uint256", "address[]", "address", "uint256")
_FOUR = ("uint256", "address[]", "address", "uint256")

#: selector -> the Router02 swap function it names (the six we trade against).
SWAP_FUNCTIONS: dict[bytes, _Fn] = {
    bytes.fromhex("38ed1739"): _Fn("swapExactTokensForTokens", True, False, False, _FIVE),
    bytes.fromhex("8803dbee"): _Fn("swapTokensForExactTokens", False, False, False, _FIVE),
    bytes.fromhex("7ff36ab5"): _Fn("swapExactETHForTokens", True, True, False, _FOUR),
    bytes.fromhex("4a25d94a"): _Fn("swapTokensForExactETH", False, False, True, _FIVE),
    bytes.fromhex("18cbafe5"): _Fn("swapExactTokensForETH", True, False, True, _FIVE),
    bytes.fromhex("fb3bdb41"): _Fn("swapETHForExactTokens", False, True, False, _FOUR),
}

#: The SupportingFeeOnTransferTokens variants: recognised, never sized (their
#: output is not what the pair math predicts).
FEE_ON_TRANSFER_SELECTORS: dict[bytes, str] = {
    bytes.fromhex("5c11d795"): "swapExactTokensForTokensSupportingFeeOnTransferTokens",
    bytes.fromhex("b6f9de95"): "swapExactETHForTokensSupportingFeeOnTransferTokens",
    bytes.fromhex("791ac947"): "swapExactTokensForETHSupportingFeeOnTransferTokens",
}

_BY_NAME = {fn.name: (sel, fn) for sel, fn in SWAP_FUNCTIONS.items()}

#: Longest path we accept. Router02 has no limit, but every hop costs a pair
#: lookup; real victims use 2-4 tokens.
MAX_PATH = 16

_ZERO12 = bytes(12)


@attrs.frozen
class SwapCall:
    """One decoded Router02 swap, in the router's own terms.

    ``amount_in`` is the exact input (``exact_in``) or the ``amountInMax``;
    ``amount_out`` is the ``amountOutMin`` (``exact_in``) or the exact output.
    For the ETH-in functions the input side is the transaction's ``value``.
    Addresses are lowercase ``0x`` hex.
    """

    function: str
    exact_in: bool
    eth_in: bool
    eth_out: bool
    amount_in: int
    amount_out: int
    path: tuple[str, ...]
    to: str
    deadline: int


def _build(fn: _Fn, value: int, head: Sequence[int], path: tuple[str, ...], to: str, deadline: int) -> SwapCall:
    if fn.eth_in:
        # swapExactETHForTokens(amountOutMin, ...) / swapETHForExactTokens(amountOut, ...)
        amount_in, amount_out = value, head[0]
    elif fn.exact_in:
        amount_in, amount_out = head[0], head[1]  # (amountIn, amountOutMin)
    else:
        amount_out, amount_in = head[0], head[1]  # (amountOut, amountInMax)
    if len(path) < 2:
        raise DecodeError(f"{fn.name}: path of {len(path)} tokens", reason="bad_calldata")
    return SwapCall(fn.name, fn.exact_in, fn.eth_in, fn.eth_out, amount_in, amount_out, path, to, deadline)


def _lookup(data: bytes) -> _Fn:
    sel = bytes(data[:4])
    fn = SWAP_FUNCTIONS.get(sel)
    if fn is None:
        if sel in FEE_ON_TRANSFER_SELECTORS:
            raise DecodeError(FEE_ON_TRANSFER_SELECTORS[sel], reason="fee_on_transfer")
        raise DecodeError(f"selector 0x{sel.hex()} is not a Router02 swap", reason="not_swap")
    return fn


def _addr(word: bytes) -> str:
    if word[:12] != _ZERO12:
        raise DecodeError("address word has non-zero padding", reason="bad_calldata")
    return "0x" + word[12:].hex()


def decode_swap(data: bytes, value: int = 0) -> SwapCall:
    """Decode Router02 swap calldata with the hand-rolled slice decoder.

    Args:
        data: the transaction's input, selector included.
        value: the transaction's ``value`` (the input of the ETH-in swaps).

    Raises:
        DecodeError: ``reason`` is ``not_swap`` (unknown selector, or too short
            to hold one), ``fee_on_transfer`` (a SupportingFeeOnTransferTokens
            variant) or ``bad_calldata`` (truncated, a bad offset or length,
            dirty address padding, a path shorter than two tokens).
    """
    if len(data) < 4:
        raise DecodeError("calldata shorter than a selector", reason="not_swap")
    fn = _lookup(data)
    body = bytes(data[4:])
    n_head = len(fn.types)
    size = len(body)
    if size < 32 * n_head:
        raise DecodeError(f"{fn.name}: {size} bytes, head needs {32 * n_head}", reason="bad_calldata")
    words = [body[i : i + 32] for i in range(0, 32 * n_head, 32)]
    if n_head == 5:
        head: tuple[int, ...] = (int.from_bytes(words[0], "big"), int.from_bytes(words[1], "big"))
        off_w, to_w, dl_w = words[2], words[3], words[4]
    else:
        head = (int.from_bytes(words[0], "big"),)
        off_w, to_w, dl_w = words[1], words[2], words[3]
    offset = int.from_bytes(off_w, "big")
    if offset > size - 32:
        raise DecodeError(f"{fn.name}: path offset {offset} outside {size} bytes", reason="bad_calldata")
    if offset < 32 * n_head:
        # Solidity's decoder would read the path out of the head (amounts as addresses); no wallet
        # encodes that, and eth-abi refuses it: calldata built to make decoders disagree is refused.
        raise DecodeError(f"{fn.name}: path offset {offset} points into the head", reason="bad_calldata")
    n = int.from_bytes(body[offset : offset + 32], "big")
    start = offset + 32
    if n > MAX_PATH or start + 32 * n > size:
        raise DecodeError(f"{fn.name}: path length {min(n, 2**64)} does not fit", reason="bad_calldata")
    path = tuple(_addr(body[start + 32 * i : start + 32 * i + 32]) for i in range(n))
    return _build(fn, value, head, path, _addr(to_w), int.from_bytes(dl_w, "big"))


def decode_swap_eth_abi(data: bytes, value: int = 0) -> SwapCall:
    """The same as :func:`decode_swap`, through eth-abi (the reference decoder)."""
    if len(data) < 4:
        raise DecodeError("calldata shorter than a selector", reason="not_swap")
    fn = _lookup(data)
    try:
        decoded = eth_abi.decode(fn.types, bytes(data[4:]))
    except (_AbiDecodingError, ValueError, OverflowError) as exc:
        raise DecodeError(f"{fn.name}: {type(exc).__name__}", reason="bad_calldata") from exc
    if len(fn.types) == 5:
        head, path, to, deadline = decoded[:2], decoded[2], decoded[3], decoded[4]
    else:
        head, path, to, deadline = decoded[:1], decoded[1], decoded[2], decoded[3]
    if len(path) > MAX_PATH:
        raise DecodeError(f"{fn.name}: path length {len(path)}", reason="bad_calldata")
    return _build(fn, value, head, tuple(p.lower() for p in path), to.lower(), deadline)


def encode_swap(
    function: str,
    *,
    amount_in: int,
    amount_out: int,
    path: Sequence[str],
    to: str,
    deadline: int,
) -> tuple[bytes, int]:
    """Encode any of the six swap functions; returns ``(calldata, value)``.

    ``amount_in``/``amount_out`` have :class:`SwapCall`'s meaning; for the
    ETH-in functions ``amount_in`` becomes the transaction value.

    Raises:
        ValueError: ``function`` is not one of the six.
    """
    try:
        sel, fn = _BY_NAME[function]
    except KeyError:
        raise ValueError(f"unknown swap function {function!r}") from None
    args: tuple[object, ...]
    if fn.eth_in:
        args = (amount_out, list(path), to, deadline)
        value = amount_in
    elif fn.exact_in:
        args = (amount_in, amount_out, list(path), to, deadline)
        value = 0
    else:
        args = (amount_out, amount_in, list(path), to, deadline)
        value = 0
    return sel + eth_abi.encode(fn.types, args), value


_SEL_EXACT_TOKENS = bytes.fromhex("38ed1739")
_OFFSET_A0 = (0xA0).to_bytes(32, "big")
_U256 = 2**256


#: Address words already made (a backrun's calldata names the same few addresses over and over).
_ADDR_WORDS: dict[str, bytes] = {}


def _word_addr(address: str) -> bytes:
    word = _ADDR_WORDS.get(address)
    if word is not None:
        return word
    if len(address) != 42 or address[:2] not in ("0x", "0X"):
        raise ValueError(f"not a 20-byte 0x address: {address!r}")
    word = _ZERO12 + bytes.fromhex(address[2:])
    if len(_ADDR_WORDS) >= 4096:
        _ADDR_WORDS.clear()
    _ADDR_WORDS[address] = word
    return word


def _word_uint(n: int) -> bytes:
    if n.__class__ is not int or not 0 <= n < _U256:
        raise ValueError(f"not a uint256: {n!r}")
    return n.to_bytes(32, "big")


def encode_swap_exact_tokens_for_tokens(
    amount_in: int, amount_out_min: int, path: Sequence[str], to: str, deadline: int
) -> bytes:
    """``swapExactTokensForTokens`` calldata: what every backrun leg sends.

    Hand-laid (selector, four head words with the path at offset 0xa0, then the
    path): every candidate encodes two of these, and eth-abi's generic encoder
    took about 60 us each against about 3 us here. ``tests/chain/test_hotpath_equality.py``
    holds it byte-identical to :func:`encode_swap` (eth-abi) on thousands of
    random inputs.

    Raises:
        ValueError: an amount outside uint256 or a malformed address.
    """
    return b"".join(
        [
            _SEL_EXACT_TOKENS,
            _word_uint(amount_in),
            _word_uint(amount_out_min),
            _OFFSET_A0,
            _word_addr(to),
            _word_uint(deadline),
            _word_uint(len(path)),
            *[_word_addr(a) for a in path],
        ]
    )


def decode_amounts(return_data: bytes) -> tuple[int, ...]:
    """Decode a swap's return value, Router02's ``uint[] amounts``.

    Raises:
        DecodeError: ``bad_calldata`` when the bytes are not one ``uint256[]``.
    """
    try:
        (amounts,) = eth_abi.decode(("uint256[]",), bytes(return_data))
    except (_AbiDecodingError, ValueError, OverflowError) as exc:
        raise DecodeError(f"swap return data: {type(exc).__name__}", reason="bad_calldata") from exc
    return tuple(amounts)
