"""The log parser decides every log as the regex version before the latency work did.

``_logs._entry`` reads a log's data with ``binascii.unhexlify`` instead of the regex
``0x(?:[0-9a-fA-F]{2})*`` (a tenth of the time); over seeded random and hostile logs
it accepts exactly what the regex accepted, with the same bytes, and refuses the
rest with the same error.
"""

from __future__ import annotations

import random
import re

from aether._errors import DecodeError
from aether.dex._logs import LogEntry, parse_logs

_ADDR = re.compile(r"0x[0-9a-fA-F]{40}")
_WORD = re.compile(r"0x[0-9a-fA-F]{64}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def _reference_entry(obj: object, i: int) -> LogEntry:
    """``_entry`` as it was (commit 2318010), verbatim."""
    if obj.__class__ is not dict:
        raise DecodeError(f"log {i} is not an object", "sim_malformed")
    address, topics, data = obj.get("address"), obj.get("topics"), obj.get("data")  # type: ignore[attr-defined]
    if not isinstance(address, str) or not _ADDR.fullmatch(address):
        raise DecodeError(f"log {i}: bad address", "sim_malformed")
    if not isinstance(topics, list) or len(topics) > 4:
        raise DecodeError(f"log {i}: bad topics", "sim_malformed")
    for t in topics:
        if not isinstance(t, str) or not _WORD.fullmatch(t):
            raise DecodeError(f"log {i}: bad topic", "sim_malformed")
    if not isinstance(data, str) or not _DATA.fullmatch(data):
        raise DecodeError(f"log {i}: bad data", "sim_malformed")
    return LogEntry(address.lower(), tuple(t.lower() for t in topics), bytes.fromhex(data[2:]))


def _outcome(logs: list[object], parse: object) -> object:
    try:
        return ("ok", parse(logs))  # type: ignore[operator]
    except DecodeError as exc:
        return ("err", exc.reason, str(exc))


def test_the_parser_accepts_and_refuses_exactly_what_the_regex_did() -> None:
    rng = random.Random(1559)
    hexdigits = "0123456789abcdefABCDEF"
    junk = hexdigits * 3 + " \t\n_-+xXgz\u0663\u00e9\uff11"

    def data() -> object:
        roll = rng.random()
        if roll < 0.5:
            return "0x" + "".join(rng.choice(hexdigits) for _ in range(2 * rng.randrange(0, 200)))
        if roll < 0.9:
            n = rng.randrange(0, 12)
            return rng.choice(("0x", "0x", "0X", "", "x0")) + "".join(rng.choice(junk) for _ in range(n))
        return rng.choice((None, 5, b"0x00", ["0x"], "0x" + "ab" * 3 + "\n", "0x 1", "0x\u0663\u0663"))

    def log() -> object:
        if rng.random() < 0.02:
            return rng.choice((None, "log", 7, []))
        return {"address": rng.choice(("0x" + "Ab" * 20, "0x" + "ab" * 19, "0x" + "ab" * 20)),
                "topics": ["0x" + "cD" * 32 for _ in range(rng.choice((0, 1, 3, 4, 4, 5)))],
                "data": data()}

    accepted = refused = 0
    for _ in range(6000):
        logs = [log() for _ in range(rng.randrange(1, 4))]
        got = _outcome(logs, parse_logs)
        assert got == _outcome(logs, lambda ls: [_reference_entry(o, i) for i, o in enumerate(ls)]), logs
        accepted += got[0] == "ok"  # type: ignore[index]
        refused += got[0] == "err"  # type: ignore[index]
    assert accepted > 500 and refused > 1000
