"""The one parser for hex quantities in node data (``"0x1b4"``).

Python's ``int(s, 16)`` accepts surrounding whitespace, ``_`` separators, a
sign and a missing prefix, and any length; a node that sends such things is
sending garbage, and an unbounded string would cost unbounded time. Every
quantity read from a node (JSON-RPC replies, receipts, logs, eth_call return
words) goes through :func:`hex_quantity`: ``0x`` then 1 to ``max_digits`` hex
digits, nothing else.
"""

from __future__ import annotations

import re

from ._errors import BadQuantity

__all__ = ["U256_DIGITS", "hex_quantity"]

#: A 256-bit word (the widest EVM value) is 64 hex digits.
U256_DIGITS = 64

_QUANTITY = re.compile(r"0x[0-9a-fA-F]+")


def hex_quantity(value: object, *, max_digits: int = U256_DIGITS) -> int:
    """``value`` as an int, when it is ``0x`` + 1..``max_digits`` hex digits.

    Raises:
        TypeError: ``value`` is not a string (as ``int(x, 16)`` did).
        BadQuantity: anything else wrong with it (a ``ValueError`` and a
            ``DecodeError`` with reason ``bad_fields``).
    """
    if value.__class__ is not str:
        raise TypeError(f"hex quantity: expected a string, got {type(value).__name__}")
    assert isinstance(value, str)
    if len(value) > max_digits + 2 or not _QUANTITY.fullmatch(value):
        shown = value if len(value) <= 20 else value[:20] + "..."
        raise BadQuantity(f"not a hex quantity: {shown!r}", "bad_fields")
    return int(value, 16)
