"""Pool events in a simulated victim's logs: one strict parser per shape.

A victim's effect on the pools is read from what the pools themselves emit, not
from its calldata, so it does not matter which contract the victim called
(Router02, the Universal Router, an aggregator, a bot calling ``pair.swap``). A
Uniswap V2 pair emits ``Sync(uint112 reserve0, uint112 reserve1)`` after every
change of its reserves: the last ``Sync`` of a pair in the victim's logs *is* that
pair's post-victim state, exactly, whatever happened before.

Anybody can emit a log with the ``Sync`` topic, so a parsed log says nothing yet
about trust: :class:`aether.strategy.PoolTrust` decides whether its address is a
tracked pair. This module only parses, and refuses anything malformed: a log that
is not shaped as the JSON-RPC spec says makes the whole simulation answer
untrustworthy (:class:`~aether._errors.DecodeError` with reason ``sim_malformed``).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence

import attrs

from .._errors import DecodeError
from ._math import UINT112_MAX

__all__ = ["SWAP_V2_TOPIC", "SYNC_TOPIC", "TRANSFER_TOPIC", "LogEntry", "SyncEvent", "parse_logs", "sync_events"]

#: keccak("Sync(uint112,uint112)")
SYNC_TOPIC = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"
#: keccak("Swap(address,uint256,uint256,uint256,uint256,address)")
SWAP_V2_TOPIC = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
#: keccak("Transfer(address,address,uint256)")
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

_ADDR = re.compile(r"0x[0-9a-fA-F]{40}")
_WORD = re.compile(r"0x[0-9a-fA-F]{64}")
#: Logs a single victim may emit before its answer is refused as malformed (a real
#: multi-hop swap emits a handful; an unbounded list is a node bug or an attack).
MAX_LOGS = 4096
_MALFORMED = "sim_malformed"


@attrs.frozen
class LogEntry:
    """One log, with its address and topics lowercased."""

    address: str
    topics: tuple[str, ...]
    data: bytes


@attrs.frozen
class SyncEvent:
    """A log with the ``Sync`` topic: the reserves its emitter reports after a change.

    ``reserves`` is None when the log is not shaped as a real pair's ``Sync`` (extra
    topics, data other than two words, a reserve past ``uint112``). Whether that
    matters depends on who emitted it: a mimic's junk is ignored with the mimic, a
    tracked pair's junk makes the whole answer untrustworthy.
    """

    address: str
    reserves: tuple[int, int] | None


def _entry(obj: object, i: int) -> LogEntry:
    if obj.__class__ is not dict:
        raise DecodeError(f"log {i} is not an object", _MALFORMED)
    address, topics, data = obj.get("address"), obj.get("topics"), obj.get("data")
    if not isinstance(address, str) or not _ADDR.fullmatch(address):
        raise DecodeError(f"log {i}: bad address", _MALFORMED)
    if not isinstance(topics, list) or len(topics) > 4:
        raise DecodeError(f"log {i}: bad topics", _MALFORMED)
    for t in topics:
        if not isinstance(t, str) or not _WORD.fullmatch(t):
            raise DecodeError(f"log {i}: bad topic", _MALFORMED)
    # "0x" then whole bytes of hex: unhexlify refuses an odd length and anything but hex digits
    # (whitespace and non-ASCII included), as the regex "0x(?:[0-9a-fA-F]{2})*" did, at a tenth
    # of its time (~1.1 us for 64 bytes of data, and a Swap carries 160).
    if not isinstance(data, str) or data[:2] != "0x":
        raise DecodeError(f"log {i}: bad data", _MALFORMED)
    try:
        raw = binascii.unhexlify(data[2:])
    except ValueError:  # binascii.Error is one
        raise DecodeError(f"log {i}: bad data", _MALFORMED) from None
    return LogEntry(address.lower(), tuple([t.lower() for t in topics]), raw)


def parse_logs(logs: object) -> list[LogEntry]:
    """A simulated call's ``logs`` array, strictly.

    Raises:
        DecodeError: (reason ``sim_malformed``) not a list, too long, or any entry
            without a 20-byte address, up to four 32-byte topics and hex data.
    """
    if not isinstance(logs, list):
        raise DecodeError("logs is not an array", _MALFORMED)
    if len(logs) > MAX_LOGS:
        raise DecodeError(f"{len(logs)} logs in one call (more than {MAX_LOGS})", _MALFORMED)
    return [_entry(obj, i) for i, obj in enumerate(logs)]


def sync_events(entries: Sequence[LogEntry]) -> list[SyncEvent]:
    """Every log with the ``Sync`` topic, in order; trust is decided elsewhere."""
    out = []
    for e in entries:
        if not e.topics or e.topics[0] != SYNC_TOPIC:
            continue
        reserves: tuple[int, int] | None = None
        if len(e.topics) == 1 and len(e.data) == 64:
            r0 = int.from_bytes(e.data[:32], "big")
            r1 = int.from_bytes(e.data[32:], "big")
            if r0 <= UINT112_MAX and r1 <= UINT112_MAX:
                reserves = (r0, r1)
        out.append(SyncEvent(e.address, reserves))
    return out
